//! `Via` (RFC 7826 §18.57; RFC 2326 §12.43 by reference to RFC 2616 §14.44): the
//! proxies a message passed through, one entry per hop, used to detect request loops
//! and to let each proxy append itself.
//!
//! Grammar accepted per entry: `sent-protocol LWS sent-by *(;via-param) [comment]`
//! where sent-protocol is `[name/]version[/transport]` (`1.1`, `RTSP/1.0`,
//! `RTSP/2.0/TCP`), sent-by is `host[:port]` (IPv6 in brackets) or a pseudonym, and the
//! comment may nest. Parameters (`received`, `ttl`, `maddr`, extensions) are kept in
//! order; the comment is kept verbatim.
//!
//! What it does not: hide private hosts (RFC 7826 asks access proxies to pseudonymise);
//! the proxy decides what it appends.

use super::param::ExtensionParam;
use super::syntax::{self, Nesting, Span};
use crate::header_map::{HeaderError, TypedHeader};

const H: &str = "Via";

/// One hop.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViaEntry {
    /// Sent protocol as written, e.g. `RTSP/1.0` or `RTSP/2.0/TCP`.
    pub protocol: String,
    /// Host name, IP literal (IPv6 with brackets) or pseudonym.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// `;name[=value]` parameters in order.
    pub params: Vec<ExtensionParam>,
    /// Text inside the trailing `( ... )` comment, verbatim.
    pub comment: Option<String>,
}

impl ViaEntry {
    /// An entry without parameters or comment.
    pub fn new(protocol: impl Into<String>, host: impl Into<String>, port: Option<u16>) -> Self {
        Self {
            protocol: protocol.into(),
            host: host.into(),
            port,
            params: Vec::new(),
            comment: None,
        }
    }

    /// Protocol name (`RTSP`), if the sent-protocol has one.
    pub fn protocol_name(&self) -> Option<&str> {
        let mut parts = self.protocol.split('/');
        let first = parts.next()?;
        parts.next().map(|_| first)
    }

    /// Protocol version (`1.0`).
    pub fn protocol_version(&self) -> &str {
        let mut parts = self.protocol.split('/');
        match (parts.next(), parts.next()) {
            (_, Some(v)) => v,
            (Some(v), None) => v,
            (None, None) => "",
        }
    }

    /// Transport (`TCP`), RTSP 2.0 form only.
    pub fn transport(&self) -> Option<&str> {
        self.protocol.split('/').nth(2)
    }

    /// Whether this hop is `host[:port]` (host compared case-insensitively; a missing
    /// port only matches a missing port).
    pub fn is_sent_by(&self, host: &str, port: Option<u16>) -> bool {
        self.host.eq_ignore_ascii_case(host) && self.port == port
    }

    /// Value of parameter `name` (case-insensitive), quotes decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .and_then(ExtensionParam::unquoted_value)
    }

    fn write_to(&self, out: &mut String) {
        out.push_str(&self.protocol);
        out.push(' ');
        out.push_str(&self.host);
        if let Some(p) = self.port {
            out.push(':');
            out.push_str(&p.to_string());
        }
        for p in &self.params {
            p.write_to(out);
        }
        if let Some(c) = &self.comment {
            out.push_str(" (");
            out.push_str(c);
            out.push(')');
        }
    }
}

/// `Via: via-parm *(COMMA via-parm)`, in hop order (first = nearest the origin of the
/// message).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Via(pub Vec<ViaEntry>);

impl Via {
    /// Whether some hop is `host[:port]`: a proxy seeing itself has found a loop.
    pub fn contains_sent_by(&self, host: &str, port: Option<u16>) -> bool {
        self.0.iter().any(|e| e.is_sent_by(host, port))
    }

    /// Appends a hop (what each proxy does before forwarding).
    pub fn push(&mut self, entry: ViaEntry) {
        self.0.push(entry);
    }
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'(' | b')' | b'"' | b'\\')
}

