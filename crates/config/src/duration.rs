//! Durations written the way people say them: `"10s"`, `"250ms"`, `"1m30s"`, `"2h"`.
//!
//! What it does: parses and prints a sum of `<integer><unit>` terms, units `h`, `m`, `s`,
//! `ms`, largest first, each at most once; millisecond resolution. Printing gives the
//! shortest such form, so a value read and written back is unchanged.
//!
//! What it does not: fractions (`"1.5s"`; write `"1s500ms"`), days, negative values, or a
//! bare number (a unit is always required, because `timeout = 30` is ambiguous).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::value_error::{check_len, quoted, InvalidValue};

/// A non-negative duration with millisecond resolution, written as text in the config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration {
    millis: u64,
}

/// Units from largest to smallest: suffix and length in milliseconds.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

const FORM: &str = "write a whole number followed by a unit (h, m, s or ms), for example \"10s\", \"250ms\" or \"1m30s\"";

impl HumanDuration {
    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    /// A duration of `secs` seconds (saturating at the largest representable value).
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs.saturating_mul(1000),
        }
    }

    /// The value as a standard duration.
    pub const fn get(self) -> Duration {
        Duration::from_millis(self.millis)
    }

    /// The value in whole milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// True for `"0s"`.
    pub const fn is_zero(self) -> bool {
        self.millis == 0
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.get()
    }
}

impl FromStr for HumanDuration {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "a duration")?;
        let bad =
            |why: &str| InvalidValue::new(format!("invalid duration {}: {why}; {FORM}", quoted(s)));
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut rest = s;
        let mut total: u64 = 0;
        // Index into UNITS of the smallest unit used so far; each term must be smaller.
        let mut next_allowed = 0usize;
        while !rest.is_empty() {
            let digits_end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (digits, after) = rest.split_at(digits_end);
            if digits.is_empty() {
                return Err(bad("expected a number"));
            }
            let unit_end = after
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(after.len());
            let (unit, after_unit) = after.split_at(unit_end);
            if unit.is_empty() {
                return Err(bad(if after.is_empty() {
                    "the unit is missing"
                } else {
                    "expected a unit after the number"
                }));
            }
            let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
                return Err(bad(&format!("unknown unit {unit:?}")));
            };
            if index < next_allowed {
                return Err(bad(
                    "units must go from largest to smallest, each at most once",
                ));
            }
            next_allowed = index.saturating_add(1);
            let too_large = || bad("it is too large");
            let count: u64 = digits.parse().map_err(|_| too_large())?;
            let factor = UNITS.get(index).map_or(1, |(_, f)| *f);
            let millis = count.checked_mul(factor).ok_or_else(too_large)?;
            total = total.checked_add(millis).ok_or_else(too_large)?;
            rest = after_unit;
        }
        Ok(Self { millis: total })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return f.write_str("0s");
        }
        let mut left = self.millis;
        for (name, factor) in UNITS {
            let count = left / factor;
            if count > 0 {
                write!(f, "{count}{name}")?;
                left %= factor;
            }
        }
        Ok(())
    }
}

string_value_serde!(
    HumanDuration,
    "a duration such as \"10s\", \"250ms\" or \"1m30s\""
);

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u64 {
        s.parse::<HumanDuration>().unwrap().as_millis()
    }

    fn err(s: &str) -> String {
        s.parse::<HumanDuration>().unwrap_err().to_string()
    }

    #[test]
    fn parses_each_unit_and_sums() {
        assert_eq!(ms("10s"), 10_000);
        assert_eq!(ms("250ms"), 250);
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("2h"), 7_200_000);
        assert_eq!(ms("1h1m1s1ms"), 3_661_001);
        assert_eq!(ms("0s"), 0);
        assert_eq!(ms("0ms"), 0);
        assert_eq!(ms("90s"), 90_000);
    }

    #[test]
    fn rejects_with_a_reason() {
        assert_eq!(
            err("ten"),
            format!("invalid duration \"ten\": expected a number; {FORM}")
        );
        assert!(err("10").contains("the unit is missing"), "{}", err("10"));
        assert!(err("").contains("it is empty"));
        assert!(err("10x").contains("unknown unit \"x\""));
        assert!(err("30s1m").contains("largest to smallest"));
        assert!(err("1s1s").contains("largest to smallest"));
        assert!(err("1.5s").contains("expected a unit after the number"));
        assert!(err(" 10s").contains("expected a number"));
        assert!(err("10s ").contains("expected a number"));
        assert!(err("-1s").contains("expected a number"));
        assert!(err("99999999999999999999h").contains("too large"));
        assert!(err("5124095576030432h").contains("too large"));
        assert!(err(&"1".repeat(3000)).contains("limit is 2048"));
    }

    #[test]
    fn prints_the_shortest_form() {
        assert_eq!(HumanDuration::from_millis(0).to_string(), "0s");
        assert_eq!(HumanDuration::from_millis(90_000).to_string(), "1m30s");
        assert_eq!(HumanDuration::from_millis(1_500).to_string(), "1s500ms");
        assert_eq!(HumanDuration::from_secs(3_600).to_string(), "1h");
        assert_eq!(HumanDuration::from_millis(250).to_string(), "250ms");
        assert_eq!(HumanDuration::from_secs(10).get(), Duration::from_secs(10));
    }

    #[test]
    fn round_trips_edge_values() {
        for millis in [
            0,
            1,
            999,
            1000,
            59_999,
            60_000,
            3_599_999,
            3_600_000,
            u64::MAX,
        ] {
            let d = HumanDuration::from_millis(millis);
            assert_eq!(d.to_string().parse::<HumanDuration>(), Ok(d), "{millis}");
        }
    }

    #[test]
    fn round_trips_pseudo_random_values() {
        let mut rng = crate::test_rng::Rng::new(7);
        for _ in 0..10_000 {
            let d = HumanDuration::from_millis(rng.next() >> (rng.next() % 64));
            assert_eq!(d.to_string().parse::<HumanDuration>(), Ok(d));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text() {
        let mut rng = crate::test_rng::Rng::new(11);
        let alphabet = b"0123456789hmsx .-";
        for _ in 0..20_000 {
            let s = rng.string_from(alphabet, 12);
            let _ = s.parse::<HumanDuration>();
        }
    }
}
