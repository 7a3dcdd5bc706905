#!/usr/bin/env python3
"""A service that follows Candor's protocol (docs/protocol.md) with the standard library only:
socket activation (LISTEN_*), readiness and stopping (NOTIFY_SOCKET), the watchdog
(WATCHDOG_USEC) and a shutdown within the stop's grace (CANDOR_STOP_TIMEOUT_MS). Each
connection gets one line: "<pid> <service> <run> <socket name>"."""
import os, signal, socket, threading, time

def notify(msg):  # one datagram to $NOTIFY_SOCKET; a leading '@' is an abstract name
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if addr:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(msg.encode(), "\0" + addr[1:] if addr[0] == "@" else addr)

assert os.environ.get("LISTEN_PID") == str(os.getpid()), "these sockets are not for this process"
names = os.environ.get("LISTEN_FDNAMES", "").split(":")
me = f"{os.getpid()} {os.environ.get('CANDOR_SERVICE')} {os.environ.get('CANDOR_RUN_ID')}"
grace = int(os.environ.get("CANDOR_STOP_TIMEOUT_MS", "10000")) / 1000
stopping, threads = threading.Event(), []

def stop(*_):  # stop accepting, answer what was accepted, then go: well within `grace`
    notify("STOPPING=1"); stopping.set()
    for t in threads: t.join(grace / 2)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)

def serve(fd, name):
    with socket.socket(fileno=fd) as listener:
        listener.settimeout(0.1)  # a connection not accepted waits for another run or instance
        while not stopping.is_set():
            try: conn, _ = listener.accept()
            except TimeoutError: continue
            with conn:
                try:  # a client that is gone (Candor's socket check is one) costs nothing
                    conn.sendall(f"{me} {name}\n".encode())
                except OSError:
                    pass

for i in range(int(os.environ["LISTEN_FDS"])):
    threads.append(threading.Thread(target=serve, args=(3 + i, names[i]), daemon=True))
    threads[-1].start()
print(f"serving {len(names)} activated sockets {names}; stop grace {grace}s", flush=True)
notify("READY=1")
usec = int(os.environ.get("WATCHDOG_USEC", "0"))
while True:
    time.sleep(usec / 2e6 if usec else 3600)
    notify("WATCHDOG=1")
