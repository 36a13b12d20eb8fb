//! The relay link (mutual TLS, certificates from `mediagate_link::pki`) against relays
//! that misbehave after a good handshake, or speak another version. Certificate
//! refusals (none, another CA, revoked, passport) are tested with real relay processes
//! in `crates/mediagate/tests/dispatcher_link.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediagate_link::conn::{exchange_hello, send, MessageReader};
use mediagate_link::pki;
use mediagate_link::tls::{server_name, NodeTls};
use mediagate_link::wire::{Hello, Message, Side, Status};
use mediagate_ng::bencode::{dict, Value};
use mediagate_ng::reply;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_rustls::client::TlsStream;

use super::{logs, wait_log, WAIT};
use crate::link::{LinkConfig, LinkPool};
use crate::pool::{CommandError, RelayEvent, RelayId, RelayPool, RelayState};
use crate::router::{LogEnded, Router};
use crate::sessions::SessionMap;

fn cluster(name: &str) -> PathBuf {
    logs();
    let dir = std::env::temp_dir().join(format!("mg-hostile-link-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    pki::create_ca(&dir.join("pki"), "hostile").unwrap();
    for node in ["dispatcher", "relay1", "relay2"] {
        pki::issue(&dir.join("pki"), &dir.join(node), node).unwrap();
    }
    dir
}

async fn pool(dir: &Path) -> LinkPool {
    let tls = Arc::new(NodeTls::load(&dir.join("dispatcher")).unwrap());
    LinkPool::start(LinkConfig::new("127.0.0.1:0".parse().unwrap(), tls))
        .await
        .unwrap()
}

type Reader = MessageReader<ReadHalf<TlsStream<TcpStream>>>;
type Writer = WriteHalf<TlsStream<TcpStream>>;

/// A TLS connection as relay `node`, before any link message.
async fn tls(dir: &Path, node: &str, pool: &LinkPool) -> (Reader, Writer) {
    let config = NodeTls::load(&dir.join(node))
        .unwrap()
        .client_config()
        .unwrap();
    let tcp = TcpStream::connect(pool.local_addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name("127.0.0.1"), tcp)
        .await
        .unwrap();
    let (read, write) = tokio::io::split(tls);
    (MessageReader::new(read), write)
}

/// A relay linked as the protocol wants: hello, status (`sessions` calls held, media
/// address `address`), its (empty) call list.
async fn linked(
    dir: &Path,
    node: &str,
    pool: &LinkPool,
    sessions: u64,
    address: &str,
) -> (Reader, Writer) {
    let (mut reader, mut writer) = tls(dir, node, pool).await;
    exchange_hello(
        &mut reader,
        &mut writer,
        &Hello::ours(Side::Relay, node),
        Side::Dispatcher,
        WAIT,
    )
    .await
    .unwrap();
    let status = Status {
        addresses: vec![address.into()],
        draining: false,
        sessions,
        bps: 0,
    };
    send(&mut writer, &Message::Status(status)).await.unwrap();
    send(
        &mut writer,
        &Message::Sessions {
            calls: vec![],
            more: false,
        },
    )
    .await
    .unwrap();
    (reader, writer)
}

async fn next(reader: &mut Reader) -> Message {
    tokio::time::timeout(WAIT, reader.next())
        .await
        .expect("a message in time")
        .expect("a message")
}

async fn connected(events: &mut broadcast::Receiver<RelayEvent>) -> RelayId {
    loop {
        let e = tokio::time::timeout(WAIT, events.recv())
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
        let e = tokio::time::timeout(WAIT, events.recv())
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

/// `pool.command` to `id` while the relay at `reader`/`writer` answers it.
async fn round_trip(pool: &LinkPool, id: RelayId, reader: &mut Reader, writer: &mut Writer) {
    let answer = async {
        let Message::Request { seq, .. } = next(reader).await else {
            panic!("expected a request");
        };
        send(
            writer,
            &Message::Reply {
                seq,
                body: reply::pong(),
            },
        )
        .await
        .unwrap();
    };
    let (got, ()) = tokio::join!(pool.command(id, ping(), WAIT), answer);
    assert_eq!(got, Ok(reply::pong()));
}

/// Writes raw bytes where link frames belong.
async fn raw(writer: &mut Writer, bytes: &[u8]) {
    writer.write_all(bytes).await.unwrap();
    writer.flush().await.unwrap();
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_relay_loses_only_its_own_link_and_a_good_one_keeps_serving() {
    let dir = cluster("bad");
    let pool = pool(&dir).await;
    let mut events = pool.subscribe();
    let (mut good_r, mut good_w) = linked(&dir, "relay1", &pool, 0, "127.0.0.1").await;
    let good = connected(&mut events).await;
    round_trip(&pool, good, &mut good_r, &mut good_w).await;

    // Another major version: refused with the reason, nothing registered.
    let (mut reader, mut writer) = tls(&dir, "relay2", &pool).await;
    let future = Hello {
        version: (2, 0),
        ..Hello::ours(Side::Relay, "relay2")
    };
    send(&mut writer, &Message::Hello(future)).await.unwrap();
    assert!(matches!(next(&mut reader).await, Message::Hello(_)));
    let Message::Refuse { reason } = next(&mut reader).await else {
        panic!("expected a refusal");
    };
    assert!(reason.contains("link protocol 2.0"), "{reason}");
    wait_log(&[
        "refused relay relay2",
        "link protocol 2.0",
        "upgrade the older side",
    ])
    .await;
    assert_eq!(pool.relays().len(), 1);

    // Broken streams after a good handshake: the link closes, with the reason logged.
    let broken: [(Vec<u8>, &str); 4] = [
        (vec![0x7f, 0xff, 0xff, 0xff], "exceeds the 2097152-byte cap"),
        (
            frame(b"not bencode"),
            "expected a string, integer, list or dictionary",
        ),
        (frame(b"d4:type5:bogus4:spam4:eggse"), "bad link frame"),
        (vec![0, 0, 0, 0], "empty frame"),
    ];
    for (bytes, says) in broken {
        let (_r, mut w) = linked(&dir, "relay2", &pool, 0, "127.0.0.2").await;
        let bad = connected(&mut events).await;
        assert_ne!(bad, good);
        raw(&mut w, &bytes).await;
        assert_eq!(disconnected(&mut events).await, bad);
        wait_log(&["relay relay2", "disconnected", says]).await;
        assert_eq!(
            pool.command(bad, ping(), WAIT).await,
            Err(CommandError::Gone)
        );
        round_trip(&pool, good, &mut good_r, &mut good_w).await;
    }
    // A relay that sends what only a dispatcher sends.
    let (_r, mut w) = linked(&dir, "relay2", &pool, 0, "127.0.0.2").await;
    let bad = connected(&mut events).await;
    send(
        &mut w,
        &Message::Request {
            seq: 1,
            body: ping(),
        },
    )
    .await
    .unwrap();
    assert_eq!(disconnected(&mut events).await, bad);
    wait_log(&[
        "relay relay2",
        "disconnected",
        "which only a dispatcher sends",
    ])
    .await;

    // A reply flood with made-up sequence numbers around a real command: the command
    // gets its own reply, nothing else is taken for it.
    let flood = async {
        let Message::Request { seq, .. } = next(&mut good_r).await else {
            panic!("expected a request");
        };
        for other in 1..=5_000u64 {
            let body = dict([
                ("result", Value::str("error")),
                ("n", Value::Int(other as i64)),
            ]);
            send(
                &mut good_w,
                &Message::Reply {
                    seq: seq + other,
                    body,
                },
            )
            .await
            .unwrap();
        }
        send(
            &mut good_w,
            &Message::Reply {
                seq,
                body: reply::pong(),
            },
        )
        .await
        .unwrap();
    };
    let (got, ()) = tokio::join!(pool.command(good, ping(), WAIT), flood);
    assert_eq!(got, Ok(reply::pong()));
    round_trip(&pool, good, &mut good_r, &mut good_w).await;
    assert_eq!(pool.relays().len(), 1);
    assert_eq!(pool.relays()[0].state, RelayState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_silent_mid_command_loses_the_call_to_the_other_within_the_proxy_timeout() {
    let dir = cluster("silent");
    let pool = Arc::new(pool(&dir).await);
    let mut events = pool.subscribe();
    let relay_timeout = Duration::from_millis(300);
    let router = Router::start(
        Arc::clone(&pool) as Arc<dyn RelayPool>,
        SessionMap::in_memory(),
        relay_timeout,
        Arc::new(LogEnded),
    );
    // relay1 looks idle, so it gets the first try; it reads and never answers.
    let (mut silent_r, _silent_w) = linked(&dir, "relay1", &pool, 0, "127.0.0.1").await;
    let silent = connected(&mut events).await;
    let (mut busy_r, mut busy_w) = linked(&dir, "relay2", &pool, 50, "127.0.0.2").await;
    let busy = connected(&mut events).await;
    let heard = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&heard);
    tokio::spawn(async move {
        while let Ok(m) = silent_r.next().await {
            if matches!(m, Message::Request { .. }) {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    tokio::spawn(async move {
        while let Ok(m) = busy_r.next().await {
            if let Message::Request { seq, .. } = m {
                let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
                let body = reply::ok(vec![(b"sdp".to_vec(), Value::str(sdp))]);
                if send(&mut busy_w, &Message::Reply { seq, body })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    let offer = |call_id: &str| {
        dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str(call_id)),
            ("from-tag", Value::str("ft")),
            (
                "sdp",
                Value::str("v=0\r\nc=IN IP4 192.0.2.9\r\nm=audio 6000 RTP/AVP 0\r\n"),
            ),
        ])
    };
    let started = Instant::now();
    let first = router.handle_ng(offer("c1")).await;
    let took = started.elapsed();
    assert_eq!(reply::result_of(&first), Some("ok"), "{first:?}");
    // Kamailio's rtpengine module waits 1 s by default before it retries or fails over.
    assert!(took < Duration::from_millis(1000), "took {took:?}");
    assert!(
        took >= relay_timeout,
        "relay1 was not tried first ({took:?})"
    );
    assert_eq!(heard.load(Ordering::SeqCst), 1);
    wait_log(&["relay relay1 did not answer within 300 ms"]).await;
    let state = |id| {
        pool.relays()
            .into_iter()
            .find(|v| v.id == id)
            .map(|v| v.state)
    };
    assert_eq!(state(silent), Some(RelayState::TimedOut));
    assert_eq!(state(busy), Some(RelayState::Active));

    // The call is on relay2; the next new call skips the timed-out relay at once.
    let started = Instant::now();
    let second = router.handle_ng(offer("c2")).await;
    assert_eq!(reply::result_of(&second), Some("ok"), "{second:?}");
    assert!(started.elapsed() < relay_timeout, "{:?}", started.elapsed());
    assert_eq!(heard.load(Ordering::SeqCst), 1);
    let placed: Vec<(String, String)> = router
        .calls()
        .into_iter()
        .map(|(c, p)| (c, p.relay))
        .collect();
    assert_eq!(
        placed,
        [
            ("c1".to_owned(), "relay2".to_owned()),
            ("c2".to_owned(), "relay2".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_stalls_handshakes_or_speaks_plain_text_does_not_keep_relays_out() {
    let dir = cluster("stall");
    let pool = pool(&dir).await;
    let mut events = pool.subscribe();
    // More stalled connections from one host than the dispatcher has handshake slots;
    // each would hold its slot for the 10 s handshake limit.
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        stalled.push(socket.connect(pool.local_addr()).await.unwrap());
    }
    wait_log(&["127.0.0.2 has 8 relay handshakes in progress"]).await;

    let started = Instant::now();
    let (mut r, mut w) = tokio::time::timeout(
        Duration::from_secs(3),
        linked(&dir, "relay1", &pool, 0, "127.0.0.1"),
    )
    .await
    .expect("relay1 links while another host stalls");
    let id = connected(&mut events).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    round_trip(&pool, id, &mut r, &mut w).await;
    // Plain text where TLS belongs: refused, logged.
    let mut plain = TcpStream::connect(pool.local_addr()).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    wait_log(&["refused relay connection from 127.0.0.1"]).await;
    drop(stalled);
}
