//! How many fds the process has open, against its limit; a guard that refuses new work above
//! a budget before the process runs out.
//!
//! ```
//! use candor_sdk::fds::{FdBudget, FdUsage};
//!
//! println!("{}", FdUsage::now().unwrap()); // e.g. "12 of 1024 fds open (1%)"
//! let budget = FdBudget::new(); // 80 %
//! match budget.check() {
//!     Ok(()) => { /* take the job */ }
//!     Err(over) => eprintln!("refusing new work: {over}"),
//! }
//! ```

use std::fmt;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Open fds and the soft limit, at one moment.
///
/// ```
/// let u = candor_sdk::fds::FdUsage::now().unwrap();
/// println!("{u}: {:.1} % of the limit", u.percent());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdUsage {
    /// Fds open in this process.
    pub open: u64,
    /// Its soft `RLIMIT_NOFILE`.
    pub limit: u64,
}

impl FdUsage {
    /// Count now (`/proc/self/fd`). At the limit itself the count cannot open the directory;
    /// then `open` is the limit.
    ///
    /// ```
    /// let u = candor_sdk::fds::FdUsage::now().unwrap();
    /// assert!(u.open >= 3 && u.open <= u.limit);
    /// ```
    pub fn now() -> io::Result<FdUsage> {
        let (limit, _) = limits()?;
        let open = match open_fds() {
            Ok(n) => n,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => limit,
            Err(e) => return Err(e),
        };
        Ok(FdUsage { open, limit })
    }

    /// Open fds as a percentage of the limit.
    ///
    /// ```
    /// let u = candor_sdk::fds::FdUsage { open: 256, limit: 1024 };
    /// assert_eq!(u.percent(), 25.0);
    /// ```
    pub fn percent(&self) -> f64 {
        if self.limit == 0 {
            return 100.0;
        }
        self.open as f64 * 100.0 / self.limit as f64
    }
}

impl fmt::Display for FdUsage {
    /// ```
    /// let u = candor_sdk::fds::FdUsage { open: 820, limit: 1024 };
    /// assert_eq!(u.to_string(), "820 of 1024 fds open (80%)");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} fds open ({:.0}%)",
            self.open,
            self.limit,
            self.percent().floor()
        )
    }
}

/// Fds open in this process now.
///
/// ```
/// assert!(candor_sdk::fds::open_fds().unwrap() >= 3);
/// ```
pub fn open_fds() -> io::Result<u64> {
    // The directory's own fd is among the entries while it is read.
    let n = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok(n.saturating_sub(1))
}

/// The soft and hard `RLIMIT_NOFILE`.
///
/// ```
/// let (soft, hard) = candor_sdk::fds::limits().unwrap();
/// assert!(soft <= hard);
/// ```
pub fn limits() -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r.rlim_cur, r.rlim_max))
}

