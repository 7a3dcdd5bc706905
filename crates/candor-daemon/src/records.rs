//! Run records: what of each service outlives the daemon, so that the next daemon of the same
//! boot takes its services over instead of restarting them (after a crash, a kill -9, an
//! upgrade).
//!
//! One small JSON file per service in `<state_dir>/runs/`, replaced atomically (write a temp
//! file, rename) by a writer thread of its own whenever the service's saved facts change. They
//! live outside `candor.db` on purpose: a corrupt database must not cost the services. No
//! fsync: they must outlive the daemon, not the machine — a record from another boot (another
//! `boot_id`) is ignored, as its processes are gone with it.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use candor_brain::{Found, Saved};
use serde::{Deserialize, Serialize};

/// One service's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `/proc/sys/kernel/random/boot_id` when written.
    pub boot_id: String,
    pub service: String,
    /// The command its live run was started with.
    pub command: Vec<String>,
    pub saved: Saved,
    /// The live run's main process, as the keeper reported it.
    pub process: Option<ProcessId>,
}

/// What names a run's main process for adoption: never the pid alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub run_id: u64,
    pub pid: u32,
    /// Its start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    /// Inodes of its stdout/stderr pipes: reopened through `/proc/<pid>/fd` only if the same.
    pub stdout_ino: Option<u64>,
    pub stderr_ino: Option<u64>,
}

impl ProcessId {
    /// What the keeper needs to take this process over as `service`'s run.
    pub fn adoption(
        &self,
        service: &str,
        kill_at: Option<candor_keeper::Mono>,
        stop: candor_spec::StopSpec,
        activate: Vec<candor_spec::Listen>,
    ) -> candor_keeper::AdoptRequest {
        candor_keeper::AdoptRequest {
            service: service.into(),
            run_id: self.run_id,
            pid: self.pid,
            start_ticks: self.start_ticks,
            kill_at,
            stop_signal: stop.signal.number(),
            stop_timeout: stop.timeout,
            activate,
            // An instance (`api@2`) shares its group's activated sockets.
            listen_key: service.split_once('@').map(|(group, _)| group.to_string()),
        }
    }
}

/// A saved run found alive again, with its output pipes reopened.
pub struct Taken {
    pub found: Found,
    pub process: Option<ProcessId>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// Its recorded output pipe is there but could not be opened (the fd limit): nothing reads
    /// it, and the service will block once it is full. Said in the events.
    pub output_problem: Option<String>,
}

pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

/// The inode of a pipe (for `ProcessId`).
pub fn pipe_ino(fd: &impl AsFd) -> Option<u64> {
    let st = rustix::fs::fstat(fd).ok()?;
    Some(st.st_ino)
}

/// How adoption checks a process: by cgroup membership, or as the leader of its own group.
pub enum Contained<'a> {
    Cgroup(&'a Path),
    ProcessGroup,
}

/// What an earlier daemon of this boot left.
#[derive(Default)]
pub struct Loaded {
    /// Configured services with a record.
    pub taken: Vec<Taken>,
    /// Live runs of services no longer configured: to be stopped (with cgroups, the sweep of
    /// their cgroup does it too; in process-group mode nothing else would find them).
    pub strays: Vec<(String, ProcessId)>,
    /// Jobs' histories (`<state_dir>/jobs/`, kept across boots) of configured services.
    pub jobs: Vec<(candor_spec::ServiceName, candor_brain::jobs::SavedJob)>,
}

/// Where jobs' histories are kept: apart from the run records, since they outlive a reboot.
pub fn jobs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("jobs")
}

/// The saved histories of the configured services that are jobs (blocking). An unreadable
/// file is said and skipped: the job starts a new history.
fn load_jobs(
    state_dir: &Path,
    spec: &candor_spec::Spec,
) -> Vec<(candor_spec::ServiceName, candor_brain::jobs::SavedJob)> {
    let dir = jobs_dir(state_dir);
    spec.services
        .iter()
        .filter(|(_, s)| candor_brain::jobs::needs_job(s))
        .filter_map(|(name, _)| {
            let path = dir.join(format!("{name}.json"));
            let bytes = std::fs::read(&path).ok()?;
            match serde_json::from_slice(&bytes) {
                Ok(saved) => Some((name.clone(), saved)),
                Err(e) => {
                    eprintln!(
                        "candor: warning: ignoring unreadable job history {}: {e}",
                        path.display()
                    );
                    None
                }
            }
        })
        .collect()
}

