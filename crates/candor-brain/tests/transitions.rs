//! Every transition of the F-rows as input sequences, with the effects and derived states
//! expected after each: no processes, no sleeps.

mod sim;

use candor_brain::{Effect, Refusable, Reply, Request, ServiceState::*};
use candor_core::ExitStatus;
use sim::{count, ms, secs, Sim};

const ONE: &str = r#"
[service.api]
command = ["/bin/api"]
backoff = { initial = "100ms", max = "400ms", reset_after = "10s" }
stop = { timeout = "5s" }
"#;

#[test]
fn boot_sweeps_then_spawns_every_service() {
    let s = Sim::new(ONE);
    assert!(matches!(&s.all[0], Effect::Sweep { keep } if keep == &["api".to_string()]));
    assert_eq!(s.spawn_asked("api"), Some(1));
    assert_eq!(s.state("api"), Starting);
    // The board is published before anything else can read it.
    assert!(s.last.contains(&Effect::Publish));
}

#[test]
fn crash_backoff_start_doubles_up_to_max_and_counts_restarts() {
    let mut s = Sim::new(ONE);
    s.up("api");
    let mut delays = Vec::new();
    for i in 0..5 {
        s.exits("api", ExitStatus::Code(3));
        assert_eq!(s.state("api"), Backoff);
        assert_eq!(s.spawn_asked("api"), None, "no spawn before the delay");
        let due = s.timers()[0];
        let delay = due.since(s.now.mono);
        delays.push(delay.as_millis());
        assert!(
            s.reason("api")
                .starts_with("exited with code 3 after 0ms; restarting in"),
            "{}",
            s.reason("api")
        );
        // A tick just before the due time changes nothing.
        s.advance(delay - ms(1));
        assert_eq!(s.spawn_asked("api"), None);
        s.advance(ms(1));
        assert_eq!(s.spawn_asked("api"), Some(i + 2));
        s.spawned("api");
    }
    assert_eq!(delays, vec![100, 200, 400, 400, 400]);
    assert_eq!(s.facts.get("api").unwrap().restarts, 5);
}

#[test]
fn a_good_run_resets_the_backoff_and_restarts_at_once() {
    let mut s = Sim::new(ONE);
    s.up("api");
    s.exits("api", ExitStatus::Code(1));
    s.advance(ms(100));
    s.spawned("api");
    // This run lasts longer than reset_after: the restart is immediate, the streak reset.
    s.advance(secs(11));
    s.exits("api", ExitStatus::Code(1));
    assert_eq!(s.spawn_asked("api"), Some(3), "restarted in the same step");
    let backoff = s.notes().into_iter().find(|n| n.1 == "backoff").unwrap();
    assert_eq!(backoff.2, "exited with code 1 after 11s; restarting now");
    assert_eq!(s.facts.get("api").unwrap().streak, 0);
    // The next quick exit starts again from `initial`.
    s.spawned("api");
    s.exits("api", ExitStatus::Code(1));
    assert_eq!(s.timers(), vec![s.in_secs(ms(100))]);
}

#[test]
fn restart_policies_table() {
    let cases = [
        ("always", ExitStatus::Code(0), Backoff, ""),
        (
            "on-failure",
            ExitStatus::Code(0),
            Exited,
            "finished successfully (exited with code 0 after 0ms)",
        ),
        ("on-failure", ExitStatus::Signal(9), Backoff, ""),
        (
            "never",
            ExitStatus::Code(2),
            Failed,
            "exited with code 2 and restart = \"never\"; fix the cause, then `candor start api`",
        ),
        (
            "never",
            ExitStatus::Code(0),
            Exited,
            "finished successfully (exited with code 0 after 0ms)",
        ),
    ];
    for (policy, status, state, reason) in cases {
        let mut s = Sim::new(&format!(
            "[service.api]\ncommand = [\"/bin/api\"]\nrestart = \"{policy}\"\n"
        ));
        s.up("api");
        s.exits("api", status);
        assert_eq!(
            s.state("api"),
            state,
            "{policy} {status:?}: {}",
            s.reason("api")
        );
        if !reason.is_empty() {
            assert_eq!(s.reason("api"), reason);
        }
    }
}

