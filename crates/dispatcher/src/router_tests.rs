use std::collections::HashMap;

use mediagate_ng::bencode::dict;
use tokio::sync::broadcast;

use super::*;
use crate::chain::ChainPolicy;
use crate::pool::{CommandError, PoolFuture, RelayState, RelayView};

/// A pool whose relays answer as scripted, and which logs what it was sent.
struct FakePool {
    relays: Mutex<Vec<RelayView>>,
    failures: HashMap<u64, CommandError>,
    /// Relays that answer offers with this error reason.
    refusals: HashMap<u64, &'static str>,
    sent: Mutex<Vec<(u64, String)>>,
    /// Every request as sent, with the relay's id.
    requests: Mutex<Vec<(u64, Value)>>,
    events: broadcast::Sender<RelayEvent>,
    /// The calls the relays hold, when a test says: a `query` for any other call gets
    /// `Unknown call-id`, as a relay that lost it answers. `None`: every query is ok.
    held: Mutex<Option<Vec<String>>>,
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
                        report: None,
                    })
                    .collect(),
            ),
            failures: failures.iter().cloned().collect(),
            refusals: HashMap::new(),
            sent: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            events,
            held: Mutex::new(None),
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
        self.sent.lock().unwrap().push((relay.0, command.clone()));
        self.requests
            .lock()
            .unwrap()
            .push((relay.0, request.clone()));
        let result = match (self.failures.get(&relay.0), self.refusals.get(&relay.0)) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(reason)) => Ok(reply::error(reason)),
            (None, None) if command == "query" => {
                let call_id = request.get("call-id").and_then(Value::as_str).unwrap_or("");
                match &*self.held.lock().unwrap() {
                    Some(held) if !held.iter().any(|c| c == call_id) => {
                        Ok(reply::error(reply::UNKNOWN_CALL_ID))
                    }
                    _ => Ok(relay_reply(relay.0, &request)),
                }
            }
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
    *pool.held.lock().unwrap() = Some(vec!["b".into(), "c".into()]);
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
async fn a_call_placed_after_the_relays_list_is_kept_on_reconnect() {
    let pool = FakePool::new(&[(1, "192.0.2.1", RelayState::Active, 0)], &[]);
    let (router, hook) = router(&pool);
    router.handle_ng(ng("offer", "old")).await;
    router.handle_ng(ng("offer", "new")).await;
    // The list was taken before "new" was placed; the relay answers a query for
    // "new" (it holds it) but not for "old" (lost in a restart).
    *pool.held.lock().unwrap() = Some(vec!["new".into()]);
    pool.events
        .send(RelayEvent::Connected {
            relay: RelayId(1),
            calls: Vec::new(),
        })
        .unwrap();
    for _ in 0..100 {
        if !hook.0.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let ended: Vec<String> = hook
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.call_id.clone())
        .collect();
    assert_eq!(ended, ["old"]);
    let left: Vec<String> = router.calls().into_iter().map(|(c, _)| c).collect();
    assert_eq!(left, ["new"]);
    let queries = pool
        .sent()
        .into_iter()
        .filter(|(_, c)| c == "query")
        .count();
    assert_eq!(queries, 2, "one query per missing call");
}

/// Relays r1 and r2 are group `pub`, r3 and r4 group `priv`; calls with the `ng` flag
/// `chain` go through `pub` then `priv`.
const CHAINED: &str = "[edge]\nenabled = false\n[dispatcher]\nenabled = true\nng_listen_udp = [\"127.0.0.1:2223\"]\nrelay_listen = \"0.0.0.0:25060\"\ntls_dir = \"pki\"\n[[dispatcher.relay_group]]\nname = \"pub\"\nrelays = [\"r1\", \"r2\"]\n[[dispatcher.relay_group]]\nname = \"priv\"\nrelays = [\"r3\", \"r4\"]\n[[dispatcher.chain]]\nfirst = \"pub\"\nsecond = \"priv\"\nflag = \"chain\"\n";

/// A router with [`CHAINED`]'s rules over `pool`.
fn chained_router(pool: &Arc<FakePool>) -> (Arc<Router>, Arc<Recorded>) {
    let config = mediagate_config::parse_config(CHAINED).unwrap();
    let hook = Arc::new(Recorded::default());
    let r = Router::start_with_chains(
        Arc::clone(pool) as Arc<dyn RelayPool>,
        SessionMap::in_memory(),
        Duration::from_millis(100),
        Arc::clone(&hook) as Arc<dyn EndedHook>,
        ChainPolicy::from_config(&config.dispatcher),
    );
    (r, hook)
}

