//! The keys of `[[daemon.forward]]`: one target each (`syslog`, `journald` or `otlp`) and what
//! it takes.

use std::path::PathBuf;

use super::{FileCtx, Val};
use crate::forward::{
    ForwardSpec, ForwardTarget, OtlpTarget, SyslogAddress, SyslogFormat, SyslogTarget,
    DEFAULT_FORWARD_BUFFER, DEFAULT_FORWARD_CATCH_UP, FACILITIES,
};
use toml::de::DeValue;

/// Where the native journal protocol is spoken.
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

const EXAMPLES: &str =
    "syslog = \"unix:///dev/log\", journald = true or otlp = \"http://127.0.0.1:4318\"";

impl FileCtx<'_> {
    pub(super) fn forwards(&mut self, v: &Val<'_>) -> Vec<ForwardSpec> {
        let DeValue::Array(items) = v.get_ref() else {
            self.err(
                v.span().start,
                "daemon.forward must be an array of tables: write each as [[daemon.forward]]",
            );
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.forward(item, &format!("daemon.forward[{i}]")))
            .collect()
    }

    fn forward(&mut self, v: &Val<'_>, what: &str) -> Option<ForwardSpec> {
        let t = self.table(v, what)?;
        let at = v.span().start;
        let errors_before = self.errors.len();
        let mut targets: Vec<(&str, ForwardTarget)> = Vec::new();
        let mut services = Vec::new();
        let mut buffer = DEFAULT_FORWARD_BUFFER;
        let mut catch_up = DEFAULT_FORWARD_CATCH_UP;
        let mut format = None;
        let mut facility = None;
        let mut app_name = None;
        let mut headers = None;
        let mut metrics = None;
        for (key, value) in t.iter() {
            let k = key.get_ref().as_ref();
            let w = format!("{what}.{k}");
            match_key!(self, key, what, k => {
                "syslog" => {
                    if let Some(address) = self.string(value, &w).and_then(|s| self.syslog_address(value.span().start, &s, &w)) {
                        targets.push(("syslog", ForwardTarget::Syslog(SyslogTarget { address, format: SyslogFormat::Rfc5424, facility: 3, app_name: None })));
                    }
                },
                "journald" => match value.get_ref() {
                    DeValue::Boolean(true) => targets.push(("journald", ForwardTarget::Journald { socket: PathBuf::from(JOURNALD_SOCKET) })),
                    DeValue::Boolean(false) => self.err(value.span().start, format!("{w} = false: remove this [[daemon.forward]] entry instead")),
                    DeValue::String(s) if s.starts_with('/') => targets.push(("journald", ForwardTarget::Journald { socket: PathBuf::from(s.as_ref()) })),
                    _ => self.err(value.span().start, format!("{w} must be true (the journal's socket {JOURNALD_SOCKET}) or the absolute path of a socket that speaks the journal's native protocol")),
                },
                "otlp" => {
                    if let Some(url) = self.string(value, &w) {
                        match super::jobs::check_url(&url) {
                            Ok(()) => targets.push(("otlp", ForwardTarget::Otlp(OtlpTarget { url: url.trim_end_matches('/').to_string(), headers: Vec::new(), metrics: false }))),
                            Err(why) => self.err(value.span().start, format!("{w} = \"{}\": {why}", crate::jobs::url_host_only(&url))),
                        }
                    }
                },
                "format" => {
                    if let Some(s) = self.string(value, &w) {
                        format = self.choice(value.span().start, &s, [SyslogFormat::Rfc5424, SyslogFormat::Bsd], |f| match f {
                            SyslogFormat::Rfc5424 => "rfc5424",
                            SyslogFormat::Bsd => "bsd",
                        }, &w, "a format", " (\"bsd\" is RFC 3164, for older relays)").map(|f| (f, value.span().start));
                    }
                },
                "facility" => {
                    if let Some(s) = self.string(value, &w) {
                        facility = self.choice(value.span().start, &s, FACILITIES, |f| f, &w, "a facility", "")
                            .and_then(|f| FACILITIES.iter().position(|x| *x == f))
                            .map(|n| (n as u8, value.span().start));
                    }
                },
                "app_name" => {
                    if let Some(s) = self.string(value, &w) {
                        if s.is_empty() || s.len() > 48 || !s.bytes().all(|b| b.is_ascii_graphic()) {
                            self.err(value.span().start, format!("{w} must be 1 to 48 printable ASCII characters without spaces (RFC 5424's APP-NAME)"));
                        } else {
                            app_name = Some((s, value.span().start));
                        }
                    }
                },
                "services" => {
                    services = self.string_list(value, &w).unwrap_or_default().into_iter().map(|(s, _)| s).collect();
                },
                "buffer" => {
                    if let Some(s) = self.string(value, &w) {
                        match crate::parse_size(&s) {
                            Ok(b) if b >= 64 * 1024 => buffer = b,
                            Ok(_) => self.err(value.span().start, format!("{w} must be at least 64KiB (a line may be 16KiB)")),
                            Err(e) => self.err(value.span().start, format!("{w}: {e}")),
                        }
                    }
                },
                "catch_up" => catch_up = self.duration(value, &w).unwrap_or(catch_up),
                "headers" => headers = Some((self.forward_headers(value, &w), value.span().start)),
                "metrics" => {
                    match value.get_ref() {
                        DeValue::Boolean(b) => metrics = Some((*b, value.span().start)),
                        other => self.err(value.span().start, format!("{w} must be true or false, found {}", other.type_str())),
                    }
                },
            })
        }
        let mut target = match targets.len() {
            1 => targets.pop().map(|(_, t)| t),
            0 => {
                if self.errors.len() == errors_before {
                    self.err(at, format!("{what} needs a target: {EXAMPLES}"));
                }
                None
            }
            _ => {
                let kinds: Vec<&str> = targets.iter().map(|(k, _)| *k).collect();
                self.err(
                    at,
                    format!(
                        "{what} has {} targets ({}); an entry sends to one: write one [[daemon.forward]] for each",
                        kinds.len(),
                        kinds.join(", ")
                    ),
                );
                None
            }
        };
        // Keys that belong to one kind of target.
        let kind = target.as_ref().map(ForwardTarget::kind);
        for (key, at, belongs) in [
            ("format", format.map(|f| f.1), "syslog"),
            ("facility", facility.map(|f| f.1), "syslog"),
            ("app_name", app_name.as_ref().map(|f| f.1), "syslog"),
            ("headers", headers.as_ref().map(|h| h.1), "otlp"),
            ("metrics", metrics.map(|m| m.1), "otlp"),
        ] {
            if let (Some(at), Some(kind)) = (at, kind) {
                if kind != belongs {
                    self.err(
                        at,
                        format!("{what}.{key} is for a {belongs} target, not {kind}; remove it"),
                    );
                }
            }
        }
        match &mut target {
            Some(ForwardTarget::Syslog(s)) => {
                // What syslog(3) writes to /dev/log, and what journald's and rsyslog's local
                // sockets parse by default; RFC 5424 where it leaves the machine.
                let default = match s.address {
                    SyslogAddress::Unix(_) => SyslogFormat::Bsd,
                    _ => SyslogFormat::Rfc5424,
                };
                s.format = format.map_or(default, |f| f.0);
                s.facility = facility.map_or(s.facility, |f| f.0);
                s.app_name = app_name.map(|a| a.0);
            }
            Some(ForwardTarget::Otlp(o)) => {
                o.headers = headers.map(|h| h.0).unwrap_or_default();
                o.metrics = metrics.is_some_and(|m| m.0);
            }
            _ => {}
        }
        let target = target?;
        (self.errors.len() == errors_before).then(|| ForwardSpec {
            at: self.pos(at),
            target,
            services,
            buffer,
            catch_up,
        })
    }

    /// `unix:///path`, `udp://host[:port]` (514), `tcp://host[:port]` (601).
    fn syslog_address(&mut self, at: usize, s: &str, what: &str) -> Option<SyslogAddress> {
        let example = "\"unix:///dev/log\", \"udp://127.0.0.1:514\" or \"tcp://127.0.0.1:601\"";
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                self.err(at, format!("{what} = \"{s}\": a unix socket's path must be absolute, e.g. unix:///dev/log"));
                return None;
            }
            return Some(SyslogAddress::Unix(PathBuf::from(path)));
        }
        let (scheme, rest, port) = if let Some(r) = s.strip_prefix("udp://") {
            ("udp", r, 514)
        } else if let Some(r) = s.strip_prefix("tcp://") {
            ("tcp", r, 601)
        } else {
            self.err(at, format!("{what} = \"{s}\": expected {example}"));
            return None;
        };
        let rest = rest.trim_end_matches('/');
        let has_port = match rest.rsplit_once(':') {
            Some((_, p)) if !rest.ends_with(']') => {
                if p.parse::<u16>().is_err() {
                    self.err(at, format!("{what} = \"{s}\": \"{p}\" is not a port"));
                    return None;
                }
                true
            }
            _ => false,
        };
        if rest.is_empty() || rest.contains(['/', '@', ' ']) {
            self.err(at, format!("{what} = \"{s}\": expected {example}"));
            return None;
        }
        let hostport = match has_port {
            true => rest.to_string(),
            false => format!("{rest}:{port}"),
        };
        Some(match scheme {
            "udp" => SyslogAddress::Udp(hostport),
            _ => SyslogAddress::Tcp(hostport),
        })
    }

    /// `headers = { "x-api-key" = "…" }`: a value is never put in a message.
    fn forward_headers(&mut self, v: &Val<'_>, what: &str) -> Vec<(String, String)> {
        let Some(t) = self.table(v, what) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, hv) in t.iter() {
            let name = name.get_ref().to_string();
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            match hv.get_ref() {
                _ if !valid => self.err(hv.span().start, format!("{what}: \"{name}\" is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")),
                DeValue::String(s) if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) => self.err(hv.span().start, format!("{what}.{name}: a header value may not contain a line break (its value is not shown)")),
                DeValue::String(s) => out.push((name, s.to_string())),
                other => self.err(hv.span().start, format!("{what}.{name} must be a string, found {}", other.type_str())),
            }
        }
        out
    }
}

