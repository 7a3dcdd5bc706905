//! Jobs with real processes: a oneshot before the service that needs it, failures and
//! retries, conditions that skip or fail a start, a timeout, schedules (their fires, the
//! lateness of each run, what a fire does while the last run goes on), catch-up after the
//! daemon was down, history across kill -9, and `candor run --wait`.

mod job_view;

use std::time::Duration;

use candor_scenarios::{alive, reap_orphans, wait_for, Daemon};
use job_view::{ended, job, job_events, marks, now_ms, runs, wait_job_state, wait_runs};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn reason(v: &Value) -> &str {
    v["reason"].as_str().unwrap_or_default()
}

/// A oneshot that appends `start <ms> <pid>` and `end <ms> <pid>` to `{dir}/NAME.marks`
/// around `work` (a shell command).
fn marked(name: &str, work: &str, more: &str) -> String {
    format!(
        r#"
[service.{name}]
type = "oneshot"
command = ["sh", "-c", "echo start $(date +%s%N) $$ >> {{dir}}/{name}.marks; {work}; echo end $(date +%s%N) $$ >> {{dir}}/{name}.marks"]
{more}
"#
    )
}

/// (start ms, end ms, pid) of each run in a marks file, from its own words; a run killed
/// before its end has none.
fn spans(d: &Daemon, name: &str) -> Vec<(i64, Option<i64>, u64)> {
    let all = marks(&d.path(&format!("{name}.marks")));
    all.iter()
        .filter(|(w, _, _)| w == "start")
        .map(|(_, at, pid)| {
            let end = all
                .iter()
                .find(|(w, _, p)| w == "end" && p == pid)
                .map(|m| m.1);
            (*at, end, *pid)
        })
        .collect()
}

#[test]
fn migrate_then_api() {
    let d = Daemon::start(
        r#"
[service.migrate]
type = "oneshot"
command = ["sh", "-c", "sleep 0.5; touch {dir}/migrated"]

[service.api]
command = ["sh", "-c", "test -f {dir}/migrated || exit 3; exec sleep 1000"]
after = ["migrate"]
"#,
    );
    let api = d.wait_state("api", "running", T);
    // It never ran before the migration was done: its first run is the one running.
    assert_eq!(api["restarts"], 0, "api ran before migrate was done: {api}");
    assert_eq!(api["runs"], 1, "{api}");
    assert!(api["last_exit"].is_null(), "{api}");
    let m = wait_job_state(&d, "migrate", "done", T);
    let r = reason(&m);
    assert!(
        r.starts_with("completed in ") && r.contains("s with exit 0"),
        "migrate's reason: {m}"
    );
    let h = wait_runs(&d, "migrate", "one run done", T, |h| {
        ended(h, "done").len() == 1
    });
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(h[0]["trigger"], "start");
    assert_eq!(h[0]["code"], 0);
    assert!(h[0]["duration_ms"].as_u64().unwrap_or(0) >= 500, "{h:#?}");
    // The one event of its end carries the same entry.
    let ev = wait_for("migrate's done event", T, || {
        job_events(&d, "migrate")
            .into_iter()
            .find(|e| e["state"] == "done")
    });
    assert_eq!(ev["detail"]["job"]["run"], h[0]["run"], "{ev}");
}

