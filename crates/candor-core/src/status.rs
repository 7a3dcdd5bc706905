//! `derive`: the state and one-sentence reason of a service, computed from evidence and `now`.
//!
//! Nothing stores a state; the daemon keeps only facts (the live run the keeper reported, a
//! scheduled restart, a stop in progress, the last exit) and calls [`derive`] whenever it needs
//! a state. Facts carry the run they belong to, so a new run never inherits an old run's truth.

use std::time::{Duration, SystemTime};

use candor_spec::{format_duration, ServiceSpec};

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    Requested,
    Restart,
    Shutdown,
    ConfigChanged,
    Removed,
}

impl StopCause {
    fn phrase(self) -> &'static str {
        match self {
            StopCause::Requested => "stop requested",
            StopCause::Restart => "restart requested",
            StopCause::Shutdown => "supervisor shutting down",
            StopCause::ConfigChanged => "config changed",
            StopCause::Removed => "removed from config",
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
    /// Exited; the next start is scheduled.
    Backoff {
        until: SystemTime,
        streak: u32,
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub wanted: bool,
    pub phase: Phase,
    pub last_exit: Option<LastExit>,
    pub restarts: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    pub state: ServiceState,
    pub reason: String,
}

fn d(state: ServiceState, reason: String) -> Derived {
    Derived { state, reason }
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
        Phase::Running(run) => match run.ready {
            Some((_, via)) => d(
                Running,
                format!("running as pid {}, ready via {via}", run.pid),
            ),
            None => d(
                Starting,
                format!(
                    "spawned as pid {}, waiting for readiness (ready = \"{}\")",
                    run.pid,
                    spec.ready.as_str()
                ),
            ),
        },
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
        Phase::Backoff { until, streak } => {
            let wait = format_duration(until.duration_since(now).unwrap_or_default());
            let what = ev
                .last_exit
                .as_ref()
                .map(exit_words)
                .unwrap_or_else(|| "exited".into());
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
                ev(true, Phase::Backoff { until: t(24), streak: 3 }),
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
