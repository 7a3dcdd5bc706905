//! SIGTERM, handled: a graceful shutdown with a backstop.
//!
//! [`Shutdown::install`] catches SIGTERM and SIGINT. The program waits for them
//! ([`Shutdown::wait`], or [`Shutdown::recv`] in a tokio task), then finishes its work and
//! returns from `main`. From the moment the signal arrives a backstop thread keeps time: if
//! the process is still there after the grace — a little under the supervisor's stop timeout
//! (`CANDOR_STOP_TIMEOUT_MS`) — it writes why and exits with code 1, by itself, before the
//! supervisor has to kill it. A second SIGTERM or SIGINT exits at once. A process that
//! swallows SIGTERM and lingers half-dead becomes impossible.
//!
//! ```no_run
//! use candor_sdk::shutdown::Shutdown;
//!
//! let stop = Shutdown::install().unwrap();
//! let worker = std::thread::spawn(move || {
//!     while !stop.requested() {
//!         // ... one job ...
//!     }
//!     // ... finish the job in hand, flush, close ...
//! });
//! worker.join().unwrap();
//! ```

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The exit code of a process the backstop ends.
///
/// ```
/// assert_eq!(candor_sdk::shutdown::BACKSTOP_EXIT_CODE, 1);
/// ```
pub const BACKSTOP_EXIT_CODE: i32 = 1;

/// The grace when the supervisor does not say its stop timeout.
///
/// ```
/// use candor_sdk::shutdown::{grace_for, DEFAULT_GRACE};
/// assert_eq!(DEFAULT_GRACE, grace_for(std::time::Duration::from_secs(10)));
/// ```
pub const DEFAULT_GRACE: Duration = Duration::from_secs(9);

/// The grace for a stop timeout of `timeout`: 10 % under it (at least 250 ms, at most 5 s
/// under), and never under half of it.
///
/// ```
/// use candor_sdk::shutdown::grace_for;
/// use std::time::Duration;
/// assert_eq!(grace_for(Duration::from_secs(10)), Duration::from_secs(9));
/// assert_eq!(grace_for(Duration::from_secs(90)), Duration::from_secs(85));
/// assert_eq!(grace_for(Duration::from_secs(1)), Duration::from_millis(750));
/// ```
pub fn grace_for(timeout: Duration) -> Duration {
    let margin = (timeout / 10).clamp(Duration::from_millis(250), Duration::from_secs(5));
    timeout.saturating_sub(margin).max(timeout / 2)
}

/// The grace this process gets: [`grace_for`] `CANDOR_STOP_TIMEOUT_MS`, or
/// [`DEFAULT_GRACE`] when it is not set.
///
/// ```
/// println!("{:?}", candor_sdk::shutdown::grace_from_env());
/// ```
pub fn grace_from_env() -> Duration {
    crate::env("CANDOR_STOP_TIMEOUT_MS")
        .and_then(|ms| ms.parse().ok())
        .map(|ms| grace_for(Duration::from_millis(ms)))
        .unwrap_or(DEFAULT_GRACE)
}

struct Inner {
    requested: AtomicBool,
    signal: AtomicI32,
    grace_ms: AtomicU64,
    lock: Mutex<()>,
    cv: Condvar,
    #[cfg(feature = "tokio")]
    notify: tokio::sync::Notify,
}

static INNER: OnceLock<Inner> = OnceLock::new();
/// The write end of the self-pipe the signal handler writes to (-1: not installed).
static PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // Async-signal-safe: one write(2) on a non-blocking pipe, errno kept.
    // SAFETY: errno location and write are async-signal-safe; the byte lives on our stack.
    unsafe {
        let errno = *libc::__errno_location();
        let b = sig as u8;
        libc::write(PIPE.load(Ordering::Relaxed), (&b as *const u8).cast(), 1);
        *libc::__errno_location() = errno;
    }
}

/// The process's shutdown: whether it was asked for, and the backstop behind it. Cheap to
/// copy; every copy is the same shutdown.
///
/// ```
/// let stop = candor_sdk::shutdown::Shutdown::install().unwrap();
/// let same = candor_sdk::shutdown::Shutdown::install().unwrap();
/// assert_eq!(stop.requested(), same.requested());
/// ```
#[derive(Clone, Copy)]
pub struct Shutdown {
    inner: &'static Inner,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("requested", &self.requested())
            .field("grace", &self.grace())
            .finish()
    }
}

