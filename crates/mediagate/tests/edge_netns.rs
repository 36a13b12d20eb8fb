//! Forward and transparent proxying across network namespaces this test creates:
//!
//! ```text
//!  client ns            edge ns                       origin ns
//!  10.77.1.2 ── veth ── 10.77.1.1 │ 10.77.2.1 ── veth ── 10.77.2.2 (gst-rtsp-server :554)
//! ```
//!
//! The edge namespace does not forward IP, so the client can reach the origin only
//! through mediagate. Every namespace is deleted on drop, even when a test fails.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::EdgeProc;
use mediagate_testkit::gst::parse_report;
use mediagate_testkit::process::{peers_dir, run, Peer};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (Debian: iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three namespaces wired as in the module docs.
struct Topology {
    client: String,
    edge: String,
    origin: String,
}

impl Topology {
    fn new() -> Topology {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let t = Topology {
            client: format!("mgc{tag}"),
            edge: format!("mge{tag}"),
            origin: format!("mgo{tag}"),
        };
        for ns in [&t.client, &t.edge, &t.origin] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let link = |a_ns: &str, a: &str, a_ip: &str, b_ns: &str, b: &str, b_ip: &str| {
            ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
            ip(&["link", "set", a, "netns", a_ns]);
            ip(&["link", "set", b, "netns", b_ns]);
            ip(&["-n", a_ns, "addr", "add", a_ip, "dev", a]);
            ip(&["-n", b_ns, "addr", "add", b_ip, "dev", b]);
            ip(&["-n", a_ns, "link", "set", a, "up"]);
            ip(&["-n", b_ns, "link", "set", b, "up"]);
        };
        link(
            &t.client,
            &format!("c{tag}"),
            "10.77.1.2/24",
            &t.edge,
            &format!("ec{tag}"),
            "10.77.1.1/24",
        );
        link(
            &t.origin,
            &format!("o{tag}"),
            "10.77.2.2/24",
            &t.edge,
            &format!("eo{tag}"),
            "10.77.2.1/24",
        );
        // New namespaces may inherit IP forwarding from the host; the edge namespace must
        // not route, or the client would have a direct path to the origin.
        let fwd = Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.edge,
                "sh",
                "-c",
                "echo 0 > /proc/sys/net/ipv4/ip_forward",
            ])
            .status()
            .expect("sh");
        assert!(fwd.success());
        ip(&[
            "-n",
            &t.client,
            "route",
            "add",
            "default",
            "via",
            "10.77.1.1",
        ]);
        ip(&[
            "-n",
            &t.origin,
            "route",
            "add",
            "default",
            "via",
            "10.77.2.1",
        ]);
        t
    }

    fn exec(&self, ns: &str) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), ns.into()]
    }

    /// gst-rtsp-server on 10.77.2.2:554 inside the origin namespace.
    fn start_origin(&self) -> Peer {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.origin, "/usr/bin/python3"])
            .arg(peers_dir().join("gst_origin.py"))
            .args([
                "--port",
                "554",
                "--bind",
                "10.77.2.2",
                "--vod",
                "",
                "--auth",
                "",
            ]);
        let peer = Peer::spawn("origin", cmd).expect("origin starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !peer.stdout_tail().iter().any(|l| l.contains("\"ready\"")) {
            assert!(
                Instant::now() < deadline,
                "origin not ready: {}",
                peer.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        peer
    }

    /// GStreamer rtspsrc inside the client namespace.
    fn rtspsrc(&self, url: &str, proxy: Option<&str>) -> mediagate_testkit::RtspsrcReport {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.client, "/usr/bin/python3"])
            .arg(peers_dir().join("rtspsrc_client.py"))
            .args(["--protocols", "tcp", "--seconds", "3"]);
        if let Some(p) = proxy {
            cmd.args(["--proxy", p]);
        }
        cmd.arg(url);
        let out = run("rtspsrc", cmd, Duration::from_secs(40)).expect("rtspsrc runs");
        let json = String::from_utf8_lossy(&out.stdout);
        let last = json.lines().last().unwrap_or("{}");
        parse_report(last).unwrap_or_else(|e| panic!("{e}: {}", out.diagnostics))
    }

    /// ffmpeg inside the client namespace; returns (video frames, stderr tail).
    fn ffmpeg(&self, url: &str) -> (u64, String) {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.client,
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
        ])
        .args([
            "-rtsp_transport",
            "tcp",
            "-timeout",
            "5000000",
            "-i",
            url,
            "-t",
            "3",
        ])
        .args(["-f", "framecrc", "-"]);
        let out = run("ffmpeg", cmd, Duration::from_secs(40)).expect("ffmpeg runs");
        let (video, _, _) =
            mediagate_testkit::ffmpeg::parse_framecrc(&String::from_utf8_lossy(&out.stdout));
        (video, out.diagnostics)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.client, &self.edge, &self.origin] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn forward_mode_proxies_allowed_destinations_only() {
    let t = Topology::new();
    let _origin = t.start_origin();
    let origin_url = "rtsp://10.77.2.2:554/live";
    // Sanity: without the edge the client cannot reach the origin at all.
    let (direct, _) = t.ffmpeg(origin_url);
    assert_eq!(
        direct, 0,
        "the client must not have a direct path to the origin"
    );
    let exec = t.exec(&t.edge);
    let wrapper: Vec<&str> = exec.iter().map(String::as_str).collect();
    let edge = EdgeProc::start_in(
        &wrapper,
        "10.77.1.1",
        "[edge.forward]\nenabled = true\nallow = [\"10.77.2.0/24:554\"]\n",
    );
    let proxy = format!("10.77.1.1:{}", edge.port);
    let r = t.rtspsrc(origin_url, Some(&proxy));
    assert!(r.errors.is_empty() && r.video_buffers >= 30, "{r:?}");
    // Not on the allow list (another port on the same host): refused, not relayed.
    let denied = t.rtspsrc("rtsp://10.77.2.2:8554/live", Some(&proxy));
    assert_eq!(denied.video_buffers, 0, "{denied:?}");
    assert!(
        !denied.errors.is_empty(),
        "a refused request must surface as an error"
    );
}

#[test]
fn transparent_mode_serves_iptables_redirected_connections() {
    let t = Topology::new();
    let _origin = t.start_origin();
    let exec = t.exec(&t.edge);
    let wrapper: Vec<&str> = exec.iter().map(String::as_str).collect();
    let edge = EdgeProc::start_in(
        &wrapper,
        "0.0.0.0",
        "transparent = true\n[edge.forward]\nallow = [\"10.77.2.0/24:554\"]\n",
    );
    let port = edge.port.to_string();
    let rule = [
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-p",
        "tcp",
        "--dport",
        "554",
        "-j",
        "REDIRECT",
        "--to-ports",
        &port,
    ];
    let out = Command::new("ip")
        .args(["netns", "exec", &t.edge, "iptables"])
        .args(rule)
        .output()
        .expect("iptables (Debian: iptables)");
    assert!(
        out.status.success(),
        "iptables: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The client asks the origin directly; the edge namespace redirects it to mediagate.
    let (video, diag) = t.ffmpeg("rtsp://10.77.2.2:554/live");
    assert!(
        video >= 30,
        "ffmpeg through the transparent edge decoded {video} frames\n{diag}"
    );
    let r = t.rtspsrc("rtsp://10.77.2.2:554/live", None);
    assert!(r.errors.is_empty() && r.video_buffers >= 30, "{r:?}");
}
