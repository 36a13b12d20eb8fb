//! Counters of an L4 service, per back end and for the whole service: lock-free
//! atomics bumped on the data path, read as plain snapshots for `balancer status` and
//! the metrics registry. Bytes are payload bytes (a PROXY v2 header is not counted).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::backend::BackendId;
use crate::l4::lock;

/// One back end's figures within one service.
#[derive(Debug, Default)]
pub struct BackendCounters {
    /// TCP connections or UDP flows started.
    pub flows: AtomicU64,
    pub(crate) active: AtomicU64,
    pub bytes_to_backend: AtomicU64,
    pub bytes_to_client: AtomicU64,
    /// Datagrams (UDP only).
    pub packets_to_backend: AtomicU64,
    pub packets_to_client: AtomicU64,
    /// Connects that failed or timed out.
    pub connect_failures: AtomicU64,
    /// Bumped when the back end goes down: its TCP connections watch it and close.
    down: watch::Sender<u64>,
}

impl BackendCounters {
    /// TCP connections or UDP flows running now.
    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }

    pub(crate) fn flow_started(&self) {
        self.flows.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }

    pub(crate) fn flow_ended(&self) {
        self.active.fetch_sub(1, Relaxed);
    }

    /// What a TCP connection to this back end watches: it changes when the back end
    /// goes down ([`Self::close_connections`]).
    pub(crate) fn down_signal(&self) -> watch::Receiver<u64> {
        self.down.subscribe()
    }

    /// The back end went down: every TCP connection to it closes at once. Returns
    /// how many were running.
    pub(crate) fn close_connections(&self) -> u64 {
        self.down.send_modify(|generation| *generation += 1);
        self.active()
    }
}

/// A snapshot of [`BackendCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendStats {
    pub flows: u64,
    pub active: u64,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
    pub packets_to_backend: u64,
    pub packets_to_client: u64,
    pub connect_failures: u64,
}

/// One service's figures.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Connections accepted / new UDP flows seen.
    pub accepted: AtomicU64,
    /// Refused because the connection cap or flow table bound was reached.
    pub refused_full: AtomicU64,
    /// Closed because no back end could take them (none eligible, or connects failed).
    pub no_backend: AtomicU64,
    /// Closed or forgotten after the idle timeout.
    pub idle_closed: AtomicU64,
    /// Bytes moved by `splice(2)` without entering userspace, and by a userspace copy
    /// (where the kernel refused splice, or it is turned off).
    pub bytes_spliced: AtomicU64,
    pub bytes_copied: AtomicU64,
    backends: Mutex<BTreeMap<BackendId, Arc<BackendCounters>>>,
}

/// A snapshot of [`ServiceCounters`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceStats {
    pub accepted: u64,
    pub refused_full: u64,
    pub no_backend: u64,
    pub idle_closed: u64,
    pub bytes_spliced: u64,
    pub bytes_copied: u64,
    pub backends: BTreeMap<BackendId, BackendStats>,
}

impl ServiceCounters {
    /// The counters of back end `id`, created at first use.
    pub fn backend(&self, id: BackendId) -> Arc<BackendCounters> {
        lock(&self.backends).entry(id).or_default().clone()
    }

    pub fn snapshot(&self) -> ServiceStats {
        let backends = lock(&self.backends)
            .iter()
            .map(|(id, c)| {
                (
                    *id,
                    BackendStats {
                        flows: c.flows.load(Relaxed),
                        active: c.active.load(Relaxed),
                        bytes_to_backend: c.bytes_to_backend.load(Relaxed),
                        bytes_to_client: c.bytes_to_client.load(Relaxed),
                        packets_to_backend: c.packets_to_backend.load(Relaxed),
                        packets_to_client: c.packets_to_client.load(Relaxed),
                        connect_failures: c.connect_failures.load(Relaxed),
                    },
                )
            })
            .collect();
        ServiceStats {
            accepted: self.accepted.load(Relaxed),
            refused_full: self.refused_full.load(Relaxed),
            no_backend: self.no_backend.load(Relaxed),
            idle_closed: self.idle_closed.load(Relaxed),
            bytes_spliced: self.bytes_spliced.load(Relaxed),
            bytes_copied: self.bytes_copied.load(Relaxed),
            backends,
        }
    }
}
