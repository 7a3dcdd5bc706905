//! The writer thread: commits queued rows in batches (prepared statements, one transaction a
//! batch), keeps every service's byte count, removes the oldest lines in batches when a cap is
//! passed, returns freed pages to the file system when many are free, and answers flush
//! barriers.

use candor_core::queue::BoundedReceiver as Receiver;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rusqlite::{params, Connection};

use crate::chunk::{ChunkBuilder, MAX_BYTES};
use crate::{Caps, Row, Shared, MAX_EVENT_ROWS, QUEUED_ROW_COST, ROW_OVERHEAD};

const SCHEMA_VERSION: i64 = 3;
const BATCH: usize = 4096;
/// A cap, once passed, is brought back to this share of itself (so trims come in batches).
const TRIM_TO_PCT: u64 = 90;
/// Free pages are kept for reuse up to this much (or a quarter of the total cap); beyond it
/// they are returned (e.g. after a service's lines were removed or a cap was lowered).
const KEEP_FREE_BYTES: u64 = 16 << 20;

pub(crate) struct Writer {
    conn: Connection,
    path: PathBuf,
    shared: Arc<Shared>,
    page_size: u64,
    svc_ids: HashMap<Arc<str>, i64>,
    svc_names: HashMap<i64, Arc<str>>,
    /// Accounted bytes (text + `ROW_OVERHEAD`) per service id, and in total.
    bytes: HashMap<i64, u64>,
    total: u64,
    events_since_trim: usize,
    /// Lines lost to failed writes, per service, not yet marked in its log; with the error.
    unmarked: HashMap<Arc<str>, u64>,
    /// The failing episode: batches failed and the last error (one complaint per episode).
    failing: Option<(u64, String)>,
    /// The error of the last failing episode, for the markers.
    last_error: String,
}

