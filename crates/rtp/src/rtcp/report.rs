//! Sender and receiver reports and their report blocks (RFC 3550 §6.4.1, §6.4.2).
//!
//! What it does: zero-copy views of SR and RR packets whose report count was checked
//! against the packet length, and the [`ReportBlock`] value type (cumulative loss as a
//! sign-extended 24-bit number). What it does not: compute the figures (see
//! [`crate::SeqTracker::take_loss_report`] and [`crate::JitterEstimator`]) or read a
//! clock for LSR/DLSR.

use std::slice::ChunksExact;

use super::{RawRtcp, RtcpError, RTCP_HEADER_LEN};
use crate::reader::Reader;

/// Bytes per report block.
pub(super) const REPORT_BLOCK_LEN: usize = 24;
/// Bytes of the SR sender-info section (NTP, RTP timestamp, counts), after the SSRC.
pub(super) const SENDER_INFO_LEN: usize = 20;

/// One reception report block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// Source this block reports on.
    pub ssrc: u32,
    /// Loss since the previous report, as a fraction of 256.
    pub fraction_lost: u8,
    /// Cumulative packets lost; 24-bit signed on the wire (duplicates can make it
    /// negative). Builders saturate it to -0x800000..=0x7fffff.
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// LSR: middle 32 bits of the last SR's NTP timestamp (0 if none).
    pub last_sr: u32,
    /// DLSR: delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    pub(crate) fn decode(b: &[u8; REPORT_BLOCK_LEN]) -> Self {
        let word = |i: usize| {
            let w = b.get(i..i + 4).and_then(|s| s.first_chunk::<4>());
            w.map_or(0, |w| u32::from_be_bytes(*w))
        };
        // Shift the 24-bit field to the top and back to sign-extend it.
        let cumulative_lost = ((word(4) << 8) as i32) >> 8;
        Self {
            ssrc: word(0),
            fraction_lost: b[4],
            cumulative_lost,
            extended_highest_seq: word(8),
            jitter: word(12),
            last_sr: word(16),
            delay_since_last_sr: word(20),
        }
    }

    pub(crate) fn encode(&self) -> [u8; REPORT_BLOCK_LEN] {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
        let mut out = [0u8; REPORT_BLOCK_LEN];
        let words = [
            self.ssrc,
            u32::from(self.fraction_lost) << 24 | lost,
            self.extended_highest_seq,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        ];
        for (dst, w) in out.chunks_exact_mut(4).zip(words) {
            dst.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

/// The middle 32 bits of a 64-bit NTP timestamp: the LSR value a receiver echoes.
#[cfg(test)]
fn ntp_middle_32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Iterator over report blocks.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a>(ChunksExact<'a, u8>);

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        self.0
            .next()
            .and_then(|c| c.first_chunk::<REPORT_BLOCK_LEN>())
            .map(ReportBlock::decode)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}

/// The sender-info section of an SR, plus the sender's SSRC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderInfo {
    /// SSRC of the sender.
    pub ssrc: u32,
    /// Wall-clock time of the report, 64-bit NTP format.
    pub ntp_timestamp: u64,
    /// The same instant in the stream's RTP timestamp units.
    pub rtp_timestamp: u32,
    /// Packets sent so far.
    pub packet_count: u32,
    /// Payload octets sent so far.
    pub octet_count: u32,
}

/// Splits `rc` report blocks and the profile extension off the rest of a body.
fn blocks<'a>(r: &mut Reader<'a>, raw: &RawRtcp<'a>) -> Result<(&'a [u8], &'a [u8]), RtcpError> {
    let len = usize::from(raw.count) * REPORT_BLOCK_LEN;
    let blocks = r.take(len).ok_or(RtcpError::Malformed {
        offset: raw.offset + RTCP_HEADER_LEN + r.pos(),
        context: "the report count needs more report blocks than the packet length holds",
    })?;
    Ok((blocks, r.rest()))
}

/// A validated SR packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport<'a> {
    raw: RawRtcp<'a>,
    info: SenderInfo,
    blocks: &'a [u8],
    extension: &'a [u8],
}

