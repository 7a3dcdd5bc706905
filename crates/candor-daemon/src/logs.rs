//! Readers of services' stdout/stderr pipes. Each reader splits its stream into lines (longer
//! than 16 KiB: split, marked), folds identical consecutive lines into one plus a count, and
//! passes the rest through the service's rate limit to the store. What is suppressed or cannot
//! be queued is counted and replaced by one marker line. Bytes leave the pipe once their lines
//! are written (at most 200 ms later): a daemon killed meanwhile loses none of them.
//!
//! A service whose output exceeds its limit is read on and its excess discarded: it does not
//! wait on a full pipe because of us, up to `READ_CEILING` (see ARCHITECTURE.md, "Logs").

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use candor_api::unix_ms;
use candor_spec::LogsSpec;
use candor_store::{LogLine, Shape, Sniffer, Store, Stream};
use tokio::net::unix::pipe;

use crate::counters::LogCounters;
use crate::faults::Faults;
use crate::log_gate::Gate;

/// Longest line kept whole; a longer one is stored in pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;
/// Appended to every piece of a split line but the last.
pub const CONTINUES: &str = " …[line continues]";
/// A pipe reader's buffer while its service is quiet, and while it floods.
const SMALL_BUF: usize = 8 * 1024;
const BIG_BUF: usize = 64 * 1024;
/// Pending repeats are written out after this long without another one…
const FOLD_IDLE: Duration = Duration::from_secs(1);
/// …and at least this often while a line keeps repeating.
const FOLD_MAX: Duration = Duration::from_secs(10);

/// The store's byte caps, from the config.
pub fn caps(spec: &candor_spec::Spec) -> candor_store::Caps {
    candor_store::Caps {
        total: spec
            .daemon
            .logs_max_bytes
            .unwrap_or(candor_store::DEFAULT_TOTAL_BYTES),
        default_service: LogsSpec::default().max_bytes,
        per_service: spec
            .services
            .iter()
            .map(|(name, s)| (name.to_string(), s.logs.max_bytes))
            .collect(),
    }
}

/// What a reader hands lines to: the store, and followers of `logs -f` (only while any).
#[derive(Clone)]
pub struct LogSink {
    pub store: Store,
    pub live: tokio::sync::broadcast::Sender<LiveLine>,
    /// Readers stop when this turns true (before an upgrade), leaving what is unread in the
    /// pipe for the next daemon.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// Readers running now.
    pub active: Arc<std::sync::atomic::AtomicUsize>,
    /// The highest line id the store has written (see `Store::on_commit`).
    pub committed: tokio::sync::watch::Receiver<i64>,
}

/// The ids of one run's lines over its readers (a oneshot's history names them): said to the
/// brain once every reader of the run has read its pipe to the end.
pub struct Span {
    service: Arc<str>,
    run_id: u64,
    first: std::sync::atomic::AtomicI64,
    last: std::sync::atomic::AtomicI64,
    open: std::sync::atomic::AtomicUsize,
    tx: tokio::sync::mpsc::Sender<candor_brain::Evidence>,
}

impl Span {
    pub fn new(
        service: &str,
        run_id: u64,
        tx: tokio::sync::mpsc::Sender<candor_brain::Evidence>,
    ) -> Arc<Self> {
        Arc::new(Self {
            service: service.into(),
            run_id,
            first: i64::MAX.into(),
            last: 0.into(),
            open: 0.into(),
            tx,
        })
    }

    fn line(&self, id: i64) {
        self.first.fetch_min(id, Ordering::Relaxed);
        self.last.fetch_max(id, Ordering::Relaxed);
    }

    /// A reader of the run reached the end of its pipe; the last one says the span.
    fn ended(&self) {
        if self.open.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let (first, last) = (
            self.first.load(Ordering::Relaxed),
            self.last.load(Ordering::Relaxed),
        );
        if first <= last {
            let _ = self.tx.try_send(candor_brain::Evidence::LogSpan {
                service: self.service.to_string(),
                run_id: self.run_id,
                first,
                last,
            });
        }
    }
}

