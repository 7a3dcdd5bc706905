#!/usr/bin/env python3
"""What exec probes cost when the service runs as another user: 1000 `sleep` services, each with
an exec probe (`/bin/true`) every 5 s, without and with `user = "nobody"`, alternating. Until
issue 26 a probe of a service with a user was started with fork (posix_spawn cannot switch
users), the rest with posix_spawn (CLONE_VM|CLONE_VFORK); since, both take one path: clone with
CLONE_VM and no CLONE_VFORK on a stack of its own (the keeper never waits for the exec), the
user switched by raw syscalls in the child. Daemon CPU (% of one core) over 30 s after all run,
and services seen not running at the end.

usage: bench/probe_user.py [--pairs 2]   (as root)
"""
import argparse, os, shutil, subprocess, tempfile, time, json

import common


def run(user):
    d = tempfile.mkdtemp(prefix="candor-probe-user-")
    cfg = "".join(
        f'[service.s{i}]\ncommand = ["/bin/sleep", "100000"]\n'
        + ('user = "nobody"\n' if user else "")
        + 'probe = { exec = ["/bin/true"], every = "5s" }\n\n'
        for i in range(1000))
    daemon = common.Daemon(d, cfg)
    try:
        daemon.wait_running(1000, limit=300)
        time.sleep(10)
        t0 = common.cpu_ticks(daemon.pid)
        time.sleep(30)
        t1 = common.cpu_ticks(daemon.pid)
        bad = sum(1 for s in daemon.status() if s["state"] != "running")
    finally:
        daemon.stop()
        shutil.rmtree(d, ignore_errors=True)
    return (t1 - t0) / common.TICK / 30 * 100, bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2)
    args = ap.parse_args()
    print(f"# bench/probe_user.py --pairs {args.pairs}; {common.BIN}")
    for _ in range(args.pairs):
        for user in (False, True):
            cpu, bad = run(user)
            print(f"user={'nobody' if user else '-':6}  daemon CPU {cpu:5.2f} % of a core  not running {bad}", flush=True)


if __name__ == "__main__":
    main()
