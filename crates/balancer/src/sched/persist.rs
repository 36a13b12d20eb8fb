//! Persistence by client IP: a client that had a session on a back end gets the same
//! back end for its next sessions while it keeps coming back within the timeout (the
//! LVS Windows Media recipe's `-p 600`).
//!
//! What it does: a table bounded in entries, oldest-used evicted first; every use
//! refreshes an entry; time is an argument. An entry whose back end cannot take the
//! session (down, drained, removed) is dropped the moment it is looked up, and
//! [`ClientIpTable::forget_backend`] drops them all at once when health says so, so a
//! client is never pinned to a dead back end for the rest of its timeout.
//!
//! What it does not: persistence by RTSP session (the RTSP router's session table does
//! that), netmask granularity, or any clock.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{PickRequest, Scheduler};
use crate::backend::{BackendId, BackendView};

/// The classic recipe's persistence timeout.
pub const DEFAULT_PERSISTENCE_TIMEOUT: Duration = Duration::from_secs(600);

/// Entries kept at most unless configured otherwise (about 100 bytes each).
pub const DEFAULT_PERSISTENCE_CAPACITY: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    backend: BackendId,
    last_used: Instant,
    /// Position in the use order.
    seq: u64,
}

/// Client IP → back end, with a timeout since last use and LRU eviction.
#[derive(Debug)]
pub struct ClientIpTable {
    timeout: Duration,
    capacity: usize,
    entries: HashMap<IpAddr, Entry>,
    /// seq → client, oldest use first. With one timeout for all, the oldest use is
    /// also the first to expire, so expiry and eviction both pop from the front.
    order: BTreeMap<u64, IpAddr>,
    next_seq: u64,
}

impl ClientIpTable {
    /// A table keeping an entry `timeout` after its last use, at most `capacity`
    /// entries (at least 1).
    pub fn new(timeout: Duration, capacity: usize) -> Self {
        Self {
            timeout,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The back end `client` is pinned to, if the entry is alive at `now` and that back
    /// end is in `backends` and eligible; refreshes the entry. A dead or ineligible
    /// entry is removed.
    pub fn lookup(
        &mut self,
        client: IpAddr,
        backends: &[BackendView],
        now: Instant,
    ) -> Option<BackendId> {
        self.expire(now);
        let entry = *self.entries.get(&client)?;
        let usable = backends
            .iter()
            .any(|b| b.id == entry.backend && b.eligible());
        if !usable {
            self.remove(client);
            return None;
        }
        self.touch(client, entry.backend, now);
        Some(entry.backend)
    }

    /// Pins `client` to `backend` from `now`, evicting the least recently used entry
    /// when full.
    pub fn insert(&mut self, client: IpAddr, backend: BackendId, now: Instant) {
        self.expire(now);
        if !self.entries.contains_key(&client) && self.entries.len() >= self.capacity {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.entries.remove(&oldest);
            }
        }
        self.touch(client, backend, now);
    }

    /// The persistent pick: the client's pinned back end when it can take the session,
    /// else `scheduler`'s pick, which is then pinned.
    pub fn pick(
        &mut self,
        scheduler: &mut Scheduler,
        req: &PickRequest<'_>,
        backends: &[BackendView],
        now: Instant,
    ) -> Option<BackendId> {
        if let Some(id) = self.lookup(req.client_ip, backends, now) {
            return Some(id);
        }
        let id = scheduler.pick(req, backends)?;
        self.insert(req.client_ip, id, now);
        Some(id)
    }

    /// Drops every entry pointing at `backend` (it went down or was removed).
    /// Returns how many.
    pub fn forget_backend(&mut self, backend: BackendId) -> usize {
        let gone: Vec<IpAddr> = self
            .entries
            .iter()
            .filter(|(_, e)| e.backend == backend)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &gone {
            self.remove(*ip);
        }
        gone.len()
    }

    /// Drops the entries not used for `timeout` at `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some((&seq, &ip)) = self.order.first_key_value() {
            let e = self.entries[&ip];
            debug_assert_eq!(e.seq, seq);
            if now.saturating_duration_since(e.last_used) < self.timeout {
                break;
            }
            self.order.pop_first();
            self.entries.remove(&ip);
        }
    }

    /// When the oldest entry expires, for a caller that sweeps on a timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (_, ip) = self.order.first_key_value()?;
        Some(self.entries[ip].last_used + self.timeout)
    }

    fn touch(&mut self, client: IpAddr, backend: BackendId, now: Instant) {
        if let Some(old) = self.entries.get(&client) {
            self.order.remove(&old.seq);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, client);
        // Time never runs back for an entry even if a caller's clock readings do.
        let last_used = self
            .entries
            .get(&client)
            .map_or(now, |e| e.last_used.max(now));
        self.entries.insert(
            client,
            Entry {
                backend,
                last_used,
                seq,
            },
        );
    }

    fn remove(&mut self, client: IpAddr) {
        if let Some(e) = self.entries.remove(&client) {
            self.order.remove(&e.seq);
        }
    }
}

