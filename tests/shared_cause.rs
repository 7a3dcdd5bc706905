//! A blip of one endpoint shared by hundreds of services: they are shown `unhealthy` with the
//! cause they share, none is restarted for it, and all are `running` again soon after the
//! endpoint returns; one service that is really broken is still restarted.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candor_scenarios::{free_port, wait_for, Daemon};
use serde_json::Value;

/// `python3 -m http.server` with its default listen backlog (5), as nobody tunes it.
fn endpoint(port: u16, dir: &std::path::Path) -> Child {
    Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3")
}

fn statuses(d: &Daemon) -> Vec<Value> {
    serde_json::from_str(&d.ok(&["status", "--json"])).expect("status json")
}

fn shared(st: &[Value]) -> impl Iterator<Item = &Value> {
    st.iter().filter(|s| s["name"] != "broken")
}

/// The events that named a shared cause.
fn shared_causes(d: &Daemon) -> Vec<Value> {
    d.events()
        .into_iter()
        .filter(|e| e["service"] == "candor" && e["state"] == "shared-cause")
        .collect()
}

/// How many shared causes were said to have ended.
fn ended_causes(d: &Daemon) -> usize {
    d.events()
        .into_iter()
        .filter(|e| e["service"] == "candor" && e["state"] == "shared-cause-ended")
        .count()
}

fn restarts(st: &[Value]) -> u64 {
    shared(st).map(|s| s["restarts"].as_u64().unwrap()).sum()
}

#[test]
fn an_outage_of_a_shared_endpoint_holds_restarts_and_names_the_cause() {
    const N: usize = 300;
    let (port, dead) = (free_port(), free_port());
    let www = tempfile::tempdir().unwrap();
    let mut server = endpoint(port, www.path());
    let mut config = String::new();
    for i in 0..N {
        config.push_str(&format!(
            "[service.s{i}]\ncommand = [\"sleep\", \"100000\"]\nprobe = {{ http = {{ port = {port}, path = \"/\" }}, every = \"2s\" }}\n"
        ));
    }
    config.push_str(&format!(
        "[service.broken]\ncommand = [\"sleep\", \"100000\"]\nready = \"started\"\nprobe = {{ http = {{ port = {dead}, path = \"/\" }}, every = \"2s\" }}\n"
    ));
    let d = Daemon::start(&config);
    wait_for("all services running", Duration::from_secs(180), || {
        let st = statuses(&d);
        let all = shared(&st).count() == N && shared(&st).all(|s| s["state"] == "running");
        all.then_some(())
    });
    let before = restarts(&statuses(&d));
    // Three hundred services probing a server with a backlog of 5 may already have shared a
    // cause while they started (probes refused together, a real cause): the outage is what
    // must be named once.
    wait_for(
        "no shared cause left from the start",
        Duration::from_secs(60),
        || {
            let st = statuses(&d);
            st.iter().all(|s| s["shared_cause"].is_null()).then_some(())
        },
    );
    let named_before = shared_causes(&d).len();
    let ended_before = ended_causes(&d);

    // The endpoint goes away.
    server.kill().unwrap();
    server.wait().unwrap();
    let down = Instant::now();
    let st = wait_for(
        "every service unhealthy, naming the shared cause",
        Duration::from_secs(60),
        || {
            let st = statuses(&d);
            let all = shared(&st).all(|s| {
                s["state"] == "unhealthy"
                    && s["reason"].as_str().unwrap().contains("shared with")
                    && s["reason"].as_str().unwrap().contains("restart held")
            });
            all.then_some(st)
        },
    );
    let s0 = shared(&st).next().unwrap();
    assert_eq!(
        s0["shared_cause"]["target"],
        format!("127.0.0.1:{port}"),
        "{s0}"
    );
    assert_eq!(s0["restart_held"], "shared cause", "{s0}");
    let named = shared_causes(&d);
    assert_eq!(
        named.len() - named_before,
        1,
        "the outage is named once: {named:#?}"
    );
    // Twenty seconds of outage in all.
    std::thread::sleep(Duration::from_secs(20).saturating_sub(down.elapsed()));
    let during = restarts(&statuses(&d));

    // It returns: every service is running again within a few probe periods.
    let mut server = endpoint(port, www.path());
    let back = Instant::now();
    wait_for("all running again", Duration::from_secs(60), || {
        let st = statuses(&d);
        let all = shared(&st).all(|s| s["state"] == "running");
        all.then_some(())
    });
    eprintln!(
        "all {N} running again {:?} after the endpoint returned",
        back.elapsed()
    );
    let st = statuses(&d);
    let after = restarts(&st);
    // The budget is 10 % of the services per 10 s; a shared cause holds even that.
    assert!(
        after - before <= (N as u64 + 1).div_ceil(10),
        "{before} -> {during} -> {after}"
    );
    assert!(shared(&st).all(|s| s["shared_cause"].is_null() && s["restart_held"].is_null()));
    // The one really broken service was restarted all along.
    let broken = st.iter().find(|s| s["name"] == "broken").unwrap();
    assert!(broken["restarts"].as_u64().unwrap() >= 1, "{broken}");
    assert_eq!(
        ended_causes(&d) - ended_before,
        1,
        "the outage's end is said once"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
