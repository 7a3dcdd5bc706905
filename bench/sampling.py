#!/usr/bin/env python3
"""Cost of sampling: daemon CPU (% of one core) and RSS over a window, for N `sleep`
services, with fd/memory sampling off, on (default 5 s period), and on with exec probes.

usage: bench/sampling.py [--seconds 60] [--sizes 100,1000]   (builds release binaries first)
"""
import argparse, json, os, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime


def rss(pid):
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE


def run(n, mode, seconds):
    work = tempfile.mkdtemp(prefix="candor-sampling.")
    sock = f"{work}/s.sock"
    every = "0s" if mode == "off" else "5s"
    cfg = [f'[daemon]\nstate_dir = "{work}/state"\nsample_every = "{every}"\n']
    probe = '\nprobe = { exec = ["true"], every = "10s" }\nready = "started"' if mode == "on+probes" else ""
    for i in range(n):
        cfg.append(f'[service.s{i}]\ncommand = ["sleep", "100000"]{probe}\n')
    open(f"{work}/candor.toml", "w").write("\n".join(cfg))
    log = open(f"{work}/daemon.log", "w")
    d = subprocess.Popen([f"{BIN}/candor", "daemon", "-c", f"{work}/candor.toml", "--socket", sock], stdout=log, stderr=log)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                out = subprocess.run([f"{BIN}/candor", "--socket", sock, "status", "--json"], capture_output=True, text=True, timeout=30)
                st = json.loads(out.stdout)
                if len(st) == n and all(s["state"] == "running" for s in st):
                    break
            except Exception:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("services did not all start")
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
        subprocess.run([f"{BIN}/candor", "--socket", sock, "shutdown"], capture_output=True, timeout=300)
        d.wait(timeout=300)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--sizes", default="100,1000")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--bins", "-q"], cwd=ROOT, check=True)
    print(f"# bench/sampling.py --seconds {a.seconds} --sizes {a.sizes}; {os.cpu_count()} cores, kernel {os.uname().release}")
    print("# daemon CPU as % of one core over the window, and peak RSS; sampling period 5 s when on")
    for n in [int(x) for x in a.sizes.split(",")]:
        modes = ["off", "on"] + (["on+probes"] if n <= 100 else [])
        for mode in modes:
            cpu, peak = run(n, mode, a.seconds)
            print(f"services {n:5}  sampling {mode:10}  cpu {cpu:6.2f} %  peak rss {peak / 2**20:6.1f} MiB", flush=True)


if __name__ == "__main__":
    sys.exit(main())
