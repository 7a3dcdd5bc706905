//! Make a service behave under a supervisor.
//!
//! Each module prevents one way real services have failed in production:
//!
//! | module | prevents |
//! |---|---|
//! | [`notify`] | readiness declared by something that proved nothing: say `READY=1` when you serve |
//! | [`watchdog`] | a stuck event loop hidden by a healthy thread: ping only while your own check passes |
//! | [`listen`] | a socket file that dangles after a crash: let the supervisor own the socket |
//! | [`accept`] | an accept loop that spins on `EMFILE` and writes 200 identical lines a second |
//! | [`fds`] | running out of fds without noticing: count them, refuse work above a budget |
//! | [`shutdown`] | a process that swallows SIGTERM and has to be killed |
//! | [`reconnect`] | a retry loop that leaks the resources of every failed attempt |
//! | [`health`] | a `/health` that answers while the service is broken |
//!
//! Everything works under Candor and under systemd (the same environment variables and
//! datagrams, see Candor's `docs/protocol.md`), and does nothing when the process is not
//! supervised, so the same binary runs from a terminal.
//!
//! The crate uses std and libc; the `tokio` feature adds async forms.
//!
//! ```
//! use candor_sdk::{notify, shutdown::Shutdown};
//!
//! let stop = Shutdown::install().expect("signal handlers");
//! // ... bind, load, warm up ...
//! notify::ready().expect("tell the supervisor");
//! # if false {
//! stop.wait(); // until SIGTERM; from here the backstop's clock runs
//! # }
//! // ... finish in-flight work ...
//! ```
//!
//! The SDK's own lines (an accept episode, a watchdog that stopped pinging, a backstop exit)
//! go to stderr, prefixed `candor-sdk:`; [`set_logger`] sends them elsewhere.

#![warn(missing_docs)]

pub mod accept;
pub mod backoff;
mod episode;
pub mod fds;
pub mod health;
pub mod listen;
pub mod notify;
pub mod reconnect;
pub mod shutdown;
pub mod watchdog;

pub use backoff::Backoff;

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

type Logger = Arc<dyn Fn(&str) + Send + Sync>;

static LOGGER: RwLock<Option<Logger>> = RwLock::new(None);

/// Send the SDK's own log lines to `f` instead of stderr.
///
/// The lines are rare by design (one per episode, never one per error), so `f` may be slow.
///
/// ```
/// candor_sdk::set_logger(|line| println!("[sdk] {line}"));
/// ```
pub fn set_logger(f: impl Fn(&str) + Send + Sync + 'static) {
    *LOGGER.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(f));
}

/// Write one of the SDK's lines.
pub(crate) fn log(line: &str) {
    let logger = LOGGER.read().unwrap_or_else(|e| e.into_inner()).clone();
    match logger {
        Some(f) => f(line),
        None => eprintln!("candor-sdk: {line}"),
    }
}

/// Milliseconds on a monotonic clock, for atomics (0 is the first call).
pub(crate) fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A duration for people: `850ms`, `2.5s`, `1.75s`, `3m10s`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = format!("{:.2}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// The value of an environment variable meant for this process, if any.
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(2500)), "2.5s");
        assert_eq!(human(Duration::from_millis(1750)), "1.75s");
        assert_eq!(human(Duration::from_secs(1)), "1s");
        assert_eq!(human(Duration::from_secs(190)), "3m10s");
    }
}
