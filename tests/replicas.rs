//! Replicas and rollouts with real processes: instances share one activated listener and each
//! answers; `scale` up and down; a rolling update whose new run fails halts with the old runs
//! serving, while a client that opens a new connection per request never fails; `overlap`
//! with one instance; `reload --plan` says what `reload` then does; a kill -9 of the daemon
//! in the middle of a rollout loses no instance and leaves no twin.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use candor_scenarios::{free_port, wait_for, Daemon};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn example() -> String {
    format!(
        "{}/../examples/python/service.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A replicated service.py on one held TCP port. `FAIL_AT` names an instance whose run exits
/// with code 1 before it is ready (through `sh`, so the env decides).
fn config(port: u16, replicas: u32, version: &str, fail_at: &str, update: &str) -> String {
    format!(
        r#"
[service.api]
command = ["sh", "-c", "[ \"$FAIL_AT\" = \"$CANDOR_INSTANCE\" ] && exit 1; exec python3 {example}"]
replicas = {replicas}
ready = "notify"
env = {{ VERSION = "{version}", FAIL_AT = "{fail_at}" }}
sockets = [{{ listen = "127.0.0.1:{port}", activate = true, name = "http" }}]
stop = {{ timeout = "5s" }}
backoff = {{ initial = "3s" }}
update = {update}
"#,
        example = example()
    )
}

/// One connection: the answering instance's "<pid> <service> <run> <socket>" words.
fn ask(port: u16) -> std::io::Result<Vec<String>> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if out.is_empty() {
        return Err(std::io::Error::other("closed without an answer"));
    }
    Ok(out.split_whitespace().map(str::to_string).collect())
}

/// A client opening a new connection every 10 ms until stopped: (answered, failed).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let (stop, ok, failed): (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU64>) =
            Default::default();
        let errors: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let (s, o, f, e) = (
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
            Arc::clone(&errors),
        );
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match ask(port) {
                    Ok(_) => o.fetch_add(1, Ordering::SeqCst),
                    Err(err) => {
                        e.lock().unwrap().push(err.to_string());
                        f.fetch_add(1, Ordering::SeqCst)
                    }
                };
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Load {
            stop,
            ok,
            failed,
            errors,
            thread: Some(thread),
        }
    }
    fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            errors,
        )
    }
}

fn all(d: &Daemon) -> Vec<Value> {
    serde_json::from_str(&d.ok(&["status", "--json"])).expect("status --json")
}

/// Wait until the group row says `reason` (e.g. "3/3 running").
fn wait_group(d: &Daemon, state: &str, reason: &str) -> Value {
    wait_for(&format!("api {state}: {reason}"), T, || {
        let s = d.status("api");
        (s["state"] == state && s["reason"].as_str().unwrap_or("").contains(reason)).then_some(s)
    })
}

fn instances(d: &Daemon) -> Vec<String> {
    all(d)
        .iter()
        .filter(|s| s["group"] == "api")
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn replicas_share_one_activated_listener_and_each_answers() {
    let port = free_port();
    let d = Daemon::start(&config(port, 3, "1", "none", "{ min_ready = \"1s\" }"));
    let group = wait_group(&d, "running", "3/3 running");
    assert_eq!(group["replicas"]["wanted"], 3);
    assert_eq!(
        group["replicas"]["instances"],
        serde_json::json!(["api@1", "api@2", "api@3"])
    );
    // One object per instance plus the group's, in name order.
    let names: Vec<String> = all(&d)
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["api", "api@1", "api@2", "api@3"]);
    let one = d.status("api@2");
    assert_eq!(one["group"], "api");
    assert_eq!(one["state"], "running");
    // The kernel hands connections on the one listener to every instance.
    let mut seen = BTreeSet::new();
    wait_for("every instance answers on the shared port", T, || {
        let words = ask(port).ok()?;
        seen.insert(words[1].clone());
        (seen.len() == 3).then_some(())
    });
    assert_eq!(
        seen,
        BTreeSet::from(["api@1".to_string(), "api@2".into(), "api@3".into()])
    );
    // The table shows the group row with its instances under it.
    let table = d.ok(&["status"]);
    assert!(table.contains("3/3 running"), "{table}");
    // `logs api` is every instance's lines; `logs api@2` one instance's.
    let from = |name: &str| -> BTreeSet<String> {
        wait_for(&format!("{name}'s start lines"), T, || {
            let lines: Vec<Value> = serde_json::from_str(&d.ok(&["logs", name, "--json"])).ok()?;
            let who: BTreeSet<String> = lines
                .iter()
                .filter(|l| l["line"].as_str().unwrap_or("").starts_with("serving "))
                .map(|l| l["service"].as_str().unwrap_or("").to_string())
                .collect();
            (!who.is_empty() && (name != "api" || who.len() == 3)).then_some(who)
        })
    };
    assert_eq!(from("api").len(), 3);
    assert_eq!(from("api@2"), BTreeSet::from(["api@2".to_string()]));
    // `kill api` is a signal to each instance (SIGWINCH: ignored by the service).
    let out: Vec<Value> =
        serde_json::from_str(&d.ok(&["kill", "api", "--signal", "SIGWINCH", "--json"])).unwrap();
    assert_eq!(out.len(), 3, "{out:?}");
}

