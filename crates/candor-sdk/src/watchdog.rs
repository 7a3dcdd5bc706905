//! A watchdog that pings only while the service works.
//!
//! The supervisor's `watchdog = "10s"` (systemd's `WatchdogSec=`) sets `WATCHDOG_USEC`; a run
//! that sends no `WATCHDOG=1` for that long is restarted. A ping from a thread that only
//! sleeps proves nothing: the thread lives on while the event loop is stuck. [`Watchdog`]
//! pings at half the interval and only while the service's own check passes — a closure, or
//! a [`Heartbeat`] that the event loop itself must keep fresh — so a stuck loop stops the
//! pings and the supervisor restarts the run.
//!
//! ```
//! use candor_sdk::watchdog::{Heartbeat, Watchdog};
//!
//! let beat = Heartbeat::new();
//! if let Some(dog) = Watchdog::from_env() {
//!     dog.spawn_with_heartbeat(&beat);
//! }
//! loop {
//!     beat.beat(); // once per turn of the loop
//!     // ... one turn of work ...
//! #   break;
//! }
//! ```

use crate::notify::Notifier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The supervisor's watchdog interval, and the pinging that goes with it.
///
/// ```
/// use candor_sdk::watchdog::Watchdog;
/// if let Some(dog) = Watchdog::from_env() {
///     dog.spawn(|| Ok(())); // or spawn_with_heartbeat
/// }
/// ```
#[derive(Debug)]
pub struct Watchdog {
    interval: Duration,
    notifier: Option<Notifier>,
}

impl Watchdog {
    /// `WATCHDOG_USEC` if it is set and meant for this process (`WATCHDOG_PID`, when set,
    /// is this pid); `None` otherwise: nothing to ping.
    ///
    /// ```
    /// match candor_sdk::watchdog::Watchdog::from_env() {
    ///     Some(dog) => println!("ping within {:?}", dog.interval()),
    ///     None => println!("no watchdog"),
    /// }
    /// ```
    pub fn from_env() -> Option<Watchdog> {
        Watchdog::from_vars(crate::env("WATCHDOG_USEC"), crate::env("WATCHDOG_PID"))
    }

    fn from_vars(usec: Option<String>, pid: Option<String>) -> Option<Watchdog> {
        let usec: u64 = usec?.parse().ok()?;
        if let Some(pid) = pid {
            if pid.parse::<u32>().ok()? != std::process::id() {
                return None;
            }
        }
        (usec > 0).then(|| Watchdog::new(Duration::from_micros(usec)))
    }

    /// A watchdog with this interval, pinging through `NOTIFY_SOCKET`.
    ///
    /// ```
    /// let dog = candor_sdk::watchdog::Watchdog::new(std::time::Duration::from_secs(10));
    /// assert_eq!(dog.ping_every(), std::time::Duration::from_secs(5));
    /// ```
    pub fn new(interval: Duration) -> Watchdog {
        Watchdog {
            interval,
            notifier: None,
        }
    }

    /// Ping through this notifier instead of the process-wide one.
    ///
    /// ```
    /// use candor_sdk::{notify::Notifier, watchdog::Watchdog};
    /// let dog = Watchdog::new(std::time::Duration::from_secs(10)).with_notifier(Notifier::from_env());
    /// # let _ = dog;
    /// ```
    pub fn with_notifier(mut self, n: Notifier) -> Watchdog {
        self.notifier = Some(n);
        self
    }

    /// How long the supervisor waits for a ping.
    ///
    /// ```
    /// # use candor_sdk::watchdog::Watchdog; use std::time::Duration;
    /// assert_eq!(Watchdog::new(Duration::from_secs(4)).interval(), Duration::from_secs(4));
    /// ```
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How often the pinging thread pings: half the interval.
    ///
    /// ```
    /// # use candor_sdk::watchdog::Watchdog; use std::time::Duration;
    /// assert_eq!(Watchdog::new(Duration::from_secs(4)).ping_every(), Duration::from_secs(2));
    /// ```
    pub fn ping_every(&self) -> Duration {
        self.interval / 2
    }

