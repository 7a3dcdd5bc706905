//! `process-compose.yaml` into a draft: each of `processes:` a service — its shell-string
//! `command` (argv, or through process-compose's shell), `depends_on` conditions as `after`,
//! the readiness or liveness probe as Candor's one `probe`, `availability` as `restart` and
//! backoff, `shutdown` as `stop`; every other key a warning at its line.

mod probe;

use std::path::Path;

use serde_json::{json, Map, Value as Json};

use super::draft::{Draft, DraftService};
use super::fields;
use super::yaml::{self, Entry, Node, Value};
use probe::{choose_probe, probe};

/// What the top level says that each process needs.
pub(super) struct Context {
    /// The shell a command that needs one runs through (`shell.shell_command`, `-c`).
    shell: Vec<String>,
    /// Top-level `environment`, under each process's own.
    env: Vec<(String, String)>,
    /// The file's directory, absolute: where process-compose runs processes from.
    dir: std::path::PathBuf,
}

pub fn read(path: &Path, text: &str, draft: &mut Draft) -> anyhow::Result<()> {
    let doc = yaml::load(path, text)?;
    let Some(top) = doc.entries() else {
        anyhow::bail!(
            "{}:{}: a process-compose file is a mapping with `processes:`, and this is {}",
            path.display(),
            doc.line,
            doc.kind()
        );
    };
    let mut cx = Context {
        shell: vec!["bash".into(), "-c".into()],
        env: Vec::new(),
        dir: super::host::absolute_dir(path),
    };
    let mut processes = None;
    for e in top {
        match e.key.as_str() {
            "processes" => processes = Some(e),
            "version" => draft.header.push(format!(
                "process-compose schema version {}: nothing to carry over",
                e.value.scalar().unwrap_or_default()
            )),
            "environment" => cx.env = environment(draft, e),
            "shell" => shell(draft, e, &mut cx),
            "log_location" | "log_level" | "log_length" | "log_configuration" | "log_format" => {
                draft.warn(
                    e.line,
                    format!(
                        "key `{}` sets process-compose's own logging; Candor keeps every \
                         service's lines in its store (`candor logs`); send them on with \
                         [[daemon.forward]] (syslog, journald, OTLP)",
                        e.key
                    ),
                )
            }
            other => draft.warn(
                e.line,
                format!(
                    "top-level key `{other}` has no Candor equivalent and was left out; \
                     check what it does for your processes and set it up by hand"
                ),
            ),
        }
    }
    let Some(processes) = processes else {
        anyhow::bail!(
            "{}: no `processes:` section; is this a process-compose file? (give --format)",
            path.display()
        );
    };
    let Some(list) = processes.value.entries() else {
        anyhow::bail!(
            "{}:{}: `processes` is a mapping of names to processes, and this is {}",
            path.display(),
            processes.line,
            processes.value.kind()
        );
    };
    let mut waits = Vec::new();
    for p in list {
        if let Some(svc) = process(draft, &cx, p, &mut waits) {
            draft.services.push(svc);
        }
    }
    for (dep, dependent, line) in waits {
        fields::make_oneshot(draft, &dep, &dependent, line);
    }
    fields::drop_missing_after(draft);
    fields::sentences(draft);
    Ok(())
}

fn shell(draft: &mut Draft, e: &Entry, cx: &mut Context) {
    for s in e.value.entries().unwrap_or_default() {
        match (s.key.as_str(), s.value.as_str()) {
            ("shell_command", Some(cmd)) => cx.shell[0] = cmd.to_string(),
            ("shell_argument", Some(arg)) => cx.shell[1] = arg.to_string(),
            _ => draft.warn(
                s.line,
                format!(
                    "key `shell.{}` is not understood; commands that need a shell run \
                     through `{}`",
                    s.key,
                    cx.shell.join(" ")
                ),
            ),
        }
    }
}

/// `environment`: a list of `K=V` (or a mapping), in order.
fn environment(draft: &mut Draft, e: &Entry) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match &e.value.value {
        Value::List(items) => {
            for item in items {
                match item.scalar().as_deref().and_then(|s| s.split_once('=')) {
                    Some((k, v)) => out.push((k.to_string(), v.to_string())),
                    None => draft.warn(
                        item.line,
                        format!("an `{}` entry is not KEY=VALUE; left out", e.key),
                    ),
                }
            }
        }
        Value::Map(entries) => {
            for kv in entries {
                out.push((
                    kv.key.clone(),
                    fields::env_value(&kv.value).unwrap_or_default(),
                ));
            }
        }
        _ => draft.warn(
            e.line,
            format!(
                "`{}` is {}, not a list of KEY=VALUE; left out",
                e.key,
                e.value.kind()
            ),
        ),
    }
    out
}

