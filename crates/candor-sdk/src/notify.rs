//! Tell the supervisor how the service is: ready, its status line, reloading, stopping.
//!
//! The sd_notify protocol (datagrams to `NOTIFY_SOCKET`, abstract sockets included), so it
//! works under Candor and systemd alike; plus Candor's `ready = { fd = N }` (s6's newline on
//! an fd, `CANDOR_READY_FD`) and `ready = { file = PATH }` (`CANDOR_READY_FILE`), so
//! [`ready`] is right whatever the service's `ready` says. Without a supervisor every call is
//! a no-op that returns `Ok(false)`.
//!
//! ```
//! use candor_sdk::notify;
//!
//! notify::status("loading 120 000 rows").unwrap();
//! // ...
//! notify::ready().unwrap();
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Where this process tells its supervisor things, read once from the environment.
///
/// Most services use the module's functions ([`ready`], [`status`], …), which share one
/// `Notifier` made from the environment at first use.
///
/// ```
/// let n = candor_sdk::notify::Notifier::from_env();
/// if !n.is_supervised() {
///     println!("no supervisor is listening; notifications are no-ops");
/// }
/// ```
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(SocketAddr, String)>,
    /// A `NOTIFY_SOCKET` this SDK cannot send to: every send says so.
    bad_socket: Option<String>,
    sender: OnceLock<io::Result<UnixDatagram>>,
    ready_fd: Mutex<Option<io::Result<OwnedFd>>>,
    /// Whether a ready fd was named (it is gone once written to).
    ready_fd_given: bool,
    ready_file: Option<PathBuf>,
}

impl Notifier {
    /// Read `NOTIFY_SOCKET`, `CANDOR_READY_FD` and `CANDOR_READY_FILE`.
    ///
    /// The ready fd is taken now (made close-on-exec so children do not inherit it) and
    /// written to once, by [`Notifier::ready`]. Make one `Notifier` per process: a second
    /// one would find the fd taken.
    ///
    /// ```
    /// let n = candor_sdk::notify::Notifier::from_env();
    /// # let _ = n;
    /// ```
    pub fn from_env() -> Notifier {
        let (socket, bad_socket) = match crate::env("NOTIFY_SOCKET").map(|s| (address(&s), s)) {
            Some((Ok(a), s)) => (Some((a, s)), None),
            Some((Err(e), _)) => (None, Some(e.to_string())),
            None => (None, None),
        };
        let ready_fd = crate::env("CANDOR_READY_FD").map(|n| take_ready_fd(&n));
        Notifier {
            socket,
            bad_socket,
            sender: OnceLock::new(),
            ready_fd_given: ready_fd.is_some(),
            ready_fd: Mutex::new(ready_fd),
            ready_file: crate::env("CANDOR_READY_FILE").map(PathBuf::from),
        }
    }

    /// A notifier that sends to this socket (a path, or `@name` for an abstract one) and has
    /// no ready fd or file: for tests, or a process that was handed the address another way.
    ///
    /// ```
    /// let n = candor_sdk::notify::Notifier::to_socket("@no-one-listens-here").unwrap();
    /// assert!(n.send("STATUS=x").is_err(), "nobody is bound to that name");
    /// ```
    pub fn to_socket(name: &str) -> io::Result<Notifier> {
        Ok(Notifier {
            socket: Some((address(name)?, name.to_string())),
            bad_socket: None,
            sender: OnceLock::new(),
            ready_fd: Mutex::new(None),
            ready_fd_given: false,
            ready_file: None,
        })
    }

    /// Whether any supervisor channel is set: a notify socket, a ready fd or a ready file.
    ///
    /// ```
    /// # let n = candor_sdk::notify::Notifier::from_env();
    /// println!("supervised: {}", n.is_supervised());
    /// ```
    pub fn is_supervised(&self) -> bool {
        self.socket.is_some()
            || self.bad_socket.is_some()
            || self.ready_file.is_some()
            || self.ready_fd_given
    }

