#!/usr/bin/env python3
"""Which functions a running daemon uses, for the release link's symbol order
(crates/candor/hot-symbols.txt, read by crates/candor/build.rs).

The binary's code is mapped from its file in the kernel's 64 KiB fault-around windows: a
steady state that runs 1,100 functions scattered over 5 MiB of code keeps most of those
windows resident (about 2.7 MiB of PSS at 100 services). Laid out together, they fit in a few.

This runs the release daemon under callgrind (valgrind) on a mixed load — 100 services: idle
ones, http/tcp/exec probes every 2 s, ones that log a line a second — waits until all run,
zeroes the counters, then for 30 s reads status (table, --json, one service) and logs every
2 s, and writes every function that ran in that window (mangled names, sorted) to the file.
Start-up code is left out on purpose: it runs once and is shed (shed.rs).

usage: bench/hot_symbols.py [--out crates/candor/hot-symbols.txt]   (needs valgrind)
"""
import argparse, glob, os, re, shutil, subprocess, tempfile, time

import common


def config(work, port):
    parts = [f'[daemon]\nstate_dir = "{work}/state"\n']
    for i in range(40):
        parts.append(f'[service.n{i}]\ncommand = ["/bin/sleep", "100000"]\n')
    for i in range(20):
        parts.append(f'[service.h{i}]\ncommand = ["/bin/sleep", "100000"]\n'
                     f'probe = {{ http = {{ port = {port}, path = "/" }}, every = "2s" }}\n')
    for i in range(20):
        parts.append(f'[service.t{i}]\ncommand = ["/bin/sleep", "100000"]\n'
                     f'probe = {{ tcp = "127.0.0.1:{port}", every = "2s" }}\n')
    for i in range(10):
        parts.append(f'[service.e{i}]\ncommand = ["/bin/sleep", "100000"]\n'
                     f'probe = {{ exec = ["/bin/true"], every = "2s" }}\n')
    for i in range(10):
        parts.append(f'[service.l{i}]\ncommand = ["/bin/sh", "-c", "while true; do echo line $$; sleep 1; done"]\n')
    return "\n".join(parts)


def functions(out_file):
    """Every function with cost in a callgrind dump (fn= lines; names may be compressed)."""
    names, ran = {}, set()
    for line in open(out_file, errors="replace"):
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            kind, ident, name = m.groups()
            if name:
                names[ident] = name
            if kind == "fn":
                ran.add(ident)
    found = {names[i] for i in ran if i in names}
    # Unnamed code ("0x...") and valgrind's own frames are not symbols the linker knows.
    return sorted(n for n in found if not n.startswith("0x") and not n.startswith("("))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(common.ROOT, "crates", "candor", "hot-symbols.txt"))
    ap.add_argument("--seconds", type=int, default=30)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="candor-hot-")
    port = common.free_port()
    server = subprocess.Popen(["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    open(f"{work}/candor.toml", "w").write(config(work, port))
    sock = f"{work}/state/candor.sock"
    dump = f"{work}/callgrind.out"
    daemon = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={dump}",
         f"{common.BIN}/candor", "daemon", "-c", f"{work}/candor.toml"],
        stdout=open(f"{work}/daemon.log", "w"), stderr=subprocess.STDOUT)
    cli = lambda *a: subprocess.run([f"{common.BIN}/candor", "--socket", sock, *a],
                                    capture_output=True, text=True, timeout=120)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            r = cli("status")
            if r.returncode == 0 and r.stdout.count(" running ") >= 100:
                break
            time.sleep(2)
        else:
            raise SystemExit("the services did not all start under valgrind")
        time.sleep(10)  # past start-up and the shed
        subprocess.run(["callgrind_control", "-z"], capture_output=True)
        end = time.time() + args.seconds
        while time.time() < end:
            for a in (["status", "--json"], ["status"], ["status", "h1"], ["logs", "l1", "-n", "5"]):
                cli(*a)
            time.sleep(2)
        subprocess.run(["callgrind_control", "-d"], capture_output=True)
        time.sleep(2)
        dumps = sorted(glob.glob(f"{dump}.*"))
        if not dumps:
            raise SystemExit("callgrind wrote no dump")
        names = functions(dumps[-1])
    finally:
        cli("shutdown")
        daemon.wait(timeout=120)
        server.kill()
        shutil.rmtree(work, ignore_errors=True)
    with open(args.out, "w") as f:
        f.write("\n".join(names) + "\n")
    print(f"{len(names)} functions ran in the steady state; written to {args.out}")


if __name__ == "__main__":
    main()
