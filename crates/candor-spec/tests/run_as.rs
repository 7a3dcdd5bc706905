//! `user`, `group`, `groups`, `umask`, `env_file`, `inherit_env` and the cgroup limits: what
//! a config says, and the errors (with their positions) for what it gets wrong.

use std::path::Path;

use candor_spec::{parse_str, Credentials, ServiceName, CLEAN_PATH};

fn parse(dir: &Path, text: &str) -> Result<candor_spec::Spec, String> {
    parse_str(&dir.join("candor.toml"), text).map_err(|e| e.to_string())
}

fn tmp() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "candor-run-as-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn user_group_groups_and_umask_become_credentials_and_environment() {
    let dir = tmp();
    let spec = parse(
        &dir,
        r#"
[service.api]
command = ["/bin/true"]
user = "nobody"
groups = ["root", "4242"]
umask = "0027"
"#,
    )
    .unwrap();
    let api = &spec.services[&ServiceName::new("api").unwrap()];
    assert_eq!(api.umask, Some(0o027));
    let creds = api.credentials().expect("a user");
    assert_eq!(creds.uid, Some(65534));
    let nobody_gid = api.user.as_ref().unwrap().gid;
    assert_eq!(creds.gid, Some(nobody_gid));
    let groups = creds.groups.unwrap();
    for g in [0, 4242, nobody_gid] {
        assert!(groups.contains(&g), "{groups:?}");
    }
    let env = api.env_pairs();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("USER"), Some("nobody"));
    assert_eq!(get("LOGNAME"), Some("nobody"));
    assert!(get("HOME").is_some());
    // Inherited by default: no PATH of its own.
    assert_eq!(get("PATH"), None);

    // A group alone keeps the daemon's user.
    let spec = parse(
        &dir,
        "[service.x]\ncommand = [\"/bin/true\"]\ngroup = \"4242\"\n",
    )
    .unwrap();
    let x = &spec.services[&ServiceName::new("x").unwrap()];
    assert_eq!(
        x.credentials(),
        Some(Credentials {
            uid: None,
            gid: Some(4242),
            groups: None
        })
    );
}

#[test]
fn env_files_are_read_at_load_env_wins_and_clean_env_has_a_path() {
    let dir = tmp();
    std::fs::write(dir.join("api.env"), "# db\nDB=postgres://db\nMODE=file\n").unwrap();
    let spec = parse(
        &dir,
        r#"
[service.api]
command = ["/bin/true"]
env_file = ["api.env", "-missing.env"]
env = { MODE = "toml" }
inherit_env = false
"#,
    )
    .unwrap();
    let api = &spec.services[&ServiceName::new("api").unwrap()];
    let env = api.env_pairs();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("DB"), Some("postgres://db"));
    assert_eq!(get("MODE"), Some("toml"));
    assert_eq!(get("PATH"), Some(CLEAN_PATH));
    assert_eq!(api.env_files.len(), 2);
    assert!(!api.env_files[0].optional && api.env_files[1].optional);
    assert_eq!(api.env_files[1].path, dir.join("missing.env"));
    assert!(!api.inherit_env);
}

#[test]
fn what_does_not_exist_is_an_error_at_its_position() {
    let dir = tmp();
    std::fs::write(dir.join("bad.env"), "OK=1\nthis is not a pair\n").unwrap();
    let err = parse(
        &dir,
        r#"
[service.api]
command = ["/bin/true"]
user = "no-such-user-candor"
group = "no-such-group-candor"
groups = ["root", "nor-this-one"]
umask = "0999"
env_file = "bad.env"

[service.b]
command = ["/bin/true"]
env_file = "/nonexistent/b.env"
"#,
    )
    .unwrap_err();
    for want in [
        "candor.toml:4:8: service.api.user: no user \"no-such-user-candor\"",
        "candor.toml:5:9: service.api.group: no group \"no-such-group-candor\"",
        "candor.toml:6:19: service.api.groups: no group \"nor-this-one\"",
        "candor.toml:7:9: service.api.umask = \"0999\" is not an octal mask",
        "bad.env:2: is not KEY=VALUE (no `=` in its 18 characters, not shown: they may be a secret)",
        "candor.toml:12:12: service.b.env_file: cannot read /nonexistent/b.env",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn cgroup_limits_parse_to_the_files_the_kernel_reads() {
    let dir = tmp();
    let spec = parse(
        &dir,
        r#"
[service.api]
command = ["/bin/true"]
limits = { memory_max = "512MiB", memory_high = "400MiB", pids_max = 512, cpu_weight = 50, cpu_max = "150%" }
"#,
    )
    .unwrap();
    let api = &spec.services[&ServiceName::new("api").unwrap()];
    let files: Vec<(&str, String)> = api
        .limits
        .cgroup
        .files()
        .into_iter()
        .map(|(_, f, v)| (f, v))
        .collect();
    assert_eq!(
        files,
        vec![
            ("memory.max", (512u64 << 20).to_string()),
            ("memory.high", (400u64 << 20).to_string()),
            ("pids.max", "512".into()),
            ("cpu.weight", "50".into()),
            ("cpu.max", "150000 100000".into()),
        ]
    );
    let err = parse(
        &dir,
        "[service.a]\ncommand = [\"/bin/true\"]\nlimits = { memory_max = \"10KiB\", cpu_weight = 0, cpu_max = \"fast\", pids_max = -1 }\n",
    )
    .unwrap_err();
    for want in [
        "memory_max = \"10KiB\" is below 1MiB",
        "cpu_weight (100 is the default share) must be a whole number from 1 to 10000",
        "cpu_max = \"fast\" is not a share of one core",
        "pids_max must be a whole number",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
