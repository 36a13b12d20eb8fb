//! The process log and the operator's signals on the real binary: `[log] format` and
//! `level` act, SIGHUP never ends the process (logrotate sends it), SIGTERM stops it;
//! a viewer session's lines carry its ids as JSON keys.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mediagate_testkit::ports::free_tcp_port;
use mediagate_testkit::process::Peer;
use mediagate_testkit::{Origin, OriginOptions, Transport};

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `mediagate run` with an edge on a free port and the given `[log]` table.
fn start(dir: &Path, log: &str) -> (Peer, u16) {
    let port = free_tcp_port().unwrap();
    let config = dir.join("mediagate.toml");
    std::fs::write(
        &config,
        // No admin API: tests run side by side, and the default address would be taken by
        // one of them and warned about by the others.
        format!(
            "state_dir = \"./var\"\n[log]\n{log}\n[admin]\nlisten = []\n[edge]\nlisten = [\"127.0.0.1:{port}\"]\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("run").arg("--config").arg(&config).current_dir(dir);
    (Peer::spawn("mediagate", cmd).unwrap(), port)
}

fn wait_until_listening(port: u16, peer: &Peer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{}", peer.diagnostics());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_keeps_it_running_and_json_lines_parse() {
    let dir = workdir("sighup");
    let (peer, port) = start(&dir, "format = \"json\"");
    peer.wait_for_stderr_line("listening for RTSP", Duration::from_secs(10));
    peer.signal("HUP");
    let hup = peer.wait_for_stderr_line("SIGHUP", Duration::from_secs(10));
    assert!(hup.contains("running sessions are untouched"), "{hup}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(peer.try_status(), None, "SIGHUP ended the process");
    wait_until_listening(port, &peer);

    peer.signal("TERM");
    let status = peer.wait_timeout(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        peer.diagnostics()
    );
    let lines = peer.stderr_tail();
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "{lines:?}"
    );
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value["level"].is_string() && value["message"].is_string(),
            "{line}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn level_warn_keeps_the_routine_lines_out() {
    let dir = workdir("warnlevel");
    let (peer, port) = start(&dir, "level = \"warn\"");
    wait_until_listening(port, &peer);
    peer.signal("TERM");
    let status = peer.wait_timeout(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        peer.diagnostics()
    );
    assert_eq!(peer.stderr_tail(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first JSON line of `peer`'s stderr whose message is `message`, parsed.
fn json_line(peer: &Peer, message: &str) -> serde_json::Value {
    let what = format!("JSON line {message:?}");
    peer.wait_for_stderr(&what, Duration::from_secs(15), |lines| {
        lines.iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["message"] == message).then_some(v)
        })
    })
}

#[test]
fn a_viewer_sessions_lines_carry_session_viewer_and_url_as_keys() {
    let origin = Origin::start(OriginOptions::default()).expect("gst-rtsp-server origin starts");
    let edge = common::EdgeProc::start(&format!(
        "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"{}\"\n[log]\nformat = \"json\"\n[admin]\nlisten = []\n",
        origin.url("/live")
    ));
    let url = edge.url("/cam");
    let r = common::ffmpeg_gapless(&url, Transport::Tcp, 2.0);
    assert!(r.video > 0, "ffmpeg saw no video: {r:?}");

    let started = json_line(&edge.peer, "viewer session started");
    let ended = json_line(&edge.peer, "viewer session ended");
    for line in [&started, &ended] {
        let session = line["session"].as_str().unwrap_or_default();
        assert!(!session.is_empty(), "no session key: {line}");
        let viewer = line["viewer"].as_str().unwrap_or_default();
        assert!(viewer.starts_with("127.0.0.1:"), "viewer key: {line}");
        let seen = line["url"].as_str().unwrap_or_default();
        assert!(
            seen.starts_with(&url),
            "url key {seen:?}, asked {url}: {line}"
        );
        // The connection's span names the same viewer, so nested lines carry it too.
        assert_eq!(line["span"]["viewer"].as_str(), Some(viewer), "{line}");
    }
    assert_eq!(started["session"], ended["session"], "{started}\n{ended}");
    assert_eq!(started["viewer"], ended["viewer"], "{started}\n{ended}");
}
