//! Surviving the daemon's own restart: what of a service's facts is saved after every change
//! ([`Saved`]), and how the next daemon of the same boot takes them up ([`adopt`]).
//!
//! Every instant is on the boot clock, which is the same for every process of one boot, so
//! deadlines saved by one daemon (a backoff's next start, a stop's SIGKILL) hold for the next.
//! A run that was alive is taken over, never restarted: the keeper is asked to watch its pid
//! (it re-verifies it by start time and reports an exit if it is gone). Its readiness is never
//! taken from the record alone — see [`adopt`].

use serde::{Deserialize, Serialize};

use candor_api as api;
use candor_core::{Mono, Now};
use candor_spec::{AdoptChanged, ServiceName};

use crate::digest::{Drift, RunDigest};
use crate::effect::Effect;
use crate::facts::{
    Delivery, Facts, LastExit, Run, ScheduledStart, Service, Spawn, StopCause, StopFact,
};
use crate::step::Cx;

/// A service's facts that outlive the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub wanted: bool,
    pub start: Option<ScheduledStart>,
    pub runs: u64,
    pub restarts: u32,
    pub streak: u32,
    pub last_exit: Option<LastExit>,
    pub run: Option<SavedRun>,
    /// A spare instance of a rollout (not counted in its group's `candor scale` count).
    #[serde(default)]
    pub spare: bool,
}

/// The current or last run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedRun {
    pub id: u64,
    pub is_restart: bool,
    pub spawn: Spawn,
    /// When it was seen ready, and how.
    pub ready: Option<(Mono, String)>,
    /// Adopted after being seen ready by an earlier supervisor and not re-checked yet: how.
    #[serde(default)]
    pub was_ready: Option<String>,
    pub ready_due: Option<Mono>,
    /// A oneshot's `timeout` deadline.
    #[serde(default)]
    pub timeout_due: Option<Mono>,
    pub stop: Option<SavedStop>,
    /// What the run was spawned from, per part (none in records of earlier versions).
    #[serde(default)]
    pub digest: Option<RunDigest>,
    pub main_exit: Option<LastExit>,
    pub ended: Option<Mono>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedStop {
    pub cause: StopCause,
    pub at: Mono,
    pub kill_at: Mono,
}

impl Saved {
    pub fn of(svc: &Service) -> Self {
        Self {
            wanted: svc.wanted,
            start: svc.start,
            runs: svc.runs,
            restarts: svc.restarts,
            streak: svc.streak,
            last_exit: svc.last_exit,
            spare: svc.spare,
            run: svc.run.as_ref().map(|r| SavedRun {
                id: r.id,
                is_restart: r.is_restart,
                spawn: r.spawn.clone(),
                ready: r.ready.map(|(at, via)| (at, via.to_string())),
                was_ready: r.was_ready.map(str::to_string),
                ready_due: r.ready_due,
                timeout_due: r.timeout_due,
                stop: r.stop.as_ref().map(|s| SavedStop {
                    cause: s.cause.clone(),
                    at: s.at,
                    kill_at: s.kill_at,
                }),
                digest: r.digest.clone(),
                main_exit: r.main_exit,
                ended: r.ended,
            }),
        }
    }
}

/// A saved service the shell found again, with what it verified.
#[derive(Clone, Debug)]
pub struct Found {
    pub service: String,
    pub saved: Saved,
    /// The run's main process is alive: same pid, same start time, still in the service's
    /// cgroup (or process group) — checked by the shell just now.
    pub alive: bool,
    /// The running process was started with the command configured now (what a record of an
    /// earlier version, without a digest, can still tell).
    pub same_command: bool,
}

/// The names readiness is reported under, back from a saved string.
fn ready_via(s: &str) -> &'static str {
    match s {
        "notify" => "notify",
        "probe" => "probe",
        "fd" => "fd",
        "file" => "file",
        "started" => "started",
        _ => "an earlier supervisor",
    }
}

/// Take up what an earlier daemon of this boot saved, before [`crate::boot`]. A live run is
/// adopted: the keeper watches its pid (and reports an exit, status unknown where the kernel
/// kept none, if it is gone), its output and evidence are gathered again, a stop under way
/// keeps its SIGKILL deadline. It is ready again only on evidence of this daemon: with a
/// probe, its first passing probe; else the liveness of its pid verified by start time (just
/// done by the shell), after which declared sockets are checked as for any run.
pub fn adopt(facts: &mut Facts, found: Vec<Found>, now: Now) -> Vec<Effect> {
    let mut cx = Cx {
        facts,
        now,
        out: Vec::new(),
        replies: Vec::new(),
        all: true,
    };
    for f in found {
        cx.take_up(f);
    }
    // A start scheduled by the earlier daemon (a backoff) is woken for at its due time.
    let starts: Vec<Mono> = cx
        .facts
        .services
        .values()
        .filter_map(|s| s.start.map(|s| s.due))
        .collect();
    for due in starts {
        cx.timer(due);
    }
    cx.out
}

