//! Hooks against real receivers: an HTTP server in the test (one that answers, one that never
//! does) and exec hooks run by a real keeper.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use candor_spec::{HookEvent, HookFormat, HookSpec, HookTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc as tmpsc;

use super::*;
use crate::probe::ExecProbes;

/// One keeper for the whole test binary (it reaps orphans: two would reap each other's).
fn runner() -> Runner {
    static RUNNER: OnceLock<Runner> = OnceLock::new();
    RUNNER
        .get_or_init(|| {
            let exec = Arc::new(ExecProbes::new(0o022));
            let routed = exec.clone();
            let emit = Box::new(move |ev| {
                if let candor_keeper::KeeperEvent::ProbeDone {
                    token,
                    end,
                    elapsed,
                } = ev
                {
                    routed.done(token, end, elapsed);
                }
            });
            let cfg = candor_keeper::KeeperConfig {
                instance: format!("hooks-test-{}", std::process::id()),
                use_cgroups: false,
                use_clone3: true,
                reap_every: Duration::from_secs(1),
            };
            let (keeper, _, thread) = candor_keeper::start(cfg, emit).expect("keeper starts");
            std::mem::forget(thread);
            Runner { keeper, exec }
        })
        .clone()
}

type Said = Arc<Mutex<Vec<Note>>>;

fn setup(pacing: Pacing) -> (Setup, Said) {
    let said: Said = Arc::default();
    let into = said.clone();
    let setup = Setup {
        host: "box1".into(),
        runner: runner(),
        report: Arc::new(move |n| into.lock().unwrap().push(n)),
        faults: Arc::new(Faults::new(|_| {})),
        pacing,
        queue: QUEUE,
    };
    (setup, said)
}

fn quick() -> Pacing {
    Pacing {
        first: Duration::from_millis(50),
        cap: Duration::from_millis(200),
        note_every: Duration::from_secs(60),
    }
}

fn hook(target: HookTarget, timeout: Duration, retries: u32) -> HookSpec {
    HookSpec {
        on: vec![HookEvent::Failed, HookEvent::Recovered],
        services: Vec::new(),
        target,
        timeout,
        retries,
        defined_at: "candor.toml:7:1".into(),
    }
}

fn webhook(port: u16, format: HookFormat, headers: &[(&str, &str)]) -> HookTarget {
    HookTarget::Webhook {
        url: format!("http://127.0.0.1:{port}/notify/T0KEN?x=1"),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        format,
    }
}

