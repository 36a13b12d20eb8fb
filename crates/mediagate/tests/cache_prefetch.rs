//! `mediagate cache prefetch` with real peers (issue 13 item 7): a gst-rtsp-server
//! on-demand origin and the real `mediagate` binary. A prefetch of the URL a viewer
//! uses fills the object with no viewer, completes, and a later ffmpeg viewer is a hit
//! while the origin sends it nothing (the origin's own log counts PLAYs); a
//! cancelled prefetch leaves a partial object that is listed as not complete.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::admin::{cache_cli, cache_objects, get_json, http};
use common::EdgeProc;
use mediagate_edge::record::ViewerSessionRecord;
use mediagate_ops::store::SqliteStore;
use mediagate_testkit::ports::free_tcp_port;
use mediagate_testkit::process::{Peer, StdoutHandling};
use mediagate_testkit::{ffmpeg_read, Origin, OriginOptions, ReadOptions, Transport};

/// A cache directory of this test's own, removed when dropped.
struct CacheDir(PathBuf);

impl CacheDir {
    fn new(name: &str) -> CacheDir {
        let dir =
            std::env::temp_dir().join(format!("mediagate-prefetch-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        CacheDir(dir)
    }
}

impl Drop for CacheDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An edge with the cache in `cache`, `/clip` routed to the origin's `/vod`, and its
/// admin API; returns it and the API's port.
fn edge(origin: &Origin, cache: &CacheDir) -> (EdgeProc, u16) {
    let api = free_tcp_port().unwrap();
    let config = format!(
        "[edge.cache]\ndir = {:?}\n[[edge.route]]\nadvertised = \"/clip\"\norigin = \"{}\"\n[admin]\nlisten = [\"127.0.0.1:{api}\"]\n",
        cache.0.display().to_string(),
        origin.url("/vod")
    );
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
fn a_prefetched_clip_is_complete_and_its_viewer_is_a_hit() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let seconds = f64::from(origin.options().vod_seconds);
    let cache = CacheDir::new("hit");
    let (edge, api) = edge(&origin, &cache);

    // The URL a viewer uses; the CLI's output is not a terminal here: plain lines.
    let started = Instant::now();
    let (ok, out, err) = cache_cli(api, &["prefetch", &edge.url("/clip")]);
    let took = started.elapsed();
    assert!(
        ok,
        "prefetch failed: {err}\n{out}\n{}",
        edge.peer.diagnostics()
    );
    let origin_url = origin.url("/vod");
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("complete {origin_url:?}  tracks 0,1  ")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("%  ") && l.contains("Mbit/s")),
        "progress lines: {out}"
    );
    assert!(
        !out.contains('\r'),
        "no bar redrawn off a terminal: {out:?}"
    );
    // Speed is used only when the timestamps stay media time; gst-rtsp-server scales
    // them, so its first PLAY (with Speed) is given up unwritten and a second one
    // fills in real time. An origin that honours Speed fills in one fast PLAY.
    let plays = origin.play_count("/vod");
    let listed = get_json(api, "/api/v1/cache/prefetch");
    let job = &listed.as_array().expect("a list")[0];
    assert_eq!(job["state"], "complete", "{job}");
    assert_eq!(job["percent"], 100.0, "{job}");
    assert!(job["bytes"].as_u64().unwrap() > 100_000, "{job}");
    // gst-rtsp-server answers Speed but compresses the RTP timestamps: the probe must
    // see that and refuse the scaled delivery, then fill in real time.
    assert!(
        !job["delivery"]
            .as_str()
            .is_some_and(|d| d.starts_with("Speed")),
        "a Speed delivery with scaled timestamps was taken (after {took:?}): {job}"
    );
    assert_eq!(plays, 2, "a probe with Speed, then real time: {job}");
    assert!(out.starts_with("  0%"), "{out}");

