//! Hardening: nothing a hostile service, a local user or a typo does can hang the keeper,
//! delete data, or read what is not theirs. Real daemon, real zoo processes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use candor_scenarios::{candor_bin, wait_for, Daemon};

const T: Duration = Duration::from_secs(20);

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A Unix listener that never accepts, its backlog full: a blocking connect to it waits
/// forever. Returns the listener and the connections that fill it (both must stay open).
fn full_backlog(path: &std::path::Path) -> (i32, Vec<i32>) {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: plain socket syscalls on fds this function creates; `addr` is fully initialised.
    unsafe {
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (i, b) in path.as_os_str().as_bytes().iter().enumerate() {
            addr.sun_path[i] = *b as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let l = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        assert!(l >= 0);
        assert_eq!(
            libc::bind(l, (&addr as *const libc::sockaddr_un).cast(), len),
            0
        );
        assert_eq!(libc::listen(l, 0), 0);
        let mut held = Vec::new();
        loop {
            let c = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
            if libc::connect(c, (&addr as *const libc::sockaddr_un).cast(), len) == 0 {
                held.push(c);
            } else {
                assert_eq!(*libc::__errno_location(), libc::EAGAIN);
                libc::close(c);
                break;
            }
            assert!(held.len() < 64, "the backlog never filled");
        }
        (l, held)
    }
}

#[test]
fn a_listener_with_a_full_backlog_at_a_declared_socket_does_not_hold_up_the_keeper() {
    // Seeds 000/002: an old copy whose accept loop died still holds the socket.
    let dir = tempfile::tempdir().unwrap();
    let stuck_sock = dir.path().join("stuck.sock");
    let _held = full_backlog(&stuck_sock);
    let d = Daemon::start(&format!(
        r#"
[service.stuck]
command = ["{{zoo}}", "healthy", "--socket", "{sock}"]
sockets = ["{sock}"]

[service.other]
command = ["{{zoo}}", "healthy"]
"#,
        sock = stuck_sock.display()
    ));
    let s = d.wait_state("stuck", "failed", T);
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains("backlog is full"), "{reason}");
    assert!(reason.contains("stuck.sock"), "{reason}");
    // The keeper still spawns and stops everything else.
    d.wait_state("other", "running", T);
    d.ok(&["stop", "other", "--wait", "--timeout", "15s"]);
    assert_eq!(d.state("other"), "stopped");
    // A live socket is never removed.
    assert!(stuck_sock.exists());
}

#[test]
fn a_path_that_is_not_a_socket_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.txt");
    std::fs::write(&data, "precious").unwrap();
    let dgram = dir.path().join("dgram.sock");
    let _live_dgram = std::os::unix::net::UnixDatagram::bind(&dgram).unwrap();
    let d = Daemon::start(&format!(
        r#"
[service.typo]
command = ["{{zoo}}", "healthy"]
sockets = ["{data}"]

[service.dgram]
command = ["{{zoo}}", "healthy"]
sockets = ["{dgram}"]
"#,
        data = data.display(),
        dgram = dgram.display()
    ));
    let s = d.wait_state("typo", "failed", T);
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains("is not a socket"), "{reason}");
    assert!(reason.contains("data.txt"), "{reason}");
    let s = d.wait_state("dgram", "failed", T);
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains("another type"), "{reason}");
    assert!(dgram.exists());

    // `[daemon] socket` (here --socket) pointing at a regular file: refused, file kept.
    let out = Command::new(candor_bin())
        .args(["daemon", "-c"])
        .arg(&d.config)
        .arg("--state-dir")
        .arg(d.path("state2"))
        .arg("--socket")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a socket"), "{err}");
    assert!(err.contains("data.txt"), "{err}");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "precious");
}