#[test]
fn spawn_failure_is_failed_with_the_keepers_reason_and_no_retry_loop() {
    let mut s = Sim::new(ONE);
    let run_id = s.run_id("api");
    s.feed(candor_brain::Input::SpawnFailed {
        service: "api".into(),
        run_id,
        error: "command /bin/api not found; check `command`".into(),
    });
    assert_eq!(s.state("api"), Failed);
    assert_eq!(
        s.reason("api"),
        "command /bin/api not found; check `command`"
    );
    s.advance(secs(60));
    assert_eq!(s.spawns("api"), 1);
}

#[test]
fn stop_escalation_timeline_in_the_reason_and_an_event_when_sigkill_was_needed() {
    let mut s = Sim::new(ONE);
    s.up("api");
    assert_eq!(s.request(Request::Stop("api".into())), Reply::Done);
    let (run_id, timeout) = s.stop_asked("api").unwrap();
    assert_eq!((run_id, timeout), (1, secs(5)));
    // The kill deadline is armed with the stop.
    assert_eq!(s.timers(), vec![s.in_secs(secs(5))]);
    assert_eq!(s.state("api"), Stopping);
    assert_eq!(
        s.reason("api"),
        "stop requested: SIGTERM sent to the whole group, SIGKILL in 5s"
    );
    s.advance(secs(2));
    assert_eq!(
        s.reason("api"),
        "stop requested: SIGTERM sent to the whole group, SIGKILL in 3s"
    );
    s.advance(secs(3));
    assert_eq!(
        s.reason("api"),
        "stop requested: SIGTERM was ignored for 5s, SIGKILL sent to the whole group; waiting for it to exit"
    );
    s.emptied("api", true);
    assert_eq!(s.state("api"), Stopped);
    // The state says how the stop ended, not only the event.
    assert_eq!(
        s.reason("api"),
        "stopped by request: it did not stop within 5s of SIGTERM, so the whole group was killed with SIGKILL; `candor start api` starts it"
    );
    assert!(s.notes().iter().any(
        |n| n.2 == "did not stop within 5s of SIGTERM; the whole group was killed with SIGKILL"
    ));
    // A stopped service stays down.
    s.advance(secs(60));
    assert_eq!(s.spawns("api"), 1);
}

#[test]
fn leftovers_of_a_main_exit_are_stopped_before_the_restart() {
    let mut s = Sim::new(ONE);
    s.up("api");
    let run_id = s.run_id("api");
    s.feed(candor_brain::Input::Exited {
        oom_kills: 0,
        service: "api".into(),
        run_id,
        status: ExitStatus::Code(1),
        at: s.now.mono,
        group_empty: false,
        escalated: false,
    });
    assert_eq!(s.state("api"), Stopping);
    assert_eq!(
        s.reason("api"),
        "main process exited with code 1; stopping the processes it left in its group"
    );
    s.advance(secs(1));
    assert_eq!(s.spawns("api"), 1, "never two copies");
    s.emptied("api", false);
    assert_eq!(s.state("api"), Backoff);
}

#[test]
fn ready_timeout_stops_and_fails_with_the_reason() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
ready = "notify"
ready_timeout = "2s"
"#,
    );
    s.spawned("api");
    assert_eq!(s.timers(), vec![s.in_secs(secs(2))]);
    assert_eq!(s.state("api"), Starting);
    s.advance(secs(2));
    assert!(s.stop_asked("api").is_some());
    s.stopped("api");
    assert_eq!(s.state("api"), Failed);
    assert_eq!(
        s.reason("api"),
        "not ready within 2s of starting (ready = \"notify\"); fix the service or raise ready_timeout"
    );
    s.advance(secs(60));
    assert_eq!(s.spawns("api"), 1, "a failed service is not restarted");
}

#[test]
fn notify_ready_before_the_timeout_keeps_it() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
ready = "notify"
ready_timeout = "2s"
"#,
    );
    s.spawned("api");
    s.notify("api", &[("READY", "1"), ("STATUS", "serving")]);
    assert_eq!(s.state("api"), Running);
    assert_eq!(
        s.reason("api"),
        format!(
            "running as pid {}, ready via notify; status: serving",
            s.pid("api").unwrap()
        )
    );
    s.advance(secs(5));
    assert!(s.stop_asked("api").is_none());
}

