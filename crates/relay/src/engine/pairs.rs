//! Forwarded UDP pairs for other roles: the relay's own port pools, forwarding threads
//! and secure latching, without calls or `ng` (the balancer's `relay` mode uses it for
//! RTSP streams).
//!
//! What it does: [`PairRelay::open`] binds two RTP/RTCP port pairs from the range,
//! side 0 and side 1 (for the balancer: facing the back end, facing the client);
//! [`PairRelay::start`] tells it what each side's party is expected to send from
//! (its endpoint and its IP, [`Expected`]) and starts forwarding on the relay's
//! forwarding threads: a datagram arriving on one side's port leaves from the other
//! side's port towards that side's party, latched to where the party really sends
//! from (RFC 4961 symmetric RTP; the latching policy of the crate's `latch` module:
//! a packet from the expected IP latches at once whatever its port, the NAT case, and
//! packets from any other IP are refused); [`PairRelay::close`] stops forwarding and
//! puts the ports in quarantine.
//!
//! What it does not: time pairs out (the caller owns their lifetime), rewrite
//! packets, or keep records.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mediagate_config::ThreadScheduling;
use mediagate_ng::request::{Family, Learning};

use super::forward::ForwardIo;
use super::sockets::{ForwardOptions, SocketEnv};
use crate::calls::{lock as lock_media, MediaEnv, OpenError};
use crate::latch::{Expectation, LatchPolicy};
use crate::media::{Leg, MediaPair};

/// How to start a [`PairRelay`].
#[derive(Debug, Clone)]
pub struct PairRelayConfig {
    /// Local addresses pairs bind to (a wildcard binds every interface).
    pub addresses: Vec<IpAddr>,
    /// The port range, `(low, high)`, low even.
    pub ports: (u16, u16),
    /// Forwarding threads (at least one).
    pub threads: usize,
    /// How long a closed pair's ports rest before they are handed out again.
    pub quarantine: Duration,
    /// The latching knobs.
    pub latch: LatchPolicy,
    /// The forwarding threads' scheduling policy.
    pub scheduling: ThreadScheduling,
    /// Receive and send buffer asked for each socket, in bytes (0: the kernel's
    /// default): what the sockets hold while a forwarding thread waits for a CPU.
    pub socket_buffer: usize,
}

/// What one side's party is expected to send from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expected {
    /// Its RTP endpoint as signalled (RTCP is the next port), if known.
    pub endpoint: Option<SocketAddr>,
    /// Its IP as seen on the control connection: packets from it latch at once,
    /// packets from any other IP are refused.
    pub ip: Option<IpAddr>,
}

/// An open pair: the relay's RTP port on each side (RTCP is the next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pair {
    pub sides: [SocketAddr; 2],
}

/// Packets and bytes each side's party sent that were forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairCounters {
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// Of `packets`, the RTP ones (media, not RTCP reports).
    pub rtp_packets: [u64; 2],
}

/// Why a pair could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    #[error("every port pair of the range is in use or resting")]
    Exhausted,
    #[error("no media address of the control connection's address family")]
    NoAddress,
}

/// The pairs and the threads that forward them.
pub struct PairRelay {
    env: Mutex<SocketEnv>,
    latch: LatchPolicy,
    started: Mutex<HashMap<Pair, Arc<Mutex<MediaPair>>>>,
}

