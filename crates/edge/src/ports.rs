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

    #[tokio::test]
    async fn pairs_are_even_odd_and_skip_busy_ports() {
        // Find a free even/odd pair region by asking the kernel, then occupy its start.
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        let base = base.clamp(20_000, 60_000) & !1;
        let busy = std::net::UdpSocket::bind(("127.0.0.1", base));
        let alloc = PortAllocator::new("127.0.0.1".parse().unwrap(), base, base + 5);
        let a = alloc.bind_pair().await.unwrap();
        let pa = a.rtp_port();
        assert_eq!(pa % 2, 0);
        assert_eq!(a.rtcp.local_addr().unwrap().port(), pa + 1);
        if busy.is_ok() {
            assert_ne!(pa, base, "a busy port must be skipped");
        }
        let b = alloc.bind_pair().await.unwrap();
        assert_ne!(b.rtp_port(), pa);
    }

    #[tokio::test]
    async fn exhaustion_is_an_error_not_a_hang() {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = (probe.local_addr().unwrap().port() & !1).clamp(20_000, 60_000);
        drop(probe);
        let alloc = PortAllocator::new("127.0.0.1".parse().unwrap(), base, base + 1);
        let first = alloc.bind_pair().await;
        if let Ok(_held) = first {
            assert!(alloc.bind_pair().await.is_err());
        }
    }
}
