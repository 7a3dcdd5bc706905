//! The store: SQLite (bundled) in the state dir for events and log lines.
//!
//! One writer thread owns the write connection and commits in batches; callers hand it rows
//! through a bounded queue and never wait — when the queue is full the row is dropped and
//! counted. Tables are capped by row count. Reads use their own connection.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{params, Connection};

/// Rows waiting for the writer, at most.
pub const QUEUE_CAP: usize = 16_384;
/// Log lines kept on disk, at most (oldest go first).
pub const MAX_LOG_ROWS: i64 = 1_000_000;
/// Events kept on disk, at most.
pub const MAX_EVENT_ROWS: i64 = 100_000;
const BATCH: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub at_ms: i64,
    pub service: String,
    /// "stdout" or "stderr".
    pub stream: &'static str,
    pub line: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub at_ms: i64,
    pub service: String,
    pub state: String,
    pub reason: String,
    /// JSON with the evidence behind the change.
    pub detail: String,
}

enum Row {
    Log(LogLine),
    Event(EventRow),
}

/// Counters of what the store could not keep.
#[derive(Debug, Default)]
pub struct Dropped {
    pub logs: AtomicU64,
    pub events: AtomicU64,
}

#[derive(Clone)]
pub struct Store {
    tx: SyncSender<Row>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    pub dropped: Arc<Dropped>,
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Open (creating) `<dir>/candor.db` and start the writer thread.
    pub fn open(dir: &Path) -> Result<(Store, JoinHandle<()>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("candor.db");
        let writer = Connection::open(&path).map_err(sql_err(&path))?;
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL;
                 PRAGMA synchronous=NORMAL;
                 CREATE TABLE IF NOT EXISTS logs(id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,
                     service TEXT NOT NULL, stream TEXT NOT NULL, line TEXT NOT NULL);
                 CREATE INDEX IF NOT EXISTS logs_by_service ON logs(service, id);
                 CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,
                     service TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL);",
            )
            .map_err(sql_err(&path))?;
        let reader = Connection::open(&path).map_err(sql_err(&path))?;
        let (tx, rx) = sync_channel(QUEUE_CAP);
        let p = path.clone();
        let thread = std::thread::Builder::new()
            .name("candor-store".into())
            .spawn(move || write_loop(writer, rx, &p))
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok((
            Store {
                tx,
                reader: Arc::new(Mutex::new(reader)),
                path,
                dropped: Arc::default(),
            },
            thread,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue a log line; never blocks. Returns false (and counts it) when dropped.
    pub fn log(&self, line: LogLine) -> bool {
        match self.tx.try_send(Row::Log(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.logs.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queue an event; never blocks. Returns false (and counts it) when dropped.
    pub fn event(&self, ev: EventRow) -> bool {
        match self.tx.try_send(Row::Event(ev)) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.events.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The last `n` log lines of `service` (oldest first), optionally only since `since_ms` and
    /// containing `grep` (a plain substring).
    pub fn tail_logs(
        &self,
        service: &str,
        n: usize,
        since_ms: Option<i64>,
        grep: Option<&str>,
    ) -> Result<Vec<LogLine>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn
            .prepare_cached(
                "SELECT at_ms, stream, line FROM logs WHERE service = ?1 AND at_ms >= ?2
                   AND (?3 IS NULL OR instr(line, ?3) > 0) ORDER BY id DESC LIMIT ?4",
            )
            .map_err(sql_err(&self.path))?;
        let rows = stmt
            .query_map(
                params![service, since_ms.unwrap_or(0), grep, n as i64],
                |r| {
                    let stream: String = r.get(1)?;
                    Ok(LogLine {
                        at_ms: r.get(0)?,
                        service: service.to_string(),
                        stream: if stream == "stderr" {
                            "stderr"
                        } else {
                            "stdout"
                        },
                        line: r.get(2)?,
                    })
                },
            )
            .map_err(sql_err(&self.path))?;
        let mut out: Vec<LogLine> = rows
            .collect::<Result<_, _>>()
            .map_err(sql_err(&self.path))?;
        out.reverse();
        Ok(out)
    }

    /// The last `n` events (oldest first), optionally of one service.
    pub fn recent_events(
        &self,
        service: Option<&str>,
        n: usize,
    ) -> Result<Vec<EventRow>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn
            .prepare_cached(
                "SELECT at_ms, service, state, reason, detail FROM events
                 WHERE (?1 IS NULL OR service = ?1) ORDER BY id DESC LIMIT ?2",
            )
            .map_err(sql_err(&self.path))?;
        let rows = stmt
            .query_map(params![service, n as i64], |r| {
                Ok(EventRow {
                    at_ms: r.get(0)?,
                    service: r.get(1)?,
                    state: r.get(2)?,
                    reason: r.get(3)?,
                    detail: r.get(4)?,
                })
            })
            .map_err(sql_err(&self.path))?;
        let mut out: Vec<EventRow> = rows
            .collect::<Result<_, _>>()
            .map_err(sql_err(&self.path))?;
        out.reverse();
        Ok(out)
    }
}

fn write_loop(mut conn: Connection, rx: Receiver<Row>, path: &Path) {
    let mut since_trim = 0usize;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        since_trim += batch.len();
        if let Err(e) = write_batch(&mut conn, &batch) {
            eprintln!(
                "candor: store {}: cannot write {} rows: {e}",
                path.display(),
                batch.len()
            );
        }
        if since_trim >= 10_000 {
            since_trim = 0;
            let _ = conn.execute(
                "DELETE FROM logs WHERE id <= (SELECT MAX(id) FROM logs) - ?1",
                [MAX_LOG_ROWS],
            );
            let _ = conn.execute(
                "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1",
                [MAX_EVENT_ROWS],
            );
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &[Row]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut log = tx.prepare_cached(
            "INSERT INTO logs(at_ms, service, stream, line) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut ev = tx.prepare_cached(
            "INSERT INTO events(at_ms, service, state, reason, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for row in batch {
            match row {
                Row::Log(l) => {
                    log.execute(params![l.at_ms, l.service, l.stream, l.line])?;
                }
                Row::Event(e) => {
                    ev.execute(params![e.at_ms, e.service, e.state, e.reason, e.detail])?;
                }
            }
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "condition not met in 10s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn tail_returns_last_lines_in_order_with_filters() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _t) = Store::open(dir.path()).unwrap();
        for i in 0..100 {
            let line = LogLine {
                at_ms: i,
                service: "api".into(),
                stream: "stdout",
                line: format!("line {i}"),
            };
            assert!(store.log(line));
        }
        store.log(LogLine {
            at_ms: 5,
            service: "db".into(),
            stream: "stderr",
            line: "other".into(),
        });
        let got = wait_for(|| {
            let v = store.tail_logs("api", 3, None, None).unwrap();
            (v.last().map(|l| l.line.as_str()) == Some("line 99")).then_some(v)
        });
        let lines: Vec<&str> = got.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines, ["line 97", "line 98", "line 99"]);
        let grep = store.tail_logs("api", 50, None, Some("line 4")).unwrap();
        assert_eq!(grep.len(), 11); // 4, 40..49
        let since = store.tail_logs("api", 1000, Some(90), None).unwrap();
        assert_eq!(since.len(), 10);
    }

    #[test]
    fn events_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _t) = Store::open(dir.path()).unwrap();
        store.event(EventRow {
            at_ms: 1,
            service: "api".into(),
            state: "running".into(),
            reason: "r".into(),
            detail: "{}".into(),
        });
        let got = wait_for(|| {
            let v = store.recent_events(Some("api"), 10).unwrap();
            (!v.is_empty()).then_some(v)
        });
        assert_eq!(got[0].state, "running");
    }
}
