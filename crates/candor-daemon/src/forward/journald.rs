//! The journal's native protocol (what sd_journal_send writes to
//! `/run/systemd/journal/socket`): one entry a datagram, `KEY=value` lines; an entry too big
//! for a datagram goes as a sealed memfd passed with SCM_RIGHTS, as sd_journal_send does.
//!
//! journald stamps each entry with the time it received it and ignores times a client sends
//! (`_SOURCE_REALTIME_TIMESTAMP` is its own field, taken from the socket), so the time the line
//! was read from the service's pipe is kept in `CANDOR_TIME_USEC` (µs since the epoch, like
//! `__REALTIME_TIMESTAMP`): after an outage's catch-up the two differ.

use std::io::{self, IoSlice, Write};
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
use rustix::io::Errno;
use rustix::net::{
    sendmsg_addr, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
};

use super::record::{level, Record};
use super::syslog::severity;

/// journald's default socket.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// SYSLOG_FACILITY of every entry: 3, daemon.
const FACILITY_DAEMON: &str = "3";

/// Appends one entry for `rec` to `buf`: MESSAGE, PRIORITY (its syslog severity),
/// SYSLOG_IDENTIFIER, SYSLOG_FACILITY, SYSLOG_PID (journald's own `_PID` is the sender's, the
/// daemon: a client cannot set it), CANDOR_SERVICE, CANDOR_STREAM, CANDOR_RUN_ID (when known)
/// and CANDOR_TIME_USEC.
pub fn encode(buf: &mut Vec<u8>, rec: &Record, identifier: &str) {
    field(buf, "MESSAGE", rec.line);
    field(buf, "PRIORITY", severity(level(rec)).to_string().as_bytes());
    field(buf, "SYSLOG_IDENTIFIER", identifier.as_bytes());
    field(buf, "SYSLOG_FACILITY", FACILITY_DAEMON.as_bytes());
    if let Some(pid) = rec.pid {
        field(buf, "SYSLOG_PID", pid.to_string().as_bytes());
    }
    field(buf, "CANDOR_SERVICE", rec.service.as_bytes());
    field(buf, "CANDOR_STREAM", rec.stream.as_str().as_bytes());
    if let Some(run) = rec.run_id {
        field(buf, "CANDOR_RUN_ID", run.to_string().as_bytes());
    }
    let usec = rec.at_ms.saturating_mul(1000);
    field(buf, "CANDOR_TIME_USEC", usec.to_string().as_bytes());
}

/// `KEY=value\n`, or `KEY\n<length, u64 LE><value>\n` when the value holds a newline or is
/// not UTF-8 (the form journald keeps byte for byte).
fn field(buf: &mut Vec<u8>, key: &str, value: &[u8]) {
    buf.extend_from_slice(key.as_bytes());
    if value.contains(&b'\n') || std::str::from_utf8(value).is_err() {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// Sends one entry (journald takes one entry a datagram) to the journal socket at `path` on
/// `sock` (a non-blocking, unbound datagram socket). A payload
/// the socket refuses as too big (EMSGSIZE, ENOBUFS) goes through a memfd sealed against
/// every change — journald refuses an unsealed one — with an empty datagram. A full socket
/// (journald behind) is `WouldBlock`: try again later.
pub fn send(sock: BorrowedFd<'_>, path: &Path, payload: &[u8]) -> io::Result<()> {
    let addr = SocketAddrUnix::new(path)?;
    match rustix::net::sendto(sock, payload, SendFlags::empty(), &addr).map_err(io::Error::from) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                Errno::from_io_error(&e),
                Some(Errno::MSGSIZE) | Some(Errno::NOBUFS)
            ) =>
        {
            send_memfd(sock, &addr, payload)
        }
        Err(e) => Err(e),
    }
}

fn send_memfd(sock: BorrowedFd<'_>, addr: &SocketAddrUnix, payload: &[u8]) -> io::Result<()> {
    let fd = memfd_create(
        "candor-journal",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = std::fs::File::from(fd);
    file.write_all(payload)?;
    fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    let fds = [std::os::fd::AsFd::as_fd(&file)];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let empty: [IoSlice; 0] = [];
    sendmsg_addr(sock, addr, &empty, &mut control, SendFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::record::sample;
    use candor_store::Stream;
    use rustix::fs::fcntl_get_seals;
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::io::{IoSliceMut, Read, Seek};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn an_entry_has_candors_fields_and_binary_values_are_length_prefixed() {
        let mut buf = Vec::new();
        encode(&mut buf, &sample(b"hello", Stream::Stderr), "web");
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "MESSAGE=hello\nPRIORITY=4\nSYSLOG_IDENTIFIER=web\nSYSLOG_FACILITY=3\n\
             SYSLOG_PID=4242\nCANDOR_SERVICE=web\nCANDOR_STREAM=stderr\nCANDOR_RUN_ID=7\n\
             CANDOR_TIME_USEC=1796648730123000\n"
        );
        let mut rec = sample(b"caf\xe9", Stream::Stdout);
        rec.run_id = None;
        rec.pid = None;
        let mut buf = Vec::new();
        encode(&mut buf, &rec, "x");
        assert!(buf.starts_with(b"MESSAGE\n\x04\0\0\0\0\0\0\0caf\xe9\nPRIORITY=6\n"));
        let text = String::from_utf8_lossy(&buf);
        assert!(!text.contains("CANDOR_RUN_ID") && !text.contains("SYSLOG_PID"));
        let mut buf = Vec::new();
        field(&mut buf, "K", b"a\nb");
        assert_eq!(buf, b"K\n\x03\0\0\0\0\0\0\0a\nb\n");
    }

    /// A receiver bound in a temp dir, and what arrived: the datagram, and a passed fd.
    fn receive(rx: &UnixDatagram) -> (Vec<u8>, Option<std::fs::File>) {
        let mut data = vec![0u8; 4096];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(
            rx,
            &mut [IoSliceMut::new(&mut data)],
            &mut control,
            RecvFlags::empty(),
        )
        .unwrap();
        data.truncate(got.bytes);
        let mut file = None;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
                file = fds.next().map(std::fs::File::from);
            }
        }
        (data, file)
    }

    #[test]
    fn a_small_entry_is_one_datagram_and_a_big_one_a_sealed_memfd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let rx = UnixDatagram::bind(&path).unwrap();
        let tx = UnixDatagram::unbound().unwrap();
        tx.set_nonblocking(true).unwrap();

        send(tx.as_fd(), &path, b"MESSAGE=hi\n").unwrap();
        let (data, fd) = receive(&rx);
        assert_eq!(data, b"MESSAGE=hi\n");
        assert!(fd.is_none());

        // Bigger than any datagram the socket's send buffer takes.
        let line = vec![b'x'; 300 << 10];
        let mut payload = Vec::new();
        encode(&mut payload, &sample(&line, Stream::Stdout), "web");
        send(tx.as_fd(), &path, &payload).unwrap();
        let (data, fd) = receive(&rx);
        assert!(
            data.is_empty(),
            "the datagram that carries a memfd is empty"
        );
        let mut file = fd.expect("a memfd");
        let seals = fcntl_get_seals(&file).unwrap();
        let all = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
        assert!(seals.contains(all), "seals {seals:?}");
        file.rewind().unwrap();
        let mut got = Vec::new();
        file.read_to_end(&mut got).unwrap();
        assert_eq!(got, payload);
    }

    #[test]
    fn nobody_listening_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let tx = UnixDatagram::unbound().unwrap();
        tx.set_nonblocking(true).unwrap();
        let err = send(tx.as_fd(), &dir.path().join("none"), b"MESSAGE=x\n").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
