//! The sd_notify server: one datagram socket per daemon (placed by `notify_place`), with
//! SO_PASSCRED so each message carries its sender's pid and uid. A message from a live run's
//! main process is found in [`Senders`] (kept by the shell from the keeper's spawn and exit
//! reports) at the cost of one map lookup and goes to the brain through the [`Mailbox`], apart
//! from probe results and from everyone else. Any other sender (a service's child such as
//! `systemd-notify`, or a stranger) is looked up in /proc (its process group, its cgroup) only
//! within its uid's budget ([`Budgets`]): past it, a datagram costs O(1) and is dropped and
//! counted. Messages over 4096 bytes are dropped and counted.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

/// Fds taken with one message (a barrier's one; more are closed by the kernel).
const MAX_FDS: usize = 4;

/// Longest message accepted (systemd's limit is similar).
pub const MAX_MESSAGE: usize = 4096;

/// /proc lookups allowed per second to one uid's senders that are not a live run's main
/// process, and how many may come at once.
pub const LOOKUPS_PER_SEC: f64 = 100.0;
pub const LOOKUP_BURST: f64 = 200.0;

/// Messages of one run waiting for the brain; more are dropped (a run cannot have more than
/// this many meaningful messages in flight between two steps of the brain).
const PER_RUN: usize = 64;

/// Messages whose sender was not found, waiting for the brain (which holds those that came
/// before their sender's spawn was reported, and counts the rest as strangers).
const UNKNOWN: usize = 256;

/// uids whose budgets are kept; past that, full (idle) budgets are forgotten.
const MAX_UIDS: usize = 4096;

#[derive(Debug, Default)]
pub struct NotifyCounters {
    pub received: AtomicU64,
    pub oversized: AtomicU64,
    pub strangers: AtomicU64,
    /// Not looked up: their uid's budget of /proc lookups was spent.
    pub rate_limited: AtomicU64,
    /// `WATCHDOG=1` folded into one already waiting for the brain.
    pub coalesced: AtomicU64,
    /// Dropped: more than [`PER_RUN`] of one run's messages waiting for the brain.
    pub overflow: AtomicU64,
}

/// One datagram, with what the kernel says about its sender.
pub use candor_brain::Notify as NotifyMessage;

/// A run: (service, run id).
pub type RunKey = (String, u64);

/// The main process of every live run, kept by the shell from the keeper's reports (spawned,
/// adopted, exited): who a notify sender is, without reading /proc.
#[derive(Debug, Default)]
pub struct Senders {
    index: Mutex<SenderIndex>,
}

#[derive(Debug, Default)]
struct SenderIndex {
    by_pid: HashMap<u32, RunKey>,
    by_service: HashMap<String, (u64, u32)>,
}

impl Senders {
    /// `pid` is the main process of `service`'s run `run_id` (spawned or adopted).
    pub fn spawned(&self, service: &str, run_id: u64, pid: u32) {
        let mut i = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, old)) = i.by_service.insert(service.to_string(), (run_id, pid)) {
            if i.by_pid.get(&old).is_some_and(|(s, _)| s == service) {
                i.by_pid.remove(&old);
            }
        }
        i.by_pid.insert(pid, (service.to_string(), run_id));
    }

    /// `service`'s run `run_id` ended (its main process exited).
    pub fn exited(&self, service: &str, run_id: u64) {
        let mut i = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&(id, pid)) = i.by_service.get(service) {
            if id == run_id {
                i.by_service.remove(service);
                i.by_pid.remove(&pid);
            }
        }
    }

    fn of_pid(&self, pid: u32) -> Option<RunKey> {
        let i = self.index.lock().unwrap_or_else(|p| p.into_inner());
        i.by_pid.get(&pid).cloned()
    }

    fn of_service(&self, service: &str) -> Option<RunKey> {
        let i = self.index.lock().unwrap_or_else(|p| p.into_inner());
        i.by_service
            .get(service)
            .map(|&(id, _)| (service.to_string(), id))
    }
}

