//! Human output: the status table, one service's details, durations and sizes.

pub mod groups;
pub mod jobs;
pub mod logs;

use std::time::Duration;

use candor_api::{DaemonInfo, ServiceStatus};
use candor_spec::format_duration;

pub fn uptime(s: Option<f64>) -> String {
    s.map(|s| format_duration(Duration::from_secs_f64(s.max(0.0))))
        .unwrap_or_else(|| "-".into())
}

fn bytes(n: Option<u64>) -> String {
    match n {
        None => "-".into(),
        Some(n) if n >= 1 << 30 => format!("{:.1}G", n as f64 / (1u64 << 30) as f64),
        Some(n) if n >= 1 << 20 => format!("{:.1}M", n as f64 / (1u64 << 20) as f64),
        Some(n) => format!("{}K", n / 1024),
    }
}

pub fn header(info: &DaemonInfo) -> String {
    let r = &info.resources;
    let recovered = info
        .store
        .recovered
        .as_deref()
        .map(|w| format!("\nwarning: {w}"))
        .unwrap_or_default();
    let faults = match info.faults.recent.last() {
        Some(last) => format!(
            "\nwarning: {} panic{} caught in Candor's own tasks, each carried on (last: {} at {}: {}); see `candor events`",
            info.faults.count,
            if info.faults.count == 1 { "" } else { "s" },
            last.task,
            last.at,
            last.message
        ),
        None => String::new(),
    };
    let h = &info.hooks;
    let hooks = if h.sent + h.failed + h.dropped + h.queued == 0 {
        String::new()
    } else {
        format!(
            "\nhooks: {} sent, {} failed attempts, {} dropped, {} queued",
            h.sent, h.failed, h.dropped, h.queued
        )
    };
    let forward: String = info.forward.iter().map(forward_line).collect();
    format!(
        "candor {} · pid {} · containment: {}\ndaemon: fds {}/{} ({:.0} %), rss {}; notify: {} received, {} dropped; logs: {} of {} on disk",
        info.version,
        info.pid,
        info.containment_detail,
        r.fds,
        r.fd_limit,
        r.fd_pct,
        bytes(Some(r.rss_bytes)),
        info.notify.received,
        info.notify.dropped_oversized
            + info.notify.dropped_strangers
            + info.notify.dropped_rate_limited
            + info.notify.dropped_overflow,
        bytes(Some(info.store.log_bytes)),
        bytes(Some(info.store.log_cap_bytes)),
    ) + &access(info)
        + &hooks
        + &forward
        + &recovered
        + &faults
}

/// "forward otlp http://c:4318: 1200 sent, 30 retried, 0 dropped, 0 behind" (and why it is
/// down, since when).
fn forward_line(f: &candor_api::ForwardStats) -> String {
    let down = match (&f.down, &f.down_since) {
        (Some(why), Some(since)) => format!("; down since {since}: {why}"),
        (Some(why), None) => format!("; down: {why}"),
        _ => String::new(),
    };
    let metrics = match &f.metrics {
        Some(m) => format!(
            "; metrics: {} sent, {} failed{}",
            m.sent,
            m.failed,
            m.error
                .as_ref()
                .map(|e| format!(" (last: {e})"))
                .unwrap_or_default()
        ),
        None => String::new(),
    };
    format!(
        "\nforward {} {}: {} sent, {} retried, {} dropped, {} behind{down}{metrics}",
        f.kind, f.target, f.sent, f.retried, f.dropped, f.behind
    )
}

/// "control: root only; operators: group candor; dashboard: 127.0.0.1:9631, 2 tokens": who
/// can reach the daemon (a line of the header; none from a daemon that does not say).
pub fn access(info: &DaemonInfo) -> String {
    let Some(a) = &info.access else {
        return String::new();
    };
    let control = match a.control_uid {
        0 => "root only".to_string(),
        uid => format!("uid {uid} and root"),
    };
    let operators = match &a.operators {
        Some(g) if a.operators_may_shutdown => {
            format!("group {} (may shut down)", g.name)
        }
        Some(g) => format!("group {}", g.name),
        None => "none".into(),
    };
    let dashboard = match &a.dashboard {
        Some(at) => format!(
            "{at}, {} token{}",
            a.dashboard_tokens,
            if a.dashboard_tokens == 1 { "" } else { "s" }
        ),
        None => "off".into(),
    };
    format!("\ncontrol: {control}; operators: {operators}; dashboard: {dashboard}")
}