impl std::fmt::Debug for PairRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairRelay").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PairRelay {
    /// Starts the forwarding threads; no port is bound yet.
    pub fn start(config: &PairRelayConfig) -> io::Result<Self> {
        let addresses: Vec<(IpAddr, IpAddr)> = config.addresses.iter().map(|a| (*a, *a)).collect();
        // Port choice must be unguessable from outside, as the relay's own.
        let seed = getrandom::u64().map_err(io::Error::other)?;
        let env = SocketEnv::new(
            &addresses,
            config.ports,
            config.quarantine,
            seed,
            ForwardOptions {
                threads: config.threads.max(1),
                coalesce: Duration::ZERO,
                // The balancer's pairs stay in user space (no eBPF fast path yet).
                io: ForwardIo::IoUring,
                scheduling: config.scheduling,
                socket_buffer: config.socket_buffer,
            },
            None,
        )?;
        Ok(Self {
            env: Mutex::new(env),
            latch: config.latch,
            started: Mutex::new(HashMap::new()),
        })
    }

    /// Binds two port pairs on an address of `family_of`'s family; nothing is
    /// forwarded until [`Self::start`].
    pub fn open(&self, family_of: IpAddr, now: Instant) -> Result<Pair, PairError> {
        let family = Family::of(family_of);
        let mut env = lock(&self.env);
        let first = env.open_pair(family, now).map_err(map_open)?;
        match env.open_pair(family, now) {
            Ok(second) => Ok(Pair {
                sides: [first.local, second.local],
            }),
            Err(e) => {
                env.close_pair(first.local, now);
                Err(map_open(e))
            }
        }
    }

    /// Binds `pair`'s ports exactly (both sides or neither): a standby balancer taking
    /// over binds the pairs its peer handed out, so clients and back ends keep sending
    /// to the same ports.
    pub fn open_at(&self, pair: Pair, now: Instant) -> io::Result<()> {
        let mut env = lock(&self.env);
        env.open_pair_at(pair.sides[0], now)?;
        if let Err(e) = env.open_pair_at(pair.sides[1], now) {
            // Nothing was sent from the first side: free it at once, so a later
            // attempt can bind both.
            env.unbind_pair_at(pair.sides[0]);
            return Err(e);
        }
        Ok(())
    }

    /// Where each side's party was latched (its real RTP source, behind NAT its
    /// mapping), `None` for a side that has sent nothing yet.
    pub fn latched(&self, pair: Pair) -> [Option<SocketAddr>; 2] {
        let Some(media) = lock(&self.started).get(&pair).cloned() else {
            return [None, None];
        };
        let m = lock_media(&media);
        [
            m.legs[0].rtp_latch.confirmed(),
            m.legs[1].rtp_latch.confirmed(),
        ]
    }

    /// Why the forwarding threads could not take their scheduling policy, if they
    /// could not.
    pub fn scheduling_refused(&self) -> Option<String> {
        lock(&self.env).scheduling_refused().map(str::to_owned)
    }

    /// Starts forwarding `pair`, expecting `expected[side]` on each side.
    pub fn start_pair(&self, pair: Pair, expected: [Expected; 2], now: Instant) {
        let leg = |side: usize| {
            let local = pair.sides[side];
            let mut leg = Leg::new(local, local.ip(), self.latch, now);
            let expect = Expectation {
                endpoint: expected[side].endpoint,
                source_ip: expected[side].ip,
            };
            let rtcp_expect = Expectation {
                endpoint: expected[side]
                    .endpoint
                    .map(|e| SocketAddr::new(e.ip(), e.port().wrapping_add(1))),
                source_ip: expected[side].ip,
            };
            leg.rtp_latch.signal(Learning::Heuristic, expect, now);
            leg.rtcp_latch.signal(Learning::Heuristic, rtcp_expect, now);
            leg
        };
        let media = Arc::new(Mutex::new(MediaPair {
            index: 0,
            media_type: "rtsp".to_owned(),
            proto: "RTP/AVP".to_owned(),
            is_rtp: true,
            legs: [leg(0), leg(1)],
        }));
        lock(&self.env).start(&media);
        lock(&self.started).insert(pair, media);
    }

    /// Stops forwarding `pair` (started or not) and releases its ports.
    pub fn close(&self, pair: Pair, now: Instant) {
        lock(&self.started).remove(&pair);
        let mut env = lock(&self.env);
        for side in pair.sides {
            env.close_pair(side, now);
        }
    }

    /// What was forwarded on `pair` so far.
    pub fn counters(&self, pair: Pair) -> PairCounters {
        let Some(media) = lock(&self.started).get(&pair).cloned() else {
            return PairCounters::default();
        };
        let m = lock_media(&media);
        let mut out = PairCounters::default();
        for (side, leg) in m.legs.iter().enumerate() {
            out.packets[side] = leg.rtp.packets + leg.rtcp.packets;
            out.bytes[side] = leg.rtp.bytes + leg.rtcp.bytes;
            out.rtp_packets[side] = leg.rtp.packets;
        }
        out
    }
}

