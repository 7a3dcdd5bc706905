//! Candor's configuration: the typed, validated form of `candor.toml`.
//!
//! [`load`] reads a file (and its includes) and returns a [`Spec`] or every error found, each
//! naming file:line:col, what was expected and, for a misspelt key, what was probably meant.
//! Pure apart from reading the files.

mod accounts;
mod duration;
pub mod envfile;
mod error;
pub mod forward;
mod graph;
pub mod jobs;
mod parse;
pub mod replicas;
pub mod schedule_check;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod listen;
pub use listen::{Listen, ListenAddr};

pub use accounts::Account;
pub use duration::{format_bytes, format_duration, parse_duration, parse_percent, parse_size};
pub use error::{SpecError, SpecErrors};
pub use jobs::{
    CatchUp, HookEvent, HookFormat, HookSpec, HookTarget, Overlap, ScheduleSpec, ServiceKind, When,
};
pub use parse::{load, parse_str};
pub use replicas::{
    group_of, names_cover, InstanceOf, Strategy, Template, UpdateSpec, MAX_REPLICAS,
};

/// A validated service name: 1–64 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`, and for
/// an instance of a replicated service `@` and its index (`api@2`). It names a cgroup
/// directory, so it must be a safe path component.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(std::sync::Arc<str>);

impl ServiceName {
    pub fn new(name: &str) -> Result<Self, String> {
        if let Some((group, index)) = name.split_once('@') {
            let index_ok = !index.is_empty()
                && index.len() <= 4
                && !index.starts_with('0')
                && index.chars().all(|c| c.is_ascii_digit());
            if index_ok {
                return Self::new(group).map(|_| Self(name.into()));
            }
        }
        let ok_chars = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with(['.', '-']) {
            return Err(format!(
                "invalid service name `{name}`: use 1-64 letters, digits, `_`, `-` or `.`, not starting with `.` or `-`"
            ));
        }
        Ok(Self(name.into()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// The main config file, absolute.
    pub source: PathBuf,
    pub daemon: DaemonSpec,
    pub services: BTreeMap<ServiceName, ServiceSpec>,
}

impl Spec {
    /// Service names in an order where each comes after everything in its `after`.
    pub fn start_order(&self) -> Vec<ServiceName> {
        graph::topo_order(&self.services)
    }
}

/// The `[daemon]` section. Relative paths are already resolved against the config's directory.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DaemonSpec {
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    /// `socket_group`: the control socket is 0660 and owned by this group (name, gid);
    /// default 0600, the daemon's user only.
    pub socket_group: Option<(String, u32)>,
    /// `operators_may_shutdown = true`: `socket_group` members may also shut the daemon down
    /// (by default only its own user or root may).
    pub operators_may_shutdown: bool,
    pub include: Vec<String>,
    /// How often fds and memory of every service (and the daemon) are sampled; zero: never.
    pub sample_every: Option<Duration>,
    /// An API client that reads nothing for this long while the daemon has bytes for it (a
    /// stalled `logs -f`) is cut off; default 30 s.
    pub send_timeout: Option<Duration>,
    /// All services' log lines on disk, at most (`[daemon] logs = { max_bytes }`).
    pub logs_max_bytes: Option<u64>,
    /// `[daemon] web = { listen, metrics_public, hosts }`: the dashboard and /metrics over TCP.
    pub web: Option<WebSpec>,
    /// `[daemon] adopt_changed`: what a restarted daemon does with a live run that was started
    /// from another config than the one it reads.
    pub adopt_changed: AdoptChanged,
    /// `[daemon] probe_max_inflight`: probes in flight to one target (host:port or socket
    /// path) at once, over all services, unless a service's `probe.max_inflight` says less;
    /// default [`DEFAULT_PROBE_MAX_INFLIGHT`].
    pub probe_max_inflight: Option<u32>,
    /// `[daemon] restart_budget`: how many restarts for health reasons may happen per window
    /// (`restart_budget = false`: no limit).
    pub restart_budget: RestartBudget,
    /// `[[daemon.hooks]]`, in the order written.
    pub hooks: Vec<HookSpec>,
    /// `[[daemon.forward]]`: where services' log lines are sent, in the order written.
    pub forward: Vec<forward::ForwardSpec>,
}

/// Probes in flight to one target at once unless configured (a target's listen backlog may
/// be as small as 5: `python3 -m http.server`).
pub const DEFAULT_PROBE_MAX_INFLIGHT: u32 = 4;

/// `[daemon] restart_budget = { max = "10%", window = "10s" }`: restarts for health reasons
/// (unhealthy, watchdog) allowed in any `window`, like a disruption budget. Crashes are never
/// counted or held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartBudget {
    pub max: BudgetMax,
    pub window: Duration,
}

/// At most this many restarts per window: a count, or a percentage of the services
/// (rounded up, at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetMax {
    Count(u32),
    Percent(u32),
    /// `restart_budget = false`.
    Unlimited,
}

