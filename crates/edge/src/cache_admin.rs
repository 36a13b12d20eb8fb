//! The cache as the admin API and `mediagate cache` see it: the list of objects, and
//! pin, unpin and purge of one URL's variants (issue 13 item 7).
//!
//! What it does: turns the cache's [`ObjectInfo`]s into the JSON the OpenAPI document
//! describes (`CacheObject`), and applies an action to every object of a URL, or to
//! the one variant named by its track list. What it does not: fill or prefetch (the
//! edge's fill path does), or lock anything itself: the caller runs it inside
//! [`CacheStore::with`](crate::cache_store::CacheStore::with), off the async threads.

use mediagate_cache::{Cache, ObjectInfo, ObjectKey};
use mediagate_ops::role::ActError;
use serde::Deserialize;
use serde_json::{json, Value};

/// What a pin, unpin or purge applies to: `{"url": ..., "tracks": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheTarget {
    /// The origin URL, as the list shows it.
    pub url: String,
    /// One variant (its SDP media indexes); none: every variant of the URL.
    #[serde(default)]
    pub tracks: Option<Vec<usize>>,
}

impl CacheTarget {
    /// Reads an API body, saying what a right one looks like.
    pub fn from_body(body: Value) -> Result<Self, ActError> {
        serde_json::from_value(body).map_err(|e| {
            ActError::BadRequest(format!(
                "the request body does not fit this request: {e}; send {{\"url\": \"rtsp://...\"}} with \"tracks\": [0, 1] to name one variant"
            ))
        })
    }

    fn matches(&self, key: &ObjectKey) -> bool {
        key.url == self.url
            && self.tracks.as_ref().is_none_or(|t| {
                let mut wanted = t.clone();
                wanted.sort_unstable();
                wanted.dedup();
                wanted == key.tracks
            })
    }
}

/// What `POST /api/v1/cache/prefetch` asks: `{"url": ..., "tracks": [...], "speed": 4}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrefetchRequest {
    /// The URL as a viewer asks it of this edge, or the origin URL.
    pub url: String,
    /// The variant (SDP media indexes); none: every track.
    #[serde(default)]
    pub tracks: Option<Vec<usize>>,
    /// The `Speed` asked of the origin (1 = real time).
    #[serde(default)]
    pub speed: Option<f64>,
}

impl PrefetchRequest {
    pub fn from_body(body: Value) -> Result<Self, ActError> {
        let req: Self = serde_json::from_value(body).map_err(|e| {
            ActError::BadRequest(format!(
                "the request body does not fit this request: {e}; send {{\"url\": \"rtsp://...\"}}, optionally with \"tracks\": [0, 1] and \"speed\": 4"
            ))
        })?;
        if req.speed.is_some_and(|s| !(0.1..=100.0).contains(&s)) {
            return Err(ActError::BadRequest(
                "\"speed\" must be between 0.1 and 100 (1 = real time)".into(),
            ));
        }
        Ok(req)
    }
}

/// One object as `GET /api/v1/cache` lists it.
fn object_json(o: &ObjectInfo) -> Value {
    json!({
        "url": o.key.url,
        "tracks": o.key.tracks,
        "complete": o.complete,
        "ranges": o.ranges.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>(),
        "duration_ms": o.meta.duration_ms,
        "size_bytes": o.size_bytes,
        "pinned": o.pinned,
        "last_used_unix_ms": o.last_used_unix_ms,
    })
}

/// Whether any variant of `url` is cached.
pub(crate) fn holds(cache: &Cache, url: &str) -> bool {
    cache.list().iter().any(|o| o.key.url == url)
}

/// Every object, most recently used first.
pub(crate) fn list(cache: &Cache) -> Value {
    let mut objects = cache.list();
    objects.sort_by(|a, b| {
        b.last_used_unix_ms
            .cmp(&a.last_used_unix_ms)
            .then_with(|| a.key.cmp(&b.key))
    });
    Value::Array(objects.iter().map(object_json).collect())
}

/// Applies `action` (`pin`, `unpin` or `purge`) to the objects `target` names; the
/// answer lists them. Nothing named is `NotFound`, with the variants the URL has.
pub(crate) fn apply(
    cache: &mut Cache,
    action: &str,
    target: &CacheTarget,
) -> Result<Value, ActError> {
    let all = cache.list();
    let chosen: Vec<&ObjectInfo> = all.iter().filter(|o| target.matches(&o.key)).collect();
    if chosen.is_empty() {
        let variants: Vec<String> = all
            .iter()
            .filter(|o| o.key.url == target.url)
            .map(|o| format!("{:?}", o.key.tracks))
            .collect();
        return Err(ActError::NotFound(if variants.is_empty() {
            format!(
                "nothing of {:?} is cached; `mediagate cache list` shows what is (by origin URL)",
                target.url
            )
        } else {
            format!(
                "{:?} is cached only with tracks {}",
                target.url,
                variants.join(", ")
            )
        }));
    }
    let mut done = Vec::with_capacity(chosen.len());
    for o in chosen {
        let applied = match action {
            "pin" => cache.pin(&o.key, true),
            "unpin" => cache.pin(&o.key, false),
            "purge" => cache.purge(&o.key).map_err(|e| {
                ActError::Failed(format!(
                    "cannot remove {:?} tracks {:?}: {e}; see the process log",
                    o.key.url, o.key.tracks
                ))
            })?,
            other => {
                return Err(ActError::BadRequest(format!(
                    "unknown cache action {other:?}: pin, unpin or purge"
                )))
            }
        };
        if applied {
            tracing::info!(url = %o.key.url, tracks = ?o.key.tracks, "edge: cache {action} by the admin API");
            done.push(json!({ "tracks": o.key.tracks, "size_bytes": o.size_bytes }));
        }
    }
    Ok(json!({ "url": target.url, "action": action, "objects": done }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(url: &str, tracks: &[usize]) -> ObjectKey {
        ObjectKey {
            url: url.into(),
            tracks: tracks.to_vec(),
        }
    }

    #[test]
    fn a_target_names_one_variant_or_all() {
        let all = CacheTarget::from_body(json!({ "url": "rtsp://o/a" })).unwrap();
        assert!(all.matches(&key("rtsp://o/a", &[0, 1])));
        assert!(all.matches(&key("rtsp://o/a", &[1])));
        assert!(!all.matches(&key("rtsp://o/b", &[0])));
        let one = CacheTarget::from_body(json!({ "url": "rtsp://o/a", "tracks": [1, 0] })).unwrap();
        assert!(
            one.matches(&key("rtsp://o/a", &[0, 1])),
            "order does not matter"
        );
        assert!(!one.matches(&key("rtsp://o/a", &[1])));
    }

    #[test]
    fn bodies_that_do_not_fit_say_what_does() {
        for body in [
            json!(null),
            json!({ "tracks": [0] }),
            json!({ "url": "rtsp://o/a", "track": [0] }),
            json!({ "url": "rtsp://o/a", "tracks": [-1] }),
        ] {
            let Err(ActError::BadRequest(m)) = CacheTarget::from_body(body.clone()) else {
                panic!("{body} was accepted");
            };
            assert!(m.contains("send {\"url\": \"rtsp://...\"}"), "{m}");
        }
    }
}
