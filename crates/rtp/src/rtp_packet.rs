//! Zero-copy, validated read view of one RTP packet (RFC 3550 §5.1, §5.3.1).
//!
//! What it does: checks the version, the CSRC list, the header extension length and the
//! padding count against the datagram length once, in [`RtpPacket::parse`], and then
//! serves every field without further checks or copies.
//!
//! What it does not: interpret payload types, check that a payload type is known to the
//! session, parse RFC 8285 extension elements (the raw extension block is exposed), or
//! decrypt SRTP. RTP rides in datagrams (or length-prefixed interleaved frames), so a
//! buffer is always one whole packet: a buffer shorter than its header says is
//! reported as [`RtpError::Truncated`] with the offset where the bytes ran out.

use std::ops::Range;

use bytes::Bytes;

use crate::reader::Reader;

/// The only RTP version in use (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;
/// Length of the fixed RTP header, before CSRCs and extension.
pub const FIXED_HEADER_LEN: usize = 12;
/// Largest CSRC count the 4-bit CC field can carry.
pub const MAX_CSRCS: usize = 15;

/// Why bytes are not a valid RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// The buffer ends before the header says it should.
    #[error("RTP packet truncated: the {context} at byte {offset} needs {needed} bytes, only {available} remain")]
    Truncated {
        /// Offset where the missing part starts.
        offset: usize,
        /// Bytes the part needs.
        needed: usize,
        /// Bytes left in the buffer from `offset`.
        available: usize,
        /// Which part of the header was being read.
        context: &'static str,
    },
    /// The version bits (byte 0) are not 2.
    #[error("RTP version {version} at byte 0 is not 2: this is not an RTP packet (STUN, DTLS or garbage on the port?)")]
    BadVersion {
        /// The version found.
        version: u8,
    },
    /// The P bit is set but the padding count in the last byte is impossible.
    #[error("RTP padding count {count} in the last byte (offset {offset}) is invalid: it must be between 1 and {max}")]
    BadPadding {
        /// Offset of the padding count byte.
        offset: usize,
        /// The count found.
        count: u8,
        /// Largest count the packet could hold (bytes after the header).
        max: usize,
    },
}

/// The RTP header extension block (RFC 3550 §5.3.1): a 16-bit profile-defined value and
/// the extension data (a multiple of 4 bytes, without the 4-byte extension header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderExtension<'a> {
    /// "defined by profile" field, e.g. 0xBEDE for RFC 8285 one-byte elements.
    pub profile: u16,
    /// Extension data; its length is a multiple of 4 in a parsed packet.
    pub data: &'a [u8],
}

/// A validated RTP packet borrowed from a receive buffer.
///
/// Construction does every check; accessors are plain loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    bytes: &'a [u8],
    fixed: &'a [u8; FIXED_HEADER_LEN],
    csrcs: &'a [u8],
    extension: Option<HeaderExtension<'a>>,
    payload: &'a [u8],
    header_len: usize,
    padding_len: u8,
}

fn truncated(r: &Reader<'_>, needed: usize, context: &'static str) -> RtpError {
    RtpError::Truncated {
        offset: r.pos(),
        needed,
        available: r.remaining(),
        context,
    }
}

