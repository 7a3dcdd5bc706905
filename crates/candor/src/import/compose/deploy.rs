//! A compose service's `deploy` (replicas, resource limits, restart policy), `scale` and the
//! older resource keys (`mem_limit`, `cpus`, `ulimits`) as Candor's `replicas` and `limits`.

use serde_json::json;

use super::super::draft::{Draft, DraftService};
use super::super::fields;
use super::super::yaml::{Entry, Value};

pub fn replicas(draft: &mut Draft, svc: &mut DraftService, e: &Entry) {
    match e.value.int() {
        Some(n) if n > 1 => svc.set("replicas", n),
        Some(1) => {}
        _ => draft.warn(
            e.line,
            format!("`{}` is not a number of at least 1; left out", e.key),
        ),
    }
}

pub fn memory(draft: &mut Draft, svc: &mut DraftService, e: &Entry) {
    let text = e.value.scalar().unwrap_or_default();
    // Compose sizes: a number of bytes, or b/k/m/g (1024-based, either case).
    let t = text.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let size = match unit {
        "" => Some(format!("{num}B")),
        "k" => Some(format!("{num}KiB")),
        "m" => Some(format!("{num}MiB")),
        "g" => Some(format!("{num}GiB")),
        _ => None,
    };
    match size.filter(|s| candor_spec::parse_size(s).is_ok_and(|b| b >= 1 << 20)) {
        Some(s) => svc.set("limits", json!({ "memory_max": s })),
        None => draft.warn(
            e.line,
            format!(
                "`{}` = {text} is not a size of at least 1MiB; left out",
                e.key
            ),
        ),
    }
}

pub fn cpus(draft: &mut Draft, svc: &mut DraftService, e: &Entry) {
    let cpus = match &e.value.value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    };
    match cpus.filter(|c| *c > 0.0) {
        Some(c) => svc.set(
            "limits",
            json!({ "cpu_max": format!("{}%", (c * 100.0).round() as u64) }),
        ),
        None => draft.warn(
            e.line,
            format!("`{}` is not a positive number; left out", e.key),
        ),
    }
}

pub fn ulimits(draft: &mut Draft, svc: &mut DraftService, e: &Entry) {
    for u in e.value.entries().unwrap_or_default() {
        let n = match &u.value.value {
            Value::Map(_) => u.value.get("soft").and_then(|s| s.value.int()),
            _ => u.value.int(),
        };
        match (u.key.as_str(), n) {
            ("nofile", Some(n)) if n > 0 => svc.set("limits", json!({ "nofile": n })),
            _ => draft.warn(
                u.line,
                format!(
                    "key `ulimits.{}` has no Candor equivalent (only nofile); left out",
                    u.key
                ),
            ),
        }
    }
}

pub fn deploy(draft: &mut Draft, svc: &mut DraftService, e: &Entry, restart_given: &mut bool) {
    for d in e.value.entries().unwrap_or_default() {
        match d.key.as_str() {
            "replicas" => replicas(draft, svc, d),
            "resources" => {
                for r in d.value.entries().unwrap_or_default() {
                    if r.key != "limits" {
                        draft.warn(r.line, format!("key `deploy.resources.{}`: Candor enforces limits only (cgroup maximums); left out", r.key));
                        continue;
                    }
                    for l in r.value.entries().unwrap_or_default() {
                        match l.key.as_str() {
                            "memory" => memory(draft, svc, l),
                            "cpus" => cpus(draft, svc, l),
                            "pids" => match l.value.int() {
                                Some(n) if n > 0 => svc.set("limits", json!({ "pids_max": n })),
                                _ => draft.warn(l.line, "deploy.resources.limits.pids is not a positive number; left out"),
                            },
                            other => draft.warn(l.line, format!("key `deploy.resources.limits.{other}` has no Candor equivalent; left out")),
                        }
                    }
                }
            }
            "restart_policy" => {
                for p in d.value.entries().unwrap_or_default() {
                    match p.key.as_str() {
                        "condition" => {
                            let policy = match p.value.as_str() {
                                Some("none") => "never",
                                Some("on-failure") => "on-failure",
                                Some("any") => "always",
                                _ => {
                                    draft.warn(p.line, "deploy.restart_policy.condition is not none, on-failure or any; left out");
                                    continue;
                                }
                            };
                            svc.set("restart", policy);
                            *restart_given = true;
                        }
                        "max_attempts" => match p.value.int() {
                            Some(n) if n > 0 => svc.set("retries", n),
                            _ => draft.warn(p.line, "deploy.restart_policy.max_attempts is not a positive number; left out"),
                        },
                        "delay" => match p.value.scalar().and_then(|t| fields::duration_text(&t)) {
                            Some(dl) => svc.set("backoff", json!({ "initial": dl })),
                            None => draft.warn(p.line, "deploy.restart_policy.delay is not a duration; left out"),
                        },
                        "window" => match p.value.scalar().and_then(|t| fields::duration_text(&t)) {
                            Some(w) => svc.set("backoff", json!({ "reset_after": w })),
                            None => draft.warn(p.line, "deploy.restart_policy.window is not a duration; left out"),
                        },
                        other => draft.warn(p.line, format!("key `deploy.restart_policy.{other}` has no Candor equivalent; left out")),
                    }
                }
            }
            other => draft.warn(
                d.line,
                format!("key `deploy.{other}` is about a Swarm or orchestrator and has no Candor equivalent; left out"),
            ),
        }
    }
}
