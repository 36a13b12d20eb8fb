//! The access log's `lost` is what UDP viewers' RTCP receiver reports say (issue 12
//! item 4), with real loss: everything (origin, edge, four ffmpeg viewers) runs in one
//! network namespace this test creates, where iptables drops about 10% of the UDP sent
//! to the ports two of the viewers receive on. ffmpeg sends receiver reports with its
//! cumulative loss (RFC 3550 §6.4.1); the edge reads them on its UDP sockets: the live
//! hub's for a SPLIT viewer, the on-demand passthrough's for a PASS one.
//!
//! ```text
//!  gst-rtsp-server :8554 ──TCP── mediagate ──UDP── ffmpeg (ports 41000-41099: 10% dropped)
//!   /live  /vod                            └──UDP── ffmpeg (ports 42000-42099: no drop)
//! ```

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::EdgeProc;
use mediagate_testkit::process::{peers_dir, run, Peer};
use mediagate_testkit::OriginOptions;

/// One namespace with only loopback, deleted on drop.
struct Namespace(String);

impl Namespace {
    fn new() -> Namespace {
        let ns = Namespace(format!("mgr{}", std::process::id() % 100_000));
        sh(&["ip", "netns", "add", &ns.0]);
        sh(&["ip", "-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.0]
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0, program]);
        cmd
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The origin's port inside the namespace (the namespace is ours alone).
const ORIGIN_PORT: u16 = 8554;

/// ffmpeg sends a receiver report per ~280 kB it receives, so both streams run at about
/// 2 Mbit/s to make one about every second. The origin's own on-demand file is of a
/// ball on a plain background, far below its nominal rate; this one is of noise.
fn noisy_vod_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("noise.mp4");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=640x360:r=25,noise=alls=60:allf=t+u",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=660:sample_rate=48000"])
        .args(["-t", "30", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-profile:v", "baseline", "-pix_fmt", "yuv420p"])
        .args(["-b:v", "2M", "-maxrate", "2M", "-bufsize", "1M", "-g", "25"])
        .args(["-c:a", "aac", "-ac", "2", "-b:a", "64k"])
        .arg(&path);
    let out = run("ffmpeg-encode", cmd, Duration::from_secs(60)).expect("ffmpeg runs");
    assert!(
        out.status.is_some_and(|s| s.success()),
        "encoding the on-demand file: {}",
        out.diagnostics
    );
    path
}

fn start_origin(ns: &Namespace, vod_file: std::path::PathBuf) -> Peer {
    let options = OriginOptions {
        port: ORIGIN_PORT,
        auth_mount: None,
        vod_file: Some(vod_file),
        width: 640,
        height: 360,
        fps: 25,
        video_kbps: 2000,
        ..OriginOptions::default()
    };
    let mut cmd = ns.command("/usr/bin/python3");
    cmd.arg("-u")
        .arg(peers_dir().join("gst_origin.py"))
        .args(options.args());
    let peer = Peer::spawn("origin", cmd).expect("origin starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !peer.stdout_tail().iter().any(|l| l.contains("\"ready\"")) {
        assert!(
            Instant::now() < deadline && peer.try_status().is_none(),
            "origin not ready: {}",
            peer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    peer
}

/// An ffmpeg UDP viewer in the namespace, receiving on `ports`, named by its user agent.
fn viewer(ns: &Namespace, url: &str, ports: (u16, u16), agent: &str, seconds: u32) -> Peer {
    let mut cmd = ns.command("ffmpeg");
    cmd.args(["-nostdin", "-loglevel", "error", "-rtsp_transport", "udp"])
        .args(["-min_port", &ports.0.to_string()])
        .args(["-max_port", &ports.1.to_string()])
        .args(["-user_agent", agent, "-timeout", "5000000", "-i", url])
        .args(["-t", &seconds.to_string(), "-f", "null", "-"]);
    Peer::spawn(agent, cmd).expect("ffmpeg starts")
}

const LOSSY: (u16, u16) = (41000, 41099);
const CLEAN: (u16, u16) = (42000, 42099);

#[test]
fn udp_viewers_reported_loss_reaches_the_access_log_for_live_and_on_demand() {
    let dir = std::env::temp_dir().join(format!("mediagate-rtcp-loss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ns = Namespace::new();
    let _origin = start_origin(&ns, noisy_vod_file(&dir));
    let log = dir.join("access.json");
    // The cache off: the on-demand viewers pass through, each on its own origin session.
    let edge = EdgeProc::start_in(
        &ns.exec(),
        "127.0.0.1",
        &format!(
            "[[edge.route]]\nadvertised = \"/cam\"\norigin = \"rtsp://127.0.0.1:{ORIGIN_PORT}/live\"\n\
             [[edge.route]]\nadvertised = \"/movie\"\norigin = \"rtsp://127.0.0.1:{ORIGIN_PORT}/vod\"\n\
             [edge.cache]\nenabled = false\n\
             [log]\naccess_log = {:?}\naccess_log_format = \"json\"\n",
            log.display().to_string()
        ),
    );
    let drop_rule = format!("{}:{}", LOSSY.0, LOSSY.1);
    let mut iptables = ns.command("iptables");
    iptables
        .args(["-A", "OUTPUT", "-p", "udp", "--dport", &drop_rule])
        .args([
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.1",
            "-j",
            "DROP",
        ]);
    let out = run("iptables", iptables, Duration::from_secs(10)).expect("iptables runs");
    assert!(
        out.status.is_some_and(|s| s.success()),
        "iptables: {}",
        out.diagnostics
    );

    let viewers = [
        viewer(&ns, &edge.url("/cam"), LOSSY, "live-lossy", 8),
        viewer(&ns, &edge.url("/cam"), CLEAN, "live-clean", 8),
        viewer(&ns, &edge.url("/movie"), LOSSY, "vod-lossy", 8),
        viewer(&ns, &edge.url("/movie"), CLEAN, "vod-clean", 8),
    ];
    for v in &viewers {
        let deadline = Instant::now() + Duration::from_secs(40);
        while v.try_status().is_none() {
            assert!(
                Instant::now() < deadline,
                "viewer runs on: {}",
                v.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let deadline = Instant::now() + Duration::from_secs(15);
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        if lines.len() >= 4 {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "access log has {} lines:\n{text}\n{}",
            lines.len(),
            edge.peer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = std::fs::remove_dir_all(&dir);
    let line = |agent: &str| {
        lines
            .iter()
            .find(|l| l["user_agent"] == agent)
            .unwrap_or_else(|| panic!("no line for {agent}: {lines:?}"))
    };
    for (agent, cache, lossy) in [
        ("live-lossy", "SPLIT", true),
        ("live-clean", "SPLIT", false),
        ("vod-lossy", "PASS", true),
        ("vod-clean", "PASS", false),
    ] {
        let l = line(agent);
        assert_eq!(l["cache"], cache, "{l}");
        assert_eq!(l["transport"], "udp", "{l}");
        let packets = l["packets"].as_u64().expect("packets");
        let lost = l["lost"].as_u64().expect("lost");
        assert!(packets > 500, "{agent} got too little to judge: {l}");
        if lossy {
            // iptables drops datagrams, and the edge sends a burst to one viewer as one
            // (UDP GSO), so the fraction lost varies from run to run; never all of it.
            assert!(
                lost > 0 && lost < packets / 3,
                "{agent}: lost {lost} of {packets}: {lines:#?}"
            );
        } else {
            assert_eq!(lost, 0, "{agent}: {l}");
        }
    }
}
