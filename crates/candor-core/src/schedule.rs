//! When a schedule fires, in unix milliseconds: the next fire after an instant, and the
//! latest fire in a span (catch-up). Wall time by nature; the brain asks with the wall clock
//! it was given, never reads one.
//!
//! - `every = "15m"`: fires at `phase + k × every`, where `phase` comes from the job's name
//!   (FNV-1a), so a thousand jobs with one period are spread over it instead of firing
//!   together; each fire adds a `jitter` in `[0, jitter)` drawn from the name and `k`.
//! - `cron = "0 3 * * *"` in an IANA `timezone` (croner's patterns: five fields, or six with
//!   seconds first; `@daily`-style aliases). Time zones come from the system's database, else
//!   the one bundled with jiff (looked up once per zone, then cached). Daylight saving time, as
//!   croner does it: a time that does not exist (02:30 on the day clocks spring forward) fires
//!   once at the first instant after the gap (03:00); a time that happens twice (02:30 on the
//!   day they fall back) fires once, at its first occurrence; interval patterns (`*/15 * * *
//!   *`) fire on the new wall time after a gap and in both halves of an overlap.

use candor_spec::When;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// The latest fire in a span is looked for at most this far back (catch-up after a long
/// outage runs once anyway; the exact fire only labels the run).
const CATCH_UP_SEARCH: i64 = 366 * 24 * 3600 * 1000;

/// FNV-1a of `bytes` from a start that depends on `seed` (0: plain FNV-1a).
fn fnv(bytes: &[u8], seed: u64) -> u64 {
    use crate::hash::{fnv1a_from, FNV_OFFSET};
    fnv1a_from(FNV_OFFSET ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), bytes)
}

/// The `every` fire `k`: phase + k periods + its jitter.
fn every_fire(name: &str, period: i64, jitter: i64, k: i64) -> i64 {
    let phase = (fnv(name.as_bytes(), 0) % period as u64) as i64;
    let j = if jitter > 0 {
        (fnv(name.as_bytes(), k as u64 ^ 0x5bd1_e995) % jitter as u64) as i64
    } else {
        0
    };
    phase + k * period + j
}

/// The first `every` period index whose fire (before jitter) is at or after `ms`.
fn every_index(name: &str, period: i64, ms: i64) -> i64 {
    let phase = (fnv(name.as_bytes(), 0) % period as u64) as i64;
    (ms - phase).div_euclid(period)
}

pub use candor_spec::schedule_check::check;
use candor_spec::schedule_check::{pattern, zone};

fn zoned(ms: i64, tz: TimeZone) -> Option<Zoned> {
    Some(Zoned::new(Timestamp::from_millisecond(ms).ok()?, tz))
}

/// The first fire strictly after `after_ms`; None for a cron pattern or zone that does not
/// parse (the config was checked at load) or that never fires again.
pub fn next_fire(when: &When, name: &str, after_ms: i64) -> Option<i64> {
    match when {
        When::Every { every, jitter } => {
            let period = (every.as_millis() as i64).max(1);
            let jitter = jitter.as_millis() as i64;
            // A fire's jitter is less than a period: the answer is in this index or the next.
            let k = every_index(name, period, after_ms) - 1;
            (k..k + 3)
                .map(|k| every_fire(name, period, jitter, k))
                .find(|t| *t > after_ms)
        }
        When::Cron { expr, timezone } => {
            let cron = pattern(expr).ok()?;
            let start = zoned(after_ms, zone(timezone).ok()?)?;
            let next = cron.find_next_occurrence(&start, false).ok()?;
            let ms = next.timestamp().as_millisecond();
            // Patterns are whole seconds: a start inside a second may match that second.
            if ms > after_ms {
                Some(ms)
            } else {
                let start = zoned(ms + 1000, start.time_zone().clone())?;
                cron.find_next_occurrence(&start, true)
                    .ok()
                    .map(|z| z.timestamp().as_millisecond())
            }
        }
    }
}

