//! `compose.yaml` / `docker-compose.yml` into a draft, for services leaving containers: each
//! service with a `command` or `entrypoint` runs that program on the host (`image` alone is
//! left out: Candor runs host programs), `healthcheck` becomes an exec probe, `depends_on`
//! conditions `after`, `restart`, `stop_*`, replicas and resource limits map; ports, volumes,
//! networks, build and the rest are warnings that say what to do on the host.

mod deploy;
mod logging;

use std::path::Path;

use serde_json::{json, Map, Value as Json};

use super::draft::{Draft, DraftService};
use super::fields;
use super::yaml::{self, Entry, Node, Value};
use deploy::{cpus, deploy, memory, replicas, ulimits};
use logging::{logging, Forwards};

pub fn read(path: &Path, text: &str, draft: &mut Draft) -> anyhow::Result<()> {
    let doc = yaml::load(path, text)?;
    let Some(top) = doc.entries() else {
        anyhow::bail!(
            "{}:{}: a compose file is a mapping with `services:`, and this is {}",
            path.display(),
            doc.line,
            doc.kind()
        );
    };
    let mut services = None;
    for e in top {
        match e.key.as_str() {
            "services" => services = Some(e),
            "version" | "name" => draft.header.push(format!(
                "compose `{}: {}`: nothing to carry over",
                e.key,
                e.value.scalar().unwrap_or_default()
            )),
            k if k.starts_with("x-") => draft.header.push(format!(
                "`{k}` (line {}) is an extension field: only what the services take from it \
                 (anchors, `<<` merges) was carried over",
                e.line
            )),
            "volumes" => draft.warn(
                e.line,
                "top-level `volumes`: named volumes are Docker's; on the host, use \
                 directories and point each service's paths at them",
            ),
            "networks" => draft.warn(
                e.line,
                "top-level `networks`: host programs share the host's network; services reach \
                 each other on 127.0.0.1 and their own ports",
            ),
            "secrets" | "configs" => draft.warn(
                e.line,
                format!(
                    "top-level `{}`: on the host, keep them as files readable by the service's \
                     user, or in an env_file (0600)",
                    e.key
                ),
            ),
            other => draft.warn(
                e.line,
                format!("top-level key `{other}` has no Candor equivalent and was left out"),
            ),
        }
    }
    let Some(services) = services else {
        anyhow::bail!(
            "{}: no `services:` section; is this a compose file? (give --format)",
            path.display()
        );
    };
    let Some(list) = services.value.entries() else {
        anyhow::bail!(
            "{}:{}: `services` is a mapping of names to services, and this is {}",
            path.display(),
            services.line,
            services.value.kind()
        );
    };
    draft.header.push(
        "Commands, paths and users were the containers': check they exist on this host.".into(),
    );
    let mut waits = Vec::new();
    let mut forwards = Forwards::new();
    for s in list {
        if let Some(svc) = service(draft, path, s, &mut waits, &mut forwards) {
            draft.services.push(svc);
        }
    }
    let kept: Vec<&str> = draft.services.iter().map(|s| s.name.as_str()).collect();
    let entries: Vec<Json> = (forwards.into_iter())
        .filter_map(|(mut target, names)| {
            let names: Vec<String> = names
                .into_iter()
                .filter(|n| kept.contains(&n.as_str()))
                .collect();
            (!names.is_empty()).then(|| {
                target.insert("services".into(), json!(names));
                Json::Object(target)
            })
        })
        .collect();
    if !entries.is_empty() {
        draft.daemon.push(("forward".into(), Json::Array(entries)));
    }
    for (dep, dependent, line) in waits {
        fields::make_oneshot(draft, &dep, &dependent, line);
    }
    fields::drop_missing_after(draft);
    fields::sentences(draft);
    Ok(())
}

