//! `candor-twin <behaviour> [options]`: the zoo's misbehaving programs written again with
//! candor-sdk. Each does the same work as its zoo twin and meets the same fault; the SDK
//! keeps the fault from becoming an incident. Test fixtures for tests/sdk.rs and bench/sdk.py.

use candor_sdk::accept::AcceptLoop;
use candor_sdk::reconnect::Reconnect;
use candor_sdk::shutdown::Shutdown;
use candor_sdk::watchdog::{Heartbeat, Watchdog};
use candor_sdk::{fds::FdBudget, notify};
use std::net::TcpListener;
use std::time::Duration;

const USAGE: &str = "usage: candor-twin <behaviour> [options]
  emfile-spin [--shed]                  exhaust fds with a connection waiting; the SDK's accept loop backs off
                                        (--shed: and closes the waiting connection with its reserve fd)
  reconnect-leak [--every DUR] [--port N]
                                        retry a refused connect with a client per attempt; Reconnect disposes of it
  sigterm-hang                          on SIGTERM begin a graceful shutdown that never finishes; the backstop exits
  stuck-loop [--after DUR]              a tokio loop that blocks after DUR; its heartbeat stops the watchdog pings
  ready                                 say ready with notify::ready() (whatever the service's ready is), then idle";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |key: &str| {
        args.iter()
            .position(|a| a == key)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let ms = |key: &str, default: u64| {
        opt(key)
            .map(|v| {
                v.trim_end_matches("ms")
                    .parse()
                    .unwrap_or_else(|_| die(&format!("{key}: a number of ms")))
            })
            .unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("emfile-spin") => emfile_spin(args.iter().any(|a| a == "--shed")),
        Some("reconnect-leak") => reconnect_leak(
            Duration::from_millis(ms("--every", 100)),
            ms("--port", 1) as u16,
        ),
        Some("sigterm-hang") => sigterm_hang(),
        Some("ready") => {
            ready();
            println!("ready said; supervised: {}", notify::is_supervised());
            loop {
                std::thread::park();
            }
        }
        Some("stuck-loop") => stuck_loop(Duration::from_millis(ms("--after", 2000))),
        _ => die(USAGE),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("candor-twin: {msg}");
    std::process::exit(2)
}

fn ready() {
    if let Err(e) = notify::ready() {
        die(&format!("telling the supervisor: {e}"));
    }
}

/// The zoo's emfile-spin with the SDK's accept loop.
fn emfile_spin(shed: bool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| die(&format!("bind: {e}")));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| die(&format!("{e}")));
    let _pending = std::net::TcpStream::connect(addr).unwrap_or_else(|e| die(&format!("{e}")));
    println!(
        "emfile-spin twin: pid {} listening on {addr}; exhausting fds",
        std::process::id()
    );
    ready();
    let mut accept = AcceptLoop::new("web");
    if shed {
        accept = accept.shed_above(FdBudget::new());
    }
    let mut hoard = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hoard.push(f);
    }
    loop {
        match accept.accept(&listener) {
            Ok((c, _)) => drop(c),
            Err(e) => die(&format!("{e}")),
        }
    }
}

/// The zoo's reconnect-leak with Reconnect: the same client per attempt, disposed of.
fn reconnect_leak(every: Duration, port: u16) {
    println!(
        "reconnect-leak twin: pid {} connecting to 127.0.0.1:{port} every {every:?}",
        std::process::id()
    );
    ready();
    struct Client {
        _log: std::fs::File,
        peer: Option<std::net::TcpStream>,
    }
    let mut r = Reconnect::new("peer").backoff(every, every);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let _client = r
        .connect_with(
            || {
                Ok(Client {
                    _log: std::fs::File::open("/dev/null")?,
                    peer: None,
                })
            },
            |c| {
                c.peer = Some(std::net::TcpStream::connect(addr)?);
                Ok(())
            },
            drop,
        )
        .unwrap_or_else(|e| die(&format!("{e}")));
    println!("reconnect-leak twin: connected");
    loop {
        std::thread::park();
    }
}

/// The zoo's half-dead (which ignores SIGTERM) as a program that means well: it begins a
/// graceful shutdown that waits on something that never ends. The backstop ends it.
fn sigterm_hang() {
    let stop = Shutdown::install().unwrap_or_else(|e| die(&format!("signals: {e}")));
    println!(
        "sigterm-hang twin: pid {} up; graceful shutdown gets {:?}",
        std::process::id(),
        stop.grace()
    );
    ready();
    stop.wait();
    println!("sigterm-hang twin: draining connections (one of them never ends)");
    loop {
        std::thread::park();
    }
}

/// A tokio loop that blocks its only thread after `after`; the SDK's watchdog pings only
/// while the loop's heartbeat is fresh.
fn stuck_loop(after: Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| die(&format!("runtime: {e}")));
    rt.block_on(async move {
        let beat = Heartbeat::new();
        let Some(dog) = Watchdog::from_env() else {
            die("no WATCHDOG_USEC: run it with watchdog = DUR");
        };
        beat.spawn_tokio(dog.ping_every() / 2);
        dog.spawn_with_heartbeat(&beat);
        println!(
            "stuck-loop twin: pid {} working; the loop blocks in {after:?}",
            std::process::id()
        );
        ready();
        tokio::time::sleep(after).await;
        println!("stuck-loop twin: the loop is blocked (a sync call that never returns)");
        loop {
            std::thread::park();
        }
    });
}
