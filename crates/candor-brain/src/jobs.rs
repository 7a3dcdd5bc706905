//! Oneshots and schedules: what the brain keeps of a job beyond its runs (why the next start
//! was asked, the schedule's next fire, failed attempts, a skipped start, the run history), and
//! how a job looks to `candor jobs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use candor_api as api;
use candor_core::{ExitStatus, Mono};
use candor_spec::{format_duration, Overlap, ServiceKind, ServiceName};
use serde::{Deserialize, Serialize};

use crate::derive::{Derived, ServiceState};
use crate::effect::{Effect, Reply};
use crate::facts::{ScheduledStart, Service, Spawn, StopCause};
use crate::input::{ConditionEnd, RequestId};
use crate::step::Cx;

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
    /// The condition of the pending start: being run, or passed.
    pub condition: Option<Check>,
    /// Conditions run so far (their tokens).
    pub checks: u64,
    /// What the condition said of the last start, when it did not let it run: shown until
    /// the next run.
    pub verdict: Option<Verdict>,
    /// The schedule's next fire as a boot-clock instant, as of when it was computed (for
    /// "next run in 5h").
    pub next_at: Option<crate::Mono>,
    /// The timer armed for the schedule (one per job).
    pub wake: Option<crate::Mono>,
    /// The schedule `next` was computed for (a reload that changes it computes again).
    pub seen: Option<candor_spec::ScheduleSpec>,
    /// Looked at by this daemon already: catch-up is decided once, at the first look.
    pub armed: bool,
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

/// A start's condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Being run (its token).
    Running(u64),
    /// Exited 0: the start goes on.
    Passed,
}

/// The condition's answer when the start did not go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Exit 1-254: skipped; else failed.
    pub skipped: bool,
    pub reason: String,
}

/// What of a job outlives the daemon and the machine (`<state_dir>/jobs/<name>.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedJob {
    pub history: Vec<api::JobRun>,
    pub counts: api::JobCounts,
    pub last_success_ms: Option<i64>,
    pub last_fire_ms: Option<i64>,
    /// The condition's verdict on the last start, when it did not let it run.
    #[serde(default)]
    pub verdict: Option<SavedVerdict>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedVerdict {
    pub skipped: bool,
    pub reason: String,
}

