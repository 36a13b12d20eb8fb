//! `LinkPool` against in-process fake relays speaking the link protocol over real TLS
//! on loopback: time-outs, recovery, overload, garbage and floods.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mediagate_link::conn::{exchange_hello, send, MessageReader};
use mediagate_link::pki;
use mediagate_link::tls::{server_name, NodeTls};
use mediagate_link::wire::{Hello, Message, Side, Status};
use mediagate_ng::bencode::{dict, Value};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::*;

fn cluster(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-linkpool-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    pki::create_ca(&dir.join("pki"), "test").unwrap();
    for node in ["dispatcher", "relay1", "relay2"] {
        pki::issue(&dir.join("pki"), &dir.join(node), node).unwrap();
    }
    dir
}

async fn pool(dir: &Path, tune: impl FnOnce(&mut LinkConfig)) -> LinkPool {
    let tls = Arc::new(NodeTls::load(&dir.join("dispatcher")).unwrap());
    let mut config = LinkConfig::new("127.0.0.1:0".parse().unwrap(), tls);
    tune(&mut config);
    LinkPool::start(config).await.unwrap()
}

struct FakeRelay {
    reader: MessageReader<ReadHalf<TlsStream<TcpStream>>>,
    writer: WriteHalf<TlsStream<TcpStream>>,
}

impl FakeRelay {
    async fn connect(dir: &Path, node: &str, pool: &LinkPool) -> Self {
        Self::connect_speaking(dir, node, pool, mediagate_link::wire::VERSION).await
    }

    /// Connects with a hello announcing link protocol `version`.
    async fn connect_speaking(
        dir: &Path,
        node: &str,
        pool: &LinkPool,
        version: (u64, u64),
    ) -> Self {
        let config = NodeTls::load(&dir.join(node))
            .unwrap()
            .client_config()
            .unwrap();
        let tcp = TcpStream::connect(pool.local_addr()).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name("127.0.0.1"), tcp)
            .await
            .unwrap();
        let (read, mut writer) = tokio::io::split(tls);
        let mut reader = MessageReader::new(read);
        let mut hello = Hello::ours(Side::Relay, node);
        hello.version = version;
        exchange_hello(
            &mut reader,
            &mut writer,
            &hello,
            Side::Dispatcher,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let mut relay = Self { reader, writer };
        relay.status(false).await;
        relay
            .send(Message::Sessions {
                calls: vec![],
                more: false,
            })
            .await;
        relay
    }

    async fn send(&mut self, m: Message) {
        send(&mut self.writer, &m).await.unwrap();
    }

    async fn status(&mut self, draining: bool) {
        self.send(Message::Status(Status {
            addresses: vec!["127.0.0.1".into()],
            draining,
            sessions: 0,
            bps: 0,
        }))
        .await;
    }

    async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(5), self.reader.next())
            .await
            .expect("a message in time")
            .expect("a message")
    }

    /// Answers the next request with `reply`.
    async fn answer(&mut self, reply: Value) {
        let Message::Request { seq, .. } = self.next().await else {
            panic!("expected a request");
        };
        self.send(Message::Reply { seq, body: reply }).await;
    }
}

async fn connected(events: &mut broadcast::Receiver<RelayEvent>) -> RelayId {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let RelayEvent::Connected { relay, .. } = e {
            return relay;
        }
    }
}

async fn disconnected(events: &mut broadcast::Receiver<RelayEvent>) -> RelayId {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let RelayEvent::Disconnected { relay } = e {
            return relay;
        }
    }
}

fn ping() -> Value {
    dict([("command", Value::str("ping"))])
}

fn pong() -> Value {
    dict([("result", Value::str("pong"))])
}

fn state(pool: &LinkPool, id: RelayId) -> Option<RelayState> {
    pool.relays()
        .into_iter()
        .find(|v| v.id == id)
        .map(|v| v.state)
}

const SHORT: Duration = Duration::from_millis(300);

fn live_record(call_id: &str, packets: u64) -> String {
    let record = mediagate_relay::record::SessionRecord {
        call_id: call_id.into(),
        streams: vec![mediagate_relay::record::StreamRecord {
            media_type: "audio".into(),
            caller: mediagate_relay::record::LegRecord {
                packets,
                bytes: packets * 172,
                ..Default::default()
            },
            ..Default::default()
        }],
        ..Default::default()
    };
    record.to_json().to_string()
}

