//! Who is calling the API: the [`Peer`] of a connection (as the kernel says) and its [`Role`].

/// Who is on the other end of an API connection, as the kernel says (SO_PEERCRED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
    /// A connection to the web listener: the browser's address (let in by the token).
    pub web: Option<std::net::SocketAddr>,
    /// What the caller may do: from its uid on the control socket; on the dashboard, read-only
    /// until the web layer has seen the request's token (`web::grant`).
    pub role: Role,
}

/// What a caller may do, least first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A read-only dashboard token: every GET, nothing else.
    ReadOnly,
    /// `socket_group` members and operator dashboard tokens: reads, service actions,
    /// reset-failed, a config reload.
    Operator,
    /// The daemon's own user and root, on the control socket: everything.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::ReadOnly, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role of a control-socket caller of uid `uid`, for a daemon running as `daemon_uid`.
    pub fn of_uid(uid: u32, daemon_uid: u32) -> Role {
        if uid == 0 || uid == daemon_uid {
            Role::Admin
        } else {
            Role::Operator
        }
    }

    /// "an admin", "an operator", "a read-only".
    pub fn with_article(self) -> &'static str {
        match self {
            Role::ReadOnly => "a read-only",
            Role::Operator => "an operator",
            Role::Admin => "an admin",
        }
    }

    /// Who holds this role, in refusals.
    pub(crate) fn holders(self) -> &'static str {
        match self {
            Role::Admin => "the daemon's own user or root on the control socket",
            Role::Operator => {
                "a member of [daemon] socket_group on the control socket, or a dashboard token from `candor web` without --read-only"
            }
            Role::ReadOnly => "any dashboard token",
        }
    }
}
