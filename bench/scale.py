#!/usr/bin/env python3
"""Scale: N `sleep` services (N = 100 and 1000) with no probe, or an exec / http / tcp probe
every 5 s each; the http and tcp probes all go to one tiny loopback HTTP server the bench runs
in a thread. For each case:

- start: from spawning `candor daemon` to all N `running`, polling `candor status --json`;
- footprint: the daemon's PSS (/proc/PID/smaps_rollup) and RSS once all run and 5 s settled;
- CPU: the daemon's utime+stime over a window (--seconds, default 60) as % of one core, with
  `candor status --json` polled only every 5 s inside it;
- reads: `candor status --json` and `candor status` (table), each run R times (--runs, 50) as
  whole CLI processes, p50/p99 (the CLI's own start included), after the window;
- truth: services seen in any state but `running` after they all ran (by the status polls and
  the latency runs' JSON, and exactly by the daemon's events): a healthy service must never be
  failed, unhealthy or stopping;
- `candor shutdown`: from the command to the daemon's exit, and the processes left behind, by
  the services' cgroups (cgroup.procs) and by a tag in /proc/*/cmdline.

Each service is `sleep 100000.TTTTTTTTT`: sleep 100000 s, the fraction a tag unique to the case,
so its processes can be found in /proc however the daemon contains them. Each case has its own
temp dir (kept when something went wrong); anything left at the end is killed by pid.

The binaries are built once (release) and copied to a private temp dir, so a rebuild during the
run cannot change them; `CANDOR_BIN=DIR` uses another build's binaries instead (copied too).

usage: bench/scale.py [--sizes 100,1000] [--kinds none,exec,http,tcp] [--seconds 60] [--runs 50] [--quick]
"""
import argparse, datetime, hashlib, http.client, http.server, json, os, random, shutil, signal, socket, statistics
import subprocess, sys, tempfile, threading, time

import common
from common import TICK, api, cpu_ticks, pct, remove_cgroups, rss, wall

EVERY = "5s"
SETTLE = 5.0  # s after all running before the footprint is read and the window opens
START_LIMIT = 180.0  # s: not all running by then is reported as "never"
POLL_START = 0.1  # s between status polls until all run
POLL_WINDOW = 5.0  # s between status polls in the CPU window (each poll costs the daemon a little)
BAD = ("failed", "unhealthy", "stopping")


