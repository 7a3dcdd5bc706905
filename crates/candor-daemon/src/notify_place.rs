//! Where the sd_notify socket lives: a path in a directory only the daemon can write, so no one
//! else can take its name, replace it or point it elsewhere. As root (services may run as any
//! user): `/run/candor/notify/<instance>.sock`, the directory 0755 and the socket 0666, as
//! systemd keeps `/run/systemd/notify`. As another user (services run as that user too):
//! `<state_dir>/notify.sock` (the state dir is 0700). Where that is not usable (a directory
//! that is not the daemon's, a symlink, a path too long for `sun_path`):
//! `/tmp/candor-notify-<uid>-<instance>/`, else a fresh directory with a random name. Each
//! directory on the way is opened without following symlinks and must be owned by root or the
//! daemon's user and not writable by others (as sudo checks a secure path); the socket is bound
//! under a temporary name and renamed into place, so a daemon started again (kill -9,
//! `candor upgrade`) takes the same path over in one step and never follows what sits there.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};

/// The longest path a `sockaddr_un` holds (108 bytes with the NUL).
const SUN_PATH_MAX: usize = 107;

/// The root daemon's directory for notify sockets.
pub const ROOT_DIR: &str = "/run/candor/notify";

/// The bound socket and where it is.
#[derive(Debug)]
pub struct NotifySocket {
    pub sock: UnixDatagram,
    /// The value of `NOTIFY_SOCKET`.
    pub path: PathBuf,
    dir: OwnedFd,
    file: String,
    ino: u64,
}

impl NotifySocket {
    /// What tells the daemon `candor upgrade` execs where this socket is and which fd holds it
    /// (read back by [`take_handed`]): `FD:INODE:PATH`.
    pub fn handover(&self) -> String {
        use std::os::fd::AsRawFd;
        format!(
            "{}:{}:{}",
            self.sock.as_raw_fd(),
            self.ino,
            self.path.display()
        )
    }

    /// Remove the socket file at an orderly shutdown, if it is still the one this daemon bound
    /// (never on the way to an upgrade: the next daemon takes the path over).
    pub fn remove(&self) {
        if rustix::fs::statat(&self.dir, self.file.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| st.st_ino == self.ino)
        {
            let _ = rustix::fs::unlinkat(&self.dir, self.file.as_str(), AtFlags::empty());
        }
    }
}

/// The abstract `NOTIFY_SOCKET` names (`@…`, without the `@`) that the given running processes
/// were started with: runs an earlier version of Candor (whose notify socket was abstract)
/// started, now adopted. Read once at start from `/proc/<pid>/environ`.
pub fn abstract_names_of(pids: impl IntoIterator<Item = u32>) -> Vec<String> {
    let mut names: Vec<String> = pids
        .into_iter()
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/environ")).ok())
        .filter_map(|env| abstract_name_in(&env))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `NOTIFY_SOCKET=@name` in an environ block (NUL-separated), as `name`.
fn abstract_name_in(environ: &[u8]) -> Option<String> {
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"NOTIFY_SOCKET=@"))
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
}

/// Bind an abstract name (for runs an earlier version started: see [`abstract_names_of`]).
pub fn bind_abstract(name: &str) -> io::Result<UnixDatagram> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    UnixDatagram::bind_addr(&addr)
}

