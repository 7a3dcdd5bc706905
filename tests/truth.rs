//! Truthful status: readiness protocols, request/response probes, declared sockets, the
//! watchdog, and no stale truth after a daemon restart. Real daemon, real zoo processes.

use std::time::Duration;

use candor_scenarios::{
    alive, free_port, read_stamps, send_notify, wait_for, wait_rechecked, Daemon,
};

const T: Duration = Duration::from_secs(20);

fn event_with(d: &Daemon, service: &str, state: &str, words: &str) -> Option<serde_json::Value> {
    d.events().into_iter().find(|e| {
        e["service"] == service
            && e["state"] == state
            && e["reason"].as_str().unwrap_or("").contains(words)
    })
}

#[test]
fn dangling_socket_flips_unhealthy_and_the_restart_brings_it_back() {
    // F3: the listener lives, the file is gone; clients get ENOENT.
    let d = Daemon::start(
        r#"
[service.rpc]
command = ["{zoo}", "unlink-own-socket", "--after", "1s", "--socket", "{dir}/rpc.sock", "--stamp", "{dir}/stamps"]
ready = "notify"
sockets = ["{dir}/rpc.sock"]
probe = { http = { socket = "{dir}/rpc.sock", path = "/health" }, every = "300ms", timeout = "300ms" }
"#,
    );
    d.wait_state("rpc", "running", T);
    let s = wait_for("the first socket check", T, || {
        let s = d.status("rpc");
        (s["state"] == "running" && s["sockets"][0]["exists"].is_boolean()).then_some(s)
    });
    let first_pid = s["pid"].clone();
    assert_eq!(s["sockets"][0]["exists"], true, "{s}");
    // Detection comes from the next check after the fault: one period plus the timeout.
    // (The precise latency is measured in bench/detect; here a noisy machine gets slack.)
    let reason = format!(
        "declared socket {}/rpc.sock missing on disk",
        d.dir.path().display()
    );
    let ev = wait_for("the unhealthy event", Duration::from_secs(10), || {
        event_with(&d, "rpc", "unhealthy", &reason)
    });
    assert_eq!(ev["reason"], reason.as_str());
    assert_eq!(ev["detail"]["sockets"][0]["exists"], false, "{ev}");
    // Default on_unhealthy = "restart": a new run, with its socket back.
    let s = wait_for("a new run with the socket back", T, || {
        let s = d.status("rpc");
        (s["state"] == "running" && s["pid"] != first_pid && s["sockets"][0]["accepts"] == true)
            .then_some(s)
    });
    assert_eq!(s["sockets"][0]["exists"], true, "{s}");
    assert!(read_stamps(&d.path("stamps"))
        .iter()
        .any(|s| s.0 == "fault"));
}

#[test]
fn stale_socket_file_is_removed_and_a_live_foreign_listener_blocks_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap()); // file left, nobody listening
    let taken = dir.path().join("taken.sock");
    let _foreign = std::os::unix::net::UnixListener::bind(&taken).unwrap();
    let d = Daemon::start(&format!(
        r#"
[service.fresh]
command = ["{{zoo}}", "healthy", "--socket", "{stale}"]
sockets = ["{stale}"]
ready = "notify"

[service.twin]
command = ["{{zoo}}", "healthy", "--socket", "{taken}"]
sockets = ["{taken}"]
"#,
        stale = stale.display(),
        taken = taken.display()
    ));
    let s = d.wait_state("fresh", "running", T);
    assert!(s["pid"].is_u64());
    let t = d.wait_state("twin", "failed", T);
    let reason = t["reason"].as_str().unwrap();
    assert!(
        reason.contains("served by another live listener"),
        "{reason}"
    );
    assert!(reason.contains("taken.sock"), "{reason}");
}

#[test]
fn dead_handler_behind_an_http_probe_is_unhealthy_but_tcp_sees_nothing() {
    // F4: the listener accepts and closes; a connect-only probe calls that healthy.
    let (p1, p2) = (free_port(), free_port());
    let d = Daemon::start(&format!(
        r#"
[service.http-probed]
command = ["{{zoo}}", "handler-dead", "--after", "1s", "--port", "{p1}"]
ready = "notify"
on_unhealthy = "alert"
probe = {{ http = {{ port = {p1}, path = "/health" }}, every = "300ms", timeout = "500ms", failures = 2 }}

[service.tcp-probed]
command = ["{{zoo}}", "handler-dead", "--after", "1s", "--port", "{p2}"]
ready = "notify"
on_unhealthy = "alert"
probe = {{ tcp = "127.0.0.1:{p2}", every = "300ms", timeout = "500ms", failures = 2 }}
"#
    ));
    d.wait_state("http-probed", "running", T);
    let s = d.wait_state("http-probed", "unhealthy", T);
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.starts_with("http probe failed"), "{reason}");
    assert!(
        reason.contains("connection closed before response"),
        "{reason}"
    );
    assert_eq!(s["probes"][0]["ok"], false);
    assert_eq!(s["probes"][0]["kind"], "http");
    // alert: the process is left alone.
    assert_eq!(s["runs"], 1);
    // The tcp probe still connects: it cannot see a dead handler (see README).
    let t = d.status("tcp-probed");
    assert_eq!(t["state"], "running", "{t}");
    assert_eq!(t["probes"][0]["detail"], "connected");
}

