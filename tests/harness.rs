//! Scenario-test harness: a real `candor daemon` in a temp dir with a real config, driven
//! through the real CLI. Waits are conditions with deadlines, never bare sleeps.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CANDOR_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test-exe> -> target/<profile>
    let exe = std::env::current_exe().expect("test exe path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the scenario tests",
        p.display()
    );
    p
}

/// The candor binary the tests run. `candor upgrade` runs only a binary that it and every
/// directory above it only root (or the daemon's user) can write; where the build itself sits
/// below a directory others may write (a checkout in /tmp) and the tests run as root, they run
/// a copy under /var/lib/candor-test-tmp instead, made once per build.
pub fn candor_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let built = bin("candor");
        trusted_copy(&built).unwrap_or(built)
    })
    .clone()
}

/// `built` copied to a directory only root can write, when it is not in one already (and we
/// are root); the copy of this very build (same size and mtime) when one was made before.
fn trusted_copy(built: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid only reads.
    let me = unsafe { libc::geteuid() };
    if me != 0 || only_its_owner_writes(built.parent()?, me) {
        return None;
    }
    let meta = std::fs::metadata(built).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let base = Path::new("/var/lib/candor-test-tmp/bin");
    let dir = base.join(format!("{}-{}", meta.len(), mtime.as_nanos()));
    let copy = dir.join("candor");
    if copy.exists() {
        return Some(copy);
    }
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::create_dir_all(&dir).ok()?;
    for d in [base.parent()?, base, &dir] {
        std::fs::set_permissions(d, open.clone()).ok()?;
    }
    // Whole before it is seen: copied beside, then renamed (tests start in parallel).
    let tmp = dir.join(format!("candor.{}", std::process::id()));
    std::fs::copy(built, &tmp).ok()?;
    std::fs::set_permissions(&tmp, open).ok()?;
    std::fs::rename(&tmp, &copy).ok()?;
    // Copies of earlier builds go (an hour old: not one a suite still running may use).
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            let old = e.metadata().ok().and_then(|m| m.modified().ok());
            let stale =
                old.is_some_and(|t| t.elapsed().is_ok_and(|a| a > Duration::from_secs(3600)));
            if e.path() != dir && stale {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Some(copy)
}

pub fn zoo() -> PathBuf {
    bin("candor-zoo")
}

/// The zoo's programs written again on candor-sdk (crates/candor-twins).
pub fn twin() -> PathBuf {
    bin("candor-twin")
}

/// A binary of this workspace, by name.
pub fn workspace_bin(name: &str) -> PathBuf {
    bin(name)
}

/// Poll `f` until it returns `Some`, or panic with `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a pid is a live (non-zombie) process.
pub fn alive(pid: u64) -> bool {
    proc_state(pid).is_some_and(|state| state != "Z" && state != "X")
}

/// The process state letter of `pid` (R, S, D, Z, ...), None once it is gone.
pub fn proc_state(pid: u64) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit(')').next()?.split_whitespace().next()?;
    Some(state.to_string())
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
    /// Extra environment of the daemon process.
    pub env: Vec<(String, String)>,
    /// The state dir's name inside the temp dir.
    state: String,
    /// RLIMIT_NOFILE (soft, hard) for the daemon process, when set.
    pub nofile: Option<(u64, u64)>,
}

impl Daemon {
    /// Write `config` (with `{zoo}` and `{dir}` filled in) and start a daemon on it.
    pub fn start(config: &str) -> Daemon {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_full(config, env, "state")
    }

    /// With the state dir named `state` inside the temp dir (e.g. a very long name).
    /// A daemon started with RLIMIT_NOFILE `soft`/`hard`.
    pub fn start_limited(config: &str, soft: u64, hard: u64) -> Daemon {
        Self::start_inner(config, &[], "state", Some((soft, hard)))
    }

    pub fn start_full(config: &str, env: &[(&str, &str)], state: &str) -> Daemon {
        Self::start_inner(config, env, state, None)
    }

    /// Everything but the daemon: the temp dir and the config (start it with [`Daemon::spawn`]),
    /// e.g. to mount something on the state dir first.
    pub fn unstarted(config: &str) -> Daemon {
        Self::start_inner_unspawned(config, &[], "state", None)
    }

