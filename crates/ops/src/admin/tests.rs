//! The API served for real on loopback, with a fake role: routes against the OpenAPI
//! document, access rules, bad input, and the answers' shapes.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::routes::{admit, OPENAPI, ROUTES};
use super::*;
use crate::role::{ActError, DrainCut, DrainReport, Role, RoleStats};

struct FakeEdge;

impl Role for FakeEdge {
    fn name(&self) -> &'static str {
        "edge"
    }
    fn serving(&self) -> String {
        "edge on 127.0.0.1:1".into()
    }
    fn stats(&self) -> RoleStats {
        RoleStats {
            sessions: 1,
            unit: "viewers",
        }
    }
    fn max_drain(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn snapshot(&self, resource: &str) -> Option<RoleFuture<'_, Value>> {
        let picture = match resource {
            "viewers" => json!([{ "id": "abc", "user_agent": "<b>x</b>" }]),
            "streams" => json!([]),
            _ => return None,
        };
        Some(Box::pin(async move { picture }))
    }
    fn end_session(&self, resource: &str, id: &str) -> Option<RoleFuture<'_, bool>> {
        let found = resource == "viewers" && id == "abc";
        Some(Box::pin(async move { found }))
    }
    fn act(
        &self,
        resource: &str,
        action: &str,
        body: Value,
    ) -> Option<RoleFuture<'_, Result<Value, ActError>>> {
        if resource != "cache" {
            return None;
        }
        let answer = match (action, body["url"].as_str()) {
            ("list", _) => Ok(json!([{ "url": "rtsp://o/clip", "tracks": [0, 1] }])),
            (_, Some("rtsp://o/clip")) => Ok(json!({ "url": "rtsp://o/clip", "action": action })),
            (_, Some(_)) => Err(ActError::NotFound("no such object".into())),
            (_, None) => Err(ActError::BadRequest(format!("no url in {body}"))),
        };
        Some(Box::pin(async move { answer }))
    }
    fn drain(&self, _cut: DrainCut) -> RoleFuture<'static, DrainReport> {
        Box::pin(async {
            DrainReport {
                ended: 1,
                complete: true,
            }
        })
    }
}

fn start(token: Option<&str>) -> Admin {
    let (_tx, cut) = DrainCut::new();
    let roles = Arc::new(RoleSet::new(vec![Box::new(FakeEdge)], cut));
    let options = AdminOptions {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        listen_is_default: false,
        token: token.map(str::to_owned),
        tls: None,
    };
    Admin::start(options, roles, Metrics::new(), None)
        .unwrap()
        .expect("an address was given")
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The error message of a JSON error answer.
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .expect("an error message")
            .to_owned()
    }
}

