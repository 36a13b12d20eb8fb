//! A whole SDP description (RFC 8866 §5): the session-level lines, the media sections
//! and any trailing blank lines, all kept byte-exact, with typed accessors and
//! in-place rewriters.
//!
//! Serialising an unmodified parse gives back the exact input bytes, whatever its line
//! endings. A rewrite changes only the line(s) it names; lines it inserts take the
//! body's first line ending (CRLF when the body had none), and an insertion after an
//! unterminated last line terminates that line first. It does not implement offer/
//! answer negotiation (RFC 3264); that belongs to the relay and dispatcher engines.

use bytes::Bytes;

use crate::attribute::{Attribute, Direction, ICE_ATTRIBUTES};
use crate::connection::Connection;
use crate::control::resolve_control_url;
use crate::error::{ParseError, RewriteError, ValueError};
use crate::line::{check_field, Line};
use crate::media::MediaDescription;
use crate::origin::{self, Origin, OriginSpans};
use crate::parse::{parse_description, Limits};
use crate::range::Range;
use crate::section::Section;

/// Line types that follow `c=` at session level (RFC 8866 §5: v o s i u e p c b t r z k a).
const AFTER_SESSION_CONNECTION: [char; 6] = ['b', 't', 'r', 'z', 'k', 'a'];

/// A parsed SDP description; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    session: Section,
    media: Vec<MediaDescription>,
    /// Blank lines after the last line, kept so the round trip is exact.
    trailer: Vec<u8>,
}

