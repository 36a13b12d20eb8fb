//! `[balancer]`: settings of the streaming-aware load balancer (issue 14).
//!
//! What it does: declares the balancer's services (`[[balancer.service]]`: a name, the
//! addresses it listens on, its kind, its back ends with weights, its scheduler, its
//! media mode and relay port range, PROXY v2, persistence and health-check settings)
//! and the role-wide limits that bound a hostile client (connection cap, header
//! timeout, session table size, SETUPs and streams per session), with their defaults.
//! A back end is written as one string, `"rtsp://10.0.0.1:8554"` or `"10.0.0.1:8554"`,
//! optionally followed by ` weight=N`, so an error points at the one value to fix.
//!
//! What it does not: resolve names, open sockets or decide anything; the balancer
//! crate's role does.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::bounded::Bounded;
use super::bounded_duration::BoundedDuration;
use super::byte_size::ByteSize;
use super::duration::HumanDuration;
use super::located::Located;
use super::net::BindAddr;
use super::port_range::{PortPairRange, PortRange};
use super::scheduling::ThreadScheduling;
use super::url::{parse_host_name, Host, RtspUrl};
use super::value_error::{quoted, InvalidValue};

/// Connections held at once: 1 to 1,000,000.
pub type BalancerMaxConnections = Bounded<1, 1_000_000>;
/// Sessions in the table: 1 to 10,000,000.
pub type BalancerMaxSessions = Bounded<1, 10_000_000>;
/// SETUPs or streams per session: 1 to 64.
pub type PerSessionCap = Bounded<1, 64>;
/// Time a client has to finish a request head: 100 ms to 5 min.
pub type HeaderTimeout = BoundedDuration<100_000, 300_000_000>;
/// Back-end weight: 0 (drained) to 1,000.
pub type BackendWeight = Bounded<0, 1_000>;

/// The balancer role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalancerConfig {
    /// Run the balancer role. Needs at least one `[[balancer.service]]`.
    /// Default: `false`.
    pub enabled: Located<bool>,
    /// Client connections held at once over all RTSP services; further ones are
    /// closed at accept. Each `tcp`/`udp` service applies it on its own (connections,
    /// or UDP flows). Default: `10000`.
    pub max_connections: BalancerMaxConnections,
    /// A client must finish each request head within this long after its first byte
    /// (slowloris), and send its first request within this long of connecting.
    /// Default: `"10s"`.
    pub header_timeout: HeaderTimeout,
    /// RTSP sessions in the table at once; a SETUP that would mint one more gets 453.
    /// Default: `100000`.
    pub max_sessions: BalancerMaxSessions,
    /// A session whose back end names no `timeout=` expires after this long without a
    /// request. Default: `"60s"`.
    pub session_timeout: Located<HumanDuration>,
    /// SETUPs of one session awaiting their answer at once (as `nf_conntrack_rtsp`).
    /// Default: `8`.
    pub max_pending_setups: PerSessionCap,
    /// Streams (successful SETUPs) in one session. Default: `16`.
    pub max_streams_per_session: PerSessionCap,
    /// Failover (keepalived, `config/keepalived-mediagate.conf`): where this balancer
    /// takes its peer's session table while it is the standby. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_listen: Option<Located<BindAddr>>,
    /// Failover: the peer's `sync_listen`, which this balancer streams its session
    /// table to while it is the active one. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_peer: Option<Located<BindAddr>>,
    /// Failover: the file keepalived's notify script writes the VRRP state into
    /// (`MASTER`, `BACKUP`, `FAULT`); the balancer is active only while it says
    /// `MASTER`. Default: none (always active, no failover).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vrrp_state_file: Option<Located<PathBuf>>,
    /// Failover: a file the balancer rewrites every second with `0` while every RTSP
    /// service has a back end up and `1` otherwise, for keepalived's `track_file`.
    /// Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vrrp_track_file: Option<Located<PathBuf>>,
    /// Relay mode: the scheduling of each service's media forwarding thread, written
    /// as `[relay] forward_scheduling` (`"normal"`, `"normal:-5"`, `"fifo:10"`, ...).
    /// Real-time keeps a busy host from delaying packets past the sockets' buffers;
    /// it needs `CAP_SYS_NICE` or `RLIMIT_RTPRIO`, and when refused the log says so
    /// and the thread keeps the process's scheduling. Default: `"normal"`.
    pub forward_scheduling: ThreadScheduling,
    /// The scheduling of the threads RTSP client connections run on (one per CPU,
    /// `mg-rtsp-N`), written as `forward_scheduling`. Real-time (`"fifo:10"`) runs a
    /// thread woken by a request or an answer at once instead of behind other
    /// processes' work: on the README's 2-core benchmark, shared with the load
    /// generator and the back ends, it took the added p99 per session at 5,000/s
    /// below 1 ms, at more CPU per session (fewer messages per wake-up). Those
    /// threads then hold their CPUs from everything else while busy, the process's
    /// own health checks and admin API included, bounded only by the kernel's
    /// real-time throttling (`kernel.sched_rt_runtime_us`). Needs the privileges
    /// `forward_scheduling` needs; when refused, the log says so and the threads keep
    /// the process's scheduling. Kept until restart. Default: `"normal"`.
    pub rtsp_scheduling: ThreadScheduling,
    /// Relay mode: the receive and send buffer asked for each relayed UDP socket
    /// (`SO_RCVBUFFORCE`, else `SO_RCVBUF` capped by `net.core.rmem_max`; the same
    /// for sending). A larger one rides out longer stalls of the forwarding thread
    /// without loss; it costs memory only while packets wait. Up to `"64MiB"`;
    /// `"0B"` keeps the kernel's default. Default: `"1MiB"`.
    pub relay_socket_buffer: Located<ByteSize>,
    /// Relay mode: a relayed stream with no media either way for this long is
    /// closed and counted (`media_timeouts`), whatever its session does. Default:
    /// `session_timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_timeout: Option<Located<HumanDuration>>,
    /// The services, one table each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service: Vec<ServiceConfig>,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self {
            enabled: Located::new(false),
            max_connections: fixed(10_000),
            header_timeout: HeaderTimeout::from_millis_const(10_000),
            max_sessions: fixed(100_000),
            session_timeout: Located::new(HumanDuration::from_secs(60)),
            max_pending_setups: fixed(8),
            max_streams_per_session: fixed(16),
            sync_listen: None,
            sync_peer: None,
            vrrp_state_file: None,
            vrrp_track_file: None,
            forward_scheduling: ThreadScheduling::NORMAL,
            rtsp_scheduling: ThreadScheduling::NORMAL,
            relay_socket_buffer: Located::new(ByteSize::from_mib(1)),
            media_timeout: None,
            service: Vec::new(),
        }
    }
}