    /// Ping from a thread at half the interval while `check` passes. When it fails, the
    /// pings stop (one log line says why) and the supervisor restarts the run once the
    /// interval runs out; if it passes again first, pings resume.
    ///
    /// ```
    /// use candor_sdk::watchdog::Watchdog;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let queue = Arc::new(AtomicUsize::new(0));
    /// let q = queue.clone();
    /// let dog = Watchdog::new(std::time::Duration::from_secs(10));
    /// let pinger = dog.spawn(move || match q.load(Ordering::Relaxed) {
    ///     n if n > 10_000 => Err(format!("{n} jobs queued and none taken")),
    ///     _ => Ok(()),
    /// });
    /// pinger.stop();
    /// ```
    pub fn spawn<F>(self, mut check: F) -> Pinger
    where
        F: FnMut() -> Result<(), String> + Send + 'static,
    {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let every = self.ping_every();
        let interval = self.interval;
        let thread = std::thread::Builder::new()
            .name("candor-watchdog".into())
            .spawn(move || {
                let mut failing = false;
                loop {
                    let ping = match check() {
                        Ok(()) => {
                            if failing {
                                crate::log(
                                    "watchdog: the service's check passes again; pings resumed",
                                );
                                failing = false;
                            }
                            true
                        }
                        Err(why) => {
                            if !failing {
                                crate::log(&format!(
                                    "watchdog: pings stopped: {why}; the supervisor restarts this \
                                     run if it lasts {}",
                                    crate::human(interval)
                                ));
                                failing = true;
                            }
                            s.failing.store(true, Ordering::Relaxed);
                            false
                        }
                    };
                    if ping {
                        s.failing.store(false, Ordering::Relaxed);
                        let sent = match &self.notifier {
                            Some(n) => n.watchdog(),
                            None => crate::notify::watchdog(),
                        };
                        if sent.unwrap_or(false) {
                            s.pings.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::park_timeout(every);
                    if s.stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
            })
            .expect("spawning the watchdog thread");
        Pinger {
            shared,
            thread: thread.thread().clone(),
        }
    }

    /// Ping while `beat` is fresh: beaten within half the interval. Beat it from the loop
    /// whose liveness matters (for tokio, [`Heartbeat::spawn_tokio`] beats it from a task).
    ///
    /// ```
    /// use candor_sdk::watchdog::{Heartbeat, Watchdog};
    /// let beat = Heartbeat::new();
    /// let pinger = Watchdog::new(std::time::Duration::from_secs(10)).spawn_with_heartbeat(&beat);
    /// beat.beat();
    /// pinger.stop();
    /// ```
    pub fn spawn_with_heartbeat(self, beat: &Heartbeat) -> Pinger {
        let beat = beat.clone();
        let stale = self.interval / 2;
        self.spawn(move || {
            let age = beat.age();
            if age > stale {
                Err(format!(
                    "the heartbeat is {} old (the event loop is stuck or starved)",
                    crate::human(age)
                ))
            } else {
                Ok(())
            }
        })
    }
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    failing: AtomicBool,
    pings: AtomicU64,
}

/// The pinging thread of a [`Watchdog`]. Dropping it leaves the thread pinging; call
/// [`Pinger::stop`] to end it.
///
/// ```
/// use candor_sdk::watchdog::Watchdog;
/// let pinger = Watchdog::new(std::time::Duration::from_secs(10)).spawn(|| Ok(()));
/// println!("{} pings, failing: {}", pinger.pings(), pinger.is_failing());
/// pinger.stop();
/// ```
#[derive(Debug)]
pub struct Pinger {
    shared: Arc<Shared>,
    thread: std::thread::Thread,
}

impl Pinger {
    /// Stop pinging (the thread ends at once).
    ///
    /// ```
    /// # use candor_sdk::watchdog::Watchdog;
    /// Watchdog::new(std::time::Duration::from_secs(1)).spawn(|| Ok(())).stop();
    /// ```
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.thread.unpark();
    }

    /// Pings sent so far.
    ///
    /// ```
    /// # use candor_sdk::watchdog::Watchdog;
    /// let p = Watchdog::new(std::time::Duration::from_secs(1)).spawn(|| Ok(()));
    /// println!("{} pings", p.pings());
    /// # p.stop();
    /// ```
    pub fn pings(&self) -> u64 {
        self.shared.pings.load(Ordering::Relaxed)
    }

    /// Whether the check failed at the last turn (no ping was sent).
    ///
    /// ```
    /// # use candor_sdk::watchdog::Watchdog;
    /// let p = Watchdog::new(std::time::Duration::from_secs(1)).spawn(|| Ok(()));
    /// assert!(!p.is_failing());
    /// # p.stop();
    /// ```
    pub fn is_failing(&self) -> bool {
        self.shared.failing.load(Ordering::Relaxed)
    }
}

/// Proof that a loop is turning: beat it every turn, and its age says how long since.
///
/// ```
/// let beat = candor_sdk::watchdog::Heartbeat::new();
/// beat.beat();
/// assert!(beat.age() < std::time::Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

impl Heartbeat {
    /// A heartbeat beaten now.
    ///
    /// ```
    /// let beat = candor_sdk::watchdog::Heartbeat::new();
    /// # let _ = beat;
    /// ```
    pub fn new() -> Heartbeat {
        Heartbeat(Arc::new(AtomicU64::new(crate::now_ms())))
    }

    /// The loop turned.
    ///
    /// ```
    /// candor_sdk::watchdog::Heartbeat::new().beat();
    /// ```
    pub fn beat(&self) {
        self.0.store(crate::now_ms(), Ordering::Relaxed);
    }

    /// Time since the last beat.
    ///
    /// ```
    /// let beat = candor_sdk::watchdog::Heartbeat::new();
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// assert!(beat.age() >= std::time::Duration::from_millis(20));
    /// ```
    pub fn age(&self) -> Duration {
        Duration::from_millis(crate::now_ms().saturating_sub(self.0.load(Ordering::Relaxed)))
    }

    /// Beat from a tokio task every `every`: the beats stop when the runtime cannot run the
    /// task — every worker blocked, or the task starved by one that never yields. On a
    /// current-thread runtime any blocking call stops it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use candor_sdk::watchdog::{Heartbeat, Watchdog};
    /// let beat = Heartbeat::new();
    /// let task = beat.spawn_tokio(std::time::Duration::from_millis(500));
    /// let pinger = Watchdog::new(std::time::Duration::from_secs(2)).spawn_with_heartbeat(&beat);
    /// # pinger.stop(); task.abort();
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn spawn_tokio(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let beat = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                beat.beat();
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// A watchdog pinging into a socket of the test's own.
    fn dog(interval: Duration) -> (Watchdog, UnixDatagram, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let n = Notifier::to_socket(path.to_str().unwrap()).unwrap();
        (Watchdog::new(interval).with_notifier(n), rx, dir)
    }

    fn pings_within(rx: &UnixDatagram, d: Duration) -> usize {
        let end = std::time::Instant::now() + d;
        let mut n = 0;
        let mut buf = [0u8; 64];
        while std::time::Instant::now() < end {
            if let Ok(len) = rx.recv(&mut buf) {
                assert_eq!(&buf[..len], b"WATCHDOG=1");
                n += 1;
            }
        }
        n
    }

    #[test]
    fn a_stale_heartbeat_stops_the_pings_and_a_fresh_one_resumes_them() {
        let (dog, rx, _dir) = dog(Duration::from_millis(200));
        let beat = Heartbeat::new();
        let pinger = dog.spawn_with_heartbeat(&beat);
        // Beaten: pings at about 100 ms.
        let keep = {
            let beat = beat.clone();
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            let t = std::thread::spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    beat.beat();
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
            (stop, t)
        };
        assert!(pings_within(&rx, Duration::from_millis(700)) >= 3);
        // The loop stops beating: after at most half the interval, no more pings.
        keep.0.store(true, Ordering::Relaxed);
        keep.1.join().unwrap();
        std::thread::sleep(Duration::from_millis(250));
        let _ = pings_within(&rx, Duration::from_millis(10));
        assert_eq!(pings_within(&rx, Duration::from_millis(500)), 0);
        assert!(pinger.is_failing());
        // It beats again: pings resume.
        beat.beat();
        let resumed = {
            let end = std::time::Instant::now() + Duration::from_secs(5);
            let mut n = 0;
            while n == 0 && std::time::Instant::now() < end {
                beat.beat();
                n = pings_within(&rx, Duration::from_millis(50));
            }
            n
        };
        assert!(resumed > 0, "pings did not resume");
        pinger.stop();
    }

    #[test]
    fn watchdog_env_meant_for_another_pid_is_ignored() {
        let me = std::process::id().to_string();
        let w = Watchdog::from_vars(Some("3000000".into()), Some(me)).unwrap();
        assert_eq!(w.ping_every(), Duration::from_millis(1500));
        assert!(Watchdog::from_vars(Some("3000000".into()), None).is_some());
        assert!(Watchdog::from_vars(Some("3000000".into()), Some("1".into())).is_none());
        assert!(Watchdog::from_vars(Some("0".into()), None).is_none());
        assert!(Watchdog::from_vars(None, None).is_none());
    }
}
