//! One hook's delivery: a task that takes its events in order, tries each (an exec or a
//! webhook attempt), retries a failed one after 1 s doubling to 30 s at most `retries` times,
//! then drops it and counts it, and says so in the event log at most once a minute per hook
//! (with how many since). Its queue outlives a panic of the task (the task is supervised and
//! started again); an event that panicked is counted dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candor_api as api;
use candor_spec::{format_duration, HookFormat, HookSpec, HookTarget};
use tokio::sync::{mpsc, watch};

use super::event::Fired;
use super::exec::Runner;
use crate::http_post::{Posted, Poster};

/// The daemon's hook counters (`GET /v1/daemon` `hooks`, `/metrics` `candor_hooks_*`).
#[derive(Default, Debug)]
pub struct Counters {
    pub sent: AtomicU64,
    /// Attempts that failed (each retry counts).
    pub failed: AtomicU64,
    /// Events given up: a full queue, every attempt failed, or the hook removed by a reload.
    pub dropped: AtomicU64,
    /// Events taken and not yet sent or dropped (the one being tried included).
    pub queued: AtomicU64,
}

impl Counters {
    pub fn stats(&self) -> api::HookStats {
        api::HookStats {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
        }
    }
}

/// The pauses of delivery: after a failed attempt `first`, doubling to `cap`; a note about
/// drops at most every `note_every`. Shorter only in tests.
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    pub first: Duration,
    pub cap: Duration,
    pub note_every: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            first: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            note_every: Duration::from_secs(60),
        }
    }
}

impl Pacing {
    /// The pause after `failed` failed attempts of one event (1 s, 2 s, 4 s … 30 s).
    pub fn pause(&self, failed: u32) -> Duration {
        let doubled = self.first.checked_mul(
            1u32.checked_shl(failed.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        doubled.map_or(self.cap, |d| d.min(self.cap))
    }
}

/// How a hook delivers.
pub enum Delivery {
    Exec {
        argv: Vec<String>,
        runner: Runner,
    },
    Webhook {
        /// Its endpoint and kept connection; a URL that cannot be used fails every attempt
        /// with why.
        poster: Result<tokio::sync::Mutex<Poster>, String>,
        /// `http://host:port` (never the path, which may hold a token).
        shown: String,
        format: HookFormat,
    },
}

impl Delivery {
    pub fn of(target: &HookTarget, runner: &Runner) -> Delivery {
        match target {
            HookTarget::Exec(argv) => Delivery::Exec {
                argv: argv.clone(),
                runner: runner.clone(),
            },
            HookTarget::Webhook {
                url,
                headers,
                format,
            } => {
                let poster = Poster::new(url, 80, "", headers, "application/json");
                Delivery::Webhook {
                    shown: poster
                        .as_ref()
                        .map_or_else(|_| "webhook".into(), |p| format!("webhook {}", p.shown())),
                    poster: poster.map(tokio::sync::Mutex::new),
                    format: *format,
                }
            }
        }
    }

    /// What it is in messages: the command's name or the URL's host (never a header or the
    /// URL's path, which may hold a token).
    pub fn shown(&self) -> String {
        match self {
            Delivery::Exec { argv, .. } => {
                format!("exec {}", argv.first().map_or("", String::as_str))
            }
            Delivery::Webhook { shown, .. } => shown.clone(),
        }
    }
}

/// Drops of one hook not yet said in the event log.
#[derive(Default)]
struct Unsaid {
    last_note: Option<Instant>,
    gave_up: u64,
    attempts: u32,
    last_error: String,
    /// The hook's queue-full drops counted so far, and those already said.
    overflow_said: u64,
}

/// One hook's task and what it shares with the dispatcher.
pub struct Worker {
    pub spec: Arc<HookSpec>,
    /// `#n` among `[[daemon.hooks]]`, from 1.
    pub number: usize,
    pub host: Arc<str>,
    pub delivery: Delivery,
    pub counters: Arc<Counters>,
    /// Events dropped because this hook's queue was full (counted by the dispatcher).
    pub overflowed: Arc<AtomicU64>,
    pub queue: tokio::sync::Mutex<mpsc::Receiver<Arc<Fired>>>,
    /// Closed (its sender dropped) when the hook is removed.
    pub stop: watch::Receiver<()>,
    pub report: crate::faults::Report,
    pub pacing: Pacing,
    unsaid: Mutex<Unsaid>,
}

/// Counts an event taken from the queue once it is sent or given up (also when the task
/// panics or is stopped with it in hand: dropped).
struct InHand<'a> {
    counters: &'a Counters,
    sent: bool,
}

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        let c = if self.sent {
            &self.counters.sent
        } else {
            &self.counters.dropped
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: Arc<HookSpec>,
        number: usize,
        host: Arc<str>,
        runner: &Runner,
        counters: Arc<Counters>,
        overflowed: Arc<AtomicU64>,
        queue: mpsc::Receiver<Arc<Fired>>,
        stop: watch::Receiver<()>,
        report: crate::faults::Report,
        pacing: Pacing,
    ) -> Worker {
        Worker {
            delivery: Delivery::of(&spec.target, runner),
            spec,
            number,
            host,
            counters,
            overflowed,
            queue: tokio::sync::Mutex::new(queue),
            stop,
            report,
            pacing,
            unsaid: Mutex::default(),
        }
    }

    /// The task's name for faults.
    pub fn task_name(&self) -> String {
        format!("hook #{} ({})", self.number, self.delivery.shown())
    }

