//! Random input sequences against a model keeper. Whatever happens: never two live runs of
//! one service, never a spawn while a stop of it is in progress, every stop command comes with
//! its kill deadline, every timer is in the future, a refused stop is always retried, and once
//! the keeper works again a shutdown always ends.

mod sim;

use std::collections::HashMap;
use std::time::Duration;

use candor_brain::{
    derive, Delivery, Effect, Evidence, Input, Mono, Notify, Refusable, Request, ServiceState,
};
use candor_core::budget::Sample;
use candor_core::health::ProbeOutcome;
use candor_core::ExitStatus;
use proptest::prelude::*;
use sim::Sim;

const CONFIG: &str = r#"
[service.db]
command = ["/bin/db"]
probe = { tcp = "127.0.0.1:1", failures = 2 }
stop = { timeout = "1s" }
backoff = { initial = "100ms", max = "1s", reset_after = "5s" }

[service.api]
command = ["/bin/api"]
after = ["db"]
ready = "notify"
ready_timeout = "3s"
watchdog = "2s"
stop = { timeout = "2s" }
backoff = { initial = "200ms", max = "2s", reset_after = "5s" }
limits = { fd_warn = "50%", fd_restart = "90%" }

[service.job]
command = ["/bin/job"]
restart = "on-failure"
stop = { timeout = "0s" }
"#;

const RELOADED: &str = r#"
[service.db]
command = ["/bin/db", "--new"]
probe = { tcp = "127.0.0.1:1", failures = 2 }
stop = { timeout = "1s" }

[service.api]
command = ["/bin/api"]
after = ["db"]
ready = "notify"
ready_timeout = "3s"
watchdog = "2s"
stop = { timeout = "2s" }
backoff = { initial = "200ms", max = "2s", reset_after = "5s" }
limits = { fd_warn = "50%", fd_restart = "90%" }
"#;

const NAMES: [&str; 3] = ["db", "api", "job"];

#[derive(Clone, Debug)]
enum Act {
    Start(usize),
    Stop(usize),
    Restart(usize),
    ResetFailed(bool),
    Reload(bool),
    Shutdown,
    Advance(u64),
    Spawned(usize),
    SpawnFailed(usize),
    Exit(usize, i32, bool),
    Emptied(usize),
    Probe(usize, bool),
    Ready(usize),
    Watchdog(usize),
    Sample(usize, u64),
    Refuse(u8),
}

fn act() -> impl Strategy<Value = Act> {
    let svc = 0usize..3;
    prop_oneof![
        svc.clone().prop_map(Act::Start),
        svc.clone().prop_map(Act::Stop),
        svc.clone().prop_map(Act::Restart),
        any::<bool>().prop_map(Act::ResetFailed),
        any::<bool>().prop_map(Act::Reload),
        Just(Act::Shutdown),
        (0u64..3000).prop_map(Act::Advance),
        (0u64..3000).prop_map(Act::Advance),
        svc.clone().prop_map(Act::Spawned),
        svc.clone().prop_map(Act::Spawned),
        svc.clone().prop_map(Act::SpawnFailed),
        (svc.clone(), 0i32..3, any::<bool>()).prop_map(|(s, c, e)| Act::Exit(s, c, e)),
        svc.clone().prop_map(Act::Emptied),
        (svc.clone(), any::<bool>()).prop_map(|(s, ok)| Act::Probe(s, ok)),
        svc.clone().prop_map(Act::Ready),
        svc.clone().prop_map(Act::Watchdog),
        (svc, 0u64..1000).prop_map(|(s, f)| Act::Sample(s, f)),
        (0u8..4).prop_map(Act::Refuse),
    ]
}

/// What a well-behaved keeper knows of one service's run.
#[derive(Clone, Debug, PartialEq)]
enum Kept {
    Pending(u64),
    Alive {
        run: u64,
        pid: u32,
        main: bool,
        kill_at: Option<Mono>,
    },
}

