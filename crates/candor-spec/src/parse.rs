//! Walks the spanned TOML tree into a [`Spec`], collecting every error with its position.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{did_you_mean, line_col};
use crate::{
    graph, parse_duration, resolve, BackoffSpec, DaemonSpec, HttpTarget, LimitsSpec, Listen,
    ListenAddr, LogsSpec, OnUnhealthy, ProbeCheck, ProbeSpec, ReadySpec, RestartPolicy,
    ServiceName, ServiceSpec, Spec, SpecError, SpecErrors, StopSignal, StopSpec,
};

/// A `match` on a table's key whose arms are the only list of that table's keys: any other
/// key goes to `unknown_key`, with "did you mean" over exactly the keys of these arms in the
/// order written (then `else EXPR`, if given, e.g. `continue`). Adding an arm is all it takes
/// to add a key; the list and the match cannot diverge.
macro_rules! match_key {
    ($file:expr, $key:expr, $section:expr, $k:expr => {
        $($($name:literal)|+ => $arm:expr),+ $(,)?
    } $(else $unknown:expr)?) => {
        match $k {
            $($($name)|+ => $arm,)+
            _ => {
                $file.unknown_key($key, $section, &[$($($name),+),+]);
                $($unknown)?
            }
        }
    };
}

mod forward;
mod jobs;

/// A log cap below this would keep too few lines to be useful.
const MIN_LOG_BYTES: u64 = 64 * 1024;

/// `"a", "b" or "c"`.
fn quoted_or(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Load and validate `path` and everything it includes.
pub fn load(path: &Path) -> Result<Spec, SpecErrors> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let text = std::fs::read_to_string(&abs).map_err(|e| {
        SpecErrors(vec![SpecError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            message: format!("cannot read config: {e}"),
        }])
    })?;
    let mut reader = |p: &Path| std::fs::read_to_string(p);
    parse_with_includes(&abs, path, &text, &mut reader)
}

/// Parse a config from a string, as if it were the file `path` (includes are read from disk).
pub fn parse_str(path: &Path, text: &str) -> Result<Spec, SpecErrors> {
    let mut reader = |p: &Path| std::fs::read_to_string(p);
    parse_with_includes(path, path, text, &mut reader)
}

fn parse_with_includes(
    abs: &Path,
    shown: &Path,
    text: &str,
    read: &mut dyn FnMut(&Path) -> std::io::Result<String>,
) -> Result<Spec, SpecErrors> {
    let base = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut errors = Vec::new();
    let mut daemon = DaemonSpec::default();
    let mut services = BTreeMap::new();
    {
        let mut file = FileCtx {
            path: shown.to_path_buf(),
            text,
            base: &base,
            errors: &mut errors,
        };
        file.document(true, &mut daemon, &mut services);
    }
    // Includes: globs relative to the main file's directory, in sorted order.
    for pattern in daemon.include.clone() {
        let full = resolve(&base, &pattern);
        let paths = match glob::glob(&full.to_string_lossy()) {
            Ok(p) => p,
            Err(e) => {
                errors.push(SpecError {
                    file: shown.to_path_buf(),
                    line: 0,
                    col: 0,
                    message: format!("bad include pattern \"{pattern}\": {e}"),
                });
                continue;
            }
        };
        let mut files: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
        files.sort();
        for inc in files {
            match read(&inc) {
                Ok(t) => {
                    let mut file = FileCtx {
                        path: inc.clone(),
                        text: &t,
                        base: &base,
                        errors: &mut errors,
                    };
                    let mut ignored = DaemonSpec::default();
                    file.document(false, &mut ignored, &mut services);
                }
                Err(e) => errors.push(SpecError {
                    file: inc.clone(),
                    line: 0,
                    col: 0,
                    message: format!("cannot read included file: {e}"),
                }),
            }
        }
    }
    // Cross-service checks need every file parsed.
    for spec in services.values() {
        for dep in &spec.after {
            if !services.contains_key(dep) {
                let known: Vec<&str> = services.keys().map(|k| k.as_str()).collect();
                let hint = did_you_mean(dep.as_str(), &known)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                errors.push(at_text(
                    &spec.defined_at,
                    format!(
                        "service `{}` is after unknown service `{dep}`{hint}",
                        spec.name
                    ),
                ));
            }
        }
    }
    check_activated_once(&services, &mut errors);
    jobs::check_jobs(&services, &daemon.hooks, &mut errors);
    forward::check_forwards(&services, &daemon.forward, &mut errors);
    let mains: Vec<&ServiceSpec> = services.values().filter(|s| s.main).collect();
    if let [first, second, ..] = mains[..] {
        errors.push(at_text(
            &second.defined_at,
            format!(
                "service `{}` has main = true, and so has `{}` ({}); Candor exits when the main service ends: mark one",
                second.name, first.name, first.defined_at
            ),
        ));
    }
    if let Some(cycle) = graph::find_cycle(&services) {
        let path: Vec<&str> = cycle.iter().map(|n| n.as_str()).collect();
        let first = &services[&cycle[0]];
        errors.push(at_text(
            &first.defined_at,
            format!(
                "dependency cycle in `after`: {}; remove one of these edges",
                path.join(" -> ")
            ),
        ));
    }
    if errors.is_empty() {
        Ok(Spec {
            source: abs.to_path_buf(),
            daemon,
            services,
        })
    } else {
        Err(SpecErrors(errors))
    }
}

/// One socket can be bound once: two activated sockets at the same path, or TCP listeners on
/// the same port where the addresses overlap (equal, or either unspecified), are a config
/// error instead of a service that fails at its first start.
fn check_activated_once(
    services: &BTreeMap<ServiceName, ServiceSpec>,
    errors: &mut Vec<SpecError>,
) {
    use crate::listen::ListenAddr;
    let mut seen: Vec<(&ListenAddr, &ServiceSpec)> = Vec::new();
    for spec in services.values() {
        for l in &spec.activated {
            let clash = seen.iter().find(|(a, _)| match (a, &l.addr) {
                (ListenAddr::Unix { path: p, .. }, ListenAddr::Unix { path: q, .. }) => p == q,
                (ListenAddr::Tcp(x), ListenAddr::Tcp(y)) => {
                    x.port() == y.port()
                        && (x.ip() == y.ip() || x.ip().is_unspecified() || y.ip().is_unspecified())
                }
                _ => false,
            });
            if let Some((a, other)) = clash {
                let whose = if other.name == spec.name {
                    "twice in this service".to_string()
                } else {
                    format!("by service `{}` too ({})", other.name, other.defined_at)
                };
                errors.push(at_text(
                    &spec.defined_at,
                    format!(
                        "service `{}` activates {}, which is activated {whose}; a socket is \
                         bound once and handed to one service",
                        spec.name,
                        if a.describe() == l.addr.describe() {
                            l.addr.describe()
                        } else {
                            format!("{} (overlapping {})", l.addr.describe(), a.describe())
                        }
                    ),
                ));
            }
            seen.push((&l.addr, spec));
        }
    }
}

/// Rebuild an error from a `file:line:col` string stored on a service.
fn at_text(defined_at: &str, message: String) -> SpecError {
    let mut parts = defined_at.rsplitn(3, ':');
    let col = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let line = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    let file = PathBuf::from(parts.next().unwrap_or(defined_at));
    SpecError {
        file,
        line,
        col,
        message,
    }
}

struct FileCtx<'a> {
    path: PathBuf,
    text: &'a str,
    base: &'a Path,
    errors: &'a mut Vec<SpecError>,
}

