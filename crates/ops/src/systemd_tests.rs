use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

use super::{monotonic_usec, send, watchdog_interval, Notifier, Target};

/// A socket standing in for systemd's, in its own directory.
struct Listener {
    dir: PathBuf,
    socket: UnixDatagram,
}

impl Listener {
    fn bind(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mg-sdnotify-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = UnixDatagram::bind(dir.join("notify")).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Self { dir, socket }
    }

    fn notifier(&self) -> Notifier {
        Notifier::for_socket(self.dir.join("notify").as_os_str())
    }

    fn next(&self) -> String {
        receive(&self.socket)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("no notification arrived");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn each_notification_is_one_exact_datagram() {
    let systemd = Listener::bind("exact");
    let notify = systemd.notifier();
    assert!(notify.is_active());

    notify.ready("edge on 127.0.0.1:8554");
    assert_eq!(systemd.next(), "READY=1\nSTATUS=edge on 127.0.0.1:8554");
    notify.status("draining 3 calls");
    assert_eq!(systemd.next(), "STATUS=draining 3 calls");
    notify.stopping();
    assert_eq!(systemd.next(), "STOPPING=1");
    notify.extend_timeout(Duration::from_secs(90));
    assert_eq!(systemd.next(), "EXTEND_TIMEOUT_USEC=90000000");
}

#[test]
fn a_status_with_newlines_stays_one_assignment() {
    let systemd = Listener::bind("newline");
    systemd.notifier().status("two\nlines\r\nSTOPPING=1");
    assert_eq!(systemd.next(), "STATUS=two lines  STOPPING=1");
}

#[test]
fn reloading_carries_the_monotonic_time_of_the_reload() {
    let systemd = Listener::bind("reload");
    let before = monotonic_usec();
    systemd.notifier().reloading();
    let after = monotonic_usec();
    let datagram = systemd.next();
    let usec: u64 = datagram
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{datagram:?}"))
        .parse()
        .unwrap();
    assert!(before <= usec && usec <= after, "{before} {usec} {after}");
}

#[test]
fn an_abstract_name_reaches_an_abstract_socket() {
    let name = format!("mg-sdnotify-abstract-{}", std::process::id());
    let socket =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let notify = Notifier::for_socket(OsStr::new(&format!("@{name}")));
    assert_eq!(
        notify.target,
        Some(Target::Abstract(name.as_bytes().to_vec()))
    );
    notify.ready("up");
    assert_eq!(receive(&socket), "READY=1\nSTATUS=up");
}

#[test]
fn without_a_usable_socket_nothing_is_sent() {
    for value in ["", "@", "relative/notify", "vsock:2:1234"] {
        let notify = Notifier::for_socket(OsStr::new(value));
        assert!(!notify.is_active(), "{value:?}");
    }
    let notify = Notifier::default();
    assert!(!notify.is_active());
    // Calls on an inactive notifier are no-ops; they must not panic or block.
    notify.ready("up");
    notify.reloading();
    notify.stopping();
}

#[test]
fn a_socket_nobody_listens_on_is_an_error_not_a_hang() {
    let dir = std::env::temp_dir().join(format!("mg-sdnotify-gone-{}", std::process::id()));
    let target = Target::Path(dir.join("notify"));
    assert!(send(&target, "READY=1").is_err());
    // The public call logs and carries on.
    Notifier {
        target: Some(target),
    }
    .ready("up");
}

#[test]
fn the_watchdog_interval_comes_from_watchdog_usec_for_this_pid_only() {
    let os = |s: &'static str| Some(OsStr::new(s));
    assert_eq!(
        watchdog_interval(os("200000"), None, 42),
        Some(Duration::from_millis(200))
    );
    assert_eq!(
        watchdog_interval(os("200000"), os("42"), 42),
        Some(Duration::from_millis(200))
    );
    assert_eq!(watchdog_interval(os("200000"), os("41"), 42), None);
    assert_eq!(watchdog_interval(os("200000"), os("x"), 42), None);
    assert_eq!(watchdog_interval(None, os("42"), 42), None);
    assert_eq!(watchdog_interval(os("0"), None, 42), None);
    assert_eq!(watchdog_interval(os("-5"), None, 42), None);
    assert_eq!(watchdog_interval(os("1.5s"), None, 42), None);
}

#[tokio::test]
async fn the_watchdog_task_pings_repeatedly() {
    let systemd = Listener::bind("watchdog");
    let task = systemd
        .notifier()
        .spawn_watchdog_every(Duration::from_millis(20))
        .expect("an active notifier starts the watchdog");
    let socket = systemd.socket.try_clone().unwrap();
    let pings =
        tokio::task::spawn_blocking(move || (0..3).map(|_| receive(&socket)).collect::<Vec<_>>())
            .await
            .unwrap();
    assert_eq!(pings, ["WATCHDOG=1"; 3]);
    task.abort();
}

#[tokio::test]
async fn no_watchdog_task_when_systemd_does_not_listen() {
    assert!(Notifier::default()
        .spawn_watchdog_every(Duration::from_millis(20))
        .is_none());
}
