//! What many services share, so that the brain never blames one service for a cause it shares
//! with hundreds, nor makes an outage worse.
//!
//! - **Shared causes.** Each probe result is filed under its target (`host:port` or a socket
//!   path, [`candor_spec::ProbeSpec::target`]). When the latest probes of at least
//!   [`SHARED_MIN`] services to one target fail, and they are at least half of the services
//!   probing it, the target is the cause they share: named once (an event), shown in each
//!   failing service's reason, and their restarts are held. It ends when fewer than a quarter
//!   of them (or fewer than `SHARED_MIN`) still fail; then a held service is restarted only if a
//!   probe taken after that still fails.
//! - **The restart budget.** Restarts for health reasons (unhealthy, watchdog) within any
//!   window are limited (`[daemon] restart_budget`, default 10 % of the services per 10 s);
//!   past it, an unhealthy service waits. Crashes are never counted nor held.
//! - **Failing together.** A crash or a health restart within [`CRASH_WINDOW`] of another
//!   service's gets a jittered backoff (a service failing alone keeps its exact doubling), and
//!   many services crashing together are named once as a cause they may share.
//! - **Spawn pacing.** At most [`SPAWN_BURST`] spawns at once, then [`SPAWN_REFILL`] per
//!   [`SPAWN_TICK`]: a thousand services started together are spawned over a few seconds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use candor_api as api;
use candor_core::Mono;
use candor_spec::{RestartBudget, ServiceName};

use crate::facts::{Held, SharedCause};
use crate::step::Cx;

/// Fewest services whose probes of one target must fail together to name a shared cause.
pub const SHARED_MIN: usize = 3;

/// Spawns allowed at once...
pub const SPAWN_BURST: u32 = 64;
/// ...and then this many more each [`SPAWN_TICK`] (200 a second).
pub const SPAWN_REFILL: u32 = 20;
pub const SPAWN_TICK: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, Default)]
pub struct Herd {
    targets: BTreeMap<Arc<str>, Target>,
    /// The target each service's probe results are filed under.
    filed: BTreeMap<ServiceName, Arc<str>>,
    /// Health restarts in the budget's window, oldest first.
    restarts: VecDeque<Mono>,
    /// Spawn tokens left, as of `refilled`.
    tokens: Option<(u32, Mono)>,
    /// The timers last asked for the next spawn token and the budget's next room (one per
    /// batch, not one per waiting service).
    spawn_timer: Option<Mono>,
    budget_timer: Option<Mono>,
    /// Recent failures (a crash, or a health restart), oldest first, within
    /// [`CRASH_WINDOW`], with how many each service has among them; and when a storm of crashes
    /// was last named.
    failures: VecDeque<(Mono, ServiceName)>,
    failing_now: BTreeMap<ServiceName, u32>,
    storm_named: Option<Mono>,
}

/// Crashes of this many services (at least [`CRASH_STORM_MIN`], else 10 % of them) within
/// this window are named as a cause they share.
pub const CRASH_WINDOW: Duration = Duration::from_secs(5);
pub const CRASH_STORM_MIN: usize = 5;
/// Failures remembered at most (within the window), whatever the rate.
const MAX_FAILURES: usize = 4096;

/// Remember `at` as the timer last asked for in `slot`: true when it is a new one to ask for.
fn arm(slot: &mut Option<Mono>, at: Mono) -> bool {
    slot.replace(at) != Some(at)
}

#[derive(Clone, Debug, Default)]
struct Target {
    failing: BTreeSet<ServiceName>,
    passing: BTreeSet<ServiceName>,
    /// Named since.
    cause: Option<Mono>,
    /// When the last cause here ended.
    ended: Option<Mono>,
}

impl Target {
    fn begins(&self) -> bool {
        let f = self.failing.len();
        f >= SHARED_MIN && f * 2 >= f + self.passing.len()
    }
    fn ends(&self) -> bool {
        let f = self.failing.len();
        f < SHARED_MIN || f * 4 < f + self.passing.len()
    }
}

/// How a target's shared cause changed with a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Began,
    Ended,
    Same,
}

