//! The edge library in process, against the gst-rtsp-server origin: each viewer
//! session reports one ended record with its counters, however it ends, and a drain
//! ends real viewers' sessions (an RTCP BYE for UDP viewers) and the origin's (issue
//! 10, edge sessions and drain).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mediagate_edge::{Edge, EndReason, EndedSession, ViewerTransport};
use mediagate_rtp::rtcp::{Compound, RtcpPacket};
use mediagate_rtsp::parse::Decoder;
use mediagate_rtsp::{Item, Method, Request, Response, Version};
use mediagate_testkit::OriginEventKind;
use mediagate_testkit::{Origin, OriginOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

type Records = Arc<Mutex<Vec<EndedSession>>>;

/// An edge on a free loopback port routing `/cam` to the origin's `/live`.
async fn edge(origin: &Origin, extra: &str) -> (Edge, SocketAddr, Records) {
    let toml = format!(
        "[edge]\nlisten = [\"127.0.0.1:0\"]\nlinger = \"1s\"\n{extra}\n\
         [[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\n",
        origin.url("/live")
    );
    start_edge(&toml).await
}

/// An edge with config `toml`, bound to a free loopback port, recording ended sessions.
async fn start_edge(toml: &str) -> (Edge, SocketAddr, Records) {
    let config = mediagate_config::parse_config(toml).expect("test config is valid");
    let records: Records = Arc::default();
    let sink = records.clone();
    let edge = Edge::with_listener(
        &config.edge,
        "test-edge",
        Arc::new(move |e: &EndedSession| sink.lock().unwrap().push(e.clone())),
    );
    let bound = edge
        .bind(&["127.0.0.1:0".parse().unwrap()])
        .await
        .expect("edge binds");
    (edge, bound[0], records)
}

/// `v`'s TEARDOWN of `url` is answered 200 and `session` is recorded once, ended by it.
async fn tears_down(v: &mut Viewer, url: &str, records: &Records, session: &str) {
    assert_eq!(
        v.request(Method::Teardown, url, None).await.status.as_u16(),
        200
    );
    let got = records_of(records, session).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].reason, EndReason::Teardown);
}

/// A minimal RTSP viewer over TCP interleaved, counting the media it receives.
struct Viewer {
    stream: TcpStream,
    decoder: Decoder,
    url: String,
    cseq: u32,
    session: Option<String>,
    frames: u64,
    frame_bytes: u64,
}

impl Viewer {
    async fn connect(edge: SocketAddr) -> Viewer {
        Viewer {
            stream: TcpStream::connect(edge)
                .await
                .expect("connects to the edge"),
            decoder: Decoder::default(),
            url: format!("rtsp://{edge}/cam"),
            cseq: 0,
            session: None,
            frames: 0,
            frame_bytes: 0,
        }
    }

