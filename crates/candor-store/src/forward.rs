//! Reading lines forward from a cursor, for log forwarding: each target keeps the id of the
//! last line it was sent and reads what came after, in id order, on a connection of its own.
//! Lines are read only once the writer has committed them; an id that is missing (its line
//! was dropped at the queue, or lost to a failed write) is waited on briefly — its line may
//! still be on its way to a batch — then passed over.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{params, Connection};

use crate::chunk::{decode, MAX_SPAN};
use crate::read::service_names;
use crate::{sql_err, Store, StoreError};

/// Ids read at most per look (a window, so a look is bounded however far behind it is).
const WINDOW: i64 = 16_384;
/// A missing id whose next line is younger than this may still be on its way (ids are handed
/// out before a line is queued): the cursor stops before it until then.
const GAP_WAIT_MS: i64 = 500;

/// A forwarding target's reader.
pub struct LineReader {
    conn: Connection,
    path: PathBuf,
    names: HashMap<i64, Arc<str>>,
}

/// What one look found; its buffers are kept from one look to the next.
#[derive(Debug, Default)]
pub struct Ahead {
    /// The lines after the cursor that `keep` wanted, in id order, within the byte bound.
    pub lines: Vec<AheadLine>,
    /// The cursor once these are sent: every id up to it was looked at.
    pub next: i64,
    /// The lines' bytes, one after the other.
    data: Vec<u8>,
    /// Every id the scan met, its time and where its line is in `found` (if wanted).
    seen: Vec<(i64, i64, u32)>,
    /// The wanted lines in the order the scan met them.
    found: Vec<AheadLine>,
}

/// `Ahead::seen`'s mark of a line `keep` did not want.
const NOT_WANTED: u32 = u32::MAX;

/// One line of an [`Ahead`]; its bytes are [`Ahead::bytes`].
#[derive(Clone, Debug)]
pub struct AheadLine {
    pub id: i64,
    pub at_ms: i64,
    pub service: Arc<str>,
    pub stream: crate::Stream,
    pub shape: crate::Shape,
    start: usize,
    len: usize,
}

impl Ahead {
    pub fn bytes(&self, l: &AheadLine) -> &[u8] {
        &self.data[l.start..l.start + l.len]
    }

    /// The lines of `seen` in id order from `cursor` on, up to a wanted line left out (`cut`)
    /// or a missing id whose next line is still young.
    fn walk(&mut self, cursor: i64, cut: i64, now_ms: i64) {
        self.lines.clear();
        self.next = cursor;
        for &(id, at_ms, at) in &self.seen {
            if id >= cut || (id > self.next + 1 && at_ms > now_ms - GAP_WAIT_MS) {
                break;
            }
            if at != NOT_WANTED {
                self.lines.push(self.found[at as usize].clone());
            }
            self.next = id;
        }
    }
}

impl Store {
    /// A reader of its own (a second read connection), for one forwarding target.
    pub fn line_reader(&self) -> Result<LineReader, StoreError> {
        let conn = Connection::open(&self.path).map_err(sql_err(&self.path))?;
        // Lines just written are read from the page cache through a map, not copied by read(2).
        conn.pragma_update(None, "mmap_size", 256i64 << 20)
            .map_err(sql_err(&self.path))?;
        Ok(LineReader {
            conn,
            path: self.path.clone(),
            names: HashMap::new(),
        })
    }

