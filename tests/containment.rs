//! Containment: a stop always ends and leaves nothing behind, escaped grandchildren included;
//! a restarted daemon never runs a second copy; the process-group fallback says so.

use std::time::{Duration, Instant};

use candor_scenarios::{alive, proc_state, read_pids, reap_orphans, wait_for, wait_reaped, Daemon};

const T: Duration = Duration::from_secs(20);

/// A service that ignores SIGTERM, with a child that does too: `stop --wait` returns only after
/// stop.timeout, both are gone, the escalation is an event, and the service can start again in
/// the cgroup that was killed. The same promise under every containment mode.
fn half_dead_stop_ends_and_start_works_again(env: &[(&str, &str)]) -> Daemon {
    let d = Daemon::start_with_env(
        r#"
[service.zombie]
command = ["{zoo}", "half-dead", "--pids", "{dir}/pids"]
stop = { signal = "SIGTERM", timeout = "1s" }
"#,
        env,
    );
    d.wait_state("zombie", "running", T);
    let pids = read_pids(&d.path("pids"));
    assert_eq!(pids.len(), 2, "parent and child");
    assert!(pids.iter().all(|p| alive(*p)));

    let t0 = Instant::now();
    let out = d.ok(&["stop", "zombie", "--wait"]);
    let took = t0.elapsed();
    assert!(out.contains("zombie: stopped"), "{env:?}: {out}");
    // The answer says how the stop ended, not only `candor events`.
    assert!(
        out.contains(
            "did not stop within 1s of SIGTERM, so the whole group was killed with SIGKILL"
        ),
        "{env:?}: {out}"
    );
    // SIGTERM is ignored, so only the SIGKILL at stop.timeout ends it.
    assert!(
        took >= Duration::from_millis(950),
        "{env:?}: stop returned before the timeout: {took:?}"
    );
    for p in &pids {
        wait_for(&format!("pid {p} gone"), T, || (!alive(*p)).then_some(()));
    }
    wait_for("the escalation recorded as an event", T, || {
        d.events()
            .into_iter()
            .any(|e| {
                e["service"] == "zombie"
                    && e["reason"]
                        .as_str()
                        .unwrap_or("")
                        .contains("killed with SIGKILL")
            })
            .then_some(())
    });
    assert_eq!(d.status("zombie")["state"], "stopped");

    // A new run must live (its cgroup, if any, was killed with cgroup.kill).
    d.ok(&["start", "zombie", "--wait"]);
    let s = wait_for("the new run to stay up", T, || {
        let s = d.status("zombie");
        (s["state"] == "running" && s["uptime_s"].as_f64()? > 0.5).then_some(s)
    });
    assert_eq!(
        s["runs"], 2,
        "{env:?}: the new run was killed and restarted: {s}"
    );
    d
}

#[test]
fn half_dead_service_is_killed_after_stop_timeout_with_its_child() {
    half_dead_stop_ends_and_start_works_again(&[]);
}

#[test]
fn portable_spawn_path_stops_half_dead_and_starts_again() {
    half_dead_stop_ends_and_start_works_again(&[("CANDOR_CLONE3", "off")]);
}

#[test]
fn process_group_fallback_is_reported_and_stops_still_end() {
    let d = half_dead_stop_ends_and_start_works_again(&[("CANDOR_CGROUP", "off")]);
    let table = d.ok(&["status"]);
    assert!(
        table.contains("containment: process groups only"),
        "{table}"
    );
    assert!(table.contains("cannot be tracked"), "{table}");
    assert_eq!(d.info()["containment"], "process-group");
}

