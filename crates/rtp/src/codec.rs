//! Which video codec a track carries, named from its SDP `a=rtpmap` encoding
//! (RFC 4566 §6; encoding names are case-insensitive, RFC 4855 §3), and where its
//! keyframes start: H.264 (RFC 6184) and H.265 (RFC 7798) through [`crate::h264`] and
//! [`crate::h265`].
//!
//! What it does not: parse SDP (callers hand in the encoding name) or recognise
//! keyframes of any other codec; those tracks are [`Codec::Other`] and never mark a
//! join point.

use crate::{h264, h265, RtpPacket};

/// The codec families whose keyframes we recognise; anything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    H265,
    Other,
}

impl Codec {
    /// From an `a=rtpmap` encoding name, in any case (`HEVC` is an alias of H.265
    /// that some servers write).
    pub fn from_encoding(name: &str) -> Codec {
        if name.eq_ignore_ascii_case("H264") {
            Codec::H264
        } else if name.eq_ignore_ascii_case("H265") || name.eq_ignore_ascii_case("HEVC") {
            Codec::H265
        } else {
            Codec::Other
        }
    }

    /// True if the RTP `payload` starts the first slice of a keyframe; false for
    /// anything else, malformed payloads and codecs we cannot inspect included.
    pub fn is_keyframe_start(self, payload: &[u8]) -> bool {
        match self {
            Codec::H264 => h264::is_keyframe_start(payload),
            Codec::H265 => h265::is_keyframe_start(payload),
            Codec::Other => false,
        }
    }

    /// [`Self::is_keyframe_start`] for a whole RTP packet; false when `rtp` is not a
    /// valid RTP packet.
    pub fn is_keyframe_start_packet(self, rtp: &[u8]) -> bool {
        if self == Codec::Other {
            return false;
        }
        RtpPacket::parse(rtp).is_ok_and(|p| self.is_keyframe_start(p.payload()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::{
        hex, FFMPEG_H264_FU_A_IDR_START, FFMPEG_H264_FU_A_P_START, FFMPEG_H264_IDR_SINGLE,
    };

    #[test]
    fn codec_names_are_matched_without_case() {
        assert_eq!(Codec::from_encoding("h264"), Codec::H264);
        assert_eq!(Codec::from_encoding("H265"), Codec::H265);
        assert_eq!(Codec::from_encoding("hevc"), Codec::H265);
        assert_eq!(Codec::from_encoding("MPEG4-GENERIC"), Codec::Other);
        assert_eq!(Codec::from_encoding(""), Codec::Other);
    }

    #[test]
    fn keyframe_starts_in_ffmpeg_packets() {
        for (packet, key) in [
            (FFMPEG_H264_FU_A_IDR_START, true),
            (FFMPEG_H264_IDR_SINGLE, true),
            (FFMPEG_H264_FU_A_P_START, false),
        ] {
            let rtp = hex(packet);
            assert_eq!(Codec::H264.is_keyframe_start_packet(&rtp), key, "{packet}");
            assert!(!Codec::Other.is_keyframe_start_packet(&rtp));
            let payload = RtpPacket::parse(&rtp).unwrap().payload().to_vec();
            assert_eq!(Codec::H264.is_keyframe_start(&payload), key);
        }
        assert!(!Codec::H264.is_keyframe_start_packet(&[0x80, 0x60]));
    }

    #[test]
    fn h265_idr_payloads_start_keyframes() {
        // IDR_W_RADL (type 19) NAL header, then first_slice_segment_in_pic_flag = 1.
        let idr = [19 << 1, 0x01, 0x80, 0x00];
        assert!(Codec::H265.is_keyframe_start(&idr));
        // The same bytes read as H.264 are an SEI (type 6): the codec decides.
        assert!(!Codec::H264.is_keyframe_start(&idr));
        assert!(!Codec::Other.is_keyframe_start(&idr));
    }
}
