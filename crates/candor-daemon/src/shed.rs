//! Give back what only the start needed. Once every service has left `starting` (or after
//! 30 s), the daemon returns its free heap to the kernel (`malloc_trim`) and drops its own
//! binary's read-only pages from memory (`MADV_PAGEOUT` on its code and rodata mappings):
//! the config parser, clap, SQLite's schema code and the start-up paths were touched once and
//! are not needed again. They are clean file pages: what is used later comes back from the
//! file on first touch (in the kernel's fault-around windows), so the daemon keeps its working
//! set, not its start. Done once; nothing depends on it having worked.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::board::Board;

/// The longest the daemon waits for services to leave `starting` before shedding anyway.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// After they have: the first status requests and sampler rounds of a fresh start.
const THEN: Duration = Duration::from_secs(2);

pub async fn after_start(mut board: watch::Receiver<Arc<Board>>) {
    let _ = tokio::time::timeout(SETTLE_LIMIT, crate::board::none_starting(&mut board)).await;
    tokio::time::sleep(THEN).await;
    let _ = tokio::task::spawn_blocking(shed).await;
}

/// Trim the heap and page out the binary's read-only mappings; the bytes advised.
pub fn shed() -> usize {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only gives free memory of the heap back to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut advised = 0;
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let path = f.nth(3);
        if path != exe.to_str() || !perms.starts_with('r') || perms.as_bytes().get(1) != Some(&b'-')
        {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: a read-only, file-backed mapping of our own binary: MADV_PAGEOUT only
        // drops its pages from memory; they are read back from the file when next touched.
        let r =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) };
        if r == 0 {
            advised += end - start;
        }
    }
    advised
}

#[cfg(test)]
mod tests {
    #[test]
    fn shedding_finds_the_binarys_read_only_mappings_and_everything_still_runs() {
        // Whether the pages leave memory depends on who else maps them (other test processes
        // of this binary do): bench/memory.py measures that on the daemon.
        let advised = super::shed();
        assert!(advised > 0, "no mapping of the test binary was advised");
        // Code paged out comes back when used.
        let v: Vec<String> = (0..3).map(|i| format!("{i}")).collect();
        assert_eq!(v.join(","), "0,1,2");
    }
}
