//! RTP/RTCP port pairs from a configured range: handed out unpredictably, taken back
//! into quarantine, reused only after it (RFC 3550 §11: RTP on an even port, RTCP on the
//! next). The one pool of the edge's server and upstream sockets and the relay's media
//! sockets.
//!
//! What it does: [`PortPool`] holds the free pairs of one local address. [`PortPool::take`]
//! picks one uniformly at random from the free list, so an attacker cannot guess the
//! next session's ports from the last one's (RTP-bleed sprayers rely on predictable
//! allocation). [`PortPool::release`] puts a pair in quarantine; it goes back to the
//! free list only when [`PortPool::quarantine`] has passed, so late packets for an old
//! call or viewer never reach a new one. When nothing is free, `take` returns `None`
//! (the relay answers `Ran out of ports` so the SIP proxy fails over; the edge refuses
//! the SETUP). [`PortPool::set_range`] moves the pool to another range (a reload): pairs
//! in use keep running, later takes come from the new range only, and a pair outside
//! it is forgotten when it is released.
//!
//! What it does not: bind sockets, read a clock or draw its own randomness. The caller
//! binds the pair it was given; when the kernel refuses (another program holds the port)
//! it calls [`PortPool::set_aside`], which quarantines the pair, and takes another. Time
//! is a parameter, and the generator is the caller's (seeded from the OS in service, from
//! a constant in tests, so tests are deterministic).

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use rand::{Rng, RngExt as _};

/// The free, quarantined and in-use RTP ports (even) of one address.
#[derive(Debug)]
pub struct PortPool {
    /// The even first and the last port of the range.
    range: (u16, u16),
    free: Vec<u16>,
    quarantined: VecDeque<(u16, Instant)>,
    quarantine: Duration,
    in_use: HashSet<u16>,
}

/// Whether `port` is the RTP port of a pair in `low..=high`.
fn in_range((low, high): (u16, u16), port: u16) -> bool {
    let start = low.saturating_add(low % 2);
    port >= start && port % 2 == 0 && u32::from(port) < u32::from(high)
}

/// The RTP ports of the pairs in `low..=high`.
fn pairs_in(low: u16, high: u16) -> impl Iterator<Item = u16> {
    let start = low.saturating_add(low % 2);
    (u32::from(start)..u32::from(high))
        .step_by(2)
        .filter_map(|p| u16::try_from(p).ok())
}

impl PortPool {
    /// A pool of the pairs `(low, low+1) ... ` up to `high`; `low` is rounded up to even
    /// and a last even port without its odd partner is left out.
    pub fn new(low: u16, high: u16, quarantine: Duration) -> Self {
        Self {
            range: (low, high),
            free: pairs_in(low, high).collect(),
            quarantined: VecDeque::new(),
            quarantine,
            in_use: HashSet::new(),
        }
    }

    /// Takes the pairs of `low..=high` from now on. Pairs in use stay in use wherever
    /// they are; those outside the new range are forgotten when released. Quarantined
    /// pairs inside it keep their quarantine; the rest of the new range is free.
    pub fn set_range(&mut self, low: u16, high: u16) {
        self.range = (low, high);
        let range = self.range;
        self.quarantined.retain(|&(p, _)| in_range(range, p));
        let waiting: HashSet<u16> = self.quarantined.iter().map(|&(p, _)| p).collect();
        self.free = pairs_in(low, high)
            .filter(|p| !self.in_use.contains(p) && !waiting.contains(p))
            .collect();
    }

    /// Whether `port` is the RTP port of a pair of the current range.
    fn contains(&self, port: u16) -> bool {
        in_range(self.range, port)
    }

    /// How long a released pair waits before reuse.
    pub fn quarantine(&self) -> Duration {
        self.quarantine
    }

    fn thaw(&mut self, now: Instant) {
        while let Some(&(port, since)) = self.quarantined.front() {
            if now.saturating_duration_since(since) < self.quarantine {
                break;
            }
            self.quarantined.pop_front();
            self.free.push(port);
        }
    }

    /// A random free pair's RTP port (RTCP is the next one), or `None` when all are in
    /// use or quarantined.
    pub fn take<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> Option<u16> {
        self.thaw(now);
        if self.free.is_empty() {
            return None;
        }
        let i = rng.random_range(0..self.free.len());
        let port = self.free.swap_remove(i);
        self.in_use.insert(port);
        Some(port)
    }

