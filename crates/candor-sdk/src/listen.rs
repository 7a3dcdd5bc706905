//! Sockets the supervisor bound for the service (socket activation).
//!
//! With `sockets = [{ listen = "127.0.0.1:8080", activate = true, name = "web" }]` Candor (or
//! a systemd `.socket` unit) binds and listens, and every run gets the sockets as fds 3, 4, …
//! with `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES`. The socket outlives each run:
//! clients that connect while the service restarts wait in the backlog, and a Unix socket's
//! file never dangles.
//!
//! ```
//! use candor_sdk::listen::listen_fds;
//!
//! let mut fds = listen_fds().unwrap();
//! let listener = match fds.take_tcp("web") {
//!     Ok(l) => l,                                               // activated
//!     Err(_) => std::net::TcpListener::bind("127.0.0.1:0").unwrap(), // run by hand
//! };
//! # let _ = listener;
//! ```

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};

/// The first fd of the protocol.
const FIRST_FD: RawFd = 3;

/// An activated listening socket.
///
/// ```
/// use candor_sdk::listen::{listen_fds, Listener};
/// for (name, l) in listen_fds().unwrap().into_vec() {
///     match l {
///         Listener::Tcp(t) => println!("{name}: TCP {:?}", t.local_addr()),
///         Listener::Unix(u) => println!("{name}: Unix {:?}", u.local_addr()),
///     }
/// }
/// ```
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener (IPv4 or IPv6).
    Tcp(TcpListener),
    /// A Unix stream listener.
    Unix(UnixListener),
}

/// A listener made a tokio one (see [`Listener::into_tokio`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use candor_sdk::listen::{Listener, TokioListener};
/// let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// if let TokioListener::Tcp(l) = Listener::Tcp(std_listener).into_tokio().unwrap() {
///     println!("{:?}", l.local_addr());
/// }
/// # }
/// ```
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub enum TokioListener {
    /// A TCP listener.
    Tcp(tokio::net::TcpListener),
    /// A Unix stream listener.
    Unix(tokio::net::UnixListener),
}

impl Listener {
    /// Make it a tokio listener (non-blocking, registered with the current runtime: call
    /// this inside one).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use candor_sdk::listen::{Listener, TokioListener};
    /// let l = Listener::Tcp(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    /// assert!(matches!(l.into_tokio().unwrap(), TokioListener::Tcp(_)));
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn into_tokio(self) -> io::Result<TokioListener> {
        Ok(match self {
            Listener::Tcp(l) => {
                l.set_nonblocking(true)?;
                TokioListener::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
            Listener::Unix(l) => {
                l.set_nonblocking(true)?;
                TokioListener::Unix(tokio::net::UnixListener::from_std(l)?)
            }
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            Listener::Tcp(_) => "TCP",
            Listener::Unix(_) => "Unix",
        }
    }
}

/// The activated sockets of this process, by name.
///
/// ```
/// let mut fds = candor_sdk::listen::listen_fds().unwrap();
/// let web = fds.take_tcp("web");
/// let admin = fds.take_unix("admin");
/// println!("web: {}, admin: {}", web.is_ok(), admin.is_ok());
/// ```
#[derive(Debug, Default)]
pub struct ListenFds {
    sockets: Vec<(String, Listener)>,
}

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Take the activated sockets: fds 3 … 3+`LISTEN_FDS`-1 when `LISTEN_PID` is this process
/// (none otherwise: they were meant for a parent). They are made close-on-exec.
///
/// The fds are taken once per process: a second call is an error, so two parts of a program
/// cannot both think they own fd 3.
///
/// ```
/// let fds = candor_sdk::listen::listen_fds().unwrap();
/// println!("{} activated sockets: {:?}", fds.len(), fds.names());
/// ```
pub fn listen_fds() -> io::Result<ListenFds> {
    let fds = parse(
        crate::env("LISTEN_PID").as_deref(),
        crate::env("LISTEN_FDS").as_deref(),
        crate::env("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )?;
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "listen_fds() was called before: the activated sockets were handed out then",
        ));
    }
    let mut sockets = Vec::with_capacity(fds.len());
    for (name, fd) in fds {
        sockets.push((name, classify(fd)?));
    }
    Ok(ListenFds { sockets })
}

/// Which fds the environment hands this process, with their names.
fn parse(
    pid: Option<&str>,
    count: Option<&str>,
    names: Option<&str>,
    me: u32,
) -> io::Result<Vec<(String, RawFd)>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(Vec::new());
    };
    let pid: u32 = pid
        .parse()
        .map_err(|_| bad(&format!("LISTEN_PID={pid}: not a pid")))?;
    if pid != me {
        return Ok(Vec::new());
    }
    let n: RawFd = count
        .parse()
        .ok()
        .filter(|n| (0..=4096).contains(n))
        .ok_or_else(|| bad(&format!("LISTEN_FDS={count}: not a count of fds")))?;
    let names: Vec<&str> = names.map(|s| s.split(':').collect()).unwrap_or_default();
    // systemd: names that do not match the count are all "unknown".
    let named = names.len() == n as usize;
    Ok((0..n)
        .map(|i| {
            let name = if named { names[i as usize] } else { "unknown" };
            (name.to_string(), FIRST_FD + i)
        })
        .collect())
}

