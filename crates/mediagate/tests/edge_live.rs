//! The edge with real peers: a gst-rtsp-server origin, ffmpeg and GStreamer `rtspsrc`
//! viewers, the real `mediagate` binary in between (issue 3, "Tests with real peers").

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{ffmpeg_gapless, EdgeProc, RawRtsp};
use mediagate_testkit::{ffprobe, rtspsrc, Origin, OriginOptions, Transport};

fn route(origin: &Origin, mount: &str) -> String {
    format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\n",
        origin.url(mount)
    )
}

fn origin() -> Origin {
    Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts")
}

#[test]
fn ffmpeg_decodes_through_the_edge_without_gaps_over_tcp_udp_and_http_tunnel() {
    let origin = origin();
    // The viewers come one after another, and the one upstream session must outlast
    // the gap between them: an ffmpeg start on a loaded machine can take longer than
    // the tests' short default linger (2 s).
    let edge = EdgeProc::start(&format!("linger = \"30s\"\n{}", route(&origin, "/live")));
    let probe = ffprobe(&edge.url("/cam"), Transport::Tcp).expect("ffprobe runs");
    assert!(
        probe.has("video", "h264") && probe.has("audio", "aac"),
        "{probe:?}"
    );
    for transport in [Transport::Tcp, Transport::Udp, Transport::HttpTunnel] {
        let r = ffmpeg_gapless(&edge.url("/cam"), transport, 6.0);
        // 15 fps and ~47 AAC frames/s for 6 s; the slack covers ffmpeg's start-up (its
        // audio may begin over a second after the video on a busy machine).
        assert!(r.video >= 45 && r.audio >= 140, "{transport:?}: {r:?}");
        assert!(
            r.gap_warnings.is_empty(),
            "{transport:?} gaps: {:?}\n{}",
            r.gap_warnings,
            r.diagnostics
        );
    }
    assert_eq!(
        origin.play_count("/live"),
        1,
        "one upstream session for all viewers"
    );
}

/// Every finished viewer session becomes a row of `edge_sessions` in the process's
/// records store (issue 10: one writer per process for every role's records).
#[test]
fn a_finished_viewer_session_is_stored_with_its_counters() {
    use mediagate_edge::record::ViewerSessionRecord;
    use mediagate_ops::store::SqliteStore;

    let origin = origin();
    let edge = EdgeProc::start(&route(&origin, "/live"));
    let r = ffmpeg_gapless(&edge.url("/cam"), Transport::Tcp, 3.0);
    assert!(r.video > 0, "{r:?}");
    // The row is queued when the session ends and written by the writer thread.
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let mut store = SqliteStore::open(&edge.records_path()).expect("the store exists");
        let records: Vec<ViewerSessionRecord> = store.records(10).expect("rows read back");
        if !records.is_empty() || Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(records.len(), 1, "{records:?}");
    let v = &records[0];
    assert_eq!(v.url, edge.url("/cam"));
    assert_eq!(v.transport, "tcp");
    assert!(
        v.reason == "teardown" || v.reason == "connection-closed",
        "{v:?}"
    );
    assert!(v.packets > 50 && v.bytes > v.packets * 100, "{v:?}");
    assert!(
        v.duration_ms >= 2_000 && v.end_unix_ms >= v.start_unix_ms,
        "{v:?}"
    );
}

#[test]
fn rtspsrc_decodes_through_the_edge_over_tcp_udp_and_http_tunnel() {
    let origin = origin();
    let edge = EdgeProc::start(&route(&origin, "/live"));
    for transport in [Transport::Tcp, Transport::Udp, Transport::HttpTunnel] {
        let r =
            rtspsrc(&edge.url("/cam"), transport, Duration::from_secs(4)).expect("rtspsrc runs");
        assert!(r.errors.is_empty(), "{transport:?}: {:?}", r.errors);
        assert!(
            r.video_buffers >= 30 && r.audio_buffers >= 90,
            "{transport:?}: {r:?}"
        );
    }
}

