//! The web listener: the dashboard page, the same API as the control socket, and /metrics,
//! over TCP. The control socket is guarded by file permissions; this listener by a login
//! token: every request carries it (the `candor_token` cookie the page sets, `?token=`, or
//! `Authorization: Bearer`), except `GET /metrics` with `metrics_public = true`. The token is
//! `<state_dir>/web.token` (0600, made the first time the listener opens), so it outlives daemon restarts and upgrades, and
//! only who can reach the control socket can ask for it (`candor web`). That token is an
//! operator's; `candor web --read-only` hands out a second one, `<state_dir>/web-read.token`
//! (made on first use), whose holder may only read. A token never makes its holder an admin.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use candor_api as api;

use crate::guard::Peer;
use crate::roles::Role;

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
    /// The read-only token: read when the listener opens if its file exists, made by the
    /// first `candor web --read-only`.
    read_token: std::sync::OnceLock<String>,
    read_token_path: std::path::PathBuf,
    /// Held while a token file is made, so two requests never make two.
    making: Mutex<()>,
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
            read_token: std::sync::OnceLock::new(),
            read_token_path: state_dir.join("web-read.token"),
            making: Mutex::new(()),
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
        self.open_for(addr, false).await
    }

    /// As [`Web::open`], answering with the read-only token when `read_only` (made if there is
    /// none yet).
    pub async fn open_for(
        self: &Arc<Self>,
        addr: SocketAddr,
        read_only: bool,
    ) -> io::Result<api::WebInfo> {
        if self.listening().is_none() {
            self.load_tokens()?;
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                // Opened meanwhile by another request: that one serves.
                Err(_) if self.listening().is_some() => return self.info(read_only),
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
        self.info(read_only)
    }

    /// Where the dashboard listens, once it does.
    pub fn listening(&self) -> Option<SocketAddr> {
        *self.listening.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Configured (`[daemon] web`) or open: an operator may then ask for its tokens.
    pub fn available(&self) -> bool {
        self.configured || self.listening().is_some()
    }

    /// Where the open listener is, with the operator token or the read-only one.
    fn info(&self, read_only: bool) -> io::Result<api::WebInfo> {
        let Some(listen) = self.listening() else {
            return Err(io::Error::other("the dashboard's listener is not open"));
        };
        let host = match listen.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let token = match read_only {
            true => self.read_token()?,
            false => self.token().to_string(),
        };
        Ok(api::WebInfo {
            url: format!("http://{host}:{}/?token={token}", listen.port()),
            listen: listen.to_string(),
            token,
            metrics_public: self
                .metrics_public
                .load(std::sync::atomic::Ordering::Relaxed),
            read_only,
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

    /// When the listener first opens: the operator token (made if there is none) and the
    /// read-only one if a `candor web --read-only` made it before.
    fn load_tokens(&self) -> io::Result<()> {
        let _making = self.making.lock().unwrap_or_else(|e| e.into_inner());
        if self.token.get().is_none() {
            let t = token(&self.token_path).map_err(|e| {
                io::Error::new(e.kind(), format!("{}: {e}", self.token_path.display()))
            })?;
            let _ = self.token.set(t);
        }
        if self.read_token.get().is_none() {
            if let Some(t) = existing_token(&self.read_token_path) {
                let _ = self.read_token.set(t);
            }
        }
        Ok(())
    }

    /// The read-only token, made (0600) the first time it is asked for.
    fn read_token(&self) -> io::Result<String> {
        let _making = self.making.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = self.read_token.get() {
            return Ok(t.clone());
        }
        let t = token(&self.read_token_path).map_err(|e| {
            io::Error::new(e.kind(), format!("{}: {e}", self.read_token_path.display()))
        })?;
        Ok(self.read_token.get_or_init(|| t).clone())
    }

    /// How many dashboard tokens exist (0, 1 or 2).
    pub fn tokens(&self) -> usize {
        usize::from(self.token.get().is_some()) + usize::from(self.read_token.get().is_some())
    }

    /// The role of the holder of `given`: operator for the dashboard's token, read-only for
    /// the read-only one, None for anything else. Compared in constant time; no token yet
    /// lets nothing in.
    pub fn role_of(&self, given: &str) -> Option<Role> {
        let operator = self.token.get().is_some_and(|t| same(t, given));
        let reader = self.read_token.get().is_some_and(|t| same(t, given));
        match (operator, reader) {
            (true, _) => Some(Role::Operator),
            (false, true) => Some(Role::ReadOnly),
            (false, false) => None,
        }
    }
}

/// Whether two tokens are equal, in time that does not depend on where they differ.
fn same(ours: &str, given: &str) -> bool {
    let (a, b) = (ours.as_bytes(), given.as_bytes());
    !a.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Let `req` through with its token's role: the role of its connection's [`Peer`], which
/// the API's layer (`roles::authorize`) and its event records read.
fn grant(mut req: Request, role: Role) -> Request {
    if let Some(ConnectInfo(peer)) = req.extensions_mut().get_mut::<ConnectInfo<Peer>>() {
        peer.role = role;
    }
    req
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
        let Some(role) = web.role_of(t) else {
            return refuse("the token in this URL is not the dashboard's");
        };
        // The page's address with the token: keep it in a cookie and show the page without
        // it in the address bar (or the browser's history).
        if path == "/" && req.method() == Method::GET {
            let cookie = format!("{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict");
            return (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, cookie),
                    (header::LOCATION, "/".to_string()),
                ],
            )
                .into_response();
        }
        return next.run(grant(req, role)).await;
    }
    match given_token(req.headers()).map(|t| web.role_of(&t)) {
        Some(Some(role)) => next.run(grant(req, role)).await,
        Some(None) => refuse("this token is not the dashboard's (it changes only if web.token in the state dir is removed)"),
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

/// The token in `path`, if there is a well-formed one.
fn existing_token(path: &Path) -> Option<String> {
    let t = std::fs::read_to_string(path).ok()?;
    let t = t.trim();
    (t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())).then(|| t.to_string())
}

/// The token in `path`, made (32 random bytes, hex, mode 0600) if there is none yet.
fn token(path: &Path) -> io::Result<String> {
    if let Some(t) = existing_token(path) {
        return Ok(t);
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
        assert_eq!(web.role_of(""), None);
        assert_eq!(web.tokens(), 0);
        assert!(
            !dir.path().join("web.token").exists(),
            "no file until the dashboard is used"
        );
    }

    #[test]
    fn each_token_gives_its_role_and_the_read_only_one_is_made_only_when_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let web = Web::new(dir.path(), None);
        web.load_tokens().unwrap();
        assert_eq!(web.tokens(), 1);
        assert!(!dir.path().join("web-read.token").exists());
        let operator = web.token().to_string();
        assert_eq!(web.role_of(&operator), Some(Role::Operator));
        let reader = web.read_token().unwrap();
        assert_ne!(reader, operator);
        assert_eq!(web.role_of(&reader), Some(Role::ReadOnly));
        assert_eq!(web.read_token().unwrap(), reader, "made once");
        assert_eq!(web.tokens(), 2);
        assert_eq!(web.role_of(&reader[..63]), None);
        assert_eq!(web.role_of(""), None);
        // A daemon started again knows both (the read-only one only if it was made).
        let again = Web::new(dir.path(), None);
        again.load_tokens().unwrap();
        assert_eq!(again.role_of(&reader), Some(Role::ReadOnly));
        assert_eq!(again.role_of(&operator), Some(Role::Operator));
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
