//! Does the `uri` of a Digest response name the resource of the request it came with?
//!
//! RFC 7616 §3.4.6 requires the server to check this, so a response captured for one
//! resource cannot be replayed for another. RTSP clients disagree on the form: most put
//! the absolute request URI (`rtsp://host:554/path`), some a path (`/path`). We accept the
//! two forms of the same resource: scheme and host compared ignoring case, the default
//! port (554 for `rtsp`, 322 for `rtsps`) equal to no port, user info ignored, and path
//! plus query compared exactly (an empty path is `/`).
//!
//! What it does not: percent-decoding or dot-segment removal; those are rare in RTSP and
//! comparing them literally can only refuse, never wrongly accept.

/// The comparable parts of a request target.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    /// Lowercased scheme and `host:port` with the default port made explicit; `None` for
    /// the origin form (`/path`).
    origin: Option<(String, String)>,
    path_and_query: &'a str,
}

fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme {
        "rtsp" | "rtspu" | "rtsp+http" => Some("554"),
        "rtsps" => Some("322"),
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    }
}

fn normalise_authority(scheme: &str, authority: &str) -> String {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    // IPv6 literals contain ':' themselves, so the port separator is the ':' after ']'.
    let (host, port) = if host_port.starts_with('[') {
        match host_port.split_once(']') {
            Some((h, rest)) => (
                host_port.get(..h.len() + 1).unwrap_or(host_port),
                rest.strip_prefix(':'),
            ),
            None => (host_port, None),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() => Some(p),
        _ => default_port(scheme),
    };
    match port {
        Some(p) => format!("{}:{p}", host.to_ascii_lowercase()),
        None => host.to_ascii_lowercase(),
    }
}

fn split(uri: &str) -> Target<'_> {
    // A "://" inside a path or query (`/a?u=rtsp://x/p`) must not make it absolute.
    let absolute = uri.split_once("://").filter(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    let Some((scheme, rest)) = absolute else {
        return Target {
            origin: None,
            path_and_query: uri,
        };
    };
    let scheme = scheme.to_ascii_lowercase();
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at_checked(end).unwrap_or((rest, ""));
    let authority = normalise_authority(&scheme, authority);
    Target {
        origin: Some((scheme, authority)),
        path_and_query: if tail.is_empty() { "/" } else { tail },
    }
}

/// Whether the Digest `uri` field and the request line's URI name the same resource.
pub(crate) fn same_resource(digest_uri: &str, request_uri: &str) -> bool {
    if digest_uri == request_uri {
        return true;
    }
    let (a, b) = (split(digest_uri), split(request_uri));
    let path = |t: &Target<'_>| -> String {
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
