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

use crate::spawn::Spawned;
use crate::SpawnRequest;

/// clone3 (or CLONE_INTO_CGROUP) is not available: use the portable path.
pub(crate) struct Unsupported;

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

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

/// The environment a service gets: ours, minus activation variables, plus its `env`.
fn environment(req: &SpawnRequest) -> io::Result<Vec<CString>> {
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> = std::env::vars_os()
        .filter(|(k, _)| {
            !["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID"].contains(&k.to_str().unwrap_or(""))
        })
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
    workdir: Option<CString>,
    cg_dir: Option<File>,
    devnull: File,
    out: (OwnedFd, OwnedFd),
    err: (OwnedFd, OwnedFd),
    /// Carries errno if the child fails before exec; closed by a successful exec.
    status: (OwnedFd, OwnedFd),
}

impl Prepared {
    fn new(req: &SpawnRequest, program: &Path, cgroup: Option<&Path>) -> io::Result<Self> {
        Ok(Self {
            prog: cstring(program.as_os_str().as_bytes())?,
            argv: req
                .argv
                .iter()
                .map(|a| cstring(a.as_bytes()))
                .collect::<io::Result<_>>()?,
            envp: environment(req)?,
            workdir: req
                .workdir
                .as_ref()
                .map(|w| cstring(OsStr::as_bytes(w.as_os_str())))
                .transpose()?,
            cg_dir: cgroup.map(File::open).transpose()?,
            devnull: OpenOptions::new().read(true).open("/dev/null")?,
            out: pipe_with(PipeFlags::CLOEXEC)?,
            err: pipe_with(PipeFlags::CLOEXEC)?,
            status: pipe_with(PipeFlags::CLOEXEC)?,
        })
    }
}

pub(crate) fn spawn(
    req: &SpawnRequest,
    program: &Path,
    cgroup: Option<&Path>,
) -> Result<io::Result<Spawned>, Unsupported> {
    // Everything is allocated here, before the clone.
    let p = match Prepared::new(req, program, cgroup) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let Prepared {
        prog,
        argv,
        envp,
        workdir,
        cg_dir,
        devnull,
        out,
        err,
        status,
    } = p;
    let ((out_r, out_w), (err_r, err_w), (status_r, status_w)) = (out, err, status);
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let nofile = req.nofile;

    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(cg) = &cg_dir {
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
            let fail = |fd: libc::c_int| -> ! {
                let errno = *libc::__errno_location();
                let bytes = errno.to_ne_bytes();
                libc::write(fd, bytes.as_ptr().cast(), bytes.len());
                libc::_exit(127)
            };
            let report = status_w.as_raw_fd();
            if libc::setsid() < 0 {
                fail(report);
            }
            if libc::dup2(devnull.as_raw_fd(), 0) < 0
                || libc::dup2(out_w.as_raw_fd(), 1) < 0
                || libc::dup2(err_w.as_raw_fd(), 2) < 0
            {
                fail(report);
            }
            if let Some(wd) = &workdir {
                if libc::chdir(wd.as_ptr()) < 0 {
                    fail(report);
                }
            }
            if let Some(n) = nofile {
                let lim = libc::rlimit {
                    rlim_cur: n as libc::rlim_t,
                    rlim_max: n as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) < 0 {
                    fail(report);
                }
            }
            // A clean signal state: nothing blocked, nothing ignored (Rust ignores SIGPIPE).
            crate::spawn::reset_signals();
            libc::execve(prog.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
            fail(report)
        }
    }
    if pid < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            // No clone3, or no CLONE_INTO_CGROUP (kernel < 5.7): the portable path.
            Some(libc::ENOSYS) | Some(libc::E2BIG) | Some(libc::EINVAL) => Err(Unsupported),
            _ => Ok(Err(e)),
        };
    }
    // Parent: drop the child's ends, then learn whether exec worked.
    drop((out_w, err_w, status_w, devnull));
    // SAFETY: CLONE_PIDFD stored a fresh pidfd that we now own.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    let mut buf = [0u8; 4];
    let mut status = File::from(status_r);
    let n = loop {
        match status.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other.unwrap_or(0),
        }
    };
    if n == 4 {
        // The child failed before exec: reap it and report why.
        let mut st = 0;
        // SAFETY: waitpid on our own child, writing only into `st`.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut st, 0) };
        return Ok(Err(io::Error::from_raw_os_error(i32::from_ne_bytes(buf))));
    }
    Ok(Ok(Spawned {
        pid: pid as u32,
        pidfd,
        stdout: out_r,
        stderr: err_r,
    }))
}