/// Notify messages on their way to the brain, apart from probe results: per run (so one
/// service's flood cannot push another's `WATCHDOG=1` out), a run's waiting `WATCHDOG=1`
/// standing for any that follow it, and the messages of unknown senders in a bounded queue of
/// their own that the shell hands over after the runs' ones.
#[derive(Debug, Default)]
pub struct Mailbox {
    pending: Mutex<Pending>,
    wake: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Pending {
    runs: HashMap<RunKey, Vec<NotifyMessage>>,
    unknown: Vec<NotifyMessage>,
}

fn is_ping(m: &NotifyMessage) -> bool {
    matches!(m.fields.as_slice(), [(k, v)] if k == "WATCHDOG" && v == "1")
}

impl Mailbox {
    fn post(&self, msg: NotifyMessage, counters: &NotifyCounters) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match msg.run.clone() {
            Some(run) => {
                let q = p.runs.entry(run).or_default();
                if is_ping(&msg) && q.iter().any(is_ping) {
                    counters.coalesced.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if q.len() >= PER_RUN {
                    counters.overflow.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                q.push(msg);
            }
            None => {
                if p.unknown.len() >= UNKNOWN {
                    counters.strangers.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                p.unknown.push(msg);
            }
        }
        drop(p);
        self.wake.notify_one();
    }

    /// Until something was posted (at once if something was since the last `take`).
    pub async fn posted(&self) {
        self.wake.notified().await
    }

    /// Everything waiting: the messages of known runs, then those of unknown senders.
    pub fn take(&self) -> (Vec<NotifyMessage>, Vec<NotifyMessage>) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let runs = p.runs.drain().flat_map(|(_, q)| q).collect();
        (runs, std::mem::take(&mut p.unknown))
    }
}

/// Per sender uid, a token bucket of /proc lookups ([`LOOKUPS_PER_SEC`], [`LOOKUP_BURST`]).
#[derive(Debug, Default)]
pub struct Budgets {
    by_uid: HashMap<u32, (f64, Instant)>,
}

impl Budgets {
    /// Whether `uid` may have one more lookup now (and take it).
    pub fn take(&mut self, uid: u32, now: Instant) -> bool {
        if !self.by_uid.contains_key(&uid) && self.by_uid.len() >= MAX_UIDS {
            self.by_uid
                .retain(|_, (tokens, at)| refill(*tokens, *at, now) < LOOKUP_BURST);
            if self.by_uid.len() >= MAX_UIDS {
                return false;
            }
        }
        let (tokens, at) = self.by_uid.entry(uid).or_insert((LOOKUP_BURST, now));
        let have = refill(*tokens, *at, now);
        *at = now;
        if have >= 1.0 {
            *tokens = have - 1.0;
            true
        } else {
            *tokens = have;
            false
        }
    }
}

fn refill(tokens: f64, at: Instant, now: Instant) -> f64 {
    let secs = now.saturating_duration_since(at).as_secs_f64();
    (tokens + secs * LOOKUPS_PER_SEC).min(LOOKUP_BURST)
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

/// The `KEY=VALUE` lines of one datagram, or None when it is over [`MAX_MESSAGE`] bytes. Lines
/// without `=` are skipped; the key is trimmed, the value kept as sent (invalid UTF-8 replaced).
pub fn parse(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.len() > MAX_MESSAGE {
        return None;
    }
    let text = String::from_utf8_lossy(bytes);
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.to_string()))
            .collect(),
    )
}

/// What the server shares with the rest of the daemon.
pub struct Server {
    pub sock: Arc<UnixDatagram>,
    pub cgroup_root: Option<PathBuf>,
    pub senders: Arc<Senders>,
    pub mailbox: Arc<Mailbox>,
    pub counters: Arc<NotifyCounters>,
}

