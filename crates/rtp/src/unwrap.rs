//! Extends wrapping 16-bit sequence numbers and 32-bit timestamps to 64 bits
//! (RFC 3550 §5.1, Appendix A.1 "extended highest sequence number").
//!
//! What it does: each new value is placed at the extension nearest to the highest value
//! seen so far, so forward wraps (65535 → 0) count a new cycle and reordered packets
//! from just before a wrap land in the previous cycle. What it does not: judge whether
//! a jump is a source restart, count loss or drop duplicates; that is
//! [`crate::SeqTracker`]'s job. A value more than half the range (32768 sequence
//! numbers, 2^31 timestamp units) away from the highest is, unavoidably, read as
//! being on the other side.

/// Extends RTP sequence numbers to `i64`.
///
/// The first value maps to itself (0..=65535); a packet reordered from before the first
/// one may map to a negative value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqUnwrapper {
    highest: Option<i64>,
}

impl SeqUnwrapper {
    /// An unwrapper that has seen nothing.
    pub const fn new() -> Self {
        Self { highest: None }
    }

    /// Returns the extended value of `seq` and updates the highest value seen.
    pub fn extend(&mut self, seq: u16) -> i64 {
        let ext = match self.highest {
            None => i64::from(seq),
            Some(h) => {
                // Truncating `h` keeps its position within the 16-bit cycle.
                let delta = seq.wrapping_sub(h as u16) as i16;
                h.saturating_add(i64::from(delta))
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// The highest extended value returned so far.
    pub fn highest(&self) -> Option<i64> {
        self.highest
    }
}

/// Extends RTP timestamps to `i64`; the first value maps to itself (0..=2^32-1).
///
/// Video timestamps go backwards with B-frames; anything within 2^31 units of the
/// highest timestamp is placed correctly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimestampUnwrapper {
    highest: Option<i64>,
}

impl TimestampUnwrapper {
    /// An unwrapper that has seen nothing.
    pub const fn new() -> Self {
        Self { highest: None }
    }

    /// Returns the extended value of `ts` and updates the highest value seen.
    pub fn extend(&mut self, ts: u32) -> i64 {
        let ext = match self.highest {
            None => i64::from(ts),
            Some(h) => {
                let delta = ts.wrapping_sub(h as u32) as i32;
                h.saturating_add(i64::from(delta))
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// The highest extended value returned so far.
    pub fn highest(&self) -> Option<i64> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seq_wraps_forward_and_reorders_across_the_wrap() {
        let mut u = SeqUnwrapper::new();
        assert_eq!(u.extend(65534), 65534);
        assert_eq!(u.extend(65535), 65535);
        assert_eq!(u.extend(0), 65536);
        assert_eq!(u.extend(65535), 65535); // late packet from before the wrap
        assert_eq!(u.extend(2), 65538);
        assert_eq!(u.extend(1), 65537);
        assert_eq!(u.highest(), Some(65538));
    }

    #[test]
    fn seq_before_the_first_is_negative() {
        let mut u = SeqUnwrapper::new();
        assert_eq!(u.extend(0), 0);
        assert_eq!(u.extend(65535), -1);
        assert_eq!(u.highest(), Some(0));
    }

    #[test]
    fn seq_half_range_boundary() {
        let mut u = SeqUnwrapper::new();
        u.extend(0);
        assert_eq!(u.extend(32767), 32767); // +32767: forward
        let mut u = SeqUnwrapper::new();
        u.extend(0);
        assert_eq!(u.extend(32768), -32768); // exactly half: read as behind
    }

    #[test]
    fn timestamps_wrap_and_go_back() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.extend(u32::MAX - 3000), 4_294_964_295);
        assert_eq!(u.extend(3000), 4_294_970_296);
        assert_eq!(u.extend(u32::MAX), 4_294_967_295); // B-frame before the wrap
        assert_eq!(u.highest(), Some(4_294_970_296));
    }

    proptest! {
        #[test]
        fn monotone_steps_give_exact_extension(start: u16, steps in prop::collection::vec(1u16..=1000, 1..300)) {
            let mut u = SeqUnwrapper::new();
            let mut expected = i64::from(start);
            prop_assert_eq!(u.extend(start), expected);
            let mut seq = start;
            for step in steps {
                seq = seq.wrapping_add(step);
                expected += i64::from(step);
                prop_assert_eq!(u.extend(seq), expected);
            }
            prop_assert_eq!(u.highest(), Some(expected));
        }

        #[test]
        fn reordering_within_a_window_is_exact(start: u16, n in 2usize..400, swaps in prop::collection::vec((0usize..400, 0usize..50), 0..100)) {
            // A shuffle of `start..start+n`; n < 400 keeps every packet well inside half the range.
            let mut order: Vec<i64> = (0..n as i64).collect();
            for (i, d) in swaps {
                let i = i % n;
                let j = (i + d).min(n - 1);
                order.swap(i, j);
            }
            let mut u = SeqUnwrapper::new();
            let first = order[0];
            // The first packet maps to itself; every other one keeps its distance to it.
            let v0 = (i64::from(start) + first).rem_euclid(65536);
            for k in order {
                let seq = (i64::from(start) + k).rem_euclid(65536) as u16;
                prop_assert_eq!(u.extend(seq), v0 + k - first);
            }
            prop_assert_eq!(u.highest(), Some(v0 + n as i64 - 1 - first));
        }

        #[test]
        fn timestamp_monotone_steps(start: u32, steps in prop::collection::vec(0u32..=1_000_000, 1..100)) {
            let mut u = TimestampUnwrapper::new();
            let mut expected = i64::from(start);
            prop_assert_eq!(u.extend(start), expected);
            let mut ts = start;
            for step in steps {
                ts = ts.wrapping_add(step);
                expected += i64::from(step);
                prop_assert_eq!(u.extend(ts), expected);
            }
        }

        #[test]
        fn arbitrary_input_never_panics_and_highest_is_max(seqs in prop::collection::vec(any::<u16>(), 0..200)) {
            let mut u = SeqUnwrapper::new();
            let mut max = None;
            for s in seqs {
                let e = u.extend(s);
                prop_assert_eq!(e.rem_euclid(65536), i64::from(s));
                max = Some(max.map_or(e, |m: i64| m.max(e)));
            }
            prop_assert_eq!(u.highest(), max);
        }
    }
}
