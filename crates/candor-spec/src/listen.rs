//! Sockets Candor listens on for a service (socket activation): what to bind, as plain data
//! from the config, for the keeper, which binds them and hands them to
//! each run as fd 3.. with systemd's `LISTEN_FDS` / `LISTEN_PID` / `LISTEN_FDNAMES`.

use std::net::SocketAddr;
use std::path::PathBuf;

/// One activated socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Listen {
    /// Its name in `LISTEN_FDNAMES` (default: the service's name, as systemd names a socket
    /// after its unit).
    pub name: String,
    pub addr: ListenAddr,
    /// listen(2)'s backlog: connections that wait while the service restarts.
    pub backlog: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A Unix stream socket at `path`, chmod'ed to `mode` once bound.
    Unix { path: PathBuf, mode: u32 },
    /// A TCP listener (SO_REUSEADDR).
    Tcp(SocketAddr),
}

impl ListenAddr {
    pub fn describe(&self) -> String {
        match self {
            ListenAddr::Unix { path, .. } => path.display().to_string(),
            ListenAddr::Tcp(a) => a.to_string(),
        }
    }
}

/// systemd's default backlog (SOMAXCONN).
pub const DEFAULT_BACKLOG: u32 = 4096;
/// systemd's default `SocketMode=`.
pub const DEFAULT_MODE: u32 = 0o666;
/// The first fd of the activated sockets (SD_LISTEN_FDS_START).
pub const FIRST_FD: u32 = 3;