/// Read the records of this boot and check each live run against the kernel (blocking: run it
/// off the async threads). Records from another boot and unreadable ones are skipped.
pub fn load(state_dir: &Path, spec: &candor_spec::Spec, contained: Contained) -> Loaded {
    let boot = boot_id();
    let jobs = load_jobs(state_dir, spec);
    let Ok(entries) = std::fs::read_dir(dir(state_dir)) else {
        return Loaded {
            jobs,
            ..Loaded::default()
        };
    };
    let mut out = Loaded {
        jobs,
        ..Loaded::default()
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let record: Record = match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(r) => r,
            None => {
                eprintln!(
                    "candor: warning: ignoring unreadable run record {}",
                    path.display()
                );
                continue;
            }
        };
        if record.boot_id != boot || boot.is_empty() {
            continue;
        }
        let live_pid = record
            .saved
            .run
            .as_ref()
            .filter(|r| r.ended.is_none())
            .and_then(|r| match r.spawn {
                candor_brain::Spawn::Started { pid, .. } => Some((r.id, pid)),
                _ => None,
            });
        let process = record
            .process
            .filter(|p| live_pid == Some((p.run_id, p.pid)));
        let alive = process.is_some_and(|p| is_alive(&p, &record.service, &contained));
        let Some(svc) = configured(spec, &record.service) else {
            if let (true, Some(p)) = (alive, process) {
                out.strays.push((record.service, p));
            }
            continue;
        };
        let (stdout, stderr) = match (alive, process) {
            (true, Some(p)) => (
                reopen(p.pid, 1, p.stdout_ino),
                reopen(p.pid, 2, p.stderr_ino),
            ),
            _ => (Ok(None), Ok(None)),
        };
        let output_problem = [("stdout", &stdout), ("stderr", &stderr)]
            .iter()
            .filter_map(|(stream, r)| r.as_ref().err().map(|e| format!("{stream}: {e}")))
            .collect::<Vec<_>>();
        let output_problem = (!output_problem.is_empty()).then(|| output_problem.join("; "));
        out.taken.push(Taken {
            found: Found {
                same_command: record.command == svc.command,
                service: record.service,
                saved: record.saved,
                alive,
            },
            process,
            stdout: stdout.ok().flatten(),
            stderr: stderr.ok().flatten(),
            output_problem,
        });
    }
    out
}

/// The spec a record's service has in `spec`: its own, or for an instance (`api@5`) that of its
/// group's instance — parsed if the config's count does not reach it (`candor scale`).
fn configured(
    spec: &candor_spec::Spec,
    service: &str,
) -> Option<std::sync::Arc<candor_spec::ServiceSpec>> {
    let name = candor_spec::ServiceName::new(service).ok()?;
    if let Some(s) = spec.services.get(&name) {
        return (!s.is_group()).then(|| std::sync::Arc::new(s.clone()));
    }
    let (group, index) = name.split_instance()?;
    let group = spec
        .services
        .get(&candor_spec::ServiceName::new(group).ok()?)?;
    match group.replica_specs.get(index as usize - 1) {
        Some(s) => Some(s.clone()),
        None => group.instance(index)?.ok().map(std::sync::Arc::new),
    }
}

/// Groups as the records left them: each one's count (the highest instance recorded that is
/// not a spare, if above the config's), the spares of a rollout, and the specs they need.
pub fn groups_found(
    spec: &candor_spec::Spec,
    taken: &[Taken],
) -> std::collections::BTreeMap<candor_spec::ServiceName, candor_brain::groups::Found> {
    let mut out: std::collections::BTreeMap<candor_spec::ServiceName, candor_brain::groups::Found> =
        Default::default();
    for t in taken {
        let Ok(name) = candor_spec::ServiceName::new(&t.found.service) else {
            continue;
        };
        let Some((group, index)) = name.split_instance() else {
            continue;
        };
        let Some((gname, gspec)) = candor_spec::ServiceName::new(group)
            .ok()
            .and_then(|g| spec.services.get_key_value(&g))
            .filter(|(_, s)| s.is_group())
        else {
            continue;
        };
        let f = out
            .entry(gname.clone())
            .or_insert_with(|| candor_brain::groups::Found {
                wanted: gspec.replicas.unwrap_or(1),
                ..Default::default()
            });
        if t.found.saved.spare {
            f.spares.push(index);
        } else {
            f.wanted = f.wanted.max(index);
        }
    }
    for (gname, f) in out.iter_mut() {
        let gspec = &spec.services[gname];
        let upto = f.wanted.max(f.spares.iter().copied().max().unwrap_or(0));
        let parsed = gspec.replica_specs.len() as u32;
        let mut more = std::collections::BTreeMap::new();
        for i in parsed + 1..=upto {
            if let Some(Ok(s)) = gspec.instance(i) {
                more.insert(i, std::sync::Arc::new(s));
            }
        }
        f.specs = std::sync::Arc::new(more);
    }
    out
}

