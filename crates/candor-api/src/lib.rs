//! The wire types of Candor's REST/JSON API over its Unix socket. The daemon serializes them,
//! the CLI (and later the UI) deserializes them; nothing else defines what goes on the wire.
//! Fields may be added, never renamed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// RFC 3339 UTC with seconds, e.g. `2026-11-23T18:00:00Z`.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// RFC 3339 UTC with milliseconds, for log lines and events.
pub fn timestamp_ms(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A `since` parameter: a duration back from `now` (`10m`, `1h30m`, `500ms`; the config's
/// grammar, [`candor_spec::parse_duration`]) or a UTC time (`2026-11-23T18:00:00Z`,
/// `2026-11-23 18:00:00`, fractions allowed).
pub fn parse_since(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    let s = s.trim();
    if let Ok(d) = candor_spec::parse_duration(s) {
        return Ok(now.checked_sub(d).unwrap_or(UNIX_EPOCH));
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| {
        format!("`{s}` is neither a duration (10m, 2h) nor a UTC time (2026-11-23T18:00:00Z)")
    })
}

pub fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One service, as `GET /v1/services/{name}` and `candor status NAME --json` show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    pub name: String,
    pub state: String,
    pub reason: String,
    pub since: String,
    pub pid: Option<u32>,
    pub uptime_s: Option<f64>,
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    pub ready: Option<Ready>,
    pub probes: Vec<ProbeResult>,
    pub sockets: Vec<SocketCheck>,
    pub fds: Option<Fds>,
    pub rss_bytes: Option<u64>,
    pub logs: LogCounts,
    /// How many times this daemon spawned the service (automatic and requested).
    pub runs: u64,
    /// When a restart is scheduled (state `backoff`).
    pub next_start: Option<String>,
    /// The service's own words, from sd_notify `STATUS=`.
    pub status_text: Option<String>,
    /// Its probes fail together with those of many services probing the same target.
    #[serde(default)]
    pub shared_cause: Option<SharedCause>,
    /// Unhealthy, but its restart is held: "shared cause" or "restart budget".
    #[serde(default)]
    pub restart_held: Option<String>,
    /// An instance of a replicated service (`api@2`): its group (`api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A replicated service's own row: its instances and any rollout. Its `state` and
    /// `reason` are the group's (`running`, "3/3 running"; `degraded`, "rollout halted at
    /// api@2: …").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Replicas>,
}

/// A replicated service: how many instances it should have and has, and its rollout.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Replicas {
    /// Instances it runs now (`replicas` in the config, or `candor scale`).
    pub wanted: u32,
    /// `replicas` in the config.
    pub configured: u32,
    /// Instances `running` (ready, not being stopped).
    pub running: u32,
    /// Its instances now, spares of a rollout included, in index order.
    pub instances: Vec<String>,
    /// `update.strategy`: rolling, overlap or stop-first.
    pub strategy: String,
    /// The config generation its instances should run: 1 at start, one more per change
    /// applied (reload, restart, undo).
    pub generation: u64,
    /// The rollout under way or halted, if any.
    pub rollout: Option<Rollout>,
}

/// A rollout: instances being moved from one config generation to the next.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Rollout {
    pub service: String,
    /// "rolling" (under way), "halted" or "done".
    pub state: String,
    pub strategy: String,
    pub from_generation: u64,
    pub to_generation: u64,
    /// What it is for: "env.VERSION changed", "restart requested", "undo".
    pub why: String,
    /// Instances `1..=wanted` already on the new generation and ready.
    pub updated: u32,
    pub total: u32,
    pub started: String,
    /// Why it halted, in one sentence that names the instance and the way back.
    pub halted: Option<String>,
    /// Every instance with the generation it runs and its state.
    pub instances: Vec<RolloutInstance>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RolloutInstance {
    pub name: String,
    pub generation: u64,
    pub state: String,
    /// A spare instance, started beyond `wanted` for the rollout and removed at its end.
    pub spare: bool,
}

/// `candor reload --plan`: what a reload would do to each service, and why; nothing changed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ReloadPlan {
    pub services: Vec<PlanItem>,
    /// Things a reload would not apply live (e.g. `[daemon]` changes).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PlanItem {
    pub service: String,
    /// unchanged | start | stop | restart | rolling | overlap | scale | apply (applied live,
    /// no restart).
    pub action: String,
    /// What changed (`env.RUST_LOG changed`, `new`, `removed`).
    pub why: String,
    /// The whole line: `api: rolling restart of 3 instances (env.RUST_LOG changed)`.
    pub text: String,
    /// It would stop every instance of the service at once.
    pub all_at_once: bool,
}

