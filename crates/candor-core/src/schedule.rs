//! When a schedule fires (unix milliseconds). Placeholder for `every` only while the `spec`
//! branch brings cron; replaced at its merge.

use candor_spec::When;

fn fnv(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The first fire strictly after `after_ms`.
pub fn next_fire(when: &When, name: &str, after_ms: i64) -> Option<i64> {
    match when {
        When::Every { every, jitter } => {
            let period = every.as_millis().max(1) as i64;
            let phase = (fnv(name.as_bytes(), 0) % period as u64) as i64;
            let jit = |k: i64| -> i64 {
                let j = jitter.as_millis() as u64;
                if j == 0 {
                    0
                } else {
                    (fnv(name.as_bytes(), k as u64) % j) as i64
                }
            };
            let mut k = (after_ms - phase).div_euclid(period);
            loop {
                let t = phase + k * period + jit(k);
                if t > after_ms {
                    return Some(t);
                }
                k += 1;
            }
        }
        When::Cron { .. } => None,
    }
}

/// The latest fire in (after_ms, upto_ms].
pub fn last_fire_between(when: &When, name: &str, after_ms: i64, upto_ms: i64) -> Option<i64> {
    let first = next_fire(when, name, after_ms)?;
    if first > upto_ms {
        return None;
    }
    let mut last = first;
    while let Some(t) = next_fire(when, name, last).filter(|t| *t <= upto_ms) {
        last = t;
    }
    Some(last)
}
