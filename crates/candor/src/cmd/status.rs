//! `candor status` (the table, or one service's details) and `candor top` (the live view
//! in `top.rs`).

use std::io::IsTerminal;

use crate::client::{encode, Client};
use crate::cmd::{fail, print_json};
use crate::{render, top, FAILED, OK, USAGE};

/// `candor top`: the live view, on a terminal only.
pub async fn top(client: Client) -> u8 {
    if !std::io::stdout().is_terminal() {
        eprintln!("candor: top needs a terminal; `candor status` prints the table");
        return USAGE;
    }
    top::run(client, top::Mode::Top, None, None).await
}

/// `candor status`: the table with the daemon's header, or one service's details.
pub async fn status(client: &Client, name: Option<&str>, json: bool) -> u8 {
    match name {
        Some(n) => match client
            .json::<candor_api::ServiceStatus>("GET", &format!("/v1/services/{}", encode(n)))
            .await
        {
            Ok(s) if json => print_json(&s),
            Ok(s) => {
                print!("{}", render::details(&s));
                OK
            }
            Err(e) => fail(e, json),
        },
        None if json => match client.call("GET", "/v1/services?pretty=true").await {
            // Already as `print_json` would print it: passed through, not parsed again.
            Ok(body) => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                match out.write_all(&body).and_then(|()| out.flush()) {
                    Ok(()) => OK,
                    Err(_) => FAILED,
                }
            }
            Err(e) => fail(e, json),
        },
        None => {
            let (list, info) = tokio::join!(
                client.json::<Vec<candor_api::ServiceStatus>>("GET", "/v1/services"),
                client.json::<candor_api::DaemonInfo>("GET", "/v1/daemon"),
            );
            let list = match list {
                Ok(l) => l,
                Err(e) => return fail(e, json),
            };
            if let Ok(info) = info {
                println!("{}", render::header(&info));
            }
            print!("{}", render::causes(&list));
            print!("{}", render::table(&list));
            OK
        }
    }
}
