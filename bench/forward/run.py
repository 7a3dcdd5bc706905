#!/usr/bin/env python3
"""Forwarding under a flood: one service writes numbered lines at --rate lines/s (default
100 000; `candor-zoo log-flood`, no rate limit) for --seconds, and every line goes to one
[[daemon.forward]] target. Reported per case: the daemon's CPU over the flood (utime+stime from
/proc/PID/stat, % of one core), its peak RSS (VmHWM, its whole life), the lines stored, the
lines the target accepted per second during the flood, how long after the flood it took to
send the rest (`behind` back to 0), its sent / retried / dropped, and what the receiver counted.

Cases:
  none         no forwarding: what storing the flood costs alone
  syslog-unix  RFC 5424 datagrams to rsyslog's imuxsock (Debian's rsyslog, writing a file)
  syslog-tcp   RFC 5424 octet-counted frames to rsyslog's imtcp
  otlp         OTLP/HTTP protobuf to a collector that decodes each request with PyPI's
               opentelemetry-proto and counts its records (bench/forward/otlp_sink.py; the
               venv of scripts/test.sh, target/otlp-proto, or $CANDOR_OTLP_PYTHON)

Goal (issue 30): at 100 k lines/s, forwarding costs the daemon <= 15 % of a core and its memory
stays bounded. The receivers run on the same machine and take CPU too (printed beside).

The result is printed and appended to --out (bench/results/forward.txt) after the command line
that made it. Candor is $CANDOR_BIN, else target/release (built first).

usage: bench/forward/run.py [--seconds 10] [--rate 100000] [--cases none,syslog-unix,syslog-tcp,otlp]
                            [--out FILE] [--no-build]
"""
import argparse, datetime, os, shutil, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bench/, for common
import common  # noqa: E402
from common import BIN, TICK, Daemon, api, build, cpu_ticks, free_port, peak_rss  # noqa: E402

RSYSLOGD = "/usr/sbin/rsyslogd"
OTLP_PYTHON = os.environ.get("CANDOR_OTLP_PYTHON") or os.path.join(
    common.ROOT, "target", "otlp-proto", "bin", "python")
DRAIN_LIMIT = 300  # s to send what is left after the flood


