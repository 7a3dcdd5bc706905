//! Resource budgets: fd counts with trend and ETA, fd and memory policies, and a daemon that
//! guards itself (seeds 000, 003, 004; DESIGN.md F1, F2, F10). Samples every 200 ms here.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use candor_scenarios::{get_request, wait_for, Daemon};

const T: Duration = Duration::from_secs(30);

#[test]
fn a_leak_turns_degraded_with_its_trend_and_fd_restart_restarts_it_low() {
    let d = Daemon::start(
        r#"
[service.leaky]
command = ["{zoo}", "leak-fds", "--per-sec", "40"]
ready = "notify"
limits = { nofile = 512, fd_warn = "50%" }

[service.restarted]
command = ["{zoo}", "leak-fds", "--per-sec", "40"]
ready = "notify"
limits = { nofile = 512, fd_warn = "50%", fd_restart = "80%" }
"#,
    );
    // The count rises with a positive rate and an ETA to the limit.
    let s = wait_for("a trend with an ETA", T, || {
        let s = d.status("leaky");
        (s["fds"]["per_hour"].as_f64()? > 0.0 && s["fds"]["eta_s"].as_f64().is_some()).then_some(s)
    });
    assert_eq!(s["fds"]["limit"], 512, "{s}");
    assert!(s["fds"]["count"].as_u64().unwrap() > 3, "{s}");
    // Above 50 %: degraded, with the numbers in the reason.
    let s = d.wait_state("leaky", "degraded", T);
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("fds ")
            && reason.contains("/512 (")
            && reason.contains("/h, limit in ~"),
        "{reason}"
    );
    assert!(s["fds"]["pct"].as_f64().unwrap() >= 50.0, "{s}");
    // The table shows count/limit.
    let table = d.ok(&["status"]);
    let row = table.lines().find(|l| l.starts_with("leaky")).unwrap();
    assert!(row.contains("/512"), "{row}");
    // fd_restart: restarted with the reason, and the new run starts low.
    let ev = wait_for("the fd_restart", T, || {
        d.events().into_iter().find(|e| {
            e["service"] == "restarted"
                && e["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("reached fd_restart 80 %")
        })
    });
    assert_eq!(ev["state"], "degraded", "{ev}");
    let s = wait_for("a new run, sampled", T, || {
        let s = d.status("restarted");
        (s["runs"].as_u64()? >= 2 && s["state"] == "running" && s["fds"]["count"].is_u64())
            .then_some(s)
    });
    assert!(
        s["fds"]["count"].as_u64().unwrap() < 300,
        "the new run starts from a low count: {s}"
    );
}

#[test]
fn emfile_spin_is_caught_restarted_and_its_log_flood_folded() {
    let d = Daemon::start(
        r#"
[service.spinner]
command = ["{zoo}", "emfile-spin"]
ready = "notify"
limits = { nofile = 64, fd_restart = "95%" }
backoff = { initial = "500ms", max = "1s" }
"#,
    );
    let ev = wait_for("the restart at the fd limit", T, || {
        d.events().into_iter().find(|e| {
            e["service"] == "spinner" && e["reason"].as_str().unwrap_or("").contains("/64 (")
        })
    });
    assert!(
        ev["reason"]
            .as_str()
            .unwrap()
            .starts_with("fds 64/64 (100 %)"),
        "all 64 used, no inherited extras: {ev}"
    );
    assert!(
        ev["reason"]
            .as_str()
            .unwrap()
            .contains("reached fd_restart 95 %"),
        "{ev}"
    );
    wait_for("a second run", T, || {
        (d.status("spinner")["runs"].as_u64()? >= 2).then_some(())
    });
    // Each run spins out the same EMFILE line as fast as it can: kept once, then folded into
    // `-- previous line repeated N times --` (seed 000: 58 GB a day of this one line).
    let s = wait_for("repeats folded", T, || {
        let s = d.status("spinner");
        (s["logs"]["folded"].as_u64()? > 100).then_some(s)
    });
    let kept = s["logs"]["lines"].as_u64().unwrap();
    let runs = s["runs"].as_u64().unwrap();
    assert!(kept <= 10 * runs, "kept {kept} lines in {runs} runs: {s}");
    let shown = d.ok(&["logs", "spinner", "-n", "1000"]);
    assert!(
        shown.contains("-- previous line repeated "),
        "no fold marker in:\n{shown}"
    );
}

