//! `mediagate run` as a relay accounting to a real PostgreSQL server (Debian's
//! `postgresql`, issue 4 item 6): an offer/answer/delete over `ng` with RTP both ways
//! leaves its record in PostgreSQL, and nothing in the SQLite file; with the server
//! unreachable the binary says so and refuses to start.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mediagate_ng::bencode::{decode_exact, dict, Limits, Value};
use mediagate_ops::store::PostgresStore;
use mediagate_relay::record::SessionRecord;
use mediagate_testkit::ports::free_udp_port;
use mediagate_testkit::postgres::PostgresServer;
use mediagate_testkit::process::Peer;

fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-relay-pg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A relay-only config accounting to `postgres_url`.
fn write_config(dir: &Path, ng: u16, ports: &str, postgres_url: &str) -> PathBuf {
    let path = dir.join("mediagate.toml");
    let text = format!(
        "state_dir = \"{}\"\n\
         [edge]\nenabled = false\n\
         [relay]\nenabled = true\nng_listen_udp = [\"127.0.0.1:{ng}\"]\nports = \"{ports}\"\n\
         delete_delay = \"0s\"\nmedia_address = [{{ address = \"127.0.0.1\" }}]\n\
         [accounting]\npostgres_url = \"{postgres_url}\"\n",
        dir.join("var").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start_relay(config: &Path) -> Peer {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("run").arg("--config").arg(config);
    Peer::spawn("mediagate relay", cmd).unwrap()
}

struct Ng {
    socket: UdpSocket,
    port: u16,
    n: u32,
}

impl Ng {
    fn new(port: u16) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        Self { socket, port, n: 0 }
    }

    fn wait_ready(&self, relay: &Peer) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.socket
                .send_to(b"p d7:command4:pinge", ("127.0.0.1", self.port))
                .unwrap();
            let mut buf = [0u8; 64];
            if self.socket.recv(&mut buf).is_ok() {
                // The pings' short wait is for polling; a command's reply may take
                // much longer on a loaded machine.
                self.socket
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                return;
            }
            assert!(
                Instant::now() < deadline && relay.try_status().is_none(),
                "relay never answered:\n{}",
                relay.diagnostics()
            );
        }
    }

    fn call(&mut self, body: &Value) -> Value {
        self.n += 1;
        let cookie = format!("c{}", self.n);
        let mut dg = format!("{cookie} ").into_bytes();
        dg.extend_from_slice(&body.encode());
        self.socket.send_to(&dg, ("127.0.0.1", self.port)).unwrap();
        let mut buf = vec![0u8; 65_536];
        // A reply for another cookie is a late answer to an earlier datagram (a
        // readiness ping answered after its 300 ms wait, which failed one suite run):
        // the cookie is how ng clients tell replies apart, so it is skipped.
        loop {
            let n = self.socket.recv(&mut buf).expect("no ng reply");
            let reply = buf.get(..n).unwrap();
            if let Some(rest) = reply.strip_prefix(format!("{cookie} ").as_bytes()) {
                return decode_exact(rest, &Limits::default()).unwrap();
            }
            assert!(
                reply.starts_with(b"p "),
                "a reply with an unknown cookie: {:?}",
                String::from_utf8_lossy(reply)
            );
        }
    }
}

fn sdp_for(port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
}

/// The relay port in a reply's SDP `m=audio` line.
fn relay_port(reply: &Value) -> u16 {
    assert_eq!(
        reply.get("result").and_then(Value::as_str),
        Some("ok"),
        "{reply:?}"
    );
    let sdp = String::from_utf8(reply.get("sdp").unwrap().as_bytes().unwrap().to_vec()).unwrap();
    let line = sdp.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

/// Sends `count` packets from `from` to `to`, each after the previous one arrived at
/// `at` (so the count received is exact).
fn pump(from: &UdpSocket, to: u16, at: &UdpSocket, ssrc: u32, count: u16) {
    at.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 2048];
    for seq in 0..count {
        from.send_to(&rtp(ssrc, seq), ("127.0.0.1", to)).unwrap();
        let n = at.recv(&mut buf).expect("relayed packet");
        assert_eq!(n, 172);
    }
}

