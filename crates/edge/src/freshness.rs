//! Cache freshness rules for on-demand content, sans-IO: whether an origin's answer may
//! be stored, whether a stored object may be served as it is, and whether a
//! revalidation found the same content (RFC 7826 §18.11 Cache-Control, §18.20 Expires,
//! §18.27 Last-Modified, §18.24/§18.25 If-Modified-Since and If-None-Match; RFC 2326
//! §12.8, §12.22; the expiration model of RFC 7234 §4.2 that those sections follow).
//!
//! Storing: `no-store`, `private` and `no-cache` from the origin keep an answer out of
//! the cache altogether; content the origin wanted credentials for is stored only when
//! the origin marks it `public` or the route says `cache_authenticated = true`.
//!
//! Serving: an object is fresh while its age (now minus when the origin's DESCRIBE was
//! answered) is below its lifetime: `s-maxage`, else `max-age`, else `Expires` minus
//! the fetch time, else, with a `Last-Modified`, a tenth of how old the content was
//! when fetched (RFC 7234 §4.2.2), else the edge's `default_ttl`. The viewer may ask
//! for more (`no-cache`, `max-age`, `min-fresh`) or accept less (`max-stale`, unless the
//! origin said `must-revalidate` or `proxy-revalidate`). A stale object is revalidated
//! (a conditional DESCRIBE), not thrown away.
//!
//! Same content: a `304`, or an answer whose validators (`ETag`/`MTag`,
//! `Last-Modified`), SDP `o=` version and SDP (apart from the lines that name one
//! origin session: `o=`, `a=ssrc`) match what is stored. Origins that send no validators (gst-rtsp-server sends none) are then
//! judged by the SDP alone.
//!
//! What it does not: talk to the origin, read the clock or touch the cache's files.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mediagate_cache::{Meta, Validators};

/// The heuristic lifetime from `Last-Modified` is at most a day (RFC 7234 §4.2.2: a
/// longer one would need a warning the edge does not send).
const HEURISTIC_CAP_MS: u64 = 24 * 3600 * 1000;

/// The directives of an origin's `Cache-Control` that the edge acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OriginDirectives {
    pub public: bool,
    pub private: bool,
    pub no_store: bool,
    pub no_cache: bool,
    /// `must-revalidate` or `proxy-revalidate`: never served stale.
    pub must_revalidate: bool,
    /// `s-maxage` when given (it is meant for shared caches such as this), else `max-age`.
    pub max_age_s: Option<u64>,
}

/// The directives of a viewer's `Cache-Control`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ViewerDirectives {
    pub no_cache: bool,
    pub max_age_s: Option<u64>,
    /// `max-stale` alone: any staleness; `max-stale=N`: up to N seconds.
    pub max_stale_s: Option<Option<u64>>,
    pub min_fresh_s: Option<u64>,
    pub only_if_cached: bool,
}

/// One directive: lowercased name and its value without quotes.
fn directives(v: &str) -> impl Iterator<Item = (String, Option<&str>)> {
    v.split(',').filter_map(|d| {
        let d = d.trim();
        if d.is_empty() {
            return None;
        }
        let (name, value) = match d.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (d, None),
        };
        Some((name.to_ascii_lowercase(), value))
    })
}

fn seconds(v: Option<&str>) -> Option<u64> {
    v?.parse().ok()
}

impl OriginDirectives {
    /// Every `Cache-Control` value of the answer, joined by commas; unknown directives
    /// are ignored (RFC 7826 §18.11 lets caches ignore what they do not understand).
    pub fn parse(v: Option<&str>) -> Self {
        let mut d = Self::default();
        let mut max_age = None;
        let mut s_maxage = None;
        for (name, value) in directives(v.unwrap_or("")) {
            match name.as_str() {
                "public" => d.public = true,
                "private" => d.private = true,
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "must-revalidate" | "proxy-revalidate" => d.must_revalidate = true,
                "max-age" => max_age = seconds(value),
                "s-maxage" => s_maxage = seconds(value),
                _ => {}
            }
        }
        d.max_age_s = s_maxage.or(max_age);
        d
    }
}

impl ViewerDirectives {
    pub fn parse(v: Option<&str>) -> Self {
        let mut d = Self::default();
        for (name, value) in directives(v.unwrap_or("")) {
            match name.as_str() {
                "no-cache" => d.no_cache = true,
                "max-age" => d.max_age_s = seconds(value),
                "max-stale" => d.max_stale_s = Some(seconds(value)),
                "min-fresh" => d.min_fresh_s = seconds(value),
                "only-if-cached" => d.only_if_cached = true,
                _ => {}
            }
        }
        d
    }
}

