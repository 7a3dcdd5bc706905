//! The web listener: the dashboard page, the same API as the control socket, and /metrics,
//! over TCP. The control socket is guarded by file permissions; this listener by a login
//! token: every request carries it (the `candor_token` cookie the page sets, `?token=`, or
//! `Authorization: Bearer`), except `GET /metrics` with `metrics_public = true`. The token is
//! `<state_dir>/web.token` (0600, made the first time the listener opens), so it outlives daemon restarts and upgrades, and
//! only who can reach the control socket can ask for it (`candor web`). That token is an
//! operator's; `candor web --read-only` hands out a second one, `<state_dir>/web-read.token`
//! (made on first use), whose holder may only read. A token never makes its holder an admin.
//!
//! The front door ([`front_door`], [`change_needs_header`]): a browser sends the cookie with
//! any request to this host, whichever page (on whichever port) makes it, so the cookie alone
//! lets a request only read. A request that changes anything (any method but GET and HEAD)
//! needs the token in a header only a script holding it can set (`Authorization: Bearer T` or
//! `X-Candor-Token: T`; the page has it from a `<meta>` tag rendered into it for a request
//! that was let in, which no other origin can read: no CORS header is ever sent). Every
//! request needs a `Host` that names this dashboard (its address, an IP literal or `localhost`
//! with its port, or a name in `[daemon] web.hosts`: against DNS rebinding), an `Origin`, if
//! it has one, equal to the dashboard's own, and a `Sec-Fetch-Site` (if the browser sends one)
//! of `same-origin` for a change, or for a read other than a top-level navigation.

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