impl Default for RestartBudget {
    fn default() -> Self {
        Self {
            max: BudgetMax::Percent(10),
            window: Duration::from_secs(10),
        }
    }
}

impl RestartBudget {
    /// Restarts allowed per window among `services` services (at least 1).
    pub fn allowed(&self, services: usize) -> u32 {
        match self.max {
            BudgetMax::Unlimited => u32::MAX,
            BudgetMax::Count(n) => n.max(1),
            BudgetMax::Percent(p) => {
                let n = (services as u64 * u64::from(p)).div_ceil(100);
                n.clamp(1, u64::from(u32::MAX)) as u32
            }
        }
    }
}

/// `[daemon] adopt_changed = "restart" | "keep"`: a run found alive after the daemon's
/// restart (a crash, a kill -9, `candor upgrade`) whose recorded spawn (argv, env, user,
/// workdir, limits, ...) differs from what the config now says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AdoptChanged {
    /// Stop it (its stop signal and timeout) and start it with the config (default).
    #[default]
    Restart,
    /// Keep it; its reason says it predates the config until it is restarted.
    Keep,
}

impl AdoptChanged {
    pub const ALL: [AdoptChanged; 2] = [AdoptChanged::Restart, AdoptChanged::Keep];
    pub fn as_str(self) -> &'static str {
        match self {
            AdoptChanged::Restart => "restart",
            AdoptChanged::Keep => "keep",
        }
    }
}

/// The web listener: the dashboard, the API and /metrics over TCP, behind a login token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSpec {
    pub listen: std::net::SocketAddr,
    /// `GET /metrics` needs no token (for a Prometheus scraper).
    pub metrics_public: bool,
    /// Names (lowercase, without a port) the dashboard answers to besides IP addresses and
    /// `localhost`, e.g. behind a reverse proxy: every other `Host` header is refused (DNS
    /// rebinding).
    pub hosts: Vec<String>,
}

/// A name for `[daemon] web.hosts`, lowercased: a DNS name (labels of letters, digits and
/// `-`, dots between), without a port or a scheme. What is wrong with it, otherwise.
pub fn web_host_name(s: &str) -> Result<String, &'static str> {
    let name = s.to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err("is not a host name (1 to 253 characters)");
    }
    if name.contains(':') || name.contains('/') {
        return Err("must be a bare host name, without a scheme or a port");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !name.split('.').all(label_ok) {
        return Err("is not a host name (letters, digits and `-` between dots)");
    }
    Ok(name)
}

/// PATH of a service that does not inherit the daemon's environment (systemd's default).
pub const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where `candor web` opens the listener when the config names none (loopback only).
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:9631";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// Every policy, in the order messages list them.
    pub const ALL: [RestartPolicy; 3] = [
        RestartPolicy::Always,
        RestartPolicy::OnFailure,
        RestartPolicy::Never,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }
}

/// Capped exponential backoff between restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffSpec {
    pub initial: Duration,
    pub max: Duration,
    /// A run that lasted at least this long was a good run: the next restart is immediate.
    pub reset_after: Duration,
}

impl Default for BackoffSpec {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// A signal a service may be stopped with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
    Hup,
    Quit,
    Kill,
    Usr1,
    Usr2,
    Winch,
}

