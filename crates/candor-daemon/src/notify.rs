//! The sd_notify server: one datagram socket per daemon (abstract,
//! `@candor-notify-<instance>`), with SO_PASSCRED so each message carries its sender's pid. Messages over 4096 bytes are dropped
//! and counted; the brain decides whose a message is (sender in a service's cgroup or process
//! group) and counts the rest as strangers.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;

use crate::monitor::Internal;

/// Fds taken with one message (a barrier's one; more are closed by the kernel).
const MAX_FDS: usize = 4;

/// Longest message accepted (systemd's limit is similar).
pub const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Default)]
pub struct NotifyCounters {
    pub received: AtomicU64,
    pub oversized: AtomicU64,
    pub strangers: AtomicU64,
}

/// One datagram, with what the kernel says about its sender.
pub use candor_brain::Notify as NotifyMessage;

/// Bind the notify socket in the abstract namespace as `@candor-notify-<instance>`, and return
/// it with the value for `NOTIFY_SOCKET`. Abstract, as systemd keeps its notify socket
/// world-writable: a service that runs as another user must reach it, and it lives in no
/// directory (the state dir is 0700). Nothing is trusted from who can send: each message's
/// sender is the pid the kernel attaches (SO_PASSCRED), matched against live runs. Where the
/// name is taken (another user squatting it), a name with this daemon's pid is used instead.
pub fn bind(instance: &str) -> std::io::Result<(UnixDatagram, String)> {
    use std::os::linux::net::SocketAddrExt;
    let bind = |name: &str| {
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        std::os::unix::net::UnixDatagram::bind_addr(&addr)
    };
    let mut name = format!("candor-notify-{instance}");
    // A predecessor killed a moment ago (or exec'd by `candor upgrade`) may have a child between
    // fork and exec still holding its copy of the socket for a few microseconds: wait a little
    // before taking the name for squatted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut first = bind(&name);
    while matches!(&first, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        first = bind(&name);
    }
    let std_sock = match first {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let taken = name.clone();
            name = format!("{taken}-{}", std::process::id());
            eprintln!("candor: warning: notify socket @{taken} is taken; using @{name}");
            bind(&name)?
        }
        other => other?,
    };
    std_sock.set_nonblocking(true)?;
    let sock = UnixDatagram::from_std(std_sock)?;
    rustix::net::sockopt::set_socket_passcred(&sock, true)?;
    Ok((sock, format!("@{name}")))
}

fn cgroup_service(pid: u32, root: Option<&Path>) -> Option<String> {
    let root = root?;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let rel = Path::new(rel.trim());
    let parent = rel.parent()?;
    // `root` is absolute (mount + relative); the sender's path is relative to the mount.
    root.ends_with(parent.strip_prefix("/").unwrap_or(parent))
        .then(|| rel.file_name())?
        .map(|n| n.to_string_lossy().into_owned())
}

pub fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

pub async fn serve(
    sock: Arc<UnixDatagram>,
    cgroup_root: Option<PathBuf>,
    tx: mpsc::Sender<Internal>,
    counters: Arc<NotifyCounters>,
) {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        let got = sock.try_io(Interest::READABLE, || {
            // Room for fds too: a BARRIER=1 message carries one (systemd-notify waits until it
            // is closed). Were it truncated away, the kernel would close it at once — before
            // the sender's cgroup is looked up below — and a sender that then exits would be
            // taken for a stranger.
            let mut space =
                [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1), ScmRights(MAX_FDS))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg(
                &sock,
                &mut iov,
                &mut control,
                RecvFlags::TRUNC | RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            let mut pid = None;
            let mut fds = Vec::new();
            for c in control.drain() {
                match c {
                    RecvAncillaryMessage::ScmCredentials(cred) => {
                        pid = Some(cred.pid.as_raw_nonzero().get() as u32)
                    }
                    RecvAncillaryMessage::ScmRights(got) => fds.extend(got),
                    _ => {}
                }
            }
            Ok((msg.bytes, msg.flags.contains(ReturnFlags::TRUNC), pid, fds))
        });
        let (len, truncated, pid, barrier) = match got {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => continue,
        };
        counters.received.fetch_add(1, Ordering::Relaxed);
        if truncated || len > MAX_MESSAGE {
            counters.oversized.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Some(pid) = pid else {
            counters.strangers.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        let msg = NotifyMessage {
            pid,
            cgroup_service: cgroup_service(pid, cgroup_root.as_deref()),
            pgid: candor_keeper::pgid(pid),
            fields: parse(&text),
        };
        // The sender is known now: let it go on (closing the fds releases a BARRIER).
        drop(barrier);
        if tx.send(Internal::Notify(msg)).await.is_err() {
            return;
        }
    }
}