/// One process as a service (None when it is disabled), noting in `waits` each dependency a
/// dependent waits on to complete.
fn process(
    draft: &mut Draft,
    cx: &Context,
    p: &Entry,
    waits: &mut Vec<(String, String, usize)>,
) -> Option<DraftService> {
    let name = p.key.clone();
    let mut svc = DraftService::new(&name, p.line);
    let Some(keys) = p.value.entries() else {
        draft.warn(
            p.line,
            format!(
                "process `{name}` is {}, not a mapping; left out",
                p.value.kind()
            ),
        );
        return None;
    };
    if let Some(d) = p.value.get("disabled") {
        if d.value.bool() == Some(true) {
            draft.warn(
                d.line,
                format!(
                    "process `{name}` is disabled (process-compose does not start it): left \
                     out; copy it in by hand if you want it"
                ),
            );
            return None;
        }
    }
    let mut env: Vec<(String, String)> = cx.env.clone();
    let mut restart_given = false;
    let mut probes: Vec<(&Entry, Map<String, Json>)> = Vec::new();
    for e in keys {
        let k = e.key.as_str();
        let v = &e.value;
        match k {
            "command" => match v.as_str() {
                Some(text) => {
                    let argv =
                        fields::command(&mut svc, text, &cx.shell, ", as process-compose runs it");
                    svc.set("command", json!(argv));
                }
                None => draft.warn(
                    e.line,
                    format!(
                        "`command` of `{name}` is {}, not a string; left out",
                        v.kind()
                    ),
                ),
            },
            "entrypoint" => match string_list(v) {
                Some(mut argv) => {
                    if let Some(cmd) = p.value.get("command").and_then(|c| c.value.as_str()) {
                        argv.push(cmd.to_string());
                    }
                    svc.comments
                        .push("`entrypoint`, then `command` as its last argument".into());
                    svc.set("command", json!(argv));
                }
                None => draft.warn(e.line, "`entrypoint` is not a list of strings; left out"),
            },
            "working_dir" => {
                if v.as_str().is_none() {
                    draft.warn(e.line, "`working_dir` is not a string; left out");
                }
            }
            "description" => {
                if let Some(d) = v.scalar() {
                    svc.comments.push(d);
                }
            }
            "environment" => env.extend(environment(draft, e)),
            "depends_on" => depends_on(draft, &mut svc, e, waits),
            "readiness_probe" | "liveness_probe" => {
                if let Some(probe) = probe(draft, cx, &mut svc, e) {
                    probes.push((e, probe));
                }
            }
            "availability" => restart_given |= availability(draft, &mut svc, e),
            "shutdown" => shutdown(draft, &mut svc, e),
            "replicas" => match v.int() {
                Some(n) if n > 1 => {
                    svc.set("replicas", n);
                    svc.comments.push(
                        "replicas: instances NAME@1..N; process-compose's PC_REPLICA_NUM \
                         (from 0) has no equivalent, \"{instance}\" in a string is 1..N"
                            .into(),
                    );
                }
                Some(1) => {}
                _ => draft.warn(e.line, "`replicas` is not a number of at least 1; left out"),
            },
            "disabled" => {}
            "is_daemon" => {
                if v.bool() == Some(true) {
                    draft.warn(
                        e.line,
                        format!(
                            "key `is_daemon`: `{name}` forks into the background; Candor \
                             supervises the process it starts, so run the program in the \
                             foreground (its --no-daemon / foreground flag)"
                        ),
                    );
                }
            }
            "log_location" | "log_configuration" => draft.warn(
                e.line,
                format!(
                    "key `{k}`: Candor keeps the service's output in its store (`candor logs \
                     {name}`); send it on with [[daemon.forward]] (syslog, journald, OTLP)"
                ),
            ),
            "ready_log_line" => draft.warn(
                e.line,
                "key `ready_log_line`: Candor does not read readiness from output lines; use a \
                 probe, `ready = \"notify\"` (sd_notify) or `ready = { file = PATH }`",
            ),
            "namespace" => draft.warn(
                e.line,
                "key `namespace`: Candor has no namespaces; the service is known by its name",
            ),
            "vars" => draft.warn(
                e.line,
                "key `vars`: process-compose's template values are not substituted; write the \
                 values into the command and environment",
            ),
            other => draft.warn(
                e.line,
                format!(
                    "key `{other}` has no Candor equivalent and was left out; check what it \
                     does for `{name}` and set it up by hand"
                ),
            ),
        }
    }
    if !env.is_empty() {
        let mut map = Map::new();
        for (k, v) in env {
            map.insert(k, Json::String(v));
        }
        svc.set("env", Json::Object(map));
    }
    if !restart_given {
        svc.set("restart", "never");
        svc.comments.push(
            "restart = \"never\": process-compose restarts a process only when its \
             availability.restart says so"
                .into(),
        );
    }
    let given = p.value.get("working_dir").and_then(|w| w.value.as_str());
    fields::workdir(&mut svc, &cx.dir, given, "process-compose");
    choose_probe(draft, &mut svc, probes);
    if fields::key(&svc, "command").is_none() {
        draft.warn(
            p.line,
            format!("process `{name}` has no `command`: left out"),
        );
        return None;
    }
    Some(svc)
}

