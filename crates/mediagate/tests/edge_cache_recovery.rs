//! The cache with the real edge under the two things a disk cache must survive
//! (issue 13 tests): the edge killed (SIGKILL) in the middle of a fill, and a cache
//! too small for what viewers watch. gst-rtsp-server on-demand origins, ffmpeg viewers
//! and the real `mediagate` binary.
//!
//! After the kill, the restarted edge lists the object as not complete with what it
//! held; a seek past the held part goes to the origin (a MISS, the origin sees a
//! PLAY) as one stream with the hit before it; a viewer from 0 gets the held part
//! from the cache and the rest from the origin (docs/edge.md, "End of a held
//! range"), the whole clip decoded without an error, and the object is then complete. Under a small limit
//! the cache stays under it once fills end, evictions are counted, and a pinned
//! object is never evicted.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::admin::{cache_cli, cache_objects, get_json, metric, wait_cache};
use common::{ffmpeg_viewer, EdgeProc};
use mediagate_edge::record::ViewerSessionRecord;
use mediagate_ops::store::SqliteStore;
use mediagate_testkit::ports::free_tcp_port;
use mediagate_testkit::{ffmpeg_read, Origin, OriginOptions, ReadOptions, Transport};

/// A cache directory of this test's own (it outlives each edge), removed when dropped.
struct CacheDir(PathBuf);

