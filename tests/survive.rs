//! Surviving the daemon's own death: a daemon killed with SIGKILL and started again with the
//! same arguments adopts what the earlier one left — same pids, no restarts, no lost lines —
//! and keeps its decisions: backoff due times, stops under way, failed verdicts, user stops.
//! Real daemons, real processes.

use std::time::{Duration, Instant, SystemTime};

use candor_scenarios::{
    alive, free_port, hold_reaping, proc_state, read_pids, read_stamps, reap_orphans,
    release_reaping, wait_for, wait_reaped, wait_rechecked, Daemon,
};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);
const NO_CGROUPS: &[(&str, &str)] = &[("CANDOR_CGROUP", "off")];

fn pid_of(s: &Value) -> u64 {
    s["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {s}"))
}

/// The one "adopted" event of `service`, once there is one.
fn adopted(d: &Daemon, service: &str) -> Value {
    wait_for(&format!("{service} adopted"), T, || {
        let mut a: Vec<Value> = d
            .events()
            .into_iter()
            .filter(|e| e["service"] == service && e["state"] == "adopted")
            .collect();
        assert!(a.len() <= 1, "adopted more than once: {a:?}");
        a.pop()
    })
}

/// A daemon running one plain service, `web`, killed once web's record says it is ready:
/// the daemon (to start again), web's pid, and its record.
fn web_recorded_then_daemon_killed(env: &[(&str, &str)]) -> (Daemon, u64, Value) {
    let mut d = Daemon::start_with_env(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
"#,
        env,
    );
    let old = pid_of(&d.wait_state("web", "running", T));
    let rec = d.wait_recorded_ready("web", old);
    d.kill_daemon();
    (d, old, rec)
}

fn kill(pid: u64, sig: i32) {
    // SAFETY: kill(2) of a pid (or, negative, a process group) this test owns.
    unsafe { libc::kill(pid as i32, sig) };
}

fn adopts_every_service_with_its_pid(env: &[(&str, &str)]) {
    let port = free_port();
    let mut d = Daemon::start_with_env(
        &format!(
            r#"
[service.plain]
command = ["{{zoo}}", "healthy"]

[service.notified]
command = ["{{zoo}}", "healthy"]
ready = "notify"

[service.web]
command = ["{{zoo}}", "healthy", "--port", "{port}"]
probe = {{ http = {{ port = {port}, path = "/health" }}, every = "300ms", start_delay = "500ms" }}
"#
        ),
        env,
    );
    let names = [
        ("plain", "started"),
        ("notified", "notify"),
        ("web", "probe"),
    ];
    let cgroups = env.is_empty() && d.has_cgroups();
    let containment = if cgroups { "cgroup" } else { "process-group" };
    assert_eq!(d.info()["containment"], containment);
    let mut pids = Vec::new();
    for (name, _) in names {
        let pid = pid_of(&d.wait_state(name, "running", T));
        d.wait_recorded_ready(name, pid);
        pids.push(pid);
    }
    let up = |d: &Daemon, name: &str| d.status(name)["uptime_s"].as_f64().unwrap();
    let uptimes: Vec<f64> = names.iter().map(|(name, _)| up(&d, name)).collect();
    d.kill_daemon();
    assert!(
        pids.iter().all(|&p| alive(p)),
        "services died with the daemon"
    );
    let restarted = SystemTime::now();
    d.spawn();
    // With a probe: `running` only on a probe of this daemon, re-checking until then.
    let web = wait_rechecked(&d, "web", pids[2], T);
    let probed = humantime::parse_rfc3339(web["probes"][0]["at"].as_str().unwrap()).unwrap();
    let second = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert!(second(probed) >= second(restarted), "a stale probe: {web}");
    assert_eq!(web["probes"][0]["ok"], true, "{web}");
    for (((name, via), pid), uptime) in names.into_iter().zip(pids).zip(uptimes) {
        let s = d.wait_state(name, "running", T);
        assert_eq!(pid_of(&s), pid, "{s}");
        assert!(
            s["uptime_s"].as_f64().unwrap() > uptime,
            "uptime counted anew: {s}"
        );
        assert_eq!(s["restarts"], 0, "{s}");
        assert_eq!(s["ready"]["via"], via, "{s}");
        let e = adopted(&d, name);
        assert_eq!(e["detail"]["adopted_pid"], pid, "{e}");
        assert_eq!(e["detail"]["alive"], true, "{e}");
        assert_eq!(
            e["reason"],
            format!(
                "pid {pid} kept running across the supervisor's restart; adopted, re-checking it"
            )
        );
        if cgroups {
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            assert!(cg.trim_end().ends_with(&format!("/{name}")), "{cg}");
        }
    }
}

