//! What a reload does to each service, and why: `plan` says it without changing anything
//! (`candor reload --plan`), and `reload` carries out the same decisions ([`decide`]), so the
//! plan is what happens.

use std::sync::Arc;

use candor_api as api;
use candor_spec::{ServiceName, ServiceSpec, Spec, Strategy};

use crate::derive::Services;
use crate::groups::members;
use crate::groups::Group;
use std::collections::BTreeMap;

/// What a reload does to one service.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Unchanged,
    /// Only what applies live changed (log limits, `restart_budget`, update strategy).
    Live(String),
    New,
    Removed,
    /// Stopped and started again from the new config (a plain service that runs).
    Restart(String),
    /// Not running: the new config is used at its next start.
    Apply(String),
    /// A replicated service: its instances moved to the new config with its strategy.
    Rollout {
        why: String,
        strategy: Strategy,
    },
    /// A replicated service whose count changed (and maybe more: `then` is the rollout).
    Scale {
        from: u32,
        to: u32,
        then: Option<Box<Decision>>,
    },
    /// Replicated now and not before, or the other way: the old one stops, the new one starts.
    Replace(String),
}

/// The parts of a service's config that differ, named as the config names them
/// (`env.RUST_LOG`, `command`, `probe`); empty when only what applies live differs.
pub fn what_changed(old: &ServiceSpec, new: &ServiceSpec) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! field {
        ($($f:ident),+) => {$(
            if old.$f != new.$f {
                out.push(stringify!($f).to_string());
            }
        )+};
    }
    field!(kind, command);
    for key in old.env.keys().chain(new.env.keys()) {
        if old.env.get(key) != new.env.get(key) && !out.contains(&format!("env.{key}")) {
            out.push(format!("env.{key}"));
        }
    }
    if old.env_from_files != new.env_from_files || old.env_files != new.env_files {
        out.push("env_file".into());
    }
    field!(
        inherit_env,
        workdir,
        user,
        group,
        groups,
        umask,
        after,
        restart,
        backoff,
        stop,
        ready,
        ready_timeout,
        watchdog,
        probe,
        on_unhealthy,
        sockets,
        activated,
        limits,
        main,
        reload_signal,
        reload
    );
    out
}

/// Whether only what a reload applies live differs (logs, restart_budget, update, replicas).
fn live_only(old: &ServiceSpec, new: &ServiceSpec) -> Option<String> {
    let mut parts = Vec::new();
    if old.logs != new.logs {
        parts.push("log limits");
    }
    if old.restart_budget != new.restart_budget {
        parts.push("restart_budget");
    }
    if old.update != new.update {
        parts.push("update");
    }
    // A job's schedule, condition, timeout and retries are read when it next fires, starts,
    // runs or fails: no restart for them.
    if old.schedule != new.schedule {
        parts.push("schedule");
    }
    if old.condition != new.condition {
        parts.push("condition");
    }
    if old.timeout != new.timeout {
        parts.push("timeout");
    }
    if old.retries != new.retries {
        parts.push("retries");
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The services and groups a plan is made against: the brain's, or a published board's.
#[derive(Clone, Copy)]
pub struct Now<'a> {
    pub services: &'a Services,
    pub groups: &'a BTreeMap<ServiceName, Group>,
}

impl<'a> From<&'a crate::Facts> for Now<'a> {
    fn from(f: &'a crate::Facts) -> Self {
        Now {
            services: &f.services,
            groups: &f.groups,
        }
    }
}

