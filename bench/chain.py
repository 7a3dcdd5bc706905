#!/usr/bin/env python3
"""Start fast: a chain of N services, each `after` the one before, each ready by an HTTP
probe with `every = E`. Reports the time from the daemon's start to all running, and of
`candor restart s0 --wait` (one link), p50 over R rounds. Each service listens 50 ms after it is spawned, as a real server
takes a moment to start. With a probe period of E and one
period per link before the first probe, the chain takes about N x E; probing quickly until
ready brings it near the services' own start-up time.

usage: bench/chain.py [--links 10] [--every 2s] [--rounds 3]
       CANDOR_BIN=/other/target/release bench/chain.py ...   (a paired run against another build)
"""
import argparse, os, statistics, sys, tempfile, time

from common import BIN, Daemon, build, free_port


def one(links, every):
    work = tempfile.mkdtemp(prefix="candor-chain.")
    cfg = [f'[daemon]\nstate_dir = "{work}/state"\n']
    for i in range(links):
        port = free_port()
        after = f'after = ["s{i - 1}"]\n' if i else ""
        cfg.append(
            # Like a real server, it takes a moment (here 50 ms) before it listens.
            f'[service.s{i}]\ncommand = ["/bin/sh", "-c", "sleep 0.05; exec {BIN}/candor-zoo healthy --port {port}"]\n{after}'
            f'ready = "probe"\nprobe = {{ http = {{ port = {port}, path = "/health" }}, every = "{every}" }}\n'
        )
    t0 = time.time()
    d = Daemon(work, "\n".join(cfg))
    try:
        while True:
            try:
                st = d.status()
                if isinstance(st, list) and len(st) == links and all(s["state"] == "running" for s in st):
                    break
            except Exception:
                pass
            if time.time() - t0 > 120:
                raise RuntimeError("the chain did not come up")
            time.sleep(0.02)
        up = time.time() - t0
        t1 = time.time()
        d.cli("restart", "s0", "--wait")
        restart = time.time() - t1
        return up, restart
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--links", type=int, default=10)
    ap.add_argument("--every", default="2s")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if "CANDOR_BIN" not in os.environ:
        build()
    ups, restarts = [], []
    for _ in range(a.rounds):
        up, restart = one(a.links, a.every)
        ups.append(up)
        restarts.append(restart)
    print(f"# bench/chain.py --links {a.links} --every {a.every} --rounds {a.rounds}; binaries {BIN}")
    print(f"chain of {a.links}, probe every {a.every}: all running after p50 {statistics.median(ups):.2f} s "
          f"(min {min(ups):.2f}, max {max(ups):.2f}); `restart s0 --wait` p50 {statistics.median(restarts):.2f} s")


if __name__ == "__main__":
    sys.exit(main())
