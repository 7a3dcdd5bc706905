//! `supervisord.conf`: each `[program:x]` a service. supervisord splits `command` into words
//! itself (no shell: a `|` is an argument), expands `%(…)s` names first, runs `numprocs`
//! copies (here `replicas`, `%(process_num)` → `{instance}`), and by default restarts only an
//! unexpected exit, retrying a program that exits within `startsecs` `startretries` times.
//! `[supervisord] environment` goes to every program, `[include]`d files are read as
//! supervisord reads them; the control sections, groups and event listeners are warnings.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::draft::{Draft, DraftService};
use super::expand::{Names, ProcessNum};
use super::ini::{self, Entry, Section};

pub fn read(path: &Path, text: &str, draft: &mut Draft) -> anyhow::Result<()> {
    read_file(path, text, draft, None);
    Ok(())
}

/// What an included file takes from the main one: `[supervisord] environment` and groups.
#[derive(Clone, Debug, Default)]
pub struct Inherited {
    pub env: Vec<(String, String, usize)>,
    pub groups: Vec<(String, Vec<String>)>,
}

/// The main file (`inherited` None), or a file it includes.
pub fn read_file(path: &Path, text: &str, draft: &mut Draft, inherited: Option<&Inherited>) {
    let here = super::host::absolute_dir(path);
    let (sections, bad) = ini::parse(text);
    for (line, why) in bad {
        draft.warn(line, why);
    }
    let mut global_env = inherited.map(|i| i.env.clone()).unwrap_or_default();
    let mut groups = inherited.map(|i| i.groups.clone()).unwrap_or_default();
    let mut includes: Vec<&Section> = Vec::new();
    for s in &sections {
        let (kind, name) = s.name.split_once(':').unwrap_or((s.name.as_str(), ""));
        match kind {
            "program" => {}
            "supervisord" => supervisord_section(s, &here, &mut global_env, draft),
            "unix_http_server" | "inet_http_server" | "supervisorctl" | "rpcinterface" => {
                draft.warn(s.line, control_section(kind, &s.name))
            }
            "include" if inherited.is_none() => includes.push(s),
            "include" => draft.warn(
                s.line,
                "[include] in an included file is not read (supervisord reads [include] only in its main file); skipped",
            ),
            "group" => {
                let programs: Vec<String> = (s.get("programs").map_or("", |e| e.value.as_str()))
                    .split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect();
                draft.warn(
                    s.line,
                    format!("[group:{name}] has no Candor equivalent (no groups: `candor start {}` names them); each program is a service of its own", programs.join(" ")),
                );
                groups.push((name.to_string(), programs));
            }
            "eventlistener" => draft.warn(
                s.line,
                format!("[eventlistener:{name}] is not imported: supervisord's event protocol has no Candor equivalent; `[[daemon.hooks]]` runs a command or posts a webhook when a service fails"),
            ),
            "fcgi-program" => draft.warn(
                s.line,
                format!("[fcgi-program:{name}] is not imported: write a service whose `sockets = [{{ listen = \"…\", activate = true }}]` Candor hands over as fd 3 (supervisord passes fd 0)"),
            ),
            _ => draft.warn(
                s.line,
                format!("section [{}] is not one supervisord reads; skipped", s.name),
            ),
        }
    }
    let syslog = |s: &Section| {
        ["stdout_syslog", "stderr_syslog"]
            .iter()
            .any(|k| s.get(k).and_then(|e| boolean(&e.value)) == Some(true))
    };
    let to_syslog: Vec<&str> = (sections.iter())
        .filter(|s| syslog(s))
        .filter_map(|s| s.name.strip_prefix("program:").map(str::trim))
        .collect();
    if !to_syslog.is_empty() {
        draft.daemon.push((
            "forward".into(),
            json!([{ "syslog": "unix:///dev/log", "services": to_syslog }]),
        ));
    }
    for s in &sections {
        if let Some(name) = s.name.strip_prefix("program:") {
            let group = (groups.iter())
                .find(|(_, members)| members.iter().any(|m| m == name))
                .map(|(g, _)| g.clone());
            program(name.trim(), s, group, &here, &global_env, draft);
        }
    }
    let inherited = Inherited {
        env: global_env,
        groups,
    };
    for s in includes {
        super::supervisord_include::include(s, &here, &inherited, draft);
    }
}

