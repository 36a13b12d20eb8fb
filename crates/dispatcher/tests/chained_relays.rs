//! Chained relays (issue 15 item 8) with two real relay engines in the dispatcher's
//! process, driven through its real `ng` front door over UDP.
//!
//! Checked: a call the chain rule matches is placed on both relays (the caller's
//! group's relay first); RTP from a fake caller reaches the fake callee through both
//! relays and back, each relay counting what it forwarded; `delete` removes the call
//! from both relays and from the dispatcher's map. A call no rule matches (the rule
//! here is by the caller's network) goes to one relay, as without rules. The same
//! through the MediaProxy front door (`update`/`update`/`remove`).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::ng;
use mediagate_dispatcher::role::Dispatcher;
use mediagate_ng::bencode::Value;
use mediagate_ng::client::RequestBuilder;
use mediagate_ng::request::Command;
use mediagate_ops::role::Role;
use mediagate_testkit::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The dispatcher with relay `pub1` (127.0.0.1, group `public`) and `priv1`
/// (127.0.0.2, group `private`); calls from 127.0.0.0/8 go through public, then
/// private. Each test gives its own `ports` base so tests running at once never
/// compete for a port.
async fn start(dir: &TempDir, ports: u16) -> Dispatcher {
    common::start_two_local(
        dir,
        ports,
        ("pub1", "priv1"),
        r#"[[dispatcher.relay_group]]
name = "public"
relays = ["pub1"]
[[dispatcher.relay_group]]
name = "private"
relays = ["priv1"]
[[dispatcher.chain]]
first = "public"
second = "private"
caller = ["127.0.0.0/8"]
"#,
    )
    .await
}

fn sdp(ip: &str, port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n")
}

/// The media address of a reply's SDP: its `c=` address and first `m=` port.
fn media_of(reply: &Value) -> SocketAddr {
    let sdp = reply
        .get("sdp")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no SDP in {reply:?}"));
    let ip = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap()
        .trim();
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    format!("{ip}:{port}").parse().unwrap()
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.resize(12 + 160, 0xd5);
    p
}

