//! `[[daemon.hooks]]` with a real daemon: a service that fails reaches the test's HTTP
//! receiver as event "failed"; a receiver that never answers holds its hook's queue, never a
//! stop or start of another service; a hook task that panics is started again; a reload that
//! removes a hook drops and counts what it held.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use candor_scenarios::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

/// A request as the receiver read it: its head's lines and its body.
struct Got {
    head: Vec<String>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn read_request(s: &mut TcpStream) -> Option<Got> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head: Vec<String> = String::from_utf8_lossy(&buf[..end])
            .lines()
            .map(str::to_string)
            .collect();
        let got = Got {
            head,
            body: Vec::new(),
        };
        let len: usize = got
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            let n = s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Some(Got {
            body: buf[end + 4..end + 4 + len].to_vec(),
            ..got
        });
    }
}

/// A receiver that answers 200 to each request and hands it on.
fn answering() -> (u16, mpsc::Receiver<Got>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            if let Some(got) = read_request(&mut s) {
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                let _ = tx.send(got);
            }
        }
    });
    (port, rx)
}

/// A receiver that accepts and never answers; each connection is handed on (and held).
fn hanging() -> (u16, mpsc::Receiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let _ = tx.send(s);
        }
    });
    (port, rx)
}

fn hooks_of(d: &Daemon) -> Value {
    d.info()["hooks"].clone()
}

fn config(port: u16, hang: u16, with_hanging_hook: bool) -> String {
    let hanging_hook = if with_hanging_hook {
        format!(
            r#"
[[daemon.hooks]]
on = ["failed"]
services = ["crasher"]
webhook = {{ url = "http://127.0.0.1:{hang}/never" }}
timeout = "60s"
retries = 5
"#
        )
    } else {
        String::new()
    };
    format!(
        r#"
[[daemon.hooks]]
on = ["failed", "recovered"]
services = ["crasher", "boom"]
webhook = {{ url = "http://127.0.0.1:{port}/hooks/T0KEN", headers = {{ Authorization = "Bearer s3cret" }} }}
timeout = "5s"
retries = 1
{hanging_hook}
[service.crasher]
command = ["{{zoo}}", "crash-loop", "--after", "300ms", "--code", "3"]
restart = "never"

[service.boom]
command = ["{{zoo}}", "crash-loop", "--after", "10ms", "--code", "4"]
restart = "never"

[service.other]
command = ["sleep", "1000"]
"#
    )
}

#[test]
fn a_failed_service_reaches_the_webhook_and_a_hanging_one_delays_nothing() {
    let (port, got) = answering();
    let (hang, held) = hanging();
    // The first delivery of boom's event panics: the hook's task is started again.
    let mut d = Daemon::start_with_env(
        &config(port, hang, true),
        &[("CANDOR_FAILPOINTS", "hook:boom")],
    );

    // crasher fails; its event reaches the receiver, with the hook's header.
    d.wait_state("crasher", "failed", T);
    let request = got.recv_timeout(T).expect("the failed event is posted");
    assert_eq!(request.head[0], "POST /hooks/T0KEN HTTP/1.1");
    assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let event: Value = serde_json::from_slice(&request.body).expect("a JSON body");
    assert_eq!(event["event"], "failed");
    assert_eq!(event["service"], "crasher");
    assert_eq!(event["state"], "failed");
    assert!(
        event["reason"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{event}"
    );
    assert!(!event["host"].as_str().unwrap().is_empty(), "{event}");

    // The hanging receiver holds crasher's event on the second hook.
    let _conn = held.recv_timeout(T).expect("the hanging receiver is tried");

    // Meanwhile another service stops and starts at once.
    d.wait_state("other", "running", T);
    for (verb, state) in [("stop", "stopped"), ("start", "running")] {
        let started = Instant::now();
        d.ok(&[verb, "other", "--wait"]);
        assert_eq!(d.state("other"), state);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{verb} took {:?} while a hook hung",
            started.elapsed()
        );
    }

    // boom's event was lost to the panic (counted dropped); crasher's sent on the first hook
    // and in hand on the second.
    d.wait_state("boom", "failed", T);
    let stats = wait_for("the hook counts", T, || {
        let h = hooks_of(&d);
        (h["sent"] == 1 && h["dropped"] == 1 && h["queued"] == 1).then_some(h)
    });
    assert_eq!(stats["failed"], 0, "{stats}");
    let events = d.events();
    let fault = events
        .iter()
        .find(|e| e["state"] == "fault")
        .unwrap_or_else(|| panic!("no fault event in {events:?}"));
    let reason = fault["reason"].as_str().unwrap();
    assert!(reason.contains("hook #1"), "{reason}");
    assert!(
        !reason.contains("T0KEN") && !reason.contains("s3cret"),
        "{reason}"
    );
    let metrics = d.raw(&get_request("/metrics")).expect("GET /metrics");
    for line in [
        "candor_hooks_sent_total 1",
        "candor_hooks_dropped_total 1",
        "candor_hooks_queued 1",
        "candor_hooks_failed_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in /metrics");
    }

    // A reload without the hanging hook: what it held is dropped and counted.
    d.write_config(&config(port, hang, false));
    d.ok(&["reload"]);
    wait_for("the removed hook's event dropped", T, || {
        let h = hooks_of(&d);
        (h["queued"] == 0 && h["dropped"] == 2).then_some(())
    });
    d.shutdown();
}
