//! A harness for driving the brain with inputs and reading effects and derived states: no
//! processes, no sleeps, time moved by hand.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use candor_brain::{
    boot, derive, step, Effect, Evidence, Facts, Input, Mono, Now, Refusable, Reply, Request,
    ServiceState,
};
use candor_core::budget::Sample;
use candor_core::health::{ProbeOutcome, SocketCheck};
use candor_core::ExitStatus;

pub fn spec(toml: &str) -> candor_spec::Spec {
    candor_spec::parse_str(Path::new("/etc/candor/candor.toml"), toml)
        .unwrap_or_else(|e| panic!("bad test config: {e:?}"))
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub struct Sim {
    pub facts: Facts,
    pub now: Now,
    /// Effects of the last step.
    pub last: Vec<Effect>,
    /// Every effect so far.
    pub all: Vec<Effect>,
    next_pid: u32,
    next_request: u64,
}

impl Sim {
    pub fn new(toml: &str) -> Self {
        Self::with(toml, |_| {}, Vec::new())
    }

    /// A config changed by `patch` after parsing, and jobs' histories restored before boot.
    pub fn with(
        toml: &str,
        patch: impl FnOnce(&mut candor_spec::Spec),
        jobs: Vec<(&str, candor_brain::jobs::SavedJob)>,
    ) -> Self {
        let now = Now {
            mono: Mono(secs(1000)),
            wall: SystemTime::UNIX_EPOCH + secs(1_800_000_000),
        };
        let mut spec = spec(toml);
        patch(&mut spec);
        let mut facts = Facts::new(&spec, secs(5), now.mono);
        for (name, saved) in jobs {
            facts.restore_job(&candor_spec::ServiceName::new(name).unwrap(), saved);
        }
        let last = boot(&mut facts, now);
        Self {
            facts,
            now,
            all: last.clone(),
            last,
            next_pid: 100,
            next_request: 0,
        }
    }

    pub fn feed(&mut self, input: Input) -> &[Effect] {
        self.last = step(&mut self.facts, input, self.now);
        self.all.extend(self.last.iter().cloned());
        &self.last
    }

    /// Move both clocks forward and deliver a tick.
    pub fn advance(&mut self, d: Duration) -> &[Effect] {
        self.now = self.now.after(d);
        self.feed(Input::Tick)
    }

    /// Step the wall clock alone (NTP, a resumed VM), then tick.
    pub fn step_wall(&mut self, forward: bool, d: Duration) -> &[Effect] {
        self.now.wall = if forward {
            self.now.wall + d
        } else {
            self.now.wall - d
        };
        self.feed(Input::Tick)
    }

    pub fn state(&self, name: &str) -> ServiceState {
        self.derived(name).0
    }

    pub fn reason(&self, name: &str) -> String {
        self.derived(name).1
    }

    pub fn derived(&self, name: &str) -> (ServiceState, String) {
        let svc = self
            .facts
            .get(name)
            .unwrap_or_else(|| panic!("no service {name}"));
        let d = derive(&self.facts.services, svc, self.now.mono);
        (d.state, d.reason)
    }

    /// The run id of the last spawn asked for `name` in the last step, if any.
    pub fn spawn_asked(&self, name: &str) -> Option<u64> {
        self.last.iter().rev().find_map(|e| match e {
            Effect::Spawn {
                service, run_id, ..
            } if service == name => Some(*run_id),
            _ => None,
        })
    }

    pub fn stop_asked(&self, name: &str) -> Option<(u64, Duration)> {
        self.last.iter().rev().find_map(|e| match e {
            Effect::Stop {
                service,
                run_id,
                timeout,
                ..
            } if service == name => Some((*run_id, *timeout)),
            _ => None,
        })
    }

    pub fn spawns(&self, name: &str) -> usize {
        count(
            &self.all,
            |e| matches!(e, Effect::Spawn { service, .. } if service == name),
        )
    }

    pub fn run_id(&self, name: &str) -> u64 {
        self.facts
            .get(name)
            .and_then(|s| s.run.as_ref())
            .map(|r| r.id)
            .unwrap_or_else(|| panic!("{name} has no run"))
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.facts
            .get(name)
            .and_then(|s| s.live())
            .and_then(|r| r.pid())
    }

    /// The keeper reports the pending spawn of `name` done.
    pub fn spawned(&mut self, name: &str) -> u32 {
        let run_id = self.run_id(name);
        self.next_pid += 1;
        let pid = self.next_pid;
        self.feed(Input::Spawned {
            unenforced: None,
            service: name.into(),
            run_id,
            pid,
            at: self.now.mono,
            cleared_leftovers: 0,
        });
        pid
    }

    /// The main process exits and nothing of the run is left.
    pub fn exits(&mut self, name: &str, status: ExitStatus) -> &[Effect] {
        let run_id = self.run_id(name);
        self.feed(Input::Exited {
            oom_kills: 0,
            service: name.into(),
            run_id,
            status,
            at: self.now.mono,
            group_empty: true,
            escalated: false,
        })
    }

    /// The keeper reports the run gone (after a stop).
    pub fn emptied(&mut self, name: &str, escalated: bool) -> &[Effect] {
        let run_id = self.run_id(name);
        self.feed(Input::Emptied {
            service: name.into(),
            run_id,
            escalated,
        })
    }

    /// A stop ends: the main process killed by the stop signal, then the group empty.
    pub fn stopped(&mut self, name: &str) -> &[Effect] {
        let run_id = self.run_id(name);
        self.feed(Input::Exited {
            oom_kills: 0,
            service: name.into(),
            run_id,
            status: ExitStatus::Signal(15),
            at: self.now.mono,
            group_empty: true,
            escalated: false,
        })
    }

    pub fn request(&mut self, request: Request) -> Reply {
        self.next_request += 1;
        let id = self.next_request;
        self.feed(Input::Request { id, request });
        self.last
            .iter()
            .find_map(|e| match e {
                Effect::Reply { id: i, reply } if *i == id => Some(reply.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no reply to {id}: {:?}", self.last))
    }

    pub fn evidence(&mut self, item: Evidence) -> &[Effect] {
        self.feed(Input::Evidence(vec![item]))
    }

    pub fn probe(&mut self, name: &str, ok: bool, detail: &str) -> &[Effect] {
        let run_id = self.run_id(name);
        let outcome = ProbeOutcome {
            ok,
            detail: detail.into(),
            latency: ms(1),
            at: self.now.mono,
        };
        self.evidence(Evidence::Probe {
            service: name.into(),
            run_id,
            outcome,
        })
    }

    pub fn notify(&mut self, name: &str, fields: &[(&str, &str)]) -> &[Effect] {
        let pid = self.pid(name).expect("notify from a live run");
        self.evidence(Evidence::Notify(candor_brain::Notify {
            pid,
            cgroup_service: Some(name.into()),
            pgid: Some(pid),
            run: None,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }))
    }

    pub fn socket(&mut self, name: &str, path: &str, exists: bool) -> &[Effect] {
        let run_id = self.run_id(name);
        let check = SocketCheck {
            path: path.into(),
            exists,
            accepts: exists,
            at: self.now.mono,
        };
        self.evidence(Evidence::Sockets {
            service: name.into(),
            run_id,
            checks: vec![check],
        })
    }

    pub fn sample(&mut self, name: &str, fds: u64, fd_limit: u64, rss: u64) -> &[Effect] {
        let run_id = self.run_id(name);
        let sample = Sample {
            at: self.now.mono,
            fds,
            fd_limit,
            rss,
        };
        self.evidence(Evidence::Samples(vec![(name.into(), run_id, sample)]))
    }

    pub fn refuse(&mut self, command: Refusable, error: &str) -> &[Effect] {
        self.feed(Input::Refused {
            command,
            error: error.into(),
        })
    }

    /// Events recorded in the last step: (service, state, reason).
    pub fn notes(&self) -> Vec<(String, String, String)> {
        notes(&self.last)
    }

    pub fn all_notes(&self) -> Vec<(String, String, String)> {
        notes(&self.all)
    }

    pub fn timers(&self) -> Vec<Mono> {
        self.last
            .iter()
            .filter_map(|e| match e {
                Effect::Timer(t) => Some(*t),
                _ => None,
            })
            .collect()
    }

    /// Start a service to `running` (ready = "started").
    pub fn up(&mut self, name: &str) -> u32 {
        let pid = self.spawned(name);
        assert_eq!(
            self.state(name),
            ServiceState::Running,
            "{}",
            self.reason(name)
        );
        pid
    }

    pub fn in_secs(&self, d: Duration) -> Mono {
        self.now.mono + d
    }
}

pub fn count(effects: &[Effect], f: impl Fn(&Effect) -> bool) -> usize {
    effects.iter().filter(|e| f(e)).count()
}

pub fn notes(effects: &[Effect]) -> Vec<(String, String, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Record(n) => Some((n.service.clone(), n.state.clone(), n.reason.clone())),
            _ => None,
        })
        .collect()
}

pub fn arc_spec(toml: &str) -> Arc<candor_spec::Spec> {
    Arc::new(spec(toml))
}
