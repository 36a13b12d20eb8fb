//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4) with weights, and the
//! preference list a bounded-load pick walks.
//!
//! What it does: builds the lookup table from the configured back ends' addresses and
//! weights only, so every balancer given the same set builds the same table without
//! talking to the others. Each back end fills table slots in the order of its own
//! permutation (`offset + j × skip mod M`, both from its address); a back end of weight
//! w claims slots at w / max-weight the rate of the heaviest. Removing one of N back
//! ends moves about 1/N of the keys; the rest keep their slot owner.
//!
//! What it does not: health. Down back ends stay in the table (a flapping back end
//! would otherwise reshuffle the whole catalogue twice); the pick skips them to the
//! next back end of the key's preference list, which is the run of distinct owners of
//! the slots that follow the key's slot. Nor does it read a clock or keep sessions.

use std::net::SocketAddr;

use super::hash::{addr_key, hash64};
use crate::backend::BackendId;

/// Production table size: prime, ≥ 100 × a large back-end set (as the paper advises),
/// and the size Envoy and IPVS use, so disruption figures compare.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

const SEED_OFFSET: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
const SEED_SKIP: u64 = 0x6d61_676c_6576_736b; // "maglevsk"
const SEED_KEY: u64 = 0x6d61_676c_6576_6b79; // "maglevky"

/// One back end as the table sees it: what identifies it across balancers (its
/// address) and its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) id: BackendId,
    pub(crate) addr: SocketAddr,
    pub(crate) weight: u32,
}

/// A built lookup table.
#[derive(Debug, Clone)]
pub(crate) struct MaglevTable {
    /// The members it was built from, sorted by address (the build's input, compared
    /// to decide whether a rebuild is needed).
    members: Vec<Member>,
    /// Slot → index into `members`.
    slots: Vec<u32>,
}

