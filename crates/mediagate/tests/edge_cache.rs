//! The cut-through cache with real peers (issue 13): a gst-rtsp-server on-demand
//! origin, ffmpeg and GStreamer `rtspsrc` viewers, the real `mediagate` binary in
//! between with a cache directory. The first viewer fills the cache while it plays;
//! later viewers are served from it while the origin sends them no media (the origin's
//! own log counts its PLAYs: a hit never opens an origin media session).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::EdgeProc;
use mediagate_edge::record::ViewerSessionRecord;
use mediagate_ops::store::SqliteStore;
use mediagate_testkit::{
    ffmpeg_read, ffprobe, rtspsrc, Origin, OriginOptions, ReadOptions, Transport,
};

/// A cache directory of this test's own, removed when dropped.
struct CacheDir(PathBuf);

impl CacheDir {
    fn new(name: &str) -> CacheDir {
        let dir =
            std::env::temp_dir().join(format!("mediagate-cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        CacheDir(dir)
    }
}

impl Drop for CacheDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An edge with a cache, and an admin API (to see what the cache holds).
fn edge_with_cache(origin: &Origin, cache: &CacheDir) -> EdgeProc {
    let api = mediagate_testkit::ports::free_tcp_port().unwrap();
    EdgeProc::start(&format!(
        "[edge.cache]\ndir = {:?}\n[[edge.route]]\nadvertised = \"/clip\"\norigin = \"{}\"\n\
         [admin]\nlisten = [\"127.0.0.1:{api}\"]\n",
        cache.0.display().to_string(),
        origin.url("/vod")
    ))
}

/// The viewer sessions the edge stored, once `n` are there (bounded wait).
fn records(edge: &EdgeProc, n: usize) -> Vec<ViewerSessionRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<ViewerSessionRecord> = SqliteStore::open(&edge.records_path())
            .and_then(|mut s| s.records(50))
            .unwrap_or_default();
        if rows.len() >= n || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Plays the whole clip through the edge with ffmpeg; the fill is then complete.
fn fill(edge: &EdgeProc, seconds: f64) {
    let r = ffmpeg_read(&edge.url("/clip"), &ReadOptions::until_end(Transport::Tcp))
        .expect("ffmpeg runs");
    assert!(r.success, "viewer 1 (the fill): {r:#?}");
    let got = r.video_seconds.unwrap_or(0.0);
    assert!((got - seconds).abs() < 1.0, "viewer 1 saw {got} s: {r:#?}");
    // The fill ends on its writer thread just after the viewer leaves: the next viewer
    // is to find it complete, so it is waited for (bounded).
    common::admin::wait_cache_holds(edge.admin_port(), "the complete fill", |o| {
        o["complete"] == true
    });
}

#[test]
fn later_viewers_are_served_from_the_cache_while_the_origin_sends_them_nothing() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let seconds = f64::from(origin.options().vod_seconds);
    let cache = CacheDir::new("hits");
    let edge = edge_with_cache(&origin, &cache);
    fill(&edge, seconds);
    assert_eq!(
        origin.play_count("/vod"),
        1,
        "viewer 1 played from the origin"
    );
    let first = records(&edge, 1);
    assert_eq!(
        first.first().map(|r| r.cache.as_str()),
        Some("MISS"),
        "{first:?}"
    );

    // Viewer 2: ffmpeg over UDP, the whole clip, decoded.
    let r = ffmpeg_read(&edge.url("/clip"), &ReadOptions::until_end(Transport::Udp))
        .expect("ffmpeg runs");
    assert!(r.success, "viewer 2: {r:#?}");
    let got = r.video_seconds.unwrap_or(0.0);
    assert!((got - seconds).abs() < 1.0, "viewer 2 saw {got} s: {r:#?}");
    assert!(r.audio_frames > 300, "viewer 2 audio: {r:#?}");

    // Viewer 3: GStreamer's rtspsrc over TCP.
    let g =
        rtspsrc(&edge.url("/clip"), Transport::Tcp, Duration::from_secs(4)).expect("rtspsrc runs");
    assert!(
        g.video_buffers > 20 && g.audio_buffers > 20,
        "viewer 3 (rtspsrc) got media: {g:?}"
    );

    // An HTTP-tunnel viewer takes the same path as a TCP one.
    let t = ffmpeg_read(
        &edge.url("/clip"),
        &ReadOptions::seconds(Transport::HttpTunnel, 3.0),
    )
    .expect("ffmpeg runs");
    assert!(t.video_frames >= 30, "tunnel viewer: {t:#?}");

    // The origin's media was sent once: viewer 1's session is its only PLAY.
    assert_eq!(
        origin.play_count("/vod"),
        1,
        "hits must not open origin media sessions: {:#?}",
        origin.requests()
    );
    let rows = records(&edge, 4);
    let results: Vec<&str> = rows.iter().map(|r| r.cache.as_str()).collect();
    assert_eq!(
        results.iter().filter(|c| **c == "HIT").count(),
        3,
        "{rows:#?}"
    );
}

#[test]
fn a_seek_into_a_cached_clip_plays_from_the_keyframe_before_it() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let seconds = f64::from(origin.options().vod_seconds);
    let cache = CacheDir::new("seek");
    let edge = edge_with_cache(&origin, &cache);
    fill(&edge, seconds);
    // One keyframe a second: a seek to 5.5 s starts at the keyframe of 5 s, so about
    // 5 s of video follow (4 s if it started at 5.5 s and the decoder waited for the
    // keyframe of 6 s; 10 s if the seek were ignored). `-noaccurate_seek` keeps ffmpeg
    // from dropping the frames before 5.5 s itself.
    let mut opts = ReadOptions::until_end(Transport::Tcp).seek(5.5);
    opts.input_args = vec!["-noaccurate_seek".into()];
    let r = ffmpeg_read(&edge.url("/clip"), &opts).expect("ffmpeg runs");
    assert!(r.success, "{r:#?}");
    let got = r.video_seconds.unwrap_or(0.0);
    assert!(
        (4.6..=5.4).contains(&got),
        "video after the seek: {got} s: {r:#?}"
    );
    assert_eq!(origin.play_count("/vod"), 1, "the seek was a hit");

