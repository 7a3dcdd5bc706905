//! The keeper's thread: an epoll loop over a wake pipe, the pidfds of main processes and exec
//! probes and the status pipes of children not yet exec'd, reaping every child (it is a
//! subreaper) and carrying stops through to SIGKILL. It never waits for an exec or a path:
//! a spawn is reported once its child's status pipe says how it went (`settle_starting`), and
//! the paths a spawn touches (markers, stale and activated sockets) are dealt with on a
//! `candor-paths` thread of its own (`settle_preparing`); both fail at a 10 s deadline.
//! A turn costs what happened in it, not the number of services: each pidfd is armed once
//! (one-shot) and says which process ended.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc::TrySendError;

use candor_core::queue::{bounded, BoundedReceiver as Receiver, BoundedSender};
use std::sync::Arc;
use std::time::Duration;

use candor_core::Mono;

use crate::clock::mono;

use rustix::event::epoll;
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{pidfd_open, Pid, PidfdFlags};

use crate::cgroup::{self, Containment};
use crate::spawn;
use crate::{ExitStatus, KeeperCommand, KeeperConfig, KeeperEvent};

/// Spawns, stops, sweeps: at most one spawn or stop in flight per service, so this holds a
/// thousand services' worth twice over.
const COMMAND_QUEUE: usize = 2048;
/// Exec probes wait in a queue of their own: work Candor makes for itself never takes a place
/// a stop needs, and a full probe queue sheds probes, not stops.
const PROBE_QUEUE: usize = 1024;
/// How long an adopted main process's exit status is waited for after its pidfd says it ended
/// (its parent, not us, must reap it first), before it is reported unknown.
const FOREIGN_EXIT_WAIT: Duration = Duration::from_secs(2);
/// Probes started per turn of the loop, so that a burst of them never delays a reap or a stop.
const PROBES_PER_TURN: usize = 32;

/// The brain's end: sends commands and wakes the keeper.
#[derive(Clone)]
pub struct KeeperHandle {
    tx: BoundedSender<KeeperCommand>,
    probes: BoundedSender<KeeperCommand>,
    wake: Arc<std::fs::File>,
}

/// Why the keeper did not take a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The queue of spawns, stops and sweeps is full.
    CommandsFull,
    /// The queue of exec probes is full: the daemon's own backlog (a caller may wait for room).
    ProbesFull,
    /// The keeper thread is gone.
    Stopped,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::CommandsFull => "keeper command queue is full",
            SendError::ProbesFull => "keeper probe queue is full",
            SendError::Stopped => "keeper has stopped",
        })
    }
}

impl KeeperHandle {
    /// Never blocks: a full queue (the keeper is stuck) is an error, not a stall.
    pub fn send(&self, cmd: KeeperCommand) -> Result<(), SendError> {
        self.try_send(cmd).map_err(|(_, e)| e)
    }

    /// As `send`, giving a command that was not taken back.
    #[allow(clippy::result_large_err)] // only on refusal, rare; boxing would cost every send
    pub fn try_send(&self, cmd: KeeperCommand) -> Result<(), (KeeperCommand, SendError)> {
        let (queue, full) = match cmd {
            KeeperCommand::RunProbe { .. } => (&self.probes, SendError::ProbesFull),
            _ => (&self.tx, SendError::CommandsFull),
        };
        match queue.try_send(cmd) {
            Ok(()) => {
                let _ = (&*self.wake).write(&[1]);
                Ok(())
            }
            Err(TrySendError::Full(cmd)) => Err((cmd, full)),
            Err(TrySendError::Disconnected(cmd)) => Err((cmd, SendError::Stopped)),
        }
    }
}

struct Tracked {
    run_id: u64,
    pid: i32,
    pidfd: Option<OwnedFd>,
    cgroup: Option<PathBuf>,
    main_exit: Option<ExitStatus>,
    stop_signal: i32,
    stop_timeout: Duration,
    /// Set once a stop (requested, or cleanup of leftovers) is under way.
    kill_at: Option<Mono>,
    escalated: bool,
    /// Adopted from an earlier supervisor and not our child: its exit comes through the
    /// pidfd (and `PIDFD_INFO_EXIT`), not waitpid.
    foreign: bool,
    /// A foreign main process's pidfd said it exited; its status is asked of the kernel
    /// until then (it is kept once the process is reaped by its parent).
    gone_since: Option<Mono>,
    /// Its pidfd is in the epoll set (one-shot: it fires once, at the exit).
    armed: bool,
    /// The cgroup's OOM kill count when the run began (or was adopted).
    oom_base: u64,
}

/// An exec probe in flight.
struct ProbeRun {
    token: u64,
    /// Its process, and the memory it reads until its exec (freed when it is reaped).
    child: crate::probe_spawn::ProbeChild,
    armed: bool,
    started: Mono,
    deadline: Mono,
    /// By when it must have exec'd (or said why not): its timeout, at most `EXEC_DEADLINE`.
    exec_by: Mono,
    /// Seen past its exec (or its report).
    started_ok: bool,
    /// Killed before its exec, at `exec_by`.
    stuck: bool,
    timed_out: bool,
}

/// A spawn whose paths are being prepared on a thread of its own (`candor-paths`).
struct Preparing {
    run_id: u64,
    /// Whose activated sockets the thread holds (`SpawnRequest::listeners_of`).
    key: String,
    deadline: Mono,
    /// The service was released (removed) meanwhile: its sockets go when they come back.
    released: bool,
    done: std::sync::mpsc::Receiver<PreparedPaths>,
}

/// What a `candor-paths` thread hands back: the request, the service's activated sockets
/// (kept or made), and the run's copies of them — or why the spawn cannot go on.
struct PreparedPaths {
    req: Box<crate::SpawnRequest>,
    kept: Vec<crate::listeners::Listener>,
    outcome: Result<Vec<OwnedFd>, String>,
}

/// On a `candor-paths` thread: remove readiness markers and stale declared sockets, then
/// keep or make the activated sockets (every step touches paths of the service's).
fn prepare_paths(
    req: crate::SpawnRequest,
    mut kept: Vec<crate::listeners::Listener>,
) -> PreparedPaths {
    let outcome = spawn::prepare_paths(&req).and_then(|()| {
        if req.activate.is_empty() {
            return Ok(Vec::new());
        }
        let owner = crate::sockpath::DirOwner::of(req.credentials.as_ref());
        crate::listeners::ensure(&mut kept, &req.activate, owner)?;
        crate::listeners::copies_for_run(&kept)
    });
    PreparedPaths {
        req: Box::new(req),
        kept,
        outcome,
    }
}

