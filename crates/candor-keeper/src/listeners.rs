//! Sockets the keeper listens on for services (socket activation): made before a service's
//! first run, handed to every run as fd 3.. and kept open between runs, so a connection made
//! while the service restarts waits in the backlog instead of meeting ENOENT or
//! ECONNREFUSED. A Unix socket file is Candor's for as long as it listens on it: never left
//! dangling, removed when the service is removed or the keeper ends (only if it is still the
//! socket Candor made). Binding never waits; a path held by a live listener of another
//! process is refused with that reason, a stale socket file is replaced (`sockfile`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use candor_spec::listen::{Listen, ListenAddr};
use rustix::net::{AddressFamily, SocketType};

/// A socket the keeper listens on.
#[derive(Debug)]
pub struct Listener {
    pub spec: Listen,
    pub fd: OwnedFd,
    /// For a Unix socket: the file's (device, inode) as made, to tell it is still ours.
    file: Option<(u64, u64)>,
}

impl Listener {
    /// Bind and listen as `spec` says (CLOEXEC: a run gets its own copy on fd 3..). A Unix
    /// socket's directory must be one only root and `owner` (the service's user) can write.
    pub fn bind(spec: &Listen, owner: crate::sockpath::DirOwner) -> Result<Listener, String> {
        let what = spec.addr.describe();
        let fail = |e: io::Error| format!("cannot listen on {what}: {e}");
        match &spec.addr {
            ListenAddr::Tcp(addr) => {
                let family = match addr {
                    std::net::SocketAddr::V4(_) => AddressFamily::INET,
                    std::net::SocketAddr::V6(_) => AddressFamily::INET6,
                };
                let fd = rustix::net::socket_with(
                    family,
                    SocketType::STREAM,
                    rustix::net::SocketFlags::CLOEXEC,
                    None,
                )
                .map_err(|e| fail(e.into()))?;
                rustix::net::sockopt::set_socket_reuseaddr(&fd, true)
                    .map_err(|e| fail(e.into()))?;
                rustix::net::bind(&fd, addr).map_err(|e| {
                    let e: io::Error = e.into();
                    match e.raw_os_error() {
                        Some(libc::EADDRINUSE) => format!(
                            "cannot listen on {what}: another process listens there; stop it or choose another `listen`"
                        ),
                        _ => fail(e),
                    }
                })?;
                rustix::net::listen(&fd, spec.backlog as i32).map_err(|e| fail(e.into()))?;
                Ok(Listener {
                    spec: spec.clone(),
                    fd,
                    file: None,
                })
            }
            ListenAddr::Unix { path, mode } => {
                use crate::sockfile::SocketFile;
                use crate::sockpath;
                if let Some(dir) = path.parent() {
                    make_dirs(dir)
                        .map_err(|e| format!("cannot make the directory {}: {e}", dir.display()))?;
                }
                // Nothing is removed or made in a directory someone else could swap it in.
                sockpath::check_dir(path, owner)
                    .map_err(|why| format!("cannot listen on {what}: {why}"))?;
                match crate::sockfile::inspect(path) {
                    SocketFile::Missing => {}
                    SocketFile::Stale => sockpath::remove_stale(path).map_err(|e| {
                        format!("cannot remove the stale socket {}: {e}", path.display())
                    })?,
                    found => {
                        let why = found.why_kept(path).unwrap_or_default();
                        return Err(format!(
                            "cannot listen on {what}: {why}; stop that process first or choose another `path`"
                        ));
                    }
                }
                // Bound under the daemon's umask (077), opened to `mode` only then, through a
                // descriptor of the file made (never a symlink swapped in after the bind).
                let made = sockpath::bind(path, *mode, None, owner).map_err(|e| match e {
                    sockpath::BindError::Refused(why) => format!("cannot listen on {what}: {why}"),
                    sockpath::BindError::Io(e) => fail(e),
                })?;
                let listener = Listener {
                    spec: spec.clone(),
                    fd: made.fd,
                    file: Some(made.file),
                };
                rustix::net::listen(&listener.fd, spec.backlog as i32)
                    .map_err(|e| fail(e.into()))?;
                Ok(listener)
            }
        }
    }

    /// Whether this listener can serve a run of `spec`: the same socket, and for a Unix
    /// socket, its file still the one made (not unlinked or replaced).
    pub fn still_good(&self, spec: &Listen) -> bool {
        if &self.spec != spec {
            return false;
        }
        match (&self.spec.addr, self.file) {
            (ListenAddr::Unix { path, .. }, Some(made)) => {
                crate::sockpath::file_id(path) == Some(made)
            }
            _ => true,
        }
    }

