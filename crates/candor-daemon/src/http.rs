//! The REST/JSON API over the Unix socket. Reads come from the published board (statuses are
//! derived at request time); changes go to the brain as requests. Every error is JSON with a
//! reason; malformed input gets a 4xx, never a crash.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use candor_brain::{Reply, Request, ServiceState};
use candor_keeper::clock;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use candor_api::{self as api, Action};
use tokio::sync::{mpsc, oneshot};

use axum::extract::ConnectInfo;

use crate::api_error::ApiError;
use crate::app::{
    ask, count_param, duration_param, flag, unexpected, unknown_service, AppState, Q,
};
use crate::peer::{Peer, Role};
use crate::shell::Asked;
use crate::sse;

/// The largest request body taken (only `POST /v1/upgrade` has one, a few hundred bytes).
pub const MAX_BODY: usize = 64 << 10;

/// The API's routes and the table of the least role each needs, from one list (so no route is
/// served without a line in the table).
macro_rules! api_routes {
    (@method Get) => { get };
    (@method Post) => { post };
    ($($verb:ident $path:literal => $handler:expr, $need:expr, $what:literal;)*) => {
        /// Every route of the API, with the least its caller needs (`roles.rs`).
        pub const ROUTES: &[Route] = &[$(Route {
            verb: Verb::$verb,
            path: $path,
            need: $need,
            what: $what,
        },)*];

        fn api_routes() -> Router<AppState> {
            Router::new()$(.route($path, api_routes!(@method $verb)($handler)))*
        }
    };
}

use crate::roles::{Need, Route, Verb};
const READ: Need = Need::Role(Role::ReadOnly);
const OPERATE: Need = Need::Role(Role::Operator);

api_routes! {
    Get "/v1/daemon" => daemon, READ, "reading the daemon's info";
    Get "/v1/services" => list, READ, "reading the services";
    Get "/v1/services/{name}" => one, READ, "reading {name}";
    Get "/v1/services/{name}/logs" => crate::log_routes::service_logs, READ, "reading {name}'s logs";
    Get "/v1/logs" => crate::log_routes::all_logs, READ, "reading the logs";
    Post "/v1/services/{name}/{action}" => action, OPERATE, "{action} {name}";
    Post "/v1/services/{name}/run" => crate::job_routes::run, OPERATE, "run {name}";
    Post "/v1/services/{name}/rollout/{what}" => crate::group_routes::rollout, OPERATE, "rollout {what} {name}";
    Post "/v1/reset-failed" => reset_failed, OPERATE, "reset-failed";
    Get "/v1/jobs" => crate::job_routes::list, READ, "reading the jobs";
    Get "/v1/jobs/{name}" => crate::job_routes::one, READ, "reading the job {name}";
    Get "/v1/events" => events, READ, "reading the events";
    Post "/v1/reload" => reload, OPERATE, "reload";
    Post "/v1/shutdown" => shutdown, Need::Shutdown, "shutdown";
    Post "/v1/upgrade" => upgrade, Need::Role(Role::Admin), "upgrade";
    Post "/v1/web" => open_web, Need::Dashboard, "`candor web`";
    Get "/metrics" => metrics, READ, "reading the metrics";
}

