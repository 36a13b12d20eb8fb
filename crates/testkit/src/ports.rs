//! Free loopback ports for peers that must be told a port number in advance.
//!
//! Prefer letting a program bind port 0 and report what it got (the origin does). When a
//! number must be chosen first, these helpers pick one that is bindable now and, within
//! this test process, never hand out the same number twice, so parallel tests do not
//! collide with each other. RTP/RTCP pairs are an even port and the next one
//! (RFC 3550 §11).
//!
//! Between the check here and the peer's own bind the port is free, and a port the
//! kernel chose (bind to port 0) could be taken in that window by anything that needs an
//! ephemeral port: every outgoing connection of every process on the machine, and the
//! other test binaries running at the same time asking the kernel the same way. So the
//! numbers come from below the kernel's ephemeral range (and below the edge's and the
//! relay's default media ranges), from a block of its own for each test process: a slot
//! held with `flock(2)` on a file in the temp dir, which the kernel lets go when the
//! process ends, however it ends. Only when no slot or block is left does this fall back
//! to a kernel-chosen port.
//!
//! What it does not do: reserve ports against programs that bind fixed numbers in the
//! band (any such port fails the bind check and is skipped), or IPv6.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::ops::Range;
use std::sync::{Mutex, OnceLock};

/// How many kernel-chosen ports to try before giving up.
const ATTEMPTS: usize = 64;

fn handed_out() -> std::sync::MutexGuard<'static, HashSet<(bool, u16)>> {
    static SET: OnceLock<Mutex<HashSet<(bool, u16)>>> = OnceLock::new();
    SET.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Records `port` as handed out; false if it already was.
fn claim(udp: bool, port: u16) -> bool {
    handed_out().insert((udp, port))
}

const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Lowest port of the band handed out (above the registered services tests run, such as
/// PostgreSQL's 5432 and SIP's 5060).
const BAND_LOW: u16 = 10_000;
/// One past the band's highest port: the edge's default UDP media range starts here, and
/// the relay's follows it.
const BAND_END: u16 = 16_384;
/// Ports in each test process's block; the band holds `(BAND_END - BAND_LOW) / BLOCK`.
const BLOCK: u16 = 400;

/// The kernel's ephemeral range, `ip_local_port_range`; `None` if unreadable.
fn ephemeral_range() -> Option<Range<u16>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u16>().ok());
    let (low, high) = (it.next()??, it.next()??);
    Some(low..high.saturating_add(1))
}

/// This process's block of the band, claimed on first use; `None` when every slot is
/// held by other processes (or the band overlaps the ephemeral range).
fn block() -> Option<Range<u16>> {
    static BLOCK_OF_PROCESS: OnceLock<Option<Range<u16>>> = OnceLock::new();
    BLOCK_OF_PROCESS.get_or_init(claim_block).clone()
}

fn claim_block() -> Option<Range<u16>> {
    use std::os::fd::AsRawFd;
    let ephemeral = ephemeral_range().unwrap_or(32_768..61_000);
    if ephemeral.start < BAND_END && BAND_LOW < ephemeral.end {
        return None;
    }
    let dir = std::env::temp_dir().join("mediagate-testkit-ports");
    std::fs::create_dir_all(&dir).ok()?;
    for slot in 0..(BAND_END - BAND_LOW) / BLOCK {
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("slot-{slot}")))
        else {
            continue;
        };
        if flock_exclusive(file.as_raw_fd()) {
            // Held open for the life of the process: closing it would release the lock.
            std::mem::forget(file);
            let start = BAND_LOW + slot * BLOCK;
            return Some(start..start + BLOCK);
        }
    }
    None
}

/// Takes an exclusive `flock` on `fd` without waiting; false if another process holds it.
#[allow(unsafe_code)]
fn flock_exclusive(fd: libc::c_int) -> bool {
    // SAFETY: flock(2) on a descriptor we own; no memory is passed.
    unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// The next port of this process's block (per protocol) that is bindable now and not
/// handed out before, a multiple of `step` with the `step - 1` ports after it in the
/// block too; `bindable` checks a candidate. `None` once the block is used up.
fn from_block(udp: bool, step: u16, mut bindable: impl FnMut(u16) -> bool) -> Option<u16> {
    // Candidates looked at so far, per protocol. The walk through the block starts at
    // an offset of the process's own: a block taken over from a process that ended a
    // moment ago (its ports may still have connections in TIME_WAIT) is not walked
    // again from the same port.
    static SCANNED: Mutex<[u16; 2]> = Mutex::new([0, 0]);
    let block = block()?;
    let len = block.end - block.start;
    let offset = u16::try_from(std::process::id() % u32::from(len)).unwrap_or(0);
    let mut scanned = SCANNED.lock().unwrap_or_else(|e| e.into_inner());
    let n = &mut scanned[usize::from(udp)];
    while *n < len {
        let port = block.start + (offset + *n) % len;
        *n += 1;
        let fits = port % step == 0 && port.checked_add(step - 1).is_some_and(|l| l < block.end);
        if fits && (0..step).all(|i| !handed_out().contains(&(udp, port + i))) && bindable(port) {
            for i in 0..step {
                claim(udp, port + i);
            }
            return Some(port);
        }
    }
    None
}

/// A loopback TCP port that was free a moment ago and is not handed out again by this
/// process.
pub fn free_tcp_port() -> io::Result<u16> {
    if let Some(port) = from_block(false, 1, |p| {
        TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok()
    }) {
        return Ok(port);
    }
    for _ in 0..ATTEMPTS {
        let port = TcpListener::bind(LOOPBACK)?.local_addr()?.port();
        if claim(false, port) {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "no free loopback TCP port found",
    ))
}

/// A loopback UDP port that was free a moment ago and is not handed out again by this
/// process.
pub fn free_udp_port() -> io::Result<u16> {
    if let Some(port) = from_block(true, 1, |p| {
        UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).is_ok()
    }) {
        return Ok(port);
    }
    for _ in 0..ATTEMPTS {
        let port = UdpSocket::bind(LOOPBACK)?.local_addr()?.port();
        if claim(true, port) {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "no free loopback UDP port found",
    ))
}

