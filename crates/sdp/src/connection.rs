//! The `c=` connection line (RFC 8866 §5.7): a typed, borrowed view and the field spans
//! the rewriters use.
//!
//! `c=<nettype> <addrtype> <connection-address>`, where a multicast IPv4 address may
//! carry `/<ttl>[/<number of addresses>]` and an IPv6 one `/<number of addresses>`.
//! Rewriters replace only the addrtype and the address before the first `/`, so a
//! TTL/count suffix survives. It does not validate the address itself (RFC 8866 also
//! allows host names).

use std::net::IpAddr;
use std::ops::Range;

use crate::error::ValueError;
use crate::line::{fields, parse_decimal};

/// A parsed `c=` line, borrowing from the description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection<'a> {
    /// Network type, `IN` in practice.
    pub nettype: &'a str,
    /// Address type, `IP4` or `IP6`.
    pub addrtype: &'a str,
    /// The address without any `/ttl/count` suffix.
    pub address: &'a str,
    /// Multicast TTL (only for `IP4`, and other non-IP6 address types).
    pub ttl: Option<u8>,
    /// Number of consecutive multicast addresses.
    pub count: Option<u32>,
}

impl Connection<'_> {
    /// The address as an IP address, if it is a literal one (not a host name) whose
    /// family matches the addrtype.
    pub fn ip(&self) -> Option<IpAddr> {
        let ip: IpAddr = self.address.parse().ok()?;
        let family_ok = match ip {
            IpAddr::V4(_) => self.addrtype.eq_ignore_ascii_case("IP4"),
            IpAddr::V6(_) => self.addrtype.eq_ignore_ascii_case("IP6"),
        };
        family_ok.then_some(ip)
    }
}

/// Byte ranges of the addrtype and the bare address inside the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectionSpans {
    pub(crate) addrtype: Range<usize>,
    pub(crate) address: Range<usize>,
}

impl<'a> Connection<'a> {
    /// Parses the value of a `c=` line (the text after `c=`).
    pub fn parse(value: &'a str) -> Result<Self, ValueError> {
        parse_with_spans(value).map(|(c, _)| c)
    }
}

pub(crate) fn parse_with_spans(
    value: &str,
) -> Result<(Connection<'_>, ConnectionSpans), ValueError> {
    let mut it = fields(value);
    let mut next = |what: &'static str| it.next().ok_or(ValueError::new(value.len(), what));
    let (_, nettype) = next("missing nettype (`IN`)")?;
    let (addrtype_span, addrtype) = next("missing addrtype (`IP4` or `IP6`)")?;
    let (address_span, address_field) = next("missing connection-address")?;
    if let Some((extra, _)) = it.next() {
        return Err(ValueError::new(
            extra.start,
            "unexpected extra field after connection-address",
        ));
    }
    let mut parts = address_field.split('/');
    let address = parts.next().unwrap_or_default();
    if address.is_empty() {
        return Err(ValueError::new(
            address_span.start,
            "empty connection-address",
        ));
    }
    let suffix_start = address_span.start + address.len() + 1;
    let first = parts.next();
    let second = parts.next();
    if parts.next().is_some() {
        return Err(ValueError::new(
            address_span.start,
            "connection-address has more than two `/` suffixes",
        ));
    }
    let number = |text: &str, at: usize| {
        parse_decimal::<u32>(text).ok_or(ValueError::new(
            at,
            "multicast TTL and address count must be decimal numbers",
        ))
    };
    let is_ip6 = addrtype.eq_ignore_ascii_case("IP6");
    let (ttl, count) = match (first, second) {
        (None, _) => (None, None),
        (Some(n), None) if is_ip6 => (None, Some(number(n, suffix_start)?)),
        (Some(_), Some(_)) if is_ip6 => {
            return Err(ValueError::new(
                suffix_start,
                "IP6 multicast addresses take no TTL, only `/<count>`",
            ))
        }
        (Some(t), c) => {
            let ttl = u8::try_from(number(t, suffix_start)?)
                .map_err(|_| ValueError::new(suffix_start, "multicast TTL must be 0 to 255"))?;
            let count_at = suffix_start + t.len() + 1;
            (Some(ttl), c.map(|c| number(c, count_at)).transpose()?)
        }
    };
    let bare = address_span.start..address_span.start + address.len();
    Ok((
        Connection {
            nettype,
            addrtype,
            address,
            ttl,
            count,
        },
        ConnectionSpans {
            addrtype: addrtype_span,
            address: bare,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicast_ip4() {
        let c = Connection::parse("IN IP4 192.0.2.10").unwrap();
        assert_eq!(
            c,
            Connection {
                nettype: "IN",
                addrtype: "IP4",
                address: "192.0.2.10",
                ttl: None,
                count: None,
            }
        );
        assert_eq!(c.ip(), Some("192.0.2.10".parse().unwrap()));
    }

    #[test]
    fn multicast_suffixes() {
        let c = Connection::parse("IN IP4 224.2.1.1/127/3").unwrap();
        assert_eq!(
            (c.address, c.ttl, c.count),
            ("224.2.1.1", Some(127), Some(3))
        );
        let c = Connection::parse("IN IP4 224.2.1.1/16").unwrap();
        assert_eq!((c.ttl, c.count), (Some(16), None));
        let c = Connection::parse("IN IP6 FF15::101/3").unwrap();
        assert_eq!((c.address, c.ttl, c.count), ("FF15::101", None, Some(3)));
        assert_eq!(c.ip(), Some("ff15::101".parse().unwrap()));
    }

    #[test]
    fn ip_requires_matching_family() {
        assert_eq!(Connection::parse("IN IP6 10.0.0.1").unwrap().ip(), None);
        assert_eq!(Connection::parse("IN IP4 host.example").unwrap().ip(), None);
    }

    #[test]
    fn spans_cover_bare_address() {
        let v = "IN IP4 224.2.1.1/127/3";
        let (_, spans) = parse_with_spans(v).unwrap();
        assert_eq!(&v[spans.addrtype], "IP4");
        assert_eq!(&v[spans.address], "224.2.1.1");
    }

    #[test]
    fn errors_carry_offsets() {
        assert_eq!(
            Connection::parse("IN IP4 224.2.1.1/300"),
            Err(ValueError::new(17, "multicast TTL must be 0 to 255"))
        );
        assert_eq!(
            Connection::parse("IN IP4 224.2.1.1/1/x"),
            Err(ValueError::new(
                19,
                "multicast TTL and address count must be decimal numbers"
            ))
        );
        assert_eq!(
            Connection::parse("IN IP6 ff15::1/1/2").unwrap_err().offset,
            15
        );
        assert_eq!(Connection::parse("IN IP4 /5").unwrap_err().offset, 7);
        assert_eq!(
            Connection::parse("IN IP4"),
            Err(ValueError::new(6, "missing connection-address"))
        );
        assert_eq!(Connection::parse("IN IP4 a b").unwrap_err().offset, 9);
        assert_eq!(Connection::parse("IN IP4 a/1/2/3").unwrap_err().offset, 7);
    }
}