pub fn router(state: AppState) -> Router {
    let gate = crate::roles::Gate {
        access: state.access.clone(),
        routes: ROUTES,
    };
    api_routes()
        .fallback(|| async {
            ApiError::new(404, "no such endpoint; see the API list in the README")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(405, "method not allowed on this endpoint")
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(json_bodies))
        .layer(axum::middleware::from_fn_with_state(
            gate,
            crate::roles::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.faults.clone(),
            catch_panics,
        ))
        .with_state(state)
}

/// A request body is JSON: one sent as anything else (a form's `text/plain`, urlencoded) is
/// refused before any handler sees it, on both listeners (the CLI sends
/// `Content-Type: application/json`). A body is read whole here, within [`BODY_TIMEOUT`]: a
/// client that sends a head and then trickles (or never sends) its body does not hold its
/// connection past that.
async fn json_bodies(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let has_body = match body_rule(req.headers()) {
        Ok(has_body) => has_body,
        Err(e) => {
            // Read (and drop) what fits of the body first, for at most the timeout, so that a
            // client still writing it reads the answer instead of a broken pipe.
            let drain = axum::body::to_bytes(req.into_body(), MAX_BODY);
            let _ = tokio::time::timeout(BODY_TIMEOUT, drain).await;
            return e.into_response();
        }
    };
    if !has_body {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => {
            let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            next.run(req).await
        }
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_big {
                ApiError::new(
                    413,
                    format!("the request body is over {MAX_BODY} bytes; at most {MAX_BODY} bytes are taken"),
                )
            } else {
                ApiError::new(400, format!("the request body could not be read: {e}"))
            }
            .into_response()
        }
        Err(_) => ApiError::new(
            408,
            format!(
                "the request body did not arrive within {}s of its head",
                BODY_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

/// How long a request's body may take to arrive once its head has.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// 413 for a body over [`MAX_BODY`], 415 for a body that is not `application/json`; a request
/// without a body (no or a zero `Content-Length`, no `Transfer-Encoding`) passes. Whether it
/// has a body, when it passes.
pub(crate) fn body_rule(headers: &axum::http::HeaderMap) -> Result<bool, ApiError> {
    use axum::http::header;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    if !chunked && length.unwrap_or(0) == 0 {
        return Ok(false);
    }
    if let Some(n) = length.filter(|&n| n > MAX_BODY as u64) {
        return Err(ApiError::new(
            413,
            format!("the request body is {n} bytes; at most {MAX_BODY} bytes are taken"),
        ));
    }
    let kind = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = kind
        .as_deref()
        .and_then(|k| k.split(';').next())
        .map(str::trim);
    if essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        return Ok(true);
    }
    Err(ApiError::new(
        415,
        format!(
            "a request body must be JSON sent with `Content-Type: application/json`; this one has {}",
            kind.map_or("no Content-Type".to_string(), |k| format!("`{k}`"))
        ),
    ))
}

/// A handler that panics answers 500, is reported as a fault, and costs nothing else (the
/// connection's task would otherwise just end without an answer).
async fn catch_panics(
    State(faults): State<Arc<crate::faults::Faults>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use futures_util::FutureExt;
    // Named only if it panics: nothing is built for the requests that do not.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let answer = async move {
        if candor_core::fail_once("api", req.uri().path()) {
            panic!("failpoint api:{}", req.uri().path());
        }
        next.run(req).await
    };
    match std::panic::AssertUnwindSafe(answer).catch_unwind().await {
        Ok(resp) => resp,
        Err(payload) => {
            let message = crate::faults::panic_message(&*payload);
            let task = format!("the API handler of {method} {}", uri.path());
            faults.report(&task, &message, "it answered 500");
            ApiError::new(
                500,
                format!("the daemon failed to answer this ({message}); this was reported and the daemon carries on"),
            )
            .into_response()
        }
    }
}

/// `candor web`: open the dashboard's listener if it is not open, and say where, with the
/// operator token or (`{"read_only": true}`) the read-only one. Who may ask: `roles.rs`.
async fn open_web(
    State(st): State<AppState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<api::WebInfo>, ApiError> {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status().as_u16(),
            format!("bad request body: {e} (at most {MAX_BODY} bytes)"),
        )
    })?;
    let asked: api::WebRequest = if body.iter().all(u8::is_ascii_whitespace) {
        api::WebRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                400,
                format!("bad `candor web` request: {e} (the body is {{\"read_only\": true}} or nothing)"),
            )
        })?
    };
    st.web
        .open_for(st.web.listen, asked.read_only)
        .await
        .map(Json)
        .map_err(|e| {
            ApiError::new(
                500,
                format!("{e}; set [daemon] web = {{ listen = \"IP:PORT\" }} to another port"),
            )
        })
}