type Key<'i> = Spanned<std::borrow::Cow<'i, str>>;
type Val<'i> = Spanned<DeValue<'i>>;

impl FileCtx<'_> {
    fn err(&mut self, offset: usize, message: impl Into<String>) {
        let (line, col) = line_col(self.text, offset);
        self.errors.push(SpecError {
            file: self.path.clone(),
            line,
            col,
            message: message.into(),
        });
    }

    fn pos(&self, offset: usize) -> String {
        let (line, col) = line_col(self.text, offset);
        format!("{}:{line}:{col}", self.path.display())
    }

    fn unknown_key(&mut self, key: &Key<'_>, section: &str, allowed: &[&str]) {
        let hint = match did_you_mean(key.get_ref(), allowed) {
            Some(s) => format!("; did you mean `{s}`?"),
            None => format!("; expected one of: {}", allowed.join(", ")),
        };
        self.err(
            key.span().start,
            format!("unknown key `{}` in {section}{hint}", key.get_ref()),
        );
    }

    fn document(
        &mut self,
        main: bool,
        daemon: &mut DaemonSpec,
        services: &mut BTreeMap<ServiceName, ServiceSpec>,
    ) {
        let root = match DeTable::parse(self.text) {
            Ok(t) => t.into_inner(),
            Err(e) => {
                let offset = e.span().map(|s| s.start).unwrap_or(0);
                let msg = e.message().trim().replace('\n', " ");
                self.err(offset, format!("invalid TOML: {msg}"));
                return;
            }
        };
        for (key, value) in root.iter() {
            match_key!(self, key, "the top level", key.get_ref().as_ref() => {
                "daemon" => if main {
                    self.daemon_section(value, daemon)
                } else {
                    self.err(
                        key.span().start,
                        "[daemon] may only appear in the main config file, not in an included one",
                    )
                },
                "service" => {
                    let Some(table) = self.table(value, "[service]") else {
                        continue;
                    };
                    for (name, body) in table.iter() {
                        if is_replicated(body) {
                            self.replicated_service(name, services);
                        } else {
                            self.service(name, body, services);
                        }
                    }
                },
            })
        }
    }

    fn table<'v, 'i>(&mut self, v: &'v Val<'i>, what: &str) -> Option<&'v DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.err(
                    v.span().start,
                    format!("{what} must be a table, found {}", other.type_str()),
                );
                None
            }
        }
    }
    /// The one of `all` whose name (`name`) is `s`, or an error at `at`: "`what` = "s" is not
    /// `kind`; did you mean ...? expected ..." with `tail` after it.
    #[allow(clippy::too_many_arguments)]
    fn choice<T: Copy, const N: usize>(
        &mut self,
        at: usize,
        s: &str,
        all: [T; N],
        name: fn(T) -> &'static str,
        what: &str,
        kind: &str,
        tail: &str,
    ) -> Option<T> {
        if let Some(found) = all.into_iter().find(|c| name(*c) == s) {
            return Some(found);
        }
        let names = all.map(name);
        let hint = did_you_mean(s, &names)
            .map(|s| format!("did you mean \"{s}\"? "))
            .unwrap_or_default();
        self.err(
            at,
            format!(
                "{what} = \"{s}\" is not {kind}; {hint}expected {}{tail}",
                quoted_or(&names)
            ),
        );
        None
    }

    fn string(&mut self, v: &Val<'_>, what: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.err(
                    v.span().start,
                    format!("{what} must be a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn string_list(&mut self, v: &Val<'_>, what: &str) -> Option<Vec<(String, usize)>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.err(
                v.span().start,
                format!("{what} must be an array of strings, e.g. [\"a\", \"b\"]"),
            );
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            out.push((
                self.string(item, &format!("each item of {what}"))?,
                item.span().start,
            ));
        }
        Some(out)
    }

    fn duration(&mut self, v: &Val<'_>, what: &str) -> Option<Duration> {
        let s = self.string(v, what)?;
        match parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(v.span().start, format!("{what}: {e}"));
                None
            }
        }
    }

    /// `restart_budget = false`, or `{ max = "10%" | 5, window = "10s" }`.
    fn restart_budget(&mut self, v: &Val<'_>) -> Option<crate::RestartBudget> {
        const WHAT: &str = "daemon.restart_budget";
        let example = "e.g. restart_budget = { max = \"10%\", window = \"10s\" } or false";
        let t = match v.get_ref() {
            DeValue::Boolean(false) => {
                return Some(crate::RestartBudget {
                    max: crate::BudgetMax::Unlimited,
                    ..Default::default()
                })
            }
            DeValue::Table(t) => t,
            other => {
                self.err(
                    v.span().start,
                    format!(
                        "{WHAT} must be a table or false, found {}; {example}",
                        other.type_str()
                    ),
                );
                return None;
            }
        };
        let mut budget = crate::RestartBudget::default();
        for (key, value) in t.iter() {
            match_key!(self, key, WHAT, key.get_ref().as_ref() => {
                "max" => match value.get_ref() {
                    DeValue::Integer(_) => {
                        if let Some(n) = self.int(value, "daemon.restart_budget.max", 1, 1_000_000) {
                            budget.max = crate::BudgetMax::Count(n as u32);
                        }
                    }
                    DeValue::String(s) => {
                        let pct = s
                            .strip_suffix('%')
                            .and_then(|n| n.trim().parse::<u32>().ok())
                            .filter(|n| (1..=100).contains(n));
                        match pct {
                            Some(p) => budget.max = crate::BudgetMax::Percent(p),
                            None => self.err(
                                value.span().start,
                                format!("daemon.restart_budget.max = \"{s}\" is not a percentage from 1% to 100%; {example}"),
                            ),
                        }
                    }
                    other => self.err(
                        value.span().start,
                        format!("daemon.restart_budget.max must be a count or a percentage of the services, found {}; {example}", other.type_str()),
                    ),
                },
                "window" => {
                    if let Some(d) = self.duration(value, "daemon.restart_budget.window") {
                        if d.is_zero() {
                            self.err(value.span().start, "daemon.restart_budget.window must be more than 0s");
                        } else {
                            budget.window = d;
                        }
                    }
                },
            })
        }
        Some(budget)
    }

    fn daemon_section(&mut self, v: &Val<'_>, daemon: &mut DaemonSpec) {
        let Some(t) = self.table(v, "[daemon]") else {
            return;
        };
        for (key, value) in t.iter() {
            match_key!(self, key, "[daemon]", key.get_ref().as_ref() => {
                "state_dir" => {
                    daemon.state_dir = self
                        .string(value, "daemon.state_dir")
                        .map(|s| resolve(self.base, &s))
                },
                "socket" => {
                    daemon.socket = self
                        .string(value, "daemon.socket")
                        .map(|s| resolve(self.base, &s))
                },
                "socket_group" => {
                    if let Some(name) = self.string(value, "daemon.socket_group") {
                        match crate::accounts::gid(&name) {
                            Some(gid) => daemon.socket_group = Some((name, gid)),
                            None => self.err(
                                value.span().start,
                                format!("daemon.socket_group: no group \"{name}\" on this system; create it (groupadd {name}) or fix the name"),
                            ),
                        }
                    }
                },
                "operators_may_shutdown" => match value.get_ref() {
                    DeValue::Boolean(b) => daemon.operators_may_shutdown = *b,
                    other => self.err(value.span().start, format!("daemon.operators_may_shutdown must be true or false, found {}", other.type_str())),
                },
                "include" => {
                    if let Some(list) = self.string_list(value, "daemon.include") {
                        for (pattern, at) in list {
                            // Checked here, where its place in the file is known (with
                            // what reads it later; it reads no directory until iterated).
                            let full = resolve(self.base, &pattern);
                            match glob::glob(&full.to_string_lossy()) {
                                Ok(_) => daemon.include.push(pattern),
                                Err(e) => self.err(
                                    at,
                                    format!("daemon.include: bad pattern \"{pattern}\": {e} (globs: *, ?, [abc]; a literal [ is [[])"),
                                ),
                            }
                        }
                    }
                },
                "sample_every" => daemon.sample_every = self.duration(value, "daemon.sample_every"),
                "send_timeout" => {
                    daemon.send_timeout = self.duration(value, "daemon.send_timeout");
                    if daemon.send_timeout.is_some_and(|d| d.is_zero()) {
                        self.err(
                            value.span().start,
                            "daemon.send_timeout must be more than 0s (it is how long a client may read nothing before it is cut off)",
                        );
                    }
                },
                "web" => {
                    let Some(t) = self.table(value, "daemon.web") else {
                        continue;
                    };
                    let (mut listen, mut public, mut named) = (None, false, false);
                    let mut hosts = Vec::new();
                    for (key, value) in t.iter() {
                        match_key!(self, key, "daemon.web", key.get_ref().as_ref() => {
                            "listen" => {
                                named = true;
                                if let Some(a) = self.string(value, "daemon.web.listen") {
                                    match a.parse::<std::net::SocketAddr>() {
                                        Ok(a) => listen = Some(a),
                                        Err(_) => self.err(value.span().start, format!("daemon.web.listen = \"{a}\" is not \"host:port\" with an IP address, e.g. \"{}\"", crate::DEFAULT_WEB_LISTEN)),
                                    }
                                }
                            },
                            "metrics_public" => match value.get_ref() {
                                DeValue::Boolean(b) => public = *b,
                                other => self.err(value.span().start, format!("daemon.web.metrics_public must be true or false, found {}", other.type_str())),
                            },
                            "hosts" => {
                                for (h, at) in self.string_list(value, "daemon.web.hosts").unwrap_or_default() {
                                    match crate::web_host_name(&h) {
                                        Ok(name) => hosts.push(name),
                                        Err(why) => self.err(at, format!("daemon.web.hosts: \"{h}\" {why}, e.g. hosts = [\"dash.example.org\"]")),
                                    }
                                }
                            },
                        })
                    }
                    match listen {
                        Some(listen) => daemon.web = Some(crate::WebSpec { listen, metrics_public: public, hosts }),
                        None if named => {} // said already
                        None => self.err(value.span().start, format!("daemon.web needs `listen`, e.g. web = {{ listen = \"{}\" }}", crate::DEFAULT_WEB_LISTEN)),
                    }
                },
                "adopt_changed" => {
                    let Some(s) = self.string(value, "daemon.adopt_changed") else {
                        continue;
                    };
                    if let Some(p) = self.choice(
                        value.span().start,
                        &s,
                        crate::AdoptChanged::ALL,
                        crate::AdoptChanged::as_str,
                        "daemon.adopt_changed",
                        "a choice",
                        " (what a restarted daemon does with a run started from an older config)",
                    ) {
                        daemon.adopt_changed = p;
                    }
                },
                "probe_max_inflight" => {
                    daemon.probe_max_inflight = self
                        .int(value, "daemon.probe_max_inflight", 1, 1000)
                        .map(|n| n as u32)
                },
                "restart_budget" => {
                    if let Some(b) = self.restart_budget(value) {
                        daemon.restart_budget = b;
                    }
                },
                "hooks" => daemon.hooks = self.hooks(value),
                "forward" => daemon.forward = self.forwards(value),
                "logs" => {
                    let Some(t) = self.table(value, "daemon.logs") else {
                        continue;
                    };
                    for (key, value) in t.iter() {
                        match_key!(self, key, "daemon.logs", key.get_ref().as_ref() => {
                            "max_bytes" => {
                                daemon.logs_max_bytes =
                                    self.log_bytes(value, "daemon.logs.max_bytes")
                            },
                        })
                    }
                },
            })
        }
    }

    fn service(
        &mut self,
        name_key: &Key<'_>,
        body: &Val<'_>,
        services: &mut BTreeMap<ServiceName, ServiceSpec>,
    ) {
        let name = match ServiceName::new(name_key.get_ref()) {
            Ok(n) if n.as_str().contains('@') => {
                let msg = format!("invalid service name `{n}`: `@` names an instance of a replicated service (`api@2`); give the service a name without it and `replicas = N`");
                return self.err(name_key.span().start, msg);
            }
            Ok(n) => n,
            Err(e) => return self.err(name_key.span().start, e),
        };
        let section = format!("[service.{name}]");
        let Some(t) = self.table(body, &section) else {
            return;
        };
        let defined_at = self.pos(name_key.span().start);
        if let Some(prev) = services.get(&name) {
            let msg = format!(
                "service `{name}` is defined twice (first at {}); rename one",
                prev.defined_at
            );
            return self.err(name_key.span().start, msg);
        }
        let mut spec = ServiceSpec::with_command(name.as_str(), &[]);
        spec.defined_at = defined_at;
        let mut has_command = false;
        let mut ready_given = false;
        let mut update = PartialUpdate::default();
        let mut ok = true;
        let errors_before = self.errors.len();
        for (key, value) in t.iter() {
            let k = key.get_ref().as_ref();
            let what = format!("service.{name}.{k}");
            match_key!(self, key, &section, k => {
                "command" => {
                    has_command = true;
                    match value.get_ref() {
                        DeValue::String(s) => self.err(
                            value.span().start,
                            format!(
                                "{what} must be an argv array, not a shell string: write [\"{}\"]",
                                s.split_whitespace().collect::<Vec<_>>().join("\", \"")
                            ),
                        ),
                        _ => {
                            if let Some(list) = self.string_list(value, &what) {
                                if list.is_empty() || list[0].0.is_empty() {
                                    self.err(value.span().start, format!("{what} must name a program: [\"/path/to/bin\", \"arg\"]"));
                                } else {
                                    let mut argv: Vec<String> =
                                        list.into_iter().map(|(s, _)| s).collect();
                                    if argv[0].contains('/') && !Path::new(&argv[0]).is_absolute() {
                                        argv[0] = resolve(self.base, &argv[0])
                                            .to_string_lossy()
                                            .into_owned();
                                    }
                                    spec.command = argv;
                                }
                            }
                        }
                    }
                },
                "workdir" => {
                    spec.workdir = self.string(value, &what).map(|s| resolve(self.base, &s))
                },
                "env" => {
                    let Some(env) = self.table(value, &what) else {
                        continue;
                    };
                    for (ek, ev) in env.iter() {
                        if let Some(s) = self.string(ev, &format!("{what}.{}", ek.get_ref())) {
                            spec.env.insert(ek.get_ref().to_string(), s);
                        }
                    }
                },
                "env_file" => self.env_files(value, &what, &mut spec),
                "inherit_env" => match value.get_ref() {
                    DeValue::Boolean(b) => spec.inherit_env = *b,
                    other => self.err(value.span().start, format!("{what} must be true or false, found {}", other.type_str())),
                },
                "user" => {
                    let name = match value.get_ref() {
                        DeValue::Integer(i) => Some(i.as_str().replace('_', "")),
                        _ => self.string(value, &what),
                    };
                    if let Some(name) = name {
                        match crate::accounts::user(&name) {
                            Ok(account) => spec.user = Some(account),
                            Err(e) => self.err(value.span().start, format!("{what}: {e}")),
                        }
                    }
                },
                "group" => {
                    if let Some(name) = self.string(value, &what) {
                        match self.group(&name, value.span().start, &what) {
                            Some(gid) => spec.group = Some((name, gid)),
                            None => continue,
                        }
                    }
                },
                "groups" => {
                    let Some(list) = self.string_list(value, &what) else {
                        continue;
                    };
                    for (name, off) in list {
                        if let Some(gid) = self.group(&name, off, &what) {
                            spec.groups.push((name, gid));
                        }
                    }
                },
                "umask" => {
                    let Some(s) = self.string(value, &what) else {
                        continue;
                    };
                    match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
                        Ok(m) if m <= 0o777 && !s.is_empty() => spec.umask = Some(m),
                        _ => self.err(value.span().start, format!("{what} = \"{s}\" is not an octal mask; write it like \"0027\"")),
                    }
                },
                "after" => {
                    let Some(list) = self.string_list(value, &what) else {
                        continue;
                    };
                    for (dep, off) in list {
                        match ServiceName::new(&dep) {
                            Ok(d) if d == name => {
                                self.err(off, format!("service `{name}` cannot be after itself"))
                            }
                            Ok(d) => spec.after.push(d),
                            Err(e) => self.err(off, e),
                        }
                    }
                },
                "restart" => {
                    let Some(s) = self.string(value, &what) else {
                        continue;
                    };
                    if let Some(policy) = self.choice(
                        value.span().start,
                        &s,
                        RestartPolicy::ALL,
                        RestartPolicy::as_str,
                        &what,
                        "a policy",
                        "",
                    ) {
                        spec.restart = policy;
                    }
                },
                "backoff" => self.backoff(value, &what, &mut spec.backoff),
                "stop" => self.stop(value, &what, &mut spec.stop),
                "ready" => {
                    ready_given = true;
                    if let Some(r) = self.ready(value, &what) {
                        spec.ready = r;
                    }
                },
                "ready_timeout" => spec.ready_timeout = self.duration(value, &what),
                "watchdog" => spec.watchdog = self.duration(value, &what),
                "main" => match value.get_ref() {
                    DeValue::Boolean(b) => spec.main = *b,
                    other => self.err(value.span().start, format!("{what} must be true or false, found {}", other.type_str())),
                },
                "reload_signal" => {
                    if let Some(sig) = self.signal(value, &what) {
                        spec.reload_signal = sig;
                    }
                },
                "reload" => {
                    if let Some(list) = self.string_list(value, &what) {
                        if list.is_empty() || list[0].0.is_empty() {
                            self.err(value.span().start, format!("{what} must name a program: [\"/usr/sbin/nginx\", \"-s\", \"reload\"]"));
                        } else {
                            spec.reload = Some(list.into_iter().map(|(s, _)| s).collect());
                        }
                    }
                },
                "probe" => spec.probe = self.probe(value, &what),
                "on_unhealthy" => match value.get_ref() {
                    DeValue::String(s) if s == "restart" => {
                        spec.on_unhealthy = OnUnhealthy::Restart
                    }
                    DeValue::String(s) if s == "alert" => spec.on_unhealthy = OnUnhealthy::Alert,
                    _ => self.err(
                        value.span().start,
                        format!("{what} must be \"restart\" or \"alert\""),
                    ),
                },
                "restart_budget" => match value.get_ref() {
                    DeValue::Boolean(b) => spec.restart_budget = *b,
                    other => self.err(
                        value.span().start,
                        format!("{what} must be true or false (false: its health restarts are never held), found {}", other.type_str()),
                    ),
                },
                "sockets" => self.sockets(value, &what, &mut spec),
                "limits" => self.limits(value, &what, &mut spec.limits),
                "logs" => self.logs(value, &what, &mut spec.logs),
                "replicas" => {
                    spec.replicas = self
                        .int(value, &what, 1, u64::from(crate::MAX_REPLICAS))
                        .map(|n| n as u32)
                },
                "update" => self.update(value, &what, &mut update),
                "type" => spec.kind = self.kind(value, &what).unwrap_or(spec.kind),
                "condition" => spec.condition = self.condition(value, &what),
                "timeout" => spec.timeout = self.positive_duration(value, &what),
                "retries" => spec.retries = self.int(value, &what, 0, 10_000).map(|n| n as u32),
                "schedule" => spec.schedule = self.schedule(value, &what),
            })
        }
        self.finish_job(name_key.span().start, &section, t, &mut spec);
        self.finish_update(name_key.span().start, &section, update, &mut spec);
        if spec.replicas.is_none() && format!("{spec:?}").contains(crate::replicas::INSTANCE) {
            self.err(
                name_key.span().start,
                format!("{section} uses `{{instance}}`, which is replaced only in a replicated service; add `replicas = 1` (or more) or remove it"),
            );
        }
        if !ready_given && spec.probe.is_some() {
            spec.ready = ReadySpec::Probe;
        }
        if spec.ready == ReadySpec::Probe && spec.probe.is_none() {
            self.err(name_key.span().start, format!("{section} has ready = \"probe\" but no `probe`; add one or choose another `ready`"));
        }
        if !has_command {
            self.err(
                name_key.span().start,
                format!("{section} has no `command`; add command = [\"/path/to/bin\", \"arg\"]"),
            );
        }
        if let ReadySpec::Fd(n) = spec.ready {
            let taken = crate::listen::FIRST_FD + spec.activated.len() as u32;
            if !spec.activated.is_empty() && n < taken {
                self.err(name_key.span().start, format!("{section} has ready = {{ fd = {n} }} but its activated sockets are fds 3 to {}; use fd = {taken} or higher", taken - 1));
            }
        }
        if spec.backoff.initial > spec.backoff.max {
            self.err(
                name_key.span().start,
                format!("{section}: backoff.initial is larger than backoff.max"),
            );
        }
        ok &= self.errors.len() == errors_before;
        if ok {
            services.insert(name, spec);
        }
    }

    /// `update = { strategy, max_surge, max_unavailable, min_ready, timeout }`.
    fn update(&mut self, v: &Val<'_>, what: &str, out: &mut PartialUpdate) {
        let Some(t) = self.table(v, what) else {
            return;
        };
        let section = what.to_string();
        for (key, value) in t.iter() {
            let k = key.get_ref().as_ref();
            let what = format!("{section}.{k}");
            match_key!(self, key, &section, k => {
                "strategy" => {
                    let Some(s) = self.string(value, &what) else {
                        continue;
                    };
                    out.strategy = self.choice(
                        value.span().start,
                        &s,
                        crate::Strategy::ALL,
                        crate::Strategy::as_str,
                        &what,
                        "a strategy",
                        "",
                    );
                },
                "max_surge" => {
                    out.max_surge = self.int(value, &what, 0, u64::from(crate::MAX_REPLICAS)).map(|n| n as u32)
                },
                "max_unavailable" => {
                    out.max_unavailable = self.int(value, &what, 0, u64::from(crate::MAX_REPLICAS)).map(|n| n as u32)
                },
                "min_ready" => out.min_ready = self.duration(value, &what),
                "timeout" => out.timeout = self.duration(value, &what),
            })
        }
    }

    /// The `update` of a service from what was given and its replicas, checked: a rollout
    /// must be able to make progress, and `overlap` needs one instance and a held socket.
    fn finish_update(
        &mut self,
        at: usize,
        section: &str,
        given: PartialUpdate,
        spec: &mut ServiceSpec,
    ) {
        use crate::Strategy;
        if matches!(given.strategy, Some(Strategy::Rolling | Strategy::Overlap))
            && spec.replicas.is_none()
        {
            spec.replicas = Some(1);
        }
        let d = crate::UpdateSpec::default_for(spec.replicas.unwrap_or(1));
        let u = crate::UpdateSpec {
            strategy: given.strategy.unwrap_or(d.strategy),
            max_surge: given.max_surge.unwrap_or(d.max_surge),
            max_unavailable: given.max_unavailable.unwrap_or(d.max_unavailable),
            min_ready: given.min_ready.unwrap_or(d.min_ready),
            timeout: given.timeout.unwrap_or(d.timeout),
        };
        spec.update = u;
        let replicas = spec.replicas.unwrap_or(1);
        match u.strategy {
            Strategy::Rolling if u.max_surge == 0 && u.max_unavailable == 0 => self.err(
                at,
                format!("{section}: update has max_surge = 0 and max_unavailable = 0, so a rolling update could never replace a run; allow one (max_surge = 1 starts a spare instance first)"),
            ),
            Strategy::Overlap if replicas > 1 => self.err(
                at,
                format!("{section}: update.strategy = \"overlap\" is for one instance, and replicas = {replicas}; use \"rolling\" (one instance at a time)"),
            ),
            Strategy::Overlap if spec.activated.is_empty() => self.err(
                at,
                format!("{section}: update.strategy = \"overlap\" runs the new and the old run on one listener, so it needs a socket Candor holds: add sockets = [{{ listen = \"127.0.0.1:8080\", activate = true }}] (or use \"stop-first\")"),
            ),
            _ => {}
        }
    }

    /// A replicated service: its section parsed from the text with `{instance}` replaced by
    /// 1 (the group's spec), then every instance a rollout may start (up to replicas +
    /// max_surge) parsed the same way, so an error in any of them is reported now.
    fn replicated_service(
        &mut self,
        name_key: &Key<'_>,
        services: &mut BTreeMap<ServiceName, ServiceSpec>,
    ) {
        let Ok(name) = ServiceName::new(name_key.get_ref()) else {
            // Reported by `service` below through the plain parse.
            return self.err(
                name_key.span().start,
                format!("invalid service name `{}`", name_key.get_ref()),
            );
        };
        if let Some(prev) = services.get(&name) {
            let msg = format!(
                "service `{name}` is defined twice (first at {}); rename one",
                prev.defined_at
            );
            return self.err(name_key.span().start, msg);
        }
        let template = crate::Template {
            shown: self.path.clone(),
            base: self.base.to_path_buf(),
            text: self.text.into(),
        };
        let spec = match one_service(&template, &name, 1, self.errors) {
            Some(s) => s,
            None => return,
        };
        let mut spec = spec;
        let upto = spec.replicas.unwrap_or(1) + spec.update.max_surge;
        for i in 1..=upto {
            let inst = match instance(&template, &name, i) {
                Ok(inst) => inst,
                Err(e) => return self.errors.extend(e.0),
            };
            let differs = inst.activated != spec.activated;
            spec.replica_specs.push(std::sync::Arc::new(inst));
            if differs {
                return self.err(
                    name_key.span().start,
                    format!("[service.{name}]: its activated sockets differ between instances; they are one listener shared by every instance, so `{{instance}}` cannot be in them (use activate = false for a socket of each instance's own)"),
                );
            }
        }
        spec.template = Some(template);
        services.insert(name, spec);
    }

    /// The gid of a group named in a service, or an error at `at`.
    fn group(&mut self, name: &str, at: usize, what: &str) -> Option<u32> {
        let gid = crate::accounts::gid(name);
        if gid.is_none() {
            self.err(
                at,
                format!("{what}: no group \"{name}\" on this system; create it (groupadd {name}) or fix the name"),
            );
        }
        gid
    }

    /// `env_file = PATH` or `[PATH, ...]`: read now, so a missing file or a bad line is an
    /// error with its position; a path starting with `-` may be missing (as in systemd).
    fn env_files(&mut self, v: &Val<'_>, what: &str, spec: &mut ServiceSpec) {
        let list = match v.get_ref() {
            DeValue::String(s) => vec![(s.to_string(), v.span().start)],
            _ => match self.string_list(v, what) {
                Some(l) => l,
                None => return,
            },
        };
        for (given, at) in list {
            let (optional, path) = match given.strip_prefix('-') {
                Some(rest) => (true, resolve(self.base, rest)),
                None => (false, resolve(self.base, &given)),
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => match crate::envfile::parse(&text) {
                    Ok(vars) => spec.env_from_files.extend(vars),
                    Err((line, why)) => self.err(
                        at,
                        format!("{what}: {}:{line}: {why}", path.display()),
                    ),
                },
                Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => self.err(
                    at,
                    format!(
                        "{what}: cannot read {}: {e}; create it, fix the path, or write \"-{}\" if it may be missing",
                        path.display(),
                        path.display()
                    ),
                ),
            }
            spec.env_files.push(crate::EnvFile { path, optional });
        }
    }

    /// `sockets`: each a path that must exist and accept (declared), or a table
    /// `{ path = P | listen = "host:port", activate = true, mode = "0660", name, backlog }`:
    /// with `activate`, Candor makes the socket and hands it over (`ServiceSpec::activated`).
    fn sockets(&mut self, v: &Val<'_>, what: &str, spec: &mut ServiceSpec) {
        let DeValue::Array(items) = v.get_ref() else {
            return self.err(
                v.span().start,
                format!("{what} must be an array of paths or tables, e.g. [\"/run/api.sock\", {{ listen = \"127.0.0.1:8080\", activate = true }}]"),
            );
        };
        for item in items.iter() {
            let at = item.span().start;
            let t = match item.get_ref() {
                DeValue::String(p) => {
                    spec.sockets.push(resolve(self.base, p));
                    continue;
                }
                DeValue::Table(t) => t,
                other => {
                    self.err(
                        at,
                        format!(
                            "each item of {what} must be a path or a table, found {}",
                            other.type_str()
                        ),
                    );
                    continue;
                }
            };
            let (mut path, mut listen, mut activate, mut mode, mut name, mut backlog) =
                (None, None, false, None, None, None);
            let errors_before = self.errors.len();
            for (key, value) in t.iter() {
                let k = key.get_ref().as_ref();
                let each = format!("{what}.{k}");
                match_key!(self, key, what, k => {
                    "path" => path = self.string(value, &each).map(|p| resolve(self.base, &p)),
                    "listen" => {
                        if let Some(a) = self.string(value, &each) {
                            match a.parse::<std::net::SocketAddr>() {
                                Ok(a) => listen = Some(a),
                                Err(_) => self.err(value.span().start, format!("{each} = \"{a}\" is not \"host:port\" with an IP address, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"")),
                            }
                        }
                    },
                    "activate" => match value.get_ref() {
                        DeValue::Boolean(b) => activate = *b,
                        other => self.err(value.span().start, format!("{each} must be true or false, found {}", other.type_str())),
                    },
                    "mode" => {
                        if let Some(m) = self.string(value, &each) {
                            match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
                                Ok(n) if n <= 0o777 => mode = Some(n),
                                _ => self.err(value.span().start, format!("{each} = \"{m}\" is not a file mode; write it in octal, e.g. \"0660\"")),
                            }
                        }
                    },
                    "name" => {
                        if let Some(n) = self.string(value, &each) {
                            if n.is_empty() || n.len() > 255 || n.contains(':') || n.chars().any(char::is_control) {
                                self.err(value.span().start, format!("{each} = {n:?} cannot be a LISTEN_FDNAMES name: 1 to 255 characters, no `:`"));
                            } else {
                                name = Some(n);
                            }
                        }
                    },
                    "backlog" => backlog = self.int(value, &each, 1, 65535).map(|n| n as u32),
                })
            }
            if self.errors.len() > errors_before {
                continue; // said already, key by key
            }
            let addr = match (path, listen) {
                (Some(_), Some(_)) | (None, None) => {
                    self.err(at, format!("each socket of {what} needs exactly one of `path` (a Unix socket) or `listen` (\"host:port\")"));
                    continue;
                }
                (Some(path), None) => ListenAddr::Unix {
                    path,
                    mode: mode.unwrap_or(crate::listen::DEFAULT_MODE),
                },
                (None, Some(a)) => ListenAddr::Tcp(a),
            };
            if !activate {
                match addr {
                    ListenAddr::Unix { path, .. } if mode.is_none() && name.is_none() && backlog.is_none() => spec.sockets.push(path),
                    ListenAddr::Unix { .. } => self.err(at, format!("`mode`, `name` and `backlog` in {what} are for sockets Candor makes: add activate = true")),
                    ListenAddr::Tcp(_) => self.err(at, format!("`listen` in {what} is a socket Candor makes: add activate = true (a declared socket is a Unix path)")),
                }
                continue;
            }
            if matches!(addr, ListenAddr::Tcp(_)) && mode.is_some() {
                self.err(
                    at,
                    format!("`mode` in {what} is for Unix sockets, not `listen`"),
                );
                continue;
            }
            // Checked like a declared socket while a run lives (so one unlinked is seen).
            if let ListenAddr::Unix { path, .. } = &addr {
                spec.sockets.push(path.clone());
            }
            spec.activated.push(Listen {
                name: name.unwrap_or_else(|| spec.name.to_string()),
                addr,
                backlog: backlog.unwrap_or(crate::listen::DEFAULT_BACKLOG),
            });
        }
    }

    /// A signal name (`SIGHUP`, `HUP`), or an error naming the ones there are.
    fn signal(&mut self, v: &Val<'_>, what: &str) -> Option<StopSignal> {
        let name = self.string(v, what)?;
        let sig = StopSignal::parse(&name);
        if sig.is_none() {
            self.err(
                v.span().start,
                format!(
                    "{what} = \"{name}\" is not a signal; expected one of {}",
                    StopSignal::names()
                ),
            );
        }
        sig
    }

    fn int(&mut self, v: &Val<'_>, what: &str, min: u64, max: u64) -> Option<u64> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => {
                u64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
            }
            _ => None,
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.err(
                    v.span().start,
                    format!("{what} must be a whole number from {min} to {max}"),
                );
                None
            }
        }
    }

    fn ready(&mut self, v: &Val<'_>, what: &str) -> Option<ReadySpec> {
        match v.get_ref() {
            DeValue::String(s) => {
                // The kinds written as a plain string; `file` and `fd` take a table.
                const KINDS: [ReadySpec; 3] =
                    [ReadySpec::Started, ReadySpec::Notify, ReadySpec::Probe];
                let found = KINDS.iter().find(|r| r.as_str() == s.as_ref()).cloned();
                if found.is_none() {
                    let names = KINDS.each_ref().map(ReadySpec::as_str);
                    let hint = did_you_mean(s, &names)
                        .map(|s| format!("did you mean \"{s}\"? "))
                        .unwrap_or_default();
                    let kinds = names.map(|n| format!("\"{n}\", ")).concat();
                    self.err(v.span().start, format!("{what} = \"{s}\" is not a readiness kind; {hint}expected {kinds}{{ file = PATH }} or {{ fd = N }}"));
                }
                found
            }
            DeValue::Table(t) => {
                let mut out = None;
                for (key, value) in t.iter() {
                    match_key!(self, key, what, key.get_ref().as_ref() => {
                        "file" => {
                            out = self
                                .string(value, &format!("{what}.file"))
                                .map(|p| ReadySpec::File(resolve(self.base, &p)))
                        },
                        "fd" => {
                            out = self
                                .int(value, &format!("{what}.fd"), 3, 1023)
                                .map(|n| ReadySpec::Fd(n as u32))
                        },
                    })
                }
                if out.is_none() && t.is_empty() {
                    self.err(
                        v.span().start,
                        format!("{what} needs `file` or `fd`, e.g. {{ fd = 3 }}"),
                    );
                }
                out
            }
            other => {
                self.err(
                    v.span().start,
                    format!(
                        "{what} must be a string or a table, found {}",
                        other.type_str()
                    ),
                );
                None
            }
        }
    }

    fn probe(&mut self, v: &Val<'_>, what: &str) -> Option<ProbeSpec> {
        let t = self.table(v, what)?;
        let mut check = None;
        let mut kinds = 0;
        let mut spec = ProbeSpec::with_check(ProbeCheck::Exec { argv: Vec::new() });
        for (key, value) in t.iter() {
            let k = key.get_ref().as_ref();
            let field = format!("{what}.{k}");
            match_key!(self, key, what, k => {
                "http" | "tcp" | "uds" | "exec" => {
                    kinds += 1;
                    check = match k {
                        "http" => self.http_probe(value, &field),
                        "tcp" => self.tcp_probe(value, &field),
                        "uds" => self.uds_probe(value, &field),
                        _ => self.string_list(value, &field).and_then(|argv| {
                            if argv.is_empty() {
                                self.err(
                                    value.span().start,
                                    format!(
                                        "{field} must name a program: [\"/bin/check\", \"arg\"]"
                                    ),
                                );
                                None
                            } else {
                                Some(ProbeCheck::Exec {
                                    argv: argv.into_iter().map(|(a, _)| a).collect(),
                                })
                            }
                        }),
                    };
                },
                "every" => spec.every = self.duration(value, &field).unwrap_or(spec.every),
                "timeout" => spec.timeout = self.duration(value, &field).unwrap_or(spec.timeout),
                "failures" => spec.failures = self.int(value, &field, 1, 1000).unwrap_or(3) as u32,
                "successes" => {
                    spec.successes = self.int(value, &field, 1, 1000).unwrap_or(1) as u32
                },
                "start_delay" => {
                    spec.start_delay = self.duration(value, &field).unwrap_or(spec.start_delay)
                },
                "max_inflight" => {
                    spec.max_inflight = self.int(value, &field, 1, 1000).map(|n| n as u32)
                },
            })
        }
        if kinds != 1 {
            self.err(
                v.span().start,
                format!("{what} needs exactly one of http, tcp, uds or exec (found {kinds})"),
            );
            return None;
        }
        if spec.every.is_zero() || spec.timeout.is_zero() {
            self.err(
                v.span().start,
                format!("{what}: `every` and `timeout` must be more than zero"),
            );
            return None;
        }
        spec.check = check?;
        Some(spec)
    }

    fn http_probe(&mut self, v: &Val<'_>, what: &str) -> Option<ProbeCheck> {
        let t = self.table(v, what)?;
        let (mut port, mut host, mut socket, mut path) =
            (None, "127.0.0.1".to_string(), None, "/".to_string());
        let (mut expect_status, mut expect_body) = (None, None);
        for (key, value) in t.iter() {
            let field = format!("{what}.{}", key.get_ref());
            match_key!(self, key, what, key.get_ref().as_ref() => {
                "port" => port = self.int(value, &field, 1, 65535).map(|p| p as u16),
                "host" => host = self.string(value, &field).unwrap_or(host),
                "socket" => socket = self.string(value, &field).map(|p| resolve(self.base, &p)),
                "path" => {
                    path = self.string(value, &field).unwrap_or(path);
                    if !path.starts_with('/') {
                        self.err(value.span().start, format!("{field} must start with `/`"));
                    }
                },
                "expect_status" => {
                    expect_status = self.int(value, &field, 100, 599).map(|c| c as u16)
                },
                "expect_body" => expect_body = self.string(value, &field),
            })
        }
        let target = match (port, socket) {
            (Some(port), None) => HttpTarget::Tcp { host, port },
            (None, Some(s)) => HttpTarget::Unix(s),
            _ => {
                self.err(
                    v.span().start,
                    format!("{what} needs either `port` (with optional `host`) or `socket`"),
                );
                return None;
            }
        };
        Some(ProbeCheck::Http {
            target,
            path,
            expect_status,
            expect_body,
        })
    }

    fn tcp_probe(&mut self, v: &Val<'_>, what: &str) -> Option<ProbeCheck> {
        let s = self.string(v, what)?;
        let parsed = s.rsplit_once(':').and_then(|(h, p)| {
            Some((
                h.trim_matches(['[', ']']).to_string(),
                p.parse::<u16>().ok()?,
            ))
        });
        match parsed {
            Some((host, port)) if !host.is_empty() && port > 0 => {
                Some(ProbeCheck::Tcp { host, port })
            }
            _ => {
                self.err(
                    v.span().start,
                    format!("{what} must be \"host:port\", e.g. \"127.0.0.1:8080\""),
                );
                None
            }
        }
    }

    fn uds_probe(&mut self, v: &Val<'_>, what: &str) -> Option<ProbeCheck> {
        let t = self.table(v, what)?;
        let (mut socket, mut send, mut expect) = (None, None, None);
        for (key, value) in t.iter() {
            let field = format!("{what}.{}", key.get_ref());
            match_key!(self, key, what, key.get_ref().as_ref() => {
                "socket" => socket = self.string(value, &field).map(|p| resolve(self.base, &p)),
                "send" => send = self.string(value, &field),
                "expect" => expect = self.string(value, &field),
            })
        }
        match socket {
            Some(socket) => Some(ProbeCheck::Uds {
                socket,
                send,
                expect,
            }),
            None => {
                self.err(v.span().start, format!("{what} needs `socket`"));
                None
            }
        }
    }

    fn backoff(&mut self, v: &Val<'_>, what: &str, out: &mut BackoffSpec) {
        let Some(t) = self.table(v, what) else { return };
        for (key, value) in t.iter() {
            let k = key.get_ref().as_ref();
            let field = format!("{what}.{k}");
            let slot = match_key!(self, key, what, k => {
                "initial" => &mut out.initial,
                "max" => &mut out.max,
                "reset_after" => &mut out.reset_after,
            } else continue);
            if let Some(d) = self.duration(value, &field) {
                *slot = d;
            }
        }
    }

    fn stop(&mut self, v: &Val<'_>, what: &str, out: &mut StopSpec) {
        let Some(t) = self.table(v, what) else { return };
        for (key, value) in t.iter() {
            let k = key.get_ref().as_ref();
            let field = format!("{what}.{k}");
            match_key!(self, key, what, k => {
                "signal" => {
                    if let Some(sig) = self.signal(value, &field) {
                        out.signal = sig;
                    }
                },
                "timeout" => {
                    if let Some(d) = self.duration(value, &field) {
                        out.timeout = d;
                    }
                },
            })
        }
    }

    fn log_bytes(&mut self, v: &Val<'_>, what: &str) -> Option<u64> {
        let s = self.string(v, what)?;
        match crate::parse_size(&s) {
            Ok(b) if b >= MIN_LOG_BYTES => Some(b),
            Ok(_) => {
                self.err(v.span().start, format!("{what} must be at least 64KiB"));
                None
            }
            Err(e) => {
                self.err(v.span().start, format!("{what}: {e}"));
                None
            }
        }
    }

    fn logs(&mut self, v: &Val<'_>, what: &str, out: &mut LogsSpec) {
        let Some(t) = self.table(v, what) else { return };
        let mut burst = None;
        for (key, value) in t.iter() {
            let k = key.get_ref().as_ref();
            let field = format!("{what}.{k}");
            match_key!(self, key, what, k => {
                "rate" => {
                    if let Some(n) = self.int(
                        value,
                        &format!("{field} (lines/s, 0: no limit)"),
                        0,
                        10_000_000,
                    ) {
                        out.rate = n as u32;
                    }
                },
                "burst" => burst = self.int(value, &field, 1, 100_000_000).map(|n| n as u32),
                "max_bytes" => {
                    if let Some(b) = self.log_bytes(value, &field) {
                        out.max_bytes = b;
                    }
                },
            })
        }
        // Like the defaults (1000/s, burst 5000): five seconds' worth unless given.
        out.burst = burst.unwrap_or(out.rate.saturating_mul(5).max(1));
    }

    fn limits(&mut self, v: &Val<'_>, what: &str, out: &mut LimitsSpec) {
        let Some(t) = self.table(v, what) else { return };
        for (key, value) in t.iter() {
            let k = key.get_ref().as_ref();
            match_key!(self, key, what, k => {
                "nofile" => match value.get_ref() {
                    DeValue::Integer(i) => {
                        let digits = i.as_str().replace('_', "");
                        match u64::from_str_radix(&digits, i.radix()) {
                            Ok(n) if n >= 8 => out.nofile = Some(n),
                            _ => self.err(
                                value.span().start,
                                format!("{what}.nofile must be a whole number of at least 8"),
                            ),
                        }
                    }
                    _ => self.err(
                        value.span().start,
                        format!("{what}.nofile must be an integer, e.g. 4096"),
                    ),
                },
                "fd_warn" | "fd_restart" => {
                    let field = format!("{what}.{k}");
                    let Some(s) = self.string(value, &field) else {
                        continue;
                    };
                    match crate::parse_percent(&s) {
                        Ok(p) if k == "fd_warn" => out.fd_warn = Some(p),
                        Ok(p) => out.fd_restart = Some(p),
                        Err(e) => self.err(value.span().start, format!("{field}: {e}")),
                    }
                },
                "memory_warn" | "memory_restart" | "memory_max" | "memory_high" => {
                    let field = format!("{what}.{k}");
                    let Some(s) = self.string(value, &field) else {
                        continue;
                    };
                    match crate::parse_size(&s) {
                        Ok(b) if k == "memory_warn" => out.memory_warn = Some(b),
                        Ok(b) if k == "memory_restart" => out.memory_restart = Some(b),
                        Ok(b) if b < 1 << 20 => self.err(value.span().start, format!("{field} = \"{s}\" is below 1MiB: the service could not even start")),
                        Ok(b) if k == "memory_max" => out.cgroup.memory_max = Some(b),
                        Ok(b) => out.cgroup.memory_high = Some(b),
                        Err(e) => self.err(value.span().start, format!("{field}: {e}")),
                    }
                },
                "pids_max" => out.cgroup.pids_max = self.int(value, &format!("{what}.pids_max"), 1, u32::MAX.into()),
                "cpu_weight" => out.cgroup.cpu_weight = self.int(value, &format!("{what}.cpu_weight (100 is the default share)"), 1, 10_000).map(|n| n as u32),
                "cpu_max" => {
                    let field = format!("{what}.cpu_max");
                    let Some(s) = self.string(value, &field) else {
                        continue;
                    };
                    let pct = s.trim().strip_suffix('%').and_then(|n| n.trim().parse::<f64>().ok());
                    match pct {
                        // One core is 100%: the quota per 100 ms period.
                        Some(p) if p > 0.0 && p <= 100_000.0 => {
                            let quota = ((p / 100.0) * 100_000.0).round().max(1000.0) as u64;
                            out.cgroup.cpu_max = Some((quota, 100_000));
                        }
                        _ => self.err(value.span().start, format!("{field} = \"{s}\" is not a share of one core; write it like \"50%\" (half a core) or \"200%\" (two cores)")),
                    }
                },
            })
        }
    }
}