impl Herd {
    /// File `service`'s probe result under `target`. A service filed under another target
    /// before (its spec changed) leaves that one.
    pub fn file(&mut self, service: &ServiceName, target: &str, ok: bool, now: Mono) -> Change {
        // The steady state — a passing service passes again — costs two lookups, no copy.
        if ok {
            if let Some(t) = self
                .filed
                .get(service)
                .filter(|t| &***t == target)
                .and_then(|t| self.targets.get(t))
            {
                if t.passing.contains(service) {
                    return Change::Same;
                }
            }
        }
        let moved = self.filed.get(service).is_some_and(|t| &**t != target);
        if moved {
            // What the old target does without it is seen at its next result.
            self.forget(service, now);
        }
        let key = match self.targets.get_key_value(target) {
            Some((k, _)) => k.clone(),
            None => Arc::from(target),
        };
        self.filed
            .entry(service.clone())
            .or_insert_with(|| key.clone());
        let t = self.targets.entry(key).or_default();
        if ok {
            t.failing.remove(service);
            t.passing.insert(service.clone());
        } else {
            t.passing.remove(service);
            t.failing.insert(service.clone());
        }
        Self::settle(t, now)
    }

    /// `service` probes nothing any more (its run ended, it was removed): it leaves its
    /// target, which may end that target's cause. Returns the target and the change.
    pub fn forget(&mut self, service: &ServiceName, now: Mono) -> Option<(Arc<str>, Change)> {
        let target = self.filed.remove(service)?;
        let t = self.targets.get_mut(&target)?;
        t.failing.remove(service);
        t.passing.remove(service);
        let change = Self::settle(t, now);
        if t.failing.is_empty() && t.passing.is_empty() && t.cause.is_none() {
            self.targets.remove(&target);
        }
        Some((target, change))
    }

    fn settle(t: &mut Target, now: Mono) -> Change {
        match t.cause {
            None if t.begins() => {
                t.cause = Some(now);
                Change::Began
            }
            Some(_) if t.ends() => {
                t.cause = None;
                t.ended = Some(now);
                Change::Ended
            }
            _ => Change::Same,
        }
    }

    /// The cause at `target`, if one is named: since when, and how many services fail there.
    pub fn cause(&self, target: &str) -> Option<(Mono, usize)> {
        let t = self.targets.get(target)?;
        Some((t.cause?, t.failing.len()))
    }

    /// When the last cause at `target` ended.
    pub fn ended(&self, target: &str) -> Option<Mono> {
        self.targets.get(target)?.ended
    }

    /// The target `service`'s results are filed under (the same for all of a run: a new spec
    /// comes with a new run, and a run's end forgets it).
    pub fn target_of(&self, service: &ServiceName) -> Option<Arc<str>> {
        self.filed.get(service).cloned()
    }

