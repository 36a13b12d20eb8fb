//! IP networks in CIDR notation: `"10.0.0.0/8"`, `"2001:db8::/32"`, or one address.
//!
//! What it does: parses and prints an IPv4 or IPv6 network (RFC 4632 §3.1, RFC 4291
//! §2.3), refuses host bits set after the prefix (a common typo that would silently
//! widen or narrow an ACL), and tests membership. An IPv4 client seen through a
//! dual-stack socket as `::ffff:a.b.c.d` matches IPv4 networks.
//!
//! What it does not: host names, ranges (`a-b`) or netmask notation (`/255.0.0.0`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::value_error::{check_len, quoted, InvalidValue};

/// An IP network: an address whose bits after `prefix_len` are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

const FORM: &str =
    "write ADDRESS/PREFIX, for example \"10.0.0.0/8\" or \"2001:db8::/32\", or a single address";

fn v4_mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0)
}

fn v6_mask(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len.min(128)))
        .unwrap_or(0)
}

impl Cidr {
    /// The network `network/prefix_len`; refuses a prefix longer than the address and
    /// host bits set.
    pub fn new(network: IpAddr, prefix_len: u8) -> Result<Self, InvalidValue> {
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(InvalidValue::new(format!(
                "invalid network {network}/{prefix_len}: the prefix length is above {max}; {FORM}"
            )));
        }
        let masked = Self::mask(network, prefix_len);
        if masked != network {
            return Err(InvalidValue::new(format!(
                "invalid network {network}/{prefix_len}: bits are set after the /{prefix_len} prefix; did you mean \"{masked}/{prefix_len}\"?"
            )));
        }
        Ok(Self {
            network,
            prefix_len,
        })
    }

    /// The network containing exactly one address.
    pub fn host(addr: IpAddr) -> Self {
        Self {
            network: addr,
            prefix_len: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    /// Every IPv4 address, `0.0.0.0/0`.
    pub const fn any_ipv4() -> Self {
        Self {
            network: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix_len: 0,
        }
    }

    /// Every IPv6 address, `::/0`.
    pub const fn any_ipv6() -> Self {
        Self {
            network: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            prefix_len: 0,
        }
    }

    fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
        match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(prefix_len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & v6_mask(prefix_len))),
        }
    }

    /// The network address.
    pub const fn network(self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub const fn prefix_len(self) -> u8 {
        self.prefix_len
    }

    /// True when `addr` is in this network. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) are compared as the IPv4 address they carry, in both
    /// directions, because dual-stack sockets report IPv4 peers that way.
    pub fn contains(self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            IpAddr::V4(_) => addr,
        };
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                u32::from(a) & v4_mask(self.prefix_len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & v6_mask(self.prefix_len) == u128::from(net)
            }
            (IpAddr::V6(net), IpAddr::V4(a)) => {
                u128::from(a.to_ipv6_mapped()) & v6_mask(self.prefix_len) == u128::from(net)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "a network")?;
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            InvalidValue::new(format!(
                "invalid network {}: {} is not an IP address; {FORM}",
                quoted(s),
                quoted(addr_text)
            ))
        })?;
        match prefix_text {
            None => Ok(Self::host(addr)),
            Some(p) => {
                let prefix_len =
                    if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) {
                        p.parse::<u8>().ok()
                    } else {
                        None
                    };
                let Some(prefix_len) = prefix_len else {
                    return Err(InvalidValue::new(format!(
                        "invalid network {}: the prefix length {} is not a number of bits; {FORM}",
                        quoted(s),
                        quoted(p)
                    )));
                };
                Self::new(addr, prefix_len)
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

string_value_serde!(Cidr, "a network such as \"10.0.0.0/8\"");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn err(s: &str) -> String {
        s.parse::<Cidr>().unwrap_err().to_string()
    }

    #[test]
    fn parses_networks_and_single_addresses() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("::1/128").to_string(), "::1/128");
        assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(cidr("2001:db8::1").to_string(), "2001:db8::1/128");
        assert_eq!(cidr("0.0.0.0/0").prefix_len(), 0);
        assert_eq!(cidr("::/0").network(), ip("::"));
    }

    #[test]
    fn rejects_with_a_reason() {
        assert_eq!(
            err("10.0.0.1/8"),
            "invalid network 10.0.0.1/8: bits are set after the /8 prefix; did you mean \"10.0.0.0/8\"?"
        );
        assert!(err("10.0.0.0/33").contains("prefix length is above 32"));
        assert!(err("::/129").contains("prefix length is above 128"));
        assert!(err("10.0.0.0/").contains("is not a number of bits"));
        assert!(err("10.0.0.0/x").contains("\"x\" is not a number of bits"));
        assert!(err("10.0.0.0/0008").contains("is not a number of bits"));
        assert!(err("10.0.0/8").contains("\"10.0.0\" is not an IP address"));
        assert!(err("example.com/8").contains("is not an IP address"));
        assert!(err("").contains("is not an IP address"));
    }

    #[test]
    fn membership() {
        let net = cidr("10.0.0.0/8");
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(
            net.contains(ip("::ffff:10.1.2.3")),
            "mapped IPv4 must match"
        );
        assert!(!net.contains(ip("2001:db8::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!cidr("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(cidr("::ffff:0:0/96").contains(ip("192.0.2.1")));
        assert!(cidr("192.0.2.1").contains(ip("192.0.2.1")));
        assert!(!cidr("192.0.2.1").contains(ip("192.0.2.2")));
    }

    #[test]
    fn round_trips_pseudo_random_networks() {
        let mut rng = Rng::new(9);
        for _ in 0..10_000 {
            let len = u8::try_from(rng.below(129)).unwrap();
            let v6 = Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next()));
            let net = Cidr::new(Cidr::mask(IpAddr::V6(v6), len), len).unwrap();
            assert_eq!(net.to_string().parse::<Cidr>(), Ok(net));
            assert!(net.contains(IpAddr::V6(v6)));
            let len4 = len % 33;
            let v4 = Ipv4Addr::from(u32::try_from(rng.next() >> 32).unwrap());
            let net4 = Cidr::new(Cidr::mask(IpAddr::V4(v4), len4), len4).unwrap();
            assert_eq!(net4.to_string().parse::<Cidr>(), Ok(net4));
            assert!(net4.contains(IpAddr::V4(v4)));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text() {
        let mut rng = Rng::new(13);
        for _ in 0..20_000 {
            let _ = rng.string_from(b"0123456789abcdef:./", 24).parse::<Cidr>();
        }
    }
}
