#!/usr/bin/env python3
"""Jobs: N oneshots (default 1000), each `schedule = { every = "1m" }`, for M minutes (default
10). Each run is `/bin/sh -c 'echo $(date +%s%N) NAME >> OUT/NAME'`: it appends its own start
time (wall clock, ns) and its name to a file of its own.

After the window (and a few seconds for the last runs to end), each run's lateness is its own
start time minus the fire it ran for: `scheduled_ms` of its entry in `candor jobs --json`'s
history (from a build without `candor jobs`, the same entries from the jobs' files,
`<state_dir>/jobs/NAME.json`), matched by time (the fire nearest before the start). Reported:
p50/p99/max of that, and of the daemon's own spawn time (`started_ms` − `scheduled_ms`), so the
shell's and `date`'s start-up (printed too: the same command from a plain fork, `--baseline`
times) can be told from the daemon's; runs expected (N × M: an `every` job fires once a period on
its own phase, so a window of M whole periods holds exactly M fires of each) vs. done, failed and
missing; the daemon's CPU over the window (utime+stime from /proc/PID/stat, % of one core) and
the whole machine's busy time beside it (another load skews both; the bench first waits up to
`--quiet-wait` s for the machine to be quiet, and says how busy it was).

Goals (issue 29): p99 lateness ≤ 50 ms on an idle box, daemon CPU ≤ 2 % of a core at 1000 jobs.
For scale: cron's granularity is one minute (crontab(5): the daemon wakes each minute and runs
the entries that match it; nothing between minutes, so a job meant for 12:00:30 cannot be said),
and a systemd timer may fire up to `AccuracySec` late, 1 min by default (systemd.timer(5):
timers are coalesced within that window to save wake-ups), so either can be up to 60 000 ms late
by design.

The result (a table row and a detail line) is printed and appended to `--out`
(bench/results/jobs.txt) after the command line that made it. Candor is $CANDOR_BIN, else
target/release (built if missing).

usage: bench/jobs/run.py [--jobs 1000] [--minutes 10] [--quiet-wait 120] [--out FILE] [--keep]
"""
import argparse, datetime, json, os, shutil, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bench/, for common
import common  # noqa: E402
from common import TICK, api, cpu_ticks, pct, remove_cgroups  # noqa: E402

PERIOD_MS = 60_000
SETTLE = 5.0  # s before the window (start-up) and after it (the last runs end and are recorded)
COMMAND = "echo $(date +%s%N) {name} >> {out}/{name}"


def config(work, jobs):
    """The daemon's config: `jobs` oneshots every minute, each writing to work/out/NAME."""
    out = [f'[daemon]\nstate_dir = "{work}/state"\n']
    for name in jobs:
        cmd = COMMAND.format(name=name, out=f"{work}/out")
        out.append(f'[service.{name}]\ntype = "oneshot"\ncommand = ["/bin/sh", "-c", "{cmd}"]\n'
                   f'schedule = {{ every = "1m" }}\n')
    return "\n".join(out)


def machine_busy():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(f) - f[3] - f[4], sum(f)


def wait_quiet(limit, below=40.0, span=3.0):
    """Wait up to `limit` s for `span` s in which the machine is busy less than `below` % of one
    core (a build beside the bench makes runs late). Returns (waited s, last busy %)."""
    t0 = time.monotonic()
    while True:
        a = machine_busy()
        time.sleep(span)
        b = machine_busy()
        busy = (b[0] - a[0]) / max(1, b[1] - a[1]) * 100 * os.cpu_count()
        if busy < below or time.monotonic() - t0 >= limit:
            return time.monotonic() - t0, busy


def baseline(times, work):
    """The job's own command started from a plain fork here: ms from before the fork to the
    time it writes (what the shell and `date` add to every run's lateness)."""
    out = []
    probe = f"{work}/baseline"
    for _ in range(times):
        t0 = time.time_ns()
        subprocess.run(["/bin/sh", "-c", f"echo $(date +%s%N) baseline > {probe}"], check=True)
        out.append((int(open(probe).read().split()[0]) - t0) / 1e6)
    return out


