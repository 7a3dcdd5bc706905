//! What the daemon counts for each service and the board shows: log lines (per stream, with
//! the service's log rate limit) and probe outcomes. Plain data, shared by the counting tasks,
//! the board and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use candor_spec::LogsSpec;

use crate::log_gate::Gate;

/// Log counters of one service, shared by its two pipe readers and shown in status.
#[derive(Debug, Default)]
pub struct LogCounters {
    /// Lines kept (stored).
    pub lines: AtomicU64,
    /// Lines lost: over the rate limit, or the store was behind.
    pub dropped: AtomicU64,
    /// Identical consecutive lines folded into a "repeated N times" marker.
    pub folded: AtomicU64,
    /// Lines the store took but could not write (a full or failing disk): counted in `lines`
    /// when queued, so shown as dropped, not kept.
    pub store_lost: AtomicU64,
    /// The same per stream (`[stdout, stderr]`), for the metrics: lines queued to the store,
    /// suppressed by the rate limit, dropped because the store was full.
    pub streams: [StreamCounts; 2],
    gate: Mutex<Gate>,
}

/// One stream's share of a service's log counters.
#[derive(Debug, Default)]
pub struct StreamCounts {
    pub lines: AtomicU64,
    pub suppressed: AtomicU64,
    pub dropped: AtomicU64,
}

/// The two streams, named as `StreamCounts` are indexed.
pub const STREAMS: [&str; 2] = ["stdout", "stderr"];

impl LogCounters {
    pub fn new(spec: &LogsSpec) -> Self {
        let c = Self::default();
        c.configure(spec);
        c
    }

    /// Lines stored, as shown.
    pub fn kept(&self) -> u64 {
        let lost = self.store_lost.load(Ordering::Relaxed);
        self.lines.load(Ordering::Relaxed).saturating_sub(lost)
    }

    /// Lines lost for any reason (rate limit, store behind, store could not write), as shown.
    pub fn lost(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed) + self.store_lost.load(Ordering::Relaxed)
    }

    /// Apply (new) limits; the bucket starts full.
    pub fn configure(&self, spec: &LogsSpec) {
        let mut g = self.gate();
        g.rate = f64::from(spec.rate);
        g.burst = f64::from(spec.burst.max(1));
        g.tokens = g.burst;
    }

    pub(crate) fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Upper bounds (seconds) of the probe duration buckets: Prometheus' defaults.
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A service's probes since the daemon started: a duration histogram and failures. Counted
/// by the probe loop as each probe ends, kept while the service is configured.
#[derive(Debug, Default)]
pub struct ProbeStats {
    /// Non-cumulative: `buckets[i]` counts probes that took at most `BUCKETS[i]` and more
    /// than the bound before it.
    pub(crate) buckets: [AtomicU64; BUCKETS.len()],
    pub(crate) count: AtomicU64,
    pub(crate) sum_us: AtomicU64,
    pub(crate) failures: AtomicU64,
    /// Probes the daemon held back (no slot to their target within their timeout).
    pub(crate) held: AtomicU64,
}

impl ProbeStats {
    /// A probe the daemon held back: no outcome, not the service's failure.
    pub fn held(&self) {
        self.held.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe(&self, latency: Duration, ok: bool) {
        let secs = latency.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}