/// Two bound loopback UDP sockets on an even port and the next (odd) one: an RTP/RTCP pair.
#[derive(Debug)]
pub struct UdpPortPair {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl UdpPortPair {
    /// Binds an even/odd pair of loopback UDP ports.
    pub fn reserve() -> io::Result<UdpPortPair> {
        let bind = |p: u16| UdpSocket::bind((Ipv4Addr::LOCALHOST, p));
        let mut held = None;
        let from_band = from_block(true, 2, |base| match (bind(base), bind(base + 1)) {
            (Ok(rtp), Ok(rtcp)) => {
                held = Some((rtp, rtcp));
                true
            }
            _ => false,
        });
        // `held` is the last checked pair, which is the one handed out when there is one.
        if let (Some(_), Some((rtp, rtcp))) = (from_band, held) {
            return Ok(UdpPortPair { rtp, rtcp });
        }
        for _ in 0..ATTEMPTS {
            let probe = UdpSocket::bind(LOOPBACK)?;
            let port = probe.local_addr()?.port();
            // Step to an even base below the odd kernel pick so the pair stays in range.
            let base = port & !1;
            let Some(next) = base.checked_add(1) else {
                continue;
            };
            drop(probe);
            let rtp = match UdpSocket::bind((Ipv4Addr::LOCALHOST, base)) {
                Ok(s) => s,
                Err(_) => continue,
            };
            let rtcp = match UdpSocket::bind((Ipv4Addr::LOCALHOST, next)) {
                Ok(s) => s,
                Err(_) => continue,
            };
            if !claim(true, base) {
                continue;
            }
            if !claim(true, next) {
                continue;
            }
            return Ok(UdpPortPair { rtp, rtcp });
        }
        Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "no free even/odd loopback UDP port pair found",
        ))
    }

    /// The RTP (even) and RTCP (odd) port numbers.
    pub fn ports(&self) -> (u16, u16) {
        let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
        (port(&self.rtp), port(&self.rtcp))
    }

    /// Keeps using the bound sockets (e.g. to receive RTP in the test itself).
    pub fn into_sockets(self) -> (UdpSocket, UdpSocket) {
        (self.rtp, self.rtcp)
    }

    /// Closes the sockets so a peer can bind the ports; returns the port numbers.
    pub fn release(self) -> (u16, u16) {
        self.ports()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_ports_are_bindable_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..20 {
            let p = free_tcp_port().unwrap();
            assert_ne!(p, 0);
            assert!(seen.insert(p), "port {p} handed out twice");
        }
        let p = free_tcp_port().unwrap();
        TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
    }

    #[test]
    fn udp_ports_are_bindable_and_distinct() {
        let a = free_udp_port().unwrap();
        let b = free_udp_port().unwrap();
        assert_ne!(a, b);
        UdpSocket::bind((Ipv4Addr::LOCALHOST, a)).unwrap();
    }

    #[test]
    fn pair_is_even_then_odd_and_released_ports_bind() {
        let pair = UdpPortPair::reserve().unwrap();
        let (rtp, rtcp) = pair.ports();
        assert_eq!(rtp % 2, 0);
        assert_eq!(rtcp, rtp + 1);
        // While held, the ports are taken.
        assert!(UdpSocket::bind((Ipv4Addr::LOCALHOST, rtp)).is_err());
        let (r1, r2) = pair.release();
        assert_eq!((r1, r2), (rtp, rtcp));
        UdpSocket::bind((Ipv4Addr::LOCALHOST, rtp)).unwrap();
        UdpSocket::bind((Ipv4Addr::LOCALHOST, rtcp)).unwrap();
    }

    #[test]
    fn ports_come_from_this_processs_block_below_the_ephemeral_range() {
        let block = block().expect("a free slot of the band");
        assert!(
            BAND_LOW <= block.start && block.end <= BAND_END,
            "{block:?}"
        );
        if let Some(ephemeral) = ephemeral_range() {
            assert!(block.end <= ephemeral.start || ephemeral.end <= block.start);
        }
        let tcp = free_tcp_port().unwrap();
        let udp = free_udp_port().unwrap();
        let (rtp, _) = UdpPortPair::reserve().unwrap().release();
        for p in [tcp, udp, rtp, rtp + 1] {
            assert!(block.contains(&p), "{p} outside {block:?}");
        }
        // Another process cannot take the same block while this one holds it.
        let dir = std::env::temp_dir().join("mediagate-testkit-ports");
        let slot = (block.start - BAND_LOW) / BLOCK;
        let again = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(format!("slot-{slot}")))
            .unwrap();
        // flock locks belong to the open file description, so a second open conflicts
        // even within this process, as another process's would.
        assert!(!flock_exclusive(std::os::fd::AsRawFd::as_raw_fd(&again)));
    }

    #[test]
    fn pairs_do_not_repeat() {
        let a = UdpPortPair::reserve().unwrap().release();
        let b = UdpPortPair::reserve().unwrap().release();
        assert_ne!(a.0, b.0);
    }
}
