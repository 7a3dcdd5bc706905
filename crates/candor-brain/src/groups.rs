//! Replicated services. A group's instances (`api@1`…) are ordinary services, each with its
//! own runs, record and cgroup; the group holds what they are made from (the instance specs
//! of one config generation), how many there should be, and a rollout: the runs of one
//! generation replaced by those of the next, one instance at a time, never below
//! `replicas - max_unavailable` instances ready and never above `replicas + max_surge` alive.
//!
//! A rolling rollout first starts the spares (`api@4` for three instances with `max_surge =
//! 1`) on the new generation; once a new run has been ready for `min_ready`, the lowest old
//! instance is stopped and started again on the new generation; at the end the spares go. So
//! instance `api@2` is always instance 2 (`CANDOR_INSTANCE=2`, its `{instance}` ports), and no
//! two runs ever share one instance's name, record or cgroup. A new run that exits, fails or is
//! not ready by `update.timeout` halts the rollout: it is stopped (an instance it replaced is
//! started again from the old generation), the old runs keep serving, and the group is
//! `degraded` with the reason until `candor rollout resume` or `undo`.

use std::collections::BTreeMap;
use std::sync::Arc;

use candor_api as api;
use candor_core::Mono;
use candor_spec::{format_duration, ServiceName, ServiceSpec, Strategy, UpdateSpec};

use crate::derive::{derive, ServiceState, Services};
use crate::facts::{ScheduledStart, Service, Spawn, StopCause};
use crate::step::Cx;

/// Instance specs by index, of one config generation.
pub type Specs = Arc<BTreeMap<u32, Arc<ServiceSpec>>>;

/// A group as the records of an earlier daemon left it.
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// Its count: the highest instance recorded that is not a spare (`candor scale` lasts
    /// across a restart of the daemon; a reload sets the config's again).
    pub wanted: u32,
    /// Spares of a rollout that was under way: taken up, and removed once it is done.
    pub spares: Vec<u32>,
    /// Instance specs beyond those the config parsed.
    pub specs: Specs,
}

/// A replicated service.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The group's config (instance 1's, under the group's name).
    pub spec: Arc<ServiceSpec>,
    /// Its instances' specs, of generation `generation`.
    pub specs: Specs,
    /// Instances it should run: `replicas`, or what `candor scale` said since.
    pub wanted: u32,
    /// The config generation its instances should run.
    pub generation: u64,
    pub rollout: Option<Rollout>,
    /// The generation before the last change, for `rollout undo` (unknown after a daemon
    /// restart).
    pub previous: Option<(Arc<ServiceSpec>, Specs)>,
}

/// Runs of one generation being replaced by the next.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    pub update: UpdateSpec,
    pub from: u64,
    pub to: u64,
    pub why: String,
    pub started: Mono,
    /// Instances whose new run has been ready for `min_ready` in this rollout.
    pub settled: std::collections::BTreeSet<u32>,
    pub halted: Option<Halt>,
    /// The next wake-up asked for (min_ready or the timeout), so it is asked once.
    pub wake: Option<Mono>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Halt {
    pub at: ServiceName,
    /// The whole sentence: "rollout halted at api@2: new run exited with code 1 before
    /// ready; 1 of 3 updated; `candor rollout undo api` returns to the old config".
    pub reason: String,
}

impl Group {
    pub fn new(spec: Arc<ServiceSpec>, wanted: u32) -> Self {
        let specs = crate::group_requests::specs_of(&spec);
        Self {
            spec,
            specs,
            wanted,
            generation: 1,
            rollout: None,
            previous: None,
        }
    }
    /// Instances parsed beyond the config's (for `scale`, or found after a restart) join the
    /// current generation's specs; those it has are kept.
    pub fn add_specs(&mut self, more: &Specs) {
        let mut all = (*self.specs).clone();
        for (i, s) in more.iter() {
            all.entry(*i).or_insert_with(|| s.clone());
        }
        self.specs = Arc::new(all);
    }
    /// The spec of instance `i` of the current generation.
    pub fn spec_of(&self, i: u32) -> Option<Arc<ServiceSpec>> {
        self.specs.get(&i).cloned()
    }
    /// Instances a rollout may run at once: wanted and its spares.
    pub fn upto(&self) -> u32 {
        let surge = match &self.rollout {
            Some(r) => r.update.max_surge,
            None => self.spec.update.max_surge,
        };
        self.wanted + surge
    }
}

