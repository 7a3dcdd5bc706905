//! Structured lines: a stream is recognised once — its first non-empty lines (at most
//! [`SNIFF_LINES`]) are looked at until one is a JSON object or logfmt with a known field —
//! and from then on each line is read only as that format. A plain stream costs one check of
//! its first lines. A line of a structured stream that does not parse keeps `Level::Unknown`;
//! it is never dropped or changed.
//!
//! Known fields: level `level`, `lvl`, `severity`, `log.level` (also `{"log": {"level": …}}`);
//! message `msg`, `message`; time `time`, `ts`, `timestamp`, `@timestamp`. Level values (any
//! case): trace, debug, info/information, notice, warn/warning, error/err,
//! fatal/critical/crit/panic/emerg/emergency/alert; numbers 10–60 as pino and bunyan write
//! them (10 trace … 60 fatal), and 0–7 as syslog severities (0–2 fatal, 3 error, 4 warn,
//! 5 notice, 6 info, 7 debug — what GELF and journald's PRIORITY use).

mod json;
mod logfmt;

use std::borrow::Cow;

use crate::{Format, Level, Shape};

/// Lines a stream's reader looks at, at most, before it calls the stream plain.
pub const SNIFF_LINES: u8 = 16;

/// A value as written in a line.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Raw<'a> {
    /// A JSON string, quotes included, escapes as written.
    JsonStr(&'a [u8]),
    /// A logfmt quoted value, quotes included, escapes as written.
    Quoted(&'a [u8]),
    /// A JSON number, `true`, `false` or `null`; a logfmt value without quotes.
    Bare(&'a [u8]),
    /// A JSON object or array, as written.
    Nested(&'a [u8]),
    /// A logfmt key without `=`.
    Missing,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    Level,
    Msg,
    Time,
    /// `log`: ECS's `{"log": {"level": …}}`.
    Log,
}

fn known(key: &[u8]) -> Option<Known> {
    match key {
        b"level" | b"lvl" | b"severity" | b"log.level" => Some(Known::Level),
        b"msg" | b"message" => Some(Known::Msg),
        b"time" | b"ts" | b"timestamp" | b"@timestamp" => Some(Known::Time),
        b"log" => Some(Known::Log),
        _ => None,
    }
}

/// A stream's recognition: looking at its first lines, then decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sniffer {
    /// Non-empty lines looked at without a decision.
    looked: u8,
    decided: Option<Format>,
}

impl Sniffer {
    /// The shape of the stream's next line (lines before the decision are plain).
    pub fn shape(&mut self, line: &[u8]) -> Shape {
        match self.decided {
            Some(Format::Plain) => Shape::PLAIN,
            Some(format) => Shape {
                format,
                level: level_of(format, line),
            },
            None => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    return Shape::PLAIN;
                }
                match recognise(line) {
                    Some(shape) => {
                        self.decided = Some(shape.format);
                        shape
                    }
                    None => {
                        self.looked += 1;
                        if self.looked >= SNIFF_LINES {
                            self.decided = Some(Format::Plain);
                        }
                        Shape::PLAIN
                    }
                }
            }
        }
    }

    /// The format decided, if it is.
    pub fn format(&self) -> Option<Format> {
        self.decided
    }
}

/// Whether one line is structured: a JSON object, or logfmt made only of `key=value` pairs,
/// with a known field. Its shape if so.
pub fn recognise(line: &[u8]) -> Option<Shape> {
    let first = line.iter().find(|c| !c.is_ascii_whitespace())?;
    let (mut level, mut has_known, mut pairs_only) = (Level::Unknown, false, true);
    let mut see = |key: &[u8], value: Raw<'_>| {
        // Logfmt's lone words (`starting server port=80`) are how plain text reads as logfmt.
        pairs_only &= !matches!(value, Raw::Missing);
        if let Some(k) = known(key) {
            let named = level_in(k, value);
            has_known |= (k != Known::Log && !matches!(value, Raw::Missing | Raw::Bare(b"null")))
                || named != Level::Unknown;
            if level == Level::Unknown {
                level = named;
            }
        }
    };
    let format = match *first == b'{' {
        true => json::entries(line, &mut see).then_some(Format::Json)?,
        false => logfmt::entries(line, &mut see).then_some(Format::Logfmt)?,
    };
    (has_known && pairs_only).then_some(Shape { format, level })
}

/// The level of one line of a stream of `format`; `Unknown` for a plain stream, a line without
/// a level field, or one that does not parse. Cheap: one pass over the line, nothing built.
pub fn level_of(format: Format, line: &[u8]) -> Level {
    let mut level = None;
    let mut see = |key: &[u8], value: Raw<'_>| {
        if level.is_none() {
            level = known(key)
                .map(|k| level_in(k, value))
                .filter(|l| *l != Level::Unknown);
        }
    };
    let parsed = match format {
        Format::Plain => false,
        Format::Json => json::entries(line, &mut see),
        Format::Logfmt => logfmt::entries(line, &mut see),
    };
    level.filter(|_| parsed).unwrap_or_default()
}

