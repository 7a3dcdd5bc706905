#!/usr/bin/env python3
"""The rollout bench's client: a NEW TCP connection per request, at a steady rate, against
host:port; each request's outcome and latency, summed up per window.

One request: connect, `GET / HTTP/1.1` with `Connection: close`, read to EOF; latency from
just before the connect to EOF. Outcomes: ok (status 200), refused (ECONNREFUSED), reset (the
connection was reset or closed before a whole answer came), timeout (no whole answer within
--timeout s, 10), bad status (an answer that is not 200), and error:NAME for any other OSError.
Requests are launched on a fixed schedule (open loop: a slow answer never delays the next
request); how late the client itself launched them is reported as `launch lag`, so a busy
client is told apart from a slow server.

Windows come from marks on stdin, one a line: `mark NAME T` (T: the driver's time.monotonic(),
one clock for every process on Linux) or `mark NAME` (now); `stop` ends the load (or EOF, or
--duration). A request belongs to the window its start falls in: before the first mark
(`steady`), from one mark to the next (named after the mark that opens it). Latency
percentiles are over ok requests.

With --json, `started` is printed on stdout once the first request is under way. At the end:
a JSON document (--json FILE, else stdout) with the marks, each window's counts,
p50/p99/max, and with --records every request as [start, latency_s, outcome, pid, version]
(start on the monotonic clock). Standalone: `bench/rollout/load.py --port 8080 --duration 10`.
"""
import argparse, asyncio, errno, json, sys, threading, time

KINDS = ["ok", "refused", "reset", "timeout", "bad status"]


def pct(xs, q):
    """The q-th percentile of sorted xs (nearest rank), or None."""
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def parse(data):
    """(outcome, pid, version) of a whole answer read to EOF."""
    if not data:
        return "reset", None, None
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[0].startswith(b"HTTP/"):
        return "reset", None, None
    if status[1] != b"200":
        return "bad status", None, None
    fields = dict(f.split("=", 1) for f in body.decode(errors="replace").split() if "=" in f)
    return "ok", fields.get("pid"), fields.get("version")


async def request(host, port, timeout):
    """One request on its own connection: (start, latency s, outcome, pid, version)."""
    start = time.monotonic()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            data = await reader.read()
        outcome, pid, version = parse(data)
    except TimeoutError:
        outcome, pid, version = "timeout", None, None
    except ConnectionRefusedError:
        outcome, pid, version = "refused", None, None
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, asyncio.IncompleteReadError):
        outcome, pid, version = "reset", None, None
    except OSError as e:
        outcome, pid, version = f"error:{errno.errorcode.get(e.errno, e.errno)}", None, None
    finally:
        if writer is not None:
            writer.close()
    return start, time.monotonic() - start, outcome, pid, version


def window_of(start, marks):
    name = "steady"
    for m, t in marks:
        if start >= t:
            name = m
    return name


def summarize(records, marks, lags):
    windows = {}
    for name in ["steady"] + [m for m, _ in marks]:
        windows.setdefault(name, [])
    for r in records:
        windows[window_of(r[0], marks)].append(r)
    out = {}
    for name, rs in windows.items():
        counts = {k: 0 for k in KINDS}
        for r in rs:
            counts[r[2]] = counts.get(r[2], 0) + 1
        lat = sorted(r[1] for r in rs if r[2] == "ok")
        out[name] = {
            "requests": len(rs), "counts": counts, "failed": len(rs) - counts["ok"],
            "p50": pct(lat, 50), "p99": pct(lat, 99), "max": lat[-1] if lat else None,
            "versions": sorted({r[4] for r in rs if r[4] is not None}),
            "pids": len({r[3] for r in rs if r[3] is not None}),
        }
    lags.sort()
    return {"windows": out, "marks": marks, "launch_lag_p99": pct(lags, 99),
            "launch_lag_max": lags[-1] if lags else None}


async def run(a):
    loop = asyncio.get_running_loop()
    marks, stop = [], asyncio.Event()

    def on_line(line):
        parts = line.split()
        if parts[:1] == ["mark"] and len(parts) >= 2:
            marks.append((parts[1], float(parts[2]) if len(parts) > 2 else time.monotonic()))
        elif parts[:1] == ["stop"]:
            stop.set()

    def read_stdin():
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(on_line, line)
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:
            pass  # the loop has ended

    if not a.no_stdin:
        threading.Thread(target=read_stdin, daemon=True).start()
    tasks, lags = [], []
    t0 = time.monotonic()
    i = 0
    while not stop.is_set() and (a.duration is None or time.monotonic() - t0 < a.duration):
        due = t0 + i / a.rate
        now = time.monotonic()
        if due > now:
            try:
                await asyncio.wait_for(stop.wait(), due - now)
                break
            except TimeoutError:
                pass
        lags.append(max(0.0, time.monotonic() - due))
        tasks.append(asyncio.ensure_future(request(a.host, a.port, a.timeout)))
        if i == 0 and a.json:
            print("started", flush=True)  # for a driver waiting to begin its steady window
        i += 1
    records = [list(r) for r in await asyncio.gather(*tasks)]
    marks.sort(key=lambda m: m[1])
    doc = summarize(records, marks, lags)
    doc.update(rate=a.rate, timeout=a.timeout, started=t0, ended=time.monotonic(), cpu_s=time.process_time())
    if a.records:
        doc["records"] = records
    return doc


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, default=200, help="requests per second (default 200)")
    p.add_argument("--timeout", type=float, default=10, help="seconds a request may take (default 10)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--no-stdin", action="store_true", help="read no marks from stdin (use --duration)")
    p.add_argument("--records", action="store_true", help="keep every request in the JSON")
    p.add_argument("--json", default=None, help="write the JSON here (default: stdout)")
    a = p.parse_args()
    doc = asyncio.run(run(a))
    text = json.dumps(doc)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)
    else:
        print(text)
    for name, w in doc["windows"].items():
        ms = lambda x: "-" if x is None else f"{x * 1e3:.1f} ms"
        fails = ", ".join(f"{k} {v}" for k, v in w["counts"].items() if k != "ok" and v) or "none"
        print(f"{name}: {w['requests']} requests, failed: {fails}; p50 {ms(w['p50'])}, p99 {ms(w['p99'])}, "
              f"max {ms(w['max'])}", file=sys.stderr)


if __name__ == "__main__":
    main()
