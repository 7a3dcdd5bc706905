"""The rollout bench's Candor cases: the app under `candor daemon -c FILE` in a temp dir, the
deploy an edit of VERSION in the service's `env` and `candor reload -c FILE`; replicas and update
strategies when the build has them (`candor check` says), stop-first today."""
import json, os, subprocess, time

import common
from peers import APP, NODE, quiet


class Candor:
    """One Candor case. `kind`: rolling (4 replicas, one activated listener), overlap (1 instance,
    activated), stop-first-held (today's: activated, no `replicas`/`update`) or own-port (no
    activation: the app binds PORT itself)."""

    LABELS = {
        "rolling": "Candor, 4 replicas sharing one activated TCP listener, update rolling (max_surge 1, "
                   "max_unavailable 0, min_ready 1s)",
        "overlap": "Candor, 1 instance, activated TCP listener, update overlap",
        "stop-first-held": "Candor, 1 instance, activated TCP listener held by Candor, stop-first (today's reload)",
        "own-port": "Candor, 1 instance binding its own port (no activation), stop-first",
    }

    def __init__(self, kind, bin_dir):
        self.kind, self.bin = kind, bin_dir
        self.name = f"candor-{kind}"
        self.instances = 4 if kind == "rolling" else 1
        self.label = self.LABELS[kind] + ": edit `env.VERSION`, `candor reload -c FILE`"
        self.proc, self.rollout_seen, self.group_seen = None, [], None

    def config(self, version, port, state_dir):
        env = f'VERSION = "{version}", READY_FD = "9"' + (f', PORT = "{port}"' if self.kind == "own-port" else "")
        lines = [
            "[daemon]", f'state_dir = "{state_dir}"', "",
            "[service.app]",
            f'command = ["{NODE}", "{APP}", "{self.tag}"]',
            f"env = {{ {env} }}",
            "ready = { fd = 9 }",
            'stop = { timeout = "10s" }',
        ]
        if self.kind != "own-port":
            lines.append(f'sockets = [{{ listen = "127.0.0.1:{port}", activate = true }}]')
        if self.kind == "rolling":
            lines += ["replicas = 4",
                      'update = { strategy = "rolling", max_surge = 1, max_unavailable = 0, min_ready = "1s" }']
        elif self.kind == "overlap":
            lines += ["replicas = 1", 'update = { strategy = "overlap" }']
        return "\n".join(lines) + "\n"

    def candor(self, *args, timeout=60):
        return quiet([f"{self.bin}/candor", *args], timeout=timeout)

    def prepare(self, work, port, tag):
        self.work, self.port, self.tag = work, port, tag
        self.file, self.state = f"{work}/candor.toml", f"{work}/state"
        with open(self.file, "w") as f:
            f.write(self.config(1, port, self.state))

    def skip_reason(self):
        if not os.path.exists(f"{self.bin}/candor"):
            return (f"no candor binary in {self.bin}: `cargo build --release -p candor`, "
                    f"or give --candor-bin DIR")
        return None

    def check_reason(self):
        """Why this build cannot run the case (`candor check` rejects its config), or None."""
        r = self.candor("check", "-c", self.file)
        if r.returncode == 0:
            return None
        first = next((ln.strip() for ln in (r.stderr + r.stdout).splitlines() if ln.strip()), "")
        first = first.replace(self.file, "candor.toml").split("; expected one of")[0]
        return f"this build's `candor check` rejects the config (exit {r.returncode}): {first[:200]}"

    def start(self, work, port, tag):
        log = open(f"{work}/daemon.log", "w")
        self.proc = subprocess.Popen([f"{self.bin}/candor", "daemon", "-c", self.file], stdout=log, stderr=log)
        log.close()
        self.has_rollout = self.candor("rollout", "status", "--help").returncode == 0

    def up(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"candor daemon exited with {self.proc.returncode} (see {self.work}/daemon.log)")
        r = self.candor("-c", self.file, "status", "--json", timeout=30)
        try:
            st = json.loads(r.stdout)
        except ValueError:
            return None
        if not isinstance(st, list):  # {"error": ...} while the daemon is not answering yet
            return None
        # A replicated service has a row of its own (`replicas`: counts and the rollout) and one
        # row per instance (`app@1`, with `group`); an unreplicated one just its row.
        row = next((s for s in st if s.get("name") == "app"), None)
        instances = [s for s in st if s.get("group") == "app"] or ([row] if row else [])
        if len(instances) != self.instances or any(s["state"] != "running" or not s.get("pid") for s in instances):
            return None
        replicas = (row or {}).get("replicas")
        if replicas:
            rollout = replicas.get("rollout")
            if rollout and rollout.get("state") != "done":
                return None
            self.group_seen = (f"group row: {row['state']}, \"{row['reason']}\"; generation "
                               f"{replicas.get('generation')}, rollout "
                               + (f"{rollout.get('state')} ({rollout.get('why')}; {rollout.get('updated')}/"
                                  f"{rollout.get('total')} updated)" if rollout else "none"))
        if self.has_rollout:
            out = self.candor("-c", self.file, "rollout", "status", "app", timeout=30)
            self.rollout_seen.append(f"exit {out.returncode}: {(out.stdout + out.stderr).strip()[:300]}")
        return [s["pid"] for s in instances]

    def deploy(self):
        with open(self.file, "w") as f:
            f.write(self.config(2, self.port, self.state))
        return subprocess.Popen([f"{self.bin}/candor", "-c", self.file, "reload"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def notes(self):
        group = [f"`candor status --json` when the deploy was seen done: {self.group_seen}"] if self.group_seen else []
        return group + self._rollout_notes()

    def _rollout_notes(self):
        if not self.has_rollout:
            return ["`candor rollout status` is not in this build: the deploy's end is read from "
                    "`candor status --json` (every instance running, none with an old pid, the group's rollout done) "
                    "and the answers"]
        return [f"`candor rollout status app` when the deploy was seen done: {self.rollout_seen[-1]}"] \
            if self.rollout_seen else []

    def stop(self):
        if self.proc is None:
            return
        sock, problem = f"{self.state}/candor.sock", None
        deadline = time.monotonic() + 10  # a daemon stopped right after its start may not listen yet
        while self.proc.poll() is None and not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        root = None
        try:
            root = common.cgroup_dir(common.api(sock, "/v1/daemon"))
        except Exception:
            pass
        exited = self.proc.poll()
        if exited is not None:
            problem = f"the daemon had exited by itself (status {exited}) before the bench shut it down"
        else:
            self.candor("-c", self.file, "shutdown", timeout=120)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problem = "the daemon did not exit within 60 s of `candor shutdown` (killed)"
        common.remove_cgroups(root)
        if problem:
            raise RuntimeError(problem)
