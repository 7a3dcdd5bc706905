//! Requests that name a replicated service: start, stop and restart of the whole group (a
//! restart with its update strategy, or one given once), `scale`, `rollout undo|resume`.

use std::sync::Arc;

use candor_spec::{ServiceName, Strategy};

use crate::effect::Reply;
use crate::groups::members;
use crate::input::{Request, RequestId, RolloutAction};
use crate::step::Cx;

impl Cx<'_> {
    /// Answer `request` if it names a group (or is a group-only request); false otherwise.
    pub(crate) fn group_request(&mut self, id: RequestId, request: &Request) -> bool {
        let name = match request {
            Request::Start(n) | Request::Stop(n) | Request::Restart(n) => n,
            Request::RestartWith(n, _)
            | Request::Scale { name: n, .. }
            | Request::Rollout(n, _) => n,
            _ => return false,
        };
        let group = ServiceName::new(name)
            .ok()
            .filter(|g| self.facts.groups.contains_key(g));
        let Some(group) = group else {
            if matches!(
                request,
                Request::Start(_) | Request::Stop(_) | Request::Restart(_)
            ) {
                return false;
            }
            let error = if self.facts.name_of(name).is_some() {
                format!("`{name}` is not replicated; set `replicas = 1` (or more) in its config and reload to scale it or roll it out")
            } else {
                format!("no replicated service named `{name}`")
            };
            self.reply(id, Reply::Error { status: 404, error });
            return true;
        };
        if self.facts.shutdown.is_some() && !matches!(request, Request::Stop(_)) {
            let error = "the supervisor is shutting down".to_string();
            self.reply(id, Reply::Error { status: 409, error });
            return true;
        }
        let result = match request {
            Request::Start(_) | Request::Stop(_) => {
                self.each_member(&group, matches!(request, Request::Start(_)));
                Ok(())
            }
            Request::Restart(_) => self.restart_group(&group, None),
            Request::RestartWith(_, s) => self.restart_group(&group, Some(*s)),
            Request::Scale {
                replicas, specs, ..
            } => {
                self.scale(&group, *replicas, specs.clone());
                Ok(())
            }
            Request::Rollout(_, RolloutAction::Undo) => self.undo(&group),
            Request::Rollout(_, RolloutAction::Resume) => self.resume(&group),
            _ => Ok(()),
        };
        match result {
            Ok(()) => self.reply(id, Reply::Done),
            Err(error) => self.reply(id, Reply::Error { status: 409, error }),
        }
        true
    }

    /// Start (or stop) every instance the group wants.
    fn each_member(&mut self, group: &ServiceName, start: bool) {
        let now = self.mono();
        let wanted = self.facts.groups.get(group).map_or(0, |g| g.wanted);
        let names: Vec<ServiceName> = members(&self.facts.services, group)
            .filter(|(i, s)| *i <= wanted && !s.removed)
            .map(|(_, s)| s.spec.name.clone())
            .collect();
        for name in names {
            let Some(svc) = self.facts.svc_mut(&name) else {
                continue;
            };
            if start {
                svc.wanted = true;
                svc.streak = 0;
                svc.refusals = 0;
                if svc
                    .live()
                    .is_none_or(|r| r.stop.is_some() || r.main_exit.is_some())
                {
                    svc.start = Some(crate::ScheduledStart {
                        due: now,
                        restart: false,
                    });
                }
            } else {
                svc.wanted = false;
                svc.start = None;
            }
        }
    }

    /// A new generation of the same config, rolled out with the service's strategy or `with`.
    fn restart_group(&mut self, group: &ServiceName, with: Option<Strategy>) -> Result<(), String> {
        let Some(g) = self.facts.groups.get(group) else {
            return Ok(());
        };
        if let Some(r) = g.rollout.as_ref().filter(|r| r.halted.is_none()) {
            return Err(format!(
                "a rollout of {group} is under way ({} of {} updated); `candor rollout status {group}` shows it — one at a time",
                r.settled.len(),
                g.wanted
            ));
        }
        let mut update = g.spec.update;
        if let Some(s) = with {
            update.strategy = s;
            if s == Strategy::Rolling && update.max_surge == 0 && update.max_unavailable == 0 {
                update.max_surge = 1;
            }
        }
        let why = match with {
            Some(s) => format!("restart requested, strategy {}", s.as_str()),
            None => "restart requested".to_string(),
        };
        let (spec, specs) = (g.spec.clone(), g.specs.clone());
        if let Some(g) = self.facts.groups.get_mut(group) {
            g.rollout = None;
        }
        // Every instance is started anew, the spares first when rolling.
        self.begin_rollout(group, spec, specs, update, why);
        Ok(())
    }

    fn undo(&mut self, group: &ServiceName) -> Result<(), String> {
        let Some(g) = self.facts.groups.get(group) else {
            return Ok(());
        };
        let Some((spec, specs)) = g.previous.clone() else {
            return Err(format!(
                "{group} has no earlier config to return to: none was applied since the supervisor started (or it restarted since)"
            ));
        };
        let update = g.rollout.as_ref().map_or(g.spec.update, |r| r.update);
        let update = if update.strategy == Strategy::StopFirst {
            spec.update
        } else {
            update
        };
        if let Some(g) = self.facts.groups.get_mut(group) {
            g.rollout = None;
        }
        self.begin_rollout(group, spec, specs, update, "undo".into());
        Ok(())
    }

    fn resume(&mut self, group: &ServiceName) -> Result<(), String> {
        let now = self.mono();
        let Some(r) = self
            .facts
            .groups
            .get_mut(group)
            .and_then(|g| g.rollout.as_mut())
            .filter(|r| r.halted.is_some())
        else {
            return Err(format!("no halted rollout of {group} to resume"));
        };
        r.halted = None;
        r.started = now;
        r.wake = None;
        self.drive_rollouts();
        Ok(())
    }
}

/// The instance specs of a group's spec, by index.
pub(crate) fn specs_of(spec: &candor_spec::ServiceSpec) -> crate::groups::Specs {
    Arc::new(
        spec.replica_specs
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u32 + 1, s.clone()))
            .collect(),
    )
}