/// The socket a predecessor handed over across `candor upgrade` (`FD:INODE:PATH`, from
/// [`NotifySocket::handover`]): taken when the fd is a datagram socket and the path (in a
/// directory only this user can write, opened without following symlinks) is still the
/// socket file it bound. Otherwise the fd is closed and the reason given, for a fresh bind.
pub fn take_handed(value: &str) -> Result<NotifySocket, String> {
    use std::os::fd::FromRawFd;
    let euid = rustix::process::geteuid().as_raw();
    let mut parts = value.splitn(3, ':');
    let (fd, ino, path) = match (parts.next(), parts.next(), parts.next()) {
        (Some(fd), Some(ino), Some(path)) => (fd.parse::<i32>(), ino.parse::<u64>(), path),
        _ => {
            return Err(format!(
                "the handed-over notify socket ({value}) is not FD:INODE:PATH"
            ))
        }
    };
    let (Ok(fd), Ok(ino)) = (fd, ino) else {
        return Err(format!(
            "the handed-over notify socket ({value}) is not FD:INODE:PATH"
        ));
    };
    // SAFETY: F_GETFD only asks whether the number is an open fd.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!(
            "the handed-over notify socket's fd {fd} is not open"
        ));
    }
    // SAFETY: the predecessor left this fd open for this process alone (the variable is read
    // once, at start, and removed from the environment); it is owned from here on.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let is_dgram = rustix::fs::fstat(&owned)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Socket)
        && rustix::net::sockopt::socket_type(&owned) == Ok(rustix::net::SocketType::DGRAM);
    if !is_dgram {
        return Err(format!("the handed-over fd {fd} is not a datagram socket"));
    }
    let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
    let path = PathBuf::from(path);
    let (Some(parent), Some(file)) = (path.parent(), path.file_name()) else {
        return Err(format!("{} is no socket path", path.display()));
    };
    let file = file.to_string_lossy().into_owned();
    let dir = secure_dir(parent, None, euid, false)?;
    let same = rustix::fs::statat(&dir, file.as_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
        st.st_ino == ino
            && st.st_uid == euid
            && FileType::from_raw_mode(st.st_mode) == FileType::Socket
    });
    if !same {
        return Err(format!(
            "{} is no longer the socket handed over; bound anew",
            path.display()
        ));
    }
    Ok(NotifySocket {
        sock: UnixDatagram::from(owned),
        path,
        dir,
        file,
        ino,
    })
}

/// A place to try: the directory, the socket's file name, the mode of the directory when the
/// daemon makes it (or owns it and it is dedicated to notify sockets).
struct Place {
    dir: PathBuf,
    file: String,
    dir_mode: Option<u32>,
    /// Services of other users must reach the socket: every directory on the way lets them
    /// through.
    others_reach: bool,
}

/// Bind the notify socket for this daemon (`euid`, `state_dir`, `instance`). Returns it with
/// what was noticed on the way (a place refused and why, something replaced), each a sentence
/// for the daemon's log.
pub fn bind(state_dir: &Path, instance: &str) -> io::Result<(NotifySocket, Vec<String>)> {
    let euid = rustix::process::geteuid().as_raw();
    let mut places = Vec::new();
    // Root's services run as any user: they must reach the socket, and the state dir is 0700.
    let (dir_mode, sock_mode) = if euid == 0 {
        places.push(Place {
            dir: PathBuf::from(ROOT_DIR),
            file: format!("{instance}.sock"),
            dir_mode: Some(0o755),
            others_reach: true,
        });
        (0o755, 0o666)
    } else {
        let real = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
        places.push(Place {
            dir: real,
            file: "notify.sock".into(),
            dir_mode: None,
            others_reach: false,
        });
        (0o700, 0o600)
    };
    places.push(Place {
        dir: PathBuf::from(format!("/tmp/candor-notify-{euid}-{instance}")),
        file: "notify.sock".into(),
        dir_mode: Some(dir_mode),
        others_reach: euid == 0,
    });
    let mut notes = Vec::new();
    for place in places {
        match bind_in(&place, euid, sock_mode) {
            Ok((socket, replaced)) => {
                notes.extend(replaced);
                return Ok((socket, notes));
            }
            Err(why) => notes.push(why),
        }
    }
    // Every usual place is taken or unsafe: a directory no one else can have made before us.
    for _ in 0..8 {
        let dir = PathBuf::from(format!(
            "/tmp/candor-notify-{euid}-{instance}-{:016x}",
            random()
        ));
        match rustix::fs::mkdirat(CWD, &dir, Mode::from_raw_mode(dir_mode)) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => {
                notes.push(format!("cannot make {}: {e}", dir.display()));
                break;
            }
        }
        let place = Place {
            dir,
            file: "notify.sock".into(),
            dir_mode: Some(dir_mode),
            others_reach: euid == 0,
        };
        match bind_in(&place, euid, sock_mode) {
            Ok((socket, replaced)) => {
                notes.extend(replaced);
                return Ok((socket, notes));
            }
            Err(why) => notes.push(why),
        }
    }
    Err(io::Error::other(format!(
        "no place for the notify socket: {}",
        notes.join("; ")
    )))
}

