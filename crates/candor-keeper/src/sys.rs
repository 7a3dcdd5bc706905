//! Raw system calls for a child between clone and exec that shares the keeper's memory
//! (`probe_spawn`, `CLONE_VM`): libc's wrappers write `errno`, a thread-local that in such a
//! child is the keeper thread's own, which runs on meanwhile. These return the errno instead
//! and touch no memory but their arguments. Elsewhere (x86_64 and aarch64 have the assembly)
//! they fall back to libc, and `probe_spawn` does not share memory there.

/// A system call's result: its return value, or the errno.
pub(crate) type Sys = Result<usize, i32>;

/// What the kernel returned, as a `Sys`: -4095..-1 is an errno.
#[inline(always)]
fn result(ret: isize) -> Sys {
    if (-4095..0).contains(&ret) {
        Err(-ret as i32)
    } else {
        Ok(ret as usize)
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn call(n: libc::c_long, a: [usize; 6]) -> Sys {
    let ret: isize;
    std::arch::asm!(
        "syscall",
        inlateout("rax") n as isize => ret,
        in("rdi") a[0],
        in("rsi") a[1],
        in("rdx") a[2],
        in("r10") a[3],
        in("r8") a[4],
        in("r9") a[5],
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    result(ret)
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) unsafe fn call(n: libc::c_long, a: [usize; 6]) -> Sys {
    let ret: isize;
    std::arch::asm!(
        "svc 0",
        in("x8") n as usize,
        inlateout("x0") a[0] => ret,
        in("x1") a[1],
        in("x2") a[2],
        in("x3") a[3],
        in("x4") a[4],
        in("x5") a[5],
        options(nostack),
    );
    result(ret)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) unsafe fn call(n: libc::c_long, a: [usize; 6]) -> Sys {
    let r = libc::syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]);
    if r < 0 {
        Err(*libc::__errno_location())
    } else {
        Ok(r as usize)
    }
}

/// Whether a child may share the keeper's memory (`call` never writes errno here).
pub(crate) const SHARED_MEMORY_SAFE: bool =
    cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

#[inline(always)]
pub(crate) unsafe fn call1(n: libc::c_long, a: usize) -> Sys {
    call(n, [a, 0, 0, 0, 0, 0])
}

#[inline(always)]
pub(crate) unsafe fn call3(n: libc::c_long, a: usize, b: usize, c: usize) -> Sys {
    call(n, [a, b, c, 0, 0, 0])
}

/// `dup2(old, new)`: the copy on `new` stays open across exec (aarch64 has no dup2: dup3, or
/// clearing CLOEXEC when `old` is `new` already).
#[inline(always)]
pub(crate) unsafe fn dup_to(old: i32, new: i32) -> Sys {
    if old == new {
        call3(libc::SYS_fcntl, new as usize, libc::F_SETFD as usize, 0)
    } else {
        call3(libc::SYS_dup3, old as usize, new as usize, 0)
    }
}

/// Write all of `bytes` (a report of a few bytes: one write).
#[inline(always)]
pub(crate) unsafe fn write(fd: i32, bytes: &[u8]) -> Sys {
    call3(
        libc::SYS_write,
        fd as usize,
        bytes.as_ptr() as usize,
        bytes.len(),
    )
}

/// End this process now (no atexit handlers, no flush).
#[inline(always)]
pub(crate) unsafe fn exit(code: i32) -> ! {
    loop {
        let _ = call1(libc::SYS_exit, code as usize);
    }
}

/// Sleep until killed (the test seam for a child stuck before exec): a minute at most, far past
/// any exec deadline, so that a child whose daemon died meanwhile does not linger.
#[inline(always)]
pub(crate) unsafe fn hang() -> ! {
    let ts = libc::timespec {
        tv_sec: 60,
        tv_nsec: 0,
    };
    let _ = call(
        libc::SYS_nanosleep,
        [&ts as *const libc::timespec as usize, 0, 0, 0, 0, 0],
    );
    exit(127)
}

/// `execve(path, argv, envp)`: returns only on failure, with the errno.
#[inline(always)]
pub(crate) unsafe fn execve(
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> i32 {
    match call3(
        libc::SYS_execve,
        path as usize,
        argv as usize,
        envp as usize,
    ) {
        Err(e) => e,
        Ok(_) => libc::EINVAL,
    }
}

/// Into `dir`.
#[inline(always)]
pub(crate) unsafe fn chdir(dir: *const libc::c_char) -> Sys {
    call1(libc::SYS_chdir, dir as usize)
}

/// `clone3` for a child that shares our memory (`CLONE_VM`) on a stack of its own
/// (`args.stack`, `args.stack_size`): the child calls `f(arg)` on that stack and never returns;
/// the parent gets the child's pid. Without a libc wrapper that takes a function, the child's
/// first instructions must not touch the parent's stack frame: they are all in this one block.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn clone3_vm(
    args: *mut libc::c_void,
    size: usize,
    f: unsafe extern "C" fn(*mut libc::c_void) -> !,
    arg: *mut libc::c_void,
) -> Sys {
    let ret: isize;
    std::arch::asm!(
        "syscall",
        "test rax, rax",
        "jnz 2f",
        // The child, on its new stack (16-byte aligned: `call` leaves it as a function expects).
        "xor ebp, ebp",
        "mov rdi, r13",
        "call r12",
        "ud2",
        "2:",
        inlateout("rax") libc::SYS_clone3 as isize => ret,
        in("rdi") args,
        in("rsi") size,
        in("r12") f,
        in("r13") arg,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    result(ret)
}

#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn clone3_vm(
    args: *mut libc::c_void,
    size: usize,
    f: unsafe extern "C" fn(*mut libc::c_void) -> !,
    arg: *mut libc::c_void,
) -> Sys {
    let ret: isize;
    std::arch::asm!(
        "svc 0",
        "cbnz x0, 2f",
        "mov x29, xzr",
        "mov x30, xzr",
        "mov x0, x22",
        "blr x21",
        "brk #0",
        "2:",
        in("x8") libc::SYS_clone3 as usize,
        inlateout("x0") args as usize => ret,
        in("x1") size,
        in("x21") f,
        in("x22") arg,
        options(nostack),
    );
    result(ret)
}
