//! rsyslog (Debian's package) as the syslog receiver of the forwarding tests: its own config,
//! work directory and pid file in the test's temp dir; two Unix sockets (one read as `/dev/log`
//! is read — BSD messages without a hostname —, one that parses RFC 5424 too), UDP and TCP
//! (octet-counted frames) on loopback; every message written to one file as the fields the
//! tests look at.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use candor_scenarios::{free_port, tool, wait_for};

pub struct Rsyslog {
    /// A socket read as `/dev/log` is: rsyslog's imuxsock with its defaults.
    pub dev_log: PathBuf,
    /// A socket whose messages go through rsyslog's parsers (RFC 5424 or 3164, hostname too).
    pub socket: PathBuf,
    pub udp: u16,
    pub tcp: u16,
    out: PathBuf,
    child: Child,
}

/// One message as rsyslog parsed it.
#[derive(Clone, Debug)]
pub struct Received {
    /// imuxsock, imudp or imtcp.
    pub input: String,
    pub facility: u8,
    pub severity: u8,
    pub app: String,
    pub procid: String,
    pub msgid: String,
    pub structured_data: String,
    pub msg: String,
}

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

impl Rsyslog {
    /// A running rsyslogd in `dir`, or None (skipped, or a failure where CANDOR_REQUIRE_ROOT=1)
    /// where Debian's rsyslog is not installed.
    pub fn start(dir: &Path) -> Option<Rsyslog> {
        if !tool(
            RSYSLOGD,
            &["-v"],
            "Debian's rsyslog is not installed (scripts/test.sh installs it)",
        ) {
            return None;
        }
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let (udp, tcp) = (free_port(), free_port());
        let (dev_log, socket, out) = (
            dir.join("dev-log"),
            dir.join("log.sock"),
            dir.join("syslog.out"),
        );
        // Fields split by `|`, the message last (it may hold anything).
        let conf = format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{dev_log}" RateLimit.Interval="0")
input(type="imuxsock" Socket="{socket}" RateLimit.Interval="0" UseSpecialParser="off" ParseHostname="on")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp}" RateLimit.Interval="0")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="fields" type="string"
  string="%inputname%|%syslogfacility%|%syslogseverity%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
*.* action(type="omfile" file="{out}" template="fields")
"#,
            work = work.display(),
            dev_log = dev_log.display(),
            socket = socket.display(),
            out = out.display(),
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rsyslogd");
        let rs = Rsyslog {
            dev_log,
            socket,
            udp,
            tcp,
            out,
            child,
        };
        rs.wait_listening();
        Some(rs)
    }

    /// Until a message of the test's own has come in through each input.
    fn wait_listening(&self) {
        use std::io::Write;
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        wait_for("rsyslogd to take messages", Duration::from_secs(20), || {
            let _ = tx.send_to(b"<14>probe: dev-log", &self.dev_log);
            let _ = tx.send_to(b"<14>probe: socket", &self.socket);
            let _ = udp.send_to(b"<14>probe: udp", ("127.0.0.1", self.udp));
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.tcp)) {
                let _ = s.write_all(b"14 <14>probe: tcp");
            }
            let got = self.received();
            ["dev-log", "socket", "udp", "tcp"]
                .iter()
                .all(|w| got.iter().any(|r| r.app == "probe" && r.msg.ends_with(w)))
                .then_some(())
        });
    }

    /// Every message so far, the test's own probes left out.
    pub fn messages(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.app != "probe")
            .collect()
    }

    fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.splitn(8, '|').collect();
                let [input, facility, severity, app, procid, msgid, sd, msg] = f[..] else {
                    return None;
                };
                Some(Received {
                    input: input.into(),
                    facility: facility.parse().ok()?,
                    severity: severity.parse().ok()?,
                    app: app.into(),
                    procid: procid.into(),
                    msgid: msgid.into(),
                    structured_data: sd.into(),
                    // BSD messages keep the space after `TAG:`.
                    msg: msg.strip_prefix(' ').unwrap_or(msg).into(),
                })
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