#[test]
fn twenty_concurrent_viewers_cost_the_origin_one_session() {
    let origin = origin();
    let edge = EdgeProc::start(&route(&origin, "/live"));
    let url = edge.url("/cam");
    let viewers: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            let t = if i % 2 == 0 {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            std::thread::spawn(move || ffmpeg_gapless(&url, t, 6.0))
        })
        .collect();
    for (i, v) in viewers.into_iter().enumerate() {
        let r = v.join().unwrap();
        assert!(r.video >= 40 && r.audio >= 120, "viewer {i}: {r:?}");
    }
    assert_eq!(origin.play_count("/live"), 1, "{}", origin.diagnostics());
    assert_eq!(origin.request_count("DESCRIBE", "/live", 200), 1);
}

#[test]
fn two_level_hierarchy_costs_the_origin_one_session() {
    let origin = origin();
    let parent = EdgeProc::start("[edge.forward]\nenabled = true\nallow = [\"127.0.0.1\"]\n");
    let child = |_: u8| {
        EdgeProc::start(&format!(
            "parent = \"rtsp://127.0.0.1:{}/\"\n{}",
            parent.port,
            route(&origin, "/live")
        ))
    };
    let (a, b) = (child(1), child(2));
    let viewers: Vec<_> = [&a, &a, &b, &b]
        .iter()
        .map(|e| {
            let url = e.url("/cam");
            std::thread::spawn(move || ffmpeg_gapless(&url, Transport::Tcp, 4.0))
        })
        .collect();
    for v in viewers {
        let r = v.join().unwrap();
        assert!(r.video >= 30, "{r:?}");
    }
    assert_eq!(origin.play_count("/live"), 1, "{}", origin.diagnostics());
}

#[test]
fn viewers_keep_playing_across_an_origin_restart() {
    let port = mediagate_testkit::ports::free_tcp_port().unwrap();
    let opts = OriginOptions {
        port,
        ..OriginOptions::default()
    };
    let first = Origin::start(opts.clone()).expect("origin starts");
    let edge = EdgeProc::start(&route(&first, "/live"));
    let url = edge.url("/cam");
    let viewer = std::thread::spawn(move || ffmpeg_gapless(&url, Transport::Tcp, 14.0));
    std::thread::sleep(Duration::from_secs(4));
    drop(first); // the origin dies mid-stream
    std::thread::sleep(Duration::from_secs(2));
    let second = Origin::start(opts).expect("origin restarts on the same port");
    second
        .wait_play_count("/live", 1, Duration::from_secs(15))
        .expect("the edge reconnects to the restarted origin");
    let r = viewer.join().unwrap();
    // 14 s of stream time at 15 fps, minus the ~2-4 s outage: frames after the restart
    // prove the viewer stayed attached and kept decoding.
    assert!(r.video >= 120, "viewer stopped at the outage: {r:?}");
    assert!(
        !r.gap_warnings.iter().any(|w| w.contains("missed")),
        "sequence numbers jumped at the reconnect: {:?}",
        r.gap_warnings
    );
}

