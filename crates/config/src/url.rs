//! URL-valued settings: RTSP URL prefixes for routes and parents, and HTTP hook URLs.
//! This is the workspace's one URL parser: engines and tools take these types, never
//! the text.
//!
//! What it does: reads `rtsp://[user[:password]@]host[:port][/path]` (RFC 2326 §3.2,
//! authority syntax of RFC 3986 §3.2) and `http://host[:port][/path]` with the `url`
//! crate, which splits the structure. On top of it, our own rules, each refused with a
//! message that names the reason: a port written as 1 to 65535, a host that is a DNS
//! name (RFC 1123), an IPv4 address or a bracketed IPv6 address, strict
//! percent-decoding of the user information, and a path kept exactly as written (it is
//! a prefix matched against request URIs, so it is neither normalised nor decoded). An
//! advertised route prefix is either such a URL without credentials or a bare path
//! (`/cam1`), matched on whole path segments.
//!
//! What it does not: `rtsps://` or `https://` (no TLS yet), `rtspu://`, fragments,
//! internationalised names, or percent-decoding of the path (prefixes compare byte for
//! byte).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use super::value_error::{check_len, quoted, InvalidValue};

/// Default RTSP port (RFC 2326 §3.2).
pub(crate) const RTSP_DEFAULT_PORT: u16 = 554;

/// The host part of a URL or destination rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lower-cased.
    Name(String),
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Ip(IpAddr::V4(v4)) => write!(f, "{v4}"),
        }
    }
}

/// Checks a DNS name (RFC 1123 §2.1 labels; `_` tolerated for container and service
/// names) and returns it lower-cased. `None` when it is not a valid name.
pub(crate) fn parse_host_name(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    labels_ok.then(|| name.to_ascii_lowercase())
}

/// Splits `host[:port]` / `[v6][:port]` and parses both parts. `what` names the whole
/// value for messages.
fn parse_host_port(
    hostport: &str,
    whole: &str,
    what: &str,
) -> Result<(Host, Option<u16>), InvalidValue> {
    let bad = |why: String| InvalidValue::new(format!("invalid {what} {}: {why}", quoted(whole)));
    let (host, port_text) = if let Some(inner) = hostport.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return Err(bad("the IPv6 address has no closing ']'".into()));
        };
        let v6: Ipv6Addr = v6
            .parse()
            .map_err(|_| bad(format!("{} is not an IPv6 address", quoted(v6))))?;
        let port_text = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| bad("expected ':' and a port after ']'".into()))?,
            ),
        };
        (Host::Ip(IpAddr::V6(v6)), port_text)
    } else {
        if hostport.matches(':').count() > 1 {
            return Err(bad(
                "IPv6 addresses must be written in brackets, as in rtsp://[2001:db8::1]:554/"
                    .into(),
            ));
        }
        let (host_text, port_text) = match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        if host_text.is_empty() {
            return Err(bad("the host is missing".into()));
        }
        let host =
            if let Ok(ip) = host_text.parse::<IpAddr>() {
                Host::Ip(ip)
            } else {
                Host::Name(parse_host_name(host_text).ok_or_else(|| {
                    bad(format!("{} is not a valid host name", quoted(host_text)))
                })?)
            };
        (host, port_text)
    };
    let port = match port_text {
        None => None,
        Some(p) => Some(
            parse_port(p)
                .ok_or_else(|| bad(format!("{} is not a port from 1 to 65535", quoted(p))))?,
        ),
    };
    Ok((host, port))
}

/// True for characters a URL path or query may hold as written: visible ASCII except
/// `#` (fragments mean nothing to RTSP) and the characters that need escaping.
pub(crate) fn is_path_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
        && !matches!(
            b,
            b'#' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
        )
}

fn check_path(path: &str, whole: &str, what: &str) -> Result<(), InvalidValue> {
    if let Some(b) = path.bytes().find(|&b| !is_path_byte(b)) {
        let shown = if b.is_ascii_graphic() {
            format!("{:?}", char::from(b))
        } else {
            format!("byte 0x{b:02x}")
        };
        return Err(InvalidValue::new(format!(
            "invalid {what} {}: the path contains {shown}; percent-encode it (spaces as %20)",
            quoted(whole)
        )));
    }
    Ok(())
}