/// A cause many services share: their probes of one target fail together.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SharedCause {
    /// `host:port` or a socket path.
    pub target: String,
    /// Services whose probes of it fail.
    pub services: u32,
    pub since: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LastExit {
    /// "exited with code 1", "killed by SIGKILL", or "ended while the supervisor was down;
    /// exit status unknown".
    #[serde(default)]
    pub description: String,
    pub code: Option<i32>,
    /// Signal name, e.g. "SIGKILL", when the process was killed by a signal.
    pub signal: Option<String>,
    pub at: String,
    /// How long that run lasted.
    pub uptime_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Ready {
    pub via: String,
    pub at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeResult {
    pub kind: String,
    pub ok: bool,
    pub detail: String,
    pub latency_ms: f64,
    pub at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SocketCheck {
    pub path: String,
    pub exists: bool,
    pub accepts: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Fds {
    pub count: u64,
    pub limit: u64,
    pub pct: f64,
    pub per_hour: Option<f64>,
    pub eta_s: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LogCounts {
    /// Lines kept.
    pub lines: u64,
    /// Lines lost: over the service's rate limit, or the store was behind (each gap is marked
    /// in the log by a `-- suppressed N lines … --` / `-- dropped N lines … --` line).
    pub dropped: u64,
    /// Identical consecutive lines folded into `-- previous line repeated N times --`.
    #[serde(default)]
    pub folded: u64,
}

/// `GET /v1/daemon`: the supervisor itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DaemonInfo {
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    pub config: String,
    pub state_dir: String,
    pub socket: String,
    /// "cgroup" or "process-group".
    pub containment: String,
    /// One sentence: where the cgroups are, or why only process groups are used.
    pub containment_detail: String,
    pub services: usize,
    /// Kept for older clients: `lines` = log lines and `dropped` = events the store's queue
    /// could not take. `store` has the whole picture.
    pub store_dropped: LogCounts,
    #[serde(default)]
    pub store: StoreInfo,
    pub notify: NotifyStats,
    /// The daemon's own fds and memory, sampled like a service's.
    pub resources: DaemonResources,
    /// Names this daemon's life: a new one after every start, also after an upgrade (which
    /// keeps the pid).
    #[serde(default)]
    pub incarnation: String,
    /// Runs of an earlier daemon taken over at start.
    #[serde(default)]
    pub adopted: usize,
    /// Set after `candor upgrade`: "pid P, version V" of the daemon that handed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgraded_from: Option<String>,
    /// Set when an upgrade failed and this (old) binary took over again: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_error: Option<String>,
    /// Panics caught in the daemon's own tasks (each task was started again).
    #[serde(default)]
    pub faults: Faults,
    /// Who can reach the daemon and with which role (None from a daemon that predates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    /// Shared causes now, one per target: `services` counts the services whose status names
    /// it, `since` is the earliest of theirs. Empty when there is none.
    #[serde(default)]
    pub shared_causes: Vec<SharedCause>,
    /// `[[daemon.hooks]]` deliveries since the daemon started.
    #[serde(default)]
    pub hooks: HookStats,
    /// `[[daemon.forward]]` targets, in the order configured, since the daemon started.
    #[serde(default)]
    pub forward: Vec<ForwardStats>,
}

/// One log forwarding target: what it was sent and what it never got.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ForwardStats {
    /// "syslog", "journald" or "otlp".
    pub kind: String,
    /// Where the lines go (`udp://127.0.0.1:514`, a socket path, a URL without its path).
    pub target: String,
    /// Where it is configured (`candor.toml:40`).
    pub at: String,
    /// Lines the target accepted.
    pub sent: u64,
    /// Lines sent again after a failed attempt (each attempt counts).
    pub retried: u64,
    /// Lines it will never get: older than `catch_up` when it came back, or refused for good.
    pub dropped: u64,
    /// Line ids stored after its cursor (every service's, for a target with `services`): its lag,
    /// as of the last look.
    pub behind: u64,
    /// Why it is not taking lines now, in a sentence; `None` while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
    /// Since when it is down (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_since: Option<String>,
    /// An `otlp` target with `metrics = true`: the metrics requests it sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsExport>,
}

/// The services' metrics sent to an OTLP collector every 10 s.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MetricsExport {
    /// Requests the collector took.
    pub sent: u64,
    /// Requests that failed (each is skipped; the next carries newer counters).
    pub failed: u64,
    /// Why the last one failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the hooks delivered: `sent` events, attempts that `failed` (each retry counts), events
/// `dropped` (queue full, or every attempt failed), and events `queued` now.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HookStats {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub queued: u64,
}

/// One run of a oneshot (`candor jobs`, `GET /v1/jobs`), as kept in its history (the last 50
/// per job, across daemon restarts).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct JobRun {
    /// The service's run id (0 for a start its condition skipped).
    pub run: u64,
    /// Why it ran: "schedule", "catch-up", "candor run", "start", "dependency", "retry",
    /// "config" (a reload), "boot".
    pub trigger: String,
    /// The schedule's fire time it ran for (unix ms), for "schedule" and "catch-up".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_ms: Option<i64>,
    /// When it was spawned (unix ms).
    pub started_ms: i64,
    /// When it ended (unix ms); None while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// "running", "done", "failed", "skipped".
    pub result: String,
    /// The exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// One sentence: "completed in 3.2s with exit 0", "condition exited 1: …", "ran longer
    /// than its timeout 10m; stopped".
    pub reason: String,
    /// Ids of its first and last log lines (`candor logs NAME --after-id`), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_ids: Option<(i64, i64)>,
}

/// Runs of a job per result since its history began (kept across daemon restarts).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct JobCounts {
    pub done: u64,
    pub failed: u64,
    pub skipped: u64,
}