fn string_list(v: &Node) -> Option<Vec<String>> {
    v.list()?.iter().map(Node::scalar).collect()
}

fn depends_on(
    draft: &mut Draft,
    svc: &mut DraftService,
    e: &Entry,
    waits: &mut Vec<(String, String, usize)>,
) {
    let Some(deps) = e.value.entries() else {
        draft.warn(
            e.line,
            "`depends_on` is not a mapping of process names; left out",
        );
        return;
    };
    let mut after = Vec::new();
    for dep in deps {
        let condition = dep
            .value
            .get("condition")
            .and_then(|c| c.value.as_str())
            .unwrap_or("process_started");
        match condition {
            "process_started" | "process_healthy" => {}
            "process_completed_successfully" => {
                waits.push((dep.key.clone(), svc.name.clone(), dep.line))
            }
            "process_completed" => draft.warn(
                dep.line,
                format!(
                    "`{}` waits for `{}` to complete whatever its exit code \
                     (process_completed); Candor starts it once `{}` is done (exit 0) or \
                     skipped, not after a failure",
                    svc.name, dep.key, dep.key
                ),
            ),
            "process_log_ready" => draft.warn(
                dep.line,
                format!(
                    "condition process_log_ready: Candor starts `{}` once `{}` is ready, which \
                     a log line cannot tell it; give `{}` a probe or sd_notify readiness",
                    svc.name, dep.key, dep.key
                ),
            ),
            other => draft.warn(
                dep.line,
                format!(
                    "condition `{other}` is not known; `{}` is started after `{}` is running",
                    svc.name, dep.key
                ),
            ),
        }
        condition_comment(svc, dep, condition);
        after.push(dep.key.clone());
    }
    if !after.is_empty() {
        svc.set("after", json!(after));
    }
}

/// The comment a dependency's condition leaves on the dependent.
fn condition_comment(svc: &mut DraftService, dep: &Entry, condition: &str) {
    let when = match condition {
        "process_healthy" => "its probe passes (it is running)",
        "process_completed_successfully" | "process_completed" => "it is done",
        _ => "it is running (ready)",
    };
    svc.comments.push(format!(
        "depends_on {} ({condition}): after = [\"{}\"], started once {when}",
        dep.key, dep.key
    ));
}