    /// The services whose latest probe of `target` failed.
    pub fn failing(&self, target: &str) -> Vec<ServiceName> {
        self.targets
            .get(target)
            .map(|t| t.failing.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a health restart fits the budget now; if not, how many were made in the window
    /// and when the next one fits.
    pub fn budget_room(
        &mut self,
        budget: &RestartBudget,
        services: usize,
        now: Mono,
    ) -> Result<(), (u32, Mono)> {
        while self
            .restarts
            .front()
            .is_some_and(|t| now.since(*t) >= budget.window)
        {
            self.restarts.pop_front();
        }
        let allowed = budget.allowed(services) as usize;
        if self.restarts.len() < allowed {
            return Ok(());
        }
        let oldest = self.restarts.front().copied().unwrap_or(now);
        Err((self.restarts.len() as u32, oldest + budget.window))
    }

    /// A health restart was made now.
    pub fn spend(&mut self, now: Mono) {
        self.restarts.push_back(now);
    }

    /// `service` failed now (a crash, or a health restart). Returns whether another service
    /// failed within [`CRASH_WINDOW`] too — then its backoff is jittered, so services that
    /// fail together do not come back together — and, for a crash that just made a storm
    /// (at least [`CRASH_STORM_MIN`] services, or 10 % of them, crashed within the window),
    /// how many services crashed: named once per storm (none for a window before it).
    pub fn failed(
        &mut self,
        service: &ServiceName,
        crash: bool,
        services: usize,
        now: Mono,
    ) -> (bool, Option<usize>) {
        while let Some((at, name)) = self.failures.front() {
            if now.since(*at) < CRASH_WINDOW && self.failures.len() < MAX_FAILURES {
                break;
            }
            if let Some(n) = self.failing_now.get_mut(name) {
                *n -= 1;
                if *n == 0 {
                    self.failing_now.remove(name);
                }
            }
            self.failures.pop_front();
        }
        if self.failing_now.is_empty() {
            self.storm_named = None;
        }
        let others = self.failing_now.len() - usize::from(self.failing_now.contains_key(service));
        self.failures.push_back((now, service.clone()));
        *self.failing_now.entry(service.clone()).or_default() += 1;
        let distinct = self.failing_now.len();
        let threshold = CRASH_STORM_MIN.max(services.div_ceil(10));
        let storm = (crash && distinct >= threshold && self.storm_named.is_none()).then(|| {
            self.storm_named = Some(now);
            distinct
        });
        (others > 0, storm)
    }

    /// Whether a timer for the next spawn token at `at` must still be asked for.
    pub fn arm_spawn_timer(&mut self, at: Mono) -> bool {
        arm(&mut self.spawn_timer, at)
    }

    /// Whether a timer for the budget's next room at `at` must still be asked for.
    pub fn arm_budget_timer(&mut self, at: Mono) -> bool {
        arm(&mut self.budget_timer, at)
    }

    /// Take a spawn token; without one, when the next comes.
    pub fn spawn_token(&mut self, now: Mono) -> Result<(), Mono> {
        let (mut tokens, mut refilled) = self.tokens.unwrap_or((SPAWN_BURST, now));
        let ticks = now.since(refilled).as_nanos() / SPAWN_TICK.as_nanos();
        if ticks > 0 {
            let add = (ticks.min(u128::from(SPAWN_BURST)) as u32) * SPAWN_REFILL;
            tokens = (tokens + add).min(SPAWN_BURST);
            refilled = refilled + SPAWN_TICK * (ticks.min(u128::from(u32::MAX)) as u32);
        }
        let out = if tokens > 0 {
            tokens -= 1;
            Ok(())
        } else {
            Err(refilled + SPAWN_TICK)
        };
        self.tokens = Some((tokens, refilled));
        out
    }
}

impl Cx<'_> {
    /// File a probe result of `name`'s live run, and act on its target's shared cause: named
    /// (an event, every failing service marked) or ended (marks cleared; held services wait
    /// for a probe taken after that).
    pub(crate) fn herd_file(&mut self, name: &ServiceName, ok: bool) {
        let now = self.mono();
        let target: Arc<str> = match self.facts.herd.target_of(name) {
            Some(t) => t,
            None => {
                let Some(t) = self
                    .facts
                    .services
                    .get(name)
                    .and_then(|s| s.spec.probe.as_ref())
                    .and_then(|p| p.target())
                else {
                    return;
                };
                Arc::from(t)
            }
        };
        let change = self.facts.herd.file(name, &target, ok, now);
        self.herd_changed(&target, change);
        let cause = self.facts.herd.cause(&target);
        let Some(svc) = self.facts.services.get(name) else {
            return;
        };
        let mark = match cause {
            Some((since, services)) if !ok => Some(SharedCause {
                target: target.clone(),
                services: services as u32,
                since,
            }),
            _ => None,
        };
        let unheld = ok && svc.held.is_some();
        if svc.shared != mark || unheld {
            if let Some(svc) = self.facts.svc_mut(name) {
                svc.shared = mark;
                if unheld {
                    svc.held = None;
                }
            }
        }
    }

    /// `name` probes nothing any more (its run ended or is being stopped).
    pub(crate) fn herd_forget(&mut self, name: &ServiceName) {
        let now = self.mono();
        if let Some((target, change)) = self.facts.herd.forget(name, now) {
            self.herd_changed(&target, change);
        }
        if let Some(svc) = self.facts.services.get(name) {
            if svc.shared.is_some() || svc.held.is_some() {
                if let Some(svc) = self.facts.svc_mut(name) {
                    svc.shared = None;
                    svc.held = None;
                }
            }
        }
    }

    fn herd_changed(&mut self, target: &str, change: Change) {
        let key: Arc<str> = Arc::from(target);
        match change {
            Change::Same => {}
            Change::Began => {
                let Some((since, services)) = self.facts.herd.cause(target) else {
                    return;
                };
                let failing = self.facts.herd.failing(target);
                for name in &failing {
                    if let Some(svc) = self.facts.svc_mut(name) {
                        svc.shared = Some(SharedCause {
                            target: key.clone(),
                            services: services as u32,
                            since,
                        });
                    }
                }
                self.note(
                    "candor",
                    "shared-cause",
                    format!(
                        "probes of {services} services to {target} are failing together: a cause they share, not theirs; their restarts are held until it recovers"
                    ),
                    api::EventDetail::None {},
                );
            }
            Change::Ended => {
                let still = self.facts.herd.failing(target);
                let marked: Vec<ServiceName> = self
                    .facts
                    .services
                    .iter()
                    .filter(|(_, s)| s.shared.as_ref().is_some_and(|c| *c.target == *target))
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in &marked {
                    if let Some(svc) = self.facts.svc_mut(name) {
                        svc.shared = None;
                    }
                }
                self.note(
                    "candor",
                    "shared-cause-ended",
                    format!(
                        "{target} recovered: most services probing it pass again; {} still failing will be restarted if their next probe fails",
                        still.len()
                    ),
                    api::EventDetail::None {},
                );
            }
        }
    }

    /// `name` failed (a crash, or a health restart): whether others failed within seconds of
    /// it (then its backoff is jittered); when many crashed, said once as a cause they may share.
    pub(crate) fn failed_together(&mut self, name: &ServiceName, crash: bool) -> bool {
        let now = self.mono();
        let services = self.facts.services.len();
        let (others, storm) = self.facts.herd.failed(name, crash, services, now);
        if let Some(n) = storm {
            self.note(
                "candor",
                "shared-cause",
                format!(
                    "{n} services crashed within {} of each other: look for a cause they share (a dependency, the box itself) before blaming each; they restart with jittered backoff",
                    candor_spec::format_duration(CRASH_WINDOW)
                ),
                api::EventDetail::None {},
            );
        }
        others
    }

    /// Whether the health restart of `name`'s live run must wait, and why: a shared cause
    /// covers it (or ended, and no probe since says it still fails), or the restart budget
    /// is spent. `None`: restart it now (the budget is spent by the caller).
    pub(crate) fn hold(&mut self, name: &ServiceName) -> Option<Held> {
        let now = self.mono();
        let svc = self.facts.services.get(name)?;
        if !svc.spec.restart_budget {
            return None;
        }
        if svc.shared.is_some() {
            return Some(Held::Shared);
        }
        if svc.held == Some(Held::Shared) {
            let ended = (self.facts.herd.target_of(name)).and_then(|t| self.facts.herd.ended(&t));
            let last = svc
                .live()
                .and_then(|r| r.health.probe.last.as_ref())
                .map(|o| o.at);
            if ended.is_some_and(|e| last.is_none_or(|l| l < e)) {
                return Some(Held::Shared);
            }
        }
        let services = self.facts.services.len();
        let budget = self.facts.restart_budget;
        match self.facts.herd.budget_room(&budget, services, now) {
            Ok(()) => None,
            Err((restarts, until)) => Some(Held::Budget {
                restarts,
                window: budget.window,
                until,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: usize) -> ServiceName {
        ServiceName::new(&format!("s{i}")).unwrap()
    }

    fn at(s: u64) -> Mono {
        Mono(Duration::from_secs(1000 + s))
    }

    #[test]
    fn a_cause_is_named_when_most_of_a_targets_services_fail_and_ends_when_few_do() {
        let mut h = Herd::default();
        for i in 0..10 {
            assert_eq!(
                h.file(&name(i), "127.0.0.1:8000", true, at(0)),
                Change::Same
            );
        }
        // Four of ten failing: not yet half.
        for i in 0..4 {
            assert_eq!(
                h.file(&name(i), "127.0.0.1:8000", false, at(1)),
                Change::Same
            );
        }
        assert_eq!(
            h.file(&name(4), "127.0.0.1:8000", false, at(2)),
            Change::Began
        );
        assert_eq!(h.cause("127.0.0.1:8000"), Some((at(2), 5)));
        for i in 5..10 {
            assert_eq!(
                h.file(&name(i), "127.0.0.1:8000", false, at(3)),
                Change::Same
            );
        }
        // Recovering: the cause holds while a quarter or more still fail.
        for i in 0..7 {
            assert_eq!(
                h.file(&name(i), "127.0.0.1:8000", true, at(4)),
                Change::Same
            );
        }
        assert_eq!(
            h.file(&name(7), "127.0.0.1:8000", true, at(5)),
            Change::Ended
        );
        assert_eq!(h.cause("127.0.0.1:8000"), None);
        assert_eq!(h.ended("127.0.0.1:8000"), Some(at(5)));
        assert_eq!(h.failing("127.0.0.1:8000"), vec![name(8), name(9)]);
    }

    #[test]
    fn one_or_two_failing_services_are_never_a_shared_cause() {
        let mut h = Herd::default();
        assert_eq!(h.file(&name(0), "/run/a.sock", false, at(0)), Change::Same);
        assert_eq!(h.file(&name(1), "/run/a.sock", false, at(0)), Change::Same);
        assert_eq!(h.cause("/run/a.sock"), None);
        // Each on its own target: nothing shared however many fail.
        for i in 0..50 {
            let t = format!("127.0.0.1:{}", 9000 + i);
            assert_eq!(h.file(&name(i), &t, false, at(1)), Change::Same);
        }
    }

    #[test]
    fn services_that_leave_end_a_cause_and_empty_targets_are_dropped() {
        let mut h = Herd::default();
        for i in 0..3 {
            h.file(&name(i), "db:5432", false, at(0));
        }
        assert!(h.cause("db:5432").is_some());
        assert_eq!(
            h.forget(&name(0), at(1)),
            Some((Arc::from("db:5432"), Change::Ended))
        );
        h.forget(&name(1), at(1));
        h.forget(&name(2), at(1));
        assert!(h.targets.is_empty() && h.filed.is_empty());
        // A service whose spec moved it to another target leaves the old one.
        h.file(&name(0), "a:1", false, at(2));
        h.file(&name(0), "b:1", false, at(2));
        assert_eq!(h.failing("a:1"), Vec::<ServiceName>::new());
        assert_eq!(h.failing("b:1"), vec![name(0)]);
    }

    #[test]
    fn the_budget_holds_past_its_max_and_frees_as_the_window_moves() {
        let mut h = Herd::default();
        let budget = RestartBudget::default(); // 10 % per 10 s
        for i in 0..3 {
            assert_eq!(h.budget_room(&budget, 30, at(i)), Ok(()));
            h.spend(at(i));
        }
        assert_eq!(h.budget_room(&budget, 30, at(5)), Err((3, at(10))));
        assert_eq!(h.budget_room(&budget, 30, at(10)), Ok(()));
        // At least one per window, however few services.
        let mut h = Herd::default();
        assert_eq!(h.budget_room(&budget, 1, at(0)), Ok(()));
        h.spend(at(0));
        assert_eq!(h.budget_room(&budget, 1, at(9)), Err((1, at(10))));
    }

    #[test]
    fn many_services_crashing_within_seconds_are_named_once_per_storm() {
        let mut h = Herd::default();
        let ms = Duration::from_millis;
        // One service crash-looping fast is no storm, and nothing to jitter against.
        for i in 0..40 {
            assert_eq!(
                h.failed(&name(0), true, 100, at(0) + ms(i * 100)),
                (false, None)
            );
        }
        // 100 services: a storm is 10 services crashing within 5 s.
        let mut h = Herd::default();
        assert_eq!(h.failed(&name(0), true, 100, at(0)), (false, None));
        for i in 1..9 {
            assert_eq!(
                h.failed(&name(i), true, 100, at(0) + ms(i as u64 * 100)),
                (true, None)
            );
        }
        assert_eq!(h.failed(&name(9), true, 100, at(1)), (true, Some(10)));
        for i in 10..30 {
            assert_eq!(
                h.failed(&name(i), true, 100, at(2)),
                (true, None),
                "named once"
            );
        }
        // Health restarts are jittered against others too, but make no crash storm.
        let mut h = Herd::default();
        for i in 0..30 {
            let (_, storm) = h.failed(&name(i), false, 100, at(0));
            assert_eq!(storm, None);
        }
        // Spread out, failures are alone; after a quiet window a new storm is named again.
        let mut h = Herd::default();
        for i in 0..30 {
            assert_eq!(
                h.failed(&name(i), true, 100, at(i as u64 * 6)),
                (false, None)
            );
        }
        for i in 0..9 {
            h.failed(&name(100 + i), true, 100, at(500));
        }
        assert_eq!(h.failed(&name(200), true, 100, at(500)), (true, Some(10)));
    }

    #[test]
    fn spawns_come_in_a_burst_then_at_the_refill_rate() {
        let mut h = Herd::default();
        let t0 = at(0);
        for _ in 0..SPAWN_BURST {
            assert_eq!(h.spawn_token(t0), Ok(()));
        }
        assert_eq!(h.spawn_token(t0), Err(t0 + SPAWN_TICK));
        let t1 = t0 + SPAWN_TICK;
        for _ in 0..SPAWN_REFILL {
            assert_eq!(h.spawn_token(t1), Ok(()));
        }
        assert_eq!(h.spawn_token(t1), Err(t1 + SPAWN_TICK));
        // A long quiet spell refills to the burst, no more.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..SPAWN_BURST {
            assert_eq!(h.spawn_token(t2), Ok(()));
        }
        assert!(h.spawn_token(t2).is_err());
    }
}
