//! supervisord's `[include] files = …`: space-separated globs (relative to the main file's
//! directory, `%(here)s`, `%(host_node_name)s` and `%(ENV_X)s` expanded), each match read in
//! sorted order as part of the config. What an included file yields is said at the
//! `[include]` line: each of its warnings names the file and its own line, each service has
//! a comment saying where it came from.

use std::path::Path;

use super::draft::Draft;
use super::expand::{Names, ProcessNum};
use super::ini::Section;
use super::supervisord::{host_name, read_file, Inherited};

pub fn include(s: &Section, here: &Path, inherited: &Inherited, draft: &mut Draft) {
    let Some(files) = s.get("files") else {
        return draft.warn(s.line, "[include] has no `files`; skipped");
    };
    let names = Names {
        program: String::new(),
        process_name: String::new(),
        group: String::new(),
        here: here.to_string_lossy().into_owned(),
        host: host_name(),
        numprocs: 1,
        num: ProcessNum::One(0),
    };
    let expanded = names.expand(&files.value);
    for p in expanded.problems {
        draft.warn(files.line, format!("key `files`: {p}"));
    }
    for pattern in expanded.text.split_whitespace() {
        let full = here.join(pattern);
        let mut matches: Vec<std::path::PathBuf> = match glob::glob(&full.to_string_lossy()) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(e) => {
                draft.warn(
                    files.line,
                    format!("[include] files: `{pattern}` is not a glob ({e}); skipped"),
                );
                continue;
            }
        };
        matches.sort();
        if matches.is_empty() {
            draft.warn(
                files.line,
                format!("[include] files: `{pattern}` matches no file here, so nothing of it was imported; import those files where they are (`candor import FILE --format supervisord`)"),
            );
        }
        for path in matches {
            one_file(&path, files.line, inherited, draft);
        }
    }
}

/// One included file, its services and warnings into `draft` at the `[include]` line.
fn one_file(path: &Path, at: usize, inherited: &Inherited, draft: &mut Draft) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return draft.warn(
                at,
                format!("[include]: cannot read {}: {e}; skipped", path.display()),
            )
        }
    };
    let mut sub = Draft {
        source: path.to_path_buf(),
        ..Draft::default()
    };
    read_file(path, &text, &mut sub, Some(inherited));
    let shown = path.display();
    for w in sub.warnings {
        draft.warn(at, format!("{shown}:{}: {}", w.line, w.text));
    }
    for mut svc in sub.services {
        svc.comments
            .insert(0, format!("Included: from {shown}:{}.", svc.line));
        svc.line = at;
        draft.services.push(svc);
    }
    draft.daemon.extend(sub.daemon);
}
