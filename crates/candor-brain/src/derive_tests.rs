//! Table and property tests of `derive` on hand-built facts. Evidence lives inside the run it
//! was taken for, so another run's evidence cannot reach a verdict by construction.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use candor_core::budget::{Sample, Summary};
use candor_core::health::{Health, ProbeOutcome, SocketCheck};
use candor_core::Mono;
use candor_spec::{ProbeCheck, ProbeSpec, ServiceSpec};
use proptest::prelude::*;

use crate::derive::{derive, ServiceState, Services};
use crate::facts::{Run, Service, Spawn};

fn at(s: u64) -> Mono {
    Mono(Duration::from_secs(1000 + s))
}

fn spec() -> ServiceSpec {
    let mut s = ServiceSpec::with_command("api", &["/bin/api"]);
    s.probe = Some(ProbeSpec::with_check(ProbeCheck::Tcp {
        host: "127.0.0.1".into(),
        port: 1,
    }));
    s
}

fn run(ready: bool) -> Run {
    let mut r = Run::new(1, false);
    r.spawn = Spawn::Started { pid: 7, at: at(0) };
    r.ready = ready.then_some((at(0), "notify"));
    r
}

fn outcome(ok: bool, detail: &str) -> ProbeOutcome {
    ProbeOutcome {
        ok,
        detail: detail.into(),
        latency: Duration::from_millis(2),
        at: at(0),
    }
}

fn socket(exists: bool, accepts: bool) -> SocketCheck {
    SocketCheck {
        path: PathBuf::from("/run/api/rpc.sock"),
        exists,
        accepts,
        at: at(0),
    }
}

fn with(spec: ServiceSpec, mut run: Run, health: Health) -> Service {
    run.health = health;
    let mut svc = Service::new(Arc::new(spec), at(0));
    svc.start = None;
    svc.runs = 1;
    svc.run = Some(run);
    svc
}

fn state_of(svc: &Service, now: Mono) -> (ServiceState, String) {
    let d = derive(&Services::new(), svc, now);
    (d.state, d.reason)
}

#[test]
fn every_unhealthy_reason() {
    use ServiceState::*;
    let mut probe_failed = Health::for_run(1);
    for _ in 0..3 {
        probe_failed.probe.record(outcome(false, "HTTP 503"), 3, 1);
    }
    let cases: Vec<(Health, ServiceState, &str)> = vec![
        (
            Health::for_run(1),
            Running,
            "running as pid 7, ready via notify",
        ),
        (
            Health {
                notify_status: Some("serving 3 req/s".into()),
                ..Health::for_run(1)
            },
            Running,
            "running as pid 7, ready via notify; status: serving 3 req/s",
        ),
        (
            Health {
                sockets: vec![socket(false, false)],
                ..Health::for_run(1)
            },
            Unhealthy,
            "declared socket /run/api/rpc.sock missing on disk",
        ),
        (
            Health {
                sockets: vec![socket(true, false)],
                ..Health::for_run(1)
            },
            Unhealthy,
            "declared socket /run/api/rpc.sock refuses connections",
        ),
        (
            probe_failed,
            Unhealthy,
            "tcp probe failed 3 times in a row: HTTP 503",
        ),
        (
            Health {
                watchdog_missed: Some("watchdog timeout: no WATCHDOG=1 within 2s".into()),
                ..Health::for_run(1)
            },
            Unhealthy,
            "watchdog timeout: no WATCHDOG=1 within 2s",
        ),
    ];
    for (health, state, reason) in cases {
        let got = state_of(&with(spec(), run(true), health.clone()), at(0));
        assert_eq!((got.0, got.1.as_str()), (state, reason), "{health:?}");
    }
}

#[test]
fn probes_behind_their_schedule_are_said_to_be_the_daemons_delay() {
    // every 5s, timeout 1s: the next result is due 6 s after the last probe began.
    let mut spec = spec();
    if let Some(p) = spec.probe.as_mut() {
        (p.every, p.timeout) = (Duration::from_secs(5), Duration::from_secs(1));
    }
    let mut h = Health::for_run(1);
    h.probe.record(outcome(true, "connected"), 3, 1);
    let svc = with(spec, run(true), h);
    let (state, reason) = state_of(&svc, at(6));
    assert_eq!(state, ServiceState::Running);
    assert!(!reason.contains("late"), "{reason}");
    let (state, reason) = state_of(&svc, at(9));
    assert_eq!(state, ServiceState::Running, "the verdict stands");
    assert!(
        reason.ends_with("; probes running 3s late: the daemon is saturated, not the service"),
        "{reason}"
    );
}

