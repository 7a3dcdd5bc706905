//! `candor import FILE [--format F] [--out FILE [--force]]`: the draft of `import::import`,
//! its warnings on stderr as `warning: FILE:LINE: TEXT`, the config checked with the code
//! `candor check` uses, then on stdout or into `--out`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::import::{self, write, Format};
use crate::{FAILED, OK, USAGE};

pub fn import(file: &Path, format: Option<Format>, out: Option<&Path>, force: bool) -> u8 {
    if let Some(out) = out {
        if !force && out.symlink_metadata().is_ok() {
            eprintln!(
                "candor: {} exists; not overwritten (--force overwrites it)",
                out.display()
            );
            return USAGE;
        }
    }
    let draft = match import::import(file, format) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("candor: {e:#}");
            return FAILED;
        }
    };
    for w in &draft.warnings {
        eprintln!("warning: {}:{}: {}", draft.source.display(), w.line, w.text);
    }
    let text = write::render(&draft);
    // Checked as the file it will be (relative paths resolve against its directory).
    let as_file = match out {
        Some(p) => p.to_path_buf(),
        None => std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("."))
            .join("candor.toml"),
    };
    if let Err(errors) = candor_spec::parse_str(&as_file, &text) {
        eprintln!("{errors}");
        eprintln!(
            "candor: the config imported from {} does not pass `candor check` (a bug of candor import: please report it with the file); nothing was written",
            file.display()
        );
        return FAILED;
    }
    let written = match out {
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| format!("stdout: {e}")),
        Some(p) => write_file(p, &text, force),
    };
    match written {
        Ok(()) => {
            if let Some(p) = out {
                eprintln!(
                    "{}: {} service{} from {} ({} warning{}); `candor check -c {}` passes",
                    p.display(),
                    draft.services.len(),
                    if draft.services.len() == 1 { "" } else { "s" },
                    file.display(),
                    draft.warnings.len(),
                    if draft.warnings.len() == 1 { "" } else { "s" },
                    p.display()
                );
            }
            OK
        }
        Err(e) => {
            eprintln!("candor: {e}");
            FAILED
        }
    }
}

/// `text` into `path`: a new file, or with `force` over an old one.
fn write_file(path: &Path, text: &str, force: bool) -> Result<(), String> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}
