//! Jobs in words: `candor jobs` (the table, one job's details and history), `candor run`'s
//! line, and the next fire / last result that `top` shows in a job's reason column. Times
//! are told against a [`Clock`] (now, and how a wall time reads in the local zone), so
//! what is printed does not depend on when or where the test runs.

use candor_api::{Job, JobCounts, JobRun};

/// Now, and a wall time in the local zone.
pub struct Clock<'a> {
    /// Unix milliseconds.
    pub now_ms: i64,
    /// A unix-ms time in the local zone, in a `strftime` format.
    pub local: &'a dyn Fn(i64, &str) -> String,
}

impl Clock<'_> {
    /// The system's clock and zone (`TZ`, else /etc/localtime).
    pub fn system<R>(f: impl FnOnce(&Clock) -> R) -> R {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        f(&Clock {
            now_ms,
            local: &local_time,
        })
    }
}

/// `ms` (unix) in the local zone, formatted by `strftime(format)`; the UTC timestamp when the
/// zone cannot say.
pub fn local_time(ms: i64, format: &str) -> String {
    let utc = || candor_api::timestamp(candor_api::from_unix_ms(ms));
    let Ok(c_format) = std::ffi::CString::new(format) else {
        return utc();
    };
    let secs: libc::time_t = ms.div_euclid(1000) as libc::time_t;
    // SAFETY: localtime_r and strftime write only into the buffers given, of the sizes given.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return utc();
        }
        let mut buf = [0u8; 128];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c_format.as_ptr(), &tm);
        if n == 0 {
            return utc();
        }
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// A span, coarse: "45s", "12m", "5h12m", "2d3h".
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => match (s / 3600, (s % 3600) / 60) {
            (h, 0) => format!("{h}h"),
            (h, m) => format!("{h}h{m}m"),
        },
        s => match (s / 86_400, (s % 86_400) / 3600) {
            (d, 0) => format!("{d}d"),
            (d, h) => format!("{d}d{h}h"),
        },
    }
}

/// A run's length, as precise as it is short: "850ms", "3.2s", "4m10s", "1h2m".
pub fn took(ms: u64) -> String {
    candor_spec::format_duration(std::time::Duration::from_millis(ms))
}

/// When a job fires next: "in 5h12m (03:00 CET)", a day or more ahead with the day ("in
/// 2d3h (Wed 09 Dec 03:00 CET)"); "due now" once its time has come; "-" without a schedule.
pub fn next(next_ms: Option<i64>, clock: &Clock) -> String {
    let Some(at) = next_ms else {
        return "-".into();
    };
    let ahead = at - clock.now_ms;
    if ahead <= 0 {
        return "due now".into();
    }
    let format = if ahead < 86_400_000 {
        "%H:%M %Z"
    } else {
        "%a %d %b %H:%M %Z"
    };
    format!("in {} ({})", span(ahead), (clock.local)(at, format))
}

/// How a run ended, without when: "done 3.2s", "failed exit 1", "failed after 10m" (no exit
/// code: a signal, a timeout), "skipped", "running for 12s".
pub fn result(run: &JobRun, clock: &Clock) -> String {
    match run.result.as_str() {
        "running" => format!("running for {}", span(clock.now_ms - run.started_ms)),
        "done" => match run.duration_ms {
            Some(ms) => format!("done {}", took(ms)),
            None => "done".into(),
        },
        "failed" => match (run.code, run.duration_ms) {
            (Some(c), _) => format!("failed exit {c}"),
            (None, Some(ms)) => format!("failed after {}", took(ms)),
            (None, None) => "failed".into(),
        },
        other => other.to_string(),
    }
}

/// A job's last run: "done 3.2s, 2h ago", "failed exit 1, 5m ago", "running for 12s"; "-"
/// before its first.
pub fn last(job: &Job, clock: &Clock) -> String {
    let Some(run) = job.last.as_ref().or(job.history.first()) else {
        return "-".into();
    };
    if run.result == "running" {
        return result(run, clock);
    }
    let at = run.ended_ms.unwrap_or(run.started_ms);
    format!("{}, {} ago", result(run, clock), span(clock.now_ms - at))
}

