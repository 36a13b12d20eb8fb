//! PAUSE, resume and `Range` seeking of on-demand content through the edge's
//! passthrough (issue 13: "test what the passthrough already claims"), with the real
//! gst-rtsp-server origin's 10 s `/vod` clip (H.264 at 15 fps, keyframe every second,
//! plus AAC). The viewers are the raw RTSP client of `tests/common` (so the test sees
//! each response header and RTP timestamp) and ffmpeg.
//!
//! Media time of a video packet is computed from the PLAY response it follows, as a
//! player does (RFC 2326 §12.33): npt = Range start + (timestamp − RTP-Info rtptime) /
//! 90 kHz.

mod common;

use std::time::{Duration, Instant};

use common::{EdgeProc, Frame, RawRtsp};
use mediagate_rtsp::headers::{Range, RtpInfo};
use mediagate_rtsp::{Response, StatusCode, TypedHeader};
use mediagate_testkit::ffmpeg::{ffmpeg_read, ReadOptions};
use mediagate_testkit::{Origin, OriginOptions, Transport};

const VIDEO_CLOCK: i64 = 90_000;

fn origin() -> Origin {
    Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts")
}

/// An edge passing the clip through: the cache off, so each viewer has its own origin
/// session (the path `[edge.cache] enabled = false` and `cache = false` routes take).
fn vod_edge(origin: &Origin) -> EdgeProc {
    EdgeProc::start(&format!(
        "[edge.cache]\nenabled = false\n[[edge.route]]\nadvertised = \"/clip\"\norigin = \"{}\"\n",
        origin.url("/vod")
    ))
}

/// Where a PLAY response says the video track starts: (npt ms, rtptime, seq).
#[derive(Debug, Clone, Copy)]
struct Start {
    npt_ms: u64,
    rtptime: u32,
    seq: u16,
}

impl Start {
    /// From a PLAY response's `Range` and the video entry (`trackID=0`) of its
    /// `RTP-Info`; panics with the response when either is missing.
    fn of(r: &Response, clip: &str) -> Start {
        let range = r
            .headers
            .get("Range")
            .and_then(|v| Range::parse_value(v).ok())
            .and_then(|r| r.npt_start_millis())
            .unwrap_or_else(|| panic!("no npt Range in {r:?}"));
        let info = r
            .headers
            .get("RTP-Info")
            .and_then(|v| RtpInfo::parse_value(v).ok())
            .unwrap_or_else(|| panic!("no RTP-Info in {r:?}"));
        for e in &info.0 {
            assert!(
                e.url.starts_with(clip),
                "RTP-Info names the origin, not the edge: {e:?}"
            );
        }
        let video = info
            .find_by_url_suffix("trackID=0")
            .unwrap_or_else(|| panic!("no video entry in {info:?}"));
        Start {
            npt_ms: range,
            rtptime: video.rtptime.expect("rtptime"),
            seq: video.seq.expect("seq"),
        }
    }

    /// Media time in ms of a video packet with `timestamp`.
    fn npt_ms(&self, timestamp: u32) -> i64 {
        let ticks = i64::from(timestamp.wrapping_sub(self.rtptime) as i32);
        self.npt_ms as i64 + ticks * 1000 / VIDEO_CLOCK
    }
}

/// Video RTP packets (channel 0) as (arrival, seq, timestamp).
fn video(frames: &[Frame]) -> Vec<(Instant, u16, u32)> {
    frames
        .iter()
        .filter(|f| f.channel == 0)
        .filter_map(|f| {
            let p = mediagate_rtp::RtpPacket::parse(&f.payload).ok()?;
            Some((f.at, p.sequence_number(), p.timestamp()))
        })
        .collect()
}

