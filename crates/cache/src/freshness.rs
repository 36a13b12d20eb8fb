//! Whether a cached object may be served without asking the origin: the freshness
//! rules of RFC 2326 §12.8 / §13 and RFC 7826 §16 / §18.11 (Cache-Control), §18.22
//! (Expires) and §18.27 (Last-Modified), read the way HTTP caches read them where the
//! RTSP RFCs are silent.
//!
//! What it does: combine the origin's `Cache-Control`, `Expires` and `Last-Modified`
//! (as stored in [`Meta`]) with the viewer's `Cache-Control` and the current time into
//! one answer, and say whether a response may be stored at all. What it does not: talk
//! to the origin, compare validators after a revalidation (the edge compares ETag/MTag,
//! Last-Modified and the SDP `o=` version), or answer `only-if-cached` (see
//! [`only_if_cached`]). Header parsing is `mediagate_rtsp`'s, not a second parser.
//!
//! The freshness lifetime is, in this order: the origin's `max-age`; else `Expires`
//! minus the time the DESCRIBE was answered (an unparseable `Expires`, `0` included, is
//! already expired; more than a year ahead counts as a year); else a tenth of the time
//! since `Last-Modified`, at most [`HEURISTIC_CAP_SECS`]; else zero (revalidate every
//! time: cheap, a conditional DESCRIBE). A header that does not parse is read the
//! strict way: an origin `Cache-Control` we cannot read means "do not cache", a
//! viewer's means "revalidate".

use mediagate_rtsp::headers::{CacheControl, HttpDate};
use mediagate_rtsp::TypedHeader;

use crate::Meta;

/// What the edge may do with a cached object for this viewer, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve from the cache without asking the origin.
    Fresh,
    /// Revalidate with the origin first (conditional DESCRIBE); if the origin cannot be
    /// reached the stale copy may still be served.
    Stale,
    /// Revalidate with the origin first and never serve the copy without that
    /// (`must-revalidate`, `proxy-revalidate`, or the viewer's `no-cache`).
    MustRevalidate,
    /// The origin forbids a shared cache to keep it (`no-cache`, `private`).
    NotCacheable,
}

/// The longest heuristic lifetime from `Last-Modified`, in seconds (a day).
pub const HEURISTIC_CAP_SECS: u64 = 24 * 3600;
/// "Never expires" is about a year ahead (RFC 7826 §18.22); later dates count as that.
pub const MAX_EXPIRES_SECS: u64 = 365 * 24 * 3600;

/// `Cache-Control` as a cache must read it: None when it does not parse.
fn parse(value: Option<&str>) -> Option<CacheControl> {
    match value {
        None => Some(CacheControl::default()),
        Some(v) if v.trim().is_empty() => Some(CacheControl::default()),
        Some(v) => CacheControl::parse_value(v.trim()).ok(),
    }
}

/// The freshness lifetime of `meta`, in ms.
pub fn lifetime_ms(meta: &Meta) -> u64 {
    let v = &meta.validators;
    let cc = parse(v.cache_control.as_deref()).unwrap_or_default();
    if let Some(max_age) = cc.max_age() {
        return max_age.saturating_mul(1000);
    }
    let fetched_s = (meta.fetched_unix_ms / 1000) as i64;
    if let Some(expires) = &v.expires {
        return match HttpDate::parse(expires.trim()) {
            Some(d) => {
                let ahead = d.unix_seconds().saturating_sub(fetched_s).max(0) as u64;
                ahead.min(MAX_EXPIRES_SECS) * 1000
            }
            None => 0,
        };
    }
    if let Some(lm) = v
        .last_modified
        .as_deref()
        .and_then(|s| HttpDate::parse(s.trim()))
    {
        let since = fetched_s.saturating_sub(lm.unix_seconds()).max(0) as u64;
        return (since.saturating_mul(1000) / 10).min(HEURISTIC_CAP_SECS * 1000);
    }
    0
}

/// Whether the cached object may be served to a viewer that sent `viewer_cache_control`.
pub fn fresh(meta: &Meta, viewer_cache_control: Option<&str>, now_unix_ms: u64) -> Freshness {
    let Some(origin) = parse(meta.validators.cache_control.as_deref()) else {
        return Freshness::NotCacheable;
    };
    if !origin.allows_shared_caching() {
        return Freshness::NotCacheable;
    }
    let Some(viewer) = parse(viewer_cache_control) else {
        return Freshness::MustRevalidate;
    };
    if viewer.no_cache() {
        return Freshness::MustRevalidate;
    }
    let lifetime = lifetime_ms(meta);
    let age = now_unix_ms.saturating_sub(meta.fetched_unix_ms);
    // The viewer's own limits: fresh for at least min-fresh more, and no older than
    // its max-age.
    let min_fresh = viewer.min_fresh().unwrap_or(0).saturating_mul(1000);
    let viewer_max_age_ok = viewer
        .max_age()
        .is_none_or(|m| age <= m.saturating_mul(1000));
    if age.saturating_add(min_fresh) < lifetime && viewer_max_age_ok {
        return Freshness::Fresh;
    }
    if origin.requires_revalidation() {
        return Freshness::MustRevalidate;
    }
    // Stale, and the viewer said how much staleness it accepts.
    let staleness = age.saturating_sub(lifetime);
    let accepted = match viewer.max_stale() {
        Some(None) => true,
        Some(Some(s)) => staleness <= s.saturating_mul(1000),
        None => false,
    };
    if accepted && viewer_max_age_ok && lifetime > 0 && min_fresh == 0 {
        return Freshness::Fresh;
    }
    Freshness::Stale
}