/// Close sockets and remove their files (path work) off the keeper's thread. Where no thread
/// can be had, the closure (and the sockets with it) is dropped here.
fn drop_off_thread(listeners: Vec<crate::listeners::Listener>) {
    if listeners.is_empty() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("candor-paths".into())
        .stack_size(256 * 1024)
        .spawn(move || drop(listeners));
}

/// A service's child between clone and exec (`clone3::Starting`): reported as spawned once
/// its exec is seen, as failed on its report or at the exec deadline. The keeper goes on with
/// everything else meanwhile.
struct PendingSpawn {
    child: crate::clone3::Starting,
    run_id: u64,
    deadline: Mono,
    cgroup: Option<PathBuf>,
    stop_signal: i32,
    stop_timeout: Duration,
    oom_base: u64,
    cleared: usize,
    unenforced: Option<String>,
    /// Reaped before its status pipe said how the exec went.
    exit: Option<ExitStatus>,
    /// A stop asked for meanwhile: signal, timeout, when.
    stop: Option<(i32, Duration, Mono)>,
}

struct Keeper {
    containment: Containment,
    use_clone3: bool,
    tracked: HashMap<String, Tracked>,
    /// Exec probes by pid.
    probes: HashMap<i32, ProbeRun>,
    /// Services whose child is between clone and exec.
    starting: HashMap<String, PendingSpawn>,
    /// Services whose spawn waits for its paths to be prepared on a thread of their own.
    preparing: HashMap<String, Preparing>,
    /// The write end of the wake pipe (for those threads).
    wake: Arc<std::fs::File>,
    emit: Box<dyn FnMut(KeeperEvent) + Send>,
    shutting_down: bool,
    /// Service cgroups this keeper made fresh and never wrote `cgroup.kill` to since: safe to
    /// spawn into without recreating (see `cgroup::make_fresh`).
    fresh: std::collections::HashSet<String>,
    /// The wake pipe and every armed pidfd.
    epoll: OwnedFd,
    /// Children whose pidfd fired: each is reaped by its pid (waitpid(-1) walks every child).
    /// All children are reaped while a stop is under way (every turn) and at least once a
    /// second (orphans re-parented to us have no pidfd).
    exited: Vec<i32>,
    last_reap: Mono,
    /// How often orphans are reaped when nothing else asks for it.
    reap_every: Duration,
    /// Some pidfd may not be armed yet (see `arm`).
    unarmed: bool,
    /// Activated sockets by service (by group for instances of a replicated service), kept
    /// between runs (`listeners.rs`).
    listeners: HashMap<String, Vec<crate::listeners::Listener>>,
    /// Spawns waiting while another instance's spawn prepares the sockets they share.
    deferred: HashMap<String, Vec<crate::SpawnRequest>>,
    /// cgroup controllers some service's limits needed and that are enabled down Candor's
    /// subtree (one that could not be is asked for again at the next such spawn: the reason
    /// said is always today's).
    /// once per controller).
    controllers: std::collections::HashSet<&'static str>,
}

/// Epoll data: the wake pipe, or a pid with what it is.
const EV_WAKE: u64 = u64::MAX;
const EV_FOREIGN: u64 = 1 << 32;
const EV_PROBE: u64 = 1 << 33;
/// A starting child's status pipe.
const EV_EXEC: u64 = 1 << 34;

fn one_shot() -> epoll::EventFlags {
    epoll::EventFlags::IN | epoll::EventFlags::ONESHOT
}

/// Arm an exec probe's pidfd; false if epoll did not take it.
fn arm_probe(epoll: &OwnedFd, pid: i32, fd: &OwnedFd) -> bool {
    let data = epoll::EventData::new_u64(EV_PROBE | u64::from(pid as u32));
    epoll::add(epoll, fd, data, one_shot()).is_ok()
}

