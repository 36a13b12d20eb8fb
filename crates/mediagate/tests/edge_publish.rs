//! Publishing to the edge with real encoders (issue 17 item 1): ffmpeg `-f rtsp` over
//! TCP and UDP and GStreamer `rtspclientsink` push a stream with ANNOUNCE + RECORD;
//! ffmpeg and `rtspsrc` viewers decode it through the same splitting hub as a pulled
//! stream. Refusals (rules, a busy path) and bad input get clean answers.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{ffmpeg_gapless, EdgeProc, RawRtsp};
use mediagate_testkit::process::Peer;
use mediagate_testkit::{ffmpeg_publish, make_clip, rtspsrc, Transport};

/// A 10 s clip with a keyframe a second, made once per test process.
fn clip() -> PathBuf {
    static CLIP: OnceLock<PathBuf> = OnceLock::new();
    CLIP.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("mediagate-publish-clip-{}.mp4", std::process::id()));
        make_clip(&path, 10, 25).expect("ffmpeg makes the test clip");
        path
    })
    .clone()
}

/// Waits until the edge serves `path` (its publisher reached RECORD).
fn wait_published(edge: &EdgeProc, path: &str, publisher: &Peer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = RawRtsp::connect(edge.port);
        let r = c.req("DESCRIBE", &edge.url(path), &[]);
        if r.status.as_u16() == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline && publisher.try_status().is_none(),
            "{path} never became playable (last answer {}): {}\n{}",
            r.status.as_u16(),
            publisher.diagnostics(),
            edge.peer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn announce_sdp() -> &'static str {
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n"
}

/// Sends an ANNOUNCE with `body` by hand; the status it gets.
fn raw_announce(c: &mut RawRtsp, url: &str, body: &str) -> u16 {
    c.req_with_body(
        "ANNOUNCE",
        url,
        &[("Content-Type", "application/sdp")],
        body.as_bytes(),
    )
    .status
    .as_u16()
}

#[test]
fn ffmpeg_publishes_over_tcp_and_viewers_decode_over_tcp_udp_and_http_tunnel() {
    let edge = EdgeProc::start("");
    let publisher =
        ffmpeg_publish(&clip(), &edge.url("/live/cam"), Transport::Tcp, 3).expect("ffmpeg starts");
    wait_published(&edge, "/live/cam", &publisher);
    for transport in [Transport::Tcp, Transport::Udp, Transport::HttpTunnel] {
        let r = ffmpeg_gapless(&edge.url("/live/cam"), transport, 5.0);
        // 25 fps for 5 s; the slack covers ffmpeg's start-up on a busy machine.
        assert!(r.video >= 90 && r.audio >= 150, "{transport:?}: {r:?}");
        assert!(
            r.gap_warnings.is_empty(),
            "{transport:?} gaps: {:?}\n{}",
            r.gap_warnings,
            r.diagnostics
        );
    }
    let g = rtspsrc(
        &edge.url("/live/cam"),
        Transport::Udp,
        Duration::from_secs(4),
    )
    .expect("rtspsrc runs");
    assert!(g.errors.is_empty() && g.video_buffers >= 50, "{g:?}");
}

#[test]
fn ffmpeg_publishes_over_udp_and_a_restarted_publisher_keeps_viewers_playing() {
    let edge = EdgeProc::start("");
    let url = edge.url("/live/udp");
    let first = ffmpeg_publish(&clip(), &url, Transport::Udp, 3).expect("ffmpeg starts");
    wait_published(&edge, "/live/udp", &first);
    let viewer_url = url.clone();
    let viewer = std::thread::spawn(move || ffmpeg_gapless(&viewer_url, Transport::Tcp, 12.0));
    std::thread::sleep(Duration::from_secs(4));
    drop(first); // the encoder dies mid-stream
    std::thread::sleep(Duration::from_secs(1));
    let _second = ffmpeg_publish(&clip(), &url, Transport::Udp, 3).expect("ffmpeg restarts");
    let r = viewer.join().unwrap();
    // 12 s of stream time at 25 fps minus the ~1-2 s outage: frames after the restart
    // prove the viewer stayed attached and kept decoding.
    assert!(
        r.video >= 200,
        "viewer stopped at the publisher restart: {r:?}"
    );
}

