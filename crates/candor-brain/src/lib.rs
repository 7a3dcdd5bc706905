//! Candor's brain as a pure state machine: `step(&mut Facts, Input, Now) -> Vec<Effect>`.
//!
//! No tokio, no IO, no clock: the daemon's shell turns keeper events, evidence, requests and
//! timer expiry into [`Input`]s, calls [`step`], and carries out the returned [`Effect`]s in
//! order. [`Facts`] hold what happened (runs, exits, stops, scheduled starts, evidence per run);
//! [`derive`] computes each service's state and reason from them on every read.
//!
//! - `facts`: the facts. `input` / `effect`: the two boundaries.
//! - `step`: the step and its bookkeeping (state-change events, publish, replies).
//! - `keeper_events`: spawned, spawn failed, exited, emptied, and refused commands.
//! - `evidence`: probes, socket checks, readiness, sd_notify, samples.
//! - `requests`: start, stop, restart, reset-failed, reload, shutdown.
//! - `enforce`: deadlines, unhealthy restarts, stop and start order.
//! - `derive`: state and reason.
//! - `groups`: replicated services: instances, scale, rollouts.
//! - `digest`: what makes a run, so that a run started from another config is told apart.

mod adopt;
mod derive;
#[cfg(test)]
mod derive_tests;
mod digest;
mod effect;
mod enforce;
mod evidence;
mod facts;
mod group_requests;
pub mod groups;
pub mod herd;
mod input;
pub mod jobs;
mod keeper_events;
pub mod plan;
mod requests;
mod step;

pub use adopt::{adopt, Found, Saved, SavedRun, SavedStop};
pub use derive::{blocking_deps, derive, Derived, ServiceState, Services};
pub use digest::{drift, Drift, RunDigest, PARTS};
pub use effect::{Effect, Note, Reply};
pub use facts::{
    Delivery, Facts, Held, LastExit, Run, ScheduledStart, Service, SharedCause, Spawn, StopCause,
    StopFact, MAX_EARLY_NOTIFY, MAX_SPAWN_REFUSALS,
};
pub use input::{
    ConditionEnd, Evidence, Input, Notify, Refusable, Request, RequestId, RolloutAction,
};
pub use step::{boot, step};

pub use candor_core::{Mono, Now};
