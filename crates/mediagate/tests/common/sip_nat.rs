//! The SIP test network shared by the relay's and the dispatcher's Kamailio tests:
//! namespaces with MASQUERADE NATs in front of two SIPp phones, the peers' files, and
//! helpers to start programs inside the namespaces. Included with `#[path]` by
//! `relay_kamailio.rs`, `dispatcher_kamailio.rs` and `dispatcher_cluster.rs`, and by
//! `balancer_nat.rs` for its namespace helpers ([`add_netns`], [`veth`], [`run`]).
//!
//! Topology (all addresses inside namespaces created and deleted by the test):
//!
//! ```text
//!  phone A 10.1.0.2 -- 10.1.0.1 natA 198.51.100.2 --+                       +-- 198.51.100.6 natB 10.2.0.1 -- 10.2.0.2 phone B
//!                                                   | 198.51.100.1  .5      |   (DNAT udp/5060 to phone B)
//!                                                   +------ pub (Kamailio; relays on 203.0.113.1 and .2) ---+
//!                                    stranger 198.51.100.10 -- .9 -----------+
//! ```
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mediagate_testkit::process::{require_program, Peer};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace, deleted on drop (even when the test panics).
pub struct Netns {
    name: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Creates namespace `name` with its loopback up; it is deleted when the value drops.
pub fn add_netns(name: &str) -> Netns {
    run(&["ip", "netns", "add", name]);
    let ns = Netns {
        name: name.to_owned(),
    };
    run(&["ip", "-n", name, "link", "set", "lo", "up"]);
    ns
}

/// A veth pair from namespace `ns1` (end `if1`, address `addr1`) to `ns2` (`if2`,
/// `addr2`), both ends up.
pub fn veth(ns1: &str, if1: &str, addr1: &str, ns2: &str, if2: &str, addr2: &str) {
    run(&[
        "ip", "link", "add", if1, "type", "veth", "peer", "name", if2,
    ]);
    run(&["ip", "link", "set", if1, "netns", ns1]);
    run(&["ip", "link", "set", if2, "netns", ns2]);
    run(&["ip", "-n", ns1, "addr", "add", addr1, "dev", if1]);
    run(&["ip", "-n", ns2, "addr", "add", addr2, "dev", if2]);
    run(&["ip", "-n", ns1, "link", "set", if1, "up"]);
    run(&["ip", "-n", ns2, "link", "set", if2, "up"]);
}

pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn output(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The namespaces and links of the topology above.
pub struct Topology {
    prefix: String,
    // Declared so they drop (and are deleted) after everything that runs inside them.
    _namespaces: Vec<Netns>,
}

impl Topology {
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    pub fn build() -> Topology {
        let prefix = format!(
            "mgr{}{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut namespaces = Vec::new();
        for role in ["pub", "nata", "phonea", "natb", "phoneb", "evil"] {
            namespaces.push(add_netns(&format!("{prefix}-{role}")));
        }
        let t = Topology {
            prefix,
            _namespaces: namespaces,
        };
        // Each link: (ns1, if1, addr1, ns2, if2, addr2).
        let links = [
            (
                "pub",
                "pa",
                "198.51.100.1/30",
                "nata",
                "ap",
                "198.51.100.2/30",
            ),
            (
                "pub",
                "pb",
                "198.51.100.5/30",
                "natb",
                "bp",
                "198.51.100.6/30",
            ),
            (
                "pub",
                "pe",
                "198.51.100.9/30",
                "evil",
                "ep",
                "198.51.100.10/30",
            ),
            ("nata", "na", "10.1.0.1/24", "phonea", "an", "10.1.0.2/24"),
            ("natb", "nb", "10.2.0.1/24", "phoneb", "bn", "10.2.0.2/24"),
        ];
        for (n1, i1, a1, n2, i2, a2) in links {
            let (if1, if2) = (format!("{}-{i1}", t.prefix), format!("{}-{i2}", t.prefix));
            veth(&t.ns(n1), &if1, a1, &t.ns(n2), &if2, a2);
        }
        run(&[
            "ip",
            "-n",
            &t.ns("pub"),
            "addr",
            "add",
            "203.0.113.1/32",
            "dev",
            "lo",
        ]);
        // A second relay address, for tests that run two relays on separate addresses.
        run(&[
            "ip",
            "-n",
            &t.ns("pub"),
            "addr",
            "add",
            "203.0.113.2/32",
            "dev",
            "lo",
        ]);
        for (ns, gw) in [
            ("phonea", "10.1.0.1"),
            ("phoneb", "10.2.0.1"),
            ("nata", "198.51.100.1"),
            ("natb", "198.51.100.5"),
            ("evil", "198.51.100.9"),
        ] {
            run(&["ip", "-n", &t.ns(ns), "route", "add", "default", "via", gw]);
        }
        for (nat, out_if) in [("nata", "ap"), ("natb", "bp")] {
            let ns = t.ns(nat);
            let out_if = format!("{}-{out_if}", t.prefix);
            run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]);
            run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                &out_if,
                "-j",
                "MASQUERADE",
            ]);
        }
        // Phone B takes calls: SIP to natB's public address reaches it.
        let in_if = format!("{}-bp", t.prefix);
        run(&[
            "ip",
            "netns",
            "exec",
            &t.ns("natb"),
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-i",
            &in_if,
            "-p",
            "udp",
            "--dport",
            "5060",
            "-j",
            "DNAT",
            "--to-destination",
            "10.2.0.2:5060",
        ]);
        // Count what reaches each phone's RTP port: pcap packets (IP length 280) and the
        // stranger's (IP length 100).
        for phone in ["phonea", "phoneb"] {
            for len in ["280", "100"] {
                run(&[
                    "ip",
                    "netns",
                    "exec",
                    &t.ns(phone),
                    "iptables",
                    "-A",
                    "INPUT",
                    "-p",
                    "udp",
                    "--dport",
                    "6000",
                    "-m",
                    "length",
                    "--length",
                    len,
                    "-j",
                    "ACCEPT",
                ]);
            }
        }
        t
    }

    /// Packets counted by the phone's INPUT rule for IP length `len`.
    pub fn received(&self, phone: &str, len: &str) -> u64 {
        let table = output(&[
            "ip",
            "netns",
            "exec",
            &self.ns(phone),
            "iptables",
            "-L",
            "INPUT",
            "-v",
            "-x",
            "-n",
        ]);
        table
            .lines()
            .find(|l| l.contains(&format!("length {len}")))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter for length {len} in:\n{table}"))
    }

    /// Waits (up to 20 s) until `peer`, started in namespace `role`, has UDP `port`
    /// bound there (see [`Peer::wait_udp_bound`]).
    pub fn wait_udp_bound(&self, role: &str, port: u16, peer: &Peer) {
        peer.wait_udp_bound(port, Some(&self.ns(role)), Duration::from_secs(20));
    }

    pub fn spawn(&self, ns: &str, name: &str, dir: &Path, args: &[&str]) -> Peer {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(ns)])
            .args(args)
            .current_dir(dir);
        Peer::spawn(name, cmd).unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
    }
}

