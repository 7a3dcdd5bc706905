"""Shared by the Python benches: start a release daemon on a config, wait for its services,
read its CPU time and memory from /proc, shut it down."""
import datetime, http.client, json, os, re, socket, subprocess, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# CANDOR_BIN points the benches at another build (e.g. an older commit's, for a paired run).
BIN = os.environ.get("CANDOR_BIN") or os.path.join(ROOT, "target", "release")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port():
    """A TCP port on loopback that nothing listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def build():
    subprocess.run(["cargo", "build", "--release", "--bins", "-q"], cwd=ROOT, check=True)


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime


def rss(pid):
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE


def peak_rss(pid):
    """VmHWM: the highest RSS the process ever had, in bytes."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Daemon:
    """`candor daemon` on `config` (a string) in `work`, with `cli(...)` for its CLI."""

    def __init__(self, work, config):
        self.work, self.sock = work, f"{work}/s.sock"
        open(f"{work}/candor.toml", "w").write(config)
        log = open(f"{work}/daemon.log", "w")
        self.proc = subprocess.Popen(
            [f"{BIN}/candor", "daemon", "-c", f"{work}/candor.toml", "--socket", self.sock],
            stdout=log, stderr=log)
        self.pid = self.proc.pid

    def cli(self, *args, timeout=60):
        out = subprocess.run([f"{BIN}/candor", "--socket", self.sock, *args],
                             capture_output=True, text=True, timeout=timeout)
        return out.stdout

    def status(self):
        return json.loads(self.cli("status", "--json"))

    def wait_running(self, n, limit=120):
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                st = self.status()
                if len(st) == n and all(s["state"] == "running" for s in st):
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError("services did not all start")

    def stop(self):
        subprocess.run([f"{BIN}/candor", "--socket", self.sock, "shutdown"], capture_output=True, timeout=300)
        self.proc.wait(timeout=300)


class UnixHTTP(http.client.HTTPConnection):
    """HTTP over the daemon's Unix socket."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def api(sock, path, timeout=5.0):
    """GET `path` from the daemon at `sock`: the JSON body, or an exception."""
    c = UnixHTTP(sock, timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{path}: HTTP {r.status}: {body[:200]!r}")
        return json.loads(body)
    finally:
        c.close()


def pct(xs, q):
    """The q-th percentile of xs (nearest rank)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def wall(at):
    """An API timestamp (RFC 3339, UTC) as Unix seconds."""
    return datetime.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def tagged(tag):
    """{argv element starting with `tag`: [pids]} over every process on the machine."""
    out = {}
    t = tag.encode()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            argv = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        for a in argv:
            if a.startswith(t):
                out.setdefault(a.decode(), []).append(int(p))
    return out


def cgroup_dir(info):
    """The instance's cgroup dir from GET /v1/daemon's answer (None without cgroups)."""
    if info.get("containment") != "cgroup":
        return None
    m = re.search(r"(/\S+)", info.get("containment_detail", ""))
    return m.group(1).rstrip(".,;") if m else None


def remove_cgroups(root):
    """rmdir the instance's (empty) service cgroups and the instance cgroup itself."""
    if not root or not os.path.isdir(root):
        return
    for d in os.listdir(root):
        if os.path.isdir(f"{root}/{d}"):
            try:
                os.rmdir(f"{root}/{d}")
            except OSError:
                pass
    try:
        os.rmdir(root)
    except OSError:
        pass
