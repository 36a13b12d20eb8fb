//! mediagate as a systemd service: the shipped unit passes `systemd-analyze verify`,
//! and the real binary speaks `sd_notify` to a socket standing in for systemd's
//! (`READY=1` once the edge listens, `WATCHDOG=1` when asked, `STOPPING=1` on SIGTERM).
//! PID 1 here is not systemd, so the unit itself is never started.

use std::net::TcpStream;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mediagate_testkit::ports::{free_tcp_port, free_udp_port};
use mediagate_testkit::process::{require_program, Peer};

const UNIT: &str = include_str!("../../../config/mediagate.service");
const SHIPPED_EXEC_START: &str =
    "ExecStart=/usr/local/bin/mediagate run --config /etc/mediagate/mediagate.toml";

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-systemd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The value of the unit's `key=` line in `[Service]`.
fn service_value(key: &str) -> &'static str {
    let prefix = format!("{key}=");
    UNIT.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("the unit has no {key}= line"))
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let analyze = require_program("systemd-analyze", "systemd").unwrap();
    assert!(
        UNIT.lines().any(|l| l == SHIPPED_EXEC_START),
        "the unit's ExecStart changed; update this test and the README"
    );
    // verify checks that ExecStart names an executable: point it at the one just built.
    let dir = workdir("verify");
    let unit = dir.join("mediagate.service");
    let exec_start = format!(
        "ExecStart={} run --config /etc/mediagate/mediagate.toml",
        env!("CARGO_BIN_EXE_mediagate")
    );
    std::fs::write(&unit, UNIT.replace(SHIPPED_EXEC_START, &exec_start)).unwrap();

    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A key it cannot parse is only a warning ("…, ignoring") with exit status 0, so any
    // output about our unit is a failure. verify also loads the units ours may pull in
    // and warns about their files (a Debian package's own unit, such as freeradius's
    // `MemoryLimit=`): those lines name another unit file and are not ours to fix.
    let ours = unit.display().to_string();
    let complaints: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.starts_with('/') || l.starts_with(&ours))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify complains ({}):\n{stdout}{stderr}",
        out.status
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_stop_timeout_outlasts_the_default_relay_drain() {
    let stop = service_value("TimeoutStopSec");
    let secs: u64 = stop
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("TimeoutStopSec={stop} is not in seconds"));
    let drain = mediagate_config::Config::default()
        .relay
        .shutdown_max_wait
        .get();
    assert!(
        Duration::from_secs(secs) > drain,
        "TimeoutStopSec={stop} would SIGKILL the relay's default {drain:?} drain"
    );
    assert_eq!(service_value("Type"), "notify");
    assert_eq!(service_value("ExecReload"), "/bin/kill -HUP $MAINPID");
}

/// A socket standing in for systemd's notify socket.
struct FakeSystemd {
    socket: UnixDatagram,
    /// What `$NOTIFY_SOCKET` says.
    address: String,
}

impl FakeSystemd {
    fn at_path(path: &Path) -> Self {
        let socket = UnixDatagram::bind(path).unwrap();
        Self::with(socket, path.display().to_string())
    }

    fn abstract_named(name: &str) -> Self {
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        Self::with(UnixDatagram::bind_addr(&addr).unwrap(), format!("@{name}"))
    }

    fn with(socket: UnixDatagram, address: String) -> Self {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Self { socket, address }
    }

    /// The next datagram, or `None` if none came within `wait`.
    fn next_within(&self, wait: Duration, peer: &Peer) -> Option<String> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.socket.recv(&mut buf) {
                Ok(n) => return Some(String::from_utf8(buf[..n].to_vec()).unwrap()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("{e}\n{}", peer.diagnostics()),
            }
        }
        None
    }

    /// Every datagram until one that starts with `first_line`, which is returned last.
    fn until(&self, first_line: &str, peer: &Peer) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left, peer) {
                Some(d) => {
                    let done = d.lines().next() == Some(first_line);
                    seen.push(d);
                    if done {
                        return seen;
                    }
                }
                None => panic!(
                    "no {first_line} from mediagate; got {seen:?}\n{}",
                    peer.diagnostics()
                ),
            }
        }
    }
}

