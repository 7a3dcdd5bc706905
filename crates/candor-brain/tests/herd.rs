//! Shared causes and the restart budget, as input sequences: many services probing one
//! target that fails are not blamed nor restarted for it; health restarts are paced; crashes
//! never wait.

mod sim;

use candor_brain::{Effect, Held, ServiceState::*};
use candor_core::ExitStatus;
use sim::{count, secs, Sim};

/// `n` services probing one shared endpoint, plus `own` probing its own.
fn config(n: usize, extra: &str) -> String {
    let mut c = String::from(extra);
    for i in 0..n {
        c.push_str(&format!(
            "[service.s{i}]\ncommand = [\"/bin/app\"]\nready = \"started\"\nprobe = {{ http = {{ port = 8000, path = \"/\" }}, every = \"5s\" }}\n"
        ));
    }
    c.push_str("[service.own]\ncommand = [\"/bin/own\"]\nready = \"started\"\nprobe = { http = { port = 9000, path = \"/\" }, every = \"5s\" }\n");
    c
}

fn shared(n: usize) -> Sim {
    let mut s = Sim::new(&config(n, ""));
    for i in 0..n {
        s.up(&format!("s{i}"));
    }
    s.up("own");
    s
}

fn stops(s: &Sim) -> usize {
    count(&s.all, |e| matches!(e, Effect::Stop { .. }))
}

/// One probe period: every listed service's probe comes back.
fn round(s: &mut Sim, names: impl IntoIterator<Item = String>, ok: bool) {
    s.advance(secs(5));
    for name in names {
        s.probe(
            &name,
            ok,
            if ok { "HTTP 200" } else { "timed out after 1s" },
        );
    }
}

fn names(r: std::ops::Range<usize>) -> Vec<String> {
    r.map(|i| format!("s{i}")).collect()
}

#[test]
fn a_shared_cause_is_named_once_holds_restarts_and_ends_when_the_target_recovers() {
    let mut s = shared(20);
    for _ in 0..3 {
        round(&mut s, names(0..20), false);
    }
    let named: Vec<_> = s
        .all_notes()
        .into_iter()
        .filter(|n| n.1 == "shared-cause")
        .collect();
    assert_eq!(named.len(), 1, "{named:?}");
    assert!(named[0].2.contains("127.0.0.1:8000"), "{named:?}");
    for i in 0..20 {
        let name = format!("s{i}");
        assert_eq!(s.state(&name), Unhealthy, "{}", s.reason(&name));
        let reason = s.reason(&name);
        assert!(
            reason.starts_with(
                "http probe failed 3 times in a row: timed out after 1s — shared with "
            ) && reason.contains(" services probing 127.0.0.1:8000 for ")
                && reason.ends_with("; restart held until it recovers"),
            "{reason}"
        );
    }
    assert_eq!(stops(&s), 0, "no restart for a shared cause");
    // Still held a long time on.
    for _ in 0..6 {
        round(&mut s, names(0..20), false);
    }
    assert_eq!(stops(&s), 0);

    // The endpoint is back: as services pass, each is running at once.
    s.advance(secs(5));
    for i in 0..16 {
        s.probe(&format!("s{i}"), true, "HTTP 200");
        assert_eq!(s.state(&format!("s{i}")), Running);
    }
    let ended = s
        .all_notes()
        .into_iter()
        .filter(|n| n.1 == "shared-cause-ended")
        .count();
    assert_eq!(ended, 1, "ended once a quarter or fewer still fail");
    // Those not probed since wait for their next probe rather than being restarted on old news.
    for i in 16..20 {
        let name = format!("s{i}");
        assert_eq!(s.state(&name), Unhealthy);
        assert!(
            s.reason(&name).ends_with(
                "restart held: 127.0.0.1:8000 recovered, waiting for this service's next probe"
            ),
            "{}",
            s.reason(&name)
        );
    }
    s.advance(secs(1));
    assert_eq!(stops(&s), 0);
    for i in 16..19 {
        s.probe(&format!("s{i}"), true, "HTTP 200");
    }
    // The one that still fails after the recovery is its own problem: restarted.
    s.probe("s19", false, "HTTP 500");
    assert!(s.stop_asked("s19").is_some(), "{}", s.reason("s19"));
    assert_eq!(stops(&s), 1);
    assert!(s.facts.get("s19").unwrap().shared.is_none());
}

#[test]
fn a_really_broken_service_among_them_is_restarted_as_before() {
    let mut s = shared(20);
    for _ in 0..3 {
        round(&mut s, names(0..20), false);
        s.probe("own", false, "connection refused");
    }
    // The shared endpoint's services wait; the one with its own failing endpoint does not.
    assert!(s.stop_asked("own").is_some(), "{}", s.reason("own"));
    assert_eq!(stops(&s), 1);
    assert!(s.facts.get("own").unwrap().shared.is_none());
}

