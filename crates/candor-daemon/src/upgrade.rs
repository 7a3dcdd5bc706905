//! `candor upgrade`: the daemon execs its successor in place (same pid, so services stay its
//! children), handing over the listening API socket through the environment; the successor
//! takes every run over from the run records like any restarted daemon.
//!
//! If the successor fails to start — exits before it answers, or never answers — a guard takes
//! over: a small process of the *old* binary, started just before the exec, that holds its own
//! copy of the listening socket (so the socket path keeps answering, clients wait in its
//! backlog) and, on failure, execs the old binary as the daemon again, which adopts every
//! service and reports the failure (`DaemonInfo::upgrade_error`).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What a daemon passes to the daemon it execs, through the environment.
#[derive(Clone, Debug, Default)]
pub struct Handover {
    /// The listening API socket, open across the exec.
    pub listen_fd: Option<i32>,
    /// "pid P, version V" of the daemon that handed over.
    pub from: Option<String>,
    /// Set when the successor failed and the old binary takes over again: why.
    pub error: Option<String>,
}

const LISTEN_FD_VAR: &str = "CANDOR_LISTEN_FD";
const FROM_VAR: &str = "CANDOR_UPGRADED_FROM";
const ERROR_VAR: &str = "CANDOR_UPGRADE_ERROR";

impl Handover {
    /// Read and remove the handover variables (so that services never see them). Call it
    /// before any thread starts.
    pub fn take_from_env() -> Self {
        let take = |var: &str| {
            let v = std::env::var(var).ok();
            std::env::remove_var(var);
            v
        };
        Self {
            listen_fd: take(LISTEN_FD_VAR).and_then(|v| v.parse().ok()),
            from: take(FROM_VAR),
            error: take(ERROR_VAR),
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

fn inheritable(fd: &OwnedFd, yes: bool) -> std::io::Result<()> {
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
) -> std::process::Command {
    let mut cmd = std::process::Command::new(binary);
    cmd.args(args)
        .env(LISTEN_FD_VAR, listen.as_raw_fd().to_string())
        .env(FROM_VAR, from)
        // Test failpoints fire once in a daemon's life, not again in its successor.
        .env_remove("CANDOR_FAILPOINTS");
    cmd
}

/// Start the guard, then exec `binary` with this daemon's arguments. Called once the shell has
/// handed over (keeper frozen, records written, readers stopped). Never returns: if neither
/// the exec nor the guard can be had, the daemon exits and its services run on (a daemon
/// started again adopts them).
pub fn hand_over(binary: &Path, listen: &OwnedFd, socket: &Path, incarnation: &str) -> ! {
    use std::os::unix::process::CommandExt;
    let from = format!(
        "pid {}, version {}",
        std::process::id(),
        env!("CARGO_PKG_VERSION")
    );
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if let Err(e) = inheritable(listen, true) {
        eprintln!("candor: cannot hand over the API socket ({e}); exiting, services keep running");
        std::process::exit(1);
    }
    // The guard: this (old) binary, spawned while the keeper is frozen (nothing reaps it
    // from under us; the successor's keeper reaps it as a stranger when it ends).
    let guard = std::process::Command::new("/proc/self/exe")
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
        .spawn();
    if let Err(e) = &guard {
        eprintln!("candor: warning: no upgrade guard ({e}); a successor that fails leaves no daemon until one is started");
    }
    let e = successor(binary, listen, &args, &from).exec();
    // The exec itself failed: this binary takes over again at once (the guard then sees a new
    // incarnation and leaves).
    let why = format!("cannot exec {}: {e}", binary.display());
    eprintln!("candor: {why}; taking over again from this binary");
    let e = successor(Path::new("/proc/self/exe"), listen, &args, &from)
        .arg0(own_binary_path().unwrap_or_else(|| "candor".into()))
        .env(ERROR_VAR, &why)
        .exec();
    eprintln!("candor: cannot exec this binary again either ({e}); exiting, services keep running");
    std::process::exit(1);
}

/// The guard's last resort: exec this (old) binary as the daemon, on the handed socket.
pub fn take_over(listen_fd: i32, from: &str, why: &str, args: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("/proc/self/exe")
        .arg0(own_binary_path().unwrap_or_else(|| "candor".into()))
        .args(args)
        .env(LISTEN_FD_VAR, listen_fd.to_string())
        .env(FROM_VAR, from)
        .env(ERROR_VAR, why)
        .exec()
}

pub use candor_keeper::running;

/// SIGKILL a successor that hangs instead of serving (it holds the state dir).
pub fn kill(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}
