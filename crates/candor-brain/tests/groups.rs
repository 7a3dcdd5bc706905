//! Replicated services as input sequences: instances start as ordinary services; a rolling
//! update never has fewer instances ready than it may; a new run that fails halts it with the
//! old runs serving; scale; the reload plan is what reload does.

mod sim;

use candor_brain::{Effect, Reply, Request, RolloutAction, ServiceState::*};
use candor_core::ExitStatus;
use sim::{arc_spec, secs, Sim};

fn config(replicas: u32, version: &str, extra: &str) -> String {
    format!(
        "[service.db]\ncommand = [\"/bin/db\"]\n[service.api]\ncommand = [\"/bin/api\", \"--port\", \"80{{instance}}\"]\nreplicas = {replicas}\nready = \"notify\"\nenv = {{ VERSION = \"{version}\" }}\nupdate = {{ min_ready = \"1s\" }}\nafter = [\"db\"]\n{extra}"
    )
}

/// A spawn of `name` was asked and not yet reported.
fn pending(s: &Sim, name: &str) -> bool {
    s.facts
        .get(name)
        .and_then(|svc| svc.live())
        .is_some_and(|r| matches!(r.spawn, candor_brain::Spawn::Pending))
}

/// A stop of `name`'s run was asked and the run is not over.
fn stopping(s: &Sim, name: &str) -> bool {
    s.facts
        .get(name)
        .and_then(|svc| svc.live())
        .is_some_and(|r| r.stop.is_some())
}

fn names(s: &Sim) -> Vec<String> {
    s.facts
        .services
        .keys()
        .map(|n| n.to_string())
        .filter(|n| n.starts_with("api@"))
        .collect()
}

/// Spawn whatever was asked and say READY for it.
fn ready(s: &mut Sim, name: &str) {
    s.spawned(name);
    s.notify(name, &[("READY", "1")]);
}

/// Instances up, ready and not being stopped.
fn serving(s: &Sim) -> usize {
    s.facts
        .services
        .values()
        .filter(|svc| svc.spec.instance.is_some())
        .filter(|svc| {
            svc.live()
                .is_some_and(|r| r.is_serving() && r.ready.is_some())
        })
        .count()
}

fn group(s: &Sim) -> (candor_brain::ServiceState, String) {
    let g = &s.facts.groups[&candor_spec::ServiceName::new("api").unwrap()];
    let name = candor_spec::ServiceName::new("api").unwrap();
    candor_brain::groups::derive_group(&s.facts.services, g, &name, s.now.mono)
}

fn up3() -> Sim {
    let mut s = Sim::new(&config(3, "1", ""));
    s.up("db");
    for n in ["api@1", "api@2", "api@3"] {
        assert!(pending(&s, n), "{n} asked");
        ready(&mut s, n);
        assert_eq!(s.state(n), Running, "{}", s.reason(n));
    }
    s
}

fn env_of(s: &Sim, name: &str) -> String {
    s.facts.get(name).unwrap().spec.env["VERSION"].clone()
}

#[test]
fn instances_start_after_their_dependency_with_their_own_index() {
    let s = up3();
    assert_eq!(names(&s), ["api@1", "api@2", "api@3"]);
    assert_eq!(
        s.facts.get("api@2").unwrap().spec.command,
        ["/bin/api", "--port", "802"]
    );
    assert_eq!(group(&s), (Running, "3/3 running".to_string()));
}

#[test]
fn a_rolling_update_replaces_one_instance_at_a_time_and_never_has_fewer_than_three_ready() {
    let mut s = up3();
    let Reply::Reload(out) = s.request(Request::Reload(arc_spec(&config(3, "2", "")))) else {
        panic!("reload")
    };
    assert_eq!(out.changed, ["api"]);
    // The spare starts first, on the new config; nobody is stopped yet.
    assert!(pending(&s, "api@4"));
    assert_eq!(env_of(&s, "api@4"), "2");
    assert!(!stopping(&s, "api@1"));
    let mut guard = 0;
    while s.facts.get("api@4").is_some() || names(&s).iter().any(|n| env_of(&s, n) == "1") {
        guard += 1;
        assert!(guard < 40, "rollout did not finish: {:?}", group(&s));
        assert!(serving(&s) >= 3, "fewer than 3 ready: {:?}", group(&s));
        // Whatever was asked: spawn it and make it ready; a stop ends.
        let asked: Vec<String> = names(&s).into_iter().filter(|n| pending(&s, n)).collect();
        for n in asked {
            ready(&mut s, &n);
        }
        let stopping: Vec<String> = names(&s).into_iter().filter(|n| stopping(&s, n)).collect();
        for n in stopping {
            assert!(serving(&s) >= 3, "a stop with fewer than 3 others ready");
            s.stopped(&n);
        }
        s.advance(secs(1));
    }
    assert_eq!(names(&s), ["api@1", "api@2", "api@3"]);
    for n in ["api@1", "api@2", "api@3"] {
        assert_eq!(env_of(&s, n), "2");
        assert_eq!(s.state(n), Running);
    }
    assert_eq!(group(&s), (Running, "3/3 running".to_string()));
    let done = s.all_notes().into_iter().any(|n| {
        n.0 == "api"
            && n.2
                .starts_with("rollout done: 3 of 3 instances on generation 2")
    });
    assert!(done, "{:?}", s.all_notes());
}

