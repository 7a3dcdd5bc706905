#!/usr/bin/env python3
"""Rollout: one deploy (VERSION=1 -> 2, a config change) of a Node HTTP app under load, by Candor,
PM2 and supervisord on this machine in one run: failed requests by kind, latency steady vs
during the deploy, and how long the deploy took.

For each case: start the app (bench/rollout/app.js, ready 300 ms after start) under the
supervisor and wait until the supervisor shows every instance up and the app answers; wait for
the machine to be quiet (--quiet-wait); start bench/rollout/load.py (a new TCP connection per
request, --rate a second, 10 s timeout); after --steady s, change VERSION to 2 in the
supervisor's config and trigger the deploy the way a user would; the deploy is done when the
trigger command has returned, the supervisor shows every instance up with none of the old pids,
every old pid is gone, and a request answers VERSION=2 (the time is the end of the check that
saw it all, so it includes the supervisor CLI's own time: how long that check took, and when the
trigger command returned, are printed beside it). Then --after s more of load. Windows: steady (before the trigger), deploy (trigger to
done), after. Every answer names its pid and VERSION, so an old answer after "done" is counted
(`stale`). Latency percentiles are over ok requests; failures are counted by kind.

Cases: pm2-cluster, pm2-fork, supervisord (installed by the bench: PM2 with `npm ci` from
bench/rollout/package-lock.json, supervisord from PyPI into target/supervisor), and the Candor
cases candor-rolling, candor-overlap (need a build with `replicas`/`update`: skipped with the
reason when `candor check` rejects their config), candor-stop-first-held, candor-own-port. Candor
is --candor-bin DIR, else $CANDOR_BIN, else target/release.

usage: bench/rollout/run.py [--rate 200] [--cases a,b,...] [--candor-bin DIR] [--out FILE]
"""
import argparse, datetime, http.client, json, os, re, shutil, signal, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bench/, for common
import common  # noqa: E402
from candor_cases import Candor  # noqa: E402
from peers import NODE, PM2_VERSION, SUPERVISOR_VERSION, Pm2, Supervisord, alive  # noqa: E402

CASES = ["pm2-cluster", "pm2-fork", "supervisord", "candor-rolling", "candor-overlap",
         "candor-stop-first-held", "candor-own-port"]
UP_LIMIT = 60.0  # s for every instance to come up at the start
KINDS = ["refused", "reset", "timeout", "bad status"]


def make(name, a):
    if name == "pm2-cluster":
        return Pm2("cluster", 4)
    if name == "pm2-fork":
        return Pm2("fork", 1)
    if name == "supervisord":
        return Supervisord()
    return Candor(name.removeprefix("candor-"), a.candor_bin)


def machine_busy():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def busy_pct(a, b):
    """The whole machine's busy time between two machine_busy() reads, as % of one core."""
    return (b[0] - a[0]) / max(1, b[1] - a[1]) * 100 * os.cpu_count()


def wait_quiet(limit, below=40.0, span=3.0):
    """Wait up to `limit` s for `span` s in which the machine is busy less than `below` % of one
    core (another build would skew the latencies). Returns (waited s, last busy %)."""
    t0 = time.monotonic()
    while True:
        a = machine_busy()
        time.sleep(span)
        busy = busy_pct(a, machine_busy())
        if busy < below or time.monotonic() - t0 >= limit:
            return time.monotonic() - t0, busy