class Rsyslog:
    """rsyslogd on a Unix socket (parsing RFC 5424) and TCP, every message's text to a file."""

    def __init__(self, work):
        self.socket, self.tcp, self.out = f"{work}/log.sock", free_port(), f"{work}/syslog.out"
        os.makedirs(f"{work}/rsyslog-work")
        conf = f"""global(workDirectory="{work}/rsyslog-work")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{self.socket}" RateLimit.Interval="0" UseSpecialParser="off" ParseHostname="on")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{self.tcp}")
template(name="msg" type="string" string="%msg%\\n")
*.* action(type="omfile" file="{self.out}" template="msg")
"""
        open(f"{work}/rsyslog.conf", "w").write(conf)
        self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", f"{work}/rsyslog.conf", "-i", f"{work}/rsyslogd.pid"])
        deadline = time.time() + 20
        while not os.path.exists(self.socket):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("rsyslogd did not start")
            time.sleep(0.05)

    def count(self):
        try:
            with open(self.out, "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except OSError:
            return 0

    def pid(self):
        return self.proc.pid

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class OtlpSink:
    """bench/forward/otlp_sink.py on a port of its own."""

    def __init__(self, work):
        self.port, self.file = free_port(), f"{work}/otlp.count"
        self.proc = subprocess.Popen([OTLP_PYTHON, f"{HERE}/otlp_sink.py", str(self.port), self.file],
                                     stdout=subprocess.PIPE, text=True)
        if not self.proc.stdout.readline().startswith("listening"):
            raise RuntimeError("otlp_sink.py did not start")

    def count(self):
        try:
            return int(open(self.file).read())
        except (OSError, ValueError):
            return 0

    def pid(self):
        return self.proc.pid

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def receiver(case, work):
    """(receiver or None, the [[daemon.forward]] section)."""
    if case == "none":
        return None, ""
    if case.startswith("syslog"):
        r = Rsyslog(work)
        to = f"unix://{r.socket}" if case == "syslog-unix" else f"tcp://127.0.0.1:{r.tcp}"
        return r, f'[[daemon.forward]]\nsyslog = "{to}"\n'
    r = OtlpSink(work)
    return r, f'[[daemon.forward]]\notlp = "http://127.0.0.1:{r.port}"\n'


def forward_stats(d):
    f = api(d.sock, "/v1/daemon", timeout=30.0).get("forward", [])
    return f[0] if f else None


def run(case, a):
    work = tempfile.mkdtemp(prefix="candor-forward.")
    rec, forward = receiver(case, work)
    cfg = (f'[daemon]\nstate_dir = "{work}/state"\n\n{forward}\n'
           f'[service.flood]\ncommand = ["{BIN}/candor-zoo", "log-flood", "--lines-per-sec", "{a.rate}"]\n'
           f'logs = {{ rate = 0 }}\n')
    d = Daemon(work, cfg)
    try:
        d.wait_running(1)
        d.cli("stop", "flood", "--wait")
        time.sleep(1)
        s0 = forward_stats(d)
        rc0 = rec.count() if rec else 0
        c0, t0 = cpu_ticks(d.pid), time.time()
        r0 = cpu_ticks(rec.pid()) if rec else 0
        d.cli("start", "flood")
        time.sleep(a.seconds)
        c1, t1 = cpu_ticks(d.pid), time.time()
        r1 = cpu_ticks(rec.pid()) if rec else 0
        s1 = forward_stats(d)
        d.cli("stop", "flood", "--wait")
        drain = 0.0
        if s1 is not None:
            while True:
                s2 = forward_stats(d)
                if s2["behind"] == 0 or time.time() - t1 > DRAIN_LIMIT:
                    break
                time.sleep(0.1)
            drain = time.time() - t1
        logs = [x for x in d.status() if x["name"] == "flood"][0]["logs"]
        # The receiver writes what it got a little after it acknowledged it.
        time.sleep(1)
        secs = t1 - t0
        return {
            "cpu": (c1 - c0) / TICK / secs * 100,
            "receiver_cpu": (r1 - r0) / TICK / secs * 100,
            "peak_rss": peak_rss(d.pid),
            "stored": logs["lines"],
            "stored_dropped": logs["dropped"],
            "secs": secs,
            "fwd_rate": (s1["sent"] - s0["sent"]) / secs if s1 else 0,
            "drain": drain,
            "sent": s2["sent"] - s0["sent"] if s1 else 0,
            "retried": s2["retried"] if s1 else 0,
            "dropped": s2["dropped"] if s1 else 0,
            "received": (rec.count() - rc0) if rec else 0,
        }
    finally:
        d.stop()
        if rec:
            rec.stop()
        shutil.rmtree(work, ignore_errors=True)


def line(case, r):
    return (f"{case:<12} cpu {r['cpu']:5.1f} %  peak rss {r['peak_rss'] / 2**20:5.1f} MiB  "
            f"stored {r['stored'] / r['secs'] / 1000:6.1f} k lines/s (dropped {r['stored_dropped']})  "
            f"forwarded {r['fwd_rate'] / 1000:6.1f} k lines/s during, rest in {r['drain']:5.1f} s after  "
            f"sent {r['sent']} retried {r['retried']} dropped {r['dropped']} received {r['received']}  "
            f"receiver cpu {r['receiver_cpu']:5.1f} %")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rate", type=int, default=100_000)
    p.add_argument("--cases", default="none,syslog-unix,syslog-tcp,otlp")
    p.add_argument("--out", default=os.path.join(common.ROOT, "bench", "results", "forward.txt"))
    p.add_argument("--no-build", action="store_true")
    a = p.parse_args()
    if not a.no_build and not os.environ.get("CANDOR_BIN"):
        build()
    lines = [f"# bench/forward/run.py {' '.join(sys.argv[1:])}; {os.cpu_count()} cores, "
             f"kernel {os.uname().release}, {datetime.date.today()}"]
    for case in a.cases.split(","):
        lines.append(line(case, run(case, a)))
        print(lines[-1], flush=True)
    with open(a.out, "a") as f:
        f.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
