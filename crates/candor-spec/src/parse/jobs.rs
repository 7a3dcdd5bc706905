//! The keys of jobs and hooks: `type`, `condition`, `timeout`, `retries`, `schedule`, what a
//! oneshot may not have, and `[[daemon.hooks]]`.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::{FileCtx, Val};
use crate::{
    CatchUp, HookEvent, HookFormat, HookSpec, HookTarget, Overlap, RestartPolicy, ScheduleSpec,
    ServiceKind, ServiceSpec, When,
};

/// Keys a oneshot may not have, and why.
const NOT_FOR_ONESHOTS: [(&str, &str); 10] = [
    ("replicas", "runs one run to completion"),
    ("update", "runs one run to completion"),
    ("probe", "is judged by its exit, not probes"),
    ("watchdog", "is judged by its exit, not a watchdog"),
    ("ready", "is ready when it exits 0 (`done`)"),
    (
        "ready_timeout",
        "is ready when it exits 0; use `timeout` for how long it may run",
    ),
    ("sockets", "is judged by its exit, not by sockets"),
    ("on_unhealthy", "is judged by its exit, not by health"),
    ("reload", "runs to completion; there is nothing to reload"),
    (
        "reload_signal",
        "runs to completion; there is nothing to reload",
    ),
];

const SCHEDULE_EXAMPLE: &str =
    "e.g. schedule = { cron = \"0 3 * * *\", timezone = \"UTC\" } or { every = \"15m\" }";

