//! Which format a file is in when `--format` is not given: by its name first
//! (`Procfile*`, `*.service`, `ecosystem.config.*`, `process-compose*.yaml`,
//! `compose.yaml`/`docker-compose*.yml`, an INI with `[program:`), else by its content.

use std::path::Path;

use super::draft::Format;

/// The format of `path` (whose text is `text`), or `None` when neither its name nor its
/// content says.
pub fn detect(path: &Path, text: &str) -> Option<Format> {
    by_name(path, text).or_else(|| by_content(text))
}

fn by_name(path: &Path, text: &str) -> Option<Format> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let yaml = name.ends_with(".yml") || name.ends_with(".yaml");
    if name.starts_with("procfile") {
        Some(Format::Procfile)
    } else if name.ends_with(".service") {
        Some(Format::Systemd)
    } else if name == "supervisord.conf"
        || (name.ends_with(".conf") || name.ends_with(".ini")) && has_program_section(text)
    {
        Some(Format::Supervisord)
    } else if [
        "ecosystem.config.js",
        "ecosystem.config.cjs",
        "ecosystem.config.json",
    ]
    .contains(&name.as_str())
    {
        Some(Format::Pm2)
    } else if name.starts_with("process-compose") && yaml {
        Some(Format::ProcessCompose)
    } else if (name.starts_with("compose.") || name.starts_with("docker-compose")) && yaml {
        Some(Format::Compose)
    } else {
        None
    }
}

fn has_program_section(text: &str) -> bool {
    text.lines()
        .any(|l| l.trim_start().starts_with("[program:"))
}

fn by_content(text: &str) -> Option<Format> {
    let lines: Vec<&str> = (text.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .collect();
    let first = lines.first()?;
    if has_program_section(text) {
        return Some(Format::Supervisord);
    }
    if lines.contains(&"[Service]") && lines.iter().any(|l| l.starts_with("ExecStart=")) {
        return Some(Format::Systemd);
    }
    if text.contains("module.exports") || first.starts_with('{') && text.contains("\"apps\"") {
        return Some(Format::Pm2);
    }
    if lines.contains(&"processes:") {
        return Some(Format::ProcessCompose);
    }
    if lines.contains(&"services:") {
        return Some(Format::Compose);
    }
    let procfile_line = |l: &&str| {
        l.split_once(':').is_some_and(|(name, cmd)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && !cmd.trim().is_empty()
        })
    };
    if lines.iter().all(procfile_line) {
        return Some(Format::Procfile);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(name: &str, text: &str) -> Option<Format> {
        detect(Path::new(name), text)
    }

    #[test]
    fn the_name_says_first() {
        assert_eq!(of("/a/Procfile.dev", ""), Some(Format::Procfile));
        assert_eq!(of("api.service", ""), Some(Format::Systemd));
        assert_eq!(of("/etc/supervisord.conf", ""), Some(Format::Supervisord));
        assert_eq!(
            of("app.conf", "[program:x]\ncommand=y\n"),
            Some(Format::Supervisord)
        );
        assert_eq!(of("ecosystem.config.cjs", ""), Some(Format::Pm2));
        assert_eq!(
            of("process-compose.override.yml", ""),
            Some(Format::ProcessCompose)
        );
        assert_eq!(of("docker-compose.prod.yaml", ""), Some(Format::Compose));
        assert_eq!(of("compose.yml", ""), Some(Format::Compose));
    }

    #[test]
    fn else_the_content_says() {
        assert_eq!(
            of("x", "# jobs\nweb: bundle exec puma\nworker: sidekiq\n"),
            Some(Format::Procfile)
        );
        assert_eq!(
            of("x", "[Unit]\n[Service]\nExecStart=/bin/true\n"),
            Some(Format::Systemd)
        );
        assert_eq!(
            of("x.txt", "[program:web]\ncommand=true\n"),
            Some(Format::Supervisord)
        );
        assert_eq!(of("x", "module.exports = { apps: [] }"), Some(Format::Pm2));
        assert_eq!(
            of("x", "version: \"0.5\"\nprocesses:\n  a:\n"),
            Some(Format::ProcessCompose)
        );
        assert_eq!(of("x", "services:\n  db:\n"), Some(Format::Compose));
        assert_eq!(of("x", "hello world\n"), None);
        assert_eq!(of("x", ""), None);
    }
}