/// `availability`: whether `restart` was set.
fn availability(draft: &mut Draft, svc: &mut DraftService, e: &Entry) -> bool {
    let mut given = false;
    for a in e.value.entries().unwrap_or_default() {
        match a.key.as_str() {
            "restart" => {
                let policy = match a.value.as_str() {
                    Some("always") => "always",
                    Some("on_failure") => "on-failure",
                    Some("no") | Some("never") => "never",
                    Some("exit_on_failure") => {
                        draft.warn(
                            a.line,
                            "availability.restart = exit_on_failure: process-compose shuts \
                             everything down when this fails; Candor keeps the others \
                             running: it is not restarted (restart = \"never\"); add `main = \
                             true` if Candor should exit when it ends",
                        );
                        "never"
                    }
                    _ => {
                        draft.warn(a.line, "availability.restart is not always, on_failure, exit_on_failure or no; left out");
                        continue;
                    }
                };
                svc.set("restart", policy);
                given = true;
            }
            "backoff_seconds" => match a.value.int() {
                Some(s) if s >= 0 => {
                    let d = fields::seconds(s as f64);
                    svc.set("backoff", json!({ "initial": d, "max": d }));
                    svc.comments.push(format!(
                        "backoff_seconds {s}: a fixed delay (Candor doubles from initial to max)"
                    ));
                }
                _ => draft.warn(
                    a.line,
                    "availability.backoff_seconds is not a number; left out",
                ),
            },
            "max_restarts" => match a.value.int() {
                Some(n) if n > 0 => svc.set("retries", n),
                Some(0) => {}
                _ => draft.warn(
                    a.line,
                    "availability.max_restarts is not a number; left out",
                ),
            },
            "exit_on_end" => {
                if a.value.bool() == Some(true) {
                    svc.set("main", true);
                    svc.comments.push(
                        "main = true: Candor exits, with its exit code, when it ends \
                         (exit_on_end)"
                            .into(),
                    );
                }
            }
            other => draft.warn(
                a.line,
                format!("key `availability.{other}` has no Candor equivalent; left out"),
            ),
        }
    }
    given
}

