//! The brain's actor: owns every service's facts, turns keeper events and API requests into
//! keeper commands by way of core's decisions, and publishes the board after each change.
//! It holds no process: only the keeper does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use candor_api::{self as api, unix_ms, Action, ErrorBody};
use candor_core::restart::{self, AfterExit};
use candor_core::status::{LastExit, Phase, Run};
use candor_core::{stop, Evidence, ExitStatus, ServiceState, StopCause};
use candor_keeper::{KeeperCommand, KeeperEvent, KeeperHandle, SpawnRequest};
use candor_spec::{ServiceName, ServiceSpec, Spec};
use candor_store::{EventRow, Store};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::board::{Board, LogCounters, ServiceView};
use crate::logs;

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
}

impl Svc {
    fn new(spec: Arc<ServiceSpec>, now: SystemTime) -> Self {
        Self {
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
            logs: Arc::default(),
        }
    }
    fn evidence(&self) -> Evidence {
        Evidence {
            wanted: self.wanted,
            phase: self.phase.clone(),
            last_exit: self.last_exit,
            restarts: self.restarts,
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
        };
        brain.send(KeeperCommand::Sweep { keep });
        brain
    }

    /// Run until shutdown completes.
    pub async fn run(
        mut self,
        mut keeper_rx: mpsc::Receiver<KeeperEvent>,
        mut req_rx: mpsc::Receiver<Request>,
    ) {
        let mut requests_open = true;
        self.settle();
        loop {
            let now = SystemTime::now();
            let next_restart = self
                .services
                .values()
                .filter_map(|s| match s.phase {
                    Phase::Backoff { until, .. } => {
                        Some(until.duration_since(now).unwrap_or_default())
                    }
                    _ => None,
                })
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
        eprintln!("{} {service} {state}: {reason}", api::timestamp_ms(now));
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
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            workdir: spec.workdir.clone(),
            nofile: spec.limits.nofile,
            stop_signal: spec.stop.signal.number(),
            stop_timeout: spec.stop.timeout,
        };
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
                    if old == *new {
                        s.spec = new;
                        out.unchanged.push(name.to_string());
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
                logs::spawn_readers(&service, stdout, stderr, self.store.clone(), s.logs.clone());
                s.phase = Phase::Running(Run {
                    id: run_id,
                    pid,
                    started_at: at,
                    ready: Some((at, s.spec.ready.as_str())),
                });
                if !s.wanted || self.shutting_down {
                    self.stop_run(&name, StopCause::Requested);
                }
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
            _ => {}
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
    }

    // ---- after every change -----------------------------------------------------------------

    /// Start what can start, stop what shutdown order allows, record state changes, publish.
    fn settle(&mut self) {
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
