//! The brain's shell: turns keeper events, evidence, requests and timer expiry into
//! `candor_brain::Input`s, calls `step`, and carries out the effects in order — keeper
//! commands (a refusal goes back in as an input), timers, monitors and log readers, the event
//! log, the board, replies. It decides nothing; `candor_brain` does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use candor_api as api;
use candor_brain::{Effect, Facts, Input, Note, Refusable, Reply, RequestId};
use candor_core::Mono;
use candor_keeper::{clock, KeeperCommand, KeeperEvent, KeeperHandle, SendError, SpawnRequest};
use candor_spec::{ReadySpec, ServiceName, ServiceSpec, Spec};
use candor_store::Store;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::board::Board;
use crate::counters::LogCounters;
use crate::logs;
use crate::monitor::{self, Internal, Monitor};
use crate::notify::NotifyCounters;
use crate::probe::ExecProbes;
use crate::records::{ProcessId, Record, Recorder, Taken};

/// Evidence messages taken into one step at most (probe results of many services arrive
/// together).
const EVIDENCE_PER_STEP: usize = 1024;
/// The longest the shell sleeps on a timer: the runtime's sleep does not count time spent
/// suspended, the boot clock does; waking at least this often bounds how late a deadline
/// fires after a resume.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// A step that answers no request publishes the board at most this often.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// What the brain shares with the tasks that gather evidence for it.
#[derive(Clone)]
pub struct BrainContext {
    /// Monitors and the notify server send evidence here.
    pub internal: mpsc::Sender<Internal>,
    pub exec: Arc<ExecProbes>,
    /// Probes in flight to each target, limited (`[daemon] probe_max_inflight`, set again on
    /// each reload).
    pub gates: Arc<crate::gate::Gates>,
    pub notify_counters: Arc<NotifyCounters>,
    /// `NOTIFY_SOCKET` for services that use sd_notify.
    pub notify_socket: String,
    /// The main process of each live run, for the notify server (the keeper's emitter records
    /// spawns and exits; the shell, the runs it adopts).
    pub notify_senders: Arc<crate::notify::Senders>,
    /// Notify messages, apart from the rest of the evidence.
    pub notify_mail: Arc<crate::notify::Mailbox>,
    /// Print every state change on stderr.
    pub echo_events: bool,
    /// How often fds and memory are sampled.
    pub sample_every: Duration,
    /// Log lines as they are stored, for `logs -f`.
    pub logs_live: broadcast::Sender<logs::LiveLine>,
    /// RLIMIT_NOFILE (soft, hard) the daemon started with: what services get by default.
    pub service_nofile: Option<(u64, u64)>,
    /// The umask services get: the one the daemon was started with (its own is 077).
    pub service_umask: u32,
    /// Tells every log reader to stop (before an upgrade); how many are running.
    pub log_stop: Arc<watch::Sender<bool>>,
    pub log_readers: Arc<std::sync::atomic::AtomicUsize>,
    /// The highest line id the store has written.
    pub log_committed: watch::Receiver<i64>,
    /// Where the daemon's own tasks that panic are reported (and started again).
    pub faults: Arc<crate::faults::Faults>,
    /// `[[daemon.forward]]`: replaced on each reload.
    pub forwards: crate::forward::Forwards,
}

