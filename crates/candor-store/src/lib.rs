//! The store: SQLite (bundled) in the state dir for events and log lines.
//!
//! One writer thread owns the write connection and commits in batches; callers hand it rows
//! through a queue bounded in rows and in bytes and never wait — when it is full the row is
//! dropped and counted. Log lines are capped in bytes per service and in total (oldest first,
//! in batches); events by row count. Reads use their own connection (`read.rs`).

mod chunk;
mod forward;
mod read;
mod recognise;
mod shape;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

use candor_core::queue::{bounded, BoundedSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;

pub use forward::{Ahead, AheadLine, LineReader};
pub use read::{LogQuery, Tail, ANSWER_BYTES, LINE_OVERHEAD};
pub use recognise::{fields, level_of, other_fields, recognise, Fields, Sniffer, SNIFF_LINES};
pub use shape::{effective_level, Format, Level, Shape};

/// Rows waiting for the writer, at most.
pub const QUEUE_ROWS: usize = 16_384;
/// Bytes of log lines waiting for the writer (each counted with `QUEUED_ROW_COST` more), at
/// most: what bounds the daemon's memory when many services flood at once.
pub const QUEUE_BYTES: usize = 4 << 20;
/// What a queued line costs beyond its text (its slot, the service name's handle).
const QUEUED_ROW_COST: usize = 192;
/// Events kept on disk, at most.
pub const MAX_EVENT_ROWS: i64 = 50_000;
/// What a stored log line costs beyond its text (row header, id, time, index entry), so that
/// byte caps track the file. Measured: see `bench/results/store.txt`.
pub const ROW_OVERHEAD: u64 = 40;
/// Default cap of one service's lines on disk.
pub const DEFAULT_SERVICE_BYTES: u64 = 64 << 20;
/// Default cap of all services' lines together.
pub const DEFAULT_TOTAL_BYTES: u64 = 512 << 20;

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

/// Which stream a line came from; `Candor` marks lines the supervisor wrote about the stream
/// (suppressed or dropped lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout = 1,
    Stderr = 2,
    Candor = 3,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Candor => "candor",
        }
    }
    /// `out`/`stdout`, `err`/`stderr`, `candor`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "out" | "stdout" => Some(Stream::Stdout),
            "err" | "stderr" => Some(Stream::Stderr),
            "candor" => Some(Stream::Candor),
            _ => None,
        }
    }
    fn from_i64(i: i64) -> Self {
        match i {
            2 => Stream::Stderr,
            3 => Stream::Candor,
            _ => Stream::Stdout,
        }
    }
}

/// One log line. `line` holds the bytes as the service wrote them (not necessarily UTF-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Handed out by [`Store::log`]: increasing in arrival order, unique.
    pub id: i64,
    pub at_ms: i64,
    pub service: Arc<str>,
    pub stream: Stream,
    pub line: Vec<u8>,
    /// Its stream's format and the line's level (plain and unknown unless recognised).
    pub shape: Shape,
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
    /// Answered once every row queued before it is committed.
    Barrier(SyncSender<()>),
}

/// Counters of what the store could not keep.
#[derive(Debug, Default)]
pub struct Dropped {
    pub logs: AtomicU64,
    pub events: AtomicU64,
    /// Lines removed from disk by the byte caps (not lost in flight: kept, then aged out).
    pub trimmed: AtomicU64,
}

/// Byte caps on log lines; changed at run time by the daemon (config reloads).
#[derive(Clone, Debug)]
pub struct Caps {
    pub total: u64,
    pub default_service: u64,
    pub per_service: HashMap<String, u64>,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            total: DEFAULT_TOTAL_BYTES,
            default_service: DEFAULT_SERVICE_BYTES,
            per_service: HashMap::new(),
        }
    }
}

impl Caps {
    pub fn service(&self, name: &str) -> u64 {
        self.per_service
            .get(name)
            .copied()
            .unwrap_or(self.default_service)
    }
}

/// What the store holds now, for status and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Accounted bytes of log lines (text + `ROW_OVERHEAD` each).
    pub log_bytes: u64,
    pub file_bytes: u64,
    pub wal_bytes: u64,
}

/// What the store's handles and its writer thread share.
#[derive(Default)]
struct Shared {
    /// The id the next queued line gets.
    next_id: AtomicI64,
    /// Bytes of lines queued and not yet committed (see `QUEUED_ROW_COST`).
    queued_bytes: AtomicUsize,
    caps: Mutex<Caps>,
    /// Accounted bytes of log lines on disk, as of the last commit or trim.
    log_bytes: AtomicU64,
    dropped: Dropped,
    /// Told the highest line id of each batch once the batch is written (see
    /// [`Store::on_commit`]).
    on_commit: Mutex<Option<CommitHook>>,
    /// Told, per service, how many of its lines a failed write lost.
    on_lost: Mutex<Option<LostHook>>,
}

/// Called on the writer's thread with a service and the number of its lines a failed write
/// (a full disk, an IO error) lost.
pub type LostHook = Box<dyn Fn(&str, u64) + Send + Sync>;

/// Called on the writer's thread with the highest line id of a batch just written.
pub type CommitHook = Box<dyn Fn(i64) + Send + Sync>;

impl Shared {
    fn caps(&self) -> Caps {
        self.caps.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Clone)]
