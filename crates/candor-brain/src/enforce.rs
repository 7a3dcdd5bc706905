//! Settling after every input: deadlines (ready_timeout, watchdog, stop retries), acting on
//! unhealthy and over-budget runs, stopping what must stop (requests, reloads, shutdown in
//! reverse dependency order), and starting what may start (`after` targets ready).

use candor_api as api;
use candor_core::budget::Verdict;
use candor_spec::{format_duration, OnUnhealthy, ServiceName};

use crate::derive::{blocking_deps, budget_verdict, derive, ServiceState};
use crate::effect::Effect;
use crate::facts::{Delivery, Held, Run, Service, StopCause};
use crate::step::{health_detail, Cx};

/// Why a spawned run with no stop yet must be stopped now, if it must.
fn must_stop(svc: &Service, shutting_down: bool) -> Option<StopCause> {
    let run = svc.live()?;
    if run.stop.is_some() || run.pid().is_none() {
        return None;
    }
    if svc.removed {
        Some(StopCause::Removed)
    } else if shutting_down {
        // Only once its dependents are down: checked by the caller.
        Some(StopCause::Shutdown)
    } else if !svc.wanted {
        Some(StopCause::Requested)
    } else if svc.next_spec.is_some() && svc.spec.kind != candor_spec::ServiceKind::Oneshot {
        // A oneshot's run is left to finish: the new config is used by its next run.
        Some(StopCause::ConfigChanged)
    } else if svc.start.is_some() && run.main_exit.is_none() {
        Some(StopCause::Restart)
    } else {
        None
    }
}

