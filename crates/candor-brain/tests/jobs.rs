//! Oneshots, conditions, timeouts, retries and schedules as input sequences: what runs when,
//! why, and what its history and state say.

mod sim;

use std::time::Duration;

use candor_brain::jobs::{SavedJob, SCHEDULE_LOOK};
use candor_brain::{ConditionEnd, Effect, Evidence, Reply, Request, ServiceState::*};
use candor_core::ExitStatus;
use candor_spec::{CatchUp, Overlap, ScheduleSpec, ServiceKind, Spec, When};
use sim::{secs, Sim};

fn svc<'a>(spec: &'a mut Spec, name: &str) -> &'a mut candor_spec::ServiceSpec {
    spec.services
        .get_mut(&candor_spec::ServiceName::new(name).unwrap())
        .unwrap()
}

fn oneshot<'a>(spec: &'a mut Spec, name: &str) -> &'a mut candor_spec::ServiceSpec {
    let s = svc(spec, name);
    s.kind = ServiceKind::Oneshot;
    s.restart = candor_spec::RestartPolicy::Never;
    s
}

fn every(secs_: u64, catch_up: CatchUp, overlap: Overlap) -> ScheduleSpec {
    ScheduleSpec {
        when: When::Every {
            every: secs(secs_),
            jitter: Duration::ZERO,
        },
        catch_up,
        overlap,
    }
}

fn history(s: &Sim, name: &str) -> Vec<candor_api::JobRun> {
    let svc = s.facts.get(name).unwrap();
    svc.job.as_ref().unwrap().history.iter().cloned().collect()
}

fn triggers(s: &Sim, name: &str) -> Vec<String> {
    history(s, name).into_iter().map(|e| e.trigger).collect()
}

fn condition_asked(s: &Sim, name: &str) -> Option<u64> {
    s.last.iter().find_map(|e| match e {
        Effect::Condition { service, token, .. } if service == name => Some(*token),
        _ => None,
    })
}

fn condition_ends(s: &mut Sim, name: &str, token: u64, end: ConditionEnd) {
    s.evidence(Evidence::Condition {
        service: name.into(),
        token,
        end,
    });
}

/// Advance in steps no longer than the schedule's look-ahead until `name` has a spawn asked.
fn until_spawn(s: &mut Sim, name: &str, limit: Duration) -> Duration {
    let mut waited = Duration::ZERO;
    while s.spawn_asked(name).is_none() {
        assert!(
            waited < limit,
            "no spawn of {name} within {limit:?}: {}",
            s.reason(name)
        );
        let next = s.timers().into_iter().min().expect("a timer is armed");
        let d = next.since(s.now.mono).max(Duration::from_millis(1));
        s.advance(d);
        waited += d;
    }
    waited
}

const TWO: &str = "[service.migrate]\ncommand = [\"/bin/migrate\"]\n[service.api]\ncommand = [\"/bin/api\"]\nafter = [\"migrate\"]\n";

#[test]
fn a_service_after_a_oneshot_starts_only_once_it_is_done() {
    let mut s = Sim::with(
        TWO,
        |spec| {
            oneshot(spec, "migrate");
        },
        vec![],
    );
    assert!(s.spawn_asked("migrate").is_some());
    assert!(s.spawn_asked("api").is_none());
    s.up("migrate");
    assert!(
        s.reason("migrate").contains("a start run"),
        "{}",
        s.reason("migrate")
    );
    // Running is not enough for a oneshot's dependents.
    assert!(
        s.reason("api")
            .contains("waiting for migrate (running) to be running or done"),
        "{}",
        s.reason("api")
    );
    s.advance(secs(3));
    s.exits("migrate", ExitStatus::Code(0));
    assert_eq!(s.state("migrate"), Done, "{}", s.reason("migrate"));
    assert_eq!(s.reason("migrate"), "completed in 3s with exit 0");
    assert!(
        s.spawn_asked("api").is_some(),
        "api starts once migrate is done"
    );
    let h = history(&s, "migrate");
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].result.as_str(), h[0].code), ("done", Some(0)));
    assert_eq!(h[0].duration_ms, Some(3000));
    let job_note = s
        .all_notes()
        .into_iter()
        .find(|(n, state, _)| n == "migrate" && state == "done");
    assert!(job_note.is_some(), "an event for the run's end");
}

