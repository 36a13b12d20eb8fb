//! The relay's kernel fast path: a tc program (`bpf/relay_fwd.bpf.c`) that forwards
//! latched IPv4 and IPv6 UDP media streams inside the kernel, and its loader.
//!
//! What it does: [`FastPath::load`] loads the program embedded at build time, attaches
//! it at TCX ingress of every Ethernet and loopback interface present, and owns the
//! flow map; [`FastPath::rescan`] attaches it to interfaces created since and lets go
//! of those that vanished (the caller decides how often). [`FastPath::insert`] tells the kernel that datagrams from one address to
//! one relay port leave rewritten from another relay port to another address (out of
//! the interface the kernel's route to that address names, asked at insertion, so the
//! host needs no IP forwarding); [`FastPath::reroute`] moves entries whose route
//! changed since (the kernel's route notifications say when to ask again).
//! [`FastPath::counters`] reads what the kernel forwarded for one entry,
//! [`FastPath::remove`] reads and removes it in one step, and a [`FlowReader`] reads
//! every entry in a few batched system calls, independently of the [`FastPath`].
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
mod sys;

pub use flows::{FlowCounters, FlowKey, FlowTarget};

use std::os::fd::{AsFd as _, OwnedFd};

use aya::maps::{HashMap, IterableMap as _, MapData};
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
    /// What each entry was inserted with and where its route led then, so that
    /// [`FastPath::reroute`] can ask again.
    routes: std::collections::HashMap<FlowKey, (FlowTarget, route::Egress)>,
    /// Route change notifications; `None` when the kernel refused the subscription
    /// (then every [`FastPath::reroute`] asks again).
    route_watch: Option<route::RouteWatch>,
    /// A route change was reported but its entries could not be checked yet.
    reroute_pending: bool,
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
        let route_watch = route::RouteWatch::new()
            .map_err(|e| {
                tracing::warn!(
                    "relay: no route change notifications ({e}): kernel entries re-ask their routes at every interface scan"
                );
            })
            .ok();
        let mut fast = Self {
            flows,
            routes: std::collections::HashMap::new(),
            route_watch,
            reroute_pending: false,
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
            .map_err(std::io::Error::other)?;
        self.routes.insert(key, (target, egress));
        Ok(())
    }

    /// What the kernel forwarded for `key` so far; `None` for no entry.
    pub fn counters(&self, key: FlowKey) -> Option<FlowCounters> {
        self.flows
            .get(&flows::RawKey::from(key), 0)
            .ok()
            .map(|e| e.counters())
    }

    /// Removes `key`'s entry and returns its final counters, read and removed in one
    /// step: every datagram the kernel forwarded with it is counted in them.
    pub fn remove(&mut self, key: FlowKey) -> Option<FlowCounters> {
        self.routes.remove(&key);
        self.take(key)
    }

    /// Removes `key`'s entry from the map alone, returning its final counters.
    fn take(&mut self, key: FlowKey) -> Option<FlowCounters> {
        let raw = flows::RawKey::from(key);
        match sys::lookup_and_delete::<_, flows::RawEntry>(self.map_fd(), &raw) {
            Ok(last) => last.map(|e| e.counters()),
            // Not expected where TCX loads (both need newer kernels than this call),
            // but an entry must never outlive its stream: read, then remove.
            Err(e) => {
                tracing::debug!(
                    "relay: eBPF lookup-and-delete refused ({e}); reading, then removing"
                );
                let last = self.counters(key);
                let _ = self.flows.remove(&raw);
                last
            }
        }
    }

    fn map_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.flows.map().fd().as_fd()
    }

    /// A second handle on the flow map that reads every entry's counters in a few
    /// system calls, without borrowing this (so without the lock a caller keeps it
    /// under).
    pub fn reader(&self) -> std::io::Result<FlowReader> {
        Ok(FlowReader {
            map: self.map_fd().try_clone_to_owned()?,
        })
    }

    /// Whether the kernel tells this fast path about route changes, so that
    /// [`FastPath::reroute`] costs one system call when nothing changed (else it asks
    /// the kernel for every entry's route each time: call it seldom).
    pub fn follows_routes(&self) -> bool {
        self.route_watch.is_some()
    }

    /// Moves entries whose destination's route now leads out of another interface
    /// (or became local, or stopped being local) onto the new route, if the kernel
    /// reported a route change since the last call (or it reports none:
    /// [`FastPath::follows_routes`]). A moved entry is replaced: its final counters are
    /// returned and the new one counts from zero. An entry whose destination has no
    /// route any more is removed (its datagrams reach the relay's sockets, which
    /// follow the kernel's routing themselves).
    pub fn reroute(&mut self) -> Vec<Rerouted> {
        let changed = self
            .route_watch
            .as_ref()
            .is_none_or(route::RouteWatch::changed);
        if !(changed || self.reroute_pending) || self.routes.is_empty() {
            return Vec::new();
        }
        let Ok(mut resolver) = route::Resolver::new() else {
            // Out of descriptors, say: the change is not forgotten.
            self.reroute_pending = true;
            return Vec::new();
        };
        self.reroute_pending = false;
        // Many entries share a pair of addresses (a call's two directions, RTP and
        // RTCP): one question each.
        let mut answers = std::collections::HashMap::new();
        let moved: Vec<(FlowKey, FlowTarget, Option<route::Egress>)> = self
            .routes
            .iter()
            .filter_map(|(key, (target, was))| {
                let now = *answers
                    .entry((target.from.ip(), target.to.ip()))
                    .or_insert_with(|| resolver.egress(target.from.ip(), target.to.ip()).ok());
                (now != Some(*was)).then_some((*key, *target, now))
            })
            .collect();
        let mut out = Vec::with_capacity(moved.len());
        for (key, target, egress) in moved {
            let last = self.take(key).unwrap_or_default();
            self.routes.remove(&key);
            let reinstalled = egress.is_some_and(|egress| {
                let entry = flows::RawEntry::new(target, egress);
                let ok = self
                    .flows
                    .insert(flows::RawKey::from(key), entry, 0)
                    .is_ok();
                if ok {
                    self.routes.insert(key, (target, egress));
                }
                ok
            });
            out.push(Rerouted {
                key,
                last,
                reinstalled,
            });
        }
        out
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

/// An entry [`FastPath::reroute`] moved onto its destination's new route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rerouted {
    /// The entry's key.
    pub key: FlowKey,
    /// The replaced entry's final counters (the one in the map now starts at zero).
    pub last: FlowCounters,
    /// Whether the map has an entry for `key` again (false: no route now).
    pub reinstalled: bool,
}

