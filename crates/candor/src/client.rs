//! A minimal HTTP/1.1 client over the daemon's Unix socket (hyper), used by every CLI command.

use std::path::{Path, PathBuf};

use candor_daemon::paths;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

#[derive(Debug)]
pub enum ClientError {
    /// No daemon answers at the socket.
    Unreachable(String),
    /// The daemon answered with a non-2xx status.
    Api {
        status: u16,
        body: candor_api::ErrorBody,
    },
    /// The command line or the config it names cannot say where the daemon is.
    Usage { error: String, details: Vec<String> },
    /// Something else went wrong talking to it.
    Other(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable(m) | ClientError::Other(m) => f.write_str(m),
            ClientError::Usage { error, .. } => f.write_str(error),
            ClientError::Api { body, .. } => f.write_str(&body.error),
        }
    }
}

/// How to tell a client where the daemon is, for the messages that say it cannot find one.
const POINT_AT_IT: &str = "if a daemon is running (`candor up` in another terminal, a system service), point at it with -c FILE (its config), --socket PATH, $CANDOR_SOCKET or --system / --user; if none is, start one with `candor daemon -c candor.toml`";

#[derive(Clone, Debug)]
enum Target {
    Socket(PathBuf),
    /// Nothing named a socket and none of these (the places looked, in order) exists.
    Nowhere(Vec<PathBuf>),
}

#[derive(Clone, Debug)]
pub struct Client {
    target: Target,
}

impl Client {
    pub fn at(socket: PathBuf) -> Client {
        Client {
            target: Target::Socket(socket),
        }
    }

    /// The daemon that `--socket`, `-c FILE` (its `[daemon]` socket or state dir), `--system`
    /// / `--user` or `$CANDOR_SOCKET` point at ([`paths::client`]); with none of them, the
    /// first of [`paths::look_in`] that exists.
    pub fn locate(
        socket: Option<&Path>,
        config: Option<&Path>,
        mode: paths::Mode,
    ) -> Result<Client, ClientError> {
        if let Some(socket) = socket {
            return Ok(Client::at(socket.to_path_buf()));
        }
        let spec = match config.map(|c| (c, candor_spec::load(c))) {
            None => None,
            Some((_, Ok(spec))) => Some(spec),
            Some((file, Err(errors))) => {
                return Err(ClientError::Usage {
                    error: format!(
                        "cannot tell where the daemon is: {} is not a valid config ({} error{})",
                        file.display(),
                        errors.0.len(),
                        if errors.0.len() == 1 { "" } else { "s" },
                    ),
                    details: errors.0.iter().map(ToString::to_string).collect(),
                })
            }
        };
        let env = paths::Env::current();
        let chosen = paths::client(None, spec.as_ref().map(|s| &s.daemon), mode, &env);
        match chosen {
            Ok(paths::ClientSocket::Named(socket)) => Ok(Client::at(socket)),
            Ok(paths::ClientSocket::LookIn(places)) => Ok(Client {
                target: match places.iter().find(|p| p.exists()) {
                    Some(found) => Target::Socket(found.clone()),
                    None => Target::Nowhere(places),
                },
            }),
            Err(e) => Err(ClientError::Usage {
                error: e.to_string(),
                details: Vec::new(),
            }),
        }
    }
}

/// "a", "a or b", "a, b or c".
fn one_of(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "none of the usual places".to_string(),
    }
}

/// A non-2xx answer: the daemon's JSON error, or its raw text if it is not JSON.
fn api_error(status: u16, bytes: &[u8]) -> ClientError {
    let body = serde_json::from_slice(bytes).unwrap_or_else(|_| candor_api::ErrorBody {
        error: String::from_utf8_lossy(bytes).into_owned(),
        details: Vec::new(),
        status: None,
    });
    ClientError::Api { status, body }
}

impl Client {
    /// Connect, send one request, return the response head with its body still streaming.
    async fn send(&self, method: &str, path: &str) -> Result<Response<Incoming>, ClientError> {
        self.send_body(method, path, Bytes::new()).await
    }

