//! A viewer behind NAT plays over UDP through the balancer in `relay` mode (issue 14,
//! tests with real peers): the balancer latches each relayed pair's client side to
//! the NAT's mapping of the viewer's ports, not to the ports its SETUP named.
//!
//! ```text
//!  ns pub: gst-rtsp-server 127.0.0.1:8554 ── mediagate balancer 0.0.0.0:8555
//!            │ 198.51.100.1/30
//!            │ veth
//!            │ 198.51.100.2/30
//!  ns nat:   MASQUERADE (UDP source ports remapped to 20000-20999)
//!            │ 10.1.0.1/24
//!            │ veth
//!            │ 10.1.0.2/24
//!  ns viewer: ffmpeg -rtsp_transport udp, client ports 41000-41099
//! ```
//!
//! The NAT counts, as datagrams arrive from the balancer on its public side before it
//! maps them back, those sent to its mapped ports (20000-20999) and those sent to the
//! viewer's own ports (41000-41099, which it would not forward): media must arrive
//! only through the first.

use std::process::Command;
use std::time::{Duration, Instant};

use mediagate_testkit::process::{peers_dir, Peer};
use mediagate_testkit::OriginOptions;

#[path = "common/sip_nat.rs"]
mod sip_nat;

use sip_nat::{add_netns, output, run, veth, Netns};

/// The test's namespaces and veths, removed on drop.
struct Net {
    prefix: String,
    _namespaces: Vec<Netns>,
}

impl Net {
    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn exec(&self, ns: &str, args: &[&str]) {
        let ns = self.ns(ns);
        let mut all = vec!["ip", "netns", "exec", &ns];
        all.extend_from_slice(args);
        run(&all);
    }

    fn command(&self, ns: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(ns), program]);
        cmd
    }

    fn new() -> Net {
        let prefix = format!("mgbn{}", std::process::id() % 100_000);
        let net = Net {
            _namespaces: ["pub", "nat", "viewer"]
                .iter()
                .map(|ns| add_netns(&format!("{prefix}{ns}")))
                .collect(),
            prefix,
        };
        let links = [
            ("pub", "p", "198.51.100.1/30", "nat", "o", "198.51.100.2/30"),
            ("nat", "i", "10.1.0.1/24", "viewer", "v", "10.1.0.2/24"),
        ];
        for (n1, i1, a1, n2, i2, a2) in links {
            let (if1, if2) = (format!("{}{i1}", net.prefix), format!("{}{i2}", net.prefix));
            veth(&net.ns(n1), &if1, a1, &net.ns(n2), &if2, a2);
        }
        run(&[
            "ip",
            "-n",
            &net.ns("viewer"),
            "route",
            "add",
            "default",
            "via",
            "10.1.0.1",
        ]);
        let public_if = format!("{}o", net.prefix);
        net.exec("nat", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // UDP source ports are remapped (MASQUERADE alone keeps free ones), so the
        // mapping differs from what the viewer's SETUP says.
        net.exec(
            "nat",
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                &public_if,
                "-p",
                "udp",
                "-j",
                "MASQUERADE",
                "--to-ports",
                "20000-20999",
            ],
        );
        net.exec(
            "nat",
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                &public_if,
                "-j",
                "MASQUERADE",
            ],
        );
        for ports in ["20000:20999", "41000:41099"] {
            net.exec(
                "nat",
                &[
                    "iptables",
                    "-t",
                    "mangle",
                    "-A",
                    "PREROUTING",
                    "-i",
                    &public_if,
                    "-p",
                    "udp",
                    "-s",
                    "198.51.100.1",
                    "--dport",
                    ports,
                    "-j",
                    "ACCEPT",
                ],
            );
        }
        net
    }

    /// Datagrams from the balancer that reached the NAT's public side addressed to
    /// `ports` (`"20000:20999"`).
    fn arrived_for(&self, ports: &str) -> u64 {
        let table = output(&[
            "ip",
            "netns",
            "exec",
            &self.ns("nat"),
            "iptables",
            "-t",
            "mangle",
            "-L",
            "PREROUTING",
            "-v",
            "-n",
            "-x",
        ]);
        table
            .lines()
            .find(|l| l.contains(&format!("dpts:{ports}")))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter for {ports} in:\n{table}"))
    }
}

fn wait_for_line(peer: &Peer, stderr: bool, needle: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = if stderr {
            peer.stderr_tail()
        } else {
            peer.stdout_tail()
        };
        if lines.iter().any(|l| l.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline && peer.try_status().is_none(),
            "{what} not ready: {}",
            peer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_viewer_behind_nat_plays_udp_through_the_relay_latched_to_its_mapping() {
    let net = Net::new();
    let dir = std::env::temp_dir().join(format!("mediagate-bal-nat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let options = OriginOptions {
        port: 8554,
        vod_mount: None,
        ..OriginOptions::default()
    };
    let mut cmd = net.command("pub", "/usr/bin/python3");
    cmd.arg("-u")
        .arg(peers_dir().join("gst_origin.py"))
        .args(options.args());
    let origin = Peer::spawn("origin", cmd).expect("origin starts");
    wait_for_line(&origin, false, "\"ready\"", "origin");

    let config = format!(
        "state_dir = {var:?}\n[edge]\nenabled = false\n[admin]\nlisten = []\n\
         [balancer]\nenabled = true\n\
         [[balancer.service]]\nname = \"rtsp\"\nlisten = [\"0.0.0.0:8555\"]\n\
         media_mode = \"relay\"\nports = \"30000-30099\"\nbackends = [\"rtsp://127.0.0.1:8554\"]\n",
        var = dir.join("var").display().to_string(),
    );
    let path = dir.join("mediagate.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = net.command("pub", env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("run").arg("--config").arg(&path);
    let balancer = Peer::spawn("mediagate", cmd).expect("mediagate starts");
    wait_for_line(&balancer, true, "listening for RTSP", "balancer");

    let frames = dir.join("frames.txt");
    let mut cmd = net.command("viewer", "ffmpeg");
    cmd.args(["-nostdin", "-loglevel", "error", "-rtsp_transport", "udp"])
        .args(["-min_port", "41000", "-max_port", "41099"])
        .args(["-timeout", "5000000"])
        .args(["-i", "rtsp://198.51.100.1:8555/live"])
        .args(["-t", "4", "-map", "0:v", "-f", "framecrc", "-y"])
        .arg(&frames);
    let viewer = Peer::spawn("ffmpeg", cmd).expect("ffmpeg starts");
    let status = viewer.wait_timeout(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "the viewer behind NAT did not play: {}\nbalancer: {}",
        viewer.diagnostics(),
        balancer.diagnostics()
    );
    let decoded = std::fs::read_to_string(&frames)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    // 4 s of 25 fps video; a live join may start at the next keyframe.
    assert!(decoded >= 40, "{decoded} video frames decoded");
    let mapped = net.arrived_for("20000:20999");
    let declared = net.arrived_for("41000:41099");
    assert!(
        mapped >= 100,
        "{mapped} datagrams reached the NAT's mapped ports"
    );
    assert_eq!(
        declared, 0,
        "the balancer sent {declared} datagrams to the ports the SETUP named"
    );
    drop(viewer);
    let _ = balancer.terminate(Duration::from_secs(5));
    let _ = origin.terminate(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}