impl<'a> SenderReport<'a> {
    /// Interprets `raw` (packet type 200).
    pub fn new(raw: RawRtcp<'a>) -> Result<Self, RtcpError> {
        let mut r = Reader::new(raw.body);
        let short = RtcpError::Malformed {
            offset: raw.offset,
            context: "SR shorter than its 28-byte fixed part",
        };
        let info = SenderInfo {
            ssrc: r.u32().ok_or(short)?,
            ntp_timestamp: r.u64().ok_or(short)?,
            rtp_timestamp: r.u32().ok_or(short)?,
            packet_count: r.u32().ok_or(short)?,
            octet_count: r.u32().ok_or(short)?,
        };
        let (blocks, extension) = blocks(&mut r, &raw)?;
        Ok(Self {
            raw,
            info,
            blocks,
            extension,
        })
    }

    /// The packet before interpretation.
    pub fn raw(&self) -> RawRtcp<'a> {
        self.raw
    }

    /// Sender SSRC and sender info.
    pub fn sender_info(&self) -> SenderInfo {
        self.info
    }

    /// Sender SSRC.
    pub fn ssrc(&self) -> u32 {
        self.info.ssrc
    }

    /// Report blocks (RC of them).
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks(self.blocks.chunks_exact(REPORT_BLOCK_LEN))
    }

    /// Profile-specific extension after the report blocks (usually empty).
    pub fn profile_extension(&self) -> &'a [u8] {
        self.extension
    }
}

/// A validated RR packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    raw: RawRtcp<'a>,
    ssrc: u32,
    blocks: &'a [u8],
    extension: &'a [u8],
}

impl<'a> ReceiverReport<'a> {
    /// Interprets `raw` (packet type 201).
    pub fn new(raw: RawRtcp<'a>) -> Result<Self, RtcpError> {
        let mut r = Reader::new(raw.body);
        let ssrc = r.u32().ok_or(RtcpError::Malformed {
            offset: raw.offset,
            context: "RR without a sender SSRC",
        })?;
        let (blocks, extension) = blocks(&mut r, &raw)?;
        Ok(Self {
            raw,
            ssrc,
            blocks,
            extension,
        })
    }

    /// The packet before interpretation.
    pub fn raw(&self) -> RawRtcp<'a> {
        self.raw
    }

    /// SSRC of the reporting receiver.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Report blocks (RC of them).
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks(self.blocks.chunks_exact(REPORT_BLOCK_LEN))
    }

    /// Profile-specific extension after the report blocks (usually empty).
    pub fn profile_extension(&self) -> &'a [u8] {
        self.extension
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_lost_is_sign_extended_and_saturated() {
        let mut b = ReportBlock {
            cumulative_lost: -1,
            ..ReportBlock::default()
        };
        let bytes = b.encode();
        assert_eq!(&bytes[4..8], &[0, 0xff, 0xff, 0xff]);
        assert_eq!(ReportBlock::decode(&bytes).cumulative_lost, -1);
        b.cumulative_lost = 10_000_000;
        assert_eq!(ReportBlock::decode(&b.encode()).cumulative_lost, 0x7f_ffff);
        b.cumulative_lost = i32::MIN;
        assert_eq!(ReportBlock::decode(&b.encode()).cumulative_lost, -0x80_0000);
        b.cumulative_lost = -0x80_0000;
        assert_eq!(&b.encode()[4..8], &[0, 0x80, 0, 0]);
    }

    #[test]
    fn fraction_lost_does_not_leak_into_cumulative() {
        let b = ReportBlock {
            fraction_lost: 0xff,
            cumulative_lost: -2,
            ..ReportBlock::default()
        };
        let d = ReportBlock::decode(&b.encode());
        assert_eq!((d.fraction_lost, d.cumulative_lost), (0xff, -2));
    }

    #[test]
    fn lsr_is_the_middle_of_the_ntp_timestamp() {
        assert_eq!(ntp_middle_32(0xeeac_556d_19bb_384f), 0x556d_19bb);
    }
}
