//! `GET /metrics`: the Prometheus text exposition (format 0.0.4) of what `candor status` shows,
//! read from the same board and derived statuses, plus the probe histograms and log counters
//! kept beside it. Names are DESIGN.md's; every family has HELP and TYPE.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use candor_api as api;
use candor_brain::ServiceState;
use candor_core::Now;

use crate::board::{Board, HELD_BUDGET, HELD_SHARED};
use crate::counters::{BUCKETS, STREAMS};
use crate::sampler::SelfSample;

/// A label value, escaped as the exposition format wants (`\`, `"`, newline).
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Replicated services and their rollouts: one series per group (none without groups).
fn rollouts(out: &mut String, board: &Board, now: Now) {
    let groups: Vec<(String, api::Replicas)> = board
        .groups
        .keys()
        .filter_map(|g| {
            let row = board.group(g.as_str(), now)?;
            Some((label(g.as_str()), row.replicas?))
        })
        .collect();
    type Value = fn(&api::Replicas) -> u64;
    let families: [(&str, &str, Value); 6] = [
        (
            "candor_replicas",
            "Instances a replicated service runs now (replicas, or `candor scale`).",
            |r| u64::from(r.wanted),
        ),
        (
            "candor_replicas_running",
            "Instances of a replicated service that are running.",
            |r| u64::from(r.running),
        ),
        (
            "candor_rollout_generation",
            "The config generation a replicated service's instances should run.",
            |r| r.generation,
        ),
        (
            "candor_rollout_in_progress",
            "1 while a rollout of the service is under way (not halted).",
            |r| u64::from(r.rollout.as_ref().is_some_and(|x| x.halted.is_none())),
        ),
        (
            "candor_rollout_halted",
            "1 while a rollout of the service is halted (a new run failed; see its reason).",
            |r| u64::from(r.rollout.as_ref().is_some_and(|x| x.halted.is_some())),
        ),
        (
            "candor_rollout_updated",
            "Instances already on the new generation and ready in the rollout under way.",
            |r| r.rollout.as_ref().map_or(0, |x| u64::from(x.updated)),
        ),
    ];
    for (name, help, value) in families {
        family(out, name, "gauge", help);
        for (g, r) in &groups {
            let _ = writeln!(out, "{name}{{service=\"{g}\"}} {}", value(r));
        }
    }
}

/// Jobs (oneshots and scheduled services), from their history: one series per job, none for
/// a value it does not have yet (no success, no run, no next fire).
fn jobs(out: &mut String, board: &Board, now: Now) {
    let jobs: Vec<(String, api::Job)> = crate::job_board::jobs(board, now)
        .into_iter()
        .map(|j| (label(&j.name), j))
        .collect();
    type Value = fn(&api::Job) -> Option<String>;
    let gauges: [(&str, &str, Value); 3] = [
        (
            "candor_job_last_success_timestamp_seconds",
            "When the job's newest successful run ended (unix seconds).",
            |j| j.last_success_ms.map(seconds),
        ),
        (
            "candor_job_last_duration_seconds",
            "How long the job's newest run that ended took.",
            |j| {
                let ended = j.history.iter().find(|r| r.duration_ms.is_some())?;
                ended.duration_ms.map(|ms| seconds(ms as i64))
            },
        ),
        (
            "candor_job_next_run_timestamp_seconds",
            "When the job's schedule fires next (unix seconds).",
            |j| j.next_ms.map(seconds),
        ),
    ];
    for (name, help, value) in gauges {
        family(out, name, "gauge", help);
        for (service, j) in &jobs {
            if let Some(v) = value(j) {
                let _ = writeln!(out, "{name}{{service=\"{service}\"}} {v}");
            }
        }
    }
    family(
        out,
        "candor_job_runs_total",
        "counter",
        "The job's runs by result (done, failed, skipped) since its history began (kept across daemon restarts).",
    );
    for (service, j) in &jobs {
        let c = &j.counts;
        for (result, n) in [
            ("done", c.done),
            ("failed", c.failed),
            ("skipped", c.skipped),
        ] {
            let _ = writeln!(
                out,
                "candor_job_runs_total{{service=\"{service}\",result=\"{result}\"}} {n}"
            );
        }
    }
}

