//! Candor's decisions, as pure functions on plain data: no IO, no clock reads, no async.
//!
//! - [`backoff`]: capped exponential delay between restarts.
//! - [`restart`]: what to do when a run ends (restart now, later, or stay down).
//! - [`stop`]: the escalation timeline of a stop (signal, then SIGKILL of the whole group).
//! - [`health`]: probe, declared-socket and watchdog evidence of one run.
//! - [`status`]: `derive(spec, evidence, now) -> Status`, the only place a state is decided.

pub mod backoff;
pub mod budget;
pub mod exit;
pub mod health;
pub mod restart;
pub mod status;
pub mod stop;

pub use exit::ExitStatus;
pub use status::{derive, Derived, Evidence, Phase, ServiceState, StopCause};
