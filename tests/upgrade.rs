//! `candor upgrade`: a new binary takes every service over with no restart and no lost line;
//! the API socket answers throughout; a new binary that fails leaves the old one in charge.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use candor_scenarios::*;

const T: Duration = Duration::from_secs(20);

const SERVICES: &str = r#"
[service.printer]
command = ["{zoo}", "log-flood", "--lines-per-sec", "200"]

[service.web]
command = ["{zoo}", "healthy", "--socket", "{dir}/web.sock"]
ready = "notify"
probe = { http = { socket = "{dir}/web.sock", path = "/health" }, every = "300ms" }
"#;

/// Pids and restart counts of every service, once all are running.
fn running_pids(d: &Daemon) -> Vec<(u64, u64)> {
    ["printer", "web"]
        .iter()
        .map(|n| {
            let s = d.wait_state(n, "running", T);
            (s["pid"].as_u64().unwrap(), s["restarts"].as_u64().unwrap())
        })
        .collect()
}

/// Connect to the socket over and over until told to stop; every connection that could not
/// be made, with why (ENOENT, ECONNREFUSED: the socket path stopped answering).
fn hammer(d: &Daemon, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    let socket = d.socket.clone();
    std::thread::spawn(move || {
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = std::os::unix::net::UnixStream::connect(&socket) {
                failures.push(e.to_string());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        failures
    })
}

/// The numbers of the printer's stored lines, in order.
fn printed(d: &Daemon) -> Vec<u64> {
    let out = d.ok(&["logs", "printer", "--since", "1h", "--json"]);
    let lines: Vec<serde_json::Value> = serde_json::from_str(&out).expect("logs json");
    lines
        .iter()
        .filter_map(|l| l["line"].as_str()?.split_whitespace().nth(2)?.parse().ok())
        .collect()
}

#[test]
fn upgrade_keeps_every_service_and_line_and_the_socket_answers_throughout() {
    let d = Daemon::start(SERVICES);
    let before = running_pids(&d);
    let old = d.info();
    wait_for("a few lines printed", T, || {
        (printed(&d).len() > 20).then_some(())
    });

    let stop = Arc::new(AtomicBool::new(false));
    let hammering = hammer(&d, stop.clone());
    let out = d.ok(&["upgrade"]);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let failures = hammering.join().unwrap();
    assert!(
        failures.is_empty(),
        "the socket did not answer: {failures:?}"
    );

    assert!(out.starts_with("upgraded: pid "), "{out}");
    let new = d.info();
    assert_ne!(new["incarnation"], old["incarnation"]);
    assert_eq!(new["pid"], old["pid"], "exec'd in place");
    assert!(new["upgraded_from"].as_str().is_some(), "{new}");
    assert_eq!(new["adopted"], 2);
    assert_eq!(running_pids(&d), before, "no service restarted");

    // Lines written around the handover are all read, once, in order.
    let first_after = printed(&d).last().copied().unwrap() + 200;
    let numbers = wait_for("lines from after the upgrade", T, || {
        let n = printed(&d);
        (n.last().is_some_and(|l| *l >= first_after)).then_some(n)
    });
    let expected: Vec<u64> = (numbers[0]..=*numbers.last().unwrap()).collect();
    assert_eq!(numbers, expected, "lines missing or repeated");
}

#[test]
fn a_new_binary_that_rejects_the_config_changes_nothing() {
    let d = Daemon::start(SERVICES);
    let before = running_pids(&d);
    let old = d.info();
    let out = d.cli(&["upgrade", "--binary", "/bin/false"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not upgrading to /bin/false") && err.contains("nothing changed"),
        "{err}"
    );
    assert_eq!(d.info()["incarnation"], old["incarnation"]);
    assert_eq!(running_pids(&d), before);

    let missing = d.cli(&["upgrade", "--binary", "/nonexistent/candor"]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert_eq!(d.info()["incarnation"], old["incarnation"]);
}

#[test]
fn a_new_binary_that_exits_at_start_leaves_the_old_one_in_charge() {
    let mut d = Daemon::start(SERVICES);
    let before = running_pids(&d);
    // Passes `check`, then exits instead of serving. Not under /tmp: an upgrade runs only a
    // binary that no one but root can change.
    let bin = private_tempdir();
    let fake = bin.path().join("fake-candor");
    std::fs::write(&fake, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = d.cli(&["upgrade", "--binary", fake.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("upgrade failed: the new binary exited before it answered"),
        "{err}"
    );
    let info = d.info();
    assert!(info["upgrade_error"].as_str().is_some(), "{info}");
    assert_eq!(running_pids(&d), before, "no service restarted");
    // The old binary, in charge again, still runs the board: a restart works.
    d.ok(&["restart", "printer", "--wait"]);
    d.shutdown();
}
