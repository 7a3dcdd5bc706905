//! Reads: the newest log lines matching a query (one service or all, by time, stream and a
//! regular expression), and the latest events. Chunks are read newest first, stopping as soon
//! as no older chunk can hold a newer match.

use std::collections::HashMap;
use std::sync::Arc;

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rusqlite::{params, Connection};

use crate::chunk::{decode, MAX_SPAN};
use crate::{effective_level, sql_err, EventRow, Level, LogLine, Shape, Store, StoreError, Stream};

/// A line ordered by its id alone.
struct ById(LogLine);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}
impl Eq for ById {}
impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ById {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

/// Line times may step back a little between the two readers of one service (ids are taken
/// after the time is read): a `since` scan goes this much past the first older line.
const SINCE_SLACK_MS: i64 = 5_000;

/// What one answer to a log query holds at most, in line bytes (each line also counts
/// [`LINE_OVERHEAD`]): 4 MiB, so `n = 100000` of 16 KiB lines cannot take 1.6 GB. Older lines
/// are paged with `before`.
pub const ANSWER_BYTES: usize = 4 << 20;

/// What a line held in an answer costs beyond its bytes (its id, time, stream, name).
pub const LINE_OVERHEAD: usize = 64;

/// Which lines `logs` wants.
#[derive(Clone, Debug)]
pub struct LogQuery {
    /// One service, or all of them interleaved by arrival.
    pub service: Option<String>,
    /// `service` names a replicated service: its instances' lines (`api@1`, `api@2`, …).
    pub group: bool,
    /// The last `n` matching lines.
    pub n: usize,
    pub since_ms: Option<i64>,
    /// One stream; lines Candor wrote about the service (suppression markers) are always kept.
    pub stream: Option<Stream>,
    /// Matched against the line's bytes (so lines that are not UTF-8 can be searched too).
    pub grep: Option<regex::bytes::Regex>,
    /// Only lines older than this id (the cursor of the next page back).
    pub before: Option<i64>,
    /// Only lines whose effective level (see [`effective_level`]) is at least this.
    pub level: Option<Level>,
    /// At most this many bytes of lines in the answer (see [`ANSWER_BYTES`]).
    pub max_bytes: usize,
}

impl Default for LogQuery {
    fn default() -> Self {
        LogQuery {
            service: None,
            group: false,
            n: 100,
            since_ms: None,
            stream: None,
            grep: None,
            before: None,
            level: None,
            max_bytes: ANSWER_BYTES,
        }
    }
}

/// An answer to a [`LogQuery`].
#[derive(Debug, Default)]
pub struct Tail {
    /// Oldest first (by arrival).
    pub lines: Vec<LogLine>,
    /// Fewer than `n` lines because of `max_bytes`: older matching lines were left out; ask
    /// again with `before` = the first line's id.
    pub cut: bool,
}

impl LogQuery {
    /// Whether a line (stored or live) is one this query wants, `since` aside.
    pub fn matches(&self, service: &str, stream: Stream, shape: Shape, line: &[u8]) -> bool {
        self.service.as_deref().is_none_or(|s| {
            s == service
                || (self.group
                    && service
                        .strip_prefix(s)
                        .is_some_and(|rest| rest.starts_with('@')))
        }) && self
            .stream
            .is_none_or(|s| s == stream || stream == Stream::Candor)
            && self
                .level
                .is_none_or(|min| effective_level(stream, shape) >= min)
            && self.grep.as_ref().is_none_or(|re| re.is_match(line))
    }
}

/// Every service that has (had) lines, by its id in `chunks`.
pub(crate) fn service_names(conn: &Connection) -> rusqlite::Result<Vec<(i64, Arc<str>)>> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM services")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?.into()))
    })?;
    rows.collect()
}