def histories(d, work, names):
    """{name: [history entries]} from `candor jobs --json`, else from the jobs' files."""
    proc = subprocess.run([f"{common.BIN}/candor", "--socket", d.sock, "jobs", "--json"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        listed = json.loads(proc.stdout)
        listed = listed["jobs"] if isinstance(listed, dict) else listed
        return {j["name"]: j["history"] for j in listed}, "candor jobs --json"
    out = {}
    for name in names:
        try:
            out[name] = json.load(open(f"{work}/state/jobs/{name}.json"))["history"]
        except (OSError, ValueError):
            out[name] = []
    return out, "<state_dir>/jobs/*.json (this build has no `candor jobs`)"


def own_starts(work, name):
    """The start times (unix ms) a job's runs wrote, in order."""
    try:
        return sorted(int(l.split()[0]) / 1e6 for l in open(f"{work}/out/{name}"))
    except OSError:
        return []


def analyse(work, hist, names, t0_ms, t1_ms):
    """Runs expected/done/failed/missing and the lateness lists (ms) of the window's fires."""
    own, spawn, early = [], [], 0
    done = failed = 0
    for name in names:
        runs = [r for r in hist.get(name, []) if r.get("scheduled_ms") is not None
                and t0_ms <= r["scheduled_ms"] < t1_ms]
        done += sum(1 for r in runs if r["result"] == "done")
        failed += sum(1 for r in runs if r["result"] == "failed")
        fires = sorted(r["scheduled_ms"] for r in runs)
        for r in runs:
            if r.get("started_ms") is not None:
                spawn.append(r["started_ms"] - r["scheduled_ms"])
        # Each start the job wrote, against the fire nearest it (a start before its fire is
        # early: counted apart, and a problem).
        for start in own_starts(work, name):
            if not fires:
                break
            fire = min(fires, key=lambda f: abs(start - f))
            if abs(start - fire) < PERIOD_MS / 2:
                own.append(start - fire)
                early += start - fire < -1  # 1 ms: the two clocks' rounding
    return {"done": done, "failed": failed, "own": own, "spawn": spawn, "early": early}


def ms3(xs):
    if not xs:
        return "-"
    return f"{pct(xs, 50):.1f} / {pct(xs, 99):.1f} / {max(xs):.1f} ms"


def run(a):
    work = tempfile.mkdtemp(prefix="candor-jobs.")
    os.makedirs(f"{work}/out")
    names = [f"j{i:04d}" for i in range(a.jobs)]
    quiet = wait_quiet(a.quiet_wait)
    base = baseline(a.baseline, work)
    d = common.Daemon(work, config(work, names))
    root, problems = None, []
    try:
        deadline = time.time() + 120
        while True:
            try:
                info = api(d.sock, "/v1/daemon", timeout=30.0)
                break
            except Exception:
                if d.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the daemon did not answer; see {work}/daemon.log")
                time.sleep(0.1)
        root = common.cgroup_dir(info)
        time.sleep(SETTLE)  # start-up (parsing, the first schedule look) is not in the window
        # The window: M whole periods from now; each job fires exactly M times in it.
        t0_ms = time.time() * 1000
        c0, m0, w0 = cpu_ticks(d.pid), machine_busy(), time.monotonic()
        time.sleep(a.minutes * 60)
        c1, m1, w1 = cpu_ticks(d.pid), machine_busy(), time.monotonic()
        t1_ms = t0_ms + (w1 - w0) * 1000
        time.sleep(SETTLE)
        hist, source = histories(d, work, names)
        r = analyse(work, hist, names, t0_ms, t1_ms)
        r["cpu"] = (c1 - c0) / TICK / (w1 - w0) * 100
        r["busy"] = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * 100 * os.cpu_count()
        r["expected"] = a.jobs * round((w1 - w0) * 1000 / PERIOD_MS)
        r["source"] = source
        r["baseline"] = base
        r["quiet"] = quiet
    finally:
        d.stop()
        remove_cgroups(root)
    missing = r["expected"] - r["done"] - r["failed"]
    if missing or r["failed"] or r["early"]:
        problems.append(f"missing {missing}, failed {r['failed']}, started before their fire {r['early']}")
    if r["own"] and pct(r["own"], 99) > 50:
        problems.append(f"p99 lateness {pct(r['own'], 99):.1f} ms > 50 ms")
    if r["cpu"] > 2:
        problems.append(f"daemon CPU {r['cpu']:.2f} % > 2 % of a core")
    if problems and not a.keep:
        a.keep = True
    if a.keep:
        print(f"work dir kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return r, problems


def report(a, r, problems):
    head = ("| jobs | every | minutes | runs expected / done / failed | lateness own start p50 / p99 / max "
            "| daemon spawn p50 / p99 / max | daemon CPU | machine busy |\n|---|---|---|---|---|---|---|---|\n")
    row = (f"| {a.jobs} | 1m | {a.minutes:g} | {r['expected']} / {r['done']} / {r['failed']} | {ms3(r['own'])} "
           f"| {ms3(r['spawn'])} | {r['cpu']:.2f} % | {r['busy']:.0f} % |\n")
    detail = (f"# history from {r['source']}; {len(r['own'])} runs matched to their fire; sh + date from a plain "
              f"fork here: p50 {pct(r['baseline'], 50):.1f} ms, max {max(r['baseline']):.1f} ms "
              f"({len(r['baseline'])} times); waited {r['quiet'][0]:.0f} s for a quiet machine "
              f"(busy {r['quiet'][1]:.0f} % of a core then); goals p99 ≤ 50 ms, CPU ≤ 2 % (cron: 1-minute granularity; "
              f"systemd timers: AccuracySec=1min by default)"
              + (f"; PROBLEMS: {'; '.join(problems)}" if problems else "") + "\n")
    return head + row + detail


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=1000, help="oneshots, each every minute (default 1000)")
    p.add_argument("--minutes", type=int, default=10, help="the window in minutes (default 10)")
    p.add_argument("--quiet-wait", type=float, default=120,
                   help="wait up to this many s for the machine to be quiet before the run (default 120)")
    p.add_argument("--baseline", type=int, default=50, help="plain forks of the job's command timed (default 50)")
    p.add_argument("--out", default=os.path.join(common.ROOT, "bench", "results", "jobs.txt"),
                   help="the results file, appended to (default bench/results/jobs.txt)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (kept anyway when a goal is missed)")
    a = p.parse_args()
    if not os.path.exists(f"{common.BIN}/candor"):
        common.build()
    git = lambda *args: subprocess.run(["git", *args], cwd=common.ROOT, capture_output=True, text=True).stdout.strip()
    head_sha = git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if git("status", "--porcelain", "-uno") else "")
    command = "bench/jobs/run.py " + " ".join(sys.argv[1:])
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    r, problems = run(a)
    version = subprocess.run([f"{common.BIN}/candor", "--version"], capture_output=True, text=True).stdout.strip()
    text = (f"# {command}\n# {started}; binaries {common.BIN} ({version}; checkout HEAD {head_sha}); "
            f"{os.cpu_count()} cores\n"
            + report(a, r, problems))
    print(text, end="")
    with open(a.out, "a") as f:
        f.write(text + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