fn cgroup_of(pid: u64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn double_fork_grandchild_is_stopped_with_its_service() {
    let d = Daemon::start(
        r#"
[service.daemonizer]
command = ["{zoo}", "double-fork", "--pids", "{dir}/pids"]
stop = { timeout = "2s" }
"#,
    );
    if !d.has_cgroups() {
        return;
    }
    let s = d.wait_state("daemonizer", "running", T);
    let main = s["pid"].as_u64().unwrap();
    let pids = read_pids(&d.path("pids"));
    let grandchild = pids[1];
    assert!(alive(grandchild));
    // It left the process group (setsid), but not the service's cgroup.
    assert!(
        cgroup_of(grandchild).ends_with("/daemonizer"),
        "{}",
        cgroup_of(grandchild)
    );
    assert_eq!(cgroup_of(grandchild), cgroup_of(main));

    d.ok(&["stop", "daemonizer", "--wait"]);
    wait_for("escaped grandchild gone", T, || {
        (!alive(grandchild)).then_some(())
    });
    assert!(!alive(main));
}

#[test]
fn leftovers_of_an_exited_main_are_killed_before_the_restart() {
    // The main process daemonizes a grandchild and exits 0: the run is over, so what it left
    // behind is stopped before the next run starts. Never two copies.
    let d = Daemon::start(
        r#"
[service.forker]
command = ["{zoo}", "double-fork", "--pids", "{dir}/pids", "--parent-exits"]
stop = { timeout = "1s" }
backoff = { initial = "200ms", max = "1s", reset_after = "30s" }
"#,
    );
    if !d.has_cgroups() {
        return;
    }
    let first = read_pids(&d.path("pids"));
    let first_gc = first[1];
    wait_for("a second run", Duration::from_secs(30), || {
        let p = read_pids(&d.path("pids"));
        (p[1] != first_gc).then_some(())
    });
    assert!(
        !alive(first_gc),
        "the first run's grandchild survived into the second run"
    );
    wait_for("the cleanup recorded", T, || {
        d.events()
            .into_iter()
            .any(|e| {
                e["service"] == "forker"
                    && e["reason"]
                        .as_str()
                        .unwrap_or("")
                        .contains("stopping the processes it left")
            })
            .then_some(())
    });
}

/// The main process of a run dies while no daemon runs and leaves its child (which ignores
/// SIGTERM) behind: the next daemon reports the run over, stops the leftover — the stop signal,
/// SIGKILL after stop.timeout — and only then starts the service again. Never two copies.
fn leftover_of_a_run_that_died_unseen_is_killed_before_the_restart(env: &[(&str, &str)]) {
    reap_orphans();
    let mut d = Daemon::start_with_env(
        r#"
[service.zombie]
command = ["{zoo}", "half-dead", "--pids", "{dir}/pids"]
stop = { signal = "SIGTERM", timeout = "1s" }
"#,
        env,
    );
    if env.is_empty() && !d.has_cgroups() {
        return;
    }
    let main = d.wait_state("zombie", "running", T)["pid"]
        .as_u64()
        .unwrap();
    d.wait_recorded_ready("zombie", main);
    let pids = read_pids(&d.path("pids"));
    let child = pids[1];
    d.kill_daemon();
    // SAFETY: kill(2) of the service's main process only.
    unsafe { libc::kill(main as i32, libc::SIGKILL) };
    wait_reaped(main);
    assert!(alive(child), "the child lives on without its parent");
    d.spawn();
    let s = wait_for("a new run", T, || {
        let s = d.status("zombie");
        let pid = s["pid"].as_u64()?;
        (s["state"] == "running" && pid != main).then_some(s)
    });
    assert!(
        !alive(child),
        "the leftover outlived the next run's start: {s}"
    );
    assert_eq!(s["restarts"], 1, "{s}");
    let said = d.events().into_iter().any(|e| {
        e["service"] == "zombie"
            && e["reason"]
                == "main process ended while the supervisor was down; exit status unknown; \
                    stopping the processes it left in its group"
    });
    assert!(said, "{:#?}", d.events());
}

#[test]
fn a_leftover_in_the_cgroup_of_a_run_that_died_unseen_is_killed_before_the_restart() {
    leftover_of_a_run_that_died_unseen_is_killed_before_the_restart(&[]);
}

#[test]
fn a_leftover_in_the_group_of_a_run_that_died_unseen_is_killed_before_the_restart() {
    leftover_of_a_run_that_died_unseen_is_killed_before_the_restart(&[("CANDOR_CGROUP", "off")]);
}

#[test]
fn services_run_in_their_own_cgroup_and_process_group() {
    let d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
"#,
    );
    let pid = d.wait_state("web", "running", T)["pid"].as_u64().unwrap();
    if d.has_cgroups() {
        assert!(cgroup_of(pid).ends_with("/web"), "{}", cgroup_of(pid));
        assert_ne!(cgroup_of(pid), cgroup_of(d.daemon_pid() as u64));
    }
    // setsid: the service leads its own session and process group.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(fields[2], pid.to_string(), "pgid");
    assert_eq!(fields[3], pid.to_string(), "sid");
}