/// Opens an interleaved session by hand and then never reads again.
fn stalled_tcp_viewer(url: &str, port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut send = |req: String| {
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let d = send(format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n"));
    assert!(d.starts_with("RTSP/1.0 200"), "{d}");
    let s1 = send(format!(
        "SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
    ));
    let session = s1
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|v| v.split(';').next())
        .expect("a session")
        .to_owned();
    let p = send(format!(
        "PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n"
    ));
    assert!(p.starts_with("RTSP/1.0 200"), "{p}");
    s
}

#[test]
fn a_viewer_that_stops_reading_hurts_no_one_and_memory_stays_flat() {
    let origin = Origin::start(OriginOptions {
        video_kbps: 1000,
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let edge = EdgeProc::start(&route(&origin, "/live"));
    let url = edge.url("/cam");
    let _stalled: Vec<TcpStream> = (0..3)
        .map(|_| stalled_tcp_viewer(&url, edge.port))
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let rss_before = edge.rss_kib();
    let r = ffmpeg_gapless(&url, Transport::Tcp, 8.0);
    let rss_after = edge.rss_kib();
    assert!(r.video >= 90, "{r:?}");
    assert!(
        r.gap_warnings.is_empty(),
        "a stalled viewer hurt another: {:?}",
        r.gap_warnings
    );
    // Each stalled viewer's backlog is bounded (1,024 packets by default): memory may
    // settle once, then must not keep growing with the 8 s of stream.
    assert!(
        rss_after < rss_before + 16 * 1024,
        "edge RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[test]
fn hostile_input_gets_errors_and_the_edge_keeps_serving() {
    let origin = origin();
    // The idle connections below come from the viewer's own address; the per-client
    // cap (tested in edge_limits) would refuse the viewer, which is not the point here.
    let edge = EdgeProc::start(&format!(
        "max_connections_per_client = 2000\n{}",
        route(&origin, "/live")
    ));
    // Sends `bytes`, returns the response head (or what came before EOF).
    let talk = |bytes: &[u8]| -> String {
        let mut s = TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let garbage = talk(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n");
    assert!(garbage.starts_with("RTSP/1.0 400"), "{garbage:?}");
    let huge = format!(
        "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    assert!(talk(huge.as_bytes()).starts_with("RTSP/1.0 400"));
    let many = format!(
        "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n{}\r\n",
        "X-H: v\r\n".repeat(500)
    );
    assert!(talk(many.as_bytes()).starts_with("RTSP/1.0 400"));
    let no_cseq = talk(b"OPTIONS * RTSP/1.0\r\n\r\n");
    assert!(
        no_cseq.is_empty() || no_cseq.starts_with("RTSP/1.0 400"),
        "{no_cseq:?}"
    );
    let require = talk(b"OPTIONS * RTSP/1.0\r\nCSeq: 2\r\nProxy-Require: x-magic\r\n\r\n");
    assert!(
        require.starts_with("RTSP/1.0 551") && require.contains("Unsupported: x-magic"),
        "{require}"
    );
    let rtsp2 = talk(b"OPTIONS * RTSP/2.0\r\nCSeq: 3\r\n\r\n");
    assert!(rtsp2.starts_with("RTSP/1.0 505"), "{rtsp2}");
    // 1,000 idle connections: the edge must still serve a real viewer.
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(("127.0.0.1", edge.port)).expect("connect"))
        .collect();
    let r = ffmpeg_gapless(&edge.url("/cam"), Transport::Tcp, 4.0);
    assert!(r.video >= 30 && r.gap_warnings.is_empty(), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(idle);
}

fn session_of(r: &mediagate_rtsp::Response) -> String {
    r.headers
        .get("Session")
        .and_then(|v| v.split(';').next())
        .expect("a Session header")
        .to_owned()
}

#[test]
fn requests_a_proxy_must_refuse_get_the_right_status() {
    let origin = origin();
    let extra = format!(
        "max_viewers = 2\n{}[[edge.route]]\nadvertised = \"/other\"\norigin = \"{}\"\n",
        route(&origin, "/live"),
        origin.url("/live")
    );
    let edge = EdgeProc::start(&extra);
    let cam = edge.url("/cam");
    let mut c = RawRtsp::connect(edge.port);
    let opts = c.req("OPTIONS", "*", &[]);
    assert_eq!(opts.status.as_u16(), 200);
    assert!(opts
        .headers
        .get("Public")
        .is_some_and(|p| p.contains("GET_PARAMETER")));
    assert!(
        opts.headers
            .get("Via")
            .is_some_and(|v| v.starts_with("RTSP/1.0 ")),
        "{opts:?}"
    );
    assert_eq!(
        c.req("DESCRIBE", &edge.url("/nowhere"), &[])
            .status
            .as_u16(),
        404
    );
    assert_eq!(
        c.req("PLAY", &cam, &[("Session", "deadbeef")])
            .status
            .as_u16(),
        454
    );
    let multicast = c.req(
        "SETUP",
        &format!("{cam}/trackID=0"),
        &[("Transport", "RTP/AVP;multicast")],
    );
    assert_eq!(multicast.status.as_u16(), 461);
    let tcp = "RTP/AVP/TCP;unicast;interleaved=0-1";
    let setup = c.req("SETUP", &format!("{cam}/trackID=0"), &[("Transport", tcp)]);
    assert_eq!(setup.status.as_u16(), 200, "{setup:?}");
    let sid = session_of(&setup);
    assert!(setup
        .headers
        .get("Session")
        .is_some_and(|v| v.contains("timeout=")));
    assert!(setup
        .headers
        .get("Transport")
        .is_some_and(|v| v.contains("interleaved=0-1")));
    let other = c.req(
        "SETUP",
        &format!("{}/trackID=0", edge.url("/other")),
        &[("Transport", tcp), ("Session", &sid)],
    );
    assert_eq!(other.status.as_u16(), 459, "{other:?}");
    assert_eq!(
        c.req("PLAY", &cam, &[("Session", &sid)]).status.as_u16(),
        200
    );
    let late = c.req(
        "SETUP",
        &format!("{cam}/trackID=1"),
        &[
            ("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3"),
            ("Session", &sid),
        ],
    );
    assert_eq!(late.status.as_u16(), 455, "{late:?}");
    // The limit is two sessions: a second viewer gets in, a third is turned away.
    let mut d = RawRtsp::connect(edge.port);
    assert_eq!(
        d.req("SETUP", &format!("{cam}/trackID=0"), &[("Transport", tcp)])
            .status
            .as_u16(),
        200
    );
    let mut e = RawRtsp::connect(edge.port);
    assert_eq!(
        e.req("SETUP", &format!("{cam}/trackID=0"), &[("Transport", tcp)])
            .status
            .as_u16(),
        503
    );
    assert_eq!(
        c.req("TEARDOWN", &cam, &[("Session", &sid)])
            .status
            .as_u16(),
        200
    );
    assert_eq!(
        e.req("SETUP", &format!("{cam}/trackID=0"), &[("Transport", tcp)])
            .status
            .as_u16(),
        200
    );
}

#[test]
fn session_timeout_is_advertised_and_enforced() {
    let origin = origin();
    let edge = EdgeProc::start(&format!(
        "session_timeout = \"2s\"\n{}",
        route(&origin, "/live")
    ));
    let cam = edge.url("/cam");
    let udp = mediagate_testkit::ports::UdpPortPair::reserve().unwrap();
    let (rtp, rtcp) = udp.ports();
    let mut c = RawRtsp::connect(edge.port);
    let t = format!("RTP/AVP;unicast;client_port={rtp}-{rtcp}");
    let setup = c.req("SETUP", &format!("{cam}/trackID=0"), &[("Transport", &t)]);
    assert!(
        setup
            .headers
            .get("Session")
            .is_some_and(|v| v.ends_with(";timeout=2")),
        "{setup:?}"
    );
    assert!(
        setup
            .headers
            .get("Transport")
            .is_some_and(|v| v.contains("server_port=")),
        "{setup:?}"
    );
    let sid = session_of(&setup);
    assert_eq!(
        c.req("PLAY", &cam, &[("Session", &sid)]).status.as_u16(),
        200
    );
    // Keep-alives hold the session past its timeout...
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(
            c.req("GET_PARAMETER", &cam, &[("Session", &sid)])
                .status
                .as_u16(),
            200
        );
    }
    // ...silence ends it and the connection with it.
    assert!(
        c.closed_within(Duration::from_secs(6)),
        "the edge kept a silent session"
    );
}

#[test]
fn a_route_can_read_the_origin_over_udp() {
    let origin = origin();
    let edge = EdgeProc::start(&format!(
        "{}upstream_transport = \"udp\"\n",
        route(&origin, "/live")
    ));
    for transport in [Transport::Tcp, Transport::Udp] {
        let r = ffmpeg_gapless(&edge.url("/cam"), transport, 6.0);
        assert!(r.video >= 45 && r.audio >= 140, "{transport:?}: {r:?}");
        assert!(
            r.gap_warnings.is_empty(),
            "{transport:?}: {:?}",
            r.gap_warnings
        );
    }
    let setups: Vec<String> = origin
        .requests()
        .into_iter()
        .filter(|r| r.method == "SETUP")
        .filter_map(|r| r.transport)
        .collect();
    assert!(!setups.is_empty());
    assert!(
        setups
            .iter()
            .all(|t| t.contains("client_port=") && !t.contains("interleaved")),
        "the edge must set the origin up over UDP: {setups:?}"
    );
}

#[test]
fn viewers_are_let_go_only_after_the_give_up_time() {
    let first = origin();
    let edge = EdgeProc::start(&format!(
        "{}[edge.reconnect]\ngive_up_after = \"4s\"\n",
        route(&first, "/live")
    ));
    let cam = edge.url("/cam");
    let mut c = RawRtsp::connect(edge.port);
    let tcp = "RTP/AVP/TCP;unicast;interleaved=0-1";
    let setup = c.req("SETUP", &format!("{cam}/trackID=0"), &[("Transport", tcp)]);
    let sid = session_of(&setup);
    assert_eq!(
        c.req("PLAY", &cam, &[("Session", &sid)]).status.as_u16(),
        200
    );
    std::thread::sleep(Duration::from_secs(1));
    let lost_at = Instant::now();
    drop(first); // gone for good
                 // Still attached while the edge retries...
    assert!(
        !c.closed_within(Duration::from_secs(2)),
        "dropped before the give-up time"
    );
    // ...and let go once it gives up.
    assert!(
        c.closed_within(Duration::from_secs(8)),
        "never let go of the viewer"
    );
    assert!(lost_at.elapsed() >= Duration::from_secs(4));
}

#[test]
fn route_credentials_answer_the_origins_digest_challenge() {
    let origin = origin();
    let (user, password) = origin.credentials();
    let with_creds =
        origin
            .url("/secure")
            .replacen("rtsp://", &format!("rtsp://{user}:{password}@"), 1);
    let edge = EdgeProc::start(&format!(
        "[[edge.route]]\nadvertised = \"/sec\"\norigin = \"{with_creds}\"\n[[edge.route]]\nadvertised = \"/nocreds\"\norigin = \"{}\"\n",
        origin.url("/secure")
    ));
    let r = ffmpeg_gapless(&edge.url("/sec"), Transport::Tcp, 4.0);
    assert!(r.video >= 30 && r.gap_warnings.is_empty(), "{r:?}");
    // The origin challenged the edge and the edge answered with Digest.
    assert!(origin.request_count("DESCRIBE", "/secure", 401) >= 1);
    assert_eq!(origin.play_count("/secure"), 1);
    // Without credentials the origin's refusal reaches the viewer.
    let mut c = RawRtsp::connect(edge.port);
    assert_eq!(
        c.req("DESCRIBE", &edge.url("/nocreds"), &[])
            .status
            .as_u16(),
        401
    );
}

/// Answers every RTSP request on its port with `302` to `location` (an origin that has
/// moved), counting requests, until the test ends.
fn redirector(location: String) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let text = String::from_utf8_lossy(&head);
            let cseq = text
                .lines()
                .find_map(|l| l.strip_prefix("CSeq: "))
                .unwrap_or("0")
                .trim()
                .to_owned();
            let reply = format!(
                "RTSP/1.0 302 Moved Temporarily\r\nCSeq: {cseq}\r\nLocation: {location}\r\n\r\n"
            );
            let _ = s.write_all(reply.as_bytes());
        }
    });
    (port, count)
}

#[test]
fn the_edge_follows_an_origin_redirect_and_viewers_never_see_it() {
    let origin = origin();
    let (moved_port, asked) = redirector(origin.url("/live"));
    let edge = EdgeProc::start(&format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"rtsp://127.0.0.1:{moved_port}/old\"\n"
    ));
    let mut c = RawRtsp::connect(edge.port);
    let d = c.req("DESCRIBE", &edge.url("/cam"), &[]);
    assert_eq!(d.status.as_u16(), 200, "{d:?}");
    assert!(d.headers.get("Location").is_none());
    assert_eq!(
        d.headers.get("Content-Base"),
        Some(format!("{}/", edge.url("/cam")).as_str())
    );
    // The origin's address, not its bare port number: digits of an SSRC, a
    // session version or base64 parameter sets may contain those five digits by
    // chance (one CI run failed that way).
    let body = String::from_utf8_lossy(&d.body).into_owned();
    let origin_addr = format!("127.0.0.1:{}", origin.port());
    assert!(
        !body.contains(&origin_addr) && !body.contains("/live") && !body.contains("/old"),
        "origin leaked into the SDP:\n{body}"
    );
    let r = ffmpeg_gapless(&edge.url("/cam"), Transport::Tcp, 4.0);
    assert!(r.video >= 30 && r.gap_warnings.is_empty(), "{r:?}");
    assert!(asked.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(origin.play_count("/live"), 1);
}
