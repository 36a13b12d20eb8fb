//! `[relay]`: settings of the RTP/RTCP media relay driven by SIP proxies over `ng`.
//!
//! What it does: declares the `ng` control listeners (rtpengine's protocol, UDP and TCP),
//! the media addresses and port range, media timeouts, the delete delay, the graceful
//! shutdown bound and the teardown notification hook, with defaults close to rtpengine's
//! so a Kamailio set up for rtpengine finds familiar behaviour (issue 4). It also holds
//! the engine's limits and tuning: port quarantine, the unanswered-offer timeout, call
//! and stream limits, the default endpoint-learning mode, the secure-latching knobs
//! (`[relay.latch]`, RFC 4961 symmetric RTP hardened against RTP bleed; the policy is
//! documented in the relay crate's `latch` module) and the forwarding threads. Each
//! number and duration has a range fixed by its type, so a bad value is refused where
//! it is written.
//!
//! What it does not: apply any of it; the relay engine's `EngineConfig::from_config`
//! turns this into engine settings.

use serde::{Deserialize, Serialize};

use super::bounded::Bounded;
use super::bounded_duration::BoundedDuration;
use super::duration::HumanDuration;
use super::located::Located;
use std::path::PathBuf;

use super::net::{BindAddr, HostIp};
use super::passport::Passport;
use super::port_range::PortPairRange;
use super::scheduling::ThreadScheduling;
use super::url::HttpUrl;
use super::value_error::{check_len, quoted, InvalidValue};

