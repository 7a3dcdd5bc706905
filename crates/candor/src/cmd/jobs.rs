//! `candor jobs [NAME]` (oneshots and scheduled services: the table, or one job with its
//! history) and `candor run NAME [--wait]` (a oneshot's run now; with --wait the exit code
//! says how it ended: 0 done, 1 failed, 4 skipped (3 is "no daemon answers")).

use crate::client::{encode, Client};
use crate::cmd::{fail, print_json};
use crate::render::jobs::{self, Clock};
use crate::{FAILED, OK};

/// `candor run --wait`'s exit code for a run its condition skipped.
pub const SKIPPED: u8 = 4;

/// `candor jobs [NAME] [--json]`.
pub async fn jobs(client: &Client, name: Option<&str>, json: bool) -> u8 {
    match name {
        Some(n) => {
            let path = format!("/v1/jobs/{}", encode(n));
            match client.json::<candor_api::Job>("GET", &path).await {
                Ok(j) if json => print_json(&j),
                Ok(j) => {
                    print!("{}", Clock::system(|c| jobs::details(&j, c)));
                    OK
                }
                Err(e) => fail(e, json),
            }
        }
        None => match client.json::<candor_api::Jobs>("GET", "/v1/jobs").await {
            Ok(all) if json => print_json(&all),
            Ok(all) => {
                print!("{}", Clock::system(|c| jobs::table(&all.jobs, c)));
                OK
            }
            Err(e) => fail(e, json),
        },
    }
}

/// The exit code of `candor run --wait` for a run's result.
pub fn exit_code(result: &str) -> u8 {
    match result {
        "done" => OK,
        "skipped" => SKIPPED,
        _ => FAILED,
    }
}

/// `candor run NAME [--wait [--timeout T]] [--json]`.
pub async fn run(
    client: &Client,
    name: &str,
    wait: bool,
    timeout: Option<String>,
    json: bool,
) -> u8 {
    let mut path = format!("/v1/services/{}/run", encode(name));
    if !wait {
        return match client.json::<candor_api::Ack>("POST", &path).await {
            Ok(ack) if json => print_json(&ack),
            Ok(ack) => {
                println!("{}", ack.message);
                OK
            }
            Err(e) => fail(e, json),
        };
    }
    path += "?wait=true";
    if let Some(t) = &timeout {
        path += &format!("&timeout={}", encode(t));
    }
    match client.json::<candor_api::JobRun>("POST", &path).await {
        Ok(r) => {
            if json {
                print_json(&r);
            } else {
                println!("{}", Clock::system(|c| jobs::run_line(name, &r, c)));
            }
            exit_code(&r.result)
        }
        Err(e) => fail(e, json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waited_run_exits_0_done_1_failed_4_skipped() {
        assert_eq!(exit_code("done"), 0);
        assert_eq!(exit_code("failed"), 1);
        assert_eq!(exit_code("skipped"), 4);
        assert_eq!(
            exit_code("something new"),
            1,
            "anything else is not a success"
        );
    }
}
