#!/usr/bin/env python3
"""Detection latency: time from fault injection to the status flip, per fault kind.

For each probe period, one daemon runs RUNS services of each kind, with faults staggered:
  death    `healthy`, SIGKILLed by this script          -> event `failed` (restart = "never")
  handler  `handler-dead` stamps when its handler dies  -> event `unhealthy` (http probe)
  socket   `unlink-own-socket` stamps when it unlinks   -> event `unhealthy` (declared socket)
Latency = the daemon's event time - the fault's own timestamp. Probes: failures = 1,
timeout = 1s, on_unhealthy = "alert". Target: death < 10 ms (pidfd, no polling); probe
faults <= one period + timeout.

usage: bench/detect.py [--runs 20] [--periods 1,5]    (builds release binaries first)
"""
import argparse, json, os, random, signal, subprocess, sys, tempfile, time
from datetime import datetime

from common import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")


def cli(sock, *args):
    out = subprocess.run([f"{BIN}/candor", "--socket", sock, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"candor {args}: {out.stderr}")
    return out.stdout


def ms(at):
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1000.0


def pct(xs, p):
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, round(p / 100 * (len(xs) - 1))))]


def run_period(period, runs):
    work = tempfile.mkdtemp(prefix="candor-detect.")
    sock = f"{work}/s.sock"
    zoo = f"{BIN}/candor-zoo"
    cfg = [f'[daemon]\nstate_dir = "{work}/state"\n']
    for i in range(runs):
        cfg.append(f'[service.death-{i}]\ncommand = ["{zoo}", "healthy"]\nready = "notify"\nrestart = "never"\n')
        after = 2.0 + i * 0.137 + random.random() * period
        port = free_port()
        cfg.append(
            f'[service.handler-{i}]\ncommand = ["{zoo}", "handler-dead", "--after", "{after:.3f}s", "--port", "{port}", "--stamp", "{work}/handler-{i}"]\n'
            f'ready = "notify"\non_unhealthy = "alert"\n'
            f'probe = {{ http = {{ port = {port}, path = "/health" }}, every = "{period}s", timeout = "1s", failures = 1 }}\n'
        )
        after = 2.0 + i * 0.151 + random.random() * period
        cfg.append(
            f'[service.socket-{i}]\ncommand = ["{zoo}", "unlink-own-socket", "--after", "{after:.3f}s", "--socket", "{work}/u{i}.sock", "--stamp", "{work}/socket-{i}"]\n'
            f'ready = "notify"\non_unhealthy = "alert"\nsockets = ["{work}/u{i}.sock"]\n'
            f'probe = {{ http = {{ socket = "{work}/u{i}.sock", path = "/health" }}, every = "{period}s", timeout = "1s", failures = 1 }}\n'
        )
    with open(f"{work}/candor.toml", "w") as f:
        f.write("\n".join(cfg))
    log = open(f"{work}/daemon.log", "w")
    daemon = subprocess.Popen([f"{BIN}/candor", "daemon", "-c", f"{work}/candor.toml", "--socket", sock], stdout=log, stderr=log)
    try:
        deadline = time.time() + 30
        while True:
            try:
                st = json.loads(cli(sock, "status", "--json"))
                if all(s["pid"] for s in st if s["name"].startswith("death-")):
                    break
            except Exception:
                pass
            if time.time() > deadline:
                raise RuntimeError("services did not start")
            time.sleep(0.05)
        pids = {s["name"]: s["pid"] for s in st}
        kills = {}
        for i in range(runs):
            time.sleep(0.05 + random.random() * 0.05)
            name = f"death-{i}"
            kills[name] = time.time_ns() / 1e6
            os.kill(pids[name], signal.SIGKILL)
        wait_until = time.time() + 2.0 + runs * 0.16 + 2 * period + 5
        while time.time() < wait_until:
            time.sleep(0.5)
        events = json.loads(cli(sock, "events", "--json", "-n", "100000"))
    finally:
        try:
            cli(sock, "shutdown")
        except Exception:
            daemon.kill()
        daemon.wait(timeout=60)
    first = {}
    for e in events:
        key = (e["service"], e["state"])
        first.setdefault(key, ms(e["at"]))
    results = {"death": [], "handler": [], "socket": []}
    missed = {"death": 0, "handler": 0, "socket": 0}
    for i in range(runs):
        t = first.get((f"death-{i}", "failed"))
        if t is None:
            missed["death"] += 1
        else:
            results["death"].append(t - kills[f"death-{i}"])
        for kind in ("handler", "socket"):
            try:
                stamps = [l.split() for l in open(f"{work}/{kind}-{i}")]
                fault = [int(s[1]) / 1e6 for s in stamps if s[0] == "fault"][0]
                results[kind].append(first[(f"{kind}-{i}", "unhealthy")] - fault)
            except (OSError, IndexError, KeyError):
                missed[kind] += 1
    return results, missed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--periods", default="1,5")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--bins", "-q"], cwd=ROOT, check=True)
    print(f"# bench/detect.py --runs {a.runs} --periods {a.periods}; {os.cpu_count()} cores, kernel {os.uname().release}")
    print("# latency from the fault (its own timestamp) to the daemon's state-change event, ms")
    for p in [float(x) for x in a.periods.split(",")]:
        res, missed = run_period(p, a.runs)
        for kind, xs in res.items():
            target = "< 10" if kind == "death" else f"<= {p * 1000 + 1000:.0f}"
            line = f"period {p:g}s  {kind:8} n={len(xs):2}"
            if xs:
                line += f"  p50 {pct(xs, 50):8.1f}  p95 {pct(xs, 95):8.1f}  max {max(xs):8.1f}  (target {target})"
            if missed[kind]:
                line += f"  MISSED {missed[kind]}"
            print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
