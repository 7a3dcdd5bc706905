//! Running the daemon: `candor daemon` (in the foreground), `candor up` (the daemon plus
//! the live view) and `candor web` (the dashboard's URL from a running daemon).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use candor_daemon::paths;

use crate::client::{Client, ClientError};
use crate::cmd::{fail, print_json};
use crate::{top, FAILED, OK, USAGE};

/// The config file of daemon, up, check and export when -c does not name one.
pub const DEFAULT_CONFIG: &str = "candor.toml";

/// What `candor daemon` and `candor up` run the daemon with.
pub fn daemon_options(
    config: PathBuf,
    state_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    mode: paths::Mode,
    handover: candor_daemon::Handover,
) -> candor_daemon::Options {
    let on = |var: &str| std::env::var(var).map(|v| v != "off").unwrap_or(true);
    candor_daemon::Options {
        config,
        state_dir,
        socket,
        mode,
        use_cgroups: on("CANDOR_CGROUP"),
        use_clone3: on("CANDOR_CLONE3"),
        echo_events: true,
        handover,
        init: std::process::id() == 1,
    }
}

/// The exit code of a daemon that ended (a container's init: its main service's).
pub fn daemon_exit(r: Result<(), candor_daemon::DaemonError>) -> u8 {
    match r {
        // Ended by its main = true service: exit as it did (a container's init).
        Ok(()) => candor_daemon::main_exit_code().map_or(OK, |c| c.clamp(0, 255) as u8),
        Err(candor_daemon::DaemonError::Config(errors)) => {
            eprintln!("{errors}");
            eprintln!("candor: config is invalid; nothing was started");
            USAGE
        }
        Err(e @ candor_daemon::DaemonError::Paths(_)) => {
            eprintln!("candor: {e}");
            USAGE
        }
        Err(e) => {
            eprintln!("candor: {e}");
            FAILED
        }
    }
}

/// Whether `up` may draw its live view: stdin and stdout are a terminal and this process is in
/// its foreground process group. Started in the background (`cmd &`, or under `timeout`,
/// which runs its command in a process group of its own), touching the terminal's modes gets
/// the whole process stopped by SIGTTOU: `up` then prints plain lines instead.
pub fn owns_terminal() -> bool {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return false;
    }
    // SAFETY: tcgetpgrp and getpgrp only read.
    let (fg, me) = unsafe { (libc::tcgetpgrp(libc::STDIN_FILENO), libc::getpgrp()) };
    fg == me
}

/// A supervisor is never frozen by its terminal: SIGTTOU, SIGTTIN and SIGTSTP are ignored
/// (a write to the terminal from the background then just proceeds, a read fails with EIO),
/// so no thread of the daemon can be stopped by job control and every service with it.
/// Services get every signal back at its default before exec (the keeper's reset).
pub fn never_stopped_by_a_terminal() {
    for sig in [libc::SIGTTOU, libc::SIGTTIN, libc::SIGTSTP] {
        // SAFETY: setting a signal to ignored touches no memory of ours.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}

/// The daemon in the foreground plus, when `view`, a live view of the board on the terminal.
/// Once it listens, how to reach it from another terminal: on stderr (also before a view
/// takes the screen: it is there again when the view gives the screen back) and under the
/// view's header.
pub async fn up(opts: candor_daemon::Options, view_wanted: bool) -> u8 {
    let (config, mode) = (opts.config.clone(), opts.mode);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let ended = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut view = None;
    let daemon = tokio::spawn(candor_daemon::run(opts, move |started| {
        let _ = tx.send(started);
    }));
    if let Ok(started) = rx.await {
        eprintln!("candor: {}", how_to_reach(&started.socket, &config, mode));
        if view_wanted {
            let reach = format!(
                "from another terminal: export CANDOR_SOCKET={}",
                started.socket.display()
            );
            let client = Client::at(started.socket);
            // The view runs until q / ctrl-c, then asks the daemon to stop everything.
            view = Some(tokio::spawn(top::run(
                client,
                top::Mode::Up,
                Some(ended.clone()),
                Some(reach),
            )));
        }
    }
    let r = daemon.await;
    // Stopped some other way (`candor shutdown`, a signal): the view gives the terminal back.
    ended.notify_one();
    if let Some(v) = view {
        let _ = v.await;
    }
    match r {
        Ok(r) => daemon_exit(r),
        Err(e) => {
            eprintln!("candor: daemon task failed: {e}");
            FAILED
        }
    }
}

/// How a client in another terminal reaches the daemon listening on `socket`: always
/// `$CANDOR_SOCKET`; also `-c` with the config (and `--system` / `--user`) when that leads
/// there from any directory — else `--socket`.
fn how_to_reach(socket: &Path, config: &Path, mode: paths::Mode) -> String {
    let s = socket.display();
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    let flag = match mode {
        paths::Mode::Local => "",
        paths::Mode::System => " --system",
        paths::Mode::User => " --user",
    };
    let alternative = match config_leads_to(&config, mode).is_some_and(|at| at == socket) {
        true => format!("-c {}{flag}", config.display()),
        false => format!("--socket {s}"),
    };
    format!(
        "control socket {s} — from another terminal: export CANDOR_SOCKET={s} (or pass {alternative})"
    )
}

/// The socket a client given `-c config` and `mode` connects to from another terminal: not
/// this one's directory (a relative path leads nowhere then) nor its $CANDOR_SOCKET.
fn config_leads_to(config: &Path, mode: paths::Mode) -> Option<PathBuf> {
    let spec = candor_spec::load(config).ok()?;
    let env = paths::Env {
        cwd: None,
        candor_socket: None,
        ..paths::Env::current()
    };
    match paths::client(None, Some(&spec.daemon), mode, &env) {
        Ok(paths::ClientSocket::Named(at)) if at.is_absolute() => Some(at),
        _ => None,
    }
}

/// `candor web`: the dashboard's URL with its login token (the daemon opens its listener).
pub async fn web(client: &Client, json: bool, read_only: bool) -> u8 {
    let body = match read_only {
        true => serde_json::to_vec(&candor_api::WebRequest { read_only }).unwrap_or_default(),
        false => Vec::new(),
    };
    let answer = client
        .call_body("POST", "/v1/web", body.into())
        .await
        .and_then(|b| {
            serde_json::from_slice::<candor_api::WebInfo>(&b)
                .map_err(|e| ClientError::Other(format!("unexpected answer from the daemon: {e}")))
        });
    match answer {
        Ok(w) if json => print_json(&w),
        Ok(w) => {
            println!("{}", w.url);
            OK
        }
        Err(e) => fail(e, json),
    }
}
