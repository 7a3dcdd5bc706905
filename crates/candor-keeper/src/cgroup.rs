//! cgroup v2 containment: find the mount, make `candor/<instance>/<service>`, list, kill.
//! Falls back to process groups (with the reason) where cgroups are not writable.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How services are contained, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Containment {
    /// Each service in `<root>/<service>`.
    Cgroup { root: PathBuf },
    /// Process groups only: a grandchild that calls setsid() escapes.
    ProcessGroup { why: String },
}

impl Containment {
    pub fn describe(&self) -> String {
        match self {
            Containment::Cgroup { root } => format!("cgroup v2 at {}", root.display()),
            Containment::ProcessGroup { why } => format!(
                "process groups only ({why}); a grandchild that leaves its process group cannot be tracked"
            ),
        }
    }
}

/// The cgroup2 mount point, from /proc/mounts.
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_dev, path, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(path))
    })
}

pub fn detect(instance: &str, enabled: bool) -> Containment {
    if !enabled {
        return Containment::ProcessGroup {
            why: "cgroups turned off (CANDOR_CGROUP=off)".into(),
        };
    }
    let Some(mount) = cgroup2_mount() else {
        return Containment::ProcessGroup {
            why: "no cgroup2 filesystem is mounted".into(),
        };
    };
    let root = mount.join("candor").join(instance);
    if let Err(e) = fs::create_dir_all(&root) {
        return Containment::ProcessGroup {
            why: format!("cannot create {}: {e}", root.display()),
        };
    }
    // Writable for real? Make and remove a probe child.
    let probe = root.join(".probe");
    match fs::create_dir(&probe).or_else(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Ok(())
        } else {
            Err(e)
        }
    }) {
        Ok(()) => {
            let _ = fs::remove_dir(&probe);
            Containment::Cgroup { root }
        }
        Err(e) => Containment::ProcessGroup {
            why: format!("cannot create cgroups under {}: {e}", root.display()),
        },
    }
}

/// Whether any task, exiting ones included, is still in the cgroup (`cgroup.events`).
/// `cgroup.procs` stops listing a task as soon as it is exiting; `rmdir` waits for this.
pub(crate) fn populated(cg: &Path) -> bool {
    fs::read_to_string(cg.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l.trim() == "populated 1"))
        .unwrap_or(false)
}

/// Pids in a cgroup (empty if it does not exist). Exported as [`crate::cgroup_procs`].
/// The pids in a cgroup. A process outside our pid namespace is listed as 0; it is left out,
/// since kill(0, sig) would signal the daemon's own process group.
pub fn procs(cg: &Path) -> Vec<u32> {
    fs::read_to_string(cg.join("cgroup.procs"))
        .map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .filter(|pid| *pid != 0)
                .collect()
        })
        .unwrap_or_default()
}

/// Signal every process in the cgroup, race-free: each pid read from `cgroup.procs` is pinned
/// with a pidfd, checked to be in `cg` still (a process that exited after the read and whose
/// pid was reused elsewhere is not), and signalled through the pidfd. Where the kernel has no
/// pidfds (before 5.3), plain kill(2). With `signalled_group`, the processes of that process
/// group are left out: they were signalled with the group (a second SIGTERM means "force" to
/// many programs).
pub(crate) fn signal_all(cg: &Path, sig: i32, signalled_group: Option<i32>) {
    for pid in procs(cg) {
        let Ok(pid) = i32::try_from(pid) else {
            continue;
        };
        // SAFETY: getpgid(2) reads a process's group; no memory is touched.
        if signalled_group.is_some_and(|g| pid == g || unsafe { libc::getpgid(pid) } == g) {
            continue;
        }
        match crate::pidfd::open(pid) {
            Ok(fd) => {
                if in_cgroup(pid, cg) {
                    crate::pidfd::send_signal(&fd, sig);
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                // SAFETY: kill(2) with a pid read from the cgroup; no memory is touched.
                unsafe { libc::kill(pid, sig) };
            }
            Err(_) => {} // gone already
        }
    }
}

/// Whether `pid` is in the cgroup `cg` (an absolute path under the cgroup2 mount).
fn in_cgroup(pid: i32, cg: &Path) -> bool {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|rel| {
            let rel = rel.trim().trim_start_matches('/');
            !rel.is_empty() && cg.ends_with(rel)
        })
        .unwrap_or(false)
}

/// SIGKILL everything in the cgroup: `cgroup.kill` where the kernel has it, else one by one.
pub(crate) fn kill_all(cg: &Path) {
    let ok = fs::OpenOptions::new()
        .write(true)
        .open(cg.join("cgroup.kill"))
        .and_then(|mut f| f.write_all(b"1"))
        .is_ok();
    if !ok {
        signal_all(cg, libc::SIGKILL, None);
    }
}

/// Make `cg` a fresh, empty cgroup: kill what an earlier run or daemon left in it, wait up to
/// 2 s for it to go, then remove and recreate the directory. Returns how many were killed.
///
/// Why recreate: once `cgroup.kill` has been written to a cgroup, this kernel SIGKILLs every
/// child later cloned into it with CLONE_INTO_CGROUP (seen on 6.18). A new cgroup has never
/// been killed, so spawning into it is safe.
pub(crate) fn make_fresh(cg: &Path) -> std::io::Result<usize> {
    fs::create_dir_all(cg)?;
    let found = procs(cg).len();
    if found > 0 {
        kill_all(cg);
        let deadline = Instant::now() + Duration::from_secs(2);
        // Zombies leave cgroup.procs on exit; the keeper's loop reaps them later.
        while !procs(cg).is_empty() && Instant::now() < deadline {
            signal_all(cg, libc::SIGKILL, None);
            std::thread::sleep(Duration::from_millis(5));
        }
        if !procs(cg).is_empty() {
            return Err(std::io::Error::other(format!(
                "processes in {} survived SIGKILL for 2 s (uninterruptible sleep?)",
                cg.display()
            )));
        }
    }
    // Exiting tasks keep the cgroup populated for a moment after leaving cgroup.procs.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(cg) {
            Ok(()) => break,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => {
                let what = if populated(cg) {
                    "still has exiting processes"
                } else {
                    "cannot be removed"
                };
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{} {what}: {e}", cg.display()),
                ));
            }
        }
    }
    fs::create_dir(cg)?;
    Ok(found)
}

/// Kill and remove service cgroups under `root` whose names are not in `keep`.
pub(crate) fn sweep(root: &Path, keep: &[String]) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(root) else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.path().is_dir() || keep.contains(&name) {
            continue;
        }
        let _ = make_fresh(&e.path());
        if fs::remove_dir(e.path()).is_ok() {
            removed.push(name);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    #[test]
    fn membership_is_read_from_the_kernel_not_assumed() {
        let me = std::process::id() as i32;
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let Some(rel) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
            return; // no cgroup v2 here
        };
        let ours = std::path::Path::new("/sys/fs/cgroup").join(rel.trim().trim_start_matches('/'));
        if rel.trim() != "/" {
            assert!(super::in_cgroup(me, &ours));
        }
        assert!(!super::in_cgroup(
            me,
            std::path::Path::new("/sys/fs/cgroup/candor/elsewhere")
        ));
        assert!(!super::in_cgroup(i32::MAX, &ours), "no such process");
    }
}
