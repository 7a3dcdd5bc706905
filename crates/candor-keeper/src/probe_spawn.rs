//! Exec probes, reload commands and the upgrade's `check`: spawned with `clone(CLONE_VM)` —
//! no copy of the daemon's page tables, as posix_spawn — but without `CLONE_VFORK`, so the
//! keeper never waits for the child's exec: a child stuck before it (a hung network workdir, a
//! hung directory on PATH) costs only itself, killed at its deadline. The child runs on a
//! stack of its own, shares the keeper's memory until its exec, and so makes only raw
//! syscalls (`sys`: errno is the keeper thread's) on data that lives until it is reaped
//! ([`ProbeChild`] owns it). It reports a failure before exec through a CLOEXEC status pipe,
//! read when it is reaped.
//!
//! Cost against posix_spawn: the same clone without page-table copies, plus one pipe per probe,
//! and a pidfd from the clone itself instead of a `pidfd_open` after it. Stacks (64 KiB each)
//! are kept for the next probe once their child is reaped (at most [`POOLED`] of them), and
//! /dev/null is opened once: a probe maps, faults in and opens nothing new. The child also switches to a service's user itself, so
//! probes of services with a `user` no longer take a fork.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::pipe::{pipe_with, PipeFlags};

use crate::clone3::{cstring, read_status, report_and_exit, SignalsBlocked, Step, Why};
use crate::spawn::{Lookup, NO_INDEX};
use crate::sys;

/// The child's stack: a private mapping with a guard page below it.
pub(crate) struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

const STACK: usize = 64 * 1024;
const GUARD: usize = 4096;

/// Stacks of reaped children kept for the next probes: enough for a keeper turn's worth of
/// probes (it takes at most 32), bounded so a burst leaves no lasting memory behind.
const POOLED: usize = 64;

