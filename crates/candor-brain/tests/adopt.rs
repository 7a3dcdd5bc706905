//! A daemon's restart, as the brain sees it: the facts saved by one daemon (through JSON, as on
//! disk) are taken up by the next with `adopt`, then `boot`. Nothing is restarted that ran;
//! nothing is shown running on the record alone; deadlines carry over.

mod sim;

use candor_brain::{adopt, boot, Effect, Facts, Found, Input, Reply, Request, Saved, ServiceState};
use candor_core::ExitStatus;
use sim::*;

use ServiceState::*;

/// Save every service as the records do (JSON round trip), start a new brain on `toml`, adopt
/// (`alive`: the services whose recorded pid the shell found alive), boot.
fn restart_daemon(s: &mut Sim, toml: &str, alive: &[&str], same_command: bool) {
    let saved: Vec<(String, String)> = s
        .facts
        .services
        .iter()
        .map(|(n, svc)| {
            let json = serde_json::to_string(&Saved::of(svc)).expect("saved facts serialize");
            (n.to_string(), json)
        })
        .collect();
    let mut facts = Facts::new(&spec(toml), secs(5), s.now.mono);
    let found = saved
        .into_iter()
        .map(|(service, json)| Found {
            alive: alive.contains(&service.as_str()),
            same_command,
            saved: serde_json::from_str(&json).expect("saved facts deserialize"),
            service,
        })
        .collect();
    let mut effects = adopt(&mut facts, found, s.now);
    effects.extend(boot(&mut facts, s.now));
    s.facts = facts;
    s.all.extend(effects.iter().cloned());
    s.last = effects;
}

fn adopted(s: &Sim, name: &str) -> Option<(u32, Option<candor_brain::Mono>)> {
    s.last.iter().find_map(|e| match e {
        Effect::Adopt {
            service,
            pid,
            kill_at,
            ..
        } if service == name => Some((*pid, *kill_at)),
        _ => None,
    })
}

const PROBED: &str = r#"
[service.web]
command = ["/bin/web"]
ready = "notify"
probe = { tcp = "127.0.0.1:8080", every = "5s" }
"#;

#[test]
fn a_probed_run_is_adopted_and_running_again_only_after_a_fresh_probe() {
    let mut s = Sim::new(PROBED);
    let pid = s.spawned("web");
    s.notify("web", &[("READY", "1")]);
    s.probe("web", true, "connected");
    assert_eq!(s.state("web"), Running);

    restart_daemon(&mut s, PROBED, &["web"], true);
    assert_eq!(adopted(&s, "web"), Some((pid, None)));
    assert_eq!(s.spawns("web"), 1, "never spawned again");
    assert_eq!(s.state("web"), Starting);
    assert!(
        s.reason("web")
            .starts_with("re-checking after supervisor restart: "),
        "{}",
        s.reason("web")
    );
    assert!(s
        .last
        .iter()
        .any(|e| matches!(e, Effect::Watch { service, .. } if service == "web")));

    s.probe("web", false, "connection refused");
    assert_eq!(s.state("web"), Starting, "a failing probe is no evidence");
    s.probe("web", true, "connected");
    assert_eq!(s.state("web"), Running);
    let run = s.facts.get("web").unwrap().live().unwrap();
    assert_eq!(run.ready.map(|(_, via)| via), Some("notify"));
    assert_eq!(s.facts.get("web").unwrap().restarts, 0);
}

const PLAIN: &str = r#"
[service.worker]
command = ["/bin/worker"]
restart = "on-failure"
"#;

#[test]
fn a_run_without_a_probe_is_running_again_once_its_pid_is_verified() {
    let mut s = Sim::new(PLAIN);
    let pid = s.up("worker");
    restart_daemon(&mut s, PLAIN, &["worker"], true);
    assert_eq!(adopted(&s, "worker"), Some((pid, None)));
    assert_eq!(s.state("worker"), Running, "{}", s.reason("worker"));
    assert_eq!(s.pid("worker"), Some(pid));
}