/// Bind in `place`, or say (one sentence) why not.
fn bind_in(
    place: &Place,
    euid: u32,
    sock_mode: u32,
) -> Result<(NotifySocket, Vec<String>), String> {
    let path = place.dir.join(&place.file);
    let tmp = format!(".tmp-{}", std::process::id());
    let tmp_path = place.dir.join(&tmp);
    for p in [&path, &tmp_path] {
        if p.as_os_str().len() > SUN_PATH_MAX {
            return Err(format!(
                "{} is longer than a socket path may be ({SUN_PATH_MAX} bytes)",
                p.display()
            ));
        }
    }
    let dir = secure_dir(&place.dir, place.dir_mode, euid, place.others_reach)?;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        format!(
            "cannot {what} the notify socket in {}: {e}",
            place.dir.display()
        )
    };
    // A leftover of an earlier daemon with this pid; only this user can write here.
    let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
    let sock = UnixDatagram::bind(&tmp_path).map_err(|e| fail("bind", &e))?;
    // The temporary name is in a directory only this user can write: it is the socket.
    let done = rustix::fs::chmodat(
        &dir,
        tmp.as_str(),
        Mode::from_raw_mode(sock_mode),
        AtFlags::empty(),
    )
    .map_err(|e| fail("chmod", &e))
    .and_then(|()| replaced(&dir, &place.file, &path, euid))
    .and_then(|note| {
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, place.file.as_str())
            .map_err(|e| fail("rename into place", &e))?;
        let ino = rustix::fs::statat(&dir, place.file.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| fail("stat", &e))?
            .st_ino;
        Ok((note, ino))
    });
    match done {
        Ok((note, ino)) => Ok((
            NotifySocket {
                sock,
                path,
                dir,
                file: place.file.clone(),
                ino,
            },
            note.into_iter().collect(),
        )),
        Err(why) => {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
            Err(why)
        }
    }
}

/// What sits at the socket's path, when it is not a socket of this user's (an earlier
/// daemon's): said, since it is about to be replaced (a rename replaces a symlink, never what
/// it points to). What belongs to another user (only root could have put it in this directory)
/// is left alone, and so is a directory: the place is refused.
fn replaced(dir: &OwnedFd, file: &str, path: &Path, euid: u32) -> Result<Option<String>, String> {
    let st = match rustix::fs::statat(dir, file, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
    };
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind == FileType::Socket && st.st_uid == euid {
        return Ok(None);
    }
    let what = match kind {
        FileType::Directory => {
            return Err(format!(
                "{} is a directory, not a socket; remove it",
                path.display()
            ))
        }
        FileType::Symlink => "a symlink",
        FileType::Socket => "a socket",
        FileType::RegularFile => "a file",
        _ => "something",
    };
    if st.st_uid != euid {
        return Err(format!(
            "{} is {what} of uid {}, not this daemon's uid {euid}; left alone (remove it to use this place)",
            path.display(),
            st.st_uid
        ));
    }
    Ok(Some(format!(
        "{} was {what} of uid {}, not this daemon's notify socket; replaced it (not followed)",
        path.display(),
        st.st_uid
    )))
}

