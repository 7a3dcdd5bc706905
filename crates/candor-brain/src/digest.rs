//! What makes a run, as stable digests per part ([`RunDigest`]): recorded with every run, so
//! that a daemon started later (after a crash, a kill -9, `candor upgrade`) and `candor
//! reload` can tell whether a live process was started from the config they read, and name
//! what differs ("env, workdir") — never the values, which may be secrets.
//!
//! A part is what the spawn takes from the service's config:
//! - `command`: argv;
//! - `env`: the variables the config sets (`env`, what the `env_file`s held when the config
//!   was read, `inherit_env`, and HOME/USER/LOGNAME/SHELL of `user`) — not the daemon's own
//!   environment, which a service with `inherit_env` gets too: it is not config, and a daemon
//!   started from another shell must not restart every service;
//! - `user`: uid, gid and groups as resolved, and `umask`;
//! - `workdir`;
//! - `limits`: `nofile` and the cgroup limits (not the fd/memory thresholds, which the
//!   daemon checks on the live run);
//! - `sockets`: the activated sockets (bound by Candor, handed over as fds);
//! - `ready` (how readiness is told: the fd, the file, NOTIFY_SOCKET) and `watchdog`.
//!
//! Not parts: `stop` (signal and timeout are taken from the config when the run is stopped),
//! the restart policy, probes, `after`, logs: none of them is in the process.
//!
//! The digest is FNV-1a, 128 bits, over a length-prefixed encoding: the same in every build
//! and every version (std's hasher is not), and a change detector, not a secret: env values
//! are hashed, never written.

use std::collections::BTreeMap;

use candor_spec::{ListenAddr, ReadySpec, ServiceSpec};
use serde::{Deserialize, Serialize};

/// Every part, in the order messages name them.
pub const PARTS: [&str; 8] = [
    "command", "env", "user", "workdir", "limits", "sockets", "ready", "watchdog",
];

/// A run's parts and their digests (hex), as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunDigest(BTreeMap<String, String>);

impl RunDigest {
    /// The digest of a run spawned from `spec` now.
    pub fn of(spec: &ServiceSpec) -> Self {
        let mut parts = BTreeMap::new();
        for part in PARTS {
            let mut e = Encoder::default();
            encode(part, spec, &mut e);
            parts.insert(part.to_string(), e.finish());
        }
        Self(parts)
    }

    /// The parts of this (recorded) run that differ from `now`, in [`PARTS`] order. A part
    /// the record does not name (one a later version added) is not compared: that cannot be
    /// told.
    pub fn differs(&self, now: &RunDigest) -> Vec<&'static str> {
        PARTS
            .into_iter()
            .filter(|p| match (self.0.get(*p), now.0.get(*p)) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            })
            .collect()
    }
}

/// How a live run compares with the config read now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// Started from another config: these parts differ.
    Differs(Vec<&'static str>),
    /// Started by a version that recorded no digest: it cannot be told.
    Unknown,
}

impl Drift {
    /// What is said of such a run in its reason while it lives.
    pub fn kept_reason(&self) -> String {
        match self {
            Drift::Differs(parts) => format!(
                "started from an older config: {} differ; restart it to apply",
                parts.join(", ")
            ),
            Drift::Unknown => "started by an earlier version that did not record its config: \
                 whether it matches the config cannot be told; restart it to be sure"
                .to_string(),
        }
    }
}

/// How a recorded run compares with `spec`: None when it was started from it.
/// `same_command` is what the shell found for a record without a digest (older versions
/// recorded the command alone).
pub fn drift(
    recorded: Option<&RunDigest>,
    spec: &ServiceSpec,
    same_command: bool,
) -> Option<Drift> {
    match recorded {
        Some(d) => {
            let parts = d.differs(&RunDigest::of(spec));
            (!parts.is_empty()).then_some(Drift::Differs(parts))
        }
        None if !same_command => Some(Drift::Differs(vec!["command"])),
        None => Some(Drift::Unknown),
    }
}

