#!/usr/bin/env python3
"""Log flood: one service writes as fast as it can for N seconds; report the daemon's peak RSS,
its CPU (% of one core), bytes on disk, and lines kept / dropped / folded.

Cases:
  yes       `yes 'Socket accept error: Too many open files (os error 24)'` (seed 000), default
            limits (1000 lines/s, burst 5000, 64 MiB): identical lines, folded
  distinct  `candor-zoo log-flood` numbered lines, default limits: rate-limited
  capped    the same with max_bytes = 4MiB and rate 0 (no limit): the disk cap at work
  ingest    the same, rate 0, default caps: the end-to-end unthrottled ingest rate (pipe to disk)
  json      pino-style JSON lines (a level, a message, a few fields; 4096 distinct ones over and
            over), rate 0: ingest with each line's level read (a structured stream)
  text      the same lines' words without the JSON syntax, rate 0: the same ingest where the
            stream is recognised as plain after its first 16 lines (`json` - `text` = the cost
            of reading levels)

usage: bench/flood.py [--seconds 10] [--cases yes,distinct,capped,ingest]  (builds release first)
"""
import argparse, os, subprocess, sys, tempfile, time

from common import BIN, TICK, Daemon, build, cpu_ticks, peak_rss

LINE = "Socket accept error: Too many open files (os error 24)"

# Writes 4096 distinct lines, as JSON (argv[1] == "json") or as text, over and over, as fast as
# the pipe takes them.
GEN = r'''
import os, sys
levels = ["info", "info", "info", "warn", "error", "debug"]
def json_line(i):
    return ('{"level":"%s","time":1733566800%03d,"pid":4242,"hostname":"web-1",'
            '"req":{"method":"GET","url":"/api/items/%d"},"msg":"request completed","ms":%d}'
            % (levels[i % 6], i % 1000, i, i % 97))
def text_line(i):
    # As long as the JSON line: both cases move the same bytes.
    text = ("%s 1733566800%03d pid 4242 web-1 GET /api/items/%d request completed in %d ms"
            % (levels[i % 6], i % 1000, i, i % 97))
    return text.ljust(len(json_line(i)), ".")
line = json_line if sys.argv[1] == "json" else text_line
block = "".join(line(i) + "\n" for i in range(4096)).encode()
while True:
    os.write(1, block)
'''


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs
               if not f.endswith(".sock") and os.path.isfile(os.path.join(d, f)))


def run(case, seconds):
    work = tempfile.mkdtemp(prefix="candor-flood.")
    zoo = f"{BIN}/candor-zoo"
    cmd = {
        "yes": f'["yes", "{LINE}"]',
        "distinct": f'["{zoo}", "log-flood", "--lines-per-sec", "0"]',
        "capped": f'["{zoo}", "log-flood", "--lines-per-sec", "0"]',
        "ingest": f'["{zoo}", "log-flood", "--lines-per-sec", "0"]',
        "json": f'["python3", "{work}/gen.py", "json"]',
        "text": f'["python3", "{work}/gen.py", "text"]',
    }[case]
    with open(f"{work}/gen.py", "w") as f:
        f.write(GEN)
    no_limit = "\nlogs = { rate = 0 }"
    logs = {"capped": '\nlogs = { rate = 0, max_bytes = "4MiB" }', "ingest": no_limit, "json": no_limit,
            "text": no_limit}.get(case, "")
    # Start the service stopped-then-started so the window covers the flood from its start.
    cfg = (f'[daemon]\nstate_dir = "{work}/state"\n\n'
           f'[service.flood]\ncommand = {cmd}{logs}\n')
    d = Daemon(work, cfg)
    try:
        d.wait_running(1)
        d.cli("stop", "flood", "--wait")
        time.sleep(1)
        c0, t0 = cpu_ticks(d.pid), time.time()
        d.cli("start", "flood")
        time.sleep(seconds)
        c1, t1 = cpu_ticks(d.pid), time.time()
        disk = du(f"{work}/state")
        d.cli("stop", "flood", "--wait")
        s = [x for x in d.status() if x["name"] == "flood"][0]["logs"]
        return {
            "cpu": (c1 - c0) / TICK / (t1 - t0) * 100,
            "peak_rss": peak_rss(d.pid),
            "disk": disk,
            "kept": s["lines"],
            "dropped": s["dropped"],
            "folded": s.get("folded", 0),
            "secs": t1 - t0,
        }
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--cases", default="yes,distinct,capped,ingest")
    a = ap.parse_args()
    build()
    print(f"# bench/flood.py --seconds {a.seconds} --cases {a.cases}; {os.cpu_count()} cores, kernel {os.uname().release}")
    print("# peak RSS = the daemon's VmHWM over its whole life; CPU = % of one core during the flood")
    for case in a.cases.split(","):
        r = run(case, a.seconds)
        seen = r["kept"] + r["dropped"] + r["folded"]
        print(f"{case:9} peak rss {r['peak_rss'] / 2**20:5.1f} MiB  cpu {r['cpu']:5.1f} %  disk {r['disk'] / 2**20:7.2f} MiB  "
              f"kept {r['kept']:>9}  dropped {r['dropped']:>10}  folded {r['folded']:>10}  "
              f"read {seen / r['secs'] / 1e6:5.2f} M lines/s  kept {r['kept'] / r['secs'] / 1e3:7.1f} k lines/s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