fn fixed<const MIN: u32, const MAX: u32>(value: u32) -> Bounded<MIN, MAX> {
    Bounded::new(u64::from(value)).unwrap_or_else(|_| unreachable!("default {value} is in range"))
}

/// One `[[balancer.service]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Name in metrics, logs and `mediagate balancer status`. Required, unique.
    pub name: Located<String>,
    /// TCP addresses clients connect to. Required.
    pub listen: Located<Vec<BindAddr>>,
    /// `rtsp` (session routing), `tcp` or `udp` (L4). Default: `"rtsp"`.
    #[serde(default)]
    pub kind: Located<ServiceKind>,
    /// The back ends. Required, at least one.
    pub backends: Located<Vec<Located<BackendSpec>>>,
    /// How a new session picks a back end. Default: `"round_robin"`.
    #[serde(default)]
    pub scheduler: Located<SchedulerName>,
    /// With `scheduler = "url_hash"`: no back end above this multiple of the average
    /// load. Default: `1.25`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_factor: Option<Located<f64>>,
    /// Client-IP persistence: a client's new sessions go where its last one went while
    /// it comes back within this long (the classic recipe uses "10m"). Default: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_timeout: Option<Located<HumanDuration>>,
    /// Where media flows: `relay` (through the balancer), `direct` (back end to
    /// client) or `redirect` (RTSP 302 to the back end). Default: `"relay"`.
    #[serde(default)]
    pub media_mode: Located<MediaMode>,
    /// Balancer UDP ports for relayed RTP/RTCP pairs. Default: `"40000-44095"`.
    #[serde(default = "default_balancer_ports")]
    pub ports: Located<PortPairRange>,
    /// Send a PROXY protocol v2 header on every back-end connection so the back end
    /// learns the real client. Only for back ends that expect it. Default: `false`.
    #[serde(default)]
    pub proxy_protocol: Located<bool>,
    /// Active health checks; a back end that fails `fall` of them in a row (or as
    /// many connections) takes no new sessions and its running ones end at once.
    /// Default: none (always up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Located<HealthConfig>>,
    /// `kind = "port_group"` only: UDP ports (`"5004-5010"` or `"6970"`), on the
    /// listen address's IP, whose datagrams go to the back end the client IP is
    /// pinned to, as its TCP connections to the listen port do. At most 4,096 ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_ports: Option<Located<Vec<PortRange>>>,
}

