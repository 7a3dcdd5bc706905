//! The exit status of a process that is not our child: `PIDFD_GET_INFO` with
//! `PIDFD_INFO_EXIT` (Linux ≥ 6.15). The kernel keeps it on the pidfd once the process has been
//! reaped by its parent, as long as a pidfd to it was open when it ended.

use std::os::fd::{AsRawFd, OwnedFd};

use candor_core::ExitStatus;

/// `struct pidfd_info` as first published (64 bytes).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    ids: [u32; 11],
    exit_code: i32,
}

const PIDFD_INFO_EXIT: u64 = 1 << 3;
/// `_IOWR(PIDFS_IOCTL_MAGIC = 0xFF, 11, struct pidfd_info)`.
const PIDFD_GET_INFO: u64 = (3 << 30) | ((size_of::<PidfdInfo>() as u64) << 16) | (0xFF << 8) | 11;

/// The wait status the kernel kept for the process behind `pidfd`, once it has been reaped;
/// None while it has not been, or where the kernel does not keep it.
pub fn exit_status(pidfd: &OwnedFd) -> Option<ExitStatus> {
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..Default::default()
    };
    // SAFETY: the ioctl writes at most size_of::<PidfdInfo>() bytes (encoded in the request)
    // into `info`, which lives for the call.
    let rc = unsafe {
        libc::ioctl(
            pidfd.as_raw_fd(),
            PIDFD_GET_INFO as _,
            &mut info as *mut PidfdInfo,
        )
    };
    (rc == 0 && info.mask & PIDFD_INFO_EXIT != 0).then(|| ExitStatus::from_wait(info.exit_code))
}

/// A pidfd for `pid` (pins it: the pid cannot be reused while the fd is open).
pub fn open(pid: i32) -> std::io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// Send `sig` to the process behind `pidfd` (never to a process that reused its pid).
/// Returns false if it could not be sent (the process is gone).
pub fn send_signal(pidfd: &OwnedFd, sig: i32) -> bool {
    // SAFETY: pidfd_send_signal(2) with no siginfo; no memory is written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_number_is_the_kernels() {
        assert_eq!(size_of::<PidfdInfo>(), 64);
        assert_eq!(PIDFD_GET_INFO, 0xC040_FF0B);
    }
}