/// "12 done, 1 failed, 0 skipped".
pub fn counts(c: &JobCounts) -> String {
    format!(
        "{} done, {} failed, {} skipped",
        c.done, c.failed, c.skipped
    )
}

/// What `top` puts in a job's reason column: the last result and the next fire ("last: done
/// 3.2s, 2h ago · next in 5h12m (03:00 CET)"), or, while it runs or has not run, its reason
/// (with the next fire).
pub fn summary(job: &Job, clock: &Clock) -> String {
    let next = job
        .next_ms
        .map(|_| format!(" · next {}", next(job.next_ms, clock)))
        .unwrap_or_default();
    match &job.last {
        Some(run) if run.result != "running" && job.state != "running" => {
            format!("last: {}{next}", last(job, clock))
        }
        _ => format!("{}{next}", job.reason),
    }
}

/// Columns of text, each as wide as its widest cell (at most its cap), two spaces apart.
fn columns<const N: usize>(head: [&str; N], rows: &[[String; N]], caps: [usize; N]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i]
                .max(c.chars().count())
                .min(caps[i].max(head[i].len()));
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let cut = if c.chars().count() > widths[i] {
                    c.chars()
                        .take(widths[i].saturating_sub(1))
                        .collect::<String>()
                        + "…"
                } else {
                    c.to_string()
                };
                format!("{cut:w$}", w = widths[i])
            })
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// `candor jobs`: NAME STATE SCHEDULE NEXT LAST RUNS, one job a line, in the daemon's (name)
/// order.
pub fn table(jobs: &[Job], clock: &Clock) -> String {
    if jobs.is_empty() {
        return "no jobs (a job is a service with `type = \"oneshot\"` or a `schedule`)\n".into();
    }
    let rows: Vec<[String; 6]> = jobs
        .iter()
        .map(|j| {
            [
                j.name.clone(),
                j.state.clone(),
                j.schedule.clone().unwrap_or_else(|| "-".into()),
                next(j.next_ms, clock),
                last(j, clock),
                counts(&j.counts),
            ]
        })
        .collect();
    columns(
        ["NAME", "STATE", "SCHEDULE", "NEXT", "LAST", "RUNS"],
        &rows,
        [40, 10, 40, 40, 40, 40],
    )
}

/// History rows shown by `candor jobs NAME`.
pub const HISTORY_SHOWN: usize = 20;