async fn call(admin: &Admin, method: &str, path: &str, headers: &str, body: &[u8]) -> Answer {
    let mut conn = tokio::net::TcpStream::connect(admin.bound()[0])
        .await
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // A refused oversized body may be answered before it is all sent.
    let _ = conn.write_all(body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    Answer {
        status: head[9..12].parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

#[test]
fn the_routes_and_the_openapi_document_agree() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|&(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(served.len(), ROUTES.len(), "a route is listed twice");
    assert_eq!(served, documented);
}

#[tokio::test]
async fn cache_actions_go_to_the_role_that_keeps_the_cache() {
    let admin = start(None);
    let list = call(&admin, "GET", "/api/v1/cache", "", b"").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json()[0]["tracks"], json!([0, 1]));
    let pin = call(
        &admin,
        "POST",
        "/api/v1/cache/pin",
        "",
        br#"{"url":"rtsp://o/clip"}"#,
    )
    .await;
    assert_eq!(pin.status, 200, "{}", pin.body);
    assert_eq!(pin.json()["action"], "pin");
    let purge = call(
        &admin,
        "POST",
        "/api/v1/cache/purge",
        "",
        br#"{"url":"rtsp://o/x"}"#,
    )
    .await;
    assert_eq!(
        (purge.status, purge.error()),
        (404, "no such object".into())
    );
    let empty = call(&admin, "POST", "/api/v1/cache/unpin", "", b"").await;
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert_eq!(empty.error(), "no url in null");
    let garbage = call(&admin, "POST", "/api/v1/cache/pin", "", b"{url").await;
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    assert!(garbage
        .error()
        .starts_with("the request body is not valid JSON"));
    let get_pin = call(&admin, "GET", "/api/v1/cache/pin", "", b"").await;
    assert_eq!(get_pin.status, 405);
}

#[tokio::test]
async fn serves_roles_pictures_and_actions() {
    let admin = start(None);
    let roles = call(&admin, "GET", "/api/v1/roles", "", b"").await;
    assert_eq!(roles.status, 200, "{}", roles.body);
    assert!(roles.head.contains("content-type: application/json"));
    assert_eq!(roles.json()[0]["name"], "edge");
    assert_eq!(roles.json()[0]["state"], "running");
    assert_eq!(roles.json()[0]["sessions"], 1);

    let viewers = call(&admin, "GET", "/api/v1/edge/viewers", "", b"").await;
    assert_eq!(viewers.json()[0]["user_agent"], "<b>x</b>");
    let gone = call(&admin, "DELETE", "/api/v1/edge/viewers/abc", "", b"").await;
    assert_eq!(
        (gone.status, gone.json()["reason"].clone()),
        (200, json!("admin"))
    );
    let missing = call(&admin, "DELETE", "/api/v1/edge/viewers/nope", "", b"").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.error(),
        "no viewers session \"nope\" is running on the edge"
    );
    let relay = call(&admin, "GET", "/api/v1/relay/calls", "", b"").await;
    assert_eq!(relay.status, 404);
    assert_eq!(
        relay.error(),
        "the relay role is not running in this process"
    );

    let unknown = call(&admin, "GET", "/api/v2/nothing", "", b"").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.error().starts_with("no such resource"));
    let method = call(&admin, "PUT", "/api/v1/roles", "", b"").await;
    assert_eq!(method.status, 405);
    assert!(method.error().contains("does not take that method"));

    let reload = call(&admin, "POST", "/api/v1/reload", "", b"").await;
    assert_eq!(reload.status, 501);
    assert!(reload.error().starts_with("config reload is not available"));

    let metrics = call(&admin, "GET", "/metrics", "", b"").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .head
        .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(metrics.body.ends_with("# EOF\n"), "{}", metrics.body);
    let doc = call(&admin, "GET", "/openapi.json", "", b"").await;
    assert_eq!(doc.json()["openapi"], "3.1.0");

    let drained = call(
        &admin,
        "POST",
        "/api/v1/roles/edge/drain",
        "",
        br#"{"wait": true}"#,
    )
    .await;
    assert_eq!(drained.status, 200, "{}", drained.body);
    assert_eq!(
        drained.json()["drain"],
        json!({"ended": 1, "complete": true})
    );
    let roles = call(&admin, "GET", "/api/v1/roles", "", b"").await;
    assert_eq!(roles.json()[0]["state"], "drained");
    let no_role = call(&admin, "POST", "/api/v1/roles/balancer/drain", "", b"").await;
    assert_eq!(no_role.status, 404);
}