fn spawn(config: &Path, dir: &Path, envs: &[(&str, &str)]) -> Peer {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("run").arg("--config").arg(config).current_dir(dir);
    cmd.env_remove("WATCHDOG_PID").env_remove("WATCHDOG_USEC");
    cmd.envs(envs.iter().copied());
    Peer::spawn("mediagate", cmd).unwrap()
}

#[test]
fn ready_once_the_edge_listens_then_watchdog_then_stopping() {
    let dir = workdir("notify");
    let port = free_tcp_port().unwrap();
    let config = dir.join("mediagate.toml");
    std::fs::write(
        &config,
        format!("state_dir = \"./var\"\n[edge]\nlisten = [\"127.0.0.1:{port}\"]\n"),
    )
    .unwrap();
    let systemd = FakeSystemd::at_path(&dir.join("notify"));
    let peer = spawn(
        &config,
        &dir,
        &[
            ("NOTIFY_SOCKET", systemd.address.as_str()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );

    let before_ready = systemd.until("READY=1", &peer);
    // READY=1 promises a working service: the edge accepts at once.
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "READY=1 came before the edge listened\n{}",
        peer.diagnostics()
    );
    let ready = before_ready.last().unwrap();
    assert_eq!(
        ready,
        &format!("READY=1\nSTATUS=serving: edge on 127.0.0.1:{port}")
    );
    assert!(
        before_ready[..before_ready.len() - 1]
            .iter()
            .all(|d| d == "WATCHDOG=1"),
        "{before_ready:?}"
    );

    // 200 ms asked for: a ping every 100 ms, so three arrive well within the deadline.
    for _ in 0..3 {
        let seen = systemd.until("WATCHDOG=1", &peer);
        assert_eq!(seen, ["WATCHDOG=1"]);
    }

    peer.signal("TERM");
    let before_stop = systemd.until("STOPPING=1", &peer);
    assert_eq!(before_stop.last().unwrap(), "STOPPING=1");
    assert!(
        before_stop[..before_stop.len() - 1]
            .iter()
            .all(|d| d == "WATCHDOG=1"),
        "{before_stop:?}"
    );
    let status = peer.wait_timeout(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        peer.diagnostics()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn relay_alone_on_an_abstract_socket_asks_for_its_drain_time_and_no_foreign_watchdog() {
    let dir = workdir("notify-relay");
    let ng = free_udp_port().unwrap();
    let config = dir.join("mediagate.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"./var\"\n[edge]\nenabled = false\n\
             [relay]\nenabled = true\nng_listen_udp = [\"127.0.0.1:{ng}\"]\n\
             media_address = [{{ address = \"127.0.0.1\" }}]\nshutdown_max_wait = \"5s\"\n"
        ),
    )
    .unwrap();
    let systemd = FakeSystemd::abstract_named(&format!("mg-systemd-relay-{}", std::process::id()));
    let peer = spawn(
        &config,
        &dir,
        &[
            ("NOTIFY_SOCKET", systemd.address.as_str()),
            ("WATCHDOG_USEC", "200000"),
            // Inherited from some other service: not ours, so no watchdog pings.
            ("WATCHDOG_PID", "1"),
        ],
    );

    assert_eq!(
        systemd.until("READY=1", &peer),
        ["READY=1\nSTATUS=serving: relay"]
    );
    assert_eq!(
        systemd.next_within(Duration::from_millis(600), &peer),
        None,
        "a watchdog ping for another process's WATCHDOG_PID"
    );

    peer.signal("TERM");
    assert_eq!(systemd.until("STOPPING=1", &peer), ["STOPPING=1"]);
    // shutdown_max_wait (5 s) plus 30 s to write the records.
    assert_eq!(
        systemd.until("EXTEND_TIMEOUT_USEC=35000000", &peer),
        ["EXTEND_TIMEOUT_USEC=35000000"]
    );
    let status = peer.wait_timeout(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        peer.diagnostics()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
