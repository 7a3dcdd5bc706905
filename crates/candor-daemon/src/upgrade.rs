//! `candor upgrade`: the daemon execs its successor in place (same pid, so services stay its
//! children), handing over the listening API socket and what services get from how the first
//! daemon was started (`Original`: umask, RLIMIT_NOFILE) through the environment; the successor
//! takes every run over from the run records like any restarted daemon.
//!
//! If the successor fails to start — exits before it answers, or never answers — a guard takes
//! over: a small process of the *old* binary, started just before the exec, that holds its own
//! copy of the listening socket (so the socket path keeps answering, clients wait in its
//! backlog) and, on failure, execs the old binary as the daemon again, which adopts every
//! service and reports the failure (`DaemonInfo::upgrade_error`). Under systemd the guard is
//! the unit's main pid meanwhile (sd_notify `MAINPID=`). As PID 1 there is no guard process:
//! the new binary is tried as a child first (`trial`), and guards itself (`fallback.rs`).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What services get that the daemon changes for itself at start: the umask (the daemon's is
/// 077) and RLIMIT_NOFILE (the daemon raises its soft limit to the hard one). Read once, by
/// the daemon started first, and handed down through every exec — an upgrade, a restart in
/// place, the guard's fallback — so that none changes what new services get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Original {
    pub umask: u32,
    /// (soft, hard), if it could be read.
    pub nofile: Option<(u64, u64)>,
}

impl Original {
    /// The variables that carry it across an exec.
    pub fn to_env(self) -> [(&'static str, String); 2] {
        [
            (UMASK_VAR, format!("{:04o}", self.umask)),
            (
                NOFILE_VAR,
                match self.nofile {
                    Some((soft, hard)) => format!("{soft} {hard}"),
                    None => "unknown".into(),
                },
            ),
        ]
    }

    fn parse(umask: &str, nofile: &str) -> Option<Self> {
        let umask = u32::from_str_radix(umask, 8).ok().filter(|m| *m <= 0o777)?;
        let nofile = match nofile {
            "unknown" => None,
            pair => {
                let (soft, hard) = pair.split_once(' ')?;
                Some((soft.parse().ok()?, hard.parse().ok()?))
            }
        };
        Some(Self { umask, nofile })
    }
}

/// What a daemon passes to the daemon it execs, through the environment.
#[derive(Clone, Debug, Default)]
pub struct Handover {
    /// The listening API socket, open across the exec.
    pub listen_fd: Option<i32>,
    /// "pid P, version V" of the daemon that handed over.
    pub from: Option<String>,
    /// Set when the successor failed and the old binary takes over again: why.
    pub error: Option<String>,
    /// The umask and fd limit the first daemon was started with (see [`Original`]).
    pub original: Option<Original>,
    /// The guard watching this handover: systemd's main pid meanwhile, so it, not this daemon,
    /// tells systemd that the handover is done.
    pub guard: Option<u32>,
    /// PID 1 mode: the predecessor's image, open across the exec, to exec again if this one
    /// fails before it answers (see `fallback.rs`).
    pub fallback_exe: Option<i32>,
    /// The notify socket, open across the exec (see `notify_place::take_handed`).
    pub notify: Option<String>,
}

const LISTEN_FD_VAR: &str = "CANDOR_LISTEN_FD";
const FROM_VAR: &str = "CANDOR_UPGRADED_FROM";
const ERROR_VAR: &str = "CANDOR_UPGRADE_ERROR";
const UMASK_VAR: &str = "CANDOR_ORIGINAL_UMASK";
const NOFILE_VAR: &str = "CANDOR_ORIGINAL_NOFILE";
const GUARD_VAR: &str = "CANDOR_UPGRADE_GUARD";
const FALLBACK_VAR: &str = "CANDOR_FALLBACK_EXE_FD";
const NOTIFY_VAR: &str = "CANDOR_NOTIFY_FD";

impl Handover {
    /// Read and remove the handover variables (so that services never see them). Call it
    /// before any thread starts.
    pub fn take_from_env() -> Self {
        let take = |var: &str| {
            let v = std::env::var(var).ok();
            std::env::remove_var(var);
            v
        };
        let (umask, nofile) = (take(UMASK_VAR), take(NOFILE_VAR));
        Self {
            listen_fd: take(LISTEN_FD_VAR).and_then(|v| v.parse().ok()),
            from: take(FROM_VAR),
            error: take(ERROR_VAR),
            original: umask.zip(nofile).and_then(|(u, n)| Original::parse(&u, &n)),
            guard: take(GUARD_VAR).and_then(|v| v.parse().ok()),
            fallback_exe: take(FALLBACK_VAR).and_then(|v| v.parse().ok()),
            notify: take(NOTIFY_VAR),
        }
    }

