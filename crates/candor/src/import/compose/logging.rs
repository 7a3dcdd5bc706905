//! A compose service's `logging`: the syslog and journald drivers as `[[daemon.forward]]`
//! targets, one per distinct target with the services sent to it.

use serde_json::{json, Map, Value as Json};

use super::super::draft::{Draft, DraftService};
use super::super::yaml::Entry;

/// `[[daemon.forward]]` targets (without `services`) and the services sent to each.
pub type Forwards = Vec<(Map<String, Json>, Vec<String>)>;

/// `logging`: the syslog and journald drivers become a `[[daemon.forward]]` for the service
/// (Candor keeps the lines in its store as well); other drivers are a warning.
pub fn logging(draft: &mut Draft, svc: &mut DraftService, e: &Entry, forwards: &mut Forwards) {
    let driver = e
        .value
        .get("driver")
        .and_then(|d| d.value.as_str())
        .unwrap_or("json-file");
    let options = e.value.get("options");
    let mut target = Map::new();
    match driver {
        "journald" => {
            target.insert("journald".into(), json!(true));
        }
        "syslog" => {
            let address = options
                .and_then(|o| o.value.get("syslog-address"))
                .and_then(|a| a.value.as_str())
                .unwrap_or("unix:///dev/log");
            if !["unix:///", "udp://", "tcp://"]
                .iter()
                .any(|p| address.starts_with(p))
            {
                draft.warn(
                    e.line,
                    format!(
                        "logging syslog-address `{address}`: Candor sends to unix:///PATH, \
                         udp://HOST:PORT or tcp://HOST:PORT (no TLS); not forwarded: add a \
                         [[daemon.forward]] by hand"
                    ),
                );
                return;
            }
            target.insert("syslog".into(), json!(address));
        }
        other => {
            draft.warn(
                e.line,
                format!(
                    "key `logging` (driver {other}): Candor keeps the service's output in its \
                     store (`candor logs {}`); send it on with [[daemon.forward]] (syslog, \
                     journald, OTLP)",
                    svc.name
                ),
            );
            return;
        }
    }
    for o in options.and_then(|o| o.value.entries()).unwrap_or_default() {
        let value = o.value.scalar().unwrap_or_default();
        match (driver, o.key.as_str()) {
            ("syslog", "syslog-address") => {}
            ("syslog", "syslog-facility")
                if candor_spec::forward::FACILITIES.contains(&value.as_str()) =>
            {
                target.insert("facility".into(), json!(value));
            }
            ("syslog", "syslog-format") if value == "rfc3164" => {
                target.insert("format".into(), json!("bsd"));
            }
            ("syslog", "syslog-format") if value.starts_with("rfc5424") => {}
            _ => draft.warn(
                o.line,
                format!(
                    "logging option `{}` = {value}: not carried over; the {driver} target names \
                     each line by its service",
                    o.key
                ),
            ),
        }
    }
    svc.comments.push(format!(
        "logging driver {driver}: its lines also go to {driver} ([[daemon.forward]] in [daemon])"
    ));
    match forwards.iter_mut().find(|(t, _)| *t == target) {
        Some((_, names)) => names.push(svc.name.clone()),
        None => forwards.push((target, vec![svc.name.clone()])),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::import;
    use serde_json::json;

    #[test]
    fn syslog_and_journald_logging_become_forward_targets() {
        let d = import(concat!(
            "services:\n",
            "  a:\n",
            "    command: a\n",
            "    logging:\n",
            "      driver: syslog\n",
            "      options: {syslog-address: \"udp://127.0.0.1:514\", syslog-facility: local3, tag: a}\n",
            "  b:\n",
            "    command: b\n",
            "    logging: {driver: journald}\n",
            "  c:\n",
            "    command: c\n",
            "    logging: {driver: journald}\n",
            "  d:\n",
            "    command: d\n",
            "    logging: {driver: json-file}\n",
        ));
        assert_eq!(
            d.daemon,
            [(
                "forward".to_string(),
                json!([
                    {"syslog": "udp://127.0.0.1:514", "facility": "local3", "services": ["a"]},
                    {"journald": true, "services": ["b", "c"]}
                ])
            )]
        );
        let lines: Vec<usize> = d.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [6, 15], "{:#?}", d.warnings);
        assert!(d.warnings[0]
            .text
            .starts_with("logging option `tag` = a: not carried over"));
        assert!(d.warnings[1].text.contains("(driver json-file)"));
    }
}
