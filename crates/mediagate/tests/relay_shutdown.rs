//! `mediagate relay` graceful shutdown (issue 4 item 7), on the real binary: the first
//! SIGTERM stops new calls (answered with the `load limit` failover reply) while a
//! running call goes on; a second SIGTERM exits at once, after writing the cut call's
//! record (reason `shutdown`) to the accounting store.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use common::ng_ask;
use mediagate_ng::client::RequestBuilder;
use mediagate_ng::request::Command as NgCommand;
use mediagate_ops::store::SqliteStore;
use mediagate_testkit::ports::free_udp_port;
use mediagate_testkit::process::Peer;

fn offer(call_id: &str) -> Vec<u8> {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
    RequestBuilder::new(NgCommand::Offer)
        .str("call-id", call_id)
        .str("from-tag", "a")
        .str("sdp", sdp)
        .strs("supports", &["load limit"])
        .build()
        .encode()
}

#[test]
fn first_sigterm_drains_second_exits_with_records() {
    let work = std::env::temp_dir().join(format!("mg-relay-shutdown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let ng = free_udp_port().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.args([
        "relay",
        "--ng",
        &format!("127.0.0.1:{ng}"),
        "--address",
        "127.0.0.1",
        "--ports",
        "38000-38099",
    ])
    .current_dir(&work);
    let relay = Peer::spawn("mediagate relay", cmd).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        socket
            .send_to(b"p d7:command4:pinge", ("127.0.0.1", ng))
            .unwrap();
        let mut buf = [0u8; 64];
        if socket.recv(&mut buf).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "relay never answered:\n{}",
            relay.diagnostics()
        );
    }
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(ng_ask(&socket, ng, "o1", offer("running")).starts_with("o1 d6:result2:ok3:sdp"));

    relay.signal("TERM");
    relay.wait_for_stderr_line("draining", Duration::from_secs(5));
    assert_eq!(
        ng_ask(&socket, ng, "o2", offer("new")),
        "o2 d6:result10:load limit7:message30:Parallel session limit reachede"
    );
    let query = ng_ask(&socket, ng, "q1", b"d7:command5:query7:call-id7:runninge");
    assert!(query.starts_with("q1 d6:result2:ok"), "{query}");
    assert_eq!(
        relay.try_status(),
        None,
        "the running call keeps the relay up"
    );

    let cut_at = Instant::now();
    relay.signal("TERM");
    let status = relay.wait_timeout(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        relay.diagnostics()
    );
    assert!(cut_at.elapsed() < Duration::from_secs(3));
    let mut store = SqliteStore::open(&work.join("var/accounting.sqlite")).unwrap();
    let records = store
        .records::<mediagate_relay::record::SessionRecord>(10)
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].call_id.as_str(), records[0].reason.as_str()),
        ("running", "shutdown")
    );
    let _ = std::fs::remove_dir_all(&work);
}
