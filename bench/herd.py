#!/usr/bin/env python3
"""Herd: N `sleep` services (default 1000), each with `probe = { http = { port = P, path = "/" },
every = "5s" }` (timeout 1 s, 3 failures: the defaults), all probing ONE endpoint nobody tuned:
`python3 -m http.server` (listen backlog 5), or with `--backlog N` a ThreadingHTTPServer whose
`request_queue_size` is N (the paired run uses 4096). Issue 27's setup.

Phase 1 (steady): from spawning `candor daemon` to all N `running`; then over `--minutes`:
restarts (sum of `restarts` over the services, end minus start of the window), the daemon's CPU
(utime+stime from /proc/PID/stat) as % of one core, probe latency p50/p99 (from the
`candor_probe_duration_seconds` histograms of /metrics, end minus start of the window; the
bucket's upper bound is reported), probes the daemon held back (`candor_probe_held_total`, when
the build has it), and services seen in any state but running (status every 5 s).

Phase 2 (outage): the endpoint is killed for `--outage` seconds, then started again on the same
port. Restarts during the outage and until all run again, the most restarts in any 10 s
(sampled every second; the goal is the default restart budget, 10 % of the services per 10 s),
how many services showed a `shared_cause` / `restart_held` / `unhealthy` state, the shared
causes GET /v1/daemon named, and the time from the endpoint's return to all `running`.

The results (a compact table and a detail line) are printed and appended to `--out`
(bench/results/herd.txt), after the command line that made them.

usage: bench/herd.py [--n 1000] [--minutes 10] [--outage 30] [--backlog N] [--out FILE]
"""
import argparse, datetime, math, os, re, shutil, signal, socket, subprocess, sys, tempfile, time

import common
from common import TICK, UnixHTTP, api, cpu_ticks, free_port, remove_cgroups

EVERY = 5.0  # s, the probe period
START_LIMIT = 300.0  # s: not all running by then is reported as "never"
BACK_LIMIT = 300.0  # s after the endpoint's return

# A ThreadingHTTPServer like `python3 -m http.server`'s, with the listen backlog given.
SERVER = r"""
import http.server, sys
class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = int(sys.argv[2])
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass
Server(("127.0.0.1", int(sys.argv[1])), Quiet).serve_forever()
"""


