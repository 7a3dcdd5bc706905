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
pub mod health;
pub mod queue;
pub mod restart;
pub mod stop;
pub mod time;

pub use exit::ExitStatus;
pub use time::{Mono, Now};
