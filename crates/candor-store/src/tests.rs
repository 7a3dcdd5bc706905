use super::*;
use std::time::{Duration, Instant};

fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met in 10s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn line(service: &str, at_ms: i64, text: &[u8]) -> LogLine {
    LogLine {
        id: 0,
        at_ms,
        service: service.into(),
        stream: Stream::Stdout,
        line: text.to_vec(),
        shape: Shape::PLAIN,
    }
}

fn running(service: &str) -> EventRow {
    EventRow {
        at_ms: 1,
        service: service.into(),
        state: "running".into(),
        reason: "r".into(),
        detail: "{}".into(),
    }
}

fn query(service: Option<&str>, n: usize) -> LogQuery {
    LogQuery {
        service: service.map(str::to_string),
        n,
        ..LogQuery::default()
    }
}

#[test]
fn tail_returns_last_lines_in_order_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _t) = Store::open(dir.path()).unwrap();
    for i in 0..100 {
        assert!(store
            .log(line("api", i, format!("line {i}").as_bytes()))
            .is_some());
    }
    let mut other = line("db", 5, b"other");
    other.stream = Stream::Stderr;
    store.log(other);
    store.flush();
    let got = store.tail_logs(&query(Some("api"), 3)).unwrap().lines;
    let lines: Vec<&[u8]> = got.iter().map(|l| l.line.as_slice()).collect();
    assert_eq!(lines, [&b"line 97"[..], b"line 98", b"line 99"]);
    let grep = LogQuery {
        grep: Some(regex::bytes::Regex::new(r"^line 4\d?$").unwrap()),
        ..query(Some("api"), 50)
    };
    assert_eq!(store.tail_logs(&grep).unwrap().lines.len(), 11); // 4, 40..49
    let since = LogQuery {
        since_ms: Some(90),
        ..query(Some("api"), 1000)
    };
    assert_eq!(store.tail_logs(&since).unwrap().lines.len(), 10);
    // All services interleaved by arrival; a stream filter.
    let all = store.tail_logs(&query(None, 2)).unwrap().lines;
    assert_eq!(&*all[0].service, "api");
    assert_eq!(&*all[1].service, "db");
    let err = LogQuery {
        stream: Some(Stream::Stderr),
        ..query(None, 1000)
    };
    let got = store.tail_logs(&err).unwrap().lines;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].line, b"other");
}

#[test]
fn ids_increase_and_bytes_come_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _t) = Store::open(dir.path()).unwrap();
    let raw = b"caf\xe9 \xff\xfe end".to_vec();
    let a = store.log(line("api", 1, &raw)).unwrap();
    let b = store.log(line("api", 2, b"next")).unwrap();
    assert!(b > a);
    store.flush();
    let got = store.tail_logs(&query(Some("api"), 10)).unwrap().lines;
    assert_eq!(got[0].line, raw);
    assert_eq!((got[0].id, got[1].id), (a, b));
}

#[test]
fn ids_continue_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let (store, t) = Store::open(dir.path()).unwrap();
        let id = store.log(line("api", 1, b"one")).unwrap();
        drop(store);
        t.join().unwrap();
        id
    };
    let (store, _t) = Store::open(dir.path()).unwrap();
    assert!(store.log(line("api", 2, b"two")).unwrap() > first);
}

#[test]
fn reopening_finds_the_highest_id_and_the_bytes_of_many_interleaved_services() {
    let dir = tempfile::tempdir().unwrap();
    let (last, bytes) = {
        let (store, t) = Store::open(dir.path()).unwrap();
        let mut last = 0;
        for i in 0..3000 {
            let svc = format!("s{}", (i * 7) % 13);
            let l = line(&svc, i, format!("line {i}").as_bytes());
            last = loop {
                match store.log(l.clone()) {
                    Some(id) => break id,
                    None => std::thread::sleep(Duration::from_millis(1)),
                }
            };
        }
        store.flush();
        let bytes = store.usage().log_bytes;
        drop(store);
        t.join().unwrap();
        (last, bytes)
    };
    let (store, _t) = Store::open(dir.path()).unwrap();
    assert!(store.log(line("s0", 9999, b"after")).unwrap() > last);
    store.flush();
    // The new line's bytes come on top of what was counted back from disk.
    let now = store.usage().log_bytes;
    assert!(now > bytes && now < bytes + 100, "{bytes} then {now}");
}