impl SavedJob {
    pub fn of(job: &Job) -> Self {
        Self {
            history: job.history.iter().cloned().collect(),
            counts: job.counts.clone(),
            last_success_ms: job.last_success_ms,
            last_fire_ms: job.last_fire_ms,
            verdict: job.verdict.as_ref().map(|v| SavedVerdict {
                skipped: v.skipped,
                reason: v.reason.clone(),
            }),
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
    let job = svc.job.as_deref().filter(|_| is_job(&svc.spec))?;
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

/// A condition that runs longer than this fails the start.
pub const CONDITION_TIMEOUT: Duration = Duration::from_secs(30);
/// A schedule's timer is armed at most this far ahead, and the wall clock looked at again
/// then: a step of the wall clock moves a fire by at most this much.
pub const SCHEDULE_LOOK: Duration = Duration::from_secs(30);

/// Unix milliseconds of a wall time.
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Whether a service needs job facts: a oneshot, a schedule or a condition.
pub fn needs_job(spec: &candor_spec::ServiceSpec) -> bool {
    spec.kind == ServiceKind::Oneshot || spec.schedule.is_some() || spec.condition.is_some()
}

/// Whether `candor jobs` lists it.
pub fn is_job(spec: &candor_spec::ServiceSpec) -> bool {
    spec.kind == ServiceKind::Oneshot || spec.schedule.is_some()
}

fn cut(mut s: String) -> String {
    if s.len() > REASON_BYTES {
        let mut end = REASON_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// A condition's argv in a message.
fn argv_words(argv: &[String]) -> String {
    let s = argv.join(" ");
    if s.len() > 80 {
        let mut end = 80;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

/// "; next run in 5h12m" for a scheduled service with a next fire.
fn next_words(job: &Job, now: Mono) -> String {
    match job.next_at {
        Some(at) if at > now => format!("; next run in {}", format_duration(now.until(at))),
        Some(_) => "; next run now".into(),
        None => String::new(),
    }
}

/// A job that is down with no start pending, when its job facts say more than its last run:
/// the condition's verdict, or a schedule that has not fired yet.
pub(crate) fn derive_down(svc: &Service, job: &Job, now: Mono) -> Option<Derived> {
    if let Some(v) = job.verdict.as_ref().filter(|_| svc.wanted) {
        let state = if v.skipped {
            ServiceState::Skipped
        } else {
            ServiceState::Failed
        };
        return Some(Derived {
            state,
            reason: v.reason.clone(),
        });
    }
    if let Some(last) = job
        .history
        .back()
        .filter(|_| svc.run.is_none() && svc.wanted)
    {
        // Down since a daemon restart: the history says how the last run went.
        let state = match last.result.as_str() {
            "done" => ServiceState::Done,
            "skipped" => ServiceState::Skipped,
            _ => ServiceState::Failed,
        };
        return Some(Derived {
            state,
            reason: last.reason.clone(),
        });
    }
    if svc.run.is_none() && svc.wanted && svc.spec.schedule.is_some() {
        let reason = match job.next_at {
            Some(at) => format!(
                "waiting for its schedule; not run yet, first run in {}",
                format_duration(now.until(at))
            ),
            None => "waiting for its schedule; not run yet".to_string(),
        };
        return Some(Derived {
            state: ServiceState::Stopped,
            reason,
        });
    }
    None
}

/// What a finished derive of a scheduled job adds: when it runs next.
pub(crate) fn with_next(svc: &Service, mut d: Derived, now: Mono) -> Derived {
    if let Some(job) = svc.job.as_deref() {
        let down = matches!(
            d.state,
            ServiceState::Done
                | ServiceState::Failed
                | ServiceState::Exited
                | ServiceState::Skipped
        );
        if down && svc.spec.schedule.is_some() && svc.wanted {
            d.reason.push_str(&next_words(job, now));
        }
    }
    d
}

impl Service {
    /// Failed runs in a row before the last, against `retries`: a oneshot's for its trigger,
    /// a long-running service's quick exits.
    pub fn failures(&self) -> u32 {
        match (&self.job, self.spec.kind) {
            (Some(job), ServiceKind::Oneshot) => job.tries,
            _ => self.streak,
        }
    }
}

impl Cx<'_> {
    fn wall_ms(&self) -> i64 {
        unix_ms(self.now.wall)
    }

    fn job_mut(&mut self, name: &ServiceName) -> Option<&mut Job> {
        self.facts.svc_mut(name)?.job.as_deref_mut()
    }

    /// Every step that looks at all services: job facts for services that need them, and
    /// each schedule's fires — due ones fired (the wall clock says when: a schedule is wall
    /// time by nature), the next computed, one timer armed per job at most
    /// [`SCHEDULE_LOOK`] ahead; at a job's first look, a missed fire caught up.
    pub(crate) fn schedules(&mut self) {
        let now_ms = self.wall_ms();
        let mono = self.mono();
        let names: Vec<ServiceName> = self
            .facts
            .services
            .iter()
            .filter(|(_, s)| !s.removed && (needs_job(&s.spec) != s.job.is_some()))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            if let Some(svc) = self.facts.svc_mut(&name) {
                svc.job = needs_job(&svc.spec).then(Box::default);
            }
        }
        // Only jobs with something to do: a fire due, a timer that rang, a schedule not
        // looked at yet or changed, a stopped job still showing a next run.
        let scheduled: Vec<ServiceName> = self
            .facts
            .services
            .iter()
            .filter(|(_, s)| !s.removed)
            .filter(|(_, s)| {
                let (Some(schedule), Some(job)) = (&s.spec.schedule, s.job.as_deref()) else {
                    return false;
                };
                if !s.wanted {
                    return job.next.is_some() || job.next_at.is_some();
                }
                job.next.is_none_or(|t| t <= now_ms)
                    || job.wake.is_none_or(|w| w <= mono)
                    || job.seen.as_ref() != Some(schedule)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in scheduled {
            let Some(svc) = self.facts.services.get(&name) else {
                continue;
            };
            let Some(schedule) = svc.spec.schedule.clone() else {
                continue;
            };
            let wanted = svc.wanted;
            let Some(job) = svc.job.as_deref() else {
                continue;
            };
            let (next, armed, last_fire, seen_same, wake) = (
                job.next,
                job.armed,
                job.last_fire_ms,
                job.seen.as_ref() == Some(&schedule),
                job.wake,
            );
            if !wanted {
                if next.is_some() || job.next_at.is_some() {
                    if let Some(job) = self.job_mut(&name) {
                        job.next = None;
                        job.next_at = None;
                    }
                }
                continue;
            }
            let when = &schedule.when;
            let mut fires = Vec::new();
            let next = match next.filter(|_| seen_same) {
                None => {
                    if !armed && schedule.catch_up == candor_spec::CatchUp::Once {
                        let missed = last_fire.and_then(|l| {
                            candor_core::schedule::last_fire_between(when, name.as_str(), l, now_ms)
                        });
                        if let Some(missed) = missed {
                            fires.push(Trigger {
                                why: "catch-up",
                                scheduled_ms: Some(missed),
                            });
                        }
                    }
                    // Never a fire already handled (a wall clock stepped back before a start).
                    let after = now_ms.max(last_fire.unwrap_or(i64::MIN));
                    candor_core::schedule::next_fire(when, name.as_str(), after)
                }
                Some(t) if t <= now_ms => {
                    fires.push(Trigger {
                        why: "schedule",
                        scheduled_ms: Some(t),
                    });
                    // Fires passed over by a step of the wall clock are not made up.
                    candor_core::schedule::next_fire(when, name.as_str(), now_ms.max(t))
                }
                Some(t) => Some(t),
            };
            let next_at = next.map(|t| mono + Duration::from_millis((t - now_ms).max(0) as u64));
            // A fire further than the look-ahead is looked at again at the next point of a
            // grid of SCHEDULE_LOOK on the boot clock: every such job shares that one tick.
            let grid = {
                let step = SCHEDULE_LOOK.as_nanos();
                let at = mono.0.as_nanos() / step * step + step;
                crate::Mono(Duration::from_nanos(at as u64))
            };
            let due =
                next.map(|t| (mono + Duration::from_millis((t - now_ms).max(0) as u64)).min(grid));
            let arm = match (due, wake) {
                (Some(d), Some(w)) => w <= mono || w > d,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if let Some(job) = self.job_mut(&name) {
                job.next = next;
                job.next_at = next_at;
                job.armed = true;
                job.seen = Some(schedule.clone());
                if arm {
                    job.wake = due;
                }
            }
            if let (true, Some(d)) = (arm, due) {
                self.timer(d);
            }
            for trigger in fires {
                self.fire(&name, trigger, schedule.overlap);
            }
        }
    }

    /// A schedule fired: start the job (or restart a long-running service), unless a run is
    /// still going: then `overlap` says what happens.
    fn fire(&mut self, name: &ServiceName, trigger: Trigger, overlap: Overlap) {
        let now = self.mono();
        let Some(svc) = self.facts.svc_mut(name) else {
            return;
        };
        let kind = svc.spec.kind;
        let busy = svc.live().is_some() || svc.start.is_some();
        let live_id = svc.live().map(|r| r.id);
        let Some(job) = svc.job.as_deref_mut() else {
            return;
        };
        job.last_fire_ms = trigger.scheduled_ms.or(job.last_fire_ms);
        job.version += 1;
        let start = ScheduledStart {
            due: now,
            restart: false,
        };
        if kind == ServiceKind::Simple {
            // A scheduled restart: a live run is stopped first (settling sees the start).
            svc.start = Some(start);
            let why = trigger.why;
            return self.note(
                name.as_str(),
                "restart",
                format!("scheduled restart ({why})"),
                api::EventDetail::None {},
            );
        }
        if !busy {
            job.trigger = Some(trigger);
            job.tries = 0;
            svc.start = Some(start);
            return;
        }
        let what = match live_id {
            Some(id) => format!("run {id} is still going"),
            None => "a start is still pending".to_string(),
        };
        let said = match overlap {
            Overlap::Skip => format!(
                "a {} run was skipped: {what} (overlap = \"skip\")",
                trigger.why
            ),
            Overlap::Queue if job.queued.is_none() => {
                job.queued = Some(trigger.clone());
                format!("a {} run waits: {what} (overlap = \"queue\")", trigger.why)
            }
            Overlap::Queue => format!(
                "a {} run was skipped: {what} and another already waits (overlap = \"queue\")",
                trigger.why
            ),
            Overlap::KillPrevious if live_id.is_some() => {
                job.trigger = Some(trigger.clone());
                job.tries = 0;
                svc.start = Some(start);
                format!(
                    "{what}: stopping it for a {} run (overlap = \"kill-previous\")",
                    trigger.why
                )
            }
            Overlap::KillPrevious => format!("a {} run was skipped: {what}", trigger.why),
        };
        self.note(name.as_str(), "schedule", said, api::EventDetail::None {});
    }

    /// `candor run NAME`: a oneshot's run now.
    pub(crate) fn run_job(&mut self, id: RequestId, name: &ServiceName) {
        let now = self.mono();
        let Some(svc) = self.facts.svc_mut(name) else {
            return;
        };
        if svc.spec.kind != ServiceKind::Oneshot {
            let error = format!(
                "{name} is a long-running service; `candor run` runs oneshots (type = \"oneshot\"); `candor restart {name}` restarts it"
            );
            return self.reply(id, Reply::Error { status: 409, error });
        }
        if let Some(run) = svc.live() {
            let error = format!(
                "{name} is already running (run {}); wait for it, or `candor stop {name}`",
                run.id
            );
            return self.reply(id, Reply::Error { status: 409, error });
        }
        if svc.start.is_some() {
            let error = format!(
                "{name} is already about to start (`candor status {name}` says what it waits for)"
            );
            return self.reply(id, Reply::Error { status: 409, error });
        }
        svc.wanted = true;
        svc.streak = 0;
        svc.refusals = 0;
        svc.start = Some(ScheduledStart {
            due: now,
            restart: false,
        });
        if let Some(job) = svc.job.as_deref_mut() {
            job.trigger = Some(Trigger {
                why: "candor run",
                scheduled_ms: None,
            });
            job.tries = 0;
        }
        self.reply(id, Reply::Done);
    }

    /// Before a start spawns: run its condition first, once per start. True when it may
    /// spawn now.
    pub(crate) fn condition_passed(&mut self, name: &ServiceName) -> bool {
        let Some(svc) = self.facts.services.get(name) else {
            return false;
        };
        if svc.spec.condition.is_none() {
            return true;
        }
        let spec = svc.spec.clone();
        let Some(job) = self.job_mut(name) else {
            return true;
        };
        match job.condition {
            Some(Check::Passed) => true,
            Some(Check::Running(_)) => false,
            None => {
                job.checks += 1;
                let token = job.checks;
                job.condition = Some(Check::Running(token));
                self.out.push(Effect::Condition {
                    service: name.to_string(),
                    token,
                    spec,
                    timeout: CONDITION_TIMEOUT,
                });
                false
            }
        }
    }

    /// A condition ended: exit 0 lets the start go on; 1-254 skips it; 255, a signal, a
    /// timeout or no start at all fails it.
    pub(crate) fn on_condition(&mut self, service: &str, token: u64, end: ConditionEnd) {
        let Some(name) = self.facts.name_of(service) else {
            return;
        };
        let Some(svc) = self.facts.svc_mut(&name) else {
            return;
        };
        let argv = argv_words(svc.spec.condition.as_deref().unwrap_or_default());
        let Some(job) = svc.job.as_deref_mut() else {
            return;
        };
        if job.condition != Some(Check::Running(token)) {
            return;
        }
        let verdict = match end {
            ConditionEnd::Exited(ExitStatus::Code(0)) => {
                job.condition = Some(Check::Passed);
                return;
            }
            ConditionEnd::Exited(ExitStatus::Code(c @ 1..=254)) => Verdict {
                skipped: true,
                reason: format!("condition exited {c}: {argv}; the start was skipped"),
            },
            ConditionEnd::Exited(st) => Verdict {
                skipped: false,
                reason: format!(
                    "condition {}: {argv}; 255 or a crash fails the start (1-254 would skip it)",
                    st.describe()
                ),
            },
            ConditionEnd::TimedOut => Verdict {
                skipped: false,
                reason: format!(
                    "condition did not exit within {}: {argv}; it was killed and the start failed",
                    format_duration(CONDITION_TIMEOUT)
                ),
            },
            ConditionEnd::CannotStart(e) => Verdict {
                skipped: false,
                reason: format!("condition could not run: {e}; fix `condition` ({argv})"),
            },
        };
        job.condition = None;
        svc.start = None;
        let trigger = job.trigger.take();
        let kind = svc.spec.kind;
        let entry = api::JobRun {
            run: 0,
            trigger: trigger.as_ref().map_or("start", |t| t.why).to_string(),
            scheduled_ms: trigger.as_ref().and_then(|t| t.scheduled_ms),
            started_ms: unix_ms(self.now.wall),
            ended_ms: Some(unix_ms(self.now.wall)),
            duration_ms: Some(0),
            result: if verdict.skipped { "skipped" } else { "failed" }.into(),
            code: None,
            reason: cut(verdict.reason.clone()),
            log_ids: None,
        };
        let Some(job) = self.job_mut(&name) else {
            return;
        };
        if verdict.skipped {
            job.counts.skipped += 1;
        } else {
            job.counts.failed += 1;
        }
        job.verdict = Some(verdict);
        if kind == ServiceKind::Oneshot {
            push_history(job, entry.clone());
        }
        job.version += 1;
        self.job_note(&name, entry);
        self.queued_start(&name);
    }

    /// A run was asked of the keeper: its trigger and, for a oneshot, a history entry.
    pub(crate) fn job_spawning(&mut self, name: &ServiceName, run_id: u64, restart: bool) {
        let wall = self.wall_ms();
        let Some(svc) = self.facts.svc_mut(name) else {
            return;
        };
        let kind = svc.spec.kind;
        let Some(job) = svc.job.as_deref_mut() else {
            return;
        };
        job.condition = None;
        job.verdict = None;
        let trigger = job.trigger.take().unwrap_or(Trigger {
            why: if restart { "retry" } else { "start" },
            scheduled_ms: None,
        });
        if kind == ServiceKind::Oneshot {
            push_history(
                job,
                api::JobRun {
                    run: run_id,
                    trigger: trigger.why.to_string(),
                    scheduled_ms: trigger.scheduled_ms,
                    started_ms: wall,
                    ended_ms: None,
                    duration_ms: None,
                    result: "running".into(),
                    code: None,
                    reason: "running".into(),
                    log_ids: None,
                },
            );
            job.version += 1;
        }
        job.current = Some(trigger);
    }

    /// A oneshot's run is over: its history entry says how, an event with it goes to the
    /// log (and hooks), and a queued fire starts.
    pub(crate) fn job_ended(&mut self, name: &ServiceName) {
        let wall = self.wall_ms();
        let Some(svc) = self.facts.services.get(name) else {
            return;
        };
        if svc.spec.kind != ServiceKind::Oneshot || svc.job.is_none() {
            return;
        }
        let Some(run) = svc.run.as_ref() else {
            return;
        };
        let spec = &svc.spec;
        let exit = run.main_exit;
        let (done, reason) = match (&run.spawn, run.stop.as_ref().map(|s| &s.cause), exit) {
            (Spawn::Failed { error }, _, _) => (false, error.clone()),
            (Spawn::Refused { error }, _, _) => (
                false,
                format!("could not be handed to the keeper ({error})"),
            ),
            (_, Some(StopCause::GiveUp(why)), _) => (false, why.clone()),
            (_, Some(StopCause::Restart), _)
                if spec.schedule.as_ref().map(|s| s.overlap) == Some(Overlap::KillPrevious) =>
            {
                (
                    false,
                    "stopped for the next run (overlap = \"kill-previous\")".to_string(),
                )
            }
            (_, Some(cause), _) => (false, format!("{} before it completed", cause.phrase())),
            (_, None, Some(e)) if e.status.success() => (
                true,
                format!("completed in {} with exit 0", format_duration(e.uptime)),
            ),
            (_, None, Some(e)) => (
                false,
                format!("{} after {}", e.describe(spec), format_duration(e.uptime)),
            ),
            (_, None, None) => (false, "ended without an exit status".to_string()),
        };
        let run_id = run.id;
        let code = exit.and_then(|e| e.status.code());
        let uptime = exit.map(|e| e.uptime);
        let Some(job) = self.job_mut(name) else {
            return;
        };
        let mut history = (*job.history).clone();
        let entry = match history.iter_mut().rev().find(|e| e.run == run_id) {
            Some(e) if e.result == "running" => e,
            _ => return,
        };
        entry.ended_ms = Some(wall);
        entry.duration_ms = Some(
            uptime
                .map(|u| u.as_millis() as u64)
                .unwrap_or_else(|| (wall - entry.started_ms).max(0) as u64),
        );
        entry.result = if done { "done" } else { "failed" }.into();
        entry.code = code;
        entry.reason = cut(reason);
        let entry = entry.clone();
        job.history = Arc::new(history);
        if done {
            job.counts.done += 1;
            job.last_success_ms = Some(wall);
            job.tries = 0;
        } else {
            job.counts.failed += 1;
        }
        job.version += 1;
        self.job_note(name, entry);
        self.queued_start(name);
    }

    /// The event of a run's end (or a skipped start), with its history entry; it stands for
    /// the change to `done`, `failed` or `skipped` (no second event for that change).
    fn job_note(&mut self, name: &ServiceName, entry: api::JobRun) {
        let now = self.mono();
        let state = match entry.result.as_str() {
            "done" => ServiceState::Done,
            "skipped" => ServiceState::Skipped,
            _ => ServiceState::Failed,
        };
        if let Some(svc) = self.facts.svc_mut(name) {
            svc.shown = Some((state, now));
        }
        self.note(
            name.as_str(),
            state.as_str(),
            entry.reason.clone(),
            api::EventDetail::Job { job: entry },
        );
    }

    /// A fire queued behind the run that just ended (`overlap = "queue"`) starts now.
    fn queued_start(&mut self, name: &ServiceName) {
        let now = self.mono();
        let shutting_down = self.facts.shutdown.is_some();
        let Some(svc) = self.facts.svc_mut(name) else {
            return;
        };
        if shutting_down || !svc.wanted || svc.start.is_some() {
            return;
        }
        let Some(job) = svc.job.as_deref_mut() else {
            return;
        };
        let Some(trigger) = job.queued.take() else {
            return;
        };
        job.trigger = Some(trigger);
        job.tries = 0;
        svc.start = Some(ScheduledStart {
            due: now,
            restart: false,
        });
    }

    /// The ids of a run's log lines, once its output is read to the end.
    pub(crate) fn on_log_span(&mut self, service: &str, run_id: u64, first: i64, last: i64) {
        let Some(name) = self.facts.name_of(service) else {
            return;
        };
        if !self
            .facts
            .services
            .get(&name)
            .and_then(|s| s.job.as_deref())
            .is_some_and(|j| {
                j.history
                    .iter()
                    .any(|e| e.run == run_id && e.log_ids.is_none())
            })
        {
            return;
        }
        let Some(job) = self.job_mut(&name) else {
            return;
        };
        let mut history = (*job.history).clone();
        if let Some(e) = history.iter_mut().rev().find(|e| e.run == run_id) {
            e.log_ids = Some((first, last));
        }
        job.history = Arc::new(history);
        // Not a write of its own (it comes a moment after the run's end, which was one): the
        // job's file takes it with its next change; the board shows it now.
    }
}

fn push_history(job: &mut Job, entry: api::JobRun) {
    let history = Arc::make_mut(&mut job.history);
    history.push_back(entry);
    while history.len() > HISTORY {
        history.pop_front();
    }
}

impl crate::Facts {
    /// What a job's file kept (history, counts, the last fire), read at start before the
    /// first step. An entry still "running" whose run is not the service's live one ended
    /// while no daemon watched it.
    pub fn restore_job(&mut self, name: &ServiceName, saved: SavedJob) {
        let Some(svc) = self.svc_mut(name) else {
            return;
        };
        if !needs_job(&svc.spec) {
            return;
        }
        let live = svc.live().map(|r| r.id);
        let mut history: VecDeque<api::JobRun> = saved.history.into_iter().collect();
        while history.len() > HISTORY {
            history.pop_front();
        }
        for e in history.iter_mut() {
            if e.result == "running" && Some(e.run) != live {
                e.result = "failed".into();
                e.reason =
                    "ended while no supervisor was watching it: its exit status is unknown".into();
            }
        }
        // Run ids go on from the history's (a new daemon counts from the records, which an
        // orderly shutdown clears): "run 14" names one run of the job.
        let newest = history.iter().map(|e| e.run).max().unwrap_or(0);
        svc.runs = svc.runs.max(newest);
        let job = svc.job.get_or_insert_with(Box::default);
        job.history = Arc::new(history);
        job.counts = saved.counts;
        job.last_success_ms = saved.last_success_ms;
        job.last_fire_ms = saved.last_fire_ms;
        // Shown again only for a service with nothing newer: no run since and no start due.
        if svc.run.is_none() && svc.start.is_none() {
            job.verdict = saved.verdict.map(|v| Verdict {
                skipped: v.skipped,
                reason: v.reason,
            });
        }
    }
}