impl ServiceConfig {
    /// A service with the defaults, for the command line.
    pub fn new(name: &str, listen: Vec<BindAddr>, backends: Vec<BackendSpec>) -> Self {
        Self {
            name: Located::new(name.to_owned()),
            listen: Located::new(listen),
            kind: Located::new(ServiceKind::Rtsp),
            backends: Located::new(backends.into_iter().map(Located::new).collect()),
            scheduler: Located::new(SchedulerName::RoundRobin),
            load_factor: None,
            persistence_timeout: None,
            media_mode: Located::new(MediaMode::Relay),
            ports: default_balancer_ports(),
            proxy_protocol: Located::new(false),
            health: None,
            udp_ports: None,
        }
    }
}

fn default_balancer_ports() -> Located<PortPairRange> {
    Located::new(
        "40000-44095"
            .parse()
            .unwrap_or_else(|_| unreachable!("constant range is valid")),
    )
}

/// What a service balances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// RTSP with session routing. The default.
    #[default]
    Rtsp,
    /// Plain TCP proxy.
    Tcp,
    /// UDP sessions by 4-tuple.
    Udp,
    /// The LVS firewall-mark recipe: the TCP listen port and `udp_ports` form one
    /// group, and all of a client IP's flows to it go to one back end (on the port
    /// they arrived on), pinned while it has flows and `persistence_timeout` after.
    #[serde(rename = "port_group")]
    PortGroup,
}

/// The schedulers by config name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerName {
    /// In turn. The default.
    #[default]
    RoundRobin,
    /// In turn, in proportion to weights.
    WeightedRoundRobin,
    /// Fewest running sessions.
    LeastSessions,
    /// Fewest running sessions per unit of weight.
    WeightedLeastSessions,
    /// Least media bandwidth.
    LeastBandwidth,
    /// Hash of the client IP.
    SourceHash,
    /// Consistent hash of the presentation URL with bounded load (Maglev).
    UrlHash,
}

/// How a service's media reaches its viewers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaMode {
    /// Through the balancer's own UDP ports. The default: works through any NAT.
    #[default]
    Relay,
    /// From the back end straight to the client; RTSP still goes through.
    Direct,
    /// An RTSP 302 to the back end's own URL.
    Redirect,
}

/// `[balancer.service.health]`: active checks of each back end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `tcp`, `rtsp_options` or `rtsp_describe`. Default: `"tcp"`.
    #[serde(default)]
    pub check: HealthCheckKind,
    /// Time between checks of one back end. Default: `"2s"`.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// A check that takes longer fails. Default: `"1s"`.
    #[serde(default = "default_check_timeout")]
    pub timeout: HumanDuration,
    /// Successes in a row that bring a back end up. Default: `2`.
    #[serde(default = "default_rise")]
    pub rise: Bounded<1, 100>,
    /// Failures in a row that take it down. Default: `3`.
    #[serde(default = "default_fall")]
    pub fall: Bounded<1, 100>,
    /// Status an RTSP check expects. Default: `200`.
    #[serde(default = "default_expect")]
    pub expect_status: Bounded<100, 599>,
    /// Path an RTSP `DESCRIBE` check asks for. Default: `"/"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// TCP port of an agent answering `up`, `down`, `drain` or `weight:N%`.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_port: Option<u16>,
}

fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(2)
}
fn default_check_timeout() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_rise() -> Bounded<1, 100> {
    fixed(2)
}
fn default_fall() -> Bounded<1, 100> {
    fixed(3)
}
fn default_expect() -> Bounded<100, 599> {
    fixed(200)
}

/// The active check kinds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// A TCP connect. The default.
    #[default]
    Tcp,
    /// An RTSP `OPTIONS *`.
    RtspOptions,
    /// An RTSP `DESCRIBE` of `path`.
    RtspDescribe,
}

/// One back end: where it is and its weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// The RTSP URL when written as one (redirects point under it).
    pub url: Option<RtspUrl>,
    /// Host to connect to.
    pub host: Host,
    /// Port to connect to.
    pub port: u16,
    /// Relative weight; 0 drains it. Default: 1.
    pub weight: BackendWeight,
}

