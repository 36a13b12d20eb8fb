//! BYE packets: sources leaving, with an optional reason (RFC 3550 §6.6).
//!
//! What it does: checks that SC SSRCs fit the packet and that an optional reason's
//! length byte stays inside it. What it does not: decode the reason's text (bytes,
//! UTF-8 by the RFC) or act on the BYE (engines end the session).

use super::{RawRtcp, RtcpError, RTCP_HEADER_LEN};
use crate::reader::Reader;

/// A validated BYE packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Goodbye<'a> {
    raw: RawRtcp<'a>,
    ssrcs: &'a [u8],
    reason: Option<&'a [u8]>,
}

impl<'a> Goodbye<'a> {
    /// Interprets `raw` (packet type 203).
    pub fn new(raw: RawRtcp<'a>) -> Result<Self, RtcpError> {
        let mut r = Reader::new(raw.body);
        let ssrcs = r
            .take(usize::from(raw.count) * 4)
            .ok_or(RtcpError::Malformed {
                offset: raw.offset,
                context: "the BYE source count needs more SSRCs than the packet length holds",
            })?;
        let reason = if r.remaining() == 0 {
            None
        } else {
            let at = raw.offset + RTCP_HEADER_LEN + r.pos();
            let len = r.u8().unwrap_or(0);
            // What follows the reason is padding to the 32-bit boundary.
            Some(r.take(usize::from(len)).ok_or(RtcpError::Malformed {
                offset: at,
                context: "BYE reason length runs past the packet end",
            })?)
        };
        Ok(Self { raw, ssrcs, reason })
    }

    /// The packet before interpretation.
    pub fn raw(&self) -> RawRtcp<'a> {
        self.raw
    }

    /// The sources leaving.
    pub fn ssrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.ssrcs
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The reason for leaving, if given.
    pub fn reason(&self) -> Option<&'a [u8]> {
        self.reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bye(count: u8, body: &[u8]) -> Result<Goodbye<'_>, RtcpError> {
        Goodbye::new(RawRtcp {
            offset: 8,
            count,
            packet_type: 203,
            padded: false,
            body,
            bytes: body,
        })
    }

    #[test]
    fn ssrcs_and_reason() {
        let b = bye(2, &[0, 0, 0, 1, 0, 0, 0, 2, 3, b'b', b'y', b'e']).unwrap();
        assert_eq!(b.ssrcs().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(b.reason(), Some(&b"bye"[..]));
        let b = bye(1, &[0, 0, 0, 9]).unwrap();
        assert_eq!(b.reason(), None);
    }

    #[test]
    fn bad_lengths_are_malformed() {
        assert!(matches!(
            bye(2, &[0, 0, 0, 1]),
            Err(RtcpError::Malformed { offset: 8, .. })
        ));
        assert_eq!(
            bye(1, &[0, 0, 0, 1, 7, b'x', 0, 0]),
            Err(RtcpError::Malformed {
                offset: 16,
                context: "BYE reason length runs past the packet end"
            })
        );
    }
}
