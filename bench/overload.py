#!/usr/bin/env python3
"""Overload: N `sleep` services, each with an exec probe every E s, on a 2-core box. Over a
window (from all running, or from 20 s if they never all run) it counts services shown as
anything but running (a healthy service must never be
failed, unhealthy or stopping), then times `candor shutdown` and counts processes left behind.
A stop must always end (invariant 5) however busy the daemon is.

usage: bench/overload.py [--sizes 400,1000] [--every 5s] [--seconds 60]
       CANDOR_BIN=/other/target/release bench/overload.py ...   (a paired run against another build)
"""
import argparse, os, random, subprocess, sys, tempfile, time
from collections import Counter

from common import BIN, TICK, Daemon, build, cpu_ticks


def survivors(tag):
    out = subprocess.run(["pgrep", "-f", f"sleep {tag}"], capture_output=True, text=True).stdout
    return len(out.split())


def run(n, every, seconds):
    work = tempfile.mkdtemp(prefix="candor-overload.")
    tag = str(100000 + random.randrange(800000))
    cfg = [f'[daemon]\nstate_dir = "{work}/state"\n']
    for i in range(n):
        cfg.append(
            f'[service.s{i}]\ncommand = ["sleep", "{tag}"]\n'
            f'probe = {{ exec = ["true"], every = "{every}" }}\n'
        )
    d = Daemon(work, "\n".join(cfg))
    t0 = time.time()
    worst, seen_bad = Counter(), Counter()
    all_running_at = None
    c0 = None
    try:
        while time.time() - t0 < seconds:
            try:
                st = d.status()
            except Exception:
                st = None
            if not isinstance(st, list):  # not answering yet, or an error object
                time.sleep(1)
                continue
            states = Counter(s["state"] for s in st)
            if all_running_at is None and states.get("running", 0) == n:
                all_running_at = time.time() - t0
            # The window opens once all run, or after a 20 s grace if they never do.
            if c0 is None and (all_running_at is not None or time.time() - t0 > 20):
                c0, tc = cpu_ticks(d.pid), time.time()
            if c0 is not None:
                for k, v in states.items():
                    if k != "running":
                        worst[k] = max(worst[k], v)
                for s in st:
                    if s["state"] in ("failed", "unhealthy", "stopping"):
                        seen_bad[s["reason"][:80]] += 1
            time.sleep(1)
        cpu = (cpu_ticks(d.pid) - c0) / TICK / (time.time() - tc) * 100 if c0 is not None else float("nan")
        t_stop = time.time()
        try:
            subprocess.run([f"{BIN}/candor", "--socket", d.sock, "shutdown"], capture_output=True, timeout=60)
            d.proc.wait(timeout=120)
            shutdown = time.time() - t_stop
        except subprocess.TimeoutExpired:
            shutdown = float("inf")  # not answered, or not done, in time
        left = survivors(tag)
        return all_running_at, dict(worst), cpu, shutdown, left, seen_bad.most_common(3)
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
        subprocess.run(["pkill", "-9", "-f", f"sleep {tag}"], capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="400,1000")
    ap.add_argument("--every", default="5s")
    ap.add_argument("--seconds", type=int, default=60)
    a = ap.parse_args()
    if "CANDOR_BIN" not in os.environ:
        build()
    print(f"# bench/overload.py --sizes {a.sizes} --every {a.every} --seconds {a.seconds}; binaries {BIN}; {os.cpu_count()} cores")
    for n in [int(x) for x in a.sizes.split(",")]:
        up, worst, cpu, shutdown, left, bad = run(n, a.every, a.seconds)
        up_s = f"{up:5.1f} s" if up is not None else "never"
        print(f"services {n:5}  all running after {up_s}  worst not-running {worst or '{}'}  "
              f"cpu {cpu:5.1f} %  shutdown {shutdown:5.1f} s  processes left {left}", flush=True)
        for reason, count in bad:
            print(f"    seen {count:5}x: {reason}")


if __name__ == "__main__":
    sys.exit(main())
