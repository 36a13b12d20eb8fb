//! Failover of the balancer through keepalived (issue 14 item 7), with real peers in
//! network namespaces this test creates:
//!
//! ```text
//!   lb-a 10.78.0.11 ─┐                         keepalived + mediagate balancer each,
//!   lb-b 10.78.0.12 ─┤                         the VIP 10.78.0.10 on the VRRP master
//!   origin 10.78.0.2 ┼── bridge (hub ns)       gst-rtsp-server on :8554
//!   viewer 10.78.0.3 ┘                         an RTSP client over UDP through the VIP
//! ```
//!
//! keepalived runs with the shipped `config/keepalived-mediagate.conf` (addresses,
//! paths and priorities substituted) and its two scripts. The viewer plays through
//! the VIP in `relay` mode; the active balancer is killed with SIGKILL; the test
//! measures how long the VIP takes to reach the other node, checks that the viewer's
//! keep-alive and TEARDOWN with the same session ID, on a new connection to the VIP,
//! reach the same origin session (the origin's request log), and that UDP media on
//! the session's relayed ports reaches the viewer again through the new active.
//!
//! What the origin does on failover: gst-rtsp-server ends a session's media when the
//! control connection that set it up closes, and the killed balancer's kernel closes
//! it. So the origin's own stream stops at the kill (its session lives on: the
//! keep-alive gets 200, the TEARDOWN its 404 for the unlinked media). A back end that
//! keeps a UDP session streaming past its connection (RFC 2326 §1.1: sessions are not
//! tied to connections) is stood in for by a sender in the origin namespace that
//! streams from the origin's address to the session's relayed port after the kill;
//! its packets reaching the viewer's port prove the pair resumed on the same ports,
//! latched to the same viewer.
//!
//! Every namespace is deleted and every process killed on drop, even when the test
//! fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mediagate_testkit::process::{peers_dir, Peer};
use mediagate_testkit::OriginEvent;
use serde_json::Value;

const VIP: &str = "10.78.0.10";
const ORIGIN: &str = "10.78.0.2";
const VIEWER: &str = "10.78.0.3";
const LB: [&str; 2] = ["10.78.0.11", "10.78.0.12"];

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

/// The namespaces, wired to one bridge.
struct Net {
    hub: String,
    lb: [String; 2],
    origin: String,
    viewer: String,
    dir: PathBuf,
}

impl Net {
    fn new() -> Net {
        let tag = format!("{}", std::process::id() % 100_000);
        let net = Net {
            hub: format!("mgvh{tag}"),
            lb: [format!("mgva{tag}"), format!("mgvb{tag}")],
            origin: format!("mgvo{tag}"),
            viewer: format!("mgvv{tag}"),
            dir: std::env::temp_dir().join(format!("mediagate-vrrp-{tag}")),
        };
        let _ = std::fs::remove_dir_all(&net.dir);
        std::fs::create_dir_all(&net.dir).unwrap();
        ip(&["netns", "add", &net.hub]);
        ip(&["-n", &net.hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &net.hub, "link", "set", "br0", "up"]);
        let hosts = [
            (&net.lb[0], LB[0]),
            (&net.lb[1], LB[1]),
            (&net.origin, ORIGIN),
            (&net.viewer, VIEWER),
        ];
        for (i, (ns, addr)) in hosts.into_iter().enumerate() {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            let (outer, inner) = (format!("mgvp{tag}{i}"), format!("mgvq{tag}{i}"));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &outer, "netns", &net.hub]);
            ip(&["link", "set", &inner, "netns", ns]);
            ip(&["-n", &net.hub, "link", "set", &outer, "master", "br0"]);
            ip(&["-n", &net.hub, "link", "set", &outer, "up"]);
            ip(&["-n", ns, "link", "set", &inner, "name", "e0"]);
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", "e0"]);
            ip(&["-n", ns, "link", "set", "e0", "up"]);
        }
        net
    }

    fn exec(&self, ns: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program]);
        cmd
    }

    fn node_dir(&self, n: usize) -> PathBuf {
        let d = self.dir.join(format!("lb{n}"));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Whether namespace `ns` holds the VIP.
    fn has_vip(&self, ns: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", ns, "-4", "-o", "addr", "show", "dev", "e0"])
            .output()
            .expect("ip");
        String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/"))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [
            &self.viewer,
            &self.origin,
            &self.lb[0],
            &self.lb[1],
            &self.hub,
        ] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
    diag: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}\n{}", diag());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// gst-rtsp-server inside the origin namespace, ready.
