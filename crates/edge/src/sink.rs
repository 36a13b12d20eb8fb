//! A viewer as the hub sees it: where its packets go.
//!
//! TCP viewers get interleaved frames pushed into their connection's bounded queue; UDP
//! viewers' destinations are collected so the hub can send a frame to all of them with
//! a few batched system calls. Between JOIN and the viewer's PLAY response being queued,
//! packets are *held* here (bounded) so the response always precedes the media.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mediagate_ops::metrics::Histogram;

use crate::conn_out::ConnOut;
use crate::hub::{Packet, PacketKind, SubscriberStats};

/// Packets held between join and release, at most (a few GOPs of a normal stream).
pub const MAX_HELD: usize = 4096;

/// Per-track delivery address of a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackDest {
    /// Interleaved channels (RTP, RTCP) on the viewer's RTSP connection.
    Interleaved { rtp: u8, rtcp: u8 },
    /// UDP addresses (RTP, RTCP).
    Udp { rtp: SocketAddr, rtcp: SocketAddr },
}

/// What one viewer session was sent, filled in by whoever feeds it: the hub when the
/// viewer leaves it (from the counts it keeps anyway, so the fan-out path pays nothing
/// extra), the on-demand passthrough per packet. The hub's RTCP readers and the
/// passthrough's add what a UDP viewer's receiver reports say.
#[derive(Debug, Default)]
pub struct Tally {
    packets: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
    reported: Mutex<ReportedLoss>,
    /// RTCP packets from the viewer: a UDP session without its connection lives on
    /// them (`parked`).
    rtcp_packets: AtomicU64,
}

/// The loss a viewer's RTCP reports state: the latest cumulative figure per reported
/// source (RFC 3550 §6.4.1), for a bounded number of sources.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReportedLoss {
    by_source: HashMap<u32, i32>,
}

/// Sources whose loss is kept per viewer, at most (a viewer naming thousands is
/// ignored beyond that).
const MAX_REPORTED_SOURCES: usize = 16;

impl ReportedLoss {
    /// Takes the report blocks of the RRs and SRs in an RTCP compound packet; anything
    /// that does not parse is ignored.
    pub fn note_rtcp(&mut self, payload: &[u8]) {
        if let Ok(compound) = mediagate_rtp::rtcp::Compound::parse(payload) {
            self.note_compound(&compound);
        }
    }

    /// [`ReportedLoss::note_rtcp`] of a compound packet parsed already.
    pub(crate) fn note_compound(&mut self, compound: &mediagate_rtp::rtcp::Compound<'_>) {
        for p in compound.packets() {
            let blocks = match p {
                mediagate_rtp::rtcp::RtcpPacket::ReceiverReport(rr) => rr.report_blocks(),
                mediagate_rtp::rtcp::RtcpPacket::SenderReport(sr) => sr.report_blocks(),
                _ => continue,
            };
            for b in blocks {
                if self.by_source.len() < MAX_REPORTED_SOURCES
                    || self.by_source.contains_key(&b.ssrc)
                {
                    self.by_source.insert(b.ssrc, b.cumulative_lost);
                }
            }
        }
    }

    /// The latest figures summed over sources (a negative figure, from duplicates,
    /// counts as none).
    pub fn total(&self) -> u64 {
        self.by_source
            .values()
            .map(|&v| u64::try_from(v).unwrap_or(0))
            .sum()
    }
}

/// A [`Tally`] read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
    /// Packets the viewer did not get because it fell behind.
    pub lost: u64,
}