impl Kept {
    fn run(&self) -> u64 {
        match self {
            Kept::Pending(r) => *r,
            Kept::Alive { run, .. } => *run,
        }
    }
}

struct Model {
    sim: Sim,
    kept: HashMap<String, Kept>,
    refuse: u8,
    next_pid: u32,
    requests: u64,
    /// Timers the brain armed.
    timers: std::collections::BTreeSet<Mono>,
}

impl Model {
    fn new() -> Self {
        let sim = Sim::new(CONFIG);
        let mut m = Self {
            sim,
            kept: HashMap::new(),
            refuse: 0,
            next_pid: 1000,
            requests: 0,
            timers: Default::default(),
        };
        let boot = m.sim.last.clone();
        m.carry(boot);
        m
    }

    fn feed(&mut self, input: Input) {
        self.sim.feed(input);
        let effects = self.sim.last.clone();
        self.carry(effects);
        self.check();
    }

    /// Carry out effects as the shell would (a refused command goes back in, its effects
    /// join the queue), checking each against the model keeper.
    fn carry(&mut self, effects: Vec<Effect>) {
        let mut queue = std::collections::VecDeque::from([effects]);
        while let Some(effects) = queue.pop_front() {
            for input in self.carry_one(effects) {
                self.sim.feed(input);
                queue.push_back(self.sim.last.clone());
            }
        }
    }

    fn carry_one(&mut self, effects: Vec<Effect>) -> Vec<Input> {
        let now = self.sim.now.mono;
        let mut refused = Vec::new();
        for e in &effects {
            match e {
                Effect::Timer(due) => {
                    assert!(*due > now, "timer {due:?} not after {now:?}");
                    self.timers.insert(*due);
                }
                Effect::Stop { timeout, .. } if !timeout.is_zero() => assert!(
                    effects.contains(&Effect::Timer(now + *timeout)),
                    "a stop without its kill deadline: {effects:?}"
                ),
                _ => {}
            }
        }
        for e in effects {
            match e {
                Effect::Spawn {
                    service, run_id, ..
                } => {
                    if self.refuse > 0 {
                        self.refuse -= 1;
                        let command = Refusable::Spawn { service, run_id };
                        refused.push(Input::Refused {
                            command,
                            error: "queue full".into(),
                        });
                        continue;
                    }
                    assert!(
                        !self.kept.contains_key(&service),
                        "spawn of {service} while {:?} is alive or stopping",
                        self.kept[&service]
                    );
                    self.kept.insert(service, Kept::Pending(run_id));
                }
                Effect::Stop {
                    service,
                    run_id,
                    timeout,
                    ..
                } => {
                    if self.refuse > 0 {
                        self.refuse -= 1;
                        let command = Refusable::Stop { service, run_id };
                        refused.push(Input::Refused {
                            command,
                            error: "queue full".into(),
                        });
                        continue;
                    }
                    let kept = self.kept.get_mut(&service);
                    let Some(Kept::Alive { run, kill_at, .. }) = kept else {
                        panic!("stop of {service} run {run_id} the keeper does not have: {kept:?}");
                    };
                    assert_eq!(*run, run_id);
                    if kill_at.is_none() {
                        *kill_at = Some(now + timeout);
                    }
                }
                _ => {}
            }
        }
        refused
    }

