//! Properties of the API's request parsing (issue 26): the query parameters, the request body
//! type and rule, and the dashboard's Host / Origin / Sec-Fetch-Site / token-header checks
//! never panic and accept exactly what is valid. Bounded: a few thousand cases each.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;

use crate::app::{count_param, duration_param, flag};
use crate::http::{body_rule, MAX_BODY};
use crate::web::{
    change_needs_header, front_door, header_token, host_allowed, origin_allowed, split_host,
};

fn q(key: &str, value: Option<String>) -> HashMap<String, String> {
    value.map(|v| (key.to_string(), v)).into_iter().collect()
}

/// Strings near what is valid: the valid words, numbers, durations, and noise.
fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        prop::sample::select(vec!["true", "false", "1", "0", "TRUE", "yes", " 1"])
            .prop_map(String::from),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{1,30}",
        "[0-9]{1,6}(ms|s|m|h|d|us|ns|x)?",
        "\\PC{0,24}",
    ]
}

fn host_name() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        any::<u128>().prop_map(|o| format!("[{}]", std::net::Ipv6Addr::from(o))),
        Just("localhost".to_string()),
        Just("LocalHost".to_string()),
        Just("dash.example.org".to_string()),
        Just("evil.example".to_string()),
        "[a-z0-9.-]{1,20}",
        "\\PC{0,20}",
    ]
}

fn host_header() -> impl Strategy<Value = String> {
    (
        host_name(),
        prop_oneof![
            Just(None),
            Just(Some("9631".to_string())),
            any::<u16>().prop_map(|p| Some(p.to_string())),
            "[0-9a-z:]{0,8}".prop_map(Some),
        ],
    )
        .prop_map(|(h, p)| match p {
            Some(p) => format!("{h}:{p}"),
            None => h,
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ])
}

const LISTEN: &str = "127.0.0.1:9631";
const TOKEN: &str = "c0ffee";

fn names() -> Vec<String> {
    vec!["dash.example.org".to_string()]
}