    fn start_inner(
        config: &str,
        env: &[(&str, &str)],
        state: &str,
        nofile: Option<(u64, u64)>,
    ) -> Daemon {
        let mut d = Self::start_inner_unspawned(config, env, state, nofile);
        d.spawn();
        d
    }

    fn start_inner_unspawned(
        config: &str,
        env: &[(&str, &str)],
        state: &str,
        nofile: Option<(u64, u64)>,
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("candor-t")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("candor.sock");
        let config_path = dir.path().join("candor.toml");
        let d = Daemon {
            socket,
            config: config_path,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            state: state.to_string(),
            nofile,
            dir,
        };
        d.write_config(config);
        d
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn fill(&self, text: &str) -> String {
        let mut text = text.replace("{zoo}", &zoo().display().to_string());
        if text.contains("{twin}") {
            text = text.replace("{twin}", &twin().display().to_string());
        }
        text.replace("{dir}", &self.dir.path().display().to_string())
    }

    pub fn write_config(&self, text: &str) {
        let body = format!(
            "[daemon]\nstate_dir = \"{}/{}\"\nsample_every = \"200ms\"\n\n{}",
            self.dir.path().display(),
            self.state,
            self.fill(text)
        );
        std::fs::write(&self.config, body).expect("write config");
    }

    /// Start (again) a daemon process on this dir and wait until it answers.
    pub fn spawn(&mut self) {
        let args: Vec<std::ffi::OsString> = vec![
            "daemon".into(),
            "-c".into(),
            self.config.clone().into(),
            "--socket".into(),
            self.socket.clone().into(),
        ];
        self.spawn_args(&args, false);
    }

    /// Start a daemon as `candor daemon ARGS` — no `-c` or `--socket` of the harness's: the
    /// test says what it wants — with `env` on top of an environment without CANDOR_SOCKET,
    /// XDG_STATE_HOME and XDG_RUNTIME_DIR (only what the test gives counts), and wait until it
    /// answers at `socket`, where it is expected to listen (the harness's commands use it).
    pub fn spawn_with(&mut self, args: &[&str], env: &[(&str, &str)], socket: &Path) {
        self.socket = socket.to_path_buf();
        self.env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut all: Vec<std::ffi::OsString> = vec!["daemon".into()];
        all.extend(args.iter().map(Into::into));
        self.spawn_args(&all, true);
    }

    fn spawn_args(&mut self, args: &[std::ffi::OsString], clean_env: bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("daemon.log"))
            .expect("log file");
        let mut cmd = Command::new(candor_bin());
        if let Some((soft, hard)) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit between fork and exec touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: soft as libc::rlim_t,
                        rlim_max: hard as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        cmd.args(args);
        if clean_env {
            for var in ["CANDOR_SOCKET", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"] {
                cmd.env_remove(var);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn candor daemon"));
        wait_for("the daemon to answer", Duration::from_secs(30), || {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("daemon exited early with {st}; log:\n{}", self.log());
            }
            self.cli(&["status", "--json"])
                .status
                .success()
                .then_some(())
        });
    }

    /// `GET /v1/daemon`, raw over the socket.
    pub fn info(&self) -> Value {
        let out = self
            .raw(&get_request("/v1/daemon"))
            .expect("GET /v1/daemon");
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("bad /v1/daemon answer {out:?}: {e}"))
    }

    /// Send `request` as is over the control socket; the whole answer, or None if the daemon
    /// could not be reached or did not answer within 5 s.
    pub fn raw(&self, request: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(request.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// Run `candor ARGS` (a following command, e.g. `events -f --json`) and hand each JSON
    /// line it prints to the returned channel.
    pub fn follow_json(&self, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<Value>) {
        use std::io::BufRead;
        let mut child = Command::new(candor_bin())
            .args(args)
            .env("CANDOR_SOCKET", &self.socket)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn follower");
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("follower stdout");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        (child, rx)
    }

    /// Whether services are contained in cgroups here. Where cgroup v2 is not writable, tests
    /// of cgroup-only behaviour say so and check the process-group fallback instead — unless
    /// `CANDOR_REQUIRE_CGROUPS=1` (CI), where that is a failure, never a silent pass.
    pub fn has_cgroups(&self) -> bool {
        let info = self.info();
        available(
            "CANDOR_REQUIRE_CGROUPS",
            &format!(
                "no writable cgroup v2 ({})",
                info["containment_detail"].as_str().unwrap_or("?")
            ),
            info["containment"] == "cgroup",
        )
    }

    /// Open fds of the daemon process now.
    pub fn daemon_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.daemon_pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn daemon_pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("daemon running")
    }

    /// Kill the daemon process with SIGKILL (services stay behind) and reap it.
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(candor_bin())
            .args(args)
            .env("CANDOR_SOCKET", &self.socket)
            .stdin(Stdio::null())
            .output()
            .expect("run candor")
    }