    /// The id the next queued line gets (so the highest given out is one less).
    pub fn next_id(&self) -> i64 {
        self.shared
            .next_id
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl LineReader {
    /// Every line with `from < id <= to`, in chunk order, each as `f(id, at_ms, service,
    /// stream, shape, bytes)`; `f` returns false to stop.
    fn scan(
        &mut self,
        from: i64,
        to: i64,
        mut f: impl FnMut(i64, i64, &Arc<str>, crate::Stream, crate::Shape, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let err = sql_err(&self.path);
        let mut names = std::mem::take(&mut self.names);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, svc, first_ms, data FROM chunks WHERE id > ?1 AND id <= ?2 ORDER BY id",
            )
            .map_err(&err)?;
        // A chunk holds ids below its first + MAX_SPAN: one that starts before this holds none
        // after `from`.
        let mut rows = stmt.query(params![from - MAX_SPAN, to]).map_err(&err)?;
        let mut refreshed = false;
        'chunks: while let Some(r) = rows.next().map_err(&err)? {
            let first_id: i64 = r.get(0).map_err(&err)?;
            let svc: i64 = r.get(1).map_err(&err)?;
            let first_ms: i64 = r.get(2).map_err(&err)?;
            if !names.contains_key(&svc) && !refreshed {
                // A service met for the first time: its name is read once.
                names = service_names(&self.conn)
                    .map_err(&err)?
                    .into_iter()
                    .collect();
                refreshed = true;
            }
            let service = names.get(&svc).cloned().unwrap_or_else(|| "?".into());
            let data = r
                .get_ref(3)
                .map_err(&err)?
                .as_blob()
                .map_err(|e| err(e.into()))?;
            for (id, at_ms, stream, shape, line) in decode(first_id, first_ms, data) {
                if id > from && id <= to && !f(id, at_ms, &service, stream, shape, line) {
                    break 'chunks;
                }
            }
        }
        drop(rows);
        drop(stmt);
        self.names = names;
        Ok(())
    }

    /// The lines after `cursor` (up to `upto`, the highest id committed) that `keep` wants,
    /// at most `max_bytes` of them (at least one), into `out` (its buffers reused), and where
    /// the cursor goes after them (`out.next`). At most `max_bytes` of line bytes are copied
    /// (or the one line, when it alone is more) whatever the window holds.
    pub fn after(
        &mut self,
        cursor: i64,
        upto: i64,
        max_bytes: usize,
        now_ms: i64,
        keep: &dyn Fn(&str) -> bool,
        out: &mut Ahead,
    ) -> Result<(), StoreError> {
        let end = upto.min(cursor.saturating_add(WINDOW));
        let cut = self.fill(cursor, end, max_bytes, keep, out)?;
        out.walk(cursor, cut, now_ms);
        if out.lines.is_empty() && cut != i64::MAX && out.next == cut - 1 {
            // The first wanted line did not fit beside lines the scan met before it (later
            // ids of other chunks): it goes alone.
            self.fill(cursor, cut, usize::MAX, keep, out)?;
            out.walk(cursor, i64::MAX, now_ms);
        }
        Ok(())
    }

    /// Scan `(cursor, end]` into `out`: every id met, and the wanted lines' bytes while they
    /// fit in `max_bytes`. Returns the lowest id of a wanted line left out (`i64::MAX`: none).
    fn fill(
        &mut self,
        cursor: i64,
        end: i64,
        max_bytes: usize,
        keep: &dyn Fn(&str) -> bool,
        out: &mut Ahead,
    ) -> Result<i64, StoreError> {
        out.data.clear();
        out.seen.clear();
        out.found.clear();
        let mut cut = i64::MAX;
        if end <= cursor {
            return Ok(cut);
        }
        let Ahead {
            data, seen, found, ..
        } = out;
        self.scan(cursor, end, |id, at_ms, service, stream, shape, bytes| {
            let mut at = NOT_WANTED;
            if keep(service) {
                if data.is_empty() || data.len() + bytes.len() <= max_bytes {
                    at = found.len() as u32;
                    found.push(AheadLine {
                        id,
                        at_ms,
                        service: service.clone(),
                        stream,
                        shape,
                        start: data.len(),
                        len: bytes.len(),
                    });
                    data.extend_from_slice(bytes);
                } else {
                    cut = cut.min(id);
                }
            }
            seen.push((id, at_ms, at));
            true
        })?;
        out.seen.sort_unstable_by_key(|s| s.0);
        Ok(cut)
    }

    /// After an outage: the lines after `cursor` older than `bound_ms` are passed over. Returns
    /// the cursor before the first line at or after the bound (or `upto`) and how many lines
    /// `keep` wanted were passed over.
    pub fn skip_older(
        &mut self,
        cursor: i64,
        upto: i64,
        bound_ms: i64,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(i64, u64), StoreError> {
        // The first (lowest) id at or after the bound. Chunks come in order of their first id,
        // so once one starts past the lowest found, none after it holds a lower one.
        let mut first_new = upto.saturating_add(1);
        self.scan(cursor, upto, |id, at_ms, _, _, _, _| {
            // This line's chunk starts after `first_new`, and so does every later one.
            if id > first_new.saturating_add(MAX_SPAN) {
                return false;
            }
            if at_ms >= bound_ms && id < first_new {
                first_new = id;
            }
            true
        })?;
        let next = first_new - 1;
        let mut skipped = 0u64;
        if next > cursor {
            self.scan(cursor, next, |_, _, service, _, _, _| {
                skipped += u64::from(keep(service));
                true
            })?;
        }
        Ok((next.max(cursor), skipped))
    }
}