    // The hit is a valid stream of the clip's length.
    let probe = ffprobe(&edge.url("/clip"), Transport::Tcp).expect("ffprobe runs");
    assert!(
        probe.has("video", "h264") && probe.has("audio", "aac"),
        "{probe:?}"
    );
    assert_eq!(origin.play_count("/vod"), 1);
}

/// (seq, timestamp) of an RTP packet.
fn seq_ts(rtp: &[u8]) -> (u16, u32) {
    let p = mediagate_rtp::RtpPacket::parse(rtp).expect("an RTP packet");
    (p.sequence_number(), p.timestamp())
}

/// The RTP-Info entry of `track`: (seq, rtptime).
fn rtp_info(resp: &mediagate_rtsp::Response, track: usize) -> (u16, u32) {
    use mediagate_rtsp::headers::RtpInfo;
    use mediagate_rtsp::TypedHeader;
    let v = resp.headers.get("RTP-Info").expect("RTP-Info");
    let info = RtpInfo::parse_value(v).expect("valid RTP-Info");
    let e = info
        .find_by_url_suffix(&format!("trackID={track}"))
        .unwrap_or_else(|| panic!("no entry for track {track}: {v}"));
    (e.seq.expect("seq"), e.rtptime.expect("rtptime"))
}

/// The first RTP packet on `channel`, counting the frames skipped on the way.
fn first_on(c: &mut common::RawRtsp, channel: u8) -> Vec<u8> {
    loop {
        let (ch, p) = c.next_frame();
        if ch == channel {
            return p;
        }
    }
}