/// Start the keeper thread. `emit` receives every event, in order, on the keeper's thread.
pub fn start(
    config: KeeperConfig,
    emit: Box<dyn FnMut(KeeperEvent) + Send>,
) -> std::io::Result<(KeeperHandle, Containment, std::thread::JoinHandle<()>)> {
    // Orphaned grandchildren of services are re-parented to us, so we can reap and kill them.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    let containment = cgroup::detect(&config.instance, config.use_cgroups);
    let (wake_r, wake_w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    let wake_w = Arc::new(std::fs::File::from(wake_w));
    let (tx, rx) = bounded(COMMAND_QUEUE);
    let (probe_tx, probe_rx) = bounded(PROBE_QUEUE);
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(
        &epoll,
        &wake_r,
        epoll::EventData::new_u64(EV_WAKE),
        epoll::EventFlags::IN,
    )?;
    let keeper = Keeper {
        containment: containment.clone(),
        use_clone3: config.use_clone3,
        tracked: HashMap::new(),
        probes: HashMap::new(),
        starting: HashMap::new(),
        preparing: HashMap::new(),
        wake: wake_w.clone(),
        emit,
        shutting_down: false,
        fresh: Default::default(),
        epoll,
        exited: Vec::new(),
        last_reap: mono(),
        reap_every: config.reap_every,
        unarmed: false,
        listeners: HashMap::new(),
        deferred: HashMap::new(),
        controllers: std::collections::HashSet::new(),
    };
    let thread = std::thread::Builder::new()
        .name("candor-keeper".into())
        .spawn(move || keeper.run(rx, probe_rx, std::fs::File::from(wake_r)))?;
    Ok((
        KeeperHandle {
            tx,
            probes: probe_tx,
            wake: wake_w,
        },
        containment,
        thread,
    ))
}

/// Reap every ended child, without blocking; returns what was reaped. `before(pid)` runs while the child is still a zombie — its pid, and
/// so its process group's id, cannot be reused until the reap — e.g. to kill what is left in
/// its group without hitting a recycled one.
pub(crate) fn reap_any(mut before: impl FnMut(i32)) -> Vec<(i32, ExitStatus)> {
    let mut out = Vec::new();
    loop {
        // SAFETY: waitid(2) writes only into `info`; WNOWAIT leaves the child a zombie.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid for a child state change filled in by waitid.
        let pid = if r == 0 { unsafe { info.si_pid() } } else { 0 };
        if pid <= 0 {
            return out;
        }
        before(pid);
        match reap_one(pid) {
            Some(status) => out.push((pid, status)),
            None => return out,
        }
    }
}

/// Reap `pid`, our child, if it has ended.
fn reap_one(pid: i32) -> Option<ExitStatus> {
    let mut status = 0;
    // SAFETY: waitpid(2) writes only into `status`.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (r == pid).then(|| ExitStatus::from_wait(status))
}

fn signal_group(pgid: i32, sig: i32) {
    if pgid <= 0 {
        return; // kill(0 or -1) would signal our own group or everything
    }
    // SAFETY: kill(2) on a process group; no memory is touched.
    unsafe { libc::kill(-pgid, sig) };
}

/// The main process through its pidfd while it is unreaped (race-free; the group signal that
/// follows reaches the rest of its group).
/// The signal to the main process through its pidfd; whether it was delivered.
fn signal_main(t: &Tracked, sig: i32) -> bool {
    match (&t.pidfd, &t.main_exit) {
        (Some(fd), None) => crate::pidfd::send_signal(fd, sig),
        _ => false,
    }
}

/// The stop signal to every process of the run, once each: a program that takes a second
/// SIGTERM or SIGINT as "give up the graceful shutdown now" (many do, candor-sdk's backstop
/// among them) must not get one from us. Its process group at once (atomic against forks);
/// the main process through its pidfd if it left that group; then the rest of the cgroup.
fn signal_run(t: &Tracked, sig: i32) {
    // SAFETY: getpgid(2) reads the process's group; no memory is touched. An unreaped main
    // process keeps its pid.
    let main_in_group = t.main_exit.is_some() || unsafe { libc::getpgid(t.pid) } == t.pid;
    if !main_in_group {
        signal_main(t, sig);
    }
    signal_group(t.pid, sig);
    if let Some(cg) = &t.cgroup {
        cgroup::signal_all(cg, sig, Some(t.pid));
    }
}

/// SIGKILL a child of ours that has not been reaped: through its pidfd where there is one.
fn kill_child(pidfd: &Option<OwnedFd>, pid: u32) {
    match pidfd {
        Some(fd) => {
            crate::pidfd::send_signal(fd, libc::SIGKILL);
        }
        // SAFETY: kill(2) of our own unreaped child: its pid is still its own.
        None => unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        },
    }
}