async fn daemon(State(st): State<AppState>) -> Json<api::DaemonInfo> {
    let mut info = (*st.info).clone();
    if let Ok(me) = tokio::task::spawn_blocking(crate::sampler::sample_self).await {
        info.resources = api::DaemonResources {
            fds: me.fds,
            fd_limit: me.fd_limit,
            fd_pct: (candor_core::budget::pct(me.fds, me.fd_limit) * 10.0).round() / 10.0,
            rss_bytes: me.rss,
            refused_connections: st.guard.refused.load(std::sync::atomic::Ordering::Relaxed),
            accept_errors: st
                .guard
                .accept_errors
                .load(std::sync::atomic::Ordering::Relaxed),
            cut_off_connections: st.guard.cut_off.load(std::sync::atomic::Ordering::Relaxed),
            connections: api::Connections {
                control: st.guard.control.snapshot(),
                dashboard: st.guard.dashboard.snapshot(),
            },
        };
    }
    {
        let board = st.board.borrow();
        info.services = board.len();
        info.shared_causes = board.shared_causes(candor_keeper::clock::now());
    }
    info.hooks = st.hooks.stats();
    info.forward = st.forwards.stats();
    info.access = Some(access(&st).await);
    info.faults = api::Faults {
        count: st.faults.count(),
        recent: st.faults.recent(),
    };
    let n = &st.notify;
    info.notify.received = n.received.load(std::sync::atomic::Ordering::Relaxed);
    info.notify.dropped_oversized = n.oversized.load(std::sync::atomic::Ordering::Relaxed);
    info.notify.dropped_strangers = n.strangers.load(std::sync::atomic::Ordering::Relaxed);
    info.notify.dropped_rate_limited = n.rate_limited.load(std::sync::atomic::Ordering::Relaxed);
    info.notify.dropped_overflow = n.overflow.load(std::sync::atomic::Ordering::Relaxed);
    info.notify.coalesced = n.coalesced.load(std::sync::atomic::Ordering::Relaxed);
    let d = st.store.dropped();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let (dropped_lines, dropped_events) = (load(&d.logs), load(&d.events));
    info.store_dropped = api::LogCounts {
        lines: dropped_lines,
        dropped: dropped_events,
        folded: 0,
    };
    let store = st.store.clone();
    if let Ok(usage) = tokio::task::spawn_blocking(move || store.usage()).await {
        info.store = api::StoreInfo {
            path: st.store.path().display().to_string(),
            log_bytes: usage.log_bytes,
            log_cap_bytes: st.store.caps().total,
            file_bytes: usage.file_bytes,
            wal_bytes: usage.wal_bytes,
            dropped_lines,
            dropped_events,
            trimmed_lines: load(&d.trimmed),
            recovered: st.store.recovered().map(String::from),
        };
    }
    Json(info)
}

/// Who can reach the daemon, with which role, now.
async fn access(st: &AppState) -> api::Access {
    use std::os::unix::fs::PermissionsExt;
    let socket = PathBuf::from(&st.info.socket);
    let mode = tokio::task::spawn_blocking(move || std::fs::symlink_metadata(socket))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|m| format!("{:04o}", m.permissions().mode() & 0o7777))
        .unwrap_or_else(|| "unknown".into());
    let a = &st.access;
    api::Access {
        control_uid: a.daemon_uid,
        socket_mode: mode,
        operators: a.socket_group.as_ref().map(|(name, gid)| api::Group {
            name: name.clone(),
            gid: *gid,
        }),
        operators_may_shutdown: a.policy().operators_may_shutdown,
        dashboard: st.web.listening().map(|l| l.to_string()),
        dashboard_tokens: st.web.tokens(),
    }
}

