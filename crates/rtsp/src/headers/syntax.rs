//! Lexing helpers shared by the typed headers: offset-carrying slices, list and
//! parameter splitting that respects quoted strings (and comments where asked), and
//! overflow-checked number parsing.
//!
//! What it does not: know any header's grammar; each header module decides what the
//! pieces mean. Every helper is total: it works on byte positions of ASCII delimiters
//! only, so slicing never lands inside a UTF-8 sequence, and it never panics.
//!
//! The lexical rules follow RFC 2326 §15.1 / RFC 7826 §20.1 (token, quoted-string,
//! quoted-pair, LWS), relaxed to allow LWS around `;`, `=` and `,` because real peers
//! send it.

use crate::header_map::HeaderError;

/// Longest header value any typed header accepts. Real values are far shorter (the
/// longest common one, RTP-Info for a dozen streams, is well under 2 KiB); the cap keeps a
/// hostile peer from making us allocate per-item structures for megabytes of text.
pub const MAX_VALUE_LEN: usize = 16 * 1024;
/// Most items accepted in one comma-separated header list.
pub(crate) const MAX_LIST_ITEMS: usize = 64;
/// Most `;` parameters accepted on one list item.
pub(crate) const MAX_PARAMS: usize = 64;
/// Deepest nesting of `( ... )` comments (Via); HTTP allows nesting, nobody needs much.
const MAX_COMMENT_DEPTH: usize = 8;

/// A piece of a header value together with its byte offset in the whole value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span<'a> {
    pub text: &'a str,
    pub offset: usize,
}

/// Linear whitespace as peers actually send it within one (unfolded) header line.
pub(crate) fn is_lws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

impl<'a> Span<'a> {
    pub(crate) fn new(text: &'a str, offset: usize) -> Self {
        Self { text, offset }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Offset just past the end of this span.
    pub(crate) fn end(&self) -> usize {
        self.offset.saturating_add(self.text.len())
    }

    /// Removes LWS on both sides, keeping the offset pointing at the first kept byte.
    pub(crate) fn trim(self) -> Self {
        let start = self.text.len() - self.text.trim_start_matches([' ', '\t']).len();
        let rest = self.text.get(start..).unwrap_or("");
        Self {
            text: rest.trim_end_matches([' ', '\t']),
            offset: self.offset.saturating_add(start),
        }
    }

    /// Sub-span of bytes `start..end`; `None` if out of range or not on a char boundary.
    pub(crate) fn slice(self, start: usize, end: usize) -> Option<Self> {
        let text = self.text.get(start..end)?;
        Some(Self {
            text,
            offset: self.offset.saturating_add(start),
        })
    }

    /// Sub-span from byte `start` to the end.
    pub(crate) fn from(self, start: usize) -> Option<Self> {
        self.slice(start, self.text.len())
    }

    /// Splits around the first occurrence of the ASCII byte `sep` (not quote-aware);
    /// the separator belongs to neither half.
    pub(crate) fn split_once(self, sep: u8) -> Option<(Self, Self)> {
        let i = self.text.bytes().position(|b| b == sep)?;
        Some((self.slice(0, i)?, self.from(i.checked_add(1)?)?))
    }

    /// Offset of the first byte of `self` that fails `ok`, if any.
    pub(crate) fn first_bad(&self, ok: impl Fn(u8) -> bool) -> Option<usize> {
        self.text
            .bytes()
            .position(|b| !ok(b))
            .map(|i| self.offset.saturating_add(i))
    }
}

/// Builds a [`HeaderError`]; a shorthand used by every header module.
pub(crate) fn err(header: &'static str, offset: usize, reason: impl Into<String>) -> HeaderError {
    HeaderError::new(header, offset, reason)
}

/// Entry point of every parser: enforces the length cap, rejects control characters (a
/// CR or LF smuggled into a value would let a peer inject headers once we re-serialise
/// it) and trims the value.
pub(crate) fn start<'a>(header: &'static str, value: &'a str) -> Result<Span<'a>, HeaderError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(err(
            header,
            MAX_VALUE_LEN,
            format!("value is longer than {MAX_VALUE_LEN} bytes"),
        ));
    }
    if let Some(i) = value
        .bytes()
        .position(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(err(header, i, "control character in header value"));
    }
    Ok(Span::new(value, 0).trim())
}

