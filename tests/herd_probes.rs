//! Herds of probes (issue 27): many services probing one endpoint nobody tuned must not
//! overflow it — the daemon limits the probes in flight to one target, spreads them in time,
//! and a probe it held back is not the service's failure.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candor_scenarios::{free_port, get_request, wait_for, Daemon};
use serde_json::Value;

/// A server process of the test, killed when the test ends (even by a panic).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `python3 ARGS` in `dir` and wait until it accepts on `port`.
fn python(dir: &Path, args: &[&str], port: u16) -> Server {
    let child = Command::new("python3")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 (the scenario tests need it)");
    let server = Server(child);
    wait_for(
        "the python server to listen",
        Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
    );
    server
}

/// Every service's status (`candor status --json`).
fn all(d: &Daemon) -> Vec<Value> {
    serde_json::from_str::<Value>(&d.ok(&["status", "--json"]))
        .expect("status json")
        .as_array()
        .expect("a list")
        .clone()
}

fn restarts(list: &[Value]) -> u64 {
    list.iter().filter_map(|s| s["restarts"].as_u64()).sum()
}

fn count_in(list: &[Value], state: &str) -> usize {
    list.iter().filter(|s| s["state"] == state).count()
}

/// The sum of the samples whose line starts with `prefix`.
fn sum_of(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

fn metrics(d: &Daemon) -> String {
    let raw = d.raw(&get_request("/metrics")).expect("an answer");
    raw[raw.find("\r\n\r\n").expect("a body") + 4..].to_string()
}

/// 300 services started at once, each probing (http, every 5 s, timeout 1 s, 3 failures) one
/// `python3 -m http.server` with its listen backlog of 5. Without a limit on probes in flight
/// the startup probes of all 300 land in the same instants, SYNs past the backlog are dropped,
/// a dropped SYN waits out the whole 1 s timeout, and services fail their probes and are
/// restarted by a supervisor that is itself the overload.
#[test]
fn three_hundred_services_probing_one_small_server_all_run_and_none_is_restarted() {
    const N: usize = 300;
    let port = free_port();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "ok\n").unwrap();
    let _server = python(
        www.path(),
        &[
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ],
        port,
    );
    let mut config = String::new();
    for i in 0..N {
        config.push_str(&format!(
            "[service.herd-{i}]\ncommand = [\"sleep\", \"100000\"]\nprobe = {{ http = {{ port = {port}, path = \"/\" }}, every = \"5s\" }}\n\n"
        ));
    }
    let d = Daemon::start(&config);
    let started = Instant::now();
    wait_for("all 300 services running", Duration::from_secs(120), || {
        let list = all(&d);
        (list.len() == N && count_in(&list, "running") == N).then_some(())
    });
    eprintln!("all {N} running after {:?}", started.elapsed());
    // 60 s of steady probing: 12 rounds of 300 probes, nobody restarted, nobody unhealthy.
    let end = Instant::now() + Duration::from_secs(60);
    let mut worst = 0;
    while Instant::now() < end {
        let list = all(&d);
        let not_running = N - count_in(&list, "running");
        worst = worst.max(not_running);
        assert_eq!(
            restarts(&list),
            0,
            "restarted: {:?}",
            list.iter()
                .filter(|s| s["restarts"].as_u64() > Some(0))
                .map(|s| (
                    s["name"].clone(),
                    s["restarts"].clone(),
                    s["reason"].clone()
                ))
                .take(10)
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let text = metrics(&d);
    // Probes do not wait out their timeout behind a full backlog. Without the gate one in
    // five to ten failed so (525 of 4880, 720 of ~3900 in two runs here, none restarted yet);
    // with it none does, but a probe may still time out now and then on a box busy with
    // other tests (the server not scheduled for a second): one in a hundred is allowed.
    let probes = sum_of(&text, "candor_probe_duration_seconds_count{");
    let failed = sum_of(&text, "candor_probe_failures_total{");
    let held = sum_of(&text, "candor_probe_held_total{");
    eprintln!("probes: {probes}, failed: {failed}, held back: {held}");
    assert_eq!(worst, 0, "services left `running` during the 60 s");
    assert!(probes >= N as f64 * 12.0, "{probes} probes in all");
    assert!(
        failed * 100.0 <= probes,
        "{failed} of {probes} probes failed"
    );
    assert!(
        text.contains("# TYPE candor_probe_held_total counter")
            && text.contains("# HELP candor_probe_held_total ")
            && text.contains("candor_probe_held_total{service=\"herd-0\"} "),
        "{}",
        text.lines()
            .filter(|l| l.contains("held"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A server that answers each request after 200 ms and writes the most requests it ever had
/// in hand at once to a file (counted from a request's arrival to just before its answer is
/// sent: a client that has its answer is no longer counted). Its backlog is large and it has
/// a thread per connection: only the daemon's limit keeps it at one. `GET /reset` starts the
/// count again from the requests in hand, and answers how many they are.
const COUNTING_SERVER: &str = r#"
import http.server, os, sys, threading, time
port, out = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
now = 0
most = 0
def note():
    with open(out + ".tmp", "w") as f:
        f.write(str(most))
    os.replace(out + ".tmp", out)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global now, most
        if self.path == "/reset":
            with lock:
                most = now
                note()
                body = str(now).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with lock:
            now += 1
            if now > most:
                most = now
                note()
        time.sleep(0.2)
        with lock:
            now -= 1
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True
with lock:
    note()
S(("127.0.0.1", port), H).serve_forever()
"#;

/// 20 services probe one slow server with `max_inflight = 1`: the server never has two
/// requests at once, and no service is blamed for the wait (none unhealthy, none restarted).
/// Without the limit, the 20 startup probes arrive together.
#[test]
fn max_inflight_one_keeps_a_target_at_one_request_and_blames_nobody() {
    one_at_a_time("", ", max_inflight = 1");
}

/// The same with the daemon's limit, `[daemon] probe_max_inflight = 1`, set in no service.
#[test]
fn the_daemons_probe_max_inflight_holds_for_services_that_set_none() {
    one_at_a_time("probe_max_inflight = 1\n\n", "");
}

/// The counting server, on its own port.
struct Counting {
    port: u16,
    most: std::path::PathBuf,
    // Killed before its directory goes.
    _server: Server,
    _dir: tempfile::TempDir,
}

impl Counting {
    fn start() -> Counting {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let most = dir.path().join("most");
        let script = dir.path().join("server.py");
        std::fs::write(&script, COUNTING_SERVER).unwrap();
        let server = python(
            dir.path(),
            &[
                script.to_str().unwrap(),
                &port.to_string(),
                most.to_str().unwrap(),
            ],
            port,
        );
        wait_for("the server's count", Duration::from_secs(10), || {
            std::fs::read_to_string(&most).ok()
        });
        let c = Counting {
            port,
            most,
            _server: server,
            _dir: dir,
        };
        assert_eq!(c.most(), 0, "the check that it listens sent no request");
        c
    }

    /// The most requests it had in hand at once.
    fn most(&self) -> u64 {
        std::fs::read_to_string(&self.most)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Count again from now; how many requests are in hand.
    fn reset(&self) -> u64 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(b"GET /reset HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer[answer.find("\r\n\r\n").unwrap() + 4..]
            .trim()
            .parse()
            .unwrap()
    }

    /// The config of `n` services probing it: `daemon` goes in `[daemon]` (the harness starts
    /// the config with it: lines before the first table are in it), `probe` at the end of
    /// each service's probe.
    fn config(&self, n: usize, daemon: &str, probe: &str) -> String {
        let port = self.port;
        let mut config = daemon.to_string();
        for i in 0..n {
            config.push_str(&format!(
                "[service.slow-{i}]\ncommand = [\"sleep\", \"100000\"]\nprobe = {{ http = {{ port = {port}, path = \"/\" }}, every = \"5s\"{probe} }}\n\n"
            ));
        }
        config
    }
}

/// 20 services probing the counting server; `daemon` goes in `[daemon]`, `probe` at the end
/// of each service's probe.
fn one_at_a_time(daemon: &str, probe: &str) {
    const N: usize = 20;
    let server = Counting::start();
    let config = server.config(N, daemon, probe);
    let d = Daemon::start(&config);
    wait_for("all 20 services running", Duration::from_secs(60), || {
        let list = all(&d);
        (list.len() == N && count_in(&list, "running") == N).then_some(())
    });
    // Two more rounds of probes (20 × 200 ms = 4 s of the server's time each 5 s).
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let list = all(&d);
        assert_eq!(count_in(&list, "running"), N, "{list:?}");
        assert_eq!(restarts(&list), 0, "{list:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(server.most(), 1, "requests the server had in hand at once");
    // Probes that waited out their timeout for the one slot were held, not failed.
    let text = metrics(&d);
    // At start the 20 probes come together and only about 5 fit in a 1 s timeout at 200 ms
    // each: the others were held back, none failed.
    let failures = sum_of(&text, "candor_probe_failures_total{");
    let held = sum_of(&text, "candor_probe_held_total{");
    assert!(
        held > 0.0,
        "some probes waited out their timeout for the slot"
    );
    assert_eq!(failures, 0.0, "no probe failed:\n{text}");
}

/// `[daemon] probe_max_inflight` read again by `reload` applies to the next probes: 20
/// services started together reach the default limit (4), and after a reload to 1 they are
/// started together again, and the server has one request at a time.
#[test]
fn a_reload_changes_the_daemons_limit_for_the_next_probes() {
    const N: usize = 20;
    let server = Counting::start();
    let d = Daemon::start(&server.config(N, "", ""));
    let all_running = |d: &Daemon| {
        wait_for("all 20 services running", Duration::from_secs(60), || {
            let list = all(d);
            (list.len() == N && count_in(&list, "running") == N).then_some(())
        })
    };
    all_running(&d);
    let first = server.most();
    assert!(
        (2..=4).contains(&first),
        "20 startup probes at once under the default limit of 4: the server had {first}"
    );
    d.write_config(&server.config(N, "probe_max_inflight = 1\n\n", ""));
    d.ok(&["reload"]);
    // All stopped, and the server done with every request: a probe cut off by its run's end
    // has let go of its slot while the server still works on its request.
    let names: Vec<String> = (0..N).map(|i| format!("slow-{i}")).collect();
    let with_names = |verb: &'static str| {
        let mut args = vec![verb, "--wait"];
        args.extend(names.iter().map(String::as_str));
        d.ok(&args);
    };
    with_names("stop");
    wait_for("no request in hand", Duration::from_secs(10), || {
        (server.reset() == 0).then_some(())
    });
    with_names("start");
    all_running(&d);
    // A round of probes at the new limit too.
    let end = Instant::now() + Duration::from_secs(6);
    while Instant::now() < end {
        assert_eq!(count_in(&all(&d), "running"), N);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        server.most(),
        1,
        "requests in hand at once after the reload"
    );
}