# ---- the shared loopback HTTP server (http and tcp probes)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass

    def log_error(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096  # listen backlog (socketserver's default, 5, drops bursts of probes)

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.accepted = 0

    def verify_request(self, request, client_address):
        with self.lock:
            self.accepted += 1
        return True

    def handle_error(self, request, client_address):  # a tcp probe closing at once is not an error
        pass


def start_server():
    srv = Server()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()
    return srv


# ---- /proc readers

def mem(pid):
    """(PSS, RSS) of `pid` in bytes."""
    pss = 0
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            pss = int(line.split()[1]) * 1024
            break
    return pss, rss(pid)


def machine_busy():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def wait_quiet(limit, below=40.0, span=3.0):
    """Wait up to `limit` s for `span` s in which the whole machine is busy less than `below` % of
    one core (another build or bench would skew the numbers). Returns (waited s, last busy %)."""
    t0 = time.monotonic()
    while True:
        a = machine_busy()
        time.sleep(span)
        b = machine_busy()
        busy = (b[0] - a[0]) / max(1, b[1] - a[1]) * 100 * os.cpu_count()
        if busy < below or time.monotonic() - t0 >= limit:
            return time.monotonic() - t0, busy


def cgroup_root(sock):
    """The instance's cgroup dir, from GET /v1/daemon's containment detail (None without cgroups)."""
    try:
        info = api(sock, "/v1/daemon", timeout=10.0)
    except Exception:
        return None, "unknown"
    desc = f"{info.get('containment')} ({info.get('containment_detail', '')})"
    return common.cgroup_dir(info), desc


def cgroup_pids(root):
    """Every pid in any of the instance's service cgroups (and the instance cgroup itself)."""
    if not root or not os.path.isdir(root):
        return []
    out = []
    for d in [root] + [f"{root}/{x}" for x in os.listdir(root) if os.path.isdir(f"{root}/{x}")]:
        try:
            out += [int(x) for x in open(f"{d}/cgroup.procs").read().split()]
        except OSError:
            pass
    return out


def probe_line(kind, port):
    if kind == "none":
        return ""
    if kind == "exec":
        return f'probe = {{ exec = ["/bin/true"], every = "{EVERY}" }}\n'
    if kind == "http":
        return f'probe = {{ http = {{ port = {port}, path = "/" }}, every = "{EVERY}" }}\n'
    if kind == "tcp":
        return f'probe = {{ tcp = "127.0.0.1:{port}", every = "{EVERY}" }}\n'
    raise ValueError(kind)


class Case:
    def __init__(self, n, kind, seconds, runs, srv):
        self.n, self.kind, self.seconds, self.runs, self.srv = n, kind, seconds, runs, srv
        self.work = tempfile.mkdtemp(prefix=f"candor-scale-{n}-{kind}.")
        self.arg = f"100000.{random.randrange(10**8, 10**9)}"  # sleep 100000 s; the fraction is the tag
        self.r = {"n": n, "kind": kind, "problems": [], "tag": self.arg}
        self.seen = {}  # service -> set of states other than running seen after all ran
        self.bad_before = {}  # service -> state, failed/unhealthy/stopping seen before all ran
        self.fail_probe = set()  # services whose last probe was seen failed after all ran

    def tagged_pids(self):
        """Pids of every process on the machine running with this case's tag."""
        return [p for pids in common.tagged(self.arg).values() for p in pids]

    def config(self):
        port = self.srv.server_address[1] if self.srv else 0
        cfg = [f'[daemon]\nstate_dir = "{self.work}/state"\n']
        probe = probe_line(self.kind, port)
        for i in range(self.n):
            cfg.append(f'[service.s{i}]\ncommand = ["sleep", "{self.arg}"]\n{probe}')
        return "\n".join(cfg)

    def status(self):
        out = subprocess.run([f"{common.BIN}/candor", "--socket", self.sock, "status", "--json"],
                             capture_output=True, text=True, timeout=60)
        st = json.loads(out.stdout)
        return st if isinstance(st, list) else None

    def look(self, st, after):
        """Record what a status snapshot shows; `after`: all had run before it."""
        for s in st:
            if after:
                if s["state"] != "running":
                    self.seen.setdefault(s["name"], set()).add(s["state"])
                if s["probes"] and not s["probes"][-1]["ok"]:
                    self.fail_probe.add(s["name"])
            elif s["state"] in BAD:
                self.bad_before.setdefault(s["name"], s["state"] + ": " + s["reason"][:100])

    def run(self):
        r = self.r
        open(f"{self.work}/candor.toml", "w").write(self.config())
        self.sock = f"{self.work}/s.sock"
        log = open(f"{self.work}/daemon.log", "w")
        self.root = None
        t0 = time.monotonic()
        self.proc = subprocess.Popen([f"{common.BIN}/candor", "daemon", "-c", f"{self.work}/candor.toml",
                                      "--socket", self.sock], stdout=log, stderr=log)
        log.close()
        pid = self.proc.pid
        try:
            # -- start to all running
            up, worst_start = None, 0
            while time.monotonic() - t0 < START_LIMIT and self.proc.poll() is None:
                try:
                    st = self.status()
                except Exception:
                    st = None
                if st is not None:
                    if self.root is None:
                        self.root, r["containment"] = cgroup_root(self.sock)
                    self.look(st, after=False)
                    k = sum(1 for s in st if s["state"] == "running")
                    if len(st) == self.n and k == self.n:
                        up = time.monotonic() - t0
                        break
                time.sleep(POLL_START)
            r["up"] = up
            if up is None:
                r["problems"].append(f"not all {self.n} running within {START_LIMIT:g} s")
            if self.proc.poll() is not None:
                r["problems"].append(f"daemon exited with {self.proc.returncode}")
                return r
            t_all = time.time()
            # -- footprint, settled
            time.sleep(SETTLE)
            r["pss"], r["rss"] = mem(pid)
            # -- CPU window, status polled every POLL_WINDOW s
            srv0 = self.srv.accepted if self.srv else 0
            m0 = machine_busy()
            c0, w0 = cpu_ticks(pid), time.monotonic()
            peak_pss, peak_rss = r["pss"], r["rss"]
            last, next_poll = None, w0 + POLL_WINDOW
            while next_poll < w0 + self.seconds:
                time.sleep(max(0.0, next_poll - time.monotonic()))
                next_poll += POLL_WINDOW
                try:
                    st = self.status()
                    if st is not None:
                        self.look(st, after=True)
                        last = (st, time.time())
                except Exception as e:
                    r["problems"].append(f"status in the window: {e!r}"[:200])
                p, s_ = mem(pid)
                peak_pss, peak_rss = max(peak_pss, p), max(peak_rss, s_)
            time.sleep(max(0.0, w0 + self.seconds - time.monotonic()))
            c1, w1 = cpu_ticks(pid), time.monotonic()
            m1 = machine_busy()
            try:  # one more look, outside the window
                st = self.status()
                if st is not None:
                    self.look(st, after=True)
                    last = (st, time.time())
            except Exception as e:
                r["problems"].append(f"status after the window: {e!r}"[:200])
            r["cpu"] = (c1 - c0) / TICK / (w1 - w0) * 100
            r["window"] = w1 - w0
            r["machine"] = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * 100 * os.cpu_count()  # % of one core, all CPUs
            r["peak_pss"], r["peak_rss"] = peak_pss, peak_rss
            if self.srv:
                r["accepted_per_s"] = (self.srv.accepted - srv0) / (w1 - w0)
            if last:
                st, now = last
                fresh = sum(1 for s in st if s["probes"] and now - wall(s["probes"][-1]["at"]) <= 7.0)
                r["fresh"] = fresh
            # -- reads: whole CLI processes
            for mode in ("json", "table"):
                args = [f"{common.BIN}/candor", "--socket", self.sock, "status"] + (["--json"] if mode == "json" else [])
                took, errs = [], 0
                for _ in range(self.runs):
                    a = time.perf_counter()
                    out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
                    took.append(time.perf_counter() - a)
                    if out.returncode != 0:
                        errs += 1
                        continue
                    if mode == "json":
                        self.look(json.loads(out.stdout), after=True)
                    else:
                        r["header"] = out.stdout.split(b"\n", 1)[0].decode(errors="replace")
                        if out.stdout.count(b"\n") < self.n + 3:
                            errs += 1
                r[f"lat_{mode}"] = (statistics.median(took), pct(took, 99), max(took))
                r[f"bytes_{mode}"] = len(out.stdout)
                if errs:
                    r["problems"].append(f"status ({mode}): {errs} of {self.runs} runs failed or short")
            r["pss_after"], r["rss_after"] = mem(pid)
            # -- events: every state change after all ran (exact, unlike the polls)
            try:
                out = subprocess.run([f"{common.BIN}/candor", "--socket", self.sock, "events", "-n", "1000000", "--json"],
                                     capture_output=True, text=True, timeout=120)
                ev = json.loads(out.stdout)
                r["events"] = len(ev)
                ev_after = [e for e in ev if e["service"] != "candor" and wall(e["at"]) >= t_all - 0.001
                            and e["state"] != "running"]
                for e in ev_after:
                    self.seen.setdefault(e["service"], set()).add(e["state"])
                for e in ev:
                    if e["state"] in BAD and wall(e["at"]) < t_all:
                        self.bad_before.setdefault(e["service"], e["state"] + ": " + e["reason"][:100])
                r["ev_after"] = ev_after[:5]
            except Exception as e:
                r["problems"].append(f"events: {e!r}"[:200])
            r["not_running"] = len(self.seen)
            r["bad"] = sum(1 for v in self.seen.values() if v & set(BAD))
            r["states_seen"] = sorted(set().union(*self.seen.values())) if self.seen else []
            r["bad_before"] = len(self.bad_before)
            r["fail_probe"] = len(self.fail_probe)
            if self.seen:
                r["problems"].append(f"{len(self.seen)} services not running after all ran ({r['states_seen']})")
            if self.bad_before:
                ex = next(iter(self.bad_before.items()))
                r["problems"].append(f"{len(self.bad_before)} services failed/unhealthy/stopping before all ran, e.g. {ex}")
            # -- shutdown
            a = time.monotonic()
            try:
                out = subprocess.run([f"{common.BIN}/candor", "--socket", self.sock, "shutdown"],
                                     capture_output=True, text=True, timeout=120)
                r["shutdown_cli"] = time.monotonic() - a
                self.proc.wait(timeout=120)
                r["shutdown"] = time.monotonic() - a
            except subprocess.TimeoutExpired:
                r["shutdown"] = float("inf")
                r["problems"].append("shutdown not done within 120 s")
            time.sleep(0.5)  # the kernel reaps what the daemon killed last
            r["left_tag"] = len(self.tagged_pids())
            r["left_cg"] = len(cgroup_pids(self.root)) if self.root else None
            if r["left_tag"] or r["left_cg"]:
                r["problems"].append(f"left behind: {r['left_tag']} by tag, {r['left_cg']} by cgroup")
            return r
        except Exception as e:
            r["problems"].append(f"bench error: {e!r}"[:300])
            return r
        finally:
            self.cleanup()

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        pids = set(self.tagged_pids()) | set(cgroup_pids(self.root))
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2 if pids else 0)
        remove_cgroups(self.root)
        if self.r["problems"]:
            self.r["kept"] = self.work
        else:
            shutil.rmtree(self.work, ignore_errors=True)


