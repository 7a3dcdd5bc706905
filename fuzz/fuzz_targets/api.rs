//! The HTTP API of a real daemon (started once in this process, with two services), given
//! any bytes as a request on its control socket. libFuzzer turns any panic — even one the
//! daemon would catch and report — into a crash; an answer of 500 counts as one too (it is
//! what a handler that panicked answers). Requests that would end the daemon (`shutdown`,
//! `upgrade`) are left out.
#![no_main]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
[daemon]
sample_every = "1s"

[service.web]
command = ["sleep", "100000"]
stop = { timeout = "1s" }

[service.probed]
command = ["sleep", "100000"]
probe = { exec = ["true"], every = "1s" }
stop = { timeout = "1s" }
"#;

fn daemon() -> &'static PathBuf {
    static SOCKET: OnceLock<PathBuf> = OnceLock::new();
    SOCKET.get_or_init(|| {
        // libFuzzer's main is not Rust's: a write to a connection the daemon closed must be an
        // error here, not SIGPIPE (the candor binary ignores SIGPIPE the same way).
        // SAFETY: setting a signal's disposition to SIG_IGN.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let dir = std::env::temp_dir().join(format!("candor-fuzz-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("candor.toml");
        std::fs::write(&config, CONFIG).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let opts = candor_daemon::Options {
            config,
            state_dir: Some(dir.join("state")),
            socket: None,
            use_cgroups: false,
            use_clone3: true,
            echo_events: false,
            handover: Default::default(),
            init: false,
        };
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let r = candor_daemon::run(opts, |s| {
                    let _ = tx.send(s.socket);
                })
                .await;
                panic!("the daemon ended: {r:?}");
            });
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the daemon started")
    })
}

/// The request with %XX decoded, lower case: what a router might see.
fn decoded(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if data[i] == b'%' && i + 2 < data.len() {
            if let (Some(a), Some(b)) = (hex(data[i + 1]), hex(data[i + 2])) {
                out.push((a * 16 + b) as u8);
                i += 3;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_lowercase()
}

fuzz_target!(|data: &[u8]| {
    let d = decoded(data);
    if d.contains("shutdown") || d.contains("upgrade") {
        return;
    }
    let socket = daemon();
    let mut s = UnixStream::connect(socket).expect("the daemon answers connections");
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    if s.write_all(data).is_err() {
        return;
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match s.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(
        !head[..got].starts_with(b"HTTP/1.1 500"),
        "the daemon answered 500 to {:?}",
        String::from_utf8_lossy(data)
    );
});