#[test]
fn a_failing_oneshot_is_retried_then_failed_and_its_dependents_wait() {
    let mut s = Sim::with(
        TWO,
        |spec| {
            let m = oneshot(spec, "migrate");
            m.restart = candor_spec::RestartPolicy::OnFailure;
            m.retries = Some(2);
        },
        vec![],
    );
    for _ in 0..3 {
        until_spawn(&mut s, "migrate", secs(60));
        s.spawned("migrate");
        s.exits("migrate", ExitStatus::Code(1));
    }
    assert_eq!(s.spawns("migrate"), 3);
    assert_eq!(s.state("migrate"), Failed);
    assert!(
        s.reason("migrate")
            .contains("3 failed runs in a row (retries = 2)"),
        "{}",
        s.reason("migrate")
    );
    s.advance(secs(120));
    assert_eq!(s.spawns("migrate"), 3, "no fourth run");
    assert_eq!(triggers(&s, "migrate"), ["start", "retry", "retry"]);
    assert_eq!(s.spawns("api"), 0);
    assert!(
        s.reason("api").contains("migrate (failed)"),
        "{}",
        s.reason("api")
    );
}

#[test]
fn a_condition_that_says_no_skips_the_start_and_dependents_go_on() {
    let mut s = Sim::with(
        TWO,
        |spec| {
            oneshot(spec, "migrate").condition =
                Some(vec!["test".into(), "-f".into(), "/etc/app/enabled".into()]);
        },
        vec![],
    );
    assert!(
        s.spawn_asked("migrate").is_none(),
        "the condition runs first"
    );
    let token = condition_asked(&s, "migrate").expect("condition asked");
    assert!(s
        .reason("migrate")
        .starts_with("checking its condition: test -f"));
    condition_ends(
        &mut s,
        "migrate",
        token,
        ConditionEnd::Exited(ExitStatus::Code(1)),
    );
    assert_eq!(s.state("migrate"), Skipped);
    assert_eq!(
        s.reason("migrate"),
        "condition exited 1: test -f /etc/app/enabled; the start was skipped"
    );
    assert_eq!(s.spawns("migrate"), 0);
    assert!(
        s.spawn_asked("api").is_some(),
        "skipped satisfies dependents"
    );
    let h = history(&s, "migrate");
    assert_eq!((h.len(), h[0].result.as_str()), (1, "skipped"));

    // 255 fails; a token from an earlier check changes nothing.
    s.request(Request::Start("migrate".into()));
    let token2 = condition_asked(&s, "migrate").expect("checked again at the next start");
    condition_ends(
        &mut s,
        "migrate",
        token,
        ConditionEnd::Exited(ExitStatus::Code(0)),
    );
    assert_eq!(s.spawns("migrate"), 0, "a stale answer is ignored");
    condition_ends(
        &mut s,
        "migrate",
        token2,
        ConditionEnd::Exited(ExitStatus::Code(255)),
    );
    assert_eq!(s.state("migrate"), Failed, "{}", s.reason("migrate"));
    assert!(s
        .reason("migrate")
        .starts_with("condition exited with code 255"));

    // Exit 0 lets the start go on.
    s.request(Request::Start("migrate".into()));
    let token3 = condition_asked(&s, "migrate").unwrap();
    condition_ends(
        &mut s,
        "migrate",
        token3,
        ConditionEnd::Exited(ExitStatus::Code(0)),
    );
    assert!(s.spawn_asked("migrate").is_some());
}

