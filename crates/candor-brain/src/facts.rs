//! What the brain knows: what happened, per service and per run. No verdict is stored here —
//! no "failed because", no snapshot of another service's state; [`crate::derive`] computes
//! state and reason from these facts and `now` on every read. Every instant is on the boot
//! clock ([`Mono`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use candor_core::budget::Window;
use candor_core::health::Health;
use candor_core::{ExitStatus, Mono};
use candor_spec::{ServiceName, ServiceSpec, StopSignal};
use serde::{Deserialize, Serialize};

use crate::digest::{Drift, RunDigest};
use crate::input::Notify;
use crate::ServiceState;

/// Spawns the keeper refused in a row before the service is left failed.
pub const MAX_SPAWN_REFUSALS: u32 = 5;
/// sd_notify messages held while their sender's spawn is not yet reported.
pub const MAX_EARLY_NOTIFY: usize = 256;

/// Everything the brain knows.
#[derive(Clone, Debug)]
pub struct Facts {
    /// Shared with published boards: a change copies only the service it touches.
    pub services: BTreeMap<ServiceName, Arc<Service>>,
    /// When shutdown was asked for.
    pub shutdown: Option<Mono>,
    /// The shell has been told to exit.
    pub exited: bool,
    /// sd_notify messages whose sender may be a spawn not yet reported (bounded).
    pub early_notify: Vec<Notify>,
    /// fd/RSS sample windows of live runs, kept apart so that copies of a service stay small.
    pub windows: BTreeMap<ServiceName, Window>,
    /// How often samples are taken: a summary describes now for three periods, no longer.
    pub sample_every: Duration,
    /// Services changed since the step began (every `svc_mut`): a step on evidence or a
    /// keeper event looks again only at these and their dependents, not at all of them.
    pub touched: std::collections::BTreeSet<ServiceName>,
    /// For each service, those whose `after` names it; built on first use after services or
    /// specs changed (`specs_changed`).
    dependents_index: Option<BTreeMap<ServiceName, Vec<ServiceName>>>,
    /// The service with `main = true`, if any; found on first use after specs changed.
    main_index: Option<Option<ServiceName>>,
    /// With a main service that ended for good: the code the daemon exits with.
    pub exit_code: Option<i32>,
    /// `[daemon] adopt_changed`: what adoption does with a run started from another config.
    pub adopt_changed: candor_spec::AdoptChanged,
    /// Shared causes, the restart budget's window and spawn pacing (see [`crate::herd`]).
    pub herd: crate::herd::Herd,
    /// `[daemon] restart_budget`.
    pub restart_budget: candor_spec::RestartBudget,
    /// Replicated services, by the group's name; their instances are in `services`.
    pub groups: BTreeMap<ServiceName, crate::groups::Group>,
}

/// One service's facts.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub spec: Arc<ServiceSpec>,
    /// A changed spec that applies once the current run is over.
    pub next_spec: Option<Arc<ServiceSpec>>,
    /// Removed from the config: it goes once its run is over.
    pub removed: bool,
    /// Whether it should run: the config, then the last start/stop request.
    pub wanted: bool,
    /// The next start, when one is scheduled. A start waits for any live run to end and for
    /// its `after` targets to be ready.
    pub start: Option<ScheduledStart>,
    /// The current run, or the last one once it is over.
    pub run: Option<Run>,
    /// Spawns asked of the keeper; run ids count up from 1.
    pub runs: u64,
    /// Automatic restarts that spawned.
    pub restarts: u32,
    /// Quick exits in a row (the backoff position).
    pub streak: u32,
    /// Spawns the keeper did not take, in a row.
    pub refusals: u32,
    /// The most recent exit of a main process.
    pub last_exit: Option<LastExit>,
    /// The derived state last published, and when it became that.
    pub shown: Option<(ServiceState, Mono)>,
    /// The live run's probes fail together with those of many other services probing the
    /// same target: a cause they share (see [`crate::herd`]). Cleared when the cause ends or
    /// this service's probe passes.
    pub shared: Option<SharedCause>,
    /// The live run is unhealthy and would be restarted, but the restart is held back.
    pub held: Option<Held>,
    /// For an instance of a replicated service: the config generation of `spec` (0: a run
    /// adopted from another config, to be replaced)...
    pub generation: u64,
    /// ...and of `next_spec`.
    pub next_generation: u64,
    /// A spare instance, started beyond the group's count for a rollout.
    pub spare: bool,
    /// A oneshot or a scheduled service: its triggers, schedule and history.
    pub job: Option<Box<crate::jobs::Job>>,
}

