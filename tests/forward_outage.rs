//! A forwarding target down for 30 s while a service writes a steady numbered stream (50
//! lines a second): the service is never held up (its own clock says so), `candor status`
//! answers throughout, and once the collector is back every line arrives exactly once and in
//! order (`sent` = lines written, `dropped` 0, `retried` > 0). With `catch_up = "5s"` the
//! lines older than the bound when it came back never arrive, and `sent + dropped` = written.

#[path = "forward/otlp.rs"]
mod otlp;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use candor_scenarios::*;
use serde_json::Value;

use otlp::Otlp;

const OUTAGE: Duration = Duration::from_secs(30);
/// Long enough for the target's backoff to try again and its catch-up.
const T: Duration = Duration::from_secs(90);

/// `seq=N at=MS` lines at 50 a second on its own schedule. Every second it writes
/// `N LATE` to PACE (LATE: the most, in ms, a line was written after its slot — what a write
/// held up by a full pipe would show); on SIGTERM the same to WRITTEN, then it ends.
const WRITER: &str = r#"
import os, signal, sys, time
pace, written = sys.argv[1], sys.argv[2]
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
def report(path, n, late):
    with open(path + ".tmp", "w") as f:
        f.write(f"{n} {late}")
    os.replace(path + ".tmp", path)
t0, n, late, last = time.time(), 0, 0, 0
while not stop:
    now = time.time()
    late = max(late, int((now - (t0 + n * 0.02)) * 1000))
    sys.stdout.write(f"seq={n} at={int(now * 1000)}\n")
    sys.stdout.flush()
    n += 1
    if now - last >= 1:
        report(pace, n, late)
        last = now
    time.sleep(max(0, t0 + n * 0.02 - time.time()))
report(written, n, late)
"#;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `(n, late)` from a file the writer wrote.
fn counts(path: &std::path::Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (n, late) = text.split_once(' ')?;
    Some((n.parse().ok()?, late.parse().ok()?))
}

/// `(seq, at)` of a received record's body.
fn seq_at(r: &Value) -> (u64, u64) {
    let body = r["body"].as_str().expect("a text body");
    let (seq, at) = body
        .strip_prefix("seq=")
        .and_then(|b| b.split_once(" at="))
        .unwrap_or_else(|| panic!("not a writer line: {body}"));
    (seq.parse().unwrap(), at.parse().unwrap())
}

fn stats(d: &Daemon) -> Value {
    d.info()["forward"][0].clone()
}

struct Outcome {
    written: u64,
    received: Vec<(u64, u64)>,
    stats: Value,
    /// Wall clock (ms) when the collector went down and came back.
    down_at: u64,
    up_at: u64,
}

fn run_outage(catch_up: Option<&str>) -> Option<Outcome> {
    let mut d = Daemon::unstarted("");
    let mut otlp = Otlp::start(d.dir.path())?;
    std::fs::write(d.path("writer.py"), WRITER).unwrap();
    let catch_up = catch_up.map_or(String::new(), |c| format!("catch_up = \"{c}\"\n"));
    d.write_config(&format!(
        r#"
[[daemon.forward]]
otlp = "{url}"
services = ["writer"]
{catch_up}
[service.writer]
command = ["python3", "-u", "{{dir}}/writer.py", "{{dir}}/pace", "{{dir}}/written"]
"#,
        url = otlp.url()
    ));
    d.spawn();
    wait_for("the first second of lines at the collector", T, || {
        (otlp.records().len() >= 50).then_some(())
    });

    otlp.down();
    let down_at = now_ms();
    let started = Instant::now();
    let mut seen_down = false;
    while started.elapsed() < OUTAGE {
        // The daemon answers throughout, and the writer keeps to its schedule.
        let asked = Instant::now();
        let out = d.cli(&["status"]);
        assert!(
            out.status.success(),
            "candor status during the outage: {out:?}"
        );
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "candor status took {:?}",
            asked.elapsed()
        );
        let (n, late) = counts(&d.path("pace")).expect("the writer's pace file");
        assert!(
            late < 1000,
            "the writer was held up {late} ms (at line {n})"
        );
        seen_down |= stats(&d).get("down").is_some();
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(seen_down, "the target was never shown down: {}", stats(&d));
    let behind = stats(&d)["behind"].as_u64().unwrap_or(0);
    assert!(
        behind > 0,
        "lines waiting for the target after 30 s down: {}",
        stats(&d)
    );
    otlp.up();
    let up_at = now_ms();

    // Lines written after it came back arrive; then the writer stops and says how many.
    wait_for("lines written after the collector came back", T, || {
        otlp.records()
            .iter()
            .any(|r| seq_at(r).1 > up_at + 1000)
            .then_some(())
    });
    d.ok(&["stop", "writer"]);
    let (written, late) = wait_for("the writer's count", T, || counts(&d.path("written")));
    assert!(
        late < 1000,
        "the writer was held up {late} ms at some point"
    );
    let stats = wait_for("every line sent or dropped", T, || {
        let s = stats(&d);
        let done = s["sent"].as_u64().unwrap_or(0) + s["dropped"].as_u64().unwrap_or(0) == written
            && s["behind"].as_u64() == Some(0);
        done.then_some(s)
    });
    let received: Vec<(u64, u64)> = otlp.records().iter().map(seq_at).collect();
    eprintln!(
        "after the outage: {written} lines written, {} received, target {stats}",
        received.len()
    );
    d.shutdown();
    Some(Outcome {
        written,
        received,
        stats,
        down_at,
        up_at,
    })
}

