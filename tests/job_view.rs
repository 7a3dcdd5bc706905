//! How the job scenarios read a job and its runs: `candor jobs --json` (api::Jobs), the event
//! log, and the marks a job's command writes itself.

use std::time::Duration;

use candor_scenarios::{wait_for, Daemon};
use serde_json::Value;

/// Every job as `candor jobs --json` lists it (api::Jobs).
fn listed(d: &Daemon) -> Vec<Value> {
    let out = d.ok(&["jobs", "--json"]);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("candor jobs --json printed no JSON ({e}): {out}"));
    match v {
        Value::Object(mut o) => match o.remove("jobs") {
            Some(Value::Array(jobs)) => jobs,
            other => panic!("candor jobs --json: no `jobs` list: {other:?}"),
        },
        other => panic!("candor jobs --json: not {{\"jobs\": [...]}}: {other}"),
    }
}

/// `name` as an api::Job (`state`, `reason`, `counts`, `history` newest first).
pub fn job(d: &Daemon, name: &str) -> Value {
    listed(d)
        .into_iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("candor jobs --json does not list {name}"))
}

/// The runs of `name`, oldest first.
pub fn runs(d: &Daemon, name: &str) -> Vec<Value> {
    let mut h = job(d, name)["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    h.reverse();
    h
}

/// Wait until the runs of `name` (oldest first) satisfy `enough`; returns them. On timeout
/// the panic shows the runs seen last.
pub fn wait_runs(
    d: &Daemon,
    name: &str,
    what: &str,
    deadline: Duration,
    enough: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let end = std::time::Instant::now() + deadline;
    let last = loop {
        let h = runs(d, name);
        if enough(&h) {
            return h;
        }
        if std::time::Instant::now() >= end {
            break h;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    panic!(
        "timed out after {deadline:?} waiting for {name}: {what}; its runs:\n{}\nstatus: {}",
        serde_json::to_string_pretty(&last).unwrap_or_default(),
        d.status(name)
    );
}

/// Runs that have ended with `result` ("done", "failed", "skipped").
pub fn ended<'a>(runs: &'a [Value], result: &str) -> Vec<&'a Value> {
    runs.iter().filter(|r| r["result"] == result).collect()
}

/// The events of `name` that end a run (or skip a start): `detail.job` is its history entry.
pub fn job_events(d: &Daemon, name: &str) -> Vec<Value> {
    d.events()
        .into_iter()
        .filter(|e| e["service"] == name && e["detail"]["job"].is_object())
        .collect()
}

/// Wait until `name` is in `state` and return its job view.
pub fn wait_job_state(d: &Daemon, name: &str, state: &str, deadline: Duration) -> Value {
    d.wait_state(name, state, deadline);
    wait_for(
        &format!("{name} {state} in its job view"),
        Duration::from_secs(10),
        || Some(job(d, name)).filter(|j| j["state"] == state),
    )
}

/// Unix ms now (the wall clock, as history entries are).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Lines `<word> <unix_ns> <pid>` a job wrote with `echo WORD $(date +%s%N) $$ >> FILE`.
pub fn marks(file: &std::path::Path) -> Vec<(String, i64, u64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let word = f.next()?.to_string();
            let ns: i64 = f.next()?.parse().ok()?;
            let pid: u64 = f.next()?.parse().ok()?;
            Some((word, ns / 1_000_000, pid))
        })
        .collect()
}