    /// Run the CLI and expect success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "candor {args:?} failed with {}:\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn status(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["status", name, "--json"])).expect("status json")
    }

    pub fn state(&self, name: &str) -> String {
        self.status(name)["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait until `name` is in `state`; returns its status. On timeout, says where it was
    /// instead, with the end of the daemon's log.
    pub fn wait_state(&self, name: &str, state: &str, deadline: Duration) -> Value {
        let end = Instant::now() + deadline;
        loop {
            let s = self.status(name);
            if s["state"] == state {
                return s;
            }
            if Instant::now() >= end {
                let log = self.log();
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                panic!("timed out after {deadline:?} waiting for {name} to be {state}; it is {s}\ndaemon log tail:\n{}", tail.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The run record of `service` (`<state_dir>/runs/<service>.json`), if there is one.
    pub fn record(&self, service: &str) -> Option<Value> {
        let file = self.path(&format!("{}/runs/{service}.json", self.state));
        serde_json::from_slice(&std::fs::read(file).ok()?).ok()
    }

    /// Wait until the run record of `service` says `what`. Records are written off the
    /// daemon's threads a moment after a change: a test that kills the daemon after waiting
    /// here kills it after the change, not in the middle of it.
    pub fn wait_record(&self, service: &str, what: impl Fn(&Value) -> bool) -> Value {
        wait_for(
            &format!("the run record of {service}"),
            Duration::from_secs(20),
            || self.record(service).filter(|r| what(r)),
        )
    }

    /// Wait until the record of `service` names a live run of `pid` that was seen ready.
    pub fn wait_recorded_ready(&self, service: &str, pid: u64) -> Value {
        self.wait_record(service, |r| {
            r["process"]["pid"] == pid && !r["saved"]["run"]["ready"].is_null()
        })
    }

    pub fn events(&self) -> Vec<Value> {
        serde_json::from_str(&self.ok(&["events", "--json", "-n", "10000"])).expect("events json")
    }

    /// Ask the daemon to shut down and wait for it to exit.
    pub fn shutdown(&mut self) {
        if let Err(why) = self.stop_daemon(Duration::from_secs(60)) {
            panic!("{why}; log:\n{}", self.log());
        }
    }

    /// `candor shutdown`, then wait for the process; SIGKILL it after `patience`.
    fn stop_daemon(&mut self, patience: Duration) -> Result<(), String> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        // Not waited for on its own: a daemon whose shutdown hangs must not hang the test.
        let ask = Command::new(candor_bin())
            .arg("shutdown")
            .env("CANDOR_SOCKET", &self.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let end = Instant::now() + patience;
        let mut exited = false;
        // `shutdown` returns once whichever daemon answers the socket has exited: also one
        // that took over with another pid (an upgrade guard's fallback), which our child's exit
        // says nothing about.
        let mut asked = ask.ok();
        while Instant::now() < end {
            exited = exited || matches!(c.try_wait(), Ok(Some(_)));
            if let Some(a) = asked.as_mut() {
                if !matches!(a.try_wait(), Ok(None)) {
                    asked = None;
                }
            }
            if exited && asked.is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(mut ask) = asked {
            let _ = ask.kill();
            let _ = ask.wait();
        }
        if exited {
            return Ok(());
        }
        let _ = c.kill();
        let _ = c.wait();
        Err(format!(
            "daemon did not exit within {patience:?} of shutdown"
        ))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop_daemon(Duration::from_secs(30));
    }
}

/// Read pids written by a zoo `--pids FILE`, once the file exists.
pub fn read_pids(file: &Path) -> Vec<u64> {
    wait_for(
        &format!("pids in {}", file.display()),
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(file).ok()?;
            let pids: Vec<u64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            (!pids.is_empty()).then_some(pids)
        },
    )
}

/// Lines `<what> <unix_ns> <pid>` from a zoo `--stamp FILE`.
pub fn read_stamps(file: &Path) -> Vec<(String, u128, u64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_string(),
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// A loopback TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A one-shot GET request line for `Daemon::raw`.
pub fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: candor\r\nConnection: close\r\n\r\n")
}

/// Make this test process the reaper of the services a killed daemon leaves, as init (or
/// systemd) is on a real machine: they are re-parented here and reaped once they end (except
/// those held by [`hold_reaping`]). Needed where PID 1 reaps orphans late (some sandboxes take
/// seconds), which would leave every service that ends after a `kill_daemon` a zombie for a
/// while — still counted in its process group. Only zombies not named `candor` are reaped, so
/// the exit status of the daemon and of CLI runs stays with the `Child` that waits for it.
pub fn reap_orphans() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag of this process.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        std::thread::spawn(|| loop {
            for pid in zombie_children() {
                // Looked at per pid, under the lock: a pid held while /proc was being scanned
                // (slow under load) is still left alone.
                let held = HELD.lock().unwrap_or_else(|e| e.into_inner());
                if !held.contains(&pid) {
                    // SAFETY: waitpid of one exited child of ours, without blocking.
                    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        });
    });
}

static HELD: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Leave `pid` a zombie (once it ends) until [`release_reaping`], as a busy init might.
pub fn hold_reaping(pid: u64) {
    HELD.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(pid as i32);
}

pub fn release_reaping(pid: u64) {
    HELD.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid as i32);
}

/// Exited, unreaped children of this process that are not candor (the daemon, the CLI).
fn zombie_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((head, tail)) = stat.rsplit_once(')') else {
                return false;
            };
            let comm = head.split_once('(').map_or("", |(_, c)| c);
            let mut f = tail.split_whitespace();
            f.next() == Some("Z") && f.next() == Some(me.as_str()) && comm != "candor"
        })
        .collect()
}