/// Like [`start`] but also rejects an empty value.
pub(crate) fn start_nonempty<'a>(
    header: &'static str,
    value: &'a str,
    what: &str,
) -> Result<Span<'a>, HeaderError> {
    let span = start(header, value)?;
    if span.is_empty() {
        return Err(err(
            header,
            span.offset,
            format!("empty value, expected {what}"),
        ));
    }
    Ok(span)
}

/// Which bracketing constructs protect separators from being split on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nesting {
    /// Only `"quoted strings"` (with `\` quoted-pairs).
    Quotes,
    /// Quoted strings and `( comments )` (nestable), as in Via.
    QuotesAndComments,
}

/// Splits `span` on the ASCII byte `sep` where it is not inside a quoted string (or a
/// comment, if asked), trims each piece and drops empty pieces (the `#rule` of RFC 2326
/// §15.1 allows them). Fails on an unterminated quote or comment, or when there are more
/// than `max` pieces.
pub(crate) fn split_list<'a>(
    header: &'static str,
    span: Span<'a>,
    sep: u8,
    max: usize,
    nesting: Nesting,
    what: &str,
) -> Result<Vec<Span<'a>>, HeaderError> {
    let mut items = Vec::new();
    let mut push = |piece: Span<'a>| -> Result<(), HeaderError> {
        let piece = piece.trim();
        if piece.is_empty() {
            return Ok(());
        }
        if items.len() >= max {
            return Err(err(
                header,
                piece.offset,
                format!("too many {what} (at most {max})"),
            ));
        }
        items.push(piece);
        Ok(())
    };
    let bytes = span.text.as_bytes();
    let mut piece_start = 0usize;
    let mut quote_start: Option<usize> = None;
    let mut comment_starts: Vec<usize> = Vec::new();
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        if quote_start.is_some() {
            match b {
                b'\\' => escaped = true,
                b'"' => quote_start = None,
                _ => {}
            }
            continue;
        }
        if !comment_starts.is_empty() {
            match b {
                b'\\' => escaped = true,
                b'(' => {
                    if comment_starts.len() >= MAX_COMMENT_DEPTH {
                        return Err(err(
                            header,
                            span.offset.saturating_add(i),
                            format!("comment nested more than {MAX_COMMENT_DEPTH} levels deep"),
                        ));
                    }
                    comment_starts.push(i);
                }
                b')' => {
                    comment_starts.pop();
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => quote_start = Some(i),
            b'(' if nesting == Nesting::QuotesAndComments => comment_starts.push(i),
            _ if b == sep => {
                if let Some(piece) = span.slice(piece_start, i) {
                    push(piece)?;
                }
                piece_start = i.saturating_add(1);
            }
            _ => {}
        }
    }
    if let Some(q) = quote_start {
        return Err(err(
            header,
            span.offset.saturating_add(q),
            "quoted string is not terminated (missing closing '\"')",
        ));
    }
    if let Some(&c) = comment_starts.first() {
        return Err(err(
            header,
            span.offset.saturating_add(c),
            "comment is not terminated (missing closing ')')",
        ));
    }
    if let Some(piece) = span.from(piece_start) {
        push(piece)?;
    }
    Ok(items)
}

/// Splits `name[=value]` at the first `=`, trimming both halves.
pub(crate) fn split_param(span: Span<'_>) -> (Span<'_>, Option<Span<'_>>) {
    match span.split_once(b'=') {
        Some((name, value)) => (name.trim(), Some(value.trim())),
        None => (span.trim(), None),
    }
}

