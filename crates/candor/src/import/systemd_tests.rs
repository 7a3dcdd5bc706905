//! The systemd reader, key by key: a unit's keys, `${VAR}`s from an EnvironmentFile=, ExecStartPre=
//! as oneshots, socket units beside it, systemd's defaults.

use super::super::write;
use super::*;

fn import(file: &str, text: &str) -> Draft {
    let mut d = Draft::default();
    read(Path::new(file), text, &mut d).expect("read");
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
fn a_unit_maps_key_by_key() {
    let d = import(
        "/etc/systemd/system/api.service",
        "[Unit]\nDescription=The API\nAfter=network.target\n[Service]\nType=notify\nEnvironment=\"GREETING=hello world\" PORT=8080\nExecStart=/usr/bin/api --port ${PORT} $GREETING \"100%%\"\nWorkingDirectory=/srv/api\nRestart=on-failure\nRestartSec=2\nTimeoutStopSec=30s\nKillSignal=SIGINT\nWatchdogSec=10s\nMemoryMax=512M\nLimitNOFILE=4096\nExecReload=/bin/kill -HUP $MAINPID\nProtectSystem=strict\n[Install]\nWantedBy=multi-user.target\n",
    );
    let api = &d.services[0];
    assert_eq!(api.name, "api");
    assert_eq!(
        key(api, "command"),
        Some(&json!([
            "/usr/bin/api",
            "--port",
            "8080",
            "hello",
            "world",
            "100%"
        ]))
    );
    assert_eq!(key(api, "ready"), Some(&json!("notify")));
    assert_eq!(
        key(api, "env"),
        Some(&json!({"GREETING": "hello world", "PORT": "8080"}))
    );
    assert_eq!(key(api, "workdir"), Some(&json!("/srv/api")));
    assert_eq!(key(api, "restart"), Some(&json!("on-failure")));
    assert_eq!(
        key(api, "backoff"),
        Some(&json!({"initial": "2s", "max": "2s"}))
    );
    assert_eq!(
        key(api, "stop"),
        Some(&json!({"timeout": "30s", "signal": "SIGINT"}))
    );
    assert_eq!(key(api, "watchdog"), Some(&json!("10s")));
    assert_eq!(
        key(api, "limits"),
        Some(&json!({"memory_max": "512MiB", "nofile": 4096}))
    );
    assert_eq!(key(api, "reload_signal"), Some(&json!("SIGHUP")));
    let lines: Vec<usize> = d.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [3, 17], "{:?}", d.warnings);
}

#[test]
fn variables_from_an_environment_file_expand_at_run_time_through_sh() {
    let d = import(
        "/x/web.service",
        "[Service]\nEnvironmentFile=-/nonexistent/web.env\nExecStart=/usr/bin/web --port=${PORT} $OPTS 'it''s'\n",
    );
    let web = &d.services[0];
    let cmd = key(web, "command").unwrap()[2]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cmd, "exec /usr/bin/web --port=\"${PORT}\" $OPTS its");
    // systemd's defaults where the unit says nothing: no restart, 90 s to stop.
    assert_eq!(key(web, "restart"), Some(&json!("never")));
    assert_eq!(key(web, "stop"), Some(&json!({"timeout": "90s"})));
    assert_eq!(
        key(web, "env_file"),
        Some(&json!(["-/nonexistent/web.env"]))
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn exec_start_pre_is_a_oneshot_the_service_is_after() {
    let d = import(
        "/x/app.service",
        "[Service]\nUser=root\nExecStartPre=-/bin/mkdir /run/app\nExecStartPre=/usr/bin/app migrate\nExecStart=/usr/bin/app\n",
    );
    let names: Vec<&str> = d.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app-pre", "app-pre-2", "app"]);
    assert_eq!(
        key(&d.services[0], "command"),
        Some(&json!([
            "sh",
            "-c",
            "\"$@\" || true",
            "sh",
            "/bin/mkdir",
            "/run/app"
        ]))
    );
    assert_eq!(key(&d.services[0], "user"), Some(&json!("root")));
    assert_eq!(key(&d.services[1], "after"), Some(&json!(["app-pre"])));
    assert_eq!(key(&d.services[2], "after"), Some(&json!(["app-pre-2"])));
    assert_eq!(d.warnings.len(), 2);
}

#[test]
fn a_socket_unit_beside_it_is_its_activated_sockets() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("web.socket"),
        "[Socket]\nListenStream=8080\nListenStream=/run/web.sock\nSocketMode=0600\nListenDatagram=514\nAccept=no\n[Install]\nWantedBy=sockets.target\n",
    )
    .expect("write");
    let unit = dir.path().join("web.service");
    let d = import(
        unit.to_str().unwrap(),
        "[Service]\nExecStart=/usr/bin/web\n",
    );
    let web = &d.services[0];
    assert_eq!(
        key(web, "sockets"),
        Some(&json!([
            {"listen": "[::]:8080", "activate": true},
            {"path": "/run/web.sock", "mode": "0600", "activate": true}
        ]))
    );
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(
        d.warnings[0]
            .text
            .starts_with("web.socket:5: ListenDatagram=514: only ListenStream="),
        "{:?}",
        d.warnings
    );
    let text = write::render(&d);
    candor_spec::parse_str(&dir.path().join("candor.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
}
