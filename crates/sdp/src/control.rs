//! Resolving `a=control:` URLs (RFC 2326 §C.1.1, RFC 7826 §18.33 and §D.1.1).
//!
//! The base is the DESCRIBE response's `Content-Base`, else its `Content-Location`,
//! else the request URL ([`control_base`]). A control of `*` means the base itself; an
//! absolute URL (`scheme://...`) is used as is; anything else is appended to the base
//! with exactly one `/` between them.
//!
//! Appending, rather than RFC 3986 reference resolution, is deliberate: with RFC 3986,
//! `trackID=1` against `rtsp://cam/live.sdp` would replace `live.sdp`, while live555,
//! ffmpeg and GStreamer clients (the ones cameras are tested against) append, and
//! servers expect what those clients send. A query in the base is therefore kept in
//! front of the appended part, as ffmpeg does. This module does not parse or
//! normalise URLs beyond that.

/// Picks the base URL for relative control URLs (RFC 2326 §C.1.1): `Content-Base`, else
/// `Content-Location`, else the URL the DESCRIBE was sent to. Blank headers are skipped.
pub fn control_base<'a>(
    content_base: Option<&'a str>,
    content_location: Option<&'a str>,
    request_url: &'a str,
) -> &'a str {
    [content_base, content_location]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or(request_url)
}

/// Resolves an `a=control:` value against a base URL; see the module docs for the
/// rules. Blanks around `control` are ignored; an empty control resolves to the base.
pub(crate) fn resolve_control_url(base: &str, control: &str) -> String {
    let control = control.trim();
    if control.is_empty() || control == "*" {
        return base.to_owned();
    }
    if is_absolute_url(control) {
        return control.to_owned();
    }
    let base_slash = base.ends_with('/');
    let control_slash = control.starts_with('/');
    let mut url = String::with_capacity(base.len().saturating_add(control.len()).saturating_add(1));
    url.push_str(base);
    match (base_slash, control_slash) {
        (true, true) => url.push_str(control.get(1..).unwrap_or_default()),
        (false, false) => {
            url.push('/');
            url.push_str(control);
        }
        _ => url.push_str(control),
    }
    url
}

/// Whether `url` starts with an RFC 3986 scheme followed by `://`. Requiring the `//`
/// keeps relative controls such as `track:1` from being mistaken for absolute URLs.
fn is_absolute_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once(':') else {
        return false;
    };
    let mut chars = scheme.bytes();
    let first_ok = chars.next().is_some_and(|b| b.is_ascii_alphabetic());
    first_ok
        && chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && rest.starts_with("//")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_controls_are_appended_with_one_slash() {
        let cases = [
            (
                "rtsp://h/live.sdp",
                "trackID=1",
                "rtsp://h/live.sdp/trackID=1",
            ),
            (
                "rtsp://h/live.sdp/",
                "trackID=1",
                "rtsp://h/live.sdp/trackID=1",
            ),
            ("rtsp://h/live", "/track1", "rtsp://h/live/track1"),
            ("rtsp://h/live/", "/track1", "rtsp://h/live/track1"),
            (
                "rtsp://h:8554/test",
                " stream=0 ",
                "rtsp://h:8554/test/stream=0",
            ),
            (
                "rtsp://h/s?token=a",
                "track:1",
                "rtsp://h/s?token=a/track:1",
            ),
        ];
        for (base, control, want) in cases {
            assert_eq!(
                resolve_control_url(base, control),
                want,
                "{base} + {control}"
            );
        }
    }

    #[test]
    fn star_empty_and_absolute() {
        assert_eq!(resolve_control_url("rtsp://h/s/", "*"), "rtsp://h/s/");
        assert_eq!(resolve_control_url("rtsp://h/s", ""), "rtsp://h/s");
        assert_eq!(
            resolve_control_url(
                "rtsp://h/s",
                "rtsp://192.168.0.90/axis-media/media.amp/stream=0?videocodec=h264"
            ),
            "rtsp://192.168.0.90/axis-media/media.amp/stream=0?videocodec=h264"
        );
        assert_eq!(
            resolve_control_url("rtsp://h/s", "RTSPS://o/x"),
            "RTSPS://o/x"
        );
        assert_eq!(
            resolve_control_url("rtsp://h/s", "1x://o"),
            "rtsp://h/s/1x://o"
        );
    }

    #[test]
    fn base_selection_order() {
        assert_eq!(
            control_base(Some("rtsp://b/"), Some("rtsp://l/"), "rtsp://r"),
            "rtsp://b/"
        );
        assert_eq!(
            control_base(None, Some("rtsp://l/"), "rtsp://r"),
            "rtsp://l/"
        );
        assert_eq!(control_base(Some("  "), None, "rtsp://r"), "rtsp://r");
        assert_eq!(control_base(None, None, "rtsp://r"), "rtsp://r");
    }
}
