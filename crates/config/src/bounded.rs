//! Whole-number settings with a range fixed by their type, `Bounded<MIN, MAX>`.
//!
//! What it does: refuses a value outside `MIN..=MAX` at load time, so the error points
//! at the number in the file and engines never see a zero-sized window or a limit that
//! would exhaust memory. What it does not: units; the field's doc says what it counts.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::value_error::InvalidValue;

/// A `u32` known to lie in `MIN..=MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bounded<const MIN: u32, const MAX: u32>(u32);

impl<const MIN: u32, const MAX: u32> Bounded<MIN, MAX> {
    /// The value, if it is in range.
    pub fn new(value: u64) -> Result<Self, InvalidValue> {
        match u32::try_from(value) {
            Ok(v) if (MIN..=MAX).contains(&v) => Ok(Self(v)),
            _ => Err(InvalidValue::new(format!(
                "{value} is out of range: it must be from {MIN} to {MAX}"
            ))),
        }
    }

    /// The value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl<const MIN: u32, const MAX: u32> fmt::Display for Bounded<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const MIN: u32, const MAX: u32> Serialize for Bounded<MIN, MAX> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de, const MIN: u32, const MAX: u32> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoundedVisitor<const MIN: u32, const MAX: u32>;

        impl<const MIN: u32, const MAX: u32> Visitor<'_> for BoundedVisitor<MIN, MAX> {
            type Value = Bounded<MIN, MAX>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a whole number from {MIN} to {MAX}")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Bounded::new(v).map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "{v} is out of range: it must be from {MIN} to {MAX}"
                    ))),
                }
            }
        }

        deserializer.deserialize_u64(BoundedVisitor::<MIN, MAX>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Doc {
        n: Bounded<1, 100>,
    }

    #[test]
    fn accepts_the_range_and_refuses_outside_it() {
        assert_eq!(Bounded::<1, 100>::new(1).map(Bounded::get), Ok(1));
        assert_eq!(Bounded::<1, 100>::new(100).map(Bounded::get), Ok(100));
        assert_eq!(
            Bounded::<1, 100>::new(0).unwrap_err().to_string(),
            "0 is out of range: it must be from 1 to 100"
        );
        assert!(Bounded::<1, 100>::new(u64::MAX).is_err());
    }

    #[test]
    fn deserializes_from_toml_with_the_value_span() {
        assert_eq!(toml::from_str::<Doc>("n = 7").unwrap().n.get(), 7);
        let e = toml::from_str::<Doc>("n = -3").unwrap_err();
        assert_eq!(e.message(), "-3 is out of range: it must be from 1 to 100");
        assert_eq!(e.span(), Some(4..6));
        let e = toml::from_str::<Doc>("n = \"7\"").unwrap_err();
        assert!(
            e.message().contains("a whole number from 1 to 100"),
            "{}",
            e.message()
        );
        assert_eq!(toml::to_string(&Doc { n: Bounded(5) }).unwrap(), "n = 5\n");
    }
}
