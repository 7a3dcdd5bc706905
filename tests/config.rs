//! `candor check` and `candor reload`: every config error names file:line:col and what to do;
//! an invalid config changes nothing that is running.

use std::process::Command;
use std::time::Duration;

use candor_scenarios::{candor_bin, wait_for, Daemon};

const T: Duration = Duration::from_secs(20);

fn check(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("candor.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(candor_bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

#[test]
fn check_names_file_line_col_for_each_bad_config() {
    // (config, "line:col", words the message must contain)
    let cases: &[(&str, &str, &[&str])] = &[
        ("[service.a]\ncommand = [\"/bin/true\"\n", "2:", &["invalid TOML"]),
        ("[service.a]\ncomand = [\"/bin/true\"]\n", "2:1", &["unknown key `comand`", "did you mean `command`?"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nrestart = \"alwys\"\n", "3:11", &["not a policy", "did you mean \"always\"?"]),
        ("[service.a]\ncommand = \"/bin/true --x\"\n", "2:11", &["argv array, not a shell string", "[\"/bin/true\", \"--x\"]"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nbackoff = { initial = \"10\" }\n", "3:23", &["no unit"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nstop = { signal = \"SIGFOO\" }\n", "3:19", &["not a signal", "SIGTERM"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nstop = { timout = \"1s\" }\n", "3:10", &["unknown key `timout`", "did you mean `timeout`?"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nafter = [\"b\"]\n\n[service.b]\ncommand = [\"/bin/true\"]\nafter = [\"a\"]\n", "1:10", &["dependency cycle", "a -> b -> a"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nafter = [\"dbb\"]\n\n[service.db]\ncommand = [\"/bin/true\"]\n", "1:10", &["unknown service `dbb`", "did you mean `db`?"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nlogs = { rat = 10 }\n", "3:10", &["unknown key `rat`", "rate"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nlogs = { rate = -1 }\n", "3:17", &["whole number from 0"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nlogs = { max_bytes = \"1KiB\" }\n", "3:22", &["at least 64KiB"]),
        ("[daemon]\nlogs = { max_bytes = \"lots\" }\n", "2:22", &["daemon.logs.max_bytes"]),
        ("[daemon]\nsend_timeout = \"0s\"\n", "2:16", &["daemon.send_timeout must be more than 0s"]),
        ("[daemon]\nweb = { listen = \"localhost:9631\" }\n", "2:18", &["daemon.web.listen", "with an IP address"]),
        ("[daemon]\nweb = { metrics_public = true }\n", "2:7", &["daemon.web needs `listen`"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nmain = true\n[service.b]\ncommand = [\"/bin/true\"]\nmain = true\n", "4:10", &["service `b` has main = true, and so has `a`", "mark one"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nmain = \"yes\"\n", "3:8", &["service.a.main must be true or false"]),
        ("[daemon]\nweb = { listen = \"127.0.0.1:9631\", metrics_public = \"yes\" }\n", "2:53", &["must be true or false"]),
        // Found by fuzz/ (config target): a bad glob was reported without a place.
        ("[daemon]\ninclude = [\"conf.d[*.toml\"]\n", "2:12", &["daemon.include: bad pattern", "invalid range pattern"]),
        ("[daemon]\ninclude = [\"conf[a/b].toml\"]\n", "2:12", &["daemon.include: bad pattern"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nsockets = [{ listen = \"127.0.0.1:80\" }]\n", "3:12", &["add activate = true"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nsockets = [{ path = \"/x.sock\", listen = \"127.0.0.1:80\", activate = true }]\n", "3:12", &["exactly one of `path`", "or `listen`"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nready = { fd = 3 }\nsockets = [{ path = \"/x.sock\", activate = true }]\n", "1:10", &["activated sockets are fds 3 to 3", "use fd = 4 or higher"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nsockets = [{ path = \"/x.sock\", activate = true, mode = \"rw\" }]\n", "3:56", &["not a file mode", "octal"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nsockets = [{ listen = \"localhost:80\", activate = true }]\n", "3:23", &["with an IP address"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nsockets = [{ path = \"/x.sock\", activate = true, name = \"a:b\" }]\n", "3:56", &["LISTEN_FDNAMES name"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nsockets = [{ path = \"/x.sock\", activate = true }]\n[service.b]\ncommand = [\"/bin/true\"]\nsockets = [{ path = \"/x.sock\", activate = true }]\n", "4:10", &["service `b` activates /x.sock, which is activated by service `a` too (", ":1:10)", "bound once"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nsockets = [{ listen = \"0.0.0.0:8080\", activate = true }]\n[service.b]\ncommand = [\"/bin/true\"]\nsockets = [{ listen = \"127.0.0.1:8080\", activate = true }]\n", "4:10", &["activates 127.0.0.1:8080 (overlapping 0.0.0.0:8080)"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nsockets = [{ listen = \"127.0.0.1:80\", activate = true }, { listen = \"127.0.0.1:80\", activate = true, name = \"x\" }]\n", "1:10", &["activated twice in this service"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nprobe = { tcp = \"127.0.0.1:80\", exec = [\"x\"] }\n", "3:9", &["exactly one of http, tcp, uds or exec"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nprobe = { tcp = \"localhost\" }\n", "3:17", &["\"host:port\""]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nprobe = { http = { path = \"/h\" } }\n", "3:18", &["either `port`", "or `socket`"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nprobe = { exec = [\"x\"], evry = \"1s\" }\n", "3:25", &["unknown key `evry`", "did you mean `every`?"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nready = \"probe\"\n", "1:10", &["no `probe`"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nready = { fd = 1 }\n", "3:16", &["from 3 to 1023"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nready = \"notfy\"\n", "3:9", &["not a readiness kind", "did you mean \"notify\"?"]),
        ("[service.a]\nworkdir = \"/tmp\"\n", "1:10", &["has no `command`"]),
        ("[deamon]\nsocket = \"/tmp/x\"\n", "1:2", &["unknown key `deamon`", "did you mean `daemon`?"]),
        ("[service.\"bad name\"]\ncommand = [\"/bin/true\"]\n", "1:10", &["invalid service name"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nenv = { PORT = 8080 }\n", "3:16", &["must be a string"]),
        ("[service.a]\ncommand = [\"/bin/true\"]\nlimits = { nofile = \"many\" }\n", "3:21", &["must be an integer"]),
    ];
    for (text, pos, words) in cases {
        let (code, err, path) = check(text);
        assert_eq!(code, Some(2), "check must exit 2 for:\n{text}\n{err}");
        let at = format!("{path}:{pos}");
        assert!(
            err.contains(&at),
            "expected `{at}` in the error for:\n{text}\ngot:\n{err}"
        );
        for w in *words {
            assert!(
                err.contains(w),
                "expected `{w}` in the error for:\n{text}\ngot:\n{err}"
            );
        }
    }
}

#[test]
fn check_accepts_a_good_config_and_lists_services() {
    let (code, _, _) = check("[service.a]\ncommand = [\"/bin/true\"]\n");
    assert_eq!(code, Some(0));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("conf.d/b.toml"),
        "[service.b]\ncommand = [\"/bin/true\"]\nafter = [\"a\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("conf.d/bad.toml"),
        "[service.c]\ncommand = [\"/bin/true\"]\nwat = 1\n",
    )
    .unwrap();
    let main = dir.path().join("candor.toml");
    std::fs::write(
        &main,
        "[daemon]\ninclude = [\"conf.d/b.toml\"]\n\n[service.a]\ncommand = [\"/bin/true\"]\n",
    )
    .unwrap();
    let out = Command::new(candor_bin())
        .args(["check", "-c"])
        .arg(&main)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 services: a, b"));
    // Errors in an included file name that file.
    std::fs::write(
        &main,
        "[daemon]\ninclude = [\"conf.d/*.toml\"]\n\n[service.a]\ncommand = [\"/bin/true\"]\n",
    )
    .unwrap();
    let out = Command::new(candor_bin())
        .args(["check", "-c"])
        .arg(&main)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conf.d/bad.toml:3:1: unknown key `wat`"),
        "{err}"
    );
}

#[test]
fn daemon_refuses_an_invalid_config_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("candor.toml");
    std::fs::write(
        &path,
        "[service.a]\ncommand = [\"/bin/true\"]\nrestrat = \"never\"\n",
    )
    .unwrap();
    let out = Command::new(candor_bin())
        .args(["daemon", "-c"])
        .arg(&path)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":3:1: unknown key `restrat`") && err.contains("did you mean `restart`?"),
        "{err}"
    );
}

#[test]
fn reload_rejects_invalid_config_and_changes_nothing() {
    let d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
"#,
    );
    let pid = d.wait_state("web", "running", T)["pid"].clone();
    let good = std::fs::read_to_string(&d.config).unwrap();

    // Invalid TOML.
    std::fs::write(
        &d.config,
        format!("{good}\n[service.api\ncommand = [\"x\"]\n"),
    )
    .unwrap();
    let out = d.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = good.lines().count() + 2;
    assert!(
        err.contains(&format!("candor.toml:{line}:")),
        "expected the line of the broken header in:\n{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");

    // An unknown key.
    std::fs::write(&d.config, good.replace("command =", "comand =")).unwrap();
    let out = d.cli(&["reload", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let details = v["details"].to_string();
    assert!(
        details.contains("unknown key `comand`") && details.contains("did you mean `command`?"),
        "{v}"
    );

    assert_eq!(
        d.status("web")["pid"],
        pid,
        "an invalid reload must not touch running services"
    );
    assert_eq!(d.state("web"), "running");

    // A valid change: web unchanged, api added.
    std::fs::write(
        &d.config,
        format!(
            "{good}\n[service.api]\ncommand = [\"{}\", \"healthy\"]\n",
            candor_scenarios::zoo().display()
        ),
    )
    .unwrap();
    let out = d.ok(&["reload", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["added"], serde_json::json!(["api"]));
    assert_eq!(v["unchanged"], serde_json::json!(["web"]));
    d.wait_state("api", "running", T);
    assert_eq!(d.status("web")["pid"], pid);

    // Removing api stops it; changing web restarts it.
    std::fs::write(
        &d.config,
        good.replace("\"healthy\"]", "\"healthy\", \"--stamp\", \"/dev/null\"]"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["reload", "--json"])).unwrap();
    assert_eq!(v["removed"], serde_json::json!(["api"]));
    assert_eq!(v["changed"], serde_json::json!(["web"]));
    wait_for("web restarted with its new command", T, || {
        let s = d.status("web");
        (s["state"] == "running" && s["pid"] != pid).then_some(())
    });
    wait_for("api gone from the board", T, || {
        let list: serde_json::Value = serde_json::from_str(&d.ok(&["status", "--json"])).ok()?;
        (list.as_array()?.len() == 1).then_some(())
    });
}

#[test]
fn second_daemon_on_the_same_state_dir_or_socket_is_refused() {
    let d = Daemon::start(
        r#"
[service.web]
command = ["{zoo}", "healthy"]
"#,
    );
    let pid = d.wait_state("web", "running", T)["pid"].clone();
    // Same config (so same state dir), another socket: it would share the cgroups.
    let out = Command::new(candor_bin())
        .args(["daemon", "-c"])
        .arg(&d.config)
        .arg("--socket")
        .arg(d.path("other.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is using the state dir"),
        "{out:?}"
    );
    // Another state dir, same socket.
    let out = Command::new(candor_bin())
        .args(["daemon", "-c"])
        .arg(&d.config)
        .arg("--state-dir")
        .arg(d.path("state2"))
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already answering"),
        "{out:?}"
    );
    assert_eq!(
        d.status("web")["pid"],
        pid,
        "the refused daemons must not touch the running one"
    );
}

#[test]
fn version_names_the_commit_and_completions_and_man_pages_are_generated() {
    let run = |args: &[&str]| {
        let o = std::process::Command::new(candor_scenarios::candor_bin())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    let v = run(&["--version"]);
    assert!(
        v.starts_with("candor 0.1.0 (") && v.trim_end().ends_with(')'),
        "{v}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let c = run(&["completions", shell]);
        assert!(
            c.contains("reload") && c.contains("kill") && c.contains("top"),
            "{shell}: {c}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["man", "--out", dir.path().to_str().unwrap()]);
    assert!(out.contains("man pages in"), "{out}");
    let page = std::fs::read_to_string(dir.path().join("candor-reload.1")).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH candor-reload 1"),
        "{page}"
    );
    assert!(
        page.contains("RELOADING=1"),
        "the command's help is in its page"
    );
    assert!(dir.path().join("candor.1").exists());
}
