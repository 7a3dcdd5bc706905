//! Human output: the status table, one service's details, durations and sizes.

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
        + &recovered
        + &faults
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

pub fn table(services: &[ServiceStatus]) -> String {
    let rows: Vec<[String; 8]> = services
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.state.clone(),
                s.reason.clone(),
                s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                uptime(s.uptime_s),
                s.restarts.to_string(),
                s.fds
                    .as_ref()
                    .map(|f| format!("{}/{}", f.count, f.limit))
                    .unwrap_or_else(|| "-".into()),
                bytes(s.rss_bytes),
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
    widths[2] = widths[2].min(70);
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

pub fn details(s: &ServiceStatus) -> String {
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
    out += &format!("  restarts: {} (runs: {})\n", s.restarts, s.runs);
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
        "  logs:     {} lines, {} dropped, {} folded repeats\n",
        s.logs.lines, s.logs.dropped, s.logs.folded
    );
    out
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
}