/// "HH:MM:SS UTC" of an API timestamp (RFC 3339, UTC), or the timestamp as it is.
fn clock(at: &str) -> String {
    match at.get(11..19) {
        Some(t) if at.ends_with('Z') => format!("{t} UTC"),
        _ => at.to_string(),
    }
}

/// The board's shared causes and held restarts, one line each (each ending in a newline;
/// empty when there is none): "shared cause: 312 services failing probes of 127.0.0.1:8000
/// since 14:02:11 UTC; their restarts are held until it recovers". Counted from the statuses
/// themselves, so it agrees with the table printed beside it.
pub fn causes(services: &[ServiceStatus]) -> String {
    // target -> (services, earliest since, held by it)
    let mut by_target: std::collections::BTreeMap<&str, (usize, &str, usize)> = Default::default();
    for s in services {
        let Some(c) = &s.shared_cause else { continue };
        let e = by_target
            .entry(c.target.as_str())
            .or_insert((0, c.since.as_str(), 0));
        e.0 += 1;
        // RFC 3339 UTC timestamps of one format: the earliest sorts first.
        e.1 = e.1.min(c.since.as_str());
        e.2 += usize::from(s.restart_held.as_deref() == Some("shared cause"));
    }
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut out = String::new();
    for (target, (n, since, held)) in by_target {
        let held = match held {
            0 => String::new(),
            h if h == n => format!(
                "; {} held until it recovers",
                if n == 1 {
                    "its restart is"
                } else {
                    "their restarts are"
                }
            ),
            h => format!("; restarts of {h} of them held until it recovers"),
        };
        out += &format!(
            "shared cause: {} failing probes of {target} since {}{held}\n",
            plural(n, "service", "services"),
            clock(since)
        );
    }
    let budget = services
        .iter()
        .filter(|s| s.restart_held.as_deref() == Some("restart budget"))
        .count();
    if budget > 0 {
        out += &format!(
            "restart budget: spent; {} unhealthy, {} held until the budget allows (see the reason)\n",
            plural(budget, "service", "services"),
            if budget == 1 { "its restart" } else { "their restarts" },
        );
    }
    out
}

/// What a service's restart is held by, in a few words ("shared cause; restart held"), for
/// where its reason does not fit; None when nothing is held or shared.
fn held_words(s: &ServiceStatus) -> Option<&'static str> {
    match (s.restart_held.as_deref(), &s.shared_cause) {
        (Some("shared cause"), _) => Some("shared cause; restart held"),
        (Some(_), _) => Some("restart held (restart budget)"),
        (None, Some(_)) => Some("shared cause"),
        (None, None) => None,
    }
}

/// A reason cut to `width` characters. A service whose restart is held, or whose cause is
/// shared, keeps those words at the end (they come last in the reason and would be the first
/// cut away): "http probe failed 3 times in a row: timed o… shared cause; restart held".
pub fn cut_reason(s: &ServiceStatus, width: usize) -> String {
    let reason = &s.reason;
    if reason.chars().count() <= width {
        return reason.clone();
    }
    match held_words(s) {
        Some(tail) if tail.chars().count() + 12 <= width => {
            let head: String = reason
                .chars()
                .take(width - tail.chars().count() - 2)
                .collect();
            format!("{}… {tail}", head.trim_end())
        }
        _ => {
            reason
                .chars()
                .take(width.saturating_sub(1))
                .collect::<String>()
                + "…"
        }
    }
}

