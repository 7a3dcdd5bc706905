//! Outbound retries that dispose of every failed attempt before the next.
//!
//! A retry loop that makes a fresh client per attempt and drops it on the floor when the
//! attempt fails leaks what the client opened — in the incident this module comes from, 2 fds
//! per attempt, until the process hit its fd limit a day later. [`Reconnect`] owns each
//! attempt: a failed one is disposed of (dropped, or your `dispose` is called) before the
//! next, the waits are capped, jittered exponential backoff, failures are logged once per
//! episode, and the fd count is watched across failed attempts: if it grows with each one,
//! a line says so, long before the limit.
//!
//! ```no_run
//! use candor_sdk::reconnect::Reconnect;
//!
//! let mut db = Reconnect::new("db");
//! let conn = db.connect(|| std::net::TcpStream::connect("127.0.0.1:5432")).unwrap();
//! # let _ = conn;
//! ```

use crate::episode::Episodes;
use crate::Backoff;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Counts of what a [`Reconnect`] has met.
///
/// ```
/// let r = candor_sdk::reconnect::Reconnect::new("db");
/// let s = r.stats();
/// println!("{} attempts, {} failed, {} connected", s.attempts, s.failures, s.connected);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconnectStats {
    /// Attempts made.
    pub attempts: u64,
    /// Attempts that failed (each disposed of).
    pub failures: u64,
    /// Connections made.
    pub connected: u64,
}

/// Retries with capped, jittered backoff (see the module's docs).
///
/// ```
/// use std::time::Duration;
/// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let mut r = candor_sdk::reconnect::Reconnect::new("peer")
///     .backoff(Duration::from_millis(50), Duration::from_secs(10));
/// let conn = r.tcp(l.local_addr().unwrap(), Duration::from_secs(2)).unwrap();
/// # drop(conn);
/// ```
#[derive(Debug)]
pub struct Reconnect {
    name: String,
    backoff: Backoff,
    max_attempts: Option<u64>,
    episodes: Episodes,
    stats: ReconnectStats,
    /// Open fds after the first failed attempt of this episode.
    fds_after_first: Option<u64>,
    warned_leak: bool,
}

/// Failed attempts before the fd trend is judged.
const LEAK_SAMPLE: u64 = 8;