fn parse_sent_by(span: Span<'_>) -> Result<(String, Option<u16>), HeaderError> {
    if span.is_empty() {
        return Err(syntax::err(
            H,
            span.offset,
            "missing sent-by host after the protocol",
        ));
    }
    if let Some(at) = span.first_bad(is_host_byte) {
        return Err(syntax::err(H, at, "invalid character in sent-by host"));
    }
    let (host, port) = if span.text.starts_with('[') {
        let close = span
            .text
            .find(']')
            .ok_or_else(|| syntax::err(H, span.offset, "IPv6 address is missing its ']'"))?;
        let after = close.saturating_add(1);
        let host = span.slice(0, after).unwrap_or(span);
        match span.from(after).filter(|r| !r.is_empty()) {
            None => (host, None),
            Some(rest) => match rest.text.strip_prefix(':') {
                Some(_) => (host, rest.from(1)),
                None => return Err(syntax::err(H, rest.offset, "expected ':port' after ']'")),
            },
        }
    } else if span.text.bytes().filter(|&b| b == b':').count() == 1 {
        let (h, p) = span.split_once(b':').unwrap_or((span, span));
        (h, Some(p))
    } else {
        // No port, or a bare IPv6 literal some peers send without brackets.
        (span, None)
    };
    if host.is_empty() {
        return Err(syntax::err(H, host.offset, "missing sent-by host"));
    }
    let port = port.map(|p| syntax::parse_uint(H, p, "port")).transpose()?;
    Ok((host.text.to_owned(), port))
}

