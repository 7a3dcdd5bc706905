//! Who may do what through the API. Every request has a [`Role`]: on the control socket the
//! daemon's own user and root are admins and anyone else (let in by `socket_group`'s 0660) an
//! operator; on the dashboard, the role of the token presented (operator or read-only, never
//! admin). Each route names the least it needs ([`Need`], in the table `http::ROUTES`), and one
//! layer ([`authorize`]) refuses the rest with a 403 that names the role needed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;
use crate::peer::{Peer, Role};

/// The least a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Role(Role),
    /// `POST /v1/shutdown`: admin; an operator too with `[daemon] operators_may_shutdown`.
    Shutdown,
    /// `POST /v1/web`: admin; an operator too when the dashboard is configured (`[daemon]
    /// web`) or already open — it then only hands out a token of what the admin set up.
    Dashboard,
}

/// The HTTP methods the API routes by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
}

impl Verb {
    fn of(m: &axum::http::Method) -> Option<Verb> {
        match *m {
            axum::http::Method::GET | axum::http::Method::HEAD => Some(Verb::Get),
            axum::http::Method::POST => Some(Verb::Post),
            _ => None,
        }
    }
}

/// One API route: where, and the least it needs.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub verb: Verb,
    pub path: &'static str,
    pub need: Need,
    /// What it does, in refusals ("upgrade"); `{action} {name}` are filled in from the path.
    pub what: &'static str,
}

/// What the daemon's config says about operators and the dashboard, now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub operators_may_shutdown: bool,
    /// The dashboard is configured (`[daemon] web`) or open.
    pub dashboard_available: bool,
}

/// Whether `role` may do what `need` says under `policy`; if not, the role it would take.
pub fn allowed(need: Need, role: Role, policy: Policy) -> Result<(), Role> {
    let least = match need {
        Need::Role(r) => r,
        Need::Shutdown if policy.operators_may_shutdown => Role::Operator,
        Need::Shutdown => Role::Admin,
        Need::Dashboard if policy.dashboard_available => Role::Operator,
        Need::Dashboard => Role::Admin,
    };
    if role >= least {
        Ok(())
    } else {
        Err(least)
    }
}

/// The daemon's side of roles: who its admins and operators are, and what they may do now.
pub struct Access {
    /// The daemon's effective uid (its control socket's owner).
    pub daemon_uid: u32,
    /// `[daemon] socket_group` (name, gid) as the socket was made.
    pub socket_group: Option<(String, u32)>,
    operators_may_shutdown: AtomicBool,
    pub web: Arc<crate::web::Web>,
}

impl Access {
    pub fn new(
        socket_group: Option<(String, u32)>,
        operators_may_shutdown: bool,
        web: Arc<crate::web::Web>,
    ) -> Access {
        Access {
            daemon_uid: rustix::process::geteuid().as_raw(),
            socket_group,
            operators_may_shutdown: operators_may_shutdown.into(),
            web,
        }
    }

    /// A reloaded `[daemon] operators_may_shutdown`.
    pub fn set_operators_may_shutdown(&self, yes: bool) {
        self.operators_may_shutdown.store(yes, Ordering::Relaxed);
    }

    pub fn policy(&self) -> Policy {
        Policy {
            operators_may_shutdown: self.operators_may_shutdown.load(Ordering::Relaxed),
            dashboard_available: self.web.available(),
        }
    }

    /// Who the caller is, in refusals: "an operator (uid 1001 via socket_group candor)".
    pub fn describe(&self, peer: &Peer) -> String {
        match (peer.web, peer.role) {
            (Some(_), Role::ReadOnly) => "you hold a read-only dashboard token".into(),
            (Some(_), role) => format!("you hold {} dashboard token", role.with_article()),
            (None, Role::Admin) => format!("you are an admin (uid {})", peer.uid),
            (None, role) => {
                let how = match &self.socket_group {
                    Some((name, _)) => format!(" via socket_group {name}"),
                    None => format!(", not the daemon's uid {}", self.daemon_uid),
                };
                format!("you are {} (uid {}{how})", role.with_article(), peer.uid)
            }
        }
    }

    /// The 403 for `peer`, who may not do `what` without `needed`.
    pub fn refusal(&self, what: &str, needed: Role, need: Need, peer: &Peer) -> ApiError {
        // Why an operator is not enough here, when that depends on the config.
        let extra = match (need, needed) {
            (Need::Shutdown, Role::Admin) => {
                "; operators may shut the daemon down only with [daemon] operators_may_shutdown = true"
            }
            (Need::Dashboard, Role::Admin) => {
                "; the dashboard is not configured ([daemon] web), and only an admin may open it"
            }
            _ => "",
        };
        ApiError::new(
            403,
            format!(
                "{what} needs the {} role ({}); {}{extra}",
                needed.as_str(),
                needed.holders(),
                self.describe(peer)
            ),
        )
    }
}

