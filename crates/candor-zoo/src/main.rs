//! `candor-zoo <behaviour> [options]`: small programs that misbehave the way real services do,
//! one per failure in DESIGN.md. Test fixtures and demos; std and libc only.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: candor-zoo <behaviour> [options]
  healthy [--port N] [--socket PATH] [--stamp FILE]   HTTP 200 on /health over TCP and/or UDS; sd_notify READY=1
  crash-loop --after DUR --code N [--stamp FILE]      run DUR, then exit with code N
  half-dead [--pids FILE]                             ignore SIGTERM, with a child that ignores it too
    double-fork [--pids FILE] [--parent-exits]          daemonize a grandchild that escapes with setsid()
  handler-dead --after DUR [--port N] [--socket PATH] HTTP 200 until DUR, then accept and close every connection
  unlink-own-socket --after DUR --socket PATH         UDS HTTP server that unlinks its socket file after DUR, still listening
  slow-ready --after DUR                              sd_notify READY=1 only after DUR
  watchdog-stall --after DUR [--every DUR]            sd_notify WATCHDOG=1 until DUR, then silence (alive)
  notify MSG [MSG...]                                 send each MSG (\\n for newlines) to $NOTIFY_SOCKET, 300 ms apart, then stay up
  leak-fds --per-sec N                                open /dev/null N times a second, never close
  emfile-spin                                         exhaust fds, then spin on accept errors logging each (seed 000)
  reconnect-leak [--every DUR] [--port N]             retry a refused connect, keeping 2 fds of each failed attempt (seed 003)
  stuck-loop [--after DUR]                            the main loop deadlocks after DUR; a thread keeps sending WATCHDOG=1
  mem-grow --mb-per-sec N                             allocate and touch N MiB a second
  log-flood --lines-per-sec N [--for DUR] [--same]    numbered lines on stdout (0: as fast as it can), then stay up;
                                                      --same: one identical line over and over
healthy also takes --ready-fd N (s6: newline on fd N) and --ready-file PATH (created when ready)
common: --stamp FILE appends `start <unix_ns> <pid>` / `exit <unix_ns> <pid>` lines";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let opts = Opts(args[1..].to_vec());
    if let Some(f) = opts.get("--stamp") {
        stamp(&f, "start");
    }
    match cmd.as_str() {
        "healthy" => healthy(&opts),
        "crash-loop" => crash_loop(&opts),
        "half-dead" => half_dead(&opts),
        "double-fork" => double_fork(&opts),
        "handler-dead" => handler_dead(&opts),
        "unlink-own-socket" => unlink_own_socket(&opts),
        "slow-ready" => slow_ready(&opts),
        "watchdog-stall" => watchdog_stall(&opts),
        "notify" => notify_script(&args[1..]),
        "leak-fds" => leak_fds(&opts),
        "emfile-spin" => emfile_spin(),
        "reconnect-leak" => reconnect_leak(&opts),
        "stuck-loop" => stuck_loop(&opts),
        "mem-grow" => mem_grow(&opts),
        "log-flood" => log_flood(&opts),
        other => {
            eprintln!("candor-zoo: unknown behaviour `{other}`\n{USAGE}");
            std::process::exit(2);
        }
    }
}

struct Opts(Vec<String>);

impl Opts {
    fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .position(|a| a == key)
            .and_then(|i| self.0.get(i + 1))
            .cloned()
    }
    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|a| a == key)
    }
    fn number(&self, key: &str, default: u64) -> u64 {
        self.get(key)
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| die(&format!("{key}: not a number")))
            })
            .unwrap_or(default)
    }
    fn duration(&self, key: &str, default: Duration) -> Duration {
        match self.get(key) {
            Some(s) => {
                candor_spec::parse_duration(&s).unwrap_or_else(|e| die(&format!("{key}: {e}")))
            }
            None => default,
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("candor-zoo: {msg}");
    std::process::exit(2);
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Append `<what> <unix_ns> <pid>` to `file` (one write, so lines never interleave).
fn stamp(file: &str, what: &str) {
    let line = format!("{what} {} {}\n", now_ns(), std::process::id());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap_or_else(|e| die(&format!("{file}: {e}")));
    let _ = f.write_all(line.as_bytes());
}

fn write_pids(opts: &Opts, pids: &[u32]) {
    if let Some(f) = opts.get("--pids") {
        let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
        let tmp = format!("{f}.tmp");
        std::fs::write(&tmp, text).unwrap_or_else(|e| die(&format!("{f}: {e}")));
        std::fs::rename(&tmp, &f).unwrap_or_else(|e| die(&format!("{f}: {e}")));
    }
}

/// Mark the fault (`--stamp FILE` gets `fault <ns> <pid>`), say what happened, stay up.
fn after_fault(opts: &Opts, what: &str) -> ! {
    if let Some(f) = opts.get("--stamp") {
        stamp(&f, "fault");
    }
    println!("{what}");
    sleep_forever()
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn ignore_sigterm() {
    // SAFETY: setting a signal to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
}

/// sd_notify: send `msg` to $NOTIFY_SOCKET if set (path, or abstract with a leading `@`).
fn notify(msg: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let _ = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), &path)
    };
}

