//! A step of the wall clock (NTP at boot, a VM resumed) changes no state, deadline or
//! restart: every deadline and age is on the boot clock.

mod sim;

use candor_brain::{Effect, Request, ServiceState::*};
use candor_core::ExitStatus;
use sim::{ms, secs, Sim};

const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

/// Step the wall clock an hour forward and an hour back, checking after each that nothing
/// but the wall clock moved: the same state and reason, no command, no new timer.
fn step_both_ways(s: &mut Sim, name: &str) {
    let before = s.derived(name);
    for forward in [true, false] {
        s.step_wall(forward, HOUR);
        assert_eq!(s.derived(name), before, "wall step forward={forward}");
        let acted: Vec<&Effect> = s
            .last
            .iter()
            .filter(|e| !matches!(e, Effect::Publish))
            .collect();
        assert!(
            acted.is_empty(),
            "a wall step made the brain act: {acted:?}"
        );
    }
}

#[test]
fn wall_steps_during_a_backoff_change_nothing() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
backoff = { initial = "10s", max = "1m", reset_after = "1h" }
"#,
    );
    s.up("api");
    s.exits("api", ExitStatus::Code(1));
    s.advance(secs(4));
    assert_eq!(
        s.reason("api"),
        "exited with code 1 after 0ms; restarting in 6s (quick exit 1 in a row)"
    );
    step_both_ways(&mut s, "api");
    s.advance(secs(6) - ms(1));
    assert_eq!(s.spawn_asked("api"), None);
    s.advance(ms(1));
    assert_eq!(
        s.spawn_asked("api"),
        Some(2),
        "restarted exactly at its boot-clock time"
    );
}

#[test]
fn wall_steps_during_a_ready_timeout_change_nothing() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
ready = "notify"
ready_timeout = "30s"
"#,
    );
    s.spawned("api");
    s.advance(secs(10));
    step_both_ways(&mut s, "api");
    assert_eq!(s.state("api"), Starting);
    s.advance(secs(20) - ms(1));
    assert!(s.stop_asked("api").is_none());
    s.notify("api", &[("READY", "1")]);
    assert_eq!(s.state("api"), Running);
}

#[test]
fn wall_steps_during_a_watchdog_period_change_nothing() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
watchdog = "10s"
"#,
    );
    s.spawned("api");
    s.advance(secs(5));
    step_both_ways(&mut s, "api");
    assert_eq!(s.state("api"), Running);
    s.advance(secs(5) - ms(1));
    assert_eq!(s.state("api"), Running);
    s.advance(ms(1));
    assert_eq!(s.state("api"), Stopping, "{}", s.reason("api"));
}

#[test]
fn wall_steps_during_a_stop_escalation_change_nothing() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
stop = { timeout = "10s" }
"#,
    );
    s.up("api");
    s.request(Request::Stop("api".into()));
    s.advance(secs(3));
    assert_eq!(
        s.reason("api"),
        "stop requested: SIGTERM sent to the whole group, SIGKILL in 7s"
    );
    step_both_ways(&mut s, "api");
    s.advance(secs(7));
    assert!(s.reason("api").contains("SIGKILL sent to the whole group"));
}

#[test]
fn fresh_samples_stay_fresh_and_stale_ones_stale_across_wall_steps() {
    let mut s = Sim::new(
        r#"
[service.api]
command = ["/bin/api"]
limits = { fd_warn = "50%" }
"#,
    );
    s.up("api");
    s.sample("api", 900, 1000, 0);
    assert_eq!(s.state("api"), Degraded);
    s.step_wall(false, HOUR);
    assert_eq!(
        s.state("api"),
        Degraded,
        "a step back does not make a sample stale"
    );
    s.advance(secs(16));
    s.step_wall(false, HOUR);
    assert_eq!(
        s.state("api"),
        Running,
        "a step back does not make a stale sample fresh"
    );
}

#[test]
fn times_shown_follow_the_wall_clock_without_changing_ages() {
    let mut s = Sim::new("[service.api]\ncommand = [\"/bin/api\"]\n");
    s.up("api");
    s.advance(secs(30));
    let since = s.facts.get("api").unwrap().shown.unwrap().1;
    let shown_before = s.now.wall_of(since);
    s.step_wall(false, HOUR);
    assert_eq!(shown_before - HOUR, s.now.wall_of(since));
    assert_eq!(s.now.mono.since(since), secs(30), "its age is unchanged");
}