    async fn send_body(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Response<Incoming>, ClientError> {
        let at = match &self.target {
            Target::Socket(at) => at,
            Target::Nowhere(places) => {
                return Err(ClientError::Unreachable(format!(
                    "cannot reach the candor daemon: no socket at {}; {POINT_AT_IT}",
                    one_of(places)
                )));
            }
        };
        let socket = at.display();
        let stream = UnixStream::connect(at).await.map_err(|e| {
            ClientError::Unreachable(format!(
                "cannot reach the candor daemon at {socket}: {e}; {POINT_AT_IT}"
            ))
        })?;
        let stream = Quiet(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| {
                ClientError::Unreachable(format!("the daemon at {socket} did not speak HTTP: {e}"))
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "candor")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| ClientError::Other(format!("bad request: {e}")))?;
        sender.send_request(req).await.map_err(|e| {
            ClientError::Unreachable(format!("the daemon at {socket} closed the connection: {e}"))
        })
    }

    pub async fn call(&self, method: &str, path: &str) -> Result<Bytes, ClientError> {
        self.call_body(method, path, Bytes::new()).await
    }

    /// As `call`, with a JSON body.
    pub async fn call_body(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Bytes, ClientError> {
        self.call_head(method, path, body)
            .await
            .map(|(body, _)| body)
    }

    /// As `call_body`, with the answer's headers.
    pub async fn call_head(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Result<(Bytes, hyper::HeaderMap), ClientError> {
        let resp = self.send_body(method, path, body).await?;
        let status = resp.status().as_u16();
        let (head, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| ClientError::Other(format!("reading the daemon's answer: {e}")))?
            .to_bytes();
        if (200..300).contains(&status) {
            Ok((body, head.headers))
        } else {
            Err(api_error(status, &body))
        }
    }

    /// GET a server-sent-events stream; `on_event` gets each event's data until the stream ends.
    pub async fn follow(
        &self,
        path: &str,
        mut on_event: impl FnMut(&str),
    ) -> Result<(), ClientError> {
        let resp = self.send("GET", path).await?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        if !(200..300).contains(&status) {
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(api_error(status, &bytes));
        }
        let mut pending = String::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| {
                ClientError::Other(format!(
                    "the daemon ended this stream: {e} (it cuts off a follower that reads nothing for [daemon] send_timeout, 30s by default; run the command again to go on)"
                ))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = pending.find("\n\n") {
                let block: String = pending.drain(..end + 2).collect();
                for line in block.lines() {
                    if let Some(d) = line.strip_prefix("data:") {
                        on_event(d.trim_start());
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
    ) -> Result<T, ClientError> {
        let body = self.call(method, path).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Other(format!("unexpected answer from the daemon: {e}")))
    }
}

/// Percent-encode a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The client's end of the control socket, written with `send(MSG_NOSIGNAL)`, never `writev`
/// (which hyper uses on a plain stream and which takes no flags): the CLI keeps SIGPIPE at its
/// default (so `candor logs | head` ends quietly), and a write to a daemon that just closed the
/// connection (it is shutting down) must be an error, not a death by SIGPIPE.
struct Quiet(UnixStream);

impl tokio::io::AsyncRead for Quiet {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Quiet {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::os::fd::AsRawFd;
        let fd = self.0.as_raw_fd();
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            let sent = self.0.try_io(tokio::io::Interest::WRITABLE, || {
                // SAFETY: `buf` is valid for `buf.len()` bytes; `fd` is this stream's socket.
                let n =
                    unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match sent {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return std::task::Poll::Ready(other),
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_to_a_daemon_that_hung_up_is_an_error_not_a_sigpipe() {
        // As the CLI runs: SIGPIPE at its default (nextest gives each test its own process).
        // SAFETY: setting a signal's disposition; nothing else in this process relies on it.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let mut quiet = Quiet(ours);
        let mut result = Ok(());
        // Vectored, as hyper writes (writev takes no MSG_NOSIGNAL: a plain stream dies here).
        // The first write may land in the buffer; the next meets the closed peer.
        for _ in 0..3 {
            let head = std::io::IoSlice::new(b"GET /v1/daemon HTTP/1.1\r\n");
            let end = std::io::IoSlice::new(b"\r\n");
            result = quiet.write_vectored(&[head, end]).await.map(|_| ());
            if result.is_err() {
                break;
            }
        }
        let e = result.expect_err("a closed peer");
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
}
