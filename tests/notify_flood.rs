//! The sd_notify socket against a hostile local user: a flood of datagrams from another uid
//! restarts no watchdog service and is counted; the socket's path cannot be taken or replaced
//! by another user, and a symlink left at it is replaced, never followed; a service's child
//! (systemd-notify) still makes it ready. Real daemon, real zoo processes, a real uid 65534.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candor_scenarios::{alive, available, Daemon};

const T: Duration = Duration::from_secs(20);
const NOBODY: u32 = 65534;

/// The daemon's notify socket, as services get it in `NOTIFY_SOCKET`.
fn notify_socket(d: &Daemon) -> String {
    d.info()["notify"]["socket"].as_str().unwrap().to_string()
}

fn counter(d: &Daemon, name: &str) -> u64 {
    d.info()["notify"][name].as_u64().unwrap_or(0)
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    available(
        "CANDOR_REQUIRE_ROOT",
        "these tests run a process as uid 65534 (needs root)",
        unsafe { libc::geteuid() } == 0,
    )
}

/// A `sockaddr_un` for a `NOTIFY_SOCKET` value (`@name`: abstract), made before a fork.
fn sockaddr(socket: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes: Vec<u8> = match socket.strip_prefix('@') {
        Some(name) => std::iter::once(0).chain(name.bytes()).collect(),
        None => socket.bytes().collect(),
    };
    assert!(bytes.len() < addr.sun_path.len(), "{socket} is too long");
    for (i, b) in bytes.iter().enumerate() {
        addr.sun_path[i] = *b as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>()
        + bytes.len()
        + usize::from(!socket.starts_with('@'));
    (addr, len as libc::socklen_t)
}

/// Run `f` in a forked child that has become uid/gid 65534 first; its exit code. The child
/// only makes system calls (nothing that could wait on a lock another thread of this test held
/// at the fork).
fn as_nobody(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child calls only async-signal-safe functions (setgroups, setgid, setuid, the
    // socket calls in `f`, _exit) before it exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                libc::_exit(100);
            }
            libc::_exit(f());
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status),
        "the child as nobody died: {status}"
    );
    let code = libc::WEXITSTATUS(status);
    assert_ne!(code, 100, "could not become uid {NOBODY}");
    code
}

/// Send `msg` to `socket` as uid 65534, as fast as one process can, for `secs`.
fn flood(socket: &str, msg: &'static [u8], secs: i64) -> std::thread::JoinHandle<i32> {
    let (addr, len) = sockaddr(socket);
    std::thread::spawn(move || {
        as_nobody(move || unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0);
            if fd < 0 {
                return 2;
            }
            let mut start: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut start);
            let mut sent: u64 = 0;
            loop {
                for _ in 0..64 {
                    let r = libc::sendto(
                        fd,
                        msg.as_ptr().cast(),
                        msg.len(),
                        0,
                        (&addr as *const libc::sockaddr_un).cast(),
                        len,
                    );
                    if r >= 0 {
                        sent += 1;
                    }
                }
                let mut now: libc::timespec = std::mem::zeroed();
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
                if now.tv_sec - start.tv_sec >= secs {
                    break;
                }
            }
            // Whether any datagram got through at all (the socket was reachable).
            i32::from(sent == 0) * 3
        })
    })
}

