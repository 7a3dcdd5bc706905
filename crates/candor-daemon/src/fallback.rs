//! The guard of a PID 1 successor, inside the successor itself. As PID 1 of a PID namespace
//! (a container's init), a daemon that exits takes every process of the namespace down, and a
//! guard process would die with it. So the daemon that hands over keeps its own image open
//! across the exec (`CANDOR_FALLBACK_EXE_FD`: the file on disk may have been replaced), and
//! until the successor answers on its socket, any failure in it — an error at start, a panic,
//! a crash signal, no answer within 60 s — execs that image again with the socket, as the
//! out-of-process guard does (`upgrade::take_over`): never an exit.
//!
//! What it cannot cover: a successor that dies before its `main` runs (a missing library, a
//! crash in the dynamic loader), one that is not a candor that knows this protocol (a script,
//! an older candor), a SIGKILL (the OOM killer). `upgrade::trial` runs the new binary as a
//! daemon once, as a child, before the exec, for those.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::upgrade::Handover;

/// How long the successor may take to answer before it gives up and execs the old image.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// Until the successor answers: a failure execs the old image.
static PENDING: AtomicBool = AtomicBool::new(false);
/// The old image and a copy of the listening socket (close-on-exec until the fallback).
static EXE: AtomicI32 = AtomicI32::new(-1);
static LISTEN: AtomicI32 = AtomicI32::new(-1);
static ARMED: Mutex<Option<Armed>> = Mutex::new(None);
/// What a crash signal's handler execs, made in advance (a handler must not allocate).
static ON_CRASH: OnceLock<Prepared> = OnceLock::new();
/// The signals that end a process with a crash, and their actions before ours.
const CRASHES: [libc::c_int; 6] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
    libc::SIGSYS,
];
static BEFORE: Mutex<Vec<(libc::c_int, libc::sigaction)>> = Mutex::new(Vec::new());

struct Armed {
    _exe: OwnedFd,
    _listen: OwnedFd,
    argv: Vec<CString>,
    /// The environment to exec the old image with, but for why it failed.
    env: Vec<CString>,
}

