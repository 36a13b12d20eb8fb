//! The `o=` origin line (RFC 8866 §5.2): a typed, borrowed view and the field spans the
//! rewriters use.
//!
//! `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`.
//! The sess-version is read as a `u64`, because proxies compare and bump it (RFC 3264
//! §8, and RFC 2326 caches use it to notice a changed presentation). The sess-id is
//! kept as text: RFC 8866 only calls it a numeric string, and some servers emit more
//! digits than 64 bits hold. It does not check that the address is a valid IP address.

use std::ops::Range;

use crate::error::ValueError;
use crate::line::{fields, parse_decimal};

/// A parsed `o=` line, borrowing from the description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The user's login on the originating host, or `-`.
    pub username: &'a str,
    /// The session id (a numeric string, not limited to 64 bits).
    pub session_id: &'a str,
    /// The session version, incremented on each modification.
    pub session_version: u64,
    /// Network type, `IN` in practice.
    pub nettype: &'a str,
    /// Address type, `IP4` or `IP6`.
    pub addrtype: &'a str,
    /// The originating host's address or name.
    pub address: &'a str,
}

/// Byte ranges of the six fields inside the value, for in-place rewrites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OriginSpans {
    pub(crate) version: Range<usize>,
    pub(crate) addrtype: Range<usize>,
    pub(crate) address: Range<usize>,
}

impl<'a> Origin<'a> {
    /// Parses the value of an `o=` line (the text after `o=`).
    pub fn parse(value: &'a str) -> Result<Self, ValueError> {
        parse_with_spans(value).map(|(origin, _)| origin)
    }
}

pub(crate) fn parse_with_spans(value: &str) -> Result<(Origin<'_>, OriginSpans), ValueError> {
    let mut it = fields(value);
    let mut next = |what: &'static str| it.next().ok_or(ValueError::new(value.len(), what));
    let (_, username) = next("missing username (use `-` for none)")?;
    let (_, session_id) = next("missing sess-id")?;
    let (version_span, version_text) = next("missing sess-version")?;
    let (_, nettype) = next("missing nettype (`IN`)")?;
    let (addrtype_span, addrtype) = next("missing addrtype (`IP4` or `IP6`)")?;
    let (address_span, address) = next("missing unicast-address")?;
    if let Some((extra, _)) = it.next() {
        return Err(ValueError::new(
            extra.start,
            "unexpected extra field after unicast-address",
        ));
    }
    let session_version = parse_decimal(version_text).ok_or(ValueError::new(
        version_span.start,
        "sess-version must be a decimal number below 2^64",
    ))?;
    Ok((
        Origin {
            username,
            session_id,
            session_version,
            nettype,
            addrtype,
            address,
        },
        OriginSpans {
            version: version_span,
            addrtype: addrtype_span,
            address: address_span,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_fields() {
        let o = Origin::parse("- 1188340656180883 1 IN IP4 127.0.0.1").unwrap();
        assert_eq!(
            o,
            Origin {
                username: "-",
                session_id: "1188340656180883",
                session_version: 1,
                nettype: "IN",
                addrtype: "IP4",
                address: "127.0.0.1",
            }
        );
    }

    #[test]
    fn spans_point_at_fields() {
        let v = "alice 2890844526 2890844527 IN IP6 2001:db8::5";
        let (_, spans) = parse_with_spans(v).unwrap();
        assert_eq!(&v[spans.version], "2890844527");
        assert_eq!(&v[spans.addrtype], "IP6");
        assert_eq!(&v[spans.address], "2001:db8::5");
    }

    #[test]
    fn long_session_id_is_kept_as_text() {
        let o = Origin::parse("- 123456789012345678901234567890 7 IN IP4 h.example").unwrap();
        assert_eq!(o.session_id, "123456789012345678901234567890");
        assert_eq!(o.session_version, 7);
    }

    #[test]
    fn errors_carry_offsets() {
        assert_eq!(
            Origin::parse("- 1 x1 IN IP4 1.2.3.4"),
            Err(ValueError::new(
                4,
                "sess-version must be a decimal number below 2^64"
            ))
        );
        assert_eq!(
            Origin::parse("- 1 18446744073709551616 IN IP4 1.2.3.4")
                .unwrap_err()
                .offset,
            4
        );
        assert_eq!(
            Origin::parse("- 1 1 IN IP4"),
            Err(ValueError::new(12, "missing unicast-address"))
        );
        assert_eq!(
            Origin::parse("- 1 1 IN IP4 1.2.3.4 extra"),
            Err(ValueError::new(
                21,
                "unexpected extra field after unicast-address"
            ))
        );
    }
}