#[test]
fn a_hit_answers_play_with_where_its_first_packets_are_and_continues_across_pause_and_seek() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let seconds = f64::from(origin.options().vod_seconds);
    let cache = CacheDir::new("rtpinfo");
    let edge = edge_with_cache(&origin, &cache);
    fill(&edge, seconds);
    let url = edge.url("/clip");
    let mut c = common::RawRtsp::connect(edge.port);
    assert_eq!(c.req("DESCRIBE", &url, &[]).status.as_u16(), 200);
    let r = c.req(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    let session = r
        .headers
        .get("Session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let r = c.req(
        "SETUP",
        &format!("{url}/trackID=1"),
        &[
            ("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3"),
            ("Session", &session),
        ],
    );
    assert_eq!(r.status.as_u16(), 200, "{r:?}");

    // One keyframe a second: 2.5 s starts at the keyframe of 2 s.
    let play = c.req(
        "PLAY",
        &url,
        &[("Session", &session), ("Range", "npt=2.5-")],
    );
    assert_eq!(play.status.as_u16(), 200, "{play:?}");
    assert!(
        play.headers.get("Range").unwrap().starts_with("npt=2.000-"),
        "{play:?}"
    );
    let (seq, rtptime) = rtp_info(&play, 0);
    let (audio_seq, _) = rtp_info(&play, 1);
    let (mut video, mut audio) = (None, None);
    while video.is_none() || audio.is_none() {
        let (ch, p) = c.next_frame();
        match ch {
            0 => video = video.or(Some(p)),
            2 => audio = audio.or(Some(p)),
            _ => {}
        }
    }
    let (video, audio) = (video.unwrap(), audio.unwrap());
    assert_eq!(
        seq_ts(&video),
        (seq, rtptime),
        "the first video packet is RTP-Info's"
    );
    assert_eq!(
        seq_ts(&audio).0,
        audio_seq,
        "the first audio packet is RTP-Info's"
    );

    // Play a second, PAUSE, resume: numbering and time go on from the last packet.
    std::thread::sleep(Duration::from_secs(1));
    c.skipped.clear();
    let r = c.req("PAUSE", &url, &[("Session", &session)]);
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    std::thread::sleep(Duration::from_millis(300));
    // Whatever was still in flight arrives before the next answer.
    let resume = c.req("PLAY", &url, &[("Session", &session)]);
    assert_eq!(resume.status.as_u16(), 200, "{resume:?}");
    let last_video = c
        .skipped
        .iter()
        .rev()
        .find(|(ch, _)| *ch == 0)
        .map(|(_, p)| seq_ts(p))
        .expect("video before the PAUSE");
    let (seq, rtptime) = rtp_info(&resume, 0);
    let next = seq_ts(&first_on(&mut c, 0));
    assert_eq!(next.0, seq, "RTP-Info seq of the resume");
    // rtptime is the resumed Range start's (RFC 2326 §12.33): the next packet of any
    // track, so the first video packet is at or just after it.
    let after_start = next.1.wrapping_sub(rtptime) as i32;
    assert!(
        (0..=9000).contains(&after_start),
        "first video packet {after_start} ticks after the resume's rtptime"
    );
    assert_eq!(
        seq,
        last_video.0.wrapping_add(1),
        "no sequence gap across PAUSE"
    );
    let step = next.1.wrapping_sub(last_video.1) as i32;
    assert!((0..=9000).contains(&step), "timestamps continue: {step}");

    // A seek while playing: a new Range, numbering still continuous.
    c.skipped.clear();
    let seek = c.req("PLAY", &url, &[("Session", &session), ("Range", "npt=7-")]);
    assert_eq!(seek.status.as_u16(), 200, "{seek:?}");
    assert!(
        seek.headers.get("Range").unwrap().starts_with("npt=7.000-"),
        "{seek:?}"
    );
    let before = c
        .skipped
        .iter()
        .rev()
        .find(|(ch, _)| *ch == 0)
        .map(|(_, p)| seq_ts(p))
        .unwrap_or(next);
    let (seq, rtptime) = rtp_info(&seek, 0);
    let after = seq_ts(&first_on(&mut c, 0));
    assert_eq!(after, (seq, rtptime), "RTP-Info of the seek");
    assert_eq!(
        seq,
        before.0.wrapping_add(1),
        "no sequence gap across the seek"
    );
    assert_eq!(
        c.req("TEARDOWN", &url, &[("Session", &session)])
            .status
            .as_u16(),
        200
    );
    assert_eq!(
        origin.play_count("/vod"),
        1,
        "all of it came from the cache"
    );
}

