//! The web listener: the dashboard page and the API over TCP, behind the login token that
//! `candor web` prints; /metrics public only when asked. (The page in a real browser is
//! driven by tests/browser, when Chromium is there.)

use std::io::{Read, Write};
use std::time::Duration;

use candor_scenarios::{wait_for, Daemon};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// One HTTP/1.1 request with no body, `Host` the address itself; the whole answer.
fn http(addr: &str, method: &str, path: &str, headers: &[&str]) -> String {
    candor_scenarios::http_send(addr, addr, method, path, headers, "")
}

use candor_scenarios::{http_body as body, http_status as status};

#[test]
fn the_dashboard_needs_its_token_and_then_serves_the_page_the_board_and_actions() {
    let d = Daemon::start(
        r#"
web = { listen = "127.0.0.1:0" }

[service.web]
command = ["{zoo}", "healthy"]

[service.crashy]
command = ["{zoo}", "crash-loop", "--after", "10ms", "--code", "3"]
restart = "never"
"#,
    );
    let pid = d.wait_state("web", "running", T)["pid"].as_u64().unwrap();
    d.wait_state("crashy", "failed", T);
    let w: Value = serde_json::from_str(&d.ok(&["web", "--json"])).unwrap();
    let (url, listen, token) = (
        w["url"].as_str().unwrap(),
        w["listen"].as_str().unwrap().to_string(),
        w["token"].as_str().unwrap().to_string(),
    );
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with(&format!("/?token={token}")),
        "{url}"
    );
    assert_eq!(d.ok(&["web"]).trim(), url, "one line, the URL");
    // Without the token: refused, saying how to get it — the page, the API, the metrics.
    for path in ["/", "/v1/services", "/metrics", "/app.js"] {
        let a = http(&listen, "GET", path, &[]);
        assert_eq!(status(&a), 401, "{path}: {a}");
        assert!(body(&a).contains("run `candor web`"), "{a}");
    }
    let wrong = http(&listen, "GET", "/v1/services", &["Cookie: candor_token=00"]);
    assert_eq!(status(&wrong), 401);
    let a = http(&listen, "POST", "/v1/services/web/stop", &[]);
    assert_eq!(status(&a), 401, "nothing is done without the token: {a}");
    assert_eq!(d.status("web")["pid"], pid);
    // The URL with the token: a cookie for the rest, and the page without the token in it.
    let login = http(&listen, "GET", &format!("/?token={token}"), &[]);
    assert_eq!(status(&login), 303, "{login}");
    let cookie_line = login
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a cookie");
    assert!(
        cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"),
        "{cookie_line}"
    );
    let cookie = format!("Cookie: candor_token={token}");
    let page = http(&listen, "GET", "/", &[&cookie]);
    assert_eq!(status(&page), 200);
    assert!(body(&page).contains("<title>Candor</title>"), "{page}");
    let mut size = body(&page).len();
    for asset in ["/app.js", "/app.css"] {
        let a = http(&listen, "GET", asset, &[&cookie]);
        assert_eq!(status(&a), 200, "{asset}");
        size += body(&a).len();
    }
    assert!(size < 300 * 1024, "the dashboard is {size} bytes");
    // The board, pushed: the first frame of the stream is the whole list.
    let mut c = std::net::TcpStream::connect(&listen).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    write!(
        c,
        "GET /v1/services?follow=true HTTP/1.1\r\nHost: {listen}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let frame = wait_for("the first frame", T, || {
        let n = c.read(&mut buf).ok()?;
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        let start = text.find("data: ")? + 6;
        let end = start + text[start..].find("\n\n")?;
        Some(text[start..end].to_string())
    });
    let list: Value = serde_json::from_str(&frame).unwrap();
    let states: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("crashy", "failed"), ("web", "running")]);
    // An action from the page (the token in a header, as the page sends it) is done, and
    // recorded as coming from the dashboard.
    let a = http(
        &listen,
        "POST",
        "/v1/services/web/restart",
        &[&cookie, &format!("Authorization: Bearer {token}")],
    );
    assert_eq!(status(&a), 200, "{a}");
    let new = wait_for("a new run", T, || {
        let p = d.status("web")["pid"].as_u64()?;
        (p != pid).then_some(p)
    });
    assert_ne!(new, pid);
    let events = d.events();
    let asked = events.iter().find(|e| {
        e["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("restart web requested from the web dashboard (127.0.0.1:")
    });
    assert!(asked.is_some(), "{events:?}");
    // The next stream frame shows the change without asking.
    wait_for("a frame with the new pid", T, || {
        let n = c.read(&mut buf).ok()?;
        got.extend_from_slice(&buf[..n]);
        String::from_utf8_lossy(&got)
            .contains(&format!("\"pid\":{new}"))
            .then_some(())
    });
}

#[test]
fn metrics_can_be_public_while_everything_else_keeps_the_token() {
    let d = Daemon::start(
        r#"
web = { listen = "127.0.0.1:0", metrics_public = true }

[service.web]
command = ["{zoo}", "healthy"]
"#,
    );
    d.wait_state("web", "running", T);
    let w: Value = serde_json::from_str(&d.ok(&["web", "--json"])).unwrap();
    let listen = w["listen"].as_str().unwrap();
    assert_eq!(w["metrics_public"], true);
    let m = http(listen, "GET", "/metrics", &[]);
    assert_eq!(status(&m), 200, "{m}");
    assert!(
        body(&m).contains("candor_service_up{service=\"web\",state=\"running\"} 1"),
        "{m}"
    );
    assert_eq!(status(&http(listen, "GET", "/v1/services", &[])), 401);
    assert_eq!(
        status(&http(listen, "POST", "/metrics", &[])),
        401,
        "only GET is public"
    );
    // A reload: metrics_public applies now; a new address is said to wait for a restart.
    d.write_config(
        "web = { listen = \"127.0.0.1:1\" }\n\n[service.web]\ncommand = [\"{zoo}\", \"healthy\"]\n",
    );
    let out = d.ok(&["reload"]);
    assert!(
        out.contains(&format!(
            "web.listen changed to 127.0.0.1:1; the dashboard stays on {listen}"
        )),
        "{out}"
    );
    assert_eq!(
        status(&http(listen, "GET", "/metrics", &[])),
        401,
        "no longer public"
    );
}

/// The page in Debian's chromium, driven by playwright-core (tests/browser/dashboard.mjs; both
/// installed by scripts/test.sh): live state changes, a restart, a followed log line, grep,
/// the keyboard, no way in without the token, the table over the whole window while nothing
/// is selected, and replicated services (a faked board) with their instances and rollouts. `CANDOR_SCREENSHOTS=DIR` keeps screenshots.
#[test]
fn the_dashboard_in_a_real_browser_follows_the_board_acts_and_tails_logs() {
    let Some(dir) = candor_scenarios::browser_dir() else {
        return;
    };
    let port = candor_scenarios::free_port();
    let d = Daemon::start(&format!(
        r#"
web = {{ listen = "127.0.0.1:0" }}

[service.web]
command = ["{{zoo}}", "healthy"]

[service.dying]
command = ["{{zoo}}", "handler-dead", "--after", "3s", "--port", "{port}"]
probe = {{ http = {{ port = {port}, path = "/health" }}, every = "300ms", failures = 2 }}
on_unhealthy = "alert"

[service.talker]
command = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo \"line $i\"; sleep 0.2; done"]

[service.pool]
command = ["sleep", "100000"]
replicas = 3
"#
    ));
    d.wait_state("web", "running", T);
    d.wait_state("dying", "running", T);
    let url = d.ok(&["web"]).trim().to_string();
    let mut cmd = std::process::Command::new("node");
    cmd.arg(dir.join("dashboard.mjs")).arg(&url);
    if let Ok(shots) = std::env::var("CANDOR_SCREENSHOTS") {
        cmd.arg(shots);
    }
    let out = cmd.output().expect("node");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser test failed:\n{said}");
    for step in [
        "refused (401)",
        "turned unhealthy live",
        "restart from the page",
        "log follows",
        "grep narrows",
        "one banner per target",
        "the table spans the window",
        "instances under their group by index",
        "replicated services on the live board (1)",
    ] {
        assert!(said.contains(step), "no `{step}` in:\n{said}");
    }
    eprintln!("{said}");
}

