//! Reload without loss (issue 11, item 4) on the real binary: `mediagate run --config F`,
//! F rewritten, SIGHUP. The edge takes a new remap rule while a viewer that was already
//! watching keeps receiving packets with no gap longer than its GOP; a broken file
//! changes nothing and the log names its line and column. The relay gives the next
//! offer ports from a new range while a running call keeps its own.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bencode_str, ng_ask, EdgeProc};
use mediagate_testkit::ports::free_udp_port;
use mediagate_testkit::process::Peer;
use mediagate_testkit::{ffprobe, Origin, OriginOptions, Transport};

/// Rewrites a config file whole, as an editor or a deployment tool would.
fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The status line of a DESCRIBE of `url` on a fresh connection.
fn describe_status(port: u16, url: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    text.lines().next().unwrap_or_default().to_owned()
}

/// A TCP-interleaved viewer of the video track that records when each RTP packet
/// arrives, until `stop` turns true.
fn watch_video(port: u16, url: &str, stop: &AtomicBool) -> Vec<Instant> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut ask = |req: String| {
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let d = ask(format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n"));
    assert!(d.starts_with("RTSP/1.0 200"), "{d}");
    let setup = ask(format!(
        "SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
    ));
    let session = setup
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|v| v.split(';').next())
        .expect("a session")
        .to_owned();
    s.write_all(format!("PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n").as_bytes())
        .unwrap();
    let mut arrivals = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let n = match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => panic!("the viewer's connection failed: {e}"),
        };
        let now = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        loop {
            if buf.first() == Some(&b'$') {
                if buf.len() < 4 {
                    break;
                }
                let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
                if buf.len() < 4 + len {
                    break;
                }
                if buf[1] == 0 {
                    arrivals.push(now);
                }
                buf.drain(..4 + len);
            } else if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                // The PLAY response (no body) before the media.
                assert!(
                    buf.starts_with(b"RTSP/1.0 200"),
                    "{:?}",
                    String::from_utf8_lossy(&buf)
                );
                buf.drain(..end + 4);
            } else {
                break;
            }
        }
    }
    arrivals
}

/// The longest wait between two packets, and between the last packet and `end`.
fn longest_gap(arrivals: &[Instant], end: Instant) -> Duration {
    arrivals
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain(arrivals.last().map(|l| end.saturating_duration_since(*l)))
        .max()
        .unwrap_or(Duration::MAX)
}

