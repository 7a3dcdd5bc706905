//! `candor rollout status|undo|resume NAME`: a replicated service's rollout, read from its
//! group row, and the two ways on from a halt.

use crate::cli::RolloutCommand;
use crate::client::{encode, Client};
use crate::cmd::{fail, print_json};
use crate::{FAILED, OK};

pub async fn rollout(client: &Client, action: RolloutCommand) -> u8 {
    let json = action.json();
    let (name, post) = match &action {
        RolloutCommand::Status { name, .. } => (name, None),
        RolloutCommand::Undo { name, .. } => (name, Some("undo")),
        RolloutCommand::Resume { name, .. } => (name, Some("resume")),
    };
    let answer = match post {
        Some(what) => {
            let path = format!("/v1/services/{}/rollout/{what}", encode(name));
            client
                .json::<candor_api::ServiceStatus>("POST", &path)
                .await
        }
        None => {
            let path = format!("/v1/services/{}", encode(name));
            client.json::<candor_api::ServiceStatus>("GET", &path).await
        }
    };
    let status = match answer {
        Ok(s) => s,
        Err(e) => return fail(e, json),
    };
    let Some(replicas) = status.replicas.clone() else {
        eprintln!(
            "candor: {name} is not replicated: it has no rollouts (set `replicas` in its config)"
        );
        return FAILED;
    };
    if json {
        return print_json(&replicas.rollout);
    }
    print!("{}", describe(&status, &replicas));
    OK
}

/// A rollout in words: one line for where it is, then each instance with its generation.
fn describe(status: &candor_api::ServiceStatus, r: &candor_api::Replicas) -> String {
    let Some(ro) = &r.rollout else {
        return format!(
            "{}: no rollout under way; generation {}, {}/{} running ({})\n",
            status.name, r.generation, r.running, r.wanted, status.reason
        );
    };
    let mut out = format!(
        "{}: {} {} update, generation {} → {} ({}); {} of {} updated; started {}\n",
        ro.service,
        ro.state,
        ro.strategy,
        ro.from_generation,
        ro.to_generation,
        ro.why,
        ro.updated,
        ro.total,
        ro.started
    );
    if let Some(h) = &ro.halted {
        out += &format!("  {h}\n");
    }
    for i in &ro.instances {
        let age = if i.generation == ro.to_generation {
            "new"
        } else {
            "old"
        };
        let spare = if i.spare { ", spare" } else { "" };
        out += &format!(
            "  {:<12} g{} ({age}{spare})  {}\n",
            i.name, i.generation, i.state
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_halted_rollout_names_its_reason_and_every_instance_with_its_generation() {
        let r = candor_api::Replicas {
            wanted: 3,
            configured: 3,
            running: 3,
            instances: vec!["api@1".into(), "api@2".into()],
            strategy: "rolling".into(),
            generation: 2,
            rollout: Some(candor_api::Rollout {
                service: "api".into(),
                state: "halted".into(),
                strategy: "rolling".into(),
                from_generation: 1,
                to_generation: 2,
                why: "env.VERSION changed".into(),
                updated: 1,
                total: 3,
                started: "2026-12-07T08:00:00Z".into(),
                halted: Some("rollout halted at api@2: new run exited with code 1 before ready; 1 of 3 updated; `candor rollout undo api` returns to the old config".into()),
                instances: vec![
                    candor_api::RolloutInstance { name: "api@1".into(), generation: 2, state: "running".into(), spare: false },
                    candor_api::RolloutInstance { name: "api@4".into(), generation: 2, state: "running".into(), spare: true },
                ],
            }),
        };
        let status: candor_api::ServiceStatus = serde_json::from_value(serde_json::json!({
            "name": "api", "state": "degraded", "reason": "x", "since": "", "pid": null,
            "uptime_s": null, "restarts": 0, "last_exit": null, "ready": null, "probes": [],
            "sockets": [], "fds": null, "rss_bytes": null,
            "logs": {"lines": 0, "dropped": 0, "folded": 0}, "runs": 0, "next_start": null,
            "status_text": null
        }))
        .unwrap();
        let text = describe(&status, &r);
        assert!(text.starts_with("api: halted rolling update, generation 1 → 2 (env.VERSION changed); 1 of 3 updated"), "{text}");
        assert!(
            text.contains("  rollout halted at api@2: new run exited with code 1"),
            "{text}"
        );
        assert!(
            text.contains("api@4        g2 (new, spare)  running"),
            "{text}"
        );
    }
}
