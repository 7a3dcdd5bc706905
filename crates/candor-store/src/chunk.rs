//! Log lines are stored in chunks: one row holds consecutive lines of one service from one
//! write batch, each as `id delta (u32) | time delta (i32, ms) | stream and shape (u8, see `shape.rs`) | length (u32) |
//! bytes`. A row per line costs two b-tree inserts (table and per-service index) per line and
//! tops out near 300k lines/s; a row per chunk makes ingest a memcpy.

use crate::{Shape, Stream};

const HEADER: usize = 13;
/// A chunk covers at most this many line ids (first to last): readers rely on it to know when
/// no older chunk can hold a newer line.
pub(crate) const MAX_SPAN: i64 = 8192;
/// A chunk is closed at this many bytes of data (or less: see [`ChunkBuilder::fits`]).
pub(crate) const MAX_BYTES: usize = 256 * 1024;

/// Lines of one service, being gathered into a chunk.
pub(crate) struct ChunkBuilder {
    pub first_id: i64,
    pub last_id: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub lines: i64,
    pub data: Vec<u8>,
}

impl ChunkBuilder {
    pub fn new(id: i64, at_ms: i64) -> Self {
        Self {
            first_id: id,
            last_id: id,
            first_ms: at_ms,
            last_ms: at_ms,
            lines: 0,
            data: Vec::new(),
        }
    }

    /// Whether a line fits in this chunk (span, time delta, and `max_bytes` — a small share of
    /// the service's cap, so that trimming stays fine-grained).
    pub fn fits(&self, id: i64, at_ms: i64, len: usize, max_bytes: usize) -> bool {
        let d_id = id - self.first_id;
        let d_ms = at_ms - self.first_ms;
        (0..MAX_SPAN).contains(&d_id)
            && i32::try_from(d_ms).is_ok()
            && (self.lines == 0 || self.data.len() + HEADER + len <= max_bytes)
    }

    /// Add a line; the caller checked [`fits`](Self::fits).
    pub fn push(&mut self, id: i64, at_ms: i64, stream: Stream, shape: Shape, line: &[u8]) {
        let d_id = (id - self.first_id) as u32;
        let d_ms = (at_ms - self.first_ms) as i32;
        self.data.extend_from_slice(&d_id.to_le_bytes());
        self.data.extend_from_slice(&d_ms.to_le_bytes());
        self.data.push(shape.pack(stream));
        self.data
            .extend_from_slice(&(line.len() as u32).to_le_bytes());
        self.data.extend_from_slice(line);
        self.last_id = self.last_id.max(id);
        self.last_ms = self.last_ms.max(at_ms);
        self.lines += 1;
    }
}

/// One decoded line: (id, at_ms, stream, shape, bytes).
pub(crate) type Decoded<'a> = (i64, i64, Stream, Shape, &'a [u8]);

/// The lines of a chunk, in the order they were written. A damaged tail ends the iteration.
pub(crate) fn decode(
    first_id: i64,
    first_ms: i64,
    data: &[u8],
) -> impl Iterator<Item = Decoded<'_>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < HEADER {
            return None;
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let d_id = u32_at(0) as i64;
        let d_ms = u32_at(4) as i32 as i64;
        let (stream, shape) = Shape::unpack(rest[8]);
        let len = u32_at(9) as usize;
        let line = rest.get(HEADER..HEADER + len)?;
        rest = &rest[HEADER + len..];
        Some((first_id + d_id, first_ms + d_ms, stream, shape, line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_back_as_pushed() {
        let mut c = ChunkBuilder::new(100, 5_000);
        c.push(100, 5_000, Stream::Stdout, Shape::PLAIN, b"one");
        let warn = Shape {
            format: crate::Format::Json,
            level: crate::Level::Warn,
        };
        c.push(103, 4_990, Stream::Stderr, warn, b"\xff\xfe");
        c.push(101, 5_020, Stream::Candor, Shape::PLAIN, b"");
        let got: Vec<_> = decode(c.first_id, c.first_ms, &c.data).collect();
        assert_eq!(
            got,
            [
                (100, 5_000, Stream::Stdout, Shape::PLAIN, &b"one"[..]),
                (103, 4_990, Stream::Stderr, warn, &b"\xff\xfe"[..]),
                (101, 5_020, Stream::Candor, Shape::PLAIN, &b""[..]),
            ]
        );
        assert_eq!((c.last_id, c.last_ms, c.lines), (103, 5_020, 3));
    }

    #[test]
    fn a_chunk_refuses_lines_beyond_its_span_or_size() {
        let mut c = ChunkBuilder::new(10, 0);
        assert!(c.fits(10, 0, 100, MAX_BYTES));
        assert!(!c.fits(10 + MAX_SPAN, 0, 1, MAX_BYTES));
        assert!(!c.fits(9, 0, 1, MAX_BYTES));
        // A first line bigger than a chunk is still taken alone.
        assert!(c.fits(10, 0, MAX_BYTES + 1, MAX_BYTES));
        c.push(10, 0, Stream::Stdout, Shape::PLAIN, &[b'a'; 100]);
        assert!(!c.fits(11, 0, MAX_BYTES, MAX_BYTES));
        assert!(!c.fits(11, 0, 100, 150));
    }
}
