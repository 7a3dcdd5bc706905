//! One log line as `candor logs` prints it: `short` (the time, stream and level, and for a
//! structured line its message and other fields instead of the JSON), `json` (the entry, one
//! object a line) or `raw` (the bytes as the service wrote them, nothing else).

use std::fmt::Write as _;

use candor_api::LogEntry;

/// How `candor logs` prints each line (`--output`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Short,
    Json,
    Raw,
}

/// ANSI colours of the levels: error and fatal red, warn yellow, debug and trace dim.
fn colour(level: &str) -> Option<&'static str> {
    match level {
        "error" | "fatal" => Some("\x1b[31m"),
        "warn" => Some("\x1b[33m"),
        "debug" | "trace" => Some("\x1b[2m"),
        _ => None,
    }
}

/// Whether to colour: stdout is a terminal and `NO_COLOR` is unset or empty.
pub fn use_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The short form, without a newline: `TIME [SERVICE] STREAM LEVEL TEXT`, the service shown
/// when lines of several are interleaved. TEXT is the line, or for a structured line with a
/// message, the message and then its other fields as `key=value` (quoted where needed).
pub fn short(l: &LogEntry, with_service: bool, coloured: bool) -> String {
    let mut out = String::with_capacity(l.line.len() + 48);
    out += &l.at;
    out.push(' ');
    if with_service {
        let _ = write!(out, "{:<12} ", l.service);
    }
    let paint = colour(&l.level).filter(|_| coloured);
    if let Some(c) = paint {
        out += c;
    }
    let level = if l.level.is_empty() { "-" } else { &l.level };
    let _ = write!(out, "{} {level:<6} ", l.stream);
    match &l.msg {
        Some(msg) => {
            out += &one_line(msg);
            for (k, v) in others(l) {
                let _ = write!(out, " {k}={}", quoted(&v));
            }
        }
        None => out += &l.line,
    }
    if paint.is_some() {
        out += "\x1b[0m";
    }
    out
}

/// A structured line's fields other than level, message and time (none if it is not one).
fn others(l: &LogEntry) -> Vec<(String, String)> {
    let format = match l.line.trim_start().starts_with('{') {
        true => candor_store::Format::Json,
        false => candor_store::Format::Logfmt,
    };
    candor_store::other_fields(format, l.line.as_bytes()).unwrap_or_default()
}

/// A message on one line: its newlines and tabs shown as `\n` and `\t`.
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    match s.contains(['\n', '\r', '\t']) {
        true => s
            .replace('\n', "\\n")
            .replace('\r', "\\r")
            .replace('\t', "\\t")
            .into(),
        false => s.into(),
    }
}

/// A field's value as logfmt writes it: bare if it can be, else in quotes with escapes.
fn quoted(v: &str) -> String {
    let bare = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control());
    match bare {
        true => v.to_string(),
        false => format!("{v:?}"),
    }
}

/// The line's bytes exactly as written (from `raw_hex` when they are not UTF-8), with its
/// newline.
pub fn raw(l: &LogEntry) -> Vec<u8> {
    let mut bytes = match &l.raw_hex {
        Some(hex) => (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect(),
        None => l.line.as_bytes().to_vec(),
    };
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(stream: &str, level: &str, line: &str, msg: Option<&str>) -> LogEntry {
        LogEntry {
            id: 1,
            at: "2026-12-07T10:00:00.000Z".into(),
            service: "api".into(),
            stream: stream.into(),
            line: line.into(),
            raw_hex: None,
            level: level.into(),
            msg: msg.map(str::to_string),
            time: None,
        }
    }

    #[test]
    fn a_structured_line_shows_its_message_then_its_other_fields() {
        let json = entry(
            "stdout",
            "error",
            r#"{"level":"error","ts":1,"msg":"disk\nfull","dev":"/dev/sda 1","n":3,"ctx":{"a":1}}"#,
            Some("disk\nfull"),
        );
        assert_eq!(
            short(&json, false, false),
            r#"2026-12-07T10:00:00.000Z stdout error  disk\nfull dev="/dev/sda 1" n=3 ctx="{\"a\":1}""#
        );
        let logfmt = entry(
            "stderr",
            "info",
            r#"level=info msg="hello there" user=ann"#,
            Some("hello there"),
        );
        assert_eq!(
            short(&logfmt, true, false),
            "2026-12-07T10:00:00.000Z api          stderr info   hello there user=ann"
        );
    }

    #[test]
    fn a_plain_line_is_shown_whole_with_its_level_and_colour_only_when_asked() {
        let plain = entry("stderr", "warn", "careful: {x}", None);
        assert_eq!(
            short(&plain, false, false),
            "2026-12-07T10:00:00.000Z stderr warn   careful: {x}"
        );
        assert_eq!(
            short(&plain, false, true),
            "2026-12-07T10:00:00.000Z \x1b[33mstderr warn   careful: {x}\x1b[0m"
        );
        let info = entry("stdout", "info", "fine", None);
        assert!(
            !short(&info, false, true).contains('\x1b'),
            "info: no colour"
        );
        let err = entry("stdout", "fatal", "x", None);
        assert!(short(&err, false, true).contains("\x1b[31m"));
        let dim = entry("stdout", "debug", "x", None);
        assert!(short(&dim, false, true).contains("\x1b[2m"));
        let old = entry("stdout", "", "from an older daemon", None);
        assert_eq!(
            short(&old, false, false),
            "2026-12-07T10:00:00.000Z stdout -      from an older daemon"
        );
    }

    #[test]
    fn raw_gives_back_the_bytes_as_written() {
        let mut odd = entry("stdout", "info", "caf\u{fffd}", None);
        odd.raw_hex = Some("636166e9".into());
        assert_eq!(raw(&odd), b"caf\xe9\n");
        let json = entry("stdout", "info", r#"{"msg":"x"}"#, Some("x"));
        assert_eq!(raw(&json), b"{\"msg\":\"x\"}\n");
    }
}
