//! Secure symmetric latching (RFC 4961): which source address a relay port accepts media
//! from, and where media for that party goes, hardened against RTP bleed and inject.
//!
//! A phone behind NAT writes its private address in SDP; the relay learns the public
//! address its packets really come from (the NAT mapping) and sends the other party's
//! media back there. A naive relay learns from the first packet from anywhere, so a
//! stranger spraying the port range is learned instead of the phone: it then injects
//! media into the call and receives ("bleeds") the phone's media (advisory ES2025-01,
//! CVE-2017-14114). The policy here, per port and per component (RTP, RTCP):
//!
//! 1. **Expected sources latch at once.** Three kinds of expected source, by how firmly
//!    they hold the latch:
//!    - a packet from exactly the signalled endpoint (SDP address and port, or `media
//!      address`) latches *firmly*;
//!    - a packet from the IP the SIP message came from (`received-from`, the phone's
//!      NAT), when the signalled endpoint is at another IP or unknown, latches firmly
//!      whatever its port: this is the classic NAT case, where the SDP address is a
//!      private one packets never come from and the NAT rewrites ports;
//!    - a packet from the signalled endpoint's IP but another port latches
//!      *provisionally*: it is forwarded at once (a NAT that keeps the address but
//!      rewrites the port loses no packet), but a later packet from the exact signalled
//!      endpoint takes the latch over (rule 4). Phones sharing an IP (one NAT, one host,
//!      an SBC or PBX) would otherwise lock the right phone out with the first packet a
//!      neighbour sends to this port. With `SIP source address` (`trust address`
//!      off) the signalled endpoint is the `received-from` IP with the SDP port, so a
//!      NAT'd phone falls in this kind: still latched at once.
//!
//!    What remains possible: before the right phone sends anything, a host sharing its
//!    IP that sends to this port first is latched, so its packets are forwarded and the
//!    other party's media is sent to it. That ends when the phone sends from its exact
//!    signalled endpoint, so it lasts the whole call when the phone's port is rewritten
//!    or when the SDP address is private (any host behind the same NAT that sends first
//!    keeps the latch). This exposure is limited to hosts sharing the phone's IP; a host
//!    anywhere else is a stranger (rules 2 and 3).
//! 2. **Strangers are refused when the phone's public IP is known.** With
//!    `received-from`, a packet from any other IP is dropped and counted, never
//!    forwarded, however early it arrives.
//! 3. **Otherwise strangers learn only within a window and a packet budget.** Without
//!    `received-from` the SDP address may be a private one that packets can never come
//!    from, so one unexpected source may become a candidate, but only within
//!    [`LatchPolicy::learn_window`] after the signalling event that set this endpoint,
//!    and only after [`LatchPolicy::learn_packets`] consecutive packets with one SSRC
//!    and no other stranger in between. Nothing from a candidate is forwarded before it
//!    is latched, and nothing is sent to it, so the exposure is zero packets. Two
//!    competing strangers cancel each other (both dropped) until the next signalling
//!    event: a denial of service for that leg, never a bleed.
//! 4. **Once latched, only that source is accepted** (strict source), except that
//!    - a source latched by learning (rule 3) gives way to any expected source (rule 1);
//!    - a provisional source (rule 1) gives way to the exact signalled endpoint, which
//!      then holds firmly: from then on another port at the same IP is a stranger like
//!      any other;
//!    - a re-latch on evidence moves the latch: a packet from a new address carrying the
//!      same SSRC as the latched stream, with a sequence number at most
//!      [`LatchPolicy::relatch_max_seq_gap`] ahead of the last one, after the latched
//!      source has been quiet for [`LatchPolicy::relatch_quiet`] (mobile handover, NAT
//!      rebinding). The new address holds as firmly as the one it replaces: SSRC
//!      continuity proves the same sender, not an expected one. The `media handover`
//!      flag drops the quiet requirement. RTCP carries no sequence numbers and never
//!      re-latches this way.
//! 5. **A new signalling event with a different endpoint reopens learning** (re-INVITE
//!    after a move); the same endpoint keeps the latch.
//!
//! Media for the party goes to the latched source (firm, provisional or learned), or
//! before that to the signalled endpoint, never to an unlatched candidate.
//! `endpoint-learning=immediate` restores the legacy first-packet latching (firm, from
//! anywhere), `off` disables latching (media goes to the signalled endpoint; only the
//! expected sources of rule 1 are accepted), and `asymmetric` accepts any source and
//! always sends to the signalled endpoint.
//!
//! What it does not: count packets (the caller does, with the verdict) or parse them
//! (the caller passes SSRC and sequence number when the packet is RTP).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mediagate_ng::request::Learning;

