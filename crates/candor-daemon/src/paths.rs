//! Where the daemon keeps its state and socket, where a client looks for that socket, and the
//! name of the daemon's cgroup subtree. The choices are pure functions of the flags, the
//! config's `[daemon]` paths and the environment ([`Env`], read once by the caller).

use std::path::{Path, PathBuf};

use candor_spec::DaemonSpec;

/// A system service's state dir (`--system`).
pub const SYSTEM_STATE_DIR: &str = "/var/lib/candor";
/// A system service's socket (`--system`); its directory is made 0755 when missing.
pub const SYSTEM_SOCKET: &str = "/run/candor/candor.sock";
/// The mode of the directory made for [`SYSTEM_SOCKET`]: members of `socket_group` must be
/// able to pass through it to the socket.
pub const SYSTEM_SOCKET_DIR_MODE: u32 = 0o755;

/// Which set of defaults applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Neither `--system` nor `--user`: state dir `$XDG_STATE_HOME/candor`, else `./.candor`;
    /// socket `$CANDOR_SOCKET`, else `<state_dir>/candor.sock`.
    #[default]
    Local,
    /// `--system`: [`SYSTEM_STATE_DIR`] and [`SYSTEM_SOCKET`].
    System,
    /// `--user`: state dir `$XDG_STATE_HOME/candor` (else `$HOME/.local/state/candor`), socket
    /// `$XDG_RUNTIME_DIR/candor/candor.sock`.
    User,
}

/// The environment the paths depend on. An empty variable counts as unset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    /// The current directory, against which relative paths are taken.
    pub cwd: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub xdg_state_home: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub candor_socket: Option<PathBuf>,
    /// The effective uid: a client run as root looks for the system service's socket.
    pub euid: u32,
}

impl Env {
    /// This process's environment, now.
    pub fn current() -> Env {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            cwd: std::env::current_dir().ok(),
            home: var("HOME"),
            xdg_state_home: var("XDG_STATE_HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            candor_socket: var("CANDOR_SOCKET"),
            euid: rustix::process::geteuid().as_raw(),
        }
    }

    fn absolute(&self, p: PathBuf) -> PathBuf {
        match &self.cwd {
            Some(cwd) if p.is_relative() => cwd.join(p),
            _ => p,
        }
    }
}

/// What a mode's default needs and the environment does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("--user puts the socket in $XDG_RUNTIME_DIR/candor/, and XDG_RUNTIME_DIR is not set (a login session through systemd-logind sets it); set it, or name the socket with --socket or `[daemon] socket`")]
    NoRuntimeDir,
    #[error("--user keeps its state in $XDG_STATE_HOME/candor or $HOME/.local/state/candor, and neither XDG_STATE_HOME nor HOME is set; set one, or name the state dir with --state-dir or `[daemon] state_dir`")]
    NoHome,
}

/// Where a daemon keeps its state and listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonPaths {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// A directory to make, with this mode, for the socket when it is missing (the system
    /// default's `/run/candor`); other socket directories are made private to the daemon.
    pub socket_dir: Option<(PathBuf, u32)>,
}

/// The daemon's paths. State dir: `--state-dir`, else `[daemon] state_dir`, else the mode's
/// default. Socket: `--socket`, else `[daemon] socket`, else the mode's default — for
/// [`Mode::Local`] `$CANDOR_SOCKET`, else `<state_dir>/candor.sock`. A client given the
/// daemon's `-c` and mode gets the same socket from here.
pub fn daemon(
    mode: Mode,
    cli_state_dir: Option<&Path>,
    cli_socket: Option<&Path>,
    config: &DaemonSpec,
    env: &Env,
) -> Result<DaemonPaths, PathError> {
    let state_dir = match cli_state_dir.or(config.state_dir.as_deref()) {
        Some(p) => p.to_path_buf(),
        None => match mode {
            Mode::Local => match &env.xdg_state_home {
                Some(x) => x.join("candor"),
                None => PathBuf::from(".candor"),
            },
            Mode::System => PathBuf::from(SYSTEM_STATE_DIR),
            Mode::User => match (&env.xdg_state_home, &env.home) {
                (Some(x), _) => x.join("candor"),
                (None, Some(home)) => home.join(".local/state/candor"),
                (None, None) => return Err(PathError::NoHome),
            },
        },
    };
    let state_dir = env.absolute(state_dir);
    let mut socket_dir = None;
    let socket = match cli_socket.or(config.socket.as_deref()) {
        Some(p) => p.to_path_buf(),
        None => match mode {
            Mode::Local => env
                .candor_socket
                .clone()
                .unwrap_or_else(|| state_dir.join("candor.sock")),
            Mode::System => {
                let socket = PathBuf::from(SYSTEM_SOCKET);
                socket_dir = socket
                    .parent()
                    .map(|d| (d.to_path_buf(), SYSTEM_SOCKET_DIR_MODE));
                socket
            }
            Mode::User => env
                .xdg_runtime_dir
                .as_ref()
                .ok_or(PathError::NoRuntimeDir)?
                .join("candor/candor.sock"),
        },
    };
    Ok(DaemonPaths {
        socket: env.absolute(socket),
        state_dir,
        socket_dir,
    })
}

