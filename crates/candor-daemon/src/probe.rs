//! Carrying out one probe or socket check, with a deadline and a one-line detail. Every kind
//! but `tcp` is request/response: a listener that accepts and then closes fails here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candor_core::health::{ProbeOutcome, SocketCheck};
use candor_keeper::{KeeperCommand, KeeperHandle, ProbeEnd};
use candor_spec::{format_duration, HttpTarget, ProbeCheck, ServiceSpec};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::oneshot;

use crate::gate::Gates;

/// Exec probes run by the keeper; their answers come back through the brain to the waiter.
#[derive(Default)]
pub struct ExecProbes {
    next: AtomicU64,
    waiters: Mutex<HashMap<u64, oneshot::Sender<(ProbeEnd, Duration)>>>,
    /// The umask of services that set none (the daemon's own, from before it set 0077).
    service_umask: u32,
}

impl ExecProbes {
    pub fn new(service_umask: u32) -> Self {
        Self {
            service_umask,
            ..Default::default()
        }
    }

    /// Route a `ProbeDone` to its waiter (a waiter that gave up is simply gone).
    pub fn done(&self, token: u64, end: ProbeEnd, elapsed: Duration) {
        if let Some(tx) = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&token)
        {
            let _ = tx.send((end, elapsed));
        }
    }

    /// Run a command through the keeper (the only reaper) as `spec`'s service would run
    /// (its user and groups, environment and workdir), output discarded, killed with its
    /// process group at `timeout`. A full probe queue is the daemon's own backlog, not the
    /// command's failure: it waits for room (5 ms, doubling to 100 ms).
    pub async fn run(
        &self,
        keeper: &KeeperHandle,
        argv: &[String],
        spec: &ServiceSpec,
        timeout: Duration,
    ) -> ProbeEnd {
        let run_as = candor_keeper::RunAs::of(spec, self.service_umask);
        self.run_cmd(
            keeper,
            argv,
            spec.env_pairs(),
            spec.workdir.clone(),
            run_as,
            timeout,
        )
        .await
    }

    /// `run` with everything given: the daemon's own checks, which belong to no service.
    pub async fn run_cmd(
        &self,
        keeper: &KeeperHandle,
        argv: &[String],
        env: Vec<(String, String)>,
        workdir: Option<std::path::PathBuf>,
        run_as: candor_keeper::RunAs,
        timeout: Duration,
    ) -> ProbeEnd {
        self.run_with_input(keeper, argv, env, workdir, run_as, timeout, None)
            .await
    }

    /// `run_cmd` with `stdin`: what the command reads on fd 0 (an exec hook's event).
    #[allow(clippy::too_many_arguments)]
    pub async fn run_with_input(
        &self,
        keeper: &KeeperHandle,
        argv: &[String],
        env: Vec<(String, String)>,
        workdir: Option<std::path::PathBuf>,
        run_as: candor_keeper::RunAs,
        timeout: Duration,
        stdin: Option<Vec<u8>>,
    ) -> ProbeEnd {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, tx);
        let cmd = || KeeperCommand::RunProbe {
            token,
            argv: argv.to_vec(),
            env: env.clone(),
            workdir: workdir.clone(),
            timeout,
            run_as: run_as.clone(),
            stdin: stdin.clone(),
        };
        let mut pause = Duration::from_millis(5);
        while let Err(e) = keeper.send(cmd()) {
            if e != candor_keeper::SendError::ProbesFull {
                self.waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&token);
                return ProbeEnd::CannotStart(format!("cannot run: {e}"));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        match rx.await {
            Ok((end, _)) => end,
            Err(_) => ProbeEnd::CannotStart("the keeper did not answer".into()),
        }
    }
}

/// How an I/O error reads in a probe detail.
fn io_detail(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::NotFound => "socket file missing".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        std::io::ErrorKind::UnexpectedEof => "connection closed before response".into(),
        _ => e.to_string(),
    }
}

/// A failed HTTP exchange in one line: a peer that hung up (FIN or RST, before or during the
/// request) reads "connection closed before response"; anything else names its root cause.
fn request_error(e: &hyper::Error) -> String {
    use std::error::Error as _;
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return "connection closed before response".into();
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source();
    let mut last = None;
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | BrokenPipe | UnexpectedEof | ConnectionAborted
            ) {
                return "connection closed before response".into();
            }
        }
        last = Some(c.to_string());
        cause = c.source();
    }
    format!("request failed: {}", last.unwrap_or_else(|| e.to_string()))
}

async fn http_over<S>(
    io: S,
    host: &str,
    path: &str,
    expect_status: Option<u16>,
    expect_body: Option<&str>,
) -> (bool, String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(x) => x,
        Err(e) => return (false, format!("HTTP handshake failed: {e}")),
    };
    let req = match hyper::Request::get(path)
        .header("host", host)
        .header("user-agent", "candor-probe")
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return (false, format!("bad probe request: {e}")),
    };
    // The connection is driven in this task, beside the request (no task of its own): if it
    // ends first (the server closed it), what it delivered is still taken from the request.
    let mut exchange = std::pin::pin!(exchange(sender, req, expect_status, expect_body));
    let mut conn = Box::pin(conn);
    tokio::select! {
        biased;
        result = exchange.as_mut() => result,
        _ = &mut conn => {
            drop(conn);
            exchange.await
        }
    }
}

