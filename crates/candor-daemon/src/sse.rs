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

/// `history`, then what `keep` makes of each live item (`None`: skip it — not wanted, or
/// already sent with the history); `lagged(n)` is sent in place of `n` items the follower was
/// too slow for.
pub fn follow<L, T, K, F>(
    history: Vec<T>,
    live: broadcast::Receiver<L>,
    keep: K,
    lagged: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    L: Clone + Send + 'static,
    T: Serialize + Send + 'static,
    K: FnMut(&L) -> Option<T> + Send + 'static,
    F: Fn(u64) -> T + Send + 'static,
{
    let past = stream::iter(history.iter().map(frame).collect::<Vec<_>>());
    let new = stream::unfold(
        (live, keep, lagged),
        |(mut rx, mut keep, lagged)| async move {
            loop {
                match rx.recv().await {
                    Ok(item) => {
                        if let Some(out) = keep(&item) {
                            return Some((frame(&out), (rx, keep, lagged)));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        let warn = lagged(missed);
                        return Some((frame(&warn), (rx, keep, lagged)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(past.chain(new)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