#[test]
fn scale_up_starts_instances_and_scale_down_stops_the_highest_first() {
    let port = free_port();
    let d = Daemon::start(&config(port, 2, "1", "none", "{ min_ready = \"1s\" }"));
    wait_group(&d, "running", "2/2 running");
    d.ok(&["scale", "api", "4"]);
    wait_group(&d, "running", "4/4 running");
    assert_eq!(instances(&d), ["api@1", "api@2", "api@3", "api@4"]);
    let pid1 = d.status("api@1")["pid"].clone();
    d.ok(&["scale", "api", "1"]);
    wait_for("instances 2-4 gone", T, || {
        (instances(&d) == ["api@1"]).then_some(())
    });
    wait_group(&d, "running", "1/1 running");
    assert_eq!(
        d.status("api@1")["pid"],
        pid1,
        "the lowest instance kept running"
    );
    // A plain service cannot be scaled, and the error says how.
    let out = d.cli(&["scale", "nope", "2"]);
    assert!(!out.status.success());
}

#[test]
fn a_rolling_update_whose_new_run_fails_halts_with_the_old_runs_serving_and_no_request_fails() {
    let port = free_port();
    let update = "{ strategy = \"rolling\", min_ready = \"1s\" }";
    let d = Daemon::start(&config(port, 3, "1", "none", update));
    wait_group(&d, "running", "3/3 running");
    let before: Vec<Value> = ["api@1", "api@2", "api@3"]
        .iter()
        .map(|n| d.status(n)["pid"].clone())
        .collect();
    let load = Load::start(port);
    // The plan first: a rolling restart of 3 instances, nothing changed by asking.
    d.write_config(&config(port, 3, "2", "1", update));
    let plan = d.ok(&["reload", "--plan"]);
    assert!(
        plan.contains("api: rolling restart of 3 instances (env.FAIL_AT, env.VERSION changed)"),
        "{plan}"
    );
    assert_eq!(
        d.status("api@1")["pid"],
        before[0],
        "--plan changes nothing"
    );
    d.ok(&["reload"]);
    // The spare api@4 comes up on the new config; api@1 is replaced and its new run fails.
    let halted = wait_group(&d, "degraded", "rollout halted at api@1");
    let reason = halted["reason"].as_str().unwrap();
    assert!(
        reason.contains("new run exited with code 1 before ready")
            && reason.contains("of 3 updated; `candor rollout undo api` returns to the old config"),
        "{reason}"
    );
    assert_eq!(halted["replicas"]["rollout"]["state"], "halted");
    // The old runs of api@2 and api@3 never stopped; api@1 is back on the old config.
    assert_eq!(d.status("api@2")["pid"], before[1]);
    assert_eq!(d.status("api@3")["pid"], before[2]);
    d.wait_state("api@1", "running", T);
    let status = d.ok(&["rollout", "status", "api"]);
    assert!(status.contains("halted"), "{status}");
    // Undo: everything back on version 1, the spare gone.
    d.ok(&["rollout", "undo", "api"]);
    wait_group(&d, "running", "3/3 running");
    wait_for("the spare goes", T, || {
        (instances(&d) == ["api@1", "api@2", "api@3"]).then_some(())
    });
    let (ok, failed, errors) = load.finish();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed: {errors:?}",
        ok + failed
    );
    assert!(ok > 50, "the client kept asking ({ok})");
    let events = d.events();
    assert!(
        events.iter().any(|e| e["service"] == "api"
            && e["reason"]
                .as_str()
                .unwrap_or("")
                .starts_with("rollout halted at api@1")),
        "the event says it too"
    );
}

