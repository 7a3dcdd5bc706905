//! Issue 26, points 3 and 11: an activated socket is never made, chmodded or removed through
//! a symlink, nor in a directory another user can write; and the keeper never waits for a
//! child's exec — one spawn or probe stuck before it (a hung network workdir) holds up no stop
//! and no reap, and fails at the exec deadline with that reason.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use candor_scenarios::*;

const T: Duration = Duration::from_secs(20);

fn mode_of(p: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// The first event of `service` whose reason contains `text`, if any.
fn event_with(d: &Daemon, service: &str, text: &str) -> Option<String> {
    d.events().into_iter().find_map(|e| {
        let reason = e["reason"].as_str()?;
        (e["service"] == service && reason.contains(text)).then(|| reason.to_string())
    })
}

/// A child process killed if the test ends (a failed assertion) before it is waited for.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_symlink_swapped_in_between_bind_and_chmod_is_never_followed() {
    let mut d = Daemon::unstarted(
        r#"
[service.api]
command = ["sleep", "3600"]
sockets = [{ path = "{dir}/run/api.sock", activate = true, mode = "0660" }]
backoff = { initial = "100ms" }
"#,
    );
    let path = d.path("run/api.sock");
    std::fs::create_dir(d.path("run")).unwrap();
    // What the attacker points the socket's name at: a file only root may read.
    let victim = d.path("run/api.sock.victim");
    std::fs::write(&victim, "root:secret\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The seam swaps the freshly bound socket for a symlink to the victim, between the bind
    // and the chmod (as a user who can write the directory would).
    d.env.push((
        "CANDOR_FAILPOINTS".into(),
        format!("socket-swap:{}", path.display()),
    ));
    d.spawn();

    let reason = wait_for("the start refused with why", T, || {
        event_with(&d, "api", "replaced by a symlink")
    });
    assert!(reason.contains(&path.display().to_string()), "{reason}");
    assert_eq!(mode_of(&victim), 0o600, "the victim's mode was changed");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:secret\n");
    // Never removed either: a symlink is not a socket of ours.
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
    let s = d.status("api");
    assert_ne!(s["state"], "running", "{s}");

    // The owner of the directory takes the symlink away: the service gets its socket.
    std::fs::remove_file(&path).unwrap();
    let s = wait_for("the service running with its socket", T, || {
        let s = d.status("api");
        if s["state"] == "failed" {
            d.ok(&["start", "api"]);
        }
        (s["state"] == "running").then_some(s)
    });
    assert!(s["pid"].as_u64().is_some(), "{s}");
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(mode_of(&victim), 0o600);
    std::os::unix::net::UnixStream::connect(&path).expect("the socket accepts");
}

#[test]
fn a_socket_directory_another_user_can_write_is_refused_and_roots_is_fine() {
    let d = Daemon::unstarted(
        r#"
[service.theirs]
command = ["sleep", "3600"]
sockets = [{ path = "{dir}/theirs/api.sock", activate = true, mode = "0660" }]
backoff = { initial = "100ms" }

[service.ours]
command = ["sleep", "3600"]
sockets = [{ path = "{dir}/ours/api.sock", activate = true, mode = "0660" }]
"#,
    );
    let theirs = d.path("theirs");
    let ours = d.path("ours");
    for dir in [&theirs, &ours] {
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Owned by nobody (uid 65534), not by root or the service's user: whoever that is could
    // swap the socket for a symlink.
    let chown = std::process::Command::new("chown")
        .arg("65534")
        .arg(&theirs)
        .status()
        .unwrap();
    if !chown.success() || std::fs::metadata(&theirs).unwrap().uid() != 65534 {
        eprintln!("skipped: cannot give a directory away here (needs root)");
        return;
    }
    let mut d = d;
    d.spawn();
    d.wait_state("ours", "running", T);
    assert_eq!(mode_of(&ours.join("api.sock")), 0o660);
    let reason = wait_for("the start refused with why", T, || {
        event_with(&d, "theirs", "can be written by")
    });
    for part in [
        &theirs.display().to_string() as &str,
        "owner uid 65534",
        "mode 0755",
        "chown/chmod it, or move the socket",
    ] {
        assert!(reason.contains(part), "{part:?} not in: {reason}");
    }
    assert!(
        !theirs.join("api.sock").exists(),
        "nothing made in that directory"
    );
    assert_ne!(d.status("theirs")["state"], "running");
}

#[test]
fn a_spawn_and_a_reload_command_stuck_before_exec_hold_up_no_stop_and_no_reap() {
    let base = r#"
[service.stubborn]
command = ["{zoo}", "half-dead"]
stop = { signal = "SIGTERM", timeout = "1s" }

[service.crasher]
command = ["{zoo}", "crash-loop", "--after", "300ms", "--code", "3"]
backoff = { initial = "100ms", max = "200ms" }

[service.reloadable]
command = ["sleep", "3600"]
reload = ["/bin/true", "reload"]
stop = { timeout = "30s" }
"#;
    let mut d = Daemon::unstarted(base);
    // The seams: the child of `stuck`'s first spawn, and of the first `/bin/true` run as an exec
    // probe, stop before entering their workdir, as on a hung NFS mount; removing `marked`'s
    // readiness marker before its first spawn never ends.
    d.env.push((
        "CANDOR_FAILPOINTS".into(),
        "exec-hang:stuck,probe-hang:/bin/true,paths-hang:marked".into(),
    ));
    d.spawn();
    for s in ["stubborn", "crasher", "reloadable"] {
        d.wait_state(s, "running", T);
    }

    // New services whose spawn hangs: before exec, and while its marker is removed.
    d.write_config(&format!(
        "{base}\n[service.stuck]\ncommand = [\"sleep\", \"3600\"]\nworkdir = \"/\"\n\n[service.marked]\ncommand = [\"sleep\", \"3600\"]\nready = {{ file = \"{{dir}}/marked.ready\" }}\n"
    ));
    d.ok(&["reload"]);
    // And a reload command that hangs the same way (through the exec-probe path).
    let mut reload = KillOnDrop(Some(
        std::process::Command::new(candor_bin())
            .args(["reload", "reloadable"])
            .env("CANDOR_SOCKET", &d.socket)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    wait_for("the stuck spawns under way", T, || {
        (d.status("stuck")["state"] == "starting" && d.status("marked")["state"] == "starting")
            .then_some(())
    });
    let runs_before = d.status("crasher")["runs"].as_u64().unwrap();

    // While both hang: a stop still reaches SIGKILL at its stop.timeout...
    let out = d.ok(&["stop", "stubborn", "--wait"]);
    assert!(out.contains("stubborn: stopped"), "{out}");
    wait_for("the escalation recorded", T, || {
        event_with(&d, "stubborn", "killed with SIGKILL")
    });
    // ...and exits are still reaped (the crasher's runs end and are started again).
    wait_for("the crasher reaped and restarted", T, || {
        (d.status("crasher")["runs"].as_u64()? >= runs_before + 2).then_some(())
    });
    // All of that while the stuck spawn had not yet reached its exec deadline.
    let stuck = d.status("stuck");
    assert_eq!(stuck["state"], "starting", "{stuck}");
    let marked = d.status("marked");
    assert_eq!(marked["state"], "starting", "{marked}");
    assert!(
        event_with(&d, "stuck", "did not reach exec").is_none(),
        "the stuck spawn failed before the stop and the reaps: the keeper waited for it"
    );

    // At the exec deadline it is killed, and the start fails with that reason.
    let reason = wait_for("the stuck spawn failed at its exec deadline", T, || {
        event_with(&d, "stuck", "did not reach exec within 10s")
    });
    assert!(reason.contains("killed"), "{reason}");
    d.wait_state("stuck", "failed", T);
    // The failpoint fired once: the next start works.
    d.ok(&["start", "stuck", "--wait"]);
    d.wait_state("stuck", "running", T);

    let reason = wait_for("the marker's removal given up at the deadline", T, || {
        event_with(&d, "marked", "did not end within 10s")
    });
    assert!(reason.contains("readiness markers"), "{reason}");
    d.wait_state("marked", "failed", T);
    d.ok(&["start", "marked"]);
    // Its marker removed (it is spawned): the service says it is ready.
    wait_for("marked spawned", T, || d.status("marked")["pid"].as_u64());
    std::fs::write(d.path("marked.ready"), "").unwrap();
    d.wait_state("marked", "running", T);

    // The reload command: killed at its exec deadline too, with the same reason.
    let out = reload.0.take().unwrap().wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("did not reach exec within 10s"), "{text}");
    // And the next one runs.
    d.ok(&["reload", "reloadable"]);
}
