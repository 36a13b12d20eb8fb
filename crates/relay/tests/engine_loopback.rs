//! The relay engine on loopback: `ng` over UDP and TCP, cookie idempotency, media in
//! both directions through real sockets, secure latching against a stranger's flood,
//! exhaustion, timeouts with notification, records in SQLite, graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mediagate_config::ThreadScheduling;
use mediagate_ng::bencode::{decode_exact, Limits, Value};
use mediagate_ops::metrics::Metrics;
use mediagate_ops::store::{spawn, Record, SqliteStore, StoreTarget, WriterOptions};
use mediagate_relay::engine::{EngineConfig, ForwardIo, Relay, RelayOptions};
use mediagate_relay::record::SessionRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

fn config(ports: (u16, u16)) -> EngineConfig {
    EngineConfig {
        ng_udp: vec!["127.0.0.1:0".parse().unwrap()],
        ng_tcp: vec!["127.0.0.1:0".parse().unwrap()],
        media: vec![("127.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap())],
        ports,
        port_quarantine: Duration::from_secs(10),
        options: RelayOptions::default(),
        records: None,
        notify_url: None,
        tick: Duration::from_millis(50),
        forward_threads: 2,
        forward_coalesce: Duration::ZERO,
        forward_io: ForwardIo::IoUring,
        forward_scheduling: Default::default(),
    }
}

/// A port range unlikely to collide between the tests of this file running in parallel.
fn range(slot: u16) -> (u16, u16) {
    let low = 41000 + slot * 200;
    (low, low + 199)
}

struct Ng {
    socket: UdpSocket,
    relay: SocketAddr,
    n: u32,
}

impl Ng {
    async fn new(relay: &Relay) -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            relay: relay.ng_udp_addrs()[0],
            n: 0,
        }
    }

    async fn raw(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        self.socket.send_to(datagram, self.relay).await.unwrap();
        let mut buf = vec![0u8; 65_536];
        match timeout(Duration::from_millis(1500), self.socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                assert_eq!(
                    from, self.relay,
                    "reply from the address the request reached"
                );
                Some(buf[..n].to_vec())
            }
            _ => None,
        }
    }

    async fn call_with_cookie(&self, cookie: &str, dict: &Value) -> Value {
        let mut dg = format!("{cookie} ").into_bytes();
        dg.extend_from_slice(&dict.encode());
        let reply = self.raw(&dg).await.expect("no reply");
        let prefix = format!("{cookie} ");
        assert!(
            reply.starts_with(prefix.as_bytes()),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        decode_exact(&reply[prefix.len()..], &Limits::default()).unwrap()
    }

    async fn call(&mut self, dict: &Value) -> Value {
        self.n += 1;
        let cookie = format!("t_{}", self.n);
        self.call_with_cookie(&cookie, dict).await
    }
}

fn d(pairs: &[(&str, Value)]) -> Value {
    Value::Dict(
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect(),
    )
}

fn s(x: &str) -> Value {
    Value::str(x)
}

fn result(v: &Value) -> &str {
    v.get("result").and_then(Value::as_str).unwrap_or("<none>")
}

fn sdp_text(v: &Value) -> String {
    assert_eq!(result(v), "ok", "{v:?}");
    String::from_utf8(v.get("sdp").unwrap().as_bytes().unwrap().to_vec()).unwrap()
}

fn sdp_for(port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
}

/// The relay port written into an SDP's `m=audio` line.
fn media_port(sdp: &str) -> u16 {
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

async fn recv_count(sock: &UdpSocket, wait: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok((n, from))) = timeout(wait, sock.recv_from(&mut buf)).await {
        got.push((buf[..n].to_vec(), from));
    }
    got
}

struct Phones {
    caller: UdpSocket,
    callee: UdpSocket,
    caller_relay: SocketAddr,
    callee_relay: SocketAddr,
}

