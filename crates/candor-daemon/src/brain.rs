//! The brain's actor: owns every service's facts, turns keeper events and API requests into
//! keeper commands by way of core's decisions, and publishes the board after each change.
//! It holds no process: only the keeper does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use candor_api::{self as api, unix_ms, Action, ErrorBody};
use candor_core::health::Health;
use candor_core::restart::{self, AfterExit};
use candor_core::status::{LastExit, Phase, Run};
use candor_core::{stop, Evidence, ExitStatus, ServiceState, StopCause};
use candor_keeper::{KeeperCommand, KeeperEvent, KeeperHandle, SpawnRequest};
use candor_spec::{OnUnhealthy, ReadySpec, ServiceName, ServiceSpec, Spec};
use candor_store::{EventRow, Store};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::board::{Board, ServiceView};
use crate::logs;
use crate::logs::LogCounters;
use crate::monitor::{self, Internal, Monitor};
use crate::notify::{NotifyCounters, NotifyMessage};
use crate::probe::ExecProbes;

/// What the brain shares with the tasks that gather evidence for it.
#[derive(Clone)]
pub struct BrainContext {
    /// Monitors and the notify server send evidence here.
    pub internal: mpsc::Sender<Internal>,
    pub exec: Arc<ExecProbes>,
    pub notify_counters: Arc<NotifyCounters>,
    /// `NOTIFY_SOCKET` for services that use sd_notify.
    pub notify_socket: String,
    /// Print every state change on stderr.
    pub echo_events: bool,
    /// How often fds and memory are sampled.
    pub sample_every: Duration,
    /// Log lines as they are stored, for `logs -f`.
    pub logs_live: broadcast::Sender<logs::LiveLine>,
    /// RLIMIT_NOFILE (soft, hard) the daemon started with: what services get by default.
    pub service_nofile: Option<(u64, u64)>,
}

/// An API failure: an HTTP status and the body to send.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                details: Vec::new(),
                status: None,
            },
        }
    }
}

pub enum Request {
    Action {
        name: String,
        action: Action,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    ResetFailed {
        force: bool,
        reply: oneshot::Sender<api::ResetFailed>,
    },
    Reload {
        spec: Box<Spec>,
        reply: oneshot::Sender<api::ReloadOutcome>,
    },
    Shutdown,
}

/// What to do once the current run is gone.
#[derive(Debug)]
enum AfterStop {
    Nothing,
    Start,
    Remove,
    Replace(Arc<ServiceSpec>),
}

struct Svc {
    spec: Arc<ServiceSpec>,
    wanted: bool,
    phase: Phase,
    last_exit: Option<LastExit>,
    restarts: u32,
    /// Quick exits in a row, for backoff.
    streak: u32,
    runs: u64,
    /// A spawn sent to the keeper and not yet answered.
    spawning: Option<u64>,
    /// Whether the spawn in flight is an automatic restart.
    spawning_is_restart: bool,
    after_stop: AfterStop,
    since: SystemTime,
    last_state: Option<ServiceState>,
    logs: Arc<LogCounters>,
    /// Health evidence of the current (or last) run.
    health: Option<Health>,
    /// Evidence gatherers of the live run; dropping it stops them.
    monitor: Option<Monitor>,
    /// Not ready by then: stop it and fail it (`ready_timeout`).
    ready_deadline: Option<SystemTime>,
    /// No `WATCHDOG=1` by then: unhealthy, restart.
    watchdog_deadline: Option<SystemTime>,
    /// fd/RSS samples of the current run (bounded); only its summary goes into evidence.
    window: candor_core::budget::Window,
}

impl Svc {
    fn new(spec: Arc<ServiceSpec>, now: SystemTime) -> Self {
        Self {
            logs: Arc::new(LogCounters::new(&spec.logs)),
            spec,
            wanted: true,
            phase: Phase::Idle,
            last_exit: None,
            restarts: 0,
            streak: 0,
            runs: 0,
            spawning: None,
            spawning_is_restart: false,
            after_stop: AfterStop::Nothing,
            since: now,
            last_state: None,
            health: None,
            monitor: None,
            ready_deadline: None,
            watchdog_deadline: None,
            window: candor_core::budget::Window::default(),
        }
    }
    /// The run is over: stop gathering evidence for it.
    fn end_run(&mut self) {
        self.monitor = None;
        self.ready_deadline = None;
        self.watchdog_deadline = None;
    }
    /// The live run and its health, when the health is this run's.
    fn live(&mut self) -> Option<(&mut Run, &mut Health)> {
        match (&mut self.phase, &mut self.health) {
            (Phase::Running(run), Some(h)) if h.run_id == run.id => Some((run, h)),
            _ => None,
        }
    }
    fn evidence(&self) -> Evidence {
        Evidence {
            wanted: self.wanted,
            phase: self.phase.clone(),
            last_exit: self.last_exit,
            restarts: self.restarts,
            health: self.health.clone(),
        }
    }
    fn state(&self, now: SystemTime) -> ServiceState {
        candor_core::derive(&self.spec, &self.evidence(), now).state
    }
    /// No process and none on its way.
    fn is_down(&self) -> bool {
        self.spawning.is_none()
            && matches!(
                self.phase,
                Phase::Idle
                    | Phase::Failed { .. }
                    | Phase::Completed
                    | Phase::Backoff { .. }
                    | Phase::WaitingFor(_)
            )
    }
}

pub struct Brain {
    services: BTreeMap<ServiceName, Svc>,
    keeper: KeeperHandle,
    store: Store,
    board: watch::Sender<Arc<Board>>,
    /// Live events for followers (`GET /v1/events?follow`); slow followers lag and are told.
    events: broadcast::Sender<api::Event>,
    shutting_down: bool,
    /// Answers to requests, sent only after the board shows their effect.
    replies: Vec<Box<dyn FnOnce() + Send>>,
    ctx: BrainContext,
    /// sd_notify messages that arrived before the spawn of their sender was reported.
    early_notify: Vec<NotifyMessage>,
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

/// The evidence behind a health verdict, for the event log.
fn health_detail(s: &Svc) -> serde_json::Value {
    let Some(h) = &s.health else {
        return serde_json::json!({});
    };
    serde_json::json!({
        "run": h.run_id,
        "probe": h.probe.last.as_ref().map(|o| serde_json::json!({
            "ok": o.ok, "detail": o.detail, "latency_ms": o.latency.as_secs_f64() * 1000.0,
            "failures_in_a_row": h.probe.failures_in_a_row,
        })),
        "sockets": h.sockets.iter().map(|c| serde_json::json!({
            "path": c.path, "exists": c.exists, "accepts": c.accepts,
        })).collect::<Vec<_>>(),
        "watchdog": h.watchdog_missed,
    })
}

fn satisfied(state: ServiceState) -> bool {
    matches!(
        state,
        ServiceState::Running | ServiceState::Degraded | ServiceState::Exited
    )
}

impl Brain {
    pub fn new(
        spec: &Spec,
        keeper: KeeperHandle,
        store: Store,
        board: watch::Sender<Arc<Board>>,
        events: broadcast::Sender<api::Event>,
        ctx: BrainContext,
    ) -> Self {
        let now = SystemTime::now();
        let services = spec
            .services
            .iter()
            .map(|(name, s)| (name.clone(), Svc::new(Arc::new(s.clone()), now)))
            .collect();
        let keep = spec.services.keys().map(|n| n.to_string()).collect();
        let brain = Self {
            services,
            keeper,
            store,
            board,
            events,
            shutting_down: false,
            replies: Vec::new(),
            ctx,
            early_notify: Vec::new(),
        };
        brain.send(KeeperCommand::Sweep { keep });
        brain
    }