impl CacheDir {
    fn new(name: &str) -> CacheDir {
        let dir =
            std::env::temp_dir().join(format!("mediagate-recovery-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        CacheDir(dir)
    }
}

impl Drop for CacheDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An edge on `cache` (limit `size`) with `routes` and an admin API: (edge, API port).
fn edge(cache: &CacheDir, size: &str, routes: &[(&str, String)]) -> (EdgeProc, u16) {
    let api = free_tcp_port().unwrap();
    let mut config = format!(
        "[edge.cache]\ndir = {:?}\nsize = \"{size}\"\n[admin]\nlisten = [\"127.0.0.1:{api}\"]\n",
        cache.0.display().to_string()
    );
    for (advertised, origin) in routes {
        config.push_str(&format!(
            "[[edge.route]]\nadvertised = \"{advertised}\"\norigin = \"{origin}\"\n"
        ));
    }
    let edge = EdgeProc::start(&config);
    get_json(api, "/api/v1/cache");
    (edge, api)
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

#[test]
fn a_fill_killed_midway_keeps_what_it_held_and_serves_only_that() {
    let origin = Origin::start(OriginOptions {
        vod_seconds: 40,
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let cache = CacheDir::new("kill");
    let routes = [("/clip", origin.url("/vod"))];
    let (edge1, _) = edge(&cache, "1GiB", &routes);

    // An ffmpeg viewer fills the cache for 15 s of real time; then the edge dies.
    let viewer = ffmpeg_viewer(&edge1.url("/clip"), "fill-then-kill", 60);
    origin
        .wait_play_count("/vod", 1, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}: {}", edge1.peer.diagnostics()));
    std::thread::sleep(Duration::from_secs(15));
    edge1.peer.kill();
    viewer.kill();
    drop(edge1);

    // Restarted on the same directory: the object is there, not complete, holding the
    // start of the clip (what reached the file before the kill and verifies).
    let (edge2, api) = edge(&cache, "1GiB", &routes);
    let objects = cache_objects(api);
    assert_eq!(
        objects.len(),
        1,
        "{objects:?}\n{}",
        edge2.peer.diagnostics()
    );
    let o = &objects[0];
    assert_eq!(o["complete"], false, "{o}");
    let ranges = o["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "{o}");
    let (start, held) = (
        ranges[0][0].as_u64().unwrap(),
        ranges[0][1].as_u64().unwrap(),
    );
    assert!(start < 500, "{o}");
    assert!(
        (3_000..30_000).contains(&held),
        "held up to {held} ms after 15 s of filling: {o}"
    );
    let (ok, list, _) = cache_cli(api, &["list"]);
    assert!(ok && list.contains("  partial 0.0s-"), "{list}");
    let plays = origin.play_count("/vod");

    let held_s = held as f64 / 1000.0;

    // Past the held part: ffmpeg's `-ss` PLAYs from 0 first (a hit here), then PAUSEs
    // and PLAYs from the seek point, which the cache does not hold: the origin serves
    // it (and it is recorded), numbered as one stream with the hit's packets (same
    // SSRC, sequence numbers and timestamps going on, RTP-Info saying so). Bounded by
    // `-t 3`, ffmpeg keeps 3 s of video (45 frames at 15 fps): an edge that passed the origin's own
    // numbering on got one video frame, placed seconds away from the audio.
    let from = held_s + 5.0;
    let mut opts = ReadOptions::seconds(Transport::Tcp, 3.0).seek(from);
    opts.input_args = vec!["-noaccurate_seek".into()];
    let r = ffmpeg_read(&edge2.url("/clip"), &opts).expect("ffmpeg runs");
    let got = r.video_seconds.unwrap_or(0.0);
    assert!(
        (2.5..=3.5).contains(&got) && r.video_frames >= 40,
        "viewer from {from} s for 3 s decoded {got} s of video: {r:#?}"
    );
    assert!(r.errors.is_empty(), "decoding errors: {:?}", r.errors);
    assert_eq!(
        origin.play_count("/vod"),
        plays + 1,
        "a seek past the held part goes to the origin"
    );

    // From 0: a hit of the held part that goes on from the origin where the held
    // part ends (docs/edge.md, "End of a held range"): the whole clip, one stream,
    // nothing damaged; and that origin session's run meets the held range, so the
    // object is complete afterwards.
    let r = ffmpeg_read(
        &edge2.url("/clip"),
        &ReadOptions::until_end(Transport::Tcp).timeout(Duration::from_secs(70)),
    )
    .expect("ffmpeg runs");
    assert!(r.success, "viewer from 0: {r:#?}");
    assert!(r.errors.is_empty(), "decoding errors: {:?}", r.errors);
    let got = r.video_seconds.unwrap_or(0.0);
    assert!(
        (got - 40.0).abs() < 1.5,
        "the viewer from 0 played {got} s of the 40 s clip ({held_s} s held): {r:#?}"
    );
    assert_eq!(
        origin.play_count("/vod"),
        plays + 2,
        "the origin is asked for what is not held, once"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let objects = cache_objects(api);
        if objects[0]["complete"] == true {
            assert_eq!(
                objects[0]["ranges"].as_array().unwrap().len(),
                1,
                "{objects:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not complete: {objects:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let rows = records(&edge2, 2);
    let results: Vec<&str> = rows.iter().map(|r| r.cache.as_str()).collect();
    assert_eq!(results, ["MISS", "MISS"], "both recorded a run: {rows:#?}");
}

#[test]
fn a_small_cache_stays_under_its_limit_and_keeps_its_pinned_object() {
    let opts = || OriginOptions {
        vod_seconds: 4,
        live_mounts: Vec::new(),
        auth_mount: None,
        ..OriginOptions::default()
    };
    let origins: Vec<Origin> = (0..3)
        .map(|_| Origin::start(opts()).expect("origin starts"))
        .collect();
    let routes: Vec<(&str, String)> = ["/a", "/b", "/c"]
        .into_iter()
        .zip(origins.iter().map(|o| o.url("/vod")))
        .collect();
    let cache = CacheDir::new("evict");

    // Clip A, filled by a viewer with room to spare, tells the size of one clip.
    let (edge1, api) = edge(&cache, "1GiB", &routes);
    let r = ffmpeg_read(&edge1.url("/a"), &ReadOptions::until_end(Transport::Tcp))
        .expect("ffmpeg runs");
    assert!(r.success, "{r:#?}");
    // The fill ends on its writer thread just after the viewer leaves: until then the
    // object is listed as not complete.
    let objects = wait_cache(api, "clip A complete", |o| {
        o.len() != 1 || o[0]["complete"] == true
    });
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0]["complete"], true, "{objects:?}");
    let one = objects[0]["size_bytes"].as_u64().unwrap();
    // Pinned by the URL the viewer used.
    let (ok, out, err) = cache_cli(api, &["pin", &edge1.url("/a")]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("pinned {:?}", routes[0].1)),
        "{out}"
    );
    drop(edge1);

    // Room for about two clips; B and C are watched at once.
    let limit = one * 5 / 2;
    let (edge2, api) = edge(&cache, &format!("{limit}B"), &routes);
    let watch = |path: &'static str| {
        let url = edge2.url(path);
        std::thread::spawn(move || {
            ffmpeg_read(&url, &ReadOptions::until_end(Transport::Tcp)).expect("ffmpeg runs")
        })
    };
    let (b, c) = (watch("/b"), watch("/c"));
    for r in [b.join().unwrap(), c.join().unwrap()] {
        assert!(r.success && r.errors.is_empty(), "{r:#?}");
    }
    // The fills end on their writer threads just after the viewers leave.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let used = metric(api, "mediagate_edge_cache_bytes") as u64;
        let evictions = metric(api, "mediagate_edge_cache_evictions_total");
        if (used <= limit && evictions >= 1.0) || Instant::now() > deadline {
            assert!(used <= limit, "{used} bytes over the {limit} limit");
            assert!(evictions >= 1.0, "nothing was evicted");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let objects = cache_objects(api);
    let total: u64 = objects
        .iter()
        .map(|o| o["size_bytes"].as_u64().unwrap())
        .sum();
    assert!(total <= limit, "{total} > {limit}: {objects:?}");
    let pinned: Vec<_> = objects.iter().filter(|o| o["pinned"] == true).collect();
    assert_eq!(pinned.len(), 1, "{objects:?}");
    assert_eq!(
        pinned[0]["url"],
        routes[0].1.as_str(),
        "A stays: {objects:?}"
    );
    assert_eq!(pinned[0]["complete"], true, "{objects:?}");
    assert_eq!(objects.len(), 2, "one of B and C was evicted: {objects:?}");

    // A is still served from the cache: its origin sees no second PLAY.
    let r = ffmpeg_read(&edge2.url("/a"), &ReadOptions::until_end(Transport::Tcp))
        .expect("ffmpeg runs");
    assert!(r.success, "{r:#?}");
    assert_eq!(origins[0].play_count("/vod"), 1);
    // Unpinned and purged by the viewer's URL too.
    let (ok, out, err) = cache_cli(api, &["unpin", &edge2.url("/a")]);
    assert!(ok && out.starts_with("unpinned "), "{out}{err}");
    let (ok, out, err) = cache_cli(api, &["purge", &edge2.url("/a")]);
    assert!(ok && out.starts_with("purged "), "{out}{err}");
    assert_eq!(cache_objects(api).len(), 1);
}
