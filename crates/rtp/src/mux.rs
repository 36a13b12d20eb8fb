//! Tells RTP from RTCP on a port that carries both (rtcp-mux, RFC 5761 §4), and both
//! from other protocols sharing the port (RFC 7983 first-byte ranges).
//!
//! What it does: looks at two bytes. RTP and RTCP have version 2, so the first byte is
//! 128..=191; RTCP packet types 192..=223 occupy the second byte where RTP would have
//! marker + payload types 64..=95, which RFC 5761 forbids for RTP on a muxed port.
//! What it does not: validate the packet (parse it afterwards) or tell STUN from DTLS.

/// What a datagram on an rtcp-mux port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxedKind {
    /// RTP (version 2, second byte outside 192..=223, at least a fixed header long).
    Rtp,
    /// RTCP (version 2, packet type 192..=223, at least a header long).
    Rtcp,
    /// Not RTP/RTCP (STUN, DTLS, ZRTP, garbage) or too short to be either.
    Other,
}

/// Classifies a datagram received on an rtcp-mux port.
pub fn classify_muxed(datagram: &[u8]) -> MuxedKind {
    let Some(&[b0, b1]) = datagram.first_chunk::<2>() else {
        return MuxedKind::Other;
    };
    if b0 >> 6 != 2 {
        MuxedKind::Other
    } else if (192..=223).contains(&b1) {
        if datagram.len() >= crate::rtcp::RTCP_HEADER_LEN {
            MuxedKind::Rtcp
        } else {
            MuxedKind::Other
        }
    } else if datagram.len() >= crate::rtp_packet::FIXED_HEADER_LEN {
        MuxedKind::Rtp
    } else {
        MuxedKind::Other
    }
}

/// True if the datagram is RTCP by the RFC 5761 §4 rule.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    classify_muxed(datagram) == MuxedKind::Rtcp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::*;
    use proptest::prelude::*;

    #[test]
    fn real_packets_are_classified() {
        assert_eq!(classify_muxed(&hex(GST_PCMU_20MS)), MuxedKind::Rtp);
        assert_eq!(
            classify_muxed(&hex(FFMPEG_H264_FU_A_IDR_END)),
            MuxedKind::Rtp
        );
        assert_eq!(classify_muxed(&hex(GST_RTCP_SR_SDES)), MuxedKind::Rtcp);
        assert_eq!(classify_muxed(&hex(GST_RTCP_RR_SDES)), MuxedKind::Rtcp);
        assert!(is_rtcp(&hex(FFMPEG_RTCP_SR)));
    }

    #[test]
    fn boundaries_of_the_rtcp_range() {
        let mut p = [0x80u8; 12];
        for (b1, kind) in [
            (191, MuxedKind::Rtp),
            (192, MuxedKind::Rtcp),
            (223, MuxedKind::Rtcp),
            (224, MuxedKind::Rtp),
            (0, MuxedKind::Rtp),
        ] {
            p[1] = b1;
            assert_eq!(classify_muxed(&p), kind, "second byte {b1}");
        }
    }

    #[test]
    fn other_protocols_and_short_buffers() {
        // STUN binding request starts with 0x00 0x01.
        assert_eq!(classify_muxed(&[0, 1, 0, 0]), MuxedKind::Other);
        // DTLS handshake record: content type 22.
        assert_eq!(classify_muxed(&[22, 0xfe, 0xfd, 0]), MuxedKind::Other);
        assert_eq!(classify_muxed(&[]), MuxedKind::Other);
        assert_eq!(classify_muxed(&[0x80]), MuxedKind::Other);
        assert_eq!(classify_muxed(&[0x80, 200, 0]), MuxedKind::Other);
        assert_eq!(classify_muxed(&[0x80, 0, 0, 0]), MuxedKind::Other);
    }

    proptest! {
        #[test]
        fn agrees_with_the_second_byte(data in prop::collection::vec(any::<u8>(), 0..20)) {
            let kind = classify_muxed(&data);
            if kind == MuxedKind::Rtcp {
                prop_assert!((192..=223).contains(&data[1]));
            }
            if kind == MuxedKind::Rtp {
                prop_assert!(!(192..=223).contains(&data[1]) && data.len() >= 12);
            }
        }
    }
}
