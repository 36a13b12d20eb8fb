//! Does the `uri` of a Digest response name the resource of the request it came with?
//!
//! RFC 7616 §3.4.6 requires the server to check this, so a response captured for one
//! resource cannot be replayed for another. RTSP clients disagree on the form: most put
//! the absolute request URI (`rtsp://host:554/path`), some a path (`/path`). We accept the
//! two forms of the same resource: scheme and host compared ignoring case, the default
//! port (554 for `rtsp`, 322 for `rtsps`) equal to no port, user info ignored, and path
//! plus query compared exactly (an empty path is `/`).
//!
//! Absolute URIs are read by the `url` crate (the project's one URL parser), which also
//! resolves dot segments; an origin-form target is compared as written, which can only
//! refuse, never wrongly accept.

/// The comparable parts of a request target.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// Lowercased scheme and `host:port` with the default port made explicit; `None` for
    /// the origin form (`/path`) and anything else that is not an absolute URL.
    origin: Option<(String, String)>,
    path_and_query: String,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "rtsp" | "rtspu" | "rtsp+http" => Some(554),
        "rtsps" => Some(322),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Splits a target with the `url` crate; what it does not read as an absolute URL with
/// a host (`/path`, `*`, a `/a?u=rtsp://x` query) is compared as written.
fn split(uri: &str) -> Target {
    let absolute = url::Url::parse(uri).ok().filter(|u| u.has_host());
    let Some(url) = absolute else {
        return Target {
            origin: None,
            path_and_query: uri.to_owned(),
        };
    };
    let scheme = url.scheme().to_ascii_lowercase();
    // Non-special schemes such as rtsp keep the host's case: fold it here.
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let authority = match url.port().or_else(|| default_port(&scheme)) {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    let path_and_query = match url.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    Target {
        origin: Some((scheme, authority)),
        path_and_query,
    }
}

/// Whether the Digest `uri` field and the request line's URI name the same resource.
pub(crate) fn same_resource(digest_uri: &str, request_uri: &str) -> bool {
    if digest_uri == request_uri {
        return true;
    }
    let (a, b) = (split(digest_uri), split(request_uri));
    let path = |t: &Target| -> String {
        // "/" and "" are the same origin-form target only for absolute URIs.
        if t.path_and_query.starts_with('?') {
            format!("/{}", t.path_and_query)
        } else {
            t.path_and_query.to_owned()
        }
    };
    if path(&a) != path(&b) {
        return false;
    }
    match (&a.origin, &b.origin) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_forms_of_the_same_resource() {
        for (a, b) in [
            ("rtsp://cam/live", "rtsp://cam/live"),
            ("rtsp://cam/live", "/live"),
            ("/live", "rtsp://cam:554/live"),
            ("RTSP://CAM:554/live", "rtsp://cam/live"),
            ("rtsp://user:pw@cam/live", "rtsp://cam/live"),
            ("rtsp://cam", "rtsp://cam/"),
            ("rtsp://cam", "/"),
            ("rtsps://cam:322/a?b=c", "rtsps://cam/a?b=c"),
            ("rtsp://[::1]:554/x", "rtsp://[::1]/x"),
            ("rtsp://cam?x=1", "/?x=1"),
            ("*", "*"),
        ] {
            assert!(same_resource(a, b), "{a} vs {b}");
            assert!(same_resource(b, a), "{b} vs {a}");
        }
    }

    #[test]
    fn refuses_other_resources() {
        for (a, b) in [
            ("rtsp://cam/live", "rtsp://cam/live2"),
            ("rtsp://cam/live", "rtsp://cam/Live"),
            ("rtsp://cam/live", "rtsp://other/live"),
            ("rtsp://cam:8554/live", "rtsp://cam/live"),
            ("rtsps://cam/live", "rtsp://cam/live"),
            ("/live", "/live/trackID=1"),
            ("rtsp://cam/live?a=1", "rtsp://cam/live?a=2"),
            ("rtsp://[::1]:554/x", "rtsp://[::2]/x"),
            ("*", "rtsp://cam/"),
            ("/a?u=rtsp://x/p", "/p"),
            ("/a?u=rtsp://x/p", "rtsp://x/p"),
            ("", "/"),
        ] {
            assert!(!same_resource(a, b), "{a} vs {b}");
            assert!(!same_resource(b, a), "{b} vs {a}");
        }
    }
}