/// A handle on the flow map for reading every entry's counters at once
/// ([`FastPath::reader`]).
#[derive(Debug)]
pub struct FlowReader {
    map: OwnedFd,
}

/// Entries per `BPF_MAP_LOOKUP_BATCH` call at first: 1,024 keys and values are 116 KiB.
const BATCH: usize = 1024;

impl FlowReader {
    /// Every entry's counters, read with one `BPF_MAP_LOOKUP_BATCH` system call per
    /// [`BATCH`] entries (a per-entry lookup costs one per entry). Entries inserted
    /// or removed during the read may or may not be in it; each entry read is read
    /// whole.
    pub fn snapshot(&self) -> std::io::Result<FlowSnapshot> {
        self.snapshot_sized(0)
    }

    /// As [`FlowReader::snapshot`], with room for `expected` entries from the start
    /// (the last snapshot's length: a relay's entries change slowly).
    pub fn snapshot_sized(&self, expected: usize) -> std::io::Result<FlowSnapshot> {
        let mut counters = KeyMap::with_capacity_and_hasher(expected, Default::default());
        let mut keys = vec![flows::RawKey::default(); BATCH];
        let mut values = vec![flows::RawEntry::default(); BATCH];
        let mut from = None;
        let mut calls = 0;
        loop {
            calls += 1;
            let (filled, next) =
                match sys::lookup_batch(self.map.as_fd(), from, &mut keys, &mut values) {
                    Ok(read) => read,
                    // One bucket holds more entries than the buffers: larger ones. (A
                    // bucket holds a handful; the bound keeps a kernel that answers
                    // ENOSPC for another reason from growing them forever.)
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && keys.len() < 1 << 16 => {
                        let bigger = keys.len() * 2;
                        keys.resize(bigger, flows::RawKey::default());
                        values.resize(bigger, flows::RawEntry::default());
                        continue;
                    }
                    Err(e) => return Err(e),
                };
            for (key, value) in keys.iter().zip(&values).take(filled) {
                counters.insert(*key, value.counters());
            }
            match next {
                Some(token) => from = Some(token),
                None => break,
            }
        }
        Ok(FlowSnapshot { counters, calls })
    }
}

/// The counters of every entry at one moment ([`FlowReader::snapshot`]).
#[derive(Debug, Default)]
pub struct FlowSnapshot {
    counters: KeyMap,
    calls: usize,
}

/// Keys come from the kernel's map, which only this process writes: no hash
/// flooding to fear, so a fast hash instead of SipHash (a snapshot hashes every entry,
/// four times a second).
type KeyMap = std::collections::HashMap<flows::RawKey, FlowCounters, foldhash::fast::RandomState>;

impl FlowSnapshot {
    /// What the kernel had forwarded for `key` when it was read; `None` for no entry.
    pub fn get(&self, key: FlowKey) -> Option<FlowCounters> {
        self.counters.get(&flows::RawKey::from(key)).copied()
    }

    /// Entries read.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether no entry was read.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// System calls the read took.
    pub fn system_calls(&self) -> usize {
        self.calls
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
