//! What operators look at: `/metrics` read by a real Prometheus parser (Python's
//! prometheus_client, Debian's python3-prometheus-client, installed by scripts/test.sh), and
//! `candor status NAME` with its probe and sockets.

use std::process::Command;
use std::time::Duration;

use candor_scenarios::{available, free_port, wait_for, Daemon};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// The exposition parsed by prometheus_client: `{family: {type, help, samples: [[name,
/// labels, value]]}}`, or None when the parser is not installed.
fn parse_exposition(text: &str) -> Option<Value> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "help": f.documentation,
                   "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;
    let python = ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import prometheus_client"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !available(
        "CANDOR_REQUIRE_ROOT",
        "python3's prometheus_client is not installed (scripts/test.sh installs Debian's python3-prometheus-client as root)",
        python.is_some(),
    ) {
        return None;
    }
    use std::io::Write;
    let mut child = Command::new(python.unwrap())
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// The value of the sample `name` with exactly these labels.
fn sample(fams: &Value, family: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    fams[family]["samples"].as_array()?.iter().find_map(|s| {
        let l = s[1].as_object()?;
        (s[0] == name
            && l.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(*v)))
        .then(|| s[2].as_f64())?
    })
}

#[test]
fn metrics_are_valid_exposition_with_every_family_and_the_values_status_shows() {
    let port = free_port();
    let d = Daemon::start(&format!(
        r#"
[service.web]
command = ["{{zoo}}", "healthy", "--port", "{port}"]
probe = {{ http = {{ port = {port}, path = "/health" }}, every = "200ms" }}

[service.chatty]
command = ["sh", "-c", "while true; do echo out; echo err >&2; sleep 0.05; done"]

[service.flood]
command = ["{{zoo}}", "log-flood", "--lines-per-sec", "0", "--for", "1s"]
logs = {{ rate = 10, burst = 10 }}

[service.leaky]
command = ["{{zoo}}", "leak-fds", "--per-sec", "40"]
limits = {{ nofile = 512 }}

[service.crashy]
command = ["{{zoo}}", "crash-loop", "--after", "10ms", "--code", "1"]
restart = "never"
"#
    ));
    d.wait_state("web", "running", T);
    d.wait_state("crashy", "failed", T);
    wait_for("a fd trend, probes and suppressed lines", T, || {
        let leaky = d.status("leaky");
        let flood = d.status("flood");
        (leaky["fds"]["per_hour"].as_f64()? > 0.0
            && flood["logs"]["dropped"].as_u64()? > 0
            && d.status("web")["probes"][0]["ok"].as_bool()?)
        .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500)); // a few more probes of web
    let raw = d
        .raw(&candor_scenarios::get_request("/metrics"))
        .expect("an answer");
    assert!(
        raw.contains("Content-Type: text/plain; version=0.0.4")
            || raw.contains("content-type: text/plain; version=0.0.4"),
        "{raw}"
    );
    let body = &raw[raw.find("\r\n\r\n").unwrap() + 4..];
    let Some(f) = parse_exposition(body) else {
        return;
    };
    // Every family of DESIGN.md, with its type and a HELP.
    for (name, kind) in [
        ("candor_service_up", "gauge"),
        ("candor_service_state", "gauge"),
        ("candor_service_restarts", "counter"),
        ("candor_service_open_fds", "gauge"),
        ("candor_service_max_fds", "gauge"),
        ("candor_service_fd_growth_per_hour", "gauge"),
        ("candor_service_resident_memory_bytes", "gauge"),
        ("candor_probe_duration_seconds", "histogram"),
        ("candor_probe_failures", "counter"),
        ("candor_log_lines", "counter"),
        ("candor_log_dropped", "counter"),
        ("candor_log_suppressed", "counter"),
        ("candor_daemon_open_fds", "gauge"),
        ("candor_daemon_max_fds", "gauge"),
        ("candor_daemon_resident_memory_bytes", "gauge"),
    ] {
        assert_eq!(f[name]["type"], kind, "{name}: {}", f[name]);
        assert!(
            !f[name]["help"].as_str().unwrap_or("").is_empty(),
            "{name} has no HELP"
        );
    }
    // The state, one-hot, agrees with candor status.
    for svc in ["web", "chatty", "flood", "leaky", "crashy"] {
        let state = d.status(svc)["state"].as_str().unwrap().to_string();
        let ones: Vec<String> = f["candor_service_state"]["samples"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s[1]["service"] == svc && s[2] == 1.0)
            .map(|s| s[1]["state"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ones, std::slice::from_ref(&state), "{svc}");
        let up = sample(
            &f,
            "candor_service_up",
            "candor_service_up",
            &[("service", svc), ("state", &state)],
        );
        assert_eq!(
            up,
            Some(if state == "running" { 1.0 } else { 0.0 }),
            "{svc}"
        );
    }
    assert_eq!(
        sample(
            &f,
            "candor_service_state",
            "candor_service_state",
            &[("service", "crashy"), ("state", "failed")]
        ),
        Some(1.0)
    );
    // fds against the limit, and the leak's trend.
    assert_eq!(
        sample(
            &f,
            "candor_service_max_fds",
            "candor_service_max_fds",
            &[("service", "leaky")]
        ),
        Some(512.0)
    );
    let growth = sample(
        &f,
        "candor_service_fd_growth_per_hour",
        "candor_service_fd_growth_per_hour",
        &[("service", "leaky")],
    )
    .unwrap();
    assert!(growth > 1000.0, "40 fds a second is {growth} an hour?");
    assert!(
        sample(
            &f,
            "candor_service_resident_memory_bytes",
            "candor_service_resident_memory_bytes",
            &[("service", "web")]
        )
        .unwrap()
            > 0.0
    );
    // The probe histogram: cumulative buckets ending at the count, a sum, kind as a label.
    let web = [("service", "web"), ("kind", "http")];
    let count = sample(
        &f,
        "candor_probe_duration_seconds",
        "candor_probe_duration_seconds_count",
        &web,
    )
    .unwrap();
    assert!(count >= 3.0, "{count} probes");
    let inf = sample(
        &f,
        "candor_probe_duration_seconds",
        "candor_probe_duration_seconds_bucket",
        &[web[0], web[1], ("le", "+Inf")],
    );
    assert_eq!(inf, Some(count));
    let mut last = 0.0;
    for le in [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
    ] {
        let v = sample(
            &f,
            "candor_probe_duration_seconds",
            "candor_probe_duration_seconds_bucket",
            &[web[0], web[1], ("le", le)],
        )
        .unwrap_or_else(|| panic!("no bucket le={le}: {}", f["candor_probe_duration_seconds"]));
        assert!(v >= last, "buckets are cumulative");
        last = v;
    }
    assert!(
        sample(
            &f,
            "candor_probe_duration_seconds",
            "candor_probe_duration_seconds_sum",
            &web
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(
            &f,
            "candor_probe_failures",
            "candor_probe_failures_total",
            &web
        ),
        Some(0.0)
    );
    // Log lines per stream; the flood's lines over its rate limit are suppressed, not dropped.
    for stream in ["stdout", "stderr"] {
        let n = sample(
            &f,
            "candor_log_lines",
            "candor_log_lines_total",
            &[("service", "chatty"), ("stream", stream)],
        )
        .unwrap();
        assert!(n > 0.0, "chatty {stream}");
    }
    let suppressed = sample(
        &f,
        "candor_log_suppressed",
        "candor_log_suppressed_total",
        &[("service", "flood"), ("stream", "stdout")],
    )
    .unwrap();
    assert!(suppressed > 0.0, "{}", f["candor_log_suppressed"]);
    // Every metric the committed Grafana dashboard asks for is one this daemon serves.
    let served: std::collections::BTreeSet<String> = f
        .as_object()
        .unwrap()
        .values()
        .flat_map(|fam| fam["samples"].as_array().unwrap().iter())
        .map(|s| s[0].as_str().unwrap().to_string())
        .collect();
    let grafana = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/grafana/candor.json"
    ))
    .unwrap();
    let asked: std::collections::BTreeSet<String> = grafana
        .match_indices("candor_")
        .map(|(i, _)| {
            grafana[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .filter(|n: &String| n != "candor_")
        .collect();
    assert!(asked.len() >= 10, "{asked:?}");
    for name in &asked {
        assert!(
            served.contains(name),
            "the Grafana dashboard asks for `{name}`, which /metrics does not serve"
        );
    }
    // The daemon itself.
    let info = d.info();
    assert!(sample(&f, "candor_daemon_open_fds", "candor_daemon_open_fds", &[]).unwrap() > 0.0);
    assert_eq!(
        sample(&f, "candor_daemon_max_fds", "candor_daemon_max_fds", &[]),
        info["resources"]["fd_limit"].as_f64()
    );
}

#[test]
fn status_of_one_service_shows_its_last_probe_and_each_declared_socket() {
    let (port, dead_port) = (free_port(), free_port());
    let d = Daemon::start(&format!(
        r#"
[service.api]
command = ["{{zoo}}", "healthy", "--port", "{port}", "--socket", "{{dir}}/api.sock"]
probe = {{ http = {{ port = {port}, path = "/health" }}, every = "200ms" }}
sockets = ["{{dir}}/api.sock"]
on_unhealthy = "alert"

[service.dead]
command = ["{{zoo}}", "handler-dead", "--after", "300ms", "--port", "{dead_port}"]
probe = {{ http = {{ port = {dead_port}, path = "/health" }}, every = "200ms" }}
on_unhealthy = "alert"
"#
    ));
    d.wait_state("api", "running", T);
    let sock = d.path("api.sock").display().to_string();
    let out = wait_for("a probe and a socket check", T, || {
        let out = d.ok(&["status", "api"]);
        (out.contains("  probe:    http ok (HTTP 200) in ") && out.contains("  socket:   "))
            .then_some(out)
    });
    assert!(
        out.contains(&format!(
            "  socket:   {sock} on disk, accepts connections\n"
        )),
        "{out}"
    );
    wait_for("the fds and memory lines", T, || {
        let out = d.ok(&["status", "api"]);
        (out.contains("  fds:      ") && out.contains(" resident\n")).then_some(())
    });
    d.wait_state("dead", "unhealthy", T);
    let out = d.ok(&["status", "dead"]);
    assert!(
        out.contains("  probe:    http FAILED (connection closed before response) in "),
        "{out}"
    );
    // The socket file goes: the status says so.
    std::fs::remove_file(&sock).unwrap();
    wait_for("the missing socket", T, || {
        d.ok(&["status", "api"])
            .contains(&format!("  socket:   {sock} MISSING on disk\n"))
            .then_some(())
    });
}

/// `candor top` in a real terminal: tmux runs it, `send-keys` types, `capture-pane` reads the
/// screen.
struct Tmux {
    server: String,
}

impl Tmux {
    /// A tmux server of this test's own, or None (skipped) where tmux is not installed.
    fn new(name: &str) -> Option<Tmux> {
        candor_scenarios::tool(
            "tmux",
            &["-V"],
            "tmux is not installed (scripts/test.sh installs Debian's tmux as root)",
        )
        .then(|| Tmux {
            server: format!("candor-{name}-{}", std::process::id()),
        })
    }
    /// Run `cmd` in a new session `top` of this size.
    fn start(&self, cmd: &str, width: u16, height: u16) {
        let (w, h) = (width.to_string(), height.to_string());
        let r = self.run(&["new-session", "-d", "-s", "top", "-x", &w, "-y", &h, cmd]);
        assert!(r.status.success(), "{r:?}");
    }
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .args(args)
            .output()
            .expect("tmux")
    }
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }
    fn keys(&self, keys: &str) {
        assert!(self.run(&["send-keys", "-t", "top", keys]).status.success());
    }
    fn wait_screen(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let found = (0..300).find_map(|_| {
            last = self.screen();
            if f(&last) {
                return Some(last.clone());
            }
            std::thread::sleep(Duration::from_millis(100));
            None
        });
        found.unwrap_or_else(|| panic!("waited 30s for {what}; the screen:\n{last}"))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn candor_top_sorts_by_trouble_follows_a_service_restarts_it_and_resizes() {
    let Some(tmux) = Tmux::new("top") else {
        return;
    };
    let d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]

[service.crashy]
command = ["{zoo}", "crash-loop", "--after", "10ms", "--code", "3"]
restart = "never"

[service.leaky]
command = ["{zoo}", "leak-fds", "--per-sec", "20"]
limits = { nofile = 512 }
"#,
    );
    d.wait_state("crashy", "failed", T);
    let old = d.wait_state("leaky", "running", T)["pid"].as_u64().unwrap();
    let cmd = format!(
        "{} --socket {} top",
        candor_scenarios::candor_bin().display(),
        d.socket.display()
    );
    tmux.start(&cmd, 120, 36);
    // Sorted by trouble: the failed service first, then the running ones by name.
    let screen = tmux.wait_screen("the table", |s| s.contains("web ") && s.contains("leaky"));
    let order: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.starts_with("NAME"))
        .skip(1)
        .take(3)
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(order, ["crashy", "leaky", "web"], "{screen}");
    assert!(
        screen.contains("crashy failed"),
        "the selected service's pane: {screen}"
    );
    assert!(screen.contains("exited with code 3"), "{screen}");
    // Down to leaky: its fds against its limit, and its log pane.
    tmux.keys("j");
    tmux.wait_screen("leaky's fds and logs", |s| {
        s.contains("fds ")
            && s.contains("/512")
            && s.contains(" logs of leaky ")
            && s.contains("leak-fds: pid")
    });
    // Restart it: asked first, then done; a new pid shows.
    tmux.keys("r");
    tmux.wait_screen("the question", |s| s.contains("restart leaky? y/n"));
    tmux.keys("y");
    let new = wait_for("a new run of leaky", T, || {
        let s = d.status("leaky");
        let pid = s["pid"].as_u64()?;
        (pid != old && s["state"] == "running").then_some(pid)
    });
    tmux.wait_screen("the new pid on the screen", |s| {
        s.contains(&new.to_string()) && s.contains("leaky: restart requested")
    });
    // Help, and any key closes it.
    tmux.keys("?");
    tmux.wait_screen("the help", |s| s.contains("candor top: keys"));
    tmux.keys("a");
    tmux.wait_screen("the help gone", |s| !s.contains("candor top: keys"));
    // A small window: redrawn to fit, nothing wider than it.
    assert!(tmux
        .run(&["resize-window", "-t", "top", "-x", "70", "-y", "20"])
        .status
        .success());
    let small = tmux.wait_screen("the small layout", |s| {
        s.lines().count() <= 20 && s.contains("NAME") && s.lines().all(|l| l.chars().count() <= 70)
    });
    assert!(small.contains("leaky"), "{small}");
    // q quits and leaves the daemon running.
    tmux.keys("q");
    wait_for("top to exit", T, || {
        (!tmux.run(&["has-session", "-t", "top"]).status.success()).then_some(())
    });
    assert_eq!(d.status("web")["state"], "running");
}

