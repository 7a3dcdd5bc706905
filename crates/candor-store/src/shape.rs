//! The shape of a stored line: whether its stream writes structured lines (a JSON object or
//! logfmt a line) and, if so, the line's level. Kept with each line in the byte that holds
//! its stream (bits 0-1 stream, 2-3 format, 4-7 level), so lines stored before shapes
//! existed read back as plain lines of unknown level.

/// How a stream's lines are written, as recognised once per stream by its reader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    #[default]
    Plain = 0,
    Json = 1,
    Logfmt = 2,
}

/// A structured line's level, from its `level`/`lvl`/`severity` field. Ordered from the least
/// to the most severe, so `--level warn` keeps every line `>= Level::Warn`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// No level: a plain line, or a structured one without a level field.
    #[default]
    Unknown = 0,
    Trace = 1,
    Debug = 2,
    Info = 3,
    Notice = 4,
    Warn = 5,
    Error = 6,
    /// `fatal`, `critical`, `panic`, `emerg`, `alert`.
    Fatal = 7,
}

impl Level {
    pub const ALL: [Level; 8] = [
        Level::Unknown,
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Notice,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    /// The name shown and accepted by `--level`: "trace" … "fatal"; "" for `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Unknown => "",
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }

    fn from_bits(b: u8) -> Self {
        Self::ALL.get(usize::from(b)).copied().unwrap_or_default()
    }

    /// A level by the name `as_str` gives it (any case; `warning` and `err` too), for
    /// `--level` and `?level=`. Not `Unknown`: every line has an effective level.
    pub fn parse(name: &str) -> Option<Level> {
        let level = crate::recognise::level_named(name.as_bytes());
        (level != Level::Unknown && !name.bytes().all(|c| c.is_ascii_digit())).then_some(level)
    }

    /// The names `parse` accepts, for error messages.
    pub const NAMES: &'static str = "trace, debug, info, notice, warn, error, fatal";
}

/// The level a line counts as: its own (a structured line's level field), else by where it
/// came from — stderr `Warn`, stdout `Info`, a line Candor wrote about the stream (a marker)
/// `Notice`. What `--level` filters on, what the CLI and dashboard colour, and what forwarding
/// turns into a syslog severity.
pub fn effective_level(stream: crate::Stream, shape: Shape) -> Level {
    match (shape.level, stream) {
        (Level::Unknown, crate::Stream::Stdout) => Level::Info,
        (Level::Unknown, crate::Stream::Stderr) => Level::Warn,
        (Level::Unknown, crate::Stream::Candor) => Level::Notice,
        (level, _) => level,
    }
}

impl Format {
    fn from_bits(b: u8) -> Self {
        match b {
            1 => Format::Json,
            2 => Format::Logfmt,
            _ => Format::Plain,
        }
    }
}

/// What is kept of a line's structure beside its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Shape {
    pub format: Format,
    pub level: Level,
}

impl Shape {
    pub const PLAIN: Shape = Shape {
        format: Format::Plain,
        level: Level::Unknown,
    };

    /// The byte stored with a line: stream, format and level together.
    pub(crate) fn pack(self, stream: crate::Stream) -> u8 {
        (stream as u8 & 0b11) | ((self.format as u8) << 2) | ((self.level as u8) << 4)
    }

    /// The stream and shape of a stored byte.
    pub(crate) fn unpack(b: u8) -> (crate::Stream, Shape) {
        let shape = Shape {
            format: Format::from_bits((b >> 2) & 0b11),
            level: Level::from_bits(b >> 4),
        };
        (crate::Stream::from_i64(i64::from(b & 0b11)), shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stream;

    #[test]
    fn a_packed_byte_unpacks_to_what_was_packed_and_old_bytes_are_plain() {
        for stream in [Stream::Stdout, Stream::Stderr, Stream::Candor] {
            for level in Level::ALL {
                for format in [Format::Plain, Format::Json, Format::Logfmt] {
                    let shape = Shape { format, level };
                    assert_eq!(Shape::unpack(shape.pack(stream)), (stream, shape));
                }
            }
        }
        // Bytes written before shapes existed: the stream alone.
        assert_eq!(Shape::unpack(2), (Stream::Stderr, Shape::PLAIN));
    }
}
