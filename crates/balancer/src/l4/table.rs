//! The L4 services' decision state, sans-IO (time is an argument):
//! [`FlowTable`], the bounded table of UDP flows with an idle timeout, and
//! [`Affinity`], the bounded client-IP → back-end persistence table of port groups.
//!
//! Persistence follows LVS's semantics: an entry lives while the client has flows
//! running on its back end and for the persistence timeout after the last one ended,
//! so a long TCP control connection keeps its UDP ports pinned however long it runs.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::backend::BackendId;

/// Refused: the table is at its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("table full ({0} entries)")]
pub struct Full(pub usize);

/// Flows keyed by `K` with a value each, forgotten after `idle` without [`touch`].
///
/// [`touch`]: FlowTable::touch
#[derive(Debug)]
pub struct FlowTable<K, V> {
    map: HashMap<K, (V, Instant)>,
    max: usize,
    idle: Duration,
}

impl<K: Eq + Hash + Clone, V> FlowTable<K, V> {
    pub fn new(max: usize, idle: Duration) -> FlowTable<K, V> {
        FlowTable {
            map: HashMap::new(),
            max,
            idle,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The flow's value, marking it active at `now`.
    pub fn touch(&mut self, key: &K, now: Instant) -> Option<&mut V> {
        let (v, last) = self.map.get_mut(key)?;
        if now > *last {
            *last = now;
        }
        Some(v)
    }

    /// Adds a flow active at `now`; refused when the table is full. A flow already
    /// there is replaced (and returned in `Ok`).
    pub fn insert(&mut self, key: K, value: V, now: Instant) -> Result<Option<V>, (Full, V)> {
        if self.map.len() >= self.max && !self.map.contains_key(&key) {
            return Err((Full(self.max), value));
        }
        Ok(self.map.insert(key, (value, now)).map(|(v, _)| v))
    }

    /// Removes and returns the flows idle for `idle` or longer at `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<(K, V)> {
        let idle = self.idle;
        self.drain_where(|_, _, last| now.saturating_duration_since(last) >= idle)
    }

    /// Removes and returns the flows whose value matches (a back end went down).
    pub fn remove_where(&mut self, mut f: impl FnMut(&V) -> bool) -> Vec<(K, V)> {
        self.drain_where(|_, v, _| f(v))
    }

    fn drain_where(&mut self, mut f: impl FnMut(&K, &V, Instant) -> bool) -> Vec<(K, V)> {
        let keys: Vec<K> = self
            .map
            .iter()
            .filter(|(k, (v, last))| f(k, v, *last))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.map.remove(&k).map(|(v, _)| (k, v)))
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
struct Pin {
    backend: BackendId,
    flows: u32,
    /// Set when the last flow ended.
    expires: Option<Instant>,
}

/// Client IP → back end, kept while the client has flows and for `timeout` after.
#[derive(Debug)]
pub struct Affinity {
    map: HashMap<IpAddr, Pin>,
    max: usize,
    timeout: Duration,
}

impl Affinity {
    pub fn new(max: usize, timeout: Duration) -> Affinity {
        Affinity {
            map: HashMap::new(),
            max,
            timeout,
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The back end `client` is pinned to at `now`.
    pub fn lookup(&self, client: IpAddr, now: Instant) -> Option<BackendId> {
        let pin = self.map.get(&client)?;
        match pin.expires {
            Some(t) if now >= t => None,
            _ => Some(pin.backend),
        }
    }

    /// A flow from `client` to `backend` started at `now`: pins the client there (a
    /// previous pin to another back end is replaced, as when that one went down).
    /// Refused when the table is full of live pins; expired ones make room first.
    pub fn flow_started(
        &mut self,
        client: IpAddr,
        backend: BackendId,
        now: Instant,
    ) -> Result<(), Full> {
        if !self.map.contains_key(&client) && self.map.len() >= self.max {
            self.expire(now);
            if self.map.len() >= self.max {
                return Err(Full(self.max));
            }
        }
        let pin = self.map.entry(client).or_insert(Pin {
            backend,
            flows: 0,
            expires: None,
        });
        let live = pin.expires.is_none_or(|t| now < t);
        if pin.backend != backend || !live {
            *pin = Pin {
                backend,
                flows: 0,
                expires: None,
            };
        }
        pin.flows += 1;
        pin.expires = None;
        Ok(())
    }

    /// A flow from `client` to `backend` ended at `now`; the persistence timer starts
    /// when the client's last flow ends.
    pub fn flow_ended(&mut self, client: IpAddr, backend: BackendId, now: Instant) {
        if let Some(pin) = self.map.get_mut(&client) {
            if pin.backend == backend && pin.flows > 0 {
                pin.flows -= 1;
                if pin.flows == 0 {
                    pin.expires = Some(now + self.timeout);
                }
            }
        }
    }

    /// Forgets pins whose timeout passed.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        self.map.retain(|_, p| p.expires.is_none_or(|t| now < t));
        before - self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn flows_expire_after_idle_unless_touched_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t: FlowTable<u32, &str> = FlowTable::new(2, 10 * s);
        t.insert(1, "a", t0).unwrap();
        t.insert(2, "b", t0).unwrap();
        assert_eq!(t.insert(3, "c", t0), Err((Full(2), "c")));
        assert_eq!(t.insert(2, "b2", t0), Ok(Some("b")));
        assert!(t.touch(&1, t0 + 6 * s).is_some());
        assert!(t.expire(t0 + 9 * s).is_empty());
        assert_eq!(t.expire(t0 + 10 * s), vec![(2, "b2")]);
        // A touch with an older clock reading never moves the deadline back.
        t.touch(&1, t0);
        assert!(t.expire(t0 + 15 * s).is_empty());
        assert_eq!(t.remove_where(|v| *v == "a"), vec![(1, "a")]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_pin_lasts_while_flows_run_and_for_the_timeout_after_the_last() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut a = Affinity::new(10, 600 * s);
        let (c, b1, b2) = (ip("192.0.2.1"), BackendId(1), BackendId(2));
        a.flow_started(c, b1, t0).unwrap();
        a.flow_started(c, b1, t0).unwrap();
        a.flow_ended(c, b1, t0 + s);
        // One flow still runs: no timer, however long.
        assert_eq!(a.lookup(c, t0 + 100_000 * s), Some(b1));
        a.flow_ended(c, b1, t0 + 2 * s);
        assert_eq!(a.lookup(c, t0 + 601 * s), Some(b1));
        assert_eq!(a.lookup(c, t0 + 602 * s), None);
        // A new flow within the timeout keeps the pin and stops the timer.
        a.flow_started(c, b1, t0 + 300 * s).unwrap();
        assert_eq!(a.lookup(c, t0 + 10_000 * s), Some(b1));
        // Re-pinned to another back end (the first went down): old ends don't count.
        a.flow_started(c, b2, t0 + 400 * s).unwrap();
        a.flow_ended(c, b1, t0 + 401 * s);
        assert_eq!(a.lookup(c, t0 + 10_000 * s), Some(b2));
        a.flow_ended(c, b2, t0 + 500 * s);
        assert_eq!(a.expire(t0 + 1100 * s), 1);
        assert!(a.is_empty());
    }

    #[test]
    fn a_full_affinity_table_makes_room_only_from_expired_pins() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut a = Affinity::new(1, 10 * s);
        a.flow_started(ip("192.0.2.1"), BackendId(1), t0).unwrap();
        assert_eq!(
            a.flow_started(ip("192.0.2.2"), BackendId(1), t0),
            Err(Full(1))
        );
        a.flow_ended(ip("192.0.2.1"), BackendId(1), t0);
        assert_eq!(
            a.flow_started(ip("192.0.2.2"), BackendId(1), t0 + 5 * s),
            Err(Full(1))
        );
        a.flow_started(ip("192.0.2.2"), BackendId(1), t0 + 10 * s)
            .unwrap();
        assert_eq!(a.lookup(ip("192.0.2.2"), t0 + 10 * s), Some(BackendId(1)));
        assert_eq!(a.lookup(ip("192.0.2.1"), t0 + 10 * s), None);
    }
}
