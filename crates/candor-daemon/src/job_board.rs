//! The jobs on a board — every oneshot and every scheduled service, as `candor jobs`,
//! `GET /v1/jobs` and /metrics see them (`candor_brain::jobs::view` of each).

use candor_api as api;
use candor_core::Now;

use crate::board::Board;

/// Whether `candor jobs` lists a service: a oneshot, or one with a schedule (a service with
/// only a `condition` has job facts too, but is not a job).
pub use candor_brain::jobs::is_job;

/// Every job on the board, in name order.
pub fn jobs(board: &Board, now: Now) -> Vec<api::Job> {
    board
        .services
        .values()
        .filter(|s| is_job(&s.spec))
        .filter_map(|s| candor_brain::jobs::view(&board.services, s, now))
        .collect()
}

/// One job, if `name` is one.
pub fn job(board: &Board, name: &str, now: Now) -> Option<api::Job> {
    let svc = board.get(name)?.svc;
    is_job(&svc.spec)
        .then(|| candor_brain::jobs::view(&board.services, svc, now))
        .flatten()
}

/// The names of the jobs on the board, for a 404 that says which there are.
pub fn names(board: &Board) -> Vec<String> {
    board
        .services
        .iter()
        .filter(|(_, s)| is_job(&s.spec) && s.job.is_some())
        .map(|(n, _)| n.to_string())
        .collect()
}

/// Boards with jobs built by hand (facts as the brain keeps them), for the tests of what is
/// rendered from one.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use candor_api as api;
    use candor_brain::jobs::Job;
    use candor_brain::{Service, Services};
    use candor_spec::{ScheduleSpec, ServiceName, When};

    use crate::board::fixtures::now;
    use crate::board::Board;

    /// A finished run of `ms` milliseconds that started at `started_ms`.
    pub fn run(id: u64, trigger: &str, result: &str, started_ms: i64, ms: u64) -> api::JobRun {
        api::JobRun {
            run: id,
            trigger: trigger.into(),
            scheduled_ms: None,
            started_ms,
            ended_ms: Some(started_ms + ms as i64),
            duration_ms: Some(ms),
            result: result.into(),
            code: Some(i32::from(result != "done")),
            reason: format!("{result} in {ms}ms"),
            log_ids: Some((10 * id as i64, 10 * id as i64 + 3)),
        }
    }
    /// `backup`: a oneshot every day at 03:00 with two runs (one failed, then one done);
    /// `web`: a long-running service (not a job); `cond`: a long-running service with only a
    /// condition (job facts, but not a job).
    pub fn board() -> Board {
        let text = "[service.backup]\ncommand = [\"/bin/true\"]\n\
                    [service.web]\ncommand = [\"/bin/sleep\", \"1000\"]\n\
                    [service.cond]\ncommand = [\"/bin/sleep\", \"1000\"]\n";
        let spec = candor_spec::parse_str(std::path::Path::new("/srv/candor.toml"), text)
            .expect("a valid config");
        let mut all = Services::new();
        for name in ["backup", "web", "cond"] {
            let key = ServiceName::new(name).unwrap();
            let mut s = spec.services[&key].clone();
            let mut job = None;
            if name == "backup" {
                s.kind = candor_spec::ServiceKind::Oneshot;
                s.schedule = Some(ScheduleSpec {
                    when: When::Cron {
                        expr: "0 3 * * *".into(),
                        timezone: "UTC".into(),
                    },
                    catch_up: Default::default(),
                    overlap: Default::default(),
                });
                let history: VecDeque<api::JobRun> = [
                    run(1, "schedule", "failed", 1_796_500_000_000, 1200),
                    run(2, "candor run", "done", 1_796_600_000_000, 3200),
                ]
                .into();
                job = Some(Box::new(Job {
                    next: Some(1_796_700_000_000),
                    history: Arc::new(history),
                    counts: api::JobCounts {
                        done: 1,
                        failed: 1,
                        skipped: 0,
                    },
                    last_success_ms: Some(1_796_600_003_200),
                    ..Default::default()
                }));
            }
            if name == "cond" {
                s.condition = Some(vec!["test".into(), "-f".into(), "/x".into()]);
                job = Some(Box::default());
            }
            let mut svc = Service::new(Arc::new(s), now().mono);
            svc.job = job;
            all.insert(key, Arc::new(svc));
        }
        Board {
            services: all,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::fixtures::now;

    #[test]
    fn only_oneshots_and_scheduled_services_are_jobs_newest_run_first() {
        let b = fixtures::board();
        let all = jobs(&b, now());
        let listed: Vec<&str> = all.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(
            listed,
            ["backup"],
            "not web (no job), not cond (only a condition)"
        );
        let backup = &all[0];
        assert_eq!(backup.kind, "oneshot");
        assert_eq!(backup.schedule.as_deref(), Some("cron 0 3 * * * (UTC)"));
        assert_eq!(backup.history[0].run, 2, "newest first");
        assert_eq!(backup.last.as_ref().map(|r| r.run), Some(2));
        assert_eq!(job(&b, "backup", now()).as_ref(), Some(backup));
        assert!(job(&b, "cond", now()).is_none());
        assert!(job(&b, "web", now()).is_none());
        assert!(job(&b, "nope", now()).is_none());
        assert_eq!(names(&b), ["backup"]);
    }
}
