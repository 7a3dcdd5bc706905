//! Adoption checks the whole spec: a daemon started again (after a kill -9 or `candor
//! upgrade`) that finds a live run started from another config — env, an env file's
//! contents, workdir — restarts it with the config and says why, or with
//! `adopt_changed = "keep"` keeps it and says it predates the config until a reload or a
//! restart applies it. And one state dir is one instance however it is spelt.

use std::time::Duration;

use candor_scenarios::{alive, wait_for, Daemon};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

fn pid_of(s: &Value) -> u64 {
    s["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {s}"))
}

/// The value of `var` in the environment `pid` was started with.
fn environ(pid: u64, var: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(&format!("{var}=")).map(|v| v.to_string())
    })
}

/// Events of `service` in `state`, oldest first.
fn events_of(d: &Daemon, service: &str, state: &str) -> Vec<Value> {
    d.events()
        .into_iter()
        .filter(|e| e["service"] == service && e["state"] == state)
        .collect()
}

/// Wait until `service` runs as a pid other than `old`; the new pid.
fn replaced(d: &Daemon, service: &str, old: u64) -> u64 {
    wait_for(&format!("{service} running as another pid"), T, || {
        let s = d.status(service);
        (s["state"] == "running" && s["pid"].as_u64().is_some_and(|p| p != old)).then(|| pid_of(&s))
    })
}

/// A service `app` (and an unchanged `steady`) running from `config`, killed with the
/// daemon once both are recorded ready: the daemon, app's pid, steady's pid.
fn running_then_daemon_killed(config: &str) -> (Daemon, u64, u64) {
    let mut d = Daemon::start(config);
    let app = pid_of(&d.wait_state("app", "running", T));
    let steady = pid_of(&d.wait_state("steady", "running", T));
    d.wait_recorded_ready("app", app);
    d.wait_recorded_ready("steady", steady);
    d.kill_daemon();
    assert!(alive(app) && alive(steady), "services died with the daemon");
    (d, app, steady)
}

const STEADY: &str = r#"
[service.steady]
command = ["{zoo}", "healthy"]
"#;

/// After the daemon is back: the old run of app was stopped and a new one runs; the adopted
/// event and the stop name `parts`; steady was adopted as it was. The new pid.
fn restarted_for(d: &Daemon, old: u64, steady: u64, parts: &str) -> u64 {
    let new = replaced(d, "app", old);
    wait_for("the old run to end", T, || (!alive(old)).then_some(()));
    let adopted = events_of(d, "app", "adopted");
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    let a = &adopted[0];
    assert_eq!(a["detail"]["adopted_pid"], old, "{a}");
    let want: Vec<&str> = parts.split(", ").collect();
    assert_eq!(a["detail"]["changed"], serde_json::json!(want), "{a}");
    let why = format!("config changed while the supervisor was down: {parts}");
    assert!(a["reason"].as_str().unwrap().contains(&why), "{a}");
    let stopping = events_of(d, "app", "stopping");
    assert!(
        stopping
            .iter()
            .any(|e| e["reason"].as_str().unwrap().starts_with(&why)),
        "the stop says why: {stopping:?}"
    );
    // What did not change kept running, not restarted.
    let s = d.wait_state("steady", "running", T);
    assert_eq!(pid_of(&s), steady, "{s}");
    assert_eq!(s["restarts"], 0, "{s}");
    assert!(events_of(d, "steady", "stopping").is_empty());
    new
}

#[test]
fn an_env_changed_while_the_daemon_was_down_restarts_the_run_with_the_new_env() {
    let app = |mode: &str| {
        format!(
            "[service.app]\ncommand = [\"{{zoo}}\", \"healthy\"]\nenv = {{ MODE = \"{mode}\" }}\n{STEADY}"
        )
    };
    let (mut d, old, steady) = running_then_daemon_killed(&app("A"));
    assert_eq!(environ(old, "MODE").as_deref(), Some("A"));
    d.write_config(&app("B"));
    d.spawn();
    let new = restarted_for(&d, old, steady, "env");
    assert_eq!(environ(new, "MODE").as_deref(), Some("B"));
    // The new run is the configured one: a reload calls it unchanged.
    let out = d.ok(&["reload"]);
    assert!(out.contains("changed -;"), "{out}");
    // The record names the digest of each part, never a value.
    let rec = d.wait_record("app", |r| r["process"]["pid"] == new);
    let digest = &rec["saved"]["run"]["digest"];
    assert!(digest["env"].as_str().is_some(), "{rec}");
    assert!(
        !rec.to_string().contains("MODE"),
        "an env value in the record: {rec}"
    );
}

