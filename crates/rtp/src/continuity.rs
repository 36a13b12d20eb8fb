//! Keeps one track's outgoing RTP numbering continuous across upstream sessions.
//!
//! When the origin connection drops and the edge reconnects, the new upstream session
//! starts with a new random SSRC, sequence number and timestamp (RFC 3550 §5.1). Players
//! treat such a jump as a new stream and reset or stall, so viewers must never see it:
//! every packet is rewritten once in the hub (not per viewer) so that the SSRC stays the
//! first one seen, the sequence number continues at `last + 1`, and the timestamp advances
//! by the wall-clock time the gap lasted (RFC 3550 §5.1: timestamps track sampling time).
//!
//! RTCP sender reports are rewritten with the same SSRC and timestamp offset so that
//! lip-sync (RTP time ↔ NTP time mapping) stays right.
//!
//! Pure code: the caller passes `now`.

use std::time::{Duration, Instant};

/// Rewrites one track's RTP and RTCP packets in place.
#[derive(Debug, Clone)]
pub struct ContinuityRewriter {
    clock_rate: u32,
    out_ssrc: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    /// Set by [`ContinuityRewriter::upstream_restarted`]; the next RTP packet recomputes
    /// the offsets.
    rebase_pending: bool,
    last_out: Option<LastOut>,
}

#[derive(Debug, Clone, Copy)]
struct LastOut {
    seq: u16,
    ts: u32,
    at: Instant,
}

/// The smallest timestamp step we assume across a gap, so two packets never share a
/// timestamp by accident when the clock rate is unknown or the gap is tiny.
const MIN_TS_STEP: u32 = 1;

