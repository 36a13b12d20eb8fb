//! Server port pairs that many UDP viewers share, and the one reader of each shared
//! pair's RTCP socket, which credits every viewer's reports to that viewer's session
//! by their source address (the viewer's RTCP destination; RFC 3550 §6.4.2, and RFC
//! 2326 §12.39 lets every viewer be answered the same `server_port`).
//!
//! A live hub keeps one pair per track for all its viewers (`hub_actor`). The cache
//! keeps one per URL and track ([`SharedPairs`]) for the UDP viewers it may serve, so
//! that a playout group sends each batch to all its UDP members with one `sendmmsg`
//! from one socket, while each viewer still gets its media from the port its SETUP
//! answer named (a viewer behind a NAT that filters by the sender's port requires
//! that). The pair lives while any viewer holds a [`PairLease`] on it; its ports then
//! go back to the allocator.
//!
//! What it does not: tell apart two sessions that name the same RTCP address (the
//! later SETUP gets the reports), or read RTP from viewers (none is expected).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::task::JoinHandle;

use crate::ports::{PortAllocator, SocketPair};
use crate::sink::{Tally, TrackDest, ViewerSink};

/// What UDP viewers' RTCP says, counted by the socket readers.
#[derive(Debug, Default)]
pub(crate) struct RtcpCounters {
    pub(crate) reports: AtomicU64,
    pub(crate) max_fraction_lost: AtomicU8,
    /// Each UDP viewer's RTCP address, to credit its reports to its session.
    viewers: Mutex<ViewerAddrs>,
}

/// UDP viewers' RTCP addresses and their tallies, indexed also by IP so that a
/// datagram from a port nobody named is credited without scanning every viewer.
#[derive(Debug, Default)]
pub(crate) struct ViewerAddrs {
    by_addr: HashMap<SocketAddr, Arc<Tally>>,
    /// The registered addresses at each IP.
    by_ip: HashMap<IpAddr, Vec<SocketAddr>>,
}

impl ViewerAddrs {
    /// Credits `addr`'s RTCP to `tally` (a later registration of one address wins).
    pub(crate) fn insert(&mut self, addr: SocketAddr, tally: Arc<Tally>) {
        if self.by_addr.insert(addr, tally).is_none() {
            self.by_ip.entry(addr.ip()).or_default().push(addr);
        }
    }

    /// Stops crediting `addr` to `tally`; a later session that named the same address
    /// keeps its registration.
    pub(crate) fn remove_for(&mut self, addr: &SocketAddr, tally: &Arc<Tally>) {
        if self
            .by_addr
            .get(addr)
            .is_some_and(|t| Arc::ptr_eq(t, tally))
        {
            self.remove(addr);
        }
    }

    /// Stops crediting `addr`.
    pub(crate) fn remove(&mut self, addr: &SocketAddr) {
        if self.by_addr.remove(addr).is_none() {
            return;
        }
        if let Some(at_ip) = self.by_ip.get_mut(&addr.ip()) {
            at_ip.retain(|a| a != addr);
            if at_ip.is_empty() {
                self.by_ip.remove(&addr.ip());
            }
        }
    }

    /// The tally of the viewer whose RTCP address is `from`, or, when none is, of the
    /// only viewer at `from`'s IP.
    fn credited(&self, from: &SocketAddr) -> Option<&Arc<Tally>> {
        self.by_addr
            .get(from)
            .or_else(|| match self.by_ip.get(&from.ip())?.as_slice() {
                [only] => self.by_addr.get(only),
                _ => None,
            })
    }
}

impl RtcpCounters {
    pub(crate) fn viewers(&self) -> std::sync::MutexGuard<'_, ViewerAddrs> {
        self.viewers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn udp_rtcp_addrs(sink: &ViewerSink) -> impl Iterator<Item = SocketAddr> + '_ {
        sink.dests.iter().flatten().filter_map(|d| match d {
            TrackDest::Udp { rtcp, .. } => Some(*rtcp),
            TrackDest::Interleaved { .. } => None,
        })
    }
}