# ---- report

def ms(x):
    return f"{x * 1e3:.1f}"


def mb(x):
    return f"{x / 2**20:.1f} MiB"


def row(r):
    up = f"{r['up']:.2f} s" if r.get("up") is not None else "never"
    cpu = f"{r['cpu']:.2f} %" if "cpu" in r else "-"
    lj = f"{ms(r['lat_json'][0])} / {ms(r['lat_json'][1])} ms" if "lat_json" in r else "-"
    lt = f"{ms(r['lat_table'][0])} / {ms(r['lat_table'][1])} ms" if "lat_table" in r else "-"
    nr = "-"
    if "not_running" in r:
        nr = f"{r['not_running']}" + (f" ({', '.join(r['states_seen'])})" if r["states_seen"] else "")
    sd = "-" if "shutdown" not in r else ("not done" if r["shutdown"] == float("inf") else f"{r['shutdown']:.2f} s")
    left = "-" if "left_tag" not in r else f"{r['left_tag']}" + (f" / {r['left_cg']}" if r["left_cg"] is not None else "")
    pss = mb(r["pss"]) if "pss" in r else "-"
    rs = mb(r["rss"]) if "rss" in r else "-"
    return f"| {r['n']} | {r['kind']} | {up} | {pss} | {rs} | {cpu} | {lj} | {lt} | {nr} | {sd} | {left} |"


