//! `candor jobs` and `candor run` against a real daemon: a run now and one waited for (exit
//! 0 done, 1 failed, 4 skipped), the table and one job's history, `--json`, refusals, and the
//! job series of /metrics. Skipped (said) by a build whose config does not take jobs yet.

use std::process::Output;
use std::time::Duration;

use candor_scenarios::{get_request, Daemon};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

const CONFIG: &str = r#"
[service.backup]
type = "oneshot"
restart = "never"
command = ["sh", "-c", "echo backing up; sleep 0.2"]
schedule = { every = "1h" }

[service.gated]
type = "oneshot"
restart = "never"
condition = ["test", "-f", "{dir}/enabled"]
command = ["true"]

[service.broken]
type = "oneshot"
restart = "never"
command = ["sh", "-c", "exit 4"]

[service.web]
command = ["sleep", "100000"]
"#;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn run_waits_for_its_run_and_jobs_lists_them_with_their_history() {
    let mut d = Daemon::unstarted(CONFIG);
    let config = d.path("candor.toml");
    let checked = d.cli(&["check", "-c", config.to_str().unwrap()]);
    assert!(checked.status.success(), "{:?}", text(&checked));
    d.spawn();
    d.wait_state("broken", "failed", T);
    d.wait_state("gated", "skipped", T);

    // A run now: said with its run id, not waited for.
    let out = d.cli(&["run", "backup"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("backup: started (run ") && stdout.trim_end().ends_with(')'),
        "{stdout}"
    );
    d.wait_state("backup", "done", T);

    // Waited for: the run's line, and the exit code says how it ended.
    let waited = |name: &str| {
        let out = d.cli(&["run", name, "--wait"]);
        let (stdout, stderr) = text(&out);
        (out.status.code(), stdout, stderr)
    };
    let (code, stdout, stderr) = waited("backup");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("backup: run ") && stdout.contains(" done "),
        "{stdout}"
    );
    let (code, stdout, stderr) = waited("broken");
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("failed exit 4"), "{stdout}");
    let (code, stdout, stderr) = waited("gated");
    assert_eq!(code, Some(4), "{stdout}{stderr}");
    assert!(stdout.contains("skipped (condition exited 1"), "{stdout}");
    std::fs::write(d.path("enabled"), "").unwrap();
    let (code, stdout, stderr) = waited("gated");
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    // --json of a waited run: its history entry.
    let out = d.ok(&["run", "backup", "--wait", "--json"]);
    let run: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["trigger"], "candor run", "{run}");
    assert_eq!(run["result"], "done", "{run}");
    assert!(run["duration_ms"].as_u64().unwrap() >= 200, "{run}");

    // Not a oneshot, not a service: refused with the daemon's sentence.
    let out = d.cli(&["run", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("oneshot"), "{:?}", text(&out));
    let out = d.cli(&["run", "nope"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out).1.contains("no service named `nope`"),
        "{:?}",
        text(&out)
    );

    // The list: jobs only (not web), by name; newest run first.
    let all: Value = serde_json::from_str(&d.ok(&["jobs", "--json"])).unwrap();
    let names: Vec<&str> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["backup", "broken", "gated"], "{all}");
    let backup = &all["jobs"][0];
    assert_eq!(backup["history"][0]["trigger"], "candor run", "{backup}");
    assert!(backup["counts"]["done"].as_u64().unwrap() >= 3, "{backup}");
    assert!(backup["next_ms"].as_i64().is_some(), "{backup}");
    let table = d.ok(&["jobs"]);
    let head = table.lines().next().unwrap_or_default();
    let columns: Vec<&str> = head.split_whitespace().collect();
    assert_eq!(
        columns,
        ["NAME", "STATE", "SCHEDULE", "NEXT", "LAST", "RUNS"],
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("backup "))
        .expect(&table);
    assert!(
        row.contains("every 1h") && row.contains(" in ") && row.contains("done "),
        "{table}"
    );
    let one = d.ok(&["jobs", "backup"]);
    assert!(one.starts_with("backup: done\n"), "{one}");
    assert!(one.contains(" candor run "), "{one}");
    let out = d.cli(&["jobs", "web"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out).1.contains("not a job"), "{:?}", text(&out));

    // /metrics: each job's runs by result.
    let metrics = d.raw(&get_request("/metrics")).expect("/metrics");
    assert!(
        metrics.contains("candor_job_runs_total{service=\"broken\",result=\"failed\"} "),
        "{metrics}"
    );
    assert!(
        metrics.contains("candor_job_last_success_timestamp_seconds{service=\"backup\"} "),
        "{metrics}"
    );
    d.shutdown();
}
