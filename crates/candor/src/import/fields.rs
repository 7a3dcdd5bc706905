//! Values the PM2, process-compose and compose readers share: seconds and milliseconds as
//! Candor durations, signals by number or name, environment entries, the shell a command
//! needs, and the last pass over a draft (`after` naming a service that was left out).

use std::path::Path;

use serde_json::{json, Value as Json};

use super::draft::{Draft, DraftService};
use super::shell;
use super::yaml::{Node, Value};

/// Whole or fractional seconds as a duration Candor reads ("5s", "1500ms").
pub fn seconds(s: f64) -> String {
    millis((s * 1000.0).round() as u64)
}

/// Milliseconds as a duration Candor reads, in the largest unit that is exact.
pub fn millis(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// A duration as written in the source ("1m30s", "10s"), if Candor reads it the same way.
pub fn duration_text(text: &str) -> Option<String> {
    let t = text.trim();
    candor_spec::parse_duration(t).ok().map(|_| t.to_string())
}

/// The signals Candor can send, by number and name.
const SIGNALS: [(i64, &str); 8] = [
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (9, "SIGKILL"),
    (10, "SIGUSR1"),
    (12, "SIGUSR2"),
    (15, "SIGTERM"),
    (28, "SIGWINCH"),
];

/// A signal given as a number (15) or a name (`TERM`, `SIGTERM`), as Candor names it; None
/// when Candor cannot send it.
pub fn signal(node: &Node) -> Option<String> {
    if let Some(n) = node.int() {
        return SIGNALS
            .iter()
            .find(|(num, _)| *num == n)
            .map(|(_, s)| s.to_string());
    }
    let name = node.as_str()?.trim().to_ascii_uppercase();
    let full = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    SIGNALS
        .iter()
        .find(|(_, s)| *s == full)
        .map(|(_, s)| s.to_string())
}

/// An environment value as the string a process gets (`3` → "3", `true` → "true").
pub fn env_value(node: &Node) -> Option<String> {
    match node.value {
        Value::Null => None,
        _ => node.scalar(),
    }
}

/// A command string as argv: split where no shell is needed, else run through `shell`
/// (`["sh", "-c"]`, process-compose's `["bash", "-c"]`), with the reason in a comment.
pub fn command(svc: &mut DraftService, text: &str, shell: &[String], who: &str) -> Vec<String> {
    let cmd = shell::split(text);
    match cmd.why_shell {
        None => cmd.argv,
        Some(why) => {
            let why = why.trim_end_matches(": run through sh -c");
            let mut argv = shell.to_vec();
            argv.push(text.trim().to_string());
            svc.comments.push(format!(
                "the command {why}: run through `{}`{who}",
                shell.join(" ")
            ));
            argv
        }
    }
}

/// `workdir` made absolute against `dir` (the source file's directory, where `tool` ran its
/// commands from), so the config works wherever it is written: as given when absolute,
/// joined to `dir` when relative, `dir` itself when none was given. A relative program with a
/// `/` (`./bin/api`) is made absolute against it too (Candor would take it as relative to the
/// config's directory).
pub fn workdir(svc: &mut DraftService, dir: &Path, given: Option<&str>, tool: &str) {
    let wd = match given {
        Some(g) if Path::new(g).is_absolute() => Path::new(g).to_path_buf(),
        Some(g) => {
            svc.comments.push(format!(
                "workdir `{g}`: taken as relative to the file's directory"
            ));
            dir.join(g).components().collect()
        }
        None => {
            svc.comments.push(format!(
                "workdir: the file's directory, where {tool} runs it from"
            ));
            dir.to_path_buf()
        }
    };
    if let Some((_, Json::Array(argv))) = svc.keys.iter_mut().find(|(k, _)| k == "command") {
        if let Some(Json::String(first)) = argv.first_mut() {
            if first.contains('/') && Path::new(first.as_str()).is_relative() {
                let abs: std::path::PathBuf = wd.join(first.as_str()).components().collect();
                *first = abs.to_string_lossy().into_owned();
            }
        }
    }
    svc.set("workdir", wd.to_string_lossy().as_ref());
}

/// The draft's comments ended with a full stop, as the other readers write theirs (a comment
/// that starts with a key keeps its lower case: `backoff_seconds 2: …`).
pub fn sentences(draft: &mut Draft) {
    let all = draft.header.iter_mut().chain(
        draft
            .services
            .iter_mut()
            .flat_map(|s| s.comments.iter_mut()),
    );
    for c in all {
        if !c.ends_with(['.', '!', '?']) {
            c.push('.');
        }
    }
}

/// Drops each `after` target that names no service of the draft (one left out, disabled
/// or misspelt), with a warning at the service's line: Candor's check refuses them.
pub fn drop_missing_after(draft: &mut Draft) {
    let names: Vec<String> = draft.services.iter().map(|s| s.name.clone()).collect();
    let mut warnings = Vec::new();
    for svc in &mut draft.services {
        for (key, value) in &mut svc.keys {
            let Json::Array(items) = value else { continue };
            if key != "after" {
                continue;
            }
            items.retain(|item| {
                let name = item.as_str().unwrap_or_default();
                let known = names.iter().any(|n| n == name);
                if !known {
                    warnings.push((
                        svc.line,
                        format!(
                            "`{}` depends on `{name}`, which is not in the output (left out, \
                             or not defined): the dependency was dropped; add it by hand once \
                             `{name}` runs under Candor",
                            svc.name
                        ),
                    ));
                }
                known
            });
        }
        svc.keys
            .retain(|(k, v)| !(k == "after" && v.as_array().is_some_and(|a| a.is_empty())));
    }
    for (line, text) in warnings {
        draft.warn(line, text);
    }
}

/// The value a key was last set to in a service.
pub fn key<'a>(svc: &'a DraftService, name: &str) -> Option<&'a Json> {
    svc.keys
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Makes `name` a oneshot because a dependent waits for it to complete, when nothing of it
/// says it runs for good (not restarted always, no probe, replicas or other key a oneshot
/// may not have); else a
/// warning at `line` that Candor waits for it to be ready, not to complete.
pub fn make_oneshot(draft: &mut Draft, name: &str, dependent: &str, line: usize) {
    let Some(svc) = draft.services.iter_mut().find(|s| s.name == name) else {
        return;
    };
    if key(svc, "type").is_some() {
        return;
    }
    let restart = key(svc, "restart")
        .and_then(Json::as_str)
        .unwrap_or("always");
    // The keys Candor refuses on a oneshot (candor-spec's NOT_FOR_ONESHOTS).
    let blockers: Vec<&str> = [
        "probe",
        "replicas",
        "update",
        "ready",
        "ready_timeout",
        "watchdog",
        "sockets",
        "on_unhealthy",
        "reload",
        "reload_signal",
    ]
    .into_iter()
    .filter(|k| key(svc, k).is_some())
    .collect();
    if restart != "always" && blockers.is_empty() {
        svc.keys.insert(0, ("type".into(), json!("oneshot")));
        svc.comments.push(format!(
            "type = \"oneshot\": `{dependent}` waits for it to complete successfully, and it \
             is not restarted after it ends; Candor starts `{dependent}` once it is `done`"
        ));
        return;
    }
    let why = if restart == "always" {
        "it is restarted always".to_string()
    } else {
        format!("it has {}", blockers.join(", "))
    };
    draft.warn(
        line,
        format!(
            "`{dependent}` waits for `{name}` to complete successfully, but {why}, so it stays \
             a long-running service and Candor starts `{dependent}` once `{name}` is running; \
             make `{name}` type = \"oneshot\" (without those keys) if it is a task that ends"
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn node(text: &str) -> Node {
        super::super::yaml::load(Path::new("t.yaml"), &format!("v: {text}\n"))
            .unwrap()
            .get("v")
            .unwrap()
            .value
            .clone()
    }

    #[test]
    fn durations_take_the_largest_exact_unit() {
        assert_eq!(seconds(5.0), "5s");
        assert_eq!(seconds(0.5), "500ms");
        assert_eq!(millis(90_000), "90s");
        assert_eq!(millis(120_000), "2m");
        assert_eq!(millis(7_200_000), "2h");
        assert_eq!(millis(1600), "1600ms");
        assert_eq!(duration_text("1m30s").as_deref(), Some("1m30s"));
        assert_eq!(duration_text("soon"), None);
    }

    #[test]
    fn workdir_and_a_relative_program_are_made_absolute() {
        let mut svc = DraftService::new("a", 1);
        svc.set("command", json!(["./bin/api", "./x"]));
        workdir(&mut svc, Path::new("/srv/app"), Some("web"), "pm2");
        assert_eq!(
            key(&svc, "command"),
            Some(&json!(["/srv/app/web/bin/api", "./x"]))
        );
        assert_eq!(key(&svc, "workdir"), Some(&json!("/srv/app/web")));
        let mut svc = DraftService::new("a", 1);
        svc.set("command", json!(["python3", "app.py"]));
        workdir(&mut svc, Path::new("/srv/app"), None, "pm2");
        assert_eq!(key(&svc, "command"), Some(&json!(["python3", "app.py"])));
        assert_eq!(key(&svc, "workdir"), Some(&json!("/srv/app")));
        let mut svc = DraftService::new("a", 1);
        workdir(&mut svc, Path::new("/srv/app"), Some("/opt"), "pm2");
        assert_eq!(key(&svc, "workdir"), Some(&json!("/opt")));
    }

    #[test]
    fn comments_become_sentences() {
        let mut d = Draft::default();
        d.header.push("Schema 0.5: nothing to do".into());
        let mut svc = DraftService::new("a", 1);
        svc.comments.push("backoff_seconds 2: fixed".into());
        svc.comments.push("Done.".into());
        d.services.push(svc);
        sentences(&mut d);
        assert_eq!(d.header, ["Schema 0.5: nothing to do."]);
        assert_eq!(
            d.services[0].comments,
            ["backoff_seconds 2: fixed.", "Done."]
        );
    }

    #[test]
    fn signals_by_number_or_name() {
        assert_eq!(signal(&node("15")).as_deref(), Some("SIGTERM"));
        assert_eq!(signal(&node("INT")).as_deref(), Some("SIGINT"));
        assert_eq!(signal(&node("SIGQUIT")).as_deref(), Some("SIGQUIT"));
        assert_eq!(signal(&node("SIGPWR")), None);
        assert_eq!(signal(&node("7")), None);
    }

    #[test]
    fn a_command_needing_a_shell_says_so() {
        let mut svc = DraftService::new("a", 1);
        let sh = ["bash".to_string(), "-c".to_string()];
        assert_eq!(
            command(&mut svc, "./server --port 80", &sh, ""),
            ["./server", "--port", "80"]
        );
        assert!(svc.comments.is_empty());
        let argv = command(&mut svc, "a | b", &sh, ", as process-compose runs it");
        assert_eq!(argv, ["bash", "-c", "a | b"]);
        assert_eq!(
            svc.comments,
            ["the command uses a pipe: run through `bash -c`, as process-compose runs it"]
        );
    }

    #[test]
    fn after_naming_a_service_left_out_is_dropped_with_a_warning() {
        let mut d = Draft::default();
        let mut a = DraftService::new("a", 3);
        a.set("after", json!(["b", "gone"]));
        d.services.push(a);
        d.services.push(DraftService::new("b", 7));
        let mut c = DraftService::new("c", 9);
        c.set("after", json!(["gone"]));
        d.services.push(c);
        drop_missing_after(&mut d);
        assert_eq!(key(&d.services[0], "after"), Some(&json!(["b"])));
        assert_eq!(key(&d.services[2], "after"), None);
        let lines: Vec<usize> = d.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [3, 9]);
        assert!(
            d.warnings[0].text.contains("`a` depends on `gone`"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn a_dependency_that_must_complete_becomes_a_oneshot_only_when_it_ends() {
        let mut d = Draft::default();
        let mut m = DraftService::new("migrate", 1);
        m.set("restart", "never");
        d.services.push(m);
        let mut w = DraftService::new("web", 5);
        w.set("restart", "always");
        d.services.push(w);
        make_oneshot(&mut d, "migrate", "api", 9);
        assert_eq!(key(&d.services[0], "type"), Some(&json!("oneshot")));
        make_oneshot(&mut d, "web", "api", 9);
        assert_eq!(key(&d.services[1], "type"), None);
        assert_eq!(d.warnings.len(), 1);
        assert!(
            d.warnings[0].text.contains("it is restarted always"),
            "{:?}",
            d.warnings
        );
    }
}