impl FileCtx<'_> {
    /// `type = "simple" | "oneshot"`.
    pub(super) fn kind(&mut self, v: &Val<'_>, what: &str) -> Option<ServiceKind> {
        let s = self.string(v, what)?;
        self.choice(
            v.span().start,
            &s,
            [ServiceKind::Simple, ServiceKind::Oneshot],
            ServiceKind::as_str,
            what,
            "a service type",
            " (\"oneshot\" runs to completion)",
        )
    }

    /// `condition = ["argv", ...]`.
    pub(super) fn condition(&mut self, v: &Val<'_>, what: &str) -> Option<Vec<String>> {
        let list = self.string_list(v, what)?;
        if list.is_empty() || list[0].0.is_empty() {
            self.err(
                v.span().start,
                format!(
                    "{what} must name a program: e.g. [\"test\", \"-f\", \"/etc/app/enabled\"]"
                ),
            );
            return None;
        }
        Some(list.into_iter().map(|(s, _)| s).collect())
    }

    /// A duration that must be more than zero.
    pub(super) fn positive_duration(&mut self, v: &Val<'_>, what: &str) -> Option<Duration> {
        let d = self.duration(v, what)?;
        if d.is_zero() {
            self.err(v.span().start, format!("{what} must be more than 0s"));
            return None;
        }
        Some(d)
    }

    /// `schedule = { cron, timezone, catch_up, overlap }` or `{ every, jitter, catch_up,
    /// overlap }`.
    pub(super) fn schedule(&mut self, v: &Val<'_>, what: &str) -> Option<ScheduleSpec> {
        let t = self.table(v, what)?;
        let mut cron: Option<String> = None;
        let mut timezone: Option<(String, usize)> = None;
        let mut every: Option<Duration> = None;
        let mut jitter: Option<(Duration, usize)> = None;
        let mut catch_up = CatchUp::None;
        let mut overlap = Overlap::Skip;
        let errors_before = self.errors.len();
        for (key, value) in t.iter() {
            let k = key.get_ref().as_ref();
            let w = format!("{what}.{k}");
            match_key!(self, key, what, k => {
                "cron" => cron = self.string(value, &w),
                "timezone" => timezone = self.string(value, &w).map(|s| (s, value.span().start)),
                "every" => every = self.duration(value, &w),
                "jitter" => jitter = self.duration(value, &w).map(|d| (d, value.span().start)),
                "catch_up" => {
                    if let Some(s) = self.string(value, &w) {
                        catch_up = self
                            .choice(value.span().start, &s, [CatchUp::None, CatchUp::Once], CatchUp::as_str, &w, "a choice", " (\"once\": a fire missed while down runs once at start)")
                            .unwrap_or(catch_up);
                    }
                },
                "overlap" => {
                    if let Some(s) = self.string(value, &w) {
                        overlap = self
                            .choice(value.span().start, &s, [Overlap::Skip, Overlap::Queue, Overlap::KillPrevious], Overlap::as_str, &w, "a choice", " (what a fire does while the last run still goes)")
                            .unwrap_or(overlap);
                    }
                },
            })
        }
        let at = v.span().start;
        let when = match (cron, every) {
            (Some(_), Some(_)) => {
                self.err(at, format!("{what} has both `cron` and `every`; keep one"));
                return None;
            }
            (None, None) => {
                if self.errors.len() == errors_before {
                    self.err(
                        at,
                        format!("{what} needs `cron` or `every`; {SCHEDULE_EXAMPLE}"),
                    );
                }
                return None;
            }
            (Some(expr), None) => {
                if let Some((_, at)) = jitter {
                    self.err(
                        at,
                        format!(
                            "{what}.jitter goes with `every`; a cron schedule fires at its times"
                        ),
                    );
                }
                let timezone = timezone.map_or_else(|| "UTC".to_string(), |(s, _)| s);
                When::Cron { expr, timezone }
            }
            (None, Some(every)) => {
                if let Some((_, at)) = timezone {
                    self.err(
                        at,
                        format!(
                            "{what}.timezone goes with `cron`; `every` counts time, not the clock"
                        ),
                    );
                }
                When::Every {
                    every,
                    jitter: jitter.map(|(d, _)| d).unwrap_or_default(),
                }
            }
        };
        if let Err(why) = crate::schedule_check::check(&when) {
            self.err(at, format!("{what}: {why}"));
            return None;
        }
        (self.errors.len() == errors_before).then_some(ScheduleSpec {
            when,
            catch_up,
            overlap,
        })
    }

    /// What `type`, `timeout`, `retries` and `schedule` ask of the rest of the section.
    pub(super) fn finish_job(
        &mut self,
        at: usize,
        section: &str,
        t: &DeTable<'_>,
        spec: &mut ServiceSpec,
    ) {
        let given = |k: &str| t.iter().any(|(key, _)| key.get_ref() == k);
        if spec.kind == ServiceKind::Oneshot {
            if !given("restart") {
                spec.restart = RestartPolicy::Never;
            } else if spec.restart == RestartPolicy::Always {
                self.err(at, format!("{section}: a oneshot runs to completion, so restart = \"always\" would run it forever; use restart = \"on-failure\" (with `retries`) or a `schedule`"));
            }
            for (key, why) in NOT_FOR_ONESHOTS {
                if given(key) {
                    self.err(at, format!("{section}: `{key}` does not apply to a oneshot: it {why}; remove it (or make it a long-running service)"));
                }
            }
        } else if spec.timeout.is_some() {
            self.err(at, format!("{section}: `timeout` is how long a oneshot may run; a long-running service has ready_timeout (to become ready) and stop.timeout (to stop)"));
        }
        if spec.retries.is_some() && spec.restart == RestartPolicy::Never {
            self.err(at, format!("{section}: `retries` limits restarts, and restart = \"never\"; add restart = \"on-failure\""));
        }
        if spec.schedule.is_some() && given("replicas") {
            self.err(at, format!("{section}: a schedule on a replicated service is not supported; schedule a oneshot that runs `candor restart` of it, or drop `replicas`"));
        }
    }

    /// `[[daemon.hooks]]`: an array of tables.
    pub(super) fn hooks(&mut self, v: &Val<'_>) -> Vec<HookSpec> {
        let DeValue::Array(items) = v.get_ref() else {
            self.err(
                v.span().start,
                "daemon.hooks must be an array of tables: write each as [[daemon.hooks]]"
                    .to_string(),
            );
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.hook(item, &format!("daemon.hooks[{i}]")))
            .collect()
    }

    fn hook(&mut self, v: &Val<'_>, what: &str) -> Option<HookSpec> {
        let t = self.table(v, what)?;
        let at = v.span().start;
        let errors_before = self.errors.len();
        let mut on = Vec::new();
        let mut services = Vec::new();
        let mut exec = None;
        let mut webhook = None;
        let mut timeout = Duration::from_secs(10);
        let mut retries = 3;
        for (key, value) in t.iter() {
            let k = key.get_ref().as_ref();
            let w = format!("{what}.{k}");
            match_key!(self, key, what, k => {
                "on" => {
                    for (name, at) in self.string_list(value, &w).unwrap_or_default() {
                        if let Some(e) = self.choice(at, &name, HookEvent::ALL, HookEvent::as_str, &w, "an event", "") {
                            on.push(e);
                        }
                    }
                    if on.is_empty() && self.errors.len() == errors_before {
                        self.err(value.span().start, format!("{w} must name at least one event, e.g. on = [\"failed\", \"job_failed\"]"));
                    }
                },
                "services" => {
                    services = self.string_list(value, &w).unwrap_or_default().into_iter().map(|(s, _)| s).collect();
                },
                "exec" => exec = self.condition(value, &w),
                "webhook" => webhook = self.webhook(value, &w),
                "timeout" => timeout = self.positive_duration(value, &w).unwrap_or(timeout),
                "retries" => retries = self.int(value, &w, 0, 100).map_or(retries, |n| n as u32),
            })
        }
        if !t.iter().any(|(k, _)| k.get_ref() == "on") {
            self.err(at, format!("{what} needs `on`, e.g. on = [\"failed\", \"unhealthy\", \"recovered\", \"job_failed\"]"));
        }
        let target = match (exec, webhook) {
            (Some(_), Some(_)) => {
                self.err(
                    at,
                    format!("{what} has both `exec` and `webhook`; write two hooks"),
                );
                return None;
            }
            (Some(argv), None) => HookTarget::Exec(argv),
            (None, Some(w)) => w,
            (None, None) => {
                if self.errors.len() == errors_before {
                    self.err(at, format!("{what} needs `exec = [\"/path/to/cmd\"]` or `webhook = {{ url = \"http://127.0.0.1:9000/hook\" }}`"));
                }
                return None;
            }
        };
        (self.errors.len() == errors_before).then(|| HookSpec {
            on,
            services,
            target,
            timeout,
            retries,
            defined_at: self.pos(at),
        })
    }

    /// `webhook = { url = "http://…", headers = { … }, format = "json" | "slack" }`. A header's
    /// value is never put in a message: it may be a token.
    fn webhook(&mut self, v: &Val<'_>, what: &str) -> Option<HookTarget> {
        let t = self.table(v, what)?;
        let errors_before = self.errors.len();
        let mut url = None;
        let mut headers = BTreeMap::new();
        let mut format = HookFormat::Json;
        for (key, value) in t.iter() {
            let k = key.get_ref().as_ref();
            let w = format!("{what}.{k}");
            match_key!(self, key, what, k => {
                "url" => {
                    if let Some(u) = self.string(value, &w) {
                        match check_url(&u) {
                            Ok(()) => url = Some(u),
                            // The url's path is not shown: it often holds the receiver's token.
                            Err(why) => self.err(value.span().start, format!("{w} = \"{}\": {why}", crate::jobs::url_host_only(&u))),
                        }
                    }
                },
                "headers" => {
                    let Some(h) = self.table(value, &w) else { continue };
                    for (name, hv) in h.iter() {
                        let name = name.get_ref().to_string();
                        let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                        if !valid_name {
                            self.err(hv.span().start, format!("{w}: \"{name}\" is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"));
                            continue;
                        }
                        match hv.get_ref() {
                            DeValue::String(s) if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) => {
                                self.err(hv.span().start, format!("{w}.{name}: a header value may not contain a line break (its value is not shown)"));
                            }
                            DeValue::String(s) => {
                                headers.insert(name, s.to_string());
                            }
                            other => self.err(hv.span().start, format!("{w}.{name} must be a string, found {}", other.type_str())),
                        }
                    }
                },
                "format" => {
                    if let Some(s) = self.string(value, &w) {
                        format = self
                            .choice(value.span().start, &s, [HookFormat::Json, HookFormat::Slack], HookFormat::as_str, &w, "a format", " (\"slack\": {\"text\": …} for Slack, Discord and Mattermost)")
                            .unwrap_or(format);
                    }
                },
            })
        }
        let Some(url) = url else {
            if self.errors.len() == errors_before {
                self.err(v.span().start, format!("{what} needs `url`, e.g. webhook = {{ url = \"http://127.0.0.1:9000/hook\" }}"));
            }
            return None;
        };
        (self.errors.len() == errors_before).then_some(HookTarget::Webhook {
            url,
            headers,
            format,
        })
    }
}

