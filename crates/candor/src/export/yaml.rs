//! Just enough YAML for manifests of a fixed shape: block maps and lists, integers, booleans and
//! strings that are always double-quoted with every character YAML could read otherwise
//! escaped — so no value is ever taken for a number, a boolean, a null or a comment
//! (`"on"`, `"0755"`, `"# x"`, `"a: b"` stay strings), in YAML 1.1 and 1.2 alike.

use std::fmt::Write as _;

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Str(String),
    Int(i64),
    Bool(bool),
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
}

impl Node {
    pub fn str(s: impl Into<String>) -> Node {
        Node::Str(s.into())
    }

    pub fn int(n: impl TryInto<i64>) -> Node {
        Node::Int(n.try_into().unwrap_or(i64::MAX))
    }

    pub fn strs<S: AsRef<str>>(items: &[S]) -> Node {
        Node::List(items.iter().map(|s| Node::str(s.as_ref())).collect())
    }
}

/// A map built key by key, in the order keys are given.
#[derive(Default)]
pub struct Map(Vec<(String, Node)>);

impl Map {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, key: &str, value: Node) -> Self {
        self.0.push((key.to_string(), value));
        self
    }

    pub fn set(&mut self, key: &str, value: Node) {
        self.0.push((key.to_string(), value));
    }

    pub fn node(self) -> Node {
        Node::Map(self.0)
    }
}

/// A double-quoted scalar: `"` and `\` escaped, and every control character, DEL, the C1
/// controls, the Unicode line and paragraph separators and the BOM as `\uXXXX` (YAML folds
/// raw line breaks and may reject raw control characters).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') =>
            {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key as written: plain when it is a field name or a label key (letters, digits, `.`,
/// `-`, `_`, `/`, starting with a letter) and no YAML 1.1 boolean or null word; else quoted.
fn key(k: &str) -> String {
    let plain = k.starts_with(|c: char| c.is_ascii_alphabetic())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        k.to_string()
    } else {
        quote(k)
    }
}

/// One document: `---`, the comment lines, then the node (a map).
pub fn document(comments: &[String], root: &Node, out: &mut String) {
    out.push_str("---\n");
    for c in comments {
        // A comment ends at the line's end: nothing in it may start another line.
        let c: String = c
            .chars()
            .map(|ch| if ch.is_control() { '?' } else { ch })
            .collect();
        let _ = writeln!(out, "# {c}");
    }
    block(root, 0, out);
}

fn scalar(node: &Node) -> Option<String> {
    match node {
        Node::Str(s) => Some(quote(s)),
        Node::Int(n) => Some(n.to_string()),
        Node::Bool(b) => Some(b.to_string()),
        Node::Map(m) if m.is_empty() => Some("{}".into()),
        Node::List(l) if l.is_empty() => Some("[]".into()),
        _ => None,
    }
}

/// A map or a list at `indent`, every line indented (the caller wrote nothing of it yet).
fn block(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Node::Map(entries) => {
            for (k, v) in entries {
                let _ = write!(out, "{pad}{}:", key(k));
                match scalar(v) {
                    Some(s) => {
                        let _ = writeln!(out, " {s}");
                    }
                    None => {
                        out.push('\n');
                        block(v, indent + 2, out);
                    }
                }
            }
        }
        Node::List(items) => {
            for item in items {
                match scalar(item) {
                    Some(s) => {
                        let _ = writeln!(out, "{pad}- {s}");
                    }
                    None => {
                        // The item's block, its first line's indent replaced by the dash.
                        let mut inner = String::new();
                        block(item, indent + 2, &mut inner);
                        let _ = write!(out, "{pad}- {}", &inner[indent + 2..]);
                    }
                }
            }
        }
        other => {
            // Only maps and lists are blocks; a scalar root is a document of one scalar.
            if let Some(s) = scalar(other) {
                let _ = writeln!(out, "{pad}{s}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_always_quoted_and_escaped() {
        assert_eq!(quote("on"), "\"on\"");
        assert_eq!(quote("a \"b\" \\ c"), r#""a \"b\" \\ c""#);
        assert_eq!(quote("x\ny\tz\r\u{1b}"), r#""x\ny\tz\u000d\u001b""#);
        assert_eq!(quote("\u{85}\u{2028}é"), "\"\\u0085\\u2028é\"");
    }

    #[test]
    fn keys_that_yaml_would_read_as_something_else_are_quoted() {
        assert_eq!(key("app.kubernetes.io/name"), "app.kubernetes.io/name");
        assert_eq!(key("on"), "\"on\"");
        assert_eq!(key("1x"), "\"1x\"");
        assert_eq!(key("a b"), "\"a b\"");
    }

    #[test]
    fn maps_and_lists_nest_as_blocks() {
        let root = Map::new()
            .with("kind", Node::str("Deployment"))
            .with(
                "spec",
                Map::new()
                    .with("replicas", Node::int(1))
                    .with("paused", Node::Bool(false))
                    .with("empty", Map::new().node())
                    .with(
                        "containers",
                        Node::List(vec![Map::new()
                            .with("name", Node::str("a"))
                            .with("command", Node::strs(&["/bin/x", "-y"]))
                            .with(
                                "env",
                                Node::List(vec![Map::new()
                                    .with("name", Node::str("K"))
                                    .with("value", Node::str("v"))
                                    .node()]),
                            )
                            .node()]),
                    )
                    .node(),
            )
            .node();
        let mut out = String::new();
        document(&["from a\nb".into()], &root, &mut out);
        assert_eq!(
            out,
            r#"---
# from a?b
kind: "Deployment"
spec:
  replicas: 1
  paused: false
  empty: {}
  containers:
    - name: "a"
      command:
        - "/bin/x"
        - "-y"
      env:
        - name: "K"
          value: "v"
"#
        );
    }
}
