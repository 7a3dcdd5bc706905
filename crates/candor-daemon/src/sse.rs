//! Following events as server-sent events: the recent history, then every new event as it
//! happens. A follower too slow for the live queue is told how many it missed, in-band.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use candor_api as api;
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::{self, error::RecvError};

fn frame(ev: &api::Event) -> Result<Event, Infallible> {
    Ok(Event::default().data(serde_json::to_string(ev).unwrap_or_default()))
}

pub fn follow(
    history: Vec<api::Event>,
    live: broadcast::Receiver<api::Event>,
    service: Option<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Events recorded between subscribing and reading history arrive twice; skip those.
    let seen = history.clone();
    let past = stream::iter(history.iter().map(frame).collect::<Vec<_>>());
    let new = stream::unfold(
        (live, seen, service),
        |(mut rx, mut seen, service)| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        if service.as_ref().is_some_and(|s| *s != ev.service) {
                            continue;
                        }
                        if let Some(i) = seen.iter().position(|s| *s == ev) {
                            seen.remove(i);
                            continue;
                        }
                        seen.clear();
                        return Some((frame(&ev), (rx, seen, service)));
                    }
                    Err(RecvError::Lagged(missed)) => {
                        let warn = api::Event {
                        at: api::timestamp_ms(std::time::SystemTime::now()),
                        service: "candor".into(),
                        state: "warning".into(),
                        reason: format!("this follower fell behind; {missed} events were skipped (see `candor events`)"),
                        detail: serde_json::json!({ "skipped": missed }),
                    };
                        return Some((frame(&warn), (rx, seen, service)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(past.chain(new)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
