//! The live dashboard: the page at `/` and the event stream it reads,
//! `GET /api/v1/events`.
//!
//! What it does: serves one HTML page with its style and script inlined (the files in
//! `dashboard/`, embedded in the binary: no build step, nothing fetched from elsewhere),
//! under a Content-Security-Policy that admits only that style and script (a per-answer
//! nonce) and connections to this listener. The event stream sends a compact picture of
//! every role every [`EVENT_PERIOD`] as server-sent events (`event: snapshot`, one JSON
//! object per event): the roles and their state, the edge's streams and viewers and the
//! relay's calls, each list cut at [`MAX_LISTED`] entries with its full length beside
//! it. At most [`MAX_EVENT_CLIENTS`] streams are open at once (503 beyond), and every
//! stream ends when the API stops.
//!
//! What it does not: keep history (the page keeps the last minutes itself, so an idle
//! API holds nothing per dashboard), compute rates (the page derives them from the
//! counters' differences between two pictures, which never disturbs the streams'
//! `bitrate_bps` averaging for other API clients more than a plain request does), or
//! act on sessions.
//!
//! Access: the API's rules. A browser cannot put a header on its first request, so
//! `GET /` alone also takes the token as `?token=`; the page then drops it from the
//! address bar, keeps it in memory and sends it as `Authorization` on its own requests.
//! The page reads the event stream with `fetch` rather than `EventSource`, because
//! `EventSource` cannot send a header and would carry the token in every (re)connect's
//! URL, where proxies and logs keep it; the cost is a few lines of parsing and
//! reconnecting in the page.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::routes::{on_roles_runtime, roles_picture, ApiError, Shared};

/// Event streams open at once; more get 503.
pub const MAX_EVENT_CLIENTS: usize = 4;
/// Entries of one list (streams, viewers, calls) in a picture; the rest are counted.
pub const MAX_LISTED: usize = 100;
/// How often the event stream sends a picture.
pub const EVENT_PERIOD: Duration = Duration::from_secs(1);

const PAGE: &str = include_str!("dashboard/index.html");
const STYLE: &str = include_str!("dashboard/dashboard.css");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");

/// `GET /`: the page, with a fresh nonce for its inline style and script.
pub(super) async fn page() -> Response {
    let nonce = nonce();
    let html = PAGE
        .replacen(
            "<!--style-->",
            &format!("<style nonce=\"{nonce}\">\n{STYLE}</style>"),
            1,
        )
        .replacen(
            "<!--script-->",
            &format!("<script nonce=\"{nonce}\">\n{SCRIPT}</script>"),
            1,
        );
    let policy = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        html,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&policy) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// 128 random bits, hex: the page's script and style run, anything else inline does not.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("getrandom failed: {e}"));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /api/v1/events`: a picture every [`EVENT_PERIOD`] until the client leaves or
/// the API stops.
pub(super) async fn events(State(shared): State<Shared>) -> Result<Response, ApiError> {
    let Ok(seat) = shared.event_clients.clone().try_acquire_owned() else {
        let mut resp = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "at most {MAX_EVENT_CLIENTS} event streams (open dashboards) are served at once; close one and retry"
            ),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return Ok(resp);
    };
    let mut ticks = tokio::time::interval(EVENT_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = shared.stop.clone();
    let stream = futures_util::stream::unfold(
        (shared, seat, ticks, stop),
        |(shared, seat, mut ticks, mut stop)| async move {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|s| *s) => return None,
            }
            let data = picture(&shared).await.to_string();
            let event = Event::default().event("snapshot").data(data);
            Some((Ok::<_, Infallible>(event), (shared, seat, ticks, stop)))
        },
    );
    let mut resp = Sse::new(stream).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Reverse proxies (nginx) would otherwise hold the events back in their buffers.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// One picture: `{at_unix_ms, roles, edge?: {streams, streams_total, viewers,
/// viewers_total}, relay?: {calls, calls_total}}`. A role that does not answer in time
/// leaves its lists out of this picture (the page keeps showing the previous one).
async fn picture(shared: &Shared) -> Value {
    let at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut out = Map::new();
    out.insert("at_unix_ms".into(), json!(at_unix_ms));
    out.insert("roles".into(), roles_picture(&shared.roles));
    for (role_name, resources) in [
        ("edge", &["streams", "viewers"][..]),
        ("relay", &["calls"][..]),
    ] {
        let Some(role) = shared.roles.get(role_name).cloned() else {
            continue;
        };
        let mut lists = Map::new();
        for &resource in resources {
            let role = role.clone();
            let work = async move {
                match role.snapshot(resource) {
                    Some(picture) => Some(picture.await),
                    None => None,
                }
            };
            if let Ok(Some(Value::Array(mut list))) =
                on_roles_runtime(shared, role_name, work).await
            {
                lists.insert(format!("{resource}_total"), json!(list.len()));
                list.truncate(MAX_LISTED);
                lists.insert(resource.into(), Value::Array(list));
            }
        }
        out.insert(role_name.into(), Value::Object(lists));
    }
    Value::Object(out)
}

/// The `token` of a query string (`application/x-www-form-urlencoded`, as the page's
/// `URLSearchParams` reads it), for `GET /?token=...`.
pub(super) fn query_token(query: &str) -> Option<Vec<u8>> {
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))?;
    let raw = raw.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => {
                let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_token_is_form_decoded() {
        assert_eq!(query_token("token=abc"), Some(b"abc".to_vec()));
        assert_eq!(
            query_token("x=1&token=a%2Bb+c%25"),
            Some(b"a+b c%".to_vec())
        );
        assert_eq!(query_token("token=50%"), Some(b"50%".to_vec()));
        assert_eq!(query_token("token=%zz"), Some(b"%zz".to_vec()));
        assert_eq!(query_token("tokens=abc"), None);
        assert_eq!(query_token(""), None);
    }

    #[test]
    fn the_page_inlines_its_style_and_script_and_loads_nothing_else() {
        assert!(PAGE.contains("<!--style-->") && PAGE.contains("<!--script-->"));
        for text in [PAGE, STYLE, SCRIPT] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        assert!(
            !SCRIPT.contains("innerHTML") && !SCRIPT.contains("insertAdjacentHTML"),
            "client strings go in as text"
        );
    }
}
