//! What the API's handlers share: their state ([`AppState`]) and the reading of query
//! parameters, with the 400s and 404s they answer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use candor_api as api;
use candor_keeper::clock;
use candor_store::Store;
use tokio::sync::mpsc;
use tokio::sync::watch;

use crate::api_error::ApiError;
use crate::board::Board;
use crate::shell::Asked;

#[derive(Clone)]
pub struct AppState {
    /// PID 1 of a PID namespace (`--init`): an upgrade is tried as a child first.
    pub init: bool,
    pub requests: mpsc::Sender<Asked>,
    pub board: watch::Receiver<Arc<Board>>,
    pub fresh: Arc<crate::board::Freshness>,
    pub store: Store,
    pub info: Arc<api::DaemonInfo>,
    pub config: PathBuf,
    /// Weak, so that the stream of followers ends when the brain does.
    pub events: tokio::sync::broadcast::WeakSender<api::Event>,
    pub notify: Arc<crate::notify::NotifyCounters>,
    pub guard: Arc<crate::guard::GuardCounters>,
    /// Weak, so that log followers' streams end when the daemon does.
    pub logs_live: tokio::sync::broadcast::WeakSender<crate::logs::LiveLine>,
    /// `candor upgrade`: checked here, carried out by the shell.
    pub upgrade: mpsc::Sender<crate::shell::UpgradeAsk>,
    pub keeper: candor_keeper::KeeperHandle,
    pub exec: Arc<crate::probe::ExecProbes>,
    pub faults: Arc<crate::faults::Faults>,
    /// What `[[daemon.hooks]]` delivered (`GET /v1/daemon` `hooks`, `/metrics`).
    pub hooks: Arc<crate::hooks::Counters>,
    /// `[[daemon.forward]]` targets and their counts.
    pub forwards: crate::forward::Forwards,
    pub web: Arc<crate::web::Web>,
    /// Who is admin and operator, and what operators may do now.
    pub access: Arc<crate::roles::Access>,
    /// The last board pushed to `GET /v1/services?follow=true` followers, as sent: every
    /// dashboard tab gets the same frame instead of deriving and encoding its own.
    pub frames: Arc<BoardFrames>,
}

/// One encoded board shared by its followers (see `http::follow_board`).
#[derive(Default)]
pub struct BoardFrames {
    last: std::sync::Mutex<Option<Frame>>,
}

/// A board, when it was encoded, and the encoding.
type Frame = (Arc<Board>, std::time::Instant, Arc<str>);

/// A frame is shared for this long: what it shows that moves by itself (uptimes, a backoff's
/// "restarting in") is never older than that.
const FRAME_SHARED_FOR: std::time::Duration = std::time::Duration::from_millis(250);

impl BoardFrames {
    /// `board`'s statuses as JSON: the one made for this board in the last
    /// [`FRAME_SHARED_FOR`], or a new one.
    pub(crate) fn frame(&self, board: &Arc<Board>) -> Arc<str> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((b, at, data)) = &*last {
            if Arc::ptr_eq(b, board) && at.elapsed() < FRAME_SHARED_FOR {
                return data.clone();
            }
        }
        let now = clock::now();
        let list: Vec<api::ServiceStatus> = board.statuses(now);
        let data: Arc<str> = serde_json::to_string(&list).unwrap_or_default().into();
        *last = Some((board.clone(), std::time::Instant::now(), data.clone()));
        data
    }
}

pub(crate) type Q = Query<HashMap<String, String>>;

pub(crate) fn flag(q: &HashMap<String, String>, key: &str) -> Result<bool, ApiError> {
    match q.get(key).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("") | Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ApiError::new(
            400,
            format!("`{key}` must be true or false, not `{other}`"),
        )),
    }
}

/// `n`: how many of the latest items, `default` when absent, at most 100 000.
pub(crate) fn count_param(q: &HashMap<String, String>, default: usize) -> Result<usize, ApiError> {
    match q.get("n") {
        Some(s) => s
            .parse::<usize>()
            .map(|n| n.min(100_000))
            .map_err(|_| ApiError::new(400, format!("`n` must be a whole number, not `{s}`"))),
        None => Ok(default),
    }
}

pub(crate) fn duration_param(
    q: &HashMap<String, String>,
    key: &str,
) -> Result<Option<Duration>, ApiError> {
    q.get(key)
        .map(|s| {
            candor_spec::parse_duration(s).map_err(|e| ApiError::new(400, format!("`{key}`: {e}")))
        })
        .transpose()
}

pub(crate) fn unknown_service(board: &Board, name: &str) -> ApiError {
    ApiError::new(
        404,
        format!(
            "no service named `{name}`; configured: {}",
            board.names().join(", ")
        ),
    )
}

/// Hand a request to the brain and wait for its answer (sent once the board shows it).
pub(crate) async fn ask(
    st: &AppState,
    caller: crate::peer::Peer,
    request: candor_brain::Request,
) -> Result<candor_brain::Reply, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let gone = || ApiError::new(503, "the supervisor is shutting down");
    let asked = Asked {
        request,
        reply: Some(tx),
        caller: Some(caller),
    };
    st.requests.send(asked).await.map_err(|_| gone())?;
    match rx.await.map_err(|_| gone())? {
        candor_brain::Reply::Error { status, error } => Err(ApiError::new(status, error)),
        reply => Ok(reply),
    }
}

pub(crate) fn unexpected(reply: candor_brain::Reply) -> ApiError {
    ApiError::new(500, format!("unexpected answer from the brain: {reply:?}"))
}

/// Wait for the next board, until `deadline`: then a 504 saying what was awaited and where
/// the service is (its status in the body); a 503 once the brain is gone.
pub(crate) async fn next_board(
    rx: &mut watch::Receiver<Arc<Board>>,
    deadline: tokio::time::Instant,
    awaited: &str,
    status: api::ServiceStatus,
) -> Result<(), ApiError> {
    match tokio::time::timeout_at(deadline, rx.changed()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(ApiError::new(503, "the supervisor is shutting down")),
        Err(_) => {
            let mut e = ApiError::new(
                504,
                format!(
                    "timed out waiting for {awaited}; it is {}: {}",
                    status.state, status.reason
                ),
            );
            e.body.status = Some(Box::new(status));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_of_one_board_share_one_frame_and_a_new_board_gets_its_own() {
        let frames = BoardFrames::default();
        let a = Arc::new(Board::default());
        let first = frames.frame(&a);
        assert!(Arc::ptr_eq(&first, &frames.frame(&a)), "encoded once");
        let b = Arc::new(Board::default());
        let of_b = frames.frame(&b);
        assert!(!Arc::ptr_eq(&first, &of_b), "a new board, a new frame");
        assert_eq!(&*first, "[]");
        // Past FRAME_SHARED_FOR, even the same board is encoded again (uptimes move).
        std::thread::sleep(FRAME_SHARED_FOR + std::time::Duration::from_millis(20));
        assert!(!Arc::ptr_eq(&of_b, &frames.frame(&b)));
    }
}
