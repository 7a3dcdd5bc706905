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

/// A delay spread for one service's one restart: somewhere in [delay/2, delay] ("equal
/// jitter"), picked by `seed` (e.g. from the service's name and run count). Services that fail
/// together do not all come back in the same instant; each still waits at least half its
/// backoff, so a crash loop stays slowed down. Deterministic: the brain has no randomness.
pub fn jitter(delay: Duration, seed: u64) -> Duration {
    let half = delay / 2;
    let span = (delay - half).as_nanos() as u64;
    if span == 0 {
        return delay;
    }
    // splitmix64: a well-spread value from a seed.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    half + Duration::from_nanos(z % (span + 1))
}

/// A seed for [`jitter`] from a name and a count (FNV-1a).
pub fn seed(name: &str, n: u64) -> u64 {
    use crate::hash::{fnv1a, fnv1a_from};
    fnv1a_from(fnv1a(name.as_bytes()), &n.to_le_bytes())
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

    #[test]
    fn jitter_spreads_services_that_fail_together_over_the_upper_half() {
        let delay = Duration::from_secs(8);
        let mut buckets = [0u32; 8];
        for i in 0..1000 {
            let d = jitter(delay, seed(&format!("s{i}"), 3));
            assert!(d >= delay / 2 && d <= delay, "{d:?}");
            buckets[((d - delay / 2).as_millis() / 500).min(7) as usize] += 1;
        }
        // 1000 services over 4 s: every half second gets some, none gets most.
        assert!(
            buckets.iter().all(|&b| (60..=200).contains(&b)),
            "{buckets:?}"
        );
        assert_eq!(jitter(Duration::ZERO, 7), Duration::ZERO);
        assert_eq!(jitter(delay, 7), jitter(delay, 7));
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
