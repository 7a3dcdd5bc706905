//! The keeper: the only code that creates, signals and reaps processes.
//!
//! It runs on its own thread and talks to the brain only through [`KeeperCommand`] and
//! [`KeeperEvent`] — no shared state — so that it can later move into its own process and keep
//! services and their pipes alive across a crash of the brain. It is a child subreaper, puts
//! every service in its own session/process group and, where cgroup v2 is writable, its own
//! cgroup; a stop signals the whole group and SIGKILLs it (and `cgroup.kill`s the cgroup) after
//! the timeout, so a stop always ends and leaves nothing behind.

mod cgroup;
pub mod clock;
mod clone3;
mod keeper;
pub mod listeners;
mod pidfd;
mod probe_spawn;
mod procfs;
pub mod sockfile;
pub mod sockpath;
mod spawn;
mod sys;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

pub use candor_core::{ExitStatus, Mono};
pub use cgroup::procs as cgroup_procs;
pub use cgroup::{detect as detect_containment, Containment};
pub use keeper::{start, KeeperHandle, SendError};
pub use procfs::{pgid, running, start_ticks};

/// How the keeper should contain services.
#[derive(Clone, Debug)]
pub struct KeeperConfig {
    /// Names this daemon's cgroup subtree: `<its own cgroup>/candor/<instance>/<service>`.
    pub instance: String,
    /// `false` forces process-group containment (as where cgroups are not writable).
    pub use_cgroups: bool,
    /// `false` forces the portable fork/exec path (as on kernels without clone3).
    pub use_clone3: bool,
    /// How often orphans re-parented to the keeper are reaped: once a second, or much more
    /// often as a container's init, where every orphan of the namespace comes to it.
    pub reap_every: std::time::Duration,
}

/// `KeeperConfig::reap_every` as a container's init.
pub const INIT_REAP_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Everything needed to start one run of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnRequest {
    pub service: String,
    pub run_id: u64,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
    /// RLIMIT_NOFILE (soft, hard) for the child; None keeps the keeper's own.
    pub nofile: Option<(u64, u64)>,
    /// The child's umask; None keeps the keeper's own.
    pub umask: Option<u32>,
    /// Whom the child runs as (groups, gid, uid set before exec); None: as the daemon.
    pub credentials: Option<candor_spec::Credentials>,
    /// Start from an empty environment instead of the daemon's (`env` then sets PATH).
    pub clean_env: bool,
    /// cgroup v2 limits written to the service's cgroup before the spawn.
    pub limits: candor_spec::CgroupLimits,
    /// Used when the main process exits on its own and leaves others in its group.
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    /// s6-style readiness: the child gets a pipe's write end on this fd; its read end comes
    /// back in `Spawned::ready_fd`.
    pub ready_fd: Option<u32>,
    /// Add `WATCHDOG_PID=<the child's pid>` to its environment (filled in by the child).
    pub watchdog_pid: bool,
    /// Declared sockets: a stale file (connection refused) is removed before the spawn; one
    /// with a live listener makes the spawn fail with that reason.
    pub sockets: Vec<PathBuf>,
    /// Sockets the keeper listens on for this service and hands over as fd 3.. with
    /// LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES; kept open between runs.
    pub activate: Vec<candor_spec::listen::Listen>,
    /// Readiness marker files, removed before the spawn.
    pub clear_files: Vec<PathBuf>,
    /// `false`: stdout/stderr go to /dev/null (probes), no pipes.
    pub capture_output: bool,
    /// Whose activated sockets these are: an instance of a replicated service shares its
    /// group's (one listener, the kernel balancing accepts); None: the service's own.
    pub listen_key: Option<String>,
}

impl SpawnRequest {
    /// The name the keeper keeps this spawn's activated sockets under.
    pub fn listeners_of(&self) -> &str {
        self.listen_key.as_deref().unwrap_or(&self.service)
    }
}

impl SpawnRequest {
    /// A plain request with no readiness, sockets or markers.
    pub fn new(service: &str, run_id: u64, argv: Vec<String>) -> Self {
        Self {
            service: service.into(),
            run_id,
            argv,
            env: Vec::new(),
            workdir: None,
            nofile: None,
            umask: None,
            credentials: None,
            clean_env: false,
            limits: Default::default(),
            stop_signal: 15,
            stop_timeout: Duration::from_secs(10),
            ready_fd: None,
            watchdog_pid: false,
            sockets: Vec::new(),
            activate: Vec::new(),
            clear_files: Vec::new(),
            capture_output: true,
            listen_key: None,
        }
    }
}

/// A run an earlier supervisor started, to take over (see `KeeperCommand::Adopt`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdoptRequest {
    pub service: String,
    pub run_id: u64,
    pub pid: u32,
    /// Its start time in clock ticks after boot, as recorded at its spawn.
    pub start_ticks: u64,
    /// A stop was under way: SIGKILL the run's group then.
    pub kill_at: Option<Mono>,
    /// Used when the main process ends and leaves others in its group.
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    /// Its activated sockets: taken back from the running process's fds 3.. (pidfd_getfd),
    /// so the next run gets the same sockets.
    pub activate: Vec<candor_spec::listen::Listen>,
    /// See [`SpawnRequest::listen_key`].
    pub listen_key: Option<String>,
}

/// A command a panic in the keeper left undone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unfinished {
    Spawn { service: String, run_id: u64 },
    Stop { service: String, run_id: u64 },
}