class Endpoint:
    """The one HTTP endpoint every service probes, as a process of its own (so it can die)."""

    def __init__(self, port, backlog, root):
        self.port, self.backlog, self.root, self.proc = port, backlog, root, None

    def describe(self):
        if self.backlog is None:
            return "`python3 -m http.server` (listen backlog 5)"
        return f"ThreadingHTTPServer with request_queue_size = {self.backlog}"

    def start(self):
        if self.backlog is None:
            args = [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1"]
        else:
            args = [sys.executable, "-c", SERVER, str(self.port), str(self.backlog)]
        self.proc = subprocess.Popen(args, cwd=self.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the endpoint did not listen on 127.0.0.1:{self.port}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def metrics(sock):
    """GET /metrics from the daemon: the exposition text."""
    c = UnixHTTP(sock, 30.0)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read().decode()
        if r.status != 200:
            raise RuntimeError(f"/metrics: HTTP {r.status}")
        return body
    finally:
        c.close()


def histogram(text):
    """{le: cumulative count} summed over every service's probe duration histogram."""
    out = {}
    for m in re.finditer(r'^candor_probe_duration_seconds_bucket\{[^}]*le="([^"]+)"\} (\d+)$', text, re.M):
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        out[le] = out.get(le, 0) + int(m.group(2))
    return out


def summed(text, name):
    """The sum of every series of `name` (None when the exposition has no such series)."""
    vals = [float(m.group(1)) for m in re.finditer(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)]
    return sum(vals) if vals else None


def quantile(before, after, q):
    """The upper bound of the bucket holding the q-th quantile of the probes between two reads."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0) for b in bounds]
    total = counts[-1] if counts else 0
    if total == 0:
        return None
    for b, c in zip(bounds, counts):
        if c >= q * total:
            return b
    return bounds[-1]


def tally(st, not_running, shared, held, unhealthy=None):
    """Add the names of the services of one status to the sets that look for each thing."""
    for s in st:
        if s["state"] != "running":
            not_running.add(s["name"])
        if s.get("shared_cause"):
            shared.add(s["name"])
        if s.get("restart_held"):
            held.add(s["name"])
        if unhealthy is not None and s["state"] == "unhealthy":
            unhealthy.add(s["name"])


def restarts(st):
    return sum(s["restarts"] for s in st)


class Herd:
    def __init__(self, a):
        self.a = a
        self.work = tempfile.mkdtemp(prefix="candor-herd.")
        self.tag = f"100000.{int(time.time() * 1000) % 10**9:09d}"  # sleep 100000 s; the fraction tags the case
        self.port = free_port()
        os.mkdir(f"{self.work}/www")
        open(f"{self.work}/www/index.html", "w").write("ok\n")
        self.ep = Endpoint(self.port, a.backlog, f"{self.work}/www")
        self.r = {"problems": []}
        self.proc = self.root = None

    def config(self):
        cfg = [f'[daemon]\nstate_dir = "{self.work}/state"\n']
        probe = f'probe = {{ http = {{ port = {self.port}, path = "/" }}, every = "{EVERY:g}s" }}\n'
        for i in range(self.a.n):
            cfg.append(f'[service.s{i}]\ncommand = ["sleep", "{self.tag}"]\n{probe}')
        return "\n".join(cfg)

    def status(self):
        return api(self.sock, "/v1/services", timeout=30.0)

    def wait_all_running(self, limit):
        """Seconds until every service is running (None if not within `limit`); status every 0.2 s."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit and self.proc.poll() is None:
            try:
                st = self.status()
                if len(st) == self.a.n and all(s["state"] == "running" for s in st):
                    return time.monotonic() - t0
            except Exception:
                pass
            time.sleep(0.2)
        return None

    def run(self):
        r, a = self.r, self.a
        self.ep.start()
        open(f"{self.work}/candor.toml", "w").write(self.config())
        self.sock = f"{self.work}/s.sock"
        log = open(f"{self.work}/daemon.log", "w")
        self.proc = subprocess.Popen([f"{common.BIN}/candor", "daemon", "-c", f"{self.work}/candor.toml",
                                      "--socket", self.sock], stdout=log, stderr=log)
        log.close()
        pid = self.proc.pid
        try:
            # -- phase 1: start, then the steady window
            r["up"] = self.wait_all_running(START_LIMIT)
            if r["up"] is None:
                r["problems"].append(f"not all {a.n} running within {START_LIMIT:g} s")
            if self.proc.poll() is not None:
                r["problems"].append(f"daemon exited with {self.proc.returncode}")
                return r
            try:
                self.root = common.cgroup_dir(api(self.sock, "/v1/daemon", timeout=30.0))
            except Exception:
                self.root = None
            m0, st0 = metrics(self.sock), self.status()
            c0, w0 = cpu_ticks(pid), time.monotonic()
            seen, shared1, held1, fresh = set(), set(), set(), []
            end = w0 + a.minutes * 60
            while time.monotonic() < end:
                time.sleep(min(EVERY, max(0.0, end - time.monotonic())))
                try:
                    st = self.status()
                except Exception as e:
                    r["problems"].append(f"status in the window: {e!r}"[:200])
                    continue
                tally(st, seen, shared1, held1)
                fresh += [p["latency_ms"] for s in st for p in s["probes"]]
            c1, w1 = cpu_ticks(pid), time.monotonic()
            m1, st1 = metrics(self.sock), self.status()
            r["window"] = w1 - w0
            r["cpu"] = (c1 - c0) / TICK / (w1 - w0) * 100
            r["restarts"] = restarts(st1) - restarts(st0)
            r["restarted"] = sum(1 for x, y in zip(st0, st1) if y["restarts"] > x["restarts"])
            h0, h1 = histogram(m0), histogram(m1)
            if h1:
                r["p50"], r["p99"] = quantile(h0, h1, 0.50), quantile(h0, h1, 0.99)
                r["latency_from"] = "/metrics histograms (bucket upper bounds)"
                r["probes"] = (h1.get(float("inf"), 0) - h0.get(float("inf"), 0))
            elif fresh:
                fresh.sort()
                r["p50"], r["p99"] = (fresh[int(q * (len(fresh) - 1))] / 1e3 for q in (0.5, 0.99))
                r["latency_from"] = "status probes[0].latency_ms samples"
            held_a, held_b = summed(m0, "candor_probe_held_total"), summed(m1, "candor_probe_held_total")
            r["held_probes"] = None if held_b is None else held_b - (held_a or 0)
            r["not_running"], r["shared1"], r["held1"] = len(seen), len(shared1), len(held1)

            # -- phase 2: the endpoint dies for --outage s, then returns
            budget = max(1, math.ceil(a.n * 0.10))
            r["budget"] = budget
            samples = []  # (monotonic s, restarts, all running)
            shared2, held2, unhealthy2, moved2, causes = set(), set(), set(), set(), {}

            def look():
                try:
                    st = self.status()
                except Exception as e:
                    r["problems"].append(f"status in the outage: {e!r}"[:200])
                    return None
                samples.append((time.monotonic(), restarts(st), all(s["state"] == "running" for s in st)))
                tally(st, moved2, shared2, held2, unhealthy2)
                try:
                    for c in api(self.sock, "/v1/daemon", timeout=30.0).get("shared_causes", []):
                        causes[c["target"]] = max(causes.get(c["target"], 0), c["services"])
                except Exception:
                    pass
                return st

            look()
            base = samples[0][1] if samples else restarts(self.status())
            self.ep.kill()
            t_down = time.monotonic()
            while time.monotonic() - t_down < a.outage:
                look()
                time.sleep(1.0)
            during = (samples[-1][1] if samples else base) - base
            self.ep.start()
            t_back = time.monotonic()
            first_back = None
            while time.monotonic() - t_back < BACK_LIMIT:
                st = look()
                if st is not None and all(s["state"] == "running" for s in st):
                    first_back = time.monotonic()
                    break
                time.sleep(0.5)
            # Two probe periods more: restarts that come after all ran again count too, and
            # "back to all running" is the first poll after the last one that saw any other state.
            settle = time.monotonic()
            while time.monotonic() - settle < 2 * EVERY:
                look()
                time.sleep(1.0)
            back = None
            if first_back is not None:
                after_back = [x for x in samples if x[0] >= t_back]
                bad = [i for i, x in enumerate(after_back) if not x[2]]
                back = (after_back[bad[-1] + 1][0] if bad and bad[-1] + 1 < len(after_back)
                        else first_back if not bad else None)
                back = None if back is None else back - t_back
            r["back"] = back
            if first_back is None:
                r["problems"].append(f"not all running within {BACK_LIMIT:g} s of the endpoint's return")
            elif back is None:
                r["problems"].append(f"all ran again, then not all within {2 * EVERY:g} s")
            r["during"] = during
            r["after"] = samples[-1][1] - base - during
            r["max10"] = max((y[1] - x[1] for i, x in enumerate(samples) for y in samples[i:]
                              if y[0] - x[0] <= 10.0), default=0)
            r["shared2"], r["held2"], r["unhealthy2"] = len(shared2), len(held2), len(unhealthy2)
            r["moved2"] = len(moved2)
            r["causes"] = causes
            return r
        except Exception as e:
            r["problems"].append(f"bench error: {e!r}"[:300])
            return r
        finally:
            self.cleanup()

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            try:
                subprocess.run([f"{common.BIN}/candor", "--socket", self.sock, "shutdown"],
                               capture_output=True, timeout=120)
                self.proc.wait(timeout=120)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.ep.kill()
        for pids in common.tagged(self.tag).values():
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        remove_cgroups(self.root)
        if self.r["problems"]:
            self.r["kept"] = self.work
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def secs(x):
    return "never" if x is None else f"{x:.1f} s"


def lat(x):
    return "-" if x is None else ("> 10 s" if x == float("inf") else f"≤ {x * 1e3:g} ms")


def report(a, r, ep):
    held = "n/a (no candor_probe_held_total)" if r.get("held_probes") is None else f"{r['held_probes']:g}"
    causes = ", ".join(f"{t} ({n})" for t, n in sorted(r.get("causes", {}).items())) or "none"
    lines = [
        "| services | endpoint | start to all running | restarts in window | daemon CPU | probe p50 / p99 "
        "| outage restarts (during / after) | most in 10 s (budget) | shared_cause / restart_held / unhealthy seen "
        "| endpoint back to all running |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {a.n} | {'backlog 5' if a.backlog is None else f'backlog {a.backlog}'} | {secs(r.get('up'))} "
        f"| {r.get('restarts', '-')} ({r.get('restarted', '-')} services) "
        f"| {r['cpu']:.2f} % | {lat(r.get('p50'))} / {lat(r.get('p99'))} "
        f"| {r.get('during', '-')} / {r.get('after', '-')} | {r.get('max10', '-')} ({r.get('budget', '-')}) "
        f"| {r.get('shared2', '-')} / {r.get('held2', '-')} / {r.get('unhealthy2', '-')} | {secs(r.get('back'))} |"
        if "cpu" in r else f"| {a.n} | - | {secs(r.get('up'))} | - | - | - | - | - | - | - |",
        f"# window {r.get('window', 0):.0f} s: {r.get('probes', '-')} probes, latency from "
        f"{r.get('latency_from', '-')}; probes held back by the daemon: {held}; services seen not running "
        f"{r.get('not_running', '-')}, with a shared_cause {r.get('shared1', '-')}, restart_held {r.get('held1', '-')}; "
        f"outage {a.outage:g} s: services seen not running {r.get('moved2', '-')}; shared causes GET /v1/daemon "
        f"named (most services): {causes}",
    ]
    if r["problems"]:
        lines.append(f"# problems: {'; '.join(r['problems'])}" + (f" (work dir kept: {r['kept']})" if r.get("kept") else ""))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="services (default 1000)")
    p.add_argument("--minutes", type=float, default=10, help="the steady window (default 10)")
    p.add_argument("--outage", type=float, default=30, help="seconds the endpoint is down (default 30)")
    p.add_argument("--backlog", type=int, default=None,
                   help="a ThreadingHTTPServer with this listen backlog instead of `python3 -m http.server` (5)")
    p.add_argument("--out", default=os.path.join(common.ROOT, "bench", "results", "herd.txt"),
                   help="the results file, appended to (default bench/results/herd.txt)")
    a = p.parse_args()
    if not os.path.exists(f"{common.BIN}/candor"):
        common.build()
    git = lambda *args: subprocess.run(["git", *args], cwd=common.ROOT, capture_output=True, text=True).stdout.strip()
    head_sha = git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if git("status", "--porcelain", "-uno") else "")
    command = "bench/herd.py " + " ".join(sys.argv[1:])
    herd = Herd(a)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    r = herd.run()
    text = (f"# {command}\n# {started}; binaries {common.BIN} (HEAD {head_sha}); {os.cpu_count()} cores; "
            f"endpoint {herd.ep.describe()}; probes every {EVERY:g}s (timeout 1s, failures 3)\n"
            + report(a, r, herd.ep) + "\n")
    print(text, end="")
    with open(a.out, "a") as f:
        f.write(text + "\n")
    return 1 if r["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