    fn local(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    async fn request(&mut self, method: Method, uri: &str, transport: Option<&str>) -> Response {
        let mut r = Request::new(method, uri, Version::Rtsp1_0);
        self.cseq += 1;
        r.set_cseq(self.cseq);
        if let Some(s) = &self.session {
            r.headers.append("Session", s.clone());
        }
        if let Some(t) = transport {
            r.headers.append("Transport", t);
        }
        self.stream.write_all(&r.to_bytes()).await.unwrap();
        loop {
            match self.next_item().await {
                Some(Item::Response(resp)) => {
                    if let Some(s) = resp.headers.get("Session") {
                        self.session = Some(s.split(';').next().unwrap().to_owned());
                    }
                    return resp;
                }
                Some(_) => {}
                None => panic!("the edge closed the connection during {}", self.cseq),
            }
        }
    }

    /// The next message or frame; None once the edge closed the connection.
    async fn next_item(&mut self) -> Option<Item> {
        loop {
            match self
                .decoder
                .next_item()
                .expect("the edge speaks valid RTSP")
            {
                Some(Item::Frame(f)) => {
                    self.frames += 1;
                    self.frame_bytes += f.payload().len() as u64;
                    return Some(Item::Frame(f));
                }
                Some(item) => return Some(item),
                None => {}
            }
            let buf = self.decoder.buffer_mut();
            buf.reserve(65536);
            if self.stream.read_buf(buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// DESCRIBE, SETUP of both tracks over TCP, PLAY.
    async fn play(&mut self) {
        let url = self.url.clone();
        assert_eq!(
            self.request(Method::Describe, &url, None)
                .await
                .status
                .as_u16(),
            200
        );
        for (i, ch) in [(0, "0-1"), (1, "2-3")] {
            let t = format!("RTP/AVP/TCP;unicast;interleaved={ch}");
            let r = self
                .request(Method::Setup, &format!("{url}/trackID={i}"), Some(&t))
                .await;
            assert_eq!(r.status.as_u16(), 200, "{r:?}");
        }
        assert_eq!(
            self.request(Method::Play, &url, None).await.status.as_u16(),
            200
        );
    }

    /// DESCRIBE, SETUP of the video track over UDP to a fresh port pair, PLAY; returns
    /// the RTP and RTCP sockets and the SETUP's answer.
    async fn play_udp(&mut self) -> (UdpSocket, UdpSocket, Response) {
        let url = self.url.clone();
        assert_eq!(
            self.request(Method::Describe, &url, None)
                .await
                .status
                .as_u16(),
            200
        );
        let (rtp, rtcp) = udp_pair().await;
        let port = rtp.local_addr().unwrap().port();
        let t = format!("RTP/AVP;unicast;client_port={port}-{}", port + 1);
        let setup = self
            .request(Method::Setup, &format!("{url}/trackID=0"), Some(&t))
            .await;
        assert_eq!(setup.status.as_u16(), 200, "{setup:?}");
        assert_eq!(
            self.request(Method::Play, &url, None).await.status.as_u16(),
            200
        );
        (rtp, rtcp, setup)
    }

    /// [`Viewer::play_udp`], returning the RTCP socket.
    async fn play_video_over_udp(&mut self) -> UdpSocket {
        let (rtp, rtcp, _) = self.play_udp().await;
        // The RTP socket is not read; the kernel drops what does not fit.
        std::mem::forget(rtp);
        rtcp
    }

    /// Reads media for `d`.
    async fn watch(&mut self, d: Duration) {
        let _ = tokio::time::timeout(d, async { while self.next_item().await.is_some() {} }).await;
    }
}

/// Two UDP sockets on consecutive loopback ports (RTP even).
async fn udp_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..100 {
        let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = rtp.local_addr().unwrap().port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)).await {
            return (rtp, rtcp);
        }
    }
    panic!("no consecutive UDP port pair on loopback");
}

/// True once an RTCP BYE arrives on `sock` within `within`.
async fn bye_arrives(sock: &UdpSocket, within: Duration) -> bool {
    let mut buf = vec![0u8; 2048];
    tokio::time::timeout(within, async {
        loop {
            let n = sock.recv(&mut buf).await.unwrap();
            if let Ok(c) = Compound::parse(&buf[..n]) {
                if c.packets().any(|p| matches!(p, RtcpPacket::Goodbye(_))) {
                    return;
                }
            }
        }
    })
    .await
    .is_ok()
}

/// Waits until `records` holds the record of `session`, then a little longer to catch
/// a second one; returns all records of that session.
async fn records_of(records: &Records, session: &str) -> Vec<EndedSession> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.session == session)
            .count();
        if n > 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = records.lock().unwrap();
    all.iter()
        .filter(|r| r.session == session)
        .cloned()
        .collect()
}