#[test]
fn a_service_over_its_cap_loses_its_oldest_lines_and_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut caps = Caps::default();
    caps.per_service.insert("loud".into(), 100_000);
    let (store, _t) = Store::open_with(dir.path(), caps).unwrap();
    for i in 0..50 {
        store.log(line("quiet", i, format!("quiet {i}").as_bytes()));
    }
    let text = [b'x'; 960];
    for i in 0..2000 {
        let mut l = line("loud", 100 + i, &text);
        l.line.extend_from_slice(format!(" {i}").as_bytes());
        while store.log(l.clone()).is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    store.flush();
    let loud = store
        .tail_logs(&query(Some("loud"), 100_000))
        .unwrap()
        .lines;
    let bytes: u64 = loud
        .iter()
        .map(|l| l.line.len() as u64 + ROW_OVERHEAD)
        .sum();
    assert!(bytes <= 100_000, "loud keeps {bytes} bytes");
    assert!(
        loud.len() >= 80,
        "trimmed to 90 %, in batches: {}",
        loud.len()
    );
    assert!(loud.last().unwrap().line.ends_with(b" 1999"), "newest kept");
    assert_eq!(
        store
            .tail_logs(&query(Some("quiet"), 1000))
            .unwrap()
            .lines
            .len(),
        50
    );
    assert!(store.dropped().trimmed.load(Ordering::Relaxed) > 1800);
}

#[test]
fn past_the_total_cap_the_biggest_service_gives_way() {
    let dir = tempfile::tempdir().unwrap();
    let caps = Caps {
        total: 200_000,
        ..Caps::default()
    };
    let (store, _t) = Store::open_with(dir.path(), caps).unwrap();
    for i in 0..50 {
        store.log(line("quiet", i, format!("quiet {i}").as_bytes()));
    }
    for i in 0..1000 {
        let l = line("loud", 100 + i, &[b'y'; 1000]);
        while store.log(l.clone()).is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    store.flush();
    assert!(store.usage().log_bytes <= 200_000);
    assert_eq!(
        store
            .tail_logs(&query(Some("quiet"), 1000))
            .unwrap()
            .lines
            .len(),
        50
    );
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _t) = Store::open(dir.path()).unwrap();
    let big = vec![b'z'; 16 * 1024];
    let (mut kept, mut dropped) = (0u64, 0u64);
    for i in 0..2000 {
        match store.log(line("api", i, &big)) {
            Some(_) => kept += 1,
            None => dropped += 1,
        }
    }
    assert_eq!(kept + dropped, 2000);
    assert_eq!(store.dropped().logs.load(Ordering::Relaxed), dropped);
    store.flush();
    // Up to 2000 lines of 16 KiB: more than one answer's bound, which is not what this tests.
    let all = LogQuery {
        max_bytes: usize::MAX,
        ..query(Some("api"), 10_000)
    };
    assert_eq!(store.tail_logs(&all).unwrap().lines.len() as u64, kept);
}

#[test]
fn events_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _t) = Store::open(dir.path()).unwrap();
    store.event(running("api"));
    let got = wait_for(|| {
        let v = store.recent_events(Some("api"), 10).unwrap();
        (!v.is_empty()).then_some(v)
    });
    assert_eq!(got[0].state, "running");
}

#[test]
fn a_corrupt_database_is_moved_aside_and_a_fresh_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = b"this is not a SQLite database, whatever its name says".repeat(100);
    std::fs::write(dir.path().join("candor.db"), &garbage).unwrap();
    std::fs::write(dir.path().join("candor.db-wal"), b"junk").unwrap();
    let (store, _t) = Store::open(dir.path()).unwrap();
    let what = store.recovered().expect("says what it did");
    assert!(
        what.starts_with("candor.db could not be opened ("),
        "{what}"
    );
    assert!(what.contains("moved aside to candor.db.corrupt-"), "{what}");
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("candor.db.corrupt-"))
        .collect();
    // (SQLite itself may discard a -wal it finds invalid; the database file is kept.)
    let kept = aside
        .iter()
        .find(|n| !n.ends_with("-wal"))
        .unwrap_or_else(|| panic!("the database moved aside: {aside:?}"));
    assert_eq!(
        std::fs::read(dir.path().join(kept)).unwrap(),
        garbage,
        "kept as it was"
    );
    store.event(running("api"));
    wait_for(|| (!store.recent_events(Some("api"), 10).unwrap().is_empty()).then_some(()));
}

#[test]
fn a_sound_database_is_opened_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let (store, _t) = Store::open(dir.path()).unwrap();
    assert_eq!(store.recovered(), None);
}

