//! What every spawn shares: the paths prepared before one (markers, stale declared sockets),
//! output pipes, fd placement, credentials, signal reset, the command's lookup on PATH (done in
//! the child) and the sentences that explain a failure. The clone itself is in `clone3.rs`
//! (services) and `probe_spawn.rs` (exec probes, reload commands, the upgrade check).

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::pipe::{pipe_with, PipeFlags};

use candor_spec::Credentials;

use crate::SpawnRequest;

/// The kernel's `struct sigaction` (x86_64 and aarch64 layout), for the raw syscall: glibc's
/// `signal()` refuses its reserved signals 32 and 33, which a daemon may still have inherited
/// as ignored.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Between clone and exec: every signal at its default disposition, then nothing blocked (in
/// that order: a child whose signals the parent blocked across the clone never runs one of the
/// daemon's handlers). Async-signal-safe, errno untouched: raw syscalls only.
pub(crate) unsafe fn reset_signals() {
    let dfl = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64usize {
        if sig != libc::SIGKILL as usize && sig != libc::SIGSTOP as usize {
            let _ = crate::sys::call(
                libc::SYS_rt_sigaction,
                [sig, &dfl as *const KernelSigaction as usize, 0, 8, 0, 0],
            );
        }
    }
    let empty: u64 = 0;
    let _ = crate::sys::call(
        libc::SYS_rt_sigprocmask,
        [
            libc::SIG_SETMASK as usize,
            &empty as *const u64 as usize,
            0,
            8,
            0,
            0,
        ],
    );
}

pub(crate) struct Spawned {
    pub pid: u32,
    /// From CLONE_PIDFD where available (no pid-reuse race).
    pub pidfd: Option<OwnedFd>,
    /// Read ends of stdout/stderr (None when output is discarded).
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// Read end of the readiness pipe (`ready_fd`).
    pub ready: Option<OwnedFd>,
}

/// Before a spawn: remove readiness markers and stale declared sockets; refuse when a
/// declared socket has a live listener (another copy is serving there).
pub(crate) fn prepare_paths(req: &SpawnRequest) -> Result<(), String> {
    for f in &req.clear_files {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "cannot remove readiness marker {}: {e}",
                    f.display()
                ))
            }
        }
    }
    // Never waits: a listener with a full backlog answers EAGAIN at once (sockfile.rs), so a
    // stuck old copy cannot hold up the keeper and every stop and reap with it.
    for sock in &req.sockets {
        use crate::sockfile::SocketFile;
        let found = crate::sockfile::inspect(sock);
        let why = match &found {
            SocketFile::Missing => continue,
            SocketFile::Stale => {
                crate::sockpath::remove_stale(sock)
                    .map_err(|e| format!("cannot remove stale socket {}: {e}", sock.display()))?;
                continue;
            }
            _ => found.why_kept(sock).unwrap_or_default(),
        };
        return Err(if found.is_live() {
            format!("declared socket {why}; stop that process first (never two copies)")
        } else {
            format!("declared socket {why}; fix `sockets`")
        });
    }
    Ok(())
}

/// Capacity asked for each service's stdout/stderr pipe.
pub const OUTPUT_PIPE_SIZE: usize = 1 << 20;

/// A pipe for a service's stdout or stderr: (the read end for Candor, the end for the child).
/// The child's end is opened read-write (through /proc/self/fd): the service itself holds a
/// reader, so its writes never meet EPIPE or SIGPIPE when Candor's read end closes (a crash,
/// an upgrade); with nobody reading they block once the pipe is full, as under s6, and the
/// kernel keeps what was written. Only where /proc is not mounted, a plain write end; any
/// other failure (the fd limit) fails the spawn rather than silently dropping the guarantee.
pub(crate) fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = pipe_with(PipeFlags::CLOEXEC)?;
    // Room for what a service writes while no daemon reads (a restart, an upgrade): 1 MiB is
    // minutes of ordinary logging. Pages are taken only as it fills. Where the system's limit
    // (fs.pipe-max-size, or a user over fs.pipe-user-pages-soft) does not allow it, the pipe
    // keeps its default size.
    let _ = rustix::pipe::fcntl_setpipe_size(&r, OUTPUT_PIPE_SIZE);
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{}", r.as_raw_fd()));
    match rw {
        Ok(rw) => Ok((r, OwnedFd::from(rw))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((r, w)),
        Err(e) => Err(e),
    }
}

