//! Log forwarding in the config: `[[daemon.forward]]`, each entry one target (syslog,
//! journald or OTLP/HTTP) for the lines of `services` (default all). Types only here; their
//! keys are read in `parse/forward.rs`.

use std::time::Duration;

/// One `[[daemon.forward]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Where in the config it was written (`file:line`), to name it in errors and status.
    pub at: String,
    pub target: ForwardTarget,
    /// Whose lines go: service names (a replicated service's name covers its instances);
    /// empty: every service's.
    pub services: Vec<String>,
    /// Lines read from the store and not yet accepted by the target, at most (bytes);
    /// `buffer = "4MiB"` by default.
    pub buffer: u64,
    /// After an outage (or a daemon restart), lines older than this are not sent (they are
    /// counted as dropped); `catch_up = "5m"` by default, `"0s"`: only new lines.
    pub catch_up: Duration,
}

/// RFC 5424's facility names, by number (`facility = "local3"` is 19).
pub const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Default `buffer`.
pub const DEFAULT_FORWARD_BUFFER: u64 = 4 << 20;
/// Default `catch_up`.
pub const DEFAULT_FORWARD_CATCH_UP: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardTarget {
    Syslog(SyslogTarget),
    /// `journald = true` (the socket `/run/systemd/journal/socket`) or `journald = "PATH"`.
    Journald {
        socket: std::path::PathBuf,
    },
    Otlp(OtlpTarget),
}

impl ForwardTarget {
    /// "syslog", "journald" or "otlp".
    pub fn kind(&self) -> &'static str {
        match self {
            ForwardTarget::Syslog(_) => "syslog",
            ForwardTarget::Journald { .. } => "journald",
            ForwardTarget::Otlp(_) => "otlp",
        }
    }
}

/// `syslog = "unix:///dev/log" | "udp://HOST:514" | "tcp://HOST:601"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogTarget {
    pub address: SyslogAddress,
    /// `format = "rfc5424"` or `"bsd"` (RFC 3164); by default `bsd` over a unix socket (what
    /// syslog(3) writes to /dev/log and its readers parse), `rfc5424` over udp and tcp.
    pub format: SyslogFormat,
    /// `facility = "daemon"` by default (any of RFC 5424's names: `user`, `local0`…`local7`, …),
    /// as its number 0-23.
    pub facility: u8,
    /// `app_name`: the APP-NAME / TAG; by default the service's name.
    pub app_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyslogAddress {
    /// A datagram socket (`/dev/log`, rsyslog's imuxsock).
    Unix(std::path::PathBuf),
    /// `udp://HOST:PORT`, one datagram a message (RFC 5426).
    Udp(String),
    /// `tcp://HOST:PORT`, octet-counted frames (RFC 6587).
    Tcp(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyslogFormat {
    #[default]
    Rfc5424,
    /// RFC 3164, what older relays and `/dev/log` readers expect.
    Bsd,
}

/// `otlp = "http://HOST:4318"`: OTLP/HTTP (protobuf) to `<url>/v1/logs`.
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpTarget {
    /// The collector's base URL, `http://host:port` (a path prefix allowed).
    pub url: String,
    /// `headers = { ... }`: sent with every request (an API key); values are never printed.
    pub headers: Vec<(String, String)>,
    /// `metrics = true`: the services' metrics too, to `<url>/v1/metrics`, every `interval`.
    pub metrics: bool,
}

/// Header values are secrets (API keys): never printed.
impl std::fmt::Debug for OtlpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("OtlpTarget")
            .field("url", &self.url)
            .field("headers", &names)
            .field("metrics", &self.metrics)
            .finish()
    }
}
