//! The request's exact bytes for small cases.

use super::*;
use crate::forward::record::sample;
use candor_store::{Format, Shape};

/// Length-delimited field `field` holding `inner`.
fn ld(field: u8, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![(field << 3) | 2];
    wire::put_varint(&mut v, inner.len() as u64);
    v.extend_from_slice(inner);
    v
}

fn string_kv(key: &str, value: &str) -> Vec<u8> {
    [ld(1, key.as_bytes()), ld(2, &ld(1, value.as_bytes()))].concat()
}

#[test]
fn one_line_is_one_resource_one_scope_one_record() {
    let mut rec = sample(b"hi", Stream::Stderr);
    rec.service = "api@2";
    let got = encode_logs(&[rec], "box");
    let nanos = 1_796_648_730_123u64 * 1_000_000;
    let resource = [
        ld(1, &string_kv("service.name", "api")),
        ld(1, &string_kv("service.instance.id", "api@2")),
        ld(1, &string_kv("host.name", "box")),
    ]
    .concat();
    let run_kv = [ld(1, b"candor.run_id"), ld(2, &[0x18, 7])].concat();
    let record = [
        vec![0x09],
        nanos.to_le_bytes().to_vec(),
        vec![0x10, 13],
        ld(3, b"WARN"),
        ld(5, &ld(1, b"hi")),
        ld(6, &string_kv("log.iostream", "stderr")),
        ld(6, &run_kv),
        vec![0x59],
        nanos.to_le_bytes().to_vec(),
    ]
    .concat();
    let scope_logs = [ld(1, &ld(1, b"candor")), ld(2, &record)].concat();
    let resource_logs = [ld(1, &resource), ld(2, &scope_logs)].concat();
    assert_eq!(got, ld(1, &resource_logs));
}

#[test]
fn services_are_grouped_in_order_of_first_line_and_levels_map_to_severity_numbers() {
    let mut a1 = sample(b"a1", Stream::Stdout);
    a1.service = "a";
    a1.run_id = None;
    let mut b1 = a1;
    b1.service = "b";
    b1.line = br#"{"level":"error"}"#;
    b1.shape = Shape {
        format: Format::Json,
        level: Level::Error,
    };
    let mut a2 = a1;
    a2.line = b"a2";
    a2.stream = Stream::Candor;
    let got = encode_logs(&[a1, b1, a2], "h");
    // Two ResourceLogs: a's first (with a1, a2), then b's.
    let mut a_only = encode_logs(&[a1, a2], "h");
    a_only.extend(encode_logs(&[b1], "h"));
    assert_eq!(got, a_only);
    let numbers: Vec<u64> = Level::ALL.iter().map(|&l| severity_number(l)).collect();
    assert_eq!(numbers, [0, 1, 5, 9, 10, 13, 17, 21]);
    // A candor marker line: NOTICE (INFO2), no log.iostream.
    let marker = encode_logs(&[a2], "h");
    assert!(contains(&marker, &[0x10, 10]) && contains(&marker, &ld(3, b"NOTICE")));
    assert!(!contains(&marker, b"log.iostream"));
    assert!(contains(&got, &[0x10, 17]) && contains(&got, &ld(3, b"ERROR")));
}

#[test]
fn a_body_that_is_not_utf8_is_text_with_its_bytes_beside() {
    let rec = sample(b"caf\xe9", Stream::Stdout);
    let got = encode_logs(&[rec], "h");
    assert!(contains(&got, &ld(5, &ld(1, "caf\u{fffd}".as_bytes()))));
    let kv = [ld(1, b"candor.body_bytes"), ld(2, &ld(7, b"caf\xe9"))].concat();
    assert!(contains(&got, &ld(6, &kv)));
    let fine = encode_logs(&[sample(b"cafe", Stream::Stdout)], "h");
    assert!(!contains(&fine, b"candor.body_bytes"));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
