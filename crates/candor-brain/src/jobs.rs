//! Oneshots and schedules: what the brain keeps of a job beyond its runs (why the next start
//! was asked, the schedule's next fire, failed attempts, a skipped start, the run history), and
//! how a job looks to `candor jobs`.

use std::collections::VecDeque;
use std::sync::Arc;

use candor_api as api;
use serde::{Deserialize, Serialize};

/// Runs kept per job.
pub const HISTORY: usize = 50;
/// A history entry's reason is cut to this many bytes (the history's bytes are bounded).
pub const REASON_BYTES: usize = 300;

/// Why a start of a job was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    /// "schedule", "catch-up", "candor run", "start", "dependency", "retry", "config", "boot".
    pub why: &'static str,
    /// The schedule's fire it is for (unix ms).
    pub scheduled_ms: Option<i64>,
}

/// What the brain keeps of a oneshot or a scheduled service.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Job {
    /// The schedule's next fire (unix ms).
    pub next: Option<i64>,
    /// Why the pending start (`Service.start`) was asked.
    pub trigger: Option<Trigger>,
    /// Why the live (or last) run ran.
    pub current: Option<Trigger>,
    /// A fire waiting for the live run to end (`overlap = "queue"`; at most one waits).
    pub queued: Option<Trigger>,
    /// Failed runs for the current trigger (against `retries`).
    pub tries: u32,
    /// The condition being run for the pending start: its token.
    pub condition: Option<u64>,
    /// The last start was skipped by the condition: when, and why.
    pub skipped: Option<String>,
    /// Newest last; at most [`HISTORY`].
    pub history: Arc<VecDeque<api::JobRun>>,
    pub counts: api::JobCounts,
    pub last_success_ms: Option<i64>,
    /// The newest schedule fire handled (run, skipped or missed), unix ms: catch-up looks
    /// for fires after it.
    pub last_fire_ms: Option<i64>,
    /// Bumped whenever what is saved changes: the shell writes the job's file then.
    pub version: u64,
}

/// What of a job outlives the daemon and the machine (`<state_dir>/jobs/<name>.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedJob {
    pub history: Vec<api::JobRun>,
    pub counts: api::JobCounts,
    pub last_success_ms: Option<i64>,
    pub last_fire_ms: Option<i64>,
}

impl SavedJob {
    pub fn of(job: &Job) -> Self {
        Self {
            history: job.history.iter().cloned().collect(),
            counts: job.counts.clone(),
            last_success_ms: job.last_success_ms,
            last_fire_ms: job.last_fire_ms,
        }
    }
}

/// The schedule in words: "cron 0 3 * * * (Europe/Berlin)", "every 15m, jitter 1m".
pub fn schedule_words(s: &candor_spec::ScheduleSpec) -> String {
    use candor_spec::{format_duration, When};
    let when = match &s.when {
        When::Cron { expr, timezone } => format!("cron {expr} ({timezone})"),
        When::Every { every, jitter } if jitter.is_zero() => {
            format!("every {}", format_duration(*every))
        }
        When::Every { every, jitter } => format!(
            "every {}, jitter {}",
            format_duration(*every),
            format_duration(*jitter)
        ),
    };
    let mut out = when;
    if s.catch_up != candor_spec::CatchUp::None {
        out.push_str(&format!(", catch_up {}", s.catch_up.as_str()));
    }
    if s.overlap != candor_spec::Overlap::Skip {
        out.push_str(&format!(", overlap {}", s.overlap.as_str()));
    }
    out
}

/// How `svc` looks to `candor jobs`; None when it is not a job (neither a oneshot nor
/// scheduled).
pub fn view(services: &crate::Services, svc: &crate::Service, now: crate::Now) -> Option<api::Job> {
    let job = svc.job.as_deref()?;
    let d = crate::derive(services, svc, now.mono);
    let history: Vec<api::JobRun> = job.history.iter().rev().cloned().collect();
    Some(api::Job {
        name: svc.spec.name.to_string(),
        kind: svc.spec.kind.as_str().to_string(),
        state: d.state.as_str().to_string(),
        reason: d.reason,
        schedule: svc.spec.schedule.as_ref().map(schedule_words),
        next_ms: job.next,
        last: history.first().cloned(),
        last_success_ms: job.last_success_ms,
        counts: job.counts.clone(),
        history,
    })
}

impl crate::step::Cx<'_> {
    /// `candor run NAME`.
    pub(crate) fn run_job(&mut self, id: crate::RequestId, name: &candor_spec::ServiceName) {
        self.reply(
            id,
            crate::Reply::Error {
                status: 501,
                error: format!("`candor run {name}`: jobs are being built (issue 29)"),
            },
        );
    }
}
