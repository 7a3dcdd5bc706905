//! `[[daemon.forward]]`: services' log lines sent on to syslog, journald or an OpenTelemetry
//! collector. A target never holds anything up: lines are stored first, as always, and each
//! target reads them back from the store after its cursor (`candor_store::LineReader`), a
//! byte-bounded batch at a time, on a task of its own. A slow, down or refusing target falls
//! behind and catches up from the store when it is back, up to its `catch_up` bound; what it
//! never gets is counted (`GET /v1/daemon` `forward[]`, status, /metrics).

pub mod journald;
pub mod otlp;
pub mod record;
pub mod syslog;

mod cursor;
mod export;
mod sink;
mod task;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use candor_api as api;
use candor_spec::forward::{ForwardSpec, ForwardTarget, SyslogAddress};
use candor_store::Store;
use tokio::sync::watch;

use crate::board::Board;
use crate::faults::Faults;

/// What every target's task needs.
#[derive(Clone)]
pub struct Setup {
    pub store: Store,
    /// The highest line id the store has written.
    pub committed: watch::Receiver<i64>,
    /// For the run (id, pid) a line came from.
    pub board: watch::Receiver<Arc<Board>>,
    /// Each target's cursor is kept here (`forward-<hash>.json`) across daemon restarts.
    pub state_dir: PathBuf,
    pub faults: Arc<Faults>,
    /// This machine's name (syslog HOSTNAME, OTLP `host.name`).
    pub host: Arc<str>,
    /// Which run stored which lines.
    pub marks: RunMarks,
}

/// Which run of a service stored a line: the shell marks the first line id each run's readers
/// can hand out as it starts them; a line belongs to the latest run marked at or below its id.
/// (A line the previous run's reader still drains after the next run started is counted to
/// the new one: it ended first.) Lines stored before this daemon saw a run go without one.
#[derive(Clone, Default)]
pub struct RunMarks(Arc<Mutex<std::collections::HashMap<Arc<str>, Vec<Mark>>>>);

/// From which line id a run (its id, its main pid) stored lines.
type Mark = (i64, u64, Option<u32>);

/// Marks kept per service.
const MARKS: usize = 8;

impl RunMarks {
    /// `run` (main pid `pid`) of `service` stores lines from id `first` on.
    pub fn mark(&self, service: &str, first: i64, run: u64, pid: Option<u32>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let marks = m.entry(service.into()).or_default();
        marks.push((first, run, pid));
        if marks.len() > MARKS {
            marks.remove(0);
        }
    }

    /// The run (id, main pid) that stored line `id` of `service`, if this daemon saw it.
    pub fn run_of(&self, service: &str, id: i64) -> Option<(u64, Option<u32>)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(service)?
            .iter()
            .rev()
            .find(|(first, ..)| *first <= id)
            .map(|&(_, run, pid)| (run, pid))
    }

    /// Forget services no longer configured.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|s, _| keep(s));
    }
}

/// What one target did, shared by its task and the API.
#[derive(Debug, Default)]
pub struct Counts {
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub dropped: AtomicU64,
    pub behind: AtomicU64,
    /// Why it is not taking lines, and since when.
    pub down: Mutex<Option<(String, SystemTime)>>,
    /// `metrics = true`: requests sent and failed, and why the last one failed.
    pub metrics_sent: AtomicU64,
    pub metrics_failed: AtomicU64,
    pub metrics_error: Mutex<Option<String>>,
}

struct Target {
    spec: Arc<ForwardSpec>,
    counts: Arc<Counts>,
    /// Dropped when the target goes (a reload): its task ends.
    _stop: watch::Sender<()>,
}

/// The configured targets; cheap to clone (the shell reloads them, the API reads their
/// counts).
#[derive(Clone)]
pub struct Forwards {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    setup: Option<Setup>,
    targets: Vec<Target>,
}

impl Forwards {
    /// The targets of `specs`, each with its task started (on the current runtime).
    pub fn start(specs: &[ForwardSpec], setup: Setup) -> Forwards {
        let f = Forwards {
            inner: Arc::new(Mutex::new(Inner {
                setup: Some(setup),
                targets: Vec::new(),
            })),
        };
        f.replace(specs);
        f
    }

