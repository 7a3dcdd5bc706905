"""The rollout bench's peers: PM2 (cluster and fork mode) and supervisord, each installed by the
bench itself (PM2 with `npm ci` from bench/rollout/package-lock.json; supervisord from PyPI into
a venv in target/), started in a temp dir of its own, and told to deploy VERSION=2 the way a
user would."""
import json, os, re, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
APP = os.path.join(HERE, "app.js")
NODE = "/usr/bin/node"
PM2_VERSION = json.load(open(os.path.join(HERE, "package.json")))["dependencies"]["pm2"]
PM2 = os.path.join(HERE, "node_modules", ".bin", "pm2")
SUPERVISOR_VERSION = "4.3.0"
SUPERVISOR_VENV = os.path.join(ROOT, "target", "supervisor")


def quiet(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def install_pm2():
    """PM2 into bench/rollout/node_modules (npm ci from the committed lockfile), once."""
    have = quiet([NODE, "-p", "require('pm2/package.json').version"], cwd=HERE)
    if have.returncode == 0 and have.stdout.strip() == PM2_VERSION:
        return None
    print(f"installing PM2 {PM2_VERSION} with `npm ci` into bench/rollout/node_modules", flush=True)
    r = quiet(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, timeout=600)
    return None if r.returncode == 0 else f"npm ci failed: {(r.stderr or r.stdout).strip()[-300:]}"


def install_supervisor():
    """PyPI's supervisor in a venv at target/supervisor, once."""
    sd = os.path.join(SUPERVISOR_VENV, "bin", "supervisord")
    if os.path.exists(sd) and quiet([sd, "--version"]).stdout.strip() == SUPERVISOR_VERSION:
        return None
    print(f"installing PyPI's supervisor {SUPERVISOR_VERSION} in target/supervisor (a venv)", flush=True)
    r = quiet([sys.executable, "-m", "venv", SUPERVISOR_VENV])
    if r.returncode == 0:
        r = quiet([f"{SUPERVISOR_VENV}/bin/pip", "install", "-q", "--disable-pip-version-check",
                   f"supervisor=={SUPERVISOR_VERSION}"], timeout=600)
    return None if r.returncode == 0 else f"pip install supervisor failed: {(r.stderr or r.stdout).strip()[-300:]}"


def alive(pid):
    """The process exists and is not a zombie."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Pm2:
    """PM2 with its own PM2_HOME; cluster mode x4 or fork mode x1, `pm2 reload --update-env`."""

    def __init__(self, mode, instances):
        self.mode, self.instances = mode, instances
        self.name = f"pm2-{mode}"
        self.label = (f"PM2 {PM2_VERSION} {mode} mode x{instances}: edit `env.VERSION` in ecosystem.config.js, "
                      f"`pm2 reload ecosystem.config.js --update-env` (wait_ready, listen_timeout 10000, "
                      f"kill_timeout 10000)")

    def skip_reason(self):
        return install_pm2()

    def env(self):
        return dict(os.environ, PM2_HOME=f"{self.work}/pm2")

    def write(self, version):
        app = {
            "name": "app", "script": APP, "args": [self.tag], "interpreter": NODE,
            "exec_mode": self.mode, "instances": self.instances,
            # PM2's graceful start: wait for process.send('ready'), at most listen_timeout ms.
            "wait_ready": True, "listen_timeout": 10000,
            # The app drains and exits by itself on SIGINT; SIGKILL only after 10 s.
            "kill_timeout": 10000,
            "env": {"PORT": str(self.port), "VERSION": str(version)},
        }
        with open(self.config, "w") as f:
            f.write(f"module.exports = {{ apps: [{json.dumps(app, indent=2)}] }};\n")

    def cli(self, *args, timeout=120):
        return quiet([PM2, *args], cwd=self.work, env=self.env(), timeout=timeout)

    def start(self, work, port, tag):
        self.work, self.port, self.tag = work, port, tag
        self.config = f"{work}/ecosystem.config.js"
        self.write(1)
        r = self.cli("start", self.config)
        if r.returncode != 0:
            raise RuntimeError(f"pm2 start: {(r.stderr or r.stdout)[-300:]}")

    def up(self):
        r = self.cli("jlist", timeout=30)
        try:
            procs = json.loads(r.stdout[r.stdout.index("["):])
        except ValueError:
            return None
        procs = [p for p in procs if p.get("name") == "app"]
        if len(procs) != self.instances or any(p["pm2_env"].get("status") != "online" or not p.get("pid")
                                               for p in procs):
            return None
        return [p["pid"] for p in procs]

    def deploy(self):
        self.write(2)
        return subprocess.Popen([PM2, "reload", self.config, "--update-env"], cwd=self.work, env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def notes(self):
        return []

    def stop(self):
        self.cli("kill", timeout=60)


class Supervisord:
    """supervisord in the foreground with one program on the port; the deploy edits the
    program's `environment=` and runs `supervisorctl update` (what applies an edited program:
    `supervisorctl restart` alone keeps the environment it was started with)."""

    name = "supervisord"
    label = (f"supervisord {SUPERVISOR_VERSION}, one program on the port: edit `environment=` in the config, "
             f"`supervisorctl update` (stops the changed program, then starts it; startsecs 1, stopwaitsecs 10)")

    def skip_reason(self):
        return install_supervisor()

    def write(self, version):
        w = self.work
        text = f"""[unix_http_server]
file={w}/supervisor.sock

[supervisord]
logfile={w}/supervisord.log
pidfile={w}/supervisord.pid
childlogdir={w}
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{w}/supervisor.sock

[program:app]
command={NODE} {APP} {self.tag}
environment=PORT="{self.port}",VERSION="{version}"
startsecs=1
stopsignal=TERM
stopwaitsecs=10
autorestart=true
stdout_logfile={w}/app.log
redirect_stderr=true
"""
        with open(self.config, "w") as f:
            f.write(text)

    def ctl(self, *args, timeout=60):
        return quiet([f"{SUPERVISOR_VENV}/bin/supervisorctl", "-c", self.config, *args], timeout=timeout)

    def start(self, work, port, tag):
        self.work, self.port, self.tag = work, port, tag
        self.config = f"{work}/supervisord.conf"
        self.write(1)
        log = open(f"{work}/supervisord.out", "w")
        self.proc = subprocess.Popen([f"{SUPERVISOR_VENV}/bin/supervisord", "-c", self.config],
                                     stdout=log, stderr=log)
        log.close()

    def up(self):
        m = re.search(r"^app\s+RUNNING\s+pid (\d+)", self.ctl("status", "app").stdout, re.M)
        return [int(m.group(1))] if m else None

    def deploy(self):
        self.write(2)
        return subprocess.Popen([f"{SUPERVISOR_VENV}/bin/supervisorctl", "-c", self.config, "update"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def notes(self):
        return []

    def stop(self):
        if self.proc.poll() is None:
            self.ctl("shutdown")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

