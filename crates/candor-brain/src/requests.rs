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
        if self.group_request(id, &request) {
            return;
        }
        let (name, action) = match &request {
            Request::Start(n) => (n, "start"),
            Request::Stop(n) => (n, "stop"),
            Request::Restart(n) => (n, "restart"),
            Request::Run(n) => (n, "run"),
            Request::ResetFailed { force } => return self.reset_failed(id, *force),
            Request::Reload(spec) => return self.reload(id, spec.clone()),
            Request::Shutdown => {
                self.begin_shutdown();
                return self.reply(id, Reply::Done);
            }
            // Answered by `group_request`.
            Request::RestartWith(..) | Request::Scale { .. } | Request::Rollout(..) => return,
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
            Request::Run(_) => return self.run_job(id, &key),
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
        // Starting a scheduled job resumes its schedule; `candor run` runs it now.
        let waits =
            svc.spec.schedule.is_some() && svc.spec.kind == candor_spec::ServiceKind::Oneshot;
        if anew || (!up && !waits) {
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
            if let Some(job) = svc.job.as_deref_mut() {
                job.condition = None;
                job.queued = None;
                job.trigger = None;
            }
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

    /// Apply a validated config: add, remove and change services, as [`crate::plan::decide`]
    /// says (the same decisions `reload --plan` shows). A changed service's new spec applies
    /// once its run is over (the run is stopped for it); a replicated one's is rolled out with
    /// its update strategy.
    fn reload(&mut self, id: RequestId, spec: Arc<Spec>) {
        use crate::plan::Decision;
        let decisions = crate::plan::decide(&*self.facts, &spec);
        self.facts.specs_changed();
        self.facts.restart_budget = spec.daemon.restart_budget;
        let mut out = api::ReloadOutcome::default();
        for (name, decision) in decisions {
            let new = spec.services.get(&name);
            match (decision, new) {
                (Decision::Removed, _) => {
                    out.removed.push(name.to_string());
                    self.remove_service(&name);
                }
                (Decision::New, Some(new)) => {
                    out.added.push(name.to_string());
                    self.add_service(new);
                }
                (Decision::Replace(why), Some(new)) => {
                    out.changed.push(name.to_string());
                    out.notes.push(format!(
                        "{name}: {why}: the old one stops, the new one starts"
                    ));
                    self.remove_service(&name);
                    self.add_service(new);
                }
                (Decision::Rollout { why, strategy }, Some(new)) => {
                    out.changed.push(name.to_string());
                    if strategy == candor_spec::Strategy::StopFirst {
                        out.notes.push(format!("{name}: every instance is stopped at once ({why}; update.strategy = \"stop-first\")"));
                    }
                    let (spec, specs, _) = crate::plan::group_parts(new);
                    self.begin_rollout(&name, spec, specs, new.update, why);
                }
                (Decision::Scale { to, then, .. }, Some(new)) => {
                    out.changed.push(name.to_string());
                    let (gspec, specs, _) = crate::plan::group_parts(new);
                    match then.as_deref() {
                        Some(Decision::Rollout { why, .. }) => {
                            self.begin_rollout(&name, gspec, specs, new.update, why.clone())
                        }
                        _ => {
                            if let Some(g) = self.facts.groups.get_mut(&name) {
                                g.spec = gspec;
                                g.specs = specs;
                            }
                        }
                    }
                    self.scale(&name, to, None);
                }
                (d @ (Decision::Unchanged | Decision::Live(_)), Some(new))
                    if self.facts.groups.contains_key(&name) =>
                {
                    let (gspec, specs, _) = crate::plan::group_parts(new);
                    if let Decision::Live(w) = &d {
                        out.changed.push(name.to_string());
                        out.notes
                            .push(format!("{name}: {w} applied without a restart"));
                    } else {
                        out.unchanged.push(name.to_string());
                    }
                    let members: Vec<ServiceName> =
                        crate::groups::members(&self.facts.services, &name)
                            .map(|(_, s)| s.spec.name.clone())
                            .collect();
                    if let Some(g) = self.facts.groups.get_mut(&name) {
                        g.spec = gspec;
                        g.specs = specs.clone();
                    }
                    for m in members {
                        let index = m.split_instance().map_or(0, |(_, i)| i);
                        if let Some(inst) = specs.get(&index) {
                            self.apply_live(&m, inst.clone());
                        }
                    }
                }
                (d, Some(new)) => {
                    self.reload_plain(&name, Arc::new(new.clone()), d, &mut out);
                }
                (_, None) => {}
            }
        }
        self.reply(id, Reply::Reload(out));
    }

    /// A plain service's spec changed or not: what applies live is applied; a run-changing
    /// change stops the run and starts it from the new spec.
    fn reload_plain(
        &mut self,
        name: &ServiceName,
        new: Arc<candor_spec::ServiceSpec>,
        decision: crate::plan::Decision,
        out: &mut api::ReloadOutcome,
    ) {
        use crate::plan::Decision;
        let now = self.mono();
        let Some(svc) = self.facts.services.get(name) else {
            return;
        };
        if let Some(Some(crate::Drift::Unknown)) = svc
            .live()
            .filter(|r| r.pid().is_some())
            .map(|r| crate::digest::drift(r.digest.as_ref(), &new, true))
        {
            out.notes.push(format!(
                "{name}: its run was started by an earlier version that did not record its config, so whether it matches cannot be told; `candor restart {name}` to be sure"
            ));
        }
        match decision {
            Decision::Unchanged => {
                out.unchanged.push(name.to_string());
                self.apply_live(name, new);
            }
            Decision::Live(w) => {
                out.changed.push(name.to_string());
                out.notes
                    .push(format!("{name}: new {w} applied without a restart"));
                self.apply_live(name, new);
            }
            Decision::Restart(why) | Decision::Apply(why) => {
                out.changed.push(name.to_string());
                if why.contains("started from another config") {
                    out.notes
                        .push(format!("{name}: changed: {why}; restarting it"));
                }
                let Some(svc) = self.facts.svc_mut(name) else {
                    return;
                };
                if svc.is_down() {
                    svc.spec = new;
                } else {
                    svc.next_spec = Some(new);
                    if let Some(run) = svc.live_mut() {
                        // Stopped for this reload now, not for what an adoption found.
                        run.drift = None;
                    }
                }
                // A oneshot's new config is for its next run: a reload does not run it again
                // (`candor run` does).
                if svc.wanted && svc.spec.kind != candor_spec::ServiceKind::Oneshot {
                    svc.start = Some(ScheduledStart {
                        due: now,
                        restart: false,
                    });
                }
            }
            _ => {}
        }
    }

    /// Take a spec whose differences apply without a restart (log limits, restart_budget,
    /// update, where it was defined).
    fn apply_live(&mut self, name: &ServiceName, new: Arc<candor_spec::ServiceSpec>) {
        let Some(svc) = self.facts.svc_mut(name) else {
            return;
        };
        let logs_changed = svc.spec.logs != new.logs;
        if svc.next_spec.is_some() {
            // A change waits for the run's end: it takes the new spec then.
            svc.next_spec = Some(new.clone());
        } else {
            svc.spec = new.clone();
        }
        if logs_changed {
            // Log limits apply to the running service: no restart for them.
            self.out.push(crate::Effect::ConfigureLogs {
                service: name.to_string(),
                logs: new.logs,
            });
        }
    }

    /// A service, or each instance of a replicated one, goes (once its run is over).
    fn remove_service(&mut self, name: &ServiceName) {
        if self.facts.groups.remove(name).is_some() {
            let all: Vec<ServiceName> = crate::groups::members(&self.facts.services, name)
                .map(|(_, s)| s.spec.name.clone())
                .collect();
            for m in all {
                self.remove_member(&m);
            }
            self.facts.specs_changed();
            return;
        }
        if self.remove_member(name) {
            self.note(
                name.as_str(),
                "removed",
                "removed from config".into(),
                api::EventDetail::None {},
            );
        }
    }

    /// A new service, or a replicated one with its instances, due now.
    fn add_service(&mut self, new: &candor_spec::ServiceSpec) {
        let now = self.mono();
        let name = new.name.clone();
        if new.is_group() {
            let (spec, _, wanted) = crate::plan::group_parts(new);
            let group = crate::groups::Group::new(spec, wanted);
            let generation = group.generation;
            self.facts.groups.insert(name.clone(), group);
            for i in 1..=wanted {
                self.add_member(&name, i, generation);
            }
        } else {
            self.facts.services.insert(
                name.clone(),
                Arc::new(Service::new(Arc::new(new.clone()), now)),
            );
            self.facts.touched.insert(name);
        }
        self.facts.specs_changed();
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
