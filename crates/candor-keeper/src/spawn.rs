//! Fork/exec of one service: argv (no shell), env, cwd, rlimits, stdout/stderr pipes, a new
//! session (so its own process group), and its cgroup before exec.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// Between fork and exec: nothing blocked, every signal at its default disposition.
/// Async-signal-safe: raw syscalls only.
pub(crate) unsafe fn reset_signals() {
    let empty: u64 = 0;
    libc::syscall(
        libc::SYS_rt_sigprocmask,
        libc::SIG_SETMASK,
        &empty as *const u64,
        std::ptr::null_mut::<u64>(),
        8usize,
    );
    let dfl = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
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
                std::fs::remove_file(sock)
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
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    if libc::syscall(
        libc::SYS_close_range,
        3 as libc::c_uint,
        libc::c_uint::MAX,
        CLOSE_RANGE_CLOEXEC,
    ) == 0
    {
        return;
    }
    // Kernels before 5.11: one fcntl per possible fd up to the soft limit.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    let max = lim.rlim_cur.min(1 << 20) as i32;
    for fd in 3..max {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

/// In the child: put the readiness pipe's write end on fd `n` (inheritable).
/// Async-signal-safe.
pub(crate) unsafe fn install_ready_fd(write_end: i32, n: u32) -> bool {
    let n = n as i32;
    if write_end == n {
        libc::fcntl(n, libc::F_SETFD, 0) >= 0
    } else {
        libc::dup2(write_end, n) >= 0
    }
}

/// Find a bare program name on PATH the way execvp would, to say clearly when it is missing.
fn resolve_program(program: &str, env: &[(String, String)]) -> Result<PathBuf, String> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    path.split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "command `{program}` not found on PATH ({path}); give its full path in `command`"
            )
        })
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

pub(crate) fn spawn(
    req: &SpawnRequest,
    cgroup: Option<&Path>,
    use_clone3: bool,
    listen: Vec<OwnedFd>,
) -> Result<Spawned, String> {
    let program = resolve_program(&req.argv[0], &req.env)?;
    if let Some(wd) = &req.workdir {
        if !wd.is_dir() {
            return Err(format!(
                "workdir {} does not exist or is not a directory",
                wd.display()
            ));
        }
    }
    if !program.exists() {
        return Err(explain(
            &program,
            &io::Error::from_raw_os_error(libc::ENOENT),
        ));
    }
    // The portable path cannot set LISTEN_PID to the child's pid (std builds the environment
    // before the fork): socket activation needs clone3.
    let no_activation =
        || {
            format!(
            "cannot hand over activated sockets: that needs clone3 (Linux 5.3, 5.7 with cgroups){}",
            if use_clone3 { "" } else { ", turned off by CANDOR_CLONE3=off" }
        )
        };
    if !use_clone3 {
        if !listen.is_empty() {
            return Err(no_activation());
        }
        return spawn_std(req, &program, cgroup);
    }
    let activated = !listen.is_empty();
    match crate::clone3::spawn(req, &program, cgroup, listen) {
        Err(crate::clone3::Unsupported) if activated => Err(no_activation()),
        Err(crate::clone3::Unsupported) => spawn_std(req, &program, cgroup),
        Ok(result) => result,
    }
}

/// A `Command` for `argv` (program already resolved): the daemon's environment without the
/// sd_notify and socket-activation variables meant for Candor itself, plus `env`, in `workdir`.
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

fn command(
    program: &Path,
    argv: &[String],
    env: &[(String, String)],
    clean_env: bool,
    workdir: Option<&Path>,
) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg0(&argv[0]).args(&argv[1..]);
    if clean_env {
        cmd.env_clear();
    }
    for k in NOT_INHERITED {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(wd) = workdir {
        cmd.current_dir(wd);
    }
    cmd
}

/// Become `c` in a child between fork and exec: supplementary groups, then the gid, then the
/// uid (in that order: each later call gives up the right to make the earlier ones). Returns
/// the errno of the call that failed. Async-signal-safe: reads `c`, allocates nothing.
pub(crate) unsafe fn become_user(c: &Credentials) -> Result<(), i32> {
    let errno = || *libc::__errno_location();
    if let Some(groups) = &c.groups {
        if libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
            return Err(errno());
        }
    }
    if let Some(gid) = c.gid {
        if libc::setgid(gid) < 0 {
            return Err(errno());
        }
    }
    if let Some(uid) = c.uid {
        if libc::setuid(uid) < 0 {
            return Err(errno());
        }
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

/// Start an exec probe the cheap way. std's `Command` uses posix_spawn (clone with
/// CLONE_VM|CLONE_VFORK: the daemon's page tables are not copied) when nothing forces a fork,
/// and nothing here does: no pre-exec hook, a process group of its own through
/// POSIX_SPAWN_SETPGROUP, the workdir through posix_spawn_file_actions_addchdir_np, stdio on
/// /dev/null. Forking a daemon of tens of MiB for every probe cost most of its CPU at 1000
/// exec-probed services (page-table copies and copy-on-write faults).
///
/// The one exception: a probe of a service with a `user` or `group` runs as that user, which
/// posix_spawn cannot do; it takes the fork path with a pre-exec hook.
pub(crate) fn spawn_probe(
    argv: &[String],
    env: &[(String, String)],
    workdir: Option<&Path>,
    run_as: &crate::RunAs,
) -> Result<u32, String> {
    let Some(first) = argv.first() else {
        return Err("empty probe command".into());
    };
    let program = resolve_program(first, env)?;
    let mut cmd = command(&program, argv, env, run_as.clean_env, workdir);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let umask = run_as.umask;
    if let Some(c) = run_as.credentials.clone() {
        // SAFETY: the hook makes only async-signal-safe calls on `c`, moved in before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(mask) = umask {
                    libc::umask(mask as libc::mode_t);
                }
                become_user(&c).map_err(io::Error::from_raw_os_error)
            });
        }
        let child = cmd.spawn().map_err(|e| {
            if rustix::fs::access(&program, rustix::fs::Access::EXEC_OK).is_ok()
                && e.raw_os_error() == Some(libc::EPERM)
            {
                explain_user(run_as.credentials.as_ref().expect("set"), &e)
            } else {
                explain(&program, &e)
            }
        })?;
        return Ok(child.id());
    }
    // The keeper reaps it (waitpid(-1)); dropping the handle neither waits nor kills.
    let child = cmd.spawn().map_err(|e| explain(&program, &e))?;
    Ok(child.id())
}