/// Where a client sends its requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientSocket {
    /// Named by `--socket`, the config given with `-c`, `--system` / `--user`, or
    /// `$CANDOR_SOCKET`.
    Named(PathBuf),
    /// Nothing named one: the first of these that exists.
    LookIn(Vec<PathBuf>),
}

/// The client's socket: `--socket`; else, with `-c FILE` (its `[daemon]` section in `config`)
/// or a mode other than [`Mode::Local`], the socket a daemon started with that config and mode
/// listens on ([`daemon`]); else `$CANDOR_SOCKET`; else [`look_in`].
pub fn client(
    cli_socket: Option<&Path>,
    config: Option<&DaemonSpec>,
    mode: Mode,
    env: &Env,
) -> Result<ClientSocket, PathError> {
    if let Some(p) = cli_socket {
        return Ok(ClientSocket::Named(p.to_path_buf()));
    }
    if config.is_some() || mode != Mode::Local {
        let config = config.cloned().unwrap_or_default();
        return daemon(mode, None, None, &config, env).map(|p| ClientSocket::Named(p.socket));
    }
    if let Some(p) = &env.candor_socket {
        return Ok(ClientSocket::Named(env.absolute(p.clone())));
    }
    Ok(ClientSocket::LookIn(look_in(env)))
}

/// Where a client told nothing looks for a daemon, in order: `./.candor/candor.sock` (a daemon
/// started here with the defaults), `$XDG_STATE_HOME/candor/candor.sock` (the same, with
/// XDG_STATE_HOME set), then the service's: as root the system one ([`SYSTEM_SOCKET`]), else
/// the user's (`$XDG_RUNTIME_DIR/candor/candor.sock`).
pub fn look_in(env: &Env) -> Vec<PathBuf> {
    let mut paths = vec![env.absolute(PathBuf::from(".candor/candor.sock"))];
    if let Some(x) = &env.xdg_state_home {
        paths.push(env.absolute(x.join("candor/candor.sock")));
    }
    if env.euid == 0 {
        paths.push(PathBuf::from(SYSTEM_SOCKET));
    } else if let Some(r) = &env.xdg_runtime_dir {
        paths.push(env.absolute(r.join("candor/candor.sock")));
    }
    paths.dedup();
    paths
}

