//! Splitting an SDP body into lines and sections (RFC 8866 §5), with hard limits.
//!
//! The body is taken whole: SDP has no framing of its own, so its container (RTSP or
//! SIP `Content-Length`) says where it ends, and the RTSP parser delivers it complete.
//! There is thus no `Incomplete` state; any prefix of a body is itself either a valid
//! shorter description or an error.
//!
//! Accepted: CRLF or bare LF line endings (mixed too), a missing final newline, and
//! blank lines at the very end (kept byte-exact). Rejected, with the byte offset and
//! line number: a first line other than `v=0`, any line not of the form `x=...` with a
//! lowercase letter, NUL bytes, lone CRs, blank lines in the middle, malformed `o=`
//! (session level), `c=` and `m=` lines, and anything beyond [`Limits`]. Other lines,
//! including unknown types and attributes and non-UTF-8 free text, are kept as is and
//! not interpreted here. Line order beyond `v=` first is not enforced: real servers
//! do not always follow it, and a proxy must pass their descriptions on.

use crate::error::{ParseError, ParseErrorKind, ValueError};
use crate::line::{Line, LineEnding};
use crate::media::MediaDescription;
use crate::section::Section;
use crate::session::SessionDescription;
use crate::{connection, origin};

/// Hard caps applied while parsing, so hostile input cannot make the parser allocate
/// or work without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body accepted, in bytes.
    pub max_body_len: usize,
    /// Longest line accepted, in bytes, without its terminator.
    pub max_line_len: usize,
    /// Most lines accepted (blank trailing lines not counted).
    pub max_lines: usize,
    /// Most `m=` sections accepted.
    pub max_media: usize,
}

impl Default for Limits {
    /// 64 KiB, 8 KiB lines, 4096 lines, 256 media sections: far above what cameras,
    /// media servers and SIP endpoints send (a few KiB, a dozen sections).
    fn default() -> Self {
        Self {
            max_body_len: 64 * 1024,
            max_line_len: 8 * 1024,
            max_lines: 4096,
            max_media: 256,
        }
    }
}

pub(crate) fn parse_description(
    body: &[u8],
    limits: &Limits,
) -> Result<SessionDescription, ParseError> {
    let fail = |offset: usize, kind: ParseErrorKind| error_at(body, offset, kind);
    if body.len() > limits.max_body_len {
        return Err(fail(
            limits.max_body_len,
            ParseErrorKind::TooLarge {
                limit: limits.max_body_len,
            },
        ));
    }
    let mut session = Section::new(LineEnding::CrLf);
    let mut media: Vec<MediaDescription> = Vec::new();
    let mut trailer = Vec::new();
    let mut style = None;
    let mut line_count = 0usize;
    let mut pos = 0usize;
    while let Some(rest) = body.get(pos..).filter(|r| !r.is_empty()) {
        let (content_len, ending, advance) = match rest.iter().position(|b| *b == b'\n') {
            Some(nl) if nl > 0 && rest.get(nl - 1) == Some(&b'\r') => {
                (nl - 1, LineEnding::CrLf, nl + 1)
            }
            Some(nl) => (nl, LineEnding::Lf, nl + 1),
            None => (rest.len(), LineEnding::None, rest.len()),
        };
        let content = rest.get(..content_len).unwrap_or_default();
        if content_len > limits.max_line_len {
            return Err(fail(
                pos + limits.max_line_len,
                ParseErrorKind::LineTooLong {
                    limit: limits.max_line_len,
                },
            ));
        }
        if let Some(i) = content.iter().position(|b| *b == 0 || *b == b'\r') {
            let kind = if content.get(i) == Some(&0) {
                ParseErrorKind::NulByte
            } else {
                ParseErrorKind::BareCarriageReturn
            };
            return Err(fail(pos + i, kind));
        }
        if content.is_empty() {
            if is_blank_tail(rest) {
                trailer = rest.to_vec();
                break;
            }
            return Err(fail(pos, ParseErrorKind::BlankLine));
        }
        if line_count >= limits.max_lines {
            return Err(fail(
                pos,
                ParseErrorKind::TooManyLines {
                    limit: limits.max_lines,
                },
            ));
        }
        let kind = match content {
            [kind, b'=', ..] if kind.is_ascii_lowercase() => char::from(*kind),
            _ => return Err(fail(pos, ParseErrorKind::NotTypeValue)),
        };
        let value_at = pos + 2;
        let value = content.get(2..).unwrap_or_default();
        if line_count == 0 {
            if kind != 'v' {
                return Err(fail(pos, ParseErrorKind::MissingVersion));
            }
            if value != b"0" {
                return Err(fail(value_at, ParseErrorKind::UnsupportedVersion));
            }
        }
        line_count += 1;
        if ending != LineEnding::None && style.is_none() {
            style = Some(ending);
        }
        let line = Line::new(content.to_vec(), ending);
        let malformed = |e: ValueError| {
            fail(
                value_at + e.offset,
                ParseErrorKind::Malformed {
                    line_type: kind,
                    reason: e.reason,
                },
            )
        };
        match kind {
            'm' => {
                if media.len() >= limits.max_media {
                    return Err(fail(
                        pos,
                        ParseErrorKind::TooManyMedia {
                            limit: limits.max_media,
                        },
                    ));
                }
                utf8_value(value, kind).map_err(|(at, k)| fail(value_at + at, k))?;
                let section =
                    MediaDescription::from_m_line(line, LineEnding::CrLf).map_err(malformed)?;
                media.push(section);
            }
            _ => {
                let session_level = media.is_empty();
                if is_structured(kind, session_level) {
                    let text = utf8_value(value, kind).map_err(|(at, k)| fail(value_at + at, k))?;
                    validate_structured(kind, text).map_err(malformed)?;
                }
                match media.last_mut() {
                    Some(m) => m.section_mut().lines.push(line),
                    None => session.lines.push(line),
                }
            }
        }
        pos += advance;
    }
    if line_count == 0 {
        return Err(fail(0, ParseErrorKind::Empty));
    }
    let style = style.unwrap_or(LineEnding::CrLf);
    session.style = style;
    for m in &mut media {
        m.section_mut().style = style;
    }
    Ok(SessionDescription::from_parts(session, media, trailer))
}

