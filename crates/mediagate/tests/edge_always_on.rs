//! `always_on` routes with a real gst-rtsp-server origin and the real `mediagate`
//! binary (issue 17 item 2): the edge opens the origin session with no viewer, keeps
//! it through origin outages, and the first viewer starts on the stored keyframe.

mod common;

use std::time::{Duration, Instant};

use common::{ffmpeg_gapless, EdgeProc, RawRtsp};
use mediagate_rtp::Codec;
use mediagate_testkit::{Origin, OriginOptions, Transport};

fn always_on_route(origin_url: &str) -> String {
    format!("[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{origin_url}\"\nalways_on = true\n")
}

/// The `a=control` of the SDP's first video section.
fn video_control(sdp: &str) -> String {
    let mut in_video = false;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video");
        } else if in_video {
            if let Some(c) = line.strip_prefix("a=control:") {
                return c.trim().to_owned();
            }
        }
    }
    panic!("no video track with a control in {sdp}");
}

fn session_of(r: &mediagate_rtsp::Response) -> String {
    r.headers
        .get("Session")
        .and_then(|v| v.split(';').next())
        .expect("a Session header")
        .trim()
        .to_owned()
}

#[test]
fn the_first_viewer_of_an_always_on_route_starts_on_a_stored_keyframe() {
    // A 4 s GOP: a viewer of a cold stream would wait up to 4 s for the origin's next
    // keyframe, so a prompt first keyframe can only come from the edge's store.
    let origin = Origin::start(OriginOptions {
        gop: Some(60),
        ..OriginOptions::default()
    })
    .expect("gst-rtsp-server origin starts");
    let edge = EdgeProc::start(&always_on_route(&origin.url("/live")));
    origin
        .wait_play_count("/live", 1, Duration::from_secs(15))
        .expect("the edge opens the origin session with no viewer");
    // Long enough for the hub to have stored a GOP (the origin's first keyframe
    // comes at once, its next one 4 s later).
    std::thread::sleep(Duration::from_secs(2));

    let url = edge.url("/cam");
    let mut v = RawRtsp::connect(edge.port);
    let d = v.req("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    assert_eq!(d.status.as_u16(), 200, "{d:?}");
    let control = video_control(std::str::from_utf8(&d.body).unwrap());
    let track = if control.starts_with("rtsp://") {
        control
    } else {
        format!("{url}/{control}")
    };
    let s = v.req(
        "SETUP",
        &track,
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(s.status.as_u16(), 200, "{s:?}");
    let session = session_of(&s);
    v.record_frames();
    let asked = Instant::now();
    let p = v.req("PLAY", &url, &[("Session", &session)]);
    assert_eq!(p.status.as_u16(), 200, "{p:?}");
    let mut frames = v.take_frames();
    if !frames.iter().any(|f| f.channel == 0) {
        frames.extend(v.read_frames_for(Duration::from_secs(5)));
    }
    let first = frames
        .iter()
        .find(|f| f.channel == 0)
        .expect("video RTP after PLAY");
    let waited = first.at.duration_since(asked);
    assert!(
        Codec::H264.is_keyframe_start_packet(&first.payload),
        "the first video packet is not a keyframe start"
    );
    // Warm fast start is a few ms; the bound leaves room for a loaded machine and is
    // still far below the cold case (the next keyframe up to 4 s away).
    assert!(
        waited < Duration::from_millis(700),
        "first keyframe {waited:?} after PLAY"
    );
    assert_eq!(
        origin.play_count("/live"),
        1,
        "the viewer rode on the kept session: {}",
        origin.diagnostics()
    );
}

#[test]
fn an_always_on_route_opens_once_its_origin_comes_up_and_reopens_after_it_went_away() {
    let port = mediagate_testkit::ports::free_tcp_port().unwrap();
    let opts = OriginOptions {
        port,
        ..OriginOptions::default()
    };
    // No origin yet: the edge's first open fails and must be retried on its own.
    let edge = EdgeProc::start(&format!(
        "[edge.reconnect]\ngive_up_after = \"2s\"\n{}",
        always_on_route(&format!("rtsp://127.0.0.1:{port}/live"))
    ));
    std::thread::sleep(Duration::from_secs(2));
    let first = Origin::start(opts.clone()).expect("origin starts");
    first
        .wait_play_count("/live", 1, Duration::from_secs(20))
        .expect("the edge opens the origin session once it is up, with no viewer");
    // Away for longer than the give-up time: a viewerless hub gives up, then reopens.
    drop(first);
    std::thread::sleep(Duration::from_secs(4));
    let second = Origin::start(opts).expect("origin restarts on the same port");
    second
        .wait_play_count("/live", 1, Duration::from_secs(20))
        .expect("the edge reopens the origin session after the origin came back");
    let r = ffmpeg_gapless(&edge.url("/cam"), Transport::Tcp, 3.0);
    assert!(r.video >= 20, "{r:?}");
    assert_eq!(second.play_count("/live"), 1, "{}", second.diagnostics());
}

#[test]
fn a_reload_that_turns_always_on_on_opens_the_stream_and_off_lets_it_go() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let plain = format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\n",
        origin.url("/live")
    );
    let edge = EdgeProc::start(&plain);
    let path = edge.config_path();
    let base = std::fs::read_to_string(&path).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        origin.play_count("/live"),
        0,
        "no viewer, no always_on: nothing opened"
    );
    std::fs::write(&path, format!("{base}always_on = true\n")).unwrap();
    edge.peer.signal("HUP");
    origin
        .wait_play_count("/live", 1, Duration::from_secs(15))
        .expect("the reload opens the origin session with no viewer");
    // Off again: the stream lingers (2 s in these tests), then its session is closed.
    std::fs::write(&path, &base).unwrap();
    edge.peer.signal("HUP");
    origin
        .wait_no_connections(Duration::from_secs(20))
        .expect("the origin session is closed once always_on is off");
}
