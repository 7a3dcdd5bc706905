//! `candor`: the daemon and its command-line client. A thin shell over the library crates:
//! the daemon comes from `candor-daemon`, every other command talks to it over its socket.

mod client;
mod export;
mod render;
mod top;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use candor_daemon::paths;
use clap::{Parser, Subcommand};
use client::{encode, Client, ClientError};

/// Exit codes of the CLI contract.
const OK: u8 = 0;
const FAILED: u8 = 1;
const USAGE: u8 = 2;
const UNREACHABLE: u8 = 3;

#[derive(Parser)]
#[command(
    name = "candor",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CANDOR_COMMIT"), ")"),
    about = "A process supervisor whose status never lies.",
    after_help = WHERE_THE_DAEMON_IS
)]
struct Cli {
    /// The daemon's socket: where `daemon` and `up` listen, where every other command connects.
    /// Wins over everything else.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// The config file. daemon, up, check, export: the one to run or read (default
    /// candor.toml). Every other command: connect where a daemon started with it (and the same
    /// --system / --user) listens — its `[daemon] socket`, else its state dir's or mode's.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// A system service's paths: state in /var/lib/candor, socket /run/candor/candor.sock.
    /// --state-dir, --socket and the config's `[daemon]` paths win over these.
    #[arg(long, global = true, conflicts_with = "user")]
    system: bool,
    /// A user's service's paths (as systemctl --user): state in $XDG_STATE_HOME/candor (else
    /// ~/.local/state/candor), socket $XDG_RUNTIME_DIR/candor/candor.sock. --state-dir,
    /// --socket and the config's `[daemon]` paths win over these.
    #[arg(long, global = true)]
    user: bool,
    #[command(subcommand)]
    command: Command,
}

