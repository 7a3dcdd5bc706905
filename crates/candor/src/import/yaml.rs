//! YAML for the importers: a document loaded (saphyr, YAML 1.2) into a small tree whose every
//! value and key knows its source line, with aliases expanded and merge keys (`<<: *base`)
//! applied, so a reader can name FILE:LINE for each key it meets.

use std::path::Path;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// A value and the line (1-based) it starts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    Map(Vec<Entry>),
}

/// One key of a mapping, in the order written (merged keys where the `<<` stood).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    /// The key's line: where a warning about it points.
    pub line: usize,
    pub value: Node,
}

impl Node {
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(e) => Some(e),
            _ => None,
        }
    }

    pub fn list(&self) -> Option<&[Node]> {
        match &self.value {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The entry `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries()?.iter().find(|e| e.key == key)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A scalar as the text it stands for (`8080`, `true`, `x`); None for null, lists, maps.
    pub fn scalar(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A whole number, also when written as a string (`"3"`).
    pub fn int(&self) -> Option<i64> {
        match &self.value {
            Value::Int(i) => Some(*i),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A boolean, also the YAML 1.1 words compose files still use (`yes`, `"true"`).
    pub fn bool(&self) -> Option<bool> {
        match &self.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => Some(true),
                "false" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// What kind of value this is, for messages ("a list").
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// The first document of `text`, read from `path` (named in errors with its line and column).
pub fn load(path: &Path, text: &str) -> anyhow::Result<Node> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: invalid YAML: {}; fix the file and import again",
            path.display(),
            e.marker().line(),
            e.marker().col() + 1,
            e.info()
        )
    })?;
    let Some(doc) = docs.first() else {
        anyhow::bail!(
            "{}: the file holds no YAML document; is it the right file?",
            path.display()
        );
    };
    convert(path, doc)
}

fn convert(path: &Path, node: &MarkedYaml<'_>) -> anyhow::Result<Node> {
    let line = node.span.start.line();
    let value = match &node.data {
        YamlData::Value(s) => scalar(s),
        YamlData::Representation(text, _, _) => Value::Str(text.to_string()),
        YamlData::Sequence(items) => Value::List(
            items
                .iter()
                .map(|n| convert(path, n))
                .collect::<anyhow::Result<_>>()?,
        ),
        YamlData::Mapping(map) => {
            let mut entries: Vec<Entry> = Vec::new();
            let mut merged: Vec<Entry> = Vec::new();
            for (k, v) in map.iter() {
                let key = convert(path, k)?;
                let value = convert(path, v)?;
                let Some(name) = key.scalar() else {
                    anyhow::bail!(
                        "{}:{}: a mapping key is {}; only plain keys are understood here",
                        path.display(),
                        key.line,
                        key.kind()
                    );
                };
                if name == "<<" {
                    merged.extend(merge_source(path, &value)?);
                } else {
                    entries.push(Entry {
                        key: name,
                        line: key.line,
                        value,
                    });
                }
            }
            // Merge keys: a key written in the mapping wins over a merged one; among the merged
            // mappings, the first listed wins (YAML 1.1's merge key type).
            for entry in merged {
                if !entries.iter().any(|e| e.key == entry.key) {
                    entries.push(entry);
                }
            }
            Value::Map(entries)
        }
        YamlData::Tagged(_, inner) => return convert(path, inner),
        YamlData::Alias(_) | YamlData::BadValue => anyhow::bail!(
            "{}:{}: a value that cannot be read (an alias to an unknown anchor, or a tag that \
             does not fit its value); fix it and import again",
            path.display(),
            line
        ),
    };
    Ok(Node { line, value })
}

/// The entries a `<<` brings: one mapping, or a list of them.
fn merge_source(path: &Path, value: &Node) -> anyhow::Result<Vec<Entry>> {
    match &value.value {
        Value::Map(e) => Ok(e.clone()),
        Value::List(items) => {
            let mut out: Vec<Entry> = Vec::new();
            for item in items {
                let Value::Map(e) = &item.value else {
                    anyhow::bail!(
                        "{}:{}: `<<` merges mappings, and this is {}",
                        path.display(),
                        item.line,
                        item.kind()
                    );
                };
                for entry in e {
                    if !out.iter().any(|o| o.key == entry.key) {
                        out.push(entry.clone());
                    }
                }
            }
            Ok(out)
        }
        _ => anyhow::bail!(
            "{}:{}: `<<` merges a mapping (`<<: *anchor`), and this is {}",
            path.display(),
            value.line,
            value.kind()
        ),
    }
}

fn scalar(s: &Scalar<'_>) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Int(*i),
        Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
        Scalar::String(s) => Value::Str(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Node {
        load(Path::new("t.yaml"), text).unwrap_or_else(|e| panic!("{e:#}"))
    }

    #[test]
    fn keys_and_values_carry_their_lines() {
        let d = doc("# top\nservices:\n  web:\n    command: [\"a\", 'b']\n    port: 80\n");
        let web = &d.get("services").unwrap().value.get("web").unwrap();
        assert_eq!(web.line, 3);
        let cmd = web.value.get("command").unwrap();
        assert_eq!(cmd.line, 4);
        let argv: Vec<_> = cmd
            .value
            .list()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(argv, ["a", "b"]);
        let port = web.value.get("port").unwrap();
        assert_eq!((port.line, port.value.int()), (5, Some(80)));
        assert_eq!(port.value.scalar().as_deref(), Some("80"));
    }

    #[test]
    fn merge_keys_apply_and_written_keys_win() {
        let d = doc(concat!(
            "x-base: &base\n",
            "  restart: always\n",
            "  user: app\n",
            "services:\n",
            "  a:\n",
            "    <<: *base\n",
            "    user: root\n",
        ));
        let a = &d.get("services").unwrap().value.get("a").unwrap().value;
        let keys: Vec<_> = a
            .entries()
            .unwrap()
            .iter()
            .map(|e| (e.key.as_str(), e.line))
            .collect();
        assert_eq!(keys, [("user", 7), ("restart", 2)]);
        assert_eq!(a.get("user").unwrap().value.as_str(), Some("root"));
    }

    #[test]
    fn merge_of_a_list_takes_the_first_listed() {
        let d = doc("a: &a {k: 1}\nb: &b {k: 2, j: 3}\nc:\n  <<: [*a, *b]\n");
        let c = &d.get("c").unwrap().value;
        assert_eq!(c.get("k").unwrap().value.int(), Some(1));
        assert_eq!(c.get("j").unwrap().value.int(), Some(3));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = load(Path::new("p.yaml"), "a: [1, 2\nb: 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.yaml:"), "{e}");
        assert!(e.contains("invalid YAML"), "{e}");
        let e = load(Path::new("p.yaml"), "a:\n  <<: 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.yaml:2: `<<` merges a mapping"), "{e}");
        let e = load(Path::new("p.yaml"), "# nothing\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no YAML document"), "{e}");
    }

    #[test]
    fn yaml_11_booleans_are_read_as_booleans_where_one_is_wanted() {
        let d = doc("a: yes\nb: \"false\"\nc: true\n");
        assert_eq!(d.get("a").unwrap().value.bool(), Some(true));
        assert_eq!(d.get("b").unwrap().value.bool(), Some(false));
        assert_eq!(d.get("c").unwrap().value.bool(), Some(true));
    }
}