/// Move the processes of every service cgroup under `from` to the same service under `to`,
/// then remove `from`: a daemon of an earlier version named its cgroup root by the state dir as
/// typed (`/srv/x/.candor/`, a symlink); this one names it by the canonical path, and takes its
/// runs over (adopted, or swept) instead of leaving them running unseen. Blocking.
pub fn move_instance(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for e in entries.flatten() {
        let (old, name) = (e.path(), e.file_name());
        if !old.is_dir() {
            continue;
        }
        let new = to.join(&name);
        if let Err(e) = std::fs::create_dir_all(&new) {
            eprintln!("candor: warning: cannot create {}: {e}", new.display());
            continue;
        }
        for pid in candor_keeper::cgroup_procs(&old) {
            if let Err(e) = std::fs::write(new.join("cgroup.procs"), pid.to_string()) {
                eprintln!(
                    "candor: warning: cannot move pid {pid} from {} to {}: {e}",
                    old.display(),
                    new.display()
                );
            }
        }
        let _ = std::fs::remove_dir(&old);
    }
    let _ = std::fs::remove_dir(from);
}

/// The recorded process still runs: same pid, same start time, not a zombie, still in the
/// service's cgroup (or still leading its own process group).
fn is_alive(p: &ProcessId, service: &str, contained: &Contained) -> bool {
    candor_keeper::start_ticks(p.pid) == Some(p.start_ticks)
        && candor_keeper::running(p.pid)
        && match contained {
            Contained::Cgroup(root) => {
                candor_keeper::cgroup_procs(&root.join(service)).contains(&p.pid)
            }
            Contained::ProcessGroup => candor_keeper::pgid(p.pid) == Some(p.pid),
        }
}

/// Open a reader of the pipe behind `/proc/<pid>/fd/<n>`, if it is still the recorded pipe.
/// The kernel kept what the service wrote while nobody read; this reader gets all of it.
/// `Ok(None)`: not the recorded pipe any more (the service closed or redirected it); an error:
/// it is, and it could not be opened.
fn reopen(pid: u32, n: u32, ino: Option<u64>) -> Result<Option<OwnedFd>, String> {
    let Some(ino) = ino else {
        return Ok(None);
    };
    let path = format!("/proc/{pid}/fd/{n}");
    match std::fs::metadata(&path) {
        Ok(meta) if meta.file_type().is_fifo() && meta.ino() == ino => {}
        _ => return Ok(None),
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    let fd = OwnedFd::from(file);
    Ok((pipe_ino(&fd) == Some(ino)).then_some(fd))
}

#[derive(Default)]
struct Pending {
    /// Per file name: the bytes to write, or None to remove it.
    files: HashMap<String, Option<Vec<u8>>>,
    /// Batches taken by the writer so far, and finished.
    taken: u64,
    done: u64,
    stop: bool,
}

/// The records' writer: the latest record per service waits here (one per service, never a
/// queue), and a thread of its own writes them.
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<(Mutex<Pending>, Condvar)>,
    boot_id: Arc<str>,
}

impl Recorder {
    pub fn start(state_dir: &Path) -> std::io::Result<Self> {
        Self::start_in(dir(state_dir))
    }

    /// A writer of JSON files in `dir` (made if missing).
    pub fn start_in(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let shared: Arc<(Mutex<Pending>, Condvar)> = Arc::default();
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("candor-records".into())
            .spawn(move || write_loop(&dir, &theirs))?;
        Ok(Self {
            shared,
            boot_id: boot_id().into(),
        })
    }

    pub fn put(&self, record: &Record) {
        let bytes = serde_json::to_vec(record).unwrap_or_default();
        self.set(&record.service, Some(bytes));
    }

    /// Write `<name>.json` with these bytes.
    pub fn put_bytes(&self, name: &str, bytes: Vec<u8>) {
        self.set(name, Some(bytes));
    }

