//! Socket activation: Candor binds the sockets a service declares with `activate = true`,
//! hands them over as fd 3.. with systemd's LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES, and keeps
//! them across the service's restarts, so a client that connects while it is down waits in
//! the backlog and is answered by the next run. The service is examples/python/service.py, a
//! 37-line program that follows docs/protocol.md with Python's standard library.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use candor_scenarios::{free_port, wait_for, Daemon};

const T: Duration = Duration::from_secs(20);

fn example() -> String {
    format!(
        "{}/../examples/python/service.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The line the service answers a connection with: "<pid> <service> <run> <socket name>".
fn ask(mut s: impl Read) -> Vec<String> {
    let mut out = String::new();
    s.read_to_string(&mut out).expect("an answer");
    out.split_whitespace().map(str::to_string).collect()
}

fn ask_unix(path: &std::path::Path) -> Vec<String> {
    let s = std::os::unix::net::UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    ask(s)
}

#[test]
fn an_activated_socket_outlives_a_crash_and_a_request_made_during_the_backoff_is_answered() {
    let port = free_port();
    let mut d = Daemon::start(&format!(
        r#"
[service.api]
command = ["python3", "{example}"]
ready = "notify"
sockets = [{{ path = "{{dir}}/run/api.sock", activate = true, mode = "0660" }},
           {{ listen = "127.0.0.1:{port}", activate = true, name = "http" }}]
backoff = {{ initial = "2s" }}
stop = {{ timeout = "3s" }}
"#,
        example = example()
    ));
    let path = d.path("run/api.sock");
    let first = d.wait_state("api", "running", T);
    let pid = first["pid"].as_u64().unwrap().to_string();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let inode = meta.ino();
    // The protocol as the service saw it: its own pid in LISTEN_PID (it asserts so), two
    // sockets with their names, who it is and its stop grace.
    let log = d.ok(&["logs", "api"]);
    assert!(
        log.contains("serving 2 activated sockets ['api', 'http']; stop grace 3.0s"),
        "{log}"
    );
    let answer = ask_unix(&path);
    assert_eq!(answer, [pid.as_str(), "api", "1", "api"]);
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    assert_eq!(ask(tcp), [pid.as_str(), "api", "1", "http"]);

    // Killed: while it waits out its backoff, a client connects and is answered by the next run.
    unsafe { libc::kill(pid.parse().unwrap(), libc::SIGKILL) };
    d.wait_state("api", "backoff", T);
    let during = std::os::unix::net::UnixStream::connect(&path)
        .expect("the socket still accepts connections while the service is down");
    during.set_read_timeout(Some(T)).unwrap();
    let answer = ask(during);
    let second = d.wait_state("api", "running", T);
    assert_eq!(answer[0], second["pid"].as_u64().unwrap().to_string());
    assert_ne!(answer[0], pid);
    assert_eq!(answer[2], "2", "answered by the second run");
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        inode,
        "the same socket, never made again"
    );
    // The daemon shuts down: the socket file goes with it (never left dangling).
    d.shutdown();
    assert!(!path.exists());
}

#[test]
fn activated_sockets_go_with_their_service_and_a_path_someone_else_listens_on_is_refused() {
    let d = Daemon::start(&format!(
        r#"
[service.api]
command = ["python3", "{example}"]
sockets = [{{ path = "{{dir}}/api.sock", activate = true }}]
"#,
        example = example()
    ));
    let path = d.path("api.sock");
    d.wait_state("api", "running", T);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o666,
        "systemd's default SocketMode"
    );
    // Another process listening where a service wants its socket: refused, never taken over.
    let theirs = d.path("theirs.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&theirs).unwrap();
    d.write_config(&format!(
        r#"
[service.api]
command = ["python3", "{example}"]
sockets = [{{ path = "{{dir}}/api.sock", activate = true }}]

[service.squatted]
command = ["python3", "{example}"]
sockets = [{{ path = "{{dir}}/theirs.sock", activate = true }}]
"#,
        example = example()
    ));
    d.ok(&["reload"]);
    let s = d.wait_state("squatted", "failed", T);
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains("stop that process first"), "{reason}");
    assert!(theirs.exists());
    // Removed by a reload: its socket file goes with it.
    d.write_config("");
    d.ok(&["reload"]);
    wait_for("the socket file removed", T, || {
        (!path.exists()).then_some(())
    });
    assert!(theirs.exists(), "never someone else's");
}

#[test]
fn after_the_daemon_is_killed_the_next_one_takes_the_sockets_back_from_the_running_service() {
    candor_scenarios::reap_orphans();
    let mut d = Daemon::start(&format!(
        r#"
[service.api]
command = ["python3", "{example}"]
ready = "notify"
sockets = [{{ path = "{{dir}}/api.sock", activate = true }}]
backoff = {{ initial = "2s" }}
"#,
        example = example()
    ));
    let path = d.path("api.sock");
    let pid = d.wait_state("api", "running", T)["pid"].as_u64().unwrap();
    d.wait_recorded_ready("api", pid);
    let inode = std::fs::metadata(&path).unwrap().ino();
    d.kill_daemon();
    d.spawn();
    // Adopted, the same process; then killed: the socket the new daemon took back from it
    // still takes connections, and the next run answers them.
    let s = d.wait_state("api", "running", T);
    assert_eq!(s["pid"].as_u64(), Some(pid));
    let warnings: Vec<serde_json::Value> = d
        .events()
        .into_iter()
        .filter(|e| {
            e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("could not be taken back")
        })
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    d.wait_state("api", "backoff", T);
    let during = std::os::unix::net::UnixStream::connect(&path)
        .expect("the socket still accepts connections while the service is down");
    during.set_read_timeout(Some(T)).unwrap();
    let answer = ask(during);
    assert_ne!(answer[0], pid.to_string(), "answered by the next run");
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
}