impl Reconnect {
    /// Retries for the peer called `name` in log lines: 100 ms doubling to 30 s, jittered,
    /// without end.
    ///
    /// ```
    /// let r = candor_sdk::reconnect::Reconnect::new("db");
    /// assert_eq!(r.stats().attempts, 0);
    /// ```
    pub fn new(name: &str) -> Reconnect {
        Reconnect {
            name: name.to_string(),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(30)).jittered(),
            max_attempts: None,
            episodes: Episodes::default(),
            stats: ReconnectStats::default(),
            fds_after_first: None,
            warned_leak: false,
        }
    }

    /// Wait from `min`, doubling up to `max`, jittered.
    ///
    /// ```
    /// use std::time::Duration;
    /// let r = candor_sdk::reconnect::Reconnect::new("db")
    ///     .backoff(Duration::from_millis(50), Duration::from_secs(5));
    /// # let _ = r;
    /// ```
    pub fn backoff(mut self, min: Duration, max: Duration) -> Reconnect {
        self.backoff = Backoff::new(min, max).jittered();
        self
    }

    /// Give up after `n` attempts in a row (the last error is returned).
    ///
    /// ```
    /// let r = candor_sdk::reconnect::Reconnect::new("db").max_attempts(5);
    /// # let _ = r;
    /// ```
    pub fn max_attempts(mut self, n: u64) -> Reconnect {
        self.max_attempts = Some(n.max(1));
        self
    }

    /// What it has met so far.
    ///
    /// ```
    /// let r = candor_sdk::reconnect::Reconnect::new("db");
    /// assert_eq!(r.stats().failures, 0);
    /// ```
    pub fn stats(&self) -> ReconnectStats {
        self.stats
    }

    /// Call `attempt` until it succeeds. Whatever a failed attempt made is dropped inside
    /// it, before the wait — make the client inside the closure, never outside.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut r = candor_sdk::reconnect::Reconnect::new("peer")
    ///     .backoff(Duration::from_millis(1), Duration::from_millis(5))
    ///     .max_attempts(3);
    /// let err = r.connect(|| std::net::TcpStream::connect("127.0.0.1:1")).unwrap_err();
    /// assert!(err.to_string().contains("after 3 attempts"));
    /// ```
    pub fn connect<T>(&mut self, mut attempt: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        loop {
            match self.one(attempt()) {
                Ok(t) => return Ok(t),
                Err(Next::Wait(d)) => std::thread::sleep(d),
                Err(Next::GiveUp(e)) => return Err(e),
            }
        }
    }

    /// Make a client with `open`, connect it with `connect`; on failure hand it to
    /// `dispose` (close it, deregister it, whatever it needs) before the next attempt.
    ///
    /// ```
    /// use std::time::Duration;
    /// struct Client { log: std::fs::File, peer: Option<std::net::TcpStream> }
    ///
    /// let mut r = candor_sdk::reconnect::Reconnect::new("peer")
    ///     .backoff(Duration::ZERO, Duration::ZERO)
    ///     .max_attempts(3);
    /// let mut disposed = 0;
    /// let got = r.connect_with(
    ///     || Ok(Client { log: std::fs::File::open("/dev/null")?, peer: None }),
    ///     |c| { c.peer = Some(std::net::TcpStream::connect("127.0.0.1:1")?); Ok(()) },
    ///     |c| { disposed += 1; drop(c) },
    /// );
    /// assert!(got.is_err());
    /// assert_eq!(disposed, 3);
    /// ```
    pub fn connect_with<R>(
        &mut self,
        mut open: impl FnMut() -> io::Result<R>,
        mut connect: impl FnMut(&mut R) -> io::Result<()>,
        mut dispose: impl FnMut(R),
    ) -> io::Result<R> {
        self.connect(|| {
            let mut r = open()?;
            match connect(&mut r) {
                Ok(()) => Ok(r),
                Err(e) => {
                    dispose(r);
                    Err(e)
                }
            }
        })
    }

    /// A TCP connection to `addr`, each attempt bounded by `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let mut r = candor_sdk::reconnect::Reconnect::new("peer");
    /// let s = r.tcp(l.local_addr().unwrap(), Duration::from_secs(1)).unwrap();
    /// # let _ = s;
    /// ```
    pub fn tcp(&mut self, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        self.connect(|| TcpStream::connect_timeout(&addr, timeout))
    }

    /// [`Reconnect::connect`] for async attempts, waiting with tokio's timer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let addr = l.local_addr().unwrap();
    /// let mut r = candor_sdk::reconnect::Reconnect::new("peer");
    /// let s = r.connect_async(|| tokio::net::TcpStream::connect(addr)).await.unwrap();
    /// # let _ = s;
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn connect_async<T, F, Fut>(&mut self, mut attempt: F) -> io::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = io::Result<T>>,
    {
        loop {
            match self.one(attempt().await) {
                Ok(t) => return Ok(t),
                Err(Next::Wait(d)) => tokio::time::sleep(d).await,
                Err(Next::GiveUp(e)) => return Err(e),
            }
        }
    }

    /// Account for one attempt's outcome (its resources already disposed of).
    fn one<T>(&mut self, r: io::Result<T>) -> Result<T, Next> {
        self.stats.attempts += 1;
        let e = match r {
            Ok(t) => {
                self.stats.connected += 1;
                self.backoff.reset();
                self.fds_after_first = None;
                let name = &self.name;
                self.episodes.succeeded(|n, d| {
                    format!(
                        "reconnect {name}: connected after {n} failed attempts in {}",
                        crate::human(d)
                    )
                });
                return Ok(t);
            }
            Err(e) => e,
        };
        self.stats.failures += 1;
        let name = &self.name;
        let max = self.backoff.max();
        let failures = self.episodes.failed(
            || {
                format!(
                    "reconnect {name}: {e}; retrying, waiting up to {} between attempts (one \
                     line a minute while it fails)",
                    crate::human(max)
                )
            },
            |n, d| {
                format!(
                    "reconnect {name}: still failing ({e}): {n} attempts in {}",
                    crate::human(d)
                )
            },
        );
        self.watch_fds(failures);
        if self.max_attempts.is_some_and(|m| failures >= m) {
            let name = &self.name;
            self.episodes.succeeded(|n, d| {
                format!(
                    "reconnect {name}: gave up after {n} attempts in {}",
                    crate::human(d)
                )
            });
            self.fds_after_first = None;
            self.backoff.reset();
            return Err(Next::GiveUp(io::Error::new(
                e.kind(),
                format!("{}: {e} (after {failures} attempts)", self.name),
            )));
        }
        Err(Next::Wait(self.backoff.next_delay()))
    }

    /// Judge the fd count across this episode's failed attempts.
    fn watch_fds(&mut self, failures: u64) {
        let Ok(open) = crate::fds::open_fds() else {
            return;
        };
        let Some(first) = self.fds_after_first else {
            self.fds_after_first = Some(open);
            return;
        };
        let since = failures - 1;
        let grown = open.saturating_sub(first);
        if !self.warned_leak && since >= LEAK_SAMPLE && grown >= since {
            self.warned_leak = true;
            crate::log(&format!(
                "reconnect {}: {grown} more fds are open than after the first of {failures} \
                 failed attempts (about {} per attempt): a failed attempt keeps something \
                 open; make it inside the attempt, or dispose of it (connect_with)",
                self.name,
                grown / since
            ));
        }
    }
}

