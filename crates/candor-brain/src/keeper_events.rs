//! What the keeper reports — a run spawned, failed to spawn, its main process exited, nothing
//! of it is left — and what it did not take. Each is recorded on the run it names; a report
//! for any other run is ignored.

use candor_api as api;
use candor_core::restart::{self, AfterExit};
use candor_core::{backoff, ExitStatus, Mono};
use candor_spec::{format_duration, ReadySpec, ServiceName};

use crate::derive::ServiceState;
use crate::effect::Effect;
use crate::facts::{Delivery, LastExit, ScheduledStart, Spawn, StopCause, MAX_SPAWN_REFUSALS};
use crate::input::Refusable;
use crate::step::{retry_delay, Cx};

impl Cx<'_> {
    fn name(&self, service: &str) -> Option<ServiceName> {
        self.facts.name_of(service)
    }

    pub(crate) fn on_spawned(
        &mut self,
        service: &str,
        run_id: u64,
        pid: u32,
        at: Mono,
        cleared: usize,
    ) {
        let Some(name) = self.name(service) else {
            return;
        };
        if cleared > 0 {
            self.note(
                service,
                "starting",
                format!("killed {cleared} process(es) left in its cgroup by an earlier run before starting"),
                api::EventDetail::Cleared { killed: cleared },
            );
        }
        let Some(svc) = self.facts.svc_mut(&name) else {
            return;
        };
        let spec = svc.spec.clone();
        let Some(run) = svc.run_mut(run_id).filter(|r| r.spawn == Spawn::Pending) else {
            return;
        };
        run.spawn = Spawn::Started { pid, at };
        run.after_supervisor_restart = cleared > 0 && run_id == 1;
        let ready_now = spec.ready == ReadySpec::Started;
        if ready_now {
            run.ready = Some((at, spec.ready.as_str()));
        }
        run.ready_due = spec.ready_timeout.filter(|_| !ready_now).map(|t| at + t);
        run.watchdog_due = spec.watchdog.map(|w| at + w);
        run.timeout_due = spec
            .timeout
            .filter(|_| spec.kind == candor_spec::ServiceKind::Oneshot)
            .map(|t| at + t);
        let timeout_due = run.timeout_due;
        run.watchdog_wake = run.watchdog_due;
        let (ready_due, watchdog_due, is_restart) =
            (run.ready_due, run.watchdog_due, run.is_restart);
        svc.refusals = 0;
        if is_restart {
            svc.restarts += 1;
        }
        self.out.push(Effect::Watch {
            service: service.into(),
            run_id,
            spec,
        });
        for due in [ready_due, watchdog_due, timeout_due].into_iter().flatten() {
            self.timer(due);
        }
        self.replay_early_notify();
    }

    pub(crate) fn on_spawn_failed(&mut self, service: &str, run_id: u64, error: String) {
        let Some(name) = self.name(service) else {
            return;
        };
        let now = self.mono();
        let Some(svc) = self.facts.svc_mut(&name) else {
            return;
        };
        let Some(run) = svc.run_mut(run_id).filter(|r| r.spawn == Spawn::Pending) else {
            return;
        };
        run.spawn = Spawn::Failed { error };
        run.ended = Some(now);
        svc.refusals = 0;
        self.run_ended(&name);
        self.replay_early_notify();
    }

    pub(crate) fn on_exited(
        &mut self,
        service: &str,
        run_id: u64,
        exit: LastExit,
        group_empty: bool,
        escalated: bool,
    ) {
        let (status, at) = (exit.status, exit.at);
        let Some(name) = self.name(service) else {
            return;
        };
        let Some(svc) = self.facts.svc_mut(&name) else {
            return;
        };
        let Some(run) = svc.run_mut(run_id) else {
            return;
        };
        if run.main_exit.is_none() {
            let uptime = run.started_at().map(|s| at.since(s)).unwrap_or_default();
            let exit = LastExit { uptime, ..exit };
            let pid = run.pid();
            run.main_exit = Some(exit);
            svc.last_exit = Some(exit);
            self.out.push(Effect::Unwatch {
                service: service.into(),
                run_id,
            });
            if status == ExitStatus::Unknown {
                // Said once in the events, whatever state follows (an immediate restart
                // would show only "about to start").
                self.note(
                    service,
                    "exited",
                    format!("pid {} {}", pid.unwrap_or_default(), status.describe()),
                    api::EventDetail::None {},
                );
            }
        }
        if group_empty {
            self.on_emptied(service, run_id, escalated);
        }
    }

    pub(crate) fn on_emptied(&mut self, service: &str, run_id: u64, escalated: bool) {
        let Some(name) = self.name(service) else {
            return;
        };
        let now = self.mono();
        let Some(svc) = self.facts.svc_mut(&name) else {
            return;
        };
        let (timeout, signal) = (svc.spec.stop.timeout, svc.spec.stop.signal);
        let Some(run) = svc.run_mut(run_id) else {
            return;
        };
        run.ended = Some(now);
        if let Some(stop) = run.stop.as_mut() {
            stop.killed = escalated;
        }
        let main_was_alive = run.main_exit.is_none();
        let stop_cause = run.stop.as_ref().map(|s| s.cause.phrase());
        if main_was_alive {
            self.out.push(Effect::Unwatch {
                service: service.into(),
                run_id,
            });
        }
        if let (true, Some(cause)) = (escalated, stop_cause) {
            self.note(
                service,
                "stopping",
                format!(
                    "did not stop within {} of {}; the whole group was killed with SIGKILL",
                    format_duration(timeout),
                    signal.name()
                ),
                api::EventDetail::Escalated { cause },
            );
        }
        self.run_ended(&name);
    }

    /// Nothing of the service's run is left: apply a pending removal or config, then decide
    /// the next start (a requested one wins; else the stop's cause or the restart policy).
    fn run_ended(&mut self, name: &ServiceName) {
        let now = self.mono();
        self.facts.windows.remove(name);
        self.herd_forget(name);
        let shutting_down = self.facts.shutdown.is_some();
        if (self.facts.services.get(name)).is_some_and(|s| s.removed || s.next_spec.is_some()) {
            self.facts.specs_changed();
        }
        self.job_ended(name);
        let Some(svc) = self.facts.svc_mut(name) else {
            return;
        };
        if svc.removed {
            self.facts.services.remove(name);
            self.note(
                name.as_str(),
                "removed",
                "removed from config".into(),
                api::EventDetail::None {},
            );
            return;
        }
        if let Some(next) = svc.next_spec.take() {
            svc.spec = next;
            svc.generation = svc.next_generation;
        }
        if shutting_down || !svc.wanted || svc.start.is_some() {
            return;
        }
        let Some(run) = svc.run.as_ref() else {
            return;
        };
        let uptime = svc.last_exit.map(|e| e.uptime).unwrap_or_default();
        let crashed = run.stop.is_none() && run.main_exit.is_some_and(|e| !e.status.success());
        let unhealthy = matches!(
            run.stop.as_ref().map(|s| &s.cause),
            Some(StopCause::Unhealthy(_))
        );
        let next = match (
            &run.spawn,
            run.stop.as_ref().map(|s| &s.cause),
            run.main_exit,
        ) {
            (Spawn::Refused { .. }, _, _) if svc.refusals < MAX_SPAWN_REFUSALS => {
                Some((retry_delay(svc.refusals), run.is_restart))
            }
            (Spawn::Refused { .. } | Spawn::Failed { .. }, _, _) => None,
            (_, Some(StopCause::Unhealthy(_)), _) => {
                let (delay, streak) = backoff::after_exit(&svc.spec.backoff, svc.streak, uptime);
                svc.streak = streak;
                Some((delay, true))
            }
            (_, Some(StopCause::ConfigChanged), _) => Some((Default::default(), false)),
            (_, Some(_), _) => None,
            (_, None, Some(exit)) => {
                let how = || exit.describe(&svc.spec);
                let failures = svc.failures();
                match restart::after_exit(
                    &svc.spec,
                    exit.status,
                    how,
                    exit.uptime,
                    svc.streak,
                    failures,
                ) {
                    AfterExit::Restart { delay, quick_exits } => {
                        svc.streak = quick_exits;
                        if let Some(job) = svc.job.as_deref_mut() {
                            if !exit.status.success() {
                                job.tries += 1;
                            }
                            job.trigger = job
                                .current
                                .clone()
                                .map(|t| crate::jobs::Trigger { why: "retry", ..t });
                        }
                        Some((delay, true))
                    }
                    AfterExit::Completed | AfterExit::GiveUp { .. } => None,
                }
            }
            (_, None, None) => None,
        };
        let together = (crashed || unhealthy) && self.failed_together(name, crashed);
        let Some(svc) = self.facts.svc_mut(name) else {
            return;
        };
        let Some((delay, restart)) = next else {
            return;
        };
        // Services that fail together do not come back together: jittered when others failed
        // within seconds of this one (one service alone keeps its exact doubling).
        let delay = if together {
            backoff::jitter(delay, backoff::seed(name.as_str(), svc.runs))
        } else {
            delay
        };
        svc.start = Some(ScheduledStart {
            due: now + delay,
            restart,
        });
        if !delay.is_zero() {
            return self.timer(now + delay);
        }
        // An immediate restart never shows as `backoff` on a board: record the decision.
        let reason = format!("{}; restarting now", crate::derive::what_ended(svc));
        svc.shown = Some((ServiceState::Backoff, now));
        let detail = api::StateDetail {
            pid: None,
            run: None,
            restarts: svc.restarts,
            last_exit: svc.last_exit.map(|e| e.describe(&svc.spec)),
            health: None,
            restart_in_ms: Some(0),
        };
        let state = ServiceState::Backoff.as_str();
        self.note(
            name.as_str(),
            state,
            reason,
            api::EventDetail::State(detail),
        );
    }

    pub(crate) fn on_refused(&mut self, command: Refusable, error: String) {
        let now = self.mono();
        match command {
            Refusable::Spawn { service, run_id } => {
                let Some(name) = self.name(&service) else {
                    return;
                };
                let Some(svc) = self.facts.svc_mut(&name) else {
                    return;
                };
                let Some(run) = svc.run_mut(run_id).filter(|r| r.spawn == Spawn::Pending) else {
                    return;
                };
                run.spawn = Spawn::Refused {
                    error: error.clone(),
                };
                run.ended = Some(now);
                svc.refusals += 1;
                if svc.refusals == 1 {
                    self.refusal_note(&service, "spawn", error, "retrying");
                }
                self.run_ended(&name);
                self.replay_early_notify();
            }
            Refusable::Stop { service, run_id } => {
                let Some(name) = self.name(&service) else {
                    return;
                };
                let Some(svc) = self.facts.svc_mut(&name) else {
                    return;
                };
                let Some(stop) = svc.run_mut(run_id).and_then(|r| r.stop.as_mut()) else {
                    return;
                };
                stop.refusals += 1;
                let retry_at = now + retry_delay(stop.refusals);
                stop.delivery = Delivery::Refused {
                    error: error.clone(),
                    retry_at,
                };
                let first = stop.refusals == 1;
                self.timer(retry_at);
                if first {
                    self.refusal_note(&service, "stop", error, "retrying");
                }
            }
            Refusable::Sweep => self.refusal_note(
                "candor",
                "sweep",
                error,
                "cgroups of services no longer configured stay until the next start",
            ),
        }
    }

    /// `then`: what follows (a retry, or what stays as it is).
    fn refusal_note(&mut self, service: &str, command: &str, error: String, then: &str) {
        self.note(
            service,
            "warning",
            format!("the keeper did not take the {command} command ({error}); {then}"),
            api::EventDetail::Refused {
                command: command.into(),
                error,
            },
        );
    }
}