#[test]
fn a_oneshot_over_its_timeout_is_stopped_and_failed() {
    let mut s = Sim::with(
        TWO,
        |spec| oneshot(spec, "migrate").timeout = Some(secs(10)),
        vec![],
    );
    s.up("migrate");
    s.advance(secs(9));
    assert!(s.stop_asked("migrate").is_none());
    s.advance(secs(1));
    assert!(s.stop_asked("migrate").is_some(), "stopped at its timeout");
    s.stopped("migrate");
    assert_eq!(s.state("migrate"), Failed);
    assert_eq!(
        s.reason("migrate"),
        "ran longer than its timeout 10s; stopped"
    );
    assert_eq!(history(&s, "migrate")[0].result, "failed");
}

const JOB: &str = "[service.backup]\ncommand = [\"/bin/backup\"]\n";

fn scheduled(overlap: Overlap, catch_up: CatchUp) -> impl FnOnce(&mut Spec) {
    move |spec| oneshot(spec, "backup").schedule = Some(every(60, catch_up, overlap))
}

#[test]
fn a_scheduled_job_waits_for_its_fire_and_records_it() {
    let mut s = Sim::with(JOB, scheduled(Overlap::Skip, CatchUp::None), vec![]);
    assert!(s.spawn_asked("backup").is_none(), "not at boot");
    assert_eq!(s.state("backup"), Stopped);
    assert!(s
        .reason("backup")
        .starts_with("waiting for its schedule; not run yet"));
    // No timer further than the look-ahead: a wall-clock step is seen within it.
    assert!(s
        .timers()
        .iter()
        .all(|t| t.since(s.now.mono) <= SCHEDULE_LOOK));
    let waited = until_spawn(&mut s, "backup", secs(61));
    assert!(waited <= secs(60));
    let job = s.facts.get("backup").unwrap().job.clone().unwrap();
    let h = job.history.back().unwrap().clone();
    assert_eq!(h.trigger, "schedule");
    let fire = h.scheduled_ms.unwrap();
    assert_eq!(
        fire,
        candor_brain::jobs::unix_ms(s.now.wall),
        "spawned at its fire"
    );
    assert_eq!(job.next, Some(fire + 60_000));
    s.spawned("backup");
    s.exits("backup", ExitStatus::Code(0));
    assert_eq!(s.state("backup"), Done);
    assert!(
        s.reason("backup").contains("; next run in 1m"),
        "{}",
        s.reason("backup")
    );
}

#[test]
fn overlap_skip_queue_and_kill_previous() {
    // skip: the fire during a run is dropped.
    let mut s = Sim::with(JOB, scheduled(Overlap::Skip, CatchUp::None), vec![]);
    until_spawn(&mut s, "backup", secs(61));
    s.spawned("backup");
    s.advance(secs(60));
    assert!(s.stop_asked("backup").is_none());
    assert_eq!(s.spawns("backup"), 1);
    assert!(s
        .all_notes()
        .iter()
        .any(|(_, st, r)| st == "schedule" && r.contains("was skipped: run 1 is still going")));

    // queue: it runs once the current run ends.
    let mut s = Sim::with(JOB, scheduled(Overlap::Queue, CatchUp::None), vec![]);
    until_spawn(&mut s, "backup", secs(61));
    s.spawned("backup");
    s.advance(secs(60));
    assert_eq!(s.spawns("backup"), 1);
    s.exits("backup", ExitStatus::Code(0));
    assert_eq!(s.spawns("backup"), 2, "the queued run starts at once");
    assert_eq!(triggers(&s, "backup"), ["schedule", "schedule"]);

    // kill-previous: the run is stopped, then the new one starts.
    let mut s = Sim::with(JOB, scheduled(Overlap::KillPrevious, CatchUp::None), vec![]);
    until_spawn(&mut s, "backup", secs(61));
    s.spawned("backup");
    s.advance(secs(60));
    assert!(s.stop_asked("backup").is_some());
    s.stopped("backup");
    assert_eq!(s.spawns("backup"), 2);
    let h = history(&s, "backup");
    assert_eq!(h[0].result, "failed");
    assert!(h[0].reason.contains("kill-previous"), "{}", h[0].reason);
}

fn saved_with_last_fire(ms: i64) -> SavedJob {
    SavedJob {
        last_fire_ms: Some(ms),
        ..SavedJob::default()
    }
}