/// A stable name for this daemon's cgroup subtree, derived from its state dir, so a restarted
/// daemon finds the cgroups of its previous life. `state_dir` must be canonical (the daemon
/// resolves it once made): every spelling of one directory is one instance.
pub fn instance_name(state_dir: &Path) -> String {
    let h = candor_core::hash::fnv1a(state_dir.as_os_str().as_encoded_bytes());
    let base: String = state_dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| {
            s.to_string_lossy()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(24)
                .collect()
        })
        .unwrap_or_default();
    if base.is_empty() {
        format!("{h:016x}")
    } else {
        format!("{base}-{h:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// A user's shell in /home/u/src: HOME, XDG_RUNTIME_DIR, no XDG_STATE_HOME.
    fn user_env() -> Env {
        Env {
            cwd: Some(p("/home/u/src")),
            home: Some(p("/home/u")),
            xdg_state_home: None,
            xdg_runtime_dir: Some(p("/run/user/1000")),
            candor_socket: None,
            euid: 1000,
        }
    }

    fn root_env() -> Env {
        Env {
            cwd: Some(p("/root")),
            home: Some(p("/root")),
            euid: 0,
            ..Env::default()
        }
    }

    fn config(state_dir: Option<&str>, socket: Option<&str>) -> DaemonSpec {
        DaemonSpec {
            state_dir: state_dir.map(p),
            socket: socket.map(p),
            ..DaemonSpec::default()
        }
    }

    fn paths(mode: Mode, env: &Env) -> (PathBuf, PathBuf) {
        let d = daemon(mode, None, None, &DaemonSpec::default(), env).unwrap();
        (d.state_dir, d.socket)
    }

    #[test]
    fn local_defaults_are_the_state_home_or_the_current_directory() {
        let env = user_env();
        assert_eq!(
            paths(Mode::Local, &env),
            (
                p("/home/u/src/.candor"),
                p("/home/u/src/.candor/candor.sock")
            )
        );
        let env = Env {
            xdg_state_home: Some(p("/home/u/.st")),
            ..user_env()
        };
        assert_eq!(
            paths(Mode::Local, &env),
            (p("/home/u/.st/candor"), p("/home/u/.st/candor/candor.sock"))
        );
        // $CANDOR_SOCKET names the socket, not the state dir; relative to the current dir.
        let env = Env {
            candor_socket: Some(p("x.sock")),
            ..user_env()
        };
        assert_eq!(
            paths(Mode::Local, &env),
            (p("/home/u/src/.candor"), p("/home/u/src/x.sock"))
        );
    }

    #[test]
    fn system_mode_uses_var_lib_and_run_whoever_runs_it() {
        for env in [root_env(), user_env()] {
            let d = daemon(Mode::System, None, None, &DaemonSpec::default(), &env).unwrap();
            assert_eq!(d.state_dir, p("/var/lib/candor"));
            assert_eq!(d.socket, p("/run/candor/candor.sock"));
            assert_eq!(d.socket_dir, Some((p("/run/candor"), 0o755)));
        }
        // $CANDOR_SOCKET is a default of the local mode only: --system names its socket.
        let env = Env {
            candor_socket: Some(p("/tmp/other.sock")),
            ..root_env()
        };
        assert_eq!(paths(Mode::System, &env).1, p("/run/candor/candor.sock"));
    }

    #[test]
    fn user_mode_uses_the_state_home_and_the_runtime_dir() {
        assert_eq!(
            paths(Mode::User, &user_env()),
            (
                p("/home/u/.local/state/candor"),
                p("/run/user/1000/candor/candor.sock")
            )
        );
        let env = Env {
            xdg_state_home: Some(p("/data/state")),
            ..user_env()
        };
        assert_eq!(paths(Mode::User, &env).0, p("/data/state/candor"));
        let d = daemon(Mode::User, None, None, &DaemonSpec::default(), &user_env()).unwrap();
        assert_eq!(
            d.socket_dir, None,
            "the runtime dir's candor/ stays private"
        );
    }

    #[test]
    fn user_mode_without_its_variables_is_an_error_unless_the_paths_are_named() {
        let env = Env {
            xdg_runtime_dir: None,
            ..user_env()
        };
        let none = DaemonSpec::default();
        let err = daemon(Mode::User, None, None, &none, &env).unwrap_err();
        assert_eq!(err, PathError::NoRuntimeDir);
        assert!(err.to_string().contains("XDG_RUNTIME_DIR is not set"));
        // A socket named in the config or on the command line needs no runtime dir.
        let named = config(None, Some("/srv/c.sock"));
        assert_eq!(
            daemon(Mode::User, None, None, &named, &env).unwrap().socket,
            p("/srv/c.sock")
        );
        assert!(daemon(Mode::User, None, Some(Path::new("/a.sock")), &none, &env).is_ok());
        let env = Env {
            home: None,
            ..user_env()
        };
        assert_eq!(
            daemon(Mode::User, None, None, &none, &env).unwrap_err(),
            PathError::NoHome
        );
        assert!(daemon(Mode::User, Some(Path::new("/s")), None, &none, &env).is_ok());
    }

    #[test]
    fn flags_then_the_config_win_over_every_mode_default() {
        let env = Env {
            candor_socket: Some(p("/env.sock")),
            ..user_env()
        };
        let cfg = config(Some("/cfg/state"), Some("/cfg/c.sock"));
        for mode in [Mode::Local, Mode::System, Mode::User] {
            let d = daemon(mode, None, None, &cfg, &env).unwrap();
            assert_eq!(
                (d.state_dir, d.socket, d.socket_dir),
                (p("/cfg/state"), p("/cfg/c.sock"), None),
                "{mode:?}"
            );
            let d = daemon(
                mode,
                Some(Path::new("rel/state")),
                Some(Path::new("/cli.sock")),
                &cfg,
                &env,
            )
            .unwrap();
            assert_eq!(
                (d.state_dir, d.socket),
                (p("/home/u/src/rel/state"), p("/cli.sock")),
                "{mode:?}"
            );
        }
        // A state dir alone: the local socket goes with it, a mode's socket stays the mode's.
        let cfg = config(Some("/cfg/state"), None);
        let local = daemon(Mode::Local, None, None, &cfg, &user_env()).unwrap();
        assert_eq!(local.socket, p("/cfg/state/candor.sock"));
        let system = daemon(Mode::System, None, None, &cfg, &user_env()).unwrap();
        assert_eq!(system.socket, p("/run/candor/candor.sock"));
        let user = daemon(Mode::User, None, None, &cfg, &user_env()).unwrap();
        assert_eq!(user.socket, p("/run/user/1000/candor/candor.sock"));
    }

    #[test]
    fn a_client_finds_the_socket_a_daemon_with_the_same_config_and_mode_uses() {
        let env = user_env();
        let cfg = config(Some("/cfg/state"), None);
        for mode in [Mode::Local, Mode::System, Mode::User] {
            let daemon_socket = daemon(mode, None, None, &cfg, &env).unwrap().socket;
            assert_eq!(
                client(None, Some(&cfg), mode, &env).unwrap(),
                ClientSocket::Named(daemon_socket),
                "{mode:?}"
            );
        }
        assert_eq!(
            client(None, None, Mode::System, &env).unwrap(),
            ClientSocket::Named(p("/run/candor/candor.sock"))
        );
        assert_eq!(
            client(None, None, Mode::User, &env).unwrap(),
            ClientSocket::Named(p("/run/user/1000/candor/candor.sock"))
        );
        let env = Env {
            xdg_runtime_dir: None,
            ..user_env()
        };
        assert_eq!(
            client(None, None, Mode::User, &env),
            Err(PathError::NoRuntimeDir)
        );
    }

    #[test]
    fn a_client_takes_its_flag_then_config_or_mode_then_candor_socket_then_looks() {
        let env = Env {
            candor_socket: Some(p("/env.sock")),
            ..user_env()
        };
        let cfg = config(None, Some("/cfg.sock"));
        let named = |s: &str| Ok(ClientSocket::Named(p(s)));
        let flag = Some(Path::new("/flag.sock"));
        assert_eq!(
            client(flag, Some(&cfg), Mode::System, &env),
            named("/flag.sock")
        );
        assert_eq!(
            client(None, Some(&cfg), Mode::System, &env),
            named("/cfg.sock")
        );
        assert_eq!(
            client(None, None, Mode::System, &env),
            named("/run/candor/candor.sock")
        );
        assert_eq!(client(None, None, Mode::Local, &env), named("/env.sock"));
        // A config without a socket: as its daemon would, $CANDOR_SOCKET before the state dir.
        assert_eq!(
            client(None, Some(&DaemonSpec::default()), Mode::Local, &env),
            named("/env.sock")
        );
        assert_eq!(
            client(None, None, Mode::Local, &user_env()),
            Ok(ClientSocket::LookIn(look_in(&user_env())))
        );
    }

    #[test]
    fn a_client_told_nothing_looks_here_then_in_the_state_home_then_at_the_service() {
        assert_eq!(
            look_in(&user_env()),
            vec![
                p("/home/u/src/.candor/candor.sock"),
                p("/run/user/1000/candor/candor.sock")
            ]
        );
        let env = Env {
            xdg_state_home: Some(p("/home/u/.st")),
            ..user_env()
        };
        assert_eq!(
            look_in(&env),
            vec![
                p("/home/u/src/.candor/candor.sock"),
                p("/home/u/.st/candor/candor.sock"),
                p("/run/user/1000/candor/candor.sock")
            ]
        );
        // Root looks for the system service, even with a runtime dir of its own.
        let env = Env {
            xdg_runtime_dir: Some(p("/run/user/0")),
            ..root_env()
        };
        assert_eq!(
            look_in(&env),
            vec![p("/root/.candor/candor.sock"), p("/run/candor/candor.sock")]
        );
        // A user without a runtime dir: only the first two.
        let env = Env {
            xdg_runtime_dir: None,
            ..user_env()
        };
        assert_eq!(look_in(&env), vec![p("/home/u/src/.candor/candor.sock")]);
    }
}