#[test]
fn slow_ready_waits_for_notify_and_strangers_are_ignored_and_counted() {
    let d = Daemon::start(
        r#"
[service.slow]
command = ["{zoo}", "slow-ready", "--after", "2s"]
ready = "notify"
"#,
    );
    let s = wait_for("slow to report its warm-up status", T, || {
        let s = d.status("slow");
        (s["status_text"] == "warming up").then_some(s)
    });
    assert_eq!(s["state"], "starting", "{s}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("waiting for readiness (ready = \"notify\")"),
        "{s}"
    );
    // A READY=1 from a process that is not the service changes nothing.
    let notify = d.info()["notify"]["socket"].as_str().unwrap().to_string();
    let before = d.info()["notify"]["dropped_strangers"].as_u64().unwrap();
    send_notify(&notify, b"READY=1");
    wait_for("the stranger counted", T, || {
        (d.info()["notify"]["dropped_strangers"].as_u64()? > before).then_some(())
    });
    assert_eq!(d.state("slow"), "starting");
    let s = d.wait_state("slow", "running", T);
    assert_eq!(s["ready"]["via"], "notify");
    assert_eq!(s["status_text"], "ready after warm-up");
}

#[test]
fn oversized_notify_messages_are_dropped_and_counted() {
    let d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
"#,
    );
    d.wait_state("web", "running", T);
    let notify = d.info()["notify"]["socket"].as_str().unwrap().to_string();
    let big = vec![b'x'; 5000];
    send_notify(&notify, &big);
    wait_for("the oversized message counted", T, || {
        (d.info()["notify"]["dropped_oversized"].as_u64()? >= 1).then_some(())
    });
}

#[test]
fn watchdog_stall_is_restarted_with_reason_watchdog_timeout() {
    let d = Daemon::start(
        r#"
[service.dog]
command = ["{zoo}", "watchdog-stall", "--after", "1s"]
ready = "notify"
watchdog = "400ms"
on_unhealthy = "alert"
"#,
    );
    let s = d.wait_state("dog", "running", T);
    let pid = s["pid"].as_u64().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    assert!(
        vars.contains(&format!("WATCHDOG_PID={pid}").as_bytes()),
        "WATCHDOG_PID is the service's pid"
    );
    assert!(vars.contains(&&b"WATCHDOG_USEC=400000"[..]));
    // Even with on_unhealthy = "alert", a missed watchdog restarts: it is a liveness contract.
    let ev = wait_for("the watchdog event", T, || {
        event_with(&d, "dog", "unhealthy", "watchdog timeout")
    });
    assert_eq!(ev["reason"], "watchdog timeout: no WATCHDOG=1 within 400ms");
    wait_for("a restart", T, || {
        (d.status("dog")["runs"].as_u64()? >= 2).then_some(())
    });
    wait_for("the stalled process gone", T, || {
        (!alive(pid)).then_some(())
    });
}

#[test]
fn fd_and_file_readiness_and_ready_timeout() {
    let d = Daemon::start(
        r#"
[service.by-fd]
command = ["{zoo}", "healthy", "--ready-fd", "5"]
ready = { fd = 5 }

[service.by-file]
command = ["{zoo}", "healthy", "--ready-file", "{dir}/ready"]
ready = { file = "{dir}/ready" }

[service.never]
command = ["{zoo}", "crash-loop", "--after", "1h"]
ready = { file = "{dir}/never-ready" }
ready_timeout = "700ms"
"#,
    );
    assert_eq!(d.wait_state("by-fd", "running", T)["ready"]["via"], "fd");
    assert_eq!(
        d.wait_state("by-file", "running", T)["ready"]["via"],
        "file"
    );
    let s = d.wait_state("never", "failed", T);
    assert_eq!(s["reason"], "not ready within 700ms of starting (ready = \"file\"); fix the service or raise ready_timeout");
}

