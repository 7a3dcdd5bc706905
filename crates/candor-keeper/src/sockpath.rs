//! Unix socket files made, opened up and removed without ever following a symlink. The
//! daemon runs as root: a chmod by path, after a bind, in a directory another user can write,
//! would chmod whatever that user swapped in (`/etc/shadow`). So a socket is made only in a
//! directory that nobody but root and the socket's own user can write, every step after the
//! bind works on the file through a descriptor opened with `O_NOFOLLOW` (and checked to be the
//! fresh socket: root's, one link), and a removal is an `unlinkat` relative to the directory
//! of an entry whose inode is the one made.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Who, besides root, may write the directory a socket is made in: the user (and group) the
/// socket is for — the service's, or the daemon's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirOwner {
    pub uid: u32,
    pub gid: u32,
}

impl DirOwner {
    /// The daemon's own user and group.
    pub fn daemon() -> Self {
        DirOwner {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }

    /// A service's: its `user`/`group` where it has them, else the daemon's.
    pub fn of(credentials: Option<&candor_spec::Credentials>) -> Self {
        let me = Self::daemon();
        DirOwner {
            uid: credentials.and_then(|c| c.uid).unwrap_or(me.uid),
            gid: credentials.and_then(|c| c.gid).unwrap_or(me.gid),
        }
    }
}

/// A socket file made by [`bind`]: the bound (not yet listening) socket and the file's
/// (device, inode), to tell later that the file at the path is still this one.
#[derive(Debug)]
pub struct Made {
    pub fd: OwnedFd,
    pub file: (u64, u64),
}

/// `path`'s directory and last component.
fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// `dir` as an `O_PATH` descriptor (the directory itself: a symlink as its last component is
/// refused).
fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Why `dir` (open as `fd`) is not safe to make a socket in for `owner`, if it is not: written
/// by a user other than root or `owner`, or by a group other than root's or `owner`'s.
fn unsafe_dir(dir: &Path, fd: &OwnedFd, owner: DirOwner) -> Option<String> {
    let st = match rustix::fs::fstat(fd) {
        Ok(st) => st,
        Err(e) => {
            return Some(format!(
                "its directory {} cannot be checked: {e}",
                dir.display()
            ))
        }
    };
    let mode = st.st_mode & 0o7777;
    let (uid, gid) = (st.st_uid, st.st_gid);
    let who = if uid != 0 && uid != owner.uid {
        format!("its owner, uid {uid}")
    } else if mode & 0o002 != 0 {
        "every user".to_string()
    } else if mode & 0o020 != 0 && gid != 0 && gid != owner.gid {
        format!("group {gid}")
    } else {
        return None;
    };
    let user = if owner.uid == 0 {
        "root".to_string()
    } else {
        format!("root or uid {}", owner.uid)
    };
    Some(format!(
        "its directory {} (owner uid {uid}, group {gid}, mode {mode:04o}) can be written by {who}, who could swap the socket for a symlink; use a directory only {user} can write (chown/chmod it, or move the socket)",
        dir.display()
    ))
}

/// Check that `path`'s directory is one only root and `owner` can write; the reason if not.
pub fn check_dir(path: &Path, owner: DirOwner) -> Result<(), String> {
    let (dir, _) = split(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let fd =
        open_dir(dir).map_err(|e| format!("cannot open the directory {}: {e}", dir.display()))?;
    match unsafe_dir(dir, &fd, owner) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// What a failure of [`bind`] was.
#[derive(Debug)]
pub enum BindError {
    /// The directory is not safe, or the file was swapped after the bind: a sentence.
    Refused(String),
    /// A system call failed.
    Io(io::Error),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::Refused(why) => f.write_str(why),
            BindError::Io(e) => e.fmt(f),
        }
    }
}

impl From<rustix::io::Errno> for BindError {
    fn from(e: rustix::io::Errno) -> Self {
        BindError::Io(e.into())
    }
}

impl From<io::Error> for BindError {
    fn from(e: io::Error) -> Self {
        BindError::Io(e)
    }
}

/// Make a Unix stream socket file at `path` (nothing may be there), in a directory only root
/// and `owner` can write, and give it `mode` (and `group`), never following a symlink: the
/// file is bound under the daemon's umask (077: nobody else can connect yet), then opened
/// `O_PATH|O_NOFOLLOW` relative to the directory and checked to be a socket of ours with one
/// link before its mode and group are changed through that descriptor. Returns the socket,
/// bound and not yet listening.
pub fn bind(
    path: &Path,
    mode: u32,
    group: Option<u32>,
    owner: DirOwner,
) -> Result<Made, BindError> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let (dir, name) = split(path)?;
    let dirfd = open_dir(dir)?;
    if let Some(why) = unsafe_dir(dir, &dirfd, owner) {
        return Err(BindError::Refused(why));
    }
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    // Test seam: the attack, between the bind and the chmod.
    if candor_core::fail_once("socket-swap", &path.to_string_lossy()) {
        let victim = format!("{}.victim", path.display());
        let _ = rustix::fs::unlinkat(&dirfd, name, AtFlags::empty());
        let _ = rustix::fs::symlinkat(victim, &dirfd, name);
    }
    let (file, st) = opened_as_made(&dirfd, dir, name, path)?;
    if let Some(gid) = group {
        rustix::fs::chownat(
            &file,
            "",
            None,
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::EMPTY_PATH,
        )?;
    }
    chmod_fd(&file, mode)?;
    Ok(Made {
        fd,
        file: (st.st_dev, st.st_ino),
    })
}

