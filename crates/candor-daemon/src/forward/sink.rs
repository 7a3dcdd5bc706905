//! How a batch reaches a target: the encoders (`syslog`, `journald`, `otlp`) over a socket or
//! an HTTP POST, each attempt within `ATTEMPT`. A failure says how many of the batch's lines
//! got through first (datagrams go one by one), whether to try again or give the lines up (a
//! collector that refuses them for good), and why, in a sentence.

use std::path::Path;
use std::time::Duration;

use std::os::fd::AsFd;

use candor_spec::forward::{ForwardTarget, SyslogAddress, SyslogTarget};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UdpSocket, UnixDatagram};

use super::record::Record;
use super::{journald, otlp, syslog};
use crate::http_post::{Posted, Poster};

/// One step of an attempt (a datagram, a TCP write, an HTTP request, a connect) must make
/// progress within this; a batch of many steps may take longer as long as each does.
pub const ATTEMPT: Duration = Duration::from_secs(10);
/// A TCP batch is written in pieces of this many bytes, each within `ATTEMPT`.
const TCP_PIECE: usize = 64 * 1024;
/// Lines of one OTLP request, at most (a batch is sent in requests of this many).
const OTLP_LINES: usize = 2000;

/// Why an attempt failed.
#[derive(Debug)]
pub struct Failure {
    /// Lines of the batch that got through before it failed (they are not sent again).
    pub done: usize,
    /// The target refused them for good (an HTTP 4xx other than 408/429): give them up.
    pub refused: bool,
    pub why: String,
}

impl Failure {
    fn retry(done: usize, why: String) -> Failure {
        Failure {
            done,
            refused: false,
            why,
        }
    }
}

enum Conn {
    None,
    /// Connected (no path lookup per message); a send waits for room in the receiver's
    /// queue, woken by the kernel.
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
    Journal(UnixDatagram),
}

/// A target's connection, made when first needed and again after a failure.
pub struct Sink {
    target: ForwardTarget,
    host: std::sync::Arc<str>,
    conn: Conn,
    /// An OTLP target's collector (its URL was checked at load).
    collector: Option<Result<Poster, String>>,
    buf: Vec<u8>,
}

impl Sink {
    pub fn new(target: ForwardTarget, host: std::sync::Arc<str>) -> Sink {
        let collector = match &target {
            ForwardTarget::Otlp(o) => Some(otlp::collector(&o.url, &o.headers, "logs")),
            _ => None,
        };
        Sink {
            target,
            host,
            conn: Conn::None,
            collector,
            buf: Vec::new(),
        }
    }

