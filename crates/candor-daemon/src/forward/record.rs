//! One stored line as the forwarding encoders see it, and the level it is forwarded at.

use candor_store::{Level, Shape, Stream};

/// A line read back from the store, borrowed for one encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// When the line was read from the service's pipe, unix ms.
    pub at_ms: i64,
    /// The service (an instance's own name, `api@2`).
    pub service: &'a str,
    pub stream: Stream,
    pub shape: Shape,
    /// The line's bytes as the service wrote them, without its newline; not always UTF-8.
    pub line: &'a [u8],
    /// The run that wrote it, when known.
    pub run_id: Option<u64>,
    /// The pid of that run's main process, when known.
    pub pid: Option<u32>,
}

/// The level a line is forwarded at: `candor_store::effective_level` (a structured line's
/// own level; otherwise stderr is a warning, stdout information, Candor's markers a notice),
/// the same rule `candor logs --level` uses.
pub fn level(rec: &Record) -> Level {
    candor_store::effective_level(rec.stream, rec.shape)
}

#[cfg(test)]
pub(crate) fn sample<'a>(line: &'a [u8], stream: Stream) -> Record<'a> {
    Record {
        // 2026-12-07T13:05:30.123Z
        at_ms: 1_796_648_730_123,
        service: "web",
        stream,
        shape: Shape::PLAIN,
        line,
        run_id: Some(7),
        pid: Some(4242),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_store::Format;

    #[test]
    fn a_plain_line_takes_its_level_from_its_stream_and_a_structured_one_keeps_its_own() {
        assert_eq!(level(&sample(b"x", Stream::Stdout)), Level::Info);
        assert_eq!(level(&sample(b"x", Stream::Stderr)), Level::Warn);
        assert_eq!(level(&sample(b"x", Stream::Candor)), Level::Notice);
        let mut rec = sample(br#"{"level":"debug"}"#, Stream::Stderr);
        rec.shape = Shape {
            format: Format::Json,
            level: Level::Debug,
        };
        assert_eq!(level(&rec), Level::Debug);
        // Structured, but without a level field: the stream decides.
        rec.shape.level = Level::Unknown;
        assert_eq!(level(&rec), Level::Warn);
    }
}
