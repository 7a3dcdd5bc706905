//! What is at a Unix socket path, found without ever waiting: a connect on a non-blocking
//! `AF_UNIX` stream socket completes or fails at once (a full backlog is `EAGAIN`, not a wait),
//! so a listener whose accept loop is dead cannot hang the caller — the keeper's thread or the
//! daemon's start.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// What a socket path holds. Only [`SocketFile::Stale`] may be removed.
#[derive(Debug)]
pub enum SocketFile {
    /// Nothing there.
    Missing,
    /// A file that is not a socket (a typo in a path must never delete data).
    NotSocket,
    /// A socket file nobody listens on (`ECONNREFUSED`): left over from an earlier run.
    Stale,
    /// A listener accepted the connection.
    Live,
    /// A listener whose backlog is full (`EAGAIN`): alive, but not accepting.
    Busy,
    /// A live socket of another type (`EPROTOTYPE`: datagram or seqpacket).
    OtherType,
    /// It could not be checked (`EACCES`, ...): left in place.
    Unknown(io::Error),
}

/// Look at `path` once, without blocking.
pub fn inspect(path: &Path) -> SocketFile {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => return SocketFile::NotSocket,
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return SocketFile::Missing,
        Err(e) => return SocketFile::Unknown(e),
    }
    let addr = match SocketAddrUnix::new(path) {
        Ok(a) => a,
        Err(e) => return SocketFile::Unknown(e.into()),
    };
    let sock = match rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    ) {
        Ok(s) => s,
        Err(e) => return SocketFile::Unknown(e.into()),
    };
    match rustix::net::connect(&sock, &addr) {
        Ok(()) => SocketFile::Live,
        Err(rustix::io::Errno::CONNREFUSED) => SocketFile::Stale,
        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INPROGRESS) => SocketFile::Busy,
        Err(rustix::io::Errno::PROTOTYPE) => SocketFile::OtherType,
        Err(rustix::io::Errno::NOENT) => SocketFile::Missing,
        Err(e) => SocketFile::Unknown(e.into()),
    }
}

impl SocketFile {
    /// Something is listening there (of whatever kind, accepting or not).
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            SocketFile::Live | SocketFile::Busy | SocketFile::OtherType
        )
    }

    /// Why `path` is left in place, in words for a status reason (None for `Missing`/`Stale`).
    pub fn why_kept(&self, path: &Path) -> Option<String> {
        let p = path.display();
        Some(match self {
            SocketFile::Missing | SocketFile::Stale => return None,
            SocketFile::NotSocket => {
                format!("{p} exists and is not a socket (Candor never removes it)")
            }
            SocketFile::Live => format!("{p} is served by another live listener"),
            SocketFile::Busy => format!(
                "{p} has a live listener whose backlog is full (its accept loop may be stuck)"
            ),
            SocketFile::OtherType => {
                format!("{p} is a live socket of another type (datagram or seqpacket)")
            }
            SocketFile::Unknown(e) => format!("{p} cannot be checked ({e}); left in place"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn each_kind_of_path_is_told_apart_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        assert!(matches!(inspect(&missing), SocketFile::Missing));

        let file = dir.path().join("data.txt");
        std::fs::write(&file, "keep me").unwrap();
        assert!(matches!(inspect(&file), SocketFile::NotSocket));

        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(matches!(inspect(&stale), SocketFile::Stale));

        let live = dir.path().join("live.sock");
        let _l = std::os::unix::net::UnixListener::bind(&live).unwrap();
        assert!(matches!(inspect(&live), SocketFile::Live));

        let dgram = dir.path().join("dgram.sock");
        let _d = std::os::unix::net::UnixDatagram::bind(&dgram).unwrap();
        assert!(matches!(inspect(&dgram), SocketFile::OtherType));

        // A listener that never accepts, its backlog (0) full: a blocking connect would wait
        // forever here.
        let full = dir.path().join("full.sock");
        let l = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        rustix::net::bind(&l, &SocketAddrUnix::new(&full).unwrap()).unwrap();
        rustix::net::listen(&l, 0).unwrap();
        let mut held = Vec::new();
        loop {
            let c = rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::NONBLOCK,
                None,
            )
            .unwrap();
            match rustix::net::connect(&c, &SocketAddrUnix::new(&full).unwrap()) {
                Ok(()) => held.push(c),
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(held.len() < 64, "backlog never filled");
        }
        assert!(matches!(inspect(&full), SocketFile::Busy));
        let _ = l.as_fd();
    }
}
