//! What a hook is told: which event a note is (`Classifier`, which remembers each service's
//! trouble for `recovered`), and the event as JSON, as a Slack message and as `CANDOR_EVENT_*`.

use std::collections::HashSet;
use std::time::SystemTime;

use candor_api as api;
use candor_brain::Note;
use candor_spec::HookEvent;

/// One event for the hooks, made once per note and shared by every hook that wants it.
#[derive(Debug)]
pub struct Fired {
    pub event: HookEvent,
    pub service: String,
    pub state: String,
    pub reason: String,
    pub at: SystemTime,
    /// The note's detail, as in `/v1/events`.
    pub detail: serde_json::Value,
}

impl Fired {
    pub fn of(event: HookEvent, note: &Note, at: SystemTime) -> Fired {
        Fired {
            event,
            service: note.service.clone(),
            state: note.state.clone(),
            reason: note.reason.clone(),
            at,
            detail: note.detail.to_value(),
        }
    }

    /// The event's JSON: the body of `format = "json"` webhooks and the stdin of exec hooks.
    pub fn json(&self, host: &str) -> Vec<u8> {
        serde_json::json!({
            "event": self.event.as_str(),
            "service": self.service,
            "state": self.state,
            "reason": self.reason,
            "at": api::timestamp_ms(self.at),
            "host": host,
            "detail": self.detail,
        })
        .to_string()
        .into_bytes()
    }

    /// `format = "slack"`: `{"text": "<host>: api failed: <reason>"}` (Slack's incoming
    /// webhooks, Discord's and Mattermost's Slack-compatible ones).
    pub fn slack(&self, host: &str) -> Vec<u8> {
        let what = match self.event {
            HookEvent::Failed => "failed",
            HookEvent::Unhealthy => "is unhealthy",
            HookEvent::Recovered => "recovered",
            HookEvent::JobFailed => "job failed",
            HookEvent::JobDone => "job done",
        };
        let text = format!("{host}: {} {what}: {}", self.service, self.reason);
        serde_json::json!({ "text": text }).to_string().into_bytes()
    }

    /// The variables an exec hook gets besides the daemon's environment.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CANDOR_EVENT".into(), self.event.as_str().into()),
            ("CANDOR_EVENT_SERVICE".into(), self.service.clone()),
            ("CANDOR_EVENT_STATE".into(), self.state.clone()),
            ("CANDOR_EVENT_REASON".into(), self.reason.clone()),
            ("CANDOR_EVENT_AT".into(), api::timestamp_ms(self.at)),
        ]
    }
}

/// Which hook event a note is, if any. Remembers the services whose last state was failed or
/// unhealthy (passing through backoff, starting and stopping), so that their next `running`
/// is `recovered`; a stop (`stopped`) forgets it: a later start is a new start. A crash that
/// is restarted (backoff) is not trouble of its own: a crash loop would otherwise say
/// `recovered` at every turn without ever having said `failed`.
#[derive(Default)]
pub struct Classifier {
    troubled: HashSet<String>,
}

impl Classifier {
    /// Only state changes (`EventDetail::State`) and oneshot runs (`EventDetail::Job`) are
    /// events: the daemon's own notes, hook drops among them, never are (no loops).
    pub fn classify(&mut self, note: &Note) -> Option<HookEvent> {
        match &note.detail {
            api::EventDetail::State(_) => match note.state.as_str() {
                state @ ("failed" | "unhealthy") => {
                    if !self.troubled.contains(&note.service) {
                        self.troubled.insert(note.service.clone());
                    }
                    match state {
                        "failed" => Some(HookEvent::Failed),
                        _ => Some(HookEvent::Unhealthy),
                    }
                }
                "running" => self
                    .troubled
                    .remove(&note.service)
                    .then_some(HookEvent::Recovered),
                "starting" | "stopping" | "backoff" => None,
                _ => {
                    self.troubled.remove(&note.service);
                    None
                }
            },
            api::EventDetail::Job { job } => match job.result.as_str() {
                "failed" => Some(HookEvent::JobFailed),
                "done" => Some(HookEvent::JobDone),
                _ => None,
            },
            _ => None,
        }
    }

