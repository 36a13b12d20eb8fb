//! Smoke test of the real-peer harness (mediagate-testkit): the gst-rtsp-server origin is
//! read by ffprobe, ffmpeg and GStreamer's rtspsrc over every transport, its on-demand
//! mount is seeked, its Digest mount refuses anonymous clients with 401, and its event
//! stream counts what happened. No mediagate code is involved yet: if this fails, the
//! machine or the harness is broken, not the proxy.
//!
//! Most tests share one origin (`Origin::shared`); tests that count requests exactly start
//! their own.

use std::time::{Duration, Instant};

use mediagate_testkit::{
    ffmpeg_read, ffprobe, rtspsrc, rtspsrc_with, Origin, OriginEventKind, OriginOptions,
    ReadOptions, RtspsrcOptions, Transport,
};

/// Seconds each live read lasts: long enough for a keyframe (one per second) and then
/// a dozen frames.
// Long enough that ffmpeg's start-up (over UDP it may spend over a second syncing the
// streams when the machine is busy) leaves plenty of decoded frames; the thresholds
// below stay the same. 2 s once gave 36 audio frames under a loaded CI run.
const READ_SECONDS: f64 = 4.0;

#[test]
fn ffprobe_sees_h264_video_and_aac_audio() {
    let origin = Origin::shared();
    let probe = ffprobe(&origin.url("/live"), Transport::Tcp).expect("ffprobe /live");
    assert_eq!(
        probe.codecs(),
        vec![
            ("video".to_string(), "h264".to_string()),
            ("audio".to_string(), "aac".to_string())
        ],
        "{probe:?}"
    );
    let video = &probe.streams[0];
    assert_eq!((video.width, video.height), (Some(320), Some(240)));
    assert_eq!(probe.streams[1].sample_rate, Some(48000));
}

fn assert_ffmpeg_decodes_live(transport: Transport) {
    let origin = Origin::shared();
    let report = ffmpeg_read(
        &origin.url("/live"),
        &ReadOptions::seconds(transport, READ_SECONDS),
    )
    .expect("run ffmpeg");
    assert!(report.success, "ffmpeg over {transport}: {report:#?}");
    assert!(
        report.errors.is_empty(),
        "ffmpeg over {transport}: {report:#?}"
    );
    assert!(
        report.video_frames > 10,
        "ffmpeg over {transport}: {report:#?}"
    );
    assert!(
        report.audio_frames > 40,
        "ffmpeg over {transport}: {report:#?}"
    );
}

#[test]
fn ffmpeg_decodes_live_over_tcp() {
    assert_ffmpeg_decodes_live(Transport::Tcp);
}

#[test]
fn ffmpeg_decodes_live_over_udp() {
    assert_ffmpeg_decodes_live(Transport::Udp);
}

#[test]
fn ffmpeg_decodes_live_over_http_tunnel() {
    assert_ffmpeg_decodes_live(Transport::HttpTunnel);
}

fn assert_rtspsrc_decodes_live(transport: Transport) {
    let origin = Origin::shared();
    // Stops as soon as 15 video and 40 audio buffers decoded (about 1 s after the first
    // keyframe); 10 s is only the upper bound.
    let report = rtspsrc_with(
        &origin.url("/live"),
        &RtspsrcOptions::new(transport, Duration::from_secs(10)).until_buffers(15, 40),
    )
    .expect("run rtspsrc_client.py");
    assert!(
        report.errors.is_empty(),
        "rtspsrc over {transport}: {report:#?}"
    );
    assert_eq!(
        report.streams.len(),
        2,
        "rtspsrc over {transport}: {report:#?}"
    );
    assert!(
        report.video_buffers >= 15,
        "rtspsrc over {transport}: {report:#?}"
    );
    assert!(
        report.audio_buffers >= 40,
        "rtspsrc over {transport}: {report:#?}"
    );
    assert!(
        report.elapsed < 9.0,
        "rtspsrc over {transport}: {report:#?}"
    );
}

#[test]
fn rtspsrc_decodes_live_over_tcp() {
    assert_rtspsrc_decodes_live(Transport::Tcp);
}

#[test]
fn rtspsrc_decodes_live_over_udp() {
    assert_rtspsrc_decodes_live(Transport::Udp);
}

#[test]
fn rtspsrc_decodes_live_over_http_tunnel() {
    assert_rtspsrc_decodes_live(Transport::HttpTunnel);
}