/// A oneshot or scheduled service as `candor jobs` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub name: String,
    /// "oneshot", or "simple" for a long-running service with a schedule (a restart).
    pub kind: String,
    pub state: String,
    pub reason: String,
    /// The schedule in words ("cron 0 3 * * * (Europe/Berlin)", "every 15m, jitter 1m").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// When it fires next (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<JobRun>,
    /// The newest successful run's end (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_ms: Option<i64>,
    pub counts: JobCounts,
    /// Newest first.
    pub history: Vec<JobRun>,
}

/// `GET /v1/jobs`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Jobs {
    pub jobs: Vec<Job>,
}

/// Who can reach the daemon: the control socket's owner and root are admins, `socket_group`
/// members operators, and dashboard tokens operator or read-only.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Access {
    /// The daemon's uid: the control socket's owner (it and root are admins).
    pub control_uid: u32,
    /// The control socket's mode, e.g. "0600" (owner only) or "0660" (`socket_group` too).
    pub socket_mode: String,
    /// `[daemon] socket_group`: its members are operators.
    pub operators: Option<Group>,
    /// `[daemon] operators_may_shutdown`.
    pub operators_may_shutdown: bool,
    /// Where the dashboard listens, when it is open.
    pub dashboard: Option<String>,
    /// Dashboard tokens that exist: the operator one (made when the dashboard first opens)
    /// and the read-only one (made by the first `candor web --read-only`).
    pub dashboard_tokens: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

/// Panics caught in the daemon's own tasks since it started.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Faults {
    pub count: u64,
    /// The latest few, oldest first.
    pub recent: Vec<Fault>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    /// "log reader of web stdout", "probe loop of api", "keeper", "API request GET /v1/…".
    pub task: String,
    pub message: String,
    pub at: String,
}

/// `POST /v1/upgrade`: hand every service to another binary (default: the candor binary now
/// at the daemon's own path).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    #[serde(default)]
    pub binary: Option<String>,
}

/// The answer to `POST /v1/services/{name}/reload` and `.../kill`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SignalOutcome {
    pub service: String,
    /// What was done: "SIGHUP to pid 812", "SIGTERM to every process of the run (3)",
    /// "ran nginx -s reload: exited with code 0".
    pub sent: String,
    /// With `ready = "notify"`, for a reload: whether RELOADING=1 then READY=1 came.
    pub reloaded: Option<bool>,
    /// One sentence: what happened.
    pub outcome: String,
}

/// The answer to `POST /v1/web`: the dashboard's address, open now.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WebInfo {
    /// The URL to open, with the login token (`?token=`); the page then keeps it in a cookie.
    pub url: String,
    /// Where the web listener listens.
    pub listen: String,
    pub token: String,
    /// Whether `GET /metrics` is served without the token there.
    pub metrics_public: bool,
    /// The token (and so the URL) is the read-only one.
    #[serde(default)]
    pub read_only: bool,
}

/// `POST /v1/web`: which dashboard token to hand out (no body: the operator one).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebRequest {
    /// The read-only token (`candor web --read-only`): its holder may only read.
    #[serde(default)]
    pub read_only: bool,
}