/// The instances of `group` among `services`, by index.
pub fn members<'a>(
    services: &'a Services,
    group: &ServiceName,
) -> impl Iterator<Item = (u32, &'a Service)> + 'a {
    services
        .range(group.instance_range())
        .filter_map(|(n, s)| Some((n.split_instance()?.1, &**s)))
}

/// Its run is up, ready and not being stopped.
fn serving(svc: &Service) -> bool {
    svc.live()
        .is_some_and(|r| r.is_serving() && r.ready.is_some())
}

/// An instance running generation `to` whose run has been ready `min_ready`.
fn settled_now(svc: &Service, to: u64, min_ready: std::time::Duration, now: Mono) -> bool {
    svc.live().is_some_and(|r| {
        r.generation == to
            && r.is_serving()
            && r.ready.is_some_and(|(at, _)| now.since(at) >= min_ready)
    })
}

/// Why the new run of an instance failed, if it did.
fn failed_new_run(svc: &Service, to: u64) -> Option<String> {
    let run = svc.run.as_ref().filter(|r| r.generation == to)?;
    match &run.spawn {
        Spawn::Failed { error } => return Some(format!("new run could not start: {error}")),
        Spawn::Refused { error } if svc.refusals >= crate::MAX_SPAWN_REFUSALS => {
            return Some(format!("new run could not start: {error}"))
        }
        _ => {}
    }
    if let Some(stop) = &run.stop {
        if let StopCause::GiveUp(why) | StopCause::Unhealthy(why) = &stop.cause {
            return Some(format!("new run {why}"));
        }
        return None;
    }
    let exit = run
        .main_exit
        .or(svc.last_exit.filter(|_| run.ended.is_some()))?;
    let when = if run.ready.is_some() {
        "within min_ready of being ready"
    } else {
        "before ready"
    };
    Some(format!("new run {} {when}", exit.describe(&svc.spec)))
}

impl Cx<'_> {
    /// Look at every group with a rollout under way: start spares, replace old instances as
    /// far as `max_unavailable` allows, halt on a failed new run, finish.
    pub(crate) fn drive_rollouts(&mut self) {
        // Instances adopted from another config (generation 0) are replaced by a rollout.
        let stale: Vec<ServiceName> = self
            .facts
            .groups
            .iter()
            .filter(|(n, g)| {
                g.rollout.is_none()
                    && g.spec.update.strategy != Strategy::StopFirst
                    && members(&self.facts.services, n).any(|(_, s)| {
                        s.live()
                            .is_some_and(|r| r.generation == 0 && r.is_serving())
                    })
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in stale {
            self.resume_stale(&name);
        }
        let names: Vec<ServiceName> = self
            .facts
            .groups
            .iter()
            .filter(|(_, g)| g.rollout.as_ref().is_some_and(|r| r.halted.is_none()))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.drive(&name);
        }
    }

    fn drive(&mut self, name: &ServiceName) {
        let now = self.mono();
        let Some(group) = self.facts.groups.get(name) else {
            return;
        };
        let Some(rollout) = group.rollout.clone() else {
            return;
        };
        let (n, to, u) = (group.wanted, rollout.to, rollout.update);
        let mut settled = rollout.settled.clone();
        let mut failure = None;
        let mut wake: Option<Mono> = None;
        let mut available = 0u32;
        let mut old: Vec<u32> = Vec::new();
        let mut down_old: Vec<u32> = Vec::new();
        let mut present: Vec<u32> = Vec::new();
        for (i, svc) in members(&self.facts.services, name) {
            if svc.removed {
                continue;
            }
            present.push(i);
            let new_gen = svc.generation == to;
            if new_gen && !settled.contains(&i) {
                if settled_now(svc, to, u.min_ready, now) {
                    settled.insert(i);
                } else if let Some(why) = failed_new_run(svc, to) {
                    failure.get_or_insert((i, why));
                } else if let Some((at, _)) = svc.live().and_then(|r| r.ready) {
                    let due = at + u.min_ready;
                    wake = Some(wake.map_or(due, |w| w.min(due)));
                }
            }
            if serving(svc) && (!new_gen || settled.contains(&i)) && svc.next_spec.is_none() {
                available += 1;
            }
            if !new_gen && svc.next_generation != to && i <= n {
                if svc.live().is_some() {
                    old.push(i);
                } else {
                    down_old.push(i);
                }
            }
        }
        if let Some((i, why)) = failure {
            return self.halt(name, i, why);
        }
        if now >= rollout.started + u.timeout {
            let pending: Vec<u32> = present
                .iter()
                .copied()
                .filter(|i| *i <= n && !settled.contains(i))
                .collect();
            let at = pending.first().copied().unwrap_or(1);
            let why = format!(
                "not finished within update.timeout ({})",
                format_duration(u.timeout)
            );
            return self.halt(name, at, why);
        }
        // Instances that are down (stopped, failed, never started) move to the new
        // generation at no cost; a wanted one starts.
        for i in down_old {
            self.assign(name, i, to, false);
        }
        // Instances 1..=n that do not exist yet (scaled up during the rollout).
        for i in 1..=n {
            if !present.contains(&i) {
                self.add_member(name, i, to);
            }
        }
        // Spares, while old instances remain.
        if !old.is_empty() {
            for i in n + 1..=n + u.max_surge {
                if !present.contains(&i) {
                    self.add_member(name, i, to);
                }
            }
        }
        // Replace old instances, lowest first, while enough others serve.
        let floor = n.saturating_sub(u.max_unavailable);
        for i in old {
            if available == 0 || available - 1 < floor {
                break;
            }
            available -= 1;
            self.assign(name, i, to, true);
        }
        let done = (1..=n).all(|i| {
            settled.contains(&i)
                || self
                    .facts
                    .services
                    .get(&ServiceName::instance(name, i))
                    .is_some_and(|s| s.generation == to && !s.wanted)
        });
        if done {
            return self.finish_rollout(name, &rollout);
        }
        let timeout_at = rollout.started + u.timeout;
        let wake = Some(wake.map_or(timeout_at, |w| w.min(timeout_at)));
        let Some(r) = self
            .facts
            .groups
            .get_mut(name)
            .and_then(|g| g.rollout.as_mut())
        else {
            return;
        };
        r.settled = settled;
        if wake != r.wake {
            r.wake = wake;
            if let Some(w) = wake {
                self.timer(w);
            }
        }
    }

    /// Instance `i` of `group` on generation `to`: a down one takes the spec now (and starts
    /// if wanted); a live one (`replace`) is stopped and starts again from it.
    fn assign(&mut self, group: &ServiceName, i: u32, to: u64, replace: bool) {
        let now = self.mono();
        let Some(spec) = self.facts.groups.get(group).and_then(|g| g.spec_of(i)) else {
            return;
        };
        let name = ServiceName::instance(group, i);
        let Some(svc) = self.facts.svc_mut(&name) else {
            return;
        };
        if replace && !svc.is_down() {
            svc.next_spec = Some(spec);
            svc.next_generation = to;
        } else {
            svc.spec = spec;
            svc.generation = to;
        }
        if svc.wanted {
            svc.streak = 0;
            svc.start = Some(ScheduledStart {
                due: now,
                restart: false,
            });
        }
        self.facts.specs_changed();
    }

    /// A new instance `i` of `group`, on generation `generation`, wanted and due now.
    pub(crate) fn add_member(&mut self, group: &ServiceName, i: u32, generation: u64) {
        let now = self.mono();
        let Some(spec) = self.facts.groups.get(group).and_then(|g| g.spec_of(i)) else {
            return;
        };
        let name = spec.name.clone();
        let wanted = self.facts.groups.get(group).map_or(0, |g| g.wanted);
        let mut svc = Service::new(spec, now);
        svc.generation = generation;
        svc.spare = i > wanted;
        self.facts.services.insert(name.clone(), Arc::new(svc));
        self.facts.touched.insert(name);
        self.facts.specs_changed();
    }

    /// Stop and remove service `name` once its run is over (an instance: a spare, or scaled
    /// away); true when it was down and is gone now.
    pub(crate) fn remove_member(&mut self, name: &ServiceName) -> bool {
        let Some(svc) = self.facts.svc_mut(name) else {
            return false;
        };
        svc.removed = true;
        svc.wanted = false;
        svc.start = None;
        if !svc.is_down() {
            return false;
        }
        self.facts.services.remove(name);
        self.facts.windows.remove(name);
        self.facts.specs_changed();
        true
    }

    fn halt(&mut self, group: &ServiceName, i: u32, why: String) {
        let Some(g) = self.facts.groups.get(group) else {
            return;
        };
        let n = g.wanted;
        let Some(rollout) = g.rollout.clone() else {
            return;
        };
        let updated = rollout.settled.iter().filter(|i| **i <= n).count();
        let at = ServiceName::instance(group, i);
        let previous = g.previous.clone();
        let way_back = if previous.is_some() {
            format!("`candor rollout undo {group}` returns to the old config")
        } else {
            format!("`candor rollout resume {group}` tries again")
        };
        let reason = format!("rollout halted at {at}: {why}; {updated} of {n} updated; {way_back}");
        // The failed run goes; an instance it replaced comes back on the old generation.
        if i > n {
            self.remove_member(&at);
        } else if let (Some((_, specs)), true) = (&previous, rollout.from > 0) {
            if let Some(spec) = specs.get(&i).cloned() {
                let now = self.mono();
                if let Some(svc) = self.facts.svc_mut(&at) {
                    if svc.is_down() {
                        svc.spec = spec;
                        svc.generation = rollout.from;
                    } else {
                        svc.next_spec = Some(spec);
                        svc.next_generation = rollout.from;
                    }
                    svc.streak = 0;
                    svc.start = Some(ScheduledStart {
                        due: now,
                        restart: false,
                    });
                }
            }
        }
        // Spares not yet settled go too.
        let spares: Vec<ServiceName> = members(&self.facts.services, group)
            .filter(|(j, _)| *j > n && !rollout.settled.contains(j))
            .map(|(j, _)| ServiceName::instance(group, j))
            .collect();
        for s in spares {
            self.remove_member(&s);
        }
        if let Some(r) = self
            .facts
            .groups
            .get_mut(group)
            .and_then(|g| g.rollout.as_mut())
        {
            r.halted = Some(Halt {
                at: at.clone(),
                reason: reason.clone(),
            });
        }
        self.note(
            group.as_str(),
            "degraded",
            reason,
            api::EventDetail::None {},
        );
    }

    fn finish_rollout(&mut self, group: &ServiceName, rollout: &Rollout) {
        let now = self.mono();
        let Some(g) = self.facts.groups.get_mut(group) else {
            return;
        };
        let n = g.wanted;
        g.rollout = None;
        let spares: Vec<ServiceName> = members(&self.facts.services, group)
            .filter(|(j, _)| *j > n)
            .map(|(j, _)| ServiceName::instance(group, j))
            .collect();
        for s in spares {
            self.remove_member(&s);
        }
        self.note(
            group.as_str(),
            "running",
            format!(
                "rollout done: {n} of {n} instances on generation {} ({}) in {}",
                rollout.to,
                rollout.why,
                format_duration(now.since(rollout.started))
            ),
            api::EventDetail::None {},
        );
    }

    /// A rollout of instances found running another config after a daemon restart: their
    /// old config is not known, so there is no undo.
    fn resume_stale(&mut self, group: &ServiceName) {
        let now = self.mono();
        let Some(g) = self.facts.groups.get_mut(group) else {
            return;
        };
        let why = "config changed while the supervisor was down".to_string();
        g.rollout = Some(Rollout {
            update: g.spec.update,
            from: 0,
            to: g.generation,
            why: why.clone(),
            started: now,
            settled: Default::default(),
            halted: None,
            wake: None,
        });
        let stale: Vec<ServiceName> = members(&self.facts.services, group)
            .filter(|(_, s)| s.live().is_some_and(|r| r.generation == 0))
            .map(|(_, s)| s.spec.name.clone())
            .collect();
        for name in stale {
            if let Some(svc) = self.facts.svc_mut(&name) {
                svc.generation = 0;
            }
        }
        self.note(
            group.as_str(),
            "running",
            format!("rollout of the instances adopted from another config begins ({why}), one instance at a time"),
            api::EventDetail::None {},
        );
    }

    /// Move `group` to `specs` (generation + 1) with `update`'s strategy: a rollout, or every
    /// instance at once for stop-first. `previous` is kept for undo.
    pub(crate) fn begin_rollout(
        &mut self,
        group: &ServiceName,
        spec: Arc<ServiceSpec>,
        specs: Specs,
        update: UpdateSpec,
        why: String,
    ) {
        let now = self.mono();
        let Some(g) = self.facts.groups.get_mut(group) else {
            return;
        };
        let from = g.generation;
        let to = from + 1;
        g.previous = Some((g.spec.clone(), g.specs.clone()));
        g.spec = spec;
        g.specs = specs;
        g.generation = to;
        if update.strategy == Strategy::StopFirst {
            g.rollout = None;
            let all: Vec<u32> = members(&self.facts.services, group)
                .filter(|(_, s)| !s.removed)
                .map(|(i, _)| i)
                .collect();
            for i in all {
                self.assign(group, i, to, true);
            }
            return;
        }
        g.rollout = Some(Rollout {
            update,
            from,
            to,
            why: why.clone(),
            started: now,
            settled: Default::default(),
            halted: None,
            wake: None,
        });
        self.note(
            group.as_str(),
            "running",
            format!(
                "rollout to generation {to} begins ({why}): {}, one instance at a time",
                update.strategy.as_str()
            ),
            api::EventDetail::None {},
        );
        self.drive(group);
    }

    /// `candor scale NAME N`: instances start (due now, paced like any spawn) or go, the
    /// highest first. During a rollout the new count applies to it.
    pub(crate) fn scale(&mut self, group: &ServiceName, wanted: u32, specs: Option<Specs>) {
        let Some(g) = self.facts.groups.get_mut(group) else {
            return;
        };
        if let Some(specs) = specs {
            // More instances than were parsed: the shell parsed the rest from the same config.
            g.add_specs(&specs);
        }
        let generation = g.generation;
        let in_rollout = g.rollout.is_some();
        g.wanted = wanted;
        let counted: Vec<ServiceName> = members(&self.facts.services, group)
            .filter(|(i, s)| *i <= wanted && s.spare)
            .map(|(_, s)| s.spec.name.clone())
            .collect();
        for name in counted {
            if let Some(svc) = self.facts.svc_mut(&name) {
                svc.spare = false;
            }
        }
        let present: Vec<(u32, bool)> = members(&self.facts.services, group)
            .map(|(i, s)| (i, s.removed))
            .collect();
        for i in 1..=wanted {
            match present.iter().find(|(j, _)| *j == i) {
                None => self.add_member(group, i, generation),
                Some((_, true)) => {
                    // Going away (scaled down a moment ago): wanted again.
                    let name = ServiceName::instance(group, i);
                    if let Some(svc) = self.facts.svc_mut(&name) {
                        svc.removed = false;
                        svc.wanted = true;
                        svc.start = Some(ScheduledStart {
                            due: self.now.mono,
                            restart: false,
                        });
                    }
                }
                Some(_) => {}
            }
        }
        let mut gone: Vec<u32> = present
            .iter()
            .filter(|(i, removed)| *i > wanted && !removed)
            .map(|(i, _)| *i)
            .collect();
        // Highest first; during a rollout the spares stay with it.
        gone.sort_unstable_by(|a, b| b.cmp(a));
        for i in gone {
            if in_rollout {
                continue;
            }
            self.remove_member(&ServiceName::instance(group, i));
        }
    }
}

/// How much a state of an instance says about its group: the worst is named.
fn severity(state: ServiceState) -> u8 {
    use ServiceState::*;
    match state {
        Failed => 7,
        Unhealthy => 6,
        Backoff => 5,
        Degraded => 4,
        Stopping => 3,
        Exited => 2,
        Starting => 1,
        Running | Stopped | Done | Skipped => 0,
    }
}

/// The group's own state and reason, from its instances and rollout.
pub fn derive_group(
    services: &Services,
    group: &Group,
    name: &ServiceName,
    now: Mono,
) -> (ServiceState, String) {
    use ServiceState::*;
    let n = group.wanted;
    let mut running = 0u32;
    let mut worst: Option<(ServiceName, ServiceState, String)> = None;
    let mut stopped = 0u32;
    let mut listed = 0u32;
    for (i, svc) in members(services, name) {
        if i > n || svc.removed {
            continue;
        }
        listed += 1;
        let d = derive(services, svc, now);
        match d.state {
            Running => running += 1,
            Stopped => stopped += 1,
            _ => {
                if worst
                    .as_ref()
                    .is_none_or(|w| severity(d.state) > severity(w.1))
                {
                    worst = Some((svc.spec.name.clone(), d.state, d.reason));
                }
            }
        }
    }
    if let Some(r) = &group.rollout {
        if let Some(h) = &r.halted {
            return (Degraded, h.reason.clone());
        }
        let updated = r.settled.iter().filter(|i| **i <= n).count();
        let mut reason = format!(
            "{} update to generation {} ({}): {updated} of {n} updated, {running}/{n} running",
            r.update.strategy.as_str(),
            r.to,
            r.why
        );
        if let Some((who, state, _)) = &worst {
            reason += &format!(" ({who} {})", state.as_str());
        }
        return (if running > 0 { Running } else { Starting }, reason);
    }
    if stopped == listed && listed > 0 {
        return (
            Stopped,
            format!("stopped (0/{n} running); `candor start {name}` starts them"),
        );
    }
    match worst {
        None if running == n => (Running, format!("{running}/{n} running")),
        None => (Starting, format!("{running}/{n} running")),
        Some((who, state, reason)) => {
            // Instances on their way up make the group starting, not degraded.
            let state_of_group = match (running, state) {
                (0, _) => state,
                (_, Starting) => Running,
                _ => Degraded,
            };
            (
                state_of_group,
                format!("{running}/{n} running; {who} {}: {reason}", state.as_str()),
            )
        }
    }
}

/// A group as the API shows it (its rollout instance by instance).
pub fn replicas_status(
    services: &Services,
    group: &Group,
    name: &ServiceName,
    now: Mono,
    wall: impl Fn(Mono) -> String,
) -> api::Replicas {
    let mut listed: Vec<(u32, &Service)> = members(services, name).collect();
    listed.sort_by_key(|(i, _)| *i);
    let running = listed
        .iter()
        .filter(|(i, s)| {
            *i <= group.wanted && derive(services, s, now).state == ServiceState::Running
        })
        .count() as u32;
    let rollout = group.rollout.as_ref().map(|r| api::Rollout {
        service: name.to_string(),
        state: if r.halted.is_some() {
            "halted"
        } else {
            "rolling"
        }
        .into(),
        strategy: r.update.strategy.as_str().into(),
        from_generation: r.from,
        to_generation: r.to,
        why: r.why.clone(),
        updated: r.settled.iter().filter(|i| **i <= group.wanted).count() as u32,
        total: group.wanted,
        started: wall(r.started),
        halted: r.halted.as_ref().map(|h| h.reason.clone()),
        instances: listed
            .iter()
            .map(|(i, s)| api::RolloutInstance {
                name: s.spec.name.to_string(),
                generation: s.live().map_or(s.generation, |r| r.generation),
                state: derive(services, s, now).state.as_str().into(),
                spare: *i > group.wanted,
            })
            .collect(),
    });
    api::Replicas {
        wanted: group.wanted,
        configured: group.spec.replicas.unwrap_or(1),
        running,
        instances: listed
            .iter()
            .map(|(_, s)| s.spec.name.to_string())
            .collect(),
        strategy: group.spec.update.strategy.as_str().into(),
        generation: group.generation,
        rollout,
    }
}
