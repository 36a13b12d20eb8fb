//! An exact decimal number kept in its textual form, for Scale, Speed, npt seconds and
//! Media-Properties values (RFC 2326 §12.34/§12.35 `[ "-" ] 1*DIGIT [ "." *DIGIT ]`,
//! RFC 7826 §18.46/§18.50 `["-"] 1*19DIGIT ["." 1*9DIGIT]`).
//!
//! Why text: a proxy must forward `12.500` as `12.500`, and a float would lose that (and
//! precision for large values). Equality is textual; [`Decimal::same_value`] compares
//! numerically. What it does not: arithmetic.

use std::fmt;

use super::syntax::{self, Span};
use crate::header_map::HeaderError;

/// Most integer digits accepted (RFC 7826 caps delta values at 19 digits).
const MAX_INT_DIGITS: usize = 19;
/// Most fraction digits accepted; RFC 7826 says 9, real peers print up to 6, so 18
/// leaves room for odd writers while bounding the text.
const MAX_FRAC_DIGITS: usize = 18;

/// Exact decimal number `[-]digits[.digits]`, stored as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    text: String,
}

impl Decimal {
    /// Parses `[-]1*DIGIT["." *DIGIT]`; `None` if `s` is not of that form or too long.
    pub fn parse(s: &str) -> Option<Self> {
        check(s, true).ok()?;
        Some(Self { text: s.to_owned() })
    }

    /// The decimal for an integer.
    pub fn from_int(v: i64) -> Self {
        Self {
            text: v.to_string(),
        }
    }

    /// The text as received (and as it will be written).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for a value below zero (`-0.0` is not negative).
    pub fn is_negative(&self) -> bool {
        self.text.starts_with('-') && !self.is_zero()
    }

    /// True for any spelling of zero.
    pub fn is_zero(&self) -> bool {
        self.text.bytes().all(|b| matches!(b, b'0' | b'.' | b'-'))
    }

    /// Nearest `f64` (for display and rate computations, never for identity).
    pub fn to_f64(&self) -> f64 {
        self.text.parse::<f64>().unwrap_or(f64::NAN)
    }

    /// Value in thousandths, truncated toward zero; `None` if it does not fit in `i64`.
    pub fn to_millis(&self) -> Option<i64> {
        let (negative, digits) = match self.text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, self.text.as_str()),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let mut millis: i64 = 0;
        for b in int.bytes() {
            millis = millis
                .checked_mul(10)?
                .checked_add(i64::from(b.checked_sub(b'0')?))?;
        }
        millis = millis.checked_mul(1000)?;
        let mut scale = 100i64;
        for b in frac.bytes().take(3) {
            millis = millis.checked_add(i64::from(b.checked_sub(b'0')?).checked_mul(scale)?)?;
            scale /= 10;
        }
        if negative {
            millis.checked_neg()
        } else {
            Some(millis)
        }
    }

    /// Numeric equality: `12.5`, `12.500` and `012.5` are the same value.
    pub fn same_value(&self, other: &Decimal) -> bool {
        self.normalized() == other.normalized()
    }

    fn normalized(&self) -> (bool, &str, &str) {
        if self.is_zero() {
            return (false, "", "");
        }
        let (negative, digits) = match self.text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, self.text.as_str()),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        (
            negative,
            int.trim_start_matches('0'),
            frac.trim_end_matches('0'),
        )
    }

    /// Parses a decimal inside a header value, reporting errors at their offset.
    pub(crate) fn parse_in(
        header: &'static str,
        span: Span<'_>,
        allow_negative: bool,
        what: &str,
    ) -> Result<Self, HeaderError> {
        check(span.text, allow_negative).map_err(|(at, reason)| {
            syntax::err(
                header,
                span.offset.saturating_add(at),
                format!("invalid {what}: {reason}"),
            )
        })?;
        Ok(Self {
            text: span.text.to_owned(),
        })
    }
}

/// Validates the decimal grammar; on failure gives the offset within `s` and why.
fn check(s: &str, allow_negative: bool) -> Result<(), (usize, &'static str)> {
    let (sign_len, digits) = match s.strip_prefix('-') {
        Some(rest) if allow_negative => (1usize, rest),
        Some(_) => return Err((0, "a negative value is not allowed here")),
        None => (0, s),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    if int.is_empty() {
        return Err((sign_len, "expected a digit"));
    }
    if let Some(i) = int.bytes().position(|b| !b.is_ascii_digit()) {
        return Err((sign_len.saturating_add(i), "expected a decimal number"));
    }
    if int.len() > MAX_INT_DIGITS {
        return Err((sign_len, "too many integer digits (at most 19)"));
    }
    if let Some(frac) = frac {
        let frac_start = sign_len.saturating_add(int.len()).saturating_add(1);
        if let Some(i) = frac.bytes().position(|b| !b.is_ascii_digit()) {
            return Err((frac_start.saturating_add(i), "expected a decimal number"));
        }
        if frac.len() > MAX_FRAC_DIGITS {
            return Err((frac_start, "too many fraction digits (at most 18)"));
        }
    }
    Ok(())
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
pub(crate) mod strategy {
    use super::Decimal;
    use proptest::prelude::*;

    /// Arbitrary valid decimals, signed when asked.
    pub(crate) fn decimal(signed: bool) -> impl Strategy<Value = Decimal> + Clone {
        (
            any::<bool>(),
            "[0-9]{1,6}",
            proptest::option::of("[0-9]{0,6}"),
        )
            .prop_map(move |(neg, int, frac)| {
                let mut s = String::new();
                if neg && signed {
                    s.push('-');
                }
                s.push_str(&int);
                if let Some(f) = frac {
                    s.push('.');
                    s.push_str(&f);
                }
                Decimal::parse(&s).expect("generated decimal is valid")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_text_and_compares_values() {
        let a = Decimal::parse("12.500").unwrap();
        let b = Decimal::parse("12.5").unwrap();
        assert_eq!(a.as_str(), "12.500");
        assert_ne!(a, b);
        assert!(a.same_value(&b));
        assert!(Decimal::parse("-0.0")
            .unwrap()
            .same_value(&Decimal::from_int(0)));
        assert!(!Decimal::parse("-0.0").unwrap().is_negative());
        assert!(Decimal::parse("-2").unwrap().is_negative());
        assert_eq!(Decimal::parse("12.").unwrap().to_f64(), 12.0);
    }

    #[test]
    fn millis_truncate_and_check_overflow() {
        assert_eq!(Decimal::parse("12.3456").unwrap().to_millis(), Some(12_345));
        assert_eq!(Decimal::parse("-1.5").unwrap().to_millis(), Some(-1_500));
        assert_eq!(Decimal::parse("0.05").unwrap().to_millis(), Some(50));
        assert_eq!(
            Decimal::parse("9999999999999999999").unwrap().to_millis(),
            None
        );
    }

    #[test]
    fn rejects_malformed_with_offsets() {
        for bad in [
            "",
            "-",
            ".5",
            "1.2.3",
            "1e5",
            "+1",
            "1,5",
            "12345678901234567890",
        ] {
            assert_eq!(Decimal::parse(bad), None, "{bad}");
        }
        let e = Decimal::parse_in("Scale", Span::new("1.x", 7), true, "scale").unwrap_err();
        assert_eq!(e.offset, 9);
        let e = Decimal::parse_in("Speed", Span::new("-1", 0), false, "speed").unwrap_err();
        assert_eq!(e.offset, 0);
    }
}
