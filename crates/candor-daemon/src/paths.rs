//! Where the daemon keeps its state and socket, and the name of its cgroup subtree.

use std::path::{Path, PathBuf};

use candor_spec::Spec;

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

/// `--state-dir`, else `[daemon] state_dir`, else `$XDG_STATE_HOME/candor`, else `./.candor`.
pub fn state_dir(cli: Option<&Path>, spec: &Spec) -> PathBuf {
    let p = cli
        .map(Path::to_path_buf)
        .or_else(|| spec.daemon.state_dir.clone())
        .unwrap_or_else(default_state_dir);
    absolute(p)
}

pub fn default_state_dir() -> PathBuf {
    match std::env::var_os("XDG_STATE_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("candor"),
        _ => PathBuf::from(".candor"),
    }
}

/// `--socket`, else `[daemon] socket`, else `$CANDOR_SOCKET`, else `<state_dir>/candor.sock`.
pub fn socket(cli: Option<&Path>, spec: &Spec, state_dir: &Path) -> PathBuf {
    let p = cli
        .map(Path::to_path_buf)
        .or_else(|| spec.daemon.socket.clone())
        .or_else(|| {
            std::env::var_os("CANDOR_SOCKET")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| state_dir.join("candor.sock"));
    absolute(p)
}

/// A stable name for this daemon's cgroup subtree, derived from its state dir, so a restarted
/// daemon finds the cgroups of its previous life.
pub fn instance_name(state_dir: &Path) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in state_dir.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    let base: String = state_dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| {
            s.to_string_lossy()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(24)
                .collect()
        })
        .unwrap_or_default();
    if base.is_empty() {
        format!("{h:016x}")
    } else {
        format!("{base}-{h:016x}")
    }
}