/// Wait until `pid` is reaped (gone from /proc, not even a zombie).
pub fn wait_reaped(pid: u64) {
    wait_for(
        &format!("pid {pid} reaped"),
        Duration::from_secs(20),
        || proc_state(pid).is_none().then_some(()),
    );
}

/// Poll a service that was adopted with `pid` by a restarted daemon until it shows `running`:
/// on the way never `failed`, never another pid, and until ready a reason that says it is
/// re-checking. Returns the `running` status.
pub fn wait_rechecked(d: &Daemon, name: &str, pid: u64, deadline: Duration) -> Value {
    let mut said_rechecking = false;
    wait_for(&format!("{name} running again"), deadline, || {
        let s = d.status(name);
        assert_eq!(s["pid"].as_u64(), Some(pid), "not the adopted pid: {s}");
        match s["state"].as_str().unwrap_or_default() {
            "starting" => {
                said_rechecking |= s["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("re-checking after supervisor restart: ");
                None
            }
            "running" => {
                assert!(said_rechecking, "running before re-checking was shown: {s}");
                Some(s)
            }
            _ => panic!("an adopted run must be starting, then running: {s}"),
        }
    })
}

/// Send one datagram to a `NOTIFY_SOCKET` value (`@name` is in the abstract namespace).
pub fn send_notify(socket: &str, message: &[u8]) {
    use std::os::linux::net::SocketAddrExt;
    let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
    match socket.strip_prefix('@') {
        Some(name) => {
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            sock.send_to_addr(message, &addr).unwrap();
        }
        None => {
            sock.send_to(message, socket).unwrap();
        }
    };
}

/// Whether a facility a test needs is here. When it is not, the test says
/// "skipped: <why>" and returns early — unless `require` (an environment variable, set by
/// .ci/run) is 1, where a missing facility fails the test instead of passing it silently.
/// Whether `program args…` runs and succeeds here (a tool a test drives); if not, what
/// `available` says with `why` (CI, with `CANDOR_REQUIRE_ROOT=1`, fails).
pub fn tool(program: &str, args: &[&str], why: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    available("CANDOR_REQUIRE_ROOT", why, ok)
}

pub fn available(require: &str, why: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if std::env::var(require).as_deref() == Ok("1") {
        panic!("{require}=1 but {why}");
    }
    eprintln!("skipped: {why} (set {require}=1 to make this a failure)");
    false
}

/// Mount a tmpfs of `size` (e.g. "8m") on `dir`; None where this process may not mount
/// (not root), after saying so (a failure where `CANDOR_REQUIRE_ROOT=1`). Unmounted on drop.
pub fn small_disk(dir: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output();
    let ok = matches!(&out, Ok(o) if o.status.success());
    let why = format!("cannot mount a tmpfs here ({out:?})");
    available("CANDOR_REQUIRE_ROOT", &why, ok).then(|| Mount(dir.to_path_buf()))
}

/// A mount undone when dropped (lazily: a daemon may still hold files in it).
pub struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Processes whose command line (its arguments, each ended by a NUL, as in
/// `/proc/<pid>/cmdline`) satisfies `matching`.
pub fn processes(matching: impl Fn(&[u8]) -> bool) -> usize {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| matching(c))
        .count()
}

/// Wait until the daemon says it has cut off a stalled API client (`send_timeout`); how many.
pub fn wait_cut_off(d: &Daemon) -> u64 {
    wait_for(
        "the stalled follower cut off",
        Duration::from_secs(90),
        || {
            let n = d.info()["resources"]["cut_off_connections"]
                .as_u64()
                .unwrap_or(0);
            (n >= 1).then_some(n)
        },
    )
}

/// Read what was sent on a connection the daemon has closed, until it ends (the caller sets a
/// read timeout: a connection that does not end fails the test).
pub fn read_until_closed(s: &mut impl std::io::Read) {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0usize;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the cut-off connection did not end ({total} bytes read): {e}"),
        }
    }
}

