//! What recognising structured lines costs a reader: ns per line of `level_of` on typical JSON
//! and logfmt lines, of a decided plain stream's `Sniffer::shape`, and of `fields` (the read
//! side). `cargo run --release -p candor-store --example levels`.

use std::hint::black_box;
use std::time::Instant;

use candor_store::{fields, level_of, Format, Sniffer};

const LINES: usize = 1_000_000;

fn per_line(what: &str, lines: &[Vec<u8>], mut f: impl FnMut(&[u8]) -> u8) {
    let start = Instant::now();
    let mut sink = 0u64;
    for i in 0..LINES {
        sink += u64::from(f(black_box(&lines[i % lines.len()])));
    }
    let ns = start.elapsed().as_nanos() as f64 / LINES as f64;
    let bytes = lines.iter().map(Vec::len).sum::<usize>() / lines.len();
    println!("{what:<28} {ns:>7.1} ns/line (avg {bytes} bytes; {sink})");
}

fn main() {
    let json: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            format!(
                r#"{{"level":{},"time":1733566800{i:03},"pid":4242,"hostname":"web-1","req":{{"method":"GET","url":"/api/items/{i}","id":"{i:08x}"}},"msg":"request completed","responseTime":{i}}}"#,
                [30, 40, 50][i % 3]
            )
            .into_bytes()
        })
        .collect();
    let logfmt: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            format!(
                r#"time=2026-12-07T10:00:00.{i:03}Z level={} msg="request completed" method=GET path=/api/items/{i} status=200 duration_ms={i}"#,
                ["info", "warn", "error"][i % 3]
            )
            .into_bytes()
        })
        .collect();
    let plain: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            format!("GET /api/items/{i} 200 {i} ms - request completed for web-1").into_bytes()
        })
        .collect();
    per_line("level_of json (pino)", &json, |l| {
        level_of(Format::Json, l) as u8
    });
    per_line("level_of logfmt", &logfmt, |l| {
        level_of(Format::Logfmt, l) as u8
    });
    let mut sniffer = Sniffer::default();
    per_line("Sniffer::shape, plain stream", &plain, |l| {
        sniffer.shape(l).level as u8
    });
    per_line("fields json (read side)", &json, |l| {
        fields(Format::Json, l).msg.map_or(0, |m| m.len() as u8)
    });
}
