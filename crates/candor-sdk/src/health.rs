//! A tiny `/health` responder that reports the service's own checks.
//!
//! A probe that only connects proves the kernel accepts connections; one that asks
//! `GET /health` of a responder that runs the service's checks proves the service can do
//! its work. Pair it with `probe = { http = "http://127.0.0.1:9000/health" }` (or over a Unix
//! socket). HTTP/1.1, one request per connection; `200` with a JSON body when every check
//! passes, `503` naming the failing ones otherwise.
//!
//! ```
//! use candor_sdk::health::Health;
//! use std::io::{Read, Write};
//!
//! let health = Health::new();
//! health.check("disk", || Ok(()));
//! health.check("queue", || Err("4 000 jobs waiting, none taken for 30s".into()));
//! let server = health.serve_tcp("127.0.0.1:0").unwrap();
//!
//! let mut c = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
//! c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
//! let mut answer = String::new();
//! c.read_to_string(&mut answer).unwrap();
//! assert!(answer.starts_with("HTTP/1.1 503 "));
//! assert!(answer.contains(r#""queue":{"ok":false,"error":"4 000 jobs waiting, none taken for 30s"}"#));
//! ```

use crate::accept::AcceptLoop;
use crate::listen::Listener;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

type CheckFn = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The service's checks, and the responder that runs them. Clones share the checks.
///
/// ```
/// let health = candor_sdk::health::Health::new();
/// health.check("cache", || Ok(()));
/// let also = health.clone(); // the same checks
/// assert!(also.report().ok());
/// ```
#[derive(Clone)]
pub struct Health {
    checks: Arc<RwLock<Vec<(String, CheckFn)>>>,
    path: Arc<str>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .checks
            .read()
            .map(|c| c.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        f.debug_struct("Health")
            .field("path", &self.path)
            .field("checks", &names)
            .finish()
    }
}

/// The outcome of every check, in the order they were added.
///
/// ```
/// let health = candor_sdk::health::Health::new();
/// health.check("db", || Err("no connection".into()));
/// let report = health.report();
/// assert!(!report.ok());
/// assert_eq!(report.checks[0].1, Err("no connection".to_string()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Each check's name and outcome.
    pub checks: Vec<(String, Result<(), String>)>,
}

impl Report {
    /// Whether every check passed.
    ///
    /// ```
    /// let h = candor_sdk::health::Health::new();
    /// assert!(h.report().ok(), "no checks: healthy");
    /// ```
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }

    /// `{"ok":…,"checks":{"NAME":{"ok":…,"error":"…"}}}`.
    ///
    /// ```
    /// let h = candor_sdk::health::Health::new();
    /// h.check("db", || Ok(()));
    /// assert_eq!(h.report().to_json(), r#"{"ok":true,"checks":{"db":{"ok":true}}}"#);
    /// ```
    pub fn to_json(&self) -> String {
        let mut s = format!("{{\"ok\":{},\"checks\":{{", self.ok());
        for (i, (name, r)) in self.checks.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&json_string(name));
            match r {
                Ok(()) => s.push_str(":{\"ok\":true}"),
                Err(e) => {
                    let _ = write!(s, ":{{\"ok\":false,\"error\":{}}}", json_string(e));
                }
            }
        }
        s.push_str("}}");
        s
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

impl Health {
    /// No checks yet, answering on `/health`.
    ///
    /// ```
    /// let h = candor_sdk::health::Health::new();
    /// # let _ = h;
    /// ```
    pub fn new() -> Health {
        Health {
            checks: Arc::new(RwLock::new(Vec::new())),
            path: Arc::from("/health"),
        }
    }

    /// Answer on `path` instead of `/health`.
    ///
    /// ```
    /// let h = candor_sdk::health::Health::new().at("/healthz");
    /// assert!(h.respond(b"GET /healthz HTTP/1.1\r\n\r\n").starts_with(b"HTTP/1.1 200"));
    /// ```
    pub fn at(mut self, path: &str) -> Health {
        self.path = Arc::from(path);
        self
    }

