//! Whether a file may be run as the daemon (`candor upgrade`): it and every directory above
//! it — through every symlink, each link's target checked the same way — must be owned by
//! root or the daemon's user and writable by no one else, as sudo checks its secure path.
//! Otherwise someone else could put their program there between the check and the exec.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Why a path cannot be trusted; shown after "not upgrading to X: ".
#[derive(Debug, PartialEq, Eq)]
pub enum Untrusted {
    /// A component someone else could change: it, and what is wrong ("is writable by others
    /// (mode 1777)"), and the symlink that led there, if one did.
    Unsafe {
        path: PathBuf,
        why: String,
        via: Option<PathBuf>,
    },
    NotAbsolute,
    /// A component could not be read (missing, a loop of links, …).
    Unreadable {
        path: PathBuf,
        error: String,
    },
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Untrusted::Unsafe { path, why, via } => {
                write!(f, "{} {why}", path.display())?;
                if let Some(link) = via {
                    write!(f, " (reached through the symlink {})", link.display())?;
                }
                Ok(())
            }
            Untrusted::NotAbsolute => write!(f, "the path is not absolute"),
            Untrusted::Unreadable { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

/// What is wrong with a file or directory of `uid`, `gid` and `mode` that only root or
/// `trusted` may be able to change, if anything.
fn judge(uid: u32, gid: u32, mode: u32, trusted: u32) -> Option<String> {
    let mode = mode & 0o7777;
    if uid != 0 && uid != trusted {
        let who = match trusted {
            0 => "root".to_string(),
            t => format!("root or uid {t}"),
        };
        return Some(format!(
            "is owned by uid {uid}, not {who} (mode {mode:04o})"
        ));
    }
    if mode & 0o002 != 0 {
        return Some(format!("is writable by others (mode {mode:04o})"));
    }
    if mode & 0o020 != 0 {
        return Some(format!(
            "is writable by its group, gid {gid} (mode {mode:04o})"
        ));
    }
    None
}

/// Links followed at most, as the kernel's ELOOP.
const MAX_LINKS: usize = 40;

/// Check `path` for running as the daemon of uid `trusted`: `/`, every directory on the way,
/// the target of every symlink met (followed component by component, never by the kernel
/// alone), and the file at the end. The path it resolves to, or why it is not to be trusted.
pub fn check(path: &Path, trusted: u32) -> Result<PathBuf, Untrusted> {
    if !path.is_absolute() {
        return Err(Untrusted::NotAbsolute);
    }
    let meta = |p: &Path| {
        std::fs::symlink_metadata(p).map_err(|e| Untrusted::Unreadable {
            path: p.to_path_buf(),
            error: e.to_string(),
        })
    };
    let unsafe_at = |p: &Path, m: &std::fs::Metadata, via: &Option<PathBuf>| {
        judge(m.uid(), m.gid(), m.mode(), trusted).map(|why| Untrusted::Unsafe {
            path: p.to_path_buf(),
            why,
            via: via.clone(),
        })
    };
    let root = Path::new("/");
    if let Some(bad) = unsafe_at(root, &meta(root)?, &None) {
        return Err(bad);
    }
    // Components still to walk, last first; `at` is checked and free of symlinks.
    let mut todo: Vec<OsString> = components(path);
    let mut at = PathBuf::from("/");
    let mut via: Option<PathBuf> = None;
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            at.pop();
            continue;
        }
        let next = at.join(&name);
        let m = meta(&next)?;
        if m.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(Untrusted::Unreadable {
                    path: path.to_path_buf(),
                    error: "too many levels of symbolic links".into(),
                });
            }
            // The link sits in `at`, which only trusted users can write: its target is what
            // they chose. That target is walked (and judged) like the rest.
            let target = std::fs::read_link(&next).map_err(|e| Untrusted::Unreadable {
                path: next.clone(),
                error: e.to_string(),
            })?;
            if target.is_absolute() {
                at = PathBuf::from("/");
            }
            todo.extend(components(&target));
            via = Some(next);
            continue;
        }
        if let Some(bad) = unsafe_at(&next, &m, &via) {
            return Err(bad);
        }
        at = next;
    }
    Ok(at)
}

