//! The escalation timeline of a stop: the configured signal to the whole group now, SIGKILL
//! to the whole group / cgroup at `requested + timeout`. A stop always ends.

use std::time::Duration;

use crate::time::Mono;

use candor_spec::{StopSignal, StopSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopTimeline {
    pub signal: StopSignal,
    pub signal_at: Mono,
    pub kill_at: Mono,
}

pub fn timeline(spec: &StopSpec, requested_at: Mono) -> StopTimeline {
    StopTimeline {
        signal: spec.signal,
        signal_at: requested_at,
        kill_at: requested_at + spec.timeout,
    }
}

/// Whether the SIGKILL step is due.
pub fn kill_due(t: &StopTimeline, now: Mono) -> bool {
    now >= t.kill_at
}

/// Time left before SIGKILL (zero once due).
pub fn until_kill(t: &StopTimeline, now: Mono) -> Duration {
    now.until(t.kill_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalates_after_timeout() {
        let t0 = Mono(Duration::from_secs(1000));
        let spec = StopSpec {
            signal: StopSignal::Int,
            timeout: Duration::from_secs(3),
        };
        let t = timeline(&spec, t0);
        assert_eq!(t.signal, StopSignal::Int);
        assert!(!kill_due(&t, t0 + Duration::from_millis(2999)));
        assert!(kill_due(&t, t0 + Duration::from_secs(3)));
        assert_eq!(
            until_kill(&t, t0 + Duration::from_secs(1)),
            Duration::from_secs(2)
        );
        assert_eq!(until_kill(&t, t0 + Duration::from_secs(10)), Duration::ZERO);
    }
}