pub async fn serve(s: Arc<Server>) {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    let mut budgets = Budgets::default();
    loop {
        if s.sock.readable().await.is_err() {
            return;
        }
        let got = s.sock.try_io(Interest::READABLE, || {
            // Room for fds too: a BARRIER=1 message carries one (systemd-notify waits until it
            // is closed). Were it truncated away, the kernel would close it at once — before
            // the sender is looked up below — and a sender that then exits would be taken for a
            // stranger.
            let mut space =
                [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1), ScmRights(MAX_FDS))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg(
                &*s.sock,
                &mut iov,
                &mut control,
                RecvFlags::TRUNC | RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            let mut cred = None;
            let mut fds = Vec::new();
            for c in control.drain() {
                match c {
                    RecvAncillaryMessage::ScmCredentials(c) => {
                        cred = Some((c.pid.as_raw_nonzero().get() as u32, c.uid.as_raw()))
                    }
                    RecvAncillaryMessage::ScmRights(got) => fds.extend(got),
                    _ => {}
                }
            }
            Ok((msg.bytes, msg.flags.contains(ReturnFlags::TRUNC), cred, fds))
        });
        let (len, truncated, cred, barrier) = match got {
            Ok(x) => x,
            Err(_) => continue,
        };
        let c = &s.counters;
        c.received.fetch_add(1, Ordering::Relaxed);
        if truncated {
            c.oversized.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Some((pid, uid)) = cred else {
            c.strangers.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // Who sent it first, then what it says: a stranger past its uid's budget costs a map
        // lookup and a token, not a parse.
        let mut run = s.senders.of_pid(pid);
        let (mut cgroup, mut pgid) = (None, None);
        if run.is_none() {
            // Not a live run's main process: a child of a service, one whose spawn is not
            // reported yet, or a stranger. /proc only within the uid's budget.
            if !budgets.take(uid, Instant::now()) {
                c.rate_limited.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            cgroup = cgroup_service(pid, s.cgroup_root.as_deref());
            pgid = candor_keeper::pgid(pid);
            run = pgid
                .and_then(|g| s.senders.of_pid(g))
                .or_else(|| cgroup.as_deref().and_then(|n| s.senders.of_service(n)));
        }
        let Some(fields) = parse(&buf[..len.min(buf.len())]) else {
            c.oversized.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let msg = NotifyMessage {
            pid,
            cgroup_service: cgroup,
            pgid,
            run,
            fields,
        };
        // The sender is known now: let it go on (closing the fds releases a BARRIER).
        drop(barrier);
        s.mailbox.post(msg, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_uid_gets_its_burst_then_its_rate() {
        let mut b = Budgets::default();
        let t0 = Instant::now();
        let allowed = (0..1000).filter(|_| b.take(7, t0)).count();
        assert_eq!(allowed, LOOKUP_BURST as usize);
        assert!(b.take(8, t0), "another uid has its own budget");
        let later = t0 + std::time::Duration::from_millis(100);
        let allowed = (0..1000).filter(|_| b.take(7, later)).count();
        assert_eq!(allowed, (LOOKUPS_PER_SEC / 10.0) as usize);
    }

    #[test]
    fn many_uids_cannot_grow_the_budgets_without_bound() {
        let mut b = Budgets::default();
        let t0 = Instant::now();
        for uid in 0..(MAX_UIDS as u32 * 2) {
            b.take(uid, t0);
        }
        assert!(b.by_uid.len() <= MAX_UIDS);
        // Once theirs are full again, they make room.
        let later = t0 + std::time::Duration::from_secs(10);
        assert!(b.take(u32::MAX, later));
    }

    #[test]
    fn senders_follow_spawns_and_exits() {
        let s = Senders::default();
        s.spawned("api", 1, 100);
        assert_eq!(s.of_pid(100), Some(("api".into(), 1)));
        s.spawned("api", 2, 200);
        assert_eq!(s.of_pid(100), None, "the old run's pid is forgotten");
        assert_eq!(s.of_service("api"), Some(("api".into(), 2)));
        s.exited("api", 1);
        assert_eq!(s.of_pid(200), Some(("api".into(), 2)), "an old run's exit");
        s.exited("api", 2);
        assert_eq!(s.of_pid(200), None);
        assert_eq!(s.of_service("api"), None);
    }

    fn msg(run: Option<RunKey>, fields: &[(&str, &str)]) -> NotifyMessage {
        NotifyMessage {
            pid: 1,
            cgroup_service: None,
            pgid: None,
            run,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_mailbox_folds_pings_and_bounds_each_run_and_the_unknown() {
        let m = Mailbox::default();
        let c = NotifyCounters::default();
        let a = Some(("a".to_string(), 1));
        let b = Some(("b".to_string(), 1));
        for _ in 0..1000 {
            m.post(msg(a.clone(), &[("WATCHDOG", "1")]), &c);
            m.post(msg(a.clone(), &[("STATUS", "x")]), &c);
            m.post(msg(None, &[("READY", "1")]), &c);
        }
        m.post(msg(b.clone(), &[("WATCHDOG", "1")]), &c);
        m.post(msg(b.clone(), &[("READY", "1")]), &c);
        let (runs, unknown) = m.take();
        let of = |r: &Option<RunKey>| runs.iter().filter(|m| m.run == *r).count();
        assert_eq!(of(&a), PER_RUN, "a's flood is bounded");
        assert_eq!(of(&b), 2, "b's messages are all there");
        assert_eq!(
            runs.iter().filter(|m| m.run == a && is_ping(m)).count(),
            1,
            "a's pings are folded into one"
        );
        assert_eq!(unknown.len(), UNKNOWN);
        assert_eq!(c.strangers.load(Ordering::Relaxed), 1000 - UNKNOWN as u64);
        assert!(c.coalesced.load(Ordering::Relaxed) > 0);
        assert!(c.overflow.load(Ordering::Relaxed) > 0);
        assert_eq!(m.take(), (vec![], vec![]));
    }

    /// Send `n` copies of `msg` from this process to `path`, then wait until the server has
    /// received `total` datagrams in all.
    async fn send(s: &Server, path: &Path, msg: &'static [u8], n: usize, total: u64) {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
            for _ in 0..n {
                tx.send_to(msg, &path).unwrap();
            }
        })
        .await
        .unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while s.counters.received.load(Ordering::Relaxed) < total {
            assert!(Instant::now() < deadline, "the server stopped reading");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_run_s_main_process_is_never_limited_and_anyone_else_only_by_its_uid_s_budget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_nonblocking(true).unwrap();
        let sock = UnixDatagram::from_std(sock).unwrap();
        rustix::net::sockopt::set_socket_passcred(&sock, true).unwrap();
        let s = Arc::new(Server {
            sock: Arc::new(sock),
            cgroup_root: None,
            senders: Arc::default(),
            mailbox: Arc::default(),
            counters: Arc::default(),
        });
        let server = tokio::spawn(serve(s.clone()));
        // This process is no run's: looked up within its uid's budget, the rest dropped unread.
        send(&s, &path, b"STATUS=x", 1000, 1000).await;
        // `received` counts a datagram as it is read; the last one may still be on its way to
        // the mailbox or a counter: wait until all 1000 are accounted for.
        let mut unknown = Vec::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let (limited, strangers) = loop {
            let (runs, more) = s.mailbox.take();
            assert!(runs.is_empty());
            unknown.extend(more);
            let limited = s.counters.rate_limited.load(Ordering::Relaxed);
            // (More than the unknown queue holds, on a slow machine, are counted as strangers.)
            let strangers = s.counters.strangers.load(Ordering::Relaxed);
            if unknown.len() as u64 + limited + strangers >= 1000 {
                break (limited, strangers);
            }
            assert!(Instant::now() < deadline, "messages unaccounted for");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        assert!(unknown.len() >= LOOKUP_BURST as usize, "{}", unknown.len());
        assert_eq!(unknown.len() as u64 + limited + strangers, 1000);
        assert!(unknown.iter().all(|m| m.run.is_none() && m.pgid.is_some()));
        // Now it is a live run's main process: nothing limited, its pings folded into one.
        s.senders.spawned("api", 7, std::process::id());
        send(&s, &path, b"WATCHDOG=1", 1000, 2000).await;
        assert_eq!(s.counters.rate_limited.load(Ordering::Relaxed), limited);
        let mut runs = Vec::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (more, unknown) = s.mailbox.take();
            assert!(unknown.is_empty());
            runs.extend(more);
            let coalesced = s.counters.coalesced.load(Ordering::Relaxed);
            if runs.len() as u64 + coalesced >= 1000 {
                break;
            }
            assert!(Instant::now() < deadline, "pings unaccounted for");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(!runs.is_empty() && runs.len() <= 1000);
        assert!(runs
            .iter()
            .all(|m| m.run == Some(("api".into(), 7)) && m.pgid.is_none()));
        assert_eq!(
            runs.len() as u64 + s.counters.coalesced.load(Ordering::Relaxed),
            1000
        );
        server.abort();
    }

    #[test]
    fn parse_keeps_key_value_lines_in_order() {
        let f = parse(b"READY=1\nSTATUS=a=b c\nnonsense\n WATCHDOG =1\n").unwrap();
        assert_eq!(
            f,
            vec![
                ("READY".to_string(), "1".to_string()),
                ("STATUS".to_string(), "a=b c".to_string()),
                ("WATCHDOG".to_string(), "1".to_string()),
            ]
        );
        assert_eq!(parse(&vec![b'x'; MAX_MESSAGE + 1]), None);
        assert!(parse(&vec![b'x'; MAX_MESSAGE]).is_some());
    }

    fn line() -> impl Strategy<Value = (String, String)> {
        ("[A-Z_]{1,12}", "[^\n\r]{0,40}")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn parse_never_panics_and_bounds_its_output(bytes in proptest::collection::vec(any::<u8>(), 0..MAX_MESSAGE + 64)) {
            match parse(&bytes) {
                None => prop_assert!(bytes.len() > MAX_MESSAGE),
                Some(fields) => {
                    prop_assert!(bytes.len() <= MAX_MESSAGE);
                    prop_assert!(fields.len() <= bytes.iter().filter(|b| **b == b'=').count());
                    for (k, v) in &fields {
                        prop_assert!(!k.contains('\n') && !v.contains('\n'));
                        prop_assert!(!k.contains('='));
                    }
                }
            }
        }

        #[test]
        fn parse_keeps_every_field_it_is_sent(lines in proptest::collection::vec(line(), 0..40)) {
            let text: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            let fields = parse(text.as_bytes());
            if text.len() > MAX_MESSAGE {
                prop_assert_eq!(fields, None);
            } else {
                prop_assert_eq!(fields, Some(lines));
            }
        }
    }
}