/// The answer to `POST /v1/upgrade` (202): the new binary passed its check and the daemon is
/// handing over; the new one answers on the same socket once it has taken every service.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UpgradeStarted {
    pub binary: String,
    pub old_pid: u32,
    pub old_version: String,
    pub old_incarnation: String,
}

/// The log store: what it holds against its cap, and what it could not keep.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StoreInfo {
    pub path: String,
    /// Log lines held, in bytes (with their per-chunk overhead).
    pub log_bytes: u64,
    /// `[daemon] logs.max_bytes`: the cap on all services' lines together.
    pub log_cap_bytes: u64,
    pub file_bytes: u64,
    pub wal_bytes: u64,
    /// Lines lost because the writer was behind (the queue was full).
    pub dropped_lines: u64,
    pub dropped_events: u64,
    /// Lines removed, oldest first, to stay within the caps.
    pub trimmed_lines: u64,
    /// The database could not be opened at start and was moved aside: what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DaemonResources {
    pub fds: u64,
    pub fd_limit: u64,
    pub fd_pct: f64,
    pub rss_bytes: u64,
    /// API connections refused on either listener: the daemon above 80 % of its fd limit
    /// (95 % for the control socket's owner), or the listener's cap reached
    /// (`connections.*.refused` says which listener).
    pub refused_connections: u64,
    /// Accept errors (EMFILE/ENFILE and others) on the control socket.
    pub accept_errors: u64,
    /// API connections closed because their client read nothing for `[daemon] send_timeout`.
    #[serde(default)]
    pub cut_off_connections: u64,
    /// Each listener's connections now.
    #[serde(default)]
    pub connections: Connections,
}

/// The control socket's and the dashboard's connections.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Connections {
    pub control: ListenerConnections,
    /// All zero while the dashboard's listener is not open.
    pub dashboard: ListenerConnections,
}

/// One listener's connections: open now, the cap on those that are not the owner's, and
/// what it refused or closed since the daemon started.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ListenerConnections {
    pub open: u64,
    /// Open connections counted against `cap`: on the control socket, those of users other
    /// than root and the daemon's (the owner has a reserve); on the dashboard, all.
    pub others: u64,
    pub cap: u64,
    /// Refused at accept: the cap reached, or the daemon near its fd limit.
    pub refused: u64,
    /// Closed because no whole request head came within 10 s of the accept or of the end
    /// of the previous answer.
    pub timed_out: u64,
}

/// The sd_notify socket's traffic: what was received and what was dropped, and why.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NotifyStats {
    pub socket: String,
    pub received: u64,
    /// Over 4096 bytes.
    pub dropped_oversized: u64,
    /// From a process that belongs to no running service.
    pub dropped_strangers: u64,
    /// Not looked up: from a process that is no live run's main process, past its uid's budget
    /// of lookups (100 a second, 200 at once).
    #[serde(default)]
    pub dropped_rate_limited: u64,
    /// From a run with more messages already waiting for the supervisor than it can use.
    #[serde(default)]
    pub dropped_overflow: u64,
    /// `WATCHDOG=1` folded into one of the same run's already waiting (not dropped: the
    /// watchdog is fed once either way).
    #[serde(default)]
    pub coalesced: u64,
}

/// `POST /v1/reset-failed`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ResetFailed {
    pub restarted: Vec<String>,
    pub left_alone: Vec<String>,
}

/// `POST /v1/reload`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ReloadOutcome {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Things the reload could not apply live (e.g. `[daemon]` changes need a restart).
    pub notes: Vec<String>,
}

/// Every non-2xx answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: String,
    /// Config errors, one per line `file:line:col: message`, for reload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// The service's status when a waited-for action did not reach its goal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<ServiceStatus>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    /// Increasing in arrival order across all services.
    #[serde(default)]
    pub id: i64,
    pub at: String,
    pub service: String,
    /// "stdout", "stderr", or "candor" for lines Candor wrote about the service's output.
    pub stream: String,
    /// The line as text; bytes that are not UTF-8 are shown as U+FFFD.
    pub line: String,
    /// The exact bytes, hex-encoded, when the line is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_hex: Option<String>,
    /// The level the line counts as: a structured line's own (JSON or logfmt `level` field),
    /// else stderr "warn", stdout "info", Candor's lines "notice". One of trace, debug, info,
    /// notice, warn, error, fatal (empty in answers of older daemons).
    #[serde(default)]
    pub level: String,
    /// A structured line's message field (`msg`/`message`), unescaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// A structured line's own time field (`time`/`ts`/`timestamp`/`@timestamp`), as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub at: String,
    pub service: String,
    pub state: String,
    pub reason: String,
    pub detail: serde_json::Value,
}