#[test]
fn the_restart_budget_holds_health_restarts_past_it_and_releases_them_as_the_window_moves() {
    // 30 services, each with its own endpoint: nothing shared. Budget: 10 % = 3 per 10 s.
    let mut c = String::new();
    for i in 0..30 {
        c.push_str(&format!(
            "[service.u{i}]\ncommand = [\"/bin/app\"]\nready = \"started\"\nprobe = {{ tcp = \"127.0.0.1:{}\", every = \"5s\" }}\n",
            7000 + i
        ));
    }
    let mut s = Sim::new(&c);
    let all: Vec<String> = (0..30).map(|i| format!("u{i}")).collect();
    for n in &all {
        s.up(n);
    }
    for _ in 0..3 {
        round(&mut s, all.clone(), false);
    }
    assert_eq!(stops(&s), 3, "the budget's 3, no more");
    let held: Vec<&String> = all
        .iter()
        .filter(|n| matches!(s.facts.get(n).unwrap().held, Some(Held::Budget { .. })))
        .collect();
    assert_eq!(held.len(), 27);
    let reason = s.reason(held[0]);
    assert!(
        reason.contains("; restart held: 3 restarts in the last 10s (restart budget), next in "),
        "{reason}"
    );
    // A timer brings the budget's next room (asked once, not once per held service).
    let Some(Held::Budget { until, .. }) = s.facts.get(held[0]).unwrap().held else {
        unreachable!()
    };
    let asked = count(&s.all, |e| matches!(e, Effect::Timer(t) if *t == until));
    // The three stops' SIGKILL timers fall at the same instant (stop timeout 10 s).
    assert_eq!(asked, 1 + 3, "one budget timer for 27 held services");
    // The window moves: three more, then three more, never more than 3 per 10 s.
    let before = stops(&s);
    s.advance(secs(10));
    assert_eq!(stops(&s) - before, 3);
    s.advance(secs(5));
    assert_eq!(stops(&s) - before, 3);
    s.advance(secs(5));
    assert_eq!(stops(&s) - before, 6);
}

#[test]
fn crashes_are_never_held_and_exempt_services_are_not_either() {
    let extra = "[daemon]\nrestart_budget = { max = 1 }\n[service.free]\ncommand = [\"/bin/free\"]\nready = \"started\"\nrestart_budget = false\nprobe = { http = { port = 8000, path = \"/\" }, every = \"5s\" }\n";
    let mut s = Sim::new(&config(10, extra));
    for i in 0..10 {
        s.up(&format!("s{i}"));
    }
    s.up("own");
    s.up("free");
    let mut shared_names = names(0..10);
    shared_names.push("free".into());
    for _ in 0..3 {
        round(&mut s, shared_names.clone(), false);
        s.probe("own", false, "connection refused");
    }
    // The budget (1) went to `own`; `free` is exempt from the budget and the shared cause.
    let stopped: Vec<&str> = s
        .all
        .iter()
        .filter_map(|e| match e {
            Effect::Stop { service, .. } => Some(service.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(stopped.len(), 2, "{stopped:?}");
    assert!(
        stopped.contains(&"own") && stopped.contains(&"free"),
        "{stopped:?}"
    );
    assert_eq!(s.state("free"), Stopping);
    // A crash while the budget is spent and a cause is named restarts at once (with backoff).
    s.exits("s3", ExitStatus::Code(1));
    assert_eq!(s.state("s3"), Backoff);
    let due = s.facts.get("s3").unwrap().start.unwrap().due;
    s.advance(due.since(s.now.mono));
    assert!(s.spawn_asked("s3").is_some(), "{}", s.reason("s3"));
    // Five crashes within seconds (of 12 services): named once as a cause they may share.
    for i in [0, 1, 2, 4, 5, 6] {
        s.exits(&format!("s{i}"), ExitStatus::Code(1));
    }
    let storms: Vec<_> = s
        .all_notes()
        .into_iter()
        .filter(|n| n.1 == "shared-cause" && n.2.contains("crashed within 5s of each other"))
        .collect();
    assert_eq!(storms.len(), 1, "{storms:?}");
    assert!(storms[0].2.starts_with("5 services crashed"), "{storms:?}");
}

#[test]
fn a_thousand_services_started_together_are_spawned_in_paced_steps() {
    let mut c = String::new();
    for i in 0..1000 {
        c.push_str(&format!("[service.b{i}]\ncommand = [\"/bin/app\"]\n"));
    }
    let mut s = Sim::new(&c);
    let spawns = |s: &Sim| count(&s.last, |e| matches!(e, Effect::Spawn { .. }));
    assert_eq!(spawns(&s), candor_brain::herd::SPAWN_BURST as usize);
    // Those not spawned yet are about to start, and a timer brings the next batch.
    assert_eq!(s.state("b999"), Starting);
    let mut total = spawns(&s);
    let mut ticks = 0;
    while total < 1000 {
        let next = s.timers();
        assert_eq!(next.len(), 1, "one timer for the next batch");
        s.advance(next[0].since(s.now.mono));
        let n = spawns(&s);
        assert!(n <= candor_brain::herd::SPAWN_REFILL as usize, "{n}");
        total += n;
        ticks += 1;
    }
    // 1000 over (1000 - 64) / 20 = 47 ticks of 100 ms: under five seconds.
    assert_eq!(ticks, 47);
}

#[test]
fn services_that_crash_together_come_back_spread_and_one_alone_keeps_its_exact_backoff() {
    let mut c = String::new();
    for i in 0..20 {
        c.push_str(&format!(
            "[service.c{i}]\ncommand = [\"/bin/app\"]\nbackoff = {{ initial = \"2s\", max = \"1m\", reset_after = \"1h\" }}\n"
        ));
    }
    let mut s = Sim::new(&c);
    for i in 0..20 {
        s.up(&format!("c{i}"));
    }
    let delay = |s: &Sim, n: &str| s.facts.get(n).unwrap().start.unwrap().due.since(s.now.mono);
    // The first crash is alone: exactly its backoff.
    s.exits("c0", ExitStatus::Code(1));
    assert_eq!(delay(&s, "c0"), secs(2));
    // The others crash in the same instant: each within the upper half, not all the same.
    let mut dues = std::collections::BTreeSet::new();
    for i in 1..20 {
        let n = format!("c{i}");
        s.exits(&n, ExitStatus::Code(1));
        let d = delay(&s, &n);
        assert!(d >= secs(1) && d <= secs(2), "{n}: {d:?}");
        dues.insert(d);
    }
    assert!(
        dues.len() >= 15,
        "{} distinct restart times of 19",
        dues.len()
    );
}
