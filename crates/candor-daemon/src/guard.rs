//! The control socket's accept loop, guarded so the daemon cannot be taken down by running
//! out of fds (DESIGN.md F10, seed 000): accept errors back off 100 ms doubling to 5 s (reset
//! on success) with one log line per backoff step, and above 80 % of its own fd limit the
//! daemon answers new connections with a 503 and closes them instead of serving them.
//!
//! A client that stops reading (a `logs -f` piped into a pager left open, or a hostile one)
//! is cut off once nothing could be written to it for `[daemon] send_timeout` (default 30 s,
//! like nginx's `send_timeout`): what it holds meanwhile is bounded by the socket's buffer and
//! hyper's, and its connection is closed instead of being kept forever.
//!
//! The same guard serves the dashboard's TCP listener ([`Transport`]: Unix or TCP).
//!
//! Connections that send nothing are not kept: a connection must send a whole request head
//! within [`HEADER_TIMEOUT`] of its accept or of the end of its previous answer (this is also
//! the keep-alive idle timeout), else it is closed. Each listener has a cap on the connections
//! it holds for callers other than the owner: the dashboard's is
//! min(256, 20 % of the fd limit), the control socket's min(64, 10 %) for peers other than root
//! and the daemon's own uid. The control socket's owner is refused only above [`OWNER_HARD_PCT`]
//! of the fd limit, so neither the dashboard nor another local user can lock it out.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::peer::{Peer, Role};
use crate::sampler;

/// Share of the fd limit above which new API connections are refused (but the owner's).
pub const REFUSE_ABOVE_PCT: f64 = 80.0;

/// Share of the fd limit above which even the control socket's owner is refused.
pub const OWNER_HARD_PCT: f64 = 95.0;

/// How long a connection may take to send a request head, from its accept or from the end of
/// its previous answer.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections to the dashboard at most, and at most this share of the fd limit.
pub const DASHBOARD_CAP: u64 = 256;
const DASHBOARD_CAP_PCT: u64 = 20;
/// Connections to the control socket from users other than root and the daemon's, at most,
/// and at most this share of the fd limit.
pub const OTHERS_CAP: u64 = 64;
const OTHERS_CAP_PCT: u64 = 10;

/// One listener's connections: what it holds, its cap, and what it refused or closed.
#[derive(Debug, Default)]
pub struct ConnCounts {
    pub open: AtomicU64,
    /// Open connections that count against `cap` (on the control socket: not the owner's).
    pub others: AtomicU64,
    pub cap: AtomicU64,
    pub refused: AtomicU64,
    /// Closed because no request head came within [`HEADER_TIMEOUT`].
    pub timed_out: AtomicU64,
}

impl ConnCounts {
    pub fn snapshot(&self) -> candor_api::ListenerConnections {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        candor_api::ListenerConnections {
            open: load(&self.open),
            others: load(&self.others),
            cap: load(&self.cap),
            refused: load(&self.refused),
            timed_out: load(&self.timed_out),
        }
    }
}

/// How long a client may read nothing while the daemon has bytes for it, by default.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct GuardCounters {
    pub refused: AtomicU64,
    pub accept_errors: AtomicU64,
    /// Connections closed because their client read nothing for `send_timeout_ms`.
    pub cut_off: AtomicU64,
    /// `[daemon] send_timeout`, in ms (a reload changes it for every connection).
    pub send_timeout_ms: AtomicU64,
    pub control: ConnCounts,
    pub dashboard: ConnCounts,
}

impl Default for GuardCounters {
    fn default() -> Self {
        GuardCounters {
            refused: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            cut_off: AtomicU64::new(0),
            send_timeout_ms: AtomicU64::new(SEND_TIMEOUT.as_millis() as u64),
            control: ConnCounts::default(),
            dashboard: ConnCounts::default(),
        }
    }
}