async fn exchange(
    mut sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    req: hyper::Request<Empty<Bytes>>,
    expect_status: Option<u16>,
    expect_body: Option<&str>,
) -> (bool, String) {
    match sender.send_request(req).await {
        Err(e) => (false, request_error(&e)),
        Ok(resp) => {
            let code = resp.status().as_u16();
            let status_ok = match expect_status {
                Some(want) => code == want,
                None => (200..400).contains(&code),
            };
            if !status_ok {
                (false, format!("HTTP {code}"))
            } else if let Some(want) = expect_body {
                // Bodies are read up to 64 KiB.
                let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
                    .collect()
                    .await;
                match body.map(|b| String::from_utf8_lossy(&b.to_bytes()).contains(want)) {
                    Ok(true) => (true, format!("HTTP {code}")),
                    Ok(false) => (false, format!("HTTP {code} but the body lacks \"{want}\"")),
                    Err(_) => (false, format!("HTTP {code} but the body could not be read")),
                }
            } else {
                (true, format!("HTTP {code}"))
            }
        }
    }
}

async fn uds_exchange(socket: &Path, send: Option<&str>, expect: Option<&str>) -> (bool, String) {
    let mut s = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e) => return (false, io_detail(&e)),
    };
    if let Some(msg) = send {
        if let Err(e) = s.write_all(msg.as_bytes()).await {
            return (false, format!("send failed: {}", io_detail(&e)));
        }
    }
    let Some(want) = expect else {
        return (true, "connected".into());
    };
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 64 * 1024 {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&got).contains(want) {
                    return (true, format!("replied \"{want}\""));
                }
            }
            Err(e) => return (false, io_detail(&e)),
        }
    }
    if got.is_empty() {
        (false, "connection closed before response".into())
    } else {
        (false, format!("reply lacks \"{want}\""))
    }
}

/// What came of one probe of a service.
#[derive(Debug)]
pub enum Attempt {
    Done(ProbeOutcome),
    /// The daemon held it back: its target had no free slot within the probe's timeout.
    Held,
}

/// Run the service's probe once, within its timeout. Probes that reach a target (all but
/// exec, which the keeper queues) first take a slot of the target's gate, waiting at most
/// the timeout; the timeout of the probe proper counts from when it has the slot.
pub async fn run(
    spec: &ServiceSpec,
    keeper: &KeeperHandle,
    exec: &Arc<ExecProbes>,
    gates: &Arc<Gates>,
) -> Option<Attempt> {
    let probe = spec.probe.as_ref()?;
    let _slot = match probe.target() {
        Some(target) => match gates
            .acquire(&target, probe.max_inflight, probe.timeout)
            .await
        {
            Some(slot) => Some(slot),
            None => return Some(Attempt::Held),
        },
        None => None,
    };
    let started = Instant::now();
    let at = candor_keeper::clock::mono();
    let attempt = async {
        match &probe.check {
            ProbeCheck::Http {
                target,
                path,
                expect_status,
                expect_body,
            } => match target {
                HttpTarget::Tcp { host, port } => match TcpStream::connect((host.as_str(), *port))
                    .await
                {
                    Ok(s) => http_over(s, host, path, *expect_status, expect_body.as_deref()).await,
                    Err(e) => (false, io_detail(&e)),
                },
                HttpTarget::Unix(socket) => match UnixStream::connect(socket).await {
                    Ok(s) => {
                        http_over(s, "localhost", path, *expect_status, expect_body.as_deref())
                            .await
                    }
                    Err(e) => (false, io_detail(&e)),
                },
            },
            ProbeCheck::Tcp { host, port } => {
                match TcpStream::connect((host.as_str(), *port)).await {
                    Ok(_) => (true, "connected".into()),
                    Err(e) => (false, io_detail(&e)),
                }
            }
            ProbeCheck::Uds {
                socket,
                send,
                expect,
            } => uds_exchange(socket, send.as_deref(), expect.as_deref()).await,
            ProbeCheck::Exec { argv } => match exec.run(keeper, argv, spec, probe.timeout).await {
                ProbeEnd::Exited(st) if st.success() => (true, "exit 0".into()),
                ProbeEnd::Exited(st) => (false, st.describe()),
                ProbeEnd::TimedOut => (
                    false,
                    format!(
                        "timed out after {} (killed)",
                        format_duration(probe.timeout)
                    ),
                ),
                ProbeEnd::CannotStart(e) => (false, e),
            },
        }
    };
    // Exec probes are killed by the keeper at the timeout; give them a moment to report it.
    let limit = match probe.check {
        ProbeCheck::Exec { .. } => probe.timeout + Duration::from_secs(1),
        _ => probe.timeout,
    };
    let (ok, detail) = match tokio::time::timeout(limit, attempt).await {
        Ok(r) => r,
        Err(_) => (
            false,
            format!("timed out after {}", format_duration(probe.timeout)),
        ),
    };
    Some(Attempt::Done(ProbeOutcome {
        ok,
        detail,
        latency: started.elapsed(),
        at,
    }))
}

/// Check each declared socket: the file is there (and a socket), and something accepts.
pub async fn check_sockets(paths: &[std::path::PathBuf], timeout: Duration) -> Vec<SocketCheck> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        use std::os::unix::fs::FileTypeExt;
        let exists = tokio::fs::symlink_metadata(path)
            .await
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false);
        let accepts = exists
            && matches!(
                tokio::time::timeout(timeout, UnixStream::connect(path)).await,
                Ok(Ok(_))
            );
        out.push(SocketCheck {
            path: path.clone(),
            exists,
            accepts,
            at: candor_keeper::clock::mono(),
        });
    }
    out
}