#[test]
fn a_killed_daemon_adopts_its_services_in_cgroups() {
    adopts_every_service_with_its_pid(&[]);
}

#[test]
fn a_killed_daemon_adopts_its_services_in_process_groups() {
    adopts_every_service_with_its_pid(NO_CGROUPS);
}

/// A service whose process is killed while no daemon runs: the next daemon says so and
/// restarts it.
fn a_run_that_ended_unseen_is_restarted(env: &[(&str, &str)]) {
    reap_orphans();
    let (mut d, old, _) = web_recorded_then_daemon_killed(env);
    kill(old, libc::SIGKILL);
    wait_reaped(old);
    d.spawn();
    let s = wait_for("web restarted", T, || {
        let s = d.status("web");
        (s["state"] == "running" && s["pid"].as_u64() != Some(old)).then_some(s)
    });
    assert_eq!(s["restarts"], 1, "{s}");
    let unknown = "ended while the supervisor was down; exit status unknown";
    assert_eq!(s["last_exit"]["description"], unknown, "{s}");
    assert!(s["last_exit"]["code"].is_null() && s["last_exit"]["signal"].is_null());
    let e = adopted(&d, "web");
    assert_eq!(e["detail"]["alive"], false, "{e}");
    assert_eq!(
        e["reason"],
        format!("pid {old} of the last run is gone; finding out how it ended")
    );
    let said = |e: &Value| e["service"] == "web" && e["reason"].as_str().unwrap().contains(unknown);
    assert!(d.events().iter().any(said), "{:#?}", d.events());
}

#[test]
fn a_service_killed_while_the_daemon_was_down_is_restarted_in_cgroups() {
    a_run_that_ended_unseen_is_restarted(&[]);
}

#[test]
fn a_service_killed_while_the_daemon_was_down_is_restarted_in_process_groups() {
    a_run_that_ended_unseen_is_restarted(NO_CGROUPS);
}

#[test]
fn a_service_that_died_unreaped_is_never_shown_running() {
    // Killed while no daemon ran, and not yet reaped by its init when the next daemon looks:
    // a zombie, with the pid, start time and process group recorded. It is dead all the same.
    reap_orphans();
    let (mut d, old, _) = web_recorded_then_daemon_killed(NO_CGROUPS);
    hold_reaping(old);
    kill(old, libc::SIGKILL);
    wait_for("a zombie", T, || (proc_state(old)? == "Z").then_some(()));
    d.spawn();
    let lie = |s: &Value| s["state"] == "running" && s["pid"] == old;
    let first = d.status("web");
    release_reaping(old);
    assert!(!lie(&first), "a dead pid shown running: {first}");
    let s = wait_for("web restarted", T, || {
        let s = d.status("web");
        assert!(!lie(&s), "a dead pid shown running: {s}");
        (s["state"] == "running").then_some(s)
    });
    assert_eq!(s["restarts"], 1, "{s}");
    assert_eq!(adopted(&d, "web")["detail"]["alive"], false);
    // Reaped while the daemon watched it: the kernel may keep the real status for it.
    let how = s["last_exit"]["description"].as_str().unwrap_or_default();
    assert!(
        how == "killed by SIGKILL" || how.starts_with("ended while the supervisor was down"),
        "{s}"
    );
}

