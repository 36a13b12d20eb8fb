//! A dispatcher cluster with real peers (issue 15): one `mediagate dispatcher` process
//! and two `mediagate relay` processes linked to it over mutual TLS with certificates
//! from `mediagate cert`, all started with the README's quick-start flags; Kamailio 5.6
//! (Debian) with its `mediaproxy` module (`engage_media_proxy`) on the dispatcher's
//! UNIX socket; two SIPp phones, each behind a MASQUERADE NAT in its own namespace
//! (the network of `common/sip_nat.rs`). The dispatcher, the relays and Kamailio share
//! the `pub` namespace; relay1 relays on 203.0.113.1 and relay2 on 203.0.113.2.
//!
//! Checked, with iptables counters of the packets each relay address sends to each
//! phone's NAT (so "which relay" and "both ways" are measured, not inferred):
//! * a call relays media both ways through the relay Kamailio prefers (relay1);
//! * kill -9 of relay1 during that call: the dispatcher sees the link drop, the next
//!   call goes to relay2 although Kamailio still prefers relay1; when relay1 comes back
//!   it reconnects, reports no calls, and the dispatcher forgets (and reports, reason
//!   `relay lost the call`) the call it held; the next call uses relay1 again;
//! * SIGTERM of a relay with a call running: the dispatcher sees the relay's draining
//!   state over the link at once (the relay's status, before any offer is refused) and
//!   sends the next call to the other relay, the running call's media keeps flowing
//!   until its BYE, then the relay exits by itself. SIGHUP does the same to a relay
//!   started with `--sighup halt` (MediaProxy's relay), and reloads one without.
//!
//! This dispatcher has no `[dispatcher.dialog_end]`, so a call lost with its relay is
//! reported and forgotten but its dialog is not ended on Kamailio here; ending dialogs
//! through Kamailio's JSON-RPC is checked in `dispatcher_kamailio.rs` (a timed-out call)
//! and, for lost calls, only in the dispatcher's `accounting_tests.rs`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mediagate_testkit::process::Peer;

#[path = "common/sip_nat.rs"]
mod sip_nat;

use sip_nat::*;

const PHONE_A_NAT: &str = "198.51.100.2";
const PHONE_B_NAT: &str = "198.51.100.6";
const RELAY1: &str = "203.0.113.1";
const RELAY2: &str = "203.0.113.2";
const LINK: &str = "127.0.0.1:25060";

