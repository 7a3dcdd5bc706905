//! What the shell feeds the brain: keeper events, evidence, requests, timer expiry, and the
//! keeper's refusal of a command. Plain data (no fds, no channels), so that tests can write
//! any sequence of them.

use std::sync::Arc;

use candor_core::budget::Sample;
use candor_core::health::{ProbeOutcome, SocketCheck};
use candor_core::{ExitStatus, Mono};
use candor_spec::Spec;

/// Answers are matched to requests by this id (the shell keeps the reply channel).
pub type RequestId = u64;

#[derive(Clone, Debug)]
pub enum Input {
    /// The keeper started a run.
    Spawned {
        service: String,
        run_id: u64,
        pid: u32,
        at: Mono,
        /// Processes of an earlier supervisor found in the service's cgroup and killed first.
        cleared_leftovers: usize,
        /// Its cgroup limits are not enforced, and why.
        unenforced: Option<String>,
    },
    SpawnFailed {
        service: String,
        run_id: u64,
        error: String,
    },
    /// The main process was reaped; `group_empty`: nothing of the run is left.
    Exited {
        service: String,
        run_id: u64,
        status: ExitStatus,
        at: Mono,
        group_empty: bool,
        escalated: bool,
        /// Processes of the run the kernel's OOM killer killed.
        oom_kills: u64,
    },
    /// Nothing of the run is left (main reaped, group/cgroup empty).
    Emptied {
        service: String,
        run_id: u64,
        escalated: bool,
    },
    /// Something the keeper wants in the event log.
    KeeperWarning {
        message: String,
    },
    /// The keeper did not take a command (queue full, keeper gone).
    Refused {
        command: Refusable,
        error: String,
    },
    /// Evidence gathered since the last step, oldest first.
    Evidence(Vec<Evidence>),
    Request {
        id: RequestId,
        request: Request,
    },
    /// A timer the brain armed is due (spurious ticks are harmless).
    Tick,
}

/// How a condition ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConditionEnd {
    Exited(ExitStatus),
    /// Killed at its timeout.
    TimedOut,
    CannotStart(String),
}

/// Commands whose refusal the brain handles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusable {
    Spawn { service: String, run_id: u64 },
    Stop { service: String, run_id: u64 },
    Sweep,
}

#[derive(Clone, Debug)]
pub enum Evidence {
    Probe {
        service: String,
        run_id: u64,
        outcome: ProbeOutcome,
    },
    Sockets {
        service: String,
        run_id: u64,
        checks: Vec<SocketCheck>,
    },
    /// Readiness by fd or file.
    Ready {
        service: String,
        run_id: u64,
        via: &'static str,
    },
    Notify(Notify),
    /// One sampling round: (service, run id, sample) per running service.
    Samples(Vec<(String, u64, Sample)>),
    /// A start's `condition` ended (`token` from `Effect::Condition`).
    Condition {
        service: String,
        token: u64,
        end: ConditionEnd,
    },
    /// The ids of a run's first and last log lines, once its output is read to the end.
    LogSpan {
        service: String,
        run_id: u64,
        first: i64,
        last: i64,
    },
}

/// One sd_notify datagram, with what the kernel says about its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    pub pid: u32,
    /// The service whose cgroup (under this daemon's root) the sender is in.
    pub cgroup_service: Option<String>,
    /// The sender's process group.
    pub pgid: Option<u32>,
    /// `KEY=VALUE` lines.
    pub fields: Vec<(String, String)>,
    /// The run (service, run id) the daemon found the sender belongs to: a live run's main
    /// process, or in its process group or cgroup. When set, the brain takes it only if that run
    /// is still the service's live one; when not, it looks for the owner by `cgroup_service`,
    /// `pgid` and `pid` itself.
    pub run: Option<(String, u64)>,
}

#[derive(Clone, Debug)]
pub enum Request {
    Start(String),
    Stop(String),
    Restart(String),
    ResetFailed {
        force: bool,
    },
    /// A config that already validated.
    Reload(Arc<Spec>),
    /// `candor restart NAME --strategy S`: a replicated service with this strategy, once.
    RestartWith(String, candor_spec::Strategy),
    /// `candor scale NAME N`; `specs`: instances beyond those the group has parsed.
    Scale {
        name: String,
        replicas: u32,
        specs: Option<crate::groups::Specs>,
    },
    /// `candor run NAME`: a oneshot's run now (trigger "candor run"), whatever its schedule;
    /// refused (409) while one runs.
    Run(String),
    /// `candor rollout undo|resume NAME`.
    Rollout(String, RolloutAction),
    /// Stop everything in reverse dependency order, then exit.
    Shutdown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutAction {
    /// Back to the generation before the last change.
    Undo,
    /// Go on with a halted rollout.
    Resume,
}
