//! Upgrades that cannot change what services get and cannot take them down: the umask and fd
//! limit the daemon was started with survive `candor upgrade` and the brain-panic restart; a
//! handover the keeper does not confirm is refused; as PID 1 a successor that fails goes back
//! to the old binary instead of taking the namespace down; under systemd the main pid is
//! handed to the guard and back (sd_notify), so `Restart=` never races it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candor_scenarios::*;

const T: Duration = Duration::from_secs(30);

/// The umask (as /proc prints it) and soft/hard RLIMIT_NOFILE of a process.
fn umask_and_nofile(pid: u64) -> (String, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|v| v.trim().to_string())
        .unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (umask, n[0], n[1])
}

/// Every test here starts its daemons with umask 022 (each test is a process of its own under
/// nextest; under `cargo test` they all want the same).
fn umask_022() {
    // SAFETY: umask only changes this process's file mode mask.
    unsafe { libc::umask(0o022) };
}

const SLEEPER: &str = r#"
[service.a]
command = ["sleep", "100000"]
"#;

/// A daemon started with umask 022 and RLIMIT_NOFILE 1024/4096, with `env`.
fn limited_daemon(env: &[(&str, &str)]) -> Daemon {
    umask_022();
    let mut d = Daemon::unstarted(SLEEPER);
    d.nofile = Some((1024, 4096));
    d.env
        .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    d.spawn();
    d
}

/// The daemon's incarnation, if it answers (a request the exec cuts off gets no answer).
fn incarnation(d: &Daemon) -> Option<serde_json::Value> {
    let out = d.raw(&get_request("/v1/daemon"))?;
    let info: serde_json::Value = serde_json::from_str(out.split("\r\n\r\n").nth(1)?).ok()?;
    Some(info["incarnation"].clone())
}

/// What a service started now gets: its umask and fd limits, after `restart --wait`.
fn fresh_service_gets(d: &Daemon) -> (String, u64, u64) {
    let old = d.wait_state("a", "running", T)["pid"].as_u64().unwrap();
    d.ok(&["restart", "a", "--wait"]);
    let pid = d.wait_state("a", "running", T)["pid"].as_u64().unwrap();
    assert_ne!(pid, old, "restarted");
    umask_and_nofile(pid)
}

/// The daemon raised its own limit and made its umask private: what services must not get.
fn assert_daemon_is_not_like_its_services(d: &Daemon) {
    let own = umask_and_nofile(d.info()["pid"].as_u64().unwrap());
    assert_eq!((own.0.as_str(), own.1), ("0077", 4096), "the daemon's own");
}