async fn establish(ng: &mut Ng, call_id: &str) -> Phones {
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let callee = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = ng
        .call(&d(&[
            ("command", s("offer")),
            ("call-id", s(call_id)),
            ("from-tag", s("ft")),
            ("sdp", s(&sdp_for(caller.local_addr().unwrap().port()))),
            ("received-from", Value::List(vec![s("IP4"), s("127.0.0.1")])),
        ]))
        .await;
    let callee_relay_port = media_port(&sdp_text(&offer));
    let answer = ng
        .call(&d(&[
            ("command", s("answer")),
            ("call-id", s(call_id)),
            ("from-tag", s("ft")),
            ("to-tag", s("tt")),
            ("sdp", s(&sdp_for(callee.local_addr().unwrap().port()))),
            ("received-from", Value::List(vec![s("IP4"), s("127.0.0.1")])),
        ]))
        .await;
    let caller_relay_port = media_port(&sdp_text(&answer));
    Phones {
        caller,
        callee,
        caller_relay: SocketAddr::from(([127, 0, 0, 1], caller_relay_port)),
        callee_relay: SocketAddr::from(([127, 0, 0, 1], callee_relay_port)),
    }
}

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-relay-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("accounting.sqlite")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_json_errors_and_cookie_idempotency() {
    let relay = Relay::start(config(range(0))).await.unwrap();
    let ng = Ng::new(&relay).await;
    assert_eq!(
        ng.raw(b"5323_1 d7:command4:pinge").await.unwrap(),
        b"5323_1 d6:result4:ponge"
    );
    assert_eq!(
        ng.raw(br#"j1 {"command":"ping"}"#).await.unwrap(),
        br#"j1 {"result":"pong"}"#
    );
    assert_eq!(
        ng.raw(b"e1 d7:command4:pin").await.unwrap(),
        b"e1 d6:result5:error12:error-reason35:Could not decode bencode dictionarye"
    );
    assert_eq!(
        ng.raw(b"e2 xyz").await.unwrap(),
        b"e2 d6:result5:error12:error-reason22:Invalid NG data formate"
    );
    assert_eq!(
        ng.raw(b"e3 d4:call2:xxe").await.unwrap(),
        b"e3 d6:result5:error12:error-reason36:Dictionary contains no key \"command\"e"
    );
    assert_eq!(
        ng.raw(b"e4 d7:command10:play mediae").await.unwrap(),
        b"e4 d6:result5:error12:error-reason20:Unrecognized commande"
    );
    let deep = format!("e5 d1:x{}{}e", "l".repeat(5000), "e".repeat(5000));
    let reply = ng.raw(deep.as_bytes()).await.unwrap();
    assert!(reply.ends_with(b"Could not decode bencode dictionarye"));
    assert_eq!(
        ng.raw(b"nocookie").await,
        None,
        "no cookie: dropped silently"
    );
    assert_eq!(ng.raw(b" d7:command4:pinge").await, None);

    // The same cookie twice: the second offer gets the cached reply, no new ports.
    let offer = d(&[
        ("command", s("offer")),
        ("call-id", s("idem")),
        ("from-tag", s("a")),
        ("sdp", s(&sdp_for(5000))),
    ]);
    let first = ng.call_with_cookie("same", &offer).await;
    let second = ng.call_with_cookie("same", &offer).await;
    assert_eq!(first, second);
    assert_eq!(relay.running_streams(), 1);
    // A new cookie for the same offer also reuses the call's ports.
    let third = ng.call_with_cookie("other", &offer).await;
    assert_eq!(sdp_text(&third), sdp_text(&first));
    assert_eq!(relay.running_streams(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_both_ways_strangers_refused_and_record_stored() {
    media_both_ways(ForwardIo::IoUring, 1, "media").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_both_ways_with_the_epoll_loop() {
    media_both_ways(ForwardIo::Epoll, 8, "media-epoll").await;
}

/// The default loop is io_uring on this kernel (6.1 or newer with io_uring enabled);
/// where the kernel refuses it the relay falls back to epoll, and this test says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_uses_io_uring_where_the_kernel_allows() {
    let relay = Relay::start(config(range(9))).await.unwrap();
    let (threads, uring) = relay.forwarding_threads();
    assert_eq!(threads, 2);
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim() != "0")
        .unwrap_or(false);
    if disabled {
        eprintln!("io_uring is disabled on this machine; the epoll loop is in use");
        assert_eq!(uring, 0);
    } else {
        assert_eq!(uring, 2, "both threads run the io_uring loop");
    }
    let mut cfg = config(range(9));
    cfg.forward_io = ForwardIo::Epoll;
    drop(relay);
    let relay = Relay::start(cfg).await.unwrap();
    assert_eq!(relay.forwarding_threads(), (2, 0));
}

/// Every thread of this process as `(name, policy, rt_priority, nice)`, from
/// `/proc/self/task/*/stat` (fields 2, 41, 40 and 19; those after the name are counted
/// from its closing `)`, the last one in the line).
fn thread_scheduling_by_name() -> Vec<(String, u32, u32, i32)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |n: usize| fields[n - 3];
        found.push((
            stat[open + 1..close].to_owned(),
            field(41).parse().unwrap(),
            field(40).parse().unwrap(),
            field(19).parse().unwrap(),
        ));
    }
    found
}

/// Whether the kernel lets this process run a thread `SCHED_FIFO` at `priority`
/// (capabilities alone do not say: `RLIMIT_RTPRIO`, user namespaces, cgroup budgets),
/// asked on a throwaway thread (the `udp` crate's tests check the call itself against
/// the plain system call).
fn realtime_allowed(priority: i32) -> bool {
    std::thread::spawn(move || {
        mediagate_udp::set_thread_scheduling(mediagate_udp::Policy::Fifo, priority).is_ok()
    })
    .join()
    .unwrap()
}

/// `forward_scheduling` reaches the forwarding threads and only them, or the relay
/// says why not where this process may not raise priorities.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_threads_take_the_configured_scheduling() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_FIFO: u32 = 1;
    const SCHED_BATCH: u32 = 3;
    let is_forwarder = |name: &str| name.starts_with("relay-fwd-");
    let allowed = realtime_allowed(7);
    let mut cfg = config(range(13));
    cfg.forward_scheduling = ThreadScheduling::Fifo { priority: 7 };
    let relay = Relay::start(cfg).await.unwrap();
    let threads = thread_scheduling_by_name();
    let fifo = threads
        .iter()
        .filter(|t| is_forwarder(&t.0) && (t.1, t.2) == (SCHED_FIFO, 7))
        .count();
    match relay.forwarding_scheduling_refused() {
        None => {
            assert!(allowed, "the kernel refused the probe but not the relay");
            assert_eq!(fifo, 2, "both forwarding threads run SCHED_FIFO at 7");
        }
        Some(why) => {
            assert!(!allowed, "refused where the kernel allows it: {why}");
            assert_eq!(fifo, 0);
            assert!(
                why.contains("fifo:7") && why.contains("RLIMIT_RTPRIO"),
                "{why}"
            );
        }
    }
    // No other thread changed: the runtime's, the test harness's, the store's.
    let others: Vec<_> = threads.iter().filter(|t| !is_forwarder(&t.0)).collect();
    assert!(!others.is_empty());
    for t in others {
        assert_eq!(t.1, SCHED_OTHER, "{t:?}");
    }
    drop(relay);
    // A nice value above the current one needs no privilege, so this holds anywhere.
    let nice = (mediagate_udp::thread_nice().unwrap() + 3).min(19);
    let mut cfg = config(range(13));
    cfg.forward_scheduling = ThreadScheduling::Batch {
        nice: i8::try_from(nice).unwrap(),
    };
    let relay = Relay::start(cfg).await.unwrap();
    let batch = thread_scheduling_by_name()
        .into_iter()
        .filter(|t| is_forwarder(&t.0) && (t.1, t.3) == (SCHED_BATCH, nice))
        .count();
    assert_eq!(batch, 2);
    assert_eq!(relay.forwarding_scheduling_refused(), None);
}