pub fn wait_for_line(peer: &Peer, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if peer
            .stderr_tail()
            .iter()
            .chain(&peer.stdout_tail())
            .any(|l| l.contains(needle))
        {
            return;
        }
        assert!(
            peer.try_status().is_none(),
            "{} exited:\n{}",
            peer.name(),
            peer.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{} never printed {needle:?}:\n{}",
        peer.name(),
        peer.diagnostics()
    );
}

pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/relay_peers")
        .join(name)
}

pub fn require_peers() {
    for (program, package) in [
        ("kamailio", "kamailio"),
        ("sipp", "sip-tester"),
        ("ip", "iproute2"),
        ("iptables", "iptables"),
    ] {
        require_program(program, package).unwrap();
    }
}

/// A work directory with the peer files, deleted on drop.
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    pub fn new(name: &str) -> WorkDir {
        let work = std::env::temp_dir().join(format!("mg-relay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join("pcap")).unwrap();
        let pcap = Path::new("/usr/share/sip-tester/g711a.pcap");
        assert!(
            pcap.is_file(),
            "{} is missing: apt-get install sip-tester",
            pcap.display()
        );
        std::fs::copy(pcap, work.join("pcap/g711a.pcap")).unwrap();
        for f in [
            "uac.xml",
            "uas.xml",
            "uac_idle.xml",
            "uas_idle.xml",
            "uac_stop.xml",
            "uas_stop.xml",
            "spray.py",
        ] {
            std::fs::copy(data(f), work.join(f)).unwrap();
        }
        WorkDir(work)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn sipp(topo: &Topology, work: &WorkDir, ns: &str, name: &str, extra: &[&str]) -> Peer {
    let mut args = vec!["timeout", "40", "sipp"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-p", "5060", "-mp", "6000", "-m", "1", "-nostdin"]);
    topo.spawn(ns, name, &work.0, &args)
}

/// [`sipp`] for the callee, returned once it listens on its SIP port, so the caller
/// started next cannot send its INVITE before anyone is there to take it.
pub fn sipp_callee(topo: &Topology, work: &WorkDir, ns: &str, name: &str, extra: &[&str]) -> Peer {
    let uas = sipp(topo, work, ns, name, extra);
    topo.wait_udp_bound(ns, 5060, &uas);
    uas
}

/// Kamailio (`kamailio.cfg` in the work directory) in the `pub` namespace, returned
/// once it listens on its SIP port.
pub fn kamailio(topo: &Topology, work: &WorkDir) -> Peer {
    let kamailio = topo.spawn(
        "pub",
        "kamailio",
        &work.0,
        &["kamailio", "-f", "kamailio.cfg", "-DD", "-E"],
    );
    topo.wait_udp_bound("pub", 5060, &kamailio);
    kamailio
}

/// Waits for a SIPp call to end: the caller within 45 s, then the callee within 10 s;
/// both must exit with success. A failure shows both phones and `others` (Kamailio,
/// the relay or dispatcher).
pub fn finish_call(uac: &Peer, uas: &Peer, others: &[&Peer]) {
    let why = || {
        let mut why = format!("{}\n{}", uac.diagnostics(), uas.diagnostics());
        for p in others {
            why.push('\n');
            why.push_str(&p.diagnostics());
        }
        why
    };
    let status = uac.wait_timeout(Duration::from_secs(45));
    assert!(
        status.is_some_and(|s| s.success()),
        "caller failed:\n{}",
        why()
    );
    let status = uas.wait_timeout(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "callee failed:\n{}",
        why()
    );
}
