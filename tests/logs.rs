//! Logs at scale: floods cannot fill the disk or the daemon's memory, every lost line is
//! counted and marked, and what is kept reads back as written (seeds 000, 002; DESIGN.md F1,
//! F8).

use std::time::{Duration, Instant};

use candor_scenarios::{candor_bin, wait_for, Daemon};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn lines(d: &Daemon, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["logs", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&d.ok(&all)).expect("logs --json is a JSON array")
}

fn texts(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|l| l["line"].as_str().unwrap().to_string())
        .collect()
}

fn rss_bytes(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4096
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_flood_is_capped_in_memory_and_on_disk_and_a_quiet_neighbour_keeps_every_line() {
    // Daemon-wide cap 3 MiB; the flooder may keep 1 MiB at 2000 lines/s (40 000 in 20 s).
    let d = Daemon::start(
        r#"logs = { max_bytes = "3MiB" }

[service.flood]
command = ["{zoo}", "log-flood", "--lines-per-sec", "0"]
logs = { rate = 2000, burst = 2000, max_bytes = "1MiB" }

[service.good]
command = ["sh", "-c", "i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo \"good $i\"; sleep 0.05; done; exec sleep 1000"]
"#,
    );
    d.wait_state("flood", "running", T);
    let state_dir = std::path::PathBuf::from(d.info()["state_dir"].as_str().unwrap().to_string());
    let (pid, start) = (d.daemon_pid(), Instant::now());
    let (mut peak_rss, mut peak_disk) = (0, 0);
    while start.elapsed() < Duration::from_secs(20) {
        peak_rss = peak_rss.max(rss_bytes(pid));
        peak_disk = peak_disk.max(dir_bytes(&state_dir));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(peak_rss < 64 << 20, "daemon RSS peaked at {peak_rss} bytes");
    // The cap, plus the write-ahead log (1 MiB before it is checkpointed) and slack.
    assert!(
        peak_disk < (3 << 20) + (2 << 20),
        "state dir peaked at {peak_disk} bytes"
    );
    let flood = d.status("flood");
    assert!(flood["logs"]["dropped"].as_u64().unwrap() > 0, "{flood}");
    let info = d.info();
    assert!(
        info["store"]["trimmed_lines"].as_u64().unwrap() > 0,
        "{info}"
    );
    assert!(
        info["store"]["log_bytes"].as_u64().unwrap() <= 3 << 20,
        "{info}"
    );
    // Every gap is marked: `-- suppressed N lines in X s --`, on the `candor` stream.
    let markers = lines(
        &d,
        &[
            "flood",
            "-n",
            "100000",
            "--grep",
            r"^-- suppressed \d+ lines in \d+\.\d s --$",
        ],
    );
    assert!(!markers.is_empty(), "no suppression marker");
    assert!(markers.iter().all(|m| m["stream"] == "candor"));
    // The well-behaved service lost nothing.
    let good = texts(&lines(&d, &["good", "-n", "1000", "--stream", "out"]));
    let want: Vec<String> = (1..=200).map(|i| format!("good {i}")).collect();
    assert_eq!(good, want);
    assert_eq!(d.status("good")["logs"]["dropped"], 0);
}

#[test]
fn identical_lines_fold_into_one_and_a_count() {
    let d = Daemon::start(
        r#"
[service.spin]
command = ["sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo 'accept error: Too many open files'; i=$((i+1)); done; echo recovered; exec sleep 1000"]
"#,
    );
    let got = wait_for("the folded lines", T, || {
        let t = texts(&lines(&d, &["spin"]));
        t.iter().any(|l| l == "recovered").then_some(t)
    });
    // The line once, then its count (in one marker, or more if the shell stalled for over a
    // second mid-loop), then the next line.
    assert_eq!(got.first().unwrap(), "accept error: Too many open files");
    assert_eq!(got.last().unwrap(), "recovered");
    let counted: u64 = got[1..got.len() - 1]
        .iter()
        .map(|m| {
            m.strip_prefix("-- previous line repeated ")
                .and_then(|r| r.strip_suffix(" times --"))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("not a fold marker: {m}"))
        })
        .sum();
    assert_eq!(counted, 2999, "{got:?}");
    let logs = &d.status("spin")["logs"];
    assert_eq!(
        (logs["folded"].as_u64(), logs["dropped"].as_u64()),
        (Some(2999), Some(0))
    );
}

#[test]
fn a_one_mib_line_is_split_into_marked_pieces_that_add_up() {
    let d = Daemon::start(
        r#"
[service.long]
command = ["sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x; echo; echo after; exec sleep 1000"]
"#,
    );
    let got = wait_for("the long line and the next", T, || {
        let t = texts(&lines(&d, &["long", "-n", "1000"]));
        t.last().is_some_and(|l| l == "after").then_some(t)
    });
    let pieces = &got[..got.len() - 1];
    assert_eq!(pieces.len(), 64, "16 KiB pieces");
    let mut whole = String::new();
    for (i, p) in pieces.iter().enumerate() {
        let body = match i + 1 == pieces.len() {
            true => p.as_str(),
            false => p
                .strip_suffix(" …[line continues]")
                .unwrap_or_else(|| panic!("piece {i} is not marked")),
        };
        assert!(body.len() <= 16 * 1024);
        whole += body;
    }
    assert_eq!(whole.len(), 1 << 20);
    assert!(whole.bytes().all(|b| b == b'x'));
}

#[test]
fn bytes_that_are_not_utf8_survive_and_a_partial_last_line_is_kept() {
    let d = Daemon::start(
        r#"
[service.odd]
command = ["sh", "-c", "printf 'caf\\351 \\377\\376 end\\n'; printf 'no newline at the end'"]
restart = "never"
"#,
    );
    d.wait_state("odd", "exited", T);
    let got = wait_for("both lines", T, || {
        let v = lines(&d, &["odd"]);
        (v.len() == 2).then_some(v)
    });
    assert_eq!(got[0]["line"], "caf\u{fffd} \u{fffd}\u{fffd} end");
    assert_eq!(got[0]["raw_hex"], "636166e920fffe20656e64");
    assert_eq!(got[1]["line"], "no newline at the end");
    assert!(got[1].get("raw_hex").is_none());
    // The plain listing shows the text (lossy) without failing.
    assert!(d.ok(&["logs", "odd"]).contains("caf\u{fffd}"));
}

#[test]
fn since_grep_stream_and_all_services_filter_as_asked() {
    let d = Daemon::start(
        r#"
[service.a]
command = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo \"tick $i\"; echo \"warn $i\" >&2; sleep 0.05; done"]

[service.b]
command = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo \"beat $i\"; sleep 0.05; done"]
"#,
    );
    wait_for("some lines", T, || {
        (lines(&d, &["a"]).len() >= 20).then_some(())
    });
    // A UTC time between two lines: everything listed since is newer.
    let cut = lines(&d, &["a", "-n", "1"])[0]["at"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("newer lines", T, || {
        let v = lines(&d, &["a", "--since", &cut]);
        (v.len() >= 10).then_some(())
    });
    let since = lines(&d, &["a", "--since", &cut]);
    assert!(since
        .iter()
        .all(|l| l["at"].as_str().unwrap() >= cut.as_str()));
    assert!(since.len() < lines(&d, &["a", "-n", "100000"]).len());
    // A duration back from now.
    let recent = lines(&d, &["a", "--since", "1s", "--stream", "err"]);
    assert!(!recent.is_empty() && recent.len() < 40, "{}", recent.len());
    assert!(recent.iter().all(|l| l["stream"] == "stderr"));
    // A regular expression.
    let fives = texts(&lines(&d, &["a", "-n", "1000", "--grep", r"^tick \d*5$"]));
    assert!(!fives.is_empty());
    assert!(
        fives
            .iter()
            .all(|l| l.starts_with("tick ") && l.ends_with('5')),
        "{fives:?}"
    );
    let bad = d.cli(&["logs", "a", "--grep", "(unclosed"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("regular expression"));
    // No name: both services, interleaved in arrival order, with a name column.
    let all = lines(&d, &["-n", "200"]);
    let names: std::collections::BTreeSet<&str> =
        all.iter().map(|l| l["service"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b"].into());
    assert!(all
        .windows(2)
        .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()));
    let plain = d.ok(&["logs", "-n", "5"]);
    assert!(
        plain.lines().all(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|n| n == "a" || n == "b")),
        "{plain}"
    );
}

#[test]
fn a_reload_changes_log_limits_without_a_restart() {
    let mut d = Daemon::start(
        r#"
[service.chatty]
command = ["{zoo}", "log-flood", "--lines-per-sec", "400"]
logs = { rate = 100, burst = 100 }
"#,
    );
    d.wait_state("chatty", "running", T);
    let pid = d.status("chatty")["pid"].clone();
    wait_for("drops at 100 lines/s", T, || {
        (d.status("chatty")["logs"]["dropped"].as_u64()? > 0).then_some(())
    });
    d.write_config(
        r#"
[service.chatty]
command = ["{zoo}", "log-flood", "--lines-per-sec", "400"]
logs = { rate = 0 }
"#,
    );
    let out: Value = serde_json::from_str(&d.ok(&["reload", "--json"])).unwrap();
    assert_eq!(out["changed"], serde_json::json!(["chatty"]), "{out}");
    assert_eq!(d.status("chatty")["pid"], pid, "not restarted");
    let before = d.status("chatty")["logs"]["dropped"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let kept = d.status("chatty")["logs"]["lines"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let after = d.status("chatty")["logs"].clone();
    assert_eq!(
        after["dropped"].as_u64().unwrap(),
        before,
        "no limit any more"
    );
    assert!(after["lines"].as_u64().unwrap() > kept + 400);
    d.shutdown();
}

#[test]
fn a_reader_that_stops_early_ends_the_cli_quietly() {
    let d = Daemon::start(
        r#"
[service.chatty]
command = ["{zoo}", "log-flood", "--lines-per-sec", "0", "--for", "200ms"]
logs = { rate = 0 }
"#,
    );
    wait_for("lines to read", T, || {
        let out = d.ok(&["logs", "chatty", "-n", "5000"]);
        (out.lines().count() >= 5000).then_some(())
    });
    // Like `candor logs chatty -n 5000 | head -1`: the reader goes away after one line.
    let mut child = std::process::Command::new(candor_bin())
        .args(["logs", "chatty", "-n", "5000"])
        .env("CANDOR_SOCKET", &d.socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    drop(out);
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        done.status.success() || done.status.signal() == Some(libc::SIGPIPE),
        "{:?}",
        done.status
    );
}

#[test]
fn a_full_disk_loses_lines_counted_per_service_marks_them_and_harms_nothing_else() {
    let d = Daemon::unstarted(
        r#"
[service.flood]
command = ["{zoo}", "log-flood", "--lines-per-sec", "0"]
logs = { rate = 0 }

[service.quiet]
command = ["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo \"quiet $i\"; sleep 0.02; done"]
"#,
    );
    let state = d.path("state");
    let Some(_disk) = candor_scenarios::small_disk(&state, "8m") else {
        return;
    };
    // Room for the database to start; the flood takes the rest.
    let ballast = state.join("ballast");
    std::fs::write(&ballast, vec![0u8; 2 << 20]).unwrap();
    let mut d = d;
    d.spawn();
    let quiet_pid = d.wait_state("quiet", "running", T)["pid"].clone();
    // The disk fills: the quiet service loses lines too, and they are counted as its own.
    wait_for("the quiet service's lines counted as dropped", T, || {
        (d.status("quiet")["logs"]["dropped"].as_u64()? > 0).then_some(())
    });
    // Meanwhile the daemon answers and the services run on.
    assert_eq!(d.status("quiet")["state"], "running");
    assert_eq!(d.status("quiet")["pid"], quiet_pid);
    assert_eq!(d.status("flood")["state"], "running");
    d.ok(&["stop", "flood", "--wait"]);
    // Space returns.
    std::fs::remove_file(&ballast).unwrap();
    let marker = wait_for("a marker for the lost lines", T, || {
        texts(&lines(&d, &["quiet", "-n", "100000"]))
            .into_iter()
            .find(|l| l.starts_with("-- lost ") || l.contains("the log store fell behind"))
    });
    assert!(marker.contains("lines"), "{marker}");
    // Its lines are stored again after the marker; once it is stopped, every line it wrote is
    // either stored or counted.
    wait_for("quiet lines stored after the marker", T, || {
        let got = texts(&lines(&d, &["quiet", "-n", "100000"]));
        let at = got.iter().position(|l| *l == marker)?;
        got[at..]
            .iter()
            .any(|l| l.starts_with("quiet "))
            .then_some(())
    });
    d.ok(&["stop", "quiet", "--wait"]);
    let stored = texts(&lines(&d, &["quiet", "-n", "100000"]));
    let numbers: Vec<u64> = stored
        .iter()
        .filter_map(|l| l.strip_prefix("quiet ")?.parse().ok())
        .collect();
    let last = *numbers.iter().max().unwrap();
    let missing = last - numbers.len() as u64;
    assert!(missing > 0, "the full disk cost the quiet service nothing?");
    let dropped = d.status("quiet")["logs"]["dropped"].as_u64().unwrap();
    assert_eq!(
        dropped, missing,
        "every lost line is in the quiet service's own counter"
    );
}

/// Services writing JSON lines, logfmt lines and plain lines, each from a script in the test's
/// dir (started once the scripts are there).
fn structured_daemon() -> Daemon {
    let mut d = Daemon::unstarted(
        r#"
[service.js]
command = ["sh", "{dir}/js.sh"]

[service.lf]
command = ["sh", "{dir}/lf.sh"]

[service.plain]
command = ["sh", "{dir}/plain.sh"]

[service.late]
command = ["sh", "{dir}/late.sh"]

[service.rep]
command = ["sh", "{dir}/rep.sh"]
"#,
    );
    let scripts = [
        ("js.sh", format!("cat <<'EOF'\n{JS}EOF\nexec sleep 1000\n")),
        (
            "lf.sh",
            format!("cat >&2 <<'EOF'\n{LF}EOF\nexec sleep 1000\n"),
        ),
        (
            "plain.sh",
            "echo 'plain out'; echo 'plain err' >&2; printf 'caf\\351\\n'; exec sleep 1000\n"
                .to_string(),
        ),
        (
            "rep.sh",
            "for i in 1 2 3; do echo '{\"level\":\"error\",\"msg\":\"again\"}'; done\n\
             echo '{\"level\":\"info\",\"msg\":\"over\"}'\n\
             exec sleep 1000\n"
                .to_string(),
        ),
        (
            "late.sh",
            d.fill(
                "echo '{\"level\":\"error\",\"msg\":\"early\"}'\n\
                 while [ ! -e {dir}/go ]; do sleep 0.05; done\n\
                 echo '{\"level\":\"info\",\"msg\":\"late info\"}'\n\
                 echo '{\"level\":\"error\",\"msg\":\"late error\"}'\n\
                 echo 'late plain'\n\
                 echo '{\"level\":\"fatal\",\"msg\":\"the end\"}'\n\
                 exec sleep 1000\n",
            ),
        ),
    ];
    for (name, text) in scripts {
        std::fs::write(d.path(name), text).unwrap();
    }
    d.spawn();
    d
}

const JS: &str = r#"starting (a banner before the JSON)
{"level":"debug","msg":"cache warm","n":1}
{"level":"info","msg":"listening","port":8080}
{"time":"2026-12-07T10:00:00Z","level":"warn","msg":"slow request","ms":900}
{"level":50,"msg":"db down","err":"timeout"}
{"level":"fatal","msg":"giving up"}
not json in a json stream
{"msg":"no level"}
"#;

const LF: &str = r#"level=info msg="cache warm" n=1
level=warning msg="disk 91% full" dev=sda
lvl=error msg="write failed"
level=debug msg=noise
a plain line in a logfmt stream
"#;

#[test]
fn levels_of_json_logfmt_and_plain_lines_filter_and_print_as_asked() {
    let d = structured_daemon();
    let want_lines = JS.lines().count() + LF.lines().count() + 3 + 1 + 3;
    wait_for("every service's first lines", T, || {
        let v = lines(&d, &["-n", "1000"]);
        (v.len() >= want_lines).then_some(())
    });
    // Own levels count; a plain line's is its stream's: stderr warn, stdout info.
    let warn = lines(&d, &["-n", "1000", "--level", "warn"]);
    let got: std::collections::BTreeSet<(String, String)> = warn
        .iter()
        .map(|l| {
            let show = l["msg"].as_str().or(l["line"].as_str()).unwrap();
            (l["service"].as_str().unwrap().to_string(), show.to_string())
        })
        .collect();
    let want: std::collections::BTreeSet<(String, String)> = [
        ("js", "slow request"),
        ("js", "db down"),
        ("js", "giving up"),
        ("lf", "disk 91% full"),
        ("lf", "write failed"),
        ("lf", "a plain line in a logfmt stream"),
        ("plain", "plain err"),
        ("late", "early"),
        ("rep", "again"),
        ("rep", "-- previous line repeated 2 times --"),
    ]
    .iter()
    .map(|(s, m)| (s.to_string(), m.to_string()))
    .collect();
    assert_eq!(got, want, "{warn:#?}");
    assert_eq!(warn.len(), want.len(), "{warn:#?}");
    let levels: Vec<&str> = warn.iter().map(|l| l["level"].as_str().unwrap()).collect();
    assert!(
        levels
            .iter()
            .all(|l| ["warn", "error", "fatal"].contains(l)),
        "{levels:?}"
    );
    // A fold marker counts at the level of the line it repeats.
    let again = texts(&lines(&d, &["rep", "--level", "error"]));
    assert_eq!(
        again,
        [
            r#"{"level":"error","msg":"again"}"#,
            "-- previous line repeated 2 times --"
        ]
    );
    let js = lines(&d, &["js", "--level", "error"]);
    assert_eq!(
        js.iter()
            .map(|l| l["level"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["error", "fatal"]
    );
    let slow = &lines(&d, &["js", "--grep", "slow"])[0];
    assert_eq!(slow["time"], "2026-12-07T10:00:00Z");
    assert_eq!(slow["msg"], "slow request");
    // A level the daemon does not know is refused, naming the ones it does.
    let bad = d
        .raw(&candor_scenarios::get_request("/v1/logs?level=loud"))
        .unwrap();
    assert_eq!(candor_scenarios::http_status(&bad), 400, "{bad}");
    assert!(
        bad.contains("trace, debug, info, notice, warn, error, fatal"),
        "{bad}"
    );

    // raw: the bytes exactly as written, nothing else.
    let raw = d.cli(&["logs", "js", "--output", "raw"]);
    assert!(raw.status.success());
    assert_eq!(String::from_utf8(raw.stdout).unwrap(), JS);
    // (Two streams are read apart: their lines' order between them is not the written one.)
    let raw = d.cli(&["logs", "plain", "--output", "raw", "--stream", "out"]);
    assert_eq!(raw.stdout, b"plain out\ncaf\xe9\n");
    // json: one entry a line, each parsing, the structured ones with their fields.
    let out = d.ok(&["logs", "lf", "--output", "json"]);
    let entries: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    assert_eq!(entries.len(), LF.lines().count(), "{out}");
    assert_eq!(entries[1]["msg"], "disk 91% full");
    assert_eq!(entries[1]["level"], "warn");
    assert!(entries[4].get("msg").is_none(), "{}", entries[4]);
    // short (into a pipe: no colour): the message and the other fields, not the JSON.
    let short = d.ok(&["logs", "js", "--level", "warn"]);
    assert!(
        short.contains(" stdout warn   slow request ms=900\n"),
        "{short}"
    );
    assert!(
        short.contains(" stdout error  db down err=timeout\n"),
        "{short}"
    );
    assert!(!short.contains('\x1b'), "no colour into a pipe: {short:?}");
    // On a terminal (util-linux's `script` gives it one): coloured by level, unless NO_COLOR.
    if candor_scenarios::tool("script", &["--version"], "util-linux's script is missing") {
        let on_tty = |no_color: Option<&str>| {
            let cmd = format!("{} logs js --level warn", candor_bin().display());
            let mut c = std::process::Command::new("script");
            c.args(["-qec", &cmd, "/dev/null"])
                .env("CANDOR_SOCKET", d.path("candor.sock"))
                .env_remove("NO_COLOR");
            if let Some(v) = no_color {
                c.env("NO_COLOR", v);
            }
            String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
        };
        let tty = on_tty(None);
        assert!(
            tty.contains("\x1b[33mstdout warn   slow request ms=900\x1b[0m")
                && tty.contains("\x1b[31mstdout error  db down"),
            "{tty:?}"
        );
        let plain = on_tty(Some("1"));
        assert!(
            plain.contains("slow request") && !plain.contains('\x1b'),
            "{plain:?}"
        );
    }

    // Following filters as the history does: the lines logged later, at error or above.
    let (mut child, rx) = d.follow_json(&["logs", "late", "-f", "--level", "error", "-o", "json"]);
    let first = rx.recv_timeout(T).expect("the history's line");
    assert_eq!(first["msg"], "early");
    std::fs::write(d.path("go"), "").unwrap();
    let mut live = Vec::new();
    while live.last() != Some(&"the end".to_string()) {
        let l = rx.recv_timeout(T).expect("a followed line");
        live.push(l["msg"].as_str().unwrap_or("(none)").to_string());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(live, ["late error", "the end"]);
}
