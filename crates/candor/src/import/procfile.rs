//! A Procfile as foreman, honcho and overmind read it: `name: command` lines (blank lines and
//! `#` comments skipped), each a service run in the Procfile's directory with foreman's
//! `PORT` (5000 + 100 × its index), and a `.env` beside it as every service's `env_file`.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::draft::{Draft, DraftService};
use super::shell;

/// foreman's (and honcho's) first port; each process type gets the next hundred.
const BASE_PORT: u64 = 5000;

pub fn read(path: &Path, text: &str, draft: &mut Draft) -> anyhow::Result<()> {
    let dir = super::host::absolute_dir(path);
    draft.header.push(format!(
        "Each command runs in {} (the Procfile's directory), as foreman runs it.",
        dir.display()
    ));
    draft.header.push(
        "foreman stops every process when one exits; Candor restarts each on its own (restart = \"always\", the default)."
            .into(),
    );
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((name, command)) = entry(trimmed) else {
            draft.warn(
                line,
                "is not `name: command` (a name of letters, digits, `_` or `-`, a colon, a command); skipped, as foreman skips it",
            );
            continue;
        };
        if let Some(first) = draft.services.iter().find(|s| s.name == name) {
            let first_line = first.line;
            draft.warn(
                line,
                format!("process `{name}` is defined again (first at line {first_line}); this one is skipped: give it another name to run both"),
            );
            continue;
        }
        let index = draft.services.len() as u64;
        let port = BASE_PORT + 100 * index;
        let mut svc = DraftService::new(name, line);
        let cmd = shell::split(command);
        if let Some(why) = &cmd.why_shell {
            svc.comments.push(format!("The command {why}."));
        }
        svc.comments.push(format!(
            "PORT={port}: foreman's port for the process type at index {index} (5000 + 100 × index)."
        ));
        let mut argv = cmd.argv;
        if let Some(abs) = super::host::relative_program(&argv[0], &dir) {
            svc.comments.push(format!(
                "{}: relative to the Procfile's directory.",
                argv[0]
            ));
            argv[0] = abs;
        }
        svc.set("command", json!(argv));
        svc.set("workdir", dir.to_string_lossy().as_ref());
        let mut env = Map::new();
        env.insert("PORT".into(), Value::String(port.to_string()));
        svc.set("env", Value::Object(env));
        draft.services.push(svc);
    }
    dot_env(&dir.join(".env"), draft);
    Ok(())
}

/// `name: command`, by foreman's rule (`^([A-Za-z0-9_-]+):\s*(.+)$`; overmind also takes `.`).
fn entry(line: &str) -> Option<(&str, &str)> {
    let (name, command) = line.split_once(':')?;
    let name_ok = !name.is_empty()
        && (name.chars()).all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let command = command.trim();
    (name_ok && !command.is_empty()).then_some((name, command))
}

