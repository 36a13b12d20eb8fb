use std::collections::HashMap;

use mediagate_ng::bencode::dict;
use tokio::sync::broadcast;

use super::*;
use crate::pool::{CommandError, PoolFuture, RelayState, RelayView};

/// A pool whose relays answer as scripted, and which logs what it was sent.
struct FakePool {
    relays: Mutex<Vec<RelayView>>,
    failures: HashMap<u64, CommandError>,
    /// Relays that answer offers with this error reason.
    refusals: HashMap<u64, &'static str>,
    sent: Mutex<Vec<(u64, String)>>,
    /// Calls the relays answer `query` for with `Unknown call-id`.
    unknown: Mutex<Vec<String>>,
    events: broadcast::Sender<RelayEvent>,
}

impl FakePool {
    fn new(relays: &[(u64, &str, RelayState, u64)], failures: &[(u64, CommandError)]) -> Arc<Self> {
        let (events, _) = broadcast::channel(16);
        Arc::new(Self {
            relays: Mutex::new(
                relays
                    .iter()
                    .map(|&(id, ip, state, sessions)| RelayView {
                        id: RelayId(id),
                        name: format!("r{id}"),
                        addresses: vec![ip.parse().unwrap()],
                        state,
                        sessions,
                        bps: 0,
                    })
                    .collect(),
            ),
            failures: failures.iter().cloned().collect(),
            refusals: HashMap::new(),
            sent: Mutex::new(Vec::new()),
            unknown: Mutex::new(Vec::new()),
            events,
        })
    }

    fn sent(&self) -> Vec<(u64, String)> {
        self.sent.lock().unwrap().clone()
    }
}

/// A relay's answer: the offer's SDP with its address and port 30000 + relay id.
fn relay_reply(id: u64, request: &Value) -> Value {
    let command = request.get("command").and_then(Value::as_str).unwrap_or("");
    match command {
        "offer" | "answer" => {
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 192.0.2.{id}\r\ns=-\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\nc=IN IP4 192.0.2.{id}\r\n",
                30000 + id
            );
            reply::ok(vec![(b"sdp".to_vec(), Value::Bytes(sdp.into_bytes()))])
        }
        _ => reply::ok(vec![]),
    }
}

impl RelayPool for FakePool {
    fn relays(&self) -> Vec<RelayView> {
        self.relays.lock().unwrap().clone()
    }

    fn command(
        &self,
        relay: RelayId,
        request: Value,
        _deadline: Duration,
    ) -> PoolFuture<'_, Result<Value, CommandError>> {
        let command = request
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let call_id = request.get("call-id").and_then(Value::as_str).unwrap_or("");
        let unknown =
            command == "query" && self.unknown.lock().unwrap().iter().any(|c| c == call_id);
        self.sent.lock().unwrap().push((relay.0, command));
        let result = match (self.failures.get(&relay.0), self.refusals.get(&relay.0)) {
            (Some(e), _) => Err(e.clone()),
            (None, _) if unknown => Ok(reply::error(reply::UNKNOWN_CALL_ID)),
            (None, Some(reason)) => Ok(reply::error(reason)),
            (None, None) => Ok(relay_reply(relay.0, &request)),
        };
        Box::pin(async move { result })
    }

    fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
        self.events.subscribe()
    }
}

#[derive(Default)]
struct Recorded(Mutex<Vec<EndedCall>>);

impl EndedHook for Recorded {
    fn ended(&self, call: EndedCall) {
        self.0.lock().unwrap().push(call);
    }
}

fn router(pool: &Arc<FakePool>) -> (Arc<Router>, Arc<Recorded>) {
    let hook = Arc::new(Recorded::default());
    let pool: Arc<dyn RelayPool> = Arc::clone(pool) as Arc<dyn RelayPool>;
    let r = Router::start(
        pool,
        SessionMap::in_memory(),
        Duration::from_millis(100),
        Arc::clone(&hook) as Arc<dyn EndedHook>,
    );
    (r, hook)
}