#[test]
fn a_run_that_ended_while_no_daemon_ran_is_restarted_by_its_policy_with_the_truth() {
    let mut s = Sim::new(PLAIN);
    s.advance(secs(120));
    let pid = s.up("worker");
    s.advance(secs(120));
    restart_daemon(&mut s, PLAIN, &[], true);
    // Not verified alive: not shown running, and the keeper is asked to find out.
    assert_eq!(adopted(&s, "worker"), Some((pid, None)));
    assert_ne!(s.state("worker"), Running);
    let run_id = s.run_id("worker");
    s.feed(Input::Exited {
        oom_kills: 0,
        service: "worker".into(),
        run_id,
        status: ExitStatus::Unknown,
        at: s.now.mono,
        group_empty: true,
        escalated: false,
    });
    let said = s.notes();
    assert!(
        said.iter().any(|(svc, state, why)| svc == "worker"
            && state == "exited"
            && why
                == &format!("pid {pid} ended while the supervisor was down; exit status unknown")),
        "{said:?}"
    );
    let last = s.facts.get("worker").unwrap().last_exit.unwrap();
    assert_eq!(last.status, ExitStatus::Unknown);
    // A long run: the next start is immediate, as an automatic restart.
    assert!(s.spawn_asked("worker").is_some(), "{:?}", s.last);
    s.spawned("worker");
    assert_eq!(s.facts.get("worker").unwrap().restarts, 1);
}

const CRASHY: &str = r#"
[service.crashy]
command = ["/bin/crashy"]
restart = "always"
backoff = { initial = "10s", max = "1m" }
"#;

#[test]
fn backoff_and_restart_counts_carry_over() {
    let mut s = Sim::new(CRASHY);
    s.spawned("crashy");
    s.exits("crashy", ExitStatus::Code(1));
    assert_eq!(s.state("crashy"), Backoff);
    s.advance(secs(4));
    let due = s.facts.get("crashy").unwrap().start.unwrap().due;
    restart_daemon(&mut s, CRASHY, &[], true);
    assert_eq!(s.state("crashy"), Backoff, "{}", s.reason("crashy"));
    assert!(s.spawn_asked("crashy").is_none(), "not started early");
    // The shell wakes the brain only for the timers it is asked for.
    assert!(s.timers().contains(&due), "{due:?} not in {:?}", s.timers());
    s.advance(secs(5));
    assert!(s.spawn_asked("crashy").is_none());
    s.advance(secs(1));
    assert!(s.spawn_asked("crashy").is_some(), "started when due");
    s.spawned("crashy");
    assert_eq!(s.facts.get("crashy").unwrap().restarts, 1);
    assert_eq!(s.facts.get("crashy").unwrap().streak, 1);
}

const STUBBORN: &str = r#"
[service.stubborn]
command = ["/bin/stubborn"]
stop = { timeout = "10s" }
"#;

#[test]
fn a_stop_under_way_keeps_its_sigkill_deadline() {
    let mut s = Sim::new(STUBBORN);
    let pid = s.up("stubborn");
    s.request(candor_brain::Request::Stop("stubborn".into()));
    let kill_at = s.in_secs(secs(10));
    s.advance(secs(3));
    restart_daemon(&mut s, STUBBORN, &["stubborn"], true);
    assert_eq!(adopted(&s, "stubborn"), Some((pid, Some(kill_at))));
    assert_eq!(s.state("stubborn"), Stopping);
    assert!(
        s.stop_asked("stubborn").is_none(),
        "the stop is not sent again"
    );
    assert!(s.timers().contains(&kill_at), "{:?}", s.timers());
    // The keeper kills it at the deadline; then it stays stopped.
    s.advance(secs(7));
    s.stopped("stubborn");
    assert_eq!(s.state("stubborn"), Stopped);
    assert!(s.spawn_asked("stubborn").is_none());
}

const TWO: &str = r#"
[service.once]
command = ["/bin/once"]
restart = "never"

[service.idle]
command = ["/bin/idle"]
"#;

#[test]
fn a_failed_verdict_and_a_requested_stop_carry_over() {
    let mut s = Sim::new(TWO);
    s.spawned("once");
    s.exits("once", ExitStatus::Code(1));
    assert_eq!(s.state("once"), Failed);
    let why = s.reason("once");
    s.up("idle");
    s.request(candor_brain::Request::Stop("idle".into()));
    s.stopped("idle");
    restart_daemon(&mut s, TWO, &[], true);
    assert_eq!(s.state("once"), Failed);
    assert_eq!(s.reason("once"), why);
    assert_eq!(s.state("idle"), Stopped);
    assert_eq!(s.spawns("once") + s.spawns("idle"), 2, "nothing started");
}

