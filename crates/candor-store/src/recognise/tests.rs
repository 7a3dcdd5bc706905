use super::*;
use crate::{effective_level, Stream};

fn shapes(lines: &[&str]) -> Vec<Shape> {
    let mut s = Sniffer::default();
    lines.iter().map(|l| s.shape(l.as_bytes())).collect()
}

const fn shape(format: Format, level: Level) -> Shape {
    Shape { format, level }
}

#[test]
fn a_json_stream_is_recognised_at_its_first_structured_line_and_read_as_json_after() {
    let got = shapes(&[
        "",
        "starting up (banner)",
        r#"{"level":"info","msg":"listening","port":80}"#,
        r#"{"level":"ERROR","msg":"boom"}"#,
        r#"{"msg":"no level"}"#,
        "a plain line in a JSON stream",
        "level=warn msg=logfmt-in-a-json-stream",
        r#"{"level":"warn","msg":"cut here"#,
    ]);
    use Format::*;
    assert_eq!(
        got,
        [
            Shape::PLAIN,
            Shape::PLAIN,
            shape(Json, Level::Info),
            shape(Json, Level::Error),
            shape(Json, Level::Unknown),
            shape(Json, Level::Unknown),
            shape(Json, Level::Unknown),
            shape(Json, Level::Unknown),
        ]
    );
}

