//! Durations with a range fixed by their type, `BoundedDuration<MIN_US, MAX_US>`.
//!
//! What it does: reads a duration written like [`HumanDuration`] (`"10s"`, `"1m30s"`,
//! `"250ms"`) or, for pauses shorter than a millisecond, as whole microseconds alone
//! (`"500us"`), and refuses a value outside `MIN_US..=MAX_US` microseconds at load time,
//! so the error points at the value in the file and engines never see a zero timeout or
//! a pause that would stall media. Printing gives the shortest form that reads back the
//! same (`"1m30s"`, `"1500us"`).
//!
//! What it does not: mix microseconds with other units (`"1ms500us"`; write `"1500us"`),
//! or check settings against each other (`validate` does).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::duration::HumanDuration;
use super::value_error::{check_len, quoted, InvalidValue};

/// A duration known to lie in `MIN_US..=MAX_US` microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundedDuration<const MIN_US: u64, const MAX_US: u64> {
    micros: u64,
}

impl<const MIN_US: u64, const MAX_US: u64> BoundedDuration<MIN_US, MAX_US> {
    /// `millis` milliseconds; a constant outside the range fails to compile when this is
    /// evaluated in a `const` context (which is how defaults use it).
    pub const fn from_millis_const(millis: u64) -> Self {
        let micros = millis.saturating_mul(1000);
        assert!(MIN_US <= micros && micros <= MAX_US, "default out of range");
        Self { micros }
    }

    /// The same from microseconds, for sub-millisecond defaults.
    pub const fn from_micros_const(micros: u64) -> Self {
        assert!(MIN_US <= micros && micros <= MAX_US, "default out of range");
        Self { micros }
    }

    /// The duration, if it is in range.
    pub fn new(value: Duration) -> Result<Self, InvalidValue> {
        if value.subsec_nanos() % 1000 != 0 {
            return Err(InvalidValue::new(format!(
                "duration {value:?} is not a whole number of microseconds"
            )));
        }
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        if (MIN_US..=MAX_US).contains(&micros) {
            Ok(Self { micros })
        } else {
            Err(Self::out_of_range(&format!("{value:?}")))
        }
    }

    /// The value as a standard duration.
    pub const fn get(self) -> Duration {
        Duration::from_micros(self.micros)
    }

    /// The value in whole microseconds.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// True for `"0s"`.
    pub const fn is_zero(self) -> bool {
        self.micros == 0
    }

    fn out_of_range(shown: &str) -> InvalidValue {
        InvalidValue::new(format!(
            "duration {shown} is out of range: it must be from {} to {}",
            Self { micros: MIN_US },
            Self { micros: MAX_US }
        ))
    }
}

impl<const MIN_US: u64, const MAX_US: u64> From<BoundedDuration<MIN_US, MAX_US>> for Duration {
    fn from(d: BoundedDuration<MIN_US, MAX_US>) -> Duration {
        d.get()
    }
}

/// Microseconds written alone, `"<digits>us"`; `None` when `s` is not in that form.
fn parse_micros(s: &str) -> Option<Result<u64, InvalidValue>> {
    let digits = s.strip_suffix("us")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Err(InvalidValue::new(format!(
            "invalid duration {}: microseconds are written alone as a whole number, as in \"500us\"",
            quoted(s)
        ))));
    }
    // Too many digits for u64 is still a number, just far out of any range.
    Some(Ok(digits.parse().unwrap_or(u64::MAX)))
}

impl<const MIN_US: u64, const MAX_US: u64> FromStr for BoundedDuration<MIN_US, MAX_US> {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "a duration")?;
        let micros = match parse_micros(s) {
            Some(parsed) => parsed?,
            None => s.parse::<HumanDuration>()?.as_millis().saturating_mul(1000),
        };
        if (MIN_US..=MAX_US).contains(&micros) {
            Ok(Self { micros })
        } else {
            Err(Self::out_of_range(&quoted(s)))
        }
    }
}

impl<const MIN_US: u64, const MAX_US: u64> fmt::Display for BoundedDuration<MIN_US, MAX_US> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.micros % 1000 == 0 {
            HumanDuration::from_millis(self.micros / 1000).fmt(f)
        } else {
            write!(f, "{}us", self.micros)
        }
    }
}

