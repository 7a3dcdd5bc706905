//! An accept loop that survives running out of fds.
//!
//! When a process has no fd left, `accept` fails with `EMFILE` at once, and keeps failing
//! while a connection waits in the backlog: a plain `loop { match accept() { Err(e) =>
//! log(e) } }` spins a core and writes one line per error (200 a second, 58 GB of logs in a
//! day, in the incident this module comes from). [`AcceptLoop`] instead:
//!
//! - backs off on `EMFILE`, `ENFILE`, `ENOBUFS` and `ENOMEM`: 10 ms doubling to 1 s, back to
//!   10 ms after the next success;
//! - writes one line when such an episode starts (with the error and the fd count), one a
//!   minute while it lasts, and one when it ends (with how many errors it took) — never one
//!   per error;
//! - retries at once on the errors that concern one connection only (`ECONNABORTED`,
//!   `EPROTO`, `EPERM`, network errors), and returns any other error;
//! - optionally sheds: above an [`FdBudget`] a new connection is accepted and closed at once
//!   (the client learns now instead of timing out), and at `EMFILE` a reserved fd is let go to
//!   accept and close the waiting connection, so the backlog drains instead of filling.
//!
//! ```no_run
//! use candor_sdk::accept::AcceptLoop;
//! use std::net::TcpListener;
//!
//! let listener = TcpListener::bind("127.0.0.1:8080").unwrap();
//! let mut accept = AcceptLoop::new("web");
//! loop {
//!     let (conn, _peer) = accept.accept(&listener).expect("the listener is broken");
//!     std::thread::spawn(move || drop(conn));
//! }
//! ```

use crate::episode::Episodes;
use crate::fds::{FdBudget, FdUsage};
use crate::Backoff;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

/// A listener [`AcceptLoop::accept`] can take connections from.
///
/// ```
/// use candor_sdk::accept::{Accept, AcceptLoop};
/// // Any listener with one accept call can be served by an AcceptLoop.
/// fn serve<L: Accept>(l: &L) -> std::io::Result<L::Stream> {
///     AcceptLoop::new("any").accept(l).map(|(s, _)| s)
/// }
/// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
/// assert!(serve(&l).is_ok());
/// ```
pub trait Accept {
    /// The accepted connection.
    type Stream;
    /// The peer's address.
    type Addr;
    /// One `accept` call.
    ///
    /// ```
    /// use candor_sdk::accept::Accept;
    /// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// assert!(Accept::accept_once(&l).is_ok());
    /// ```
    fn accept_once(&self) -> io::Result<(Self::Stream, Self::Addr)>;
}

impl Accept for TcpListener {
    type Stream = TcpStream;
    type Addr = SocketAddr;
    fn accept_once(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.accept()
    }
}

impl Accept for UnixListener {
    type Stream = UnixStream;
    type Addr = std::os::unix::net::SocketAddr;
    fn accept_once(&self) -> io::Result<(UnixStream, Self::Addr)> {
        self.accept()
    }
}

/// A tokio listener [`AcceptLoop::accept_async`] can take connections from.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use candor_sdk::accept::{AcceptLoop, AsyncAccept};
/// async fn serve<L: AsyncAccept>(l: &L) -> std::io::Result<L::Stream> {
///     AcceptLoop::new("any").accept_async(l).await.map(|(s, _)| s)
/// }
/// let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
/// assert!(serve(&l).await.is_ok());
/// # }
/// ```
#[cfg(feature = "tokio")]
pub trait AsyncAccept {
    /// The accepted connection.
    type Stream;
    /// The peer's address.
    type Addr;
    /// Poll for one connection.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use candor_sdk::accept::AsyncAccept;
    /// let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// assert!(std::future::poll_fn(|cx| AsyncAccept::poll_accept(&l, cx)).await.is_ok());
    /// # }
    /// ```
    fn poll_accept(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<(Self::Stream, Self::Addr)>>;
}

#[cfg(feature = "tokio")]
impl AsyncAccept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    type Addr = SocketAddr;
    fn poll_accept(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<(tokio::net::TcpStream, SocketAddr)>> {
        tokio::net::TcpListener::poll_accept(self, cx)
    }
}

#[cfg(feature = "tokio")]
impl AsyncAccept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;
    fn poll_accept(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<(tokio::net::UnixStream, Self::Addr)>> {
        tokio::net::UnixListener::poll_accept(self, cx)
    }
}

/// Counts of what an [`AcceptLoop`] has met.
///
/// ```
/// let a = candor_sdk::accept::AcceptLoop::new("web");
/// let s = a.stats();
/// println!("{} accepted, {} errors in {} episodes, {} shed", s.accepted, s.resource_errors, s.episodes, s.shed);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcceptStats {
    /// Connections handed to the caller.
    pub accepted: u64,
    /// Accepts that failed for want of fds, buffers or memory.
    pub resource_errors: u64,
    /// Runs of such failures (each logged once at its start and once at its end).
    pub episodes: u64,
    /// Connections accepted and closed at once (shedding).
    pub shed: u64,
}