fn mediagate(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mediagate {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The quick start's certificates: a CA in `pki`, node directories `dispatcher`,
/// `relay1/tls` and `relay2/tls` (each relay runs in its own directory so its state
/// under `./var` is its own).
fn certificates(work: &Path) {
    mediagate(work, &["cert", "ca", "--dir", "pki"]);
    mediagate(
        work,
        &[
            "cert",
            "issue",
            "--ca",
            "pki",
            "--dir",
            "dispatcher",
            "dispatcher",
        ],
    );
    for relay in ["relay1", "relay2"] {
        let dir = format!("{relay}/tls");
        mediagate(
            work,
            &["cert", "issue", "--ca", "pki", "--dir", &dir, relay],
        );
    }
}

/// Kamailio's config: the `mediaproxy` module on `socket`, preferring relay1.
fn kamailio_cfg(work: &WorkDir, socket: &str) {
    let text = std::fs::read_to_string(data("kamailio_mediaproxy.cfg"))
        .unwrap()
        .replace("__MEDIAPROXY_SOCKET__", socket)
        .replace("__MEDIA_RELAY__", RELAY1);
    std::fs::write(work.0.join("kamailio.cfg"), text).unwrap();
}

/// A caller scenario like `uac.xml` that keeps the call up for `hold_ms` after the
/// audio starts, written as `name`.
fn long_caller(work: &WorkDir, name: &str, hold_ms: u32) {
    let text = std::fs::read_to_string(data("uac.xml")).unwrap();
    let text = text.replace(
        "<pause milliseconds=\"4000\"/>",
        &format!("<pause milliseconds=\"{hold_ms}\"/>"),
    );
    assert!(text.contains(&format!("\"{hold_ms}\"")), "uac.xml changed");
    std::fs::write(work.0.join(name), text).unwrap();
}

fn relay(topo: &Topology, work: &WorkDir, name: &str, address: &str, ports: &str) -> Peer {
    relay_with(topo, work, name, address, ports, &[])
}

/// A relay process as the quick start runs it, with `extra` flags.
fn relay_with(
    topo: &Topology,
    work: &WorkDir,
    name: &str,
    address: &str,
    ports: &str,
    extra: &[&str],
) -> Peer {
    let bin = env!("CARGO_BIN_EXE_mediagate");
    let mut args = vec![
        bin,
        "relay",
        "--dispatcher",
        LINK,
        "--address",
        address,
        "--ports",
        ports,
        "--tls-dir",
        "tls",
    ];
    args.extend_from_slice(extra);
    topo.spawn("pub", name, &work.0.join(name), &args)
}

/// Sends one MediaProxy request to the dispatcher's socket (reachable from outside the
/// namespace: it is a file) and returns the reply line.
fn mediaproxy(work: &WorkDir, request: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut conn = std::os::unix::net::UnixStream::connect(work.0.join("run/dispatcher.sock"))
        .expect("the dispatcher's socket");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// A new call's offer as Kamailio's module sends it, from a phone at 192.0.2.5.
fn probe_update(call_id: &str) -> String {
    format!(
        "update\r\ntype: request\r\ncall_id: {call_id}\r\nfrom_tag: ft\r\nto_tag: \r\n\
         signaling_ip: 192.0.2.5\r\nmedia_relay: {RELAY1}\r\nmedia: audio:192.0.2.5:4000:sendrecv\r\n\r\n"
    )
}

/// The namespace of the NAT whose public address is `nat`.
fn nat_ns(topo: &Topology, nat: &str) -> String {
    topo.ns(if nat == PHONE_A_NAT { "nata" } else { "natb" })
}

/// Counts the UDP packets (IP length 280: the pcap's audio) each relay address sends
/// to each phone's NAT, as they arrive at that NAT (its `mangle` PREROUTING chain):
/// counted on arrival, because a relay forwarding in the kernel (the eBPF fast path)
/// sends past the relay host's own OUTPUT chain.
fn count_relay_output(topo: &Topology) {
    for relay in [RELAY1, RELAY2] {
        for nat in [PHONE_A_NAT, PHONE_B_NAT] {
            run(&[
                "ip",
                "netns",
                "exec",
                &nat_ns(topo, nat),
                "iptables",
                "-t",
                "mangle",
                "-A",
                "PREROUTING",
                "-p",
                "udp",
                "-s",
                relay,
                "-d",
                nat,
                "-m",
                "length",
                "--length",
                "280",
                "-j",
                "ACCEPT",
            ]);
        }
    }
}

/// Packets `relay` has sent to the phone behind `nat` so far.
fn sent(topo: &Topology, relay: &str, nat: &str) -> u64 {
    let table = output(&[
        "ip",
        "netns",
        "exec",
        &nat_ns(topo, nat),
        "iptables",
        "-t",
        "mangle",
        "-L",
        "PREROUTING",
        "-v",
        "-x",
        "-n",
    ]);
    table
        .lines()
        .find(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.contains(&relay) && cols.contains(&nat)
        })
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter for {relay} -> {nat} in:\n{table}"))
}

/// Packets each relay has sent towards both phones: `[(to A, to B) of relay1, of relay2]`.
fn relayed(topo: &Topology) -> [(u64, u64); 2] {
    [RELAY1, RELAY2].map(|r| (sent(topo, r, PHONE_A_NAT), sent(topo, r, PHONE_B_NAT)))
}

fn lines_with(peer: &Peer, needle: &str) -> usize {
    peer.stderr_tail()
        .iter()
        .chain(&peer.stdout_tail())
        .filter(|l| l.contains(needle))
        .count()
}

/// Waits until `peer` has printed `needle` in at least `n` lines.
fn wait_for_lines(peer: &Peer, needle: &str, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while lines_with(peer, needle) < n {
        assert!(
            Instant::now() < deadline,
            "{} printed {needle:?} fewer than {n} times:\n{}",
            peer.name(),
            peer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `check` holds, polling.
fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A call from phone A to phone B with `scenario` as the caller's; returns the two
/// SIPp peers (callee first) without waiting for them.
fn start_call(topo: &Topology, work: &WorkDir, scenario: &str) -> (Peer, Peer) {
    let uas = sipp_callee(
        topo,
        work,
        "phoneb",
        "sipp-uas",
        &["-sf", "uas.xml", "-i", "10.2.0.2"],
    );
    let uac = sipp(
        topo,
        work,
        "phonea",
        "sipp-uac",
        &["203.0.113.1:5060", "-sf", scenario, "-i", "10.1.0.2"],
    );
    (uas, uac)
}

/// Runs a whole short call and returns what each relay sent during it.
fn call(topo: &Topology, work: &WorkDir, others: &[&Peer]) -> [(u64, u64); 2] {
    let before = relayed(topo);
    let (uas, uac) = start_call(topo, work, "uac.xml");
    finish_call(&uac, &uas, others);
    let after = relayed(topo);
    [0, 1].map(|i| (after[i].0 - before[i].0, after[i].1 - before[i].1))
}

/// Asserts that the call's media went both ways through relay `on` (0 or 1) only.
fn assert_relayed_by(got: [(u64, u64); 2], on: usize, what: &str) {
    let (to_a, to_b) = got[on];
    assert!(
        to_a >= 80 && to_b >= 80,
        "{what}: relay{} sent {to_a} packets to A and {to_b} to B: {got:?}",
        on + 1
    );
    assert_eq!(
        got[1 - on],
        (0, 0),
        "{what}: the other relay relayed: {got:?}"
    );
}

struct Cluster {
    topo: Topology,
    work: WorkDir,
    dispatcher: Peer,
    kamailio: Peer,
}

fn cluster(name: &str) -> (Cluster, Peer, Peer) {
    require_peers();
    let work = WorkDir::new(name);
    certificates(&work.0);
    cluster_with(work, &[])
}

/// The cluster in `work` (certificates made); `relay1_extra` are more flags for relay1.
fn cluster_with(work: WorkDir, relay1_extra: &[&str]) -> (Cluster, Peer, Peer) {
    let socket = work.0.join("run/dispatcher.sock");
    let socket_text = socket.to_str().unwrap().to_owned();
    kamailio_cfg(&work, &socket_text);
    let topo = Topology::build();
    count_relay_output(&topo);
    let bin = env!("CARGO_BIN_EXE_mediagate");
    // The README's quick start, with the socket under the work directory.
    let dispatcher = topo.spawn(
        "pub",
        "dispatcher",
        &work.0,
        &[
            bin,
            "dispatcher",
            "--mediaproxy-socket",
            &socket_text,
            "--relays",
            LINK,
            "--tls-dir",
            "dispatcher",
        ],
    );
    wait_for_line(
        &dispatcher,
        "listening for MediaProxy requests",
        Duration::from_secs(10),
    );
    let relay1 = relay_with(&topo, &work, "relay1", RELAY1, "30000-30999", relay1_extra);
    let relay2 = relay(&topo, &work, "relay2", RELAY2, "31000-31999");
    for r in ["relay relay1 linked", "relay relay2 linked"] {
        wait_for_line(&dispatcher, r, Duration::from_secs(15));
    }
    let kamailio = kamailio(&topo, &work);
    (
        Cluster {
            topo,
            work,
            dispatcher,
            kamailio,
        },
        relay1,
        relay2,
    )
}

#[test]
fn a_relay_killed_mid_call_loses_its_calls_new_calls_avoid_it_and_it_is_used_again_after_restart() {
    let (c, relay1, relay2) = cluster("dcluster-kill");

    // A call on relay1 (Kamailio's preference), long enough to kill relay1 under it.
    long_caller(&c.work, "uac_long.xml", 15_000);
    let (long_uas, long_uac) = start_call(&c.topo, &c.work, "uac_long.xml");
    wait_until(
        "media both ways through relay1",
        Duration::from_secs(20),
        || {
            let [(a, b), _] = relayed(&c.topo);
            a >= 20 && b >= 20
        },
    );
    assert_eq!(relayed(&c.topo)[1], (0, 0), "relay2 relayed the first call");
    relay1.kill();
    wait_for_line(
        &c.dispatcher,
        "disconnected; its calls wait for it to come back",
        Duration::from_secs(10),
    );
    // The caller hangs up; the dispatcher cannot reach relay1 for the remove.
    finish_call(&long_uac, &long_uas, &[&c.dispatcher, &c.kamailio]);

    // Kamailio still prefers relay1's address: the dispatcher places the call on relay2.
    let got = call(&c.topo, &c.work, &[&c.dispatcher, &c.kamailio, &relay2]);
    assert_relayed_by(got, 1, "a call while relay1 is dead");

    // relay1 comes back: it reconnects (same id), holds no call, so the dispatcher
    // forgets the call it had placed there and reports it.
    let relay1 = relay(&c.topo, &c.work, "relay1", RELAY1, "30000-30999");
    wait_for_lines(
        &c.dispatcher,
        "relay relay1 linked",
        2,
        Duration::from_secs(15),
    );
    wait_for_line(
        &c.dispatcher,
        "on relay relay1 is over (relay lost the call)",
        Duration::from_secs(10),
    );
    let got = call(&c.topo, &c.work, &[&c.dispatcher, &c.kamailio, &relay1]);
    assert_relayed_by(got, 0, "a call after relay1 is back");

    let status = c.dispatcher.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "dispatcher exit: {}",
        c.dispatcher.diagnostics()
    );
    drop((relay1, relay2));
}

/// Keeps one long call up on `relay`, signals it with `signal`, and checks the graceful
/// shutdown: the dispatcher learns from the relay's status that it is halting, a new
/// call (preferring relay1) is placed elsewhere or refused, the running call's media
/// keeps flowing through the halting relay until the BYE, then the relay exits.
fn halt_with_a_running_call(
    c: &Cluster,
    relay: &Peer,
    on: usize,
    signal: &str,
    probe: &str,
    expect: &str,
) {
    let name = format!("relay{}", on + 1);
    let before = relayed(&c.topo)[on];
    let (long_uas, long_uac) = start_call(&c.topo, &c.work, "uac_long.xml");
    wait_until(
        &format!("media both ways through {name}"),
        Duration::from_secs(20),
        || {
            let (a, b) = relayed(&c.topo)[on];
            a >= before.0 + 20 && b >= before.1 + 20
        },
    );
    relay.signal(signal);
    // Seen through the relay's status over the link: no offer has been refused yet.
    wait_for_line(
        &c.dispatcher,
        &format!("relay {name} is halting: no new calls for it"),
        Duration::from_secs(15),
    );
    let reply = mediaproxy(&c.work, &probe_update(probe));
    assert!(
        reply.starts_with(expect),
        "a new call while {name} halts got {reply:?}, wanted {expect:?}\n{}",
        c.dispatcher.diagnostics()
    );
    if reply != "error" {
        let removed = mediaproxy(
            &c.work,
            &format!("remove\r\ncall_id: {probe}\r\nfrom_tag: ft\r\n\r\n"),
        );
        assert_eq!(removed, "removed");
    }
    let at_halt = relayed(&c.topo)[on];
    wait_until(
        &format!("media still both ways through halting {name}"),
        Duration::from_secs(10),
        || {
            let (a, b) = relayed(&c.topo)[on];
            a >= at_halt.0 + 20 && b >= at_halt.1 + 20
        },
    );
    assert!(
        relay.try_status().is_none(),
        "{name} exited with a call running:\n{}",
        relay.diagnostics()
    );
    finish_call(&long_uac, &long_uas, &[&c.dispatcher, &c.kamailio, relay]);
    let status = relay.wait_timeout(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "{name} did not exit by itself after its last call: {}",
        relay.diagnostics()
    );
}

#[test]
fn sighup_halt_and_sigterm_let_running_calls_finish_while_new_calls_avoid_the_relay() {
    require_peers();
    let work = WorkDir::new("dcluster-halt");
    certificates(&work.0);
    // relay1 halts on SIGHUP, as MediaProxy's relay; relay2 keeps SIGHUP for reload.
    let (c, relay1, relay2) = cluster_with(work, &["--sighup", "halt"]);
    long_caller(&c.work, "uac_long.xml", 8_000);

    // SIGHUP relay1 mid-call: the probe call goes to relay2.
    halt_with_a_running_call(&c, &relay1, 0, "HUP", "probe-1", &format!("{RELAY2} "));
    // SIGHUP is a reload for relay2 (the default): it keeps taking calls.
    relay2.signal("HUP");
    wait_for_line(&relay2, "SIGHUP: reloading", Duration::from_secs(15));
    // SIGTERM relay2 mid-call: no relay is left for a new call, the proxy gets `error`.
    halt_with_a_running_call(&c, &relay2, 1, "TERM", "probe-2", "error");

    let status = c.dispatcher.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "dispatcher exit: {}",
        c.dispatcher.diagnostics()
    );
}
