//! RTCP packets and compound packets (RFC 3550 §6, validity checks of Appendix A.2).
//!
//! What it does: splits a compound packet into its parts and gives a zero-copy view
//! of each: SR and RR with report blocks ([`SenderReport`], [`ReceiverReport`]), SDES
//! chunks and items ([`SourceDescription`]), BYE ([`Goodbye`]), APP ([`App`]); any other packet type (RTPFB/PSFB
//! feedback, XR, ...) is kept as [`RawRtcp`]. [`Compound::parse`] applies the A.2 rules:
//! version 2 everywhere, a first packet that is an SR or RR without padding, padding
//! only on the last packet, and length fields that add up to the datagram exactly. Each
//! part's inner structure (report count, SDES chunks, BYE reason) is checked against
//! its length field too. Builders are in [`build`].
//!
//! What it does not: SRTCP, RFC 4585 feedback message parsing, XR blocks, or the
//! RTCP timing rules (transmission interval), which need a clock and live in engines.
//! Like RTP, RTCP travels in whole datagrams, so a short buffer is
//! [`RtcpError::Truncated`] at the offset where bytes ran out.

mod app;
pub mod build;
mod bye;
mod report;
mod sdes;

use crate::reader::Reader;

pub use app::App;
pub use bye::Goodbye;
pub use report::{ReceiverReport, ReportBlock, SenderInfo, SenderReport};
pub use sdes::{SdesChunk, SdesItem, SdesType, SourceDescription};

/// Length of the common RTCP header.
pub const RTCP_HEADER_LEN: usize = 4;
/// Sender report (RFC 3550 §6.4.1).
pub const PT_SR: u8 = 200;
/// Receiver report (RFC 3550 §6.4.2).
pub const PT_RR: u8 = 201;
/// Source description (RFC 3550 §6.5).
pub const PT_SDES: u8 = 202;
/// Goodbye (RFC 3550 §6.6).
pub const PT_BYE: u8 = 203;
/// Application-defined (RFC 3550 §6.7).
pub const PT_APP: u8 = 204;
/// Transport-layer feedback (RFC 4585), kept raw.
pub const PT_RTPFB: u8 = 205;
/// Payload-specific feedback, e.g. PLI/FIR (RFC 4585, RFC 5104), kept raw.
pub const PT_PSFB: u8 = 206;
/// The 5-bit count field's maximum (report blocks, SDES chunks, BYE sources).
pub const MAX_COUNT: usize = 31;

/// Why bytes are not valid RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// The buffer ends before a header or length field says it should.
    #[error("RTCP truncated: the {context} at byte {offset} needs {needed} bytes, only {available} remain")]
    Truncated {
        /// Offset where the missing part starts.
        offset: usize,
        /// Bytes the part needs.
        needed: usize,
        /// Bytes left from `offset`.
        available: usize,
        /// What was being read.
        context: &'static str,
    },
    /// Version bits are not 2.
    #[error("RTCP packet at byte {offset} has version {version}, not 2")]
    BadVersion {
        /// Offset of the packet.
        offset: usize,
        /// The version found.
        version: u8,
    },
    /// The padding count (last byte of the packet) is 0 or longer than the body.
    #[error(
        "RTCP padding count {count} at byte {offset} is invalid: it must be between 1 and {max}"
    )]
    BadPadding {
        /// Offset of the padding count byte.
        offset: usize,
        /// The count found.
        count: u8,
        /// Bytes after the 4-byte header.
        max: usize,
    },
    /// A.2: only the last packet of a compound may carry padding.
    #[error("RTCP packet at byte {offset} has the padding bit set but is not the last in the compound packet")]
    PaddingNotLast {
        /// Offset of the packet.
        offset: usize,
    },
    /// A.2: a compound packet starts with an SR or RR, without padding.
    #[error("compound RTCP must start with an SR (200) or RR (201) without padding, found packet type {packet_type}{}", if *padded { " with padding" } else { "" })]
    FirstNotReport {
        /// Type of the first packet.
        packet_type: u8,
        /// Whether its padding bit was set.
        padded: bool,
    },
    /// A packet's content does not match its own count or length fields.
    #[error("malformed RTCP at byte {offset}: {context}")]
    Malformed {
        /// Offset of the offending field.
        offset: usize,
        /// What is wrong.
        context: &'static str,
    },
    /// No bytes at all.
    #[error("empty RTCP datagram")]
    Empty,
}

/// One RTCP packet, split off a compound but not interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRtcp<'a> {
    /// Offset of this packet in the compound datagram (for error messages).
    pub offset: usize,
    /// 5-bit count/format field (RC, SC or FMT depending on the type).
    pub count: u8,
    /// Packet type.
    pub packet_type: u8,
    /// Whether the padding bit was set.
    pub padded: bool,
    /// Bytes after the 4-byte header, without padding.
    pub body: &'a [u8],
    /// The whole packet including header and padding.
    pub bytes: &'a [u8],
}