#[test]
fn a_failed_write_counts_its_lines_per_service_frees_the_queue_and_is_marked_later() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _t) = Store::open(dir.path()).unwrap();
    let lost: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let seen = lost.clone();
    store.on_lost(Box::new(move |svc, n| {
        *seen.lock().unwrap().entry(svc.to_string()).or_default() += n;
    }));
    store.log(line("quiet", 1, b"before"));
    store.flush();
    // Every insert fails from now on, as on a full disk.
    let other = rusqlite::Connection::open(store.path()).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER full BEFORE INSERT ON chunks BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;",
        )
        .unwrap();
    let big = vec![b'x'; 8 * 1024];
    let mut queued = 0u64;
    // Far more than the queue holds: had a failed batch kept its bytes, the queue would read
    // full after the first few and refuse the rest.
    for i in 0..(QUEUE_BYTES / big.len()) * 3 {
        if store.log(line("flood", i as i64, &big)).is_some() {
            queued += 1;
        }
        if i % 64 == 0 {
            store.flush();
        }
    }
    for i in 0..5 {
        assert!(store.log(line("quiet", 10 + i, b"lost")).is_some());
    }
    store.flush();
    assert!(store.has_room(), "the queue's bytes were released");
    assert_eq!(
        queued,
        ((QUEUE_BYTES / big.len()) * 3) as u64,
        "no line refused"
    );
    {
        let lost = lost.lock().unwrap();
        assert_eq!(lost.get("quiet"), Some(&5));
        assert_eq!(lost.get("flood"), Some(&queued));
    }
    assert_eq!(store.dropped().logs.load(Ordering::Relaxed), queued + 5);
    // Space returns: the next batch is written, and each service that lost lines is told.
    other.execute_batch("DROP TRIGGER full;").unwrap();
    store.log(line("quiet", 100, b"after"));
    store.flush();
    let got = store.tail_logs(&query(Some("quiet"), 10)).unwrap().lines;
    let lines: Vec<String> = got
        .iter()
        .map(|l| String::from_utf8_lossy(&l.line).into_owned())
        .collect();
    assert_eq!(lines[0], "before");
    assert_eq!(lines[1], "after");
    assert!(
        lines[2].starts_with("-- lost 5 lines: the log store could not write them (")
            && lines[2].contains("database or disk is full"),
        "{lines:?}"
    );
    assert_eq!(got[2].stream, Stream::Candor);
}

#[test]
fn an_answer_holds_at_most_its_byte_bound_and_pages_back_with_before() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _t) = Store::open(dir.path()).unwrap();
    // 600 lines of 16 KiB: 9.6 MB, over twice the answer's bound.
    let big = vec![b'x'; 16 << 10];
    for i in 0..600 {
        let mut l = line("api", i, &big);
        l.line.extend_from_slice(format!(" {i}").as_bytes());
        while store.log(l.clone()).is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    store.flush();
    let first = store.tail_logs(&query(Some("api"), 100_000)).unwrap();
    let held: usize = first
        .lines
        .iter()
        .map(|l| l.line.len() + LINE_OVERHEAD)
        .sum();
    assert!(held <= ANSWER_BYTES, "one answer held {held} bytes");
    assert!(first.cut, "the answer says older lines were left out");
    assert!(first.lines.len() >= 200, "{} lines", first.lines.len());
    assert!(
        first.lines.last().unwrap().line.ends_with(b" 599"),
        "the newest line is in it"
    );
    // Paging back with the first line's id gets every older line exactly once.
    let mut seen = first.lines.len();
    let mut cursor = first.lines[0].id;
    let mut pages = 1;
    loop {
        let page = store
            .tail_logs(&LogQuery {
                before: Some(cursor),
                ..query(Some("api"), 100_000)
            })
            .unwrap();
        assert!(page.lines.iter().all(|l| l.id < cursor));
        seen += page.lines.len();
        pages += 1;
        if !page.cut {
            break;
        }
        cursor = page.lines[0].id;
    }
    assert_eq!(seen, 600);
    assert!(pages >= 3, "{pages} pages");
    // A small n is not cut: the bound only matters when n lines would not fit.
    let few = store.tail_logs(&query(Some("api"), 5)).unwrap();
    assert_eq!((few.lines.len(), few.cut), (5, false));
}

/// A line as a forwarding reader handed it out: (id, at_ms, service, bytes).
type Forwarded = (i64, i64, String, Vec<u8>);

/// Every line a forwarding reader hands out, following its cursor to `upto`.
fn forward_all(
    r: &mut LineReader,
    mut cursor: i64,
    upto: i64,
    max_bytes: usize,
    keep: &dyn Fn(&str) -> bool,
) -> (Vec<Forwarded>, i64) {
    let mut out = Vec::new();
    let mut a = Ahead::default();
    loop {
        r.after(cursor, upto, max_bytes, i64::MAX / 2, keep, &mut a)
            .unwrap();
        if a.next == cursor {
            return (out, cursor);
        }
        let bytes: usize = a.lines.iter().map(|l| a.bytes(l).len()).sum();
        assert!(
            bytes <= max_bytes || a.lines.len() == 1,
            "a look holds at most its bytes"
        );
        out.extend(
            a.lines
                .iter()
                .map(|l| (l.id, l.at_ms, l.service.to_string(), a.bytes(l).to_vec())),
        );
        cursor = a.next;
    }
}

