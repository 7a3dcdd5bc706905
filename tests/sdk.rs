//! candor-sdk, shown side by side: each of the zoo's misbehaving programs runs under Candor
//! beside its twin written on the SDK (crates/candor-twins), meeting the same fault. The zoo
//! program turns it into an incident; the twin does not. bench/sdk.py measures the same
//! pairs for the README's figures; these tests hold the difference a user depends on.

use std::time::{Duration, Instant};

use candor_scenarios::{free_port, wait_for, workspace_bin, Daemon};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// CPU time (user + system, clock ticks) a process has used.
fn cpu_ticks(pid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process's stat");
    // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Lines a service wrote: kept, dropped by its rate limit, and folded repeats.
fn lines_written(s: &Value) -> u64 {
    let l = &s["logs"];
    l["lines"].as_u64().unwrap() + l["dropped"].as_u64().unwrap() + l["folded"].as_u64().unwrap()
}

fn running_pid(d: &Daemon, name: &str) -> u64 {
    d.wait_state(name, "running", T)["pid"].as_u64().unwrap()
}

#[test]
fn out_of_fds_the_zoo_spins_and_floods_its_log_while_the_sdk_accept_loop_backs_off() {
    let d = Daemon::start(
        r#"
[service.zoo]
command = ["{zoo}", "emfile-spin"]
limits = { nofile = 256 }

[service.twin]
command = ["{twin}", "emfile-spin"]
limits = { nofile = 256 }
"#,
    );
    let (zoo, twin) = (running_pid(&d, "zoo"), running_pid(&d, "twin"));
    // Both reach EMFILE with a connection waiting; wait until the twin has said so once.
    wait_for("the twin's episode line", T, || {
        d.ok(&["logs", "twin"])
            .contains("accept on web: Too many open files")
            .then_some(())
    });
    let (z0, t0) = (cpu_ticks(zoo), cpu_ticks(twin));
    let (zl0, tl0) = (
        lines_written(&d.status("zoo")),
        lines_written(&d.status("twin")),
    );
    let window = Instant::now();
    // Both are given the same few seconds.
    wait_for("three seconds of both", T, || {
        (window.elapsed() >= Duration::from_secs(3)).then_some(())
    });
    let (zoo_cpu, twin_cpu) = (cpu_ticks(zoo) - z0, cpu_ticks(twin) - t0);
    let zoo_s = d.status("zoo");
    let twin_s = d.status("twin");
    let (zoo_lines, twin_lines) = (lines_written(&zoo_s) - zl0, lines_written(&twin_s) - tl0);
    assert!(
        zoo_lines >= 1000,
        "the zoo program spins out lines: {zoo_s}"
    );
    assert!(
        zoo_cpu >= 30,
        "the zoo program spins: {zoo_cpu} ticks in 3 s"
    );
    // The twin backs off to one try a second and logs once per episode.
    assert!(
        twin_lines <= 1,
        "the twin wrote {twin_lines} lines: {twin_s}"
    );
    assert!(
        twin_cpu * 10 <= zoo_cpu,
        "the twin used {twin_cpu} ticks against the zoo's {zoo_cpu}"
    );
    let log = d.ok(&["logs", "twin"]);
    assert!(
        log.contains("of 256 fds open") && log.contains("backing off up to 1s"),
        "the episode line names the fd count and the backoff: {log}"
    );
}

#[test]
fn a_failing_reconnect_loop_leaks_fds_in_the_zoo_and_stays_flat_with_the_sdk() {
    let port = free_port();
    let d = Daemon::start(&format!(
        r#"
[service.zoo]
command = ["{{zoo}}", "reconnect-leak", "--every", "10ms", "--port", "{port}"]

[service.twin]
command = ["{{twin}}", "reconnect-leak", "--every", "10ms", "--port", "{port}"]
"#
    ));
    running_pid(&d, "zoo");
    running_pid(&d, "twin");
    let fds = |name: &str| d.status(name)["fds"]["count"].as_u64();
    let twin_first = wait_for("the twin's fd count", T, || fds("twin"));
    let zoo_first = wait_for("the zoo's fd count", T, || fds("zoo"));
    // The zoo keeps 2 fds of every failed attempt.
    wait_for("the zoo's fds to grow by 300", T, || {
        (fds("zoo")? >= zoo_first + 300).then_some(())
    });
    let twin_now = fds("twin").unwrap();
    assert!(
        twin_now <= twin_first + 2,
        "the twin's fds went from {twin_first} to {twin_now} while the zoo's grew by 300"
    );
    // The twin made as many attempts: its one line for the episode says it is retrying.
    let log = d.ok(&["logs", "twin"]);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reconnect peer:"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line per episode, not per attempt: {log}"
    );
    assert!(lines[0].contains("Connection refused"), "{log}");
    // Candor sees the zoo's trend.
    let s = wait_for("the zoo's fd trend", T, || {
        let s = d.status("zoo");
        (s["fds"]["per_hour"].as_f64()? > 0.0).then_some(s)
    });
    assert!(s["fds"]["count"].as_u64().unwrap() > zoo_first, "{s}");
}

