//! Failover of the balancer through keepalived (issue 14 item 7), with real peers in
//! network namespaces this test creates:
//!
//! ```text
//!   lb-a 10.78.0.11 ─┐                         keepalived + mediagate balancer each,
//!   lb-b 10.78.0.12 ─┤                         the VIP 10.78.0.10 on the VRRP master
//!   origin 10.78.0.2 ┼── bridge (hub ns)       a mediagate edge on :8554 relaying
//!                    │                         gst-rtsp-server (127.0.0.1:8600) live
//!   viewer 10.78.0.3 ┘                         GStreamer rtspsrc over UDP via the VIP
//! ```
//!
//! keepalived runs with the shipped `config/keepalived-mediagate.conf` (addresses,
//! paths and priorities substituted) and its two scripts. A GStreamer `rtspsrc`
//! viewer plays through the VIP over UDP in `relay` mode; the active balancer is
//! killed with SIGKILL; the test measures how long the VIP takes to reach the other
//! node and checks that rtspsrc keeps receiving media through it without an error
//! (the standby resumes the session's relayed ports, latched to the same viewer,
//! with no new SETUP), and that the session's keep-alive and TEARDOWN with its
//! session ID, on a new connection to the VIP, reach the same back-end session.
//!
//! The back end is a mediagate edge with `udp_sessions_outlive_connection`: the
//! killed balancer's kernel closes the edge's control connection, and the edge keeps
//! the UDP session streaming (RFC 2326: sessions are not tied to connections) until
//! a request names it again. gst-rtsp-server would end the session's media with its
//! control connection.
//!
//! What rtspsrc (1.22) does when its control connection closes, and why the test
//! sends the keep-alive itself:
//! - It reconnects at once (`gst_rtspsrc_loop_udp`, `udp-reconnect`), while the VIP
//!   is still on the dead balancer's node. That node's kernel would refuse with a RST
//!   and rtspsrc gives up for good ("Could not connect to server"; seen by running
//!   this test without `SYN_GUARD`). So the nodes drop SYNs to the VIP's RTSP port
//!   that no socket listens for (the recipe in the shipped keepalived config): the
//!   SYN is sent again and reaches the new master once the VIP moved.
//! - Its reconnect goes through `gst_rtsp_connection_close`, which forgets the
//!   connection's session ID and timeout (back to 60 s) and restarts CSeq at 0. Its
//!   next keep-alive comes 55 s into a connection (which the balancer closes sooner,
//!   as idle, and rtspsrc opens again), and it carries no `Session` header; so does
//!   its TEARDOWN (an edge answers it 454). rtspsrc cannot resume with its session
//!   ID, whatever the server does. The edge keeps the session alive on rtspsrc's
//!   RTCP receiver reports meanwhile, and the test sends the keep-alive and the
//!   TEARDOWN with the session ID (from the balancer's log) on a new connection, as
//!   a client that keeps its session would.
//! - Relayed media must come from the VIP, not from the node's own address, or
//!   rtspsrc's RTP session drops it after the failover as a third-party SSRC
//!   collision (a known source from a new address): the shipped config routes the
//!   viewers' network with the VIP as source on the master.
//!
//! Every namespace is deleted and every process killed on drop, even when the test
//! fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mediagate_testkit::process::{peers_dir, Peer};
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

