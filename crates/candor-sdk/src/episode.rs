//! A run of failures, logged at its start, once a minute while it lasts, and at its end —
//! never once per failure.

use std::time::{Duration, Instant};

/// How often a lasting episode is logged again.
const REMIND: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(crate) struct Episodes {
    current: Option<Current>,
    /// Episodes begun so far.
    pub(crate) begun: u64,
}

#[derive(Debug)]
struct Current {
    started: Instant,
    failures: u64,
    last_line: Instant,
}

impl Episodes {
    /// One more failure: `first` is logged if it begins an episode, `still(failures, for)`
    /// if the last line is a minute old. Returns the failures in this episode so far.
    pub(crate) fn failed(
        &mut self,
        first: impl FnOnce() -> String,
        still: impl FnOnce(u64, Duration) -> String,
    ) -> u64 {
        let now = Instant::now();
        match &mut self.current {
            None => {
                self.begun += 1;
                self.current = Some(Current {
                    started: now,
                    failures: 1,
                    last_line: now,
                });
                crate::log(&first());
                1
            }
            Some(c) => {
                c.failures += 1;
                if now.duration_since(c.last_line) >= REMIND {
                    c.last_line = now;
                    crate::log(&still(c.failures, now.duration_since(c.started)));
                }
                c.failures
            }
        }
    }

    /// A success: if it ends an episode, `ended(failures, for)` is logged.
    pub(crate) fn succeeded(&mut self, ended: impl FnOnce(u64, Duration) -> String) {
        if let Some(c) = self.current.take() {
            crate::log(&ended(c.failures, c.started.elapsed()));
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.current.is_some()
    }
}