/// The file just bound at `dir`/`name`, opened `O_PATH|O_NOFOLLOW`, if it is still a socket of
/// ours with one link (not a symlink, another file, or a link to someone else's socket).
fn opened_as_made(
    dirfd: &OwnedFd,
    dir: &Path,
    name: &OsStr,
    path: &Path,
) -> Result<(OwnedFd, rustix::fs::Stat), BindError> {
    let file = rustix::fs::openat(
        dirfd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&file)?;
    let me = rustix::process::geteuid().as_raw();
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind == FileType::Socket && st.st_uid == me && st.st_nlink == 1 {
        return Ok((file, st));
    }
    let what = match kind {
        FileType::Symlink => "a symlink",
        FileType::Socket => "another socket",
        _ => "another file",
    };
    Err(BindError::Refused(format!(
        "{} was replaced by {what} between its bind and its chmod (someone else can write {}); nothing was changed through it",
        path.display(),
        dir.display()
    )))
}

/// chmod the file `fd` (an `O_PATH` descriptor) names: through its /proc magic link, which
/// names that inode and no path.
fn chmod_fd(fd: &OwnedFd, mode: u32) -> io::Result<()> {
    let link = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    rustix::fs::chmod(link.as_str(), Mode::from_raw_mode(mode)).map_err(|e| {
        if e == rustix::io::Errno::NOENT {
            io::Error::other("cannot change its mode without /proc mounted")
        } else {
            e.into()
        }
    })
}

/// chmod `dir`/`name` without following a symlink there: opened `O_PATH|O_NOFOLLOW` relative
/// to `dir`, refused if it is a symlink, changed through the descriptor (for the state dir's
/// own files: a link planted among them never makes the daemon chmod its target).
pub fn chmod_in(dir: &Path, name: &OsStr, mode: u32) -> io::Result<()> {
    let dirfd = open_dir(dir)?;
    let file = rustix::fs::openat(
        &dirfd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&file)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return Err(io::Error::other(
            "it is a symlink (not followed; remove it)",
        ));
    }
    chmod_fd(&file, mode)
}

/// The (device, inode) of what is at `path` itself (a symlink is not followed).
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    let (dir, name) = split(path).ok()?;
    let dirfd = open_dir(dir).ok()?;
    let st = rustix::fs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// Remove `path` if it is still the file `made` (device, inode): an `unlinkat` relative to its
/// directory (which never follows a symlink). Whether it was removed.
pub fn remove_if(path: &Path, made: (u64, u64)) -> bool {
    let Ok((dir, name)) = split(path) else {
        return false;
    };
    let Ok(dirfd) = open_dir(dir) else {
        return false;
    };
    match rustix::fs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if (st.st_dev, st.st_ino) == made => {
            rustix::fs::unlinkat(&dirfd, name, AtFlags::empty()).is_ok()
        }
        _ => false,
    }
}

