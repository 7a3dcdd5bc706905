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

/// Where read lines go: the store, and followers of `logs -f` (only while there are any).
#[derive(Clone)]
pub struct LogSink {
    pub store: Store,
    pub live: tokio::sync::broadcast::Sender<candor_api::LogEntry>,
}

pub fn spawn_readers(
    service: &str,
    stdout: OwnedFd,
    stderr: OwnedFd,
    sink: LogSink,
    counters: Arc<LogCounters>,
) {
    for (fd, stream) in [(stdout, "stdout"), (stderr, "stderr")] {
        let (service, sink, counters) = (service.to_string(), sink.clone(), counters.clone());
        tokio::spawn(async move {
            match pipe::Receiver::from_owned_fd(fd) {
                Ok(rx) => read_lines(rx, &service, stream, &sink, &counters).await,
                Err(e) => eprintln!("candor: {service} {stream}: cannot read pipe: {e}"),
            }
        });
    }
}

async fn read_lines(
    rx: pipe::Receiver,
    service: &str,
    stream: &'static str,
    sink: &LogSink,
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
            emit(&mut line, &mut cut, service, stream, sink, counters);
        }
    }
    if !line.is_empty() {
        emit(&mut line, &mut cut, service, stream, sink, counters);
    }
}

fn emit(
    line: &mut Vec<u8>,
    cut: &mut bool,
    service: &str,
    stream: &'static str,
    sink: &LogSink,
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
    let at_ms = unix_ms(SystemTime::now());
    // Followers get the line only if the store took it: `logs -f` never shows a line that
    // `logs` would not.
    let live = (sink.live.receiver_count() > 0).then(|| candor_api::LogEntry {
        at: candor_api::timestamp_ms(candor_api::from_unix_ms(at_ms)),
        service: service.to_string(),
        stream: stream.into(),
        line: text.clone(),
    });
    let ok = sink.store.log(LogLine {
        at_ms,
        service: service.to_string(),
        stream,
        line: text,
    });
    if ok {
        if let Some(entry) = live {
            let _ = sink.live.send(entry);
        }
        counters.lines.fetch_add(1, Ordering::Relaxed);
    } else {
        counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}