def detail(r):
    out = [f"{r['n']} {r['kind']}:"]
    if "peak_pss" in r:
        out.append(f"PSS peak in window {mb(r['peak_pss'])}, after the reads {mb(r['pss_after'])}; "
                   f"RSS peak {mb(r['peak_rss'])}, after the reads {mb(r['rss_after'])};")
    if r.get("busy_before") is not None:
        out.append(f"machine {r['busy_before']:.0f} % busy before the case (waited {r['waited']:.0f} s);")
    if "window" in r:
        out.append(f"window {r['window']:.1f} s, whole machine busy {r['machine']:.0f} % of one core;")
    if "accepted_per_s" in r and r["kind"] in ("http", "tcp"):
        out.append(f"loopback server accepted {r['accepted_per_s']:.1f} connections/s (expected {r['n'] / 5:.0f});")
    if "fresh" in r and r["kind"] != "none":
        out.append(f"last probe <= 7 s old at the last poll: {r['fresh']}/{r['n']};")
    if "fail_probe" in r and r["kind"] != "none":
        out.append(f"services seen with a failed last probe after all ran: {r['fail_probe']};")
    if "lat_json" in r:
        out.append(f"status max {ms(r['lat_json'][2])} / {ms(r['lat_table'][2])} ms (json/table), "
                   f"output {r['bytes_json'] / 1024:.0f} / {r['bytes_table'] / 1024:.0f} KiB;")
    if "shutdown_cli" in r:
        out.append(f"`candor shutdown` returned after {r['shutdown_cli']:.2f} s;")
    if "events" in r:
        out.append(f"events {r['events']}; failed/unhealthy/stopping before all ran: {r['bad_before']};")
    for e in r.get("ev_after", []):
        out.append(f"\n    event after all ran: {e['at']} {e['service']} {e['state']}: {e['reason'][:120]}")
    for p in r["problems"]:
        out.append(f"\n    PROBLEM: {p}")
    if r.get("kept"):
        out.append(f"\n    work dir kept: {r['kept']}")
    return " ".join(out)