impl MaglevTable {
    /// Builds the table of `size` slots (a prime; see [`is_prime`]) over the members
    /// with a positive weight. An empty member list gives an empty table.
    pub(crate) fn build(members: &[Member], size: u32) -> MaglevTable {
        debug_assert!(is_prime(size), "Maglev table size {size} is not prime");
        let mut members: Vec<Member> = members.iter().copied().filter(|m| m.weight > 0).collect();
        // The address orders the fill, not the id: two balancers may number the same
        // back ends differently, they still build the same table.
        members.sort_by_key(|m| (m.addr, m.id));
        let m = u64::from(size);
        if members.is_empty() {
            return MaglevTable {
                members,
                slots: Vec::new(),
            };
        }
        let max_weight = members.iter().map(|m| m.weight).max().unwrap_or(1);
        let perms: Vec<(u64, u64)> = members
            .iter()
            .map(|mem| {
                let (key, len) = addr_key(mem.addr);
                let offset = hash64(SEED_OFFSET, &key[..len]) % m;
                let skip = hash64(SEED_SKIP, &key[..len]) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; members.len()];
        // Credit accrues weight/max_weight per round; the heaviest claims every round,
        // so each round fills at least one slot and the loop ends after ≤ size rounds.
        let mut credit = vec![0f64; members.len()];
        let mut slots = vec![u32::MAX; size as usize];
        let mut filled = 0u64;
        'fill: loop {
            for i in 0..members.len() {
                credit[i] += f64::from(members[i].weight) / f64::from(max_weight);
                if credit[i] < 1.0 {
                    continue;
                }
                credit[i] -= 1.0;
                let (offset, skip) = perms[i];
                let mut c = (offset + next[i] * skip) % m;
                while slots[c as usize] != u32::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                slots[c as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        MaglevTable { members, slots }
    }

    /// True when building from `members` would give this same table (no rebuild).
    pub(crate) fn is_built_from(&self, members: &[Member], size: u32) -> bool {
        let mut wanted: Vec<Member> = members.iter().copied().filter(|m| m.weight > 0).collect();
        wanted.sort_by_key(|m| (m.addr, m.id));
        wanted == self.members && (self.slots.is_empty() || self.slots.len() == size as usize)
    }

    /// The owner of `key`'s slot.
    #[cfg(test)]
    pub(crate) fn lookup(&self, key: &[u8]) -> Option<BackendId> {
        self.preference(key).next()
    }

    /// The key's back ends in order of preference: the owner of its slot, then each new
    /// owner met walking the following slots, each member once.
    pub(crate) fn preference<'a>(&'a self, key: &[u8]) -> impl Iterator<Item = BackendId> + 'a {
        let size = self.slots.len();
        let start = if size == 0 {
            0
        } else {
            (hash64(SEED_KEY, key) % size as u64) as usize
        };
        let mut seen = vec![false; self.members.len()];
        let mut left = self.members.len();
        let mut k = 0usize;
        std::iter::from_fn(move || {
            while left > 0 && k < size {
                let i = self.slots[(start + k) % size] as usize;
                k += 1;
                if !seen[i] {
                    seen[i] = true;
                    left -= 1;
                    return Some(self.members[i].id);
                }
            }
            None
        })
    }

    /// Slots owned per back end (for tests and status).
    #[cfg(test)]
    pub(crate) fn slot_counts(&self) -> std::collections::HashMap<BackendId, usize> {
        let mut counts = std::collections::HashMap::new();
        for &i in &self.slots {
            *counts.entry(self.members[i as usize].id).or_insert(0) += 1;
        }
        counts
    }
}

/// Primality by trial division (table sizes are checked once, at configuration).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while u64::from(d) * u64::from(d) <= u64::from(n) {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(i: u32, weight: u32) -> Member {
        Member {
            id: BackendId(i),
            addr: SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 8554)),
            weight,
        }
    }

    const SMALL: u32 = 4099;

    #[test]
    fn primes() {
        assert!(is_prime(DEFAULT_TABLE_SIZE));
        assert!(is_prime(SMALL));
        assert!(!is_prime(65_536));
        assert!(!is_prime(1));
    }

    #[test]
    fn every_slot_filled_and_shares_follow_weights() {
        let members = [member(1, 1), member(2, 2), member(3, 1)];
        let t = MaglevTable::build(&members, SMALL);
        let c = t.slot_counts();
        assert_eq!(c.values().sum::<usize>(), SMALL as usize);
        let share = |i| c[&BackendId(i)] as f64 / f64::from(SMALL);
        assert!((share(2) - 0.5).abs() < 0.02, "{c:?}");
        assert!((share(1) - 0.25).abs() < 0.02, "{c:?}");
        assert!((share(3) - 0.25).abs() < 0.02, "{c:?}");
    }

    #[test]
    fn zero_weight_members_own_nothing() {
        let t = MaglevTable::build(&[member(1, 0), member(2, 3)], SMALL);
        assert_eq!(t.slot_counts().len(), 1);
        assert_eq!(t.lookup(b"rtsp://x/a"), Some(BackendId(2)));
        let empty = MaglevTable::build(&[member(1, 0)], SMALL);
        assert_eq!(empty.lookup(b"k"), None);
    }

    #[test]
    fn preference_lists_every_member_once() {
        let members: Vec<Member> = (0..7).map(|i| member(i, 1 + i % 3)).collect();
        let t = MaglevTable::build(&members, SMALL);
        let mut p: Vec<BackendId> = t.preference(b"rtsp://origin/vod/a.mp4").collect();
        assert_eq!(p[0], t.lookup(b"rtsp://origin/vod/a.mp4").unwrap());
        p.sort();
        assert_eq!(p, (0..7).map(BackendId).collect::<Vec<_>>());
    }

    #[test]
    fn production_size_removing_one_of_ten_moves_a_tenth() {
        let all: Vec<Member> = (0..10).map(|i| member(i, 1)).collect();
        let before = MaglevTable::build(&all, DEFAULT_TABLE_SIZE);
        let after = MaglevTable::build(&all[1..], DEFAULT_TABLE_SIZE);
        let keys = 20_000;
        let moved = (0..keys)
            .filter(|k| {
                let key = format!("rtsp://origin/vod/{k}.mp4");
                before.lookup(key.as_bytes()) != after.lookup(key.as_bytes())
            })
            .count();
        let fraction = moved as f64 / f64::from(keys);
        assert!((0.08..0.13).contains(&fraction), "{fraction}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Two balancers given the same set, in any order and with other ids, agree on
        /// every key's owner.
        #[test]
        fn same_set_same_table(n in 1u32..12, rotate in 0usize..12, keys in prop::collection::vec(any::<u64>(), 50)) {
            let a: Vec<Member> = (0..n).map(|i| member(i, 1 + i % 4)).collect();
            let mut b = a.clone();
            b.rotate_left(rotate % a.len());
            let ta = MaglevTable::build(&a, SMALL);
            let tb = MaglevTable::build(&b, SMALL);
            for k in keys {
                let key = k.to_le_bytes();
                let addr_a = ta.lookup(&key).map(|id| a.iter().find(|m| m.id == id).unwrap().addr);
                let addr_b = tb.lookup(&key).map(|id| b.iter().find(|m| m.id == id).unwrap().addr);
                prop_assert_eq!(addr_a, addr_b);
            }
        }

        /// Removing one of N back ends moves its own keys and few others: the keys that
        /// change owner are about 1/N of all (Maglev's bound is loose; we allow 2/N).
        #[test]
        fn removing_one_moves_about_one_nth(n in 3u32..16, gone in 0u32..16) {
            let gone = gone % n;
            let all: Vec<Member> = (0..n).map(|i| member(i, 1)).collect();
            let rest: Vec<Member> = all.iter().copied().filter(|m| m.id.0 != gone).collect();
            let before = MaglevTable::build(&all, SMALL);
            let after = MaglevTable::build(&rest, SMALL);
            let keys = 4000u32;
            let mut moved = 0;
            for k in 0..keys {
                let key = format!("rtsp://origin/vod/{k}.mp4");
                let b = before.lookup(key.as_bytes()).unwrap();
                let a = after.lookup(key.as_bytes()).unwrap();
                if b != BackendId(gone) {
                    // Keys of the survivors may move only a little.
                    if a != b { moved += 1; }
                } else {
                    prop_assert_ne!(a, BackendId(gone));
                }
            }
            let extra = f64::from(moved) / f64::from(keys);
            prop_assert!(extra < 1.0 / f64::from(n), "{} of survivors' keys moved (n={})", extra, n);
        }
    }
}