#[test]
fn a_new_run_that_fails_before_ready_halts_the_rollout_with_the_old_runs_serving() {
    let mut s = up3();
    s.request(Request::Reload(arc_spec(&config(3, "2", ""))));
    // The spare comes up and settles; api@1 is replaced.
    ready(&mut s, "api@4");
    s.advance(secs(1));
    assert!(stopping(&s, "api@1"));
    s.stopped("api@1");
    assert!(pending(&s, "api@1"));
    assert_eq!(env_of(&s, "api@1"), "2");
    // Its new run exits before it is ready.
    s.spawned("api@1");
    s.exits("api@1", ExitStatus::Code(1));
    let (state, reason) = group(&s);
    assert_eq!(state, Degraded);
    assert!(
        reason.starts_with("rollout halted at api@1: new run exited with code 1")
            && reason.contains(
                "before ready; 0 of 3 updated; `candor rollout undo api` returns to the old config"
            ),
        "{reason}"
    );
    // The event says the same.
    assert!(s.all_notes().iter().any(|n| n.0 == "api" && n.2 == reason));
    // api@1 comes back on the old config; the others never stopped.
    assert_eq!(env_of(&s, "api@1"), "1");
    for n in ["api@2", "api@3"] {
        assert_eq!(s.state(n), Running);
        assert!(!stopping(&s, n));
    }
    // Undo: back to version 1 everywhere, the spare goes.
    assert_eq!(
        s.request(Request::Rollout("api".into(), RolloutAction::Undo)),
        Reply::Done
    );
    for _ in 0..10 {
        let asked: Vec<String> = names(&s).into_iter().filter(|n| pending(&s, n)).collect();
        for n in asked {
            ready(&mut s, &n);
        }
        let stopping: Vec<String> = names(&s).into_iter().filter(|n| stopping(&s, n)).collect();
        for n in stopping {
            s.stopped(&n);
        }
        s.advance(secs(1));
    }
    for n in ["api@1", "api@2", "api@3"] {
        assert_eq!(env_of(&s, n), "1");
    }
    assert_eq!(names(&s), ["api@1", "api@2", "api@3"]);
    assert_eq!(group(&s).0, Running, "{:?}", group(&s));
}

#[test]
fn scale_starts_new_instances_and_stops_the_highest_first() {
    let mut s = up3();
    let reply = s.request(Request::Scale {
        name: "api".into(),
        replicas: 4,
        specs: None,
    });
    assert_eq!(reply, Reply::Done);
    assert!(pending(&s, "api@4"));
    ready(&mut s, "api@4");
    assert_eq!(group(&s), (Running, "4/4 running".to_string()));
    s.request(Request::Scale {
        name: "api".into(),
        replicas: 2,
        specs: None,
    });
    assert!(stopping(&s, "api@4") && stopping(&s, "api@3"));
    assert!(!stopping(&s, "api@2"));
    s.stopped("api@4");
    s.stopped("api@3");
    assert_eq!(names(&s), ["api@1", "api@2"]);
    // A plain service cannot be scaled, and says how.
    let Reply::Error { status: 404, error } = s.request(Request::Scale {
        name: "db".into(),
        replicas: 2,
        specs: None,
    }) else {
        panic!()
    };
    assert!(error.contains("set `replicas = 1`"), "{error}");
}

#[test]
fn the_reload_plan_names_what_reload_then_does() {
    let s = up3();
    let next = arc_spec(&format!(
        "{}[service.cache]\ncommand = [\"/bin/cache\"]\n",
        config(3, "2", "").replace(
            "[service.db]\ncommand = [\"/bin/db\"]",
            "[service.db]\ncommand = [\"/bin/db\", \"-v\"]"
        )
    ));
    let plan = candor_brain::plan::plan(&s.facts, &next);
    let lines: Vec<&str> = plan.services.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(
        lines,
        [
            "api: rolling restart of 3 instances (env.VERSION changed)",
            "cache: start (new)",
            "db: restart (command changed) — stops its only instance: it is down until the new run is up",
        ]
    );
    assert!(plan.services[2].all_at_once && !plan.services[0].all_at_once);
    let mut s = s;
    let Reply::Reload(out) = s.request(Request::Reload(next)) else {
        panic!()
    };
    assert_eq!(out.changed, ["api", "db"]);
    assert_eq!(out.added, ["cache"]);
    // Rolling: the spare first (it waits for db, which restarts).
    assert!(
        s.reason("api@4").contains("waiting for db"),
        "{}",
        s.reason("api@4")
    );
    assert!(stopping(&s, "db"));
}

#[test]
fn overlap_starts_the_new_run_beside_the_old_and_stops_the_old_once_ready() {
    let cfg = |v: &str| {
        format!("[service.web]\ncommand = [\"/bin/web\"]\nready = \"notify\"\nenv = {{ V = \"{v}\" }}\nsockets = [{{ listen = \"127.0.0.1:18080\", activate = true }}]\nupdate = {{ strategy = \"overlap\", min_ready = \"0s\" }}\n")
    };
    let mut s = Sim::new(&cfg("1"));
    ready(&mut s, "web@1");
    s.request(Request::Reload(arc_spec(&cfg("2"))));
    assert!(pending(&s, "web@2"));
    assert!(
        !stopping(&s, "web@1"),
        "the old run serves until the new is ready"
    );
    s.spawned("web@2");
    assert!(!stopping(&s, "web@1"));
    s.notify("web@2", &[("READY", "1")]);
    assert!(stopping(&s, "web@1"));
    let _ = count_spawns(&s);
}

fn count_spawns(s: &Sim) -> usize {
    sim::count(&s.all, |e| matches!(e, Effect::Spawn { .. }))
}
