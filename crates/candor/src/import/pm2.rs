//! PM2's ecosystem file into a draft: `.json` read directly, `.js`/`.cjs`/`.mjs` evaluated by
//! `node` (a program, not data: functions in it are warned, as they have no value until PM2
//! calls them). Each app is a service: script + args behind its interpreter, `instances`
//! as replicas, `max_memory_restart` as `limits.memory_restart`, `cron_restart` as a
//! schedule, restart and stop keys; the rest are warnings at the key's line in the file.

mod lines;
mod node;

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value as Json};

use super::draft::{Draft, DraftService};
use super::fields;
use super::shell;
use lines::{Lines, Place};

pub fn read(path: &Path, text: &str, draft: &mut Draft) -> anyhow::Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let (config, functions) = match ext {
        "js" | "cjs" | "mjs" => node::evaluate("node", path)?,
        _ => {
            let config: Json = serde_json::from_str(text).map_err(|e| {
                anyhow::anyhow!(
                    "{}:{}:{}: invalid JSON: {e}; fix the file and import again",
                    path.display(),
                    e.line(),
                    e.column()
                )
            })?;
            (config, Vec::new())
        }
    };
    let lines = Lines::new(text);
    let apps: Vec<Json> = match &config {
        Json::Array(apps) => apps.clone(),
        Json::Object(top) => {
            for k in top.keys().filter(|k| *k != "apps") {
                draft.warn(
                    lines.top(k),
                    if k == "deploy" {
                        "top-level key `deploy` is for `pm2 deploy`; Candor does not deploy \
                         code: left out (deploy as you do, then `candor reload`)"
                            .to_string()
                    } else {
                        format!("top-level key `{k}` has no Candor equivalent; left out")
                    },
                );
            }
            match top.get("apps") {
                Some(Json::Array(apps)) => apps.clone(),
                Some(app @ Json::Object(_)) => vec![app.clone()],
                _ if top.contains_key("script") => vec![config.clone()],
                _ => anyhow::bail!(
                    "{}: no `apps` list; an ecosystem file exports {{ apps: [ {{ name, script }} ] }}",
                    path.display()
                ),
            }
        }
        _ => anyhow::bail!(
            "{}: an ecosystem file exports {{ apps: [...] }}, and this is not an object",
            path.display()
        ),
    };
    let names: Vec<String> = apps.iter().map(app_name).collect();
    let lines = lines.with_apps(&names);
    for (i, app) in apps.iter().enumerate() {
        let at = Place {
            lines: &lines,
            app: i,
        };
        for f in functions.iter().filter(|f| belongs(f, i)) {
            let key = f.last().map(String::as_str).unwrap_or_default();
            draft.warn(
                at.line(key),
                format!(
                    "key `{}` is a function in the .js: PM2 calls it, Candor needs a value; it \
                     was left out: write the value it returns",
                    f[2..].join(".")
                ),
            );
        }
        for f in functions.iter().filter(|f| f.len() == 1) {
            draft.warn(
                lines.top(&f[0]),
                format!("top-level `{}` is a function; left out", f[0]),
            );
        }
        if let Some(svc) = app_service(draft, path, app, &at) {
            draft.services.push(svc);
        }
    }
    fields::sentences(draft);
    Ok(())
}

/// Whether a function's path is inside app `i` (`apps.i.key…`, or `i.key…` for an array).
fn belongs(f: &[String], i: usize) -> bool {
    f.len() >= 3 && f[0] == "apps" && f[1] == i.to_string()
}

/// `name`, else the script's file name (as PM2 names an app).
fn app_name(app: &Json) -> String {
    if let Some(n) = app.get("name").and_then(Json::as_str) {
        return n.to_string();
    }
    let script = app.get("script").and_then(Json::as_str).unwrap_or("app");
    Path::new(script)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("app")
        .to_string()
}