fn serve_http(mut conn: impl Read + Write) {
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 64 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
}

/// Exit 0 on SIGTERM, stamping the exit first when `--stamp` is given.
fn exit_on_sigterm(opts: &Opts) {
    let stamp_file = opts.get("--stamp");
    // SAFETY: blocking SIGTERM before any thread exists, so every thread inherits the mask
    // and only the sigwait thread below receives it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let set_copy = set;
        std::thread::spawn(move || {
            let mut sig = 0;
            libc::sigwait(&set_copy, &mut sig);
            if let Some(f) = stamp_file {
                stamp(&f, "exit");
            }
            println!("healthy: SIGTERM, exiting");
            std::process::exit(0);
        });
    }
}

fn healthy(opts: &Opts) {
    exit_on_sigterm(opts);
    // A handler that never dies.
    let listening = serve_until_dead(
        opts,
        &std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    println!(
        "healthy: pid {} serving /health on {}",
        std::process::id(),
        if listening.is_empty() {
            "nothing".into()
        } else {
            listening.join(", ")
        }
    );
    announce_ready(opts);
    notify("READY=1\nSTATUS=serving");
    let mut n = 0u64;
    loop {
        std::thread::sleep(Duration::from_secs(5));
        n += 1;
        println!("healthy: tick {n}");
    }
}

fn crash_loop(opts: &Opts) {
    let after = opts.duration("--after", Duration::from_secs(1));
    let code: i32 = opts
        .get("--code")
        .map(|c| c.parse().unwrap_or_else(|_| die("--code: not a number")))
        .unwrap_or(1);
    println!(
        "crash-loop: pid {} up; will exit with code {code} in {after:?}",
        std::process::id()
    );
    std::thread::sleep(after);
    eprintln!("crash-loop: exiting with code {code}");
    if let Some(f) = opts.get("--stamp") {
        stamp(&f, "exit");
    }
    std::process::exit(code);
}

fn half_dead(opts: &Opts) {
    ignore_sigterm();
    // SAFETY: fork in a single-threaded program; the child only sleeps.
    let child = unsafe { libc::fork() };
    if child < 0 {
        die("fork failed");
    }
    if child == 0 {
        // Inherits SIG_IGN for SIGTERM.
        println!(
            "half-dead child: pid {} ignoring SIGTERM",
            std::process::id()
        );
        sleep_forever();
    }
    write_pids(opts, &[std::process::id(), child as u32]);
    println!(
        "half-dead: pid {} ignoring SIGTERM, child {child}",
        std::process::id()
    );
    sleep_forever();
}

fn double_fork(opts: &Opts) {
    let (r, w) = {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills the two-int array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            die("pipe failed");
        }
        (fds[0], fds[1])
    };
    // SAFETY: single-threaded fork; the children use only async-signal-safe calls or exit.
    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe { libc::setsid() };
        let grandchild = unsafe { libc::fork() };
        if grandchild == 0 {
            let pid = std::process::id();
            let bytes = pid.to_le_bytes();
            unsafe { libc::write(w, bytes.as_ptr().cast(), 4) };
            println!("double-fork grandchild: pid {pid}, escaped with setsid()");
            sleep_forever();
        }
        unsafe { libc::_exit(0) };
    }
    let mut bytes = [0u8; 4];
    // SAFETY: reads 4 bytes into the buffer.
    unsafe { libc::read(r, bytes.as_mut_ptr().cast(), 4) };
    let grandchild = u32::from_le_bytes(bytes);
    let mut status = 0;
    unsafe { libc::waitpid(child, &mut status, 0) };
    write_pids(opts, &[std::process::id(), grandchild]);
    println!(
        "double-fork: pid {} daemonized grandchild {grandchild}",
        std::process::id()
    );
    if opts.has("--parent-exits") {
        std::process::exit(0);
    }
    sleep_forever();
}

