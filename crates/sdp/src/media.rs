//! One media section (RFC 8866 §5.14): the `m=` line and every line up to the next
//! `m=`, kept byte-exact, with typed accessors and in-place rewriters.
//!
//! Rewriters change only the line they name (the port digits of `m=`, the address of
//! `c=`, one attribute line) and keep every other byte. Typed attribute views are
//! parsed on access; a malformed attribute is skipped by the single-value accessors
//! (`rtpmap(pt)`, `rtcp()` ...) and reported by the iterators that return `Result`.
//! It does not know session-level context; [`crate::SessionDescription`] combines the
//! two levels (effective direction, connection, control URL).

use crate::attribute::{Attribute, Direction, ICE_ATTRIBUTES};
use crate::connection::Connection;
use crate::error::{RewriteError, ValueError};
use crate::line::{check_field, parse_decimal, Line, LineEnding};
use crate::media_line::{self, is_rtp_proto, MediaLine, MediaSpans, MediaType};
use crate::range::Range;
use crate::rtp_attributes::{Fmtp, Rtcp, Rtpmap};
use crate::section::Section;

/// Line types that follow `c=` inside a media section (RFC 8866 §5: m, i, c, b, k, a).
const AFTER_MEDIA_CONNECTION: [char; 3] = ['b', 'k', 'a'];

/// One `m=` section of a [`crate::SessionDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `lines[0]` is the `m=` line, validated at construction.
    section: Section,
    spans: MediaSpans,
    port: u16,
    port_count: Option<u16>,
}

impl MediaDescription {
    /// Starts a section from its `m=` line; the error offset is inside the value.
    pub(crate) fn from_m_line(line: Line, style: LineEnding) -> Result<Self, ValueError> {
        let value = line
            .value_str()
            .ok_or(ValueError::new(0, "m= line is not valid UTF-8"))?;
        let (m, spans) = media_line::parse_with_spans(value)?;
        let (port, port_count) = (m.port, m.port_count);
        let mut section = Section::new(style);
        section.lines.push(line);
        Ok(Self {
            section,
            spans,
            port,
            port_count,
        })
    }

    pub(crate) fn section(&self) -> &Section {
        &self.section
    }

    pub(crate) fn section_mut(&mut self) -> &mut Section {
        &mut self.section
    }

    /// All lines of the section, the `m=` line first.
    pub fn lines(&self) -> &[Line] {
        &self.section.lines
    }

    fn m_value(&self) -> &str {
        self.section
            .lines
            .first()
            .and_then(Line::value_str)
            .unwrap_or_default()
    }

    fn m_field(&self, span: &std::ops::Range<usize>) -> &str {
        self.m_value().get(span.clone()).unwrap_or_default()
    }