fn shutdown(draft: &mut Draft, svc: &mut DraftService, e: &Entry) {
    for s in e.value.entries().unwrap_or_default() {
        match s.key.as_str() {
            "signal" => match fields::signal(&s.value) {
                Some(sig) => svc.set("stop", json!({ "signal": sig })),
                None => draft.warn(
                    s.line,
                    "shutdown.signal is not one Candor sends (HUP, INT, QUIT, KILL, USR1, USR2, \
                     TERM, WINCH); the default SIGTERM is used",
                ),
            },
            "timeout_seconds" => match s.value.int() {
                Some(t) if t > 0 => {
                    svc.set("stop", json!({ "timeout": fields::seconds(t as f64) }))
                }
                _ => draft.warn(
                    s.line,
                    "shutdown.timeout_seconds is not a positive number; left out",
                ),
            },
            "command" => draft.warn(
                s.line,
                "key `shutdown.command`: Candor stops a service with its stop signal, then \
                 SIGKILL after stop.timeout; make the program stop cleanly on the signal",
            ),
            "parent_only" => {
                if s.value.bool() == Some(true) {
                    draft.warn(
                        s.line,
                        "key `shutdown.parent_only`: Candor signals the service's whole process \
                         group and cgroup, not only its main process",
                    );
                }
            }
            other => draft.warn(
                s.line,
                format!("key `shutdown.{other}` has no Candor equivalent; left out"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(text: &str) -> Draft {
        let mut d = Draft::default();
        read(Path::new("/srv/pc/process-compose.yaml"), text, &mut d)
            .unwrap_or_else(|e| panic!("{e:#}"));
        d
    }

    fn svc<'a>(d: &'a Draft, name: &str) -> &'a DraftService {
        d.services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    fn key(d: &Draft, name: &str, k: &str) -> Option<Json> {
        fields::key(svc(d, name), k).cloned()
    }

    const DOC: &str = r#"version: "0.5"
log_level: debug
environment:
  - "REGION=eu"
processes:
  migrate:
    command: "./bin/migrate --up"
  api:
    command: "./bin/api --port 8080 2>&1 | tee api.log"
    working_dir: /srv/api
    environment:
      - "PORT=8080"
    depends_on:
      migrate:
        condition: process_completed_successfully
      cache:
        condition: process_healthy
    readiness_probe:
      http_get:
        host: 127.0.0.1
        scheme: http
        path: "/health"
        port: 8080
      initial_delay_seconds: 2
      period_seconds: 5
      timeout_seconds: 2
      failure_threshold: 3
    availability:
      restart: on_failure
      backoff_seconds: 2
      max_restarts: 5
    shutdown:
      signal: 2
      timeout_seconds: 10
  cache:
    command: redis-server --port 6380
    is_daemon: false
    liveness_probe:
      exec:
        command: "redis-cli -p 6380 ping | grep PONG"
    availability:
      restart: always
    replicas: 2
    log_location: ./cache.log
  old:
    command: sleep 1
    disabled: true
"#;

    #[test]
    fn processes_map_to_services() {
        let d = import(DOC);
        let names: Vec<_> = d.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["migrate", "api", "cache"]);
        assert_eq!(key(&d, "migrate", "type"), Some(json!("oneshot")));
        assert_eq!(
            key(&d, "api", "command"),
            Some(json!([
                "bash",
                "-c",
                "./bin/api --port 8080 2>&1 | tee api.log"
            ]))
        );
        assert_eq!(key(&d, "api", "workdir"), Some(json!("/srv/api")));
        assert_eq!(
            key(&d, "migrate", "command"),
            Some(json!(["/srv/pc/bin/migrate", "--up"]))
        );
        assert_eq!(
            key(&d, "api", "env"),
            Some(json!({"REGION": "eu", "PORT": "8080"}))
        );
        assert_eq!(key(&d, "api", "after"), Some(json!(["migrate", "cache"])));
        assert_eq!(
            key(&d, "api", "probe"),
            Some(json!({
                "http": {"host": "127.0.0.1", "path": "/health", "port": 8080},
                "start_delay": "2s", "every": "5s", "timeout": "2s", "failures": 3
            }))
        );
        assert_eq!(key(&d, "api", "on_unhealthy"), Some(json!("alert")));
        assert_eq!(key(&d, "api", "restart"), Some(json!("on-failure")));
        assert_eq!(
            key(&d, "api", "backoff"),
            Some(json!({"initial": "2s", "max": "2s"}))
        );
        assert_eq!(key(&d, "api", "retries"), Some(json!(5)));
        let stops: Vec<_> = svc(&d, "api")
            .keys
            .iter()
            .filter(|(k, _)| k == "stop")
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(
            stops,
            [json!({"signal": "SIGINT"}), json!({"timeout": "10s"})]
        );
        assert_eq!(
            key(&d, "cache", "probe"),
            Some(json!({"exec": ["bash", "-c", "redis-cli -p 6380 ping | grep PONG"]}))
        );
        assert_eq!(key(&d, "cache", "replicas"), Some(json!(2)));
        assert_eq!(key(&d, "cache", "restart"), Some(json!("always")));
        assert_eq!(key(&d, "migrate", "restart"), Some(json!("never")));
        assert_eq!(key(&d, "migrate", "workdir"), Some(json!("/srv/pc")));
    }

    #[test]
    fn keys_that_do_not_map_are_warned_at_their_line() {
        let d = import(DOC);
        let got: Vec<(usize, &str)> = d
            .warnings
            .iter()
            .map(|w| (w.line, &w.text[..w.text.len().min(40)]))
            .collect();
        assert_eq!(
            got,
            [
                (2, "key `log_level` sets process-compose's o"),
                (44, "key `log_location`: Candor keeps the ser"),
                (47, "process `old` is disabled (process-compo"),
            ]
        );
        assert_eq!(
            d.header,
            ["process-compose schema version 0.5: nothing to carry over."]
        );
    }

    #[test]
    fn a_daemon_liveness_and_an_https_probe_are_warned() {
        let d = import(concat!(
            "processes:\n",
            "  web:\n",
            "    command: nginx\n",
            "    is_daemon: true\n",
            "    readiness_probe:\n",
            "      http_get: {port: 443, scheme: https}\n",
            "    liveness_probe:\n",
            "      exec: {command: \"curl -f localhost\"}\n",
            "    availability: {restart: exit_on_failure}\n",
            "  gone:\n",
            "    command: x\n",
            "    depends_on: {ghost: {condition: process_log_ready}}\n",
        ));
        let lines: Vec<usize> = d.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [4, 6, 9, 7, 12, 10], "{:#?}", d.warnings);
        assert!(d.warnings[1].text.contains("plain HTTP"));
        assert!(d.warnings[3].text.contains("one probe per service"));
        assert!(d.warnings[5].text.contains("depends on `ghost`"));
        assert_eq!(key(&d, "web", "on_unhealthy"), None);
        assert_eq!(key(&d, "gone", "after"), None);
    }

    #[test]
    fn a_file_without_processes_is_an_error() {
        let mut d = Draft::default();
        let e = read(Path::new("pc.yaml"), "version: 1\n", &mut d).unwrap_err();
        assert!(e.to_string().contains("no `processes:` section"), "{e}");
    }
}
