//! `candor logs` and `candor events`: a list from the daemon, or a follow of its stream.

use std::io::Write;

use crate::cli::LogsArgs;
use crate::client::{encode, Client, ClientError};
use crate::cmd::{fail, print_json};
use crate::render::logs::{raw, short, use_colour, Output};
use crate::OK;

/// `candor logs`: one service's lines, or every service's interleaved by time.
pub async fn logs(client: &Client, a: LogsArgs) -> u8 {
    let LogsArgs {
        name,
        follow,
        lines,
        since,
        grep,
        stream,
        before,
        level,
        output,
        json,
    } = a;
    let default_n = match (follow, &since) {
        (true, _) => 10,
        (false, Some(_)) => 100_000,
        (false, None) => 100,
    };
    let n = lines.unwrap_or(default_n);
    let mut q = String::new();
    if follow {
        q += "&follow=true";
    }
    if let Some(s) = since {
        q += &format!("&since={}", encode(&s));
    }
    if let Some(g) = grep {
        q += &format!("&grep={}", encode(&g));
    }
    if let Some(s) = stream {
        q += &format!("&stream={}", encode(&s));
    }
    if let Some(l) = level {
        q += &format!("&level={}", encode(&l));
    }
    let base = match &name {
        Some(name) => format!("/v1/services/{}/logs", encode(name)),
        None => "/v1/logs".to_string(),
    };
    let path = format!("{base}?n={n}{q}");
    let coloured = !json && output == Output::Short && use_colour();
    let show = |l: &candor_api::LogEntry| {
        let mut out = std::io::stdout().lock();
        // A closed stdout ends the CLI by SIGPIPE (kept at its default), so errors are moot.
        let _ = match (json, output) {
            (true, _) | (false, Output::Json) => {
                writeln!(out, "{}", serde_json::to_string(l).unwrap_or_default())
            }
            // The service's bytes only: Candor's own marker lines are not among them.
            (false, Output::Raw) if l.stream == "candor" => Ok(()),
            (false, Output::Raw) => out.write_all(&raw(l)),
            // Without a name, lines of every service: show whose each is.
            (false, Output::Short) => writeln!(out, "{}", short(l, name.is_none(), coloured)),
        };
    };
    if follow {
        return list_or_follow(client, &path, follow, json, "log line", show).await;
    }
    match log_pages(client, &format!("{base}?{q}"), n, before).await {
        Ok(lines) if json => print_json(&lines),
        Ok(lines) => {
            lines.iter().for_each(show);
            OK
        }
        Err(e) => fail(e, json),
    }
}

/// `candor events`: state changes with their reasons.
pub async fn events(client: &Client, follow: bool, lines: Option<usize>, json: bool) -> u8 {
    let show = |e: &candor_api::Event| {
        if json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            println!("{} {} {}: {}", e.at, e.service, e.state, e.reason);
        }
    };
    let path = match follow {
        true => format!("/v1/events?follow=true&n={}", lines.unwrap_or(10)),
        false => format!("/v1/events?n={}", lines.unwrap_or(200)),
    };
    list_or_follow(client, &path, follow, json, "event", show).await
}

/// The items at `path`, each printed by `show` (with `--json`: the list as one JSON array).
/// Following: the daemon's history, then each new item as it streams it, until it goes away
/// (`show` prints one JSON object a line then).
async fn list_or_follow<T>(
    client: &Client,
    path: &str,
    follow: bool,
    json: bool,
    what: &str,
    show: impl Fn(&T),
) -> u8
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    if follow {
        let r = client
            .follow(path, |data| match serde_json::from_str::<T>(data) {
                Ok(item) => show(&item),
                Err(_) => eprintln!("candor: unreadable {what}: {data}"),
            })
            .await;
        return match r {
            Ok(()) => OK,
            Err(e) => fail(e, json),
        };
    }
    match client.json::<Vec<T>>("GET", path).await {
        Ok(items) if json => print_json(&items),
        Ok(items) => {
            items.iter().for_each(show);
            OK
        }
        Err(e) => fail(e, json),
    }
}

/// The last `n` log lines at `path` (a query string ending in its filters, each `&`-led),
/// older than `before` if given. The daemon bounds each answer's bytes and says where to page
/// back from when it had to leave older lines out; those pages are fetched until `n` lines
/// are here.
async fn log_pages(
    client: &Client,
    path: &str,
    n: usize,
    mut before: Option<i64>,
) -> Result<Vec<candor_api::LogEntry>, ClientError> {
    let mut lines: Vec<candor_api::LogEntry> = Vec::new();
    loop {
        let mut page_path = format!("{path}&n={}", n - lines.len());
        if let Some(id) = before {
            page_path += &format!("&before={id}");
        }
        let (body, headers) = client
            .call_head("GET", &page_path, Default::default())
            .await?;
        let mut page: Vec<candor_api::LogEntry> = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Other(format!("unexpected answer from the daemon: {e}")))?;
        let next = headers
            .get(candor_daemon::log_routes::MORE_BEFORE)
            .and_then(|v| v.to_str().ok()?.parse::<i64>().ok());
        page.append(&mut lines);
        lines = page;
        match next {
            Some(id) if lines.len() < n => before = Some(id),
            _ => return Ok(lines),
        }
    }
}