#[test]
fn candor_up_shows_the_same_view_and_q_stops_every_service() {
    let Some(tmux) = Tmux::new("up") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("candor.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{}/state\"\n\n[service.web]\ncommand = [\"{}\", \"healthy\", \"--stamp\", \"{}/stamps\"]\n",
            dir.path().display(),
            candor_scenarios::zoo().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let cmd = format!(
        "{} up -c {}",
        candor_scenarios::candor_bin().display(),
        config.display()
    );
    tmux.start(&cmd, 120, 30);
    tmux.wait_screen("web running in candor up's view", |s| {
        s.contains("web ") && s.contains("running") && s.contains("(q stops every service)")
    });
    // Under the header: how to reach this daemon from another terminal.
    let reach = format!(
        "from another terminal: export CANDOR_SOCKET={}/state/candor.sock",
        dir.path().display()
    );
    tmux.wait_screen("how to reach it in candor up's view", |s| {
        s.contains(&reach)
    });
    let stamps = candor_scenarios::read_stamps(&dir.path().join("stamps"));
    let pid = stamps[0].2;
    assert!(candor_scenarios::alive(pid));
    tmux.keys("q");
    wait_for("candor up to exit", T, || {
        (!tmux.run(&["has-session", "-t", "top"]).status.success()).then_some(())
    });
    wait_for("web stopped with it", T, || {
        (!candor_scenarios::alive(pid)).then_some(())
    });
}
