//! Generic `a=` attributes (RFC 8866 §5.13) and the direction attributes (§6.7).
//!
//! An [`Attribute`] is a borrowed view of one `a=<name>[:<value>]` line. Names are
//! matched ignoring ASCII case and trailing blanks, because devices differ in both and
//! a proxy gains nothing from being strict here; values are given exactly as received.
//! Typed views of particular attributes live in `rtp_attributes` and `range`.

use std::fmt;

use crate::line::Line;

/// One `a=` line seen as a name and an optional value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    name: &'a str,
    value: Option<&'a [u8]>,
}

impl<'a> Attribute<'a> {
    /// Views an `a=` line as an attribute. `None` for other line types, and for a name
    /// that is not UTF-8 (no registered attribute has such a name).
    pub fn from_line(line: &'a Line) -> Option<Self> {
        if line.kind() != 'a' {
            return None;
        }
        let value = line.value();
        let (name, rest) = match value.iter().position(|b| *b == b':') {
            Some(colon) => (
                value.get(..colon).unwrap_or_default(),
                value.get(colon.saturating_add(1)..),
            ),
            None => (value, None),
        };
        let name = std::str::from_utf8(name)
            .ok()?
            .trim_end_matches([' ', '\t']);
        Some(Self { name, value: rest })
    }

    /// The attribute name, without trailing blanks.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Whether this attribute has the given name (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The value after the first `:`, if there is one and it is UTF-8.
    pub fn value(&self) -> Option<&'a str> {
        self.value.and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The value after the first `:` as raw bytes (`None` for a flag attribute).
    pub fn value_bytes(&self) -> Option<&'a [u8]> {
        self.value
    }
}

/// Attribute names that carry ICE state (RFC 8839 §5): what to remove when a relay
/// takes over the media path and hides the endpoints' own candidates.
pub const ICE_ATTRIBUTES: [&str; 8] = [
    "candidate",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "end-of-candidates",
    "remote-candidates",
    "ice-lite",
    "ice-mismatch",
];

/// The media direction attributes of RFC 8866 §6.7 (RFC 3264 §5.1 offer/answer use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendrecv`, the default when none is given.
    SendRecv,
    /// `a=sendonly`
    SendOnly,
    /// `a=recvonly`
    RecvOnly,
    /// `a=inactive`
    Inactive,
}

impl Direction {
    /// All four, in RFC order.
    pub const ALL: [Direction; 4] = [
        Direction::SendRecv,
        Direction::SendOnly,
        Direction::RecvOnly,
        Direction::Inactive,
    ];

    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an attribute name stands for (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(name))
    }

    /// The direction as seen from the other side: sendonly and recvonly swap (what an
    /// answerer mirrors, RFC 3264 §6.1).
    pub fn reversed(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::LineEnding;

    fn line(text: &[u8]) -> Line {
        Line::new(text.to_vec(), LineEnding::CrLf)
    }

    #[test]
    fn name_and_value() {
        let l = line(b"a=rtpmap:96 H264/90000");
        let a = Attribute::from_line(&l).unwrap();
        assert_eq!(a.name(), "rtpmap");
        assert_eq!(a.value(), Some("96 H264/90000"));
        assert!(a.is("RTPMAP"));
    }

    #[test]
    fn flag_attribute_with_trailing_blank() {
        let l = line(b"a=recvonly ");
        let a = Attribute::from_line(&l).unwrap();
        assert_eq!((a.name(), a.value()), ("recvonly", None));
    }

    #[test]
    fn value_keeps_later_colons_and_raw_bytes() {
        let l = line(b"a=control:rtsp://h:554/s");
        assert_eq!(
            Attribute::from_line(&l).unwrap().value(),
            Some("rtsp://h:554/s")
        );
        let l = line(b"a=tool:\xe9t\xe9");
        let a = Attribute::from_line(&l).unwrap();
        assert_eq!(a.value(), None);
        assert_eq!(a.value_bytes(), Some(&b"\xe9t\xe9"[..]));
        let l = line(b"a=empty:");
        assert_eq!(Attribute::from_line(&l).unwrap().value(), Some(""));
    }

    #[test]
    fn other_lines_are_not_attributes() {
        assert_eq!(Attribute::from_line(&line(b"b=AS:64")), None);
        assert_eq!(Attribute::from_line(&line(b"a=\xff:x")), None);
    }

    #[test]
    fn directions() {
        assert_eq!(Direction::from_name("SendOnly"), Some(Direction::SendOnly));
        assert_eq!(Direction::from_name("rtcp-mux"), None);
        assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
        assert_eq!(Direction::Inactive.reversed(), Direction::Inactive);
        assert_eq!(Direction::RecvOnly.to_string(), "recvonly");
    }
}