    /// The brain's facts agree with the model keeper, and every deadline it holds has a
    /// timer armed at or before it (or nothing would wake the brain for it).
    fn check(&mut self) {
        let now = self.sim.now.mono;
        self.timers.retain(|t| *t > now);
        for (name, svc) in &self.sim.facts.services {
            let mut deadlines: Vec<Mono> = svc.start.map(|s| s.due).into_iter().collect();
            if let Some(run) = svc.live() {
                if run.is_serving() && run.ready.is_none() {
                    deadlines.extend(run.ready_due);
                }
                if run.is_serving() && run.health.watchdog_missed.is_none() {
                    deadlines.extend(run.watchdog_due);
                }
                if let Some(stop) = &run.stop {
                    deadlines.push(stop.kill_at);
                    if let Delivery::Refused { retry_at, .. } = stop.delivery {
                        deadlines.push(retry_at);
                    }
                }
            }
            for d in deadlines.into_iter().filter(|d| *d > now) {
                assert!(
                    self.timers.range(..=d).next().is_some(),
                    "{name}: nothing wakes the brain for {d:?} (now {now:?}, timers {:?})",
                    self.timers
                );
            }
            let kept = self.kept.get(name.as_str());
            match svc.live() {
                None => assert!(
                    kept.is_none(),
                    "{name}: the brain has no live run, the keeper has {kept:?}"
                ),
                Some(run) => {
                    assert_eq!(kept.map(Kept::run), Some(run.id), "{name}");
                    if let Some(stop) = &run.stop {
                        match &stop.delivery {
                            Delivery::Sent => assert!(
                                matches!(
                                    kept,
                                    Some(Kept::Alive {
                                        kill_at: Some(_),
                                        ..
                                    })
                                ),
                                "{name}: a stop the keeper never got: {kept:?}"
                            ),
                            Delivery::Refused { retry_at, .. } => {
                                assert!(*retry_at > now, "{name}: an overdue retry")
                            }
                        }
                    }
                }
            }
            let state = derive(&self.sim.facts.services, svc, now).state;
            if matches!(
                state,
                ServiceState::Running | ServiceState::Degraded | ServiceState::Unhealthy
            ) {
                assert!(
                    matches!(kept, Some(Kept::Alive { main: true, .. })),
                    "{name} is {state:?} without a live main process"
                );
            }
        }
    }

    fn request(&mut self, request: Request) {
        self.requests += 1;
        let id = self.requests;
        self.feed(Input::Request { id, request });
    }

    fn alive(&self, i: usize) -> Option<(u64, u32, bool)> {
        match self.kept.get(NAMES[i]) {
            Some(Kept::Alive { run, pid, main, .. }) => Some((*run, *pid, *main)),
            _ => None,
        }
    }

    /// Advance time; a keeper that holds a stop past its deadline kills the group.
    fn advance(&mut self, ms: u64) {
        self.sim.now = self.sim.now.after(Duration::from_millis(ms));
        let now = self.sim.now.mono;
        // As the shell does: a timer that is due brings its tick before any other input.
        if self.timers.range(..=now).next().is_some() {
            self.feed(Input::Tick);
        }
        let due: Vec<(String, u64)> = self
            .kept
            .iter()
            .filter_map(|(n, k)| match k {
                Kept::Alive {
                    run,
                    kill_at: Some(t),
                    ..
                } if *t <= now => Some((n.clone(), *run)),
                _ => None,
            })
            .collect();
        for (service, run_id) in due {
            self.kept.remove(&service);
            self.feed(Input::Exited {
                oom_kills: 0,
                service,
                run_id,
                status: ExitStatus::Signal(9),
                at: now,
                group_empty: true,
                escalated: true,
            });
        }
        self.feed(Input::Tick);
    }

