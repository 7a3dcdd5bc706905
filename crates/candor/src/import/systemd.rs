//! A systemd `.service` unit as a Candor service: the reverse of `candor export systemd`.
//! `ExecStart=` with systemd's quoting, prefixes and `${VAR}`s (known from `Environment=`:
//! substituted; from `EnvironmentFile=`: expanded at run time by `sh -c`); `ExecStartPre=` as
//! a oneshot `NAME-pre` the service is `after`; `ExecCondition=` as `condition`; `Restart`,
//! `RestartSec` (+ `RestartMaxDelaySec`), `KillSignal`, `TimeoutStopSec`, `Type`, the
//! resource limits; `After=`/`Requires=` on services of the same import as `after`. The rest
//! (sandboxing, targets, other `Exec*=`) are warnings.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::draft::{Draft, DraftService};
use super::unit::{self, ExecLine, Line, Part, Specifiers};

pub fn read(path: &Path, text: &str, draft: &mut Draft) -> anyhow::Result<()> {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unit.service".into());
    let name = file.strip_suffix(".service").unwrap_or(&file).to_string();
    let (raw_lines, bad) = unit::parse(text);
    for (line, why) in bad {
        draft.warn(line, why);
    }
    let user = (raw_lines.iter())
        .rfind(|l| l.section == "Service" && l.key == "User")
        .map(|l| l.value.clone());
    let specifiers = Specifiers {
        unit: file.clone(),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        user,
    };
    let mut lines = Vec::with_capacity(raw_lines.len());
    for l in raw_lines {
        let (value, unknown) = specifiers.expand(&l.value);
        for u in unknown {
            draft.warn(
                l.line,
                format!(
                    "{}=: the specifier {u} is not one candor import knows; kept as written",
                    l.key
                ),
            );
        }
        lines.push(Line { value, ..l });
    }
    if name.ends_with('@') {
        draft.warn(1, format!("{file} is a template unit: imported once with an empty instance (%i); for several, use `replicas` with `{{instance}}` where %i was"));
    }
    let dir = super::host::absolute_dir(path);
    Reader {
        name: name.clone(),
        dir,
        svc: DraftService::new(name, first_line(&lines)),
        env: Map::new(),
        pre: Vec::new(),
        stop: Map::new(),
        backoff: Map::new(),
        limits: Map::new(),
        after: Vec::new(),
        env_files: Vec::new(),
        socket_units: Vec::new(),
        output: None,
        syslog: Map::new(),
        oneshot: false,
    }
    .read(&lines, draft);
    Ok(())
}

fn first_line(lines: &[Line]) -> usize {
    (lines.iter())
        .find(|l| l.section == "Service")
        .map_or(1, |l| l.line)
}

struct Reader {
    name: String,
    dir: std::path::PathBuf,
    svc: DraftService,
    /// `Environment=` so far, for `${VAR}` in commands.
    env: Map<String, Value>,
    /// The `ExecStartPre=` oneshots.
    pre: Vec<DraftService>,
    stop: Map<String, Value>,
    backoff: Map<String, Value>,
    limits: Map<String, Value>,
    after: Vec<(String, usize)>,
    /// `EnvironmentFile=`s in order (a `-` one may be missing).
    env_files: Vec<String>,
    /// `Sockets=` (unit, line); none: `NAME.socket` if it is there, as systemd pairs them.
    socket_units: Vec<(String, usize)>,
    /// Where `StandardOutput=`/`StandardError=` sent the lines: "journal" or "syslog".
    output: Option<&'static str>,
    /// `SyslogIdentifier=` and `SyslogFacility=` as a syslog target's `app_name`, `facility`.
    syslog: Map<String, Value>,
    oneshot: bool,
}

