//! Secrets never repeated: a bad line of an env file is named by file, line (and key), never
//! shown — not by `candor check`, not in the 422 of a reload, not on the daemon's stderr.

use std::time::Duration;

use candor_scenarios::Daemon;

const T: Duration = Duration::from_secs(20);
const SECRET: &str = "sk_live_hunter2_do_not_print";

#[test]
fn a_bad_env_line_is_named_by_file_and_line_and_its_secret_is_never_printed() {
    let mut d = Daemon::unstarted(
        r#"
[service.api]
command = ["{zoo}", "healthy"]
env_file = "{dir}/api.env"
"#,
    );
    let env = d.path("api.env");
    // A line pasted without its key: the whole line is the secret.
    std::fs::write(&env, format!("A=1\n{SECRET}\n")).unwrap();
    let check = std::process::Command::new(candor_scenarios::candor_bin())
        .args(["check", "-c"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2), "{check:?}");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(said.contains("api.env:2: is not KEY=VALUE"), "{said}");
    assert!(
        !said.contains("hunter2"),
        "check printed the secret:\n{said}"
    );

    // A running daemon whose env file breaks: the reload is refused without the value, over
    // the CLI, as JSON and on the daemon's stderr.
    std::fs::write(&env, "A=1\n").unwrap();
    d.spawn();
    d.wait_state("api", "running", T);
    std::fs::write(&env, format!("A=1\nTOKEN=\"{SECRET}\" {SECRET}\n")).unwrap();
    for args in [&["reload"][..], &["reload", "--json"]] {
        let out = d.cli(args);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("api.env:2: TOKEN: "), "{said}");
        assert!(
            !said.contains("hunter2"),
            "reload printed the secret:\n{said}"
        );
    }
    let log = d.log();
    assert!(
        !log.contains("hunter2"),
        "the daemon's stderr has the secret:\n{log}"
    );
    assert_eq!(d.state("api"), "running");
    d.shutdown();
}
