//! Jobs exported: a oneshot as a Job or `Type=oneshot`, a schedule as a CronJob or a timer to
//! make, a condition as `ExecCondition=`, and a warning for each thing that does not map.

use std::path::Path;

use super::kubernetes::{manifests, Images};
use super::systemd::units;

fn spec(toml: &str) -> candor_spec::Spec {
    candor_spec::parse_str(Path::new("/x/candor.toml"), toml).unwrap()
}

fn kubernetes(toml: &str) -> (String, Vec<String>) {
    let (text, _, warnings) = manifests(
        &spec(toml),
        &Images::parse(&["img:1".into()], &spec(toml)).unwrap(),
    );
    (text, warnings)
}

/// The service unit of the only service, and the warnings.
fn systemd(toml: &str) -> (String, Vec<String>) {
    let s = spec(toml);
    let svc = s.services.values().next().unwrap();
    let (files, warnings) = units(svc, Path::new("/x"));
    (files[0].1.clone(), warnings)
}

#[test]
fn a_oneshot_is_a_job_with_its_retries_and_timeout() {
    let (text, warnings) = kubernetes(
        r#"
[service.migrate]
command = ["/bin/migrate"]
type = "oneshot"
restart = "on-failure"
retries = 4
timeout = "10m"
condition = ["test", "-f", "/etc/app/enabled"]
"#,
    );
    assert!(text.contains("kind: \"Job\"\n"), "{text}");
    assert!(text.contains("  backoffLimit: 4\n"), "{text}");
    assert!(text.contains("activeDeadlineSeconds: 600\n"), "{text}");
    assert!(text.contains("restartPolicy: \"Never\"\n"), "{text}");
    assert_eq!(
        warnings,
        ["warning: migrate: condition (test -f /etc/app/enabled) has no Kubernetes equivalent: run it first in the container's command (exit 0 goes on), or as an initContainer (which fails the pod where Candor skips the start)"]
    );
    // A plain oneshot is never retried; on-failure without a count takes Kubernetes' default.
    let (text, _) = kubernetes("[service.once]\ncommand = [\"/bin/x\"]\ntype = \"oneshot\"\n");
    assert!(text.contains("  backoffLimit: 0\n"), "{text}");
    let (text, warnings) = kubernetes(
        "[service.once]\ncommand = [\"/bin/x\"]\ntype = \"oneshot\"\nrestart = \"on-failure\"\n",
    );
    assert!(text.contains("  backoffLimit: 6\n"), "{text}");
    assert!(
        warnings[0].starts_with("warning: once: retries not given"),
        "{warnings:?}"
    );
}

#[test]
fn a_scheduled_oneshot_is_a_cron_job() {
    let (text, warnings) = kubernetes(
        r#"
[service.backup]
command = ["/bin/backup"]
type = "oneshot"
timeout = "1h"
schedule = { cron = "0 3 * * *", timezone = "Europe/Berlin", catch_up = "once", overlap = "kill-previous" }
"#,
    );
    assert!(text.contains("kind: \"CronJob\"\n"), "{text}");
    assert!(
        text.contains("spec:\n  schedule: \"0 3 * * *\"\n  timeZone: \"Europe/Berlin\"\n  concurrencyPolicy: \"Replace\"\n  jobTemplate:\n    spec:\n      backoffLimit: 0\n"),
        "{text}"
    );
    assert!(
        !text.contains("startingDeadlineSeconds"),
        "catch_up once: {text}"
    );
    assert!(text.contains("activeDeadlineSeconds: 3600\n"), "{text}");
    assert!(warnings.is_empty(), "{warnings:?}");

    for (schedule, policy, deadline, warning) in [
        ("{ cron = \"@hourly\" }", "Forbid", true, None),
        ("{ cron = \"30 0 3 * * *\", overlap = \"queue\" }", "Forbid", true,
         Some("warning: j: schedule (cron \"30 0 3 * * *\") exported as \"0 3 * * *\": Kubernetes schedules by the minute, without seconds")),
        ("{ every = \"15m\", jitter = \"1m\" }", "Forbid", true,
         Some("warning: j: schedule (every 15m) exported as \"*/15 * * * *\": on the clock's minutes, not the job's own phase of the period, and without its jitter (1m)")),
    ] {
        let (text, warnings) = kubernetes(&format!("[service.j]\ncommand = [\"/bin/j\"]\ntype = \"oneshot\"\nschedule = {schedule}\n"));
        assert!(text.contains(&format!("concurrencyPolicy: \"{policy}\"\n")), "{schedule}: {text}");
        assert_eq!(text.contains("startingDeadlineSeconds: 60\n"), deadline, "{schedule}: {text}");
        if let Some(w) = warning {
            assert_eq!(warnings[0], w, "{schedule}");
        }
    }
    let (_, warnings) = kubernetes("[service.j]\ncommand = [\"/bin/j\"]\ntype = \"oneshot\"\nschedule = { every = \"1m\", overlap = \"queue\" }\n");
    assert!(
        warnings
            .iter()
            .any(|w| w
                .starts_with("warning: j: schedule.overlap = queue has no Kubernetes equivalent")),
        "{warnings:?}"
    );
    // A period that divides no hour or day: a Job, and why.
    let (text, warnings) = kubernetes(
        "[service.j]\ncommand = [\"/bin/j\"]\ntype = \"oneshot\"\nschedule = { every = \"7m\" }\n",
    );
    assert!(text.contains("kind: \"Job\"\n"), "{text}");
    assert!(
        warnings[0].contains("(every 7m) has no Kubernetes equivalent"),
        "{warnings:?}"
    );
    // A long-running service's scheduled restart.
    let (text, warnings) = kubernetes("[service.s]\ncommand = [\"/bin/s\"]\nschedule = { cron = \"0 4 * * *\" }\nrestart = \"on-failure\"\nretries = 5\n");
    assert!(text.contains("kind: \"Deployment\"\n"), "{text}");
    let keys: Vec<&str> = warnings
        .iter()
        .map(|w| w.split(' ').nth(2).unwrap())
        .collect();
    assert_eq!(keys, ["retries", "schedule", "restart"], "{warnings:?}");
}