    /// What services get: what the predecessor handed down, or — for a daemon nobody handed
    /// over to — `own`, read from how this process was started.
    pub fn original_or(&self, own: Original) -> Original {
        match (&self.from, self.original) {
            (Some(_), Some(o)) => o,
            _ => own,
        }
    }
}

/// The binary `candor upgrade` uses by default: the one now at this daemon's own path (where
/// an upgrade of the package has put the new one).
pub fn own_binary_path() -> Option<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let s = exe.to_string_lossy();
    Some(PathBuf::from(
        s.strip_suffix(" (deleted)").unwrap_or(&s).to_string(),
    ))
}

fn inheritable(fd: &impl std::os::fd::AsFd, yes: bool) -> std::io::Result<()> {
    let flags = if yes {
        rustix::io::FdFlags::empty()
    } else {
        rustix::io::FdFlags::CLOEXEC
    };
    rustix::io::fcntl_setfd(fd, flags).map_err(Into::into)
}

/// `binary daemon-args…` with the handover in its environment.
fn successor(
    binary: &Path,
    listen: &OwnedFd,
    args: &[OsString],
    from: &str,
    original: Original,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(binary);
    cmd.args(args)
        .env(LISTEN_FD_VAR, listen.as_raw_fd().to_string())
        .env(FROM_VAR, from)
        .envs(original.to_env())
        // Test failpoints fire once in a daemon's life, not again in its successor.
        .env_remove("CANDOR_FAILPOINTS");
    cmd
}

/// What the daemon being replaced knows of itself.
pub struct Outgoing<'a> {
    pub listen: &'a OwnedFd,
    pub socket: &'a Path,
    pub incarnation: &'a str,
    pub original: Original,
    /// PID 1 of a PID namespace: its exit would take every process of the namespace down.
    pub init: bool,
    /// The notify socket and what tells the successor where it is (`notify_place`), so that
    /// messages sent during the exec wait in it instead of finding no one bound.
    pub notify: Option<(std::os::fd::BorrowedFd<'a>, String)>,
}

/// This (old) binary's image, open without close-on-exec: what a PID 1 successor execs again
/// if it fails before it answers.
fn own_image() -> std::io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        "/proc/self/exe",
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )?;
    inheritable(&fd, true)?;
    Ok(fd)
}