    /// Send `records` (in order); on a failure the connection is dropped, to be made again.
    pub async fn send(&mut self, records: &[Record<'_>]) -> Result<(), Failure> {
        let r = self.attempt(records).await;
        if r.is_err() {
            self.conn = Conn::None;
        }
        r
    }

    async fn attempt(&mut self, records: &[Record<'_>]) -> Result<(), Failure> {
        match self.target.clone() {
            ForwardTarget::Syslog(s) => self.syslog(&s, records).await,
            ForwardTarget::Journald { socket } => self.journal(&socket, records).await,
            ForwardTarget::Otlp(_) => self.otlp(records).await,
        }
    }

    async fn syslog(&mut self, s: &SyslogTarget, records: &[Record<'_>]) -> Result<(), Failure> {
        let shown = super::shown(&ForwardTarget::Syslog(s.clone()));
        let fail = |done, e: std::io::Error| Failure::retry(done, format!("{shown}: {e}"));
        // A receiver that closed the connection meanwhile: a write would still be taken by
        // the kernel and lost; connect again first.
        if let Conn::Tcp(stream) = &self.conn {
            if matches!(stream.try_read(&mut [0u8; 64]), Ok(0)) {
                self.conn = Conn::None;
            }
        }
        if matches!(self.conn, Conn::None) {
            self.conn = in_time(connect(&s.address)).await.map_err(|e| fail(0, e))?;
        }
        let host = self.host.clone();
        // A datagram names the host only where it leaves the machine.
        let host = match s.address {
            SyslogAddress::Unix(_) => "",
            _ => &host,
        };
        let mut msg = Vec::new();
        match &mut self.conn {
            Conn::Tcp(stream) => {
                self.buf.clear();
                // Where each line's frame ends in the buffer.
                let mut ends = Vec::with_capacity(records.len());
                for rec in records {
                    msg.clear();
                    let app = s.app_name.as_deref().unwrap_or(rec.service);
                    syslog::encode(&mut msg, s.format, s.facility, app, host, rec);
                    syslog::frame(&mut self.buf, &msg);
                    ends.push(self.buf.len());
                }
                // In pieces, each within its time: after a failure the lines whose frames were
                // written whole count as sent, and the connection is dropped (the receiver may
                // still have lost what the kernel held; at least once, not exactly once).
                let mut written = 0;
                while written < self.buf.len() {
                    let piece = &self.buf[written..self.buf.len().min(written + TCP_PIECE)];
                    if let Err(e) = in_time(stream.write_all(piece)).await {
                        let done = ends.partition_point(|&end| end <= written);
                        return Err(fail(done, e));
                    }
                    written += piece.len();
                }
            }
            Conn::Udp(sock) => {
                for (i, rec) in records.iter().enumerate() {
                    msg.clear();
                    let app = s.app_name.as_deref().unwrap_or(rec.service);
                    syslog::encode(&mut msg, s.format, s.facility, app, host, rec);
                    in_time(sock.send(&msg)).await.map_err(|e| fail(i, e))?;
                }
            }
            Conn::Unix(sock) => {
                for (i, rec) in records.iter().enumerate() {
                    msg.clear();
                    let app = s.app_name.as_deref().unwrap_or(rec.service);
                    syslog::encode(&mut msg, s.format, s.facility, app, host, rec);
                    in_time(sock.send(&msg)).await.map_err(|e| fail(i, e))?;
                }
            }
            Conn::None | Conn::Journal(_) => {}
        }
        Ok(())
    }

    async fn journal(&mut self, socket: &Path, records: &[Record<'_>]) -> Result<(), Failure> {
        let fail = |done, e: std::io::Error| {
            Failure::retry(done, format!("journal socket {}: {e}", socket.display()))
        };
        if !matches!(self.conn, Conn::Journal(_)) {
            safe_dir(socket).map_err(|why| Failure::retry(0, why))?;
            self.conn = Conn::Journal(UnixDatagram::unbound().map_err(|e| fail(0, e))?);
        }
        let Conn::Journal(sock) = &self.conn else {
            return Ok(());
        };
        for (i, rec) in records.iter().enumerate() {
            self.buf.clear();
            journald::encode(&mut self.buf, rec, rec.service);
            let buf = &self.buf;
            in_time(sock.async_io(Interest::WRITABLE, || {
                journald::send(sock.as_fd(), socket, buf)
            }))
            .await
            .map_err(|e| fail(i, e))?;
        }
        Ok(())
    }

    async fn otlp(&mut self, records: &[Record<'_>]) -> Result<(), Failure> {
        let collector = match &mut self.collector {
            Some(Ok(c)) => c,
            Some(Err(why)) => {
                return Err(Failure {
                    done: 0,
                    refused: true,
                    why: why.clone(),
                })
            }
            None => return Ok(()),
        };
        let mut done = 0;
        for part in records.chunks(OTLP_LINES) {
            let body = otlp::encode_logs(part, &self.host);
            match collector.post(body, ATTEMPT).await {
                Posted::Sent => done += part.len(),
                Posted::Retry(why) => return Err(Failure::retry(done, why)),
                Posted::Rejected(why) => {
                    return Err(Failure {
                        done,
                        refused: true,
                        why,
                    })
                }
            }
        }
        Ok(())
    }
}

async fn connect(address: &SyslogAddress) -> std::io::Result<Conn> {
    Ok(match address {
        SyslogAddress::Unix(path) => {
            safe_dir(path).map_err(std::io::Error::other)?;
            let sock = UnixDatagram::unbound()?;
            sock.connect(path)?;
            Conn::Unix(sock)
        }
        SyslogAddress::Udp(hostport) => {
            let addr = resolve(hostport).await?;
            let bind: std::net::SocketAddr = match addr.is_ipv4() {
                true => ([0, 0, 0, 0], 0).into(),
                false => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let sock = UdpSocket::bind(bind).await?;
            sock.connect(addr).await?;
            Conn::Udp(sock)
        }
        SyslogAddress::Tcp(hostport) => {
            let addr = resolve(hostport).await?;
            let stream = TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            Conn::Tcp(stream)
        }
    })
}

/// One step, within `ATTEMPT`.
async fn in_time<T>(
    step: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match tokio::time::timeout(ATTEMPT, step).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no progress within {}s", ATTEMPT.as_secs()),
        )),
    }
}

async fn resolve(hostport: &str) -> std::io::Result<std::net::SocketAddr> {
    tokio::net::lookup_host(hostport)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{hostport} has no address")))
}

/// A socket's directory must be one only root (or the daemon's user) can write: anyone else
/// could swap the socket for a symlink to another daemon's socket and have Candor write
/// services' lines into it.
fn safe_dir(socket: &Path) -> Result<(), String> {
    use candor_keeper::sockpath::{check_dir, DirOwner};
    check_dir(socket, DirOwner::daemon()).map_err(|why| format!("{}: {why}", socket.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_spec::forward::SyslogFormat;
    use candor_store::{Shape, Stream};
    use std::os::unix::fs::PermissionsExt;

    fn rec(line: &[u8]) -> Record<'_> {
        Record {
            at_ms: 1_796_648_730_123,
            service: "web",
            stream: Stream::Stdout,
            shape: Shape::PLAIN,
            line,
            run_id: None,
            pid: None,
        }
    }

    fn unix(path: &Path) -> ForwardTarget {
        ForwardTarget::Syslog(SyslogTarget {
            address: SyslogAddress::Unix(path.to_path_buf()),
            format: SyslogFormat::Rfc5424,
            facility: 3,
            app_name: None,
        })
    }

    #[tokio::test]
    async fn a_socket_in_a_directory_others_can_write_is_not_sent_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        receiver.set_nonblocking(true).unwrap();
        let mut sink = Sink::new(unix(&path), "host".into());
        sink.send(&[rec(b"one")]).await.unwrap();
        let mut buf = [0u8; 512];
        let n = receiver.recv(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b"one"), "{:?}", &buf[..n]);
        // Anyone may now swap the socket for a symlink: nothing more is sent there.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut sink = Sink::new(unix(&path), "host".into());
        let f = sink.send(&[rec(b"two")]).await.unwrap_err();
        assert!(f.why.contains("can be written by every user"), "{}", f.why);
        assert_eq!((f.done, f.refused), (0, false));
        assert!(receiver.recv(&mut buf).is_err(), "nothing was sent");
        let f = Sink::new(
            ForwardTarget::Journald {
                socket: path.clone(),
            },
            "host".into(),
        )
        .send(&[rec(b"three")])
        .await
        .unwrap_err();
        assert!(f.why.contains("every user"), "{}", f.why);
    }
}
