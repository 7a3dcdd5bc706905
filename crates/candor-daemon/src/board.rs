//! The board: a snapshot of every service's facts, published by the brain after each change.
//! Readers turn it into statuses with `derive` at read time, so a status is never older than
//! the request that asked for it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use candor_api::{self as api, timestamp};
use candor_core::status::{Evidence, Phase, Run};
use candor_core::{derive, Derived};
use candor_spec::ServiceSpec;

use crate::logs::LogCounters;

#[derive(Clone, Debug)]
pub struct ServiceView {
    pub spec: Arc<ServiceSpec>,
    pub evidence: Evidence,
    /// When the derived state last changed.
    pub since: SystemTime,
    pub runs: u64,
    pub logs: Arc<LogCounters>,
}

#[derive(Clone, Debug, Default)]
pub struct Board {
    pub services: Vec<ServiceView>,
}

impl Board {
    pub fn get(&self, name: &str) -> Option<&ServiceView> {
        self.services.iter().find(|s| s.spec.name.as_str() == name)
    }
    pub fn names(&self) -> Vec<String> {
        self.services
            .iter()
            .map(|s| s.spec.name.to_string())
            .collect()
    }
}

/// The live run, if a process of the service is alive.
pub fn live_run(phase: &Phase) -> Option<&Run> {
    match phase {
        Phase::Running(run) => Some(run),
        Phase::Stopping {
            run,
            main_exit: None,
            ..
        } => Some(run),
        _ => None,
    }
}

impl ServiceView {
    pub fn derived(&self, now: SystemTime) -> Derived {
        derive(&self.spec, &self.evidence, now)
    }

    pub fn status(&self, now: SystemTime) -> api::ServiceStatus {
        let Derived { state, reason } = self.derived(now);
        let run = live_run(&self.evidence.phase);
        let health = run.and_then(|r| self.evidence.health_of(r));
        api::ServiceStatus {
            name: self.spec.name.to_string(),
            state: state.as_str().into(),
            reason,
            since: timestamp(self.since),
            pid: run.map(|r| r.pid),
            uptime_s: run.map(|r| {
                now.duration_since(r.started_at)
                    .unwrap_or_default()
                    .as_secs_f64()
            }),
            restarts: self.evidence.restarts,
            last_exit: self.evidence.last_exit.map(|e| api::LastExit {
                code: e.status.code(),
                signal: e.status.signal().map(candor_core::exit::signal_name),
                at: timestamp(e.at),
                uptime_s: e.uptime.as_secs_f64(),
            }),
            ready: run.and_then(|r| r.ready).map(|(at, via)| api::Ready {
                via: via.into(),
                at: timestamp(at),
            }),
            probes: health
                .and_then(|h| h.probe.last.as_ref())
                .map(|o| api::ProbeResult {
                    kind: self
                        .spec
                        .probe
                        .as_ref()
                        .map(|p| p.check.kind())
                        .unwrap_or("probe")
                        .into(),
                    ok: o.ok,
                    detail: o.detail.clone(),
                    latency_ms: (o.latency.as_secs_f64() * 1e4).round() / 10.0,
                    at: timestamp(o.at),
                })
                .into_iter()
                .collect(),
            sockets: health
                .map(|h| {
                    h.sockets
                        .iter()
                        .map(|c| api::SocketCheck {
                            path: c.path.display().to_string(),
                            exists: c.exists,
                            accepts: c.accepts,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            fds: health.and_then(|h| {
                let b = h.budget.as_ref().filter(|b| b.is_fresh(now))?;
                let last = &b.latest;
                Some(api::Fds {
                    count: last.fds,
                    limit: last.fd_limit,
                    pct: (candor_core::budget::pct(last.fds, last.fd_limit) * 10.0).round() / 10.0,
                    per_hour: b.per_hour.map(|r| r.round()),
                    eta_s: b.eta.map(|d| d.as_secs_f64().round()),
                })
            }),
            rss_bytes: health
                .and_then(|h| h.budget.as_ref())
                .filter(|b| b.is_fresh(now))
                .map(|b| b.latest.rss),
            logs: api::LogCounts {
                lines: self.logs.lines.load(Ordering::Relaxed),
                dropped: self.logs.dropped.load(Ordering::Relaxed),
                folded: self.logs.folded.load(Ordering::Relaxed),
            },
            runs: self.runs,
            next_start: match &self.evidence.phase {
                Phase::Backoff { until, .. } => Some(timestamp(*until)),
                _ => None,
            },
            status_text: health.and_then(|h| h.notify_status.clone()),
        }
    }
}
