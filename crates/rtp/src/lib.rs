//! RTP/RTCP protocol core for mediagate: sans-IO, no sockets, no clock, no allocation
//! on the per-packet path.
//!
//! What it does:
//! * RTP (RFC 3550 §5): a validated zero-copy view [`RtpPacket`], a builder
//!   [`RtpHeader`] that writes into a caller buffer, in-place rewriting
//!   [`RtpPacketMut`], and [`ContinuityRewriter`] to keep a viewer's stream continuous
//!   across upstream changes.
//! * Sequence and timing (RFC 3550 A.1, A.3, A.8): [`SeqUnwrapper`],
//!   [`TimestampUnwrapper`], per-stream accounting [`SeqTracker`] and
//!   [`JitterEstimator`].
//! * RTCP (RFC 3550 §6, A.2): compound parsing and validation ([`rtcp::Compound`]),
//!   views of SR/RR/SDES/BYE/APP, builders ([`rtcp::build`]), and RTP/RTCP
//!   demultiplexing on an rtcp-mux port ([`classify_muxed`], RFC 5761 §4).
//! * Keyframe detection for edge fast-start: [`h264`] (RFC 6184) and [`h265`]
//!   (RFC 7798), reporting a [`FrameInfo`], and [`Codec`], which names a track's codec
//!   from its SDP encoding and asks the right detector.
//!
//! What it does not: I/O, timers, SRTP, jitter buffers, depacketization, or session
//! state; engines own those and call into this crate with bytes and times.
//!
//! Every parser is bounded and total: any input yields a value or an error carrying
//! the byte offset, never a panic. RTP and RTCP arrive as whole datagrams (or
//! length-prefixed interleaved frames), so a short buffer is reported as `Truncated`
//! with the offset where bytes ran out rather than as "need more".

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod build_error;
mod codec;
mod continuity;
mod frame_info;
pub mod h264;
pub mod h265;
mod jitter;
mod mux;
mod reader;
pub mod rtcp;
mod rtp_builder;
mod rtp_packet;
mod rtp_rewrite;
mod seq_tracker;
mod unwrap;
mod writer;

#[cfg(test)]
mod test_vectors;

pub use build_error::BuildError;
pub use codec::Codec;
pub use continuity::ContinuityRewriter;
pub use frame_info::{FrameInfo, NalError, Packetization};
pub use jitter::JitterEstimator;
pub use mux::{classify_muxed, is_rtcp, MuxedKind};
pub use rtp_builder::RtpHeader;
pub use rtp_packet::{
    payload_bytes, HeaderExtension, RtpError, RtpPacket, FIXED_HEADER_LEN, MAX_CSRCS, RTP_VERSION,
};
pub use rtp_rewrite::RtpPacketMut;
pub use seq_tracker::{LossReport, SeqCounts, SeqOutcome, SeqTracker, MAX_DROPOUT, MAX_MISORDER};
pub use unwrap::{SeqUnwrapper, TimestampUnwrapper};

/// Runs every parser and detector of this crate over `data`, for fuzz targets and
/// the "never panics" property tests. Returns how many of them accepted the input,
/// so the work cannot be optimised away.
#[doc(hidden)]
pub fn exercise_all_parsers(data: &[u8]) -> usize {
    let mut accepted = 0;
    if let Ok(p) = RtpPacket::parse(data) {
        accepted += 1;
        accepted += usize::from(h264::classify(p.payload()).is_ok());
        accepted += usize::from(h265::classify(p.payload()).is_ok());
        accepted += p.csrcs().count() + usize::from(p.extension().is_some());
    }
    let mut copy = data.to_vec();
    if let Ok(mut m) = RtpPacketMut::new(&mut copy) {
        m.set_sequence_number(m.sequence_number().wrapping_add(1));
        m.set_marker(!m.marker());
        accepted += 1;
    }
    if let Ok(c) = rtcp::Compound::parse_reduced_size(data) {
        accepted += 1;
        for p in c.packets() {
            if let rtcp::RtcpPacket::SourceDescription(s) = p {
                accepted += s.chunks().map(|c| c.items().count()).sum::<usize>();
            }
        }
    }
    accepted += rtcp::RtcpPackets::new(data).filter(Result::is_ok).count();
    accepted += usize::from(h264::classify(data).is_ok());
    accepted += usize::from(h265::classify_with_don(data, true).is_ok());
    accepted += usize::from(classify_muxed(data) != MuxedKind::Other);
    let mut tracker = SeqTracker::new();
    let mut unwrapper = SeqUnwrapper::new();
    for pair in data.chunks_exact(2) {
        let seq = u16::from_be_bytes([pair[0], pair[1]]);
        tracker.record(seq);
        unwrapper.extend(seq);
    }
    accepted + usize::from(tracker.take_loss_report().fraction_lost > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exercise_accepts_a_real_packet() {
        let b = test_vectors::hex(test_vectors::FFMPEG_H264_FU_A_IDR_START);
        assert!(exercise_all_parsers(&b) >= 4);
        assert_eq!(exercise_all_parsers(&[]), 0);
    }

    proptest! {
        #[test]
        fn no_parser_panics_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
            exercise_all_parsers(&data);
        }

        #[test]
        fn no_parser_panics_on_rtp_shaped_bytes(first in 0x80u8..=0xbf, rest in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut data = vec![first];
            data.extend_from_slice(&rest);
            exercise_all_parsers(&data);
        }
    }
}
