//! `candor export systemd` then `candor import` of each unit gives the service back: the same
//! command, env, user, workdir, restart, backoff, stop, readiness, limits, reload and
//! activated sockets (from the .socket units written beside).

use std::path::Path;

use candor_spec::{ServiceName, ServiceSpec, Spec};

use super::{systemd, write, Draft};
use crate::export::systemd::{env_file_text, units};

const CONFIG: &str = r#"
[service.api]
command = ["/usr/bin/python3", "-m", "http.server", "8080", "a b", "100%", "$HOME", "q\"uote", "back\\slash"]
workdir = "/tmp"
env = { GREETING = "hello world", DOLLAR = "p$ss${X}", QUOTE = "it's \"q\"", PCT = "100%" }
user = "nobody"
umask = "0027"
restart = "on-failure"
backoff = { initial = "2s", max = "16s" }
stop = { signal = "SIGINT", timeout = "25s" }
ready = "notify"
ready_timeout = "40s"
watchdog = "10s"
limits = { nofile = 4096, memory_max = "512MiB", memory_high = "400MiB", pids_max = 100, cpu_weight = 50, cpu_max = "150%" }
reload_signal = "SIGUSR1"
logs = { rate = 300 }

[service.job]
type = "oneshot"
command = ["/bin/sh", "-c", "echo hi; exit 0"]
condition = ["test", "-f", "/etc/hostname"]
timeout = "5m"
restart = "on-failure"

[service.sock]
command = ["sleep", "1000"]
sockets = [{ path = "/run/candor-import-test/rpc.sock", activate = true, mode = "0660", name = "rpc", backlog = 64 }, { listen = "127.0.0.1:18080", activate = true }]

[service.one-socket]
command = ["sleep", "1000"]
sockets = [{ listen = "[::1]:18081", activate = true }]

[service.plain]
command = ["sleep", "1000"]
restart = "never"
ready = "started"
reload = ["/bin/kill", "-USR2", "1"]
"#;

fn load(path: &Path, text: &str) -> Spec {
    candor_spec::parse_str(path, text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The unit of `spec` written into `dir` (and its env file), read back as a service.
fn round_trip(spec: &ServiceSpec, dir: &Path) -> (ServiceSpec, Draft) {
    let (files, _) = units(spec, dir);
    if !spec.env.is_empty() {
        let env = dir.join(format!("{}.env", spec.name));
        std::fs::write(env, env_file_text(spec)).expect("env file");
    }
    for (file, text) in &files {
        std::fs::write(dir.join(file), text).expect("unit");
    }
    let (file, text) = &files[0];
    let path = dir.join(file);
    let mut draft = Draft {
        source: path.clone(),
        ..Draft::default()
    };
    systemd::read(&path, text, &mut draft).expect("read");
    write::fix_names(&mut draft);
    let toml = write::render(&draft);
    let back = load(&dir.join("candor.toml"), &toml);
    let name = spec.name.clone();
    let svc = back
        .services
        .get(&name)
        .unwrap_or_else(|| panic!("{name} in\n{toml}"));
    (svc.clone(), draft)
}

#[test]
fn every_exported_unit_imports_as_the_service_it_came_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = load(&dir.path().join("candor.toml"), CONFIG);
    for (name, before) in &spec.services {
        let (after, draft) = round_trip(before, dir.path());
        let what = format!("{name}: {:?}", draft.warnings);
        assert_eq!(after.command, before.command, "{what}");
        let mut env = after.env_from_files.clone();
        env.extend(after.env.clone());
        assert_eq!(env, before.env, "{what}");
        assert_eq!(
            after.user.as_ref().map(|u| &u.name),
            before.user.as_ref().map(|u| &u.name),
            "{what}"
        );
        assert_eq!(after.workdir, before.workdir, "{what}");
        assert_eq!(after.umask, before.umask, "{what}");
        assert_eq!(after.restart, before.restart, "{what}");
        assert_eq!(after.backoff.initial, before.backoff.initial, "{what}");
        assert_eq!(after.backoff.max, before.backoff.max, "{what}");
        assert_eq!(after.stop, before.stop, "{what}");
        assert_eq!(after.kind, before.kind, "{what}");
        assert_eq!(after.ready, before.ready, "{what}");
        assert_eq!(after.ready_timeout, before.ready_timeout, "{what}");
        assert_eq!(after.timeout, before.timeout, "{what}");
        assert_eq!(after.watchdog, before.watchdog, "{what}");
        assert_eq!(after.condition, before.condition, "{what}");
        assert_eq!(after.limits, before.limits, "{what}");
        assert_eq!(after.logs.rate, before.logs.rate, "{what}");
        assert_eq!(after.reload_signal, before.reload_signal, "{what}");
        assert_eq!(after.reload, before.reload, "{what}");
        assert_eq!(after.activated, before.activated, "{what}");
        // What export writes, import reads: the only warnings are none.
        assert!(draft.warnings.is_empty(), "{what}");
    }
    let api = &spec.services[&ServiceName::new("api").unwrap()];
    assert_eq!(api.command.len(), 9, "the awkward words are all there");
}