    /// Run until shutdown completes.
    pub async fn run(
        mut self,
        mut keeper_rx: mpsc::Receiver<KeeperEvent>,
        mut req_rx: mpsc::Receiver<Request>,
        mut internal_rx: mpsc::Receiver<Internal>,
    ) {
        let mut requests_open = true;
        self.settle();
        loop {
            let now = SystemTime::now();
            let next_restart = self
                .services
                .values()
                .flat_map(|s| {
                    let backoff = match s.phase {
                        Phase::Backoff { until, .. } => Some(until),
                        _ => None,
                    };
                    [backoff, s.ready_deadline, s.watchdog_deadline]
                })
                .flatten()
                .map(|t| t.duration_since(now).unwrap_or_default())
                .min();
            match next_restart {
                // Due now (e.g. right after a good run): no sleeping, no waiting on the select.
                Some(d) if d.is_zero() => self.on_timer(),
                next => tokio::select! {
                    ev = keeper_rx.recv() => match ev {
                        Some(ev) => self.on_keeper(ev),
                        None => {
                            eprintln!("candor: the keeper stopped; exiting");
                            return;
                        }
                    },
                    req = req_rx.recv(), if requests_open => match req {
                        Some(req) => self.on_request(req),
                        None => {
                            requests_open = false;
                            self.begin_shutdown();
                        }
                    },
                                                            Some(msg) = internal_rx.recv() => {
                        self.on_internal(msg);
                        // Take what else is queued before settling once (probe results of
                        // many services arrive together).
                        for _ in 0..1024 {
                            match internal_rx.try_recv() {
                                Ok(more) => self.on_internal(more),
                                Err(_) => break,
                            }
                        }
                    },
                    _ = tokio::time::sleep(next.unwrap_or(Duration::from_secs(3600))) => self.on_timer(),
                },
            }
            self.settle();
            for reply in self.replies.drain(..) {
                reply();
            }
            if self.shutting_down && self.services.values().all(Svc::is_down) {
                self.send(KeeperCommand::Shutdown);
                return;
            }
        }
    }

    fn send(&self, cmd: KeeperCommand) {
        if let Err(e) = self.keeper.send(cmd) {
            eprintln!("candor: cannot reach the keeper: {e}");
        }
    }

