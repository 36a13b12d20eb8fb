//! `[edge.cache]`, `mediagate cache list|pin|unpin|purge` and the cache's metrics with
//! the real binary (issue 13 item 7). The objects are written straight through
//! `mediagate_cache` before the edge starts, so what is tested here is the wiring:
//! the configured directory and size, the admin API and the CLI over it, the metrics,
//! and a pin that outlives a restart with a smaller size while an unpinned object is
//! evicted.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::EdgeProc;
use mediagate_cache::{Cache, Meta, ObjectKey, PacketIn, TrackMeta, Validators};
use mediagate_testkit::ports::free_tcp_port;
use mediagate_testkit::process::run;
use mediagate_testkit::TempDir;

const CLIP_A: &str = "rtsp://origin.invalid/vod/a.mp4";
const CLIP_B: &str = "rtsp://origin.invalid/vod/b.mp4";

fn key(url: &str) -> ObjectKey {
    ObjectKey {
        url: url.into(),
        tracks: vec![0],
    }
}

/// Writes a complete 2 s video-only object for `url`: 25 packets a second of 2 kB,
/// a keyframe each second. `used_at` becomes its last use (older is evicted first).
fn fill(cache: &mut Cache, url: &str, used_at: SystemTime) -> u64 {
    let meta = Meta {
        sdp: format!("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns={url}\r\nt=0 0\r\na=range:npt=0-2\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"),
        tracks: vec![TrackMeta::video(96)],
        duration_ms: Some(2_000),
        validators: Validators {
            etag: Some("\"v1\"".into()),
            ..Validators::default()
        },
        needed_auth: false,
        fetched_unix_ms: 1,
    };
    let mut w = cache
        .begin_fill(&key(url), &meta, 0, used_at)
        .expect("a fill starts");
    for i in 0..50u32 {
        let ticks = u64::from(i) * 3_600;
        let mut rtp = vec![0u8; 2_000];
        rtp[0] = 0x80;
        rtp[1] = 96;
        rtp[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        rtp[4..8].copy_from_slice(&(ticks as u32).to_be_bytes());
        w.push(&PacketIn {
            track: 0,
            media_ticks: ticks,
            arrival_unix_ms: 1_000 + u64::from(i) * 40,
            keyframe: i % 25 == 0,
            rtp: &rtp,
        })
        .expect("a packet is stored");
    }
    let info = cache.end_fill(w, true, used_at).expect("the fill ends");
    assert!(info.complete, "{info:?}");
    info.size_bytes
}

/// An edge with its cache in `dir` of `size` and its admin API on a free port.
fn edge_with_cache(dir: &Path, size: &str) -> (EdgeProc, u16) {
    let api = free_tcp_port().unwrap();
    let extra = format!(
        "[edge.cache]\ndir = {:?}\nsize = \"{size}\"\n[admin]\nlisten = [\"127.0.0.1:{api}\"]\n",
        dir.display().to_string()
    );
    (EdgeProc::start(&extra), api)
}

/// `mediagate cache ARGS --admin ...`: (success, stdout, stderr).
fn cache_cli(api: u16, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("cache")
        .args(args)
        .args(["--admin", &format!("http://127.0.0.1:{api}")]);
    let out = run("mediagate cache", cmd, Duration::from_secs(20)).unwrap();
    (
        out.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.stderr.join("\n"),
    )
}

/// `mediagate cache list` once the admin API answers (it starts next to the edge).
fn listed(api: u16, edge: &EdgeProc) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out, err) = cache_cli(api, &["list"]);
        if ok {
            return out;
        }
        assert!(
            Instant::now() < deadline && err.contains("nothing answers"),
            "cache list failed: {err}\n{}",
            edge.peer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The answer to `GET path` from the admin API, head and body.
fn http_get(api: u16, path: &str) -> String {
    let mut conn = TcpStream::connect(("127.0.0.1", api)).expect("the admin API accepts");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text
}

/// The sizes `GET /api/v1/cache` reports, by URL.
fn api_sizes(api: u16) -> Vec<(String, u64)> {
    let answer = http_get(api, "/api/v1/cache");
    let (_, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let objects: serde_json::Value = serde_json::from_str(body).expect("JSON");
    objects
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| {
            (
                o["url"].as_str().unwrap().to_owned(),
                o["size_bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The value of the sample `name` (with its labels, as written) in `/metrics`.
fn metric(api: u16, name: &str) -> f64 {
    let text = http_get(api, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[test]
fn objects_are_listed_pinned_purged_and_a_pin_survives_a_smaller_restart() {
    let dir = TempDir::new("cache-cli");
    let cache_dir = dir.0.join("cache");
    let now = SystemTime::now();
    let (size_a, size_b) = {
        let (mut cache, _) = Cache::open(&cache_dir, 64 << 20).expect("the cache opens");
        // B is the more recently used: an LRU eviction would take A first.
        let a = fill(&mut cache, CLIP_A, now - Duration::from_secs(60));
        let b = fill(&mut cache, CLIP_B, now);
        (a, b)
    };
    assert!(size_a > 100_000 && size_b > 100_000, "{size_a} {size_b}");

    let (edge, api) = edge_with_cache(&cache_dir, "64MiB");
    let list = listed(api, &edge);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(
        lines[0].starts_with(&format!("{CLIP_B:?}  tracks 0  complete  ")),
        "most recently used first: {list}"
    );
    assert!(lines[1].starts_with(&format!("{CLIP_A:?}  tracks 0  complete  ")));
    assert!(!list.contains("pinned"), "{list}");
    assert!(lines[2].starts_with("2 object(s), "), "{list}");

    assert_eq!(metric(api, "mediagate_edge_cache_objects"), 2.0);
    assert_eq!(
        metric(api, "mediagate_edge_cache_bytes"),
        (size_a + size_b) as f64
    );
    assert_eq!(
        metric(api, "mediagate_edge_cache_limit_bytes"),
        f64::from(64u32 << 20)
    );
    assert_eq!(
        metric(api, "mediagate_edge_cache_results_total{result=\"hit\"}"),
        0.0
    );
    assert_eq!(metric(api, "mediagate_edge_cache_evictions_total"), 0.0);

    // Pin A (every variant: it has one), and a variant it does not have is refused.
    let (ok, out, err) = cache_cli(api, &["pin", CLIP_A]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("pinned {CLIP_A:?}  tracks 0  ")),
        "{out}"
    );
    let (ok, _, err) = cache_cli(api, &["pin", CLIP_A, "--tracks", "0,1"]);
    assert!(!ok);
    assert!(
        err.contains(&format!("{CLIP_A:?} is cached only with tracks [0]")),
        "{err}"
    );
    let (ok, _, err) = cache_cli(api, &["purge", "rtsp://origin.invalid/vod/none.mp4"]);
    assert!(!ok);
    assert!(err.contains("answered 404: nothing of"), "{err}");
    let list = listed(api, &edge);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&format!("{CLIP_A:?}")) && l.contains("  pinned")),
        "{list}"
    );
    drop(edge);

    // Restarted with room for one object: the pinned A stays although it is the least
    // recently used; B goes.
    let limit = size_a.max(size_b) + size_a.min(size_b) / 2;
    let (edge, api) = edge_with_cache(&cache_dir, &format!("{limit}B"));
    let list = listed(api, &edge);
    assert!(
        list.starts_with(&format!("{CLIP_A:?}  tracks 0  complete  ")),
        "{list}"
    );
    assert!(list.contains("  pinned"), "{list}");
    assert!(!list.contains(CLIP_B), "B was evicted: {list}");
    assert_eq!(metric(api, "mediagate_edge_cache_objects"), 1.0);
    assert_eq!(
        metric(api, "mediagate_edge_cache_evictions_total"),
        1.0,
        "B's eviction at open is counted"
    );
    // The pin rewrote A's metadata, so its size is the API's, not the fill's.
    let sizes = api_sizes(api);
    assert_eq!(sizes.len(), 1, "{sizes:?}");
    assert_eq!(sizes[0].0, CLIP_A);
    assert!(sizes[0].1.abs_diff(size_a) < 100, "{sizes:?} vs {size_a}");
    assert_eq!(metric(api, "mediagate_edge_cache_bytes"), sizes[0].1 as f64);
    assert_eq!(
        metric(api, "mediagate_edge_cache_limit_bytes"),
        limit as f64
    );

    // Unpin, then purge: gone from the list, the metrics and the disk.
    let (ok, out, err) = cache_cli(api, &["unpin", CLIP_A, "--tracks", "0"]);
    assert!(ok && out.starts_with("unpinned "), "{out}{err}");
    let (ok, out, err) = cache_cli(api, &["purge", CLIP_A]);
    assert!(ok && out.starts_with("purged "), "{out}{err}");
    assert_eq!(listed(api, &edge), "0 object(s), 0 B\n");
    assert_eq!(metric(api, "mediagate_edge_cache_objects"), 0.0);
    assert_eq!(metric(api, "mediagate_edge_cache_bytes"), 0.0);
    // Nothing but the running edge's claim on the directory (`lock`).
    let left: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "lock")
        .collect();
    assert!(left.is_empty(), "files left in the cache dir: {left:?}");
}

#[test]
fn without_a_cache_the_commands_say_so() {
    let api = free_tcp_port().unwrap();
    let edge = EdgeProc::start(&format!(
        "[edge.cache]\nenabled = false\n[admin]\nlisten = [\"127.0.0.1:{api}\"]\n"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        let (ok, _, err) = cache_cli(api, &["list"]);
        assert!(!ok, "a list from an edge without a cache");
        if !err.contains("nothing answers") || Instant::now() > deadline {
            break err;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        err.contains("answered 409: this edge runs without a cache ([edge.cache] enabled = false)"),
        "{err}\n{}",
        edge.peer.diagnostics()
    );
    assert_eq!(metric(api, "mediagate_edge_cache_limit_bytes"), 0.0);
    assert!(
        !edge
            .config_path()
            .parent()
            .unwrap()
            .join("var/cache")
            .exists(),
        "no cache directory is made when the cache is off"
    );
}

#[test]
fn the_default_cache_lives_under_the_state_dir() {
    let api = free_tcp_port().unwrap();
    let edge = EdgeProc::start(&format!("[admin]\nlisten = [\"127.0.0.1:{api}\"]\n"));
    assert_eq!(listed(api, &edge), "0 object(s), 0 B\n");
    assert!(edge
        .config_path()
        .parent()
        .unwrap()
        .join("var/cache")
        .is_dir());
    assert_eq!(
        metric(api, "mediagate_edge_cache_limit_bytes"),
        f64::from(1u32 << 30)
    );
    assert!(
        edge.peer
            .stderr_tail()
            .iter()
            .any(|l| l.contains("on-demand cache ready")),
        "{}",
        edge.peer.diagnostics()
    );
}

/// `mediagate edge --cache-dir dir` in `cwd` (its state goes there), started as a peer.
fn edge_on_cache_dir(cwd: &Path, dir: &Path) -> mediagate_testkit::process::Peer {
    let port = free_tcp_port().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.current_dir(cwd)
        .arg("edge")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--map", "/a=rtsp://origin.invalid/a"])
        .arg("--cache-dir")
        .arg(dir);
    mediagate_testkit::process::Peer::spawn("mediagate edge", cmd).expect("mediagate starts")
}

/// Waits for `edge` to say it listens; false if it exited first.
fn listens(edge: &mediagate_testkit::process::Peer) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && edge.try_status().is_none() {
        if edge
            .stderr_tail()
            .iter()
            .any(|l| l.contains("listening for RTSP"))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Issue 13: a cache directory belongs to one edge process. A second `mediagate edge`
/// on it refuses to start, naming the directory and the first one's pid; once the
/// first is gone (even by kill -9, which leaves the lock file behind) the directory
/// can be used again.
#[test]
fn a_second_edge_on_one_cache_directory_refuses_to_start_naming_the_first() {
    let tmp = TempDir::new("cache-lock");
    let dir = tmp.0.join("cache");
    let first = edge_on_cache_dir(&tmp.0, &dir);
    assert!(listens(&first), "{}", first.diagnostics());

    let second = edge_on_cache_dir(&tmp.0, &dir);
    let status = second
        .wait_timeout(Duration::from_secs(15))
        .expect("the second edge exits by itself");
    assert!(!status.success(), "{}", second.diagnostics());
    // Its exit can be seen before the reader thread has drained its stderr.
    second.wait_output_closed(Duration::from_secs(5));
    let said = second.stderr_tail().join("\n");
    assert!(
        said.contains(&dir.display().to_string())
            && said.contains(&format!("pid {}", first.pid()))
            && said.contains("in use"),
        "the error names the directory and the holder: {said}"
    );
    assert!(first.try_status().is_none(), "the first edge runs on");

    first.signal("KILL");
    first.wait_timeout(Duration::from_secs(5));
    assert!(dir.join("lock").exists(), "kill -9 leaves the file");
    let third = edge_on_cache_dir(&tmp.0, &dir);
    assert!(
        listens(&third),
        "free once the first is gone: {}",
        third.diagnostics()
    );
}
