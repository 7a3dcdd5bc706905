//! Health evidence of one run: probe results, declared-socket checks, the sd_notify watchdog
//! and status text. Each piece names the run it was taken for; `derive` ignores evidence of
//! any other run.

use std::path::PathBuf;
use std::time::Duration;

use crate::time::Mono;

/// One probe attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub ok: bool,
    /// One line: "HTTP 200", "connection closed before response", "timed out after 2s".
    pub detail: String,
    pub latency: Duration,
    pub at: Mono,
}

/// Consecutive-result tracking, Kubernetes style: `failures` in a row make it unhealthy,
/// `successes` in a row make it healthy again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeHealth {
    pub unhealthy: bool,
    pub failures_in_a_row: u32,
    pub successes_in_a_row: u32,
    /// Any success seen in this run (readiness for `ready = "probe"`).
    pub ever_ok: bool,
    pub last: Option<ProbeOutcome>,
}

impl ProbeHealth {
    /// An outcome taken before the run was ready: shown as the last result, but a failure is
    /// not counted (the service may still be starting; Kubernetes' startup probe does the same).
    pub fn record_before_ready(&mut self, outcome: ProbeOutcome) {
        if outcome.ok {
            self.ever_ok = true;
        }
        self.last = Some(outcome);
    }

    /// Fold one outcome in. Returns true when healthy/unhealthy flipped.
    pub fn record(&mut self, outcome: ProbeOutcome, failures: u32, successes: u32) -> bool {
        let before = self.unhealthy;
        if outcome.ok {
            self.successes_in_a_row += 1;
            self.failures_in_a_row = 0;
            self.ever_ok = true;
            if self.unhealthy && self.successes_in_a_row >= successes.max(1) {
                self.unhealthy = false;
            }
        } else {
            self.failures_in_a_row += 1;
            self.successes_in_a_row = 0;
            if self.failures_in_a_row >= failures.max(1) {
                self.unhealthy = true;
            }
        }
        self.last = Some(outcome);
        before != self.unhealthy
    }
}

/// The last check of one declared socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketCheck {
    pub path: PathBuf,
    pub exists: bool,
    pub accepts: bool,
    pub at: Mono,
}

impl SocketCheck {
    /// The problem, as the status reason states it.
    pub fn problem(&self) -> Option<String> {
        if !self.exists {
            Some(format!(
                "declared socket {} missing on disk",
                self.path.display()
            ))
        } else if !self.accepts {
            Some(format!(
                "declared socket {} refuses connections",
                self.path.display()
            ))
        } else {
            None
        }
    }
}

/// Everything known about the health of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    pub run_id: u64,
    pub probe: ProbeHealth,
    pub sockets: Vec<SocketCheck>,
    /// Set once the watchdog deadline passed without `WATCHDOG=1` (or on `WATCHDOG=trigger`).
    pub watchdog_missed: Option<String>,
    /// sd_notify `STATUS=` text.
    pub notify_status: Option<String>,
    /// `RELOADING=1` came and no `READY=1` since.
    pub reloading: bool,
    /// Reloads the run finished (`RELOADING=1`, then `READY=1`).
    pub reloads: u32,
    /// The newest fd/RSS sample of this run and its trend.
    pub budget: Option<crate::budget::Summary>,
}

impl Health {
    pub fn for_run(run_id: u64) -> Self {
        Self {
            run_id,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(ok: bool) -> ProbeOutcome {
        ProbeOutcome {
            ok,
            detail: if ok {
                "HTTP 200".into()
            } else {
                "HTTP 503".into()
            },
            latency: Duration::from_millis(1),
            at: Mono::default(),
        }
    }

    #[test]
    fn failures_in_a_row_flip_and_successes_recover() {
        let mut h = ProbeHealth::default();
        let seq = [
            (false, false),
            (false, false),
            (false, true),
            (false, true),
            (true, true),
            (true, false),
        ];
        for (i, (ok, unhealthy_after)) in seq.into_iter().enumerate() {
            h.record(o(ok), 3, 2);
            assert_eq!(h.unhealthy, unhealthy_after, "step {i}");
        }
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let mut h = ProbeHealth::default();
        for ok in [false, false, true, false, false] {
            h.record(o(ok), 3, 1);
        }
        assert!(!h.unhealthy);
        assert!(h.ever_ok);
    }
}