fn group_alive(pgid: i32) -> bool {
    if pgid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks existence.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

impl Keeper {
    /// Put every pidfd not yet armed into the epoll set, one-shot: it fires once, when its
    /// process ends (a pidfd stays readable after that; one-shot keeps it from firing again).
    /// Looks only when a main process came (a spawn, an adoption) or an earlier add failed;
    /// exec probes arm their own at once.
    fn arm(&mut self) {
        if !self.unarmed {
            return;
        }
        let mut failed = false;
        for t in self.tracked.values_mut() {
            if let (Some(fd), None, None, false) = (&t.pidfd, t.main_exit, t.gone_since, t.armed) {
                let tag = if t.foreign { EV_FOREIGN } else { 0 };
                let data = epoll::EventData::new_u64(tag | u64::from(t.pid as u32));
                t.armed = epoll::add(&self.epoll, fd, data, one_shot()).is_ok();
                failed |= !t.armed;
            }
        }
        for (pid, p) in self.probes.iter_mut() {
            if let (Some(fd), false) = (&p.child.pidfd, p.armed) {
                p.armed = arm_probe(&self.epoll, *pid, fd);
                failed |= !p.armed;
            }
        }
        // A failed add (the user's epoll watch limit) is tried again next turn; meanwhile the
        // once-a-second reap still finds its process's exit.
        self.unarmed = failed;
    }

    fn run(
        mut self,
        rx: Receiver<KeeperCommand>,
        probe_rx: Receiver<KeeperCommand>,
        mut wake: std::fs::File,
    ) {
        // A panic in a turn (a bug: in one reap, one stop deadline) is reported and the keeper
        // goes on with the next turn — it is what reaps and stops every service.
        loop {
            let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.turn(&rx, &probe_rx, &mut wake)
            }));
            match turn {
                Ok(true) => {}
                Ok(false) => return,
                Err(payload) => {
                    let message = candor_core::panic_message(&*payload);
                    self.emit(KeeperEvent::Panicked {
                        message: format!("in its loop: {message}"),
                        refused: None,
                    });
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// One command, a panic in it caught: reported, and the command answered as not done
    /// where someone waits for its answer (a spawn or stop: retried by the brain as if
    /// refused; an exec probe: it could not start).
    fn command_caught(&mut self, cmd: KeeperCommand) {
        let (unfinished, probe) = match &cmd {
            KeeperCommand::Spawn(r) => (
                Some(crate::Unfinished::Spawn {
                    service: r.service.clone(),
                    run_id: r.run_id,
                }),
                None,
            ),
            KeeperCommand::Stop {
                service, run_id, ..
            } => (
                Some(crate::Unfinished::Stop {
                    service: service.clone(),
                    run_id: *run_id,
                }),
                None,
            ),
            KeeperCommand::RunProbe { token, .. } => (None, Some(*token)),
            _ => (None, None),
        };
        let what = command_kind(&cmd);
        let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(crate::Unfinished::Spawn { service, .. }) = &unfinished {
                if candor_core::fail_once("keeper-spawn", service) {
                    panic!("failpoint keeper-spawn:{service}");
                }
            }
            self.command(cmd)
        })) else {
            return;
        };
        let message = candor_core::panic_message(&*payload);
        if let Some(token) = probe {
            self.emit(KeeperEvent::ProbeDone {
                token,
                end: crate::ProbeEnd::CannotStart(format!("the keeper failed ({message})")),
                elapsed: Duration::ZERO,
            });
        }
        self.emit(KeeperEvent::Panicked {
            message: format!("handling {what}: {message}"),
            refused: unfinished,
        });
    }

    /// One turn: commands, probes, reaping, deadlines, then a wait for the next thing to do.
    /// False once shut down.
    fn turn(
        &mut self,
        rx: &Receiver<KeeperCommand>,
        probe_rx: &Receiver<KeeperCommand>,
        wake: &mut std::fs::File,
    ) -> bool {
        // Spawns and stops first, then a bounded number of probes, then reaping and
        // stop deadlines.
        loop {
            match rx.try_recv() {
                Ok(cmd) => self.command_caught(cmd),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.shutting_down = true;
                    break;
                }
            }
        }
        let mut more_probes = false;
        for taken in 0.. {
            if taken == PROBES_PER_TURN {
                more_probes = true;
                break;
            }
            match probe_rx.try_recv() {
                Ok(cmd) => self.command_caught(cmd),
                Err(_) => break,
            }
        }
        let busy = self
            .tracked
            .values()
            .any(|t| t.kill_at.is_some() || t.main_exit.is_some() || t.gone_since.is_some());
        if busy || mono().since(self.last_reap) >= self.reap_every {
            self.last_reap = mono();
            self.exited.clear();
            self.reap_foreign();
            let probes = &self.probes;
            let done = reap_any(|pid| {
                if probes.contains_key(&pid) {
                    signal_group(pid, libc::SIGKILL);
                }
            });
            self.reaped(done);
        } else if !self.exited.is_empty() {
            let pids = std::mem::take(&mut self.exited);
            let done = pids.into_iter().filter_map(|p| {
                if self.probes.contains_key(&p) {
                    // Whatever the probe left in its group goes with it, while its pid
                    // (the group's id) is still held by the zombie.
                    signal_group(p, libc::SIGKILL);
                }
                reap_one(p).map(|s| (p, s))
            });
            let done = done.collect();
            self.reaped(done);
        }
        self.settle_preparing();
        self.settle_starting();
        self.advance_stops();
        self.advance_probes();
        if self.shutting_down
            && self.tracked.is_empty()
            && self.starting.is_empty()
            && self.preparing.is_empty()
        {
            return false;
        }
        let mut timeout = if more_probes {
            Duration::ZERO
        } else if busy {
            Duration::from_millis(10)
        } else {
            self.reap_every
        };
        let now = mono();
        for p in self.probes.values() {
            let left = if p.timed_out {
                Duration::from_millis(10)
            } else if !p.started_ok {
                now.until(p.exec_by.min(p.deadline))
            } else {
                now.until(p.deadline)
            };
            timeout = timeout.min(left);
        }
        for s in self.starting.values() {
            timeout = timeout.min(now.until(s.deadline));
        }
        for p in self.preparing.values() {
            timeout = timeout.min(now.until(p.deadline));
        }
        self.arm();
        let ts = rustix::event::Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let mut events = Vec::with_capacity(64);
        let _ = epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut events),
            Some(&ts),
        );
        let now = mono();
        for ev in &events {
            let data = ev.data.u64();
            if data == EV_WAKE {
                continue;
            }
            let pid = (data & 0xffff_ffff) as i32;
            if data & EV_EXEC != 0 {
                // Its pipe is read by `settle_starting` in the next turn.
                continue;
            }
            if data & EV_FOREIGN == 0 {
                self.exited.push(pid);
                continue;
            }
            if let Some(t) = self
                .tracked
                .values_mut()
                .find(|t| t.foreign && t.pid == pid && t.main_exit.is_none())
            {
                t.gone_since = Some(now);
            }
        }
        let mut buf = [0u8; 256];
        while matches!(wake.read(&mut buf), Ok(n) if n > 0) {}
        true
    }

    fn emit(&mut self, ev: KeeperEvent) {
        (self.emit)(ev)
    }

    fn cgroup_for(&self, service: &str) -> Option<PathBuf> {
        match &self.containment {
            Containment::Cgroup { root } => Some(root.join(service)),
            Containment::ProcessGroup { .. } => None,
        }
    }

    fn command(&mut self, cmd: KeeperCommand) {
        match cmd {
            KeeperCommand::Spawn(req) => self.spawn(*req),
            KeeperCommand::Stop {
                service,
                run_id,
                signal,
                timeout,
            } => {
                if let Some(s) = self.starting.get_mut(&service) {
                    // Not exec'd yet: stopped as soon as it is (or it fails).
                    if s.run_id == run_id && s.stop.is_none() {
                        s.stop = Some((signal, timeout, mono()));
                    }
                    return;
                }
                let Some(t) = self.tracked.get_mut(&service) else {
                    return;
                };
                if t.run_id != run_id || t.kill_at.is_some() {
                    return;
                }
                t.kill_at = Some(mono() + timeout);
                t.stop_signal = signal;
                signal_run(t, signal);
            }
            KeeperCommand::Signal {
                service,
                run_id,
                signal,
                all,
                answer,
            } => {
                let starting = self
                    .starting
                    .get(&service)
                    .is_some_and(|s| s.run_id == run_id);
                let outcome = match self.tracked.get(&service) {
                    _ if starting => Err(
                        "it has not started yet (its process is before its exec); nothing was sent"
                            .to_string(),
                    ),
                    Some(t) if t.run_id == run_id => match all {
                        true => {
                            signal_run(t, signal);
                            Ok(())
                        }
                        false if signal_main(t, signal) => Ok(()),
                        false => Err("its main process had exited; nothing was sent".to_string()),
                    },
                    _ => {
                        Err("its run ended before the signal was sent; nothing was sent"
                            .to_string())
                    }
                };
                if let Some(answer) = answer {
                    let _ = answer.try_send(outcome);
                }
            }
            KeeperCommand::Release { service } => {
                if let Some(gone) = self.listeners.remove(&service) {
                    drop_off_thread(gone);
                }
                for p in self.preparing.values_mut().filter(|p| p.key == service) {
                    p.released = true;
                }
                if let Some(p) = self.preparing.get_mut(&service) {
                    p.released = true;
                }
            }
            KeeperCommand::Sweep { keep } => {
                // Sockets of services no longer configured go, with their files.
                let gone: Vec<String> = self
                    .listeners
                    .keys()
                    .filter(|s| !keep.contains(s))
                    .cloned()
                    .collect();
                for service in gone {
                    if let Some(ls) = self.listeners.remove(&service) {
                        drop_off_thread(ls);
                    }
                }
                for (service, p) in self.preparing.iter_mut() {
                    p.released |= !keep.contains(service);
                }
                if let Containment::Cgroup { root } = &self.containment {
                    let removed = cgroup::sweep(root, &keep);
                    if !removed.is_empty() {
                        let message = format!(
                            "removed cgroups of services no longer configured: {}",
                            removed.join(", ")
                        );
                        self.emit(KeeperEvent::Warning { message });
                    }
                }
            }
            KeeperCommand::RunProbe {
                token,
                argv,
                env,
                workdir,
                timeout,
                run_as,
                stdin,
            } => self.run_probe(token, argv, env, workdir, timeout, &run_as, stdin),
            KeeperCommand::Adopt(req) => self.adopt(req),
            KeeperCommand::Shutdown => self.shutting_down = true,
            KeeperCommand::Freeze { ack, thaw } => {
                // Test seam: a keeper busy elsewhere for longer than the daemon waits.
                if candor_core::fail_once("keeper", "freeze") {
                    std::thread::sleep(std::time::Duration::from_secs(6));
                }
                // A child not yet exec'd is in no record: it must not outlive this keeper
                // unknown to the next one. (If the daemon gave up waiting meanwhile, such a
                // spawn just fails and is retried like any other.)
                for s in self.starting.values().filter(|s| s.exit.is_none()) {
                    kill_child(&s.child.pidfd, s.child.pid);
                }
                // The daemon gave up waiting: it carries on, and so does the keeper.
                if ack.send(()).is_err() {
                    return;
                }
                // Until the exec replaces this process, or the daemon thaws it (the handover
                // was given up). Children that exit meanwhile stay zombies for whichever
                // keeper comes next.
                let _ = thaw.recv();
            }
        }
    }

    /// Whether a run of `service` is alive, starting, or having its paths prepared.
    fn busy_with(&self, service: &str) -> bool {
        self.tracked.contains_key(service)
            || self.starting.contains_key(service)
            || self.preparing.contains_key(service)
    }

    /// Spawns whose paths were being prepared: carried on once ready, failed with the reason,
    /// or at the deadline (the thread is left to its hung path, with the service's sockets).
    fn settle_preparing(&mut self) {
        if self.preparing.is_empty() {
            return;
        }
        let now = mono();
        let mut done = Vec::new();
        for (service, p) in &self.preparing {
            let timed_out = || {
                format!(
                    "preparing its paths (readiness markers, stale and activated sockets) did not end within {}s (a path on a hung mount?)",
                    crate::clone3::EXEC_DEADLINE.as_secs()
                )
            };
            match p.done.try_recv() {
                Ok(paths) => done.push((service.clone(), Ok(paths))),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => done.push((
                    service.clone(),
                    Err("preparing its paths failed (a bug: see the daemon's stderr)".into()),
                )),
                Err(std::sync::mpsc::TryRecvError::Empty) if now >= p.deadline => {
                    done.push((service.clone(), Err(timed_out())))
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
        }
        for (service, outcome) in done {
            let Some(p) = self.preparing.remove(&service) else {
                continue;
            };
            let fail = |error: String| KeeperEvent::SpawnFailed {
                service: service.clone(),
                run_id: p.run_id,
                error,
            };
            let paths = match outcome {
                Ok(paths) => paths,
                Err(e) => {
                    self.emit(fail(e));
                    self.spawn_deferred(&p.key);
                    continue;
                }
            };
            // What was kept or made stays for the next run, unless the service went meanwhile.
            if p.released {
                drop_off_thread(paths.kept);
            } else if !paths.kept.is_empty() {
                self.listeners.insert(p.key.clone(), paths.kept);
            }
            // Instances waiting for the sockets they share go on.
            self.spawn_deferred(&p.key);
            match paths.outcome {
                Ok(_) if self.shutting_down => {
                    self.emit(fail("the supervisor is shutting down".into()))
                }
                Ok(listen) => self.spawn_prepared(*paths.req, listen),
                Err(e) => self.emit(fail(e)),
            }
        }
    }

    /// Spawns deferred behind `key`'s sockets: taken up again (the first prepares them, the
    /// others wait for it in turn).
    fn spawn_deferred(&mut self, key: &str) {
        for req in self.deferred.remove(key).unwrap_or_default() {
            self.spawn(req);
        }
    }

    fn spawn(&mut self, req: crate::SpawnRequest) {
        let (service, run_id) = (req.service.clone(), req.run_id);
        let fail = |error: String| KeeperEvent::SpawnFailed {
            service: service.clone(),
            run_id,
            error,
        };
        if self.shutting_down {
            return self.emit(fail("the supervisor is shutting down".into()));
        }
        if self.busy_with(&req.service) {
            return self.emit(fail("a previous run of this service is still alive".into()));
        }
        if req.argv.is_empty() {
            return self.emit(fail("empty command".into()));
        }
        let key = req.listeners_of().to_string();
        if !req.activate.is_empty() && self.preparing.values().any(|p| p.key == key) {
            // Another instance's spawn holds the sockets they share: this one goes on when
            // that spawn's paths are done.
            self.deferred.entry(key).or_default().push(req);
            return;
        }
        if req.activate.is_empty() {
            // No longer activated (a reload): the sockets and their files go.
            if let Some(gone) = self.listeners.remove(&key) {
                drop_off_thread(gone);
            }
            if req.clear_files.is_empty() && req.sockets.is_empty() {
                return self.spawn_prepared(req, Vec::new());
            }
        }
        // Readiness markers and stale declared sockets are removed, and activated sockets
        // checked and made, on a thread of their own: a path on a hung mount holds up this
        // spawn only (failed at the deadline), never the keeper.
        let kept = self.listeners.remove(&key).unwrap_or_default();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let wake = self.wake.clone();
        let started = std::thread::Builder::new()
            .name("candor-paths".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                // Test seam: a marker on a mount that never answers.
                if candor_core::fail_once("paths-hang", &req.service) {
                    loop {
                        std::thread::park();
                    }
                }
                let done = prepare_paths(req, kept);
                let _ = tx.send(done);
                let _ = (&*wake).write(&[1]);
            });
        match started {
            Ok(_) => {
                self.preparing.insert(
                    service.clone(),
                    Preparing {
                        run_id,
                        key,
                        deadline: mono() + crate::clone3::EXEC_DEADLINE,
                        released: false,
                        done: rx,
                    },
                );
            }
            Err(e) => self.emit(fail(format!(
                "cannot start a thread to prepare its paths: {e}"
            ))),
        }
    }

    /// A spawn whose paths are ready (markers and stale sockets removed), with its copies of
    /// the activated sockets.
    fn spawn_prepared(&mut self, mut req: crate::SpawnRequest, listen: Vec<OwnedFd>) {
        let (service, run_id) = (req.service.clone(), req.run_id);
        let fail = |error: String| KeeperEvent::SpawnFailed {
            service: service.clone(),
            run_id,
            error,
        };
        let cg = self.cgroup_for(&req.service);
        let mut cleared = 0;
        if !req.activate.is_empty() {
            let names: Vec<&str> = req.activate.iter().map(|l| l.name.as_str()).collect();
            req.env
                .push(("LISTEN_FDS".into(), listen.len().to_string()));
            req.env.push(("LISTEN_FDNAMES".into(), names.join(":")));
        }
        if let Some(cg) = &cg {
            let reusable = self.fresh.contains(&req.service) && cgroup::procs(cg).is_empty();
            let prepared = if reusable {
                Ok(0)
            } else {
                cgroup::make_fresh(cg)
            };
            if prepared.is_ok() {
                self.fresh.insert(req.service.clone());
            }
            match prepared {
                Ok(n) => cleared = n,
                Err(e) => {
                    return self.emit(fail(format!("cannot prepare cgroup {}: {e}", cg.display())))
                }
            }
        }
        let unenforced = self.apply_limits(cg.as_deref(), &req.limits);
        let oom_base = cg.as_deref().map(cgroup::oom_kills).unwrap_or(0);
        let child = match crate::clone3::spawn(&req, cg.as_deref(), self.use_clone3, listen) {
            Ok(child) => child,
            Err(e) => return self.emit(fail(e)),
        };
        // Woken when it execs (the pipe closes) or reports; read in `settle_starting`.
        let data = epoll::EventData::new_u64(EV_EXEC | u64::from(child.pid));
        let _ = epoll::add(&self.epoll, &child.status, data, epoll::EventFlags::IN);
        self.starting.insert(
            req.service,
            PendingSpawn {
                child,
                run_id: req.run_id,
                deadline: mono() + crate::clone3::EXEC_DEADLINE,
                cgroup: cg,
                stop_signal: req.stop_signal,
                stop_timeout: req.stop_timeout,
                oom_base,
                cleared,
                unenforced,
                exit: None,
                stop: None,
            },
        );
    }

    /// Children between clone and exec: each that exec'd is reported spawned (and tracked),
    /// each that reported a failure or passed its exec deadline is reported failed. Never
    /// waits (a status pipe is read without blocking).
    fn settle_starting(&mut self) {
        if self.starting.is_empty() {
            return;
        }
        let now = mono();
        let mut settled = Vec::new();
        for (service, s) in self.starting.iter_mut() {
            match s.child.settle() {
                Some(outcome) => settled.push((service.clone(), outcome)),
                None if now >= s.deadline => {
                    if s.exit.is_none() {
                        kill_child(&s.child.pidfd, s.child.pid);
                        // It may still be on its way to the kill, in our memory.
                        s.child.abandon_memory();
                    }
                    let why = s.child.why.stuck(crate::clone3::EXEC_DEADLINE);
                    settled.push((service.clone(), Err(why)));
                }
                None => {}
            }
        }
        for (service, outcome) in settled {
            let Some(s) = self.starting.remove(&service) else {
                continue;
            };
            let _ = epoll::delete(&self.epoll, &s.child.status);
            match outcome {
                Ok(()) => self.spawned(service, s),
                Err(error) => {
                    if s.exit.is_none() && s.child.reported() {
                        // It reported and closed its pipe: it is in its exit; take its status
                        // so that its cgroup is empty for the next start.
                        let mut st = 0;
                        // SAFETY: waitpid on our own child, not yet reaped, writing only `st`.
                        unsafe { libc::waitpid(s.child.pid as libc::pid_t, &mut st, 0) };
                    }
                    self.emit(KeeperEvent::SpawnFailed {
                        service,
                        run_id: s.run_id,
                        error,
                    });
                }
            }
        }
    }

    /// A child that exec'd: tracked from now on, and reported.
    fn spawned(&mut self, service: String, s: PendingSpawn) {
        let PendingSpawn {
            child,
            run_id,
            cgroup: cg,
            stop_signal,
            stop_timeout,
            oom_base,
            cleared,
            unenforced,
            exit,
            stop,
            ..
        } = s;
        let spawned = child.into_spawned();
        let pidfd = spawned.pidfd.or_else(|| {
            Pid::from_raw(spawned.pid as i32).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok())
        });
        self.unarmed = true;
        self.tracked.insert(
            service.clone(),
            Tracked {
                run_id,
                pid: spawned.pid as i32,
                pidfd,
                cgroup: cg,
                main_exit: None,
                stop_signal,
                stop_timeout,
                kill_at: None,
                escalated: false,
                foreign: false,
                gone_since: None,
                armed: false,
                oom_base,
            },
        );
        self.emit(KeeperEvent::Spawned {
            service: service.clone(),
            run_id,
            pid: spawned.pid,
            at: crate::clock::mono(),
            // Our child, not yet reaped (or its status is in hand): the pid still names it.
            start_ticks: crate::procfs::start_ticks(spawned.pid).unwrap_or(0),
            stdout: spawned.stdout,
            stderr: spawned.stderr,
            ready_fd: spawned.ready,
            cleared_leftovers: cleared,
            unenforced,
        });
        if let Some(status) = exit {
            return self.main_exited(&service, status);
        }
        if let (Some((signal, timeout, asked)), Some(t)) = (stop, self.tracked.get_mut(&service)) {
            t.kill_at = Some(asked + timeout);
            t.stop_signal = signal;
            signal_run(t, signal);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_probe(
        &mut self,
        token: u64,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        workdir: Option<PathBuf>,
        timeout: Duration,
        run_as: &crate::RunAs,
        stdin: Option<Vec<u8>>,
    ) {
        let started = mono();
        if argv.is_empty() {
            let end = crate::ProbeEnd::CannotStart("empty probe command".into());
            return self.emit(KeeperEvent::ProbeDone {
                token,
                end,
                elapsed: Duration::ZERO,
            });
        }
        match crate::probe_spawn::spawn(&argv, &env, workdir.as_deref(), run_as, stdin.as_deref()) {
            Ok(child) => {
                let pid = child.pid;
                let armed = child
                    .pidfd
                    .as_ref()
                    .is_some_and(|fd| arm_probe(&self.epoll, pid, fd));
                self.unarmed |= child.pidfd.is_some() && !armed;
                let run = ProbeRun {
                    token,
                    child,
                    armed,
                    started,
                    deadline: started + timeout,
                    exec_by: started + timeout.min(crate::clone3::EXEC_DEADLINE),
                    started_ok: false,
                    stuck: false,
                    timed_out: false,
                };
                self.probes.insert(pid, run);
            }
            Err(e) => {
                let end = crate::ProbeEnd::CannotStart(e);
                self.emit(KeeperEvent::ProbeDone {
                    token,
                    end,
                    elapsed: mono().since(started),
                });
            }
        }
    }

    /// Kill probes past their deadline (the whole process group), and those still before
    /// their exec at their exec deadline.
    fn advance_probes(&mut self) {
        let now = mono();
        for (pid, p) in self.probes.iter_mut() {
            if !p.started_ok && !p.timed_out && now >= p.exec_by {
                p.started_ok = p.child.left_the_start();
                if !p.started_ok {
                    p.stuck = true;
                    p.timed_out = true;
                    signal_group(*pid, libc::SIGKILL);
                    kill_child(&p.child.pidfd, *pid as u32);
                    continue;
                }
            }
            if now >= p.deadline && !p.timed_out {
                p.timed_out = true;
                signal_group(*pid, libc::SIGKILL);
            }
        }
    }

    /// Take in what was reaped: probes report, main processes end their run, the rest are
    /// orphans re-parented to us.
    fn reaped(&mut self, done: Vec<(i32, ExitStatus)>) {
        for (pid, status) in done {
            if let Some(mut p) = self.probes.remove(&pid) {
                // Its group was killed before the reap (never after: the id may be reused).
                let limit = p.exec_by.since(p.started);
                let end = match p.child.failure() {
                    _ if p.stuck => crate::ProbeEnd::CannotStart(p.child.why.stuck(limit)),
                    Some(why) => crate::ProbeEnd::CannotStart(why),
                    None if p.timed_out => crate::ProbeEnd::TimedOut,
                    None => crate::ProbeEnd::Exited(status),
                };
                self.emit(KeeperEvent::ProbeDone {
                    token: p.token,
                    end,
                    elapsed: mono().since(p.started),
                });
                continue;
            }
            if let Some(s) = self
                .starting
                .values_mut()
                .find(|s| s.child.pid as i32 == pid)
            {
                // Ended before its exec was seen: told once it is (`settle_starting`).
                s.exit = Some(status);
                continue;
            }
            let Some((name, _)) = self
                .tracked
                .iter()
                .find(|(_, t)| t.pid == pid && t.main_exit.is_none())
            else {
                continue; // a grandchild we adopted as subreaper
            };
            let service = name.clone();
            self.main_exited(&service, status);
        }
    }

    /// Write a service's cgroup limits (enabling their controllers first); None when every
    /// one is in force, else why not.
    fn apply_limits(
        &mut self,
        cg: Option<&std::path::Path>,
        limits: &candor_spec::CgroupLimits,
    ) -> Option<String> {
        let wanted = limits.files();
        let (Some(cg), Containment::Cgroup { root }) = (cg, &self.containment) else {
            return (!wanted.is_empty()).then(|| {
                format!(
                    "services are not in cgroups here: {}",
                    self.containment.describe()
                )
            });
        };
        let mut needed: Vec<&'static str> = wanted.iter().map(|(c, _, _)| *c).collect();
        needed.dedup();
        let unknown: Vec<&'static str> = needed
            .iter()
            .copied()
            .filter(|c| !self.controllers.contains(c))
            .collect();
        let mut why: Vec<String> = Vec::new();
        if !unknown.is_empty() {
            let outcomes = match cgroup::mount() {
                Some(mount) => cgroup::enable(&mount, root, &unknown),
                None => unknown
                    .iter()
                    .map(|c| (*c, Err("no cgroup2 mount".to_string())))
                    .collect(),
            };
            for (controller, outcome) in outcomes {
                match outcome {
                    Ok(()) => {
                        self.controllers.insert(controller);
                    }
                    Err(e) if !why.contains(&e) => why.push(e),
                    Err(_) => {}
                }
            }
        }
        let controllers = &self.controllers;
        why.extend(cgroup::write_limits(cg, limits, |c| {
            controllers.contains(c)
        }));
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Record the main process's end and report it (and the end of the run, if nothing of it
    /// is left).
    fn main_exited(&mut self, service: &str, status: ExitStatus) {
        let Some(t) = self.tracked.get_mut(service) else {
            return;
        };
        let oom_kills = Self::oom_kills(t);
        t.main_exit = Some(status);
        t.pidfd = None;
        t.gone_since = None;
        let run_id = t.run_id;
        let group_empty = Self::is_empty(t);
        let escalated = t.escalated;
        if group_empty {
            self.tracked.remove(service);
        }
        self.emit(KeeperEvent::Exited {
            service: service.to_string(),
            run_id,
            status,
            at: crate::clock::mono(),
            group_empty,
            escalated,
            oom_kills,
        });
    }

    /// Adopted main processes that ended: their status once their parent has reaped them
    /// (the kernel keeps it on our pidfd), or unknown after a while.
    fn reap_foreign(&mut self) {
        let now = mono();
        let mut ended = Vec::new();
        for (name, t) in &self.tracked {
            let (Some(since), Some(fd)) = (t.gone_since, &t.pidfd) else {
                continue;
            };
            match crate::pidfd::exit_status(fd) {
                Some(status) => ended.push((name.clone(), status)),
                None if now.since(since) >= FOREIGN_EXIT_WAIT => {
                    ended.push((name.clone(), ExitStatus::Unknown))
                }
                None => {}
            }
        }
        for (name, status) in ended {
            self.main_exited(&name, status);
        }
    }

    /// Take over a run of an earlier supervisor (see `KeeperCommand::Adopt`).
    fn adopt(&mut self, req: crate::AdoptRequest) {
        let crate::AdoptRequest {
            service,
            run_id,
            pid,
            start_ticks,
            kill_at,
            stop_signal,
            stop_timeout,
            activate,
            listen_key,
        } = req;
        let key = listen_key.unwrap_or_else(|| service.clone());
        if self.busy_with(&service) {
            return;
        }
        let cg = self.cgroup_for(&service);
        // Open the pidfd first, then check that it is the process recorded: a pidfd names one
        // process, so a check that passes after it is open cannot be fooled by pid reuse.
        let pidfd = Pid::from_raw(pid as i32).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok());
        let same = pidfd.is_some()
            && crate::procfs::start_ticks(pid) == Some(start_ticks)
            && match &cg {
                Some(cg) => cgroup::procs(cg).contains(&pid),
                None => crate::procfs::pgid(pid) == Some(pid),
            };
        let ticks = crate::procfs::start_ticks(pid);
        let reused = !same && ticks.is_some() && ticks != Some(start_ticks);
        let our_child = crate::procfs::ppid(pid) == Some(std::process::id());
        // Our own child that ended already (while this process exec'd its successor for an
        // upgrade): a zombie, out of its cgroup's list, whose status is ours to take.
        let status = match (same, reused, our_child) {
            (false, false, true) => reap_one(pid as i32).unwrap_or(ExitStatus::Unknown),
            _ => ExitStatus::Unknown,
        };
        let mut t = Tracked {
            run_id,
            pid: pid as i32,
            pidfd: if same { pidfd } else { None },
            cgroup: cg,
            main_exit: None,
            stop_signal,
            stop_timeout,
            kill_at,
            escalated: false,
            foreign: !our_child,
            gone_since: None,
            armed: false,
            oom_base: 0,
        };
        t.oom_base = t.cgroup.as_deref().map(cgroup::oom_kills).unwrap_or(0);
        if same {
            if !activate.is_empty() && !self.listeners.contains_key(&key) {
                if let Some(fd) = t.pidfd.as_ref() {
                    let (taken, missing) = crate::listeners::take_back(fd, &activate);
                    if let Some(why) = missing {
                        let message = format!(
                            "{service}: its activated sockets could not be taken back from pid {pid} ({why}); they are made again at its next start"
                        );
                        self.emit(KeeperEvent::Warning { message });
                    }
                    if !taken.is_empty() {
                        self.listeners.insert(key, taken);
                    }
                }
            }
            self.unarmed = true;
            self.tracked.insert(service, t);
            return;
        }
        // Gone while no supervisor watched. What is left of its run is stopped as after any
        // exit; in a process group, only if the pid was not reused (a group cannot outlive a
        // reuse of its id: the kernel does not hand out a pid that is still a group's id).
        // With a cgroup, the cgroup is what is left; the pid is not signalled at all.
        if reused || t.cgroup.is_some() {
            t.pid = 0;
        }
        t.main_exit = Some(status);
        let group_empty = Self::is_empty(&t);
        let oom_kills = Self::oom_kills(&t);
        if !group_empty {
            self.tracked.insert(service.clone(), t);
        }
        self.emit(KeeperEvent::Exited {
            service,
            run_id,
            status,
            at: mono(),
            group_empty,
            escalated: false,
            oom_kills,
        });
    }

    /// OOM kills in the run's cgroup since it began.
    fn oom_kills(t: &Tracked) -> u64 {
        t.cgroup
            .as_deref()
            .map(|cg| cgroup::oom_kills(cg).saturating_sub(t.oom_base))
            .unwrap_or(0)
    }

    fn is_empty(t: &Tracked) -> bool {
        match &t.cgroup {
            Some(cg) => cgroup::procs(cg).is_empty(),
            None => !group_alive(t.pid),
        }
    }

    fn advance_stops(&mut self) {
        let now = mono();
        let mut done = Vec::new();
        for (name, t) in self.tracked.iter_mut() {
            if t.main_exit.is_some() && Self::is_empty(t) {
                done.push(name.clone());
                continue;
            }
            if t.main_exit.is_some() && t.kill_at.is_none() {
                // The main process left others behind: stop them like a requested stop.
                t.kill_at = Some(now + t.stop_timeout);
                signal_run(t, t.stop_signal);
            }
            if let Some(kill_at) = t.kill_at {
                if now >= kill_at && !t.escalated {
                    t.escalated = true;
                    signal_main(t, libc::SIGKILL);
                    signal_group(t.pid, libc::SIGKILL);
                    if let Some(cg) = &t.cgroup {
                        cgroup::kill_all(cg);
                        self.fresh.remove(name);
                    }
                }
                if t.escalated && t.main_exit.is_none() {
                    // Re-send: a process may have been forking while we killed.
                    signal_group(t.pid, libc::SIGKILL);
                }
            }
        }
        for name in done {
            if let Some(t) = self.tracked.remove(&name) {
                self.emit(KeeperEvent::Emptied {
                    service: name,
                    run_id: t.run_id,
                    at: crate::clock::mono(),
                    escalated: t.escalated,
                });
            }
        }
    }
}

impl std::fmt::Debug for KeeperHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeeperHandle")
            .field("wake", &self.wake.as_fd())
            .finish()
    }
}

/// What kind of command this is, for a report (no allocation: it is asked of every command).
fn command_kind(cmd: &KeeperCommand) -> &'static str {
    match cmd {
        KeeperCommand::Spawn(_) => "a spawn",
        KeeperCommand::Stop { .. } => "a stop",
        KeeperCommand::Signal { .. } => "a signal",
        KeeperCommand::Adopt(_) => "an adoption",
        KeeperCommand::Sweep { .. } => "a cgroup sweep",
        KeeperCommand::Release { .. } => "a release of sockets",
        KeeperCommand::RunProbe { .. } => "an exec probe",
        KeeperCommand::Shutdown => "shutdown",
        KeeperCommand::Freeze { .. } => "freeze",
    }
}
