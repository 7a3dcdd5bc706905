//! The per-run monitor: tasks that gather evidence about one run and hand it to the brain —
//! probe results, declared-socket checks, and readiness by file or fd. They end with the run
//! (the brain aborts them); a hung probe is cut at its timeout and costs only its own task.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use candor_keeper::KeeperHandle;
use candor_spec::{ReadySpec, ServiceSpec};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::probe::{self, ExecProbes};

/// Declared sockets of a service without a probe are checked this often.
pub const SOCKET_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Evidence for the brain, each piece tagged with the run it was taken for.
pub use candor_brain::Evidence as Internal;

pub struct Monitor {
    tasks: Vec<AbortHandle>,
    check_now: Arc<tokio::sync::Notify>,
}

impl Monitor {
    /// Probe and check the sockets now rather than at the next tick (e.g. the run just became
    /// ready, and its socket checks must be taken after that).
    pub fn check_now(&self) {
        self.check_now.notify_one();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub fn start(
    spec: Arc<ServiceSpec>,
    run_id: u64,
    keeper: KeeperHandle,
    exec: Arc<ExecProbes>,
    tx: mpsc::Sender<Internal>,
    ready_fd: Option<OwnedFd>,
) -> Monitor {
    let mut tasks = Vec::new();
    let service = spec.name.to_string();
    let check_now = Arc::new(tokio::sync::Notify::new());
    if let Some(fd) = ready_fd {
        let (tx, service) = (tx.clone(), service.clone());
        tasks.push(
            tokio::spawn(async move {
                let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
                    return;
                };
                let mut buf = [0u8; 512];
                // s6: ready when a newline is written; EOF first means it never said so.
                while let Ok(n) = rx.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    if buf[..n].contains(&b'\n') {
                        let _ = tx
                            .send(Internal::Ready {
                                service,
                                run_id,
                                via: "fd",
                            })
                            .await;
                        return;
                    }
                }
            })
            .abort_handle(),
        );
    }
    if let ReadySpec::File(path) = &spec.ready {
        let (tx, service, path) = (tx.clone(), service.clone(), path.clone());
        tasks.push(
            tokio::spawn(async move {
                while !tokio::fs::try_exists(&path).await.unwrap_or(false) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = tx
                    .send(Internal::Ready {
                        service,
                        run_id,
                        via: "file",
                    })
                    .await;
            })
            .abort_handle(),
        );
    }
    if spec.probe.is_some() || !spec.sockets.is_empty() {
        let spec = spec.clone();
        let wake = check_now.clone();
        tasks.push(
            tokio::spawn(async move {
                let (every, delay, timeout) = match &spec.probe {
                    Some(p) => (p.every, p.start_delay, p.timeout),
                    None => (SOCKET_CHECK_EVERY, Duration::ZERO, Duration::from_secs(1)),
                };
                tokio::time::sleep(delay).await;
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = wake.notified() => {}
                    }
                    let (outcome, checks) = tokio::join!(
                        probe::run(&spec, &keeper, &exec),
                        probe::check_sockets(&spec.sockets, timeout)
                    );
                    if !spec.sockets.is_empty() {
                        let msg = Internal::Sockets {
                            service: service.clone(),
                            run_id,
                            checks,
                        };
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                    if let Some(outcome) = outcome {
                        if tx
                            .send(Internal::Probe {
                                service: service.clone(),
                                run_id,
                                outcome,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            })
            .abort_handle(),
        );
    }
    Monitor { tasks, check_now }
}