/// What the read side shows of a structured line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub level: Level,
    pub msg: Option<String>,
    /// The line's own time field, as written (not parsed).
    pub time: Option<String>,
}

/// The level, message and time of one line of a stream of `format` (all empty for a plain
/// stream or a line that does not parse).
pub fn fields(format: Format, line: &[u8]) -> Fields {
    let mut out = Fields::default();
    let mut see = |key: &[u8], value: Raw<'_>| match known(key) {
        Some(Known::Msg) if out.msg.is_none() => out.msg = text(value).map(Cow::into_owned),
        Some(Known::Time) if out.time.is_none() => out.time = text(value).map(Cow::into_owned),
        Some(k @ (Known::Level | Known::Log)) if out.level == Level::Unknown => {
            out.level = level_in(k, value)
        }
        _ => {}
    };
    let parsed = match format {
        Format::Plain => false,
        Format::Json => json::entries(line, &mut see),
        Format::Logfmt => logfmt::entries(line, &mut see),
    };
    if parsed {
        out
    } else {
        Fields::default()
    }
}

/// The fields of a structured line other than its level, message and time, in order: key and
/// value as text (strings unquoted, JSON objects and arrays as written). `None` if the line
/// does not parse as `format`.
pub fn other_fields(format: Format, line: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut see = |key: &[u8], value: Raw<'_>| {
        if known(key).is_some_and(|k| k != Known::Log) {
            return;
        }
        let key = match format {
            Format::Json => unquote_json(&[b"\"", key, b"\""].concat()).into_owned(),
            _ => String::from_utf8_lossy(key).into_owned(),
        };
        out.push((key, text(value).unwrap_or_default().into_owned()));
    };
    let parsed = match format {
        Format::Plain => false,
        Format::Json => json::entries(line, &mut see),
        Format::Logfmt => logfmt::entries(line, &mut see),
    };
    parsed.then_some(out)
}

/// A value as text: strings unescaped, anything else as written; `None` for `null` and a
/// logfmt key without a value.
fn text(value: Raw<'_>) -> Option<Cow<'_, str>> {
    match value {
        Raw::JsonStr(s) => Some(unquote_json(s)),
        Raw::Quoted(s) => Some(unquote_logfmt(s)),
        Raw::Bare(b"null") | Raw::Missing => None,
        Raw::Bare(s) | Raw::Nested(s) => Some(String::from_utf8_lossy(s)),
    }
}

fn unquote_json(s: &[u8]) -> Cow<'_, str> {
    let inner = &s[1..s.len() - 1];
    if !inner.contains(&b'\\') {
        return String::from_utf8_lossy(inner);
    }
    match serde_json::from_slice::<String>(s) {
        Ok(t) => Cow::Owned(t),
        Err(_) => String::from_utf8_lossy(inner),
    }
}

fn unquote_logfmt(s: &[u8]) -> Cow<'_, str> {
    let inner = &s[1..s.len() - 1];
    if !inner.contains(&b'\\') {
        return String::from_utf8_lossy(inner);
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&c) = bytes.next() {
        if c != b'\\' {
            out.push(c);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(&other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The level a known field's value names, if it is a level field.
fn level_in(k: Known, value: Raw<'_>) -> Level {
    match (k, value) {
        (Known::Level, Raw::JsonStr(s) | Raw::Quoted(s)) => level_named(&s[1..s.len() - 1]),
        (Known::Level, Raw::Bare(s)) => level_named(s),
        (Known::Log, Raw::Nested(obj)) => {
            let mut level = Level::Unknown;
            json::entries(obj, |key, v| {
                if key == b"level" && level == Level::Unknown {
                    level = level_in(Known::Level, v);
                }
            });
            level
        }
        _ => Level::Unknown,
    }
}

/// A level's name (any case) or number; `Unknown` for anything else.
pub fn level_named(name: &[u8]) -> Level {
    if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
        return match name.len() {
            1 => match name[0] - b'0' {
                0..=2 => Level::Fatal,
                3 => Level::Error,
                4 => Level::Warn,
                5 => Level::Notice,
                6 => Level::Info,
                _ => Level::Debug,
            },
            2 => match name[0] - b'0' {
                1 => Level::Trace,
                2 => Level::Debug,
                3 => Level::Info,
                4 => Level::Warn,
                5 => Level::Error,
                6..=9 => Level::Fatal,
                _ => Level::Unknown,
            },
            _ => Level::Unknown,
        };
    }
    let mut buf = [0u8; 12];
    if name.len() > buf.len() {
        return Level::Unknown;
    }
    for (b, c) in buf.iter_mut().zip(name) {
        *b = c.to_ascii_lowercase();
    }
    match &buf[..name.len()] {
        b"trace" => Level::Trace,
        b"debug" => Level::Debug,
        b"info" | b"information" => Level::Info,
        b"notice" => Level::Notice,
        b"warn" | b"warning" => Level::Warn,
        b"error" | b"err" => Level::Error,
        b"fatal" | b"critical" | b"crit" | b"panic" | b"emerg" | b"emergency" | b"alert" => {
            Level::Fatal
        }
        _ => Level::Unknown,
    }
}

#[cfg(test)]
mod tests;