#[test]
fn watchdog_timeout_is_unhealthy_and_restarts_with_backoff() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
watchdog = "2s"
backoff = { initial = "1s", max = "8s", reset_after = "1m" }
"#,
    );
    s.spawned("api");
    s.advance(secs(1));
    s.notify("api", &[("WATCHDOG", "1")]);
    // The timer armed at spawn (due at 2 s) is still pending: the ping moves the deadline to
    // 3 s without a second timer; when the first fires, it is armed again at the deadline.
    assert!(s.timers().is_empty());
    s.advance(secs(1));
    assert_eq!(s.state("api"), Running, "pinged in time");
    assert_eq!(s.timers(), vec![s.in_secs(secs(1))]);
    s.advance(secs(1));
    let unhealthy = s.notes().into_iter().find(|n| n.1 == "unhealthy").unwrap();
    assert_eq!(unhealthy.2, "watchdog timeout: no WATCHDOG=1 within 2s");
    assert!(s.stop_asked("api").is_some());
    s.stopped("api");
    assert_eq!(s.state("api"), Backoff);
    assert_eq!(
        s.reason("api"),
        "stopped because watchdog timeout: no WATCHDOG=1 within 2s; restarting in 1s (quick exit 1 in a row)"
    );
    s.advance(secs(1));
    assert_eq!(s.spawn_asked("api"), Some(2));
}

#[test]
fn watchdog_pings_arm_one_timer_however_many_there_are() {
    let mut s = Sim::new("[service.api]\ncommand = [\"/bin/api\"]\nwatchdog = \"10s\"\n");
    s.spawned("api");
    let mut timers = 0;
    for _ in 0..1000 {
        s.advance(ms(20));
        timers += s.timers().len();
        s.notify("api", &[("WATCHDOG", "1")]);
        timers += s.timers().len();
    }
    // 20 s of pings every 20 ms: the deadline moved 1000 times, the timer was re-armed once
    // per 10 s watchdog period.
    assert!(timers <= 2, "{timers} timers for 1000 pings");
    assert_eq!(s.state("api"), Running);
    s.advance(secs(10) - ms(1));
    assert_eq!(s.state("api"), Running);
    s.advance(ms(1));
    assert_eq!(
        s.state("api"),
        Stopping,
        "the last ping's deadline still holds"
    );
}

#[test]
fn probe_failures_restart_or_alert() {
    for (on_unhealthy, restarts) in [("restart", true), ("alert", false)] {
        let mut s = Sim::new(&format!(
            r#"
[service.api]
command = ["/bin/api"]
probe = {{ tcp = "127.0.0.1:1", failures = 2 }}
on_unhealthy = "{on_unhealthy}"
"#
        ));
        s.spawned("api");
        assert_eq!(s.state("api"), Starting, "ready by probe");
        s.probe("api", false, "connection refused");
        assert!(s
            .reason("api")
            .ends_with("(last probe: connection refused)"));
        s.probe("api", true, "connected");
        assert_eq!(s.state("api"), Running);
        s.probe("api", false, "connection refused");
        assert_eq!(s.state("api"), Running, "one failure is not enough");
        s.probe("api", false, "connection refused");
        assert_eq!(s.stop_asked("api").is_some(), restarts, "{on_unhealthy}");
        if restarts {
            assert_eq!(s.state("api"), Stopping);
            assert!(s
                .reason("api")
                .starts_with("restarting because tcp probe failed 2 times in a row"));
        } else {
            assert_eq!(s.state("api"), Unhealthy);
            assert_eq!(
                s.reason("api"),
                "tcp probe failed 2 times in a row: connection refused"
            );
            s.probe("api", true, "connected");
            assert_eq!(s.state("api"), Running, "one success recovers");
        }
    }
}

