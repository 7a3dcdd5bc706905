//! process-compose's `readiness_probe` and `liveness_probe` (exec or http_get, with their
//! timings) as Candor's one `probe`, and which of the two it is.

use serde_json::{json, Map, Value as Json};

use super::super::draft::{Draft, DraftService};
use super::super::fields;
use super::super::yaml::Entry;
use super::Context;

/// A readiness or liveness probe as Candor's `probe` table (None when it cannot be one).
pub fn probe(
    draft: &mut Draft,
    cx: &Context,
    svc: &mut DraftService,
    e: &Entry,
) -> Option<Map<String, Json>> {
    let mut out = Map::new();
    let mut check = None;
    for f in e.value.entries().unwrap_or_default() {
        let v = &f.value;
        let secs = || {
            v.int()
                .filter(|s| *s > 0)
                .map(|s| fields::seconds(s as f64))
        };
        match f.key.as_str() {
            "exec" => {
                match v.get("command").and_then(|c| c.value.as_str()) {
                    Some(text) => {
                        let who = format!(" ({}.exec)", e.key);
                        let argv = fields::command(svc, text, &cx.shell, &who);
                        check = Some(("exec", json!(argv)));
                    }
                    None => {
                        draft.warn(f.line, format!("{}.exec has no `command`; left out", e.key))
                    }
                }
                if let Some(wd) = v.get("working_dir") {
                    draft.warn(
                        wd.line,
                        format!("key `{}.exec.working_dir`: Candor runs a probe in the service's workdir", e.key),
                    );
                }
            }
            "http_get" => check = http_get(draft, e, f).map(|h| ("http", h)),
            "initial_delay_seconds" => match v.int() {
                Some(s) if s >= 0 => {
                    out.insert("start_delay".into(), json!(fields::seconds(s as f64)));
                }
                _ => draft.warn(f.line, "initial_delay_seconds is not a number; left out"),
            },
            "period_seconds" => match secs() {
                Some(d) => {
                    out.insert("every".into(), json!(d));
                }
                None => draft.warn(f.line, "period_seconds is not a positive number; left out"),
            },
            "timeout_seconds" => match secs() {
                Some(d) => {
                    out.insert("timeout".into(), json!(d));
                }
                None => draft.warn(f.line, "timeout_seconds is not a positive number; left out"),
            },
            "failure_threshold" => match v.int() {
                Some(n) if n >= 1 => {
                    out.insert("failures".into(), json!(n));
                }
                _ => draft.warn(
                    f.line,
                    "failure_threshold is not a number of at least 1; left out",
                ),
            },
            "success_threshold" => match v.int() {
                Some(n) if n >= 1 => {
                    out.insert("successes".into(), json!(n));
                }
                _ => draft.warn(
                    f.line,
                    "success_threshold is not a number of at least 1; left out",
                ),
            },
            other => draft.warn(
                f.line,
                format!("key `{}.{other}` has no Candor equivalent; left out", e.key),
            ),
        }
    }
    let Some((kind, check)) = check else {
        draft.warn(
            e.line,
            format!(
                "`{}` has neither `exec` nor `http_get`: no probe was written",
                e.key
            ),
        );
        return None;
    };
    out.insert(kind.into(), check);
    Some(out)
}

fn http_get(draft: &mut Draft, probe: &Entry, f: &Entry) -> Option<Json> {
    let mut http = Map::new();
    for h in f.value.entries().unwrap_or_default() {
        match h.key.as_str() {
            "host" => {
                if let Some(host) = h.value.scalar() {
                    http.insert("host".into(), json!(host));
                }
            }
            "port" => match h.value.int() {
                Some(p) if (1..=65535).contains(&p) => {
                    http.insert("port".into(), json!(p));
                }
                _ => draft.warn(h.line, "http_get.port is not a port number; left out"),
            },
            "path" => {
                if let Some(path) = h.value.scalar() {
                    let path = if path.starts_with('/') {
                        path
                    } else {
                        format!("/{path}")
                    };
                    http.insert("path".into(), json!(path));
                }
            }
            "scheme" => {
                if h.value
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("https"))
                {
                    draft.warn(
                        h.line,
                        format!(
                            "key `{}.http_get.scheme = https`: Candor's http probe speaks plain \
                             HTTP; probe a plain port, or use an exec probe (`curl -fsS \
                             https://…`)",
                            probe.key
                        ),
                    );
                }
            }
            other => draft.warn(
                h.line,
                format!(
                    "key `{}.http_get.{other}` has no Candor equivalent; left out",
                    probe.key
                ),
            ),
        }
    }
    if !http.contains_key("port") {
        draft.warn(
            f.line,
            format!("`{}.http_get` has no port: no probe was written", probe.key),
        );
        return None;
    }
    Some(Json::Object(http))
}

/// Candor has one probe: it makes a run ready (its first pass) and, once ready, restarts the
/// run after `failures` in a row. So the readiness probe is taken when there is one (it
/// gates `after`, as process_healthy does), and the liveness probe otherwise; with only a
/// readiness probe, a failing one does not restart (`on_unhealthy = "alert"`), as in
/// process-compose.
pub fn choose_probe(
    draft: &mut Draft,
    svc: &mut DraftService,
    probes: Vec<(&Entry, Map<String, Json>)>,
) {
    let readiness = probes.iter().find(|(e, _)| e.key == "readiness_probe");
    let liveness = probes.iter().find(|(e, _)| e.key == "liveness_probe");
    match (readiness, liveness) {
        (Some((_, r)), None) => {
            svc.set("probe", Json::Object(r.clone()));
            svc.set("on_unhealthy", "alert");
            svc.comments.push(
                "probe: the readiness_probe (ready once it passes); on_unhealthy = \"alert\": a \
                 failing readiness probe does not restart in process-compose"
                    .into(),
            );
        }
        (None, Some((_, l))) => {
            svc.set("probe", Json::Object(l.clone()));
            svc.comments.push(
                "probe: the liveness_probe (restarts the service after `failures` in a row; \
                 Candor also counts the service ready once it first passes)"
                    .into(),
            );
        }
        (Some((_, r)), Some((le, l))) => {
            svc.set("probe", Json::Object(r.clone()));
            svc.comments.push(
                "probe: the readiness_probe, which Candor also uses as the liveness check \
                 (restart after `failures` in a row)"
                    .into(),
            );
            if r != l {
                draft.warn(
                    le.line,
                    "key `liveness_probe`: Candor has one probe per service, and the \
                     readiness_probe was taken (it also restarts the service when it fails); \
                     fold what the liveness probe checks into it, or into the program",
                );
            }
        }
        (None, None) => {}
    }
}