def answer(port):
    """(pid, version) from one request on a new connection, or None."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        c.request("GET", "/", headers={"Connection": "close"})
        r = c.getresponse()
        fields = dict(f.split("=", 1) for f in r.read().decode().split() if "=" in f)
        return (fields.get("pid"), fields.get("version")) if r.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        c.close()


def wait_up(case, port):
    deadline = time.monotonic() + UP_LIMIT
    while time.monotonic() < deadline:
        pids = case.up()
        if pids and (answer(port) or (None, None))[1] == "1":
            return pids
        time.sleep(0.2)
    raise RuntimeError(f"not every instance up and answering VERSION=1 within {UP_LIMIT:g} s")


def mark(load, name, t):
    load.stdin.write(f"mark {name} {t}\n")
    load.stdin.flush()


def deploy(case, port, pids0, limit, r):
    """Trigger the deploy; return (t_trigger, t_done or None) on the monotonic clock."""
    t0 = time.monotonic()
    trig = case.deploy()
    try:
        out, _ = trig.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        trig.kill()
        out, _ = trig.communicate()
        r["problems"].append(f"the trigger did not return within {limit:g} s")
    r["trigger_s"], r["trigger_rc"] = time.monotonic() - t0, trig.returncode
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)  # PM2 colours its output
    r["trigger_out"] = " / ".join(ln.strip() for ln in out.splitlines() if ln.strip())[-400:]
    while time.monotonic() - t0 < limit:
        t = time.monotonic()
        pids = case.up()
        if pids and not set(pids) & set(pids0) and not any(alive(p) for p in pids0):
            got = answer(port)
            if got and got[1] == "2":
                # Done by the end of this check (the supervisor's CLI may take a while to answer).
                r["pids_after"], r["check_s"] = pids, time.monotonic() - t
                return t0, time.monotonic()
        time.sleep(0.05)
    r["problems"].append(f"the deploy was not seen done within {limit:g} s")
    return t0, None


def run_case(case, a):
    r = {"name": case.name, "label": case.label, "notes": [], "problems": []}
    reason = case.skip_reason()
    work = tempfile.mkdtemp(prefix=f"candor-rollout-{case.name}.")
    tag = f"--rollout-tag={case.name}-{int(time.time() * 1000) % 10**9}"  # in argv, to find leftovers
    port = common.free_port()
    started = False
    try:
        if reason is None and hasattr(case, "prepare"):
            case.prepare(work, port, tag)
            reason = case.check_reason()
        if reason is not None:
            r["skipped"] = reason
            return r
        print(f"{case.name}: starting ({case.label})", flush=True)
        started = True
        case.start(work, port, tag)
        pids0 = wait_up(case, port)
        r["pids_before"] = pids0
        r["quiet_waited"], r["quiet_busy"] = wait_quiet(a.quiet_wait)
        load = subprocess.Popen([sys.executable, os.path.join(HERE, "load.py"), "--port", str(port),
                                 "--rate", str(a.rate), "--records", "--json", f"{work}/load.json"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        load.stdout.readline()  # "started"
        b0 = machine_busy()
        time.sleep(a.steady)
        t_deploy, t_done = deploy(case, port, pids0, a.deploy_limit, r)
        mark(load, "deploy", t_deploy)
        if t_done is None:
            t_done = time.monotonic()
        mark(load, "after", t_done)
        r["deploy_s"] = None if r["problems"] else t_done - t_deploy
        time.sleep(a.after)
        load.stdin.write("stop\n")
        load.stdin.close()
        load.wait(timeout=60)
        r["busy"] = busy_pct(b0, machine_busy())
        doc = json.load(open(f"{work}/load.json"))
        r["windows"], r["lag_max"] = doc["windows"], doc["launch_lag_max"]
        r["client_cpu"] = doc["cpu_s"] / max(1e-9, doc["ended"] - doc["started"]) * 100
        recs = doc["records"]
        r["stale"] = sum(1 for x in recs if x[0] >= t_done and x[2] == "ok" and x[4] != "2")
        v2 = [x[0] for x in recs if x[4] == "2"]
        v1 = [x[0] for x in recs if x[4] == "1"]
        r["first_v2"] = min(v2) - t_deploy if v2 else None
        r["last_v1"] = max(v1) - t_deploy if v1 else None
        r["notes"] += case.notes()
        return r
    except Exception as e:
        r["problems"].append(f"bench error: {e!r}"[:300])
        return r
    finally:
        if started:
            try:
                case.stop()
            except Exception as e:
                r["problems"].append(f"stopping: {e!r}"[:200])
        left = [p for pids in common.tagged(tag).values() for p in pids]
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            r["problems"].append(f"{len(left)} app processes left after the supervisor stopped (killed)")
        if r["problems"] or a.keep:
            r["kept"] = work
        else:
            shutil.rmtree(work, ignore_errors=True)


def ms(x):
    return "-" if x is None else f"{x * 1e3:.0f} ms" if x >= 0.01 else f"{x * 1e3:.1f} ms"


def secs(x):
    return "-" if x is None else f"{x:.2f} s"


def kinds(w):
    return ", ".join(f"{w['counts'].get(k, 0)} {k}" for k in KINDS if w["counts"].get(k)) or "0"


def verdict(r):
    """The issue's goal: 0 failed, p99 in the deploy within 2x steady, max <= 100 ms."""
    ws = r["windows"]
    failed = sum(w["failed"] for w in ws.values())
    d, s = ws.get("deploy", {}), ws.get("steady", {})
    misses = []
    if failed:
        misses.append(f"{failed} failed")
    if d.get("p99") is not None and s.get("p99") and d["p99"] > 2 * s["p99"]:
        misses.append(f"p99 {d['p99'] / s['p99']:.1f}x steady")
    if d.get("max") is not None and d["max"] > 0.1:
        misses.append("max > 100 ms")
    if r.get("stale"):
        misses.append(f"{r['stale']} old answers after done")
    return "met" if not misses else "missed: " + ", ".join(misses)