/// Every service's status. `?pretty`: indented as `candor status --json` prints it, so the CLI
/// passes the bytes through instead of parsing and printing them again.
async fn list(State(st): State<AppState>, Query(q): Q) -> Result<Response, ApiError> {
    let pretty = flag(&q, "pretty")?;
    if flag(&q, "follow")? {
        return Ok(follow_board(&st).await.into_response());
    }
    let board = st.fresh.current(&st.board).await;
    let now = clock::now();
    let list: Vec<api::ServiceStatus> = board.statuses(now);
    if !pretty {
        return Ok(Json(list).into_response());
    }
    let mut body = serde_json::to_vec_pretty(&list)
        .map_err(|e| ApiError::new(500, format!("cannot encode the board: {e}")))?;
    body.push(b'\n');
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `GET /v1/services?follow=true`: the whole list now, then again each time the board
/// changes (a state, a probe, a sample), at most twice a second: what the dashboard shows,
/// pushed.
async fn follow_board(
    st: &AppState,
) -> axum::response::sse::Sse<
    impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    st.fresh.current(&st.board).await;
    let rx = st.board.clone();
    let shared = st.frames.clone();
    let frames = futures_util::stream::unfold((rx, true), move |(mut rx, first)| {
        let shared = shared.clone();
        async move {
            if !first {
                rx.changed().await.ok()?;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            let board = rx.borrow_and_update().clone();
            let data = shared.frame(&board);
            Some((Ok(Event::default().data(&*data)), (rx, false)))
        }
    });
    Sse::new(frames).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
}

async fn one(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::ServiceStatus>, ApiError> {
    let board = st.fresh.current(&st.board).await;
    if let Some(group) = board.group(&name, clock::now()) {
        return Ok(Json(group));
    }
    let view = board
        .get(&name)
        .ok_or_else(|| unknown_service(&board, &name))?;
    Ok(Json(view.status(clock::now())))
}

/// Whether a waited-for action reached its goal: `Some(Ok)` done, `Some(Err)` will not.
fn goal(
    action: Action,
    state: ServiceState,
    reason: &str,
    runs: u64,
    runs_before: u64,
) -> Option<Result<(), String>> {
    use ServiceState::*;
    match action {
        Action::Stop => matches!(state, Stopped | Exited | Failed).then_some(Ok(())),
        Action::Start | Action::Restart => {
            let new_run = runs > runs_before;
            match state {
                Running | Degraded if action == Action::Start || new_run => Some(Ok(())),
                Exited if new_run => Some(Ok(())),
                Failed => Some(Err(format!("failed: {reason}"))),
                Backoff if new_run => Some(Err(format!("started, then {reason}"))),
                Stopped => Some(Err(format!("stopped before it was running: {reason}"))),
                _ => None,
            }
        }
    }
}

/// `POST /v1/services/{name}/{action}`: start, stop, restart (through the brain), or reload
/// and kill (signals to the live run, `signal.rs`).
async fn action(
    State(st): State<AppState>,
    ConnectInfo(caller): ConnectInfo<Peer>,
    Path((name, action)): Path<(String, String)>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    match action.as_str() {
        "reload" => crate::signal::reload(&st, caller, &name, &q)
            .await
            .map(|o| Json(o).into_response()),
        "kill" => crate::signal::kill(&st, caller, &name, &q)
            .await
            .map(|o| Json(o).into_response()),
        "scale" => crate::group_routes::scale(&st, caller, name, &q)
            .await
            .map(|s| s.into_response()),
        "start" | "stop" | "restart"
            if st
                .fresh
                .current(&st.board)
                .await
                .groups
                .keys()
                .any(|g| g.as_str() == name) =>
        {
            crate::group_routes::lifecycle(&st, caller, &name, &action, &q)
                .await
                .map(|s| s.into_response())
        }
        _ => lifecycle(st, caller, name, action, q)
            .await
            .map(|s| s.into_response()),
    }
}

async fn lifecycle(
    st: AppState,
    caller: Peer,
    name: String,
    action: String,
    q: HashMap<String, String>,
) -> Result<Json<api::ServiceStatus>, ApiError> {
    let action = Action::parse(&action).ok_or_else(|| {
        ApiError::new(
            404,
            format!("unknown action `{action}`; use start, stop, restart, reload or kill"),
        )
    })?;
    let wait = flag(&q, "wait")?;
    let timeout = duration_param(&q, "timeout")?;
    st.fresh.current(&st.board).await;
    let mut board_rx = st.board.clone();
    let (runs_before, stop_timeout) = {
        let board = board_rx.borrow_and_update();
        let view = board
            .get(&name)
            .ok_or_else(|| unknown_service(&board, &name))?;
        (view.runs(), view.spec().stop.timeout)
    };
    let request = match action {
        Action::Start => Request::Start(name.clone()),
        Action::Stop => Request::Stop(name.clone()),
        Action::Restart => match q.get("strategy") {
            // Only a replicated service has a strategy to override; the brain says so.
            Some(s) => Request::RestartWith(
                name.clone(),
                candor_spec::Strategy::parse(s).ok_or_else(|| {
                    ApiError::new(
                        400,
                        format!("`strategy` is \"{s}\"; use rolling, overlap or stop-first"),
                    )
                })?,
            ),
            None => Request::Restart(name.clone()),
        },
    };
    match ask(&st, caller, request).await? {
        Reply::Done => {}
        other => return Err(unexpected(other)),
    }
    let default_wait = match action {
        Action::Stop => stop_timeout + Duration::from_secs(30),
        _ => stop_timeout + Duration::from_secs(60),
    };
    let deadline = tokio::time::Instant::now() + timeout.unwrap_or(default_wait);
    loop {
        let (status, outcome) = {
            let board = board_rx.borrow_and_update();
            let now = clock::now();
            let Some(view) = board.get(&name) else {
                return Err(ApiError::new(
                    410,
                    format!("service `{name}` was removed while waiting"),
                ));
            };
            let d = view.derived(now.mono);
            (
                view.status(now),
                goal(action, d.state, &d.reason, view.runs(), runs_before),
            )
        };
        if !wait {
            return Ok(Json(status));
        }
        match outcome {
            Some(Ok(())) => return Ok(Json(status)),
            Some(Err(why)) => {
                let mut e = ApiError::new(409, format!("{name} {why}"));
                e.body.status = Some(Box::new(status));
                return Err(e);
            }
            None => {}
        }
        let awaited = format!("{name} to {}", action.as_str());
        crate::app::next_board(&mut board_rx, deadline, &awaited, status).await?;
    }
}

async fn reset_failed(
    State(st): State<AppState>,
    ConnectInfo(caller): ConnectInfo<Peer>,
    Query(q): Q,
) -> Result<Json<api::ResetFailed>, ApiError> {
    let force = flag(&q, "force")?;
    match ask(&st, caller, Request::ResetFailed { force }).await? {
        Reply::ResetFailed(out) => Ok(Json(out)),
        other => Err(unexpected(other)),
    }
}

/// `POST /v1/reload`; `?plan=true`: what it would do, changing nothing.
async fn reload(
    State(st): State<AppState>,
    ConnectInfo(caller): ConnectInfo<Peer>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let reloader = Reloader::of(&st);
    if flag(&q, "plan")? {
        let spec = reloader.load().await?;
        let board = st.fresh.current(&st.board).await;
        let mut plan = crate::group_routes::plan(&board, &spec);
        plan.notes = reloader.daemon_notes(&spec);
        return Ok(Json(plan).into_response());
    }
    reloader
        .reload(Some(caller))
        .await
        .map(|o| Json(o).into_response())
}

/// What re-reading the config needs, apart from the rest of the API's state: the same for
/// `POST /v1/reload` and for SIGHUP (which must not keep the store alive at shutdown).
#[derive(Clone)]
pub struct Reloader {
    config: PathBuf,
    state_dir: String,
    requests: mpsc::Sender<Asked>,
    guard: Arc<crate::guard::GuardCounters>,
    web: Arc<crate::web::Web>,
    access: Arc<crate::roles::Access>,
}

impl Reloader {
    pub fn of(st: &AppState) -> Reloader {
        Reloader {
            config: st.config.clone(),
            state_dir: st.info.state_dir.clone(),
            requests: st.requests.clone(),
            guard: st.guard.clone(),
            web: st.web.clone(),
            access: st.access.clone(),
        }
    }

    /// The config read again and checked; an invalid one is a 422 with every error.
    pub async fn load(&self) -> Result<candor_spec::Spec, ApiError> {
        let path = self.config.clone();
        let loaded = tokio::task::spawn_blocking(move || candor_spec::load(&path))
            .await
            .map_err(|e| ApiError::new(500, format!("reload task failed: {e}")))?;
        loaded.map_err(|errors| {
            let mut e = ApiError::new(
                422,
                format!("{} is invalid; nothing was changed", self.config.display()),
            );
            e.body.details = errors.0.iter().map(|e| e.to_string()).collect();
            e
        })
    }

    /// What of `[daemon]` a reload does not apply live.
    pub fn daemon_notes(&self, spec: &candor_spec::Spec) -> Vec<String> {
        let mut notes = Vec::new();
        let now_state = spec
            .daemon
            .state_dir
            .as_ref()
            .map(|p| p.display().to_string());
        if now_state.is_some_and(|s| s != self.state_dir) {
            notes.push(
                "[daemon] state_dir changed; it takes effect when the daemon restarts".to_string(),
            );
        }
        notes
    }

    /// Parse the config again and hand it to the brain; an invalid one changes nothing.
    /// `caller`: who asked (None: SIGHUP).
    pub async fn reload(&self, caller: Option<Peer>) -> Result<api::ReloadOutcome, ApiError> {
        let spec = self.load().await?;
        let mut notes = self.daemon_notes(&spec);
        notes.extend(self.web.reconfigure(spec.daemon.web.clone()));
        let send_timeout = spec.daemon.send_timeout;
        let may_shutdown = spec.daemon.operators_may_shutdown;
        let (tx, rx) = oneshot::channel();
        let gone = || ApiError::new(503, "the supervisor is shutting down");
        let asked = Asked {
            request: Request::Reload(Arc::new(spec)),
            reply: Some(tx),
            caller,
        };
        self.requests.send(asked).await.map_err(|_| gone())?;
        let mut out = match rx.await.map_err(|_| gone())? {
            Reply::Reload(out) => out,
            Reply::Error { status, error } => return Err(ApiError::new(status, error)),
            other => return Err(unexpected(other)),
        };
        self.guard.set_send_timeout(send_timeout);
        self.access.set_operators_may_shutdown(may_shutdown);
        out.notes.extend(notes);
        Ok(out)
    }
}

async fn shutdown(
    State(st): State<AppState>,
    ConnectInfo(caller): ConnectInfo<Peer>,
) -> Result<Json<api::Ack>, ApiError> {
    let asked = Asked {
        request: Request::Shutdown,
        reply: None,
        caller: Some(caller),
    };
    st.requests
        .send(asked)
        .await
        .map_err(|_| ApiError::new(503, "already shutting down"))?;
    Ok(Json(api::Ack {
        ok: true,
        message: "stopping services in reverse dependency order, then exiting".into(),
    }))
}

/// How long the new binary may take to check the config.
const UPGRADE_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// `POST /v1/upgrade`: check that the new binary runs and accepts the config (`<binary> check
/// -c <config>`, through the keeper like any child), then have the shell hand over and exec
/// it. Any failure before the handover changes nothing and says why.
async fn upgrade(
    State(st): State<AppState>,
    ConnectInfo(caller): ConnectInfo<Peer>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<api::UpgradeStarted>), ApiError> {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status().as_u16(),
            format!("bad request body: {e} (at most {MAX_BODY} bytes)"),
        )
    })?;
    let asked: api::UpgradeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        api::UpgradeRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(400, format!("bad upgrade request: {e}")))?
    };
    let binary = match asked.binary {
        Some(b) => PathBuf::from(b),
        None => crate::upgrade::own_binary_path().ok_or_else(|| {
            ApiError::new(
                500,
                "cannot tell where this daemon's binary is; pass --binary",
            )
        })?,
    };
    // 409: the request was understood; this binary cannot take over (the CLI exits 1).
    let refuse = |why: String| {
        ApiError::new(
            409,
            format!(
                "not upgrading to {}: {why}; nothing changed",
                binary.display()
            ),
        )
    };
    // Only a binary no one but root or the daemon's user can change is run (the check below
    // already runs it as the daemon's user).
    let trusted = st.access.daemon_uid;
    let checked = {
        let binary = binary.clone();
        tokio::task::spawn_blocking(move || crate::trusted_path::check(&binary, trusted))
            .await
            .map_err(|e| ApiError::new(500, format!("path check failed: {e}")))?
    };
    match checked {
        Ok(_) => {}
        Err(e @ crate::trusted_path::Untrusted::Unsafe { .. }) => {
            let who = match trusted {
                0 => "root".to_string(),
                uid => format!("root or uid {uid}"),
            };
            return Err(refuse(format!(
                "{e}; put the binary in a directory only {who} can write"
            )));
        }
        Err(e) => return Err(refuse(e.to_string())),
    }
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(&binary) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        Ok(_) => return Err(refuse("not an executable file".into())),
        Err(e) => return Err(refuse(e.to_string())),
    }
    let argv = vec![
        binary.display().to_string(),
        "check".to_string(),
        "-c".to_string(),
        st.config.display().to_string(),
    ];
    match st
        .exec
        .run_cmd(
            &st.keeper,
            &argv,
            Vec::new(),
            None,
            candor_keeper::RunAs::default(),
            UPGRADE_CHECK_TIMEOUT,
        )
        .await
    {
        candor_keeper::ProbeEnd::Exited(s) if s.success() => {}
        candor_keeper::ProbeEnd::Exited(s) => {
            return Err(refuse(format!(
                "`{}` {}; run it to see why",
                argv.join(" "),
                s.describe()
            )))
        }
        candor_keeper::ProbeEnd::TimedOut => {
            return Err(refuse(format!(
                "`{}` did not finish in 30s",
                argv.join(" ")
            )))
        }
        candor_keeper::ProbeEnd::CannotStart(e) => {
            return Err(refuse(format!("cannot run it: {e}")))
        }
    }
    if st.init {
        let state_dir = PathBuf::from(&st.info.state_dir);
        crate::upgrade::trial(&st.exec, &st.keeper, &binary, &state_dir)
            .await
            .map_err(refuse)?;
    }
    let (tx, rx) = oneshot::channel();
    let ask = crate::shell::UpgradeAsk {
        binary: binary.clone(),
        caller,
        reply: tx,
    };
    st.upgrade
        .try_send(ask)
        .map_err(|_| ApiError::new(409, "an upgrade or shutdown is already under way"))?;
    match rx.await {
        Ok(Ok(())) => Ok((
            StatusCode::ACCEPTED,
            Json(api::UpgradeStarted {
                binary: binary.display().to_string(),
                old_pid: st.info.pid,
                old_version: st.info.version.clone(),
                old_incarnation: st.info.incarnation.clone(),
            }),
        )),
        Ok(Err(e)) => Err(ApiError::new(503, format!("{e}; nothing changed"))),
        Err(_) => Err(ApiError::new(503, "the supervisor is shutting down")),
    }
}

