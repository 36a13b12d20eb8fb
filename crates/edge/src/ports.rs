//! Server-side UDP port pairs (even RTP port, RTCP on the next odd one, RFC 3550 §11)
//! from the configured range.
//!
//! The allocator only hands out candidates in rotation; a pair is really ours once both
//! sockets are bound, so a port another program holds is skipped, not an error.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use tokio::net::UdpSocket;

/// Rotating cursor over the even ports of `low..=high`.
#[derive(Debug)]
pub struct PortAllocator {
    ip: IpAddr,
    low: u16,
    high: u16,
    next: Mutex<u16>,
}

/// A bound RTP/RTCP socket pair.
#[derive(Debug)]
pub struct SocketPair {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
}

impl SocketPair {
    pub fn rtp_port(&self) -> u16 {
        self.rtp.local_addr().map(|a| a.port()).unwrap_or(0)
    }
}

/// Socket buffer for server sockets: a burst to 1,000 viewers must not overflow it.
const SEND_BUFFER: usize = 8 << 20;

impl PortAllocator {
    /// `low` is rounded up to even; the range must hold at least one pair.
    pub fn new(ip: IpAddr, low: u16, high: u16) -> Self {
        let low = low.saturating_add(low % 2);
        Self {
            ip,
            low,
            high,
            next: Mutex::new(low),
        }
    }

    /// Binds the next free pair, trying every pair of the range at most once.
    pub async fn bind_pair(&self) -> std::io::Result<SocketPair> {
        let pairs = (u32::from(self.high) + 1).saturating_sub(u32::from(self.low)) / 2;
        for _ in 0..pairs.max(1) {
            let port = {
                let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
                let port = *next;
                *next = if port.saturating_add(3) > self.high {
                    self.low
                } else {
                    port + 2
                };
                port
            };
            let Ok(rtp) = bind(SocketAddr::new(self.ip, port)) else {
                continue;
            };
            let Ok(rtcp) = bind(SocketAddr::new(self.ip, port + 1)) else {
                continue;
            };
            return Ok(SocketPair { rtp, rtcp });
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "no free UDP port pair in {}-{} on {}",
                self.low, self.high, self.ip
            ),
        ))
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    // A smaller buffer than asked for only means more would-block retries.
    let _ = mediagate_udp::set_send_buffer(&s, SEND_BUFFER);
    UdpSocket::from_std(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An even port whose pair (and the next pair) are free right now. Each call
    /// searches from a different start, so tests running in parallel never pick the
    /// same ports.
    fn free_base() -> u16 {
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(20_000);
        loop {
            let p = NEXT.fetch_add(4, std::sync::atomic::Ordering::Relaxed);
            assert!(p < 60_000, "no free port range");
            if (p..p + 4).all(|q| std::net::UdpSocket::bind(("127.0.0.1", q)).is_ok()) {
                return p;
            }
        }
    }

    #[tokio::test]
    async fn pairs_are_even_odd_and_skip_busy_ports() {
        let base = free_base();
        let _busy = std::net::UdpSocket::bind(("127.0.0.1", base)).expect("occupy the first pair");
        let alloc = PortAllocator::new("127.0.0.1".parse().unwrap(), base, base + 3);
        let a = alloc.bind_pair().await.expect("the second pair is free");
        assert_eq!(a.rtp_port(), base + 2, "the busy pair must be skipped");
        assert_eq!(a.rtcp.local_addr().unwrap().port(), base + 3);
    }

    #[tokio::test]
    async fn exhaustion_is_an_error_not_a_hang() {
        let base = free_base();
        let alloc = PortAllocator::new("127.0.0.1".parse().unwrap(), base, base + 1);
        let _held = alloc.bind_pair().await.expect("one free pair");
        let err = alloc.bind_pair().await.expect_err("the only pair is taken");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