#[derive(Debug)]
pub enum KeeperCommand {
    Spawn(Box<SpawnRequest>),
    /// Signal the whole group/cgroup now; SIGKILL all of it after `timeout`.
    Stop {
        service: String,
        run_id: u64,
        signal: i32,
        timeout: Duration,
    },
    /// Send `signal` to the live run `run_id`: its main process, or with `all` every process
    /// of it, once each (`candor reload NAME`, `candor kill NAME`). Nothing if it is gone;
    /// `answer` says which (or is dropped, unanswered, if the keeper could not handle it).
    Signal {
        service: String,
        run_id: u64,
        signal: i32,
        all: bool,
        answer: Option<std::sync::mpsc::SyncSender<Result<(), String>>>,
    },
    /// Take over a run an earlier supervisor started. The keeper checks that `pid` is still the
    /// process that started at `start_ticks` and still in the service's cgroup (or leads its
    /// process group) — never the pid alone — and watches it through a pidfd. Gone: it reports
    /// `Exited` with the status the kernel kept (`PIDFD_INFO_EXIT`) or `Unknown`, and stops
    /// whatever is left of the run. `kill_at`: a stop was under way; SIGKILL then.
    Adopt(AdoptRequest),
    /// Kill and remove the cgroups of services not in `keep` (left from earlier configs/runs).
    Sweep {
        keep: Vec<String>,
    },
    /// Close the service's activated sockets and remove their files (it was removed).
    Release {
        service: String,
    },
    /// Run an exec probe: argv in its own process group (not the service's cgroup), output
    /// discarded, SIGKILLed with its group at `timeout`. Answered by `ProbeDone`.
    RunProbe {
        token: u64,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        workdir: Option<PathBuf>,
        timeout: Duration,
        /// The service's user and groups, and whether its environment is clean.
        run_as: RunAs,
        /// What it reads on fd 0 (an exec hook's event), through a pipe written once without
        /// blocking and closed; `None`: /dev/null.
        stdin: Option<Vec<u8>>,
    },
    /// Stop reading commands; the keeper thread ends once nothing it tracks is alive.
    Shutdown,
    /// Stop doing anything — no spawn, no signal, no reap — and say so on `ack` (after every
    /// event so far has been emitted): the daemon is about to exec its successor, which takes
    /// over what the keeper tracked from the run records. The keeper stays frozen until `thaw`
    /// is sent to or dropped (the exec replaces the process first when the handover goes on);
    /// a freeze whose `ack` nobody waits for any more (the daemon gave up) changes nothing.
    Freeze {
        ack: std::sync::mpsc::SyncSender<()>,
        thaw: std::sync::mpsc::Receiver<()>,
    },
}

/// Whom an exec probe or reload command runs as: the service's user, groups and
/// environment choice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunAs {
    pub credentials: Option<candor_spec::Credentials>,
    pub clean_env: bool,
    pub umask: Option<u32>,
}

impl RunAs {
    /// What `spec` asks for, with `default_umask` when it sets none. Credentials that would
    /// change nothing (a daemon not running as root, asked to run a service as itself) are
    /// dropped: only a switch that needs root is attempted, and fails with the reason.
    pub fn of(spec: &candor_spec::ServiceSpec, default_umask: u32) -> Self {
        // Asked of the kernel only for a service that names a user or group (this runs for
        // every spawn and every exec probe).
        let credentials = spec.credentials().filter(|c| {
            let me = (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            );
            me.0 == 0
                || c.uid.is_some_and(|u| u != me.0)
                || c.gid.is_some_and(|g| g != me.1)
                || c.groups
                    .as_ref()
                    .is_some_and(|g| g.iter().any(|g| *g != me.1 && !own_groups().contains(g)))
        });
        RunAs {
            credentials,
            clean_env: !spec.inherit_env,
            umask: Some(spec.umask.unwrap_or(default_umask)),
        }
    }
}

/// The daemon's supplementary groups.
fn own_groups() -> Vec<u32> {
    // SAFETY: getgroups(0, NULL) returns the count; the second call fills at most `n`.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut groups = vec![0; n.max(0) as usize];
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    groups.truncate(got.max(0) as usize);
    groups
}

/// How an exec probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEnd {
    Exited(ExitStatus),
    TimedOut,
    CannotStart(String),
}

#[derive(Debug)]
pub enum KeeperEvent {
    Spawned {
        service: String,
        run_id: u64,
        pid: u32,
        at: Mono,
        /// The child's start time in clock ticks after boot: with `pid`, what a later daemon
        /// checks before adopting it.
        start_ticks: u64,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
        /// Read end of the readiness pipe when `ready_fd` was asked for.
        ready_fd: Option<OwnedFd>,
        /// Processes from an earlier run found in the service's cgroup and killed first.
        cleared_leftovers: usize,
        /// The service has cgroup limits that are not enforced, and why.
        unenforced: Option<String>,
    },
    SpawnFailed {
        service: String,
        run_id: u64,
        error: String,
    },
    /// The main process was reaped. `group_empty`: nothing else of the run was left, so no
    /// `Emptied` follows; the run is over.
    Exited {
        service: String,
        run_id: u64,
        status: ExitStatus,
        at: Mono,
        group_empty: bool,
        /// SIGKILL was needed (as in `Emptied`).
        escalated: bool,
        /// Processes of the run the kernel's OOM killer killed (memory.events), so far.
        oom_kills: u64,
    },
    /// Nothing of the run is left (main reaped, group/cgroup empty). Only now may it start again.
    Emptied {
        service: String,
        run_id: u64,
        at: Mono,
        escalated: bool,
    },
    /// An exec probe finished.
    ProbeDone {
        token: u64,
        end: ProbeEnd,
        elapsed: Duration,
    },
    /// Something went wrong that is not tied to one command (kept for the event log).
    Warning { message: String },
    /// The keeper thread panicked (a bug) and carried on; what it was doing and what was said.
    /// `refused`: the spawn or stop it was handling, not done — as if not taken (the brain
    /// retries it).
    Panicked {
        message: String,
        refused: Option<Unfinished>,
    },
}
