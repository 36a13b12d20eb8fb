//! Per-track accounting of what one viewer received: RTP packets and bytes, loss,
//! duplicates and reordering from sequence numbers (RFC 3550 A.1, via
//! [`mediagate_rtp::SeqTracker`]), the first packet (to check it against `RTP-Info`,
//! RFC 2326 §12.33) and when the first keyframe started (RFC 6184 / RFC 7798 keyframe
//! detection in `mediagate_rtp`).
//!
//! What it does not: read sockets or clocks. Callers pass each datagram with its arrival
//! time, so this is pure and the hot path does no allocation and, once the first
//! keyframe has been seen, no payload inspection.

use std::time::Instant;

use mediagate_rtp::{RtpPacket, SeqCounts, SeqTracker};

pub(crate) use mediagate_rtp::Codec;

/// The first RTP packet of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FirstPacket {
    pub at: Instant,
    pub seq: u16,
    pub timestamp: u32,
}

/// Counters for one track of one viewer.
#[derive(Debug, Clone)]
pub(crate) struct TrackStats {
    codec: Codec,
    seq: SeqTracker,
    /// Valid RTP packets, duplicates included.
    pub packets: u64,
    /// Bytes of those packets (RTP header included).
    pub bytes: u64,
    /// Datagrams on the RTP port that are not RTP.
    pub invalid: u64,
    /// RTCP packets (compound datagrams or interleaved frames) received.
    pub rtcp: u64,
    pub first: Option<FirstPacket>,
    /// Arrival of the first packet that starts a keyframe (video tracks only).
    pub first_keyframe: Option<Instant>,
    /// The longest wait between two packets (a stall the viewer would see).
    pub max_gap: std::time::Duration,
    last_at: Option<Instant>,
}

impl TrackStats {
    /// Nothing received yet.
    pub(crate) fn new(codec: Codec) -> Self {
        Self {
            codec,
            seq: SeqTracker::new(),
            packets: 0,
            bytes: 0,
            invalid: 0,
            rtcp: 0,
            first: None,
            first_keyframe: None,
            max_gap: std::time::Duration::ZERO,
            last_at: None,
        }
    }

    /// Accounts one datagram that arrived on the RTP port (or channel) at `at`.
    pub(crate) fn record_rtp(&mut self, datagram: &[u8], at: Instant) {
        let Ok(p) = RtpPacket::parse(datagram) else {
            self.invalid = self.invalid.saturating_add(1);
            return;
        };
        self.packets = self.packets.saturating_add(1);
        self.bytes = self.bytes.saturating_add(datagram.len() as u64);
        self.seq.record(p.sequence_number());
        if let Some(prev) = self.last_at {
            self.max_gap = self.max_gap.max(at.saturating_duration_since(prev));
        }
        self.last_at = Some(at);
        if self.first.is_none() {
            self.first = Some(FirstPacket {
                at,
                seq: p.sequence_number(),
                timestamp: p.timestamp(),
            });
        }
        if self.first_keyframe.is_none() && self.codec.is_keyframe_start(p.payload()) {
            self.first_keyframe = Some(at);
        }
    }

    /// Accounts one datagram on the RTCP port (or channel).
    pub(crate) fn record_rtcp(&mut self) {
        self.rtcp = self.rtcp.saturating_add(1);
    }

    /// Loss, duplicates and reordering so far.
    pub(crate) fn seq_counts(&self) -> SeqCounts {
        self.seq.counts()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// An RTP packet: version 2, payload type 96, the given sequence number and
    /// timestamp, SSRC 0x11223344, then `payload`.
    pub(crate) fn rtp(seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1122_3344u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// FU-A start of an IDR slice with first_mb_in_slice = 0.
    pub(crate) const H264_IDR_START: [u8; 4] = [0x7c, 0x85, 0x88, 0x00];
    /// FU-A start of a non-IDR slice.
    const H264_P_START: [u8; 4] = [0x7c, 0x81, 0x9a, 0x00];

    #[test]
    fn counts_loss_duplicates_and_bytes() {
        let t0 = Instant::now();
        let mut s = TrackStats::new(Codec::Other);
        for seq in [10u16, 11, 13, 13, 12, 16] {
            s.record_rtp(&rtp(seq, 0, &[0; 8]), t0);
        }
        s.record_rtp(b"not rtp", t0);
        s.record_rtcp();
        assert_eq!(s.packets, 6);
        assert_eq!(s.bytes, 6 * 20);
        assert_eq!(s.invalid, 1);
        assert_eq!(s.rtcp, 1);
        let c = s.seq_counts();
        assert_eq!(
            (c.received, c.lost, c.duplicates, c.reordered),
            (5, 2, 1, 1)
        );
        assert_eq!(
            s.first,
            Some(FirstPacket {
                at: t0,
                seq: 10,
                timestamp: 0
            })
        );
        assert_eq!(s.first_keyframe, None, "audio has no keyframes");
    }

    #[test]
    fn first_keyframe_is_the_first_idr_start_only() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = TrackStats::new(Codec::H264);
        s.record_rtp(&rtp(1, 900, &H264_P_START), t0);
        assert_eq!(s.first_keyframe, None);
        s.record_rtp(&rtp(2, 1800, &H264_IDR_START), t0 + ms(40));
        s.record_rtp(&rtp(3, 2700, &H264_IDR_START), t0 + ms(80));
        assert_eq!(s.first_keyframe, Some(t0 + ms(40)));
        s.record_rtp(&rtp(4, 3600, &H264_P_START), t0 + ms(250));
        s.record_rtp(&rtp(5, 4500, &H264_P_START), t0 + ms(260));
        assert_eq!(s.max_gap, ms(170), "the longest wait between two packets");
        assert_eq!(s.first.map(|f| (f.seq, f.timestamp)), Some((1, 900)));
    }

    #[test]
    fn codec_names_are_matched_without_case() {
        assert_eq!(Codec::from_encoding("h264"), Codec::H264);
        assert_eq!(Codec::from_encoding("H265"), Codec::H265);
        assert_eq!(Codec::from_encoding("hevc"), Codec::H265);
        assert_eq!(Codec::from_encoding("MPEG4-GENERIC"), Codec::Other);
    }

    #[test]
    fn h265_keyframes_are_detected() {
        // H.265 NAL header of an IDR_W_RADL (type 19), then
        // first_slice_segment_in_pic_flag = 1.
        let idr = [19 << 1, 0x01, 0x80, 0x00];
        let mut s = TrackStats::new(Codec::H265);
        let t0 = Instant::now();
        s.record_rtp(&rtp(5, 0, &idr), t0);
        assert_eq!(s.first_keyframe, Some(t0));
    }
}
