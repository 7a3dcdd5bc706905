//! `candor upgrade` (hand every service to a new binary and report the new daemon) and the
//! guard a daemon starts for its successor (`candor upgrade-guard`, hidden).

use std::path::PathBuf;
use std::time::Duration;

use crate::client::{Client, ClientError};
use crate::cmd::fail;
use crate::{FAILED, OK, USAGE};

/// How long `candor upgrade` waits for the new daemon to answer.
const UPGRADE_WAIT: Duration = Duration::from_secs(120);

/// `candor upgrade`: ask for the handover, then wait for a new incarnation to answer.
pub async fn upgrade(client: &Client, binary: Option<PathBuf>) -> u8 {
    let old = match client
        .json::<candor_api::DaemonInfo>("GET", "/v1/daemon")
        .await
    {
        Ok(info) => info,
        Err(e) => return fail(e, false),
    };
    let binary = match binary.map(std::path::absolute).transpose() {
        Ok(b) => b.map(|b| b.display().to_string()),
        Err(e) => {
            eprintln!("candor: bad --binary: {e}");
            return USAGE;
        }
    };
    let body = serde_json::to_vec(&candor_api::UpgradeRequest { binary }).unwrap_or_default();
    match client.call_body("POST", "/v1/upgrade", body.into()).await {
        Ok(_) => {}
        // The old daemon may exec its successor before its answer is out: the new one tells.
        Err(ClientError::Unreachable(_)) => {}
        Err(e) => return fail(e, false),
    }
    let deadline = tokio::time::Instant::now() + UPGRADE_WAIT;
    loop {
        // The socket stays bound and listening through the exec: a connection waits in its
        // backlog, and one cut by the exec is simply tried again.
        if let Some(new) = daemon_info_within(client, Duration::from_secs(1)).await {
            if new.incarnation != old.incarnation {
                return report_upgrade(&old, &new);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!(
                "candor: the daemon did not answer as a new incarnation within {}s; see its log",
                UPGRADE_WAIT.as_secs()
            );
            return FAILED;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The daemon's info, if it answers within `limit` (while a successor starts, a connection
/// waits in the socket's backlog until it accepts).
async fn daemon_info_within(client: &Client, limit: Duration) -> Option<candor_api::DaemonInfo> {
    tokio::time::timeout(limit, client.json("GET", "/v1/daemon"))
        .await
        .ok()?
        .ok()
}

/// How long a successor may take to answer before the guard gives up on it.
const GUARD_WAIT: Duration = Duration::from_secs(60);

/// What the guard holds for the old binary to take over with.
pub struct Handed {
    pub listen_fd: i32,
    pub from: String,
    pub args: Vec<std::ffi::OsString>,
    pub original: Option<candor_daemon::upgrade::Original>,
}

/// The guard of one handover (started by `upgrade::hand_over`, which told systemd, if it runs
/// under it, that this is its main pid now): waits for the successor `pid` to answer as a new
/// incarnation, then gives the main pid back with READY=1; if it exits first or never answers,
/// execs the old binary as the daemon in this process (the main pid then).
pub async fn upgrade_guard(client: &Client, pid: u32, old: &str, handed: Handed) -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    let alive = || candor_daemon::upgrade::running(pid);
    let deadline = tokio::time::Instant::now() + GUARD_WAIT;
    // `systemctl stop` signals the main pid (this one, meanwhile): the daemon is meant.
    let mut term = signal(SignalKind::terminate()).ok();
    candor_daemon::upgrade::guard_handles_sigterm();
    let why = loop {
        let stopped = async {
            match term.as_mut() {
                Some(t) => t.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            answer = daemon_info_within(client, Duration::from_millis(500)) => {
                if let Some(info) = answer {
                    if info.incarnation != old {
                        // The successor answers: systemd follows it again.
                        candor_daemon::upgrade::tell_systemd_before_going(&format!(
                            "MAINPID={}\nREADY=1\nSTATUS=upgraded (pid {})",
                            info.pid, info.pid
                        ));
                        return OK;
                    }
                }
            }
            _ = stopped => {
                candor_daemon::upgrade::tell_systemd_before_going(&format!("MAINPID={pid}"));
                candor_daemon::upgrade::terminate(pid);
                // A SIGTERM that reached the old image just before its exec was taken by its
                // handler and lost with it: sent again while the process lives (a daemon
                // already stopping takes it as the same stop), a second apart, for 10 s.
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if !alive() {
                        break;
                    }
                    candor_daemon::upgrade::terminate(pid);
                }
                return OK;
            }
        }
        if !alive() {
            break "the new binary exited before it answered".to_string();
        }
        if tokio::time::Instant::now() >= deadline {
            // The successor hangs instead of serving: it holds the state dir, so it must go.
            candor_daemon::upgrade::kill(pid);
            let gone_by = tokio::time::Instant::now() + Duration::from_secs(5);
            while alive() && tokio::time::Instant::now() < gone_by {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            break format!(
                "the new binary did not answer within {}s and was killed",
                GUARD_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("candor: upgrade failed: {why}; the old binary takes over again");
    let e = candor_daemon::upgrade::take_over(
        handed.listen_fd,
        &handed.from,
        &why,
        &handed.args,
        handed.original,
    );
    eprintln!("candor: cannot exec the old binary again: {e}; start `candor daemon` to adopt the services");
    FAILED
}

/// What the upgrade came to: the new daemon, or the old one back with why.
fn report_upgrade(old: &candor_api::DaemonInfo, new: &candor_api::DaemonInfo) -> u8 {
    let kept = format!(
        "{} of {} services taken over without a restart",
        new.adopted, new.services
    );
    if let Some(e) = &new.upgrade_error {
        eprintln!(
            "candor: upgrade failed: {e}; the old binary (version {}) took over again as pid {}; {kept}",
            new.version, new.pid
        );
        return FAILED;
    }
    println!(
        "upgraded: pid {} (version {}) -> pid {} (version {}); {kept}",
        old.pid, old.version, new.pid, new.version
    );
    OK
}