/// gst-rtsp-server inside the origin namespace on its loopback, ready.
fn start_origin(net: &Net) -> Peer {
    let mut cmd = net.exec(&net.origin, "/usr/bin/python3");
    cmd.arg("-u").arg(peers_dir().join("gst_origin.py")).args([
        "--port",
        "8600",
        "--bind",
        "127.0.0.1",
        "--vod",
        "",
        "--auth",
        "",
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

/// The back end: a mediagate edge in the origin namespace relaying the origin's live
/// stream as `/live`, keeping UDP sessions past their control connection. Its
/// session timeout (which the balancer passes on) makes rtspsrc send a keep-alive
/// every 8 s (`gst_rtsp_connection_next_timeout_usec`: 20% early).
fn start_edge(net: &Net) -> Peer {
    let dir = net.dir.join("edge");
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "state_dir = {var:?}\n[log]\nlevel = \"info\"\n\
         [edge]\nlisten = [\"{ORIGIN}:8554\"]\nsession_timeout = \"10s\"\n\
         udp_sessions_outlive_connection = true\n\
         [[edge.route]]\nadvertised = \"/live\"\norigin = \"rtsp://127.0.0.1:8600/live\"\n",
        var = dir.join("var").display().to_string(),
    );
    let path = dir.join("mediagate.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = net.exec(&net.origin, env!("CARGO_BIN_EXE_mediagate"));
    cmd.arg("run").arg("--config").arg(&path);
    let peer = Peer::spawn("edge", cmd).expect("mediagate starts");
    wait_until(
        "the edge listens",
        Duration::from_secs(10),
        || {
            peer.stderr_tail()
                .iter()
                .any(|l| l.contains("listening") && l.contains(ORIGIN))
        },
        || peer.diagnostics(),
    );
    peer
}

/// The failure text of several peers, one after another.
fn diagnostics(peers: &[&Peer]) -> String {
    let texts: Vec<String> = peers.iter().map(|p| p.diagnostics()).collect();
    texts.join("\n")
}

/// The session IDs in `peer`'s log lines containing `message`.
fn logged_sessions(peer: &Peer, message: &str) -> Vec<String> {
    peer.stderr_tail()
        .iter()
        .filter(|l| l.contains(message))
        .filter_map(|l| {
            let rest = l.split(" session=").nth(1)?;
            Some(rest.split_whitespace().next()?.to_owned())
        })
        .collect()
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
    let subs: [(&str, String); 10] = [
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
        (
            "203.0.113.0/24 dev e0 src 192.0.2.10",
            format!("{VIEWER}/32 dev e0 src {VIP}"),
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

/// A GStreamer `rtspsrc` viewer over UDP (argv: url stop-file). Prints a JSON line
/// with the RTP buffers received so far every 500 ms, one per GStreamer warning or
/// error; once the stop file appears it stops the pipeline (rtspsrc sends its
/// TEARDOWN) and prints `stopped`.
const VIEWER_PY: &str = r#"
import json, os, sys, time
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst, GLib
Gst.init(None)
url, stop = sys.argv[1], sys.argv[2]
def say(**kw):
    print(json.dumps(kw), flush=True)
pipe = Gst.Pipeline.new("viewer")
src = Gst.ElementFactory.make("rtspsrc")
src.set_property("location", url)
src.set_property("protocols", "udp")
src.set_property("latency", 200)
pipe.add(src)
count = [0]
def handoff(sink, buf, pad):
    count[0] += 1
def pad_added(src, pad):
    sink = Gst.ElementFactory.make("fakesink")
    sink.set_property("signal-handoffs", True)
    sink.set_property("sync", False)
    sink.connect("handoff", handoff)
    pipe.add(sink)
    sink.sync_state_with_parent()
    pad.link(sink.get_static_pad("sink"))
src.connect("pad-added", pad_added)
loop = GLib.MainLoop()
def on_message(bus, msg):
    if msg.type == Gst.MessageType.ERROR:
        err, dbg = msg.parse_error()
        say(event="error", text=err.message, debug=dbg)
    elif msg.type == Gst.MessageType.WARNING:
        err, dbg = msg.parse_warning()
        say(event="warning", text=err.message, debug=dbg)
bus = pipe.get_bus()
bus.add_signal_watch()
bus.connect("message", on_message)
def tick():
    say(event="count", buffers=count[0], t=time.monotonic())
    if os.path.exists(stop):
        pipe.set_state(Gst.State.NULL)
        say(event="stopped", buffers=count[0])
        loop.quit()
        return False
    return True
GLib.timeout_add(500, tick)
pipe.set_state(Gst.State.PLAYING)
loop.run()
"#;

/// One RTSP request with a `Session` header on a new connection (argv: url method
/// session); prints the status. What rtspsrc cannot do after it reconnected (module
/// docs).
const ASK_PY: &str = r#"
import socket, sys
url, method, session = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = url.split("/")[2].split(":")
c = socket.create_connection((host, int(port)), timeout=10)
c.sendall(("%s %s RTSP/1.0\r\nCSeq: 1\r\nSession: %s\r\n\r\n" % (method, url, session)).encode())
data = b""
while b"\r\n\r\n" not in data:
    chunk = c.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.split(b" ")[1].decode() if data else "closed", flush=True)
"#;

/// The status of `method` with `session` sent on a new connection from the viewer.
fn ask(net: &Net, method: &str, session: &str) -> String {
    let out = net
        .exec(&net.viewer, "/usr/bin/python3")
        .args([
            "-c",
            ASK_PY,
            &format!("rtsp://{VIP}:8554/live"),
            method,
            session,
        ])
        .output()
        .expect("python3 starts");
    assert!(
        out.status.success(),
        "{method}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The viewer's JSON lines of one event kind.
fn viewer_events(viewer: &Peer, event: &str) -> Vec<Value> {
    viewer
        .stdout_tail()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

/// RTP buffers the viewer has received so far.
fn buffers(viewer: &Peer) -> u64 {
    viewer_events(viewer, "count")
        .last()
        .and_then(|v| v["buffers"].as_u64())
        .unwrap_or(0)
}

/// The balancer's shell commands that make a node drop, rather than refuse, SYNs to
/// the VIP's RTSP port while nothing listens there (module docs): the recipe of
/// `docs/balancer.md`.
const SYN_GUARD: [&str; 2] = [
    "iptables -A INPUT -d {VIP} -p tcp --dport 8554 --syn -m socket --nowildcard -j ACCEPT",
    "iptables -A INPUT -d {VIP} -p tcp --dport 8554 --syn -j DROP",
];

fn guard_syns(net: &Net, n: usize) {
    for rule in SYN_GUARD {
        let rule = rule.replace("{VIP}", VIP);
        let args: Vec<&str> = rule.split_whitespace().collect();
        let out = net
            .exec(&net.lb[n], args[0])
            .args(&args[1..])
            .output()
            .expect("iptables (Debian: iptables)");
        assert!(
            out.status.success(),
            "{rule}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn killing_the_active_balancer_moves_the_vip_and_its_sessions_to_the_standby() {
    let net = Net::new();
    let origin = start_origin(&net);
    let edge = start_edge(&net);
    guard_syns(&net, 0);
    guard_syns(&net, 1);
    let balancers = [start_balancer(&net, 0), start_balancer(&net, 1)];
    // Node A first, so it is the master; then B joins as backup.
    let keepalived_a = start_keepalived(&net, 0);
    let diag = || diagnostics(&[&keepalived_a, &balancers[0], &balancers[1], &edge]);
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

    let stop = net.dir.join("stop");
    let mut cmd = net.exec(&net.viewer, "/usr/bin/python3");
    cmd.args(["-u", "-c", VIEWER_PY, &format!("rtsp://{VIP}:8554/live")])
        .arg(&stop);
    let viewer = Peer::spawn("viewer", cmd).expect("python3 with GStreamer starts");
    let snmp = |ns: &str| {
        let out = net.exec(ns, "cat").arg("/proc/net/snmp").output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("Udp:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let viewer_diag = || {
        format!(
            "UDP counters: node B {}\nviewer {}\norigin {}\n{}",
            snmp(&net.lb[1]),
            snmp(&net.viewer),
            snmp(&net.origin),
            diagnostics(&[&viewer, &balancers[0], &balancers[1], &edge])
        )
    };
    wait_until(
        "rtspsrc plays through the VIP",
        Duration::from_secs(30),
        || buffers(&viewer) > 50,
        viewer_diag,
    );
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
    let session = logged_sessions(&balancers[0], "balancer: session set up")
        .pop()
        .unwrap_or_else(|| panic!("{}", balancers[0].diagnostics()));
    let started = logged_sessions(&edge, "viewer session started");
    assert_eq!(started.len(), 1, "{}", edge.diagnostics());
    let edge_session = started[0].clone();

    // SIGKILL the active balancer; time the VIP's move.
    let killed = Instant::now();
    balancers[0].kill();
    let at_kill = buffers(&viewer);
    wait_until(
        "the VIP moves to node B",
        Duration::from_secs(10),
        || net.has_vip(&net.lb[1]),
        || diagnostics(&[&keepalived_a, &keepalived_b]),
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
        Duration::from_secs(15),
        || {
            balancers[1]
                .stderr_tail()
                .iter()
                .any(|l| l.contains("took over 1 of 1 synced sessions"))
        },
        || balancers[1].diagnostics(),
    );

    // The media goes on through node B: same relayed ports, from the same address,
    // to the same viewer ports, with no new SETUP (the edge kept streaming).
    let moved_at = buffers(&viewer);
    wait_until(
        "rtspsrc receives media through node B",
        Duration::from_secs(15),
        || buffers(&viewer) > moved_at + 50,
        viewer_diag,
    );
    eprintln!(
        "rtspsrc: {at_kill} buffers at the kill, {moved_at} when the VIP moved, {} now",
        buffers(&viewer)
    );
    let errors = viewer_events(&viewer, "error");
    assert!(errors.is_empty(), "rtspsrc failed: {errors:?}");
    assert!(
        viewer_events(&viewer, "warning").iter().any(|w| w["debug"]
            .as_str()
            .unwrap_or("")
            .contains("closed the connection")),
        "rtspsrc noticed the kill: {}",
        viewer.diagnostics()
    );

    // The session's next keep-alive, with its session ID on a new connection to the
    // VIP, reaches the same back-end session (rtspsrc's own would carry no ID:
    // module docs).
    assert_eq!(
        ask(&net, "GET_PARAMETER", &session),
        "200",
        "{}",
        viewer_diag()
    );
    wait_until(
        "the keep-alive reaches the same back-end session",
        Duration::from_secs(15),
        || {
            logged_sessions(&edge, "a new connection resumed the UDP session")
                .contains(&edge_session)
        },
        viewer_diag,
    );
    let resumed_at = buffers(&viewer);
    wait_until(
        "rtspsrc still receives media",
        Duration::from_secs(15),
        || buffers(&viewer) > resumed_at + 20,
        viewer_diag,
    );
    // Its TEARDOWN goes the same way and ends that session.
    assert_eq!(ask(&net, "TEARDOWN", &session), "200", "{}", viewer_diag());
    wait_until(
        "the edge ends the session on the TEARDOWN",
        Duration::from_secs(15),
        || {
            edge.stderr_tail().iter().any(|l| {
                l.contains("viewer session ended")
                    && l.contains(&format!("session={edge_session}"))
                    && l.contains("reason=\"teardown\"")
            })
        },
        viewer_diag,
    );
    assert_eq!(
        logged_sessions(&edge, "viewer session started"),
        vec![edge_session.clone()],
        "one back-end session for the whole run"
    );
    std::fs::write(&stop, "").unwrap();
    drop(viewer);
    drop(keepalived_b);
    drop(keepalived_a);
    drop(origin);
}
