//! Reply cache keyed by `ng` cookie, so a retransmitted request gets the reply it
//! already got and never runs twice (a second `offer` would allocate ports again).
//!
//! What it does: keeps replies in two generations, like rtpengine's
//! `daemon/cookie_cache.c`; the current generation becomes the old one every
//! [`CookieCache::GENERATION`] (30 s), so an entry lives 30 to 60 s, longer than
//! Kamailio's 5 tries at 1 s. Each generation holds at most `max_entries`; when the
//! current one is full it rotates early, so memory stays bounded under a flood of
//! unique cookies. Time is a parameter.
//!
//! What it does not: wait for a request still in progress (the control loop runs one
//! command at a time, so a retransmission is only read after the original's reply is
//! cached).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Two-generation cookie-to-reply cache; see the module docs.
#[derive(Debug)]
pub struct CookieCache {
    current: HashMap<Vec<u8>, Vec<u8>>,
    old: HashMap<Vec<u8>, Vec<u8>>,
    rotated_at: Instant,
    max_entries: usize,
}

impl CookieCache {
    /// How long one generation lasts.
    pub const GENERATION: Duration = Duration::from_secs(30);

    /// An empty cache whose generations hold at most `max_entries` each.
    pub fn new(now: Instant, max_entries: usize) -> Self {
        Self {
            current: HashMap::new(),
            old: HashMap::new(),
            rotated_at: now,
            max_entries: max_entries.max(1),
        }
    }

    fn rotate_if_due(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.rotated_at);
        if age >= Self::GENERATION.saturating_mul(2) {
            self.old.clear();
            self.current.clear();
            self.rotated_at = now;
        } else if age >= Self::GENERATION {
            self.rotate(now);
        }
    }

    fn rotate(&mut self, now: Instant) {
        self.old = std::mem::take(&mut self.current);
        self.rotated_at = now;
    }

    /// The cached reply for `cookie`, if any.
    pub fn get(&mut self, cookie: &[u8], now: Instant) -> Option<&[u8]> {
        self.rotate_if_due(now);
        self.current
            .get(cookie)
            .or_else(|| self.old.get(cookie))
            .map(Vec::as_slice)
    }

    /// Remembers the reply sent for `cookie`.
    pub fn insert(&mut self, cookie: &[u8], reply: Vec<u8>, now: Instant) {
        self.rotate_if_due(now);
        if self.current.len() >= self.max_entries {
            self.rotate(now);
        }
        self.current.insert(cookie.to_vec(), reply);
    }

    /// Entries held, both generations.
    pub fn len(&self) -> usize {
        self.current.len() + self.old.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_between_one_and_two_generations() {
        let t0 = Instant::now();
        let mut c = CookieCache::new(t0, 100);
        c.insert(b"a", b"ra".to_vec(), t0);
        assert_eq!(c.get(b"a", t0 + Duration::from_secs(29)), Some(&b"ra"[..]));
        // Rotated at 30 s: still found in the old generation.
        assert_eq!(c.get(b"a", t0 + Duration::from_secs(31)), Some(&b"ra"[..]));
        c.insert(b"b", b"rb".to_vec(), t0 + Duration::from_secs(40));
        // Second rotation at 61 s drops "a" but keeps "b".
        assert_eq!(c.get(b"a", t0 + Duration::from_secs(61)), None);
        assert_eq!(c.get(b"b", t0 + Duration::from_secs(61)), Some(&b"rb"[..]));
        // A long silence clears everything.
        assert_eq!(c.get(b"b", t0 + Duration::from_secs(200)), None);
        assert!(c.is_empty());
    }

    #[test]
    fn a_flood_of_cookies_stays_bounded() {
        let t0 = Instant::now();
        let mut c = CookieCache::new(t0, 10);
        for i in 0..1000u32 {
            c.insert(&i.to_be_bytes(), vec![0; 10], t0);
            assert!(c.len() <= 20);
        }
        assert_eq!(c.get(&999u32.to_be_bytes(), t0), Some(&[0u8; 10][..]));
        assert_eq!(c.get(&0u32.to_be_bytes(), t0), None);
    }
}