/// The interpreter PM2 picks for a script by its extension when none is given.
fn interpreter_for(script: &str) -> Option<&'static str> {
    let ext = Path::new(script).extension()?.to_str()?;
    Some(match ext {
        "js" | "mjs" | "cjs" => "node",
        "py" => "python3",
        "sh" => "bash",
        "rb" => "ruby",
        "php" => "php",
        "pl" => "perl",
        "coffee" => "coffee",
        _ => return None,
    })
}

/// Words of a string (split as a shell would) or of a list.
fn words(v: &Json) -> Option<Vec<String>> {
    match v {
        Json::String(s) => shlex::split(s),
        Json::Array(items) => items.iter().map(scalar).collect(),
        _ => None,
    }
}

fn scalar(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Milliseconds as PM2 takes them: a number, or a string of digits or with a unit.
fn ms(v: &Json) -> Option<String> {
    match v {
        Json::Number(n) => n.as_u64().map(fields::millis),
        Json::String(s) => match s.trim().parse::<u64>() {
            Ok(n) => Some(fields::millis(n)),
            Err(_) => fields::duration_text(s),
        },
        _ => None,
    }
}

/// PM2's size (`"300M"`, `"1G"`, `"500K"`, a number of bytes) as Candor's.
fn size(v: &Json) -> Option<String> {
    let text = scalar(v)?;
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let out = match unit.to_ascii_uppercase().as_str() {
        "" => {
            let n: u64 = num.parse().ok()?;
            match n {
                n if n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
                n if n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
                n => format!("{n}B"),
            }
        }
        "K" | "KB" => format!("{num}KiB"),
        "M" | "MB" => format!("{num}MiB"),
        "G" | "GB" => format!("{num}GiB"),
        _ => return None,
    };
    candor_spec::parse_size(&out).ok().map(|_| out)
}

/// The machine's IANA time zone (for PM2's cron, which is local time), if it has one.
fn local_zone() -> Option<String> {
    if let Ok(tz) = std::env::var("TZ") {
        let tz = tz.trim_start_matches(':');
        if candor_spec::schedule_check::zone(tz).is_ok() {
            return Some(tz.to_string());
        }
    }
    let target: PathBuf = std::fs::read_link("/etc/localtime").ok()?;
    let s = target.to_str()?;
    let name = &s[s.find("zoneinfo/")? + "zoneinfo/".len()..];
    candor_spec::schedule_check::zone(name)
        .ok()
        .map(|_| name.to_string())
}

const LOG_KEYS: &[&str] = &[
    "error_file",
    "out_file",
    "log_file",
    "log",
    "output",
    "error",
    "combine_logs",
    "merge_logs",
    "log_date_format",
    "log_type",
    "time",
    "disable_logs",
    "pmx",
];

const WATCH_KEYS: &[&str] = &["watch", "ignore_watch", "watch_options", "watch_delay"];

fn app_service(draft: &mut Draft, path: &Path, app: &Json, at: &Place<'_>) -> Option<DraftService> {
    let Some(obj) = app.as_object() else {
        draft.warn(
            at.line("apps"),
            "an entry of `apps` is not an object; left out",
        );
        return None;
    };
    let name = app_name(app);
    let mut svc = DraftService::new(&name, at.line("name"));
    if !obj.contains_key("name") {
        svc.line = at.line("script");
        svc.comments
            .push(format!("named `{name}` after its script, as PM2 does"));
    }
    let Some(script) = obj.get("script").and_then(Json::as_str) else {
        draft.warn(svc.line, format!("app `{name}` has no `script`: left out"));
        return None;
    };
    let command = command(draft, &mut svc, obj, script, at);
    let mut stop = Map::new();
    stop.insert("signal".into(), json!("SIGINT"));
    for (k, v) in obj {
        let line = at.line(k);
        match k.as_str() {
            "name" | "script" | "args" | "interpreter" | "interpreter_args" | "node_args" => {}
            "cwd" => {
                if v.as_str().is_none() {
                    draft.warn(line, "`cwd` is not a string; left out");
                }
            }
            "env" => match v.as_object() {
                Some(env) => {
                    let mut out = Map::new();
                    for (ek, ev) in env {
                        match scalar(ev) {
                            Some(s) => {
                                out.insert(ek.clone(), json!(s));
                            }
                            None if ev.is_null() => {}
                            None => draft.warn(
                                at.line(ek),
                                format!("env `{ek}` is not a string, number or boolean; left out"),
                            ),
                        }
                    }
                    if !out.is_empty() {
                        svc.set("env", Json::Object(out));
                    }
                }
                None => draft.warn(line, "`env` is not an object; left out"),
            },
            k if k.starts_with("env_") => draft.warn(
                line,
                format!(
                    "key `{k}` is what `pm2 start --env {}` adds; Candor has no --env, so only \
                     `env` was used: copy these values into `env` if that is how you run it",
                    &k[4..]
                ),
            ),
            "instances" => match instances(v) {
                Some((n, how)) => {
                    if let Some(how) = how {
                        svc.comments.push(how);
                    }
                    if n > 1 {
                        svc.set("replicas", n);
                        svc.comments.push(
                            "PM2's NODE_APP_INSTANCE (from 0) has no equivalent: \"{instance}\" \
                             in a string is 1..N"
                                .into(),
                        );
                    }
                }
                None => draft.warn(line, "`instances` is not a number or \"max\"; left out"),
            },
            "exec_mode" => {
                if v.as_str().is_some_and(|m| m.starts_with("cluster")) {
                    draft.warn(
                        line,
                        "exec_mode = cluster: Candor runs N separate processes, with no shared \
                         port unless the program takes an activated socket (`sockets = [{ \
                         listen = \"0.0.0.0:PORT\", activate = true }]`, one listener for every \
                         instance); else give each instance its own port with \"{instance}\"",
                    );
                }
            }
            "max_memory_restart" => match size(v) {
                Some(s) => {
                    svc.set("limits", json!({ "memory_restart": s }));
                    svc.comments.push(
                        "max_memory_restart: limits.memory_restart (restarted when its RSS reaches it)"
                            .into(),
                    );
                }
                None => draft.warn(line, "`max_memory_restart` is not a size (\"300M\"); left out"),
            },
            "cron_restart" => cron(draft, &mut svc, v, line, obj),
            "autorestart" => {
                if v.as_bool() == Some(false) {
                    svc.set("restart", "never");
                }
            }
            "max_restarts" => match v.as_u64() {
                Some(n) => svc.set("retries", n),
                None => draft.warn(line, "`max_restarts` is not a number; left out"),
            },
            "min_uptime" => match ms(v) {
                Some(d) => {
                    svc.set("backoff", json!({ "reset_after": d }));
                    svc.comments.push(
                        "min_uptime: backoff.reset_after (a shorter run counts against retries)".into(),
                    );
                }
                None => draft.warn(line, "`min_uptime` is not a duration; left out"),
            },
            "restart_delay" => match ms(v) {
                Some(d) => {
                    svc.set("backoff", json!({ "initial": d, "max": d }));
                    svc.comments.push("restart_delay: a fixed backoff".into());
                }
                None => draft.warn(line, "`restart_delay` is not a number of ms; left out"),
            },
            "exp_backoff_restart_delay" => match ms(v) {
                Some(d) => {
                    svc.set("backoff", json!({ "initial": d, "max": "15s" }));
                    svc.comments.push("exp_backoff_restart_delay: doubling up to 15s, as PM2".into());
                }
                None => draft.warn(line, "`exp_backoff_restart_delay` is not a number of ms; left out"),
            },
            "kill_timeout" => match ms(v) {
                Some(d) => {
                    stop.insert("timeout".into(), json!(d));
                }
                None => draft.warn(line, "`kill_timeout` is not a number of ms; left out"),
            },
            "user" | "uid" => match scalar(v) {
                Some(u) if super::host::user_exists(&u) => svc.set("user", u),
                _ => draft.warn(
                    line,
                    format!("{k} `{}` is not a user of this host: left out; set `user` by hand", scalar(v).unwrap_or_default()),
                ),
            },
            "gid" => match scalar(v) {
                Some(g) if g.parse::<u32>().is_err() && super::host::group_exists(&g) => svc.set("group", g),
                _ => draft.warn(line, "`gid` is not a group name of this host: left out; set `group` by hand"),
            },
            k if WATCH_KEYS.contains(&k) => {
                if k != "watch" || v.as_bool() != Some(false) {
                    draft.warn(
                        line,
                        format!(
                            "key `{k}`: Candor does not restart on file changes; run `candor \
                             restart {name}` from your deploy (or a file watcher)"
                        ),
                    );
                }
            }
            k if LOG_KEYS.contains(&k) => draft.warn(
                line,
                format!(
                    "key `{k}`: Candor keeps the service's output in its store (`candor logs \
                     {name}`); send it on with [[daemon.forward]] (syslog, journald, OTLP)"
                ),
            ),
            "wait_ready" | "listen_timeout" => draft.warn(
                line,
                format!(
                    "key `{k}`: PM2's process.send('ready') has no equivalent; use `ready = \
                     \"notify\"` (sd_notify READY=1) or a probe, and `ready_timeout`"
                ),
            ),
            "shutdown_with_message" => draft.warn(
                line,
                "key `shutdown_with_message`: Candor stops a service with its stop signal \
                 (SIGINT here, as PM2 sends)",
            ),
            "instance_var" => svc.comments.push(format!(
                "instance_var {}: \"{{instance}}\" (1..N) in an env value gives each instance its number",
                scalar(v).unwrap_or_default()
            )),
            other => draft.warn(
                line,
                format!(
                    "key `{other}` has no Candor equivalent and was left out; check what it \
                     does for `{name}` and set it up by hand"
                ),
            ),
        }
    }
    svc.keys.insert(0, ("command".into(), json!(command)));
    let cwd = obj.get("cwd").and_then(Json::as_str);
    fields::workdir(&mut svc, &super::host::absolute_dir(path), cwd, "PM2");
    svc.set("stop", Json::Object(stop));
    svc.comments
        .push("stop.signal SIGINT: what PM2 sends to stop an app".into());
    Some(svc)
}

/// The argv: the interpreter (given, or PM2's for the script's extension), its arguments,
/// the script and `args`.
fn command(
    draft: &mut Draft,
    svc: &mut DraftService,
    obj: &Map<String, Json>,
    script: &str,
    at: &Place<'_>,
) -> Vec<String> {
    let given = obj.get("interpreter").and_then(Json::as_str);
    let mut argv: Vec<String> = Vec::new();
    let script_words = match (given, interpreter_for(script)) {
        (Some("none"), _) | (None, None) => {
            // The script is the program: a file, or a command line (`npm run start`).
            let cmd = shell::split(script);
            if let Some(why) = &cmd.why_shell {
                svc.comments.push(format!("the script {why}"));
            }
            cmd.argv
        }
        (Some(interp), _) => {
            argv.push(interp.to_string());
            vec![script.to_string()]
        }
        (None, Some(interp)) => {
            argv.push(interp.to_string());
            svc.comments.push(format!(
                "`{interp} {script}`: PM2 runs a .{} script with {interp} when no interpreter is given",
                Path::new(script).extension().and_then(|e| e.to_str()).unwrap_or_default()
            ));
            vec![script.to_string()]
        }
    };
    for k in ["interpreter_args", "node_args"] {
        if let Some(v) = obj.get(k) {
            match words(v) {
                Some(w) if !argv.is_empty() => argv.extend(w),
                Some(_) => draft.warn(
                    at.line(k),
                    format!("`{k}` without an interpreter; left out"),
                ),
                None => draft.warn(
                    at.line(k),
                    format!("`{k}` is not a string or list; left out"),
                ),
            }
        }
    }
    argv.extend(script_words);
    if let Some(v) = obj.get("args") {
        match words(v) {
            Some(w) => argv.extend(w),
            None => draft.warn(at.line("args"), "`args` is not a string or list; left out"),
        }
    }
    argv
}

/// `instances`: the count, and how it was found when it was not a plain number.
fn instances(v: &Json) -> Option<(u64, Option<String>)> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
    let (n, said) = match v {
        Json::String(s) if s == "max" => (cpus, true),
        Json::String(s) => (s.parse::<i64>().ok()?, false),
        Json::Number(n) => (n.as_i64()?, false),
        _ => return None,
    };
    let count = match n {
        0 => cpus,
        n if n < 0 => (cpus + n).max(1),
        n => n,
    };
    let how = (said || n <= 0).then(|| {
        format!("instances {v}: the {cpus} CPUs of the machine the import ran on; set replicas for this host")
    });
    Some((count as u64, how))
}

