//! Free loopback ports for peers that must be told a port number in advance.
//!
//! Prefer letting a program bind port 0 and report what it got (the origin does). When a
//! number must be chosen first, these helpers ask the kernel for one and, within this test
//! process, never hand out the same number twice, so parallel tests do not collide with
//! each other. Another process may still take a port between its release here and its use
//! by the peer; [`UdpPortPair`] keeps the sockets bound until you release them to narrow
//! that window. RTP/RTCP pairs are an even port and the next one (RFC 3550 §11).
//!
//! What it does not do: reserve ports against other processes, or IPv6.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
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

/// A loopback TCP port that was free a moment ago and is not handed out again by this
/// process.
pub fn free_tcp_port() -> io::Result<u16> {
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
    fn pairs_do_not_repeat() {
        let a = UdpPortPair::reserve().unwrap().release();
        let b = UdpPortPair::reserve().unwrap().release();
        assert_ne!(a.0, b.0);
    }
}
