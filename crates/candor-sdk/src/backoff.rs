//! Capped exponential backoff, optionally jittered.

use std::time::Duration;

/// Delays that double from `min` up to `max`, and start again from `min` on [`reset`].
///
/// With [`jittered`], each delay is drawn from its upper half (`d/2 ..= d`), so many processes
/// that failed together do not retry together.
///
/// [`reset`]: Backoff::reset
/// [`jittered`]: Backoff::jittered
///
/// ```
/// use candor_sdk::Backoff;
/// use std::time::Duration;
///
/// let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
/// let delays: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
/// assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
/// b.reset();
/// assert_eq!(b.next_delay(), Duration::from_millis(10));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    jitter: Option<u64>,
}

impl Backoff {
    /// Delays from `min`, doubling, never above `max` (`max` is raised to `min` if below it).
    ///
    /// ```
    /// # use candor_sdk::Backoff; use std::time::Duration;
    /// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    /// assert_eq!(b.next_delay(), Duration::from_millis(100));
    /// ```
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
            jitter: None,
        }
    }

    /// Draw each delay from the upper half of its step (`d/2 ..= d`).
    ///
    /// ```
    /// # use candor_sdk::Backoff; use std::time::Duration;
    /// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).jittered();
    /// let d = b.next_delay();
    /// assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
    /// ```
    pub fn jittered(mut self) -> Backoff {
        self.jitter = Some(seed());
        self
    }

    /// The delay to wait before the next try; the one after it is twice as long, up to `max`.
    ///
    /// ```
    /// # use candor_sdk::Backoff; use std::time::Duration;
    /// let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(3));
    /// assert_eq!(b.next_delay() + b.next_delay() + b.next_delay(), Duration::from_secs(6));
    /// ```
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(self.max);
        match &mut self.jitter {
            None => step,
            Some(state) => {
                let half = step / 2;
                let span = u64::try_from((step - half).as_nanos()).unwrap_or(u64::MAX);
                half + Duration::from_nanos(xorshift(state) % span.saturating_add(1))
            }
        }
    }

    /// Start again from `min` (call it after a success).
    ///
    /// ```
    /// # use candor_sdk::Backoff; use std::time::Duration;
    /// let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
    /// b.next_delay();
    /// b.next_delay();
    /// b.reset();
    /// assert_eq!(b.next_delay(), Duration::from_millis(10));
    /// ```
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The largest delay this backoff gives.
    ///
    /// ```
    /// # use candor_sdk::Backoff; use std::time::Duration;
    /// assert_eq!(Backoff::new(Duration::ZERO, Duration::from_secs(1)).max(), Duration::from_secs(1));
    /// ```
    pub fn max(&self) -> Duration {
        self.max
    }
}

fn seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let s = t ^ (u64::from(std::process::id()) << 32) ^ COUNT.fetch_add(1, Ordering::Relaxed);
    s | 1
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_delays_stay_in_the_upper_half_of_each_step_and_vary() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800)).jittered();
        let mut seen = std::collections::HashSet::new();
        for step in [100u64, 200, 400, 800, 800, 800] {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(step / 2) && d <= Duration::from_millis(step),
                "{d:?} for step {step} ms"
            );
            seen.insert(d);
        }
        assert!(seen.len() > 1, "jitter that never varies: {seen:?}");
    }

    #[test]
    fn a_zero_backoff_stays_zero() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO).jittered();
        assert_eq!(b.next_delay(), Duration::ZERO);
        assert_eq!(b.next_delay(), Duration::ZERO);
    }
}
