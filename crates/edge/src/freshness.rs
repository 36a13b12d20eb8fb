//! The edge's side of cache freshness for on-demand content: what the cache crate's
//! rules (`mediagate_cache::freshness`: RFC 2326 §12.8, RFC 7826 §18.11 Cache-Control,
//! §18.22 Expires, §18.27 Last-Modified, parsed by `mediagate_rtsp`) need from the edge,
//! and what they leave to it. Sans-IO: `now` is an argument.
//!
//! Added here: `[edge.cache] default_ttl`, the lifetime of content the origin said
//! nothing about (no `max-age`, `Expires` or readable `Last-Modified`; the crate's rules
//! alone would revalidate it every time); `no-store`, which is no RTSP directive (an
//! extension to `mediagate_rtsp`) but keeps an answer out of the cache as in HTTP; the
//! conditional DESCRIBE's headers (RFC 7826 §18.24 If-None-Match, §18.25
//! If-Modified-Since); the headers a `304` refreshes; and whether a revalidation's
//! answer is the same content.
//!
//! Same content: an answer whose validators (`ETag`/`MTag`, `Last-Modified`), SDP `o=`
//! version and SDP (apart from the lines that name one origin session: `o=`, `a=ssrc`)
//! match what is stored. Origins that send no validators (gst-rtsp-server sends none)
//! are then judged by the SDP alone.
//!
//! What it does not: talk to the origin, read the clock or touch the cache's files.

use std::time::Duration;

use mediagate_cache::freshness::{self as rules, Freshness};
use mediagate_cache::{Meta, Validators};
use mediagate_rtsp::headers::{CacheControl, CacheDirective, HttpDate};
use mediagate_rtsp::TypedHeader;

/// Whether an answer with `cache_control` may be stored: the crate's rule (not
/// `no-cache` or `private`; content that `needed_auth` only when `public` or the
/// route's `cache_authenticated`), and never with HTTP's `no-store`.
pub(crate) fn storable(
    cache_control: Option<&str>,
    needed_auth: bool,
    cache_authenticated: bool,
) -> bool {
    rules::cacheable(cache_control, needed_auth, cache_authenticated) && !no_store(cache_control)
}

fn no_store(cache_control: Option<&str>) -> bool {
    cache_control
        .and_then(|v| CacheControl::parse_value(v.trim()).ok())
        .is_some_and(|cc| {
            cc.0.iter().any(|d| {
                matches!(d, CacheDirective::Extension(e) if e.name.eq_ignore_ascii_case("no-store"))
            })
        })
}

/// Whether the stored headers say anything about the object's lifetime.
fn has_lifetime(v: &Validators) -> bool {
    let max_age = v
        .cache_control
        .as_deref()
        .and_then(|c| CacheControl::parse_value(c.trim()).ok())
        .is_some_and(|cc| cc.max_age().is_some());
    let modified = v
        .last_modified
        .as_deref()
        .is_some_and(|m| HttpDate::parse(m.trim()).is_some());
    max_age || v.expires.is_some() || modified
}

/// `meta` as the crate's rules should read it: content without lifetime information
/// gets `max-age` = `default_ttl`.
fn with_default_lifetime(meta: &Meta, default_ttl: Duration) -> std::borrow::Cow<'_, Meta> {
    if has_lifetime(&meta.validators) {
        return std::borrow::Cow::Borrowed(meta);
    }
    let mut m = meta.clone();
    let max_age = format!("max-age={}", default_ttl.as_secs());
    m.validators.cache_control = Some(match &meta.validators.cache_control {
        Some(cc) if !cc.trim().is_empty() => format!("{cc}, {max_age}"),
        _ => max_age,
    });
    std::borrow::Cow::Owned(m)
}

/// What to do with a stored object a viewer asks for at `now_unix_ms`, its PLAY
/// having said `viewer_cache_control`.
pub(crate) fn verdict(
    meta: &Meta,
    viewer_cache_control: Option<&str>,
    now_unix_ms: u64,
    default_ttl: Duration,
) -> Freshness {
    rules::fresh(
        &with_default_lifetime(meta, default_ttl),
        viewer_cache_control,
        now_unix_ms,
    )
}

/// The viewer's `only-if-cached`: served from the cache or answered `504`.
pub(crate) fn only_if_cached(viewer_cache_control: Option<&str>) -> bool {
    rules::only_if_cached(viewer_cache_control)
}

/// The viewer's `no-cache`: whatever is stored, the origin is asked first.
pub(crate) fn no_cache(viewer_cache_control: Option<&str>) -> bool {
    rules::no_cache(viewer_cache_control)
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

pub(crate) use mediagate_cache::{per_session_line, same_content};

#[cfg(test)]
#[path = "freshness_tests.rs"]
mod tests;
