//! The `m=` media line (RFC 8866 §5.14): a typed, borrowed view, the media type and
//! transport protocol helpers, and the field spans the rewriters use.
//!
//! `m=<media> <port>[/<number of ports>] <proto> <fmt> ...`. A port of 0 marks a
//! disabled or rejected stream (RFC 3264 §6). Formats are kept as text: they are RTP
//! payload type numbers only when the proto is RTP-based (`RTP/AVP`, `RTP/SAVPF`,
//! `TCP/RTP/AVP` ...); for `udptl` (T.38, ITU-T T.38 Annex D) they are names such as
//! `t38`. It does not check that the formats fit the proto.

use std::ops::Range;

use crate::error::ValueError;
use crate::line::{fields, parse_decimal};

/// A parsed `m=` line, borrowing from the description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine<'a> {
    /// The media type text (`audio`, `video`, `application`, `image`, `text` ...).
    pub media: &'a str,
    /// The transport port; 0 means the stream is disabled.
    pub port: u16,
    /// The `/<number of ports>` suffix, if present.
    pub port_count: Option<u16>,
    /// The transport protocol (`RTP/AVP`, `RTP/AVPF`, `RTP/SAVP`, `udptl` ...).
    pub proto: &'a str,
    /// The media formats, in order.
    pub formats: Vec<&'a str>,
}

/// The media type of an `m=` line, with the registered values named (RFC 8866 §5.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType<'a> {
    /// `audio`
    Audio,
    /// `video`
    Video,
    /// `text` (RFC 4103 real-time text)
    Text,
    /// `application` (ONVIF metadata, BFCP, data channels ...)
    Application,
    /// `message` (MSRP)
    Message,
    /// `image` (T.38 fax)
    Image,
    /// Anything else, as written.
    Other(&'a str),
}

impl<'a> MediaType<'a> {
    /// Classifies a media type text; comparison ignores ASCII case.
    pub fn from_text(text: &'a str) -> Self {
        const NAMED: [(&str, MediaType<'static>); 6] = [
            ("audio", MediaType::Audio),
            ("video", MediaType::Video),
            ("text", MediaType::Text),
            ("application", MediaType::Application),
            ("message", MediaType::Message),
            ("image", MediaType::Image),
        ];
        NAMED
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map_or(MediaType::Other(text), |(_, kind)| *kind)
    }
}

/// Whether a proto carries RTP: any `/`-separated component is `RTP` (so `RTP/AVP`,
/// `RTP/SAVPF`, `TCP/RTP/AVP` and `UDP/TLS/RTP/SAVPF` all count). Only then are the
/// formats RTP payload type numbers (RFC 8866 §5.14).
pub(crate) fn is_rtp_proto(proto: &str) -> bool {
    proto
        .split('/')
        .any(|part| part.eq_ignore_ascii_case("RTP"))
}

/// Whether a proto is T.38 over UDPTL (`udptl`, also `UDPTL` and `TCP/UDPTL` variants
/// seen in the wild).
#[cfg(test)]
fn is_udptl_proto(proto: &str) -> bool {
    proto
        .split('/')
        .any(|part| part.eq_ignore_ascii_case("udptl"))
}

/// Byte ranges of the fields inside the value, for in-place rewrites.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MediaSpans {
    pub(crate) media: Range<usize>,
    /// The port number without any `/count` suffix.
    pub(crate) port: Range<usize>,
    pub(crate) proto: Range<usize>,
    /// From the first format to the end of the last one (empty if there are none).
    pub(crate) formats: Range<usize>,
}

impl<'a> MediaLine<'a> {
    /// Parses the value of an `m=` line (the text after `m=`).
    pub fn parse(value: &'a str) -> Result<Self, ValueError> {
        parse_with_spans(value).map(|(m, _)| m)
    }
}

