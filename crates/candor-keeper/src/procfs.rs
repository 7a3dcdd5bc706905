//! Reading /proc: each file opened, read and closed at once (nothing held open).

/// The process group of `pid`, from `/proc/<pid>/stat`.
pub fn pgid(pid: u32) -> Option<u32> {
    stat_pgid(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 5 (`pgrp`) of a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses
/// and may itself contain spaces and `)`, so the fields are counted after the last `)`.
fn stat_pgid(stat: &str) -> Option<u32> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // state, ppid, pgrp
    after_comm.split_whitespace().nth(2)?.parse().ok()
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
    fn pgid_of_this_process_is_its_process_group() {
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() } as u32;
        assert_eq!(pgid(std::process::id()), Some(own));
    }
}