/// Whether an answer with `cache_control` may be stored: never with `no-store`,
/// `private` or `no-cache`; content that `needed_auth` only when `public` or the
/// route's `cache_authenticated`.
pub(crate) fn storable(
    cache_control: Option<&str>,
    needed_auth: bool,
    cache_authenticated: bool,
) -> bool {
    let d = OriginDirectives::parse(cache_control);
    if d.no_store || d.private || d.no_cache {
        return false;
    }
    !needed_auth || d.public || cache_authenticated
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn http_date_ms(v: Option<&str>) -> Option<u64> {
    httpdate::parse_http_date(v?.trim()).ok().map(unix_ms)
}

/// How long an object fetched at `fetched_unix_ms` stays fresh, in ms.
pub(crate) fn lifetime_ms(v: &Validators, fetched_unix_ms: u64, default_ttl: Duration) -> u64 {
    let d = OriginDirectives::parse(v.cache_control.as_deref());
    if let Some(s) = d.max_age_s {
        return s.saturating_mul(1000);
    }
    if let Some(expires) = v.expires.as_deref() {
        // An invalid date (often "0") means already expired (RFC 7234 §5.3).
        return http_date_ms(Some(expires)).map_or(0, |e| e.saturating_sub(fetched_unix_ms));
    }
    if let Some(modified) = http_date_ms(v.last_modified.as_deref()) {
        return (fetched_unix_ms.saturating_sub(modified) / 10).min(HEURISTIC_CAP_MS);
    }
    u64::try_from(default_ttl.as_millis()).unwrap_or(u64::MAX)
}

/// What to do with a stored object a viewer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve it from the cache as it is.
    Fresh,
    /// Ask the origin first whether it changed (a conditional DESCRIBE).
    Revalidate,
}

/// The verdict for a stored object at `now_unix_ms` for a viewer whose request said
/// `viewer`.
pub(crate) fn verdict(
    meta: &Meta,
    viewer: &ViewerDirectives,
    now_unix_ms: u64,
    default_ttl: Duration,
) -> Verdict {
    let origin = OriginDirectives::parse(meta.validators.cache_control.as_deref());
    if origin.no_cache || viewer.no_cache {
        return Verdict::Revalidate;
    }
    let age = now_unix_ms.saturating_sub(meta.fetched_unix_ms);
    let lifetime = lifetime_ms(&meta.validators, meta.fetched_unix_ms, default_ttl);
    if viewer
        .max_age_s
        .is_some_and(|m| age > m.saturating_mul(1000))
    {
        return Verdict::Revalidate;
    }
    if let Some(min_fresh) = viewer.min_fresh_s {
        return if lifetime.saturating_sub(age) >= min_fresh.saturating_mul(1000) && age < lifetime {
            Verdict::Fresh
        } else {
            Verdict::Revalidate
        };
    }
    if age < lifetime {
        return Verdict::Fresh;
    }
    if origin.must_revalidate {
        return Verdict::Revalidate;
    }
    match viewer.max_stale_s {
        Some(None) => Verdict::Fresh,
        Some(Some(s)) if age - lifetime <= s.saturating_mul(1000) => Verdict::Fresh,
        _ => Verdict::Revalidate,
    }
}

/// The headers of a conditional DESCRIBE for a stored object (RFC 7826 §18.24, §18.25).
pub(crate) fn conditional_headers(v: &Validators) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    if let Some(tag) = &v.etag {
        h.push(("If-None-Match", tag.clone()));
    }
    if let Some(m) = &v.last_modified {
        h.push(("If-Modified-Since", m.clone()));
    }
    h
}

/// The stored validators after a `304` that `sent` these: each caching header the
/// `304` carries replaces the stored one (RFC 7234 §4.3.4); the SDP version stays.
pub(crate) fn updated(stored: &Validators, sent: Validators) -> Validators {
    Validators {
        etag: sent.etag.or_else(|| stored.etag.clone()),
        last_modified: sent.last_modified.or_else(|| stored.last_modified.clone()),
        expires: sent.expires.or_else(|| stored.expires.clone()),
        cache_control: sent.cache_control.or_else(|| stored.cache_control.clone()),
        sdp_origin: stored.sdp_origin.clone(),
    }
}

/// Whether an SDP line names one origin session rather than the content: `o=`
/// (its version is compared on its own) and RFC 5576's `a=ssrc` / `a=ssrc-group`,
/// which origins such as gst-rtsp-server draw afresh for every DESCRIBE.
pub(crate) fn per_session_line(line: &str) -> bool {
    line.starts_with("o=") || line.starts_with("a=ssrc:") || line.starts_with("a=ssrc-group:")
}

/// Whether a revalidation's answer (`current`) describes the content `stored` holds.
pub(crate) fn same_content(stored: &Meta, current: &Meta) -> bool {
    fn without_origin(sdp: &str) -> impl Iterator<Item = &str> {
        sdp.lines().filter(|l| !per_session_line(l))
    }
    let (s, c) = (&stored.validators, &current.validators);
    without_origin(&stored.sdp).eq(without_origin(&current.sdp))
        && stored.duration_ms == current.duration_ms
        && s.sdp_origin == c.sdp_origin
        && (s.etag.is_none() || c.etag.is_none() || s.etag == c.etag)
        && (s.last_modified.is_none()
            || c.last_modified.is_none()
            || s.last_modified == c.last_modified)
}

#[cfg(test)]
#[path = "freshness_tests.rs"]
mod tests;