/// How every command finds the daemon (`candor --help`).
const WHERE_THE_DAEMON_IS: &str = "\
Where the daemon is:
  daemon and up keep their state in --state-dir, else the config's [daemon] state_dir, else
  (--system) /var/lib/candor, (--user) $XDG_STATE_HOME/candor or ~/.local/state/candor,
  (neither) $XDG_STATE_HOME/candor or ./.candor. They listen on --socket, else the config's
  [daemon] socket, else (--system) /run/candor/candor.sock, (--user)
  $XDG_RUNTIME_DIR/candor/candor.sock, (neither) $CANDOR_SOCKET or <state dir>/candor.sock.
  Every other command connects to --socket; else, given -c FILE, --system or --user, to the
  socket a daemon started with those would listen on; else to $CANDOR_SOCKET; else to the
  first that exists of ./.candor/candor.sock, $XDG_STATE_HOME/candor/candor.sock and, as
  root, /run/candor/candor.sock, as another user, $XDG_RUNTIME_DIR/candor/candor.sock.";

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportTarget {
    Systemd,
    Kubernetes,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground with a live status view.
    Up {
        /// Where to keep state (default: the config's [daemon] state_dir, else the mode's).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Run the daemon in the foreground (`--system` as a system service, `--user` as a
    /// user's; see `candor --help` for the paths each uses).
    Daemon {
        /// Where to keep state (default: the config's [daemon] state_dir, else the mode's).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Be a container's init (also when running as pid 1): reap every orphan at once, and
        /// exit with the `main = true` service's code when it ends.
        #[arg(long)]
        init: bool,
    },
    /// Validate a config; errors carry file:line:col. Exit 2 if invalid.
    Check,
    /// Print the dashboard's URL with its login token; the daemon opens its web listener
    /// (`[daemon] web.listen`, else 127.0.0.1:9631) if it is not open. The token is an
    /// operator's (it may start and stop services); --read-only: one that may only read.
    Web {
        #[arg(long)]
        json: bool,
        /// The read-only token's URL (made the first time it is asked for).
        #[arg(long)]
        read_only: bool,
    },
    /// Write a config for another supervisor: `systemd` — one <service>.service (and .socket)
    /// per service into --out DIR; `kubernetes` — a Deployment (a Job for restart = "never")
    /// per service, YAML on stdout or into --out FILE. What does not map is printed as a
    /// warning on stderr.
    Export {
        target: ExportTarget,
        /// systemd: the directory for the units (required); kubernetes: the YAML file
        /// (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// kubernetes: the image of every service (IMAGE) or of one (NAME=IMAGE); repeat for
        /// more. A service without one gets a placeholder under registry.invalid, and a
        /// warning.
        #[arg(long, value_name = "[NAME=]IMAGE")]
        image: Vec<String>,
    },
    /// Shell completions on stdout: `candor completions bash > /etc/bash_completion.d/candor`.
    Completions { shell: clap_complete::Shell },
    /// Man pages into DIR: candor.1 and candor-COMMAND.1 for each command.
    Man {
        #[arg(long)]
        out: PathBuf,
    },
    /// A live view in the terminal: services sorted by trouble, the selected one's reason,
    /// fds and logs, and keys to start, stop, restart, reset-failed (`?` for help).
    Top,
    /// Show services: a table, or one service's details.
    Status {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Start services.
    Start(ActionArgs),
    /// Stop services: the stop signal to the whole group, SIGKILL after stop.timeout.
    Stop(ActionArgs),
    /// Restart services.
    Restart(ActionArgs),
    /// Restart only failed services; list the healthy ones left alone.
    ResetFailed {
        /// Restart every service, healthy or not.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show a service's logs.
    Logs {
        /// One service; without it, every service's lines interleaved by time.
        name: Option<String>,
        /// Keep printing new lines as they come (one JSON object a line with --json).
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines (default 100; 10 with -f; all of them with --since).
        #[arg(short = 'n', long)]
        lines: Option<usize>,
        /// Only lines newer than this: a duration back (10m, 2h) or a UTC time
        /// (2026-11-23T18:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only lines matching this regular expression.
        #[arg(long)]
        grep: Option<String>,
        /// Only one stream: out or err.
        #[arg(long, value_parser = ["out", "err", "stdout", "stderr"])]
        stream: Option<String>,
        /// Only lines older than this line id (`--json` shows ids): page back through the
        /// stored lines.
        #[arg(long, conflicts_with = "follow")]
        before: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Show state changes with their reasons.
    Events {
        /// Keep printing new events as they happen (one JSON object a line with --json).
        #[arg(short, long)]
        follow: bool,
        /// How many of the latest events first (default 200; 10 with -f).
        #[arg(short = 'n', long)]
        lines: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Without NAME: re-read the config (an invalid one is rejected and nothing changes).
    /// With NAMEs: reload those services — their `reload_signal` (SIGHUP) to the main process,
    /// or their `reload` command; with ready = "notify", wait for RELOADING=1 then READY=1.
    Reload {
        names: Vec<String>,
        /// How long to wait for a notify service's READY=1 (default: its ready_timeout, else 30s).
        #[arg(long)]
        timeout: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Send a signal to a service's main process, or with --all to every process of its run.
    Kill {
        name: String,
        #[arg(short, long, default_value = "SIGTERM")]
        signal: String,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Stop services in reverse dependency order, then exit the daemon.
    Shutdown,
    /// Hand every service to a new candor binary without restarting any: the daemon checks
    /// it, execs it (same pid, same socket), and it adopts every run. Exit 0 once it answers.
    Upgrade {
        /// The new binary (default: the candor binary now at the daemon's own path).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Started by a daemon that execs its successor: if the successor exits or does not
    /// answer in time, exec this (old) binary as the daemon again.
    #[command(hide = true)]
    UpgradeGuard {
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        incarnation: String,
        #[arg(long)]
        listen_fd: i32,
        #[arg(long)]
        from: String,
        #[arg(last = true)]
        daemon_args: Vec<std::ffi::OsString>,
    },
}

impl Command {
    /// Whether its output (errors too) is JSON.
    fn json(&self) -> bool {
        match self {
            Command::Web { json, .. }
            | Command::Status { json, .. }
            | Command::ResetFailed { json, .. }
            | Command::Logs { json, .. }
            | Command::Events { json, .. }
            | Command::Reload { json, .. }
            | Command::Kill { json, .. } => *json,
            Command::Start(a) | Command::Stop(a) | Command::Restart(a) => a.json,
            _ => false,
        }
    }
}

#[derive(clap::Args)]
struct ActionArgs {
    #[arg(required = true)]
    names: Vec<String>,
    /// Wait until the service is running (start/restart) or stopped (stop).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits at most, e.g. 30s.
    #[arg(long)]
    timeout: Option<String>,
    #[arg(long)]
    json: bool,
}

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

/// The config file of daemon, up, check and export when -c does not name one.
const DEFAULT_CONFIG: &str = "candor.toml";

fn daemon_options(
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

async fn run(cli: Cli, handover: candor_daemon::Handover) -> u8 {
    let mode = match (cli.system, cli.user) {
        (true, _) => paths::Mode::System,
        (_, true) => paths::Mode::User,
        (false, false) => paths::Mode::Local,
    };
    let config = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match cli.command {
        Command::Check => check(&config),
        Command::Daemon { state_dir, init } => {
            never_stopped_by_a_terminal();
            let mut opts = daemon_options(config, state_dir, cli.socket, mode, handover);
            opts.init |= init;
            daemon_exit(candor_daemon::run(opts, |_| {}).await)
        }
        Command::Up { state_dir } => {
            let view = owns_terminal();
            never_stopped_by_a_terminal();
            let mut opts = daemon_options(config, state_dir, cli.socket, mode, handover);
            // The live view is the output; `candor events` has the history.
            opts.echo_events = !view;
            up(opts, view).await
        }
        Command::Export { target, out, image } => export(target, &config, out.as_deref(), &image),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "candor", &mut std::io::stdout());
            OK
        }
        Command::Man { out } => man_pages(&out),
        command => match Client::locate(cli.socket.as_deref(), cli.config.as_deref(), mode) {
            Ok(client) => talk(command, client, handover.original).await,
            Err(e) => fail(e, command.json()),
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
        | Command::Completions { .. }
        | Command::Man { .. } => unreachable!("`run` carries out the commands without a daemon"),
        Command::Web { json, read_only } => {
            let body = match read_only {
                true => {
                    serde_json::to_vec(&candor_api::WebRequest { read_only }).unwrap_or_default()
                }
                false => Vec::new(),
            };
            let answer = client
                .call_body("POST", "/v1/web", body.into())
                .await
                .and_then(|b| {
                    serde_json::from_slice::<candor_api::WebInfo>(&b).map_err(|e| {
                        ClientError::Other(format!("unexpected answer from the daemon: {e}"))
                    })
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
        Command::Top => {
            if !std::io::stdout().is_terminal() {
                eprintln!("candor: top needs a terminal; `candor status` prints the table");
                return USAGE;
            }
            top::run(client, top::Mode::Top, None).await
        }
        Command::Status { name, json } => status(&client, name.as_deref(), json).await,
        Command::Start(a) => action(&client, "start", a).await,
        Command::Stop(a) => action(&client, "stop", a).await,
        Command::Restart(a) => action(&client, "restart", a).await,
        Command::ResetFailed { force, json } => reset_failed(&client, force, json).await,
        Command::Logs {
            name,
            follow,
            lines,
            since,
            grep,
            stream,
            before,
            json,
        } => {
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
            let base = match &name {
                Some(name) => format!("/v1/services/{}/logs", encode(name)),
                None => "/v1/logs".to_string(),
            };
            let path = format!("{base}?n={n}{q}");
            // Without a name, lines of every service: show whose each is.
            let show = |l: &candor_api::LogEntry| {
                if json {
                    println!("{}", serde_json::to_string(l).unwrap_or_default());
                } else if name.is_none() {
                    println!("{} {:<12} {} {}", l.at, l.service, l.stream, l.line);
                } else {
                    println!("{} {} {}", l.at, l.stream, l.line);
                }
            };
            if follow {
                return list_or_follow(&client, &path, follow, json, "log line", show).await;
            }
            match log_pages(&client, &format!("{base}?{q}"), n, before).await {
                Ok(lines) if json => print_json(&lines),
                Ok(lines) => {
                    lines.iter().for_each(show);
                    OK
                }
                Err(e) => fail(e, json),
            }
        }
        Command::Events {
            follow,
            lines,
            json,
        } => {
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
            list_or_follow(&client, &path, follow, json, "event", show).await
        }
        Command::Kill {
            name,
            signal,
            all,
            json,
        } => {
            let path = format!(
                "/v1/services/{}/kill?signal={}{}",
                encode(&name),
                encode(&signal),
                if all { "&all=true" } else { "" }
            );
            match client
                .json::<candor_api::SignalOutcome>("POST", &path)
                .await
            {
                Ok(o) if json => print_json(&o),
                Ok(o) => {
                    println!("{}", o.outcome);
                    OK
                }
                Err(e) => fail(e, json),
            }
        }
        Command::Reload {
            names,
            timeout,
            json,
        } if !names.is_empty() => {
            let mut code = OK;
            let mut all = Vec::new();
            for name in names {
                let mut path = format!("/v1/services/{}/reload", encode(&name));
                if let Some(t) = &timeout {
                    path += &format!("?timeout={}", encode(t));
                }
                match client
                    .json::<candor_api::SignalOutcome>("POST", &path)
                    .await
                {
                    Ok(o) if json => all.push(o),
                    Ok(o) => println!("{}", o.outcome),
                    Err(e) => code = code.max(fail(e, json)),
                }
            }
            if json && code == OK {
                return print_json(&all);
            }
            code
        }
        Command::Reload { json, .. } => match client
            .json::<candor_api::ReloadOutcome>("POST", "/v1/reload")
            .await
        {
            Ok(out) if json => print_json(&out),
            Ok(out) => {
                let list = |v: &Vec<String>| {
                    if v.is_empty() {
                        "-".to_string()
                    } else {
                        v.join(", ")
                    }
                };
                println!(
                    "reloaded: added {}; removed {}; changed {}; unchanged {}",
                    list(&out.added),
                    list(&out.removed),
                    list(&out.changed),
                    list(&out.unchanged)
                );
                for n in out.notes {
                    println!("note: {n}");
                }
                OK
            }
            Err(e) => fail(e, json),
        },
        Command::Shutdown => shutdown(&client).await,
        Command::Upgrade { binary } => upgrade(&client, binary).await,
        Command::UpgradeGuard {
            pid,
            incarnation,
            listen_fd,
            from,
            daemon_args,
        } => {
            let handed = Handed {
                listen_fd,
                from,
                args: daemon_args,
                original,
            };
            upgrade_guard(&client, pid, &incarnation, handed).await
        }
    }
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

fn print_json<T: serde::Serialize>(v: &T) -> u8 {
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
fn fail(e: ClientError, json: bool) -> u8 {
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

fn check(config: &std::path::Path) -> u8 {
    match candor_spec::load(config) {
        Ok(spec) => {
            let names: Vec<&str> = spec.services.keys().map(|n| n.as_str()).collect();
            println!(
                "{}: ok, {} services: {}",
                config.display(),
                names.len(),
                names.join(", ")
            );
            OK
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: invalid ({} error{})",
                config.display(),
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            USAGE
        }
    }
}

/// `candor export systemd|kubernetes`: usage errors first, then the config, then the files.
fn export(
    target: ExportTarget,
    config: &std::path::Path,
    out: Option<&std::path::Path>,
    image: &[String],
) -> u8 {
    let usage = match (target, out) {
        (ExportTarget::Systemd, None) => {
            Some("export systemd needs --out DIR: it writes one file per unit")
        }
        (ExportTarget::Systemd, Some(_)) if !image.is_empty() => {
            Some("--image is for export kubernetes (systemd runs the command itself)")
        }
        _ => None,
    };
    if let Some(msg) = usage {
        eprintln!("candor: {msg}");
        return USAGE;
    }
    let spec = match candor_spec::load(config) {
        Ok(spec) => spec,
        Err(errors) => {
            eprintln!("{errors}");
            return USAGE;
        }
    };
    match (target, out) {
        (ExportTarget::Systemd, Some(dir)) => match export::systemd::systemd(&spec, dir) {
            Ok(n) => {
                println!("{n} units in {}", dir.display());
                OK
            }
            Err(e) => {
                eprintln!("candor: {e}");
                FAILED
            }
        },
        (ExportTarget::Systemd, None) => USAGE,
        (ExportTarget::Kubernetes, out) => {
            let images = match export::kubernetes::Images::parse(image, &spec) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("candor: {e}");
                    return USAGE;
                }
            };
            match export::kubernetes::write(&spec, &images, out) {
                Ok(n) => {
                    if let Some(file) = out {
                        println!("{n} objects in {}", file.display());
                    }
                    OK
                }
                Err(e) => {
                    eprintln!("candor: {e}");
                    FAILED
                }
            }
        }
    }
}

fn daemon_exit(r: Result<(), candor_daemon::DaemonError>) -> u8 {
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

async fn status(client: &Client, name: Option<&str>, json: bool) -> u8 {
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

async fn action(client: &Client, verb: &str, a: ActionArgs) -> u8 {
    let mut code = OK;
    for name in &a.names {
        let mut q = String::new();
        if a.wait {
            q += "?wait=true";
            if let Some(t) = &a.timeout {
                q += &format!("&timeout={}", encode(t));
            }
        }
        let path = format!("/v1/services/{}/{verb}{q}", encode(name));
        match client
            .json::<candor_api::ServiceStatus>("POST", &path)
            .await
        {
            Ok(s) if a.json => {
                print_json(&s);
            }
            Ok(s) => println!("{}: {} ({})", s.name, s.state, s.reason),
            Err(e) => code = code.max(fail(e, a.json)),
        }
    }
    code
}

async fn reset_failed(client: &Client, force: bool, json: bool) -> u8 {
    let path = if force {
        "/v1/reset-failed?force=true"
    } else {
        "/v1/reset-failed"
    };
    match client.json::<candor_api::ResetFailed>("POST", path).await {
        Ok(r) if json => print_json(&r),
        Ok(r) => {
            let list = |v: &Vec<String>| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            println!("restarted: {}", list(&r.restarted));
            println!("left alone: {}", list(&r.left_alone));
            OK
        }
        Err(e) => fail(e, json),
    }
}

async fn shutdown(client: &Client) -> u8 {
    match client.json::<candor_api::Ack>("POST", "/v1/shutdown").await {
        Ok(ack) => eprintln!("candor: {}", ack.message),
        Err(e) => return fail(e, false),
    }
    // Wait for the daemon to finish: it answers until every service is down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while tokio::time::Instant::now() < deadline {
        if let Err(ClientError::Unreachable(_)) = client.call("GET", "/v1/daemon").await {
            eprintln!("candor: daemon stopped");
            return OK;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("candor: the daemon is still answering after 10 minutes");
    FAILED
}

/// How long `candor upgrade` waits for the new daemon to answer.
const UPGRADE_WAIT: Duration = Duration::from_secs(120);

async fn upgrade(client: &Client, binary: Option<PathBuf>) -> u8 {
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
struct Handed {
    listen_fd: i32,
    from: String,
    args: Vec<std::ffi::OsString>,
    original: Option<candor_daemon::upgrade::Original>,
}

/// The guard of one handover (started by `upgrade::hand_over`, which told systemd, if it runs
/// under it, that this is its main pid now): waits for the successor `pid` to answer as a new
/// incarnation, then gives the main pid back with READY=1; if it exits first or never answers,
/// execs the old binary as the daemon in this process (the main pid then).
async fn upgrade_guard(client: &Client, pid: u32, old: &str, handed: Handed) -> u8 {
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

/// `candor man --out DIR`: candor.1, and candor-COMMAND.1 for each visible command.
fn man_pages(dir: &std::path::Path) -> u8 {
    use clap::CommandFactory;
    let write = |cmd: clap::Command, name: &str| -> std::io::Result<()> {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), page)
    };
    let top = Cli::command();
    let mut written = 0;
    let result = std::fs::create_dir_all(dir).and_then(|()| {
        write(top.clone(), "candor")?;
        written += 1;
        for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
            // clap names are &'static str; this process writes the pages and ends.
            let name: &'static str = format!("candor-{}", sub.get_name()).leak();
            write(sub.clone().name(name), name)?;
            written += 1;
        }
        Ok(())
    });
    match result {
        Ok(()) => {
            println!("{written} man pages in {}", dir.display());
            OK
        }
        Err(e) => {
            eprintln!("candor: writing man pages to {}: {e}", dir.display());
            FAILED
        }
    }
}

/// Whether `up` may draw its live view: stdin and stdout are a terminal and this process is in
/// its foreground process group. Started in the background (`cmd &`, or under `timeout`,
/// which runs its command in a process group of its own), touching the terminal's modes gets
/// the whole process stopped by SIGTTOU: `up` then prints plain lines instead.
fn owns_terminal() -> bool {
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
fn never_stopped_by_a_terminal() {
    for sig in [libc::SIGTTOU, libc::SIGTTIN, libc::SIGTSTP] {
        // SAFETY: setting a signal to ignored touches no memory of ours.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}

/// The daemon in the foreground plus, when `view`, a live view of the board on the terminal.
async fn up(opts: candor_daemon::Options, view_wanted: bool) -> u8 {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let ended = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut view = None;
    let daemon = tokio::spawn(candor_daemon::run(opts, move |started| {
        let _ = tx.send(started);
    }));
    if let Ok(started) = rx.await {
        if view_wanted {
            let client = Client::at(started.socket);
            // The view runs until q / ctrl-c, then asks the daemon to stop everything.
            view = Some(tokio::spawn(top::run(
                client,
                top::Mode::Up,
                Some(ended.clone()),
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