fn map_open(e: OpenError) -> PairError {
    match e {
        OpenError::Exhausted => PairError::Exhausted,
        OpenError::NoAddress(_) => PairError::NoAddress,
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 7]);
        p.extend_from_slice(b"payload");
        p
    }

    fn recv(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 2048];
        socket
            .recv_from(&mut buf)
            .ok()
            .map(|(n, from)| (buf[..n].to_vec(), from))
    }

    /// A server and a client on loopback: the server's RTP reaches the client from the
    /// client-side port, the client (sending from another port than it declared, as
    /// behind NAT) is latched and its RTCP reaches the server from the server-side port.
    #[test]
    fn a_pair_forwards_both_ways_and_latches_to_the_client_s_real_port() {
        let relay = PairRelay::start(&PairRelayConfig {
            addresses: vec!["127.0.0.1".parse().unwrap()],
            ports: (47000, 47099),
            threads: 1,
            quarantine: Duration::from_secs(1),
            latch: LatchPolicy::default(),
            scheduling: ThreadScheduling::NORMAL,
            socket_buffer: 0,
        })
        .unwrap();
        let now = Instant::now();
        let pair = relay.open("127.0.0.1".parse().unwrap(), now).unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&server, &client] {
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        }
        let declared: SocketAddr = "127.0.0.1:9".parse().unwrap();
        relay.start_pair(
            pair,
            [
                Expected {
                    endpoint: Some(server.local_addr().unwrap()),
                    ip: Some(server.local_addr().unwrap().ip()),
                },
                Expected {
                    endpoint: Some(declared),
                    ip: Some(declared.ip()),
                },
            ],
            now,
        );
        // The client punches its hole first (its real port is not the declared one).
        client.send_to(&rtp(1), pair.sides[1]).unwrap();
        let (_, from) = recv(&server).expect("the client's packet reaches the server");
        assert_eq!(from, pair.sides[0]);
        server.send_to(&rtp(2), pair.sides[0]).unwrap();
        let (data, from) = recv(&client).expect("the server's packet reaches the client");
        assert_eq!(data, rtp(2));
        assert_eq!(from, pair.sides[1]);
        let counters = relay.counters(pair);
        assert_eq!(counters.packets, [1, 1]);
        relay.close(pair, now);
        assert_eq!(relay.counters(pair), PairCounters::default());
    }

    /// A pair opened on one relay can be bound at the same ports on another (the
    /// standby's takeover) once the first let them go, and reports where each side
    /// latched.
    #[test]
    fn a_pair_can_be_bound_at_named_ports_and_reports_its_latches() {
        let config = PairRelayConfig {
            addresses: vec!["127.0.0.1".parse().unwrap()],
            ports: (47200, 47299),
            threads: 1,
            quarantine: Duration::from_secs(1),
            latch: LatchPolicy::default(),
            scheduling: ThreadScheduling::NORMAL,
            socket_buffer: 1 << 20,
        };
        let active = PairRelay::start(&config).unwrap();
        let now = Instant::now();
        let pair = active.open("127.0.0.1".parse().unwrap(), now).unwrap();
        let standby = PairRelay::start(&config).unwrap();
        assert!(
            standby.open_at(pair, now).is_err(),
            "the ports are still bound by the active"
        );
        active.close(pair, now);
        drop(active);
        standby.open_at(pair, now).unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&server, &client] {
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        }
        standby.start_pair(
            pair,
            [
                Expected {
                    endpoint: Some(server.local_addr().unwrap()),
                    ip: Some(server.local_addr().unwrap().ip()),
                },
                Expected {
                    endpoint: Some(client.local_addr().unwrap()),
                    ip: Some(client.local_addr().unwrap().ip()),
                },
            ],
            now,
        );
        assert_eq!(standby.latched(pair), [None, None]);
        server.send_to(&rtp(1), pair.sides[0]).unwrap();
        let (_, from) = recv(&client).expect("the back end's media reaches the client");
        assert_eq!(from, pair.sides[1]);
        client.send_to(&rtp(2), pair.sides[1]).unwrap();
        recv(&server).expect("the client's RTCP reaches the back end");
        assert_eq!(
            standby.latched(pair),
            [
                Some(server.local_addr().unwrap()),
                Some(client.local_addr().unwrap())
            ]
        );
        assert!(standby.open_at(pair, now).is_err(), "already bound");
    }

    /// Spoofed or stray UDP from another IP than the client's never reaches the
    /// server, and the client's media is not redirected to it.
    #[test]
    fn a_stranger_s_datagrams_are_refused() {
        let relay = PairRelay::start(&PairRelayConfig {
            addresses: vec!["127.0.0.1".parse().unwrap()],
            ports: (47100, 47199),
            threads: 1,
            quarantine: Duration::from_secs(1),
            latch: LatchPolicy::default(),
            scheduling: ThreadScheduling::NORMAL,
            socket_buffer: 0,
        })
        .unwrap();
        let now = Instant::now();
        let pair = relay.open("127.0.0.1".parse().unwrap(), now).unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
        for s in [&server, &client, &stranger] {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
        }
        relay.start_pair(
            pair,
            [
                Expected {
                    endpoint: Some(server.local_addr().unwrap()),
                    ip: Some(server.local_addr().unwrap().ip()),
                },
                Expected {
                    endpoint: Some(client.local_addr().unwrap()),
                    ip: Some(client.local_addr().unwrap().ip()),
                },
            ],
            now,
        );
        for seq in 0..5 {
            stranger.send_to(&rtp(seq), pair.sides[1]).unwrap();
        }
        assert!(recv(&server).is_none(), "a stranger's packet was forwarded");
        server.send_to(&rtp(9), pair.sides[0]).unwrap();
        assert!(recv(&client).is_some());
        assert!(recv(&stranger).is_none(), "media went to the stranger");
        assert_eq!(relay.counters(pair).packets, [1, 0]);
    }
}