#[test]
fn a_fire_missed_while_down_runs_once_at_start_with_catch_up_once() {
    let boot_ms = 1_800_000_000_000i64;
    // Down for ten minutes: ten fires missed, one catch-up run.
    let saved = saved_with_last_fire(boot_ms - 600_000);
    let mut s = Sim::with(
        JOB,
        scheduled(Overlap::Skip, CatchUp::Once),
        vec![("backup", saved.clone())],
    );
    assert!(s.spawn_asked("backup").is_some(), "caught up at boot");
    let h = history(&s, "backup");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].trigger, "catch-up");
    let missed = h[0].scheduled_ms.unwrap();
    assert!(
        missed > boot_ms - 60_000 && missed <= boot_ms,
        "the latest missed fire"
    );
    s.spawned("backup");
    s.exits("backup", ExitStatus::Code(0));
    s.advance(secs(1));
    assert_eq!(s.spawns("backup"), 1, "once");

    // catch_up = "none": nothing at boot.
    let s = Sim::with(
        JOB,
        scheduled(Overlap::Skip, CatchUp::None),
        vec![("backup", saved)],
    );
    assert!(s.spawn_asked("backup").is_none());
    // Never ran (no saved fire): nothing to catch up.
    let s = Sim::with(JOB, scheduled(Overlap::Skip, CatchUp::Once), vec![]);
    assert!(s.spawn_asked("backup").is_none());
}

#[test]
fn a_wall_clock_step_forward_fires_once_not_for_every_period_passed_over() {
    let mut s = Sim::with(JOB, scheduled(Overlap::Skip, CatchUp::None), vec![]);
    s.step_wall(true, secs(7200));
    assert!(
        s.spawn_asked("backup").is_some(),
        "the fire passed over runs"
    );
    s.spawned("backup");
    s.exits("backup", ExitStatus::Code(0));
    s.advance(secs(1));
    assert_eq!(s.spawns("backup"), 1, "one run, not 120");
    // A step backwards: nothing fires until the wall clock reaches the next fire again.
    s.step_wall(false, secs(3600));
    s.advance(secs(30));
    assert_eq!(s.spawns("backup"), 1);
}