#[tokio::test]
async fn live_statistics_come_in_pieces_and_a_silent_relay_gives_none_in_time() {
    let dir = cluster("stats");
    let pool = pool(&dir, |_| {}).await;
    let mut events = pool.subscribe();
    let mut relay = FakeRelay::connect(&dir, "relay1", &pool).await;
    let id = connected(&mut events).await;

    let answer = async {
        let Message::StatsRequest { seq } = relay.next().await else {
            panic!("expected a stats request");
        };
        // A stray answer to another seq is dropped, not taken for this one.
        let stray = mediagate_link::wire::Stats {
            seq: seq + 100,
            version: "9.9".into(),
            uptime: 1,
            bps: 1,
            calls: vec![live_record("stray", 1)],
            more: false,
        };
        relay.send(Message::Stats(stray)).await;
        for (calls, more) in [
            (vec![live_record("a", 5)], true),
            (vec![live_record("b", 7), "not json".into()], false),
        ] {
            let part = mediagate_link::wire::Stats {
                seq,
                version: "0.1.0".into(),
                uptime: 42,
                bps: 64_000,
                calls,
                more,
            };
            relay.send(Message::Stats(part)).await;
        }
    };
    let (live, ()) = tokio::join!(pool.live(id, Duration::from_secs(2)), answer);
    let live = live.expect("statistics in time");
    assert_eq!(
        (live.version.as_str(), live.uptime, live.bps),
        ("0.1.0", 42, 64_000)
    );
    let calls: Vec<_> = live
        .calls
        .iter()
        .map(|c| (c.call_id.as_str(), c.streams[0].caller.packets))
        .collect();
    assert_eq!(
        calls,
        [("a", 5), ("b", 7)],
        "the unreadable record is left out"
    );

    // Asked and never answered: nothing, within the deadline, and the relay is not
    // marked as timed out for it (statistics are not calls).
    let started = tokio::time::Instant::now();
    assert_eq!(pool.live(id, SHORT).await, None);
    assert!(started.elapsed() < SHORT * 3, "{:?}", started.elapsed());
    assert!(matches!(relay.next().await, Message::StatsRequest { .. }));
    assert_eq!(state(&pool, id), Some(RelayState::Active));
}

#[tokio::test]
async fn a_relay_of_link_1_0_is_never_asked_for_statistics() {
    let dir = cluster("stats10");
    let pool = pool(&dir, |_| {}).await;
    let mut events = pool.subscribe();
    let mut relay = FakeRelay::connect_speaking(&dir, "relay1", &pool, (1, 0)).await;
    let id = connected(&mut events).await;
    assert_eq!(pool.live(id, Duration::from_secs(5)).await, None);
    // The next thing it hears is the command, not a request it would not know.
    let (reply, ()) = tokio::join!(pool.command(id, ping(), SHORT), relay.answer(pong()));
    assert_eq!(reply, Ok(pong()));
}

#[tokio::test]
async fn a_relay_that_stops_answering_times_out_and_recovers_with_a_ping() {
    let dir = cluster("timeout");
    let pool = pool(&dir, |_| {}).await;
    let mut events = pool.subscribe();
    let mut relay = FakeRelay::connect(&dir, "relay1", &pool).await;
    let id = connected(&mut events).await;

    let (reply, ()) = tokio::join!(pool.command(id, ping(), SHORT), relay.answer(pong()));
    assert_eq!(reply, Ok(pong()));

    // Mid-command silence: the request arrives and nothing comes back.
    assert_eq!(
        pool.command(id, ping(), SHORT).await,
        Err(CommandError::Timeout)
    );
    assert_eq!(state(&pool, id), Some(RelayState::TimedOut));
    // Its late reply finds no taker and does no harm.
    let Message::Request { seq, .. } = relay.next().await else {
        panic!()
    };
    relay.send(Message::Reply { seq, body: pong() }).await;

    relay.send(Message::Ping { seq: 1 }).await;
    assert_eq!(relay.next().await, Message::Pong { seq: 1 });
    assert_eq!(state(&pool, id), Some(RelayState::Active));
    let (reply, ()) = tokio::join!(pool.command(id, ping(), SHORT), relay.answer(pong()));
    assert_eq!(reply, Ok(pong()));
}

#[tokio::test]
async fn a_timed_out_relay_without_a_ping_is_dropped_after_the_recover_interval() {
    let dir = cluster("recover");
    let pool = pool(&dir, |c| c.recover = SHORT).await;
    let mut events = pool.subscribe();
    let _relay = FakeRelay::connect(&dir, "relay1", &pool).await;
    let id = connected(&mut events).await;
    assert_eq!(
        pool.command(id, ping(), SHORT).await,
        Err(CommandError::Timeout)
    );
    assert_eq!(disconnected(&mut events).await, id);
    assert!(pool.relays().is_empty());
}