/// Reads what UDP viewers send to a shared RTCP port: each datagram goes to the tally
/// of the viewer whose RTCP address sent it, or, when none did, of the only viewer at
/// its IP address (a NAT may send a viewer's RTCP from another port than the one it
/// named); receiver reports are counted (and their loss figures kept); anything else
/// is dropped. Reading also keeps the socket's receive buffer from filling.
pub(crate) async fn read_viewer_rtcp(pair: Arc<SocketPair>, counters: Arc<RtcpCounters>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, from)) = pair.rtcp.recv_from(&mut buf).await else {
            return;
        };
        let viewer = counters.viewers().credited(&from).cloned();
        // Parsed once for the viewer's tally and the stream's counters.
        let compound = mediagate_rtp::rtcp::Compound::parse(&buf[..n]).ok();
        if let Some(tally) = viewer {
            tally.note_parsed(compound.as_ref());
        }
        let Some(compound) = compound else {
            continue;
        };
        for p in compound.packets() {
            if let mediagate_rtp::rtcp::RtcpPacket::ReceiverReport(rr) = p {
                counters.reports.fetch_add(1, Ordering::Relaxed);
                for b in rr.report_blocks() {
                    counters
                        .max_fraction_lost
                        .fetch_max(b.fraction_lost, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The cache's shared pairs, by URL and described track.
#[derive(Debug, Default)]
pub(crate) struct SharedPairs {
    pairs: Mutex<HashMap<(String, usize), Weak<SharedPair>>>,
}

/// One shared pair and its RTCP reader.
#[derive(Debug)]
pub(crate) struct SharedPair {
    pair: Arc<SocketPair>,
    rtcp: Arc<RtcpCounters>,
    reader: JoinHandle<()>,
}

impl Drop for SharedPair {
    fn drop(&mut self) {
        // The reader's own handle on the sockets goes with it.
        self.reader.abort();
    }
}

/// A viewer's use of a shared pair: while it lives, RTCP from `rtcp_from` is credited
/// to `tally`, and the pair stays bound.
#[derive(Debug)]
pub(crate) struct PairLease {
    shared: Arc<SharedPair>,
    rtcp_from: SocketAddr,
    tally: Arc<Tally>,
}

impl PairLease {
    pub(crate) fn pair(&self) -> &Arc<SocketPair> {
        &self.shared.pair
    }

    /// The viewer's RTCP address this lease credits.
    pub(crate) fn rtcp_from(&self) -> SocketAddr {
        self.rtcp_from
    }
}

impl Drop for PairLease {
    fn drop(&mut self) {
        self.shared
            .rtcp
            .viewers()
            .remove_for(&self.rtcp_from, &self.tally);
    }
}

impl SharedPairs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, usize), Weak<SharedPair>>> {
        self.pairs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pair every UDP viewer of `url`'s described track `track` is sent from (bound
    /// now when none is in use), with `rtcp_from`'s RTCP credited to `tally`.
    pub(crate) async fn lease(
        &self,
        ports: &PortAllocator,
        url: &str,
        track: usize,
        rtcp_from: SocketAddr,
        tally: Arc<Tally>,
    ) -> std::io::Result<PairLease> {
        let key = (url.to_owned(), track);
        let found = self.lock().get(&key).and_then(Weak::upgrade);
        let shared = match found {
            Some(s) => s,
            None => {
                let bound = Arc::new(SharedPair::bind(ports).await?);
                let mut pairs = self.lock();
                // Another viewer may have bound one meanwhile: that one is kept (this
                // one's ports go back to the allocator).
                match pairs.get(&key).and_then(Weak::upgrade) {
                    Some(s) => s,
                    None => {
                        pairs.retain(|_, w| w.strong_count() > 0);
                        pairs.insert(key, Arc::downgrade(&bound));
                        bound
                    }
                }
            }
        };
        shared.rtcp.viewers().insert(rtcp_from, tally.clone());
        Ok(PairLease {
            shared,
            rtcp_from,
            tally,
        })
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        self.lock()
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

impl SharedPair {
    async fn bind(ports: &PortAllocator) -> std::io::Result<SharedPair> {
        let pair = Arc::new(ports.bind_pair().await?.with_rtcp_shared());
        let rtcp = Arc::new(RtcpCounters::default());
        let reader = tokio::spawn(read_viewer_rtcp(pair.clone(), rtcp.clone()));
        Ok(SharedPair { pair, rtcp, reader })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_rtp::rtcp::build::CompoundWriter;
    use std::time::Duration;

    #[test]
    fn a_viewer_leaving_keeps_a_later_sessions_registration_of_its_address() {
        let addr: SocketAddr = "192.0.2.7:5001".parse().unwrap();
        let (old, new) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
        let mut viewers = ViewerAddrs::default();
        viewers.insert(addr, old.clone());
        viewers.insert(addr, new.clone()); // a later SETUP named the same address
        viewers.remove_for(&addr, &old);
        assert!(viewers
            .credited(&addr)
            .is_some_and(|t| Arc::ptr_eq(t, &new)));
        viewers.remove_for(&addr, &new);
        assert!(viewers.credited(&addr).is_none());
    }

    fn rr() -> Vec<u8> {
        let mut buf = [0u8; 64];
        let mut w = CompoundWriter::new(&mut buf);
        w.receiver_report(7, &[]).unwrap();
        let n = w.finish().unwrap();
        buf[..n].to_vec()
    }

    /// Waits until `read` holds, failing the test at `deadline`.
    async fn read_by(deadline: tokio::time::Instant, read: impl Fn() -> bool) {
        while !read() {
            assert!(tokio::time::Instant::now() < deadline, "reports not read");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn viewers_of_one_track_share_a_pair_and_their_rtcp_is_told_apart() {
        let ports = PortAllocator::new("127.0.0.1".parse().unwrap(), 52_000, 53_000);
        let shared = SharedPairs::default();
        let a_sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b_sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (a_tally, b_tally) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
        let lease = |track, sock: &tokio::net::UdpSocket, tally: &Arc<Tally>| {
            let from = sock.local_addr().unwrap();
            shared.lease(&ports, "rtsp://origin/clip", track, from, tally.clone())
        };
        let a = lease(0, &a_sock, &a_tally).await.unwrap();
        let b = lease(0, &b_sock, &b_tally).await.unwrap();
        let other_track = lease(1, &b_sock, &b_tally).await.unwrap();
        assert!(Arc::ptr_eq(a.pair(), b.pair()));
        assert!(!Arc::ptr_eq(a.pair(), other_track.pair()));
        assert!(a.pair().rtcp_shared());
        let to = a.pair().rtcp.local_addr().unwrap();
        // From a port nobody named, at an IP two viewers share: nobody's.
        let stray = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        stray.send_to(&rr(), to).await.unwrap();
        for _ in 0..3 {
            a_sock.send_to(&rr(), to).await.unwrap();
        }
        b_sock.send_to(&rr(), to).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        read_by(deadline, || {
            a_tally.rtcp_packets() >= 3 && b_tally.rtcp_packets() >= 1
        })
        .await;
        assert_eq!((a_tally.rtcp_packets(), b_tally.rtcp_packets()), (3, 1));
        // A viewer that left is no longer credited; the pair lives while one is left.
        drop(a);
        a_sock.send_to(&rr(), to).await.unwrap();
        b_sock.send_to(&rr(), to).await.unwrap();
        read_by(deadline, || b_tally.rtcp_packets() >= 2).await;
        assert_eq!(a_tally.rtcp_packets(), 3);
        // From another port of the only viewer left at that IP (a NAT): its own.
        stray.send_to(&rr(), to).await.unwrap();
        read_by(deadline, || b_tally.rtcp_packets() >= 3).await;
        assert_eq!(a_tally.rtcp_packets(), 3);
        assert_eq!(shared.live(), 2);
        drop((b, other_track));
        assert_eq!(shared.live(), 0, "the last lease gives the pairs back");
    }
}