/// A webhook's URL: plain `http://host[:port][/path]`.
pub(super) fn check_url(u: &str) -> Result<(), String> {
    if u.starts_with("https://") {
        return Err("Candor speaks plain HTTP to a webhook; for an https receiver point it at a relay on this host (e.g. a loopback proxy that forwards over TLS)".into());
    }
    let Some(rest) = u.strip_prefix("http://") else {
        return Err("expected http://host[:port]/path".into());
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err("expected http://host[:port]/path (no user or password in it; put a token in `headers`)".into());
    }
    if let Some((_, port)) = authority
        .rsplit_once(':')
        .filter(|_| !authority.ends_with(']'))
    {
        if port.parse::<u16>().is_err() {
            return Err(format!("\"{port}\" is not a port"));
        }
    }
    Ok(())
}

/// Cross-service checks of jobs and hooks: `after` a scheduled oneshot, hooks naming
/// services that do not exist.
pub(super) fn check_jobs(
    services: &BTreeMap<crate::ServiceName, ServiceSpec>,
    hooks: &[HookSpec],
    errors: &mut Vec<crate::SpecError>,
) {
    for spec in services.values() {
        for dep in &spec.after {
            let Some(d) = services.get(dep) else { continue };
            if d.kind == ServiceKind::Oneshot && d.schedule.is_some() {
                errors.push(super::at_text(
                    &spec.defined_at,
                    format!("service `{}` is after `{dep}`, a scheduled oneshot: a service cannot wait for a schedule; remove it from `after` (or drop the schedule so it runs at start)", spec.name),
                ));
            }
        }
    }
    for hook in hooks {
        unknown_services(
            "daemon.hooks",
            &hook.services,
            &hook.defined_at,
            services,
            errors,
        );
    }
}

