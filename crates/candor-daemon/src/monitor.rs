//! The per-run monitor: tasks that gather evidence about one run and hand it to the brain —
//! probe results, declared-socket checks, and readiness by file or fd. They end with the run
//! (the brain aborts them); a hung probe is cut at its timeout and costs only its own task.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use candor_keeper::KeeperHandle;
use candor_spec::{ReadySpec, ServiceSpec};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::faults::Faults;
use crate::gate::Gates;
use crate::probe::{self, Attempt, ExecProbes};

/// Declared sockets of a service without a probe are checked this often.
pub const SOCKET_CHECK_EVERY: Duration = Duration::from_secs(5);
/// The first pause between probes of a run that is not ready yet (then doubling to `every`).
pub const STARTUP_PROBE_FIRST: Duration = Duration::from_millis(20);

/// Probes of ready runs are due on this grid: those falling in one slot run in one wake-up of
/// the runtime (at 1000 services with a probe every 5 s: 20 wake-ups a second, not 200).
pub const PROBE_GRID: Duration = Duration::from_millis(50);

/// When a ready run's next probe is due: the first instant at or after `after` that falls on
/// the service's phase of its period. Each service has its own phase (from its name), spread
/// over the period in grid slots, so a thousand services started together probe as a steady
/// trickle, not in bursts; a service keeps its phase across its runs.
fn next_due(after: tokio::time::Instant, every: Duration, service: &str) -> tokio::time::Instant {
    use std::hash::{Hash, Hasher};
    // One base for the process: the boot-wide phase is what matters, not its origin.
    static BASE: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(tokio::time::Instant::now);
    let grid = PROBE_GRID.as_nanos();
    let period = every.as_nanos().max(1);
    let slots = (period / grid).max(1);
    let mut h = std::hash::DefaultHasher::new();
    service.hash(&mut h);
    let phase = (u128::from(h.finish()) % slots) * grid % period;
    let since = after.saturating_duration_since(base).as_nanos();
    let periods = since.saturating_sub(phase).div_ceil(period);
    let at = periods * period + phase;
    // Rounded up to the grid when the period is not a multiple of it.
    let at = at.div_ceil(grid) * grid;
    base + Duration::from_nanos(at.min(u64::MAX as u128) as u64)
}

/// The first probe of a run comes this long after `start_delay`, at most (a random part of
/// it): runs spawned in one instant do not probe in lockstep.
pub const FIRST_PROBE_SPREAD: Duration = Duration::from_millis(20);

/// A small fast random source for the probe loop's jitter (SplitMix64), seeded per loop from
/// the service, the run and the process's random hasher keys: no two loops draw alike.
struct Jitter(u64);

impl Jitter {
    fn new(service: &str, run_id: u64) -> Self {
        use std::hash::BuildHasher;
        Self(std::hash::RandomState::new().hash_one((service, run_id)))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, max).
    fn below(&mut self, max: Duration) -> Duration {
        let n = max.as_nanos() as u64;
        if n == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next() % n)
    }

    /// A startup pause: uniform in [pause/2, pause·3/2), so its mean is `pause`.
    fn around(&mut self, pause: Duration) -> Duration {
        pause / 2 + self.below(pause)
    }

    /// The jitter of a ready probe: nothing or one grid slot, at random, so it stays on the
    /// grid (the wake-ups stay shared) and two services of one slot do not fire together
    /// every period. None for periods under four slots, where a slot is no small part.
    fn slot(&mut self, every: Duration) -> Duration {
        if every < PROBE_GRID * 4 || self.next() & 1 == 0 {
            Duration::ZERO
        } else {
            PROBE_GRID
        }
    }
}

/// Evidence for the brain, each piece tagged with the run it was taken for.
pub use candor_brain::Evidence as Internal;

pub struct Monitor {
    tasks: Vec<AbortHandle>,
    check_now: Arc<tokio::sync::Notify>,
}

