//! The dispatcher against real peers (issue 15): Kamailio 5.6 from Debian reaches two
//! relays through one `mediagate dispatcher`, once with its `mediaproxy` module
//! (`engage_media_proxy`, the dispatcher's UNIX socket) and once with its `rtpengine`
//! module (the dispatcher's `ng` port). The relays run inside the dispatcher's process
//! (`[[dispatcher.local_relay]]`) on 203.0.113.1 and 203.0.113.2; two SIPp phones,
//! each behind a MASQUERADE NAT in its own namespace, call through Kamailio and play
//! RTP from Debian's `g711a.pcap` (the network of `common/sip_nat.rs`).
//!
//! Checked: media reaches both phones in both directions (iptables counters in each
//! phone's namespace); the call ran on the relay the policy chose (the record's local
//! addresses): MediaProxy's `media_relay` preference, and with `ng` a failover inside
//! the dispatcher from a relay out of ports to the other; the BYE (through the dialog
//! module for MediaProxy) deletes the call and its record is written with packets
//! both ways and the phones' NAT addresses latched. A call whose phones fall silent
//! is timed out by the relay and ended on Kamailio by the dispatcher (JSON-RPC
//! `dlg.end_dlg`), and accounted to FreeRADIUS and the records store; the CLI's
//! `mediagate dispatcher sessions|summary` read the running call. A chained call
//! (`[[dispatcher.chain]]`) runs through both relays, forwarding in the kernel, and
//! each relay records its half.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mediagate_ops::store::SqliteStore;
use mediagate_testkit::process::Peer;

#[path = "common/sip_nat.rs"]
mod sip_nat;

use sip_nat::*;

/// Writes `template` from the peers' files with `replacements` applied, as
/// `kamailio.cfg` in the work directory.
fn kamailio_cfg(work: &WorkDir, template: &str, replacements: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(data(template)).unwrap();
    for (from, to) in replacements {
        text = text.replace(from, to);
    }
    std::fs::write(work.0.join("kamailio.cfg"), text).unwrap();
}

/// Writes the dispatcher's config: two local relays, local1 on 203.0.113.1 with
/// `local1_ports`, local2 on 203.0.113.2; `front` names the front doors. Returns its
/// path and state directory.
fn dispatcher_cfg(work: &WorkDir, front: &str, local1_ports: &str) -> (PathBuf, PathBuf) {
    let state = work.0.join("dispatcher");
    let text = format!(
        "state_dir = {state:?}\n[edge]\nenabled = false\n[admin]\nlisten = []\n\
         [relay]\ndelete_delay = \"1s\"\n\
         [dispatcher]\nenabled = true\n{front}\n\
         [[dispatcher.local_relay]]\nname = \"local1\"\naddress = \"203.0.113.1\"\nports = \"{local1_ports}\"\n\
         [[dispatcher.local_relay]]\nname = \"local2\"\naddress = \"203.0.113.2\"\nports = \"31000-31999\"\n"
    );
    let path = work.0.join("dispatcher.toml");
    std::fs::write(&path, text).unwrap();
    (path, state)
}

fn start_dispatcher(topo: &Topology, work: &WorkDir, cfg: &Path, ready: &str) -> Peer {
    let bin = env!("CARGO_BIN_EXE_mediagate");
    let dispatcher = topo.spawn(
        "pub",
        "dispatcher",
        &work.0,
        &[bin, "run", "-c", cfg.to_str().unwrap()],
    );
    wait_for_line(&dispatcher, ready, Duration::from_secs(10));
    dispatcher
}

fn records(state: &Path) -> Vec<mediagate_relay::record::SessionRecord> {
    SqliteStore::open(&state.join("accounting.sqlite"))
        .unwrap()
        .records::<mediagate_relay::record::SessionRecord>(10)
        .unwrap()
}

