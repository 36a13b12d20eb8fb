//! The dispatcher link (issue 15 item 2) between a real `mediagate relay` process and
//! the dispatcher's `LinkPool` run in this test: certificates from `mediagate cert`
//! (the CLI), an `ng` offer/answer/delete over the link that allocates real ports,
//! kill -9 (Disconnected), restart (same RelayId), SIGTERM (Halting), a call ended by
//! media timeout reported as an `Ended` event to both dispatchers a relay serves, and
//! clients refused with a clear log line: no certificate (`openssl s_client`), another
//! CA, revoked, passport mismatch.

mod common;

use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::sdp;
use mediagate_dispatcher::link::{LinkConfig, LinkPool};
use mediagate_dispatcher::pool::{CommandError, RelayEvent, RelayId, RelayPool, RelayState};
use mediagate_link::tls::NodeTls;
use mediagate_ng::bencode::{dict, Value};
use mediagate_testkit::process::Peer;
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(20);

/// The dispatcher's log lines (this process's tracing output).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .try_init();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits for a dispatcher log line containing every needle.
fn wait_log(needles: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-dlink-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mediagate(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mediagate {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mediagate cert issue --ca CA --dir NODE NAME` in `dir`.
fn issue(dir: &Path, ca: &str, node: &str, name: &str) {
    mediagate(dir, &["cert", "issue", "--ca", ca, "--dir", node, name]);
}

fn relay(dir: &Path, tls_dir: &str, dispatcher: u16, ports: &str) -> Peer {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.args([
        "relay",
        "--dispatcher",
        &format!("localhost:{dispatcher}"),
        "--tls-dir",
        tls_dir,
        "--passport",
        "CN=dispatcher",
        "--address",
        "127.0.0.1",
        "--ports",
        ports,
    ])
    .current_dir(dir);
    Peer::spawn("mediagate relay", cmd).unwrap()
}

/// The test's work dir `name` with a CA (`pki`) that issued the `dispatcher` and
/// `relay1` node dirs, and the dispatcher's TLS identity; starts the log capture.
fn pki(name: &str) -> (PathBuf, Arc<NodeTls>) {
    logs();
    let dir = workdir(name);
    mediagate(&dir, &["cert", "ca", "--dir", "pki"]);
    issue(&dir, "pki", "dispatcher", "dispatcher");
    issue(&dir, "pki", "relay1", "relay1");
    let tls = Arc::new(NodeTls::load(&dir.join("dispatcher")).unwrap());
    (dir, tls)
}

/// `mediagate run` as relay `relay1` the config file's way: no ng listener, a 1 s
/// media timeout, linked to every one of `dispatchers` (host:port).
fn relay_from_config(dir: &Path, ports: &str, dispatchers: &[String]) -> Peer {
    std::fs::write(
        dir.join("relay.toml"),
        format!(
            "[edge]\nenabled = false\n[relay]\nenabled = true\nng_listen_udp = []\nports = \"{ports}\"\nmedia_timeout = \"1s\"\ndispatchers = {dispatchers:?}\ntls_dir = \"relay1\"\n[[relay.media_address]]\naddress = \"127.0.0.1\"\n",
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.args(["run", "--config", "relay.toml"]).current_dir(dir);
    Peer::spawn("mediagate run (relay)", cmd).unwrap()
}

async fn next_event(events: &mut broadcast::Receiver<RelayEvent>) -> RelayEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("the event channel open")
}

async fn wait_connected(events: &mut broadcast::Receiver<RelayEvent>) -> (RelayId, Vec<String>) {
    loop {
        if let RelayEvent::Connected { relay, calls } = next_event(events).await {
            return (relay, calls);
        }
    }
}

fn offer(call_id: &str, port: u16) -> Value {
    dict([
        ("command", Value::str("offer")),
        ("call-id", Value::str(call_id)),
        ("from-tag", Value::str("caller")),
        ("sdp", Value::str(&sdp(port))),
        ("supports", Value::List(vec![Value::str("load limit")])),
    ])
}

fn answer(call_id: &str, port: u16) -> Value {
    dict([
        ("command", Value::str("answer")),
        ("call-id", Value::str(call_id)),
        ("from-tag", Value::str("caller")),
        ("to-tag", Value::str("callee")),
        ("sdp", Value::str(&sdp(port))),
    ])
}

fn relay_port(reply: &Value) -> u16 {
    assert_eq!(
        reply.get("result").and_then(Value::as_str),
        Some("ok"),
        "{reply:?}"
    );
    let sdp = reply.get("sdp").and_then(Value::as_str).expect("an SDP");
    let at = sdp.find("m=audio ").expect("m=audio") + 8;
    sdp[at..].split(' ').next().unwrap().parse().unwrap()
}

/// How long a command over the link may take: a real relay process on a loaded
/// machine can take well over a second to answer.
const COMMAND_WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_process_serves_ng_over_the_link_survives_kill_and_restart_and_halts_on_sigterm() {
    let (dir, tls) = pki("main");

    let mut config = LinkConfig::new("127.0.0.1:0".parse().unwrap(), tls);
    config.passport = Some("CN=relay*".parse().unwrap());
    let pool = LinkPool::start(config).await.unwrap();
    let port = pool.local_addr().port();
    let mut events = pool.subscribe();

    let first = relay(&dir, "relay1", port, "38400-38499");
    let (id, calls) = wait_connected(&mut events).await;
    assert!(calls.is_empty(), "{calls:?}");
    let views = pool.relays();
    assert_eq!(views.len(), 1, "{views:?}");
    assert_eq!(views[0].name, "relay1");
    assert_eq!(views[0].state, RelayState::Active);
    assert_eq!(
        views[0].addresses,
        ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );

    // offer / answer / delete over the link, with real ports.
    let reply = pool
        .command(id, offer("call-1", 40000), COMMAND_WAIT)
        .await
        .unwrap();
    let caller_side = relay_port(&reply);
    assert!((38400..=38499).contains(&caller_side), "{caller_side}");
    assert!(
        UdpSocket::bind(("127.0.0.1", caller_side)).is_err(),
        "the relay holds port {caller_side}"
    );
    let reply = pool
        .command(id, answer("call-1", 40002), COMMAND_WAIT)
        .await
        .unwrap();
    relay_port(&reply);
    let delete = dict([
        ("command", Value::str("delete")),
        ("call-id", Value::str("call-1")),
        ("from-tag", Value::str("caller")),
        ("delete delay", Value::Int(0)),
    ]);
    let reply = pool.command(id, delete, COMMAND_WAIT).await.unwrap();
    assert_eq!(
        reply.get("result").and_then(Value::as_str),
        Some("ok"),
        "{reply:?}"
    );
    // The deleted call's record comes too, reason kept: the dispatcher accounts it.
    loop {
        if let RelayEvent::Ended {
            relay: from,
            call_id,
            reason,
            stats,
        } = next_event(&mut events).await
        {
            assert_eq!(
                (from, call_id.as_str(), reason.as_str()),
                (id, "call-1", "deleted")
            );
            assert_eq!(stats["reason"], "deleted", "{stats}");
            break;
        }
    }

    // A held call; kill -9: Disconnected, commands fail as Gone.
    relay_port(
        &pool
            .command(id, offer("held", 40004), COMMAND_WAIT)
            .await
            .unwrap(),
    );
    first.signal("KILL");
    loop {
        if let RelayEvent::Disconnected { relay } = next_event(&mut events).await {
            assert_eq!(relay, id);
            break;
        }
    }
    assert!(pool.relays().is_empty());
    assert_eq!(
        pool.command(id, offer("x", 40006), COMMAND_WAIT).await,
        Err(CommandError::Gone)
    );
    wait_log(&["relay relay1", "disconnected"]);

    // Restart: the same id, and it reports the calls it holds (none: a new process).
    let second = relay(&dir, "relay1", port, "38400-38499");
    let (again, calls) = wait_connected(&mut events).await;
    assert_eq!(again, id);
    assert!(calls.is_empty(), "{calls:?}");
    relay_port(
        &pool
            .command(id, offer("running", 40008), COMMAND_WAIT)
            .await
            .unwrap(),
    );
    assert!(pool.request_sessions(id));
    let (_, calls) = wait_connected(&mut events).await;
    assert_eq!(calls, ["running"]);

    // SIGTERM: the relay drains (its running call keeps it up) and says so at once.
    second.signal("TERM");
    let deadline = Instant::now() + WAIT;
    while pool.relays().first().map(|v| v.state) != Some(RelayState::Halting) {
        assert!(Instant::now() < deadline, "{:?}", pool.relays());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_log(&["relay relay1 is halting"]);
    assert_eq!(
        pool.command(id, offer("new", 40010), COMMAND_WAIT).await,
        Err(CommandError::Halting)
    );
    second.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_serves_two_dispatchers_and_reports_a_media_timeout_with_its_record() {
    let (dir, tls) = pki("ended");
    let pool = LinkPool::start(LinkConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Arc::clone(&tls),
    ))
    .await
    .unwrap();
    // A second dispatcher the relay also serves.
    let other = LinkPool::start(LinkConfig::new("127.0.0.1:0".parse().unwrap(), tls))
        .await
        .unwrap();
    let mut events = pool.subscribe();
    let mut other_events = other.subscribe();
    // The config file's way: no ng listener at all, a 1 s media timeout.
    let relay = relay_from_config(
        &dir,
        "38500-38599",
        &[
            format!("127.0.0.1:{}", pool.local_addr().port()),
            format!("localhost:{}", other.local_addr().port()),
        ],
    );
    let (id, _) = wait_connected(&mut events).await;
    let (other_id, _) = wait_connected(&mut other_events).await;
    relay_port(
        &pool
            .command(id, offer("quiet", 40020), COMMAND_WAIT)
            .await
            .unwrap(),
    );
    relay_port(
        &pool
            .command(id, answer("quiet", 40022), COMMAND_WAIT)
            .await
            .unwrap(),
    );
    loop {
        if let RelayEvent::Ended {
            relay: from,
            call_id,
            reason,
            stats,
        } = next_event(&mut events).await
        {
            assert_eq!(
                (from, call_id.as_str(), reason.as_str()),
                (id, "quiet", "media timeout")
            );
            assert_eq!(stats["call_id"], "quiet", "{stats}");
            assert_eq!(stats["streams"][0]["media_type"], "audio", "{stats}");
            break;
        }
    }
    // The other dispatcher hears of it too (it ignores calls it does not know).
    loop {
        if let RelayEvent::Ended { relay, call_id, .. } = next_event(&mut other_events).await {
            assert_eq!((relay, call_id.as_str()), (other_id, "quiet"));
            break;
        }
    }
    relay.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_good_certificate_are_refused_with_a_clear_log_line() {
    logs();
    let dir = workdir("refused");
    // Two CAs of one name: the stranger's certificate names our CA as its issuer.
    mediagate(&dir, &["cert", "ca", "--dir", "pki", "--name", "cluster"]);
    mediagate(&dir, &["cert", "ca", "--dir", "other", "--name", "cluster"]);
    mediagate(&dir, &["cert", "ca", "--dir", "third"]);
    issue(&dir, "pki", "dispatcher", "dispatcher");
    issue(&dir, "pki", "revoked", "relay-revoked");
    issue(&dir, "pki", "intruder", "intruder");
    issue(&dir, "other", "stranger", "relay-stranger");
    // The stranger trusts our dispatcher, but its own certificate is from another CA.
    issue(&dir, "third", "foreign", "relay-foreign");
    std::fs::copy(dir.join("pki/ca.pem"), dir.join("stranger/ca.pem")).unwrap();
    std::fs::copy(dir.join("pki/ca.pem"), dir.join("foreign/ca.pem")).unwrap();
    mediagate(&dir, &["cert", "revoke", "--ca", "pki", "revoked/cert.pem"]);
    std::fs::copy(dir.join("pki/crl.pem"), dir.join("dispatcher/crl.pem")).unwrap();

    let tls = Arc::new(NodeTls::load(&dir.join("dispatcher")).unwrap());
    let mut config = LinkConfig::new("127.0.0.1:0".parse().unwrap(), tls);
    config.passport = Some("CN=relay*".parse().unwrap());
    let pool = LinkPool::start(config).await.unwrap();
    let port = pool.local_addr().port();

    // No certificate at all: openssl s_client.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-CAfile",
            "pki/ca.pem",
        ])
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    drop(out);
    wait_log(&["refused relay connection", "presented no certificate"]);

    // (node dir, the dispatcher's log line, the relay's log line)
    let tls_refusal = "refused our certificate (see its log)";
    let cases = [
        ("stranger", "not signed by our CA", tls_refusal),
        ("foreign", "not issued by our CA", tls_refusal),
        ("revoked", "certificate is revoked", tls_refusal),
        (
            "intruder",
            "does not match the passport \"CN=relay*\"",
            "the peer refused the link: the peer's certificate subject \"CN=intruder\"",
        ),
    ];
    for (tls_dir, dispatcher_says, relay_says) in cases {
        let peer = relay(&dir, tls_dir, port, "38600-38699");
        wait_log(&["refused relay", dispatcher_says]);
        peer.wait_for_stderr_line(relay_says, WAIT);
        peer.kill();
    }
    assert!(pool.relays().is_empty(), "{:?}", pool.relays());
}

async fn next_accounted(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<mediagate_dispatcher::accounting::Accounted>,
) -> mediagate_dispatcher::accounting::Accounted {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("accounted in time")
        .expect("the hook alive")
}

/// Every finished call of a remote relay reaches the dispatcher's accounting hook
/// with the relay's own record: a deleted call (whose record comes over the link
/// after the `delete` reply) and a timed-out one; both go into the dispatcher's
/// records store, since no local engine wrote them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_relays_deleted_and_timed_out_calls_are_accounted_with_their_records() {
    use mediagate_dispatcher::accounting::{AccountingOptions, ClusterAccounting};
    use mediagate_dispatcher::router::{EndedHook, Router};
    use mediagate_dispatcher::sessions::SessionMap;
    use mediagate_ops::store::Record;
    use mediagate_relay::record::SessionRecord;

    let (dir, tls) = pki("accounted");
    let pool = Arc::new(
        LinkPool::start(LinkConfig::new("127.0.0.1:0".parse().unwrap(), tls))
            .await
            .unwrap(),
    );
    let mut events = pool.subscribe();
    let file = dir.join("accounting.sqlite");
    let writer = tokio::task::spawn_blocking({
        let file = file.clone();
        move || {
            mediagate_ops::store::spawn(
                mediagate_ops::store::StoreTarget::Sqlite(file),
                &[SessionRecord::TABLE],
                mediagate_ops::store::WriterOptions::default(),
            )
        }
    })
    .await
    .unwrap()
    .unwrap();
    let accounting = ClusterAccounting::new(AccountingOptions {
        records: Some(writer.sink()),
        record_wait: Duration::from_secs(60),
        ..AccountingOptions::default()
    });
    let mut accounted = accounting.observe();
    let router = Router::start(
        Arc::clone(&pool) as Arc<dyn RelayPool>,
        SessionMap::in_memory(),
        COMMAND_WAIT,
        Arc::clone(&accounting) as Arc<dyn EndedHook>,
    );
    let relay = relay_from_config(
        &dir,
        "38600-38699",
        &[format!("127.0.0.1:{}", pool.local_addr().port())],
    );
    // No pause after the connect: the router reconciles with the same Connected event
    // on its own task, and must keep a call placed before it did (the relay's list
    // predates the call, but the relay confirms it holds it).
    wait_connected(&mut events).await;

    let ok = |reply: &Value| {
        let good = reply.get("result").and_then(Value::as_str) == Some("ok");
        assert!(good, "{reply:?}\n{}", relay.diagnostics());
        good
    };
    assert!(ok(&router.handle_ng(offer("acct-deleted", 40030)).await));
    assert!(ok(&router.handle_ng(answer("acct-deleted", 40032)).await));
    let delete = dict([
        ("command", Value::str("delete")),
        ("call-id", Value::str("acct-deleted")),
        ("from-tag", Value::str("caller")),
        ("delete delay", Value::Int(0)),
    ]);
    assert!(ok(&router.handle_ng(delete).await));
    let a = next_accounted(&mut accounted).await;
    assert_eq!(
        (
            a.relay.as_str(),
            a.record.call_id.as_str(),
            a.record.reason.as_str()
        ),
        ("relay1", "acct-deleted", "deleted")
    );
    assert!(a.from_relay && a.stored, "{a:?}");
    assert_eq!(a.record.streams[0].media_type, "audio");

    assert!(ok(&router.handle_ng(offer("acct-quiet", 40034)).await));
    assert!(ok(&router.handle_ng(answer("acct-quiet", 40036)).await));
    let a = next_accounted(&mut accounted).await;
    assert_eq!(
        (a.record.call_id.as_str(), a.record.reason.as_str()),
        ("acct-quiet", "media timeout")
    );
    assert!(a.from_relay && a.stored, "{a:?}");
    assert_eq!(router.call_count(), 0);
    assert_eq!(accounting.waiting_count(), 0);

    relay.kill();
    drop((router, accounting));
    let report = tokio::task::spawn_blocking(move || writer.close())
        .await
        .unwrap();
    assert_eq!(report.stored, 2);
    let mut store = mediagate_ops::store::SqliteStore::open(&file).unwrap();
    let mut ids: Vec<String> = store
        .records::<SessionRecord>(10)
        .unwrap()
        .into_iter()
        .map(|r| r.call_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["acct-deleted", "acct-quiet"]);
}

/// An RTP packet (PCMU, 160 bytes of payload) with sequence number `seq`.
fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

/// The call `call_id` as the management interface's `sessions` lists it, once its
/// streams are in it: the listing leaves out the streams of a relay that did not answer
/// within the router's relay timeout, which a loaded machine can make it miss.
async fn listed_with_streams(
    view: &mediagate_dispatcher::cluster_view::RouterView,
    call_id: &str,
) -> mediagate_dispatcher::session_stats::MediaProxySession {
    let deadline = Instant::now() + WAIT;
    loop {
        let session = listed(view, call_id).await;
        if !session.streams.is_empty() {
            return session;
        }
        assert!(Instant::now() < deadline, "no streams listed: {session:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The call `call_id` as the management interface's `sessions` lists it.
async fn listed(
    view: &mediagate_dispatcher::cluster_view::RouterView,
    call_id: &str,
) -> mediagate_dispatcher::session_stats::MediaProxySession {
    use mediagate_dispatcher::session_stats::ClusterView;
    view.sessions()
        .await
        .into_iter()
        .find(|s| s.call_id == call_id)
        .expect("the call is listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_answers_carry_a_remote_relays_live_streams_version_and_bit_rate() {
    use mediagate_dispatcher::cluster_view::RouterView;
    use mediagate_dispatcher::router::{LogEnded, Router};
    use mediagate_dispatcher::session_stats::{ClusterView, RelaySummary};
    use mediagate_dispatcher::sessions::SessionMap;

    let (dir, tls) = pki("live");
    let pool = LinkPool::start(LinkConfig::new("127.0.0.1:0".parse().unwrap(), tls))
        .await
        .unwrap();
    let mut events = pool.subscribe();
    let relay1 = relay(&dir, "relay1", pool.local_addr().port(), "38700-38799");
    wait_connected(&mut events).await;
    // Long enough for a loaded machine's relay to answer a listing, short enough that
    // the stopped relay's bound below is a real check.
    let relay_timeout = Duration::from_secs(1);
    let router = Router::start(
        Arc::new(pool.clone()),
        SessionMap::in_memory(),
        relay_timeout,
        Arc::new(LogEnded),
    );
    let view = RouterView::new(Arc::clone(&router));

    // A call through the router, with media from the caller.
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    callee.set_read_timeout(Some(COMMAND_WAIT)).unwrap();
    let offered = router
        .handle_ng(offer("live-1", caller.local_addr().unwrap().port()))
        .await;
    relay_port(&offered);
    let answered = router
        .handle_ng(answer("live-1", callee.local_addr().unwrap().port()))
        .await;
    let to_relay = relay_port(&answered);
    let mut buf = [0u8; 2048];
    for seq in 0..10 {
        caller.send_to(&rtp(seq), ("127.0.0.1", to_relay)).unwrap();
        callee
            .recv(&mut buf)
            .expect("the relay forwards the caller's RTP");
    }
    let first = listed_with_streams(&view, "live-1").await;
    assert_eq!(first.streams.len(), 1, "{first:?}");
    let s = &first.streams[0];
    assert_eq!((s.media_type.as_str(), s.status), ("audio", "active"));
    assert_eq!(s.caller_packets, 10, "{s:?}");
    assert_eq!(s.caller_bytes, 10 * 172, "{s:?}");
    assert_eq!(s.caller_codec, "PCMU");
    assert!(s.callee_local.starts_with("127.0.0.1:"), "{s:?}");
    for seq in 10..25 {
        caller.send_to(&rtp(seq), ("127.0.0.1", to_relay)).unwrap();
        callee.recv(&mut buf).unwrap();
    }
    assert_eq!(
        listed_with_streams(&view, "live-1").await.streams[0].caller_packets,
        25
    );

    // The summary: the relay's own version and uptime, its streams, and (after its
    // next status interval) a bit rate.
    let deadline = Instant::now() + WAIT;
    loop {
        for seq in 0..5 {
            caller.send_to(&rtp(seq), ("127.0.0.1", to_relay)).unwrap();
        }
        let summary = view.summary().await;
        let [RelaySummary::Up {
            version,
            status,
            stream_count,
            bps_relayed,
            session_count,
            ..
        }] = &summary[..]
        else {
            panic!("{summary:?}");
        };
        assert_eq!(version, env!("CARGO_PKG_VERSION"));
        assert_eq!(status, "active");
        assert_eq!(stream_count.get("audio"), Some(&1), "{summary:?}");
        assert_eq!(*session_count, 1);
        if *bps_relayed > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no bit rate: {summary:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let uptime = |summary: &[RelaySummary]| match summary {
        [RelaySummary::Up { uptime, .. }] => *uptime,
        other => panic!("{other:?}"),
    };
    assert!(uptime(&view.summary().await) >= 1);

    // A relay that stops answering (stopped, its link still up) holds the answer up
    // by the relay timeout at most, and its call is listed without streams.
    relay1.signal("STOP");
    let started = Instant::now();
    let stalled = listed(&view, "live-1").await;
    let took = started.elapsed();
    relay1.signal("CONT");
    assert!(stalled.streams.is_empty(), "{stalled:?}");
    assert!(took < relay_timeout * 3, "took {took:?}");
    relay1.kill();
}