/// How many whole lines at the start of `buf` are `line`, each ended by a newline. The run is
/// periodic: byte `i + len` equals byte `i` for as long as it lasts, which a few block
/// comparisons (memcmp) find, however short the lines.
fn repeated_lines(buf: &[u8], line: &[u8]) -> usize {
    let unit = line.len() + 1;
    if buf.len() < unit || &buf[..line.len()] != line || buf[line.len()] != b'\n' {
        return 0;
    }
    const BLOCK: usize = 4096;
    let mut same = 0;
    while unit + same < buf.len() {
        let n = BLOCK.min(buf.len() - unit - same);
        let (ahead, behind) = (&buf[unit + same..unit + same + n], &buf[same..same + n]);
        if ahead == behind {
            same += n;
            continue;
        }
        same += ahead
            .iter()
            .zip(behind)
            .position(|(a, b)| a != b)
            .unwrap_or(n);
        break;
    }
    (unit + same) / unit
}

/// How long a reader waits for the store to write its lines before it frees their bytes from
/// the pipe anyway: a slow disk must not turn into services blocked on their stdout.
const COMMIT_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

thread_local! {
    /// Where a reader looks at a pipe's bytes: one buffer per worker thread, not per reader.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; BIG_BUF]);
}

/// One pipe all readers copy through (one at a time) to look at a service's bytes without
/// taking them out of its pipe (`tee`).
static SCRATCH: std::sync::Mutex<Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>> =
    std::sync::Mutex::new(None);

/// Copy up to `buf.len()` bytes from the head of the pipe `src` into `buf`, leaving them in the
/// pipe. `Ok(0)`: the pipe is empty and has no writer left (EOF).
fn peek(src: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<usize> {
    use rustix::pipe::{pipe_with, tee, PipeFlags, SpliceFlags};
    let mut scratch = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
    if scratch.is_none() {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        rustix::pipe::fcntl_setpipe_size(&w, BIG_BUF)?;
        *scratch = Some((r, w));
    }
    let Some((r, w)) = scratch.as_ref() else {
        unreachable!("made above")
    };
    let n = tee(src, w, buf.len(), SpliceFlags::NONBLOCK)?;
    let mut got = 0;
    while got < n {
        match rustix::io::read(r, &mut buf[got..n]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) => {
                // Leave the scratch pipe empty for the next reader.
                *scratch = None;
                return Err(e.into());
            }
        }
    }
    Ok(got)
}

/// Counts a running reader for `LogSink::active`.
struct Active(Arc<std::sync::atomic::AtomicUsize>);