impl StopSignal {
    pub const ALL: [(StopSignal, &'static str, i32); 8] = [
        (StopSignal::Term, "SIGTERM", 15),
        (StopSignal::Int, "SIGINT", 2),
        (StopSignal::Hup, "SIGHUP", 1),
        (StopSignal::Quit, "SIGQUIT", 3),
        (StopSignal::Kill, "SIGKILL", 9),
        (StopSignal::Usr1, "SIGUSR1", 10),
        (StopSignal::Usr2, "SIGUSR2", 12),
        (StopSignal::Winch, "SIGWINCH", 28),
    ];
    pub fn parse(s: &str) -> Option<Self> {
        let upper = s.to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        Self::ALL
            .iter()
            .find(|(_, n, _)| *n == full)
            .map(|(s, _, _)| *s)
    }
    /// Every name, for messages: "SIGTERM, SIGINT, …".
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|(_, n, _)| *n).collect();
        names.join(", ")
    }
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _, _)| *s == self)
            .map(|(_, n, _)| *n)
            .unwrap_or("SIGTERM")
    }
    /// The Linux signal number.
    pub fn number(self) -> i32 {
        Self::ALL
            .iter()
            .find(|(s, _, _)| *s == self)
            .map(|(_, _, n)| *n)
            .unwrap_or(15)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopSpec {
    pub signal: StopSignal,
    /// After this long the whole group / cgroup gets SIGKILL.
    pub timeout: Duration,
}

impl Default for StopSpec {
    fn default() -> Self {
        Self {
            signal: StopSignal::Term,
            timeout: Duration::from_secs(10),
        }
    }
}

/// How readiness is established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadySpec {
    /// Ready as soon as the process is spawned.
    Started,
    /// sd_notify `READY=1` from a process of the service.
    Notify,
    /// The first successful probe.
    Probe,
    /// The file exists (removed before each spawn).
    File(PathBuf),
    /// s6 style: the service writes a newline on this fd.
    Fd(u32),
}

impl ReadySpec {
    /// How the status names it (`ready.via`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ReadySpec::Started => "started",
            ReadySpec::Notify => "notify",
            ReadySpec::Probe => "probe",
            ReadySpec::File(_) => "file",
            ReadySpec::Fd(_) => "fd",
        }
    }
}

/// Where an HTTP probe connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpTarget {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// What a probe does; every kind is request/response except `tcp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeCheck {
    /// GET `path`; ok when the status is `expect_status` (default 200–399) and the body
    /// contains `expect_body` (if set).
    Http {
        target: HttpTarget,
        path: String,
        expect_status: Option<u16>,
        expect_body: Option<String>,
    },
    /// Connect only: proves a listener, not a working handler.
    Tcp { host: String, port: u16 },
    /// Connect to a Unix socket; optionally send `send` and expect `expect` in the reply.
    Uds {
        socket: PathBuf,
        send: Option<String>,
        expect: Option<String>,
    },
    /// Run argv (own process group, killed at the timeout); ok on exit 0.
    Exec { argv: Vec<String> },
}

impl ProbeCheck {
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeCheck::Http { .. } => "http",
            ProbeCheck::Tcp { .. } => "tcp",
            ProbeCheck::Uds { .. } => "uds",
            ProbeCheck::Exec { .. } => "exec",
        }
    }
}

/// A probe and its schedule (Kubernetes defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub check: ProbeCheck,
    pub every: Duration,
    pub timeout: Duration,
    /// Consecutive failures that make the service unhealthy.
    pub failures: u32,
    /// Consecutive successes that make it healthy again.
    pub successes: u32,
    /// Wait this long after spawn before the first probe.
    pub start_delay: Duration,
    /// `max_inflight`: at most this many probes in flight to this probe's target at once
    /// (over all services probing it); default `[daemon] probe_max_inflight`.
    pub max_inflight: Option<u32>,
}

impl ProbeSpec {
    pub fn with_check(check: ProbeCheck) -> Self {
        Self {
            check,
            every: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            failures: 3,
            successes: 1,
            start_delay: Duration::ZERO,
            max_inflight: None,
        }
    }

    /// What the probe reaches, as a key shared by every service probing the same thing:
    /// `host:port` (http, tcp) or a socket path (http over a socket, uds); None for exec.
    pub fn target(&self) -> Option<String> {
        match &self.check {
            ProbeCheck::Http {
                target: HttpTarget::Tcp { host, port },
                ..
            }
            | ProbeCheck::Tcp { host, port } => Some(if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }),
            ProbeCheck::Http {
                target: HttpTarget::Unix(path),
                ..
            }
            | ProbeCheck::Uds { socket: path, .. } => Some(path.display().to_string()),
            ProbeCheck::Exec { .. } => None,
        }
    }
}