    /// A run's readers start: its lines are stored from the store's next id on.
    pub fn mark_run(&self, service: &str, first: i64, run: u64, pid: Option<u32>) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(setup) = &inner.setup {
            setup.marks.mark(service, first, run, pid);
        }
    }

    /// Forget what is known of services no longer configured.
    pub fn retain_services(&self, keep: impl Fn(&str) -> bool) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(setup) = &inner.setup {
            setup.marks.retain(keep);
        }
    }

    /// A reload: targets whose config is unchanged keep their task, cursor and counts; the
    /// others are stopped or started.
    pub fn replace(&self, specs: &[ForwardSpec]) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(setup) = inner.setup.clone() else {
            return;
        };
        let mut old = std::mem::take(&mut inner.targets);
        for spec in specs {
            let same = |t: &Target| {
                ForwardSpec {
                    at: String::new(),
                    ..(*t.spec).clone()
                } == ForwardSpec {
                    at: String::new(),
                    ..spec.clone()
                }
            };
            let target = match old.iter().position(same) {
                Some(i) => old.remove(i),
                None => launch(spec.clone(), &setup),
            };
            inner.targets.push(target);
        }
    }

    /// `GET /v1/daemon` `forward`.
    pub fn stats(&self) -> Vec<api::ForwardStats> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .targets
            .iter()
            .map(|t| {
                let c = &t.counts;
                let down = c.down.lock().unwrap_or_else(|e| e.into_inner()).clone();
                api::ForwardStats {
                    kind: t.spec.target.kind().into(),
                    target: shown(&t.spec.target),
                    at: t.spec.at.clone(),
                    sent: c.sent.load(Ordering::Relaxed),
                    retried: c.retried.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                    behind: c.behind.load(Ordering::Relaxed),
                    down_since: down.as_ref().map(|d| api::timestamp_ms(d.1)),
                    down: down.map(|d| d.0),
                    metrics: match &t.spec.target {
                        ForwardTarget::Otlp(o) if o.metrics => Some(api::MetricsExport {
                            sent: c.metrics_sent.load(Ordering::Relaxed),
                            failed: c.metrics_failed.load(Ordering::Relaxed),
                            error: c
                                .metrics_error
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .clone(),
                        }),
                        _ => None,
                    },
                }
            })
            .collect()
    }
}

fn launch(spec: ForwardSpec, setup: &Setup) -> Target {
    let spec = Arc::new(spec);
    let counts = Arc::new(Counts::default());
    let (stop_tx, stop_rx) = watch::channel(());
    if let ForwardTarget::Otlp(o) = &spec.target {
        if o.metrics {
            let (o, counts, setup_m, stop) =
                (o.clone(), counts.clone(), setup.clone(), stop_rx.clone());
            setup.faults.supervise(
                format!("metrics export to {}", shown(&spec.target)),
                move |_| export::run(o.clone(), counts.clone(), setup_m.clone(), stop.clone()),
            );
        }
    }
    let task = Arc::new(task::Task::new(
        spec.clone(),
        counts.clone(),
        setup.clone(),
        stop_rx,
    ));
    setup.faults.supervise(
        format!("log forwarding to {}", shown(&spec.target)),
        move |_| task.clone().run(),
    );
    Target {
        spec,
        counts,
        _stop: stop_tx,
    }
}

/// Where a target sends, for people: the address, or the URL without its path (which may
/// hold a token).
pub fn shown(t: &ForwardTarget) -> String {
    match t {
        ForwardTarget::Syslog(s) => match &s.address {
            SyslogAddress::Unix(p) => format!("unix://{}", p.display()),
            SyslogAddress::Udp(a) => format!("udp://{a}"),
            SyslogAddress::Tcp(a) => format!("tcp://{a}"),
        },
        ForwardTarget::Journald { socket } => socket.display().to_string(),
        ForwardTarget::Otlp(o) => candor_spec::jobs::url_host_only(&o.url),
    }
}

/// A metric family: name, type, help, and its value of one target.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&api::ForwardStats) -> u64,
);

/// The `/metrics` families of the targets.
pub fn metrics(stats: &[api::ForwardStats]) -> String {
    let mut out = String::new();
    if stats.is_empty() {
        return out;
    }
    let families: [Family; 5] = [
        ("candor_forward_sent_total", "counter", "Log lines a forwarding target accepted.", |s| s.sent),
        ("candor_forward_retried_total", "counter", "Log lines sent again after a failed attempt.", |s| s.retried),
        ("candor_forward_dropped_total", "counter", "Log lines a forwarding target will never get (older than catch_up when it came back, or refused).", |s| s.dropped),
        ("candor_forward_behind_lines", "gauge", "Log line ids stored after a forwarding target's cursor: its lag.", |s| s.behind),
        ("candor_forward_up", "gauge", "1 while a forwarding target takes lines, 0 while it is down.", |s| u64::from(s.down.is_none())),
    ];
    for (name, kind, help, value) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for s in stats {
            out.push_str(&format!(
                "{name}{{kind=\"{}\",target=\"{}\"}} {}\n",
                s.kind,
                crate::metrics::label(&s.target),
                value(s)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_belongs_to_the_latest_run_marked_at_or_below_its_id() {
        let m = RunMarks::default();
        assert_eq!(m.run_of("web", 5), None);
        m.mark("web", 10, 1, Some(100));
        m.mark("web", 20, 2, Some(200));
        m.mark("db", 15, 7, None);
        assert_eq!(m.run_of("web", 9), None, "before any run this daemon saw");
        assert_eq!(m.run_of("web", 10), Some((1, Some(100))));
        assert_eq!(m.run_of("web", 19), Some((1, Some(100))));
        assert_eq!(m.run_of("web", 25), Some((2, Some(200))));
        assert_eq!(m.run_of("db", 25), Some((7, None)));
        for run in 3..20 {
            m.mark("web", run as i64 * 10, run, None);
        }
        assert_eq!(m.0.lock().unwrap()["web"].len(), MARKS, "a few kept");
        m.retain(|s| s == "db");
        assert_eq!(m.run_of("web", 500), None);
    }
}