/// The decision for each service of the old and the new config, in name order.
pub fn decide<'a>(facts: impl Into<Now<'a>>, spec: &Spec) -> Vec<(ServiceName, Decision)> {
    let facts: Now<'a> = facts.into();
    let mut out = Vec::new();
    for (name, new) in &spec.services {
        let d = match (
            facts.groups.get(name),
            facts.services.get(name),
            new.is_group(),
        ) {
            (None, None, _) => Decision::New,
            (Some(_), _, false) | (None, Some(_), true) => Decision::Replace(if new.is_group() {
                format!("now replicated: {} instances", new.replicas.unwrap_or(1))
            } else {
                "no longer replicated".into()
            }),
            (Some(g), _, true) => {
                let changed = what_changed(&g.spec, new);
                let then = (!changed.is_empty()).then(|| Decision::Rollout {
                    why: format!("{} changed", changed.join(", ")),
                    strategy: new.update.strategy,
                });
                let to = new.replicas.unwrap_or(1);
                match then {
                    _ if to != g.wanted => Decision::Scale {
                        from: g.wanted,
                        to,
                        then: then.map(Box::new),
                    },
                    Some(r) => r,
                    None => match live_only(&g.spec, new) {
                        Some(w) => Decision::Live(w),
                        None => Decision::Unchanged,
                    },
                }
            }
            (None, Some(svc), false) => {
                let run_drift = svc
                    .live()
                    .filter(|r| r.pid().is_some())
                    .map(|r| crate::digest::drift(r.digest.as_ref(), new, true));
                let predates = match &run_drift {
                    Some(Some(crate::Drift::Differs(parts))) => parts.clone(),
                    _ => Vec::new(),
                };
                let mut changed = what_changed(&svc.spec, new);
                if changed.is_empty() && !predates.is_empty() {
                    changed = predates
                        .iter()
                        .map(|p| format!("{p} (its run was started from another config)"))
                        .collect();
                }
                if changed.is_empty() {
                    match live_only(&svc.spec, new) {
                        Some(w) => Decision::Live(w),
                        None => Decision::Unchanged,
                    }
                } else if svc.is_down() || svc.spec.kind == candor_spec::ServiceKind::Oneshot {
                    // A oneshot's run is left to finish (`must_stop`): the next run uses it.
                    Decision::Apply(format!("{} changed", changed.join(", ")))
                } else {
                    Decision::Restart(format!("{} changed", changed.join(", ")))
                }
            }
        };
        out.push((name.clone(), d));
    }
    for name in facts.groups.keys() {
        if !spec.services.contains_key(name) {
            out.push((name.clone(), Decision::Removed));
        }
    }
    for (name, svc) in facts.services {
        if svc.spec.instance.is_none() && !svc.removed && !spec.services.contains_key(name) {
            out.push((name.clone(), Decision::Removed));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `candor reload --plan`: each decision in words.
pub fn plan<'a>(facts: impl Into<Now<'a>>, spec: &Spec) -> api::ReloadPlan {
    let facts: Now<'a> = facts.into();
    let services = decide(facts, spec)
        .into_iter()
        .map(|(name, d)| item(&facts, spec, &name, &d))
        .collect();
    api::ReloadPlan {
        services,
        notes: Vec::new(),
    }
}

fn item(facts: &Now<'_>, spec: &Spec, name: &ServiceName, d: &Decision) -> api::PlanItem {
    let instances = |n: u32| {
        if n == 1 {
            "1 instance".to_string()
        } else {
            format!("{n} instances")
        }
    };
    let live = members(facts.services, name)
        .filter(|(_, s)| !s.removed)
        .count() as u32;
    let (action, why, what, all_at_once) = match d {
        Decision::Unchanged => ("unchanged", String::new(), "unchanged".to_string(), false),
        Decision::Live(w) => (
            "apply",
            format!("{w} changed"),
            "applied live, no restart".to_string(),
            false,
        ),
        Decision::New => {
            let n = spec.services.get(name).and_then(|s| s.replicas);
            let what = match n {
                Some(n) => format!("start {} (new)", instances(n)),
                None => "start (new)".to_string(),
            };
            ("start", "new".to_string(), what, false)
        }
        Decision::Removed => {
            let what = if facts.groups.contains_key(name) {
                format!("stop {} (removed)", instances(live))
            } else {
                "stop (removed)".to_string()
            };
            ("stop", "removed".to_string(), what, false)
        }
        Decision::Restart(why) => (
            "restart",
            why.clone(),
            format!(
                "restart ({why}) — stops its only instance: it is down until the new run is up"
            ),
            true,
        ),
        Decision::Apply(why) => (
            "apply",
            why.clone(),
            match facts.services.get(name).filter(|s| !s.is_down()) {
                Some(_) => format!(
                    "new config used by its next run ({why}; the current run is left to finish)"
                ),
                None => format!("new config used at its next start ({why}; not running)"),
            },
            false,
        ),
        Decision::Rollout { why, strategy } => rollout_words(*strategy, live, why),
        Decision::Scale { from, to, then } => {
            let mut what = format!(
                "scale {from} → {to} (replicas in the config; the config wins over `candor scale`)"
            );
            let mut all = false;
            let mut why = "replicas changed".to_string();
            if let Some(r) = then {
                if let Decision::Rollout { why: w, strategy } = &**r {
                    let (_, _, words, a) = rollout_words(*strategy, (*to).min(live), w);
                    what += &format!(", then {words}");
                    all = a;
                    why += &format!(", {w}");
                }
            }
            ("scale", why, what, all)
        }
        Decision::Replace(why) => (
            "restart",
            why.clone(),
            format!("stop, then start ({why}) — stops every instance at once"),
            true,
        ),
    };
    api::PlanItem {
        service: name.to_string(),
        action: action.into(),
        why,
        text: format!("{name}: {what}"),
        all_at_once,
    }
}

fn rollout_words(strategy: Strategy, n: u32, why: &str) -> (&'static str, String, String, bool) {
    match strategy {
        Strategy::Rolling => (
            "rolling",
            why.to_string(),
            format!(
                "rolling restart of {} ({why})",
                if n == 1 {
                    "1 instance".to_string()
                } else {
                    format!("{n} instances")
                }
            ),
            false,
        ),
        Strategy::Overlap => (
            "overlap",
            why.to_string(),
            format!("overlapping restart: the new run starts beside the old one ({why})"),
            false,
        ),
        Strategy::StopFirst => (
            "restart",
            why.to_string(),
            format!("restart of every instance at once ({why}; update.strategy = \"stop-first\") — stops every instance at once"),
            true,
        ),
    }
}

/// The instance specs of `spec` and its count (for a reload that adds or changes a group).
pub(crate) fn group_parts(spec: &ServiceSpec) -> (Arc<ServiceSpec>, crate::groups::Specs, u32) {
    (
        Arc::new(spec.clone()),
        crate::group_requests::specs_of(spec),
        spec.replicas.unwrap_or(1),
    )
}