/// The relay role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Run the relay role. Needs at least one `media_address` and one `ng` listener.
    /// Default: `false`.
    pub enabled: Located<bool>,
    /// UDP addresses for `ng` commands. `ng` has no authentication: keep it on loopback
    /// or a signalling network. Default: `["127.0.0.1:2223"]`.
    pub ng_listen_udp: Vec<BindAddr>,
    /// TCP addresses for `ng` commands (rtpengine's TCP-ng framing). Default: `[]` (off).
    pub ng_listen_tcp: Vec<BindAddr>,
    /// Local addresses media is relayed on, IPv4 and/or IPv6 (calls may bridge
    /// families), each with an optional address to advertise in SDP (1:1 NAT). Default:
    /// `[]`.
    #[serde(skip_serializing_if = "no_media_address")]
    pub media_address: Located<Vec<MediaAddress>>,
    /// Local UDP ports for RTP/RTCP pairs (`"LOW-HIGH"`, even low end). Default:
    /// `"24576-32767"` (4,096 pairs, below Linux's ephemeral range 32768-60999).
    pub ports: Located<PortPairRange>,
    /// A call whose streams carry no media for this long is ended and recorded.
    /// Must not be zero. Default: `"60s"`.
    pub media_timeout: Located<HumanDuration>,
    /// The same for streams put on hold (`a=sendonly`/`inactive`/`0.0.0.0`). Must not
    /// be zero. Default: `"1h"`.
    pub on_hold_timeout: Located<HumanDuration>,
    /// How long a session lingers after `delete` (late retransmissions and in-flight
    /// media still find it) unless the command sets its own. Default: `"30s"`.
    pub delete_delay: HumanDuration,
    /// On SIGTERM, how long running calls may continue before the relay exits anyway;
    /// new offers are refused meanwhile. Default: `"5m"`.
    pub shutdown_max_wait: HumanDuration,
    /// HTTP endpoint told when a call is torn down for inactivity, for example Kamailio's
    /// JSON-RPC (`http://127.0.0.1:5060/RPC`, `dlg.terminate_dlg`). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teardown_notify_url: Option<HttpUrl>,
    /// How long a released port pair waits before another call may get it, so late
    /// packets of an ended call never reach the next one. 1s to 1h. Default: `"10s"`.
    pub port_quarantine: PortQuarantine,
    /// An offer never answered ends after this long (ringing may last; rtpengine uses an
    /// hour). 1s to 24h. Default: `"1h"`.
    pub offer_timeout: OfferTimeout,
    /// Most calls at once; further offers get rtpengine's `load limit` reply (or an
    /// error, for proxies that do not announce support for it) so the SIP proxy uses
    /// another relay. `0`: no limit but the port range. Default: `0`.
    pub max_sessions: MaxSessions,
    /// Most `m=` lines in one call; a larger offer is refused, so one hostile SDP cannot
    /// take the whole port range. 1 to 256. Default: `32`.
    pub max_media_per_call: MaxMediaPerCall,
    /// Endpoint-learning mode when an `ng` request does not set `endpoint-learning`:
    /// `heuristic` (`delayed` is a synonym), `immediate` or `off`. Default:
    /// `"heuristic"`.
    pub learning: EndpointLearning,
    /// Media forwarding threads; `0` starts one per two CPUs (at least 1, at most 8):
    /// a thread at 100,000 packets/s uses about half a core and the kernel's network
    /// work needs the rest. 0 to 64.
    /// Default: `0`.
    pub forward_threads: ForwardThreads,
    /// Trades latency for CPU: a forwarding thread waits up to this long for a batch of
    /// packets (io_uring) or pauses this long after a wake-up with little to do (epoll),
    /// so each wake-up carries more packets; every packet may wait that much longer.
    /// Microseconds are written alone (`"200us"`). 0s to 10ms; `"0s"` forwards at once.
    /// Default: `"300us"` (about 10–15% less CPU per packet; voice budgets are 150 ms).
    pub forward_coalesce: ForwardCoalesce,
    /// How media is forwarded: `auto` forwards latched streams inside the kernel with the
    /// eBPF fast path where it loads (needs CAP_BPF and CAP_NET_ADMIN, Linux 6.6+, and a
    /// build with clang) and the rest with io_uring; `ebpf` the same but refuses to
    /// start without the fast path; `io_uring` never loads the eBPF program (one system
    /// call per batch of packets, epoll where the kernel refuses io_uring); `epoll`
    /// always uses epoll (about two system calls per packet). Default: `"auto"`.
    pub forward_io: ForwardIo,
    /// Scheduling policy of the forwarding threads, as rtpengine's `--scheduling` and
    /// `--priority`: `"normal"`, `"normal:NICE"`, `"batch"`, `"idle"`, `"fifo:PRIO"` or
    /// `"rr:PRIO"` (PRIO 1 to 99). On a busy machine a forwarding thread that wakes for
    /// a packet waits for a CPU behind other work; `fifo` runs it at once (p99 from
    /// 1.5–14 ms to 0.23–0.37 ms in the 2-core benchmark), but a real-time thread can
    /// hold a CPU from everything else, so keep `forward_threads` below the CPU count
    /// (the default does on two or more CPUs). Real-time needs `CAP_SYS_NICE` or a
    /// matching `RLIMIT_RTPRIO`, a lower nice value `CAP_SYS_NICE` or `RLIMIT_NICE`;
    /// when refused, the relay says so in its log and the threads keep the process's
    /// scheduling. Default: `"normal"`.
    pub forward_scheduling: ThreadScheduling,
    /// Secure symmetric latching: how the relay learns where a phone's media comes from.
    pub latch: LatchConfig,
    /// Dispatchers to link to over mutual TLS (`"HOST:PORT"`, a DNS name resolved
    /// again on each connection attempt, or an IP address); the relay takes calls from
    /// each. Needs `tls_dir`. With dispatchers, the `ng` listeners may be empty.
    /// Default: `[]`.
    pub dispatchers: Vec<DispatcherAddr>,
    /// Directory with the link's `ca.pem`, `cert.pem`, `key.pem` and optional
    /// `crl.pem` (as `mediagate cert issue` writes them). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_dir: Option<PathBuf>,
    /// Subject fields a dispatcher's certificate must have, such as
    /// `"O=Example, CN=dispatcher*"`; without one, any certificate from the CA is
    /// accepted. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passport: Option<Passport>,
    /// What SIGHUP does to a process running the relay: `"reload"` (re-read the config
    /// and reopen log files, as for every role) or `"halt"` (MediaProxy's relay: a
    /// graceful shutdown as SIGTERM does; new calls refused, running calls kept until
    /// they end, then exit). With `"halt"`, a logrotate `kill -HUP` stops the process:
    /// rotate with `copytruncate` instead. Read at start. Default: `"reload"`.
    pub sighup: SighupAction,
}

/// `[relay] sighup`: what SIGHUP does to a process running the relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SighupAction {
    /// Reload the config and reopen log files, as for every role.
    #[default]
    Reload,
    /// Stop gracefully, as SIGTERM (MediaProxy's relay).
    Halt,
}