    /// Send one message (`KEY=VALUE` lines) to `NOTIFY_SOCKET`. `Ok(false)` when there is none.
    ///
    /// ```
    /// # let n = candor_sdk::notify::Notifier::from_env();
    /// n.send("STATUS=warming the cache\nEXTEND_TIMEOUT_USEC=5000000").unwrap();
    /// ```
    pub fn send(&self, msg: &str) -> io::Result<bool> {
        if let Some(why) = &self.bad_socket {
            return Err(io::Error::new(io::ErrorKind::Unsupported, why.clone()));
        }
        let Some((addr, name)) = &self.socket else {
            return Ok(false);
        };
        let sender = self
            .sender
            .get_or_init(UnixDatagram::unbound)
            .as_ref()
            .map_err(|e| io::Error::new(e.kind(), format!("notify socket: {e}")))?;
        sender
            .send_to_addr(msg.as_bytes(), addr)
            .map_err(|e| io::Error::new(e.kind(), format!("NOTIFY_SOCKET={name}: {e}")))?;
        Ok(true)
    }

    /// The service is ready: `READY=1`, a newline on the ready fd, the ready file created —
    /// whichever the supervisor set up. `Ok(false)` when none is.
    ///
    /// ```
    /// # let n = candor_sdk::notify::Notifier::from_env();
    /// n.ready().unwrap();
    /// ```
    pub fn ready(&self) -> io::Result<bool> {
        let mut told = self.send("READY=1")?;
        let fd = self
            .ready_fd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(fd) = fd {
            // s6: one newline, then close.
            File::from(fd?)
                .write_all(b"\n")
                .map_err(|e| io::Error::new(e.kind(), format!("writing to the ready fd: {e}")))?;
            told = true;
        }
        if let Some(path) = &self.ready_file {
            File::create(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("CANDOR_READY_FILE={}: {e}", path.display()),
                )
            })?;
            told = true;
        }
        Ok(told)
    }

    /// One line of status for `candor status` / `systemctl status` (newlines become spaces).
    ///
    /// ```
    /// # let n = candor_sdk::notify::Notifier::from_env();
    /// n.status("serving 12 clients").unwrap();
    /// ```
    pub fn status(&self, text: &str) -> io::Result<bool> {
        self.send(&format!("STATUS={}", text.replace(['\n', '\r'], " ")))
    }

    /// The service is reloading its configuration; call [`Notifier::ready`] when done.
    /// Sends `MONOTONIC_USEC` with it, as systemd's `Type=notify-reload` requires.
    ///
    /// ```
    /// # let n = candor_sdk::notify::Notifier::from_env();
    /// n.reloading().unwrap();
    /// // ... re-read the config ...
    /// n.ready().unwrap();
    /// ```
    pub fn reloading(&self) -> io::Result<bool> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime fills the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"))
    }

    /// The service is shutting down.
    ///
    /// ```
    /// # let n = candor_sdk::notify::Notifier::from_env();
    /// n.stopping().unwrap();
    /// ```
    pub fn stopping(&self) -> io::Result<bool> {
        self.send("STOPPING=1")
    }

    /// A watchdog ping (`WATCHDOG=1`). Prefer [`crate::watchdog::Watchdog`], which pings only
    /// while the service's own check passes.
    ///
    /// ```
    /// # let n = candor_sdk::notify::Notifier::from_env();
    /// n.watchdog().unwrap();
    /// ```
    pub fn watchdog(&self) -> io::Result<bool> {
        self.send("WATCHDOG=1")
    }

    /// The service found itself broken: restart it now, as if a ping were missed
    /// (`WATCHDOG=trigger`).
    ///
    /// ```
    /// # let n = candor_sdk::notify::Notifier::from_env();
    /// # if false {
    /// n.watchdog_trigger().unwrap();
    /// # }
    /// ```
    pub fn watchdog_trigger(&self) -> io::Result<bool> {
        self.send("WATCHDOG=trigger")
    }

    /// Wait until the supervisor has taken every message sent before this call
    /// (`BARRIER=1` with a pipe's write end, as `sd_notify_barrier` does). `Ok(false)` when
    /// there is no notify socket; an error of kind `TimedOut` after `timeout`.
    ///
    /// ```
    /// # let n = candor_sdk::notify::Notifier::from_env();
    /// n.status("about to exit").unwrap();
    /// n.barrier(std::time::Duration::from_secs(5)).unwrap();
    /// ```
    pub fn barrier(&self, timeout: Duration) -> io::Result<bool> {
        let Some((addr, name)) = &self.socket else {
            return Ok(false);
        };
        let (read, write) = pipe()?;
        let sock = UnixDatagram::unbound()?;
        sock.connect_addr(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("NOTIFY_SOCKET={name}: {e}")))?;
        send_with_fd(&sock, b"BARRIER=1", write.as_raw_fd())?;
        drop(write);
        // The supervisor closes its copy of the write end once it has taken what came before:
        // the read end then sees end of file.
        let mut pfd = libc::pollfd {
            fd: read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one pollfd we own.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        match n {
            0 => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the supervisor did not take the notify barrier within {timeout:?}"),
            )),
            n if n < 0 => Err(io::Error::last_os_error()),
            _ => Ok(true),
        }
    }
}