#[tokio::test]
async fn refuses_bad_bodies_with_a_reason() {
    let admin = start(None);
    let path = "/api/v1/roles/edge/drain";
    let malformed = call(&admin, "POST", path, "", b"{\"wait\": tru").await;
    assert_eq!(malformed.status, 400);
    assert!(
        malformed
            .error()
            .starts_with("the request body is not valid JSON"),
        "{}",
        malformed.body
    );
    let unknown = call(&admin, "POST", path, "", br#"{"wait": true, "now": 1}"#).await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown
            .error()
            .contains("unknown field `now`, expected `wait`"),
        "{}",
        unknown.body
    );
    let wrong_type = call(&admin, "POST", path, "", br#"{"wait": "yes"}"#).await;
    assert_eq!(wrong_type.status, 400);
    assert!(wrong_type
        .error()
        .starts_with("the request body does not fit"));
    let reload = call(
        &admin,
        "POST",
        "/api/v1/reload",
        "",
        br#"{"file": "/etc/x"}"#,
    )
    .await;
    assert_eq!(reload.status, 400, "{}", reload.body);
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let oversized = call(&admin, "POST", path, "", &big).await;
    assert_eq!(oversized.status, 413);
    assert_eq!(
        oversized.error(),
        format!("the request body is larger than {MAX_BODY_BYTES} bytes")
    );
    // None of them started a drain.
    let roles = call(&admin, "GET", "/api/v1/roles", "", b"").await;
    assert_eq!(roles.json()[0]["state"], "running");
}

#[tokio::test]
async fn a_configured_token_is_required() {
    let admin = start(Some("0123456789abcdef"));
    let none = call(&admin, "GET", "/api/v1/roles", "", b"").await;
    assert_eq!(none.status, 401);
    assert!(none.head.contains("www-authenticate: bearer"));
    assert!(none.error().starts_with("this API needs a token"));
    let wrong = call(
        &admin,
        "GET",
        "/metrics",
        "Authorization: Bearer 0123456789abcdeX\r\n",
        b"",
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.error()),
        (401, "the bearer token is wrong".into())
    );
    let right = call(
        &admin,
        "GET",
        "/metrics",
        "Authorization: Bearer 0123456789abcdef\r\n",
        b"",
    )
    .await;
    assert_eq!(right.status, 200);
}

#[tokio::test]
async fn the_default_address_when_taken_means_no_api() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (_tx, cut) = DrainCut::new();
    let roles = Arc::new(RoleSet::new(vec![Box::new(FakeEdge)], cut));
    let mut options = AdminOptions {
        listen: vec![addr],
        listen_is_default: true,
        token: None,
        tls: None,
    };
    let started = Admin::start(options.clone(), roles.clone(), Metrics::new(), None);
    assert!(matches!(started, Ok(None)));
    options.listen_is_default = false;
    let err = Admin::start(options, roles, Metrics::new(), None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot listen for the admin API on {addr}")),
        "{err}"
    );
}

#[test]
fn without_a_token_only_loopback_is_admitted() {
    let status = |token: Option<&str>, auth: Option<&[u8]>, peer: &str| {
        admit(token, auth, false, peer.parse().unwrap()).map_err(|e| (e.status.as_u16(), e.message))
    };
    assert_eq!(status(None, None, "127.0.0.1"), Ok(()));
    assert_eq!(status(None, None, "::1"), Ok(()));
    assert_eq!(status(None, None, "::ffff:127.0.0.1"), Ok(()));
    let refused = status(None, Some(b"Bearer whatever"), "192.0.2.7").unwrap_err();
    assert_eq!(refused.0, 403);
    assert!(refused.1.contains("loopback clients only"), "{}", refused.1);
    assert_eq!(status(None, None, "2001:db8::7").unwrap_err().0, 403);
    let verified_client = admit(None, None, true, "192.0.2.7".parse().unwrap());
    assert!(
        verified_client.is_ok(),
        "a verified client certificate admits"
    );
    let both = admit(
        Some("0123456789abcdef"),
        None,
        true,
        "192.0.2.7".parse().unwrap(),
    );
    assert!(
        both.is_err(),
        "a configured token is required on top of the certificate"
    );

    let token = Some("0123456789abcdef");
    assert_eq!(
        status(token, Some(b"Bearer 0123456789abcdef"), "192.0.2.7"),
        Ok(())
    );
    assert_eq!(
        status(token, None, "127.0.0.1").unwrap_err().0,
        401,
        "loopback needs it too"
    );
    assert_eq!(
        status(token, Some(b"Basic 0123456789abcdef"), "127.0.0.1")
            .unwrap_err()
            .0,
        401
    );
    assert_eq!(
        status(token, Some(b"Bearer 0123456789abcde"), "127.0.0.1")
            .unwrap_err()
            .0,
        401
    );
}