    /// The socket file's inode, for a Unix socket.
    pub fn inode(&self) -> Option<u64> {
        self.file.map(|(_, ino)| ino)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // The file goes with the listener, if it is still the one made here.
        if let (ListenAddr::Unix { path, .. }, Some(made)) = (&self.spec.addr, self.file) {
            crate::sockpath::remove_if(path, made);
        }
    }
}

/// A run's copies of the sockets, numbered above the fds 3.. they go to in the child, so
/// that none is overwritten before it is placed (CLOEXEC: only the placed ones stay open).
pub fn copies_for_run(kept: &[Listener]) -> Result<Vec<OwnedFd>, String> {
    let floor = candor_spec::listen::FIRST_FD as i32 + kept.len() as i32;
    kept.iter()
        .map(|l| {
            rustix::io::fcntl_dupfd_cloexec(&l.fd, floor)
                .map_err(|e| format!("cannot pass the socket on {}: {e}", l.spec.addr.describe()))
        })
        .collect()
}

/// After the daemon's restart or upgrade: the activated sockets of a run it adopts, taken
/// back from the process's fds 3.. (`pidfd_getfd`), each checked to be a listening socket at
/// the address its spec says. All of them or none (and why not): a run whose sockets cannot
/// all be had back gets new ones at its next start.
pub fn take_back(pidfd: &OwnedFd, wanted: &[Listen]) -> (Vec<Listener>, Option<String>) {
    let mut out = Vec::with_capacity(wanted.len());
    for (i, spec) in wanted.iter().enumerate() {
        let target = candor_spec::listen::FIRST_FD as i32 + i as i32;
        // SAFETY: pidfd_getfd(2) returns a new CLOEXEC descriptor we then own, or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return (Vec::new(), Some(format!("fd {target}: {e}")));
        }
        // SAFETY: a fresh descriptor owned by nobody else.
        let fd: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) };
        let listening = rustix::net::sockopt::socket_acceptconn(&fd).unwrap_or(false);
        let at = rustix::net::getsockname(&fd).ok();
        let matches = match (&spec.addr, at) {
            (ListenAddr::Tcp(want), Some(got)) => {
                std::net::SocketAddr::try_from(got).is_ok_and(|got| got == *want)
            }
            (ListenAddr::Unix { path, .. }, Some(got)) => {
                rustix::net::SocketAddrUnix::try_from(got)
                    .ok()
                    .and_then(|u| u.path().map(|p| p.to_bytes().to_vec()))
                    .is_some_and(|p| {
                        use std::os::unix::ffi::OsStrExt;
                        p == path.as_os_str().as_bytes()
                    })
            }
            _ => false,
        };
        if !listening || !matches {
            return (
                Vec::new(),
                Some(format!(
                    "fd {target} is not a socket listening on {}",
                    spec.addr.describe()
                )),
            );
        }
        let file = match &spec.addr {
            ListenAddr::Unix { path, .. } => crate::sockpath::file_id(path),
            ListenAddr::Tcp(_) => None,
        };
        out.push(Listener {
            spec: spec.clone(),
            fd,
            file,
        });
    }
    (out, None)
}

