//! The API of replicated services: `scale`, `rollout undo|resume`, start/stop/restart of a
//! whole group (a restart with its update strategy or `?strategy=`; `?wait` until the rollout
//! is done or halts), and the reload plan read against the published board.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::Json;
use candor_api as api;
use candor_brain::{Reply, Request, RolloutAction};
use candor_keeper::clock;
use candor_spec::{ServiceName, Strategy};

use crate::api_error::ApiError;
use crate::app::{ask, duration_param, flag, next_board, unexpected, AppState};
use crate::board::Board;
use crate::peer::Peer;

/// A group's own row, or a 404 that says what `name` is instead.
fn group_row(board: &Board, name: &str) -> Result<api::ServiceStatus, ApiError> {
    board
        .group(name, clock::now())
        .ok_or_else(|| not_a_group(board, name))
}

fn not_a_group(board: &Board, name: &str) -> ApiError {
    if board.get(name).is_some() {
        ApiError::new(
            404,
            format!("`{name}` is not replicated; set `replicas = 1` (or more) in its config and reload to scale it or roll it out"),
        )
    } else {
        let groups: Vec<String> = board.groups.keys().map(|g| g.to_string()).collect();
        ApiError::new(
            404,
            format!(
                "no replicated service named `{name}`; replicated: {}",
                if groups.is_empty() {
                    "none".to_string()
                } else {
                    groups.join(", ")
                }
            ),
        )
    }
}

/// `POST /v1/services/{name}/scale?replicas=N`: instances start or go (the highest first).
pub(crate) async fn scale(
    st: &AppState,
    caller: Peer,
    name: String,
    q: &HashMap<String, String>,
) -> Result<Json<api::ServiceStatus>, ApiError> {
    let max = candor_spec::MAX_REPLICAS;
    let replicas: u32 = match q.get("replicas").map(|s| s.parse::<u32>()) {
        Some(Ok(n)) if (1..=max).contains(&n) => n,
        _ => {
            return Err(ApiError::new(
                400,
                format!("`replicas` must be a whole number from 1 to {max} (`candor stop {name}` stops every instance)"),
            ))
        }
    };
    let board = st.fresh.current(&st.board).await;
    group_row(&board, &name)?;
    let key = ServiceName::new(&name).map_err(|e| ApiError::new(400, e))?;
    let group = board.groups[&key].clone();
    // Instances past those parsed are parsed now from the group's config, off the async
    // threads (it reads env files as loading does).
    let upto = replicas + group.spec.update.max_surge;
    let missing: Vec<u32> = (1..=upto)
        .filter(|i| !group.specs.contains_key(i))
        .collect();
    let specs = if missing.is_empty() {
        None
    } else {
        let spec = group.spec.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            missing
                .into_iter()
                .map(|i| match spec.instance(i) {
                    Some(Ok(s)) => Ok((i, Arc::new(s))),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err(format!("{} is not replicated", spec.name)),
                })
                .collect::<Result<std::collections::BTreeMap<_, _>, String>>()
        })
        .await
        .map_err(|e| ApiError::new(500, format!("scale task failed: {e}")))?;
        let parsed = parsed.map_err(|e| {
            ApiError::new(
                422,
                format!(
                    "cannot make instances of {name} beyond {}: {e}",
                    group.specs.len()
                ),
            )
        })?;
        Some(Arc::new(parsed))
    };
    let request = Request::Scale {
        name: name.clone(),
        replicas,
        specs,
    };
    match ask(st, caller, request).await? {
        Reply::Done => {}
        other => return Err(unexpected(other)),
    }
    let board = st.fresh.current(&st.board).await;
    group_row(&board, &name).map(Json)
}

/// `POST /v1/services/{name}/rollout/{undo|resume}`.
pub(crate) async fn rollout(
    State(st): State<AppState>,
    ConnectInfo(caller): ConnectInfo<Peer>,
    Path((name, what)): Path<(String, String)>,
) -> Result<Json<api::ServiceStatus>, ApiError> {
    let action = match what.as_str() {
        "undo" => RolloutAction::Undo,
        "resume" => RolloutAction::Resume,
        _ => {
            return Err(ApiError::new(
                404,
                format!("unknown rollout action `{what}`; use undo or resume"),
            ))
        }
    };
    match ask(&st, caller, Request::Rollout(name.clone(), action)).await? {
        Reply::Done => {}
        other => return Err(unexpected(other)),
    }
    let board = st.fresh.current(&st.board).await;
    group_row(&board, &name).map(Json)
}

/// start, stop or restart of a whole group (`action` as in the route), waited for with
/// `?wait`: stop until every instance is stopped; start until all it wants run; restart until
/// its rollout is done (or halts: 409 with the reason).
pub(crate) async fn lifecycle(
    st: &AppState,
    caller: Peer,
    name: &str,
    action: &str,
    q: &HashMap<String, String>,
) -> Result<Json<api::ServiceStatus>, ApiError> {
    let wait = flag(q, "wait")?;
    let timeout = duration_param(q, "timeout")?;
    let strategy = match q.get("strategy") {
        None => None,
        Some(s) => Some(Strategy::parse(s).ok_or_else(|| {
            ApiError::new(
                400,
                format!("`strategy` is \"{s}\"; use rolling, overlap or stop-first"),
            )
        })?),
    };
    let before = {
        let board = st.fresh.current(&st.board).await;
        group_row(&board, name)?
            .replicas
            .map_or(0, |r| r.generation)
    };
    let request = match (action, strategy) {
        ("start", _) => Request::Start(name.into()),
        ("stop", _) => Request::Stop(name.into()),
        (_, Some(s)) => Request::RestartWith(name.into(), s),
        _ => Request::Restart(name.into()),
    };
    let mut board_rx = st.board.clone();
    match ask(st, caller, request).await? {
        Reply::Done => {}
        other => return Err(unexpected(other)),
    }
    let deadline = tokio::time::Instant::now() + timeout.unwrap_or(Duration::from_secs(600));
    loop {
        let status = {
            let board = board_rx.borrow_and_update().clone();
            group_row(&board, name)?
        };
        if !wait {
            return Ok(Json(status));
        }
        let r = status.replicas.clone().unwrap_or_default();
        let rolled = r.generation > before && r.rollout.is_none();
        let done = match action {
            "stop" => status.state == "stopped",
            "start" => status.state == "running" && r.running == r.wanted,
            _ => rolled && status.state == "running" && r.running == r.wanted,
        };
        if done {
            return Ok(Json(status));
        }
        if let Some(halted) = r.rollout.as_ref().and_then(|r| r.halted.clone()) {
            let mut e = ApiError::new(409, format!("{name}: {halted}"));
            e.body.status = Some(Box::new(status));
            return Err(e);
        }
        next_board(
            &mut board_rx,
            deadline,
            &format!("{name} to {action}"),
            status,
        )
        .await?;
    }
}

/// What a reload of `spec` would do, against the board as it is now.
pub(crate) fn plan(board: &Board, spec: &candor_spec::Spec) -> api::ReloadPlan {
    candor_brain::plan::plan(
        candor_brain::plan::Now {
            services: &board.services,
            groups: &board.groups,
        },
        spec,
    )
}