use crate::peer::{Peer, Role};

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
    /// `[daemon] web.hosts`: names (lowercase) the `Host` header may use (a reload applies).
    hosts: Mutex<Vec<String>>,
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
        let metrics_public = spec.as_ref().is_some_and(|w| w.metrics_public);
        let hosts = spec.as_ref().map(|w| w.hosts.clone()).unwrap_or_default();
        let listen = match &spec {
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
            hosts: Mutex::new(hosts),
            listening: Mutex::new(None),
            api: Mutex::new(None),
            stop: tokio::sync::watch::channel(false).0,
            server: Mutex::new(None),
            guard: std::sync::OnceLock::new(),
        }
    }

    /// A reloaded `[daemon] web`: `metrics_public` and `hosts` apply now; a new `listen` at
    /// the next start (a listener that is open stays where it is). What to tell the caller, if
    /// anything.
    pub fn reconfigure(&self, spec: Option<candor_spec::WebSpec>) -> Option<String> {
        let public = spec.as_ref().is_some_and(|w| w.metrics_public);
        self.metrics_public
            .store(public, std::sync::atomic::Ordering::Relaxed);
        *self.hosts.lock().unwrap_or_else(|e| e.into_inner()) =
            spec.as_ref().map(|w| w.hosts.clone()).unwrap_or_default();
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
                let task = tokio::spawn(crate::guard::serve(listener, app, async move {
                    let _ = stop.wait_for(|s| *s).await;
                }));
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
            .route("/", get(index_page))
            .route(
                "/app.js",
                get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
            )
            .route(
                "/app.css",
                get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
            )
            .with_state(self.clone());
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

/// The page, with the token in it for its script to put in the header of its changes. Only
/// served to a request that was let in (the cookie or the token), never cached, never framed,
/// and never readable by another origin (no CORS header is ever sent).
///
/// The token rendered is the one the request came in with (a valid one: `auth` let it in), so
/// a read-only login gets the read-only token, never the operator's.
async fn index_page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let token = given_token(&headers).filter(|t| web.role_of(t).is_some());
    let role = token.as_deref().and_then(|t| web.role_of(t));
    let body = page(token.as_deref(), role);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// Where the page's `<meta name="candor-token">` gets the token.
const TOKEN_SLOT: &str = "%CANDOR_TOKEN%";
/// Where the page's `<meta name="candor-role">` gets its token's role (the page offers only
/// what that role may do; the API decides).
const ROLE_SLOT: &str = "%CANDOR_ROLE%";

/// The page for a login with `token` and its `role`.
fn page(token: Option<&str>, role: Option<Role>) -> String {
    INDEX
        .replace(TOKEN_SLOT, token.unwrap_or(""))
        .replace(ROLE_SLOT, role.map_or("", Role::as_str))
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
    // A header wins: it is what a change is authorized by, so it also says the role.
    header_token(headers).map(str::to_string).or(cookie)
}

/// The token in a header a page cannot have a browser send for it: `Authorization: Bearer T`
/// or `X-Candor-Token: T` (a cross-origin page could set them only through CORS, which this
/// listener never allows).
pub(crate) fn header_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    bearer.or_else(|| {
        headers
            .get("x-candor-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    })
}

/// GET and HEAD only read; every other method may change something.
fn changes(method: &Method) -> bool {
    method != Method::GET && method != Method::HEAD
}

/// What the dashboard refuses whatever token a request carries: a `Host` that is not this
/// dashboard (DNS rebinding), an `Origin` that is not its own, and a browser's
/// `Sec-Fetch-Site` that says another site or origin made a request that is not a top-level
/// navigation (or any change). A script (curl) sends neither Origin nor Sec-Fetch-*.
pub(crate) fn front_door(
    headers: &HeaderMap,
    method: &Method,
    listen: SocketAddr,
    names: &[String],
) -> Result<(), (u16, String)> {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return Err((
            421,
            "this request has no Host header; the dashboard answers only requests that name it (an HTTP/1.1 client sends one)".into(),
        ));
    };
    if !host_allowed(host, listen.port(), names) {
        let name = split_host(host).map_or(host, |(n, _)| n);
        return Err((
            421,
            format!(
                "the Host header `{host}` does not name this dashboard (it answers to {listen}, an IP address or localhost with port {}); to reach it by that name, add \"{name}\" to [daemon] web.hosts",
                listen.port()
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !origin_allowed(origin, host) {
            return Err((
                403,
                format!(
                    "a request from the page at `{origin}` is refused: only the dashboard's own page (http://{host}) may send one with an Origin"
                ),
            ));
        }
    }
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let navigation =
        headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok()) == Some("navigate");
    match site {
        None | Some("same-origin") => Ok(()),
        Some(other) if changes(method) => Err((
            403,
            format!("the browser says this change comes from another page (Sec-Fetch-Site: {other}); only the dashboard's own page may make changes"),
        )),
        Some("none") => Ok(()),
        Some(_) if navigation => Ok(()),
        Some(other) => Err((
            403,
            format!("the browser says another page made this request (Sec-Fetch-Site: {other}); open the dashboard itself instead"),
        )),
    }
}

/// `name[:port]` or `[v6][:port]` of a Host header.
pub(crate) fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let end = rest.find(']')?;
        (&rest[..end], rest[end + 1..].strip_prefix(':'))
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
        None => None,
    };
    (!name.is_empty()).then_some((name, port))
}

/// Whether a Host header names the dashboard listening on `port`: an IP address or
/// `localhost` with that port (none: 80), or a name of `[daemon] web.hosts` (any port, for a
/// proxy in front). A name that merely resolves to this host (DNS rebinding) does not.
pub(crate) fn host_allowed(host: &str, port: u16, names: &[String]) -> bool {
    let bracketed = host.starts_with('[');
    let Some((name, given)) = split_host(host) else {
        return false;
    };
    let ip = if bracketed {
        name.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        name.parse::<std::net::Ipv4Addr>().is_ok()
    };
    if (ip || name.eq_ignore_ascii_case("localhost")) && given.unwrap_or(80) == port {
        return true;
    }
    !bracketed && names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Whether an Origin is the dashboard's own, as the browser that loaded it from `host` (a
/// validated Host header) sees it: `http://host`, or `https://host` behind a TLS proxy.
pub(crate) fn origin_allowed(origin: &str, host: &str) -> bool {
    let o = origin.as_bytes();
    ["http://", "https://"].iter().any(|scheme| {
        let n = scheme.len();
        o.len() == n + host.len()
            && o[..n].eq_ignore_ascii_case(scheme.as_bytes())
            && o[n..].eq_ignore_ascii_case(host.as_bytes())
    })
}

/// A change (any method but GET and HEAD) needs the token in a header: the cookie (or the
/// token in the URL) alone is what a form or a no-cors fetch from another page on this host
/// would carry. `Ok` when `allows` takes the header's token.
pub(crate) fn change_needs_header(
    headers: &HeaderMap,
    method: &Method,
    token_in_url: bool,
    allows: impl Fn(&str) -> bool,
) -> Result<(), (u16, String)> {
    if !changes(method) {
        return Ok(());
    }
    match header_token(headers) {
        Some(t) if allows(t) => Ok(()),
        Some(_) => Err((401, "the token in this request's header is not the dashboard's (it changes only if web.token in the state dir is removed)".into())),
        None if token_in_url || given_token(headers).is_some() => Err((
            403,
            "a change through the dashboard needs the token in a header (`Authorization: Bearer TOKEN` or `X-Candor-Token: TOKEN`), not the cookie alone: reload the dashboard's page, or send the header".into(),
        )),
        None => Err((401, "this needs the dashboard's login token".into())),
    }
}

/// Every request goes through the front door; a change needs the token in a header; then every
/// request needs the token, but a public /metrics.
async fn auth(State(web): State<Arc<Web>>, req: Request, next: Next) -> Response {
    let listen = web.listening().unwrap_or(web.listen);
    let door = {
        let names = web.hosts.lock().unwrap_or_else(|e| e.into_inner());
        front_door(req.headers(), req.method(), listen, &names)
    };
    let door = door.and_then(|()| {
        let in_url = query_token(&req).is_some();
        change_needs_header(req.headers(), req.method(), in_url, |t| {
            web.role_of(t).is_some()
        })
    });
    match door {
        Ok(()) => {}
        Err((401, why)) => return refuse(&why),
        Err((status, why)) => return crate::api_error::ApiError::new(status, why).into_response(),
    }
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
                    (header::CACHE_CONTROL, "no-store".to_string()),
                    (header::REFERRER_POLICY, "no-referrer".to_string()),
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
    crate::api_error::ApiError::new(
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
    fn the_page_carries_its_login_token_and_that_token_role() {
        let operator = page(Some("abc"), Some(Role::Operator));
        assert!(operator.contains(r#"<meta name="candor-token" content="abc">"#));
        assert!(operator.contains(r#"<meta name="candor-role" content="operator">"#));
        let reader = page(Some("def"), Some(Role::ReadOnly));
        assert!(reader.contains(r#"<meta name="candor-role" content="read-only">"#));
        let none = page(None, None);
        assert!(none.contains(r#"<meta name="candor-role" content="">"#));
        assert!(!none.contains(TOKEN_SLOT) && !none.contains(ROLE_SLOT));
        // The jobs panel is on the page, for its script to fill.
        assert!(operator.contains(r#"<tbody id="job-rows">"#));
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