#[test]
fn a_rolling_restart_replaces_every_instance_without_a_failed_request() {
    let port = free_port();
    let d = Daemon::start(&config(port, 3, "1", "none", "{ min_ready = \"500ms\" }"));
    wait_group(&d, "running", "3/3 running");
    let before: BTreeSet<u64> = ["api@1", "api@2", "api@3"]
        .iter()
        .map(|n| d.status(n)["pid"].as_u64().unwrap_or(0))
        .collect();
    let load = Load::start(port);
    d.ok(&["restart", "api"]);
    wait_for("every instance on a new run", T, || {
        let now: BTreeSet<u64> = ["api@1", "api@2", "api@3"]
            .iter()
            .map(|n| d.status(n)["pid"].as_u64().unwrap_or(0))
            .collect();
        let s = d.status("api");
        (now.is_disjoint(&before) && s["reason"] == "3/3 running" && instances(&d).len() == 3)
            .then_some(())
    });
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
    // --strategy overrides once: stop-first restarts every instance at once.
    let out = d.ok(&["restart", "api", "--strategy", "stop-first"]);
    let _ = out;
    wait_group(&d, "running", "3/3 running");
}

#[test]
fn overlap_runs_the_new_instance_beside_the_old_on_the_same_listener() {
    let port = free_port();
    let update = "{ strategy = \"overlap\", min_ready = \"500ms\" }";
    let text = config(port, 1, "1", "none", update).replace("replicas = 1\n", "");
    let d = Daemon::start(&text);
    wait_group(&d, "running", "1/1 running");
    let old = ask(port).unwrap();
    let load = Load::start(port);
    d.write_config(&config(port, 1, "2", "none", update).replace("replicas = 1\n", ""));
    let plan = d.ok(&["reload", "--plan", "--json"]);
    let plan: Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(plan["services"][0]["action"], "overlap", "{plan}");
    d.ok(&["reload"]);
    wait_for("a new run answers", T, || {
        let words = ask(port).ok()?;
        (words[0] != old[0] && d.status("api")["reason"] == "1/1 running").then_some(())
    });
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
}

#[test]
fn a_kill_9_in_the_middle_of_a_rollout_loses_no_instance_and_leaves_no_twin() {
    let port = free_port();
    let update = "{ min_ready = \"2s\" }";
    let mut d = Daemon::start(&config(port, 3, "1", "none", update));
    wait_group(&d, "running", "3/3 running");
    d.write_config(&config(port, 3, "2", "none", update));
    d.ok(&["reload"]);
    // The spare is up and recorded, the rollout under way.
    d.wait_record("api@4", |r| !r["process"]["pid"].is_null());
    d.kill_daemon();
    d.spawn();
    // The new daemon finds instances on the old config and rolls them, one at a time.
    wait_for(
        "every instance on version 2, the spare gone",
        Duration::from_secs(60),
        || {
            let s = d.status("api");
            let names = instances(&d);
            (s["reason"] == "3/3 running" && names == ["api@1", "api@2", "api@3"]).then_some(())
        },
    );
    // No twin: exactly one process per instance answers with its name.
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..60 {
        if let Ok(w) = ask(port) {
            seen.entry(w[1].clone())
                .or_insert_with(BTreeSet::new)
                .insert(w[0].clone());
        }
    }
    for (name, pids) in &seen {
        assert_eq!(pids.len(), 1, "{name} answered from {pids:?}");
    }
}

/// An HTTP GET on a new connection: the body, or why not.
fn get(port: u16) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    use std::io::Write;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    match out.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") =>
        {
            Ok(body.to_string())
        }
        _ => Err(format!("bad answer: {out:?}")),
    }
}

