//! Spawning with `clone3(CLONE_INTO_CGROUP | CLONE_PIDFD)`: the child is born inside its
//! cgroup (no migration, which costs milliseconds) and we get its pidfd atomically. Everything
//! the child needs is prepared before the clone; between clone and exec the child makes only
//! async-signal-safe syscalls and reports an exec failure's errno through a CLOEXEC pipe.

use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::pipe::{pipe_with, PipeFlags};

use crate::spawn::{at_least, install_ready_fd, keep_clear_of, output_pipe, Spawned};
use crate::SpawnRequest;

/// clone3 (or CLONE_INTO_CGROUP) is not available: use the portable path.
pub(crate) struct Unsupported;

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
const WATCHDOG_PID: &[u8] = b"WATCHDOG_PID=";
const LISTEN_PID: &[u8] = b"LISTEN_PID=";

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte"))
}

/// The environment a service gets: ours (unless it asks for a clean one), minus activation
/// variables, plus its `env`.
fn environment(req: &SpawnRequest) -> io::Result<Vec<CString>> {
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> = std::env::vars_os()
        .filter(|_| !req.clean_env)
        .filter(|(k, _)| !crate::spawn::NOT_INHERITED.contains(&k.to_str().unwrap_or("")))
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    for (k, v) in &req.env {
        vars.retain(|(ek, _)| ek.as_slice() != k.as_bytes());
        vars.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
    }
    vars.into_iter()
        .map(|(mut k, v)| {
            k.push(b'=');
            k.extend_from_slice(&v);
            cstring(&k)
        })
        .collect()
}

/// What the child needs, made before the clone (the child must not allocate).
struct Prepared {
    prog: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// `WATCHDOG_PID=` and `LISTEN_PID=`, each followed by room for the digits the child
    /// writes in.
    pid_vars: Vec<Vec<u8>>,
    /// The activated sockets, each a copy numbered above the fds they go to (3..).
    listen: Vec<OwnedFd>,
    workdir: Option<CString>,
    cg_dir: Option<File>,
    devnull: File,
    out: Option<(OwnedFd, OwnedFd)>,
    err: Option<(OwnedFd, OwnedFd)>,
    ready: Option<(OwnedFd, OwnedFd)>,
    /// Carries errno if the child fails before exec; closed by a successful exec.
    status: (OwnedFd, OwnedFd),
}

impl Prepared {
    fn new(
        req: &SpawnRequest,
        program: &Path,
        cgroup: Option<&Path>,
        listen: Vec<OwnedFd>,
    ) -> Result<Self, String> {
        // Every fd the child still uses while it puts the sockets on 3.. lies above them.
        let floor = 3 + listen.len() as i32;
        let lift = |fd: OwnedFd| {
            at_least(fd, floor)
                .map_err(|e| format!("cannot make room for the activated sockets: {e}"))
        };
        let pipe = |what: &str| -> Result<(OwnedFd, OwnedFd), String> {
            pipe_with(PipeFlags::CLOEXEC).map_err(|e| format!("cannot make {what} pipe: {e}"))
        };
        let output =
            |what: &str| output_pipe().map_err(|e| format!("cannot make {what} pipe: {e}"));
        let bad = |e: io::Error| format!("cannot start {}: {e}", program.display());
        let (status_r, status_w) = pipe("a status")?;
        Ok(Self {
            prog: cstring(program.as_os_str().as_bytes()).map_err(bad)?,
            argv: req
                .argv
                .iter()
                .map(|a| cstring(a.as_bytes()))
                .collect::<io::Result<_>>()
                .map_err(bad)?,
            envp: environment(req).map_err(bad)?,
            pid_vars: [
                (req.watchdog_pid, WATCHDOG_PID),
                (!listen.is_empty(), LISTEN_PID),
            ]
            .into_iter()
            .filter(|(wanted, _)| *wanted)
            .map(|(_, name)| {
                let mut buf = name.to_vec();
                buf.resize(name.len() + 24, 0);
                buf
            })
            .collect(),
            // Numbered at `floor` or above already (`listeners::copies_for_run`).
            listen,
            workdir: req
                .workdir
                .as_ref()
                .map(|w| cstring(OsStr::as_bytes(w.as_os_str())))
                .transpose()
                .map_err(bad)?,
            cg_dir: cgroup
                .map(|cg| {
                    File::open(cg)
                        .map_err(|e| format!("cannot open the cgroup {}: {e}", cg.display()))
                })
                .transpose()?,
            devnull: OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| format!("cannot open /dev/null for stdin: {e}"))?,
            out: req.capture_output.then(|| output("stdout")).transpose()?,
            err: req.capture_output.then(|| output("stderr")).transpose()?,
            ready: req
                .ready_fd
                .map(|_| -> Result<_, String> {
                    let (r, w) = pipe("readiness")?;
                    Ok((r, lift(w)?))
                })
                .transpose()?,
            // The status pipe is written after the ready fd is installed: keep it off that fd.
            status: (
                status_r,
                keep_clear_of(lift(status_w)?, req.ready_fd)
                    .map_err(|e| format!("cannot make a status pipe: {e}"))?,
            ),
        })
    }
}

