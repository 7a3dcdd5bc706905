//! The daemon and its terminal: `candor up` started outside the terminal's foreground (under
//! `timeout`, or with `&`) is never frozen by job control — it runs without the live view,
//! printing plain lines — and answers its clients.

use std::process::Command;
use std::time::{Duration, Instant};

use candor_scenarios::{proc_state, Daemon};

#[test]
fn up_in_a_background_process_group_runs_without_the_view_and_is_never_stopped() {
    if !candor_scenarios::tool(
        "tmux",
        &["-V"],
        "tmux is not installed (scripts/test.sh installs Debian's tmux as root)",
    ) {
        return;
    }
    let d = Daemon::unstarted(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
"#,
    );
    let pidfile = d.path("up.pid");
    // `timeout` runs its command in a process group of its own: on the terminal tmux gives
    // it, that group is not the foreground one.
    let cmd = format!(
        "timeout 60 sh -c 'echo $$ > {pid}; exec {candor} up -c {config} --socket {socket}'; sleep 100",
        pid = pidfile.display(),
        candor = candor_scenarios::candor_bin().display(),
        config = d.config.display(),
        socket = d.socket.display(),
    );
    let server = format!("candor-bg-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-L")
            .arg(&server)
            .args(args)
            .output()
            .expect("tmux")
    };
    let r = tmux(&[
        "new-session",
        "-d",
        "-s",
        "bg",
        "-x",
        "120",
        "-y",
        "30",
        &cmd,
    ]);
    assert!(r.status.success(), "{r:?}");
    struct Kill<F: Fn()>(F);
    impl<F: Fn()> Drop for Kill<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _server = Kill(|| {
        let _ = tmux(&["kill-server"]);
    });
    let screen =
        || String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "bg"]).stdout).into_owned();

    let pid: u64 = candor_scenarios::wait_for("up's pid", Duration::from_secs(20), || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    });
    // Until the service runs, the process must never be stopped (state T): a stopped daemon
    // would hang every client, so its state is looked at before each question.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let state = proc_state(pid);
        assert_ne!(
            state.as_deref(),
            Some("T"),
            "candor up was stopped by job control; the terminal:\n{}",
            screen()
        );
        assert!(state.is_some(), "candor up exited");
        if d.socket.exists() {
            let s = d.cli(&["status", "web", "--json"]);
            if s.status.success() && String::from_utf8_lossy(&s.stdout).contains("\"running\"") {
                break;
            }
        }
        assert!(Instant::now() < end, "web never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without a view, how to reach the daemon from another terminal is a plain line too.
    let reach = format!("export CANDOR_SOCKET={}", d.socket.display());
    candor_scenarios::wait_for("how to reach it", Duration::from_secs(10), || {
        let joined = tmux(&["capture-pane", "-p", "-J", "-t", "bg"]).stdout;
        String::from_utf8_lossy(&joined)
            .contains(&reach)
            .then_some(())
    });
    // Plain lines instead of the view: the events, as `candor daemon` prints them.
    candor_scenarios::wait_for("a plain event line", Duration::from_secs(10), || {
        Some(screen()).filter(|t| t.contains("web") && t.contains("running"))
    });
    d.ok(&["shutdown"]);
    candor_scenarios::wait_for("up to exit", Duration::from_secs(30), || {
        (!candor_scenarios::alive(pid)).then_some(())
    });
}