#[test]
fn a_logfmt_stream_is_recognised_and_a_plain_one_is_given_up_on_after_sixteen_lines() {
    let got = shapes(&[
        r#"time=2026-12-07T10:00:00Z level=warning msg="disk 91% full" dev=/dev/sda1"#,
        "lvl=dbg msg=x",
        "severity=crit",
        "msg=hi",
    ]);
    use Format::*;
    assert_eq!(
        got,
        [
            shape(Logfmt, Level::Warn),
            shape(Logfmt, Level::Unknown),
            shape(Logfmt, Level::Fatal),
            shape(Logfmt, Level::Unknown),
        ]
    );
    let mut s = Sniffer::default();
    for i in 0..SNIFF_LINES {
        assert_eq!(s.format(), None, "still looking after {i} lines");
        assert_eq!(s.shape(b"Listening on time=5"), Shape::PLAIN);
        assert_eq!(s.shape(b"   "), Shape::PLAIN, "blank lines are not counted");
    }
    assert_eq!(s.format(), Some(Plain));
    assert_eq!(
        s.shape(br#"{"level":"error"}"#),
        Shape::PLAIN,
        "decided: plain"
    );
}

#[test]
fn a_line_is_structured_only_with_a_known_field() {
    for plain in [
        r#"{"port": 80}"#,
        r#"{"level": null}"#,
        "[1,2]",
        "port=80 host=a",
        "Listening on time=5",
        "error: level=3",
        "msg",
        "",
        "{not json}",
        r#"{"msg":"x"} trailing"#,
    ] {
        assert_eq!(recognise(plain.as_bytes()), None, "{plain}");
    }
    for structured in [
        r#"{"ts": 1700000000.5}"#,
        r#"  {"@timestamp":"2026-12-07T10:00:00Z"}  "#,
        r#"{"log.level":"warn"}"#,
        r#"{"log":{"level":"warn","logger":"x"}}"#,
        "msg=x",
        "ts=1",
    ] {
        assert!(recognise(structured.as_bytes()).is_some(), "{structured}");
    }
    assert_eq!(
        recognise(br#"{"log":{"level":"warn"}}"#).unwrap().level,
        Level::Warn
    );
}

#[test]
fn level_names_and_numbers_map_as_documented() {
    let table: &[(&str, Level)] = &[
        ("trace", Level::Trace),
        ("DEBUG", Level::Debug),
        ("Info", Level::Info),
        ("information", Level::Info),
        ("notice", Level::Notice),
        ("warn", Level::Warn),
        ("WARNING", Level::Warn),
        ("err", Level::Error),
        ("error", Level::Error),
        ("fatal", Level::Fatal),
        ("critical", Level::Fatal),
        ("crit", Level::Fatal),
        ("panic", Level::Fatal),
        ("emerg", Level::Fatal),
        ("alert", Level::Fatal),
        ("10", Level::Trace),
        ("20", Level::Debug),
        ("30", Level::Info),
        ("35", Level::Info),
        ("40", Level::Warn),
        ("50", Level::Error),
        ("60", Level::Fatal),
        ("0", Level::Fatal),
        ("2", Level::Fatal),
        ("3", Level::Error),
        ("4", Level::Warn),
        ("5", Level::Notice),
        ("6", Level::Info),
        ("7", Level::Debug),
        ("8", Level::Debug),
        ("100", Level::Unknown),
        ("05", Level::Unknown),
        ("verbose", Level::Unknown),
        ("", Level::Unknown),
        ("informationally", Level::Unknown),
    ];
    for (name, want) in table {
        assert_eq!(level_named(name.as_bytes()), *want, "{name}");
    }
    let json = |v: &str| level_of(Format::Json, format!(r#"{{"level":{v}}}"#).as_bytes());
    assert_eq!(json("50"), Level::Error, "a JSON number");
    assert_eq!(json(r#""50""#), Level::Error, "a number in a string");
    assert_eq!(json("true"), Level::Unknown);
    assert_eq!(json(r#"{"a":1}"#), Level::Unknown);
    assert_eq!(
        level_of(Format::Logfmt, br#"level="warn" msg=x"#),
        Level::Warn
    );
    assert_eq!(level_of(Format::Plain, b"level=error"), Level::Unknown);
    assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
    assert_eq!(Level::parse("3"), None);
    assert_eq!(Level::parse("loud"), None);
}

#[test]
fn the_first_level_field_counts() {
    assert_eq!(
        level_of(Format::Json, br#"{"severity":"debug","level":"error"}"#),
        Level::Debug
    );
    assert_eq!(
        level_of(Format::Json, br#"{"level":"bogus","lvl":"error"}"#),
        Level::Error,
        "a value that names no level is passed over"
    );
}

#[test]
fn fields_give_message_and_time_unescaped_and_the_rest_in_order() {
    let line = br#"{"time":"2026-12-07T10:00:00Z","level":"error","msg":"said \"no\"\n","code":7,"ctx":{"a":[1]},"x":null}"#;
    assert_eq!(
        fields(Format::Json, line),
        Fields {
            level: Level::Error,
            msg: Some("said \"no\"\n".into()),
            time: Some("2026-12-07T10:00:00Z".into()),
        }
    );
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        other_fields(Format::Json, line).unwrap(),
        [
            pair("code", "7"),
            pair("ctx", r#"{"a":[1]}"#),
            pair("x", "")
        ]
    );
    let lf = br#"ts=1700000000 lvl=info message="a \"b\"" user=ann retry"#;
    assert_eq!(
        fields(Format::Logfmt, lf),
        Fields {
            level: Level::Info,
            msg: Some("a \"b\"".into()),
            time: Some("1700000000".into()),
        }
    );
    assert_eq!(
        other_fields(Format::Logfmt, lf).unwrap(),
        [pair("user", "ann"), pair("retry", "")]
    );
    let ts = fields(Format::Json, br#"{"ts":1700000000.25,"message":{"k":1}}"#);
    assert_eq!(ts.time.as_deref(), Some("1700000000.25"));
    assert_eq!(ts.msg.as_deref(), Some(r#"{"k":1}"#));
    assert_eq!(fields(Format::Json, b"not json"), Fields::default());
    assert_eq!(other_fields(Format::Json, b"not json"), None);
    assert_eq!(fields(Format::Plain, b"msg=x"), Fields::default());
}

#[test]
fn the_effective_level_falls_back_on_the_stream() {
    let plain = Shape::PLAIN;
    assert_eq!(effective_level(Stream::Stdout, plain), Level::Info);
    assert_eq!(effective_level(Stream::Stderr, plain), Level::Warn);
    assert_eq!(effective_level(Stream::Candor, plain), Level::Notice);
    let json = |level| Shape {
        format: Format::Json,
        level,
    };
    assert_eq!(
        effective_level(Stream::Stderr, json(Level::Debug)),
        Level::Debug
    );
    assert_eq!(
        effective_level(Stream::Stdout, json(Level::Unknown)),
        Level::Info,
        "a structured line without a level counts as its stream's"
    );
}
