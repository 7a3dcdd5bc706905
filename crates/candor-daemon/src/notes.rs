//! The event log's one way in: every event is stored and sent to the followers of
//! `/v1/events` (`write_note`); the daemon's own events are notes of service `candor`.

use candor_api::{self as api, unix_ms};
use candor_brain::Note;
use candor_store::{EventRow, Store};
use tokio::sync::broadcast;

/// Every event goes through here: stored, and sent to the followers of `/v1/events` (when
/// there is a live feed).
pub(crate) fn write_note(
    store: &Store,
    events: Option<&broadcast::Sender<api::Event>>,
    note: Note,
) {
    let now = std::time::SystemTime::now();
    let Note {
        service,
        state,
        reason,
        detail,
    } = note;
    let detail = detail.to_value();
    store.event(EventRow {
        at_ms: unix_ms(now),
        service: service.clone(),
        state: state.clone(),
        reason: reason.clone(),
        detail: detail.to_string(),
    });
    if let Some(events) = events {
        let _ = events.send(api::Event {
            at: api::timestamp_ms(now),
            service,
            state,
            reason,
            detail,
        });
    }
}

/// An event of the daemon itself (service `candor`) with no detail.
pub(crate) fn daemon_note(state: &str, reason: String) -> Note {
    Note {
        service: "candor".into(),
        state: state.into(),
        reason,
        detail: api::EventDetail::None {},
    }
}
