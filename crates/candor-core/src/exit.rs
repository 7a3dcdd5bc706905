//! How a process ended, and how to say it in words.

/// The wait status of a finished process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
    /// The process ended while no supervisor watched it and the kernel kept no status for us
    /// (it was not our child and no pidfd of ours was open when it ended).
    Unknown,
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(c),
            _ => None,
        }
    }
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Signal(s) => Some(s),
            _ => None,
        }
    }
    /// A wait status as waitpid(2) gives it.
    pub fn from_wait(status: i32) -> Self {
        if libc_wifsignaled(status) {
            ExitStatus::Signal(status & 0x7f)
        } else {
            ExitStatus::Code((status >> 8) & 0xff)
        }
    }
    /// "exited with code 1", "killed by SIGKILL".
    pub fn describe(self) -> String {
        match self {
            ExitStatus::Code(c) => format!("exited with code {c}"),
            ExitStatus::Signal(s) => format!("killed by {}", signal_name(s)),
            ExitStatus::Unknown => {
                "ended while the supervisor was down; exit status unknown".into()
            }
        }
    }
}

/// The conventional name of a Linux signal number.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        28 => "SIGWINCH",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// WIFSIGNALED without libc: terminated by a signal (not stopped, not exited).
fn libc_wifsignaled(status: i32) -> bool {
    ((status & 0x7f) + 1) as i8 >= 2
}

#[cfg(test)]
mod tests {
    use super::ExitStatus;

    #[test]
    fn wait_statuses_decode_as_waitpid_gives_them() {
        assert_eq!(ExitStatus::from_wait(0), ExitStatus::Code(0));
        assert_eq!(ExitStatus::from_wait(3 << 8), ExitStatus::Code(3));
        assert_eq!(ExitStatus::from_wait(9), ExitStatus::Signal(9));
        // killed by SIGSEGV with a core dump
        assert_eq!(ExitStatus::from_wait(0x80 | 11), ExitStatus::Signal(11));
    }
}
