//! What the brain asks the shell to do. The shell carries these out in order and decides
//! nothing: keeper commands, timers, evidence gatherers, the event log, the board, replies.

use std::sync::Arc;
use std::time::Duration;

use candor_api as api;
use candor_core::Mono;
use candor_spec::{LogsSpec, ServiceSpec};

use crate::input::RequestId;

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Hand a spawn to the keeper. If it is not taken, feed back `Input::Refused`.
    Spawn {
        service: String,
        run_id: u64,
        spec: Arc<ServiceSpec>,
    },
    /// Signal the run's whole group now, SIGKILL all of it after `timeout` (what is left of
    /// the stop's timeout when this is a retry). Always accompanied by a timer at the kill
    /// deadline.
    Stop {
        service: String,
        run_id: u64,
        signal: i32,
        timeout: Duration,
    },
    /// Take over a run an earlier supervisor started: watch its pid (verified by start
    /// time; reported `Exited` with an unknown status if gone), and SIGKILL its group at
    /// `kill_at` when a stop was under way.
    Adopt {
        service: String,
        run_id: u64,
        pid: u32,
        kill_at: Option<Mono>,
    },
    /// Run a start's `condition` (the spec's argv, as the service's user, env and workdir,
    /// like an exec probe), killed at `timeout`; answer with `Input::ConditionDone`.
    Condition {
        service: String,
        token: u64,
        spec: Arc<ServiceSpec>,
        timeout: Duration,
    },
    /// Kill and remove cgroups of services not in `keep` (left by earlier configs).
    Sweep { keep: Vec<String> },
    /// Send `Input::Tick` at `due` (always in the future of the step's `now`).
    Timer(Mono),
    /// A run started: gather its evidence (probes, sockets, ready fd/file) and read its output.
    Watch {
        service: String,
        run_id: u64,
        spec: Arc<ServiceSpec>,
    },
    /// The run's main process is gone: stop gathering evidence for it.
    Unwatch { service: String, run_id: u64 },
    /// The run just became ready: probe it and check its sockets now, not at the next tick.
    CheckNow { service: String, run_id: u64 },
    /// New log limits for a running service (a reload that changed only those).
    ConfigureLogs { service: String, logs: LogsSpec },
    /// An sd_notify message nobody could be found for.
    CountStranger,
    /// Write to the event log and to followers.
    Record(Note),
    /// Publish the board: every fact changed so far is visible to readers.
    Publish,
    /// Answer a request (always after the `Publish` that shows its effect).
    Reply { id: RequestId, reply: Reply },
    /// Every service is down after a shutdown: stop the keeper and exit.
    Exit,
}

/// An event for the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub service: String,
    pub state: String,
    pub reason: String,
    pub detail: api::EventDetail,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Done,
    Error { status: u16, error: String },
    ResetFailed(api::ResetFailed),
    Reload(api::ReloadOutcome),
}