/// Opens `/api/v1/events` and reads until the first whole event; returns the connection
/// (still open) and what was read.
async fn open_events(admin: &Admin) -> (tokio::net::TcpStream, String) {
    let mut conn = tokio::net::TcpStream::connect(admin.bound()[0])
        .await
        .unwrap();
    conn.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw);
            let body_start = text.find("\r\n\r\n").map(|i| i + 4);
            if text.starts_with("HTTP/1.1 503")
                || body_start.is_some_and(|b| text[b..].contains("\n\n"))
            {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an event in time");
    (conn, String::from_utf8(raw).unwrap())
}

#[tokio::test]
async fn the_dashboard_page_is_served_under_a_strict_policy() {
    let admin = start(Some("0123456789abcdef"));
    let refused = call(&admin, "GET", "/", "", b"").await;
    assert_eq!(refused.status, 401);
    let wrong = call(&admin, "GET", "/?token=0123456789abcdeX", "", b"").await;
    assert_eq!(wrong.status, 401);
    let page = call(&admin, "GET", "/?token=0123456789abcdef", "", b"").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.head.contains("content-type: text/html; charset=utf-8"));
    let policy = page
        .head
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .expect("a content security policy");
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a nonce")
        .to_owned();
    assert!(nonce.len() >= 32, "{policy}");
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert!(page.body.contains(&format!("<script nonce=\"{nonce}\">")));
    assert!(page.body.contains(&format!("<style nonce=\"{nonce}\">")));
    assert!(!page.body.contains("<!--script-->"));
    let again = call(&admin, "GET", "/?token=0123456789abcdef", "", b"").await;
    assert!(!again.body.contains(&nonce), "a fresh nonce each time");
    // The query token is for the page only: the API still wants the header.
    let api = call(
        &admin,
        "GET",
        "/api/v1/roles?token=0123456789abcdef",
        "",
        b"",
    )
    .await;
    assert_eq!(api.status, 401);
    let header = call(
        &admin,
        "GET",
        "/",
        "Authorization: Bearer 0123456789abcdef\r\n",
        b"",
    )
    .await;
    assert_eq!(header.status, 200);
}

#[tokio::test]
async fn the_event_stream_sends_pictures_to_a_bounded_number_of_clients() {
    let admin = start(None);
    let (_first, text) = open_events(&admin).await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    // Chunked framing around `event: snapshot\ndata: {...}\n\n`.
    let data = body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data line: {body}"));
    assert!(body.contains("event: snapshot"), "{body}");
    let picture: Value = serde_json::from_str(data).unwrap();
    assert!(picture["at_unix_ms"].as_u64().unwrap() > 0);
    assert_eq!(picture["roles"][0]["name"], "edge");
    assert_eq!(picture["edge"]["viewers"][0]["user_agent"], "<b>x</b>");
    assert_eq!(picture["edge"]["viewers_total"], 1);
    assert_eq!(picture["edge"]["streams"], json!([]));
    assert!(picture.get("relay").is_none(), "{picture}");

    let mut open = Vec::new();
    for _ in 1..MAX_EVENT_CLIENTS {
        open.push(open_events(&admin).await.0);
    }
    let (_, busy) = open_events(&admin).await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(busy.contains("at most 4 event streams"), "{busy}");
    // The API's other routes are not held up by open streams.
    let roles = call(&admin, "GET", "/api/v1/roles", "", b"").await;
    assert_eq!(roles.status, 200);
    drop(open);
    // A seat frees once the server notices the client left (its next write fails).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = open_events(&admin).await;
        if text.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "seats never freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn open_event_streams_end_when_the_api_stops() {
    let admin = start(None);
    let (mut conn, _) = open_events(&admin).await;
    drop(admin);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
        .await
        .expect("the stream ends when the API stops")
        .unwrap();
}