    /// Takes the pair at `port` if it is free (or its quarantine is over): a standby
    /// balancer taking over binds the very ports its peer handed out. False when the
    /// port is outside the range, odd, in use or still resting.
    pub fn take_port(&mut self, port: u16, now: Instant) -> bool {
        self.thaw(now);
        let Some(i) = self.free.iter().position(|&p| p == port) else {
            return false;
        };
        self.free.swap_remove(i);
        self.in_use.insert(port);
        true
    }

    /// Gives back a pair taken with [`take_port`](Self::take_port) that could not be
    /// bound, free at once: nothing was sent from it, so nothing late can arrive.
    pub fn untake(&mut self, port: u16) {
        if self.in_use.remove(&port) && self.contains(port) {
            self.free.push(port);
        }
    }

    /// Gives back a pair taken with [`take`](Self::take); it is reusable after the
    /// quarantine.
    pub fn release(&mut self, port: u16, now: Instant) {
        self.in_use.remove(&port);
        // A pair of a range given up by `set_range` is never handed out again.
        if self.contains(port) {
            self.quarantined.push_back((port, now));
        }
    }

    /// Gives back a pair that could not be bound; it is retried after the quarantine,
    /// by which time the other program may have let go.
    pub fn set_aside(&mut self, port: u16, now: Instant) {
        self.release(port, now);
    }

    /// Pairs free now (not counting quarantined ones that have thawed since the last
    /// call).
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Pairs in use.
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// Pairs waiting in quarantine.
    pub fn quarantined_count(&self) -> usize {
        self.quarantined.len()
    }
}

#[cfg(test)]
mod tests {
    use super::PortPool;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng as _;
    use std::collections::HashSet;
    use std::time::{Duration, Instant};

    const Q: Duration = Duration::from_secs(10);

    #[test]
    fn pairs_cover_the_range_exactly() {
        let mut pool = PortPool::new(30000, 30009, Q);
        let t = Instant::now();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut got: Vec<u16> = std::iter::from_fn(|| pool.take(t, &mut rng)).collect();
        got.sort_unstable();
        assert_eq!(got, vec![30000, 30002, 30004, 30006, 30008]);
        assert_eq!(pool.in_use(), 5);
        let mut odd_high = PortPool::new(30000, 30004, Q);
        let mut got: Vec<u16> = std::iter::from_fn(|| odd_high.take(t, &mut rng)).collect();
        got.sort_unstable();
        assert_eq!(got, vec![30000, 30002], "30004 has no RTCP partner");
        assert_eq!(PortPool::new(65534, 65535, Q).free_count(), 1);
    }

    #[test]
    fn a_named_port_is_taken_only_when_free() {
        let t0 = Instant::now();
        let mut pool = PortPool::new(40000, 40009, Q);
        assert!(pool.take_port(40004, t0));
        assert!(!pool.take_port(40004, t0), "already in use");
        assert!(!pool.take_port(40005, t0), "odd port");
        assert!(!pool.take_port(40010, t0), "outside the range");
        assert_eq!(pool.in_use(), 1);
        pool.untake(40004);
        assert!(pool.take_port(40004, t0), "an untaken port is free at once");
        pool.release(40004, t0);
        assert!(!pool.take_port(40004, t0 + Q - Duration::from_millis(1)));
        assert!(pool.take_port(40004, t0 + Q));
        let mut rng = SmallRng::seed_from_u64(3);
        let rest: HashSet<u16> = std::iter::from_fn(|| pool.take(t0 + Q, &mut rng)).collect();
        assert_eq!(rest.len(), 4);
        assert!(!rest.contains(&40004));
    }

    #[test]
    fn exhaustion_and_quarantine() {
        let t0 = Instant::now();
        let mut rng = SmallRng::seed_from_u64(7);
        let mut pool = PortPool::new(40000, 40003, Q);
        let a = pool.take(t0, &mut rng).unwrap();
        let b = pool.take(t0, &mut rng).unwrap();
        assert_ne!(a, b);
        assert_eq!(pool.take(t0, &mut rng), None);
        pool.release(a, t0);
        assert_eq!(pool.take(t0 + Q - Duration::from_millis(1), &mut rng), None);
        assert_eq!(pool.quarantined_count(), 1);
        assert_eq!(pool.take(t0 + Q, &mut rng), Some(a));
        assert_eq!(pool.in_use(), 2);
    }