/// Whether a string in `v` has a `$VAR` or `${VAR}` compose would fill in (`$$` is a `$`).
fn interpolated(v: &Node) -> bool {
    match &v.value {
        Value::Str(s) => {
            let b = s.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'$' {
                    match b.get(i + 1) {
                        Some(b'$') => i += 1,
                        Some(c) if *c == b'{' || *c == b'_' || c.is_ascii_alphabetic() => {
                            return true
                        }
                        _ => {}
                    }
                }
                i += 1;
            }
            false
        }
        Value::List(items) => items.iter().any(interpolated),
        Value::Map(entries) => entries.iter().any(|e| interpolated(&e.value)),
        _ => false,
    }
}

/// A `command` or `entrypoint`: a list as is, a string split as compose splits it (words and
/// quotes; no shell runs it in the container either).
fn argv(draft: &mut Draft, e: &Entry) -> Option<Vec<String>> {
    match &e.value.value {
        Value::Str(s) => match shlex::split(s) {
            Some(words) => Some(words),
            None => {
                draft.warn(
                    e.line,
                    format!("`{}` has a quote that is not closed; left out", e.key),
                );
                None
            }
        },
        Value::List(items) => {
            let words: Option<Vec<String>> = items.iter().map(Node::scalar).collect();
            if words.is_none() {
                draft.warn(
                    e.line,
                    format!("`{}` is not a list of strings; left out", e.key),
                );
            }
            words
        }
        Value::Null => Some(Vec::new()),
        _ => {
            draft.warn(
                e.line,
                format!("`{}` is {}; left out", e.key, e.value.kind()),
            );
            None
        }
    }
}

