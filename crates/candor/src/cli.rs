//! The command line: clap's `Cli` and `Command` (every command and its flags), and the
//! `--help` text on where the daemon is. What each command does is in `cmd/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "candor",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CANDOR_COMMIT"), ")"),
    about = "A process supervisor whose status never lies.",
    after_help = WHERE_THE_DAEMON_IS
)]
pub struct Cli {
    /// The daemon's socket: where `daemon` and `up` listen, where every other command connects.
    /// Wins over everything else.
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// The config file. daemon, up, check, export: the one to run or read (default
    /// candor.toml). Every other command: connect where a daemon started with it (and the same
    /// --system / --user) listens — its `[daemon] socket`, else its state dir's or mode's.
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
    /// A system service's paths: state in /var/lib/candor, socket /run/candor/candor.sock.
    /// --state-dir, --socket and the config's `[daemon]` paths win over these.
    #[arg(long, global = true, conflicts_with = "user")]
    pub system: bool,
    /// A user's service's paths (as systemctl --user): state in $XDG_STATE_HOME/candor (else
    /// ~/.local/state/candor), socket $XDG_RUNTIME_DIR/candor/candor.sock. --state-dir,
    /// --socket and the config's `[daemon]` paths win over these.
    #[arg(long, global = true)]
    pub user: bool,
    #[command(subcommand)]
    pub command: Command,
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
pub enum ExportTarget {
    Systemd,
    Kubernetes,
}

// Each command, in `candor --help`'s order. A new one goes beside its group and is carried
// out by that group's module in `cmd/`: `scale NAME N` and `restart --strategy` beside
// start / stop / restart (`cmd/control.rs`), `reload --plan` on `Reload` (`cmd/config.rs`),
// `rollout status|undo|resume` as a nested subcommand with a module of its own.
#[derive(Subcommand)]
pub enum Command {
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
    /// Write a Candor config from another supervisor's: a Procfile (+ .env), supervisord.conf,
    /// a PM2 ecosystem file, process-compose.yaml, compose.yaml or a systemd .service unit.
    /// The config goes to stdout (or --out FILE) and passes `candor check`; what does not map
    /// is a `warning: FILE:LINE: ...` on stderr. Exit 0 with warnings.
    Import {
        /// The file to read; its format from its name, else its content (or --format).
        file: PathBuf,
        /// The file's format, when its name and content do not tell it.
        #[arg(long, value_enum)]
        format: Option<crate::import::Format>,
        /// Write the config into this file (refused if it exists, unless --force).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite --out's file if it exists.
        #[arg(long, requires = "out")]
        force: bool,
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
    Logs(LogsArgs),
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
        /// Say what a reload would do to each service, and why, and change nothing.
        #[arg(long, conflicts_with = "names")]
        plan: bool,
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
    /// Change how many instances a replicated service runs, live: new ones start, the highest
    /// go first. A reload sets the config's `replicas` again (the config wins).
    Scale {
        name: String,
        replicas: u32,
        #[arg(long)]
        json: bool,
    },
    /// A replicated service's rollout: where it is, back to the config before, or go on after
    /// a halt.
    Rollout {
        #[command(subcommand)]
        action: RolloutCommand,
    },
    /// Jobs (oneshots and scheduled services): a table of their state, schedule, next run,
    /// last result and counts; with NAME, that job and its last 20 runs (trigger, start,
    /// duration, result, reason, log ids).
    Jobs {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run a oneshot now. Without --wait: "NAME: started (run N)". With --wait: the run's
    /// result once it ends (with `retries`, once its retries are over); exit 0 if done, 1 if
    /// failed, 4 if its condition skipped it (3: no daemon answers).
    Run {
        name: String,
        /// Wait for the run to end; the exit code says how it ended.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits at most, e.g. 10m (default: the job's timeout and a minute
        /// more, else a day).
        #[arg(long, requires = "wait")]
        timeout: Option<String>,
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
    pub fn json(&self) -> bool {
        match self {
            Command::Web { json, .. }
            | Command::Status { json, .. }
            | Command::ResetFailed { json, .. }
            | Command::Events { json, .. }
            | Command::Reload { json, .. }
            | Command::Kill { json, .. }
            | Command::Scale { json, .. }
            | Command::Jobs { json, .. }
            | Command::Run { json, .. } => *json,
            Command::Rollout { action } => action.json(),
            Command::Start(a) | Command::Stop(a) | Command::Restart(a) => a.json,
            Command::Logs(a) => a.json,
            _ => false,
        }
    }
}

#[derive(Subcommand)]
pub enum RolloutCommand {
    /// The rollout under way or halted: instance by instance, old and new generation.
    Status {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Roll back to the config before the last change (with the service's strategy).
    Undo {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Go on with a halted rollout (the instance it halted at is tried again).
    Resume {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

impl RolloutCommand {
    pub fn json(&self) -> bool {
        match self {
            RolloutCommand::Status { json, .. }
            | RolloutCommand::Undo { json, .. }
            | RolloutCommand::Resume { json, .. } => *json,
        }
    }
}

#[derive(clap::Args)]
pub struct ActionArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Wait until the service is running (start/restart) or stopped (stop).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits at most, e.g. 30s.
    #[arg(long)]
    pub timeout: Option<String>,
    /// restart only, of a replicated service: this update strategy once (rolling, overlap or
    /// stop-first) instead of its own.
    #[arg(long)]
    pub strategy: Option<String>,
    #[arg(long)]
    pub json: bool,
}

// `candor logs`' filters (no doc comment: clap would take it for the command's about).
#[derive(clap::Args)]
pub struct LogsArgs {
    /// One service; without it, every service's lines interleaved by time.
    pub name: Option<String>,
    /// Keep printing new lines as they come (one JSON object a line with --json).
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines (default 100; 10 with -f; all of them with --since).
    #[arg(short = 'n', long)]
    pub lines: Option<usize>,
    /// Only lines newer than this: a duration back (10m, 2h) or a UTC time
    /// (2026-11-23T18:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Only lines matching this regular expression.
    #[arg(long)]
    pub grep: Option<String>,
    /// Only one stream: out or err.
    #[arg(long, value_parser = ["out", "err", "stdout", "stderr"])]
    pub stream: Option<String>,
    /// Only lines older than this line id (`--json` shows ids): page back through the
    /// stored lines.
    #[arg(long, conflicts_with = "follow")]
    pub before: Option<i64>,
    /// Only lines at this level or above: trace, debug, info, notice, warn, error, fatal. A
    /// JSON or logfmt line's own level counts; a plain line's is its stream's (stderr warn,
    /// stdout info).
    #[arg(long, value_parser = parse_level)]
    pub level: Option<String>,
    /// How each line is printed: short (time, stream, level, and a structured line's message
    /// and fields), json (one object a line) or raw (the line's bytes as written, nothing
    /// else).
    #[arg(
        short,
        long,
        value_enum,
        default_value = "short",
        conflicts_with = "json"
    )]
    pub output: crate::render::logs::Output,
    /// The lines as one JSON array (following: one object a line).
    #[arg(long)]
    pub json: bool,
}

fn parse_level(s: &str) -> Result<String, String> {
    match candor_store::Level::parse(s) {
        Some(level) => Ok(level.as_str().to_string()),
        None => Err(format!("must be one of {}", candor_store::Level::NAMES)),
    }
}
