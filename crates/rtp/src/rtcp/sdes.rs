//! Source description packets: chunks of (SSRC, items) (RFC 3550 §6.5).
//!
//! What it does: checks at construction that exactly SC chunks fill the body, each a
//! list of type-length-value items ended by a null octet and padded to a 32-bit
//! boundary, then iterates chunks and items without copying. What it does not: decode
//! item text (it is UTF-8 by the RFC but is handed out as bytes), interpret PRIV
//! prefixes, or require padding octets to be zero (senders get that wrong harmlessly).

use super::{RawRtcp, RtcpError, RTCP_HEADER_LEN};
use crate::reader::Reader;

/// An SDES item type. Known values are associated constants; others are kept as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SdesType(pub u8);

impl SdesType {
    /// Ends a chunk's item list (never appears as an item).
    pub const END: Self = Self(0);
    /// Canonical end-point identifier, the one item every chunk should carry.
    pub const CNAME: Self = Self(1);
    /// User name.
    pub const NAME: Self = Self(2);
    /// E-mail address.
    pub const EMAIL: Self = Self(3);
    /// Phone number.
    pub const PHONE: Self = Self(4);
    /// Geographic location.
    pub const LOC: Self = Self(5);
    /// Application or tool name.
    pub const TOOL: Self = Self(6);
    /// Notice or status.
    pub const NOTE: Self = Self(7);
    /// Private extension.
    pub const PRIV: Self = Self(8);
}

/// One SDES item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    /// Item type (never [`SdesType::END`]).
    pub kind: SdesType,
    /// Item value, up to 255 bytes.
    pub value: &'a [u8],
}

/// One chunk: a source and its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    /// SSRC or CSRC described.
    pub ssrc: u32,
    /// The encoded items, without the terminating null octet.
    items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    /// The items in wire order.
    pub fn items(&self) -> impl Iterator<Item = SdesItem<'a>> + 'a {
        let mut r = Reader::new(self.items);
        std::iter::from_fn(move || {
            let kind = SdesType(r.u8()?);
            let len = r.u8()?;
            let value = r.take(usize::from(len))?;
            Some(SdesItem { kind, value })
        })
    }

    /// The first CNAME item's value.
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items()
            .find(|i| i.kind == SdesType::CNAME)
            .map(|i| i.value)
    }
}

/// Reads one chunk at the reader's position, which must be 32-bit aligned.
/// On error returns the body offset of the problem and a description.
fn read_chunk<'a>(r: &mut Reader<'a>) -> Result<SdesChunk<'a>, (usize, &'static str)> {
    let ssrc = r
        .u32()
        .ok_or((r.pos(), "SDES chunk count exceeds the packet length"))?;
    let items_start = *r;
    loop {
        let at = r.pos();
        let kind = r
            .u8()
            .ok_or((at, "SDES chunk not terminated by a null octet"))?;
        if kind == SdesType::END.0 {
            let items_len = at - items_start.pos();
            let items = items_start.rest().get(..items_len).unwrap_or(&[]);
            // Null octets pad the chunk to the next 32-bit boundary.
            let pad = (4 - r.pos() % 4) % 4;
            r.take(pad)
                .ok_or((r.pos(), "SDES chunk padding runs past the packet end"))?;
            return Ok(SdesChunk { ssrc, items });
        }
        let len = r
            .u8()
            .ok_or((at, "SDES item header runs past the packet end"))?;
        r.take(usize::from(len))
            .ok_or((at, "SDES item length runs past the packet end"))?;
    }
}

/// A validated SDES packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceDescription<'a> {
    raw: RawRtcp<'a>,
}

impl<'a> SourceDescription<'a> {
    /// Interprets `raw` (packet type 202), checking every chunk and item.
    pub fn new(raw: RawRtcp<'a>) -> Result<Self, RtcpError> {
        let mut r = Reader::new(raw.body);
        let malformed = |(at, context): (usize, &'static str)| RtcpError::Malformed {
            offset: raw.offset + RTCP_HEADER_LEN + at,
            context,
        };
        for _ in 0..raw.count {
            read_chunk(&mut r).map_err(malformed)?;
        }
        if r.remaining() != 0 {
            return Err(malformed((r.pos(), "bytes after the last SDES chunk")));
        }
        Ok(Self { raw })
    }

    /// The packet before interpretation.
    pub fn raw(&self) -> RawRtcp<'a> {
        self.raw
    }

    /// The chunks, in wire order (SC of them).
    pub fn chunks(&self) -> impl Iterator<Item = SdesChunk<'a>> + 'a {
        let mut r = Reader::new(self.raw.body);
        (0..self.raw.count).map_while(move |_| read_chunk(&mut r).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdes(count: u8, body: &[u8]) -> Result<SourceDescription<'_>, RtcpError> {
        SourceDescription::new(RawRtcp {
            offset: 0,
            count,
            packet_type: 202,
            padded: false,
            body,
            bytes: body,
        })
    }

    #[test]
    fn two_chunks_with_items() {
        let body = [
            0, 0, 0, 1, 1, 3, b'a', b'b', b'c', 0, 0, 0, // chunk 1: CNAME "abc", end
            0, 0, 0, 2, 0, 0, 0, 0, // chunk 2: no items
        ];
        let p = sdes(2, &body).unwrap();
        let chunks: Vec<_> = p.chunks().collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].ssrc, 1);
        assert_eq!(chunks[0].cname(), Some(&b"abc"[..]));
        assert_eq!(chunks[1].ssrc, 2);
        assert_eq!(chunks[1].items().count(), 0);
    }

    #[test]
    fn structural_errors_have_offsets() {
        // Item length 9 runs past the body.
        assert_eq!(
            sdes(1, &[0, 0, 0, 1, 1, 9, b'a', 0]),
            Err(RtcpError::Malformed {
                offset: 8,
                context: "SDES item length runs past the packet end"
            })
        );
        // No null terminator.
        assert_eq!(
            sdes(1, &[0, 0, 0, 1, 1, 2, b'a', b'b']),
            Err(RtcpError::Malformed {
                offset: 12,
                context: "SDES chunk not terminated by a null octet"
            })
        );
        // SC says 2, one chunk present.
        assert!(matches!(
            sdes(2, &[0, 0, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::Malformed { offset: 12, .. })
        ));
        // Extra bytes after SC chunks.
        assert!(matches!(
            sdes(0, &[0, 0, 0, 1]),
            Err(RtcpError::Malformed { offset: 4, .. })
        ));
    }
}
