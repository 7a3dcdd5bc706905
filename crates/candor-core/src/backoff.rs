//! Capped exponential backoff between restarts.
//!
//! A run that lasted at least `reset_after` was a good run: the restart after it is immediate
//! and the streak of quick exits starts over. Each quick exit in a row doubles the delay from
//! `initial`, never past `max`.

use std::time::Duration;

use candor_spec::BackoffSpec;

/// The delay before the next start, and the new count of quick exits in a row.
pub fn after_exit(spec: &BackoffSpec, quick_exits: u32, uptime: Duration) -> (Duration, u32) {
    if uptime >= spec.reset_after {
        return (Duration::ZERO, 0);
    }
    let streak = quick_exits.saturating_add(1);
    (delay_for_streak(spec, streak), streak)
}

/// Delay for the `streak`-th quick exit in a row (1-based): initial · 2^(streak-1), capped.
pub fn delay_for_streak(spec: &BackoffSpec, streak: u32) -> Duration {
    if streak == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(streak - 1).unwrap_or(u32::MAX);
    spec.initial
        .checked_mul(factor)
        .unwrap_or(spec.max)
        .min(spec.max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(initial_ms: u64, max_ms: u64, reset_ms: u64) -> BackoffSpec {
        BackoffSpec {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
            reset_after: Duration::from_millis(reset_ms),
        }
    }

    #[test]
    fn quick_exits_double_from_initial_up_to_max() {
        let s = spec(100, 1000, 60_000);
        let mut streak = 0;
        let mut delays = Vec::new();
        for _ in 0..7 {
            let (d, n) = after_exit(&s, streak, Duration::from_millis(10));
            streak = n;
            delays.push(d.as_millis());
        }
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn good_run_restarts_immediately_and_resets_the_streak() {
        let s = spec(100, 30_000, 500);
        assert_eq!(
            after_exit(&s, 6, Duration::from_millis(500)),
            (Duration::ZERO, 0)
        );
        // The next quick exit starts again from initial.
        assert_eq!(
            after_exit(&s, 0, Duration::from_millis(5)),
            (Duration::from_millis(100), 1)
        );
    }

    proptest! {
        #[test]
        fn delay_never_exceeds_max(initial in 1u64..10_000, extra in 0u64..100_000, streak in 0u32..200, up in 0u64..1_000_000) {
            let s = spec(initial, initial + extra, 60_000);
            let (d, _) = after_exit(&s, streak, Duration::from_millis(up));
            prop_assert!(d <= s.max);
        }

        #[test]
        fn reset_after_a_long_run(initial in 1u64..10_000, streak in 0u32..200, reset in 1u64..100_000, over in 0u64..100_000) {
            let s = spec(initial, initial * 300, reset);
            let (d, n) = after_exit(&s, streak, Duration::from_millis(reset + over));
            prop_assert_eq!(d, Duration::ZERO);
            prop_assert_eq!(n, 0);
        }

        #[test]
        fn delays_never_shrink_within_a_streak(initial in 1u64..10_000, extra in 0u64..100_000, streak in 1u32..100) {
            let s = spec(initial, initial + extra, 60_000);
            prop_assert!(delay_for_streak(&s, streak) <= delay_for_streak(&s, streak + 1));
        }
    }
}