/// `fd` numbered at least `floor`: itself if it is, else a CLOEXEC copy there (the child
/// dup2s other fds onto the numbers below, so nothing it still needs may sit there).
pub(crate) fn at_least(fd: OwnedFd, floor: i32) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() >= floor {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, floor)?)
}

/// Make sure `fd` is not `target` (which the child will dup2 over): move it higher if so.
pub(crate) fn keep_clear_of(fd: OwnedFd, target: Option<u32>) -> io::Result<OwnedFd> {
    match target {
        Some(t) if fd.as_raw_fd() == t as i32 => at_least(fd, t as i32 + 1),
        _ => Ok(fd),
    }
}

/// In the child: make every fd from 3 up close at exec, whatever the daemon inherited from
/// its own parent (only fds it opened itself are CLOEXEC already). Marking instead of closing
/// keeps the exec-status pipe usable until the exec. Async-signal-safe.
pub(crate) unsafe fn cloexec_from_3() {
    use crate::sys::call;
    const CLOSE_RANGE_CLOEXEC: usize = 1 << 2;
    if call(
        libc::SYS_close_range,
        [3, libc::c_uint::MAX as usize, CLOSE_RANGE_CLOEXEC, 0, 0, 0],
    )
    .is_ok()
    {
        return;
    }
    // Kernels before 5.11: one fcntl per possible fd up to the soft limit.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let _ = call(
        libc::SYS_prlimit64,
        [
            0,
            libc::RLIMIT_NOFILE as usize,
            0,
            &mut lim as *mut libc::rlimit as usize,
            0,
            0,
        ],
    );
    let max = lim.rlim_cur.min(1 << 20) as usize;
    for fd in 3..max {
        if let Ok(flags) = call(libc::SYS_fcntl, [fd, libc::F_GETFD as usize, 0, 0, 0, 0]) {
            if flags & libc::FD_CLOEXEC as usize == 0 {
                let set = flags | libc::FD_CLOEXEC as usize;
                let _ = call(libc::SYS_fcntl, [fd, libc::F_SETFD as usize, set, 0, 0, 0]);
            }
        }
    }
}

/// Where a command is looked for, made before the clone: its own path, or (a bare name) each
/// directory of PATH joined with it. The child tries them in order, as execvp does, so no
/// path is looked at on the keeper's thread — a hung network directory on PATH stops only that
/// child, which the exec deadline then kills.
pub(crate) struct Lookup {
    /// The command as given (`argv[0]`).
    pub name: String,
    /// The PATH searched, for a bare name.
    pub path_var: Option<String>,
    pub candidates: Vec<CString>,
}

/// No candidate index in a child's report.
pub(crate) const NO_INDEX: u32 = u32::MAX;

impl Lookup {
    /// `program` as the child of a request with `env` (and the daemon's PATH, or the usual one)
    /// finds it.
    pub(crate) fn new(program: &str, env: &[(String, String)]) -> Result<Lookup, String> {
        let cstr = |p: &[u8]| {
            CString::new(p)
                .map_err(|_| format!("cannot start {program}: its path contains a NUL byte"))
        };
        if program.contains('/') {
            return Ok(Lookup {
                name: program.into(),
                path_var: None,
                candidates: vec![cstr(program.as_bytes())?],
            });
        }
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        let candidates = path
            .split(':')
            .map(|dir| cstr(Path::new(dir).join(program).as_os_str().as_bytes()))
            .collect::<Result<_, _>>()?;
        Ok(Lookup {
            name: program.into(),
            path_var: Some(path),
            candidates,
        })
    }

    /// The candidate at `index` of a child's report, or the command as given.
    pub(crate) fn program(&self, index: u32) -> PathBuf {
        match self.candidates.get(index as usize) {
            Some(c) => PathBuf::from(std::ffi::OsStr::from_bytes(c.as_bytes())),
            None => PathBuf::from(&self.name),
        }
    }