impl Active {
    fn new(n: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(n.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A stored line, as followers receive it.
#[derive(Clone, Debug)]
pub struct LiveLine {
    pub id: i64,
    pub at_ms: i64,
    pub service: Arc<str>,
    pub stream: Stream,
    pub line: Arc<[u8]>,
    pub shape: Shape,
}

/// A line on the wire: `line` is always text (invalid UTF-8 replaced); `raw_hex` carries the
/// exact bytes when they are not UTF-8. Its effective level always; a structured line's message
/// and time fields when it has them.
pub fn entry(
    id: i64,
    at_ms: i64,
    service: &str,
    stream: Stream,
    shape: Shape,
    line: &[u8],
) -> candor_api::LogEntry {
    let fields = match shape.format {
        candor_store::Format::Plain => candor_store::Fields::default(),
        format => candor_store::fields(format, line),
    };
    let (text, raw_hex) = match std::str::from_utf8(line) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(line).into_owned(),
            Some(line.iter().map(|b| format!("{b:02x}")).collect()),
        ),
    };
    candor_api::LogEntry {
        id,
        at: candor_api::timestamp_ms(candor_api::from_unix_ms(at_ms)),
        service: service.to_string(),
        stream: stream.as_str().into(),
        line: text,
        raw_hex,
        level: candor_store::effective_level(stream, shape).as_str().into(),
        msg: fields.msg,
        time: fields.time,
    }
}

/// One supervised reader per pipe: a reader that panics is reported and started again on the
/// same pipe (kept here, a dup each time), with a marker line — the service never meets a
/// closed pipe (SIGPIPE) because of a bug in Candor.
pub fn spawn_readers(
    service: &str,
    stdout: Option<std::os::fd::OwnedFd>,
    stderr: Option<std::os::fd::OwnedFd>,
    sink: LogSink,
    counters: Arc<LogCounters>,
    faults: &Arc<Faults>,
    span: Option<Arc<Span>>,
) {
    let service: Arc<str> = service.into();
    if let Some(span) = &span {
        let readers = usize::from(stdout.is_some()) + usize::from(stderr.is_some());
        span.open.store(readers, Ordering::Release);
    }
    let streams = [(stdout, Stream::Stdout), (stderr, Stream::Stderr)];
    for (fd, stream) in streams
        .into_iter()
        .filter_map(|(fd, s)| fd.map(|fd| (fd, s)))
    {
        let (service, sink, counters) = (service.clone(), sink.clone(), counters.clone());
        let span = span.clone();
        let fd = Arc::new(fd);
        let active = Arc::new(Active::new(&sink.active));
        let task = format!("the log reader of {service} {}", stream.as_str());
        faults.supervise(task, move |after_panic| {
            let mut r = Reader {
                service: service.clone(),
                stream,
                sink: sink.clone(),
                counters: counters.clone(),
                partial: Vec::new(),
                fold: Fold::default(),
                sniffer: Sniffer::default(),
                queued: Default::default(),
                span: span.clone(),
            };
            let (fd, active) = (fd.try_clone(), active.clone());
            async move {
                let _active = active;
                let rx = fd.and_then(pipe::Receiver::from_owned_fd);
                match rx {
                    Ok(rx) => r.run(rx, after_panic).await,
                    Err(e) => eprintln!(
                        "candor: {} {}: cannot read pipe: {e}",
                        r.service,
                        stream.as_str()
                    ),
                }
            }
        });
    }
}

/// The most a reader reads a second. Reading a pipe as fast as a writer like `yes` fills it
/// costs a whole core however little is done with the bytes (`dd of=/dev/null` takes 98 % of
/// one at 7 GB/s); a service writing more than this is spinning, and waits on its pipe like on
/// a slow disk. Below it (about 4.5 M lines/s of 56 bytes) a service never waits on Candor.
pub const READ_CEILING: f64 = 256.0 * 1024.0 * 1024.0;

/// Bytes a reader may still read before it pauses (a token bucket of 10 ms of the ceiling).
struct Pace {
    budget: f64,
    last: Instant,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            budget: READ_CEILING / 100.0,
            last: Instant::now(),
        }
    }
}

impl Pace {
    /// How long to pause after reading `n` bytes, if at all.
    fn after_read(&mut self, n: usize, now: Instant) -> Option<Duration> {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * READ_CEILING;
        self.budget = (self.budget + refill).min(READ_CEILING / 100.0) - n as f64;
        self.last = now;
        (self.budget < 0.0).then(|| Duration::from_secs_f64(-self.budget / READ_CEILING))
    }
}

/// The last line kept on a stream and how often it came again since.
#[derive(Default)]
struct Fold {
    last: Option<Vec<u8>>,
    repeats: u64,
    first_repeat: Option<Instant>,
    last_repeat: Option<Instant>,
    /// The last line's shape: its repeats' marker counts at its level.
    shape: Shape,
}

impl Fold {
    fn due(&self) -> Option<Instant> {
        Some((self.last_repeat? + FOLD_IDLE).min(self.first_repeat? + FOLD_MAX))
    }
}