impl Cx<'_> {
    /// A container's init: once the `main = true` service has ended for good (down, with an
    /// exit, no start to come), everything stops and the daemon exits with its code.
    fn main_ended(&mut self) {
        if self.facts.shutdown.is_some() {
            return;
        }
        let Some(name) = self.facts.main_service() else {
            return;
        };
        let Some(svc) = self.facts.services.get(&name) else {
            return;
        };
        let Some(exit) = svc.last_exit else {
            return;
        };
        if !svc.is_down() || svc.start.is_some() {
            return;
        }
        let how = exit.describe(&svc.spec);
        let code = exit
            .status
            .code()
            .or(exit.status.signal().map(|s| 128 + s))
            .unwrap_or(1);
        self.facts.exit_code = Some(code);
        self.note(
            "candor",
            "stopping",
            format!(
                "the main service `{name}` ended ({}); stopping the others, then exiting with code {code}",
                how
            ),
            api::EventDetail::None {},
        );
        self.begin_shutdown();
    }

    pub(crate) fn settle(&mut self) {
        self.main_ended();
        let shutting_down = self.facts.shutdown.is_some();
        if !shutting_down && !self.facts.groups.is_empty() {
            // Rollouts move instances (spares added, old ones replaced) before the services
            // are looked at, so what they change is acted on in this step.
            self.drive_rollouts();
        }
        // Deadlines come with ticks, requests may concern anything, and a shutdown goes on
        // upstream when a dependent is down: those look at every service. Evidence or a keeper
        // event changes the services it names, and what starts after them.
        if self.all && !shutting_down {
            self.schedules();
        }
        let names: Vec<ServiceName> = if shutting_down {
            self.facts.names()
        } else if self.all {
            self.facts.names_awake()
        } else {
            // Deadlines and starts due are looked at by the tick their timer brings.
            self.facts.touched_and_dependents().into_iter().collect()
        };
        for name in &names {
            self.deadlines(name);
        }
        if !shutting_down {
            for name in &names {
                self.enforce(name);
            }
        }
        for name in &names {
            let Some(svc) = self.facts.services.get(name) else {
                continue;
            };
            let Some(cause) = must_stop(svc, shutting_down) else {
                continue;
            };
            if cause == StopCause::Shutdown && !self.facts.dependents(name).all(Service::is_down) {
                continue;
            }
            self.stop_run(name, cause);
        }
        if !shutting_down {
            // Oldest start first: when spawn tokens are short, a start that has waited longest
            // gets the next one, whatever its name (crash loops early in the alphabet must
            // not starve a start later in it).
            let mut due: Vec<(candor_core::Mono, &ServiceName)> = names
                .iter()
                .filter_map(|n| Some((self.facts.services.get(n)?.start?.due, n)))
                .collect();
            due.sort();
            for (_, name) in due {
                self.start_if_due(name);
            }
        }
        if shutting_down && !self.facts.exited && self.facts.services.values().all(|s| s.is_down())
        {
            self.facts.exited = true;
            self.out.push(Effect::Exit);
        }
    }

    /// ready_timeout, the watchdog, and stops the keeper did not take.
    fn deadlines(&mut self, name: &ServiceName) {
        let now = self.mono();
        let Some(svc) = self.facts.services.get(name) else {
            return;
        };
        let Some(run) = svc.live() else {
            return;
        };
        let never_ready =
            run.is_serving() && run.ready.is_none() && run.ready_due.is_some_and(|t| t <= now);
        let too_long = (run.stop.is_none()
            && run.main_exit.is_none()
            && run.timeout_due.is_some_and(|t| t <= now))
        .then(|| {
            format!(
                "ran longer than its timeout {}; stopped",
                format_duration(svc.spec.timeout.unwrap_or_default())
            )
        });
        let retry = run.stop.as_ref().and_then(|s| match s.delivery {
            Delivery::Refused { retry_at, .. } if retry_at <= now => Some(s.kill_at),
            _ => None,
        });
        if never_ready {
            let reason = format!(
                "not ready within {} of starting (ready = \"{}\"); fix the service or raise ready_timeout",
                format_duration(svc.spec.ready_timeout.unwrap_or_default()),
                svc.spec.ready.as_str()
            );
            self.stop_run(name, StopCause::GiveUp(reason));
        }
        if let Some(reason) = too_long {
            self.stop_run(name, StopCause::GiveUp(reason));
        }
        self.watchdog_missed(name);
        if let Some(kill_at) = retry {
            self.resend_stop(name, kill_at);
        }
    }

    /// Send a refused stop again with what is left of its timeout: the SIGKILL still comes at
    /// `kill_at` (at once if that has passed).
    fn resend_stop(&mut self, name: &ServiceName, kill_at: candor_core::Mono) {
        let now = self.mono();
        let Some(svc) = self.facts.svc_mut(name) else {
            return;
        };
        let signal = svc.spec.stop.signal.number();
        let Some(run) = svc.live_mut() else {
            return;
        };
        let Some(stop) = run.stop.as_mut() else {
            return;
        };
        stop.delivery = Delivery::Sent;
        let run_id = run.id;
        self.out.push(Effect::Stop {
            service: name.to_string(),
            run_id,
            signal,
            timeout: now.until(kill_at),
        });
        self.timer(kill_at);
    }

    /// Restart an unhealthy run (`on_unhealthy = "restart"`, or any watchdog timeout) or one
    /// over its fd/memory restart threshold, after recording why; with "alert" the state says it.
    /// A health restart waits while a shared cause covers the run or the restart budget is
    /// spent (see [`crate::herd`]); the wait is in its reason, and a timer brings the budget's
    /// next room.
    fn enforce(&mut self, name: &ServiceName) {
        let now = self.mono();
        let Some(svc) = self.facts.services.get(name) else {
            return;
        };
        let Some(run) = svc.live().filter(|r| r.is_serving() && r.ready.is_some()) else {
            return;
        };
        let d = derive(&self.facts.services, svc, now);
        let (why, health) = match d.state {
            ServiceState::Degraded => match budget_verdict(&svc.spec, &run.health, now) {
                Verdict::Restart(why) => (why, false),
                _ => return self.unhold(name),
            },
            ServiceState::Unhealthy
                if svc.spec.on_unhealthy == OnUnhealthy::Restart
                    || run.health.watchdog_missed.is_some() =>
            {
                (d.reason, true)
            }
            _ => return self.unhold(name),
        };
        if health {
            if let Some(held) = self.hold(name) {
                if let Held::Budget { until, .. } = held {
                    if self.facts.herd.arm_budget_timer(until) {
                        self.timer(until);
                    }
                }
                let svc = self.facts.services.get(name);
                if svc.is_some_and(|s| s.held.as_ref() != Some(&held)) {
                    if let Some(svc) = self.facts.svc_mut(name) {
                        svc.held = Some(held);
                    }
                }
                return;
            }
            if self
                .facts
                .services
                .get(name)
                .is_some_and(|s| s.spec.restart_budget)
            {
                self.facts.herd.spend(now);
            }
        }
        // Said without the hold it had: the restart is happening.
        let why = match self.facts.services.get(name).and_then(|s| s.held.as_ref()) {
            Some(_) => {
                if let Some(svc) = self.facts.svc_mut(name) {
                    svc.held = None;
                }
                let svc = &self.facts.services[name];
                derive(&self.facts.services, svc, now).reason
            }
            None => why,
        };
        let Some(run) = self.facts.services.get(name).and_then(|s| s.live()) else {
            return;
        };
        let detail = api::EventDetail::Health(health_detail(run));
        let state = if health {
            ServiceState::Unhealthy
        } else {
            ServiceState::Degraded
        };
        self.note(name.as_str(), state.as_str(), why.clone(), detail);
        if let Some(svc) = self.facts.svc_mut(name) {
            // The verdict is on record; the next change shown is to `stopping`.
            svc.shown = Some((state, now));
        }
        self.herd_forget(name);
        self.stop_run(name, StopCause::Unhealthy(why));
    }

    /// Not (or no longer) a run to restart: nothing of it is held.
    fn unhold(&mut self, name: &ServiceName) {
        if self
            .facts
            .services
            .get(name)
            .is_some_and(|s| s.held.is_some())
        {
            if let Some(svc) = self.facts.svc_mut(name) {
                svc.held = None;
            }
        }
    }

    /// Spawn if a start is due, nothing of the last run is left, and every `after` target is
    /// ready; otherwise keep waiting (derive says for whom).
    fn start_if_due(&mut self, name: &ServiceName) {
        let now = self.mono();
        let Some(svc) = self.facts.services.get(name) else {
            return;
        };
        let due = svc.start.is_some_and(|s| s.due <= now);
        if !due || !svc.is_down() || !blocking_deps(&self.facts.services, svc, now).is_empty() {
            return;
        }
        if !self.condition_passed(name) {
            return;
        }
        // Spawns are paced: a thousand due at once go over a few seconds, not in one burst.
        if let Err(next) = self.facts.herd.spawn_token(now) {
            if self.facts.herd.arm_spawn_timer(next) {
                self.timer(next);
            }
            return;
        }
        let Some(svc) = self.facts.svc_mut(name) else {
            return;
        };
        let Some(start) = svc.start.take() else {
            return;
        };
        svc.runs += 1;
        let run_id = svc.runs;
        let mut run = Run::new(run_id, start.restart);
        run.digest = Some(crate::RunDigest::of(&svc.spec));
        run.generation = svc.generation;
        svc.run = Some(run);
        let spec = svc.spec.clone();
        self.job_spawning(name, run_id, start.restart);
        self.out.push(Effect::Spawn {
            service: name.to_string(),
            run_id,
            spec,
        });
    }
}
