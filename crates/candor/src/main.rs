//! `candor`: the daemon and its command-line client. A thin shell over the library crates:
//! the daemon comes from `candor-daemon`, every other command talks to it over its socket.
//! This file starts the runtime and dispatches each command to its group in `cmd/`.

mod cli;
mod client;
mod cmd;
mod export;
mod import;
mod render;
mod top;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use candor_daemon::paths;
use clap::Parser;
use cli::{Cli, Command};
use client::Client;
use cmd::{control, daemon, logs, status, upgrade};

/// Exit codes of the CLI contract.
const OK: u8 = 0;
const FAILED: u8 = 1;
const USAGE: u8 = 2;
const UNREACHABLE: u8 = 3;

fn main() -> ExitCode {
    // Before any thread exists: what a daemon exec'd by `candor upgrade` was handed.
    let handover = candor_daemon::Handover::take_from_env();
    let cli = Cli::parse();
    let serves = matches!(cli.command, Command::Daemon { .. } | Command::Up { .. });
    if serves {
        // A PID 1 successor guards itself until it answers (fallback.rs).
        candor_daemon::fallback::arm(&handover);
    }
    if !serves {
        // A client whose output is cut short (`candor logs | head`) ends quietly, as `cat`
        // would, instead of panicking on EPIPE. The daemon keeps SIGPIPE ignored.
        // SAFETY: setting a signal's disposition to the default, before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if serves {
        // glibc gives each thread that allocates its own arena, and each keeps its free pages:
        // at 1000 idle services that was 7.5 MiB of the daemon's 21 MiB. Two arenas for all
        // threads keep 1000 services under 18 MiB and cost ~7 % of the top ingest rate (one
        // arena cost 16 %). bench/results/memory.txt.
        #[cfg(target_env = "gnu")]
        // SAFETY: mallopt before any thread exists; it only sets an allocator parameter.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
    // The daemon gets two workers; a client command, one thread (no workers to start).
    let rt = if serves {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            candor_daemon::fallback::fall_back(&format!(
                "the new binary cannot start its async runtime: {e}"
            ));
            eprintln!("candor: cannot start the async runtime: {e}");
            return ExitCode::from(FAILED);
        }
    };
    let code = rt.block_on(run(cli, handover));
    rt.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

async fn run(cli: Cli, handover: candor_daemon::Handover) -> u8 {
    let mode = match (cli.system, cli.user) {
        (true, _) => paths::Mode::System,
        (_, true) => paths::Mode::User,
        (false, false) => paths::Mode::Local,
    };
    let config = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(daemon::DEFAULT_CONFIG));
    match cli.command {
        Command::Check => cmd::config::check(&config),
        Command::Daemon { state_dir, init } => {
            daemon::never_stopped_by_a_terminal();
            let mut opts = daemon::daemon_options(config, state_dir, cli.socket, mode, handover);
            opts.init |= init;
            daemon::daemon_exit(candor_daemon::run(opts, |_| {}).await)
        }
        Command::Up { state_dir } => {
            let view = daemon::owns_terminal();
            daemon::never_stopped_by_a_terminal();
            let mut opts = daemon::daemon_options(config, state_dir, cli.socket, mode, handover);
            // The live view is the output; `candor events` has the history.
            opts.echo_events = !view;
            daemon::up(opts, view).await
        }
        Command::Export { target, out, image } => {
            cmd::config::export(target, &config, out.as_deref(), &image)
        }
        Command::Import {
            file,
            format,
            out,
            force,
        } => cmd::import::import(&file, format, out.as_deref(), force),
        Command::Completions { shell } => cmd::config::completions(shell),
        Command::Man { out } => cmd::config::man_pages(&out),
        command => match Client::locate(cli.socket.as_deref(), cli.config.as_deref(), mode) {
            Ok(client) => talk(command, client, handover.original).await,
            Err(e) => cmd::fail(e, command.json()),
        },
    }
}

/// A command that talks to the daemon.
async fn talk(
    command: Command,
    client: Client,
    original: Option<candor_daemon::upgrade::Original>,
) -> u8 {
    match command {
        Command::Check
        | Command::Daemon { .. }
        | Command::Up { .. }
        | Command::Export { .. }
        | Command::Import { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => unreachable!("`run` carries out the commands without a daemon"),
        // The board.
        Command::Top => status::top(client).await,
        Command::Status { name, json } => status::status(&client, name.as_deref(), json).await,
        // Requests that change services.
        Command::Start(a) => control::action(&client, "start", a).await,
        Command::Stop(a) => control::action(&client, "stop", a).await,
        Command::Restart(a) => control::action(&client, "restart", a).await,
        Command::ResetFailed { force, json } => control::reset_failed(&client, force, json).await,
        Command::Reload {
            names,
            timeout,
            json,
            ..
        } if !names.is_empty() => control::reload_services(&client, names, timeout, json).await,
        Command::Kill {
            name,
            signal,
            all,
            json,
        } => control::kill(&client, name, signal, all, json).await,
        Command::Shutdown => control::shutdown(&client).await,
        // Replicated services.
        Command::Scale {
            name,
            replicas,
            json,
        } => control::scale(&client, &name, replicas, json).await,
        Command::Rollout { action } => cmd::rollout::rollout(&client, action).await,
        // Jobs.
        Command::Jobs { name, json } => cmd::jobs::jobs(&client, name.as_deref(), json).await,
        Command::Run {
            name,
            wait,
            timeout,
            json,
        } => cmd::jobs::run(&client, &name, wait, timeout, json).await,
        // Logs and events.
        Command::Logs(a) => logs::logs(&client, a).await,
        Command::Events {
            follow,
            lines,
            json,
        } => logs::events(&client, follow, lines, json).await,
        // The config.
        Command::Reload {
            plan: true, json, ..
        } => cmd::config::reload_plan(&client, json).await,
        Command::Reload { json, .. } => cmd::config::reload_config(&client, json).await,
        // The daemon itself.
        Command::Web { json, read_only } => daemon::web(&client, json, read_only).await,
        Command::Upgrade { binary } => upgrade::upgrade(&client, binary).await,
        Command::UpgradeGuard {
            pid,
            incarnation,
            listen_fd,
            from,
            daemon_args,
        } => {
            let handed = upgrade::Handed {
                listen_fd,
                from,
                args: daemon_args,
                original,
            };
            upgrade::upgrade_guard(&client, pid, &incarnation, handed).await
        }
    }
}
