//! Telling systemd how the service is doing (`sd_notify(3)`), without linking
//! libsystemd: each notification is one datagram of `KEY=value` lines sent to the
//! socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written `@name`).
//!
//! What it does: `READY=1` once the roles serve (systemd holds `Type=notify` units in
//! "activating" until then, so units ordered after ours start only when it is usable),
//! `STOPPING=1` when a drain begins, `RELOADING=1` and `READY=1` around a reload,
//! free-form `STATUS=` for `systemctl status`, `EXTEND_TIMEOUT_USEC=` for a drain longer
//! than the unit's stop timeout, and the watchdog: with `$WATCHDOG_USEC` set (and
//! `$WATCHDOG_PID`, when set, naming this process) a tokio task sends `WATCHDOG=1` at
//! half the interval, so a runtime that stops scheduling tasks gets the process
//! restarted.
//!
//! What it does not: anything when `$NOTIFY_SOCKET` is absent (started from a shell,
//! or by a `Type=simple` unit): every call is then a no-op. It leaves the variables in
//! the environment (nothing we spawn would misuse them), does not pass file
//! descriptors to the store (`FDSTORE=1`), and does not speak the `vsock:` addresses of
//! systemd 254 for virtual machines. A notification that cannot be sent is logged and
//! dropped: the service keeps running, and systemd's own timeouts say what went wrong.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::warn;

/// Where systemd listens for this service's notifications.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A socket file, `$NOTIFY_SOCKET=/run/systemd/notify`.
    Path(PathBuf),
    /// A name in Linux's abstract socket namespace, `$NOTIFY_SOCKET=@name`.
    Abstract(Vec<u8>),
}

/// Sends this process's notifications to systemd; a no-op when systemd did not ask.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    target: Option<Target>,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for (a no-op one when it is unset).
    pub fn from_env() -> Self {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(value) => Self::for_socket(&value),
            None => Self::default(),
        }
    }

    /// The notifier for one `$NOTIFY_SOCKET` value: an absolute path, or `@` and an
    /// abstract name. Anything else is refused with a warning, as libsystemd does.
    fn for_socket(value: &OsStr) -> Self {
        let bytes = value.as_bytes();
        let target = match bytes.first() {
            Some(b'/') => Some(Target::Path(PathBuf::from(value))),
            Some(b'@') if bytes.len() > 1 => Some(Target::Abstract(bytes[1..].to_vec())),
            _ => {
                warn!(
                    "NOTIFY_SOCKET={} is neither an absolute path nor an @abstract name; systemd will not hear from this process",
                    value.to_string_lossy()
                );
                None
            }
        };
        Self { target }
    }

    /// Whether systemd listens (`$NOTIFY_SOCKET` was set and usable).
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// The roles serve: `READY=1`, with `status` for `systemctl status`. Sent again after
    /// [`reloading`](Self::reloading), it ends the reload.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A drain began: `STOPPING=1`.
    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }

    /// A new line for `systemctl status`.
    pub fn status(&self, text: &str) {
        self.notify(&format!("STATUS={}", one_line(text)));
    }

    /// A reload began: `RELOADING=1` with the `CLOCK_MONOTONIC` time systemd 253's
    /// `Type=notify-reload` requires; end it with [`ready`](Self::ready).
    pub fn reloading(&self) {
        if self.is_active() {
            self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
        }
    }

    /// Asks systemd to wait `by` more from now before it gives up on the current start,
    /// reload or stop (`EXTEND_TIMEOUT_USEC=`): a drain configured longer than the unit's
    /// `TimeoutStopSec=` is then not cut by SIGKILL. It only ever lengthens the timeout.
    pub fn extend_timeout(&self, by: Duration) {
        self.notify(&format!("EXTEND_TIMEOUT_USEC={}", by.as_micros()));
    }

    /// Starts the watchdog task when `$WATCHDOG_USEC` asks for one (and `$WATCHDOG_PID`,
    /// if set, is this process): `WATCHDOG=1` every half interval, on the current tokio
    /// runtime. `None` when no watchdog is asked for or systemd does not listen.
    pub fn spawn_watchdog(&self) -> Option<JoinHandle<()>> {
        let interval = watchdog_interval(
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )?;
        self.spawn_watchdog_every(interval / 2)
    }

    /// The watchdog task, pinging every `period`.
    fn spawn_watchdog_every(&self, period: Duration) -> Option<JoinHandle<()>> {
        let target = self.target.clone()?;
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            // A late tick (a runtime busy for a while) sends one ping, not a burst.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut warned = false;
            loop {
                ticks.tick().await;
                if let Err(e) = send(&target, "WATCHDOG=1") {
                    // Once: a socket that is gone stays gone, and the log must not fill.
                    if !warned {
                        warn!("systemd watchdog: cannot notify systemd: {e}");
                        warned = true;
                    }
                }
            }
        }))
    }

    fn notify(&self, state: &str) {
        if let Some(target) = &self.target {
            if let Err(e) = send(target, state) {
                let first = state.lines().next().unwrap_or_default();
                warn!("cannot notify systemd ({first}): {e}");
            }
        }
    }
}

/// One datagram from a fresh unbound socket. Non-blocking: a full systemd queue loses
/// this notification rather than stalling a runtime thread.
fn send(target: &Target, state: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    let sent = match target {
        Target::Path(path) => socket.send_to(state.as_bytes(), path)?,
        Target::Abstract(name) => {
            socket.send_to_addr(state.as_bytes(), &SocketAddr::from_abstract_name(name)?)?
        }
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes", state.len()),
        ));
    }
    Ok(())
}

/// The watchdog interval systemd asked for: `$WATCHDOG_USEC` microseconds, unless
/// `$WATCHDOG_PID` names another process (the variables were inherited, not meant for
/// us). Zero, unparsable or absent means no watchdog.
fn watchdog_interval(usec: Option<&OsStr>, pid: Option<&OsStr>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.to_str()?.parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    let usec: u64 = usec?.to_str()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// `STATUS=` is one line of the datagram; a newline would start a bogus assignment.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Now on `CLOCK_MONOTONIC`, the clock systemd compares `MONOTONIC_USEC=` with.
/// `std::time::Instant` reads the same clock but does not reveal its value.
#[allow(unsafe_code)]
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call;
    // CLOCK_MONOTONIC always exists on Linux, so the call cannot fail.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    debug_assert_eq!(rc, 0);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs * 1_000_000 + nanos / 1_000
}

#[cfg(test)]
#[path = "systemd_tests.rs"]
mod tests;