/// What `host_allowed` must answer, said another way: the name part is an IP literal (v6 in
/// brackets) or localhost and the port is the listen port (absent: 80), or the name is listed.
fn expected_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        let port = match after {
            "" => Some(80),
            p => p
                .strip_prefix(':')
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok()),
        };
        return port == Some(9631);
    } else {
        match host.split_once(':') {
            Some((n, p)) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return false;
                }
                let Ok(p) = p.parse::<u16>() else {
                    return false;
                };
                (n, p)
            }
            None => (host, 80),
        }
    };
    if name.is_empty() {
        return false;
    }
    let local =
        name.parse::<std::net::Ipv4Addr>().is_ok() || name.eq_ignore_ascii_case("localhost");
    (local && port == 9631) || name.eq_ignore_ascii_case("dash.example.org")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn flag_takes_only_the_boolean_words(v in proptest::option::of(param_value())) {
        let got = flag(&q("wait", v.clone()), "wait");
        match v.as_deref() {
            None | Some("false") | Some("0") => prop_assert_eq!(got.ok(), Some(false)),
            Some("") | Some("true") | Some("1") => prop_assert_eq!(got.ok(), Some(true)),
            Some(_) => prop_assert_eq!(got.err().map(|e| e.status), Some(400)),
        }
    }

    #[test]
    fn count_param_takes_whole_numbers_capped(v in proptest::option::of(param_value()), default in 0usize..1000) {
        let got = count_param(&q("n", v.clone()), default);
        match v {
            None => prop_assert_eq!(got.ok(), Some(default)),
            Some(s) => match s.parse::<usize>() {
                Ok(n) => prop_assert_eq!(got.ok(), Some(n.min(100_000))),
                Err(_) => prop_assert_eq!(got.err().map(|e| e.status), Some(400)),
            },
        }
    }

    #[test]
    fn duration_param_agrees_with_the_config_parser(v in proptest::option::of(param_value())) {
        let got = duration_param(&q("since", v.clone()), "since");
        match v {
            None => prop_assert!(matches!(got, Ok(None))),
            Some(s) => match candor_spec::parse_duration(&s) {
                Ok(d) => prop_assert_eq!(got.ok(), Some(Some(d))),
                Err(_) => prop_assert_eq!(got.err().map(|e| e.status), Some(400)),
            },
        }
    }

    #[test]
    fn upgrade_requests_take_known_fields_only(
        keys in proptest::collection::btree_map(
            prop_oneof![Just("binary".to_string()), "[a-z_]{1,8}"],
            prop_oneof![
                Just(serde_json::Value::Null),
                "\\PC{0,12}".prop_map(serde_json::Value::from),
                any::<i32>().prop_map(serde_json::Value::from),
                any::<bool>().prop_map(serde_json::Value::from),
            ],
            0..4,
        )
    ) {
        let body = serde_json::to_vec(&keys).unwrap();
        let got = serde_json::from_slice::<candor_api::UpgradeRequest>(&body);
        let valid = keys.iter().all(|(k, v)| k == "binary" && (v.is_null() || v.is_string()));
        prop_assert_eq!(got.is_ok(), valid, "{:?}", keys);
        if let Ok(r) = got {
            prop_assert_eq!(r.binary.as_deref(), keys.get("binary").and_then(|v| v.as_str()));
        }
    }

    #[test]
    fn arbitrary_bytes_never_make_an_upgrade_request_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = serde_json::from_slice::<candor_api::UpgradeRequest>(&body);
    }

    #[test]
    fn only_json_bodies_pass(
        length in proptest::option::of(prop_oneof![Just(0u64), 1u64..100, Just(MAX_BODY as u64 + 1), any::<u64>()]),
        chunked in any::<bool>(),
        kind in proptest::option::of(prop_oneof![
            Just("application/json".to_string()),
            Just("Application/JSON; charset=utf-8".to_string()),
            Just("text/plain".to_string()),
            Just("application/x-www-form-urlencoded".to_string()),
            Just("multipart/form-data; boundary=x".to_string()),
            Just("application/jsonx".to_string()),
            "[ -~]{0,30}",
        ]),
    ) {
        let mut h = HeaderMap::new();
        if let Some(n) = length {
            h.insert("content-length", HeaderValue::from(n));
        }
        if chunked {
            h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        }
        if let Some(k) = &kind {
            if let Ok(v) = HeaderValue::from_str(k) {
                h.insert("content-type", v);
            }
        }
        let has_body = chunked || length.unwrap_or(0) > 0;
        let json = h
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|k| k.split(';').next())
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"));
        let rule = body_rule(&h);
        if let Ok(b) = &rule {
            prop_assert_eq!(*b, has_body);
        }
        let got = rule.err().map(|e| e.status);
        let expected = if !has_body {
            None
        } else if length.is_some_and(|n| n > MAX_BODY as u64) {
            Some(413)
        } else if json {
            None
        } else {
            Some(415)
        };
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn the_host_header_names_the_dashboard_or_is_refused(host in host_header()) {
        let _ = split_host(&host);
        prop_assert_eq!(host_allowed(&host, 9631, &names()), expected_host(&host), "{}", host);
    }

    #[test]
    fn only_the_dashboards_own_origin_passes(
        scheme in prop::sample::select(vec!["http://", "https://", "HTTP://", "ftp://", "", "null"]),
        host in host_header(),
        other in host_header(),
        tail in prop::sample::select(vec!["", "/", ":1", "."]),
    ) {
        let origin = format!("{scheme}{other}{tail}");
        let got = origin_allowed(&origin, &host);
        let expected = ["http://", "https://"].iter().any(|s| {
            origin.to_ascii_lowercase() == format!("{s}{}", host.to_ascii_lowercase())
        });
        prop_assert_eq!(got, expected, "{} vs {}", origin, host);
        // The page's own origin always passes.
        let own = format!("http://{host}");
        prop_assert!(origin_allowed(&own, &host));
    }

    #[test]
    fn the_front_door_never_panics_and_lets_no_other_site_change_anything(
        m in method(),
        host in proptest::option::of(host_header()),
        origin in proptest::option::of(prop_oneof![
            Just(format!("http://{LISTEN}")),
            Just("http://127.0.0.1:8080".to_string()),
            Just("null".to_string()),
            "[ -~]{0,30}",
        ]),
        site in proptest::option::of(prop::sample::select(vec!["same-origin", "same-site", "cross-site", "none", "bogus"])),
        mode in proptest::option::of(prop::sample::select(vec!["navigate", "no-cors", "cors", "same-origin"])),
        auth in proptest::option::of(prop_oneof![
            Just(format!("Bearer {TOKEN}")),
            Just("Bearer nope".to_string()),
            Just(format!("Basic {TOKEN}")),
            "[ -~]{0,20}",
        ]),
        x_token in proptest::option::of(prop_oneof![Just(TOKEN.to_string()), "[ -~]{0,10}"]),
        cookie in any::<bool>(),
    ) {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, v: &Option<String>| {
            if let Some(v) = v.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put("host", &host);
        put("origin", &origin);
        put("sec-fetch-site", &site.map(String::from));
        put("sec-fetch-mode", &mode.map(String::from));
        put("authorization", &auth);
        put("x-candor-token", &x_token);
        if cookie {
            h.insert("cookie", HeaderValue::from_str(&format!("candor_token={TOKEN}")).unwrap());
        }
        let listen: SocketAddr = LISTEN.parse().unwrap();
        let door = front_door(&h, &m, listen, &names());
        let changes = m != Method::GET && m != Method::HEAD;
        let host_ok = h
            .get("host")
            .and_then(|v| v.to_str().ok())
            .is_some_and(expected_host);
        if !host_ok {
            prop_assert_eq!(door.as_ref().err().map(|e| e.0), Some(421));
        }
        let sent_site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if changes && sent_site.is_some_and(|s| s != "same-origin") {
            prop_assert!(door.is_err());
        }
        let sent_origin = h.get("origin").and_then(|v| v.to_str().ok());
        if let (Some(o), Some(hh)) = (sent_origin, h.get("host").and_then(|v| v.to_str().ok())) {
            if !origin_allowed(o, hh) {
                prop_assert!(door.is_err());
            }
        }
        // A change needs the right token in a header; the cookie never suffices.
        let header = change_needs_header(&h, &m, false, |t| t == TOKEN);
        let right_header = header_token(&h) == Some(TOKEN);
        if changes {
            prop_assert_eq!(header.is_ok(), right_header);
            if !right_header && cookie && header_token(&h).is_none() {
                prop_assert_eq!(header.err().map(|e| e.0), Some(403));
            }
        } else {
            prop_assert!(header.is_ok());
        }
    }
}