impl Reader {
    fn read(mut self, lines: &[Line], draft: &mut Draft) {
        self.oneshot = (lines.iter())
            .rfind(|l| l.section == "Service" && l.key == "Type")
            .is_some_and(|l| l.value == "oneshot");
        // Environment first: commands may use it wherever it is written.
        for l in lines
            .iter()
            .filter(|l| l.section == "Service" && l.key == "Environment")
        {
            match unit::words(&l.value) {
                Ok(words) => {
                    for w in words {
                        match w.split_once('=') {
                            Some((k, v)) => {
                                self.env.insert(k.to_string(), Value::String(v.to_string()));
                            }
                            None => {
                                draft.warn(l.line, "Environment=: a word is not KEY=VALUE; skipped")
                            }
                        }
                    }
                }
                Err(e) => draft.warn(l.line, format!("Environment=: {e}; skipped")),
            }
        }
        let mut command_set = false;
        for l in lines {
            match l.section.as_str() {
                "Unit" => self.unit_key(l, draft),
                "Service" => {
                    if l.key == "ExecStart" {
                        if command_set {
                            draft.warn(l.line, "ExecStart=: a second command (allowed for Type=oneshot) is not imported: Candor runs one command; chain them with `sh -c \"a && b\"`");
                        } else if self.exec_start(l, draft) {
                            command_set = true;
                        }
                    } else {
                        self.service_key(l, draft);
                    }
                }
                "Install" => match l.key.as_str() {
                    "WantedBy" | "RequiredBy" => self.svc.comments.push(format!(
                        "{}={}: Candor starts every service it is given.",
                        l.key, l.value
                    )),
                    k => draft.warn(l.line, format!("{k}= of [Install] has no Candor equivalent (Candor starts every service in its config); skipped")),
                },
                s => draft.warn(l.line, format!("{}= of [{s}]: only [Unit], [Service] and [Install] of a .service are read; skipped", l.key)),
            }
        }
        if !command_set {
            draft.warn(
                self.svc.line,
                "the unit has no ExecStart=, so no service was made",
            );
            return;
        }
        self.finish(draft);
    }

    fn finish(mut self, draft: &mut Draft) {
        self.svc
            .comments
            .push("inherit_env = false: systemd starts a service with a clean environment.".into());
        self.svc.set("inherit_env", false);
        if !self.env_files.is_empty() {
            self.svc.set("env_file", json!(self.env_files));
        }
        if !self.env.is_empty() {
            self.svc
                .set("env", Value::Object(std::mem::take(&mut self.env)));
        }
        // An ExecStartPre= ran as the unit's user, in its directory, with its environment.
        for pre in &mut self.pre {
            for (k, v) in &self.svc.keys {
                if matches!(
                    k.as_str(),
                    "user" | "group" | "workdir" | "env_file" | "env" | "inherit_env"
                ) {
                    pre.set(k, v.clone());
                }
            }
        }
        self.forward(draft);
        self.sockets(draft);
        self.systemd_defaults();
        if !self.stop.is_empty() {
            self.svc
                .set("stop", Value::Object(std::mem::take(&mut self.stop)));
        }
        if !self.backoff.is_empty() {
            if !self.backoff.contains_key("max") {
                if let Some(initial) = self.backoff.get("initial").cloned() {
                    self.svc.comments.push("backoff.max = RestartSec: systemd waits the same RestartSec each time (without RestartSteps=).".into());
                    self.backoff.insert("max".into(), initial);
                }
            }
            self.svc
                .set("backoff", Value::Object(std::mem::take(&mut self.backoff)));
        }
        if !self.limits.is_empty() {
            self.svc
                .set("limits", Value::Object(std::mem::take(&mut self.limits)));
        }
        // Only services of this import can be `after` targets (candor check refuses others).
        let mut after: Vec<String> = Vec::new();
        if let Some(last) = self.pre.last() {
            after.push(last.name.clone());
        }
        for (dep, line) in std::mem::take(&mut self.after) {
            let known = draft.services.iter().any(|s| s.name == dep);
            if known {
                after.push(dep);
            } else {
                draft.warn(line, format!("After=/Requires= {dep}.service: not a service of this import, so left out of `after` (candor check refuses unknown services); add `after = [\"{dep}\"]` once {dep} runs under Candor"));
            }
        }
        if !after.is_empty() {
            after.dedup();
            self.svc.set("after", json!(after));
        }
        draft.services.append(&mut self.pre);
        draft.services.push(self.svc);
    }