    /// The whole `m=` line as a typed view.
    pub fn media_line(&self) -> MediaLine<'_> {
        MediaLine {
            media: self.media_type(),
            port: self.port,
            port_count: self.port_count,
            proto: self.proto(),
            formats: self.formats().collect(),
        }
    }

    /// The media type text (`audio`, `video`, `image` ...).
    pub fn media_type(&self) -> &str {
        self.m_field(&self.spans.media)
    }

    /// The media type, classified.
    pub fn kind(&self) -> MediaType<'_> {
        MediaType::from_text(self.media_type())
    }

    /// The transport port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `/<number of ports>` suffix of the port, if any.
    pub fn port_count(&self) -> Option<u16> {
        self.port_count
    }

    /// Whether the stream is disabled or rejected: port 0 (RFC 3264 §5.1, §6).
    pub fn is_disabled(&self) -> bool {
        self.port == 0
    }

    /// The transport protocol (`RTP/AVP`, `udptl` ...).
    pub fn proto(&self) -> &str {
        self.m_field(&self.spans.proto)
    }

    /// Whether the proto carries RTP, so formats are payload type numbers.
    pub fn is_rtp(&self) -> bool {
        is_rtp_proto(self.proto())
    }

    /// The formats of the `m=` line, in order.
    pub fn formats(&self) -> impl Iterator<Item = &str> {
        self.m_field(&self.spans.formats)
            .split([' ', '\t'])
            .filter(|f| !f.is_empty())
    }

    /// The formats that are RTP payload type numbers (0 to 127), in order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats()
            .filter_map(|f| parse_decimal::<u8>(f).filter(|pt| *pt <= 127))
    }

    /// Sets the port, keeping any `/<number of ports>` suffix and every other byte.
    pub fn set_port(&mut self, port: u16) {
        let span = self.spans.port.clone();
        if let Some(line) = self.section.lines.first_mut() {
            line.splice_value(span, &port.to_string());
        }
        self.refresh_m_line();
    }

    /// Replaces the proto (`RTP/AVP` to `RTP/SAVP`, for example).
    pub fn set_proto(&mut self, proto: &str) -> Result<(), RewriteError> {
        // Unlike addresses, a proto legitimately contains `/`; only blanks and control
        // characters would break the line.
        if proto.is_empty() || !proto.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RewriteError::InvalidValue {
                field: "proto",
                value: proto.to_owned(),
                reason: "must be non-empty printable ASCII without blanks (e.g. `RTP/SAVP`)",
            });
        }
        let span = self.spans.proto.clone();
        if let Some(line) = self.section.lines.first_mut() {
            line.splice_value(span, proto);
        }
        self.refresh_m_line();
        Ok(())
    }

    /// Recomputes spans after an edit of the `m=` line. The edits only substitute
    /// validated tokens, so the line still parses; if it somehow did not, the old
    /// spans are kept and accessors fall back to empty text rather than panicking.
    fn refresh_m_line(&mut self) {
        let parsed = media_line::parse_with_spans(self.m_value())
            .map(|(m, spans)| (m.port, m.port_count, spans));
        if let Ok((port, port_count, spans)) = parsed {
            self.port = port;
            self.port_count = port_count;
            self.spans = spans;
        }
    }

    /// The media-level `c=` line, if any.
    pub fn connection(&self) -> Option<Connection<'_>> {
        self.section.connection()
    }

    /// Sets the media-level connection address: rewrites the addrtype and address of
    /// the `c=` line (keeping `/ttl/count`), or inserts `c=IN <addrtype> <address>`
    /// after the `m=` and `i=` lines when there is none.
    pub fn set_connection_address(
        &mut self,
        addrtype: &str,
        address: &str,
    ) -> Result<(), RewriteError> {
        self.section
            .set_connection_address(addrtype, address, &AFTER_MEDIA_CONNECTION)
    }

    /// The media-level attributes, in order.
    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'_>> {
        self.section.attributes()
    }

    /// The first attribute with this name (ASCII case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<Attribute<'_>> {
        self.section.attribute(name)
    }

    /// The value of the first attribute with this name, if it has a UTF-8 value.
    pub fn attribute_value(&self, name: &str) -> Option<&str> {
        self.section.attribute_value(name)
    }

    /// Whether an attribute with this name is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.section.has_attribute(name)
    }

    /// Appends `a=<name>[:<value>]` at the end of the section.
    pub fn add_attribute(&mut self, name: &str, value: Option<&str>) -> Result<(), RewriteError> {
        self.section.add_attribute(name, value)
    }

    /// Replaces the first attribute with this name (removing later duplicates), or
    /// appends it when absent.
    pub fn set_attribute(&mut self, name: &str, value: Option<&str>) -> Result<(), RewriteError> {
        self.section.set_attribute(name, value)
    }

    /// Removes every attribute with this name; returns how many lines were removed.
    pub fn remove_attributes(&mut self, name: &str) -> usize {
        self.section.remove_attributes(name)
    }

    /// Removes the ICE attributes ([`ICE_ATTRIBUTES`]); returns how many lines went.
    pub fn remove_ice_attributes(&mut self) -> usize {
        self.section
            .remove_attributes_where(|a| ICE_ATTRIBUTES.iter().any(|n| a.is(n)))
    }

    /// The `a=control:` value (RFC 2326 §C.1.1), blanks trimmed.
    pub fn control(&self) -> Option<&str> {
        self.attribute_value("control").map(str::trim)
    }

    /// Sets `a=control:` (an edge rewriting control URLs to point at itself).
    pub fn set_control(&mut self, control: &str) -> Result<(), RewriteError> {
        self.set_attribute("control", Some(control))
    }

    /// The media-level `a=range:`, if any.
    pub fn range(&self) -> Option<Range<'_>> {
        self.attribute_value("range").map(Range::new)
    }

    /// The media-level direction attribute, if any (not the effective direction; see
    /// [`crate::SessionDescription::effective_direction`]).
    pub fn direction(&self) -> Option<Direction> {
        self.section.direction()
    }

    /// Writes the direction attribute in place of the first existing one (removing
    /// contradictory extra ones), or appends it.
    pub fn set_direction(&mut self, direction: Direction) {
        self.section.set_direction(direction);
    }

    /// Every `a=rtpmap:` in order, each parsed or with its error.
    pub fn rtpmaps(&self) -> impl Iterator<Item = Result<Rtpmap<'_>, ValueError>> {
        self.values_of("rtpmap").map(Rtpmap::parse)
    }

    /// The `a=rtpmap:` for a payload type; malformed ones are skipped.
    pub fn rtpmap(&self, payload_type: u8) -> Option<Rtpmap<'_>> {
        self.rtpmaps()
            .flatten()
            .find(|r| r.payload_type == payload_type)
    }

    /// Every `a=fmtp:` in order, each parsed or with its error.
    pub fn fmtps(&self) -> impl Iterator<Item = Result<Fmtp<'_>, ValueError>> {
        self.values_of("fmtp").map(Fmtp::parse)
    }

    /// The `a=fmtp:` for a format (`"96"`, `"t38"` ...); malformed ones are skipped.
    pub fn fmtp(&self, format: &str) -> Option<Fmtp<'_>> {
        self.fmtps().flatten().find(|f| f.format == format)
    }

    /// The `a=rtcp:` attribute (RFC 3605), if present and well formed.
    pub fn rtcp(&self) -> Option<Rtcp<'_>> {
        self.attribute_value("rtcp")
            .and_then(|v| Rtcp::parse(v).ok())
    }

    /// Writes `a=rtcp:` in place of the existing one, or appends it.
    pub fn set_rtcp(&mut self, rtcp: &Rtcp<'_>) -> Result<(), RewriteError> {
        if let Some(a) = &rtcp.address {
            check_field("nettype", a.nettype)?;
            check_field("addrtype", a.addrtype)?;
            check_field("address", a.address)?;
        }
        self.set_attribute("rtcp", Some(&rtcp.to_string()))
    }

    /// Whether `a=rtcp-mux` (RFC 5761) is present.
    pub fn is_rtcp_mux(&self) -> bool {
        self.has_attribute("rtcp-mux")
    }

    fn values_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes()
            .filter(move |a| a.is(name))
            .filter_map(|a| a.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp_attributes::NetAddress;

    fn media(lines: &[&str]) -> MediaDescription {
        let mut it = lines.iter();
        let first = it.next().unwrap();
        let mut m = MediaDescription::from_m_line(
            Line::new(first.as_bytes().to_vec(), LineEnding::CrLf),
            LineEnding::CrLf,
        )
        .unwrap();
        for l in it {
            m.section
                .lines
                .push(Line::new(l.as_bytes().to_vec(), LineEnding::CrLf));
        }
        m
    }

    fn text(m: &MediaDescription) -> String {
        let mut out = Vec::new();
        m.section.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn typed_accessors() {
        let m = media(&[
            "m=audio 7078/2 RTP/AVP 96 0 101",
            "a=rtpmap:96 opus/48000/2",
            "a=fmtp:96 useinbandfec=1",
            "a=rtpmap:101 telephone-event/8000",
            "a=rtpmap:bad",
            "a=rtcp:7079 IN IP4 192.0.2.1",
            "a=rtcp-mux",
            "a=sendonly",
        ]);
        assert_eq!(m.kind(), MediaType::Audio);
        assert_eq!((m.port(), m.port_count()), (7078, Some(2)));
        assert_eq!(m.payload_types().collect::<Vec<_>>(), vec![96, 0, 101]);
        assert_eq!(m.rtpmap(101).unwrap().encoding, "telephone-event");
        assert_eq!(m.rtpmap(0), None);
        assert_eq!(m.rtpmaps().filter(Result::is_err).count(), 1);
        assert_eq!(m.fmtp("96").unwrap().param("useinbandfec"), Some("1"));
        assert_eq!(m.rtcp().unwrap().port, 7079);
        assert!(m.is_rtcp_mux());
        assert_eq!(m.direction(), Some(Direction::SendOnly));
        assert_eq!(
            m.media_line(),
            MediaLine {
                media: "audio",
                port: 7078,
                port_count: Some(2),
                proto: "RTP/AVP",
                formats: vec!["96", "0", "101"],
            }
        );
    }

    #[test]
    fn set_port_keeps_count_and_spacing() {
        let mut m = media(&["m=video  49170/2 RTP/AVP 31", "a=x"]);
        m.set_port(0);
        assert!(m.is_disabled());
        assert_eq!(text(&m), "m=video  0/2 RTP/AVP 31\r\na=x\r\n");
        m.set_port(65535);
        assert_eq!(m.port(), 65535);
        assert_eq!(m.proto(), "RTP/AVP");
        assert_eq!(text(&m), "m=video  65535/2 RTP/AVP 31\r\na=x\r\n");
    }

    #[test]
    fn set_proto() {
        let mut m = media(&["m=audio 9 RTP/AVP 0"]);
        m.set_proto("UDP/TLS/RTP/SAVPF").unwrap();
        assert_eq!(text(&m), "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n");
        assert!(m.set_proto("RTP/AVP 8").is_err());
        assert!(m.set_proto("").is_err());
        assert_eq!(m.formats().collect::<Vec<_>>(), vec!["0"]);
    }

    #[test]
    fn connection_insert_and_rewrite() {
        let mut m = media(&["m=audio 9 RTP/AVP 0", "i=voice", "b=AS:64", "a=x"]);
        m.set_connection_address("IP4", "203.0.113.9").unwrap();
        assert_eq!(
            text(&m),
            "m=audio 9 RTP/AVP 0\r\ni=voice\r\nc=IN IP4 203.0.113.9\r\nb=AS:64\r\na=x\r\n"
        );
        m.set_connection_address("IP6", "2001:db8::9").unwrap();
        assert_eq!(m.connection().unwrap().address, "2001:db8::9");
        let mut m = media(&["m=audio 9 RTP/AVP 0", "c=IN IP4 224.2.1.1/127"]);
        assert!(m.set_connection_address("IP6", "ff15::1").is_ok());
        assert_eq!(text(&m), "m=audio 9 RTP/AVP 0\r\nc=IN IP6 ff15::1/127\r\n");
        let mut m = media(&["m=audio 9 RTP/AVP 0", "c=IN IP4 224.2.1.1/127/2"]);
        assert!(m.set_connection_address("IP6", "ff15::1").is_err());
        assert_eq!(
            text(&m),
            "m=audio 9 RTP/AVP 0\r\nc=IN IP4 224.2.1.1/127/2\r\n"
        );
    }

    #[test]
    fn rtcp_set_and_ice_removal() {
        let mut m = media(&[
            "m=audio 9 RTP/AVP 0",
            "a=ice-ufrag:x",
            "a=rtcp:9",
            "a=candidate:1 1 UDP 1 10.0.0.1 9 typ host",
            "a=end-of-candidates",
        ]);
        m.set_rtcp(&Rtcp {
            port: 30001,
            address: Some(NetAddress {
                nettype: "IN",
                addrtype: "IP4",
                address: "203.0.113.5",
            }),
        })
        .unwrap();
        assert_eq!(m.remove_ice_attributes(), 3);
        assert_eq!(
            text(&m),
            "m=audio 9 RTP/AVP 0\r\na=rtcp:30001 IN IP4 203.0.113.5\r\n"
        );
        let bad = Rtcp {
            port: 1,
            address: Some(NetAddress {
                nettype: "IN",
                addrtype: "IP4",
                address: "1.2.3.4\r\na=x",
            }),
        };
        assert!(m.set_rtcp(&bad).is_err());
    }
}
