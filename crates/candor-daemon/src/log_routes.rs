//! `GET /v1/services/{name}/logs` and `GET /v1/logs` (every service, interleaved by arrival):
//! the last lines matching `n`, `since`, `stream`, `level`, `grep`; with `follow`, then each new line as
//! the pipe readers store it (server-sent events — no polling of the database). One answer
//! holds at most `ANSWER_BYTES` of lines; older ones are paged with `before=<id>`.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use candor_api as api;
use candor_store::{Level, LogQuery, Stream, ANSWER_BYTES};

use crate::api_error::ApiError;
use crate::app::{count_param, flag, unknown_service, AppState, Q};
use crate::logs::{entry, LiveLine};
use crate::sse;

pub async fn service_logs(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let group = {
        let board = st.board.borrow();
        let group = board.groups.keys().any(|g| g.as_str() == name);
        if !group && board.get(&name).is_none() {
            return Err(unknown_service(&board, &name));
        }
        group
    };
    logs(st, Some(name), group, q).await
}

pub async fn all_logs(State(st): State<AppState>, Query(q): Q) -> Result<Response, ApiError> {
    logs(st, None, false, q).await
}

fn query(
    service: Option<String>,
    group: bool,
    q: &HashMap<String, String>,
    follow: bool,
) -> Result<LogQuery, ApiError> {
    let since_ms = q
        .get("since")
        .map(|s| api::parse_since(s, SystemTime::now()).map(api::unix_ms))
        .transpose()
        .map_err(|e| ApiError::new(400, format!("`since`: {e}")))?;
    let stream = q
        .get("stream")
        .map(|s| {
            Stream::parse(s)
                .filter(|s| *s != Stream::Candor)
                .ok_or_else(|| {
                    ApiError::new(400, format!("`stream` must be out or err, not `{s}`"))
                })
        })
        .transpose()?;
    let level = q
        .get("level")
        .map(|s| {
            Level::parse(s).ok_or_else(|| {
                ApiError::new(
                    400,
                    format!("`level` must be one of {}, not `{s}`", Level::NAMES),
                )
            })
        })
        .transpose()?;
    let grep = q
        .get("grep")
        .map(|g| {
            regex::bytes::Regex::new(g).map_err(|e| {
                ApiError::new(
                    400,
                    format!("`grep` is not a valid regular expression: {e}"),
                )
            })
        })
        .transpose()?;
    let before = q
        .get("before")
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                ApiError::new(
                    400,
                    format!("`before` must be a line id (a whole number), not `{s}`"),
                )
            })
        })
        .transpose()?;
    if follow && before.is_some() {
        return Err(ApiError::new(
            400,
            "`before` pages back through stored lines; it cannot be combined with `follow`",
        ));
    }
    Ok(LogQuery {
        service,
        group,
        n: count_param(q, if follow { 10 } else { 100 })?,
        since_ms,
        stream,
        grep,
        before,
        level,
        ..LogQuery::default()
    })
}

async fn logs(
    st: AppState,
    service: Option<String>,
    group: bool,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let follow = flag(&q, "follow")?;
    let query = query(service, group, &q, follow)?;
    // Subscribe before reading history, so nothing falls between the two.
    let live = match follow {
        true => Some(
            st.logs_live
                .upgrade()
                .ok_or_else(|| ApiError::new(503, "the supervisor is shutting down"))?
                .subscribe(),
        ),
        false => None,
    };
    let store = st.store.clone();
    let wanted = query.clone();
    let tail = tokio::task::spawn_blocking(move || {
        // Lines queued before this request are committed first: a line logged before the
        // request is in the answer (or, following, arrives live — never neither).
        store.flush();
        store.tail_logs(&wanted)
    })
    .await
    .map_err(|e| ApiError::new(500, format!("log query failed: {e}")))?
    .map_err(|e| ApiError::new(500, format!("log query failed: {e}")))?;
    let mut history: Vec<api::LogEntry> = tail
        .lines
        .iter()
        .map(|l| entry(l.id, l.at_ms, &l.service, l.stream, l.shape, &l.line))
        .collect();
    // Where older lines were left out to keep the answer bounded, the next page back.
    let next_page = tail.cut.then(|| history.first().map(|e| e.id)).flatten();
    let Some(live) = live else {
        let mut resp = Json(history).into_response();
        if let Some(id) = next_page {
            resp.headers_mut().insert(MORE_BEFORE, id.into());
        }
        return Ok(resp);
    };
    if let Some(id) = next_page {
        history.insert(0, marker(left_out(id)));
    }
    // Lines stored between the subscription and the history read arrive both ways.
    let mut sent: HashSet<i64> = history.iter().map(|e| e.id).collect();
    let keep = move |l: &LiveLine| {
        if sent.remove(&l.id) || !query.matches(&l.service, l.stream, l.shape, &l.line) {
            return None;
        }
        Some(entry(l.id, l.at_ms, &l.service, l.stream, l.shape, &l.line))
    };
    let lagged = |missed: u64| {
        marker(format!(
            "-- this follower fell behind; {missed} lines were skipped \
             (they are stored: see `candor logs`) --"
        ))
    };
    Ok(sse::follow(history, live, keep, lagged).into_response())
}

/// The response header of a log answer cut short by its byte bound: the id to page back from
/// (`before=<id>`). `candor logs` follows it until it has the lines it was asked for.
pub const MORE_BEFORE: &str = "candor-more-before";

fn left_out(id: i64) -> String {
    format!(
        "-- older lines left out: one answer holds at most {} MiB of lines; \
         `candor logs --before {id}` shows them --",
        ANSWER_BYTES >> 20
    )
}

/// A line Candor writes into a stream of log lines.
fn marker(line: String) -> api::LogEntry {
    api::LogEntry {
        id: 0,
        at: api::timestamp_ms(SystemTime::now()),
        service: "candor".into(),
        stream: Stream::Candor.as_str().into(),
        line,
        raw_hex: None,
        level: Level::Notice.as_str().into(),
        msg: None,
        time: None,
    }
}
