//! The `rtsp://` URL a fan-out run watches, read by `mediagate_config::RtspUrl` (the
//! workspace's one URL parser), and the two forms the run uses: the request URI for
//! request lines, which must not carry credentials (RFC 2326 §3.2), and the
//! credentials to answer a challenge with.
//!
//! What it does not: parse anything itself, `rtsps`, or relative references.

use mediagate_config::RtspUrl;

/// The watched URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WatchedUrl {
    url: RtspUrl,
    /// The URL without user information, for request lines.
    pub request_uri: String,
    /// `user`, `password` from `user:password@`, percent-decoded.
    pub credentials: Option<(String, String)>,
}

impl WatchedUrl {
    /// `host:port` for connecting (IPv6 hosts in brackets, 554 when none is written).
    pub(super) fn authority(&self) -> String {
        self.url.authority()
    }
}

/// Parses `url`; the error says what is wrong with it.
pub(super) fn parse(url: &str) -> Result<WatchedUrl, String> {
    let url: RtspUrl = url.parse().map_err(|e| format!("{e}"))?;
    Ok(WatchedUrl {
        request_uri: url.without_credentials().to_string(),
        credentials: url
            .credentials()
            .map(|c| (c.username.clone(), c.password.clone())),
        url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_url_with_port_and_path() {
        let u = parse("rtsp://127.0.0.1:8554/cam").unwrap();
        assert_eq!(u.request_uri, "rtsp://127.0.0.1:8554/cam");
        assert_eq!(u.credentials, None);
        assert_eq!(u.authority(), "127.0.0.1:8554");
    }

    #[test]
    fn default_port_path_and_credentials_are_handled() {
        let u = parse("RTSP://admin:p%40ss:w@cam.example").unwrap();
        assert_eq!(u.authority(), "cam.example:554");
        assert_eq!(
            u.credentials,
            Some(("admin".to_owned(), "p@ss:w".to_owned()))
        );
        assert_eq!(u.request_uri, "rtsp://cam.example/");
    }

    #[test]
    fn ipv6_hosts_keep_brackets_in_the_authority() {
        let u = parse("rtsp://[::1]:8554/a?b=c").unwrap();
        assert_eq!(u.authority(), "[::1]:8554");
        assert_eq!(u.request_uri, "rtsp://[::1]:8554/a?b=c");
        assert_eq!(parse("rtsp://[::1]/x").unwrap().authority(), "[::1]:554");
    }

    #[test]
    fn bad_urls_are_explained() {
        assert_eq!(
            parse("http://x/").unwrap_err(),
            "invalid RTSP URL \"http://x/\": it must start with rtsp://, as in rtsp://192.0.2.10:554/stream"
        );
        for bad in [
            "rtsp://",
            "rtsp://:554/x",
            "rtsp://h:0/",
            "rtsp://h:99999/",
            "rtsp://[::1/",
            "rtsp://u:%zz@h/",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