    /// Why the exec of candidate `index` failed with `e` (`NO_INDEX`: none was found).
    pub(crate) fn explain(&self, index: u32, e: &io::Error) -> String {
        match (&self.path_var, index) {
            (Some(path), NO_INDEX) => format!(
                "command `{}` not found on PATH ({path}); give its full path in `command`",
                self.name
            ),
            _ => explain(&self.program(index), e),
        }
    }

    /// In the child: exec each candidate in turn, as execvp does (a missing one is skipped, a
    /// candidate that cannot be run is remembered while a later one may still be found).
    /// Returns only on failure: the errno and the candidate it belongs to (`NO_INDEX` with
    /// ENOENT when none exists). Async-signal-safe: `exec` is a raw execve on prepared data.
    pub(crate) unsafe fn exec_each(
        candidates: &[*const libc::c_char],
        mut exec: impl FnMut(*const libc::c_char) -> i32,
        bare: bool,
    ) -> (i32, u32) {
        let mut denied: Option<(i32, u32)> = None;
        for (i, c) in candidates.iter().enumerate() {
            let errno = exec(*c);
            match errno {
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ELOOP | libc::ENAMETOOLONG
                    if bare =>
                {
                    continue
                }
                libc::EACCES | libc::EPERM if bare => {
                    if denied.is_none() {
                        denied = Some((errno, i as u32));
                    }
                    continue;
                }
                _ => return (errno, i as u32),
            }
        }
        denied.unwrap_or((libc::ENOENT, if bare { NO_INDEX } else { 0 }))
    }
}

pub(crate) fn explain(program: &Path, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => format!(
            "command {} not found; fix `command` or install it",
            program.display()
        ),
        Some(libc::EACCES) => format!(
            "command {} is not executable (permission denied); chmod +x it or fix `command`",
            program.display()
        ),
        Some(libc::ENOEXEC) => format!(
            "command {} is not a program this system can run (bad format)",
            program.display()
        ),
        _ => format!("cannot start {}: {e}", program.display()),
    }
}

/// Variables the daemon may have inherited (from systemd, or from a supervisor of its own)
/// that meant something only to the daemon: a service gets them from its own spec or not at
/// all.
pub(crate) const NOT_INHERITED: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "CANDOR_READY_FD",
    "CANDOR_READY_FILE",
];

/// Become `c` in a child between fork and exec: supplementary groups, then the gid, then the
/// uid (in that order: each later call gives up the right to make the earlier ones). Returns
/// the errno of the call that failed. Async-signal-safe: reads `c`, allocates nothing.
///
/// Raw syscalls, not glibc's setgroups/setgid/setuid: those make every thread of the process
/// change too (a signal to each, then a wait), and a child made by a raw clone3 still has
/// glibc's list of the daemon's threads, which do not exist in it — the wait never ends.
pub(crate) unsafe fn become_user(c: &Credentials) -> Result<(), i32> {
    use crate::sys::call3;
    if let Some(groups) = &c.groups {
        call3(
            libc::SYS_setgroups,
            groups.len(),
            groups.as_ptr() as usize,
            0,
        )?;
    }
    if let Some(gid) = c.gid {
        let g = gid as usize;
        call3(libc::SYS_setresgid, g, g, g)?;
    }
    if let Some(uid) = c.uid {
        let u = uid as usize;
        call3(libc::SYS_setresuid, u, u, u)?;
    }
    Ok(())
}

/// Why a child could not become `c`, in one sentence with the fix.
pub(crate) fn explain_user(c: &Credentials, e: &io::Error) -> String {
    let who = match (c.uid, c.gid) {
        (Some(u), Some(g)) => format!("uid {u}, gid {g}"),
        (Some(u), None) => format!("uid {u}"),
        (None, Some(g)) => format!("gid {g}"),
        (None, None) => "its supplementary groups".to_string(),
    };
    if e.raw_os_error() == Some(libc::EPERM) {
        let me = rustix::process::geteuid().as_raw();
        format!("cannot switch to {who}: {e}; Candor runs as uid {me}, and only root can run a service as another user or group — run Candor as root or remove `user`/`group`/`groups`")
    } else {
        format!("cannot switch to {who}: {e}")
    }
}
