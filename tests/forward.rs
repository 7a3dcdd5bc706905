//! `[[daemon.forward]]` with a real daemon and real receivers: rsyslog (Unix socket, UDP and
//! TCP, RFC 5424 and BSD), systemd-journald (the native protocol; a big entry through a sealed
//! memfd), and OTLP/HTTP decoded by opentelemetry-proto's own classes. Severity from the
//! stream and from a JSON line's level; the service filter; the counts in `GET /v1/daemon`.
//! The outages are in forward_outage.rs.

#[path = "forward/journald.rs"]
mod journald;
#[path = "forward/otlp.rs"]
mod otlp;
#[path = "forward/rsyslog.rs"]
mod rsyslog;

use std::time::Duration;

use candor_scenarios::*;
use serde_json::Value;

use journald::Journald;
use otlp::Otlp;
use rsyslog::{Received, Rsyslog};

const T: Duration = Duration::from_secs(30);

/// `web`: two JSON lines on stdout (an error, an info) and a plain line on stderr at once
/// after its start, then, once the test made the file `go` beside the script (the API shows
/// the run), `later line` on stderr. A JSON line's level is its severity (error 3, info 6); a
/// plain line's, its stream's (stderr: warning, 4). Every line carries its run's id and pid,
/// the very first ones too.
const WEB: &str = r#"echo '{"level":"error","msg":"json boom"}'
echo '{"level":"info","msg":"json fine"}'
echo 'plain oops' >&2
while [ ! -e "$(dirname "$0")/go" ]; do sleep 0.05; done
echo 'later line' >&2
exec sleep 1000
"#;
const BOOM: &str = r#"{"level":"error","msg":"json boom"}"#;
const FINE: &str = r#"{"level":"info","msg":"json fine"}"#;

/// Services `web` and `quiet` (one plain stdout line), after `forward`.
fn config(forward: &str) -> String {
    format!(
        r#"{forward}
[service.web]
command = ["sh", "{{dir}}/web.sh"]

[service.quiet]
command = ["sh", "-c", "echo quiet line; exec sleep 1000"]
"#
    )
}

/// `GET /v1/daemon`'s `forward[]`.
fn forward_stats(d: &Daemon) -> Vec<Value> {
    d.info()["forward"].as_array().cloned().unwrap_or_default()
}

/// Until every target has sent what it had (`behind` 0) and target i has sent `sent[i]`.
fn wait_sent(d: &Daemon, sent: &[u64]) -> Vec<Value> {
    wait_for("every forward target to have sent its lines", T, || {
        let stats = forward_stats(d);
        let done = stats.len() == sent.len()
            && stats
                .iter()
                .zip(sent)
                .all(|(s, &n)| s["sent"].as_u64() == Some(n) && s["behind"].as_u64() == Some(0));
        done.then_some(stats)
    })
}

/// Once the API shows `names` running, let their scripts write their later lines.
fn go(d: &Daemon, names: &[&str]) {
    for name in names {
        pid(d, name);
    }
    std::fs::write(d.path("go"), "").unwrap();
}

fn pid(d: &Daemon, name: &str) -> u64 {
    d.wait_state(name, "running", T)["pid"]
        .as_u64()
        .expect("a pid")
}