/// The s6 and file readiness signals, when asked for.
fn announce_ready(opts: &Opts) {
    if let Some(fd) = opts.get("--ready-fd") {
        let fd: i32 = fd
            .parse()
            .unwrap_or_else(|_| die("--ready-fd: not a number"));
        // SAFETY: writes one byte to an fd our supervisor gave us, then closes it.
        unsafe {
            libc::write(fd, b"\n".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
    if let Some(f) = opts.get("--ready-file") {
        std::fs::write(&f, b"ready\n").unwrap_or_else(|e| die(&format!("{f}: {e}")));
    }
}

/// Accept connections on a thread: serve each (HTTP 200) while `dead` is unset, close each
/// at once after.
fn serve_on<S: Read + Write + Send + 'static>(
    dead: std::sync::Arc<std::sync::atomic::AtomicBool>,
    mut accept: impl FnMut() -> std::io::Result<S> + Send + 'static,
) {
    std::thread::spawn(move || loop {
        let Ok(c) = accept() else { continue };
        if dead.load(std::sync::atomic::Ordering::Relaxed) {
            drop(c);
        } else {
            std::thread::spawn(move || serve_http(c));
        }
    });
}

/// Serve HTTP 200 on every listener given, until `dead` is set; from then on accept each
/// connection and close it at once (the F4 failure: a listener with no working handler).
fn serve_until_dead(
    opts: &Opts,
    dead: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let mut listening = Vec::new();
    if let Some(port) = opts.get("--port") {
        let l = TcpListener::bind((
            "127.0.0.1",
            port.parse::<u16>()
                .unwrap_or_else(|_| die("--port: not a port")),
        ))
        .unwrap_or_else(|e| die(&format!("bind 127.0.0.1:{port}: {e}")));
        listening.push(format!(
            "tcp {}",
            l.local_addr().map(|a| a.to_string()).unwrap_or_default()
        ));
        serve_on(dead.clone(), move || l.accept().map(|(c, _)| c));
    }
    if let Some(path) = opts.get("--socket") {
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap_or_else(|e| die(&format!("bind {path}: {e}")));
        listening.push(format!("uds {path}"));
        serve_on(dead.clone(), move || l.accept().map(|(c, _)| c));
    }
    listening
}

fn handler_dead(opts: &Opts) {
    let after = opts.duration("--after", Duration::from_secs(5));
    let dead = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    serve_until_dead(opts, &dead);
    println!(
        "handler-dead: pid {} serving; handler dies in {after:?}",
        std::process::id()
    );
    notify("READY=1");
    std::thread::sleep(after);
    dead.store(true, std::sync::atomic::Ordering::Relaxed);
    after_fault(
        opts,
        "handler-dead: handler is dead; still accepting, closing every connection",
    );
}

fn unlink_own_socket(opts: &Opts) {
    let after = opts.duration("--after", Duration::from_secs(5));
    let path = opts
        .get("--socket")
        .unwrap_or_else(|| die("unlink-own-socket needs --socket PATH"));
    let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    serve_until_dead(opts, &alive);
    println!(
        "unlink-own-socket: pid {} serving on {path}; unlinking it in {after:?}",
        std::process::id()
    );
    announce_ready(opts);
    notify("READY=1");
    std::thread::sleep(after);
    std::fs::remove_file(&path).unwrap_or_else(|e| die(&format!("unlink {path}: {e}")));
    after_fault(
        opts,
        &format!("unlink-own-socket: unlinked {path}; the listener lives on"),
    );
}

fn slow_ready(opts: &Opts) {
    let after = opts.duration("--after", Duration::from_secs(2));
    println!(
        "slow-ready: pid {} will be ready in {after:?}",
        std::process::id()
    );
    notify("STATUS=warming up");
    std::thread::sleep(after);
    notify("READY=1\nSTATUS=ready after warm-up");
    if let Some(f) = opts.get("--stamp") {
        stamp(&f, "ready");
    }
    println!("slow-ready: READY=1 sent");
    sleep_forever();
}

fn watchdog_stall(opts: &Opts) {
    let after = opts.duration("--after", Duration::from_secs(2));
    // Ping at half the period the supervisor asked for (as sd_watchdog_enabled suggests).
    let usec: u64 = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let every = opts.duration("--every", Duration::from_micros(usec / 2));
    println!(
        "watchdog-stall: pid {} (WATCHDOG_PID={}) pinging every {every:?} for {after:?}, then stalling",
        std::process::id(),
        std::env::var("WATCHDOG_PID").unwrap_or_default()
    );
    notify("READY=1");
    let end = std::time::Instant::now() + after;
    while std::time::Instant::now() < end {
        notify("WATCHDOG=1");
        std::thread::sleep(every);
    }
    after_fault(opts, "watchdog-stall: stalled (no more WATCHDOG=1)");
}

/// Send sd_notify messages in order, then stay up (for tests of the protocol).
fn notify_script(msgs: &[String]) {
    for m in msgs {
        notify(&m.replace("\\n", "\n"));
        std::thread::sleep(Duration::from_millis(300));
    }
    sleep_forever();
}

fn leak_fds(opts: &Opts) {
    let per_sec: u64 = opts
        .get("--per-sec")
        .map(|n| n.parse().unwrap_or_else(|_| die("--per-sec: not a number")))
        .unwrap_or(10);
    println!(
        "leak-fds: pid {} leaking {per_sec} fds a second",
        std::process::id()
    );
    notify("READY=1");
    let gap = Duration::from_secs_f64(1.0 / per_sec.max(1) as f64);
    let mut leaked = 0u64;
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => {
                std::mem::forget(f);
                leaked += 1;
                if leaked.is_multiple_of(100) {
                    println!("leak-fds: {leaked} leaked");
                }
            }
            Err(e) => eprintln!("leak-fds: open failed: {e}"),
        }
        std::thread::sleep(gap);
    }
}

