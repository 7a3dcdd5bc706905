//! The per-target gate: probes of every service to one target (`host:port` or a socket path)
//! have at most a few in flight at once, so a thousand services probing one endpoint never
//! overflow its listen backlog (a dropped SYN waits out the probe's whole timeout and reads as
//! the service's failure). A probe waits for a slot in FIFO order, for at most its own timeout;
//! a release hands its slot straight to the first waiter whose own limit allows (one wake-up,
//! not a herd). A probe that got no slot was held back by the daemon: not the service's fault.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

/// Slots of one target, and the probes waiting for one, oldest first.
#[derive(Default)]
struct Target {
    inflight: u32,
    waiters: VecDeque<Waiter>,
}

struct Waiter {
    id: u64,
    limit: u32,
    tx: oneshot::Sender<Slot>,
}

#[derive(Default)]
struct Inner {
    /// Only targets with a probe in flight or waiting: an entry goes with its last slot.
    targets: HashMap<Arc<str>, Target>,
    next_id: u64,
}

/// The gates of all targets, shared by every probe loop of the daemon.
pub struct Gates {
    /// `[daemon] probe_max_inflight` (or the default): a probe's limit when its service sets
    /// none. Read as each probe asks for a slot, so a reload applies to the next probes.
    default_limit: AtomicU32,
    inner: Mutex<Inner>,
}

/// A slot to a target, held while the probe is in flight; dropping it releases the slot.
pub struct Slot {
    gates: Arc<Gates>,
    target: Arc<str>,
    /// False only for a slot taken back from a waiter that gave up (already uncounted).
    armed: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            self.gates.release(&self.target);
        }
    }
}

impl Gates {
    pub fn new(default_limit: Option<u32>) -> Arc<Self> {
        let gates = Arc::new(Self {
            default_limit: AtomicU32::new(candor_spec::DEFAULT_PROBE_MAX_INFLIGHT),
            inner: Mutex::default(),
        });
        gates.set_default(default_limit);
        gates
    }