fn chained(command: &str, call_id: &str, sdp: &str) -> Value {
    dict([
        ("call-id", Value::str(call_id)),
        ("command", Value::str(command)),
        ("flags", Value::List(vec![Value::str("chain")])),
        ("from-tag", Value::str("ft")),
        (
            "received-from",
            Value::List(vec![Value::str("IP4"), Value::str("203.0.113.5")]),
        ),
        ("sdp", Value::str(sdp)),
        ("to-tag", Value::str("tt")),
    ])
}

fn sdp_of(v: &Value) -> String {
    String::from_utf8(v.get("sdp").and_then(Value::as_bytes).unwrap().to_vec()).unwrap()
}

fn four_relays(failures: &[(u64, CommandError)]) -> Arc<FakePool> {
    FakePool::new(
        &[
            (1, "192.0.2.1", RelayState::Active, 0),
            (2, "192.0.2.2", RelayState::Active, 1),
            (3, "192.0.2.3", RelayState::Active, 0),
            (4, "192.0.2.4", RelayState::Active, 1),
        ],
        failures,
    )
}

/// What the pool was sent from the `from`th command on, as `"r1 offer"`.
fn sent(pool: &FakePool, from: usize) -> Vec<String> {
    pool.sent()
        .get(from..)
        .unwrap_or_default()
        .iter()
        .map(|(id, c)| format!("r{id} {c}"))
        .collect()
}

#[tokio::test]
async fn a_chained_call_offers_through_a_then_b_and_answers_through_b_then_a() {
    let pool = four_relays(&[]);
    let (router, hook) = chained_router(&pool);
    let caller = "v=0\r\nc=IN IP4 203.0.113.5\r\nm=audio 4000 RTP/AVP 0\r\n";
    let reply = router.handle_ng(chained("offer", "c1", caller)).await;
    // The proxy gets B's SDP; B got A's, without the caller's received-from.
    assert!(sdp_of(&reply).contains("192.0.2.3"), "{}", sdp_of(&reply));
    assert_eq!(sent(&pool, 0), ["r1 offer", "r3 offer"]);
    {
        let requests = pool.requests.lock().unwrap();
        assert_eq!(sdp_of(&requests[0].1), caller);
        assert!(requests[0].1.get("received-from").is_some());
        assert!(sdp_of(&requests[1].1).contains("192.0.2.1"));
        assert!(requests[1].1.get("received-from").is_none());
        assert_eq!(
            requests[1].1.get("from-tag").and_then(Value::as_str),
            Some("ft")
        );
    }
    let placed = router.calls()[0].1.clone();
    assert_eq!(
        (placed.relay.as_str(), placed.second_relay.as_deref()),
        ("r1", Some("r3"))
    );

    let callee = "v=0\r\nc=IN IP4 198.51.100.7\r\nm=audio 5000 RTP/AVP 0\r\n";
    let reply = router.handle_ng(chained("answer", "c1", callee)).await;
    assert!(sdp_of(&reply).contains("192.0.2.1"), "{}", sdp_of(&reply));
    assert_eq!(sent(&pool, 2), ["r3 answer", "r1 answer"]);
    {
        let requests = pool.requests.lock().unwrap();
        assert_eq!(sdp_of(&requests[2].1), callee);
        assert!(sdp_of(&requests[3].1).contains("192.0.2.3"));
    }
    assert_eq!(router.calls()[0].1.to_tag.as_deref(), Some("tt"));

    router.handle_ng(ng("query", "c1")).await;
    let reply = router.handle_ng(ng("delete", "c1")).await;
    assert_eq!(reply::result_of(&reply), Some("ok"));
    assert_eq!(
        sent(&pool, 4),
        ["r1 query", "r3 query", "r1 delete", "r3 delete"]
    );
    assert_eq!(router.call_count(), 0);
    let ended = hook.0.lock().unwrap().clone();
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (ended[0].relay.as_str(), ended[0].reason.as_str()),
        ("r1", "deleted")
    );

    // No flag: one relay, the least loaded of all, as without rules.
    router.handle_ng(ng("offer", "plain")).await;
    assert_eq!(sent(&pool, 8), ["r1 offer"]);
    assert_eq!(router.calls()[0].1.second_relay, None);
}

