//! Starting, stopping, restarting and backoff, with a real daemon and real processes.

use std::time::{Duration, Instant};

use candor_scenarios::{alive, read_stamps, wait_for, Daemon};

const T: Duration = Duration::from_secs(20);

#[test]
fn start_stop_restart_healthy_service() {
    let d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
stop = { timeout = "5s" }
"#,
    );
    let s = d.wait_state("web", "running", T);
    let pid = s["pid"].as_u64().expect("running service has a pid");
    assert!(alive(pid));
    assert_eq!(s["restarts"], 0);
    assert_eq!(s["ready"]["via"], "started");
    wait_for("uptime to grow", T, || {
        (d.status("web")["uptime_s"].as_f64()? > 0.2).then_some(())
    });

    // The table shows the columns a person reads.
    let table = d.ok(&["status"]);
    let expect = if d.has_cgroups() {
        "containment: cgroup v2"
    } else {
        "containment: process groups only"
    };
    assert!(table.contains(expect), "{table}");
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("daemon: fds ")),
        "{table}"
    );
    let head = table
        .lines()
        .find(|l| l.starts_with("NAME"))
        .expect("table header");
    for col in [
        "NAME", "STATE", "REASON", "PID", "UPTIME", "RESTARTS", "FDS", "RSS",
    ] {
        assert!(head.contains(col), "missing column {col} in {head}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("web"))
        .expect("web row");
    assert!(
        row.contains("running") && row.contains(&pid.to_string()),
        "{row}"
    );

    let out = d.ok(&["stop", "web", "--wait"]);
    assert!(out.contains("web: stopped"), "{out}");
    let s = d.status("web");
    assert_eq!(s["state"], "stopped");
    assert!(s["pid"].is_null());
    wait_for("old process gone", T, || (!alive(pid)).then_some(()));

    d.ok(&["start", "web", "--wait"]);
    let s = d.status("web");
    assert_eq!(s["state"], "running");
    let pid2 = s["pid"].as_u64().unwrap();
    assert_ne!(pid2, pid);

    d.ok(&["restart", "web", "--wait"]);
    let s = d.status("web");
    let pid3 = s["pid"].as_u64().unwrap();
    assert_eq!(s["state"], "running");
    assert_ne!(pid3, pid2, "restart gives a new process");
    wait_for("restarted process's predecessor gone", T, || {
        (!alive(pid2)).then_some(())
    });
    // Requested restarts are not crash restarts.
    assert_eq!(s["restarts"], 0);
}

fn restart_delays_ms(d: &Daemon, service: &str) -> Vec<u64> {
    d.events()
        .iter()
        .filter(|e| e["service"] == service && e["state"] == "backoff")
        .filter_map(|e| e["detail"]["restart_in_ms"].as_u64())
        .collect()
}

#[test]
fn crash_loop_backs_off_with_growing_gaps_capped_at_max() {
    let d = Daemon::start(
        r#"
[service.crashy]
command = ["{zoo}", "crash-loop", "--after", "20ms", "--code", "7", "--stamp", "{dir}/stamps"]
backoff = { initial = "100ms", max = "400ms", reset_after = "30s" }
"#,
    );
    let stamps = d.path("stamps");
    wait_for("six starts", Duration::from_secs(30), || {
        (read_stamps(&stamps)
            .iter()
            .filter(|s| s.0 == "start")
            .count()
            >= 6)
            .then_some(())
    });
    let s = d.status("crashy");
    assert_eq!(s["last_exit"]["code"], 7, "{s}");
    assert!(s["restarts"].as_u64().unwrap() >= 5, "{s}");

    // The daemon's scheduled delays: doubling from initial, never above max.
    let delays = restart_delays_ms(&d, "crashy");
    assert!(delays.len() >= 5, "{delays:?}");
    for w in delays.windows(2) {
        assert!(
            w[1] + 5 >= w[0],
            "delays must not shrink within a streak: {delays:?}"
        );
    }
    assert!(
        delays.iter().all(|&ms| ms <= 400),
        "a delay exceeded backoff.max: {delays:?}"
    );
    assert!(
        delays[0] >= 90 && delays[0] <= 100,
        "first delay is initial: {delays:?}"
    );
    assert!(
        delays[3] >= 390,
        "the fourth delay has reached max: {delays:?}"
    );

    // And the process really waited at least that long between exit and next start.
    let st = read_stamps(&stamps);
    let mut gaps = Vec::new();
    for w in st.windows(2) {
        if w[0].0 == "exit" && w[1].0 == "start" {
            gaps.push(((w[1].1 - w[0].1) / 1_000_000) as u64);
        }
    }
    assert!(gaps.len() >= 4, "{st:?}");
    assert!(gaps[0] >= 90, "first gap {gaps:?}");
    assert!(
        gaps[2] >= 390,
        "third restart waited less than its delay: {gaps:?}"
    );
}

#[test]
fn good_run_resets_the_backoff() {
    // Each run lasts longer than reset_after, so each restart is immediate, however often.
    let d = Daemon::start(
        r#"
[service.steady]
command = ["{zoo}", "crash-loop", "--after", "400ms", "--code", "1"]
backoff = { initial = "5s", max = "30s", reset_after = "300ms" }
"#,
    );
    wait_for("three restarts", Duration::from_secs(30), || {
        (d.status("steady")["restarts"].as_u64()? >= 3).then_some(())
    });
    let delays = restart_delays_ms(&d, "steady");
    assert!(delays.len() >= 3, "{delays:?}");
    assert!(
        delays.iter().all(|&ms| ms == 0),
        "restarts after good runs must be immediate: {delays:?}"
    );
}

#[test]
fn quick_exit_after_good_runs_starts_backoff_from_initial() {
    let d = Daemon::start(
        r#"
[service.q]
command = ["{zoo}", "crash-loop", "--after", "10ms", "--code", "2"]
backoff = { initial = "150ms", max = "10s", reset_after = "5s" }
"#,
    );
    wait_for("two restarts", Duration::from_secs(30), || {
        (d.status("q")["restarts"].as_u64()? >= 2).then_some(())
    });
    let delays = restart_delays_ms(&d, "q");
    assert!(delays[0] >= 140 && delays[0] <= 150, "{delays:?}");
    assert!(delays[1] >= 290 && delays[1] <= 300, "{delays:?}");
}

#[test]
fn restart_never_leaves_failed_with_the_exit_code() {
    let d = Daemon::start(
        r#"
[service.once]
command = ["{zoo}", "crash-loop", "--after", "10ms", "--code", "4"]
restart = "never"

[service.job]
command = ["{zoo}", "crash-loop", "--after", "10ms", "--code", "0"]
restart = "on-failure"
"#,
    );
    let s = d.wait_state("once", "failed", T);
    assert!(
        s["reason"].as_str().unwrap().contains("exited with code 4"),
        "{s}"
    );
    assert_eq!(s["last_exit"]["code"], 4);
    let j = d.wait_state("job", "exited", T);
    assert!(
        j["reason"]
            .as_str()
            .unwrap()
            .starts_with("finished successfully"),
        "{j}"
    );
}

#[test]
fn missing_binary_fails_with_reason_and_the_rest_start() {
    let d = Daemon::start(
        r#"
[service.ghost]
command = ["/nonexistent/bin/ghost", "--serve"]

[service.noexec]
command = ["{dir}/candor.toml"]

[service.fine]
command = ["{zoo}", "healthy"]
"#,
    );
    let g = d.wait_state("ghost", "failed", T);
    assert!(
        g["reason"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/bin/ghost not found"),
        "{g}"
    );
    let n = d.wait_state("noexec", "failed", T);
    assert!(
        n["reason"].as_str().unwrap().contains("not executable"),
        "{n}"
    );
    d.wait_state("fine", "running", T);
    // `start --wait` on it reports the failure with exit code 1.
    let out = d.cli(&["start", "ghost", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn dependency_order_on_start_and_reverse_on_shutdown() {
    let mut d = Daemon::start(
        r#"
# Each stamps its start, then says READY=1: "running" then means it really began.
[service.app]
command = ["{zoo}", "healthy", "--stamp", "{dir}/app"]
after = ["cache", "db"]
ready = "notify"

[service.cache]
command = ["{zoo}", "healthy", "--stamp", "{dir}/cache"]
after = ["db"]
ready = "notify"

[service.db]
command = ["{zoo}", "healthy", "--stamp", "{dir}/db"]
ready = "notify"
"#,
    );
    for n in ["app", "cache", "db"] {
        d.wait_state(n, "running", T);
    }
    let dir = d.dir.path().to_path_buf();
    let t = |name: &str, what: &str| -> u128 {
        read_stamps(&dir.join(name))
            .iter()
            .find(|s| s.0 == what)
            .unwrap_or_else(|| panic!("{name} has no {what} stamp"))
            .1
    };
    assert!(
        t("db", "start") < t("cache", "start"),
        "db must start before cache"
    );
    assert!(
        t("cache", "start") < t("app", "start"),
        "cache must start before app"
    );
    d.shutdown();
    assert!(
        t("app", "exit") < t("cache", "exit"),
        "app must stop before cache"
    );
    assert!(
        t("cache", "exit") < t("db", "exit"),
        "cache must stop before db"
    );
}

#[test]
fn logs_show_the_last_lines() {
    let d = Daemon::start(
        r#"
[service.talker]
command = ["{zoo}", "crash-loop", "--after", "50ms", "--code", "9"]
restart = "never"
"#,
    );
    d.wait_state("talker", "failed", T);
    let out = wait_for("logs stored", T, || {
        let o = d.ok(&["logs", "talker", "-n", "1"]);
        o.contains("exiting with code 9").then_some(o)
    });
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("stderr"), "{out}");
    let both = d.ok(&["logs", "talker", "-n", "10"]);
    assert!(both.contains("crash-loop: pid"), "{both}");
    let grep = d.ok(&["logs", "talker", "--grep", "will exit"]);
    assert_eq!(grep.lines().count(), 1, "{grep}");
}

#[test]
fn reset_failed_restarts_only_failed_services() {
    let d = Daemon::start(
        r#"
[service.bad]
command = ["{zoo}", "crash-loop", "--after", "10ms", "--code", "3"]
restart = "never"

[service.good1]
command = ["{zoo}", "healthy"]

[service.good2]
command = ["{zoo}", "healthy"]
"#,
    );
    d.wait_state("bad", "failed", T);
    let p1 = d.wait_state("good1", "running", T)["pid"].clone();
    let p2 = d.wait_state("good2", "running", T)["pid"].clone();
    let runs_before = d.status("bad")["runs"].as_u64().unwrap();
    let out: serde_json::Value = serde_json::from_str(&d.ok(&["reset-failed", "--json"])).unwrap();
    assert_eq!(out["restarted"], serde_json::json!(["bad"]));
    assert_eq!(out["left_alone"], serde_json::json!(["good1", "good2"]));
    wait_for("bad to run again", T, || {
        (d.status("bad")["runs"].as_u64()? > runs_before).then_some(())
    });
    assert_eq!(d.status("good1")["pid"], p1);
    assert_eq!(d.status("good2")["pid"], p2);
}

#[test]
fn cli_without_daemon_exits_3_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(candor_scenarios::candor_bin())
        .args(["status"])
        .env("CANDOR_SOCKET", dir.path().join("nobody.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the candor daemon") && err.contains("nobody.sock"),
        "{err}"
    );
    let out = std::process::Command::new(candor_scenarios::candor_bin())
        .args(["status", "--json"])
        .env("CANDOR_SOCKET", dir.path().join("nobody.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json error");
    assert!(v["error"].as_str().unwrap().contains("cannot reach"));
}

#[test]
fn malformed_requests_get_4xx_with_a_reason() {
    let d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
"#,
    );
    d.wait_state("web", "running", T);
    let raw = |req: &str| d.raw(req).expect("an answer");
    let cases = [
        ("POST /v1/services/web/explode HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "404", "unknown action"),
        ("GET /v1/services/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "404", "no service named `nope`"),
        ("POST /v1/services/web/start?wait=maybe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "400", "must be true or false"),
        ("GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "404", "no such endpoint"),
        ("DELETE /v1/services HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "405", "method not allowed"),
        ("GET /v1/services/web/logs?n=lots HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "400", "whole number"),
        ("this is not http\r\n\r\n", "400", ""),
    ];
    let huge = format!(
        "POST /v1/upgrade HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 200000\r\n\r\n{}",
        " ".repeat(200_000)
    );
    let resp = raw(&huge);
    assert!(resp.lines().next().unwrap_or("").contains("413"), "{resp}");
    assert!(resp.contains("at most 65536 bytes"), "{resp}");
    for (req, code, reason) in cases {
        let resp = raw(req);
        let status_line = resp.lines().next().unwrap_or("");
        assert!(status_line.contains(code), "{req:?} -> {resp}");
        assert!(resp.contains(reason), "{req:?} -> {resp}");
    }
    // The daemon is still fine.
    assert_eq!(d.state("web"), "running");
    let _ = Instant::now();
}

#[test]
fn events_follow_streams_changes_and_ends_with_the_daemon() {
    let mut d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
"#,
    );
    d.wait_state("web", "running", T);
    let (mut follower, rx) = d.follow_json(&["events", "-f", "--json", "-n", "1"]);
    // The history line comes first, so the follower is connected before we act.
    rx.recv_timeout(T).expect("history event");
    d.ok(&["stop", "web"]);
    let mut states = Vec::new();
    while !states.contains(&"stopped".to_string()) {
        let ev = rx.recv_timeout(T).expect("a live event after stop");
        if ev["service"] == "web" {
            states.push(ev["state"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(states, ["stopping", "stopped"]);
    d.shutdown();
    let status = wait_for("the follower to end with the daemon", T, || {
        follower.try_wait().ok().flatten()
    });
    assert!(status.success(), "{status}");
}

#[test]
fn metrics_report_state_and_restarts_per_service() {
    let d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]

[service.crashy]
command = ["{zoo}", "crash-loop", "--after", "10ms", "--code", "1"]
backoff = { initial = "50ms", max = "100ms" }
"#,
    );
    d.wait_state("web", "running", T);
    wait_for("two crash restarts", T, || {
        (d.status("crashy")["restarts"].as_u64()? >= 2).then_some(())
    });
    let out = d
        .raw(&candor_scenarios::get_request("/metrics"))
        .expect("an answer");
    assert!(
        out.contains("candor_service_up{service=\"web\",state=\"running\"} 1"),
        "{out}"
    );
    let restarts = out
        .lines()
        .find_map(|l| l.strip_prefix("candor_service_restarts_total{service=\"crashy\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no restart counter for crashy in {out}"));
    assert!(restarts >= 2, "{out}");
    assert!(
        out.contains("# TYPE candor_log_lines_total counter"),
        "{out}"
    );
}

#[test]
fn logs_follow_shows_new_lines_as_they_come_and_ends_with_the_daemon() {
    let mut d = Daemon::start(
        r#"
[service.talker]
command = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo \"line $i\"; echo \"noise $i\"; sleep 0.1; done"]
"#,
    );
    d.wait_state("talker", "running", T);
    let (mut follower, rx) = d.follow_json(&[
        "logs", "talker", "-f", "--json", "-n", "1", "--grep", "line",
    ]);
    let mut numbers = Vec::new();
    while numbers.len() < 5 {
        let l = rx.recv_timeout(T).expect("a followed line");
        let text = l["line"].as_str().unwrap().to_string();
        assert!(
            text.starts_with("line "),
            "--grep applies to followed lines: {text}"
        );
        numbers.push(text[5..].parse::<u64>().unwrap());
    }
    // New lines, in order, none lost between history and live.
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    d.shutdown();
    let status = wait_for("the follower to end with the daemon", T, || {
        follower.try_wait().ok().flatten()
    });
    assert!(status.success(), "{status}");
}

/// Processes whose command line contains `needle` (read from /proc).
fn processes_with(needle: &str) -> usize {
    candor_scenarios::processes(|c| {
        String::from_utf8_lossy(c)
            .replace('\0', " ")
            .contains(needle)
    })
}

#[test]
fn under_exec_probe_load_every_service_runs_and_every_stop_ends() {
    // 400 services, each probed by a process every 2 s with the default 1 s timeout: the
    // keeper spawns 200 probes a second besides the services (the issue's overload: /bin/true
    // probes timed out and healthy services were restarted). Spawns and stops never wait
    // behind probes, and a probe that waits for the daemon is not a failure of its service.
    let n = 400;
    let tag = format!("{}", 9_000_000 + std::process::id());
    let mut cfg = String::new();
    for i in 0..n {
        cfg.push_str(&format!(
            "[service.s{i}]\ncommand = [\"sleep\", \"{tag}\"]\nprobe = {{ exec = [\"true\"], every = \"2s\" }}\n\n"
        ));
    }
    let mut d = Daemon::start(&cfg);
    let statuses = |d: &Daemon| -> Vec<serde_json::Value> {
        serde_json::from_str(&d.ok(&["status", "--json"])).expect("status json")
    };
    let line = |s: &serde_json::Value| format!("{} {}: {}", s["name"], s["state"], s["reason"]);
    wait_for("every service running", Duration::from_secs(120), || {
        let s = statuses(&d);
        (s.len() == n && s.iter().all(|s| s["state"] == "running")).then_some(())
    });
    // For a few probe periods of steady load, a healthy service is never shown as anything
    // else, and no probe of one fails.
    let end = Instant::now() + Duration::from_secs(6);
    while Instant::now() < end {
        let all = statuses(&d);
        let odd: Vec<String> = all
            .iter()
            .filter(|s| s["state"] != "running")
            .map(line)
            .collect();
        assert!(odd.is_empty(), "healthy services shown otherwise: {odd:?}");
        let failed: Vec<String> = all
            .iter()
            .filter(|s| s["probes"][0]["ok"] == false)
            .map(|s| format!("{}: {}", s["name"], s["probes"][0]))
            .collect();
        assert!(
            failed.is_empty(),
            "probes of healthy services failed: {failed:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Nothing but starting and running in the daemon's own record either.
    let bad: Vec<String> = d
        .events()
        .iter()
        .filter(|e| e["service"] != "candor" && e["state"] != "starting" && e["state"] != "running")
        .map(|e| format!("{} {}: {}", e["service"], e["state"], e["reason"]))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(processes_with(&format!("sleep {tag}")), n);
    // Every stop ends, and nothing is left behind.
    d.shutdown();
    wait_for("no service process left", T, || {
        (processes_with(&format!("sleep {tag}")) == 0).then_some(())
    });
}