    /// Forget services no longer configured (after a reload).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.troubled.retain(|s| keep(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(service: &str, state: &str) -> Note {
        Note {
            service: service.into(),
            state: state.into(),
            reason: format!("now {state}"),
            detail: api::EventDetail::State(api::StateDetail {
                pid: None,
                run: Some(1),
                restarts: 0,
                last_exit: None,
                health: None,
                restart_in_ms: None,
            }),
        }
    }

    fn job(result: &str) -> Note {
        Note {
            service: "backup".into(),
            state: result.into(),
            reason: "ran".into(),
            detail: api::EventDetail::Job {
                job: api::JobRun {
                    result: result.into(),
                    ..Default::default()
                },
            },
        }
    }

    fn events(notes: &[Note]) -> Vec<Option<&'static str>> {
        let mut c = Classifier::default();
        notes
            .iter()
            .map(|n| c.classify(n).map(HookEvent::as_str))
            .collect()
    }

    #[test]
    fn failures_and_recoveries_are_named_from_the_state_changes() {
        let seq = [
            state("api", "starting"),
            state("api", "running"),
            state("api", "backoff"),
            state("api", "starting"),
            state("api", "running"),
            state("api", "unhealthy"),
            state("api", "running"),
            state("api", "failed"),
            state("api", "stopped"),
            state("api", "starting"),
            state("api", "running"),
        ];
        assert_eq!(
            events(&seq),
            [
                None,
                None,
                None,
                None,
                None,
                Some("unhealthy"),
                Some("recovered"),
                Some("failed"),
                None,
                None,
                None,
            ]
        );
    }

    #[test]
    fn trouble_is_kept_per_service() {
        let seq = [
            state("a", "failed"),
            state("b", "running"),
            state("a", "starting"),
            state("a", "running"),
        ];
        assert_eq!(
            events(&seq),
            [Some("failed"), None, None, Some("recovered")]
        );
    }

    #[test]
    fn job_results_are_events_and_daemon_notes_never_are() {
        let mut drop_note = crate::notes::daemon_note("hook", "dropped 3 events".into());
        drop_note.state = "failed".into();
        let fault = Note {
            service: "candor".into(),
            state: "failed".into(),
            reason: "x".into(),
            detail: api::EventDetail::Fault {
                task: "t".into(),
                message: "m".into(),
            },
        };
        assert_eq!(
            events(&[job("failed"), job("done"), job("skipped"), drop_note, fault]),
            [Some("job_failed"), Some("job_done"), None, None, None]
        );
    }

    #[test]
    fn the_event_reads_the_same_in_json_slack_and_env() {
        let note = state("api", "failed");
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_800_000_000_123);
        let f = Fired::of(HookEvent::Failed, &note, at);
        let v: serde_json::Value = serde_json::from_slice(&f.json("box1")).unwrap();
        assert_eq!(v["event"], "failed");
        assert_eq!(v["service"], "api");
        assert_eq!(v["state"], "failed");
        assert_eq!(v["reason"], "now failed");
        assert_eq!(v["host"], "box1");
        assert_eq!(v["at"], "2027-01-15T08:00:00.123Z");
        assert_eq!(v["detail"]["run"], 1);
        let s: serde_json::Value = serde_json::from_slice(&f.slack("box1")).unwrap();
        assert_eq!(
            s,
            serde_json::json!({"text": "box1: api failed: now failed"})
        );
        let env = f.env();
        assert!(env.contains(&("CANDOR_EVENT".into(), "failed".into())));
        assert!(env.contains(&("CANDOR_EVENT_AT".into(), "2027-01-15T08:00:00.123Z".into())));
    }
}
