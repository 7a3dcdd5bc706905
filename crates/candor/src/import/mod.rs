//! `candor import`: other supervisors' configs read into a `Draft` of a Candor config.

pub mod compose;
pub mod draft;
pub mod fields;
pub mod host;
pub mod pm2;
pub mod process_compose;
pub mod shell;
pub mod yaml;