#[test]
fn probe_failures_before_ready_do_not_count() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
ready = "notify"
probe = { tcp = "127.0.0.1:1", failures = 3 }
"#,
    );
    s.spawned("api");
    // Fast startup probes fail while the service is still starting...
    for _ in 0..6 {
        s.probe("api", false, "connection refused");
    }
    assert!(
        s.reason("api")
            .ends_with("(last probe: connection refused)"),
        "{}",
        s.reason("api")
    );
    // ...and once it says it is ready, it starts with a clean slate.
    s.notify("api", &[("READY", "1")]);
    assert_eq!(s.state("api"), Running, "{}", s.reason("api"));
    assert!(s.stop_asked("api").is_none());
    s.probe("api", false, "connection refused");
    s.probe("api", false, "connection refused");
    assert_eq!(s.state("api"), Running);
    s.probe("api", false, "connection refused");
    assert_eq!(s.state("api"), Stopping, "three failures after ready count");
}

#[test]
fn a_declared_socket_missing_on_disk_is_unhealthy_and_restarted() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
sockets = ["/run/api.sock"]
"#,
    );
    s.spawned("api");
    // Ready at spawn: its sockets are checked at once.
    assert!(s.last.iter().any(|e| matches!(e, Effect::Watch { .. })));
    assert_eq!(
        s.reason("api"),
        format!(
            "ready via started as pid {}; checking its declared sockets",
            s.pid("api").unwrap()
        )
    );
    s.advance(ms(10));
    s.socket("api", "/run/api.sock", true);
    assert_eq!(s.state("api"), Running);
    s.advance(secs(5));
    s.socket("api", "/run/api.sock", false);
    let n = s.notes().into_iter().find(|n| n.1 == "unhealthy").unwrap();
    assert_eq!(n.2, "declared socket /run/api.sock missing on disk");
    assert!(s.stop_asked("api").is_some());
}

#[test]
fn evidence_of_another_run_is_dropped() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
probe = { tcp = "127.0.0.1:1", failures = 1 }
"#,
    );
    s.spawned("api");
    s.probe("api", true, "connected");
    let old = s.run_id("api");
    s.request(Request::Restart("api".into()));
    s.stopped("api");
    s.spawned("api");
    s.feed(candor_brain::Input::Evidence(vec![
        candor_brain::Evidence::Probe {
            service: "api".into(),
            run_id: old,
            outcome: candor_core::health::ProbeOutcome {
                ok: true,
                detail: "stale".into(),
                latency: ms(1),
                at: s.now.mono,
            },
        },
    ]));
    assert_eq!(
        s.state("api"),
        Starting,
        "a probe of the old run proves nothing"
    );
}

#[test]
fn fd_warn_degrades_and_fd_restart_restarts() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
limits = { fd_warn = "80%", fd_restart = "95%" }
"#,
    );
    s.up("api");
    s.sample("api", 500, 1000, 1 << 20);
    assert_eq!(s.state("api"), Running);
    s.advance(secs(5));
    s.sample("api", 850, 1000, 1 << 20);
    assert_eq!(s.state("api"), Degraded);
    assert!(s.stop_asked("api").is_none());
    // A summary describes now for three sampling periods, no longer.
    s.advance(secs(16));
    assert_eq!(
        s.state("api"),
        Running,
        "stale figures are not shown as current"
    );
    s.sample("api", 960, 1000, 1 << 20);
    assert!(s.stop_asked("api").is_some());
    let n = s.notes().into_iter().find(|n| n.1 == "degraded").unwrap();
    assert!(n.2.contains("960"), "{n:?}");
}

#[test]
fn memory_warn_degrades_without_a_restart() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
limits = { memory_warn = "100MiB" }
"#,
    );
    s.up("api");
    s.sample("api", 10, 1000, 50 << 20);
    assert_eq!(s.state("api"), Running);
    s.sample("api", 10, 1000, 150 << 20);
    assert_eq!(s.state("api"), Degraded);
    assert!(s.reason("api").contains("MiB"), "{}", s.reason("api"));
    assert!(s.stop_asked("api").is_none());
}

#[test]
fn memory_restart_restarts_with_the_figure() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
limits = { memory_restart = "100MiB" }
"#,
    );
    s.up("api");
    s.sample("api", 10, 1000, 200 << 20);
    assert!(s.stop_asked("api").is_some());
}

const CHAIN: &str = r#"
[service.db]
command = ["/bin/db"]
ready = "notify"

[service.api]
command = ["/bin/api"]
after = ["db"]

[service.web]
command = ["/bin/web"]
after = ["api"]
"#;