/// The steps between clone and exec, so that a failure names the one that failed.
#[derive(Clone, Copy)]
#[repr(u32)]
enum Step {
    Session = 1,
    Stdio,
    Workdir,
    Nofile,
    ReadyFd,
    Listen,
    User,
    Exec,
}

impl Step {
    fn from_code(code: u32) -> Step {
        [
            Step::Session,
            Step::Stdio,
            Step::Workdir,
            Step::Nofile,
            Step::ReadyFd,
            Step::Listen,
            Step::User,
        ]
        .into_iter()
        .find(|s| *s as u32 == code)
        .unwrap_or(Step::Exec)
    }

    fn explain(self, req: &SpawnRequest, program: &Path, e: &io::Error) -> String {
        let prog = program.display();
        match self {
            Step::Exec => crate::spawn::explain(program, e),
            Step::User => crate::spawn::explain_user(
                req.credentials.as_ref().unwrap_or(&Default::default()),
                e,
            ),
            Step::Session => format!("cannot start {prog}: setsid failed: {e}"),
            Step::Stdio => {
                format!("cannot start {prog}: connecting its stdin/stdout/stderr failed: {e}")
            }
            Step::Workdir => format!(
                "cannot enter workdir {}: {e}; fix `workdir`",
                req.workdir.as_deref().unwrap_or(Path::new("?")).display()
            ),
            Step::Nofile => {
                let (soft, hard) = req.nofile.unwrap_or_default();
                format!("cannot set the fd limit to {soft}/{hard}: {e}; lower `limits.nofile` or raise the daemon's hard limit")
            }
            Step::Listen => format!(
                "cannot put its activated sockets on fds 3 to {}: {e}",
                2 + req.activate.len()
            ),
            Step::ReadyFd => format!(
                "cannot put the readiness pipe on fd {}: {e}; pick another `ready = {{ fd = N }}`",
                req.ready_fd.unwrap_or_default()
            ),
        }
    }
}

/// How long a new child may take to exec (or to report why it cannot) before it is killed.
const EXEC_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether `fd` becomes readable (data or hang-up) within `limit`.
fn readable_within(fd: &OwnedFd, limit: std::time::Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timeout = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            // Cannot tell: read, as before (a read on it ends at exec or failure).
            Err(_) => return true,
        }
    }
}

/// Write `pid` in decimal at `buf` followed by a NUL. Async-signal-safe (no allocation).
unsafe fn write_pid(buf: *mut u8, pid: i32) {
    let mut digits = [0u8; 12];
    let mut n = pid.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    std::ptr::copy_nonoverlapping(digits.as_ptr().add(i), buf, len);
    *buf.add(len) = 0;
}

