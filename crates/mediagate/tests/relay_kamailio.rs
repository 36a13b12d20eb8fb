//! The relay against real peers (issue 4): Kamailio 5.6 from Debian with its
//! `rtpengine` module drives two `mediagate relay` processes over `ng`; two SIPp
//! instances, each in its own network namespace behind a NAT router (iptables
//! MASQUERADE), call through Kamailio and play RTP from Debian's `g711a.pcap`.
//!
//! Checked: media reaches both phones through the relay in both directions (counted by
//! iptables rules in each phone's namespace); Kamailio fails over from the first relay,
//! which answers `Ran out of ports`, to the second; BYE deletes the session and the
//! record lands in SQLite with packets both ways; a stranger spraying RTP over the
//! whole port range during the call is neither latched nor forwarded (no packet of its
//! size reaches a phone, and the record counts it as refused).
//!
//! Topology (all addresses inside namespaces created and deleted by the test):
//!
//! ```text
//!  phone A 10.1.0.2 -- 10.1.0.1 natA 198.51.100.2 --+                       +-- 198.51.100.6 natB 10.2.0.1 -- 10.2.0.2 phone B
//!                                                   | 198.51.100.1  .5      |   (DNAT udp/5060 to phone B)
//!                                                   +------ pub (Kamailio, relays on 203.0.113.1) ---+
//!                                    stranger 198.51.100.10 -- .9 -----------+
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mediagate_ops::store::SqliteStore;
use mediagate_testkit::process::Peer;

#[path = "common/sip_nat.rs"]
mod sip_nat;

use sip_nat::*;

impl WorkDir {
    /// Writes Kamailio's config with its relay set.
    fn kamailio_cfg(&self, rtpengine_sock: &str) {
        let text = std::fs::read_to_string(data("kamailio.cfg")).unwrap();
        std::fs::write(
            self.0.join("kamailio.cfg"),
            text.replace("__RTPENGINE_SOCK__", rtpengine_sock),
        )
        .unwrap();
    }

    /// Writes a relay config; returns its path and state directory.
    fn relay_cfg(&self, name: &str, ng: &str, ports: &str, extra: &str) -> (PathBuf, PathBuf) {
        let state = self.0.join(name);
        let text = format!(
            "state_dir = {state:?}\n[edge]\nenabled = false\n[relay]\nenabled = true\n\
             ng_listen_udp = [\"{ng}\"]\nmedia_address = [{{ address = \"203.0.113.1\" }}]\n\
             ports = \"{ports}\"\n{extra}"
        );
        let path = self.0.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        (path, state)
    }
}

/// The main relay's operations API, inside the relays' namespace.
const RELAY_API_PORT: u16 = 19_554;

fn api_get(topo: &Topology, path: &str) -> String {
    output(&[
        "ip",
        "netns",
        "exec",
        &topo.ns("pub"),
        "curl",
        "-sS",
        "--max-time",
        "2",
        &format!("http://127.0.0.1:{RELAY_API_PORT}{path}"),
    ])
}