/// The jobs panel's script without a browser (tests/browser/jobs_panel.mjs: app.js in node
/// with stand-ins for the DOM): it parses, lists each job with its next run, last result and
/// counts, offers a run button only to an operator, and shows a job's history.
#[test]
fn the_dashboard_script_parses_and_its_jobs_panel_lists_jobs() {
    let node = std::process::Command::new("node").arg("--version").output();
    let have_node = node.is_ok_and(|o| o.status.success());
    if !candor_scenarios::available("CANDOR_REQUIRE_ROOT", "node is missing", have_node) {
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/jobs_panel.mjs");
    let out = std::process::Command::new("node")
        .arg(&script)
        .output()
        .expect("node");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the jobs panel check failed:\n{said}");
    for step in [
        "lists each job with its next run, last result and counts",
        "no run button for a read-only token",
        "history, newest first",
        "no jobs, no panel",
        "read-only page lists the jobs without run buttons",
    ] {
        assert!(said.contains(step), "no `{step}` in:\n{said}");
    }
}

#[test]
fn a_dashboard_port_taken_by_someone_else_is_said_and_everything_else_runs() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let d = Daemon::start(&format!(
        "web = {{ listen = \"127.0.0.1:{port}\" }}\n\n[service.web]\ncommand = [\"{{zoo}}\", \"healthy\"]\n"
    ));
    d.wait_state("web", "running", T);
    let events = d.events();
    assert!(
        events.iter().any(|e| e["state"] == "warning"
            && e["reason"].as_str().unwrap_or("").starts_with(&format!(
                "cannot listen on 127.0.0.1:{port} for the dashboard"
            ))),
        "{events:?}"
    );
    let r = d.cli(&["web"]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("to another port"), "{err}");
}

