//! Candor as a container's init: pid 1 of a PID namespace (`unshare --pid --fork
//! --mount-proc`, no container engine needed). Every orphan of the namespace is reaped at
//! once, and Candor exits when the `main = true` service ends, with its exit code.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candor_scenarios::{candor_bin, wait_for};

const T: Duration = Duration::from_secs(30);

/// The host pid of the candor daemon whose command line names `config`.
fn daemon_pid(config: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.contains(config) && cmd.contains(" daemon ") && !cmd.starts_with("unshare"))
            .then_some(pid)
    })
}

/// Zombies whose parent is `pid`.
fn zombies_of(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
            let f: Vec<&str> = rest.split(' ').collect();
            f.first() == Some(&"Z") && f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid)
        })
        .count()
}

/// Whether this test can make a PID namespace (`unshare --pid`, root); says why not if not.
fn pid_namespaces() -> bool {
    candor_scenarios::tool(
        "unshare",
        &["--pid", "--fork", "--mount-proc", "true"],
        "unshare --pid needs root",
    )
}

#[test]
fn as_pid_1_candor_reaps_every_orphan_and_exits_with_the_main_service_s_code() {
    if !pid_namespaces() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("candor.toml");
    std::fs::write(
        &config,
        format!(
            r#"[daemon]
state_dir = "{dir}/state"

[service.app]
command = ["sh", "-c", "sleep 3; exit 7"]
main = true
restart = "never"

# Keeps making orphans: each subshell leaves a short sleep behind and exits.
[service.orphans]
command = ["sh", "-c", "while :; do (sleep 0.05 &); sleep 0.02; done"]
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let config_s = config.display().to_string();
    let started = Instant::now();
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(candor_bin())
        .args(["daemon", "-c", &config_s])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_for("candor as pid 1", T, || daemon_pid(&config_s));
    // While the orphan maker runs (about 35 orphans a second), none is left a zombie.
    let mut most = 0;
    for _ in 0..20 {
        most = most.max(zombies_of(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        most <= 2,
        "up to {most} zombies waited for candor (pid 1) to reap them"
    );
    let status = wait_for("candor to exit with app", T, || child.try_wait().unwrap());
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(
        status.code(),
        Some(7),
        "exit code of the main service; stderr:\n{err}"
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        err.contains("the main service `app` ended (exited with code 7); stopping the others, then exiting with code 7"),
        "{err}"
    );
}

#[test]
fn as_pid_1_a_main_service_killed_by_a_signal_gives_128_plus_the_signal() {
    if !pid_namespaces() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("candor.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{}/state\"\n\n[service.app]\ncommand = [\"sh\", \"-c\", \"kill -9 $$\"]\nmain = true\nrestart = \"never\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let status = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(candor_bin())
        .args(["daemon", "-c", &config.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(128 + 9));
}