#[test]
fn a_notify_flood_from_another_user_restarts_no_watchdog_service_and_is_counted() {
    if !is_root() {
        return;
    }
    // The service runs as the same uid as the flooder: its own pings are never rate limited.
    let born = Instant::now();
    let d = Daemon::start(
        r#"
[service.dog]
command = ["{zoo}", "watchdog-stall", "--after", "1h", "--every", "500ms"]
ready = "notify"
watchdog = "2s"
user = "nobody"
workdir = "/"
"#,
    );
    let s = d.wait_state("dog", "running", T);
    let pid = s["pid"].as_u64().unwrap();
    let socket = notify_socket(&d);
    let started = Instant::now();
    let floods = [
        flood(&socket, b"WATCHDOG=1", 15),
        flood(&socket, b"READY=1\nSTATUS=pwned", 15),
    ];
    // Watch throughout: a restart that comes and goes between two looks still shows in
    // `restarts`.
    while started.elapsed() < Duration::from_secs(15) {
        let s = d.status("dog");
        assert_eq!(s["restarts"], 0, "restarted under the flood: {s}");
        assert_eq!(s["pid"], pid, "{s}");
        std::thread::sleep(Duration::from_millis(500));
    }
    for f in floods {
        assert_eq!(f.join().unwrap(), 0, "the flood reached the socket");
    }
    // One more watchdog period after the flood: still the same run.
    std::thread::sleep(Duration::from_secs(2));
    let s = d.status("dog");
    assert_eq!(s["restarts"], 0, "{s}");
    assert_eq!(s["pid"], pid, "{s}");
    assert_eq!(s["state"], "running", "{s}");
    assert_ne!(
        s["status_text"], "pwned",
        "a stranger's STATUS is not the service's: {s}"
    );
    assert!(alive(pid));
    eprintln!("after the flood: {}", d.info()["notify"]);
    let limited = counter(&d, "dropped_rate_limited");
    let strangers = counter(&d, "dropped_strangers");
    assert!(limited > 0, "{}", d.info());
    assert!(strangers > 0, "{}", d.info());
    // Only a uid's budget of senders is looked up in /proc (200 at once, then 100 a second):
    // the rest cost nothing but their count.
    let budget = 200 + 100 * (born.elapsed().as_secs() + 1);
    assert!(
        strangers <= budget,
        "{strangers} looked up, budget {budget}"
    );
    assert!(
        counter(&d, "received") >= limited + strangers,
        "{}",
        d.info()
    );
    let events = d.events();
    assert!(
        !events
            .iter()
            .any(|e| e["service"] == "dog"
                && e["reason"].as_str().unwrap_or("").contains("watchdog")),
        "{events:?}"
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn another_user_cannot_take_or_replace_the_notify_socket_and_a_symlink_there_is_not_followed() {
    if !is_root() {
        return;
    }
    let mut d = Daemon::start(
        r#"
[service.slow]
command = ["{zoo}", "slow-ready", "--after", "200ms"]
ready = "notify"
user = "nobody"
workdir = "/"
"#,
    );
    let socket = notify_socket(&d);
    assert!(
        socket.starts_with('/'),
        "a path in a directory, not an abstract name anyone may bind first: {socket}"
    );
    let path = PathBuf::from(&socket);
    let dir = path.parent().unwrap().to_path_buf();
    let dir_meta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(dir_meta.is_dir());
    assert_eq!(dir_meta.uid(), 0, "the daemon's own directory");
    assert_eq!(
        mode(&dir) & 0o022,
        0,
        "writable by no one else: {:o}",
        mode(&dir)
    );
    assert_eq!(
        mode(&dir) & 0o001,
        0o001,
        "other users' services pass through"
    );
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.uid(), 0);
    assert_eq!(mode(&path), 0o666, "any service user may send");
    // A service running as another user reached it.
    let s = d.wait_state("slow", "running", T);
    assert_eq!(s["ready"]["via"], "notify", "{s}");

    // uid 65534 can neither bind a name of its own there, nor remove or replace the socket.
    let (squat, squat_len) = sockaddr(&dir.join("squat.sock").display().to_string());
    let c_path = std::ffi::CString::new(socket.clone()).unwrap();
    let c_other = std::ffi::CString::new(dir.join("other").display().to_string()).unwrap();
    let code = as_nobody(move || unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0);
        let bound = libc::bind(fd, (&squat as *const libc::sockaddr_un).cast(), squat_len);
        if bound == 0 || *libc::__errno_location() != libc::EACCES {
            return 1;
        }
        if libc::unlink(c_path.as_ptr()) == 0 || *libc::__errno_location() != libc::EACCES {
            return 2;
        }
        if libc::symlink(c_other.as_ptr(), c_other.as_ptr()) == 0 {
            return 3;
        }
        0
    });
    assert_eq!(
        code, 0,
        "1: bound a socket there, 2: unlinked the socket, 3: made a file there"
    );
    assert!(!dir.join("squat.sock").exists());
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());

    // Something left at the path while no daemon runs (only root could put it there now):
    // the next daemon replaces it, never following it, and says so.
    d.shutdown();
    let victim = d.path("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let _ = std::fs::remove_file(&path);
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    d.spawn();
    assert_eq!(notify_socket(&d), socket, "the same path again");
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket(), "the symlink was replaced");
    assert_eq!(
        mode(&victim),
        0o600,
        "the symlink's target was not chmod-ed"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    let log = d.log();
    assert!(
        log.contains(&format!(
            "{socket} was a symlink of uid 0, not this daemon's notify socket; replaced it (not followed)"
        )),
        "{log}"
    );
    let s = d.wait_state("slow", "running", T);
    assert_eq!(s["ready"]["via"], "notify", "{s}");
    // An orderly shutdown takes its socket away.
    d.shutdown();
    assert!(
        std::fs::symlink_metadata(&path).is_err(),
        "{socket} left behind"
    );

    // Something of another user's at the path (only root could put it there) is left alone:
    // the daemon binds elsewhere and says so.
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    std::os::unix::fs::lchown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
    d.spawn();
    let elsewhere = notify_socket(&d);
    assert_ne!(elsewhere, socket);
    assert!(
        elsewhere.starts_with("/tmp/candor-notify-0-"),
        "{elsewhere}"
    );
    assert!(std::fs::symlink_metadata(&path).unwrap().is_symlink());
    let log = d.log();
    assert!(
        log.contains(&format!(
            "{socket} is a symlink of uid {NOBODY}, not this daemon's uid 0; left alone"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("notify socket at {elsewhere}")),
        "{log}"
    );
    let s = d.wait_state("slow", "running", T);
    assert_eq!(s["ready"]["via"], "notify", "{s}");
    d.shutdown();
    std::fs::remove_file(&path).unwrap();
    let _ = std::fs::remove_dir(Path::new(&elsewhere).parent().unwrap());
}

/// Debian's `systemd-notify`, which scripts/test.sh installs where it can.
fn systemd_notify() -> Option<String> {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v systemd-notify"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    available(
        "CANDOR_REQUIRE_ROOT",
        "no systemd-notify (Debian's systemd package; scripts/test.sh installs it as root)",
        found.is_some(),
    )
    .then_some(found?)
}

