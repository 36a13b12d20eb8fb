//! Server-side UDP port pairs (even RTP port, RTCP on the next odd one, RFC 3550 §11)
//! from the configured range, for viewers' and origins' UDP media.
//!
//! The choice of pair is [`mediagate_udp::PortPool`]'s (random, with quarantine: the
//! relay's pool); this module only binds. A pair is really ours once both sockets are
//! bound, so a port another program holds is set aside and another pair tried, not an
//! error. Dropping a [`SocketPair`] gives its ports back to quarantine.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mediagate_udp::PortPool;
use rand::rngs::SmallRng;
use rand::SeedableRng as _;
use tokio::net::UdpSocket;

/// How long a released pair rests before reuse, so late packets for an ended session
/// (an origin still sending, a viewer's last RTCP) never reach the next one. The relay's
/// default quarantine.
const QUARANTINE: Duration = Duration::from_secs(10);

/// Random pairs of `low..=high` on one address.
pub struct PortAllocator {
    ip: IpAddr,
    low: u16,
    high: u16,
    pool: Arc<Mutex<Pool>>,
}

struct Pool {
    pairs: PortPool,
    /// Seeded from the OS on first use (so a failing getrandom is an I/O error of the
    /// SETUP that needed a port, not a panic).
    rng: Option<SmallRng>,
}

/// A bound RTP/RTCP socket pair. Dropping it puts the pair in quarantine.
#[derive(Debug)]
pub struct SocketPair {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    /// Its RTCP socket is read by one reader that credits each viewer's reports by
    /// source address (`shared_pairs`): nobody else may read it.
    rtcp_shared: bool,
    /// Held only for its `Drop`.
    _release: Release,
}

struct Release {
    pool: Arc<Mutex<Pool>>,
    port: u16,
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the pool: its free list is thousands of ports long.
        f.debug_struct("Release").field("port", &self.port).finish()
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        lock(&self.pool).pairs.release(self.port, Instant::now());
    }
}

impl std::fmt::Debug for PortAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("PortAllocator");
        d.field("ip", &self.ip)
            .field("range", &(self.low..=self.high));
        // try_lock: printing must never wait for (or deadlock with) an allocation.
        if let Ok(pool) = self.pool.try_lock() {
            d.field("free", &pool.pairs.free_count())
                .field("in_use", &pool.pairs.in_use())
                .field("quarantined", &pool.pairs.quarantined_count());
        }
        d.finish_non_exhaustive()
    }
}

impl SocketPair {
    pub fn rtp_port(&self) -> u16 {
        self.rtp.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Marks the pair as shared by many viewers, its RTCP read by `shared_pairs`.
    pub(crate) fn with_rtcp_shared(mut self) -> Self {
        self.rtcp_shared = true;
        self
    }

    /// Its RTCP socket is read by `shared_pairs`' reader: a user of the pair must
    /// not read it (it would take other viewers' reports).
    pub(crate) fn rtcp_shared(&self) -> bool {
        self.rtcp_shared
    }
}

/// Socket buffer for server sockets: a burst to 1,000 viewers must not overflow it.
const SEND_BUFFER: usize = 8 << 20;

fn lock(pool: &Mutex<Pool>) -> std::sync::MutexGuard<'_, Pool> {
    // The pool stays consistent across a panic elsewhere: every update is one call.
    pool.lock().unwrap_or_else(|p| p.into_inner())
}

impl PortAllocator {
    /// `low` is rounded up to even; the range must hold at least one pair.
    pub fn new(ip: IpAddr, low: u16, high: u16) -> Self {
        let low = low.saturating_add(low % 2);
        let pairs = PortPool::new(low, high, QUARANTINE);
        Self {
            ip,
            low,
            high,
            pool: Arc::new(Mutex::new(Pool { pairs, rng: None })),
        }
    }

    /// Binds a random free pair; pairs another program holds are set aside and the next
    /// one is tried, until none is left.
    pub async fn bind_pair(&self) -> std::io::Result<SocketPair> {
        loop {
            let port = {
                let mut pool = lock(&self.pool);
                let now = Instant::now();
                let Pool { pairs, rng } = &mut *pool;
                let rng = match rng {
                    Some(rng) => rng,
                    None => rng.insert(SmallRng::seed_from_u64(getrandom::u64()?)),
                };
                pairs.take(now, rng)
            };
            let Some(port) = port else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!(
                        "no free UDP port pair in {}-{} on {}",
                        self.low, self.high, self.ip
                    ),
                ));
            };
            let bound = bind(SocketAddr::new(self.ip, port))
                .and_then(|rtp| Ok((rtp, bind(SocketAddr::new(self.ip, port + 1))?)));
            match bound {
                Ok((rtp, rtcp)) => {
                    return Ok(SocketPair {
                        rtp,
                        rtcp,
                        rtcp_shared: false,
                        _release: Release {
                            pool: Arc::clone(&self.pool),
                            port,
                        },
                    })
                }
                Err(_) => lock(&self.pool).pairs.set_aside(port, Instant::now()),
            }
        }
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

    #[tokio::test]
    async fn a_dropped_pair_rests_in_quarantine() {
        let base = free_base();
        let alloc = PortAllocator::new("127.0.0.1".parse().unwrap(), base, base + 1);
        drop(alloc.bind_pair().await.expect("one free pair"));
        let err = alloc
            .bind_pair()
            .await
            .expect_err("the pair just given back must not be handed out again at once");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        let pool = lock(&alloc.pool);
        assert_eq!(
            (pool.pairs.in_use(), pool.pairs.quarantined_count()),
            (0, 1)
        );
    }
}