fn parse_entry(item: Span<'_>) -> Result<ViaEntry, HeaderError> {
    // Split off the trailing comment: the first '(' outside quotes.
    let mut in_quote = false;
    let mut escaped = false;
    let mut open = None;
    for (i, b) in item.text.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if in_quote && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            in_quote = !in_quote;
        } else if b == b'(' && !in_quote {
            open = Some(i);
            break;
        }
    }
    let (main, comment) = match open {
        Some(i) => {
            // Find the matching ')' and require nothing but LWS after it.
            let mut depth = 0usize;
            let mut esc = false;
            let mut close = None;
            for (j, b) in item.text.bytes().enumerate().skip(i) {
                if esc {
                    esc = false;
                    continue;
                }
                match b {
                    b'\\' => esc = true,
                    b'(' => depth = depth.saturating_add(1),
                    b')' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            close = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let close = close.ok_or_else(|| {
                syntax::err(
                    H,
                    item.offset.saturating_add(i),
                    "comment is not terminated (missing ')')",
                )
            })?;
            if let Some(after) = item.from(close.saturating_add(1)).map(Span::trim) {
                if !after.is_empty() {
                    return Err(syntax::err(
                        H,
                        after.offset,
                        "unexpected text after the comment",
                    ));
                }
            }
            let inner = item.slice(i.saturating_add(1), close).unwrap_or(item);
            (
                item.slice(0, i).unwrap_or(item).trim(),
                Some(inner.text.to_owned()),
            )
        }
        None => (item, None),
    };
    let ws = main
        .text
        .bytes()
        .position(syntax::is_lws)
        .ok_or_else(|| syntax::err(H, main.end(), "expected 'protocol/version host'"))?;
    let protocol = main.slice(0, ws).unwrap_or(main);
    for part in protocol.text.split('/') {
        if !syntax::is_token(part) {
            return Err(syntax::err(
                H,
                protocol.offset,
                "invalid sent-protocol (expected e.g. RTSP/1.0)",
            ));
        }
    }
    if protocol.text.split('/').count() > 3 {
        return Err(syntax::err(
            H,
            protocol.offset,
            "invalid sent-protocol (too many '/')",
        ));
    }
    let rest = main.from(ws).unwrap_or(main).trim();
    let parts = syntax::split_list(
        H,
        rest,
        b';',
        syntax::MAX_PARAMS,
        Nesting::Quotes,
        "Via parameters",
    )?;
    let mut parts = parts.into_iter();
    let sent_by = parts
        .next()
        .filter(|p| p.offset == rest.offset)
        .ok_or_else(|| syntax::err(H, rest.offset, "missing sent-by host after the protocol"))?;
    let (host, port) = parse_sent_by(sent_by)?;
    let params = parts
        .map(|p| ExtensionParam::parse(H, p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ViaEntry {
        protocol: protocol.text.to_owned(),
        host,
        port,
        params,
        comment,
    })
}

impl TypedHeader for Via {
    const NAME: &'static str = H;

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start_nonempty(H, value, "protocol/version host")?;
        let items = syntax::split_list(
            H,
            span,
            b',',
            syntax::MAX_LIST_ITEMS,
            Nesting::QuotesAndComments,
            "Via entries",
        )?;
        if items.is_empty() {
            return Err(syntax::err(
                H,
                span.offset,
                "expected protocol/version host",
            ));
        }
        items
            .into_iter()
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()
            .map(Via)
    }

    fn to_value(&self) -> String {
        let mut out = String::new();
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            e.write_to(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc_and_http_forms() {
        let v = Via::parse_value(
            "RTSP/2.0/TCP proxy.example.com:8554;received=192.0.2.1 (mediagate (edge) 0.1), 1.0 fred, RTSP/1.0 [2001:db8::1]:554",
        )
        .unwrap();
        assert_eq!(v.0.len(), 3);
        let a = &v.0[0];
        assert_eq!(a.protocol_name(), Some("RTSP"));
        assert_eq!(a.protocol_version(), "2.0");
        assert_eq!(a.transport(), Some("TCP"));
        assert_eq!((a.host.as_str(), a.port), ("proxy.example.com", Some(8554)));
        assert_eq!(a.param("RECEIVED").as_deref(), Some("192.0.2.1"));
        assert_eq!(a.comment.as_deref(), Some("mediagate (edge) 0.1"));
        let b = &v.0[1];
        assert_eq!(b.protocol_name(), None);
        assert_eq!(b.protocol_version(), "1.0");
        assert_eq!(b.host, "fred");
        assert_eq!(
            v.0[2],
            ViaEntry::new("RTSP/1.0", "[2001:db8::1]", Some(554))
        );
        assert!(v.contains_sent_by("PROXY.example.com", Some(8554)));
        assert!(!v.contains_sent_by("proxy.example.com", None));
        assert_eq!(
            v.to_value(),
            "RTSP/2.0/TCP proxy.example.com:8554;received=192.0.2.1 (mediagate (edge) 0.1), 1.0 fred, RTSP/1.0 [2001:db8::1]:554"
        );
        assert_eq!(Via::parse_value(&v.to_value()), Ok(v));
    }

    #[test]
    fn push_appends_a_hop() {
        let mut v = Via::parse_value("RTSP/1.0 a").unwrap();
        v.push(ViaEntry::new("RTSP/1.0", "edge1", Some(554)));
        assert_eq!(v.to_value(), "RTSP/1.0 a, RTSP/1.0 edge1:554");
    }

    #[test]
    fn errors_carry_offsets() {
        let cases: [(&str, usize); 9] = [
            ("", 0),
            ("RTSP/1.0", 8),
            ("RTSP/1.0 h:99999", 11),
            ("RTSP/1.0 h (c", 11),
            ("RTSP/1.0 h (c) x", 15),
            ("RTSP//1.0 h", 0),
            ("RTSP/1.0 [::1", 9),
            ("RTSP/1.0 h;a b", 12),
            ("RTSP/1.0 h, RTSP/1.0 ;x", 21),
        ];
        for (v, offset) in cases {
            let e = Via::parse_value(v).unwrap_err();
            assert_eq!((e.offset, e.header), (offset, H), "{v}: {e}");
        }
    }
}