fn sockopt(fd: RawFd, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one int into `v`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Own fd `fd` as the listener it is.
fn classify(fd: RawFd) -> io::Result<Listener> {
    let why = |e: io::Error| io::Error::new(e.kind(), format!("activated fd {fd}: {e}"));
    let domain = sockopt(fd, libc::SO_DOMAIN).map_err(why)?;
    let listening = sockopt(fd, libc::SO_ACCEPTCONN).map_err(why)?;
    let stream = sockopt(fd, libc::SO_TYPE).map_err(why)? == libc::SOCK_STREAM;
    if listening == 0 || !stream {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("activated fd {fd} is not a listening stream socket"),
        ));
    }
    // SAFETY: fcntl on an open fd.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: fd is an open listening socket handed to this process (LISTEN_PID), taken once.
    match domain {
        libc::AF_INET | libc::AF_INET6 => Ok(Listener::Tcp(unsafe { TcpListener::from_raw_fd(fd) })),
        libc::AF_UNIX => Ok(Listener::Unix(unsafe { UnixListener::from_raw_fd(fd) })),
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("activated fd {fd} is a socket of address family {other}; only TCP and Unix stream listeners are supported"),
        )),
    }
}

impl ListenFds {
    /// How many sockets are left.
    ///
    /// ```
    /// let fds = candor_sdk::listen::listen_fds().unwrap();
    /// println!("{}", fds.len());
    /// ```
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether none are left (none at all when the process was not activated).
    ///
    /// ```
    /// # let fds = candor_sdk::listen::ListenFds::default();
    /// assert!(fds.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The names of the sockets left, in fd order.
    ///
    /// ```
    /// # let fds = candor_sdk::listen::ListenFds::default();
    /// assert!(fds.names().is_empty());
    /// ```
    pub fn names(&self) -> Vec<&str> {
        self.sockets.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Take the first socket named `name`.
    ///
    /// ```
    /// # let mut fds = candor_sdk::listen::ListenFds::default();
    /// assert!(fds.take("web").is_none());
    /// ```
    pub fn take(&mut self, name: &str) -> Option<Listener> {
        let i = self.sockets.iter().position(|(n, _)| n == name)?;
        Some(self.sockets.remove(i).1)
    }

    /// Take the TCP socket named `name`; the error says which sockets there are.
    ///
    /// ```
    /// # let mut fds = candor_sdk::listen::ListenFds::default();
    /// let err = fds.take_tcp("web").unwrap_err();
    /// assert!(err.to_string().contains("no activated socket named `web`"));
    /// ```
    pub fn take_tcp(&mut self, name: &str) -> io::Result<TcpListener> {
        match self.take(name) {
            Some(Listener::Tcp(l)) => Ok(l),
            other => Err(self.missing(name, "TCP", other)),
        }
    }

    /// Take the Unix socket named `name`; the error says which sockets there are.
    ///
    /// ```
    /// # let mut fds = candor_sdk::listen::ListenFds::default();
    /// assert!(fds.take_unix("api").is_err());
    /// ```
    pub fn take_unix(&mut self, name: &str) -> io::Result<UnixListener> {
        match self.take(name) {
            Some(Listener::Unix(l)) => Ok(l),
            other => Err(self.missing(name, "Unix", other)),
        }
    }

    fn missing(&mut self, name: &str, want: &str, got: Option<Listener>) -> io::Error {
        if let Some(l) = got {
            let kind = l.kind();
            self.sockets.insert(0, (name.to_string(), l));
            return io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the activated socket `{name}` is a {kind} socket, not {want}"),
            );
        }
        let have = if self.sockets.is_empty() {
            "none were passed (LISTEN_FDS)".to_string()
        } else {
            format!("there are: {}", self.names().join(", "))
        };
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no activated socket named `{name}`; {have}. Declare it in the service's \
                 sockets with activate = true, name = \"{name}\""
            ),
        )
    }

    /// All of them, in fd order, with their names.
    ///
    /// ```
    /// # let fds = candor_sdk::listen::ListenFds::default();
    /// for (name, listener) in fds.into_vec() {
    ///     println!("{name}: {listener:?}");
    /// }
    /// ```
    pub fn into_vec(self) -> Vec<(String, Listener)> {
        self.sockets
    }

    /// Take the TCP socket named `name` as a tokio listener (call inside a runtime).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut fds = candor_sdk::listen::listen_fds().unwrap();
    /// let l = match fds.take_tcp_tokio("web") {
    ///     Ok(l) => l,
    ///     Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    /// };
    /// # let _ = l;
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn take_tcp_tokio(&mut self, name: &str) -> io::Result<tokio::net::TcpListener> {
        let l = self.take_tcp(name)?;
        l.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(l)
    }

    /// Take the Unix socket named `name` as a tokio listener (call inside a runtime).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut fds = candor_sdk::listen::ListenFds::default();
    /// assert!(fds.take_unix_tokio("api").is_err());
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn take_unix_tokio(&mut self, name: &str) -> io::Result<tokio::net::UnixListener> {
        let l = self.take_unix(name)?;
        l.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn the_environment_names_the_fds_only_for_the_pid_it_was_meant_for() {
        let got = parse(Some("42"), Some("2"), Some("web:admin"), 42).unwrap();
        assert_eq!(got, vec![("web".into(), 3), ("admin".into(), 4)]);
        // For a parent: none.
        assert!(parse(Some("41"), Some("2"), None, 42).unwrap().is_empty());
        // Names that do not match the count are "unknown", as systemd does.
        let got = parse(Some("42"), Some("2"), Some("web"), 42).unwrap();
        assert_eq!(got, vec![("unknown".into(), 3), ("unknown".into(), 4)]);
        assert!(parse(None, None, None, 42).unwrap().is_empty());
        let err = parse(Some("42"), Some("-1"), None, 42).unwrap_err();
        assert!(err.to_string().contains("LISTEN_FDS=-1"), "{err}");
    }

    #[test]
    fn listening_sockets_are_told_apart_and_anything_else_is_refused() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let l = classify(tcp.into_raw_fd()).unwrap();
        let Listener::Tcp(tcp) = l else {
            panic!("not TCP: {l:?}")
        };
        assert_eq!(tcp.local_addr().unwrap(), addr);

        let dir = tempfile::tempdir().unwrap();
        let unix = UnixListener::bind(dir.path().join("s")).unwrap();
        assert!(matches!(
            classify(unix.into_raw_fd()).unwrap(),
            Listener::Unix(_)
        ));

        let client = std::net::TcpStream::connect(addr).unwrap();
        let fd = client.into_raw_fd();
        let err = classify(fd).unwrap_err();
        assert!(
            err.to_string().contains("not a listening stream socket"),
            "{err}"
        );
        // SAFETY: the test owns this fd and classify refused it.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn a_missing_or_mistyped_name_says_what_there_is() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut fds = ListenFds {
            sockets: vec![("web".into(), Listener::Tcp(tcp))],
        };
        let err = fds.take_unix("web").unwrap_err();
        assert!(
            err.to_string().contains("is a TCP socket, not Unix"),
            "{err}"
        );
        let err = fds.take_tcp("api").unwrap_err();
        assert!(err.to_string().contains("there are: web"), "{err}");
        assert!(fds.take_tcp("web").is_ok());
        assert!(fds.is_empty());
    }
}