/// Phone A calls phone B through Kamailio (SIPp, the capture played both ways) and
/// hangs up; media must have reached both phones. Returns the two SIPp peers.
fn place_call(topo: &Topology, work: &WorkDir, kamailio: &Peer, dispatcher: &Peer) -> (Peer, Peer) {
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
        &["203.0.113.1:5060", "-sf", "uac.xml", "-i", "10.1.0.2"],
    );
    finish_call(&uac, &uas, &[kamailio, dispatcher]);
    let (at_a, at_b) = (
        topo.received("phonea", "280"),
        topo.received("phoneb", "280"),
    );
    assert!(
        at_a >= 80 && at_b >= 80,
        "phone A got {at_a}, phone B got {at_b} RTP packets\n{}\n{}\n{}",
        dispatcher.diagnostics(),
        kamailio.diagnostics(),
        uac.diagnostics()
    );
    (uac, uas)
}

/// Kamailio's config with its `rtpengine` module, and the dispatcher's with `ng` on the
/// port that module talks to (the one [`start_kamailio_ng`] waits for); `local1_ports`
/// as in [`dispatcher_cfg`].
fn rtpengine_module_cfg(work: &WorkDir, local1_ports: &str) -> (PathBuf, PathBuf) {
    kamailio_cfg(
        work,
        "kamailio.cfg",
        &[("__RTPENGINE_SOCK__", "udp:127.0.0.1:2223")],
    );
    dispatcher_cfg(work, "ng_listen_udp = [\"127.0.0.1:2223\"]", local1_ports)
}

/// Kamailio with its `rtpengine` module on the dispatcher's `ng` port, once the
/// module has found it.
fn start_kamailio_ng(topo: &Topology, work: &WorkDir) -> Peer {
    let kamailio = topo.spawn(
        "pub",
        "kamailio",
        &work.0,
        &["kamailio", "-f", "kamailio.cfg", "-DD", "-E"],
    );
    wait_for_line(
        &kamailio,
        "<udp:127.0.0.1:2223> found",
        Duration::from_secs(10),
    );
    kamailio
}

/// Runs one call between the phones and checks it end to end; `relay_ip` is where the
/// call's media must have been relayed.
fn call_through(
    topo: &Topology,
    work: &WorkDir,
    dispatcher: Peer,
    state: &Path,
    kamailio: Peer,
    relay_ip: &str,
) {
    let (uac, uas) = place_call(topo, work, &kamailio, &dispatcher);
    // The BYE deleted the call; after the 1 s delete delay the relay writes the record.
    wait_for_line(&dispatcher, "ended (deleted)", Duration::from_secs(10));
    let status = dispatcher.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "dispatcher exit: {}",
        dispatcher.diagnostics()
    );
    let records = records(state);
    assert_eq!(records.len(), 1, "one call, one record: {records:?}");
    let rec = &records[0];
    assert_eq!(rec.reason, "deleted");
    let stream = &rec.streams[0];
    assert!(
        stream.caller.packets >= 80 && stream.callee.packets >= 80,
        "{rec:?}"
    );
    for leg in [&stream.caller, &stream.callee] {
        assert!(
            leg.local.starts_with(&format!("{relay_ip}:")),
            "media relayed on {} instead of {relay_ip}: {rec:?}",
            leg.local
        );
    }
    assert_eq!(
        stream.caller.remote, "198.51.100.2:6000",
        "caller latched at its NAT"
    );
    assert_eq!(
        stream.callee.remote, "198.51.100.6:6000",
        "callee latched at its NAT"
    );
    drop((uac, uas, kamailio));
}