/// A backing-off, counting, optionally shedding accept loop (see the module's docs).
///
/// ```
/// use candor_sdk::{accept::AcceptLoop, fds::FdBudget};
/// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
/// let mut accept = AcceptLoop::new("web").shed_above(FdBudget::new());
/// let (conn, _peer) = accept.accept(&l).unwrap();
/// # drop(conn);
/// ```
#[derive(Debug)]
pub struct AcceptLoop {
    name: String,
    backoff: Backoff,
    failing: Episodes,
    shedding: Episodes,
    budget: Option<FdBudget>,
    reserve: Option<File>,
    stats: AcceptStats,
}

/// What to do after one accept call.
enum Step<S, A> {
    Accepted(S, A),
    Wait(Duration),
    Again,
    Drain,
    Fail(io::Error),
}

fn resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Errors about one connection: the next accept may well succeed (accept(2), "Error
/// handling").
fn connection_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

impl AcceptLoop {
    /// An accept loop for the listener called `name` in its log lines.
    ///
    /// ```
    /// let a = candor_sdk::accept::AcceptLoop::new("web");
    /// assert_eq!(a.stats().accepted, 0);
    /// ```
    pub fn new(name: &str) -> AcceptLoop {
        AcceptLoop {
            name: name.to_string(),
            backoff: Backoff::new(Duration::from_millis(10), Duration::from_secs(1)),
            failing: Episodes::default(),
            shedding: Episodes::default(),
            budget: None,
            reserve: None,
            stats: AcceptStats::default(),
        }
    }

    /// Back off from `min`, doubling up to `max` (default 10 ms → 1 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let a = candor_sdk::accept::AcceptLoop::new("web")
    ///     .backoff(Duration::from_millis(100), Duration::from_secs(5));
    /// # let _ = a;
    /// ```
    pub fn backoff(mut self, min: Duration, max: Duration) -> AcceptLoop {
        self.backoff = Backoff::new(min, max);
        self
    }

    /// Shed new connections above `budget`, and keep one fd in reserve to drain the backlog
    /// at `EMFILE` (see the module's docs).
    ///
    /// ```
    /// use candor_sdk::{accept::AcceptLoop, fds::FdBudget};
    /// let a = AcceptLoop::new("web").shed_above(FdBudget::with_threshold(90.0));
    /// # let _ = a;
    /// ```
    pub fn shed_above(mut self, budget: FdBudget) -> AcceptLoop {
        self.budget = Some(budget);
        self.reserve = File::open("/dev/null").ok();
        self
    }

    /// What it has met so far.
    ///
    /// ```
    /// let a = candor_sdk::accept::AcceptLoop::new("web");
    /// assert_eq!(a.stats().shed, 0);
    /// ```
    pub fn stats(&self) -> AcceptStats {
        self.stats
    }

    /// The next connection: blocks, backs off and retries as the module's docs say, and
    /// returns an error only for one that is not about resources or a single connection
    /// (a closed or broken listener).
    ///
    /// ```
    /// use candor_sdk::accept::AcceptLoop;
    /// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// let (conn, peer) = AcceptLoop::new("web").accept(&l).unwrap();
    /// # let _ = (conn, peer);
    /// ```
    pub fn accept<L: Accept>(&mut self, l: &L) -> io::Result<(L::Stream, L::Addr)> {
        loop {
            match self.step(l.accept_once()) {
                Step::Accepted(s, a) => return Ok((s, a)),
                Step::Wait(d) => std::thread::sleep(d),
                Step::Again => {}
                Step::Drain => {
                    let r = l.accept_once();
                    self.drained(r);
                }
                Step::Fail(e) => return Err(e),
            }
        }
    }

    /// [`AcceptLoop::accept`] for a tokio listener.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use candor_sdk::accept::AcceptLoop;
    /// let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// let (conn, _peer) = AcceptLoop::new("web").accept_async(&l).await.unwrap();
    /// # let _ = conn;
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn accept_async<L: AsyncAccept>(
        &mut self,
        l: &L,
    ) -> io::Result<(L::Stream, L::Addr)> {
        loop {
            let r = std::future::poll_fn(|cx| l.poll_accept(cx)).await;
            match self.step(r) {
                Step::Accepted(s, a) => return Ok((s, a)),
                Step::Wait(d) => tokio::time::sleep(d).await,
                Step::Again => {}
                Step::Drain => {
                    let r = std::future::poll_fn(|cx| l.poll_accept(cx)).await;
                    self.drained(r);
                }
                Step::Fail(e) => return Err(e),
            }
        }
    }

    fn step<S, A>(&mut self, r: io::Result<(S, A)>) -> Step<S, A> {
        match r {
            Ok((s, a)) => {
                self.recovered();
                if let Some(over) = self.budget.as_ref().and_then(|b| b.check().err()) {
                    self.shed_one(&over.to_string());
                    drop(s);
                    return Step::Again;
                }
                self.stop_shedding();
                self.stats.accepted += 1;
                Step::Accepted(s, a)
            }
            Err(e) if resource_error(&e) => {
                self.stats.resource_errors += 1;
                self.failed(&e);
                if e.raw_os_error() == Some(libc::EMFILE) && self.reserve.take().is_some() {
                    return Step::Drain;
                }
                Step::Wait(self.backoff.next_delay())
            }
            Err(e) if connection_error(&e) => Step::Again,
            Err(e) => Step::Fail(io::Error::new(
                e.kind(),
                format!("accept on {}: {e}", self.name),
            )),
        }
    }

    /// After letting the reserve go at EMFILE: close what that accepted, take the reserve back.
    fn drained<S, A>(&mut self, r: io::Result<(S, A)>) {
        if let Ok((s, _)) = r {
            drop(s);
            self.shed_one("out of fds (EMFILE)");
        }
        self.reserve = File::open("/dev/null").ok();
    }

    fn failed(&mut self, e: &io::Error) {
        let name = &self.name;
        let max = self.backoff.max();
        self.failing.failed(
            || {
                let fds = FdUsage::now()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default();
                format!(
                    "accept on {name}: {e}{fds}; backing off up to {} until it passes (one \
                     line a minute while it lasts)",
                    crate::human(max)
                )
            },
            |n, d| {
                format!(
                    "accept on {name}: still failing ({e}): {n} errors in {}",
                    crate::human(d)
                )
            },
        );
        self.stats.episodes = self.failing.begun;
    }

    fn recovered(&mut self) {
        self.backoff.reset();
        let name = &self.name;
        self.failing.succeeded(|n, d| {
            format!(
                "accept on {name}: recovered after {n} errors in {}",
                crate::human(d)
            )
        });
    }

    fn shed_one(&mut self, why: &str) {
        self.stats.shed += 1;
        let name = &self.name;
        self.shedding.failed(
            || format!("accept on {name}: shedding new connections (closed at once): {why}"),
            |n, d| {
                format!(
                    "accept on {name}: still shedding ({why}): {n} closed in {}",
                    crate::human(d)
                )
            },
        );
    }

    fn stop_shedding(&mut self) {
        if self.shedding.is_on() {
            let name = &self.name;
            self.shedding.succeeded(|n, d| {
                format!(
                    "accept on {name}: stopped shedding: {n} connections closed in {}",
                    crate::human(d)
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::time::Instant;

    /// A listener that answers from a script.
    struct Scripted(RefCell<VecDeque<io::Result<(u32, ())>>>);

    impl Accept for Scripted {
        type Stream = u32;
        type Addr = ();
        fn accept_once(&self) -> io::Result<(u32, ())> {
            self.0
                .borrow_mut()
                .pop_front()
                .unwrap_or_else(|| Err(io::Error::from_raw_os_error(libc::EBADF)))
        }
    }

    fn os(code: i32) -> io::Result<(u32, ())> {
        Err(io::Error::from_raw_os_error(code))
    }

    #[test]
    fn resource_errors_back_off_and_count_one_episode_and_other_errors_end_the_loop() {
        let mut script: VecDeque<_> = VecDeque::new();
        for _ in 0..6 {
            script.push_back(os(libc::EMFILE));
        }
        script.push_back(os(libc::ECONNABORTED));
        script.push_back(Ok((7, ())));
        script.push_back(os(libc::ENOBUFS));
        script.push_back(Ok((8, ())));
        let l = Scripted(RefCell::new(script));
        let mut a =
            AcceptLoop::new("test").backoff(Duration::from_millis(1), Duration::from_millis(4));
        let start = Instant::now();
        assert_eq!(a.accept(&l).unwrap().0, 7);
        // 1 + 2 + 4 + 4 + 4 + 4 ms of backoff at least.
        assert!(start.elapsed() >= Duration::from_millis(19));
        assert_eq!(a.accept(&l).unwrap().0, 8);
        let err = a.accept(&l).unwrap_err();
        assert!(err.to_string().starts_with("accept on test: "), "{err}");
        assert_eq!(
            a.stats(),
            AcceptStats {
                accepted: 2,
                resource_errors: 7,
                episodes: 2,
                shed: 0
            }
        );
    }

    #[test]
    fn above_the_budget_new_connections_are_closed_at_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // A budget that has just counted 900 of 1000 fds, and will not count again.
        let budget = FdBudget::with_threshold(80.0).refresh_every(Duration::from_secs(3600));
        budget.pretend(FdUsage {
            open: 900,
            limit: 1000,
        });
        let mut a = AcceptLoop::new("test").shed_above(budget);
        let c = std::net::TcpStream::connect(addr).unwrap();
        // The loop sheds it and waits for the next; let the shed show from the client's side.
        let t = std::thread::spawn(move || {
            use std::io::Read;
            let mut c = c;
            let mut buf = [0u8; 1];
            c.read(&mut buf).map(|n| n == 0)
        });
        l.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while a.stats().shed == 0 && Instant::now() < end {
            let _ = a.step(l.accept_once());
        }
        assert_eq!(a.stats().shed, 1);
        assert!(
            t.join().unwrap().unwrap(),
            "the client saw its connection closed"
        );
    }
}