fn start_origin(net: &Net) -> Peer {
    let mut cmd = net.exec(&net.origin, "/usr/bin/python3");
    cmd.arg("-u").arg(peers_dir().join("gst_origin.py")).args([
        "--port", "8554", "--bind", ORIGIN, "--vod", "", "--auth", "",
    ]);
    let peer = Peer::spawn("origin", cmd).expect("origin starts");
    wait_until(
        "the origin is ready",
        Duration::from_secs(30),
        || peer.stdout_tail().iter().any(|l| l.contains("\"ready\"")),
        || peer.diagnostics(),
    );
    peer
}

/// The balancer of node `n`, streaming its table to the other node.
fn start_balancer(net: &Net, n: usize) -> Peer {
    let dir = net.node_dir(n);
    let config = format!(
        "state_dir = {var:?}\n[edge]\nenabled = false\n[log]\nlevel = \"debug\"\n\
         [balancer]\nenabled = true\nsync_listen = \"{me}:5540\"\nsync_peer = \"{peer}:5540\"\n\
         vrrp_state_file = {state:?}\nvrrp_track_file = {track:?}\n\
         [[balancer.service]]\nname = \"rtsp\"\nlisten = [\"0.0.0.0:8554\"]\n\
         media_mode = \"relay\"\nports = \"41000-41999\"\nbackends = [\"rtsp://{ORIGIN}:8554\"]\n",
        var = dir.join("var").display().to_string(),
        me = LB[n],
        peer = LB[1 - n],
        state = dir.join("state").display().to_string(),
        track = dir.join("track").display().to_string(),
    );
    let path = dir.join("mediagate.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = net.exec(&net.lb[n], env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("run").arg("--config").arg(&path);
    let peer = Peer::spawn(&format!("balancer-{n}"), cmd).expect("mediagate starts");
    wait_until(
        "the balancer listens",
        Duration::from_secs(10),
        || {
            peer.stderr_tail()
                .iter()
                .any(|l| l.contains("listening for RTSP"))
        },
        || peer.diagnostics(),
    );
    peer
}

/// The shipped keepalived config with this node's addresses, paths and priority.
fn keepalived_config(net: &Net, n: usize) -> String {
    let shipped = include_str!("../../../config/keepalived-mediagate.conf");
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let scripts = scripts.canonicalize().unwrap();
    let dir = net.node_dir(n);
    let subs: [(&str, String); 9] = [
        ("router_id mediagate-a", format!("router_id mediagate-{n}")),
        ("/usr/lib/mediagate/", format!("{}/", scripts.display())),
        (
            "/run/mediagate/vrrp-state",
            dir.join("state").display().to_string(),
        ),
        (
            "/run/mediagate/vrrp-track",
            dir.join("track").display().to_string(),
        ),
        ("127.0.0.1 554", "127.0.0.1 8554".to_owned()),
        ("eth0", "e0".to_owned()),
        (
            "198.51.100.0/24 dev e0 src 192.0.2.10",
            format!("{ORIGIN}/32 dev e0 src {VIP}"),
        ),
        ("192.0.2.10/24", format!("{VIP}/24")),
        (
            "priority 100",
            format!("priority {}", if n == 0 { 100 } else { 90 }),
        ),
    ];
    let mut text = shipped.to_owned();
    for (from, to) in subs {
        assert!(
            text.contains(from),
            "the shipped config no longer has {from:?}"
        );
        text = text.replace(from, &to);
    }
    text
}

fn start_keepalived(net: &Net, n: usize) -> Peer {
    let dir = net.node_dir(n);
    let conf = dir.join("keepalived.conf");
    std::fs::write(&conf, keepalived_config(net, n)).unwrap();
    let mut cmd = net.exec(&net.lb[n], "keepalived");
    cmd.args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
        .arg("--use-file")
        .arg(&conf)
        .arg("--pid")
        .arg(dir.join("keepalived.pid"))
        .arg("--vrrp_pid")
        .arg(dir.join("vrrp.pid"));
    Peer::spawn(&format!("keepalived-{n}"), cmd).expect("keepalived (Debian: keepalived)")
}

fn state(net: &Net, n: usize) -> String {
    std::fs::read_to_string(net.node_dir(n).join("state"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A viewer over UDP (argv: host port path go-file): DESCRIBE, SETUP of the first
/// stream with its own client ports, PLAY; then counts RTP on those ports. Prints
/// `playing` once media flows; when the go-file appears it counts for three more
/// seconds and prints `after` (packets since, and the longest silence of the whole
/// run), then sends GET_PARAMETER and TEARDOWN with its session ID on a new
/// connection and prints their statuses.
const VIEWER_PY: &str = r#"
import json, socket, sys, threading, time, os
host, port, path, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
url = "rtsp://%s:%d%s" % (host, port, path)
def say(**kw):
    print(json.dumps(kw), flush=True)
def bind_pair():
    while True:
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("0.0.0.0", 0))
        p = a.getsockname()[1]
        if p % 2:
            a.close(); continue
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            b.bind(("0.0.0.0", p + 1))
        except OSError:
            a.close(); b.close(); continue
        return a, b, p
rtp, rtcp, cport = bind_pair()
cseq = [0]
def ask(sock, method, uri, headers=()):
    cseq[0] += 1
    msg = "%s %s RTSP/1.0\r\nCSeq: %d\r\n" % (method, uri, cseq[0])
    for h in headers:
        msg += h + "\r\n"
    sock.sendall((msg + "\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        c = sock.recv(65536)
        if not c:
            raise SystemExit("connection closed during " + method)
        data += c
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdr = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdr[k.strip().lower()] = v.strip()
    n = int(hdr.get("content-length", "0"))
    while len(body) < n:
        body += sock.recv(65536)
    return status, hdr, body.decode(errors="replace")
c = socket.create_connection((host, port), timeout=10)
st, h, sdp = ask(c, "DESCRIBE", url, ["Accept: application/sdp"])
assert st == 200, st
control = None
for line in sdp.split("\r\n"):
    if line.startswith("m=") and control is not None:
        break
    if line.startswith("a=control:"):
        control = line[len("a=control:"):]
if control is None or control == "*":
    control = "stream=0"
base = h.get("content-base", url + "/")
track = control if "://" in control else base.rstrip("/") + "/" + control
st, h, _ = ask(c, "SETUP", track, ["Transport: RTP/AVP;unicast;client_port=%d-%d" % (cport, cport + 1)])
assert st == 200, (st, h)
session = h["session"].split(";")[0]
server_port = int(h["transport"].split("server_port=")[1].split("-")[0].split(";")[0])
st, _, _ = ask(c, "PLAY", url, ["Session: " + session])
assert st == 200, st
# Punch as a NAT'd client would, so the balancer latches this port.
rtp.sendto(b"\x80\x60\x00\x01" + b"\x00" * 8, (host, server_port))
count = [0]; last = [None]; gap = [0.0]
def recv():
    while True:
        rtp.recv(65536)
        t = time.monotonic()
        if last[0] is not None:
            gap[0] = max(gap[0], t - last[0])
        last[0] = t
        count[0] += 1
threading.Thread(target=recv, daemon=True).start()
t0 = time.monotonic()
while count[0] < 20:
    if time.monotonic() - t0 > 15:
        raise SystemExit("no media")
    time.sleep(0.05)
say(event="playing", session=session, port=cport, packets=count[0])
while not os.path.exists(go):
    time.sleep(0.05)
at_go = count[0]
time.sleep(3)
say(event="after", packets=count[0] - at_go, max_gap=round(gap[0], 3))
c2 = socket.create_connection((host, port), timeout=10)
st, _, _ = ask(c2, "GET_PARAMETER", url, ["Session: " + session])
say(event="keepalive", status=st)
st, _, _ = ask(c2, "TEARDOWN", url, ["Session: " + session])
say(event="teardown", status=st)
"#;

fn viewer_line(viewer: &Peer, event: &str, timeout: Duration) -> Value {
    let mut found = Value::Null;
    wait_until(
        &format!("the viewer's {event}"),
        timeout,
        || {
            found = viewer
                .stdout_tail()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["event"] == event)
                .unwrap_or(Value::Null);
            !found.is_null() || viewer.try_status().is_some()
        },
        || viewer.diagnostics(),
    );
    assert!(
        !found.is_null(),
        "the viewer ended before {event}: {}",
        viewer.diagnostics()
    );
    found
}

/// The origin's requests with their origin session IDs.
fn origin_requests(origin: &Peer) -> Vec<(String, Option<String>, u16)> {
    origin
        .stdout_tail()
        .iter()
        .filter_map(|l| OriginEvent::parse(l))
        .filter_map(|e| {
            e.request()
                .map(|r| (r.method.clone(), r.session.clone(), r.status))
        })
        .collect()
}

/// The port the balancer asked the origin to send the session's RTP to (its relayed
/// pair's back-end side).
fn relayed_backend_port(origin: &Peer) -> u16 {
    origin
        .stdout_tail()
        .iter()
        .filter_map(|l| OriginEvent::parse(l))
        .filter_map(|e| e.request().cloned())
        .find(|r| r.method == "SETUP" && r.status == 200)
        .and_then(|r| r.transport)
        .and_then(|t| {
            let ports = t.split("client_port=").nth(1)?.to_owned();
            ports.split(['-', ';']).next()?.parse().ok()
        })
        .expect("the origin logged the SETUP's client_port")
}

/// Sends RTP (argv: host port seconds) at 100 packets a second from this
/// namespace's address.
const SENDER_PY: &str = r#"
import socket, sys, time, struct
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("ready", flush=True)
end = time.monotonic() + seconds
seq = 0
while time.monotonic() < end:
    s.sendto(struct.pack("!BBHII", 0x80, 96, seq & 0xffff, seq * 900, 0x4d47) + b"x" * 200, (host, port))
    seq += 1
    time.sleep(0.01)
"#;

#[test]
fn killing_the_active_balancer_moves_the_vip_and_its_sessions_to_the_standby() {
    let net = Net::new();
    let origin = start_origin(&net);
    let balancers = [start_balancer(&net, 0), start_balancer(&net, 1)];
    // Node A first, so it is the master; then B joins as backup.
    let keepalived_a = start_keepalived(&net, 0);
    let diag = || {
        format!(
            "{}\n{}\n{}\n{}",
            keepalived_a.diagnostics(),
            balancers[0].diagnostics(),
            balancers[1].diagnostics(),
            origin.diagnostics()
        )
    };
    wait_until(
        "node A takes the VIP",
        Duration::from_secs(15),
        || net.has_vip(&net.lb[0]) && state(&net, 0) == "MASTER",
        diag,
    );
    let keepalived_b = start_keepalived(&net, 1);
    wait_until(
        "node B is the backup",
        Duration::from_secs(15),
        || state(&net, 1) == "BACKUP",
        || keepalived_b.diagnostics(),
    );
    assert!(!net.has_vip(&net.lb[1]));

    let go = net.dir.join("go");
    let mut cmd = net.exec(&net.viewer, "/usr/bin/python3");
    cmd.args(["-u", "-c", VIEWER_PY, VIP, "8554", "/live"])
        .arg(&go);
    let viewer = Peer::spawn("viewer", cmd).expect("python3 starts");
    let playing = viewer_line(&viewer, "playing", Duration::from_secs(30));
    let session = playing["session"].as_str().unwrap().to_owned();
    // The standby holds the session (its relayed pair latched to the viewer).
    wait_until(
        "the standby holds the viewer's session",
        Duration::from_secs(10),
        || {
            balancers[1]
                .stderr_tail()
                .iter()
                .any(|l| l.contains("holding 1 sessions of the peer"))
        },
        || balancers[1].diagnostics(),
    );
    let origin_session = {
        let plays: Vec<_> = origin_requests(&origin)
            .into_iter()
            .filter(|(m, _, st)| m == "PLAY" && *st == 200)
            .collect();
        assert_eq!(plays.len(), 1, "{plays:?}");
        plays[0].1.clone().expect("the origin names its session")
    };
    assert_ne!(
        origin_session, session,
        "clients see the balancer's own IDs"
    );

    // SIGKILL the active balancer; time the VIP's move.
    let killed = Instant::now();
    balancers[0].kill();
    wait_until(
        "the VIP moves to node B",
        Duration::from_secs(10),
        || net.has_vip(&net.lb[1]),
        || {
            format!(
                "{}\n{}",
                keepalived_a.diagnostics(),
                keepalived_b.diagnostics()
            )
        },
    );
    let moved = killed.elapsed();
    eprintln!("the VIP moved in {} ms", moved.as_millis());
    assert!(
        moved < Duration::from_secs(3),
        "the VIP took {moved:?} to move"
    );
    assert!(!net.has_vip(&net.lb[0]), "both nodes hold the VIP");
    wait_until(
        "node B's balancer takes the sessions over",
        Duration::from_secs(5),
        || {
            balancers[1]
                .stderr_tail()
                .iter()
                .any(|l| l.contains("took over 1 of 1 synced sessions"))
        },
        || balancers[1].diagnostics(),
    );

    // The back end keeps streaming to the session's relayed port (module docs).
    let backend_port = relayed_backend_port(&origin);
    let mut cmd = net.exec(&net.origin, "/usr/bin/python3");
    cmd.args(["-u", "-c", SENDER_PY, VIP, &backend_port.to_string(), "8"]);
    let sender = Peer::spawn("sender", cmd).expect("python3 starts");
    wait_until(
        "the sender starts",
        Duration::from_secs(10),
        || sender.stdout_tail().iter().any(|l| l == "ready"),
        || sender.diagnostics(),
    );
    std::fs::write(&go, "").unwrap();
    let after = viewer_line(&viewer, "after", Duration::from_secs(20));
    let keepalive = viewer_line(&viewer, "keepalive", Duration::from_secs(20));
    let teardown = viewer_line(&viewer, "teardown", Duration::from_secs(20));
    eprintln!("after the failover: {after}");
    // About 3 s at 100 packets a second: media resumed on the same ports, towards the
    // same viewer port, without a new SETUP.
    assert!(
        after["packets"].as_u64().unwrap_or(0) > 30,
        "media did not resume after the failover: {after}\n{}\n{}\n{}",
        balancers[1].diagnostics(),
        viewer.diagnostics(),
        origin.diagnostics()
    );
    assert_eq!(keepalive["status"], 200, "{}", balancers[1].diagnostics());
    // Not the balancer's 454 for a session it does not know: the origin's answer.
    assert_ne!(teardown["status"], 454, "{}", balancers[1].diagnostics());
    // Both reached the origin's same session; no new session was set up.
    let mut seen = Vec::new();
    wait_until(
        "the origin logs the TEARDOWN",
        Duration::from_secs(5),
        || {
            seen = origin_requests(&origin);
            seen.iter().any(|(m, _, _)| m == "TEARDOWN")
        },
        || origin.diagnostics(),
    );
    for method in ["GET_PARAMETER", "TEARDOWN"] {
        assert!(
            seen.iter()
                .any(|(m, s, _)| m == method && s.as_deref() == Some(origin_session.as_str())),
            "{method} with the origin's session {origin_session}: {seen:?}"
        );
    }
    assert_eq!(
        seen.iter().filter(|(m, _, _)| m == "SETUP").count(),
        1,
        "{seen:?}"
    );
    drop(sender);
    drop(viewer);
    drop(keepalived_b);
    drop(keepalived_a);
}