#[test]
fn kamailio_mediaproxy_module_through_the_dispatcher_to_the_preferred_relay() {
    require_peers();
    let work = WorkDir::new("dispatcher-mediaproxy");
    let socket = work.0.join("run/dispatcher.sock");
    let socket_text = socket.to_str().unwrap().to_owned();
    // Kamailio names 203.0.113.2 (local2) in media_relay; without the preference the
    // policy would pick local1 (both idle, lower id first).
    kamailio_cfg(
        &work,
        "kamailio_mediaproxy.cfg",
        &[
            ("__MEDIAPROXY_SOCKET__", &socket_text),
            ("__MEDIA_RELAY__", "203.0.113.2"),
        ],
    );
    let (cfg, state) = dispatcher_cfg(
        &work,
        &format!("mediaproxy_socket = {socket_text:?}"),
        "30000-30999",
    );
    let topo = Topology::build();
    let dispatcher = start_dispatcher(&topo, &work, &cfg, "listening for MediaProxy requests");
    let mode = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o660
    );
    let kamailio = kamailio(&topo, &work);
    call_through(&topo, &work, dispatcher, &state, kamailio, "203.0.113.2");
}

#[test]
fn kamailio_rtpengine_module_through_the_dispatcher_with_failover_between_relays() {
    require_peers();
    let work = WorkDir::new("dispatcher-ng");
    // local1 has one port pair: the offer needs two, so it answers "Ran out of ports"
    // and the dispatcher must place the call on local2 within Kamailio's timeout.
    let (cfg, state) = rtpengine_module_cfg(&work, "30000-30001");
    let topo = Topology::build();
    let dispatcher = start_dispatcher(&topo, &work, &cfg, "listening for ng commands");
    let kamailio = start_kamailio_ng(&topo, &work);
    call_through(&topo, &work, dispatcher, &state, kamailio, "203.0.113.2");
}

/// The RADIUS secret of the accounting test.
const RADIUS_SECRET: &str = "t3st-secret";