#[test]
fn dependents_wait_for_readiness_and_stop_in_reverse_order() {
    let mut s = Sim::new(CHAIN);
    assert_eq!(s.spawn_asked("db"), Some(1));
    assert_eq!(s.spawn_asked("api"), None);
    assert_eq!(
        s.reason("api"),
        "waiting for db (starting) to be running before starting"
    );
    assert_eq!(
        s.reason("web"),
        "waiting for api (starting) to be running before starting"
    );
    s.spawned("db");
    assert_eq!(s.spawn_asked("api"), None, "spawned is not ready");
    s.notify("db", &[("READY", "1")]);
    assert_eq!(s.spawn_asked("api"), Some(1));
    s.spawned("api");
    assert_eq!(s.spawn_asked("web"), Some(1));
    s.spawned("web");
    // Waiting is derived from the dependency's facts: a db in backoff says so.
    s.request(Request::Shutdown);
    assert_eq!(s.stop_asked("web").map(|s| s.0), Some(1));
    assert!(s.stop_asked("api").is_none() && s.stop_asked("db").is_none());
    s.stopped("web");
    assert!(s.stop_asked("api").is_some() && s.stop_asked("db").is_none());
    s.stopped("api");
    assert!(s.stop_asked("db").is_some());
    assert!(!s.last.contains(&Effect::Exit));
    s.stopped("db");
    assert!(s.last.contains(&Effect::Exit));
    assert_eq!(s.state("db"), Stopped);
}

#[test]
fn waiting_follows_the_dependency_facts() {
    let mut s = Sim::new(CHAIN);
    s.spawned("db");
    s.exits("db", ExitStatus::Code(1));
    assert_eq!(
        s.reason("api"),
        "waiting for db (backoff) to be running before starting"
    );
}

#[test]
fn reload_adds_removes_and_changes_services() {
    let mut s = Sim::new(
        r#"
[service.keep]
command = ["/bin/keep"]

[service.gone]
command = ["/bin/gone"]

[service.changed]
command = ["/bin/changed", "v1"]
"#,
    );
    for n in ["keep", "gone", "changed"] {
        s.up(n);
    }
    let new = sim::arc_spec(
        r#"
[service.keep]
command = ["/bin/keep"]

[service.changed]
command = ["/bin/changed", "v2"]

[service.added]
command = ["/bin/added"]
"#,
    );
    let Reply::Reload(out) = s.request(Request::Reload(new)) else {
        panic!("{:?}", s.last)
    };
    assert_eq!(out.added, ["added"]);
    assert_eq!(out.removed, ["gone"]);
    assert_eq!(out.changed, ["changed"]);
    assert_eq!(out.unchanged, ["keep"]);
    assert_eq!(s.spawn_asked("added"), Some(1));
    assert!(s.stop_asked("gone").is_some());
    assert!(s.stop_asked("changed").is_some());
    assert!(s.stop_asked("keep").is_none());
    assert_eq!(
        s.reason("changed"),
        "config changed: SIGTERM sent to the whole group, SIGKILL in 10s"
    );
    s.stopped("gone");
    assert!(s.facts.get("gone").is_none());
    assert!(s.notes().iter().any(|n| n.0 == "gone" && n.1 == "removed"));
    s.stopped("changed");
    let Some(Effect::Spawn { spec, .. }) =
        s.last.iter().find(|e| matches!(e, Effect::Spawn { .. }))
    else {
        panic!("changed is started again with its new spec: {:?}", s.last)
    };
    assert_eq!(spec.command[1], "v2");
}

#[test]
fn reload_of_log_limits_alone_does_not_restart() {
    let mut s = Sim::new("[service.api]\ncommand = [\"/bin/api\"]\n");
    s.up("api");
    let new = sim::arc_spec("[service.api]\ncommand = [\"/bin/api\"]\nlogs = { rate = 10 }\n");
    let Reply::Reload(out) = s.request(Request::Reload(new)) else {
        panic!()
    };
    assert_eq!(out.changed, ["api"]);
    assert!(s
        .last
        .iter()
        .any(|e| matches!(e, Effect::ConfigureLogs { .. })));
    assert!(s.stop_asked("api").is_none());
}