#[test]
fn syslog_reaches_rsyslog_over_unix_udp_and_tcp_in_both_formats() {
    let mut d = Daemon::unstarted("");
    let Some(rs) = Rsyslog::start(d.dir.path()) else {
        return;
    };
    // One facility per target, to tell them apart in rsyslog's file.
    let forward = format!(
        r#"
[[daemon.forward]]
syslog = "unix://{socket}"
format = "rfc5424"
facility = "local0"
services = ["web"]

[[daemon.forward]]
# bsd by default over a unix socket, as /dev/log's readers parse
syslog = "unix://{dev_log}"
facility = "local1"
services = ["web"]

[[daemon.forward]]
syslog = "udp://127.0.0.1:{udp}"
facility = "local2"
services = ["web"]

[[daemon.forward]]
syslog = "udp://127.0.0.1:{udp}"
format = "bsd"
facility = "local3"
app_name = "webapp"
services = ["web"]

[[daemon.forward]]
syslog = "tcp://127.0.0.1:{tcp}"
facility = "local4"
services = ["web"]

[[daemon.forward]]
syslog = "tcp://127.0.0.1:{tcp}"
format = "bsd"
facility = "local5"
"#,
        socket = rs.socket.display(),
        dev_log = rs.dev_log.display(),
        udp = rs.udp,
        tcp = rs.tcp,
    );
    std::fs::write(d.path("web.sh"), WEB).unwrap();
    d.write_config(&config(&forward));
    d.spawn();
    let web = pid(&d, "web").to_string();
    go(&d, &["web"]);

    // (facility, input, RFC 5424?, app name) of each target.
    let targets = [
        (16, "imuxsock", true, "web"),
        (17, "imuxsock", false, "web"),
        (18, "imudp", true, "web"),
        (19, "imudp", false, "webapp"),
        (20, "imtcp", true, "web"),
        (21, "imtcp", false, "web"),
    ];
    // (message, severity, stream) of web's lines.
    let lines = [
        (BOOM, 3, "stdout"),
        (FINE, 6, "stdout"),
        ("plain oops", 4, "stderr"),
        ("later line", 4, "stderr"),
    ];
    let find = |got: &[Received], facility: u8, msg: &str| -> Option<Received> {
        got.iter()
            .find(|r| r.facility == facility && r.msg == msg)
            .cloned()
    };
    let got = wait_for(
        "web's lines through every target, quiet's through the last",
        T,
        || {
            let got = rs.messages();
            let all = targets
                .iter()
                .all(|&(f, ..)| lines.iter().all(|&(m, ..)| find(&got, f, m).is_some()))
                && find(&got, 21, "quiet line").is_some();
            all.then_some(got)
        },
    );
    for (facility, input, rfc5424, app) in targets {
        for (msg, severity, stream) in lines {
            let r = find(&got, facility, msg).unwrap();
            let at = format!("facility {facility}, {msg:?}: {r:?}");
            assert_eq!(r.input, input, "{at}");
            assert_eq!(r.severity, severity, "{at}");
            assert_eq!(r.app, app, "{at}");
            assert_eq!(r.procid, web, "{at}");
            if rfc5424 {
                assert_eq!(r.msgid, stream, "{at}");
                assert!(
                    r.structured_data
                        .starts_with(r#"[candor@32473 service="web" run=""#),
                    "{at}"
                );
            } else {
                assert_eq!(
                    (r.msgid.as_str(), r.structured_data.as_str()),
                    ("-", "-"),
                    "{at}"
                );
            }
        }
    }
    let quiet = find(&got, 21, "quiet line").unwrap();
    assert_eq!(
        (quiet.severity, quiet.app.as_str()),
        (6, "quiet"),
        "{quiet:?}"
    );

    // Each target sent exactly its services' lines, each once; the filtered ones none of quiet's.
    let stats = wait_sent(&d, &[4, 4, 4, 4, 4, 5]);
    let got = rs.messages();
    for facility in 16..=21u8 {
        let n = got.iter().filter(|r| r.facility == facility).count();
        assert_eq!(
            n,
            if facility == 21 { 5 } else { 4 },
            "facility {facility}: {got:#?}"
        );
    }
    for s in &stats {
        assert_eq!(s["kind"], "syslog", "{s}");
        assert_eq!(
            (s["dropped"].as_u64(), s.get("down")),
            (Some(0), None),
            "{s}"
        );
    }
    assert_eq!(stats[2]["target"], format!("udp://127.0.0.1:{}", rs.udp));
    d.shutdown();
}

/// 300 KiB of numbered words: stored as 16 KiB pieces, each sent as an entry of its own.
pub fn big_line() -> String {
    let mut s = String::from("big:");
    let mut i = 0;
    while s.len() < 300 << 10 {
        s.push_str(&format!(" {i:06}"));
        i += 1;
    }
    s
}

#[test]
fn journald_keeps_candors_fields_and_every_piece_of_a_big_line() {
    let mut d = Daemon::unstarted("");
    let Some(j) = Journald::start(d.dir.path()) else {
        return;
    };
    let big = big_line();
    std::fs::write(d.path("big.txt"), format!("{big}\n")).unwrap();
    let cat = format!("cat '{}' >&2\nexec sleep", d.path("big.txt").display());
    std::fs::write(d.path("web.sh"), WEB.replace("exec sleep", &cat)).unwrap();
    let forward = format!(
        "[[daemon.forward]]\njournald = \"{}\"\nservices = [\"web\"]\n",
        j.socket.display()
    );
    d.write_config(&config(&forward));
    d.spawn();
    let web = pid(&d, "web").to_string();
    go(&d, &["web"]);
    let pieces = big.len().div_ceil(16 << 10) as u64;
    let stats = wait_sent(&d, &[4 + pieces]);
    assert_eq!(stats[0]["kind"], "journald");

    let entries = wait_for("web's entries in the journal", T, || {
        let e = j.entries("CANDOR_SERVICE=web");
        (e.len() as u64 == 4 + pieces).then_some(e)
    });
    let field = |e: &Value, f: &str| journald::text(e, f).unwrap_or_default();
    let one = |msg: &str| -> Value {
        let found: Vec<&Value> = entries
            .iter()
            .filter(|e| field(e, "MESSAGE") == msg)
            .collect();
        assert_eq!(found.len(), 1, "one entry {msg:?} in {entries:#?}");
        found[0].clone()
    };
    for (msg, priority, stream) in [
        (BOOM, "3", "stdout"),
        (FINE, "6", "stdout"),
        ("plain oops", "4", "stderr"),
        ("later line", "4", "stderr"),
    ] {
        let e = one(msg);
        assert_eq!(field(&e, "PRIORITY"), priority, "{e}");
        assert_eq!(field(&e, "CANDOR_STREAM"), stream, "{e}");
        assert_eq!(field(&e, "SYSLOG_IDENTIFIER"), "web", "{e}");
        assert_eq!(field(&e, "SYSLOG_FACILITY"), "3", "{e}");
        assert_eq!(field(&e, "SYSLOG_PID"), web, "{e}");
        assert!(field(&e, "CANDOR_RUN_ID").parse::<u64>().is_ok(), "{e}");
    }
    // The big line: its pieces in order, each marked as continued but the last.
    let joined: String = entries
        .iter()
        .filter(|e| field(e, "CANDOR_STREAM") == "stderr")
        .map(|e| field(e, "MESSAGE"))
        .filter(|m| m != "plain oops" && m != "later line")
        .map(|m| m.trim_end_matches(" …[line continues]").to_string())
        .collect();
    assert_eq!(joined.len(), big.len(), "the big line's pieces");
    assert!(joined == big, "the big line's pieces, joined, are the line");
    assert!(
        j.entries("CANDOR_SERVICE=quiet").is_empty(),
        "quiet is not forwarded"
    );
    d.shutdown();
}

/// `api` (two instances): a plain line, a line that is not UTF-8, and a JSON debug line; then,
/// once `go` is there (see WEB), a later line.
const API: &str = r#"echo "hello from api@$1"
printf 'caf\351 from api@%s\n' "$1"
echo '{"level":"debug","msg":"details"}' >&2
while [ ! -e "$(dirname "$0")/go" ]; do sleep 0.05; done
echo "later from api@$1"
exec sleep 1000
"#;

#[test]
fn otlp_records_decode_with_their_resource_severity_and_body() {
    let mut d = Daemon::unstarted("");
    let Some(otlp) = Otlp::start(d.dir.path()) else {
        return;
    };
    // First the collector refuses (503): the lines wait and are sent again, once.
    otlp.answer_503(true);
    std::fs::write(d.path("api.sh"), API).unwrap();
    let config = format!(
        r#"
[[daemon.forward]]
otlp = "{url}"
headers = {{ "x-api-key" = "k-123" }}
services = ["api"]
metrics = true

[service.api]
replicas = 2
command = ["sh", "{{dir}}/api.sh", "{{instance}}"]

[service.quiet]
command = ["sh", "-c", "echo quiet line; exec sleep 1000"]
"#,
        url = otlp.url()
    );
    d.write_config(&config);
    let before = std::time::SystemTime::now();
    d.spawn();
    go(&d, &["api@1", "api@2"]);
    wait_for("a retried request", T, || {
        (forward_stats(&d)[0]["retried"].as_u64() > Some(0)).then_some(())
    });
    assert!(
        otlp.records().is_empty(),
        "nothing kept while answering 503"
    );
    otlp.answer_503(false);
    let stats = wait_sent(&d, &[8]);
    assert_eq!(stats[0]["kind"], "otlp");
    assert_eq!(stats[0]["dropped"], 0);
    let records = otlp.records();
    assert_eq!(records.len(), 8, "each line once: {records:#?}");

    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let from = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for r in &records {
        let instance = r["resource"]["service.instance.id"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(instance == "api@1" || instance == "api@2", "{r}");
        assert_eq!(r["resource"]["service.name"], "api", "{r}");
        assert_eq!(r["resource"]["host.name"], host.trim(), "{r}");
        assert_eq!(r["scope"], "candor", "{r}");
        assert_eq!(r["api_key"], "k-123", "{r}");
        let body = r["body"].as_str().unwrap();
        assert!(r["attributes"]["candor.run_id"].as_u64().is_some(), "{r}");
        let t = r["time_unix_nano"].as_u64().unwrap();
        assert!(t >= from / 1_000_000 * 1_000_000, "{r}");
        assert_eq!(r["observed_time_unix_nano"].as_u64(), Some(t), "{r}");
        let (number, text, stream) = if body.starts_with("hello") {
            assert_eq!(body, format!("hello from {instance}"));
            (9, "INFO", "stdout")
        } else if body.starts_with("later") {
            assert_eq!(body, format!("later from {instance}"));
            (9, "INFO", "stdout")
        } else if body.starts_with("caf") {
            assert_eq!(body, format!("caf\u{fffd} from {instance}"));
            // The exact bytes beside the text.
            let bytes = format!("caf\u{e9} from {instance}");
            let latin1: Vec<u8> = bytes.chars().map(|c| c as u8).collect();
            let b64 = r["attributes"]["candor.body_bytes"]["bytes"]
                .as_str()
                .unwrap();
            assert_eq!(b64, base64(&latin1), "{r}");
            (9, "INFO", "stdout")
        } else {
            assert_eq!(body, r#"{"level":"debug","msg":"details"}"#);
            (5, "DEBUG", "stderr")
        };
        assert_eq!(r["severity_number"], number, "{r}");
        assert_eq!(r["severity_text"], text, "{r}");
        assert_eq!(r["attributes"]["log.iostream"], stream, "{r}");
    }

    // `metrics = true`: each instance's state, every 10 s.
    let up = wait_for("candor.service.up of both instances", T, || {
        let points: Vec<Value> = otlp
            .points()
            .into_iter()
            .filter(|p| p["name"] == "candor.service.up")
            .collect();
        let of = |i: &str| {
            points
                .iter()
                .rfind(|p| p["resource"]["service.instance.id"] == i)
                .cloned()
        };
        Some((of("api@1")?, of("api@2")?))
    });
    for p in [up.0, up.1] {
        assert_eq!(p["value"], 1, "{p}");
        assert_eq!(p["attributes"]["state"], "running", "{p}");
        assert_eq!(p["resource"]["service.name"], "api", "{p}");
        assert_eq!(p["kind"], "gauge", "{p}");
    }
    let metrics = &forward_stats(&d)[0]["metrics"];
    assert!(metrics["sent"].as_u64() > Some(0), "{metrics}");
    d.shutdown();
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
