//! Replicated services in the CLI's lists and details: each group's row with its instances
//! under it in index order, a group's replicas and rollout in words.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use candor_api::{Replicas, Rollout, RolloutInstance, ServiceStatus};

/// The number after the `@` of an instance's name: `api@10` → 10.
pub fn instance_index(name: &str) -> Option<u64> {
    name.rsplit_once('@')?.1.parse().ok()
}

/// One row of a grouped list.
pub struct Placed<'a> {
    pub service: &'a ServiceStatus,
    /// Shown under its group's row (indented).
    pub instance: bool,
}

impl Placed<'_> {
    /// The name as the list shows it: an instance indented under its group.
    pub fn name(&self) -> String {
        match self.instance {
            true => format!("  {}", self.service.name),
            false => self.service.name.clone(),
        }
    }
}

/// The list with each group's instances right under the group's row, by index (`api@2`
/// before `api@10`); groups and plain services in the order `first` gives (a stable sort,
/// so `|_, _| Ordering::Equal` keeps the daemon's). An instance whose group has no row is
/// placed like a plain service.
pub fn arrange<'a>(
    list: &'a [ServiceStatus],
    first: impl FnMut(&&'a ServiceStatus, &&'a ServiceStatus) -> Ordering,
) -> Vec<Placed<'a>> {
    let names: HashSet<&str> = list.iter().map(|s| s.name.as_str()).collect();
    let group_of = |s: &'a ServiceStatus| {
        s.group
            .as_deref()
            .filter(|g| *g != s.name && names.contains(g))
    };
    let mut instances: HashMap<&str, Vec<&ServiceStatus>> = HashMap::new();
    let mut tops = Vec::new();
    for s in list {
        match group_of(s) {
            Some(g) => instances.entry(g).or_default().push(s),
            None => tops.push(s),
        }
    }
    tops.sort_by(first);
    let mut out = Vec::with_capacity(list.len());
    for top in tops {
        out.push(Placed {
            service: top,
            instance: false,
        });
        if let Some(mut under) = instances.remove(top.name.as_str()) {
            under.sort_by(|a, b| {
                (instance_index(&a.name), &a.name).cmp(&(instance_index(&b.name), &b.name))
            });
            out.extend(under.into_iter().map(|service| Placed {
                service,
                instance: true,
            }));
        }
    }
    out
}

/// One instance of a rollout as a line shows it: `api@2 g2 starting`, `api@4 g1 running
/// (spare)`.
fn instance_words(i: &RolloutInstance) -> String {
    let spare = if i.spare { " (spare)" } else { "" };
    format!("{} g{} {}{spare}", i.name, i.generation, i.state)
}

/// The line under a group with a rollout: instance by instance while it rolls (`api@1 g2
/// running · api@2 g2 starting · api@3 g1 running`); once halted, the reason it halted, or,
/// when the group's reason already says it, `halted: ` and the instances; none without a
/// rollout or once it is done.
pub fn rollout_line(s: &ServiceStatus) -> Option<String> {
    let rollout = s.replicas.as_ref()?.rollout.as_ref()?;
    let instances = || {
        rollout
            .instances
            .iter()
            .map(instance_words)
            .collect::<Vec<_>>()
            .join(" · ")
    };
    match rollout.state.as_str() {
        "done" => None,
        "halted" => match &rollout.halted {
            Some(h) if *h != s.reason => Some(h.clone()),
            _ => Some(format!("halted: {}", instances())),
        },
        _ => Some(instances()),
    }
}

/// `candor status GROUP`: the group's state and reason, its replicas, strategy and
/// generation, and its rollout with each instance's generation and state.
pub fn details(s: &ServiceStatus, r: &Replicas) -> String {
    let mut out = format!(
        "{}: {}\n  reason:   {}\n  since:    {}\n",
        s.name, s.state, s.reason, s.since
    );
    let scaled = match r.wanted == r.configured {
        true => String::new(),
        false => format!(" (scaled; {} in the config)", r.configured),
    };
    out += &format!(
        "  replicas: {} wanted{scaled}, {} running\n",
        r.wanted, r.running
    );
    out += &format!("  update:   {}, generation {}\n", r.strategy, r.generation);
    match &r.rollout {
        Some(rollout) => {
            // A halted group's reason is the halt's sentence: said once.
            if let Some(h) = rollout.halted.as_ref().filter(|h| **h != s.reason) {
                out += &format!("  halted:   {h}\n");
            }
            out += &rollout_details(rollout)
        }
        None => out += &format!("  instances: {}\n", r.instances.join(", ")),
    }
    out
}

fn rollout_details(r: &Rollout) -> String {
    let state = match r.state.as_str() {
        "rolling" => "under way",
        "halted" => "HALTED",
        other => other,
    };
    let mut out = format!(
        "  rollout:  {state} ({}), generation {} → {}, {} of {} updated, started {}\n",
        r.strategy, r.from_generation, r.to_generation, r.updated, r.total, r.started
    );
    out += &format!("  why:      {}\n", r.why);
    out += "  instances:\n";
    let width = r
        .instances
        .iter()
        .map(|i| i.name.chars().count())
        .max()
        .unwrap_or(0);
    for i in &r.instances {
        let spare = if i.spare { "  (spare)" } else { "" };
        out += &format!(
            "    {:width$}  g{}  {}{spare}\n",
            i.name, i.generation, i.state
        );
    }
    out
}