/// `route`'s `what`, with `{action}` and `{name}` taken from the request's path.
fn what(route: &Route, path: &str) -> String {
    let pattern: Vec<&str> = route.path.split('/').collect();
    let given: Vec<&str> = path.split('/').collect();
    let mut out = route.what.to_string();
    for (p, g) in pattern.iter().zip(&given) {
        if p.starts_with('{') {
            out = out.replace(p, g);
        }
    }
    out
}

/// The route `matched` (axum's pattern) with `verb`; Err(true) when the path is known with
/// another verb (the router answers 405), Err(false) when not at all.
fn lookup(
    routes: &'static [Route],
    verb: Option<Verb>,
    matched: &str,
) -> Result<&'static Route, bool> {
    let mut known = false;
    for r in routes {
        if r.path == matched {
            if Some(r.verb) == verb {
                return Ok(r);
            }
            known = true;
        }
    }
    Err(known)
}

/// The state of the [`authorize`] layer.
#[derive(Clone)]
pub struct Gate {
    pub access: Arc<Access>,
    pub routes: &'static [Route],
}

/// The one place a request's role is checked against the route it goes to. A route missing
/// from the table is refused to all but an admin (never opened by forgetting it).
pub async fn authorize(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let Some(matched) = req.extensions().get::<MatchedPath>() else {
        // No route: the router's 404 follows.
        return next.run(req).await;
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0)
        .unwrap_or(Peer {
            uid: u32::MAX,
            pid: None,
            web: None,
            role: Role::ReadOnly,
        });
    let path = req.uri().path();
    let (need, what) = match lookup(gate.routes, Verb::of(req.method()), matched.as_str()) {
        Ok(route) => (route.need, what(route, path)),
        // The path is served, not with this method: the router's 405 follows.
        Err(true) => return next.run(req).await,
        Err(false) => (Need::Role(Role::Admin), format!("{} {path}", req.method())),
    };
    match allowed(need, peer.role, gate.access.policy()) {
        Ok(()) => next.run(req).await,
        Err(needed) => gate
            .access
            .refusal(&what, needed, need, &peer)
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use tower::ServiceExt;

    const ANY: Policy = Policy {
        operators_may_shutdown: false,
        dashboard_available: false,
    };

    #[test]
    fn roles_are_ordered_and_the_control_socket_owner_or_root_is_admin() {
        assert!(Role::ReadOnly < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(Role::of_uid(0, 1000), Role::Admin);
        assert_eq!(Role::of_uid(1000, 1000), Role::Admin);
        assert_eq!(Role::of_uid(1001, 1000), Role::Operator);
        assert_eq!(Role::of_uid(65534, 0), Role::Operator);
    }

    #[test]
    fn shutdown_and_the_dashboard_open_to_operators_only_when_the_config_says_so() {
        use Role::*;
        assert_eq!(allowed(Need::Shutdown, Operator, ANY), Err(Admin));
        assert_eq!(allowed(Need::Shutdown, Admin, ANY), Ok(()));
        let may = Policy {
            operators_may_shutdown: true,
            ..ANY
        };
        assert_eq!(allowed(Need::Shutdown, Operator, may), Ok(()));
        assert_eq!(allowed(Need::Shutdown, ReadOnly, may), Err(Operator));
        assert_eq!(allowed(Need::Dashboard, Operator, ANY), Err(Admin));
        let open = Policy {
            dashboard_available: true,
            ..ANY
        };
        assert_eq!(allowed(Need::Dashboard, Operator, open), Ok(()));
        assert_eq!(allowed(Need::Dashboard, ReadOnly, open), Err(Operator));
    }

    /// What each role may do, written out apart from the table: (verb, path, least role with
    /// neither `operators_may_shutdown` nor a dashboard configured).
    fn expected(verb: Verb, path: &str) -> Role {
        match (verb, path) {
            (Verb::Get, _) => Role::ReadOnly,
            (
                Verb::Post,
                "/v1/services/{name}/{action}"
                | "/v1/services/{name}/run"
                | "/v1/services/{name}/rollout/{what}"
                | "/v1/reset-failed"
                | "/v1/reload",
            ) => Role::Operator,
            (Verb::Post, "/v1/shutdown" | "/v1/upgrade" | "/v1/web") => Role::Admin,
            (verb, path) => panic!("{verb:?} {path} is not in this test's list; add it"),
        }
    }

    fn peer(role: Role) -> Peer {
        Peer {
            uid: if role == Role::Admin { 0 } else { 1001 },
            pid: Some(42),
            web: (role == Role::ReadOnly).then(|| "127.0.0.1:5000".parse().unwrap()),
            role,
        }
    }

    /// A concrete path of a route's pattern.
    fn concrete(pattern: &str) -> String {
        pattern.replace("{name}", "api").replace("{action}", "stop")
    }

    async fn status_of(app: &axum::Router, verb: Verb, path: &str, role: Role) -> (u16, String) {
        let method = match verb {
            Verb::Get => "GET",
            Verb::Post => "POST",
        };
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(peer(role)));
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Every route of the API's table behind the real layer, with stand-in handlers.
    fn app(access: Arc<Access>) -> axum::Router {
        let mut app = axum::Router::new();
        for r in crate::http::ROUTES {
            let ok = || async { "ok" };
            app = app.route(
                r.path,
                match r.verb {
                    Verb::Get => axum::routing::get(ok),
                    Verb::Post => axum::routing::post(ok),
                },
            );
        }
        app.layer(axum::middleware::from_fn_with_state(
            Gate {
                access,
                routes: crate::http::ROUTES,
            },
            authorize,
        ))
    }

    fn access(group: bool, may_shutdown: bool) -> Arc<Access> {
        let dir = tempfile::tempdir().unwrap();
        Arc::new(Access::new(
            group.then(|| ("candor".to_string(), 990)),
            may_shutdown,
            Arc::new(crate::web::Web::new(dir.path(), None)),
        ))
    }

    #[tokio::test]
    async fn every_route_is_open_to_its_least_role_and_above_and_refused_below_with_a_403() {
        let app = app(access(true, false));
        assert!(crate::http::ROUTES.len() >= 12, "the whole table");
        for r in crate::http::ROUTES {
            let least = expected(r.verb, r.path);
            for role in Role::ALL {
                let (status, body) = status_of(&app, r.verb, &concrete(r.path), role).await;
                if role >= least {
                    assert_eq!(status, 200, "{role:?} on {:?} {}: {body}", r.verb, r.path);
                } else {
                    assert_eq!(status, 403, "{role:?} on {:?} {}: {body}", r.verb, r.path);
                    assert!(
                        body.contains(&format!("needs the {} role", least.as_str())),
                        "{body}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn refusals_name_the_role_needed_and_who_asked() {
        let app = app(access(true, false));
        let (status, body) = status_of(&app, Verb::Post, "/v1/upgrade", Role::Operator).await;
        assert_eq!(status, 403);
        assert!(
            body.contains("upgrade needs the admin role (the daemon's own user or root on the control socket); you are an operator (uid 1001 via socket_group candor)"),
            "{body}"
        );
        let (_, body) = status_of(&app, Verb::Post, "/v1/services/api/stop", Role::ReadOnly).await;
        assert!(
            body.contains("stop api needs the operator role")
                && body.contains("you hold a read-only dashboard token"),
            "{body}"
        );
        let (_, body) = status_of(&app, Verb::Post, "/v1/shutdown", Role::Operator).await;
        assert!(body.contains("operators_may_shutdown = true"), "{body}");
        let (_, body) = status_of(&app, Verb::Post, "/v1/web", Role::Operator).await;
        assert!(
            body.contains("`candor web` needs the admin role")
                && body.contains("the dashboard is not configured ([daemon] web)"),
            "{body}"
        );
        // A method the path does not serve is the router's 405, not a refusal.
        let (status, _) = status_of(&app, Verb::Get, "/v1/upgrade", Role::ReadOnly).await;
        assert_eq!(status, 405);
    }

    #[tokio::test]
    async fn operators_may_shut_down_when_the_config_says_so() {
        let app = app(access(true, true));
        let (status, body) = status_of(&app, Verb::Post, "/v1/shutdown", Role::Operator).await;
        assert_eq!(status, 200, "{body}");
        let (status, _) = status_of(&app, Verb::Post, "/v1/upgrade", Role::Operator).await;
        assert_eq!(status, 403, "never upgrade");
        let (status, body) = status_of(&app, Verb::Post, "/v1/shutdown", Role::ReadOnly).await;
        assert_eq!(status, 403);
        assert!(
            body.contains("shutdown needs the operator role")
                && !body.contains("operators_may_shutdown"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_route_missing_from_the_table_is_admin_only() {
        static NONE: [Route; 0] = [];
        let mut app = axum::Router::new().route("/v1/new", axum::routing::post(|| async { "ok" }));
        app = app.layer(axum::middleware::from_fn_with_state(
            Gate {
                access: access(false, false),
                routes: &NONE,
            },
            authorize,
        ));
        let (status, body) = status_of(&app, Verb::Post, "/v1/new", Role::Operator).await;
        assert_eq!(status, 403);
        assert!(
            body.contains("POST /v1/new needs the admin role")
                && body.contains("(uid 1001, not the daemon's uid"),
            "{body}"
        );
        assert_eq!(
            status_of(&app, Verb::Post, "/v1/new", Role::Admin).await.0,
            200
        );
    }
}