/// Milliseconds as seconds, as the exposition writes them ("3.2", "1796600003.2").
fn seconds(ms: i64) -> String {
    format!("{}", ms as f64 / 1e3)
}

pub fn render(board: &Board, me: Option<&SelfSample>, now: Now) -> String {
    let mut out = String::with_capacity(512 + board.len() * 1024);
    let statuses: Vec<_> = board
        .iter()
        .map(|v| {
            let st = v.status(now);
            (label(&st.name), st, v)
        })
        .collect();

    // `up` carries the state as a label too, as it always has (scrapes and alerts use it);
    // candor_service_state is the one-hot form.
    family(
        &mut out,
        "candor_service_up",
        "gauge",
        "1 when the service is running and ready (state running), else 0.",
    );
    for (name, st, _) in &statuses {
        let up = u8::from(st.state == ServiceState::Running.as_str());
        let _ = writeln!(
            out,
            "candor_service_up{{service=\"{name}\",state=\"{}\"}} {up}",
            st.state
        );
    }
    family(
        &mut out,
        "candor_service_state",
        "gauge",
        "The service's state: 1 for the current one, 0 for the others.",
    );
    for (name, st, _) in &statuses {
        for s in ServiceState::ALL {
            let v = u8::from(st.state == s.as_str());
            let _ = writeln!(
                out,
                "candor_service_state{{service=\"{name}\",state=\"{}\"}} {v}",
                s.as_str()
            );
        }
    }
    // One value per service; the samples only of a live run (as `candor status`): a stopped
    // service has none.
    type Value = fn(&api::ServiceStatus) -> Option<String>;
    let simple: [(&str, &str, &str, Value); 5] = [
        (
            "candor_service_restarts_total",
            "counter",
            "Automatic restarts of the service.",
            |s| Some(s.restarts.to_string()),
        ),
        (
            "candor_service_open_fds",
            "gauge",
            "Open fds of the service's processes, last sample.",
            |s| s.fds.as_ref().map(|f| f.count.to_string()),
        ),
        (
            "candor_service_max_fds",
            "gauge",
            "The main process's fd limit (RLIMIT_NOFILE), last sample.",
            |s| s.fds.as_ref().map(|f| f.limit.to_string()),
        ),
        (
            "candor_service_fd_growth_per_hour",
            "gauge",
            "The open fds' trend (least squares over the sample window), fds per hour.",
            |s| s.fds.as_ref()?.per_hour.map(|r| r.to_string()),
        ),
        (
            "candor_service_resident_memory_bytes",
            "gauge",
            "Resident memory of the service's processes, last sample.",
            |s| s.rss_bytes.map(|r| r.to_string()),
        ),
    ];
    for (metric, kind, help, value) in simple {
        family(&mut out, metric, kind, help);
        for (name, st, _) in &statuses {
            if let Some(v) = value(st) {
                let _ = writeln!(out, "{metric}{{service=\"{name}\"}} {v}");
            }
        }
    }

    family(
        &mut out,
        "candor_probe_duration_seconds",
        "histogram",
        "How long the service's probes took (since the daemon started).",
    );
    let probed: Vec<_> = statuses
        .iter()
        .filter_map(|(name, _, v)| {
            let kind = v.spec().probe.as_ref()?.check.kind();
            Some((name, kind, v.probe_stats()?))
        })
        .collect();
    for (name, kind, p) in &probed {
        let labels = format!("service=\"{name}\",kind=\"{kind}\"");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += p.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "candor_probe_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = p.count.load(Ordering::Relaxed);
        let sum = p.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "candor_probe_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "candor_probe_duration_seconds_sum{{{labels}}} {sum}");
        let _ = writeln!(
            out,
            "candor_probe_duration_seconds_count{{{labels}}} {count}"
        );
    }
    family(
        &mut out,
        "candor_probe_failures_total",
        "counter",
        "Probes that failed (since the daemon started).",
    );
    for (name, kind, p) in &probed {
        let _ = writeln!(
            out,
            "candor_probe_failures_total{{service=\"{name}\",kind=\"{kind}\"}} {}",
            p.failures.load(Ordering::Relaxed)
        );
    }

    family(
        &mut out,
        "candor_probe_held_total",
        "counter",
        "Probes the daemon held back because their target had max_inflight probes in flight for the whole probe timeout (not failures of the service).",
    );
    for (name, _, p) in &probed {
        let _ = writeln!(
            out,
            "candor_probe_held_total{{service=\"{name}\"}} {}",
            p.held.load(Ordering::Relaxed)
        );
    }

    // Shared causes and held restarts, counted from the board (what the brain decided, as
    // `candor status` shows it).
    family(
        &mut out,
        "candor_shared_cause",
        "gauge",
        "Services whose probes of this target fail together: a cause they share (no series when there is none).",
    );
    for c in board.shared_causes(now) {
        let _ = writeln!(
            out,
            "candor_shared_cause{{target=\"{}\"}} {}",
            label(&c.target),
            c.services
        );
    }
    family(
        &mut out,
        "candor_restarts_held",
        "gauge",
        "Unhealthy services whose restart is held now, by why: a shared cause or the restart budget.",
    );
    let (shared, budget) = board.held();
    for (reason, n) in [(HELD_SHARED, shared), (HELD_BUDGET, budget)] {
        let _ = writeln!(out, "candor_restarts_held{{reason=\"{reason}\"}} {n}");
    }

    rollouts(&mut out, board, now);
    jobs(&mut out, board, now);

    type Pick = fn(&crate::counters::StreamCounts) -> &AtomicU64;
    let logs: [(&str, &str, Pick); 3] = [
        (
            "candor_log_lines_total",
            "Log lines taken into the log store.",
            |c| &c.lines,
        ),
        (
            "candor_log_dropped_total",
            "Log lines lost because the log store was full or behind.",
            |c| &c.dropped,
        ),
        (
            "candor_log_suppressed_total",
            "Log lines over the service's rate limit, left out (a marker line says how many).",
            |c| &c.suppressed,
        ),
    ];
    for (metric, help, pick) in logs {
        family(&mut out, metric, "counter", help);
        for (name, _, v) in &statuses {
            let Some(c) = v.log_counters() else {
                continue;
            };
            for (i, stream) in STREAMS.iter().enumerate() {
                let n = pick(&c.streams[i]).load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{metric}{{service=\"{name}\",stream=\"{stream}\"}} {n}"
                );
            }
        }
    }

    if let Some(me) = me {
        for (metric, help, v) in [
            (
                "candor_daemon_open_fds",
                "Open fds of the Candor daemon.",
                me.fds,
            ),
            (
                "candor_daemon_max_fds",
                "The Candor daemon's fd limit.",
                me.fd_limit,
            ),
            (
                "candor_daemon_resident_memory_bytes",
                "Resident memory of the Candor daemon.",
                me.rss,
            ),
        ] {
            family(&mut out, metric, "gauge", help);
            let _ = writeln!(out, "{metric} {v}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::ProbeStats;
    use std::time::Duration;

    #[test]
    fn a_probe_lands_in_its_bucket_and_failures_are_counted() {
        let p = ProbeStats::default();
        p.observe(Duration::from_millis(3), true);
        p.observe(Duration::from_millis(7), false);
        p.observe(Duration::from_secs(30), false);
        assert_eq!(p.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(p.buckets[1].load(Ordering::Relaxed), 1);
        // Over the last bound: only in +Inf (the count).
        let in_buckets: u64 = p.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        assert_eq!((in_buckets, p.count.load(Ordering::Relaxed)), (2, 3));
        assert_eq!(p.failures.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn shared_causes_and_held_restarts_are_gauges_from_the_board() {
        use crate::board::fixtures::{board, budget, cause, now};
        use candor_brain::Held;
        let b = board(&[
            (
                "a",
                Some(cause("127.0.0.1:8000", 2, 30)),
                Some(Held::Shared),
            ),
            (
                "b",
                Some(cause("127.0.0.1:8000", 2, 40)),
                Some(Held::Shared),
            ),
            ("c", Some(cause("/run/a \"b\".sock", 1, 5)), None),
            ("d", None, Some(budget())),
            ("e", None, None),
        ]);
        let text = render(&b, None, now());
        let lines = |prefix: &str| -> Vec<&str> {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines("candor_shared_cause"),
            [
                "candor_shared_cause{target=\"/run/a \\\"b\\\".sock\"} 1",
                "candor_shared_cause{target=\"127.0.0.1:8000\"} 2",
            ]
        );
        assert_eq!(
            lines("candor_restarts_held"),
            [
                "candor_restarts_held{reason=\"shared cause\"} 2",
                "candor_restarts_held{reason=\"restart budget\"} 1",
            ]
        );
        for family in ["candor_shared_cause", "candor_restarts_held"] {
            assert!(
                text.contains(&format!("# TYPE {family} gauge\n")),
                "{family}"
            );
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        }

        // Nothing shared, nothing held: no cause series, the held gauges at 0.
        let calm = render(&board(&[("a", None, None)]), None, now());
        assert!(!calm.lines().any(|l| l.starts_with("candor_shared_cause{")));
        assert!(calm.contains("candor_restarts_held{reason=\"shared cause\"} 0\n"));
        assert!(calm.contains("candor_restarts_held{reason=\"restart budget\"} 0\n"));
    }

    #[test]
    fn jobs_have_their_last_success_runs_by_result_duration_and_next_fire() {
        let text = render(
            &crate::job_board::fixtures::board(),
            None,
            crate::board::fixtures::now(),
        );
        let lines = |prefix: &str| -> Vec<&str> {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .collect::<Vec<_>>()
        };
        // Only `backup` is a job: not `web`, not `cond` (a condition only).
        assert_eq!(
            lines("candor_job_last_success_timestamp_seconds{"),
            ["candor_job_last_success_timestamp_seconds{service=\"backup\"} 1796600003.2"]
        );
        assert_eq!(
            lines("candor_job_runs_total{"),
            [
                "candor_job_runs_total{service=\"backup\",result=\"done\"} 1",
                "candor_job_runs_total{service=\"backup\",result=\"failed\"} 1",
                "candor_job_runs_total{service=\"backup\",result=\"skipped\"} 0",
            ]
        );
        assert_eq!(
            lines("candor_job_last_duration_seconds{"),
            ["candor_job_last_duration_seconds{service=\"backup\"} 3.2"],
            "the newest run's, not the older failed one's 1.2"
        );
        assert_eq!(
            lines("candor_job_next_run_timestamp_seconds{"),
            ["candor_job_next_run_timestamp_seconds{service=\"backup\"} 1796700000"]
        );
        for (family, kind) in [
            ("candor_job_last_success_timestamp_seconds", "gauge"),
            ("candor_job_runs_total", "counter"),
            ("candor_job_last_duration_seconds", "gauge"),
            ("candor_job_next_run_timestamp_seconds", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} {kind}\n")),
                "{family}"
            );
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        }
        // Without jobs: the families, no series.
        let none = render(
            &crate::board::fixtures::board(&[("a", None, None)]),
            None,
            crate::board::fixtures::now(),
        );
        assert!(none.contains("# TYPE candor_job_runs_total counter\n"));
        assert!(!none.lines().any(|l| l.starts_with("candor_job_")));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