/// Remove a stale socket file (one whose connect is refused, `sockfile::inspect`): only if
/// what is at `path` is still the socket that was inspected, through its directory.
pub fn remove_stale(path: &Path) -> io::Result<()> {
    let (dir, name) = split(path)?;
    let dirfd = open_dir(dir)?;
    let before = rustix::fs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(before.st_mode) != FileType::Socket {
        return Err(io::Error::other("it is no longer a socket"));
    }
    if !matches!(
        crate::sockfile::inspect(path),
        crate::sockfile::SocketFile::Stale
    ) {
        return Err(io::Error::other("it is no longer a stale socket"));
    }
    let after = rustix::fs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) {
        return Err(io::Error::other("it was replaced while it was checked"));
    }
    Ok(rustix::fs::unlinkat(&dirfd, name, AtFlags::empty())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_socket_is_made_with_its_mode_and_removed_only_while_it_is_the_one_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let made = bind(&path, 0o660, None, DirOwner::daemon()).unwrap();
        assert_eq!(mode_of(&path), 0o660);
        assert_eq!(file_id(&path), Some(made.file));
        // Replaced by another file: not removed.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        assert!(!remove_if(&path, made.file));
        assert!(path.exists());
        std::fs::remove_file(&path).unwrap();
        let again = bind(&path, 0o600, None, DirOwner::daemon()).unwrap();
        assert!(remove_if(&path, again.file));
        assert!(!path.exists());
    }

    #[test]
    fn a_state_file_is_chmodded_but_a_symlink_in_its_place_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("candor.db");
        std::fs::write(&db, "").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        chmod_in(dir.path(), OsStr::new("candor.db"), 0o600).unwrap();
        assert_eq!(mode_of(&db), 0o600);
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("runs")).unwrap();
        let err = chmod_in(dir.path(), OsStr::new("runs"), 0o700).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(mode_of(&victim), 0o644);
        let missing = chmod_in(dir.path(), OsStr::new("none"), 0o600).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_directory_others_can_write_is_refused_with_its_owner_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = bind(&open.join("a.sock"), 0o660, None, DirOwner::daemon()).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("mode 0777") && err.contains("every user"),
            "{err}"
        );
        assert!(err.contains(&open.display().to_string()), "{err}");
        assert!(!open.join("a.sock").exists(), "nothing made");
        // Sticky or not: another user could have taken the name first.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check_dir(&open.join("a.sock"), DirOwner::daemon()).is_err());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check_dir(&open.join("a.sock"), DirOwner::daemon()).is_ok());
    }

    #[test]
    fn a_group_writable_directory_is_fine_only_for_roots_or_the_owners_group() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o775)).unwrap();
        let me = DirOwner::daemon();
        // A group that is not root's (needs root to give the directory away).
        let gid = 65534;
        if rustix::fs::chown(&shared, None, Some(rustix::fs::Gid::from_raw(gid))).is_err() {
            eprintln!("skipped: cannot chown here (not root)");
            return;
        }
        let sock = shared.join("a.sock");
        assert!(check_dir(&sock, DirOwner { gid, ..me }).is_ok());
        let err = check_dir(&sock, DirOwner { gid: 0, ..me }).unwrap_err();
        assert!(err.contains(&format!("group {gid}")), "{err}");
        assert!(err.contains("mode 0775"), "{err}");
        // Owned by another user, not writable by anyone else: still refused (it may chmod).
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        rustix::fs::chown(&shared, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
        let err = check_dir(&sock, DirOwner { uid: 0, gid: 0 }).unwrap_err();
        assert!(err.contains("owner, uid 65534"), "{err}");
        assert!(check_dir(&sock, DirOwner { uid: 65534, gid: 0 }).is_ok());
    }

    #[test]
    fn a_symlink_swapped_in_after_the_bind_is_never_chmodded_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let victim = dir.path().join("api.sock.victim");
        std::fs::write(&victim, "secret").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dirfd = open_dir(dir.path()).unwrap();
        let fd = rustix::net::socket(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            None,
        )
        .unwrap();
        rustix::net::bind(&fd, &rustix::net::SocketAddrUnix::new(&path).unwrap()).unwrap();
        // The swap (the scenario test makes it with the `socket-swap` failpoint inside `bind`).
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = match opened_as_made(&dirfd, dir.path(), OsStr::new("api.sock"), &path) {
            Err(BindError::Refused(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(err.contains("replaced by a symlink"), "{err}");
        assert_eq!(mode_of(&victim), 0o600);
        let st = std::fs::symlink_metadata(&path).unwrap();
        // And the stale-file and removal paths never follow it either.
        assert!(remove_stale(&path).is_err());
        assert!(!remove_if(&path, (st.dev(), st.ino() + 1)));
        assert!(victim.exists() && path.exists());
    }
}
