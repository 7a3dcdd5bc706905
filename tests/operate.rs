//! What an operator does to a running service besides start and stop: `candor reload NAME`
//! (its reload signal, or its reload command; with ready = "notify", waiting for
//! RELOADING=1 then READY=1) and `candor kill NAME --signal SIG [--all]`.

use std::time::Duration;

use candor_scenarios::{wait_for, Daemon};

const T: Duration = Duration::from_secs(20);

/// A service that reloads on SIGHUP the systemd way: RELOADING=1, its work, READY=1.
const NOTIFY_RELOADER: &str = r#"
import os, signal, socket, time
addr = os.environ["NOTIFY_SOCKET"]
addr = "\0" + addr[1:] if addr.startswith("@") else addr
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def send(m): s.sendto(m.encode(), addr)
def hup(*_):
    send("RELOADING=1\nMONOTONIC_USEC=%d" % (time.monotonic_ns() // 1000))
    time.sleep(0.3)
    print("config re-read", flush=True)
    send("READY=1")
signal.signal(signal.SIGHUP, hup)
send("READY=1")
while True: time.sleep(1)
"#;

#[test]
fn reload_sends_the_reload_signal_or_runs_the_reload_command_and_restarts_nothing() {
    let d = Daemon::start(
        r#"
[service.hup]
command = ["sh", "-c", "trap 'echo got HUP' HUP; trap 'echo got USR1' USR1; while :; do sleep 0.1; done"]

[service.usr2]
command = ["sh", "-c", "trap 'echo got USR2' USR2; while :; do sleep 0.1; done"]
reload_signal = "SIGUSR2"

[service.cmd]
command = ["sleep", "100000"]
reload = ["sh", "-c", "echo reloaded > {dir}/marker"]
"#,
    );
    let pid = d.wait_state("hup", "running", T)["pid"].as_u64().unwrap();
    d.wait_state("usr2", "running", T);
    d.wait_state("cmd", "running", T);
    let out = d.ok(&["reload", "hup", "usr2", "cmd"]);
    assert!(out.contains(&format!("hup: SIGHUP to pid {pid}")), "{out}");
    assert!(out.contains("usr2: SIGUSR2 to pid"), "{out}");
    assert!(out.contains("cmd: ran sh -c echo reloaded > "), "{out}");
    wait_for("the HUP handled", T, || {
        d.ok(&["logs", "hup"]).contains("got HUP").then_some(())
    });
    wait_for("the USR2 handled", T, || {
        d.ok(&["logs", "usr2"]).contains("got USR2").then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(d.path("marker")).unwrap(),
        "reloaded\n"
    );
    let s = d.status("hup");
    assert_eq!(
        (s["pid"].as_u64(), s["restarts"].as_u64()),
        (Some(pid), Some(0)),
        "{s}"
    );
    // Recorded as requests, with who asked.
    let events = d.events();
    assert!(
        events
            .iter()
            .any(|e| e["reason"].as_str().unwrap_or("").starts_with(&format!(
                "reload hup (SIGHUP to pid {pid}) requested by uid "
            ))),
        "{events:?}"
    );
    // Without a name it is still the config reload.
    assert!(d.ok(&["reload"]).starts_with("reloaded: "));
}

#[test]
fn a_notify_service_s_reload_is_waited_for_and_one_that_never_says_ready_is_reported() {
    let d = Daemon::start(&format!(
        r#"
[service.py]
command = ["python3", "-c", {script:?}]
ready = "notify"

[service.deaf]
command = ["python3", "-c", "import os,signal,socket,time; a=os.environ['NOTIFY_SOCKET']; a='\\0'+a[1:] if a[0]=='@' else a; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b'READY=1', a); signal.signal(signal.SIGHUP, signal.SIG_IGN); time.sleep(100000)"]
ready = "notify"
"#,
        script = NOTIFY_RELOADER
    ));
    d.wait_state("py", "running", T);
    d.wait_state("deaf", "running", T);
    let out = d.ok(&["reload", "py"]);
    assert!(out.starts_with("py reloaded: SIGHUP to pid "), "{out}");
    assert!(out.contains("then RELOADING=1 and READY=1 in "), "{out}");
    assert!(d.ok(&["logs", "py"]).contains("config re-read"));
    // Twice: each reload is its own.
    assert!(d
        .ok(&["reload", "py", "--json"])
        .contains("\"reloaded\": true"));
    let r = d.cli(&["reload", "deaf", "--timeout", "1s"]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("no RELOADING=1 then READY=1 came within 1s"),
        "{err}"
    );
    assert_eq!(
        d.status("deaf")["state"],
        "running",
        "a failed reload restarts nothing"
    );
}

#[test]
fn kill_signals_the_main_process_or_every_process_and_refuses_a_stopped_service() {
    let d = Daemon::start(
        r#"
[service.hup]
command = ["sh", "-c", "trap 'echo main got USR1' USR1; sh -c \"trap 'echo child got USR1' USR1; while :; do sleep 0.1; done\" & while :; do sleep 0.1; done"]

[service.idle]
command = ["sleep", "100000"]
"#,
    );
    let pid = d.wait_state("hup", "running", T)["pid"].as_u64().unwrap();
    let out = d.ok(&["kill", "hup", "--signal", "USR1"]);
    assert_eq!(out.trim(), format!("hup: SIGUSR1 to pid {pid}"));
    wait_for("the main process's line", T, || {
        d.ok(&["logs", "hup"])
            .contains("main got USR1")
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !d.ok(&["logs", "hup"]).contains("child got USR1"),
        "only the main process"
    );
    let out = d.ok(&["kill", "hup", "--signal", "SIGUSR1", "--all"]);
    assert!(
        out.contains("SIGUSR1 to every process of hup's run"),
        "{out}"
    );
    wait_for("the child's line too", T, || {
        d.ok(&["logs", "hup"])
            .contains("child got USR1")
            .then_some(())
    });
    // Nothing to signal; a name that is not there; a signal that is not one.
    d.ok(&["stop", "idle", "--wait"]);
    let r = d.cli(&["kill", "idle"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr)
        .contains("`idle` has no running process to signal (it is stopped)"));
    assert_eq!(d.cli(&["kill", "nosuch"]).status.code(), Some(2));
    let r = d.cli(&["kill", "hup", "--signal", "SIGNOPE"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("`SIGNOPE` is not a signal"));
    assert_eq!(d.status("hup")["pid"], pid, "nothing was restarted");
}

/// Candor under systemd (contrib/candor.service, Type=notify): READY=1 to its own
/// NOTIFY_SOCKET once every service has been started, and SIGHUP re-reads the config.
#[test]
fn as_a_system_service_candor_says_ready_and_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(T)).unwrap();
    let mut d = Daemon::start_with_env(
        r#"
[service.a]
command = ["sleep", "100000"]

[service.b]
command = ["{zoo}", "slow-ready", "--after", "1s"]
ready = "notify"
"#,
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.iter().any(|m: &String| m == "READY=1") {
        let n = rx.recv(&mut buf).expect("READY=1 from the daemon");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        got.contains(&"STATUS=2 services started".to_string()),
        "{got:?}"
    );
    // Only once the slow one is ready: "every service has been started".
    assert_eq!(d.state("b"), "running");
    // SIGHUP: the config is read again.
    d.write_config("[service.a]\ncommand = [\"sleep\", \"100000\"]\n\n[service.c]\ncommand = [\"sleep\", \"100000\"]\n");
    // SAFETY: a signal to the daemon this test started.
    unsafe { libc::kill(d.daemon_pid() as i32, libc::SIGHUP) };
    d.wait_state("c", "running", T);
    wait_for("b removed", T, || {
        (!d.ok(&["status"]).contains("\nb ")).then_some(())
    });
    assert!(d
        .events()
        .iter()
        .any(|e| e["reason"] == "reload requested by SIGHUP"));
    // The unit file is one systemd accepts.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/candor.service"
    ))
    .unwrap();
    let unit = unit.replace(
        "/usr/local/bin/candor",
        &candor_scenarios::candor_bin().display().to_string(),
    );
    let file = dir.path().join("candor.service");
    std::fs::write(&file, unit).unwrap();
    systemd_verify(dir.path(), &["candor.service"]);
    d.shutdown();
}

/// `candor export systemd`: units systemd accepts (`systemd-analyze verify`), and a warning
/// for each key that does not map.
#[test]
fn export_systemd_writes_units_systemd_accepts_and_warns_for_what_does_not_map() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("candor.toml");
    std::fs::write(
        &config,
        r#"
[service.db]
command = ["/bin/sleep", "100000"]
ready = "notify"
watchdog = "10s"
env = { GREETING = "100% \"fun\" $HOME" }

[service.api]
command = ["/bin/sh", "-c", "exec sleep 100000"]
after = ["db"]
restart = "on-failure"
backoff = { initial = "1s", max = "1m" }
stop = { signal = "SIGINT", timeout = "20s" }
limits = { nofile = 4096, memory_restart = "512MiB" }
probe = { http = { port = 8080, path = "/health" }, every = "5s" }
sockets = [{ path = "/run/api.sock", activate = true, mode = "0660" }, { listen = "127.0.0.1:8080", activate = true, name = "http" }]
"#,
    )
    .unwrap();
    let out = dir.path().join("units");
    let r = std::process::Command::new(candor_scenarios::candor_bin())
        .args(["export", "systemd", "-c"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains("4 units in"), "{stdout}");
    let warnings = String::from_utf8_lossy(&r.stderr);
    for w in [
        "warning: api: probe (http every 5s) has no systemd equivalent",
        "warning: api: limits.memory_restart has no systemd equivalent",
        "warning: api: ready = probe has no systemd equivalent; exported as Type=exec",
    ] {
        assert!(warnings.contains(w), "no `{w}` in:\n{warnings}");
    }
    assert!(
        warnings.lines().all(|l| l.starts_with("warning: ")),
        "{warnings}"
    );
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    let db = read("db.service");
    for line in [
        "Type=notify",
        "WatchdogSec=10s",
        r#"Environment="GREETING=100%% \"fun\" $$HOME""#,
        "KillMode=control-group",
    ] {
        assert!(db.contains(line), "no `{line}` in db.service:\n{db}");
    }
    let api = read("api.service");
    for line in [
        "After=db.service\nRequires=db.service",
        r#"ExecStart="/bin/sh" "-c" "exec sleep 100000""#,
        "Restart=on-failure\nRestartSec=1s",
        "KillSignal=SIGINT\nTimeoutStopSec=20s",
        "LimitNOFILE=4096",
        "Sockets=api-0.socket api-1.socket",
    ] {
        assert!(api.contains(line), "no `{line}` in api.service:\n{api}");
    }
    assert!(read("api-0.socket").contains("ListenStream=/run/api.sock\nSocketMode=0660"));
    assert!(read("api-1.socket").contains(
        "ListenStream=127.0.0.1:8080\nBacklog=4096\nFileDescriptorName=http\nService=api.service"
    ));
    systemd_verify(
        &out,
        &["db.service", "api.service", "api-0.socket", "api-1.socket"],
    );
    // A config that is not valid exports nothing.
    std::fs::write(&config, "[service.x]\n").unwrap();
    let r = std::process::Command::new(candor_scenarios::candor_bin())
        .args(["export", "systemd", "-c"])
        .arg(&config)
        .arg("--out")
        .arg(dir.path().join("none"))
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(!dir.path().join("none").exists());
}

/// `systemd-analyze verify` of these unit files in `dir` (skipped, or failed in CI, where
/// systemd-analyze is missing).
fn systemd_verify(dir: &std::path::Path, files: &[&str]) {
    if !candor_scenarios::tool(
        "systemd-analyze",
        &["--version"],
        "systemd-analyze is missing (scripts/test.sh installs Debian's systemd)",
    ) {
        return;
    }
    let v = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(files)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "systemd-analyze verify {files:?}: {}",
        String::from_utf8_lossy(&v.stderr)
    );
}
