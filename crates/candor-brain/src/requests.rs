//! Requests: start, stop, restart, reset-failed, reload, shutdown. A request changes intent
//! (wanted, a scheduled start, a pending spec); settling turns intent into keeper commands.

use std::sync::Arc;

use candor_api as api;
use candor_spec::{ServiceName, Spec};

use crate::derive::{derive, ServiceState};
use crate::effect::Reply;
use crate::facts::{ScheduledStart, Service};
use crate::input::{Request, RequestId};
use crate::step::Cx;

impl Cx<'_> {
    pub(crate) fn on_request(&mut self, id: RequestId, request: Request) {
        let shutting_down = self.facts.shutdown.is_some();
        let (name, action) = match &request {
            Request::Start(n) => (n, "start"),
            Request::Stop(n) => (n, "stop"),
            Request::Restart(n) => (n, "restart"),
            Request::ResetFailed { force } => return self.reset_failed(id, *force),
            Request::Reload(spec) => return self.reload(id, spec.clone()),
            Request::Shutdown => {
                self.begin_shutdown();
                return self.reply(id, Reply::Done);
            }
        };
        let Some(key) = self.facts.name_of(name) else {
            let known: Vec<&str> = self.facts.services.keys().map(|k| k.as_str()).collect();
            let error = format!(
                "no service named `{name}`; configured: {}",
                known.join(", ")
            );
            return self.reply(id, Reply::Error { status: 404, error });
        };
        if shutting_down && action != "stop" {
            let error = "the supervisor is shutting down".to_string();
            return self.reply(id, Reply::Error { status: 409, error });
        }
        match request {
            Request::Start(_) => self.start(&key),
            Request::Stop(_) => self.stop(&key),
            _ => self.restart(&key),
        }
        self.reply(id, Reply::Done);
    }

    /// Wanted from now on; a start is scheduled unless a run is already up or on its way.
    fn start(&mut self, name: &ServiceName) {
        self.want(name, false);
    }

    /// A new run now: the live one (if up) is stopped first.
    fn restart(&mut self, name: &ServiceName) {
        self.want(name, true);
    }

    /// Wanted, with a fresh backoff streak and a start due now (a live run that is up keeps
    /// running unless `anew`: then settling stops it first).
    fn want(&mut self, name: &ServiceName, anew: bool) {
        let now = self.mono();
        let Some(svc) = self.facts.svc_mut(name) else {
            return;
        };
        svc.wanted = true;
        svc.streak = 0;
        svc.refusals = 0;
        let up = svc
            .live()
            .is_some_and(|r| r.stop.is_none() && r.main_exit.is_none());
        if anew || !up {
            svc.start = Some(ScheduledStart {
                due: now,
                restart: false,
            });
        }
    }

    fn stop(&mut self, name: &ServiceName) {
        if let Some(svc) = self.facts.svc_mut(name) {
            svc.wanted = false;
            svc.start = None;
        }
    }

    /// Restart the services that are failed (all with `force`), list the ones left alone.
    fn reset_failed(&mut self, id: RequestId, force: bool) {
        let now = self.mono();
        if self.facts.shutdown.is_some() {
            let error = "the supervisor is shutting down".to_string();
            return self.reply(id, Reply::Error { status: 409, error });
        }
        let failed: Vec<(ServiceName, bool)> = self
            .facts
            .services
            .iter()
            .map(|(n, s)| {
                let state = derive(&self.facts.services, s, now).state;
                (n.clone(), state == ServiceState::Failed)
            })
            .collect();
        let mut out = api::ResetFailed::default();
        for (name, failed) in failed {
            if failed || force {
                if let Some(svc) = self.facts.svc_mut(&name) {
                    svc.restarts = 0;
                }
                self.restart(&name);
                out.restarted.push(name.to_string());
            } else {
                out.left_alone.push(name.to_string());
            }
        }
        self.reply(id, Reply::ResetFailed(out));
    }

    /// Apply a validated config: add, remove and change services. A changed service's new spec
    /// applies once its run is over (the run is stopped for it).
    fn reload(&mut self, id: RequestId, spec: Arc<Spec>) {
        let now = self.mono();
        self.facts.specs_changed();
        self.facts.restart_budget = spec.daemon.restart_budget;
        let mut out = api::ReloadOutcome::default();
        let removed: Vec<ServiceName> = self
            .facts
            .services
            .keys()
            .filter(|n| !spec.services.contains_key(*n))
            .cloned()
            .collect();
        for name in removed {
            out.removed.push(name.to_string());
            let Some(svc) = self.facts.svc_mut(&name) else {
                continue;
            };
            svc.removed = true;
            svc.wanted = false;
            svc.start = None;
            if svc.is_down() {
                self.facts.services.remove(&name);
                self.facts.windows.remove(&name);
                self.note(
                    name.as_str(),
                    "removed",
                    "removed from config".into(),
                    api::EventDetail::None {},
                );
            }
        }
        for (name, new) in &spec.services {
            let new = Arc::new(new.clone());
            let Some(svc) = self.facts.svc_mut(name) else {
                out.added.push(name.to_string());
                self.facts
                    .services
                    .insert(name.clone(), Arc::new(Service::new(new, now)));
                continue;
            };
            let mut old = (*svc.spec).clone();
            old.defined_at.clone_from(&new.defined_at);
            let logs_changed = old.logs != new.logs;
            old.logs = new.logs;
            // Whether its health restarts may be held applies at once too.
            old.restart_budget = new.restart_budget;
            if logs_changed {
                // Log limits apply to the running service: no restart for them.
                self.out.push(crate::Effect::ConfigureLogs {
                    service: name.to_string(),
                    logs: new.logs,
                });
            }
            // What the live run was really started from: after an adoption the spec the
            // brain holds is the config read then, not necessarily the run's.
            let run_drift = svc
                .live()
                .filter(|r| r.pid().is_some())
                .map(|r| crate::digest::drift(r.digest.as_ref(), &new, true));
            let predates = match &run_drift {
                Some(Some(crate::Drift::Differs(parts))) => parts.clone(),
                _ => Vec::new(),
            };
            if matches!(run_drift, Some(Some(crate::Drift::Unknown))) {
                out.notes.push(format!(
                    "{name}: its run was started by an earlier version that did not record its config, so whether it matches cannot be told; `candor restart {name}` to be sure"
                ));
            }
            if old == *new && predates.is_empty() {
                svc.spec = new;
                if logs_changed {
                    out.changed.push(name.to_string());
                    out.notes
                        .push(format!("{name}: new log limits applied without a restart"));
                } else {
                    out.unchanged.push(name.to_string());
                }
                continue;
            }
            out.changed.push(name.to_string());
            if !predates.is_empty() {
                out.notes.push(format!(
                    "{name}: changed: {} (its run was started from another config); restarting it",
                    predates.join(", ")
                ));
            }
            if svc.is_down() {
                svc.spec = new;
            } else {
                svc.next_spec = Some(new);
                if let Some(run) = svc.live_mut() {
                    // Stopped for this reload now, not for what an adoption found.
                    run.drift = None;
                }
            }
            if svc.wanted {
                svc.start = Some(ScheduledStart {
                    due: now,
                    restart: false,
                });
            }
        }
        self.reply(id, Reply::Reload(out));
    }

    pub(crate) fn begin_shutdown(&mut self) {
        if self.facts.shutdown.is_some() {
            return;
        }
        self.facts.shutdown = Some(self.mono());
        self.note(
            "candor",
            "stopping",
            "shutdown requested: stopping services in reverse dependency order".into(),
            api::EventDetail::None {},
        );
        for name in self.facts.names() {
            if let Some(svc) = self.facts.svc_mut(&name) {
                svc.wanted = false;
                svc.start = None;
            }
        }
    }
}