impl BackendSpec {
    /// `host:port` to connect to.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl FromStr for BackendSpec {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        const FORM: &str =
            "write \"rtsp://HOST:PORT\" or \"HOST:PORT\", optionally followed by \" weight=N\"";
        let mut words = s.split_ascii_whitespace();
        let target = words.next().ok_or_else(|| {
            InvalidValue::new(format!("the back end {} is empty; {FORM}", quoted(s)))
        })?;
        let mut weight = fixed(1);
        for word in words {
            let Some(value) = word.strip_prefix("weight=") else {
                return Err(InvalidValue::new(format!(
                    "unknown back-end option {}; {FORM}",
                    quoted(word)
                )));
            };
            let n: u64 = value.parse().map_err(|_| {
                InvalidValue::new(format!(
                    "invalid weight {}: write a whole number from 0 to 1000",
                    quoted(value)
                ))
            })?;
            weight = BackendWeight::new(n)?;
        }
        let lower = target.to_ascii_lowercase();
        if lower.contains("://") {
            let url: RtspUrl = target.parse()?;
            return Ok(Self {
                host: url.host().clone(),
                port: url.port_or_default(),
                url: Some(url),
                weight,
            });
        }
        let bad = || InvalidValue::new(format!("invalid back end {}; {FORM}", quoted(target)));
        if let Ok(addr) = target.parse::<std::net::SocketAddr>() {
            return Ok(Self {
                url: None,
                host: Host::Ip(addr.ip()),
                port: addr.port(),
                weight,
            });
        }
        let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
        let host = parse_host_name(host).ok_or_else(bad)?;
        Ok(Self {
            url: None,
            host: Host::Name(host),
            port,
            weight,
        })
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.url {
            Some(url) => write!(f, "{url}")?,
            None => write!(f, "{}", self.authority())?,
        }
        if self.weight.get() != 1 {
            write!(f, " weight={}", self.weight)?;
        }
        Ok(())
    }
}