/// The latest fire in `(after_ms, upto_ms]`, if any (what a catch-up runs for).
pub fn last_fire_between(when: &When, name: &str, after_ms: i64, upto_ms: i64) -> Option<i64> {
    if upto_ms <= after_ms {
        return None;
    }
    match when {
        When::Every { every, jitter } => {
            let period = (every.as_millis() as i64).max(1);
            let jitter = jitter.as_millis() as i64;
            let k = every_index(name, period, upto_ms) + 1;
            ((k - 3)..=k)
                .rev()
                .map(|k| every_fire(name, period, jitter, k))
                .find(|t| *t <= upto_ms)
                .filter(|t| *t > after_ms)
        }
        When::Cron { expr, timezone } => {
            let cron = pattern(expr).ok()?;
            let tz = zone(timezone).ok()?;
            let from = after_ms.max(upto_ms - CATCH_UP_SEARCH);
            let end = zoned(upto_ms, tz)?;
            let prev = cron.find_previous_occurrence(&end, true).ok()?;
            Some(prev.timestamp().as_millisecond()).filter(|t| *t > from && *t <= upto_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cron(expr: &str, tz: &str) -> When {
        When::Cron {
            expr: expr.into(),
            timezone: tz.into(),
        }
    }

    /// Unix ms of an RFC 3339 instant.
    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn show(ms: i64) -> String {
        Timestamp::from_millisecond(ms).unwrap().to_string()
    }

    /// The next `n` fires after `from`, as RFC 3339 UTC.
    fn fires(when: &When, from: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut t = at(from);
        for _ in 0..n {
            t = next_fire(when, "job", t).expect("fires");
            out.push(show(t));
        }
        out
    }

    #[test]
    fn daily_cron_in_a_zone_fires_at_its_local_time_across_both_transitions() {
        let w = cron("0 3 * * *", "Europe/Berlin");
        // 03:00 CET is 02:00 UTC; after 2026-03-29 03:00 CEST is 01:00 UTC.
        assert_eq!(
            fires(&w, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T02:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T01:00:00Z"
            ]
        );
        assert_eq!(
            fires(&w, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T02:00:00Z", "2026-10-26T02:00:00Z"]
        );
    }

    #[test]
    fn a_time_in_the_spring_gap_fires_once_at_the_end_of_the_gap() {
        // Europe/Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 never happens.
        let w = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            fires(&w, "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29T01:00:00Z", // 03:00 CEST, the first instant after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
                "2026-03-31T00:30:00Z"
            ]
        );
        // New York, 2026-03-08 02:00 EST -> 03:00 EDT.
        let w = cron("30 2 * * *", "America/New_York");
        assert_eq!(
            fires(&w, "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
        );
    }

    #[test]
    fn a_time_that_happens_twice_fires_once_at_its_first_occurrence() {
        // Europe/Berlin 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let w = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            fires(&w, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
        // From inside the overlap's second half: not again that day.
        assert_eq!(
            fires(&w, "2026-10-25T01:00:00Z", 1),
            ["2026-10-26T01:30:00Z"]
        );
    }

    #[test]
    fn an_hourly_job_neither_doubles_nor_misses_across_the_transitions() {
        let w = cron("15 * * * *", "Europe/Berlin");
        // Spring: the local 02:15 does not exist; every real hour still has one fire.
        let spring = fires(&w, "2026-03-28T23:30:00Z", 4);
        assert_eq!(
            spring,
            [
                "2026-03-29T00:15:00Z",
                "2026-03-29T01:15:00Z",
                "2026-03-29T02:15:00Z",
                "2026-03-29T03:15:00Z"
            ]
        );
        // Autumn: both 02:15s are real instants an hour apart.
        let autumn = fires(&w, "2026-10-24T23:30:00Z", 4);
        assert_eq!(
            autumn,
            [
                "2026-10-25T00:15:00Z",
                "2026-10-25T01:15:00Z",
                "2026-10-25T02:15:00Z",
                "2026-10-25T03:15:00Z"
            ]
        );
    }

    #[test]
    fn a_leap_day_job_fires_only_in_leap_years() {
        let w = cron("0 0 29 2 *", "UTC");
        assert_eq!(
            fires(&w, "2026-01-01T00:00:00Z", 2),
            ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]
        );
    }

    #[test]
    fn aliases_and_seconds_parse_and_bad_patterns_and_zones_are_named() {
        assert_eq!(
            fires(&cron("@daily", "UTC"), "2026-01-01T10:00:00Z", 1),
            ["2026-01-02T00:00:00Z"]
        );
        assert_eq!(
            fires(&cron("*/20 * * * * *", "UTC"), "2026-01-01T10:00:05Z", 2),
            ["2026-01-01T10:00:20Z", "2026-01-01T10:00:40Z"]
        );
        assert!(check(&cron("0 3 * *", "UTC"))
            .unwrap_err()
            .contains("is not a cron pattern"));
        assert!(check(&cron("0 3 * * *", "Mars/Olympus"))
            .unwrap_err()
            .contains("is not an IANA time zone"));
        assert!(check(&cron("0 0 31 2 *", "UTC"))
            .unwrap_err()
            .contains("never fires"));
        assert_eq!(check(&cron("0 3 * * *", "Europe/Berlin")), Ok(()));
    }

    fn every(s: u64, jitter_ms: u64) -> When {
        When::Every {
            every: Duration::from_secs(s),
            jitter: Duration::from_millis(jitter_ms),
        }
    }

    #[test]
    fn every_fires_once_per_period_on_the_jobs_own_phase() {
        let w = every(60, 0);
        let t0 = at("2026-06-01T00:00:00Z");
        let mut t = t0;
        let mut out = Vec::new();
        for _ in 0..5 {
            t = next_fire(&w, "backup", t).unwrap();
            out.push(t);
        }
        for pair in out.windows(2) {
            assert_eq!(pair[1] - pair[0], 60_000);
        }
        assert!(out[0] > t0 && out[0] <= t0 + 60_000);
        // The same phase from any start.
        assert_eq!(next_fire(&w, "backup", out[2] - 1), Some(out[2]));
        assert_eq!(next_fire(&w, "backup", out[2]), Some(out[3]));
    }

    #[test]
    fn a_thousand_jobs_with_one_period_are_spread_over_it() {
        let w = every(60, 0);
        let t0 = at("2026-06-01T00:00:00Z");
        let mut per_second = std::collections::BTreeMap::<i64, u32>::new();
        for i in 0..1000 {
            let t = next_fire(&w, &format!("job{i}"), t0).unwrap();
            *per_second.entry((t - t0) / 1000).or_default() += 1;
        }
        let busiest = per_second.values().max().copied().unwrap();
        // 1000 over 60 s is 16.7 a second; a fair hash keeps every second well below 2x that.
        assert!(busiest <= 35, "{busiest} jobs in one second");
        assert!(
            per_second.len() >= 55,
            "only {} seconds used",
            per_second.len()
        );
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies_per_fire() {
        let w = every(60, 10_000);
        let plain = every(60, 0);
        let mut t = at("2026-06-01T00:00:00Z");
        let mut offsets = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let base = next_fire(&plain, "warm", t).unwrap();
            let fire = next_fire(&w, "warm", t).unwrap();
            // The jittered fire of this period, or the previous period's, never before it.
            let off = (fire - base).rem_euclid(60_000);
            assert!(off < 10_000 || fire < base, "offset {off}");
            offsets.insert(off);
            t = fire;
        }
        assert!(offsets.len() > 10, "jitter is not the same every time");
    }

    #[test]
    fn the_latest_missed_fire_is_found_without_walking_the_span() {
        let w = every(1, 0);
        let upto = at("2027-06-01T00:00:00Z");
        let after = at("2026-06-01T00:00:00Z");
        let last = last_fire_between(&w, "tick", after, upto).unwrap();
        assert!(last <= upto && last > upto - 1000);
        assert_eq!(last_fire_between(&w, "tick", upto - 10, upto - 10), None);
        let daily = cron("0 3 * * *", "UTC");
        assert_eq!(
            last_fire_between(
                &daily,
                "backup",
                at("2026-06-01T04:00:00Z"),
                at("2026-06-04T02:00:00Z")
            )
            .map(show),
            Some("2026-06-03T03:00:00Z".to_string())
        );
        // Nothing fired in the span: no catch-up.
        assert_eq!(
            last_fire_between(
                &daily,
                "backup",
                at("2026-06-01T04:00:00Z"),
                at("2026-06-02T02:00:00Z")
            ),
            None
        );
    }
}