/// A temp dir under the build's target dir, mode 0755: unlike one under /tmp (writable by
/// everyone), a binary in it may be run by `candor upgrade`, and a test's other users (e.g.
/// `nobody`) can reach what it makes readable.
/// Where the checkout itself sits under a directory others may write (a clone in /tmp), root
/// uses /var/lib/candor-test-tmp instead.
pub fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let mut parent = bin_dir()
        .parent()
        .map_or_else(bin_dir, Path::to_path_buf)
        .join("scenario-tmp");
    std::fs::create_dir_all(&parent).expect("target/scenario-tmp");
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(&parent, open.clone()).expect("chmod target/scenario-tmp");
    // SAFETY: geteuid only reads.
    let me = unsafe { libc::geteuid() };
    if me == 0 && !only_its_owner_writes(&parent, me) {
        parent = PathBuf::from("/var/lib/candor-test-tmp");
        std::fs::create_dir_all(&parent).expect("/var/lib/candor-test-tmp");
        std::fs::set_permissions(&parent, open.clone()).expect("chmod /var/lib/candor-test-tmp");
    }
    let dir = tempfile::Builder::new()
        .prefix("candor-t")
        .tempdir_in(&parent)
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), open).expect("chmod temp dir");
    dir
}

/// Whether `dir` and every directory above it are owned by root or `uid` and writable by
/// nobody else (the check `candor upgrade` makes of a binary's path).
fn only_its_owner_writes(dir: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    dir.ancestors().all(|d| {
        std::fs::metadata(d)
            .is_ok_and(|m| (m.uid() == 0 || m.uid() == uid) && m.mode() & 0o022 == 0)
    })
}

/// One HTTP/1.1 request over TCP to `addr` with `Host: host` and `headers` (each `Name: value`),
/// `Connection: close`; the whole answer (head and body) as text.
pub fn http_send(
    addr: &str,
    host: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("the web listener");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

/// The status code of an answer of [`http_send`] (0 when there is none).
pub fn http_status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The body of an answer of [`http_send`].
pub fn http_body(answer: &str) -> &str {
    &answer[answer.find("\r\n\r\n").map_or(0, |i| i + 4)..]
}

/// The dir of the browser tests (tests/browser), or None (skipped; failed where
/// CANDOR_REQUIRE_ROOT is set) when Debian's chromium or npm's playwright-core is missing.
pub fn browser_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let ready = Path::new("/usr/bin/chromium").exists()
        && dir.join("node_modules/playwright-core").exists();
    available(
        "CANDOR_REQUIRE_ROOT",
        "chromium or playwright-core is missing (scripts/test.sh installs Debian's chromium and runs npm ci in tests/browser)",
        ready,
    )
    .then_some(dir)
}