/// argv and envp as the exec wants them, with the strings they point into.
struct Prepared {
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into `_strings`, which is never changed or dropped once made.
unsafe impl Send for Prepared {}
unsafe impl Sync for Prepared {}

fn cstring(bytes: &[u8]) -> Option<CString> {
    CString::new(bytes).ok()
}

fn var(k: &str, v: &OsStr) -> Option<CString> {
    let mut kv = k.as_bytes().to_vec();
    kv.push(b'=');
    kv.extend_from_slice(v.as_bytes());
    cstring(&kv)
}

fn prepare(argv: &[CString], env: &[CString], why: &str) -> Prepared {
    let mut strings: Vec<CString> = argv.to_vec();
    strings.extend(env.iter().cloned());
    strings.extend(var("CANDOR_UPGRADE_ERROR", OsStr::new(why)));
    let ptrs = |s: &[CString]| {
        let mut p: Vec<*const libc::c_char> = s.iter().map(|c| c.as_ptr()).collect();
        p.push(std::ptr::null());
        p
    };
    Prepared {
        argv: ptrs(&strings[..argv.len()]),
        envp: ptrs(&strings[argv.len()..]),
        _strings: strings,
    }
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: async-signal-safe (one syscall).
unsafe fn exec_fd(fd: i32, p: &Prepared) -> std::io::Error {
    libc::syscall(
        libc::SYS_execveat,
        fd,
        c"".as_ptr(),
        p.argv.as_ptr(),
        p.envp.as_ptr(),
        libc::AT_EMPTY_PATH,
    );
    std::io::Error::last_os_error()
}

/// Make the old image and the socket copy inheritable again, just before the exec.
/// Async-signal-safe.
unsafe fn inheritable() {
    for fd in [EXE.load(Ordering::SeqCst), LISTEN.load(Ordering::SeqCst)] {
        if fd >= 0 {
            libc::fcntl(fd, libc::F_SETFD, 0);
        }
    }
}

extern "C" fn on_crash(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    if PENDING.swap(false, Ordering::SeqCst) {
        if let Some(p) = ON_CRASH.get() {
            let say = b"candor: the new binary crashed before it answered; the old binary takes over again\n";
            // SAFETY: write, fcntl and execveat are async-signal-safe; `p` is immutable.
            unsafe {
                libc::write(2, say.as_ptr().cast(), say.len());
                inheritable();
                exec_fd(EXE.load(Ordering::SeqCst), p);
            }
        }
    }
    // No fallback to be had: the signal's default action, as without us. Returning re-runs
    // the faulting instruction (or abort() raises again) with that action in place.
    // SAFETY: sigaction with a zeroed (SIG_DFL) action is async-signal-safe.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
    }
}

/// In a successor handed the old image (PID 1 mode): arm the fallback. Call it before any
/// thread starts. Does nothing for any other process (no image handed, or this is already
/// the old binary taking over again: it does not fall back to itself).
pub fn arm(handover: &Handover) {
    let Some(exe) = handover.fallback_exe.filter(|fd| *fd > 2) else {
        return;
    };
    // SAFETY: the predecessor opened this fd for us and handed its number over; nothing else
    // in this process owns it.
    let exe = unsafe { OwnedFd::from_raw_fd(exe) };
    if handover.error.is_some() {
        return; // closes it
    }
    let listen = handover.listen_fd.and_then(|fd| {
        // SAFETY: borrowed only to duplicate it; `bind` takes ownership of the original.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_dupfd_cloexec(fd, 3).ok()
    });
    let (Some(listen), Ok(())) = (
        listen,
        rustix::io::fcntl_setfd(&exe, rustix::io::FdFlags::CLOEXEC),
    ) else {
        eprintln!("candor: warning: cannot keep the old binary's image and socket for a fallback; a failure before this daemon answers takes the namespace down");
        return;
    };
    let argv: Vec<CString> = std::env::args_os()
        .filter_map(|a| cstring(a.as_bytes()))
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != "CANDOR_FAILPOINTS")
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect();
    env.extend(var(
        "CANDOR_LISTEN_FD",
        OsStr::new(&listen.as_raw_fd().to_string()),
    ));
    if let Some(from) = &handover.from {
        env.extend(var("CANDOR_UPGRADED_FROM", OsStr::new(from)));
    }
    if let Some(o) = handover.original {
        for (k, v) in o.to_env() {
            env.extend(var(k, OsStr::new(&v)));
        }
    }
    let _ = ON_CRASH.set(prepare(
        &argv,
        &env,
        "the new binary crashed (a fatal signal) before it answered",
    ));
    EXE.store(exe.as_raw_fd(), Ordering::SeqCst);
    LISTEN.store(listen.as_raw_fd(), Ordering::SeqCst);
    *ARMED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Armed {
        _exe: exe,
        _listen: listen,
        argv,
        env,
    });
    PENDING.store(true, Ordering::SeqCst);

    let mut before = BEFORE.lock().unwrap_or_else(|e| e.into_inner());
    for sig in CRASHES {
        // SAFETY: installing a handler that only makes async-signal-safe calls; SA_ONSTACK
        // runs it on the thread's alternate stack (a stack overflow), SA_NODEFER leaves the
        // signal unblocked for the image exec'd from it.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_crash
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, &act, &mut old) == 0 {
                before.push((sig, old));
            }
        }
    }
    drop(before);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        hook(info);
        if PENDING.load(Ordering::SeqCst) {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            fall_back(&format!(
                "the new binary panicked before it answered ({message})"
            ));
        }
    }));
    std::thread::spawn(|| {
        std::thread::sleep(ANSWER_WITHIN);
        fall_back(&format!(
            "the new binary did not answer within {}s",
            ANSWER_WITHIN.as_secs()
        ));
    });
}

/// Whether this successor is still on trial (a failure execs the old image).
pub fn pending() -> bool {
    PENDING.load(Ordering::SeqCst)
}

/// The successor failed before it answered: exec the old image with the socket, saying why.
/// Returns only when there is nothing to fall back to, or the exec failed (said on stderr).
pub fn fall_back(why: &str) {
    if !PENDING.swap(false, Ordering::SeqCst) {
        return;
    }
    let armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
    let Some(a) = armed.as_ref() else {
        return;
    };
    eprintln!("candor: upgrade failed: {why}; the old binary takes over again");
    let p = prepare(&a.argv, &a.env, why);
    // SAFETY: fcntl on our own fds, then one exec; `p` lives across the call.
    let e = unsafe {
        inheritable();
        exec_fd(EXE.load(Ordering::SeqCst), &p)
    };
    eprintln!("candor: cannot exec the old binary again ({e})");
}

/// The successor answers: it is the daemon now. Its failures are its own from here on (the
/// crash handlers before ours are put back, the old image and socket copy closed).
pub fn commit() {
    if !PENDING.swap(false, Ordering::SeqCst) {
        return;
    }
    for (sig, old) in BEFORE.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        // SAFETY: putting back the action that was in place before `arm`.
        unsafe {
            libc::sigaction(sig, &old, std::ptr::null_mut());
        }
    }
    EXE.store(-1, Ordering::SeqCst);
    LISTEN.store(-1, Ordering::SeqCst);
    ARMED.lock().unwrap_or_else(|e| e.into_inner()).take();
}
