//! Where an ecosystem file's keys are, for warnings: found in the source text (a `.js` is
//! evaluated, so its values carry no positions), each app's keys from its `name` on.

/// Where keys are in the source text, for warnings: each app's `name` anchors its keys.
pub struct Lines<'a> {
    text: &'a str,
    /// The byte offset of each app's name (or its script when it has none).
    anchors: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            anchors: Vec::new(),
        }
    }

    pub fn with_apps(mut self, names: &[String]) -> Self {
        let mut from = 0;
        for name in names {
            let value = quoted_value(self.text, name, from).unwrap_or(from);
            // The anchor is the `name` key written before the value.
            let at = key_offsets(&self.text[..value], "name")
                .last()
                .copied()
                .filter(|k| *k >= from)
                .unwrap_or(value);
            self.anchors.push(at);
            from = value + 1;
        }
        self
    }

    fn line_at(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The line of a top-level key (its first occurrence as a key).
    pub fn top(&self, key: &str) -> usize {
        key_offsets(self.text, key)
            .first()
            .map_or(1, |o| self.line_at(*o))
    }
}

/// One app's place in the file.
pub struct Place<'a> {
    pub lines: &'a Lines<'a>,
    pub app: usize,
}

impl Place<'_> {
    /// The line of `key` in this app: its first occurrence between the app's name and the
    /// next app's, else the last between the previous app's name and this one's, else the
    /// name's line.
    pub fn line(&self, key: &str) -> usize {
        let l = self.lines;
        let anchor = l.anchors.get(self.app).copied().unwrap_or(0);
        let next = l.anchors.get(self.app + 1).copied().unwrap_or(l.text.len());
        let prev = if self.app == 0 {
            0
        } else {
            l.anchors[self.app - 1]
        };
        let offsets = key_offsets(l.text, key);
        let at = (offsets.iter().find(|o| **o >= anchor && **o < next))
            .or_else(|| offsets.iter().rev().find(|o| **o >= prev && **o < anchor))
            .copied()
            .unwrap_or(anchor);
        l.line_at(at)
    }
}

/// Offsets where `key` is written as an object key: `key:`, `"key":`, `'key' :`.
fn key_offsets(text: &str, key: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(key).map(|i| i + from) {
        from = i + key.len();
        let before = text[..i].chars().next_back();
        let word_start = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        let mut j = i + key.len();
        if matches!(bytes.get(j), Some(b'"' | b'\'')) {
            j += 1;
        }
        while matches!(bytes.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        if word_start && bytes.get(j) == Some(&b':') {
            out.push(i);
        }
    }
    out
}

/// The offset of `value` written as a quoted string at or after `from`.
fn quoted_value(text: &str, value: &str, from: usize) -> Option<usize> {
    ["\"", "'", "`"]
        .iter()
        .filter_map(|q| {
            text[from..]
                .find(&format!("{q}{value}{q}"))
                .map(|i| i + from)
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_from_each_apps_name() {
        let text = "module.exports = {\n  apps: [{\n    script: 'a.js',\n    name: 'a',\n    watch: true,\n  }, {\n    name: \"b\",\n    script: 'b.js',\n    'watch' : true,\n  }]\n}\n";
        let lines = Lines::new(text).with_apps(&["a".into(), "b".into()]);
        let a = Place {
            lines: &lines,
            app: 0,
        };
        let b = Place {
            lines: &lines,
            app: 1,
        };
        assert_eq!(
            (a.line("name"), a.line("script"), a.line("watch")),
            (4, 3, 5)
        );
        assert_eq!(
            (b.line("name"), b.line("script"), b.line("watch")),
            (7, 8, 9)
        );
        assert_eq!(b.line("nothing"), 7);
    }
}