/// The record is one viewer's and counts what that viewer received.
fn assert_sane(r: &EndedSession, v: &Viewer, reason: EndReason) {
    assert_eq!(r.reason, reason, "{r:?}");
    assert_eq!(r.transport, ViewerTransport::Tcp);
    assert_eq!(r.viewer, v.local());
    assert_eq!(r.url, v.url);
    assert!(r.started_unix_ms > 1_600_000_000_000, "{r:?}");
    assert!(r.duration >= Duration::from_secs(1), "{r:?}");
    // It was sent at least what the viewer read (and what was still in flight).
    assert!(v.frames > 20, "the viewer got media: {}", v.frames);
    assert!(
        r.counts.packets >= v.frames,
        "{r:?} vs {} frames read",
        v.frames
    );
    assert!(
        r.counts.bytes >= v.frame_bytes,
        "{r:?} vs {} bytes read",
        v.frame_bytes
    );
    assert!(
        r.counts.bytes >= r.counts.packets * 12,
        "RTP headers at least: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ending_of_a_session_reports_it_once_with_its_counters() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let (edge, addr, records) = edge(&origin, "session_timeout = \"2s\"").await;

    // TEARDOWN.
    let mut v = Viewer::connect(addr).await;
    v.play().await;
    v.watch(Duration::from_millis(1500)).await;
    let url = v.url.clone();
    let session = v.session.clone().unwrap();
    assert_eq!(
        v.request(Method::Teardown, &url, None)
            .await
            .status
            .as_u16(),
        200
    );
    let got = records_of(&records, &session).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_sane(&got[0], &v, EndReason::Teardown);
    drop(v);

    // The connection closes.
    let mut v = Viewer::connect(addr).await;
    v.play().await;
    v.watch(Duration::from_millis(1500)).await;
    let session = v.session.clone().unwrap();
    let (frames, bytes, local, url) = (v.frames, v.frame_bytes, v.local(), v.url.clone());
    drop(v);
    let got = records_of(&records, &session).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].reason, EndReason::ConnectionClosed);
    assert_eq!((got[0].viewer, &got[0].url), (local, &url));
    assert!(frames > 20 && got[0].counts.packets >= frames, "{got:?}");
    assert!(got[0].counts.bytes >= bytes, "{got:?}");

    // No request for the session timeout (and nothing sent on the connection).
    let mut v = Viewer::connect(addr).await;
    v.play().await;
    let session = v.session.clone().unwrap();
    // Keep reading so the media flows; the viewer itself stays silent.
    v.watch(Duration::from_secs(4)).await;
    let got = records_of(&records, &session).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_sane(&got[0], &v, EndReason::Timeout);
    assert!(got[0].duration >= Duration::from_secs(2), "{got:?}");
    assert!(
        v.next_item().await.is_none(),
        "the idle connection is closed after its last session timed out"
    );

    assert_eq!(records.lock().unwrap().len(), 3);
    assert_eq!(edge.viewer_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_ends_real_viewers_sessions_and_the_origins() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let (edge, addr, records) = edge(&origin, "").await;
    let url = format!("rtsp://{addr}/cam");
    let ffmpeg = |transport: &str| {
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error"])
            .args(["-rtsp_transport", transport, "-i", &url])
            .args(["-t", "60", "-f", "null", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg runs")
    };
    let mut viewers = [ffmpeg("tcp"), ffmpeg("udp")];
    let mut raw = Viewer::connect(addr).await;
    let rtcp = raw.play_video_over_udp().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while edge.viewer_sessions() < 3 {
        assert!(
            Instant::now() < deadline,
            "ffmpeg never set up its sessions"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(edge.live_streams(), 1);

    let started = Instant::now();
    let (report, bye) = tokio::join!(
        edge.drain(Duration::from_secs(8)),
        bye_arrives(&rtcp, Duration::from_secs(8))
    );
    assert!(report.complete && report.sessions == 3, "{report:?}");
    assert!(bye, "a UDP viewer gets an RTCP BYE");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!((edge.viewer_sessions(), edge.live_streams()), (0, 0));

    // The viewers saw their sessions end: ffmpeg stops long before its 60 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (v, transport) in viewers.iter_mut().zip(["tcp", "udp"]) {
        let status = loop {
            if let Some(s) = v.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = v.kill();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            status.is_some(),
            "{transport} ffmpeg still running after the drain"
        );
    }

    let mut got = records.lock().unwrap().clone();
    got.retain(|r| r.viewer != raw.local());
    got.sort_by_key(|r| r.transport.as_str());
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        [got[0].transport, got[1].transport],
        [ViewerTransport::Tcp, ViewerTransport::Udp]
    );
    for r in &got {
        assert_eq!(r.reason, EndReason::Drain);
        assert!(r.counts.packets > 20, "{r:?}");
    }

    // The origin saw the edge's session end: a TEARDOWN, and every connection closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = origin.events();
        let connected = events
            .iter()
            .filter(|e| matches!(e.kind, OriginEventKind::ClientConnected { .. }))
            .count();
        let closed = events
            .iter()
            .filter(|e| matches!(e.kind, OriginEventKind::ClientClosed { .. }))
            .count();
        let teardowns = origin.request_count("TEARDOWN", "/live", 200);
        if teardowns >= 1 && connected > 0 && closed == connected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "origin: {teardowns} TEARDOWN, {closed} of {connected} connections closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Nothing is accepted any more.
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

/// Counts RTP datagrams arriving on `sock` for `d`.
async fn datagrams_within(sock: &UdpSocket, d: Duration) -> u64 {
    let mut buf = vec![0u8; 2048];
    let mut n = 0;
    let _ = tokio::time::timeout(d, async {
        loop {
            if sock.recv(&mut buf).await.is_ok() {
                n += 1;
            }
        }
    })
    .await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_session_outlives_its_connection_and_resumes_on_a_new_one() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let (_edge, addr, records) = edge(
        &origin,
        "session_timeout = \"3s\"\nudp_sessions_outlive_connection = true",
    )
    .await;

    // Set up over UDP, then close the connection without a TEARDOWN.
    let mut v = Viewer::connect(addr).await;
    let url = v.url.clone();
    let (rtp, _rtcp, _) = v.play_udp().await;
    let session = v.session.clone().unwrap();
    assert!(datagrams_within(&rtp, Duration::from_millis(800)).await > 5);
    drop(v);

    // The media goes on and no record comes: the session lives without a connection.
    assert!(
        datagrams_within(&rtp, Duration::from_millis(1500)).await > 5,
        "the media stopped with the connection"
    );
    assert!(records.lock().unwrap().iter().all(|r| r.session != session));

    // A keep-alive on a new connection reaches the same session and refreshes it.
    let mut v = Viewer::connect(addr).await;
    v.session = Some(session.clone());
    let r = v.request(Method::GetParameter, &url, None).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert!(datagrams_within(&rtp, Duration::from_millis(500)).await > 2);
    // Closed again, then left alone: it times out, counted from that keep-alive.
    drop(v);
    let got = records_of(&records, &session).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].reason, EndReason::Timeout);
    assert_eq!(got[0].transport, ViewerTransport::Udp);
    assert!(got[0].duration >= Duration::from_millis(5300), "{got:?}");
    assert!(got[0].counts.packets > 20, "{got:?}");
    let _ = datagrams_within(&rtp, Duration::from_millis(300)).await;
    assert_eq!(
        datagrams_within(&rtp, Duration::from_millis(700)).await,
        0,
        "the media stops when the session ends"
    );

    // A TEARDOWN on a new connection ends a parked session at once.
    let mut v = Viewer::connect(addr).await;
    let _second_sockets = v.play_udp().await;
    let second = v.session.clone().unwrap();
    // At once: the new connection's request may beat the old one's close to the
    // edge, and the edge waits for that handoff rather than answering 454.
    drop(v);
    let mut v = Viewer::connect(addr).await;
    v.session = Some(second.clone());
    tears_down(&mut v, &url, &records, &second).await;

    // The viewer's RTCP keeps a parked session alive (RFC 7826 §10.5), as it does for
    // a client whose keep-alives stopped with its connection.
    let mut v = Viewer::connect(addr).await;
    let (rtp3, rtcp3, r) = v.play_udp().await;
    let server_rtcp: u16 = r
        .headers
        .get("Transport")
        .and_then(|t| t.split("server_port=").nth(1))
        .and_then(|p| p.split(['-', ';']).nth(1))
        .and_then(|p| p.parse().ok())
        .expect("the answer names the server's RTCP port");
    let third = v.session.clone().unwrap();
    drop(v);
    let mut rr = vec![0u8; 256];
    let n = {
        let mut w = mediagate_rtp::rtcp::build::CompoundWriter::new(&mut rr);
        w.receiver_report(0x4d47, &[]).unwrap();
        w.finish().unwrap()
    };
    rr.truncate(n);
    // Two timeouts and more, with a report every second.
    for _ in 0..7 {
        rtcp3
            .send_to(&rr, ("127.0.0.1", server_rtcp))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        records.lock().unwrap().iter().all(|r| r.session != third),
        "the session ended while its viewer reported"
    );
    assert!(datagrams_within(&rtp3, Duration::from_millis(500)).await > 2);
    // Reports stop: it times out.
    let got = records_of(&records, &third).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].reason, EndReason::Timeout);
    assert!(got[0].duration >= Duration::from_secs(9), "{got:?}");
}