/// Open `dir` without following a symlink on the way, checking each directory: owned by root
/// or `euid` and not writable by others (unless sticky, as /tmp), and `dir` itself owned by
/// `euid` and writable by no one else. Missing directories are made with `make_mode` (when
/// given), and `dir` is set to it. With `others_reach`, each must let other users through
/// (`o+x`). The error is one sentence naming the path.
pub fn secure_dir(
    dir: &Path,
    make_mode: Option<u32>,
    euid: u32,
    others_reach: bool,
) -> Result<OwnedFd, String> {
    if !dir.is_absolute() {
        return Err(format!("{} is not an absolute path", dir.display()));
    }
    let mut fd = rustix::fs::openat(
        CWD,
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open /: {e}"))?;
    let parts: Vec<_> = dir
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    if dir
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!("{} is not a plain path", dir.display()));
    }
    let mut at = PathBuf::from("/");
    for (i, name) in parts.iter().enumerate() {
        at.push(name);
        let last = i + 1 == parts.len();
        // The last one is opened for reading, so its mode can be set through the fd.
        let flags = OFlags::NOFOLLOW
            | OFlags::DIRECTORY
            | OFlags::CLOEXEC
            | if last { OFlags::RDONLY } else { OFlags::PATH };
        let open = |fd: &OwnedFd| rustix::fs::openat(fd, *name, flags, Mode::empty());
        let next = match open(&fd) {
            Err(rustix::io::Errno::NOENT) if make_mode.is_some() => {
                let mode = make_mode.unwrap_or(0o700);
                match rustix::fs::mkdirat(&fd, *name, Mode::from_raw_mode(mode)) {
                    // Made here, in a directory checked to be writable by no one else: set
                    // the mode the umask took from it.
                    Ok(()) => {
                        rustix::fs::chmodat(&fd, *name, Mode::from_raw_mode(mode), AtFlags::empty())
                            .map_err(|e| format!("cannot chmod {}: {e}", at.display()))?
                    }
                    Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(format!("cannot make {}: {e}", at.display())),
                }
                open(&fd)
            }
            other => other,
        };
        let next = next.map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => format!(
                "{} is a symlink or not a directory; not followed",
                at.display()
            ),
            e => format!("cannot open {}: {e}", at.display()),
        })?;
        let st =
            rustix::fs::fstat(&next).map_err(|e| format!("cannot stat {}: {e}", at.display()))?;
        let mut mode = st.st_mode & 0o7777;
        if last {
            if st.st_uid != euid {
                return Err(format!(
                    "{} belongs to uid {}, not to this daemon's uid {euid}",
                    at.display(),
                    st.st_uid
                ));
            }
            if let Some(want) = make_mode {
                if mode != want {
                    rustix::fs::fchmod(&next, Mode::from_raw_mode(want))
                        .map_err(|e| format!("cannot chmod {}: {e}", at.display()))?;
                    mode = want;
                }
            } else if mode & 0o022 != 0 {
                return Err(format!(
                    "{} is writable by other users (mode {mode:o})",
                    at.display()
                ));
            }
        } else if st.st_uid != 0 && st.st_uid != euid {
            return Err(format!(
                "{} belongs to uid {}, who could replace what is below it",
                at.display(),
                st.st_uid
            ));
        } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(format!(
                "{} is writable by other users (mode {mode:o}) and not sticky",
                at.display()
            ));
        }
        if others_reach && mode & 0o001 == 0 {
            return Err(format!(
                "{} does not let other users through (mode {mode:o}), and services of other users must reach the notify socket",
                at.display()
            ));
        }
        fd = next;
    }
    if parts.is_empty() {
        return Err("/ is no place for a socket".into());
    }
    Ok(fd)
}