string_value_serde!(
    BackendSpec,
    "a back end such as \"rtsp://10.0.0.1:8554\" or \"10.0.0.1:8554 weight=2\""
);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{parse_config, render_errors};

    fn balancer_of(text: &str) -> BalancerConfig {
        match parse_config(text) {
            Ok(config) => config.balancer,
            Err(errors) => panic!("{}", render_errors("f.toml", text, &errors)),
        }
    }

    fn error_lines(text: &str) -> Vec<String> {
        let errors = parse_config(text).expect_err("the text has errors");
        render_errors("f.toml", text, &errors)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn defaults() {
        let b = BalancerConfig::default();
        assert!(!*b.enabled);
        assert_eq!(b.max_connections.get(), 10_000);
        assert_eq!(b.header_timeout.get(), Duration::from_secs(10));
        assert_eq!(b.max_sessions.get(), 100_000);
        assert_eq!(b.max_pending_setups.get(), 8);
        assert_eq!(b.max_streams_per_session.get(), 16);
        assert_eq!(b.forward_scheduling, ThreadScheduling::NORMAL);
        assert_eq!(b.rtsp_scheduling, ThreadScheduling::NORMAL);
        assert_eq!(b.relay_socket_buffer.get().bytes(), 1024 * 1024);
        assert!(b.media_timeout.is_none());
        assert!(b.service.is_empty());
    }

    #[test]
    fn a_port_group_service() {
        let b = balancer_of(
            r#"
[edge]
enabled = false
[balancer]
enabled = true
[[balancer.service]]
name = "mms"
kind = "port_group"
listen = ["0.0.0.0:1755"]
udp_ports = ["5004-5010", "6970"]
backends = ["10.0.0.1:1755", "10.0.0.2:1755"]
persistence_timeout = "10m"
"#,
        );
        let s = &b.service[0];
        assert_eq!(*s.kind.get(), ServiceKind::PortGroup);
        let ports: Vec<String> = s
            .udp_ports
            .as_ref()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ports, ["5004-5010", "6970"]);
        let base = "[edge]\nenabled = false\n[balancer]\nenabled = true\n[[balancer.service]]\nname = \"g\"\nbackends = [\"10.0.0.1:1755\"]\n";
        for (lines, word) in [
            ("kind = \"port_group\"\nlisten = [\"0.0.0.0:1755\"]\n", "needs udp_ports"),
            ("kind = \"tcp\"\nlisten = [\"0.0.0.0:1755\"]\nudp_ports = [\"5004\"]\n", "port_group\" only"),
            ("kind = \"port_group\"\nlisten = [\"0.0.0.0:1755\"]\nudp_ports = [\"1000-6000\"]\n", "more than 4096"),
            ("kind = \"port_group\"\nlisten = [\"0.0.0.0:1755\", \"0.0.0.0:1756\"]\nudp_ports = [\"5004\"]\n", "one TCP address"),
        ] {
            let errors = error_lines(&format!("{base}{lines}"));
            assert!(errors.iter().any(|l| l.contains(word)), "{lines}: {errors:?}");
        }
    }

    #[test]
    fn rtsp_scheduling_is_read_and_a_wrong_one_points_at_the_value() {
        let base = "[edge]\nenabled = false\n[balancer]\nenabled = true\n";
        let service = "[[balancer.service]]\nname = \"r\"\nlisten = [\"0.0.0.0:554\"]\nbackends = [\"10.0.0.1:8554\"]\n";
        let b = balancer_of(&format!("{base}rtsp_scheduling = \"fifo:10\"\n{service}"));
        assert_eq!(b.rtsp_scheduling, ThreadScheduling::Fifo { priority: 10 });
        let lines = error_lines(&format!("{base}rtsp_scheduling = \"fifo:100\"\n{service}"));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains(":5:19: invalid scheduling \"fifo:100\""),
            "{lines:?}"
        );
    }

    #[test]
    fn the_relay_mode_keys() {
        let b = balancer_of(
            r#"
[edge]
enabled = false
[balancer]
enabled = true
forward_scheduling = "fifo:10"
relay_socket_buffer = "4MiB"
media_timeout = "20s"
[[balancer.service]]
name = "rtsp"
listen = ["0.0.0.0:554"]
backends = ["10.0.0.1:8554"]
"#,
        );
        assert_eq!(
            b.forward_scheduling,
            ThreadScheduling::Fifo { priority: 10 }
        );
        assert_eq!(b.relay_socket_buffer.get().bytes(), 4 * 1024 * 1024);
        assert_eq!(
            b.media_timeout.map(|t| t.get().get()),
            Some(Duration::from_secs(20))
        );
        let base = "[edge]\nenabled = false\n[balancer]\nenabled = true\n";
        let service = "[[balancer.service]]\nname = \"r\"\nlisten = [\"0.0.0.0:554\"]\nbackends = [\"10.0.0.1:8554\"]\n";
        for (key, word) in [
            ("forward_scheduling = \"fifo:0\"\n", "forward_scheduling"),
            ("relay_socket_buffer = \"65MiB\"\n", "relay_socket_buffer"),
            ("media_timeout = \"0s\"\n", "media_timeout"),
        ] {
            let lines = error_lines(&format!("{base}{key}{service}"));
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains(word) || l.contains("fifo:0")),
                "{key}: {lines:?}"
            );
        }
    }

    #[test]
    fn the_failover_keys() {
        let b = balancer_of(
            r#"
[edge]
enabled = false
[balancer]
enabled = true
sync_listen = "10.0.0.11:5540"
sync_peer = "10.0.0.12:5540"
vrrp_state_file = "/run/mediagate/vrrp-state"
vrrp_track_file = "/run/mediagate/vrrp-track"
[[balancer.service]]
name = "rtsp"
listen = ["0.0.0.0:554"]
backends = ["10.0.0.1:8554"]
"#,
        );
        assert_eq!(
            b.sync_listen.as_ref().map(|a| a.get().0.to_string()),
            Some("10.0.0.11:5540".to_owned())
        );
        assert_eq!(
            b.sync_peer.as_ref().map(|a| a.get().0.to_string()),
            Some("10.0.0.12:5540".to_owned())
        );
        assert_eq!(
            b.vrrp_state_file.as_ref().map(|p| p.get().clone()),
            Some(PathBuf::from("/run/mediagate/vrrp-state"))
        );
        assert!(b.vrrp_track_file.is_some());
        assert!(BalancerConfig::default().vrrp_state_file.is_none());
        assert!(error_lines("[balancer]\nsync_peer = \"nowhere\"\n")
            .iter()
            .any(|l| l.contains("sync_peer") || l.contains("nowhere")));
    }

    #[test]
    fn a_service_with_every_key() {
        let b = balancer_of(
            r#"
[edge]
enabled = false
[balancer]
enabled = true
max_connections = 50
header_timeout = "3s"
[[balancer.service]]
name = "vod"
listen = ["0.0.0.0:554"]
backends = ["rtsp://10.0.0.1:8554", "rtsp://10.0.0.2:8554/base weight=3", "edge-1.example.net:554 weight=0"]
media_mode = "direct"
proxy_protocol = true
ports = "50000-50099"
"#,
        );
        assert_eq!(b.max_connections.get(), 50);
        let s = &b.service[0];
        assert_eq!(s.name.get(), "vod");
        assert_eq!(*s.kind.get(), ServiceKind::Rtsp);
        assert_eq!(*s.media_mode.get(), MediaMode::Direct);
        assert_eq!(*s.scheduler.get(), SchedulerName::RoundRobin);
        assert!(*s.proxy_protocol.get());
        let backends: Vec<String> = s.backends.iter().map(|b| b.get().to_string()).collect();
        assert_eq!(
            backends,
            [
                "rtsp://10.0.0.1:8554/",
                "rtsp://10.0.0.2:8554/base weight=3",
                "edge-1.example.net:554 weight=0"
            ]
        );
        assert_eq!(s.backends[1].get().authority(), "10.0.0.2:8554");
        assert_eq!(s.ports.pairs(), 50);
    }

    #[test]
    fn a_bad_back_end_points_at_its_value() {
        let text = "[edge]\nenabled = false\n[balancer]\nenabled = true\n[[balancer.service]]\nname = \"a\"\nlisten = [\"0.0.0.0:554\"]\nbackends = [\"10.0.0.1:8554 weight=2000\", \"10.0.0.1\", \"10.0.0.1:1 speed=3\"]\n";
        assert_eq!(
            error_lines(text),
            ["f.toml:8:13: 2000 is out of range: it must be from 0 to 1000"]
        );
        let text = text.replace("weight=2000", "weight=2");
        assert_eq!(
            error_lines(&text),
            ["f.toml:8:39: invalid back end \"10.0.0.1\"; write \"rtsp://HOST:PORT\" or \"HOST:PORT\", optionally followed by \" weight=N\""]
        );
    }

    #[test]
    fn unknown_modes_are_named() {
        let text = "[balancer]\n[[balancer.service]]\nname = \"a\"\nlisten = []\nbackends = []\nmedia_mode = \"dsr\"\n";
        assert_eq!(
            error_lines(text),
            ["f.toml:6:14: unknown variant `dsr`, expected one of `relay`, `direct`, `redirect`"]
        );
    }

    #[test]
    fn back_end_strings_round_trip() {
        for text in [
            "10.0.0.1:8554",
            "[2001:db8::1]:554 weight=5",
            "rtsp://cam.example.net:8554/live weight=0",
        ] {
            let spec: BackendSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
    }
}