impl<const MIN_US: u64, const MAX_US: u64> Serialize for BoundedDuration<MIN_US, MAX_US> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de, const MIN_US: u64, const MAX_US: u64> Deserialize<'de>
    for BoundedDuration<MIN_US, MAX_US>
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor<const MIN_US: u64, const MAX_US: u64>;

        impl<const MIN_US: u64, const MAX_US: u64> Visitor<'_> for DurationVisitor<MIN_US, MAX_US> {
            type Value = BoundedDuration<MIN_US, MAX_US>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a duration from {} to {}, such as \"10s\" or \"250ms\"",
                    BoundedDuration::<MIN_US, MAX_US> { micros: MIN_US },
                    BoundedDuration::<MIN_US, MAX_US> { micros: MAX_US }
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(DurationVisitor::<MIN_US, MAX_US>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 ms to 1 h.
    type Timeout = BoundedDuration<1000, 3_600_000_000>;
    /// 0 to 10 ms.
    type Pause = BoundedDuration<0, 10_000>;

    #[derive(Debug, Deserialize, Serialize)]
    struct Doc {
        t: Timeout,
    }

    fn micros<const A: u64, const B: u64>(s: &str) -> u64 {
        s.parse::<BoundedDuration<A, B>>().unwrap().as_micros()
    }

    fn err<const A: u64, const B: u64>(s: &str) -> String {
        s.parse::<BoundedDuration<A, B>>().unwrap_err().to_string()
    }

    #[test]
    fn reads_human_durations_and_microseconds() {
        assert_eq!(micros::<0, 10_000>("0s"), 0);
        assert_eq!(micros::<0, 10_000>("500us"), 500);
        assert_eq!(micros::<0, 10_000>("10ms"), 10_000);
        assert_eq!(micros::<0, 10_000>("10000us"), 10_000);
        assert_eq!(micros::<1000, 3_600_000_000>("1m30s"), 90_000_000);
        assert_eq!(micros::<1000, 3_600_000_000>("1h"), 3_600_000_000);
        assert_eq!(
            "250us".parse::<Pause>().unwrap().get(),
            Duration::from_micros(250)
        );
    }

    #[test]
    fn refuses_values_outside_the_range() {
        assert_eq!(
            err::<1000, 3_600_000_000>("0s"),
            "duration \"0s\" is out of range: it must be from 1ms to 1h"
        );
        assert_eq!(
            err::<1000, 3_600_000_000>("999us"),
            "duration \"999us\" is out of range: it must be from 1ms to 1h"
        );
        assert_eq!(
            err::<1000, 3_600_000_000>("1h1ms"),
            "duration \"1h1ms\" is out of range: it must be from 1ms to 1h"
        );
        assert_eq!(
            err::<0, 10_000>("10001us"),
            "duration \"10001us\" is out of range: it must be from 0s to 10ms"
        );
        assert!(err::<0, 10_000>("5124095576030432h").contains("too large"));
        assert!(err::<0, 10_000>("99999999999999999999999us").contains("out of range"));
        assert!(err::<0, 10_000>(&"1".repeat(3000)).contains("limit is 2048"));
    }

    #[test]
    fn refuses_malformed_text() {
        let mixed = "invalid duration \"1ms500us\": microseconds are written alone as a whole number, as in \"500us\"";
        assert_eq!(err::<0, 10_000>("1ms500us"), mixed);
        assert!(err::<0, 10_000>("us").contains("written alone"));
        assert!(err::<0, 10_000>("-5us").contains("written alone"));
        assert!(err::<0, 10_000>("5").contains("the unit is missing"));
        assert!(err::<0, 10_000>("5 ms").contains("expected a unit"));
    }

    #[test]
    fn new_checks_the_range_and_the_resolution() {
        assert_eq!(
            Timeout::new(Duration::from_secs(5)).map(Timeout::get),
            Ok(Duration::from_secs(5))
        );
        assert!(Timeout::new(Duration::ZERO).is_err());
        assert!(Pause::new(Duration::from_nanos(1500)).is_err());
        assert!(Pause::new(Duration::from_secs(u64::MAX)).is_err());
        assert!(Pause::new(Duration::ZERO).unwrap().is_zero());
    }

    #[test]
    fn prints_the_shortest_form_that_reads_back() {
        assert_eq!(Pause::from_millis_const(0).to_string(), "0s");
        assert_eq!("1500us".parse::<Pause>().unwrap().to_string(), "1500us");
        assert_eq!("2000us".parse::<Pause>().unwrap().to_string(), "2ms");
        assert_eq!(Timeout::from_millis_const(90_000).to_string(), "1m30s");
        let mut rng = crate::test_rng::Rng::new(5);
        for _ in 0..10_000 {
            let d = Pause {
                micros: rng.below(10_001),
            };
            assert_eq!(d.to_string().parse::<Pause>(), Ok(d));
            let t = Timeout {
                micros: 1000 + rng.below(3_600_000_000 - 999),
            };
            assert_eq!(t.to_string().parse::<Timeout>(), Ok(t));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text() {
        let mut rng = crate::test_rng::Rng::new(13);
        for _ in 0..20_000 {
            let s = rng.string_from(b"0123456789hmsu x.-", 12);
            let _ = s.parse::<Pause>();
            let _ = s.parse::<Timeout>();
        }
    }

    #[test]
    fn deserializes_from_toml_with_the_value_span() {
        let doc: Doc = toml::from_str("t = \"2m\"").unwrap();
        assert_eq!(doc.t.get(), Duration::from_secs(120));
        let e = toml::from_str::<Doc>("t = \"0s\"").unwrap_err();
        assert_eq!(
            e.message(),
            "duration \"0s\" is out of range: it must be from 1ms to 1h"
        );
        assert_eq!(e.span(), Some(4..8));
        let e = toml::from_str::<Doc>("t = 5").unwrap_err();
        assert!(
            e.message()
                .contains("a duration from 1ms to 1h, such as \"10s\" or \"250ms\""),
            "{}",
            e.message()
        );
        assert_eq!(
            toml::to_string(&Doc {
                t: Timeout::from_millis_const(1500)
            })
            .unwrap(),
            "t = \"1s500ms\"\n"
        );
    }
}
