//! Jobs and hooks in the config: `type = "oneshot"`, `condition`, `timeout`, `retries`,
//! `schedule = { cron, timezone, catch_up, overlap } | { every, jitter }`, and
//! `[[daemon.hooks]]`. Types only here; their keys are read in `parse.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

/// `type`: a long-running service (default) or a oneshot that runs to completion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceKind {
    /// `type = "simple"`: runs until stopped.
    #[default]
    Simple,
    /// `type = "oneshot"`: runs to completion; exit 0 is `done`, anything else `failed`.
    Oneshot,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Simple => "simple",
            ServiceKind::Oneshot => "oneshot",
        }
    }
}

/// `schedule = { ... }`: when a oneshot runs (or a long-running service is restarted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub when: When,
    /// `catch_up`: what a start does about fires missed while the daemon (or the machine)
    /// was down.
    pub catch_up: CatchUp,
    /// `overlap`: what a fire does while the previous run is still going.
    pub overlap: Overlap,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// `cron = "0 3 * * *"` (five fields, or six with seconds first), in `timezone` (an IANA
    /// name, default "UTC"; validated at load).
    Cron { expr: String, timezone: String },
    /// `every = "15m"`: on the job's own phase of the period (from its name, so a thousand
    /// jobs with the same period do not fire together), plus up to `jitter` more per fire.
    Every { every: Duration, jitter: Duration },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CatchUp {
    /// `catch_up = "none"` (default): a fire missed while down is not made up.
    #[default]
    None,
    /// `catch_up = "once"`: one run at start when any fire was missed (systemd's
    /// `Persistent=true`).
    Once,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overlap {
    /// `overlap = "skip"` (default): the fire is skipped and said so.
    #[default]
    Skip,
    /// `overlap = "queue"`: one run waits for the current one to end (at most one waits).
    Queue,
    /// `overlap = "kill-previous"`: the current run is stopped, then the new one starts.
    KillPrevious,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::KillPrevious => "kill-previous",
        }
    }
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Once => "once",
        }
    }
}

/// `[[daemon.hooks]]`: tell someone when something happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookSpec {
    /// `on`: the events that trigger it.
    pub on: Vec<HookEvent>,
    /// `services`: only these (names of services or replicated groups); empty: all.
    pub services: Vec<String>,
    pub target: HookTarget,
    /// `timeout`: one attempt at most this long (default 10s).
    pub timeout: Duration,
    /// `retries`: attempts after the first failed one (default 3), with capped backoff.
    pub retries: u32,
    /// Where it was defined, `file:line:col`, for messages.
    pub defined_at: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookEvent {
    /// A service became `failed`.
    Failed,
    /// A service became `unhealthy`.
    Unhealthy,
    /// A service that was failed, unhealthy or in backoff is running again.
    Recovered,
    /// A oneshot's run failed.
    JobFailed,
    /// A oneshot's run completed (`done`).
    JobDone,
}

impl HookEvent {
    pub const ALL: [HookEvent; 5] = [
        HookEvent::Failed,
        HookEvent::Unhealthy,
        HookEvent::Recovered,
        HookEvent::JobFailed,
        HookEvent::JobDone,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Failed => "failed",
            HookEvent::Unhealthy => "unhealthy",
            HookEvent::Recovered => "recovered",
            HookEvent::JobFailed => "job_failed",
            HookEvent::JobDone => "job_done",
        }
    }
}

/// Its `Debug` shows header names and the url's host, never a header's value or the url's
/// path (both often hold the receiver's token): a spec printed whole leaks no secret.
#[derive(Clone, PartialEq, Eq)]
pub enum HookTarget {
    /// `exec = [...]`: run as the daemon's user like an exec probe, the event as JSON on
    /// stdin and in `CANDOR_EVENT_*` variables.
    Exec(Vec<String>),
    /// `webhook = { url = "http://…", headers = {…}, format = "json" | "slack" }`: an HTTP
    /// POST of the event. Header values may be secrets: never printed.
    Webhook {
        url: String,
        headers: BTreeMap<String, String>,
        format: HookFormat,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HookFormat {
    /// The event's JSON.
    #[default]
    Json,
    /// `{"text": "…"}`: Slack's incoming webhooks, and Discord's and Mattermost's
    /// Slack-compatible ones.
    Slack,
}

impl HookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            HookFormat::Json => "json",
            HookFormat::Slack => "slack",
        }
    }
}

/// `http://host:port/…`: a webhook's url without its path (which may hold a token).
pub fn url_host_only(url: &str) -> String {
    let host_end = url
        .strip_prefix("http://")
        .and_then(|rest| rest.find(['/', '?']))
        .map_or(url.len(), |i| i + "http://".len());
    if host_end < url.len() {
        format!("{}/…", &url[..host_end])
    } else {
        url.to_string()
    }
}

impl std::fmt::Debug for HookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookTarget::Exec(argv) => f.debug_tuple("Exec").field(argv).finish(),
            HookTarget::Webhook {
                url,
                headers,
                format,
            } => {
                let names: Vec<&String> = headers.keys().collect();
                f.debug_struct("Webhook")
                    .field("url", &url_host_only(url))
                    .field("headers", &names)
                    .field("format", format)
                    .finish()
            }
        }
    }
}