/// Port quarantine: 1 s to 1 h.
pub type PortQuarantine = BoundedDuration<1_000_000, 3_600_000_000>;
/// Unanswered-offer timeout: 1 s to 24 h.
pub type OfferTimeout = BoundedDuration<1_000_000, 86_400_000_000>;
/// Concurrent call limit: 0 (none) to 1,000,000.
pub type MaxSessions = Bounded<0, 1_000_000>;
/// Media streams per call: 1 to 256.
pub type MaxMediaPerCall = Bounded<1, 256>;
/// Forwarding threads: 0 (one per two CPUs) to 64.
pub type ForwardThreads = Bounded<0, 64>;
/// Forwarding pause after a quiet wake-up: 0 to 10 ms.
pub type ForwardCoalesce = BoundedDuration<0, 10_000>;
/// Stranger learning window: 100 ms to 1 min.
pub type LearnWindow = BoundedDuration<100_000, 60_000_000>;
/// Packets that confirm a learned source: 1 to 100.
pub type LearnPackets = Bounded<1, 100>;
/// Silence before a re-latch: 0 to 1 min.
pub type RelatchQuiet = BoundedDuration<0, 60_000_000>;
/// Sequence-number step accepted as re-latch evidence: 1 to 32767 (half the sequence
/// space, beyond which "ahead" is ambiguous).
pub type RelatchMaxSeqGap = Bounded<1, 32_767>;

/// The `ng` `endpoint-learning` modes (see the relay crate's `latch` module).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointLearning {
    /// Secure default: expected sources latch at once; a stranger only within the
    /// learning window and packet budget, and only when the phone's address is unknown.
    /// rtpengine's `delayed` means the same here.
    #[default]
    #[serde(alias = "delayed")]
    Heuristic,
    /// Legacy first-packet latching from any source (open to RTP bleed).
    Immediate,
    /// No learning from strangers: media goes to the signalled address and is accepted
    /// only from it, its IP or the SIP source (`received-from`).
    Off,
}

/// `[relay] forward_io`: how media is forwarded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardIo {
    /// The eBPF fast path for latched streams where it loads, and io_uring (else
    /// epoll) for everything else and when it does not load.
    #[default]
    Auto,
    /// The eBPF fast path, or no start: a relay that must not fall back to user space.
    Ebpf,
    /// io_uring where the kernel allows it (Linux 6.1+, not disabled by
    /// `kernel.io_uring_disabled` or a seccomp filter), else epoll; no eBPF.
    IoUring,
    /// Always epoll; no eBPF.
    Epoll,
}

/// `[relay.latch]`: the secure-latching knobs (RFC 4961 symmetric RTP). A phone behind
/// NAT is learned only from its expected address, or, when that is unknown, from a
/// stranger that sends `learn_packets` packets within `learn_window`; once confirmed,
/// only a source with the same SSRC and a near sequence number after `relatch_quiet` of
/// silence may take over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatchConfig {
    /// How long after an offer or answer an unexpected source may still be learned;
    /// longer helps slow phones, shorter narrows the window for RTP bleed. 100ms to
    /// 1m. Default: `"5s"`.
    pub learn_window: LearnWindow,
    /// Consecutive packets, one SSRC, an unexpected source must send before it is
    /// latched; nothing is forwarded to or from it before. 1 to 100. Default: `3`.
    pub learn_packets: LearnPackets,
    /// How long the latched source must be silent before another address with the same
    /// SSRC may take over (NAT rebinding, handover). 0s to 1m. Default: `"1s"`.
    pub relatch_quiet: RelatchQuiet,
    /// Largest forward sequence-number step accepted as evidence for such a re-latch.
    /// 1 to 32767. Default: `100`.
    pub relatch_max_seq_gap: RelatchMaxSeqGap,
}

impl Default for LatchConfig {
    fn default() -> Self {
        Self {
            learn_window: const { LearnWindow::from_millis_const(5_000) },
            learn_packets: fixed_bound(3),
            relatch_quiet: const { RelatchQuiet::from_millis_const(1_000) },
            relatch_max_seq_gap: fixed_bound(100),
        }
    }
}

