//! The board: the brain's facts as last published (shared, copy-on-write), plus each service's
//! log counters. Readers derive statuses from it at read time, so a status is never older
//! than the request that asked for it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use candor_api::{self as api, timestamp};
use candor_brain::{derive, Derived, Run, Service, Services};
use candor_core::{Mono, Now};
use candor_spec::{ServiceName, ServiceSpec};

use crate::counters::{LogCounters, ProbeStats};

/// Between the shell, which publishes a step that answers no request at most every 50 ms,
/// and the readers, which must never see a board older than their request: a reader that
/// finds changes not yet published asks for them and waits for the board that shows them.
#[derive(Debug, Default)]
pub struct Freshness {
    /// The brain's facts have changed since the last publish.
    pub stale: std::sync::atomic::AtomicBool,
    /// A reader wants the board now.
    pub ask: tokio::sync::Notify,
}

impl Freshness {
    /// The board as of now: published at once if the shell has changes not yet shown.
    pub async fn current(&self, board: &tokio::sync::watch::Receiver<Arc<Board>>) -> Arc<Board> {
        let mut rx = board.clone();
        rx.borrow_and_update();
        if self.stale.load(Ordering::SeqCst) {
            self.ask.notify_one();
            // A shell busy for longer than this serves the board it has.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), rx.changed()).await;
        }
        let board = rx.borrow().clone();
        board
    }
}