#[test]
fn gunicorn_replicas_take_the_held_socket_and_roll_without_a_failed_request() {
    // Debian's gunicorn takes LISTEN_FDS itself and says READY=1 (20.1).
    if !candor_scenarios::tool(
        "gunicorn",
        &["--version"],
        "Debian's gunicorn is not installed",
    ) {
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.py"),
        "import os\ndef app(environ, start):\n    start('200 OK', [('Content-Type', 'text/plain')])\n    return [f\"{os.environ['VERSION']} {os.environ['CANDOR_INSTANCE']} {os.getpid()}\\n\".encode()]\n",
    )
    .unwrap();
    let config = |version: &str| {
        format!(
            r#"
[service.web]
command = ["gunicorn", "--workers", "2", "--chdir", "{app}", "app:app"]
replicas = 2
ready = "notify"
env = {{ VERSION = "{version}" }}
sockets = [{{ listen = "127.0.0.1:{port}", activate = true }}]
stop = {{ timeout = "10s" }}
update = {{ min_ready = "1s" }}
"#,
            app = dir.path().display()
        )
    };
    let d = Daemon::start(&config("1"));
    wait_for("web 2/2 running", T, || {
        (d.status("web")["reason"] == "2/2 running").then_some(())
    });
    let mut seen = BTreeSet::new();
    wait_for("both instances answer", T, || {
        let body = get(port).ok()?;
        seen.insert(body.split_whitespace().nth(1)?.to_string());
        (seen.len() == 2).then_some(())
    });
    // A client asking on a new connection every 10 ms through the whole rollout.
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let client = std::thread::spawn(move || {
        let (mut ok, mut failed) = (0u64, Vec::new());
        while !s2.load(Ordering::SeqCst) {
            match get(port) {
                Ok(_) => ok += 1,
                Err(e) => failed.push(e),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (ok, failed)
    });
    d.write_config(&config("2"));
    d.ok(&["reload"]);
    wait_for(
        "every answer from version 2",
        Duration::from_secs(60),
        || {
            let s = d.status("web");
            let done = s["reason"] == "2/2 running" && s["replicas"]["rollout"].is_null();
            let all_new = (0..20).all(|_| get(port).is_ok_and(|b| b.starts_with("2 ")));
            (done && all_new).then_some(())
        },
    );
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = client.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok + failed.len() as u64
    );
    assert!(ok > 20, "the client kept asking ({ok})");
}

#[test]
fn a_scaled_group_keeps_its_count_and_its_pids_across_kill_9_and_upgrade_until_a_reload() {
    let port = free_port();
    let mut d = Daemon::start(&config(port, 2, "1", "none", "{ min_ready = \"1s\" }"));
    wait_group(&d, "running", "2/2 running");
    d.ok(&["scale", "api", "3"]);
    wait_group(&d, "running", "3/3 running");
    let pids = |d: &Daemon| -> Vec<Value> {
        ["api@1", "api@2", "api@3"]
            .iter()
            .map(|n| d.status(n)["pid"].clone())
            .collect()
    };
    let before = pids(&d);
    d.wait_record("api@3", |r| !r["saved"]["run"]["ready"].is_null());
    d.kill_daemon();
    d.spawn();
    // The count `candor scale` set outlives the daemon; every instance is adopted, not restarted.
    wait_group(&d, "running", "3/3 running");
    assert_eq!(pids(&d), before);
    let out = d.ok(&["upgrade"]);
    assert!(out.starts_with("upgraded: pid "), "{out}");
    wait_group(&d, "running", "3/3 running");
    assert_eq!(pids(&d), before, "an upgrade restarts no instance");
    // The config wins at a reload, and the plan says so first.
    let plan = d.ok(&["reload", "--plan"]);
    assert!(
        plan.contains("api: scale 3 → 2 (replicas in the config"),
        "{plan}"
    );
    d.ok(&["reload"]);
    wait_for("api@3 goes", T, || {
        (instances(&d) == ["api@1", "api@2"]).then_some(())
    });
    let kept: Vec<Value> = ["api@1", "api@2"]
        .iter()
        .map(|n| d.status(n)["pid"].clone())
        .collect();
    assert_eq!(kept[..], before[..2], "scaling down stops only the highest");
}
