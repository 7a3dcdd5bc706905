//! Reading /proc: each file opened, read and closed at once (nothing held open).

/// The process group of `pid`, from `/proc/<pid>/stat`.
pub fn pgid(pid: u32) -> Option<u32> {
    stat_pgid(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// When `pid` started, in clock ticks after boot (field 22 of `/proc/<pid>/stat`): with the pid,
/// it names one process for the whole boot (a reused pid has a later start time).
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat_field(
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?,
        22,
    )
}

/// Whether `pid` runs: it exists and is not a zombie (or dead) whose exit is not reaped yet.
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_field::<char>(&s, 3))
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// The parent of `pid`.
pub fn ppid(pid: u32) -> Option<u32> {
    stat_field(
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?,
        4,
    )
}

/// Field `n` (1-based, as in proc(5)) of a stat line, counted after the command name.
fn stat_field<T: std::str::FromStr>(stat: &str, n: usize) -> Option<T> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    after_comm.split_whitespace().nth(n - 3)?.parse().ok()
}

/// Field 5 (`pgrp`) of a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses
/// and may itself contain spaces and `)`, so the fields are counted after the last `)`.
fn stat_pgid(stat: &str) -> Option<u32> {
    stat_field(stat, 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgid_is_counted_after_the_last_paren_of_the_command_name() {
        assert_eq!(
            stat_pgid("4242 (sleep) S 1 4240 4240 0 -1 4194560"),
            Some(4240)
        );
        assert_eq!(stat_pgid("4242 (my prog) (x) S 1 777 4240 0 -1"), Some(777));
        assert_eq!(stat_pgid("4242 (a ) b) R 9 31 31 0"), Some(31));
        assert_eq!(stat_pgid("4242 (trunc"), None);
        assert_eq!(stat_pgid(""), None);
    }

    #[test]
    fn start_time_and_parent_come_from_the_right_fields() {
        let line =
            "4242 (my (prog)) S 17 4240 4240 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 98765 123";
        assert_eq!(stat_field::<u64>(line, 22), Some(98765));
        assert_eq!(stat_field::<u32>(line, 4), Some(17));
        let own = std::process::id();
        assert!(start_ticks(own).is_some_and(|t| t > 0));
        // SAFETY: getppid has no preconditions.
        assert_eq!(ppid(own), Some(unsafe { libc::getppid() } as u32));
        assert!(running(own));
        assert_eq!(stat_field::<char>(line, 3), Some('S'));
    }

    #[test]
    fn pgid_of_this_process_is_its_process_group() {
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() } as u32;
        assert_eq!(pgid(std::process::id()), Some(own));
    }
}
