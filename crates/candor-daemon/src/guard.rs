//! The control socket's accept loop, guarded so the daemon cannot be taken down by running
//! out of fds (DESIGN.md F10, seed 000): accept errors back off 100 ms doubling to 5 s (reset
//! on success) with one log line per backoff step, and above 80 % of its own fd limit the
//! daemon answers new connections with a 503 and closes them instead of serving them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

use crate::sampler;

/// Share of the fd limit above which new API connections are refused.
pub const REFUSE_ABOVE_PCT: f64 = 80.0;

#[derive(Debug, Default)]
pub struct GuardCounters {
    pub refused: AtomicU64,
    pub accept_errors: AtomicU64,
}

pub struct GuardedListener {
    inner: UnixListener,
    counters: Arc<GuardCounters>,
    backoff: Duration,
}

impl GuardedListener {
    pub fn new(inner: UnixListener, counters: Arc<GuardCounters>) -> Self {
        Self {
            inner,
            counters,
            backoff: Duration::ZERO,
        }
    }
}

/// Our own fd use now: (open, soft limit). One stat of /proc/self/fd (procfs never blocks on
/// IO) and the cached limit.
fn own_fds(limit: u64) -> (u64, u64) {
    (sampler::fd_count(std::process::id()).unwrap_or(0), limit)
}

fn own_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only `lim`.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 only on 64-bit targets
    let soft = lim.rlim_cur as u64;
    soft
}

fn refuse(stream: UnixStream, open: u64, limit: u64) {
    let body = serde_json::to_string(&candor_api::ErrorBody {
        error: format!(
            "the candor daemon is near its fd limit ({open}/{limit} open); refusing new API connections until some close"
        ),
        details: Vec::new(),
        status: None,
    })
    .unwrap_or_default();
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // Best effort, never blocking: a client that cannot take it just sees the close.
    let _ = stream.try_write(resp.as_bytes());
}

/// The accept-error backoff ladder: 100 ms, doubling, at most 5 s.
pub fn next_backoff(current: Duration) -> Duration {
    if current.is_zero() {
        Duration::from_millis(100)
    } else {
        (current * 2).min(Duration::from_secs(5))
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let limit = own_limit();
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    self.backoff = Duration::ZERO;
                    let (open, limit) = own_fds(limit);
                    if limit > 0 && open as f64 * 100.0 / limit as f64 > REFUSE_ABOVE_PCT {
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                        refuse(stream, open, limit);
                        continue;
                    }
                    return (stream, addr);
                }
                Err(e) => {
                    self.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                    let next = next_backoff(self.backoff);
                    // One line per step up the ladder, not one per error.
                    if next != self.backoff {
                        eprintln!(
                            "candor: control socket accept failed: {e}; backing off {}ms",
                            next.as_millis()
                        );
                    }
                    self.backoff = next;
                    tokio::time::sleep(self.backoff).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Who is on the other end of an API connection, as the kernel says (SO_PEERCRED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, GuardedListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, GuardedListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                pid: c.pid(),
            },
            // Not expected on a Unix socket; shown as an unknown caller rather than refused.
            Err(_) => Peer {
                uid: u32::MAX,
                pid: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms_to_5s_and_logs_once_per_step() {
        let mut d = Duration::ZERO;
        let mut steps = Vec::new();
        let mut lines = 0;
        for _ in 0..1000 {
            let next = next_backoff(d);
            if next != d {
                lines += 1; // the accept loop logs only when the step changes
            }
            d = next;
            steps.push(d.as_millis());
        }
        assert_eq!(&steps[..8], [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert!(steps.iter().all(|&ms| ms <= 5000));
        assert_eq!(lines, 7, "1000 errors, 7 log lines");
    }
}