    /// Add a check: `Ok(())` when that part works, `Err(why)` when not. Checks run on every
    /// request, in the responder's thread: keep them quick (read a flag, an age, a counter).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// let connected = Arc::new(AtomicBool::new(true));
    /// let c = connected.clone();
    /// let h = candor_sdk::health::Health::new();
    /// h.check("db", move || {
    ///     if c.load(Ordering::Relaxed) { Ok(()) } else { Err("not connected".into()) }
    /// });
    /// ```
    pub fn check(
        &self,
        name: &str,
        f: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> &Health {
        self.checks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), Box::new(f)));
        self
    }

    /// Run every check now. A check that panics counts as failed, with its message.
    ///
    /// ```
    /// let h = candor_sdk::health::Health::new();
    /// h.check("broken", || panic!("bug"));
    /// assert!(!h.report().ok());
    /// ```
    pub fn report(&self) -> Report {
        let checks = self.checks.read().unwrap_or_else(|e| e.into_inner());
        Report {
            checks: checks
                .iter()
                .map(|(name, f)| {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                        .unwrap_or_else(|p| {
                            let msg = p
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| p.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "a panic".into());
                            Err(format!("the check panicked: {msg}"))
                        });
                    (name.clone(), r)
                })
                .collect(),
        }
    }

    /// The whole HTTP response to a request head (for serving it from your own server).
    ///
    /// ```
    /// let h = candor_sdk::health::Health::new();
    /// let r = h.respond(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    /// assert!(r.starts_with(b"HTTP/1.1 200 OK\r\n"));
    /// assert!(h.respond(b"GET /other HTTP/1.1\r\n\r\n").starts_with(b"HTTP/1.1 404"));
    /// ```
    pub fn respond(&self, request: &[u8]) -> Vec<u8> {
        let line = request
            .split(|&b| b == b'\n')
            .next()
            .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
            .unwrap_or_default();
        let mut parts = line.split(' ');
        let (method, target, version) = (parts.next(), parts.next(), parts.next());
        let (Some(method), Some(target), Some(v)) = (method, target, version) else {
            return answer("400 Bad Request", "text/plain", "bad request\n", true);
        };
        if !v.starts_with("HTTP/1.") {
            return answer("400 Bad Request", "text/plain", "bad request\n", true);
        }
        let path = target.split('?').next().unwrap_or("");
        if path != &*self.path {
            return answer("404 Not Found", "text/plain", "not found\n", true);
        }
        let head = match method {
            "GET" => false,
            "HEAD" => true,
            _ => {
                let mut r = answer(
                    "405 Method Not Allowed",
                    "text/plain",
                    "GET or HEAD\n",
                    true,
                );
                let at = r.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
                r.splice(at..at, b"Allow: GET, HEAD\r\n".iter().copied());
                return r;
            }
        };
        let report = self.report();
        let status = if report.ok() {
            "200 OK"
        } else {
            "503 Service Unavailable"
        };
        let mut body = report.to_json();
        body.push('\n');
        answer(status, "application/json", &body, !head)
    }

    /// Answer on a TCP address from a thread of its own.
    ///
    /// ```
    /// let server = candor_sdk::health::Health::new().serve_tcp("127.0.0.1:0").unwrap();
    /// println!("probe http://{}/health", server.local_addr().unwrap());
    /// ```
    pub fn serve_tcp(&self, addr: &str) -> io::Result<Server> {
        self.serve(Listener::Tcp(TcpListener::bind(addr)?))
    }

    /// Answer on a Unix socket path (replaced if a stale one is there) from a thread of its
    /// own.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("health.sock");
    /// let _server = candor_sdk::health::Health::new().serve_unix(&path).unwrap();
    /// assert!(path.exists());
    /// ```
    pub fn serve_unix(&self, path: &Path) -> io::Result<Server> {
        if std::os::unix::net::UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
        self.serve(Listener::Unix(UnixListener::bind(path)?))
    }

    /// Answer on a listener (an activated one, see [`crate::listen`]) from a thread of its
    /// own. Requests are answered one at a time; a client gets 2 s to send its request.
    ///
    /// ```
    /// use candor_sdk::{health::Health, listen::Listener};
    /// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let _server = Health::new().serve(Listener::Tcp(l)).unwrap();
    /// ```
    pub fn serve(&self, listener: Listener) -> io::Result<Server> {
        let local = match &listener {
            Listener::Tcp(l) => l.local_addr().map(|a| a.to_string()),
            Listener::Unix(l) => l.local_addr().map(|a| {
                a.as_pathname()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            }),
        };
        let me = self.clone();
        std::thread::Builder::new()
            .name("candor-health".into())
            .spawn(move || {
                let mut accept = AcceptLoop::new("health");
                loop {
                    let served = match &listener {
                        Listener::Tcp(l) => accept.accept(l).map(|(c, _)| me.serve_one(c)),
                        Listener::Unix(l) => accept.accept(l).map(|(c, _)| me.serve_one(c)),
                    };
                    if let Err(e) = served {
                        crate::log(&format!("health responder stopped: {e}"));
                        return;
                    }
                }
            })?;
        Ok(Server { local })
    }

    fn serve_one<S: Read + Write + Timeouts>(&self, mut conn: S) {
        let _ = conn.timeouts(CLIENT_TIMEOUT);
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        if buf.is_empty() {
            return;
        }
        let _ = conn.write_all(&self.respond(&buf));
    }
}