#[test]
fn after_an_upgrade_new_services_get_the_umask_and_fd_limit_the_daemon_was_started_with() {
    let mut d = limited_daemon(&[]);
    let started = ("0022".to_string(), 1024, 4096);
    assert_eq!(fresh_service_gets(&d), started, "before the upgrade");
    let out = d.ok(&["upgrade"]);
    assert!(out.starts_with("upgraded: "), "{out}");
    assert_daemon_is_not_like_its_services(&d);
    assert_eq!(fresh_service_gets(&d), started, "after the upgrade");
    // And after a second one (handed down, not read again).
    d.ok(&["upgrade"]);
    assert_eq!(fresh_service_gets(&d), started, "after two upgrades");
    // And after the guard's fallback (a new binary that exits: the guard, a process of the
    // daemon's with its umask and limit, execs the old binary as the daemon).
    let bins = bin_dir();
    let exits = script(bins.path(), "exits", "exit 0");
    let out = d.cli(&["upgrade", "--binary", exits.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_ne!(
        d.info()["pid"].as_u64(),
        Some(d.daemon_pid() as u64),
        "the guard took over"
    );
    assert_daemon_is_not_like_its_services(&d);
    assert_eq!(fresh_service_gets(&d), started, "after the guard took over");
    d.shutdown();
}

#[test]
fn after_the_brain_panic_restart_new_services_get_the_umask_and_fd_limit_the_daemon_was_started_with(
) {
    let d = limited_daemon(&[("CANDOR_FAILPOINTS", "brain:a")]);
    let before = d.info();
    let a = d.wait_state("a", "running", T)["pid"].clone();
    // The step handling this restart panics; the daemon restarts itself in place.
    let _ = d.cli(&["restart", "a"]);
    wait_for("the restart in place", T, || {
        (incarnation(&d)? != before["incarnation"]).then_some(())
    });
    assert_eq!(d.wait_state("a", "running", T)["pid"], a, "taken over");
    assert_daemon_is_not_like_its_services(&d);
    assert_eq!(
        fresh_service_gets(&d),
        ("0022".to_string(), 1024, 4096),
        "after the restart in place"
    );
}

const TWO: &str = r#"
[service.a]
command = ["sleep", "100000"]

[service.b]
command = ["sleep", "100000"]
"#;

#[test]
fn an_upgrade_the_keeper_does_not_confirm_is_refused_and_the_daemon_carries_on() {
    // The keeper takes 6 s to get to the freeze: longer than the daemon waits (5 s).
    let d = Daemon::start_with_env(TWO, &[("CANDOR_FAILPOINTS", "keeper:freeze")]);
    let pids = |d: &Daemon| {
        ["a", "b"].map(|n| {
            let s = d.wait_state(n, "running", T);
            (s["pid"].as_u64().unwrap(), s["restarts"].as_u64().unwrap())
        })
    };
    let before = pids(&d);
    let old = d.info();
    let out = d.cli(&["upgrade"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the keeper did not confirm it stopped within 5s; nothing changed"),
        "{err}"
    );
    let info = d.info();
    for k in ["pid", "version", "incarnation"] {
        assert_eq!(info[k], old[k], "{k}");
    }
    assert!(info["upgraded_from"].is_null(), "{info}");
    assert_eq!(pids(&d), before, "services untouched");

    // The keeper carries on once it is back: it spawns, stops and reaps.
    d.ok(&["restart", "a", "--wait"]);
    let b = before[1].0;
    // SAFETY: kill(2) of a service process this test's daemon runs.
    unsafe { libc::kill(b as i32, libc::SIGKILL) };
    let again = wait_for("b restarted after it was killed", T, || {
        let s = d.status("b");
        (s["state"] == "running" && s["pid"].as_u64() != Some(b)).then_some(s)
    });
    assert_eq!(again["restarts"].as_u64(), Some(before[1].1 + 1), "{again}");
    wait_for("the killed process reaped", T, || (!alive(b)).then_some(()));
    // And the next upgrade, confirmed, goes through.
    let out = d.ok(&["upgrade"]);
    assert!(out.starts_with("upgraded: "), "{out}");
}

#[test]
fn the_brain_panic_restart_waits_for_the_keeper_to_confirm_and_keeps_every_service() {
    let d = Daemon::start_with_env(TWO, &[("CANDOR_FAILPOINTS", "brain:a,keeper:freeze")]);
    let a = d.wait_state("a", "running", T)["pid"].clone();
    let b = d.wait_state("b", "running", T)["pid"].clone();
    let before = d.info();
    let asked = Instant::now();
    let _ = d.cli(&["restart", "a"]);
    wait_for("the restart in place", Duration::from_secs(60), || {
        (incarnation(&d)? != before["incarnation"]).then_some(())
    });
    // Not at 5 s without the acknowledgement: once the keeper (6 s late) gave it.
    assert!(
        asked.elapsed() >= Duration::from_secs(6),
        "exec'd after {:?}, before the keeper confirmed",
        asked.elapsed()
    );
    let events = d.events();
    assert!(
        events
            .iter()
            .any(|e| e["reason"].as_str().is_some_and(|r| r.starts_with(
                "restart in place delayed: the keeper did not confirm it stopped within 5s"
            ))),
        "{events:?}"
    );
    assert_eq!(d.wait_state("a", "running", T)["pid"], a);
    assert_eq!(d.wait_state("b", "running", T)["pid"], b);
    d.ok(&["restart", "a", "--wait"]);
}

/// A directory for stand-in binaries that `candor upgrade` accepts (0755, no directory above
/// it writable by others: not under /tmp).
fn bin_dir() -> tempfile::TempDir {
    private_tempdir()
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// candor itself, except when it is a handover's successor: then with `failpoint`.
fn failing_successor(dir: &Path, name: &str, failpoint: &str) -> PathBuf {
    let candor = candor_bin().display().to_string();
    script(
        dir,
        name,
        &format!(
            "if [ -n \"$CANDOR_UPGRADED_FROM\" ]; then CANDOR_FAILPOINTS={failpoint} exec {candor} \"$@\"; fi\nexec {candor} \"$@\""
        ),
    )
}

/// The host pid of the process whose command line is exactly `cmdline` (NULs as spaces).
fn host_pid(cmdline: &str) -> Option<u64> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u64 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (String::from_utf8_lossy(&cmd).replace('\0', " ").trim_end() == cmdline).then_some(pid)
    })
}

/// `unshare --pid --fork --mount-proc candor daemon …`: candor as PID 1, killed with the
/// namespace when dropped.
struct Init {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Init {
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(candor_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn info(&self) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(get_request("/v1/daemon").as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        let _ = self.cli(&["shutdown"]);
        let end = Instant::now() + T;
        while self.running() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Candor as PID 1 of a new PID namespace, with one service (a sleep this test can find from
/// outside the namespace): the namespace, the sleep's argument and its host pid. None (the
/// test skipped) where PID namespaces cannot be made.
fn start_init() -> Option<(Init, String, u64)> {
    if !tool(
        "unshare",
        &["--pid", "--fork", "--mount-proc", "true"],
        "unshare --pid needs root",
    ) {
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("candor-t")
        .tempdir()
        .unwrap();
    let config = dir.path().join("candor.toml");
    // A sleep this test can find from outside the namespace.
    let nap = format!("{}", 1_000_000 + std::process::id());
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{}/state\"\n\n[service.nap]\ncommand = [\"sleep\", \"{nap}\"]\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let socket = dir.path().join("candor.sock");
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(candor_bin())
        .arg("daemon")
        .arg("-c")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let init = Init { child, dir, socket };
    wait_for("candor as PID 1 to answer", T, || {
        init.cli(&["status", "--json"])
            .status
            .success()
            .then_some(())
    });
    assert_eq!(init.info()["pid"], 1, "PID 1 of its namespace");
    let sleeper = wait_for("the service", T, || host_pid(&format!("sleep {nap}")));
    Some((init, nap, sleeper))
}

#[test]
fn as_pid_1_an_upgrade_to_a_binary_that_fails_at_start_leaves_every_process_and_the_old_binary() {
    let Some((mut init, nap, sleeper)) = start_init() else {
        return;
    };
    let bins = bin_dir();

    let upgrade_fails = |init: &mut Init, binary: &Path, says: &str| {
        let before = init.info();
        let out = init.cli(&["upgrade", "--binary", binary.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            init.running(),
            "the namespace went down ({err}); log:\n{}",
            init.log()
        );
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(err.contains(says), "{err}\nlog:\n{}", init.log());
        assert!(alive(sleeper), "the service survived");
        assert_eq!(host_pid(&format!("sleep {nap}")), Some(sleeper));
        let after = init.info();
        assert_eq!(after["pid"], 1);
        assert_eq!(after["version"], before["version"]);
    };

    // Not a daemon at all: refused by its trial run, before any exec.
    let exits = script(bins.path(), "exits", "exit 0");
    upgrade_fails(&mut init, &exits, "its trial run as a daemon");

    // A candor that passes the trial, then panics as the successor: the old image again.
    let panics = failing_successor(bins.path(), "panics", "daemon-start:panic");
    upgrade_fails(
        &mut init,
        &panics,
        "upgrade failed: the new binary panicked before it answered",
    );
    assert!(init.info()["upgrade_error"].as_str().is_some());

    // One that crashes (SIGABRT) before it answers: the same, from its signal handler.
    let crashes = failing_successor(bins.path(), "crashes", "daemon-start:abort");
    upgrade_fails(
        &mut init,
        &crashes,
        "upgrade failed: the new binary crashed (a fatal signal) before it answered",
    );

    // One whose start fails with an error: the same.
    let fails = failing_successor(bins.path(), "fails", "daemon-start:error");
    upgrade_fails(
        &mut init,
        &fails,
        "upgrade failed: the new binary could not start",
    );

    // The old binary is in charge: it restarts the service, and a good upgrade goes through.
    let out = init.cli(&["restart", "nap", "--wait"]);
    assert!(out.status.success(), "{out:?}");
    let out = init.cli(&["upgrade"]);
    assert!(out.status.success(), "{out:?}\nlog:\n{}", init.log());
    assert!(init.running());
    assert_eq!(init.info()["pid"], 1);
}

/// A fake systemd: the `NOTIFY_SOCKET` datagrams with their senders' pids (SO_PASSCRED).
fn fake_systemd(path: &Path) -> std::sync::mpsc::Receiver<(u32, String)> {
    use std::os::fd::AsRawFd;
    let sock = std::os::unix::net::UnixDatagram::bind(path).unwrap();
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a c_int option.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || loop {
        let mut buf = [0u8; 4096];
        let mut control = [0u8; 256];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: recvmsg into buffers we own; the control messages are read within
        // `control` through the CMSG macros.
        let (n, pid) = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control.len() as _;
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, 0);
            let mut pid = 0;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                    let cred = libc::CMSG_DATA(c) as *const libc::ucred;
                    pid = (*cred).pid as u32;
                }
                // A BARRIER=1's fd: closed once what came before is taken, as systemd does.
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let fd = libc::CMSG_DATA(c) as *const libc::c_int;
                    libc::close(*fd);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            (n, pid)
        };
        if n < 0 {
            return;
        }
        let text = String::from_utf8_lossy(&buf[..n as usize]).to_string();
        if tx.send((pid, text)).is_err() {
            return;
        }
    });
    rx
}

/// What systemd makes of the messages with `NotifyAccess=main`: each is heard only from the
/// main pid of the moment.
#[derive(Debug)]
struct Unit {
    main: u32,
    state: &'static str,
    heard: Vec<(u32, String)>,
    ignored: Vec<(u32, String)>,
    barriers: usize,
}

impl Unit {
    fn take(&mut self, (pid, text): (u32, String)) {
        // systemd takes a barrier from anyone, before it looks at who may speak.
        if text == "BARRIER=1" {
            self.barriers += 1;
            return;
        }
        if pid != self.main {
            self.ignored.push((pid, text));
            return;
        }
        for line in text.lines() {
            match line.split_once('=') {
                Some(("READY", "1")) => self.state = "ready",
                Some(("RELOADING", "1")) => self.state = "reloading",
                Some(("MAINPID", p)) => self.main = p.parse().unwrap(),
                _ => {}
            }
        }
        self.heard.push((pid, text));
    }

    fn until(
        &mut self,
        rx: &std::sync::mpsc::Receiver<(u32, String)>,
        what: &str,
        done: impl Fn(&Unit) -> bool,
    ) {
        let end = Instant::now() + T;
        while !done(self) {
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(m) => self.take(m),
                Err(_) => panic!("timed out waiting for {what}: {self:?}"),
            }
        }
    }
}

#[test]
fn under_systemd_an_upgrade_hands_the_main_pid_to_its_guard_and_back() {
    let mut d = Daemon::unstarted(SLEEPER);
    let notify = d.path("systemd-notify.sock");
    let rx = fake_systemd(&notify);
    d.env
        .push(("NOTIFY_SOCKET".into(), notify.display().to_string()));
    d.spawn();
    let daemon = d.info()["pid"].as_u64().unwrap() as u32;
    let mut unit = Unit {
        main: daemon,
        state: "starting",
        heard: Vec::new(),
        ignored: Vec::new(),
        barriers: 0,
    };
    unit.until(&rx, "READY=1 at start", |u| u.state == "ready");

    let start = unit.heard.len();
    let out = d.ok(&["upgrade"]);
    assert!(out.starts_with("upgraded: "), "{out}");
    unit.until(&rx, "the main pid back, ready", |u| {
        u.main == daemon && u.state == "ready" && u.heard.len() >= start + 3 && u.barriers >= 2
    });
    let said: Vec<&(u32, String)> = unit.heard[start..].iter().collect();
    assert_eq!(said[0].0, daemon);
    assert!(
        said[0].1.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{said:?}"
    );
    let guard: u32 = said[1]
        .1
        .strip_prefix("MAINPID=")
        .unwrap_or_else(|| panic!("{said:?}"))
        .parse()
        .unwrap();
    assert_ne!(
        guard, daemon,
        "the guard is systemd's main pid during the exec"
    );
    assert_eq!(said[2].0, guard, "{said:?}");
    assert!(
        said[2].1.starts_with(&format!("MAINPID={daemon}\nREADY=1")),
        "{said:?}"
    );
    assert!(unit.ignored.is_empty(), "not from the main pid: {unit:?}");
    assert_eq!(
        unit.barriers, 2,
        "each main pid handed on waits for systemd: {unit:?}"
    );

    // A new binary that exits: the guard, main pid meanwhile, takes over in its own process,
    // which systemd already follows — the main pid never exited, nothing to restart.
    let bins = bin_dir();
    let exits = script(bins.path(), "exits", "exit 0");
    let start = unit.heard.len();
    let out = d.cli(&["upgrade", "--binary", exits.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let now = d.info();
    let new_main = now["pid"].as_u64().unwrap() as u32;
    assert_ne!(new_main, daemon, "the guard's process is the daemon now");
    unit.until(&rx, "READY=1 from the guard's process", |u| {
        u.main == new_main && u.state == "ready" && u.heard.len() >= start + 3
    });
    let said: Vec<&(u32, String)> = unit.heard[start..].iter().collect();
    assert!(said[0].1.starts_with("RELOADING=1\n"), "{said:?}");
    assert_eq!(
        said[1],
        &(daemon, format!("MAINPID={new_main}")),
        "{said:?}"
    );
    assert_eq!(said[2].0, new_main, "{said:?}");
    assert!(said[2].1.starts_with("READY=1"), "{said:?}");
    assert!(unit.ignored.is_empty(), "not from the main pid: {unit:?}");
    d.shutdown();
}

#[test]
fn the_unit_file_lets_only_the_main_pid_speak_and_systemd_accepts_it() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/candor.service"),
    )
    .unwrap();
    assert!(unit.contains("\nType=notify\n"), "{unit}");
    assert!(unit.contains("\nNotifyAccess=main\n"), "{unit}");
    if !tool(
        "systemd-analyze",
        &["--version"],
        "systemd-analyze is not installed",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("candor.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/candor", &candor_bin().display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("candor.service:"), "{err}");
}

#[test]
fn under_systemd_a_stop_during_the_handover_reaches_the_daemon_not_only_its_guard() {
    let mut d = Daemon::unstarted(SLEEPER);
    let notify = d.path("systemd-notify.sock");
    let rx = fake_systemd(&notify);
    d.env
        .push(("NOTIFY_SOCKET".into(), notify.display().to_string()));
    d.spawn();
    let daemon = d.info()["pid"].as_u64().unwrap() as u32;
    let service = d.wait_state("a", "running", T)["pid"].as_u64().unwrap();
    let mut unit = Unit {
        main: daemon,
        state: "starting",
        heard: Vec::new(),
        ignored: Vec::new(),
        barriers: 0,
    };
    unit.until(&rx, "READY=1 at start", |u| u.state == "ready");
    // A new binary that passes its check, then hangs instead of serving.
    let bins = bin_dir();
    let hangs = script(
        bins.path(),
        "hangs",
        "if [ \"$1\" = check ]; then exit 0; fi\nexec sleep 1000",
    );
    let mut upgrade = Command::new(candor_bin())
        .args(["upgrade", "--binary", hangs.to_str().unwrap()])
        .env("CANDOR_SOCKET", &d.socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    unit.until(&rx, "the guard as main pid", |u| u.main != daemon);
    let guard = unit.main;
    // `systemctl stop` (KillMode=process): SIGTERM to the main pid, the guard.
    // SAFETY: kill(2) of the guard this test's daemon started.
    unsafe { libc::kill(guard as i32, libc::SIGTERM) };
    unit.until(&rx, "the main pid back to the daemon", |u| u.main == daemon);
    wait_for("the hung successor stopped", T, || {
        (!alive(daemon as u64)).then_some(())
    });
    wait_for("the guard gone", T, || (!alive(guard as u64)).then_some(()));
    assert!(unit.ignored.is_empty(), "{unit:?}");
    let _ = upgrade.kill();
    let _ = upgrade.wait();
    // The service was left running, as `KillMode=process` means (the next daemon adopts it).
    assert!(alive(service));
    // SAFETY: kill(2) of the service this test's daemon started.
    unsafe { libc::kill(service as i32, libc::SIGKILL) };
}

#[test]
fn as_pid_1_a_successor_that_never_answers_gives_way_to_the_old_binary_after_60s() {
    let Some((mut init, nap, sleeper)) = start_init() else {
        return;
    };
    let bins = bin_dir();
    let hangs = failing_successor(bins.path(), "hangs", "daemon-start:hang");
    let before = init.info();
    let out = init.cli(&["upgrade", "--binary", hangs.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        init.running(),
        "the namespace went down; log:\n{}",
        init.log()
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        err.contains("upgrade failed: the new binary did not answer within 60s"),
        "{err}\nlog:\n{}",
        init.log()
    );
    assert_eq!(host_pid(&format!("sleep {nap}")), Some(sleeper));
    let after = init.info();
    assert_eq!(after["pid"], 1);
    assert_ne!(after["incarnation"], before["incarnation"]);
    assert!(init.cli(&["restart", "nap", "--wait"]).status.success());
}
