//! An ecosystem `.js` evaluated by `node` (it is a program, not data): its export as JSON,
//! and the path of each value that is a function, which JSON leaves out.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// How long `node` may take to evaluate an ecosystem file.
const NODE_DEADLINE: Duration = Duration::from_secs(10);

/// Prints `{config, functions}`: the module's export as JSON and the path of each value
/// that is a function (JSON.stringify leaves those out).
const EVALUATE: &str = r#"
const { pathToFileURL } = require('url');
import(pathToFileURL(process.argv[1]).href).then((ns) => {
  const config = ns.default !== undefined ? ns.default : ns;
  const functions = [];
  const walk = (v, at) => {
    if (typeof v === 'function') { functions.push(at); return; }
    if (v && typeof v === 'object' && at.length < 16) {
      for (const k of Object.keys(v)) walk(v[k], at.concat([k]));
    }
  };
  walk(config, []);
  process.stdout.write(JSON.stringify({ config, functions }));
}).catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
"#;

/// The export of a `.js` ecosystem file, run by `node` (found on PATH), and the paths of its
/// functions.
pub fn evaluate(node: &str, path: &Path) -> anyhow::Result<(Json, Vec<Vec<String>>)> {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let export_hint = format!(
        "export it as JSON and import that: node -e 'console.log(JSON.stringify(require(\"{}\"), null, 2))' > ecosystem.json",
        abs.display()
    );
    let spawned = Command::new(node)
        .arg("-e")
        .arg(EVALUATE)
        .arg(&abs)
        .current_dir(abs.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "{}: an ecosystem .js is a program, and reading it needs `node` on PATH, which is \
             missing; install node, or on a machine with PM2 {export_hint}",
            path.display()
        ),
        Err(e) => anyhow::bail!("{}: cannot run node to read it: {e}", path.display()),
    };
    let mut out = child.stdout.take().map(reader);
    let mut err = child.stderr.take().map(reader);
    let deadline = Instant::now() + NODE_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{}: node did not finish evaluating it within {}s; {export_hint}",
                path.display(),
                NODE_DEADLINE.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out
        .take()
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    let stderr = err
        .take()
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    if !status.success() {
        let first: Vec<&str> = stderr.lines().take(6).collect();
        anyhow::bail!(
            "{}: node could not evaluate it ({status}):\n{}\nfix the file, or {export_hint}",
            path.display(),
            first.join("\n")
        );
    }
    let v: Json = serde_json::from_str(&stdout).map_err(|e| {
        anyhow::anyhow!(
            "{}: node printed no JSON ({e}); {export_hint}",
            path.display()
        )
    })?;
    let functions = v["functions"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter_map(|f| {
                    f.as_array().map(|p| {
                        p.iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect()
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((v["config"].clone(), functions))
}

fn reader(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_node_the_error_says_to_export_json() {
        let e = evaluate("candor-test-no-such-node", Path::new("ecosystem.config.js")).unwrap_err();
        let e = e.to_string();
        assert!(
            e.starts_with("ecosystem.config.js: an ecosystem .js is a program"),
            "{e}"
        );
        assert!(e.contains("needs `node` on PATH"), "{e}");
        assert!(e.contains("JSON.stringify(require("), "{e}");
    }
}