/// Decodes `%XX` escapes; `None` for a broken escape or text that is not UTF-8. The
/// url crate leaves such text as written, so this is where it is refused.
pub(crate) fn percent_decode_strict(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn percent_decode(text: &str, whole: &str) -> Result<String, InvalidValue> {
    percent_decode_strict(text).ok_or_else(|| {
        InvalidValue::new(format!(
            "invalid RTSP URL {}: bad percent-encoding in the user name or password",
            quoted(whole)
        ))
    })
}

/// A port written as 1 to 65535 in at most five digits (the url crate takes `0`,
/// and an empty port as none).
pub(crate) fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|&p| p != 0)
}

fn percent_encode_userinfo(text: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for b in text.bytes() {
        // RFC 3986 unreserved characters stay; everything else is escaped so ':' and '@'
        // in a password survive a round trip.
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            write!(f, "{}", char::from(b))?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}

/// User name and password carried in a URL's user information.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlCredentials {
    /// User name (percent-decoded).
    pub username: String,
    /// Password (percent-decoded); empty when the URL had none.
    pub password: String,
}

impl fmt::Debug for UrlCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep passwords out of debug logs.
        f.debug_struct("UrlCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An `rtsp://` URL used as a prefix: route origins, parents, advertised URL prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtspUrl {
    credentials: Option<UrlCredentials>,
    host: Host,
    port: Option<u16>,
    path: String,
}

impl RtspUrl {
    /// Credentials given in the URL, if any.
    pub fn credentials(&self) -> Option<&UrlCredentials> {
        self.credentials.as_ref()
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port as written, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The port, or 554 when the URL names none.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(RTSP_DEFAULT_PORT)
    }

    /// The path (and query, if any) exactly as written; `/` when the URL had none.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `host:port` to connect to (IPv6 in brackets, default port filled in).
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port_or_default())
    }

    /// Resolves a control URL from an SDP or header against this URL as base
    /// (RFC 2326 §C.1.1 as servers practise it): an absolute URL stands as it is, `*`
    /// or empty means the base, a path starting with `/` replaces the path, anything
    /// else is appended with exactly one `/` between.
    pub fn join(&self, control: &str) -> Result<RtspUrl, InvalidValue> {
        if control.contains("://") {
            return control.parse();
        }
        let mut out = self.clone();
        if control.is_empty() || control == "*" {
            return Ok(out);
        }
        check_path(control, control, "control URL")?;
        if control.starts_with('/') {
            out.path = control.to_owned();
        } else {
            if !out.path.ends_with('/') {
                out.path.push('/');
            }
            out.path.push_str(control);
        }
        Ok(out)
    }

    /// The same URL without user information: what goes on the wire, since RTSP
    /// request URIs must not carry credentials.
    pub fn without_credentials(&self) -> RtspUrl {
        RtspUrl {
            credentials: None,
            ..self.clone()
        }
    }
}

impl FromStr for RtspUrl {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "a URL")?;
        let what = "RTSP URL";
        let bad = |why: &str| InvalidValue::new(format!("invalid {what} {}: {why}", quoted(s)));
        let scheme_end = s.find("://");
        let rest = match scheme_end {
            Some(i)
                if s.get(..i)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rtsp")) =>
            {
                s.get(i + 3..).unwrap_or("")
            }
            Some(i)
                if s.get(..i)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rtsps")) =>
            {
                return Err(bad(
                    "rtsps:// (RTSP over TLS) is not supported yet; use rtsp://",
                ));
            }
            _ => {
                return Err(bad(
                    "it must start with rtsp://, as in rtsp://192.0.2.10:554/stream",
                ))
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('?') || authority.contains('#') {
            return Err(bad(
                "a path starting with '/' must come before any '?' or '#'",
            ));
        }
        // Our rules first, so each refusal names its reason; the url crate accepts
        // some of these (port 0, an empty port, a '#', loose escapes).
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if let Some(userinfo) = userinfo {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if user.is_empty() {
                return Err(bad("the user name before '@' is empty"));
            }
        }
        parse_host_port(hostport, s, what)?;
        check_path(path, s, what)?;
        // Then the structure as the url crate reads it.
        let parsed = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let credentials = if parsed.username().is_empty() {
            None
        } else {
            Some(UrlCredentials {
                username: percent_decode(parsed.username(), s)?,
                password: percent_decode(parsed.password().unwrap_or(""), s)?,
            })
        };
        let host = host_of(&parsed).ok_or_else(|| bad("the host is missing"))?;
        // The path as written: the url crate would resolve "." and ".." segments,
        // and a route prefix must match what viewers send byte for byte.
        let path = if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        };
        Ok(Self {
            credentials,
            host,
            port: parsed.port(),
            path,
        })
    }
}

