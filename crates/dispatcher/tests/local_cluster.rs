//! The dispatcher role in one process with two real relay engines (LocalPool), driven
//! through its real front doors: `ng` over UDP and MediaProxy's UNIX socket.
//!
//! Checked: new calls go to the least loaded relay; a drained relay gets no new call
//! while its running call is still served there; a MediaProxy `update`/`update`/
//! `remove` sets up a call whose RTP is relayed both ways on the relay the proxy
//! preferred; a request without `call_id` gets `error` and the connection goes on.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::ng;
use mediagate_dispatcher::role::Dispatcher;
use mediagate_ng::bencode::{Limits, Value};
use mediagate_ng::client::{frame_request, reply_to, RequestBuilder};
use mediagate_ng::framing::Encoding;
use mediagate_ng::request::Command;
use mediagate_testkit::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The dispatcher with two local relays; each test gives its own `ports` base so tests
/// running at once never compete for a port.
async fn start(dir: &TempDir, ports: u16) -> Dispatcher {
    common::start_two_local(dir, ports, ("local1", "local2"), "").await
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

fn offer(call_id: &str) -> Value {
    RequestBuilder::new(Command::Offer)
        .str("call-id", call_id)
        .str("from-tag", "ft")
        .str("sdp", SDP)
        .build()
}

fn connection_ip(reply: &Value) -> String {
    let sdp = reply.get("sdp").and_then(Value::as_str).unwrap_or("");
    sdp.lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap_or_else(|| panic!("no c= in {reply:?}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_relay_gets_no_new_call_but_keeps_its_running_one() {
    let dir = TempDir::new("drain");
    let d = start(&dir, 52_400).await;
    let at = d.ng_udp_addrs()[0];
    let reply = tokio::task::spawn_blocking(move || ng(at, "1", &offer("a")))
        .await
        .unwrap();
    assert_eq!(
        connection_ip(&reply),
        "127.0.0.1",
        "idle relays: local1 first"
    );
    d.local_pool().relay("local1").unwrap().drain();
    let replies = tokio::task::spawn_blocking(move || {
        let b = ng(at, "2", &offer("b"));
        let query = RequestBuilder::new(Command::Query)
            .str("call-id", "a")
            .build();
        let a = ng(at, "3", &query);
        let delete = RequestBuilder::new(Command::Delete)
            .str("call-id", "a")
            .str("from-tag", "ft")
            .build();
        let gone = ng(at, "4", &delete);
        let unknown = ng(at, "5", &query);
        (b, a, gone, unknown)
    })
    .await
    .unwrap();
    assert_eq!(
        connection_ip(&replies.0),
        "127.0.0.2",
        "drained local1 is avoided"
    );
    assert_eq!(mediagate_ng::reply::result_of(&replies.1), Some("ok"));
    assert_eq!(mediagate_ng::reply::result_of(&replies.2), Some("ok"));
    assert_eq!(
        replies.3.get("error-reason").and_then(Value::as_str),
        Some(mediagate_ng::reply::UNKNOWN_CALL_ID)
    );
    let placed: Vec<(String, String)> = d
        .router()
        .calls()
        .into_iter()
        .map(|(c, p)| (c, p.relay))
        .collect();
    assert_eq!(placed, [("b".to_owned(), "local2".to_owned())]);
    assert_eq!(d.local_pool().relay("local1").unwrap().active_calls(), 0);
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.resize(12 + 160, 0xd5);
    p
}

async fn request(stream: &mut UnixStream, text: &str) -> String {
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut byte))
            .await
            .expect("a reply line within 10 s")
            .unwrap();
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mediaproxy_call_relays_rtp_both_ways_on_the_preferred_relay() {
    let dir = TempDir::new("mediaproxy");
    let d = start(&dir, 52_600).await;
    // The bit rates are measured with time passed in: a first sample now, the next
    // one an interval later, after the media.
    let t0 = std::time::Instant::now() + Duration::from_secs(60);
    d.local_pool().measure(t0);
    let socket = dir.0.join("run/mp.sock");
    let mode = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o660
    );
    let phone_a = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let phone_b = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (pa, pb) = (
        phone_a.local_addr().unwrap().port(),
        phone_b.local_addr().unwrap().port(),
    );
    let mut proxy = UnixStream::connect(&socket).await.unwrap();
    // A request the parser refuses: `error`, and the connection goes on.
    assert_eq!(
        request(&mut proxy, "remove\r\nfrom_tag: x\r\n\r\n").await,
        "error\r\n"
    );
    let offer = request(
        &mut proxy,
        &format!(
            "update\r\ntype: request\r\ncall_id: mp1\r\nfrom_tag: a\r\nto_tag: \r\n\
             media_relay: 127.0.0.2\r\nmedia: audio:127.0.0.1:{pa}:sendrecv\r\n\r\n"
        ),
    )
    .await;
    let answer = request(
        &mut proxy,
        &format!(
            "update\r\ntype: reply\r\ncall_id: mp1\r\nfrom_tag: a\r\nto_tag: b\r\n\
             media: audio:127.0.0.1:{pb}:sendrecv\r\n\r\n"
        ),
    )
    .await;
    let port = |reply: &str| -> u16 {
        let mut words = reply.split_whitespace();
        assert_eq!(words.next(), Some("127.0.0.2"), "{reply:?}");
        words.next().unwrap().parse().unwrap()
    };
    // B sends to the port in the offer's reply, A to the one in the answer's.
    let (to_for_b, to_for_a) = (port(&offer), port(&answer));
    let mut buf = vec![0u8; 2048];
    for seq in 0..5u16 {
        phone_a
            .send_to(&rtp(seq), ("127.0.0.2", to_for_a))
            .await
            .unwrap();
        phone_b
            .send_to(&rtp(seq + 100), ("127.0.0.2", to_for_b))
            .await
            .unwrap();
    }
    let at_b = tokio::time::timeout(Duration::from_secs(10), phone_b.recv_from(&mut buf))
        .await
        .expect("RTP from A reaches B through the relay")
        .unwrap();
    assert_eq!(at_b.1, SocketAddr::from(([127, 0, 0, 2], to_for_b)));
    let at_a = tokio::time::timeout(Duration::from_secs(10), phone_a.recv_from(&mut buf))
        .await
        .expect("RTP from B reaches A through the relay")
        .unwrap();
    assert_eq!(at_a.1, SocketAddr::from(([127, 0, 0, 2], to_for_a)));
    // Both directions' packets counted into local2's rate, which the choice uses as
    // it uses a linked relay's; local1 relayed nothing.
    let local2 = d.local_pool().relay("local2").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    // Each direction's last packet may still be on its way into the counters.
    while local2.relayed_bytes() < 10 * 172 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            local2.relayed_bytes()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.local_pool()
        .measure(t0 + mediagate_dispatcher::local_pool::MEASURE_EVERY);
    let rates: Vec<(String, u64)> =
        mediagate_dispatcher::pool::RelayPool::relays(d.local_pool().as_ref())
            .into_iter()
            .map(|r| (r.name, r.bps))
            .collect();
    assert_eq!(rates[0], ("local1".to_owned(), 0), "{rates:?}");
    let bps = rates[1].1;
    assert!(bps > 0, "local2 relayed RTP both ways: {bps}");
    assert_eq!(
        serde_json::to_value(
            mediagate_dispatcher::session_stats::ClusterView::summary(d.view().as_ref()).await
        )
        .unwrap()[1]["bps_relayed"],
        bps
    );
    assert_eq!(
        request(
            &mut proxy,
            "remove\r\ncall_id: mp1\r\nfrom_tag: a\r\nto_tag: b\r\n\r\n"
        )
        .await,
        "removed\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ng_over_tcp_places_and_answers_in_order() {
    let dir = TempDir::new("tcp");
    let d = start(&dir, 52_800).await;
    let mut tcp = tokio::net::TcpStream::connect(d.ng_tcp_addrs()[0])
        .await
        .unwrap();
    let mut wire = frame_request(b"t1", Encoding::Bencode, &offer("tcp-call"));
    wire.extend_from_slice(br#"t2 {"command":"ping"}"#);
    tcp.write_all(&wire).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.ends_with(br#"t2 {"result":"pong"}"#) {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
            .await
            .expect("replies within 10 s")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    let first = &got[..got.len() - br#"t2 {"result":"pong"}"#.len()];
    let reply = reply_to(b"t1", first, &Limits::default()).unwrap().unwrap();
    assert_eq!(connection_ip(&reply), "127.0.0.1");
    assert_eq!(d.router().calls()[0].0, "tcp-call");
}
