//! Writes an RTP header and payload into a caller-provided buffer (RFC 3550 §5.1).
//!
//! What it does: encodes the fixed header, CSRC list, one header-extension block and
//! optional padding; checks that every value fits its field. What it does not:
//! allocate, choose sequence numbers or SSRCs (random initial values are the caller's
//! job, RFC 3550 §5.1), or build RFC 8285 extension elements.

use crate::build_error::BuildError;
use crate::rtp_packet::{HeaderExtension, FIXED_HEADER_LEN, MAX_CSRCS, RTP_VERSION};
use crate::writer::SliceWriter;

/// Values of an RTP header to write. `Default` is an empty PT 0 header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpHeader<'a> {
    /// M bit.
    pub marker: bool,
    /// 0..=127.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// At most 15 contributing sources.
    pub csrcs: &'a [u32],
    /// Header extension; its data must be a multiple of 4 bytes.
    pub extension: Option<HeaderExtension<'a>>,
    /// Bytes of padding to append (0 = no P bit); the last one carries the count.
    pub padding: u8,
}

impl RtpHeader<'_> {
    /// Length of the header this would write (fixed part, CSRCs, extension).
    pub fn header_len(&self) -> usize {
        let ext = self.extension.map_or(0, |e| 4 + e.data.len());
        FIXED_HEADER_LEN + 4 * self.csrcs.len() + ext
    }

    /// Total length of a packet with this header and a `payload_len`-byte payload.
    pub fn packet_len(&self, payload_len: usize) -> usize {
        self.header_len() + payload_len + usize::from(self.padding)
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.payload_type > 0x7f {
            return Err(BuildError::OutOfRange {
                field: "payload type",
                value: self.payload_type.into(),
                max: 0x7f,
            });
        }
        if self.csrcs.len() > MAX_CSRCS {
            return Err(BuildError::OutOfRange {
                field: "CSRC count",
                value: self.csrcs.len(),
                max: MAX_CSRCS,
            });
        }
        if let Some(ext) = self.extension {
            if ext.data.len() % 4 != 0 {
                return Err(BuildError::NotWordAligned {
                    field: "header extension data",
                    len: ext.data.len(),
                });
            }
            let max = usize::from(u16::MAX) * 4;
            if ext.data.len() > max {
                return Err(BuildError::OutOfRange {
                    field: "header extension length in bytes",
                    value: ext.data.len(),
                    max,
                });
            }
        }
        Ok(())
    }

    /// Writes header, `payload` and padding at the start of `out`; returns the length.
    pub fn write(&self, payload: &[u8], out: &mut [u8]) -> Result<usize, BuildError> {
        self.check()?;
        let needed = self.packet_len(payload.len());
        let available = out.len();
        let out = out
            .get_mut(..needed)
            .ok_or(BuildError::BufferTooSmall { needed, available })?;
        let mut w = SliceWriter::new(out);
        let padding_bit = if self.padding > 0 { 0x20 } else { 0 };
        let ext_bit = if self.extension.is_some() { 0x10 } else { 0 };
        // The casts are exact: check() bounded CSRCs to 15 and PT to 127.
        w.put(&[
            RTP_VERSION << 6 | padding_bit | ext_bit | self.csrcs.len() as u8,
            u8::from(self.marker) << 7 | self.payload_type,
        ]);
        w.put(&self.sequence_number.to_be_bytes());
        w.put(&self.timestamp.to_be_bytes());
        w.put(&self.ssrc.to_be_bytes());
        for csrc in self.csrcs {
            w.put(&csrc.to_be_bytes());
        }
        if let Some(ext) = self.extension {
            w.put(&ext.profile.to_be_bytes());
            w.put(&((ext.data.len() / 4) as u16).to_be_bytes());
            w.put(ext.data);
        }
        w.put(payload);
        if self.padding > 0 {
            w.zeros(usize::from(self.padding) - 1);
            w.put(&[self.padding]);
        }
        Ok(w.pos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp_packet::RtpPacket;
    use crate::test_vectors::{hex, GST_PCMU_20MS};
    use proptest::prelude::*;

    #[test]
    fn rebuilds_a_real_gstreamer_packet_bit_for_bit() {
        let original = hex(GST_PCMU_20MS);
        let p = RtpPacket::parse(&original).unwrap();
        let h = RtpHeader {
            marker: p.marker(),
            payload_type: p.payload_type(),
            sequence_number: p.sequence_number(),
            timestamp: p.timestamp(),
            ssrc: p.ssrc(),
            ..RtpHeader::default()
        };
        let mut out = [0u8; 200];
        let n = h.write(p.payload(), &mut out).unwrap();
        assert_eq!(&out[..n], &original[..]);
    }

    #[test]
    fn writes_csrcs_extension_and_padding() {
        let h = RtpHeader {
            marker: true,
            payload_type: 96,
            sequence_number: 0x1234,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
            csrcs: &[10, 11],
            extension: Some(HeaderExtension {
                profile: 0xbede,
                data: &[0x10, 0xff, 0, 0],
            }),
            padding: 4,
        };
        let mut out = [0u8; 64];
        let n = h.write(&[0xaa, 0xbb, 0xcc], &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &[
                0xb2, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 0, 0, 0, 10, 0, 0, 0,
                11, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0, 0xaa, 0xbb, 0xcc, 0, 0, 0, 4
            ]
        );
    }

    #[test]
    fn rejects_values_that_do_not_fit() {
        let mut out = [0u8; 64];
        let h = RtpHeader {
            payload_type: 128,
            ..RtpHeader::default()
        };
        assert_eq!(
            h.write(&[], &mut out),
            Err(BuildError::OutOfRange {
                field: "payload type",
                value: 128,
                max: 127
            })
        );
        let csrcs = [0u32; 16];
        let h = RtpHeader {
            csrcs: &csrcs,
            ..RtpHeader::default()
        };
        assert!(matches!(
            h.write(&[], &mut out),
            Err(BuildError::OutOfRange { value: 16, .. })
        ));
        let h = RtpHeader {
            extension: Some(HeaderExtension {
                profile: 1,
                data: &[1, 2, 3],
            }),
            ..RtpHeader::default()
        };
        assert_eq!(
            h.write(&[], &mut out),
            Err(BuildError::NotWordAligned {
                field: "header extension data",
                len: 3
            })
        );
        let h = RtpHeader::default();
        assert_eq!(
            h.write(&[0; 60], &mut out),
            Err(BuildError::BufferTooSmall {
                needed: 72,
                available: 64
            })
        );
    }

    /// marker, PT, seq, timestamp, SSRC, CSRCs, extension, padding.
    type HeaderParts = (
        bool,
        u8,
        u16,
        u32,
        u32,
        Vec<u32>,
        Option<(u16, Vec<u8>)>,
        u8,
    );

    fn header_strategy() -> impl Strategy<Value = HeaderParts> {
        (
            any::<bool>(),
            0u8..=127,
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(any::<u32>(), 0..=15),
            prop::option::of((
                any::<u16>(),
                prop::collection::vec(any::<u8>(), 0..8usize).prop_map(|mut v| {
                    v.truncate(v.len() / 4 * 4);
                    v
                }),
            )),
            any::<u8>(),
        )
    }

    proptest! {
        #[test]
        fn build_then_parse_round_trips(
            (marker, pt, seq, ts, ssrc, csrcs, ext, padding) in header_strategy(),
            payload in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let h = RtpHeader {
                marker,
                payload_type: pt,
                sequence_number: seq,
                timestamp: ts,
                ssrc,
                csrcs: &csrcs,
                extension: ext.as_ref().map(|(profile, data)| HeaderExtension { profile: *profile, data }),
                padding,
            };
            let mut out = vec![0u8; h.packet_len(payload.len())];
            let n = h.write(&payload, &mut out).unwrap();
            prop_assert_eq!(n, out.len());
            let p = RtpPacket::parse(&out).unwrap();
            prop_assert_eq!(p.marker(), marker);
            prop_assert_eq!(p.payload_type(), pt);
            prop_assert_eq!(p.sequence_number(), seq);
            prop_assert_eq!(p.timestamp(), ts);
            prop_assert_eq!(p.ssrc(), ssrc);
            prop_assert_eq!(p.csrcs().collect::<Vec<_>>(), csrcs.clone());
            prop_assert_eq!(p.extension(), h.extension);
            prop_assert_eq!(p.padding_len(), padding);
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(p.header_len(), h.header_len());
        }
    }
}