/// The names in `p` (no root, no `.`), last first, to be popped in order.
fn components(p: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn me() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    /// A temp dir under this crate's target dir (not /tmp, which is writable by everyone):
    /// 0755, owned by whoever runs the tests. Where the checkout itself sits under a directory
    /// others may write (a clone in /tmp), root uses /var/lib/candor-test-tmp instead.
    fn base() -> tempfile::TempDir {
        let mut parent =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/trusted-path-tests");
        std::fs::create_dir_all(&parent).unwrap();
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        if check(&parent.canonicalize().unwrap(), me()).is_err() && me() == 0 {
            parent = PathBuf::from("/var/lib/candor-test-tmp");
            std::fs::create_dir_all(&parent).unwrap();
            std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Spelled without `..`, as the check names what it finds.
        let d = tempfile::tempdir_in(parent.canonicalize().unwrap()).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn mode(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    fn binary(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let b = dir.join("candor");
        std::fs::write(&b, "#!/bin/sh\n").unwrap();
        mode(&b, 0o755);
        b
    }

    fn why(r: Result<PathBuf, Untrusted>) -> String {
        r.expect_err("untrusted").to_string()
    }

    #[test]
    fn a_binary_in_directories_only_its_owner_can_write_is_trusted() {
        let d = base();
        let b = binary(&d.path().join("bin"));
        assert_eq!(check(&b, me()), Ok(b.canonicalize().unwrap()));
        // Spelled with `.` and `..`, the same file.
        let odd = d.path().join("bin/./../bin/candor");
        assert_eq!(check(&odd, me()), Ok(b.canonicalize().unwrap()));
    }

    #[test]
    fn a_directory_writable_by_others_or_its_group_is_named_with_its_mode() {
        let d = base();
        let dir = d.path().join("open");
        let b = binary(&dir);
        mode(&dir, 0o1777);
        assert_eq!(
            why(check(&b, me())),
            format!("{} is writable by others (mode 1777)", dir.display())
        );
        mode(&dir, 0o775);
        assert!(
            why(check(&b, me())).contains("open is writable by its group"),
            "{}",
            why(check(&b, me()))
        );
        mode(&dir, 0o755);
        mode(&b, 0o777);
        assert_eq!(
            why(check(&b, me())),
            format!("{} is writable by others (mode 0777)", b.display())
        );
    }

    #[test]
    fn tmp_itself_is_not_trusted() {
        let e = why(check(Path::new("/tmp/candor"), me()));
        assert!(e.starts_with("/tmp is writable by others"), "{e}");
    }

    #[test]
    fn a_directory_or_binary_owned_by_someone_else_is_not_trusted() {
        if me() != 0 {
            eprintln!("skipped: chown to another user needs root");
            return;
        }
        let d = base();
        let dir = d.path().join("theirs");
        let b = binary(&dir);
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        assert_eq!(
            why(check(&b, 0)),
            format!(
                "{} is owned by uid 65534, not root (mode 0755)",
                dir.display()
            )
        );
        // Trusted when it is the daemon's own user.
        assert!(check(&b, 65534).is_ok());
        std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
        std::os::unix::fs::chown(&b, Some(65534), Some(0)).unwrap();
        assert!(why(check(&b, 0)).contains("candor is owned by uid 65534"));
    }

    #[test]
    fn a_symlink_from_a_safe_directory_into_an_unsafe_one_is_followed_and_refused() {
        let d = base();
        let open = d.path().join("open");
        let target = binary(&open);
        mode(&open, 0o777);
        let safe = d.path().join("safe");
        std::fs::create_dir(&safe).unwrap();
        mode(&safe, 0o755);
        let link = safe.join("candor");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(
            why(check(&link, me())),
            format!(
                "{} is writable by others (mode 0777) (reached through the symlink {})",
                open.display(),
                link.display()
            )
        );
        // A relative link, and a link to a directory on the way, the same.
        let rel = safe.join("rel");
        std::os::unix::fs::symlink("../open/candor", &rel).unwrap();
        assert!(why(check(&rel, me())).contains("open is writable by others"));
        let dirlink = safe.join("dir");
        std::os::unix::fs::symlink(&open, &dirlink).unwrap();
        assert!(why(check(&dirlink.join("candor"), me())).contains("open is writable by others"));
        // Once the target's directory is safe, so is the link.
        mode(&open, 0o755);
        assert_eq!(check(&link, me()), Ok(target.canonicalize().unwrap()));
    }

    #[test]
    fn a_missing_file_a_loop_and_a_relative_path_are_refused() {
        let d = base();
        assert!(matches!(
            check(&d.path().join("nope"), me()),
            Err(Untrusted::Unreadable { .. })
        ));
        let a = d.path().join("a");
        std::os::unix::fs::symlink(&a, &a).unwrap();
        assert!(why(check(&a, me())).contains("too many levels of symbolic links"));
        assert_eq!(
            check(Path::new("bin/candor"), me()),
            Err(Untrusted::NotAbsolute)
        );
    }
}
