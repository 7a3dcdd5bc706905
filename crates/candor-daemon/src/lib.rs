//! The daemon ("brain"): loads the spec, starts the keeper and the store, runs the brain's
//! actor and serves the API on a Unix socket (mode 0600) until shutdown.

pub mod api_error;
pub mod app;
pub mod board;
pub mod counters;
pub mod fallback;
pub mod faults;
pub mod forward;
pub mod gate;
pub mod group_routes;
pub mod guard;
pub mod hooks;
pub mod http;
pub mod http_post;
pub mod job_board;
pub mod job_routes;
pub mod log_gate;
pub mod log_routes;
pub mod logs;
pub mod metrics;
pub mod monitor;
pub mod notes;
pub mod notify;
pub mod notify_place;
pub mod paths;
pub mod peer;
pub mod probe;
pub mod records;
pub mod roles;
pub mod sampler;
pub mod shed;
pub mod shell;
pub mod signal;
pub mod sse;
pub mod trusted_path;
pub mod upgrade;
pub mod web;

#[cfg(test)]
mod frontdoor_props;

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use candor_api as api;
use candor_keeper::{Containment, KeeperConfig, KeeperEvent};
use tokio::sync::{broadcast, mpsc, watch};

use crate::board::Board;
use crate::shell::{Asked, Shell};

#[derive(Clone, Debug)]
pub struct Options {
    pub config: PathBuf,
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    /// Whose defaults apply to the state dir and socket the flags and config leave open:
    /// `--system`, `--user`, or neither.
    pub mode: paths::Mode,
    /// `false` forces process-group containment (`CANDOR_CGROUP=off`).
    pub use_cgroups: bool,
    /// `false` forces the portable fork/exec spawn path (`CANDOR_CLONE3=off`).
    pub use_clone3: bool,
    /// Print every state change on stderr (off under `candor up`'s live view).
    pub echo_events: bool,
    /// What a predecessor passed on when it exec'd this daemon for an upgrade.
    pub handover: Handover,
    /// A container's init (`candor daemon --init`, or pid 1): orphans of the whole namespace
    /// come to it and are reaped at once.
    pub init: bool,
}

pub use upgrade::Handover;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] candor_spec::SpecErrors),
    #[error(
        "another candor daemon is already answering on {0}; stop it first or use another --socket"
    )]
    AlreadyRunning(PathBuf),
    #[error("another candor daemon is using the state dir {0}; stop it first or use another --state-dir")]
    StateDirBusy(PathBuf),
    #[error("cannot use the state dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {why}; fix `[daemon] socket` or --socket")]
    SocketInUse { why: String },
    #[error(transparent)]
    Paths(#[from] paths::PathError),
    #[error("cannot listen on {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] candor_store::StoreError),
    #[error("cannot start the keeper: {0}")]
    Keeper(std::io::Error),
}

/// When the daemon ended because its `main = true` service did: that service's exit code
/// (128 + the signal when it was killed), for the daemon to exit with (a container's init).
pub fn main_exit_code() -> Option<i32> {
    let c = shell::MAIN_EXIT.load(std::sync::atomic::Ordering::SeqCst);
    (c >= 0).then_some(c)
}

/// The longest a supervisor of the daemon waits for READY=1 while services are still
/// starting (one waiting on a dependency that never gets ready would hold it forever).
const READY_AT_THE_LATEST: Duration = Duration::from_secs(60);

/// sd_notify READY=1 to the daemon's own supervisor (systemd's Type=notify) once no service is
/// starting, or after `READY_AT_THE_LATEST`; the STATUS line says which.
async fn tell_supervisor_ready(mut board: tokio::sync::watch::Receiver<Arc<board::Board>>) {
    let settled = tokio::time::timeout(READY_AT_THE_LATEST, board::none_starting(&mut board))
        .await
        .is_ok();
    let b = board.borrow().clone();
    let status = match settled {
        true => format!("{} services started", b.len()),
        false => format!(
            "{} services; some still starting after {}s",
            b.len(),
            READY_AT_THE_LATEST.as_secs()
        ),
    };
    let _ = candor_sdk::notify::status(&status);
    if let Err(e) = candor_sdk::notify::ready() {
        eprintln!("candor: could not tell its supervisor it is ready: {e}");
    }
}