/// Why a section of supervisorctl's control plane is not imported.
fn control_section(kind: &str, section: &str) -> String {
    match kind {
        "inet_http_server" => "[inet_http_server] is supervisord's HTTP control: Candor's dashboard and API over TCP are `[daemon] web = { listen = \"127.0.0.1:9631\" }` (logins by token); skipped".into(),
        "unix_http_server" => "[unix_http_server] is supervisorctl's socket: Candor's CLI talks to its own (`[daemon] socket`; `socket_group` lets a group's members in); skipped".into(),
        _ => format!("[{section}] is supervisorctl's: the candor command needs no such section; skipped"),
    }
}

fn supervisord_section(
    s: &Section,
    here: &Path,
    env: &mut Vec<(String, String, usize)>,
    draft: &mut Draft,
) {
    let names = Names {
        program: String::new(),
        process_name: String::new(),
        group: String::new(),
        here: here.to_string_lossy().into_owned(),
        host: host_name(),
        numprocs: 1,
        num: ProcessNum::One(0),
    };
    for e in &s.entries {
        match e.key.as_str() {
            "environment" => match environment(&names.expand(&e.value).text) {
                Ok(vars) => env.extend(vars.into_iter().map(|(k, v)| (k, v, e.line))),
                Err(why) => draft.warn(e.line, format!("key `environment`: {why}; skipped")),
            },
            "minfds" => draft.warn(e.line, format!("key `minfds` ({}) is the daemon's fd limit: in Candor each service has its own, `limits = {{ nofile = {} }}`", e.value, e.value)),
            "user" => draft.warn(e.line, "key `user` of [supervisord]: run the candor daemon as that user (or give each service its `user`)"),
            "umask" => draft.warn(e.line, "key `umask` of [supervisord]: services get the daemon's umask; give each service its `umask` to fix one"),
            k if k.starts_with("logfile") || k == "childlogdir" || k == "loglevel" => draft.warn(
                e.line,
                format!("key `{k}` of [supervisord]: Candor keeps its own events and every service's output in its store (`candor events`, `candor logs`); to send them on, `[[daemon.forward]]`"),
            ),
            k => draft.warn(e.line, format!("key `{k}` of [supervisord] has no Candor equivalent (the daemon's own settings are `[daemon]`: state_dir, socket); skipped")),
        }
    }
}