impl<'a> RawRtcp<'a> {
    /// Splits the first packet off `buf` (which starts at `offset` in the datagram).
    /// Checks version, length and padding count; not the type-specific content.
    pub fn split(buf: &'a [u8], offset: usize) -> Result<(Self, &'a [u8]), RtcpError> {
        let mut r = Reader::new(buf);
        let truncated = |needed, available, context| RtcpError::Truncated {
            offset,
            needed,
            available,
            context,
        };
        let header = r
            .array::<RTCP_HEADER_LEN>()
            .ok_or_else(|| truncated(RTCP_HEADER_LEN, buf.len(), "RTCP header"))?;
        let version = header[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion { offset, version });
        }
        let len = (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1) * 4;
        let bytes = Reader::new(buf)
            .take(len)
            .ok_or_else(|| truncated(len, buf.len(), "RTCP packet (length field)"))?;
        let rest = buf.get(len..).unwrap_or(&[]);
        let padded = header[0] & 0x20 != 0;
        let mut body = bytes.get(RTCP_HEADER_LEN..).unwrap_or(&[]);
        if padded {
            let count = body.last().copied().unwrap_or(0);
            if count == 0 || usize::from(count) > body.len() {
                return Err(RtcpError::BadPadding {
                    offset: offset + len - 1,
                    count,
                    max: body.len(),
                });
            }
            body = body.get(..body.len() - usize::from(count)).unwrap_or(&[]);
        }
        Ok((
            Self {
                offset,
                count: header[0] & 0x1f,
                packet_type: header[1],
                padded,
                body,
                bytes,
            },
            rest,
        ))
    }
}

/// One RTCP packet, interpreted by type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// SR.
    SenderReport(SenderReport<'a>),
    /// RR.
    ReceiverReport(ReceiverReport<'a>),
    /// SDES.
    SourceDescription(SourceDescription<'a>),
    /// BYE.
    Goodbye(Goodbye<'a>),
    /// APP.
    App(App<'a>),
    /// Any other type, uninterpreted.
    Unknown(RawRtcp<'a>),
}

impl<'a> RtcpPacket<'a> {
    /// Interprets a split packet by its type, validating its content.
    pub fn from_raw(raw: RawRtcp<'a>) -> Result<Self, RtcpError> {
        Ok(match raw.packet_type {
            PT_SR => Self::SenderReport(SenderReport::new(raw)?),
            PT_RR => Self::ReceiverReport(ReceiverReport::new(raw)?),
            PT_SDES => Self::SourceDescription(SourceDescription::new(raw)?),
            PT_BYE => Self::Goodbye(Goodbye::new(raw)?),
            PT_APP => Self::App(App::new(raw)?),
            _ => Self::Unknown(raw),
        })
    }

    /// The packet before interpretation.
    pub fn raw(&self) -> RawRtcp<'a> {
        match self {
            Self::SenderReport(p) => p.raw(),
            Self::ReceiverReport(p) => p.raw(),
            Self::SourceDescription(p) => p.raw(),
            Self::Goodbye(p) => p.raw(),
            Self::App(p) => p.raw(),
            Self::Unknown(raw) => *raw,
        }
    }

    /// Packet type.
    pub fn packet_type(&self) -> u8 {
        self.raw().packet_type
    }
}

/// Iterator over the packets of a compound datagram, validating as it goes (version,
/// lengths, padding only on the last packet, each packet's content) but not the
/// first-packet rule, so it also reads RFC 5506 reduced-size RTCP. Stops after the
/// first error.
#[derive(Debug, Clone)]
pub struct RtcpPackets<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> RtcpPackets<'a> {
    /// Iterates over the packets in `datagram`.
    pub fn new(datagram: &'a [u8]) -> Self {
        Self {
            rest: datagram,
            offset: 0,
        }
    }
}

impl<'a> Iterator for RtcpPackets<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = RawRtcp::split(self.rest, self.offset).and_then(|(raw, rest)| {
            if raw.padded && !rest.is_empty() {
                return Err(RtcpError::PaddingNotLast { offset: raw.offset });
            }
            let packet = RtcpPacket::from_raw(raw)?;
            self.offset += raw.bytes.len();
            self.rest = rest;
            Ok(packet)
        });
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }
}

/// A compound RTCP datagram that passed every check; iterating it cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compound<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> Compound<'a> {
    /// Validates `datagram` as a compound packet by the RFC 3550 A.2 rules.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, RtcpError> {
        // A.2 checks the first header's version, padding and type before anything else.
        if let Some(&[b0, packet_type]) = datagram.first_chunk::<2>() {
            let padded = b0 & 0x20 != 0;
            if b0 >> 6 == 2 && (padded || !matches!(packet_type, PT_SR | PT_RR)) {
                return Err(RtcpError::FirstNotReport {
                    packet_type,
                    padded,
                });
            }
        }
        Self::parse_reduced_size(datagram)
    }

    /// Validates `datagram` like [`Compound::parse`] but accepts any first packet, as
    /// RFC 5506 reduced-size RTCP (e.g. a lone PLI) allows.
    pub fn parse_reduced_size(datagram: &'a [u8]) -> Result<Self, RtcpError> {
        if datagram.is_empty() {
            return Err(RtcpError::Empty);
        }
        let mut count = 0;
        for packet in RtcpPackets::new(datagram) {
            packet?;
            count += 1;
        }
        Ok(Self {
            bytes: datagram,
            count,
        })
    }

    /// The packets, in order.
    pub fn packets(&self) -> impl Iterator<Item = RtcpPacket<'a>> + 'a {
        // Validated in `parse`, so no item is an error.
        RtcpPackets::new(self.bytes).map_while(Result::ok)
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: a parsed compound has at least one packet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests;