/// Sends RTP from `from` to `to` until `at` gets one packet (for up to 15 s), which
/// it returns with its source; a relay latches on the first packets, so a few may be
/// dropped.
fn relay_one(from: &UdpSocket, to: SocketAddr, at: &UdpSocket, seq: u16) -> (Vec<u8>, SocketAddr) {
    at.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut i = 0u16;
    while Instant::now() < deadline {
        from.send_to(&rtp(seq.wrapping_add(i)), to).unwrap();
        i = i.wrapping_add(1);
        if let Ok((n, source)) = at.recv_from(&mut buf) {
            return (buf[..n].to_vec(), source);
        }
    }
    panic!(
        "no RTP from {:?} reached {:?} through {to}",
        from.local_addr(),
        at.local_addr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_goes_through_both_relays_both_ways_and_delete_removes_both() {
    let dir = TempDir::new("chained-relays");
    let d = start(&dir, 53_100).await;
    let at = d.ng_udp_addrs()[0];
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (caller_port, callee_port) = (
        caller.local_addr().unwrap().port(),
        callee.local_addr().unwrap().port(),
    );
    let offer = RequestBuilder::new(Command::Offer)
        .str("call-id", "chained")
        .str("from-tag", "ft")
        .str("sdp", &sdp("127.0.0.1", caller_port))
        .build();
    let answer = RequestBuilder::new(Command::Answer)
        .str("call-id", "chained")
        .str("from-tag", "ft")
        .str("to-tag", "tt")
        .str("sdp", &sdp("127.0.0.1", callee_port))
        .build();
    let (offered, answered) =
        tokio::task::spawn_blocking(move || (ng(at, "1", &offer), ng(at, "2", &answer)))
            .await
            .unwrap();
    // The callee is told priv1's address, the caller pub1's.
    let for_callee = media_of(&offered);
    let for_caller = media_of(&answered);
    assert_eq!(for_callee.ip().to_string(), "127.0.0.2", "{offered:?}");
    assert_eq!(for_caller.ip().to_string(), "127.0.0.1", "{answered:?}");
    let placed = d.router().calls();
    assert_eq!(placed.len(), 1);
    assert_eq!(
        (
            placed[0].1.relay.as_str(),
            placed[0].1.second_relay.as_deref()
        ),
        ("pub1", Some("priv1"))
    );
    let pub1 = d.local_pool().relay("pub1").unwrap();
    let priv1 = d.local_pool().relay("priv1").unwrap();
    assert_eq!(pub1.call_ids(), ["chained"]);
    assert_eq!(priv1.call_ids(), ["chained"]);

    // Blocking sockets off the runtime's two workers, which the relays' tasks need.
    let ((to_callee, heard_by_callee), (_, heard_by_caller)) =
        tokio::task::spawn_blocking(move || {
            (
                relay_one(&caller, for_caller, &callee, 0),
                relay_one(&callee, for_callee, &caller, 1000),
            )
        })
        .await
        .unwrap();
    assert_eq!(heard_by_callee, for_callee, "the callee hears priv1");
    assert_eq!(to_callee.get(12..), rtp(0).get(12..), "payload unchanged");
    assert_eq!(heard_by_caller, for_caller, "the caller hears pub1");
    // Each relay forwarded packets from both of its parties (pub1: the caller and
    // priv1; priv1: pub1 and the callee). A relay counts a batch after sending it, so
    // the counts may trail the arrival briefly.
    let both_ways = |r: &mediagate_relay::engine::Relay| {
        r.live_calls().first().is_some_and(|(record, _)| {
            record
                .streams
                .first()
                .is_some_and(|s| s.caller.packets > 0 && s.callee.packets > 0)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if both_ways(&pub1) && both_ways(&priv1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(both_ways(&pub1), "pub1: {:?}", pub1.live_calls());
    assert!(both_ways(&priv1), "priv1: {:?}", priv1.live_calls());

    // Monitoring sees both relays: `sessions` lists the call once with pub1's stream
    // and then priv1's (told apart by their local addresses), each with its own
    // counters; the admin `calls` snapshot names both relays.
    let sessions = d.snapshot("sessions").unwrap().await;
    let streams = sessions[0]["streams"].as_array().unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    assert_eq!(streams.len(), 2, "{sessions}");
    let local_ip = |s: &serde_json::Value, side: &str| {
        let addr = s[side].as_str().unwrap_or_default();
        addr.rsplit_once(':').map(|(ip, _)| ip.to_owned())
    };
    assert_eq!(
        local_ip(&streams[0], "caller_local").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        local_ip(&streams[1], "caller_local").as_deref(),
        Some("127.0.0.2")
    );
    for s in streams {
        assert!(s["caller_packets"].as_u64() > Some(0), "{sessions}");
        assert!(s["callee_packets"].as_u64() > Some(0), "{sessions}");
    }
    let calls = d.snapshot("calls").unwrap().await;
    assert_eq!(calls[0]["relay"], "pub1", "{calls}");
    assert_eq!(calls[0]["second_relay"], "priv1", "{calls}");

    let delete = RequestBuilder::new(Command::Delete)
        .str("call-id", "chained")
        .str("from-tag", "ft")
        .build();
    let deleted = tokio::task::spawn_blocking(move || ng(at, "3", &delete))
        .await
        .unwrap();
    assert_eq!(mediagate_ng::reply::result_of(&deleted), Some("ok"));
    assert!(d.router().calls().is_empty());
    assert_eq!(pub1.active_calls(), 0);
    assert_eq!(priv1.active_calls(), 0);

    // From outside 127.0.0.0/8: no rule matches, one relay.
    let other = RequestBuilder::new(Command::Offer)
        .str("call-id", "plain")
        .str("from-tag", "ft")
        .str("sdp", &sdp("192.0.2.9", 4000))
        .build();
    let offered = tokio::task::spawn_blocking(move || ng(at, "4", &other))
        .await
        .unwrap();
    assert_eq!(mediagate_ng::reply::result_of(&offered), Some("ok"));
    let placed = d.router().calls();
    assert_eq!(placed[0].1.second_relay, None);
    assert_eq!(pub1.call_ids().len() + priv1.call_ids().len(), 1);
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

/// MediaProxy's `ip port` reply as an address.
fn mediaproxy_media(reply: &str) -> SocketAddr {
    let mut words = reply.split_whitespace();
    let ip = words.next().unwrap();
    let port = words.next().unwrap_or_else(|| panic!("{reply:?}"));
    format!("{ip}:{port}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mediaproxy_call_is_chained_the_same() {
    let dir = TempDir::new("chained-mediaproxy");
    let d = start(&dir, 53_400).await;
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (pa, pb) = (
        caller.local_addr().unwrap().port(),
        callee.local_addr().unwrap().port(),
    );
    let mut proxy = UnixStream::connect(dir.0.join("run/mp.sock"))
        .await
        .unwrap();
    let offered = request(
        &mut proxy,
        &format!(
            "update\r\ntype: request\r\ncall_id: mp-chained\r\nfrom_tag: a\r\nto_tag: \r\n\
             media: audio:127.0.0.1:{pa}:sendrecv\r\n\r\n"
        ),
    )
    .await;
    let answered = request(
        &mut proxy,
        &format!(
            "update\r\ntype: reply\r\ncall_id: mp-chained\r\nfrom_tag: a\r\nto_tag: b\r\n\
             media: audio:127.0.0.1:{pb}:sendrecv\r\n\r\n"
        ),
    )
    .await;
    let (for_callee, for_caller) = (mediaproxy_media(&offered), mediaproxy_media(&answered));
    assert_eq!(for_callee.ip().to_string(), "127.0.0.2", "{offered:?}");
    assert_eq!(for_caller.ip().to_string(), "127.0.0.1", "{answered:?}");
    let pub1 = d.local_pool().relay("pub1").unwrap();
    let priv1 = d.local_pool().relay("priv1").unwrap();
    assert_eq!(pub1.call_ids(), ["mp-chained"]);
    assert_eq!(priv1.call_ids(), ["mp-chained"]);
    let (heard_by_callee, heard_by_caller) = tokio::task::spawn_blocking(move || {
        (
            relay_one(&caller, for_caller, &callee, 0).1,
            relay_one(&callee, for_callee, &caller, 1000).1,
        )
    })
    .await
    .unwrap();
    assert_eq!(heard_by_callee, for_callee);
    assert_eq!(heard_by_caller, for_caller);
    assert_eq!(
        request(
            &mut proxy,
            "remove\r\ncall_id: mp-chained\r\nfrom_tag: a\r\nto_tag: b\r\n\r\n"
        )
        .await,
        "removed\r\n"
    );
    assert!(d.router().calls().is_empty());
    assert_eq!(pub1.active_calls(), 0);
    assert_eq!(priv1.active_calls(), 0);
}