pub(crate) fn parse_with_spans(value: &str) -> Result<(MediaLine<'_>, MediaSpans), ValueError> {
    let mut it = fields(value);
    let (media_span, media) = it
        .next()
        .ok_or(ValueError::new(value.len(), "missing media type"))?;
    let (port_span, port_field) = it
        .next()
        .ok_or(ValueError::new(value.len(), "missing port"))?;
    let (proto_span, proto) = it.next().ok_or(ValueError::new(
        value.len(),
        "missing proto (e.g. `RTP/AVP`)",
    ))?;
    let mut formats = Vec::new();
    let mut formats_span = proto_span.end..proto_span.end;
    for (i, (span, format)) in it.enumerate() {
        if i == 0 {
            formats_span.start = span.start;
        }
        formats_span.end = span.end;
        formats.push(format);
    }
    let (port_text, count_text) = match port_field.split_once('/') {
        Some((port, count)) => (port, Some(count)),
        None => (port_field, None),
    };
    let port = parse_decimal(port_text).ok_or(ValueError::new(
        port_span.start,
        "port must be a decimal number from 0 to 65535",
    ))?;
    let count_at = port_span.start + port_text.len() + 1;
    let port_count = count_text
        .map(|c| {
            parse_decimal(c).ok_or(ValueError::new(
                count_at,
                "number of ports must be a decimal number from 0 to 65535",
            ))
        })
        .transpose()?;
    let bare_port = port_span.start..port_span.start + port_text.len();
    Ok((
        MediaLine {
            media,
            port,
            port_count,
            proto,
            formats,
        },
        MediaSpans {
            media: media_span,
            port: bare_port,
            proto: proto_span,
            formats: formats_span,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rtp_line() {
        let m = MediaLine::parse("audio 49170 RTP/AVP 0 8 101").unwrap();
        assert_eq!(
            m,
            MediaLine {
                media: "audio",
                port: 49170,
                port_count: None,
                proto: "RTP/AVP",
                formats: vec!["0", "8", "101"],
            }
        );
    }

    #[test]
    fn parses_port_count_t38_and_no_formats() {
        let m = MediaLine::parse("video 49170/2 RTP/AVP 31").unwrap();
        assert_eq!((m.port, m.port_count), (49170, Some(2)));
        let m = MediaLine::parse("image 6000 udptl t38").unwrap();
        assert_eq!(
            (m.media, m.proto, m.formats),
            ("image", "udptl", vec!["t38"])
        );
        let m = MediaLine::parse("application 9 TCP/DTLS/SCTP").unwrap();
        assert!(m.formats.is_empty());
    }

    #[test]
    fn spans() {
        let v = "video 49170/2 RTP/AVP 31 32";
        let (_, s) = parse_with_spans(v).unwrap();
        assert_eq!(&v[s.media], "video");
        assert_eq!(&v[s.port], "49170");
        assert_eq!(&v[s.proto], "RTP/AVP");
        assert_eq!(&v[s.formats], "31 32");
        let v = "application 9 TCP/DTLS/SCTP";
        let (_, s) = parse_with_spans(v).unwrap();
        assert_eq!(s.formats, v.len()..v.len());
    }

    #[test]
    fn media_type_and_proto_helpers() {
        assert_eq!(MediaType::from_text("audio"), MediaType::Audio);
        assert_eq!(MediaType::from_text("IMAGE"), MediaType::Image);
        assert_eq!(MediaType::from_text("data"), MediaType::Other("data"));
        for proto in [
            "RTP/AVP",
            "RTP/AVPF",
            "RTP/SAVP",
            "TCP/RTP/AVP",
            "UDP/TLS/RTP/SAVPF",
        ] {
            assert!(is_rtp_proto(proto), "{proto}");
        }
        assert!(!is_rtp_proto("udptl"));
        assert!(is_udptl_proto("udptl"));
        assert!(is_udptl_proto("UDPTL"));
        assert!(!is_udptl_proto("RTP/AVP"));
    }

    #[test]
    fn errors_carry_offsets() {
        assert_eq!(
            MediaLine::parse("audio 70000 RTP/AVP 0"),
            Err(ValueError::new(
                6,
                "port must be a decimal number from 0 to 65535"
            ))
        );
        assert_eq!(
            MediaLine::parse("audio 7000/x RTP/AVP 0")
                .unwrap_err()
                .offset,
            11
        );
        assert_eq!(
            MediaLine::parse("audio 7000"),
            Err(ValueError::new(10, "missing proto (e.g. `RTP/AVP`)"))
        );
        assert_eq!(MediaLine::parse("").unwrap_err().offset, 0);
    }
}
