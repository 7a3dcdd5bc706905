//! `candor rollout status|undo|resume NAME`: a replicated service's rollout, read from its
//! group row (shown as `candor status NAME` shows a group), and the two ways on from a halt.

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
    // What `candor status NAME` says of a group: its rollout instance by instance.
    print!("{}", crate::render::groups::details(&status, &replicas));
    OK
}
