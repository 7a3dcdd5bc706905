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

/// The daemon's own cgroup (the `0::` line of /proc/self/cgroup), relative to the mount.
fn own_cgroup() -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

/// The leaf the daemon moves itself into when it must enable controllers in its own cgroup
/// (the kernel enables them for a cgroup's children only when it has no processes itself).
pub const DAEMON_LEAF: &str = "candor-daemon";

/// Where Candor's subtree goes: under the daemon's own cgroup — the one systemd delegates with
/// `Delegate=yes`, or a user's `user@.service` subtree — not at the mount's root, outside any
/// delegation. A daemon that moved itself into [`DAEMON_LEAF`] (in an earlier life, before an
/// upgrade's exec) means its parent.
fn base_for(mount: &Path, own: &str) -> PathBuf {
    let own = own.trim_start_matches('/');
    let own = own
        .strip_suffix(DAEMON_LEAF)
        .map(|p| p.trim_end_matches('/'))
        .unwrap_or(own);
    if own.is_empty() {
        mount.to_path_buf()
    } else {
        mount.join(own)
    }
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
    // Under our own cgroup first; where that is not ours to write (a cgroup someone else
    // delegates nothing in), the mount's root as before.
    let own = own_cgroup().map(|o| base_for(&mount, &o));
    let mut why = String::new();
    for base in own.into_iter().chain([mount.clone()]) {
        let root = base.join("candor").join(instance);
        match writable(&root) {
            Ok(()) => return Containment::Cgroup { root },
            Err(e) => why = e,
        }
    }
    Containment::ProcessGroup { why }
}