/// A call through Kamailio's `mediaproxy` module whose phones play the capture, then
/// fall silent: the relay times the media out (2 s), the dispatcher's accounting ends
/// the dialog on Kamailio through its JSON-RPC datagram socket (`dlg.end_dlg` with the
/// module's `dialog_id`), so both phones get a BYE; the call's record is in the
/// records store and FreeRADIUS's detail file. While the call runs,
/// `mediagate dispatcher sessions|summary` read it through the admin API.
#[test]
fn kamailio_mediaproxy_call_that_times_out_is_ended_and_accounted() {
    require_peers();
    let work = WorkDir::new("dispatcher-timeout");
    let socket = work.0.join("run/dispatcher.sock");
    let socket_text = socket.to_str().unwrap().to_owned();
    kamailio_cfg(
        &work,
        "kamailio_mediaproxy.cfg",
        &[
            ("__MEDIAPROXY_SOCKET__", &socket_text),
            ("__MEDIA_RELAY__", ""),
            (
                "loadmodule \"mediaproxy.so\"",
                "loadmodule \"mediaproxy.so\"\nloadmodule \"jsonrpcs.so\"\n\
                 modparam(\"jsonrpcs\", \"transport\", 4)\n\
                 modparam(\"jsonrpcs\", \"dgram_socket\", \"udp:127.0.0.1:8090\")",
            ),
        ],
    );
    let topo = Topology::build();
    let dictionary =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/radius/dictionary.mediagate");
    let radius = mediagate_testkit::freeradius::FreeRadius::start_in_netns(
        &topo.ns("pub"),
        RADIUS_SECRET,
        &[&dictionary],
    )
    .expect("start FreeRADIUS");
    let state = work.0.join("dispatcher");
    let cfg = work.0.join("dispatcher.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = {state:?}\n[edge]\nenabled = false\n[admin]\nlisten = [\"127.0.0.1:9554\"]\n\
             [relay]\ndelete_delay = \"1s\"\nmedia_timeout = \"2s\"\n\
             [dispatcher]\nenabled = true\nmediaproxy_socket = {socket_text:?}\n\
             [dispatcher.radius]\nserver = \"{}\"\nsecret = \"{RADIUS_SECRET}\"\ntimeout = \"300ms\"\n\
             [dispatcher.dialog_end]\nproxy = \"kamailio\"\ntarget = \"udp:127.0.0.1:8090\"\n\
             [[dispatcher.local_relay]]\nname = \"local1\"\naddress = \"203.0.113.1\"\nports = \"30000-30999\"\n",
            radius.addr()
        ),
    )
    .unwrap();
    let dispatcher = start_dispatcher(&topo, &work, &cfg, "listening for MediaProxy requests");
    let kamailio = kamailio(&topo, &work);
    let uas = sipp_callee(
        &topo,
        &work,
        "phoneb",
        "sipp-uas",
        &[
            "-sf",
            "uas_stop.xml",
            "-i",
            "10.2.0.2",
            "-key",
            "public_ip",
            "198.51.100.6",
        ],
    );
    let uac = sipp(
        &topo,
        &work,
        "phonea",
        "sipp-uac",
        &[
            "203.0.113.1:5060",
            "-sf",
            "uac_stop.xml",
            "-i",
            "10.1.0.2",
            "-key",
            "public_ip",
            "198.51.100.2",
        ],
    );

    // While media flows: the CLI reads the running dispatcher through its admin API.
    let run_cli = |what: &str| {
        std::process::Command::new("ip")
            .args(["netns", "exec", &topo.ns("pub")])
            .arg(env!("CARGO_BIN_EXE_mediagate"))
            .args(["dispatcher", what, "--admin", "http://127.0.0.1:9554"])
            .output()
            .unwrap()
    };
    let cli = |what: &str| {
        let out = run_cli(what);
        assert!(
            out.status.success(),
            "mediagate dispatcher {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    // The call is set up through SIPp, Kamailio and the dispatcher: on a loaded machine
    // that takes a while, so wait (bounded) for its media to be active rather than
    // reading after a fixed pause.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run_cli("sessions");
        let active = out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|s| s[0]["streams"][0]["status"] == "active");
        if active {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the call never listed as active: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            dispatcher.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let sessions = cli("sessions");
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "{sessions}");
    assert_eq!(sessions[0]["streams"][0]["status"], "active", "{sessions}");
    assert!(
        sessions[0]["from_uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("caller@")),
        "{sessions}"
    );
    let summary = cli("summary");
    assert_eq!(summary[0]["ip"], "203.0.113.1", "{summary}");
    assert_eq!(summary[0]["session_count"], 1, "{summary}");

    // The capture ends, the media times out, Kamailio ends the dialog: both phones'
    // scenarios end with its BYE.
    for p in [&uac, &uas] {
        let status = p.wait_timeout(Duration::from_secs(35));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not get its BYE:\n{}\n{}\n{}",
            p.name(),
            p.diagnostics(),
            kamailio.diagnostics(),
            dispatcher.diagnostics()
        );
    }
    // The dispatcher logs it once Kamailio has answered its request, which may come
    // after the phones got their BYEs.
    wait_for_line(
        &dispatcher,
        "ended on the SIP proxy",
        Duration::from_secs(15),
    );

    // FreeRADIUS got the call's record.
    let deadline = Instant::now() + Duration::from_secs(10);
    while radius.records().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let acct = radius.records();
    assert_eq!(
        acct.len(),
        1,
        "{}\n{}",
        radius.detail(),
        radius.diagnostics()
    );
    let field = |name: &str| {
        acct[0]
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {:?}", acct[0]))
    };
    let status = dispatcher.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "dispatcher exit: {}",
        dispatcher.diagnostics()
    );
    // The records store: the local relay's record, once (the dispatcher does not
    // write a local relay's call a second time).
    let records = records(&state);
    assert_eq!(records.len(), 1, "one call, one record: {records:?}");
    let rec = &records[0];
    assert_eq!(rec.reason, "media timeout");
    let stream = &rec.streams[0];
    assert!(
        stream.caller.packets >= 80 && stream.callee.packets >= 80,
        "{rec:?}"
    );
    assert_eq!(field("Acct-Session-Id"), rec.call_id);
    assert_eq!(field("Media-Info"), "timeout");
    assert_eq!(field("Sip-From-Tag"), rec.from_tag);
    assert_eq!(field("Sip-To-Tag"), rec.to_tag);
    assert_eq!(field("NAS-IP-Address"), "203.0.113.1");
    assert_eq!(field("Media-Codecs"), stream.caller.codec);
    assert_eq!(field("Acct-Input-Octets"), stream.caller.bytes.to_string());
    assert_eq!(field("Acct-Output-Octets"), stream.callee.bytes.to_string());
    drop((uac, uas, kamailio, radius));
}