/// RFC 2616 §2.2 token character.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic()
        && !matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b'@'
                | b','
                | b';'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'='
                | b'{'
                | b'}'
        )
}

/// Whether `s` is a non-empty RFC 2616 token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Checks that `span` is a token; the error points at the first offending byte.
pub(crate) fn expect_token<'a>(
    header: &'static str,
    span: Span<'a>,
    what: &str,
) -> Result<&'a str, HeaderError> {
    if span.is_empty() {
        return Err(err(header, span.offset, format!("missing {what}")));
    }
    if let Some(at) = span.first_bad(is_token_byte) {
        return Err(err(
            header,
            at,
            format!("invalid character in {what} (expected a token)"),
        ));
    }
    Ok(span.text)
}

/// Parses a run of decimal digits as `u64`, refusing signs, blanks and overflow.
pub(crate) fn parse_u64(
    header: &'static str,
    span: Span<'_>,
    what: &str,
) -> Result<u64, HeaderError> {
    if span.is_empty() {
        return Err(err(
            header,
            span.offset,
            format!("missing {what} (expected a decimal number)"),
        ));
    }
    let mut n: u64 = 0;
    for (i, b) in span.text.bytes().enumerate() {
        if !b.is_ascii_digit() {
            return Err(err(
                header,
                span.offset.saturating_add(i),
                format!("invalid {what}: expected decimal digits"),
            ));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| {
                err(
                    header,
                    span.offset,
                    format!("{what} is too large (at most {})", u64::MAX),
                )
            })?;
    }
    Ok(n)
}

/// Parses decimal digits into any unsigned type no wider than `u64`, with the range
/// check reported in the type's own terms.
pub(crate) fn parse_uint<T>(
    header: &'static str,
    span: Span<'_>,
    what: &str,
) -> Result<T, HeaderError>
where
    T: TryFrom<u64> + Bounded,
{
    let n = parse_u64(header, span, what)?;
    T::try_from(n).map_err(|_| {
        err(
            header,
            span.offset,
            format!("{what} {n} is out of range (at most {})", T::MAX_U64),
        )
    })
}

/// Largest value of an unsigned integer type, as `u64`, for error messages.
pub(crate) trait Bounded {
    const MAX_U64: u64;
}
impl Bounded for u8 {
    const MAX_U64: u64 = u8::MAX as u64;
}
impl Bounded for u16 {
    const MAX_U64: u64 = u16::MAX as u64;
}
impl Bounded for u32 {
    const MAX_U64: u64 = u32::MAX as u64;
}
impl Bounded for u64 {
    const MAX_U64: u64 = u64::MAX;
}

/// Parses 1 to 8 hexadecimal digits (an RTP SSRC). RFC 2326 asks for exactly 8, but
/// several servers drop leading zeros, so fewer are accepted; we always write 8.
pub(crate) fn parse_ssrc(header: &'static str, span: Span<'_>) -> Result<u32, HeaderError> {
    if span.is_empty() {
        return Err(err(
            header,
            span.offset,
            "missing ssrc (expected 8 hex digits)",
        ));
    }
    if let Some(at) = span.first_bad(|b| b.is_ascii_hexdigit()) {
        return Err(err(header, at, "invalid ssrc: expected hexadecimal digits"));
    }
    if span.text.len() > 8 {
        return Err(err(
            header,
            span.offset,
            "ssrc has more than 8 hex digits (it is a 32-bit value)",
        ));
    }
    u32::from_str_radix(span.text, 16).map_err(|_| {
        err(
            header,
            span.offset,
            "invalid ssrc: expected hexadecimal digits",
        )
    })
}