    fn unit_key(&mut self, l: &Line, draft: &mut Draft) {
        match l.key.as_str() {
            "Description" => self.svc.comments.push(l.value.clone()),
            "Documentation" => self.svc.comments.push(format!("Documentation: {}", l.value)),
            "After" | "Requires" | "Wants" | "BindsTo" | "Requisite" => {
                for unit in l.value.split_whitespace() {
                    match unit.strip_suffix(".service") {
                        Some(dep) => {
                            if !self.after.iter().any(|(d, _)| d == dep) {
                                self.after.push((dep.to_string(), l.line));
                            }
                        }
                        None if unit.starts_with(&format!("{}.socket", self.name))
                            || unit.starts_with(&format!("{}-", self.name)) && unit.ends_with(".socket") =>
                        {
                            self.svc.comments.push(format!("{}={unit}: its sockets are imported from the socket unit.", l.key));
                        }
                        None => draft.warn(l.line, format!("{}={unit}: Candor has no targets, mounts or other units; it starts its services once the daemon runs (order the candor unit itself after {unit})", l.key)),
                    }
                }
            }
            "StartLimitBurst" => match l.value.parse::<u32>() {
                Ok(n) if n > 0 => draft.warn(l.line, format!("StartLimitBurst={n}: Candor limits failed runs in a row instead (`retries = {}` with restart = \"on-failure\"); not set, so it keeps restarting with backoff", n - 1)),
                _ => draft.warn(l.line, "StartLimitBurst= is not a count; skipped"),
            },
            k if k.starts_with("Condition") || k.starts_with("Assert") => self.condition_test(l, draft),
            k => draft.warn(l.line, format!("{k}= of [Unit] has no Candor equivalent; skipped")),
        }
    }