#[test]
fn state_files_are_private_the_socket_is_0600_and_services_keep_their_umask() {
    // SAFETY: umask only changes this process's mask; it is put back at once.
    let ours = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    let d = Daemon::start(
        r#"
[service.writer]
command = ["/bin/sh", "-c", "umask > {dir}/umask.txt; exec sleep 100000"]
ready = "started"
"#,
    );
    d.wait_state("writer", "running", T);
    let written = wait_for("the service's umask", T, || {
        std::fs::read_to_string(d.path("umask.txt"))
            .ok()
            .filter(|s| !s.is_empty())
    });
    assert_eq!(
        u32::from_str_radix(written.trim(), 8).unwrap(),
        ours as u32,
        "a service keeps the umask the daemon was started with"
    );
    let state = d.path("state");
    wait_for("the run record", T, || d.record("writer"));
    assert_eq!(mode(&state), 0o700);
    for f in ["candor.db", "candor.db-wal", "candor.db-shm", "daemon.lock"] {
        let p = state.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    assert_eq!(mode(&state.join("candor.db")), 0o600);
    assert_eq!(mode(&state.join("runs")), 0o700);
    assert_eq!(mode(&state.join("runs/writer.json")), 0o600);
    assert_eq!(mode(&d.socket), 0o600);
    // The notify socket is a path in a directory no one but the daemon may write (see
    // tests/notify_flood.rs).
    let notify = d.info()["notify"]["socket"].as_str().unwrap().to_string();
    let notify_dir = std::path::Path::new(&notify).parent().unwrap();
    assert_eq!(mode(notify_dir) & 0o022, 0, "{notify}");
}

#[test]
fn socket_group_opens_the_control_socket_to_that_group_only() {
    let d = Daemon::start(
        // The harness writes the `[daemon]` header; this line lands in it.
        r#"socket_group = "4242"

[service.web]
command = ["{zoo}", "healthy"]
"#,
    );
    d.wait_state("web", "running", T);
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 4242);

    // A group that does not exist is a config error with its position.
    d.write_config("socket_group = \"no-such-group-here\"\n");
    let out = d.cli(&["check", "-c", d.config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no group \"no-such-group-here\""), "{err}");
    assert!(err.contains("candor.toml:"), "{err}");
}

#[test]
fn mutating_requests_are_recorded_with_the_callers_uid_and_pid() {
    let d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
"#,
    );
    d.wait_state("web", "running", T);
    d.ok(&["restart", "web", "--wait"]);
    let uid = unsafe { libc::getuid() };
    let ev = wait_for("the request event", T, || {
        d.events()
            .into_iter()
            .find(|e| e["service"] == "candor" && e["state"] == "request")
    });
    assert_eq!(ev["detail"]["request"], "restart web", "{ev}");
    assert_eq!(ev["detail"]["uid"], uid, "{ev}");
    // The pid is the CLI's, which has exited by now: any real pid, not ours.
    let pid = ev["detail"]["pid"].as_u64().expect("a pid");
    assert!(pid > 1 && pid != u64::from(std::process::id()), "{ev}");
    let reason = ev["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("restart web requested by uid {uid} (pid {pid})")),
        "{reason}"
    );
    // Reads are not recorded.
    let before = d
        .events()
        .iter()
        .filter(|e| e["state"] == "request")
        .count();
    d.ok(&["status"]);
    let after = d
        .events()
        .iter()
        .filter(|e| e["state"] == "request")
        .count();
    assert_eq!(before, after);
}

#[test]
fn a_failed_spawn_names_the_step_that_failed() {
    // Above fs.nr_open: setrlimit fails in the child, after the fork, before the exec.
    let d = Daemon::start(
        r#"
[service.greedy]
command = ["{zoo}", "healthy"]
limits = { nofile = 2000000000 }
"#,
    );
    let s = d.wait_state("greedy", "failed", T);
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("cannot set the fd limit to 2000000000/2000000000"),
        "{reason}"
    );
    assert!(!reason.contains("not executable"), "{reason}");
    assert!(!reason.contains("not found"), "{reason}");
}

/// Processes whose command line is exactly `argv`.
fn count_processes(argv: &[&str]) -> usize {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    candor_scenarios::processes(|c| c == want)
}