#[test]
fn systemd_runs_a_oneshot_with_its_condition_and_timeout() {
    let (unit, warnings) = systemd(
        r#"
[service.migrate]
command = ["/bin/migrate"]
type = "oneshot"
restart = "on-failure"
retries = 2
timeout = "10m"
condition = ["test", "-f", "/etc/app/enabled"]
"#,
    );
    assert!(
        unit.contains("Type=oneshot\nRemainAfterExit=yes\nExecCondition=\"test\" \"-f\" \"/etc/app/enabled\"\nExecStart=\"/bin/migrate\"\n"),
        "{unit}"
    );
    assert!(unit.contains("Restart=on-failure\n"), "{unit}");
    assert!(unit.contains("TimeoutStartSec=600s\n"), "{unit}");
    assert!(!unit.contains("ExecReload"), "{unit}");
    assert!(unit.contains("WantedBy=multi-user.target"), "{unit}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("warning: migrate: retries (2) has no systemd equivalent"),
        "{warnings:?}"
    );
}

#[test]
fn systemd_says_which_timer_a_schedule_needs() {
    let (unit, warnings) = systemd(
        "[service.backup]\ncommand = [\"/bin/backup\"]\ntype = \"oneshot\"\nschedule = { cron = \"30 2 * * MON-FRI\", timezone = \"Europe/Berlin\", catch_up = \"once\", overlap = \"queue\" }\n",
    );
    assert!(
        unit.contains("Type=oneshot\nExecStart="),
        "no RemainAfterExit: the timer starts it again: {unit}"
    );
    assert!(
        !unit.contains("[Install]"),
        "the timer is enabled, not the service: {unit}"
    );
    assert_eq!(
        warnings,
        [
            "warning: backup: schedule needs a timer: make backup.timer with [Timer] OnCalendar=Mon..Fri *-*-* 02:30:00 Europe/Berlin AccuracySec=1s Persistent=true, and enable the timer, not the service",
            "warning: backup: schedule.overlap = queue has no systemd equivalent: a timer does not start a unit that is still running (as \"skip\")",
        ]
    );
    let (_, warnings) = systemd("[service.j]\ncommand = [\"/bin/j\"]\ntype = \"oneshot\"\nschedule = { every = \"15m\", jitter = \"1m\" }\n");
    assert_eq!(warnings, ["warning: j: schedule needs a timer: make j.timer with [Timer] OnActiveSec=900s OnUnitActiveSec=900s RandomizedDelaySec=60s AccuracySec=1s, and enable the timer, not the service"]);
    let (_, warnings) = systemd("[service.j]\ncommand = [\"/bin/j\"]\ntype = \"oneshot\"\nschedule = { cron = \"0 0 1 * MON\" }\n");
    assert!(
        warnings[0].contains(
            "OnCalendar= of your own (cron \"0 0 1 * MON\" in UTC has no exact OnCalendar= form)"
        ),
        "{warnings:?}"
    );
    let (unit, warnings) =
        systemd("[service.s]\ncommand = [\"/bin/s\"]\nschedule = { cron = \"0 4 * * *\" }\n");
    assert!(
        unit.contains("Type=exec\n") && unit.contains("WantedBy=multi-user.target"),
        "{unit}"
    );
    assert!(warnings[0].contains("(a scheduled restart) needs a timer and a oneshot that runs `systemctl restart s.service`: [Timer] OnCalendar=*-*-* 04:00:00 UTC"), "{warnings:?}");
}
