//! `[[daemon.hooks]]`: tell someone when a service fails, turns unhealthy or recovers, or a
//! oneshot's run ends. The shell offers every note it records (`Hooks::offer`, never blocking:
//! a bounded queue per hook, a full one drops and counts); one supervised task per hook
//! delivers its events in order (`worker`), by exec through the keeper (`exec`) or an HTTP
//! POST (`webhook`).

mod event;
mod exec;
mod worker;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use candor_api as api;
use candor_brain::Note;
use candor_spec::HookSpec;
use tokio::sync::{mpsc, watch};

pub use event::{Classifier, Fired};
pub use exec::Runner;
pub use worker::{Counters, Pacing};

use crate::faults::{Faults, Report};

/// Events waiting per hook; past it an event is dropped and counted.
pub const QUEUE: usize = 1024;

/// What every hook's task is given.
pub struct Setup {
    /// `host` of the events: this machine's name.
    pub host: Arc<str>,
    pub runner: Runner,
    /// Where the notes about dropped events go (the event log, not back into the hooks).
    pub report: Report,
    pub faults: Arc<Faults>,
    pub pacing: Pacing,
    /// Events waiting per hook ([`QUEUE`]).
    pub queue: usize,
}

/// One configured hook as the dispatcher holds it: its queue's sending end and its task's
/// stop (dropped: the task drops what is queued, counts it and ends).
struct Hook {
    spec: Arc<HookSpec>,
    queue: mpsc::Sender<Arc<Fired>>,
    overflowed: Arc<AtomicU64>,
    _stop: watch::Sender<()>,
}

/// The dispatcher: which notes are events, and to which hooks they go.
pub struct Hooks {
    classifier: Classifier,
    hooks: Vec<Hook>,
    counters: Arc<Counters>,
    setup: Setup,
}

impl Hooks {
    /// The hooks of `specs`, each with its task started (on the current runtime).
    pub fn start(specs: &[HookSpec], setup: Setup) -> Hooks {
        let mut hooks = Hooks {
            classifier: Classifier::default(),
            hooks: Vec::new(),
            counters: Arc::default(),
            setup,
        };
        hooks.replace(specs);
        hooks
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// A reload: hooks whose config is unchanged keep their queue and task; the others are
    /// removed (what they had queued is dropped and counted) or started.
    pub fn replace(&mut self, specs: &[HookSpec]) {
        let mut old = std::mem::take(&mut self.hooks);
        for (i, spec) in specs.iter().enumerate() {
            let kept = old.iter().position(|h| *h.spec == *spec);
            let hook = match kept {
                Some(at) => old.remove(at),
                None => self.launch(spec.clone(), i + 1),
            };
            self.hooks.push(hook);
        }
    }

    /// Forget what is known of services no longer configured.
    pub fn retain_services(&mut self, keep: impl Fn(&str) -> bool) {
        self.classifier.retain(keep);
    }

    fn launch(&self, spec: HookSpec, number: usize) -> Hook {
        let spec = Arc::new(spec);
        let (tx, rx) = mpsc::channel(self.setup.queue.max(1));
        let (stop_tx, stop_rx) = watch::channel(());
        let overflowed = Arc::new(AtomicU64::new(0));
        let worker = Arc::new(worker::Worker::new(
            spec.clone(),
            number,
            self.setup.host.clone(),
            &self.setup.runner,
            self.counters.clone(),
            overflowed.clone(),
            rx,
            stop_rx,
            self.setup.report.clone(),
            self.setup.pacing,
        ));
        self.setup
            .faults
            .supervise(worker.task_name(), move |_| worker.clone().run());
        Hook {
            spec,
            queue: tx,
            overflowed,
            _stop: stop_tx,
        }
    }

    /// A note the brain recorded: if it is an event some hooks take, queued for each of them.
    /// Never waits; allocates one event shared by those hooks; a full queue drops and counts.
    pub fn offer(&mut self, note: &Note) {
        let Some(event) = self.classifier.classify(note) else {
            return;
        };
        let mut fired: Option<Arc<Fired>> = None;
        for hook in &self.hooks {
            if !hook.spec.on.contains(&event)
                || !candor_spec::names_cover(&hook.spec.services, &note.service)
            {
                continue;
            }
            let fired = fired
                .get_or_insert_with(|| Arc::new(Fired::of(event, note, SystemTime::now())))
                .clone();
            // Counted before it is sent: the task may be done with it before `try_send`
            // returns.
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
            if hook.queue.try_send(fired).is_err() {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                hook.overflowed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// This machine's name, for the events' `host`.
pub fn hostname() -> Arc<str> {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
        .into()
}

/// The `/metrics` families of the hooks.
pub fn metrics(stats: &api::HookStats) -> String {
    let mut out = String::new();
    for (name, kind, help, value) in [
        (
            "candor_hooks_sent_total",
            "counter",
            "Hook events delivered.",
            stats.sent,
        ),
        (
            "candor_hooks_failed_total",
            "counter",
            "Hook delivery attempts that failed (each retry counts).",
            stats.failed,
        ),
        (
            "candor_hooks_dropped_total",
            "counter",
            "Hook events given up: queue full, every attempt failed, or the hook removed.",
            stats.dropped,
        ),
        (
            "candor_hooks_queued",
            "gauge",
            "Hook events waiting or being delivered.",
            stats.queued,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

#[cfg(test)]
mod tests;