/// Our [`Host`] for the url crate's: an address when the text is one (for `rtsp` the
/// crate keeps IPv4 hosts as names), else the name lower-cased.
fn host_of(url: &url::Url) -> Option<Host> {
    Some(match url.host()? {
        url::Host::Ipv4(v4) => Host::Ip(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Host::Ip(IpAddr::V6(v6)),
        url::Host::Domain(name) => match name.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(name.to_ascii_lowercase()),
        },
    })
}

impl fmt::Display for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rtsp://")?;
        if let Some(c) = &self.credentials {
            percent_encode_userinfo(&c.username, f)?;
            if !c.password.is_empty() {
                f.write_str(":")?;
                percent_encode_userinfo(&c.password, f)?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        f.write_str(&self.path)
    }
}

string_value_serde!(
    RtspUrl,
    "an RTSP URL such as \"rtsp://192.0.2.10:554/stream\""
);

/// The name viewers use for a route: a path prefix (any host that reaches this edge)
/// or a full URL prefix (only requests for that host and port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdvertisedPrefix {
    /// A path prefix such as `/cam1`.
    Path(String),
    /// An `rtsp://host[:port]/prefix` URL, without credentials.
    Url(RtspUrl),
}

impl AdvertisedPrefix {
    /// The path part of the prefix.
    pub fn path(&self) -> &str {
        match self {
            AdvertisedPrefix::Path(p) => p,
            AdvertisedPrefix::Url(u) => u.path(),
        }
    }

    /// If `path` lies under this prefix on a whole-segment boundary, the rest of it (to
    /// append to the origin prefix): `/cam1` covers `/cam1`, `/cam1/track1` and
    /// `/cam1?x`, never `/cam10`. Hosts are the caller's business.
    pub fn strip_path_prefix<'p>(&self, path: &'p str) -> Option<&'p str> {
        let prefix = self.path();
        let rest = path.strip_prefix(prefix)?;
        let on_boundary = rest.is_empty()
            || prefix.ends_with('/')
            || rest.starts_with('/')
            || rest.starts_with('?');
        on_boundary.then_some(rest)
    }
}

impl FromStr for AdvertisedPrefix {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "a prefix")?;
        let what = "advertised prefix";
        let bad = |why: &str| InvalidValue::new(format!("invalid {what} {}: {why}", quoted(s)));
        let prefix = if s.starts_with('/') {
            check_path(s, s, what)?;
            AdvertisedPrefix::Path(s.to_owned())
        } else if s.contains("://") {
            let url: RtspUrl = s.parse()?;
            if url.credentials.is_some() {
                return Err(bad(
                    "credentials belong to the origin, not to the advertised name",
                ));
            }
            AdvertisedPrefix::Url(url)
        } else {
            return Err(bad(
                "expected a path starting with '/' (such as \"/cam1\") or an rtsp:// URL prefix (such as \"rtsp://edge.example.com/cam1\")",
            ));
        };
        if prefix.path().contains('?') {
            return Err(bad(
                "a prefix cannot contain '?'; queries belong to the origin URL",
            ));
        }
        Ok(prefix)
    }
}

impl fmt::Display for AdvertisedPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdvertisedPrefix::Path(p) => f.write_str(p),
            AdvertisedPrefix::Url(u) => u.fmt(f),
        }
    }
}