fn ng(command: &str, call_id: &str) -> Value {
    dict([
        ("command", Value::str(command)),
        ("call-id", Value::str(call_id)),
        ("from-tag", Value::str("ft")),
        ("to-tag", Value::str("tt")),
        ("sdp", Value::str("v=0\r\n")),
    ])
}

#[tokio::test]
async fn a_new_call_skips_relays_that_fail_and_sticks_to_the_one_that_took_it() {
    let pool = FakePool::new(
        &[
            (1, "192.0.2.1", RelayState::Active, 0),
            (2, "192.0.2.2", RelayState::Active, 1),
            (3, "192.0.2.3", RelayState::Active, 2),
            (4, "192.0.2.4", RelayState::Active, 3),
            (5, "192.0.2.5", RelayState::Halting, 0),
        ],
        &[
            (1, CommandError::Halting),
            (2, CommandError::Timeout),
            (3, CommandError::Gone),
        ],
    );
    let (router, hook) = router(&pool);
    let reply = router.handle_ng(ng("offer", "c1")).await;
    assert_eq!(reply::result_of(&reply), Some("ok"));
    assert_eq!(
        pool.sent(),
        [
            (1, "offer".to_owned()),
            (2, "offer".to_owned()),
            (3, "offer".to_owned()),
            (4, "offer".to_owned())
        ]
    );
    // The call stays on relay 4 although relay 4 now looks busiest.
    pool.relays.lock().unwrap()[3].sessions = 1000;
    router.handle_ng(ng("answer", "c1")).await;
    router.handle_ng(ng("query", "c1")).await;
    assert_eq!(router.calls()[0].1.to_tag.as_deref(), Some("tt"));
    let reply = router.handle_ng(ng("delete", "c1")).await;
    assert_eq!(reply::result_of(&reply), Some("ok"));
    assert_eq!(
        pool.sent().get(4..).unwrap(),
        [
            (4, "answer".to_owned()),
            (4, "query".to_owned()),
            (4, "delete".to_owned())
        ]
    );
    assert_eq!(router.call_count(), 0);
    let ended = hook.0.lock().unwrap().clone();
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (
            ended[0].call_id.as_str(),
            ended[0].relay.as_str(),
            ended[0].reason.as_str()
        ),
        ("c1", "r4", "deleted")
    );
    assert_eq!(ended[0].stats["result"], "ok");
}

#[tokio::test]
async fn out_of_ports_tries_the_next_relay_but_a_bad_request_does_not() {
    let mut pool = FakePool::new(
        &[
            (1, "192.0.2.1", RelayState::Active, 0),
            (2, "192.0.2.2", RelayState::Active, 1),
        ],
        &[],
    );
    Arc::get_mut(&mut pool)
        .unwrap()
        .refusals
        .insert(1, reply::RAN_OUT_OF_PORTS);
    let (first, _) = router(&pool);
    let reply = first.handle_ng(ng("offer", "p")).await;
    assert_eq!(reply::result_of(&reply), Some("ok"));
    assert_eq!(first.calls()[0].1.relay, "r2");

    let mut pool = FakePool::new(
        &[
            (1, "192.0.2.1", RelayState::Active, 0),
            (2, "192.0.2.2", RelayState::Active, 1),
        ],
        &[],
    );
    Arc::get_mut(&mut pool)
        .unwrap()
        .refusals
        .insert(1, reply::SDP_PARSE_FAILED);
    let (router, _) = router(&pool);
    let reply = router.handle_ng(ng("offer", "q")).await;
    assert_eq!(
        reply.get("error-reason").and_then(Value::as_str),
        Some(reply::SDP_PARSE_FAILED)
    );
    assert_eq!(pool.sent(), [(1, "offer".to_owned())]);
    assert_eq!(router.call_count(), 0);
}