/// The portable path (kernels without clone3): std's fork/exec, joining the cgroup from the
/// child before exec (slower: a cgroup migration costs milliseconds). `WATCHDOG_PID` is not
/// set on this path (std builds the environment before the fork).
fn spawn_std(req: &SpawnRequest, program: &Path, cgroup: Option<&Path>) -> Result<Spawned, String> {
    let pipe = |what: &str| {
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| format!("cannot make {what} pipe: {e}"))
    };
    let output = |what: &str| output_pipe().map_err(|e| format!("cannot make {what} pipe: {e}"));
    let (out, err) = if req.capture_output {
        (Some(output("stdout")?), Some(output("stderr")?))
    } else {
        (None, None)
    };
    let ready = match req.ready_fd {
        Some(n) => {
            let (r, w) = pipe("readiness")?;
            Some((r, w, n))
        }
        None => None,
    };
    let procs_file = match cgroup {
        Some(cg) => Some(
            OpenOptions::new()
                .write(true)
                .open(cg.join("cgroup.procs"))
                .map_err(|e| format!("cannot open {}/cgroup.procs: {e}", cg.display()))?,
        ),
        None => None,
    };
    let procs_fd = procs_file.as_ref().map(|f| f.as_raw_fd());
    let ready_w = ready.as_ref().map(|(_, w, n)| (w.as_raw_fd(), *n));
    let nofile = req.nofile;
    let umask = req.umask;
    let creds = req.credentials.clone();

    let mut cmd = command(
        program,
        &req.argv,
        &req.env,
        req.clean_env,
        req.workdir.as_deref(),
    );
    cmd.stdin(Stdio::null());
    match (&out, &err) {
        (Some((_, ow)), Some((_, ew))) => {
            let dup = |fd: &OwnedFd| {
                fd.try_clone()
                    .map_err(|e| format!("cannot pass a pipe: {e}"))
            };
            cmd.stdout(Stdio::from(dup(ow)?))
                .stderr(Stdio::from(dup(ew)?));
        }
        _ => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe syscalls
    // on values captured by copy; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(fd) = procs_fd {
                // Writing "0" to cgroup.procs moves the writing process.
                if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some((soft, hard)) = nofile {
                let lim = libc::rlimit {
                    rlim_cur: soft as libc::rlim_t,
                    rlim_max: hard as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(mask) = umask {
                libc::umask(mask as libc::mode_t);
            }
            if let Some(c) = &creds {
                become_user(c).map_err(io::Error::from_raw_os_error)?;
            }
            cloexec_from_3();
            if let Some((w, n)) = ready_w {
                if !install_ready_fd(w, n) {
                    return Err(io::Error::last_os_error());
                }
            }
            reset_signals();
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    drop(cmd);
    match spawned {
        // The keeper reaps with waitpid(-1); the Child handle is dropped without waiting.
        Ok(child) => Ok(Spawned {
            pid: child.id(),
            pidfd: None,
            stdout: out.map(|(r, _)| r),
            stderr: err.map(|(r, _)| r),
            ready: ready.map(|(r, _, _)| r),
        }),
        Err(e) => Err(explain_std(program, cgroup, &e)),
    }
}

/// std's fork/exec returns one error for every step between fork and exec: blame the program
/// only when it could be the program's fault.
fn explain_std(program: &Path, cgroup: Option<&Path>, e: &io::Error) -> String {
    let runnable = rustix::fs::access(program, rustix::fs::Access::EXEC_OK).is_ok();
    if runnable && matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EACCES)) {
        let cg = cgroup.map(|c| format!(", joining cgroup {}", c.display()));
        format!(
            "cannot start {}: {e} while preparing the child (entering workdir{}, setting limits)",
            program.display(),
            cg.unwrap_or_default()
        )
    } else {
        explain(program, e)
    }
}