string_value_serde!(
    AdvertisedPrefix,
    "a path prefix such as \"/cam1\" or an rtsp:// URL prefix"
);

/// An `http://` URL for outgoing notifications (for example Kamailio's JSON-RPC
/// endpoint), without credentials: the relay speaks plain HTTP and sends no
/// `Authorization`, so `https://` and user information are refused here, where the
/// error gets a line and column, rather than when the relay starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    text: String,
    url: url::Url,
}

/// Default HTTP port (RFC 9110 §4.2.1).
pub(crate) const HTTP_DEFAULT_PORT: u16 = 80;

impl HttpUrl {
    /// The URL text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The host.
    pub fn host(&self) -> Host {
        // A parsed `http` URL always has a host (the crate refuses an empty one).
        host_of(&self.url).unwrap_or(Host::Name(String::new()))
    }

    /// The port, 80 when the URL names none.
    pub fn port(&self) -> u16 {
        self.url
            .port_or_known_default()
            .unwrap_or(HTTP_DEFAULT_PORT)
    }

    /// `host:port` to connect to (IPv6 in brackets, default port filled in).
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host(), self.port())
    }

    /// The `Host` header value (RFC 9110 §7.2): the port only when it is not 80.
    pub fn host_header(&self) -> String {
        match self.url.port() {
            Some(port) => format!("{}:{port}", self.host()),
            None => self.host().to_string(),
        }
    }

    /// Path and query for the request line (`/` when the URL names no path).
    pub fn path_and_query(&self) -> &str {
        &self.url[url::Position::BeforePath..url::Position::AfterQuery]
    }
}

impl FromStr for HttpUrl {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "a URL")?;
        let what = "HTTP URL";
        let bad = |why: &str| InvalidValue::new(format!("invalid {what} {}: {why}", quoted(s)));
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            s.get(7..)
        } else if lower.starts_with("https://") {
            return Err(bad(
                "https:// (HTTP over TLS) is not supported yet; use http://, as in http://127.0.0.1:5060/RPC",
            ));
        } else {
            None
        };
        let Some(rest) = rest else {
            return Err(bad(
                "it must start with http://, as in http://127.0.0.1:5060/RPC",
            ));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad(
                "user names and passwords are not supported here; write http://host:port/path",
            ));
        }
        parse_host_port(authority, s, what)?;
        check_path(path, s, what)?;
        let url = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            text: s.to_owned(),
            url,
        })
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

