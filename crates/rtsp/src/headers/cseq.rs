//! `CSeq` (RFC 2326 §12.17, RFC 7826 §18.20): the request sequence number that pairs a
//! response with its request.
//!
//! What it does not: renumbering; a proxy that aggregates clients does that in its
//! session layer with these values.

use super::syntax;
use crate::header_map::{HeaderError, TypedHeader};

/// `CSeq: 1*9DIGIT` in RTSP 2.0; we accept the full `u32` range because RTSP 1.0 peers
/// count past 9 digits' worth of requests only in theory, and refuse anything larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CSeq(pub u32);

impl CSeq {
    /// The next sequence number, wrapping at `u32::MAX`.
    pub fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }
}

impl TypedHeader for CSeq {
    const NAME: &'static str = "CSeq";

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start(Self::NAME, value)?;
        syntax::parse_uint(Self::NAME, span, "sequence number").map(CSeq)
    }

    fn to_value(&self) -> String {
        self.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_values() {
        assert_eq!(CSeq::parse_value("1"), Ok(CSeq(1)));
        assert_eq!(CSeq::parse_value(" 4294967295 "), Ok(CSeq(u32::MAX)));
        assert_eq!(CSeq(7).to_value(), "7");
        assert_eq!(CSeq(u32::MAX).next(), CSeq(0));
    }

    #[test]
    fn rejects_malformed_with_offsets() {
        let e = CSeq::parse_value("4294967296").unwrap_err();
        assert_eq!((e.offset, e.header), (0, "CSeq"));
        assert_eq!(CSeq::parse_value("1, 2").unwrap_err().offset, 1);
        assert_eq!(CSeq::parse_value("  -1").unwrap_err().offset, 2);
        assert_eq!(CSeq::parse_value("").unwrap_err().offset, 0);
    }

    proptest::proptest! {
        #[test]
        fn round_trips(n in proptest::prelude::any::<u32>()) {
            proptest::prop_assert_eq!(CSeq::parse_value(&CSeq(n).to_value()), Ok(CSeq(n)));
        }
    }
}