/// The knobs of the policy; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatchPolicy {
    /// How long after a signalling event a stranger may become a candidate. Default 5 s.
    pub learn_window: Duration,
    /// Consecutive packets a stranger must send before it is confirmed. Default 3.
    pub learn_packets: u32,
    /// How long the latched source must be silent before a re-latch. Default 1 s.
    pub relatch_quiet: Duration,
    /// Largest forward sequence step accepted as evidence for a re-latch. Default 100.
    pub relatch_max_seq_gap: u16,
}

impl Default for LatchPolicy {
    fn default() -> Self {
        Self {
            learn_window: Duration::from_secs(5),
            learn_packets: 3,
            relatch_quiet: Duration::from_secs(1),
            relatch_max_seq_gap: 100,
        }
    }
}

/// What signalling says about a party's media source for one component.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Expectation {
    /// The endpoint from SDP (or `media address`); `None` when the SDP gives none
    /// (`0.0.0.0`, port 0).
    pub endpoint: Option<SocketAddr>,
    /// The IP the SIP message came from (`received-from`): the phone's public address.
    pub source_ip: Option<IpAddr>,
}

/// Per-packet evidence: SSRC and sequence number when the packet is RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RtpEvidence {
    /// The SSRC.
    pub ssrc: u32,
    /// The sequence number.
    pub seq: u16,
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Accept and forward.
    Accept,
    /// Accept and forward; this packet (re)latched the source.
    Latched,
    /// Drop: not from the latched or an expected source.
    Stranger,
    /// Drop: a stranger being learned, not yet latched.
    Learning,
}

impl Verdict {
    /// Whether the packet is forwarded.
    pub(crate) fn accepted(self) -> bool {
        matches!(self, Self::Accept | Self::Latched)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    addr: SocketAddr,
    ssrc: Option<u32>,
    packets: u32,
}

/// How firmly a latched source holds the latch, weakest first (module docs, rules 1
/// and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Learned as a stranger (rule 3): any expected source takes over.
    Learned,
    /// The signalled endpoint's IP on another port: the exact endpoint takes over.
    Provisional,
    /// Only a re-latch on evidence moves it.
    Firm,
}

/// How a source matches the signalling (rule 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// The signalled endpoint, IP and port.
    Exact,
    /// The signalled endpoint's IP, another port.
    EndpointIp,
    /// The `received-from` IP, the signalled endpoint being elsewhere or unknown.
    ReceivedFrom,
}

