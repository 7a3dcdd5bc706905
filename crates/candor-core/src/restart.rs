//! What to do when a run ends on its own (not because we stopped it).

use std::time::Duration;

use candor_spec::{RestartPolicy, ServiceSpec};

use crate::{backoff, ExitStatus};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterExit {
    /// Start again after `delay`; `quick_exits` is the new streak for backoff.
    Restart { delay: Duration, quick_exits: u32 },
    /// A one-shot that finished successfully and is not restarted.
    Completed,
    /// Stay down; needs attention. The reason is a sentence.
    GiveUp { reason: String },
}

/// Decide per the restart policy, `retries` and backoff. `uptime` is how long the run lasted;
/// `how` says in words how it ended (the caller may know more than the status, e.g. an OOM
/// kill), asked only for the give-up sentence. `failures`: failed runs in a row before this
/// one (a oneshot's for its trigger, a long-running service's quick exits), against `retries`.
pub fn after_exit(
    spec: &ServiceSpec,
    status: ExitStatus,
    how: impl FnOnce() -> String,
    uptime: Duration,
    quick_exits: u32,
    failures: u32,
) -> AfterExit {
    let restart = match spec.restart {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !status.success(),
        RestartPolicy::Never => false,
    };
    if let Some(retries) = spec
        .retries
        .filter(|r| restart && !status.success() && failures >= *r)
    {
        return AfterExit::GiveUp {
            reason: format!(
                "{}: {} failed runs in a row (retries = {retries}); fix the cause, then `candor {} {}`",
                how(),
                failures + 1,
                if spec.kind == candor_spec::ServiceKind::Oneshot { "run" } else { "start" },
                spec.name
            ),
        };
    }
    if restart {
        let (delay, quick_exits) = backoff::after_exit(&spec.backoff, quick_exits, uptime);
        return AfterExit::Restart { delay, quick_exits };
    }
    if status.success() {
        AfterExit::Completed
    } else {
        AfterExit::GiveUp {
            reason: format!(
                "{} and restart = \"{}\"; fix the cause, then `candor start {}`",
                how(),
                spec.restart.as_str(),
                spec.name
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_spec::ServiceSpec;

    fn svc(policy: RestartPolicy) -> ServiceSpec {
        let mut s = ServiceSpec::with_command("api", &["/bin/true"]);
        s.restart = policy;
        s
    }

    #[test]
    fn policy_table() {
        use AfterExit::*;
        let quick = Duration::from_millis(10);
        let cases = [
            (RestartPolicy::Always, ExitStatus::Code(0), true),
            (RestartPolicy::Always, ExitStatus::Code(3), true),
            (RestartPolicy::OnFailure, ExitStatus::Code(3), true),
            (RestartPolicy::OnFailure, ExitStatus::Signal(9), true),
            (RestartPolicy::OnFailure, ExitStatus::Code(0), false),
            (RestartPolicy::Never, ExitStatus::Code(3), false),
            (RestartPolicy::Never, ExitStatus::Code(0), false),
        ];
        for (policy, status, restarts) in cases {
            let d = after_exit(&svc(policy), status, || status.describe(), quick, 0, 0);
            assert_eq!(
                matches!(d, Restart { .. }),
                restarts,
                "{policy:?} {status:?} -> {d:?}"
            );
        }
        assert_eq!(
            after_exit(
                &svc(RestartPolicy::OnFailure),
                ExitStatus::Code(0),
                || ExitStatus::Code(0).describe(),
                quick,
                0,
                0
            ),
            Completed
        );
        match after_exit(
            &svc(RestartPolicy::Never),
            ExitStatus::Code(3),
            || ExitStatus::Code(3).describe(),
            quick,
            0,
            0,
        ) {
            GiveUp { reason } => assert!(
                reason.starts_with("exited with code 3 and restart = \"never\""),
                "{reason}"
            ),
            other => panic!("expected GiveUp, got {other:?}"),
        }
    }

    #[test]
    fn retries_limit_failed_runs_in_a_row() {
        let mut s = svc(RestartPolicy::OnFailure);
        s.retries = Some(2);
        let fail = ExitStatus::Code(1);
        let quick = Duration::from_millis(5);
        for failures in 0..2 {
            let d = after_exit(&s, fail, || fail.describe(), quick, failures, failures);
            assert!(matches!(d, AfterExit::Restart { .. }), "{failures}: {d:?}");
        }
        match after_exit(&s, fail, || fail.describe(), quick, 2, 2) {
            AfterExit::GiveUp { reason } => assert!(
                reason.starts_with("exited with code 1: 3 failed runs in a row (retries = 2)"),
                "{reason}"
            ),
            other => panic!("expected GiveUp, got {other:?}"),
        }
        // A success is never counted against retries.
        let ok = ExitStatus::Code(0);
        assert_eq!(
            after_exit(&s, ok, || ok.describe(), quick, 9, 9),
            AfterExit::Completed
        );
    }

    #[test]
    fn first_quick_exit_waits_initial() {
        let d = after_exit(
            &svc(RestartPolicy::Always),
            ExitStatus::Code(1),
            || ExitStatus::Code(1).describe(),
            Duration::from_millis(5),
            0,
            0,
        );
        assert_eq!(
            d,
            AfterExit::Restart {
                delay: Duration::from_millis(100),
                quick_exits: 1
            }
        );
    }
}
