//! An exec hook attempt: the command run through the keeper like an exec probe, as the
//! daemon's user with the daemon's environment plus `CANDOR_EVENT_*`, the event's JSON on its
//! stdin, killed at the hook's timeout. Exit 0 is sent.

use std::sync::Arc;
use std::time::Duration;

use candor_keeper::{KeeperHandle, ProbeEnd, RunAs};
use candor_spec::format_duration;

use crate::probe::ExecProbes;

/// How an exec hook reaches the keeper.
#[derive(Clone)]
pub struct Runner {
    pub keeper: KeeperHandle,
    pub exec: Arc<ExecProbes>,
}

impl Runner {
    pub async fn run(
        &self,
        argv: &[String],
        env: Vec<(String, String)>,
        stdin: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), String> {
        let name = argv.first().map_or("", String::as_str);
        let run = self.exec.run_with_input(
            &self.keeper,
            argv,
            env,
            None,
            RunAs::default(),
            timeout,
            Some(stdin),
        );
        // The keeper kills it at the timeout; a moment more for that report to come.
        let end = tokio::time::timeout(timeout + Duration::from_secs(1), run)
            .await
            .unwrap_or(ProbeEnd::TimedOut);
        match end {
            ProbeEnd::Exited(st) if st.success() => Ok(()),
            ProbeEnd::Exited(st) => Err(format!("{name} {}", st.describe())),
            ProbeEnd::TimedOut => Err(format!(
                "{name} timed out after {} (killed)",
                format_duration(timeout)
            )),
            ProbeEnd::CannotStart(e) => Err(e),
        }
    }
}