#[test]
fn a_stale_budget_sample_is_not_evidence_about_now() {
    let summary = Summary {
        latest: Sample {
            at: at(0),
            fds: 900,
            fd_limit: 1000,
            rss: 0,
        },
        per_hour: None,
        eta: None,
        valid_for: Duration::from_secs(15),
    };
    let h = Health {
        budget: Some(summary),
        ..Health::for_run(1)
    };
    let svc = with(spec(), run(true), h);
    assert_eq!(state_of(&svc, at(10)).0, ServiceState::Degraded);
    assert_eq!(state_of(&svc, at(60)).0, ServiceState::Running);
}

#[test]
fn a_run_that_replaced_an_earlier_supervisors_says_so_until_ready() {
    let mut r = run(false);
    r.after_supervisor_restart = true;
    let svc = with(spec(), r.clone(), Health::for_run(1));
    assert_eq!(
        state_of(&svc, at(0)),
        (
            ServiceState::Starting,
            "re-checking after supervisor restart: spawned as pid 7, waiting for readiness (ready = \"started\")".into()
        )
    );
    r.ready = Some((at(0), "probe"));
    let svc = with(spec(), r, Health::for_run(1));
    assert_eq!(state_of(&svc, at(0)).0, ServiceState::Running);
}

#[test]
fn sockets_count_only_from_checks_after_ready() {
    let mut s = spec();
    s.sockets = vec![PathBuf::from("/run/api/rpc.sock")];
    let mut r = run(false);
    r.ready = Some((at(10), "notify"));
    let check = |secs: u64, exists: bool| SocketCheck {
        at: at(secs),
        ..socket(exists, exists)
    };
    let cases = [
        (vec![], ServiceState::Starting),
        // Missing before ready: not evidence about now.
        (vec![check(5, false)], ServiceState::Starting),
        (vec![check(5, true)], ServiceState::Starting),
        (vec![check(11, true)], ServiceState::Running),
        (vec![check(11, false)], ServiceState::Unhealthy),
    ];
    for (checks, state) in cases {
        let h = Health {
            sockets: checks.clone(),
            ..Health::for_run(1)
        };
        let got = state_of(&with(s.clone(), r.clone(), h), at(20));
        assert_eq!(got.0, state, "{checks:?}: {}", got.1);
    }
    let got = state_of(&with(s, r, Health::for_run(1)), at(20));
    assert_eq!(
        got.1,
        "ready via notify as pid 7; checking its declared sockets"
    );
}

#[test]
fn waiting_for_readiness_shows_the_last_failed_probe() {
    let mut h = Health::for_run(1);
    h.probe.record(outcome(false, "connection refused"), 3, 1);
    let got = state_of(&with(spec(), run(false), h), at(0));
    assert_eq!(got.0, ServiceState::Starting);
    assert!(
        got.1.ends_with("(last probe: connection refused)"),
        "{}",
        got.1
    );
}

#[test]
fn not_started_and_stopped_read_differently() {
    let mut svc = Service::new(Arc::new(spec()), at(0));
    svc.start = None;
    svc.wanted = false;
    assert_eq!(
        state_of(&svc, at(0)),
        (
            ServiceState::Stopped,
            "not started; `candor start api` starts it".into()
        )
    );
    let mut r = run(true);
    r.ended = Some(at(1));
    svc.run = Some(r);
    assert_eq!(
        state_of(&svc, at(2)),
        (
            ServiceState::Stopped,
            "stopped by request; `candor start api` starts it".into()
        )
    );
}

fn arb_health() -> impl Strategy<Value = Health> {
    (
        proptest::collection::vec((any::<bool>(), any::<bool>()), 0..4),
        proptest::collection::vec(any::<bool>(), 0..8),
        any::<bool>(),
    )
        .prop_map(|(sockets, probes, watchdog)| {
            let mut h = Health::for_run(1);
            h.sockets = sockets
                .into_iter()
                .map(|(e, a)| socket(e, e && a))
                .collect();
            for ok in probes {
                h.probe.record(outcome(ok, "x"), 2, 1);
            }
            if watchdog {
                h.watchdog_missed = Some("watchdog timeout".into());
            }
            h
        })
}

proptest! {
    #[test]
    fn never_running_while_a_declared_socket_is_missing(h in arb_health(), ready in any::<bool>()) {
        let got = state_of(&with(spec(), run(ready), h.clone()), at(0));
        if h.sockets.iter().any(|s| !s.exists) {
            prop_assert_ne!(got.0, ServiceState::Running);
        }
    }

    #[test]
    fn never_running_before_ready(h in arb_health()) {
        prop_assert_eq!(state_of(&with(spec(), run(false), h), at(0)).0, ServiceState::Starting);
    }

    #[test]
    fn running_only_when_all_evidence_of_this_run_is_good(h in arb_health()) {
        let got = state_of(&with(spec(), run(true), h.clone()), at(0));
        let bad = h.watchdog_missed.is_some()
            || h.probe.unhealthy
            || h.sockets.iter().any(|s| s.problem().is_some());
        prop_assert_eq!(got.0 == ServiceState::Running, !bad);
    }
}