impl Writer {
    pub(crate) fn open(
        conn: Connection,
        path: PathBuf,
        shared: Arc<Shared>,
    ) -> rusqlite::Result<Self> {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version < SCHEMA_VERSION {
            // Earlier versions kept a row per log line; those lines are not carried over.
            // auto_vacuum can only be switched on by a VACUUM once tables exist.
            conn.execute_batch(
                "DROP INDEX IF EXISTS logs_by_service; DROP TABLE IF EXISTS logs;
                 PRAGMA auto_vacuum=INCREMENTAL; VACUUM;",
            )?;
        }
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA journal_size_limit=1048576;
             PRAGMA wal_autocheckpoint=256;
             CREATE TABLE IF NOT EXISTS services(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
             CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY, last_id INTEGER NOT NULL,
                 svc INTEGER NOT NULL, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,
                 lines INTEGER NOT NULL, data BLOB NOT NULL);
             CREATE INDEX IF NOT EXISTS chunks_by_service ON chunks(svc, id);
             CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,
                 service TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL);
             PRAGMA user_version=3;",
        )?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let mut w = Writer {
            conn,
            path,
            shared,
            page_size: page_size.max(1) as u64,
            svc_ids: HashMap::new(),
            svc_names: HashMap::new(),
            bytes: HashMap::new(),
            total: 0,
            events_since_trim: 0,
            unmarked: HashMap::new(),
            failing: None,
            last_error: String::new(),
        };
        for (id, name) in crate::read::service_names(&w.conn)? {
            w.svc_ids.insert(name.clone(), id);
            w.svc_names.insert(id, name);
        }
        // Line ids grow in queue order and a batch's lines all come after the last batch's, so
        // the highest id is among the newest batch's chunks (at most BATCH of them): no scan
        // of the whole table, which would make a restart slower as the store fills.
        let max_id: i64 = w.conn.query_row(
            "SELECT COALESCE(MAX(last_id), 0) FROM
               (SELECT last_id FROM chunks ORDER BY id DESC LIMIT ?1)",
            [BATCH as i64 + 1],
            |r| r.get(0),
        )?;
        w.shared.next_id.store(max_id + 1, Ordering::Relaxed);
        Ok(w)
    }

    /// What each service's lines take: a scan of every chunk, done on the writer's thread
    /// before its first batch, so that it never delays the daemon's start.
    fn count_bytes(&mut self) -> rusqlite::Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT svc, SUM(length(data)) + COUNT(*) * ?1 FROM chunks GROUP BY svc")?;
        let rows = stmt.query_map([ROW_OVERHEAD as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (svc, b) = row?;
            self.bytes.insert(svc, b as u64);
            self.total += b as u64;
        }
        drop(stmt);
        self.shared.log_bytes.store(self.total, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn run(mut self, rx: Receiver<Row>) {
        if let Err(e) = self.count_bytes() {
            self.complain("cannot count what is stored", &e);
        }
        let mut batch = Vec::with_capacity(BATCH);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            // Caps as they are now, for this batch and its trim.
            let caps = self.shared.caps();
            self.write_or_count(&batch, &caps);
            let written = batch
                .iter()
                .filter_map(|r| match r {
                    Row::Log(l) => Some(l.id),
                    _ => None,
                })
                .max();
            if let Some(id) = written {
                let hook = self
                    .shared
                    .on_commit
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if let Some(hook) = hook.as_ref() {
                    hook(id);
                }
            }
            if let Err(e) = self.trim(&caps) {
                // While writes fail, the failure has been told once already.
                if self.failing.is_none() {
                    self.complain("cannot trim to the caps", &e);
                }
            }
            // Everything queued before a barrier is committed (and trimmed) now.
            for row in batch.drain(..) {
                if let Row::Barrier(done) = row {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Write a batch; if it cannot be written (a full or failing disk), every line in it is
    /// counted as lost for its service and its queue bytes are released all the same (else the
    /// queue would read full forever and every later line be dropped). When writes work again,
    /// each service that lost lines gets a marker line saying how many and why.
    fn write_or_count(&mut self, batch: &[Row], caps: &Caps) {
        let queued: usize = batch
            .iter()
            .map(|row| match row {
                Row::Log(l) => l.line.len() + QUEUED_ROW_COST,
                _ => 0,
            })
            .sum();
        // A panic in writing (a bug) costs this batch, counted as lost like a failed write,
        // never the writer thread: every later line would be lost with it.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.write_batch(batch, caps)
        }))
        .unwrap_or_else(|payload| {
            let said = candor_core::panic_message(&*payload);
            Err(rusqlite::Error::ToSqlConversionFailure(
                format!("the store's writer panicked: {said}").into(),
            ))
        });
        self.shared
            .queued_bytes
            .fetch_sub(queued, Ordering::Relaxed);
        match result {
            Ok(()) => {
                if let Some((failed, error)) = self.failing.take() {
                    eprintln!(
                        "candor: store {}: writing again after {failed} failed batches ({error})",
                        self.path.display()
                    );
                    self.last_error = error;
                }
                if !self.unmarked.is_empty() {
                    self.write_markers(caps);
                }
            }
            Err(e) => {
                // Who lost what is counted only here, off the path of batches that succeed.
                let mut lines: HashMap<&Arc<str>, u64> = HashMap::new();
                let mut events = 0u64;
                for row in batch {
                    match row {
                        Row::Log(l) => *lines.entry(&l.service).or_default() += 1,
                        Row::Event(_) => events += 1,
                        Row::Barrier(_) => {}
                    }
                }
                let total: u64 = lines.values().sum();
                self.shared.dropped.logs.fetch_add(total, Ordering::Relaxed);
                self.shared
                    .dropped
                    .events
                    .fetch_add(events, Ordering::Relaxed);
                let error = e.to_string();
                {
                    let hook = self
                        .shared
                        .on_lost
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    for (svc, n) in &lines {
                        if let Some(hook) = hook.as_ref() {
                            hook(svc, *n);
                        }
                        *self.unmarked.entry(Arc::clone(svc)).or_default() += n;
                    }
                }
                match &mut self.failing {
                    Some((failed, last)) => {
                        *failed += 1;
                        *last = error;
                    }
                    None => {
                        self.complain("cannot write a batch; counting its lines as lost", &e);
                        self.failing = Some((1, error));
                    }
                }
            }
        }
    }

    /// One line per service that lost lines to failed writes, now that writes work again.
    fn write_markers(&mut self, caps: &Caps) {
        let why = &self.last_error;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let markers: Vec<Row> = self
            .unmarked
            .iter()
            .map(|(svc, n)| {
                Row::Log(crate::LogLine {
                    id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
                    at_ms: now,
                    service: svc.clone(),
                    stream: crate::Stream::Candor,
                    line: format!(
                        "-- lost {n} lines: the log store could not write them ({why}) --"
                    )
                    .into_bytes(),
                    shape: crate::Shape::PLAIN,
                })
            })
            .collect();
        if self.write_batch(&markers, caps).is_ok() {
            self.unmarked.clear();
        }
    }

    fn complain(&self, what: &str, e: &rusqlite::Error) {
        eprintln!("candor: store {}: {what}: {e}", self.path.display());
    }

    fn service_id(&mut self, name: &Arc<str>) -> rusqlite::Result<i64> {
        if let Some(id) = self.svc_ids.get(name) {
            return Ok(*id);
        }
        self.conn.execute(
            "INSERT OR IGNORE INTO services(name) VALUES (?1)",
            [&**name],
        )?;
        let id: i64 =
            self.conn
                .query_row("SELECT id FROM services WHERE name = ?1", [&**name], |r| {
                    r.get(0)
                })?;
        self.svc_ids.insert(name.clone(), id);
        self.svc_names.insert(id, name.clone());
        Ok(id)
    }

    fn write_batch(&mut self, batch: &[Row], caps: &Caps) -> rusqlite::Result<()> {
        // Lines of one service in this batch go into chunks, in arrival order; a chunk holds
        // at most a 32nd of its service's cap, so that trims stay fine-grained.
        let mut open: HashMap<i64, (ChunkBuilder, usize)> = HashMap::new();
        let mut done: Vec<(i64, ChunkBuilder)> = Vec::new();
        for row in batch {
            let Row::Log(l) = row else { continue };
            let svc = self.service_id(&l.service)?;
            let (chunk, max) = open.entry(svc).or_insert_with(|| {
                let max = (caps.service(&l.service) / 32).clamp(4096, MAX_BYTES as u64);
                (ChunkBuilder::new(l.id, l.at_ms), max as usize)
            });
            if !chunk.fits(l.id, l.at_ms, l.line.len(), *max) {
                let full = std::mem::replace(chunk, ChunkBuilder::new(l.id, l.at_ms));
                done.push((svc, full));
            }
            chunk.push(l.id, l.at_ms, l.stream, l.shape, &l.line);
        }
        done.extend(open.into_iter().map(|(svc, (c, _))| (svc, c)));
        let tx = self.conn.transaction()?;
        let mut added: Vec<(i64, u64)> = Vec::with_capacity(done.len());
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO chunks(id, last_id, svc, first_ms, last_ms, lines, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (svc, c) in &done {
                ins.execute(params![
                    c.first_id, c.last_id, svc, c.first_ms, c.last_ms, c.lines, c.data
                ])?;
                added.push((*svc, c.data.len() as u64 + ROW_OVERHEAD));
            }
            let mut ev = tx.prepare_cached(
                "INSERT INTO events(at_ms, service, state, reason, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for row in batch {
                if let Row::Event(e) = row {
                    ev.execute(params![e.at_ms, e.service, e.state, e.reason, e.detail])?;
                    self.events_since_trim += 1;
                }
            }
        }
        tx.commit()?;
        for (svc, b) in added {
            *self.bytes.entry(svc).or_default() += b;
            self.total += b;
        }
        self.shared.log_bytes.store(self.total, Ordering::Relaxed);
        Ok(())
    }

    /// Bring every service under its cap and all of them under the total, oldest lines first;
    /// past the total, the services holding the most give way first (a quiet service keeps its
    /// lines while a flooding one ages out).
    fn trim(&mut self, caps: &Caps) -> rusqlite::Result<()> {
        if self.events_since_trim >= 10_000 {
            self.events_since_trim = 0;
            self.conn.execute(
                "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1",
                [MAX_EVENT_ROWS],
            )?;
        }
        let over: Vec<(i64, u64)> = self
            .bytes
            .iter()
            .filter_map(|(svc, b)| {
                let name = self.svc_names.get(svc)?;
                let cap = caps.service(name);
                (*b > cap).then(|| (*svc, b - cap * TRIM_TO_PCT / 100))
            })
            .collect();
        let mut trimmed = !over.is_empty();
        for (svc, want) in over {
            self.delete_oldest(svc, want)?;
        }
        if self.total > caps.total {
            trimmed = true;
            let mut need = self.total - caps.total * TRIM_TO_PCT / 100;
            while need > 0 {
                let Some((svc, _)) = self.bytes.iter().max_by_key(|(_, b)| **b) else {
                    break;
                };
                let freed = self.delete_oldest(*svc, need)?;
                if freed == 0 {
                    break;
                }
                need = need.saturating_sub(freed);
            }
        }
        if trimmed {
            self.shared.log_bytes.store(self.total, Ordering::Relaxed);
            self.release_free_pages(caps.total)?;
        }
        Ok(())
    }

    /// Delete the oldest chunks of one service, at least `want` bytes of them; returns the bytes
    /// freed.
    fn delete_oldest(&mut self, svc: i64, want: u64) -> rusqlite::Result<u64> {
        let (mut freed, mut cut, mut rows) = (0u64, None, 0u64);
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, length(data), lines FROM chunks WHERE svc = ?1 ORDER BY id",
            )?;
            let mut q = stmt.query([svc])?;
            while let Some(r) = q.next()? {
                cut = Some(r.get::<_, i64>(0)?);
                freed += r.get::<_, i64>(1)? as u64 + ROW_OVERHEAD;
                rows += r.get::<_, i64>(2)? as u64;
                if freed >= want {
                    break;
                }
            }
        }
        let Some(cut) = cut else {
            self.total -= self.bytes.remove(&svc).unwrap_or(0);
            return Ok(0);
        };
        self.conn.execute(
            "DELETE FROM chunks WHERE svc = ?1 AND id <= ?2",
            params![svc, cut],
        )?;
        let b = self.bytes.entry(svc).or_default();
        let freed = freed.min(*b);
        *b -= freed;
        self.total -= freed;
        self.shared
            .dropped
            .trimmed
            .fetch_add(rows, Ordering::Relaxed);
        Ok(freed)
    }

    /// Free pages are reused by later lines, which keeps the file at its high-water mark; only
    /// when far more is free than a trim batch (a cap was lowered, a service's lines went) are
    /// pages handed back.
    fn release_free_pages(&self, total_cap: u64) -> rusqlite::Result<()> {
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let keep = KEEP_FREE_BYTES.max(total_cap / 4) / self.page_size;
        if free as u64 > keep {
            let n = free as u64 - keep;
            self.conn
                .execute_batch(&format!("PRAGMA incremental_vacuum({n})"))?;
        }
        Ok(())
    }
}