/// Each line at most once, in the order written.
fn assert_once_in_order(received: &[(u64, u64)]) {
    for pair in received.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "out of order or twice: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn an_outage_blocks_nothing_and_every_line_arrives_once_in_order_after() {
    let Some(o) = run_outage(None) else {
        return;
    };
    assert_once_in_order(&o.received);
    let seqs: Vec<u64> = o.received.iter().map(|r| r.0).collect();
    assert_eq!(
        seqs,
        (0..o.written).collect::<Vec<_>>(),
        "every line, once, in order"
    );
    assert_eq!(o.stats["sent"].as_u64(), Some(o.written), "{}", o.stats);
    assert_eq!(o.stats["dropped"].as_u64(), Some(0), "{}", o.stats);
    assert!(o.stats["retried"].as_u64() > Some(0), "{}", o.stats);
    assert!(o.stats.get("down").is_none(), "{}", o.stats);
}

#[test]
fn after_an_outage_longer_than_catch_up_the_older_lines_are_dropped_and_counted() {
    let Some(o) = run_outage(Some("5s")) else {
        return;
    };
    assert_once_in_order(&o.received);
    let sent = o.stats["sent"].as_u64().unwrap();
    let dropped = o.stats["dropped"].as_u64().unwrap();
    assert_eq!(sent, o.received.len() as u64, "{}", o.stats);
    assert_eq!(sent + dropped, o.written, "{}", o.stats);
    assert!(dropped > 0, "{}", o.stats);
    // Lines from a second into the outage until 5 s (and a second) before it ended were
    // older than the bound whenever the target came back: none arrives.
    let (from, to) = (o.down_at + 1000, o.up_at - 6000);
    let late: Vec<_> = o
        .received
        .iter()
        .filter(|r| r.1 > from && r.1 < to)
        .collect();
    assert!(
        late.is_empty(),
        "lines older than catch_up arrived: {late:?}"
    );
}

/// `seq=N` lines, 150 of them at 50 a second, then nothing more (it sleeps).
const BURST: &str = r#"
import sys, time
for n in range(150):
    print(f"seq={n} at={int(time.time() * 1000)}", flush=True)
    time.sleep(0.02)
time.sleep(100000)
"#;

/// The collector goes down after the first lines, the daemon is killed (-9) with the rest
/// stored and not sent, and the service writes nothing more: the next daemon sends the rest
/// from the target's saved cursor — without waiting for a new line — each line at least once.
#[test]
fn a_restarted_daemon_sends_what_its_target_had_not_got() {
    let mut d = Daemon::unstarted("");
    let Some(mut otlp) = Otlp::start(d.dir.path()) else {
        return;
    };
    std::fs::write(d.path("burst.py"), BURST).unwrap();
    d.write_config(&format!(
        r#"
[[daemon.forward]]
otlp = "{url}"
services = ["burst"]

[service.burst]
command = ["python3", "-u", "{{dir}}/burst.py"]
"#,
        url = otlp.url()
    ));
    d.spawn();
    wait_for("the first lines at the collector", T, || {
        (otlp.records().len() >= 10).then_some(())
    });
    otlp.down();
    wait_for("all 150 lines stored", T, || {
        let lines = d.status("burst")["logs"]["lines"].as_u64().unwrap_or(0);
        (lines >= 150).then_some(())
    });
    // The cursor is saved at most a second after it moves.
    std::thread::sleep(Duration::from_millis(1500));
    let before = otlp.records().len();
    assert!(
        before < 150,
        "the collector was down before the end: {before}"
    );
    d.kill_daemon();
    otlp.up();
    d.spawn();
    let seqs = wait_for("every line at the collector after the restart", T, || {
        let mut seqs: Vec<u64> = otlp.records().iter().map(|r| seq_at(r).0).collect();
        seqs.sort_unstable();
        seqs.dedup();
        (seqs.len() == 150).then_some(seqs)
    });
    assert_eq!(seqs, (0..150).collect::<Vec<u64>>());
    let s = stats(&d);
    assert_eq!(s["dropped"], 0, "{s}");
    d.shutdown();
}
