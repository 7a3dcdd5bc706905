//! What a service runs as and within: `user`, `group`, `groups`, `umask`, `env_file`,
//! `inherit_env` (exec probes run as the service's user too), and the cgroup v2 limits.

use std::time::Duration;

use candor_scenarios::{available, wait_for, Daemon};

const T: Duration = Duration::from_secs(20);

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    available(
        "CANDOR_REQUIRE_ROOT",
        "switching a service to another user needs root",
        unsafe { libc::geteuid() } == 0,
    )
}

/// The service's output lines, oldest first.
fn lines(d: &Daemon, name: &str) -> Vec<String> {
    d.ok(&["logs", name, "-n", "200"])
        .lines()
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn a_service_runs_as_its_user_with_its_groups_umask_and_environment() {
    if !root() {
        return;
    }
    let d = Daemon::unstarted("");
    std::fs::write(
        d.path("api.env"),
        "# from the env file\nDB_URL=postgres://db/app\nMODE=from-file\n",
    )
    .unwrap();
    // The exec probe passes only as `nobody`: were it run as root, the service would never
    // be ready.
    let mut d = d;
    d.write_config(
        r#"
[service.api]
command = ["/bin/sh", "-c", "echo uid=$(id -u) gid=$(id -g) groups=$(id -G) umask=$(umask); echo HOME=$HOME USER=$USER DB_URL=$DB_URL MODE=$MODE PATH=$PATH INHERITED=${CANDOR_TEST_INHERITED:-none}; exec sleep 100000"]
user = "nobody"
group = "4242"
groups = ["4343"]
umask = "0027"
env_file = ["api.env", "-absent.env"]
env = { MODE = "from-toml" }
inherit_env = false
probe = { exec = ["/bin/sh", "-c", "test $(id -u) = 65534 && test $(id -g) = 4242"], every = "1s" }

[service.plain]
command = ["/bin/sh", "-c", "echo uid=$(id -u) INHERITED=${CANDOR_TEST_INHERITED:-none}; exec sleep 100000"]
"#,
    );
    d.env.push(("CANDOR_TEST_INHERITED".into(), "yes".into()));
    d.spawn();
    d.wait_state("api", "running", T);
    d.wait_state("plain", "running", T);
    let api = wait_for("api's two lines", T, || {
        let l = lines(&d, "api");
        (l.len() >= 2).then_some(l.join("\n"))
    });
    assert!(api.contains("uid=65534 gid=4242"), "{api}");
    let groups = api
        .split("groups=")
        .nth(1)
        .and_then(|s| s.split(" umask").next())
        .unwrap_or_default()
        .to_string();
    for g in ["4242", "4343"] {
        assert!(
            groups.split(' ').any(|x| x == g),
            "groups {groups:?} in {api}"
        );
    }
    assert!(
        !groups.split(' ').any(|x| x == "0"),
        "root's group kept: {api}"
    );
    assert!(api.contains("umask=0027"), "{api}");
    assert!(api.contains("USER=nobody"), "{api}");
    assert!(
        api.contains("DB_URL=postgres://db/app MODE=from-toml"),
        "{api}"
    );
    assert!(api.contains(&format!("PATH={CLEAN_PATH} ")), "{api}");
    assert!(api.contains("INHERITED=none"), "{api}");
    // The default: the daemon's environment, as root.
    let plain = wait_for("plain's line", T, || lines(&d, "plain").first().cloned());
    assert!(plain.contains("uid=0 INHERITED=yes"), "{plain}");
}

/// systemd's PATH, which a service with `inherit_env = false` gets.
const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[test]
fn a_workdir_the_user_may_not_enter_fails_the_start_with_that_reason() {
    if !root() {
        return;
    }
    let d = Daemon::unstarted("");
    let private = d.path("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut d = d;
    d.write_config(&format!(
        r#"
[service.api]
command = ["/bin/sleep", "100000"]
user = "nobody"
workdir = "{}"
restart = "never"
"#,
        private.display()
    ));
    d.spawn();
    let st = d.wait_state("api", "failed", T);
    let reason = st["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cannot enter workdir") && reason.contains("Permission denied"),
        "{st}"
    );
}

/// The events of one service, newest last.
fn events_of(d: &Daemon, name: &str) -> Vec<serde_json::Value> {
    d.events()
        .into_iter()
        .filter(|e| e["service"] == name)
        .collect()
}

#[test]
fn cgroup_limits_are_enforced_and_an_oom_kill_is_named_or_the_status_says_why_not() {
    let d = Daemon::start(
        r#"
[service.hog]
command = ["{zoo}", "mem-grow", "--mb-per-sec", "16"]
limits = { memory_max = "48MiB", pids_max = 64 }
restart = "never"
"#,
    );
    if !d.has_cgroups() {
        return;
    }
    // Either the kernel enforces the limit — the hog is killed by it and the reason says so —
    // or this machine cannot (the memory controller bound to cgroup v1, as on hybrid hosts),
    // and the service still runs, with a warning that names the reason.
    let outcome = wait_for("an OOM kill or a warning", Duration::from_secs(30), || {
        let st = d.status("hog");
        if st["state"] == "failed" {
            return Some(Ok(st));
        }
        events_of(&d, "hog")
            .into_iter()
            .find(|e| e["state"] == "warning")
            .map(Err)
    });
    match outcome {
        Ok(st) => {
            let reason = st["reason"].as_str().unwrap_or_default();
            assert!(
                reason.starts_with("killed by the kernel: memory limit 48.0 MiB (memory_max)"),
                "{st}"
            );
        }
        Err(warning) => {
            let reason = warning["reason"].as_str().unwrap_or_default();
            assert!(
                reason.starts_with(
                    "limits not enforced: the memory and pids controllers are not available to"
                ),
                "{warning}"
            );
            assert_eq!(
                d.state("hog"),
                "running",
                "a limit that cannot be set blocks nothing"
            );
            // Said once per run, not once per key.
            let warnings = events_of(&d, "hog")
                .into_iter()
                .filter(|e| e["state"] == "warning")
                .count();
            assert_eq!(warnings, 1);
            // Asked again at the next start, not remembered: said again, as it is then.
            d.ok(&["restart", "hog", "--wait"]);
            wait_for("the second start's warning", T, || {
                let n = events_of(&d, "hog")
                    .into_iter()
                    .filter(|e| e["state"] == "warning")
                    .count();
                (n == 2).then_some(())
            });
        }
    }
}
