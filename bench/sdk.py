#!/usr/bin/env python3
"""candor-sdk side by side: each zoo program that turns a fault into an incident, beside its
twin on the SDK (crates/candor-twins), under a release Candor, one pair per daemon.

  emfile     out of fds with a connection waiting (seed 000): lines/s written and CPU % over
             WINDOW seconds once both are in the fault
  reconnect  a refused connect retried every 10 ms with a client per attempt (seed 003):
             open fds at the start and after WINDOW seconds
  sigterm    SIGTERM to a process whose shutdown never ends (seed 004), stop timeout 5 s:
             time `candor stop --wait` took, and how the process ended
  stuck      the loop that does the work blocks while a thread could still ping, watchdog 2 s:
             time from the stall to the restart

usage: bench/sdk.py [--window 10]        (builds release binaries first)
"""
import argparse, json, os, shutil, sys, tempfile, time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BIN, TICK, Daemon, build, cpu_ticks, free_port  # noqa: E402

ZOO, TWIN = f"{BIN}/candor-zoo", f"{BIN}/candor-twin"


def ts(at):
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def pair(config):
    work = tempfile.mkdtemp(prefix="candor-sdk-bench.")
    d = Daemon(work, f'[daemon]\nstate_dir = "{work}/state"\nsample_every = "500ms"\n\n{config}')
    d.work_dir = work
    d.wait_running(2)
    return d


def done(d):
    d.stop()
    shutil.rmtree(d.work_dir, ignore_errors=True)


def one(d, name):
    return json.loads(d.cli("status", name, "--json"))


def written(s):
    logs = s["logs"]
    return logs["lines"] + logs["dropped"] + logs.get("folded", 0)


def wait(what, f, limit=60):
    end = time.time() + limit
    while time.time() < end:
        v = f()
        if v:
            return v
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def emfile(window):
    d = pair("""
[service.zoo]
command = ["%s", "emfile-spin"]
limits = { nofile = 1024 }

[service.twin]
command = ["%s", "emfile-spin"]
limits = { nofile = 1024 }
""" % (ZOO, TWIN))
    wait("the twin's episode", lambda: "accept on web" in d.cli("logs", "twin"))
    time.sleep(1)
    pids = {n: one(d, n)["pid"] for n in ("zoo", "twin")}
    t0 = {n: cpu_ticks(p) for n, p in pids.items()}
    l0 = {n: written(one(d, n)) for n in pids}
    time.sleep(window)
    out = {}
    for n, p in pids.items():
        cpu = (cpu_ticks(p) - t0[n]) / TICK / window * 100
        lines = (written(one(d, n)) - l0[n]) / window
        out[n] = (lines, cpu)
    done(d)
    return out


def reconnect(window):
    port = free_port()
    d = pair("""
[service.zoo]
command = ["%s", "reconnect-leak", "--every", "10ms", "--port", "%d"]

[service.twin]
command = ["%s", "reconnect-leak", "--every", "10ms", "--port", "%d"]
""" % (ZOO, port, TWIN, port))
    first = {n: wait("fds", lambda n=n: (one(d, n).get("fds") or {}).get("count")) for n in ("zoo", "twin")}
    time.sleep(window)
    out = {n: (first[n], one(d, n)["fds"]["count"]) for n in first}
    out["twin_lines"] = sum(1 for l in d.cli("logs", "twin").splitlines() if "reconnect peer:" in l)
    done(d)
    return out


def sigterm():
    d = pair("""
[service.zoo]
command = ["%s", "half-dead"]
stop = { timeout = "5s" }

[service.twin]
command = ["%s", "sigterm-hang"]
stop = { timeout = "5s" }
""" % (ZOO, TWIN))
    out = {}
    for n in ("zoo", "twin"):
        t = time.time()
        d.cli("stop", n, "--wait")
        took = time.time() - t
        out[n] = (took, one(d, n)["last_exit"]["description"])
    done(d)
    return out


def stuck():
    d = pair("""
[service.zoo]
command = ["%s", "stuck-loop", "--after", "2s"]
ready = "notify"
watchdog = "2s"

[service.twin]
command = ["%s", "stuck-loop", "--after", "2000"]
ready = "notify"
watchdog = "2s"
""" % (ZOO, TWIN))
    def stall_at(n, words):
        for l in d.cli("logs", n).splitlines():
            if words in l:
                return ts(l.split()[0])
    tw = wait("the twin's restart", lambda: one(d, "twin")["restarts"] >= 1, limit=60)
    events = json.loads(d.cli("events", "--json", "-n", "1000"))
    restart = next(e for e in events if e["service"] == "twin" and "watchdog" in e.get("reason", ""))
    twin_delay = ts(restart["at"]) - stall_at("twin", "the loop is blocked")
    zoo_stall = wait("the zoo's stall", lambda: stall_at("zoo", "the loop is deadlocked"))
    time.sleep(max(0, 30 - (time.time() - zoo_stall)))
    zoo = one(d, "zoo")
    done(d)
    return {"twin": twin_delay, "zoo": (zoo["restarts"], zoo["state"], time.time() - zoo_stall)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=float, default=10)
    a = ap.parse_args()
    build()
    print(f"# bench/sdk.py --window {a.window:g}  ({time.strftime('%Y-%m-%d')}, release build)")
    e = emfile(a.window)
    print(f"emfile     zoo  {e['zoo'][0]:10.0f} lines/s  {e['zoo'][1]:5.1f} % CPU")
    print(f"           twin {e['twin'][0]:10.1f} lines/s  {e['twin'][1]:5.1f} % CPU")
    r = reconnect(a.window)
    print(f"reconnect  zoo  fds {r['zoo'][0]} -> {r['zoo'][1]} in {a.window:g} s")
    print(f"           twin fds {r['twin'][0]} -> {r['twin'][1]} in {a.window:g} s ({r['twin_lines']} log line)")
    s = sigterm()
    print(f"sigterm    zoo  stop took {s['zoo'][0]:.2f} s, {s['zoo'][1]}")
    print(f"           twin stop took {s['twin'][0]:.2f} s, {s['twin'][1]} (its backstop, with its reason in its log)")
    k = stuck()
    print(f"stuck      zoo  {k['zoo'][0]} restarts, still {k['zoo'][1]} {k['zoo'][2]:.0f} s after its loop deadlocked")
    print(f"           twin restarted {k['twin']:.2f} s after its loop blocked (watchdog 2 s)")


if __name__ == "__main__":
    main()