#[test]
fn what_an_exec_probe_leaves_in_its_group_is_killed_with_it() {
    let d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
probe = { exec = ["/bin/sh", "-c", "sleep 9771 & exit 0"], every = "200ms", timeout = "2s" }
"#,
    );
    d.wait_state("web", "running", T);
    let probed = |d: &Daemon| d.status("web")["probes"][0]["at"].clone();
    let first = probed(&d);
    wait_for("a few more probes", T, || {
        (probed(&d) != first).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    // Each probe's leftover `sleep` is killed as the probe is reaped: none pile up.
    assert!(
        count_processes(&["sleep", "9771"]) <= 1,
        "leftovers of exec probes were not killed"
    );
}

#[test]
fn random_api_requests_get_an_answer_below_500_and_change_nothing_running() {
    let d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
"#,
    );
    let pid = d.wait_state("web", "running", T)["pid"].clone();
    // No `follow`/`wait` (they keep the connection open by design); no shutdown or upgrade.
    let segments = [
        "v1",
        "services",
        "web",
        "nope",
        "logs",
        "events",
        "daemon",
        "reload",
        "reset-failed",
        "metrics",
        "start",
        "%00",
        "..",
        "%ff%fe",
        "a%2Fb",
        "",
        "x".repeat(3000).leak(),
    ];
    let keys = [
        "n", "since", "grep", "stream", "timeout", "force", "raw_hex", "json", "before", "",
    ];
    let values = [
        "",
        "0",
        "-1",
        "1",
        "18446744073709551616",
        "lots",
        "5m",
        "2026-13-45T99:99:99Z",
        "(",
        "[a-",
        "\\\\",
        "out",
        "err",
        "candor",
        "true",
        "maybe",
        "%00",
        "1e400",
    ];
    let methods = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "GARBAGE",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for _ in 0..400 {
        let depth = 1 + next(4);
        let path: Vec<&str> = (0..depth).map(|_| segments[next(segments.len())]).collect();
        let mut query = Vec::new();
        for _ in 0..next(4) {
            query.push(format!(
                "{}={}",
                keys[next(keys.len())],
                values[next(values.len())]
            ));
        }
        let method = methods[next(methods.len())];
        // `start` of a running web is a no-op; stop and restart are not in the list.
        let req = format!(
            "{method} /{}?{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            path.join("/"),
            query.join("&")
        );
        let resp = d.raw(&req).unwrap_or_default();
        let status: u16 = resp
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(
            (200..500).contains(&status),
            "{req:?} -> {}",
            resp.chars().take(300).collect::<String>()
        );
    }
    // Still answering, and web is the same process.
    let s = d.status("web");
    assert_eq!(s["state"], "running");
    assert_eq!(s["pid"], pid);
}