/// A shared cause as one service sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedCause {
    /// `host:port` or a socket path ([`candor_spec::ProbeSpec::target`]).
    pub target: Arc<str>,
    /// Services whose probes of `target` were failing when this service last looked.
    pub services: u32,
    /// When the cause was named.
    pub since: Mono,
}

/// Why an unhealthy run is not being restarted yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// A shared cause covers it: restarted only if it still fails once the target recovers.
    Shared,
    /// The restart budget is spent: `restarts` restarts for health reasons in the last
    /// `window`; the next is allowed at `until`.
    Budget {
        restarts: u32,
        window: Duration,
        until: Mono,
    },
}

impl Service {
    pub fn new(spec: Arc<ServiceSpec>, now: Mono) -> Self {
        // A scheduled job waits for its schedule; everything else starts now.
        let start = spec.schedule.is_none() || spec.kind == candor_spec::ServiceKind::Simple;
        let job = crate::jobs::needs_job(&spec).then(Box::default);
        Self {
            spec,
            next_spec: None,
            removed: false,
            wanted: true,
            start: start.then_some(ScheduledStart {
                due: now,
                restart: false,
            }),
            run: None,
            runs: 0,
            restarts: 0,
            streak: 0,
            refusals: 0,
            last_exit: None,
            shown: None,
            shared: None,
            held: None,
            generation: 0,
            next_generation: 0,
            spare: false,
            job,
        }
    }
    /// The run, while a process of it may be alive (its spawn is on its way or it has not been
    /// reported gone).
    pub fn live(&self) -> Option<&Run> {
        self.run.as_ref().filter(|r| r.is_live())
    }
    pub fn live_mut(&mut self) -> Option<&mut Run> {
        self.run.as_mut().filter(|r| r.is_live())
    }
    /// Down with nothing to come (no start scheduled) and its state shown: only an input can
    /// change what it is.
    pub fn at_rest(&self) -> bool {
        self.start.is_none() && self.shown.is_some() && self.is_down()
    }
    /// No process and none on its way.
    pub fn is_down(&self) -> bool {
        self.live().is_none()
    }
    /// The live run with this id.
    pub fn run_mut(&mut self, run_id: u64) -> Option<&mut Run> {
        self.live_mut().filter(|r| r.id == run_id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledStart {
    pub due: Mono,
    /// An automatic restart (counted in `restarts`), not a requested or first start.
    pub restart: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    pub status: ExitStatus,
    pub at: Mono,
    /// How long the run lasted.
    pub uptime: Duration,
    /// Processes of the run the kernel's OOM killer killed (the cgroup's memory.events).
    #[serde(default)]
    pub oom_kills: u64,
}

impl LastExit {
    /// How the main process ended, in words; the kernel's OOM kills named as such ("killed by
    /// the kernel: memory limit 512.0 MiB").
    pub fn describe(&self, spec: &candor_spec::ServiceSpec) -> String {
        if self.oom_kills == 0 {
            return self.status.describe();
        }
        let why = match spec.limits.cgroup.memory_max {
            Some(b) => format!("memory limit {} (memory_max)", candor_spec::format_bytes(b)),
            None => "out of memory".to_string(),
        };
        if self.status == ExitStatus::Signal(9) {
            format!("killed by the kernel: {why}")
        } else {
            let n = self.oom_kills;
            let what = if n == 1 { "process" } else { "processes" };
            format!(
                "{}, after the kernel killed {n} of its {what}: {why}",
                self.status.describe()
            )
        }
    }
}

/// How the spawn of a run went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Spawn {
    /// Handed to the keeper, not yet answered.
    Pending,
    Started {
        pid: u32,
        at: Mono,
    },
    /// The keeper tried and could not (missing binary, bad workdir, ...).
    Failed {
        error: String,
    },
    /// The keeper did not take the command (queue full, keeper gone).
    Refused {
        error: String,
    },
}

/// Why the brain stopped a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopCause {
    Requested,
    Restart,
    Shutdown,
    ConfigChanged,
    Removed,
    /// Unhealthy with `on_unhealthy = "restart"`, a watchdog timeout or a budget restart:
    /// started again after backoff.
    Unhealthy(String),
    /// Not started again: the reason is the `failed` reason (e.g. never got ready).
    GiveUp(String),
}

impl StopCause {
    pub fn phrase(&self) -> String {
        match self {
            StopCause::Requested => "stop requested".into(),
            StopCause::Restart => "restart requested".into(),
            StopCause::Shutdown => "supervisor shutting down".into(),
            StopCause::ConfigChanged => "config changed".into(),
            StopCause::Removed => "removed from config".into(),
            StopCause::Unhealthy(why) => format!("restarting because {why}"),
            StopCause::GiveUp(why) => why.clone(),
        }
    }
}

/// Whether the keeper took a stop command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Not taken; sent again at `retry_at` (with what is left of the timeout, so the SIGKILL
    /// still comes at `kill_at`).
    Refused {
        error: String,
        retry_at: Mono,
    },
}