#[test]
fn a_stale_ready_file_is_removed_before_the_spawn() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ready");
    std::fs::write(&marker, "left from an earlier run").unwrap();
    let d = Daemon::start(&format!(
        r#"
[service.never]
command = ["{{zoo}}", "crash-loop", "--after", "1h"]
ready = {{ file = "{}" }}
"#,
        marker.display()
    ));
    let s = wait_for("the service spawned", T, || {
        let s = d.status("never");
        s["pid"].is_u64().then_some(s)
    });
    assert_eq!(
        s["state"], "starting",
        "an old marker must not count as ready: {s}"
    );
    assert!(!marker.exists());
}

#[test]
fn exec_and_uds_probes_are_request_response() {
    let d = Daemon::start(
        r#"
[service.exec-ok]
command = ["{zoo}", "healthy"]
probe = { exec = ["sh", "-c", "exit 0"], every = "200ms" }

[service.exec-hangs]
command = ["{zoo}", "healthy"]
probe = { exec = ["sleep", "30"], every = "300ms", timeout = "200ms" }

[service.uds]
command = ["{zoo}", "healthy", "--socket", "{dir}/u.sock"]
probe = { uds = { socket = "{dir}/u.sock", send = "GET /health HTTP/1.0\r\n\r\n", expect = "200 OK" }, every = "200ms" }

[service.uds-wrong]
command = ["{zoo}", "healthy", "--socket", "{dir}/w.sock"]
probe = { uds = { socket = "{dir}/w.sock", send = "GET /health HTTP/1.0\r\n\r\n", expect = "PONG" }, every = "200ms" }
"#,
    );
    assert_eq!(
        d.wait_state("exec-ok", "running", T)["ready"]["via"],
        "probe"
    );
    let u = d.wait_state("uds", "running", T);
    assert_eq!(u["probes"][0]["detail"], "replied \"200 OK\"");
    let hang = wait_for("the hung exec probe reported", T, || {
        let s = d.status("exec-hangs");
        s["reason"]
            .as_str()?
            .contains("timed out after 200ms (killed)")
            .then_some(s)
    });
    assert_eq!(hang["state"], "starting", "{hang}");
    let w = wait_for("the wrong reply reported", T, || {
        let s = d.status("uds-wrong");
        s["reason"]
            .as_str()?
            .contains("reply lacks \"PONG\"")
            .then_some(s)
    });
    assert_eq!(w["state"], "starting");
    // The hung probes were killed: no `sleep 30` outlives its timeout for long.
    wait_for("hung probes cleaned up", T, || {
        let n = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| c.starts_with(b"sleep\x0030"))
                    .unwrap_or(false)
            })
            .count();
        (n <= 1).then_some(())
    });
}

#[test]
fn after_a_daemon_restart_the_same_pid_shows_running_only_on_a_fresh_probe() {
    let port = free_port();
    let mut d = Daemon::start(&format!(
        r#"
[service.web]
command = ["{{zoo}}", "healthy", "--port", "{port}"]
probe = {{ http = {{ port = {port}, path = "/health" }}, every = "300ms", start_delay = "500ms" }}
"#
    ));
    let pid = d.wait_state("web", "running", T)["pid"].as_u64().unwrap();
    d.wait_recorded_ready("web", pid);
    d.kill_daemon();
    let restarted = std::time::SystemTime::now();
    d.spawn();
    // From the first answer on: the same pid, never `failed`, re-checking until a probe of
    // this daemon passes, then `running`.
    let s = wait_rechecked(&d, "web", pid, T);
    assert_eq!(s["ready"]["via"], "probe", "{s}");
    assert_eq!(s["restarts"], 0, "{s}");
    assert_eq!(s["probes"][0]["ok"], true, "{s}");
    // Shown to the second: the probe was taken no earlier than the second of the restart.
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let probed = humantime::parse_rfc3339(s["probes"][0]["at"].as_str().unwrap()).unwrap();
    assert!(
        secs(probed) >= secs(restarted),
        "a probe of the old daemon: {s}"
    );
}

#[test]
fn notify_socket_works_with_a_long_state_dir_path() {
    let long = format!("state-{}", "x".repeat(120));
    let d = Daemon::start_full(
        r#"
[service.slow]
command = ["{zoo}", "slow-ready", "--after", "200ms"]
ready = "notify"
"#,
        &[],
        &long,
    );
    let socket = d.info()["notify"]["socket"].as_str().unwrap().to_string();
    // A path a sockaddr_un holds, whatever the state dir's length.
    assert!(socket.starts_with('/') && socket.len() <= 107, "{socket}");
    let s = d.wait_state("slow", "running", T);
    assert_eq!(s["ready"]["via"], "notify");
}

