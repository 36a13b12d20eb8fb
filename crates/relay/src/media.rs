//! One relayed media stream (one `m=` line): two legs, one per party, each with the
//! relay's RTP/RTCP port pair that party sends to, its latches, counters and
//! RTCP-derived quality; and the per-packet forwarding decision.
//!
//! What it does: [`MediaPair::on_datagram`] takes a datagram that arrived on one of
//! the four relay ports, decides whether it is RTP or RTCP (RFC 5761 §4 on a muxed
//! port), checks its source with the leg's [`Latch`], counts it, reads RTCP report
//! blocks (RFC 3550 §6.4) for loss and jitter, and says which relay port sends it to
//! which address on the other leg (RTCP goes to the other party's RTP port when that
//! party multiplexes). Symmetric RTP (RFC 4961): media for a party leaves from the
//! very port that party sends to.
//!
//! What it does not: touch sockets or the clock (the engine passes `now`), or rewrite
//! packets (the relay forwards them unchanged). Non-RTP streams (T.38 over UDPTL)
//! are forwarded as opaque datagrams on the first port of the pair.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mediagate_rtp::rtcp::{RtcpPacket, RtcpPackets};
use mediagate_rtp::{classify_muxed, MuxedKind, RtpPacket};

use crate::latch::{Expectation, Latch, LatchPolicy, RtpEvidence, Verdict};
use mediagate_ng::request::Learning;

/// RTP or RTCP: which port of a pair, or what a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Component {
    /// RTP (the even port).
    Rtp,
    /// RTCP (the odd port).
    Rtcp,
}

/// Packet and byte counts of one direction of one component.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Packets accepted and forwarded.
    pub packets: u64,
    /// Bytes accepted and forwarded (UDP payload).
    pub bytes: u64,
    /// Packets dropped as malformed, or with nowhere to go.
    pub errors: u64,
    /// Packets dropped because of their source (strangers, unconfirmed candidates).
    pub refused: u64,
    /// When the last packet was accepted.
    pub last_packet: Option<Instant>,
}

impl Counters {
    fn accept(&mut self, len: usize, now: Instant) {
        self.packets += 1;
        self.bytes += len as u64;
        self.last_packet = Some(now);
    }

    /// Adds another set of counts (for totals).
    pub(crate) fn add(&mut self, other: &Counters) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.refused += other.refused;
        self.last_packet = self.last_packet.max(other.last_packet);
    }
}

/// What the latest RTCP report from a party says about the stream it receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Quality {
    /// Loss since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost.
    pub cumulative_lost: i32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Reports read.
    pub reports: u64,
}

/// One party's side of a stream.
#[derive(Debug, Clone)]
pub(crate) struct Leg {
    /// The relay's RTP port this party sends to (RTCP is the next port).
    pub local: SocketAddr,
    /// The address written into SDP for this party (the advertised one under 1:1 NAT).
    pub advertised: IpAddr,
    /// Source policy for the RTP port.
    pub rtp_latch: Latch,
    /// Source policy for the RTCP port.
    pub rtcp_latch: Latch,
    /// This party multiplexes RTCP on the RTP port (RFC 5761), as negotiated.
    pub rtcp_mux: bool,
    /// This party's last SDP carried `a=rtcp-mux` (its offer, before negotiation).
    pub sdp_rtcp_mux: bool,
    /// What this party sent, RTP.
    pub rtp: Counters,
    /// What this party sent, RTCP.
    pub rtcp: Counters,
    /// From this party's RTCP reports: how it receives the other party's stream.
    pub quality: Quality,
    /// Codec names from this party's SDP, in preference order.
    pub codecs: Vec<String>,
    /// The stream is on hold from this party (sendonly, inactive, `0.0.0.0`).
    pub on_hold: bool,
    /// The party's last SDP set this stream's port to 0.
    pub closed: bool,
}

impl Leg {
    /// A leg on relay port `local`, advertising `advertised`, not yet signalled.
    pub(crate) fn new(
        local: SocketAddr,
        advertised: IpAddr,
        policy: LatchPolicy,
        now: Instant,
    ) -> Self {
        let unknown = Expectation::default();
        Self {
            local,
            advertised,
            rtp_latch: Latch::new(policy, Learning::Heuristic, unknown, now),
            rtcp_latch: Latch::new(policy, Learning::Heuristic, unknown, now),
            rtcp_mux: false,
            sdp_rtcp_mux: false,
            rtp: Counters::default(),
            rtcp: Counters::default(),
            quality: Quality::default(),
            codecs: Vec::new(),
            on_hold: false,
            closed: false,
        }
    }