/// A browser (or anything with the token) that follows a log and stops reading is cut off
/// after `send_timeout`, as on the control socket: the dashboard's listener is guarded too.
#[test]
fn a_dashboard_follower_that_stops_reading_is_cut_off_and_the_daemon_carries_on() {
    let d = Daemon::start(
        r#"
send_timeout = "1s"
web = { listen = "127.0.0.1:0" }

[service.flood]
command = ["{zoo}", "log-flood", "--lines-per-sec", "20000"]
logs = { rate = 100000, burst = 100000 }
"#,
    );
    d.wait_state("flood", "running", T);
    let w: Value = serde_json::from_str(&d.ok(&["web", "--json"])).unwrap();
    let (listen, token) = (
        w["listen"].as_str().unwrap().to_string(),
        w["token"].as_str().unwrap().to_string(),
    );
    // Follow the flood's log over TCP, then never read.
    let mut s = std::net::TcpStream::connect(&listen).unwrap();
    write!(
        s,
        "GET /v1/services/flood/logs?follow=true HTTP/1.1\r\nHost: {listen}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let cut = candor_scenarios::wait_cut_off(&d);
    assert_eq!(cut, 1);
    assert!(
        d.log()
            .contains("cut off an API client (dashboard, 127.0.0.1:"),
        "{}",
        d.log()
    );
    // What was sent before the cut can still be read, then the connection ends.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    candor_scenarios::read_until_closed(&mut s);
    assert_eq!(d.state("flood"), "running");
    // The dashboard still answers.
    let again = http(
        &listen,
        "GET",
        "/v1/services",
        &[&format!("Authorization: Bearer {token}")],
    );
    assert_eq!(status(&again), 200, "{again}");
}