impl Monitor {
    /// Probe and check the sockets now rather than at the next tick (e.g. the run just became
    /// ready, and its socket checks must be taken after that).
    pub fn check_now(&self) {
        self.check_now.notify_one();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The run's evidence tasks, each supervised by `faults`: one that panics is reported and
/// started again, so evidence never silently stops coming while the run lives.
#[allow(clippy::too_many_arguments)]
pub fn start(
    spec: Arc<ServiceSpec>,
    probes: Arc<crate::counters::ProbeStats>,
    run_id: u64,
    keeper: KeeperHandle,
    exec: Arc<ExecProbes>,
    gates: Arc<Gates>,
    tx: mpsc::Sender<Internal>,
    ready_fd: Option<OwnedFd>,
    faults: &Arc<Faults>,
) -> Monitor {
    let mut tasks = Vec::new();
    let service = spec.name.to_string();
    let check_now = Arc::new(tokio::sync::Notify::new());
    if let Some(fd) = ready_fd {
        let (tx, service) = (tx.clone(), service.clone());
        // Kept here, so a restarted task reads the same pipe (a dup of it each time).
        let fd = Arc::new(fd);
        let task = format!("the ready fd reader of {service}");
        tasks.push(
            faults
                .supervise(task, move |_| {
                    let (tx, service) = (tx.clone(), service.clone());
                    let fd = fd.try_clone();
                    async move {
                        let Ok(fd) = fd else { return };
                        let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
                            return;
                        };
                        let mut buf = [0u8; 512];
                        // s6: ready when a newline is written; EOF first means it never said so.
                        while let Ok(n) = rx.read(&mut buf).await {
                            if n == 0 {
                                return;
                            }
                            if buf[..n].contains(&b'\n') {
                                let _ = tx
                                    .send(Internal::Ready {
                                        service,
                                        run_id,
                                        via: "fd",
                                    })
                                    .await;
                                return;
                            }
                        }
                    }
                })
                .abort_handle(),
        );
    }
    if let ReadySpec::File(path) = &spec.ready {
        let (tx, service, path) = (tx.clone(), service.clone(), path.clone());
        let task = format!("the ready file watcher of {service}");
        tasks.push(
            faults
                .supervise(task, move |_| {
                    let (tx, service, path) = (tx.clone(), service.clone(), path.clone());
                    async move {
                        while !tokio::fs::try_exists(&path).await.unwrap_or(false) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        let _ = tx
                            .send(Internal::Ready {
                                service,
                                run_id,
                                via: "file",
                            })
                            .await;
                    }
                })
                .abort_handle(),
        );
    }
    if spec.probe.is_some() || !spec.sockets.is_empty() {
        // Whether the run is ready: kept across a restart of the loop.
        let ready = Arc::new(AtomicBool::new(spec.ready == ReadySpec::Started));
        let wake = check_now.clone();
        let task = format!("the probe loop of {service}");
        tasks.push(
            faults
                .supervise(task, move |_| {
                    probe_loop(
                        spec.clone(),
                        probes.clone(),
                        run_id,
                        keeper.clone(),
                        exec.clone(),
                        gates.clone(),
                        tx.clone(),
                        wake.clone(),
                        ready.clone(),
                    )
                })
                .abort_handle(),
        );
    }
    Monitor { tasks, check_now }
}

#[allow(clippy::too_many_arguments)]
async fn probe_loop(
    spec: Arc<ServiceSpec>,
    stats: Arc<crate::counters::ProbeStats>,
    run_id: u64,
    keeper: KeeperHandle,
    exec: Arc<ExecProbes>,
    gates: Arc<Gates>,
    tx: mpsc::Sender<Internal>,
    wake: Arc<tokio::sync::Notify>,
    ready: Arc<AtomicBool>,
) {
    let service = spec.name.to_string();
    let (every, delay, timeout) = match &spec.probe {
        Some(p) => (p.every, p.start_delay, p.timeout),
        None => (SOCKET_CHECK_EVERY, Duration::ZERO, Duration::from_secs(1)),
    };
    let mut jitter = Jitter::new(&service, run_id);
    // The first probe a random part of 20 ms after `start_delay`.
    tokio::time::sleep(delay + jitter.below(FIRST_PROBE_SPREAD)).await;
    // Until the run is ready (the brain says so through `wake`), probe from 20 ms, doubling
    // up to `every`, as a startup probe would: a service is shown running soon after it can
    // serve, not a whole period later. Then every `every`. Each pause is drawn from half to
    // one and a half of its step, so runs started together drift apart.
    let mut pause = STARTUP_PROBE_FIRST.min(every);
    // Once ready: when the next probe is due, on the service's phase of `every` plus nothing
    // or one grid slot at random (one `every` after the last, give or take the slot; half to
    // one and a half after the first; a late probe is not made up for); unchanged by a probe
    // the brain asked for.
    let mut due: Option<tokio::time::Instant> = None;
    let mut first = true;
    loop {
        if !first {
            let now = tokio::time::Instant::now();
            if ready.load(Ordering::Relaxed) && due.is_none_or(|d| d <= now) {
                due = Some(next_due(now + every / 2, every, &service) + jitter.slot(every));
            }
            match due {
                Some(next) => tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = wake.notified() => {}
                },
                None => tokio::select! {
                    _ = tokio::time::sleep(jitter.around(pause)) => pause = (pause * 2).min(every),
                    _ = wake.notified() => ready.store(true, Ordering::Relaxed),
                },
            }
        }
        first = false;
        let (outcome, checks) = tokio::join!(
            probe::run(&spec, &keeper, &exec, &gates),
            probe::check_sockets(&spec.sockets, timeout)
        );
        if !spec.sockets.is_empty() {
            let msg = Internal::Sockets {
                service: service.clone(),
                run_id,
                checks,
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
        if let Some(Attempt::Held) = outcome {
            // Held back by the daemon (its target had no slot free within the timeout): not
            // the service's failure, so no evidence; counted.
            stats.held();
        }
        if let Some(Attempt::Done(outcome)) = outcome {
            stats.observe(outcome.latency, outcome.ok);
            if tx
                .send(Internal::Probe {
                    service: service.clone(),
                    run_id,
                    outcome,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probes_are_due_on_the_period_spread_by_service_and_on_the_grid() {
        let every = Duration::from_secs(5);
        let now = tokio::time::Instant::now();
        let mut slots = std::collections::BTreeSet::new();
        for i in 0..200 {
            let name = format!("s{i}");
            let first = next_due(now, every, &name);
            assert!(first >= now && first < now + every + PROBE_GRID, "{name}");
            // One period apart from then on.
            let second = next_due(first + every / 2, every, &name);
            assert_eq!(second - first, every, "{name}");
            let third = next_due(first + Duration::from_millis(1), every, &name);
            assert_eq!(third, second, "{name}");
            slots.insert((first - now).as_millis() / PROBE_GRID.as_millis());
        }
        // 200 services over 100 slots of 50 ms: spread, not bunched.
        assert!(slots.len() > 70, "{} slots used", slots.len());
        // A period that is not a multiple of the grid still lands on it.
        let odd = Duration::from_millis(1234);
        let a = next_due(now, odd, "x");
        let b = next_due(a + odd / 2, odd, "x");
        assert!(b > a && b - a <= odd + PROBE_GRID, "{:?}", b - a);
    }

    #[test]
    fn startup_pauses_are_jittered_within_bounds_and_keep_their_mean() {
        let mut j = Jitter::new("web", 7);
        for pause in [
            STARTUP_PROBE_FIRST,
            Duration::from_millis(640),
            Duration::from_secs(5),
        ] {
            let n = 20_000;
            let mut sum = Duration::ZERO;
            let (mut low, mut high) = (false, false);
            for _ in 0..n {
                let p = j.around(pause);
                assert!(p >= pause / 2 && p < pause * 3 / 2, "{p:?} for {pause:?}");
                low |= p < pause * 3 / 4;
                high |= p > pause * 5 / 4;
                sum += p;
            }
            let mean = sum.as_secs_f64() / n as f64;
            let want = pause.as_secs_f64();
            assert!((mean - want).abs() < want * 0.02, "mean {mean} for {want}");
            assert!(low && high, "spread over the whole range for {pause:?}");
        }
        // The first probe's delay: below 20 ms, and not the same for runs of one instant.
        let firsts: std::collections::BTreeSet<_> = (0..50)
            .map(|run| {
                let d = Jitter::new("web", run).below(FIRST_PROBE_SPREAD);
                assert!(d < FIRST_PROBE_SPREAD);
                d
            })
            .collect();
        assert!(firsts.len() > 40, "{} distinct first delays", firsts.len());
    }

    #[test]
    fn ready_probes_jitter_by_at_most_one_grid_slot_and_stay_on_the_grid() {
        let mut j = Jitter::new("api", 1);
        let every = Duration::from_secs(5);
        let draws: Vec<_> = (0..1000).map(|_| j.slot(every)).collect();
        assert!(draws
            .iter()
            .all(|d| *d == Duration::ZERO || *d == PROBE_GRID));
        let late = draws.iter().filter(|d| !d.is_zero()).count();
        assert!((400..600).contains(&late), "{late} of 1000 a slot late");
        // Short periods are not jittered: a slot would be a large part of them.
        assert!((0..100).all(|_| j.slot(PROBE_GRID * 3).is_zero()));
    }
}