    /// The daemon-wide limit (`[daemon] probe_max_inflight`; None: the default).
    pub fn set_default(&self, limit: Option<u32>) {
        let limit = limit
            .unwrap_or(candor_spec::DEFAULT_PROBE_MAX_INFLIGHT)
            .max(1);
        self.default_limit.store(limit, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Targets with a probe in flight or waiting (for tests: the map does not grow).
    #[cfg(test)]
    fn targets(&self) -> usize {
        self.lock().targets.len()
    }

    /// A slot to `target` for a probe whose service allows `limit` in flight there (None: the
    /// daemon's limit), waiting at most `wait`. None: no slot came in time.
    pub async fn acquire(
        self: &Arc<Self>,
        target: &str,
        limit: Option<u32>,
        wait: Duration,
    ) -> Option<Slot> {
        let limit = limit
            .unwrap_or_else(|| self.default_limit.load(Ordering::Relaxed))
            .max(1);
        let (id, rx, key) = {
            let mut inner = self.lock();
            inner.next_id += 1;
            let id = inner.next_id;
            let key = match inner.targets.get_key_value(target) {
                Some((k, _)) => k.clone(),
                None => Arc::from(target),
            };
            let t = inner.targets.entry(key.clone()).or_default();
            // Waiters are handed slots as soon as their limit allows, so any still waiting
            // need fewer in flight than there are: this probe's own limit is what counts.
            if t.inflight < limit {
                t.inflight += 1;
                return Some(Slot {
                    gates: self.clone(),
                    target: key,
                    armed: true,
                });
            }
            let (tx, rx) = oneshot::channel();
            t.waiters.push_back(Waiter { id, limit, tx });
            (id, rx, key)
        };
        let mut rx = rx;
        if let Ok(got) = tokio::time::timeout(wait, &mut rx).await {
            // An error: the sender went without a slot, which a live gate never does.
            return got.ok();
        }
        // Out of time: leave the queue, unless a release handed this probe a slot just now
        // (then it is in the channel: it came within the wait, barely, and is used).
        let queued = {
            let mut inner = self.lock();
            let mut queued = false;
            if let Some(t) = inner.targets.get_mut(&key) {
                if let Some(i) = t.waiters.iter().position(|w| w.id == id) {
                    t.waiters.remove(i);
                    queued = true;
                }
                if t.inflight == 0 && t.waiters.is_empty() {
                    inner.targets.remove(&key);
                }
            }
            queued
        };
        if queued {
            None
        } else {
            rx.try_recv().ok()
        }
    }

    /// A probe is done with its slot: hand it to the first waiter whose limit allows.
    fn release(self: &Arc<Self>, target: &Arc<str>) {
        // Slots that could not be delivered (their waiter gave up) are dropped after the lock.
        let mut undelivered = Vec::new();
        {
            let mut inner = self.lock();
            let Some(t) = inner.targets.get_mut(target) else {
                return;
            };
            t.inflight = t.inflight.saturating_sub(1);
            while let Some(i) = t.waiters.iter().position(|w| t.inflight < w.limit) {
                let Some(w) = t.waiters.remove(i) else { break };
                let slot = Slot {
                    gates: self.clone(),
                    target: target.clone(),
                    armed: true,
                };
                t.inflight += 1;
                if let Err(mut slot) = w.tx.send(slot) {
                    // That waiter is gone: it never had the slot.
                    slot.armed = false;
                    t.inflight -= 1;
                    undelivered.push(slot);
                }
            }
            if t.inflight == 0 && t.waiters.is_empty() {
                inner.targets.remove(target);
            }
        }
        drop(undelivered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_limit_are_in_flight_and_the_map_empties() {
        let gates = Gates::new(Some(3));
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (gates, now, max) = (gates.clone(), now.clone(), max.clone());
            tasks.push(tokio::spawn(async move {
                let slot = gates.acquire("h:1", None, LONG).await.expect("a slot");
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                drop(slot);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 3);
        assert_eq!(gates.targets(), 0, "an idle target keeps no entry");
        // Another target is not held back by this one.
        let _a = gates.acquire("h:1", None, LONG).await.unwrap();
        let _b = gates.acquire("h:2", None, Duration::ZERO).await.unwrap();
        assert_eq!(gates.targets(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_get_slots_first_come_first_served() {
        let gates = Gates::new(Some(1));
        let first = gates.acquire("t", None, LONG).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (gates, order) = (gates.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let slot = gates.acquire("t", None, LONG).await.unwrap();
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(1)).await;
                drop(slot);
            }));
            // Each queues before the next asks.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(gates.targets(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_leaks_no_slot_and_is_skipped() {
        let gates = Gates::new(Some(1));
        let held = gates.acquire("t", None, LONG).await.unwrap();
        // Gives up after 100 ms: no slot.
        let started = tokio::time::Instant::now();
        assert!(gates
            .acquire("t", None, Duration::from_millis(100))
            .await
            .is_none());
        assert!(started.elapsed() >= Duration::from_millis(100));
        // One that waits longer, queued behind a waiter that will give up first.
        let quitter = {
            let gates = gates.clone();
            tokio::spawn(async move { gates.acquire("t", None, Duration::from_millis(50)).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let patient = {
            let gates = gates.clone();
            tokio::spawn(async move { gates.acquire("t", None, LONG).await.is_some() })
        };
        assert!(quitter.await.unwrap().is_none());
        drop(held);
        assert!(
            patient.await.unwrap(),
            "the slot skips the waiter that left"
        );
        // Every slot came back: the limit is whole again.
        assert_eq!(gates.targets(), 0);
        let a = gates.acquire("t", None, Duration::ZERO).await;
        assert!(a.is_some());
        assert!(gates.acquire("t", None, Duration::ZERO).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_handed_to_a_waiter_that_just_left_comes_back() {
        let gates = Gates::new(Some(1));
        let held = gates.acquire("t", None, LONG).await.unwrap();
        let waiter = {
            let gates = gates.clone();
            tokio::spawn(async move { gates.acquire("t", None, LONG).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        // The waiter's task ends while it is queued: its receiver is dropped.
        waiter.abort();
        let _ = waiter.await;
        drop(held);
        assert_eq!(gates.targets(), 0);
        assert!(gates.acquire("t", None, Duration::ZERO).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_when_the_slot_comes_and_the_rest_is_the_probes() {
        // A probe that waited 800 ms of its 1 s for a slot still gets its whole second after.
        let gates = Gates::new(Some(1));
        let held = gates.acquire("t", None, LONG).await.unwrap();
        let timeout = Duration::from_secs(1);
        let probe = {
            let gates = gates.clone();
            tokio::spawn(async move {
                let _slot = gates.acquire("t", None, timeout).await?;
                let got = tokio::time::Instant::now();
                // The probe proper, as probe::run does: its timeout from here.
                let answered =
                    tokio::time::timeout(timeout, tokio::time::sleep(Duration::from_millis(900)))
                        .await
                        .is_ok();
                Some((got, answered))
            })
        };
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(800)).await;
        drop(held);
        let (got, answered) = probe.await.unwrap().expect("a slot within the timeout");
        assert_eq!(got - start, Duration::from_millis(800));
        assert!(
            answered,
            "900 ms after the slot is within the probe's timeout"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_waiter_keeps_its_own_smaller_limit() {
        // Daemon limit 4; one service allows only 1 in flight to the target.
        let gates = Gates::new(None);
        let a = gates.acquire("t", None, LONG).await.unwrap();
        // 1 in flight: the strict one must wait, the others need not.
        assert!(gates.acquire("t", Some(1), Duration::ZERO).await.is_none());
        let b = gates.acquire("t", None, Duration::ZERO).await.unwrap();
        let strict = {
            let gates = gates.clone();
            tokio::spawn(async move { gates.acquire("t", Some(1), LONG).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        // A release leaves one in flight: still too many for the strict waiter, so the
        // next default-limit probe goes first.
        drop(a);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!strict.is_finished());
        drop(b);
        let s = strict.await.unwrap().expect("alone now");
        // While the strict probe is in flight, default probes still fit (2 of 4).
        let c = gates.acquire("t", None, Duration::ZERO).await;
        assert!(c.is_some());
        drop((s, c));
        assert_eq!(gates.targets(), 0);
        // A reload's new default applies to the next probes.
        gates.set_default(Some(1));
        let _d = gates.acquire("t", None, Duration::ZERO).await.unwrap();
        assert!(gates.acquire("t", None, Duration::ZERO).await.is_none());
    }
}