    let objects = cache_objects(api);
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0]["url"], origin_url.as_str());
    assert_eq!(objects[0]["complete"], true, "{objects:?}");
    let (ok, list, _) = cache_cli(api, &["list"]);
    assert!(ok);
    assert!(
        list.starts_with(&format!("{origin_url:?}  tracks 0,1  complete  ")),
        "{list}"
    );

    // Prefetching it again fetches nothing: the same description is held complete.
    let (ok, out, err) = cache_cli(api, &["prefetch", &edge.url("/clip")]);
    assert!(
        ok && out.starts_with("complete "),
        "{out}{err}\n{}",
        edge.peer.diagnostics()
    );
    assert_eq!(origin.play_count("/vod"), plays);

    // A viewer of the whole clip is a hit; the origin sends it no media.
    let r = ffmpeg_read(&edge.url("/clip"), &ReadOptions::until_end(Transport::Tcp))
        .expect("ffmpeg runs");
    assert!(r.success, "viewer: {r:#?}");
    let got = r.video_seconds.unwrap_or(0.0);
    assert!(
        (got - seconds).abs() < 1.0,
        "the viewer saw {got} s: {r:#?}"
    );
    assert!(r.errors.is_empty(), "decoding errors: {:?}", r.errors);
    assert_eq!(
        origin.play_count("/vod"),
        plays,
        "a hit opens no origin media session: {:#?}",
        origin.requests()
    );
    let rows = records(&edge, 1);
    assert_eq!(
        rows.iter().map(|r| r.cache.as_str()).collect::<Vec<_>>(),
        ["HIT"],
        "{rows:#?}"
    );
}