#[test]
fn a_forwarding_reader_gets_each_wanted_line_once_in_order_across_windows() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _t) = Store::open(dir.path()).unwrap();
    let mut r = store.line_reader().unwrap();
    let start = store.next_id() - 1;
    // Two services interleaved, more lines than two windows, some lines long.
    const N: i64 = 40_000;
    for i in 0..N {
        let svc = if i % 3 == 0 { "db" } else { "api" };
        let text = match i % 1000 {
            0 => vec![b'x'; 5000],
            _ => format!("{svc} {i}").into_bytes(),
        };
        assert!(store.log(line(svc, i, &text)).is_some());
        if i % 7000 == 0 {
            store.flush(); // several batches, so several chunks per service
        }
    }
    store.flush();
    let upto = store.next_id() - 1;
    let (api, end) = forward_all(&mut r, start, upto, 1 << 20, &|s| s == "api");
    assert_eq!(end, upto, "the cursor reaches the last id");
    let want: Vec<i64> = (0..N).filter(|i| i % 3 != 0).collect();
    let got: Vec<i64> = api.iter().map(|l| l.1).collect();
    assert_eq!(got, want, "every api line once, in order");
    assert!(api.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(api.iter().all(|l| l.2 == "api"));
    assert_eq!(api[1].3, b"api 2", "each line's own bytes");
    // All services, and a byte bound smaller than one long line: still one at a time (over
    // the first 3000 ids).
    let (all, _) = forward_all(&mut r, start, start + 3000, 4000, &|_| true);
    assert_eq!(all.len(), 3000);
    assert!(all.iter().enumerate().all(|(i, l)| l.1 == i as i64));
    // Nothing after the end.
    let mut a = Ahead::default();
    r.after(upto, upto, 1 << 20, i64::MAX / 2, &|_| true, &mut a)
        .unwrap();
    assert!(a.lines.is_empty() && a.next == upto);
}

#[test]
fn a_missing_id_is_waited_on_while_its_neighbours_are_young_then_passed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _t) = Store::open(dir.path()).unwrap();
    let mut r = store.line_reader().unwrap();
    let start = store.next_id() - 1;
    store.log(line("api", 1_000, b"one"));
    // An id handed out whose line never reaches the store (dropped at the queue).
    store
        .shared
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    store.log(line("api", 1_100, b"three"));
    store.flush();
    let upto = store.next_id() - 1;
    // Just after: the gap may still fill; the cursor stops before it.
    let mut a = Ahead::default();
    r.after(start, upto, 1 << 20, 1_200, &|_| true, &mut a)
        .unwrap();
    assert_eq!(a.lines.len(), 1);
    assert_eq!(a.next, start + 1);
    // Later: passed over.
    r.after(a.next, upto, 1 << 20, 5_000, &|_| true, &mut a)
        .unwrap();
    assert_eq!(a.lines.len(), 1);
    assert_eq!(a.bytes(&a.lines[0]), b"three");
    assert_eq!(a.next, upto);
}

#[test]
fn after_an_outage_lines_older_than_the_bound_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _t) = Store::open(dir.path()).unwrap();
    let mut r = store.line_reader().unwrap();
    let start = store.next_id() - 1;
    for i in 0..20_000i64 {
        let svc = if i % 2 == 0 { "api" } else { "db" };
        store.log(line(svc, i, b"x"));
        if i % 3000 == 0 {
            store.flush();
        }
    }
    store.flush();
    let upto = store.next_id() - 1;
    let keep = |s: &str| s == "api";
    let (next, skipped) = r.skip_older(start, upto, 15_000, &keep).unwrap();
    assert_eq!(skipped, 7_500, "api's lines at 0..15000");
    let (rest, _) = forward_all(&mut r, next, upto, 1 << 20, &keep);
    assert_eq!(rest.len(), 2_500);
    assert_eq!(rest[0].1, 15_000);
    // Nothing older than the bound: nothing skipped.
    assert_eq!(r.skip_older(next, upto, 0, &keep).unwrap(), (next, 0));
    // Everything older: the cursor goes to the end.
    assert_eq!(
        r.skip_older(start, upto, i64::MAX, &keep).unwrap(),
        (upto, 10_000)
    );
}