#[tokio::test]
async fn a_failure_at_b_undoes_a_and_the_next_pair_is_tried() {
    // r1 (first of pub) is gone; r3 (first of priv) times out: r2 + r4.
    let pool = four_relays(&[(1, CommandError::Gone), (3, CommandError::Timeout)]);
    let (router, _) = chained_router(&pool);
    let reply = router.handle_ng(chained("offer", "c1", "v=0\r\n")).await;
    assert_eq!(reply::result_of(&reply), Some("ok"));
    assert_eq!(
        sent(&pool, 0),
        ["r1 offer", "r2 offer", "r3 offer", "r4 offer"]
    );
    let placed = router.calls()[0].1.clone();
    assert_eq!(
        (placed.relay.as_str(), placed.second_relay.as_deref()),
        ("r2", Some("r4"))
    );

    // No relay of priv takes it: A's half is deleted and the proxy gets ng's error.
    let pool = four_relays(&[(3, CommandError::Timeout), (4, CommandError::Halting)]);
    let (router, _) = chained_router(&pool);
    let reply = router.handle_ng(chained("offer", "c2", "v=0\r\n")).await;
    assert_eq!(reply::result_of(&reply), Some("error"));
    assert_eq!(
        reply.get("error-reason").and_then(Value::as_str),
        Some(NO_RELAY)
    );
    assert_eq!(
        sent(&pool, 0),
        ["r1 offer", "r3 offer", "r4 offer", "r1 delete"]
    );
    assert_eq!(router.call_count(), 0);
}

#[tokio::test]
async fn a_chained_call_ends_on_both_relays_when_either_loses_or_ends_it() {
    let pool = four_relays(&[]);
    let (router, hook) = chained_router(&pool);
    for c in ["lost", "timed-out"] {
        router.handle_ng(chained("offer", c, "v=0\r\n")).await;
    }
    let placed: Vec<_> = router
        .calls()
        .into_iter()
        .map(|(c, p)| (c, p.relay, p.second_relay.unwrap()))
        .collect();
    // Load is as the pool last reported, so both calls went to r1 and r3.
    assert_eq!(
        placed,
        [
            ("lost".to_owned(), "r1".to_owned(), "r3".to_owned()),
            ("timed-out".to_owned(), "r1".to_owned(), "r3".to_owned())
        ]
    );
    let before = pool.sent().len();
    // B (r3) comes back without "lost"; then it ends "timed-out" itself.
    *pool.held.lock().unwrap() = Some(vec!["timed-out".into()]);
    pool.events
        .send(RelayEvent::Connected {
            relay: RelayId(3),
            calls: vec!["timed-out".into()],
        })
        .unwrap();
    pool.events
        .send(RelayEvent::Ended {
            relay: RelayId(3),
            call_id: "timed-out".into(),
            reason: "timeout".into(),
            stats: serde_json::json!({"call_id": "timed-out"}),
        })
        .unwrap();
    for _ in 0..100 {
        if hook.0.lock().unwrap().len() >= 2 && pool.sent().len() >= before + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ended: Vec<(String, String, String)> = hook
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.call_id.clone(), e.relay.clone(), e.reason.clone()))
        .collect();
    assert_eq!(
        ended,
        [
            (
                "lost".to_owned(),
                "r1".to_owned(),
                "relay lost the call".to_owned()
            ),
            (
                "timed-out".to_owned(),
                "r3".to_owned(),
                "timeout".to_owned()
            )
        ]
    );
    assert_eq!(router.call_count(), 0);
    // r3 was asked about "lost"; A's halves were deleted on r1.
    let mut tail = sent(&pool, before);
    tail.sort_unstable();
    assert_eq!(tail, ["r1 delete", "r1 delete", "r3 query"]);
}

#[tokio::test]
async fn a_restarted_router_sends_a_chained_call_to_both_its_relays() {
    let dir = mediagate_testkit::TempDir::new("router-chain-restart");
    let file = dir.0.join("sessions.sqlite");
    let pool = four_relays(&[]);
    let start = |map| {
        let config = mediagate_config::parse_config(CHAINED).unwrap();
        Router::start_with_chains(
            Arc::clone(&pool) as Arc<dyn RelayPool>,
            map,
            Duration::from_millis(100),
            Arc::new(LogEnded),
            ChainPolicy::from_config(&config.dispatcher),
        )
    };
    let before = start(SessionMap::open(&file).unwrap());
    before.handle_ng(chained("offer", "kept", "v=0\r\n")).await;
    drop(before);
    let after = start(SessionMap::open(&file).unwrap());
    let reply = after.handle_ng(ng("delete", "kept")).await;
    assert_eq!(reply::result_of(&reply), Some("ok"));
    assert_eq!(
        sent(&pool, 0),
        ["r1 offer", "r3 offer", "r1 delete", "r3 delete"]
    );
    assert_eq!(after.call_count(), 0);
}
