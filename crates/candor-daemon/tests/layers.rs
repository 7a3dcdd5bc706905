//! candor-daemon's modules form layers: no module names (through `crate::`) a module that
//! names it back, directly or around a circle. Read from the sources in `src/`.
//!
//! A `crate::NAME` that is not a module is an item of the crate root (`lib`). Inline test
//! modules are left out: a test may reach up (the role layer's test runs the whole route
//! table of `http`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module of `src/` (its file stem; `lib` for the crate root) and its source.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            // A file under src/web/ belongs to the module `web`.
            let rel = path.strip_prefix(src).expect("under src/");
            let top = rel.components().next().expect("a file name");
            let name = Path::new(top.as_os_str())
                .file_stem()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            found
                .entry(name)
                .or_insert_with(String::new)
                .push_str(&shipped(&text));
        }
    }
    found
}

/// The source without its comment lines and its inline test modules (`#[cfg(test)]` then
/// `mod NAME {`, to its closing brace).
fn shipped(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let next = lines.peek().map(|l| l.trim()).unwrap_or("");
        if line.trim() == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
            let mut depth = 0i64;
            for skipped in lines.by_ref() {
                depth += skipped.matches('{').count() as i64;
                depth -= skipped.matches('}').count() as i64;
                if depth <= 0 && skipped.contains('}') {
                    break;
                }
            }
            continue;
        }
        if !line.trim_start().starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The first name after each `crate::`, and each name of a `crate::{a, b::c}` group.
fn named(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Names at the group's top level: after its `{` and after each `,` at depth 0.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start => {
                        names.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty() && n != "self");
    names
}

/// Module -> the modules it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let sources = modules(src);
    sources
        .iter()
        .map(|(module, text)| {
            let edges = named(text)
                .into_iter()
                .map(|n| {
                    if sources.contains_key(&n) {
                        n
                    } else {
                        "lib".to_string()
                    }
                })
                .filter(|n| n != module)
                .collect();
            (module.clone(), edges)
        })
        .collect()
}

/// A circle of the graph, as `a -> b -> a`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<String> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = path.iter().position(|n| n == node).expect("on the path");
                let mut circle = path[from..].to_vec();
                circle.push(node.to_string());
                return Some(circle.join(" -> "));
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut marks, &mut Vec::new()))
}

#[test]
fn the_daemons_modules_name_each_other_in_one_direction_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(graph.len() > 10, "found the modules: {graph:?}");
    if let Some(circle) = cycle(&graph) {
        panic!("candor-daemon's modules name each other in a circle: {circle}");
    }
}

#[test]
fn a_circle_is_found_and_named() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    let circle = cycle(&edges(&[
        ("board", "logs"),
        ("logs", "faults"),
        ("faults", "shell"),
        ("shell", "board"),
    ]));
    assert_eq!(
        circle.as_deref(),
        Some("board -> logs -> faults -> shell -> board")
    );
    assert_eq!(
        cycle(&edges(&[("http", "shell"), ("shell", "board")])),
        None
    );
}

#[test]
fn groups_and_paths_are_read_as_the_modules_they_name() {
    let text = "use crate::{board::Board, logs::{self, LiveLine},\n    shell};\nlet x = crate::gate::Gates::new();\n// crate::comment\n#[cfg(test)]\nmod tests {\n    fn f() {\n        crate::http::x();\n    }\n}\nuse crate::sse;\n";
    let names: Vec<String> = named(&shipped(text)).into_iter().collect();
    assert_eq!(names, ["board", "gate", "logs", "shell", "sse"]);
}