/// `services` of a forward entry must name configured services.
pub(super) fn check_forwards(
    services: &std::collections::BTreeMap<crate::ServiceName, crate::ServiceSpec>,
    forwards: &[ForwardSpec],
    errors: &mut Vec<crate::SpecError>,
) {
    for f in forwards {
        super::jobs::unknown_services("daemon.forward", &f.services, &f.at, services, errors);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::forward::{ForwardTarget, SyslogAddress, SyslogFormat};

    fn parse(text: &str) -> Result<crate::Spec, String> {
        crate::parse_str(Path::new("/etc/candor/candor.toml"), text).map_err(|e| {
            e.0.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    const WEB: &str = "[service.web]\ncommand = [\"/bin/web\"]\n";

    #[test]
    fn the_contract_example_parses() {
        let s = parse(&format!(
            r#"
[[daemon.forward]]
syslog = "unix:///dev/log"
[[daemon.forward]]
syslog = "udp://logs.example:5514"
format = "bsd"
facility = "local3"
app_name = "shop"
services = ["web"]
buffer = "1MiB"
catch_up = "30s"
[[daemon.forward]]
syslog = "tcp://10.0.0.1"
[[daemon.forward]]
journald = true
[[daemon.forward]]
otlp = "http://127.0.0.1:4318/"
headers = {{ "x-api-key" = "sekret" }}
{WEB}"#
        ))
        .unwrap();
        let f = &s.daemon.forward;
        assert_eq!(f.len(), 5);
        assert_eq!(f[0].at, "/etc/candor/candor.toml:2:1");
        let ForwardTarget::Syslog(udp) = &f[1].target else {
            panic!("{:?}", f[1])
        };
        assert_eq!(udp.address, SyslogAddress::Udp("logs.example:5514".into()));
        assert_eq!((udp.format, udp.facility), (SyslogFormat::Bsd, 19));
        assert_eq!(udp.app_name.as_deref(), Some("shop"));
        assert_eq!(f[1].services, ["web"]);
        assert_eq!(
            (f[1].buffer, f[1].catch_up),
            (1 << 20, Duration::from_secs(30))
        );
        let ForwardTarget::Syslog(tcp) = &f[2].target else {
            panic!()
        };
        assert_eq!(tcp.address, SyslogAddress::Tcp("10.0.0.1:601".into()));
        assert_eq!(tcp.facility, 3, "daemon by default");
        assert_eq!(
            tcp.format,
            SyslogFormat::Rfc5424,
            "RFC 5424 over the network"
        );
        let ForwardTarget::Syslog(unix) = &f[0].target else {
            panic!()
        };
        assert_eq!(
            unix.format,
            SyslogFormat::Bsd,
            "what /dev/log's readers parse"
        );
        assert_eq!(
            f[3].target,
            ForwardTarget::Journald {
                socket: "/run/systemd/journal/socket".into()
            }
        );
        let ForwardTarget::Otlp(o) = &f[4].target else {
            panic!()
        };
        assert_eq!(o.url, "http://127.0.0.1:4318");
        assert!(
            !format!("{o:?}").contains("sekret"),
            "a header's value is never printed"
        );
        assert_eq!(f[4].catch_up, Duration::from_secs(300));
    }

    #[test]
    fn bad_entries_name_the_line_and_the_fix() {
        let cases = [
            ("[[daemon.forward]]\nservices = [\"web\"]\n", "daemon.forward[0] needs a target: syslog = \"unix:///dev/log\""),
            ("[[daemon.forward]]\njournald = true\notlp = \"http://h:4318\"\n", "has 2 targets (journald, otlp); an entry sends to one"),
            ("[[daemon.forward]]\nsyslog = \"udp://h:99999\"\n", "\"99999\" is not a port"),
            ("[[daemon.forward]]\nsyslog = \"/dev/log\"\n", "expected \"unix:///dev/log\""),
            ("[[daemon.forward]]\nsyslog = \"unix://dev/log\"\n", "must be absolute"),
            ("[[daemon.forward]]\nsyslog = \"unix:///dev/log\"\nfacility = \"local9\"\n", "daemon.forward[0].facility"),
            ("[[daemon.forward]]\njournald = true\nformat = \"bsd\"\n", "daemon.forward[0].format is for a syslog target, not journald; remove it"),
            ("[[daemon.forward]]\notlp = \"https://collector:4318\"\n", "relay on this host"),
            ("[[daemon.forward]]\notlp = \"http://c:4318\"\nheaders = { \"bad header\" = \"sekret\" }\n", "is not an HTTP header name"),
            ("[[daemon.forward]]\njournald = false\n", "remove this [[daemon.forward]] entry"),
            ("[[daemon.forward]]\njournald = true\nservices = [\"wbe\"]\n", "services names `wbe`, which is not a configured service; did you mean `web`?"),
            ("[[daemon.forward]]\njournald = true\nbufer = \"1MiB\"\n", "did you mean `buffer`"),
            ("[[daemon.forward]]\njournald = true\nbuffer = \"1KiB\"\n", "at least 64KiB"),
        ];
        for (text, want) in cases {
            let err = parse(&format!("{text}{WEB}")).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains("candor.toml:"), "names the line: {err}");
            assert!(!err.contains("sekret"), "{err}");
        }
    }
}