/// A compile-time-known in-range default.
fn fixed_bound<const MIN: u32, const MAX: u32>(value: u32) -> Bounded<MIN, MAX> {
    Bounded::new(u64::from(value)).unwrap_or_else(|_| unreachable!("default {value} is in range"))
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            enabled: Located::new(false),
            ng_listen_udp: vec![BindAddr(([127, 0, 0, 1], 2223).into())],
            ng_listen_tcp: Vec::new(),
            media_address: Located::new(Vec::new()),
            ports: Located::new(default_relay_ports()),
            media_timeout: Located::new(HumanDuration::from_secs(60)),
            on_hold_timeout: Located::new(HumanDuration::from_secs(3600)),
            delete_delay: HumanDuration::from_secs(30),
            shutdown_max_wait: HumanDuration::from_secs(300),
            teardown_notify_url: None,
            port_quarantine: const { PortQuarantine::from_millis_const(10_000) },
            offer_timeout: const { OfferTimeout::from_millis_const(3_600_000) },
            max_sessions: fixed_bound(0),
            max_media_per_call: fixed_bound(32),
            learning: EndpointLearning::Heuristic,
            forward_threads: fixed_bound(0),
            forward_coalesce: const { ForwardCoalesce::from_micros_const(300) },
            forward_io: ForwardIo::Auto,
            forward_scheduling: ThreadScheduling::NORMAL,
            latch: LatchConfig::default(),
            dispatchers: Vec::new(),
            tls_dir: None,
            passport: None,
            sighup: SighupAction::Reload,
        }
    }
}

fn no_media_address(list: &Located<Vec<MediaAddress>>) -> bool {
    list.is_empty()
}

/// The default relay port range.
pub(crate) fn default_relay_ports() -> PortPairRange {
    "24576-32767"
        .parse()
        .unwrap_or_else(|_| unreachable!("constant range is valid"))
}

/// One `[[relay.media_address]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaAddress {
    /// Local address the relay binds media sockets to. Required. A wildcard
    /// (`0.0.0.0`, `::`) needs `advertised`, since SDP must name a real address.
    pub address: Located<HostIp>,
    /// Address written into SDP instead of `address`, for a relay behind 1:1 NAT.
    /// Default: none (advertise `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised: Option<HostIp>,
}