#[test]
fn a_workdir_changed_while_the_daemon_was_down_restarts_the_run_there() {
    let app = |sub: &str| {
        format!("[service.app]\ncommand = [\"{{zoo}}\", \"healthy\"]\nworkdir = \"{{dir}}/{sub}\"\n{STEADY}")
    };
    let mut d = Daemon::unstarted(&app("a"));
    for sub in ["a", "b"] {
        std::fs::create_dir_all(d.path(sub)).unwrap();
    }
    d.spawn();
    let old = pid_of(&d.wait_state("app", "running", T));
    let steady = pid_of(&d.wait_state("steady", "running", T));
    d.wait_recorded_ready("app", old);
    d.wait_recorded_ready("steady", steady);
    d.kill_daemon();
    d.write_config(&app("b"));
    d.spawn();
    let new = restarted_for(&d, old, steady, "workdir");
    let cwd = std::fs::read_link(format!("/proc/{new}/cwd")).unwrap();
    assert_eq!(cwd, d.path("b"));
}

#[test]
fn an_env_file_edited_while_the_daemon_was_down_restarts_the_run() {
    let config = "[service.app]\ncommand = [\"{zoo}\", \"healthy\"]\nenv_file = \"{dir}/app.env\"\n"
        .to_string() + STEADY;
    let mut d = Daemon::unstarted(&config);
    std::fs::write(d.path("app.env"), "TOKEN=s3cr3t-one\n").unwrap();
    d.spawn();
    let old = pid_of(&d.wait_state("app", "running", T));
    let steady = pid_of(&d.wait_state("steady", "running", T));
    d.wait_recorded_ready("app", old);
    d.wait_recorded_ready("steady", steady);
    d.kill_daemon();
    // The config file is the same; only what the env file holds changed.
    std::fs::write(d.path("app.env"), "TOKEN=s3cr3t-two\n").unwrap();
    d.spawn();
    let new = restarted_for(&d, old, steady, "env");
    assert_eq!(environ(new, "TOKEN").as_deref(), Some("s3cr3t-two"));
    let log = d.log();
    assert!(!log.contains("s3cr3t"), "{log}");
}

#[test]
fn a_config_changed_before_an_upgrade_restarts_the_run_after_it() {
    let app = |mode: &str| {
        format!(
            "[service.app]\ncommand = [\"{{zoo}}\", \"healthy\"]\nenv = {{ MODE = \"{mode}\" }}\n{STEADY}"
        )
    };
    let d = Daemon::start(&app("A"));
    let old = pid_of(&d.wait_state("app", "running", T));
    let steady = pid_of(&d.wait_state("steady", "running", T));
    let incarnation = d.info()["incarnation"].clone();
    // Edited but not reloaded: the upgraded daemon reads it.
    d.write_config(&app("B"));
    let out = d.ok(&["upgrade"]);
    assert!(out.starts_with("upgraded: pid "), "{out}");
    assert_ne!(d.info()["incarnation"], incarnation);
    let new = restarted_for(&d, old, steady, "env");
    assert_eq!(environ(new, "MODE").as_deref(), Some("B"));
}

#[test]
fn with_adopt_changed_keep_the_old_run_stays_saying_so_until_a_reload_restarts_it() {
    let app = |mode: &str| {
        format!(
            "adopt_changed = \"keep\"\n\n[service.app]\ncommand = [\"{{zoo}}\", \"healthy\"]\nenv = {{ MODE = \"{mode}\" }}\n{STEADY}"
        )
    };
    let (mut d, old, steady) = running_then_daemon_killed(&app("A"));
    d.write_config(&app("B"));
    d.spawn();
    let s = d.wait_state("app", "running", T);
    assert_eq!(pid_of(&s), old, "kept: {s}");
    assert_eq!(
        s["reason"],
        format!("running as pid {old}, ready via started (started from an older config: env differ; restart it to apply)")
    );
    let adopted = events_of(&d, "app", "adopted");
    assert_eq!(adopted[0]["detail"]["changed"], serde_json::json!(["env"]));
    assert!(
        adopted[0]["reason"]
            .as_str()
            .unwrap()
            .contains("kept (adopt_changed = \"keep\")"),
        "{adopted:?}"
    );
    assert!(alive(old));
    assert_eq!(environ(old, "MODE").as_deref(), Some("A"));

    // The config the daemon read is not what the run has: reload restarts it.
    let out = d.ok(&["reload"]);
    assert!(out.contains("changed app;"), "{out}");
    assert!(out.contains("note: app: changed: env"), "{out}");
    let new = replaced(&d, "app", old);
    assert_eq!(environ(new, "MODE").as_deref(), Some("B"));
    let s = d.status("app");
    assert!(
        !s["reason"].as_str().unwrap().contains("older config"),
        "{s}"
    );
    assert_eq!(pid_of(&d.status("steady")), steady);
}