/// Raise the soft fd limit to the hard one (opt-in: what the supervisor set as the service's
/// hard limit is the ceiling). Returns the new soft limit.
///
/// ```
/// let soft = candor_sdk::fds::raise_soft_limit().unwrap();
/// assert_eq!(soft, candor_sdk::fds::limits().unwrap().1);
/// ```
pub fn raise_soft_limit() -> io::Result<u64> {
    let (soft, hard) = limits()?;
    if soft < hard {
        let r = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(hard)
}

/// A share of the fd limit above which new work is refused, so the process never reaches
/// `EMFILE` in the middle of work it already took.
///
/// The count is refreshed at most every 100 ms (see [`FdBudget::refresh_every`]): cheap on a
/// hot path, and a burst can overshoot the threshold by what it opens in that time.
///
/// ```
/// let budget = candor_sdk::fds::FdBudget::with_threshold(90.0);
/// if let Err(over) = budget.check() {
///     eprintln!("not taking this job: {over}");
/// }
/// ```
#[derive(Debug)]
pub struct FdBudget {
    threshold: f64,
    refresh: Duration,
    cache: Mutex<Option<(Instant, FdUsage)>>,
}

impl Default for FdBudget {
    fn default() -> Self {
        FdBudget::new()
    }
}

impl FdBudget {
    /// A budget of 80 % of the limit.
    ///
    /// ```
    /// assert_eq!(candor_sdk::fds::FdBudget::new().threshold(), 80.0);
    /// ```
    pub fn new() -> FdBudget {
        FdBudget::with_threshold(80.0)
    }

    /// A budget of `percent` of the limit (kept within 1–100).
    ///
    /// ```
    /// let b = candor_sdk::fds::FdBudget::with_threshold(90.0);
    /// assert_eq!(b.threshold(), 90.0);
    /// ```
    pub fn with_threshold(percent: f64) -> FdBudget {
        FdBudget {
            threshold: percent.clamp(1.0, 100.0),
            refresh: Duration::from_millis(100),
            cache: Mutex::new(None),
        }
    }

    /// Count again at most this often (0: every check).
    ///
    /// ```
    /// let b = candor_sdk::fds::FdBudget::new().refresh_every(std::time::Duration::ZERO);
    /// # let _ = b;
    /// ```
    pub fn refresh_every(mut self, d: Duration) -> FdBudget {
        self.refresh = d;
        self
    }

    /// The threshold, in percent of the limit.
    ///
    /// ```
    /// assert_eq!(candor_sdk::fds::FdBudget::with_threshold(75.0).threshold(), 75.0);
    /// ```
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The usage, counted at most [`refresh_every`](FdBudget::refresh_every) ago.
    ///
    /// ```
    /// let b = candor_sdk::fds::FdBudget::new();
    /// println!("{}", b.usage().unwrap());
    /// ```
    pub fn usage(&self) -> io::Result<FdUsage> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, u)) = *cache {
            if at.elapsed() < self.refresh {
                return Ok(u);
            }
        }
        let u = FdUsage::now()?;
        *cache = Some((Instant::now(), u));
        Ok(u)
    }

    /// `Err` when the open fds are above the threshold: refuse the new work. When they
    /// cannot be counted at all (no `/proc`), the work is let through.
    ///
    /// ```
    /// let b = candor_sdk::fds::FdBudget::new();
    /// assert!(b.check().is_ok(), "a doc test has few fds open");
    /// ```
    pub fn check(&self) -> Result<(), OverBudget> {
        match self.usage() {
            Ok(usage) => self.verdict(usage),
            Err(_) => Ok(()),
        }
    }

    /// Take `usage` as the last count (tests).
    #[cfg(test)]
    pub(crate) fn pretend(&self, usage: FdUsage) {
        *self.cache.lock().unwrap() = Some((Instant::now(), usage));
    }

    fn verdict(&self, usage: FdUsage) -> Result<(), OverBudget> {
        if usage.percent() > self.threshold {
            return Err(OverBudget {
                usage,
                threshold: self.threshold,
            });
        }
        Ok(())
    }
}

/// New work refused: the process is above its fd budget.
///
/// ```
/// use candor_sdk::fds::FdBudget;
/// let budget = FdBudget::new();
/// let r: std::io::Result<()> = budget.check().map_err(Into::into);
/// assert!(r.is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverBudget {
    /// The usage that was over.
    pub usage: FdUsage,
    /// The budget, in percent of the limit.
    pub threshold: f64,
}

impl fmt::Display for OverBudget {
    /// ```
    /// use candor_sdk::fds::{FdUsage, OverBudget};
    /// let o = OverBudget { usage: FdUsage { open: 900, limit: 1024 }, threshold: 80.0 };
    /// assert_eq!(o.to_string(), "over the fd budget: 900 of 1024 fds open (87%), above 80%");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "over the fd budget: {}, above {:.0}%",
            self.usage, self.threshold
        )
    }
}

impl std::error::Error for OverBudget {}

impl From<OverBudget> for io::Error {
    fn from(o: OverBudget) -> io::Error {
        io::Error::other(o.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_sees_fds_as_they_are_opened() {
        let before = open_fds().unwrap();
        let files: Vec<_> = (0..50)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        // Other test threads may open fds meanwhile: at least ours are seen.
        assert!(open_fds().unwrap() >= before + 50);
        drop(files);
        assert!(FdBudget::with_threshold(100.0).check().is_ok());
    }

    #[test]
    fn the_budget_refuses_above_its_threshold_and_says_by_how_much() {
        let b = FdBudget::new();
        assert!(b
            .verdict(FdUsage {
                open: 819,
                limit: 1024
            })
            .is_ok());
        let err = b
            .verdict(FdUsage {
                open: 830,
                limit: 1024,
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "over the fd budget: 830 of 1024 fds open (81%), above 80%"
        );
        assert!(FdBudget::with_threshold(500.0)
            .verdict(FdUsage {
                open: 1024,
                limit: 1024
            })
            .is_ok());
    }
}