impl MediaAddress {
    /// The address to put in SDP `c=` lines.
    pub fn sdp_address(&self) -> HostIp {
        self.advertised.unwrap_or(*self.address.get())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{parse_config, render_errors};

    #[test]
    fn sdp_address_prefers_the_advertised_one() {
        let mut m = MediaAddress {
            address: Located::new("10.0.0.5".parse().unwrap()),
            advertised: None,
        };
        assert_eq!(m.sdp_address().to_string(), "10.0.0.5");
        m.advertised = Some("203.0.113.7".parse().unwrap());
        assert_eq!(m.sdp_address().to_string(), "203.0.113.7");
    }

    #[test]
    fn defaults() {
        let r = RelayConfig::default();
        assert!(!*r.enabled);
        assert_eq!(r.ports.to_string(), "24576-32767");
        assert_eq!(r.ports.pairs(), 4096);
        assert_eq!(r.ng_listen_udp[0].to_string(), "127.0.0.1:2223");
        assert_eq!(r.port_quarantine.get(), Duration::from_secs(10));
        assert_eq!(r.offer_timeout.get(), Duration::from_secs(3600));
        assert_eq!(r.max_sessions.get(), 0);
        assert_eq!(r.max_media_per_call.get(), 32);
        assert_eq!(r.learning, EndpointLearning::Heuristic);
        assert_eq!(r.forward_threads.get(), 0);
        assert_eq!(r.forward_coalesce.get(), Duration::from_micros(300));
        assert_eq!(r.forward_scheduling, ThreadScheduling::NORMAL);
        assert_eq!(r.latch.learn_window.get(), Duration::from_secs(5));
        assert_eq!(r.latch.learn_packets.get(), 3);
        assert_eq!(r.latch.relatch_quiet.get(), Duration::from_secs(1));
        assert_eq!(r.latch.relatch_max_seq_gap.get(), 100);
    }

    fn relay_of(text: &str) -> RelayConfig {
        match parse_config(text) {
            Ok(config) => config.relay,
            Err(errors) => panic!("{}", render_errors("f.toml", text, &errors)),
        }
    }

    /// The rendered `file:line:column: message` lines for `text`.
    fn error_lines(text: &str) -> Vec<String> {
        let errors = parse_config(text).expect_err("the text has errors");
        render_errors("f.toml", text, &errors)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_tuning_key_is_read() {
        let r = relay_of(
            r#"
[relay]
port_quarantine = "1m"
offer_timeout = "2h30m"
max_sessions = 5000
max_media_per_call = 4
learning = "off"
forward_threads = 2
forward_coalesce = "200us"

[relay.latch]
learn_window = "2s500ms"
learn_packets = 5
relatch_quiet = "0s"
relatch_max_seq_gap = 32767
"#,
        );
        assert_eq!(r.port_quarantine.get(), Duration::from_secs(60));
        assert_eq!(r.offer_timeout.get(), Duration::from_secs(9000));
        assert_eq!(r.max_sessions.get(), 5000);
        assert_eq!(r.max_media_per_call.get(), 4);
        assert_eq!(r.learning, EndpointLearning::Off);
        assert_eq!(r.forward_threads.get(), 2);
        assert_eq!(r.forward_coalesce.get(), Duration::from_micros(200));
        assert_eq!(r.latch.learn_window.get(), Duration::from_millis(2500));
        assert_eq!(r.latch.learn_packets.get(), 5);
        assert!(r.latch.relatch_quiet.is_zero());
        assert_eq!(r.latch.relatch_max_seq_gap.get(), 32767);
    }

    #[test]
    fn range_ends_are_accepted() {
        let low = relay_of(
            "[relay]\nport_quarantine = \"1s\"\noffer_timeout = \"1s\"\nmax_media_per_call = 1\n\
             forward_coalesce = \"10ms\"\nforward_threads = 64\nmax_sessions = 1000000\n\
             [relay.latch]\nlearn_window = \"100ms\"\nlearn_packets = 1\nrelatch_max_seq_gap = 1\n",
        );
        assert_eq!(low.port_quarantine.get(), Duration::from_secs(1));
        assert_eq!(low.offer_timeout.get(), Duration::from_secs(1));
        assert_eq!(low.max_media_per_call.get(), 1);
        assert_eq!(low.forward_coalesce.get(), Duration::from_millis(10));
        assert_eq!(low.forward_threads.get(), 64);
        assert_eq!(low.max_sessions.get(), 1_000_000);
        assert_eq!(low.latch.learn_window.get(), Duration::from_millis(100));
        assert_eq!(low.latch.learn_packets.get(), 1);
        assert_eq!(low.latch.relatch_max_seq_gap.get(), 1);
        let high = relay_of(
            "[relay]\nport_quarantine = \"1h\"\noffer_timeout = \"24h\"\nmax_media_per_call = 256\n\
             [relay.latch]\nlearn_window = \"1m\"\nlearn_packets = 100\nrelatch_quiet = \"1m\"\n",
        );
        assert_eq!(high.port_quarantine.get(), Duration::from_secs(3600));
        assert_eq!(high.offer_timeout.get(), Duration::from_secs(86_400));
        assert_eq!(high.max_media_per_call.get(), 256);
        assert_eq!(high.latch.learn_window.get(), Duration::from_secs(60));
        assert_eq!(high.latch.learn_packets.get(), 100);
        assert_eq!(high.latch.relatch_quiet.get(), Duration::from_secs(60));
    }

    #[test]
    fn every_learning_mode_and_its_synonym() {
        for (text, mode) in [
            ("heuristic", EndpointLearning::Heuristic),
            ("delayed", EndpointLearning::Heuristic),
            ("immediate", EndpointLearning::Immediate),
            ("off", EndpointLearning::Off),
        ] {
            let r = relay_of(&format!("[relay]\nlearning = \"{text}\"\n"));
            assert_eq!(r.learning, mode, "{text}");
        }
        assert_eq!(
            toml::to_string(&RelayConfig::default())
                .unwrap()
                .lines()
                .find(|l| l.starts_with("learning"))
                .unwrap(),
            "learning = \"heuristic\""
        );
    }

    #[test]
    fn forward_io_modes_and_a_wrong_one() {
        assert_eq!(RelayConfig::default().forward_io, ForwardIo::Auto);
        for (text, mode) in [
            ("auto", ForwardIo::Auto),
            ("ebpf", ForwardIo::Ebpf),
            ("io_uring", ForwardIo::IoUring),
            ("epoll", ForwardIo::Epoll),
        ] {
            let r = relay_of(&format!("[relay]\nforward_io = \"{text}\"\n"));
            assert_eq!(r.forward_io, mode, "{text}");
        }
        assert_eq!(
            error_lines("[relay]\nforward_io = \"uring\"\n"),
            ["f.toml:2:14: unknown variant `uring`, expected one of `auto`, `ebpf`, `io_uring`, `epoll`"]
        );
    }

    #[test]
    fn sighup_is_read_and_a_wrong_one_points_at_the_value() {
        assert_eq!(relay_of("[relay]\n").sighup, SighupAction::Reload);
        assert_eq!(
            relay_of("[relay]\nsighup = \"halt\"\n").sighup,
            SighupAction::Halt
        );
        assert_eq!(
            error_lines("[relay]\nsighup = \"stop\"\n"),
            ["f.toml:2:10: unknown variant `stop`, expected `reload` or `halt`"]
        );
    }

    #[test]
    fn forward_scheduling_is_read_and_a_wrong_one_points_at_the_value() {
        let r = relay_of("[relay]\nforward_scheduling = \"fifo:10\"\n");
        assert_eq!(
            r.forward_scheduling,
            ThreadScheduling::Fifo { priority: 10 }
        );
        let lines = error_lines("[relay]\nforward_scheduling = \"fifo:0\"\n");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("f.toml:2:22: invalid scheduling \"fifo:0\""),
            "{lines:?}"
        );
    }

    #[test]
    fn values_below_their_range_point_at_the_value() {
        let text = r#"[relay]
port_quarantine = "0s"
offer_timeout = "0s"
max_sessions = -1
max_media_per_call = 0
learning = "sometimes"
forward_threads = -2
forward_coalesce = "-1ms"

[relay.latch]
learn_window = "99ms"
learn_packets = 0
relatch_quiet = "-1s"
relatch_max_seq_gap = 0
"#;
        assert_eq!(
            error_lines(text),
            [
                "f.toml:2:19: duration \"0s\" is out of range: it must be from 1s to 1h",
                "f.toml:3:17: duration \"0s\" is out of range: it must be from 1s to 24h",
                "f.toml:4:16: -1 is out of range: it must be from 0 to 1000000",
                "f.toml:5:22: 0 is out of range: it must be from 1 to 256",
                "f.toml:6:12: unknown variant `sometimes`, expected one of `delayed`, `heuristic`, `immediate`, `off`",
                "f.toml:7:19: -2 is out of range: it must be from 0 to 64",
                "f.toml:8:20: invalid duration \"-1ms\": expected a number; write a whole number followed by a unit (h, m, s or ms), for example \"10s\", \"250ms\" or \"1m30s\"",
                "f.toml:11:16: duration \"99ms\" is out of range: it must be from 100ms to 1m",
                "f.toml:12:17: 0 is out of range: it must be from 1 to 100",
                "f.toml:13:17: invalid duration \"-1s\": expected a number; write a whole number followed by a unit (h, m, s or ms), for example \"10s\", \"250ms\" or \"1m30s\"",
                "f.toml:14:23: 0 is out of range: it must be from 1 to 32767",
            ]
        );
    }

    #[test]
    fn values_above_their_range_point_at_the_value() {
        let text = r#"[relay]
port_quarantine = "1h1s"
offer_timeout = "24h1ms"
max_sessions = 1000001
max_media_per_call = 257
forward_threads = 65
forward_coalesce = "10001us"

[relay.latch]
learn_window = "1m1ms"
learn_packets = 101
relatch_quiet = "61s"
relatch_max_seq_gap = 32768
"#;
        assert_eq!(
            error_lines(text),
            [
                "f.toml:2:19: duration \"1h1s\" is out of range: it must be from 1s to 1h",
                "f.toml:3:17: duration \"24h1ms\" is out of range: it must be from 1s to 24h",
                "f.toml:4:16: 1000001 is out of range: it must be from 0 to 1000000",
                "f.toml:5:22: 257 is out of range: it must be from 1 to 256",
                "f.toml:6:19: 65 is out of range: it must be from 0 to 64",
                "f.toml:7:20: duration \"10001us\" is out of range: it must be from 0s to 10ms",
                "f.toml:10:16: duration \"1m1ms\" is out of range: it must be from 100ms to 1m",
                "f.toml:11:17: 101 is out of range: it must be from 1 to 100",
                "f.toml:12:17: duration \"61s\" is out of range: it must be from 0s to 1m",
                "f.toml:13:23: 32768 is out of range: it must be from 1 to 32767",
            ]
        );
    }

    #[test]
    fn wrong_types_and_forms_are_explained() {
        let text = r#"[relay]
max_sessions = "10"
offer_timeout = 60
forward_coalesce = "1ms500us"
learning = true

[relay.latch]
learn_windw = "5s"
"#;
        assert_eq!(
            error_lines(text),
            [
                "f.toml:2:16: invalid type: string \"10\", expected a whole number from 0 to 1000000",
                "f.toml:3:17: invalid type: integer `60`, expected a duration from 1s to 24h, such as \"10s\" or \"250ms\"",
                "f.toml:4:20: invalid duration \"1ms500us\": microseconds are written alone as a whole number, as in \"500us\"",
                "f.toml:5:12: wanted string or table",
                "f.toml:8:1: unknown field `learn_windw`, expected one of `learn_window`, `learn_packets`, `relatch_quiet`, `relatch_max_seq_gap`; did you mean `learn_window`?",
            ]
        );
    }
}

/// A dispatcher's address, `"HOST:PORT"`: a DNS name or an IP address (IPv6 in
/// brackets) and a port. The name is resolved on each connection attempt.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DispatcherAddr {
    /// DNS name (lower-cased) or IP address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// The link's default port on the dispatcher.
pub const DISPATCHER_LINK_PORT: u16 = 25060;

impl std::str::FromStr for DispatcherAddr {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        const FORM: &str =
            "write HOST:PORT, for example \"dispatcher.example.net:25060\" or \"[2001:db8::1]:25060\"";
        check_len(s, "a dispatcher address")?;
        let bad = |why: &str| {
            InvalidValue::new(format!(
                "invalid dispatcher address {}: {why}; {FORM}",
                quoted(s)
            ))
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, port) = rest
                .split_once("]:")
                .ok_or_else(|| bad("no `]:PORT` after the IPv6 address"))?;
            v6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address in brackets"))?;
            (v6.to_owned(), port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
            if host.contains(':') {
                return Err(bad("put an IPv6 address in brackets"));
            }
            let name_ok = !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            if !name_ok {
                return Err(bad("the host is neither an IP address nor a DNS name"));
            }
            (host.to_ascii_lowercase(), port)
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the port is not 1 to 65535"))?;
        Ok(Self { host, port })
    }
}

impl std::fmt::Display for DispatcherAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

string_value_serde!(
    DispatcherAddr,
    "a dispatcher address such as \"dispatcher.example.net:25060\""
);

#[cfg(test)]
mod dispatcher_addr_tests {
    use super::*;

    #[test]
    fn names_and_addresses_parse_and_print_back() {
        for (text, host, port) in [
            (
                "Dispatcher.Example.net:25060",
                "dispatcher.example.net",
                25060,
            ),
            ("192.0.2.1:1", "192.0.2.1", 1),
            ("[2001:db8::1]:25060", "2001:db8::1", 25060),
        ] {
            let a: DispatcherAddr = text.parse().unwrap();
            assert_eq!((a.host.as_str(), a.port), (host, port), "{text}");
            assert_eq!(a.to_string().parse::<DispatcherAddr>().unwrap(), a);
        }
    }

    #[test]
    fn bad_addresses_say_what_to_write() {
        for bad in [
            "host",
            "host:0",
            "host:x",
            "2001:db8::1:25060",
            "[::1:25060",
            "a_b:1",
            ":1",
        ] {
            let err = bad.parse::<DispatcherAddr>().unwrap_err().to_string();
            assert!(err.contains("HOST:PORT"), "{bad}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_and_what_parses_prints_back(text in "[ -~]{0,40}") {
            if let Ok(a) = text.parse::<DispatcherAddr>() {
                proptest::prop_assert_eq!(a.to_string().parse::<DispatcherAddr>().unwrap(), a);
            }
        }
    }
}