#[tokio::test]
async fn a_silent_relay_is_dropped() {
    let dir = cluster("silent");
    let pool = pool(&dir, |c| c.silence_limit = SHORT).await;
    let mut events = pool.subscribe();
    let _relay = FakeRelay::connect(&dir, "relay1", &pool).await;
    let id = connected(&mut events).await;
    assert_eq!(disconnected(&mut events).await, id);
}

#[tokio::test]
async fn an_overload_reply_is_halting_until_the_next_status_and_draining_is_halting() {
    let dir = cluster("halting");
    let pool = pool(&dir, |_| {}).await;
    let mut events = pool.subscribe();
    let mut relay = FakeRelay::connect(&dir, "relay1", &pool).await;
    let id = connected(&mut events).await;
    for overload in [
        mediagate_ng::reply::overload(true, mediagate_ng::reply::SESSION_LIMIT),
        mediagate_ng::reply::overload(false, mediagate_ng::reply::SESSION_LIMIT),
    ] {
        let (reply, ()) = tokio::join!(pool.command(id, ping(), SHORT), relay.answer(overload));
        assert_eq!(reply, Err(CommandError::Halting));
        assert_eq!(state(&pool, id), Some(RelayState::Halting));
        relay.status(false).await;
        relay.send(Message::Ping { seq: 9 }).await; // the pong orders us after the status
        relay.next().await;
        assert_eq!(state(&pool, id), Some(RelayState::Active));
    }
    relay.status(true).await;
    relay.send(Message::Ping { seq: 10 }).await;
    relay.next().await;
    assert_eq!(state(&pool, id), Some(RelayState::Halting));
    // Running calls still get their commands through.
    let (reply, ()) = tokio::join!(pool.command(id, ping(), SHORT), relay.answer(pong()));
    assert_eq!(reply, Ok(pong()));
}

#[tokio::test]
async fn garbage_closes_that_relays_link_and_a_reply_flood_harms_nobody() {
    let dir = cluster("garbage");
    let pool = pool(&dir, |_| {}).await;
    let mut events = pool.subscribe();
    let mut good = FakeRelay::connect(&dir, "relay1", &pool).await;
    let good_id = connected(&mut events).await;
    let mut bad = FakeRelay::connect(&dir, "relay2", &pool).await;
    let bad_id = connected(&mut events).await;
    assert_ne!(good_id, bad_id);

    // Replies nobody asked for, by the thousand.
    for seq in 0..2000 {
        good.send(Message::Reply {
            seq: seq + 1000,
            body: pong(),
        })
        .await;
    }
    bad.writer.write_all(&[0xff; 64]).await.unwrap();
    bad.writer.flush().await.unwrap();
    assert_eq!(disconnected(&mut events).await, bad_id);

    let (reply, ()) = tokio::join!(pool.command(good_id, ping(), SHORT), good.answer(pong()));
    assert_eq!(reply, Ok(pong()));
    assert_eq!(pool.relays().len(), 1);
    assert_eq!(
        pool.command(bad_id, ping(), SHORT).await,
        Err(CommandError::Gone)
    );
}

#[tokio::test]
async fn a_session_list_in_several_messages_is_one_connected_event() {
    let dir = cluster("listing");
    let pool = pool(&dir, |_| {}).await;
    let mut events = pool.subscribe();
    let mut relay = FakeRelay::connect(&dir, "relay1", &pool).await;
    let id = connected(&mut events).await;
    assert!(pool.request_sessions(id));
    assert_eq!(relay.next().await, Message::ListSessions);
    for (calls, more) in [(vec!["a".to_owned()], true), (vec!["b".to_owned()], false)] {
        relay.send(Message::Sessions { calls, more }).await;
    }
    let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e,
        RelayEvent::Connected {
            relay: id,
            calls: vec!["a".into(), "b".into()]
        }
    );
}

#[tokio::test]
async fn ended_reports_become_events_with_the_record() {
    let dir = cluster("ended");
    let pool = pool(&dir, |_| {}).await;
    let mut events = pool.subscribe();
    let mut relay = FakeRelay::connect(&dir, "relay1", &pool).await;
    let id = connected(&mut events).await;
    relay
        .send(Message::Ended {
            call_id: "c1".into(),
            reason: "media timeout".into(),
            record: r#"{"call_id":"c1","streams":[]}"#.into(),
        })
        .await;
    let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e,
        RelayEvent::Ended {
            relay: id,
            call_id: "c1".into(),
            reason: "media timeout".into(),
            stats: serde_json::json!({"call_id": "c1", "streams": []}),
        }
    );
}