    fn record(&self, service: &str, state: &str, reason: &str, detail: serde_json::Value) {
        let now = SystemTime::now();
        if self.ctx.echo_events {
            eprintln!("{} {service} {state}: {reason}", api::timestamp_ms(now));
        }
        let _ = self.events.send(api::Event {
            at: api::timestamp_ms(now),
            service: service.into(),
            state: state.into(),
            reason: reason.into(),
            detail: detail.clone(),
        });
        self.store.event(EventRow {
            at_ms: unix_ms(now),
            service: service.into(),
            state: state.into(),
            reason: reason.into(),
            detail: detail.to_string(),
        });
    }

    // ---- requests -------------------------------------------------------------------------

    fn on_request(&mut self, req: Request) {
        match req {
            Request::Action {
                name,
                action,
                reply,
            } => {
                let Ok(key) = ServiceName::new(&name) else {
                    let _ = reply.send(Err(self.unknown(&name)));
                    return;
                };
                if !self.services.contains_key(&key) {
                    let _ = reply.send(Err(self.unknown(&name)));
                    return;
                }
                if self.shutting_down && action != Action::Stop {
                    let _ = reply.send(Err(ApiError::new(409, "the supervisor is shutting down")));
                    return;
                }
                match action {
                    Action::Start => self.start(&key),
                    Action::Stop => self.stop(&key, StopCause::Requested),
                    Action::Restart => self.restart(&key),
                }
                self.replies.push(Box::new(move || {
                    let _ = reply.send(Ok(()));
                }));
            }
            Request::ResetFailed { force, reply } => {
                let now = SystemTime::now();
                let mut out = api::ResetFailed::default();
                let names: Vec<ServiceName> = self.services.keys().cloned().collect();
                for name in names {
                    let failed = self.services[&name].state(now) == ServiceState::Failed;
                    if failed || force {
                        if let Some(s) = self.services.get_mut(&name) {
                            s.restarts = 0;
                            s.streak = 0;
                        }
                        self.restart(&name);
                        out.restarted.push(name.to_string());
                    } else {
                        out.left_alone.push(name.to_string());
                    }
                }
                self.replies.push(Box::new(move || {
                    let _ = reply.send(out);
                }));
            }
            Request::Reload { spec, reply } => {
                let out = self.reload(*spec);
                self.replies.push(Box::new(move || {
                    let _ = reply.send(out);
                }));
            }
            Request::Shutdown => self.begin_shutdown(),
        }
    }

    fn unknown(&self, name: &str) -> ApiError {
        let known: Vec<&str> = self.services.keys().map(|k| k.as_str()).collect();
        ApiError::new(
            404,
            format!(
                "no service named `{name}`; configured: {}",
                known.join(", ")
            ),
        )
    }

    fn start(&mut self, name: &ServiceName) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        s.wanted = true;
        s.streak = 0;
        match s.phase {
            Phase::Stopping { .. } | Phase::Leftovers { .. } => s.after_stop = AfterStop::Start,
            Phase::Running(_) => {}
            _ => {
                s.phase = Phase::Idle;
                self.try_start(name);
            }
        }
    }

    fn restart(&mut self, name: &ServiceName) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        match s.phase {
            Phase::Running(_) => {
                s.wanted = true;
                s.streak = 0;
                s.after_stop = AfterStop::Start;
                self.stop_run(name, StopCause::Restart);
            }
            _ => self.start(name),
        }
    }

