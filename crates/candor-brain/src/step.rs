//! `step`: one input in, the effects out. Each step handles its input, then settles — checks
//! deadlines, acts on unhealthy runs, stops what must stop, starts what may start — records
//! every change of derived state, publishes the board, and only then answers requests.

use crate::LastExit;
use std::time::Duration;

use candor_api as api;
use candor_core::{Mono, Now};
use candor_spec::ServiceName;

use crate::derive::{derive, ServiceState};
use crate::effect::{Effect, Note, Reply};
use crate::facts::{Delivery, Facts, Service, StopCause, StopFact};
use crate::input::{Input, RequestId};

/// The context of one step: the facts, the time, and the effects so far.
pub(crate) struct Cx<'a> {
    pub facts: &'a mut Facts,
    pub now: Now,
    pub out: Vec<Effect>,
    /// Answers, sent after the board that shows their effect.
    pub replies: Vec<Effect>,
    /// Look at every service when settling and finishing (a tick, a request); else only at
    /// those the step changed and their dependents: evidence of one service costs the same at
    /// 10 services as at 1000.
    pub all: bool,
}

/// Decide what one input means. Pure: no IO, no clock; `now` is the step's only time.
pub fn step(facts: &mut Facts, input: Input, now: Now) -> Vec<Effect> {
    facts.touched.clear();
    // Time-driven changes (deadlines, a start due, evidence going stale) come with a tick; a
    // request may concern any service.
    let all = matches!(
        input,
        Input::Tick | Input::Request { .. } | Input::Refused { .. }
    );
    let mut cx = Cx {
        facts,
        now,
        out: Vec::new(),
        replies: Vec::new(),
        all,
    };
    match input {
        Input::Spawned {
            service,
            run_id,
            pid,
            at,
            cleared_leftovers,
            unenforced,
        } => {
            if let Some(why) = unenforced {
                cx.note(
                    &service,
                    "warning",
                    format!("limits not enforced: {why}"),
                    api::EventDetail::None {},
                );
            }
            cx.on_spawned(&service, run_id, pid, at, cleared_leftovers)
        }
        Input::SpawnFailed {
            service,
            run_id,
            error,
        } => cx.on_spawn_failed(&service, run_id, error),
        Input::Exited {
            service,
            run_id,
            status,
            at,
            group_empty,
            escalated,
            oom_kills,
        } => cx.on_exited(
            &service,
            run_id,
            LastExit {
                status,
                at,
                uptime: Duration::ZERO,
                oom_kills,
            },
            group_empty,
            escalated,
        ),
        Input::Emptied {
            service,
            run_id,
            escalated,
        } => cx.on_emptied(&service, run_id, escalated),
        Input::KeeperWarning { message } => {
            cx.note("candor", "warning", message, api::EventDetail::None {})
        }
        Input::Refused { command, error } => cx.on_refused(command, error),
        Input::Evidence(items) => {
            for item in items {
                cx.on_evidence(item);
            }
        }
        Input::Request { id, request } => cx.on_request(id, request),
        Input::Tick => {}
    }
    cx.settle();
    cx.finish()
}

/// The first step of a daemon: sweep cgroups of services no longer configured, start
/// everything that may start.
pub fn boot(facts: &mut Facts, now: Now) -> Vec<Effect> {
    // Groups too: their instances' activated sockets are kept under the group's name.
    let keep = (facts.names().iter())
        .chain(facts.groups.keys())
        .map(|n| n.to_string())
        .collect();
    let mut out = vec![Effect::Sweep { keep }];
    out.extend(step(facts, Input::Tick, now));
    out
}