/// An upgrade asked for through the API (the new binary has passed its check).
pub struct UpgradeAsk {
    pub binary: std::path::PathBuf,
    pub caller: crate::peer::Peer,
    /// Ok once everything is handed over (records written, readers stopped, keeper frozen).
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// How the shell's loop ended.
pub enum Ended {
    /// Every service is down.
    Shutdown,
    /// Ready for the successor: exec it (the keeper stays frozen while `Frozen` lives).
    Upgrade(std::path::PathBuf, Frozen),
}

/// The keeper, frozen for a handover: it stays so until the exec replaces the process, and
/// carries on if this is dropped first.
pub struct Frozen {
    _thaw: std::sync::mpsc::SyncSender<()>,
}

/// Why the daemon did not hand over (nothing changed).
#[derive(Debug)]
pub struct NotHandedOver {
    pub why: String,
    /// The keeper thread is gone: no handover will ever be had.
    pub keeper_gone: bool,
}

/// How long the keeper may take to confirm it stopped, and the log readers to stop.
const HANDOVER_LIMIT: Duration = Duration::from_secs(5);

/// The exit code of the `main = true` service that ended the daemon (-1: none did).
pub(crate) static MAIN_EXIT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// A request for the brain, with where to send its answer.
pub struct Asked {
    pub request: candor_brain::Request,
    pub reply: Option<oneshot::Sender<Reply>>,
    /// Who asked over the API (None: the daemon itself, e.g. on SIGTERM).
    pub caller: Option<crate::peer::Peer>,
}

/// The event that records a request and who made it (before the step it causes, so the
/// changes it brings follow it in the events).
fn request_note(request: &candor_brain::Request, peer: crate::peer::Peer) -> Note {
    use candor_brain::Request as R;
    let what = match request {
        R::Start(s) => format!("start {s}"),
        R::Stop(s) => format!("stop {s}"),
        R::Restart(s) => format!("restart {s}"),
        R::Run(s) => format!("run {s}"),
        R::ResetFailed { force: false } => "reset-failed".into(),
        R::ResetFailed { force: true } => "reset-failed --force".into(),
        R::Reload(_) => "reload".into(),
        R::Shutdown => "shutdown".into(),
        R::RestartWith(s, strategy) => format!("restart {s} --strategy {}", strategy.as_str()),
        R::Scale { name, replicas, .. } => format!("scale {name} {replicas}"),
        R::Rollout(s, candor_brain::RolloutAction::Undo) => format!("rollout undo {s}"),
        R::Rollout(s, candor_brain::RolloutAction::Resume) => format!("rollout resume {s}"),
    };
    caller_note(&what, peer)
}

/// Recorded as an event of the daemon ("candor"), so a service's own events stay its state
/// changes.
pub(crate) fn caller_note(what: &str, peer: crate::peer::Peer) -> Note {
    let pid = peer.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    let role = peer.role.as_str();
    let reason = match peer.web {
        Some(addr) => format!(
            "{what} requested from the web dashboard ({addr}) with {} token",
            peer.role.with_article()
        ),
        None => format!("{what} requested by uid {}{pid}, {role}", peer.uid),
    };
    Note {
        service: "candor".to_string(),
        state: "request".into(),
        reason,
        detail: api::EventDetail::Request {
            request: what.into(),
            uid: peer.uid,
            pid: peer.pid,
            from: peer.web.map(|a| a.to_string()),
            role: Some(role.to_string()),
        },
    }
}

/// The pipes of a run the keeper reported spawned, until the brain says to watch it.
struct RunPipes {
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    ready_fd: Option<OwnedFd>,
}

pub struct Shell {
    facts: Facts,
    keeper: KeeperHandle,
    store: Store,
    board: watch::Sender<Arc<Board>>,
    /// When the board was last published, and when it must be next (changes not yet shown).
    published: Mono,
    publish_due: Option<Mono>,
    fresh: Arc<crate::board::Freshness>,
    /// Live events for followers (`GET /v1/events?follow`); slow followers lag and are told.
    events: broadcast::Sender<api::Event>,
    ctx: BrainContext,
    /// Evidence gatherers of each service's live run; dropping one stops it.
    monitors: HashMap<String, (u64, Monitor)>,
    pipes: HashMap<(String, u64), RunPipes>,
    /// Due times of armed timers.
    timers: BTreeSet<Mono>,
    waiting: HashMap<RequestId, oneshot::Sender<Reply>>,
    next_request: RequestId,
    /// Shared with published boards; copied only when a service comes or goes.
    logs: Arc<BTreeMap<ServiceName, Arc<LogCounters>>>,
    probes: Arc<BTreeMap<ServiceName, Arc<crate::counters::ProbeStats>>>,
    /// Run records: the writer, the main process of each live run, and what was last saved.
    recorder: Recorder,
    /// Jobs' histories: the writer, and the version of each last handed to it.
    jobs: Recorder,
    job_versions: HashMap<ServiceName, u64>,
    procs: HashMap<String, ProcessId>,
    saved: BTreeMap<candor_spec::ServiceName, (Arc<candor_brain::Service>, candor_brain::Saved)>,
    /// Runs of an earlier supervisor to take over at the first step.
    taken: Vec<Taken>,
    /// Live runs of services an earlier supervisor ran and the config no longer has.
    strays: Vec<(String, ProcessId)>,
    /// Adoptions the keeper did not take yet (only at start, at most one per service).
    adopt_backlog: Vec<KeeperCommand>,
    /// Services changed since the last `save_records`, or all of them.
    dirty: std::collections::BTreeSet<candor_spec::ServiceName>,
    save_all: bool,
    /// A step panicked: the brain's facts cannot be trusted any more. The daemon restarts
    /// itself in place (as `candor upgrade` to its own binary), keeping every service.
    brain_failed: bool,
    /// `[[daemon.hooks]]`: offered every note the brain records.
    hooks: crate::hooks::Hooks,
}

/// Readiness markers cleared before each spawn: the ready file, and `<socket>.ready` beside
/// each declared socket.
fn ready_markers(spec: &ServiceSpec) -> Vec<std::path::PathBuf> {
    let mut out: Vec<std::path::PathBuf> = spec
        .sockets
        .iter()
        .map(|s| {
            let mut m = s.clone().into_os_string();
            m.push(".ready");
            m.into()
        })
        .collect();
    if let ReadySpec::File(f) = &spec.ready {
        out.push(f.clone());
    }
    out
}

impl Shell {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: &Spec,
        keeper: KeeperHandle,
        store: Store,
        (board, fresh): (watch::Sender<Arc<Board>>, Arc<crate::board::Freshness>),
        events: broadcast::Sender<api::Event>,
        ctx: BrainContext,
        (recorder, jobs): (Recorder, Recorder),
        mut loaded: crate::records::Loaded,
        hooks: crate::hooks::Hooks,
    ) -> Self {
        let saved_jobs = std::mem::take(&mut loaded.jobs);
        let mut shell = Self {
            facts: Facts::scaled(
                spec,
                &crate::records::groups_found(spec, &loaded.taken),
                ctx.sample_every,
                clock::mono(),
            ),
            keeper,
            store,
            board,
            published: Mono(Duration::ZERO),
            publish_due: None,
            fresh,
            events,
            ctx,
            monitors: HashMap::new(),
            pipes: HashMap::new(),
            timers: BTreeSet::new(),
            waiting: HashMap::new(),
            next_request: 0,
            logs: Default::default(),
            probes: Default::default(),
            recorder,
            jobs,
            job_versions: HashMap::new(),
            procs: HashMap::new(),
            saved: BTreeMap::new(),
            taken: loaded.taken,
            strays: loaded.strays,
            adopt_backlog: Vec::new(),
            dirty: Default::default(),
            save_all: true,
            brain_failed: false,
            hooks,
        };
        // Every configured service is on the board before the API answers its first request,
        // with the runs of an earlier daemon already taken over: never "about to start" for a
        // service that is running.
        shell.take_over();
        for (name, saved) in saved_jobs {
            shell.facts.restore_job(&name, saved);
        }
        shell.publish();
        shell
    }

