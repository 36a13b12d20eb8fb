//! One SDP line, kept byte-exact, and the small lexical helpers every typed view uses.
//!
//! A [`Line`] stores the text `x=value` exactly as received plus the line ending that
//! followed it (`\r\n`, a bare `\n`, or none for an unterminated last line), so an
//! unmodified description serialises back to the identical bytes (RFC 8866 §5 text
//! format). It does not interpret the value; typed views do that on demand.

use std::ops::Range;

use crate::error::RewriteError;

/// How a line was terminated in the received body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    /// `\r\n`, as RFC 8866 §5 requires.
    CrLf,
    /// A bare `\n`, which RFC 8866 §5 asks parsers to tolerate.
    Lf,
    /// No terminator: the last line of a body without a final newline.
    None,
}

impl LineEnding {
    /// The bytes of this terminator.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            LineEnding::CrLf => b"\r\n",
            LineEnding::Lf => b"\n",
            LineEnding::None => b"",
        }
    }
}

/// One `x=value` line, stored byte-exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The whole line without its terminator; always starts with a letter and `=`.
    text: Vec<u8>,
    ending: LineEnding,
}

impl Line {
    pub(crate) fn new(text: Vec<u8>, ending: LineEnding) -> Self {
        Self { text, ending }
    }

    /// The type letter (`v`, `o`, `m`, `a` ...).
    pub fn kind(&self) -> char {
        self.text.first().map_or('\0', |b| char::from(*b))
    }

    /// The value after `x=`, as received.
    pub fn value(&self) -> &[u8] {
        self.text.get(2..).unwrap_or_default()
    }

    /// The value after `x=` if it is valid UTF-8 (free-text lines such as `s=` may use
    /// another charset, RFC 8866 §6.10).
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(self.value()).ok()
    }

    /// The whole line, `x=value`, without its terminator.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }

    /// The terminator this line had (or was given when it was inserted).
    pub fn ending(&self) -> LineEnding {
        self.ending
    }

    pub(crate) fn set_ending(&mut self, ending: LineEnding) {
        self.ending = ending;
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.text);
        out.extend_from_slice(self.ending.as_bytes());
    }

    pub(crate) fn encoded_len(&self) -> usize {
        self.text.len().saturating_add(self.ending.as_bytes().len())
    }

    /// Replaces the bytes `range` of the value (offsets relative to the value) and keeps
    /// everything else, including the terminator. Out-of-range spans are ignored rather
    /// than panicking; callers compute spans from this very value.
    pub(crate) fn splice_value(&mut self, range: Range<usize>, replacement: &str) {
        let start = range.start.saturating_add(2);
        let end = range.end.saturating_add(2);
        if start <= end && end <= self.text.len() {
            self.text.splice(start..end, replacement.bytes());
        }
    }

    /// Replaces the whole text (`x=value`), keeping the terminator.
    pub(crate) fn set_text(&mut self, text: Vec<u8>) {
        self.text = text;
    }
}

/// Splits a value into fields separated by runs of spaces or tabs, yielding each field
/// with its byte range. RFC 8866 says one space; real devices sometimes send two or a
/// trailing space, and tolerating that costs nothing.
pub(crate) fn fields(value: &str) -> impl Iterator<Item = (Range<usize>, &str)> + '_ {
    let bytes = value.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        while bytes.get(pos).is_some_and(|b| is_field_separator(*b)) {
            pos += 1;
        }
        let start = pos;
        while bytes.get(pos).is_some_and(|b| !is_field_separator(*b)) {
            pos += 1;
        }
        if start == pos {
            return None;
        }
        value.get(start..pos).map(|s| (start..pos, s))
    })
}

fn is_field_separator(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Parses a string of ASCII decimal digits. Unlike `str::parse`, a leading `+` is
/// rejected: SDP numbers are bare digits.
pub(crate) fn parse_decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// RFC 8866 §9 `token-char`: what attribute names and many fields are made of.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`{|}~".contains(&b)
}

/// Checks a value that will become one space-separated field (an address, an addrtype,
/// a proto): non-empty, no whitespace, no `/` (which would start a TTL suffix) and no
/// control characters.
pub(crate) fn check_field(field: &'static str, value: &str) -> Result<(), RewriteError> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| (b.is_ascii_graphic() && b != b'/') || b >= 0x80);
    if ok {
        Ok(())
    } else {
        Err(RewriteError::InvalidValue {
            field,
            value: value.to_owned(),
            reason: "must be non-empty, without whitespace, `/` or control characters",
        })
    }
}

/// Checks a free-form value that will end a line (an attribute value): it must not
/// contain CR, LF or NUL, which would split the line or are forbidden (RFC 8866 §5).
pub(crate) fn check_text(field: &'static str, value: &str) -> Result<(), RewriteError> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        Err(RewriteError::InvalidValue {
            field,
            value: value.to_owned(),
            reason: "must not contain CR, LF or NUL",
        })
    } else {
        Ok(())
    }
}

/// Checks an attribute name handed to a rewriter (RFC 8866 §5.13: a token).
pub(crate) fn check_attribute_name(name: &str) -> Result<(), RewriteError> {
    if !name.is_empty() && name.bytes().all(is_token_char) {
        Ok(())
    } else {
        Err(RewriteError::InvalidValue {
            field: "attribute name",
            value: name.to_owned(),
            reason: "must be a non-empty token (letters, digits and !#$%&'*+-.^_`{|}~)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_on_runs_of_blanks_and_report_ranges() {
        let got: Vec<_> = fields(" IN  IP4\t1.2.3.4 ").collect();
        assert_eq!(got, vec![(1..3, "IN"), (5..8, "IP4"), (9..16, "1.2.3.4")]);
        assert_eq!(fields("").count(), 0);
        assert_eq!(fields("   ").count(), 0);
    }

    #[test]
    fn decimal_rejects_sign_and_empty() {
        assert_eq!(parse_decimal::<u16>("8000"), Some(8000));
        assert_eq!(parse_decimal::<u16>("+80"), None);
        assert_eq!(parse_decimal::<u16>(""), None);
        assert_eq!(parse_decimal::<u16>("65536"), None);
        assert_eq!(parse_decimal::<u64>("18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn line_accessors_and_splice() {
        let mut line = Line::new(b"c=IN IP4 10.0.0.1".to_vec(), LineEnding::CrLf);
        assert_eq!(line.kind(), 'c');
        assert_eq!(line.value(), b"IN IP4 10.0.0.1");
        line.splice_value(7..15, "192.0.2.7");
        let mut out = Vec::new();
        line.write_to(&mut out);
        assert_eq!(out, b"c=IN IP4 192.0.2.7\r\n");
        assert_eq!(line.encoded_len(), 20);
        // A span beyond the value is ignored, not a panic.
        line.splice_value(5..500, "x");
        assert_eq!(line.as_bytes(), b"c=IN IP4 192.0.2.7");
    }

    #[test]
    fn rewrite_value_checks() {
        assert!(check_field("address", "2001:db8::1").is_ok());
        assert!(check_field("address", "").is_err());
        assert!(check_field("address", "1.2.3.4 x").is_err());
        assert!(check_field("address", "224.0.0.1/3").is_err());
        assert!(check_text("value", "a b;c=d").is_ok());
        assert!(check_text("value", "a\r\nb=x").is_err());
        assert!(check_attribute_name("ice-ufrag").is_ok());
        assert!(check_attribute_name("bad name").is_err());
        assert!(check_attribute_name("").is_err());
    }
}