/// `dir` and its missing parents, 0755 (as systemd's `DirectoryMode=`), whatever the umask.
fn make_dirs(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_dirs(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The listeners for a run of a service whose spec asks for `wanted`: those kept from its
/// earlier runs when still good, others bound anew. On an error nothing kept is lost.
pub fn ensure(
    kept: &mut Vec<Listener>,
    wanted: &[Listen],
    owner: crate::sockpath::DirOwner,
) -> Result<(), String> {
    if kept.len() == wanted.len() && kept.iter().zip(wanted).all(|(l, w)| l.still_good(w)) {
        return Ok(());
    }
    // Keep what is still good (by spec), bind the rest; drop what is no longer wanted first,
    // so a changed path or port can be taken again.
    let mut old: Vec<Option<Listener>> = std::mem::take(kept).into_iter().map(Some).collect();
    old.retain(|l| {
        l.as_ref()
            .is_some_and(|l| wanted.iter().any(|w| l.still_good(w)))
    });
    let mut fresh = Vec::with_capacity(wanted.len());
    for w in wanted {
        let reuse = old
            .iter_mut()
            .find(|l| l.as_ref().is_some_and(|l| l.still_good(w)))
            .and_then(Option::take);
        match reuse {
            Some(l) => fresh.push(l),
            None => match Listener::bind(w, owner) {
                Ok(l) => fresh.push(l),
                Err(e) => {
                    // What was made stays: the next attempt starts from it.
                    *kept = fresh;
                    kept.extend(old.into_iter().flatten());
                    return Err(e);
                }
            },
        }
    }
    *kept = fresh;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn me() -> crate::sockpath::DirOwner {
        crate::sockpath::DirOwner::daemon()
    }

    fn unix(path: &Path) -> Listen {
        Listen {
            name: "api".into(),
            addr: ListenAddr::Unix {
                path: path.to_path_buf(),
                mode: 0o660,
            },
            backlog: 16,
        }
    }

    #[test]
    fn a_unix_listener_is_made_with_its_mode_kept_while_good_and_its_file_removed_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/api/rpc.sock");
        let spec = unix(&path);
        let mut kept = Vec::new();
        ensure(&mut kept, std::slice::from_ref(&spec), me()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        let ino = meta.ino();
        // A client connects while no run accepts: it waits in the backlog.
        let _waiting = std::os::unix::net::UnixStream::connect(&path).unwrap();
        ensure(&mut kept, std::slice::from_ref(&spec), me()).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            ino,
            "kept, not made again"
        );
        // Unlinked by someone: made again on the next run, never left dangling.
        std::fs::remove_file(&path).unwrap();
        ensure(&mut kept, std::slice::from_ref(&spec), me()).unwrap();
        assert!(path.exists());
        // A live listener of another process is never taken over.
        let other = dir.path().join("other.sock");
        let _theirs = std::os::unix::net::UnixListener::bind(&other).unwrap();
        let err = ensure(&mut kept, &[unix(&other)], me()).unwrap_err();
        assert!(err.contains("stop that process first"), "{err}");
        // Dropped (service removed, keeper ended): the file goes with it.
        drop(kept);
        assert!(!path.exists());
        assert!(other.exists(), "never someone else's");
    }

    #[test]
    fn a_tcp_listener_holds_its_port_and_a_taken_port_is_refused_with_that_reason() {
        let spec = Listen {
            name: "http".into(),
            addr: ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()),
            backlog: 16,
        };
        let l = Listener::bind(&spec, me()).unwrap();
        let port = match rustix::net::getsockname(&l.fd).unwrap().try_into() {
            Ok(std::net::SocketAddr::V4(a)) => a.port(),
            other => panic!("{other:?}"),
        };
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let taken = Listen {
            addr: ListenAddr::Tcp(format!("127.0.0.1:{port}").parse().unwrap()),
            ..spec
        };
        let err = Listener::bind(&taken, me()).unwrap_err();
        assert!(err.contains("another process listens there"), "{err}");
    }

    /// A `sleep` whose fd 3 is `fd` (or closed), and a pidfd of it.
    fn child_with_fd3(fd: Option<&OwnedFd>) -> (std::process::Child, OwnedFd) {
        use std::os::unix::process::CommandExt;
        // Above 3: dup2 onto itself would keep CLOEXEC (as `copies_for_run` avoids too).
        let high = fd.map(|f| rustix::io::fcntl_dupfd_cloexec(f, 10).unwrap());
        let raw = high.as_ref().map(|f| f.as_raw_fd());
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30");
        // SAFETY: dup2 only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                match raw {
                    Some(raw) => {
                        if libc::dup2(raw, 3) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    // No fd 3 at all, whatever the test runner left open there (`time -o`).
                    None => {
                        libc::close(3);
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
        (child, pidfd)
    }

    #[test]
    fn sockets_are_taken_back_from_a_running_service_only_when_they_are_what_the_spec_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let spec = unix(&path);
        let made = Listener::bind(&spec, me()).unwrap();
        // Its listener on fd 3, as a run has it: taken back, the same socket.
        let (mut child, pidfd) = child_with_fd3(Some(&made.fd));
        let ino = std::fs::metadata(&path).unwrap().ino();
        std::mem::forget(made); // as after a killed daemon: the file stays
        let (taken, missing) = take_back(&pidfd, std::slice::from_ref(&spec));
        assert_eq!((taken.len(), missing), (1, None));
        assert_eq!(taken[0].inode(), Some(ino));
        // Another address than the spec's: refused, with the reason.
        let other = unix(&dir.path().join("other.sock"));
        let (none, why) = take_back(&pidfd, &[other]);
        assert!(none.is_empty());
        assert!(why.unwrap().contains("is not a socket listening on"));
        let _ = child.kill();
        let _ = child.wait();
        // No fd 3 at all (the service closed it): refused, and why.
        let (mut bare, pidfd) = child_with_fd3(None);
        let (none, why) = take_back(&pidfd, &[spec]);
        assert!(none.is_empty());
        assert!(why.unwrap().starts_with("fd 3:"));
        let _ = bare.kill();
        let _ = bare.wait();
    }
}