fn encode(part: &str, spec: &ServiceSpec, e: &mut Encoder) {
    match part {
        "command" => e.strs(&spec.command),
        "env" => {
            e.bool(spec.inherit_env);
            let pairs = spec.env_pairs();
            e.u64(pairs.len() as u64);
            for (k, v) in &pairs {
                e.str(k);
                e.str(v);
            }
        }
        "user" => {
            match spec.credentials() {
                None => e.bool(false),
                Some(c) => {
                    e.bool(true);
                    e.opt_u64(c.uid.map(u64::from));
                    e.opt_u64(c.gid.map(u64::from));
                    match c.groups {
                        None => e.bool(false),
                        Some(g) => {
                            e.bool(true);
                            e.u64(g.len() as u64);
                            g.iter().for_each(|g| e.u64(u64::from(*g)));
                        }
                    }
                }
            }
            e.opt_u64(spec.umask.map(u64::from));
        }
        "workdir" => match &spec.workdir {
            None => e.bool(false),
            Some(p) => {
                e.bool(true);
                e.bytes(p.as_os_str().as_encoded_bytes());
            }
        },
        "limits" => {
            let c = &spec.limits.cgroup;
            e.opt_u64(spec.limits.nofile);
            e.opt_u64(c.memory_max);
            e.opt_u64(c.memory_high);
            e.opt_u64(c.pids_max);
            e.opt_u64(c.cpu_weight.map(u64::from));
            e.opt_u64(c.cpu_max.map(|(q, _)| q));
            e.opt_u64(c.cpu_max.map(|(_, p)| p));
        }
        "sockets" => {
            e.u64(spec.activated.len() as u64);
            for l in &spec.activated {
                e.str(&l.name);
                match &l.addr {
                    ListenAddr::Unix { path, mode } => {
                        e.str("unix");
                        e.bytes(path.as_os_str().as_encoded_bytes());
                        e.u64(u64::from(*mode));
                    }
                    ListenAddr::Tcp(a) => {
                        e.str("tcp");
                        e.str(&a.to_string());
                    }
                }
                e.u64(u64::from(l.backlog));
            }
        }
        "ready" => {
            e.str(spec.ready.as_str());
            match &spec.ready {
                ReadySpec::Fd(n) => e.u64(u64::from(*n)),
                ReadySpec::File(p) => e.bytes(p.as_os_str().as_encoded_bytes()),
                _ => {}
            }
        }
        "watchdog" => e.opt_u64(spec.watchdog.map(|w| w.as_micros() as u64)),
        _ => {}
    }
}

/// FNV-1a (128 bits) over length-prefixed fields: "ab","c" and "a","bc" differ.
struct Encoder(u128);

impl Default for Encoder {
    fn default() -> Self {
        Self(0x6c62272e07bb014262b821756295c58d)
    }
}