#[test]
fn reset_failed_restarts_only_failed_services_unless_forced() {
    let toml = r#"
[service.bad]
command = ["/bin/bad"]
restart = "never"

[service.good]
command = ["/bin/good"]
"#;
    let mut s = Sim::new(toml);
    s.up("bad");
    s.up("good");
    s.exits("bad", ExitStatus::Code(1));
    assert_eq!(s.state("bad"), Failed);
    let Reply::ResetFailed(out) = s.request(Request::ResetFailed { force: false }) else {
        panic!()
    };
    assert_eq!(out.restarted, ["bad"]);
    assert_eq!(out.left_alone, ["good"]);
    assert_eq!(s.spawn_asked("bad"), Some(2));
    assert!(s.stop_asked("good").is_none());
    s.spawned("bad");
    let Reply::ResetFailed(out) = s.request(Request::ResetFailed { force: true }) else {
        panic!()
    };
    assert_eq!(out.restarted, ["bad", "good"]);
    assert!(s.stop_asked("good").is_some() && s.stop_asked("bad").is_some());
}

#[test]
fn requests_for_unknown_services_and_during_shutdown_are_refused() {
    let mut s = Sim::new(ONE);
    assert!(matches!(
        s.request(Request::Start("nope".into())),
        Reply::Error { status: 404, error } if error == "no service named `nope`; configured: api"
    ));
    s.request(Request::Shutdown);
    assert!(matches!(
        s.request(Request::Start("api".into())),
        Reply::Error { status: 409, .. }
    ));
}

#[test]
fn replies_come_after_the_board_that_shows_them() {
    let mut s = Sim::new(ONE);
    s.up("api");
    s.request(Request::Stop("api".into()));
    let publish = s.last.iter().position(|e| *e == Effect::Publish).unwrap();
    let reply = s
        .last
        .iter()
        .position(|e| matches!(e, Effect::Reply { .. }))
        .unwrap();
    assert!(publish < reply);
}

#[test]
fn restart_request_stops_then_starts_and_is_not_counted_as_a_crash_restart() {
    let mut s = Sim::new(ONE);
    let pid = s.up("api");
    s.request(Request::Restart("api".into()));
    assert_eq!(
        s.reason("api"),
        "restart requested: SIGTERM sent to the whole group, SIGKILL in 5s"
    );
    assert_eq!(s.spawn_asked("api"), None, "never two copies");
    s.stopped("api");
    assert_eq!(s.spawn_asked("api"), Some(2));
    assert_ne!(s.spawned("api"), pid);
    assert_eq!(s.facts.get("api").unwrap().restarts, 0);
}

#[test]
fn a_stop_asked_while_the_spawn_is_on_its_way_stops_the_run_once_spawned() {
    let mut s = Sim::new(ONE);
    s.request(Request::Stop("api".into()));
    assert_eq!(s.state("api"), Starting, "the spawn is on its way");
    s.spawned("api");
    assert!(s.stop_asked("api").is_some());
    s.stopped("api");
    assert_eq!(s.state("api"), Stopped);
}

#[test]
fn a_refused_spawn_is_retried_then_failed_with_the_truth() {
    let mut s = Sim::new(ONE);
    for attempt in 1..=candor_brain::MAX_SPAWN_REFUSALS {
        let run_id = s.run_id("api");
        s.refuse(
            Refusable::Spawn {
                service: "api".into(),
                run_id,
            },
            "keeper command queue is full",
        );
        if attempt < candor_brain::MAX_SPAWN_REFUSALS {
            assert_eq!(s.state("api"), Backoff, "{}", s.reason("api"));
            assert!(s.reason("api").starts_with(
                "could not be handed to the keeper (keeper command queue is full); trying again in"
            ));
            let due = s.timers()[0];
            s.advance(due.since(s.now.mono));
            assert!(s.spawn_asked("api").is_some(), "retried");
        }
    }
    assert_eq!(s.state("api"), Failed);
    assert_eq!(
        s.reason("api"),
        "could not be handed to the keeper 5 times in a row (keeper command queue is full); `candor start api` tries again"
    );
    s.request(Request::Start("api".into()));
    assert!(s.spawn_asked("api").is_some());
}