pub struct Store {
    tx: BoundedSender<Row>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    shared: Arc<Shared>,
    /// Set when the database could not be opened and was moved aside: what happened, in a
    /// sentence.
    recovered: Option<Arc<str>>,
}

/// Rename `path` (and its `-wal`, `-shm`) to `<name>.corrupt-<unix time>`; returns the new path.
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let with = |p: &Path, suffix: &str| {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    let aside = with(path, &format!(".corrupt-{secs}"));
    std::fs::rename(path, &aside).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    for side in ["-wal", "-shm"] {
        let from = with(path, side);
        if from.exists() {
            let _ = std::fs::rename(&from, with(&aside, side));
        }
    }
    Ok(aside)
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
        Self::open_with(dir, Caps::default())
    }

    /// Open `<dir>/candor.db`. A database that cannot be opened (corrupt, not a database,
    /// unreadable) is moved aside to `candor.db.corrupt-<unix time>` (with its -wal and -shm)
    /// and a fresh one is made: a broken state dir must never keep services from running.
    /// [`Store::recovered`] then says what happened.
    pub fn open_with(dir: &Path, caps: Caps) -> Result<(Store, JoinHandle<()>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("candor.db");
        match Self::open_at(&path, caps.clone()) {
            Ok(opened) => Ok(opened),
            Err(e) if path.exists() => {
                let aside = move_aside(&path)?;
                let (mut store, thread) = Self::open_at(&path, caps)?;
                let name = aside
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let why = match &e {
                    StoreError::Sqlite { source, .. } => source.to_string(),
                    StoreError::Io { source, .. } => source.to_string(),
                };
                store.recovered = Some(
                    format!(
                        "candor.db could not be opened ({why}); moved aside to {name} and started with a fresh one (earlier logs and events are in that file)"
                    )
                    .into(),
                );
                Ok((store, thread))
            }
            Err(e) => Err(e),
        }
    }

    /// What was done about a database that could not be opened, if anything.
    pub fn recovered(&self) -> Option<&str> {
        self.recovered.as_deref()
    }

    fn open_at(path: &Path, caps: Caps) -> Result<(Store, JoinHandle<()>), StoreError> {
        let path = path.to_path_buf();
        let conn = Connection::open(&path).map_err(sql_err(&path))?;
        let shared = Arc::new(Shared {
            caps: Mutex::new(caps),
            ..Shared::default()
        });
        let writer =
            writer::Writer::open(conn, path.clone(), shared.clone()).map_err(sql_err(&path))?;
        let reader = Connection::open(&path).map_err(sql_err(&path))?;
        let (tx, rx) = bounded(QUEUE_ROWS);
        let thread = std::thread::Builder::new()
            .name("candor-store".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok((
            Store {
                tx,
                reader: Arc::new(Mutex::new(reader)),
                path,
                shared,
                recovered: None,
            },
            thread,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue a log line; never blocks. Its `id` is assigned here (the `id` given is ignored):
    /// returns it when queued, `None` (counted) when dropped because the writer is behind.
    pub fn log(&self, mut line: LogLine) -> Option<i64> {
        let sh = &*self.shared;
        let size = line.line.len() + QUEUED_ROW_COST;
        if sh.queued_bytes.fetch_add(size, Ordering::Relaxed) + size > QUEUE_BYTES {
            sh.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            sh.dropped.logs.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
        line.id = id;
        match self.tx.try_send(Row::Log(line)) {
            Ok(()) => Some(id),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                sh.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                sh.dropped.logs.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Have `hook` told the highest line id of every batch the writer has written (committed,
    /// or given up on after an error): a pipe reader frees the bytes of its lines from the
    /// pipe only then, so a line it read is never lost with the daemon.
    pub fn on_commit(&self, hook: CommitHook) {
        *self
            .shared
            .on_commit
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Have `hook` told of every service's lines lost to a failed write, so they are counted
    /// in that service's `logs.dropped`.
    pub fn on_lost(&self, hook: LostHook) {
        *self
            .shared
            .on_lost
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Whether the writer has caught up enough (its queue is less than half full) for a
    /// service whose lines were refused to be let through again.
    pub fn has_room(&self) -> bool {
        self.shared.queued_bytes.load(Ordering::Relaxed) < QUEUE_BYTES / 2
    }

    /// Queue an event; never blocks. Returns false (and counts it) when dropped.
    pub fn event(&self, ev: EventRow) -> bool {
        match self.tx.try_send(Row::Event(ev)) {
            Ok(()) => true,
            Err(_) => {
                self.shared.dropped.events.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Wait until every row queued before this call is committed (blocking: call it off the
    /// async threads). Reads after it see everything logged before it.
    pub fn flush(&self) {
        let (tx, rx) = sync_channel(1);
        if self.tx.send_anyway(Row::Barrier(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Replace the byte caps; applied from the next batch on.
    pub fn set_caps(&self, caps: Caps) {
        *self.shared.caps.lock().unwrap_or_else(|e| e.into_inner()) = caps;
    }

    pub fn caps(&self) -> Caps {
        self.shared.caps()
    }

    /// What the store could not keep, and what it aged out.
    pub fn dropped(&self) -> &Dropped {
        &self.shared.dropped
    }

    pub fn usage(&self) -> Usage {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Usage {
            log_bytes: self.shared.log_bytes.load(Ordering::Relaxed),
            file_bytes: size(&self.path),
            wal_bytes: size(Path::new(&wal)),
        }
    }
}

#[cfg(test)]
mod tests;