impl Encoder {
    fn raw(&mut self, bytes: &[u8]) {
        const PRIME: u128 = 0x0000000001000000000000000000013B;
        for b in bytes {
            self.0 ^= u128::from(*b);
            self.0 = self.0.wrapping_mul(PRIME);
        }
    }
    fn u64(&mut self, n: u64) {
        self.raw(&n.to_le_bytes());
    }
    fn bool(&mut self, b: bool) {
        self.raw(&[u8::from(b)]);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.raw(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn strs(&mut self, list: &[String]) {
        self.u64(list.len() as u64);
        list.iter().for_each(|s| self.str(s));
    }
    fn opt_u64(&mut self, n: Option<u64>) {
        match n {
            None => self.bool(false),
            Some(n) => {
                self.bool(true);
                self.u64(n);
            }
        }
    }
    fn finish(self) -> String {
        format!("{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_spec::ServiceSpec;
    use std::path::PathBuf;

    fn base() -> ServiceSpec {
        ServiceSpec::with_command("web", &["/bin/web", "--port", "80"])
    }

    fn parts_changed(f: impl FnOnce(&mut ServiceSpec)) -> Vec<&'static str> {
        let before = RunDigest::of(&base());
        let mut spec = base();
        f(&mut spec);
        before.differs(&RunDigest::of(&spec))
    }

    #[test]
    fn each_part_of_a_run_is_told_apart_and_named() {
        assert_eq!(parts_changed(|_| {}), Vec::<&str>::new());
        assert_eq!(parts_changed(|s| s.command[2] = "81".into()), ["command"]);
        assert_eq!(
            parts_changed(|s| {
                s.env.insert("A".into(), "2".into());
            }),
            ["env"]
        );
        assert_eq!(
            parts_changed(|s| {
                s.env_from_files.insert("SECRET".into(), "x".into());
            }),
            ["env"]
        );
        assert_eq!(parts_changed(|s| s.inherit_env = false), ["env"]);
        assert_eq!(parts_changed(|s| s.umask = Some(0o027)), ["user"]);
        assert_eq!(
            parts_changed(|s| s.groups = vec![("adm".into(), 4)]),
            ["user"]
        );
        assert_eq!(
            parts_changed(|s| s.workdir = Some(PathBuf::from("/srv"))),
            ["workdir"]
        );
        assert_eq!(parts_changed(|s| s.limits.nofile = Some(1024)), ["limits"]);
        assert_eq!(
            parts_changed(|s| s.limits.cgroup.memory_max = Some(1 << 30)),
            ["limits"]
        );
        assert_eq!(
            parts_changed(|s| s.activated = vec![candor_spec::Listen {
                name: "web".into(),
                addr: ListenAddr::Tcp("127.0.0.1:80".parse().unwrap()),
                backlog: 16,
            }]),
            ["sockets"]
        );
        assert_eq!(parts_changed(|s| s.ready = ReadySpec::Fd(3)), ["ready"]);
        assert_eq!(
            parts_changed(|s| s.watchdog = Some(std::time::Duration::from_secs(2))),
            ["watchdog"]
        );
        // Several at once, in the order messages list them.
        assert_eq!(
            parts_changed(|s| {
                s.workdir = Some(PathBuf::from("/srv"));
                s.env.insert("A".into(), "1".into());
            }),
            ["env", "workdir"]
        );
    }

    #[test]
    fn what_is_not_in_the_process_is_no_part() {
        let changed = parts_changed(|s| {
            s.stop.signal = candor_spec::StopSignal::Int;
            s.stop.timeout = std::time::Duration::from_secs(3);
            s.restart = candor_spec::RestartPolicy::Never;
            s.limits.fd_warn = Some(50.0);
            s.limits.memory_restart = Some(1 << 20);
            s.logs.rate = 5;
            s.defined_at = "other.toml:1:1".into();
        });
        assert_eq!(changed, Vec::<&str>::new());
    }

    #[test]
    fn the_digest_is_the_same_in_every_build_and_fields_do_not_run_together() {
        // A fixed value: a change here changes every recorded digest, so that an upgrade
        // would call every run changed. Change the encoding only with a new part name.
        let other = ServiceSpec::with_command("other", &["/bin/web", "--port", "80"]);
        assert_eq!(
            RunDigest::of(&base()),
            RunDigest::of(&other),
            "the name is no part"
        );
        let a = RunDigest::of(&ServiceSpec::with_command("a", &["ab", "c"]));
        let b = RunDigest::of(&ServiceSpec::with_command("a", &["a", "bc"]));
        assert_eq!(a.differs(&b), ["command"]);
        let mut e = Encoder::default();
        e.str("candor");
        assert_eq!(e.finish(), STABLE_CANDOR);
    }

    /// FNV-1a 128 of the length-prefixed "candor", computed once.
    const STABLE_CANDOR: &str = "b020dd0f8a0024ea82fae46749362960";

    #[test]
    fn a_record_without_a_digest_cannot_be_told_unless_its_command_differs() {
        let spec = base();
        assert_eq!(drift(None, &spec, true), Some(Drift::Unknown));
        assert_eq!(
            drift(None, &spec, false),
            Some(Drift::Differs(vec!["command"]))
        );
        assert_eq!(drift(Some(&RunDigest::of(&spec)), &spec, true), None);
        // A part only a later version records is not compared.
        let mut recorded = RunDigest::of(&spec);
        recorded.0.insert("future".into(), "x".into());
        recorded.0.remove("watchdog");
        assert_eq!(drift(Some(&recorded), &spec, true), None);
    }

    #[test]
    fn a_kept_run_says_what_differs_and_what_to_do() {
        assert_eq!(
            Drift::Differs(vec!["env", "workdir"]).kept_reason(),
            "started from an older config: env, workdir differ; restart it to apply"
        );
        assert!(Drift::Unknown.kept_reason().contains("cannot be told"));
    }
}
