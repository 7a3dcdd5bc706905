//! What `candor check` will look up on this machine, asked before a key is written: a
//! user or group that does not exist here, or a file that is missing, would make the
//! imported config fail its check, so readers write such a key as a comment and warn.

use std::ffi::CString;
use std::path::Path;

/// Whether the user (name or number) exists here.
pub fn user_exists(name: &str) -> bool {
    if let Ok(uid) = name.parse::<u32>() {
        // SAFETY: getpwuid returns a pointer into libc's static buffer or NULL; only
        // checked against NULL (the CLI is single-threaded here).
        return !unsafe { libc::getpwuid(uid) }.is_null();
    }
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: as above, with a NUL-terminated name.
    !unsafe { libc::getpwnam(c.as_ptr()) }.is_null()
}

/// Whether the group (name) exists here.
pub fn group_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: getgrnam returns a pointer into libc's static buffer or NULL; only checked
    // against NULL.
    !unsafe { libc::getgrnam(c.as_ptr()) }.is_null()
}

/// Whether `path` is a file that can be read now.
pub fn readable(path: &Path) -> bool {
    std::fs::File::open(path).is_ok()
}

/// The directory `path` is in, absolute (symlinks resolved when it exists): where a source
/// tool ran its commands from, written into `workdir` so the config works from anywhere.
pub fn absolute_dir(path: &Path) -> std::path::PathBuf {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::canonicalize(&dir).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|cwd| cwd.join(&dir))
            .unwrap_or(dir)
    })
}

/// `program` made absolute against `dir` when it is a relative path with a `/` (`bin/web`,
/// `./run.sh`): Candor resolves such a path against the config's directory, which need not
/// be the source's. None for a bare name (looked up on PATH) or an absolute path.
pub fn relative_program(program: &str, dir: &Path) -> Option<String> {
    let relative = program.contains('/') && !Path::new(program).is_absolute();
    relative.then(|| {
        dir.join(program.trim_start_matches("./"))
            .display()
            .to_string()
    })
}