#[test]
fn memory_warn_degrades_and_memory_restart_restarts() {
    let d = Daemon::start(
        r#"
[service.grower]
command = ["{zoo}", "mem-grow", "--mb-per-sec", "20"]
ready = "notify"
limits = { memory_warn = "30MiB", memory_restart = "90MiB" }
"#,
    );
    let s = d.wait_state("grower", "degraded", T);
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("rss ") && reason.contains("over memory_warn 30.0 MiB"),
        "{reason}"
    );
    assert!(s["rss_bytes"].as_u64().unwrap() >= 30 << 20, "{s}");
    wait_for("the memory restart", T, || {
        d.events().into_iter().find(|e| {
            e["service"] == "grower"
                && e["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("reached memory_restart 90.0 MiB")
        })
    });
    wait_for("a second run", T, || {
        (d.status("grower")["runs"].as_u64()? >= 2).then_some(())
    });
}

#[test]
fn a_daemon_short_of_fds_refuses_excess_clients_and_recovers() {
    let d = Daemon::start_limited(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
"#,
        64,
        64,
    );
    d.wait_state("web", "running", T);
    let info = d.info();
    assert_eq!(info["resources"]["fd_limit"], 64, "{info}");
    // Many idle clients holding connections.
    let mut idle = Vec::new();
    for _ in 0..120 {
        if let Ok(s) = UnixStream::connect(&d.socket) {
            idle.push(s);
        }
    }
    // Some were answered "503, near its fd limit" and closed instead of eating the last fds.
    let mut refused = 0;
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 512];
        if let Ok(n) = s.read(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).contains("503 Service Unavailable") {
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "no client was refused");
    // The daemon did not fall over, and did not log a line per failed accept.
    let accept_lines = d
        .log()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        accept_lines <= 8,
        "{accept_lines} accept-error lines: the backoff should log once per step"
    );
    drop(idle);
    let body = wait_for("the daemon to answer again", T, || {
        let r = d.raw(&get_request("/v1/daemon"))?;
        r.starts_with("HTTP/1.1 200").then_some(r)
    });
    let json: serde_json::Value =
        serde_json::from_str(body.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(
        json["resources"]["refused_connections"].as_u64().unwrap() > 0,
        "{json}"
    );
    assert_eq!(d.state("web"), "running");
}

#[test]
fn the_daemon_does_not_leak_fds_over_restarts_and_status_requests() {
    let d = Daemon::start(
        r#"
[service.crashy]
command = ["{zoo}", "crash-loop", "--after", "1ms", "--code", "1"]
backoff = { initial = "1ms", max = "1ms", reset_after = "1h" }
"#,
    );
    wait_for("warm-up restarts", T, || {
        (d.status("crashy")["restarts"].as_u64()? >= 20).then_some(())
    });
    let before = d.daemon_fds();
    let start = d.status("crashy")["restarts"].as_u64().unwrap();
    for _ in 0..10_000 {
        let r = d.raw(&get_request("/v1/services")).expect("status answer");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    wait_for("1000 restarts", Duration::from_secs(120), || {
        (d.status("crashy")["restarts"].as_u64()? >= start + 1000).then_some(())
    });
    // Transient fds (a spawn in flight, a closing connection) come and go; a leak stays. Stop
    // the loop and wait for the count to come back to where it was.
    d.ok(&["stop", "crashy", "--wait"]);
    let settled = wait_for("the daemon's fds back to the baseline", T, || {
        let n = d.daemon_fds();
        (n <= before + 8).then_some(n)
    });
    assert!(
        settled <= before + 8,
        "daemon fds grew from {before} to {settled}"
    );
}

#[test]
fn the_daemon_raises_its_own_fd_limit_but_services_keep_the_original() {
    let d = Daemon::start_limited(
        r#"
[service.plain]
command = ["{zoo}", "healthy"]
ready = "notify"

[service.configured]
command = ["{zoo}", "healthy"]
ready = "notify"
limits = { nofile = 200 }
"#,
        100,
        300,
    );
    let plain = d.wait_state("plain", "running", T);
    assert_eq!(
        d.info()["resources"]["fd_limit"],
        300,
        "the daemon raised its soft limit to the hard one"
    );
    let limits = |pid: u64| std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = |text: String| {
        text.lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .split_whitespace()
            .skip(3)
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line(limits(plain["pid"].as_u64().unwrap())),
        "100 300",
        "a service gets the limit the daemon was given"
    );
    let configured = d.wait_state("configured", "running", T);
    assert_eq!(line(limits(configured["pid"].as_u64().unwrap())), "200 200");
}