#[test]
fn a_new_rule_is_reachable_and_a_broken_file_changes_nothing_while_a_viewer_keeps_watching() {
    // One keyframe a second (15 frames at 15 fps): the gap a viewer may never see.
    let gop = Duration::from_secs(1);
    let origin = Origin::start(OriginOptions {
        live_mounts: vec!["/live".into(), "/other".into()],
        gop: Some(15),
        ..OriginOptions::default()
    })
    .expect("gst-rtsp-server origin starts");
    let first_rule = format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\n",
        origin.url("/live")
    );
    let edge = EdgeProc::start(&first_rule);
    let path = edge.config_path();
    let base = std::fs::read_to_string(&path).unwrap();
    assert!(describe_status(edge.port, &edge.url("/cam2")).contains(" 404 "));

    let stop = Arc::new(AtomicBool::new(false));
    let viewer = {
        let (port, url, stop) = (edge.port, edge.url("/cam"), stop.clone());
        std::thread::spawn(move || watch_video(port, &url, &stop))
    };
    std::thread::sleep(Duration::from_secs(3));

    // A second rule, to another stream of the origin.
    let second_rule = format!(
        "[[edge.route]]\nadvertised = \"/cam2\"\norigin = \"{}\"\n",
        origin.url("/other")
    );
    rewrite(&path, &format!("{base}{second_rule}"));
    edge.peer.signal("HUP");
    edge.peer
        .wait_for_stderr_line("reloaded", Duration::from_secs(10));
    let probe = ffprobe(&edge.url("/cam2"), Transport::Tcp).expect("ffprobe runs");
    assert!(
        probe.has("video", "h264"),
        "{probe:?}\n{}",
        edge.peer.diagnostics()
    );

    // A third rule in a file with a mistake on line 3 of the part appended: nothing of
    // that file may apply.
    let broken = format!(
        "{base}{second_rule}[[edge.route]]\nadvertised = \"/cam3\"\norigin = \"{}\"\n[edge.reconnect]\nbackoff_min = \"soon\"\n",
        origin.url("/live")
    );
    let bad_line = broken.lines().count();
    rewrite(&path, &broken);
    edge.peer.signal("HUP");
    edge.peer
        .wait_for_stderr_line("nothing changed", Duration::from_secs(10));
    // The place comes on a line of its own after "nothing changed", which the reader
    // thread may not have taken in yet: wait for it, bounded.
    let at = format!("{}:{bad_line}:15:", path.display());
    edge.peer.wait_for_stderr_line(&at, Duration::from_secs(10));
    assert!(describe_status(edge.port, &edge.url("/cam3")).contains(" 404 "));
    assert!(describe_status(edge.port, &edge.url("/cam2")).contains(" 200 "));
    assert!(describe_status(edge.port, &edge.url("/cam")).contains(" 200 "));

    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let end = Instant::now();
    let arrivals = viewer.join().expect("the viewer ran");
    // About 9 s of 15 fps video, several packets a frame.
    assert!(arrivals.len() > 100, "{} packets", arrivals.len());
    let gap = longest_gap(&arrivals, end);
    assert!(
        gap < gop,
        "the running viewer saw a {gap:?} gap (GOP {gop:?})\n{}",
        edge.peer.diagnostics()
    );
    assert_eq!(
        origin.play_count("/live"),
        1,
        "the running viewer's stream kept its origin session\n{}",
        origin.diagnostics()
    );
}

fn offer(call_id: &str) -> Vec<u8> {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
    format!(
        "d7:command5:offer7:call-id{}8:from-tag1:a3:sdp{}8:supportsl10:load limitee",
        bencode_str(call_id),
        bencode_str(sdp)
    )
    .into_bytes()
}

/// The media port the relay wrote into an offer's reply SDP.
fn offered_port(reply: &str) -> u16 {
    reply
        .split("m=audio ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no media port in {reply}"))
}

