//! Syslog messages: RFC 5424 or BSD (RFC 3164), one message a call without framing, and the
//! octet-counting frame of RFC 6587 for TCP. Pure: bytes in, bytes out.

use candor_spec::forward::SyslogFormat;
use candor_store::Level;

use super::record::{level, Record};

/// Candor's structured-data ID (32473 is the enterprise number RFC 5612 reserves for
/// documentation and examples; no number of our own is registered).
pub const SD_ID: &str = "candor@32473";

/// RFC 5424's severity of a level: fatal 2 (critical), error 3, warn 4, notice 5, info 6,
/// debug and trace 7. `Unknown` (never the result of [`level`]) is info.
pub fn severity(level: Level) -> u8 {
    match level {
        Level::Fatal => 2,
        Level::Error => 3,
        Level::Warn => 4,
        Level::Notice => 5,
        Level::Info | Level::Unknown => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// RFC 5424's limits: APP-NAME 48, HOSTNAME 255 printable ASCII characters; BSD's TAG 32.
const APP_NAME_MAX: usize = 48;
const HOSTNAME_MAX: usize = 255;
const TAG_MAX: usize = 32;

/// Appends one message for `rec` to `buf`, without framing or trailing newline.
///
/// `hostname` empty: RFC 5424's NILVALUE (`-`); in BSD format the field is left out, as
/// syslog(3) writes to a local socket. Pass "" for a Unix socket: a reader of `/dev/log`
/// (rsyslog's imuxsock by default, journald) takes the word after the timestamp as the TAG,
/// so a hostname there becomes the program's name. Such readers parse only the BSD format;
/// RFC 5424 on a Unix socket needs one that parses it there (rsyslog's imuxsock with
/// `UseSpecialParser="off"`, syslog-ng's `flags(syslog-protocol)`).
/// The line's bytes are kept as they are (invalid UTF-8 too: RFC 5424 allows any octets in
/// MSG without a BOM).
pub fn encode(
    buf: &mut Vec<u8>,
    format: SyslogFormat,
    facility: u8,
    app_name: &str,
    hostname: &str,
    rec: &Record,
) {
    let pri = u32::from(facility) * 8 + u32::from(severity(level(rec)));
    // RFC 3339 with ms, UTC (`2026-12-07T13:05:30.123Z`): RFC 5424's TIMESTAMP as it is, and
    // the fields of BSD's.
    let stamp = candor_api::timestamp_ms(candor_api::from_unix_ms(rec.at_ms));
    match format {
        SyslogFormat::Rfc5424 => {
            buf.extend_from_slice(format!("<{pri}>1 ").as_bytes());
            buf.extend_from_slice(stamp.as_bytes());
            buf.push(b' ');
            push_printable(buf, hostname, HOSTNAME_MAX, |_| true);
            buf.push(b' ');
            push_printable(buf, app_name, APP_NAME_MAX, |_| true);
            buf.push(b' ');
            match rec.pid {
                Some(pid) => buf.extend_from_slice(pid.to_string().as_bytes()),
                None => buf.push(b'-'),
            }
            buf.push(b' ');
            buf.extend_from_slice(rec.stream.as_str().as_bytes());
            buf.extend_from_slice(b" [");
            buf.extend_from_slice(SD_ID.as_bytes());
            push_param(buf, "service", rec.service);
            if let Some(run) = rec.run_id {
                push_param(buf, "run", &run.to_string());
            }
            buf.push(b']');
            if !rec.line.is_empty() {
                buf.push(b' ');
                buf.extend_from_slice(rec.line);
            }
        }
        SyslogFormat::Bsd => {
            buf.extend_from_slice(format!("<{pri}>").as_bytes());
            push_bsd_time(buf, &stamp);
            buf.push(b' ');
            if !hostname.is_empty() {
                push_printable(buf, hostname, HOSTNAME_MAX, |_| true);
                buf.push(b' ');
            }
            // A TAG ends at `[`, `:` or a space in every parser of RFC 3164.
            push_printable(buf, app_name, TAG_MAX, |b| !matches!(b, b'[' | b']' | b':'));
            if let Some(pid) = rec.pid {
                buf.extend_from_slice(format!("[{pid}]").as_bytes());
            }
            buf.extend_from_slice(b": ");
            buf.extend_from_slice(rec.line);
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// RFC 3164's TIMESTAMP from an RFC 3339 one: `Dec  7 13:05:30` (the day padded with a space;
/// no year).
fn push_bsd_time(buf: &mut Vec<u8>, rfc3339: &str) {
    let field = |r: std::ops::Range<usize>| rfc3339.get(r).unwrap_or("");
    let month: usize = field(5..7).parse().unwrap_or(1);
    buf.extend_from_slice(MONTHS[month.clamp(1, 12) - 1].as_bytes());
    buf.push(b' ');
    let day = field(8..10);
    match day.strip_prefix('0') {
        Some(one_digit) => {
            buf.push(b' ');
            buf.extend_from_slice(one_digit.as_bytes());
        }
        None => buf.extend_from_slice(day.as_bytes()),
    }
    buf.push(b' ');
    buf.extend_from_slice(field(11..19).as_bytes());
}

/// RFC 6587 octet counting: `msg` (one message from [`encode`]) prefixed with its length and a
/// space, as a TCP stream carries it. Appends to `out`.
pub fn frame(out: &mut Vec<u8>, msg: &[u8]) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

/// A header field: printable ASCII (33-126, and what `allowed` accepts) up to `max`
/// characters, anything else as `_`; empty as the NILVALUE `-`.
fn push_printable(buf: &mut Vec<u8>, s: &str, max: usize, allowed: impl Fn(u8) -> bool) {
    if s.is_empty() {
        buf.push(b'-');
        return;
    }
    for c in s.chars().take(max) {
        let b = u8::try_from(c).unwrap_or(0);
        buf.push(if (33..=126).contains(&b) && allowed(b) {
            b
        } else {
            b'_'
        });
    }
}

/// ` name="value"` with RFC 5424's escapes of `"`, `\` and `]` in the value.
fn push_param(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.push(b' ');
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"=\"");
    for &b in value.as_bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            buf.push(b'\\');
        }
        buf.push(b);
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::record::sample;
    use candor_store::{Format, Shape, Stream};

    fn one(format: SyslogFormat, app: &str, host: &str, rec: &Record) -> String {
        let mut buf = Vec::new();
        encode(&mut buf, format, 3, app, host, rec);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn rfc5424_has_every_header_field_and_candors_structured_data() {
        let rec = sample(b"hello world", Stream::Stdout);
        assert_eq!(
            one(SyslogFormat::Rfc5424, "web", "box", &rec),
            "<30>1 2026-12-07T13:05:30.123Z box web 4242 stdout \
             [candor@32473 service=\"web\" run=\"7\"] hello world"
        );
        // stderr: warning (3*8+4); no pid, run or host: NILVALUEs, no run param.
        let mut rec = sample(b"oops", Stream::Stderr);
        rec.pid = None;
        rec.run_id = None;
        assert_eq!(
            one(SyslogFormat::Rfc5424, "web", "", &rec),
            "<28>1 2026-12-07T13:05:30.123Z - web - stderr [candor@32473 service=\"web\"] oops"
        );
    }

    #[test]
    fn a_structured_lines_level_is_its_severity() {
        let mut rec = sample(br#"{"level":"error","msg":"x"}"#, Stream::Stdout);
        rec.shape = Shape {
            format: Format::Json,
            level: Level::Error,
        };
        let mut buf = Vec::new();
        encode(&mut buf, SyslogFormat::Rfc5424, 19, "web", "h", &rec);
        assert!(buf.starts_with(b"<155>1 "), "local3.err: {buf:?}");
    }

    #[test]
    fn structured_data_values_are_escaped_and_header_fields_kept_printable() {
        let mut rec = sample(b"", Stream::Stdout);
        rec.service = r#"a"b\c]d"#;
        let long_app = "x".repeat(60);
        let out = one(
            SyslogFormat::Rfc5424,
            &format!("my app{long_app}"),
            "h é",
            &rec,
        );
        assert_eq!(
            out,
            format!(
                "<30>1 2026-12-07T13:05:30.123Z h__ my_app{} 4242 stdout \
                 [candor@32473 service=\"a\\\"b\\\\c\\]d\" run=\"7\"]",
                "x".repeat(42)
            )
        );
    }

    #[test]
    fn invalid_utf8_is_kept_as_bytes() {
        let rec = sample(b"caf\xe9 \xff", Stream::Stdout);
        let mut buf = Vec::new();
        encode(&mut buf, SyslogFormat::Rfc5424, 3, "web", "h", &rec);
        assert!(buf.ends_with(b"] caf\xe9 \xff"));
        buf.clear();
        encode(&mut buf, SyslogFormat::Bsd, 3, "web", "h", &rec);
        assert!(buf.ends_with(b"web[4242]: caf\xe9 \xff"));
    }

    #[test]
    fn bsd_has_a_space_padded_day_a_tag_with_pid_and_no_host_for_a_local_socket() {
        let rec = sample(b"hello", Stream::Stderr);
        assert_eq!(
            one(SyslogFormat::Bsd, "web", "box", &rec),
            "<28>Dec  7 13:05:30 box web[4242]: hello"
        );
        let mut rec = sample(b"hello", Stream::Stdout);
        rec.pid = None;
        assert_eq!(
            one(SyslogFormat::Bsd, "a:b[c] d", "", &rec),
            "<30>Dec  7 13:05:30 a_b_c__d: hello"
        );
        let tag = one(SyslogFormat::Bsd, &"t".repeat(40), "", &rec);
        assert_eq!(
            tag,
            format!("<30>Dec  7 13:05:30 {}: hello", "t".repeat(32))
        );
    }

    #[test]
    fn bsd_times_come_from_the_rfc3339_stamp() {
        let bsd = |ms: i64| {
            let mut buf = Vec::new();
            push_bsd_time(
                &mut buf,
                &candor_api::timestamp_ms(candor_api::from_unix_ms(ms)),
            );
            String::from_utf8(buf).unwrap()
        };
        assert_eq!(bsd(1_796_648_730_123), "Dec  7 13:05:30");
        assert_eq!(bsd(978_307_199_999), "Dec 31 23:59:59");
        assert_eq!(bsd(951_782_400_000), "Feb 29 00:00:00");
    }

    #[test]
    fn severities_are_rfc5424s() {
        let sev: Vec<u8> = Level::ALL.iter().map(|&l| severity(l)).collect();
        assert_eq!(sev, [6, 7, 7, 6, 5, 4, 3, 2]);
    }

    #[test]
    fn tcp_frames_are_octet_counted() {
        let mut out = Vec::new();
        frame(&mut out, b"<30>1 x");
        frame(&mut out, "é".as_bytes());
        assert_eq!(out, b"7 <30>1 x2 \xc3\xa9");
    }
}