/// The `.env` beside the Procfile: foreman, honcho and overmind give its variables to every
/// process. When Candor's `env_file` reads it, every service gets it as `env_file` (the values
/// stay out of candor.toml); else the lines that read well are copied into `env`, each other
/// line a warning (by number and key: a value may be a secret).
fn dot_env(path: &Path, draft: &mut Draft) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let first_line = draft.services.first().map_or(1, |s| s.line);
    if candor_spec::envfile::parse(&text).is_ok() {
        for svc in &mut draft.services {
            svc.comments.push(format!(
                "{}: the variables foreman gives every process (PORT above wins over the file's).",
                path.display()
            ));
            svc.set("env_file", path.to_string_lossy().as_ref());
        }
        return;
    }
    let mut vars = Map::new();
    for (i, line) in text.lines().enumerate() {
        match candor_spec::envfile::parse(line) {
            Ok(one) => {
                for (k, v) in one {
                    vars.insert(k, Value::String(v));
                }
            }
            Err((_, why)) => draft.warn(
                first_line,
                format!(
                    "{}:{}: {why}; skipped (foreman skips such a line too). Fix it, then use `env_file = \"{}\"` instead of the copied `env`",
                    path.display(),
                    i + 1,
                    path.display()
                ),
            ),
        }
    }
    for svc in &mut draft.services {
        svc.comments.push(format!(
            "env: copied from {} (Candor's env_file refuses some of its lines; see the warnings).",
            path.display()
        ));
        for (k, v) in &mut svc.keys {
            if let ("env", Value::Object(env)) = (k.as_str(), v) {
                for (name, value) in &vars {
                    env.entry(name.clone()).or_insert_with(|| value.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_dir(procfile: &str, env: Option<&str>) -> (tempfile::TempDir, Draft) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("Procfile");
        std::fs::write(&path, procfile).expect("write");
        if let Some(env) = env {
            std::fs::write(dir.path().join(".env"), env).expect("write");
        }
        let mut draft = Draft::default();
        read(&path, procfile, &mut draft).expect("read");
        (dir, draft)
    }

    fn key<'a>(svc: &'a DraftService, k: &str) -> &'a Value {
        &svc.keys.iter().find(|(key, _)| key == k).expect(k).1
    }

    #[test]
    fn each_line_is_a_service_with_foremans_port() {
        let (dir, d) = read_dir(
            "# the app\nweb: bundle exec puma -p $PORT\n\nworker:   sidekiq -q default\nbad line\nweb: again\n",
            None,
        );
        assert_eq!(d.services.len(), 2);
        assert_eq!(d.services[0].line, 2);
        assert_eq!(
            key(&d.services[0], "command"),
            &json!(["sh", "-c", "bundle exec puma -p $PORT"])
        );
        assert_eq!(
            key(&d.services[1], "command"),
            &json!(["sidekiq", "-q", "default"])
        );
        assert_eq!(key(&d.services[1], "env"), &json!({"PORT": "5100"}));
        assert_eq!(
            key(&d.services[0], "workdir"),
            &json!(dir.path().canonicalize().unwrap().to_string_lossy())
        );
        let lines: Vec<usize> = d.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [5, 6]);
    }

    #[test]
    fn a_dot_env_candor_reads_is_every_services_env_file() {
        let (dir, d) = read_dir(
            "web: python3 -m http.server\n",
            Some("export A='x y'\nB=\"q\\\"\"\n"),
        );
        let env = dir.path().canonicalize().unwrap().join(".env");
        assert_eq!(
            key(&d.services[0], "env_file"),
            &json!(env.to_string_lossy())
        );
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn a_dot_env_candor_refuses_is_copied_line_by_line_with_a_warning_that_shows_no_value() {
        let (_dir, d) = read_dir("web: app\n", Some("A=1\nhunter2 secret\nB='two'\n"));
        assert!(d.services[0].keys.iter().all(|(k, _)| k != "env_file"));
        assert_eq!(
            key(&d.services[0], "env"),
            &json!({"PORT": "5000", "A": "1", "B": "two"})
        );
        assert_eq!(d.warnings.len(), 1);
        assert!(
            d.warnings[0].text.contains(".env:2: is not KEY=VALUE"),
            "{:?}",
            d.warnings
        );
        assert!(!d.warnings[0].text.contains("hunter2"));
    }

    #[test]
    fn a_relative_program_is_made_absolute_against_the_procfiles_directory() {
        let (dir, d) = read_dir(
            "release: ./bin/release --now\nweb: bin/web\nplain: ruby x.rb\n",
            None,
        );
        let abs = dir.path().canonicalize().unwrap();
        let bin = |p: &str| abs.join(p).to_string_lossy().into_owned();
        assert_eq!(
            key(&d.services[0], "command"),
            &json!([bin("bin/release"), "--now"])
        );
        assert_eq!(key(&d.services[1], "command"), &json!([bin("bin/web")]));
        assert_eq!(key(&d.services[2], "command"), &json!(["ruby", "x.rb"]));
    }
}