#[tokio::test]
async fn no_relay_left_is_an_error_and_unknown_calls_are_refused_locally() {
    let pool = FakePool::new(
        &[(1, "192.0.2.1", RelayState::Active, 0)],
        &[(1, CommandError::Timeout)],
    );
    let (router, _) = router(&pool);
    let reply = router.handle_ng(ng("offer", "c1")).await;
    assert_eq!(reply::result_of(&reply), Some("error"));
    assert_eq!(
        reply.get("error-reason").and_then(Value::as_str),
        Some(NO_RELAY)
    );
    assert_eq!(router.call_count(), 0);
    for command in ["answer", "query", "delete"] {
        let reply = router.handle_ng(ng(command, "nope")).await;
        assert_eq!(
            reply.get("error-reason").and_then(Value::as_str),
            Some(reply::UNKNOWN_CALL_ID),
            "{command}"
        );
    }
    let reply = router
        .handle_ng(dict([("command", Value::str("ping"))]))
        .await;
    assert_eq!(reply::result_of(&reply), Some("pong"));
    // Only the one offer reached a relay.
    assert_eq!(pool.sent().len(), 1);
}

#[tokio::test]
async fn the_preferred_relay_goes_first_by_key_or_flag() {
    let pool = FakePool::new(
        &[
            (1, "192.0.2.1", RelayState::Active, 0),
            (2, "192.0.2.2", RelayState::Active, 5),
        ],
        &[],
    );
    let (router, _) = router(&pool);
    let mut by_key = ng("offer", "k");
    if let Value::Dict(d) = &mut by_key {
        d.push((b"media-relay".to_vec(), Value::str("192.0.2.2")));
    }
    router.handle_ng(by_key).await;
    let mut by_flag = ng("offer", "f");
    if let Value::Dict(d) = &mut by_flag {
        d.push((
            b"flags".to_vec(),
            Value::List(vec![
                Value::str("trust-address"),
                Value::str("media-relay=192.0.2.2"),
            ]),
        ));
    }
    router.handle_ng(by_flag).await;
    router.handle_ng(ng("offer", "none")).await;
    let relays: Vec<(String, String)> = router
        .calls()
        .into_iter()
        .map(|(c, p)| (c, p.relay))
        .collect();
    assert_eq!(
        relays,
        [
            ("f".to_owned(), "r2".to_owned()),
            ("k".to_owned(), "r2".to_owned()),
            ("none".to_owned(), "r1".to_owned())
        ]
    );
}

#[tokio::test]
async fn reconnect_forgets_lost_calls_and_ended_calls_are_handed_over() {
    let pool = FakePool::new(&[(1, "192.0.2.1", RelayState::Active, 0)], &[]);
    let (router, hook) = router(&pool);
    for c in ["a", "b", "c"] {
        router.handle_ng(ng("offer", c)).await;
    }
    // "a" was placed a moment ago, so the router asks the relay before forgetting it.
    pool.unknown.lock().unwrap().push("a".into());
    pool.events
        .send(RelayEvent::Connected {
            relay: RelayId(1),
            calls: vec!["b".into(), "c".into()],
        })
        .unwrap();
    pool.events
        .send(RelayEvent::Ended {
            relay: RelayId(1),
            call_id: "c".into(),
            reason: "media timeout".into(),
            stats: serde_json::json!({"call_id": "c"}),
        })
        .unwrap();
    // An Ended for a call on another relay changes nothing.
    pool.events
        .send(RelayEvent::Ended {
            relay: RelayId(9),
            call_id: "b".into(),
            reason: "media timeout".into(),
            stats: serde_json::Value::Null,
        })
        .unwrap();
    for _ in 0..100 {
        if hook.0.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let ended: Vec<(String, String)> = hook
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.call_id.clone(), e.reason.clone()))
        .collect();
    assert_eq!(
        ended,
        [
            ("a".to_owned(), "relay lost the call".to_owned()),
            ("c".to_owned(), "media timeout".to_owned())
        ]
    );
    let left: Vec<String> = router.calls().into_iter().map(|(c, _)| c).collect();
    assert_eq!(left, ["b"]);
}

