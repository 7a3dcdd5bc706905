//! A target's cursor across daemon restarts: `<state_dir>/forward-<hash>.json` holds the id of
//! the last line it was sent, keyed by what the target is (kind, address, services), so a
//! changed target starts afresh. Written at most once a second while it moves; a daemon
//! killed in between sends those lines again (at least once, never lost).

use std::path::{Path, PathBuf};

use candor_spec::forward::ForwardSpec;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Saved {
    target: String,
    cursor: i64,
}

/// Where one target's cursor is kept, and the key it is kept under.
pub struct CursorFile {
    path: PathBuf,
    key: String,
}

impl CursorFile {
    pub fn of(state_dir: &Path, spec: &ForwardSpec) -> CursorFile {
        // What the target is, without where it is written in the config.
        let key = format!("{:?} {:?}", spec.target, spec.services);
        let hash = candor_core::hash::fnv1a(key.as_bytes());
        CursorFile {
            path: state_dir.join(format!("forward-{hash:016x}.json")),
            key,
        }
    }

    /// The saved cursor, if this target saved one (blocking: call off the async threads).
    pub fn load(&self) -> Option<i64> {
        let text = std::fs::read(&self.path).ok()?;
        let saved: Saved = serde_json::from_slice(&text).ok()?;
        (saved.target == self.key).then_some(saved.cursor)
    }

    /// Save `cursor` (blocking).
    pub fn save(&self, cursor: i64) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&Saved {
            target: self.key.clone(),
            cursor,
        })
        .map_err(std::io::Error::other)?;
        crate::records::write_atomically(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_spec::forward::ForwardTarget;

    fn spec(socket: &str) -> ForwardSpec {
        ForwardSpec {
            at: "candor.toml:3:1".into(),
            target: ForwardTarget::Journald {
                socket: socket.into(),
            },
            services: vec![],
            buffer: 1 << 20,
            catch_up: std::time::Duration::from_secs(300),
        }
    }

    #[test]
    fn a_cursor_comes_back_for_the_same_target_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = CursorFile::of(dir.path(), &spec("/run/a"));
        assert_eq!(a.load(), None);
        a.save(41).unwrap();
        a.save(42).unwrap();
        assert_eq!(a.load(), Some(42));
        // Moved in the config: the same target.
        let mut moved = spec("/run/a");
        moved.at = "candor.toml:9:1".into();
        assert_eq!(CursorFile::of(dir.path(), &moved).load(), Some(42));
        assert_eq!(CursorFile::of(dir.path(), &spec("/run/b")).load(), None);
    }
}