#[test]
fn a_notify_from_a_child_of_a_service_of_another_user_makes_it_ready() {
    if !is_root() {
        return;
    }
    let Some(bin) = systemd_notify() else {
        return;
    };
    // The sender is no run's main process: it is found by its process group, within its
    // uid's budget, and its BARRIER is released once it is.
    let d = Daemon::start(&format!(
        r#"
[service.wrapped]
command = ["/bin/sh", "-c", "sleep 0.3; {bin} --ready --status='from a child'; exec sleep 100000"]
ready = "notify"
user = "nobody"
workdir = "/"
"#
    ));
    let s = d.wait_state("wrapped", "running", T);
    assert_eq!(s["ready"]["via"], "notify", "{s}");
    assert_eq!(s["status_text"], "from a child", "{s}");
    assert_eq!(counter(&d, "dropped_strangers"), 0, "{}", d.info());
    assert_eq!(counter(&d, "dropped_rate_limited"), 0, "{}", d.info());
}

#[test]
fn a_watchdog_service_keeps_its_run_across_kill_9_and_upgrade_at_the_same_socket_path() {
    // The next daemon binds the same path again (a rename over what the last one left), so a
    // service's pings never go anywhere else.
    let mut d = Daemon::start(
        r#"
[service.dog]
command = ["{zoo}", "watchdog-stall", "--after", "1h", "--every", "500ms"]
ready = "notify"
watchdog = "2s"
"#,
    );
    let pid = d.wait_state("dog", "running", T)["pid"].as_u64().unwrap();
    let socket = notify_socket(&d);
    let same_run = |d: &Daemon, when: &str| {
        // Past two watchdog periods: a ping that went nowhere would have restarted it.
        let before = counter(d, "received");
        std::thread::sleep(Duration::from_secs(5));
        let s = d.status("dog");
        assert_eq!(s["pid"], pid, "{when}: {s}");
        assert_eq!(s["state"], "running", "{when}: {s}");
        assert_eq!(s["restarts"], 0, "{when}: {s}");
        assert!(counter(d, "received") > before, "{when}: {}", d.info());
        assert_eq!(counter(d, "dropped_strangers"), 0, "{when}: {}", d.info());
        assert_eq!(
            counter(d, "dropped_rate_limited"),
            0,
            "{when}: {}",
            d.info()
        );
    };
    d.kill_daemon();
    d.spawn();
    assert_eq!(notify_socket(&d), socket);
    same_run(&d, "after kill -9");
    // `candor upgrade` hands the bound socket itself to the new binary: what is sent during
    // the exec waits in it, and the file at the path is the same socket.
    let ino = || std::fs::symlink_metadata(&socket).unwrap().ino();
    let before = ino();
    let out = d.ok(&["upgrade"]);
    assert!(out.starts_with("upgraded: pid "), "{out}");
    assert_eq!(notify_socket(&d), socket);
    assert_eq!(ino(), before, "the same socket, not one bound anew");
    same_run(&d, "after candor upgrade");
}