/// Wait until no service is `starting` (every one has been started and is ready, or has
/// left starting otherwise), or the board is gone.
pub async fn none_starting(board: &mut tokio::sync::watch::Receiver<Arc<Board>>) {
    loop {
        let starting = {
            let b = board.borrow_and_update().clone();
            let now = candor_keeper::clock::mono();
            let any = b
                .iter()
                .any(|s| s.derived(now).state == candor_brain::ServiceState::Starting);
            any
        };
        if !starting || board.changed().await.is_err() {
            return;
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Board {
    pub services: Services,
    pub logs: Arc<BTreeMap<ServiceName, Arc<LogCounters>>>,
    pub probes: Arc<BTreeMap<ServiceName, Arc<ProbeStats>>>,
    /// Replicated services (their instances are in `services`).
    pub groups: Arc<BTreeMap<ServiceName, candor_brain::groups::Group>>,
}

/// One service on a board.
#[derive(Clone, Copy)]
pub struct ServiceView<'a> {
    board: &'a Board,
    pub svc: &'a Service,
    logs: Option<&'a LogCounters>,
    probes: Option<&'a ProbeStats>,
}

impl Board {
    pub fn get(&self, name: &str) -> Option<ServiceView<'_>> {
        let key = ServiceName::new(name).ok()?;
        let svc = self.services.get(&key)?;
        Some(self.view(&key, svc))
    }
    fn view<'a>(&'a self, name: &ServiceName, svc: &'a Service) -> ServiceView<'a> {
        ServiceView {
            board: self,
            svc,
            logs: self.logs.get(name).map(|l| &**l),
            probes: self.probes.get(name).map(|p| &**p),
        }
    }
    /// Every service, in name order.
    pub fn iter(&self) -> impl Iterator<Item = ServiceView<'_>> {
        self.services.iter().map(|(n, s)| self.view(n, s))
    }
    pub fn len(&self) -> usize {
        self.services.len()
    }
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
    pub fn names(&self) -> Vec<String> {
        self.services.keys().map(|n| n.to_string()).collect()
    }
    /// The shared causes on the board, one per target, in target order: `services` is how
    /// many services name that target now, `since` the earliest of their `since`.
    pub fn shared_causes(&self, now: Now) -> Vec<api::SharedCause> {
        let mut by_target: BTreeMap<&str, (u32, Mono)> = BTreeMap::new();
        for c in self.services.values().filter_map(|s| s.shared.as_ref()) {
            let e = by_target.entry(&c.target).or_insert((0, c.since));
            e.0 += 1;
            e.1 = e.1.min(c.since);
        }
        by_target
            .into_iter()
            .map(|(target, (services, since))| api::SharedCause {
                target: target.to_string(),
                services,
                since: timestamp(now.wall_of(since)),
            })
            .collect()
    }
    /// Every service's status and, before its instances, each replicated service's own row,
    /// in name order (`api`, `api@1`, …): what `GET /v1/services` lists.
    pub fn statuses(&self, now: Now) -> Vec<api::ServiceStatus> {
        let mut out: Vec<api::ServiceStatus> =
            Vec::with_capacity(self.services.len() + self.groups.len());
        let mut groups = self.groups.iter().peekable();
        for (name, svc) in self.services.iter() {
            while let Some((g, _)) = groups.peek() {
                if *g > name {
                    break;
                }
                let (g, group) = groups.next().expect("peeked");
                out.push(self.group_status(g, group, now));
            }
            out.push(self.view(name, svc).status(now));
        }
        out.extend(groups.map(|(g, group)| self.group_status(g, group, now)));
        out
    }

    /// A replicated service's own row, if `name` is one.
    pub fn group(&self, name: &str, now: Now) -> Option<api::ServiceStatus> {
        let key = ServiceName::new(name).ok()?;
        let group = self.groups.get(&key)?;
        Some(self.group_status(&key, group, now))
    }

    fn group_status(
        &self,
        name: &ServiceName,
        group: &candor_brain::groups::Group,
        now: Now,
    ) -> api::ServiceStatus {
        let (state, reason) =
            candor_brain::groups::derive_group(&self.services, group, name, now.mono);
        let replicas =
            candor_brain::groups::replicas_status(&self.services, group, name, now.mono, |at| {
                timestamp(now.wall_of(at))
            });
        let members = candor_brain::groups::members(&self.services, name);
        let (mut restarts, mut runs, mut lines, mut dropped, mut folded) = (0, 0, 0, 0, 0);
        let mut since = None;
        for (_, svc) in members {
            restarts += svc.restarts;
            runs += svc.runs;
            if let Some(l) = self.logs.get(&svc.spec.name) {
                lines += l.kept();
                dropped += l.lost();
                folded += l.folded.load(Ordering::Relaxed);
            }
            let shown = svc.shown.map(|(_, at)| at);
            since = since.max(shown);
        }
        api::ServiceStatus {
            name: name.to_string(),
            state: state.as_str().into(),
            reason,
            since: timestamp(now.wall_of(since.unwrap_or(now.mono))),
            pid: None,
            uptime_s: None,
            restarts,
            last_exit: None,
            ready: None,
            probes: Vec::new(),
            sockets: Vec::new(),
            fds: None,
            rss_bytes: None,
            logs: api::LogCounts {
                lines,
                dropped,
                folded,
            },
            runs,
            next_start: None,
            status_text: None,
            shared_cause: None,
            restart_held: None,
            group: None,
            replicas: Some(replicas),
        }
    }

    /// Services whose restart is held now: (held by a shared cause, held by the restart
    /// budget).
    pub fn held(&self) -> (usize, usize) {
        self.services
            .values()
            .fold((0, 0), |(shared, budget), s| match s.held {
                Some(candor_brain::Held::Shared) => (shared + 1, budget),
                Some(candor_brain::Held::Budget { .. }) => (shared, budget + 1),
                None => (shared, budget),
            })
    }
}

/// The words for why a restart is held, as `ServiceStatus.restart_held` and the
/// `candor_restarts_held{reason}` label say them.
pub const HELD_SHARED: &str = "shared cause";
pub const HELD_BUDGET: &str = "restart budget";

