//! Forward and transparent proxying across network namespaces this test creates:
//!
//! ```text
//!  client ns            edge ns                       origin ns
//!  10.77.1.2 ── veth ── 10.77.1.1 │ 10.77.2.1 ── veth ── 10.77.2.2 (gst-rtsp-server :554)
//! ```
//!
//! The edge namespace does not forward IP, so the client can reach the origin only
//! through mediagate. Every namespace is deleted on drop, even when a test fails.
//! Names the edge resolves come from the edge namespace's own hosts file
//! (`/etc/netns/NAME/hosts`, which `ip netns exec` mounts over `/etc/hosts`).

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

impl Topology {
    /// The edge namespace's `/etc/hosts`, seen by processes `ip netns exec` starts.
    fn edge_hosts(&self, lines: &[&str]) {
        let dir = std::path::Path::new("/etc/netns").join(&self.edge);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/NAME");
        std::fs::write(dir.join("hosts"), lines.join("\n") + "\n").expect("write hosts");
    }

    /// A Python helper inside `ns`, started and ready (it prints `ready`).
    fn python(&self, ns: &str, name: &str, script: &str, args: &[&str]) -> Peer {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "/usr/bin/python3", "-u", "-c", script])
            .args(args);
        let peer = Peer::spawn(name, cmd).expect("python3 starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !peer.stdout_tail().iter().any(|l| l == "ready") {
            assert!(
                Instant::now() < deadline,
                "{name} not ready: {}",
                peer.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        peer
    }

    /// One DESCRIBE from the client namespace to `proxy`; the whole response as text.
    fn describe(&self, proxy: (&str, u16), url: &str) -> String {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.client, "/usr/bin/python3", "-c"])
            .arg(DESCRIBE_PY)
            .args([proxy.0, &proxy.1.to_string(), url]);
        let out = run("describe", cmd, Duration::from_secs(40)).expect("python3 runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Sends one DESCRIBE (argv: host port url) and prints the response, body included.
const DESCRIBE_PY: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
s.sendall(("DESCRIBE %s RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n" % sys.argv[3]).encode())
data = b""
while b"\r\n\r\n" not in data:
    c = s.recv(65536)
    if not c:
        break
    data += c
head, _, body = data.partition(b"\r\n\r\n")
n = 0
for line in head.split(b"\r\n"):
    if line.lower().startswith(b"content-length:"):
        n = int(line.split(b":")[1])
while len(body) < n:
    c = s.recv(65536)
    if not c:
        break
    body += c
sys.stdout.write((head + b"\r\n\r\n" + body).decode(errors="replace"))
"#;

/// Answers every RTSP request with `302` to argv[3] + the request's path (argv: bind
/// address, port, location prefix).
const REDIRECTOR_PY: &str = r#"
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(16)
print("ready")
def serve(c):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(4096)
        if not chunk:
            return
        data += chunk
    lines = data.decode(errors="replace").split("\r\n")
    cseq = next((l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("cseq:")), "0")
    print("asked " + lines[0])
    c.sendall(("RTSP/1.0 302 Moved Temporarily\r\nCSeq: %s\r\nLocation: %s\r\n\r\n" % (cseq, sys.argv[3])).encode())
    c.close()
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

/// Prints `ACCEPTED` for every connection it gets (argv: bind address, port): a
/// place the edge must never reach.
const CANARY_PY: &str = r#"
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(16)
print("ready")
while True:
    c, peer = srv.accept()
    print("ACCEPTED %s" % (peer,))
    c.close()
"#;

#[test]
fn forward_mode_never_goes_where_a_name_or_a_redirect_points_inside() {
    let t = Topology::new();
    let _origin = t.start_origin();
    t.edge_hosts(&[
        "10.77.2.2 cam.test",
        "127.0.0.1 loop.test",
        "169.254.169.254 meta.test",
    ]);
    // Inside the edge namespace: loopback services the edge must never be steered to.
    let canary = t.python(&t.edge, "canary", CANARY_PY, &["127.0.0.1", "554"]);
    let canary_meta = {
        ip(&[
            "-n",
            &t.edge,
            "addr",
            "add",
            "169.254.169.254/32",
            "dev",
            "lo",
        ]);
        t.python(&t.edge, "metadata", CANARY_PY, &["169.254.169.254", "554"])
    };
    // An allowed origin (10.77.2.2:8554) that redirects to the edge's loopback.
    let redirector = t.python(
        &t.origin,
        "redirector",
        REDIRECTOR_PY,
        &["10.77.2.2", "8554", "rtsp://127.0.0.1:554/live"],
    );
    let redirector_by_name = t.python(
        &t.origin,
        "redirector2",
        REDIRECTOR_PY,
        &["10.77.2.2", "8555", "rtsp://loop.test:554/live"],
    );
    let exec = t.exec(&t.edge);
    let wrapper: Vec<&str> = exec.iter().map(String::as_str).collect();
    // `*.test` names hosts; only the origin's network is named as addresses.
    let edge = EdgeProc::start_in(
        &wrapper,
        "10.77.1.1",
        "[edge.forward]\nenabled = true\nallow = [\"*.test\", \"10.77.2.0/24\"]\n",
    );
    let proxy = ("10.77.1.1", edge.port);
    let status = |resp: &str| resp.lines().next().unwrap_or("").to_owned();

    // The allowed name plays, and the viewer's SDP does not show the origin's address.
    let ok = t.describe(proxy, "rtsp://cam.test:554/live");
    assert!(status(&ok).starts_with("RTSP/1.0 200"), "{ok}");
    let sdp = ok.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(sdp.contains("o="), "{ok}");
    assert!(
        !sdp.contains("10.77.2.2"),
        "origin address shown to the viewer:\n{sdp}"
    );
    let r = t.rtspsrc(
        "rtsp://cam.test:554/live",
        Some(&format!("10.77.1.1:{}", edge.port)),
    );
    assert!(r.errors.is_empty() && r.video_buffers >= 30, "{r:?}");

    // Names the allow list admits, pointing at loopback and the metadata address.
    for url in ["rtsp://loop.test:554/live", "rtsp://meta.test:554/live"] {
        let resp = t.describe(proxy, url);
        assert!(status(&resp).starts_with("RTSP/1.0 403"), "{url}: {resp}");
        assert!(resp.contains("never connects to"), "{url}: {resp}");
    }
    // An allowed origin's redirect to loopback, as an address or a name: not followed.
    for (url, who) in [
        ("rtsp://cam.test:8554/live", &redirector),
        ("rtsp://cam.test:8555/live", &redirector_by_name),
    ] {
        let resp = t.describe(proxy, url);
        assert!(status(&resp).starts_with("RTSP/1.0 502"), "{url}: {resp}");
        assert!(resp.contains("does not go"), "{url}: {resp}");
        // The origin was asked: it printed that before answering, but the line
        // reaches the test through a reader thread, so it is waited for.
        who.wait_for_stdout("the origin asked", Duration::from_secs(10), |lines| {
            lines
                .iter()
                .any(|l| l.starts_with("asked DESCRIBE"))
                .then_some(())
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    for c in [&canary, &canary_meta] {
        assert!(
            !c.stdout_tail().iter().any(|l| l.starts_with("ACCEPTED")),
            "the edge connected where it must never go: {}",
            c.diagnostics()
        );
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.client, &self.edge, &self.origin] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(std::path::Path::new("/etc/netns").join(&self.edge));
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