impl GuardCounters {
    pub fn set_send_timeout(&self, d: Option<Duration>) {
        let ms = d.unwrap_or(SEND_TIMEOUT).as_millis().max(1);
        self.send_timeout_ms
            .store(ms.try_into().unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// What the guard needs of a listener and its connections: the control socket (Unix) or the
/// dashboard (TCP).
pub trait Transport: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    type Addr: Send;
    /// The listener, in messages.
    const WHAT: &'static str;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Stream, Self::Addr)>> + Send;
    fn local_addr(&self) -> std::io::Result<Self::Addr>;
    /// Who is on the other end, in messages.
    fn who(stream: &Self::Stream) -> String;
    /// Write what fits now, never waiting (the refusal).
    fn try_write(stream: &Self::Stream, bytes: &[u8]);
    /// Who is on the other end, for the handlers (`ConnectInfo<Peer>`).
    fn peer(stream: &Self::Stream, addr: &Self::Addr) -> Peer;
    /// Whether the caller is the control socket's owner (root or the daemon's uid), who has
    /// a reserve no one else can take. Never on the dashboard.
    fn is_owner(peer: &Peer) -> bool;
    /// This listener's connection counts.
    fn counts(c: &GuardCounters) -> &ConnCounts;
    /// The cap on connections that are not the owner's, given the fd limit.
    fn cap(fd_limit: u64) -> u64;
}

impl Transport for UnixListener {
    type Stream = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;
    const WHAT: &'static str = "control socket";
    fn accept(&self) -> impl Future<Output = std::io::Result<(UnixStream, Self::Addr)>> + Send {
        UnixListener::accept(self)
    }
    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        UnixListener::local_addr(self)
    }
    fn who(stream: &UnixStream) -> String {
        match stream.peer_cred() {
            Ok(c) => format!("uid {}, pid {}", c.uid(), c.pid().unwrap_or(0)),
            Err(_) => "unknown".into(),
        }
    }
    fn try_write(stream: &UnixStream, bytes: &[u8]) {
        let _ = stream.try_write(bytes);
    }
    fn peer(stream: &UnixStream, _: &Self::Addr) -> Peer {
        match stream.peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                pid: c.pid(),
                web: None,
                role: Role::of_uid(c.uid(), rustix::process::geteuid().as_raw()),
            },
            // Not expected on a Unix socket; shown as an unknown caller rather than refused, and
            // never an admin.
            Err(_) => Peer {
                uid: u32::MAX,
                pid: None,
                web: None,
                role: Role::Operator,
            },
        }
    }
    fn is_owner(peer: &Peer) -> bool {
        peer.uid == 0 || peer.uid == rustix::process::getuid().as_raw()
    }
    fn counts(c: &GuardCounters) -> &ConnCounts {
        &c.control
    }
    fn cap(fd_limit: u64) -> u64 {
        OTHERS_CAP.min(fd_limit * OTHERS_CAP_PCT / 100).max(1)
    }
}

impl Transport for TcpListener {
    type Stream = TcpStream;
    type Addr = std::net::SocketAddr;
    const WHAT: &'static str = "dashboard";
    fn accept(&self) -> impl Future<Output = std::io::Result<(TcpStream, Self::Addr)>> + Send {
        TcpListener::accept(self)
    }
    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        TcpListener::local_addr(self)
    }
    fn who(stream: &TcpStream) -> String {
        match stream.peer_addr() {
            Ok(a) => format!("dashboard, {a}"),
            Err(_) => "dashboard".into(),
        }
    }
    fn try_write(stream: &TcpStream, bytes: &[u8]) {
        let _ = stream.try_write(bytes);
    }
    fn peer(_: &TcpStream, addr: &std::net::SocketAddr) -> Peer {
        // Read-only until the web layer has seen the request's token (`web::grant`).
        Peer {
            uid: rustix::process::getuid().as_raw(),
            pid: Some(std::process::id() as i32),
            web: Some(*addr),
            role: Role::ReadOnly,
        }
    }
    fn is_owner(_: &Peer) -> bool {
        false
    }
    fn counts(c: &GuardCounters) -> &ConnCounts {
        &c.dashboard
    }
    fn cap(fd_limit: u64) -> u64 {
        DASHBOARD_CAP.min(fd_limit * DASHBOARD_CAP_PCT / 100).max(1)
    }
}