fn answer(status: &str, kind: &str, body: &str, with_body: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

trait Timeouts {
    fn timeouts(&self, d: Duration) -> io::Result<()>;
}

impl Timeouts for std::net::TcpStream {
    fn timeouts(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

impl Timeouts for std::os::unix::net::UnixStream {
    fn timeouts(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

/// A running responder.
///
/// ```
/// let server = candor_sdk::health::Health::new().serve_tcp("127.0.0.1:0").unwrap();
/// println!("GET http://{}/health", server.local_addr().unwrap());
/// ```
#[derive(Debug)]
pub struct Server {
    local: io::Result<String>,
}

impl Server {
    /// Where it listens: `IP:PORT`, or the socket's path.
    ///
    /// ```
    /// let s = candor_sdk::health::Health::new().serve_tcp("127.0.0.1:0").unwrap();
    /// assert!(s.local_addr().unwrap().starts_with("127.0.0.1:"));
    /// ```
    pub fn local_addr(&self) -> io::Result<String> {
        match &self.local {
            Ok(a) => Ok(a.clone()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn get(path: &Path, req: &str) -> String {
        let mut c = std::os::unix::net::UnixStream::connect(path).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn the_answer_follows_the_checks_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sock");
        let up = Arc::new(AtomicBool::new(true));
        let h = Health::new();
        let u = up.clone();
        h.check("db", move || {
            if u.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("connection \"lost\"".into())
            }
        });
        h.serve_unix(&path).unwrap();
        let ok = get(&path, "GET /health HTTP/1.1\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.ends_with("{\"ok\":true,\"checks\":{\"db\":{\"ok\":true}}}\n"),
            "{ok}"
        );
        up.store(false, Ordering::Relaxed);
        let bad = get(&path, "GET /health?verbose=1 HTTP/1.1\r\n\r\n");
        assert!(bad.starts_with("HTTP/1.1 503 "), "{bad}");
        assert!(
            bad.contains(r#"{"ok":false,"error":"connection \"lost\""}"#),
            "{bad}"
        );
        let head = get(&path, "HEAD /health HTTP/1.1\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
        let post = get(&path, "POST /health HTTP/1.1\r\n\r\n");
        assert!(
            post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"),
            "{post}"
        );
        assert!(get(&path, "nonsense\r\n\r\n").starts_with("HTTP/1.1 400 "));
    }

    #[test]
    fn a_client_that_sends_nothing_does_not_stop_the_responder_for_long() {
        let h = Health::new();
        let server = h.serve_tcp("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let _silent = std::net::TcpStream::connect(&addr).unwrap();
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        assert!(s.starts_with("HTTP/1.1 200"), "{s}");
    }
}