impl Default for ClientIpTable {
    fn default() -> Self {
        Self::new(DEFAULT_PERSISTENCE_TIMEOUT, DEFAULT_PERSISTENCE_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::Algorithm;
    use std::net::{Ipv4Addr, SocketAddr};

    fn view(i: u32, up: bool) -> BackendView {
        BackendView {
            id: BackendId(i),
            addr: SocketAddr::from(([10, 0, 0, i as u8], 8554)),
            weight: 1,
            up,
            sessions: 0,
            bandwidth_bps: 0,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    #[test]
    fn a_client_keeps_its_back_end_until_the_timeout() {
        let t0 = Instant::now();
        let backends = [view(1, true), view(2, true), view(3, true)];
        let mut sched = Scheduler::new(Algorithm::RoundRobin);
        let mut table = ClientIpTable::default();
        let req = PickRequest {
            client_ip: ip(7),
            url: None,
        };
        let first = table.pick(&mut sched, &req, &backends, t0).unwrap();
        for k in 1..20 {
            let now = t0 + Duration::from_secs(30 * k);
            assert_eq!(table.pick(&mut sched, &req, &backends, now), Some(first));
        }
        // 600 s after the last use the entry is gone: round robin moves on.
        let last = t0 + Duration::from_secs(30 * 19);
        assert_eq!(
            table.lookup(ip(7), &backends, last + Duration::from_secs(599)),
            Some(first)
        );
        let later = last + Duration::from_secs(599) + DEFAULT_PERSISTENCE_TIMEOUT;
        assert_eq!(table.lookup(ip(7), &backends, later), None);
        assert!(table.is_empty());
    }

    #[test]
    fn a_down_or_removed_back_end_is_never_returned() {
        let t0 = Instant::now();
        let mut table = ClientIpTable::default();
        table.insert(ip(1), BackendId(1), t0);
        table.insert(ip(2), BackendId(2), t0);
        table.insert(ip(3), BackendId(1), t0);
        let one_down = [view(1, false), view(2, true)];
        assert_eq!(table.lookup(ip(1), &one_down, t0), None);
        assert_eq!(table.len(), 2, "the dead entry is dropped at once");
        let two_removed = [view(1, true)];
        assert_eq!(table.lookup(ip(2), &two_removed, t0), None);
        assert_eq!(table.forget_backend(BackendId(1)), 1);
        assert!(table.is_empty());
        // A drained back end (weight 0) takes no new sessions either.
        table.insert(ip(4), BackendId(1), t0);
        let mut drained = view(1, true);
        drained.weight = 0;
        assert_eq!(table.lookup(ip(4), &[drained], t0), None);
    }

    #[test]
    fn full_table_evicts_the_least_recently_used() {
        let t0 = Instant::now();
        let backends = [view(1, true)];
        let mut table = ClientIpTable::new(DEFAULT_PERSISTENCE_TIMEOUT, 3);
        table.insert(ip(1), BackendId(1), t0);
        table.insert(ip(2), BackendId(1), t0);
        table.insert(ip(3), BackendId(1), t0);
        // ip(1) used again: ip(2) becomes the oldest.
        assert!(table.lookup(ip(1), &backends, t0).is_some());
        table.insert(ip(4), BackendId(1), t0);
        assert_eq!(table.len(), 3);
        assert!(table.lookup(ip(2), &backends, t0).is_none());
        for n in [1, 3, 4] {
            assert!(table.lookup(ip(n), &backends, t0).is_some(), "{n}");
        }
    }

    proptest::proptest! {
        /// Any interleaving of picks, health changes and time: the table stays within
        /// its capacity and a pick never lands on an ineligible back end.
        #[test]
        fn bounded_and_never_ineligible(
            ops in proptest::collection::vec((0u8..4, 0u8..40, 0u32..4, 0u64..200), 1..300),
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut backends: Vec<BackendView> = (0..4).map(|i| view(i, true)).collect();
            let mut sched = Scheduler::new(Algorithm::SourceHash);
            let mut table = ClientIpTable::new(Duration::from_secs(100), 16);
            for (op, client, backend, secs) in ops {
                now += Duration::from_secs(secs);
                match op {
                    0 | 1 => {
                        let req = PickRequest { client_ip: ip(client), url: None };
                        if let Some(id) = table.pick(&mut sched, &req, &backends, now) {
                            let b = backends.iter().find(|b| b.id == id).unwrap();
                            proptest::prop_assert!(b.eligible());
                        }
                    }
                    2 => {
                        let b = &mut backends[backend as usize];
                        b.up = !b.up;
                        if !b.up {
                            table.forget_backend(b.id);
                        }
                    }
                    _ => backends[backend as usize].weight ^= 1,
                }
                proptest::prop_assert!(table.len() <= 16);
                proptest::prop_assert_eq!(table.len(), table.order.len());
            }
        }
    }

    #[test]
    fn poll_timeout_names_the_oldest_expiry() {
        let t0 = Instant::now();
        let mut table = ClientIpTable::new(Duration::from_secs(10), 10);
        assert_eq!(table.poll_timeout(), None);
        table.insert(ip(1), BackendId(1), t0);
        table.insert(ip(2), BackendId(1), t0 + Duration::from_secs(3));
        assert_eq!(table.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        table.expire(t0 + Duration::from_secs(10));
        assert_eq!(table.poll_timeout(), Some(t0 + Duration::from_secs(13)));
    }
}