pub struct GuardedListener<L: Transport = UnixListener> {
    inner: L,
    counters: Arc<GuardCounters>,
    backoff: Duration,
}

impl<L: Transport> GuardedListener<L> {
    pub fn new(inner: L, counters: Arc<GuardCounters>) -> Self {
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

fn refuse<L: Transport>(stream: L::Stream, why: String) {
    let body = serde_json::to_string(&candor_api::ErrorBody {
        error: why,
        details: Vec::new(),
        status: None,
    })
    .unwrap_or_default();
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // Best effort, never blocking: a client that cannot take it just sees the close.
    L::try_write(&stream, resp.as_bytes());
}

/// The accept-error backoff ladder: 100 ms, doubling, at most 5 s.
pub fn next_backoff(current: Duration) -> Duration {
    if current.is_zero() {
        Duration::from_millis(100)
    } else {
        (current * 2).min(Duration::from_secs(5))
    }
}

/// An API connection that is closed when its client reads nothing for the send timeout.
pub struct GuardedStream<L: Transport = UnixListener> {
    inner: L::Stream,
    counters: Arc<GuardCounters>,
    /// Running while a write is waiting for the client to read; reset by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl GuardedStream<UnixListener> {
    pub fn peer_cred(&self) -> std::io::Result<tokio::net::unix::UCred> {
        self.inner.peer_cred()
    }
}

impl<L: Transport> GuardedStream<L> {
    /// A write that could not proceed: wait on, or give up when the client has read nothing
    /// for the send timeout.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let limit = Duration::from_millis(self.counters.send_timeout_ms.load(Ordering::Relaxed));
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.counters.cut_off.fetch_add(1, Ordering::Relaxed);
        eprintln!(
            "candor: cut off an API client ({}) that read nothing for {}ms (a follower that stopped reading); it can reconnect",
            L::who(&self.inner),
            limit.as_millis()
        );
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client read nothing for the send timeout",
        )))
    }

    fn progressed<T>(
        &mut self,
        p: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match p {
            Poll::Pending => self.stalled(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<L: Transport> AsyncRead for GuardedStream<L> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<L: Transport> AsyncWrite for GuardedStream<L> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progressed(p, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progressed(p, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let p = Pin::new(&mut self.inner).poll_flush(cx);
        self.progressed(p, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection let in: counted open (and against its listener's cap) until dropped.
pub struct Slot {
    counters: Arc<GuardCounters>,
    counts: fn(&GuardCounters) -> &ConnCounts,
    other: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let c = (self.counts)(&self.counters);
        c.open.fetch_sub(1, Ordering::Relaxed);
        if self.other {
            c.others.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Why a new connection is refused, if it is: above 80 % of the fd limit (above 95 % for the
/// control socket's owner), or its listener's cap reached (never for the owner).
pub fn refusal(
    what: &str,
    owner: bool,
    (open_fds, fd_limit): (u64, u64),
    others: u64,
    cap: u64,
) -> Option<String> {
    let pct = if fd_limit > 0 {
        open_fds as f64 * 100.0 / fd_limit as f64
    } else {
        0.0
    };
    let near = || {
        format!(
            "the candor daemon is near its fd limit ({open_fds}/{fd_limit} open); refusing new API connections until some close"
        )
    };
    if owner {
        return (pct > OWNER_HARD_PCT).then(near);
    }
    if pct > REFUSE_ABOVE_PCT {
        return Some(near());
    }
    (others >= cap).then(|| {
        let whose = if what == "dashboard" {
            ""
        } else {
            " from users other than root and the daemon's"
        };
        format!(
            "the candor {what} holds {others} connections{whose} already, its cap; refusing new ones until some close"
        )
    })
}

impl<L: Transport> GuardedListener<L> {
    /// The next connection let in, with who it is from and its slot.
    pub async fn accept(&mut self) -> (GuardedStream<L>, Peer, Slot) {
        let limit = own_limit();
        let counts = L::counts(&self.counters);
        let cap = L::cap(limit);
        counts.cap.store(cap, Ordering::Relaxed);
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    self.backoff = Duration::ZERO;
                    let peer = L::peer(&stream, &addr);
                    let owner = L::is_owner(&peer);
                    let others = counts.others.load(Ordering::Relaxed);
                    if let Some(why) = refusal(L::WHAT, owner, own_fds(limit), others, cap) {
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                        counts.refused.fetch_add(1, Ordering::Relaxed);
                        refuse::<L>(stream, why);
                        continue;
                    }
                    counts.open.fetch_add(1, Ordering::Relaxed);
                    if !owner {
                        counts.others.fetch_add(1, Ordering::Relaxed);
                    }
                    let slot = Slot {
                        counters: self.counters.clone(),
                        counts: L::counts,
                        other: !owner,
                    };
                    let stream = GuardedStream {
                        inner: stream,
                        counters: self.counters.clone(),
                        stalled: None,
                    };
                    return (stream, peer, slot);
                }
                Err(e) => {
                    self.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                    let next = next_backoff(self.backoff);
                    // One line per step up the ladder, not one per error.
                    if next != self.backoff {
                        eprintln!(
                            "candor: {} accept failed: {e}; backing off {}ms",
                            L::WHAT,
                            next.as_millis()
                        );
                    }
                    self.backoff = next;
                    tokio::time::sleep(self.backoff).await;
                }
            }
        }
    }
}

/// Serve `app` on `listener` until `stop`, then let the open connections finish their answers
/// (followers end with the brain) and return once they are all closed. Each connection is
/// HTTP/1.1 with the [`HEADER_TIMEOUT`]; its handlers see who it is from as `ConnectInfo<Peer>`.
pub async fn serve<L: Transport>(
    mut listener: GuardedListener<L>,
    app: axum::Router,
    stop: impl Future<Output = ()> + Send,
) {
    use hyper::service::Service as _;
    let (shut_tx, shut_rx) = tokio::sync::watch::channel(false);
    // Every connection's task holds a sender: all gone, all closed.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    let counters = listener.counters.clone();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (io, peer, slot) = tokio::select! {
            c = listener.accept() => c,
            _ = &mut stop => break,
        };
        let (app, mut shut, alive, counters) = (
            app.clone(),
            shut_rx.clone(),
            alive_tx.clone(),
            counters.clone(),
        );
        tokio::spawn(async move {
            let _alive = alive;
            let _slot = slot;
            let app = hyper_util::service::TowerToHyperService::new(app);
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    app.call(req)
                },
            );
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = shut.wait_for(|s| *s) => None,
            };
            let ended = match ended {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if ended.is_err_and(|e| e.is_timeout()) {
                L::counts(&counters)
                    .timed_out
                    .fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    drop(listener);
    let _ = shut_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_keeps_a_reserve_that_others_and_the_dashboard_cannot_take() {
        let cap = TcpListener::cap(1024);
        assert_eq!(cap, 204, "20 % of 1024");
        assert_eq!(TcpListener::cap(1 << 20), DASHBOARD_CAP);
        assert_eq!(UnixListener::cap(1 << 20), OTHERS_CAP);
        // At 85 % of the fd limit: others are refused, the owner is served.
        assert!(refusal("control socket", false, (870, 1024), 0, 64).is_some());
        assert!(refusal("control socket", true, (870, 1024), 0, 64).is_none());
        // At its cap a listener refuses others, never the owner.
        let why = refusal("control socket", false, (10, 1024), 64, 64).unwrap();
        assert!(why.contains("other than root"), "{why}");
        assert!(refusal("control socket", true, (10, 1024), 500, 64).is_none());
        assert!(refusal("dashboard", false, (10, 1024), 203, cap).is_none());
        assert!(refusal("dashboard", false, (10, 1024), 204, cap).is_some());
        // Above 95 %, even the owner.
        assert!(refusal("control socket", true, (1000, 1024), 0, 64).is_some());
    }

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