impl SessionDescription {
    /// Parses a complete body with the default [`Limits`].
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        parse_description(body, &Limits::default())
    }

    /// Parses a complete body with the given limits.
    pub fn parse_with_limits(body: &[u8], limits: &Limits) -> Result<Self, ParseError> {
        parse_description(body, limits)
    }

    pub(crate) fn from_parts(
        session: Section,
        media: Vec<MediaDescription>,
        trailer: Vec<u8>,
    ) -> Self {
        Self {
            session,
            media,
            trailer,
        }
    }

    /// Appends the serialised description to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        self.session.write_to(out);
        for m in &self.media {
            m.section().write_to(out);
        }
        out.extend_from_slice(&self.trailer);
    }

    /// The serialised description.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut out);
        out
    }

    /// The serialised description as shared bytes, ready for a message body.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.to_vec())
    }

    /// The length of the serialised description (for `Content-Length`).
    pub fn encoded_len(&self) -> usize {
        self.media
            .iter()
            .fold(self.session.encoded_len(), |n, m| {
                n.saturating_add(m.section().encoded_len())
            })
            .saturating_add(self.trailer.len())
    }

    /// The session-level lines, `v=` first.
    pub fn session_lines(&self) -> &[Line] {
        &self.session.lines
    }

    /// The media sections, in order.
    pub fn media(&self) -> &[MediaDescription] {
        &self.media
    }

    /// The media sections, for rewriting.
    pub fn media_mut(&mut self) -> &mut [MediaDescription] {
        &mut self.media
    }

    /// The `s=` session name as received (it may be in a charset other than UTF-8).
    pub fn session_name(&self) -> Option<&[u8]> {
        self.session.first_of('s').map(|(_, l)| l.value())
    }

    /// The session-level `o=` line, if present and well formed.
    pub fn origin(&self) -> Option<Origin<'_>> {
        let (_, line) = self.session.first_of('o')?;
        Origin::parse(line.value_str()?).ok()
    }

    /// The sess-version of the `o=` line.
    pub fn session_version(&self) -> Option<u64> {
        self.origin().map(|o| o.session_version)
    }

    /// Sets the sess-version of the `o=` line, changing only those digits.
    pub fn set_session_version(&mut self, version: u64) -> Result<(), RewriteError> {
        self.rewrite_origin(|line, spans| {
            line.splice_value(spans.version.clone(), &version.to_string())
        })
    }

    /// Increments the sess-version, as a modified offer or answer must (RFC 3264 §8);
    /// returns the new version.
    pub fn bump_version(&mut self) -> Result<u64, RewriteError> {
        let current = self.origin_checked()?.session_version;
        let next = current
            .checked_add(1)
            .ok_or(RewriteError::VersionOverflow(current))?;
        self.set_session_version(next)?;
        Ok(next)
    }

    /// Sets the addrtype and unicast-address of the `o=` line (RFC 8866 §5.2), keeping
    /// the other fields byte-exact.
    pub fn set_origin_address(
        &mut self,
        addrtype: &str,
        address: &str,
    ) -> Result<(), RewriteError> {
        check_field("addrtype", addrtype)?;
        check_field("address", address)?;
        // The address lies after the addrtype: splice it first so the addrtype span
        // stays valid.
        self.rewrite_origin(|line, spans| {
            line.splice_value(spans.address.clone(), address);
            line.splice_value(spans.addrtype.clone(), addrtype);
        })
    }

    fn origin_checked(&self) -> Result<Origin<'_>, RewriteError> {
        let (_, line) = self.session.first_of('o').ok_or(RewriteError::NoOrigin)?;
        let value = line
            .value_str()
            .ok_or(RewriteError::MalformedOrigin(ValueError::new(
                0,
                "not valid UTF-8",
            )))?;
        Origin::parse(value).map_err(RewriteError::MalformedOrigin)
    }

    /// Applies `edit` to a copy of the `o=` line, checks the copy still parses, then
    /// commits it, so a failed rewrite leaves the description untouched.
    fn rewrite_origin(
        &mut self,
        edit: impl FnOnce(&mut Line, &OriginSpans),
    ) -> Result<(), RewriteError> {
        self.origin_checked()?;
        let (index, line) = self.session.first_of('o').ok_or(RewriteError::NoOrigin)?;
        let value = line.value_str().unwrap_or_default();
        let (_, spans) = origin::parse_with_spans(value).map_err(RewriteError::MalformedOrigin)?;
        let mut new_line = line.clone();
        edit(&mut new_line, &spans);
        let value = new_line.value_str().unwrap_or_default();
        origin::parse_with_spans(value).map_err(RewriteError::MalformedOrigin)?;
        if let Some(slot) = self.session.lines.get_mut(index) {
            *slot = new_line;
        }
        Ok(())
    }

    /// The session-level `c=` line, if any.
    pub fn connection(&self) -> Option<Connection<'_>> {
        self.session.connection()
    }

    /// Sets the session-level connection address: rewrites the addrtype and address
    /// of `c=` (keeping `/ttl/count`), or inserts `c=IN <addrtype> <address>` before
    /// the `b=`/`t=` lines when there is none.
    pub fn set_connection_address(
        &mut self,
        addrtype: &str,
        address: &str,
    ) -> Result<(), RewriteError> {
        self.session
            .set_connection_address(addrtype, address, &AFTER_SESSION_CONNECTION)
    }

    /// The connection that applies to a media section: its own `c=`, else the
    /// session-level one (RFC 8866 §5.7).
    pub fn effective_connection<'a>(
        &'a self,
        media: &'a MediaDescription,
    ) -> Option<Connection<'a>> {
        media.connection().or_else(|| self.connection())
    }

    /// The session-level attributes, in order.
    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'_>> {
        self.session.attributes()
    }

    /// The first session-level attribute with this name (ASCII case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<Attribute<'_>> {
        self.session.attribute(name)
    }

    /// The value of the first session-level attribute with this name, if UTF-8.
    pub fn attribute_value(&self, name: &str) -> Option<&str> {
        self.session.attribute_value(name)
    }

    /// Whether a session-level attribute with this name is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.session.has_attribute(name)
    }

    /// Appends `a=<name>[:<value>]` after the last session-level line (before the
    /// first `m=`).
    pub fn add_attribute(&mut self, name: &str, value: Option<&str>) -> Result<(), RewriteError> {
        self.session.add_attribute(name, value)
    }

    /// Replaces the first session-level attribute with this name (removing later
    /// duplicates), or appends it when absent.
    pub fn set_attribute(&mut self, name: &str, value: Option<&str>) -> Result<(), RewriteError> {
        self.session.set_attribute(name, value)
    }

    /// Removes every session-level attribute with this name; returns the count.
    pub fn remove_attributes(&mut self, name: &str) -> usize {
        self.session.remove_attributes(name)
    }

    /// Removes the ICE attributes ([`ICE_ATTRIBUTES`]) at session level and from every
    /// media section; returns how many lines were removed.
    pub fn remove_ice_attributes(&mut self) -> usize {
        let session = self
            .session
            .remove_attributes_where(|a| ICE_ATTRIBUTES.iter().any(|n| a.is(n)));
        self.media
            .iter_mut()
            .fold(session, |n, m| n + m.remove_ice_attributes())
    }

    /// The session-level `a=control:` value (the aggregate control URL), trimmed.
    pub fn control(&self) -> Option<&str> {
        self.attribute_value("control").map(str::trim)
    }

    /// Sets the session-level `a=control:`.
    pub fn set_control(&mut self, control: &str) -> Result<(), RewriteError> {
        self.set_attribute("control", Some(control))
    }

    /// The URL for aggregate control (RFC 2326 §C.1.1): the session-level control
    /// resolved against `base`, or `base` itself when there is none. Pick `base` with
    /// [`crate::control_base`].
    pub fn aggregate_control_url(&self, base: &str) -> String {
        resolve_control_url(base, self.control().unwrap_or("*"))
    }

    /// The URL to SETUP a media section with: its `a=control:` resolved against
    /// `base`; when it has none and it is the only media section, `base` itself
    /// (RFC 2326 §C.3); otherwise `None`.
    pub fn media_control_url(&self, media: &MediaDescription, base: &str) -> Option<String> {
        match media.control() {
            Some(control) => Some(resolve_control_url(base, control)),
            None if self.media.len() == 1 => Some(base.to_owned()),
            None => None,
        }
    }

    /// The session-level `a=range:`, if any.
    pub fn range(&self) -> Option<Range<'_>> {
        self.attribute_value("range").map(Range::new)
    }

    /// The range that applies to a media section: its own, else the session's.
    pub fn effective_range<'a>(&'a self, media: &'a MediaDescription) -> Option<Range<'a>> {
        media.range().or_else(|| self.range())
    }

    /// The session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.session.direction()
    }

    /// Writes the session-level direction attribute in place of the first one
    /// (removing contradictory extra ones), or appends it.
    pub fn set_direction(&mut self, direction: Direction) {
        self.session.set_direction(direction);
    }

    /// The direction that applies to a media section: its own attribute, else the
    /// session-level one, else `sendrecv` (RFC 8866 §6.7).
    pub fn effective_direction(&self, media: &MediaDescription) -> Direction {
        media
            .direction()
            .or_else(|| self.direction())
            .unwrap_or(Direction::SendRecv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASIC: &str = "v=0\r\n\
        o=- 1188340656180883 1 IN IP4 127.0.0.1\r\n\
        s=Session\r\n\
        t=0 0\r\n\
        a=control:*\r\n\
        m=video 0 RTP/AVP 96\r\n\
        a=control:stream=0\r\n\
        m=audio 0 RTP/AVP 97\r\n\
        a=recvonly\r\n";

    fn sdp(text: &str) -> SessionDescription {
        SessionDescription::parse(text.as_bytes()).unwrap()
    }

    fn text(s: &SessionDescription) -> String {
        let out = s.to_vec();
        assert_eq!(out.len(), s.encoded_len());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn version_rewrites_touch_only_the_digits() {
        let mut s = sdp(BASIC);
        assert_eq!(s.bump_version(), Ok(2));
        assert_eq!(text(&s), BASIC.replace(" 1 IN IP4", " 2 IN IP4"));
        s.set_session_version(u64::MAX).unwrap();
        assert_eq!(
            s.bump_version(),
            Err(RewriteError::VersionOverflow(u64::MAX))
        );
        assert_eq!(s.session_version(), Some(u64::MAX));
    }

    #[test]
    fn origin_address_rewrite() {
        let mut s = sdp(BASIC);
        s.set_origin_address("IP6", "2001:db8::1").unwrap();
        assert_eq!(
            text(&s),
            BASIC.replace("IN IP4 127.0.0.1", "IN IP6 2001:db8::1")
        );
        assert!(s.set_origin_address("IP4", "1.2.3.4 5").is_err());
        assert_eq!(s.origin().unwrap().address, "2001:db8::1");
    }

    #[test]
    fn missing_origin_is_reported() {
        let mut s = sdp("v=0\r\ns=-\r\n");
        assert_eq!(s.bump_version(), Err(RewriteError::NoOrigin));
        assert_eq!(
            s.set_origin_address("IP4", "1.2.3.4"),
            Err(RewriteError::NoOrigin)
        );
    }

    #[test]
    fn session_connection_is_inserted_in_rfc_order() {
        let mut s = sdp(BASIC);
        s.set_connection_address("IP4", "198.51.100.7").unwrap();
        assert_eq!(
            text(&s),
            BASIC.replace("s=Session\r\n", "s=Session\r\nc=IN IP4 198.51.100.7\r\n")
        );
        let m = &s.media()[0];
        assert_eq!(s.effective_connection(m).unwrap().address, "198.51.100.7");
    }

    #[test]
    fn control_urls() {
        let s = sdp(BASIC);
        let base = "rtsp://h/test/";
        assert_eq!(s.aggregate_control_url(base), "rtsp://h/test/");
        assert_eq!(
            s.media_control_url(&s.media()[0], base).as_deref(),
            Some("rtsp://h/test/stream=0")
        );
        assert_eq!(s.media_control_url(&s.media()[1], base), None);
        let single = sdp("v=0\r\nm=video 0 RTP/AVP 96\r\n");
        assert_eq!(
            single
                .media_control_url(&single.media()[0], "rtsp://h/x")
                .as_deref(),
            Some("rtsp://h/x")
        );
    }

    #[test]
    fn effective_direction_prefers_media() {
        let mut s = sdp(BASIC);
        assert_eq!(s.effective_direction(&s.media()[0]), Direction::SendRecv);
        assert_eq!(s.effective_direction(&s.media()[1]), Direction::RecvOnly);
        s.set_direction(Direction::Inactive);
        assert_eq!(s.effective_direction(&s.media()[0]), Direction::Inactive);
        assert_eq!(s.effective_direction(&s.media()[1]), Direction::RecvOnly);
        assert_eq!(
            text(&s),
            BASIC.replace("a=control:*\r\n", "a=control:*\r\na=inactive\r\n")
        );
    }
}
