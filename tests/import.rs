//! `candor import` on configs written in the style of each tool's documentation
//! (`tests/import/<format>/`): the exact warnings for what does not map, the output passing
//! `candor check`, and the imported services running under a real daemon. A fixture is a
//! row of [`FIXTURES`]; `@FREE_PORT@` in its files becomes a port nothing listens on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use candor_scenarios::{candor_bin, free_port, wait_for, Daemon};

const T: Duration = Duration::from_secs(30);

/// One source config and what importing it must give.
struct Fixture {
    /// Its directory under tests/import (copied whole: a Procfile's .env comes along).
    dir: &'static str,
    /// The file imported.
    file: &'static str,
    /// `--format`, when the name should not be trusted to say it.
    format: Option<&'static str>,
    /// Every warning, exactly, `{file}` standing for the path imported and `{dir}` for its
    /// directory (absolute).
    warnings: &'static [&'static str],
    /// What the imported config must contain (after `@FREE_PORT@` and `{dir}` are filled).
    contains: &'static [&'static str],
    /// Services that must become `running`, and oneshots that must become `done`.
    running: &'static [&'static str],
    done: &'static [&'static str],
    /// Whether a service listens on `@FREE_PORT@` once running.
    serves_port: bool,
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        dir: "procfile",
        file: "Procfile",
        format: None,
        warnings: &[
            "warning: {file}:7: is not `name: command` (a name of letters, digits, `_` or `-`, a colon, a command); skipped, as foreman skips it",
            "warning: {file}:8: process `web` is defined again (first at line 2); this one is skipped: give it another name to run both",
        ],
        contains: &[
            "[service.web]\ncommand = [\"sh\", \"-c\", \"python3 -m http.server --bind 127.0.0.1 $HTTP_PORT\"]\nworkdir = \"{dir}\"\nenv = { PORT = \"5000\" }\nenv_file = \"{dir}/.env\"\n",
            "# The command expands a variable ($…): run through sh -c.\n",
            "command = [\"sh\", \"-c\", \"while true; do echo \\\"working on $QUEUE\\\"; sleep 1; done\"]\n",
            "# The command runs several commands (;): run through sh -c.\n",
            "[service.release]\ncommand = [\"sleep\", \"100000\"]\n",
            "env = { PORT = \"5400\" }",
        ],
        running: &["web", "worker", "clock", "release", "port-echo"],
        done: &[],
        serves_port: true,
    },
    Fixture {
        dir: "supervisord",
        file: "supervisord.conf",
        format: None,
        warnings: &[
            "warning: {file}:3: [unix_http_server] is supervisorctl's socket: Candor's CLI talks to its own (`[daemon] socket`; `socket_group` lets a group's members in); skipped",
            "warning: {file}:8: key `logfile` of [supervisord]: Candor keeps its own events and every service's output in its store (`candor events`, `candor logs`); to send them on, `[[daemon.forward]]`",
            "warning: {file}:9: key `pidfile` of [supervisord] has no Candor equivalent (the daemon's own settings are `[daemon]`: state_dir, socket); skipped",
            "warning: {file}:10: key `childlogdir` of [supervisord]: Candor keeps its own events and every service's output in its store (`candor events`, `candor logs`); to send them on, `[[daemon.forward]]`",
            "warning: {file}:13: [rpcinterface:supervisor] is supervisorctl's: the candor command needs no such section; skipped",
            "warning: {file}:16: [supervisorctl] is supervisorctl's: the candor command needs no such section; skipped",
            "warning: {file}:27: key `stdout_logfile`: Candor keeps every line of output itself (`candor logs web`, `logs = { max_bytes }` caps it); to send lines to a file, syslog or journald, use `[[daemon.forward]]`",
            "warning: {file}:28: key `redirect_stderr`: Candor keeps stdout and stderr in one store, each line marked with its stream (`candor logs web` shows both in order); nothing to do",
            "warning: {file}:39: key `exitcodes` = 0,2: Candor expects only exit 0 (restart = \"on-failure\" restarts any other code, \"never\" marks it failed); make the program exit 0, or use restart = \"always\"",
            "warning: {file}:40: key `priority` = 20: Candor starts services together; to start one after another, give it `after = [\"…\"]`",
            "warning: {file}:42: key `stdout_logfile`: Candor keeps every line of output itself (`candor logs worker`, `logs = { max_bytes }` caps it); to send lines to a file, syslog or journald, use `[[daemon.forward]]`",
            "warning: {file}:43: key `stdout_logfile_maxbytes`: Candor keeps every line of output itself (`candor logs worker`, `logs = { max_bytes }` caps it); to send lines to a file, syslog or journald, use `[[daemon.forward]]`",
            "warning: {file}:48: key `startretries`: with autorestart = false Candor starts the program once and does not retry it (supervisord retried a start that failed within startsecs); use restart = \"on-failure\" with `retries` to retry",
            "warning: {file}:51: key `user`: user `candor-no-such-user` does not exist on this machine, so it was left out (the config would not pass `candor check`); create it, then add user = \"candor-no-such-user\"",
            "warning: {file}:54: [group:app] has no Candor equivalent (no groups: `candor start web worker` names them); each program is a service of its own",
            "warning: {file}:57: [eventlistener:crashmail] is not imported: supervisord's event protocol has no Candor equivalent; `[[daemon.hooks]]` runs a command or posts a webhook when a service fails",
            "warning: {file}:62: {dir}/conf.d/queue.conf:5: key `stdout_logfile`: Candor keeps every line of output itself (`candor logs queue`, `logs = { max_bytes }` caps it); to send lines to a file, syslog or journald, use `[[daemon.forward]]`",
            "warning: {file}:62: [include] files: `/etc/supervisor/candor-import-none/*.conf` matches no file here, so nothing of it was imported; import those files where they are (`candor import FILE --format supervisord`)",
        ],
        contains: &[
            "[service.web]\ncommand = [\"python3\", \"-m\", \"http.server\", \"--bind\", \"127.0.0.1\", \"@FREE_PORT@\"]\nworkdir = \"{dir}\"\nenv = { APP_ENV = \"production\", HOME_AT_IMPORT = \"/home/import-test\", LANG = \"C.UTF-8\", PYTHONUNBUFFERED = \"1\" }\nrestart = \"always\"\nretries = 3\nbackoff = { reset_after = \"1s\" }\nstop = { signal = \"SIGINT\", timeout = \"5s\" }\n",
            "command = [\"/bin/sh\", \"-c\", \"while true; do echo worker 0{instance} $WORKER_NAME; sleep 1; done\"]\nreplicas = 3\nuser = \"nobody\"\nenv = { APP_ENV = \"production\", LANG = \"C.UTF-8\", QUEUE = \"default, then low\", WORKER_NAME = \"worker-{instance}\" }\nrestart = \"on-failure\"\n",
            "# Included: from {dir}/conf.d/queue.conf:2.\n# retries = 3, backoff.reset_after = 1s: supervisord gives up after startretries (3) runs in a row shorter than startsecs (1s).\n[service.queue]\ncommand = [\"sh\", \"-c\", \"echo \\\"queue reads {dir}/conf.d\\\"; exec sleep 100000\"]\n",
            "# user = \"candor-no-such-user\" (no such user here)\n# Its lines also go to syslog as before: [[daemon.forward]] in [daemon].\n[service.ticker]\n",
            "\n[daemon]\nforward = [{ services = [\"ticker\"], syslog = \"unix:///dev/log\" }]\n",
        ],
        running: &["web", "worker@1", "worker@2", "worker@3", "ticker", "queue"],
        done: &[],
        serves_port: true,
    },
    Fixture {
        dir: "systemd",
        file: "demo-api.service",
        format: None,
        warnings: &[
            "warning: {file}:4: After=network-online.target: Candor has no targets, mounts or other units; it starts its services once the daemon runs (order the candor unit itself after network-online.target)",
            "warning: {file}:4: After=/Requires= db.service: not a service of this import, so left out of `after` (candor check refuses unknown services); add `after = [\"db\"]` once db runs under Candor",
            "warning: {file}:5: Wants=network-online.target: Candor has no targets, mounts or other units; it starts its services once the daemon runs (order the candor unit itself after network-online.target)",
            "warning: {file}:15: ExecStartPre= runs before every start in systemd; imported as the oneshot `demo-api-pre` that runs once before demo-api's first start",
            "warning: {file}:24: NoNewPrivileges= has no Candor equivalent (sandboxing, scheduling and the like are systemd's); skipped",
            "warning: {file}:25: ProtectSystem= has no Candor equivalent (sandboxing, scheduling and the like are systemd's); skipped",
        ],
        contains: &[
            "\n[daemon]\nforward = [{ journald = true, services = [\"demo-api\"] }]\n",
            "[service.demo-api-pre]\ncommand = [\"sh\", \"-c\", \"\\\"$@\\\" || true\", \"sh\", \"/bin/mkdir\", \"-p\", \"/tmp/demo-api\"]\ntype = \"oneshot\"\n",
            "command = [\"/usr/bin/python3\", \"-m\", \"http.server\", \"--bind\", \"127.0.0.1\", \"@FREE_PORT@\"]\ncondition = [\"test\", \"-e\", \"/etc/hostname\"]\nready = \"started\"\nuser = \"nobody\"\ngroup = \"nogroup\"\nworkdir = \"/tmp\"\nreload_signal = \"SIGHUP\"\nrestart = \"on-failure\"\ninherit_env = false\nenv_file = [\"-/etc/default/demo-api\"]\nenv = { GREETING = \"hello world\", PORT = \"@FREE_PORT@\" }\nstop = { signal = \"SIGINT\", timeout = \"20s\" }\nbackoff = { initial = \"2s\", max = \"2s\" }\nlimits = { memory_max = \"256MiB\", nofile = 8192 }\nafter = [\"demo-api-pre\"]\n",
        ],
        running: &["demo-api"],
        done: &["demo-api-pre"],
        serves_port: true,
    },
    Fixture {
        dir: "systemd",
        file: "backup.service",
        format: Some("systemd"),
        warnings: &[
            "warning: {file}:8: EnvironmentFile=/etc/default/backup-settings cannot be read here, so it is written as optional (\"-/etc/default/backup-settings\") to pass candor check; drop the `-` once it is in place",
        ],
        contains: &[
            "[service.backup]\ncommand = [\"/bin/sh\", \"-c\", \"echo \\\"backing up to $TARGET as $LOGNAME\\\"\"]\ntype = \"oneshot\"\ncondition = [\"/bin/sh\", \"-c\", \"test -w /tmp\"]\ntimeout = \"5min\"\ninherit_env = false\nenv_file = [\"-/etc/default/backup-settings\"]\nenv = { TARGET = \"/run/backup-backup\" }\n",
        ],
        running: &[],
        done: &["backup"],
        serves_port: false,
    },
    Fixture {
        dir: "pm2",
        file: "ecosystem.config.js",
        format: None,
        warnings: &[
            "warning: {file}:11: exec_mode = cluster: Candor runs N separate processes, with no shared port unless the program takes an activated socket (`sockets = [{ listen = \"0.0.0.0:PORT\", activate = true }]`, one listener for every instance); else give each instance its own port with \"{instance}\"",
            "warning: {file}:18: key `env_production` is what `pm2 start --env production` adds; Candor has no --env, so only `env` was used: copy these values into `env` if that is how you run it",
            "warning: {file}:29: key `watch`: Candor does not restart on file changes; run `candor restart worker` from your deploy (or a file watcher)",
            "warning: {file}:30: key `error_file`: Candor keeps the service's output in its store (`candor logs worker`); send it on with [[daemon.forward]] (syslog, journald, OTLP)",
            "warning: {file}:33: key `env.STARTED_AT` is a function in the .js: PM2 calls it, Candor needs a value; it was left out: write the value it returns",
            "warning: {file}:38: top-level key `deploy` is for `pm2 deploy`; Candor does not deploy code: left out (deploy as you do, then `candor reload`)",
        ],
        contains: &[
            "# `node ./app.js`: PM2 runs a .js script with node when no interpreter is given.\n",
            "[service.api]\ncommand = [\"node\", \"./app.js\", \"--name\", \"api\"]\nenv = { NODE_ENV = \"development\", THREADS = \"4\" }\n",
            // `replicas` between them: the CPUs of the machine (instances: "max").
            "limits = { memory_restart = \"200MiB\" }\nworkdir = \"{dir}\"\nstop = { signal = \"SIGINT\", timeout = \"3s\" }\n",
            "[service.worker]\ncommand = [\"bash\", \"worker.sh\"]\nschedule = { cron = \"0 3 * * *\"",
            "env = { QUEUE = \"default\" }\nretries = 10\nbackoff = { initial = \"1s\", max = \"1s\", reset_after = \"5s\" }\nworkdir = \"{dir}\"\nstop = { signal = \"SIGINT\" }\n",
        ],
        running: &["api", "worker"],
        done: &[],
        serves_port: false,
    },
    Fixture {
        dir: "process-compose",
        file: "process-compose.yaml",
        format: None,
        warnings: &[
            "warning: {file}:3: key `log_level` sets process-compose's own logging; Candor keeps every service's lines in its store (`candor logs`); send them on with [[daemon.forward]] (syslog, journald, OTLP)",
            "warning: {file}:4: key `log_location` sets process-compose's own logging; Candor keeps every service's lines in its store (`candor logs`); send them on with [[daemon.forward]] (syslog, journald, OTLP)",
            "warning: {file}:32: key `liveness_probe`: Candor has one probe per service, and the readiness_probe was taken (it also restarts the service when it fails); fold what the liveness probe checks into it, or into the program",
            "warning: {file}:53: key `log_location`: Candor keeps the service's output in its store (`candor logs worker`); send it on with [[daemon.forward]] (syslog, journald, OTLP)",
            "warning: {file}:58: process `legacy` is disabled (process-compose does not start it): left out; copy it in by hand if you want it",
        ],
        contains: &[
            "[service.migrate]\ntype = \"oneshot\"\ncommand = [\"bash\", \"-c\", \"echo migrating && sleep 0.2\"]\nrestart = \"never\"\nenv = { APP_ENV = \"test\" }\nworkdir = \"{dir}\"\n",
            "# depends_on migrate (process_completed_successfully): after = [\"migrate\"], started once it is done.\n",
            "[service.web]\ncommand = [\"python3\", \"-m\", \"http.server\", \"@FREE_PORT@\", \"--bind\", \"127.0.0.1\"]\nafter = [\"migrate\"]\nrestart = \"on-failure\"\nbackoff = { initial = \"2s\", max = \"2s\" }\nretries = 5\nstop = { signal = \"SIGTERM\", timeout = \"5s\" }\nenv = { APP_ENV = \"test\" }\nworkdir = \"{dir}\"\nprobe = { every = \"2s\", failures = 3, http = { host = \"127.0.0.1\", path = \"/\", port = @FREE_PORT@ }, start_delay = \"1s\", timeout = \"1s\" }\n",
            "# the command runs several commands (;): run through `bash -c`, as process-compose runs it.\n",
            "[service.worker]\ncommand = [\"bash\", \"-c\", \"while true; do echo tick; sleep 5; done\"]\nafter = [\"web\"]\nrestart = \"always\"\nreplicas = 2\nenv = { APP_ENV = \"test\", QUEUE = \"default\" }\n",
        ],
        running: &["web", "worker@1", "worker@2"],
        done: &["migrate"],
        serves_port: true,
    },
    Fixture {
        dir: "compose",
        file: "compose.yaml",
        format: None,
        warnings: &[
            "warning: {file}:10: service `db` runs the image's entrypoint (postgres:16) without a `command`: Candor runs host programs, so it was left out; install the program on the host and add it with its command (or keep running it in a container)",
            "warning: {file}:14: key `volumes`: there are no mounts on the host; point `db` at the host directories themselves (the left side of each volume)",
            "warning: {file}:20: `migrate` depends on `db`, which is not in the output (left out, or not defined): the dependency was dropped; add it by hand once `db` runs under Candor",
            "warning: {file}:29: key `build`: Candor runs programs already on the host; build `web` there (what the Dockerfile does) and check `command` names the result",
            "warning: {file}:31: key `ports`: there is no port mapping on the host; the program listens on its own port: set it to the host port you published (or hand it a socket with `sockets = [{ listen = \"0.0.0.0:PORT\", activate = true }]` if it takes activated sockets)",
            "warning: {file}:58: top-level `volumes`: named volumes are Docker's; on the host, use directories and point each service's paths at them",
        ],
        contains: &[
            "[service.migrate]\ntype = \"oneshot\"\ncommand = [\"sh\", \"-c\", \"echo migrated\"]\nworkdir = \"{dir}\"\nrestart = \"never\"\n",
            "# probe: the healthcheck, run on the host; on_unhealthy = \"alert\": Docker only marks a container unhealthy (say \"restart\" to have Candor restart it).\n",
            "[service.web]\ncommand = [\"python3\", \"-m\", \"http.server\", \"@FREE_PORT@\", \"--bind\", \"127.0.0.1\"]\nafter = [\"migrate\"]\nprobe = { every = \"2s\", exec = [\"python3\", \"-c\", \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:@FREE_PORT@/')\"], failures = 3, timeout = \"2s\" }\non_unhealthy = \"alert\"\nstop = { signal = \"SIGINT\", timeout = \"10s\" }\nrestart = \"always\"\nenv = { TZ = \"UTC\" }\nworkdir = \"{dir}\"\n",
            "[service.worker]\ncommand = [\"sh\", \"-c\", \"while true; do echo working; sleep 5; done\"]\nreplicas = 2\nlimits = { memory_max = \"256MiB\" }\nafter = [\"web\"]\nrestart = \"always\"\nenv = { TZ = \"UTC\" }\n",
        ],
        running: &["web", "worker@1", "worker@2"],
        done: &["migrate"],
        serves_port: true,
    },
];