#[test]
fn ffmpeg_seeks_in_the_on_demand_mount() {
    let origin = Origin::shared();
    let seconds = f64::from(origin.options().vod_seconds);
    let fps = f64::from(origin.options().fps);
    let start = seconds - 3.0;
    let report = ffmpeg_read(
        &origin.url("/vod"),
        &ReadOptions::until_end(Transport::Tcp).seek(start),
    )
    .expect("run ffmpeg");
    assert!(report.success, "{report:#?}");
    // 3 s are left after the seek point: 45 frames at 15 fps. A seek that was ignored
    // would decode all 150.
    let expected = (seconds - start) * fps;
    let got = report.video_frames as f64;
    assert!(
        got >= expected * 0.8 && got <= expected * 1.2,
        "expected about {expected} video frames after seeking to {start} s: {report:#?}"
    );
    assert!(report.audio_frames > 100, "{report:#?}");
    // The seek reached the origin as a PLAY with a Range.
    let wanted = format!("npt={start:.3}-");
    assert!(
        origin.requests().iter().any(|r| r.method == "PLAY"
            && r.mount.as_deref() == Some("/vod")
            && r.range.as_deref() == Some(wanted.as_str())),
        "no PLAY with Range: {wanted} in {:#?}",
        origin.requests()
    );
}

#[test]
fn digest_mount_answers_401_without_credentials() {
    let origin = Origin::shared();
    let report = ffmpeg_read(
        &origin.url("/secure"),
        &ReadOptions::seconds(Transport::Tcp, 1.0),
    )
    .expect("run ffmpeg");
    assert!(!report.success, "{report:#?}");
    assert!(report.error_contains("401 Unauthorized"), "{report:#?}");
    assert_eq!((report.video_frames, report.audio_frames), (0, 0));
    assert!(origin.request_count("DESCRIBE", "/secure", 401) >= 1);

    let report = rtspsrc(
        &origin.url("/secure"),
        Transport::Tcp,
        Duration::from_secs(2),
    )
    .expect("run rtspsrc_client.py");
    assert_eq!(report.video_buffers, 0, "{report:#?}");
    assert!(
        report.errors.iter().any(|e| e.contains("Unauthorized")),
        "{report:#?}"
    );
}

#[test]
fn digest_mount_plays_with_credentials() {
    let origin = Origin::shared();
    let report = ffmpeg_read(
        &origin.url_with_credentials("/secure"),
        &ReadOptions::seconds(Transport::Tcp, READ_SECONDS),
    )
    .expect("run ffmpeg");
    assert!(report.success, "{report:#?}");
    assert!(report.video_frames > 10, "{report:#?}");

    let (user, password) = origin.credentials();
    let report = rtspsrc_with(
        &origin.url("/secure"),
        &RtspsrcOptions::new(Transport::Tcp, Duration::from_secs(10))
            .credentials(user, password)
            .until_buffers(5, 10),
    )
    .expect("run rtspsrc_client.py");
    assert!(report.errors.is_empty(), "{report:#?}");
    assert!(report.video_buffers >= 5, "{report:#?}");
    // gst-rtsp-server answered the first DESCRIBE with a challenge, the retry with 200.
    assert!(origin.request_count("DESCRIBE", "/secure", 200) >= 2);
}

#[test]
fn own_origin_counts_plays_sessions_and_connections() {
    let started = Instant::now();
    let origin = Origin::start(OriginOptions {
        live_mounts: vec!["/a".into(), "/b".into()],
        vod_mount: None,
        auth_mount: None,
        ..OriginOptions::default()
    })
    .expect("start origin");
    assert_ne!(origin.port(), 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "origin took {:?} to start",
        started.elapsed()
    );
    for _ in 0..2 {
        ffprobe(&origin.url("/a"), Transport::Tcp).expect("ffprobe /a");
    }
    ffprobe(&origin.url("/b"), Transport::Udp).expect("ffprobe /b");
    origin
        .wait_play_count("/a", 2, Duration::from_secs(5))
        .expect("two PLAYs on /a");
    origin
        .wait_no_connections(Duration::from_secs(5))
        .expect("connections closed");
    assert_eq!(origin.play_count("/a"), 2);
    assert_eq!(origin.play_count("/b"), 1);
    assert_eq!(origin.play_sessions("/a").len(), 2);
    assert_eq!(origin.request_count("SETUP", "/a", 200), 4);
    assert_eq!(origin.open_connections(), 0);
    let methods: Vec<String> = origin
        .requests()
        .iter()
        .filter(|r| r.mount.as_deref() == Some("/b"))
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(
        methods,
        ["OPTIONS", "DESCRIBE", "SETUP", "SETUP", "PLAY", "TEARDOWN"]
    );
    let udp_setup = origin
        .requests()
        .into_iter()
        .find(|r| r.mount.as_deref() == Some("/b") && r.method == "SETUP")
        .and_then(|r| r.transport)
        .unwrap_or_default();
    assert!(udp_setup.contains("client_port="), "{udp_setup}");
    let connects = origin
        .events()
        .iter()
        .filter(|e| matches!(e.kind, OriginEventKind::ClientConnected { .. }))
        .count();
    assert_eq!(connects, 3);
}

#[test]
fn unknown_mount_is_404_and_not_counted() {
    let origin = Origin::shared();
    let err = ffprobe(&origin.url("/nope"), Transport::Tcp).unwrap_err();
    assert!(err.to_string().contains("404 Not Found"), "{err}");
    assert_eq!(origin.play_count("/nope"), 0);
}