/// An sd_notify address: a path, or `@name` for an abstract socket.
fn address(s: &str) -> io::Result<SocketAddr> {
    match s.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None if s.starts_with('/') => SocketAddr::from_pathname(s),
        None => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("NOTIFY_SOCKET={s}: only paths and @abstract names are supported"),
        )),
    }
}

/// Take the fd named by `CANDOR_READY_FD` if it is an open pipe.
fn take_ready_fd(n: &str) -> io::Result<OwnedFd> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CANDOR_READY_FD={n}: {why}"),
        )
    };
    let fd: i32 = n.parse().map_err(|_| bad("not an fd number"))?;
    if fd < 3 {
        return Err(bad("stdin, stdout and stderr are not ready fds"));
    }
    // SAFETY: fstat on an fd number fills the stat we own; it fails if the fd is not open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(bad("not open in this process"));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(bad("not a pipe"));
    }
    // SAFETY: the fd is open, a pipe set up for exactly this, and taken once (from_env).
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Send `msg` on a connected datagram socket with one fd attached (SCM_RIGHTS).
pub(crate) fn send_with_fd(sock: &UnixDatagram, msg: &[u8], fd: i32) -> io::Result<()> {
    // Room for one cmsghdr and one int, aligned for cmsghdr.
    let mut space = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    // SAFETY: msghdr is plain data; the pointers set below outlive the sendmsg call, and the
    // CMSG_* macros stay inside `space`, which CMSG_SPACE(sizeof(int)) fits.
    unsafe {
        let mut hdr: libc::msghdr = std::mem::zeroed();
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = space.as_mut_ptr().cast();
        hdr.msg_controllen = libc::CMSG_SPACE(size_of::<i32>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<i32>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd);
        if libc::sendmsg(sock.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn global() -> &'static Notifier {
    static GLOBAL: OnceLock<Notifier> = OnceLock::new();
    GLOBAL.get_or_init(Notifier::from_env)
}

/// The service is ready (see [`Notifier::ready`]).
///
/// ```
/// candor_sdk::notify::ready().unwrap();
/// ```
pub fn ready() -> io::Result<bool> {
    global().ready()
}

/// Its status line (see [`Notifier::status`]).
///
/// ```
/// candor_sdk::notify::status("serving").unwrap();
/// ```
pub fn status(text: &str) -> io::Result<bool> {
    global().status(text)
}

/// It is reloading (see [`Notifier::reloading`]).
///
/// ```
/// candor_sdk::notify::reloading().unwrap();
/// candor_sdk::notify::ready().unwrap();
/// ```
pub fn reloading() -> io::Result<bool> {
    global().reloading()
}

/// It is stopping (see [`Notifier::stopping`]).
///
/// ```
/// candor_sdk::notify::stopping().unwrap();
/// ```
pub fn stopping() -> io::Result<bool> {
    global().stopping()
}

/// A watchdog ping (see [`Notifier::watchdog`]).
///
/// ```
/// candor_sdk::notify::watchdog().unwrap();
/// ```
pub fn watchdog() -> io::Result<bool> {
    global().watchdog()
}

/// Wait until the supervisor has taken the messages sent so far (see [`Notifier::barrier`]).
///
/// ```
/// candor_sdk::notify::barrier(std::time::Duration::from_secs(5)).unwrap();
/// ```
pub fn barrier(timeout: Duration) -> io::Result<bool> {
    global().barrier(timeout)
}

/// Send any message (see [`Notifier::send`]).
///
/// ```
/// candor_sdk::notify::send("STATUS=draining").unwrap();
/// ```
pub fn send(msg: &str) -> io::Result<bool> {
    global().send(msg)
}

/// Whether a supervisor is listening (see [`Notifier::is_supervised`]).
///
/// ```
/// if !candor_sdk::notify::is_supervised() {
///     eprintln!("running without a supervisor");
/// }
/// ```
pub fn is_supervised() -> bool {
    global().is_supervised()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier(socket: &str) -> Notifier {
        Notifier::to_socket(socket).unwrap()
    }

    #[test]
    fn messages_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = notifier(path.to_str().unwrap());
        assert!(n.ready().unwrap());
        assert!(n.status("two\nlines").unwrap());
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=two lines");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("candor-sdk-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        let n = notifier(&format!("@{name}"));
        assert!(n.reloading().unwrap());
        let len = rx.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(got.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{got}");
    }

    #[test]
    fn a_barrier_returns_once_the_supervisor_closes_the_fd_and_times_out_if_it_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = notifier(path.to_str().unwrap());
        // Nobody takes the message: the barrier times out.
        let err = n.barrier(Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // The queued datagram carries an fd; receiving and closing it releases the barrier.
        let waiter = std::thread::spawn(move || n.barrier(Duration::from_secs(10)));
        for _ in 0..2 {
            let mut buf = [0u8; 64];
            let mut space = [0u64; 8];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: a recvmsg into buffers we own; received fds are closed below.
            unsafe {
                let mut hdr: libc::msghdr = std::mem::zeroed();
                hdr.msg_iov = &mut iov;
                hdr.msg_iovlen = 1;
                hdr.msg_control = space.as_mut_ptr().cast();
                hdr.msg_controllen = size_of_val(&space);
                let len = libc::recvmsg(rx.as_raw_fd(), &mut hdr, 0);
                assert_eq!(&buf[..len as usize], b"BARRIER=1");
                let cmsg = libc::CMSG_FIRSTHDR(&hdr);
                assert!(!cmsg.is_null());
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
                libc::close(fd);
            }
        }
        assert!(waiter.join().unwrap().unwrap());
    }

    #[test]
    fn without_a_supervisor_everything_is_a_no_op() {
        let n = Notifier {
            socket: None,
            bad_socket: None,
            sender: OnceLock::new(),
            ready_fd: Mutex::new(None),
            ready_fd_given: false,
            ready_file: None,
        };
        assert!(!n.is_supervised());
        assert!(!n.ready().unwrap());
        assert!(!n.status("x").unwrap());
        assert!(!n.barrier(Duration::from_secs(1)).unwrap());
    }

    #[test]
    fn ready_writes_one_newline_on_the_ready_fd_and_creates_the_ready_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ready");
        let (read, write) = pipe().unwrap();
        let n = Notifier {
            socket: None,
            bad_socket: None,
            sender: OnceLock::new(),
            ready_fd: Mutex::new(Some(Ok(write))),
            ready_fd_given: true,
            ready_file: Some(file.clone()),
        };
        assert!(n.is_supervised());
        assert!(n.ready().unwrap());
        assert!(file.exists());
        let mut got = String::new();
        use std::io::Read;
        File::from(read).read_to_string(&mut got).unwrap();
        assert_eq!(got, "\n", "one newline, then the write end is closed");
        // A second ready() finds the fd used and does not fail.
        assert!(n.ready().unwrap());
        assert!(n.is_supervised());
    }

    #[test]
    fn a_ready_fd_that_is_not_a_pipe_is_refused_with_its_reason() {
        let f = File::open("/dev/null").unwrap();
        let err = take_ready_fd(&f.as_raw_fd().to_string()).unwrap_err();
        assert!(err.to_string().contains("not a pipe"), "{err}");
        let err = take_ready_fd("9999").unwrap_err();
        assert!(err.to_string().contains("not open"), "{err}");
        let err = take_ready_fd("1").unwrap_err();
        assert!(err.to_string().contains("stdout"), "{err}");
    }
}