#[test]
fn a_refused_stop_is_retried_and_still_ends_with_sigkill_on_time() {
    let mut s = Sim::new(ONE);
    s.up("api");
    s.request(Request::Stop("api".into()));
    let kill_at = s.in_secs(secs(5));
    s.refuse(
        Refusable::Stop {
            service: "api".into(),
            run_id: 1,
        },
        "keeper command queue is full",
    );
    assert_eq!(s.state("api"), Stopping);
    assert_eq!(
        s.reason("api"),
        "stop requested: the stop could not be handed to the keeper (keeper command queue is full); retrying (attempt 2); SIGKILL due in 5s"
    );
    assert_eq!(s.timers(), vec![s.in_secs(ms(100))]);
    s.advance(ms(100));
    let (_, timeout) = s.stop_asked("api").expect("sent again");
    assert_eq!(s.now.mono + timeout, kill_at, "the SIGKILL keeps its time");
    // Refused until past the deadline: the next attempt kills at once.
    for _ in 0..10 {
        s.refuse(
            Refusable::Stop {
                service: "api".into(),
                run_id: 1,
            },
            "keeper has stopped",
        );
        let due = s.timers()[0];
        s.advance(due.since(s.now.mono));
    }
    assert!(s.now.mono > kill_at);
    assert_eq!(s.stop_asked("api").unwrap().1, std::time::Duration::ZERO);
    s.emptied("api", true);
    assert_eq!(s.state("api"), Stopped);
}

#[test]
fn a_refused_sweep_says_what_stays_and_promises_no_retry() {
    let mut s = Sim::new(ONE);
    s.refuse(Refusable::Sweep, "keeper command queue is full");
    let n = s.notes().into_iter().find(|n| n.1 == "warning").unwrap();
    assert_eq!(
        n.2,
        "the keeper did not take the sweep command (keeper command queue is full); cgroups of services no longer configured stay until the next start"
    );
    assert!(s.timers().is_empty());
}

#[test]
fn early_notify_waits_for_the_spawn_report_and_strangers_are_counted() {
    let mut s = Sim::new("[service.api]\ncommand = [\"/bin/api\"]\nready = \"notify\"\n");
    let msg = candor_brain::Notify {
        pid: 4242,
        cgroup_service: Some("api".into()),
        pgid: Some(4242),
        run: None,
        fields: vec![("READY".into(), "1".into())],
    };
    s.evidence(candor_brain::Evidence::Notify(msg));
    assert_eq!(count(&s.last, |e| *e == Effect::CountStranger), 0);
    let run_id = s.run_id("api");
    s.feed(candor_brain::Input::Spawned {
        unenforced: None,
        service: "api".into(),
        run_id,
        pid: 4242,
        at: s.now.mono,
        cleared_leftovers: 0,
    });
    assert_eq!(
        s.state("api"),
        Running,
        "the held READY=1 counts once its sender is known"
    );
    let stranger = candor_brain::Notify {
        pid: 9,
        cgroup_service: None,
        pgid: Some(9),
        run: None,
        fields: vec![("READY".into(), "1".into())],
    };
    s.evidence(candor_brain::Evidence::Notify(stranger));
    assert_eq!(count(&s.last, |e| *e == Effect::CountStranger), 1);
}

#[test]
fn notify_from_a_known_run_before_its_spawn_report_is_held_until_it() {
    let mut s = Sim::new("[service.api]\ncommand = [\"/bin/api\"]\nready = \"notify\"\n");
    let run_id = s.run_id("api");
    // The daemon knew the run's pid before the brain had the keeper's report of the spawn.
    s.evidence(candor_brain::Evidence::Notify(candor_brain::Notify {
        pid: 4242,
        cgroup_service: None,
        pgid: None,
        run: Some(("api".into(), run_id)),
        fields: vec![("READY".into(), "1".into())],
    }));
    assert_eq!(count(&s.last, |e| *e == Effect::CountStranger), 0);
    assert_eq!(s.state("api"), Starting);
    s.feed(candor_brain::Input::Spawned {
        unenforced: None,
        service: "api".into(),
        run_id,
        pid: 4242,
        at: s.now.mono,
        cleared_leftovers: 0,
    });
    assert_eq!(s.state("api"), Running, "the held READY=1 counts now");
}