def tree():
    """The commit of the work tree, and which build inputs differ from it."""
    git = ["git", "-C", common.ROOT]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--", "crates", "Cargo.toml", "Cargo.lock"],
                           capture_output=True, text=True).stdout.split("\n")
    dirty = [x[3:] for x in dirty if x.strip()]
    return f"commit {head}" + (f" + uncommitted changes to {', '.join(dirty[:5])}{', ...' if len(dirty) > 5 else ''}" if dirty else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--kinds", default="none,exec,http,tcp")
    ap.add_argument("--seconds", type=int, default=None, help="CPU window per case (60; 10 with --quick)")
    ap.add_argument("--runs", type=int, default=None, help="status runs per mode (50; 20 with --quick)")
    ap.add_argument("--quiet-wait", type=float, default=300,
                    help="before each case, wait up to this many s for the machine to be idle (0: don't)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    seconds = a.seconds if a.seconds is not None else (10 if a.quick else 60)
    runs = a.runs if a.runs is not None else (20 if a.quick else 50)
    sizes = [int(x) for x in a.sizes.split(",")]
    kinds = [k.strip() for k in a.kinds.split(",")]
    for k in kinds:
        probe_line(k, 1)  # an unknown kind fails before anything runs

    # One build for every case, copied so a rebuild during the run changes nothing.
    src = os.environ.get("CANDOR_BIN")
    built = ""
    if not src:
        before = tree()
        common.build()
        after = tree()
        src = os.path.join(common.ROOT, "target", "release")
        built = f"built at {after}" + ("" if before == after else f" (was {before} when the build began)") + "; "
    private = tempfile.mkdtemp(prefix="candor-scale-bin.")
    for b in ("candor", "candor-zoo"):
        if os.path.exists(f"{src}/{b}"):
            shutil.copy2(f"{src}/{b}", f"{private}/{b}")
    common.BIN = private
    version = subprocess.run([f"{private}/candor", "--version"], capture_output=True, text=True).stdout.strip()
    version += f" (sha256 {hashlib.sha256(open(f'{private}/candor', 'rb').read()).hexdigest()[:12]}; {built}"

    cli = []
    for _ in range(20):
        t = time.perf_counter()
        subprocess.run([f"{private}/candor", "--version"], capture_output=True)
        cli.append(time.perf_counter() - t)
    srv = start_server() if any(k in ("http", "tcp") for k in kinds) else None
    cmd = " ".join(["bench/scale.py"] + sys.argv[1:])
    print(f"# {cmd}")
    print(f"# {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%MZ')}; {version}binaries from {src} "
          f"copied to {private}); {os.cpu_count()} cores, kernel {os.uname().release}; probes every {EVERY} "
          f"(timeout 1s, failures 3), http/tcp to one ThreadingHTTPServer on 127.0.0.1:"
          f"{srv.server_address[1] if srv else '-'}; window {seconds} s; {runs} status runs per mode", flush=True)
    print(f"# a CLI process alone (`candor --version`, spawned and waited for from Python): p50 {ms(statistics.median(cli))} ms, "
          f"max {ms(max(cli))} ms", flush=True)
    results = []
    try:
        for n in sizes:
            for k in kinds:
                waited, busy = wait_quiet(a.quiet_wait) if a.quiet_wait > 0 else (0.0, None)
                r = Case(n, k, seconds, runs, srv).run()
                r["waited"], r["busy_before"] = waited, busy
                results.append(r)
                if len(results) == 1:
                    head = r.get("header", "")
                    print(f"# containment: {head[head.index('containment:') + 13:] if 'containment:' in head else r.get('containment', 'unknown')}"
                          f" (`candor status` header: {head!r})")
                    print("| services | probes | start to all running | daemon PSS | RSS | CPU % | status --json p50/p99 "
                          "| status p50/p99 | not running seen | shutdown | left behind (tag / cgroup) |")
                    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
                print(row(r), flush=True)
                print("#   " + detail(r).replace("\n    ", "\n#     "), flush=True)
    finally:
        if srv:
            srv.shutdown()
        shutil.rmtree(private, ignore_errors=True)
    if len(sizes) >= 2:
        lo, hi = min(sizes), max(sizes)
        print(f"# cost per extra service, (PSS at {hi} - PSS at {lo}) / {hi - lo}:")
        for k in kinds:
            a_ = next((r for r in results if r["n"] == lo and r["kind"] == k and "pss" in r), None)
            b_ = next((r for r in results if r["n"] == hi and r["kind"] == k and "pss" in r), None)
            if a_ and b_:
                per = (b_["pss"] - a_["pss"]) / (hi - lo)
                per_rss = (b_["rss"] - a_["rss"]) / (hi - lo)
                print(f"#   {k:5}: {per / 1024:.1f} KiB PSS ({per_rss / 1024:.1f} KiB RSS) per service")
    bad = [r for r in results if r["problems"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