/// What `update` gave; the rest comes from the defaults for the service's replicas.
#[derive(Default)]
struct PartialUpdate {
    strategy: Option<crate::Strategy>,
    max_surge: Option<u32>,
    max_unavailable: Option<u32>,
    min_ready: Option<Duration>,
    timeout: Option<Duration>,
}

/// Whether a service section asks for instances: `replicas`, or a rolling or overlap
/// `update` (which make one instance that can be replaced without a gap).
fn is_replicated(body: &Val<'_>) -> bool {
    let DeValue::Table(t) = body.get_ref() else {
        return false;
    };
    t.iter().any(|(k, v)| match k.get_ref().as_ref() {
        "replicas" => true,
        "update" => match v.get_ref() {
            DeValue::Table(u) => u.iter().any(|(k, v)| {
                k.get_ref() == "strategy"
                    && matches!(v.get_ref(), DeValue::String(s) if s == "rolling" || s == "overlap")
            }),
            _ => false,
        },
        _ => false,
    })
}

/// Service `name` of the template's file with `{instance}` replaced by `index`, parsed alone
/// (the cross-service checks were made when the whole config was loaded); errors go to
/// `errors`. The spec keeps the group's name: the caller names an instance.
fn one_service(
    t: &crate::Template,
    name: &ServiceName,
    index: u32,
    errors: &mut Vec<SpecError>,
) -> Option<ServiceSpec> {
    let text = crate::replicas::substitute(&t.text, index);
    let before = errors.len();
    let mut file = FileCtx {
        path: t.shown.clone(),
        text: &text,
        base: &t.base,
        errors,
    };
    let root = match DeTable::parse(&text) {
        Ok(r) => r.into_inner(),
        Err(e) => {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e.message().trim().replace('\n', " ");
            file.err(
                offset,
                format!("invalid TOML with {{instance}} = {index}: {msg}"),
            );
            return None;
        }
    };
    let table = root
        .iter()
        .find(|(k, _)| k.get_ref() == "service")
        .and_then(|(_, v)| match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        })?;
    let (key, body) = table.iter().find(|(k, _)| k.get_ref() == name.as_str())?;
    let mut out = BTreeMap::new();
    file.service(key, body, &mut out);
    if errors.len() > before {
        if index > 1 {
            for e in &mut errors[before..] {
                e.message = format!("{} (instance {index}, `{{instance}}` = {index})", e.message);
            }
        }
        return None;
    }
    out.remove(name)
}