#[test]
fn an_origin_failure_mid_fill_ends_the_viewer_and_keeps_only_what_verifies() {
    let port = mediagate_testkit::ports::free_tcp_port().unwrap();
    let opts = OriginOptions {
        port,
        ..OriginOptions::default()
    };
    let first = Origin::start(opts.clone()).expect("origin starts");
    let cache = CacheDir::new("failure");
    let edge = edge_with_cache(&first, &cache);
    let viewer = common::ffmpeg_viewer(&edge.url("/clip"), "filler", 20);
    std::thread::sleep(Duration::from_secs(5));
    drop(first); // the origin dies mid-clip
                 // The viewer is let go (its connection closes), not left hanging.
    let deadline = Instant::now() + Duration::from_secs(10);
    while viewer.try_status().is_none() {
        assert!(
            Instant::now() < deadline,
            "viewer still attached: {}",
            viewer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = Origin::start(opts).expect("origin restarts");
    // What was filled before the failure is a hit; where it ends, the viewer goes on
    // from the origin (one origin PLAY), to the end of the clip.
    let r = ffmpeg_read(
        &edge.url("/clip"),
        &ReadOptions::until_end(Transport::Tcp)
            .seek(1.0)
            .timeout(Duration::from_secs(30)),
    )
    .expect("ffmpeg runs");
    assert!(r.success, "{r:#?}");
    assert!(r.errors.is_empty(), "decoding errors: {:?}", r.errors);
    let got = r.video_seconds.unwrap_or(0.0);
    assert!(
        got > 8.0 && got < 10.0,
        "played {got} s of the 9 s from 1 s on: {r:#?}"
    );
    assert_eq!(
        second.play_count("/vod"),
        1,
        "the held part is a hit, the rest one origin PLAY"
    );
    // What the origin sent then was recorded: the rest of the clip is held now.
    let r = ffmpeg_read(
        &edge.url("/clip"),
        &ReadOptions::until_end(Transport::Tcp).seek(8.0),
    )
    .expect("ffmpeg runs");
    assert!(r.success, "{r:#?}");
    assert_eq!(
        second.play_count("/vod"),
        1,
        "beyond the range held before: a hit now"
    );
}

#[test]
fn one_viewer_fills_an_object_and_a_concurrent_one_just_passes_through() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let cache = CacheDir::new("concurrent");
    let edge = edge_with_cache(&origin, &cache);
    let url = edge.url("/clip");
    let other = {
        let url = url.clone();
        std::thread::spawn(move || {
            ffmpeg_read(&url, &ReadOptions::seconds(Transport::Tcp, 4.0)).expect("ffmpeg runs")
        })
    };
    let r = ffmpeg_read(&url, &ReadOptions::seconds(Transport::Tcp, 4.0)).expect("ffmpeg runs");
    let o = other.join().unwrap();
    assert!(
        r.video_frames >= 40 && o.video_frames >= 40,
        "{r:#?}\n{o:#?}"
    );
    assert_eq!(origin.play_count("/vod"), 2, "both missed");
    let rows = records(&edge, 2);
    let mut results: Vec<&str> = rows.iter().map(|r| r.cache.as_str()).collect();
    results.sort_unstable();
    assert_eq!(results, ["MISS", "PASS"], "{rows:#?}");
}

/// (seq, timestamp, SSRC) of an RTP packet.
fn numbering(rtp: &[u8]) -> (u16, u32, u32) {
    let p = mediagate_rtp::RtpPacket::parse(rtp).expect("an RTP packet");
    (p.sequence_number(), p.timestamp(), p.ssrc())
}

/// The last video packet among `frames`.
fn last_video(frames: &[common::Frame]) -> Option<(u16, u32, u32)> {
    frames
        .iter()
        .rev()
        .find(|f| f.channel == 0)
        .map(|f| numbering(&f.payload))
}

/// After a PLAY answered `play`, following a last video packet `before`: the first
/// video packet read within a second is the one RTP-Info names (its timestamp at most
/// `late_ms` after the range start), with the same SSRC, the next sequence number, and
/// a timestamp after `before`'s. Returns the last video packet read.
fn goes_on(
    c: &mut common::RawRtsp,
    play: &mediagate_rtsp::Response,
    before: (u16, u32, u32),
    late_ms: u32,
    what: &str,
) -> (u16, u32, u32) {
    assert_eq!(play.status.as_u16(), 200, "{what}: {play:?}");
    let (seq, rtptime) = rtp_info(play, 0);
    let frames = c.read_frames_for(Duration::from_secs(1));
    let first = frames
        .iter()
        .find(|f| f.channel == 0)
        .map(|f| numbering(&f.payload))
        .unwrap_or_else(|| panic!("{what}: no video"));
    assert_eq!(first.2, before.2, "{what}: one SSRC for the viewer");
    assert_eq!(first.0, seq, "{what}: RTP-Info seq is the first packet's");
    assert_eq!(
        seq,
        before.0.wrapping_add(1),
        "{what}: no sequence gap ({before:?} then {first:?})"
    );
    let late = first.1.wrapping_sub(rtptime) as i32;
    assert!(
        (0..=(late_ms * 90) as i32).contains(&late),
        "{what}: first packet {late} ticks after RTP-Info's rtptime"
    );
    let step = first.1.wrapping_sub(before.1) as i32;
    assert!(
        (1..=90_000).contains(&step),
        "{what}: timestamps go on ({step} ticks after the last one)"
    );
    last_video(&frames).unwrap_or(first)
}

#[test]
fn one_session_moves_between_origin_and_cache_as_one_stream() {
    let origin = Origin::start(OriginOptions {
        vod_seconds: 30,
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let cache = CacheDir::new("seam");
    let edge = edge_with_cache(&origin, &cache);
    let url = edge.url("/clip");
    let mut c = common::RawRtsp::connect(edge.port);
    assert_eq!(c.req("DESCRIBE", &url, &[]).status.as_u16(), 200);
    let r = c.req(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    let session = r
        .headers
        .get("Session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let r = c.req(
        "SETUP",
        &format!("{url}/trackID=1"),
        &[
            ("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3"),
            ("Session", &session),
        ],
    );
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    let s = [("Session", session.as_str())];

    // A miss: the origin serves it, the edge numbers it and records 3 s.
    c.record_frames();
    let play = c.req("PLAY", &url, &s);
    assert_eq!(play.status.as_u16(), 200, "{play:?}");
    let (seq, rtptime) = rtp_info(&play, 0);
    let frames = c.read_frames_for(Duration::from_secs(3));
    let first = frames
        .iter()
        .find(|f| f.channel == 0)
        .map(|f| numbering(&f.payload))
        .expect("video");
    assert_eq!((first.0, first.1), (seq, rtptime), "RTP-Info of the miss");
    assert_eq!(c.req("PAUSE", &url, &s).status.as_u16(), 200);
    std::thread::sleep(Duration::from_millis(800));
    let mut before = last_video(&c.take_frames())
        .or(last_video(&frames))
        .unwrap();
    assert_eq!(origin.play_count("/vod"), 1);

    // Past what is held: the origin again (a seek there), numbering going on.
    let play = c.req("PLAY", &url, &[s[0], ("Range", "npt=10-")]);
    before = last_video(&c.take_frames()).unwrap_or(before);
    before = goes_on(&mut c, &play, before, 200, "origin seek");
    assert_eq!(origin.play_count("/vod"), 2);

    // Back into the held start: the cache serves it (no origin PLAY), going on with
    // the origin's numbering.
    let play = c.req("PLAY", &url, &[s[0], ("Range", "npt=1-")]);
    assert!(
        play.headers
            .get("Range")
            .is_some_and(|r| r.starts_with("npt=1.000-")),
        "a hit from the keyframe at 1 s: {play:?}"
    );
    before = last_video(&c.take_frames()).unwrap_or(before);
    before = goes_on(&mut c, &play, before, 0, "origin to cache");
    assert_eq!(origin.play_count("/vod"), 2, "a hit sends no origin PLAY");

    // And out again: the paused origin session serves it, numbering going on.
    let play = c.req("PLAY", &url, &[s[0], ("Range", "npt=20-")]);
    before = last_video(&c.take_frames()).unwrap_or(before);
    goes_on(&mut c, &play, before, 200, "cache to origin");
    assert_eq!(origin.play_count("/vod"), 3);
    assert_eq!(c.req("TEARDOWN", &url, &s).status.as_u16(), 200);
}

#[test]
fn an_ffmpeg_seek_from_the_origin_into_a_held_range_plays_as_one_stream() {
    let origin = Origin::start(OriginOptions {
        vod_seconds: 30,
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let cache = CacheDir::new("seam-ffmpeg");
    let edge = edge_with_cache(&origin, &cache);
    let url = edge.url("/clip");

    // The cache holds 10 s..15 s only: a viewer that played from 10 s for 5 s.
    let mut c = common::RawRtsp::connect(edge.port);
    assert_eq!(c.req("DESCRIBE", &url, &[]).status.as_u16(), 200);
    let r = c.req(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    let session = r
        .headers
        .get("Session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let r = c.req(
        "SETUP",
        &format!("{url}/trackID=1"),
        &[
            ("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3"),
            ("Session", &session),
        ],
    );
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    let play = c.req("PLAY", &url, &[("Session", &session), ("Range", "npt=10-")]);
    assert_eq!(play.status.as_u16(), 200, "{play:?}");
    c.read_frames_for(Duration::from_secs(5));
    assert_eq!(
        c.req("TEARDOWN", &url, &[("Session", &session)])
            .status
            .as_u16(),
        200
    );
    // The run ends on the fill's writer thread just after the TEARDOWN.
    common::admin::wait_cache_holds(edge.admin_port(), "the run from 10 s", |o| {
        o["ranges"].as_array().is_some_and(|r| !r.is_empty())
    });
    assert_eq!(origin.play_count("/vod"), 1);

    // ffmpeg's `-ss 11` PLAYs from 0 (not held: the origin, numbered by the edge),
    // then from 11 s (held: the cache, going on with that numbering). Bounded by
    // `-t 3`, it keeps 3 s of video, decoded without an error.
    let mut opts = ReadOptions::seconds(Transport::Tcp, 3.0).seek(11.0);
    opts.input_args = vec!["-noaccurate_seek".into()];
    let r = ffmpeg_read(&url, &opts).expect("ffmpeg runs");
    let got = r.video_seconds.unwrap_or(0.0);
    assert!(
        (2.5..=3.5).contains(&got) && r.video_frames >= 40,
        "viewer from 11 s for 3 s decoded {got} s of video: {r:#?}"
    );
    assert!(r.errors.is_empty(), "decoding errors: {:?}", r.errors);
    assert_eq!(
        origin.play_count("/vod"),
        2,
        "the PLAY from 0 went to the origin, the one from 11 s to the cache: {:#?}\n{}",
        origin.requests(),
        edge.peer.diagnostics()
    );
}
