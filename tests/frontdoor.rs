//! The dashboard's front door and both listeners' connection limits (issue 26, points 1 and 4):
//! a change through the dashboard needs the token in a header, never the cookie alone; another
//! origin, another site, another Host (DNS rebinding) and a body that is not JSON are refused;
//! idle connections are closed after the header timeout; and neither the dashboard nor another
//! local user can take the connections the control socket's owner needs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use candor_scenarios::{wait_for, Daemon};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

use candor_scenarios::{http_send as send, http_status as status};

fn has_header(answer: &str, name: &str) -> Option<String> {
    let head = &answer[..answer.find("\r\n\r\n").unwrap_or(answer.len())];
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn dashboard(d: &Daemon) -> (String, String) {
    let w: Value = serde_json::from_str(&d.ok(&["web", "--json"])).unwrap();
    (
        w["listen"].as_str().unwrap().to_string(),
        w["token"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_change_through_the_dashboard_needs_the_token_in_a_header_from_its_own_origin() {
    let d = Daemon::start(
        r#"
web = { listen = "127.0.0.1:0", hosts = ["dash.example.org"] }

[service.x]
command = ["{zoo}", "healthy"]
"#,
    );
    let pid = d.wait_state("x", "running", T)["pid"].as_u64().unwrap();
    let (listen, token) = dashboard(&d);
    let port = listen.rsplit(':').next().unwrap().to_string();
    let cookie = format!("Cookie: candor_token={token}");
    let bearer = format!("Authorization: Bearer {token}");
    let post = |headers: &[&str], body: &str| {
        send(
            &listen,
            &listen,
            "POST",
            "/v1/services/x/stop",
            headers,
            body,
        )
    };
    let still_running = |what: &str| {
        let s = d.status("x");
        assert_eq!(s["state"], "running", "{what}: {s}");
        assert_eq!(s["pid"], pid, "{what}: {s}");
    };

    // What a form or a no-cors fetch from another page on this host carries: the cookie.
    let a = post(&[&cookie], "");
    assert_eq!(status(&a), 403, "{a}");
    assert!(a.contains("needs the token in a header"), "{a}");
    still_running("the cookie alone");
    let a = send(
        &listen,
        &listen,
        "POST",
        &format!("/v1/services/x/stop?token={token}"),
        &[],
        "",
    );
    assert_eq!(status(&a), 403, "the token in the URL is no header: {a}");
    still_running("the token in the URL");
    // A page on another port of this host, even with the token in the header.
    let other = format!(
        "Origin: http://127.0.0.1:{}",
        port.parse::<u16>().unwrap() ^ 1
    );
    let a = post(&[&bearer, &cookie, &other], "");
    assert_eq!(status(&a), 403, "{a}");
    assert!(a.contains("only the dashboard's own page"), "{a}");
    let a = post(&[&bearer, &cookie, "Origin: null"], "");
    assert_eq!(status(&a), 403, "{a}");
    // The browser says another site (or another origin of this site) made it.
    for site in ["cross-site", "same-site"] {
        let a = post(&[&cookie, &bearer, &format!("Sec-Fetch-Site: {site}")], "");
        assert_eq!(status(&a), 403, "{site}: {a}");
        assert!(a.contains("Sec-Fetch-Site"), "{a}");
    }
    // A form's body.
    let a = post(&[&bearer, "Content-Type: text/plain"], "a=b");
    assert_eq!(status(&a), 415, "{a}");
    assert!(a.contains("Content-Type: application/json"), "{a}");
    let a = post(
        &[&bearer, "Content-Type: application/x-www-form-urlencoded"],
        "a=b",
    );
    assert_eq!(status(&a), 415, "{a}");
    // A name that resolves here (DNS rebinding) is not this dashboard's.
    let evil = format!("evil.example:{port}");
    let a = send(
        &listen,
        &evil,
        "POST",
        "/v1/services/x/stop",
        &[&bearer],
        "",
    );
    assert_eq!(status(&a), 421, "{a}");
    assert!(
        a.contains(&format!("the Host header `{evil}`")) && a.contains("web.hosts"),
        "{a}"
    );
    let a = send(&listen, &evil, "GET", "/", &[&cookie], "");
    assert_eq!(status(&a), 421, "the page is not served to it either: {a}");
    assert!(!a.contains(&token), "{a}");
    still_running("everything refused");

    // A name in web.hosts, an IP literal and localhost with the port are.
    for host in [
        "dash.example.org".to_string(),
        format!("DASH.example.org:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let a = send(&listen, &host, "GET", "/v1/services", &[&bearer], "");
        assert_eq!(status(&a), 200, "{host}: {a}");
    }
    // A script with the token in the header and no Origin (curl) is served...
    let a = post(&[&bearer], "");
    assert_eq!(status(&a), 200, "{a}");
    d.wait_state("x", "stopped", T);
    // ... with X-Candor-Token as well, and the page's own origin too.
    let a = send(
        &listen,
        &listen,
        "POST",
        "/v1/services/x/start",
        &[&format!("X-Candor-Token: {token}")],
        "",
    );
    assert_eq!(status(&a), 200, "{a}");
    d.wait_state("x", "running", T);
    let own = format!("Origin: http://{listen}");
    let a = send(
        &listen,
        &listen,
        "POST",
        "/v1/services/x/restart",
        &[
            &cookie,
            &bearer,
            &own,
            "Sec-Fetch-Site: same-origin",
            "Content-Type: application/json",
        ],
        "{}",
    );
    assert_eq!(status(&a), 200, "{a}");
    // A wrong token in the header is refused even with the right cookie.
    let a = post(&[&cookie, "X-Candor-Token: 00"], "");
    assert_eq!(status(&a), 401, "{a}");

    // A top-level navigation from elsewhere still loads the page, with the token for its
    // script, not cached, not framed, and no CORS header that would let another page read it.
    let a = send(
        &listen,
        &listen,
        "GET",
        "/",
        &[
            &cookie,
            "Sec-Fetch-Site: cross-site",
            "Sec-Fetch-Mode: navigate",
        ],
        "",
    );
    assert_eq!(status(&a), 200, "{a}");
    assert!(
        a.contains(&format!("<meta name=\"candor-token\" content=\"{token}\">")),
        "{a}"
    );
    assert_eq!(has_header(&a, "cache-control").as_deref(), Some("no-store"));
    assert_eq!(has_header(&a, "x-frame-options").as_deref(), Some("DENY"));
    assert!(
        has_header(&a, "access-control-allow-origin").is_none(),
        "{a}"
    );
    // Without a login the page is not served, so its token is not either.
    let a = send(&listen, &listen, "GET", "/", &[], "");
    assert_eq!(status(&a), 401, "{a}");
    assert!(!a.contains(&token));
    // Another page's subresource or fetch of the API (same-site: another port) is refused.
    let a = send(
        &listen,
        &listen,
        "GET",
        "/v1/services",
        &[
            &cookie,
            "Sec-Fetch-Site: same-site",
            "Sec-Fetch-Mode: no-cors",
        ],
        "",
    );
    assert_eq!(status(&a), 403, "{a}");
    // A preflight gets no CORS answer.
    let a = send(
        &listen,
        &listen,
        "OPTIONS",
        "/v1/shutdown",
        &[&other, "Access-Control-Request-Method: POST"],
        "",
    );
    assert!(
        has_header(&a, "access-control-allow-origin").is_none(),
        "{a}"
    );
    assert!(status(&a) >= 400, "{a}");

    // web.hosts is reloaded: the name removed, refused.
    d.write_config(
        "web = { listen = \"127.0.0.1:0\" }\n\n[service.x]\ncommand = [\"{zoo}\", \"healthy\"]\n",
    );
    d.ok(&["reload"]);
    let a = send(
        &listen,
        "dash.example.org",
        "GET",
        "/v1/services",
        &[&bearer],
        "",
    );
    assert_eq!(status(&a), 421, "{a}");
    d.wait_state("x", "running", T);
}

#[test]
fn request_bodies_are_json_with_known_fields_only_on_the_control_socket_too() {
    let d = Daemon::start("[service.x]\ncommand = [\"{zoo}\", \"healthy\"]\n");
    d.wait_state("x", "running", T);
    let pid = d.info()["pid"].as_u64().unwrap();
    let upgrade = |kind: &str, body: &str| {
        d.raw(&format!(
            "POST /v1/upgrade HTTP/1.1\r\nHost: candor\r\nConnection: close\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
        .expect("an answer")
    };
    let a = upgrade(
        "application/json",
        r#"{"binary": "/nonexistent/candor", "also": 1}"#,
    );
    assert_eq!(status(&a), 400, "{a}");
    assert!(a.contains("unknown field `also`"), "{a}");
    let a = upgrade("text/plain", r#"{"binary": "/nonexistent/candor"}"#);
    assert_eq!(status(&a), 415, "{a}");
    assert!(a.contains("this one has `text/plain`"), "{a}");
    // A known field is understood (and the missing binary said).
    let a = upgrade(
        "application/json; charset=utf-8",
        r#"{"binary": "/nonexistent/candor"}"#,
    );
    assert_eq!(status(&a), 409, "{a}");
    // A head whose body never comes: answered (408) and closed once the body timeout passes,
    // instead of holding the connection.
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "POST /v1/upgrade HTTP/1.1\r\nHost: candor\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{{\"bin"
    )
    .unwrap();
    let mut a = String::new();
    s.read_to_string(&mut a).expect("the connection closed");
    assert_eq!(status(&a), 408, "{a}");
    assert!(a.contains("did not arrive within 10s"), "{a}");
    // A body cut short, and a chunked one over the limit.
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "POST /v1/upgrade HTTP/1.1\r\nHost: candor\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{{\"bin"
    )
    .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut a = String::new();
    let _ = s.read_to_string(&mut a);
    assert_eq!(status(&a), 400, "{a}");
    let big = format!("{{\"binary\": \"{}\"}}", "a".repeat(70_000));
    let a = d
        .raw(&format!(
            "POST /v1/upgrade HTTP/1.1\r\nHost: candor\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        ))
        .expect("an answer");
    assert_eq!(status(&a), 413, "{a}");
    assert!(a.contains("at most 65536 bytes"), "{a}");
    // Nothing changed; the CLI (which sends JSON) works.
    assert_eq!(d.info()["pid"].as_u64(), Some(pid));
    d.ok(&["restart", "x", "--wait"]);
    assert_eq!(d.state("x"), "running");
}

/// Read until each stream ends; true once all have.
fn all_closed(conns: &mut [Option<TcpStream>]) -> bool {
    let mut buf = [0u8; 1024];
    for c in conns.iter_mut() {
        if let Some(s) = c {
            match s.read(&mut buf) {
                Ok(0) => *c = None,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => *c = None,
            }
        }
    }
    conns.iter().all(Option::is_none)
}

#[test]
fn idle_dashboard_connections_are_capped_timed_out_and_never_lock_the_owner_out() {
    // 384 fds: 80 % is 307, below what 300 idle connections and the daemon's own take.
    let d = Daemon::start_limited(
        r#"
web = { listen = "127.0.0.1:0" }

[service.x]
command = ["{zoo}", "healthy"]
"#,
        384,
        384,
    );
    d.wait_state("x", "running", T);
    let (listen, token) = dashboard(&d);
    let bearer = format!("Authorization: Bearer {token}");
    // A follower (a long answer) and a keep-alive connection that asked once, then idles.
    let mut follower = TcpStream::connect(&listen).unwrap();
    write!(
        follower,
        "GET /v1/events?follow=true&n=0 HTTP/1.1\r\nHost: {listen}\r\n{bearer}\r\n\r\n"
    )
    .unwrap();
    let mut kept = TcpStream::connect(&listen).unwrap();
    write!(
        kept,
        "GET /v1/services HTTP/1.1\r\nHost: {listen}\r\n{bearer}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    assert!(kept.read(&mut buf).unwrap() > 0);
    kept.set_nonblocking(true).unwrap();
    let mut conns: Vec<Option<TcpStream>> = (0..300)
        .map(|_| {
            let s = TcpStream::connect(&listen).expect("connect");
            s.set_nonblocking(true).unwrap();
            Some(s)
        })
        .collect();
    // Every one was accepted (or refused) by now: the dashboard holds no more than its cap.
    let info = wait_for("the dashboard's cap reached", T, || {
        let info = d.info();
        let c = &info["resources"]["connections"]["dashboard"];
        (c["open"].as_u64()? + c["refused"].as_u64()? >= 300).then_some(info)
    });
    let c = &info["resources"]["connections"]["dashboard"];
    assert_eq!(c["cap"], 76, "20 % of 384: {info}");
    assert!(c["open"].as_u64().unwrap() <= 76, "{info}");
    assert!(c["refused"].as_u64().unwrap() >= 224, "{info}");
    // The owner is served at once, over the control socket and the CLI.
    let out = d.cli(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains('x'));
    // A request on a fresh connection is refused while the cap is reached (503, saying why).
    let mut s = TcpStream::connect(&listen).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    assert!(got.contains("503") && got.contains("its cap"), "{got}");
    // The idle ones are closed once the header timeout has passed, the one that asked once too.
    conns.push(Some(kept));
    wait_for("the idle connections closed", T, || {
        all_closed(&mut conns).then_some(())
    });
    // The follower is still served: a restart reaches it.
    d.ok(&["restart", "x", "--wait"]);
    follower.set_read_timeout(Some(T)).unwrap();
    let mut seen = Vec::new();
    wait_for("the restart on the follower's stream", T, || {
        let n = follower.read(&mut buf).ok()?;
        assert!(n > 0, "the follower's stream was closed");
        seen.extend_from_slice(&buf[..n]);
        String::from_utf8_lossy(&seen)
            .contains("restart x requested")
            .then_some(())
    });
    let info = d.info();
    let c = &info["resources"]["connections"]["dashboard"];
    assert!(c["timed_out"].as_u64().unwrap() >= 1, "{info}");
    // And the dashboard answers again.
    let a = send(
        &listen,
        &listen,
        "GET",
        "/v1/services",
        &[&format!("Authorization: Bearer {token}")],
        "",
    );
    assert_eq!(status(&a), 200, "{a}");
}

#[test]
fn a_local_user_flooding_the_control_socket_does_not_lock_the_owner_out() {
    if !candor_scenarios::available(
        "CANDOR_REQUIRE_ROOT",
        "needs root (to run a helper as nobody) and /usr/bin/python3",
        unsafe { libc::geteuid() } == 0 && std::path::Path::new("/usr/bin/python3").exists(),
    ) {
        return;
    }
    // 256 fds: 80 % is 204, which 300 connections from one user would pass.
    let d = Daemon::start_limited(
        r#"socket_group = "65534"

[service.x]
command = ["{zoo}", "healthy"]
"#,
        256,
        256,
    );
    d.wait_state("x", "running", T);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    // nobody (in the socket's group) opens as many connections as it can and holds them.
    let flood = r#"
import socket, sys
held = []
for _ in range(300):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sys.argv[1])
        held.append(s)
    except OSError as e:
        print("connect failed:", e, flush=True)
        break
print("held", len(held), flush=True)
sys.stdin.read()
"#;
    use std::os::unix::process::CommandExt;
    let mut nobody = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(flood)
        .arg(&d.socket)
        .uid(65534)
        .gid(65534)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 as nobody");
    let out = nobody.stdout.take().unwrap();
    let mut said = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut said).unwrap();
    assert!(said.contains("held 300"), "{said}");
    let info = wait_for("the flood accepted or refused", T, || {
        let info = d.info();
        let c = &info["resources"]["connections"]["control"];
        (c["refused"].as_u64()? + c["others"].as_u64()? >= 300).then_some(info)
    });
    let c = &info["resources"]["connections"]["control"];
    assert_eq!(c["cap"], 25, "10 % of 256: {info}");
    assert!(c["others"].as_u64().unwrap() <= 25, "{info}");
    assert!(c["refused"].as_u64().unwrap() >= 275, "{info}");
    // The owner: served, and may act.
    d.ok(&["status"]);
    d.ok(&["restart", "x", "--wait"]);
    // The flood's connections that sent nothing are closed after the header timeout.
    wait_for("nobody's idle connections closed", T, || {
        let info = d.info();
        let c = &info["resources"]["connections"]["control"];
        (c["others"].as_u64()? == 0 && c["timed_out"].as_u64()? >= 1).then_some(())
    });
    drop(nobody.stdin.take());
    let _ = nobody.wait();
    assert_eq!(d.state("x"), "running");
}

/// In Debian's chromium (driven by playwright-core, tests/browser/frontdoor.mjs; both installed
/// by scripts/test.sh): logged in to the dashboard, the browser opens a page on another port
/// of 127.0.0.1 that posts text/plain forms and no-cors fetches to `stop` and `shutdown`; the
/// daemon refuses them all, and the dashboard's own stop and start buttons still work.
#[test]
fn a_page_on_another_port_cannot_act_through_a_logged_in_browser() {
    let Some(dir) = candor_scenarios::browser_dir() else {
        return;
    };
    let d = Daemon::start(
        r#"
web = { listen = "127.0.0.1:0" }

[service.target]
command = ["{zoo}", "healthy"]

[service.button]
command = ["{zoo}", "healthy"]
"#,
    );
    let pid = d.wait_state("target", "running", T)["pid"]
        .as_u64()
        .unwrap();
    d.wait_state("button", "running", T);
    let daemon = d.info()["pid"].as_u64().unwrap();
    let url = d.ok(&["web"]).trim().to_string();
    let out = std::process::Command::new("node")
        .arg(dir.join("frontdoor.mjs"))
        .arg(&url)
        .output()
        .expect("node");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser test failed:\n{said}");
    for step in [
        "logged in",
        "form posts were refused",
        "no-cors fetches were refused",
        "stop from the page",
        "start from the page",
    ] {
        assert!(said.contains(step), "no `{step}` in:\n{said}");
    }
    // Through the control socket: the same daemon, and target never stopped.
    assert_eq!(d.info()["pid"].as_u64(), Some(daemon));
    let s = d.status("target");
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(s["pid"], pid, "{s}");
    assert_eq!(d.state("button"), "running");
    eprintln!("{said}");
}
