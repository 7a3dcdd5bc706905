//! Log forwarding: the wire encoders of each target and the sends that need more than a write.

pub mod journald;
pub mod otlp;
pub mod record;
pub mod syslog;
