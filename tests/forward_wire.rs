//! The forwarding encoders' bytes against the real receivers, without a daemon: rsyslog
//! parses each syslog format from each transport into the fields written, journald keeps
//! every field (bytes that are not UTF-8 too) and takes an entry too big for a datagram
//! through a sealed memfd, and opentelemetry-proto decodes the OTLP request as sent by the
//! OTLP client on one kept connection.

#[path = "forward/journald.rs"]
mod journald;
#[path = "forward/otlp.rs"]
mod otlp;
#[path = "forward/rsyslog.rs"]
mod rsyslog;

use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use candor_daemon::forward::record::Record;
use candor_daemon::forward::{journald as native, otlp as otlp_wire, syslog};
use candor_scenarios::wait_for;
use candor_spec::forward::SyslogFormat;
use candor_store::{Format, Level, Shape, Stream};

const T: Duration = Duration::from_secs(20);

fn record<'a>(service: &'a str, line: &'a [u8], stream: Stream, level: Level) -> Record<'a> {
    let format = if level == Level::Unknown {
        Format::Plain
    } else {
        Format::Json
    };
    Record {
        at_ms: 1_796_648_730_123,
        service,
        stream,
        shape: Shape { format, level },
        line,
        run_id: Some(12),
        pid: Some(4321),
    }
}

#[test]
fn rsyslog_parses_each_format_from_each_transport() {
    let dir = tempfile::tempdir().unwrap();
    let Some(rs) = rsyslog::Rsyslog::start(dir.path()) else {
        return;
    };
    let err = record(
        "web",
        br#"{"level":"error","msg":"boom"}"#,
        Stream::Stdout,
        Level::Error,
    );
    let plain = record(
        "api@2",
        b"plain \"quoted\" ]",
        Stream::Stderr,
        Level::Unknown,
    );
    let unix = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", rs.tcp)).unwrap();
    // (facility, format, hostname): a Unix socket's messages carry none.
    let sends = [
        (16u8, SyslogFormat::Rfc5424, ""),
        (17, SyslogFormat::Bsd, ""),
        (18, SyslogFormat::Rfc5424, "box"),
        (19, SyslogFormat::Bsd, "box"),
        (20, SyslogFormat::Rfc5424, "box"),
        (21, SyslogFormat::Bsd, "box"),
    ];
    for (facility, format, host) in sends {
        for rec in [&err, &plain] {
            let mut msg = Vec::new();
            syslog::encode(&mut msg, format, facility, rec.service, host, rec);
            match facility {
                16 => unix.send_to(&msg, &rs.socket).map(drop).unwrap(),
                17 => unix.send_to(&msg, &rs.dev_log).map(drop).unwrap(),
                18 | 19 => udp.send_to(&msg, ("127.0.0.1", rs.udp)).map(drop).unwrap(),
                _ => {
                    let mut framed = Vec::new();
                    syslog::frame(&mut framed, &msg);
                    tcp.write_all(&framed).unwrap();
                }
            }
        }
    }
    let got = wait_for("12 messages at rsyslog", T, || {
        let got = rs.messages();
        (got.len() >= 12).then_some(got)
    });
    assert_eq!(got.len(), 12, "{got:#?}");
    for (facility, format, _) in sends {
        for (rec, severity, msgid, sd) in [
            (
                &err,
                3,
                "stdout",
                r#"[candor@32473 service="web" run="12"]"#,
            ),
            (
                &plain,
                4,
                "stderr",
                r#"[candor@32473 service="api@2" run="12"]"#,
            ),
        ] {
            let text = std::str::from_utf8(rec.line).unwrap();
            let r = got
                .iter()
                .find(|r| r.facility == facility && r.msg == text)
                .unwrap_or_else(|| panic!("facility {facility}: {text:?} in {got:#?}"));
            let input = match facility {
                16 | 17 => "imuxsock",
                18 | 19 => "imudp",
                _ => "imtcp",
            };
            assert_eq!(r.input, input, "{r:?}");
            assert_eq!(r.severity, severity, "{r:?}");
            assert_eq!(r.app, rec.service, "{r:?}");
            assert_eq!(r.procid, "4321", "{r:?}");
            if format == SyslogFormat::Rfc5424 {
                assert_eq!(
                    (r.msgid.as_str(), r.structured_data.as_str()),
                    (msgid, sd),
                    "{r:?}"
                );
            }
        }
    }
}