/// What happens when a running service turns unhealthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnUnhealthy {
    /// Restart it, with the service's backoff.
    Restart,
    /// Only show it (and record the event).
    Alert,
}

/// Resource limits applied at spawn.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct LimitsSpec {
    /// RLIMIT_NOFILE (soft and hard) for the service.
    pub nofile: Option<u64>,
    /// Percent of the fd limit at which the service is `degraded` (default 80).
    pub fd_warn: Option<f64>,
    /// Percent of the fd limit at which it is restarted (off by default).
    pub fd_restart: Option<f64>,
    /// RSS in bytes at which it is `degraded`.
    pub memory_warn: Option<u64>,
    /// RSS in bytes at which it is restarted.
    pub memory_restart: Option<u64>,
    /// cgroup v2 limits, written to the service's cgroup before each spawn.
    pub cgroup: CgroupLimits,
}

/// `limits = { memory_max, memory_high, pids_max, cpu_weight, cpu_max }`: what the kernel
/// enforces through the service's cgroup (cgroup v2 files of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CgroupLimits {
    /// Bytes; above it the kernel's OOM killer kills in the cgroup (`memory.max`).
    pub memory_max: Option<u64>,
    /// Bytes; above it the cgroup is throttled and reclaimed hard (`memory.high`).
    pub memory_high: Option<u64>,
    /// Processes and threads at most (`pids.max`).
    pub pids_max: Option<u64>,
    /// 1–10000, default 100: the share of CPU under contention (`cpu.weight`).
    pub cpu_weight: Option<u32>,
    /// (quota, period) in µs: at most `quota` of CPU time per `period` (`cpu.max`).
    pub cpu_max: Option<(u64, u64)>,
}

impl CgroupLimits {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The cgroup v2 controllers these limits need, and the files with their values.
    pub fn files(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut out = Vec::new();
        if let Some(b) = self.memory_max {
            out.push(("memory", "memory.max", b.to_string()));
        }
        if let Some(b) = self.memory_high {
            out.push(("memory", "memory.high", b.to_string()));
        }
        if let Some(n) = self.pids_max {
            out.push(("pids", "pids.max", n.to_string()));
        }
        if let Some(w) = self.cpu_weight {
            out.push(("cpu", "cpu.weight", w.to_string()));
        }
        if let Some((quota, period)) = self.cpu_max {
            out.push(("cpu", "cpu.max", format!("{quota} {period}")));
        }
        out
    }
}

/// Whom a process runs as: set in the child before exec (groups, then gid, then uid).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Credentials {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The supplementary groups (replacing the daemon's), when a user or groups are given.
    pub groups: Option<Vec<u32>>,
}

impl LimitsSpec {
    pub const DEFAULT_FD_WARN: f64 = 80.0;
    pub fn fd_warn_pct(&self) -> f64 {
        self.fd_warn.unwrap_or(Self::DEFAULT_FD_WARN)
    }
}

/// `logs = { rate, burst, max_bytes }`: how much of a service's output is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogsSpec {
    /// Lines per second (both streams together); 0: no limit.
    pub rate: u32,
    /// Lines that may come at once above the rate.
    pub burst: u32,
    /// The service's lines on disk, at most (oldest removed first).
    pub max_bytes: u64,
}

impl Default for LogsSpec {
    fn default() -> Self {
        Self {
            rate: 1000,
            burst: 5000,
            max_bytes: 64 << 20,
        }
    }
}

/// One `env_file` entry: its path (resolved against the config's directory) and whether it may
/// be missing (written `-/path`, as in systemd).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFile {
    pub path: PathBuf,
    pub optional: bool,
}