impl Cx<'_> {
    fn take_up(&mut self, f: Found) {
        let now = self.mono();
        let Some(name) = self.facts.name_of(&f.service) else {
            return;
        };
        let Some(svc) = self.facts.svc_mut(&name) else {
            return;
        };
        let saved = f.saved;
        svc.wanted = saved.wanted;
        svc.start = saved.start;
        svc.runs = saved.runs;
        svc.restarts = saved.restarts;
        svc.streak = saved.streak;
        svc.last_exit = saved.last_exit;
        let Some(sr) = saved.run else {
            return;
        };
        let spec = svc.spec.clone();
        let mut run = Run::new(sr.id, sr.is_restart);
        run.spawn = sr.spawn;
        run.digest = sr.digest;
        run.ready_due = sr.ready_due;
        run.timeout_due = sr.timeout_due;
        run.main_exit = sr.main_exit;
        run.ended = sr.ended;
        run.stop = sr.stop.map(|s| StopFact {
            cause: s.cause,
            at: s.at,
            signal: spec.stop.signal,
            kill_at: s.kill_at,
            delivery: Delivery::Sent,
            refusals: 0,
            killed: false,
        });
        let pid = match (&run.spawn, run.ended) {
            (Spawn::Started { pid, .. }, None) => *pid,
            (Spawn::Pending, None) => {
                // Asked of the keeper, never reported: nothing to adopt (a leftover in the
                // cgroup is killed before the next spawn). Start it again.
                svc.run = None;
                if svc.wanted && svc.start.is_none() {
                    svc.start = Some(ScheduledStart {
                        due: now,
                        restart: sr.is_restart,
                    });
                }
                return;
            }
            _ => {
                // Over before the restart: kept for its verdict (failed, completed).
                svc.run = Some(run);
                return;
            }
        };
        run.after_supervisor_restart = true;
        run.was_ready = sr
            .ready
            .as_ref()
            .map(|(_, via)| via)
            .or(sr.was_ready.as_ref())
            .map(|via| ready_via(via));
        let ready_again = f.alive && spec.probe.is_none() && run.main_exit.is_none();
        if let (Some(via), true) = (run.was_ready, ready_again) {
            run.ready = Some((now, via));
            run.ready_due = None;
        }
        if run.was_ready.is_some() {
            run.ready_due = None;
        }
        run.watchdog_due = spec.watchdog.map(|w| now + w);
        run.watchdog_wake = run.watchdog_due;
        // Started from the config read now? Only a run that goes on matters: one gone or
        // being stopped is followed by a spawn from this config anyway.
        let goes_on = f.alive && run.stop.is_none() && run.main_exit.is_none();
        let drift =
            crate::digest::drift(run.digest.as_ref(), &spec, f.same_command).filter(|_| goes_on);
        let replace = matches!(drift, Some(Drift::Differs(_)))
            && self.facts.adopt_changed == AdoptChanged::Restart;
        // An instance of a replicated service is replaced by a rollout, one at a time, not
        // stopped with the others: its run is marked as of no generation of this config.
        let member = spec.instance.is_some();
        run.generation = match (&drift, member) {
            (Some(Drift::Differs(_)), true) if replace => 0,
            _ => self.facts.services.get(&name).map_or(0, |s| s.generation),
        };
        let changed: Vec<String> = match &drift {
            Some(Drift::Differs(parts)) => parts.iter().map(|p| p.to_string()).collect(),
            _ => Vec::new(),
        };
        let kept = match &drift {
            Some(d @ Drift::Differs(_)) if !replace => {
                format!(
                    "; kept (adopt_changed = \"keep\"): it was {}",
                    d.kept_reason()
                )
            }
            Some(d @ Drift::Unknown) => format!("; kept: it was {}", d.kept_reason()),
            _ => String::new(),
        };
        run.drift = drift;
        let kill_at = run.stop.as_ref().map(|s| s.kill_at);
        let (run_id, ready_due, watchdog_due, timeout_due) =
            (run.id, run.ready_due, run.watchdog_due, run.timeout_due);
        let Some(svc) = self.facts.svc_mut(&name) else {
            return;
        };
        svc.run = Some(run);
        svc.start = None;
        if replace && !member {
            // A normal stop (its signal and timeout), then a start from this config once
            // its `after` targets are ready.
            svc.next_spec = Some(spec.clone());
        }
        self.out.push(Effect::Adopt {
            service: f.service.clone(),
            run_id,
            pid,
            kill_at,
        });
        self.out.push(Effect::Watch {
            service: f.service.clone(),
            run_id,
            spec,
        });
        for due in [ready_due, watchdog_due, kill_at, timeout_due]
            .into_iter()
            .flatten()
        {
            self.timer(due);
        }
        let reason = if replace && member {
            format!(
                "pid {pid} kept running across the supervisor's restart, but the config changed while the supervisor was down: {}; adopted, to be replaced by a rollout, one instance at a time",
                changed.join(", ")
            )
        } else if replace {
            format!(
                "pid {pid} kept running across the supervisor's restart, but the config changed while the supervisor was down: {}; adopted, restarting it with the config",
                changed.join(", ")
            )
        } else if f.alive {
            format!(
                "pid {pid} kept running across the supervisor's restart; adopted, re-checking it{kept}"
            )
        } else {
            format!("pid {pid} of the last run is gone; finding out how it ended")
        };
        self.note(
            name.as_str(),
            "adopted",
            reason,
            api::EventDetail::Adopted {
                adopted_pid: pid,
                run: run_id,
                alive: f.alive,
                changed,
            },
        );
        self.check_now_if_ready(&name, run_id);
    }

    fn check_now_if_ready(&mut self, name: &ServiceName, run_id: u64) {
        let ready = self
            .facts
            .services
            .get(name)
            .and_then(|s| s.live())
            .is_some_and(|r| r.ready.is_some());
        if ready {
            self.out.push(Effect::CheckNow {
                service: name.to_string(),
                run_id,
            });
        }
    }
}

impl Facts {
    /// What to save of `name` (None once it is no longer configured).
    pub fn saved(&self, name: &ServiceName) -> Option<Saved> {
        self.services.get(name).map(|s| Saved::of(s))
    }
}
