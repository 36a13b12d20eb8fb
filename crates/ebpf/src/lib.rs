//! The relay's kernel fast path: a tc program (`bpf/relay_fwd.bpf.c`) that forwards
//! latched IPv4 and IPv6 UDP media streams inside the kernel, and its loader.
//!
//! What it does: [`FastPath::load`] loads the program embedded at build time, attaches
//! it at TCX ingress of every Ethernet and loopback interface present, and owns the
//! flow map; [`FastPath::rescan`] attaches it to interfaces created since and lets go
//! of those that vanished (the caller decides how often). [`FastPath::insert`] tells the kernel that datagrams from one address to
//! one relay port leave rewritten from another relay port to another address (out of
//! the interface the kernel's route to that address names, asked at insertion, so the
//! host needs no IP forwarding); [`FastPath::counters`] and [`FastPath::remove`] read what the kernel forwarded.
//!
//! Lifecycle: the links are file-descriptor-owned bpf_links (TCX, Linux 6.6+) and
//! nothing is pinned, so when the process ends, however it ends, the kernel detaches
//! the program and frees the map: nothing forwards after a `kill -9`.
//!
//! What it does not: decide which streams go to the kernel (the relay's engine does,
//! from its latches), bridge IPv4 and IPv6 ([`FastPath::insert`] refuses such an
//! entry), or handle IPv4 options, IPv6 extension headers, fragments or RTCP (those
//! reach the relay's sockets untouched).

mod flows;
mod route;

pub use flows::{FlowCounters, FlowKey, FlowTarget};

use aya::maps::{HashMap, MapData};
use aya::programs::links::LinkOrder;
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions, TcAttachType};
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

/// One interface the program is attached to. An interface is named by its index as
/// well as its name: one deleted and created again under the same name is a new one.
struct Attached {
    name: String,
    ifindex: u32,
    // Dropping it detaches the program from the interface.
    _link: SchedClassifierLink,
}

/// What [`FastPath::rescan`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rescan {
    /// Interfaces the program was attached to now.
    pub attached: Vec<String>,
    /// Interfaces that vanished, whose links were dropped.
    pub dropped: Vec<String>,
}

/// The loaded program, its links and the flow map. Dropping it detaches the program.
pub struct FastPath {
    flows: HashMap<MapData, flows::RawKey, flows::RawEntry>,
    attached: Vec<Attached>,
    /// Interfaces that refused the program, not retried (nor logged again) while they
    /// exist.
    refused: Vec<(String, u32)>,
    // Last: the program goes after the map handle and the links.
    ebpf: aya::Ebpf,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("interfaces", &self.interfaces())
            .finish_non_exhaustive()
    }
}

fn kernel(e: &dyn std::fmt::Display) -> LoadError {
    LoadError::Kernel(e.to_string())
}

fn program(ebpf: &mut aya::Ebpf) -> Result<&mut SchedClassifier, LoadError> {
    ebpf.program_mut("relay_fwd")
        .ok_or_else(|| LoadError::Kernel("the object has no relay_fwd program".into()))?
        .try_into()
        .map_err(|e| kernel(&e))
}

/// Attaches `program` at TCX ingress of `name`, after whatever is there.
fn attach(program: &mut SchedClassifier, name: &str) -> Result<SchedClassifierLink, String> {
    let id = program
        .attach_with_options(
            name,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|e| e.to_string())?;
    program.take_link(id).map_err(|e| e.to_string())
}

impl FastPath {
    /// Loads the program and attaches it at TCX ingress of every Ethernet and
    /// loopback interface; an interface that refuses is skipped (and logged), none
    /// accepting is an error. Interfaces that appear or vanish later are followed by
    /// [`FastPath::rescan`].
    pub fn load() -> Result<Self, LoadError> {
        if std::env::var(DISABLE_ENV).is_ok_and(|v| v == "off") {
            return Err(LoadError::Disabled);
        }
        if !built() {
            return Err(LoadError::NotBuilt);
        }
        let mut ebpf = aya::Ebpf::load(PROGRAM).map_err(|e| kernel(&e))?;
        program(&mut ebpf)?.load().map_err(|e| kernel(&e))?;
        let map = ebpf
            .take_map("FLOWS")
            .ok_or_else(|| LoadError::Kernel("the object has no FLOWS map".into()))?;
        let flows = HashMap::try_from(map).map_err(|e| kernel(&e))?;
        let mut fast = Self {
            flows,
            attached: Vec::new(),
            refused: Vec::new(),
            ebpf,
        };
        fast.rescan_with(media_interfaces())?;
        if fast.attached.is_empty() {
            return Err(LoadError::NoInterface(if fast.refused.is_empty() {
                "no Ethernet or loopback interface".to_owned()
            } else {
                let names: Vec<&str> = fast.refused.iter().map(|(n, _)| n.as_str()).collect();
                format!("refused by {} (see the warnings above)", names.join(", "))
            }));
        }
        Ok(fast)
    }

