//! `candor export`: a config for another supervisor, for when the services outgrow one
//! Candor. `systemd`: unit files; `kubernetes`: manifests. Both say what has no equivalent
//! on stderr as `warning: <service>: <key> ...` — never dropped silently — and exit 0.

mod calendar;
pub mod kubernetes;
pub mod systemd;
mod yaml;

use candor_spec::ServiceSpec;

/// What of one service does not map, each as `warning: <service>: <key> <why>`.
pub struct Warnings {
    service: String,
    lines: Vec<String>,
}

impl Warnings {
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_string(),
            lines: Vec::new(),
        }
    }

    pub fn warn(&mut self, key: &str, why: impl std::fmt::Display) {
        self.lines
            .push(format!("warning: {}: {key} {why}", self.service));
    }

    pub fn into_lines(self) -> Vec<String> {
        self.lines
    }

    /// What only Candor checks, whatever the target: the fd and memory budgets' warnings
    /// and restarts, and the declared sockets it watches (activated ones are the target's
    /// business).
    pub fn candor_only(&mut self, spec: &ServiceSpec, target: &str) {
        let l = &spec.limits;
        for (key, set) in [
            ("limits.fd_warn", l.fd_warn.is_some()),
            ("limits.fd_restart", l.fd_restart.is_some()),
            ("limits.memory_warn", l.memory_warn.is_some()),
        ] {
            if set {
                self.warn(
                    key,
                    format!("has no {target} equivalent (only Candor watches fd and memory trends; keep it in your monitoring)"),
                );
            }
        }
        if let (Some(n), "systemd") = (spec.replicas, target) {
            self.warn(
                "replicas",
                format!("= {n}: systemd runs one main process per unit; exported as instance 1's unit (for more, a template unit {}@.service with %i where `{{instance}}` was)", spec.name),
            );
        }
        for s in spec.own_sockets() {
            self.warn(
                "sockets",
                format!(
                    "{}: a declared socket is not checked by {target}",
                    s.display()
                ),
            );
        }
    }
}

#[cfg(test)]
mod jobs_tests;