impl Cx<'_> {
    pub fn mono(&self) -> Mono {
        self.now.mono
    }

    pub fn note(&mut self, service: &str, state: &str, reason: String, detail: api::EventDetail) {
        self.out.push(Effect::Record(Note {
            service: service.into(),
            state: state.into(),
            reason,
            detail,
        }));
    }

    pub fn reply(&mut self, id: RequestId, reply: Reply) {
        self.replies.push(Effect::Reply { id, reply });
    }

    /// Arm a timer, if `due` is still ahead (what is due now is handled in this step).
    pub fn timer(&mut self, due: Mono) {
        if due > self.now.mono {
            self.out.push(Effect::Timer(due));
        }
    }

    /// Ask the keeper to stop the live, spawned run of `name`, and note the timeline.
    pub fn stop_run(&mut self, name: &ServiceName, cause: StopCause) {
        let now = self.mono();
        let Some(svc) = self.facts.svc_mut(name) else {
            return;
        };
        let stop = svc.spec.stop;
        let Some(run) = svc.live_mut() else {
            return;
        };
        if run.stop.is_some() || run.pid().is_none() {
            return;
        }
        let kill_at = now + stop.timeout;
        run.stop = Some(StopFact {
            cause,
            at: now,
            signal: stop.signal,
            kill_at,
            delivery: Delivery::Sent,
            refusals: 0,
            killed: false,
        });
        let run_id = run.id;
        self.out.push(Effect::Stop {
            service: name.to_string(),
            run_id,
            signal: stop.signal.number(),
            timeout: stop.timeout,
        });
        self.timer(kill_at);
    }

    /// Record every change of derived state, publish, then answer.
    fn finish(mut self) -> Vec<Effect> {
        let now = self.mono();
        let mut changes = Vec::new();
        let names: Vec<ServiceName> = if self.all {
            self.facts.names_awake()
        } else {
            self.facts.touched_and_dependents().into_iter().collect()
        };
        for name in names {
            let Some(svc) = self.facts.services.get(&name) else {
                continue;
            };
            let d = derive(&self.facts.services, svc, now);
            if svc.shown.map(|(s, _)| s) != Some(d.state) {
                changes.push((name, d));
            }
        }
        for (name, d) in changes {
            let Some(svc) = self.facts.svc_mut(&name) else {
                continue;
            };
            svc.shown = Some((d.state, now));
            let detail = state_detail(svc, d.state, now);
            self.note(
                name.as_str(),
                d.state.as_str(),
                d.reason,
                api::EventDetail::State(detail),
            );
        }
        self.out.push(Effect::Publish);
        self.out.append(&mut self.replies);
        self.out
    }
}

/// The evidence behind a state change, for the event log.
fn state_detail(svc: &Service, state: ServiceState, now: Mono) -> api::StateDetail {
    let run = svc.live().filter(|r| r.pid().is_some());
    api::StateDetail {
        pid: run.and_then(|r| r.pid()),
        run: run.map(|r| r.id),
        restarts: svc.restarts,
        last_exit: svc.last_exit.map(|e| e.describe(&svc.spec)),
        health: run.map(health_detail),
        restart_in_ms: match (state, svc.start) {
            (ServiceState::Backoff, Some(s)) => Some(now.until(s.due).as_millis() as u64),
            _ => None,
        },
    }
}

/// The health evidence of a run, for the event log.
pub(crate) fn health_detail(run: &crate::facts::Run) -> api::HealthDetail {
    let h = &run.health;
    api::HealthDetail {
        run: run.id,
        probe: h.probe.last.as_ref().map(|o| api::ProbeDetail {
            ok: o.ok,
            detail: o.detail.clone(),
            latency_ms: o.latency.as_secs_f64() * 1000.0,
            failures_in_a_row: h.probe.failures_in_a_row,
        }),
        sockets: h
            .sockets
            .iter()
            .map(|c| api::SocketCheck {
                path: c.path.display().to_string(),
                exists: c.exists,
                accepts: c.accepts,
            })
            .collect(),
        watchdog: h.watchdog_missed.clone(),
    }
}

/// Delay before the `n`-th retry of a command the keeper did not take: 100 ms doubling, at
/// most 1 s.
pub(crate) fn retry_delay(n: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << n.saturating_sub(1).min(4)))
        .min(Duration::from_secs(1))
}
