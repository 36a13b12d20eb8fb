//! The `ng` front door (UDP and TCP) against requests a broken proxy could send.

use std::net::SocketAddr;
use std::time::Duration;

use mediagate_ng::bencode::{Limits, Value};
use mediagate_ng::client::{frame_request, reply_to, RequestBuilder};
use mediagate_ng::framing::Encoding;
use mediagate_ng::reply;
use mediagate_ng::request::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{cluster, wait_log, TempDir, WAIT};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

fn offer(call_id: &str) -> Value {
    RequestBuilder::new(Command::Offer)
        .str("call-id", call_id)
        .str("from-tag", "ft")
        .str("sdp", SDP)
        .build()
}

/// Sends `datagram` and returns every reply that comes within `window`.
async fn exchange(to: SocketAddr, datagrams: &[Vec<u8>], window: Duration) -> Vec<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for d in datagrams {
        socket.send_to(d, to).await.unwrap();
    }
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
        replies.push(buf[..n].to_vec());
    }
    replies
}

async fn ask(to: SocketAddr, cookie: &str, datagram: Vec<u8>) -> Value {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&datagram, to).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("a reply in time")
        .unwrap();
    reply_to(cookie.as_bytes(), &buf[..n], &Limits::default())
        .expect("a reply to our cookie")
        .expect("a well-formed reply")
}

async fn ask_value(to: SocketAddr, cookie: &str, request: &Value) -> Value {
    ask(
        to,
        cookie,
        frame_request(cookie.as_bytes(), Encoding::Bencode, request),
    )
    .await
}

fn reason(reply: &Value) -> Option<&str> {
    reply.get("error-reason").and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_incomplete_requests_get_ng_errors_and_calls_go_on() {
    let dir = TempDir::new("ng-bad");
    let d = cluster(&dir, 47_900).await;
    let at = d.ng_udp_addrs()[0];
    let good = ask_value(at, "g1", &offer("good")).await;
    assert_eq!(reply::result_of(&good), Some("ok"), "{good:?}");

    let cases: [(&str, &[u8], &str); 4] = [
        (
            "b1",
            b"b1 d7:command5:offer7:call-id",
            "Could not decode bencode dictionary",
        ),
        ("b2", b"b2 li1ei2ee", "Invalid NG data format"),
        (
            "b3",
            b"b3 {\"command\": \"offer\", \"call-id\":",
            "Failed to parse JSON document",
        ),
        ("b4", b"b4 \xff\x00\x80garbage", "Invalid NG data format"),
    ];
    for (cookie, datagram, says) in cases {
        let refused = ask(at, cookie, datagram.to_vec()).await;
        assert_eq!(reply::result_of(&refused), Some("error"), "{refused:?}");
        assert_eq!(reason(&refused), Some(says), "{refused:?}");
        wait_log(&["ng front door", &format!("refused request {cookie}"), says]).await;
    }
    // A datagram without a cookie cannot be answered; it is dropped.
    assert!(
        exchange(at, &[b"nocookie".to_vec()], Duration::from_millis(300))
            .await
            .is_empty()
    );

    let no_call_id = RequestBuilder::new(Command::Offer)
        .str("from-tag", "ft")
        .str("sdp", SDP)
        .build();
    let refused = ask_value(at, "n1", &no_call_id).await;
    assert_eq!(reason(&refused), Some(reply::NO_CALL_ID), "{refused:?}");
    wait_log(&["ng front door", "refused request n1", reply::NO_CALL_ID]).await;

    let delete_unknown = RequestBuilder::new(Command::Delete)
        .str("call-id", "nobody")
        .str("from-tag", "ft")
        .build();
    let refused = ask_value(at, "u1", &delete_unknown).await;
    assert_eq!(
        reason(&refused),
        Some(reply::UNKNOWN_CALL_ID),
        "{refused:?}"
    );

    // The call placed first is untouched, and a new one is placed.
    let query = RequestBuilder::new(Command::Query)
        .str("call-id", "good")
        .build();
    let queried = ask_value(at, "q1", &query).await;
    assert_eq!(reply::result_of(&queried), Some("ok"), "{queried:?}");
    assert_eq!(
        reply::result_of(&ask_value(at, "g2", &offer("good2")).await),
        Some("ok")
    );
    let calls: Vec<String> = d.router().calls().into_iter().map(|(c, _)| c).collect();
    assert_eq!(calls.len(), 2, "{calls:?}");

    // TCP: a broken message gets its error reply and the connection closes; another
    // connection is served.
    let tcp = d.ng_tcp_addrs()[0];
    let mut broken = TcpStream::connect(tcp).await.unwrap();
    broken.write_all(b"t1 lxe").await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, broken.read_to_end(&mut got))
        .await
        .expect("the broken connection closes")
        .unwrap();
    let refused = reply_to(b"t1", &got, &Limits::default()).unwrap().unwrap();
    assert_eq!(reply::result_of(&refused), Some("error"), "{refused:?}");
    let mut fine = TcpStream::connect(tcp).await.unwrap();
    fine.write_all(&frame_request(b"t2", Encoding::Bencode, &query))
        .await
        .unwrap();
    let mut buf = vec![0u8; 65_536];
    let n = tokio::time::timeout(WAIT, fine.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let ok = reply_to(b"t2", &buf[..n], &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(reply::result_of(&ok), Some("ok"), "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmissions_while_the_first_copy_runs_place_one_call_with_one_reply() {
    let dir = TempDir::new("ng-retrans");
    let d = cluster(&dir, 48_100).await;
    let at = d.ng_udp_addrs()[0];
    // The proxy's retransmissions arrive back to back, while the first copy is with
    // the relay: every copy that is answered gets the same bytes.
    let copy = frame_request(b"r1", Encoding::Bencode, &offer("retrans"));
    let copies = vec![copy; 8];
    let replies = exchange(at, &copies, Duration::from_secs(2)).await;
    assert!(!replies.is_empty(), "no reply at all");
    assert!(replies.iter().all(|r| r == &replies[0]), "{replies:?}");
    let first = reply_to(b"r1", &replies[0], &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(reply::result_of(&first), Some("ok"), "{first:?}");
    // One more retransmission after the fact gets the cached reply, not a new call.
    let late = exchange(at, &copies[..1], Duration::from_secs(2)).await;
    assert_eq!(late, replies[..1]);
    assert_eq!(d.router().calls().len(), 1);
    let engines: usize = d
        .local_pool()
        .engines()
        .iter()
        .map(|(_, r)| r.active_calls())
        .sum();
    assert_eq!(engines, 1, "the relays hold one call");
}