/// Lines besides `m=` whose fields are validated while parsing, so their typed views
/// and rewriters can rely on them: the session's `o=` and every `c=`.
fn is_structured(kind: char, session_level: bool) -> bool {
    kind == 'c' || (kind == 'o' && session_level)
}

fn validate_structured(kind: char, value: &str) -> Result<(), ValueError> {
    match kind {
        'o' => origin::parse_with_spans(value).map(|_| ()),
        'c' => connection::parse_with_spans(value).map(|_| ()),
        _ => Ok(()),
    }
}

fn utf8_value(value: &[u8], kind: char) -> Result<&str, (usize, ParseErrorKind)> {
    std::str::from_utf8(value)
        .map_err(|e| (e.valid_up_to(), ParseErrorKind::NotUtf8 { line_type: kind }))
}

/// Whether `rest` is nothing but empty lines (`\n` or `\r\n`).
fn is_blank_tail(mut rest: &[u8]) -> bool {
    loop {
        rest = match rest {
            [] => return true,
            [b'\n', tail @ ..] | [b'\r', b'\n', tail @ ..] => tail,
            _ => return false,
        };
    }
}

fn error_at(body: &[u8], offset: usize, kind: ParseErrorKind) -> ParseError {
    let before = body.get(..offset).unwrap_or(body);
    let line = 1 + before.iter().filter(|b| **b == b'\n').count();
    ParseError { offset, line, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &[u8]) -> Result<SessionDescription, ParseError> {
        parse_description(body, &Limits::default())
    }

    fn err(body: &[u8]) -> (usize, usize, ParseErrorKind) {
        let e = parse(body).unwrap_err();
        (e.offset, e.line, e.kind)
    }

    #[test]
    fn splits_sections_and_keeps_bytes() {
        let body = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n\
                     a=sendrecv\r\nm=video 0 RTP/AVP 96\r\nx=unknown line\r\n";
        let sdp = parse(body).unwrap();
        assert_eq!(sdp.session_lines().len(), 4);
        assert_eq!(sdp.media().len(), 2);
        assert_eq!(sdp.media()[1].lines().len(), 2);
        assert_eq!(sdp.to_vec(), body.to_vec());
    }

    #[test]
    fn tolerates_lf_missing_final_newline_and_trailing_blank_lines() {
        for body in [
            &b"v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0"[..],
            b"v=0\r\ns=-\nt=0 0\r\n",
            b"v=0\r\ns=-\r\n\r\n\r\n",
            b"v=0\ns=-\n\n",
            b"v=0",
        ] {
            assert_eq!(parse(body).unwrap().to_vec(), body.to_vec());
        }
    }

    #[test]
    fn error_offsets_and_lines() {
        assert_eq!(err(b""), (0, 1, ParseErrorKind::Empty));
        assert_eq!(err(b"\r\n\r\n"), (0, 1, ParseErrorKind::Empty));
        assert_eq!(err(b"s=x\r\n"), (0, 1, ParseErrorKind::MissingVersion));
        assert_eq!(err(b"v=1\r\n"), (2, 1, ParseErrorKind::UnsupportedVersion));
        assert_eq!(
            err(b"v=0\r\ns=-\r\nhello\r\n"),
            (10, 3, ParseErrorKind::NotTypeValue)
        );
        assert_eq!(err(b"v=0\r\nS=-\r\n"), (5, 2, ParseErrorKind::NotTypeValue));
        assert_eq!(err(b"v=0\r\n=x\r\n"), (5, 2, ParseErrorKind::NotTypeValue));
        assert_eq!(
            err(b"v=0\r\n\r\ns=-\r\n"),
            (5, 2, ParseErrorKind::BlankLine)
        );
        assert_eq!(
            err(b"v=0\r\ns=a\rb\r\n"),
            (8, 2, ParseErrorKind::BareCarriageReturn)
        );
        assert_eq!(err(b"v=0\r\ns=a\0\r\n"), (8, 2, ParseErrorKind::NulByte));
        assert_eq!(
            err(b"v=0\ns=-\r"),
            (7, 2, ParseErrorKind::BareCarriageReturn)
        );
        assert_eq!(
            err(b"v=0\r\ns=-\r\nm=audio 99999 RTP/AVP 0\r\n"),
            (
                18,
                3,
                ParseErrorKind::Malformed {
                    line_type: 'm',
                    reason: "port must be a decimal number from 0 to 65535",
                }
            )
        );
        assert_eq!(
            err(b"v=0\no=- 1 x IN IP4 h\n"),
            (
                10,
                2,
                ParseErrorKind::Malformed {
                    line_type: 'o',
                    reason: "sess-version must be a decimal number below 2^64",
                }
            )
        );
        assert_eq!(
            err(b"v=0\nm=audio 1 RTP/AVP 0\nc=IN IP4 224.0.0.1/999\n"),
            (
                43,
                3,
                ParseErrorKind::Malformed {
                    line_type: 'c',
                    reason: "multicast TTL must be 0 to 255",
                }
            )
        );
        assert_eq!(
            err(b"v=0\nc=IN IP4 \xff\n"),
            (13, 2, ParseErrorKind::NotUtf8 { line_type: 'c' })
        );
    }

    #[test]
    fn origin_in_media_section_and_non_utf8_free_text_are_kept_raw() {
        let body = b"v=0\r\ns=Cam\xe9ra\r\nm=audio 0 RTP/AVP 0\r\no=not an origin\r\n";
        let sdp = parse(body).unwrap();
        assert_eq!(sdp.to_vec(), body.to_vec());
        assert_eq!(sdp.session_name(), Some(&b"Cam\xe9ra"[..]));
    }

    #[test]
    fn limits_are_enforced_with_offsets() {
        let limits = Limits {
            max_body_len: 40,
            max_line_len: 10,
            max_lines: 3,
            max_media: 1,
        };
        let p = |b: &[u8]| parse_description(b, &limits).unwrap_err();
        let e = p(&[b'x'; 41]);
        assert_eq!(
            (e.offset, e.kind),
            (40, ParseErrorKind::TooLarge { limit: 40 })
        );
        let e = p(b"v=0\ns=0123456789\n");
        assert_eq!((e.offset, e.line), (14, 2));
        assert_eq!(e.kind, ParseErrorKind::LineTooLong { limit: 10 });
        let e = p(b"v=0\ns=-\nt=0 0\nb=x\n");
        assert_eq!((e.offset, e.line), (14, 4));
        assert_eq!(e.kind, ParseErrorKind::TooManyLines { limit: 3 });
        let e = p(b"v=0\nm=a 0 R 0\nm=b 0 R 0");
        assert_eq!((e.offset, e.line), (14, 3));
        assert_eq!(e.kind, ParseErrorKind::TooManyMedia { limit: 1 });
        // Exactly at the limits is fine.
        assert!(parse_description(b"v=0\ns=01234567\nm=a 0 R 0", &limits).is_ok());
    }
}
