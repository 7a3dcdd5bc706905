//! `candor import`: other supervisors' configs read into a `Draft` of a Candor config.

pub mod draft;
pub mod yaml;
