//! Playback-rate and packet-size headers: `Scale` (RFC 2326 §12.34, RFC 7826 §18.46),
//! `Speed` (RFC 2326 §12.35 single rate; RFC 7826 §18.50 `lower-bound "-" upper-bound`)
//! and `Blocksize` (RFC 2326 §12.7, RFC 7826 §18.9).
//!
//! Rates are [`Decimal`]s so the text a client sent is forwarded unchanged. What it
//! does not: check that a rate is supported (compare with Media-Properties `Scales`).

use super::decimal::Decimal;
use super::syntax;
use crate::header_map::{HeaderError, TypedHeader};

/// `Scale: ["-"] 1*DIGIT ["." *DIGIT]`: viewing rate relative to normal (negative is
/// reverse play).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scale(pub Decimal);

impl TypedHeader for Scale {
    const NAME: &'static str = "Scale";

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start(Self::NAME, value)?;
        Decimal::parse_in(Self::NAME, span, true, "scale").map(Scale)
    }

    fn to_value(&self) -> String {
        self.0.as_str().to_owned()
    }
}

/// `Speed`: delivery rate relative to normal, never negative.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Speed {
    /// RTSP 1.0 single value.
    Rate(Decimal),
    /// RTSP 2.0 acceptable range `lower-upper`.
    Range {
        /// Lowest acceptable rate.
        lower: Decimal,
        /// Highest acceptable rate.
        upper: Decimal,
    },
}

impl TypedHeader for Speed {
    const NAME: &'static str = "Speed";

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start(Self::NAME, value)?;
        match span.split_once(b'-') {
            Some((lower, upper)) => Ok(Speed::Range {
                lower: Decimal::parse_in(Self::NAME, lower.trim(), false, "speed lower bound")?,
                upper: Decimal::parse_in(Self::NAME, upper.trim(), false, "speed upper bound")?,
            }),
            None => Decimal::parse_in(Self::NAME, span, false, "speed").map(Speed::Rate),
        }
    }

    fn to_value(&self) -> String {
        match self {
            Speed::Rate(r) => r.as_str().to_owned(),
            Speed::Range { lower, upper } => format!("{lower}-{upper}"),
        }
    }
}

/// `Blocksize: 1*9DIGIT`: the media packet size in bytes the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blocksize(pub u32);

impl TypedHeader for Blocksize {
    const NAME: &'static str = "Blocksize";

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start(Self::NAME, value)?;
        syntax::parse_uint(Self::NAME, span, "block size").map(Blocksize)
    }

    fn to_value(&self) -> String {
        self.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::decimal::strategy::decimal;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn scale_samples() {
        // ffmpeg writes six decimals
        assert_eq!(Scale::parse_value("1.000000"), Ok(Scale(d("1.000000"))));
        assert_eq!(
            Scale::parse_value("1.000000").unwrap().to_value(),
            "1.000000"
        );
        assert_eq!(Scale::parse_value("-2"), Ok(Scale(d("-2"))));
        assert!(Scale::parse_value("-0.5").unwrap().0.is_negative());
        assert_eq!(Scale::parse_value("fast").unwrap_err().offset, 0);
        let e = Scale::parse_value(" 1.5x").unwrap_err();
        assert_eq!((e.offset, e.header), (4, "Scale"));
    }

    #[test]
    fn speed_samples() {
        assert_eq!(Speed::parse_value("2.5"), Ok(Speed::Rate(d("2.5"))));
        assert_eq!(
            Speed::parse_value("1.0 - 2.5"),
            Ok(Speed::Range {
                lower: d("1.0"),
                upper: d("2.5")
            })
        );
        assert_eq!(
            Speed::parse_value("1.0 - 2.5").unwrap().to_value(),
            "1.0-2.5"
        );
        assert_eq!(Speed::parse_value("-1").unwrap_err().offset, 0);
        assert_eq!(Speed::parse_value("1-").unwrap_err().offset, 2);
    }

    #[test]
    fn blocksize_samples() {
        assert_eq!(Blocksize::parse_value("1400"), Ok(Blocksize(1400)));
        assert_eq!(Blocksize::parse_value("4294967296").unwrap_err().offset, 0);
        assert_eq!(Blocksize(1200).to_value(), "1200");
    }

    proptest! {
        #[test]
        fn rates_round_trip(a in decimal(true), b in decimal(false), c in decimal(false)) {
            let s = Scale(a);
            prop_assert_eq!(Scale::parse_value(&s.to_value()), Ok(s));
            let sp = Speed::Range { lower: b.clone(), upper: c };
            prop_assert_eq!(Speed::parse_value(&sp.to_value()), Ok(sp));
            let sp = Speed::Rate(b);
            prop_assert_eq!(Speed::parse_value(&sp.to_value()), Ok(sp));
        }
    }
}