impl<'a> RtpPacket<'a> {
    /// Validates `bytes` as one whole RTP packet, in one pass.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RtpError> {
        let mut r = Reader::new(bytes);
        let fixed = r
            .array::<FIXED_HEADER_LEN>()
            .ok_or_else(|| truncated(&r, FIXED_HEADER_LEN, "fixed header"))?;
        let version = fixed[0] >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::BadVersion { version });
        }
        let csrc_len = usize::from(fixed[0] & 0x0f) * 4;
        let csrcs = r
            .take(csrc_len)
            .ok_or_else(|| truncated(&r, csrc_len, "CSRC list"))?;
        let extension = if fixed[0] & 0x10 != 0 {
            let ext_start = r;
            let (Some(profile), Some(words)) = (r.u16(), r.u16()) else {
                return Err(truncated(&ext_start, 4, "header extension header"));
            };
            let len = usize::from(words) * 4;
            let data = r
                .take(len)
                .ok_or_else(|| truncated(&r, len, "header extension data"))?;
            Some(HeaderExtension { profile, data })
        } else {
            None
        };
        let header_len = r.pos();
        let body = r.rest();
        let padding_len = if fixed[0] & 0x20 != 0 {
            let count = body.last().copied().unwrap_or(0);
            if count == 0 || usize::from(count) > body.len() {
                return Err(RtpError::BadPadding {
                    offset: bytes.len().saturating_sub(1),
                    count,
                    max: body.len(),
                });
            }
            count
        } else {
            0
        };
        let payload = body
            .get(..body.len() - usize::from(padding_len))
            .unwrap_or(&[]);
        Ok(Self {
            bytes,
            fixed,
            csrcs,
            extension,
            payload,
            header_len,
            padding_len,
        })
    }

    /// The whole packet as received, header and padding included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// P bit: the packet ends with padding.
    pub fn has_padding(&self) -> bool {
        self.fixed[0] & 0x20 != 0
    }

    /// Number of padding bytes at the end (0 without the P bit).
    pub fn padding_len(&self) -> u8 {
        self.padding_len
    }

    /// X bit: a header extension follows the CSRC list.
    pub fn has_extension(&self) -> bool {
        self.extension.is_some()
    }

    /// CC field: number of CSRCs.
    pub fn csrc_count(&self) -> u8 {
        self.fixed[0] & 0x0f
    }

    /// M bit; its meaning is profile-specific (end of a video frame, start of a talkspurt).
    pub fn marker(&self) -> bool {
        self.fixed[1] & 0x80 != 0
    }

    /// PT field (7 bits).
    pub fn payload_type(&self) -> u8 {
        self.fixed[1] & 0x7f
    }

    /// Sequence number.
    pub fn sequence_number(&self) -> u16 {
        u16::from_be_bytes([self.fixed[2], self.fixed[3]])
    }

    /// Media timestamp in the payload's clock rate.
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.fixed[4], self.fixed[5], self.fixed[6], self.fixed[7]])
    }

    /// Synchronization source.
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.fixed[8], self.fixed[9], self.fixed[10], self.fixed[11]])
    }

    /// Contributing sources, in wire order.
    pub fn csrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.csrcs
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The header extension, when the X bit is set.
    pub fn extension(&self) -> Option<HeaderExtension<'a>> {
        self.extension
    }

    /// Header length: fixed header, CSRCs and extension.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The payload, without header and padding.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Byte range of the payload inside [`RtpPacket::as_bytes`]; lets an engine take the
    /// payload out of a shared `Bytes` without copying (`bytes.slice(range)`).
    pub fn payload_range(&self) -> Range<usize> {
        self.header_len..self.header_len + self.payload.len()
    }
}