/// N of each stored stdout line `<prefix>N ...` of `service`, oldest first.
fn numbered(d: &Daemon, service: &str, prefix: &str) -> Vec<u64> {
    let out = d.ok(&[
        "logs", service, "--since", "10m", "--json", "--stream", "out",
    ]);
    let lines: Vec<Value> = serde_json::from_str(&out).expect("logs json");
    let number = |l: &Value| {
        l["line"]
            .as_str()?
            .strip_prefix(prefix)?
            .split(' ')
            .next()?
            .parse()
            .ok()
    };
    lines.iter().filter_map(number).collect()
}

#[test]
fn no_line_is_lost_across_a_killed_daemon_and_only_its_last_read_can_repeat() {
    let mut d = Daemon::start(
        r#"
[service.flood]
command = ["{zoo}", "log-flood", "--lines-per-sec", "200"]
logs = { rate = 0 }
"#,
    );
    let pid = pid_of(&d.wait_state("flood", "running", T));
    d.wait_recorded_ready("flood", pid);
    wait_for("some lines stored", T, || {
        (numbered(&d, "flood", "flood line ").len() > 50).then_some(())
    });
    let before = numbered(&d, "flood", "flood line ")
        .into_iter()
        .max()
        .unwrap();
    d.kill_daemon();
    std::thread::sleep(Duration::from_secs(1));
    d.spawn();
    // At 200 a second, a second's lines were written with nobody reading; wait for more.
    let all = wait_for("lines written after the restart", T, || {
        let n = numbered(&d, "flood", "flood line ");
        (n.iter().max() > Some(&(before + 300))).then_some(n)
    });
    let mut sorted = all.clone();
    sorted.sort_unstable();
    let last = *sorted.last().unwrap();
    let missing: Vec<u64> = (0..=last)
        .filter(|n| sorted.binary_search(n).is_err())
        .collect();
    assert!(missing.is_empty(), "lines 0..={last}: missing {missing:?}");
    // At least once, never lost (README, ARCHITECTURE): a killed daemon may have stored the
    // lines of the read it had looked at but not yet taken out of the pipe; the next one reads
    // them again. So the only lines stored twice are one run of consecutive lines — one read
    // of at most 64 KiB — and the store keeps every other line once.
    let mut doubled: Vec<u64> = sorted
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    doubled.dedup();
    if let (Some(first), Some(last_doubled)) = (doubled.first(), doubled.last()) {
        assert_eq!(
            doubled.len() as u64,
            last_doubled - first + 1,
            "lines stored twice are not one read's run: {doubled:?}"
        );
        assert!(
            doubled.len() <= 64 * 1024 / 20,
            "{} lines stored twice",
            doubled.len()
        );
        assert!(
            *first <= before + 1000,
            "the doubled run {first}.. is not the tail of what the killed daemon read (up to {before})"
        );
    }
    sorted.dedup();
    assert!(
        all.len() - sorted.len() <= doubled.len(),
        "a line stored three times"
    );
    assert_eq!(pid_of(&d.status("flood")), pid);
}

/// Bytes waiting in the pipe behind `/proc/<pid>/fd/1`, and its capacity (asked through a
/// reader opened just for that; it reads nothing).
fn pipe_fill(pid: u64) -> (usize, usize) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/{pid}/fd/1"))
    else {
        return (0, usize::MAX);
    };
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int; F_GETPIPE_SZ takes no argument.
    let size = unsafe {
        libc::ioctl(f.as_raw_fd(), libc::FIONREAD, &mut n);
        libc::fcntl(f.as_raw_fd(), libc::F_GETPIPE_SZ)
    };
    (n.max(0) as usize, size.max(0) as usize)
}

