//! Talking to a test edge's admin API: raw HTTP for JSON and metrics, and the
//! `mediagate cache` CLI over it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use mediagate_testkit::process::run;

/// `mediagate cache ARGS --admin ...`: (success, stdout, stderr).
pub fn cache_cli(api: u16, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("cache")
        .args(args)
        .args(["--admin", &format!("http://127.0.0.1:{api}")]);
    let out = run("mediagate cache", cmd, Duration::from_secs(60)).unwrap();
    (
        out.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.stderr.join("\n"),
    )
}

/// The answer to `METHOD path` (with a JSON `body`) from the admin API: status and
/// body.
pub fn http(api: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    try_http(api, method, path, body).expect("the admin API answers")
}

/// [`http`], None when nothing accepts or answers.
pub fn try_http(api: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", api)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// `GET path` as JSON, once the API answers 200 (it starts next to the edge).
pub fn get_json(api: u16, path: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((200, body)) = try_http(api, "GET", path, "") {
            return serde_json::from_str(&body).expect("JSON");
        }
        assert!(Instant::now() < deadline, "GET {path} never answered 200");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the sample `name` (with its labels, as written) in `/metrics`.
pub fn metric(api: u16, name: &str) -> f64 {
    let (_, text) = http(api, "GET", "/metrics", "");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// The cache's objects as `GET /api/v1/cache` lists them.
pub fn cache_objects(api: u16) -> Vec<serde_json::Value> {
    get_json(api, "/api/v1/cache")
        .as_array()
        .expect("a list")
        .clone()
}

/// The objects `GET /api/v1/cache` lists once one of them passes `held` (see
/// [`wait_cache`]).
pub fn wait_cache_holds(
    api: u16,
    what: &str,
    held: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    wait_cache(api, what, |objects| objects.iter().any(&held))
}

/// The objects `GET /api/v1/cache` lists once `done` holds for the whole list, waiting
/// up to 10 s: a fill ends on its writer thread just after its viewer leaves, and what
/// it held shows (its run in `ranges`, `complete`) only then. Panics naming `what`.
pub fn wait_cache(
    api: u16,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let objects = cache_objects(api);
        if done(&objects) {
            return objects;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never held {what}: {objects:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
