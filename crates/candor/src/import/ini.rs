//! The INI dialect supervisord reads (Python's configparser as supervisord sets it up):
//! `[section]`, `key = value` or `key: value` (keys lower-cased), `;`/`#` comment lines, an
//! inline comment after whitespace (` ; …`), indented lines continuing the value before.
//! Each section and key keeps its line for comments and warnings.

/// One `[section]` and its keys in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

impl Section {
    /// The last value of `key` (configparser keeps the last), with its line.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.key == key)
    }
}

/// The sections of `text`, and the lines that are none of the above (line, why).
pub fn parse(text: &str) -> (Vec<Section>, Vec<(usize, String)>) {
    let mut sections: Vec<Section> = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        let continued = raw.starts_with([' ', '\t']);
        if continued {
            if let Some(entry) = sections.last_mut().and_then(|s| s.entries.last_mut()) {
                let more = strip_inline_comment(trimmed);
                if !more.is_empty() {
                    if !entry.value.is_empty() {
                        entry.value.push('\n');
                    }
                    entry.value.push_str(more);
                }
                continue;
            }
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            sections.push(Section {
                name: name.trim().to_string(),
                line,
                entries: Vec::new(),
            });
            continue;
        }
        let split = trimmed.find(['=', ':']);
        match (split, sections.last_mut()) {
            (Some(at), Some(section)) => {
                let key = trimmed[..at].trim().to_ascii_lowercase();
                let value = strip_inline_comment(trimmed[at + 1..].trim()).to_string();
                section.entries.push(Entry { key, value, line });
            }
            (None, _) => bad.push((line, "is not `key = value`; skipped".to_string())),
            (Some(_), None) => {
                bad.push((line, "is a key before any [section]; skipped".to_string()))
            }
        }
    }
    (sections, bad)
}

/// `value` without a `;` or `#` comment that follows whitespace.
fn strip_inline_comment(value: &str) -> &str {
    let bytes = value.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if matches!(b, b';' | b'#') && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return value[..i].trim_end();
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_comments_and_continuations() {
        let (sections, bad) = parse(
            "; top\n[program:web]\nCommand = /bin/app --x ; run it\nenvironment=A=\"1\",\n    B=\"2\"\nurl: http://a#b\n[group:g]\nprograms=web\nstray\n",
        );
        assert_eq!(sections.len(), 2);
        let web = &sections[0];
        assert_eq!((web.name.as_str(), web.line), ("program:web", 2));
        assert_eq!(web.get("command").unwrap().value, "/bin/app --x");
        assert_eq!(web.get("environment").unwrap().value, "A=\"1\",\nB=\"2\"");
        assert_eq!(web.get("environment").unwrap().line, 4);
        assert_eq!(web.get("url").unwrap().value, "http://a#b");
        assert_eq!(bad, [(9, "is not `key = value`; skipped".to_string())]);
    }
}
