//! `derive`: a service's state and one-sentence reason, computed from its facts, its `after`
//! targets' facts and `now` on every read. The only place a state is decided.

use std::collections::BTreeMap;
use std::sync::Arc;

use candor_core::health::Health;
use candor_core::restart::{self, AfterExit};
use candor_core::{budget, Mono};
use candor_spec::{format_duration, ServiceName, ServiceSpec};

use crate::digest::Drift;
use crate::facts::Held;
use crate::facts::{Delivery, LastExit, Run, Service, Spawn, StopCause, StopFact};

/// Every service's facts, by name (a board shares them with the brain).
pub type Services = BTreeMap<ServiceName, Arc<Service>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceState {
    Stopped,
    Starting,
    Running,
    Degraded,
    Unhealthy,
    Stopping,
    Backoff,
    Failed,
    Exited,
    /// A oneshot whose last run exited 0.
    Done,
    /// A start its `condition` said no to.
    Skipped,
}

impl ServiceState {
    /// Every state, in the order the status model lists them.
    pub const ALL: [ServiceState; 11] = [
        ServiceState::Stopped,
        ServiceState::Starting,
        ServiceState::Running,
        ServiceState::Degraded,
        ServiceState::Unhealthy,
        ServiceState::Stopping,
        ServiceState::Backoff,
        ServiceState::Failed,
        ServiceState::Exited,
        ServiceState::Done,
        ServiceState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Stopped => "stopped",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Degraded => "degraded",
            ServiceState::Unhealthy => "unhealthy",
            ServiceState::Stopping => "stopping",
            ServiceState::Backoff => "backoff",
            ServiceState::Failed => "failed",
            ServiceState::Exited => "exited",
            ServiceState::Done => "done",
            ServiceState::Skipped => "skipped",
        }
    }
    /// What an `after` link waits for (a oneshot's dependents wait for `done` or `skipped`
    /// only: see [`satisfies`]).
    pub fn satisfies_dependents(self) -> bool {
        matches!(
            self,
            ServiceState::Running
                | ServiceState::Degraded
                | ServiceState::Exited
                | ServiceState::Done
                | ServiceState::Skipped
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    pub state: ServiceState,
    pub reason: String,
}

fn d(state: ServiceState, reason: String) -> Derived {
    Derived { state, reason }
}

/// Whether `dep` in `state` lets its dependents start: a oneshot only once it is done (or its
/// condition skipped it), not while it runs.
fn satisfies(dep: &Service, state: ServiceState) -> bool {
    match dep.spec.kind {
        candor_spec::ServiceKind::Oneshot => {
            matches!(state, ServiceState::Done | ServiceState::Skipped)
        }
        candor_spec::ServiceKind::Simple => state.satisfies_dependents(),
    }
}

fn exit_words(e: &LastExit, spec: &ServiceSpec) -> String {
    format!("{} after {}", e.describe(spec), format_duration(e.uptime))
}

/// The `after` targets of `svc` that are not running yet, with their states.
pub fn blocking_deps(services: &Services, svc: &Service, now: Mono) -> Vec<(String, ServiceState)> {
    svc.spec
        .after
        .iter()
        .filter_map(|dep| {
            let Some(ds) = services.get(dep) else {
                // A replicated service: waited for until every instance it runs is.
                return services
                    .range(dep.instance_range())
                    .filter(|(_, s)| s.wanted && !s.removed)
                    .map(|(n, s)| (n, s, derive(services, s, now).state))
                    .find(|(_, s, state)| !satisfies(s, *state))
                    .map(|(n, _, state)| (n.to_string(), state));
            };
            let state = derive(services, ds, now).state;
            (!satisfies(ds, state)).then(|| (dep.to_string(), state))
        })
        .collect()
}

/// The one place a state is decided.
pub fn derive(services: &Services, svc: &Service, now: Mono) -> Derived {
    let d = decide(services, svc, now);
    if svc.job.is_some() {
        return crate::jobs::with_next(svc, d, now);
    }
    d
}

fn decide(services: &Services, svc: &Service, now: Mono) -> Derived {
    use ServiceState::*;
    let spec = &svc.spec;
    if let Some(run) = svc.live() {
        return live(svc, run, now);
    }
    if let Some(start) = svc.start {
        if start.due > now {
            return backoff(svc, start.due, now);
        }
        let deps = blocking_deps(services, svc, now);
        if deps.is_empty() {
            if let Some(argv) = (svc.job.as_deref())
                .filter(|j| matches!(j.condition, Some(crate::jobs::Check::Running(_))))
                .and(spec.condition.as_ref())
            {
                return d(
                    Starting,
                    format!("checking its condition: {}", argv.join(" ")),
                );
            }
            return d(Starting, "about to start".into());
        }
        let list: Vec<String> = deps
            .iter()
            .map(|(n, s)| format!("{n} ({})", s.as_str()))
            .collect();
        let oneshot = |n: &str| {
            ServiceName::new(n)
                .ok()
                .and_then(|k| services.get(&k))
                .is_some_and(|s| s.spec.kind == candor_spec::ServiceKind::Oneshot)
        };
        let what = if deps.iter().any(|(n, _)| oneshot(n)) {
            "to be running or done"
        } else {
            "to be running"
        };
        return d(
            Starting,
            format!("waiting for {} {what} before starting", list.join(", ")),
        );
    }
    if let Some(job) = svc.job.as_deref() {
        if let Some(d) = crate::jobs::derive_down(svc, job, now) {
            return d;
        }
    }
    let Some(run) = svc.run.as_ref().filter(|_| svc.wanted) else {
        return match (&svc.run, svc.wanted) {
            (None, true) => d(Starting, "about to start".into()),
            (None, false) => d(
                Stopped,
                format!("not started; `candor start {}` starts it", spec.name),
            ),
            (Some(run), _) => d(Stopped, stopped_by_request(spec, run.stop.as_ref())),
        };
    };
    // Wanted, down, nothing scheduled: what ended the last run says why.
    match (&run.spawn, &run.stop) {
        (Spawn::Failed { error }, _) => d(Failed, error.clone()),
        (Spawn::Refused { error }, _) => d(
            Failed,
            format!(
                "could not be handed to the keeper {} times in a row ({error}); `candor start {}` tries again",
                svc.refusals, spec.name
            ),
        ),
        (_, Some(StopFact { cause: StopCause::GiveUp(reason), .. })) => d(Failed, reason.clone()),
        (_, None) => match run.main_exit {
            Some(exit) => match restart::after_exit(
                spec,
                exit.status,
                || exit.describe(spec),
                exit.uptime,
                svc.streak,
                svc.failures(),
            ) {
                AfterExit::Completed if spec.kind == candor_spec::ServiceKind::Oneshot => d(
                    Done,
                    format!(
                        "completed in {} with exit 0",
                        format_duration(exit.uptime)
                    ),
                ),
                AfterExit::Completed => d(Exited, format!("finished successfully ({})", exit_words(&exit, spec))),
                AfterExit::GiveUp { reason } => d(Failed, reason),
                AfterExit::Restart { .. } => d(Starting, "about to start".into()),
            },
            None => d(Starting, "about to start".into()),
        },
        (_, Some(stop)) => d(Stopped, stopped_by_request(spec, Some(stop))),
    }
}

/// A stopped run's reason, saying how the stop ended when it took SIGKILL.
fn stopped_by_request(spec: &ServiceSpec, stop: Option<&StopFact>) -> String {
    match stop {
        Some(s) if s.killed => format!(
            "stopped by request: it did not stop within {} of {}, so the whole group was killed with SIGKILL; `candor start {}` starts it",
            format_duration(spec.stop.timeout),
            s.signal.name(),
            spec.name
        ),
        _ => format!("stopped by request; `candor start {}` starts it", spec.name),
    }
}

/// Down, with the next start at `due`.
fn backoff(svc: &Service, due: Mono, now: Mono) -> Derived {
    let wait = format_duration(now.until(due));
    let last = svc.run.as_ref();
    if let Some(Spawn::Refused { error }) = last.map(|r| &r.spawn) {
        return d(
            ServiceState::Backoff,
            format!(
                "could not be handed to the keeper ({error}); trying again in {wait} (attempt {} of {})",
                svc.refusals + 1,
                crate::facts::MAX_SPAWN_REFUSALS
            ),
        );
    }
    let what = what_ended(svc);
    d(
        ServiceState::Backoff,
        format!(
            "{what}; restarting in {wait} (quick exit {} in a row)",
            svc.streak
        ),
    )
}

/// How the last run ended, in words: "exited with code 1 after 2s", "stopped because ...".
pub(crate) fn what_ended(svc: &Service) -> String {
    match svc
        .run
        .as_ref()
        .and_then(|r| r.stop.as_ref())
        .map(|s| &s.cause)
    {
        Some(StopCause::Unhealthy(why)) => format!("stopped because {why}"),
        _ => svc
            .last_exit
            .as_ref()
            .map(|e| exit_words(e, &svc.spec))
            .unwrap_or_else(|| "exited".into()),
    }
}

/// A run some process of which may be alive.
fn live(svc: &Service, run: &Run, now: Mono) -> Derived {
    use ServiceState::*;
    let spec = &svc.spec;
    if let Some(stop) = &run.stop {
        return d(Stopping, stopping(spec, stop, run, now));
    }
    if let Some(exit) = &run.main_exit {
        return d(
            Stopping,
            format!(
                "main process {}; stopping the processes it left in its group",
                exit.describe(spec)
            ),
        );
    }
    match run.pid() {
        Some(pid) if spec.kind == candor_spec::ServiceKind::Oneshot => {
            // After a daemon restart the trigger is the history's (the entry of this run).
            let why = (svc.job.as_deref())
                .and_then(|j| {
                    j.current.as_ref().map(|t| t.why.to_string()).or_else(|| {
                        (j.history.iter().rev())
                            .find(|e| e.run == run.id)
                            .map(|e| e.trigger.clone())
                    })
                })
                .unwrap_or_else(|| "start".into());
            let since = run.started_at().map(|s| now.since(s)).unwrap_or_default();
            let limit = run
                .timeout_due
                .map(|t| {
                    format!(
                        ", stopped if still running in {}",
                        format_duration(now.until(t))
                    )
                })
                .unwrap_or_default();
            d(
                Running,
                format!(
                    "running as pid {pid} for {} (a {why} run){limit}",
                    format_duration(since)
                ),
            )
        }
        Some(pid) => {
            let mut derived = running(spec, run, pid, now);
            herd_words(svc, &mut derived, now);
            if let Some(drift) = &run.drift {
                // Said while it lives: an adopted run kept though not started from this config.
                derived.reason = format!("{} ({})", derived.reason, drift.kept_reason());
            }
            derived
        }
        None => d(Starting, "about to start".into()),
    }
}

/// What a shared cause or a held restart adds to a live run's reason.
fn herd_words(svc: &Service, derived: &mut Derived, now: Mono) {
    use ServiceState::*;
    if !matches!(derived.state, Unhealthy | Starting) {
        return;
    }
    if let Some(c) = &svc.shared {
        derived.reason = format!(
            "{} — shared with {} services probing {} for {}",
            derived.reason,
            c.services,
            c.target,
            format_duration(now.since(c.since))
        );
    }
    if derived.state != Unhealthy {
        return;
    }
    match &svc.held {
        None => {}
        Some(Held::Shared) if svc.shared.is_some() => {
            derived.reason.push_str("; restart held until it recovers");
        }
        Some(Held::Shared) => {
            let target = svc.spec.probe.as_ref().and_then(|p| p.target());
            derived.reason = format!(
                "{}; restart held: {} recovered, waiting for this service's next probe",
                derived.reason,
                target.as_deref().unwrap_or("its target")
            );
        }
        Some(Held::Budget {
            restarts,
            window,
            until,
        }) => {
            derived.reason = format!(
                "{}; restart held: {restarts} restarts in the last {} (restart budget), next in {}",
                derived.reason,
                format_duration(*window),
                format_duration(now.until(*until))
            );
        }
    }
}

fn stopping(spec: &ServiceSpec, stop: &StopFact, run: &Run, now: Mono) -> String {
    let main_exit = run.main_exit.as_ref();
    let sig = stop.signal.name();
    let cause = match (&stop.cause, &run.drift) {
        (StopCause::ConfigChanged, Some(Drift::Differs(parts))) => format!(
            "config changed while the supervisor was down: {}",
            parts.join(", ")
        ),
        _ => stop.cause.phrase(),
    };
    let kill_due = now >= stop.kill_at;
    if let Delivery::Refused { error, .. } = &stop.delivery {
        let when = if kill_due {
            "SIGKILL is overdue and goes with the next attempt".to_string()
        } else {
            format!(
                "SIGKILL due in {}",
                format_duration(now.until(stop.kill_at))
            )
        };
        return format!(
            "{cause}: the stop could not be handed to the keeper ({error}); retrying (attempt {}); {when}",
            stop.refusals + 1
        );
    }
    if kill_due {
        return format!(
            "{cause}: {sig} was ignored for {}, SIGKILL sent to the whole group; waiting for it to exit",
            format_duration(stop.kill_at.since(stop.at))
        );
    }
    let left = format_duration(now.until(stop.kill_at));
    match main_exit {
        Some(e) => format!(
            "{cause}: main process {}; {sig} sent to the rest of its group, SIGKILL in {left}",
            e.describe(spec)
        ),
        None => format!("{cause}: {sig} sent to the whole group, SIGKILL in {left}"),
    }
}

/// A live, spawned run: starting until ready; then unhealthy if any evidence of this run says
/// so; degraded near a budget; else running.
fn running(spec: &ServiceSpec, run: &Run, pid: u32, now: Mono) -> Derived {
    use ServiceState::*;
    let h: &Health = &run.health;
    let status = h
        .notify_status
        .as_deref()
        .map(|s| format!("; status: {s}"))
        .unwrap_or_default();
    let Some((ready_at, via)) = run.ready else {
        let last_probe = h
            .probe
            .last
            .as_ref()
            .filter(|o| !o.ok)
            .map(|o| format!(" (last probe: {})", o.detail))
            .unwrap_or_default();
        let prefix = if run.after_supervisor_restart {
            "re-checking after supervisor restart: "
        } else {
            ""
        };
        return d(
            Starting,
            format!(
                "{prefix}spawned as pid {pid}, waiting for readiness (ready = \"{}\"){last_probe}{status}",
                spec.ready.as_str()
            ),
        );
    };
    // Declared sockets count only from checks taken once ready: before that they may not
    // exist yet, and a check from then says nothing about now.
    let fresh: Vec<_> = h.sockets.iter().filter(|c| c.at >= ready_at).collect();
    if let Some(why) = &h.watchdog_missed {
        return d(Unhealthy, why.clone());
    }
    if let Some(problem) = fresh.iter().find_map(|c| c.problem()) {
        return d(Unhealthy, problem);
    }
    if h.probe.unhealthy {
        let kind = spec
            .probe
            .as_ref()
            .map(|p| p.check.kind())
            .unwrap_or("probe");
        let last = h
            .probe
            .last
            .as_ref()
            .map(|o| o.detail.as_str())
            .unwrap_or("no answer");
        return d(
            Unhealthy,
            format!(
                "{kind} probe failed {} times in a row: {last}",
                h.probe.failures_in_a_row
            ),
        );
    }
    if fresh.len() < spec.sockets.len() {
        return d(
            Starting,
            format!("ready via {via} as pid {pid}; checking its declared sockets{status}"),
        );
    }
    match budget_verdict(spec, h, now) {
        budget::Verdict::Ok => {}
        budget::Verdict::Warn(why) | budget::Verdict::Restart(why) => return d(Degraded, why),
    }
    let late = probes_late(spec, h, now)
        .map(|by| {
            format!(
                "; probes running {} late: the daemon is saturated, not the service",
                format_duration(by)
            )
        })
        .unwrap_or_default();
    d(
        Running,
        format!("running as pid {pid}, ready via {via}{status}{late}"),
    )
}

/// How far behind its schedule the run's probing is, when that is more than a second: the
/// next result was due one period plus one timeout after the last probe started. Late probes
/// are the daemon's own backlog; the verdict stands, and the reason says it is not fresh.
pub fn probes_late(spec: &ServiceSpec, h: &Health, now: Mono) -> Option<std::time::Duration> {
    let probe = spec.probe.as_ref()?;
    let last = h.probe.last.as_ref()?;
    let due = last.at + probe.every + probe.timeout;
    let by = now.since(due);
    (by >= std::time::Duration::from_secs(1)).then_some(by)
}

/// The `limits` verdict on this run's newest fd/RSS summary, if it still describes `now`.
pub fn budget_verdict(spec: &ServiceSpec, h: &Health, now: Mono) -> budget::Verdict {
    h.budget
        .as_ref()
        .filter(|b| b.is_fresh(now))
        .map(|b| budget::verdict(&spec.limits, b))
        .unwrap_or(budget::Verdict::Ok)
}