/// A stop the brain asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopFact {
    pub cause: StopCause,
    pub at: Mono,
    pub signal: StopSignal,
    /// When the whole group gets SIGKILL.
    pub kill_at: Mono,
    pub delivery: Delivery,
    /// Times the keeper did not take it.
    pub refusals: u32,
    /// The run outlived `stop.timeout` and its group was killed with SIGKILL (the keeper's
    /// report when the last process went).
    pub killed: bool,
}

/// One run of a service, from the spawn request to the last process gone.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub id: u64,
    /// Spawned as an automatic restart.
    pub is_restart: bool,
    pub spawn: Spawn,
    /// The first run of this daemon found an earlier supervisor's processes in place, or
    /// this run was adopted from an earlier supervisor.
    pub after_supervisor_restart: bool,
    /// Adopted from an earlier supervisor that had seen it ready (and how): fresh evidence of
    /// this daemon makes it ready again (see `adopt`).
    pub was_ready: Option<&'static str>,
    /// When readiness was seen, and how.
    pub ready: Option<(Mono, &'static str)>,
    /// Not ready by then: stopped and failed (`ready_timeout`).
    pub ready_due: Option<Mono>,
    /// No `WATCHDOG=1` by then: unhealthy.
    pub watchdog_due: Option<Mono>,
    /// When the brain next looks at the watchdog (a timer armed at or before `watchdog_due`).
    /// One timer per run, however often the service pings: the pings move the deadline, the
    /// timer, when it fires, is armed again at the deadline then current.
    pub watchdog_wake: Option<Mono>,
    /// Evidence about this run (probes, sockets, watchdog, notify status, budget summary).
    pub health: Health,
    pub stop: Option<StopFact>,
    /// What it was spawned from (see [`crate::digest`]); None for a run adopted from a
    /// version that did not record it.
    pub digest: Option<RunDigest>,
    /// Adopted, alive, and not (known to be) started from the config read by this daemon.
    pub drift: Option<Drift>,
    /// The main process was reaped; others of its group may still be stopping.
    pub main_exit: Option<LastExit>,
    /// When nothing of it was left any more (main reaped, group/cgroup empty), or the
    /// spawn failed or was refused.
    pub ended: Option<Mono>,
    /// The config generation it was spawned from (instances of a replicated service).
    pub generation: u64,
    /// A oneshot still running then is stopped and failed (`timeout`).
    pub timeout_due: Option<Mono>,
}

impl Run {
    pub fn new(id: u64, is_restart: bool) -> Self {
        Self {
            id,
            is_restart,
            spawn: Spawn::Pending,
            after_supervisor_restart: false,
            was_ready: None,
            ready: None,
            ready_due: None,
            watchdog_due: None,
            watchdog_wake: None,
            health: Health::for_run(id),
            stop: None,
            digest: None,
            drift: None,
            main_exit: None,
            ended: None,
            generation: 0,
            timeout_due: None,
        }
    }
    pub fn is_live(&self) -> bool {
        self.ended.is_none() && matches!(self.spawn, Spawn::Pending | Spawn::Started { .. })
    }
    pub fn pid(&self) -> Option<u32> {
        match self.spawn {
            Spawn::Started { pid, .. } => Some(pid),
            _ => None,
        }
    }
    pub fn started_at(&self) -> Option<Mono> {
        match self.spawn {
            Spawn::Started { at, .. } => Some(at),
            _ => None,
        }
    }
    /// Spawned, main process alive, not being stopped: the run evidence is about.
    pub fn is_serving(&self) -> bool {
        self.is_live() && self.pid().is_some() && self.stop.is_none() && self.main_exit.is_none()
    }
}

impl Facts {
    /// Facts for a fresh daemon: every service of `spec` wanted, its first start due now; a
    /// replicated service as its instances.
    pub fn new(spec: &candor_spec::Spec, sample_every: Duration, now: Mono) -> Self {
        Self::scaled(spec, &BTreeMap::new(), sample_every, now)
    }