    /// `ConditionPathExists=` and its kin as a `condition` running `test`.
    fn condition_test(&mut self, l: &Line, draft: &mut Draft) {
        let flag = match l
            .key
            .trim_start_matches("Condition")
            .trim_start_matches("Assert")
        {
            "PathExists" => "-e",
            "PathIsDirectory" => "-d",
            "FileNotEmpty" => "-s",
            "FileIsExecutable" => "-x",
            "PathIsSymbolicLink" => "-L",
            _ => {
                return draft.warn(l.line, format!("{}= has no Candor equivalent; a `condition = [\"sh\", \"-c\", \"…\"]` can test it before each start", l.key));
            }
        };
        if l.key.starts_with("Assert") {
            draft.warn(
                l.line,
                format!(
                    "{}=: imported as a condition, which skips the start instead of failing it",
                    l.key
                ),
            );
        }
        if self.svc.keys.iter().any(|(k, _)| k == "condition") {
            return draft.warn(
                l.line,
                format!(
                    "{}=: the service has a condition already (Candor runs one); skipped",
                    l.key
                ),
            );
        }
        let (negate, path) = match l.value.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, l.value.as_str()),
        };
        let mut argv = vec!["test".to_string()];
        if negate {
            argv.push("!".into());
        }
        argv.extend([flag.to_string(), path.to_string()]);
        self.svc
            .comments
            .push(format!("condition: {}={}", l.key, l.value));
        self.svc.set("condition", json!(argv));
    }

    /// `ExecStart=`: the command (false when it cannot be read).
    fn exec_start(&mut self, l: &Line, draft: &mut Draft) -> bool {
        let exec = match unit::exec_line(&l.value) {
            Ok(e) => e,
            Err(e) => {
                draft.warn(
                    l.line,
                    format!("ExecStart=: {e}; no service was made from it"),
                );
                return false;
            }
        };
        if exec.ignore_failure {
            draft.warn(l.line, "ExecStart=-…: systemd takes any exit as success; Candor judges the exit code (restart = \"always\" restarts either way)");
        }
        if exec.privileged {
            draft.warn(l.line, "ExecStart=+/!…: runs with full privileges in systemd; Candor runs the command as `user`");
        }
        let (argv, why) = self.argv(&exec, l, draft);
        if let Some(why) = why {
            self.svc.comments.push(why);
        }
        self.svc.keys.insert(0, ("command".into(), json!(argv)));
        true
    }

    /// The argv of an `Exec*=` line, and why it runs through `sh -c` if it does.
    fn argv(&self, exec: &ExecLine, l: &Line, draft: &mut Draft) -> (Vec<String>, Option<String>) {
        let mut words = exec.words.clone();
        if exec.argv0 && words.len() > 1 {
            draft.warn(l.line, format!("{}=@…: Candor cannot set argv[0] apart from the program; the second word was dropped", l.key));
            words.remove(1);
        }
        let unknown: Vec<&str> = (words.iter().flatten())
            .filter_map(|p| match p {
                Part::Braced(n) | Part::Bare(n) if !self.env.contains_key(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        if unknown.is_empty() {
            let mut argv = Vec::new();
            for w in &words {
                match &w[..] {
                    [Part::Bare(n)] => {
                        let v = self.env[n].as_str().unwrap_or_default();
                        argv.extend(v.split_whitespace().map(str::to_string));
                    }
                    parts => argv.push(
                        parts
                            .iter()
                            .map(|p| match p {
                                Part::Text(t) => t.clone(),
                                Part::Braced(n) | Part::Bare(n) => {
                                    self.env[n].as_str().unwrap_or_default().to_string()
                                }
                            })
                            .collect(),
                    ),
                }
            }
            return (argv, None);
        }
        // Variables only known at run time (an EnvironmentFile=, the daemon's environment):
        // the shell expands them as systemd would have.
        let script: Vec<String> = (words.iter())
            .map(|w| match &w[..] {
                [Part::Bare(n)] => format!("${n}"),
                parts => parts
                    .iter()
                    .map(|p| match p {
                        Part::Text(t) => quote(t),
                        Part::Braced(n) | Part::Bare(n) => format!("\"${{{n}}}\""),
                    })
                    .collect(),
            })
            .collect();
        let script = format!("exec {}", script.join(" "));
        let why = format!(
            "{}= uses {} from the environment at run time (EnvironmentFile=): run through sh -c, which expands it as systemd did.",
            l.key,
            unknown.iter().map(|n| format!("${{{n}}}")).collect::<Vec<_>>().join(", ")
        );
        (vec!["sh".into(), "-c".into(), script], Some(why))
    }

    fn service_key(&mut self, l: &Line, draft: &mut Draft) {
        let v = l.value.as_str();
        match l.key.as_str() {
            "Type" => match v {
                "simple" | "idle" => {}
                "exec" => self.svc.set("ready", "started"),
                "notify" | "notify-reload" => self.svc.set("ready", "notify"),
                "oneshot" => self.svc.set("type", "oneshot"),
                "forking" => draft.warn(l.line, "Type=forking: Candor supervises the process it starts, which must not fork away; run the program in the foreground (most have a flag: --nodaemon, -D, -f) and edit `command`"),
                other => draft.warn(l.line, format!("Type={other} has no Candor equivalent; imported as a plain service (ready once started)")),
            },
            "Environment" => {}
            "EnvironmentFile" => {
                let (optional, file) = match v.strip_prefix('-') {
                    Some(f) => (true, f),
                    None => (false, v),
                };
                let path = self.dir.join(file);
                if !optional && !super::host::readable(&path) {
                    draft.warn(l.line, format!("EnvironmentFile={file} cannot be read here, so it is written as optional (\"-{file}\") to pass candor check; drop the `-` once it is in place"));
                }
                let optional = optional || !super::host::readable(&path);
                let prefix = if optional { "-" } else { "" };
                self.env_files.push(format!("{prefix}{}", path.display()));
            }
            "User" => {
                if super::host::user_exists(v) {
                    self.svc.set("user", v);
                } else {
                    self.svc.comments.push(format!("user = \"{v}\" (no such user here)"));
                    draft.warn(l.line, format!("User={v}: no such user on this machine, so it was left out (candor check would refuse it); create it, then add user = \"{v}\""));
                }
            }
            "Group" => {
                if super::host::group_exists(v) {
                    self.svc.set("group", v);
                } else {
                    draft.warn(l.line, format!("Group={v}: no such group on this machine, so it was left out; create it, then add group = \"{v}\""));
                }
            }
            "SupplementaryGroups" => {
                let (known, missing): (Vec<&str>, Vec<&str>) =
                    v.split_whitespace().partition(|g| super::host::group_exists(g));
                if !missing.is_empty() {
                    draft.warn(l.line, format!("SupplementaryGroups=: no group {} on this machine, left out", missing.join(", ")));
                }
                if !known.is_empty() {
                    self.svc.set("groups", json!(known));
                }
            }
            "WorkingDirectory" => {
                let dir = v.trim_start_matches('-');
                if dir == "~" {
                    draft.warn(l.line, "WorkingDirectory=~ (the user's home): write the home directory as `workdir`; left out");
                } else {
                    self.svc.set("workdir", self.dir.join(dir).display().to_string());
                }
            }
            "UMask" => match u32::from_str_radix(v, 8) {
                Ok(m) if m <= 0o777 => self.svc.set("umask", format!("{m:04o}")),
                _ => draft.warn(l.line, format!("UMask={v} is not an octal mask; skipped")),
            },
            "Restart" => {
                let policy = match v {
                    "no" => "never",
                    "always" => "always",
                    "on-failure" => "on-failure",
                    "on-abnormal" | "on-abort" | "on-watchdog" => {
                        draft.warn(l.line, format!("Restart={v}: Candor restarts on any failure (a non-zero exit too) with restart = \"on-failure\", which is what it was imported as"));
                        "on-failure"
                    }
                    other => {
                        draft.warn(l.line, format!("Restart={other} has no Candor equivalent (always, on-failure or never); imported as \"always\""));
                        "always"
                    }
                };
                if self.oneshot && policy == "always" {
                    draft.warn(l.line, "Restart=always on a oneshot would run it forever in Candor; imported as restart = \"on-failure\"");
                    self.svc.set("restart", "on-failure");
                } else {
                    self.svc.set("restart", policy);
                }
            }
            "RestartSec" => self.duration(l, draft, |r, d| {
                r.backoff.insert("initial".into(), d);
            }),
            "RestartMaxDelaySec" => self.duration(l, draft, |r, d| {
                r.backoff.insert("max".into(), d);
            }),
            "RestartSteps" => {}
            "TimeoutStopSec" => self.duration(l, draft, |r, d| {
                r.stop.insert("timeout".into(), d);
            }),
            "TimeoutStartSec" => self.duration(l, draft, |r, d| {
                let key = if r.oneshot { "timeout" } else { "ready_timeout" };
                r.svc.set(key, d);
            }),
            "TimeoutSec" => self.duration(l, draft, |r, d| {
                r.stop.insert("timeout".into(), d.clone());
                let key = if r.oneshot { "timeout" } else { "ready_timeout" };
                r.svc.set(key, d);
            }),
            "WatchdogSec" => self.duration(l, draft, |r, d| r.svc.set("watchdog", d)),
            "KillSignal" => {
                let full = if v.starts_with("SIG") { v.to_string() } else { format!("SIG{v}") };
                match candor_spec::StopSignal::parse(&full) {
                    Some(sig) => {
                        self.stop.insert("signal".into(), json!(sig.name()));
                    }
                    None => draft.warn(l.line, format!("KillSignal={v}: Candor stops with {}; skipped", candor_spec::StopSignal::names())),
                }
            }
            "KillMode" => {
                if v != "control-group" && v != "mixed" {
                    draft.warn(l.line, format!("KillMode={v}: Candor always stops the whole process group and cgroup"));
                }
            }
            "SendSIGKILL" | "FinalKillSignal" => draft.warn(l.line, format!("{}=: Candor always sends SIGKILL after stop.timeout", l.key)),
            "RemainAfterExit" => {
                if self.oneshot {
                    self.svc.comments.push("RemainAfterExit=yes: a oneshot stays `done` in Candor until its next run.".into());
                } else {
                    draft.warn(l.line, "RemainAfterExit= on a long-running service has no Candor equivalent; skipped");
                }
            }
            "ExecStartPre" => self.exec_pre(l, draft),
            "ExecCondition" => match unit::exec_line(v) {
                Ok(exec) => {
                    if self.svc.keys.iter().any(|(k, _)| k == "condition") {
                        draft.warn(l.line, "ExecCondition=: the service has a condition already (from a Condition…= line); Candor runs one, so ExecCondition= replaced it: fold the test into its command");
                        self.svc.keys.retain(|(k, _)| k != "condition");
                    }
                    let (argv, why) = self.argv(&exec, l, draft);
                    if let Some(why) = why {
                        self.svc.comments.push(why);
                    }
                    self.svc.set("condition", json!(argv));
                }
                Err(e) => draft.warn(l.line, format!("ExecCondition=: {e}; skipped")),
            },
            "ExecReload" => self.exec_reload(l, draft),
            "ExecStop" => draft.warn(l.line, "ExecStop=: Candor stops a service with its stop signal (`stop.signal`), not a command; make the program stop on that signal"),
            "ExecStartPost" | "ExecStopPost" => draft.warn(l.line, format!("{}= has no Candor equivalent (no hooks around a service's start or stop); skipped", l.key)),
            "LimitNOFILE" => {
                let soft = v.split(':').next().unwrap_or(v);
                match soft.parse::<u64>() {
                    Ok(n) if n >= 8 => {
                        if v.contains(':') {
                            draft.warn(l.line, format!("LimitNOFILE={v}: Candor sets one limit (soft and hard); {n} taken"));
                        }
                        self.limits.insert("nofile".into(), json!(n));
                    }
                    _ => draft.warn(l.line, format!("LimitNOFILE={v} is not a number of at least 8; skipped")),
                }
            }
            "MemoryMax" | "MemoryHigh" => {
                let key = if l.key == "MemoryMax" { "memory_max" } else { "memory_high" };
                match bytes(v) {
                    Some(b) => {
                        self.limits.insert(key.into(), json!(b));
                    }
                    None => draft.warn(l.line, format!("{}={v}: only a size (\"512M\", bytes) is imported; skipped", l.key)),
                }
            }
            "TasksMax" => match v.parse::<u64>() {
                Ok(n) if n > 0 => {
                    self.limits.insert("pids_max".into(), json!(n));
                }
                _ => draft.warn(l.line, format!("TasksMax={v}: only a count is imported; skipped")),
            },
            "CPUWeight" => match v.parse::<u64>() {
                Ok(n) if (1..=10_000).contains(&n) => {
                    self.limits.insert("cpu_weight".into(), json!(n));
                }
                _ => draft.warn(l.line, format!("CPUWeight={v}: only a number 1-10000 is imported; skipped")),
            },
            "CPUQuota" => {
                self.limits.insert("cpu_max".into(), json!(v));
            }
            "LogRateLimitBurst" => match v.parse::<u64>() {
                Ok(n) => self.svc.set("logs", json!({ "rate": n })),
                Err(_) => draft.warn(l.line, format!("LogRateLimitBurst={v} is not a count; skipped")),
            },
            "LogRateLimitIntervalSec" => {
                if v != "1s" && v != "1" {
                    draft.warn(l.line, format!("LogRateLimitIntervalSec={v}: Candor's logs.rate is per second; LogRateLimitBurst= was taken as lines per second"));
                }
            }
            "Sockets" => {
                for unit in v.split_whitespace() {
                    self.socket_units.push((unit.to_string(), l.line));
                }
            }
            "NotifyAccess" => self.svc.comments.push(format!("NotifyAccess={v}: Candor takes sd_notify from the main process, and from its process group or cgroup.")),
            "PIDFile" => draft.warn(l.line, "PIDFile= is for Type=forking: Candor supervises the process it starts"),
            "StandardOutput" | "StandardError" => self.output(l, draft),
            "SyslogIdentifier" => {
                self.syslog.insert("app_name".into(), json!(v));
            }
            "SyslogFacility" => {
                self.syslog.insert("facility".into(), json!(v));
            }
            "SyslogLevel" | "SyslogLevelPrefix" => draft.warn(l.line, format!("{}={v}: Candor sets each line's severity from its stream or its structured level; skipped", l.key)),
            "StandardInput" => draft.warn(l.line, format!("StandardInput={v}: a Candor service's stdin is /dev/null")),
            k => draft.warn(l.line, format!("{k}= has no Candor equivalent (sandboxing, scheduling and the like are systemd's); skipped")),
        }
    }

    /// Where systemd's defaults differ from Candor's and the unit did not say: no restart,
    /// 90 s to stop.
    fn systemd_defaults(&mut self) {
        let said = |k: &str| self.svc.keys.iter().any(|(key, _)| key == k);
        if !said("restart") && !self.oneshot {
            self.svc
                .comments
                .push("restart = \"never\": systemd's default (no Restart=).".into());
            self.svc.set("restart", "never");
        }
        if !self.stop.contains_key("timeout") {
            self.svc
                .comments
                .push("stop.timeout = 90s: systemd's default TimeoutStopSec=.".into());
            self.stop.insert("timeout".into(), json!("90s"));
        }
    }

    /// The activated sockets of the socket units that start this service.
    fn sockets(&mut self, draft: &mut Draft) {
        let mut units = std::mem::take(&mut self.socket_units);
        let own = format!("{}.socket", self.name);
        if units.is_empty() && self.dir.join(&own).is_file() {
            self.svc.comments.push(format!(
                "sockets: from {own}, which systemd pairs with this unit."
            ));
            units.push((own, self.svc.line));
        }
        let mut items = Vec::new();
        for (unit, line) in units {
            items.extend(super::systemd_socket::read(
                &self.dir, &unit, &self.name, line, draft,
            ));
        }
        if !items.is_empty() {
            self.svc.set("sockets", Value::Array(items));
        }
    }

    /// `StandardOutput=`/`StandardError=`: Candor keeps the lines in its store either way;
    /// `journal` and `syslog` also go on there through a `[[daemon.forward]]` for this service.
    fn output(&mut self, l: &Line, draft: &mut Draft) {
        let v = l.value.as_str();
        let target = v.split('+').next().unwrap_or(v);
        match target {
            "journal" | "syslog" | "kmsg" if self.output.is_some_and(|t| t != target) => {
                draft.warn(l.line, format!("{}={v}: the other stream goes elsewhere; Candor forwards a service's lines to one place here (both streams, to the first named)", l.key));
            }
            "journal" => self.output = Some("journal"),
            "syslog" => self.output = Some("syslog"),
            "inherit" | "null" | "tty" => {
                if l.key == "StandardOutput" || v != "inherit" {
                    draft.warn(l.line, format!("{}={v}: Candor keeps the service's output in its store (`candor logs {}`); skipped", l.key, self.name));
                }
            }
            _ => draft.warn(l.line, format!("{}={v}: Candor keeps the service's output in its store (`candor logs {}`), not in a file; `[[daemon.forward]]` sends it to journald, syslog or OpenTelemetry", l.key, self.name)),
        }
    }

    /// The `[[daemon.forward]]` entry `StandardOutput=` asked for, if any.
    fn forward(&mut self, draft: &mut Draft) {
        let mut entry = Map::new();
        match self.output {
            Some("journal") => {
                entry.insert("journald".into(), json!(true));
                if !self.syslog.is_empty() {
                    let keys: Vec<&String> = self.syslog.keys().collect();
                    draft.warn(self.svc.line, format!("Syslog{}=: a journald target names each line by the service (SYSLOG_IDENTIFIER, CANDOR_SERVICE), so it is not set", if keys.len() == 1 && keys[0] == "facility" { "Facility" } else { "Identifier" }));
                }
            }
            Some(_) => {
                entry.insert("syslog".into(), json!("unix:///dev/log"));
                entry.extend(std::mem::take(&mut self.syslog));
            }
            None => {
                if !self.syslog.is_empty() {
                    draft.warn(self.svc.line, "SyslogIdentifier=/SyslogFacility= without StandardOutput=syslog: not imported (no syslog target)");
                }
                return;
            }
        }
        entry.insert("services".into(), json!([self.name.clone()]));
        self.svc.comments.push(format!(
            "Its lines also go to {} as before: [[daemon.forward]] in [daemon].",
            if self.output == Some("journal") {
                "journald"
            } else {
                "syslog"
            }
        ));
        draft.daemon.push(("forward".into(), json!([entry])));
    }

    fn duration(&mut self, l: &Line, draft: &mut Draft, set: impl FnOnce(&mut Self, Value)) {
        match duration(&l.value) {
            Some(d) => set(self, json!(d)),
            None => draft.warn(
                l.line,
                format!(
                    "{}={}: not a duration Candor reads (\"infinity\" has none); skipped",
                    l.key, l.value
                ),
            ),
        }
    }

    /// `ExecStartPre=`: a oneshot run before the service, once.
    fn exec_pre(&mut self, l: &Line, draft: &mut Draft) {
        let exec = match unit::exec_line(&l.value) {
            Ok(e) => e,
            Err(e) => return draft.warn(l.line, format!("ExecStartPre=: {e}; skipped")),
        };
        let (mut argv, why) = self.argv(&exec, l, draft);
        let index = self.pre.len() + 1;
        let name = if index == 1 {
            format!("{}-pre", self.name)
        } else {
            format!("{}-pre-{index}", self.name)
        };
        let mut pre = DraftService::new(&name, l.line);
        pre.comments.push(format!(
            "ExecStartPre= of {}: a oneshot it starts after (once, when Candor starts; systemd ran it before every start).",
            self.name
        ));
        draft.warn(l.line, format!("ExecStartPre= runs before every start in systemd; imported as the oneshot `{name}` that runs once before {}'s first start", self.name));
        if let Some(why) = why {
            pre.comments.push(why);
        }
        if exec.ignore_failure {
            pre.comments
                .push("ExecStartPre=-…: its failure is ignored, so it always exits 0.".into());
            let mut wrapped = vec![
                "sh".to_string(),
                "-c".into(),
                "\"$@\" || true".into(),
                "sh".into(),
            ];
            wrapped.append(&mut argv);
            argv = wrapped;
        }
        pre.set("command", json!(argv));
        pre.set("type", "oneshot");
        if let Some(prev) = self.pre.last() {
            pre.set("after", json!([prev.name.clone()]));
        }
        self.pre.push(pre);
    }

    /// `ExecReload=`: `kill -SIG $MAINPID` is a `reload_signal`, anything else a `reload`
    /// command.
    fn exec_reload(&mut self, l: &Line, draft: &mut Draft) {
        let exec = match unit::exec_line(&l.value) {
            Ok(e) => e,
            Err(e) => return draft.warn(l.line, format!("ExecReload=: {e}; skipped")),
        };
        let texts: Vec<String> = (exec.words.iter())
            .map(|w| match &w[..] {
                [Part::Text(t)] => t.clone(),
                [Part::Bare(n)] | [Part::Braced(n)] => format!("${n}"),
                _ => String::new(),
            })
            .collect();
        let program = texts[0].rsplit('/').next().unwrap_or_default();
        if program == "kill" && texts.len() == 3 && texts[2] == "$MAINPID" {
            let sig = texts[1].trim_start_matches('-');
            let sig = sig.strip_prefix("s ").unwrap_or(sig);
            let full = if sig.starts_with("SIG") {
                sig.to_string()
            } else {
                format!("SIG{sig}")
            };
            match candor_spec::StopSignal::parse(&full) {
                Some(s) => self.svc.set("reload_signal", s.name()),
                None => draft.warn(
                    l.line,
                    format!("ExecReload= sends {sig}, which Candor does not send; skipped"),
                ),
            }
            return;
        }
        if texts.iter().any(|t| t.contains("$MAINPID")) {
            return draft.warn(l.line, "ExecReload= uses $MAINPID, which Candor does not set for a reload command; skipped (`reload_signal` sends a signal to the main process)");
        }
        let (argv, _) = self.argv(&exec, l, draft);
        self.svc.set("reload", json!(argv));
    }
}

/// A single quote of the shell around `text` (none when it needs none).
fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && (text.chars()).all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// A systemd time span as Candor writes durations: a bare number is seconds.
fn duration(v: &str) -> Option<String> {
    let v = v.trim();
    if v.is_empty() || v == "infinity" {
        return None;
    }
    let text = if v.chars().all(|c| c.is_ascii_digit() || c == '.') {
        format!("{v}s")
    } else {
        v.to_string()
    };
    candor_spec::parse_duration(&text).ok().map(|_| text)
}

/// A systemd size (`512M`, `1G`, bytes) as Candor writes sizes; percentages and `infinity`
/// are not imported.
fn bytes(v: &str) -> Option<String> {
    let v = v.trim();
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let unit = match unit {
        "" => "B",
        "K" => "KiB",
        "M" => "MiB",
        "G" => "GiB",
        "T" => "TiB",
        _ => return None,
    };
    let text = format!("{num}{unit}");
    candor_spec::parse_size(&text).ok().map(|_| text)
}

#[cfg(test)]
#[path = "systemd_tests.rs"]
mod tests;