def summary(results):
    lines = ["| case | failed during the deploy | failed in all | p99 steady | p99 deploy | max deploy "
             "| deploy took (the trigger returned) | goal (0 failed, p99 ≤ 2x, max ≤ 100 ms) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['name']} | skipped | | | | | | {r['skipped']} |")
        elif "windows" not in r:
            lines.append(f"| {r['name']} | did not run | | | | | | {'; '.join(r['problems'])} |")
        else:
            ws = r["windows"]
            d, s = ws.get("deploy", {}), ws["steady"]
            lines.append(f"| {r['name']} | {kinds(d) if d else '-'} | {sum(w['failed'] for w in ws.values())} "
                         f"| {ms(s['p99'])} | {ms(d.get('p99'))} | {ms(d.get('max'))} "
                         f"| {secs(r.get('deploy_s'))} ({secs(r.get('trigger_s'))}) "
                         f"| {verdict(r)} |")
    return "\n".join(lines)


def detail(r, a):
    out = [f"## {r['name']}: {r['label']}"]
    if "skipped" in r:
        return "\n".join(out + [f"skipped: {r['skipped']}"])
    if "windows" in r:
        out.append(f"deploy: {secs(r.get('deploy_s'))} from the trigger to done (the trigger returned after "
                   f"{secs(r.get('trigger_s'))}, exit {r.get('trigger_rc')}: \"{r.get('trigger_out', '')}\"); "
                   f"the first request answered by VERSION=2 was sent at {secs(r.get('first_v2'))}, the last "
                   f"answered by VERSION=1 at {secs(r.get('last_v1'))}; the check that saw it done took {secs(r.get('check_s'))}; "
                   f"old answers after done: {r.get('stale')}; pids "
                   f"{r.get('pids_before')} -> {r.get('pids_after')}")
        out.append(f"machine busy during the load: {r['busy']:.0f} % of one core (client, app and supervisor "
                   f"included; the client alone {r['client_cpu']:.0f} %; before the load, {r['quiet_busy']:.0f} % "
                   f"after waiting {r['quiet_waited']:.0f} s for quiet); the client launched requests at most "
                   f"{ms(r['lag_max'])} late")
        out += ["| window | requests | ok | refused | reset | timeout | bad status | p50 | p99 | max | versions |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, w in r["windows"].items():
            c = w["counts"]
            out.append(f"| {name} | {w['requests']} | {c['ok']} | {c['refused']} | {c['reset']} | {c['timeout']} "
                       f"| {c['bad status']} | {ms(w['p50'])} | {ms(w['p99'])} | {ms(w['max'])} "
                       f"| {','.join(w['versions']) or '-'} |")
    out += [f"note: {n}" for n in r["notes"]]
    if r["problems"]:
        out.append(f"problems: {'; '.join(r['problems'])}")
    if r.get("kept"):
        out.append(f"work dir kept: {r['kept']}")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=200, help="requests per second (default 200)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated (default all: {','.join(CASES)})")
    p.add_argument("--candor-bin", default=common.BIN, help="the dir holding candor (default $CANDOR_BIN, "
                                                           "else target/release)")
    p.add_argument("--steady", type=float, default=5, help="s of load before the deploy (default 5)")
    p.add_argument("--after", type=float, default=3, help="s of load after the deploy is done (default 3)")
    p.add_argument("--deploy-limit", type=float, default=120, help="s a deploy may take (default 120)")
    p.add_argument("--quiet-wait", type=float, default=120,
                   help="s to wait, per case, for the machine to be quiet before the load (default 120)")
    p.add_argument("--keep", action="store_true", help="keep every case's work dir (load.json has each request)")
    p.add_argument("--out", default=os.path.join(common.ROOT, "bench", "results", "rollout.txt"))
    a = p.parse_args()
    a.candor_bin = os.path.abspath(a.candor_bin)
    names = [n.strip() for n in a.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    git = lambda *args: subprocess.run(["git", *args], cwd=common.ROOT, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if git("status", "--porcelain", "-uno") else "")
    node = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
    cv = subprocess.run([f"{a.candor_bin}/candor", "--version"], capture_output=True, text=True).stdout.strip() \
        if os.path.exists(f"{a.candor_bin}/candor") else "none"
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    results = []
    for n in names:
        r = run_case(make(n, a), a)
        print(detail(r, a) + "\n", flush=True)
        results.append(r)
    text = (f"# bench/rollout/run.py {' '.join(sys.argv[1:])}\n"
            f"# {when}; HEAD {head}; {os.cpu_count()} cores; node {node}; PM2 {PM2_VERSION}; supervisor "
            f"{SUPERVISOR_VERSION}; candor {a.candor_bin} ({cv})\n"
            f"# app: bench/rollout/app.js, ready 300 ms after start; load: {a.rate:g} requests/s, a new TCP "
            f"connection each, 10 s timeout; {a.steady:g} s steady, the deploy (VERSION 1 -> 2), {a.after:g} s after. "
            f"Latencies over ok requests.\n\n"
            + summary(results) + "\n\n" + "\n\n".join(detail(r, a) for r in results) + "\n")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    print(summary(results))
    print(f"\nwritten to {a.out}")
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