/// Three spellings of one state dir — as typed, with a trailing `/`, through a symlink — are
/// one instance: the same cgroup root, and the same notify socket, so the run is adopted and
/// its watchdog pings still arrive.
#[test]
fn every_spelling_of_the_state_dir_is_one_instance() {
    let mut d = Daemon::unstarted(
        r#"
[service.pinger]
command = ["{zoo}", "watchdog-stall", "--after", "1h", "--every", "100ms"]
watchdog = "1s"
"#,
    );
    let state = d.path("state");
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::symlink(&state, d.path("link")).unwrap();
    let spellings = [
        state.display().to_string(),
        format!("{}/", state.display()),
        d.path("link").display().to_string(),
    ];
    let (config, socket) = (d.config.display().to_string(), d.socket.clone());
    let mut pid = None;
    let mut root = None;
    for (i, spelling) in spellings.iter().enumerate() {
        let args = [
            "-c",
            config.as_str(),
            "--state-dir",
            spelling.as_str(),
            "--socket",
            socket.to_str().unwrap(),
        ];
        d.spawn_with(&args, &[], &socket);
        let info = d.info();
        // The same cgroup root (or process groups alike, where cgroups are not writable).
        let detail = info["containment_detail"].clone();
        assert_eq!(
            *root.get_or_insert(detail.clone()),
            detail,
            "{spelling}: {info}"
        );
        let s = d.wait_state("pinger", "running", T);
        let now = pid_of(&s);
        assert_eq!(*pid.get_or_insert(now), now, "{spelling}: not adopted: {s}");
        assert_eq!(info["state_dir"], state.display().to_string(), "{info}");
        if i > 0 {
            let adopted = events_of(&d, "pinger", "adopted");
            assert_eq!(adopted.len(), i, "{adopted:?}");
            assert_eq!(adopted[i - 1]["detail"]["alive"], true, "{adopted:?}");
            // Its pings reach this daemon: three watchdog periods pass without a miss.
            std::thread::sleep(Duration::from_secs(3));
            let s = d.status("pinger");
            assert_eq!(s["state"], "running", "{spelling}: {s}");
            assert_eq!(pid_of(&s), now, "{s}");
            assert_eq!(s["restarts"], 0, "{s}");
            assert!(events_of(&d, "pinger", "unhealthy").is_empty());
        }
        d.wait_record("pinger", |r| r["process"]["pid"] == now);
        d.kill_daemon();
    }
    d.spawn_with(
        &[
            "-c",
            &config,
            "--state-dir",
            &spellings[0],
            "--socket",
            socket.to_str().unwrap(),
        ],
        &[],
        &socket,
    );
    assert_eq!(pid_of(&d.wait_state("pinger", "running", T)), pid.unwrap());
    d.shutdown();
}

/// The cgroup instance name earlier versions gave the state dir as typed (FNV-1a of its bytes).
fn instance_as_typed(state_dir: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in state_dir.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    let base: String = std::path::Path::new(state_dir)
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| {
            s.to_string_lossy()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(24)
                .collect()
        })
        .unwrap_or_default();
    format!("{base}-{h:016x}")
}

/// A run an earlier version left in the cgroup it named after the state dir as typed
/// (`…/state/`) is moved to the canonical instance and adopted, not left running unseen.
#[test]
fn runs_in_the_cgroup_of_an_earlier_versions_spelling_are_taken_over() {
    let mut d = Daemon::unstarted("[service.app]\ncommand = [\"{zoo}\", \"healthy\"]\n");
    let (config, socket) = (d.config.display().to_string(), d.socket.clone());
    let state = d.path("state").display().to_string();
    let start = |d: &mut Daemon, spelling: &str| {
        let args = [
            "-c",
            &config,
            "--state-dir",
            spelling,
            "--socket",
            socket.to_str().unwrap(),
        ];
        d.spawn_with(&args, &[], &socket);
    };
    start(&mut d, &state);
    if !d.has_cgroups() {
        return;
    }
    let detail = d.info()["containment_detail"].as_str().unwrap().to_string();
    let root = std::path::PathBuf::from(detail.strip_prefix("cgroup v2 at ").unwrap());
    let pid = pid_of(&d.wait_state("app", "running", T));
    d.wait_recorded_ready("app", pid);
    d.kill_daemon();
    // Where an earlier version, started with `--state-dir …/state/`, would have put it.
    let typed = format!("{state}/");
    let old = root.parent().unwrap().join(instance_as_typed(&typed));
    std::fs::create_dir_all(old.join("app")).unwrap();
    std::fs::write(old.join("app/cgroup.procs"), pid.to_string()).unwrap();
    let cg = || std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg().contains(old.file_name().unwrap().to_str().unwrap()),
        "{}",
        cg()
    );

    start(&mut d, &typed);
    let s = d.wait_state("app", "running", T);
    assert_eq!(pid_of(&s), pid, "not adopted: {s}");
    assert_eq!(s["restarts"], 0, "{s}");
    let rel = root.file_name().unwrap().to_str().unwrap();
    assert!(
        cg().trim_end().ends_with(&format!("/{rel}/app")),
        "{}",
        cg()
    );
    assert!(!old.exists(), "{} left behind", old.display());
    d.shutdown();
    assert!(!alive(pid), "stopped with the daemon");
}