/// One `[service.NAME]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSpec {
    pub name: ServiceName,
    /// argv; `command[0]` is resolved against the config dir when it is a relative path with a
    /// `/`, and through `PATH` when it is a bare name.
    pub command: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    /// `env_file`: the files, as given (for messages and export)...
    pub env_files: Vec<EnvFile>,
    /// ...and what they set, read when the config is loaded (`env` wins over them).
    pub env_from_files: BTreeMap<String, String>,
    /// `inherit_env`: whether the service starts from the daemon's environment (default
    /// true, as runit, supervisord and PM2 do) or, like systemd, from a clean one with only
    /// PATH (and HOME/USER/LOGNAME/SHELL with `user`).
    pub inherit_env: bool,
    /// `user`: run as this account (its groups from the database, HOME/USER/LOGNAME/SHELL).
    pub user: Option<Account>,
    /// `group`: the primary group instead of the user's (name as written, gid).
    pub group: Option<(String, u32)>,
    /// `groups`: supplementary groups added to the user's.
    pub groups: Vec<(String, u32)>,
    /// `umask`; default the daemon's service umask (0022).
    pub umask: Option<u32>,
    pub after: Vec<ServiceName>,
    pub restart: RestartPolicy,
    pub backoff: BackoffSpec,
    pub stop: StopSpec,
    pub ready: ReadySpec,
    /// A service not ready this long after spawn is stopped and `failed`.
    pub ready_timeout: Option<Duration>,
    /// sd_notify watchdog: a `WATCHDOG=1` must come at least this often.
    pub watchdog: Option<Duration>,
    pub probe: Option<ProbeSpec>,
    pub on_unhealthy: OnUnhealthy,
    /// `restart_budget = false`: this service's health restarts are never held, neither by
    /// the daemon's restart budget nor by a shared cause (default true).
    pub restart_budget: bool,
    /// Unix sockets that must exist and accept while the service runs (the activated ones
    /// among them).
    pub sockets: Vec<PathBuf>,
    /// Sockets Candor makes, listens on and hands to every run as fd 3.. (socket activation).
    pub activated: Vec<Listen>,
    pub limits: LimitsSpec,
    pub logs: LogsSpec,
    /// `main = true`: when this service ends for good, Candor stops the others and exits
    /// with its exit code (a container's init). At most one.
    pub main: bool,
    /// `candor reload NAME`: this signal to the main process (default SIGHUP)...
    pub reload_signal: StopSignal,
    /// ...or this command, run with the service's env and workdir, instead.
    pub reload: Option<Vec<String>>,
    /// Where the section was defined, `file:line:col`, for messages.
    pub defined_at: String,
    /// `replicas = N`: runs as instances `NAME@1`…`NAME@N` (None: one run under its own name).
    pub replicas: Option<u32>,
    /// `update`: how a change or a restart replaces its runs.
    pub update: UpdateSpec,
    /// For an instance: its group and index.
    pub instance: Option<InstanceOf>,
    /// For a replicated service: what its other instances are parsed from...
    pub template: Option<Template>,
    /// ...and those parsed at load: instances `1..=replicas + update.max_surge`, in order.
    pub replica_specs: Vec<std::sync::Arc<ServiceSpec>>,
    /// `type`: long-running (default) or a oneshot.
    pub kind: ServiceKind,
    /// `condition = [argv]`: run before each start; exit 0 goes on, 1-254 skips the start
    /// (`skipped`), 255 or a signal fails it.
    pub condition: Option<Vec<String>>,
    /// `timeout`: a oneshot's run that lasts longer is stopped and `failed`.
    pub timeout: Option<Duration>,
    /// `retries`: restarts allowed after a failed run before it stays `failed` (a oneshot:
    /// per trigger; a long-running service: quick exits in a row); None: no limit.
    pub retries: Option<u32>,
    /// `schedule`: when a oneshot runs, or a long-running service is restarted.
    pub schedule: Option<ScheduleSpec>,
}

impl ServiceSpec {
    /// Declared sockets the service makes itself (not the ones Candor listens on for it).
    pub fn own_sockets(&self) -> Vec<PathBuf> {
        self.sockets
            .iter()
            .filter(|p| {
                !self
                    .activated
                    .iter()
                    .any(|l| matches!(&l.addr, ListenAddr::Unix { path, .. } if path == *p))
            })
            .cloned()
            .collect()
    }

