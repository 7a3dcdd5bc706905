//! The requests that change services: start, stop, restart, reset-failed, reload NAME,
//! kill, and shutdown of the daemon.

use std::time::Duration;

use crate::cli::ActionArgs;
use crate::client::{encode, Client, ClientError};
use crate::cmd::{fail, print_json};
use crate::{FAILED, OK};

/// `candor start|stop|restart NAME…`: the request for each, optionally waiting for its end.
pub async fn action(client: &Client, verb: &str, a: ActionArgs) -> u8 {
    let mut code = OK;
    if a.strategy.is_some() && verb != "restart" {
        eprintln!("candor: --strategy is for restart (of a replicated service)");
        return crate::USAGE;
    }
    for name in &a.names {
        let mut params = Vec::new();
        if a.wait {
            params.push("wait=true".to_string());
            if let Some(t) = &a.timeout {
                params.push(format!("timeout={}", encode(t)));
            }
        }
        if let Some(s) = &a.strategy {
            params.push(format!("strategy={}", encode(s)));
        }
        let q = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        let path = format!("/v1/services/{}/{verb}{q}", encode(name));
        match client
            .json::<candor_api::ServiceStatus>("POST", &path)
            .await
        {
            Ok(s) if a.json => {
                print_json(&s);
            }
            Ok(s) => println!("{}: {} ({})", s.name, s.state, s.reason),
            Err(e) => code = code.max(fail(e, a.json)),
        }
    }
    code
}

/// `candor reset-failed`: restart the failed services (with `force`, every one).
pub async fn reset_failed(client: &Client, force: bool, json: bool) -> u8 {
    let path = if force {
        "/v1/reset-failed?force=true"
    } else {
        "/v1/reset-failed"
    };
    match client.json::<candor_api::ResetFailed>("POST", path).await {
        Ok(r) if json => print_json(&r),
        Ok(r) => {
            let list = |v: &Vec<String>| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            println!("restarted: {}", list(&r.restarted));
            println!("left alone: {}", list(&r.left_alone));
            OK
        }
        Err(e) => fail(e, json),
    }
}

/// `candor reload NAME…`: each service's reload signal or command.
pub async fn reload_services(
    client: &Client,
    names: Vec<String>,
    timeout: Option<String>,
    json: bool,
) -> u8 {
    let mut code = OK;
    let mut all = Vec::new();
    for name in instances_of(client, names).await {
        let mut path = format!("/v1/services/{}/reload", encode(&name));
        if let Some(t) = &timeout {
            path += &format!("?timeout={}", encode(t));
        }
        match client
            .json::<candor_api::SignalOutcome>("POST", &path)
            .await
        {
            Ok(o) if json => all.push(o),
            Ok(o) => println!("{}", o.outcome),
            Err(e) => code = code.max(fail(e, json)),
        }
    }
    if json && code == OK {
        return print_json(&all);
    }
    code
}

/// `candor kill NAME`: a signal to its main process, or with `all` to every process of its run.
/// A replicated service's name stands for each of its instances (one answer each; `--json`
/// then prints them as a list).
pub async fn kill(client: &Client, name: String, signal: String, all: bool, json: bool) -> u8 {
    let names = instances_of(client, vec![name.clone()]).await;
    let group = names != [name];
    let (mut code, mut outcomes) = (OK, Vec::new());
    for name in names {
        let path = format!(
            "/v1/services/{}/kill?signal={}{}",
            encode(&name),
            encode(&signal),
            if all { "&all=true" } else { "" }
        );
        match client
            .json::<candor_api::SignalOutcome>("POST", &path)
            .await
        {
            Ok(o) if json => outcomes.push(o),
            Ok(o) => println!("{}", o.outcome),
            Err(e) => code = code.max(fail(e, json)),
        }
    }
    match (json, group, outcomes.len()) {
        (true, false, 1) => print_json(&outcomes[0]),
        (true, true, _) if code == OK => print_json(&outcomes),
        _ => code,
    }
}

/// `names` with each replicated service's name replaced by its instances' (`api` → `api@1`,
/// `api@2`, …); other names as given (an unknown one is refused by the request it names).
async fn instances_of(client: &Client, names: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        let path = format!("/v1/services/{}", encode(&name));
        match client.json::<candor_api::ServiceStatus>("GET", &path).await {
            Ok(candor_api::ServiceStatus {
                replicas: Some(r), ..
            }) => out.extend(r.instances),
            _ => out.push(name),
        }
    }
    out
}

/// `candor shutdown`: stop every service, then the daemon; wait until it no longer answers.
pub async fn shutdown(client: &Client) -> u8 {
    match client.json::<candor_api::Ack>("POST", "/v1/shutdown").await {
        Ok(ack) => eprintln!("candor: {}", ack.message),
        Err(e) => return fail(e, false),
    }
    // Wait for the daemon to finish: it answers until every service is down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while tokio::time::Instant::now() < deadline {
        if let Err(ClientError::Unreachable(_)) = client.call("GET", "/v1/daemon").await {
            eprintln!("candor: daemon stopped");
            return OK;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("candor: the daemon is still answering after 10 minutes");
    FAILED
}

/// `candor scale NAME N`: the group's row once the brain took it (instances start or go).
pub async fn scale(client: &Client, name: &str, replicas: u32, json: bool) -> u8 {
    let path = format!("/v1/services/{}/scale?replicas={replicas}", encode(name));
    match client
        .json::<candor_api::ServiceStatus>("POST", &path)
        .await
    {
        Ok(s) if json => print_json(&s),
        Ok(s) => {
            println!(
                "{}: scaled to {replicas} ({}: {})",
                s.name, s.state, s.reason
            );
            OK
        }
        Err(e) => fail(e, json),
    }
}
