//! `candor import FILE`: a Candor config from another supervisor's. [`import`] reads the
//! file with the reader of its format (given, or told by [`detect`]) into a [`Draft`]; each
//! reader maps what it can and warns about every key that does not map; `write` renders the
//! draft as `candor.toml`. `shell` makes shell-string commands argv; `host` answers what
//! the config check will ask of this machine (users, groups, files).

pub mod detect;
pub mod draft;
mod expand;
pub mod host;
mod ini;
pub mod shell;
mod unit;
pub mod write;

mod procfile;
mod supervisord;
mod supervisord_include;
mod systemd;
mod systemd_socket;

// PM2, process-compose and compose, and what they share: YAML with lines, values and the
// last pass over a draft.
mod compose;
mod fields;
mod pm2;
mod process_compose;
mod yaml;

use std::path::Path;

use anyhow::Context as _;
pub use draft::{Draft, Format};

/// Every `--format` value, for the error that asks for one.
pub const FORMATS: &str = "procfile, supervisord, pm2, process-compose, compose, systemd";

/// Read `path` in `format` (else the one its name or content says) into a draft whose
/// service names Candor takes.
pub fn import(path: &Path, format: Option<Format>) -> anyhow::Result<Draft> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let format = match format.or_else(|| detect::detect(path, &text)) {
        Some(f) => f,
        None => anyhow::bail!(
            "cannot tell what format {} is in from its name or content; give it with --format ({FORMATS})",
            path.display()
        ),
    };
    let mut draft = Draft {
        source: path.to_path_buf(),
        ..Draft::default()
    };
    match format {
        Format::Procfile => procfile::read(path, &text, &mut draft)?,
        Format::Supervisord => supervisord::read(path, &text, &mut draft)?,
        Format::Systemd => systemd::read(path, &text, &mut draft)?,
        Format::Pm2 => pm2::read(path, &text, &mut draft)?,
        Format::ProcessCompose => process_compose::read(path, &text, &mut draft)?,
        Format::Compose => compose::read(path, &text, &mut draft)?,
    }
    if draft.services.is_empty() {
        anyhow::bail!(
            "{} defines no service that could be imported{}",
            path.display(),
            if draft.warnings.is_empty() {
                ""
            } else {
                " (see the warnings)"
            }
        );
    }
    write::fix_names(&mut draft);
    // In the file's order (a reader may meet a line's consequence later, e.g. an `After=`
    // known to name no service only once the file is read).
    draft.warnings.sort_by_key(|w| w.line);
    Ok(draft)
}

#[cfg(test)]
mod systemd_roundtrip;