fn service(
    draft: &mut Draft,
    path: &Path,
    s: &Entry,
    waits: &mut Vec<(String, String, usize)>,
    forwards: &mut Forwards,
) -> Option<DraftService> {
    let name = s.key.clone();
    let mut svc = DraftService::new(&name, s.line);
    let Some(keys) = s.value.entries() else {
        draft.warn(
            s.line,
            format!(
                "service `{name}` is {}, not a mapping; left out",
                s.value.kind()
            ),
        );
        return None;
    };
    let mut entrypoint: Option<Vec<String>> = None;
    let mut command: Option<Vec<String>> = None;
    let mut restart_given = false;
    for e in keys {
        let k = e.key.as_str();
        let v = &e.value;
        if interpolated(v) {
            draft.warn(
                e.line,
                format!(
                    "`{k}` uses `$VAR` or `${{VAR}}`, which compose fills in from the environment \
                     or .env when it loads the file; Candor does not: write the value"
                ),
            );
        }
        match k {
            "command" => command = argv(draft, e),
            "entrypoint" => entrypoint = argv(draft, e),
            "image" => {}
            "environment" => environment(draft, &mut svc, e),
            "env_file" => env_file(draft, &mut svc, e, path),
            "working_dir" => {
                if v.as_str().is_none() {
                    draft.warn(e.line, "`working_dir` is not a string; left out");
                }
            }
            "user" => user(draft, &mut svc, e),
            "restart" => restart_given |= restart(draft, &mut svc, e),
            "healthcheck" => healthcheck(draft, &mut svc, e),
            "depends_on" => depends_on(draft, &mut svc, e, waits),
            "stop_signal" => match fields::signal(v) {
                Some(sig) => svc.set("stop", json!({ "signal": sig })),
                None => draft.warn(
                    e.line,
                    "`stop_signal` is not one Candor sends (HUP, INT, QUIT, KILL, USR1, USR2, \
                     TERM, WINCH); the default SIGTERM is used",
                ),
            },
            "stop_grace_period" => match v.scalar().and_then(|t| fields::duration_text(&t)) {
                Some(d) => svc.set("stop", json!({ "timeout": d })),
                None => draft.warn(e.line, "`stop_grace_period` is not a duration; left out"),
            },
            "deploy" => deploy(draft, &mut svc, e, &mut restart_given),
            "scale" => replicas(draft, &mut svc, e),
            "mem_limit" => memory(draft, &mut svc, e),
            "cpus" => cpus(draft, &mut svc, e),
            "pids_limit" => match v.int() {
                Some(n) if n > 0 => svc.set("limits", json!({ "pids_max": n })),
                _ => draft.warn(e.line, "`pids_limit` is not a positive number; left out"),
            },
            "ulimits" => ulimits(draft, &mut svc, e),
            "ports" | "expose" => draft.warn(
                e.line,
                format!(
                    "key `{k}`: there is no port mapping on the host; the program listens on \
                     its own port: set it to the host port you published (or hand it a socket \
                     with `sockets = [{{ listen = \"0.0.0.0:PORT\", activate = true }}]` if it \
                     takes activated sockets)"
                ),
            ),
            "volumes" | "tmpfs" => draft.warn(
                e.line,
                format!(
                    "key `{k}`: there are no mounts on the host; point `{name}` at the host \
                     directories themselves (the left side of each volume)"
                ),
            ),
            "networks" | "network_mode" | "links" | "extra_hosts" | "hostname" | "dns" => {
                draft.warn(
                    e.line,
                    format!(
                        "key `{k}`: host programs share the host's network and names; reach \
                         other services on 127.0.0.1 and their ports"
                    ),
                )
            }
            "build" => draft.warn(
                e.line,
                format!(
                    "key `build`: Candor runs programs already on the host; build `{name}` \
                     there (what the Dockerfile does) and check `command` names the result"
                ),
            ),
            "logging" => logging(draft, &mut svc, e, forwards),
            "container_name" | "labels" | "profiles" | "platform" | "pull_policy" => draft.warn(
                e.line,
                format!("key `{k}` is about the container; it has no meaning on the host and was left out"),
            ),
            k if k.starts_with("x-") => {}
            other => draft.warn(
                e.line,
                format!(
                    "key `{other}` has no Candor equivalent and was left out; check what it \
                     does for `{name}` and set it up by hand"
                ),
            ),
        }
    }
    let argv: Vec<String> = entrypoint
        .iter()
        .flatten()
        .chain(command.iter().flatten())
        .cloned()
        .collect();
    if argv.is_empty() {
        let image = s.value.get("image").and_then(|i| i.value.scalar());
        draft.warn(
            s.line,
            format!(
                "service `{name}` runs {} without a `command`: Candor runs host programs, so it \
                 was left out; install the program on the host and add it with its command \
                 (or keep running it in a container)",
                image.map_or("no command".to_string(), |i| format!(
                    "the image's entrypoint ({i})"
                ))
            ),
        );
        return None;
    }
    if let Some(image) = s.value.get("image") {
        svc.comments.push(format!(
            "was image {}: runs `{}` from the host instead",
            image.value.scalar().unwrap_or_default(),
            argv[0]
        ));
    }
    if entrypoint.is_some() && command.is_some() {
        svc.comments
            .push("command: entrypoint, then command".into());
    }
    svc.keys.insert(0, ("command".into(), json!(argv)));
    let given = s.value.get("working_dir").and_then(|w| w.value.as_str());
    fields::workdir(&mut svc, &super::host::absolute_dir(path), given, "compose");
    if !restart_given {
        svc.set("restart", "never");
        svc.comments
            .push("restart = \"never\": compose's default restart is \"no\"".into());
    }
    Some(svc)
}

