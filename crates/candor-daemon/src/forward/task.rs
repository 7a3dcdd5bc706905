//! One target's task: wait for lines committed after its cursor, read a byte-bounded batch
//! of the ones it takes, send it (again after 1 s, doubling to 30 s, until it gets through or
//! the lines are older than `catch_up`), move the cursor, and keep it in the state dir.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use candor_api::unix_ms;
use candor_spec::forward::ForwardSpec;
use candor_store::{Ahead, AheadLine, LineReader};
use tokio::sync::watch;

use super::cursor::CursorFile;
use super::record::Record;
use super::sink::Sink;
use super::{Counts, RunMarks, Setup};

/// Pauses after a failed attempt: the first, doubling to the cap.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(30);
/// How often a moving cursor is saved, at most.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// A missing id's wait (see `candor_store::LineReader::after`) is looked at again this soon.
const GAP_LOOK: Duration = Duration::from_millis(100);
/// Looks at the store are this far apart at least: a flood is sent in batches of what 50 ms
/// brought (one read, one write or request), not one per commit of the store's writer.
const PACE: Duration = Duration::from_millis(50);

pub struct Task {
    spec: Arc<ForwardSpec>,
    counts: Arc<Counts>,
    setup: Setup,
    stop: watch::Receiver<()>,
}

/// What the task holds between turns (kept across a panic by nothing: a restarted task
/// starts again from the saved cursor).
struct State {
    reader: LineReader,
    cursor: i64,
    file: Arc<CursorFile>,
    saved: i64,
    saved_at: Instant,
    sink: Sink,
    /// The batch in hand (its buffers kept from one batch to the next).
    ahead: Ahead,
    /// The last line id in the store when the task started.
    stored_at_start: i64,
}

impl Task {
    pub fn new(
        spec: Arc<ForwardSpec>,
        counts: Arc<Counts>,
        setup: Setup,
        stop: watch::Receiver<()>,
    ) -> Task {
        Task {
            spec,
            counts,
            setup,
            stop,
        }
    }