    /// The variables a spawn sets over the inherited (or clean) environment, later ones
    /// winning: PATH when the environment is clean; HOME, USER, LOGNAME and SHELL of `user`;
    /// the `env_file`s; `env`.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !self.inherit_env {
            out.push(("PATH".to_string(), CLEAN_PATH.to_string()));
        }
        if let Some(u) = &self.user {
            out.push(("HOME".into(), u.home.display().to_string()));
            out.push(("USER".into(), u.login.clone()));
            out.push(("LOGNAME".into(), u.login.clone()));
            out.push(("SHELL".into(), u.shell.clone()));
        }
        for (k, v) in self.env_from_files.iter().chain(&self.env) {
            out.retain(|(ok, _)| ok != k);
            out.push((k.clone(), v.clone()));
        }
        out
    }

    /// Whom the service (and its exec probes and reload command) runs as; None: as the
    /// daemon.
    pub fn credentials(&self) -> Option<Credentials> {
        if self.user.is_none() && self.group.is_none() && self.groups.is_empty() {
            return None;
        }
        let gid = self
            .group
            .as_ref()
            .map(|(_, g)| *g)
            .or(self.user.as_ref().map(|u| u.gid));
        let groups = match (&self.user, self.groups.is_empty()) {
            (None, true) => None,
            (user, _) => {
                let mut all: Vec<u32> = user.as_ref().map(|u| u.groups.clone()).unwrap_or_default();
                all.extend(self.groups.iter().map(|(_, g)| *g));
                all.extend(gid);
                all.sort_unstable();
                all.dedup();
                Some(all)
            }
        };
        Some(Credentials {
            uid: self.user.as_ref().map(|u| u.uid),
            gid,
            groups,
        })
    }

    /// Whether the service is told where to send sd_notify messages.
    pub fn uses_notify(&self) -> bool {
        self.ready == ReadySpec::Notify || self.watchdog.is_some()
    }

    /// A service with defaults everywhere, for tests and tools.
    pub fn with_command(name: &str, command: &[&str]) -> Self {
        Self {
            name: ServiceName::new(name).expect("valid test name"),
            command: command.iter().map(|s| s.to_string()).collect(),
            workdir: None,
            env: BTreeMap::new(),
            env_files: Vec::new(),
            env_from_files: BTreeMap::new(),
            inherit_env: true,
            user: None,
            group: None,
            groups: Vec::new(),
            umask: None,
            after: Vec::new(),
            restart: RestartPolicy::Always,
            backoff: BackoffSpec::default(),
            stop: StopSpec::default(),
            ready: ReadySpec::Started,
            ready_timeout: None,
            watchdog: None,
            probe: None,
            on_unhealthy: OnUnhealthy::Restart,
            restart_budget: true,
            sockets: Vec::new(),
            activated: Vec::new(),
            limits: LimitsSpec::default(),
            logs: LogsSpec::default(),
            main: false,
            reload_signal: StopSignal::Hup,
            reload: None,
            defined_at: String::new(),
            replicas: None,
            update: UpdateSpec::default(),
            instance: None,
            template: None,
            replica_specs: Vec::new(),
            kind: ServiceKind::Simple,
            condition: None,
            timeout: None,
            retries: None,
            schedule: None,
        }
    }
}

/// Resolve `p` against `base` unless it is absolute, and drop `.` and `..` components
/// lexically (no symlinks are followed), so paths read as people expect in messages.
pub(crate) fn resolve(base: &Path, p: &str) -> PathBuf {
    use std::path::Component;
    let p = Path::new(p);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_hosts_are_bare_dns_names_parsed_with_their_position() {
        assert_eq!(
            web_host_name("Dash.Example.org"),
            Ok("dash.example.org".into())
        );
        for bad in ["", "a:80", "http://a", "a..b", "-a", "a b", "é.org"] {
            assert!(web_host_name(bad).is_err(), "{bad}");
        }
        let dir = Path::new("/srv");
        let spec = parse_str(
            &dir.join("candor.toml"),
            "[daemon]\nweb = { listen = \"127.0.0.1:9631\", hosts = [\"Dash.example.org\"] }\n",
        )
        .unwrap();
        assert_eq!(spec.daemon.web.unwrap().hosts, ["dash.example.org"]);
        let err = parse_str(
            &dir.join("candor.toml"),
            "[daemon]\nweb = { listen = \"127.0.0.1:9631\", hosts = [\"ok.org\", \"x.org:80\"] }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("candor.toml:2:")
                && err.contains("daemon.web.hosts: \"x.org:80\" must be a bare host name"),
            "{err}"
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_dir_without_dot_components() {
        let base = Path::new("/srv/app/examples");
        assert_eq!(
            resolve(base, "../.candor/rpc.sock"),
            PathBuf::from("/srv/app/.candor/rpc.sock")
        );
        assert_eq!(
            resolve(base, "./x/./y"),
            PathBuf::from("/srv/app/examples/x/y")
        );
        assert_eq!(resolve(base, "/abs/../path"), PathBuf::from("/path"));
    }
}
