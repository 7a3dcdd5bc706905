//! Reads: the newest log lines matching a query (one service or all, by time, stream and a
//! regular expression), and the latest events. Chunks are read newest first, stopping as soon
//! as no older chunk can hold a newer match.

use std::collections::HashMap;
use std::sync::Arc;

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rusqlite::{params, Connection};

use crate::chunk::{decode, MAX_SPAN};
use crate::{sql_err, EventRow, LogLine, Store, StoreError, Stream};

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

/// Which lines `logs` wants.
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// One service, or all of them interleaved by arrival.
    pub service: Option<String>,
    /// The last `n` matching lines.
    pub n: usize,
    pub since_ms: Option<i64>,
    /// One stream; lines Candor wrote about the service (suppression markers) are always kept.
    pub stream: Option<Stream>,
    /// Matched against the line's bytes (so lines that are not UTF-8 can be searched too).
    pub grep: Option<regex::bytes::Regex>,
}

impl LogQuery {
    /// Whether a line (stored or live) is one this query wants, `since` aside.
    pub fn matches(&self, service: &str, stream: Stream, line: &[u8]) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
            && self
                .stream
                .is_none_or(|s| s == stream || stream == Stream::Candor)
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
    /// The last `q.n` lines matching `q`, oldest first (by arrival).
    pub fn tail_logs(&self, q: &LogQuery) -> Result<Vec<LogLine>, StoreError> {
        let err = sql_err(&self.path);
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let names: HashMap<i64, Arc<str>> =
            service_names(&conn).map_err(&err)?.into_iter().collect();
        let svc = match &q.service {
            Some(name) => match names.iter().find(|(_, n)| ***n == **name) {
                Some((id, _)) => Some(*id),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let sql = match svc {
            Some(_) => "SELECT id, svc, first_ms, last_ms, data FROM chunks WHERE svc = ?1 ORDER BY id DESC",
            None => "SELECT id, svc, first_ms, last_ms, data FROM chunks WHERE ?1 IS NULL ORDER BY id DESC",
        };
        let mut stmt = conn.prepare_cached(sql).map_err(&err)?;
        let mut rows = stmt.query(params![svc]).map_err(&err)?;
        // The newest `n` matches so far, smallest id on top.
        let mut best: BinaryHeap<Reverse<ById>> = BinaryHeap::new();
        while let Some(r) = rows.next().map_err(&err)? {
            let first_id: i64 = r.get(0).map_err(&err)?;
            let last_ms: i64 = r.get(3).map_err(&err)?;
            // Older chunks hold no line newer than first_id + MAX_SPAN.
            if best.len() >= q.n
                && best
                    .peek()
                    .is_none_or(|Reverse(b)| b.0.id > first_id + MAX_SPAN)
            {
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
            for (id, at_ms, stream, line) in decode(first_id, first_ms, data) {
                if q.since_ms.is_some_and(|since| at_ms < since)
                    || !q.matches(&service, stream, line)
                {
                    continue;
                }
                best.push(Reverse(ById(LogLine {
                    id,
                    at_ms,
                    service: service.clone(),
                    stream,
                    line: line.to_vec(),
                })));
                if best.len() > q.n {
                    best.pop();
                }
            }
        }
        let mut out: Vec<LogLine> = best.into_iter().map(|Reverse(b)| b.0).collect();
        out.sort_by_key(|l| l.id);
        Ok(out)
    }

    /// The last `n` events (oldest first), optionally of one service.
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
        let mut out: Vec<EventRow> = rows.collect::<Result<_, _>>().map_err(&err)?;
        out.reverse();
        Ok(out)
    }
}