/// Validates a received datagram and returns its payload as a zero-copy `Bytes` slice
/// of the same allocation, for fanning one packet's payload out to many viewers.
pub fn payload_bytes(datagram: &Bytes) -> Result<Bytes, RtpError> {
    let range = RtpPacket::parse(datagram)?.payload_range();
    // The range was computed from this very buffer, so it is in bounds.
    Ok(datagram.slice(range))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::{hex, *};

    #[test]
    fn g711_from_gstreamer() {
        let b = hex(GST_PCMU_20MS);
        let p = RtpPacket::parse(&b).unwrap();
        assert!(!p.marker());
        assert_eq!(p.payload_type(), 0);
        assert_eq!(p.sequence_number(), 0x06d9);
        assert_eq!(p.timestamp(), 0x8fc8_1af1);
        assert_eq!(p.ssrc(), 0x2011_c2b1);
        assert_eq!(p.csrc_count(), 0);
        assert!(!p.has_extension() && !p.has_padding());
        assert_eq!(p.header_len(), 12);
        assert_eq!(p.payload().len(), 160);
        assert_eq!(&p.payload()[..4], &[0xa2, 0x44, 0x1b, 0x0e]);
        assert_eq!(p.payload_range(), 12..172);
    }

    #[test]
    fn aac_from_ffmpeg() {
        let b = hex(FFMPEG_AAC_16K);
        let p = RtpPacket::parse(&b).unwrap();
        assert!(p.marker());
        assert_eq!(p.payload_type(), 97);
        assert_eq!(p.sequence_number(), 0x0fca);
        assert_eq!(p.timestamp(), 0x0391_287b);
        assert_eq!(p.ssrc(), 0x4c24_b692);
        // RFC 3640: AU-headers-length 16 bits, then one AU header: size 127, index 0.
        assert_eq!(&p.payload()[..4], &[0x00, 0x10, 0x03, 0xf8]);
        assert_eq!(p.payload().len(), 131);
        assert_eq!(4 + 127, p.payload().len());
    }

    #[test]
    fn h264_fu_a_from_ffmpeg() {
        let b = hex(FFMPEG_H264_FU_A_IDR_START);
        let p = RtpPacket::parse(&b).unwrap();
        assert!(!p.marker());
        assert_eq!(p.payload_type(), 96);
        assert_eq!(p.sequence_number(), 0x0794);
        assert_eq!(p.timestamp(), 0x5ad3_374d);
        assert_eq!(p.ssrc(), 0x462d_20a3);
        assert_eq!(&p.payload()[..2], &[0x7c, 0x85]);
        assert_eq!(p.payload().len(), 148);
    }

    /// Header with CC=2, X=1 (one-byte extension profile, 1 word), P=1 (4 bytes).
    const FULL: &[u8] = &[
        0xb2, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, // fixed
        0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x0b, // CSRCs
        0xbe, 0xde, 0x00, 0x01, 0x10, 0xff, 0x00, 0x00, // extension
        0xaa, 0xbb, 0xcc, // payload
        0x00, 0x00, 0x00, 0x04, // padding
    ];

    #[test]
    fn csrcs_extension_and_padding() {
        let p = RtpPacket::parse(FULL).unwrap();
        assert_eq!(p.csrc_count(), 2);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![10, 11]);
        assert_eq!(
            p.extension(),
            Some(HeaderExtension {
                profile: 0xbede,
                data: &[0x10, 0xff, 0, 0]
            })
        );
        assert!(p.marker());
        assert_eq!(p.payload_type(), 96);
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc]);
        assert_eq!(p.padding_len(), 4);
        assert_eq!(p.payload_range(), 28..31);
    }

    #[test]
    fn every_prefix_is_truncated_or_padding_error() {
        // Prefixes shorter than the header are truncated at an exact offset; longer
        // ones end inside the padding, whose last byte is then not a valid count.
        for n in 0..FULL.len() {
            let err = RtpPacket::parse(&FULL[..n]).unwrap_err();
            let expected_offset = match n {
                0..=11 => 0,
                12..=19 => 12,
                20..=23 => 20,
                24..=27 => 24,
                _ => n - 1,
            };
            match err {
                RtpError::Truncated { offset, .. } => {
                    assert!(n < 28, "prefix {n}");
                    assert_eq!(offset, expected_offset, "prefix {n}");
                }
                RtpError::BadPadding { offset, .. } => {
                    assert!(n >= 28, "prefix {n}");
                    assert_eq!(offset, expected_offset, "prefix {n}");
                }
                RtpError::BadVersion { .. } => panic!("prefix {n}: {err}"),
            }
        }
    }

    #[test]
    fn every_prefix_of_unpadded_packet_parses_with_shorter_payload() {
        let b = hex(GST_PCMU_20MS);
        for n in 12..=b.len() {
            let p = RtpPacket::parse(&b[..n]).unwrap();
            assert_eq!(p.payload(), &b[12..n]);
        }
    }

    #[test]
    fn rejects_bad_version_and_padding() {
        let mut b = hex(GST_PCMU_20MS);
        b[0] = 0x40;
        assert_eq!(
            RtpPacket::parse(&b),
            Err(RtpError::BadVersion { version: 1 })
        );
        let mut b = hex(GST_PCMU_20MS);
        b[0] |= 0x20;
        let last = b.len() - 1;
        b[last] = 0;
        assert_eq!(
            RtpPacket::parse(&b),
            Err(RtpError::BadPadding {
                offset: 171,
                count: 0,
                max: 160
            })
        );
        // Padding count covering exactly the whole body is allowed.
        b[last] = 160;
        assert_eq!(RtpPacket::parse(&b).unwrap().payload(), &[] as &[u8]);
        b.push(200);
        assert!(matches!(
            RtpPacket::parse(&b),
            Err(RtpError::BadPadding { count: 200, .. })
        ));
    }

    #[test]
    fn extension_length_is_checked() {
        // X=1, extension header claims 2 words but only 1 follows.
        let b = [
            0x90, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0x00, 0x02, 1, 2, 3, 4,
        ];
        assert_eq!(
            RtpPacket::parse(&b),
            Err(RtpError::Truncated {
                offset: 16,
                needed: 8,
                available: 4,
                context: "header extension data"
            })
        );
    }

    #[test]
    fn error_message_points_at_the_offset() {
        let e = RtpPacket::parse(&[0x80, 0, 0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "RTP packet truncated: the fixed header at byte 0 needs 12 bytes, only 3 remain"
        );
    }

    #[test]
    fn payload_bytes_shares_the_allocation() {
        let b = Bytes::from(hex(GST_PCMU_20MS));
        let payload = payload_bytes(&b).unwrap();
        assert_eq!(payload.len(), 160);
        assert_eq!(payload.as_ptr(), b[12..].as_ptr());
        assert!(payload_bytes(&Bytes::from_static(&[0x80])).is_err());
    }
}