impl Match {
    fn hold(self) -> Hold {
        match self {
            Self::Exact | Self::ReceivedFrom => Hold::Firm,
            Self::EndpointIp => Hold::Provisional,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Learning {
        candidate: Option<Candidate>,
        contested: bool,
    },
    Confirmed {
        addr: SocketAddr,
        last: Option<RtpEvidence>,
        last_at: Instant,
        hold: Hold,
    },
}

/// The latch of one relay port (one party, one component).
#[derive(Debug, Clone)]
pub(crate) struct Latch {
    policy: LatchPolicy,
    mode: Learning,
    asymmetric: bool,
    media_handover: bool,
    expect: Expectation,
    signalled_at: Instant,
    state: State,
}

impl Latch {
    /// A latch learning under `mode`, signalled at `now`.
    pub(crate) fn new(
        policy: LatchPolicy,
        mode: Learning,
        expect: Expectation,
        now: Instant,
    ) -> Self {
        Self {
            policy,
            mode,
            asymmetric: false,
            media_handover: false,
            expect,
            signalled_at: now,
            state: State::Learning {
                candidate: None,
                contested: false,
            },
        }
    }

    /// Sets the `asymmetric` and `media handover` flags from the latest signalling.
    pub(crate) fn set_flags(&mut self, asymmetric: bool, media_handover: bool) {
        self.asymmetric = asymmetric;
        self.media_handover = media_handover;
    }

    /// The current expectation.
    #[cfg(test)]
    pub(crate) fn expectation(&self) -> Expectation {
        self.expect
    }

    /// A signalling event (offer or answer carrying this party's SDP). A changed
    /// endpoint reopens learning; otherwise only the learning window restarts.
    pub(crate) fn signal(&mut self, mode: Learning, expect: Expectation, now: Instant) {
        let changed = expect != self.expect || mode != self.mode;
        self.mode = mode;
        self.expect = expect;
        self.signalled_at = now;
        if changed {
            self.state = State::Learning {
                candidate: None,
                contested: false,
            };
        } else if let State::Learning { contested, .. } = &mut self.state {
            *contested = false;
        }
    }

    /// Adds an IP that counts as expected (the RTP latch's address, for RTCP).
    pub(crate) fn hint_source_ip(&mut self, ip: IpAddr) {
        if self.expect.source_ip.is_none() {
            self.expect.source_ip = Some(ip);
        }
    }

    /// The latched source, if any: firm, provisional or learned (module docs, rule 1).
    pub(crate) fn confirmed(&self) -> Option<SocketAddr> {
        match self.state {
            State::Confirmed { addr, .. } => Some(addr),
            State::Learning { .. } => None,
        }
    }

    /// Whether media for this party goes to the latched source (not `asymmetric`).
    pub(crate) fn symmetric(&self) -> bool {
        !self.asymmetric
    }

    /// The SSRC of the latched source's last RTP packet, if it has sent RTP.
    pub(crate) fn latched_ssrc(&self) -> Option<u32> {
        match self.state {
            State::Confirmed { last, .. } => last.map(|e| e.ssrc),
            State::Learning { .. } => None,
        }
    }

    /// The latched source `src` sent RTP `seq` at `at`, seen by someone else (the
    /// kernel fast path): the re-latch rules then judge against it as if this latch
    /// had checked the packet itself.
    pub(crate) fn heard(&mut self, src: SocketAddr, seq: Option<u16>, at: Instant) {
        if let State::Confirmed {
            addr,
            last,
            last_at,
            ..
        } = &mut self.state
        {
            if *addr == src && at >= *last_at {
                *last_at = at;
                if let (Some(e), Some(seq)) = (last.as_mut(), seq) {
                    e.seq = seq;
                }
            }
        }
    }

    /// Where media for this party goes: the latched source, else the signalled
    /// endpoint (never an unlatched candidate).
    pub(crate) fn destination(&self) -> Option<SocketAddr> {
        if self.asymmetric {
            return self.expect.endpoint;
        }
        self.confirmed().or(self.expect.endpoint)
    }

    /// How `src` matches the signalling, if it is an expected source at all.
    fn expected(&self, src: SocketAddr) -> Option<Match> {
        let ip = src.ip();
        match self.expect.endpoint {
            Some(e) if e == src => Some(Match::Exact),
            Some(e) if e.ip() == ip => Some(Match::EndpointIp),
            _ if self.expect.source_ip == Some(ip) => Some(Match::ReceivedFrom),
            _ => None,
        }
    }

    fn latch(
        &mut self,
        src: SocketAddr,
        rtp: Option<RtpEvidence>,
        now: Instant,
        hold: Hold,
    ) -> Verdict {
        self.state = State::Confirmed {
            addr: src,
            last: rtp,
            last_at: now,
            hold,
        };
        Verdict::Latched
    }

    /// Judges one packet from `src` at `now`.
    pub(crate) fn check(
        &mut self,
        src: SocketAddr,
        rtp: Option<RtpEvidence>,
        now: Instant,
    ) -> Verdict {
        if self.asymmetric {
            return Verdict::Accept;
        }
        match self.mode {
            Learning::Off => {
                return if self.expected(src).is_some() {
                    Verdict::Accept
                } else {
                    Verdict::Stranger
                }
            }
            Learning::Immediate => {
                if let State::Learning { .. } = self.state {
                    return self.latch(src, rtp, now, Hold::Firm);
                }
            }
            Learning::Heuristic => {}
        }
        match self.state {
            State::Confirmed {
                addr,
                last,
                last_at,
                hold,
            } => {
                if addr == src {
                    self.state = State::Confirmed {
                        addr,
                        last: rtp.or(last),
                        last_at: now,
                        hold,
                    };
                    return Verdict::Accept;
                }
                let takeover = match (hold, self.expected(src)) {
                    (Hold::Learned, Some(m)) => Some(m.hold()),
                    (Hold::Provisional, Some(Match::Exact)) => Some(Hold::Firm),
                    _ => None,
                };
                if let Some(new_hold) = takeover {
                    return self.latch(src, rtp, now, new_hold);
                }
                let quiet = self.media_handover
                    || now.saturating_duration_since(last_at) >= self.policy.relatch_quiet;
                let evidence = match (last, rtp) {
                    (Some(old), Some(new)) => {
                        old.ssrc == new.ssrc
                            && new.seq.wrapping_sub(old.seq) <= self.policy.relatch_max_seq_gap
                    }
                    _ => false,
                };
                if quiet && evidence {
                    return self.latch(src, rtp, now, hold);
                }
                Verdict::Stranger
            }
            State::Learning {
                candidate,
                contested,
            } => {
                if let Some(m) = self.expected(src) {
                    return self.latch(src, rtp, now, m.hold());
                }
                let may_learn = self.expect.source_ip.is_none()
                    && !contested
                    && now.saturating_duration_since(self.signalled_at) <= self.policy.learn_window;
                if !may_learn {
                    return Verdict::Stranger;
                }
                let ssrc = rtp.map(|r| r.ssrc);
                match candidate {
                    None => {
                        self.state = State::Learning {
                            candidate: Some(Candidate {
                                addr: src,
                                ssrc,
                                packets: 1,
                            }),
                            contested: false,
                        };
                        if self.policy.learn_packets <= 1 {
                            return self.latch(src, rtp, now, Hold::Learned);
                        }
                        Verdict::Learning
                    }
                    Some(c) if c.addr == src && c.ssrc == ssrc => {
                        let packets = c.packets.saturating_add(1);
                        if packets >= self.policy.learn_packets {
                            return self.latch(src, rtp, now, Hold::Learned);
                        }
                        self.state = State::Learning {
                            candidate: Some(Candidate { packets, ..c }),
                            contested: false,
                        };
                        Verdict::Learning
                    }
                    Some(_) => {
                        self.state = State::Learning {
                            candidate: None,
                            contested: true,
                        };
                        Verdict::Stranger
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ev(ssrc: u32, seq: u16) -> Option<RtpEvidence> {
        Some(RtpEvidence { ssrc, seq })
    }

    const PHONE_SDP: &str = "10.0.0.2:6000";
    const PHONE_NAT: &str = "203.0.113.9:41234";
    const STRANGER: &str = "198.51.100.66:9999";

    fn nat_latch(received_from: bool, t: Instant) -> Latch {
        Latch::new(
            LatchPolicy::default(),
            Learning::Heuristic,
            Expectation {
                endpoint: Some(addr(PHONE_SDP)),
                source_ip: received_from.then(|| "203.0.113.9".parse().unwrap()),
            },
            t,
        )
    }

    #[test]
    fn nat_phone_latches_on_received_from_and_strangers_never_do() {
        let t = Instant::now();
        let mut l = nat_latch(true, t);
        // A stranger floods first: all dropped, nothing sent to it.
        for i in 0..100 {
            assert_eq!(l.check(addr(STRANGER), ev(1, i), t), Verdict::Stranger);
            assert_eq!(l.destination(), Some(addr(PHONE_SDP)));
        }
        assert_eq!(l.check(addr(PHONE_NAT), ev(7, 1), t), Verdict::Latched);
        assert_eq!(l.destination(), Some(addr(PHONE_NAT)));
        assert_eq!(l.check(addr(PHONE_NAT), ev(7, 2), t), Verdict::Accept);
        assert_eq!(
            l.check(addr(STRANGER), ev(7, 3), t),
            Verdict::Stranger,
            "not quiet yet"
        );
        assert_eq!(l.confirmed(), Some(addr(PHONE_NAT)));
    }

    #[test]
    fn exact_sdp_endpoint_latches() {
        let t = Instant::now();
        let mut l = nat_latch(false, t);
        assert_eq!(l.check(addr(PHONE_SDP), None, t), Verdict::Latched);
        assert_eq!(l.check(addr("10.0.0.2:6002"), None, t), Verdict::Stranger);
    }

    /// Two phones behind one public IP with port-preserving NAT (or on one host, or
    /// behind one SBC): phone A's leg is signalled at A's exact endpoint.
    const SHARED_IP: &str = "192.0.2.40";
    const PHONE_A: &str = "192.0.2.40:6000";
    const PHONE_B: &str = "192.0.2.40:6002";

    fn shared_ip_latch(received_from: bool, t: Instant) -> Latch {
        Latch::new(
            LatchPolicy::default(),
            Learning::Heuristic,
            Expectation {
                endpoint: Some(addr(PHONE_A)),
                source_ip: received_from.then(|| SHARED_IP.parse().unwrap()),
            },
            t,
        )
    }

    #[test]
    fn shared_ip_neighbour_first_then_the_phone_takes_over() {
        for received_from in [false, true] {
            let t = Instant::now();
            let mut l = shared_ip_latch(received_from, t);
            // B's packets reach A's port first: latched at once, provisionally.
            assert_eq!(l.check(addr(PHONE_B), ev(0xB, 1), t), Verdict::Latched);
            assert_eq!(l.destination(), Some(addr(PHONE_B)));
            assert_eq!(l.check(addr(PHONE_B), ev(0xB, 2), t), Verdict::Accept);
            // A third port at the shared IP does not take over a provisional latch.
            assert_eq!(
                l.check(addr("192.0.2.40:6004"), ev(0xC, 1), t),
                Verdict::Stranger
            );
            // A speaks from its exact endpoint: it takes over at once.
            let t1 = t + Duration::from_millis(20);
            assert_eq!(l.check(addr(PHONE_A), ev(0xA, 500), t1), Verdict::Latched);
            assert_eq!(l.confirmed(), Some(addr(PHONE_A)));
            assert_eq!(l.destination(), Some(addr(PHONE_A)));
            assert_eq!(l.check(addr(PHONE_A), ev(0xA, 501), t1), Verdict::Accept);
            // B is refused from now on, even once A has been quiet (other SSRC).
            assert_eq!(l.check(addr(PHONE_B), ev(0xB, 3), t1), Verdict::Stranger);
            let later = t1 + Duration::from_secs(5);
            assert_eq!(l.check(addr(PHONE_B), ev(0xB, 4), later), Verdict::Stranger);
            assert_eq!(l.destination(), Some(addr(PHONE_A)));
        }
    }

    #[test]
    fn exact_latch_refuses_a_same_ip_neighbour() {
        let t = Instant::now();
        let mut l = shared_ip_latch(true, t);
        assert_eq!(l.check(addr(PHONE_A), ev(0xA, 1), t), Verdict::Latched);
        for (i, at) in [t, t + Duration::from_secs(3)].into_iter().enumerate() {
            assert_eq!(
                l.check(addr(PHONE_B), ev(0xB, 1), at),
                Verdict::Stranger,
                "neighbour, attempt {i}"
            );
            assert_eq!(
                l.check(addr(PHONE_B), None, at),
                Verdict::Stranger,
                "neighbour without RTP evidence, attempt {i}"
            );
        }
        assert_eq!(l.destination(), Some(addr(PHONE_A)));
        assert_eq!(
            l.check(addr(PHONE_A), ev(0xA, 2), t + Duration::from_secs(3)),
            Verdict::Accept
        );
    }

    #[test]
    fn exact_latch_still_relatches_on_evidence_at_the_same_ip() {
        let t = Instant::now();
        let mut l = shared_ip_latch(false, t);
        assert_eq!(l.check(addr(PHONE_A), ev(0xA, 10), t), Verdict::Latched);
        // The NAT rebinds A to another port: same SSRC, near sequence, after quiet.
        let rebound = addr("192.0.2.40:6100");
        assert_eq!(
            l.check(rebound, ev(0xA, 11), t),
            Verdict::Stranger,
            "A's old mapping is not quiet yet"
        );
        let later = t + Duration::from_secs(2);
        assert_eq!(l.check(rebound, ev(0xA, 40), later), Verdict::Latched);
        assert_eq!(l.destination(), Some(rebound));
        assert_eq!(l.check(rebound, ev(0xA, 41), later), Verdict::Accept);
        // The move kept the firm hold: a neighbour at the shared IP is still refused.
        assert_eq!(l.check(addr(PHONE_B), ev(0xB, 1), later), Verdict::Stranger);
    }

    #[test]
    fn a_relatched_provisional_source_still_gives_way_to_the_exact_endpoint() {
        let t = Instant::now();
        let mut l = shared_ip_latch(false, t);
        assert_eq!(l.check(addr(PHONE_B), ev(0xB, 10), t), Verdict::Latched);
        let moved = addr("198.51.100.7:7000");
        let later = t + Duration::from_secs(2);
        assert_eq!(l.check(moved, ev(0xB, 11), later), Verdict::Latched);
        assert_eq!(l.check(addr(PHONE_A), ev(0xA, 1), later), Verdict::Latched);
        assert_eq!(l.check(moved, ev(0xB, 12), later), Verdict::Stranger);
    }

    #[test]
    fn nat_with_a_rewritten_port_latches_at_once_and_drops_nothing() {
        let t = Instant::now();
        // The phone's SDP carries its public IP (STUN, or a proxy that fixed the SDP),
        // and the NAT rewrote the port.
        let mut l = Latch::new(
            LatchPolicy::default(),
            Learning::Heuristic,
            Expectation {
                endpoint: Some(addr("203.0.113.9:6000")),
                source_ip: Some("203.0.113.9".parse().unwrap()),
            },
            t,
        );
        let nat = addr(PHONE_NAT);
        assert_eq!(l.check(nat, ev(7, 0), t), Verdict::Latched);
        for i in 1..200 {
            let at = t + Duration::from_millis(20 * u64::from(i));
            assert_eq!(l.check(nat, ev(7, i), at), Verdict::Accept, "packet {i}");
        }
        assert_eq!(l.destination(), Some(nat));
        assert_eq!(
            l.check(addr(STRANGER), ev(7, 200), t),
            Verdict::Stranger,
            "another IP"
        );
    }

    #[test]
    fn classic_nat_is_unchanged_a_private_sdp_endpoint_never_takes_over() {
        let t = Instant::now();
        let mut l = nat_latch(true, t);
        let nat = addr(PHONE_NAT);
        assert_eq!(l.check(nat, ev(7, 0), t), Verdict::Latched);
        for i in 1..50 {
            assert_eq!(l.check(nat, ev(7, i), t), Verdict::Accept, "packet {i}");
        }
        // Latched firmly: a packet claiming the private SDP endpoint (spoofed, since
        // packets never come from there) does not move it.
        assert_eq!(l.check(addr(PHONE_SDP), ev(8, 1), t), Verdict::Stranger);
        assert_eq!(l.destination(), Some(nat));
    }

    #[test]
    fn a_learned_source_gives_way_to_the_endpoint_ip_then_to_the_exact_endpoint() {
        let t = Instant::now();
        let mut l = shared_ip_latch(false, t);
        let learned = addr(STRANGER);
        for i in 0..2 {
            assert_eq!(l.check(learned, ev(1, i), t), Verdict::Learning);
        }
        assert_eq!(l.check(learned, ev(1, 2), t), Verdict::Latched);
        assert_eq!(l.check(addr(PHONE_B), ev(0xB, 1), t), Verdict::Latched);
        assert_eq!(l.check(learned, ev(1, 3), t), Verdict::Stranger);
        assert_eq!(l.check(addr(PHONE_A), ev(0xA, 1), t), Verdict::Latched);
        assert_eq!(l.check(addr(PHONE_B), ev(0xB, 2), t), Verdict::Stranger);
    }

    proptest! {
        /// Whatever hosts sharing the phone's IP send, and in whatever order: the first
        /// sender loses no packet until the phone speaks, the phone loses none from its
        /// first packet on, and after it no neighbour (other SSRCs) gets a packet in.
        #[test]
        fn shared_ip_phone_wins_from_its_first_packet(
            packets in prop::collection::vec((0u16..4, 0u64..3_000), 1..60),
            received_from in any::<bool>(),
        ) {
            let t0 = Instant::now();
            let mut l = shared_ip_latch(received_from, t0);
            let mut at = t0;
            let mut first: Option<u16> = None;
            let mut phone_spoke = false;
            for (seq, (host, gap_ms)) in (0u16..).zip(packets) {
                at += Duration::from_millis(gap_ms);
                // Host 0 is the phone at its exact endpoint; the others share its IP.
                let src = SocketAddr::new(SHARED_IP.parse().unwrap(), 6000 + 2 * host);
                let v = l.check(src, ev(u32::from(host), seq), at);
                if host == 0 {
                    phone_spoke = true;
                    prop_assert!(v.accepted(), "phone refused: {v:?}");
                } else if phone_spoke {
                    prop_assert_eq!(v, Verdict::Stranger);
                } else if *first.get_or_insert(host) == host {
                    prop_assert!(v.accepted(), "first sender refused: {v:?}");
                } else {
                    prop_assert_eq!(v, Verdict::Stranger);
                }
            }
            if phone_spoke {
                prop_assert_eq!(l.destination(), Some(addr(PHONE_A)));
            }
        }
    }

    #[test]
    fn without_received_from_a_stranger_needs_consecutive_packets_in_the_window() {
        let t = Instant::now();
        let mut l = nat_latch(false, t);
        let nat = addr(PHONE_NAT);
        assert_eq!(l.check(nat, ev(5, 10), t), Verdict::Learning);
        assert_eq!(
            l.destination(),
            Some(addr(PHONE_SDP)),
            "never to a candidate"
        );
        assert_eq!(l.check(nat, ev(5, 11), t), Verdict::Learning);
        assert_eq!(l.check(nat, ev(5, 12), t), Verdict::Latched);
        assert_eq!(l.destination(), Some(nat));
        // A learned source gives way to the signalled one when it shows up.
        assert_eq!(l.check(addr(PHONE_SDP), ev(6, 1), t), Verdict::Latched);
        assert_eq!(l.check(nat, ev(5, 13), t), Verdict::Stranger);
        // After the window, a fresh latch refuses strangers.
        let mut late = nat_latch(false, t);
        let after = t + Duration::from_secs(6);
        assert_eq!(late.check(nat, ev(5, 10), after), Verdict::Stranger);
    }

    #[test]
    fn competing_strangers_cancel_each_other() {
        let t = Instant::now();
        let mut l = nat_latch(false, t);
        assert_eq!(l.check(addr(STRANGER), ev(1, 1), t), Verdict::Learning);
        assert_eq!(l.check(addr(PHONE_NAT), ev(2, 1), t), Verdict::Stranger);
        for i in 0..10 {
            assert_eq!(l.check(addr(PHONE_NAT), ev(2, 2 + i), t), Verdict::Stranger);
        }
        assert_eq!(l.confirmed(), None);
        // The expected source still latches, and a new signal reopens learning.
        l.signal(Learning::Heuristic, l.expectation(), t);
        assert_eq!(l.check(addr(PHONE_NAT), ev(2, 20), t), Verdict::Learning);
        // A change of SSRC from the candidate counts as a competitor.
        assert_eq!(l.check(addr(PHONE_NAT), ev(3, 21), t), Verdict::Stranger);
    }

    #[test]
    fn relatch_needs_ssrc_sequence_and_quiet() {
        let t = Instant::now();
        let mut l = nat_latch(true, t);
        let moved = addr("203.0.113.77:5000");
        assert_eq!(l.check(addr(PHONE_NAT), ev(7, 100), t), Verdict::Latched);
        let later = t + Duration::from_secs(2);
        assert_eq!(
            l.check(moved, ev(8, 101), later),
            Verdict::Stranger,
            "other SSRC"
        );
        assert_eq!(
            l.check(moved, ev(7, 300), later),
            Verdict::Stranger,
            "sequence jump"
        );
        assert_eq!(
            l.check(moved, ev(7, 99), later),
            Verdict::Stranger,
            "backwards"
        );
        assert_eq!(
            l.check(moved, None, later),
            Verdict::Stranger,
            "no RTP evidence"
        );
        assert_eq!(l.check(moved, ev(7, 150), later), Verdict::Latched);
        assert_eq!(l.destination(), Some(moved));
        assert_eq!(
            l.check(addr(PHONE_NAT), ev(7, 151), later),
            Verdict::Stranger,
            "old source is not quiet: refused"
        );
    }

    #[test]
    fn media_handover_drops_the_quiet_requirement() {
        let t = Instant::now();
        let mut l = nat_latch(true, t);
        l.set_flags(false, true);
        assert_eq!(l.check(addr(PHONE_NAT), ev(7, 1), t), Verdict::Latched);
        assert_eq!(l.check(addr(STRANGER), ev(7, 2), t), Verdict::Latched);
    }

    #[test]
    fn sequence_wrap_counts_as_near() {
        let t = Instant::now();
        let mut l = nat_latch(true, t);
        assert_eq!(l.check(addr(PHONE_NAT), ev(7, 65530), t), Verdict::Latched);
        let later = t + Duration::from_secs(2);
        assert_eq!(l.check(addr(STRANGER), ev(7, 4), later), Verdict::Latched);
    }

    #[test]
    fn new_endpoint_in_signalling_reopens_learning() {
        let t = Instant::now();
        let mut l = nat_latch(true, t);
        assert_eq!(l.check(addr(PHONE_NAT), None, t), Verdict::Latched);
        l.signal(Learning::Heuristic, l.expectation(), t);
        assert_eq!(
            l.confirmed(),
            Some(addr(PHONE_NAT)),
            "same endpoint keeps the latch"
        );
        let new = Expectation {
            endpoint: Some(addr("192.0.2.50:7000")),
            source_ip: Some("192.0.2.50".parse().unwrap()),
        };
        l.signal(Learning::Heuristic, new, t);
        assert_eq!(l.confirmed(), None);
        assert_eq!(l.destination(), Some(addr("192.0.2.50:7000")));
        assert_eq!(l.check(addr(PHONE_NAT), None, t), Verdict::Stranger);
        assert_eq!(l.check(addr("192.0.2.50:7010"), None, t), Verdict::Latched);
    }

    #[test]
    fn modes() {
        let t = Instant::now();
        let exp = Expectation {
            endpoint: Some(addr(PHONE_SDP)),
            source_ip: None,
        };
        let mut imm = Latch::new(LatchPolicy::default(), Learning::Immediate, exp, t);
        assert_eq!(imm.check(addr(STRANGER), None, t), Verdict::Latched);
        assert_eq!(imm.check(addr(PHONE_SDP), None, t), Verdict::Stranger);
        let mut off = Latch::new(LatchPolicy::default(), Learning::Off, exp, t);
        assert_eq!(off.check(addr(STRANGER), None, t), Verdict::Stranger);
        assert_eq!(off.check(addr(PHONE_SDP), None, t), Verdict::Accept);
        assert_eq!(off.destination(), Some(addr(PHONE_SDP)));
        let mut asym = Latch::new(LatchPolicy::default(), Learning::Heuristic, exp, t);
        asym.set_flags(true, false);
        assert_eq!(asym.check(addr(STRANGER), None, t), Verdict::Accept);
        assert_eq!(asym.destination(), Some(addr(PHONE_SDP)));
    }

    #[test]
    fn rtcp_latch_takes_a_hint_from_rtp() {
        let t = Instant::now();
        let mut rtcp = nat_latch(false, t);
        rtcp.hint_source_ip("203.0.113.9".parse().unwrap());
        assert_eq!(
            rtcp.check(addr("203.0.113.9:41235"), None, t),
            Verdict::Latched
        );
    }
}