fn failed(service: &str) -> Note {
    Note {
        service: service.into(),
        state: "failed".into(),
        reason: "exited with code 3; restart = \"never\"".into(),
        detail: api::EventDetail::State(api::StateDetail {
            pid: None,
            run: Some(4),
            restarts: 0,
            last_exit: Some("exited with code 3".into()),
            health: None,
            restart_in_ms: None,
        }),
    }
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A request as the receiver read it: the head's lines and the body.
#[derive(Debug)]
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

/// An HTTP receiver that answers each request with `status` (or, with `None`, accepts and
/// never answers). Each request read (or each connection, when it never answers) is sent on.
async fn receiver(status: Option<u16>) -> (u16, tmpsc::UnboundedReceiver<Got>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tmpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let Some(status) = status else {
                    let _ = tx.send(Got {
                        head: Vec::new(),
                        body: Vec::new(),
                    });
                    // Hold the connection open, reading nothing more.
                    std::future::pending::<()>().await;
                    drop(s);
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the client closed before a whole request");
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head: Vec<String> = String::from_utf8_lossy(&buf[..end])
                        .lines()
                        .map(str::to_string)
                        .collect();
                    let len: usize = head
                        .iter()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        let n = s.read(&mut chunk).await.unwrap();
                        assert!(n > 0, "the client closed before the whole body");
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    break (head, buf[end + 4..end + 4 + len].to_vec());
                };
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                s.write_all(answer.as_bytes()).await.unwrap();
                let _ = tx.send(Got { head, body });
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn a_webhook_posts_the_event_as_json_with_its_headers_and_as_slack_text() {
    let (port, mut got) = receiver(Some(200)).await;
    let (setup, said) = setup(quick());
    let specs = [
        hook(
            webhook(
                port,
                HookFormat::Json,
                &[("Authorization", "Bearer s3cret"), ("X-Team", "ops")],
            ),
            Duration::from_secs(5),
            0,
        ),
        hook(
            webhook(port, HookFormat::Slack, &[]),
            Duration::from_secs(5),
            0,
        ),
    ];
    let mut hooks = Hooks::start(&specs, setup);
    let counters = hooks.counters();
    hooks.offer(&failed("api"));
    let mut requests = [got.recv().await.unwrap(), got.recv().await.unwrap()];
    requests.sort_by_key(|g| g.header("authorization").is_none());
    let (json, slack) = (&requests[0], &requests[1]);

    assert_eq!(json.head[0], "POST /notify/T0KEN?x=1 HTTP/1.1");
    assert_eq!(json.header("content-type"), Some("application/json"));
    assert_eq!(json.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(json.header("x-team"), Some("ops"));
    assert_eq!(
        json.header("host"),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert_eq!(
        json.header("user-agent"),
        Some(concat!("candor/", env!("CARGO_PKG_VERSION")))
    );
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v["event"], "failed");
    assert_eq!(v["service"], "api");
    assert_eq!(v["state"], "failed");
    assert_eq!(v["reason"], "exited with code 3; restart = \"never\"");
    assert_eq!(v["host"], "box1");
    assert_eq!(v["detail"]["last_exit"], "exited with code 3");
    let at = v["at"].as_str().unwrap();
    assert!(
        at.starts_with("20") && at.ends_with('Z') && at.contains('T'),
        "{at}"
    );

    let s: serde_json::Value = serde_json::from_slice(&slack.body).unwrap();
    assert_eq!(
        s,
        serde_json::json!({"text": "box1: api failed: exited with code 3; restart = \"never\""})
    );
    assert_eq!(slack.header("content-type"), Some("application/json"));

    wait_for("two sent", || counters.stats().sent == 2).await;
    assert_eq!(
        counters.stats(),
        api::HookStats {
            sent: 2,
            failed: 0,
            dropped: 0,
            queued: 0
        }
    );
    assert!(said.lock().unwrap().is_empty());
}

#[tokio::test]
async fn events_go_only_to_hooks_that_want_them() {
    let (port, mut got) = receiver(Some(204)).await;
    let (setup, _) = setup(quick());
    let mut spec = hook(
        webhook(port, HookFormat::Json, &[]),
        Duration::from_secs(5),
        0,
    );
    spec.services = vec!["api".into()];
    spec.on = vec![HookEvent::Failed];
    let mut hooks = Hooks::start(&[spec], setup);
    let counters = hooks.counters();
    hooks.offer(&failed("web"));
    hooks.offer(&crate::notes::daemon_note(
        "failed",
        "not a state change".into(),
    ));
    let mut unhealthy = failed("api");
    unhealthy.state = "unhealthy".into();
    hooks.offer(&unhealthy);
    hooks.offer(&failed("api@2"));
    let g = got.recv().await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(v["service"], "api@2");
    wait_for("one sent", || counters.stats().sent == 1).await;
    assert_eq!(counters.stats().dropped, 0);
    assert!(got.try_recv().is_err(), "only api@2's failure was wanted");
}

#[tokio::test]
async fn an_answer_other_than_2xx_is_retried_then_dropped_and_said_once() {
    let (port, mut got) = receiver(Some(500)).await;
    let (setup, said) = setup(quick());
    let spec = hook(
        webhook(
            port,
            HookFormat::Json,
            &[("Authorization", "Bearer s3cret")],
        ),
        Duration::from_secs(5),
        2,
    );
    let mut hooks = Hooks::start(&[spec], setup);
    let counters = hooks.counters();
    hooks.offer(&failed("api"));
    hooks.offer(&failed("db"));
    wait_for("both dropped", || counters.stats().dropped == 2).await;
    let mut services = Vec::new();
    while let Ok(g) = got.try_recv() {
        let v: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
        services.push(v["service"].as_str().unwrap().to_string());
    }
    // In order, each tried three times.
    assert_eq!(services, ["api", "api", "api", "db", "db", "db"]);
    let stats = counters.stats();
    assert_eq!((stats.sent, stats.failed, stats.queued), (0, 6, 0));
    // One note for the first drop; the second waits for the minute to pass.
    let said = said.lock().unwrap();
    assert_eq!(said.len(), 1, "{said:?}");
    let reason = &said[0].reason;
    assert_eq!(said[0].service, "candor");
    assert!(
        reason.contains("dropped 1 event after 3 attempts each"),
        "{reason}"
    );
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert!(reason.contains("candor.toml:7:1"), "{reason}");
    assert!(
        !reason.contains("s3cret") && !reason.contains("T0KEN"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_each_attempt_then_the_event_is_dropped() {
    let (port, mut got) = receiver(None).await;
    let (setup, said) = setup(quick());
    let spec = hook(
        webhook(port, HookFormat::Json, &[]),
        Duration::from_millis(200),
        1,
    );
    let mut hooks = Hooks::start(&[spec], setup);
    let counters = hooks.counters();
    let started = Instant::now();
    hooks.offer(&failed("api"));
    wait_for("dropped", || counters.stats().dropped == 1).await;
    // Two attempts of at least the timeout each, and the pause between them.
    assert!(started.elapsed() >= Duration::from_millis(450));
    let mut connections = 0;
    while got.try_recv().is_ok() {
        connections += 1;
    }
    assert_eq!(connections, 2);
    let stats = counters.stats();
    assert_eq!((stats.sent, stats.failed, stats.queued), (0, 2, 0));
    let reason = said.lock().unwrap()[0].reason.clone();
    assert!(reason.contains("within 200ms"), "{reason}");
}

#[tokio::test]
async fn a_flood_of_offers_never_waits_and_drops_exactly_what_does_not_fit() {
    let (port, mut got) = receiver(None).await;
    let (setup, _) = setup(quick());
    let spec = hook(
        webhook(port, HookFormat::Json, &[]),
        Duration::from_secs(30),
        0,
    );
    let mut hooks = Hooks::start(&[spec], setup);
    let counters = hooks.counters();
    // The first event is in hand: its attempt hangs on the receiver.
    hooks.offer(&failed("api"));
    got.recv().await.unwrap();
    let started = Instant::now();
    for i in 0..10_000 {
        hooks.offer(&failed(&format!("svc{i}")));
    }
    let took = started.elapsed();
    let stats = counters.stats();
    assert_eq!(
        stats.queued,
        1 + QUEUE as u64,
        "bounded: one in hand and a full queue"
    );
    assert_eq!(stats.dropped, 10_000 - QUEUE as u64);
    assert_eq!((stats.sent, stats.failed), (0, 0));
    // Far below what one attempt may take: nothing waited for the receiver.
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A reload without the hook: what it held is dropped and counted.
    hooks.replace(&[]);
    wait_for("the removed hook's events dropped", || {
        counters.stats().queued == 0
    })
    .await;
    assert_eq!(counters.stats().dropped, 10_001);
}

#[tokio::test]
async fn a_reload_keeps_an_unchanged_hook_and_its_queue() {
    let (port, mut got) = receiver(Some(200)).await;
    let (setup, _) = setup(quick());
    let spec = hook(
        webhook(port, HookFormat::Json, &[]),
        Duration::from_secs(5),
        0,
    );
    let mut hooks = Hooks::start(std::slice::from_ref(&spec), setup);
    let counters = hooks.counters();
    hooks.replace(std::slice::from_ref(&spec));
    hooks.offer(&failed("api"));
    got.recv().await.unwrap();
    wait_for("sent", || counters.stats().sent == 1).await;
    assert_eq!(counters.stats().dropped, 0);
}

#[tokio::test]
async fn an_exec_hook_reads_the_event_on_stdin_and_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("event.json");
    let env_out = dir.path().join("event.env");
    let script = format!(
        "cat > {0}.tmp && env | grep '^CANDOR_EVENT' | sort > {1} && mv {0}.tmp {0}",
        out.display(),
        env_out.display()
    );
    let (setup, said) = setup(quick());
    let ok = hook(
        HookTarget::Exec(vec!["sh".into(), "-c".into(), script]),
        Duration::from_secs(10),
        0,
    );
    let failing = hook(
        HookTarget::Exec(vec!["sh".into(), "-c".into(), "exit 3".into()]),
        Duration::from_secs(10),
        1,
    );
    let mut hooks = Hooks::start(&[ok, failing], setup);
    let counters = hooks.counters();
    hooks.offer(&failed("api"));
    wait_for("sent and dropped", || {
        let s = counters.stats();
        s.sent == 1 && s.dropped == 1
    })
    .await;
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["event"], "failed");
    assert_eq!(v["service"], "api");
    assert_eq!(v["host"], "box1");
    assert_eq!(v["detail"]["run"], 4);
    let env = std::fs::read_to_string(&env_out).unwrap();
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(lines.len(), 5, "{env}");
    assert_eq!(lines[0], "CANDOR_EVENT=failed");
    assert!(lines[1].starts_with("CANDOR_EVENT_AT=20"), "{env}");
    assert_eq!(
        lines[2],
        "CANDOR_EVENT_REASON=exited with code 3; restart = \"never\""
    );
    assert_eq!(lines[3], "CANDOR_EVENT_SERVICE=api");
    assert_eq!(lines[4], "CANDOR_EVENT_STATE=failed");
    assert_eq!(counters.stats().failed, 2);
    let reason = said.lock().unwrap()[0].reason.clone();
    assert!(reason.contains("hook #2 (exec sh)"), "{reason}");
    assert!(reason.contains("exited with code 3"), "{reason}");
}

#[tokio::test]
async fn an_exec_hook_that_hangs_is_killed_at_its_timeout() {
    let (setup, _) = setup(quick());
    let spec = hook(
        HookTarget::Exec(vec!["sleep".into(), "30".into()]),
        Duration::from_millis(300),
        0,
    );
    let mut hooks = Hooks::start(&[spec], setup);
    let counters = hooks.counters();
    let started = Instant::now();
    hooks.offer(&failed("api"));
    wait_for("dropped", || counters.stats().dropped == 1).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(counters.stats().failed, 1);
}

#[test]
fn metrics_name_the_four_families() {
    let text = metrics(&api::HookStats {
        sent: 3,
        failed: 2,
        dropped: 1,
        queued: 5,
    });
    for line in [
        "candor_hooks_sent_total 3",
        "candor_hooks_failed_total 2",
        "candor_hooks_dropped_total 1",
        "candor_hooks_queued 5",
        "# TYPE candor_hooks_queued gauge",
        "# TYPE candor_hooks_sent_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
}

#[tokio::test]
async fn drops_are_said_at_most_once_per_period_with_the_queue_full_ones() {
    let (port, _got) = receiver(None).await;
    let (mut setup, said) = setup(Pacing {
        note_every: Duration::from_millis(500),
        ..quick()
    });
    setup.queue = 1;
    let spec = hook(
        webhook(port, HookFormat::Json, &[]),
        Duration::from_millis(100),
        0,
    );
    let mut hooks = Hooks::start(&[spec], setup);
    let counters = hooks.counters();
    // The task has not run yet (this test's runtime has one thread): one fits, four do not.
    for _ in 0..5 {
        hooks.offer(&failed("api"));
    }
    assert_eq!(counters.stats().dropped, 4);
    wait_for("the first note", || said.lock().unwrap().len() == 1).await;
    let first = Instant::now();
    let reason = said.lock().unwrap()[0].reason.clone();
    assert!(
        reason.contains(
            "dropped 1 event after its one attempt (last error: no answer from http://127.0.0.1:"
        ),
        "{reason}"
    );
    assert!(
        reason.contains("and 4 events because its queue was full"),
        "{reason}"
    );
    // The next drop comes within the period: said when it ends, not before.
    hooks.offer(&failed("api"));
    wait_for("the second drop", || counters.stats().dropped == 6).await;
    assert_eq!(said.lock().unwrap().len(), 1);
    wait_for("the second note", || said.lock().unwrap().len() == 2).await;
    assert!(
        first.elapsed() >= Duration::from_millis(350),
        "{:?}",
        first.elapsed()
    );
    let reason = said.lock().unwrap()[1].reason.clone();
    assert!(
        reason.contains("dropped 1 event after its one attempt"),
        "{reason}"
    );
    assert!(reason.contains("since the last such event"), "{reason}");
    assert!(!reason.contains("queue was full"), "{reason}");
}