/// Actions on one service: `POST /v1/services/{name}/{action}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "start" => Some(Action::Start),
            "stop" => Some(Action::Stop),
            "restart" => Some(Action::Restart),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
        }
    }
}

/// A plain acknowledgement, e.g. of `POST /v1/shutdown`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Ack {
    pub ok: bool,
    pub message: String,
}

/// `Event::detail`: the evidence behind an event. Serialized without a tag; each kind has its
/// own fields.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum EventDetail {
    /// A request that changes something, with who asked: the kernel's credentials of the
    /// connection (SO_PEERCRED), not anything the client says.
    Request {
        request: String,
        uid: u32,
        pid: Option<i32>,
        /// For a request from the web dashboard: the browser's address (uid and pid are then
        /// the daemon's own: the token, not a uid, let it in).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// The caller's role: "admin", "operator" or "read-only".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
    },
    /// A panic caught in one of the daemon's own tasks, which was started again.
    Fault {
        task: String,
        message: String,
    },
    /// A change of derived state.
    State(StateDetail),
    /// The health evidence behind an unhealthy (or over-budget) verdict acted on.
    Health(HealthDetail),
    /// Processes of an earlier run found in the cgroup and killed before a spawn.
    Cleared {
        killed: usize,
    },
    /// A stop that needed SIGKILL.
    Escalated {
        cause: String,
    },
    /// A run of an earlier supervisor taken over after its restart (`alive`: its pid was
    /// found running with the start time recorded).
    Adopted {
        adopted_pid: u32,
        run: u64,
        alive: bool,
        /// What of the run differs from the config read by the daemon that adopted it
        /// (`command`, `env`, `user`, `workdir`, `limits`, `sockets`, `ready`, `watchdog`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changed: Vec<String>,
    },
    /// A service reported `MAINPID=`.
    MainPid {
        mainpid: u32,
    },
    /// A command the keeper did not take.
    Refused {
        command: String,
        error: String,
    },
    /// A follower fell behind and missed this many events.
    Skipped {
        skipped: u64,
    },
    /// A oneshot's run ended (done, failed) or its start was skipped; its history entry. The
    /// event's state is "done", "failed" or "skipped".
    Job {
        job: JobRun,
    },
    None {},
}

impl EventDetail {
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StateDetail {
    pub pid: Option<u32>,
    pub run: Option<u64>,
    pub restarts: u32,
    /// "exited with code 1", "killed by SIGKILL".
    pub last_exit: Option<String>,
    pub health: Option<HealthDetail>,
    /// With `backoff`: how long until the next start.
    pub restart_in_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HealthDetail {
    pub run: u64,
    pub probe: Option<ProbeDetail>,
    pub sockets: Vec<SocketCheck>,
    /// Why the watchdog counts as missed.
    pub watchdog: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeDetail {
    pub ok: bool,
    pub detail: String,
    pub latency_ms: f64,
    pub failures_in_a_row: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_back_from_now_or_utc_times() {
        let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let back = |s: &str| now.duration_since(parse_since(s, now).unwrap()).unwrap();
        assert_eq!(back("30s"), Duration::from_secs(30));
        assert_eq!(back("5m"), Duration::from_secs(300));
        assert_eq!(back("5min"), Duration::from_secs(300));
        assert_eq!(back("1h"), Duration::from_secs(3600));
        assert_eq!(back("1h30m"), Duration::from_secs(5400));
        assert_eq!(back("2h 37min"), Duration::from_secs(9420));
        assert_eq!(back("500ms"), Duration::from_millis(500));
        assert_eq!(back("2d"), Duration::from_secs(172_800));
        assert_eq!(back(" 10m "), Duration::from_secs(600));
        assert_eq!(back("0"), Duration::ZERO);
        assert_eq!(
            parse_since("2026-11-30T10:00:00Z", now).unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_796_032_800)
        );
        assert_eq!(
            parse_since("2026-11-30 10:00:00.5", now).unwrap(),
            UNIX_EPOCH + Duration::from_millis(1_796_032_800_500)
        );
    }

    #[test]
    fn since_rejects_what_is_neither() {
        for bad in ["10", "yesterday", "5 parsecs", "", "2026-13-40T10:00:00Z"] {
            let e = parse_since(bad, SystemTime::now()).unwrap_err();
            assert!(e.contains("neither a duration"), "{bad}: {e}");
        }
    }
}
