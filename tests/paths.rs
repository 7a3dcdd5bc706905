//! How a client finds the daemon from any directory: `-c FILE` (the config's `[daemon] socket`,
//! else its state dir's `candor.sock`), `--user` (as `systemctl --user`), and, told nothing,
//! the usual places in order; when none has a socket, the error lists them all (exit 3).
//! `--system`'s paths (/var/lib/candor, /run/candor) are shared by everything on the machine:
//! they are unit tests of `candor_daemon::paths`, not scenarios.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use candor_scenarios::{candor_bin, Daemon};

const SLEEPER: &str = "[service.s]\ncommand = [\"sleep\", \"100000\"]\n";

/// `candor ARGS` run in `cwd`, where of the variables that place the daemon only `env` is set.
fn candor_in(cwd: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(candor_bin());
    cmd.args(args).current_dir(cwd).stdin(Stdio::null());
    for var in ["CANDOR_SOCKET", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run candor")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The service names of a successful `status --json`.
fn services(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "candor failed with {}: {}",
        out.status,
        stderr(out)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    list.as_array()
        .expect("an array")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn text(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

/// A daemon on this config text (no `[daemon]` section of the harness's), started as
/// `candor daemon -c CONFIG ARGS` with `env`, expected to listen on `socket`.
fn daemon(config: &str, args: &[&str], env: &[(&str, &Path)], socket: &Path) -> Daemon {
    let mut d = Daemon::unstarted("");
    std::fs::write(&d.config, config).expect("write config");
    let config = d.config.clone();
    let mut all = vec!["-c", text(&config)];
    all.extend_from_slice(args);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, text(v))).collect();
    d.spawn_with(&all, &env, socket);
    d
}

#[test]
fn a_client_anywhere_reaches_the_daemon_at_the_socket_its_config_names() {
    let dir = tempfile::tempdir().unwrap();
    // Relative paths in a config are its directory's, for the daemon and the client alike.
    let config = dir.path().join("candor.toml");
    std::fs::write(
        &config,
        format!("[daemon]\nstate_dir = \"state\"\nsocket = \"ctl/candor.sock\"\n\n{SLEEPER}"),
    )
    .unwrap();
    let socket = dir.path().join("ctl/candor.sock");
    let mut d = Daemon::unstarted("");
    d.spawn_with(&["-c", text(&config)], &[], &socket);
    assert_eq!(d.info()["state_dir"], text(&dir.path().join("state")));
    let elsewhere = tempfile::tempdir().unwrap();
    let cfg = text(&config);
    // Before or after the command, short or long.
    for args in [
        vec!["-c", cfg, "status", "--json"],
        vec!["status", "--json", "--config", cfg],
    ] {
        assert_eq!(
            services(&candor_in(elsewhere.path(), &args, &[])),
            ["s"],
            "{args:?}"
        );
    }
    let stop = candor_in(elsewhere.path(), &["stop", "s", "--wait", "-c", cfg], &[]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    assert_eq!(d.state("s"), "stopped");
    // Without -c, nothing there points at it.
    let lost = candor_in(elsewhere.path(), &["status"], &[]);
    assert_eq!(lost.status.code(), Some(3), "{}", stderr(&lost));
    d.shutdown();
}

#[test]
fn a_client_given_a_config_with_only_a_state_dir_reaches_the_socket_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut d = daemon(
        &format!("[daemon]\nstate_dir = \"{}\"\n\n{SLEEPER}", text(&state)),
        &[],
        &[],
        &state.join("candor.sock"),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let out = candor_in(
        elsewhere.path(),
        &["status", "--json", "-c", text(&d.config)],
        &[],
    );
    assert_eq!(services(&out), ["s"]);
    d.shutdown();
}

#[test]
fn an_invalid_config_given_to_a_client_is_a_usage_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[daemon]\nsocket = 7\n").unwrap();
    let out = candor_in(dir.path(), &["status", "-c", text(&bad)], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{} is not a valid config", text(&bad)))
            && err.contains(&format!("{}:2:", text(&bad))),
        "{err}"
    );
    let out = candor_in(dir.path(), &["logs", "s", "--json", "-c", text(&bad)], &[]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error");
    assert!(v["error"].as_str().unwrap().contains(text(&bad)), "{v}");
    assert!(v["details"][0].as_str().unwrap().contains("socket"), "{v}");
    let missing = dir.path().join("missing.toml");
    let out = candor_in(dir.path(), &["status", "-c", text(&missing)], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(text(&missing)), "{}", stderr(&out));
}

#[test]
fn daemon_and_client_with_user_meet_in_the_runtime_dir_like_systemctl_user() {
    let dir = tempfile::tempdir().unwrap();
    let state_home = dir.path().join("xdg-state");
    let runtime = dir.path().join("xdg-run");
    std::fs::create_dir(&runtime).unwrap();
    let env: &[(&str, &Path)] = &[
        ("XDG_STATE_HOME", &state_home),
        ("XDG_RUNTIME_DIR", &runtime),
    ];
    let mut d = daemon(
        SLEEPER,
        &["--user"],
        env,
        &runtime.join("candor/candor.sock"),
    );
    let info = d.info();
    assert_eq!(info["state_dir"], text(&state_home.join("candor")));
    assert_eq!(info["socket"], text(&runtime.join("candor/candor.sock")));
    let elsewhere = tempfile::tempdir().unwrap();
    let out = candor_in(elsewhere.path(), &["--user", "status", "--json"], env);
    assert_eq!(services(&out), ["s"]);
    // --user needs the runtime dir; without it, the client says so instead of guessing.
    let out = candor_in(
        elsewhere.path(),
        &["status", "--user"],
        &[("XDG_STATE_HOME", &state_home)],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("XDG_RUNTIME_DIR is not set"),
        "{}",
        stderr(&out)
    );
    // --system and --user together mean nothing.
    let out = candor_in(elsewhere.path(), &["status", "--user", "--system"], env);
    assert_eq!(out.status.code(), Some(2));
    d.shutdown();
}

#[test]
fn a_client_told_nothing_looks_in_the_current_dir_then_in_the_state_home() {
    // One daemon with the defaults and XDG_STATE_HOME set: $XDG_STATE_HOME/candor/candor.sock.
    let dir = tempfile::tempdir().unwrap();
    let state_home = dir.path().join("xdg-state");
    let mut far = daemon(
        "[service.far]\ncommand = [\"sleep\", \"100000\"]\n",
        &[],
        &[("XDG_STATE_HOME", &state_home)],
        &state_home.join("candor/candor.sock"),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let env: &[(&str, &Path)] = &[("XDG_STATE_HOME", &state_home)];
    let out = candor_in(elsewhere.path(), &["status", "--json"], env);
    assert_eq!(services(&out), ["far"]);
    // Another with its state in ./.candor of a project dir: from there, that one comes first.
    let project = tempfile::tempdir().unwrap();
    let config = project.path().join("candor.toml");
    std::fs::write(
        &config,
        "[daemon]\nstate_dir = \".candor\"\n\n[service.here]\ncommand = [\"sleep\", \"100000\"]\n",
    )
    .unwrap();
    let mut here = Daemon::unstarted("");
    here.spawn_with(
        &["-c", text(&config)],
        &[],
        &project.path().join(".candor/candor.sock"),
    );
    let out = candor_in(project.path(), &["status", "--json"], env);
    assert_eq!(services(&out), ["here"]);
    here.shutdown();
    far.shutdown();
}

#[test]
fn a_client_that_finds_no_socket_lists_every_place_it_looked_and_exits_3() {
    let cwd = tempfile::tempdir().unwrap();
    let state_home = cwd.path().join("nothing-here");
    let runtime = cwd.path().join("run");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let service = match root {
        true => PathBuf::from("/run/candor/candor.sock"),
        false => runtime.join("candor/candor.sock"),
    };
    assert!(
        !service.exists(),
        "{} exists on this machine: a client told nothing would rightly use it",
        service.display()
    );
    let env: &[(&str, &Path)] = &[
        ("XDG_STATE_HOME", &state_home),
        ("XDG_RUNTIME_DIR", &runtime),
    ];
    let looked = [
        cwd.path().join(".candor/candor.sock"),
        state_home.join("candor/candor.sock"),
        service,
    ];
    let out = candor_in(cwd.path(), &["status"], env);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    let at = |p: &PathBuf| {
        err.find(text(p))
            .unwrap_or_else(|| panic!("{} not in {err}", p.display()))
    };
    assert!(
        at(&looked[0]) < at(&looked[1]) && at(&looked[1]) < at(&looked[2]),
        "in the order looked: {err}"
    );
    for how in ["--socket", "$CANDOR_SOCKET", "-c FILE", "--system"] {
        assert!(err.contains(how), "{how} missing from {err}");
    }
    let out = candor_in(cwd.path(), &["events", "--json"], env);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the candor daemon"),
        "{v}"
    );
}