impl<'a> ServiceView<'a> {
    pub fn spec(&self) -> &'a ServiceSpec {
        &self.svc.spec
    }
    pub fn runs(&self) -> u64 {
        self.svc.runs
    }
    pub fn restarts(&self) -> u32 {
        self.svc.restarts
    }
    pub fn derived(&self, now: Mono) -> Derived {
        derive(&self.board.services, self.svc, now)
    }
    /// The run whose main process is alive (spawned, not yet reaped).
    pub fn alive(&self) -> Option<&'a Run> {
        self.svc
            .live()
            .filter(|r| r.pid().is_some() && r.main_exit.is_none())
    }
    pub fn log_counters(&self) -> Option<&'a LogCounters> {
        self.logs
    }
    pub fn probe_stats(&self) -> Option<&'a ProbeStats> {
        self.probes
    }
    pub fn log_count(&self, pick: impl Fn(&LogCounters) -> u64) -> u64 {
        self.logs.map(pick).unwrap_or_default()
    }

    pub fn status(&self, now: Now) -> api::ServiceStatus {
        let Derived { state, reason } = self.derived(now.mono);
        let spec = self.spec();
        let run = self.alive();
        let health = run.map(|r| &r.health);
        let fresh_budget = health
            .and_then(|h| h.budget.as_ref())
            .filter(|b| b.is_fresh(now.mono));
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        api::ServiceStatus {
            name: spec.name.to_string(),
            state: state.as_str().into(),
            reason,
            since: timestamp(now.wall_of(self.svc.shown.map(|(_, at)| at).unwrap_or(now.mono))),
            pid: run.and_then(Run::pid),
            uptime_s: run
                .and_then(Run::started_at)
                .map(|at| now.mono.since(at).as_secs_f64()),
            restarts: self.svc.restarts,
            last_exit: self.svc.last_exit.map(|e| api::LastExit {
                description: e.status.describe(),
                code: e.status.code(),
                signal: e.status.signal().map(candor_core::exit::signal_name),
                at: timestamp(now.wall_of(e.at)),
                uptime_s: e.uptime.as_secs_f64(),
            }),
            ready: run.and_then(|r| r.ready).map(|(at, via)| api::Ready {
                via: via.into(),
                at: timestamp(now.wall_of(at)),
            }),
            probes: health
                .and_then(|h| h.probe.last.as_ref())
                .map(|o| api::ProbeResult {
                    kind: spec
                        .probe
                        .as_ref()
                        .map(|p| p.check.kind())
                        .unwrap_or("probe")
                        .into(),
                    ok: o.ok,
                    detail: o.detail.clone(),
                    latency_ms: (o.latency.as_secs_f64() * 1e4).round() / 10.0,
                    at: timestamp(now.wall_of(o.at)),
                })
                .into_iter()
                .collect(),
            sockets: health
                .map(|h| {
                    h.sockets
                        .iter()
                        .map(|c| api::SocketCheck {
                            path: c.path.display().to_string(),
                            exists: c.exists,
                            accepts: c.accepts,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            fds: fresh_budget.map(|b| {
                let last = &b.latest;
                api::Fds {
                    count: last.fds,
                    limit: last.fd_limit,
                    pct: (candor_core::budget::pct(last.fds, last.fd_limit) * 10.0).round() / 10.0,
                    per_hour: b.per_hour.map(|r| r.round()),
                    eta_s: b.eta.map(|d| d.as_secs_f64().round()),
                }
            }),
            rss_bytes: fresh_budget.map(|b| b.latest.rss),
            logs: api::LogCounts {
                lines: self.log_count(LogCounters::kept),
                dropped: self.log_count(LogCounters::lost),
                folded: self.log_count(|l| load(&l.folded)),
            },
            runs: self.svc.runs,
            next_start: self
                .svc
                .start
                .filter(|s| s.due > now.mono)
                .map(|s| timestamp(now.wall_of(s.due))),
            status_text: health.and_then(|h| h.notify_status.clone()),
            shared_cause: self.svc.shared.as_ref().map(|c| api::SharedCause {
                target: c.target.to_string(),
                services: c.services,
                since: timestamp(now.wall_of(c.since)),
            }),
            restart_held: self.svc.held.as_ref().map(|h| {
                match h {
                    candor_brain::Held::Shared => HELD_SHARED,
                    candor_brain::Held::Budget { .. } => HELD_BUDGET,
                }
                .to_string()
            }),
            group: spec.instance.as_ref().map(|i| i.group.to_string()),
            replicas: None,
        }
    }
}

/// Boards built by hand, for the tests of what is rendered from one.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use candor_brain::{Held, SharedCause};
    use std::time::{Duration, SystemTime};

    /// 1000 s after boot; wall 2026-12-07T14:02:00Z.
    pub fn now() -> Now {
        Now {
            mono: Mono(Duration::from_secs(1000)),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_652_120),
        }
    }

    /// A cause named `ago` before [`now`].
    pub fn cause(target: &str, services: u32, ago: u64) -> SharedCause {
        SharedCause {
            target: target.into(),
            services,
            since: now().mono - Duration::from_secs(ago),
        }
    }

    pub fn budget() -> Held {
        Held::Budget {
            restarts: 30,
            window: Duration::from_secs(10),
            until: now().mono + Duration::from_secs(4),
        }
    }

    /// A board of the services named, each `sleep`, with the shared cause and hold given.
    pub fn board(services: &[(&str, Option<SharedCause>, Option<Held>)]) -> Board {
        let text: String = services
            .iter()
            .map(|(n, ..)| format!("[service.{n}]\ncommand = [\"/bin/sleep\", \"1000\"]\n"))
            .collect();
        let spec = candor_spec::parse_str(std::path::Path::new("/srv/candor.toml"), &text)
            .expect("a valid config");
        let mut all = Services::new();
        for (name, shared, held) in services {
            let key = ServiceName::new(name).unwrap();
            let mut svc = Service::new(Arc::new(spec.services[&key].clone()), now().mono);
            svc.shared = shared.clone();
            svc.held = held.clone();
            all.insert(key, Arc::new(svc));
        }
        Board {
            services: all,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{board, budget, cause, now};
    use super::*;
    use candor_brain::Held;
    use tokio::sync::watch;

    #[test]
    fn shared_causes_are_counted_per_target_from_the_earliest() {
        let b = board(&[
            (
                "a",
                Some(cause("127.0.0.1:8000", 2, 30)),
                Some(Held::Shared),
            ),
            (
                "b",
                Some(cause("127.0.0.1:8000", 3, 40)),
                Some(Held::Shared),
            ),
            ("c", Some(cause("/run/db.sock", 1, 5)), None),
            ("d", Some(cause("127.0.0.1:8000", 3, 10)), Some(budget())),
            ("e", None, Some(budget())),
            ("f", None, None),
        ]);
        let causes = b.shared_causes(now());
        let got: Vec<(&str, u32, &str)> = causes
            .iter()
            .map(|c| (c.target.as_str(), c.services, c.since.as_str()))
            .collect();
        // The count is the board's (3 services name :8000), not what one of them last saw.
        assert_eq!(
            got,
            [
                ("/run/db.sock", 1, "2026-12-07T14:01:55Z"),
                ("127.0.0.1:8000", 3, "2026-12-07T14:01:20Z"),
            ]
        );
        assert_eq!(b.held(), (2, 2));
        let st = b.get("a").unwrap().status(now());
        assert_eq!(st.restart_held.as_deref(), Some(HELD_SHARED));
        assert_eq!(st.shared_cause.unwrap().services, 2);
        assert_eq!(
            b.get("e").unwrap().status(now()).restart_held.as_deref(),
            Some(HELD_BUDGET)
        );
        let calm = board(&[("a", None, None)]);
        assert!(calm.shared_causes(now()).is_empty());
        assert_eq!(calm.held(), (0, 0));
    }

    fn with_logs(n: usize) -> Arc<Board> {
        let mut logs = BTreeMap::new();
        for i in 0..n {
            let name = ServiceName::new(&format!("s{i}")).unwrap();
            logs.insert(name, Arc::new(LogCounters::new(&Default::default())));
        }
        Arc::new(Board {
            services: Default::default(),
            logs: Arc::new(logs),
            probes: Default::default(),
            groups: Default::default(),
        })
    }

    #[tokio::test]
    async fn a_reader_gets_the_changes_not_yet_published() {
        let (tx, rx) = watch::channel(with_logs(1));
        let fresh = Arc::new(Freshness::default());
        fresh.stale.store(true, Ordering::SeqCst);
        // The shell: publishes what it holds when a reader asks.
        let shell = {
            let fresh = fresh.clone();
            tokio::spawn(async move {
                fresh.ask.notified().await;
                fresh.stale.store(false, Ordering::SeqCst);
                tx.send_replace(with_logs(2));
                tx
            })
        };
        assert_eq!(fresh.current(&rx).await.logs.len(), 2);
        let _tx = shell.await.unwrap();
        // Nothing pending: the board as it is, without asking.
        assert_eq!(fresh.current(&rx).await.logs.len(), 2);
    }

    #[tokio::test]
    async fn a_shell_that_does_not_answer_costs_a_reader_a_bounded_wait() {
        let (_tx, rx) = watch::channel(with_logs(1));
        let fresh = Freshness::default();
        fresh.stale.store(true, Ordering::SeqCst);
        // It serves the board it has rather than hang.
        let board = tokio::time::timeout(std::time::Duration::from_secs(10), fresh.current(&rx))
            .await
            .expect("a reader never hangs on a shell that does not publish");
        assert_eq!(board.logs.len(), 1);
    }
}