impl Store {
    /// The last `q.n` lines matching `q`, oldest first (by arrival), holding at most
    /// `q.max_bytes` (the oldest are left out first, and the answer says so).
    pub fn tail_logs(&self, q: &LogQuery) -> Result<Tail, StoreError> {
        let err = sql_err(&self.path);
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let names: HashMap<i64, Arc<str>> =
            service_names(&conn).map_err(&err)?.into_iter().collect();
        let svc = match &q.service {
            // A group's instances: every chunk is read, `matches` keeps theirs.
            Some(_) if q.group => None,
            Some(name) => match names.iter().find(|(_, n)| ***n == **name) {
                Some((id, _)) => Some(*id),
                None => return Ok(Tail::default()),
            },
            None => None,
        };
        let before = q.before.unwrap_or(i64::MAX);
        let sql = match svc {
            Some(_) => "SELECT id, svc, first_ms, last_ms, data FROM chunks WHERE svc = ?1 AND id < ?2 ORDER BY id DESC",
            None => "SELECT id, svc, first_ms, last_ms, data FROM chunks WHERE ?1 IS NULL AND id < ?2 ORDER BY id DESC",
        };
        let mut stmt = conn.prepare_cached(sql).map_err(&err)?;
        let mut rows = stmt.query(params![svc, before]).map_err(&err)?;
        let cost = |l: &LogLine| l.line.len() + LINE_OVERHEAD;
        // The newest `n` matches so far within the byte bound, smallest id on top.
        let mut best: BinaryHeap<Reverse<ById>> = BinaryHeap::new();
        let mut bytes = 0usize;
        // A match was let go, or older chunks were not read, because of the byte bound.
        let mut left_out = false;
        while let Some(r) = rows.next().map_err(&err)? {
            let first_id: i64 = r.get(0).map_err(&err)?;
            let last_ms: i64 = r.get(3).map_err(&err)?;
            // Older chunks hold no line newer than first_id + MAX_SPAN.
            let full = best.len() >= q.n || bytes >= q.max_bytes;
            if full
                && best
                    .peek()
                    .is_none_or(|Reverse(b)| b.0.id > first_id + MAX_SPAN)
            {
                left_out |= bytes >= q.max_bytes;
                break;
            }
            if q.since_ms
                .is_some_and(|since| last_ms < since - SINCE_SLACK_MS)
            {
                break;
            }
            let service = names
                .get(&r.get::<_, i64>(1).map_err(&err)?)
                .cloned()
                .unwrap_or_else(|| "?".into());
            let first_ms: i64 = r.get(2).map_err(&err)?;
            let data = r
                .get_ref(4)
                .map_err(&err)?
                .as_blob()
                .map_err(|e| err(e.into()))?;
            for (id, at_ms, stream, shape, line) in decode(first_id, first_ms, data) {
                if id >= before
                    || q.since_ms.is_some_and(|since| at_ms < since)
                    || !q.matches(&service, stream, shape, line)
                {
                    continue;
                }
                // Older than every line kept, with no room left: not wanted.
                let room = best.len() < q.n && bytes + line.len() + LINE_OVERHEAD <= q.max_bytes;
                if !room && best.peek().is_some_and(|Reverse(b)| b.0.id > id) {
                    left_out |= best.len() < q.n;
                    continue;
                }
                let l = LogLine {
                    id,
                    at_ms,
                    service: service.clone(),
                    stream,
                    line: line.to_vec(),
                    shape,
                };
                bytes += cost(&l);
                best.push(Reverse(ById(l)));
                while best.len() > q.n || (bytes > q.max_bytes && best.len() > 1) {
                    let over_bytes = best.len() <= q.n;
                    if let Some(Reverse(gone)) = best.pop() {
                        bytes -= cost(&gone.0);
                        left_out |= over_bytes;
                    }
                }
            }
        }
        let mut lines: Vec<LogLine> = best.into_iter().map(|Reverse(b)| b.0).collect();
        lines.sort_by_key(|l| l.id);
        let cut = left_out && lines.len() < q.n;
        Ok(Tail { lines, cut })
    }

    /// The last `n` events (oldest first), optionally of one service, at most
    /// [`ANSWER_BYTES`] of them.
    pub fn recent_events(
        &self,
        service: Option<&str>,
        n: usize,
    ) -> Result<Vec<EventRow>, StoreError> {
        let err = sql_err(&self.path);
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn
            .prepare_cached(
                "SELECT at_ms, service, state, reason, detail FROM events
                 WHERE (?1 IS NULL OR service = ?1) ORDER BY id DESC LIMIT ?2",
            )
            .map_err(&err)?;
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
            .map_err(&err)?;
        // Newest first, within the same byte bound as a log answer.
        let mut out = Vec::new();
        let mut bytes = 0;
        for row in rows {
            let row = row.map_err(&err)?;
            bytes += row.reason.len() + row.detail.len() + row.service.len() + LINE_OVERHEAD;
            if bytes > ANSWER_BYTES && !out.is_empty() {
                break;
            }
            out.push(row);
        }
        out.reverse();
        Ok(out)
    }
}