/// Each name in an entry's `services` (`what`, defined at `at`) that is not a configured
/// service is an error, with a "did you mean".
pub(super) fn unknown_services(
    what: &str,
    names: &[String],
    at: &str,
    services: &BTreeMap<crate::ServiceName, ServiceSpec>,
    errors: &mut Vec<crate::SpecError>,
) {
    for name in names {
        let known = crate::ServiceName::new(name).is_ok_and(|n| services.contains_key(&n));
        if !known {
            let configured: Vec<&str> = services.keys().map(|k| k.as_str()).collect();
            let hint = crate::error::did_you_mean(name, &configured)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            errors.push(super::at_text(
                at,
                format!("{what}: services names `{name}`, which is not a configured service{hint}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::{
        CatchUp, HookEvent, HookFormat, HookTarget, Overlap, RestartPolicy, ServiceKind, When,
    };

    fn parse(text: &str) -> Result<crate::Spec, Vec<String>> {
        crate::parse_str(Path::new("/etc/candor/candor.toml"), text)
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    fn errors(text: &str) -> String {
        parse(text).expect_err("should not parse").join("\n")
    }

    fn svc<'a>(s: &'a crate::Spec, name: &str) -> &'a crate::ServiceSpec {
        &s.services[&crate::ServiceName::new(name).unwrap()]
    }

    #[test]
    fn the_contract_example_parses() {
        let s = parse(
            r#"
[service.migrate]
type = "oneshot"
command = ["/bin/migrate"]
condition = ["test", "-f", "/etc/app/enabled"]
timeout = "10m"
[service.api]
command = ["/bin/api"]
after = ["migrate"]
[service.backup]
type = "oneshot"
command = ["/bin/backup"]
schedule = { cron = "0 3 * * *", timezone = "UTC", catch_up = "once", overlap = "skip" }
[service.warm]
type = "oneshot"
command = ["/bin/warm"]
restart = "on-failure"
retries = 2
schedule = { every = "15m", jitter = "1m", overlap = "kill-previous" }
[[daemon.hooks]]
on = ["failed", "unhealthy", "recovered", "job_failed"]
webhook = { url = "http://127.0.0.1:9000/hook", format = "json" }
[[daemon.hooks]]
on = ["job_done"]
services = ["backup"]
exec = ["/usr/local/bin/notify"]
timeout = "5s"
retries = 1
"#,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let m = svc(&s, "migrate");
        assert_eq!(m.kind, ServiceKind::Oneshot);
        assert_eq!(m.restart, RestartPolicy::Never, "a oneshot's default");
        assert_eq!(m.timeout, Some(Duration::from_secs(600)));
        assert_eq!(m.condition.as_deref().unwrap()[0], "test");
        let b = svc(&s, "backup").schedule.clone().unwrap();
        assert_eq!(
            b.when,
            When::Cron {
                expr: "0 3 * * *".into(),
                timezone: "UTC".into()
            }
        );
        assert_eq!((b.catch_up, b.overlap), (CatchUp::Once, Overlap::Skip));
        let w = svc(&s, "warm");
        assert_eq!(w.retries, Some(2));
        assert_eq!(w.restart, RestartPolicy::OnFailure);
        let ws = w.schedule.clone().unwrap();
        assert_eq!(
            ws.when,
            When::Every {
                every: Duration::from_secs(900),
                jitter: Duration::from_secs(60)
            }
        );
        assert_eq!(ws.overlap, Overlap::KillPrevious);
        assert_eq!(svc(&s, "api").kind, ServiceKind::Simple);
        let h = &s.daemon.hooks;
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].on.len(), 4);
        assert!(matches!(
            &h[0].target,
            HookTarget::Webhook {
                format: HookFormat::Json,
                ..
            }
        ));
        assert_eq!((h[0].timeout, h[0].retries), (Duration::from_secs(10), 3));
        assert_eq!(h[1].on, [HookEvent::JobDone]);
        assert_eq!(h[1].services, ["backup"]);
        assert_eq!((h[1].timeout, h[1].retries), (Duration::from_secs(5), 1));
    }

    const HEAD: &str = "[service.j]\ncommand = [\"/bin/j\"]\n";

    #[test]
    fn bad_job_keys_are_named_with_the_fix() {
        let cases: &[(&str, &str)] = &[
            ("type = \"oneshoot\"", "did you mean \"oneshot\""),
            (
                "type = \"oneshot\"\nrestart = \"always\"",
                "use restart = \"on-failure\"",
            ),
            (
                "type = \"oneshot\"\nprobe = { exec = [\"/bin/true\"] }",
                "`probe` does not apply to a oneshot",
            ),
            (
                "type = \"oneshot\"\nreplicas = 2",
                "`replicas` does not apply to a oneshot",
            ),
            (
                "type = \"oneshot\"\nready = \"notify\"",
                "`ready` does not apply to a oneshot",
            ),
            (
                "timeout = \"1m\"",
                "`timeout` is how long a oneshot may run",
            ),
            (
                "type = \"oneshot\"\ntimeout = \"0s\"",
                "must be more than 0s",
            ),
            (
                "type = \"oneshot\"\nretries = 2",
                "add restart = \"on-failure\"",
            ),
            ("condition = []", "must name a program"),
            (
                "schedule = { every = \"15m\", cron = \"* * * * *\" }",
                "both `cron` and `every`",
            ),
            (
                "schedule = { catch_up = \"once\" }",
                "needs `cron` or `every`",
            ),
            ("schedule = { cron = \"0 3 * *\" }", "is not a cron pattern"),
            (
                "schedule = { cron = \"0 3 * * *\", timezone = \"Europe/Berln\" }",
                "is not an IANA time zone",
            ),
            ("schedule = { cron = \"0 0 31 2 *\" }", "never fires"),
            ("schedule = { every = \"500ms\" }", "at least 1s"),
            (
                "schedule = { every = \"1m\", jitter = \"1m\" }",
                "jitter must be less than every",
            ),
            (
                "schedule = { every = \"1m\", timezone = \"UTC\" }",
                "timezone goes with `cron`",
            ),
            (
                "schedule = { cron = \"* * * * *\", jitter = \"1s\" }",
                "jitter goes with `every`",
            ),
            (
                "schedule = { every = \"1m\", overlap = \"wait\" }",
                "expected \"skip\", \"queue\" or \"kill-previous\"",
            ),
            (
                "schedule = { every = \"1m\", catchup = \"once\" }",
                "did you mean `catch_up`",
            ),
            (
                "schedule = { every = \"1m\" }\nreplicas = 2",
                "schedule on a replicated service is not supported",
            ),
        ];
        for (extra, want) in cases {
            let e = errors(&format!("{HEAD}{extra}\n"));
            assert!(e.contains(want), "{extra:?}: expected {want:?} in:\n{e}");
            assert!(e.contains("candor.toml:"), "{extra:?}: no file:line in {e}");
        }
    }

    #[test]
    fn a_service_cannot_be_after_a_scheduled_oneshot() {
        let e = errors("[service.b]\ntype = \"oneshot\"\ncommand = [\"/bin/b\"]\nschedule = { every = \"1h\" }\n[service.api]\ncommand = [\"/bin/api\"]\nafter = [\"b\"]\n");
        assert!(e.contains("is after `b`, a scheduled oneshot"), "{e}");
        // After an unscheduled oneshot is what migrations are for.
        parse("[service.b]\ntype = \"oneshot\"\ncommand = [\"/bin/b\"]\n[service.api]\ncommand = [\"/bin/api\"]\nafter = [\"b\"]\n").unwrap();
    }

    #[test]
    fn bad_hooks_are_named_and_a_header_value_is_never_shown() {
        let cases: &[(&str, &str)] = &[
            ("on = [\"failed\"]\nwebhook = { url = \"https://hooks.example/x\" }", "speaks plain HTTP"),
            ("on = [\"failed\"]\nwebhook = { url = \"ftp://x\" }", "expected http://host[:port]/path"),
            ("on = [\"failed\"]\nwebhook = { url = \"http://user:pw@host/x\" }", "no user or password"),
            ("on = [\"failed\"]\nwebhook = { url = \"http://host:99999/x\" }", "is not a port"),
            ("on = [\"faild\"]\nexec = [\"/bin/x\"]", "did you mean \"failed\""),
            ("on = []\nexec = [\"/bin/x\"]", "at least one event"),
            ("exec = [\"/bin/x\"]", "needs `on`"),
            ("on = [\"failed\"]", "needs `exec"),
            ("on = [\"failed\"]\nexec = [\"/bin/x\"]\nwebhook = { url = \"http://h/x\" }", "both `exec` and `webhook`"),
            ("on = [\"failed\"]\nservices = [\"nope\"]\nexec = [\"/bin/x\"]", "`nope`, which is not a configured service"),
            ("on = [\"failed\"]\nwebhook = { url = \"http://h/x\", format = \"xml\" }", "expected \"json\" or \"slack\""),
            ("on = [\"failed\"]\nwebhook = { url = \"http://h/x\", headers = { \"Bad Name\" = \"v\" } }", "is not an HTTP header name"),
        ];
        for (body, want) in cases {
            let e = errors(&format!("[[daemon.hooks]]\n{body}\n{HEAD}"));
            assert!(e.contains(want), "{body:?}: expected {want:?} in:\n{e}");
        }
        let secret = "Bearer s3cr3t-t0ken";
        let e = errors(&format!(
            "[[daemon.hooks]]\non = [\"failed\"]\nwebhook = {{ url = \"http://h/x\", headers = {{ Authorization = \"{secret}\\r\\nX: y\" }} }}\n{HEAD}"
        ));
        assert!(e.contains("may not contain a line break"), "{e}");
        assert!(!e.contains("s3cr3t"), "a header value was shown: {e}");
        // Nor a url's path (Slack-style urls carry the token there), in an error or a Debug.
        let e = errors(&format!(
            "[[daemon.hooks]]\non = [\"failed\"]\nwebhook = {{ url = \"http://relay:99999/services/T0/B0/s3cr3t\" }}\n{HEAD}"
        ));
        assert!(e.contains("is not a port") && !e.contains("s3cr3t"), "{e}");
        let s = parse(&format!(
            "[[daemon.hooks]]\non = [\"failed\"]\nwebhook = {{ url = \"http://relay:8080/services/s3cr3t\", headers = {{ Authorization = \"Bearer s3cr3t\" }} }}\n{HEAD}"
        ))
        .unwrap();
        let shown = format!("{:?}", s.daemon);
        assert!(
            shown.contains("http://relay:8080/…") && shown.contains("Authorization"),
            "{shown}"
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
