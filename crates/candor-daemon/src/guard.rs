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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::sampler;

/// Share of the fd limit above which new API connections are refused.
pub const REFUSE_ABOVE_PCT: f64 = 80.0;

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
}

impl Default for GuardCounters {
    fn default() -> Self {
        GuardCounters {
            refused: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            cut_off: AtomicU64::new(0),
            send_timeout_ms: AtomicU64::new(SEND_TIMEOUT.as_millis() as u64),
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

fn refuse<L: Transport>(stream: L::Stream, open: u64, limit: u64) {
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

impl<L: Transport> axum::serve::Listener for GuardedListener<L> {
    type Io = GuardedStream<L>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let limit = own_limit();
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    self.backoff = Duration::ZERO;
                    let (open, limit) = own_fds(limit);
                    if limit > 0 && open as f64 * 100.0 / limit as f64 > REFUSE_ABOVE_PCT {
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                        refuse::<L>(stream, open, limit);
                        continue;
                    }
                    let stream = GuardedStream {
                        inner: stream,
                        counters: self.counters.clone(),
                        stalled: None,
                    };
                    return (stream, addr);
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

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Who is on the other end of an API connection, as the kernel says (SO_PEERCRED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
    /// A connection to the web listener: the browser's address (let in by the token).
    pub web: Option<std::net::SocketAddr>,
    /// What the caller may do: from its uid on the control socket; on the dashboard, read-only
    /// until the web layer has seen the request's token (`web::grant`).
    pub role: crate::roles::Role,
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, GuardedListener<TcpListener>>,
    > for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, GuardedListener<TcpListener>>) -> Self {
        Peer {
            uid: rustix::process::getuid().as_raw(),
            pid: Some(std::process::id() as i32),
            web: Some(*stream.remote_addr()),
            role: crate::roles::Role::ReadOnly,
        }
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, GuardedListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, GuardedListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                pid: c.pid(),
                web: None,
                role: crate::roles::Role::of_uid(c.uid(), rustix::process::geteuid().as_raw()),
            },
            // Not expected on a Unix socket; shown as an unknown caller rather than refused, and
            // never an admin.
            Err(_) => Peer {
                uid: u32::MAX,
                pid: None,
                web: None,
                role: crate::roles::Role::Operator,
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