impl ContinuityRewriter {
    /// `clock_rate` is the track's RTP clock (from `a=rtpmap`), 90000 for video.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            out_ssrc: None,
            seq_offset: 0,
            ts_offset: 0,
            rebase_pending: false,
            last_out: None,
        }
    }

    /// The SSRC viewers see (the first upstream SSRC), once a packet has passed.
    pub fn ssrc(&self) -> Option<u32> {
        self.out_ssrc
    }

    /// Sequence number and timestamp of the last packet handed out.
    pub fn last_out(&self) -> Option<(u16, u32)> {
        self.last_out.map(|l| (l.seq, l.ts))
    }

    /// Call when a new upstream session begins (after a reconnect); the next packet is
    /// placed right after the last one viewers saw.
    pub fn upstream_restarted(&mut self) {
        self.rebase_pending = true;
    }

    /// Rewrites an RTP packet in place. Returns the outgoing `(seq, timestamp)`, or
    /// `None` when the buffer is not a plausible RTP packet (left untouched).
    pub fn rewrite_rtp(&mut self, pkt: &mut [u8], now: Instant) -> Option<(u16, u32)> {
        if pkt.len() < 12 || pkt[0] >> 6 != 2 {
            return None;
        }
        let in_seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let in_ts = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        let in_ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let out_ssrc = *self.out_ssrc.get_or_insert(in_ssrc);
        if self.rebase_pending {
            self.rebase_pending = false;
            if let Some(last) = self.last_out {
                let want_seq = last.seq.wrapping_add(1);
                let elapsed = now.saturating_duration_since(last.at);
                let want_ts = last.ts.wrapping_add(self.ticks(elapsed).max(MIN_TS_STEP));
                self.seq_offset = want_seq.wrapping_sub(in_seq);
                self.ts_offset = want_ts.wrapping_sub(in_ts);
            }
        }
        let out_seq = in_seq.wrapping_add(self.seq_offset);
        let out_ts = in_ts.wrapping_add(self.ts_offset);
        pkt[2..4].copy_from_slice(&out_seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&out_ts.to_be_bytes());
        pkt[8..12].copy_from_slice(&out_ssrc.to_be_bytes());
        // Only move "last" forward: a late, reordered packet must not drag the
        // reference point (and thus the next rebase) backwards.
        let newer = match self.last_out {
            None => true,
            Some(l) => (out_seq.wrapping_sub(l.seq) as i16) > 0,
        };
        if newer {
            self.last_out = Some(LastOut {
                seq: out_seq,
                ts: out_ts,
                at: now,
            });
        }
        Some((out_seq, out_ts))
    }

    /// Rewrites the SSRC and RTP timestamp of every sender report in an RTCP compound
    /// packet (RFC 3550 §6.4.1) in place. Other packet types are left as they are.
    /// Returns false when the compound is malformed (left partly rewritten is impossible:
    /// validation happens before any write), and for any compound of a new upstream
    /// that comes before its first RTP packet: its sender report would be shifted by
    /// the old session's offsets and tell players a wrong timeline (ffmpeg sends one
    /// before its first RTP packet).
    pub fn rewrite_rtcp(&self, pkt: &mut [u8]) -> bool {
        let Some(out_ssrc) = self.out_ssrc else {
            return false;
        };
        if self.rebase_pending {
            return false;
        }
        let mut srs = Vec::new();
        let mut off = 0usize;
        while off < pkt.len() {
            if pkt.len() - off < 4 || pkt[off] >> 6 != 2 {
                return false;
            }
            let words = u16::from_be_bytes([pkt[off + 2], pkt[off + 3]]) as usize;
            let len = (words + 1) * 4;
            if pkt.len() - off < len {
                return false;
            }
            // SR: PT 200, SSRC at +4, RTP timestamp at +16.
            if pkt[off + 1] == 200 && len >= 28 {
                srs.push(off);
            }
            off += len;
        }
        for o in srs {
            pkt[o + 4..o + 8].copy_from_slice(&out_ssrc.to_be_bytes());
            let ts = u32::from_be_bytes([pkt[o + 16], pkt[o + 17], pkt[o + 18], pkt[o + 19]]);
            pkt[o + 16..o + 20].copy_from_slice(&ts.wrapping_add(self.ts_offset).to_be_bytes());
        }
        true
    }

    fn ticks(&self, d: Duration) -> u32 {
        let t = d.as_micros().saturating_mul(self.clock_rate as u128) / 1_000_000;
        u32::try_from(t).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(b"payload");
        p
    }

    fn fields(p: &[u8]) -> (u16, u32, u32) {
        (
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        )
    }

    #[test]
    fn first_session_passes_numbers_through() {
        let t0 = Instant::now();
        let mut r = ContinuityRewriter::new(90_000);
        let mut p = rtp(100, 5000, 0xAAAA);
        assert_eq!(r.rewrite_rtp(&mut p, t0), Some((100, 5000)));
        assert_eq!(fields(&p), (100, 5000, 0xAAAA));
    }

    #[test]
    fn reconnect_continues_seq_ts_and_keeps_ssrc() {
        let t0 = Instant::now();
        let mut r = ContinuityRewriter::new(90_000);
        let mut p = rtp(65_535, 1000, 0xAAAA);
        r.rewrite_rtp(&mut p, t0);
        r.upstream_restarted();
        // New upstream: unrelated numbers, 2 s later.
        let mut q = rtp(7, 123_456, 0xBBBB);
        let out = r.rewrite_rtp(&mut q, t0 + Duration::from_secs(2));
        assert_eq!(out, Some((0, 1000 + 180_000)));
        assert_eq!(fields(&q), (0, 181_000, 0xAAAA));
        // Following packets of the new session keep the same offsets.
        let mut q2 = rtp(8, 123_456 + 3000, 0xBBBB);
        assert_eq!(
            r.rewrite_rtp(&mut q2, t0 + Duration::from_secs(2)),
            Some((1, 184_000))
        );
    }

    #[test]
    fn rebase_uses_newest_packet_not_a_late_one() {
        let t0 = Instant::now();
        let mut r = ContinuityRewriter::new(8000);
        for (seq, ts) in [(10u16, 800u32), (12, 960), (11, 880)] {
            r.rewrite_rtp(&mut rtp(seq, ts, 1), t0);
        }
        assert_eq!(r.last_out(), Some((12, 960)));
        r.upstream_restarted();
        let out = r.rewrite_rtp(&mut rtp(500, 9, 2), t0);
        assert_eq!(out, Some((13, 961)));
    }

    #[test]
    fn not_rtp_is_left_alone() {
        let mut r = ContinuityRewriter::new(90_000);
        let mut short = vec![0x80, 0, 1];
        assert_eq!(r.rewrite_rtp(&mut short, Instant::now()), None);
        let mut v1 = rtp(1, 1, 1);
        v1[0] = 0x40;
        assert_eq!(r.rewrite_rtp(&mut v1, Instant::now()), None);
    }

    #[test]
    fn sender_report_follows_the_rtp_offsets() {
        let t0 = Instant::now();
        let mut r = ContinuityRewriter::new(90_000);
        r.rewrite_rtp(&mut rtp(1, 1000, 0xAAAA), t0);
        r.upstream_restarted();
        r.rewrite_rtp(&mut rtp(50, 0, 0xBBBB), t0 + Duration::from_secs(1));
        // SR (28 bytes, no report blocks) from the new upstream, then an SDES stub.
        let mut sr = vec![0x80, 200, 0, 6];
        sr.extend_from_slice(&0xBBBBu32.to_be_bytes());
        sr.extend_from_slice(&[0; 8]); // NTP
        sr.extend_from_slice(&100u32.to_be_bytes()); // RTP ts
        sr.extend_from_slice(&[0; 8]); // counts
        sr.extend_from_slice(&[0x81, 202, 0, 1, 0, 0, 0, 0]);
        assert!(r.rewrite_rtcp(&mut sr));
        assert_eq!(&sr[4..8], &0xAAAAu32.to_be_bytes());
        assert_eq!(&sr[16..20], &(100u32 + 1000 + 90_000).to_be_bytes());
        // A new upstream's report before its first RTP packet is held back: the
        // offsets it would need are not known yet.
        r.upstream_restarted();
        let mut early = sr.clone();
        assert!(!r.rewrite_rtcp(&mut early));
        r.rewrite_rtp(&mut rtp(9, 0, 0xCCCC), t0 + Duration::from_secs(2));
        assert!(r.rewrite_rtcp(&mut early));
        // Truncated compound: refused, untouched.
        let mut bad = sr[..30].to_vec();
        let copy = bad.clone();
        assert!(!r.rewrite_rtcp(&mut bad));
        assert_eq!(bad, copy);
    }
}
