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

[service.broken]
command = ["sleep", "100000"]
reload = ["/nonexistent/reloader", "--now"]

[service.failing]
command = ["sleep", "100000"]
reload = ["sh", "-c", "exit 3"]
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
    // A reload command that cannot start, or fails: said, exit 1, and the service untouched.
    let broken = d.wait_state("broken", "running", T)["pid"].as_u64();
    d.wait_state("failing", "running", T);
    for (name, why) in [
        (
            "broken",
            "broken: its reload command /nonexistent/reloader --now: command /nonexistent/reloader not found",
        ),
        ("failing", "failing: its reload command sh -c exit 3 exited with code 3"),
    ] {
        let out = d.cli(&["reload", name]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{err}");
    }
    assert_eq!(d.status("broken")["pid"].as_u64(), broken);
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
    // The signal is taken in its own time: until then `c` is not configured.
    wait_for("c configured", T, || {
        d.cli(&["status", "c", "--json"])
            .status
            .success()
            .then_some(())
    });
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
limits = { nofile = 4096, memory_restart = "512MiB", memory_max = "1GiB", memory_high = "768MiB", pids_max = 256, cpu_weight = 50, cpu_max = "150%" }
user = "nobody"
group = "nogroup"
groups = ["root"]
umask = "0027"
env_file = ["api.env", "-/etc/candor-test-absent.env"]
probe = { http = { port = 8080, path = "/health" }, every = "5s" }
sockets = [{ path = "/run/api.sock", activate = true, mode = "0660" }, { listen = "127.0.0.1:8080", activate = true, name = "http" }]
"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("api.env"), "TOKEN=abc\n").unwrap();
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
        warnings
            .lines()
            .all(|l| l.starts_with("warning: ") || l.starts_with("note: ")),
        "{warnings}"
    );
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    let db = read("db.service");
    let out_abs = std::fs::canonicalize(&out).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=10s",
        &format!("EnvironmentFile={}/db.env", out_abs.display()),
        "KillMode=control-group",
    ] {
        assert!(db.contains(line), "no `{line}` in db.service:\n{db}");
    }
    // `env` stays out of the unit (systemd shows Environment= to every user): in a 0600 file,
    // written the way systemd reads it ($ is literal there).
    assert!(!db.contains("GREETING"), "{db}");
    assert!(
        warnings.contains(&format!(
            "note: db: env (1 variable) written to {}/db.env (mode 0600)",
            out_abs.display()
        )),
        "{warnings}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("db.env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        read("db.env").contains("GREETING='100% \"fun\" $HOME'\n"),
        "{}",
        read("db.env")
    );
    let api = read("api.service");
    for line in [
        "After=db.service\nRequires=db.service",
        r#"ExecStart="/bin/sh" "-c" "exec sleep 100000""#,
        format!(
            "EnvironmentFile={}\nEnvironmentFile=-/etc/candor-test-absent.env",
            dir.path().join("api.env").display()
        )
        .as_str(),
        "Restart=on-failure\nRestartSec=1s",
        "KillSignal=SIGINT\nTimeoutStopSec=20s",
        "LimitNOFILE=4096",
        "MemoryMax=1073741824\nMemoryHigh=805306368\nTasksMax=256\nCPUWeight=50\nCPUQuota=150%",
        "User=nobody\nGroup=nogroup\nSupplementaryGroups=root\nUMask=0027",
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

/// `candor export kubernetes`: manifests that the Kubernetes schema accepts in strict mode
/// (kubernetes-validate: no unknown field, every type right), each mapping where it belongs,
/// and exactly one warning line for each key that does not map; exit 0.
#[test]
fn export_kubernetes_writes_manifests_the_schema_accepts_and_warns_for_what_does_not_map() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("candor.toml");
    std::fs::write(
        &config,
        r#"
[service.db]
command = ["/usr/lib/postgresql/bin/postgres", "-D", "/var/lib/pg"]
ready = "notify"
watchdog = "10s"
limits = { nofile = 4096 }

[service.Web_API]
command = ["/bin/sh", "-c", "exec api --greeting \"$(NAME)\" --pid $$"]
workdir = "/srv/api"
env = { RUST_LOG = "info", GREETING = "100% \"fun\" $HOME $(X)" }
after = ["db"]
ready = "probe"
ready_timeout = "30s"
probe = { http = { port = 8080, path = "/health", expect_status = 204 }, every = "5s", timeout = "2s", failures = 4, successes = 2 }
stop = { signal = "SIGINT", timeout = "20s" }
limits = { memory_restart = "512MiB", fd_warn = "70%" }

[service.cache]
command = ["/usr/bin/redis-server", "--port", "6379"]
restart = "on-failure"
backoff = { initial = "1s", max = "1m" }
probe = { tcp = "10.0.0.7:6379", every = "1500ms" }
on_unhealthy = "alert"
logs = { rate = 10 }

[service.migrate]
command = ["/bin/migrate", "--to", "latest"]
restart = "never"
probe = { exec = ["/bin/check", "--quick"], every = "3s" }
sockets = [{ listen = "127.0.0.1:9000", activate = true }]

[service.rpc]
command = ["/bin/rpc"]
probe = { uds = { socket = "/run/rpc.sock", send = "PING\n", expect = "PONG" } }

[service.worker]
command = ["/bin/worker"]
user = "nobody"
group = "4242"
groups = ["4343"]
umask = "0027"
env_file = ["worker.env", "-absent.env"]
inherit_env = false
limits = { memory_max = "256MiB", memory_high = "200MiB", cpu_max = "150%", cpu_weight = 200, pids_max = 64 }
"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("worker.env"), "TOKEN=secret\n").unwrap();
    let id = |flag: &str| {
        let out = std::process::Command::new("id")
            .args([flag, "nobody"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (nobody_uid, nobody_gid) = (id("-u"), id("-g"));
    let worker_env = dir.path().join("worker.env");
    let absent_env = dir.path().join("absent.env");
    let export = |extra: &[&str]| {
        std::process::Command::new(candor_scenarios::candor_bin())
            .args(["export", "kubernetes", "-c"])
            .arg(&config)
            .args([
                "--image",
                "example.org/app:1.2",
                "--image",
                "db=postgres:16",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let r = export(&[]);
    assert!(r.status.success(), "{r:?}");
    let yaml = String::from_utf8(r.stdout).unwrap();
    let warnings = String::from_utf8_lossy(&r.stderr);
    let extra1 = format!("warning: worker: env_file ({}) exported as envFrom the Secret \"worker-env\", which these manifests do not make: kubectl create secret generic worker-env --from-env-file={} (kubectl keeps quotes as part of a value)", worker_env.display(), worker_env.display());
    let extra2 = format!("warning: worker: env_file ({}) exported as envFrom the optional Secret \"worker-env-2\", which these manifests do not make: kubectl create secret generic worker-env-2 --from-env-file={} (kubectl keeps quotes as part of a value)", absent_env.display(), absent_env.display());
    let extra3 = format!("warning: worker: user (nobody) exported as runAsUser {nobody_uid}, its uid on this machine: check that the image agrees");
    let expected = vec![
        "warning: cache: restart = on-failure exported as a Deployment, whose pods are restarted after any exit, 0 too",
        "warning: cache: backoff (1s doubling to 1m, reset after 1m) has no Kubernetes equivalent: the kubelet's crash-loop backoff is fixed (10s doubling to 5m)",
        "warning: cache: probe.every (1.5s) exported as 2s: Kubernetes counts whole seconds, at least 1",
        "warning: cache: on_unhealthy = alert exported as a readinessProbe only: no restart, and a pod failing it is taken out of its Services' endpoints",
        "warning: cache: logs (rate 10, burst 50, max_bytes 64.0 MiB) has no Kubernetes equivalent: the kubelet keeps container logs by size (containerLogMaxSize), with no rate limit",
        "warning: db: ready = notify has no Kubernetes equivalent: the pod counts as ready once started (a readinessProbe is the way to say more)",
        "warning: db: watchdog (10s) has no Kubernetes equivalent: nothing reads sd_notify's WATCHDOG=1 (a livenessProbe is the nearest)",
        "warning: db: limits.nofile (4096) has no Kubernetes equivalent: a container gets its runtime's RLIMIT_NOFILE",
        "warning: migrate: sockets 127.0.0.1:9000 (activate = true) has no Kubernetes equivalent: the service must open its own listener (and a Service expose it)",
        "warning: rpc: probe.uds (/run/rpc.sock) has no Kubernetes equivalent: the kubelet probes TCP ports, not Unix sockets; no probe exported",
        &extra1,
        &extra2,
        "warning: worker: inherit_env = false has no Kubernetes equivalent: a container starts from its image's environment",
        "warning: worker: limits.memory_high (200.0 MiB) has no Kubernetes equivalent: resources.requests.memory reserves memory for scheduling, it does not throttle",
        "warning: worker: limits.cpu_weight (200) has no Kubernetes equivalent: the kubelet derives cpu.weight from resources.requests.cpu (in cores; set it by hand)",
        "warning: worker: limits.pids_max (64) has no Kubernetes equivalent per container: the kubelet's podPidsLimit applies to every pod of a node",
        "warning: worker: umask (0027) has no Kubernetes equivalent: set it in the image's entrypoint",
        &extra3,
        "warning: Web_API: name exported as \"web-api\": Kubernetes names are DNS-1123 labels (a-z, 0-9 and `-`, at most 63)",
        "warning: Web_API: after (db) has no Kubernetes equivalent: every object starts at once, so Web_API must wait for them itself (or be given an initContainer that does)",
        "warning: Web_API: stop.signal (SIGINT) has no Kubernetes equivalent: the kubelet stops a container with its image's STOPSIGNAL (SIGTERM unless the image sets another)",
        "warning: Web_API: probe.http.host (127.0.0.1) not exported: the kubelet probes the pod's IP, so the service must listen on it (e.g. 0.0.0.0), not on loopback only",
        "warning: Web_API: probe.http.expect_status (204) has no Kubernetes equivalent: an httpGet probe passes on any status from 200 to 399",
        "warning: Web_API: probe.successes (2) applies to the readinessProbe only: Kubernetes requires 1 for a livenessProbe",
        "warning: Web_API: ready_timeout (30s) exported as a startupProbe of 6 × 5s: Kubernetes restarts a container not ready in time, where Candor marks it failed",
        "warning: Web_API: limits.fd_warn has no Kubernetes equivalent (only Candor watches fd and memory trends; keep it in your monitoring)",
        "warning: Web_API: limits.memory_restart (512.0 MiB) has no Kubernetes equivalent: resources.limits.memory kills the container instead of restarting it (set it by hand if that will do)",
    ];
    assert_eq!(
        warnings.lines().collect::<Vec<_>>(),
        expected,
        "warnings:\n{warnings}"
    );
    // Each mapping where Kubernetes reads it (the writer's indentation is fixed).
    for piece in [
        // Web_API: a Deployment with its sanitized name, the argv with Kubernetes' `$(VAR)`
        // and `$$` expansion escaped, workdir, env sorted, and the three probes.
        "kind: \"Deployment\"\nmetadata:\n  name: \"web-api\"\n  labels:\n    app.kubernetes.io/name: \"web-api\"\n    app.kubernetes.io/managed-by: \"candor-export\"\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: \"web-api\"\n",
        "      terminationGracePeriodSeconds: 20\n      containers:\n        - name: \"web-api\"\n          image: \"example.org/app:1.2\"\n          command:\n            - \"/bin/sh\"\n            - \"-c\"\n            - \"exec api --greeting \\\"$$(NAME)\\\" --pid $$$\"\n          workingDir: \"/srv/api\"\n          env:\n            - name: \"GREETING\"\n              value: \"100% \\\"fun\\\" $HOME $$(X)\"\n            - name: \"RUST_LOG\"\n              value: \"info\"\n",
        "          livenessProbe:\n            httpGet:\n              path: \"/health\"\n              port: 8080\n            periodSeconds: 5\n            timeoutSeconds: 2\n            failureThreshold: 4\n            successThreshold: 1\n",
        "          readinessProbe:\n            httpGet:\n              path: \"/health\"\n              port: 8080\n            periodSeconds: 5\n            timeoutSeconds: 2\n            failureThreshold: 4\n            successThreshold: 2\n",
        "          startupProbe:\n            httpGet:\n              path: \"/health\"\n              port: 8080\n            periodSeconds: 5\n            timeoutSeconds: 2\n            failureThreshold: 6\n            successThreshold: 1\n",
        // cache: tcpSocket to its host, as a readinessProbe alone (on_unhealthy = alert).
        "          image: \"example.org/app:1.2\"\n          command:\n            - \"/usr/bin/redis-server\"\n            - \"--port\"\n            - \"6379\"\n          readinessProbe:\n            tcpSocket:\n              port: 6379\n              host: \"10.0.0.7\"\n            periodSeconds: 2\n",
        // db: its own image, no probe.
        "        - name: \"db\"\n          image: \"postgres:16\"\n          command:\n            - \"/usr/lib/postgresql/bin/postgres\"\n            - \"-D\"\n            - \"/var/lib/pg\"\n---\n",
        // migrate runs once: a Job.
        "kind: \"Job\"\nmetadata:\n  name: \"migrate\"\n",
        "spec:\n  backoffLimit: 0\n  template:\n",
        "      terminationGracePeriodSeconds: 10\n      restartPolicy: \"Never\"\n",
        "          livenessProbe:\n            exec:\n              command:\n                - \"/bin/check\"\n                - \"--quick\"\n            periodSeconds: 3\n",
        // worker: whom it runs as, its env files as Secrets, its cgroup limits.
        &format!("      securityContext:\n        runAsUser: {nobody_uid}\n        runAsGroup: 4242\n        supplementalGroups:\n"),
        "          - 4343\n",
        "          envFrom:\n            - secretRef:\n                name: \"worker-env\"\n            - secretRef:\n                name: \"worker-env-2\"\n                optional: true\n          resources:\n            limits:\n              cpu: \"1500m\"\n              memory: \"256Mi\"\n",
    ] {
        assert!(yaml.contains(piece), "no\n{piece}\nin:\n{yaml}");
    }
    // One object per service, in start order (db before Web_API, which waits for it).
    let kinds: Vec<&str> = yaml.lines().filter(|l| l.starts_with("kind: ")).collect();
    assert_eq!(kinds.len(), 6, "{yaml}");
    // nobody's own group stays one of its groups, as Candor gives it.
    assert!(
        yaml.contains(&format!("          - {nobody_gid}\n")),
        "{yaml}"
    );
    assert!(yaml.find("name: \"db\"").unwrap() < yaml.find("name: \"web-api\"").unwrap());
    // rpc: its uds probe does not map, so no probe at all.
    let rpc = &yaml[yaml.find("name: \"rpc\"").unwrap()..];
    let rpc = &rpc[..rpc.find("\n---\n").unwrap_or(rpc.len())];
    assert!(!rpc.contains("Probe:"), "{rpc}");

    // --out FILE: the same manifests in the file, a count on stdout.
    let file = dir.path().join("k8s.yaml");
    let r = export(&["--out", file.to_str().unwrap()]);
    assert!(r.status.success(), "{r:?}");
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        format!("6 objects in {}\n", file.display())
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), yaml);
    kubernetes_validate(dir.path(), &yaml);

    // Usage errors: a service that does not exist, systemd without a directory.
    let r = export(&["--image", "nope=x:1"]);
    assert_eq!(r.status.code(), Some(2), "{r:?}");
    assert!(String::from_utf8_lossy(&r.stderr).contains("there is no service `nope`"));
    let r = std::process::Command::new(candor_scenarios::candor_bin())
        .args(["export", "systemd", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2), "{r:?}");
    assert!(String::from_utf8_lossy(&r.stderr).contains("export systemd needs --out DIR"));
    // A config that is not valid exports nothing.
    std::fs::write(&config, "[service.x]\n").unwrap();
    let none = dir.path().join("none.yaml");
    let r = export(&["--out", none.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2));
    assert!(!none.exists());
}

/// Validate `yaml` with kubernetes-validate in strict mode against the oldest and the newest
/// Kubernetes it knows — after making sure it is strict: a copy with an unknown field and
/// one with a string for an integer must each be rejected. Skipped (or failed in CI) where
/// kubernetes-validate is missing; scripts/test.sh installs it from PyPI.
fn kubernetes_validate(dir: &std::path::Path, yaml: &str) {
    let program = std::env::var("CANDOR_KUBERNETES_VALIDATE").unwrap_or_else(|_| {
        let venv = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/kubernetes-validate/bin/kubernetes-validate"
        );
        if std::path::Path::new(venv).exists() {
            venv.into()
        } else {
            "kubernetes-validate".into()
        }
    });
    if !candor_scenarios::tool(
        &program,
        &["--version"],
        "kubernetes-validate is missing (scripts/test.sh installs it from PyPI into target/)",
    ) {
        return;
    }
    let validate = |name: &str, text: &str, version: &str| {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(&program)
            .args(["--strict", "--kubernetes-version", version])
            .arg(&file)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };
    for version in ["1.25.0", "1.37.0"] {
        let (ok, said) = validate("valid.yaml", yaml, version);
        assert!(ok, "kubernetes-validate {version}:\n{said}\n{yaml}");
        assert_eq!(said.matches(" passed for resource ").count(), 6, "{said}");
    }
    let unknown = yaml.replacen(
        "          workingDir: ",
        "          workDir: \"/x\"\n          workingDir: ",
        1,
    );
    let (ok, said) = validate("unknown.yaml", &unknown, "1.37.0");
    assert!(!ok && said.contains("'workDir' was unexpected"), "{said}");
    let wrong_type = yaml.replacen("periodSeconds: 5\n", "periodSeconds: \"5\"\n", 1);
    let (ok, said) = validate("type.yaml", &wrong_type, "1.37.0");
    assert!(!ok && said.contains("is not of type 'integer'"), "{said}");
}