#[test]
fn notify_protocol_status_stopping_reloading_errno_and_mainpid() {
    let d = Daemon::start(
        r#"
[service.talker]
command = ["{zoo}", "notify", "STATUS=loading 3 plugins", "READY=1\nSTATUS=serving", "RELOADING=1", "ERRNO=5", "MAINPID=1", "STOPPING=1"]
ready = "notify"
"#,
    );
    let mut seen = Vec::new();
    wait_for("every message shown in turn", T, || {
        let s = d.status("talker");
        if let Some(text) = s["status_text"].as_str() {
            if seen.last().map(String::as_str) != Some(text) {
                seen.push(text.to_string());
            }
        }
        (seen.last().map(String::as_str) == Some("stopping on its own (STOPPING=1)")).then_some(())
    });
    for want in [
        "serving",
        "reloading (RELOADING=1)",
        "reports errno 5 (ERRNO=)",
    ] {
        assert!(
            seen.iter().any(|s| s == want),
            "{want} not seen in {seen:?}"
        );
    }
    let s = d.status("talker");
    assert_eq!(s["ready"]["via"], "notify");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .ends_with("; status: stopping on its own (STOPPING=1)"),
        "{s}"
    );
    let ev = wait_for("MAINPID recorded", T, || {
        d.events()
            .into_iter()
            .find(|e| e["service"] == "talker" && e["state"] == "notify")
    });
    assert_eq!(ev["detail"]["mainpid"], 1);
}

#[test]
fn a_corrupt_database_is_moved_aside_and_services_run_anyway() {
    let mut d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
"#,
    );
    d.wait_state("web", "running", T);
    d.shutdown();
    let db = d.path("state/candor.db");
    std::fs::write(
        &db,
        b"not a database at all; a disk gave up here".repeat(64),
    )
    .unwrap();
    d.spawn();
    d.wait_state("web", "running", T);
    let info = d.info();
    let what = info["store"]["recovered"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        what.starts_with("candor.db could not be opened (")
            && what.contains("moved aside to candor.db.corrupt-"),
        "{info}"
    );
    let aside = std::fs::read_dir(d.path("state"))
        .unwrap()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("candor.db.corrupt-")
        });
    assert!(aside, "the broken file is kept for a look");
    // Said in the events and in the status header.
    assert!(
        d.events()
            .iter()
            .any(|e| e["state"] == "warning" && e["reason"] == what.as_str()),
        "{:?}",
        d.events()
    );
    let table = d.ok(&["status"]);
    assert!(table.contains(&format!("warning: {what}")), "{table}");
}

/// Debian's `systemd-notify`, which scripts/test.sh installs where it can.
fn systemd_notify() -> Option<String> {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v systemd-notify"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    candor_scenarios::available(
        "CANDOR_REQUIRE_ROOT",
        "no systemd-notify (Debian's systemd package; scripts/test.sh installs it as root)",
        found.is_some(),
    )
    .then_some(found?)
}

#[test]
fn the_real_systemd_notify_from_a_shell_wrapper_makes_a_service_ready() {
    let Some(bin) = systemd_notify() else {
        return;
    };
    // It waits on a BARRIER fd until Candor has taken the message (and closed the fd).
    let d = Daemon::start(&format!(
        r#"
[service.wrapped]
command = ["/bin/sh", "-c", "sleep 0.3; {bin} --ready --status='warmed up'; exec sleep 100000"]
ready = "notify"
"#
    ));
    let s = d.wait_state("wrapped", "running", T);
    assert_eq!(s["ready"]["via"], "notify", "{s}");
    assert_eq!(s["status_text"], "warmed up", "{s}");
    assert_eq!(d.info()["notify"]["dropped_strangers"], 0);
}

#[test]
fn a_notifier_that_exits_at_once_is_attributed_or_counted_never_lost() {
    let Some(bin) = systemd_notify() else {
        return;
    };
    // --no-block: no barrier; the sender may be gone (and reaped) before its message is read.
    let d = Daemon::start(&format!(
        r#"
[service.hasty]
command = ["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do {bin} --no-block --status=tick$i; done; {bin} --ready; exec sleep 100000"]
ready = "notify"
"#
    ));
    d.wait_state("hasty", "running", T);
    // Ten ticks, the READY and its BARRIER: none lost on the way. (The BARRIER is sent after the
    // READY, which may show the service running before the BARRIER is read.)
    wait_for("all 12 messages received", T, || {
        (d.info()["notify"]["received"] == 12).then_some(())
    });
    assert_eq!(d.info()["notify"]["received"], 12);
    let strangers = d.info()["notify"]["dropped_strangers"].as_u64().unwrap();
    let shown = d.status("hasty")["status_text"].clone();
    // Each tick either reached the service (its status shows the last one that did) or is
    // counted as from a stranger.
    assert!(
        strangers == 10 || shown.as_str().is_some_and(|t| t.starts_with("tick")),
        "strangers {strangers}, status {shown}"
    );
    assert!(strangers <= 10);
}
