//! Panics in the daemon's own tasks: caught, reported (an event of `candor`, state `fault`,
//! counted in `GET /v1/daemon` and shown by `candor status`) and the task started again — a
//! bug in one log reader or probe loop costs that task a restart, never the daemon, its other
//! services, or (for a pipe reader) the service a SIGPIPE.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use candor_api as api;
use candor_brain::Note;
use futures_util::FutureExt;

/// How many of the latest faults `GET /v1/daemon` shows.
const KEEP: usize = 8;

/// The pause before a task that panicked is started again: 100 ms, doubling to 5 s, so a task
/// that panics at once every time costs a line every 5 s, not a spinning core.
fn next_pause(current: Duration) -> Duration {
    (current * 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Where each fault's event goes: the daemon hands in one that writes it to the event log.
pub type Report = Arc<dyn Fn(Note) + Send + Sync>;

pub struct Faults {
    count: AtomicU64,
    recent: Mutex<VecDeque<api::Fault>>,
    /// Taken out by [`Faults::close`] at shutdown (it holds the store, whose writer must end).
    report: Mutex<Option<Report>>,
}

pub use candor_core::panic_message;

impl Faults {
    /// Faults whose events go to `report`.
    pub fn new(report: impl Fn(Note) + Send + Sync + 'static) -> Self {
        Faults {
            count: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
            report: Mutex::new(Some(Arc::new(report))),
        }
    }

    /// Let go of the report and the store it holds (the daemon is ending; faults from now on
    /// are only logged).
    pub fn close(&self) {
        self.report.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The latest faults, oldest first.
    pub fn recent(&self) -> Vec<api::Fault> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// `task` panicked with `message`; `then`: what was done about it ("it was started
    /// again").
    pub fn report(&self, task: &str, message: &str, then: &str) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now();
        let reason = format!("{task} panicked ({message}); {then}");
        eprintln!("candor: {reason}");
        let fault = api::Fault {
            task: task.to_string(),
            message: message.to_string(),
            at: api::timestamp_ms(now),
        };
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() == KEEP {
                recent.pop_front();
            }
            recent.push_back(fault);
        }
        let note = Note {
            service: "candor".into(),
            state: "fault".into(),
            reason,
            detail: api::EventDetail::Fault {
                task: task.to_string(),
                message: message.to_string(),
            },
        };
        let report = self
            .report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(report) = report {
            report(note);
        }
    }

    /// Run what `make` makes until it ends; each time it panics, report it and make it again
    /// (after a pause that grows while it keeps panicking), telling `make` what the panic
    /// said. Aborting the returned task stops it.
    pub fn supervise<F, Fut>(
        self: &std::sync::Arc<Self>,
        task: String,
        mut make: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut(Option<String>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let faults = self.clone();
        tokio::spawn(async move {
            let (mut pause, mut last) = (Duration::ZERO, None);
            loop {
                match AssertUnwindSafe(make(last.take())).catch_unwind().await {
                    Ok(()) => return,
                    Err(payload) => {
                        let message = panic_message(&*payload);
                        faults.report(&task, &message, "it was started again");
                        last = Some(message);
                        pause = next_pause(pause);
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_store::Store;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::broadcast;

    #[tokio::test]
    async fn a_task_that_panics_is_reported_and_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _t) = Store::open(dir.path()).unwrap();
        let (tx, mut rx) = broadcast::channel(8);
        let faults = Arc::new(Faults::new({
            let store = store.clone();
            move |note| crate::notes::write_note(&store, Some(&tx), note)
        }));
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        // Panics on its first two runs, ends normally on the third.
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let task = faults.supervise("the test task".into(), move |after| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            t.lock().unwrap().push(after);
            async move {
                tokio::task::yield_now().await;
                if n < 2 {
                    panic!("run {n} went wrong");
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("it ends once it stops panicking")
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(
            *told.lock().unwrap(),
            [
                None,
                Some("run 0 went wrong".into()),
                Some("run 1 went wrong".into())
            ]
        );
        assert_eq!(faults.count(), 2);
        let recent = faults.recent();
        assert_eq!(recent[1].task, "the test task");
        assert_eq!(recent[1].message, "run 1 went wrong");
        let ev = rx.recv().await.unwrap();
        assert_eq!(
            (ev.service.as_str(), ev.state.as_str()),
            ("candor", "fault")
        );
        assert!(ev.reason.contains("run 0 went wrong"), "{}", ev.reason);
        store.flush();
        let stored = store.recent_events(Some("candor"), 10).unwrap();
        assert_eq!(stored.len(), 2);
        assert!(stored[0]
            .reason
            .starts_with("the test task panicked (run 0 went wrong); it was started again"));
    }

    #[test]
    fn the_pause_grows_from_100ms_to_5s() {
        let mut p = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..10 {
            p = next_pause(p);
            seen.push(p.as_millis());
        }
        assert_eq!(&seen[..7], [100, 200, 400, 800, 1600, 3200, 5000]);
        assert_eq!(seen[9], 5000);
    }
}
