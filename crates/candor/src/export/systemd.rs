//! `candor export systemd -c FILE --out DIR`: one unit per service (and a .socket unit per
//! activated socket). What has no systemd equivalent is a [`Warnings`] line.
//!
//! A oneshot is `Type=oneshot` (units `After=` it start once it has exited 0, like Candor's
//! `done`), its `timeout` `TimeoutStartSec=`; `condition` is `ExecCondition=` (the same exit
//! codes: 0 goes on, 1-254 skip, 255 fails). A `schedule` needs a `.timer` unit: the warning
//! gives its `OnCalendar=` line when the cron expression can be said exactly.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use candor_spec::listen::ListenAddr;
use candor_spec::{
    CatchUp, Overlap, ReadySpec, RestartPolicy, ServiceKind, ServiceSpec, Spec, When,
};

use super::Warnings;

/// systemd's quoting for one word of ExecStart= / Environment=: in double quotes, with `\`
/// and `"` escaped, `%` as `%%` (specifiers) and `$` as `$$` (variables).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One value of an `EnvironmentFile=` as systemd's parser reads it back: single-quoted when it
/// holds no `'` (nothing inside is special), else double-quoted with `"`, `\`, `` ` `` and
/// `$` escaped — the characters systemd unescapes there. No variable is expanded in either.
fn env_value(v: &str) -> String {
    if !v.contains('\'') {
        return format!("'{v}'");
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if matches!(c, '"' | '\\' | '`' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The text of a service's `<name>.env`: `env` as KEY=VALUE lines.
pub fn env_file_text(spec: &ServiceSpec) -> String {
    let mut t = format!(
        "# Exported by `candor export systemd` from {}: the `env` of {} (mode 0600)\n",
        spec.defined_at,
        spec.name.as_str()
    );
    for (k, v) in &spec.env {
        let _ = writeln!(t, "{k}={}", env_value(v));
    }
    t
}

/// A duration as systemd reads it (`1.5s` is fine; `100ms` too).
fn secs(d: Duration) -> String {
    match d.as_millis() {
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// The units of one service: `(file name, text)`, and the warnings.
///
/// `env` is not written into the unit: systemd shows every `Environment=` to any local user
/// (`systemctl show`), so it goes to `<env_dir>/<name>.env`, which the caller writes with mode
/// 0600, named by `EnvironmentFile=` after the service's own files (so `env` still wins).
pub fn units(spec: &ServiceSpec, env_dir: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let name = spec.name.as_str();
    let mut w = Warnings::new(name);
    let mut files = Vec::new();
    let mut u = String::new();
    let _ = writeln!(
        u,
        "# Exported by `candor export systemd` from {}",
        spec.defined_at
    );
    let _ = writeln!(u, "[Unit]\nDescription={name} (from candor.toml)");
    let socket_units: Vec<String> = match spec.activated.len() {
        0 => Vec::new(),
        1 => vec![format!("{name}.socket")],
        n => (0..n).map(|i| format!("{name}-{i}.socket")).collect(),
    };
    for dep in &spec.after {
        let _ = writeln!(u, "After={dep}.service\nRequires={dep}.service");
    }
    for s in &socket_units {
        let _ = writeln!(u, "After={s}\nRequires={s}");
    }
    let _ = writeln!(u, "\n[Service]");
    let oneshot = spec.kind == ServiceKind::Oneshot;
    let kind = match spec.ready {
        _ if oneshot => "oneshot",
        ReadySpec::Notify => "notify",
        ReadySpec::Started => "exec",
        _ => {
            w.warn(
                "ready",
                format!(
                    "= {} has no systemd equivalent; exported as Type=exec (ready once started)",
                    spec.ready.as_str()
                ),
            );
            "exec"
        }
    };
    let _ = writeln!(u, "Type={kind}");
    if oneshot && spec.schedule.is_none() {
        // Candor keeps a oneshot `done` until its next run.
        let _ = writeln!(u, "RemainAfterExit=yes");
    }
    if let Some(cond) = &spec.condition {
        let argv: Vec<String> = cond.iter().map(|a| quote(a)).collect();
        let _ = writeln!(u, "ExecCondition={}", argv.join(" "));
    }
    let argv: Vec<String> = spec.command.iter().map(|a| quote(a)).collect();
    let _ = writeln!(u, "ExecStart={}", argv.join(" "));
    if let Some(wd) = &spec.workdir {
        let _ = writeln!(u, "WorkingDirectory={}", wd.display());
    }
    // systemd reads the files at each start, in order, a later one winning (as `env` wins
    // over `env_file`); a "-" path may be missing, as in Candor.
    for f in &spec.env_files {
        let optional = if f.optional { "-" } else { "" };
        let _ = writeln!(u, "EnvironmentFile={optional}{}", f.path.display());
    }
    if !spec.env.is_empty() {
        let _ = writeln!(
            u,
            "EnvironmentFile={}",
            env_dir.join(format!("{name}.env")).display()
        );
    }
    if let Some(user) = &spec.user {
        let _ = writeln!(u, "User={}", user.name);
    }
    if let Some((group, _)) = &spec.group {
        let _ = writeln!(u, "Group={group}");
    }
    if !spec.groups.is_empty() {
        let names: Vec<&str> = spec.groups.iter().map(|(n, _)| n.as_str()).collect();
        let _ = writeln!(u, "SupplementaryGroups={}", names.join(" "));
    }
    if let Some(mask) = spec.umask {
        let _ = writeln!(u, "UMask={mask:04o}");
    }
    let restart = match spec.restart {
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "no",
    };
    let _ = writeln!(u, "Restart={restart}");
    let b = &spec.backoff;
    let _ = writeln!(u, "RestartSec={}", secs(b.initial));
    if b.max > b.initial && !b.initial.is_zero() {
        // Candor doubles from `initial` to `max`: that many steps (systemd 254+).
        let steps = (b.max.as_secs_f64() / b.initial.as_secs_f64())
            .log2()
            .ceil()
            .max(1.0) as u32;
        let _ = writeln!(
            u,
            "RestartSteps={steps}\nRestartMaxDelaySec={}",
            secs(b.max)
        );
    }
    if b.reset_after != candor_spec::BackoffSpec::default().reset_after {
        w.warn(
            "backoff.reset_after",
            format!(
                "({}) has no systemd equivalent (systemd resets its steps when the unit starts anew)",
                secs(b.reset_after)
            ),
        );
    }
    let _ = writeln!(
        u,
        "KillMode=control-group\nKillSignal={}\nTimeoutStopSec={}",
        spec.stop.signal.name(),
        secs(spec.stop.timeout)
    );
    if let Some(t) = spec.ready_timeout.or(spec.timeout) {
        let _ = writeln!(u, "TimeoutStartSec={}", secs(t));
    }
    if let Some(wd) = spec.watchdog {
        let _ = writeln!(u, "WatchdogSec={}", secs(wd));
    }
    if let Some(n) = spec.limits.nofile {
        let _ = writeln!(u, "LimitNOFILE={n}");
    }
    let cg = &spec.limits.cgroup;
    if let Some(b) = cg.memory_max {
        let _ = writeln!(u, "MemoryMax={b}");
    }
    if let Some(b) = cg.memory_high {
        let _ = writeln!(u, "MemoryHigh={b}");
    }
    if let Some(n) = cg.pids_max {
        let _ = writeln!(u, "TasksMax={n}");
    }
    if let Some(wt) = cg.cpu_weight {
        let _ = writeln!(u, "CPUWeight={wt}");
    }
    if let Some((quota, period)) = cg.cpu_max {
        let pct = (quota as f64 * 100.0 / period as f64).round() as u64;
        let _ = writeln!(u, "CPUQuota={pct}%");
    }
    if spec.logs.rate > 0 {
        let _ = writeln!(
            u,
            "LogRateLimitIntervalSec=1s\nLogRateLimitBurst={}",
            spec.logs.rate
        );
    }
    if !socket_units.is_empty() {
        let _ = writeln!(u, "Sockets={}", socket_units.join(" "));
    }
    match &spec.reload {
        _ if oneshot => {}
        Some(cmd) => {
            let argv: Vec<String> = cmd.iter().map(|a| quote(a)).collect();
            let _ = writeln!(u, "ExecReload={}", argv.join(" "));
        }
        None => {
            let sig = spec.reload_signal.name().trim_start_matches("SIG");
            let _ = writeln!(u, "ExecReload=/bin/kill -{sig} $MAINPID");
        }
    }
    // What does not map.
    if let Some(p) = &spec.probe {
        w.warn(
            "probe",
            format!(
                "({} every {}) has no systemd equivalent; check it from outside (a timer, your monitoring)",
                p.check.kind(),
                secs(p.every)
            ),
        );
    }
    if spec.probe.is_some() {
        w.warn(
            "on_unhealthy",
            "has no systemd equivalent (systemd has no probe to act on)",
        );
    }
    w.candor_only(spec, "systemd");
    if spec.limits.memory_restart.is_some() {
        w.warn(
            "limits.memory_restart",
            "has no systemd equivalent (MemoryMax= kills instead of restarting)",
        );
    }
    if spec.logs.max_bytes != candor_spec::LogsSpec::default().max_bytes {
        w.warn(
            "logs.max_bytes",
            "is journald's to keep (SystemMaxUse= in journald.conf), not a unit's",
        );
    }
    if spec.main {
        w.warn("main", "has no systemd equivalent (systemd does not exit)");
    }
    if let Some(n) = spec.retries {
        w.warn(
            "retries",
            format!("({n}) has no systemd equivalent: StartLimitBurst= counts every start within StartLimitIntervalSec=, not the failed runs in a row (StartLimitBurst={} with a long interval is the nearest)", n.saturating_add(1)),
        );
    }
    if let Some(s) = &spec.schedule {
        schedule_warnings(&mut w, name, oneshot, s);
    }
    if spec.schedule.is_none() || !oneshot {
        let _ = writeln!(u, "\n[Install]\nWantedBy=multi-user.target");
    }
    files.push((format!("{name}.service"), u));

    for (listen, unit) in spec.activated.iter().zip(&socket_units) {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Exported by `candor export systemd` from {}",
            spec.defined_at
        );
        let _ = writeln!(
            s,
            "[Unit]\nDescription={name}'s socket {} (from candor.toml)",
            listen.name
        );
        let _ = writeln!(s, "\n[Socket]");
        match &listen.addr {
            ListenAddr::Unix { path, mode } => {
                let _ = writeln!(s, "ListenStream={}\nSocketMode={mode:04o}", path.display());
            }
            ListenAddr::Tcp(a) => {
                let _ = writeln!(s, "ListenStream={a}");
            }
        }
        let _ = writeln!(
            s,
            "Backlog={}\nFileDescriptorName={}\nService={name}.service",
            listen.backlog, listen.name
        );
        let _ = writeln!(s, "\n[Install]\nWantedBy=sockets.target");
        files.push((unit.clone(), s));
    }
    (files, w.into_lines())
}

/// What a schedule needs in systemd: a `.timer` unit, whose lines are suggested.
fn schedule_warnings(w: &mut Warnings, name: &str, oneshot: bool, s: &candor_spec::ScheduleSpec) {
    let mut timer = match &s.when {
        When::Cron { expr, timezone } => match super::calendar::on_calendar(expr, timezone) {
            Some(cal) => format!("OnCalendar={cal}"),
            None => format!("OnCalendar= of your own (cron \"{expr}\" in {timezone} has no exact OnCalendar= form)"),
        },
        When::Every { every, jitter } => {
            let mut t = format!("OnActiveSec={} OnUnitActiveSec={}", secs(*every), secs(*every));
            if !jitter.is_zero() {
                let _ = write!(t, " RandomizedDelaySec={}", secs(*jitter));
            }
            t
        }
    };
    timer.push_str(" AccuracySec=1s");
    if s.catch_up == CatchUp::Once {
        timer.push_str(" Persistent=true");
    }
    let what = if oneshot {
        format!("needs a timer: make {name}.timer with [Timer] {timer}, and enable the timer, not the service")
    } else {
        format!("(a scheduled restart) needs a timer and a oneshot that runs `systemctl restart {name}.service`: [Timer] {timer}")
    };
    w.warn("schedule", what);
    match s.overlap {
        Overlap::Skip => {}
        o => w.warn(
            "schedule.overlap",
            format!("= {} has no systemd equivalent: a timer does not start a unit that is still running (as \"skip\")", o.as_str()),
        ),
    }
}

/// Write every service's units into `out`, and each `env` into `<out>/<name>.env` (0600);
/// warnings and where the env files went on stderr. How many units were written.
pub fn systemd(spec: &Spec, out: &Path) -> Result<usize, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    // Units name their env file by an absolute path.
    let out = std::fs::canonicalize(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut written = 0;
    for svc in spec.services.values() {
        let (files, warnings) = units(svc, &out);
        for w in warnings {
            eprintln!("{w}");
        }
        for (file, text) in files {
            let path = out.join(&file);
            write_new(&path, text.as_bytes(), 0o644)?;
            written += 1;
        }
        if !svc.env.is_empty() {
            let path = out.join(format!("{}.env", svc.name.as_str()));
            write_new(&path, env_file_text(svc).as_bytes(), 0o600)?;
            eprintln!(
                "note: {}: env ({} variable{}) written to {} (mode 0600), read by EnvironmentFile=: systemd shows Environment= values to every local user; install it with the unit, root-owned and 0600",
                svc.name.as_str(),
                svc.env.len(),
                if svc.env.len() == 1 { "" } else { "s" },
                path.display()
            );
        }
    }
    Ok(written)
}

/// Replace `path` with `bytes`, mode `mode` from its first byte: a new file beside it, renamed
/// over it (a symlink at `path` is replaced, never followed; an old file's mode is not kept).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(err)?;
    // The umask may have taken bits away from a unit's 0644 (it never adds any).
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_the_way_systemd_reads_them() {
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(
            quote("say \"hi\" \\ 100% $HOME"),
            "\"say \\\"hi\\\" \\\\ 100%% $$HOME\""
        );
    }

    #[test]
    fn env_values_are_written_so_systemd_and_candor_read_them_back_as_they_were() {
        let mut spec = ServiceSpec::with_command("a", &["/bin/true"]);
        for (k, v) in [
            ("PLAIN", "abc"),
            ("DOLLAR", "p$ss${HOME}$$"),
            ("PCT", "100%"),
            ("QUOTES", "it's \"quoted\" `cmd` \\n"),
            ("SPACES", "  padded  "),
            ("EMPTY", ""),
        ] {
            spec.env.insert(k.into(), v.into());
        }
        let text = env_file_text(&spec);
        let back = candor_spec::envfile::parse(&text).expect("valid");
        assert_eq!(back, spec.env, "{text}");
        assert!(text.contains("DOLLAR='p$ss${HOME}$$'"), "{text}");
        assert!(
            text.contains("QUOTES=\"it's \\\"quoted\\\" \\`cmd\\` \\\\n\""),
            "{text}"
        );
        let (files, _) = units(&spec, Path::new("/etc/candor"));
        let unit = &files[0].1;
        assert!(unit.contains("EnvironmentFile=/etc/candor/a.env"), "{unit}");
        assert!(
            !unit.contains("Environment=\""),
            "no value in the unit: {unit}"
        );
    }

    #[test]
    fn an_optional_env_file_stays_optional_whether_or_not_it_exists_now() {
        let mut spec = ServiceSpec::with_command("a", &["/bin/true"]);
        spec.env_files.push(candor_spec::EnvFile {
            path: "/etc/passwd".into(),
            optional: true,
        });
        spec.env_files.push(candor_spec::EnvFile {
            path: "/nonexistent/x.env".into(),
            optional: false,
        });
        let (files, _) = units(&spec, Path::new("/x"));
        let unit = &files[0].1;
        assert!(
            unit.contains("EnvironmentFile=-/etc/passwd\nEnvironmentFile=/nonexistent/x.env\n"),
            "{unit}"
        );
    }

    #[test]
    fn the_backoff_becomes_restart_steps_up_to_its_max() {
        let mut spec = ServiceSpec::with_command("a", &["/bin/true"]);
        spec.backoff.initial = Duration::from_millis(100);
        spec.backoff.max = Duration::from_secs(30);
        let (files, _) = units(&spec, Path::new("/x"));
        let unit = &files[0].1;
        assert!(
            unit.contains("RestartSec=100ms\nRestartSteps=9\nRestartMaxDelaySec=30s"),
            "{unit}"
        );
    }
}