impl Tally {
    /// Packets and bytes sent, nothing lost (one fewer atomic than [`Tally::add`]).
    pub fn add_sent(&self, packets: u64, bytes: u64) {
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add(&self, packets: u64, bytes: u64, lost: u64) {
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.lost.fetch_add(lost, Ordering::Relaxed);
    }

    /// An RTCP packet from the viewer (UDP viewers' reach the hub's RTCP socket).
    pub fn note_rtcp(&self, payload: &[u8]) {
        self.note_parsed(mediagate_rtp::rtcp::Compound::parse(payload).ok().as_ref());
    }

    /// [`Tally::note_rtcp`] of a packet its reader parsed already (None: it did not
    /// parse, and counts only as a sign of life).
    pub(crate) fn note_parsed(&self, compound: Option<&mediagate_rtp::rtcp::Compound<'_>>) {
        self.rtcp_packets.fetch_add(1, Ordering::Relaxed);
        if let Some(compound) = compound {
            self.reported
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .note_compound(compound);
        }
    }

    /// RTCP packets seen from the viewer so far.
    pub fn rtcp_packets(&self) -> u64 {
        self.rtcp_packets.load(Ordering::Relaxed)
    }

    /// The loss the viewer's RTCP reported, as [`ReportedLoss::total`].
    pub fn reported_lost(&self) -> u64 {
        self.reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total()
    }

    pub(crate) fn add_hub_stats(&self, st: &SubscriberStats) {
        self.add(st.delivered, st.delivered_bytes, st.skipped);
    }

    pub fn counts(&self) -> Counts {
        Counts {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }
}

/// One viewer's sink.
#[derive(Debug)]
pub struct ViewerSink {
    /// The viewer's RTSP connection (media for TCP viewers; closing it disconnects any
    /// viewer).
    pub conn: ConnOut,
    /// Indexed by track; `None` for tracks the viewer did not set up.
    pub dests: Vec<Option<TrackDest>>,
    /// The viewer session's counters; the hub adds to them when the viewer leaves.
    pub tally: Arc<Tally>,
    held: Option<Vec<Packet>>,
    /// Since when, and where to record, the wait for this viewer's first keyframe;
    /// taken when it is delivered.
    first_keyframe: Option<(std::time::Instant, Histogram)>,
}

impl ViewerSink {
    /// A sink that holds packets until [`ViewerSink::release`].
    pub fn new_held(conn: ConnOut, dests: Vec<Option<TrackDest>>, tally: Arc<Tally>) -> Self {
        Self {
            conn,
            dests,
            tally,
            held: Some(Vec::new()),
            first_keyframe: None,
        }
    }

    /// Records in `histogram` the time from `since` to the first keyframe packet this
    /// sink delivers.
    pub fn time_first_keyframe(&mut self, since: std::time::Instant, histogram: Histogram) {
        self.first_keyframe = Some((since, histogram));
    }

    /// Called for every packet delivered; one branch on a flag for all but the first
    /// keyframe.
    fn delivered(&mut self, p: &Packet) {
        if p.keyframe_start {
            if let Some((since, h)) = self.first_keyframe.take() {
                h.observe(since.elapsed().as_secs_f64());
            }
        }
    }

    /// Offers one packet. UDP destinations are appended to `udp_out`; the caller sends.
    /// False when the viewer cannot take it (backlog or hold full, connection closed).
    pub fn offer(&mut self, p: &Packet, udp_out: &mut Vec<SocketAddr>) -> bool {
        if let Some(held) = &mut self.held {
            if held.len() >= MAX_HELD {
                return false;
            }
            held.push(p.clone());
            return true;
        }
        let taken = self.deliver(p, udp_out);
        if taken {
            self.delivered(p);
        }
        taken
    }

    fn deliver(&self, p: &Packet, udp_out: &mut Vec<SocketAddr>) -> bool {
        let rtcp = p.kind == PacketKind::Rtcp;
        match self.dests.get(p.track).copied().flatten() {
            Some(TrackDest::Interleaved { rtp, rtcp: rc }) => {
                self.conn.push_media(if rtcp { rc } else { rtp }, &p.data)
            }
            Some(TrackDest::Udp { rtp, rtcp: rc }) => {
                if self.conn.is_closed() {
                    return false;
                }
                udp_out.push(if rtcp { rc } else { rtp });
                true
            }
            None => true,
        }
    }

    /// Ends the hold: returns the held packets with the destination each UDP one goes
    /// to (TCP ones are queued directly). `false` in the flag when the viewer could not
    /// take them all (it then waits for a keyframe like any lagging viewer).
    pub fn release(&mut self) -> (Vec<(Packet, SocketAddr)>, bool) {
        let Some(held) = self.held.take() else {
            return (Vec::new(), true);
        };
        let mut udp = Vec::new();
        let mut scratch = Vec::with_capacity(1);
        for p in held {
            scratch.clear();
            if !self.deliver(&p, &mut scratch) {
                return (udp, false);
            }
            self.delivered(&p);
            if let Some(d) = scratch.first() {
                udp.push((p, *d));
            }
        }
        (udp, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udp_viewers_reports_keep_the_latest_loss_per_source() {
        use mediagate_rtp::rtcp::{build::CompoundWriter, ReportBlock};
        let rr = |blocks: &[(u32, i32)]| {
            let blocks: Vec<ReportBlock> = blocks
                .iter()
                .map(|&(ssrc, cumulative_lost)| ReportBlock {
                    ssrc,
                    cumulative_lost,
                    ..ReportBlock::default()
                })
                .collect();
            let mut buf = vec![0u8; 1024];
            let mut w = CompoundWriter::new(&mut buf);
            w.receiver_report(1, &blocks).unwrap();
            let n = w.finish().unwrap();
            buf.truncate(n);
            buf
        };
        let tally = Tally::default();
        tally.note_rtcp(&rr(&[(10, 4)]));
        tally.note_rtcp(&rr(&[(10, 6), (11, -2)]));
        tally.note_rtcp(b"\x00garbage");
        assert_eq!(tally.reported_lost(), 6);
        // Bounded: sources beyond the cap are not kept.
        let many: Vec<(u32, i32)> = (100..200).map(|s| (s, 1)).collect();
        for chunk in many.chunks(20) {
            tally.note_rtcp(&rr(chunk));
        }
        assert_eq!(tally.reported_lost(), 6 + (MAX_REPORTED_SOURCES as u64 - 2));
    }
}