/// An edge routing each `(advertised, origin)` to that origin's `/live`, parking UDP
/// sessions whose connection closes, and letting viewers go two seconds after their
/// origin went away.
async fn parking_edge(routes: &[(&str, &Origin)]) -> (Edge, SocketAddr, Records) {
    let mut toml = "[edge]\nlisten = [\"127.0.0.1:0\"]\nlinger = \"1s\"\n\
                    session_timeout = \"30s\"\nudp_sessions_outlive_connection = true\n\
                    [edge.reconnect]\ngive_up_after = \"2s\"\n"
        .to_owned();
    for (advertised, origin) in routes {
        toml.push_str(&format!(
            "[[edge.route]]\nadvertised = \"{advertised}\"\norigin = \"{}\"\n",
            origin.url("/live")
        ));
    }
    start_edge(&toml).await
}

/// True once the edge closes `v`'s connection within `within`.
async fn closed_within(v: &mut Viewer, within: Duration) -> bool {
    tokio::time::timeout(within, async { while v.next_item().await.is_some() {} })
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_giving_up_ends_only_its_own_parked_session() {
    let a = Origin::start(OriginOptions::default()).expect("origin starts");
    let b = Origin::start(OriginOptions::default()).expect("origin starts");
    let (_edge, addr, records) = parking_edge(&[("/a", &a), ("/b", &b)]).await;

    // Two UDP sessions on one connection, of two streams (two hubs).
    let mut v = Viewer::connect(addr).await;
    v.url = format!("rtsp://{addr}/a");
    let (rtp_a, _rtcp_a, _) = v.play_udp().await;
    let session_a = v.session.take().unwrap();
    v.url = format!("rtsp://{addr}/b");
    let (rtp_b, _rtcp_b, _) = v.play_udp().await;
    let session_b = v.session.clone().unwrap();
    assert_ne!(session_a, session_b);
    assert!(datagrams_within(&rtp_a, Duration::from_millis(800)).await > 5);
    assert!(datagrams_within(&rtp_b, Duration::from_millis(800)).await > 5);
    // Both parked.
    drop(v);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Stream A ends for good: its hub gives its viewer up, and that session ends.
    drop(a);
    let got = records_of(&records, &session_a).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].reason, EndReason::ConnectionClosed);

    // The other session, parked from the same connection, goes on...
    assert!(
        records
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.session != session_b),
        "stream A's hub giving up ended the session of stream B"
    );
    assert!(
        datagrams_within(&rtp_b, Duration::from_millis(800)).await > 5,
        "stream B's media stopped"
    );
    // ...and a new connection adopts it.
    let mut v = Viewer::connect(addr).await;
    v.url = format!("rtsp://{addr}/b");
    v.session = Some(session_b.clone());
    let r = v.request(Method::GetParameter, &v.url.clone(), None).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert!(datagrams_within(&rtp_b, Duration::from_millis(500)).await > 2);
    let url = v.url.clone();
    tears_down(&mut v, &url, &records, &session_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_session_whose_hub_gives_up_closes_its_new_connection() {
    let a = Origin::start(OriginOptions::default()).expect("origin starts");
    let (_edge, addr, records) = parking_edge(&[("/a", &a)]).await;

    let mut v = Viewer::connect(addr).await;
    v.url = format!("rtsp://{addr}/a");
    let (rtp, _rtcp, _) = v.play_udp().await;
    let session = v.session.clone().unwrap();
    drop(v);

    // A new connection adopts the parked session, at once (see the handoff above).
    let mut v = Viewer::connect(addr).await;
    v.url = format!("rtsp://{addr}/a");
    v.session = Some(session.clone());
    let url = v.url.clone();
    let r = v.request(Method::GetParameter, &url, None).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert!(datagrams_within(&rtp, Duration::from_millis(500)).await > 2);

    // The stream ends for good: the connection holding the session now is told the
    // way a viewer that set the session up on it is (the edge closes it), long
    // before the 30 s session timeout.
    drop(a);
    assert!(
        closed_within(&mut v, Duration::from_secs(12)).await,
        "the adopting connection never learnt that its session's hub gave it up"
    );
    let got = records_of(&records, &session).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].reason, EndReason::ConnectionClosed);
}