/// Where a started daemon can be reached.
#[derive(Clone, Debug)]
pub struct Started {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the (soft, hard) we started with.
fn raise_nofile() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is u64 only on 64-bit targets
        let before = (lim.rlim_cur as u64, lim.rlim_max as u64);
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
        Some(before)
    }
}

/// The state dir, made if missing, as its canonical path (symlinks resolved, no `.`, `..`
/// or trailing `/`).
fn canonical_state_dir(dir: &Path) -> Result<PathBuf, DaemonError> {
    let err = |source| DaemonError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    std::fs::canonicalize(dir).map_err(err)
}

fn lock_state_dir(dir: &Path) -> Result<std::fs::File, DaemonError> {
    let err = |source| DaemonError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let path = dir.join("daemon.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    // A daemon killed a moment ago may still have a child between fork and exec, holding a
    // copy of the lock's fd for a few microseconds more: wait a little before saying busy.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DaemonError::StateDirBusy(dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
    }
}

/// The listening socket a predecessor handed over, if it is one bound at `path`.
fn inherited_listener(fd: i32, path: &Path) -> Option<tokio::net::UnixListener> {
    // SAFETY: the fd number came from our predecessor, which kept exactly this fd open for us;
    // nothing else in this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let std = std::os::unix::net::UnixListener::from(fd);
    let addr = std.local_addr().ok()?;
    if addr.as_pathname() != Some(path) {
        eprintln!(
            "candor: warning: the handed-over socket is not {}; binding anew",
            path.display()
        );
        return None;
    }
    rustix::io::fcntl_setfd(&std, rustix::io::FdFlags::CLOEXEC).ok()?;
    std.set_nonblocking(true).ok()?;
    tokio::net::UnixListener::from_std(std).ok()
}

fn bind(
    path: &Path,
    handed: Option<i32>,
    group: Option<u32>,
) -> Result<tokio::net::UnixListener, DaemonError> {
    if let Some(l) = handed.and_then(|fd| inherited_listener(fd, path)) {
        return Ok(l);
    }
    let err = |source| DaemonError::Socket {
        path: path.to_path_buf(),
        source,
    };
    // Only a socket nobody listens on is removed: never a live one (a daemon whose accept loop
    // is stuck still owns it), never a file that is not a socket (a typo in `socket =`).
    use candor_keeper::sockfile::{self, SocketFile};
    use candor_keeper::sockpath;
    match sockfile::inspect(path) {
        SocketFile::Missing => {}
        SocketFile::Stale => sockpath::remove_stale(path).map_err(err)?,
        found if found.is_live() => return Err(DaemonError::AlreadyRunning(path.to_path_buf())),
        found => {
            return Err(DaemonError::SocketInUse {
                why: found.why_kept(path).unwrap_or_default(),
            })
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // The daemon's umask is 077 (see `run`): the socket is born 0700, owner only, and only
    // then opened to `socket_group` — there is no moment where anyone else can connect. The
    // chown and chmod never follow a symlink, and the directory must be one only root and the
    // daemon's user can write (`sockpath`).
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    let made =
        sockpath::bind(path, mode, group, sockpath::DirOwner::daemon()).map_err(|e| match e {
            sockpath::BindError::Refused(why) => DaemonError::SocketInUse {
                why: format!("{}: {why}", path.display()),
            },
            sockpath::BindError::Io(source) => err(source),
        })?;
    rustix::net::listen(&made.fd, 1024).map_err(|e| err(e.into()))?;
    let std = std::os::unix::net::UnixListener::from(made.fd);
    std.set_nonblocking(true).map_err(err)?;
    tokio::net::UnixListener::from_std(std).map_err(err)
}

/// The directory of a mode's default socket (`/run/candor`), made with `mode` when missing —
/// not 0700 as the daemon's umask would have it — so that `socket_group` can reach the socket.
/// One that exists is left as it is (systemd's `RuntimeDirectory=` made it).
fn make_socket_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The state dir holds every service's logs: 0700, its database files 0600 (SQLite gives the
/// -wal and -shm files the database's mode), also when an older version made them readable.
/// With `socket_group` and the control socket inside it, the dir is 0710 to that group: its
/// members may pass through to the socket, and read nothing.
fn secure_state_dir(dir: &Path, socket: &Path, group: Option<u32>) {
    use std::fs::{set_permissions, Permissions};
    // `dir` is canonical; the socket's path may spell it otherwise.
    let in_dir = socket
        .parent()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .is_some_and(|p| p == dir);
    let group = group.filter(|_| in_dir);
    let mode = match group {
        Some(gid) => {
            if let Err(e) = rustix::fs::chown(dir, None, Some(rustix::fs::Gid::from_raw(gid))) {
                eprintln!(
                    "candor: warning: cannot give {} to socket_group: {e}",
                    dir.display()
                );
            }
            0o710
        }
        None => 0o700,
    };
    if let Err(e) = set_permissions(dir, Permissions::from_mode(mode)) {
        eprintln!(
            "candor: warning: cannot make {} private: {e}",
            dir.display()
        );
    }
    for (name, mode) in [
        ("candor.db", 0o600),
        ("candor.db-wal", 0o600),
        ("candor.db-shm", 0o600),
        ("daemon.lock", 0o600),
        ("runs", 0o700),
    ] {
        // Through a descriptor of the file itself: a symlink planted there is never followed.
        if let Err(e) = candor_keeper::sockpath::chmod_in(dir, name.as_ref(), mode) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "candor: warning: cannot make {} private: {e}",
                    dir.join(name).display()
                );
            }
        }
    }
}

