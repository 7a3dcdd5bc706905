//! The rate limit of one service's log lines (both streams): a token bucket, and the
//! suppression it starts, ended by one marker line.

use std::time::{Duration, Instant};

use candor_spec::LogsSpec;

/// The rate limit of one service (both streams): a token bucket. Once it runs dry, the
/// service stays suppressed until the bucket is half full again, so a steady flood gives one
/// marker per window rather than one per refilled token. A line the store cannot queue starts
/// a short suppression too (the writer is behind: let it catch up rather than drop line by
/// line, with a marker for every other line).
#[derive(Debug)]
pub(crate) struct Gate {
    /// Lines per second; 0: no limit.
    pub(crate) rate: f64,
    pub(crate) burst: f64,
    pub(crate) tokens: f64,
    pub(crate) last: Option<Instant>,
    /// Lines suppressed since `suppressed_since`.
    pub(crate) suppressed: u64,
    pub(crate) suppressed_since: Option<Instant>,
    /// Whether the store (not the rate limit) started the current suppression.
    pub(crate) store_behind: bool,
}

/// A suppression because the store was behind lasts until its queue is half empty, checked
/// this often; then lines flow again as the rate limit allows.
const STORE_POLL: Duration = Duration::from_millis(5);

impl Default for Gate {
    fn default() -> Self {
        let d = LogsSpec::default();
        Self {
            rate: f64::from(d.rate),
            burst: f64::from(d.burst),
            tokens: f64::from(d.burst),
            last: None,
            suppressed: 0,
            suppressed_since: None,
            store_behind: false,
        }
    }
}

impl Gate {
    pub(crate) fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let add = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + add).min(self.burst);
        }
        self.last = Some(now);
    }

    pub(crate) fn resume_level(&self) -> f64 {
        (self.burst / 2.0).max(1.0)
    }

    /// When the current suppression may end if nothing more comes.
    pub(crate) fn lifts_at(&self, now: Instant) -> Option<Instant> {
        self.suppressed_since?;
        if self.store_behind {
            return Some(now + STORE_POLL);
        }
        if self.rate <= 0.0 {
            // No limit (any more: `rate = 0` set by a reload): nothing to wait for.
            return Some(now);
        }
        let missing = (self.resume_level() - self.tokens).max(0.0);
        let wait = Duration::try_from_secs_f64(missing / self.rate).unwrap_or(Duration::MAX);
        Some(
            now.checked_add(wait)
                .unwrap_or(now + Duration::from_secs(3600)),
        )
    }

    /// Whether the current suppression may end now (`store_room`: the store's queue is back
    /// under half full).
    pub(crate) fn may_lift(&self, store_room: bool) -> bool {
        match self.suppressed_since {
            None => false,
            Some(_) if self.store_behind => store_room,
            Some(_) => self.rate <= 0.0 || self.tokens >= self.resume_level(),
        }
    }

    /// The marker line that stands for the current suppression; it ends with [`Gate::clear`]
    /// once the marker is stored.
    pub(crate) fn marker(&self, now: Instant) -> Option<Vec<u8>> {
        let since = self.suppressed_since?;
        let (n, secs) = (
            self.suppressed,
            now.saturating_duration_since(since).as_secs_f64(),
        );
        Some(
            match self.store_behind {
                false => format!("-- suppressed {n} lines in {secs:.1} s --"),
                true => {
                    format!("-- dropped {n} lines in {secs:.1} s: the log store fell behind --")
                }
            }
            .into_bytes(),
        )
    }

    pub(crate) fn clear(&mut self) {
        self.suppressed = 0;
        self.suppressed_since = None;
        self.store_behind = false;
    }

    /// Whether one more line may pass now. When this ends a suppression, the caller writes its
    /// marker first (see [`Gate::marker`]).
    pub(crate) fn admit(&mut self, now: Instant, store_room: impl Fn() -> bool) -> bool {
        if self.rate > 0.0 {
            self.refill(now);
        }
        if self.suppressed_since.is_some() && !self.may_lift(store_room()) {
            return false;
        }
        if self.rate <= 0.0 {
            return true;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed_since.get_or_insert(now);
            false
        }
    }

    /// The store refused a line standing for `weight` lines.
    pub(crate) fn store_full(&mut self, now: Instant, weight: u64) {
        self.suppressed += weight;
        if self.suppressed_since.is_none() {
            self.suppressed_since = Some(now);
            self.store_behind = true;
        }
    }
}