/// DESCRIBE and SETUP of both tracks over TCP interleaved; returns the session id.
fn open(c: &mut RawRtsp, clip: &str) -> String {
    let d = c.req("DESCRIBE", clip, &[("Accept", "application/sdp")]);
    assert_eq!(d.status, StatusCode::OK, "{d:?}");
    let v = c.req(
        "SETUP",
        &format!("{clip}/trackID=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(v.status, StatusCode::OK, "{v:?}");
    let session = v
        .headers
        .get("Session")
        .and_then(|s| s.split(';').next())
        .expect("a session")
        .to_string();
    let a = c.req(
        "SETUP",
        &format!("{clip}/trackID=1"),
        &[
            ("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3"),
            ("Session", &session),
        ],
    );
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    session
}

#[test]
fn pause_then_play_without_range_continues_where_it_paused() {
    let origin = origin();
    let edge = vod_edge(&origin);
    let clip = edge.url("/clip");
    let mut c = RawRtsp::connect(edge.port);
    let session = open(&mut c, &clip);

    let play = c.req("PLAY", &clip, &[("Session", &session)]);
    assert_eq!(play.status, StatusCode::OK, "{play:?}");
    let first = Start::of(&play, &clip);
    c.record_frames();
    let before = video(&c.read_frames_for(Duration::from_secs(3)));
    assert!(before.len() > 30, "3 s of video: {} packets", before.len());

    let pause = c.req("PAUSE", &clip, &[("Session", &session)]);
    assert_eq!(pause.status, StatusCode::OK, "{pause:?}");
    let paused_at = Instant::now();
    // What was on its way when the PAUSE was answered still arrives; after that the
    // stream is quiet.
    let settle = video(&c.read_frames_for(Duration::from_millis(500)));
    let quiet = video(&c.read_frames_for(Duration::from_secs(2)));
    assert!(
        quiet.is_empty(),
        "{} video packets arrived 0.5-2.5 s after the PAUSE was answered",
        quiet.len()
    );
    let (_, last_seq, last_ts) = *settle.last().or(before.last()).unwrap();
    let paused_npt = first.npt_ms(last_ts);
    assert!(
        (1_500..=5_000).contains(&paused_npt),
        "paused after about 3 s of a 10 s clip, at {paused_npt} ms"
    );

    let resume = c.req("PLAY", &clip, &[("Session", &session)]);
    assert_eq!(resume.status, StatusCode::OK, "{resume:?}");
    let wall_pause = paused_at.elapsed().as_millis() as i64;
    let again = Start::of(&resume, &clip);
    let after = video(&c.read_frames_for(Duration::from_secs(2)));
    assert!(after.len() > 15, "video after resuming: {after:?}");

    // The resumed range starts at the pause point, not at 0 and not where the clip
    // would be had it run on during the pause.
    let resumed_npt = again.npt_ms as i64;
    assert!(
        (resumed_npt - paused_npt).abs() <= 1_000,
        "resumed at {resumed_npt} ms, paused at {paused_npt} ms (pause lasted {wall_pause} ms)"
    );
    let (_, seq, ts) = after[0];
    let first_after = again.npt_ms(ts);
    assert!(
        (first_after - paused_npt).abs() <= 1_000,
        "first packet after resuming is at {first_after} ms, paused at {paused_npt} ms"
    );
    assert_eq!(
        seq,
        last_seq.wrapping_add(1),
        "sequence numbers continue across the pause (RTP-Info said {})",
        again.seq
    );
    let (_, _, end_ts) = *after.last().unwrap();
    assert!(
        again.npt_ms(end_ts) > first_after + 1_000,
        "the clip plays on after resuming"
    );
}

#[test]
fn play_with_range_starts_at_the_asked_time_with_matching_rtp_info() {
    let origin = origin();
    let edge = vod_edge(&origin);
    let clip = edge.url("/clip");
    let mut c = RawRtsp::connect(edge.port);
    let session = open(&mut c, &clip);

    c.record_frames();
    let play = c.req("PLAY", &clip, &[("Session", &session), ("Range", "npt=5-")]);
    assert_eq!(play.status, StatusCode::OK, "{play:?}");
    let start = Start::of(&play, &clip);
    assert!(
        (4_000..=5_000).contains(&start.npt_ms),
        "Range of the answer starts at the keyframe at or before 5 s: {play:?}"
    );
    let info = RtpInfo::parse_value(play.headers.get("RTP-Info").unwrap()).unwrap();
    assert!(
        info.find_by_url_suffix("trackID=1").is_some(),
        "an audio entry too: {info:?}"
    );
    // The origin got the viewer's Range.
    assert!(
        origin.wait_for_request(Duration::from_secs(10), |r| r.method == "PLAY"
            && r.range.as_deref() == Some("npt=5-")),
        "{:#?}",
        origin.requests()
    );

    let frames = c.read_frames_for(Duration::from_secs(2));
    let v = video(&frames);
    assert!(v.len() > 15, "video after the seek: {}", v.len());
    let (_, seq, ts) = v[0];
    // gst-rtsp-server 1.22 names in RTP-Info the sequence number just before its first
    // packet after a seek (seen on the origin directly: seq=16381, first packet 16382),
    // and the edge passes the origin's figures on: one of the two.
    assert!(
        seq == start.seq || seq == start.seq.wrapping_add(1),
        "first packet {seq}, RTP-Info seq={}",
        start.seq
    );
    let first_npt = start.npt_ms(ts);
    assert!(
        (first_npt - start.npt_ms as i64).abs() <= 200,
        "first video packet at {first_npt} ms, Range starts at {} ms",
        start.npt_ms
    );
    // The first picture (its SPS and PPS come first, in packets of their own) is an
    // IDR picture.
    let first_picture_is_idr = frames
        .iter()
        .filter(|f| f.channel == 0)
        .filter_map(|f| mediagate_rtp::RtpPacket::parse(&f.payload).ok())
        .take_while(|p| p.timestamp() == ts)
        .any(|p| mediagate_rtp::h264::is_keyframe_start(p.payload()));
    assert!(
        first_picture_is_idr,
        "playing from a seek starts with a keyframe"
    );
    // Timestamps move on from there at the clip's pace, not from 0.
    let (_, _, last_ts) = *v.last().unwrap();
    let last_npt = start.npt_ms(last_ts);
    assert!(
        last_npt > first_npt + 500 && last_npt <= 10_000,
        "{first_npt} ms .. {last_npt} ms"
    );
}

#[test]
fn ffmpeg_with_ss_before_the_input_decodes_from_about_5_s() {
    let origin = origin();
    let edge = vod_edge(&origin);
    let seconds = f64::from(origin.options().vod_seconds);
    let fps = f64::from(origin.options().fps);
    let report = ffmpeg_read(
        &edge.url("/clip"),
        &ReadOptions::until_end(Transport::Tcp).seek(5.0),
    )
    .expect("ffmpeg runs");
    assert!(report.success, "{report:#?}");
    // 5 s are left after the seek point: 75 frames at 15 fps; a seek that was ignored
    // would decode all 150.
    let expected = (seconds - 5.0) * fps;
    let got = report.video_frames as f64;
    assert!(
        got >= expected * 0.8 && got <= expected * 1.2,
        "expected about {expected} video frames after seeking to 5 s: {report:#?}"
    );
    assert!(report.audio_frames > 100, "{report:#?}");
    assert!(
        origin.wait_for_request(Duration::from_secs(10), |r| r.method == "PLAY"
            && r.range.as_deref() == Some("npt=5.000-")),
        "the seek reached the origin: {:#?}",
        origin.requests()
    );
}
