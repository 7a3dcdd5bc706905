//! What each command does, one module per group of commands; `main.rs` dispatches to them.
//! Also what every group shares: printing JSON and reporting a client error with the exit
//! code of the CLI contract.
//!
//! - `status`: status and top (reading the board).
//! - `control`: start, stop, restart, reset-failed, reload NAME, kill, shutdown — requests
//!   that change services (`scale NAME N` and `restart --strategy` belong here too).
//! - `logs`: logs and events.
//! - `config`: check, reload of the config (and a `--plan` of it), export, completions, man.
//! - `daemon`: daemon, up and web; `upgrade`: upgrade and its guard.
//! - `jobs`: jobs and run (oneshots and schedules).
//! - `import`: a Candor config from another supervisor's (no daemon).
//!
//! A new group (e.g. `rollout status|undo|resume NAME`) gets a module of its own here, its
//! variant in `cli::Command` and one arm in `main::talk`.

pub mod config;
pub mod control;
pub mod daemon;
pub mod import;
pub mod jobs;
pub mod logs;
pub mod rollout;
pub mod status;
pub mod upgrade;

use crate::client::ClientError;
use crate::{FAILED, OK, UNREACHABLE, USAGE};

/// Print `v` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> u8 {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            OK
        }
        Err(e) => {
            eprintln!("candor: cannot print JSON: {e}");
            FAILED
        }
    }
}

/// Report a client error; returns the exit code of the contract.
pub fn fail(e: ClientError, json: bool) -> u8 {
    let (code, msg, details) = match e {
        ClientError::Unreachable(m) => (UNREACHABLE, m, Vec::new()),
        ClientError::Api { status, body } => {
            let code = match status {
                400 | 404 | 405 | 422 => USAGE,
                _ => FAILED,
            };
            (code, body.error, body.details)
        }
        ClientError::Usage { error, details } => (USAGE, error, details),
        ClientError::Other(m) => (FAILED, m, Vec::new()),
    };
    if json {
        let body = candor_api::ErrorBody {
            error: msg,
            details,
            status: None,
        };
        println!("{}", serde_json::to_string(&body).unwrap_or_default());
    } else {
        eprintln!("candor: {msg}");
        for d in details {
            eprintln!("  {d}");
        }
    }
    code
}