async fn media_both_ways(io: ForwardIo, slot: u16, name: &str) {
    let mut cfg = config(range(slot));
    cfg.forward_io = io;
    let db = temp_db(name);
    let writer = spawn(
        StoreTarget::Sqlite(db.clone()),
        &[SessionRecord::TABLE],
        WriterOptions::default(),
    )
    .unwrap();
    cfg.records = Some(writer.sink());
    let relay = Relay::start(cfg).await.unwrap();
    let metrics = Metrics::new();
    relay.publish_metrics(&metrics);
    let mut ng = Ng::new(&relay).await;
    let p = establish(&mut ng, "media-1").await;

    // A stranger (another loopback IP than the phones' received-from) floods both relay
    // ports before the phones send anything.
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    for i in 0..200 {
        stranger
            .send_to(&rtp(0x5757, i), p.caller_relay)
            .await
            .unwrap();
        stranger
            .send_to(&rtp(0x5757, i), p.callee_relay)
            .await
            .unwrap();
    }
    exchange(&p, 50).await;
    let at_callee = recv_count(&p.callee, Duration::from_millis(300)).await;
    let at_caller = recv_count(&p.caller, Duration::from_millis(300)).await;
    assert_eq!(
        at_callee.len(),
        50,
        "every caller packet, none of the stranger's"
    );
    assert!(
        at_callee
            .iter()
            .all(|(b, from)| b == &rtp(0xa, u16::from_be_bytes([b[2], b[3]]))
                && *from == p.callee_relay),
        "sent from the port the callee sends to"
    );
    assert_eq!(at_caller.len(), 50);
    assert!(at_caller.iter().all(|(_, from)| *from == p.caller_relay));
    assert!(
        recv_count(&stranger, Duration::from_millis(100))
            .await
            .is_empty(),
        "no bleed"
    );

    let q = ng
        .call(&d(&[("command", s("query")), ("call-id", s("media-1"))]))
        .await;
    let rtp_totals = q.get("totals").and_then(|t| t.get("RTP")).unwrap();
    assert_eq!(rtp_totals.get("packets"), Some(&Value::Int(100)));
    assert_eq!(rtp_totals.get("bytes"), Some(&Value::Int(100 * 172)));

    let del = ng
        .call(&d(&[
            ("command", s("delete")),
            ("call-id", s("media-1")),
            ("from-tag", s("ft")),
            ("delete delay", Value::Int(0)),
        ]))
        .await;
    assert_eq!(result(&del), "ok");
    let records = relay.recent_records();
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    assert_eq!(rec.reason, "deleted");
    assert_eq!(rec.streams[0].caller.packets, 50);
    assert_eq!(rec.streams[0].callee.packets, 50);
    assert_eq!(rec.streams[0].caller.refused, 200);
    assert_eq!(rec.streams[0].callee.refused, 200);
    assert_eq!(rec.streams[0].caller.codec, "PCMA");

    let (samples, types) = parse_openmetrics(&metrics.encode());
    let sample = |series: &str| {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {samples:?}"))
    };
    assert_eq!(sample("mediagate_relay_calls"), 0.0);
    assert_eq!(types["mediagate_relay_calls"], "gauge");
    assert_eq!(sample("mediagate_relay_calls_created_total"), 1.0);
    assert_eq!(types["mediagate_relay_calls_created"], "counter");
    assert_eq!(
        sample("mediagate_relay_calls_ended_total{reason=\"deleted\"}"),
        1.0
    );
    assert_eq!(
        sample("mediagate_relay_calls_ended_total{reason=\"media_timeout\"}"),
        0.0
    );
    assert_eq!(
        sample("mediagate_relay_ng_commands_total{command=\"offer\"}"),
        1.0
    );
    assert_eq!(sample("mediagate_relay_ended_calls_packets_total"), 100.0);
    assert_eq!(
        sample("mediagate_relay_ended_calls_bytes_total"),
        100.0 * 172.0
    );
    assert!(sample("mediagate_relay_forwarded_packets_total") >= 100.0);
    assert_eq!(sample("mediagate_relay_send_errors_total"), 0.0);
    assert_eq!(
        sample("mediagate_relay_oversized_dropped_packets_total"),
        0.0
    );
    assert_eq!(sample("mediagate_relay_draining"), 0.0);
    assert_eq!(types["mediagate_relay_call_setup_seconds"], "histogram");
    assert_eq!(sample("mediagate_relay_call_setup_seconds_count"), 1.0);
    let setup = sample("mediagate_relay_call_setup_seconds_sum");
    assert!(setup > 0.0 && setup < 5.0, "offer to answer took {setup} s");
    // The first forwarding round of each thread is timed, whichever loop runs.
    let timed = sample("mediagate_relay_forwarding_latency_seconds_count");
    assert!(timed >= 1.0, "{timed} rounds timed");
    let in_thread = sample("mediagate_relay_forwarding_latency_seconds_sum") / timed;
    assert!(
        in_thread > 0.0 && in_thread < 0.5,
        "{in_thread} s per timed round"
    );
    mediagate_testkit::promtool::check_metrics(&metrics.encode_text());

    drop(relay);
    // A stopped relay reports nothing; the registry still encodes.
    assert!(!metrics.encode().contains("mediagate_relay_"));
    assert_eq!(writer.close().stored, 1);
    let mut store = SqliteStore::open(&db).unwrap();
    let rows = store.find::<SessionRecord>("media-1").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            &rows[0]["reason"],
            &rows[0]["caller_packets"],
            &rows[0]["callee_packets"]
        ),
        (&"deleted".into(), &50.into(), &50.into())
    );
}

