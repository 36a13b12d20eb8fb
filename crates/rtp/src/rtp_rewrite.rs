//! In-place rewriting of RTP header fields (RFC 3550 §5.1) in a received buffer.
//!
//! What it does: validates the packet once (same checks as [`crate::RtpPacket::parse`])
//! and then lets a relay or edge overwrite sequence number, timestamp, SSRC, payload
//! type and marker without copying the payload, e.g. to keep a viewer's stream
//! continuous across upstream reconnects (see [`crate::continuity`]).
//!
//! What it does not: change the header length (adding or removing CSRCs or extensions
//! needs a new buffer: use [`crate::RtpHeader`]) or touch SRTP authentication tags.

use crate::rtp_packet::{RtpError, RtpPacket, FIXED_HEADER_LEN};

/// A validated RTP packet whose fixed-header fields can be rewritten in place.
#[derive(Debug)]
pub struct RtpPacketMut<'a> {
    fixed: &'a mut [u8; FIXED_HEADER_LEN],
    /// Everything after the fixed header.
    rest: &'a mut [u8],
    /// Payload start, relative to `rest`.
    payload_start: usize,
    payload_len: usize,
}

impl<'a> RtpPacketMut<'a> {
    /// Validates `buf` as one RTP packet.
    pub fn new(buf: &'a mut [u8]) -> Result<Self, RtpError> {
        let (header_len, payload_len) = {
            let p = RtpPacket::parse(buf)?;
            (p.header_len(), p.payload().len())
        };
        let available = buf.len();
        let (fixed, rest) =
            buf.split_first_chunk_mut::<FIXED_HEADER_LEN>()
                .ok_or(RtpError::Truncated {
                    offset: 0,
                    needed: FIXED_HEADER_LEN,
                    available,
                    context: "fixed header",
                })?;
        Ok(Self {
            fixed,
            rest,
            payload_start: header_len - FIXED_HEADER_LEN,
            payload_len,
        })
    }

    /// M bit.
    pub fn marker(&self) -> bool {
        self.fixed[1] & 0x80 != 0
    }

    /// PT field.
    pub fn payload_type(&self) -> u8 {
        self.fixed[1] & 0x7f
    }

    /// Sequence number.
    pub fn sequence_number(&self) -> u16 {
        u16::from_be_bytes([self.fixed[2], self.fixed[3]])
    }

    /// Media timestamp.
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.fixed[4], self.fixed[5], self.fixed[6], self.fixed[7]])
    }

    /// Synchronization source.
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.fixed[8], self.fixed[9], self.fixed[10], self.fixed[11]])
    }

    /// Sets or clears the M bit.
    pub fn set_marker(&mut self, marker: bool) {
        self.fixed[1] = (self.fixed[1] & 0x7f) | (u8::from(marker) << 7);
    }

    /// Sets the payload type; only the low 7 bits of `pt` are used.
    pub fn set_payload_type(&mut self, pt: u8) {
        self.fixed[1] = (self.fixed[1] & 0x80) | (pt & 0x7f);
    }

    /// Sets the sequence number.
    pub fn set_sequence_number(&mut self, seq: u16) {
        let [a, b] = seq.to_be_bytes();
        self.fixed[2] = a;
        self.fixed[3] = b;
    }

    /// Sets the timestamp.
    pub fn set_timestamp(&mut self, ts: u32) {
        let [a, b, c, d] = ts.to_be_bytes();
        self.fixed[4] = a;
        self.fixed[5] = b;
        self.fixed[6] = c;
        self.fixed[7] = d;
    }

    /// Sets the SSRC.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        let [a, b, c, d] = ssrc.to_be_bytes();
        self.fixed[8] = a;
        self.fixed[9] = b;
        self.fixed[10] = c;
        self.fixed[11] = d;
    }

    /// The payload, without header and padding.
    pub fn payload(&self) -> &[u8] {
        self.rest
            .get(self.payload_start..self.payload_start + self.payload_len)
            .unwrap_or(&[])
    }

    /// The payload, writable (e.g. to patch a codec header).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.rest
            .get_mut(self.payload_start..self.payload_start + self.payload_len)
            .unwrap_or(&mut [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp_packet::RtpPacket;
    use crate::test_vectors::{hex, FFMPEG_H264_FU_A_IDR_START};
    use proptest::prelude::*;

    #[test]
    fn rewrites_every_field_and_leaves_the_rest() {
        let original = hex(FFMPEG_H264_FU_A_IDR_START);
        let mut buf = original.clone();
        let mut m = RtpPacketMut::new(&mut buf).unwrap();
        assert_eq!(m.sequence_number(), 0x0794);
        m.set_sequence_number(0xfffe);
        m.set_timestamp(0x0102_0304);
        m.set_ssrc(0xcafe_f00d);
        m.set_payload_type(0xff);
        m.set_marker(true);
        assert_eq!(m.payload().len(), 148);
        m.payload_mut()[0] = 0x7c;
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.sequence_number(), 0xfffe);
        assert_eq!(p.timestamp(), 0x0102_0304);
        assert_eq!(p.ssrc(), 0xcafe_f00d);
        assert_eq!(p.payload_type(), 127);
        assert!(p.marker());
        assert_eq!(buf[0], original[0]);
        assert_eq!(&buf[12..], &original[12..]);
        assert_eq!(
            &buf[..12],
            &[0x80, 0xff, 0xff, 0xfe, 1, 2, 3, 4, 0xca, 0xfe, 0xf0, 0x0d]
        );
    }

    #[test]
    fn marker_and_payload_type_are_independent() {
        let mut buf = hex(FFMPEG_H264_FU_A_IDR_START);
        let mut m = RtpPacketMut::new(&mut buf).unwrap();
        m.set_marker(true);
        m.set_payload_type(8);
        assert!(m.marker());
        assert_eq!(m.payload_type(), 8);
        m.set_marker(false);
        assert_eq!(m.payload_type(), 8);
        assert_eq!(buf[1], 8);
    }

    #[test]
    fn rejects_invalid_packets() {
        let mut short = [0x80u8, 0, 0];
        assert!(matches!(
            RtpPacketMut::new(&mut short),
            Err(RtpError::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics_and_agrees_with_the_read_view(mut data in prop::collection::vec(any::<u8>(), 0..80), seq: u16, ts: u32) {
            let view_ok = RtpPacket::parse(&data).map(|p| p.payload().to_vec());
            match RtpPacketMut::new(&mut data) {
                Ok(mut m) => {
                    let payload = m.payload().to_vec();
                    m.set_sequence_number(seq);
                    m.set_timestamp(ts);
                    prop_assert_eq!(Ok(payload), view_ok);
                    let p = RtpPacket::parse(&data).unwrap();
                    prop_assert_eq!(p.sequence_number(), seq);
                    prop_assert_eq!(p.timestamp(), ts);
                }
                Err(e) => prop_assert_eq!(Err(e), view_ok),
            }
        }
    }
}