/// 64 random bits for a directory name (mkdir refuses a name that exists, so they need not be
/// secret, only unlikely to be taken).
fn random() -> u64 {
    let mut b = [0u8; 8];
    let got = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    match got {
        Ok(()) => u64::from_ne_bytes(b),
        Err(_) => {
            let t = candor_keeper::clock::mono().0.as_nanos() as u64;
            t ^ (u64::from(std::process::id()) << 32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn euid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    /// The fd of a directory `secure_dir` accepted is that directory.
    fn same_dir(fd: &OwnedFd, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let a = rustix::fs::fstat(fd).unwrap();
        let b = std::fs::symlink_metadata(dir).unwrap();
        a.st_ino == b.ino() && a.st_dev == b.dev()
    }

    #[test]
    fn the_abstract_notify_socket_of_an_earlier_version_is_found_in_the_environ() {
        let env = b"PATH=/bin\0NOTIFY_SOCKET=@candor-notify-x-12\0HOME=/\0";
        assert_eq!(abstract_name_in(env), Some("candor-notify-x-12".into()));
        assert_eq!(
            abstract_name_in(b"NOTIFY_SOCKET=/run/candor/notify/x.sock\0"),
            None
        );
        assert_eq!(abstract_name_in(b"NOTIFY_SOCKET=@\0"), None);
        assert_eq!(abstract_name_in(b"XNOTIFY_SOCKET=@a\0"), None);
        assert_eq!(abstract_name_in(b""), None);
        assert!(abstract_names_of([u32::MAX]).is_empty(), "no such process");
    }

    #[test]
    fn a_missing_directory_is_made_with_its_mode_and_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/notify");
        let fd = secure_dir(&dir, Some(0o755), euid(), false).unwrap();
        assert!(same_dir(&fd, &dir));
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
    }

    #[test]
    fn a_symlink_on_the_way_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        let why = secure_dir(&tmp.path().join("link"), Some(0o755), euid(), false).unwrap_err();
        assert!(why.contains("symlink"), "{why}");
        let why =
            secure_dir(&tmp.path().join("link/below"), Some(0o755), euid(), false).unwrap_err();
        assert!(why.contains("symlink"), "{why}");
        assert!(
            !real.join("below").exists(),
            "nothing made through the link"
        );
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        // As a parent: anyone could swap what is below.
        let why = secure_dir(&open.join("notify"), Some(0o755), euid(), false).unwrap_err();
        assert!(why.contains("writable by other users"), "{why}");
        // As the directory itself, when it is not one the daemon sets the mode of.
        let why = secure_dir(&open, None, euid(), false).unwrap_err();
        assert!(why.contains("writable by other users"), "{why}");
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        if euid() != 0 {
            eprintln!("skipped: chown needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let why = secure_dir(&theirs, Some(0o755), 0, false).unwrap_err();
        assert!(why.contains("belongs to uid 65534"), "{why}");
        let why = secure_dir(&theirs.join("notify"), Some(0o755), 0, false).unwrap_err();
        assert!(why.contains("belongs to uid 65534"), "{why}");
    }

    #[test]
    fn a_symlink_at_the_socket_path_is_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("notify");
        std::fs::create_dir(&dir).unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("n.sock")).unwrap();
        let place = Place {
            dir: dir.clone(),
            file: "n.sock".into(),
            dir_mode: Some(0o755),
            others_reach: false,
        };
        let (s, notes) = bind_in(&place, euid(), 0o666).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("was a symlink"), "{notes:?}");
        let meta = std::fs::symlink_metadata(dir.join("n.sock")).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o666);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let victim_mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_eq!(victim_mode, 0o600);
        // It answers at its path; a second bind takes the path over (an upgrade, kill -9).
        let tx = UnixDatagram::unbound().unwrap();
        tx.send_to(b"READY=1", &s.path).unwrap();
        let (again, notes) = bind_in(&place, euid(), 0o666).unwrap();
        assert!(
            notes.is_empty(),
            "our own socket is taken over silently: {notes:?}"
        );
        tx.send_to(b"WATCHDOG=1", &again.path).unwrap();
        let mut buf = [0u8; 64];
        let n = again.sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        // Removed at shutdown only while it is still the one bound.
        s.remove();
        assert!(dir.join("n.sock").exists(), "the newer socket stays");
        again.remove();
        assert!(!dir.join("n.sock").exists());
    }

    #[test]
    fn what_another_user_owns_at_the_socket_path_is_left_alone() {
        if euid() != 0 {
            eprintln!("skipped: chown needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("notify");
        std::fs::create_dir(&dir).unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = dir.join("n.sock");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        let place = Place {
            dir,
            file: "n.sock".into(),
            dir_mode: Some(0o755),
            others_reach: false,
        };
        let why = bind_in(&place, 0, 0o666).unwrap_err();
        assert!(why.contains("is a symlink of uid 65534"), "{why}");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(
            std::fs::read_dir(tmp.path().join("notify"))
                .unwrap()
                .count(),
            1,
            "no temporary socket left behind"
        );
    }

    #[test]
    fn a_handed_over_socket_is_taken_only_while_its_path_is_still_it() {
        use std::os::fd::{AsRawFd, IntoRawFd};
        let tmp = tempfile::tempdir().unwrap();
        let place = Place {
            dir: tmp.path().join("notify"),
            file: "n.sock".into(),
            dir_mode: Some(0o755),
            others_reach: false,
        };
        let (s, _) = bind_in(&place, euid(), 0o666).unwrap();
        // What the exec passes: an fd number the successor owns.
        let hand = |s: &NotifySocket| {
            let fd = s.sock.try_clone().unwrap().into_raw_fd();
            let value = s.handover();
            value.replacen(&s.sock.as_raw_fd().to_string(), &fd.to_string(), 1)
        };
        let taken = take_handed(&hand(&s)).unwrap();
        assert_eq!(taken.path, s.path);
        let tx = UnixDatagram::unbound().unwrap();
        tx.send_to(b"READY=1", &s.path).unwrap();
        let mut buf = [0u8; 16];
        let n = taken.sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        // The path was bound anew since (another daemon): not the same socket.
        let stale = hand(&s);
        let (_newer, _) = bind_in(&place, euid(), 0o666).unwrap();
        let why = take_handed(&stale).unwrap_err();
        assert!(why.contains("no longer the socket handed over"), "{why}");
        for bad in ["", "x:1:/a", "1:1:/a", "999999:1:/a"] {
            assert!(take_handed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_directory_at_the_socket_path_refuses_the_place() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("notify");
        std::fs::create_dir_all(dir.join("n.sock")).unwrap();
        let place = Place {
            dir,
            file: "n.sock".into(),
            dir_mode: Some(0o755),
            others_reach: false,
        };
        let why = bind_in(&place, euid(), 0o666).unwrap_err();
        assert!(why.contains("is a directory"), "{why}");
    }
}
