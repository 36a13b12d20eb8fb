//! Sizes written the way people say them: `"2GiB"`, `"500MiB"`, `"1GB"`, `"4096B"`.
//!
//! What it does: parses one `<integer><unit>` term, units `B`, binary `KiB` `MiB` `GiB`
//! `TiB` (powers of 1024) and decimal `kB` `MB` `GB` `TB` (powers of 1000), and also
//! a bare TOML integer meaning bytes. Printing gives the largest binary unit that
//! divides the value exactly (else bytes), so a value read and written back is the same
//! number of bytes.
//!
//! What it does not: fractions (`"1.5GiB"`; write `"1536MiB"`), sums of terms, bits,
//! or a unit-less *string* (`"1000"` is refused, because a reader cannot tell whether
//! it was meant in bytes or in the unit of some other tool).

use std::fmt;
use std::str::FromStr;

use super::value_error::{check_len, quoted, InvalidValue};

/// A number of bytes, written with a unit in the config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// Units accepted, matched exactly: case tells bytes from bits (`Gb`), so a unit in
/// another case is refused rather than guessed.
const UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KiB", KIB),
    ("MiB", MIB),
    ("GiB", GIB),
    ("TiB", TIB),
    ("kB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// Units used when printing, largest first.
const PRINT_UNITS: [(&str, u64); 4] = [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)];

const FORM: &str = "write a whole number followed by a unit (B, KiB, MiB, GiB, TiB, kB, MB, GB or TB), for example \"2GiB\" or \"500MiB\"";

impl ByteSize {
    /// `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    /// `mib` mebibytes (saturating).
    pub const fn from_mib(mib: u64) -> Self {
        Self(mib.saturating_mul(MIB))
    }

    /// `gib` gibibytes (saturating).
    pub const fn from_gib(gib: u64) -> Self {
        Self(gib.saturating_mul(GIB))
    }

    /// The value in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "a size")?;
        let bad =
            |why: &str| InvalidValue::new(format!("invalid size {}: {why}; {FORM}", quoted(s)));
        let text = s.trim();
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(digits_end);
        if digits.is_empty() {
            return Err(bad(if text.is_empty() {
                "it is empty"
            } else {
                "expected a whole number first"
            }));
        }
        let unit = unit.trim_start();
        if unit.is_empty() {
            return Err(bad("the unit is missing"));
        }
        let Some((_, factor)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(bad(&format!("unknown unit {unit:?}")));
        };
        let too_large = || bad("it is too large");
        let count: u64 = digits.parse().map_err(|_| too_large())?;
        count.checked_mul(*factor).map(Self).ok_or_else(too_large)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, factor) in PRINT_UNITS {
            if self.0 >= factor && self.0 % factor == 0 {
                return write!(f, "{}{name}", self.0 / factor);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl serde::de::Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"2GiB\", or a whole number of bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("a size cannot be negative ({v}); {FORM}")))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_to_bytes() {
        for (text, bytes) in [
            ("4096B", 4096),
            ("1KiB", 1024),
            ("500MiB", 500 * MIB),
            ("2GiB", 2 * GIB),
            ("1TiB", TIB),
            ("3kB", 3_000),
            ("1MB", 1_000_000),
            ("10GB", 10_000_000_000),
            ("2 GiB", 2 * GIB),
            ("0B", 0),
        ] {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
    }

    #[test]
    fn printing_is_exact_and_reads_back() {
        for (bytes, text) in [
            (GIB, "1GiB"),
            (1536 * MIB, "1536MiB"),
            (1_000_000, "1000000B"),
            (0, "0B"),
            (3 * KIB, "3KiB"),
        ] {
            let size = ByteSize(bytes);
            assert_eq!(size.to_string(), text);
            assert_eq!(text.parse::<ByteSize>(), Ok(size));
        }
    }

    #[test]
    fn bad_sizes_say_what_to_write() {
        for (text, says) in [
            ("", "it is empty"),
            ("GiB", "expected a whole number first"),
            ("1000", "the unit is missing"),
            ("1.5GiB", "unknown unit \".5GiB\""),
            ("2Gb", "unknown unit \"Gb\""),
            ("2gib", "unknown unit"),
            ("-1GiB", "expected a whole number first"),
            ("99999999999TiB", "it is too large"),
            ("2GiB extra", "unknown unit"),
        ] {
            let err = text.parse::<ByteSize>().expect_err(text).to_string();
            assert!(err.contains(says), "{text}: {err}");
            assert!(err.contains("for example \"2GiB\""), "{text}: {err}");
        }
    }
}
