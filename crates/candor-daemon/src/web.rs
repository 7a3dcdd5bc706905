//! The web listener: the dashboard page, the same API as the control socket, and /metrics,
//! over TCP. The control socket is guarded by file permissions; this listener by a login
//! token: every request carries it (the `candor_token` cookie the page sets, `?token=`, or
//! `Authorization: Bearer`), except `GET /metrics` with `metrics_public = true`. The token is
//! `<state_dir>/web.token` (0600, made the first time the listener opens), so it outlives daemon restarts and upgrades, and
//! only who can reach the control socket can ask for it (`candor web`).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use candor_api as api;

use crate::guard::Peer;

const COOKIE: &str = "candor_token";

/// The page and its two assets, compiled in: no CDN, no build step.
const INDEX: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");

pub struct Web {
    /// Read or made when the listener first opens (a daemon without a dashboard never
    /// touches it).
    token: std::sync::OnceLock<String>,
    token_path: std::path::PathBuf,
    /// Where `candor web` opens it: `[daemon] web.listen`, or loopback's default port.
    pub listen: SocketAddr,
    /// `[daemon] web` was in the config at start.
    configured: bool,
    metrics_public: std::sync::atomic::AtomicBool,
    /// Where it listens, once it does.
    listening: Mutex<Option<SocketAddr>>,
    /// The API's router (set once it is built; the API's `/v1/web` needs this handle first).
    /// Taken at shutdown: it holds the brain's request queue and the store.
    api: Mutex<Option<Router>>,
    stop: tokio::sync::watch::Sender<bool>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The API's guard (fd-limit refusal, accept backoff, `send_timeout`), shared with the
    /// control socket; set with the API.
    guard: std::sync::OnceLock<Arc<crate::guard::GuardCounters>>,
}

impl Web {
    pub fn new(state_dir: &Path, spec: Option<candor_spec::WebSpec>) -> Web {
        let metrics_public = spec.is_some_and(|w| w.metrics_public);
        let listen = match spec {
            Some(w) => w.listen,
            None => candor_spec::DEFAULT_WEB_LISTEN
                .parse()
                .expect("a socket address"),
        };
        Web {
            token: std::sync::OnceLock::new(),
            token_path: state_dir.join("web.token"),
            listen,
            configured: spec.is_some(),
            metrics_public: metrics_public.into(),
            listening: Mutex::new(None),
            api: Mutex::new(None),
            stop: tokio::sync::watch::channel(false).0,
            server: Mutex::new(None),
            guard: std::sync::OnceLock::new(),
        }
    }

    /// A reloaded `[daemon] web`: `metrics_public` applies now; a new `listen` at the next
    /// start (a listener that is open stays where it is). What to tell the caller, if anything.
    pub fn reconfigure(&self, spec: Option<candor_spec::WebSpec>) -> Option<String> {
        let public = spec.is_some_and(|w| w.metrics_public);
        self.metrics_public
            .store(public, std::sync::atomic::Ordering::Relaxed);
        match (spec, self.listening()) {
            (Some(w), Some(at)) if w.listen != self.listen => Some(format!(
                "[daemon] web.listen changed to {}; the dashboard stays on {at} until the daemon restarts",
                w.listen
            )),
            (None, Some(at)) if self.configured => Some(format!(
                "[daemon] web was removed; the dashboard stays on {at} until the daemon restarts"
            )),
            _ => None,
        }
    }

    pub fn set_guard(&self, counters: Arc<crate::guard::GuardCounters>) {
        let _ = self.guard.set(counters);
    }

    pub fn set_api(&self, router: Router) {
        *self.api.lock().unwrap_or_else(|e| e.into_inner()) = Some(router);
    }