/// Start the guard, then exec `binary` with this daemon's arguments. Called once the shell has
/// handed over (keeper frozen, records written, readers stopped). Never returns: if neither
/// the exec nor the guard can be had, the daemon exits and its services run on (a daemon
/// started again adopts them) — except as PID 1, where an exit would kill them: it tries
/// again instead.
///
/// Under systemd (`NOTIFY_SOCKET`, Type=notify): `RELOADING=1` first, then `MAINPID=<guard>`
/// before the exec, so that systemd watches the guard, not this pid: a successor that exits
/// is not the main process's exit (no `Restart=`), and the guard, which execs the old binary
/// on failure, or says `MAINPID=<daemon>` + `READY=1` on success, is.
///
/// As PID 1 there is no guard process (it would die with the namespace): the successor is
/// handed this image instead, and guards itself until it answers (`fallback.rs`).
pub fn hand_over(binary: &Path, out: Outgoing<'_>) -> ! {
    use std::os::unix::process::CommandExt;
    let Outgoing {
        listen,
        socket,
        incarnation,
        original,
        init,
        notify,
    } = out;
    let from = format!(
        "pid {}, version {}",
        std::process::id(),
        env!("CARGO_PKG_VERSION")
    );
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if let Err(e) = candor_sdk::notify::reloading() {
        eprintln!("candor: cannot tell systemd it is reloading: {e}");
    }
    let itself = || {
        let mut cmd = successor(Path::new("/proc/self/exe"), listen, &args, &from, original);
        cmd.arg0(own_binary_path().unwrap_or_else(|| "candor".into()));
        cmd
    };
    if let Err(e) = inheritable(listen, true) {
        give_up(
            init,
            &format!("cannot hand over the API socket ({e})"),
            itself,
        );
    }
    let mut guard_pid = None;
    let mut image = None;
    if init {
        match own_image() {
            Ok(fd) => image = Some(fd),
            Err(e) => eprintln!(
                "candor: warning: cannot keep this binary open for a fallback ({e}); a successor that fails takes the namespace down"
            ),
        }
    } else {
        // The guard: this (old) binary, spawned while the keeper is frozen (nothing reaps it
        // from under us; the successor's keeper reaps it as a stranger when it ends).
        let mut guard = std::process::Command::new("/proc/self/exe");
        guard
            .arg0(own_binary_path().unwrap_or_else(|| "candor".into()))
            .arg("--socket")
            .arg(socket)
            .arg("upgrade-guard")
            .arg("--pid")
            .arg(std::process::id().to_string())
            .arg("--incarnation")
            .arg(incarnation)
            .arg("--listen-fd")
            .arg(listen.as_raw_fd().to_string())
            .arg("--from")
            .arg(&from)
            .arg("--")
            .args(&args)
            .envs(original.to_env());
        // Born with SIGTERM blocked, until it handles it (`guard_handles_sigterm`): systemd's
        // stop reaches it as soon as it is the main pid, and must not kill it by default.
        // SAFETY: sigemptyset/sigaddset/sigprocmask are async-signal-safe.
        unsafe {
            guard.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let guard = guard.spawn();
        match guard {
            Ok(g) => {
                // systemd follows the guard until the handover is over (see above).
                tell_systemd_before_going(&format!("MAINPID={}", g.id()));
                guard_pid = Some(g.id());
            }
            Err(e) => eprintln!(
                "candor: warning: no upgrade guard ({e}); a successor that fails leaves no daemon until one is started"
            ),
        }
    }
    // Only the successor gets the notify socket (the guard, spawned above, does not hold it).
    let notify = notify.and_then(|(fd, value)| match inheritable(&fd, true) {
        Ok(()) => Some(value),
        Err(e) => {
            eprintln!("candor: warning: cannot hand over the notify socket ({e}); the successor binds it anew");
            None
        }
    });
    let mut next = successor(binary, listen, &args, &from, original);
    if let Some(g) = guard_pid {
        next.env(GUARD_VAR, g.to_string());
    }
    if let Some(v) = &notify {
        next.env(NOTIFY_VAR, v);
    }
    if let Some(fd) = &image {
        next.env(FALLBACK_VAR, fd.as_raw_fd().to_string());
    }
    let e = next.exec();
    // The exec itself failed: this binary takes over again at once (the guard then sees a new
    // incarnation, tells systemd this pid is the main one again, and leaves).
    let why = format!("cannot exec {}: {e}", binary.display());
    eprintln!("candor: {why}; taking over again from this binary");
    drop(image);
    let mut again = itself();
    again.env(ERROR_VAR, &why);
    if let Some(g) = guard_pid {
        again.env(GUARD_VAR, g.to_string());
    }
    if let Some(v) = &notify {
        again.env(NOTIFY_VAR, v);
    }
    let e = again.exec();
    give_up(
        init,
        &format!("cannot exec this binary again either ({e})"),
        itself,
    );
}

/// The handover cannot go on. A daemon exits and its services run on, for the next daemon to
/// adopt; PID 1 must not exit (the kernel would kill every process of its namespace): it
/// keeps trying to exec its own binary again.
fn give_up(init: bool, why: &str, again: impl Fn() -> std::process::Command) -> ! {
    use std::os::unix::process::CommandExt;
    if !init {
        eprintln!("candor: {why}; exiting, services keep running");
        std::process::exit(1);
    }
    eprintln!("candor: {why}; as PID 1 it must not exit: trying to exec itself again every 5s");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(5));
        let e = again().env(ERROR_VAR, why).exec();
        eprintln!("candor: cannot exec itself again ({e}); trying again in 5s");
    }
}

