//! The cache's policy, freshness and variants with real peers (issue 13 items 4, 5, 6;
//! issue 12's cache-hit authorization): a gst-rtsp-server origin (on-demand mounts,
//! one of them behind Digest auth), ffmpeg viewers and a raw RTSP client, the real
//! `mediagate` binary with a cache directory in between.
//!
//! gst-rtsp-server sends no validators (no ETag, Last-Modified, Expires or
//! Cache-Control) and draws a new `o=` session id for every DESCRIBE of the same
//! file, so what decides whether its clip changed is the SDP itself (its `a=range`
//! and codec parameters); how long a stored copy stays fresh is `[edge.cache]
//! default_ttl`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{EdgeProc, RawRtsp};
use mediagate_edge::record::ViewerSessionRecord;
use mediagate_ops::store::SqliteStore;
use mediagate_testkit::{ffmpeg_read, Origin, OriginOptions, ReadOptions, Transport};

/// A scratch directory of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "mediagate-cache-policy-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The cache results of the viewer sessions of `url_suffix` the edge stored (refused
/// requests' DENIED records left out), oldest first, once `n` are there (bounded wait).
fn results(edge: &EdgeProc, n: usize, url_suffix: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut rows: Vec<ViewerSessionRecord> = SqliteStore::open(&edge.records_path())
            .and_then(|mut s| s.records(100))
            .unwrap_or_default();
        rows.retain(|r| r.url.ends_with(url_suffix) && r.cache != "DENIED");
        if rows.len() >= n || Instant::now() > deadline {
            rows.sort_by_key(|r| r.start_unix_ms);
            return rows.into_iter().map(|r| r.cache).collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `rtsp://user:password@127.0.0.1:PORT/path` for the edge.
fn with_login(url: &str, user: &str, password: &str) -> String {
    url.replacen("rtsp://", &format!("rtsp://{user}:{password}@"), 1)
}

fn read_all(url: &str) -> mediagate_testkit::ffmpeg::ReadReport {
    let opts = ReadOptions::until_end(Transport::Tcp).timeout(Duration::from_secs(40));
    ffmpeg_read(url, &opts).expect("ffmpeg runs")
}

fn plays_whole_clip(url: &str, seconds: f64) {
    let r = read_all(url);
    assert!(r.success, "{url}: {r:#?}");
    let got = r.video_seconds.unwrap_or(0.0);
    assert!((got - seconds).abs() < 1.0, "{url}: saw {got} s: {r:#?}");
}

fn refused(url: &str, status: &str) {
    let r = ffmpeg_read(url, &ReadOptions::seconds(Transport::Tcp, 2.0)).expect("ffmpeg runs");
    assert!(
        !r.success && r.video_frames == 0 && r.error_contains(status),
        "{url} should be refused with {status}: {}",
        r.diagnostics
    );
}

/// The edge's log, cache and admin API settings (the API on a free port, found again
/// by [`EdgeProc::admin_port`]).
fn cache_section(dir: &Path, extra: &str) -> String {
    let api = mediagate_testkit::ports::free_tcp_port().unwrap();
    format!(
        "[log]\nlevel = \"debug\"\n[admin]\nlisten = [\"127.0.0.1:{api}\"]\n[edge.cache]\ndir = {:?}\n{extra}",
        dir.display().to_string()
    )
}

/// [`plays_whole_clip`] for a viewer that fills the cache; returns once the fill has
/// ended. It ends on its writer thread just after the viewer leaves, and a next viewer
/// that is to be a hit must find it complete: waited for (bounded).
fn fills_whole_clip(edge: &EdgeProc, url: &str, seconds: f64) {
    plays_whole_clip(url, seconds);
    common::admin::wait_cache(edge.admin_port(), "the fill complete", |objects| {
        !objects.is_empty() && objects.iter().all(|o| o["complete"] == true)
    });
}

#[test]
fn content_behind_origin_digest_is_cached_only_when_the_route_allows_and_every_hit_is_authorized() {
    let origin = Origin::start(OriginOptions {
        vod_seconds: 4,
        vod_auth_mount: Some("/svod".into()),
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let (user, password) = origin.credentials();
    let (user, password) = (user.to_owned(), password.to_owned());
    let scratch = Scratch::new("digest");
    // Pass-through routes (no origin credentials of their own): the viewer's own
    // Authorization reaches the origin.
    let edge = EdgeProc::start(&format!(
        "{}[[edge.route]]\nadvertised = \"/kept\"\norigin = \"{}\"\ncache_authenticated = true\n\
         [[edge.route]]\nadvertised = \"/unkept\"\norigin = \"{}\"\n",
        cache_section(&scratch.path("cache"), ""),
        origin.url("/svod"),
        origin.url("/svod"),
    ));
    let kept = with_login(&edge.url("/kept"), &user, &password);

    // Viewer 1, with credentials, fills.
    fills_whole_clip(&edge, &kept, 4.0);
    assert_eq!(origin.play_count("/svod"), 1);
    // No credentials: the origin's 401 (with its challenge), although the clip is on
    // disk; wrong credentials: refused by the origin too. No media either way.
    refused(&edge.url("/kept"), "401");
    refused(&with_login(&edge.url("/kept"), &user, "wrong"), "401");
    assert_eq!(origin.play_count("/svod"), 1, "{:#?}", origin.requests());
    // Right credentials: the origin authorizes the viewer (its DESCRIBE) and sends no
    // media; the clip comes from the cache (to this edge's UDP ports, the ones the
    // viewer's SETUPs were answered with).
    let described = origin.request_count("DESCRIBE", "/svod", 200);
    let r = ffmpeg_read(
        &kept,
        &ReadOptions::until_end(Transport::Udp).timeout(Duration::from_secs(40)),
    )
    .expect("ffmpeg runs");
    assert!(r.success, "{r:#?}");
    let got = r.video_seconds.unwrap_or(0.0);
    assert!(
        (got - 4.0).abs() < 1.0,
        "the hit viewer saw {got} s: {r:#?}"
    );
    assert_eq!(
        origin.play_count("/svod"),
        1,
        "a hit opens no origin media session: {}",
        edge.peer.stderr_tail().join("\n")
    );
    assert_eq!(
        origin.request_count("DESCRIBE", "/svod", 200),
        described + 1,
        "the hit viewer was authorized by the origin"
    );
    assert_eq!(results(&edge, 2, "/kept"), ["MISS", "HIT"]);

    // A route without cache_authenticated never keeps what needed credentials: each
    // viewer is served by the origin.
    let unkept = with_login(&edge.url("/unkept"), &user, &password);
    let opts = ReadOptions::seconds(Transport::Tcp, 2.0).timeout(Duration::from_secs(30));
    for _ in 0..2 {
        let r = ffmpeg_read(&unkept, &opts).expect("ffmpeg runs");
        assert!(r.video_frames >= 15, "{r:#?}");
    }
    assert_eq!(origin.play_count("/svod"), 3, "{:#?}", origin.requests());
    assert_eq!(results(&edge, 2, "/unkept"), ["PASS", "PASS"]);
}

#[test]
fn hit_viewers_are_authorized_by_their_accounting_connection() {
    let origin = Origin::start(OriginOptions {
        vod_seconds: 4,
        vod_auth_mount: Some("/svod".into()),
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let (user, password) = origin.credentials();
    let (user, password) = (user.to_owned(), password.to_owned());
    let scratch = Scratch::new("accounting");
    // The edge's own session uses the route's credentials; each viewer is asked about
    // by its accounting DESCRIBE with the viewer's own.
    let authority =
        origin
            .url("/svod")
            .replacen("rtsp://", &format!("rtsp://{user}:{password}@"), 1);
    let edge = EdgeProc::start(&format!(
        "{}[[edge.route]]\nadvertised = \"/acct\"\norigin = \"{}\"\naccounting = \"authorize\"\ncache_authenticated = true\n",
        cache_section(&scratch.path("cache"), ""),
        authority,
    ));
    let url = with_login(&edge.url("/acct"), &user, &password);
    fills_whole_clip(&edge, &url, 4.0);
    assert_eq!(origin.play_count("/svod"), 1);
    refused(&edge.url("/acct"), "401");
    refused(&with_login(&edge.url("/acct"), &user, "wrong"), "401");
    let forwarded = |o: &Origin| {
        o.requests()
            .iter()
            .filter(|r| r.method == "DESCRIBE" && r.status == 200 && r.forwarded_for.is_some())
            .count()
    };
    let asked = forwarded(&origin);
    plays_whole_clip(&url, 4.0);
    assert_eq!(origin.play_count("/svod"), 1, "{:#?}", origin.requests());
    assert_eq!(
        forwarded(&origin),
        asked + 1,
        "the hit viewer's accounting DESCRIBE: {:#?}",
        origin.requests()
    );
    assert_eq!(results(&edge, 2, "/acct"), ["MISS", "HIT"]);
}

/// A raw-client viewer of `url` that sets up `tracks` over TCP interleaved (track `i`
/// on channels `2i`, `2i + 1`) and PLAYs with `play_headers`: the PLAY's answer and
/// the frames of the next `read_for`.
fn raw_viewer(
    port: u16,
    url: &str,
    tracks: &[usize],
    play_headers: &[(&str, &str)],
    read_for: Duration,
) -> (mediagate_rtsp::Response, Vec<common::Frame>) {
    let mut c = RawRtsp::connect(port);
    let d = c.req("DESCRIBE", url, &[]);
    assert_eq!(d.status.as_u16(), 200, "{d:?}");
    let mut session: Option<String> = None;
    for &t in tracks {
        let transport = format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * t, 2 * t + 1);
        let mut headers = vec![("Transport", transport.as_str())];
        if let Some(s) = &session {
            headers.push(("Session", s.as_str()));
        }
        let r = c.req("SETUP", &format!("{url}/trackID={t}"), &headers);
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
        let s = r.headers.get("Session").unwrap().split(';').next().unwrap();
        session = Some(s.to_owned());
    }
    let session = session.expect("a track set up");
    let mut headers = vec![("Session", session.as_str())];
    headers.extend_from_slice(play_headers);
    let play = c.req("PLAY", url, &headers);
    if play.status.as_u16() != 200 {
        return (play, Vec::new());
    }
    let frames = c.read_frames_for(read_for);
    let _ = c.req("TEARDOWN", url, &[("Session", session.as_str())]);
    (play, frames)
}

/// `GET /api/v1/cache` from the admin API: (url, tracks) of every object.
fn cached_objects(api: u16) -> Vec<(String, Vec<u64>)> {
    let mut out: Vec<(String, Vec<u64>)> = common::admin::cache_objects(api)
        .iter()
        .map(|o| {
            let tracks = o["tracks"]
                .as_array()
                .expect("tracks")
                .iter()
                .map(|t| t.as_u64().unwrap())
                .collect();
            (o["url"].as_str().unwrap().to_owned(), tracks)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn each_track_selection_is_its_own_object_and_a_video_only_viewer_never_caches_audio() {
    let origin = Origin::start(OriginOptions {
        vod_seconds: 4,
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let scratch = Scratch::new("variants");
    let edge = EdgeProc::start(&format!(
        "{}[[edge.route]]\nadvertised = \"/clip\"\norigin = \"{}\"\n",
        cache_section(&scratch.path("cache"), ""),
        origin.url("/vod"),
    ));
    let api = edge.admin_port();
    let url = edge.url("/clip");
    let whole = Duration::from_secs(6);

    // Viewer A: the video track only, the whole clip.
    let (play, frames) = raw_viewer(edge.port, &url, &[0], &[], whole);
    assert_eq!(play.status.as_u16(), 200, "{play:?}");
    assert!(frames.iter().filter(|f| f.channel == 0).count() > 40);
    assert!(frames.iter().all(|f| f.channel < 2), "video only");
    // Viewer B: both tracks.
    fills_whole_clip(&edge, &url, 4.0);
    assert_eq!(origin.play_count("/vod"), 2, "two variants, two fills");
    let vod = origin.url("/vod");
    assert_eq!(
        cached_objects(api),
        [(vod.clone(), vec![0]), (vod.clone(), vec![0, 1])],
        "A's object holds no audio; B's is its own"
    );
    // Viewer C: video only again, a hit of A's object.
    let (play, frames) = raw_viewer(edge.port, &url, &[0], &[], Duration::from_secs(2));
    assert_eq!(play.status.as_u16(), 200, "{play:?}");
    assert!(frames.iter().filter(|f| f.channel == 0).count() > 10);
    assert!(frames.iter().all(|f| f.channel < 2), "video only");
    assert_eq!(origin.play_count("/vod"), 2, "{:#?}", origin.requests());
    assert_eq!(results(&edge, 3, "/clip"), ["MISS", "MISS", "HIT"]);
    assert_eq!(cached_objects(api).len(), 2);
}

#[test]
fn viewer_cache_control_no_cache_revalidates_and_only_if_cached_never_reaches_the_origin() {
    let origin = Origin::start(OriginOptions {
        vod_seconds: 4,
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let scratch = Scratch::new("viewer-cc");
    let edge = EdgeProc::start(&format!(
        "{}[[edge.route]]\nadvertised = \"/clip\"\norigin = \"{}\"\n\
         [[edge.route]]\nadvertised = \"/other\"\norigin = \"{}\"\n",
        cache_section(&scratch.path("cache"), ""),
        origin.url("/vod"),
        origin.url("/vod"),
    ));
    let url = edge.url("/clip");
    // Not cached yet: only-if-cached is a 504 and the origin plays nothing.
    let (play, _) = raw_viewer(
        edge.port,
        &url,
        &[0, 1],
        &[("Cache-Control", "only-if-cached")],
        Duration::ZERO,
    );
    assert_eq!(play.status.as_u16(), 504, "{play:?}");
    assert_eq!(origin.play_count("/vod"), 0);

    fills_whole_clip(&edge, &url, 4.0);
    assert_eq!(origin.play_count("/vod"), 1);
    // Fresh (default_ttl 1h): a plain viewer is a HIT with no question to the origin.
    let described = origin.request_count("DESCRIBE", "/vod", 200);
    let (play, frames) = raw_viewer(edge.port, &url, &[0, 1], &[], Duration::from_secs(2));
    assert_eq!(play.status.as_u16(), 200, "{play:?}");
    assert!(frames.len() > 20);
    assert_eq!(origin.request_count("DESCRIBE", "/vod", 200), described);
    // no-cache: a conditional DESCRIBE first; unchanged, so served from disk.
    let (play, frames) = raw_viewer(
        edge.port,
        &url,
        &[0, 1],
        &[("Cache-Control", "no-cache")],
        Duration::from_secs(2),
    );
    assert_eq!(play.status.as_u16(), 200, "{play:?}");
    assert!(frames.len() > 20);
    assert_eq!(
        origin.request_count("DESCRIBE", "/vod", 200),
        described + 1,
        "one revalidation: {:#?}",
        origin.requests()
    );
    // only-if-cached on what is cached: served, without asking the origin.
    let (play, frames) = raw_viewer(
        edge.port,
        &url,
        &[0, 1],
        &[("Cache-Control", "only-if-cached")],
        Duration::from_secs(2),
    );
    assert_eq!(play.status.as_u16(), 200, "{play:?}");
    assert!(frames.len() > 20);
    assert_eq!(origin.request_count("DESCRIBE", "/vod", 200), described + 1);
    assert_eq!(origin.play_count("/vod"), 1, "{:#?}", origin.requests());
    // The session refused with 504 got no media: PASS, as a session that never played.
    assert_eq!(
        results(&edge, 5, "/clip"),
        ["PASS", "MISS", "HIT", "REFRESH", "HIT"]
    );
}

/// The `a=range` of a DESCRIBE answer's SDP to whole seconds (gst-rtsp-server writes
/// `npt=now-3.0xx` for a 3 s file).
fn sdp_range(r: &mediagate_rtsp::Response) -> String {
    let text = String::from_utf8_lossy(&r.body);
    let range = text
        .lines()
        .find_map(|l| l.strip_prefix("a=range:"))
        .unwrap_or("")
        .trim();
    match range.split_once('-') {
        Some((from, to)) => format!("{from}-{}", to.split('.').next().unwrap_or("")),
        None => range.to_owned(),
    }
}

/// Every DESCRIBE the origin was sent.
fn origin_describes(o: &Origin) -> usize {
    o.requests()
        .iter()
        .filter(|r| r.method == "DESCRIBE")
        .count()
}

/// Issue 13 item 4 at DESCRIBE and SETUP: a viewer's `only-if-cached` is answered
/// from the cache or with 504, never by asking the origin; `no-cache` makes the edge
/// ask the origin before answering, even while a hub that described the clip earlier
/// lingers.
#[test]
fn viewer_cache_control_is_honoured_at_describe_and_setup() {
    let scratch = Scratch::new("describe-cc");
    // Fresh for an hour (default_ttl); the hub lingers well past each step.
    let (served, origin, edge) = clip_behind_edge(&scratch, "", "");
    let url = edge.url("/clip");
    let only = [("Cache-Control", "only-if-cached")];

    // Nothing cached: 504 at DESCRIBE and at a SETUP without DESCRIBE, and the
    // origin hears nothing.
    let mut c = RawRtsp::connect(edge.port);
    let d = c.req("DESCRIBE", &url, &only);
    assert_eq!(d.status.as_u16(), 504, "{d:?}");
    let s = c.req(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[
            ("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1"),
            ("Cache-Control", "only-if-cached"),
        ],
    );
    assert_eq!(s.status.as_u16(), 504, "{s:?}");
    drop(c);
    assert!(origin.requests().is_empty(), "{:#?}", origin.requests());

    fills_whole_clip(&edge, &url, 6.0);
    let asked = origin_describes(&origin);

    // Cached and fresh: described from what the edge holds (its lingering hub).
    let mut c = RawRtsp::connect(edge.port);
    let d = c.req("DESCRIBE", &url, &only);
    assert_eq!(d.status.as_u16(), 200, "{d:?}");
    assert_eq!(sdp_range(&d), "npt=now-6", "{d:?}");
    // Not fresh enough for this viewer: it wants two hours more, the copy has one.
    let d = c.req(
        "DESCRIBE",
        &url,
        &[("Cache-Control", "only-if-cached, min-fresh=7200")],
    );
    assert_eq!(d.status.as_u16(), 504, "{d:?}");
    drop(c);
    assert_eq!(origin_describes(&origin), asked, "{:#?}", origin.requests());

    // The origin's file is replaced. A plain DESCRIBE may be answered from the fresh
    // copy; `no-cache` asks the origin first and describes its current clip.
    let next = scratch.path("next.mp4");
    make_clip(&next, 3, 880);
    std::fs::rename(&next, &served).unwrap();
    let mut c = RawRtsp::connect(edge.port);
    let d = c.req("DESCRIBE", &url, &[]);
    assert_eq!(sdp_range(&d), "npt=now-6", "fresh for an hour: {d:?}");
    assert_eq!(origin_describes(&origin), asked, "{:#?}", origin.requests());
    let d = c.req("DESCRIBE", &url, &[("Cache-Control", "no-cache")]);
    assert_eq!(d.status.as_u16(), 200, "{d:?}");
    assert_eq!(sdp_range(&d), "npt=now-3", "{d:?}");
    assert_eq!(
        origin_describes(&origin),
        asked + 1,
        "{:#?}",
        origin.requests()
    );
    drop(c);
    // A viewer of the new clip: the stored 6 s copy is not what it was described,
    // so it is fetched again.
    plays_whole_clip(&url, 3.0);
    assert_eq!(origin.play_count("/vod"), 2, "{:#?}", origin.requests());
}

/// An `only-if-cached` viewer of held content, with no hub running (the last one
/// retired after its 2 s linger), is described from the stored SDP and served from
/// disk: the origin hears nothing from DESCRIBE to TEARDOWN.
#[test]
fn only_if_cached_is_described_and_served_without_the_origin() {
    let origin = Origin::start(OriginOptions {
        vod_seconds: 4,
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let scratch = Scratch::new("only-if-cached");
    let edge = EdgeProc::start(&format!(
        "{}[[edge.route]]\nadvertised = \"/clip\"\norigin = \"{}\"\n",
        cache_section(&scratch.path("cache"), ""),
        origin.url("/vod"),
    ));
    let url = edge.url("/clip");
    fills_whole_clip(&edge, &url, 4.0);
    std::thread::sleep(Duration::from_secs(4));
    // Counted once the origin has no connection left: the edge tears the first
    // viewer's origin session down (a TEARDOWN, then the close) once that viewer has
    // gone, which may reach the origin after ffmpeg exits, and later than the pause
    // on a loaded machine.
    origin
        .wait_no_connections(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}: {}", edge.peer.diagnostics()));
    let asked = origin.requests().len();

    let mut c = RawRtsp::connect(edge.port);
    let only = ("Cache-Control", "only-if-cached");
    let d = c.req("DESCRIBE", &url, &[only]);
    assert_eq!(d.status.as_u16(), 200, "{d:?}");
    // The stored SDP: the one the fill's own DESCRIBE got (gst-rtsp-server writes
    // `npt=0-` once the media was prepared, `npt=now-` before).
    let range = sdp_range(&d);
    assert!(range.starts_with("npt=") && range.ends_with("-4"), "{d:?}");
    let mut session: Option<String> = None;
    for t in 0..2 {
        let transport = format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * t, 2 * t + 1);
        let mut headers = vec![("Transport", transport.as_str()), only];
        if let Some(s) = &session {
            headers.push(("Session", s.as_str()));
        }
        let r = c.req("SETUP", &format!("{url}/trackID={t}"), &headers);
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
        session = Some(
            r.headers
                .get("Session")
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    let session = session.unwrap();
    let play = c.req("PLAY", &url, &[("Session", session.as_str()), only]);
    assert_eq!(play.status.as_u16(), 200, "{play:?}");
    let frames = c.read_frames_for(Duration::from_secs(2));
    assert!(frames.iter().filter(|f| f.channel == 0).count() > 20);
    let _ = c.req("TEARDOWN", &url, &[("Session", session.as_str())]);
    assert_eq!(
        origin.requests().len(),
        asked,
        "{:#?}",
        &origin.requests()[asked..]
    );
    assert_eq!(results(&edge, 2, "/clip"), ["MISS", "HIT"]);
}

/// An H.264 + AAC MP4 of `seconds` with a keyframe a second, made by ffmpeg.
/// A 6 s clip in `scratch`'s `served.mp4` (a test may replace the file), served by an
/// origin at `/vod`, behind an edge whose hub lingers 60 s and whose route `/clip`
/// (with `route_extra`) has a cache with `cache_extra`.
fn clip_behind_edge(
    scratch: &Scratch,
    cache_extra: &str,
    route_extra: &str,
) -> (PathBuf, Origin, EdgeProc) {
    let served = scratch.path("served.mp4");
    make_clip(&served, 6, 440);
    let origin = Origin::start(OriginOptions {
        vod_file: Some(served.clone()),
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let edge = EdgeProc::start(&format!(
        "linger = \"60s\"\n{}[[edge.route]]\nadvertised = \"/clip\"\norigin = \"{}\"\n{route_extra}",
        cache_section(&scratch.path("cache"), cache_extra),
        origin.url("/vod"),
    ));
    (served, origin, edge)
}

fn make_clip(path: &Path, seconds: u32, tone_hz: u32) {
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc=size=320x240:rate=15")
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency={tone_hz}:sample_rate=48000"))
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "15"])
        .args(["-profile:v", "baseline", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "64k", "-ac", "2"])
        .arg(path)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg made no clip: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_replaced_origin_file_is_fetched_again_once_stale_and_an_unchanged_one_is_refreshed() {
    replaced_origin_file("replaced", "");
}

/// Issue 12 item 1: with accounting, the origin's answer to each viewer's accounting
/// DESCRIBE is the freshness check: the edge asks nothing of its own to revalidate.
#[test]
fn with_accounting_the_viewers_own_describe_revalidates_the_cached_copy() {
    replaced_origin_file("replaced-acct", "accounting = \"authorize\"\n");
}

fn replaced_origin_file(name: &str, route_extra: &str) {
    let scratch = Scratch::new(name);
    // gst-rtsp-server sends no freshness information: default_ttl decides, and at 0s
    // every viewer's PLAY revalidates.
    let (served, origin, edge) = clip_behind_edge(&scratch, "default_ttl = \"0s\"\n", route_extra);
    // DESCRIBEs the edge sent for itself on connections that set nothing up (its
    // hub's, its revalidations): not a viewer's (those carry the viewer's address),
    // not a fill's origin session.
    let own_describes = |o: &Origin| {
        let requests = o.requests();
        let sessions: std::collections::HashSet<u64> = requests
            .iter()
            .filter(|r| r.method == "SETUP")
            .map(|r| r.client)
            .collect();
        requests
            .iter()
            .filter(|r| {
                r.method == "DESCRIBE" && r.forwarded_for.is_none() && !sessions.contains(&r.client)
            })
            .count()
    };
    let url = edge.url("/clip");
    fills_whole_clip(&edge, &url, 6.0);
    assert_eq!(origin.play_count("/vod"), 1);
    let own_after_fill = own_describes(&origin);
    // Unchanged: revalidated and served from disk.
    plays_whole_clip(&url, 6.0);
    assert_eq!(origin.play_count("/vod"), 1, "{:#?}", origin.requests());

    // The origin's file is replaced by another clip (another length); the server
    // opens the file anew for each client.
    let next = scratch.path("next.mp4");
    make_clip(&next, 3, 880);
    std::fs::rename(&next, &served).unwrap();
    // The hub that described the 6 s clip still lingers (60 s): its description is
    // not handed on; the next viewer is described the new clip.
    let mut c = RawRtsp::connect(edge.port);
    let d = c.req("DESCRIBE", &url, &[]);
    assert_eq!(d.status.as_u16(), 200, "{d:?}");
    assert_eq!(sdp_range(&d), "npt=now-3", "{d:?}");
    drop(c);
    fills_whole_clip(&edge, &url, 3.0);
    assert_eq!(origin.play_count("/vod"), 2, "the new version was fetched");
    // The new version is what the cache holds now.
    plays_whole_clip(&url, 3.0);
    assert_eq!(origin.play_count("/vod"), 2, "{:#?}", origin.requests());
    assert_eq!(
        results(&edge, 4, "/clip"),
        ["MISS", "REFRESH", "MISS", "REFRESH"]
    );
    let own = own_describes(&origin) - own_after_fill;
    if route_extra.is_empty() {
        assert!(own >= 3, "three revalidations of the edge's own: {own}");
    } else {
        assert_eq!(
            own,
            0,
            "the accounting DESCRIBEs revalidated: {:#?}",
            origin.requests()
        );
    }
}

#[test]
fn route_switches_cache_off_and_cache_max_object_keep_content_out_while_viewers_play_on() {
    let origin = Origin::start(OriginOptions {
        vod_seconds: 4,
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let scratch = Scratch::new("switches");
    // About 170 kB of clip: the 32 KiB limit is passed early in the fill.
    let edge = EdgeProc::start(&format!(
        "{}[[edge.route]]\nadvertised = \"/big\"\norigin = \"{}\"\ncache_max_object = \"32KiB\"\n\
         [[edge.route]]\nadvertised = \"/off\"\norigin = \"{}\"\ncache = false\n",
        cache_section(&scratch.path("cache"), ""),
        origin.url("/vod"),
        origin.url("/vod"),
    ));
    let api = edge.admin_port();
    for round in 1..=2 {
        plays_whole_clip(&edge.url("/big"), 4.0);
        plays_whole_clip(&edge.url("/off"), 4.0);
        assert_eq!(
            origin.play_count("/vod"),
            2 * round,
            "{:#?}",
            origin.requests()
        );
    }
    // The object that outgrew its limit was dropped once its viewer was done.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cached_objects(api).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", cached_objects(api));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(results(&edge, 2, "/big"), ["MISS", "MISS"]);
    assert_eq!(results(&edge, 2, "/off"), ["PASS", "PASS"]);
}

/// Issue 13: on a route without a cache each viewer plays from an origin session of
/// its own, so its DESCRIBE is the origin's answer of now: a hub that lingers from an
/// earlier viewer does not hand on its description, even to a viewer that sends no
/// `Cache-Control` (the origin's file may have been replaced meanwhile).
#[test]
fn without_a_cache_a_lingering_hub_never_answers_a_describe_for_the_origin() {
    let scratch = Scratch::new("nocache-linger");
    let (served, origin, edge) = clip_behind_edge(&scratch, "", "cache = false\n");
    let url = edge.url("/clip");
    let mut c = RawRtsp::connect(edge.port);
    let d = c.req("DESCRIBE", &url, &[]);
    assert_eq!(sdp_range(&d), "npt=now-6", "{d:?}");
    drop(c);
    let before = origin_describes(&origin);
    // The origin's file is replaced by a 3 s clip while the hub lingers (60 s).
    let next = scratch.path("next.mp4");
    make_clip(&next, 3, 880);
    std::fs::rename(&next, &served).unwrap();
    let mut c = RawRtsp::connect(edge.port);
    let d = c.req("DESCRIBE", &url, &[]);
    assert_eq!(d.status.as_u16(), 200, "{d:?}");
    assert_eq!(
        sdp_range(&d),
        "npt=now-3",
        "the origin's description of now: {d:?}"
    );
    drop(c);
    assert_eq!(
        origin_describes(&origin) - before,
        1,
        "one origin DESCRIBE for the viewer: {:#?}",
        origin.requests()
    );
    plays_whole_clip(&url, 3.0);
}

/// Issue 13: a viewer of a stale cached clip costs the origin one DESCRIBE: the one
/// that describes the clip to it (a hub started, or started anew, for it) also
/// revalidates the cached copy at its PLAY, as an accounting DESCRIBE does.
#[test]
fn a_stale_hit_costs_the_origin_one_describe() {
    let origin = Origin::start(OriginOptions {
        vod_seconds: 3,
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let scratch = Scratch::new("stale-one-describe");
    // default_ttl 0s: every hit is stale and must be revalidated.
    let edge = EdgeProc::start(&format!(
        "{}[[edge.route]]\nadvertised = \"/clip\"\norigin = \"{}\"\n",
        cache_section(&scratch.path("cache"), "default_ttl = \"0s\"\n"),
        origin.url("/vod"),
    ));
    let url = edge.url("/clip");
    fills_whole_clip(&edge, &url, 3.0);
    for viewer in 2..=3 {
        let before = origin_describes(&origin);
        plays_whole_clip(&url, 3.0);
        assert_eq!(
            origin_describes(&origin) - before,
            1,
            "viewer {viewer}: {:#?}",
            origin.requests()
        );
    }
    assert_eq!(origin.play_count("/vod"), 1, "{:#?}", origin.requests());
    assert_eq!(results(&edge, 3, "/clip"), ["MISS", "REFRESH", "REFRESH"]);
}