#[test]
fn a_failing_oneshot_fails_and_on_failure_retries_exactly_retries_times() {
    let d = Daemon::start(
        r#"
[service.once]
type = "oneshot"
command = ["sh", "-c", "echo run >> {dir}/once.runs; exit 1"]

[service.retried]
type = "oneshot"
command = ["sh", "-c", "echo run >> {dir}/retried.runs; exit 1"]
restart = "on-failure"
retries = 2
backoff = { initial = "100ms", max = "200ms" }
"#,
    );
    let once = wait_job_state(&d, "once", "failed", T);
    assert!(reason(&once).contains("exit"), "{once}");
    let retried = wait_job_state(&d, "retried", "failed", T);
    let h = wait_runs(&d, "retried", "three failed runs", T, |h| {
        ended(h, "failed").len() >= 3
    });
    // Ten backoffs' time in which no further run may start (backoff max is 200 ms).
    std::thread::sleep(Duration::from_secs(2));
    let count = |f: &str| {
        std::fs::read_to_string(d.path(f))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(count("once.runs"), 1, "once ran again");
    assert_eq!(count("retried.runs"), 3, "retries = 2 is 3 runs: {h:#?}");
    let h = runs(&d, "retried");
    assert_eq!(h.len(), 3, "{h:#?}");
    let triggers: Vec<&str> = h.iter().map(|r| r["trigger"].as_str().unwrap()).collect();
    assert_eq!(triggers, ["start", "retry", "retry"], "{h:#?}");
    assert!(h.iter().all(|r| r["code"] == 1), "{h:#?}");
    assert_eq!(d.state("retried"), "failed", "{retried}");
    assert_eq!(job(&d, "retried")["counts"]["failed"], 3);
}

#[test]
fn a_condition_skips_and_255_fails() {
    let d = Daemon::start(
        r#"
[service.gated]
type = "oneshot"
command = ["touch", "{dir}/gated.ran"]
condition = ["test", "-f", "/nonexistent"]

[service.after_gated]
command = ["sleep", "1000"]
after = ["gated"]

[service.broken]
type = "oneshot"
command = ["touch", "{dir}/broken.ran"]
condition = ["sh", "-c", "exit 255"]
"#,
    );
    let gated = wait_job_state(&d, "gated", "skipped", T);
    assert!(
        reason(&gated).starts_with("condition exited 1"),
        "gated: {gated}"
    );
    // A skipped start satisfies `after`.
    d.wait_state("after_gated", "running", T);
    let broken = wait_job_state(&d, "broken", "failed", T);
    assert!(reason(&broken).contains("255"), "broken: {broken}");
    assert!(!d.path("gated.ran").exists(), "gated ran anyway");
    assert!(!d.path("broken.ran").exists(), "broken ran anyway");
    let h = wait_runs(&d, "gated", "the skipped start", T, |h| {
        !ended(h, "skipped").is_empty()
    });
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(h[0]["run"], 0, "a skipped start has no run: {h:#?}");
    assert_eq!(job(&d, "gated")["counts"]["skipped"], 1);
    let ev = wait_for("gated's skipped event", T, || {
        job_events(&d, "gated")
            .into_iter()
            .find(|e| e["state"] == "skipped")
    });
    assert!(reason(&ev).starts_with("condition exited 1"), "{ev}");
}

#[test]
fn a_oneshot_past_its_timeout_is_stopped_and_failed() {
    let d = Daemon::start(
        r#"
[service.slow]
type = "oneshot"
command = ["sleep", "100"]
timeout = "1s"
stop = { timeout = "2s" }
"#,
    );
    let pid = wait_for("slow's pid", T, || d.status("slow")["pid"].as_u64());
    let slow = wait_job_state(&d, "slow", "failed", T);
    assert!(reason(&slow).contains("timeout"), "{slow}");
    assert!(!alive(pid), "the timed-out run still lives");
    let h = wait_runs(&d, "slow", "the failed run", T, |h| {
        !ended(h, "failed").is_empty()
    });
    let r = &h[0];
    assert!(
        reason(r).contains("timeout 1s"),
        "the history's reason: {r}"
    );
    let ran = r["duration_ms"].as_u64().unwrap_or(0);
    // At its timeout, then stopped by SIGTERM (sleep dies of it at once).
    assert!((1000..2500).contains(&ran), "ran {ran} ms: {r}");
}

#[test]
fn a_schedule_fires_each_period_and_each_run_says_its_fire() {
    let d = Daemon::start(&marked("tick", "true", r#"schedule = { every = "2s" }"#));
    let h = wait_runs(&d, "tick", "three scheduled runs done", T, |h| {
        ended(h, "done").len() >= 3
    });
    let done: Vec<&Value> = ended(&h, "done");
    assert!(done.iter().all(|r| r["trigger"] == "schedule"), "{done:#?}");
    let fires: Vec<i64> = done
        .iter()
        .map(|r| r["scheduled_ms"].as_i64().expect("scheduled_ms"))
        .collect();
    for w in fires.windows(2) {
        assert_eq!(w[1] - w[0], 2000, "fires one period apart: {fires:?}");
    }
    // Each run's own start against its fire: logged, and within the period.
    let starts = spans(&d, "tick");
    let mut late = Vec::new();
    for fire in &fires {
        let own = starts
            .iter()
            .map(|s| s.0)
            .find(|s| *s >= *fire - 50 && *s < *fire + 2000)
            .unwrap_or_else(|| {
                panic!("no run started within the period of fire {fire}: {starts:?}")
            });
        late.push(own - fire);
    }
    eprintln!("lateness of each run (its own start - its fire), ms: {late:?}");
    assert!(late.iter().all(|l| (0..2000).contains(l)), "{late:?}");
}

fn overlap_config(overlap: &str) -> String {
    marked(
        "job",
        "sleep 2.5",
        &format!(r#"schedule = {{ every = "1s", overlap = "{overlap}" }}"#),
    )
}

/// No two of the runs a job wrote marks for were under way at once.
fn assert_no_two_at_once(spans: &[(i64, Option<i64>, u64)]) {
    for w in spans.windows(2) {
        let end = w[0].1.expect("a run that was not killed wrote its end");
        assert!(
            w[1].0 >= end,
            "a run started at {} while the one before ran until {end}: {spans:?}",
            w[1].0
        );
    }
}

#[test]
fn overlap_skip_never_runs_two_at_once() {
    let d = Daemon::start(&overlap_config("skip"));
    let h = wait_runs(&d, "job", "three runs done", T, |h| {
        ended(h, "done").len() >= 3
    });
    let spans: Vec<_> = spans(&d, "job")
        .into_iter()
        .filter(|s| s.1.is_some())
        .collect();
    assert!(spans.len() >= 3, "{spans:?}");
    assert_no_two_at_once(&spans);
    // Each run started at its own fire, not late behind the last one.
    for r in ended(&h, "done") {
        let late = r["started_ms"].as_i64().unwrap() - r["scheduled_ms"].as_i64().unwrap();
        assert!(late < 1000, "a skip run waited: {r}");
    }
    let said = d
        .events()
        .into_iter()
        .any(|e| e["service"] == "job" && reason(&e).contains("overlap = \"skip\""));
    assert!(said, "no event said a fire was skipped");
}

#[test]
fn overlap_kill_previous_stops_the_run_before_the_next() {
    reap_orphans();
    let d = Daemon::start(&overlap_config("kill-previous"));
    let h = wait_runs(&d, "job", "three runs stopped for the next", T, |h| {
        h.iter()
            .filter(|r| reason(r).contains("kill-previous"))
            .count()
            >= 3
    });
    let killed: Vec<&Value> = h
        .iter()
        .filter(|r| reason(r).contains("kill-previous"))
        .collect();
    assert!(
        killed.iter().all(|r| r["result"] == "failed"),
        "{killed:#?}"
    );
    // Stopped at the next fire, a period in, not left to finish its 2.5 s.
    assert!(
        killed
            .iter()
            .all(|r| r["duration_ms"].as_u64().unwrap_or(u64::MAX) < 2500),
        "{killed:#?}"
    );
    // Each stopped run ended before the next one started.
    for w in h.windows(2) {
        if let (Some(end), Some(next)) = (w[0]["ended_ms"].as_i64(), w[1]["started_ms"].as_i64()) {
            assert!(
                next >= end,
                "run {} started before {} ended: {h:#?}",
                w[1]["run"],
                w[0]["run"]
            );
        }
    }
    // The stopped runs never wrote their end, and none of them lives.
    let spans = spans(&d, "job");
    let unfinished: Vec<_> = spans.iter().filter(|s| s.1.is_none()).collect();
    assert!(unfinished.len() >= 2, "{spans:?}");
    let live = d.status("job")["pid"].as_u64();
    for s in &unfinished {
        if Some(s.2) != live {
            wait_for(&format!("killed run {} gone", s.2), T, || {
                (!alive(s.2)).then_some(())
            });
        }
    }
}

#[test]
fn overlap_queue_runs_back_to_back() {
    let d = Daemon::start(&overlap_config("queue"));
    let h = wait_runs(&d, "job", "three runs done", T, |h| {
        ended(h, "done").len() >= 3
    });
    let done = ended(&h, "done");
    // A queued run waited for the last one: it started after its fire by more than a period.
    let waited = done
        .iter()
        .any(|r| r["started_ms"].as_i64().unwrap() - r["scheduled_ms"].as_i64().unwrap() > 1000);
    assert!(waited, "no run waited in the queue: {done:#?}");
    // ...and started as the one before ended, not at a later fire.
    for w in done.windows(2) {
        let gap = w[1]["started_ms"].as_i64().unwrap() - w[0]["ended_ms"].as_i64().unwrap();
        assert!((0..400).contains(&gap), "{gap} ms between runs: {done:#?}");
    }
    let spans: Vec<_> = spans(&d, "job")
        .into_iter()
        .filter(|s| s.1.is_some())
        .collect();
    assert_no_two_at_once(&spans);
}

/// A job every 2 s: one scheduled run, the daemon shut down for 5 s (two fires missed), then
/// started again; the runs after the restart.
fn down_and_up(catch_up: &str) -> (Daemon, Vec<Value>, i64, i64) {
    let mut d = Daemon::start(&marked(
        "nightly",
        "true",
        &format!(r#"schedule = {{ every = "2s", catch_up = "{catch_up}" }}"#),
    ));
    wait_runs(&d, "nightly", "a scheduled run", T, |h| {
        ended(h, "done").iter().any(|r| r["trigger"] == "schedule")
    });
    d.shutdown();
    let down = now_ms();
    // The machine is down for a while; nothing to wait on.
    std::thread::sleep(Duration::from_secs(5));
    let up = now_ms();
    d.spawn();
    // Until a scheduled run after the restart: whatever catch-up did came before it.
    let h = wait_runs(&d, "nightly", "a scheduled run after the restart", T, |h| {
        h.iter().any(|r| {
            r["trigger"] == "schedule"
                && r["result"] == "done"
                && r["started_ms"].as_i64().unwrap_or(0) > up
        })
    });
    (d, h, down, up)
}

#[test]
fn catch_up_once_runs_one_missed_fire_at_start() {
    let (_d, h, down, up) = down_and_up("once");
    let caught: Vec<&Value> = h.iter().filter(|r| r["trigger"] == "catch-up").collect();
    assert_eq!(caught.len(), 1, "exactly one catch-up run: {h:#?}");
    let c = caught[0];
    let fire = c["scheduled_ms"].as_i64().expect("the missed fire");
    assert!(
        (down..=up).contains(&fire),
        "the caught-up fire {fire} is not one missed while down ({down}..{up}): {c}"
    );
    let started = c["started_ms"].as_i64().unwrap();
    eprintln!(
        "catch-up run started {} ms after the daemon was started",
        started - up
    );
    assert!(started - up < 5000, "the catch-up run came late: {c}");
    assert_eq!(c["result"], "done", "{c}");
}

#[test]
fn catch_up_none_makes_up_nothing() {
    let (_d, h, _down, _up) = down_and_up("none");
    assert!(
        h.iter().all(|r| r["trigger"] != "catch-up"),
        "a catch-up run with catch_up = \"none\": {h:#?}"
    );
}

#[test]
fn history_survives_kill_9_and_the_next_daemon_adds_to_it() {
    reap_orphans();
    let mut d = Daemon::start(&marked("often", "true", r#"schedule = { every = "1s" }"#));
    let file = d.path("state/jobs/often.json");
    // Three runs written to the job's file, so a kill now keeps them.
    wait_for("three runs in often's history file", T, || {
        let saved: Value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
        let n = saved["history"]
            .as_array()?
            .iter()
            .filter(|r| r["result"] == "done")
            .count();
        (n >= 3).then_some(())
    });
    let before: Vec<Value> = ended(&runs(&d, "often"), "done")
        .into_iter()
        .cloned()
        .collect();
    d.kill_daemon();
    let up = now_ms();
    d.spawn();
    let after = wait_runs(&d, "often", "a run of the new daemon", T, |h| {
        h.iter()
            .any(|r| r["result"] == "done" && r["started_ms"].as_i64().unwrap_or(0) > up)
    });
    for old in &before {
        let kept = after
            .iter()
            .any(|r| r["run"] == old["run"] && r["started_ms"] == old["started_ms"]);
        assert!(kept, "run {} lost across kill -9: {after:#?}", old["run"]);
    }
    let counts = job(&d, "often")["counts"]["done"].as_u64().unwrap_or(0);
    assert!(
        counts as usize > before.len(),
        "counts start again from zero: {counts} done, {} before",
        before.len()
    );
}

#[test]
fn run_wait_exits_with_the_runs_result() {
    let d = Daemon::start(
        r#"
[service.ok]
type = "oneshot"
command = ["sh", "-c", "sleep 0.5; echo ran >> {dir}/ok.runs"]

[service.bad]
type = "oneshot"
command = ["sh", "-c", "sleep 0.5; exit 1"]
"#,
    );
    // Both run once at start; `run` is the second run.
    wait_job_state(&d, "ok", "done", T);
    wait_job_state(&d, "bad", "failed", T);
    let out = d.cli(&["run", "ok", "--wait"]);
    assert!(
        out.status.success(),
        "candor run ok --wait: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // --wait returned once the run was over.
    let lines = std::fs::read_to_string(d.path("ok.runs")).unwrap_or_default();
    assert_eq!(
        lines.lines().count(),
        2,
        "the run had not ended when --wait returned"
    );
    assert_eq!(d.state("ok"), "done");
    let h = wait_runs(&d, "ok", "the second run", T, |h| h.len() >= 2);
    assert_eq!(h[1]["trigger"], "candor run", "{h:#?}");
    assert_eq!(h[1]["result"], "done", "{h:#?}");

    let out = d.cli(&["run", "bad", "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "candor run bad --wait: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.state("bad"), "failed");
    let h = wait_runs(&d, "bad", "the second run", T, |h| h.len() >= 2);
    assert_eq!(h[1]["trigger"], "candor run", "{h:#?}");
    assert_eq!(h[1]["result"], "failed", "{h:#?}");
}

#[test]
fn a_failed_oneshot_keeps_what_is_after_it_from_starting() {
    let d = Daemon::start(
        r#"
[service.migrate]
type = "oneshot"
command = ["sh", "-c", "sleep 0.3; exit 2"]

[service.api]
command = ["sleep", "1000"]
after = ["migrate"]
"#,
    );
    wait_job_state(&d, "migrate", "failed", T);
    let api = d.status("api");
    assert_eq!(api["runs"], 0, "api ran after a failed migration: {api}");
    assert_ne!(api["state"], "running", "{api}");
    assert!(
        reason(&api).contains("migrate"),
        "api's reason names what it waits for: {api}"
    );
}

#[test]
fn a_run_under_way_at_kill_9_is_adopted_not_run_twice() {
    reap_orphans();
    let mut d = Daemon::start(&marked("long", "sleep 3", ""));
    let pid = wait_for("long's pid", T, || d.status("long")["pid"].as_u64());
    wait_for("long's start mark", T, || {
        (!spans(&d, "long").is_empty()).then_some(())
    });
    // Its history entry ("running") is in the job's file before the kill.
    d.wait_record("long", |r| r["process"]["pid"] == pid);
    wait_for("long's running entry saved", T, || {
        let saved: Value =
            serde_json::from_slice(&std::fs::read(d.path("state/jobs/long.json")).ok()?).ok()?;
        (saved["history"].as_array()?.len() == 1).then_some(())
    });
    d.kill_daemon();
    d.spawn();
    let h = wait_runs(&d, "long", "the adopted run's end recorded", T, |h| {
        h.iter().all(|r| r["result"] != "running") && !h.is_empty()
    });
    let s = spans(&d, "long");
    assert_eq!(s.len(), 1, "the oneshot ran again after the kill: {s:?}");
    assert!(
        s[0].1.is_some(),
        "the run was killed with the daemon: {s:?}"
    );
    assert_eq!(h.len(), 1, "{h:#?}");
    eprintln!(
        "the adopted run ended as: {} ({})",
        h[0]["result"], h[0]["reason"]
    );
    let state = d.state("long");
    assert!(
        state == "done" || reason(&h[0]).contains("unknown"),
        "a run that exited 0 is done, or says its exit is unknown: {state}, {h:#?}"
    );
}

#[test]
fn a_timeout_counts_from_the_runs_start_across_kill_9() {
    reap_orphans();
    let mut d = Daemon::start(
        r#"
[service.slow]
type = "oneshot"
command = ["sleep", "100"]
timeout = "4s"
stop = { timeout = "1s" }
"#,
    );
    let pid = wait_for("slow's pid", T, || d.status("slow")["pid"].as_u64());
    d.wait_record("slow", |r| r["process"]["pid"] == pid);
    // Killed 2.5 s into its 4 s: a timeout started again by the next daemon would end it
    // at 6.5 s or later.
    wait_for("slow 2.5 s into its run", T, || {
        (d.status("slow")["uptime_s"].as_f64()? >= 2.5).then_some(())
    });
    d.kill_daemon();
    d.spawn();
    let slow = wait_job_state(&d, "slow", "failed", T);
    assert!(reason(&slow).contains("timeout"), "{slow}");
    assert!(!alive(pid), "the timed-out run still lives");
    let h = runs(&d, "slow");
    assert_eq!(h.len(), 1, "{h:#?}");
    let ran = h[0]["ended_ms"].as_i64().unwrap() - h[0]["started_ms"].as_i64().unwrap();
    assert!(
        (4000..5500).contains(&ran),
        "ran {ran} ms under a 4 s timeout across a kill -9: {h:#?}"
    );
}

#[test]
fn a_oneshot_after_a_service_waits_for_it_to_be_ready() {
    let d = Daemon::start(
        r#"
[service.db]
command = ["{zoo}", "slow-ready", "--after", "1s"]
ready = "notify"

[service.seed]
type = "oneshot"
command = ["true"]
after = ["db"]
"#,
    );
    wait_job_state(&d, "seed", "done", T);
    let at_ms = |e: &Value| {
        humantime::parse_rfc3339(e["at"].as_str().unwrap())
            .expect("event time")
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let db: Vec<Value> = d
        .events()
        .into_iter()
        .filter(|e| e["service"] == "db")
        .collect();
    let ready = db.iter().find(|e| e["state"] == "running").map(at_ms);
    let first = db.iter().map(at_ms).min();
    let (Some(ready_ms), Some(first_ms)) = (ready, first) else {
        panic!("no running event of db: {db:#?}");
    };
    let h = runs(&d, "seed");
    assert_eq!(h.len(), 1, "{h:#?}");
    let started = h[0]["started_ms"].as_i64().unwrap();
    // In the step db was seen ready (an event is stamped as it is written, a moment after),
    // and not before its 1 s warm-up.
    assert!(
        started >= ready_ms - 50 && started >= first_ms + 900,
        "seed started at {started}; db's first event {first_ms}, ready {ready_ms}: {h:#?}"
    );
}