/// The guard's last resort: exec this (old) binary as the daemon, on the handed socket.
pub fn take_over(
    listen_fd: i32,
    from: &str,
    why: &str,
    args: &[OsString],
    original: Option<Original>,
) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0(own_binary_path().unwrap_or_else(|| "candor".into()))
        .args(args)
        .env(LISTEN_FD_VAR, listen_fd.to_string())
        .env(FROM_VAR, from)
        .env(ERROR_VAR, why)
        .env_remove("CANDOR_FAILPOINTS");
    if let Some(o) = original {
        cmd.envs(o.to_env());
    }
    cmd.exec()
}

pub use candor_keeper::running;

/// An sd_notify message to the daemon's own supervisor (systemd's `NOTIFY_SOCKET`), if any.
pub fn tell_systemd(message: &str) {
    if let Err(e) = candor_sdk::notify::send(message) {
        eprintln!("candor: cannot tell systemd {message:?}: {e}");
    }
}

/// `tell_systemd`, then wait (at most 2 s) until systemd has taken it (`BARRIER=1`): a main
/// pid handed on must be systemd's before the old main process execs or exits, or systemd
/// could see that first and restart the unit.
pub fn tell_systemd_before_going(message: &str) {
    tell_systemd(message);
    if let Err(e) = candor_sdk::notify::barrier(std::time::Duration::from_secs(2)) {
        eprintln!("candor: systemd did not confirm {message:?}: {e}");
    }
}

/// In the guard, once its SIGTERM handler is in place: take the SIGTERM it was born blocking
/// (one sent meanwhile is delivered now).
pub fn guard_handles_sigterm() {
    // SAFETY: changing this thread's signal mask (the guard's only thread that waits).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// SIGTERM the daemon (the guard got the stop meant for it).
pub fn terminate(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    }
}