    /// As `new`, with groups as a daemon before this one left them (`found`: the count it
    /// was told with `candor scale`, the spares of a rollout, and the instance specs those
    /// need beyond the config's).
    pub fn scaled(
        spec: &candor_spec::Spec,
        found: &BTreeMap<ServiceName, crate::groups::Found>,
        sample_every: Duration,
        now: Mono,
    ) -> Self {
        let mut services = BTreeMap::new();
        let mut groups = BTreeMap::new();
        for (n, s) in &spec.services {
            let s = Arc::new(s.clone());
            if !s.is_group() {
                services.insert(n.clone(), Arc::new(Service::new(s, now)));
                continue;
            }
            let mut group = crate::groups::Group::new(s.clone(), s.replicas.unwrap_or(1));
            let mut spares = Vec::new();
            if let Some(f) = found.get(n) {
                group.add_specs(&f.specs);
                group.wanted = f.wanted;
                spares.clone_from(&f.spares);
            }
            let indices =
                (1..=group.wanted).chain(spares.iter().copied().filter(|i| *i > group.wanted));
            for i in indices {
                if let Some(inst) = group.spec_of(i) {
                    let mut svc = Service::new(inst.clone(), now);
                    svc.generation = group.generation;
                    svc.spare = i > group.wanted;
                    services.insert(inst.name.clone(), Arc::new(svc));
                }
            }
            groups.insert(n.clone(), group);
        }
        Self {
            services,
            groups,
            shutdown: None,
            exited: false,
            early_notify: Vec::new(),
            windows: BTreeMap::new(),
            sample_every,
            touched: Default::default(),
            dependents_index: None,
            main_index: None,
            exit_code: None,
            adopt_changed: spec.daemon.adopt_changed,
            herd: Default::default(),
            restart_budget: spec.daemon.restart_budget,
        }
    }
    pub fn get(&self, name: &str) -> Option<&Service> {
        let name = ServiceName::new(name).ok()?;
        self.services.get(&name).map(|s| &**s)
    }
    /// A service to change (copied first if a published board still shares it).
    pub fn svc_mut(&mut self, name: &ServiceName) -> Option<&mut Service> {
        let svc = self.services.get_mut(name)?;
        if !self.touched.contains(name) {
            self.touched.insert(name.clone());
        }
        Some(Arc::make_mut(svc))
    }

    /// The touched services and, transitively, the services that start `after` them.
    /// Services came or went, or a spec was replaced: who depends on whom is looked up anew.
    pub fn specs_changed(&mut self) {
        self.dependents_index = None;
        self.main_index = None;
    }
    /// The service marked `main = true`.
    pub fn main_service(&mut self) -> Option<ServiceName> {
        let services = &self.services;
        self.main_index
            .get_or_insert_with(|| {
                services
                    .iter()
                    .find(|(_, s)| s.spec.main)
                    .map(|(n, _)| n.clone())
            })
            .clone()
    }
    /// The services touched in this step and, transitively, those that start after them.
    pub fn touched_and_dependents(&mut self) -> std::collections::BTreeSet<ServiceName> {
        let services = &self.services;
        let index = self.dependents_index.get_or_insert_with(|| {
            let mut index: BTreeMap<ServiceName, Vec<ServiceName>> = BTreeMap::new();
            for (name, svc) in services {
                for target in &svc.spec.after {
                    index.entry(target.clone()).or_default().push(name.clone());
                }
            }
            index
        });
        let mut out = self.touched.clone();
        let mut todo: Vec<&ServiceName> = self.touched.iter().collect();
        while let Some(name) = todo.pop() {
            // An instance's dependents are its group's.
            let group = name
                .split_instance()
                .and_then(|(g, _)| ServiceName::new(g).ok());
            let of_group = group.and_then(|g| index.get(&g)).into_iter().flatten();
            for dependent in index.get(name).into_iter().flatten().chain(of_group) {
                if out.insert(dependent.clone()) {
                    todo.push(dependent);
                }
            }
        }
        out
    }
    pub fn name_of(&self, name: &str) -> Option<ServiceName> {
        ServiceName::new(name)
            .ok()
            .filter(|n| self.services.contains_key(n))
    }
    pub fn names(&self) -> Vec<ServiceName> {
        self.services.keys().cloned().collect()
    }

    /// What a step that looks at every service needs to look at: all but those at rest (no
    /// run, no start to come, their state shown) that this step has not touched. Nothing but
    /// an input changes a service at rest, and the step that put it at rest recorded its
    /// state: a tick among a thousand idle jobs costs what the few awake ones cost.
    pub fn names_awake(&self) -> Vec<ServiceName> {
        self.services
            .iter()
            .filter(|(n, s)| !s.at_rest() || self.touched.contains(*n))
            .map(|(n, _)| n.clone())
            .collect()
    }
    /// Services whose `after` names `name`.
    pub fn dependents<'a>(&'a self, name: &'a ServiceName) -> impl Iterator<Item = &'a Service> {
        let group = name.split_instance().map(|(g, _)| g);
        self.services
            .values()
            .filter(move |s| {
                s.spec.after.contains(name)
                    || group.is_some_and(|g| s.spec.after.iter().any(|a| a.as_str() == g))
            })
            .map(|s| &**s)
    }
}