/// The status table: services in the daemon's (name) order, each replicated service's row
/// with its instances indented under it by index.
pub fn table(services: &[ServiceStatus]) -> String {
    let rows: Vec<[String; 8]> = groups::arrange(services, |_, _| std::cmp::Ordering::Equal)
        .iter()
        .map(|placed| {
            let s = placed.service;
            // A finished job has no process: nothing of one is shown, whatever came with it.
            let live = !finished_job(s);
            [
                placed.name(),
                s.state.clone(),
                cut_reason(s, REASON_WIDTH),
                s.pid
                    .filter(|_| live)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                uptime(s.uptime_s.filter(|_| live)),
                s.restarts.to_string(),
                s.fds
                    .as_ref()
                    .filter(|_| live)
                    .map(|f| format!("{}/{}", f.count, f.limit))
                    .unwrap_or_else(|| "-".into()),
                bytes(s.rss_bytes.filter(|_| live)),
            ]
        })
        .collect();
    let head = [
        "NAME", "STATE", "REASON", "PID", "UPTIME", "RESTARTS", "FDS", "RSS",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    widths[2] = widths[2].min(REASON_WIDTH);
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut parts = Vec::new();
        for (i, c) in cells.iter().enumerate() {
            let mut c = c.to_string();
            if c.chars().count() > widths[i] {
                c = c.chars().take(widths[i] - 1).collect::<String>() + "…";
            }
            parts.push(format!("{:w$}", c, w = widths[i]));
        }
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(head.to_vec(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// A oneshot that completed (`done`) or whose condition skipped its start (`skipped`): a
/// job's end, not a process's.
pub fn finished_job(s: &ServiceStatus) -> bool {
    matches!(s.state.as_str(), "done" | "skipped")
}

/// The widest the table's REASON column gets.
const REASON_WIDTH: usize = 70;

pub fn details(s: &ServiceStatus) -> String {
    if let Some(r) = &s.replicas {
        return groups::details(s, r);
    }
    let mut out = format!(
        "{}: {}\n  reason:   {}\n  since:    {}\n",
        s.name, s.state, s.reason, s.since
    );
    if let Some(pid) = s.pid {
        out += &format!("  pid:      {pid} (up {})\n", uptime(s.uptime_s));
    }
    if let Some(r) = &s.ready {
        out += &format!("  ready:    via {} at {}\n", r.via, r.at);
    }
    if finished_job(s) {
        out += &format!(
            "  runs:     {}; its history: `candor jobs {}`\n",
            s.runs, s.name
        );
    } else {
        out += &format!("  restarts: {} (runs: {})\n", s.restarts, s.runs);
    }
    if let Some(e) = &s.last_exit {
        let how = match (&e.code, &e.signal) {
            (_, Some(sig)) => format!("killed by {sig}"),
            (Some(c), None) => format!("exited with code {c}"),
            _ => "exited".into(),
        };
        out += &format!(
            "  last exit: {how} at {} after {}\n",
            e.at,
            uptime(Some(e.uptime_s))
        );
    }
    if let Some(c) = &s.shared_cause {
        out += &format!(
            "  shared:   probes of {} fail for {} since {} (a shared cause)\n",
            c.target,
            match c.services {
                1 => "1 service".to_string(),
                n => format!("{n} services"),
            },
            c.since
        );
    }
    if let Some(h) = &s.restart_held {
        out += &format!("  held:     restart held ({h})\n");
    }
    if let Some(n) = &s.next_start {
        out += &format!("  next start: {n}\n");
    }
    if let Some(t) = &s.status_text {
        out += &format!("  its status: {t}\n");
    }
    for p in &s.probes {
        out += &format!(
            "  probe:    {} {} ({}) in {} ms at {}\n",
            p.kind,
            if p.ok { "ok" } else { "FAILED" },
            p.detail,
            p.latency_ms,
            p.at
        );
    }
    for k in &s.sockets {
        let how = match (k.exists, k.accepts) {
            (false, _) => "MISSING on disk",
            (true, false) => "on disk, REFUSES connections",
            (true, true) => "on disk, accepts connections",
        };
        out += &format!("  socket:   {} {how}\n", k.path);
    }
    if let Some(f) = &s.fds {
        let trend = match (f.per_hour, f.eta_s) {
            (Some(r), Some(eta)) if r > 0.0 => {
                format!("; +{r}/h, at the limit in {}", uptime(Some(eta)))
            }
            (Some(r), _) => format!("; {r:+}/h"),
            _ => String::new(),
        };
        out += &format!(
            "  fds:      {} of {} ({} %){trend}\n",
            f.count, f.limit, f.pct
        );
    }
    if s.rss_bytes.is_some() {
        out += &format!("  memory:   {} resident\n", bytes(s.rss_bytes));
    }
    out += &format!(
        "  logs:     {}, {} dropped, {}\n",
        count(s.logs.lines, "line", "lines"),
        s.logs.dropped,
        count(s.logs.folded, "folded repeat", "folded repeats")
    );
    out
}

/// `n` with its noun, singular for 1: "1 line", "2 lines".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod access_tests {
    use super::*;

    fn info(access: candor_api::Access) -> DaemonInfo {
        let mut info = serde_json::from_value::<DaemonInfo>(blank()).unwrap();
        info.access = Some(access);
        info
    }

    fn blank() -> serde_json::Value {
        serde_json::json!({
            "pid": 1, "version": "0", "started_at": "", "config": "", "state_dir": "",
            "socket": "", "containment": "", "containment_detail": "", "services": 0,
            "store_dropped": {"lines": 0, "dropped": 0, "folded": 0},
            "notify": serde_json::to_value(candor_api::NotifyStats::default()).unwrap(),
            "resources": serde_json::to_value(candor_api::DaemonResources::default()).unwrap(),
        })
    }

    #[test]
    fn the_access_line_names_the_admin_the_operators_and_the_dashboard() {
        let mut a = candor_api::Access {
            control_uid: 0,
            socket_mode: "0660".into(),
            operators: Some(candor_api::Group {
                name: "candor".into(),
                gid: 990,
            }),
            operators_may_shutdown: false,
            dashboard: Some("127.0.0.1:9631".into()),
            dashboard_tokens: 2,
        };
        assert_eq!(
            access(&info(a.clone())),
            "\ncontrol: root only; operators: group candor; dashboard: 127.0.0.1:9631, 2 tokens"
        );
        a.control_uid = 1000;
        a.operators = None;
        a.dashboard = None;
        assert_eq!(
            access(&info(a)),
            "\ncontrol: uid 1000 and root; operators: none; dashboard: off"
        );
        let old = serde_json::from_value::<DaemonInfo>(blank()).unwrap();
        assert_eq!(access(&old), "", "a daemon that does not say");
    }

    #[test]
    fn the_header_says_what_the_hooks_delivered_once_they_did_anything() {
        let mut i = serde_json::from_value::<DaemonInfo>(blank()).unwrap();
        assert!(!header(&i).contains("hooks:"), "no line without hooks");
        i.hooks = candor_api::HookStats {
            sent: 4,
            failed: 3,
            dropped: 1,
            queued: 0,
        };
        assert!(header(&i).contains("\nhooks: 4 sent, 3 failed attempts, 1 dropped, 0 queued"));
    }

    #[test]
    fn the_header_has_a_line_per_forwarding_target_with_why_it_is_down() {
        let mut i = info(candor_api::Access::default());
        assert!(!header(&i).contains("forward"), "no line without targets");
        i.forward = vec![candor_api::ForwardStats {
            kind: "syslog".into(),
            target: "udp://127.0.0.1:514".into(),
            at: "candor.toml:3:1".into(),
            sent: 10,
            retried: 4,
            dropped: 2,
            behind: 7,
            down: Some("udp://127.0.0.1:514: Connection refused".into()),
            down_since: Some("2026-12-07T13:00:00.000Z".into()),
            metrics: None,
        }];
        assert!(header(&i).contains("\nforward syslog udp://127.0.0.1:514: 10 sent, 4 retried, 2 dropped, 7 behind; down since 2026-12-07T13:00:00.000Z: udp://127.0.0.1:514: Connection refused"));
    }

    #[test]
    fn counts_say_one_line_and_two_lines() {
        assert_eq!(count(1, "line", "lines"), "1 line");
        assert_eq!(count(0, "line", "lines"), "0 lines");
        assert_eq!(
            count(2, "folded repeat", "folded repeats"),
            "2 folded repeats"
        );
    }
}

#[cfg(test)]
mod cause_tests {
    use super::*;

    const REASON: &str = "http probe failed 3 times in a row: timed out after 1s — shared with 312 services probing 127.0.0.1:8000 for 40s; restart held until it recovers";

    fn svc(name: &str, shared: Option<(&str, &str)>, held: Option<&str>) -> ServiceStatus {
        serde_json::from_value(serde_json::json!({
            "name": name, "state": if held.is_some() { "unhealthy" } else { "running" },
            "reason": if held.is_some() { REASON } else { "running since 14:00:00" },
            "since": "t", "pid": 7, "uptime_s": 1.0, "restarts": 0, "last_exit": null,
            "ready": null, "probes": [], "sockets": [], "fds": null, "rss_bytes": null,
            "logs": {"lines": 0, "dropped": 0}, "runs": 1, "next_start": null,
            "status_text": null,
            "shared_cause": shared.map(|(t, since)| serde_json::json!(
                {"target": t, "services": 312, "since": since})),
            "restart_held": held,
        }))
        .unwrap()
    }

    #[test]
    fn the_status_header_names_each_shared_cause_once_with_its_count_and_start() {
        let list = vec![
            svc(
                "a",
                Some(("127.0.0.1:8000", "2026-12-07T14:02:30Z")),
                Some("shared cause"),
            ),
            svc(
                "b",
                Some(("127.0.0.1:8000", "2026-12-07T14:02:11Z")),
                Some("shared cause"),
            ),
            svc("c", Some(("/run/db.sock", "2026-12-07T14:05:00Z")), None),
            svc(
                "d",
                Some(("/run/db.sock", "2026-12-07T14:04:00Z")),
                Some("shared cause"),
            ),
            svc("e", None, Some("restart budget")),
            svc("f", None, None),
        ];
        assert_eq!(
            causes(&list),
            "shared cause: 2 services failing probes of /run/db.sock since 14:04:00 UTC; restarts of 1 of them held until it recovers\n\
             shared cause: 2 services failing probes of 127.0.0.1:8000 since 14:02:11 UTC; their restarts are held until it recovers\n\
             restart budget: spent; 1 service unhealthy, its restart held until the budget allows (see the reason)\n"
        );
        assert_eq!(causes(&list[5..]), "", "nothing to say, no line");
    }

    #[test]
    fn a_cut_reason_keeps_the_words_that_say_the_restart_is_held() {
        let shared = svc(
            "a",
            Some(("127.0.0.1:8000", "2026-12-07T14:02:11Z")),
            Some("shared cause"),
        );
        let budget = svc("b", None, Some("restart budget"));
        let plain = ServiceStatus {
            shared_cause: None,
            restart_held: None,
            group: None,
            replicas: None,
            ..shared.clone()
        };
        let out = table(&[shared.clone(), budget, plain]);
        let rows: Vec<&str> = out.lines().skip(1).collect();
        assert!(
            rows[0].contains("… shared cause; restart held"),
            "{}",
            rows[0]
        );
        assert!(
            rows[1].contains("… restart held (restart budget)"),
            "{}",
            rows[1]
        );
        // Without a hold the reason is cut as any other.
        assert!(!rows[2].contains("held"), "{}", rows[2]);
        for r in &rows {
            let at = r
                .find("http probe failed 3 times")
                .expect("the reason's start");
            let cut = r[at..].split("  ").next().unwrap();
            assert!(cut.chars().count() <= REASON_WIDTH, "{r}");
        }
        // A reason that fits is left whole.
        assert_eq!(cut_reason(&shared, 500), REASON);

        let d = details(&shared);
        assert!(d.contains(&format!("  reason:   {REASON}\n")), "{d}");
        assert!(d.contains("  shared:   probes of 127.0.0.1:8000 fail for 312 services since 2026-12-07T14:02:11Z (a shared cause)\n"), "{d}");
        assert!(
            d.contains("  held:     restart held (shared cause)\n"),
            "{d}"
        );
    }
}

#[cfg(test)]
mod group_tests {
    use super::*;
    use candor_api::{Replicas, Rollout, RolloutInstance};

    fn svc(name: &str, state: &str, reason: &str, pid: Option<u32>) -> ServiceStatus {
        serde_json::from_value(serde_json::json!({
            "name": name, "state": state, "reason": reason, "since": "2026-12-07T14:00:00Z",
            "pid": pid, "uptime_s": pid.map(|_| 75.0), "restarts": 0, "last_exit": null,
            "ready": null, "probes": [], "sockets": [], "fds": null, "rss_bytes": null,
            "logs": {"lines": 0, "dropped": 0}, "runs": 1, "next_start": null,
            "status_text": null,
        }))
        .unwrap()
    }

    fn instance(name: &str, state: &str, pid: u32) -> ServiceStatus {
        let reason = match state {
            "running" => format!("running as pid {pid}, ready via probe"),
            _ => "exited with code 1 before ready".to_string(),
        };
        let pid = Some(pid).filter(|_| state == "running");
        let mut s = svc(name, state, &reason, pid);
        s.group = name.split_once('@').map(|(g, _)| g.to_string());
        s
    }

    fn group(name: &str, state: &str, reason: &str, replicas: Replicas) -> ServiceStatus {
        let mut s = svc(name, state, reason, None);
        s.replicas = Some(replicas);
        s
    }

    fn at(name: &str, generation: u64, state: &str, spare: bool) -> RolloutInstance {
        RolloutInstance {
            name: name.into(),
            generation,
            state: state.into(),
            spare,
        }
    }

    /// `api`: three instances, all running. `web`: a rollout halted at web@2, with a spare
    /// web@4 keeping three serving. `db`: a plain service between them.
    fn board() -> Vec<ServiceStatus> {
        let halted = "rollout halted at web@2: new run exited with code 1 before ready; 1 of 3 updated; `candor rollout undo web` returns to the old config";
        vec![
            group(
                "api",
                "running",
                "3/3 running",
                Replicas {
                    wanted: 3,
                    configured: 3,
                    running: 3,
                    instances: vec!["api@1".into(), "api@2".into(), "api@3".into()],
                    strategy: "rolling".into(),
                    generation: 1,
                    rollout: None,
                },
            ),
            instance("api@1", "running", 101),
            instance("api@2", "running", 102),
            instance("api@3", "running", 103),
            svc(
                "db",
                "running",
                "running as pid 200, ready via notify",
                Some(200),
            ),
            group(
                "web",
                "degraded",
                halted,
                Replicas {
                    wanted: 3,
                    configured: 3,
                    running: 3,
                    instances: ["web@1", "web@2", "web@3", "web@4"]
                        .map(Into::into)
                        .to_vec(),
                    strategy: "rolling".into(),
                    generation: 2,
                    rollout: Some(Rollout {
                        service: "web".into(),
                        state: "halted".into(),
                        strategy: "rolling".into(),
                        from_generation: 1,
                        to_generation: 2,
                        why: "env.VERSION changed".into(),
                        updated: 1,
                        total: 3,
                        started: "2026-12-07T14:01:00Z".into(),
                        halted: Some(halted.into()),
                        instances: vec![
                            at("web@1", 2, "running", false),
                            at("web@2", 2, "failed", false),
                            at("web@3", 1, "running", false),
                            at("web@4", 1, "running", true),
                        ],
                    }),
                },
            ),
            instance("web@1", "running", 301),
            instance("web@2", "failed", 302),
            instance("web@3", "running", 303),
            instance("web@4", "running", 304),
        ]
    }

    #[test]
    fn a_group_row_has_its_instances_indented_under_it_and_plain_services_are_unchanged() {
        let out = table(&board());
        let want = [
            "NAME     STATE     REASON                                                                  PID  UPTIME  RESTARTS  FDS  RSS",
            "api      running   3/3 running                                                             -    -       0         -    -",
            "  api@1  running   running as pid 101, ready via probe                                     101  1m15s   0         -    -",
            "  api@2  running   running as pid 102, ready via probe                                     102  1m15s   0         -    -",
            "  api@3  running   running as pid 103, ready via probe                                     103  1m15s   0         -    -",
            "db       running   running as pid 200, ready via notify                                    200  1m15s   0         -    -",
            "web      degraded  rollout halted at web@2: new run exited with code 1 before ready; 1 o…  -    -       0         -    -",
            "  web@1  running   running as pid 301, ready via probe                                     301  1m15s   0         -    -",
            "  web@2  failed    exited with code 1 before ready                                         -    -       0         -    -",
            "  web@3  running   running as pid 303, ready via probe                                     303  1m15s   0         -    -",
            "  web@4  running   running as pid 304, ready via probe                                     304  1m15s   0         -    -",
        ];
        assert_eq!(out, want.join("\n") + "\n", "{out}");
        // Without groups the table is what it always was: the daemon's order, no indent.
        let plain = table(&board()[4..5]);
        assert_eq!(
            plain,
            "NAME  STATE    REASON                                PID  UPTIME  RESTARTS  FDS  RSS\n\
             db    running  running as pid 200, ready via notify  200  1m15s   0         -    -\n"
        );
    }

    #[test]
    fn a_finished_oneshot_shows_its_end_and_no_process() {
        let mut done = svc("migrate", "done", "completed in 3.2s with exit 0", None);
        // Whatever came with it, a finished job's row has no process in it.
        done.uptime_s = Some(3.2);
        let skipped = svc(
            "backup",
            "skipped",
            "condition exited 1: test -f /etc/backup/enabled; the start was skipped",
            None,
        );
        let out = table(&[skipped.clone(), done.clone()]);
        assert_eq!(
            out,
            "\
NAME     STATE    REASON                                                                  PID  UPTIME  RESTARTS  FDS  RSS
backup   skipped  condition exited 1: test -f /etc/backup/enabled; the start was skipped  -    -       0         -    -
migrate  done     completed in 3.2s with exit 0                                           -    -       0         -    -
",
        );
        let d = details(&done);
        assert!(
            d.contains("  runs:     1; its history: `candor jobs migrate`\n"),
            "{d}"
        );
        assert!(!d.contains("restarts:") && !d.contains("pid:"), "{d}");
    }

    #[test]
    fn instances_are_ordered_by_index_not_as_strings() {
        let mut list = vec![group(
            "api",
            "running",
            "11/11 running",
            Replicas::default(),
        )];
        for i in [1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9] {
            list.push(instance(&format!("api@{i}"), "running", 100 + i));
        }
        let out = table(&list);
        let names: Vec<&str> = out
            .lines()
            .skip(1)
            .map(|l| l.split("  ").find(|c| !c.is_empty()).unwrap_or(""))
            .collect();
        let want: Vec<String> = std::iter::once("api".to_string())
            .chain((1..=11).map(|i| format!("api@{i}")))
            .collect();
        assert_eq!(names, want, "{out}");
        assert!(out.contains("\n  api@2 "), "indented: {out}");
    }

    #[test]
    fn a_halted_rollout_in_the_details_names_each_instance_its_generation_and_the_spare() {
        let list = board();
        let web = list.iter().find(|s| s.name == "web").unwrap();
        assert_eq!(
            details(web),
            "web: degraded\n\
             \x20 reason:   rollout halted at web@2: new run exited with code 1 before ready; 1 of 3 updated; `candor rollout undo web` returns to the old config\n\
             \x20 since:    2026-12-07T14:00:00Z\n\
             \x20 replicas: 3 wanted, 3 running\n\
             \x20 update:   rolling, generation 2\n\
             \x20 rollout:  HALTED (rolling), generation 1 → 2, 1 of 3 updated, started 2026-12-07T14:01:00Z\n\
             \x20 why:      env.VERSION changed\n\
             \x20 instances:\n\
             \x20   web@1  g2  running\n\
             \x20   web@2  g2  failed\n\
             \x20   web@3  g1  running\n\
             \x20   web@4  g1  running  (spare)\n"
        );
        assert_eq!(
            details(&list[0]),
            "api: running\n\
             \x20 reason:   3/3 running\n\
             \x20 since:    2026-12-07T14:00:00Z\n\
             \x20 replicas: 3 wanted, 3 running\n\
             \x20 update:   rolling, generation 1\n\
             \x20 instances: api@1, api@2, api@3\n"
        );
        // Scaled away from the config: both numbers; an instance's details are a service's.
        let mut scaled = list[0].clone();
        if let Some(r) = scaled.replicas.as_mut() {
            r.wanted = 5;
        }
        assert!(details(&scaled)
            .contains("  replicas: 5 wanted (scaled; 3 in the config), 3 running\n"));
        assert!(details(&list[1]).contains("  restarts: 0 (runs: 1)\n"));
    }
}
