//! The keeper answers a `Signal`: sent to the run it was meant for, or why nothing was sent —
//! so `candor kill` / `candor reload` never report a signal that did not go.

use std::sync::mpsc;
use std::time::Duration;

use candor_keeper::{start, ExitStatus, KeeperCommand, KeeperConfig, KeeperEvent, SpawnRequest};

fn signal(
    keeper: &candor_keeper::KeeperHandle,
    run_id: u64,
    sig: i32,
    all: bool,
) -> Result<(), String> {
    let (tx, rx) = mpsc::sync_channel(1);
    keeper
        .send(KeeperCommand::Signal {
            service: "svc".into(),
            run_id,
            signal: sig,
            all,
            answer: Some(tx),
        })
        .expect("taken");
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the keeper answers")
}

#[test]
fn a_signal_is_answered_sent_or_not_sent_with_the_reason() {
    let (events_tx, events) = mpsc::channel();
    let (keeper, _, _thread) = start(
        KeeperConfig {
            instance: format!("signal-answers-{}", std::process::id()),
            use_cgroups: false,
            use_clone3: true,
            reap_every: Duration::from_secs(1),
        },
        Box::new(move |ev| {
            let _ = events_tx.send(ev);
        }),
    )
    .expect("keeper");
    let req = SpawnRequest::new("svc", 1, vec!["/bin/sleep".into(), "100000".into()]);
    keeper
        .send(KeeperCommand::Spawn(Box::new(req)))
        .expect("taken");
    let next = |what: &str| {
        events
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no event: {what}"))
    };
    let pid = match next("spawned") {
        KeeperEvent::Spawned { pid, .. } => pid,
        other => panic!("{other:?}"),
    };
    // Another run's signal: not sent, and said so.
    let err = signal(&keeper, 7, libc::SIGUSR1, false).unwrap_err();
    assert!(
        err.contains("its run ended before the signal was sent"),
        "{err}"
    );
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // The live run's: sent (SIGTERM ends sleep).
    signal(&keeper, 1, libc::SIGTERM, false).expect("sent");
    match next("exited") {
        KeeperEvent::Exited { status, .. } => assert_eq!(status, ExitStatus::Signal(libc::SIGTERM)),
        other => panic!("{other:?}"),
    }
    // Once it has ended: nothing to send to.
    let err = signal(&keeper, 1, libc::SIGTERM, true).unwrap_err();
    assert!(err.contains("nothing was sent"), "{err}");
    let _ = keeper.send(KeeperCommand::Shutdown);
}