/// supervisord's `environment`: `KEY=val,KEY2="v,2"` — a value in quotes taken as is (no
/// escapes), unquoted ones trimmed; a comma ends a pair outside quotes.
pub fn environment(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut pairs = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (c, quote) {
            ('"' | '\'', None) => {
                quote = Some(c);
                current.push(c);
            }
            (c, Some(q)) if c == q => {
                quote = None;
                current.push(c);
            }
            (',', None) => pairs.push(std::mem::take(&mut current)),
            (c, _) => current.push(c),
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    pairs.push(current);
    for (i, pair) in pairs.iter().enumerate() {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("pair {} is not KEY=value", i + 1));
        };
        let k = k.trim();
        let v = v.trim();
        let v = ['"', '\'']
            .iter()
            .find_map(|q| v.strip_prefix(*q).and_then(|r| r.strip_suffix(*q)))
            .unwrap_or(v);
        if k.is_empty() {
            return Err(format!("pair {} has no name", i + 1));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// A supervisord boolean.
fn boolean(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn int(v: &str) -> Option<u64> {
    v.trim().parse().ok()
}

fn program(
    name: &str,
    s: &Section,
    group: Option<String>,
    here: &Path,
    global_env: &[(String, String, usize)],
    draft: &mut Draft,
) {
    let mut svc = DraftService::new(name, s.line);
    let get = |k: &str| s.get(k).map(|e| e.value.as_str());
    let numprocs = get("numprocs").and_then(int).unwrap_or(1).max(1);
    let start = get("numprocs_start").and_then(int).unwrap_or(0);
    let names = Names {
        program: name.to_string(),
        process_name: get("process_name")
            .unwrap_or("%(program_name)s")
            .to_string(),
        group: group.clone().unwrap_or_else(|| name.to_string()),
        here: here.to_string_lossy().into_owned(),
        host: host_name(),
        numprocs,
        num: if numprocs > 1 {
            ProcessNum::Instances(numprocs)
        } else {
            ProcessNum::One(start)
        },
    };
    // Expanded values, each problem a warning at its line.
    let expanded = |e: &Entry, draft: &mut Draft, svc: &mut DraftService| -> String {
        let x = names.expand(&e.value);
        for p in x.problems {
            draft.warn(e.line, format!("key `{}`: {p}", e.key));
        }
        if !x.from_env.is_empty() {
            svc.comments.push(format!(
                "{}: {} taken from the environment `candor import` ran in.",
                e.key,
                x.from_env.join(", ")
            ));
        }
        x.text
    };
    let Some(command) = s.get("command") else {
        draft.warn(
            s.line,
            format!("[program:{name}] has no `command`; skipped"),
        );
        return;
    };
    let command_text = expanded(command, draft, &mut svc);
    let Some(argv) = shlex::split(&command_text).filter(|a| !a.is_empty()) else {
        draft.warn(
            command.line,
            format!("key `command` of [program:{name}] cannot be split into words (a quote is not closed); skipped"),
        );
        return;
    };
    let mut argv = argv;
    // A relative program is run from `directory` (supervisord chdirs first), else from where
    // supervisord was started: taken as this file's directory.
    let base =
        get("directory").map_or_else(|| here.to_path_buf(), |d| here.join(names.expand(d).text));
    if let Some(abs) = super::host::relative_program(&argv[0], &base) {
        svc.comments.push(format!(
            "{}: taken as relative to {}.",
            argv[0],
            base.display()
        ));
        argv[0] = abs;
    }
    svc.set("command", json!(argv));
    if let Some(g) = &group {
        svc.comments.push(format!("In supervisord group `{g}`."));
    }
    let mut restart = "on-failure";
    let mut restart_said = false;
    let mut env = Map::new();
    for (k, v, _) in global_env {
        env.insert(k.clone(), Value::String(v.clone()));
    }
    let mut stop = Map::new();
    for e in &s.entries {
        let key = e.key.as_str();
        let value = e.value.trim();
        match key {
            "command" | "numprocs_start" => {}
            "process_name" => {
                if numprocs > 1 {
                    svc.comments.push(format!(
                        "numprocs = {numprocs}: instances {name}@1..{name}@{numprocs} (supervisord named them process_name = {value})."
                    ));
                }
            }
            "numprocs" => {
                if numprocs > 1 {
                    svc.set("replicas", numprocs);
                    if start != 1 && mentions_process_num(s) {
                        draft.warn(
                            e.line,
                            format!("key `numprocs`: supervisord numbers the processes from numprocs_start ({start}) to {}, Candor its instances from 1 to {numprocs}: `{{instance}}`, where %(process_num) was, is {} (ports and files named by it move)", start + numprocs - 1, shift(start)),
                        );
                    }
                }
            }
            "directory" => {
                let dir = expanded(e, draft, &mut svc);
                let abs = here.join(&dir);
                if !Path::new(&dir).is_absolute() {
                    svc.comments.push(format!(
                        "directory = {dir}: taken as relative to this file's directory."
                    ));
                }
                svc.set("workdir", abs.to_string_lossy().as_ref());
            }
            "user" => {
                let user = expanded(e, draft, &mut svc);
                if super::host::user_exists(&user) {
                    svc.set("user", user.as_str());
                } else {
                    svc.comments.push(format!("user = \"{user}\" (no such user here)"));
                    draft.warn(e.line, format!("key `user`: user `{user}` does not exist on this machine, so it was left out (the config would not pass `candor check`); create it, then add user = \"{user}\""));
                }
            }
            "umask" => match u32::from_str_radix(value, 8) {
                Ok(m) if m <= 0o777 => svc.set("umask", format!("{m:04o}")),
                _ => draft.warn(e.line, format!("key `umask` = {value} is not an octal mask; skipped")),
            },
            "environment" => match environment(&expanded(e, draft, &mut svc)) {
                Ok(vars) => {
                    for (k, v) in vars {
                        env.insert(k, Value::String(v));
                    }
                }
                Err(why) => draft.warn(e.line, format!("key `environment`: {why}; skipped")),
            },
            "autorestart" => {
                restart_said = true;
                restart = match value.to_ascii_lowercase().as_str() {
                    "unexpected" => "on-failure",
                    v => match boolean(v) {
                        Some(true) => "always",
                        Some(false) => "never",
                        None => {
                            draft.warn(e.line, format!("key `autorestart` = {value} is not true, false or unexpected; taken as unexpected (restart = \"on-failure\")"));
                            "on-failure"
                        }
                    },
                };
            }
            "exitcodes" => {
                let codes: Vec<&str> = value.split(',').map(str::trim).collect();
                if codes != ["0"] {
                    draft.warn(e.line, format!("key `exitcodes` = {value}: Candor expects only exit 0 (restart = \"on-failure\" restarts any other code, \"never\" marks it failed); make the program exit 0, or use restart = \"always\""));
                }
            }
            "stopsignal" => match signal(value) {
                Some(sig) => {
                    stop.insert("signal".into(), json!(sig));
                }
                None => draft.warn(e.line, format!("key `stopsignal` = {value}: Candor stops with {}; skipped", candor_spec::StopSignal::names())),
            },
            "stopwaitsecs" => match int(value) {
                Some(n) => {
                    stop.insert("timeout".into(), json!(format!("{n}s")));
                }
                None => draft.warn(e.line, format!("key `stopwaitsecs` = {value} is not a number of seconds; skipped")),
            },
            "stopasgroup" | "killasgroup" => {
                if boolean(value) != Some(true) {
                    draft.warn(e.line, format!("key `{key}` = {value}: Candor always signals the whole process group (and cgroup), so children stop with the program"));
                }
            }
            "autostart" => {
                if boolean(value) == Some(false) {
                    draft.warn(e.line, "key `autostart` = false: Candor starts every service it is given; leave this one out of the config or `candor stop` it after start");
                }
            }
            "startsecs" | "startretries" => {}
            "priority" => draft.warn(e.line, format!("key `priority` = {value}: Candor starts services together; to start one after another, give it `after = [\"…\"]`")),
            "redirect_stderr" => {
                if boolean(value) == Some(true) {
                    draft.warn(e.line, format!("key `redirect_stderr`: Candor keeps stdout and stderr in one store, each line marked with its stream (`candor logs {name}` shows both in order); nothing to do"));
                }
            }
            "stdout_syslog" | "stderr_syslog" if boolean(value) == Some(true) => {
                if !svc.comments.iter().any(|c| c.starts_with("Its lines also go to syslog")) {
                    svc.comments.push("Its lines also go to syslog as before: [[daemon.forward]] in [daemon].".into());
                }
            }
            k if k.starts_with("stdout_") || k.starts_with("stderr_") => draft.warn(
                e.line,
                format!("key `{k}`: Candor keeps every line of output itself (`candor logs {name}`, `logs = {{ max_bytes }}` caps it); to send lines to a file, syslog or journald, use `[[daemon.forward]]`"),
            ),
            "serverurl" => draft.warn(e.line, "key `serverurl` is supervisorctl's URL for the program; Candor's CLI finds its daemon itself"),
            k => draft.warn(e.line, format!("key `{k}` is not a supervisord program key Candor knows; skipped")),
        }
    }
    if !env.is_empty() {
        svc.set("env", Value::Object(env));
    }
    if !restart_said {
        svc.comments.push(
            "restart = \"on-failure\": supervisord's default autorestart = unexpected.".into(),
        );
    }
    svc.set("restart", restart);
    // A run shorter than startsecs failed to start; startretries of those in a row and it is
    // given up (FATAL). Candor: a run shorter than reset_after is a quick exit; `retries` of
    // them in a row and it is failed.
    let startsecs = get("startsecs").and_then(int).unwrap_or(1);
    let startretries = get("startretries").and_then(int).unwrap_or(3);
    if restart == "never" {
        for k in ["startsecs", "startretries"] {
            if let Some(e) = s.get(k) {
                draft.warn(e.line, format!("key `{k}`: with autorestart = false Candor starts the program once and does not retry it (supervisord retried a start that failed within startsecs); use restart = \"on-failure\" with `retries` to retry"));
            }
        }
    } else {
        svc.set("retries", startretries);
        svc.set("backoff", json!({ "reset_after": format!("{startsecs}s") }));
        svc.comments.push(format!(
            "retries = {startretries}, backoff.reset_after = {startsecs}s: supervisord gives up after startretries ({startretries}) runs in a row shorter than startsecs ({startsecs}s)."
        ));
    }
    if !stop.is_empty() {
        svc.set("stop", Value::Object(stop));
    }
    draft.services.push(svc);
}

fn mentions_process_num(s: &Section) -> bool {
    s.entries.iter().any(|e| e.value.contains("%(process_num)"))
        || s.get("process_name")
            .is_none_or(|p| p.value.contains("process_num"))
            && s.entries
                .iter()
                .any(|e| e.value.contains("%(process_name)"))
}

/// How `{instance}` compares with supervisord's number.
fn shift(start: u64) -> String {
    match start {
        0 => "one higher".into(),
        1 => "the same".into(),
        s => format!("{} lower", s - 1),
    }
}

/// `TERM` / `SIGTERM` → "SIGTERM", if Candor stops with it.
fn signal(v: &str) -> Option<String> {
    let upper = v.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    candor_spec::StopSignal::parse(&full).map(|s| s.name().to_string())
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_pairs_with_quotes_and_commas() {
        assert_eq!(
            environment("A=1, B=\"x,y\",C='q \"r\"' ,PATH=\"/usr/bin:/bin\"").unwrap(),
            [
                ("A".to_string(), "1".to_string()),
                ("B".into(), "x,y".into()),
                ("C".into(), "q \"r\"".into()),
                ("PATH".into(), "/usr/bin:/bin".into())
            ]
        );
        assert!(environment("A=\"open").is_err());
        assert!(environment("A=1,B").is_err());
    }

    fn import(text: &str) -> Draft {
        let mut d = Draft::default();
        read(Path::new("/etc/supervisor/supervisord.conf"), text, &mut d).expect("read");
        d
    }

    fn key<'a>(svc: &'a DraftService, k: &str) -> Option<&'a Value> {
        svc.keys
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v)
    }

    #[test]
    fn a_program_maps_key_by_key() {
        let d = import(
            "[program:api]\ncommand=/usr/bin/api --name %(program_name)s 'a|b'\ndirectory=%(here)s/app\nautorestart=true\nstopsignal=INT\nstopwaitsecs=20\nstartsecs=5\nstartretries=2\numask=022\nenvironment=A=\"1\",B=two\n",
        );
        let api = &d.services[0];
        assert_eq!(
            key(api, "command"),
            Some(&json!(["/usr/bin/api", "--name", "api", "a|b"]))
        );
        assert_eq!(key(api, "workdir"), Some(&json!("/etc/supervisor/app")));
        assert_eq!(key(api, "restart"), Some(&json!("always")));
        assert_eq!(
            key(api, "stop"),
            Some(&json!({"signal": "SIGINT", "timeout": "20s"}))
        );
        assert_eq!(key(api, "retries"), Some(&json!(2)));
        assert_eq!(key(api, "backoff"), Some(&json!({"reset_after": "5s"})));
        assert_eq!(key(api, "umask"), Some(&json!("0022")));
        assert_eq!(key(api, "env"), Some(&json!({"A": "1", "B": "two"})));
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn numprocs_is_replicas_and_the_shift_of_process_num_is_said() {
        let d = import(
            "[program:worker]\ncommand=python3 -m http.server 80%(process_num)02d\nprocess_name=%(program_name)s_%(process_num)02d\nnumprocs=3\nautorestart=false\n",
        );
        let w = &d.services[0];
        assert_eq!(key(w, "replicas"), Some(&json!(3)));
        assert_eq!(
            key(w, "command"),
            Some(&json!(["python3", "-m", "http.server", "800{instance}"]))
        );
        assert_eq!(key(w, "restart"), Some(&json!("never")));
        assert_eq!(key(w, "retries"), None);
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert_eq!(d.warnings[0].line, 4);
        assert!(
            d.warnings[0].text.contains("from numprocs_start (0) to 2"),
            "{}",
            d.warnings[0].text
        );
    }
}