impl Shutdown {
    /// Catch SIGTERM and SIGINT, with the grace from [`grace_from_env`]. Calling it again
    /// returns the same shutdown.
    ///
    /// ```
    /// let stop = candor_sdk::shutdown::Shutdown::install().unwrap();
    /// assert!(!stop.requested());
    /// ```
    pub fn install() -> io::Result<Shutdown> {
        static INSTALLED: Mutex<bool> = Mutex::new(false);
        let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
        let inner = INNER.get_or_init(|| Inner {
            requested: AtomicBool::new(false),
            signal: AtomicI32::new(0),
            grace_ms: AtomicU64::new(grace_from_env().as_millis() as u64),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            #[cfg(feature = "tokio")]
            notify: tokio::sync::Notify::new(),
        });
        if !*installed {
            let (read, write) = pipe()?;
            std::thread::Builder::new()
                .name("candor-shutdown".into())
                .spawn(move || watch(read, inner))?;
            PIPE.store(write.as_raw_fd(), Ordering::SeqCst);
            std::mem::forget(write); // the handler writes to it for the life of the process
            for sig in [libc::SIGTERM, libc::SIGINT] {
                // SAFETY: a handler that only writes to a pipe; sigaction struct we own.
                unsafe {
                    let mut sa: libc::sigaction = std::mem::zeroed();
                    sa.sa_sigaction = on_signal as *const () as usize;
                    sa.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&mut sa.sa_mask);
                    if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            *installed = true;
        }
        Ok(Shutdown { inner })
    }

    /// The grace the backstop gives once the signal arrives.
    ///
    /// ```
    /// let stop = candor_sdk::shutdown::Shutdown::install().unwrap();
    /// println!("{:?}", stop.grace());
    /// ```
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.inner.grace_ms.load(Ordering::Relaxed))
    }

    /// Change the grace (it counts from the signal, whenever this is called).
    ///
    /// ```
    /// let stop = candor_sdk::shutdown::Shutdown::install().unwrap();
    /// stop.set_grace(std::time::Duration::from_secs(3));
    /// assert_eq!(stop.grace(), std::time::Duration::from_secs(3));
    /// ```
    pub fn set_grace(&self, grace: Duration) {
        self.inner
            .grace_ms
            .store(grace.as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether the shutdown has begun.
    ///
    /// ```
    /// let stop = candor_sdk::shutdown::Shutdown::install().unwrap();
    /// if stop.requested() {
    ///     // take no new work
    /// }
    /// ```
    pub fn requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// The signal that began it (0 for [`Shutdown::trigger`]), once it has.
    ///
    /// ```
    /// let stop = candor_sdk::shutdown::Shutdown::install().unwrap();
    /// assert_eq!(stop.signal(), None);
    /// ```
    pub fn signal(&self) -> Option<i32> {
        self.requested()
            .then(|| self.inner.signal.load(Ordering::SeqCst))
    }

    /// Block until the shutdown begins.
    ///
    /// ```no_run
    /// let stop = candor_sdk::shutdown::Shutdown::install().unwrap();
    /// stop.wait();
    /// println!("stopping");
    /// ```
    pub fn wait(&self) {
        let mut g = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.requested() {
            g = self.inner.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Block until the shutdown begins or `timeout` passes; whether it began.
    ///
    /// ```
    /// let stop = candor_sdk::shutdown::Shutdown::install().unwrap();
    /// assert!(!stop.wait_timeout(std::time::Duration::from_millis(10)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut g = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.requested() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self
                .inner
                .cv
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Wait in a task until the shutdown begins.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() {
    /// let stop = candor_sdk::shutdown::Shutdown::install().unwrap();
    /// stop.recv().await;
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn recv(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.requested() {
                return;
            }
            notified.await;
        }
    }

    /// Begin the shutdown from inside the program, as a signal would (the backstop runs).
    ///
    /// ```no_run
    /// let stop = candor_sdk::shutdown::Shutdown::install().unwrap();
    /// stop.trigger();
    /// assert!(stop.wait_timeout(std::time::Duration::from_secs(1)));
    /// ```
    pub fn trigger(&self) {
        let b = 0u8;
        // SAFETY: one byte to our own pipe.
        unsafe { libc::write(PIPE.load(Ordering::SeqCst), (&b as *const u8).cast(), 1) };
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The handler must never block: the write end is non-blocking.
    // SAFETY: fcntl on the fd just made.
    unsafe { libc::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK) };
    // SAFETY: both fds were just created and are ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn signal_name(sig: i32) -> String {
    match sig {
        0 => "the program's own request".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        n => format!("signal {n}"),
    }
}

/// Read one signal from the self-pipe, waiting at most `timeout` (`None`: forever).
fn next_signal(read: &OwnedFd, timeout: Option<Duration>) -> Option<i32> {
    let mut pfd = libc::pollfd {
        fd: read.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
    // SAFETY: one pollfd we own; one byte into a local.
    unsafe {
        if libc::poll(&mut pfd, 1, ms) <= 0 {
            return None;
        }
        let mut b = 0u8;
        (libc::read(read.as_raw_fd(), (&mut b as *mut u8).cast(), 1) == 1).then_some(b as i32)
    }
}

/// The watcher thread: wake the waiters at the first signal, then keep the backstop's time.
fn watch(read: OwnedFd, inner: &'static Inner) {
    let sig = loop {
        if let Some(s) = next_signal(&read, None) {
            break s;
        }
    };
    let began = Instant::now();
    inner.signal.store(sig, Ordering::SeqCst);
    {
        let _g = inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        inner.requested.store(true, Ordering::SeqCst);
        inner.cv.notify_all();
    }
    #[cfg(feature = "tokio")]
    inner.notify.notify_waiters();
    loop {
        let grace = Duration::from_millis(inner.grace_ms.load(Ordering::Relaxed));
        let left = grace.saturating_sub(began.elapsed());
        if left.is_zero() {
            crate::log(&format!(
                "shutdown backstop: the graceful shutdown begun by {} did not finish within {}; \
                 exiting now with code {BACKSTOP_EXIT_CODE}",
                signal_name(sig),
                crate::human(grace)
            ));
            // SAFETY: ends the process without running anything that might hang.
            unsafe { libc::_exit(BACKSTOP_EXIT_CODE) };
        }
        if let Some(again) = next_signal(&read, Some(left)) {
            if again != 0 {
                crate::log(&format!(
                    "shutdown backstop: {} again during the graceful shutdown; exiting now \
                     with code {BACKSTOP_EXIT_CODE}",
                    signal_name(again)
                ));
                // SAFETY: as above.
                unsafe { libc::_exit(BACKSTOP_EXIT_CODE) };
            }
        }
    }
}