enum Next {
    Wait(Duration),
    GiveUp(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A port nothing listens on.
    fn closed_port() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    #[test]
    fn ten_thousand_failed_attempts_leave_the_fd_count_flat() {
        let addr = closed_port();
        let mut r = Reconnect::new("nowhere")
            .backoff(Duration::ZERO, Duration::ZERO)
            .max_attempts(10_000);
        let before = crate::fds::open_fds().unwrap();
        let err = r.tcp(addr, Duration::from_secs(1)).unwrap_err();
        let after = crate::fds::open_fds().unwrap();
        assert_eq!(r.stats().failures, 10_000);
        assert!(err.to_string().contains("after 10000 attempts"), "{err}");
        // Other tests in this process may hold a few fds meanwhile; 10 000 leaked would show.
        assert!(
            after <= before + 16,
            "fds went from {before} to {after} over 10 000 failed attempts"
        );
    }

    #[test]
    fn attempts_that_keep_their_fds_are_named_in_a_log_line() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        // The leak check logs through the process-wide logger; this test's lines are told
        // apart by the name.
        let l = lines.clone();
        crate::set_logger(move |s| l.lock().unwrap().push(s.to_string()));
        let addr = closed_port();
        let mut kept = Vec::new();
        let mut r = Reconnect::new("leaky-peer")
            .backoff(Duration::ZERO, Duration::ZERO)
            .max_attempts(20);
        let _ = r.connect(|| {
            // Like the seed: a client per attempt that is kept, not disposed of.
            kept.push(std::fs::File::open("/dev/null")?);
            kept.push(std::fs::File::open("/dev/null")?);
            TcpStream::connect(addr)
        });
        let lines = lines.lock().unwrap();
        let leak: Vec<_> = lines
            .iter()
            .filter(|l| {
                l.starts_with("reconnect leaky-peer:") && l.contains("keeps something open")
            })
            .collect();
        assert_eq!(leak.len(), 1, "{lines:?}");
        assert!(leak[0].contains("about 2 per attempt"), "{}", leak[0]);
        // One line when the episode began and one when it was given up, not one per failure.
        let all: Vec<_> = lines
            .iter()
            .filter(|l| l.starts_with("reconnect leaky-peer:"))
            .collect();
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all[2].contains("gave up after 20 attempts"), "{all:?}");
    }

    #[test]
    fn a_success_resets_the_backoff_and_counts_the_episode() {
        let mut n = 0;
        let mut r = Reconnect::new("flaky").backoff(Duration::ZERO, Duration::ZERO);
        let got = r.connect(|| {
            n += 1;
            if n < 4 {
                Err(io::Error::from(io::ErrorKind::ConnectionRefused))
            } else {
                Ok(n)
            }
        });
        assert_eq!(got.unwrap(), 4);
        assert_eq!(
            r.stats(),
            ReconnectStats {
                attempts: 4,
                failures: 3,
                connected: 1
            }
        );
    }
}
