//! Candor's decisions, as pure functions on plain data: no IO, no clock reads, no async.
//!
//! - [`time`]: the two clocks (`Mono` boot time for every deadline and age, wall for display).
//! - [`backoff`]: capped exponential delay between restarts.
//! - [`restart`]: what to do when a run ends (restart now, later, or stay down).
//! - [`stop`]: the escalation timeline of a stop (signal, then SIGKILL of the whole group).
//! - [`health`]: probe, declared-socket and watchdog evidence of one run.
//! - [`budget`]: fd/RSS sample windows, trend and ETA, the `limits` verdicts.
//! - [`queue`]: a bounded queue whose memory grows with use (the keeper's and the store's).
//!
//! The state machine that uses them (`step` and `derive`) is the `candor-brain` crate.

pub mod backoff;
pub mod budget;
pub mod exit;
pub mod hash;
pub mod health;
pub mod queue;
pub mod restart;
pub mod schedule;
pub mod stop;
pub mod time;

pub use exit::ExitStatus;
pub use time::{Mono, Now};

/// What a caught panic said (its `&str` or `String` payload), for the report of it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Fault injection for the test suite: whether the failpoint `kind:subject` (e.g.
/// `reader:web`) is set in `$CANDOR_FAILPOINTS` (comma-separated, read once) and has not fired
/// yet in this process. Each fires once. Unset — as everywhere outside tests — this is one
/// atomic load.
pub fn fail_once(kind: &str, subject: &str) -> bool {
    use std::sync::{Mutex, OnceLock};
    static SET: OnceLock<Option<Mutex<Vec<String>>>> = OnceLock::new();
    let set = SET.get_or_init(|| {
        let names: Vec<String> = std::env::var("CANDOR_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        (!names.is_empty()).then(|| Mutex::new(names))
    });
    let Some(set) = set else {
        return false;
    };
    let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
    let named = |n: &String| {
        n.strip_prefix(kind)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|s| s == subject)
    };
    match set.iter().position(named) {
        Some(i) => {
            set.swap_remove(i);
            true
        }
        None => false,
    }
}