/// `candor jobs NAME`: the job, then its last [`HISTORY_SHOWN`] runs, newest first.
pub fn details(job: &Job, clock: &Clock) -> String {
    let mut out = format!(
        "{}: {}\n  reason:    {}\n  kind:      {}\n",
        job.name, job.state, job.reason, job.kind
    );
    if let Some(s) = &job.schedule {
        out += &format!(
            "  schedule:  {s}\n  next:      {}\n",
            next(job.next_ms, clock)
        );
    }
    out += &format!("  last:      {}\n", last(job, clock));
    if let Some(ok) = job.last_success_ms {
        out += &format!(
            "  last done: {} ago ({})\n",
            span(clock.now_ms - ok),
            (clock.local)(ok, "%Y-%m-%d %H:%M:%S %Z")
        );
    }
    out += &format!("  runs:      {}\n", counts(&job.counts));
    if job.history.is_empty() {
        out += "no runs yet\n";
        return out;
    }
    let shown = job.history.len().min(HISTORY_SHOWN);
    out += &format!(
        "last {shown} of {} runs kept, newest first:\n",
        job.history.len()
    );
    let rows: Vec<[String; 7]> = job.history[..shown]
        .iter()
        .map(|r| {
            [
                match r.run {
                    0 => "-".to_string(),
                    n => n.to_string(),
                },
                r.trigger.clone(),
                (clock.local)(r.started_ms, "%Y-%m-%d %H:%M:%S"),
                r.duration_ms.map(took).unwrap_or_else(|| "-".into()),
                result(r, clock),
                r.reason.clone(),
                r.log_ids
                    .map(|(a, b)| format!("{a}..{b}"))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out += &columns(
        [
            "RUN", "TRIGGER", "STARTED", "TOOK", "RESULT", "REASON", "LOG IDS",
        ],
        &rows,
        [8, 12, 20, 10, 24, 60, 24],
    );
    out
}

/// `candor run NAME --wait`'s line: "backup: run 14 done in 3.2s (completed in 3.2s with exit
/// 0)".
pub fn run_line(name: &str, run: &JobRun, clock: &Clock) -> String {
    let id = match run.run {
        0 => String::new(),
        n => format!(" {n}"),
    };
    format!("{name}: run{id} {} ({})", result(run, clock), run.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07T14:02:00Z; local time in the fake zone "TST" is UTC+1, written by hand.
    const NOW: i64 = 1_796_652_120_000;

    fn fake_local(ms: i64, format: &str) -> String {
        let t = candor_api::timestamp(candor_api::from_unix_ms(ms + 3_600_000));
        let (date, time) = (&t[..10], &t[11..19]);
        match format {
            "%H:%M %Z" => format!("{} TST", &time[..5]),
            "%Y-%m-%d %H:%M:%S" => format!("{date} {time}"),
            other => format!("{date} {time} TST [{other}]"),
        }
    }

    fn with<R>(f: impl FnOnce(&Clock) -> R) -> R {
        f(&Clock {
            now_ms: NOW,
            local: &fake_local,
        })
    }

    fn run(id: u64, trigger: &str, result: &str, ago_s: i64, ms: Option<u64>) -> JobRun {
        let started_ms = NOW - ago_s * 1000;
        JobRun {
            run: id,
            trigger: trigger.into(),
            scheduled_ms: None,
            started_ms,
            ended_ms: ms.map(|m| started_ms + m as i64),
            duration_ms: ms,
            result: result.into(),
            code: match result {
                "done" => Some(0),
                "failed" => Some(1),
                _ => None,
            },
            reason: match result {
                "done" => "completed in 3.2s with exit 0".into(),
                "failed" => "exited with code 1".into(),
                "skipped" => "condition exited 1: test -f /etc/backup/enabled".into(),
                _ => "running".into(),
            },
            log_ids: ms.map(|_| (100 * id as i64, 100 * id as i64 + 7)),
        }
    }

    fn backup() -> Job {
        let history = vec![
            run(13, "schedule", "done", 7200, Some(3200)),
            run(0, "candor run", "skipped", 9000, None),
            run(12, "catch-up", "failed", 86_400, Some(850)),
        ];
        Job {
            name: "backup".into(),
            kind: "oneshot".into(),
            state: "done".into(),
            reason: "completed in 3.2s with exit 0".into(),
            schedule: Some("cron 0 3 * * * (Europe/Berlin)".into()),
            next_ms: Some(NOW + (5 * 3600 + 12 * 60) * 1000 + 30_000),
            last: history.first().cloned(),
            last_success_ms: Some(NOW - 7200 * 1000 + 3200),
            counts: JobCounts {
                done: 12,
                failed: 1,
                skipped: 1,
            },
            history,
        }
    }

    #[test]
    fn spans_are_coarse_and_runs_precise() {
        let cases = [
            (0, "0s"),
            (45_000, "45s"),
            (12 * 60_000, "12m"),
            (2 * 3_600_000, "2h"),
            ((5 * 3600 + 12 * 60) * 1000, "5h12m"),
            ((2 * 86_400 + 3 * 3600) * 1000, "2d3h"),
            (-5, "0s"),
        ];
        for (ms, want) in cases {
            assert_eq!(span(ms), want, "{ms}");
        }
        assert_eq!(took(3200), "3.2s");
        assert_eq!(took(850), "850ms");
    }

    #[test]
    fn the_table_says_next_fire_last_result_and_counts() {
        let mut warm = backup();
        warm.name = "warm".into();
        warm.state = "failed".into();
        warm.schedule = Some("every 15m, jitter 1m".into());
        warm.next_ms = Some(NOW - 10);
        warm.history = vec![run(7, "schedule", "failed", 300, Some(850))];
        warm.last = warm.history.first().cloned();
        let mut migrate = backup();
        migrate.name = "migrate".into();
        migrate.state = "running".into();
        migrate.schedule = None;
        migrate.next_ms = None;
        migrate.history = vec![run(1, "start", "running", 12, None)];
        migrate.last = migrate.history.first().cloned();
        migrate.counts = JobCounts::default();
        let text = with(|c| table(&[backup(), migrate, warm], c));
        assert_eq!(
            text,
            "\
NAME     STATE    SCHEDULE                        NEXT                  LAST                   RUNS
backup   done     cron 0 3 * * * (Europe/Berlin)  in 5h12m (20:14 TST)  done 3.2s, 1h59m ago   12 done, 1 failed, 1 skipped
migrate  running  -                               -                     running for 12s        0 done, 0 failed, 0 skipped
warm     failed   every 15m, jitter 1m            due now               failed exit 1, 4m ago  12 done, 1 failed, 1 skipped
"
        );
        assert!(with(|c| table(&[], c)).starts_with("no jobs"));
    }

    #[test]
    fn a_fire_a_day_or_more_ahead_names_its_day() {
        let at = NOW + 2 * 86_400_000;
        let said = with(|c| next(Some(at), c));
        assert!(said.starts_with("in 2d ("), "{said}");
        assert!(said.contains("[%a %d %b %H:%M %Z]"), "{said}");
    }

    #[test]
    fn the_details_list_the_runs_newest_first_with_their_trigger_result_and_log_ids() {
        let text = with(|c| details(&backup(), c));
        assert_eq!(
            text,
            "\
backup: done
  reason:    completed in 3.2s with exit 0
  kind:      oneshot
  schedule:  cron 0 3 * * * (Europe/Berlin)
  next:      in 5h12m (20:14 TST)
  last:      done 3.2s, 1h59m ago
  last done: 1h59m ago (2026-12-07 13:02:03 TST [%Y-%m-%d %H:%M:%S %Z])
  runs:      12 done, 1 failed, 1 skipped
last 3 of 3 runs kept, newest first:
RUN  TRIGGER     STARTED              TOOK   RESULT         REASON                                           LOG IDS
13   schedule    2026-12-07 13:02:00  3.2s   done 3.2s      completed in 3.2s with exit 0                    1300..1307
-    candor run  2026-12-07 12:32:00  -      skipped        condition exited 1: test -f /etc/backup/enabled  -
12   catch-up    2026-12-06 15:02:00  850ms  failed exit 1  exited with code 1                               1200..1207
"
        );
        // At most HISTORY_SHOWN runs.
        let mut long = backup();
        long.history = (1..=50)
            .rev()
            .map(|i| run(i, "schedule", "done", 60 * i as i64, Some(1000)))
            .collect();
        let text = with(|c| details(&long, c));
        assert!(text.contains(&format!("last {HISTORY_SHOWN} of 50 runs kept")));
        assert_eq!(
            text.lines().filter(|l| l.contains(" schedule ")).count(),
            HISTORY_SHOWN
        );
        assert!(
            text.contains("\n50 ") && !text.contains("\n30 "),
            "the newest 20: 50..31"
        );
    }

    #[test]
    fn top_shows_the_last_result_and_the_next_fire_or_the_reason_while_it_runs() {
        assert_eq!(
            with(|c| summary(&backup(), c)),
            "last: done 3.2s, 1h59m ago · next in 5h12m (20:14 TST)"
        );
        let mut running = backup();
        running.state = "running".into();
        running.reason = "running as pid 42 for 3s (a schedule run)".into();
        running.last = Some(run(14, "schedule", "running", 3, None));
        assert_eq!(
            with(|c| summary(&running, c)),
            "running as pid 42 for 3s (a schedule run) · next in 5h12m (20:14 TST)"
        );
    }

    #[test]
    fn run_wait_says_the_run_its_result_and_why() {
        let done = run(14, "candor run", "done", 4, Some(3200));
        assert_eq!(
            with(|c| run_line("backup", &done, c)),
            "backup: run 14 done 3.2s (completed in 3.2s with exit 0)"
        );
        let skipped = run(0, "candor run", "skipped", 1, None);
        assert_eq!(
            with(|c| run_line("backup", &skipped, c)),
            "backup: run skipped (condition exited 1: test -f /etc/backup/enabled)"
        );
    }

    #[test]
    fn local_time_follows_the_format() {
        // The zone is the machine's; the shape is the format's.
        let t = local_time(NOW, "%Y-%m-%d");
        assert_eq!(t.len(), 10, "{t}");
        assert!(t.starts_with("2026-12-0"), "{t}");
    }
}