    fn stop(&mut self, name: &ServiceName, cause: StopCause) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        s.wanted = false;
        s.after_stop = AfterStop::Nothing;
        match s.phase {
            Phase::Running(_) | Phase::Leftovers { .. } => self.stop_run(name, cause),
            Phase::Stopping { .. } => {}
            _ => s.phase = Phase::Idle,
        }
    }

    /// Ask the keeper to stop the live run and record the timeline.
    fn stop_run(&mut self, name: &ServiceName, cause: StopCause) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        let (run, main_exit) = match &s.phase {
            Phase::Running(run) => (run.clone(), None),
            Phase::Leftovers { run, main_exit } => (run.clone(), Some(*main_exit)),
            _ => return,
        };
        let timeline = stop::timeline(&s.spec.stop, SystemTime::now());
        s.phase = Phase::Stopping {
            run: run.clone(),
            cause,
            timeline,
            main_exit,
        };
        let cmd = KeeperCommand::Stop {
            service: name.to_string(),
            run_id: run.id,
            signal: s.spec.stop.signal.number(),
            timeout: s.spec.stop.timeout,
        };
        self.send(cmd);
    }

    /// Spawn if every `after` target is satisfied; otherwise wait for them.
    fn try_start(&mut self, name: &ServiceName) {
        let now = SystemTime::now();
        let Some(s) = self.services.get(name) else {
            return;
        };
        if s.spawning.is_some() || self.shutting_down {
            return;
        }
        let blocking: Vec<(String, ServiceState)> = s
            .spec
            .after
            .iter()
            .filter_map(|d| {
                self.services
                    .get(d)
                    .map(|ds| (d.to_string(), ds.state(now)))
            })
            .filter(|(_, st)| !satisfied(*st))
            .collect();
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        if !blocking.is_empty() {
            s.phase = Phase::WaitingFor(blocking);
            return;
        }
        s.runs += 1;
        let run_id = s.runs;
        s.spawning = Some(run_id);
        s.phase = Phase::Idle;
        let spec = &s.spec;
        let req = SpawnRequest {
            service: name.to_string(),
            run_id,
            argv: spec.command.clone(),
            env: spec.env_pairs(),
            workdir: spec.workdir.clone(),
            // Services do not inherit the daemon's raised limit: theirs, or the one it had.
            nofile: spec
                .limits
                .nofile
                .map(|n| (n, n))
                .or(self.ctx.service_nofile),
            stop_signal: spec.stop.signal.number(),
            stop_timeout: spec.stop.timeout,
            ready_fd: match spec.ready {
                ReadySpec::Fd(n) => Some(n),
                _ => None,
            },
            watchdog_pid: spec.watchdog.is_some(),
            sockets: spec.sockets.clone(),
            clear_files: ready_markers(spec),
            capture_output: true,
        };
        let mut req = req;
        if spec.uses_notify() {
            req.env
                .push(("NOTIFY_SOCKET".into(), self.ctx.notify_socket.clone()));
        }
        if let Some(w) = spec.watchdog {
            req.env
                .push(("WATCHDOG_USEC".into(), w.as_micros().to_string()));
        }
        if let Err(e) = self.keeper.send(KeeperCommand::Spawn(req)) {
            s.spawning = None;
            s.phase = Phase::Failed {
                reason: format!(
                    "could not be handed to the keeper ({e}); the supervisor needs a restart"
                ),
            };
        }
    }

    fn reload(&mut self, spec: Spec) -> api::ReloadOutcome {
        let now = SystemTime::now();
        self.store.set_caps(crate::logs::caps(&spec));
        let mut out = api::ReloadOutcome::default();
        let removed: Vec<ServiceName> = self
            .services
            .keys()
            .filter(|n| !spec.services.contains_key(*n))
            .cloned()
            .collect();
        for name in removed {
            out.removed.push(name.to_string());
            let s = self.services.get_mut(&name).expect("listed above");
            if s.is_down() {
                self.services.remove(&name);
                self.record(
                    name.as_str(),
                    "removed",
                    "removed from config",
                    serde_json::json!({}),
                );
            } else {
                s.wanted = false;
                self.stop_run(&name, StopCause::Removed);
                if let Some(s) = self.services.get_mut(&name) {
                    s.after_stop = AfterStop::Remove;
                }
            }
        }
        for (name, new) in &spec.services {
            let new = Arc::new(new.clone());
            match self.services.get_mut(name) {
                None => {
                    out.added.push(name.to_string());
                    self.services.insert(name.clone(), Svc::new(new, now));
                    self.try_start(name);
                }
                Some(s) => {
                    let mut old = (*s.spec).clone();
                    old.defined_at.clone_from(&new.defined_at);
                    let logs_changed = old.logs != new.logs;
                    old.logs = new.logs;
                    if logs_changed {
                        // Log limits apply to the running service: no restart for them.
                        s.logs.configure(&new.logs);
                    }
                    if old == *new {
                        s.spec = new;
                        if logs_changed {
                            out.changed.push(name.to_string());
                            out.notes
                                .push(format!("{name}: new log limits applied without a restart"));
                        } else {
                            out.unchanged.push(name.to_string());
                        }
                    } else {
                        out.changed.push(name.to_string());
                        match s.phase {
                            Phase::Running(_) | Phase::Leftovers { .. } => {
                                s.after_stop = AfterStop::Replace(new);
                                self.stop_run(name, StopCause::ConfigChanged);
                            }
                            Phase::Stopping { .. } => s.after_stop = AfterStop::Replace(new),
                            _ => {
                                s.spec = new;
                                if s.wanted && s.spawning.is_none() {
                                    s.phase = Phase::Idle;
                                    self.try_start(name);
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.record(
            "candor",
            "stopping",
            "shutdown requested: stopping services in reverse dependency order",
            serde_json::json!({}),
        );
        for s in self.services.values_mut() {
            s.wanted = false;
            s.after_stop = AfterStop::Nothing;
            if matches!(s.phase, Phase::Backoff { .. } | Phase::WaitingFor(_)) {
                s.phase = Phase::Idle;
            }
        }
    }

    // ---- keeper events --------------------------------------------------------------------

    fn on_keeper(&mut self, ev: KeeperEvent) {
        match ev {
            KeeperEvent::Spawned {
                service,
                run_id,
                pid,
                at,
                stdout,
                stderr,
                ready_fd,
                cleared_leftovers,
            } => {
                let Some(name) = ServiceName::new(&service).ok() else {
                    return;
                };
                if cleared_leftovers > 0 {
                    self.record(
                        &service,
                        "starting",
                        &format!("killed {cleared_leftovers} process(es) left in its cgroup by an earlier run before starting"),
                        serde_json::json!({ "killed": cleared_leftovers }),
                    );
                }
                let Some(s) = self.services.get_mut(&name) else {
                    return;
                };
                if s.spawning != Some(run_id) {
                    return;
                }
                s.spawning = None;
                if s.spawning_is_restart {
                    s.restarts += 1;
                    s.spawning_is_restart = false;
                }
                if let (Some(out), Some(err)) = (stdout, stderr) {
                    let sink = logs::LogSink {
                        store: self.store.clone(),
                        live: self.ctx.logs_live.clone(),
                    };
                    logs::spawn_readers(&service, out, err, sink, s.logs.clone());
                }
                let ready_now = s.spec.ready == ReadySpec::Started;
                s.phase = Phase::Running(Run {
                    id: run_id,
                    pid,
                    started_at: at,
                    ready: ready_now.then_some((at, s.spec.ready.as_str())),
                    // The first run of this daemon found an earlier supervisor's run in place.
                    after_supervisor_restart: cleared_leftovers > 0 && run_id == 1,
                });
                s.health = Some(Health::for_run(run_id));
                s.ready_deadline = s.spec.ready_timeout.filter(|_| !ready_now).map(|t| at + t);
                s.watchdog_deadline = s.spec.watchdog.map(|w| at + w);
                s.monitor = Some(monitor::start(
                    s.spec.clone(),
                    run_id,
                    self.keeper.clone(),
                    self.ctx.exec.clone(),
                    self.ctx.internal.clone(),
                    ready_fd,
                ));
                if !s.wanted || self.shutting_down {
                    self.stop_run(&name, StopCause::Requested);
                }
                self.replay_early_notify();
            }
            KeeperEvent::SpawnFailed {
                service,
                run_id,
                error,
            } => {
                let Some(name) = ServiceName::new(&service).ok() else {
                    return;
                };
                let Some(s) = self.services.get_mut(&name) else {
                    return;
                };
                if s.spawning != Some(run_id) {
                    return;
                }
                s.spawning = None;
                s.spawning_is_restart = false;
                s.phase = Phase::Failed { reason: error };
                self.replay_early_notify();
            }
            KeeperEvent::Exited {
                service,
                run_id,
                status,
                at,
                group_empty,
                escalated,
            } => {
                let Some(name) = ServiceName::new(&service).ok() else {
                    return;
                };
                self.on_exited(&name, run_id, status, at);
                if group_empty {
                    self.on_emptied(&name, run_id, escalated);
                }
            }
            KeeperEvent::Emptied {
                service,
                run_id,
                escalated,
                ..
            } => {
                let Some(name) = ServiceName::new(&service).ok() else {
                    return;
                };
                self.on_emptied(&name, run_id, escalated);
            }
            KeeperEvent::ProbeDone {
                token,
                end,
                elapsed,
            } => self.ctx.exec.done(token, end, elapsed),
            KeeperEvent::Warning { message } => {
                self.record("candor", "warning", &message, serde_json::json!({}))
            }
        }
    }

    fn on_exited(&mut self, name: &ServiceName, run_id: u64, status: ExitStatus, at: SystemTime) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        match &mut s.phase {
            Phase::Running(run) if run.id == run_id => {
                let uptime = at.duration_since(run.started_at).unwrap_or_default();
                s.last_exit = Some(LastExit { status, at, uptime });
                s.phase = Phase::Leftovers {
                    run: run.clone(),
                    main_exit: status,
                };
            }
            Phase::Stopping { run, main_exit, .. } if run.id == run_id => {
                let uptime = at.duration_since(run.started_at).unwrap_or_default();
                s.last_exit = Some(LastExit { status, at, uptime });
                *main_exit = Some(status);
            }
            _ => return,
        }
        s.end_run();
    }

    /// Evidence from a run's monitor or the notify server.
    fn on_internal(&mut self, msg: Internal) {
        // Only readiness evidence can make a run ready; samples and socket checks cannot.
        let may_ready = matches!(
            msg,
            Internal::Probe { .. } | Internal::Ready { .. } | Internal::Notify(_)
        );
        if !may_ready {
            return self.take_evidence(msg);
        }
        let ready_before = self.ready_runs();
        self.take_evidence(msg);
        // A run that just became ready gets its declared sockets checked right away.
        for (name, s) in &self.services {
            let ready_now = matches!(&s.phase, Phase::Running(r) if r.ready.is_some());
            if ready_now && !ready_before.contains(name) {
                if let Some(m) = &s.monitor {
                    m.check_now();
                }
            }
        }
    }

    fn ready_runs(&self) -> std::collections::BTreeSet<ServiceName> {
        self.services
            .iter()
            .filter(|(_, s)| matches!(&s.phase, Phase::Running(r) if r.ready.is_some()))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn take_evidence(&mut self, msg: Internal) {
        let now = SystemTime::now();
        match msg {
            Internal::Probe {
                service,
                run_id,
                outcome,
            } => {
                let Some(s) = self.svc_for_run(&service, run_id) else {
                    return;
                };
                let (failures, successes) = s
                    .spec
                    .probe
                    .as_ref()
                    .map(|p| (p.failures, p.successes))
                    .unwrap_or((3, 1));
                let ready_by_probe = s.spec.ready == ReadySpec::Probe;
                let ok = outcome.ok;
                let Some((run, h)) = s.live() else { return };
                h.probe.record(outcome, failures, successes);
                if ready_by_probe && ok && run.ready.is_none() {
                    run.ready = Some((now, "probe"));
                }
            }
            Internal::Sockets {
                service,
                run_id,
                checks,
            } => {
                let Some(s) = self.svc_for_run(&service, run_id) else {
                    return;
                };
                if let Some((_, h)) = s.live() {
                    h.sockets = checks;
                }
            }
            Internal::Ready {
                service,
                run_id,
                via,
            } => {
                let Some(s) = self.svc_for_run(&service, run_id) else {
                    return;
                };
                if let Some((run, _)) = s.live() {
                    if run.ready.is_none() {
                        run.ready = Some((now, via));
                    }
                }
            }
            Internal::Notify(msg) => self.on_notify(msg, now),
            Internal::Samples(samples) => {
                // A summary describes now for three sampling periods, no longer.
                let valid_for = self.ctx.sample_every * 3;
                for (service, run_id, sample) in samples {
                    let Some(s) = self.svc_for_run(&service, run_id) else {
                        continue;
                    };
                    // The window stays here; the evidence gets its small summary.
                    s.window.push(run_id, sample);
                    let summary = s
                        .window
                        .summary()
                        .map(|b| candor_core::budget::Summary { valid_for, ..b });
                    if let Some((_, h)) = s.live() {
                        h.budget = summary;
                    }
                }
            }
        }
    }

    /// The service, if `run_id` is its live run (evidence for any other run is dropped).
    fn svc_for_run(&mut self, service: &str, run_id: u64) -> Option<&mut Svc> {
        let name = ServiceName::new(service).ok()?;
        let s = self.services.get_mut(&name)?;
        matches!(&s.phase, Phase::Running(run) if run.id == run_id).then_some(s)
    }

    /// Messages held for a spawn in flight: their senders may be known now.
    fn replay_early_notify(&mut self) {
        let now = SystemTime::now();
        for msg in std::mem::take(&mut self.early_notify) {
            self.on_notify(msg, now);
        }
    }

    fn on_notify(&mut self, msg: NotifyMessage, now: SystemTime) {
        // Whose is it? A process in a service's cgroup, else in its process group.
        let owner = self
            .services
            .iter()
            .find(|(name, s)| {
                let Phase::Running(run) = &s.phase else {
                    return false;
                };
                msg.cgroup_service.as_deref() == Some(name.as_str())
                    || msg.pgid == Some(run.pid)
                    || msg.pid == run.pid
            })
            .map(|(n, _)| n.clone());
        let Some(name) = owner else {
            // A service may have spoken before the keeper's report of its spawn reached us:
            // hold the message until that spawn is reported.
            let spawning = self.services.iter().any(|(n, s)| {
                s.spawning.is_some()
                    && msg
                        .cgroup_service
                        .as_deref()
                        .is_none_or(|c| c == n.as_str())
            });
            if spawning && self.early_notify.len() < 256 {
                self.early_notify.push(msg);
            } else {
                self.ctx
                    .notify_counters
                    .strangers
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return;
        };
        let Some(s) = self.services.get_mut(&name) else {
            return;
        };
        let notify_ready = s.spec.ready == ReadySpec::Notify;
        let watchdog = s.spec.watchdog;
        let mut new_deadline = None;
        let mut mainpid = None;
        if let Some((run, h)) = s.live() {
            for (key, value) in &msg.fields {
                match key.as_str() {
                    "READY" if value == "1" && notify_ready && run.ready.is_none() => {
                        run.ready = Some((now, "notify"));
                    }
                    "STATUS" => h.notify_status = Some(value.chars().take(200).collect()),
                    "STOPPING" if value == "1" => {
                        h.notify_status = Some("stopping on its own (STOPPING=1)".into())
                    }
                    "RELOADING" if value == "1" => {
                        h.notify_status = Some("reloading (RELOADING=1)".into())
                    }
                    "ERRNO" => h.notify_status = Some(format!("reports errno {value} (ERRNO=)")),
                    "MAINPID" => mainpid = value.parse::<u32>().ok(),
                    "WATCHDOG" if value == "1" => new_deadline = watchdog.map(|w| now + w),
                    "WATCHDOG" if value == "trigger" => {
                        h.watchdog_missed =
                            Some("watchdog triggered by the service (WATCHDOG=trigger)".into())
                    }
                    _ => {}
                }
            }
        }
        if new_deadline.is_some() {
            s.watchdog_deadline = new_deadline;
        }
        if let Some(pid) = mainpid {
            // The keeper watches the process it spawned; MAINPID is recorded, not followed.
            let msg =
                format!("reported MAINPID={pid}; candor keeps supervising the process it started");
            self.record(
                name.as_str(),
                "notify",
                &msg,
                serde_json::json!({ "mainpid": pid }),
            );
        }
    }

    fn on_emptied(&mut self, name: &ServiceName, run_id: u64, escalated: bool) {
        let now = SystemTime::now();
        let shutting_down = self.shutting_down;
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        let phase = std::mem::replace(&mut s.phase, Phase::Idle);
        match phase {
            Phase::Stopping { run, cause, .. } if run.id == run_id => {
                if escalated {
                    let msg = format!(
                        "did not stop within {} of {}; the whole group was killed with SIGKILL",
                        candor_spec::format_duration(s.spec.stop.timeout),
                        s.spec.stop.signal.name()
                    );
                    self.record(
                        name.as_str(),
                        "stopping",
                        &msg,
                        serde_json::json!({ "cause": format!("{cause:?}") }),
                    );
                }
                let Some(s) = self.services.get_mut(name) else {
                    return;
                };
                let untouched =
                    matches!(s.after_stop, AfterStop::Nothing) && s.wanted && !shutting_down;
                match cause {
                    StopCause::GiveUp(reason) if untouched => {
                        s.phase = Phase::Failed { reason };
                        return;
                    }
                    StopCause::Unhealthy(why) if untouched => {
                        let uptime = s.last_exit.map(|e| e.uptime).unwrap_or_default();
                        let (delay, streak) =
                            candor_core::backoff::after_exit(&s.spec.backoff, s.streak, uptime);
                        s.streak = streak;
                        s.phase = Phase::Backoff {
                            until: now + delay,
                            streak,
                            why: Some(why),
                        };
                        return;
                    }
                    _ => {}
                }
                match std::mem::replace(&mut s.after_stop, AfterStop::Nothing) {
                    AfterStop::Nothing => {}
                    AfterStop::Start => self.try_start(name),
                    AfterStop::Remove => {
                        self.services.remove(name);
                        self.record(
                            name.as_str(),
                            "removed",
                            "removed from config",
                            serde_json::json!({}),
                        );
                    }
                    AfterStop::Replace(spec) => {
                        s.spec = spec;
                        if s.wanted {
                            self.try_start(name);
                        }
                    }
                }
            }
            Phase::Leftovers { run, main_exit } if run.id == run_id => {
                let uptime = s.last_exit.map(|e| e.uptime).unwrap_or_default();
                if shutting_down || !s.wanted {
                    return;
                }
                // A start/restart asked for while the leftovers were being stopped wins over
                // the restart policy.
                if matches!(
                    std::mem::replace(&mut s.after_stop, AfterStop::Nothing),
                    AfterStop::Start
                ) {
                    self.try_start(name);
                    return;
                }
                match restart::after_exit(&s.spec, main_exit, uptime, s.streak) {
                    AfterExit::Restart { delay, quick_exits } => {
                        s.streak = quick_exits;
                        s.phase = Phase::Backoff {
                            until: now + delay,
                            streak: quick_exits,
                            why: None,
                        };
                        // Even a zero delay goes through `backoff`, so the decision is recorded;
                        // the run loop starts due restarts without sleeping.
                    }
                    AfterExit::Completed => s.phase = Phase::Completed,
                    AfterExit::GiveUp { reason } => s.phase = Phase::Failed { reason },
                }
            }
            other => s.phase = other,
        }
    }

    fn restart_due(&mut self, name: &ServiceName) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        s.phase = Phase::Idle;
        s.spawning_is_restart = true;
        self.try_start(name);
        // Waiting on a dependency is not a restart yet.
        if let Some(s) = self.services.get_mut(name) {
            if s.spawning.is_none() {
                s.spawning_is_restart = false;
            }
        }
    }

    fn on_timer(&mut self) {
        let now = SystemTime::now();
        let due: Vec<ServiceName> = self
            .services
            .iter()
            .filter(|(_, s)| matches!(s.phase, Phase::Backoff { until, .. } if until <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.restart_due(&name);
        }
        let names: Vec<ServiceName> = self.services.keys().cloned().collect();
        for name in names {
            let Some(s) = self.services.get_mut(&name) else {
                continue;
            };
            if s.ready_deadline.is_some_and(|t| t <= now) {
                s.ready_deadline = None;
                let never_ready = matches!(&s.phase, Phase::Running(run) if run.ready.is_none());
                if never_ready {
                    let reason = format!(
                        "not ready within {} of starting (ready = \"{}\"); fix the service or raise ready_timeout",
                        candor_spec::format_duration(s.spec.ready_timeout.unwrap_or_default()),
                        s.spec.ready.as_str()
                    );
                    self.stop_run(&name, StopCause::GiveUp(reason));
                    continue;
                }
            }
            let Some(s) = self.services.get_mut(&name) else {
                continue;
            };
            if s.watchdog_deadline.is_some_and(|t| t <= now) {
                s.watchdog_deadline = None;
                let every = candor_spec::format_duration(s.spec.watchdog.unwrap_or_default());
                if let Some((_, h)) = s.live() {
                    h.watchdog_missed =
                        Some(format!("watchdog timeout: no WATCHDOG=1 within {every}"));
                }
            }
        }
    }

    /// Act on unhealthy runs: restart them (`on_unhealthy = "restart"`, or any watchdog
    /// timeout) after recording why; with "alert" the state alone says it.
    fn enforce(&mut self, now: SystemTime) {
        let mut to_restart = Vec::new();
        for (name, s) in &mut self.services {
            let d = candor_core::derive(&s.spec, &s.evidence(), now);
            if self.shutting_down {
                continue;
            }
            // fd_restart / memory_restart: a graceful restart with the numbers as the reason.
            if d.state == ServiceState::Degraded {
                let over = s
                    .health
                    .as_ref()
                    .and_then(|h| h.budget.as_ref())
                    .filter(|b| b.is_fresh(now))
                    .map(|b| candor_core::budget::verdict(&s.spec.limits, b));
                if let Some(candor_core::budget::Verdict::Restart(why)) = over {
                    if matches!(s.phase, Phase::Running(_)) {
                        to_restart.push((name.clone(), why));
                        s.last_state = Some(ServiceState::Degraded);
                        s.since = now;
                    }
                }
                continue;
            }
            if d.state != ServiceState::Unhealthy {
                continue;
            }
            let watchdog = s
                .health
                .as_ref()
                .is_some_and(|h| h.watchdog_missed.is_some());
            if s.spec.on_unhealthy == OnUnhealthy::Restart || watchdog {
                to_restart.push((name.clone(), d.reason));
                s.last_state = Some(ServiceState::Unhealthy);
                s.since = now;
            }
        }
        for (name, reason) in to_restart {
            let detail = self
                .services
                .get(&name)
                .map(health_detail)
                .unwrap_or_default();
            let state = self
                .services
                .get(&name)
                .and_then(|s| s.last_state)
                .unwrap_or(ServiceState::Unhealthy);
            self.record(name.as_str(), state.as_str(), &reason, detail);
            self.stop_run(&name, StopCause::Unhealthy(reason));
        }
    }

    // ---- after every change -----------------------------------------------------------------

    /// Start what can start, stop what shutdown order allows, record state changes, publish.
    fn settle(&mut self) {
        self.enforce(SystemTime::now());
        let names: Vec<ServiceName> = self.services.keys().cloned().collect();
        if self.shutting_down {
            for name in &names {
                let dependents_down = self
                    .services
                    .values()
                    .filter(|o| o.spec.after.contains(name))
                    .all(Svc::is_down);
                let s = &self.services[name];
                if dependents_down && matches!(s.phase, Phase::Running(_) | Phase::Leftovers { .. })
                {
                    self.stop_run(name, StopCause::Shutdown);
                }
            }
        } else {
            for name in &names {
                let s = &self.services[name];
                if s.wanted
                    && s.spawning.is_none()
                    && matches!(s.phase, Phase::Idle | Phase::WaitingFor(_))
                {
                    self.try_start(name);
                }
            }
        }
        let now = SystemTime::now();
        let mut changes = Vec::new();
        for (name, s) in self.services.iter_mut() {
            let d = candor_core::derive(&s.spec, &s.evidence(), now);
            if s.last_state != Some(d.state) {
                s.last_state = Some(d.state);
                s.since = now;
                let run = crate::board::live_run(&s.phase);
                let detail = serde_json::json!({
                    "pid": run.map(|r| r.pid),
                    "run": run.map(|r| r.id),
                    "restarts": s.restarts,
                    "last_exit": s.last_exit.map(|e| e.status.describe()),
                    "health": run.map(|_| health_detail(s)),
                    "restart_in_ms": match s.phase {
                        Phase::Backoff { until, .. } => Some(until.duration_since(now).unwrap_or_default().as_millis() as u64),
                        _ => None,
                    },
                });
                changes.push((name.to_string(), d.state.as_str(), d.reason, detail));
            }
        }
        for (name, state, reason, detail) in changes {
            self.record(&name, state, &reason, detail);
        }
        self.publish();
    }

    fn publish(&self) {
        let services = self
            .services
            .values()
            .map(|s| ServiceView {
                spec: s.spec.clone(),
                evidence: s.evidence(),
                since: s.since,
                runs: s.runs,
                logs: s.logs.clone(),
            })
            .collect();
        self.board.send_replace(Arc::new(Board { services }));
    }
}
