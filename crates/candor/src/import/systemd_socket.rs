//! A `.socket` unit beside the `.service` (named by `Sockets=`, or `NAME.socket` as systemd
//! pairs them): each `ListenStream=` an activated socket Candor binds and hands over as fd
//! 3.. (`LISTEN_FDS`), with `SocketMode=`, `Backlog=` and `FileDescriptorName=`. What a
//! socket unit has beyond that is a warning naming its file and line.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::draft::Draft;
use super::unit;

/// The `sockets` items of the socket unit `file` (in `dir`); warnings go to `line` of the
/// service's file, each naming the socket unit's own line.
pub fn read(dir: &Path, file: &str, service: &str, line: usize, draft: &mut Draft) -> Vec<Value> {
    let path = dir.join(file);
    let Ok(text) = std::fs::read_to_string(&path) else {
        draft.warn(line, format!("Sockets={file}: {} cannot be read, so its sockets are not imported; write them as `sockets = [{{ listen = \"HOST:PORT\" | path = \"…\", activate = true }}]`", path.display()));
        return Vec::new();
    };
    let (lines, bad) = unit::parse(&text);
    for (at, why) in bad {
        draft.warn(line, format!("{file}:{at}: {why}"));
    }
    let mut listens: Vec<Map<String, Value>> = Vec::new();
    let mut shared = Map::new();
    for l in lines.iter().filter(|l| l.section == "Socket") {
        let v = l.value.as_str();
        let mut say =
            |why: String| draft.warn(line, format!("{file}:{}: {}={v}: {why}", l.line, l.key));
        match l.key.as_str() {
            "ListenStream" => match listen(v) {
                Ok(item) => listens.push(item),
                Err(why) => say(why),
            },
            "SocketMode" => match u32::from_str_radix(v, 8) {
                Ok(m) if m <= 0o777 => {
                    shared.insert("mode".into(), json!(format!("{m:04o}")));
                }
                _ => say("not an octal mode; skipped".into()),
            },
            "Backlog" => match v.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => {
                    shared.insert("backlog".into(), json!(n));
                }
                _ => say("not a backlog of 1-65535; skipped".into()),
            },
            "FileDescriptorName" => {
                shared.insert("name".into(), json!(v));
            }
            "Service" => {
                if v.strip_suffix(".service") != Some(service) {
                    say(format!("it activates another service than {service}; imported for {service} anyway"));
                }
            }
            "Accept" if matches!(v, "no" | "false") => {}
            "Accept" => say("Candor hands one listening socket to one service, not a connection per instance (inetd style); skipped".into()),
            k if k.starts_with("Listen") => say("only ListenStream= (TCP or a Unix stream socket) is imported".into()),
            _ => say("has no Candor equivalent; skipped".into()),
        }
    }
    for l in lines
        .iter()
        .filter(|l| l.section != "Socket" && l.section != "Unit" && l.section != "Install")
    {
        draft.warn(
            line,
            format!("{file}:{}: [{}] is not read; skipped", l.line, l.section),
        );
    }
    listens
        .into_iter()
        .map(|mut item| {
            let unix = item.contains_key("path");
            for (k, v) in &shared {
                if k != "mode" || unix {
                    item.insert(k.clone(), v.clone());
                }
            }
            item.insert("activate".into(), json!(true));
            Value::Object(item)
        })
        .collect()
}

/// A `ListenStream=` value: a path, `HOST:PORT`, or a bare port (every address, as systemd).
fn listen(v: &str) -> Result<Map<String, Value>, String> {
    let mut item = Map::new();
    if v.starts_with('/') {
        item.insert("path".into(), json!(v));
    } else if let Ok(port) = v.parse::<u16>() {
        item.insert("listen".into(), json!(format!("[::]:{port}")));
    } else if v.parse::<std::net::SocketAddr>().is_ok() {
        item.insert("listen".into(), json!(v));
    } else if v.starts_with('@') {
        return Err("an abstract socket; Candor binds paths and TCP addresses; skipped".into());
    } else {
        return Err("not a path, IP:PORT or port (a host name is not bound); skipped".into());
    }
    Ok(item)
}