    /// At shutdown: no new listener, the open one ends (its streams end with the brain), and
    /// the API's state it held is let go. The server's task, to wait for.
    pub fn close(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.api.lock().unwrap_or_else(|e| e.into_inner()).take();
        let _ = self.stop.send(true);
        self.server.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Listen on `addr` (or return where it already listens) and serve until the daemon ends.
    pub async fn open(self: &Arc<Self>, addr: SocketAddr) -> io::Result<api::WebInfo> {
        if self.listening().is_none() {
            if self.token.get().is_none() {
                let t = token(&self.token_path).map_err(|e| {
                    io::Error::new(e.kind(), format!("{}: {e}", self.token_path.display()))
                })?;
                let _ = self.token.set(t);
            }
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                // Opened meanwhile by another request: that one serves.
                Err(_) if self.listening().is_some() => return self.info(),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot listen on {addr} for the dashboard: {e}"),
                    ))
                }
            };
            let local = listener.local_addr()?;
            let mut slot = self.listening.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                let Some(app) = self.router() else {
                    return Err(io::Error::other("the daemon is shutting down"));
                };
                *slot = Some(local);
                let mut stop = self.stop.subscribe();
                let counters = self.guard.get().cloned().unwrap_or_default();
                let listener = crate::guard::GuardedListener::new(listener, counters);
                let task = tokio::spawn(async move {
                    let app = app.into_make_service_with_connect_info::<Peer>();
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                        .await;
                });
                *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
            }
        }
        self.info()
    }

    fn listening(&self) -> Option<SocketAddr> {
        *self.listening.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the open listener is, with the token.
    fn info(&self) -> io::Result<api::WebInfo> {
        let Some(listen) = self.listening() else {
            return Err(io::Error::other("the dashboard's listener is not open"));
        };
        let host = match listen.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        Ok(api::WebInfo {
            url: format!("http://{host}:{}/?token={}", listen.port(), self.token()),
            listen: listen.to_string(),
            token: self.token().to_string(),
            metrics_public: self
                .metrics_public
                .load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    fn router(self: &Arc<Self>) -> Option<Router> {
        let page = Router::new()
            .route(
                "/",
                get(|| async { asset("text/html; charset=utf-8", INDEX) }),
            )
            .route(
                "/app.js",
                get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
            )
            .route(
                "/app.css",
                get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
            );
        let api = self.api.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        Some(
            page.merge(api)
                .layer(axum::middleware::from_fn_with_state(self.clone(), auth)),
        )
    }

    fn token(&self) -> &str {
        self.token.get().map_or("", String::as_str)
    }

    fn allows(&self, given: &str) -> bool {
        // Compared in constant time; no token yet lets nothing in.
        let (a, b) = (self.token().as_bytes(), given.as_bytes());
        !a.is_empty()
            && a.len() == b.len()
            && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

fn query_token(req: &Request) -> Option<&str> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
}

fn given_token(headers: &HeaderMap) -> Option<String> {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        });
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    cookie.or(bearer)
}

/// Every request needs the token, but a public /metrics.
async fn auth(State(web): State<Arc<Web>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path == "/metrics"
        && req.method() == Method::GET
        && web
            .metrics_public
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        return next.run(req).await;
    }
    if let Some(t) = query_token(&req) {
        if !web.allows(t) {
            return refuse("the token in this URL is not the dashboard's");
        }
        // The page's address with the token: keep it in a cookie and show the page without
        // it in the address bar (or the browser's history).
        if path == "/" && req.method() == Method::GET {
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                web.token()
            );
            return (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, cookie),
                    (header::LOCATION, "/".to_string()),
                ],
            )
                .into_response();
        }
        return next.run(req).await;
    }
    match given_token(req.headers()) {
        Some(t) if web.allows(&t) => next.run(req).await,
        Some(_) => refuse("this token is not the dashboard's (it changes only if web.token in the state dir is removed)"),
        None => refuse("this needs the dashboard's login token"),
    }
}

fn refuse(why: &str) -> Response {
    crate::shell::ApiError::new(
        401,
        format!("{why}: run `candor web` on the daemon's host for the URL with the token"),
    )
    .into_response()
}

/// The token in `path`, made (32 random bytes, hex, mode 0600) if there is none yet.
fn token(path: &Path) -> io::Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(t.to_string());
        }
    }
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    let t: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("token.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(t.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_the_listener_opens_there_is_no_token_and_nothing_is_let_in() {
        let dir = tempfile::tempdir().unwrap();
        let web = Web::new(dir.path(), None);
        assert!(!web.allows(""));
        assert!(
            !dir.path().join("web.token").exists(),
            "no file until the dashboard is used"
        );
    }

    #[test]
    fn the_token_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.token");
        let t = token(&p).unwrap();
        assert_eq!(t.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(token(&p).unwrap(), t, "kept across daemon starts");
        std::fs::write(&p, "garbage").unwrap();
        assert_ne!(token(&p).unwrap(), t, "a damaged one is made again");
    }
}
