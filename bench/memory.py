#!/usr/bin/env python3
"""Where the idle daemon's memory goes: N `sleep` services (default 100 and 1000, no probes),
the daemon's /proc/PID/smaps grouped by what each mapping is, PSS in KiB, read 5 s after all
run. The daemon holds glibc's malloc to two arenas (mallopt M_ARENA_MAX at start); the results
file also keeps the run from before that, with glibc's default arenas.

Groups: the binary's code (r-x), its read-only data (.rodata, .eh_frame: r--), its relocated
data (.data.rel.ro, .data), the main heap, other anonymous mappings (glibc arenas of threads,
thread stacks, tokio's and SQLite's allocations above the mmap threshold), the main stack,
shared libraries (libc, libm: shared with every process, so little PSS).

usage: bench/memory.py [--sizes 100,1000]
"""
import argparse, os, re, shutil, tempfile, time

import common

BIN_NAME = "candor"


def groups(pid):
    out, cur = {}, None
    for line in open(f"/proc/{pid}/smaps"):
        m = re.match(r"^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$", line)
        if m:
            perm, path = m.group(1), m.group(2).strip()
            if path.endswith("/" + BIN_NAME):
                cur = {"r-xp": "binary code", "r--p": "binary rodata/eh_frame"}.get(perm, "binary data")
            elif path == "[heap]":
                cur = "heap (main arena)"
            elif path == "[stack]":
                cur = "main stack"
            elif path.startswith("/"):
                cur = "shared libraries"
            elif path == "":
                cur = "anonymous (thread arenas, stacks, large allocations)"
            else:
                cur = path  # [vdso], [vvar]
            continue
        if line.startswith("Pss:"):
            out[cur] = out.get(cur, 0) + int(line.split()[1])
    return out


def measure(n):
    work = tempfile.mkdtemp(prefix=f"candor-mem-{n}-")
    cfg = "".join(f'[service.s{i}]\ncommand = ["sleep", "100000"]\n\n' for i in range(n))
    d = common.Daemon(work, cfg)
    try:
        d.wait_running(n)
        time.sleep(5)
        g = groups(d.pid)
        threads = len(os.listdir(f"/proc/{d.pid}/task"))
    finally:
        d.stop()
        shutil.rmtree(work, ignore_errors=True)
    return g, threads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000")
    a = ap.parse_args()
    common.build()
    binary = os.path.join(common.BIN, BIN_NAME)
    print(f"# bench/memory.py --sizes {a.sizes}; binary {os.path.getsize(binary) / 2**20:.1f} MiB on disk")
    for n in [int(x) for x in a.sizes.split(",")]:
        g, threads = measure(n)
        total = sum(g.values())
        print(f"## {n} idle services: PSS {total} KiB ({total / 1024:.1f} MiB), {threads} threads")
        for k, v in sorted(g.items(), key=lambda kv: -kv[1]):
            if v:
                print(f"   {v:7d} KiB  {k}")


if __name__ == "__main__":
    main()