/// SIGKILL a successor that hangs instead of serving (it holds the state dir).
pub fn kill(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// How long the new binary's trial run may take (start, one service, stop).
const TRIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// As PID 1, before the exec: `check -c` says the new binary reads the config, not that it
/// can run as the daemon, and a successor that exits at start takes the whole namespace down
/// (only one that knows `fallback.rs` can go back by itself). So the new binary first runs as
/// a daemon, as a child (through the keeper, like the check): `<binary> daemon` on a config of
/// its own in a scratch dir of the state dir (no cgroups), whose one service, `main = true`,
/// is `<binary> --version` — it must start, listen, spawn, reap, stop and exit 0, leaving its
/// database made. Any failure refuses the upgrade, and nothing changed.
pub async fn trial(
    exec: &crate::probe::ExecProbes,
    keeper: &candor_keeper::KeeperHandle,
    binary: &Path,
    state_dir: &Path,
) -> Result<(), String> {
    let dir = state_dir.join("upgrade-trial");
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("t.sock");
    // sun_path holds 107 bytes and a NUL.
    if socket.as_os_str().len() > 100 {
        return Err(format!(
            "its trial run needs a socket path under {} shorter than 100 bytes; use a shorter state_dir",
            state_dir.display()
        ));
    }
    let config = dir.join("candor.toml");
    let text = format!(
        "[daemon]\nstate_dir = {}\n\n[service.trial]\ncommand = [{}, \"--version\"]\nmain = true\nrestart = \"never\"\n",
        toml_string(&dir.join("state").to_string_lossy()),
        toml_string(&binary.to_string_lossy()),
    );
    std::fs::create_dir(&dir)
        .and_then(|()| std::fs::write(&config, text))
        .map_err(|e| format!("cannot prepare its trial run in {}: {e}", dir.display()))?;
    let argv = vec![
        binary.display().to_string(),
        "daemon".to_string(),
        "-c".to_string(),
        config.display().to_string(),
        "--socket".to_string(),
        socket.display().to_string(),
    ];
    let env = vec![
        ("CANDOR_CGROUP".to_string(), "off".to_string()),
        ("CANDOR_FAILPOINTS".to_string(), String::new()),
    ];
    let end = exec
        .run_cmd(
            keeper,
            &argv,
            env,
            None,
            candor_keeper::RunAs::default(),
            TRIAL_TIMEOUT,
        )
        .await;
    let made_db = dir.join("state/candor.db").is_file();
    let _ = std::fs::remove_dir_all(&dir);
    let run = format!("`{}`", argv.join(" "));
    match end {
        candor_keeper::ProbeEnd::Exited(s) if s.success() && made_db => Ok(()),
        candor_keeper::ProbeEnd::Exited(s) if s.success() => Err(format!(
            "its trial run as a daemon ({run}) exited 0 without making a database: it is not a candor daemon"
        )),
        candor_keeper::ProbeEnd::Exited(s) => Err(format!(
            "its trial run as a daemon ({run}) {}; as PID 1 a successor that fails at start would take every process of the namespace down",
            s.describe()
        )),
        candor_keeper::ProbeEnd::TimedOut => Err(format!(
            "its trial run as a daemon ({run}) did not end within {}s",
            TRIAL_TIMEOUT.as_secs()
        )),
        candor_keeper::ProbeEnd::CannotStart(e) => {
            Err(format!("its trial run as a daemon cannot start: {e}"))
        }
    }
}

/// Wait until this daemon answers `GET /v1/daemon` on its own socket, as a client would (the
/// guard's test of a successor).
pub async fn answered(socket: &Path, incarnation: &str) {
    let every = std::time::Duration::from_millis(50);
    while tokio::time::timeout(std::time::Duration::from_secs(2), ask(socket, incarnation))
        .await
        .ok()
        .flatten()
        .is_none()
    {
        tokio::time::sleep(every).await;
    }
}

/// One `GET /v1/daemon`: whether it answered 200 as this incarnation.
async fn ask(socket: &Path, incarnation: &str) -> Option<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket).await.ok()?;
    s.write_all(b"GET /v1/daemon HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.ok()?;
    let answer = String::from_utf8_lossy(&answer);
    (answer.starts_with("HTTP/1.1 200") && answer.contains(incarnation)).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_umask_and_fd_limit_cross_an_exec_as_they_were() {
        for o in [
            Original {
                umask: 0o022,
                nofile: Some((1024, 524288)),
            },
            Original {
                umask: 0o007,
                nofile: None,
            },
        ] {
            let [(_, u), (_, n)] = o.to_env();
            assert_eq!(Original::parse(&u, &n), Some(o));
        }
        assert_eq!(Original::parse("0022", "1024"), None, "a pair or unknown");
        assert_eq!(Original::parse("1777", "unknown"), None, "not a umask");
    }

    #[test]
    fn only_a_handover_says_what_services_get() {
        let own = Original {
            umask: 0o027,
            nofile: Some((1, 2)),
        };
        let handed = Original {
            umask: 0o022,
            nofile: Some((1024, 4096)),
        };
        let mut h = Handover {
            original: Some(handed),
            ..Default::default()
        };
        // Variables someone set for a daemon nobody handed over to are not believed.
        assert_eq!(h.original_or(own), own);
        h.from = Some("pid 7, version 0.1.0".into());
        assert_eq!(h.original_or(own), handed);
        h.original = None;
        assert_eq!(h.original_or(own), own);
    }
}