/// Whether the origin's answer (its `Cache-Control`) lets a shared cache store the
/// object: not `no-cache` nor `private`, and content that needed origin credentials
/// only when the origin marks it `public` or the operator's rule allows it (RFC 7826
/// §18.11 on `proxy-revalidate`; issue 13 item 6).
pub fn cacheable(
    resp_cache_control: Option<&str>,
    needed_auth: bool,
    rule_allows_auth: bool,
) -> bool {
    let Some(cc) = parse(resp_cache_control) else {
        return false;
    };
    cc.allows_shared_caching() && (!needed_auth || cc.is_public() || rule_allows_auth)
}

/// The viewer's `only-if-cached`: answer from the cache or with 504 (Gateway Timeout),
/// never by asking the origin.
pub fn only_if_cached(viewer_cache_control: Option<&str>) -> bool {
    parse(viewer_cache_control).is_some_and(|cc| cc.only_if_cached())
}

/// The viewer's `no-cache`: whatever is stored, the origin is asked first.
pub fn no_cache(viewer_cache_control: Option<&str>) -> bool {
    parse(viewer_cache_control).is_some_and(|cc| cc.no_cache())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TrackMeta, Validators};

    /// 2026-12-01T12:00:00Z, when the origin answered.
    const FETCHED_MS: u64 = 1_796_126_400_000;
    const S: u64 = 1000;

    fn meta(cc: Option<&str>, expires: Option<&str>, last_modified: Option<&str>) -> Meta {
        Meta {
            sdp: String::new(),
            tracks: vec![TrackMeta::video(96)],
            duration_ms: Some(60_000),
            validators: Validators {
                etag: None,
                last_modified: last_modified.map(str::to_string),
                expires: expires.map(str::to_string),
                cache_control: cc.map(str::to_string),
                sdp_origin: None,
            },
            needed_auth: false,
            fetched_unix_ms: FETCHED_MS,
        }
    }

    #[test]
    fn the_fetch_time_constant_is_the_date_the_tests_use() {
        let d = HttpDate::parse("Tue, 01 Dec 2026 12:00:00 GMT").unwrap();
        assert_eq!(d.unix_seconds() as u64 * 1000, FETCHED_MS);
    }

    #[test]
    fn lifetimes() {
        /// (origin Cache-Control, Expires, Last-Modified, lifetime ms)
        type Case = (
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            u64,
        );
        let cases: &[Case] = &[
            // max-age wins over Expires.
            (
                Some("max-age=60"),
                Some("Tue, 01 Dec 2026 13:00:00 GMT"),
                None,
                60 * S,
            ),
            (Some("public, max-age=0"), None, None, 0),
            // Duplicates: the strictest.
            (Some("max-age=600, max-age=30"), None, None, 30 * S),
            (None, Some("Tue, 01 Dec 2026 13:00:00 GMT"), None, 3600 * S),
            // Expires in the past, invalid, or "0": already expired.
            (None, Some("Tue, 01 Dec 2026 11:00:00 GMT"), None, 0),
            (None, Some("0"), None, 0),
            (None, Some("soon"), Some("Mon, 30 Nov 2026 12:00:00 GMT"), 0),
            // Ten years ahead counts as one year.
            (
                None,
                Some("Fri, 01 Dec 2036 12:00:00 GMT"),
                None,
                MAX_EXPIRES_SECS * S,
            ),
            // Heuristic: a tenth of the age since Last-Modified (10 h → 1 h), capped.
            (None, None, Some("Tue, 01 Dec 2026 02:00:00 GMT"), 3600 * S),
            (
                None,
                None,
                Some("Sun, 01 Nov 2026 12:00:00 GMT"),
                HEURISTIC_CAP_SECS * S,
            ),
            // RFC 850 and asctime forms parse too.
            (
                None,
                None,
                Some("Tuesday, 01-Dec-26 02:00:00 GMT"),
                3600 * S,
            ),
            (None, None, Some("Tue Dec  1 02:00:00 2026"), 3600 * S),
            // Last-Modified in the future, or nothing at all: revalidate every time.
            (None, None, Some("Wed, 02 Dec 2026 12:00:00 GMT"), 0),
            (None, None, None, 0),
        ];
        for &(cc, exp, lm, want) in cases {
            assert_eq!(
                lifetime_ms(&meta(cc, exp, lm)),
                want,
                "{cc:?} {exp:?} {lm:?}"
            );
        }
    }

    #[test]
    fn freshness_table() {
        use Freshness::*;
        type Case = (
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            u64,
            Freshness,
        );
        let hour = Some("Tue, 01 Dec 2026 13:00:00 GMT");
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // (origin Cache-Control, Expires, viewer Cache-Control, age, expected)
            (Some("max-age=60"), None, None, 0, Fresh),
            (Some("max-age=60"), None, None, 59 * S, Fresh),
            (Some("max-age=60"), None, None, 60 * S, Stale),
            (None, hour, None, 3599 * S, Fresh),
            (None, hour, None, 3600 * S, Stale),
            (None, None, None, 0, Stale),
            // The origin forbids a shared cache.
            (Some("no-cache"), hour, None, 0, NotCacheable),
            (Some("private, max-age=600"), None, None, 0, NotCacheable),
            (Some("NO-CACHE"), None, None, 0, NotCacheable),
            (Some("no-cache=\"Session\""), None, None, 0, NotCacheable),
            (Some("max-age=,,"), None, None, 0, NotCacheable),
            // Stale under must-revalidate / proxy-revalidate: no stale serving at all.
            (Some("max-age=60, must-revalidate"), None, None, 61 * S, MustRevalidate),
            (Some("max-age=60, proxy-revalidate"), None, None, 61 * S, MustRevalidate),
            (Some("max-age=60, must-revalidate"), None, None, 10 * S, Fresh),
            (Some("max-age=60, must-revalidate"), None, Some("max-stale"), 61 * S, MustRevalidate),
            // The viewer's no-cache: always ask the origin.
            (Some("max-age=600"), None, Some("no-cache"), 0, MustRevalidate),
            (Some("max-age=600"), None, Some("bad=\"unterminated"), 0, MustRevalidate),
            // max-stale: any staleness, or up to a bound.
            (Some("max-age=60"), None, Some("max-stale"), 3600 * S, Fresh),
            (Some("max-age=60"), None, Some("max-stale=30"), 90 * S, Fresh),
            (Some("max-age=60"), None, Some("max-stale=30"), 91 * S, Stale),
            // ...but not for an object that never had a lifetime.
            (None, None, Some("max-stale"), 5 * S, Stale),
            // min-fresh: needs that much freshness left.
            (Some("max-age=60"), None, Some("min-fresh=20"), 39 * S, Fresh),
            (Some("max-age=60"), None, Some("min-fresh=20"), 40 * S, Stale),
            // The viewer's max-age bounds the age it accepts.
            (Some("max-age=600"), None, Some("max-age=30"), 31 * S, Stale),
            (Some("max-age=600"), None, Some("max-age=30"), 30 * S, Fresh),
            // only-if-cached changes nothing here (the edge answers 504 instead of asking).
            (Some("max-age=60"), None, Some("only-if-cached"), 0, Fresh),
        ];
        for &(cc, exp, viewer, age, want) in cases {
            let m = meta(cc, exp, None);
            assert_eq!(
                fresh(&m, viewer, FETCHED_MS + age),
                want,
                "{cc:?} {exp:?} {viewer:?} age {age}"
            );
        }
        // A clock before the fetch (time stepped back) is age zero, not a wrap.
        assert_eq!(
            fresh(
                &meta(Some("max-age=60"), None, None),
                None,
                FETCHED_MS - 5 * S
            ),
            Fresh
        );
    }

    #[test]
    fn cacheable_table() {
        let cases: &[(Option<&str>, bool, bool, bool)] = &[
            // (origin Cache-Control, needed auth, rule allows auth, cacheable)
            (None, false, false, true),
            (Some("max-age=60"), false, false, true),
            (Some("no-cache"), false, true, false),
            (Some("private"), false, true, false),
            (None, true, false, false),
            (Some("max-age=60"), true, false, false),
            (Some("public"), true, false, true),
            (None, true, true, true),
            (Some("public, no-cache"), true, true, false),
            (Some("public,,=garbage"), false, false, false),
        ];
        for &(cc, auth, rule, want) in cases {
            assert_eq!(
                cacheable(cc, auth, rule),
                want,
                "{cc:?} auth {auth} rule {rule}"
            );
        }
    }

    #[test]
    fn only_if_cached_is_read_from_the_viewer() {
        assert!(only_if_cached(Some("only-if-cached")));
        assert!(only_if_cached(Some("max-stale, Only-If-Cached")));
        assert!(!only_if_cached(Some("no-cache")));
        assert!(!only_if_cached(None));
    }

    #[test]
    fn no_cache_is_read_from_the_viewer() {
        assert!(no_cache(Some("no-cache")));
        assert!(no_cache(Some(" max-stale, No-Cache ")));
        assert!(!no_cache(Some("only-if-cached")));
        assert!(!no_cache(Some("")));
        assert!(!no_cache(None));
    }
}
