//! Spawning a service with `clone3(CLONE_INTO_CGROUP | CLONE_PIDFD)`: the child is born inside
//! its cgroup (no migration, which costs milliseconds) and we get its pidfd atomically; where
//! clone3 is missing (or `CANDOR_CLONE3=off`), a fork-like `clone` whose child joins its cgroup
//! itself. Everything the child needs is prepared before the clone; between clone and exec the
//! child makes only raw syscalls — entering its workdir and looking its command up on PATH
//! among them, so no path of a service is looked at on the keeper's thread — and reports a
//! failure (which step, errno) through a CLOEXEC status pipe. The keeper never waits for it:
//! the pipe is in its epoll set ([`Starting`]), and a child that neither execs nor reports
//! within [`EXEC_DEADLINE`] is killed and the spawn fails with that reason.

use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::pipe::{pipe_with, PipeFlags};

use crate::spawn::{at_least, keep_clear_of, output_pipe, Lookup, Spawned, NO_INDEX};
use crate::sys;
use crate::SpawnRequest;

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

pub(crate) fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte"))
}

/// The environment a service (or its probe) gets: ours (unless it asks for a clean one), minus
/// activation variables, plus its `env`.
pub(crate) fn environment(env: &[(String, String)], clean_env: bool) -> io::Result<Vec<CString>> {
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> = std::env::vars_os()
        .filter(|_| !clean_env)
        .filter(|(k, _)| !crate::spawn::NOT_INHERITED.contains(&k.to_str().unwrap_or("")))
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    for (k, v) in env {
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
    /// Carries the failed step and errno if the child fails before exec; closed by a
    /// successful exec.
    status: (OwnedFd, OwnedFd),
}

impl Prepared {
    fn new(
        req: &SpawnRequest,
        name: &str,
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
        let bad = |e: io::Error| format!("cannot start {name}: {e}");
        let (status_r, status_w) = pipe("a status")?;
        Ok(Self {
            argv: req
                .argv
                .iter()
                .map(|a| cstring(a.as_bytes()))
                .collect::<io::Result<_>>()
                .map_err(bad)?,
            envp: environment(&req.env, req.clean_env).map_err(bad)?,
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
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub(crate) enum Step {
    Session = 1,
    Stdio,
    Workdir,
    Nofile,
    ReadyFd,
    Listen,
    User,
    Exec,
    Cgroup,
    Group,
}

impl Step {
    pub(crate) fn from_code(code: u32) -> Step {
        [
            Step::Session,
            Step::Stdio,
            Step::Workdir,
            Step::Nofile,
            Step::ReadyFd,
            Step::Listen,
            Step::User,
            Step::Cgroup,
            Step::Group,
        ]
        .into_iter()
        .find(|s| *s as u32 == code)
        .unwrap_or(Step::Exec)
    }
}

/// A child's failure report: step, errno, the PATH candidate it concerns.
pub(crate) const REPORT_LEN: usize = 12;

/// In the child: report `step`, `errno` and `index` on `fd`, then exit 127.
pub(crate) unsafe fn report_and_exit(fd: i32, step: Step, errno: i32, index: u32) -> ! {
    let mut bytes = [0u8; REPORT_LEN];
    bytes[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    bytes[4..8].copy_from_slice(&errno.to_ne_bytes());
    bytes[8..].copy_from_slice(&index.to_ne_bytes());
    let _ = sys::write(fd, &bytes);
    sys::exit(127)
}

/// What turns a child's report into a sentence: the request's parts that can fail.
pub(crate) struct Why {
    pub lookup: Lookup,
    pub workdir: Option<PathBuf>,
    pub credentials: Option<candor_spec::Credentials>,
    pub nofile: Option<(u64, u64)>,
    pub ready_fd: Option<u32>,
    pub sockets: usize,
    pub cgroup: Option<PathBuf>,
}

impl Why {
    pub(crate) fn explain(&self, step: Step, errno: i32, index: u32) -> String {
        let e = io::Error::from_raw_os_error(errno);
        let prog = &self.lookup.name;
        match step {
            Step::Exec => self.lookup.explain(index, &e),
            Step::User => crate::spawn::explain_user(
                self.credentials.as_ref().unwrap_or(&Default::default()),
                &e,
            ),
            Step::Session => format!("cannot start {prog}: setsid failed: {e}"),
            Step::Group => format!("cannot start {prog}: setpgid failed: {e}"),
            Step::Stdio => {
                format!("cannot start {prog}: connecting its stdin/stdout/stderr failed: {e}")
            }
            Step::Cgroup => format!(
                "cannot start {prog}: joining its cgroup {} failed: {e}",
                self.cgroup.as_deref().unwrap_or(Path::new("?")).display()
            ),
            Step::Workdir => format!(
                "cannot enter workdir {}: {e}; fix `workdir`",
                self.workdir.as_deref().unwrap_or(Path::new("?")).display()
            ),
            Step::Nofile => {
                let (soft, hard) = self.nofile.unwrap_or_default();
                format!("cannot set the fd limit to {soft}/{hard}: {e}; lower `limits.nofile` or raise the daemon's hard limit")
            }
            Step::Listen => format!(
                "cannot put its activated sockets on fds 3 to {}: {e}",
                2 + self.sockets
            ),
            Step::ReadyFd => format!(
                "cannot put the readiness pipe on fd {}: {e}; pick another `ready = {{ fd = N }}`",
                self.ready_fd.unwrap_or_default()
            ),
        }
    }

    /// Why a child that neither exec'd nor reported within `limit` was killed.
    pub(crate) fn stuck(&self, limit: std::time::Duration) -> String {
        format!(
            "cannot start {}: its process did not reach exec within {}s (stuck before it: entering its workdir, looking the command up on PATH, switching its user?); killed",
            self.lookup.name,
            limit.as_secs()
        )
    }
}

/// How long a new child may take to exec (or to report why it cannot) before it is killed.
pub(crate) const EXEC_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// A report read so far from a status pipe; `Some` once the pipe is closed (exec, or exit).
pub(crate) fn read_status(
    status: &OwnedFd,
    report: &mut Vec<u8>,
) -> Option<Option<(Step, i32, u32)>> {
    let mut buf = [0u8; REPORT_LEN];
    loop {
        match rustix::io::read(status, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = REPORT_LEN.saturating_sub(report.len());
                report.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => return None,
            // Cannot tell: as if closed without a report (the pidfd tells the rest).
            Err(_) => break,
        }
    }
    Some((report.len() == REPORT_LEN).then(|| {
        let step = u32::from_ne_bytes(report[..4].try_into().expect("4 bytes"));
        let errno = i32::from_ne_bytes(report[4..8].try_into().expect("4 bytes"));
        let index = u32::from_ne_bytes(report[8..].try_into().expect("4 bytes"));
        (Step::from_code(step), errno, index)
    }))
}

/// A service's child between clone and exec: its status pipe (non-blocking; in the keeper's
/// epoll set) says how it went.
pub(crate) struct Starting {
    pub pid: u32,
    pub pidfd: Option<OwnedFd>,
    pub status: OwnedFd,
    report: Vec<u8>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    ready: Option<OwnedFd>,
    pub why: Why,
    /// What the child reads until its exec (with `why`'s lookup): dropped only once the
    /// child has exec'd or is gone.
    memory: Option<Box<ChildMemory>>,
}

impl Starting {
    /// The child was killed before its exec and may not be gone yet: its memory is left
    /// behind rather than freed under it (a rare loss: one spawn's buffers and stack).
    pub(crate) fn abandon_memory(&mut self) {
        if let Some(m) = self.memory.take() {
            std::mem::forget(m);
        }
    }

    /// None while the child is still before its exec; then Ok (it exec'd: its pipe closed
    /// without a report) or why it failed.
    pub(crate) fn settle(&mut self) -> Option<Result<(), String>> {
        let got = read_status(&self.status, &mut self.report)?;
        Some(match got {
            None => Ok(()),
            Some((step, errno, index)) => Err(self.why.explain(step, errno, index)),
        })
    }

    /// Whether it reported a failure before its exec.
    pub(crate) fn reported(&self) -> bool {
        self.report.len() == REPORT_LEN
    }

    /// What the keeper keeps of a child that exec'd.
    pub(crate) fn into_spawned(self) -> Spawned {
        Spawned {
            pid: self.pid,
            pidfd: self.pidfd,
            stdout: self.stdout,
            stderr: self.stderr,
            ready: self.ready,
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

/// Everything the child reads, as raw values and pointers into its [`ChildMemory`] and the
/// `Lookup` (both kept until the child has exec'd or is gone). A copy points at the same
/// memory.
#[derive(Clone, Copy)]
struct Plan {
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    candidates: (*const *const libc::c_char, usize),
    bare: bool,
    pid_digits: [Option<*mut u8>; 2],
    listen_srcs: (*const i32, usize),
    nofile: Option<(u64, u64)>,
    umask: Option<u32>,
    creds: Option<*const candor_spec::Credentials>,
    ready: Option<(i32, u32)>,
    report: i32,
    devnull: i32,
    out_w: i32,
    err_w: i32,
    /// `cgroup.procs` to write "0" to (the fork-like path; clone3 is born in its cgroup).
    procs: Option<i32>,
    workdir: Option<*const libc::c_char>,
    /// Test seam (`exec-hang:<service>`): stop before the workdir, as on a hung mount.
    hang: bool,
}

/// What a service's child reads until its exec: made before the clone and boxed (it never
/// moves). With `CLONE_VM` the child runs on `stack` and reads this in our own memory, so it is
/// freed only once the child has exec'd (its status pipe closed) or is gone (reaped); a child
/// killed at its exec deadline leaves it behind for good (`Starting::abandon_memory`).
pub(crate) struct ChildMemory {
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    _pid_vars: Vec<Vec<u8>>,
    _workdir: Option<CString>,
    _argv_ptrs: Vec<*const libc::c_char>,
    _envp_ptrs: Vec<*const libc::c_char>,
    _candidates: Vec<*const libc::c_char>,
    _listen_srcs: Vec<i32>,
    creds: Option<candor_spec::Credentials>,
    plan: Option<Plan>,
    stack: Option<crate::probe_spawn::Stack>,
}

impl Drop for ChildMemory {
    fn drop(&mut self) {
        if let Some(s) = self.stack.take() {
            s.give_back();
        }
    }
}

// SAFETY: the raw pointers point into heap buffers this owns (or the `Lookup` kept beside it
// in `Starting`), which do not move with it; nothing else shares them.
unsafe impl Send for ChildMemory {}

/// The entry of a child that shares our memory: `arg` is its `ChildMemory`.
unsafe extern "C" fn child_entry(arg: *mut libc::c_void) -> ! {
    let m = &*(arg as *const ChildMemory);
    match &m.plan {
        Some(p) => child(p),
        None => sys::exit(127),
    }
}

/// The child, between clone and exec: raw syscalls on `p` only; never returns.
unsafe fn child(p: &Plan) -> ! {
    let fail =
        |step: Step, errno: i32, index: u32| -> ! { report_and_exit(p.report, step, errno, index) };
    if let Err(e) = sys::call(libc::SYS_setsid, [0; 6]) {
        fail(Step::Session, e, NO_INDEX);
    }
    for (from, to) in [(p.devnull, 0), (p.out_w, 1), (p.err_w, 2)] {
        if let Err(e) = sys::dup_to(from, to) {
            fail(Step::Stdio, e, NO_INDEX);
        }
    }
    if let Some(fd) = p.procs {
        // Writing "0" to cgroup.procs moves the writing process.
        if let Err(e) = sys::write(fd, b"0") {
            fail(Step::Cgroup, e, NO_INDEX);
        }
    }
    if let Some((soft, hard)) = p.nofile {
        let lim = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        let set = &lim as *const libc::rlimit as usize;
        if let Err(e) = sys::call(
            libc::SYS_prlimit64,
            [0, libc::RLIMIT_NOFILE as usize, set, 0, 0, 0],
        ) {
            fail(Step::Nofile, e, NO_INDEX);
        }
    }
    if let Some(mask) = p.umask {
        let _ = sys::call1(libc::SYS_umask, mask as usize);
    }
    // As the service's user from here on (the limit above may need root), so that a
    // workdir or command it may not reach fails here, as it would for the program.
    if let Some(c) = p.creds {
        if let Err(e) = crate::spawn::become_user(&*c) {
            fail(Step::User, e, NO_INDEX);
        }
    }
    if p.hang {
        sys::hang();
    }
    if let Some(wd) = p.workdir {
        if let Err(e) = sys::chdir(wd) {
            fail(Step::Workdir, e, NO_INDEX);
        }
    }
    crate::spawn::cloexec_from_3();
    // The activated sockets on 3.. (left open across the exec); their copies lie above, so
    // none is overwritten before it is placed.
    let listen_srcs = std::slice::from_raw_parts(p.listen_srcs.0, p.listen_srcs.1);
    for (i, src) in listen_srcs.iter().enumerate() {
        if let Err(e) = sys::dup_to(*src, 3 + i as i32) {
            fail(Step::Listen, e, NO_INDEX);
        }
    }
    if let Some((w, n)) = p.ready {
        if let Err(e) = sys::dup_to(w, n as i32) {
            fail(Step::ReadyFd, e, NO_INDEX);
        }
    }
    let me = sys::call(libc::SYS_getpid, [0; 6]).unwrap_or(0) as i32;
    for digits in p.pid_digits.iter().flatten() {
        write_pid(*digits, me);
    }
    // A clean signal state: nothing blocked, nothing ignored (Rust ignores SIGPIPE).
    crate::spawn::reset_signals();
    let candidates = std::slice::from_raw_parts(p.candidates.0, p.candidates.1);
    let (errno, index) = Lookup::exec_each(candidates, |c| sys::execve(c, p.argv, p.envp), p.bare);
    fail(Step::Exec, errno, index)
}

/// Every signal blocked on this thread until dropped (the mask it had is put back): a child
/// cloned meanwhile starts with all of them blocked, so none reaches one of the daemon's
/// handlers before the child resets them.
pub(crate) struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    pub(crate) fn now() -> Self {
        // SAFETY: sigfillset and pthread_sigmask write only into the sets given.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            SignalsBlocked(old)
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: puts back the mask saved in `now`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// Start a child for `req` in `cgroup` (clone3 where it can, else a fork-like clone that joins
/// the cgroup itself). Returns at once: the child reports through its status pipe.
pub(crate) fn spawn(
    req: &SpawnRequest,
    cgroup: Option<&Path>,
    use_clone3: bool,
    listen: Vec<OwnedFd>,
) -> Result<Starting, String> {
    let name = req.argv.first().map(String::as_str).unwrap_or("");
    let lookup = Lookup::new(name, &req.env)?;
    // Everything is allocated here, before the clone.
    let mut p = Prepared::new(req, name, cgroup, listen)?;
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
    let candidates: Vec<*const libc::c_char> =
        lookup.candidates.iter().map(|c| c.as_ptr()).collect();
    let listen_srcs: Vec<i32> = p.listen.iter().map(|fd| fd.as_raw_fd()).collect();
    let devnull = p.devnull.as_raw_fd();
    // The child shares our memory where the syscalls it makes write no errno: no copy of the
    // daemon's page tables per spawn, and no copy-on-write faults after it.
    let shared = use_clone3 && sys::SHARED_MEMORY_SAFE;
    let stack = match shared {
        true => Some(
            crate::probe_spawn::Stack::take()
                .map_err(|e| format!("cannot make a stack for {name}: {e}"))?,
        ),
        false => None,
    };
    let mut memory = Box::new(ChildMemory {
        _argv: std::mem::take(&mut p.argv),
        _envp: std::mem::take(&mut p.envp),
        _pid_vars: std::mem::take(&mut p.pid_vars),
        _workdir: p.workdir.take(),
        creds: req.credentials.clone(),
        plan: None,
        stack,
        _argv_ptrs: Vec::new(),
        _envp_ptrs: Vec::new(),
        _candidates: Vec::new(),
        _listen_srcs: Vec::new(),
    });
    let mut plan = Plan {
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        candidates: (candidates.as_ptr(), candidates.len()),
        bare: lookup.path_var.is_some(),
        pid_digits,
        listen_srcs: (listen_srcs.as_ptr(), listen_srcs.len()),
        nofile: req.nofile,
        umask: req.umask,
        creds: memory
            .creds
            .as_ref()
            .map(|c| c as *const candor_spec::Credentials),
        ready: p
            .ready
            .as_ref()
            .zip(req.ready_fd)
            .map(|((_, w), n)| (w.as_raw_fd(), n)),
        report: p.status.1.as_raw_fd(),
        devnull,
        out_w: p
            .out
            .as_ref()
            .map(|(_, w)| w.as_raw_fd())
            .unwrap_or(devnull),
        err_w: p
            .err
            .as_ref()
            .map(|(_, w)| w.as_raw_fd())
            .unwrap_or(devnull),
        procs: None,
        workdir: memory._workdir.as_ref().map(|w| w.as_ptr()),
        hang: candor_core::fail_once("exec-hang", &req.service),
    };
    // The vectors' heap buffers do not move with them: the pointers above stay good.
    memory._argv_ptrs = argv_ptrs;
    memory._envp_ptrs = envp_ptrs;
    memory._candidates = candidates;
    memory._listen_srcs = listen_srcs;
    let mut pidfd: libc::c_int = -1;
    let mut procs_file = None;
    let pid = {
        let _blocked = SignalsBlocked::now();
        let mut pid = -1;
        let mut errno = libc::ENOSYS;
        if use_clone3 {
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
            if let Some(stack) = &memory.stack {
                args.flags |= libc::CLONE_VM as u64;
                (args.stack, args.stack_size) = stack.span();
                memory.plan = Some(plan);
                // SAFETY: the child runs `child_entry` on its own stack with `memory`, which
                // outlives its exec (kept in the returned `Starting`); sharing our memory, it
                // makes only raw syscalls and writes nothing but its stack and the pid digits
                // in its own environment buffers.
                pid = match unsafe {
                    sys::clone3_vm(
                        &mut args as *mut CloneArgs as *mut libc::c_void,
                        std::mem::size_of::<CloneArgs>(),
                        child_entry,
                        &*memory as *const ChildMemory as *mut libc::c_void,
                    )
                } {
                    Ok(pid) => pid as libc::c_long,
                    Err(e) => {
                        errno = e;
                        -1
                    }
                };
            } else {
                // SAFETY: clone3 without CLONE_VM behaves like fork: the child gets a copy of
                // the address space, runs `child` (raw syscalls on data prepared above) and
                // never returns from it.
                pid = unsafe {
                    libc::syscall(
                        libc::SYS_clone3,
                        &mut args as *mut CloneArgs,
                        std::mem::size_of::<CloneArgs>(),
                    )
                };
                if pid == 0 {
                    unsafe { child(&plan) }
                }
                if pid < 0 {
                    errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                }
            }
        }
        // No clone3, or no CLONE_INTO_CGROUP (kernel < 5.7), or turned off: a fork-like
        // clone whose child joins its cgroup before anything else.
        if pid < 0 && matches!(errno, libc::ENOSYS | libc::E2BIG | libc::EINVAL) {
            if let Some(cg) = cgroup {
                let file = OpenOptions::new()
                    .write(true)
                    .open(cg.join("cgroup.procs"))
                    .map_err(|e| format!("cannot open {}/cgroup.procs: {e}", cg.display()))?;
                plan.procs = Some(file.as_raw_fd());
                procs_file = Some(file);
            }
            pidfd = -1;
            // SAFETY: as above: a fork (no CLONE_VM, no new stack); on x86_64 and aarch64
            // alike the third argument is where CLONE_PIDFD stores the pidfd.
            pid = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    (libc::SIGCHLD | libc::CLONE_PIDFD) as libc::c_ulong,
                    0usize,
                    &mut pidfd as *mut libc::c_int,
                    0usize,
                    0usize,
                )
            };
            if pid == 0 {
                unsafe { child(&plan) }
            }
        }
        pid
    };
    drop(procs_file);
    if pid < 0 {
        let e = io::Error::last_os_error();
        return Err(format!("cannot create the process for {name}: {e}"));
    }
    // Parent: drop the child's ends; the status pipe says how it goes.
    let Prepared {
        out,
        err,
        ready,
        status: (status_r, status_w),
        ..
    } = p;
    drop(status_w);
    rustix::fs::fcntl_setfl(&status_r, rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| format!("cannot watch the start of {name}: {e}"))?;
    Ok(Starting {
        pid: pid as u32,
        // SAFETY: CLONE_PIDFD stored a fresh pidfd that we now own.
        pidfd: (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) }),
        status: status_r,
        report: Vec::with_capacity(REPORT_LEN),
        stdout: out.map(|(r, _)| r),
        stderr: err.map(|(r, _)| r),
        ready: ready.map(|(r, _)| r),
        why: Why {
            lookup,
            workdir: req.workdir.clone(),
            credentials: req.credentials.clone(),
            nofile: req.nofile,
            ready_fd: req.ready_fd,
            sockets: req.activate.len(),
            cgroup: cgroup.map(Path::to_path_buf),
        },
        memory: Some(memory),
    })
}

/// Whether `fd` becomes readable (data or hang-up) within `limit`.
pub(crate) fn readable_within(fd: &OwnedFd, limit: std::time::Duration) -> bool {
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
            Err(_) => return true,
        }
    }
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