#[test]
fn notify_from_a_known_run_counts_only_while_that_run_is_the_live_one() {
    let mut s = Sim::new("[service.api]\ncommand = [\"/bin/api\"]\nready = \"notify\"\n");
    let first = s.run_id("api");
    s.feed(candor_brain::Input::Spawned {
        unenforced: None,
        service: "api".into(),
        run_id: first,
        pid: 4242,
        at: s.now.mono,
        cleared_leftovers: 0,
    });
    // The daemon found the sender (any pid: a child of the service) to be of this run.
    let from = |run_id| candor_brain::Notify {
        pid: 77,
        cgroup_service: None,
        pgid: None,
        run: Some(("api".into(), run_id)),
        fields: vec![("READY".into(), "1".into())],
    };
    s.evidence(candor_brain::Evidence::Notify(from(first + 100)));
    assert_eq!(s.state("api"), Starting, "a run that is not the live one");
    assert_eq!(count(&s.last, |e| *e == Effect::CountStranger), 0);
    s.evidence(candor_brain::Evidence::Notify(from(first)));
    assert_eq!(s.state("api"), Running);
}

#[test]
fn every_state_change_is_recorded_once() {
    let mut s = Sim::new(ONE);
    s.up("api");
    s.exits("api", ExitStatus::Code(1));
    let states: Vec<String> = s
        .all_notes()
        .into_iter()
        .filter(|n| n.0 == "api")
        .map(|n| n.1)
        .collect();
    assert_eq!(states, ["starting", "running", "backoff"]);
    s.advance(secs(1));
    assert_eq!(
        s.notes().iter().filter(|n| n.0 == "api").count(),
        1,
        "{:?}",
        s.notes()
    );
}

#[test]
fn an_oom_kill_is_named_with_the_memory_limit_and_unenforced_limits_are_said() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
restart = "on-failure"
backoff = { initial = "100ms", max = "400ms" }
limits = { memory_max = "512MiB" }
"#,
    );
    let run_id = s.run_id("api");
    s.feed(candor_brain::Input::Spawned {
        unenforced: Some("the memory controller is not available".into()),
        service: "api".into(),
        run_id,
        pid: 4242,
        at: s.now.mono,
        cleared_leftovers: 0,
    });
    assert!(
        s.notes().iter().any(|n| n.1 == "warning"
            && n.2 == "limits not enforced: the memory controller is not available"),
        "{:?}",
        s.notes()
    );
    s.feed(candor_brain::Input::Exited {
        oom_kills: 1,
        service: "api".into(),
        run_id,
        status: ExitStatus::Signal(9),
        at: s.now.mono,
        group_empty: true,
        escalated: false,
    });
    assert_eq!(s.state("api"), Backoff);
    assert!(
        s.reason("api").starts_with(
            "killed by the kernel: memory limit 512.0 MiB (memory_max) after 0ms; restarting in"
        ),
        "{}",
        s.reason("api")
    );
    // A child killed, the main process exiting on its own: both said.
    s.advance(ms(100));
    s.spawned("api");
    let run_id = s.run_id("api");
    s.feed(candor_brain::Input::Exited {
        oom_kills: 2,
        service: "api".into(),
        run_id,
        status: ExitStatus::Code(1),
        at: s.now.mono,
        group_empty: true,
        escalated: false,
    });
    assert!(
        s.reason("api").starts_with(
            "exited with code 1, after the kernel killed 2 of its processes: memory limit 512.0 MiB (memory_max) after"
        ),
        "{}",
        s.reason("api")
    );
}

#[test]
fn a_service_given_up_after_an_oom_kill_says_so_in_its_reason() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
restart = "never"
limits = { memory_max = "64MiB" }
"#,
    );
    s.up("api");
    let run_id = s.run_id("api");
    s.feed(candor_brain::Input::Exited {
        oom_kills: 1,
        service: "api".into(),
        run_id,
        status: ExitStatus::Signal(9),
        at: s.now.mono,
        group_empty: true,
        escalated: false,
    });
    assert_eq!(s.state("api"), Failed);
    assert!(
        s.reason("api").starts_with(
            "killed by the kernel: memory limit 64.0 MiB (memory_max) and restart = \"never\""
        ),
        "{}",
        s.reason("api")
    );
}