    fn apply(&mut self, a: Act) {
        let now = self.sim.now.mono;
        match a {
            Act::Start(i) => self.request(Request::Start(NAMES[i].into())),
            Act::Stop(i) => self.request(Request::Stop(NAMES[i].into())),
            Act::Restart(i) => self.request(Request::Restart(NAMES[i].into())),
            Act::ResetFailed(force) => self.request(Request::ResetFailed { force }),
            Act::Reload(back) => {
                let spec = sim::arc_spec(if back { CONFIG } else { RELOADED });
                self.request(Request::Reload(spec))
            }
            Act::Shutdown => self.request(Request::Shutdown),
            Act::Advance(ms) => self.advance(ms),
            Act::Spawned(i) | Act::SpawnFailed(i) => {
                let Some(Kept::Pending(run_id)) = self.kept.get(NAMES[i]).cloned() else {
                    return;
                };
                let service = NAMES[i].to_string();
                if let Act::Spawned(_) = a {
                    self.next_pid += 1;
                    let pid = self.next_pid;
                    self.kept.insert(
                        service.clone(),
                        Kept::Alive {
                            run: run_id,
                            pid,
                            main: true,
                            kill_at: None,
                        },
                    );
                    self.feed(Input::Spawned {
                        unenforced: None,
                        service,
                        run_id,
                        pid,
                        at: now,
                        cleared_leftovers: 0,
                    });
                } else {
                    self.kept.remove(&service);
                    self.feed(Input::SpawnFailed {
                        service,
                        run_id,
                        error: "not found".into(),
                    });
                }
            }
            Act::Exit(i, code, group_empty) => {
                let Some((run_id, _, true)) = self.alive(i) else {
                    return;
                };
                let service = NAMES[i].to_string();
                if group_empty {
                    self.kept.remove(&service);
                } else if let Some(Kept::Alive { main, .. }) = self.kept.get_mut(&service) {
                    *main = false;
                }
                self.feed(Input::Exited {
                    oom_kills: 0,
                    service,
                    run_id,
                    status: ExitStatus::Code(code),
                    at: now,
                    group_empty,
                    escalated: false,
                });
            }
            Act::Emptied(i) => {
                let Some((run_id, _, _)) = self.alive(i) else {
                    return;
                };
                let service = NAMES[i].to_string();
                self.kept.remove(&service);
                // Main and group together (as after a stop).
                self.feed(Input::Exited {
                    oom_kills: 0,
                    service,
                    run_id,
                    status: ExitStatus::Signal(15),
                    at: now,
                    group_empty: true,
                    escalated: false,
                });
            }
            Act::Probe(i, ok) => {
                let Some((run_id, _, _)) = self.alive(i) else {
                    return;
                };
                let outcome = ProbeOutcome {
                    ok,
                    detail: "x".into(),
                    latency: Duration::ZERO,
                    at: now,
                };
                let item = Evidence::Probe {
                    service: NAMES[i].into(),
                    run_id,
                    outcome,
                };
                self.feed(Input::Evidence(vec![item]));
            }
            Act::Ready(i) | Act::Watchdog(i) => {
                let Some((_, pid, _)) = self.alive(i) else {
                    return;
                };
                let field = if matches!(a, Act::Ready(_)) {
                    ("READY", "1")
                } else {
                    ("WATCHDOG", "1")
                };
                let msg = Notify {
                    pid,
                    cgroup_service: Some(NAMES[i].into()),
                    pgid: Some(pid),
                    run: None,
                    fields: vec![(field.0.into(), field.1.into())],
                };
                self.feed(Input::Evidence(vec![Evidence::Notify(msg)]));
            }
            Act::Sample(i, fds) => {
                let Some((run_id, _, _)) = self.alive(i) else {
                    return;
                };
                let sample = Sample {
                    at: now,
                    fds,
                    fd_limit: 1000,
                    rss: 0,
                };
                self.feed(Input::Evidence(vec![Evidence::Samples(vec![(
                    NAMES[i].into(),
                    run_id,
                    sample,
                )])]));
            }
            Act::Refuse(n) => self.refuse = n,
        }
    }

    /// The keeper works again; answer every spawn and let time pass: a shutdown must end.
    fn shut_down(&mut self) {
        self.refuse = 0;
        self.request(Request::Shutdown);
        for _ in 0..200 {
            if self.sim.facts.exited {
                return;
            }
            let pending: Vec<usize> = (0..3)
                .filter(|i| matches!(self.kept.get(NAMES[*i]), Some(Kept::Pending(_))))
                .collect();
            for i in pending {
                self.apply(Act::Spawned(i));
            }
            self.advance(500);
        }
        panic!(
            "shutdown did not end: {:?}",
            self.sim
                .facts
                .services
                .values()
                .map(|s| s.live())
                .collect::<Vec<_>>()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_inputs_keep_every_invariant(acts in proptest::collection::vec(act(), 1..120)) {
        let mut m = Model::new();
        for a in acts {
            m.apply(a);
        }
        m.shut_down();
    }
}
