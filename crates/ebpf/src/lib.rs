//! The relay's kernel fast path: a tc program (`bpf/relay_fwd.bpf.c`) that forwards
//! latched IPv4 UDP media streams inside the kernel, and its loader.
//!
//! What it does: [`FastPath::load`] loads the program embedded at build time, attaches
//! it at TCX ingress of every Ethernet and loopback interface present, and owns the
//! flow map. [`FastPath::insert`] tells the kernel that datagrams from one address to
//! one relay port leave rewritten from another relay port to another address;
//! [`FastPath::counters`] and [`FastPath::remove`] read what the kernel forwarded.
//!
//! Lifecycle: the links are file-descriptor-owned bpf_links (TCX, Linux 6.6+) and
//! nothing is pinned, so when the process ends, however it ends, the kernel detaches
//! the program and frees the map: nothing forwards after a `kill -9`.
//!
//! What it does not: decide which streams go to the kernel (the relay's engine does,
//! from its latches), handle IPv6, IP options, fragments or RTCP (those reach the
//! relay's sockets untouched), or follow interfaces created after the load.

mod flows;

pub use flows::{FlowCounters, FlowKey, FlowTarget};

use std::net::SocketAddrV4;

use aya::maps::{HashMap, MapData};
use aya::programs::links::LinkOrder;
use aya::programs::tc::{TcAttachOptions, TcAttachType};
use aya::programs::SchedClassifier;

/// The program, compiled by build.rs; empty when clang was missing at build time.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay_fwd.o"));

/// Environment variable that, set to `off`, makes [`FastPath::load`] refuse (tests of
/// the fallback, or an operator ruling the fast path out without editing the config).
pub const DISABLE_ENV: &str = "MEDIAGATE_RELAY_EBPF";

/// Whether this build carries the program (clang was there when it was built).
pub fn built() -> bool {
    !PROGRAM.is_empty()
}

/// Why the fast path is not available.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Built without clang.
    #[error("this build has no eBPF program: clang was missing at build time")]
    NotBuilt,
    /// Ruled out by [`DISABLE_ENV`].
    #[error("the eBPF fast path is disabled by {DISABLE_ENV}=off")]
    Disabled,
    /// The kernel refused the program or the map (permissions: needs CAP_BPF and
    /// CAP_NET_ADMIN; or a kernel without TCX, before 6.6).
    #[error("the kernel refused the eBPF program: {0} (needs CAP_BPF and CAP_NET_ADMIN, and Linux 6.6 or later for TCX links)")]
    Kernel(String),
    /// No interface took the program.
    #[error("the eBPF program could not be attached to any interface: {0}")]
    NoInterface(String),
}

/// The loaded program, its links and the flow map. Dropping it detaches the program.
pub struct FastPath {
    flows: HashMap<MapData, flows::RawKey, flows::RawEntry>,
    interfaces: Vec<String>,
    // Last: the program and its links go after the map handle.
    _ebpf: aya::Ebpf,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

impl FastPath {
    /// Loads the program and attaches it at TCX ingress of every Ethernet and
    /// loopback interface; an interface that refuses is skipped (and logged), none
    /// accepting is an error.
    pub fn load() -> Result<Self, LoadError> {
        if std::env::var(DISABLE_ENV).is_ok_and(|v| v == "off") {
            return Err(LoadError::Disabled);
        }
        if !built() {
            return Err(LoadError::NotBuilt);
        }
        let kernel = |e: &dyn std::fmt::Display| LoadError::Kernel(e.to_string());
        let mut ebpf = aya::Ebpf::load(PROGRAM).map_err(|e| kernel(&e))?;
        let program: &mut SchedClassifier = ebpf
            .program_mut("relay_fwd")
            .ok_or_else(|| LoadError::Kernel("the object has no relay_fwd program".into()))?
            .try_into()
            .map_err(|e| kernel(&e))?;
        program.load().map_err(|e| kernel(&e))?;
        let mut interfaces = Vec::new();
        let mut refused = Vec::new();
        for name in media_interfaces() {
            match program.attach_with_options(
                &name,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            ) {
                Ok(_) => interfaces.push(name),
                Err(e) => {
                    tracing::warn!("relay: eBPF fast path not attached to {name}: {e}");
                    refused.push(format!("{name}: {e}"));
                }
            }
        }
        if interfaces.is_empty() {
            return Err(LoadError::NoInterface(if refused.is_empty() {
                "no Ethernet or loopback interface".to_owned()
            } else {
                refused.join("; ")
            }));
        }
        let map = ebpf
            .take_map("FLOWS")
            .ok_or_else(|| LoadError::Kernel("the object has no FLOWS map".into()))?;
        let flows = HashMap::try_from(map).map_err(|e| kernel(&e))?;
        Ok(Self {
            flows,
            interfaces,
            _ebpf: ebpf,
        })
    }

    /// The interfaces the program is attached to.
    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    /// Forwards datagrams matching `key` as `target` says, with zeroed counters
    /// (replacing an entry for the same key).
    pub fn insert(&mut self, key: FlowKey, target: FlowTarget) -> std::io::Result<()> {
        self.flows
            .insert(flows::RawKey::from(key), flows::RawEntry::from(target), 0)
            .map_err(std::io::Error::other)
    }

    /// What the kernel forwarded for `key` so far; `None` for no entry.
    pub fn counters(&self, key: FlowKey) -> Option<FlowCounters> {
        self.flows
            .get(&flows::RawKey::from(key), 0)
            .ok()
            .map(|e| e.counters())
    }

    /// Removes `key`'s entry and returns its final counters. A datagram the kernel
    /// forwards between the read and the removal is not counted (a few at most).
    pub fn remove(&mut self, key: FlowKey) -> Option<FlowCounters> {
        let last = self.counters(key);
        let _ = self.flows.remove(&flows::RawKey::from(key));
        last
    }

    /// Entries in the map (for tests and metrics; walks the map).
    pub fn len(&self) -> usize {
        self.flows.keys().filter(Result::is_ok).count()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of [`FlowCounters::last_ns`] (and of
/// `std::time::Instant` on Linux).
pub fn monotonic_ns() -> u64 {
    flows::monotonic_ns()
}

/// Names of the interfaces the program attaches to: Ethernet (veth included) and
/// loopback; L3 devices (tun, WireGuard) have no Ethernet header for it to parse.
fn media_interfaces() -> Vec<String> {
    const ARPHRD_ETHER: u32 = 1;
    const ARPHRD_LOOPBACK: u32 = 772;
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kind = std::fs::read_to_string(e.path().join("type")).ok()?;
            let kind: u32 = kind.trim().parse().ok()?;
            (kind == ARPHRD_ETHER || kind == ARPHRD_LOOPBACK).then_some(name)
        })
        .collect();
    names.sort();
    names
}

/// The IPv4 socket addresses of a flow, for callers holding [`std::net::SocketAddr`]s.
pub fn v4(addr: std::net::SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        std::net::SocketAddr::V4(a) => Some(a),
        std::net::SocketAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relay prints these at start; the operator must learn what to do.
    #[test]
    fn refusals_say_what_is_missing() {
        assert_eq!(
            LoadError::NotBuilt.to_string(),
            "this build has no eBPF program: clang was missing at build time"
        );
        assert!(LoadError::Kernel("EPERM".into())
            .to_string()
            .contains("needs CAP_BPF and CAP_NET_ADMIN"));
    }
}