struct Reader {
    service: Arc<str>,
    stream: Stream,
    sink: LogSink,
    counters: Arc<LogCounters>,
    /// The start of a line whose end has not been read yet.
    partial: Vec<u8>,
    fold: Fold,
    /// Whether this stream writes structured lines (looked at once, at its start).
    sniffer: Sniffer,
    /// The id of the last line this reader queued for the store.
    queued: std::cell::Cell<i64>,
    /// The run's line ids, for a oneshot's history.
    span: Option<Arc<Span>>,
}

impl Reader {
    /// Read the pipe until its writers are gone. `after_panic`: the reader before this one
    /// panicked with that message.
    async fn run(&mut self, rx: pipe::Receiver, after_panic: Option<String>) {
        // Small reads while a service is quiet; a read that fills them grows them for a flood
        // (fewer reads), a short one shrinks them back. The bytes are looked at in the worker
        // thread's buffer (no await while they are): an idle reader holds no buffer at all
        // (there are two readers per service). Longer lines are assembled in `partial`.
        let mut want = SMALL_BUF;
        // Look before taking while lines are being stored; while everything read is folded or
        // over the limit (discarded anyway), take at once: one copy of a flood, not three.
        // After a panic, the bytes it was looking at are taken at once: if they are what made
        // it panic, the next reader must not look at them forever.
        let mut careful = after_panic.is_none();
        if let Some(message) = after_panic {
            let line = format!(
                "-- Candor's reader of this {} panicked ({message}) and was started again; \
                 the lines it was reading may be lost --",
                self.stream.as_str()
            );
            self.send(line.into_bytes(), Stream::Candor, Shape::PLAIN);
        }
        let counters = self.counters.clone();
        let mut pace = Pace::default();
        let mut stop = self.sink.stop.clone();
        loop {
            let due = {
                let gate = counters.gate();
                let lifts = gate.lifts_at(Instant::now());
                [self.fold.due(), lifts].into_iter().flatten().min()
            };
            let wait = async {
                match due {
                    // readable() is cancel-safe: a timeout loses no data.
                    Some(at) => tokio::time::timeout_at(at.into(), rx.readable()).await.ok(),
                    None => Some(rx.readable().await),
                }
            };
            // Told to stop (an upgrade): what is unread stays in the pipe for the next daemon.
            let ready = tokio::select! {
                r = wait => r,
                Ok(_) = stop.wait_for(|s| *s) => {
                    // Not the end of the run's output: no span is said.
                    self.span = None;
                    break;
                }
            };
            let now = Instant::now();
            let before = self.queued.get();
            let n = match ready {
                None => {
                    self.tick(&mut counters.gate(), now);
                    continue;
                }
                // Look first (the bytes stay in the pipe), take them out only once their lines
                // are written: a daemon killed in between loses nothing; the next one reads
                // them again (at least once, never lost).
                Some(Ok(())) => match READ_BUF.with_borrow_mut(|buf| {
                    let n = if careful {
                        rx.try_io(|| peek(std::os::fd::AsFd::as_fd(&rx), &mut buf[..want]))?
                    } else {
                        rx.try_read(&mut buf[..want])?
                    };
                    self.take(&buf[..n], &mut counters.gate(), now);
                    Ok::<_, std::io::Error>(n)
                }) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    // A read error ends the stream like EOF: the writer side is gone either way.
                    Err(_) => break,
                },
                Some(Err(_)) => break,
            };
            let stored = self.queued.get() > before;
            if careful {
                if stored {
                    let target = self.queued.get();
                    let mut committed = self.sink.committed.clone();
                    let _ = tokio::time::timeout(COMMIT_WAIT, committed.wait_for(|c| *c >= target))
                        .await;
                }
                let taken = READ_BUF.with_borrow_mut(|buf| rx.try_read(&mut buf[..n]));
                if !matches!(taken, Ok(k) if k == n) {
                    break; // the bytes just looked at are gone: nothing reads this pipe but us
                }
            }
            careful = stored;
            if let Some(wait) = pace.after_read(n, now) {
                tokio::time::sleep(wait).await;
            }
            if n == want {
                want = BIG_BUF;
            } else if n < SMALL_BUF {
                want = SMALL_BUF;
            }
        }
        // The process is gone (or this daemon hands over): its partial last line, pending
        // repeats and suppression count.
        let now = Instant::now();
        let mut gate = counters.gate();
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line, &mut gate, now);
        }
        self.flush_fold(&mut gate, now);
        self.write_marker(&mut gate, now);
        drop(gate);
        if let Some(span) = self.span.take() {
            span.ended();
        }
    }

    /// Time-driven work: repeats that stopped coming, a suppression that has lifted.
    fn tick(&mut self, gate: &mut Gate, now: Instant) {
        if self.fold.due().is_some_and(|at| at <= now) {
            self.flush_fold(gate, now);
        }
        if gate.rate > 0.0 {
            gate.refill(now);
        }
        if gate.may_lift(self.sink.store.has_room()) {
            self.write_marker(gate, now);
        }
    }

    /// End the current suppression with its marker line (kept suppressed if the store cannot
    /// take even that).
    fn write_marker(&self, gate: &mut Gate, now: Instant) {
        if let Some(marker) = gate.marker(now) {
            if self.send(marker, Stream::Candor, Shape::PLAIN) {
                gate.clear();
            }
        }
    }

    fn take(&mut self, mut buf: &[u8], gate: &mut Gate, now: Instant) {
        if candor_core::fail_once("reader", &self.service) {
            panic!("failpoint reader:{}", self.service);
        }
        loop {
            // A run of lines identical to the last (an error spammed in a loop, `yes`): counted
            // by comparing the run with itself one line further on, not line by line.
            if let (true, Some(last)) = (self.partial.is_empty(), self.fold.last.as_deref()) {
                let m = repeated_lines(buf, last);
                if m > 0 {
                    buf = &buf[m * (last.len() + 1)..];
                    self.fold.repeats += m as u64;
                    self.fold.first_repeat.get_or_insert(now);
                    self.fold.last_repeat = Some(now);
                    self.counters.folded.fetch_add(m as u64, Ordering::Relaxed);
                }
            }
            let Some(i) = memchr::memchr(b'\n', buf) else {
                break;
            };
            let (line, rest) = (&buf[..i], &buf[i + 1..]);
            buf = rest;
            if self.partial.is_empty() && line.len() <= MAX_LINE {
                self.line(line, gate, now);
            } else {
                self.append(line, gate, now);
                let line = std::mem::take(&mut self.partial);
                self.line(&line, gate, now);
                self.partial = line;
                self.partial.clear();
            }
        }
        if !buf.is_empty() {
            self.append(buf, gate, now);
        }
    }

    /// Add to the unfinished line; every full MAX_LINE of it goes out as a marked piece.
    fn append(&mut self, bytes: &[u8], gate: &mut Gate, now: Instant) {
        self.partial.extend_from_slice(bytes);
        while self.partial.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            // Do not cut a UTF-8 character in two.
            while cut > MAX_LINE - 3 && self.partial[cut] & 0xC0 == 0x80 {
                cut -= 1;
            }
            let mut piece: Vec<u8> = self.partial.drain(..cut).collect();
            piece.extend_from_slice(CONTINUES.as_bytes());
            self.flush_fold(gate, now);
            self.fold.last = None;
            self.admit(piece, 1, None, gate, now);
        }
    }

    /// One whole line (or the last piece of a split one).
    fn line(&mut self, line: &[u8], gate: &mut Gate, now: Instant) {
        if self.fold.last.as_deref() == Some(line) {
            self.fold.repeats += 1;
            self.fold.first_repeat.get_or_insert(now);
            self.fold.last_repeat = Some(now);
            self.counters.folded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.flush_fold(gate, now);
        let mut last = self.fold.last.take().unwrap_or_default();
        last.clear();
        last.extend_from_slice(line);
        self.fold.last = Some(last);
        self.fold.shape = self.admit(line.to_vec(), 1, None, gate, now);
    }

    fn flush_fold(&mut self, gate: &mut Gate, now: Instant) {
        let n = std::mem::take(&mut self.fold.repeats);
        self.fold.first_repeat = None;
        self.fold.last_repeat = None;
        if n > 0 {
            let marker = format!("-- previous line repeated {n} times --").into_bytes();
            // It stands for n lines: if the limit stops it, n lines were suppressed. It counts
            // at their level (it is no structured line itself).
            let shape = Shape {
                level: self.fold.shape.level,
                ..Shape::PLAIN
            };
            self.admit(marker, n, Some(shape), gate, now);
        }
    }

    /// A line of this stream standing for `weight` lines: through the rate limit, then to
    /// the store, with `shape`, or (`None`) the shape the stream's sniffer gives it — only
    /// once it passed the limit: a suppressed flood is not parsed. The shape it went out with.
    fn admit(
        &mut self,
        line: Vec<u8>,
        weight: u64,
        shape: Option<Shape>,
        gate: &mut Gate,
        now: Instant,
    ) -> Shape {
        let per = &self.counters.streams[usize::from(self.stream == Stream::Stderr)];
        if !gate.admit(now, || self.sink.store.has_room()) {
            gate.suppressed += weight;
            self.counters.dropped.fetch_add(weight, Ordering::Relaxed);
            // Refused while the store is behind: dropped; else over the rate limit.
            match gate.store_behind {
                true => per.dropped.fetch_add(weight, Ordering::Relaxed),
                false => per.suppressed.fetch_add(weight, Ordering::Relaxed),
            };
            return Shape::PLAIN;
        }
        if gate.suppressed_since.is_some() {
            self.write_marker(gate, now);
        }
        let shape = shape.unwrap_or_else(|| self.sniffer.shape(&line));
        if self.send(line, self.stream, shape) {
            self.counters.lines.fetch_add(1, Ordering::Relaxed);
            per.lines.fetch_add(1, Ordering::Relaxed);
        } else {
            gate.store_full(now, weight);
            self.counters.dropped.fetch_add(weight, Ordering::Relaxed);
            per.dropped.fetch_add(weight, Ordering::Relaxed);
        }
        shape
    }

    /// Queue one line; followers get it only if the store took it (`logs -f` never shows a
    /// line that `logs` would not).
    fn send(&self, line: Vec<u8>, stream: Stream, shape: Shape) -> bool {
        let at_ms = unix_ms(SystemTime::now());
        let live = (self.sink.live.receiver_count() > 0).then(|| Arc::<[u8]>::from(&line[..]));
        let row = LogLine {
            id: 0,
            at_ms,
            service: self.service.clone(),
            stream,
            line,
            shape,
        };
        let Some(id) = self.sink.store.log(row) else {
            return false;
        };
        self.queued.set(self.queued.get().max(id));
        if let Some(span) = &self.span {
            span.line(id);
        }
        if let Some(line) = live {
            let _ = self.sink.live.send(LiveLine {
                id,
                at_ms,
                service: self.service.clone(),
                stream,
                line,
                shape,
            });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_zero_set_while_suppressed_lifts_the_suppression_without_a_panic() {
        let t0 = Instant::now();
        let mut g = Gate {
            rate: 1.0,
            burst: 1.0,
            tokens: 1.0,
            ..Gate::default()
        };
        assert!(g.admit(t0, || true));
        assert!(!g.admit(t0, || true), "over the limit");
        assert!(g.lifts_at(t0).is_some());
        // A reload sets `rate = 0` (no limit) while the suppression lasts.
        g.rate = 0.0;
        assert_eq!(g.lifts_at(t0), Some(t0));
        assert!(g.admit(t0, || true), "no limit any more");
    }

    #[test]
    fn repeated_lines_counts_the_run_of_one_line_at_the_start() {
        assert_eq!(repeated_lines(b"y\ny\ny\n", b"y"), 3);
        assert_eq!(
            repeated_lines(b"y\ny\ny", b"y"),
            2,
            "the unfinished one is not counted"
        );
        assert_eq!(repeated_lines(b"y\nyy\ny\n", b"y"), 1);
        assert_eq!(repeated_lines(b"x\ny\n", b"y"), 0);
        assert_eq!(repeated_lines(b"", b"y"), 0);
        assert_eq!(repeated_lines(b"\n\n\nz", b""), 3);
        let line = b"Socket accept error: Too many open files (os error 24)";
        let unit = line.len() + 1;
        let mut buf: Vec<u8> = line
            .iter()
            .chain(b"\n")
            .copied()
            .cycle()
            .take(unit * 5000)
            .collect();
        assert_eq!(repeated_lines(&buf, line), 5000);
        buf[unit * 4321 + 30] = b'X';
        assert_eq!(repeated_lines(&buf, line), 4321);
    }

    fn gate(rate: u32, burst: u32) -> Gate {
        Gate {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            ..Gate::default()
        }
    }

    #[test]
    fn a_flood_passes_the_burst_then_one_marker_per_window() {
        let mut g = gate(100, 10);
        let t0 = Instant::now();
        let passed = (0..10).filter(|_| g.admit(t0, || true)).count();
        assert_eq!(passed, 10);
        // Dry: suppressed until half the burst is back (50 ms at 100/s).
        for i in 0..1000 {
            assert!(!g.admit(t0 + Duration::from_micros(i * 40), || true));
            g.suppressed += 1;
        }
        let later = t0 + Duration::from_millis(60);
        assert!(g.admit(later, || true));
        let marker = g.marker(later).unwrap();
        assert_eq!(
            String::from_utf8(marker).unwrap(),
            "-- suppressed 1000 lines in 0.1 s --"
        );
        g.clear();
        assert!(g.marker(later).is_none());
    }

    #[test]
    fn rate_zero_means_no_limit_but_a_full_store_pauses_until_it_has_room() {
        let mut g = gate(0, 1);
        let t0 = Instant::now();
        assert!((0..100_000).all(|_| g.admit(t0, || true)));
        g.store_full(t0, 1);
        g.store_full(t0, 3);
        let later = t0 + Duration::from_millis(100);
        assert!(!g.admit(later, || false));
        assert!(g.admit(later, || true));
        assert_eq!(
            String::from_utf8(g.marker(later).unwrap()).unwrap(),
            "-- dropped 4 lines in 0.1 s: the log store fell behind --"
        );
    }

    #[test]
    fn the_wire_form_carries_the_effective_level_and_a_structured_lines_fields() {
        let json = Shape {
            format: candor_store::Format::Json,
            level: candor_store::Level::Error,
        };
        let line = br#"{"level":"error","msg":"disk full","ts":"10:00","dev":"sda"}"#;
        let e = entry(1, 0, "api", Stream::Stdout, json, line);
        assert_eq!(
            (e.level.as_str(), e.msg.as_deref(), e.time.as_deref()),
            ("error", Some("disk full"), Some("10:00"))
        );
        assert_eq!(e.line.as_bytes(), line, "the line itself is untouched");
        let plain = entry(2, 0, "api", Stream::Stderr, Shape::PLAIN, b"msg=x");
        assert_eq!((plain.level.as_str(), plain.msg.as_deref()), ("warn", None));
        let wire = serde_json::to_value(&plain).unwrap();
        assert!(
            wire.get("msg").is_none() && wire.get("time").is_none(),
            "{wire}"
        );
    }

    #[test]
    fn the_wire_form_keeps_bytes_that_are_not_utf8() {
        let e = entry(7, 0, "api", Stream::Stderr, Shape::PLAIN, b"caf\xe9");
        assert_eq!(e.line, "caf\u{fffd}");
        assert_eq!(e.raw_hex.as_deref(), Some("636166e9"));
        assert_eq!(
            entry(8, 0, "api", Stream::Stdout, Shape::PLAIN, b"ok").raw_hex,
            None
        );
    }
}