pub(crate) fn spawn(
    req: &SpawnRequest,
    program: &Path,
    cgroup: Option<&Path>,
    listen: Vec<OwnedFd>,
) -> Result<Result<Spawned, String>, Unsupported> {
    // Everything is allocated here, before the clone.
    let mut p = match Prepared::new(req, program, cgroup, listen) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let mut argv_ptrs: Vec<*const libc::c_char> = p.argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = p.envp.iter().map(|e| e.as_ptr()).collect();
    // Where the child writes its pid: after each variable's `NAME=`.
    let mut pid_digits: [Option<*mut u8>; 2] = [None, None];
    for (slot, buf) in pid_digits.iter_mut().zip(p.pid_vars.iter_mut()) {
        envp_ptrs.push(buf.as_ptr().cast());
        let prefix = buf.len() - 24;
        // SAFETY: the buffer has room for the prefix plus 24 bytes.
        *slot = Some(unsafe { buf.as_mut_ptr().add(prefix) });
    }
    envp_ptrs.push(std::ptr::null());
    let listen_srcs: Vec<i32> = p.listen.iter().map(|fd| fd.as_raw_fd()).collect();
    let nofile = req.nofile;
    let umask = req.umask;
    let creds = req.credentials.as_ref();
    let ready_fd = req.ready_fd;
    let report = p.status.1.as_raw_fd();
    let devnull = p.devnull.as_raw_fd();
    let out_w = p
        .out
        .as_ref()
        .map(|(_, w)| w.as_raw_fd())
        .unwrap_or(devnull);
    let err_w = p
        .err
        .as_ref()
        .map(|(_, w)| w.as_raw_fd())
        .unwrap_or(devnull);
    let ready_w = p.ready.as_ref().map(|(_, w)| w.as_raw_fd());

    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(cg) = &p.cg_dir {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cg.as_raw_fd() as u64;
    }
    // SAFETY: clone3 without CLONE_VM behaves like fork: the child gets a copy of the address
    // space. The child branch below only makes async-signal-safe syscalls on data prepared
    // above and never returns: it execs or _exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // Child.
        unsafe {
            // Reports the step that failed and its errno, then exits.
            let fail = |step: Step| -> ! {
                let errno = *libc::__errno_location();
                let mut bytes = [0u8; 8];
                bytes[..4].copy_from_slice(&(step as u32).to_ne_bytes());
                bytes[4..].copy_from_slice(&errno.to_ne_bytes());
                libc::write(report, bytes.as_ptr().cast(), bytes.len());
                libc::_exit(127)
            };
            if libc::setsid() < 0 {
                fail(Step::Session);
            }
            if libc::dup2(devnull, 0) < 0 || libc::dup2(out_w, 1) < 0 || libc::dup2(err_w, 2) < 0 {
                fail(Step::Stdio);
            }
            if let Some((soft, hard)) = nofile {
                let lim = libc::rlimit {
                    rlim_cur: soft as libc::rlim_t,
                    rlim_max: hard as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) < 0 {
                    fail(Step::Nofile);
                }
            }
            if let Some(mask) = umask {
                libc::umask(mask as libc::mode_t);
            }
            // As the service's user from here on (the limit above may need root), so that a
            // workdir it may not enter fails here, as it would for the program.
            if let Some(c) = creds {
                if let Err(errno) = crate::spawn::become_user(c) {
                    *libc::__errno_location() = errno;
                    fail(Step::User);
                }
            }
            if let Some(wd) = &p.workdir {
                if libc::chdir(wd.as_ptr()) < 0 {
                    fail(Step::Workdir);
                }
            }
            crate::spawn::cloexec_from_3();
            // The activated sockets on 3.. (dup2 leaves them open across the exec); their
            // copies lie above, so none is overwritten before it is placed.
            for (i, src) in listen_srcs.iter().enumerate() {
                if libc::dup2(*src, 3 + i as i32) < 0 {
                    fail(Step::Listen);
                }
            }
            if let (Some(w), Some(n)) = (ready_w, ready_fd) {
                if !install_ready_fd(w, n) {
                    fail(Step::ReadyFd);
                }
            }
            let me = libc::getpid();
            for digits in pid_digits.iter().flatten() {
                write_pid(*digits, me);
            }
            // A clean signal state: nothing blocked, nothing ignored (Rust ignores SIGPIPE).
            crate::spawn::reset_signals();
            libc::execve(p.prog.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
            fail(Step::Exec)
        }
    }
    if pid < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            // No clone3, or no CLONE_INTO_CGROUP (kernel < 5.7): the portable path.
            Some(libc::ENOSYS) | Some(libc::E2BIG) | Some(libc::EINVAL) => Err(Unsupported),
            _ => Ok(Err(format!(
                "cannot create the process for {}: {e}",
                program.display()
            ))),
        };
    }
    // Parent: drop the child's ends, then learn whether exec worked.
    let Prepared {
        out,
        err,
        ready,
        status: (status_r, status_w),
        ..
    } = p;
    drop(status_w);
    let out_r = out.map(|(r, _)| r);
    let err_r = err.map(|(r, _)| r);
    let ready_r = ready.map(|(r, _)| r);
    // SAFETY: CLONE_PIDFD stored a fresh pidfd that we now own.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    let mut buf = [0u8; 8];
    // The child execs or says why not at once; one that does neither (stuck entering a hung
    // network workdir, say) must not stop the keeper, which supervises everything else.
    if !readable_within(&status_r, EXEC_DEADLINE) {
        // SAFETY: kill(2) of our own child, not yet reaped (its pid is still its own); the
        // keeper's reaping collects it once it dies.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        return Ok(Err(format!(
            "cannot start {}: its process did not reach exec within {}s (stuck before it: entering its workdir, switching its user?); killed",
            program.display(),
            EXEC_DEADLINE.as_secs()
        )));
    }
    let mut status = File::from(status_r);
    let n = loop {
        match status.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other.unwrap_or(0),
        }
    };
    if n == 8 {
        // The child failed before exec: reap it and report which step and why.
        let mut st = 0;
        // SAFETY: waitpid on our own child, writing only into `st`.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut st, 0) };
        let step = u32::from_ne_bytes(buf[..4].try_into().expect("4 bytes"));
        let errno = i32::from_ne_bytes(buf[4..].try_into().expect("4 bytes"));
        let e = io::Error::from_raw_os_error(errno);
        return Ok(Err(Step::from_code(step).explain(req, program, &e)));
    }
    Ok(Ok(Spawned {
        pid: pid as u32,
        pidfd,
        stdout: out_r,
        stderr: err_r,
        ready: ready_r,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rustix::pipe::{pipe_with, PipeFlags};

    #[test]
    fn a_silent_status_pipe_times_out_and_a_closed_or_written_one_does_not() {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        assert!(!super::readable_within(&r, Duration::from_millis(50)));
        drop(w); // exec closes the child's end: hang-up
        assert!(super::readable_within(&r, Duration::from_secs(5)));
        let (r, w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        rustix::io::write(&w, &[0u8; 8]).unwrap(); // a failure report
        assert!(super::readable_within(&r, Duration::from_secs(5)));
    }
}
