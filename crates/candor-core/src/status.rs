//! `derive`: the state and one-sentence reason of a service, computed from evidence and `now`.
//!
//! Nothing stores a state; the daemon keeps only facts (the live run the keeper reported, a
//! scheduled restart, a stop in progress, the last exit) and calls [`derive`] whenever it needs
//! a state. Facts carry the run they belong to, so a new run never inherits an old run's truth.

use std::time::{Duration, SystemTime};

use candor_spec::{format_duration, ServiceSpec};

use crate::health::Health;
use crate::stop::{self, StopTimeline};
use crate::ExitStatus;

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
}

impl ServiceState {
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
        }
    }
}

/// A live process the keeper spawned and has not yet reported gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// Counts spawns of this service within this daemon; evidence is tagged with it.
    pub id: u64,
    pub pid: u32,
    pub started_at: SystemTime,
    /// When readiness was seen, and how.
    pub ready: Option<(SystemTime, &'static str)>,
    /// This run replaced one an earlier supervisor left running: until it is ready, nothing
    /// about it is known yet.
    pub after_supervisor_restart: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopCause {
    Requested,
    Restart,
    Shutdown,
    ConfigChanged,
    Removed,
    /// Unhealthy with `on_unhealthy = "restart"` (or the watchdog fired): restart with backoff.
    Unhealthy(String),
    /// Will not be restarted: the reason becomes the `failed` reason (e.g. never got ready).
    GiveUp(String),
}

impl StopCause {
    fn phrase(&self) -> String {
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

/// What the daemon knows of a service's process right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No process, nothing scheduled.
    Idle,
    /// Wanted, but these `after` targets (name, their state) are not running yet.
    WaitingFor(Vec<(String, ServiceState)>),
    Running(Run),
    /// We asked it to stop; `main_exit` is set once the main process is gone but others of its
    /// group are still being stopped.
    Stopping {
        run: Run,
        cause: StopCause,
        timeline: StopTimeline,
        main_exit: Option<ExitStatus>,
    },
    /// The main process exited on its own; the rest of its group/cgroup is being stopped.
    Leftovers {
        run: Run,
        main_exit: ExitStatus,
    },
    /// Exited; the next start is scheduled. `why`: the run was stopped for this (unhealthy).
    Backoff {
        until: SystemTime,
        streak: u32,
        why: Option<String>,
    },
    /// Down and not coming back by itself.
    Failed {
        reason: String,
    },
    /// A one-shot that finished successfully.
    Completed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastExit {
    pub status: ExitStatus,
    pub at: SystemTime,
    pub uptime: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    pub wanted: bool,
    pub phase: Phase,
    pub last_exit: Option<LastExit>,
    pub restarts: u32,
    /// Health of a run; used only if it is the live run's.
    pub health: Option<Health>,
}

impl Evidence {
    /// The health evidence, if it belongs to the live run.
    pub fn health_of(&self, run: &Run) -> Option<&Health> {
        self.health.as_ref().filter(|h| h.run_id == run.id)
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

/// A live run: starting until ready; then unhealthy if any evidence of this run says so.
fn running(spec: &ServiceSpec, run: &Run, health: Option<&Health>, now: SystemTime) -> Derived {
    use ServiceState::*;
    let status = health
        .and_then(|h| h.notify_status.as_deref())
        .map(|s| format!("; status: {s}"))
        .unwrap_or_default();
    let Some((ready_at, via)) = run.ready else {
        let last_probe = health
            .and_then(|h| h.probe.last.as_ref())
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
                "{prefix}spawned as pid {}, waiting for readiness (ready = \"{}\"){last_probe}{status}",
                run.pid,
                spec.ready.as_str()
            ),
        );
    };
    // Declared sockets count only from checks taken once ready: before that they may not
    // exist yet, and a check from then says nothing about now.
    let fresh: Vec<_> = health
        .map(|h| h.sockets.iter().filter(|c| c.at >= ready_at).collect())
        .unwrap_or_default();
    if let Some(h) = health {
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
    }
    if fresh.len() < spec.sockets.len() {
        return d(
            Starting,
            format!(
                "ready via {via} as pid {}; checking its declared sockets{status}",
                run.pid
            ),
        );
    }
    if let Some(h) = health {
        let verdict = h
            .budget
            .as_ref()
            .filter(|b| b.is_fresh(now))
            .map(|b| crate::budget::verdict(&spec.limits, b));
        match verdict.unwrap_or(crate::budget::Verdict::Ok) {
            crate::budget::Verdict::Ok => {}
            crate::budget::Verdict::Warn(why) | crate::budget::Verdict::Restart(why) => {
                return d(Degraded, why)
            }
        }
    }
    d(
        Running,
        format!("running as pid {}, ready via {via}{status}", run.pid),
    )
}

/// The one place a state is decided.
pub fn derive(spec: &ServiceSpec, ev: &Evidence, now: SystemTime) -> Derived {
    use ServiceState::*;
    let exit_words = |e: &LastExit| {
        format!(
            "{} after {}",
            e.status.describe(),
            format_duration(e.uptime)
        )
    };
    match &ev.phase {
        Phase::Idle if ev.wanted => d(Starting, "about to start".into()),
        Phase::Idle => match &ev.last_exit {
            Some(_) => d(
                Stopped,
                format!("stopped by request; `candor start {}` starts it", spec.name),
            ),
            None => d(
                Stopped,
                format!("not started; `candor start {}` starts it", spec.name),
            ),
        },
        Phase::WaitingFor(deps) => {
            let list: Vec<String> = deps
                .iter()
                .map(|(n, s)| format!("{n} ({})", s.as_str()))
                .collect();
            d(
                Starting,
                format!(
                    "waiting for {} to be running before starting",
                    list.join(", ")
                ),
            )
        }
        Phase::Running(run) => running(spec, run, ev.health_of(run), now),
        Phase::Stopping {
            cause,
            timeline,
            main_exit,
            ..
        } => {
            let sig = timeline.signal.name();
            let reason = if stop::kill_due(timeline, now) {
                format!(
                    "{}: {sig} was ignored for {}, SIGKILL sent to the whole group; waiting for it to exit",
                    cause.phrase(),
                    format_duration(timeline.kill_at.duration_since(timeline.signal_at).unwrap_or_default())
                )
            } else {
                let left = format_duration(stop::until_kill(timeline, now));
                match main_exit {
                    Some(st) => format!(
                        "{}: main process {}; {sig} sent to the rest of its group, SIGKILL in {left}",
                        cause.phrase(),
                        st.describe()
                    ),
                    None => format!("{}: {sig} sent to the whole group, SIGKILL in {left}", cause.phrase()),
                }
            };
            d(Stopping, reason)
        }
        Phase::Leftovers { main_exit, .. } => d(
            Stopping,
            format!(
                "main process {}; stopping the processes it left in its group",
                main_exit.describe()
            ),
        ),
        Phase::Backoff { until, streak, why } => {
            let wait = format_duration(until.duration_since(now).unwrap_or_default());
            let what = match why {
                Some(why) => format!("stopped because {why}"),
                None => ev
                    .last_exit
                    .as_ref()
                    .map(exit_words)
                    .unwrap_or_else(|| "exited".into()),
            };
            if *streak == 0 {
                d(Backoff, format!("{what}; restarting now"))
            } else {
                d(
                    Backoff,
                    format!("{what}; restarting in {wait} (quick exit {streak} in a row)"),
                )
            }
        }
        Phase::Failed { reason } => d(Failed, reason.clone()),
        Phase::Completed => {
            let what = ev
                .last_exit
                .as_ref()
                .map(exit_words)
                .unwrap_or_else(|| "exited with code 0".into());
            d(Exited, format!("finished successfully ({what})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_spec::{StopSignal, StopSpec};
    use std::time::UNIX_EPOCH;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }
    fn run(ready: bool) -> Run {
        Run {
            id: 1,
            pid: 4242,
            started_at: t(0),
            ready: ready.then_some((t(0), "started")),
            after_supervisor_restart: false,
        }
    }
    fn ev(wanted: bool, phase: Phase) -> Evidence {
        Evidence {
            wanted,
            phase,
            last_exit: Some(LastExit {
                status: ExitStatus::Code(1),
                at: t(5),
                uptime: Duration::from_millis(200),
            }),
            restarts: 2,
            health: None,
        }
    }

    #[test]
    fn every_state_and_reason() {
        use ServiceState::*;
        let spec = ServiceSpec::with_command("api", &["/bin/api"]);
        let stop_spec = StopSpec {
            signal: StopSignal::Term,
            timeout: Duration::from_secs(10),
        };
        let tl = stop::timeline(&stop_spec, t(10));
        let cases: Vec<(Evidence, SystemTime, ServiceState, &str)> = vec![
            (ev(false, Phase::Idle), t(20), Stopped, "stopped by request; `candor start api` starts it"),
            (ev(true, Phase::Idle), t(20), Starting, "about to start"),
            (
                ev(true, Phase::WaitingFor(vec![("db".into(), Backoff)])),
                t(20),
                Starting,
                "waiting for db (backoff) to be running before starting",
            ),
            (ev(true, Phase::Running(run(true))), t(20), Running, "running as pid 4242, ready via started"),
            (
                ev(true, Phase::Running(run(false))),
                t(20),
                Starting,
                "spawned as pid 4242, waiting for readiness (ready = \"started\")",
            ),
            (
                ev(false, Phase::Stopping { run: run(true), cause: StopCause::Requested, timeline: tl, main_exit: None }),
                t(12),
                Stopping,
                "stop requested: SIGTERM sent to the whole group, SIGKILL in 8s",
            ),
            (
                ev(false, Phase::Stopping { run: run(true), cause: StopCause::Shutdown, timeline: tl, main_exit: None }),
                t(21),
                Stopping,
                "supervisor shutting down: SIGTERM was ignored for 10s, SIGKILL sent to the whole group; waiting for it to exit",
            ),
            (
                ev(true, Phase::Leftovers { run: run(true), main_exit: ExitStatus::Code(0) }),
                t(20),
                Stopping,
                "main process exited with code 0; stopping the processes it left in its group",
            ),
            (
                ev(true, Phase::Backoff { until: t(24), streak: 3, why: None }),
                t(20),
                Backoff,
                "exited with code 1 after 200ms; restarting in 4s (quick exit 3 in a row)",
            ),
            (
                ev(true, Phase::Failed { reason: "command /x not found".into() }),
                t(20),
                Failed,
                "command /x not found",
            ),
            (ev(false, Phase::Completed), t(20), Exited, "finished successfully (exited with code 1 after 200ms)"),
        ];
        for (evidence, now, state, reason) in cases {
            let got = derive(&spec, &evidence, now);
            assert_eq!(got.state, state, "{evidence:?}");
            assert_eq!(got.reason, reason, "{evidence:?}");
        }
    }

    #[test]
    fn never_running_before_ready() {
        let spec = ServiceSpec::with_command("api", &["/bin/api"]);
        let got = derive(&spec, &ev(true, Phase::Running(run(false))), t(100));
        assert_ne!(got.state, ServiceState::Running);
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;
    use crate::health::{Health, ProbeOutcome, SocketCheck};
    use candor_spec::{ProbeCheck, ProbeSpec};
    use proptest::prelude::*;
    use std::path::PathBuf;
    use std::time::UNIX_EPOCH;

    fn spec() -> ServiceSpec {
        let mut s = ServiceSpec::with_command("api", &["/bin/api"]);
        s.probe = Some(ProbeSpec::with_check(ProbeCheck::Tcp {
            host: "127.0.0.1".into(),
            port: 1,
        }));
        s
    }
    fn run(id: u64, ready: bool) -> Run {
        Run {
            id,
            pid: 7,
            started_at: UNIX_EPOCH,
            ready: ready.then_some((UNIX_EPOCH, "notify")),
            after_supervisor_restart: false,
        }
    }
    fn outcome(ok: bool, detail: &str) -> ProbeOutcome {
        ProbeOutcome {
            ok,
            detail: detail.into(),
            latency: Duration::from_millis(2),
            at: UNIX_EPOCH,
        }
    }
    fn socket(exists: bool, accepts: bool) -> SocketCheck {
        SocketCheck {
            path: PathBuf::from("/run/api/rpc.sock"),
            exists,
            accepts,
            at: UNIX_EPOCH,
        }
    }
    fn with(run: Run, health: Health) -> Evidence {
        Evidence {
            wanted: true,
            phase: Phase::Running(run),
            last_exit: None,
            restarts: 0,
            health: Some(health),
        }
    }

    #[test]
    fn every_unhealthy_reason() {
        use ServiceState::*;
        let mut probe_failed = Health::for_run(1);
        for _ in 0..3 {
            probe_failed.probe.record(outcome(false, "HTTP 503"), 3, 1);
        }
        let cases: Vec<(Health, ServiceState, &str)> = vec![
            (
                Health::for_run(1),
                Running,
                "running as pid 7, ready via notify",
            ),
            (
                Health {
                    notify_status: Some("serving 3 req/s".into()),
                    ..Health::for_run(1)
                },
                Running,
                "running as pid 7, ready via notify; status: serving 3 req/s",
            ),
            (
                Health {
                    sockets: vec![socket(false, false)],
                    ..Health::for_run(1)
                },
                Unhealthy,
                "declared socket /run/api/rpc.sock missing on disk",
            ),
            (
                Health {
                    sockets: vec![socket(true, false)],
                    ..Health::for_run(1)
                },
                Unhealthy,
                "declared socket /run/api/rpc.sock refuses connections",
            ),
            (
                probe_failed,
                Unhealthy,
                "tcp probe failed 3 times in a row: HTTP 503",
            ),
            (
                Health {
                    watchdog_missed: Some("watchdog timeout: no WATCHDOG=1 for 2s".into()),
                    ..Health::for_run(1)
                },
                Unhealthy,
                "watchdog timeout: no WATCHDOG=1 for 2s",
            ),
            // Evidence taken for another run is never used.
            (
                Health {
                    sockets: vec![socket(false, false)],
                    ..Health::for_run(9)
                },
                Running,
                "running as pid 7, ready via notify",
            ),
        ];
        for (health, state, reason) in cases {
            let got = derive(&spec(), &with(run(1, true), health.clone()), UNIX_EPOCH);
            assert_eq!(
                (got.state, got.reason.as_str()),
                (state, reason),
                "{health:?}"
            );
        }
    }

    #[test]
    fn a_stale_budget_sample_is_not_evidence_about_now() {
        use crate::budget::{Sample, Summary};
        let sample = Sample {
            at: UNIX_EPOCH,
            fds: 900,
            fd_limit: 1000,
            rss: 0,
        };
        let summary = Summary {
            latest: sample,
            per_hour: None,
            eta: None,
            valid_for: Duration::from_secs(15),
        };
        let h = Health {
            budget: Some(summary),
            ..Health::for_run(1)
        };
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(
            derive(&spec(), &with(run(1, true), h.clone()), at(10)).state,
            ServiceState::Degraded
        );
        assert_eq!(
            derive(&spec(), &with(run(1, true), h), at(60)).state,
            ServiceState::Running
        );
    }

    #[test]
    fn a_run_that_replaced_an_earlier_supervisors_says_so_until_ready() {
        let mut r = run(1, false);
        r.after_supervisor_restart = true;
        let got = derive(&spec(), &with(r.clone(), Health::for_run(1)), UNIX_EPOCH);
        assert_eq!(got.state, ServiceState::Starting);
        assert_eq!(
            got.reason,
            "re-checking after supervisor restart: spawned as pid 7, waiting for readiness (ready = \"started\")"
        );
        r.ready = Some((UNIX_EPOCH, "probe"));
        assert_eq!(
            derive(&spec(), &with(r, Health::for_run(1)), UNIX_EPOCH).state,
            ServiceState::Running
        );
    }

    #[test]
    fn sockets_count_only_from_checks_after_ready() {
        let mut s = spec();
        s.sockets = vec![PathBuf::from("/run/api/rpc.sock")];
        let mut r = run(1, false);
        r.ready = Some((UNIX_EPOCH + Duration::from_secs(10), "notify"));
        let at = |secs: u64, exists: bool| SocketCheck {
            at: UNIX_EPOCH + Duration::from_secs(secs),
            ..socket(exists, exists)
        };
        let cases = [
            (vec![], ServiceState::Starting),
            // Missing before ready: not evidence about now.
            (vec![at(5, false)], ServiceState::Starting),
            (vec![at(5, true)], ServiceState::Starting),
            (vec![at(11, true)], ServiceState::Running),
            (vec![at(11, false)], ServiceState::Unhealthy),
        ];
        for (checks, state) in cases {
            let h = Health {
                sockets: checks.clone(),
                ..Health::for_run(1)
            };
            let got = derive(&s, &with(r.clone(), h), UNIX_EPOCH);
            assert_eq!(got.state, state, "{checks:?}: {}", got.reason);
        }
        let got = derive(&s, &with(r.clone(), Health::for_run(1)), UNIX_EPOCH);
        assert_eq!(
            got.reason,
            "ready via notify as pid 7; checking its declared sockets"
        );
    }

    #[test]
    fn waiting_for_readiness_shows_the_last_failed_probe() {
        let mut h = Health::for_run(1);
        h.probe.record(outcome(false, "connection refused"), 3, 1);
        let got = derive(&spec(), &with(run(1, false), h), UNIX_EPOCH);
        assert_eq!(got.state, ServiceState::Starting);
        assert!(
            got.reason.ends_with("(last probe: connection refused)"),
            "{}",
            got.reason
        );
    }

    fn arb_health(run_id: u64) -> impl Strategy<Value = Health> {
        (
            proptest::collection::vec((any::<bool>(), any::<bool>()), 0..4),
            proptest::collection::vec(any::<bool>(), 0..8),
            any::<bool>(),
            prop_oneof![Just(run_id), 0u64..4],
        )
            .prop_map(|(sockets, probes, watchdog, id)| {
                let mut h = Health::for_run(id);
                h.sockets = sockets
                    .into_iter()
                    .map(|(e, a)| socket(e, e && a))
                    .collect();
                for ok in probes {
                    h.probe.record(outcome(ok, "x"), 2, 1);
                }
                if watchdog {
                    h.watchdog_missed = Some("watchdog timeout".into());
                }
                h
            })
    }

    proptest! {
        #[test]
        fn never_running_while_a_declared_socket_is_missing(h in arb_health(1), ready in any::<bool>()) {
            let got = derive(&spec(), &with(run(1, ready), h.clone()), UNIX_EPOCH);
            if h.run_id == 1 && h.sockets.iter().any(|s| !s.exists) {
                prop_assert_ne!(got.state, ServiceState::Running);
            }
        }

        #[test]
        fn never_running_before_ready(h in arb_health(1)) {
            let got = derive(&spec(), &with(run(1, false), h), UNIX_EPOCH);
            prop_assert_eq!(got.state, ServiceState::Starting);
        }

        #[test]
        fn running_only_when_all_evidence_of_this_run_is_good(h in arb_health(1)) {
            let got = derive(&spec(), &with(run(1, true), h.clone()), UNIX_EPOCH);
            let bad = h.run_id == 1
                && (h.watchdog_missed.is_some() || h.probe.unhealthy || h.sockets.iter().any(|s| s.problem().is_some()));
            prop_assert_eq!(got.state == ServiceState::Running, !bad);
        }
    }
}