/// Decodes a `"quoted-string"` (RFC 2616 §2.2), resolving `\` quoted-pairs. The span
/// must start and end with the quotes.
pub(crate) fn unquote(header: &'static str, span: Span<'_>) -> Result<String, HeaderError> {
    let inner = span
        .text
        .strip_prefix('"')
        .ok_or_else(|| err(header, span.offset, "expected a quoted string"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => break,
            },
            '"' => {
                if i.saturating_add(1) != inner.len() {
                    return Err(err(
                        header,
                        span.offset.saturating_add(i).saturating_add(2),
                        "unexpected text after the closing quote",
                    ));
                }
                return Ok(out);
            }
            _ => out.push(c),
        }
    }
    Err(err(
        header,
        span.offset,
        "quoted string is not terminated (missing closing '\"')",
    ))
}

/// Encodes `s` as a quoted string, escaping `"` and `\`.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len().saturating_add(2));
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Text is either a quoted string (decoded) or taken as is: for parameters whose
/// grammar says token but which some peers quote anyway.
pub(crate) fn maybe_unquote(header: &'static str, span: Span<'_>) -> Result<String, HeaderError> {
    if span.text.starts_with('"') {
        unquote(header, span)
    } else {
        Ok(span.text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "Test";

    #[test]
    fn split_list_respects_quotes_and_reports_offsets() {
        let v = r#" a ; b="x;y" ;; c "#;
        let items = split_list(H, Span::new(v, 0), b';', 10, Nesting::Quotes, "params").unwrap();
        let got: Vec<_> = items.iter().map(|s| (s.text, s.offset)).collect();
        assert_eq!(got, [("a", 1), (r#"b="x;y""#, 5), ("c", 16)]);
    }

    #[test]
    fn split_list_errors() {
        let e = split_list(
            H,
            Span::new(r#"a,"b,c"#, 0),
            b',',
            10,
            Nesting::Quotes,
            "items",
        )
        .unwrap_err();
        assert_eq!(e.offset, 2);
        let e =
            split_list(H, Span::new("a,b,c", 0), b',', 2, Nesting::Quotes, "items").unwrap_err();
        assert_eq!(e.offset, 4);
        assert_eq!(e.reason, "too many items (at most 2)");
        let e = split_list(
            H,
            Span::new("a (x, (y)", 0),
            b',',
            9,
            Nesting::QuotesAndComments,
            "items",
        )
        .unwrap_err();
        assert_eq!(e.offset, 2);
    }

    #[test]
    fn comments_protect_separators() {
        let items = split_list(
            H,
            Span::new("a (x, (y, z)), b", 0),
            b',',
            9,
            Nesting::QuotesAndComments,
            "items",
        )
        .unwrap();
        let got: Vec<_> = items.iter().map(|s| s.text).collect();
        assert_eq!(got, ["a (x, (y, z))", "b"]);
    }

    #[test]
    fn numbers_are_overflow_checked() {
        assert_eq!(
            parse_u64(H, Span::new("18446744073709551615", 0), "n"),
            Ok(u64::MAX)
        );
        let e = parse_u64(H, Span::new("18446744073709551616", 3), "n").unwrap_err();
        assert_eq!(e.offset, 3);
        let e = parse_uint::<u16>(H, Span::new("65536", 0), "port").unwrap_err();
        assert_eq!(e.reason, "port 65536 is out of range (at most 65535)");
        let e = parse_u64(H, Span::new("12a", 10), "n").unwrap_err();
        assert_eq!(e.offset, 12);
    }

    #[test]
    fn quoting_round_trips() {
        let s = r#"a "b" \c"#;
        let q = quote(s);
        assert_eq!(q, r#""a \"b\" \\c""#);
        assert_eq!(unquote(H, Span::new(&q, 0)).unwrap(), s);
        assert_eq!(unquote(H, Span::new(r#""ab"c"#, 0)).unwrap_err().offset, 4);
        assert!(unquote(H, Span::new(r#""ab\"#, 0)).is_err());
    }

    #[test]
    fn start_rejects_control_characters() {
        assert_eq!(start(H, "a\r\nInjected: 1").unwrap_err().offset, 1);
        assert_eq!(start(H, "  x  ").unwrap(), Span::new("x", 2));
    }
}
