//! UDP/TCP port ranges: `"30000-40000"` (inclusive) or a single port `"554"`.
//!
//! What it does: [`PortRange`] parses and prints an inclusive range of ports 1-65535
//! with low <= high; [`PortPairRange`] adds the RTP rule that media ports come in pairs,
//! RTP on an even port and RTCP on the next odd one (RFC 3550 §11), so its low end must be
//! even and it must hold at least one pair. What it does not: allocate ports (the engines
//! do, with quarantine) or check that the ports are free.

use std::fmt;
use std::str::FromStr;

use super::value_error::{check_len, quoted, InvalidValue};

/// An inclusive range of ports, `low..=high`, both in 1-65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    low: u16,
    high: u16,
}

const FORM: &str = "write LOW-HIGH with ports from 1 to 65535, for example \"30000-40000\"";

impl PortRange {
    /// The range `low..=high`; refuses port 0 and `low > high`.
    pub fn new(low: u16, high: u16) -> Result<Self, InvalidValue> {
        if low == 0 {
            return Err(InvalidValue::new(format!(
                "invalid port range {low}-{high}: port 0 is not a port; {FORM}"
            )));
        }
        if low > high {
            return Err(InvalidValue::new(format!(
                "invalid port range {low}-{high}: the low end {low} is above the high end {high}; {FORM}"
            )));
        }
        Ok(Self { low, high })
    }

    /// Lowest port in the range.
    pub const fn low(self) -> u16 {
        self.low
    }

    /// Highest port in the range.
    pub const fn high(self) -> u16 {
        self.high
    }

    /// Number of ports in the range (at least 1).
    pub fn port_count(self) -> u32 {
        u32::from(self.high) - u32::from(self.low) + 1
    }

    /// True when `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }

    /// True when the two ranges share at least one port.
    pub fn overlaps(self, other: PortRange) -> bool {
        self.low <= other.high && other.low <= self.high
    }
}

impl FromStr for PortRange {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "a port range")?;
        let port = |part: &str| -> Result<u16, InvalidValue> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidValue::new(format!(
                    "invalid port range {}: {:?} is not a port number; {FORM}",
                    quoted(s),
                    part
                )));
            }
            part.parse::<u16>().map_err(|_| {
                InvalidValue::new(format!(
                    "invalid port range {}: {part} is above 65535; {FORM}",
                    quoted(s)
                ))
            })
        };
        match s.split_once('-') {
            Some((low, high)) => Self::new(port(low)?, port(high)?),
            None => {
                let single = port(s)?;
                Self::new(single, single)
            }
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

string_value_serde!(PortRange, "a port range such as \"30000-40000\"");

/// A port range for RTP/RTCP pairs: even low end, at least one (even, odd) pair. When
/// the high end is even, that last port is never used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortPairRange(PortRange);

impl PortPairRange {
    /// Checks the pair rules on a port range.
    pub fn new(range: PortRange) -> Result<Self, InvalidValue> {
        if range.low % 2 != 0 {
            return Err(InvalidValue::new(format!(
                "invalid RTP port range {range}: the low end must be even because RTP uses an even port and RTCP the next one; try \"{}-{}\"",
                range.low.saturating_sub(1).max(2),
                range.high
            )));
        }
        if range.port_count() < 2 {
            return Err(InvalidValue::new(format!(
                "invalid RTP port range {range}: it must hold at least one RTP/RTCP pair (two ports), for example \"{}-{}\"",
                range.low,
                range.low.saturating_add(1)
            )));
        }
        Ok(Self(range))
    }

    /// The underlying port range.
    pub const fn range(self) -> PortRange {
        self.0
    }

    /// Number of complete (RTP, RTCP) pairs the range holds.
    pub fn pairs(self) -> u32 {
        self.0.port_count() / 2
    }
}

impl FromStr for PortPairRange {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        Self::new(s.parse()?)
    }
}

impl fmt::Display for PortPairRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_value_serde!(PortPairRange, "an RTP port range such as \"30000-39999\"");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    fn range(s: &str) -> Result<(u16, u16), String> {
        s.parse::<PortRange>()
            .map(|r| (r.low(), r.high()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_ranges_and_single_ports() {
        assert_eq!(range("30000-40000"), Ok((30000, 40000)));
        assert_eq!(range("554"), Ok((554, 554)));
        assert_eq!(range("1-65535"), Ok((1, 65535)));
        assert_eq!(
            "30000-40000".parse::<PortRange>().unwrap().port_count(),
            10001
        );
    }

    #[test]
    fn rejects_with_a_reason() {
        assert_eq!(
            range("40000-30000"),
            Err(format!(
                "invalid port range 40000-30000: the low end 40000 is above the high end 30000; {FORM}"
            ))
        );
        assert!(range("0-10").unwrap_err().contains("port 0"));
        assert!(range("1-70000")
            .unwrap_err()
            .contains("70000 is above 65535"));
        assert!(range("a-b")
            .unwrap_err()
            .contains("\"a\" is not a port number"));
        assert!(range("").unwrap_err().contains("\"\" is not a port number"));
        assert!(range("1 - 2").unwrap_err().contains("is not a port number"));
        assert!(range("1-2-3")
            .unwrap_err()
            .contains("\"2-3\" is not a port number"));
        assert!(range("+1-2").unwrap_err().contains("not a port number"));
    }

    #[test]
    fn pair_ranges_need_an_even_start_and_a_pair() {
        let pairs = "30000-39999".parse::<PortPairRange>().unwrap();
        assert_eq!(pairs.pairs(), 5000);
        assert_eq!("30000-30002".parse::<PortPairRange>().unwrap().pairs(), 1);
        let odd = "30001-40000"
            .parse::<PortPairRange>()
            .unwrap_err()
            .to_string();
        assert_eq!(
            odd,
            "invalid RTP port range 30001-40000: the low end must be even because RTP uses an even port and RTCP the next one; try \"30000-40000\""
        );
        let single = "30000".parse::<PortPairRange>().unwrap_err().to_string();
        assert!(single.contains("at least one RTP/RTCP pair"), "{single}");
    }

    #[test]
    fn overlap_and_contains() {
        let a = PortRange::new(10, 20).unwrap();
        assert!(a.contains(10) && a.contains(20) && !a.contains(21) && !a.contains(9));
        assert!(a.overlaps(PortRange::new(20, 30).unwrap()));
        assert!(a.overlaps(PortRange::new(1, 10).unwrap()));
        assert!(a.overlaps(PortRange::new(12, 13).unwrap()));
        assert!(!a.overlaps(PortRange::new(21, 30).unwrap()));
        assert!(!a.overlaps(PortRange::new(1, 9).unwrap()));
    }

    #[test]
    fn round_trips_pseudo_random_ranges() {
        let mut rng = Rng::new(3);
        for _ in 0..10_000 {
            let a = u16::try_from(rng.below(65535) + 1).unwrap();
            let b = u16::try_from(rng.below(65535) + 1).unwrap();
            let r = PortRange::new(a.min(b), a.max(b)).unwrap();
            assert_eq!(r.to_string().parse::<PortRange>(), Ok(r));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text() {
        let mut rng = Rng::new(5);
        for _ in 0..20_000 {
            let s = rng.string_from(b"0123456789-6 x", 14);
            let _ = s.parse::<PortRange>();
            let _ = s.parse::<PortPairRange>();
        }
    }
}