fn environment(draft: &mut Draft, svc: &mut DraftService, e: &Entry) {
    let mut map = Map::new();
    let mut passed = Vec::new();
    match &e.value.value {
        Value::List(items) => {
            for item in items {
                match item.scalar() {
                    Some(s) => match s.split_once('=') {
                        Some((k, v)) => {
                            map.insert(k.to_string(), json!(v));
                        }
                        None => passed.push(s),
                    },
                    None => draft.warn(
                        item.line,
                        "an `environment` entry is not KEY=VALUE; left out",
                    ),
                }
            }
        }
        Value::Map(entries) => {
            for kv in entries {
                match fields::env_value(&kv.value) {
                    Some(v) => {
                        map.insert(kv.key.clone(), json!(v));
                    }
                    None => passed.push(kv.key.clone()),
                }
            }
        }
        _ => draft.warn(
            e.line,
            "`environment` is neither a list nor a mapping; left out",
        ),
    }
    if !passed.is_empty() {
        svc.comments.push(format!(
            "{} passed from the environment compose ran in: Candor's services inherit the \
             daemon's environment",
            passed.join(", ")
        ));
    }
    if !map.is_empty() {
        svc.set("env", Json::Object(map));
    }
}

/// `env_file`: a file compose requires that is not there (relative to the compose file) is
/// written optional (`-PATH`) with a warning, as Candor's check would refuse it.
fn env_file(draft: &mut Draft, svc: &mut DraftService, e: &Entry, source: &Path) {
    let items: Vec<&Node> = match &e.value.value {
        Value::List(items) => items.iter().collect(),
        _ => vec![&e.value],
    };
    let mut files = Vec::new();
    for item in items {
        let (path, required) = match &item.value {
            Value::Str(p) => (Some(p.clone()), true),
            Value::Map(_) => (
                item.get("path").and_then(|p| p.value.scalar()),
                item.get("required")
                    .and_then(|r| r.value.bool())
                    .unwrap_or(true),
            ),
            _ => (None, true),
        };
        let dir = super::host::absolute_dir(source);
        // Absolute: Candor would read a relative one from the config's directory.
        let path = path.map(|p| dir.join(p).components().collect::<std::path::PathBuf>());
        let path = path.map(|p| p.to_string_lossy().into_owned());
        match path {
            Some(p) if required && super::host::readable(Path::new(&p)) => files.push(p),
            Some(p) if required => {
                draft.warn(
                    item.line,
                    format!(
                        "env_file `{p}` is not there: written as optional (\"-{p}\"), read \
                         once it exists; create it with the service's variables"
                    ),
                );
                files.push(format!("-{p}"));
            }
            Some(p) => files.push(format!("-{p}")),
            None => draft.warn(item.line, "an `env_file` entry names no file; left out"),
        }
    }
    match files.len() {
        0 => {}
        1 => svc.set("env_file", files.remove(0)),
        _ => svc.set("env_file", json!(files)),
    }
}

fn user(draft: &mut Draft, svc: &mut DraftService, e: &Entry) {
    let Some(text) = e.value.scalar() else {
        draft.warn(e.line, "`user` is not a name or number; left out");
        return;
    };
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (text, None),
    };
    if !super::host::user_exists(&user) {
        draft.warn(
            e.line,
            format!(
                "user `{user}` does not exist on this host (it was the container's): left out; \
                 create it, or set `user` to an account of this host"
            ),
        );
        return;
    }
    svc.set("user", user);
    if let Some(g) = group {
        if g.parse::<u32>().is_err() && super::host::group_exists(&g) {
            svc.set("group", g);
        } else {
            draft.warn(
                e.line,
                format!("group `{g}` of `user` is not a group name of this host: left out; set `group` by hand"),
            );
        }
    }
}

/// `restart`: whether it was set.
fn restart(draft: &mut Draft, svc: &mut DraftService, e: &Entry) -> bool {
    let text = e.value.scalar().unwrap_or_default();
    let (word, count) = match text.split_once(':') {
        Some((w, n)) => (w, n.trim().parse::<i64>().ok()),
        None => (text.as_str(), None),
    };
    let policy = match word {
        "no" | "false" => "never",
        "always" => "always",
        "unless-stopped" => {
            svc.comments.push(
                "restart unless-stopped: Candor's `candor stop` keeps a service stopped until \
                 `candor start`"
                    .into(),
            );
            "always"
        }
        "on-failure" => "on-failure",
        _ => {
            draft.warn(
                e.line,
                "`restart` is not no, always, on-failure or unless-stopped; left out",
            );
            return false;
        }
    };
    svc.set("restart", policy);
    if let Some(n) = count.filter(|n| *n > 0) {
        svc.set("retries", n);
    }
    true
}