#[test]
fn relay_writes_call_records_to_postgres() {
    let server = PostgresServer::start();
    let work = work_dir("e2e");
    let ng_port = free_udp_port().unwrap();
    let config = write_config(&work, ng_port, "38400-38499", &server.url());
    let relay = start_relay(&config);
    let mut ng = Ng::new(ng_port);
    ng.wait_ready(&relay);

    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    let from_loopback = || Value::List(vec![Value::str("IP4"), Value::str("127.0.0.1")]);
    let offer = ng.call(&dict([
        ("command", Value::str("offer")),
        ("call-id", Value::str("pg-call@e2e")),
        ("from-tag", Value::str("alice")),
        (
            "sdp",
            Value::str(&sdp_for(caller.local_addr().unwrap().port())),
        ),
        ("received-from", from_loopback()),
    ]));
    // The offer's rewritten SDP goes to the callee: its port is where the callee sends.
    let callee_sends_to = relay_port(&offer);
    let answer = ng.call(&dict([
        ("command", Value::str("answer")),
        ("call-id", Value::str("pg-call@e2e")),
        ("from-tag", Value::str("alice")),
        ("to-tag", Value::str("bob")),
        (
            "sdp",
            Value::str(&sdp_for(callee.local_addr().unwrap().port())),
        ),
        ("received-from", from_loopback()),
    ]));
    let caller_sends_to = relay_port(&answer);
    pump(&caller, caller_sends_to, &callee, 0xa11ce, 20);
    pump(&callee, callee_sends_to, &caller, 0xb0b, 12);

    let deleted = ng.call(&dict([
        ("command", Value::str("delete")),
        ("call-id", Value::str("pg-call@e2e")),
        ("from-tag", Value::str("alice")),
    ]));
    assert_eq!(
        deleted.get("result").and_then(Value::as_str),
        Some("ok"),
        "{deleted:?}"
    );

    let mut store = PostgresStore::connect(&server.url().parse().unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = store.find::<SessionRecord>("pg-call@e2e").unwrap();
        if !rows.is_empty() {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "no record in PostgreSQL:\n{}",
            relay.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            &rows[0]["reason"],
            &rows[0]["caller_packets"],
            &rows[0]["callee_packets"]
        ),
        (&"deleted".into(), &20.into(), &12.into())
    );
    let records = store.records::<SessionRecord>(10).unwrap();
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    assert_eq!(
        (
            rec.call_id.as_str(),
            rec.from_tag.as_str(),
            rec.to_tag.as_str()
        ),
        ("pg-call@e2e", "alice", "bob")
    );
    assert_eq!(rec.streams.len(), 1);
    assert_eq!(rec.streams[0].caller.codec, "PCMA");
    assert_eq!(rec.streams[0].caller.bytes, 20 * 172);
    assert_eq!(rec.streams[0].callee.bytes, 12 * 172);
    assert!(
        !work.join("var/accounting.sqlite").exists(),
        "PostgreSQL took the record; the SQLite fallback was not needed"
    );

    relay.terminate(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn relay_refuses_to_start_when_postgres_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let work = work_dir("refuse");
    let ng_port = free_udp_port().unwrap();
    let url = format!("postgresql://mediagate:hunter2@127.0.0.1:{closed}/acct");
    let config = write_config(&work, ng_port, "38500-38599", &url);
    let relay = start_relay(&config);
    let status = relay.wait_timeout(Duration::from_secs(20));
    relay.wait_output_closed(Duration::from_secs(2));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "{}",
        relay.diagnostics()
    );
    let stderr = relay.stderr_tail().join("\n");
    let expected = format!(
        "mediagate: cannot start the relay: cannot use the PostgreSQL accounting store postgresql://mediagate:***@127.0.0.1:{closed}/acct: error connecting to server: "
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        stderr.contains("remove [accounting] postgres_url to use SQLite"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(
        !stderr.contains("listening for ng"),
        "no listener announced: {stderr}"
    );
    assert!(!work.join("var/accounting.sqlite").exists());
    let _ = std::fs::remove_dir_all(&work);
}