    /// Run until shutdown completes.
    pub async fn run(
        mut self,
        mut keeper_rx: mpsc::Receiver<KeeperEvent>,
        mut req_rx: mpsc::Receiver<Asked>,
        mut internal_rx: mpsc::Receiver<Internal>,
        mut upgrade_rx: mpsc::Receiver<UpgradeAsk>,
    ) -> Ended {
        let effects = candor_brain::boot(&mut self.facts, clock::now());
        self.note_touched();
        self.carry(effects);
        let mut requests_open = true;
        while !self.facts.exited {
            if self.brain_failed {
                return self.restart_in_place(&mut keeper_rx).await;
            }
            self.retry_adoptions();
            let now = clock::mono();
            let next = self.timers.first().copied();
            if next.is_some_and(|due| due <= now) {
                self.timers.retain(|due| *due > now);
                self.feed(Input::Tick);
                continue;
            }
            if self.publish_due.is_some_and(|due| due <= now) {
                self.publish();
                continue;
            }
            let next = match (next, self.publish_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = next.map_or(MAX_SLEEP, |due| now.until(due).min(MAX_SLEEP));
            let input = tokio::select! {
                ev = keeper_rx.recv() => match ev {
                    Some(ev) => match self.keeper_input(ev) {
                        Some(input) => input,
                        None => continue,
                    },
                    None => {
                        eprintln!("candor: the keeper stopped; exiting");
                        return Ended::Shutdown;
                    }
                },
                Some(up) = upgrade_rx.recv() => {
                    self.record(caller_note(
                        &format!("upgrade to {}", up.binary.display()),
                        up.caller,
                    ));
                    match self.hand_over(&mut keeper_rx).await {
                        Ok(frozen) => {
                            let _ = up.reply.send(Ok(()));
                            return Ended::Upgrade(up.binary, frozen);
                        }
                        Err(e) => {
                            self.record(crate::notes::daemon_note(
                                "warning",
                                format!("upgrade refused: {}; nothing changed", e.why),
                            ));
                            let _ = up.reply.send(Err(e.why));
                            continue;
                        }
                    }
                },
                asked = req_rx.recv(), if requests_open => match asked {
                    Some(asked) => self.request_input(asked),
                    None => {
                        requests_open = false;
                        let id = self.ask_id();
                        Input::Request { id, request: candor_brain::Request::Shutdown }
                    }
                },
                // Notify messages have their own way in, so WATCHDOG=1 and READY=1 never wait
                // behind probe results: the known runs' in one step, then the unknown senders'.
                _ = self.ctx.notify_mail.posted() => {
                    let (runs, unknown) = self.ctx.notify_mail.take();
                    let evidence = |m: Vec<_>| m.into_iter().map(Internal::Notify).collect();
                    if !runs.is_empty() {
                        self.feed(Input::Evidence(evidence(runs)));
                    }
                    if unknown.is_empty() {
                        continue;
                    }
                    Input::Evidence(evidence(unknown))
                },
                Some(first) = internal_rx.recv() => {
                    let mut items = vec![first];
                    while items.len() < EVIDENCE_PER_STEP {
                        match internal_rx.try_recv() {
                            Ok(more) => items.push(more),
                            Err(_) => break,
                        }
                    }
                    Input::Evidence(items)
                },
                _ = self.fresh.ask.notified() => {
                    if self.publish_due.is_some() {
                        self.publish();
                    }
                    continue;
                },
                _ = tokio::time::sleep(sleep) => continue,
            };
            self.feed(input);
        }
        if let Err(e) = self.keeper.send(KeeperCommand::Shutdown) {
            eprintln!("candor: cannot reach the keeper: {e}");
        }
        // An orderly shutdown: every service is down; the next daemon starts from the config.
        let recorder = self.recorder.clone();
        let names: Vec<String> = self.saved.keys().map(|n| n.to_string()).collect();
        let _ = tokio::task::spawn_blocking(move || recorder.clear(names)).await;
        if let Some(code) = self.facts.exit_code {
            MAIN_EXIT.store(code, std::sync::atomic::Ordering::SeqCst);
        }
        Ended::Shutdown
    }

    /// After a step panicked: hand every service over to a fresh copy of this binary, which
    /// takes them over from the run records and the kernel as after any restart. Never
    /// without the keeper's acknowledgement that it stopped (an exec while it reaps would lose
    /// that exit): until it comes, the keeper runs on, its events are taken in, and the
    /// freeze is asked again every `HANDOVER_LIMIT`. Only a keeper that is gone ends the
    /// daemon, leaving the services running for the next daemon to adopt.
    async fn restart_in_place(&mut self, keeper_rx: &mut mpsc::Receiver<KeeperEvent>) -> Ended {
        let mut warned = false;
        loop {
            match self.hand_over(keeper_rx).await {
                Ok(frozen) => {
                    return Ended::Upgrade(std::path::PathBuf::from("/proc/self/exe"), frozen)
                }
                Err(e) if e.keeper_gone => {
                    eprintln!(
                        "candor: cannot restart in place ({}); exiting, services keep running",
                        e.why
                    );
                    std::process::exit(1);
                }
                Err(e) => {
                    if !warned {
                        warned = true;
                        self.record(crate::notes::daemon_note(
                            "warning",
                            format!(
                                "restart in place delayed: {}; asking it again (services keep running)",
                                e.why
                            ),
                        ));
                    }
                    eprintln!("candor: restart in place delayed: {}; asking again", e.why);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Get ready for a successor to take over: freeze the keeper (after the events it has
    /// emitted, which are taken in), stop the log readers (what is unread stays in the pipes),
    /// write every queued line and every run record. Fails — and changes nothing, the keeper
    /// carrying on — if the keeper does not take the command or does not confirm within
    /// `HANDOVER_LIMIT` that it stopped (a spawn or a reap under way would be lost by the
    /// exec); past that point the daemon execs its successor or, failing that, itself.
    async fn hand_over(
        &mut self,
        keeper_rx: &mut mpsc::Receiver<KeeperEvent>,
    ) -> Result<Frozen, NotHandedOver> {
        let (ack_tx, ack) = std::sync::mpsc::sync_channel(1);
        let (thaw, thaw_rx) = std::sync::mpsc::sync_channel(1);
        self.keeper
            .send(KeeperCommand::Freeze {
                ack: ack_tx,
                thaw: thaw_rx,
            })
            .map_err(|e| NotHandedOver {
                why: format!("the keeper did not take the command to stop ({e})"),
                keeper_gone: e == SendError::Stopped,
            })?;
        let frozen = Frozen { _thaw: thaw };
        let deadline = tokio::time::Instant::now() + HANDOVER_LIMIT;
        loop {
            // The keeper may be waiting for room in its event channel: keep taking events.
            while let Ok(ev) = keeper_rx.try_recv() {
                if let Some(input) = self.keeper_input(ev) {
                    self.feed(input);
                }
            }
            match ack.try_recv() {
                Ok(()) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    return Err(NotHandedOver {
                        why: "the keeper stopped before it confirmed".into(),
                        keeper_gone: true,
                    })
                }
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    // Dropping `ack` and `frozen` tells a keeper that gets to the freeze
                    // later to carry on.
                    return Err(NotHandedOver {
                        why: format!(
                            "the keeper did not confirm it stopped within {}s",
                            HANDOVER_LIMIT.as_secs()
                        ),
                        keeper_gone: false,
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        while let Ok(ev) = keeper_rx.try_recv() {
            if let Some(input) = self.keeper_input(ev) {
                self.feed(input);
            }
        }
        self.monitors.clear();
        self.ctx.log_stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + HANDOVER_LIMIT;
        while self
            .ctx
            .log_readers
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.save_records();
        let (store, recorder) = (self.store.clone(), self.recorder.clone());
        let _ = tokio::task::spawn_blocking(move || {
            store.flush();
            recorder.flush();
        })
        .await;
        Ok(frozen)
    }

    /// Take over the runs an earlier supervisor of this boot left (see `candor_brain::adopt`).
    fn take_over(&mut self) {
        self.stop_strays();
        let mut found = Vec::new();
        for t in std::mem::take(&mut self.taken) {
            if let Some(why) = &t.output_problem {
                self.record(Note {
                    service: t.found.service.clone(),
                    state: "warning".into(),
                    reason: format!(
                        "its output cannot be read after the supervisor's restart ({why}); it will block once its pipe is full: restart it"
                    ),
                    detail: api::EventDetail::None {},
                });
            }
            if let Some(p) = t.process {
                self.procs.insert(t.found.service.clone(), p);
                if t.found.alive {
                    self.ctx
                        .notify_senders
                        .spawned(&t.found.service, p.run_id, p.pid);
                    let pipes = RunPipes {
                        stdout: t.stdout,
                        stderr: t.stderr,
                        ready_fd: None,
                    };
                    self.pipes
                        .insert((t.found.service.clone(), p.run_id), pipes);
                }
            }
            found.push(t.found);
        }
        if found.is_empty() {
            return;
        }
        let effects = candor_brain::adopt(&mut self.facts, found, clock::now());
        self.note_touched();
        self.carry(effects);
    }

    /// Stop what an earlier supervisor ran for services the config no longer has: taken over
    /// by the keeper (checked like any adoption), then stopped like any run.
    fn stop_strays(&mut self) {
        for (service, p) in std::mem::take(&mut self.strays) {
            // Its config is gone with it: the default stop (SIGTERM, SIGKILL 10 s later).
            let stop_spec = candor_spec::StopSpec::default();
            let adopt = KeeperCommand::Adopt(p.adoption(&service, None, stop_spec, Vec::new()));
            let stop = KeeperCommand::Stop {
                service: service.clone(),
                run_id: p.run_id,
                signal: stop_spec.signal.number(),
                timeout: stop_spec.timeout,
            };
            if self
                .keeper
                .send(adopt)
                .and_then(|()| self.keeper.send(stop))
                .is_ok()
            {
                self.record(Note {
                    service: service.clone(),
                    state: "stopping".into(),
                    reason: format!(
                        "pid {} was left running by an earlier supervisor and the config no longer has this service; stopping it",
                        p.pid
                    ),
                    detail: api::EventDetail::None {},
                });
            }
            self.recorder.remove(&service);
        }
    }

    fn retry_adoptions(&mut self) {
        if self.adopt_backlog.is_empty() {
            return;
        }
        let mut left = Vec::new();
        for cmd in std::mem::take(&mut self.adopt_backlog) {
            if let Err((cmd, _)) = self.keeper.try_send(cmd) {
                left.push(cmd);
            }
        }
        self.adopt_backlog = left;
    }

    /// The services the brain changed in its last step, for `save_records`.
    fn note_touched(&mut self) {
        self.dirty.extend(self.facts.touched.iter().cloned());
    }

    /// Hand the changed services' saved facts to the records' writer: those the brain touched
    /// since the last save (all of them when services came or went).
    fn save_records(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        let all =
            std::mem::take(&mut self.save_all) || self.saved.len() != self.facts.services.len();
        let names: Vec<ServiceName> = if all {
            self.facts.names()
        } else {
            dirty.into_iter().collect()
        };
        for name in names {
            let Some(svc) = self.facts.services.get(&name) else {
                continue;
            };
            if self
                .saved
                .get(&name)
                .is_some_and(|(seen, _)| Arc::ptr_eq(seen, svc))
            {
                continue;
            }
            if let Some(job) = svc.job.as_deref() {
                if self.job_versions.get(&name) != Some(&job.version) && job.version > 0 {
                    let saved = candor_brain::jobs::SavedJob::of(job);
                    let bytes = serde_json::to_vec(&saved).unwrap_or_default();
                    self.jobs.put_bytes(name.as_str(), bytes);
                    self.job_versions.insert(name.clone(), job.version);
                }
            }
            let saved = candor_brain::Saved::of(svc);
            let unchanged = self.saved.get(&name).is_some_and(|(_, s)| *s == saved);
            if !unchanged {
                let process = svc
                    .live()
                    .and_then(|r| self.procs.get(name.as_str()).filter(|p| p.run_id == r.id))
                    .copied();
                self.recorder.put(&Record {
                    boot_id: self.recorder.boot_id(),
                    service: name.to_string(),
                    command: svc.spec.command.clone(),
                    saved: saved.clone(),
                    process,
                });
            }
            self.saved.insert(name.clone(), (svc.clone(), saved));
        }
        if all {
            let gone: Vec<_> = self
                .saved
                .keys()
                .filter(|n| !self.facts.services.contains_key(*n))
                .cloned()
                .collect();
            for name in gone {
                self.saved.remove(&name);
                self.procs.remove(name.as_str());
                self.recorder.remove(name.as_str());
            }
        }
    }

    fn ask_id(&mut self) -> RequestId {
        self.next_request += 1;
        self.next_request
    }

    fn request_input(&mut self, asked: Asked) -> Input {
        let id = self.ask_id();
        if let Some(reply) = asked.reply {
            self.waiting.insert(id, reply);
        }
        if let candor_brain::Request::Reload(spec) = &asked.request {
            self.store.set_caps(logs::caps(spec));
            self.ctx.gates.set_default(spec.daemon.probe_max_inflight);
            self.hooks.replace(&spec.daemon.hooks);
            self.ctx.forwards.replace(&spec.daemon.forward);
            // An instance `api@2` is configured while its group `api` is.
            let names: std::collections::HashSet<&str> =
                spec.services.keys().map(|n| n.as_str()).collect();
            self.hooks
                .retain_services(|n| names.contains(candor_spec::group_of(n)));
            self.ctx
                .forwards
                .retain_services(|n| names.contains(candor_spec::group_of(n)));
        }
        match asked.caller {
            Some(peer) => self.record(request_note(&asked.request, peer)),
            // Without a caller, a reload comes from SIGHUP (a shutdown from SIGTERM/SIGINT is
            // noted by the brain).
            None if matches!(asked.request, candor_brain::Request::Reload(_)) => self.record(
                crate::notes::daemon_note("request", "reload requested by SIGHUP".into()),
            ),
            None => {}
        }
        Input::Request {
            id,
            request: asked.request,
        }
    }

    /// A keeper event as an input (pipes kept aside until the brain says to watch the run).
    fn keeper_input(&mut self, ev: KeeperEvent) -> Option<Input> {
        Some(match ev {
            KeeperEvent::Spawned {
                service,
                run_id,
                pid,
                at,
                stdout,
                stderr,
                ready_fd,
                cleared_leftovers,
                start_ticks,
                unenforced,
            } => {
                let process = ProcessId {
                    run_id,
                    pid,
                    start_ticks,
                    stdout_ino: stdout.as_ref().and_then(crate::records::pipe_ino),
                    stderr_ino: stderr.as_ref().and_then(crate::records::pipe_ino),
                };
                self.procs.insert(service.clone(), process);
                let pipes = RunPipes {
                    stdout,
                    stderr,
                    ready_fd,
                };
                self.pipes.insert((service.clone(), run_id), pipes);
                Input::Spawned {
                    service,
                    run_id,
                    pid,
                    at,
                    cleared_leftovers,
                    unenforced,
                }
            }
            KeeperEvent::SpawnFailed {
                service,
                run_id,
                error,
            } => Input::SpawnFailed {
                service,
                run_id,
                error,
            },
            KeeperEvent::Exited {
                service,
                run_id,
                status,
                at,
                group_empty,
                escalated,
                oom_kills,
            } => Input::Exited {
                service,
                run_id,
                status,
                at,
                group_empty,
                escalated,
                oom_kills,
            },
            KeeperEvent::Emptied {
                service,
                run_id,
                escalated,
                ..
            } => Input::Emptied {
                service,
                run_id,
                escalated,
            },
            KeeperEvent::ProbeDone {
                token,
                end,
                elapsed,
            } => {
                self.ctx.exec.done(token, end, elapsed);
                return None;
            }
            KeeperEvent::Warning { message } => Input::KeeperWarning { message },
            KeeperEvent::Panicked { message, refused } => {
                self.ctx
                    .faults
                    .report("the keeper", &message, "it carried on");
                let command = match refused? {
                    candor_keeper::Unfinished::Spawn { service, run_id } => {
                        Refusable::Spawn { service, run_id }
                    }
                    candor_keeper::Unfinished::Stop { service, run_id } => {
                        Refusable::Stop { service, run_id }
                    }
                };
                Input::Refused {
                    command,
                    error: format!("the keeper failed ({message})"),
                }
            }
        })
    }

    fn feed(&mut self, input: Input) {
        // A request (a reload above all) may add and remove services: save them all after it.
        self.save_all |= matches!(input, Input::Request { .. });
        let effects = self.step(input);
        self.note_touched();
        self.carry(effects);
    }

    /// Run a start's condition like an exec probe (through the keeper, as the service's
    /// user), off the shell's loop; its end comes back as evidence.
    fn condition(&self, service: String, token: u64, spec: Arc<ServiceSpec>, timeout: Duration) {
        use candor_brain::ConditionEnd;
        let (exec, keeper, tx) = (
            self.ctx.exec.clone(),
            self.keeper.clone(),
            self.ctx.internal.clone(),
        );
        tokio::spawn(async move {
            let argv = spec.condition.clone().unwrap_or_default();
            let end = match exec.run(&keeper, &argv, &spec, timeout).await {
                candor_keeper::ProbeEnd::Exited(st) => ConditionEnd::Exited(st),
                candor_keeper::ProbeEnd::TimedOut => ConditionEnd::TimedOut,
                candor_keeper::ProbeEnd::CannotStart(e) => ConditionEnd::CannotStart(e),
            };
            let _ = tx
                .send(Internal::Condition {
                    service,
                    token,
                    end,
                })
                .await;
        });
    }

    /// One step of the brain; a panic in it (a bug) is reported and leaves `brain_failed` set
    /// (the loop then restarts the daemon in place) instead of taking the daemon down.
    fn step(&mut self, input: Input) -> Vec<Effect> {
        let fail = matches!(&input, Input::Request { request: candor_brain::Request::Restart(s), .. }
            if candor_core::fail_once("brain", s));
        let facts = &mut self.facts;
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if fail {
                panic!("failpoint brain");
            }
            candor_brain::step(facts, input, clock::now())
        }));
        match stepped {
            Ok(effects) => effects,
            Err(payload) => {
                let message = candor_core::panic_message(&*payload);
                if !self.brain_failed {
                    self.ctx.faults.report(
                        "the brain",
                        &message,
                        "Candor restarts itself in place, keeping every service (as `candor upgrade` to its own binary)",
                    );
                }
                self.brain_failed = true;
                Vec::new()
            }
        }
    }

    /// Carry out effects in order; a command the keeper does not take goes back to the brain.
    fn carry(&mut self, effects: Vec<Effect>) {
        let mut queue = std::collections::VecDeque::from(effects);
        let mut replies = Vec::new();
        while let Some(effect) = queue.pop_front() {
            let refused = match effect {
                Effect::Spawn {
                    service,
                    run_id,
                    spec,
                } => {
                    let req = self.spawn_request(&service, run_id, &spec);
                    self.hand(
                        KeeperCommand::Spawn(Box::new(req)),
                        Refusable::Spawn { service, run_id },
                    )
                }
                Effect::Stop {
                    service,
                    run_id,
                    signal,
                    timeout,
                } => {
                    let cmd = KeeperCommand::Stop {
                        service: service.clone(),
                        run_id,
                        signal,
                        timeout,
                    };
                    self.hand(cmd, Refusable::Stop { service, run_id })
                }
                Effect::Adopt {
                    service,
                    run_id,
                    pid,
                    kill_at,
                } => {
                    // The brain adopts only what the shell found in a record: its process
                    // identity is in `procs`. Without it (never expected) no start time matches,
                    // and the keeper reports the run gone.
                    let process = self
                        .procs
                        .get(&service)
                        .copied()
                        .filter(|p| p.run_id == run_id && p.pid == pid)
                        .unwrap_or(ProcessId {
                            run_id,
                            pid,
                            start_ticks: 0,
                            stdout_ino: None,
                            stderr_ino: None,
                        });
                    let spec = candor_spec::ServiceName::new(&service)
                        .ok()
                        .and_then(|n| self.facts.services.get(&n))
                        .map(|s| s.spec.clone());
                    let stop = spec.as_ref().map(|s| s.stop).unwrap_or_default();
                    let activate = spec.map(|s| s.activated.clone()).unwrap_or_default();
                    let cmd =
                        KeeperCommand::Adopt(process.adoption(&service, kill_at, stop, activate));
                    if let Err((cmd, _)) = self.keeper.try_send(cmd) {
                        self.adopt_backlog.push(cmd);
                    }
                    None
                }
                Effect::Sweep { keep } => {
                    self.hand(KeeperCommand::Sweep { keep }, Refusable::Sweep)
                }
                Effect::Timer(due) => {
                    self.timers.insert(due);
                    None
                }
                Effect::Watch {
                    service,
                    run_id,
                    spec,
                } => {
                    self.watch(service, run_id, spec);
                    None
                }
                Effect::Unwatch { service, run_id } => {
                    if self
                        .monitors
                        .get(&service)
                        .is_some_and(|(id, _)| *id == run_id)
                    {
                        self.monitors.remove(&service);
                    }
                    None
                }
                Effect::CheckNow { service, run_id } => {
                    if let Some((id, m)) = self.monitors.get(&service) {
                        if *id == run_id {
                            m.check_now();
                        }
                    }
                    None
                }
                Effect::ConfigureLogs { service, logs } => {
                    if let Some(c) = candor_spec::ServiceName::new(&service)
                        .ok()
                        .and_then(|n| self.logs.get(&n))
                    {
                        c.configure(&logs);
                    }
                    None
                }
                Effect::CountStranger => {
                    self.ctx
                        .notify_counters
                        .strangers
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    None
                }
                Effect::Record(note) => {
                    self.hooks.offer(&note);
                    self.record(note);
                    None
                }
                Effect::Condition {
                    service,
                    token,
                    spec,
                    timeout,
                } => {
                    self.condition(service, token, spec, timeout);
                    None
                }
                Effect::Publish => {
                    // A step that answers publishes at once (answers follow the board); others
                    // (evidence, keeper events: hundreds a second at 1000 services) at most
                    // every PUBLISH_EVERY, each copy of the board costing O(services).
                    let answers = queue.iter().any(|e| matches!(e, Effect::Reply { .. }));
                    let due = self.published + PUBLISH_EVERY;
                    if answers || clock::mono() >= due {
                        self.publish();
                    } else {
                        self.publish_due = Some(due);
                        self.fresh
                            .stale
                            .store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    None
                }
                Effect::Reply { id, reply } => {
                    // Services a reload removed: the keeper lets go of their activated
                    // sockets (and files) now, not at its next start.
                    if let Reply::Reload(out) = &reply {
                        for service in &out.removed {
                            let _ = self.keeper.send(KeeperCommand::Release {
                                service: service.clone(),
                            });
                        }
                    }
                    if let Some(tx) = self.waiting.remove(&id) {
                        replies.push((tx, reply));
                    }
                    None
                }
                Effect::Exit => None,
            };
            if let Some((command, e)) = refused {
                let input = Input::Refused {
                    command,
                    error: e.to_string(),
                };
                let more = self.step(input);
                self.note_touched();
                queue.extend(more);
            }
        }
        // Pipes of a run the brain did not take up (none expected) are closed.
        self.pipes.clear();
        self.save_records();
        if !replies.is_empty() {
            // An answer follows the records of what it changed: a stop that was answered is
            // still a stop for a daemon started after a kill -9 right after the answer.
            let recorder = self.recorder.clone();
            tokio::spawn(async move {
                let _ = tokio::task::spawn_blocking(move || recorder.flush()).await;
                for (tx, reply) in replies {
                    let _ = tx.send(reply);
                }
            });
        }
    }

    /// Hand a command to the keeper; if it is not taken, what to tell the brain.
    fn hand(&self, cmd: KeeperCommand, what: Refusable) -> Option<(Refusable, SendError)> {
        self.keeper.send(cmd).err().map(|e| (what, e))
    }

    fn spawn_request(&self, service: &str, run_id: u64, spec: &ServiceSpec) -> SpawnRequest {
        let run_as = candor_keeper::RunAs::of(spec, self.ctx.service_umask);
        let mut env = spec.env_pairs();
        if spec.uses_notify() {
            env.push(("NOTIFY_SOCKET".into(), self.ctx.notify_socket.clone()));
        }
        if let Some(w) = spec.watchdog {
            env.push(("WATCHDOG_USEC".into(), w.as_micros().to_string()));
        }
        // Who the process is, to Candor: for its logs, and to fit its shutdown in the stop's
        // grace (candor-sdk's backstop).
        env.push(("CANDOR_SERVICE".into(), service.to_string()));
        env.push(("CANDOR_RUN_ID".into(), run_id.to_string()));
        env.push((
            "CANDOR_STOP_TIMEOUT_MS".into(),
            spec.stop.timeout.as_millis().to_string(),
        ));
        // How to say "ready" when it is not a datagram, so one call (candor-sdk's
        // notify::ready) covers every `ready` mode.
        match &spec.ready {
            ReadySpec::Fd(n) => env.push(("CANDOR_READY_FD".into(), n.to_string())),
            ReadySpec::File(p) => env.push(("CANDOR_READY_FILE".into(), p.display().to_string())),
            _ => {}
        }
        // An instance: which one, and of how many (what the group runs now, `scale` included).
        if let Some(inst) = &spec.instance {
            let replicas = (self.facts.groups.get(&inst.group))
                .map_or(spec.replicas.unwrap_or(1), |g| g.wanted);
            env.push(("CANDOR_INSTANCE".into(), inst.index.to_string()));
            env.push(("CANDOR_REPLICAS".into(), replicas.to_string()));
        }
        SpawnRequest {
            service: service.into(),
            run_id,
            argv: spec.command.clone(),
            env,
            workdir: spec.workdir.clone(),
            // Services do not inherit the daemon's raised limit: theirs, or the one it had.
            nofile: spec
                .limits
                .nofile
                .map(|n| (n, n))
                .or(self.ctx.service_nofile),
            umask: run_as.umask,
            credentials: run_as.credentials,
            clean_env: run_as.clean_env,
            limits: spec.limits.cgroup,
            stop_signal: spec.stop.signal.number(),
            stop_timeout: spec.stop.timeout,
            ready_fd: match spec.ready {
                ReadySpec::Fd(n) => Some(n),
                _ => None,
            },
            watchdog_pid: spec.watchdog.is_some(),
            sockets: spec.own_sockets(),
            activate: spec.activated.clone(),
            clear_files: ready_markers(spec),
            capture_output: true,
            listen_key: spec.instance.as_ref().map(|i| i.group.to_string()),
        }
    }

    /// Read the run's output and start gathering its evidence.
    fn watch(&mut self, service: String, run_id: u64, spec: Arc<ServiceSpec>) {
        let Some(pipes) = self.pipes.remove(&(service.clone(), run_id)) else {
            return;
        };
        let counters = self.counters(&spec);
        if pipes.stdout.is_some() || pipes.stderr.is_some() {
            let sink = logs::LogSink {
                store: self.store.clone(),
                live: self.ctx.logs_live.clone(),
                stop: self.ctx.log_stop.subscribe(),
                active: self.ctx.log_readers.clone(),
                committed: self.ctx.log_committed.clone(),
            };
            let span = (spec.kind == candor_spec::ServiceKind::Oneshot)
                .then(|| logs::Span::new(&service, run_id, self.ctx.internal.clone()));
            let pid = candor_spec::ServiceName::new(&service)
                .ok()
                .and_then(|n| self.facts.services.get(&n))
                .and_then(|svc| svc.run.as_ref())
                .filter(|run| run.id == run_id)
                .and_then(|run| match run.spawn {
                    candor_brain::Spawn::Started { pid, .. } => Some(pid),
                    _ => None,
                });
            self.ctx
                .forwards
                .mark_run(&service, self.store.next_id(), run_id, pid);
            logs::spawn_readers(
                &service,
                pipes.stdout,
                pipes.stderr,
                sink,
                counters,
                &self.ctx.faults,
                span,
            );
        }
        let probes = self.probe_stats(&spec);
        let m = monitor::start(
            spec,
            probes,
            run_id,
            self.keeper.clone(),
            self.ctx.exec.clone(),
            self.ctx.gates.clone(),
            self.ctx.internal.clone(),
            pipes.ready_fd,
            &self.ctx.faults,
        );
        self.monitors.insert(service, (run_id, m));
    }

    /// The service's probe statistics (made on first use; kept while it is configured).
    fn probe_stats(&mut self, spec: &ServiceSpec) -> Arc<crate::counters::ProbeStats> {
        if let Some(p) = self.probes.get(&spec.name) {
            return p.clone();
        }
        let p = Arc::new(crate::counters::ProbeStats::default());
        Arc::make_mut(&mut self.probes).insert(spec.name.clone(), p.clone());
        p
    }

    /// The service's log counters (made on first use; kept while it is configured).
    fn counters(&mut self, spec: &ServiceSpec) -> Arc<LogCounters> {
        if let Some(c) = self.logs.get(&spec.name) {
            return c.clone();
        }
        let c = Arc::new(LogCounters::new(&spec.logs));
        Arc::make_mut(&mut self.logs).insert(spec.name.clone(), c.clone());
        c
    }

    fn record(&self, note: Note) {
        if self.ctx.echo_events {
            let now = api::timestamp_ms(std::time::SystemTime::now());
            eprintln!("{now} {} {}: {}", note.service, note.state, note.reason);
        }
        crate::notes::write_note(&self.store, Some(&self.events), note);
    }

    fn publish(&mut self) {
        self.publish_due = None;
        self.fresh
            .stale
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.published = clock::mono();
        // Counters for every configured service, none for removed ones. Services come and go
        // only on a request (reload) or as their count changes (a removed one goes).
        if self.save_all || self.logs.len() != self.facts.services.len() {
            let specs: Vec<Arc<ServiceSpec>> = self
                .facts
                .services
                .values()
                .filter(|s| !self.logs.contains_key(&s.spec.name))
                .map(|s| s.spec.clone())
                .collect();
            for spec in specs {
                self.counters(&spec);
            }
            if self.logs.len() != self.facts.services.len() {
                Arc::make_mut(&mut self.logs).retain(|n, _| self.facts.services.contains_key(n));
                Arc::make_mut(&mut self.probes).retain(|n, _| self.facts.services.contains_key(n));
                self.monitors.retain(|n, _| {
                    ServiceName::new(n).is_ok_and(|n| self.facts.services.contains_key(&n))
                });
            }
        }
        self.board.send_replace(Arc::new(Board {
            services: self.facts.services.clone(),
            logs: self.logs.clone(),
            probes: self.probes.clone(),
            groups: Arc::new(self.facts.groups.clone()),
        }));
    }
}