#[test]
fn journald_keeps_every_field_and_takes_a_big_entry_through_a_sealed_memfd() {
    let dir = tempfile::tempdir().unwrap();
    let Some(j) = journald::Journald::start(dir.path()) else {
        return;
    };
    let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
    sock.set_nonblocking(true).unwrap();
    let small = record("small", b"caf\xe9 \"x\"", Stream::Stderr, Level::Unknown);
    let mut payload = Vec::new();
    native::encode(&mut payload, &small, "smallapp");
    native::send(sock.as_fd(), &j.socket, &payload).unwrap();
    let e = wait_for("the small entry", T, || {
        j.entries("CANDOR_SERVICE=small").into_iter().next()
    });
    // Not UTF-8: journalctl shows the bytes.
    let bytes: Vec<u8> = e["MESSAGE"]
        .as_array()
        .unwrap_or_else(|| panic!("MESSAGE as bytes: {e}"))
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(bytes, small.line);
    for (field, value) in [
        ("PRIORITY", "4"),
        ("SYSLOG_IDENTIFIER", "smallapp"),
        ("SYSLOG_FACILITY", "3"),
        ("SYSLOG_PID", "4321"),
        ("CANDOR_STREAM", "stderr"),
        ("CANDOR_RUN_ID", "12"),
        ("CANDOR_TIME_USEC", "1796648730123000"),
    ] {
        assert_eq!(e[field], value, "{field} in {e}");
    }

    let big = "0123456789abcdef".repeat(300 << 6);
    let rec = record("bigone", big.as_bytes(), Stream::Stdout, Level::Unknown);
    let mut payload = Vec::new();
    native::encode(&mut payload, &rec, "bigone");
    // Too big for one datagram here, so this one goes through a memfd.
    let refused = sock.send_to(&payload, &j.socket).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EMSGSIZE), "{refused}");
    // journald takes any fd from root; from anyone else only a memfd sealed against every
    // change (or a file in /dev/shm, /tmp, /var/tmp). So it is sent by a thread of its own
    // running as nobody (raw setresuid changes only the calling thread's credentials, which
    // are what the datagram carries).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = j.socket.clone();
    std::thread::spawn(move || {
        // SAFETY: a raw syscall on this thread alone; it ends after the send.
        let r = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(r, 0, "setresuid(nobody)");
        native::send(sock.as_fd(), &socket, &payload).expect("sent through a memfd");
    })
    .join()
    .unwrap();
    let e = wait_for("the big entry", T, || {
        j.entries("CANDOR_SERVICE=bigone").into_iter().next()
    });
    assert!(
        journald::text(&e, "MESSAGE").unwrap() == big,
        "the whole 300 KiB line"
    );
    assert_eq!(e["PRIORITY"], "6");
}

#[test]
fn opentelemetry_proto_decodes_what_the_otlp_client_posts() {
    let dir = tempfile::tempdir().unwrap();
    let Some(receiver) = otlp::Otlp::start(dir.path()) else {
        return;
    };
    let headers = [("x-api-key".to_string(), "k-9".to_string())];
    let mut client = otlp_wire::collector(&receiver.url(), &headers, "logs").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lines = [
        record("api@1", b"hello", Stream::Stdout, Level::Unknown),
        record("api@2", b"caf\xe9", Stream::Stderr, Level::Unknown),
        record("web", br#"{"level":"fatal"}"#, Stream::Stdout, Level::Fatal),
        record("web", b"restarted", Stream::Candor, Level::Unknown),
    ];
    // Two requests on the one connection.
    for chunk in lines.chunks(2) {
        let body = otlp_wire::encode_logs(chunk, "box");
        let posted = rt.block_on(client.post(body, T));
        assert_eq!(posted, candor_daemon::http_post::Posted::Sent);
    }
    let got = receiver.records();
    assert_eq!(got.len(), 4, "{got:#?}");
    let want = [
        ("api", "api@1", "hello", 9, "INFO", Some("stdout")),
        ("api", "api@2", "caf\u{fffd}", 13, "WARN", Some("stderr")),
        (
            "web",
            "web",
            r#"{"level":"fatal"}"#,
            21,
            "FATAL",
            Some("stdout"),
        ),
        ("web", "web", "restarted", 10, "NOTICE", None),
    ];
    for (r, (name, instance, body, number, text, stream)) in got.iter().zip(want) {
        assert_eq!(r["resource"]["service.name"], name, "{r}");
        assert_eq!(r["resource"]["service.instance.id"], instance, "{r}");
        assert_eq!(r["resource"]["host.name"], "box", "{r}");
        assert_eq!(r["scope"], "candor", "{r}");
        assert_eq!(r["body"], body, "{r}");
        assert_eq!(r["severity_number"], number, "{r}");
        assert_eq!(r["severity_text"], text, "{r}");
        assert_eq!(
            r["attributes"].get("log.iostream").and_then(|v| v.as_str()),
            stream,
            "{r}"
        );
        assert_eq!(r["attributes"]["candor.run_id"], 12, "{r}");
        assert_eq!(r["time_unix_nano"], 1_796_648_730_123_000_000u64, "{r}");
        assert_eq!(r["api_key"], "k-9", "{r}");
    }
    // The bytes of the body that is not UTF-8, beside it ("caf\xe9" in base64).
    assert_eq!(
        got[1]["attributes"]["candor.body_bytes"]["bytes"],
        "Y2Fm6Q=="
    );
}