    #[test]
    fn choice_is_spread_over_the_range() {
        // Ten thousand takes from a fresh 1000-pair pool each time: every pair must
        // come up first at least once in a while, and no pair much more than others.
        let t = Instant::now();
        let mut rng = SmallRng::seed_from_u64(0xdead_beef);
        let mut first = std::collections::HashMap::new();
        for _ in 0..10_000 {
            let mut pool = PortPool::new(20000, 21999, Q);
            *first.entry(pool.take(t, &mut rng).unwrap()).or_insert(0u32) += 1;
        }
        assert!(
            first.len() > 990,
            "only {} distinct first ports",
            first.len()
        );
        assert!(first.values().all(|n| *n < 40));
    }

    #[test]
    fn consecutive_calls_do_not_get_neighbouring_ports() {
        let t = Instant::now();
        let mut rng = SmallRng::seed_from_u64(42);
        let mut pool = PortPool::new(20000, 29999, Q);
        let ports: Vec<u16> = (0..100).map(|_| pool.take(t, &mut rng).unwrap()).collect();
        let neighbours = ports
            .windows(2)
            .filter(|w| w[0].abs_diff(w[1]) == 2)
            .count();
        assert!(neighbours <= 2, "{neighbours} sequential allocations");
    }

    #[test]
    fn a_new_range_serves_later_takes_and_running_pairs_go_on() {
        let t0 = Instant::now();
        let mut rng = SmallRng::seed_from_u64(3);
        let mut pool = PortPool::new(30000, 30003, Q);
        let old = pool.take(t0, &mut rng).unwrap();
        pool.set_range(31000, 31003);
        assert_eq!(pool.in_use(), 1, "the running pair is still in use");
        let mut new: Vec<u16> = std::iter::from_fn(|| pool.take(t0, &mut rng)).collect();
        new.sort_unstable();
        assert_eq!(new, vec![31000, 31002]);
        // The old pair leaves for good: no quarantine, never handed out again.
        pool.release(old, t0);
        assert_eq!(pool.quarantined_count(), 0);
        assert_eq!(pool.in_use(), 2);
        pool.release(31000, t0);
        assert_eq!(pool.take(t0 + Q, &mut rng), Some(31000));
        assert_eq!(pool.take(t0 + Q, &mut rng), None);
    }

    #[test]
    fn an_overlapping_range_keeps_pairs_in_use_and_in_quarantine_out_of_the_free_list() {
        let t0 = Instant::now();
        let mut rng = SmallRng::seed_from_u64(5);
        let mut pool = PortPool::new(30000, 30007, Q);
        let mut taken: Vec<u16> = std::iter::from_fn(|| pool.take(t0, &mut rng)).collect();
        taken.sort_unstable();
        assert_eq!(taken, vec![30000, 30002, 30004, 30006]);
        pool.release(30002, t0);
        pool.release(30006, t0);
        // 30000 in use and 30002 in quarantine stay out; 30006 falls outside.
        pool.set_range(30000, 30005);
        assert_eq!(pool.quarantined_count(), 1);
        assert_eq!(pool.free_count(), 0);
        assert_eq!(pool.take(t0, &mut rng), None);
        assert_eq!(pool.take(t0 + Q, &mut rng), Some(30002));
        pool.release(30004, t0 + Q);
        pool.release(30000, t0 + Q);
        let mut later: Vec<u16> = std::iter::from_fn(|| pool.take(t0 + Q + Q, &mut rng)).collect();
        later.sort_unstable();
        assert_eq!(later, vec![30000, 30004]);
    }

    proptest! {
        #[test]
        fn never_hands_out_a_port_twice(seed in any::<u64>(), ops in prop::collection::vec(any::<bool>(), 0..200)) {
            let t0 = Instant::now();
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut pool = PortPool::new(50000, 50039, Q);
            let mut held: Vec<u16> = Vec::new();
            let mut seen = HashSet::new();
            for (i, take) in ops.into_iter().enumerate() {
                let now = t0 + Duration::from_millis(i as u64);
                if take || held.is_empty() {
                    if let Some(p) = pool.take(now, &mut rng) {
                        prop_assert!(p % 2 == 0 && (50000..50039).contains(&p));
                        prop_assert!(!held.contains(&p));
                        held.push(p);
                        seen.insert(p);
                    } else {
                        prop_assert_eq!(held.len() + pool.quarantined_count(), 20);
                    }
                } else {
                    let p = held.swap_remove(rng.random_range(0..held.len()));
                    pool.release(p, now);
                }
                prop_assert_eq!(pool.in_use(), held.len());
            }
        }
    }
}