/// Instance `index` of the replicated service `group`.
pub(crate) fn instance(
    t: &crate::Template,
    group: &ServiceName,
    index: u32,
) -> Result<ServiceSpec, SpecErrors> {
    let mut errors = Vec::new();
    match one_service(t, group, index, &mut errors) {
        Some(mut spec) => {
            spec.name = ServiceName::instance(group, index);
            spec.instance = Some(crate::InstanceOf {
                group: group.clone(),
                index,
            });
            Ok(spec)
        }
        None => {
            if errors.is_empty() {
                errors.push(SpecError {
                    file: t.shown.clone(),
                    line: 0,
                    col: 0,
                    message: format!("service `{group}` is no longer in this file"),
                });
            }
            Err(SpecErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(text: &str) -> Result<DaemonSpec, Vec<String>> {
        let text = format!("{text}\n[service.a]\ncommand = [\"/bin/true\"]\n");
        parse_str(Path::new("/etc/candor.toml"), &text)
            .map(|s| s.daemon)
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn operators_may_shutdown_is_off_unless_set_true_and_a_typo_is_named() {
        assert!(!daemon("[daemon]").unwrap().operators_may_shutdown);
        assert!(
            daemon("[daemon]\noperators_may_shutdown = true")
                .unwrap()
                .operators_may_shutdown
        );
        let bad = daemon("[daemon]\noperators_may_shutdown = \"yes\"").unwrap_err();
        assert!(
            bad[0].contains("/etc/candor.toml:2:26:")
                && bad[0].contains("must be true or false, found string"),
            "{bad:?}"
        );
        let typo = daemon("[daemon]\noperator_may_shutdown = true").unwrap_err();
        assert!(
            typo[0].contains("/etc/candor.toml:2:1:")
                && typo[0].contains("did you mean `operators_may_shutdown`?"),
            "{typo:?}"
        );
    }

    #[test]
    fn the_restart_budget_and_probe_limits_parse_and_bad_values_are_named() {
        use crate::{BudgetMax, RestartBudget};
        let d = daemon("[daemon]").unwrap();
        assert_eq!(d.restart_budget, RestartBudget::default());
        assert_eq!(d.restart_budget.allowed(300), 30);
        assert_eq!(d.restart_budget.allowed(3), 1);
        assert_eq!(d.probe_max_inflight, None);
        let d = daemon(
            "[daemon]\nrestart_budget = { max = 5, window = \"30s\" }\nprobe_max_inflight = 8",
        )
        .unwrap();
        assert_eq!(d.restart_budget.max, BudgetMax::Count(5));
        assert_eq!(d.restart_budget.window, std::time::Duration::from_secs(30));
        assert_eq!(d.probe_max_inflight, Some(8));
        let d = daemon("[daemon]\nrestart_budget = { max = \"25%\" }").unwrap();
        assert_eq!(d.restart_budget.allowed(10), 3);
        let off = daemon("[daemon]\nrestart_budget = false").unwrap();
        assert_eq!(off.restart_budget.allowed(10), u32::MAX);
        for (bad, says) in [
            (
                "restart_budget = { max = \"150%\" }",
                "not a percentage from 1% to 100%",
            ),
            ("restart_budget = { max = 0 }", "whole number from 1"),
            ("restart_budget = true", "must be a table or false"),
            (
                "restart_budget = { window = \"0s\" }",
                "must be more than 0s",
            ),
            ("restart_budget = { maxx = 3 }", "did you mean `max`?"),
            ("probe_max_inflight = 0", "whole number from 1 to 1000"),
        ] {
            let e = daemon(&format!("[daemon]\n{bad}")).unwrap_err();
            assert!(
                e[0].contains("/etc/candor.toml:2:") && e[0].contains(says),
                "{bad}: {e:?}"
            );
        }
        let text = "[service.a]\ncommand = [\"/bin/true\"]\nrestart_budget = false\nprobe = { tcp = \"127.0.0.1:80\", max_inflight = 2 }\n";
        let spec = parse_str(Path::new("/etc/candor.toml"), text).unwrap();
        let a = spec.services.values().next().unwrap();
        assert!(!a.restart_budget);
        let probe = a.probe.as_ref().unwrap();
        assert_eq!(probe.max_inflight, Some(2));
        assert_eq!(probe.target().as_deref(), Some("127.0.0.1:80"));
    }
}
