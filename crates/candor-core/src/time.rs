//! Two clocks. [`Mono`] is CLOCK_BOOTTIME: it counts time spent suspended and never steps, so
//! every deadline and every age is measured on it. Wall time is for display and the API's
//! timestamps only; [`Now::wall_of`] turns a `Mono` instant into the wall time it corresponds
//! to *now*, so a step of the wall clock moves what is shown, never what is decided.

use std::ops::{Add, Sub};
use std::time::{Duration, SystemTime};

/// An instant on the boot-time clock (time since boot, suspend included).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Mono(pub Duration);

impl Mono {
    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn since(self, earlier: Mono) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
    /// Time from `self` until `later`; zero if it has passed.
    pub fn until(self, later: Mono) -> Duration {
        later.0.saturating_sub(self.0)
    }
    /// Seconds since boot, for fits and plots.
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl Add<Duration> for Mono {
    type Output = Mono;
    fn add(self, d: Duration) -> Mono {
        Mono(self.0.saturating_add(d))
    }
}

impl Sub<Duration> for Mono {
    type Output = Mono;
    fn sub(self, d: Duration) -> Mono {
        Mono(self.0.saturating_sub(d))
    }
}

/// The two clocks read together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub mono: Mono,
    pub wall: SystemTime,
}

impl Now {
    /// The wall time that corresponds to the boot-clock instant `at`, as of now.
    pub fn wall_of(&self, at: Mono) -> SystemTime {
        if at <= self.mono {
            self.wall
                .checked_sub(self.mono.since(at))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        } else {
            self.wall + self.mono.until(at)
        }
    }
    /// The same instant `d` later on both clocks (for tests and tables).
    pub fn after(&self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            wall: self.wall + d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_of_follows_the_wall_clock_now() {
        let now = Now {
            mono: Mono(Duration::from_secs(100)),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(5000),
        };
        let ten_ago = Mono(Duration::from_secs(90));
        assert_eq!(
            now.wall_of(ten_ago),
            SystemTime::UNIX_EPOCH + Duration::from_secs(4990)
        );
        assert_eq!(
            now.wall_of(Mono(Duration::from_secs(130))),
            SystemTime::UNIX_EPOCH + Duration::from_secs(5030)
        );
        // The wall clock stepped an hour back: the same instant is shown an hour earlier.
        let stepped = Now {
            wall: now.wall - Duration::from_secs(3600),
            ..now
        };
        assert_eq!(
            stepped.wall_of(ten_ago),
            SystemTime::UNIX_EPOCH + Duration::from_secs(4990 - 3600)
        );
        assert_eq!(
            Mono(Duration::from_secs(3)).since(Mono(Duration::from_secs(5))),
            Duration::ZERO
        );
    }
}
