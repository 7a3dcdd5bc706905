//! The API of jobs: `GET /v1/jobs` (every oneshot and scheduled service, in name order),
//! `GET /v1/jobs/{name}`, and `POST /v1/services/{name}/run` — a run now, through the brain
//! (which refuses a service that is not a oneshot, or one that runs); `?wait` until that run
//! has ended, answered with its history entry.

use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use candor_api as api;
use candor_brain::{Reply, Request};
use candor_keeper::clock;

use crate::api_error::ApiError;
use crate::app::{ask, duration_param, flag, next_board, unexpected, unknown_service, AppState, Q};
use crate::board::Board;
use crate::job_board;
use crate::peer::Peer;

/// The trigger of a run asked for by `candor run` (`api::JobRun.trigger`).
pub const ASKED: &str = "candor run";

/// How long `?wait` waits at most for a job without a `timeout`, unless `?timeout=` says.
const WAIT_WITHOUT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

fn not_a_job(board: &Board, name: &str) -> ApiError {
    let jobs = job_board::names(board);
    let jobs = if jobs.is_empty() {
        "none".to_string()
    } else {
        jobs.join(", ")
    };
    if board.get(name).is_some() {
        ApiError::new(
            404,
            format!("`{name}` is not a job (neither `type = \"oneshot\"` nor a `schedule`); jobs: {jobs}"),
        )
    } else {
        ApiError::new(404, format!("no job named `{name}`; jobs: {jobs}"))
    }
}

/// `GET /v1/jobs`.
pub(crate) async fn list(State(st): State<AppState>) -> Json<api::Jobs> {
    let board = st.fresh.current(&st.board).await;
    Json(api::Jobs {
        jobs: job_board::jobs(&board, clock::now()),
    })
}