    pub async fn run(self: Arc<Self>) {
        // The store's second connection may be refused (the fd limit): down, and tried again.
        let mut st = loop {
            if let Some(st) = self.open().await {
                break st;
            }
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(RETRY_CAP) => {}
                _ = stop.changed() => return,
            }
        };
        let mut committed = self.setup.committed.clone();
        let mut stop = self.stop.clone();
        let mut last_look: Option<Instant> = None;
        loop {
            if let Some(wait) = last_look.and_then(|t| PACE.checked_sub(t.elapsed())) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
            }
            // Lines the store held at start are committed too, though no commit says so yet (a
            // restart's catch-up need not wait for a new line).
            let upto = (*committed.borrow_and_update()).max(st.stored_at_start);
            self.counts.behind.store(
                upto.saturating_sub(st.cursor).max(0) as u64,
                Ordering::Relaxed,
            );
            if upto <= st.cursor {
                self.save(&mut st, true).await;
                tokio::select! {
                    r = committed.changed() => if r.is_err() { return },
                    _ = stop.changed() => return,
                }
                continue;
            }
            last_look = Some(Instant::now());
            let Some(st_back) = self.turn(st, upto).await else {
                return;
            };
            st = st_back;
            self.save(&mut st, false).await;
        }
    }

    async fn open(&self) -> Option<State> {
        let store = self.setup.store.clone();
        let file = Arc::new(CursorFile::of(&self.setup.state_dir, &self.spec));
        let opened = tokio::task::spawn_blocking(move || {
            let reader = store.line_reader();
            // A cursor past the store's last line is another store's (candor.db was
            // replaced). A new target starts after the lines stored so far, and says so in its
            // file at once: a daemon killed before its first line got through resumes there.
            let last = store.next_id() - 1;
            let saved = file.load().filter(|c| *c <= last);
            let cursor = saved.unwrap_or_else(|| {
                let _ = file.save(last);
                last
            });
            (reader, cursor, last, file)
        })
        .await
        .ok()?;
        let (reader, cursor, last, file) = opened;
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                self.set_down(Some(format!("cannot read the log store: {e}")));
                return None;
            }
        };
        Some(State {
            reader,
            cursor,
            file,
            saved: cursor,
            saved_at: Instant::now(),
            sink: Sink::new(self.spec.target.clone(), self.setup.host.clone()),
            ahead: Ahead::default(),
            stored_at_start: last,
        })
    }

    /// Read a batch after the cursor and send it; returns the state, or None to stop.
    async fn turn(&self, st: State, upto: i64) -> Option<State> {
        let (mut st, read) = self.read(st, upto).await?;
        if read.is_err() {
            return self.pause(st, RETRY_FIRST).await;
        }
        if st.ahead.next == st.cursor {
            // A missing id still young: look again shortly.
            return self.pause(st, GAP_LOOK).await;
        }
        // The batch's lines not yet sent are `lines[from..]`.
        let mut from = 0;
        let mut retry = RETRY_FIRST;
        let mut attempts = 0u32;
        let State {
            ahead,
            sink,
            cursor,
            ..
        } = &mut st;
        while from < ahead.lines.len() {
            let left = (ahead.lines.len() - from) as u64;
            // Lines older than the bound are given up (a long outage).
            let bound = unix_ms(SystemTime::now()) - self.catch_up_ms();
            let old = ahead.lines[from..]
                .iter()
                .take_while(|l| l.at_ms < bound)
                .count();
            if old > 0 {
                self.counts.dropped.fetch_add(old as u64, Ordering::Relaxed);
                from += old;
                continue;
            }
            if attempts > 0 {
                self.counts.retried.fetch_add(left, Ordering::Relaxed);
            }
            attempts += 1;
            let lines = &ahead.lines[from..];
            let records: Vec<Record> = lines
                .iter()
                .map(|l| record(l, ahead.bytes(l), &self.setup.marks))
                .collect();
            let sent = sink.send(&records).await;
            drop(records);
            match sent {
                Ok(()) => {
                    self.counts.sent.fetch_add(left, Ordering::Relaxed);
                    from = ahead.lines.len();
                    self.set_down(None);
                }
                Err(f) => {
                    let done = f.done.min(lines.len());
                    self.counts.sent.fetch_add(done as u64, Ordering::Relaxed);
                    from += done;
                    if f.refused {
                        let refused = (ahead.lines.len() - from) as u64;
                        self.counts.dropped.fetch_add(refused, Ordering::Relaxed);
                        self.set_down(Some(format!(
                            "{} (the lines it refused are dropped)",
                            f.why
                        )));
                        break;
                    }
                    self.set_down(Some(f.why));
                    let upto = *self.setup.committed.borrow();
                    self.counts.behind.store(
                        upto.saturating_sub(*cursor).max(0) as u64,
                        Ordering::Relaxed,
                    );
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = stop.changed() => return None,
                    }
                    retry = (retry * 2).min(RETRY_CAP);
                }
            }
        }
        st.cursor = st.ahead.next;
        Some(st)
    }

    fn catch_up_ms(&self) -> i64 {
        i64::try_from(self.spec.catch_up.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// The next batch into `st.ahead` (lines older than the bound first passed over and
    /// counted).
    async fn read(
        &self,
        mut st: State,
        upto: i64,
    ) -> Option<(State, Result<(), candor_store::StoreError>)> {
        let spec = self.spec.clone();
        let bound = unix_ms(SystemTime::now()) - self.catch_up_ms();
        let (st, r, skipped) = tokio::task::spawn_blocking(move || {
            let keep = |s: &str| candor_spec::names_cover(&spec.services, s);
            let now = unix_ms(SystemTime::now());
            let buffer = spec.buffer as usize;
            let mut skipped = 0;
            let State {
                reader,
                cursor,
                ahead,
                ..
            } = &mut st;
            let mut r = reader.after(*cursor, upto, buffer, now, &keep, ahead);
            // Behind by more than the bound (an outage, a daemon restart): pass over what is
            // older, counted.
            if r.is_ok() && ahead.lines.first().is_some_and(|l| l.at_ms < bound) {
                if let Ok((next, n)) = reader.skip_older(*cursor, upto, bound, &keep) {
                    *cursor = next;
                    skipped = n;
                    r = reader.after(*cursor, upto, buffer, now, &keep, ahead);
                }
            }
            (st, r, skipped)
        })
        .await
        .ok()?;
        self.counts.dropped.fetch_add(skipped, Ordering::Relaxed);
        if let Err(e) = &r {
            self.set_down(Some(format!("cannot read the log store: {e}")));
        }
        Some((st, r))
    }

    async fn pause(&self, st: State, d: Duration) -> Option<State> {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => Some(st),
            _ = stop.changed() => None,
        }
    }

    /// Keep the cursor in the state dir: at most once a second while it moves, at once when
    /// caught up.
    async fn save(&self, st: &mut State, caught_up: bool) {
        if st.cursor == st.saved || (!caught_up && st.saved_at.elapsed() < SAVE_EVERY) {
            return;
        }
        let file = st.file.clone();
        let cursor = st.cursor;
        let _ = tokio::task::spawn_blocking(move || file.save(cursor)).await;
        st.saved = cursor;
        st.saved_at = Instant::now();
    }

    fn set_down(&self, why: Option<String>) {
        let mut down = self.counts.down.lock().unwrap_or_else(|e| e.into_inner());
        match why {
            None => *down = None,
            Some(why) => {
                let since = down.as_ref().map_or_else(SystemTime::now, |d| d.1);
                *down = Some((why, since));
            }
        }
    }
}

/// A stored line as the encoders take it: with the run whose readers stored it and its main
/// pid (`RunMarks`).
fn record<'a>(l: &'a AheadLine, line: &'a [u8], marks: &RunMarks) -> Record<'a> {
    let run = marks.run_of(&l.service, l.id);
    Record {
        at_ms: l.at_ms,
        service: &l.service,
        stream: l.stream,
        shape: l.shape,
        line,
        run_id: run.map(|r| r.0),
        pid: run.and_then(|r| r.1),
    }
}
