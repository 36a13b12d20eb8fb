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

fn edge_with_cache(origin: &Origin, cache: &CacheDir) -> EdgeProc {
    let config = format!(
        "[edge.cache]\ndir = {:?}\n[[edge.route]]\nadvertised = \"/clip\"\norigin = \"{}\"\n",
        cache.0.display().to_string(),
        origin.url("/vod")
    );
    EdgeProc::start(&config)
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

    // The DESCRIBEs still reached the origin; its media was sent once.
    assert_eq!(
        origin.play_count("/vod"),
        1,
        "hits must not open origin media sessions: {:#?}",
        origin.requests()
    );
    assert!(origin.request_count("DESCRIBE", "/vod", 200) >= 3);
    let rows = records(&edge, 3);
    let results: Vec<&str> = rows.iter().map(|r| r.cache.as_str()).collect();
    assert_eq!(
        results.iter().filter(|c| **c == "HIT").count(),
        2,
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
