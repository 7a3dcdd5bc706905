//! Evidence about runs: probe results, socket checks, readiness by fd/file, sd_notify messages
//! and fd/RSS samples. Each piece names its run; evidence for any run but the live one is
//! dropped. A notify message is matched to its sender's run by cgroup, process group or pid.

use candor_api as api;
use candor_core::budget::Summary;
use candor_spec::{format_duration, ReadySpec, ServiceName};

use crate::effect::Effect;
use crate::facts::{Run, MAX_EARLY_NOTIFY};
use crate::input::{Evidence, Notify};
use crate::step::Cx;

impl Cx<'_> {
    /// The serving run `run_id` of `service`, to record evidence on.
    fn serving(&mut self, service: &str, run_id: u64) -> Option<(ServiceName, &mut Run)> {
        let name = self.facts.name_of(service)?;
        let svc = self.facts.services.get(&name)?;
        // Check before copying the service out of a shared board.
        if !svc.live().is_some_and(|r| r.id == run_id && r.is_serving()) {
            return None;
        }
        let run = self.facts.svc_mut(&name)?.run_mut(run_id)?;
        Some((name, run))
    }

    /// Readiness was just seen: check the declared sockets (and probe) right away.
    fn became_ready(&mut self, name: &ServiceName, run_id: u64) {
        let spec = match self.facts.services.get(name) {
            Some(s) => &s.spec,
            None => return,
        };
        if spec.probe.is_some() || !spec.sockets.is_empty() {
            self.out.push(Effect::CheckNow {
                service: name.to_string(),
                run_id,
            });
        }
    }

    pub(crate) fn on_evidence(&mut self, item: Evidence) {
        let now = self.mono();
        match item {
            Evidence::Condition {
                service,
                token,
                end,
            } => self.on_condition(&service, token, end),
            Evidence::LogSpan {
                service,
                run_id,
                first,
                last,
            } => self.on_log_span(&service, run_id, first, last),
            Evidence::Probe {
                service,
                run_id,
                outcome,
            } => {
                let Some(svc) = self.facts.get(&service) else {
                    return;
                };
                let (failures, successes) = svc
                    .spec
                    .probe
                    .as_ref()
                    .map(|p| (p.failures, p.successes))
                    .unwrap_or((3, 1));
                let by_probe = svc.spec.ready == ReadySpec::Probe;
                let Some((name, run)) = self.serving(&service, run_id) else {
                    return;
                };
                let ok = outcome.ok;
                if run.ready.is_some() || (ok && (by_probe || run.was_ready.is_some())) {
                    run.health.probe.record(outcome, failures, successes);
                } else {
                    run.health.probe.record_before_ready(outcome);
                }
                let again = run.was_ready;
                if run.ready.is_none() && ok && (by_probe || again.is_some()) {
                    run.ready = Some((now, again.unwrap_or("probe")));
                    self.became_ready(&name, run_id);
                }
                self.herd_file(&name, ok);
            }
            Evidence::Sockets {
                service,
                run_id,
                checks,
            } => {
                if let Some((_, run)) = self.serving(&service, run_id) {
                    run.health.sockets = checks;
                }
            }
            Evidence::Ready {
                service,
                run_id,
                via,
            } => {
                let Some((name, run)) = self.serving(&service, run_id) else {
                    return;
                };
                if run.ready.is_none() {
                    run.ready = Some((now, via));
                    self.became_ready(&name, run_id);
                }
            }
            Evidence::Notify(msg) => self.on_notify(msg),
            Evidence::Samples(samples) => {
                let valid_for = self.facts.sample_every * 3;
                for (service, run_id, sample) in samples {
                    let Some((name, _)) = self.serving(&service, run_id) else {
                        continue;
                    };
                    // The window stays apart; the run gets its small summary.
                    let window = self.facts.windows.entry(name.clone()).or_default();
                    window.push(run_id, sample);
                    let summary = window.summary().map(|b| Summary { valid_for, ..b });
                    if let Some((_, run)) = self.serving(&service, run_id) {
                        run.health.budget = summary;
                    }
                }
            }
        }
    }

    /// Messages held for a spawn in flight: their senders may be known now.
    pub(crate) fn replay_early_notify(&mut self) {
        for msg in std::mem::take(&mut self.facts.early_notify) {
            self.on_notify(msg);
        }
    }

    fn on_notify(&mut self, msg: Notify) {
        // Whose is it? The run the daemon found it from, if any (only while that run is the
        // live one); else a process in a service's cgroup, else in its process group.
        if let Some((service, run_id)) = &msg.run {
            // The daemon may learn a spawn's pid before the brain does: hold the message until
            // that spawn is reported, as any early one.
            let reported = self.facts.name_of(service).is_some_and(|n| {
                self.facts.services.get(&n).is_some_and(|s| {
                    !s.live()
                        .is_some_and(|r| r.id == *run_id && r.pid().is_none())
                })
            });
            if !reported {
                if self.facts.early_notify.len() < MAX_EARLY_NOTIFY {
                    self.facts.early_notify.push(msg);
                }
                return;
            }
            let Some((name, _)) = self.serving(service, *run_id) else {
                return;
            };
            return self.apply_notify(name, *run_id, &msg);
        }
        let owner = self
            .facts
            .services
            .iter()
            .find(|(name, s)| {
                let Some(pid) = s.live().filter(|r| r.is_serving()).and_then(|r| r.pid()) else {
                    return false;
                };
                msg.cgroup_service.as_deref() == Some(name.as_str())
                    || msg.pgid == Some(pid)
                    || msg.pid == pid
            })
            .map(|(n, s)| (n.clone(), s.live().map(|r| r.id).unwrap_or_default()));
        let Some((name, run_id)) = owner else {
            // A service may have spoken before the keeper's report of its spawn reached us:
            // hold the message until that spawn is reported.
            let spawning = self.facts.services.iter().any(|(n, s)| {
                s.live().is_some_and(|r| r.pid().is_none())
                    && msg
                        .cgroup_service
                        .as_deref()
                        .is_none_or(|c| c == n.as_str())
            });
            if spawning && self.facts.early_notify.len() < MAX_EARLY_NOTIFY {
                self.facts.early_notify.push(msg);
            } else {
                self.out.push(Effect::CountStranger);
            }
            return;
        };
        self.apply_notify(name, run_id, &msg);
    }

    /// The message's fields, for the live run `run_id` of `name`.
    fn apply_notify(&mut self, name: ServiceName, run_id: u64, msg: &Notify) {
        let now = self.mono();
        let Some(svc) = self.facts.services.get(&name) else {
            return;
        };
        let notify_ready = svc.spec.ready == ReadySpec::Notify;
        let watchdog = svc.spec.watchdog;
        let Some((_, run)) = self.serving(name.as_str(), run_id) else {
            return;
        };
        let mut mainpid = None;
        let mut became_ready = false;
        let mut wake = None;
        for (key, value) in &msg.fields {
            let h = &mut run.health;
            match key.as_str() {
                "READY" if value == "1" && notify_ready && run.ready.is_none() => {
                    run.ready = Some((now, "notify"));
                    became_ready = true;
                }
                "READY" if value == "1" && h.reloading => {
                    h.reloading = false;
                    h.reloads += 1;
                    h.notify_status = None;
                }
                "STATUS" => h.notify_status = Some(value.chars().take(200).collect()),
                "STOPPING" if value == "1" => {
                    h.notify_status = Some("stopping on its own (STOPPING=1)".into())
                }
                "RELOADING" if value == "1" => {
                    h.reloading = true;
                    h.notify_status = Some("reloading (RELOADING=1)".into())
                }
                "ERRNO" => h.notify_status = Some(format!("reports errno {value} (ERRNO=)")),
                "MAINPID" => mainpid = value.parse::<u32>().ok(),
                "WATCHDOG" if value == "1" => {
                    if let Some(w) = watchdog {
                        run.watchdog_due = Some(now + w);
                        // A timer still pending (earlier) re-arms itself when it fires.
                        if run.watchdog_wake.is_none_or(|t| t <= now) {
                            run.watchdog_wake = run.watchdog_due;
                            wake = run.watchdog_due;
                        }
                    }
                }
                "WATCHDOG" if value == "trigger" => {
                    h.watchdog_missed =
                        Some("watchdog triggered by the service (WATCHDOG=trigger)".into())
                }
                _ => {}
            }
        }
        if became_ready {
            self.became_ready(&name, run_id);
        }
        if let Some(due) = wake {
            self.timer(due);
        }
        if let Some(pid) = mainpid {
            // The keeper watches the process it spawned; MAINPID is recorded, not followed.
            self.note(
                name.as_str(),
                "notify",
                format!("reported MAINPID={pid}; candor keeps supervising the process it started"),
                api::EventDetail::MainPid { mainpid: pid },
            );
        }
    }

    /// A run whose watchdog deadline passed without `WATCHDOG=1` is marked missed; one whose
    /// watchdog timer fired before the (since moved) deadline gets its timer again.
    pub(crate) fn watchdog_missed(&mut self, name: &ServiceName) {
        let now = self.mono();
        let Some(svc) = self.facts.services.get(name) else {
            return;
        };
        let Some((due, wake)) = svc
            .live()
            .filter(|r| r.is_serving() && r.health.watchdog_missed.is_none())
            .and_then(|r| Some((r.watchdog_due?, r.watchdog_wake)))
        else {
            return;
        };
        if due > now {
            if wake.is_none_or(|t| t <= now) {
                if let Some(run) = self.facts.svc_mut(name).and_then(|s| s.live_mut()) {
                    run.watchdog_wake = Some(due);
                }
                self.timer(due);
            }
            return;
        }
        let every = format_duration(svc.spec.watchdog.unwrap_or_default());
        if let Some(run) = self.facts.svc_mut(name).and_then(|s| s.live_mut()) {
            run.watchdog_due = None;
            run.health.watchdog_missed =
                Some(format!("watchdog timeout: no WATCHDOG=1 within {every}"));
        }
    }
}