fn healthcheck(draft: &mut Draft, svc: &mut DraftService, e: &Entry) {
    let mut probe = Map::new();
    let mut exec = None;
    let mut disabled = false;
    for h in e.value.entries().unwrap_or_default() {
        let v = &h.value;
        let duration =
            |key: &str, draft: &mut Draft| match v.scalar().and_then(|t| fields::duration_text(&t))
            {
                Some(d) => Some(d),
                None => {
                    draft.warn(
                        h.line,
                        format!("healthcheck.{key} is not a duration; left out"),
                    );
                    None
                }
            };
        match h.key.as_str() {
            "test" => match test(v) {
                Ok(Some(argv)) => exec = Some(argv),
                Ok(None) => disabled = true,
                Err(why) => draft.warn(
                    h.line,
                    format!("healthcheck.test {why}; no probe was written"),
                ),
            },
            "disable" => disabled |= v.bool() == Some(true),
            "interval" => {
                if let Some(d) = duration("interval", draft) {
                    probe.insert("every".into(), json!(d));
                }
            }
            "timeout" => {
                if let Some(d) = duration("timeout", draft) {
                    probe.insert("timeout".into(), json!(d));
                }
            }
            "retries" => match v.int() {
                Some(n) if n >= 1 => {
                    probe.insert("failures".into(), json!(n));
                }
                _ => draft.warn(
                    h.line,
                    "healthcheck.retries is not a number of at least 1; left out",
                ),
            },
            "start_period" | "start_interval" => svc.comments.push(format!(
                "healthcheck.{}: not needed: Candor probes quickly until the first pass and \
                 counts no failure before it",
                h.key
            )),
            other => draft.warn(
                h.line,
                format!("key `healthcheck.{other}` has no Candor equivalent; left out"),
            ),
        }
    }
    if disabled {
        svc.comments.push("healthcheck disabled: no probe".into());
        return;
    }
    let Some(argv) = exec else { return };
    probe.insert("exec".into(), json!(argv));
    svc.set("probe", Json::Object(probe));
    svc.set("on_unhealthy", "alert");
    svc.comments.push(
        "probe: the healthcheck, run on the host; on_unhealthy = \"alert\": Docker only marks \
         a container unhealthy (say \"restart\" to have Candor restart it)"
            .into(),
    );
}

/// `healthcheck.test` as a probe's argv (None: `NONE`), or why not.
fn test(v: &Node) -> Result<Option<Vec<String>>, String> {
    let words: Vec<String> = match &v.value {
        Value::Str(s) => return Ok(Some(vec!["sh".into(), "-c".into(), s.clone()])),
        Value::List(items) => items
            .iter()
            .map(Node::scalar)
            .collect::<Option<_>>()
            .ok_or("is not a list of strings")?,
        _ => return Err(format!("is {}", v.kind())),
    };
    match words.split_first() {
        Some((first, rest)) if first == "CMD" && !rest.is_empty() => Ok(Some(rest.to_vec())),
        Some((first, rest)) if first == "CMD-SHELL" && rest.len() == 1 => {
            Ok(Some(vec!["sh".into(), "-c".into(), rest[0].clone()]))
        }
        Some((first, _)) if first == "NONE" => Ok(None),
        _ => Err("is not [\"CMD\", …], [\"CMD-SHELL\", \"…\"] or [\"NONE\"]".into()),
    }
}

