//! The `after` graph: unknown targets, cycles, and start order.

use std::collections::{BTreeMap, BTreeSet};

use crate::{ServiceName, ServiceSpec};

/// A cycle in `after`, as the names along it, first repeated at the end.
pub(crate) fn find_cycle(
    services: &BTreeMap<ServiceName, ServiceSpec>,
) -> Option<Vec<ServiceName>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        n: &ServiceName,
        services: &BTreeMap<ServiceName, ServiceSpec>,
        marks: &mut BTreeMap<ServiceName, Mark>,
        stack: &mut Vec<ServiceName>,
    ) -> Option<Vec<ServiceName>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(n.clone());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.clone(), Mark::Visiting);
        stack.push(n.clone());
        if let Some(spec) = services.get(n) {
            for dep in &spec.after {
                if let Some(c) = visit(dep, services, marks, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        marks.insert(n.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in services.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(n, services, &mut marks, &mut stack) {
            return Some(c);
        }
    }
    None
}

/// Names ordered so that every service comes after its `after` targets (ties by name).
/// Assumes no cycle; unknown targets are ignored.
pub(crate) fn topo_order(services: &BTreeMap<ServiceName, ServiceSpec>) -> Vec<ServiceName> {
    let mut done: BTreeSet<ServiceName> = BTreeSet::new();
    let mut order = Vec::with_capacity(services.len());
    while order.len() < services.len() {
        let before = order.len();
        for (name, spec) in services {
            if done.contains(name) {
                continue;
            }
            if spec
                .after
                .iter()
                .all(|d| done.contains(d) || !services.contains_key(d))
            {
                done.insert(name.clone());
                order.push(name.clone());
            }
        }
        if order.len() == before {
            // A cycle slipped through; append the rest by name rather than loop forever.
            for name in services.keys() {
                if done.insert(name.clone()) {
                    order.push(name.clone());
                }
            }
        }
    }
    order
}