#[test]
fn the_next_offer_takes_ports_from_a_new_range_and_the_running_call_keeps_its_own() {
    let dir = std::env::temp_dir().join(format!("mg-reload-relay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ng = free_udp_port().unwrap();
    let config = |ports: &str| {
        format!(
            "state_dir = {var:?}\n[edge]\nenabled = false\n[relay]\nenabled = true\nng_listen_udp = [\"127.0.0.1:{ng}\"]\nmedia_address = [{{ address = \"127.0.0.1\" }}]\nports = \"{ports}\"\nforward_threads = 1\n",
            var = dir.join("var").display().to_string(),
        )
    };
    let path = dir.join("mediagate.toml");
    std::fs::write(&path, config("38400-38439")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("run").arg("--config").arg(&path);
    let relay = Peer::spawn("mediagate run (relay)", cmd).unwrap();
    relay.wait_for_stderr_line("listening for ng commands", Duration::from_secs(10));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let running = ng_ask(&socket, ng, "o1", offer("running"));
    let old_port = offered_port(&running);
    assert!((38400..38440).contains(&old_port), "{running}");

    rewrite(&path, &config("38500-38539"));
    relay.signal("HUP");
    relay.wait_for_stderr_line("reloaded", Duration::from_secs(10));
    let next = ng_ask(&socket, ng, "o2", offer("next"));
    assert!((38500..38540).contains(&offered_port(&next)), "{next}");
    // The running call is still there, on its own ports (a retransmitted offer
    // answers with the ports the call has).
    let again = ng_ask(&socket, ng, "o3", offer("running"));
    assert_eq!(offered_port(&again), old_port, "{again}");

    // A larger range than the forwarding threads were sized for needs a restart; the
    // range stays as it was.
    rewrite(&path, &config("38600-38799"));
    relay.signal("HUP");
    relay.wait_for_stderr_line(
        "relay.ports: the new range has 200 ports",
        Duration::from_secs(10),
    );
    let after = ng_ask(&socket, ng, "o4", offer("after"));
    assert!((38500..38540).contains(&offered_port(&after)), "{after}");
    assert_eq!(relay.try_status(), None, "{}", relay.diagnostics());
    drop(relay);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `mediagate ARGS` in `dir`, which must succeed.
fn mediagate_in(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mediagate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dispatcher_takes_a_new_passport_and_relay_timeout_and_keeps_its_listeners_until_a_restart() {
    let dir = std::env::temp_dir().join(format!("mg-reload-dispatcher-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    mediagate_in(&dir, &["cert", "ca", "--dir", "pki"]);
    for node in ["dispatcher", "relay1", "relay2"] {
        mediagate_in(&dir, &["cert", "issue", "--ca", "pki", "--dir", node, node]);
    }
    let ng = free_udp_port().unwrap();
    let other_ng = free_udp_port().unwrap();
    let link = mediagate_testkit::ports::free_tcp_port().unwrap();
    let config = |ng: u16, passport: &str, timeout: &str| {
        format!(
            "state_dir = {var:?}\n[edge]\nenabled = false\n[dispatcher]\nenabled = true\nng_listen_udp = [\"127.0.0.1:{ng}\"]\nrelay_listen = \"127.0.0.1:{link}\"\ntls_dir = {tls:?}\npassport = \"{passport}\"\nrelay_timeout = \"{timeout}\"\n",
            var = dir.join("var").display().to_string(),
            tls = dir.join("dispatcher").display().to_string(),
        )
    };
    let path = dir.join("mediagate.toml");
    std::fs::write(&path, config(ng, "CN=relay1", "200ms")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("run").arg("--config").arg(&path);
    let dispatcher = Peer::spawn("mediagate run (dispatcher)", cmd).unwrap();
    dispatcher.wait_for_stderr_line("listening for relays", Duration::from_secs(10));

    // relay2 is not in the passport: refused.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.args([
        "relay",
        "--dispatcher",
        &format!("127.0.0.1:{link}"),
        "--tls-dir",
        "relay2",
        "--address",
        "127.0.0.1",
        "--ports",
        "38900-38919",
    ])
    .current_dir(&dir);
    let relay2 = Peer::spawn("mediagate relay (relay2)", cmd).unwrap();
    dispatcher.wait_for_stderr_line("does not match the passport", Duration::from_secs(20));

    // A wider passport and a longer relay timeout apply; a new ng address does not.
    rewrite(&path, &config(other_ng, "CN=relay*", "450ms"));
    dispatcher.signal("HUP");
    let line = dispatcher.wait_for_stderr_line("dispatcher: reloaded", Duration::from_secs(10));
    assert!(line.contains("relay_timeout 450 ms"), "{line}");
    assert!(line.contains("CN=relay*"), "{line}");
    dispatcher.wait_for_stderr_line(
        "dispatcher.ng_listen_udp needs a restart",
        Duration::from_secs(10),
    );
    // relay2's next try (its back-off is at most 10 s) is admitted.
    dispatcher.wait_for_stderr_line("relay relay2 linked", Duration::from_secs(30));
    // The running listener still answers; the new address is not bound.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let pong = ng_ask(&socket, ng, "p1", "d7:command4:pinge");
    assert!(pong.contains("pong"), "{pong}");
    assert!(
        UdpSocket::bind(("127.0.0.1", other_ng)).is_ok(),
        "the new address was bound without a restart"
    );
    assert_eq!(
        dispatcher.try_status(),
        None,
        "{}",
        dispatcher.diagnostics()
    );
    drop(relay2);
    drop(dispatcher);
    let _ = std::fs::remove_dir_all(&dir);
}