#[test]
fn candor_run_runs_a_oneshot_now_and_refuses_while_it_runs() {
    let mut s = Sim::with(JOB, scheduled(Overlap::Skip, CatchUp::None), vec![]);
    assert_eq!(s.request(Request::Run("backup".into())), Reply::Done);
    assert!(s.spawn_asked("backup").is_some());
    s.spawned("backup");
    match s.request(Request::Run("backup".into())) {
        Reply::Error { status: 409, error } => {
            assert!(error.contains("already running (run 1)"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(triggers(&s, "backup"), ["candor run"]);
    let mut s = Sim::new(JOB);
    match s.request(Request::Run("backup".into())) {
        Reply::Error { status: 409, error } => {
            assert!(error.contains("long-running service"), "{error}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_history_keeps_the_last_fifty_runs() {
    let mut s = Sim::with(
        JOB,
        |spec| {
            oneshot(spec, "backup");
        },
        vec![],
    );
    for _ in 0..60 {
        if s.spawn_asked("backup").is_none() {
            assert_eq!(s.request(Request::Run("backup".into())), Reply::Done);
        }
        s.spawned("backup");
        s.exits("backup", ExitStatus::Code(0));
    }
    let h = history(&s, "backup");
    assert_eq!(h.len(), candor_brain::jobs::HISTORY);
    assert_eq!(h.last().unwrap().run, 60);
    let job = s.facts.get("backup").unwrap().job.clone().unwrap();
    assert_eq!(job.counts.done, 60);
}

#[test]
fn stop_and_start_of_a_scheduled_job_pause_and_resume_its_schedule() {
    let mut s = Sim::with(JOB, scheduled(Overlap::Skip, CatchUp::None), vec![]);
    s.request(Request::Stop("backup".into()));
    s.advance(secs(120));
    assert_eq!(s.spawns("backup"), 0, "no fire while stopped");
    assert_eq!(s.state("backup"), Stopped);
    s.request(Request::Start("backup".into()));
    assert_eq!(
        s.spawns("backup"),
        0,
        "start resumes the schedule, it does not run it"
    );
    assert!(
        s.reason("backup").contains("first run in"),
        "{}",
        s.reason("backup")
    );
    until_spawn(&mut s, "backup", secs(61));
}

#[test]
fn a_skipped_start_is_still_skipped_after_a_daemon_restart() {
    let saved = SavedJob {
        verdict: Some(candor_brain::jobs::SavedVerdict {
            skipped: true,
            reason: "condition exited 1: test -f /x; the start was skipped".into(),
        }),
        ..SavedJob::default()
    };
    let mut spec = sim::spec(JOB);
    oneshot(&mut spec, "backup").condition = Some(vec!["test".into()]);
    let now = candor_brain::Mono(secs(1000));
    let mut facts = candor_brain::Facts::new(&spec, secs(5), now);
    let name = candor_spec::ServiceName::new("backup").unwrap();
    // As a record of a kill -9 daemon adopts it: wanted, no run, nothing due.
    facts.svc_mut(&name).unwrap().start = None;
    facts.restore_job(&name, saved);
    let d = candor_brain::derive(&facts.services, &facts.services[&name], now);
    assert_eq!(d.state, Skipped, "{}", d.reason);
    assert!(d.reason.starts_with("condition exited 1"));
}

#[test]
fn after_a_restart_a_job_shows_its_last_run_and_counts_its_runs_on() {
    let last = candor_api::JobRun {
        run: 7,
        trigger: "schedule".into(),
        started_ms: 1_799_999_000_000,
        ended_ms: Some(1_799_999_001_000),
        result: "done".into(),
        code: Some(0),
        reason: "completed in 1s with exit 0".into(),
        ..Default::default()
    };
    let saved = SavedJob {
        history: vec![last],
        ..SavedJob::default()
    };
    let mut s = Sim::with(
        JOB,
        scheduled(Overlap::Skip, CatchUp::None),
        vec![("backup", saved)],
    );
    assert_eq!(s.state("backup"), Done, "{}", s.reason("backup"));
    assert!(
        s.reason("backup")
            .starts_with("completed in 1s with exit 0; next run in"),
        "{}",
        s.reason("backup")
    );
    until_spawn(&mut s, "backup", secs(61));
    assert_eq!(s.run_id("backup"), 8, "run ids go on from the history's");
}

#[test]
fn a_reload_applies_a_new_schedule_live_and_does_not_run_a_done_oneshot_again() {
    let mut s = Sim::with(JOB, scheduled(Overlap::Skip, CatchUp::None), vec![]);
    let mut spec = sim::spec(JOB);
    oneshot(&mut spec, "backup").schedule = Some(every(3600, CatchUp::None, Overlap::Skip));
    let Reply::Reload(out) = s.request(Request::Reload(std::sync::Arc::new(spec))) else {
        panic!("reload")
    };
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("schedule applied without a restart")),
        "{:?}",
        out.notes
    );
    let next = s
        .facts
        .get("backup")
        .unwrap()
        .job
        .as_ref()
        .unwrap()
        .next
        .unwrap();
    let now_ms = candor_brain::jobs::unix_ms(s.now.wall);
    assert!(
        next - now_ms > 60_000,
        "the hourly schedule's fire, not the minute's"
    );

    // A done oneshot whose command changes is not run again by the reload.
    let mut s = Sim::with(
        TWO,
        |spec| {
            oneshot(spec, "migrate");
        },
        vec![],
    );
    s.spawned("migrate");
    s.exits("migrate", ExitStatus::Code(0));
    let mut spec = sim::spec(&TWO.replace("/bin/migrate", "/bin/migrate2"));
    oneshot(&mut spec, "migrate");
    s.request(Request::Reload(std::sync::Arc::new(spec)));
    assert_eq!(s.spawns("migrate"), 1);
    assert_eq!(s.state("migrate"), Done);
    assert_eq!(
        s.facts.get("migrate").unwrap().spec.command,
        ["/bin/migrate2"]
    );
}
