//! `candor reload NAME` and `candor kill NAME`: a signal to a service's live run, sent by the
//! keeper (which checks the run is still the one asked about: never a reused pid), or the
//! service's `reload` command run like an exec probe. With `ready = "notify"`, a reload waits
//! for the service to say RELOADING=1 and then READY=1. Recorded as requests of the daemon.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use candor_api as api;
use candor_keeper::{KeeperCommand, ProbeEnd};
use candor_spec::{ReadySpec, StopSignal};

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::peer::Peer;

/// How long a notify reload may take when the service has no `ready_timeout`.
const RELOAD_WAIT: Duration = Duration::from_secs(30);

/// The live run of `name`: its run id, pid and finished reloads so far, with the spec.
async fn live(
    st: &AppState,
    name: &str,
) -> Result<(u64, u32, u32, std::sync::Arc<candor_spec::ServiceSpec>), ApiError> {
    let board = st.fresh.current(&st.board).await;
    let view = board
        .get(name)
        .ok_or_else(|| crate::app::unknown_service(&board, name))?;
    let run = view.alive().ok_or_else(|| {
        let state = view.derived(candor_keeper::clock::mono()).state.as_str();
        ApiError::new(
            409,
            format!("`{name}` has no running process to signal (it is {state}); `candor start {name}` first"),
        )
    })?;
    let pid = run.pid().unwrap_or_default();
    Ok((run.id, pid, run.health.reloads, view.svc.spec.clone()))
}

fn record(st: &AppState, caller: Peer, what: &str) {
    let events = st.events.upgrade();
    crate::notes::write_note(
        &st.store,
        events.as_ref(),
        crate::shell::caller_note(what, caller),
    );
}

/// Hand the signal to the keeper and wait for its answer: a signal is reported as sent only
/// once the keeper sent it to the run it was meant for.
async fn send(
    st: &AppState,
    service: &str,
    run_id: u64,
    signal: i32,
    all: bool,
) -> Result<(), ApiError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    st.keeper
        .send(KeeperCommand::Signal {
            service: service.to_string(),
            run_id,
            signal,
            all,
            answer: Some(tx),
        })
        .map_err(|e| {
            ApiError::new(
                503,
                format!("the signal could not be handed to the keeper: {e}"),
            )
        })?;
    let answer = tokio::task::spawn_blocking(move || rx.recv_timeout(KEEPER_ANSWER))
        .await
        .map_err(|e| ApiError::new(500, format!("waiting for the keeper failed: {e}")))?;
    match answer {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(ApiError::new(409, format!("{service}: {why}"))),
        Err(_) => Err(ApiError::new(
            503,
            format!(
                "{service}: the keeper did not say within {}s whether the signal was sent",
                KEEPER_ANSWER.as_secs()
            ),
        )),
    }
}

/// How long a signal's sender waits for the keeper's word (it answers within a turn).
const KEEPER_ANSWER: std::time::Duration = std::time::Duration::from_secs(5);

fn parse_signal(s: &str) -> Result<StopSignal, ApiError> {
    StopSignal::parse(s).ok_or_else(|| {
        ApiError::new(
            400,
            format!("`{s}` is not a signal; use one of {}", StopSignal::names()),
        )
    })
}

/// `POST /v1/services/{name}/kill?signal=SIG&all=true`.
pub async fn kill(
    st: &AppState,
    caller: Peer,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<api::SignalOutcome, ApiError> {
    let sig = parse_signal(q.get("signal").map_or("SIGTERM", String::as_str))?;
    let all = crate::app::flag(q, "all")?;
    let (run_id, pid, _, _) = live(st, name).await?;
    send(st, name, run_id, sig.number(), all).await?;
    let sent = match all {
        true => format!("{} to every process of {name}'s run", sig.name()),
        false => format!("{} to pid {pid}", sig.name()),
    };
    record(st, caller, &format!("kill {name} ({sent})"));
    Ok(api::SignalOutcome {
        service: name.to_string(),
        outcome: format!("{name}: {sent}"),
        sent,
        reloaded: None,
    })
}

/// `POST /v1/services/{name}/reload[?timeout=DUR]`.
pub async fn reload(
    st: &AppState,
    caller: Peer,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<api::SignalOutcome, ApiError> {
    let (run_id, pid, reloads_before, spec) = live(st, name).await?;
    let began = Instant::now();
    let sent = match &spec.reload {
        Some(argv) => {
            record(
                st,
                caller,
                &format!("reload {name} (running {})", argv.join(" ")),
            );
            let end = st
                .exec
                .run(&st.keeper, argv, &spec, spec.stop.timeout)
                .await;
            let how = match end {
                ProbeEnd::Exited(e) if e.success() => {
                    format!("ran {}: exited with code 0", argv.join(" "))
                }
                ProbeEnd::Exited(e) => {
                    return Err(ApiError::new(
                        500,
                        format!(
                            "{name}: its reload command {} {}",
                            argv.join(" "),
                            e.describe()
                        ),
                    ))
                }
                ProbeEnd::TimedOut => {
                    return Err(ApiError::new(
                        500,
                        format!(
                            "{name}: its reload command {} did not end within {:?} and was killed",
                            argv.join(" "),
                            spec.stop.timeout
                        ),
                    ))
                }
                ProbeEnd::CannotStart(why) => {
                    return Err(ApiError::new(
                        500,
                        format!("{name}: its reload command {}: {why}", argv.join(" ")),
                    ))
                }
            };
            how
        }
        None => {
            send(st, name, run_id, spec.reload_signal.number(), false).await?;
            let sent = format!("{} to pid {pid}", spec.reload_signal.name());
            record(st, caller, &format!("reload {name} ({sent})"));
            sent
        }
    };
    if spec.ready != ReadySpec::Notify {
        return Ok(api::SignalOutcome {
            service: name.to_string(),
            outcome: format!(
                "{name}: {sent} (ready = \"{}\": nothing to wait for)",
                spec.ready.as_str()
            ),
            sent,
            reloaded: None,
        });
    }
    // Notify: the service says RELOADING=1, then READY=1 once the new config is in use.
    let wait = crate::app::duration_param(q, "timeout")?
        .or(spec.ready_timeout)
        .unwrap_or(RELOAD_WAIT);
    let mut rx = st.board.clone();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let done = {
            let board = rx.borrow_and_update();
            match board.get(name).and_then(|v| v.alive()) {
                Some(r) if r.id == run_id => (r.health.reloads > reloads_before).then_some(Ok(())),
                _ => Some(Err("its run ended while reloading".to_string())),
            }
        };
        match done {
            Some(Ok(())) => {
                return Ok(api::SignalOutcome {
                    service: name.to_string(),
                    outcome: format!(
                        "{name} reloaded: {sent}, then RELOADING=1 and READY=1 in {:.1}s",
                        began.elapsed().as_secs_f64()
                    ),
                    sent,
                    reloaded: Some(true),
                })
            }
            Some(Err(why)) => return Err(ApiError::new(500, format!("{name}: {sent}, but {why}"))),
            None => {}
        }
        st.fresh.ask.notify_one();
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return Err(ApiError::new(
                500,
                format!("{name}: {sent}, but no RELOADING=1 then READY=1 came within {wait:?}; it may still be reloading, or not handle the signal"),
            ));
        }
    }
}