#[test]
fn output_beyond_a_full_pipe_waits_for_the_next_daemon() {
    // Once `go` holds a count, that many lines of 1000 bytes (a whole write each): twice what
    // the pipe holds, written while no daemon reads.
    let mut d = Daemon::start(
        r#"
[service.burst]
command = ["/bin/sh", "-c", "while [ ! -s {dir}/go ]; do sleep 0.02; done; n=$(cat {dir}/go); pad=$(printf '%0990d' 0); i=0; while [ $i -lt $n ]; do echo \"burst $i $pad\"; i=$((i+1)); done; touch {dir}/written; exec sleep 1000"]
logs = { rate = 0 }
"#,
    );
    let pid = pid_of(&d.wait_state("burst", "running", T));
    d.wait_recorded_ready("burst", pid);
    let lines = (2 * pipe_fill(pid).1 / 1000) as u64;
    d.kill_daemon();
    std::fs::write(d.path("go"), lines.to_string()).unwrap();
    // Full (to the page: a write of 1000 bytes needs room in one page) and no longer filling.
    let mut last = 0;
    wait_for("the pipe full, its writer blocked", T, || {
        std::thread::sleep(Duration::from_millis(100));
        let (bytes, size) = pipe_fill(pid);
        let steady = bytes == last && bytes >= size * 9 / 10;
        last = bytes;
        steady.then_some(())
    });
    assert!(!d.path("written").exists(), "all of it fit in the pipe?");
    assert!(alive(pid), "the service died on a full pipe");
    d.spawn();
    wait_for("the rest written", T, || {
        d.path("written").exists().then_some(())
    });
    let s = d.wait_state("burst", "running", T);
    assert_eq!(pid_of(&s), pid, "{s}");
    assert_eq!(s["restarts"], 0, "{s}");
    let numbers = wait_for("every line stored", T, || {
        let n = numbered(&d, "burst", "burst ");
        (n.len() as u64 >= lines).then_some(n)
    });
    assert_eq!(numbers, (0..lines).collect::<Vec<u64>>());
}

#[test]
fn a_backoff_keeps_its_due_time_across_a_killed_daemon() {
    let mut d = Daemon::start(
        r#"
[service.loop]
command = ["{zoo}", "crash-loop", "--after", "10ms", "--code", "3", "--stamp", "{dir}/stamps"]
backoff = { initial = "4s", max = "30s", reset_after = "60s" }
"#,
    );
    let s = d.wait_state("loop", "backoff", T);
    let (restarts, next) = (s["restarts"].clone(), s["next_start"].clone());
    d.wait_record("loop", |r| !r["saved"]["start"].is_null());
    d.kill_daemon();
    d.spawn();
    let s = d.status("loop");
    assert_eq!(s["state"], "backoff", "{s}");
    assert_eq!(s["restarts"], restarts, "{s}");
    assert!(
        s["reason"].as_str().unwrap().contains("exited with code 3"),
        "{s}"
    );
    let due = |v: &Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    let moved = due(&s["next_start"])
        .duration_since(due(&next))
        .unwrap_or_default();
    assert!(
        moved <= Duration::from_secs(1),
        "{next} became {}",
        s["next_start"]
    );
    // The next run starts no sooner than 4 s after the first one's exit.
    let stamps = wait_for("the second run", T, || {
        let st = read_stamps(&d.path("stamps"));
        (st.iter().filter(|s| s.0 == "start").count() >= 2).then_some(st)
    });
    let exit = stamps.iter().find(|s| s.0 == "exit").unwrap().1;
    let start = stamps.iter().filter(|s| s.0 == "start").nth(1).unwrap().1;
    assert!(
        start >= exit + 4_000_000_000,
        "started {} ms after the exit",
        (start - exit) / 1_000_000
    );
    wait_for("the restart counted", T, || {
        (d.status("loop")["restarts"].as_u64() == Some(restarts.as_u64().unwrap() + 1))
            .then_some(())
    });
}