#[tokio::test]
async fn mediaproxy_requests_get_the_exact_replies() {
    let pool = FakePool::new(
        &[
            (1, "192.0.2.1", RelayState::Active, 0),
            (2, "192.0.2.2", RelayState::Active, 9),
        ],
        &[],
    );
    let (router, _) = router(&pool);
    let parse = |text: &str| match mediaproxy::parse_request(
        text.as_bytes(),
        &mediaproxy::Limits::default(),
    ) {
        Ok(mediaproxy::Parsed::Request(r, _)) => r,
        other => panic!("{other:?}"),
    };
    let update = parse("update\r\ntype: request\r\ncall_id: m1\r\nfrom_tag: a\r\nmedia_relay: 192.0.2.2\r\ndialog_id: 77\r\nmedia: audio:10.0.0.5:4000:sendrecv\r\n\r\n");
    assert_eq!(
        router.handle_mediaproxy(&update).await,
        b"192.0.2.2 30002\r\n"
    );
    assert_eq!(router.calls()[0].1.dialog_id.as_deref(), Some("77"));
    let answer = parse("update\r\ntype: reply\r\ncall_id: m1\r\nfrom_tag: a\r\nto_tag: b\r\nmedia: audio:10.0.0.6:5000:sendrecv\r\n\r\n");
    assert_eq!(
        router.handle_mediaproxy(&answer).await,
        b"192.0.2.2 30002\r\n"
    );
    let stray = parse("update\r\ntype: reply\r\ncall_id: other\r\nfrom_tag: a\r\nmedia: audio:10.0.0.6:5000:sendrecv\r\n\r\n");
    assert_eq!(router.handle_mediaproxy(&stray).await, b"error\r\n");
    let remove = parse("remove\r\ncall_id: m1\r\nfrom_tag: a\r\n\r\n");
    assert_eq!(router.handle_mediaproxy(&remove).await, b"removed\r\n");
    assert_eq!(router.handle_mediaproxy(&remove).await, b"error\r\n");
    assert_eq!(
        pool.sent(),
        [
            (2, "offer".to_owned()),
            (2, "answer".to_owned()),
            (2, "delete".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_restarted_router_sends_a_running_call_to_its_relay() {
    let dir = std::env::temp_dir().join(format!("mg-router-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sessions.sqlite");
    let pool = FakePool::new(
        &[
            (1, "192.0.2.1", RelayState::Active, 5),
            (2, "192.0.2.2", RelayState::Active, 0),
        ],
        &[],
    );
    let start = |map| {
        Router::start(
            Arc::clone(&pool) as Arc<dyn RelayPool>,
            map,
            Duration::from_millis(100),
            Arc::new(LogEnded),
        )
    };
    let first = start(SessionMap::open(&file).unwrap());
    first.handle_ng(ng("offer", "kept")).await;
    drop(first);
    // Relay 2 is now the busier one; the call still goes back to it.
    pool.relays.lock().unwrap()[1].sessions = 100;
    let second = start(SessionMap::open(&file).unwrap());
    assert_eq!(second.call_count(), 1);
    let reply = second.handle_ng(ng("query", "kept")).await;
    assert_eq!(reply::result_of(&reply), Some("ok"));
    assert_eq!(
        pool.sent(),
        [(2, "offer".to_owned()), (2, "query".to_owned())]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_young_call_missing_from_a_list_taken_before_it_is_kept_if_the_relay_has_it() {
    let pool = FakePool::new(&[(1, "192.0.2.1", RelayState::Active, 0)], &[]);
    let (router, hook) = router(&pool);
    // The list was taken before "late" was placed, and arrives after.
    router.handle_ng(ng("offer", "late")).await;
    router.handle_ng(ng("offer", "lost")).await;
    pool.unknown.lock().unwrap().push("lost".into());
    pool.events
        .send(RelayEvent::Connected {
            relay: RelayId(1),
            calls: vec![],
        })
        .unwrap();
    for _ in 0..100 {
        if !hook.0.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ended: Vec<String> = hook
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.call_id.clone())
        .collect();
    assert_eq!(ended, ["lost"]);
    let left: Vec<String> = router.calls().into_iter().map(|(c, _)| c).collect();
    assert_eq!(left, ["late"]);
    assert!(pool.sent().contains(&(1, "query".to_owned())));
}