    /// Deliver events until the hook is removed (what is left in its queue is then dropped and
    /// counted) or the dispatcher is gone.
    pub async fn run(self: Arc<Self>) {
        let mut queue = self.queue.lock().await;
        let mut stop = self.stop.clone();
        loop {
            let due = self.note_due();
            let next = tokio::select! {
                biased;
                _ = stop.changed() => return self.drain(&mut queue),
                _ = sleep_until(due) => {
                    self.say_drops(true);
                    continue;
                }
                next = queue.recv() => next,
            };
            let Some(event) = next else { return };
            let mut in_hand = InHand {
                counters: &self.counters,
                sent: false,
            };
            let mut failed = 0u32;
            loop {
                let attempt = tokio::select! {
                    biased;
                    _ = stop.changed() => {
                        drop(in_hand);
                        return self.drain(&mut queue);
                    }
                    r = self.attempt(&event) => r,
                };
                let why = match attempt {
                    Ok(()) => {
                        in_hand.sent = true;
                        break;
                    }
                    Err(why) => why,
                };
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                failed += 1;
                if failed > self.spec.retries {
                    drop(in_hand);
                    self.gave_up(failed, why);
                    break;
                }
                tokio::select! {
                    biased;
                    _ = stop.changed() => {
                        drop(in_hand);
                        return self.drain(&mut queue);
                    }
                    _ = tokio::time::sleep(self.pacing.pause(failed)) => {}
                }
            }
        }
    }

    async fn attempt(&self, event: &Fired) -> Result<(), String> {
        // Test seam (`hook:<service>`): a delivery that panics; the task is started again and
        // the event it held counted dropped.
        if candor_core::fail_once("hook", &event.service) {
            panic!("failpoint hook:{}", event.service);
        }
        let timeout = self.spec.timeout;
        match &self.delivery {
            Delivery::Exec { argv, runner } => {
                runner
                    .run(argv, event.env(), event.json(&self.host), timeout)
                    .await
            }
            Delivery::Webhook { poster, format, .. } => {
                let poster = poster.as_ref().map_err(Clone::clone)?;
                let body = match format {
                    HookFormat::Json => event.json(&self.host),
                    HookFormat::Slack => event.slack(&self.host),
                };
                // One worker a hook, in order: the lock is never contended.
                match poster.lock().await.post(body, timeout).await {
                    Posted::Sent => Ok(()),
                    Posted::Retry(why) | Posted::Rejected(why) => Err(why),
                }
            }
        }
    }

    /// The hook was removed: its queue is closed and what is in it dropped and counted.
    fn drain(&self, queue: &mut mpsc::Receiver<Arc<Fired>>) {
        queue.close();
        while queue.try_recv().is_ok() {
            drop(InHand {
                counters: &self.counters,
                sent: false,
            });
        }
    }

    /// An event given up after `attempts`: said now, or with the next note when one was said
    /// within the last minute.
    fn gave_up(&self, attempts: u32, why: String) {
        {
            let mut u = self.unsaid.lock().unwrap_or_else(|e| e.into_inner());
            u.gave_up += 1;
            u.attempts = attempts;
            u.last_error = why;
        }
        self.say_drops(false);
    }

    /// When drops not yet said may be said (none: nothing to say).
    fn note_due(&self) -> Option<Instant> {
        let u = self.unsaid.lock().unwrap_or_else(|e| e.into_inner());
        let overflow = self.overflowed.load(Ordering::Relaxed) - u.overflow_said;
        if u.gave_up == 0 && overflow == 0 {
            return None;
        }
        Some(
            u.last_note
                .map_or_else(Instant::now, |t| t + self.pacing.note_every),
        )
    }

    /// One event of the daemon about this hook's drops, unless one was said within
    /// `note_every` (`due`: that time has come).
    fn say_drops(&self, due: bool) {
        let reason = {
            let mut u = self.unsaid.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let recent = u
                .last_note
                .is_some_and(|t| now.duration_since(t) < self.pacing.note_every);
            if recent && !due {
                return;
            }
            let overflowed = self.overflowed.load(Ordering::Relaxed);
            let overflow = overflowed - u.overflow_said;
            if u.gave_up == 0 && overflow == 0 {
                return;
            }
            let mut parts = Vec::new();
            if u.gave_up > 0 {
                let attempts = match u.attempts {
                    1 => "its one attempt".to_string(),
                    n => format!("{n} attempts each"),
                };
                parts.push(format!(
                    "{} after {attempts} (last error: {})",
                    events(u.gave_up),
                    u.last_error
                ));
            }
            if overflow > 0 {
                parts.push(format!("{} because its queue was full", events(overflow)));
            }
            let since = match u.last_note {
                Some(t) => format!(
                    " in the {} since the last such event",
                    format_duration(Duration::from_secs(now.duration_since(t).as_secs()))
                ),
                None => String::new(),
            };
            *u = Unsaid {
                last_note: Some(now),
                overflow_said: overflowed,
                ..Unsaid::default()
            };
            format!(
                "{} ({}) dropped {}{since}; see hooks in `candor daemon`",
                self.task_name(),
                self.spec.defined_at,
                parts.join(" and ")
            )
        };
        (self.report)(crate::notes::daemon_note("hook", reason));
    }
}

fn events(n: u64) -> String {
    match n {
        1 => "1 event".into(),
        n => format!("{n} events"),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_one_second_doubling_to_thirty() {
        let p = Pacing::default();
        let pauses: Vec<u64> = (1..=8).map(|n| p.pause(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(p.pause(200), Duration::from_secs(30));
    }
}