/// Make `root` and check that cgroups can be created in it for real.
fn writable(root: &Path) -> Result<(), String> {
    fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let probe = root.join(".probe");
    match fs::create_dir(&probe) {
        Ok(()) => {
            let _ = fs::remove_dir(&probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!(
            "cannot create cgroups under {}: {e}",
            root.display()
        )),
    }
}

/// Enable `controllers` (memory, pids, cpu) from Candor's base cgroup down to `root`
/// (`<base>/candor/<instance>`), so that each service's cgroup has their files. When the base
/// is not the mount's root and holds the daemon, the daemon first moves itself into
/// `<base>/candor-daemon`. Each controller's outcome; an error says why limits cannot be
/// enforced here (controllers missing for one reason share one sentence).
pub(crate) fn enable(
    mount: &Path,
    root: &Path,
    controllers: &[&'static str],
) -> Vec<(&'static str, Result<(), String>)> {
    let Some(base) = root.parent().and_then(Path::parent) else {
        let why = format!("{} is not <base>/candor/<instance>", root.display());
        return controllers.iter().map(|c| (*c, Err(why.clone()))).collect();
    };
    let offered = fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    let (present, missing): (Vec<&'static str>, Vec<&'static str>) = controllers
        .iter()
        .partition(|c| offered.split_whitespace().any(|o| o == **c));
    let mut out: Vec<(&'static str, Result<(), String>)> = Vec::new();
    if !missing.is_empty() {
        let list = if offered.trim().is_empty() {
            "none"
        } else {
            offered.trim()
        };
        let (names, verb) = match missing.as_slice() {
            [one] => (format!("the {one} controller is"), "it is"),
            many => (
                format!("the {} controllers are", many.join(" and ")),
                "they are",
            ),
        };
        let why = format!(
            "{names} not available to {} (it has: {list}); where cgroup v1 is still mounted beside v2 (a hybrid setup) {verb} bound to v1: boot with systemd.unified_cgroup_hierarchy=1, or delegate {} to Candor's cgroup",
            base.display(),
            if missing.len() == 1 { "it" } else { "them" }
        );
        out.extend(missing.iter().map(|c| (*c, Err(why.clone()))));
    }
    if present.is_empty() {
        return out;
    }
    if let Err(why) = own_leaf(mount, base) {
        out.extend(present.iter().map(|c| (*c, Err(why.clone()))));
        return out;
    }
    for controller in present {
        let mut result = Ok(());
        for dir in [base.to_path_buf(), base.join("candor"), root.to_path_buf()] {
            let enabled =
                fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
            if enabled.split_whitespace().any(|c| c == controller) {
                continue;
            }
            if let Err(e) = fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}"))
            {
                result = Err(format!(
                    "cannot enable the {controller} controller in {}: {e}",
                    dir.display()
                ));
                break;
            }
        }
        out.push((controller, result));
    }
    out
}

/// A base that is not the mount's root may enable controllers only without processes of its
/// own: move the daemon into `<base>/candor-daemon`, and refuse if others remain.
fn own_leaf(mount: &Path, base: &Path) -> Result<(), String> {
    if base == mount || procs(base).is_empty() {
        return Ok(());
    }
    let leaf = base.join(DAEMON_LEAF);
    fs::create_dir_all(&leaf)
        .and_then(|()| fs::write(leaf.join("cgroup.procs"), std::process::id().to_string()))
        .map_err(|e| format!("cannot move the daemon into {}: {e}", leaf.display()))?;
    let others = procs(base);
    if others.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} holds processes other than Candor ({}); the kernel enables a controller for a cgroup's children only when it has no processes of its own: give Candor a cgroup of its own (systemd: Delegate=yes)",
        base.display(),
        others
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Write a service's limits into its cgroup `cg`: each one set, and each one not set back to
/// its default where the file exists (a cgroup kept from a run with other limits). Returns
/// what could not be written.
pub(crate) fn write_limits(
    cg: &Path,
    limits: &candor_spec::CgroupLimits,
    enabled: impl Fn(&str) -> bool,
) -> Vec<String> {
    let set: Vec<_> = limits
        .files()
        .into_iter()
        .filter(|(controller, _, _)| enabled(controller))
        .collect();
    let defaults = [
        ("memory.max", "max"),
        ("memory.high", "max"),
        ("pids.max", "max"),
        ("cpu.weight", "100"),
        ("cpu.max", "max 100000"),
    ];
    let mut errors = Vec::new();
    for (file, default) in defaults {
        let path = cg.join(file);
        match set.iter().find(|(_, f, _)| *f == file) {
            Some((_, _, value)) => {
                if let Err(e) = fs::write(&path, value) {
                    errors.push(format!("cannot write {value} to {}: {e}", path.display()));
                }
            }
            None if path.exists() => {
                let _ = fs::write(&path, default);
            }
            None => {}
        }
    }
    errors
}

/// How many times the kernel's OOM killer has killed in `cg` (`oom_kill` of memory.events;
/// 0 without the memory controller).
pub(crate) fn oom_kills(cg: &Path) -> u64 {
    fs::read_to_string(cg.join("memory.events"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The cgroup2 mount (for [`enable`]).
pub(crate) fn mount() -> Option<PathBuf> {
    cgroup2_mount()
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

    /// A fake cgroup tree: each dir with the files `enable` reads and writes.
    fn fake(dir: &std::path::Path, controllers: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
        std::fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
    }

    #[test]
    fn the_subtree_goes_under_the_daemons_own_cgroup() {
        use std::path::{Path, PathBuf};
        let m = Path::new("/sys/fs/cgroup");
        assert_eq!(super::base_for(m, "/"), PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(
            super::base_for(m, "/system.slice/candor.service"),
            PathBuf::from("/sys/fs/cgroup/system.slice/candor.service")
        );
        // After moving itself into its leaf (and an upgrade's exec), the same base.
        assert_eq!(
            super::base_for(m, "/system.slice/candor.service/candor-daemon"),
            PathBuf::from("/sys/fs/cgroup/system.slice/candor.service")
        );
        assert_eq!(
            super::base_for(m, "/user.slice/user-1000.slice/user@1000.service/app.slice/candor.service"),
            PathBuf::from("/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/candor.service")
        );
    }

    #[test]
    fn controllers_are_enabled_down_the_chain_or_the_reason_is_given() {
        let t = tempfile::tempdir().unwrap();
        let mount = t.path();
        let root = mount.join("candor").join("inst");
        fake(mount, "cpu memory pids");
        fake(&mount.join("candor"), "cpu memory pids");
        fake(&root, "cpu memory pids");
        let all_ok = |r: Vec<(&str, Result<(), String>)>| r.into_iter().all(|(_, r)| r.is_ok());
        assert!(all_ok(super::enable(mount, &root, &["memory"])));
        for dir in [mount.to_path_buf(), mount.join("candor"), root.clone()] {
            let ctl = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap();
            assert_eq!(ctl, "+memory", "{}", dir.display());
        }
        // A base that is not the mount's root and holds processes other than the daemon: the
        // daemon moves itself into its leaf, and the others are named.
        let base = mount.join("svc");
        let root2 = base.join("candor").join("inst");
        fake(&base, "memory");
        fake(&base.join("candor"), "memory");
        fake(&root2, "memory");
        std::fs::write(base.join("cgroup.procs"), "4242\n").unwrap();
        let err = super::enable(mount, &root2, &["memory"])[0]
            .1
            .clone()
            .unwrap_err();
        assert!(
            err.contains("holds processes other than Candor (4242)"),
            "{err}"
        );
        assert!(err.contains("Delegate=yes"), "{err}");
        let moved = std::fs::read_to_string(base.join("candor-daemon/cgroup.procs")).unwrap();
        assert_eq!(moved, std::process::id().to_string());
        // A hybrid system: memory is bound to cgroup v1.
        std::fs::write(mount.join("cgroup.controllers"), "hugetlb\n").unwrap();
        let both = super::enable(mount, &root, &["memory", "pids"]);
        assert_eq!(both.len(), 2);
        let err = both[0].1.clone().unwrap_err();
        assert_eq!(Err(err.clone()), both[1].1, "one sentence for both");
        assert!(
            err.contains("the memory and pids controllers are not available"),
            "{err}"
        );
        assert!(err.contains("it has: hugetlb"), "{err}");
    }

    #[test]
    fn limits_are_written_and_unset_ones_reset_and_oom_kills_read() {
        let t = tempfile::tempdir().unwrap();
        let cg = t.path();
        for f in [
            "memory.max",
            "memory.high",
            "pids.max",
            "cpu.weight",
            "cpu.max",
        ] {
            std::fs::write(cg.join(f), "old").unwrap();
        }
        let limits = candor_spec::CgroupLimits {
            memory_max: Some(512 << 20),
            pids_max: Some(64),
            ..Default::default()
        };
        assert!(super::write_limits(cg, &limits, |_| true).is_empty());
        let read = |f: &str| std::fs::read_to_string(cg.join(f)).unwrap();
        assert_eq!(read("memory.max"), (512u64 << 20).to_string());
        assert_eq!(read("pids.max"), "64");
        assert_eq!(read("memory.high"), "max");
        assert_eq!(read("cpu.weight"), "100");
        assert_eq!(read("cpu.max"), "max 100000");
        assert_eq!(super::oom_kills(cg), 0);
        std::fs::write(
            cg.join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(super::oom_kills(cg), 2);
    }
}