/// `tests/import/<dir>` copied into `into` (with its subdirectories), `@FREE_PORT@`
/// replaced by `port`.
fn copy_fixture(dir: &str, into: &Path, port: u16) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("import")
        .join(dir);
    copy_tree(&from, into, port);
}

fn copy_tree(from: &Path, into: &Path, port: u16) {
    for entry in std::fs::read_dir(from).expect("fixture dir") {
        let path = entry.expect("entry").path();
        let to = into.join(path.file_name().expect("name"));
        if path.is_dir() {
            std::fs::create_dir(&to).expect("dir");
            copy_tree(&path, &to, port);
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("fixture file");
        std::fs::write(to, text.replace("@FREE_PORT@", &port.to_string())).expect("copy");
    }
}

fn import(args: &[&Path], format: Option<&str>) -> Output {
    let mut cmd = Command::new(candor_bin());
    cmd.arg("import").args(args);
    if let Some(f) = format {
        cmd.args(["--format", f]);
    }
    cmd.env("HOME", "/home/import-test")
        .stdin(Stdio::null())
        .output()
        .expect("run candor import")
}

/// The config as the harness's daemon runs it: its state dir in `[daemon]`; without root,
/// without `user`/`group` (a daemon that is not root cannot switch to them).
fn runnable(config: &str, state_dir: &Path) -> String {
    // SAFETY: geteuid only reads.
    let root = unsafe { libc::geteuid() } == 0;
    let config: String = (config.lines())
        .filter(|l| root || !(l.starts_with("user = ") || l.starts_with("group = ")))
        .map(|l| format!("{l}\n"))
        .collect();
    let state = format!("state_dir = \"{}\"\n", state_dir.display());
    match config.find("\n[daemon]\n") {
        Some(at) => {
            let end = at + "\n[daemon]\n".len();
            format!("{}{state}{}", &config[..end], &config[end..])
        }
        None => format!("[daemon]\n{state}\n{config}"),
    }
}

fn run_fixture(f: &Fixture) {
    let d = Daemon::unstarted("");
    let src = d.path("src");
    std::fs::create_dir(&src).expect("src dir");
    let port = free_port();
    copy_fixture(f.dir, &src, port);
    let file = src.join(f.file);
    let out = import(&[&file], f.format);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let config = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}: import failed: {stderr}\n{config}",
        f.file
    );
    let real_src = src.canonicalize().expect("src");
    let warnings: Vec<String> = (f.warnings.iter())
        .map(|w| {
            (w.replace("{file}", &file.display().to_string()))
                .replace("{dir}", &real_src.display().to_string())
        })
        .collect();
    let got: Vec<&str> = stderr.lines().collect();
    assert_eq!(got, warnings, "{}: the warnings", f.file);
    for want in f.contains {
        let want = (want.replace("{dir}", &real_src.display().to_string()))
            .replace("@FREE_PORT@", &port.to_string());
        assert!(
            config.contains(&want),
            "{}: missing\n{want}\nin\n{config}",
            f.file
        );
    }
    assert!(
        config.starts_with(&format!(
            "# Generated by `candor import` from {}.\n",
            file.display()
        )),
        "{config}"
    );
    // What `candor check` says of it, through --out.
    let out_file = src.join("candor.toml");
    let written = Command::new(candor_bin())
        .args(["import", f.file, "--out", "candor.toml"])
        .args(f.format.map(|f| vec!["--format", f]).unwrap_or_default())
        .env("HOME", "/home/import-test")
        .current_dir(&src)
        .output()
        .expect("import --out");
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&out_file).expect("out"),
        config.replace(&file.display().to_string(), f.file),
        "--out writes what stdout had (its source named as given)"
    );
    let check = Command::new(candor_bin())
        .args(["check", "-c"])
        .arg(&out_file)
        .output()
        .expect("candor check");
    assert!(
        check.status.success(),
        "candor check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Briefly under a real daemon.
    let mut d = d;
    std::fs::write(&d.config, runnable(&config, &d.path("state"))).expect("config");
    d.spawn();
    for name in f.running {
        d.wait_state(name, "running", T);
    }
    for name in f.done {
        d.wait_state(name, "done", T);
    }
    if f.serves_port {
        wait_for("the imported web service to answer", T, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }
    d.shutdown();
}

#[test]
fn procfile() {
    run_fixture(&FIXTURES[0]);
}

#[test]
fn supervisord() {
    run_fixture(&FIXTURES[1]);
}

#[test]
fn systemd_service() {
    run_fixture(&FIXTURES[2]);
}

#[test]
fn systemd_oneshot() {
    run_fixture(&FIXTURES[3]);
}

#[test]
fn pm2_js() {
    run_fixture(&FIXTURES[4]);
}

#[test]
fn process_compose() {
    run_fixture(&FIXTURES[5]);
}

#[test]
fn compose() {
    run_fixture(&FIXTURES[6]);
}

#[test]
fn every_fixture_has_its_test() {
    let tested = [
        "Procfile",
        "supervisord.conf",
        "demo-api.service",
        "backup.service",
        "ecosystem.config.js",
        "process-compose.yaml",
        "compose.yaml",
    ];
    let all: Vec<&str> = FIXTURES.iter().map(|f| f.file).collect();
    assert_eq!(all, tested, "a new fixture row needs its #[test] above");
}

#[test]
fn an_existing_out_file_is_kept_unless_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Procfile"), "web: sleep 1000\n").expect("write");
    let out = dir.path().join("candor.toml");
    std::fs::write(&out, "# mine\n").expect("write");
    let run = |force: bool| {
        let mut cmd = Command::new(candor_bin());
        cmd.arg("import")
            .arg(dir.path().join("Procfile"))
            .arg("--out")
            .arg(&out);
        if force {
            cmd.arg("--force");
        }
        cmd.output().expect("import")
    };
    let refused = run(false);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("exists; not overwritten (--force overwrites it)"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "# mine\n");
    let forced = run(true);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("[service.web]"));
}

#[test]
fn a_file_whose_format_cannot_be_told_names_the_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file: PathBuf = dir.path().join("notes.txt");
    std::fs::write(&file, "hello world\n").expect("write");
    let out = import(&[&file], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "give it with --format (procfile, supervisord, pm2, process-compose, compose, systemd)"
        ),
        "{stderr}"
    );
}