#[test]
fn a_run_of_a_command_no_longer_configured_is_replaced() {
    let mut s = Sim::new(PLAIN);
    s.up("worker");
    restart_daemon(
        &mut s,
        &PLAIN.replace("/bin/worker", "/bin/worker2"),
        &["worker"],
        false,
    );
    assert!(
        s.stop_asked("worker").is_some(),
        "stopped to start the configured command: {:?}",
        s.last
    );
}

#[test]
fn a_run_adopted_twice_before_its_re_check_still_remembers_how_it_was_ready() {
    let mut s = Sim::new(PROBED);
    s.spawned("web");
    s.notify("web", &[("READY", "1")]);
    s.probe("web", true, "connected");
    restart_daemon(&mut s, PROBED, &["web"], true);
    restart_daemon(&mut s, PROBED, &["web"], true);
    assert_eq!(s.state("web"), Starting);
    s.probe("web", true, "connected");
    assert_eq!(s.state("web"), Running);
    let run = s.facts.get("web").unwrap().live().unwrap();
    assert_eq!(run.ready.map(|(_, via)| via), Some("notify"));
}

/// A web service behind a database: `env` and `workdir` are what the tests change.
fn app(env: &str, workdir: &str, daemon: &str) -> String {
    format!(
        r#"
{daemon}
[service.db]
command = ["/bin/db"]

[service.web]
command = ["/bin/web"]
env = {{ MODE = "{env}" }}
workdir = "{workdir}"
after = ["db"]
"#
    )
}

/// The reason of the last recorded event of `service` in state `state`.
fn said(s: &Sim, service: &str, state: &str) -> Option<String> {
    s.all_notes()
        .into_iter()
        .rev()
        .find(|(n, st, _)| n == service && st == state)
        .map(|(_, _, r)| r)
}

fn adopted_changed(s: &Sim, name: &str) -> Vec<String> {
    s.last
        .iter()
        .find_map(|e| match e {
            Effect::Record(n) if n.service == name && n.state == "adopted" => match &n.detail {
                candor_api::EventDetail::Adopted { changed, .. } => Some(changed.clone()),
                _ => None,
            },
            _ => None,
        })
        .expect("an adopted event")
}

#[test]
fn a_run_started_from_another_config_is_stopped_and_started_from_this_one() {
    let old = app("a", "/srv/a", "");
    let mut s = Sim::new(&old);
    s.up("db");
    let pid = s.up("web");
    let new = app("b", "/srv/b", "");
    restart_daemon(&mut s, &new, &["db", "web"], true);
    assert_eq!(adopted(&s, "web").map(|a| a.0), Some(pid));
    assert_eq!(adopted_changed(&s, "web"), ["env", "workdir"]);
    assert_eq!(adopted_changed(&s, "db"), Vec::<String>::new());
    assert!(s.stop_asked("db").is_none(), "db is what it was");
    assert!(s.stop_asked("web").is_some(), "{:?}", s.last);
    assert_eq!(s.state("web"), Stopping);
    assert!(
        s.reason("web").starts_with(
            "config changed while the supervisor was down: env, workdir: SIGTERM sent to the whole group"
        ),
        "{}",
        s.reason("web")
    );
    assert!(said(&s, "web", "adopted").unwrap().contains(
        "but the config changed while the supervisor was down: env, workdir; adopted, restarting it with the config"
    ));
    s.stopped("web");
    assert_eq!(s.spawns("web"), 2, "started again at once");
    let run = s.facts.get("web").unwrap().live().unwrap();
    assert_eq!(
        run.digest.as_ref(),
        Some(&candor_brain::RunDigest::of(
            &spec(&new).services[&candor_spec::ServiceName::new("web").unwrap()]
        ))
    );
    s.spawned("web");
    assert_eq!(s.state("web"), Running, "{}", s.reason("web"));
    assert!(
        !s.reason("web").contains("older config"),
        "{}",
        s.reason("web")
    );
}

#[test]
fn the_restart_waits_for_the_after_targets() {
    let mut s = Sim::new(&app("a", "/srv", ""));
    s.up("db");
    s.up("web");
    // db is gone while the daemon is down: web is stopped, then waits for db again.
    restart_daemon(&mut s, &app("b", "/srv", ""), &["web"], true);
    s.stopped("web");
    assert_eq!(s.spawns("web"), 1, "not before db runs");
    assert!(
        s.reason("web").contains("waiting for db"),
        "{}",
        s.reason("web")
    );
}

