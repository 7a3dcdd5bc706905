//! The OTLP/HTTP receiver of the forwarding tests (otlp_receiver.py, which decodes with PyPI's
//! opentelemetry-proto): started on a port of its own, stopped and started again on that port
//! for an outage, told to answer 503; its decoded records read back as JSON.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use candor_scenarios::{free_port, tool, wait_for};
use serde_json::Value;

pub struct Otlp {
    pub port: u16,
    python: String,
    out: PathBuf,
    mode: PathBuf,
    child: Option<Child>,
}

/// The venv's python with opentelemetry-proto (scripts/test.sh makes it in target/), or None
/// after "skipped: …" (a failure where CANDOR_REQUIRE_ROOT=1).
fn python() -> Option<String> {
    let python = std::env::var("CANDOR_OTLP_PYTHON").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/otlp-proto/bin/python"
        )
        .to_string()
    });
    let import = "import opentelemetry.proto.collector.logs.v1.logs_service_pb2";
    tool(
        &python,
        &["-c", import],
        "PyPI's opentelemetry-proto is not installed (scripts/test.sh puts it in target/otlp-proto)",
    )
    .then_some(python)
}

impl Otlp {
    /// A receiver writing into `dir`, or None (skipped) without opentelemetry-proto.
    pub fn start(dir: &Path) -> Option<Otlp> {
        let mut otlp = Otlp {
            port: free_port(),
            python: python()?,
            out: dir.join("otlp.jsonl"),
            mode: dir.join("otlp.mode"),
            child: None,
        };
        otlp.up();
        Some(otlp)
    }

    /// `http://127.0.0.1:PORT`, the `otlp =` of the config.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start the receiver (again, on the same port) and wait until it listens.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "the OTLP receiver is already up");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/forward/otlp_receiver.py");
        // The port was just free, or was ours until `down`: a bind may find it in TIME_WAIT
        // for a moment (the server sets SO_REUSEADDR) — try again until it binds.
        let child = wait_for(
            "the OTLP receiver to listen",
            Duration::from_secs(20),
            || {
                let mut child = Command::new(&self.python)
                    .arg(script)
                    .arg(self.port.to_string())
                    .arg(&self.out)
                    .arg(&self.mode)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("start otlp_receiver.py");
                let mut first = String::new();
                let stdout = child.stdout.take().expect("its stdout");
                let _ = BufReader::new(stdout).read_line(&mut first);
                if first.starts_with("listening") {
                    Some(child)
                } else {
                    let _ = child.kill();
                    let _ = child.wait();
                    None
                }
            },
        );
        self.child = Some(child);
    }

    /// Stop it: the port refuses connections until `up`.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// While `on`, every request is answered 503 and nothing kept.
    #[allow(dead_code)] // not every test that includes this module uses it
    pub fn answer_503(&self, on: bool) {
        std::fs::write(&self.mode, if on { "503" } else { "" }).expect("write the mode file");
    }

    /// Every log record received so far, in the order received.
    pub fn records(&self) -> Vec<Value> {
        read_lines(&self.out)
    }

    /// Every metric data point received so far, in the order received.
    #[allow(dead_code)] // not every test that includes this module uses it
    pub fn points(&self) -> Vec<Value> {
        let mut path = self.out.clone().into_os_string();
        path.push(".metrics");
        read_lines(Path::new(&path))
    }
}

/// The JSON lines of a receiver's file (whole lines only); a request that did not decode fails
/// the test.
fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line from the receiver");
            assert!(v.get("error").is_none(), "a request did not decode: {v}");
            v
        })
        .collect()
}

impl Drop for Otlp {
    fn drop(&mut self) {
        self.down();
    }
}