#[test]
fn a_stop_under_way_still_ends_in_sigkill_after_a_killed_daemon() {
    reap_orphans();
    let mut d = Daemon::start(
        r#"
[service.stubborn]
command = ["{zoo}", "half-dead", "--pids", "{dir}/pids"]
stop = { signal = "SIGTERM", timeout = "3s" }
"#,
    );
    let main = pid_of(&d.wait_state("stubborn", "running", T));
    d.wait_recorded_ready("stubborn", main);
    let pids = read_pids(&d.path("pids"));
    let asked = Instant::now();
    d.ok(&["stop", "stubborn"]);
    // Killed right after the answer: the answer waits for the record.
    d.kill_daemon();
    assert!(
        pids.iter().all(|&p| alive(p)),
        "SIGTERM is ignored: they live on"
    );
    d.spawn();
    let s = d.status("stubborn");
    assert_eq!(s["state"], "stopping", "{s}");
    assert!(s["reason"].as_str().unwrap().contains("SIGKILL in"), "{s}");
    wait_for("both SIGKILLed", T, || {
        let any = pids.iter().any(|&p| alive(p));
        assert!(
            any || asked.elapsed() >= Duration::from_secs(3),
            "killed before its stop timeout"
        );
        (!any).then_some(())
    });
    let s = d.wait_state("stubborn", "stopped", T);
    assert_eq!(s["restarts"], 0, "{s}");
    if !s["last_exit"]["signal"].is_null() {
        assert_eq!(s["last_exit"]["signal"], "SIGKILL", "{s}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let s = d.status("stubborn");
    assert_eq!(s["state"], "stopped", "started again: {s}");
    assert!(s["pid"].is_null(), "{s}");
}

#[test]
fn an_answered_stop_survives_a_kill_right_after_the_answer() {
    reap_orphans();
    // Twenty crash loops keep the records' writer busy, as on any busy machine.
    let churn: String = (0..20)
        .map(|i| format!("[service.churn{i}]\ncommand = [\"{{zoo}}\", \"crash-loop\", \"--after\", \"5ms\"]\nbackoff = {{ initial = \"5ms\", max = \"10ms\" }}\n"))
        .collect();
    let mut d = Daemon::start(&format!(
        "[service.web]\ncommand = [\"{{zoo}}\", \"half-dead\"]\nstop = {{ timeout = \"300ms\" }}\n{churn}"
    ));
    for round in 0..12 {
        let pid = pid_of(&d.wait_state("web", "running", T));
        d.wait_recorded_ready("web", pid);
        d.ok(&["stop", "web"]);
        d.kill_daemon();
        d.spawn();
        let s = d.status("web");
        assert_ne!(
            s["state"], "running",
            "round {round}: an answered stop lost: {s}"
        );
        d.wait_state("web", "stopped", T);
        d.ok(&["start", "web"]);
    }
}

#[test]
fn failed_and_stopped_services_stay_so_across_a_killed_daemon() {
    let mut d = Daemon::start(
        r#"
[service.once]
command = ["{zoo}", "crash-loop", "--after", "10ms", "--code", "1", "--stamp", "{dir}/once"]
restart = "never"

[service.idle]
command = ["{zoo}", "healthy", "--stamp", "{dir}/idle"]

[service.marker]
command = ["{zoo}", "healthy"]
"#,
    );
    d.wait_state("once", "failed", T);
    d.wait_state("idle", "running", T);
    d.ok(&["stop", "idle", "--wait"]);
    let marker = pid_of(&d.wait_state("marker", "running", T));
    d.wait_record("once", |r| !r["saved"]["run"]["main_exit"].is_null());
    d.wait_record("idle", |r| {
        r["saved"]["wanted"] == false && !r["saved"]["run"]["ended"].is_null()
    });
    d.wait_recorded_ready("marker", marker);
    let runs = |d: &Daemon| {
        (
            d.status("once")["runs"].clone(),
            d.status("idle")["runs"].clone(),
        )
    };
    let before = runs(&d);
    d.kill_daemon();
    d.spawn();
    // Adopted in the same step as the boot: any start of the others would be asked by now.
    adopted(&d, "marker");
    let once = d.status("once");
    assert_eq!(once["state"], "failed", "{once}");
    assert!(
        once["reason"]
            .as_str()
            .unwrap()
            .contains("exited with code 1"),
        "{once}"
    );
    assert_eq!(once["last_exit"]["code"], 1, "{once}");
    let idle = d.status("idle");
    assert_eq!(idle["state"], "stopped", "{idle}");
    assert!(
        idle["reason"]
            .as_str()
            .unwrap()
            .starts_with("stopped by request"),
        "{idle}"
    );
    assert_eq!(runs(&d), before);
    std::thread::sleep(Duration::from_millis(500));
    for stamps in ["once", "idle"] {
        let started = read_stamps(&d.path(stamps))
            .iter()
            .filter(|s| s.0 == "start")
            .count();
        assert_eq!(started, 1, "{stamps} was started again");
    }
    assert_eq!(d.state("once"), "failed");
    assert_eq!(d.state("idle"), "stopped");
}

#[test]
fn a_corrupt_database_costs_no_service_its_adoption() {
    let (mut d, pid, _) = web_recorded_then_daemon_killed(&[]);
    // The database and its write-ahead log (left by the kill) both garbled.
    for file in ["candor.db", "candor.db-wal"] {
        let garbage = b"a disk gave up here; ".repeat(200);
        std::fs::write(d.path(&format!("state/{file}")), garbage).unwrap();
    }
    d.spawn();
    let s = d.wait_state("web", "running", T);
    assert_eq!(pid_of(&s), pid, "{s}");
    assert_eq!(s["restarts"], 0, "{s}");
    assert_eq!(adopted(&d, "web")["detail"]["adopted_pid"], pid);
    let info = d.info();
    let what = info["store"]["recovered"].as_str().unwrap_or_default();
    assert!(
        what.starts_with("candor.db could not be opened (")
            && what.contains("moved aside to candor.db.corrupt-"),
        "{info}"
    );
}

#[test]
fn a_reused_pid_is_neither_adopted_nor_signalled() {
    // Process groups only: the pid and its group match, only the start time tells them apart.
    reap_orphans();
    let (mut d, old, mut rec) = web_recorded_then_daemon_killed(NO_CGROUPS);
    kill(old, libc::SIGKILL);
    wait_reaped(old);
    // An unrelated process, leading its own group, that the record now names.
    let mut stranger = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let other = u64::from(stranger.id());
    assert_eq!(rec["process"]["pid"], old);
    assert_eq!(rec["saved"]["run"]["spawn"]["Started"]["pid"], old);
    rec["process"]["pid"] = other.into();
    rec["saved"]["run"]["spawn"]["Started"]["pid"] = other.into();
    std::fs::write(
        d.path("state/runs/web.json"),
        serde_json::to_vec(&rec).unwrap(),
    )
    .unwrap();
    d.spawn();
    let s = wait_for("web running in a run of its own", T, || {
        let s = d.status("web");
        (s["state"] == "running").then_some(s)
    });
    assert_ne!(pid_of(&s), other, "{s}");
    assert_eq!(s["restarts"], 1, "{s}");
    assert_eq!(adopted(&d, "web")["detail"]["alive"], false);
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(other), "the stranger was signalled");
    assert_eq!(
        proc_state(other).as_deref(),
        Some("S"),
        "the stranger was stopped"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
}

#[test]
fn a_lock_held_a_moment_after_a_kill_is_waited_for() {
    // A daemon killed while it spawned leaves a child between fork and exec that still holds
    // the state dir's lock for a moment. The next daemon waits for it instead of refusing.
    let mut d = Daemon::start("[service.web]\ncommand = [\"{zoo}\", \"healthy\"]\n");
    let pid = pid_of(&d.wait_state("web", "running", T));
    d.kill_daemon();
    use std::os::fd::AsRawFd;
    let lock = std::fs::File::open(d.path("state/daemon.lock")).expect("the lock file");
    // SAFETY: flock on an fd we own.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(lock);
    });
    d.spawn();
    release.join().unwrap();
    // The same run, taken over.
    assert_eq!(pid_of(&d.wait_state("web", "running", T)), pid);
}
