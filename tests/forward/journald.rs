//! systemd-journald (Debian's systemd package) as the journald receiver of the forwarding
//! tests. It runs outside systemd here: in a mount namespace of its own (`unshare --mount`)
//! where the test's directories are bind-mounted over /run/systemd/journal (its sockets) and
//! /run/log/journal (its files), so the host's journal is not touched, the test reaches its
//! socket at `<dir>/journal-run/socket`, and `journalctl --directory` reads what it kept.
//! Making a mount namespace takes root: elsewhere the tests say "skipped".

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use candor_scenarios::{available, wait_for};
use serde_json::Value;

const JOURNALD: &str = "/lib/systemd/systemd-journald";

pub struct Journald {
    /// The native protocol's socket (`/run/systemd/journal/socket` inside).
    pub socket: PathBuf,
    files: PathBuf,
    child: Child,
}

impl Journald {
    pub fn start(dir: &Path) -> Option<Journald> {
        // SAFETY: geteuid only reads.
        let root = unsafe { libc::geteuid() } == 0;
        let why = "systemd-journald is run in a mount namespace of its own, which needs root \
                   and Debian's systemd (scripts/test.sh installs it)";
        let here = root && Path::new(JOURNALD).exists() && Path::new("/usr/bin/unshare").exists();
        if !available("CANDOR_REQUIRE_ROOT", why, here) {
            return None;
        }
        let (run, files) = (dir.join("journal-run"), dir.join("journal-files"));
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(&files).unwrap();
        let script = format!(
            "set -e; mkdir -p /run/systemd/journal /run/log/journal; \
             mount --bind '{}' /run/systemd/journal; mount --bind '{}' /run/log/journal; \
             exec {JOURNALD}",
            run.display(),
            files.display()
        );
        let child = Command::new("/usr/bin/unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start systemd-journald");
        let j = Journald {
            socket: run.join("socket"),
            files,
            child,
        };
        // Its own "Journal started" entry is written once it listens.
        wait_for("systemd-journald to start", Duration::from_secs(20), || {
            (j.socket.exists() && !j.entries("SYSLOG_IDENTIFIER=systemd-journald").is_empty())
                .then_some(())
        });
        Some(j)
    }

    /// The entries matching `filter` (`FIELD=value`), oldest first, every field in full.
    pub fn entries(&self, filter: &str) -> Vec<Value> {
        let out = Command::new("journalctl")
            .arg("--directory")
            .arg(&self.files)
            .args(["--all", "--output=json", "--no-pager", filter])
            .output()
            .expect("run journalctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field's value as text: journalctl writes a value that is not printable UTF-8 as an array
/// of byte values.
pub fn text(entry: &Value, field: &str) -> Option<String> {
    match entry.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Array(bytes) => {
            let bytes: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64())
                .map(|b| b as u8)
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => None,
    }
}
