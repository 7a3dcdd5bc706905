//! The config parser never panics, whatever it is given, and every error it reports names the
//! file with a line and column: random text, and a full valid config with random edits.

use std::path::Path;

use proptest::prelude::*;

const FULL: &str = r#"
[daemon]
state_dir = "/var/lib/candor"
socket = "/run/candor.sock"
socket_group = "0"
sample_every = "5s"
logs = { max_bytes = "512MiB" }

[service.db]
command = ["/usr/bin/db", "--port", "5432"]
ready = { file = "/run/db/.ready" }

[service.api]
command = ["/usr/bin/api-server", "--port", "8080"]
workdir = "/srv/api"
env = { RUST_LOG = "info" }
after = ["db"]
restart = "on-failure"
backoff = { initial = "100ms", max = "30s", reset_after = "60s" }
stop = { signal = "SIGTERM", timeout = "10s" }
ready = "notify"
ready_timeout = "30s"
watchdog = "10s"
sockets = ["/run/api/rpc.sock", { path = "/run/api/act.sock", activate = true, mode = "0660" }, { listen = "127.0.0.1:8080", activate = true, name = "http", backlog = 128 }]
probe = { http = { socket = "/run/api/rpc.sock", path = "/health" }, every = "5s", timeout = "2s", failures = 3 }
on_unhealthy = "restart"
limits = { nofile = 4096, fd_warn = "80%", fd_restart = "95%", memory_warn = "400MiB", memory_restart = "512MiB" }
logs = { rate = 1000, burst = 5000, max_bytes = "64MiB" }

[service.worker]
command = ["worker"]
probe = { exec = ["/bin/true"], every = "2s" }
ready = { fd = 3 }
"#;

fn check(text: &str) {
    let path = Path::new("/nonexistent-candor-test/candor.toml");
    if let Err(errors) = candor_spec::parse_str(path, text) {
        assert!(!errors.0.is_empty());
        let lines = text.split('\n').count();
        for e in &errors.0 {
            assert_eq!(e.file, path, "{e}");
            // A place in the file (the file is never unreadable here); whole-config problems
            // (a cycle in `after`) may point at the service that starts it.
            assert!(
                e.line >= 1 && e.line <= lines.max(1) && e.col >= 1,
                "{e} in {text:?}"
            );
            assert!(!e.message.is_empty());
        }
    }
}

/// A small edit of a valid config: cut a range, insert text, or repeat a line.
#[derive(Debug, Clone)]
enum Edit {
    Cut(usize, usize),
    Insert(usize, String),
    RepeatLine(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let piece = prop_oneof![
        "[\\[\\]{}=,\"'#. \n0-9a-z_%-]{1,12}",
        Just("\"\"".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("\"0s\"".to_string()),
        Just("\"1e400s\"".to_string()),
        Just("[service.x]\n".to_string()),
        Just("after = [\"api\"]\n".to_string()),
        Just("rate = 0\n".to_string()),
        Just("\u{0}".to_string()),
        Just("é".to_string()),
    ];
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Edit::Cut(a, n)),
        (any::<usize>(), piece).prop_map(|(a, s)| Edit::Insert(a, s)),
        any::<usize>().prop_map(Edit::RepeatLine),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for e in edits {
        match e {
            Edit::Cut(at, n) => {
                let at = at % (s.len() + 1);
                let end = (at + n).min(s.len());
                s.drain(at..end);
            }
            Edit::Insert(at, piece) => {
                let at = at % (s.len() + 1);
                s.splice(at..at, piece.chars());
            }
            Edit::RepeatLine(k) => {
                let text: String = s.iter().collect();
                let lines: Vec<&str> = text.lines().collect();
                if lines.is_empty() {
                    continue;
                }
                let i = k % lines.len();
                let mut out: Vec<&str> = lines.clone();
                out.insert(i, lines[i]);
                s = out.join("\n").chars().collect();
            }
        }
    }
    s.into_iter().collect()
}

#[test]
fn the_full_config_parses() {
    let path = Path::new("/nonexistent-candor-test/candor.toml");
    let spec = candor_spec::parse_str(path, FULL).expect("the base config is valid");
    assert_eq!(spec.services.len(), 3);
    let api = &spec.services[&candor_spec::ServiceName::new("api").unwrap()];
    let names: Vec<&str> = api.activated.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["api", "http"]);
    assert_eq!(api.activated[1].backlog, 128);
    // The activated Unix path is checked like a declared one, but not prepared as one.
    assert_eq!(api.sockets.len(), 2);
    assert_eq!(
        api.own_sockets(),
        [std::path::PathBuf::from("/run/api/rpc.sock")]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,300}") {
        check(&text);
    }

    #[test]
    fn edited_configs_never_panic_and_errors_name_the_file(edits in proptest::collection::vec(edit(), 1..6)) {
        check(&apply(FULL, &edits));
    }
}