#[test]
fn a_cancelled_prefetch_leaves_a_partial_object() {
    let origin = Origin::start(OriginOptions {
        vod_seconds: 30,
        ..OriginOptions::default()
    })
    .expect("origin starts");
    let cache = CacheDir::new("cancel");
    let (edge, api) = edge(&origin, &cache);
    let origin_url = origin.url("/vod");

    // Started on a terminal (a pty from `script`): the CLI draws its bar in place and
    // stays until the prefetch ends. Real time, so there is time to cancel.
    let mut cmd = Command::new("script");
    cmd.args(["-qefc"])
        .arg(format!(
            "{} cache prefetch --speed 1 --admin http://127.0.0.1:{api} {}",
            env!("CARGO_BIN_EXE_mediagate"),
            edge.url("/clip")
        ))
        .arg("/dev/null");
    let on_terminal = Peer::spawn_with(
        "mediagate cache prefetch (pty)",
        cmd,
        StdoutHandling {
            keep_all: true,
            ..StdoutHandling::default()
        },
    )
    .expect("script starts");

    let deadline = Instant::now() + Duration::from_secs(10);
    while get_json(api, "/api/v1/cache/prefetch")
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(
            Instant::now() < deadline,
            "the prefetch did not start: {}",
            on_terminal.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A second prefetch of the same object is refused while the first runs.
    let (status, body) = http(
        api,
        "POST",
        "/api/v1/cache/prefetch",
        &format!("{{\"url\": {:?}}}", edge.url("/clip")),
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("being prefetched already"), "{body}");

    // Wait for a few seconds to be held.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = get_json(api, "/api/v1/cache/prefetch");
        let job = &list.as_array().unwrap()[0];
        assert_eq!(job["state"], "running", "{job}");
        if job["held_ms"].as_u64().unwrap_or(0) >= 3_000 {
            let p = job["percent"].as_f64().unwrap();
            assert!(p > 5.0 && p < 50.0, "{job}");
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {job}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The terminal shows a bar redrawn in place (it polls on its own clock, so it may
    // be a redraw or two behind the API read above: any filled cell will do).
    let drawn = String::from_utf8_lossy(&on_terminal.stdout_bytes()).into_owned();
    assert!(
        drawn.contains("\r[#") && drawn.contains("%  "),
        "{drawn:?}\n{}",
        on_terminal.diagnostics()
    );

    // Cancel by the origin's name this time: both names work.
    let (ok, out, err) = cache_cli(api, &["prefetch", "--cancel", &origin_url]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("cancelled {origin_url:?}  tracks 0,1  ")),
        "{out}"
    );
    let objects = cache_objects(api);
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0]["complete"], false, "{objects:?}");
    let ranges = objects[0]["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "{objects:?}");
    assert!(ranges[0][0].as_u64().unwrap() < 500, "{objects:?}");
    let end = ranges[0][1].as_u64().unwrap();
    assert!((2_000..20_000).contains(&end), "{objects:?}");
    let (ok, list, _) = cache_cli(api, &["list"]);
    assert!(ok && list.contains("  partial 0.0s-"), "{list}");
    // The CLI that was watching says so and fails.
    let status = on_terminal.wait_timeout(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "{}",
        on_terminal.diagnostics()
    );
    let drawn = String::from_utf8_lossy(&on_terminal.stdout_bytes()).into_owned();
    assert!(drawn.contains("cancelled "), "{drawn:?}");

    // Nothing runs any more: a second cancel finds nothing.
    let (ok, _, err) = cache_cli(api, &["prefetch", "--cancel", &edge.url("/clip")]);
    assert!(!ok);
    assert!(err.contains("answered 404: no prefetch of"), "{err}");
    // The origin session was torn down.
    origin
        .wait_no_connections(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}: {}", origin.diagnostics()));

    // A prefetch of the partial object resumes: the origin is asked from the end of
    // the held start (its keyframe before it), not from 0, and what it sends meets
    // the held range, so the object stays one range, only longer.
    let (status, body) = http(
        api,
        "POST",
        "/api/v1/cache/prefetch",
        &format!("{{\"url\": {:?}, \"speed\": 1}}", edge.url("/clip")),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    let resumed = |r: &mediagate_testkit::RequestEvent| {
        r.method == "PLAY" && r.range.as_deref() != Some("npt=0.000-")
    };
    assert!(
        origin.wait_for_request(Duration::from_secs(10), resumed),
        "{:#?}",
        origin.requests()
    );
    let play = origin
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "PLAY");
    let asked = play
        .as_ref()
        .and_then(|r| r.range.as_deref())
        .and_then(|v| v.strip_prefix("npt="))
        .and_then(|v| v.trim_end_matches('-').parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{play:?}"));
    assert!(
        ((end as f64 / 1000.0) - asked).abs() < 0.01,
        "asked from {asked} s, the held start ends at {end} ms"
    );
    // Real time: 4 s of it, whatever the first packets' burst says.
    let resumed_at = Instant::now();
    let deadline = resumed_at + Duration::from_secs(20);
    loop {
        let list = get_json(api, "/api/v1/cache/prefetch");
        let job = list
            .as_array()
            .and_then(|l| l.iter().find(|j| j["state"] == "running").cloned());
        if resumed_at.elapsed() >= Duration::from_secs(4)
            && job
                .as_ref()
                .is_some_and(|j| j["held_ms"].as_u64().unwrap_or(0) >= end + 3_000)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, _, err) = cache_cli(api, &["prefetch", "--cancel", &origin_url]);
    assert!(ok, "{err}");
    let objects = cache_objects(api);
    let ranges = objects[0]["ranges"].as_array().unwrap();
    assert_eq!(
        ranges.len(),
        1,
        "one range, the two runs merged: {objects:?}\n{}",
        edge.peer.diagnostics()
    );
    assert!(ranges[0][0].as_u64().unwrap() < 500, "{objects:?}");
    assert!(
        ranges[0][1].as_u64().unwrap() >= end + 2_000,
        "longer than the {end} ms held before: {objects:?}\n{}",
        edge.peer.diagnostics()
    );
}

#[test]
fn prefetch_refuses_what_it_cannot_fetch() {
    let origin = Origin::start(OriginOptions::default()).expect("origin starts");
    let cache = CacheDir::new("refuse");
    let (edge, api) = edge(&origin, &cache);
    // No route: 404 naming what to give.
    let (ok, _, err) = cache_cli(api, &["prefetch", &edge.url("/nothing")]);
    assert!(!ok);
    assert!(err.contains("answered 404: no route for"), "{err}");
    // A live stream is not cached.
    let cfg = format!(
        "[edge.cache]\ndir = {:?}\n[[edge.route]]\nadvertised = \"/live\"\norigin = \"{}\"\n",
        cache.0.display().to_string(),
        origin.url("/live")
    );
    drop(edge);
    let api = free_tcp_port().unwrap();
    let edge = EdgeProc::start(&format!("{cfg}[admin]\nlisten = [\"127.0.0.1:{api}\"]\n"));
    get_json(api, "/api/v1/cache");
    let (ok, _, err) = cache_cli(api, &["prefetch", &edge.url("/live")]);
    assert!(!ok);
    assert!(
        err.contains("answered 400: ") && err.contains("is a live stream"),
        "{err}"
    );
    // A speed out of range.
    let (status, body) = http(
        api,
        "POST",
        "/api/v1/cache/prefetch",
        &format!("{{\"url\": {:?}, \"speed\": 0}}", edge.url("/live")),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("between 0.1 and 100"), "{body}");
}