/// The samples of an OpenMetrics text (`series` to value) and each metric's `# TYPE`;
/// a line of another shape fails the test.
fn parse_openmetrics(
    text: &str,
) -> (
    std::collections::BTreeMap<String, f64>,
    std::collections::BTreeMap<String, String>,
) {
    let mut samples = std::collections::BTreeMap::new();
    let mut types = std::collections::BTreeMap::new();
    assert!(text.ends_with("# EOF\n"), "{text}");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("# TYPE name type");
            types.insert(name.to_owned(), ty.to_owned());
        } else if !(line.starts_with("# HELP ") || line == "# EOF") {
            let (series, value) = line.rsplit_once(' ').expect("series value");
            samples.insert(series.to_owned(), value.parse().expect("a number"));
        }
    }
    (samples, types)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_ng_messages_back_to_back_and_split() {
    let relay = Relay::start(config(range(2))).await.unwrap();
    let mut tcp = TcpStream::connect(relay.ng_tcp_addrs()[0]).await.unwrap();
    tcp.write_all(b"a1 d7:command4:pingea2 d7:command4:pinge")
        .await
        .unwrap();
    let mut want = b"a1 d6:result4:pongea2 d6:result4:ponge".to_vec();
    let mut got = vec![0u8; want.len()];
    timeout(Duration::from_secs(2), tcp.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, want);
    for byte in b"a3 d7:command4:pinge" {
        tcp.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    want = b"a3 d6:result4:ponge".to_vec();
    let mut got = vec![0u8; want.len()];
    timeout(Duration::from_secs(2), tcp.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, want);
    // An offer for 10,000 streams (too big for a datagram, so over TCP): refused
    // without allocating anything.
    let mut sdp =
        String::from("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n");
    for i in 0..10_000 {
        sdp.push_str(&format!("m=audio {} RTP/AVP 0\r\n", 2000 + 2 * i));
    }
    let offer = d(&[
        ("command", s("offer")),
        ("call-id", s("huge")),
        ("from-tag", s("a")),
        ("sdp", s(&sdp)),
    ]);
    let mut msg = b"big ".to_vec();
    msg.extend_from_slice(&offer.encode());
    tcp.write_all(&msg).await.unwrap();
    want = b"big d6:result5:error12:error-reason19:Failed to parse SDPe".to_vec();
    let mut got = vec![0u8; want.len()];
    timeout(Duration::from_secs(5), tcp.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, want);
    assert_eq!(relay.running_streams(), 0);
    tcp.write_all(b"a4 di1ee").await.unwrap();
    let mut rest = Vec::new();
    timeout(Duration::from_secs(2), tcp.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rest,
        b"a4 d6:result5:error12:error-reason35:Could not decode bencode dictionarye"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhaustion_answers_ran_out_of_ports() {
    let (low, _) = range(3);
    let relay = Relay::start(config((low, low + 3))).await.unwrap();
    let mut ng = Ng::new(&relay).await;
    let offer = |id: &str| {
        d(&[
            ("command", s("offer")),
            ("call-id", s(id)),
            ("from-tag", s("a")),
            ("sdp", s(&sdp_for(5000))),
        ])
    };
    assert_eq!(result(&ng.call(&offer("x1")).await), "ok");
    let refused = ng.call(&offer("x2")).await;
    assert_eq!(
        refused.encode(),
        b"d6:result5:error12:error-reason16:Ran out of portse"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactivity_timeout_records_and_notifies() {
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let mut cfg = config(range(4));
    cfg.options.media_timeout = Duration::from_millis(400);
    cfg.notify_url = Some(format!("http://{hook_addr}/RPC").parse().unwrap());
    let relay = Relay::start(cfg).await.unwrap();
    let mut ng = Ng::new(&relay).await;
    let p = establish(&mut ng, "idle-1").await;
    p.caller.send_to(&rtp(1, 1), p.caller_relay).await.unwrap();
    let (mut conn, _) = timeout(Duration::from_secs(5), hook.accept())
        .await
        .unwrap()
        .unwrap();
    let mut req = vec![0u8; 4096];
    let n = timeout(Duration::from_secs(2), conn.read(&mut req))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&req[..n]).into_owned();
    assert!(text.starts_with("POST /RPC HTTP/1.1"), "{text}");
    assert!(text.contains(r#""params":["idle-1","ft","tt"]"#), "{text}");
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let records = relay.recent_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].reason, "media timeout");
    assert_eq!(records[0].streams[0].caller.packets, 1);
    assert_eq!(relay.running_streams(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_then_cuts() {
    let relay = Relay::start(config(range(5))).await.unwrap();
    let mut ng = Ng::new(&relay).await;
    let p = establish(&mut ng, "long-call").await;
    relay.drain();
    let refused = ng
        .call(&d(&[
            ("command", s("offer")),
            ("call-id", s("new-call")),
            ("from-tag", s("a")),
            ("sdp", s(&sdp_for(5000))),
            ("supports", Value::List(vec![s("load limit")])),
        ]))
        .await;
    assert_eq!(
        refused.encode(),
        b"d6:result10:load limit7:message30:Parallel session limit reachede"
    );
    // The running call still relays while draining.
    p.caller.send_to(&rtp(1, 1), p.caller_relay).await.unwrap();
    assert_eq!(
        recv_count(&p.callee, Duration::from_millis(200))
            .await
            .len(),
        1
    );
    let started = std::time::Instant::now();
    let cut = relay
        .shutdown(Duration::from_millis(300), std::future::pending())
        .await;
    assert_eq!(cut, 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A second relay on the same ports, shut down with a hurry signal, exits at once.
    let relay = Relay::start(config(range(6))).await.unwrap();
    let mut ng = Ng::new(&relay).await;
    establish(&mut ng, "c").await;
    let started = std::time::Instant::now();
    let cut = relay.shutdown(Duration::from_secs(60), async {}).await;
    assert_eq!(cut, 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Fails, with the reason and the fix, where the host has no IPv6 loopback: the test
/// must not pass without bridging anything.
fn require_ipv6_loopback() {
    if let Err(e) = std::net::UdpSocket::bind("[::1]:0") {
        panic!(
            "this test needs IPv6 on the loopback (binding [::1] failed: {e}); enable it \
             (sysctl net.ipv6.conf.lo.disable_ipv6=0) or run in a network namespace with IPv6"
        );
    }
}

/// Fails, with the reason, where the relay could not start its io_uring loop (twins
/// exist only there), instead of letting a twin test check the epoll loop again.
fn require_io_uring(relay: &Relay) {
    let (threads, uring) = relay.forwarding_threads();
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map_or_else(|e| format!("unreadable: {e}"), |s| s.trim().to_owned());
    assert!(
        uring > 0,
        "this test needs the io_uring forwarding loop, but {uring} of {threads} threads run \
         it (kernel.io_uring_disabled = {disabled}; a seccomp filter may also refuse \
         io_uring_setup)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridges_an_ipv4_caller_to_an_ipv6_callee() {
    require_ipv6_loopback();
    let mut cfg = config(range(7));
    cfg.media
        .push(("::1".parse().unwrap(), "::1".parse().unwrap()));
    let relay = Relay::start(cfg).await.unwrap();
    let mut ng = Ng::new(&relay).await;
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let callee = UdpSocket::bind("[::1]:0").await.unwrap();
    let offer = ng
        .call(&d(&[
            ("command", s("offer")),
            ("call-id", s("v4v6")),
            ("from-tag", s("ft")),
            ("sdp", s(&sdp_for(caller.local_addr().unwrap().port()))),
            ("address family", s("IP6")),
        ]))
        .await;
    let offered = sdp_text(&offer);
    assert!(offered.contains("c=IN IP6 ::1\r\n"), "{offered}");
    let callee_sdp = format!(
        "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio {} RTP/AVP 8\r\n",
        callee.local_addr().unwrap().port()
    );
    let answer = ng
        .call(&d(&[
            ("command", s("answer")),
            ("call-id", s("v4v6")),
            ("from-tag", s("ft")),
            ("to-tag", s("tt")),
            ("sdp", s(&callee_sdp)),
        ]))
        .await;
    let answered = sdp_text(&answer);
    assert!(answered.contains("c=IN IP4 127.0.0.1\r\n"), "{answered}");
    let to_relay_v6: SocketAddr = format!("[::1]:{}", media_port(&offered)).parse().unwrap();
    let to_relay_v4: SocketAddr = format!("127.0.0.1:{}", media_port(&answered))
        .parse()
        .unwrap();
    for i in 0..10 {
        caller.send_to(&rtp(1, i), to_relay_v4).await.unwrap();
        callee.send_to(&rtp(2, i), to_relay_v6).await.unwrap();
    }
    let at_callee = recv_count(&callee, Duration::from_millis(300)).await;
    let at_caller = recv_count(&caller, Duration::from_millis(300)).await;
    assert_eq!((at_callee.len(), at_caller.len()), (10, 10));
    assert!(at_callee.iter().all(|(_, from)| *from == to_relay_v6));
    assert!(at_caller.iter().all(|(_, from)| *from == to_relay_v4));
}

/// `n` packets each way (caller SSRC 0xa, callee 0xb, sequence from 0).
async fn exchange(p: &Phones, n: u16) {
    for i in 0..n {
        p.caller
            .send_to(&rtp(0xa, i), p.caller_relay)
            .await
            .unwrap();
        p.callee
            .send_to(&rtp(0xb, i), p.callee_relay)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sockets bound to `port` on 127.0.0.1, from `/proc/net/udp` (a relay port and,
/// once media flows on the io_uring loop, its connected twin).
fn sockets_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        .count()
}

/// The remote port of the connected socket bound to `port` (its twin), if any.
fn twin_peer_port(port: u16) -> Option<u16> {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table.lines().find_map(|l| {
        let mut cols = l.split_whitespace().skip(1);
        if cols.next() != Some(local.as_str()) {
            return None;
        }
        let remote = cols.next()?.split(':').nth(1)?;
        u16::from_str_radix(remote, 16).ok().filter(|&p| p != 0)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twins_follow_a_nat_rebinding_and_strangers_still_count() {
    twins_and_rebinding(ForwardIo::IoUring, 10, "twins").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_rebinding_with_the_epoll_loop() {
    twins_and_rebinding(ForwardIo::Epoll, 11, "twins-epoll").await;
}

/// Forwards leave from a connected twin of each relay port on the io_uring loop; the
/// latching decisions must not change: a stranger after the latch is still seen and
/// refused, and a NAT rebinding (same SSRC, new port, after the quiet time) still moves
/// the latch, with the other party's media following it.
async fn twins_and_rebinding(io: ForwardIo, slot: u16, name: &str) {
    let mut cfg = config(range(slot));
    cfg.forward_io = io;
    cfg.options.latch.relatch_quiet = Duration::from_millis(200);
    let relay = Relay::start(cfg).await.unwrap();
    if io == ForwardIo::IoUring {
        require_io_uring(&relay);
    }
    let uring = relay.forwarding_threads().1 > 0;
    let mut ng = Ng::new(&relay).await;
    let p = establish(&mut ng, name).await;

    exchange(&p, 20).await;
    assert_eq!(
        recv_count(&p.callee, Duration::from_millis(300))
            .await
            .len(),
        20
    );
    assert_eq!(
        recv_count(&p.caller, Duration::from_millis(300))
            .await
            .len(),
        20
    );
    let expected = if uring { 2 } else { 1 };
    assert_eq!(sockets_on(p.caller_relay.port()), expected);
    assert_eq!(sockets_on(p.callee_relay.port()), expected);
    if uring {
        assert_eq!(
            twin_peer_port(p.caller_relay.port()),
            Some(p.caller.local_addr().unwrap().port())
        );
    }

    // A stranger after the latch (its own SSRC): refused and counted, not forwarded.
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    for i in 0..30u16 {
        stranger
            .send_to(&rtp(0x5757, i), p.caller_relay)
            .await
            .unwrap();
    }
    assert!(recv_count(&p.callee, Duration::from_millis(200))
        .await
        .is_empty());

    // The caller's NAT rebinds: same SSRC, continuing sequence, a new port.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 20..40u16 {
        moved.send_to(&rtp(0xa, i), p.caller_relay).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let at_callee = recv_count(&p.callee, Duration::from_millis(300)).await;
    assert_eq!(at_callee.len(), 20, "the moved caller is forwarded");
    for i in 20..40u16 {
        p.callee
            .send_to(&rtp(0xb, i), p.callee_relay)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let at_moved = recv_count(&moved, Duration::from_millis(300)).await;
    assert_eq!(at_moved.len(), 20, "the callee's media follows the caller");
    assert!(at_moved.iter().all(|(_, from)| *from == p.caller_relay));
    assert!(recv_count(&p.caller, Duration::from_millis(100))
        .await
        .is_empty());
    assert_eq!(sockets_on(p.caller_relay.port()), expected);
    if uring {
        assert_eq!(
            twin_peer_port(p.caller_relay.port()),
            Some(moved.local_addr().unwrap().port()),
            "the twin moved with the latch"
        );
    }

    let del = ng
        .call(&d(&[
            ("command", s("delete")),
            ("call-id", s(name)),
            ("from-tag", s("ft")),
            ("delete delay", Value::Int(0)),
        ]))
        .await;
    assert_eq!(result(&del), "ok");
    let records = relay.recent_records();
    let rec = &records[0];
    assert_eq!(rec.streams[0].caller.packets, 40);
    assert_eq!(rec.streams[0].callee.packets, 40);
    assert_eq!(rec.streams[0].caller.refused, 30);
    // Closing the stream closes the twins too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sockets_on(p.caller_relay.port()), 0);
    assert_eq!(sockets_on(p.callee_relay.port()), 0);
}

/// A twin is connected, so the kernel reports ICMP errors to it; one that sees an
/// error (here the callee's port closed: "port unreachable") goes back to plain sends,
/// so spoofed ICMP cannot keep costing forwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twin_that_sees_an_icmp_error_retires() {
    let relay = Relay::start(config(range(12))).await.unwrap();
    require_io_uring(&relay);
    let mut ng = Ng::new(&relay).await;
    let p = establish(&mut ng, "twin-icmp").await;
    exchange(&p, 10).await;
    assert_eq!(
        recv_count(&p.callee, Duration::from_millis(300))
            .await
            .len(),
        10
    );
    assert_eq!(sockets_on(p.callee_relay.port()), 2);
    drop(p.callee);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut i = 10u16;
    while sockets_on(p.callee_relay.port()) == 2 && tokio::time::Instant::now() < deadline {
        p.caller
            .send_to(&rtp(0xa, i), p.caller_relay)
            .await
            .unwrap();
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sockets_on(p.callee_relay.port()), 1, "the twin retired");
    // The caller's side is untouched.
    assert_eq!(sockets_on(p.caller_relay.port()), 2);
}
