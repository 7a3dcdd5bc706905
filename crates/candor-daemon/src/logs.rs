//! Readers of services' stdout/stderr pipes: split into lines (capped in length) and hand them
//! to the store, never waiting on it; what the store cannot take is dropped and counted.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use candor_api::unix_ms;
use candor_store::{LogLine, Store};
use tokio::io::AsyncBufReadExt;
use tokio::net::unix::pipe;

use crate::board::LogCounters;

/// Longest line kept; the rest of a longer line is cut and marked.
pub const MAX_LINE: usize = 16 * 1024;

/// Lines per second a service may log, and the burst above that (journald's spirit).
pub const RATE: f64 = 1000.0;
pub const BURST: f64 = 5000.0;

/// A token bucket: `RATE` lines a second, up to `BURST` saved.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: std::time::Instant,
}

impl Default for TokenBucket {
    fn default() -> Self {
        Self {
            tokens: BURST,
            last: std::time::Instant::now(),
        }
    }
}

impl TokenBucket {
    /// Take one token if there is one.
    pub fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * RATE).min(BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub fn spawn_readers(
    service: &str,
    stdout: OwnedFd,
    stderr: OwnedFd,
    store: Store,
    counters: Arc<LogCounters>,
) {
    for (fd, stream) in [(stdout, "stdout"), (stderr, "stderr")] {
        let (service, store, counters) = (service.to_string(), store.clone(), counters.clone());
        tokio::spawn(async move {
            match pipe::Receiver::from_owned_fd(fd) {
                Ok(rx) => read_lines(rx, &service, stream, &store, &counters).await,
                Err(e) => eprintln!("candor: {service} {stream}: cannot read pipe: {e}"),
            }
        });
    }
}

async fn read_lines(
    rx: pipe::Receiver,
    service: &str,
    stream: &'static str,
    store: &Store,
    counters: &LogCounters,
) {
    // Small buffers: there are two readers per service (1000 services: 16 MiB, not 128);
    // longer lines are still assembled up to MAX_LINE.
    let mut reader = tokio::io::BufReader::with_capacity(8 * 1024, rx);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    // A read error ends the stream like EOF: the pipe's writer side is gone either way.
    while let Ok(buf) = reader.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        let (chunk, newline) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        cut |= chunk.len() > room;
        let used = chunk.len() + usize::from(newline);
        reader.consume(used);
        if newline {
            emit(&mut line, &mut cut, service, stream, store, counters);
        }
    }
    if !line.is_empty() {
        emit(&mut line, &mut cut, service, stream, store, counters);
    }
}

fn emit(
    line: &mut Vec<u8>,
    cut: &mut bool,
    service: &str,
    stream: &'static str,
    store: &Store,
    counters: &LogCounters,
) {
    let mut text = String::from_utf8_lossy(line).into_owned();
    if *cut {
        text.push_str(" …[line cut at 16 KiB]");
    }
    line.clear();
    *cut = false;
    // Over the rate: read on and discard (the service never blocks on us), counted.
    if !counters
        .bucket
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        counters.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let ok = store.log(LogLine {
        at_ms: unix_ms(SystemTime::now()),
        service: service.to_string(),
        stream,
        line: text,
    });
    if ok {
        counters.lines.fetch_add(1, Ordering::Relaxed);
    } else {
        counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}