fn depends_on(
    draft: &mut Draft,
    svc: &mut DraftService,
    e: &Entry,
    waits: &mut Vec<(String, String, usize)>,
) {
    let mut after = Vec::new();
    match &e.value.value {
        Value::List(items) => {
            for item in items {
                match item.scalar() {
                    Some(dep) => after.push(dep),
                    None => draft.warn(
                        item.line,
                        "a `depends_on` entry is not a service name; left out",
                    ),
                }
            }
        }
        Value::Map(deps) => {
            for dep in deps {
                let condition = dep
                    .value
                    .get("condition")
                    .and_then(|c| c.value.as_str())
                    .unwrap_or("service_started");
                let when = match condition {
                    "service_started" => "running (ready)",
                    "service_healthy" => "running: its probe passed",
                    "service_completed_successfully" => {
                        waits.push((dep.key.clone(), svc.name.clone(), dep.line));
                        "done"
                    }
                    other => {
                        draft.warn(dep.line, format!("condition `{other}` is not known; `{}` is started once `{}` is running", svc.name, dep.key));
                        "running"
                    }
                };
                svc.comments.push(format!(
                    "depends_on {} ({condition}): started once it is {when}",
                    dep.key
                ));
                for sub in dep.value.entries().unwrap_or_default() {
                    match sub.key.as_str() {
                        "condition" => {}
                        "restart" if sub.value.bool() == Some(true) => draft.warn(
                            sub.line,
                            format!("key `depends_on.{}.restart`: Candor does not restart `{}` when `{}` restarts", dep.key, svc.name, dep.key),
                        ),
                        "required" if sub.value.bool() == Some(false) => draft.warn(
                            sub.line,
                            format!("key `depends_on.{}.required: false`: Candor's `after` needs `{}` to be defined", dep.key, dep.key),
                        ),
                        "restart" | "required" => {}
                        other => draft.warn(sub.line, format!("key `depends_on.{}.{other}` has no Candor equivalent; left out", dep.key)),
                    }
                }
                after.push(dep.key.clone());
            }
        }
        _ => draft.warn(
            e.line,
            "`depends_on` is neither a list nor a mapping; left out",
        ),
    }
    if !after.is_empty() {
        svc.set("after", json!(after));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn import(text: &str) -> Draft {
        let mut d = Draft::default();
        read(Path::new("/candor-test-nowhere/compose.yaml"), text, &mut d)
            .unwrap_or_else(|e| panic!("{e:#}"));
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

    fn all(d: &Draft, name: &str, k: &str) -> Vec<Json> {
        let svc = d.services.iter().find(|s| s.name == name).unwrap();
        svc.keys
            .iter()
            .filter(|(have, _)| have == k)
            .map(|(_, v)| v.clone())
            .collect()
    }

    const DOC: &str = r#"name: shop
x-common: &common
  restart: unless-stopped
  environment:
    TZ: UTC
services:
  db:
    image: postgres:16
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres"]
      interval: 5s
      timeout: 3s
      retries: 5
      start_period: 10s
  migrate:
    image: shop/api
    command: ["./manage.py", "migrate"]
    depends_on:
      db:
        condition: service_healthy
  api:
    <<: *common
    image: shop/api
    entrypoint: ./run.sh
    command: --port 8000 --workers 2
    working_dir: /srv/api
    env_file: [.env, {path: .env.local, required: false}]
    ports: ["8000:8000"]
    volumes: ["./data:/data"]
    depends_on:
      migrate:
        condition: service_completed_successfully
      db:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "curl", "-f", "http://127.0.0.1:8000/health"]
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    deploy:
      replicas: 2
      resources:
        limits: {memory: 512M, cpus: "1.5"}
"#;

    #[test]
    fn services_with_a_command_run_on_the_host() {
        let d = import(DOC);
        let names: Vec<_> = d.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["migrate", "api"]);
        assert_eq!(key(&d, "migrate", "type"), Some(json!("oneshot")));
        assert_eq!(
            key(&d, "migrate", "command"),
            Some(json!(["/candor-test-nowhere/manage.py", "migrate"]))
        );
        assert_eq!(
            key(&d, "api", "command"),
            Some(json!([
                "/srv/api/run.sh",
                "--port",
                "8000",
                "--workers",
                "2"
            ]))
        );
        assert_eq!(key(&d, "api", "restart"), Some(json!("always")));
        assert_eq!(key(&d, "api", "env"), Some(json!({"TZ": "UTC"})));
        // No .env next to the compose file (in a directory that does not exist): optional, warned.
        assert_eq!(
            key(&d, "api", "env_file"),
            Some(json!([
                "-/candor-test-nowhere/.env",
                "-/candor-test-nowhere/.env.local"
            ]))
        );
        assert_eq!(key(&d, "api", "workdir"), Some(json!("/srv/api")));
        // db was left out (image only), so the dependencies on it are dropped.
        assert_eq!(key(&d, "api", "after"), Some(json!(["migrate"])));
        assert_eq!(key(&d, "migrate", "after"), None);
        assert_eq!(
            key(&d, "api", "probe"),
            Some(json!({"exec": ["curl", "-f", "http://127.0.0.1:8000/health"]}))
        );
        assert_eq!(key(&d, "api", "on_unhealthy"), Some(json!("alert")));
        assert_eq!(
            all(&d, "api", "stop"),
            [json!({"signal": "SIGINT"}), json!({"timeout": "1m30s"})]
        );
        assert_eq!(key(&d, "api", "replicas"), Some(json!(2)));
        assert_eq!(
            all(&d, "api", "limits"),
            [json!({"memory_max": "512MiB"}), json!({"cpu_max": "150%"})]
        );
    }

    #[test]
    fn what_does_not_map_is_warned_at_its_line() {
        let d = import(DOC);
        let got: Vec<(usize, String)> = d
            .warnings
            .iter()
            .map(|w| (w.line, w.text.chars().take(36).collect()))
            .collect();
        let want: Vec<(usize, String)> = [
            (7, "service `db` runs the image's entryp"),
            (27, "env_file `/candor-test-nowhere/.env`"),
            (28, "key `ports`: there is no port mappin"),
            (29, "key `volumes`: there are no mounts o"),
            (15, "`migrate` depends on `db`, which is "),
            (21, "`api` depends on `db`, which is not "),
        ]
        .into_iter()
        .map(|(l, t)| (l, t.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn interpolation_is_found_in_strings_lists_and_maps() {
        let n = |t: &str| {
            yaml::load(Path::new("t"), &format!("v: {t}\n"))
                .unwrap()
                .get("v")
                .unwrap()
                .value
                .clone()
        };
        assert!(interpolated(&n("\"a $PORT\"")));
        assert!(interpolated(&n("[a, \"${X:-1}\"]")));
        assert!(interpolated(&n("{A: $B}")));
        assert!(!interpolated(&n("\"cost $$5 and $1\"")));
        assert!(!interpolated(&n("plain")));
    }

    #[test]
    fn healthcheck_forms() {
        let n = |t: &str| {
            yaml::load(Path::new("t"), &format!("v: {t}\n"))
                .unwrap()
                .get("v")
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(
            test(&n("curl -f x")),
            Ok(Some(vec!["sh".into(), "-c".into(), "curl -f x".into()]))
        );
        assert_eq!(test(&n("[NONE]")), Ok(None));
        assert!(test(&n("[CMD]")).is_err());
    }

    #[test]
    fn interpolation_is_warned_and_a_restart_count_is_retries() {
        let d = import(
            "services:\n  web:\n    command: app --port ${PORT:-80}\n    restart: on-failure:3\n",
        );
        assert_eq!(d.warnings.len(), 1);
        assert_eq!(d.warnings[0].line, 3);
        assert!(d.warnings[0].text.contains("compose fills in"));
        assert_eq!(key(&d, "web", "retries"), Some(json!(3)));
        assert_eq!(key(&d, "web", "restart"), Some(json!("on-failure")));
    }
}