#[cfg(test)]
mod validate_tests {
    use crate::{parse_config, render_errors};

    fn errors(text: &str) -> Vec<String> {
        let errors = parse_config(text).expect_err("the text has errors");
        render_errors("f.toml", text, &errors)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn an_enabled_balancer_needs_a_service() {
        assert_eq!(
            errors("[edge]\nenabled = false\n[balancer]\nenabled = true\n"),
            ["f.toml:4:11: the balancer is enabled but has no service; add [[balancer.service]] with name, listen and backends"]
        );
    }

    #[test]
    fn service_mistakes_are_reported_where_they_are_written() {
        let text = "[edge]\nenabled = false\n[balancer]\nenabled = true\n[[balancer.service]]\nname = \"a\"\nlisten = [\"0.0.0.0:554\"]\nbackends = [\"10.0.0.1:554\"]\nkind = \"tcp\"\nmedia_mode = \"relay\"\npersistence_timeout = \"0s\"\n[[balancer.service]]\nname = \"a\"\nlisten = []\nbackends = []\n";
        assert_eq!(
            errors(text),
            [
                "f.toml:10:14: service \"a\": media_mode and ports apply to kind = \"rtsp\" only; remove them",
                "f.toml:11:23: service \"a\": persistence_timeout must be longer than 0s; leave it out for no persistence",
                "f.toml:13:8: the service name \"a\" is already used; each service needs its own",
                "f.toml:14:10: service \"a\" has no listen address; add one such as \"0.0.0.0:554\"",
                "f.toml:15:12: service \"a\" has no back end; add one such as \"rtsp://10.0.0.1:8554\"",
            ]
        );
    }
}