    /// Attaches the program to Ethernet and loopback interfaces that appeared since the
    /// last scan (a veth or VLAN created after the start) and drops the links of those
    /// that vanished. Cheap enough (a walk of `/sys/class/net`) for a timer of a few
    /// seconds.
    pub fn rescan(&mut self) -> Rescan {
        self.rescan_with(media_interfaces()).unwrap_or_default()
    }

    fn rescan_with(&mut self, present: Vec<(String, u32)>) -> Result<Rescan, LoadError> {
        let mut change = Rescan::default();
        let here =
            |name: &str, ifindex: u32| present.iter().any(|(n, i)| n == name && *i == ifindex);
        self.attached.retain(|a| {
            let keep = here(&a.name, a.ifindex);
            if !keep {
                change.dropped.push(a.name.clone());
            }
            keep
        });
        self.refused.retain(|(n, i)| here(n, *i));
        for (name, ifindex) in present {
            let known = |n: &String, i: &u32| *n == name && *i == ifindex;
            if self.attached.iter().any(|a| known(&a.name, &a.ifindex))
                || self.refused.iter().any(|(n, i)| known(n, i))
            {
                continue;
            }
            match attach(program(&mut self.ebpf)?, &name) {
                Ok(link) => {
                    change.attached.push(name.clone());
                    self.attached.push(Attached {
                        name,
                        ifindex,
                        _link: link,
                    });
                }
                Err(e) => {
                    tracing::warn!("relay: eBPF fast path not attached to {name}: {e}");
                    self.refused.push((name, ifindex));
                }
            }
        }
        Ok(change)
    }

    /// The interfaces the program is attached to, sorted.
    pub fn interfaces(&self) -> Vec<String> {
        let mut names: Vec<String> = self.attached.iter().map(|a| a.name.clone()).collect();
        names.sort();
        names
    }

    /// Forwards datagrams matching `key` as `target` says, with zeroed counters
    /// (replacing an entry for the same key).
    ///
    /// It first asks the kernel's routing table where a datagram from `target.from`
    /// to `target.to` goes (as the relay's socket would send it): to an address of
    /// this host, the program hands the datagram back to the local stack; to another
    /// host, it sends out of the route's interface, so no IP forwarding is needed on
    /// any interface. No route (the kernel's error) means no entry. An entry mixing IPv4 and IPv6 is refused (`InvalidInput`): bridging stays
    /// in user space.
    pub fn insert(&mut self, key: FlowKey, target: FlowTarget) -> std::io::Result<()> {
        if !flows::same_family(&key, &target) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the kernel path does not bridge IPv4 and IPv6",
            ));
        }
        let egress = route::egress(target.from.ip(), target.to.ip()).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("no route from {} to {}: {e}", target.from, target.to),
            )
        })?;
        self.flows
            .insert(
                flows::RawKey::from(key),
                flows::RawEntry::new(target, egress),
                0,
            )
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

/// Names and indexes of the interfaces the program attaches to: Ethernet (veth and
/// VLANs included) and loopback; L3 devices (tun, WireGuard) have no Ethernet header
/// for it to parse.
fn media_interfaces() -> Vec<(String, u32)> {
    const ARPHRD_ETHER: u32 = 1;
    const ARPHRD_LOOPBACK: u32 = 772;
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let number = |path: std::path::PathBuf| -> Option<u32> {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    };
    let mut names: Vec<(String, u32)> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kind = number(e.path().join("type"))?;
            let ifindex = number(e.path().join("ifindex"))?;
            (kind == ARPHRD_ETHER || kind == ARPHRD_LOOPBACK).then_some((name, ifindex))
        })
        .collect();
    names.sort();
    names
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