thread_local! {
    /// The probes are spawned and reaped on the keeper's thread: its pool needs no lock.
    static POOL: std::cell::RefCell<Vec<Stack>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Stack {
    /// A stack no child uses: one kept from a reaped child, or a new mapping.
    pub(crate) fn take() -> io::Result<Stack> {
        match POOL.with(|p| p.borrow_mut().pop()) {
            Some(s) => Ok(s),
            None => Stack::new(),
        }
    }

    /// Back to the pool (its child is reaped: only then is a `Memory` dropped), or unmapped
    /// when the pool is full or the thread is ending.
    pub(crate) fn give_back(self) {
        let mut spare = Some(self);
        let _ = POOL.try_with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < POOLED {
                pool.extend(spare.take());
            }
        });
    }

    fn new() -> io::Result<Stack> {
        let len = STACK + GUARD;
        // SAFETY: a fresh anonymous mapping, owned by the returned value.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base, len };
        // SAFETY: the lowest page of our own mapping.
        if unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The mapping (guard page included) as clone3 takes it: its lowest address and length.
    pub(crate) fn span(&self) -> (u64, u64) {
        (self.base as u64, self.len as u64)
    }

    /// Where the child's stack starts (it grows down), 16-byte aligned.
    pub(crate) fn top(&self) -> *mut libc::c_void {
        (self.base as usize + self.len) as *mut libc::c_void
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used by anyone (see `ProbeChild`).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// What the child reads: all of it made before the clone, kept (boxed: it never moves) until
/// the child is reaped.
struct Memory {
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    candidates: Vec<*const libc::c_char>,
    bare: bool,
    workdir: Option<CString>,
    credentials: Option<candor_spec::Credentials>,
    umask: Option<u32>,
    /// Test seam (`probe-hang:<argv[0]>`): stop before the workdir, as on a hung mount.
    hang: bool,
    devnull: i32,
    /// fd 0: /dev/null, or the read end of a pipe that already holds the whole input.
    stdin: i32,
    report: i32,
    /// Taken from the pool; returned to it when this is dropped (after the reap).
    stack: Option<Stack>,
}

impl Drop for Memory {
    fn drop(&mut self) {
        if let Some(s) = self.stack.take() {
            s.give_back();
        }
    }
}

/// /dev/null, open once for every probe's stdio (CLOEXEC here; the child dups it to 0-2).
fn devnull() -> io::Result<i32> {
    static NULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let fd: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into();
    Ok(NULL.get_or_init(|| fd).as_raw_fd())
}

// SAFETY: the raw pointers point into the heap buffers `Memory` owns (the CStrings and the
// stack mapping), which do not move with it; nothing else shares them.
unsafe impl Send for Memory {}

/// A probe's process: its pid and pidfd, its status pipe, and the memory its child reads.
pub(crate) struct ProbeChild {
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
    pub status: OwnedFd,
    report: Vec<u8>,
    pub why: Why,
    /// Freed only once the child is gone (reaped): until its exec it runs on this stack and
    /// reads this memory.
    _memory: Box<Memory>,
}

impl ProbeChild {
    /// Once it is reaped: why it could not start, if it reported a failure before its exec.
    pub(crate) fn failure(&mut self) -> Option<String> {
        let (step, errno, index) = read_status(&self.status, &mut self.report)??;
        Some(self.why.explain(step, errno, index))
    }

    /// Whether it is past its exec (or has reported why not): its status pipe is closed or
    /// holds a report. False while it is still on its way to exec.
    pub(crate) fn left_the_start(&self) -> bool {
        crate::clone3::readable_within(&self.status, std::time::Duration::ZERO)
    }
}

/// The child: its own process group, stdio on /dev/null (or stdin on its input pipe), the
/// service's umask and user, its workdir, then each candidate of the command. Raw syscalls
/// only; never returns.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Memory` the parent keeps alive until this process is reaped.
    unsafe {
        let m = &*(arg as *const Memory);
        let fail =
            |step: Step, errno: i32| -> ! { report_and_exit(m.report, step, errno, NO_INDEX) };
        if let Err(e) = sys::call(libc::SYS_setpgid, [0; 6]) {
            fail(Step::Group, e);
        }
        let null = m.devnull;
        for to in 0..3 {
            let from = if to == 0 { m.stdin } else { null };
            if let Err(e) = sys::dup_to(from, to) {
                fail(Step::Stdio, e);
            }
        }
        if let Some(mask) = m.umask {
            let _ = sys::call1(libc::SYS_umask, mask as usize);
        }
        if let Some(c) = &m.credentials {
            if let Err(e) = crate::spawn::become_user(c) {
                fail(Step::User, e);
            }
        }
        if m.hang {
            sys::hang();
        }
        if let Some(wd) = &m.workdir {
            if let Err(e) = sys::chdir(wd.as_ptr()) {
                fail(Step::Workdir, e);
            }
        }
        crate::spawn::cloexec_from_3();
        crate::spawn::reset_signals();
        let (errno, index) = Lookup::exec_each(
            &m.candidates,
            |c| sys::execve(c, m.argv_ptrs.as_ptr(), m.envp_ptrs.as_ptr()),
            m.bare,
        );
        report_and_exit(m.report, Step::Exec, errno, index)
    }
}

/// A pipe that holds all of `bytes`, its write end closed: the child reads them, then EOF.
/// Written once without blocking (an exec hook's event is far below a pipe's 64 KiB); more
/// than the pipe takes is refused, never waited for.
fn input_pipe(bytes: &[u8]) -> io::Result<OwnedFd> {
    let (read, write) = pipe_with(PipeFlags::CLOEXEC)?;
    rustix::fs::fcntl_setfl(&write, rustix::fs::OFlags::NONBLOCK)?;
    let mut written = 0;
    while written < bytes.len() {
        match rustix::io::write(&write, &bytes[written..]) {
            Ok(n) => written += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                return Err(io::Error::other(format!(
                    "its input of {} bytes does not fit in a pipe",
                    bytes.len()
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(read)
}

/// Start `argv` as an exec probe of a service running as `run_as`, in `workdir`, without
/// waiting for its exec; `stdin`: what it reads on fd 0 (else /dev/null). The keeper reaps it
/// (its pidfd fires) and reads its report then.
pub(crate) fn spawn(
    argv: &[String],
    env: &[(String, String)],
    workdir: Option<&Path>,
    run_as: &crate::RunAs,
    stdin: Option<&[u8]>,
) -> Result<ProbeChild, String> {
    let Some(first) = argv.first() else {
        return Err("empty probe command".into());
    };
    let bad = |e: io::Error| format!("cannot start {first}: {e}");
    // Kept open until the clone: the child has its own copy of it as fd 0.
    let input = stdin.map(input_pipe).transpose().map_err(bad)?;
    let lookup = Lookup::new(first, env)?;
    let argv_c: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()
        .map_err(bad)?;
    let envp_c = crate::clone3::environment(env, run_as.clean_env).map_err(bad)?;
    let (status_r, status_w) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| format!("cannot make a status pipe: {e}"))?;
    let devnull = devnull().map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let nul_terminated = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let memory = Box::new(Memory {
        argv_ptrs: nul_terminated(&argv_c),
        _argv: argv_c,
        envp_ptrs: nul_terminated(&envp_c),
        _envp: envp_c,
        candidates: lookup.candidates.iter().map(|c| c.as_ptr()).collect(),
        bare: lookup.path_var.is_some(),
        workdir: workdir
            .map(|w| cstring(w.as_os_str().as_bytes()))
            .transpose()
            .map_err(bad)?,
        credentials: run_as.credentials.clone(),
        umask: run_as.umask,
        hang: candor_core::fail_once("probe-hang", first),
        devnull,
        stdin: input.as_ref().map_or(devnull, |fd| fd.as_raw_fd()),
        report: status_w.as_raw_fd(),
        stack: Some(Stack::take().map_err(|e| format!("cannot make a stack for {first}: {e}"))?),
    });
    let vm = if sys::SHARED_MEMORY_SAFE {
        libc::CLONE_VM
    } else {
        0
    };
    let mut pidfd: libc::c_int = -1;
    let pid = {
        let _blocked = SignalsBlocked::now();
        // SAFETY: the child runs `child` on its own stack with `memory`, which outlives it
        // (kept in the returned value until the keeper has reaped the child); with CLONE_VM it
        // shares our memory and makes only raw syscalls, writing nothing but its stack.
        unsafe {
            libc::clone(
                child,
                memory.stack.as_ref().expect("taken above").top(),
                vm | libc::CLONE_PIDFD | libc::SIGCHLD,
                &*memory as *const Memory as *mut libc::c_void,
                &mut pidfd as *mut libc::c_int,
            )
        }
    };
    if pid < 0 {
        return Err(format!(
            "cannot create the process for {first}: {}",
            io::Error::last_os_error()
        ));
    }
    // The child has its own copies (no CLONE_FILES).
    drop(status_w);
    drop(input);
    let _ = rustix::fs::fcntl_setfl(&status_r, rustix::fs::OFlags::NONBLOCK);
    Ok(ProbeChild {
        pid,
        // SAFETY: CLONE_PIDFD stored a fresh pidfd that we now own.
        pidfd: (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) }),
        status: status_r,
        report: Vec::new(),
        why: Why {
            lookup,
            workdir: workdir.map(Path::to_path_buf),
            credentials: run_as.credentials.clone(),
            nofile: None,
            ready_fd: None,
            sockets: 0,
            cgroup: None,
        },
        _memory: memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_pipe_holds_the_bytes_then_ends() {
        let read = input_pipe(b"{\"event\":\"failed\"}").unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut got).unwrap();
        assert_eq!(got, "{\"event\":\"failed\"}");
    }

    #[test]
    fn an_input_larger_than_a_pipe_is_refused_not_waited_for() {
        let e = input_pipe(&vec![b'x'; 4 << 20]).unwrap_err().to_string();
        assert!(e.contains("does not fit in a pipe"), "{e}");
    }
}