/// Run the daemon until it is shut down (API, SIGTERM or SIGINT). `on_started` is told where
/// it listens once the socket is bound.
pub async fn run(opts: Options, on_started: impl FnOnce(Started)) -> Result<(), DaemonError> {
    let ended = serve(opts, on_started).await;
    if let Err(e) = &ended {
        // A PID 1 successor that cannot start goes back to the old binary (fallback.rs).
        fallback::fall_back(&format!("the new binary could not start: {e}"));
    }
    ended
}

async fn serve(opts: Options, on_started: impl FnOnce(Started)) -> Result<(), DaemonError> {
    // Test seam: a successor whose start fails (the failpoints reach it only through a
    // wrapper: a handover removes them).
    if candor_core::fail_once("daemon-start", "panic") {
        panic!("failpoint daemon-start");
    }
    if candor_core::fail_once("daemon-start", "abort") {
        std::process::abort();
    }
    if candor_core::fail_once("daemon-start", "hang") {
        loop {
            std::thread::park();
        }
    }
    // Raise our own soft fd limit to the hard one; services keep the limit we were given.
    let own_nofile = raise_nofile();
    // Everything the daemon creates (state dir, database, run records, sockets) is its user's
    // alone; services get back the umask the daemon was started with.
    let own_umask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077)).bits();
    // After an upgrade or a restart in place, "started with" is the first daemon's: this
    // process was started by its predecessor, with 077 and the raised limit.
    let original = opts.handover.original_or(upgrade::Original {
        umask: own_umask,
        nofile: own_nofile,
    });
    let (service_umask, service_nofile) = (original.umask, original.nofile);
    if candor_core::fail_once("daemon-start", "error") {
        return Err(DaemonError::StateDir {
            path: PathBuf::from("failpoint daemon-start"),
            source: std::io::Error::other("failpoint"),
        });
    }
    let config_path = opts.config.clone();
    let spec = tokio::task::spawn_blocking(move || candor_spec::load(&config_path))
        .await
        .expect("config loader panicked")?;
    let paths::DaemonPaths {
        state_dir,
        socket,
        socket_dir,
    } = paths::daemon(
        opts.mode,
        opts.state_dir.as_deref(),
        opts.socket.as_deref(),
        &spec.daemon,
        &paths::Env::current(),
    )?;
    // One instance per state dir however it is spelt (`/x/.candor`, `/x/.candor/`, through a
    // symlink): from here on the state dir is its canonical path, which names the cgroups
    // and the notify socket, so a daemon started with another spelling adopts the same runs.
    let typed_state_dir = state_dir.clone();
    let state_dir = canonical_state_dir(&state_dir)?;
    // One daemon per state dir: it names the cgroups, so a second one would kill the first's
    // services. Held (by the open file) until the daemon exits.
    let _lock = lock_state_dir(&state_dir)?;
    let socket_group = spec.daemon.socket_group.as_ref().map(|(_, gid)| *gid);
    secure_state_dir(&state_dir, &socket, socket_group);
    if let Some((dir, mode)) = &socket_dir {
        make_socket_dir(dir, *mode).map_err(|source| DaemonError::Socket {
            path: socket.clone(),
            source,
        })?;
    }
    let listener = bind(&socket, opts.handover.listen_fd, socket_group)?;
    // The file as made (or handed over): removed at the end only if it is still this one.
    let socket_file = candor_keeper::sockpath::file_id(&socket);
    // A copy of the listening socket, kept for a successor (`candor upgrade`).
    let listen_fd =
        rustix::io::fcntl_dupfd_cloexec(&listener, 3).map_err(|e| DaemonError::Socket {
            path: socket.clone(),
            source: e.into(),
        })?;
    let web = Arc::new(web::Web::new(&state_dir, spec.daemon.web.clone()));
    let (store, store_thread) = candor_store::Store::open_with(&state_dir, logs::caps(&spec))?;
    if let Some(what) = store.recovered() {
        eprintln!("candor: warning: {what}");
        notes::write_note(&store, None, notes::daemon_note("warning", what.into()));
    }

    // Runs an earlier daemon of this boot left running, checked against the kernel now (before
    // the keeper starts: nothing is spawned until they are taken over).
    let taken = {
        let (dir, spec, use_cgroups) = (state_dir.clone(), spec.clone(), opts.use_cgroups);
        let typed = paths::instance_name(&typed_state_dir);
        tokio::task::spawn_blocking(move || {
            let instance = paths::instance_name(&dir);
            let containment = candor_keeper::detect_containment(&instance, use_cgroups);
            if let (Containment::Cgroup { root }, true) = (&containment, typed != instance) {
                // A daemon of an earlier version named the cgroups by the state dir as typed.
                if let Some(old) = root.parent().map(|p| p.join(&typed)) {
                    records::move_instance(&old, root);
                }
            }
            let contained = match &containment {
                Containment::Cgroup { root } => records::Contained::Cgroup(root),
                Containment::ProcessGroup { .. } => records::Contained::ProcessGroup,
            };
            records::load(&dir, &spec, contained)
        })
        .await
        .unwrap_or_default()
    };
    let (keeper_tx, keeper_rx) = mpsc::channel(1024);
    let notify_senders = Arc::new(notify::Senders::default());
    let senders = notify_senders.clone();
    let emit = Box::new(move |ev| {
        // The notify server knows a run's main pid as soon as the keeper does (the brain holds
        // what comes before the report reaches it).
        match &ev {
            KeeperEvent::Spawned {
                service,
                run_id,
                pid,
                ..
            } => senders.spawned(service, *run_id, *pid),
            KeeperEvent::Exited {
                service, run_id, ..
            } => senders.exited(service, *run_id),
            _ => {}
        }
        // Blocking here is fine: this runs on the keeper's own thread.
        let _ = keeper_tx.blocking_send(ev);
    });
    let keeper_cfg = KeeperConfig {
        instance: paths::instance_name(&state_dir),
        use_cgroups: opts.use_cgroups,
        use_clone3: opts.use_clone3,
        reap_every: match opts.init {
            true => candor_keeper::INIT_REAP_EVERY,
            false => Duration::from_secs(1),
        },
    };
    let (keeper, containment, keeper_thread) =
        candor_keeper::start(keeper_cfg, emit).map_err(DaemonError::Keeper)?;

    let (board_tx, board_rx) = watch::channel(Arc::new(Board::default()));
    let fresh = Arc::new(board::Freshness::default());
    // Lines a failed write lost go to their service's counters (on the latest board).
    let boards = board_rx.clone();
    let boards_for_shed = board_rx.clone();
    let boards_for_ready = board_rx.clone();
    store.on_lost(Box::new(move |service, n| {
        let board = boards.borrow();
        if let Some(c) = candor_spec::ServiceName::new(service)
            .ok()
            .and_then(|name| board.logs.get(&name))
        {
            c.store_lost
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }));
    let (req_tx, req_rx) = mpsc::channel::<Asked>(256);
    let config_abs = spec.source.clone();
    let mut info = api::DaemonInfo {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: api::timestamp(SystemTime::now()),
        config: config_abs.display().to_string(),
        state_dir: state_dir.display().to_string(),
        socket: socket.display().to_string(),
        containment: match containment {
            Containment::Cgroup { .. } => "cgroup".into(),
            Containment::ProcessGroup { .. } => "process-group".into(),
        },
        containment_detail: containment.describe(),
        services: spec.services.len(),
        store_dropped: api::LogCounts::default(),
        store: api::StoreInfo::default(),
        notify: api::NotifyStats::default(),
        resources: api::DaemonResources::default(),
        incarnation: format!(
            "{}-{}",
            std::process::id(),
            candor_keeper::clock::mono().0.as_nanos()
        ),
        adopted: taken.taken.iter().filter(|t| t.found.alive).count(),
        upgraded_from: opts.handover.from.clone(),
        upgrade_error: opts.handover.error.clone(),
        faults: api::Faults::default(),
        access: None,
        shared_causes: Vec::new(),
        hooks: Default::default(),
        forward: Vec::new(),
    };
    if let Some(from) = &opts.handover.from {
        let (state, reason) = match &opts.handover.error {
            Some(e) => (
                "warning",
                format!("upgrade failed, the old binary took over again: {e}"),
            ),
            None => (
                "upgraded",
                format!("took over from {from}; version {}", info.version),
            ),
        };
        eprintln!("candor: {reason}");
        notes::write_note(&store, None, notes::daemon_note(state, reason));
    }
    eprintln!(
        "candor: {} services from {}; containment: {}",
        spec.services.len(),
        config_abs.display(),
        containment.describe()
    );
    eprintln!("candor: listening on {}", socket.display());

    let (events_tx, _) = broadcast::channel(1024);
    let faults = Arc::new(faults::Faults::new({
        let (store, events) = (store.clone(), events_tx.downgrade());
        move |note| notes::write_note(&store, events.upgrade().as_ref(), note)
    }));
    let (internal_tx, internal_rx) = mpsc::channel(1024);
    let (logs_live, _) = broadcast::channel(4096);
    let instance = paths::instance_name(&state_dir);
    // Handed over by `candor upgrade` (messages sent meanwhile waited in it), else bound.
    let handed = opts
        .handover
        .notify
        .as_deref()
        .map(notify_place::take_handed);
    let (notify_placed, notes) = match handed {
        Some(Ok(s)) => (s, Vec::new()),
        other => {
            let mut placed = notify_place::bind(&state_dir, &instance).map_err(|source| {
                DaemonError::Socket {
                    path: PathBuf::from(notify_place::ROOT_DIR).join(format!("{instance}.sock")),
                    source,
                }
            })?;
            if let Some(Err(why)) = other {
                placed.1.insert(0, why);
            }
            placed
        }
    };
    let notify_name = notify_placed.path.display().to_string();
    for note in &notes {
        eprintln!("candor: warning: notify socket: {note}");
    }
    if !notes.is_empty() {
        eprintln!("candor: notify socket at {notify_name}");
    }
    let notify_counters = Arc::new(notify::NotifyCounters::default());
    let notify_mail = Arc::new(notify::Mailbox::default());
    let cgroup_root = match &containment {
        Containment::Cgroup { root } => Some(root.clone()),
        Containment::ProcessGroup { .. } => None,
    };
    let every = spec.daemon.sample_every.unwrap_or(Duration::from_secs(5));
    if !every.is_zero() {
        let (root, board, tx) = (cgroup_root.clone(), board_rx.clone(), internal_tx.clone());
        faults.supervise("the fd and memory sampler".into(), move |_| {
            sampler::run(every, root.clone(), board.clone(), tx.clone())
        });
    }
    let guard_counters = Arc::new(guard::GuardCounters::default());
    guard_counters.set_send_timeout(spec.daemon.send_timeout);
    {
        let err = |source| DaemonError::Socket {
            path: notify_placed.path.clone(),
            source,
        };
        let sock = notify_placed.sock.try_clone().map_err(err)?;
        sock.set_nonblocking(true).map_err(err)?;
        let sock = tokio::net::UnixDatagram::from_std(sock).map_err(err)?;
        rustix::net::sockopt::set_socket_passcred(&sock, true).map_err(|e| err(e.into()))?;
        let server = |sock| {
            Arc::new(notify::Server {
                sock: Arc::new(sock),
                cgroup_root: cgroup_root.clone(),
                senders: notify_senders.clone(),
                mailbox: notify_mail.clone(),
                counters: notify_counters.clone(),
            })
        };
        let main = server(sock);
        faults.supervise("the notify socket server".into(), move |_| {
            notify::serve(main.clone())
        });
        // Runs an earlier version started were told an abstract NOTIFY_SOCKET: listen there too
        // while they live (served the same way), so an upgrade restarts none of them.
        // Only a record without a digest was written by such a version: this one's runs were
        // told the path, and nothing of theirs is read here.
        let pids: Vec<u32> = taken
            .taken
            .iter()
            .filter(|t| t.found.alive)
            .filter(|t| {
                t.found
                    .saved
                    .run
                    .as_ref()
                    .is_some_and(|r| r.digest.is_none())
            })
            .filter_map(|t| t.process.map(|p| p.pid))
            .collect();
        let names = if pids.is_empty() {
            Vec::new()
        } else {
            tokio::task::spawn_blocking(move || notify_place::abstract_names_of(pids))
                .await
                .unwrap_or_default()
        };
        for name in names {
            let bound = notify_place::bind_abstract(&name).and_then(|sock| {
                sock.set_nonblocking(true)?;
                let sock = tokio::net::UnixDatagram::from_std(sock)?;
                rustix::net::sockopt::set_socket_passcred(&sock, true)?;
                Ok(sock)
            });
            match bound {
                Ok(sock) => {
                    eprintln!("candor: notify: also listening on @{name}, where runs an earlier version started send (restart them to move them to {notify_name})");
                    let legacy = server(sock);
                    faults.supervise(format!("the notify server on @{name}"), move |_| {
                        notify::serve(legacy.clone())
                    });
                }
                Err(e) => eprintln!("candor: warning: notify: cannot listen on @{name} ({e}), where runs an earlier version started send: their messages are lost until they are restarted"),
            }
        }
    }
    let (upgrade_tx, upgrade_rx) = mpsc::channel(1);
    let keeper_for_api = keeper.clone();
    let exec_probes = Arc::new(probe::ExecProbes::new(service_umask));
    let log_committed = {
        let (tx, rx) = watch::channel(0);
        store.on_commit(Box::new(move |id| {
            tx.send_replace(id);
        }));
        rx
    };
    let forwards = forward::Forwards::start(
        &spec.daemon.forward,
        forward::Setup {
            store: store.clone(),
            committed: log_committed.clone(),
            board: board_rx.clone(),
            state_dir: state_dir.clone(),
            faults: faults.clone(),
            host: hooks::hostname(),
            marks: forward::RunMarks::default(),
        },
    );
    let ctx = shell::BrainContext {
        internal: internal_tx,
        exec: exec_probes.clone(),
        gates: gate::Gates::new(spec.daemon.probe_max_inflight),
        notify_counters: notify_counters.clone(),
        notify_socket: notify_name.clone(),
        notify_senders,
        notify_mail,
        echo_events: opts.echo_events,
        service_nofile,
        service_umask,
        log_stop: Arc::new(watch::channel(false).0),
        log_readers: Arc::default(),
        log_committed: log_committed.clone(),
        forwards: forwards.clone(),
        logs_live: logs_live.clone(),
        faults: faults.clone(),
        sample_every: every,
    };
    let recorder =
        records::Recorder::start(&state_dir).map_err(|source| DaemonError::StateDir {
            path: state_dir.clone(),
            source,
        })?;
    let jobs_recorder =
        records::Recorder::start_in(records::jobs_dir(&state_dir)).map_err(|source| {
            DaemonError::StateDir {
                path: records::jobs_dir(&state_dir),
                source,
            }
        })?;
    let hooks = hooks::Hooks::start(
        &spec.daemon.hooks,
        hooks::Setup {
            host: hooks::hostname(),
            runner: hooks::Runner {
                keeper: keeper.clone(),
                exec: exec_probes.clone(),
            },
            // Straight to the event log: a hook's own notes never go back into the hooks.
            report: {
                let (store, events) = (store.clone(), events_tx.downgrade());
                Arc::new(move |note| notes::write_note(&store, events.upgrade().as_ref(), note))
            },
            faults: faults.clone(),
            pacing: hooks::Pacing::default(),
            queue: hooks::QUEUE,
        },
    );
    let hook_counters = hooks.counters();
    let brain = Shell::new(
        &spec,
        keeper,
        store.clone(),
        (board_tx, fresh.clone()),
        events_tx.clone(),
        ctx,
        (recorder, jobs_recorder),
        taken,
        hooks,
    );
    info.notify.socket = notify_name;
    let info_incarnation = info.incarnation.clone();
    let state = app::AppState {
        init: opts.init,
        requests: req_tx.clone(),
        board: board_rx,
        fresh,
        store: store.clone(),
        info: Arc::new(info),
        config: config_abs,
        events: events_tx.downgrade(),
        notify: notify_counters,
        guard: guard_counters.clone(),
        logs_live: logs_live.downgrade(),
        upgrade: upgrade_tx,
        keeper: keeper_for_api,
        exec: exec_probes,
        faults: faults.clone(),
        hooks: hook_counters,
        forwards,
        web: web.clone(),
        access: Arc::new(roles::Access::new(
            spec.daemon.socket_group.clone(),
            spec.daemon.operators_may_shutdown,
            web.clone(),
        )),
        frames: Arc::default(),
    };
    let reloader = http::Reloader::of(&state);
    let app = http::router(state);
    web.set_guard(guard_counters.clone());
    web.set_api(app.clone());
    if spec.daemon.web.is_some() {
        match web.open(web.listen).await {
            Ok(w) => eprintln!(
                "candor: dashboard on http://{} (`candor web` prints the URL with its token)",
                w.listen
            ),
            Err(e) => {
                let reason = format!(
                    "{e}; the dashboard is off until the daemon is started again ([daemon] web)"
                );
                eprintln!("candor: warning: {reason}");
                notes::write_note(&store, None, notes::daemon_note("warning", reason));
            }
        }
    }
    drop(events_tx);
    drop(logs_live);
    let (stop_http_tx, stop_http_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = guard::GuardedListener::new(listener, guard_counters);
    let server = tokio::spawn(guard::serve(listener, app, async {
        let _ = stop_http_rx.await;
    }));

    // SIGTERM / SIGINT: the same orderly shutdown as `candor shutdown`.
    let sig_tx = req_tx.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let request = candor_brain::Request::Shutdown;
        let _ = sig_tx
            .send(Asked {
                request,
                reply: None,
                caller: None,
            })
            .await;
    });
    drop(req_tx);

    // SIGHUP: re-read the config, as `candor reload` (systemd's ExecReload=kill -HUP).
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match reloader.reload(None).await {
                Ok(out) => eprintln!(
                    "candor: SIGHUP: config reloaded ({} added, {} removed, {} changed)",
                    out.added.len(),
                    out.removed.len(),
                    out.changed.len()
                ),
                Err(e) => eprintln!("candor: SIGHUP: {}", e.body.error),
            }
        }
    });
    if opts.handover.from.is_some() {
        // A successor is the daemon once it answers on its socket: a PID 1 one stops guarding
        // itself, and systemd hears that the handover is over — from the guard, its main pid
        // meanwhile, if there is one (`upgrade::hand_over`), else from here.
        let (socket, incarnation, guard) = (
            socket.clone(),
            info_incarnation.clone(),
            opts.handover.guard,
        );
        tokio::spawn(async move {
            upgrade::answered(&socket, &incarnation).await;
            fallback::commit();
            if guard.is_none() {
                upgrade::tell_systemd(&format!(
                    "READY=1\nSTATUS=took over (pid {})",
                    std::process::id()
                ));
            }
        });
    } else if candor_sdk::notify::is_supervised() {
        // Under systemd (Type=notify): READY=1 once every service has been started.
        tokio::spawn(tell_supervisor_ready(boards_for_ready));
    }

    tokio::spawn(shed::after_start(boards_for_shed));
    on_started(Started {
        socket: socket.clone(),
        state_dir: state_dir.clone(),
    });
    let ended = brain.run(keeper_rx, req_rx, internal_rx, upgrade_rx).await;
    if let shell::Ended::Upgrade(binary, _frozen) = ended {
        // Accept no more (new connections wait in the backlog of the socket handed over, for
        // the successor) and let the requests under way — the upgrade's answer among them —
        // finish, rather than cut them at the exec; followers (`logs -f`) get a second.
        let _ = stop_http_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
        upgrade::hand_over(
            &binary,
            upgrade::Outgoing {
                listen: &listen_fd,
                socket: &socket,
                incarnation: &info_incarnation,
                original,
                init: opts.init,
                notify: Some((notify_placed.sock.as_fd(), notify_placed.handover())),
            },
        );
    }

    let _ = stop_http_tx.send(());
    let web_server = web.close();
    drop(web);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = server.await;
        if let Some(w) = web_server {
            let _ = w.await;
        }
    })
    .await;
    if let Some(made) = socket_file {
        candor_keeper::sockpath::remove_if(&socket, made);
    }
    notify_placed.remove();
    // The keeper ends once every run is over and removes the activated sockets' files as it
    // goes: give it the moment it needs before the process exits under it.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::task::spawn_blocking(move || keeper_thread.join()),
    )
    .await;
    faults.close();
    drop(store);
    // Give the store's writer a moment to commit the last events.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::task::spawn_blocking(move || store_thread.join()),
    )
    .await;
    eprintln!("candor: all services stopped; bye");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_socket_dir_is_made_with_its_mode_and_one_that_exists_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run-candor");
        // Group-writable: more than any usual umask (022, or the daemon's 077) lets through,
        // so the mode is the one asked for, not the umask's.
        super::make_socket_dir(&dir, 0o775).unwrap();
        let mode = |d: &std::path::Path| std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o775);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        super::make_socket_dir(&dir, 0o775).unwrap();
        assert_eq!(mode(&dir), 0o750, "an existing directory keeps its mode");
        let missing_parent = tmp.path().join("no/such");
        assert!(super::make_socket_dir(&missing_parent, 0o755).is_err());
    }

    #[test]
    fn every_spelling_of_a_state_dir_is_one_instance() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("srv/x/.candor");
        std::os::unix::fs::symlink(tmp.path().join("srv"), tmp.path().join("link")).unwrap();
        let spellings = [
            real.clone(),
            std::path::PathBuf::from(format!("{}/", real.display())),
            tmp.path().join("srv/x/./.candor"),
            tmp.path().join("srv/x/../x/.candor"),
            tmp.path().join("link/x/.candor"),
        ];
        let canonical: Vec<_> = spellings
            .iter()
            .map(|p| super::canonical_state_dir(p).unwrap())
            .collect();
        let want = std::fs::canonicalize(&real).unwrap();
        assert!(canonical.iter().all(|c| *c == want), "{canonical:?}");
        let names: std::collections::BTreeSet<String> = canonical
            .iter()
            .map(|c| super::paths::instance_name(c))
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // The spellings themselves would name different instances.
        assert_ne!(
            super::paths::instance_name(&spellings[0]),
            super::paths::instance_name(&spellings[1])
        );
    }
}
