#!/usr/bin/env python3
"""Cost of sampling: daemon CPU (% of one core) and RSS over a window, for N `sleep`
services, with fd/memory sampling off, on (default 5 s period), and on with exec probes.

usage: bench/sampling.py [--seconds 60] [--sizes 100,1000]   (builds release binaries first)
"""
import argparse, os, sys, tempfile, time

from common import TICK, Daemon, build, cpu_ticks, rss


def run(n, mode, seconds):
    work = tempfile.mkdtemp(prefix="candor-sampling.")
    every = "0s" if mode == "off" else "5s"
    cfg = [f'[daemon]\nstate_dir = "{work}/state"\nsample_every = "{every}"\n']
    probe = '\nprobe = { exec = ["true"], every = "10s" }\nready = "started"' if mode == "on+probes" else ""
    for i in range(n):
        cfg.append(f'[service.s{i}]\ncommand = ["sleep", "100000"]{probe}\n')
    d = Daemon(work, "\n".join(cfg))
    try:
        d.wait_running(n)
        time.sleep(5)  # let start-up settle
        t0, c0 = time.time(), cpu_ticks(d.pid)
        peak = rss(d.pid)
        while time.time() - t0 < seconds:
            time.sleep(1)
            peak = max(peak, rss(d.pid))
        c1, t1 = cpu_ticks(d.pid), time.time()
        cpu = (c1 - c0) / TICK / (t1 - t0) * 100
        return cpu, peak
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--sizes", default="100,1000")
    a = ap.parse_args()
    build()
    print(f"# bench/sampling.py --seconds {a.seconds} --sizes {a.sizes}; {os.cpu_count()} cores, kernel {os.uname().release}")
    print("# daemon CPU as % of one core over the window, and peak RSS; sampling period 5 s when on")
    for n in [int(x) for x in a.sizes.split(",")]:
        modes = ["off", "on"] + (["on+probes"] if n <= 100 else [])
        for mode in modes:
            cpu, peak = run(n, mode, a.seconds)
            print(f"services {n:5}  sampling {mode:10}  cpu {cpu:6.2f} %  peak rss {peak / 2**20:6.1f} MiB", flush=True)


if __name__ == "__main__":
    sys.exit(main())