/// Everything the keeper promises about a spawned process, checked from /proc.
fn assert_spawned_as_configured(env: &[(&str, &str)]) {
    let d = Daemon::start_with_env(
        r#"
[service.web]
# sleep(1) touches no signal (a Rust program would ignore SIGPIPE itself), so the mask and
# dispositions seen are the keeper's doing.
command = ["sleep", "3600"]
workdir = "{dir}"
env = { CANDOR_TEST_VAR = "hello world" }
limits = { nofile = 321 }
"#,
        env,
    );
    let pid = d.wait_state("web", "running", T)["pid"].as_u64().unwrap();
    if d.has_cgroups() {
        assert!(
            cgroup_of(pid).ends_with("/web"),
            "{env:?}: {}",
            cgroup_of(pid)
        );
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        (fields[2], fields[3]),
        (pid.to_string().as_str(), pid.to_string().as_str()),
        "{env:?}: pgid and sid"
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        nofile.split_whitespace().collect::<Vec<_>>()[3..5],
        ["321", "321"],
        "{env:?}: {nofile}"
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    assert!(
        vars.contains(&&b"CANDOR_TEST_VAR=hello world"[..]),
        "{env:?}: env not passed"
    );
    assert!(
        !vars.iter().any(|v| v.starts_with(b"NOTIFY_SOCKET=")),
        "{env:?}: NOTIFY_SOCKET leaked"
    );
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(
        cwd,
        d.dir.path().canonicalize().unwrap(),
        "{env:?}: workdir"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for key in ["SigBlk:", "SigIgn:"] {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        assert!(
            line.trim_end().ends_with("0000000000000000"),
            "{env:?}: {line} (a service starts with no signal blocked or ignored)"
        );
    }
    // Nothing the daemon inherited or opened leaks in: only stdin, stdout, stderr.
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    assert_eq!(
        fds,
        [0, 1, 2],
        "{env:?}: the service holds fds it was not given"
    );
    // stdin is /dev/null.
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap(),
        std::path::Path::new("/dev/null")
    );
}

#[test]
fn clone3_spawn_sets_up_the_process_as_configured() {
    assert_spawned_as_configured(&[]);
}

#[test]
fn portable_spawn_sets_up_the_process_as_configured() {
    assert_spawned_as_configured(&[("CANDOR_CLONE3", "off")]);
}

#[test]
fn a_service_writing_to_stdout_outlives_a_killed_daemon_without_sigpipe() {
    // A shell writes as fast as it can; a shell's `echo` dies of SIGPIPE (default action) the
    // moment its stdout has no reader. The service holds a reader of its own output pipe, so
    // with the daemon gone it blocks once the pipe is full, and the kernel keeps its lines.
    let mut d = Daemon::start(
        r#"
[service.chatty]
command = ["/bin/sh", "-c", "i=0; while :; do echo line $i; i=$((i+1)); done"]
logs = { rate = 0 }
"#,
    );
    let pid = d.wait_state("chatty", "running", T)["pid"]
        .as_u64()
        .unwrap();
    wait_for("some lines stored", T, || {
        (d.status("chatty")["logs"]["lines"].as_u64()? > 100).then_some(())
    });
    d.kill_daemon();
    // Blocked on its full pipe: alive, asleep in write(2), not killed.
    wait_for("the writer blocked on its full pipe", T, || {
        (proc_state(pid).as_deref() == Some("S")).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(pid), "the service died once the daemon was gone");
    // SAFETY: kill(2) of the service's process group (it leads one: setsid).
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    wait_for("the service gone", T, || (!alive(pid)).then_some(()));
}