#[test]
fn gstreamer_rtspclientsink_publishes_and_rtspsrc_plays_it() {
    let edge = EdgeProc::start("");
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.args([
        "-q",
        "videotestsrc",
        "is-live=true",
        "!",
        "video/x-raw,width=320,height=240,framerate=25/1",
        "!",
        "x264enc",
        "tune=zerolatency",
        "speed-preset=ultrafast",
        "key-int-max=25",
        "!",
        "video/x-h264,profile=constrained-baseline",
        "!",
        "rtspclientsink",
        "protocols=tcp",
    ])
    .arg(format!("location={}", edge.url("/live/gst")));
    let publisher = Peer::spawn("gst-launch (rtspclientsink)", cmd).expect("gst-launch starts");
    wait_published(&edge, "/live/gst", &publisher);
    let g = rtspsrc(
        &edge.url("/live/gst"),
        Transport::Tcp,
        Duration::from_secs(4),
    )
    .expect("rtspsrc runs");
    assert!(g.errors.is_empty() && g.video_buffers >= 50, "{g:?}");
    let r = ffmpeg_gapless(&edge.url("/live/gst"), Transport::Udp, 3.0);
    assert!(r.video >= 50 && r.gap_warnings.is_empty(), "{r:?}");
}

#[test]
fn publishers_the_rules_do_not_allow_get_403_and_a_busy_path_409() {
    let closed = EdgeProc::start("[[edge.publish]]\npath = \"/\"\nclients = []\n");
    let mut c = RawRtsp::connect(closed.port);
    let url = closed.url("/live/x");
    assert_eq!(raw_announce(&mut c, &url, announce_sdp()), 403);
    // A viewer of that path is not served anything published.
    let mut v = RawRtsp::connect(closed.port);
    assert_eq!(v.req("DESCRIBE", &url, &[]).status.as_u16(), 404);

    // A path a route serves from an origin is not open to publishers.
    let routed = EdgeProc::start(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"rtsp://127.0.0.1:9/live\"\n",
    );
    let mut c = RawRtsp::connect(routed.port);
    assert_eq!(
        raw_announce(&mut c, &routed.url("/cam/x"), announce_sdp()),
        403
    );

    let edge = EdgeProc::start("");
    let publisher =
        ffmpeg_publish(&clip(), &edge.url("/live/busy"), Transport::Tcp, 3).expect("ffmpeg starts");
    wait_published(&edge, "/live/busy", &publisher);
    let mut second = RawRtsp::connect(edge.port);
    assert_eq!(
        raw_announce(&mut second, &edge.url("/live/busy"), announce_sdp()),
        409
    );
    // The first publisher was not disturbed.
    let r = ffmpeg_gapless(&edge.url("/live/busy"), Transport::Tcp, 3.0);
    assert!(r.video >= 50 && r.gap_warnings.is_empty(), "{r:?}");
}