/// The first call the main relay's API lists, once it has both parties' codecs.
fn wait_for_api_call(topo: &Topology) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = api_get(topo, "/api/v1/relay/calls");
        if let Ok(serde_json::Value::Array(calls)) = serde_json::from_str(&text) {
            if let Some(call) = calls.into_iter().find(|c| {
                c["streams"][0]["callee"]["codec"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
            }) {
                return call;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no answered call in the API: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_relay(topo: &Topology, work: &WorkDir, name: &str, cfg: &Path) -> Peer {
    let bin = env!("CARGO_BIN_EXE_mediagate");
    let relay = topo.spawn(
        "pub",
        name,
        &work.0,
        &[bin, "run", "-c", cfg.to_str().unwrap()],
    );
    wait_for_line(&relay, "listening for ng commands", Duration::from_secs(10));
    relay
}

fn start_kamailio(topo: &Topology, work: &WorkDir, relays: &[&str]) -> Peer {
    let kamailio = topo.spawn(
        "pub",
        "kamailio",
        &work.0,
        &["kamailio", "-f", "kamailio.cfg", "-DD", "-E"],
    );
    for r in relays {
        wait_for_line(
            &kamailio,
            &format!("<udp:{r}> found"),
            Duration::from_secs(10),
        );
    }
    kamailio
}

fn records(state: &Path) -> Vec<mediagate_relay::record::SessionRecord> {
    SqliteStore::open(&state.join("accounting.sqlite"))
        .unwrap()
        .records::<mediagate_relay::record::SessionRecord>(10)
        .unwrap()
}

#[test]
fn kamailio_sipp_behind_nat_through_the_relay_with_failover() {
    require_peers();
    let work = WorkDir::new("kamailio");
    // The relay Kamailio prefers (weight 100) has one port pair: every offer needs two,
    // so it answers "Ran out of ports" and Kamailio must fail over to the second.
    work.kamailio_cfg("udp:127.0.0.1:2224=100 udp:127.0.0.1:2223=1");
    let (full_cfg, _) = work.relay_cfg(
        "relay-full",
        "127.0.0.1:2224",
        "31000-31001",
        "[admin]\nlisten = []\n",
    );
    let (main_cfg, main_state) = work.relay_cfg(
        "relay-main",
        "127.0.0.1:2223",
        "30000-30999",
        // The eBPF fast path or no start (issue 16).
        &format!("delete_delay = \"1s\"\nforward_io = \"ebpf\"\n[admin]\nlisten = [\"127.0.0.1:{RELAY_API_PORT}\"]\n"),
    );

    let topo = Topology::build();
    // The relays' host forwards, so the fast path may route media between the NATs'
    // links in the kernel (docs/relay.md: the incoming interface must forward).
    run(&[
        "ip",
        "netns",
        "exec",
        &topo.ns("pub"),
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.forwarding=1",
    ]);
    let full = start_relay(&topo, &work, "relay-full", &full_cfg);
    let relay = start_relay(&topo, &work, "relay-main", &main_cfg);
    let kamailio = start_kamailio(&topo, &work, &["127.0.0.1:2223", "127.0.0.1:2224"]);

    let uas = sipp_callee(
        &topo,
        &work,
        "phoneb",
        "sipp-uas",
        &["-sf", "uas.xml", "-i", "10.2.0.2"],
    );
    let uac = sipp(
        &topo,
        &work,
        "phonea",
        "sipp-uac",
        &["203.0.113.1:5060", "-sf", "uac.xml", "-i", "10.1.0.2"],
    );
    // The running call, as the operations API shows it (issue 11): its streams with the
    // phones' codec and the relay's addresses, and its counters in /metrics.
    let call = wait_for_api_call(&topo);
    let stream = &call["streams"][0];
    assert_eq!(stream["media_type"], "audio", "{call}");
    for leg in ["caller", "callee"] {
        assert_eq!(stream[leg]["codec"], "PCMA", "{leg}: {call}");
        assert!(
            stream[leg]["local"]
                .as_str()
                .is_some_and(|a| a.starts_with("203.0.113.1:")),
            "{leg}: {call}"
        );
    }
    let metrics = api_get(&topo, "/metrics");
    assert!(
        metrics.lines().any(|l| l == "mediagate_relay_calls 1"),
        "{metrics}"
    );
    // The stranger sprays the whole relay range while the call is set up and runs.
    let spray = topo.spawn(
        "evil",
        "stranger",
        &work.0,
        &["python3", "spray.py", "203.0.113.1", "30000", "30999", "5"],
    );

    finish_call(&uac, &uas, &[&kamailio]);
    // Most of the call's media went through the kernel, not the relay's sockets. The
    // relay reads the kernel's counters on its tick (and when the stream ends), so a
    // scrape right after the call may lag: read until it has caught up, bounded.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = api_get(&topo, "/metrics");
        let counter = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {name} in {metrics}")) as u64
        };
        let in_kernel = counter("mediagate_relay_kernel_forwarded_packets_total");
        let in_user_space = counter("mediagate_relay_forwarded_packets_total");
        if in_kernel > in_user_space {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kernel {in_kernel}, user space {in_user_space}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let spray_status = spray.wait_timeout(Duration::from_secs(15));
    assert!(
        spray_status.is_some_and(|s| s.success()),
        "{}",
        spray.diagnostics()
    );

    // Media reached both phones through the relay; nothing of the stranger's did.
    let (at_a, at_b) = (
        topo.received("phonea", "280"),
        topo.received("phoneb", "280"),
    );
    assert!(
        at_a >= 80 && at_b >= 80,
        "phone A got {at_a}, phone B got {at_b} RTP packets"
    );
    assert_eq!(
        topo.received("phonea", "100"),
        0,
        "stranger's packets reached phone A"
    );
    assert_eq!(
        topo.received("phoneb", "100"),
        0,
        "stranger's packets reached phone B"
    );

    // Failover: Kamailio tried the preferred relay, got the failover error, and the call
    // went on through the other one, which the record below shows.
    wait_for_line(&full, "failed: Ran out of ports", Duration::from_secs(10));
    // BYE deleted the session: after the 1 s delete delay the record is written.
    wait_for_line(&relay, "ended (deleted)", Duration::from_secs(10));
    let status = relay.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "relay exit: {}",
        relay.diagnostics()
    );

    let records = records(&main_state);
    assert_eq!(records.len(), 1, "one call, one record");
    let rec = &records[0];
    assert_eq!(rec.reason, "deleted");
    assert!(rec.duration_ms() >= 3000, "{rec:?}");
    assert!(
        rec.from_tag.contains("SIPpTag00") && rec.to_tag.contains("SIPpTag01"),
        "{rec:?}"
    );
    let stream = &rec.streams[0];
    assert!(
        stream.caller.packets >= 80 && stream.callee.packets >= 80,
        "{rec:?}"
    );
    assert_eq!(
        (stream.caller.codec.as_str(), stream.callee.codec.as_str()),
        ("PCMA", "PCMA")
    );
    assert_eq!(
        stream.caller.remote, "198.51.100.2:6000",
        "caller latched at its NAT"
    );
    assert_eq!(
        stream.callee.remote, "198.51.100.6:6000",
        "callee latched at its NAT"
    );
    assert!(
        stream.caller.refused + stream.callee.refused > 0,
        "the spray hit the call's ports and was refused: {rec:?}"
    );
    drop((uac, uas, kamailio, full));
}

#[test]
fn silent_call_times_out_and_kamailio_ends_it_with_bye() {
    require_peers();
    let work = WorkDir::new("kamailio-idle");
    work.kamailio_cfg("udp:127.0.0.1:2223");
    let (cfg, state) = work.relay_cfg(
        "relay",
        "127.0.0.1:2223",
        "30000-30999",
        "media_timeout = \"2s\"\nteardown_notify_url = \"http://127.0.0.1:5080/RPC\"\n",
    );
    let topo = Topology::build();
    let relay = start_relay(&topo, &work, "relay", &cfg);
    let kamailio = start_kamailio(&topo, &work, &["127.0.0.1:2223"]);
    let uas = sipp_callee(
        &topo,
        &work,
        "phoneb",
        "sipp-uas",
        &[
            "-sf",
            "uas_idle.xml",
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
            "uac_idle.xml",
            "-i",
            "10.1.0.2",
            "-key",
            "public_ip",
            "198.51.100.2",
        ],
    );
    // Both phones get Kamailio's BYE (their scenarios end with it) once the relay
    // reported the silent call.
    for phone in [&uac, &uas] {
        let status = phone.wait_timeout(Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not get its BYE:\n{}\n{}\n{}",
            phone.name(),
            phone.diagnostics(),
            relay.diagnostics(),
            kamailio.diagnostics()
        );
    }
    // Logged as the relay ends the call, racing its notice to Kamailio and the BYEs.
    wait_for_line(&relay, "ended (media timeout)", Duration::from_secs(15));
    let status = relay.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "relay exit: {}",
        relay.diagnostics()
    );
    let records = records(&state);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].reason, "media timeout");
    assert_eq!(records[0].streams[0].caller.packets, 0);
    drop((uac, uas, kamailio));
}