/// A chained call through Kamailio's `rtpengine` module: a `[[dispatcher.chain]]` rule
/// (`always`) puts the caller's side on local1 and the callee's on local2, so the media
/// goes phone A's NAT → local1 → local2 → phone B's NAT and back. Each relay writes
/// its own record of the call: local1 latched phone A's NAT and talks to local2,
/// local2 talks to local1 and latched phone B's NAT; packets flowed both ways on both.
/// The relays forward in the kernel (`forward_io = "ebpf"`): between them the datagrams
/// stay on this host, which the eBPF program once got wrong (they were dropped).
#[test]
fn kamailio_rtpengine_module_chained_call_through_two_relays() {
    require_peers();
    let work = WorkDir::new("dispatcher-chain");
    let (cfg, state) = rtpengine_module_cfg(&work, "30000-30999");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "[[dispatcher.relay_group]]\nname = \"outer\"\nrelays = [\"local1\"]\n\
         [[dispatcher.relay_group]]\nname = \"inner\"\nrelays = [\"local2\"]\n\
         [[dispatcher.chain]]\nfirst = \"outer\"\nsecond = \"inner\"\nalways = true\n",
    );
    // The kernel path explicitly: relay 1 hands local2 its datagrams on this host, which
    // arrive from a phone's interface (see relay_fwd.bpf.c, send()).
    let text = text.replace("[relay]\n", "[relay]\nforward_io = \"ebpf\"\n");
    std::fs::write(&cfg, text).unwrap();
    let topo = Topology::build();
    let dispatcher = start_dispatcher(&topo, &work, &cfg, "listening for ng commands");
    let kamailio = start_kamailio_ng(&topo, &work);
    let (uac, uas) = place_call(&topo, &work, &kamailio, &dispatcher);
    // Both relays' records are written after the 1 s delete delay.
    let deadline = Instant::now() + Duration::from_secs(10);
    while records(&state).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = dispatcher.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "dispatcher exit: {}",
        dispatcher.diagnostics()
    );
    let records = records(&state);
    assert_eq!(records.len(), 2, "one record per relay: {records:?}");
    assert_eq!(records[0].call_id, records[1].call_id, "{records:?}");
    let on = |ip: &str| {
        records
            .iter()
            .find(|r| r.streams[0].caller.local.starts_with(&format!("{ip}:")))
            .unwrap_or_else(|| panic!("no record of relay {ip}: {records:?}"))
    };
    let (outer, inner) = (&on("203.0.113.1").streams[0], &on("203.0.113.2").streams[0]);
    for (stream, ip) in [(outer, "203.0.113.1"), (inner, "203.0.113.2")] {
        assert!(
            stream.callee.local.starts_with(&format!("{ip}:")),
            "{stream:?}"
        );
        assert!(
            stream.caller.packets >= 80 && stream.callee.packets >= 80,
            "{stream:?}"
        );
    }
    assert_eq!(outer.caller.remote, "198.51.100.2:6000", "{outer:?}");
    assert!(
        outer.callee.remote.starts_with("203.0.113.2:"),
        "local1 sends to local2: {outer:?}"
    );
    assert!(
        inner.caller.remote.starts_with("203.0.113.1:"),
        "local2 hears local1: {inner:?}"
    );
    assert_eq!(inner.callee.remote, "198.51.100.6:6000", "{inner:?}");
    drop((uac, uas, kamailio));
}