/// A minimal RTSP/1.0 exchange over one TCP connection, just enough for the burst test
/// (the project's RTSP parser lives in mediagate-rtsp; this file tests the harness).
struct RawRtsp {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
    cseq: u32,
}

impl RawRtsp {
    fn connect(addr: std::net::SocketAddr) -> RawRtsp {
        let stream = std::net::TcpStream::connect(addr).expect("connect to origin");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set read timeout");
        RawRtsp {
            stream,
            buf: Vec::new(),
            cseq: 0,
        }
    }

    fn fill(&mut self, deadline: Instant) -> bool {
        use std::io::Read;
        let mut chunk = [0u8; 65536];
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("read from origin: {e}"),
            }
        }
        false
    }

    /// Sends a request and returns the response head (bodies are skipped).
    fn request(&mut self, method: &str, url: &str, headers: &str) -> String {
        use std::io::Write;
        self.cseq += 1;
        let msg = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\n{headers}\r\n",
            self.cseq
        );
        self.stream.write_all(msg.as_bytes()).expect("send request");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let body: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length:"))
                    .map_or(0, |v| v.trim().parse().expect("Content-Length"));
                while self.buf.len() < end + 4 + body {
                    assert!(self.fill(deadline), "{method}: body cut short");
                }
                self.buf.drain(..end + 4 + body);
                assert!(head.starts_with("RTSP/1.0 200"), "{method}: {head}");
                return head;
            }
            assert!(self.fill(deadline), "{method}: no response");
        }
    }

    /// Reads interleaved frames for `window`; returns (channel, RTP timestamp) of each.
    fn read_rtp(&mut self, window: Duration) -> Vec<(u8, u32)> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        loop {
            while self.buf.len() >= 4 && self.buf[0] == b'$' {
                let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() < 4 + len {
                    break;
                }
                if len >= 8 && self.buf[1] % 2 == 0 {
                    let ts =
                        u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]);
                    out.push((self.buf[1], ts));
                }
                self.buf.drain(..4 + len);
            }
            if Instant::now() >= deadline {
                return out;
            }
            self.fill(deadline);
        }
    }
}

/// An origin of its own with only the live mount.
fn live_only_origin() -> Origin {
    Origin::start(OriginOptions {
        vod_mount: None,
        auth_mount: None,
        ..OriginOptions::default()
    })
    .expect("start origin")
}

#[test]
fn late_play_gets_live_frames_not_a_burst() {
    let origin = live_only_origin();
    let url = origin.url("/live");
    let mut c = RawRtsp::connect(origin.addr());
    c.request("DESCRIBE", &url, "Accept: application/sdp\r\n");
    // gst-rtsp-server prepares the media at DESCRIBE; a PLAY this late used to receive
    // every frame encoded since then at once.
    std::thread::sleep(Duration::from_secs(3));
    let head = c.request(
        "SETUP",
        &format!("{url}/stream=0"),
        "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
    );
    let session = head
        .lines()
        .find_map(|l| l.strip_prefix("Session:"))
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
        .expect("Session header");
    c.request(
        "PLAY",
        &format!("{url}/"),
        &format!("Session: {session}\r\n"),
    );
    let window = 1.5;
    let packets = c.read_rtp(Duration::from_secs_f64(window));
    let mut frames: Vec<u32> = packets
        .iter()
        .filter(|(ch, _)| *ch == 0)
        .map(|(_, ts)| *ts)
        .collect();
    frames.dedup();
    let fps = f64::from(origin.options().fps);
    // One frame held since DESCRIBE, then live frames: about fps × window, not 3 s more.
    assert!(
        frames.len() >= 5 && (frames.len() as f64) <= fps * window + 5.0,
        "{} video frames in {window} s after a late PLAY",
        frames.len()
    );
}

/// The origin prints each request's event just before answering, and the harness reads
/// it on another thread; `requests()` must still hold a request whose answer the test
/// already has (a count taken a moment too early once failed CI), and the harness's own
/// barrier connections must not show in any count.
#[test]
fn the_request_log_is_complete_once_the_answer_is_in_hand() {
    let origin = live_only_origin();
    let url = origin.url("/live");
    let mut c = RawRtsp::connect(origin.addr());
    for n in 1..=100 {
        c.request("OPTIONS", &url, "");
        let seen = origin.requests();
        assert_eq!(seen.len(), n, "{seen:#?}");
        assert!(seen
            .iter()
            .all(|r| r.method == "OPTIONS" && r.client == seen[0].client));
    }
    drop(c);
    origin
        .wait_no_connections(Duration::from_secs(5))
        .expect("connections closed");
    let connects = origin
        .events()
        .iter()
        .filter(|e| matches!(e.kind, OriginEventKind::ClientConnected { .. }))
        .count();
    assert_eq!(connects, 1, "barrier connections are hidden");
    assert_eq!(origin.open_connections(), 0);
}