#[test]
fn a_log_answer_is_bounded_and_candor_logs_pages_back_for_the_rest() {
    // 600 lines of 16 000 bytes: 9.6 MB, more than twice what one answer may hold.
    let d = Daemon::start(
        r#"
[service.big]
command = ["python3", "-c", "import time\nfor i in range(600): print(str(i).rjust(16000, 'x'), flush=True)\ntime.sleep(100000)"]
logs = { rate = 100000, burst = 100000 }
"#,
    );
    d.wait_state("big", "running", T);
    wait_for("600 lines stored", T, || {
        let out = d.ok(&["logs", "big", "-n", "1"]);
        out.trim_end().ends_with("x599").then_some(())
    });
    // One answer holds at most 4 MiB of lines and says where to page back from.
    let answer = d
        .raw(&candor_scenarios::get_request(
            "/v1/services/big/logs?n=100000",
        ))
        .expect("an answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        body.len() < 6 << 20,
        "one answer was {} bytes (head {head})",
        body.len()
    );
    let more = head
        .lines()
        .find_map(|l| l.strip_prefix("candor-more-before: "))
        .unwrap_or_else(|| panic!("no candor-more-before header in {head}"));
    more.trim().parse::<i64>().expect("a line id");
    // `candor logs` follows those pages: every line, once, in order.
    let out = d.ok(&["logs", "big", "-n", "100000", "--json"]);
    let lines: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let nums: Vec<u64> = lines
        .iter()
        .map(|l| {
            l["line"]
                .as_str()
                .unwrap()
                .trim_start_matches('x')
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(nums, (0..600).collect::<Vec<u64>>());
    // --before pages back by hand; -n counts from there.
    let id_of_100 = lines[100]["id"].as_i64().unwrap().to_string();
    let out = d.ok(&["logs", "big", "-n", "3", "--before", &id_of_100]);
    let tail: Vec<&str> = out
        .lines()
        .map(|l| l.trim_start_matches(|c| c != 'x'))
        .collect();
    assert_eq!(tail.len(), 3, "{out}");
    assert!(
        tail[2].ends_with("x99") && tail[0].ends_with("x97"),
        "{out}"
    );
    // Following starts from a bounded history too, and says what it left out.
    let (mut child, rx) = d.follow_json(&["logs", "big", "-f", "-n", "100000", "--json"]);
    let first = rx.recv_timeout(T).expect("a first line");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(first["stream"], "candor", "{first}");
    assert!(
        first["line"]
            .as_str()
            .unwrap()
            .contains("older lines left out"),
        "{first}"
    );
}

#[test]
fn a_follower_that_stops_reading_is_cut_off_and_the_daemon_carries_on() {
    use std::io::Write;
    let d = Daemon::start(
        r#"
send_timeout = "1s"

[service.flood]
command = ["{zoo}", "log-flood", "--lines-per-sec", "20000"]
logs = { rate = 100000, burst = 100000 }
"#,
    );
    d.wait_state("flood", "running", T);
    // Ask to follow, then never read.
    let mut s = std::os::unix::net::UnixStream::connect(d.path("candor.sock")).unwrap();
    s.write_all(candor_scenarios::get_request("/v1/services/flood/logs?follow=true").as_bytes())
        .unwrap();
    let cut = candor_scenarios::wait_cut_off(&d);
    assert_eq!(cut, 1);
    assert!(d.log().contains("cut off an API client"), "{}", d.log());
    // What was sent before the cut can still be read, then the connection ends.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    candor_scenarios::read_until_closed(&mut s);
    // The daemon and the service carry on; a reading follower still gets lines.
    assert_eq!(d.state("flood"), "running");
    let (mut child, rx) = d.follow_json(&["logs", "flood", "-f", "--json"]);
    rx.recv_timeout(T).expect("a live line");
    let _ = child.kill();
    let _ = child.wait();
}

/// The daemon's `faults` once it has at least `n`.
fn wait_faults(d: &Daemon, n: u64) -> serde_json::Value {
    wait_for("the fault reported", T, || {
        let f = d.info()["faults"].clone();
        (f["count"].as_u64().unwrap_or(0) >= n).then_some(f)
    })
}

fn fault_events(d: &Daemon) -> Vec<String> {
    d.events()
        .iter()
        .filter(|e| e["service"] == "candor" && e["state"] == "fault")
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_log_reader_that_panics_is_started_again_and_its_service_never_meets_a_closed_pipe() {
    let d = Daemon::start_with_env(
        r#"
[service.chatty]
command = ["sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.02; done"]
"#,
        &[("CANDOR_FAILPOINTS", "reader:chatty")],
    );
    let pid = d.wait_state("chatty", "running", T)["pid"].clone();
    let faults = wait_faults(&d, 1);
    assert_eq!(
        faults["recent"][0]["task"],
        "the log reader of chatty stdout"
    );
    // The next reader reads the same pipe: it says what happened, and lines keep coming.
    let marked = wait_for("lines after the marker", T, || {
        let lines: Vec<serde_json::Value> =
            serde_json::from_str(&d.ok(&["logs", "chatty", "-n", "1000", "--json"])).unwrap();
        let at = lines.iter().position(|l| {
            l["stream"] == "candor" && l["line"].as_str().unwrap().contains("panicked")
        })?;
        (lines.len() > at + 20).then_some(lines[at]["line"].as_str().unwrap().to_string())
    });
    assert!(
        marked.contains("reader of this stdout panicked (failpoint reader:chatty)"),
        "{marked}"
    );
    // No SIGPIPE: the same process, never restarted.
    let s = d.status("chatty");
    assert_eq!((s["pid"].clone(), s["restarts"].as_u64()), (pid, Some(0)));
    let events = fault_events(&d);
    assert!(
        events[0].starts_with("the log reader of chatty stdout panicked (failpoint reader:chatty); it was started again"),
        "{events:?}"
    );
    let table = d.ok(&["status"]);
    assert!(
        table.contains("1 panic caught in Candor's own tasks"),
        "{table}"
    );
}

#[test]
fn a_keeper_panic_leaves_that_spawn_undone_and_the_retry_brings_the_service_up() {
    let d = Daemon::start_with_env(
        r#"
[service.web]
command = ["{zoo}", "healthy"]

[service.other]
command = ["sleep", "100000"]
"#,
        &[("CANDOR_FAILPOINTS", "keeper-spawn:web")],
    );
    d.wait_state("other", "running", T);
    d.wait_state("web", "running", T);
    let faults = wait_faults(&d, 1);
    assert_eq!(faults["recent"][0]["task"], "the keeper");
    assert!(
        faults["recent"][0]["message"]
            .as_str()
            .unwrap()
            .contains("handling a spawn: failpoint keeper-spawn:web"),
        "{faults}"
    );
    // The spawn it was handling failed with that reason, and the next one worked.
    let reasons: Vec<String> = d
        .events()
        .iter()
        .filter(|e| e["service"] == "web")
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("the keeper failed (handling a spawn: failpoint keeper-spawn:web)")),
        "{reasons:?}"
    );
    // The keeper carries on: it still stops and reaps.
    d.ok(&["stop", "other", "--wait"]);
    assert_eq!(d.state("other"), "stopped");
}

#[test]
fn an_api_handler_that_panics_answers_500_and_the_next_request_is_served() {
    let d = Daemon::start_with_env(
        r#"
[service.web]
command = ["sleep", "100000"]
"#,
        &[("CANDOR_FAILPOINTS", "api:/v1/services/web")],
    );
    let answer = d
        .raw(&candor_scenarios::get_request("/v1/services/web"))
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(
        answer.contains("this was reported and the daemon carries on"),
        "{answer}"
    );
    d.wait_state("web", "running", T);
    let faults = wait_faults(&d, 1);
    assert_eq!(
        faults["recent"][0]["task"],
        "the API handler of GET /v1/services/web"
    );
}

#[test]
fn a_brain_that_panics_restarts_the_daemon_in_place_and_every_service_is_kept() {
    let d = Daemon::start_with_env(
        r#"
[service.web]
command = ["{zoo}", "healthy"]

[service.db]
command = ["sleep", "100000"]
"#,
        &[("CANDOR_FAILPOINTS", "brain:web")],
    );
    let web = d.wait_state("web", "running", T)["pid"].clone();
    let db = d.wait_state("db", "running", T)["pid"].clone();
    let before = d.info();
    // The step handling this restart panics; the answer may be lost with the old brain.
    let _ = d.cli(&["restart", "web"]);
    let after = wait_for("a new incarnation", T, || {
        let i = d.info();
        (i["incarnation"] != before["incarnation"]).then_some(i)
    });
    assert_eq!(
        after["pid"], before["pid"],
        "restarted in place (exec), not a new process"
    );
    // Every service was taken over, none restarted.
    assert_eq!(d.wait_state("db", "running", T)["pid"], db);
    let s = d.wait_state("web", "running", T);
    assert_eq!(
        (s["pid"].clone(), s["restarts"].as_u64()),
        (web.clone(), Some(0))
    );
    let events = fault_events(&d);
    assert!(
        events
            .iter()
            .any(|r| r.starts_with("the brain panicked (failpoint brain)")),
        "{events:?}"
    );
    // The new brain works: the same request now does what it says.
    d.ok(&["restart", "web", "--wait"]);
    assert_ne!(d.status("web")["pid"], web);
}