/// Seed 000: a pending connection, no fds left, and an accept loop with no backoff that logs
/// every EMFILE.
fn emfile_spin() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| die(&format!("bind: {e}")));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| die(&format!("addr: {e}")));
    let _pending =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| die(&format!("connect: {e}")));
    println!(
        "emfile-spin: pid {} listening on {addr}; exhausting fds",
        std::process::id()
    );
    notify("READY=1");
    let mut hoard = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hoard.push(f);
    }
    loop {
        match listener.accept() {
            Ok((c, _)) => drop(c),
            Err(e) => eprintln!("ERROR emfile-spin: Socket accept error: {e}"),
        }
    }
}

/// Seed 003: a fresh client per attempt (a file it opened plus a socket), dropped on the
/// floor when the attempt fails instead of closed.
fn reconnect_leak(opts: &Opts) {
    let every = opts.duration("--every", Duration::from_millis(100));
    let port = opts.number("--port", 1) as u16;
    println!(
        "reconnect-leak: pid {} connecting to 127.0.0.1:{port} every {every:?}",
        std::process::id()
    );
    notify("READY=1");
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        // SAFETY: socket(2) and connect(2) on a sockaddr_in we own; the fd is leaked on
        // purpose, with the file opened beside it.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
                },
                sin_zero: [0; 8],
            };
            let r = libc::connect(
                fd,
                (&addr as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            if r == 0 {
                println!("reconnect-leak: connected after {attempts} attempts");
                sleep_forever();
            }
        }
        if let Ok(f) = std::fs::File::open("/dev/null") {
            std::mem::forget(f);
        }
        if attempts.is_multiple_of(100) {
            println!("reconnect-leak: {attempts} attempts failed");
        }
        std::thread::sleep(every);
    }
}

/// A thread pings the watchdog on a timer while the loop that does the work is deadlocked:
/// the ping proves nothing.
fn stuck_loop(opts: &Opts) {
    let after = opts.duration("--after", Duration::from_secs(2));
    let usec: u64 = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    std::thread::spawn(move || loop {
        notify("WATCHDOG=1");
        std::thread::sleep(Duration::from_micros(usec / 2));
    });
    println!(
        "stuck-loop: pid {} working; the loop deadlocks in {after:?}",
        std::process::id()
    );
    notify("READY=1");
    std::thread::sleep(after);
    println!("stuck-loop: the loop is deadlocked; the watchdog thread keeps pinging");
    // The loop waits on something that never comes (a lock its own caller holds).
    loop {
        std::thread::park();
    }
}

fn mem_grow(opts: &Opts) {
    let mb = opts.number("--mb-per-sec", 10) as usize;
    println!(
        "mem-grow: pid {} growing {mb} MiB a second",
        std::process::id()
    );
    notify("READY=1");
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; mb << 20]);
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn log_flood(opts: &Opts) {
    let rate = opts.number("--lines-per-sec", 0);
    let until = std::time::Instant::now() + opts.duration("--for", Duration::from_secs(86_400));
    let same = opts.has("--same");
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let (mut n, start) = (0u64, std::time::Instant::now());
    while std::time::Instant::now() < until {
        // Paced in 10 ms steps: as many lines as the rate allows by now.
        let due = match rate {
            0 => n + 1000,
            r => (start.elapsed().as_secs_f64() * r as f64) as u64,
        };
        while n < due {
            let r = if same {
                writeln!(
                    out,
                    "Socket accept error: Too many open files (os error 24)"
                )
            } else {
                writeln!(out, "flood line {n} lorem ipsum dolor sit amet")
            };
            if r.is_err() {
                std::process::exit(1);
            }
            n += 1;
        }
        let _ = out.flush();
        if rate > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = out.flush();
    eprintln!("log-flood: wrote {n} lines");
    sleep_forever()
}
