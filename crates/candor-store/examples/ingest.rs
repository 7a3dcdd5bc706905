//! Store ingest benchmark: how many short log lines a second the writer commits, and whether
//! the file stays bounded by the byte caps while lines keep coming.
//!
//! `cargo run --release -p candor-store --example ingest -- LINES [TOTAL_CAP_MIB] [SERVICES]`

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use candor_store::{Caps, LogLine, Store, Stream};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .expect("numbers: LINES [TOTAL_CAP_MIB] [SERVICES]")
        })
        .collect();
    let lines = args.first().copied().unwrap_or(2_000_000);
    let cap = args.get(1).copied().unwrap_or(512) << 20;
    let services = args.get(2).copied().unwrap_or(1).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let caps = Caps {
        total: cap,
        default_service: cap,
        ..Caps::default()
    };
    let (store, _writer) = Store::open_with(dir.path(), caps).expect("open store");
    let names: Vec<std::sync::Arc<str>> = (0..services).map(|i| format!("svc{i}").into()).collect();
    let text = b"Socket accept error: Too many open files (os error 24) #";
    let start = Instant::now();
    let mut waits = 0u64;
    let mut peak_file = 0u64;
    for i in 0..lines {
        let mut line = text.to_vec();
        line.extend_from_slice(i.to_string().as_bytes());
        let l = LogLine {
            id: 0,
            at_ms: i as i64,
            service: names[(i % services) as usize].clone(),
            stream: Stream::Stdout,
            line,
            shape: candor_store::Shape::PLAIN,
        };
        // Wait for room rather than drop: this measures what the writer can commit.
        while store.log(l.clone()).is_none() {
            waits += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        if i % 1_000_000 == 999_999 {
            let u = store.usage();
            peak_file = peak_file.max(u.file_bytes + u.wal_bytes);
            println!(
                "{:>9} lines  {:>6.2} s  accounted {:>6.1} MiB  file {:>6.1} MiB  wal {:>5.1} MiB",
                i + 1,
                start.elapsed().as_secs_f64(),
                u.log_bytes as f64 / 1048576.0,
                u.file_bytes as f64 / 1048576.0,
                u.wal_bytes as f64 / 1048576.0
            );
        }
    }
    store.flush();
    let secs = start.elapsed().as_secs_f64();
    let u = store.usage();
    peak_file = peak_file.max(u.file_bytes + u.wal_bytes);
    println!(
        "{lines} lines of {} bytes, {services} service(s): {:.2} s, {:.0} lines/s committed ({waits} waits for room)",
        text.len() + 7,
        secs,
        lines as f64 / secs
    );
    println!(
        "cap {} MiB: accounted {:.1} MiB, file {:.1} MiB + wal {:.1} MiB, peak file+wal {:.1} MiB, trimmed {} lines, dropped {}",
        cap >> 20,
        u.log_bytes as f64 / 1048576.0,
        u.file_bytes as f64 / 1048576.0,
        u.wal_bytes as f64 / 1048576.0,
        peak_file as f64 / 1048576.0,
        store.dropped().trimmed.load(Ordering::Relaxed),
        store.dropped().logs.load(Ordering::Relaxed)
    );
}