async fn events(State(st): State<AppState>, Query(q): Q) -> Result<Response, ApiError> {
    let follow = flag(&q, "follow")?;
    let n = count_param(&q, if follow { 10 } else { 200 })?;
    let service = q.get("service").cloned();
    // Subscribe before reading history, so nothing falls between the two.
    let live = st
        .events
        .upgrade()
        .ok_or_else(|| ApiError::new(503, "the supervisor is shutting down"))?
        .subscribe();
    let store = st.store.clone();
    let wanted = service.clone();
    let rows = tokio::task::spawn_blocking(move || store.recent_events(wanted.as_deref(), n))
        .await
        .map_err(|e| ApiError::new(500, format!("event query failed: {e}")))?
        .map_err(|e| ApiError::new(500, format!("event query failed: {e}")))?;
    let history: Vec<api::Event> = rows
        .into_iter()
        .map(|r| api::Event {
            at: api::timestamp_ms(api::from_unix_ms(r.at_ms)),
            service: r.service,
            state: r.state,
            reason: r.reason,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
        })
        .collect();
    if !follow {
        return Ok(Json(history).into_response());
    }
    // Events recorded between the subscription and the history read arrive both ways.
    let mut seen = history.clone();
    let keep = move |e: &api::Event| {
        if service.as_ref().is_some_and(|s| *s != e.service) {
            return None;
        }
        if let Some(i) = seen.iter().position(|s| s == e) {
            seen.remove(i);
            return None;
        }
        seen.clear();
        Some(e.clone())
    };
    let lagged = |missed: u64| api::Event {
        at: api::timestamp_ms(SystemTime::now()),
        service: "candor".into(),
        state: "warning".into(),
        reason: format!(
            "this follower fell behind; {missed} events were skipped (see `candor events`)"
        ),
        detail: api::EventDetail::Skipped { skipped: missed }.to_value(),
    };
    Ok(sse::follow(history, live, keep, lagged).into_response())
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    let board = st.fresh.current(&st.board).await;
    let me = tokio::task::spawn_blocking(crate::sampler::sample_self)
        .await
        .ok();
    let mut out = crate::metrics::render(&board, me.as_ref(), clock::now());
    out.push_str(&crate::hooks::metrics(&st.hooks.stats()));
    out.push_str(&crate::forward::metrics(&st.forwards.stats()));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