fn cron(draft: &mut Draft, svc: &mut DraftService, v: &Json, line: usize, obj: &Map<String, Json>) {
    let Some(expr) = v.as_str() else {
        draft.warn(line, "`cron_restart` is not a cron string; left out");
        return;
    };
    // The app's instances, whatever order its keys are met in.
    let replicas = (obj.get("instances").and_then(instances)).map_or(1, |(n, _)| n);
    if replicas > 1 {
        draft.warn(
            line,
            format!(
                "cron_restart on {} instances: Candor does not schedule a replicated service; \
                 add a oneshot with schedule = {{ cron = \"{expr}\" }} that runs `candor restart \
                 {}`",
                replicas, svc.name
            ),
        );
        return;
    }
    if let Err(e) = candor_spec::schedule_check::pattern(expr) {
        draft.warn(line, format!("cron_restart: {e}; left out"));
        return;
    }
    let mut schedule = Map::new();
    schedule.insert("cron".into(), json!(expr));
    match local_zone() {
        Some(tz) => {
            schedule.insert("timezone".into(), json!(tz));
            svc.comments.push(format!(
                "cron_restart: a schedule restarts the running service; PM2's cron is local \
                 time, here {tz}"
            ));
        }
        None => svc.comments.push(
            "cron_restart: a schedule restarts the running service (in UTC: PM2's cron is the \
             machine's local time; set `timezone` if that is not UTC)"
                .into(),
        ),
    }
    svc.set("schedule", Json::Object(schedule));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(file: &str, text: &str) -> Draft {
        let mut d = Draft::default();
        read(Path::new(file), text, &mut d).unwrap_or_else(|e| panic!("{e:#}"));
        d
    }

    fn key(d: &Draft, name: &str, k: &str) -> Option<Json> {
        let svc = d
            .services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        fields::key(svc, k).cloned()
    }

    const JSON: &str = r#"{
  "apps": [
    {
      "script": "./api/server.js",
      "name": "api",
      "args": "--port 3000",
      "node_args": "--max-old-space-size=512",
      "max_memory_restart": "300M",
      "env": { "NODE_ENV": "development", "PORT": 3000 },
      "env_production": { "NODE_ENV": "production" },
      "kill_timeout": 3000,
      "restart_delay": 500,
      "max_restarts": 10,
      "min_uptime": "5s",
      "watch": true
    },
    {
      "name": "worker",
      "script": "bin/worker",
      "interpreter": "none",
      "cwd": "/srv/app",
      "autorestart": false,
      "cron_restart": "0 4 * * *",
      "out_file": "/var/log/worker.log"
    }
  ]
}
"#;

    #[test]
    fn apps_map_to_services() {
        let d = import("/candor-test-nowhere/ecosystem.json", JSON);
        assert_eq!(
            key(&d, "api", "command"),
            Some(json!([
                "node",
                "--max-old-space-size=512",
                "./api/server.js",
                "--port",
                "3000"
            ]))
        );
        assert_eq!(
            key(&d, "api", "workdir"),
            Some(json!("/candor-test-nowhere"))
        );
        assert_eq!(
            key(&d, "api", "limits"),
            Some(json!({"memory_restart": "300MiB"}))
        );
        assert_eq!(
            key(&d, "api", "env"),
            Some(json!({"NODE_ENV": "development", "PORT": "3000"}))
        );
        assert_eq!(
            key(&d, "api", "stop"),
            Some(json!({"signal": "SIGINT", "timeout": "3s"}))
        );
        assert_eq!(key(&d, "api", "retries"), Some(json!(10)));
        assert_eq!(
            key(&d, "worker", "command"),
            Some(json!(["/srv/app/bin/worker"]))
        );
        assert_eq!(key(&d, "worker", "workdir"), Some(json!("/srv/app")));
        assert_eq!(key(&d, "worker", "restart"), Some(json!("never")));
        assert_eq!(
            key(&d, "worker", "schedule").unwrap()["cron"],
            json!("0 4 * * *")
        );
    }

    #[test]
    fn keys_that_do_not_map_are_warned_at_their_line() {
        let d = import("ecosystem.json", JSON);
        let got: Vec<(usize, String)> = d
            .warnings
            .iter()
            .map(|w| (w.line, w.text.chars().take(24).collect()))
            .collect();
        let want: Vec<(usize, String)> = [
            (10, "key `env_production` is "),
            (15, "key `watch`: Candor does"),
            (24, "key `out_file`: Candor k"),
        ]
        .into_iter()
        .map(|(l, t)| (l, t.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn cron_restart_on_instances_is_a_warning_with_their_count() {
        let text =
            r#"[{"name": "a", "script": "srv", "cron_restart": "0 * * * *", "instances": 3}]"#;
        let d = import("/candor-test-nowhere/eco.json", text);
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert!(
            d.warnings[0]
                .text
                .starts_with("cron_restart on 3 instances"),
            "{:?}",
            d.warnings
        );
        assert_eq!(key(&d, "a", "schedule"), None);
        assert_eq!(key(&d, "a", "replicas"), Some(json!(3)));
    }

    #[test]
    fn sizes_instances_and_interpreters() {
        assert_eq!(size(&json!("300M")).as_deref(), Some("300MiB"));
        assert_eq!(size(&json!("1G")).as_deref(), Some("1GiB"));
        assert_eq!(size(&json!(1048576000)).as_deref(), Some("1000MiB"));
        assert_eq!(size(&json!(1_500_000)).as_deref(), Some("1500000B"));
        assert_eq!(size(&json!("lots")), None);
        let cpus = std::thread::available_parallelism().unwrap().get() as u64;
        assert_eq!(instances(&json!("max")).unwrap().0, cpus);
        assert_eq!(instances(&json!(4)).unwrap(), (4, None));
        assert_eq!(instances(&json!(-1)).unwrap().0, (cpus - 1).max(1));
        assert_eq!(interpreter_for("app.py"), Some("python3"));
        assert_eq!(interpreter_for("bin/server"), None);
    }

    #[test]
    fn a_js_file_is_evaluated_by_node_and_its_functions_are_warned() {
        if std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!(
                "node is not on PATH here: the .js path is covered by the missing-node error test"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ecosystem.config.js");
        let text = "const os = require('os');\nmodule.exports = {\n  apps: [{\n    name: 'web',\n    script: 'web.js',\n    instances: 'max',\n    exec_mode: 'cluster',\n    env: { STARTED: () => Date.now(), HOST: os.hostname() ? 'x' : 'y' },\n  }],\n};\n";
        std::fs::write(&file, text).unwrap();
        let d = import(file.to_str().unwrap(), text);
        let got: Vec<(usize, String)> = d
            .warnings
            .iter()
            .map(|w| (w.line, w.text.chars().take(20).collect()))
            .collect();
        assert_eq!(
            got,
            [
                (8, "key `env.STARTED` is".to_string()),
                (7, "exec_mode = cluster:".to_string())
            ]
        );
        assert_eq!(key(&d, "web", "env"), Some(json!({"HOST": "x"})));
    }
}