/// `GET /v1/jobs/{name}`.
pub(crate) async fn one(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::Job>, ApiError> {
    let board = st.fresh.current(&st.board).await;
    job_board::job(&board, &name, clock::now())
        .map(Json)
        .ok_or_else(|| not_a_job(&board, &name))
}

/// Which history entry is which: a run id alone is 0 for every skipped start.
fn key(r: &api::JobRun) -> (u64, i64) {
    (r.run, r.started_ms)
}

/// The newest run `candor run` asked for, in a job's history (newest first).
fn newest_asked(job: &api::Job) -> Option<&api::JobRun> {
    job.history.iter().find(|r| r.trigger == ASKED)
}

/// How the run asked for after `before` (the newest asked-for run then) ended, once it has:
/// with `retries` (a job with a bounded `retries`), the last of its retries, once no other
/// is coming (the job is not in backoff or starting again after a failed one).
pub(crate) fn ended_since(
    job: &api::Job,
    before: Option<(u64, i64)>,
    retries: bool,
) -> Option<&api::JobRun> {
    let at = job.history.iter().position(|r| r.trigger == ASKED)?;
    let ours = &job.history[at];
    if Some(key(ours)) == before {
        return None;
    }
    // Newest first: the retries after ours are the entries right above it.
    let last = match retries {
        true => job.history[..at]
            .iter()
            .rev()
            .take_while(|r| r.trigger == RETRY)
            .last()
            .unwrap_or(ours),
        false => ours,
    };
    let another = retries
        && last.result == "failed"
        && matches!(job.state.as_str(), "backoff" | "starting" | "running");
    (last.result != "running" && !another).then_some(last)
}

/// The trigger of a failed run's retry (`api::JobRun.trigger`).
const RETRY: &str = "retry";

/// `POST /v1/services/{name}/run`: 202 with "NAME: started (run N)"; with `?wait`, 200 with
/// the run's history entry once it ended (done, failed or skipped: the result says which;
/// for a job with `retries`, its last retry's),
/// or 504 at `?timeout` (default: the job's `timeout` and its stop timeout and a minute, else
/// a day).
pub(crate) async fn run(
    State(st): State<AppState>,
    ConnectInfo(caller): ConnectInfo<Peer>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let wait = flag(&q, "wait")?;
    let timeout = duration_param(&q, "timeout")?;
    st.fresh.current(&st.board).await;
    let mut board_rx = st.board.clone();
    let (next_run, before, default_wait, retries) = {
        let board = board_rx.borrow_and_update();
        let view = board
            .get(&name)
            .ok_or_else(|| unknown_service(&board, &name))?;
        let before =
            job_board::job(&board, &name, clock::now()).and_then(|j| newest_asked(&j).map(key));
        let spec = view.spec();
        let default_wait = spec.timeout.map_or(WAIT_WITHOUT_TIMEOUT, |t| {
            t + spec.stop.timeout + Duration::from_secs(60)
        });
        (
            view.runs() + 1,
            before,
            default_wait,
            spec.retries.is_some(),
        )
    };
    match ask(&st, caller, Request::Run(name.clone())).await? {
        Reply::Done => {}
        other => return Err(unexpected(other)),
    }
    if !wait {
        let ack = api::Ack {
            ok: true,
            message: format!("{name}: started (run {next_run})"),
        };
        return Ok((StatusCode::ACCEPTED, Json(ack)).into_response());
    }
    let deadline = tokio::time::Instant::now() + timeout.unwrap_or(default_wait);
    loop {
        let status = {
            let board = board_rx.borrow_and_update().clone();
            let now = clock::now();
            let Some(view) = board.get(&name) else {
                return Err(ApiError::new(
                    410,
                    format!("service `{name}` was removed while waiting for its run"),
                ));
            };
            let job = job_board::job(&board, &name, now).ok_or_else(|| not_a_job(&board, &name))?;
            if let Some(ended) = ended_since(&job, before, retries) {
                return Ok(Json(ended.clone()).into_response());
            }
            view.status(now)
        };
        next_board(
            &mut board_rx,
            deadline,
            &format!("{name}'s run to end"),
            status,
        )
        .await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_board::fixtures::run;

    fn job(history: Vec<api::JobRun>) -> api::Job {
        api::Job {
            name: "backup".into(),
            history,
            ..Default::default()
        }
    }

    #[test]
    fn a_wait_ends_on_the_run_it_asked_for_once_it_ended_not_on_older_or_scheduled_runs() {
        let old = run(3, ASKED, "done", 1_000, 10);
        let before = Some(key(&old));
        // Nothing new yet, or only a scheduled run since: keep waiting.
        assert!(ended_since(&job(vec![old.clone()]), before, false).is_none());
        let scheduled = run(4, "schedule", "done", 2_000, 10);
        assert!(ended_since(&job(vec![scheduled.clone(), old.clone()]), before, false).is_none());
        // Ours, still running: keep waiting.
        let mut ours = run(5, ASKED, "running", 3_000, 0);
        let history = vec![ours.clone(), scheduled.clone(), old.clone()];
        assert!(ended_since(&job(history), before, false).is_none());
        // Ours, ended (failed counts: the result says how).
        ours.result = "failed".into();
        let history = vec![ours.clone(), scheduled, old];
        assert_eq!(ended_since(&job(history), before, false), Some(&ours));
        // Skipped starts all have run id 0: told apart by their start.
        let skip_a = run(0, ASKED, "skipped", 5_000, 0);
        let skip_b = run(0, ASKED, "skipped", 6_000, 0);
        assert!(ended_since(&job(vec![skip_a.clone()]), Some(key(&skip_a)), false).is_none());
        assert_eq!(
            ended_since(
                &job(vec![skip_b.clone(), skip_a.clone()]),
                Some(key(&skip_a)),
                false
            ),
            Some(&skip_b)
        );
        // The first run ever asked for.
        assert_eq!(
            ended_since(&job(vec![skip_a.clone()]), None, false),
            Some(&skip_a)
        );
    }

    #[test]
    fn with_retries_a_wait_ends_on_the_last_retry_once_no_other_is_coming() {
        let with = |state: &str, history: Vec<api::JobRun>| api::Job {
            state: state.into(),
            ..job(history)
        };
        let ours = run(5, ASKED, "failed", 3_000, 10);
        let retry = run(6, RETRY, "running", 4_000, 0);
        // Failed, a retry coming (backoff): keep waiting; without retries, ours is the answer.
        assert!(ended_since(&with("backoff", vec![ours.clone()]), None, true).is_none());
        assert_eq!(
            ended_since(&with("backoff", vec![ours.clone()]), None, false),
            Some(&ours)
        );
        // The retry runs: keep waiting.
        let history = vec![retry.clone(), ours.clone()];
        assert!(ended_since(&with("running", history), None, true).is_none());
        // It failed and no other comes (retries spent): that one.
        let mut spent = retry.clone();
        spent.result = "failed".into();
        let history = vec![spent.clone(), ours.clone()];
        assert_eq!(
            ended_since(&with("failed", history), None, true),
            Some(&spent)
        );
        // It succeeded: that one, whatever the schedule does next.
        let mut done = retry;
        done.result = "done".into();
        let later = run(7, "schedule", "running", 9_000, 0);
        let history = vec![later, done.clone(), ours];
        assert_eq!(
            ended_since(&with("running", history), None, true),
            Some(&done)
        );
    }
}