#[test]
fn bad_publisher_input_gets_clean_errors_and_the_edge_keeps_serving() {
    let edge = EdgeProc::start("");
    let url = edge.url("/live/bad");
    let mut c = RawRtsp::connect(edge.port);
    let huge = format!(
        "{}{}",
        announce_sdp(),
        "a=x-pad:0123456789\r\n".repeat(1000)
    );
    assert_eq!(raw_announce(&mut c, &url, &huge), 413);
    let mut c = RawRtsp::connect(edge.port);
    assert_eq!(raw_announce(&mut c, &url, "this is not SDP"), 400);
    let mut c = RawRtsp::connect(edge.port);
    assert_eq!(raw_announce(&mut c, &url, announce_sdp()), 200);
    let r = c.req("RECORD", &url, &[("Session", "nope")]);
    assert_eq!(r.status.as_u16(), 454, "{r:?}");
    let play_mode = c.req(
        "SETUP",
        &format!("{url}/streamid=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(play_mode.status.as_u16(), 461, "SETUP without mode=record");
    let s = c.req(
        "SETUP",
        &format!("{url}/streamid=0"),
        &[(
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
        )],
    );
    assert_eq!(s.status.as_u16(), 200, "{s:?}");
    // The publisher's connection still answers after all that.
    let session = s
        .headers
        .get("Session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let rec = c.req("RECORD", &url, &[("Session", &session)]);
    assert_eq!(rec.status.as_u16(), 200, "{rec:?}");
    // Frames on a channel never set up, and absurd packets, are dropped; the edge
    // goes on serving.
    c.send_frame(9, &[0x80; 100]);
    c.send_frame(0, &[0x80, 96]);
    c.send_frame(0, &vec![0x80; 60_000]);
    let mut v = RawRtsp::connect(edge.port);
    assert_eq!(v.req("OPTIONS", "*", &[]).status.as_u16(), 200);
}

#[test]
fn a_child_edge_pulls_a_stream_published_to_its_parent() {
    let parent = EdgeProc::start("");
    let publisher = ffmpeg_publish(&clip(), &parent.url("/live/top"), Transport::Tcp, 3)
        .expect("ffmpeg starts");
    wait_published(&parent, "/live/top", &publisher);
    let child = EdgeProc::start(&format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\n",
        parent.url("/live/top")
    ));
    let viewers: Vec<_> = (0..2)
        .map(|_| {
            let url = child.url("/cam");
            std::thread::spawn(move || ffmpeg_gapless(&url, Transport::Tcp, 4.0))
        })
        .collect();
    for v in viewers {
        let r = v.join().unwrap();
        assert!(r.video >= 70 && r.gap_warnings.is_empty(), "{r:?}");
    }
}

#[test]
fn a_rule_with_on_busy_replace_lets_a_second_publisher_take_over() {
    let edge = EdgeProc::start(
        "[[edge.publish]]\npath = \"/live\"\nclients = [\"127.0.0.0/8\"]\non_busy = \"replace\"\n",
    );
    let first =
        ffmpeg_publish(&clip(), &edge.url("/live/r"), Transport::Tcp, 3).expect("ffmpeg starts");
    wait_published(&edge, "/live/r", &first);
    let mut second = RawRtsp::connect(edge.port);
    assert_eq!(
        raw_announce(&mut second, &edge.url("/live/r"), announce_sdp()),
        200
    );
    // The first publisher's connection is closed: ffmpeg gives up.
    let deadline = Instant::now() + Duration::from_secs(15);
    while first.try_status().is_none() {
        assert!(
            Instant::now() < deadline,
            "the replaced publisher was not let go: {}",
            edge.peer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `mediagate user add` with the password on stdin, into a fresh file under the
/// test's scratch dir.
fn user_add(file: &Path, user: &str, password: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args([
            "user",
            "add",
            "--password-stdin",
            "--digest-realm",
            "mediagate",
            "--file",
        ])
        .arg(file)
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mediagate user add runs");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("password written");
    let out = child.wait_with_output().expect("mediagate user add ends");
    assert!(
        out.status.success(),
        "user add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ffmpeg publishing to `url` gives up with an error, and the edge logged `why`.
fn ffmpeg_publish_refused(edge: &EdgeProc, url: &str, why: &str) {
    let publisher = ffmpeg_publish(&clip(), url, Transport::Tcp, 0).expect("ffmpeg starts");
    let status = publisher
        .wait_timeout(Duration::from_secs(20))
        .unwrap_or_else(|| {
            panic!(
                "ffmpeg kept publishing to {url}: {}",
                publisher.diagnostics()
            )
        });
    assert!(!status.success(), "{url}: {}", publisher.diagnostics());
    edge.peer.wait_for_stderr_line(why, Duration::from_secs(15));
}

#[test]
fn a_rule_with_users_lets_only_a_listed_user_publish() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("edge_publish");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let users = dir.join(format!("users-{}", std::process::id()));
    let _ = std::fs::remove_file(&users);
    user_add(&users, "encoder", "push-it");
    user_add(&users, "viewer", "just-watch");
    let edge = EdgeProc::start(&format!(
        "[edge.auth]\nusers_file = \"{}\"\n\
         [[edge.publish]]\npath = \"/live\"\nclients = [\"127.0.0.0/8\"]\nusers = [\"encoder\"]\n\
         [[edge.publish]]\npath = \"/closed\"\nclients = []\nusers = [\"*\"]\n",
        users.display()
    ));

    // No credentials: a 401 challenge, and the connection stays open for the answer.
    let mut c = RawRtsp::connect(edge.port);
    let r = c.req_with_body(
        "ANNOUNCE",
        &edge.url("/live/raw"),
        &[("Content-Type", "application/sdp")],
        announce_sdp().as_bytes(),
    );
    assert_eq!(r.status.as_u16(), 401, "{r:?}");
    assert!(
        r.headers
            .get("WWW-Authenticate")
            .is_some_and(|v| v.starts_with("Digest ")),
        "{r:?}"
    );
    assert_eq!(c.req("OPTIONS", "*", &[]).status.as_u16(), 200);
    // The address check comes first: no challenge for an address no rule admits.
    let mut c = RawRtsp::connect(edge.port);
    assert_eq!(
        raw_announce(&mut c, &edge.url("/closed/x"), announce_sdp()),
        403
    );

    // A wrong password and a user the rule does not list: ffmpeg gives up.
    let url = edge.url("/live/cam");
    ffmpeg_publish_refused(
        &edge,
        &url.replacen("rtsp://", "rtsp://encoder:wrong@", 1),
        "publishing refused: no valid login",
    );
    ffmpeg_publish_refused(
        &edge,
        &url.replacen("rtsp://", "rtsp://viewer:just-watch@", 1),
        "publishing refused: the user is not allowed by the publish rules",
    );
    let mut v = RawRtsp::connect(edge.port);
    assert_eq!(v.req("DESCRIBE", &url, &[]).status.as_u16(), 404);

    // The listed user publishes (Digest, answered by ffmpeg), and viewers get it.
    let publisher = ffmpeg_publish(
        &clip(),
        &url.replacen("rtsp://", "rtsp://encoder:push-it@", 1),
        Transport::Tcp,
        3,
    )
    .expect("ffmpeg starts");
    wait_published(&edge, "/live/cam", &publisher);
    edge.peer
        .wait_for_stderr_line("publisher logged in", Duration::from_secs(15));
    let r = ffmpeg_gapless(&url, Transport::Tcp, 3.0);
    assert!(r.video >= 50 && r.gap_warnings.is_empty(), "{r:?}");
}

/// A viewer of a published stream is a viewer like any other: its session leaves an
/// access line and a row in the records store.
#[test]
fn a_viewer_of_a_published_stream_leaves_an_access_line_and_a_record() {
    let log_dir =
        std::env::temp_dir().join(format!("mediagate-publish-log-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).unwrap();
    let log = log_dir.join("access.log");
    let edge = EdgeProc::start(&format!(
        "[log]\naccess_log = {:?}\n",
        log.display().to_string()
    ));
    let url = edge.url("/live/counted");
    let publisher = ffmpeg_publish(&clip(), &url, Transport::Tcp, 3).expect("ffmpeg starts");
    wait_published(&edge, "/live/counted", &publisher);
    let r = ffmpeg_gapless(&url, Transport::Tcp, 3.0);
    assert!(r.video > 0, "{r:?}");

    let deadline = Instant::now() + Duration::from_secs(15);
    let (line, row) = loop {
        let line = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("/live/counted") && l.contains("Lavf"))
            .map(str::to_owned);
        let rows: Vec<mediagate_edge::record::ViewerSessionRecord> =
            mediagate_ops::store::SqliteStore::open(&edge.records_path())
                .and_then(|mut s| s.records(50))
                .unwrap_or_default();
        let row = rows
            .into_iter()
            .find(|r| r.url.ends_with("/live/counted") && r.method == "PLAY");
        if let (Some(line), Some(row)) = (&line, &row) {
            break (line.clone(), row.clone());
        }
        assert!(
            Instant::now() < deadline,
            "no access line or record for the viewer: {line:?} {row:?}\n{}",
            edge.peer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(row.status, 200, "{row:?}");
    assert!(row.bytes > 0 && row.packets > 0, "{row:?}");
    assert!(row.user_agent.starts_with("Lavf"), "{row:?}");
    assert!(line.contains(&row.session), "{line}\n{row:?}");
    let _ = std::fs::remove_dir_all(&log_dir);
}
