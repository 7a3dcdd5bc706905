//! `metrics = true` on an `otlp` target: every `METRICS_EVERY`, the services' metrics as an
//! OTLP/HTTP metrics request to `<url>/v1/metrics` (state, restarts, memory, fds; see
//! `otlp::encode_metrics`). One request a period, never queued: a period whose request fails
//! is counted and skipped — the next one carries the same counters, newer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use candor_spec::forward::OtlpTarget;
use tokio::sync::watch;

use super::otlp::{collector, encode_metrics};
use super::{Counts, Setup};
use crate::http_post::Posted;

/// How often the metrics are sent.
pub const METRICS_EVERY: Duration = Duration::from_secs(10);

pub async fn run(
    target: OtlpTarget,
    counts: Arc<Counts>,
    setup: Setup,
    mut stop: watch::Receiver<()>,
) {
    let mut collector = match collector(&target.url, &target.headers, "metrics") {
        Ok(c) => c,
        Err(why) => {
            *counts
                .metrics_error
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(why);
            return;
        }
    };
    let nanos = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    };
    let start_ns = nanos(SystemTime::now());
    let mut tick = tokio::time::interval(METRICS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = candor_keeper::clock::now();
        let statuses = setup.board.borrow().clone().statuses(now);
        let body = encode_metrics(&statuses, &setup.host, start_ns, nanos(now.wall));
        let failed = match collector.post(body, super::sink::ATTEMPT).await {
            Posted::Sent => None,
            Posted::Retry(why) | Posted::Rejected(why) => Some(why),
        };
        match &failed {
            None => counts.metrics_sent.fetch_add(1, Ordering::Relaxed),
            Some(_) => counts.metrics_failed.fetch_add(1, Ordering::Relaxed),
        };
        *counts
            .metrics_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = failed;
    }
}
