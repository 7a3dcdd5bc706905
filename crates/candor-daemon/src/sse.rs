//! Following as server-sent events: the recent history, then every new item as it happens
//! (events, log lines). A follower too slow for the live queue is told how many it missed,
//! in-band.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};

fn frame<T: Serialize>(item: &T) -> Result<Event, Infallible> {
    Ok(Event::default().data(serde_json::to_string(item).unwrap_or_default()))
}

/// `history`, then the live items for which `keep` holds; `lagged(n)` is sent in place of `n`
/// items the follower was too slow for. Items that arrive both ways (recorded between the
/// subscription and the history read) are sent once.
pub fn follow<T, K, L>(
    history: Vec<T>,
    live: broadcast::Receiver<T>,
    keep: K,
    lagged: L,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    T: Serialize + Clone + PartialEq + Send + 'static,
    K: Fn(&T) -> bool + Send + 'static,
    L: Fn(u64) -> T + Send + 'static,
{
    let seen = history.clone();
    let past = stream::iter(history.iter().map(frame).collect::<Vec<_>>());
    let new = stream::unfold(
        (live, seen, keep, lagged),
        |(mut rx, mut seen, keep, lagged)| async move {
            loop {
                match rx.recv().await {
                    Ok(item) => {
                        if !keep(&item) {
                            continue;
                        }
                        if let Some(i) = seen.iter().position(|s| *s == item) {
                            seen.remove(i);
                            continue;
                        }
                        seen.clear();
                        return Some((frame(&item), (rx, seen, keep, lagged)));
                    }
                    Err(RecvError::Lagged(missed)) => {
                        let warn = lagged(missed);
                        return Some((frame(&warn), (rx, seen, keep, lagged)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(past.chain(new)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
