//! Roles: the daemon's own user (here root) is the admin; `socket_group` members are
//! operators — they may start and stop services but not upgrade the daemon, nor shut it down
//! unless `operators_may_shutdown`; dashboard tokens are operator or read-only. And
//! `candor upgrade` runs only a binary that no one but root can change.
//!
//! The operator is `nobody` (uid 65534) in group `nogroup` (gid 65534), so these tests run as
//! root: they say so and stop elsewhere.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use candor_scenarios::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);
const NOBODY: u32 = 65534;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if me != 0 {
        eprintln!("skipped: running a client as another user (nobody) needs root");
    }
    me == 0
}

/// A daemon whose control socket `nobody` can reach: `socket_group = "nogroup"`, in a temp
/// dir it may enter (the harness's is 0700), with `daemon_keys` added to `[daemon]`.
fn daemon(daemon_keys: &str, services: &str) -> Daemon {
    let config = format!("socket_group = \"nogroup\"\n{daemon_keys}\n{services}");
    let mut d = Daemon::unstarted(&config);
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d.spawn();
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "the control socket is open to its group");
    d
}

/// `candor ARGS` run as `nobody`:`nogroup` (the socket group's only way in).
fn as_operator(d: &Daemon, args: &[&str]) -> Output {
    let bin = candor_bin();
    let out = Command::new(&bin)
        .args(args)
        .env("CANDOR_SOCKET", &d.socket)
        .env("HOME", "/")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .output()
        .expect("run candor as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("Permission denied") && !err.contains("permission denied"),
        "nobody cannot reach {} or {} (every directory above them must be searchable by others): {err}",
        bin.display(),
        d.socket.display()
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SLEEPER: &str = r#"
[service.a]
command = ["/bin/sleep", "3600"]
"#;

#[test]
fn an_operator_stops_and_starts_services_but_cannot_upgrade_or_shut_down() {
    if !root() {
        return;
    }
    let d = daemon("", SLEEPER);
    d.wait_state("a", "running", T);
    let before = d.info();

    let stop = as_operator(&d, &["stop", "a", "--wait"]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    assert_eq!(d.state("a"), "stopped");
    let start = as_operator(&d, &["start", "a", "--wait"]);
    assert!(start.status.success(), "{}", stderr(&start));
    assert_eq!(d.state("a"), "running");
    // Reading is an operator's too.
    let status = as_operator(&d, &["status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    // The request is recorded with who made it and in what role.
    let events = d.events();
    assert!(
        events.iter().any(|e| {
            e["reason"].as_str().is_some_and(|r| {
                r.starts_with("stop a requested by uid 65534") && r.ends_with(", operator")
            }) && e["detail"]["role"] == "operator"
        }),
        "{events:#?}"
    );

    let upgrade = as_operator(&d, &["upgrade"]);
    assert_eq!(upgrade.status.code(), Some(1), "{upgrade:?}");
    assert!(
        stderr(&upgrade).contains(
            "upgrade needs the admin role (the daemon's own user or root on the control socket); you are an operator (uid 65534 via socket_group nogroup)"
        ),
        "{}",
        stderr(&upgrade)
    );
    let shutdown = as_operator(&d, &["shutdown"]);
    assert_eq!(shutdown.status.code(), Some(1), "{shutdown:?}");
    assert!(
        stderr(&shutdown).contains("shutdown needs the admin role")
            && stderr(&shutdown).contains("operators_may_shutdown = true"),
        "{}",
        stderr(&shutdown)
    );
    // No dashboard configured: opening one is the admin's to decide.
    let web = as_operator(&d, &["web"]);
    assert_eq!(web.status.code(), Some(1), "{web:?}");
    assert!(
        stderr(&web).contains("needs the admin role"),
        "{}",
        stderr(&web)
    );

    let after = d.info();
    assert_eq!(after["pid"], before["pid"]);
    assert_eq!(after["incarnation"], before["incarnation"], "not upgraded");
    assert!(after["access"]["dashboard"].is_null(), "{after}");
    assert_eq!(d.state("a"), "running", "not shut down");

    // The admin sees who can reach the daemon.
    let header = d.ok(&["status"]);
    assert!(
        header.contains("control: root only; operators: group nogroup; dashboard: off"),
        "{header}"
    );
    let access = &after["access"];
    assert_eq!(access["control_uid"], 0);
    assert_eq!(access["socket_mode"], "0660");
    assert_eq!(access["operators"]["name"], "nogroup");
    assert_eq!(access["operators"]["gid"], NOBODY);
    assert_eq!(access["operators_may_shutdown"], false);
}

#[test]
fn with_operators_may_shutdown_an_operator_shuts_the_daemon_down() {
    if !root() {
        return;
    }
    let d = daemon("operators_may_shutdown = true", SLEEPER);
    d.wait_state("a", "running", T);
    assert!(d
        .ok(&["status"])
        .contains("operators: group nogroup (may shut down)"));
    let upgrade = as_operator(&d, &["upgrade"]);
    assert_eq!(upgrade.status.code(), Some(1), "still never upgrade");
    let pid = d.daemon_pid() as u64;
    let out = as_operator(&d, &["shutdown"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the daemon to exit", T, || (!alive(pid)).then_some(()));
    let events = std::fs::read_to_string(d.path("daemon.log")).unwrap_or_default();
    assert!(!events.contains("panicked"), "{events}");
}

/// One HTTP/1.1 request to the dashboard with a bearer token: (status, body).
fn http(listen: &str, method: &str, path: &str, token: &str) -> (u16, String) {
    let bearer = format!("Authorization: Bearer {token}");
    let answer = candor_scenarios::http_send(
        listen,
        listen,
        method,
        path,
        &[&bearer, "Content-Type: application/json"],
        "",
    );
    let code = candor_scenarios::http_status(&answer);
    (code, candor_scenarios::http_body(&answer).to_string())
}

#[test]
fn a_read_only_token_reads_but_cannot_stop_and_an_operator_token_can() {
    if !root() {
        return;
    }
    let d = daemon("web = { listen = \"127.0.0.1:0\" }", SLEEPER);
    d.wait_state("a", "running", T);
    let operator: Value = serde_json::from_str(&d.ok(&["web", "--json"])).unwrap();
    // The dashboard is configured: an operator may have its read-only token.
    let out = as_operator(&d, &["web", "--read-only", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reader: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reader["read_only"], true);
    assert_eq!(operator["read_only"], false);
    let listen = operator["listen"].as_str().unwrap();
    let (op, ro) = (
        operator["token"].as_str().unwrap(),
        reader["token"].as_str().unwrap(),
    );
    assert_ne!(op, ro);
    assert!(reader["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("?token={ro}")));
    let file = d.path("state/web-read.token");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The same token again, not a new one.
    let again: Value = serde_json::from_str(&d.ok(&["web", "--read-only", "--json"])).unwrap();
    assert_eq!(again["token"], ro);

    let (code, body) = http(listen, "GET", "/v1/services", ro);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"name\":\"a\""), "{body}");
    let (code, body) = http(listen, "POST", "/v1/services/a/stop", ro);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("stop a needs the operator role")
            && body.contains("you hold a read-only dashboard token"),
        "{body}"
    );
    assert_eq!(d.state("a"), "running");
    // The page logged in with the read-only token carries that token, never the operator's
    // (its scripts send what the page holds).
    for cookie_token in [ro, op] {
        let mut c = std::net::TcpStream::connect(listen).expect("the dashboard");
        c.set_read_timeout(Some(T)).unwrap();
        write!(
            c,
            "GET / HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\nCookie: candor_token={cookie_token}\r\n\r\n"
        )
        .unwrap();
        let mut page = String::new();
        c.read_to_string(&mut page).unwrap();
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        let other = if cookie_token == ro { op } else { ro };
        assert!(
            page.contains(&format!("content=\"{cookie_token}\"")) && !page.contains(other),
            "the page must carry its own login's token only:\n{page}"
        );
    }
    // Nor mint a token, nor reach what only an admin may do.
    for path in ["/v1/web", "/v1/upgrade", "/v1/shutdown", "/v1/reload"] {
        let (code, body) = http(listen, "POST", path, ro);
        assert_eq!(code, 403, "{path}: {body}");
    }
    // An operator token: actions yes, upgrade never.
    let (code, body) = http(listen, "POST", "/v1/services/a/stop?wait=true", op);
    assert_eq!(code, 200, "{body}");
    assert_eq!(d.state("a"), "stopped");
    let (code, body) = http(listen, "POST", "/v1/upgrade", op);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("you hold an operator dashboard token"),
        "{body}"
    );
    let events = d.events();
    assert!(
        events.iter().any(|e| e["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("stop a requested from the web dashboard")
                && r.ends_with("with an operator token"))),
        "{events:#?}"
    );

    let info = d.info();
    assert_eq!(info["access"]["dashboard"], listen, "{info}");
    assert_eq!(info["access"]["dashboard_tokens"], 2, "{info}");
    let header = d.ok(&["status"]);
    assert!(
        header.contains(&format!("dashboard: {listen}, 2 tokens")),
        "{header}"
    );
}

/// POST /v1/upgrade with `binary`, raw over the control socket: (status, body).
fn upgrade(d: &Daemon, binary: &Path) -> (u16, String) {
    let body = serde_json::json!({ "binary": binary }).to_string();
    let req = format!(
        "POST /v1/upgrade HTTP/1.1\r\nHost: candor\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let out = d.raw(&req).expect("an answer");
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        out[out.find("\r\n\r\n").map_or(0, |i| i + 4)..].to_string(),
    )
}

#[test]
fn upgrade_refuses_a_binary_in_a_directory_others_can_write_even_through_a_symlink() {
    let d = Daemon::start(SLEEPER);
    d.wait_state("a", "running", T);
    let before = d.info();
    let base = private_tempdir();
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    // A binary that would pass `check` and take over if it were run.
    let fake = open.join("candor");
    std::fs::copy(candor_bin(), &fake).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();

    let (code, body) = upgrade(&d, &fake);
    assert_eq!(code, 409, "{body}");
    let said = format!(
        "not upgrading to {}: {} is writable by others (mode 0777); put the binary in a directory only root can write",
        fake.display(),
        open.display()
    );
    assert!(body.contains(&said), "{body}");
    let cli = d.cli(&["upgrade", "--binary", fake.to_str().unwrap()]);
    assert_eq!(cli.status.code(), Some(1), "{cli:?}");
    assert!(stderr(&cli).contains(&said), "{}", stderr(&cli));

    // A link in a safe directory to it: followed, and refused the same.
    let safe = base.path().join("safe");
    std::fs::create_dir(&safe).unwrap();
    let link = safe.join("candor");
    std::os::unix::fs::symlink(&fake, &link).unwrap();
    let (code, body) = upgrade(&d, &link);
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains(&format!("{} is writable by others", open.display()))
            && body.contains(&format!("reached through the symlink {}", link.display())),
        "{body}"
    );
    // /tmp itself.
    let (code, body) = upgrade(&d, Path::new("/tmp/candor"));
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("/tmp is writable by others (mode 1777)"),
        "{body}"
    );

    let after = d.info();
    assert_eq!(after["incarnation"], before["incarnation"], "nothing ran");
    assert!(after["upgrade_error"].is_null(), "{after}");

    // The same binary where only root can write: the upgrade goes through.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = d.ok(&["upgrade", "--binary", link.to_str().unwrap()]);
    assert!(out.starts_with("upgraded: pid "), "{out}");
    assert_ne!(d.info()["incarnation"], before["incarnation"]);
}
