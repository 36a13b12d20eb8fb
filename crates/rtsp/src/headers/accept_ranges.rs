//! `Accept-Ranges` (RFC 7826 §18.5): the range formats a server accepts in `Range`
//! (sent in SETUP requests and responses and in 456 errors).
//!
//! What it does not: byte ranges, which RFC 2326 §12.29 says are meaningless for RTSP;
//! a peer that sends `bytes` gets it kept as an extension unit.

use super::syntax::{self, Nesting};
use crate::header_map::{HeaderError, TypedHeader};

/// A range format name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RangeUnit {
    /// `npt`: normal play time.
    Npt,
    /// `smpte`: SMPTE time code at 30 frames per second.
    Smpte,
    /// `smpte-30-drop`: 29.97 fps drop-frame time code.
    Smpte30Drop,
    /// `smpte-25`: 25 fps time code.
    Smpte25,
    /// `clock`: absolute UTC time.
    Clock,
    /// Any other format token, as received.
    Other(String),
}

impl RangeUnit {
    /// Recognises a unit name case-insensitively; unknown tokens become `Other`.
    pub fn from_token(token: &str) -> Self {
        let is = |k: &str| token.eq_ignore_ascii_case(k);
        if is("npt") {
            RangeUnit::Npt
        } else if is("smpte") {
            RangeUnit::Smpte
        } else if is("smpte-30-drop") {
            RangeUnit::Smpte30Drop
        } else if is("smpte-25") {
            RangeUnit::Smpte25
        } else if is("clock") {
            RangeUnit::Clock
        } else {
            RangeUnit::Other(token.to_owned())
        }
    }

    /// Canonical spelling.
    pub fn as_str(&self) -> &str {
        match self {
            RangeUnit::Npt => "npt",
            RangeUnit::Smpte => "smpte",
            RangeUnit::Smpte30Drop => "smpte-30-drop",
            RangeUnit::Smpte25 => "smpte-25",
            RangeUnit::Clock => "clock",
            RangeUnit::Other(s) => s,
        }
    }
}

/// `Accept-Ranges: range-unit *(COMMA range-unit)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptRanges(pub Vec<RangeUnit>);

impl AcceptRanges {
    /// Whether `unit` is accepted.
    pub fn contains(&self, unit: &RangeUnit) -> bool {
        self.0.iter().any(|u| match (u, unit) {
            (RangeUnit::Other(a), RangeUnit::Other(b)) => a.eq_ignore_ascii_case(b),
            _ => u == unit,
        })
    }
}

impl TypedHeader for AcceptRanges {
    const NAME: &'static str = "Accept-Ranges";

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start_nonempty(Self::NAME, value, "a range format")?;
        let items = syntax::split_list(
            Self::NAME,
            span,
            b',',
            syntax::MAX_LIST_ITEMS,
            Nesting::Quotes,
            "range formats",
        )?;
        if items.is_empty() {
            return Err(syntax::err(
                Self::NAME,
                span.offset,
                "expected a range format",
            ));
        }
        items
            .into_iter()
            .map(|i| syntax::expect_token(Self::NAME, i, "range format").map(RangeUnit::from_token))
            .collect::<Result<Vec<_>, _>>()
            .map(AcceptRanges)
    }

    fn to_value(&self) -> String {
        self.0
            .iter()
            .map(RangeUnit::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc_example_and_extensions() {
        let a = AcceptRanges::parse_value("NPT, smpte, smpte-30-drop,smpte-25 , clock, x-frames")
            .unwrap();
        assert_eq!(
            a.0,
            vec![
                RangeUnit::Npt,
                RangeUnit::Smpte,
                RangeUnit::Smpte30Drop,
                RangeUnit::Smpte25,
                RangeUnit::Clock,
                RangeUnit::Other("x-frames".into()),
            ]
        );
        assert_eq!(
            a.to_value(),
            "npt, smpte, smpte-30-drop, smpte-25, clock, x-frames"
        );
        assert!(a.contains(&RangeUnit::Other("X-Frames".into())));
        assert_eq!(AcceptRanges::parse_value(&a.to_value()), Ok(a));
    }

    #[test]
    fn errors_carry_offsets() {
        assert_eq!(AcceptRanges::parse_value("").unwrap_err().offset, 0);
        let e = AcceptRanges::parse_value("npt, a=b").unwrap_err();
        assert_eq!((e.offset, e.header), (6, "Accept-Ranges"));
    }
}