string_value_serde!(HttpUrl, "an HTTP URL such as \"http://127.0.0.1:5060/RPC\"");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    #[test]
    fn joins_control_urls_and_names_the_authority() {
        let base: RtspUrl = "rtsp://h:1/live/".parse().unwrap();
        assert_eq!(
            base.join("stream=0").unwrap().to_string(),
            "rtsp://h:1/live/stream=0"
        );
        assert_eq!(base.join("*").unwrap().to_string(), "rtsp://h:1/live/");
        let base2: RtspUrl = "rtsp://h/live".parse().unwrap();
        assert_eq!(
            base2.join("trackID=1").unwrap().to_string(),
            "rtsp://h/live/trackID=1"
        );
        assert_eq!(
            base2.join("rtsp://o/x/t1").unwrap().to_string(),
            "rtsp://o/x/t1"
        );
        assert_eq!(base2.join("/abs/t").unwrap().to_string(), "rtsp://h/abs/t");
        assert!(base2.join("a b").is_err());
        assert_eq!(base2.authority(), "h:554");
        let v6: RtspUrl = "rtsp://[::1]:9000/a".parse().unwrap();
        assert_eq!(v6.authority(), "[::1]:9000");
    }

    fn url(s: &str) -> RtspUrl {
        s.parse().unwrap()
    }

    fn url_err(s: &str) -> String {
        s.parse::<RtspUrl>().unwrap_err().to_string()
    }

    #[test]
    fn parses_origin_urls() {
        let u = url("rtsp://admin:se%40cret@192.0.2.10:8554/Streaming/Channels/101");
        assert_eq!(u.host(), &Host::Ip(IpAddr::from([192, 0, 2, 10])));
        assert_eq!(u.port(), Some(8554));
        assert_eq!(u.path(), "/Streaming/Channels/101");
        let c = u.credentials().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "se@cret")
        );
        assert_eq!(
            u.without_credentials().to_string(),
            "rtsp://192.0.2.10:8554/Streaming/Channels/101"
        );
        assert_eq!(
            u.to_string(),
            "rtsp://admin:se%40cret@192.0.2.10:8554/Streaming/Channels/101"
        );

        let v6 = url("RTSP://[2001:db8::1]/live");
        assert_eq!(v6.host(), &Host::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(v6.port_or_default(), 554);
        assert_eq!(v6.to_string(), "rtsp://[2001:db8::1]/live");

        let bare = url("rtsp://Camera.Example.com");
        assert_eq!(bare.host(), &Host::Name("camera.example.com".into()));
        assert_eq!(bare.path(), "/");

        let dahua = url("rtsp://cam/cam/realmonitor?channel=1&subtype=0");
        assert_eq!(dahua.path(), "/cam/realmonitor?channel=1&subtype=0");
        assert_eq!(url("rtsp://u@h/").credentials().unwrap().password, "");
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        assert_eq!(
            url_err("http://x/"),
            "invalid RTSP URL \"http://x/\": it must start with rtsp://, as in rtsp://192.0.2.10:554/stream"
        );
        assert!(url_err("rtsps://x/").contains("not supported yet"));
        assert!(url_err("rtsp:///path").contains("the host is missing"));
        assert!(url_err("rtsp://h:0/").contains("\"0\" is not a port"));
        assert!(url_err("rtsp://h:70000/").contains("is not a port"));
        assert!(url_err("rtsp://h:/").contains("\"\" is not a port"));
        assert!(url_err("rtsp://2001:db8::1/").contains("must be written in brackets"));
        assert!(url_err("rtsp://[2001:db8::1/").contains("no closing ']'"));
        assert!(url_err("rtsp://[::1]x/").contains("expected ':' and a port"));
        assert!(url_err("rtsp://bad host/").contains("not a valid host name"));
        assert!(url_err("rtsp://-bad/").contains("not a valid host name"));
        assert!(url_err("rtsp://h/a b").contains("the path contains byte 0x20"));
        assert!(url_err("rtsp://h/a#b").contains("the path contains '#'"));
        assert!(url_err("rtsp://h?x").contains("must come before any '?'"));
        assert!(url_err("rtsp://:pw@h/").contains("user name before '@' is empty"));
        assert!(url_err("rtsp://u:%zz@h/").contains("bad percent-encoding"));
        assert!(url_err("rtsp://u:%ff@h/").contains("bad percent-encoding"));
        assert!(url_err("rtsp://u:%4@h/").contains("bad percent-encoding"));
    }

    #[test]
    fn advertised_prefixes() {
        assert_eq!(
            "/cam1".parse::<AdvertisedPrefix>(),
            Ok(AdvertisedPrefix::Path("/cam1".into()))
        );
        let full: AdvertisedPrefix = "rtsp://edge.example.com:8554/cam1".parse().unwrap();
        assert_eq!(full.path(), "/cam1");
        assert_eq!(full.to_string(), "rtsp://edge.example.com:8554/cam1");
        let e = |s: &str| s.parse::<AdvertisedPrefix>().unwrap_err().to_string();
        assert!(e("cam1").contains("expected a path starting with '/'"));
        assert!(e("rtsp://u:p@edge/cam1").contains("credentials belong to the origin"));
        assert!(e("/cam1?x=1").contains("cannot contain '?'"));
        assert!(e("/cam 1").contains("percent-encode"));
        assert!(e("http://edge/cam1").contains("must start with rtsp://"));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let p: AdvertisedPrefix = "/cam1".parse().unwrap();
        assert_eq!(p.strip_path_prefix("/cam1"), Some(""));
        assert_eq!(p.strip_path_prefix("/cam1/trackID=0"), Some("/trackID=0"));
        assert_eq!(p.strip_path_prefix("/cam1?x=1"), Some("?x=1"));
        assert_eq!(p.strip_path_prefix("/cam10"), None);
        assert_eq!(p.strip_path_prefix("/cam"), None);
        let slash: AdvertisedPrefix = "/live/".parse().unwrap();
        assert_eq!(slash.strip_path_prefix("/live/a"), Some("a"));
        let root: AdvertisedPrefix = "rtsp://edge.example.com".parse().unwrap();
        assert_eq!(root.strip_path_prefix("/anything"), Some("anything"));
    }

    #[test]
    fn http_urls() {
        assert_eq!(
            "http://127.0.0.1:5060/RPC"
                .parse::<HttpUrl>()
                .unwrap()
                .as_str(),
            "http://127.0.0.1:5060/RPC"
        );
        assert!("HTTP://hooks.example.com".parse::<HttpUrl>().is_ok());
        assert!("http://[::1]:8080/x?y=1".parse::<HttpUrl>().is_ok());
        let e = |s: &str| s.parse::<HttpUrl>().unwrap_err().to_string();
        assert!(e("ftp://x/").contains("must start with http://"));
        assert!(e("http:///x").contains("the host is missing"));
        assert!(e("http://x:99999/").contains("is not a port"));
        assert!(e("http").contains("must start with http://"));
        // The relay cannot speak TLS nor send credentials: refused when the config is
        // read, not when the relay starts.
        assert!(e("HTTPS://hooks.example.com")
            .contains("https:// (HTTP over TLS) is not supported yet"));
        assert!(e("https://u:p@[::1]:8080/x?y=1").contains("not supported yet"));
        assert!(e("http://u:p@[::1]:8080/x").contains("user names and passwords are not supported"));
    }

    #[test]
    fn http_urls_name_what_a_request_needs() {
        let u: HttpUrl = "http://127.0.0.1:5060/RPC".parse().unwrap();
        assert_eq!(
            (
                u.authority().as_str(),
                u.host_header().as_str(),
                u.path_and_query()
            ),
            ("127.0.0.1:5060", "127.0.0.1:5060", "/RPC")
        );
        let u: HttpUrl = "http://SIP.example".parse().unwrap();
        assert_eq!(
            (
                u.authority().as_str(),
                u.host_header().as_str(),
                u.path_and_query()
            ),
            ("sip.example:80", "sip.example", "/")
        );
        let u: HttpUrl = "http://[::1]/x?a=1".parse().unwrap();
        assert_eq!(
            (
                u.authority().as_str(),
                u.host_header().as_str(),
                u.path_and_query()
            ),
            ("[::1]:80", "[::1]", "/x?a=1")
        );
    }

    #[test]
    fn credentials_round_trip_through_display() {
        let mut rng = Rng::new(17);
        for _ in 0..5_000 {
            let user = rng.string_from(b"abc:@/%?# ~.-_Z9", 10);
            let pass = rng.string_from(b"abc:@/%?# ~.-_Z9", 10);
            if user.is_empty() {
                continue;
            }
            let original = RtspUrl {
                credentials: Some(UrlCredentials {
                    username: user,
                    password: pass,
                }),
                host: Host::Name("cam.example".into()),
                port: Some(554),
                path: "/live".into(),
            };
            let text = original.to_string();
            assert_eq!(text.parse::<RtspUrl>(), Ok(original), "{text}");
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text() {
        let mut rng = Rng::new(19);
        for _ in 0..20_000 {
            let tail = rng.string_from(b"rtsp:/@[]%1a.:?#h", 20);
            for s in [
                tail.clone(),
                format!("rtsp://{tail}"),
                format!("http://{tail}"),
            ] {
                let _ = s.parse::<RtspUrl>();
                let _ = s.parse::<AdvertisedPrefix>();
                let _ = s.parse::<HttpUrl>();
            }
        }
    }

    #[test]
    fn debug_output_hides_passwords() {
        let u = url("rtsp://admin:hunter2@cam/");
        assert!(!format!("{u:?}").contains("hunter2"));
    }
}