#[test]
fn with_keep_the_old_run_stays_and_says_so_until_a_reload_restarts_it() {
    let keep = "[daemon]\nadopt_changed = \"keep\"\n";
    let mut s = Sim::new(&app("a", "/srv/a", keep));
    s.up("db");
    let pid = s.up("web");
    let new = app("b", "/srv/a", keep);
    restart_daemon(&mut s, &new, &["db", "web"], true);
    assert!(s.stop_asked("web").is_none(), "kept: {:?}", s.last);
    assert_eq!(s.pid("web"), Some(pid));
    assert_eq!(adopted_changed(&s, "web"), ["env"]);
    assert_eq!(s.state("web"), Running);
    assert_eq!(
        s.reason("web"),
        format!("running as pid {pid}, ready via started (started from an older config: env differ; restart it to apply)")
    );
    assert!(said(&s, "web", "adopted")
        .unwrap()
        .ends_with("kept (adopt_changed = \"keep\"): it was started from an older config: env differ; restart it to apply"));
    // Still said later, and after another restart of the daemon.
    s.advance(secs(60));
    assert!(s.reason("web").contains("older config: env differ"));
    restart_daemon(&mut s, &new, &["db", "web"], true);
    assert!(s.reason("web").contains("older config: env differ"));

    // A reload of the very config the daemon read is no "unchanged" for it.
    let Reply::Reload(out) = s.request(Request::Reload(arc_spec(&new))) else {
        panic!("not a reload reply");
    };
    assert_eq!(out.changed, ["web"], "{out:?}");
    assert_eq!(out.unchanged, ["db"], "{out:?}");
    assert!(
        out.notes.iter().any(|n| n.starts_with("web: changed: env")),
        "{out:?}"
    );
    assert!(s.stop_asked("web").is_some());
    assert!(
        s.reason("web").starts_with("config changed: "),
        "{}",
        s.reason("web")
    );
    s.stopped("web");
    s.spawned("web");
    assert_eq!(s.state("web"), Running);
    assert!(!s.reason("web").contains("older config"));
    let Reply::Reload(out) = s.request(Request::Reload(arc_spec(&new))) else {
        panic!("not a reload reply");
    };
    assert_eq!(out.unchanged, ["db", "web"], "{out:?}");
}

#[test]
fn a_record_of_an_earlier_version_cannot_be_told_and_is_kept_saying_so() {
    let mut s = Sim::new(PLAIN);
    let pid = s.up("worker");
    // Records written before digests: the same facts, without one.
    let mut json = serde_json::to_value(Saved::of(s.facts.get("worker").unwrap())).unwrap();
    json["run"].as_object_mut().unwrap().remove("digest");
    let mut facts = Facts::new(&spec(PLAIN), secs(5), s.now.mono);
    let found = vec![Found {
        service: "worker".into(),
        saved: serde_json::from_value(json).expect("an old record reads"),
        alive: true,
        same_command: true,
    }];
    let mut effects = adopt(&mut facts, found, s.now);
    effects.extend(boot(&mut facts, s.now));
    s.facts = facts;
    s.all.extend(effects.iter().cloned());
    s.last = effects;
    assert!(s.stop_asked("worker").is_none());
    assert_eq!(s.pid("worker"), Some(pid));
    assert_eq!(s.state("worker"), Running);
    assert!(
        s.reason("worker")
            .contains("cannot be told; restart it to be sure"),
        "{}",
        s.reason("worker")
    );
    let Reply::Reload(out) = s.request(Request::Reload(arc_spec(PLAIN))) else {
        panic!("not a reload reply");
    };
    assert_eq!(out.unchanged, ["worker"]);
    assert!(out.notes[0].contains("cannot be told"), "{out:?}");
}

#[test]
fn an_unchanged_run_is_adopted_as_it_was() {
    let cfg = app("a", "/srv", "");
    let mut s = Sim::new(&cfg);
    s.up("db");
    let pid = s.up("web");
    restart_daemon(&mut s, &cfg, &["db", "web"], true);
    assert!(s.stop_asked("web").is_none());
    assert_eq!(adopted_changed(&s, "web"), Vec::<String>::new());
    assert_eq!(
        s.reason("web"),
        format!("running as pid {pid}, ready via started")
    );
    let Reply::Reload(out) = s.request(Request::Reload(arc_spec(&cfg))) else {
        panic!("not a reload reply");
    };
    assert_eq!(out.unchanged, ["db", "web"]);
    assert!(out.notes.is_empty(), "{out:?}");
}