/// Also the guard that Candor signals each process of a run once: a second SIGTERM tells the
/// twin's backstop to give up at once ("SIGTERM again"), which would fail the log check.
fn sigterm_side_by_side(env: &[(&str, &str)]) {
    let d = Daemon::start_with_env(
        r#"
[service.zoo]
command = ["{zoo}", "half-dead"]
stop = { timeout = "2s" }

[service.twin]
command = ["{twin}", "sigterm-hang"]
stop = { timeout = "2s" }
"#,
        env,
    );
    running_pid(&d, "zoo");
    running_pid(&d, "twin");
    let log = wait_for("the twin's start line", T, || {
        let l = d.ok(&["logs", "twin"]);
        l.contains("graceful shutdown gets").then_some(l)
    });
    // CANDOR_STOP_TIMEOUT_MS=2000: the grace is a little under it.
    assert!(log.contains("graceful shutdown gets 1.75s"), "{log}");
    let out = d.ok(&["stop", "zoo", "twin", "--wait"]);
    assert!(
        out.contains("zoo: stopped") && out.contains("twin: stopped"),
        "{out}"
    );
    let events = d.events();
    let killed = |name: &str| {
        events.iter().any(|e| {
            e["service"] == name
                && e["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("killed with SIGKILL")
        })
    };
    assert!(killed("zoo"), "the zoo ignores SIGTERM and is killed");
    assert!(
        !killed("twin"),
        "the twin ended before Candor had to kill it"
    );
    let log = d.ok(&["logs", "twin"]);
    assert!(
        log.contains(
            "shutdown backstop: the graceful shutdown begun by SIGTERM did not finish within \
             1.75s; exiting now with code 1"
        ),
        "{log}"
    );
    let s = d.status("twin");
    assert_eq!(s["last_exit"]["description"], "exited with code 1", "{s}");
    let z = d.status("zoo");
    assert_eq!(z["last_exit"]["description"], "killed by SIGKILL", "{z}");
}

#[test]
fn sigterm_the_zoo_must_be_killed_while_the_sdk_backstop_exits_on_its_own_with_the_reason() {
    sigterm_side_by_side(&[]);
}

#[test]
fn sigterm_side_by_side_without_cgroups_each_process_is_signalled_once_too() {
    sigterm_side_by_side(&[("CANDOR_CGROUP", "off")]);
}

#[test]
fn a_stuck_loop_hides_behind_a_pinging_thread_in_the_zoo_and_is_restarted_with_the_sdk() {
    let d = Daemon::start(
        r#"
[service.zoo]
command = ["{zoo}", "stuck-loop", "--after", "1s"]
ready = "notify"
watchdog = "1s"

[service.twin]
command = ["{twin}", "stuck-loop", "--after", "1000"]
ready = "notify"
watchdog = "1s"
"#,
    );
    let zoo = running_pid(&d, "zoo");
    running_pid(&d, "twin");
    let s = wait_for("the twin restarted by its watchdog", T, || {
        let s = d.status("twin");
        (s["restarts"].as_u64()? >= 1).then_some(s)
    });
    let restarted = d.events().into_iter().find(|e| {
        e["service"] == "twin" && e["reason"].as_str().unwrap_or("").contains("watchdog")
    });
    assert!(restarted.is_some(), "restarted for its watchdog: {s}");
    let log = d.ok(&["logs", "twin"]);
    assert!(
        log.contains("watchdog: pings stopped: the heartbeat is")
            && log.contains("old (the event loop is stuck or starved)"),
        "{log}"
    );
    // All the while, the zoo's loop has been stuck too, and its thread kept pinging: Candor
    // cannot tell, and it stays "running" on its first run.
    let z = d.status("zoo");
    assert_eq!(
        (
            z["state"].as_str(),
            z["pid"].as_u64(),
            z["restarts"].as_u64()
        ),
        (Some("running"), Some(zoo), Some(0)),
        "{z}"
    );
    assert!(d.ok(&["logs", "zoo"]).contains("the loop is deadlocked"));
}

#[test]
fn one_sdk_call_says_ready_whatever_the_service_s_ready_is() {
    let d = Daemon::start(
        r#"
[service.by-notify]
command = ["{twin}", "ready"]
ready = "notify"

[service.by-fd]
command = ["{twin}", "ready"]
ready = { fd = 5 }

[service.by-file]
command = ["{twin}", "ready"]
ready = { file = "{dir}/ready-file" }
"#,
    );
    for (name, via) in [
        ("by-notify", "notify"),
        ("by-fd", "fd"),
        ("by-file", "file"),
    ] {
        let s = d.wait_state(name, "running", T);
        assert_eq!(s["ready"]["via"], via, "{s}");
        wait_for("its line", T, || {
            d.ok(&["logs", name])
                .contains("ready said; supervised: true")
                .then_some(())
        });
    }
}

/// examples/sdk-service: a tokio HTTP service on an activated socket, ready by notify, with
/// a watchdog fed by its loop, /health, and a graceful stop.
#[test]
fn the_sdk_example_serves_on_its_activated_socket_reports_health_and_stops_cleanly() {
    let port = free_port();
    let bin = workspace_bin("sdk-service");
    let d = Daemon::start(&format!(
        r#"
[service.hello]
command = ["{bin}"]
sockets = [{{ listen = "127.0.0.1:{port}", activate = true, name = "http" }}]
ready = "notify"
watchdog = "2s"
probe = {{ http = {{ port = {port}, path = "/health" }}, every = "1s" }}
stop = {{ timeout = "5s" }}
"#,
        bin = bin.display()
    ));
    let pid = running_pid(&d, "hello");
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(T)).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    };
    let hello = get("/");
    assert!(
        hello.contains(&format!("hello from hello run 1 pid {pid}")),
        "{hello}"
    );
    let health = get("/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.contains(r#"{"ok":true,"checks":{"event-loop":{"ok":true},"fds":{"ok":true}}}"#),
        "{health}"
    );
    // Its probe passes and its status line is its own.
    let s = wait_for("a passing probe", T, || {
        let s = d.status("hello");
        (s["probes"][0]["ok"].as_bool()? && s["state"] == "running").then_some(s)
    });
    assert_eq!(s["restarts"], 0, "the watchdog is fed: {s}");
    assert_eq!(s["status_text"], "serving", "{s}");
    // A request in flight when the stop comes is answered, then the process exits 0.
    let slow = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(T)).unwrap();
        c.write_all(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    });
    wait_for("the slow request in flight", T, || {
        d.ok(&["logs", "hello"])
            .contains("slow request: 1500 ms")
            .then_some(())
    });
    let out = d.ok(&["stop", "hello", "--wait"]);
    assert!(out.contains("hello: stopped"), "{out}");
    let answer = slow.join().unwrap();
    assert!(answer.contains("slow 1500 ms from hello run 1"), "{answer}");
    let log = d.ok(&["logs", "hello"]);
    assert!(
        log.contains("stopping: 1 requests in flight") && log.contains("stopped cleanly"),
        "{log}"
    );
    let s = d.status("hello");
    assert_eq!(s["last_exit"]["description"], "exited with code 0", "{s}");
}