    pub fn remove(&self, service: &str) {
        self.set(service, None);
    }

    pub fn boot_id(&self) -> String {
        self.boot_id.to_string()
    }

    fn set(&self, service: &str, bytes: Option<Vec<u8>>) {
        let (lock, cv) = &*self.shared;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        p.files.insert(format!("{service}.json"), bytes);
        cv.notify_all();
    }

    /// Wait until everything handed over so far is written (blocking).
    pub fn flush(&self) {
        let (lock, cv) = &*self.shared;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        let target = p.taken + u64::from(!p.files.is_empty());
        while p.done < target {
            p = cv.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Remove every record (after an orderly shutdown: the next daemon starts from the config).
    pub fn clear(&self, services: impl IntoIterator<Item = String>) {
        for s in services {
            self.remove(&s);
        }
        self.flush();
    }
}

fn write_loop(dir: &Path, shared: &(Mutex<Pending>, Condvar)) {
    let (lock, cv) = shared;
    loop {
        let files = {
            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
            while p.files.is_empty() && !p.stop {
                p = cv.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            if p.stop && p.files.is_empty() {
                return;
            }
            p.taken += 1;
            std::mem::take(&mut p.files)
        };
        for (name, bytes) in files {
            let path = dir.join(&name);
            let result = match bytes {
                Some(b) => write_atomically(&path, &b),
                None => remove_record(&path),
            };
            if let Err(e) = result {
                eprintln!(
                    "candor: warning: cannot write run record {}: {e}",
                    path.display()
                );
            }
        }
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        p.done += 1;
        cv.notify_all();
    }
}

/// Replace `path` with `bytes`, whole or not at all: written to `<path>.tmp`, then the two
/// names swapped (`RENAME_EXCHANGE`), so the old record becomes the next write's temp file. No
/// inode is made or freed per write: at a thousand jobs a minute, ext4's inode allocation for a
/// fresh temp file and the freeing of the replaced one cost more than the write itself. The
/// first write of a record (nothing to swap with), or a filesystem without the exchange, takes
/// a plain rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    // Written over, then cut to its length: truncating to nothing first would free the
    // file's blocks and make ext4 flush it at close (its guard for replace-by-truncate).
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.set_len(bytes.len() as u64)?;
    drop(f);
    let cwd = rustix::fs::CWD;
    match rustix::fs::renameat_with(cwd, &tmp, cwd, path, rustix::fs::RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        Err(_) => std::fs::rename(&tmp, path),
    }
}

/// Remove a record and the temp file kept beside it.
fn remove_record(path: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path.with_extension("json.tmp"));
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_replaced_whole_by_swapping_names_and_removed_with_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.json");
        let tmp = dir.path().join("api.json.tmp");
        write_atomically(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_atomically(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        // The inode of the record before is the next temp file: none made or freed per write.
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let (a, b) = (ino(&path), ino(&tmp));
        write_atomically(&path, b"3").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"3");
        assert_eq!(
            (ino(&path), ino(&tmp)),
            (b, a),
            "the two names were swapped"
        );
        remove_record(&path).unwrap();
        assert!(!path.exists() && !tmp.exists());
        remove_record(&path).unwrap();
    }
    use std::os::fd::AsRawFd;

    #[test]
    fn a_recorded_pipe_is_reopened_only_if_it_is_the_same_and_a_refusal_is_said() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let me = std::process::id();
        let n = w.as_raw_fd() as u32;
        let ino = pipe_ino(&w);
        rustix::io::write(&w, b"kept\n").unwrap();
        // The same pipe: a new reader gets what was written.
        let again = reopen(me, n, ino).unwrap().expect("the same pipe");
        let mut buf = [0u8; 16];
        assert_eq!(rustix::io::read(&again, &mut buf), Ok(5));
        // Another inode (the service redirected its output): left alone, no error.
        assert!(matches!(reopen(me, n, ino.map(|i| i + 1)), Ok(None)));
        assert!(matches!(reopen(me, n, None), Ok(None)));
        // No fd left to open it with: an error that says why, not a silent nothing.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write only `lim`; the limit is put back at once.
        let refused = unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            let low = libc::rlimit {
                rlim_cur: 3,
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &low);
            let refused = reopen(me, n, ino);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            refused
        };
        let why = refused.expect_err("EMFILE");
        assert!(
            why.starts_with(&format!("cannot open /proc/{me}/fd/{n}")),
            "{why}"
        );
        drop(r);
    }
}
