//! Reading the two clocks: CLOCK_BOOTTIME for every deadline and age (it counts suspend and
//! never steps), the wall clock for display.

use std::time::{Duration, SystemTime};

use candor_core::{Mono, Now};

/// Now on the boot clock.
pub fn mono() -> Mono {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into `ts`. CLOCK_BOOTTIME exists on every Linux
    // Candor supports; should it fail, CLOCK_MONOTONIC (which never steps either) is used.
    unsafe {
        if libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) != 0 {
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        }
    }
    Mono(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Both clocks, read together.
pub fn now() -> Now {
    Now {
        mono: mono(),
        wall: SystemTime::now(),
    }
}