    /// The relay's RTCP port for this party.
    pub(crate) fn local_rtcp(&self) -> SocketAddr {
        SocketAddr::new(self.local.ip(), self.local.port().wrapping_add(1))
    }

    /// The last time this party sent anything accepted.
    pub(crate) fn last_packet(&self) -> Option<Instant> {
        self.rtp.last_packet.max(self.rtcp.last_packet)
    }
}

/// Where a packet goes: out of `side`'s `component` port, to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forward {
    /// The leg whose relay port sends the packet (the other party's).
    pub side: usize,
    /// Which port of that leg's pair.
    pub component: Component,
    /// The destination.
    pub to: SocketAddr,
}

/// A relayed stream: `legs[0]` is the party in slot 0 of the call (the first
/// offerer), `legs[1]` the other.
#[derive(Debug, Clone)]
pub(crate) struct MediaPair {
    /// Position of the `m=` line in the SDP.
    pub index: usize,
    /// `audio`, `video`, `image` ...
    pub media_type: String,
    /// `RTP/AVP`, `udptl` ...
    pub proto: String,
    /// The proto carries RTP (so RTCP exists and packets are parsed).
    pub is_rtp: bool,
    /// The two legs.
    pub legs: [Leg; 2],
}

impl MediaPair {
    /// Judges and accounts one datagram that arrived on `side`'s `port` from `src`.
    pub(crate) fn on_datagram(
        &mut self,
        side: usize,
        port: Component,
        src: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Option<Forward> {
        let side = side.min(1);
        let other = 1 - side;
        let is_rtp_stream = self.is_rtp;
        let leg = self.legs.get_mut(side)?;
        let kind = match (is_rtp_stream, port) {
            (false, _) => Component::Rtp,
            (true, Component::Rtcp) => Component::Rtcp,
            (true, Component::Rtp) => match classify_muxed(data) {
                MuxedKind::Rtcp => Component::Rtcp,
                MuxedKind::Rtp => Component::Rtp,
                MuxedKind::Other => {
                    leg.rtp.errors += 1;
                    return None;
                }
            },
        };
        let evidence = if is_rtp_stream && kind == Component::Rtp {
            match RtpPacket::parse(data) {
                Ok(p) => Some(RtpEvidence {
                    ssrc: p.ssrc(),
                    seq: p.sequence_number(),
                }),
                Err(_) => {
                    leg.rtp.errors += 1;
                    return None;
                }
            }
        } else {
            None
        };
        // RTCP multiplexed on the RTP port comes from the RTP source: judge it by the
        // RTP latch without letting it learn (RTCP carries no sequence numbers).
        let verdict = match (kind, port) {
            (Component::Rtp, _) => leg.rtp_latch.check(src, evidence, now),
            (Component::Rtcp, Component::Rtcp) => leg.rtcp_latch.check(src, None, now),
            (Component::Rtcp, Component::Rtp) => {
                if leg.rtp_latch.confirmed() == Some(src) {
                    Verdict::Accept
                } else {
                    Verdict::Stranger
                }
            }
        };
        let counters = match kind {
            Component::Rtp => &mut leg.rtp,
            Component::Rtcp => &mut leg.rtcp,
        };
        if !verdict.accepted() {
            counters.refused += 1;
            return None;
        }
        if kind == Component::Rtcp && is_rtp_stream && !read_reports(data, &mut leg.quality) {
            counters.errors += 1;
            return None;
        }
        counters.accept(data.len(), now);
        if verdict == Verdict::Latched && kind == Component::Rtp {
            leg.rtcp_latch.hint_source_ip(src.ip());
        }
        let target = self.legs.get(other)?;
        let (component, to) = match kind {
            Component::Rtp => (Component::Rtp, target.rtp_latch.destination()),
            Component::Rtcp if target.rtcp_mux => (Component::Rtp, target.rtp_latch.destination()),
            Component::Rtcp => (Component::Rtcp, target.rtcp_latch.destination()),
        };
        match to {
            Some(to) if !to.ip().is_unspecified() && to.port() != 0 => Some(Forward {
                side: other,
                component,
                to,
            }),
            _ => {
                if let Some(leg) = self.legs.get_mut(side) {
                    match kind {
                        Component::Rtp => leg.rtp.errors += 1,
                        Component::Rtcp => leg.rtcp.errors += 1,
                    }
                }
                None
            }
        }
    }

    /// The latest accepted packet on any leg.
    pub(crate) fn last_packet(&self) -> Option<Instant> {
        self.legs.iter().filter_map(Leg::last_packet).max()
    }
}

/// Reads the report blocks of an RTCP compound into `quality`; false if the datagram
/// is not RTCP at all.
fn read_reports(data: &[u8], quality: &mut Quality) -> bool {
    let mut any = false;
    for packet in RtcpPackets::new(data) {
        let Ok(packet) = packet else {
            return any;
        };
        any = true;
        let blocks = match packet {
            RtcpPacket::SenderReport(sr) => sr.report_blocks(),
            RtcpPacket::ReceiverReport(rr) => rr.report_blocks(),
            _ => continue,
        };
        if let Some(b) = blocks.into_iter().next() {
            quality.fraction_lost = b.fraction_lost;
            quality.cumulative_lost = b.cumulative_lost;
            quality.jitter = b.jitter;
            quality.reports += 1;
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_rtp::rtcp::{build, ReportBlock};
    use mediagate_rtp::RtpHeader;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn rtp(ssrc: u32, seq: u16, payload_len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; 12 + payload_len];
        let h = RtpHeader {
            payload_type: 8,
            sequence_number: seq,
            timestamp: u32::from(seq) * 160,
            ssrc,
            ..RtpHeader::default()
        };
        let n = h.write(&vec![0xd5; payload_len], &mut buf).unwrap();
        assert_eq!(n, buf.len());
        buf
    }

    fn rr(ssrc: u32, lost: u8, jitter: u32) -> Vec<u8> {
        let block = ReportBlock {
            ssrc: 1,
            fraction_lost: lost,
            cumulative_lost: 5,
            extended_highest_seq: 100,
            jitter,
            ..ReportBlock::default()
        };
        let mut out = vec![0u8; 64];
        let n = build::write_receiver_report(&mut out, ssrc, &[block]).unwrap();
        out.truncate(n);
        out
    }

    /// A caller at 10.1.0.2 (SDP) behind NAT 203.0.113.9, a callee at 192.0.2.20.
    fn pair(now: Instant) -> MediaPair {
        let p = LatchPolicy::default();
        let mut a = Leg::new(
            addr("192.0.2.1:30000"),
            "192.0.2.1".parse().unwrap(),
            p,
            now,
        );
        let mut b = Leg::new(
            addr("192.0.2.1:30002"),
            "192.0.2.1".parse().unwrap(),
            p,
            now,
        );
        let a_exp = |port| Expectation {
            endpoint: Some(SocketAddr::new("10.1.0.2".parse().unwrap(), port)),
            source_ip: Some("203.0.113.9".parse().unwrap()),
        };
        a.rtp_latch.signal(Learning::Heuristic, a_exp(4000), now);
        a.rtcp_latch.signal(Learning::Heuristic, a_exp(4001), now);
        let b_exp = |port| Expectation {
            endpoint: Some(SocketAddr::new("192.0.2.20".parse().unwrap(), port)),
            source_ip: None,
        };
        b.rtp_latch.signal(Learning::Heuristic, b_exp(5000), now);
        b.rtcp_latch.signal(Learning::Heuristic, b_exp(5001), now);
        MediaPair {
            index: 0,
            media_type: "audio".into(),
            proto: "RTP/AVP".into(),
            is_rtp: true,
            legs: [a, b],
        }
    }

    #[test]
    fn forwards_both_ways_from_the_facing_port() {
        let t = Instant::now();
        let mut m = pair(t);
        let nat = addr("203.0.113.9:50000");
        let f = m
            .on_datagram(0, Component::Rtp, nat, &rtp(1, 1, 160), t)
            .unwrap();
        assert_eq!(
            f,
            Forward {
                side: 1,
                component: Component::Rtp,
                to: addr("192.0.2.20:5000")
            }
        );
        let back = m
            .on_datagram(
                1,
                Component::Rtp,
                addr("192.0.2.20:5000"),
                &rtp(2, 1, 160),
                t,
            )
            .unwrap();
        assert_eq!(
            back.to, nat,
            "the caller's NAT mapping, not its SDP address"
        );
        assert_eq!(back.side, 0);
        assert_eq!(m.legs[0].rtp.packets, 1);
        assert_eq!(m.legs[0].rtp.bytes, 172);
        assert_eq!(m.legs[1].rtp.last_packet, Some(t));
    }

    #[test]
    fn strangers_are_counted_not_forwarded() {
        let t = Instant::now();
        let mut m = pair(t);
        for i in 0..50 {
            assert_eq!(
                m.on_datagram(
                    0,
                    Component::Rtp,
                    addr("198.51.100.66:9"),
                    &rtp(9, i, 160),
                    t
                ),
                None
            );
        }
        assert_eq!(m.legs[0].rtp.refused, 50);
        assert_eq!(m.legs[0].rtp.packets, 0);
        // Media for the caller still goes to its signalled address, not the stranger.
        let f = m
            .on_datagram(
                1,
                Component::Rtp,
                addr("192.0.2.20:5000"),
                &rtp(2, 1, 10),
                t,
            )
            .unwrap();
        assert_eq!(f.to, addr("10.1.0.2:4000"));
    }

    #[test]
    fn garbage_is_an_error() {
        let t = Instant::now();
        let mut m = pair(t);
        assert_eq!(
            m.on_datagram(0, Component::Rtp, addr("203.0.113.9:1"), b"hello", t),
            None
        );
        assert_eq!(
            m.on_datagram(0, Component::Rtp, addr("203.0.113.9:1"), &[0x80; 5], t),
            None
        );
        assert_eq!(m.legs[0].rtp.errors, 2);
        assert_eq!(
            m.on_datagram(
                0,
                Component::Rtcp,
                addr("203.0.113.9:1"),
                &[0x80, 201, 0, 9],
                t
            ),
            None
        );
        assert_eq!(m.legs[0].rtcp.errors, 1);
    }

    #[test]
    fn rtcp_reports_and_demultiplexing() {
        let t = Instant::now();
        let mut m = pair(t);
        // Callee multiplexes: its RTCP arrives on the RTP port and goes to the caller's
        // RTCP port and address.
        m.legs[1].rtcp_mux = true;
        m.on_datagram(
            1,
            Component::Rtp,
            addr("192.0.2.20:5000"),
            &rtp(2, 1, 10),
            t,
        )
        .unwrap();
        let f = m
            .on_datagram(
                1,
                Component::Rtp,
                addr("192.0.2.20:5000"),
                &rr(2, 64, 80),
                t,
            )
            .unwrap();
        assert_eq!(
            f,
            Forward {
                side: 0,
                component: Component::Rtcp,
                to: addr("10.1.0.2:4001")
            }
        );
        assert_eq!(m.legs[1].quality.fraction_lost, 64);
        assert_eq!(m.legs[1].quality.jitter, 80);
        assert_eq!(m.legs[1].quality.cumulative_lost, 5);
        assert_eq!(m.legs[1].rtcp.packets, 1);
        // Caller's RTCP from its NAT goes to the callee's RTP port (it multiplexes).
        let f = m
            .on_datagram(
                0,
                Component::Rtcp,
                addr("203.0.113.9:50001"),
                &rr(1, 0, 3),
                t,
            )
            .unwrap();
        assert_eq!(
            f,
            Forward {
                side: 1,
                component: Component::Rtp,
                to: addr("192.0.2.20:5000")
            }
        );
    }

    #[test]
    fn udptl_is_opaque() {
        let t = Instant::now();
        let mut m = pair(t);
        m.is_rtp = false;
        let f = m
            .on_datagram(
                0,
                Component::Rtp,
                addr("203.0.113.9:50000"),
                b"\x00\x01t38",
                t,
            )
            .unwrap();
        assert_eq!(f.component, Component::Rtp);
        assert_eq!(m.legs[0].rtp.packets, 1);
    }

    #[test]
    fn nowhere_to_send_is_an_error() {
        let t = Instant::now();
        let mut m = pair(t);
        m.legs[1]
            .rtp_latch
            .signal(Learning::Heuristic, Expectation::default(), t);
        assert_eq!(
            m.on_datagram(
                0,
                Component::Rtp,
                addr("203.0.113.9:50000"),
                &rtp(1, 1, 10),
                t
            ),
            None
        );
        assert_eq!(m.legs[0].rtp.errors, 1);
        assert_eq!(
            m.legs[0].rtp.packets, 1,
            "accepted, then found no destination"
        );
    }
}
