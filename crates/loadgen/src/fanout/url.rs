//! The `rtsp://` URL a fan-out run watches (RFC 2326 §3.2, RFC 7826 §18.x uses the
//! same form): host, port (default 554), optional `user:password@` credentials, and the
//! request URI to put on request lines, which must not carry the credentials.
//!
//! What it does not: `rtsps`, relative references or normalisation; the URI is sent
//! as given, minus the user information.

/// Default RTSP port (RFC 2326 §3.2).
pub const DEFAULT_PORT: u16 = 554;

/// A parsed `rtsp://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspUrl {
    /// Host name or address as written, without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// `user`, `password` from `user:password@`, percent-decoded.
    pub credentials: Option<(String, String)>,
    /// The URL without user information, for request lines.
    pub request_uri: String,
}

impl RtspUrl {
    /// `host:port` for connecting (IPv6 hosts in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses `url`; the error says what is wrong with it.
pub fn parse(url: &str) -> Result<RtspUrl, String> {
    let rest = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("rtsp://"))
        .and_then(|_| url.get(7..))
        .ok_or_else(|| format!("`{url}` is not an rtsp:// URL"))?;
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(auth_end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport)
        .ok_or_else(|| format!("`{url}` has no valid host[:port] after rtsp://"))?;
    let credentials = userinfo.map(|u| {
        let (user, pass) = u.split_once(':').unwrap_or((u, ""));
        (percent_decode(user), percent_decode(pass))
    });
    let request_uri = format!(
        "rtsp://{hostport}{}",
        if path.is_empty() { "/" } else { path }
    );
    Ok(RtspUrl {
        host,
        port,
        credentials,
        request_uri,
    })
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (host, port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(['@', ' ']) {
        return None;
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
    };
    Some((host.to_owned(), port))
}

/// `%XX` escapes decoded; anything malformed is kept literally.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b.get(i), hex) {
            (Some(b'%'), Some(v)) => {
                out.push(v);
                i += 3;
            }
            (Some(&c), _) => {
                out.push(c);
                i += 1;
            }
            (None, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_url_with_port_and_path() {
        let u = parse("rtsp://127.0.0.1:8554/cam").unwrap();
        assert_eq!(
            u,
            RtspUrl {
                host: "127.0.0.1".into(),
                port: 8554,
                credentials: None,
                request_uri: "rtsp://127.0.0.1:8554/cam".into()
            }
        );
        assert_eq!(u.authority(), "127.0.0.1:8554");
    }

    #[test]
    fn default_port_path_and_credentials_are_handled() {
        let u = parse("RTSP://admin:p%40ss:w@cam.example").unwrap();
        assert_eq!(u.host, "cam.example");
        assert_eq!(u.port, 554);
        assert_eq!(
            u.credentials,
            Some(("admin".to_owned(), "p@ss:w".to_owned()))
        );
        assert_eq!(u.request_uri, "rtsp://cam.example/");
    }

    #[test]
    fn ipv6_hosts_keep_brackets_in_the_authority() {
        let u = parse("rtsp://[::1]:8554/a?b=c").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.authority(), "[::1]:8554");
        assert_eq!(u.request_uri, "rtsp://[::1]:8554/a?b=c");
        assert_eq!(parse("rtsp://[::1]/x").unwrap().port, 554);
    }

    #[test]
    fn bad_urls_are_explained() {
        assert_eq!(
            parse("http://x/").unwrap_err(),
            "`http://x/` is not an rtsp:// URL"
        );
        for bad in [
            "rtsp://",
            "rtsp://:554/x",
            "rtsp://h:0/",
            "rtsp://h:99999/",
            "rtsp://[::1/",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
