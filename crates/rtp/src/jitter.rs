//! Interarrival jitter estimate (RFC 3550 §6.4.1, Appendix A.8).
//!
//! What it does: the A.8 integer estimator, `J += (|D| - J) / 16`, kept scaled by 16
//! for precision. What it does not: read a clock. The caller passes each packet's
//! arrival time already converted to the stream's RTP clock units (e.g. wall-clock
//! microseconds × 90000 / 1e6, truncated to `u32`); only differences matter, so the
//! origin and the 32-bit wrap are irrelevant.

/// Running jitter for one stream, in RTP timestamp units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterEstimator {
    prev_transit: Option<u32>,
    /// Jitter × 16 (A.8 keeps it scaled to avoid rounding loss).
    scaled: u64,
}

impl JitterEstimator {
    /// An estimator that has seen no packet (jitter 0).
    pub const fn new() -> Self {
        Self {
            prev_transit: None,
            scaled: 0,
        }
    }

    /// Accounts for one packet with RTP timestamp `rtp_timestamp` that arrived at
    /// `arrival` (in the same clock units).
    pub fn update(&mut self, rtp_timestamp: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(rtp_timestamp);
        if let Some(prev) = self.prev_transit {
            // The difference of two wrapping values, read as signed.
            let d = u64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            self.scaled = self
                .scaled
                .saturating_add(d)
                .saturating_sub(self.scaled.saturating_add(8) >> 4);
        }
        self.prev_transit = Some(transit);
    }

    /// Current estimate, as carried in a report block's jitter field.
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.scaled >> 4).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constant_transit_has_no_jitter() {
        let mut j = JitterEstimator::new();
        for i in 0..100u32 {
            j.update(i * 3000, 77_000 + i * 3000);
        }
        assert_eq!(j.jitter(), 0);
    }

    #[test]
    fn follows_the_a8_integer_recurrence_exactly() {
        let mut j = JitterEstimator::new();
        j.update(0, 1000);
        assert_eq!(j.jitter(), 0);
        // Transit 1000 -> 1160: D = 160; scaled = 160 - 0 = 160 -> J = 10.
        j.update(160, 1320);
        assert_eq!(j.scaled, 160);
        assert_eq!(j.jitter(), 10);
        // D = 160 again: scaled = 160 + 160 - ((160 + 8) >> 4) = 310 -> J = 19.
        j.update(320, 1640);
        assert_eq!(j.scaled, 310);
        assert_eq!(j.jitter(), 19);
        // Back to transit 1000: D = 320 -> 310 + 320 - 19 = 611 -> J = 38.
        j.update(480, 1480);
        assert_eq!(j.scaled, 611);
        assert_eq!(j.jitter(), 38);
    }

    #[test]
    fn wraps_of_both_clocks_are_harmless() {
        let mut j = JitterEstimator::new();
        j.update(u32::MAX - 10, 5);
        j.update(9, 25); // both wrapped; transit unchanged
        assert_eq!(j.jitter(), 0);
    }

    #[test]
    fn converges_towards_the_mean_deviation() {
        // Alternating transit 0 / 100: |D| = 100 each time; J tends to 100.
        let mut j = JitterEstimator::new();
        for i in 0..400u32 {
            j.update(i * 160, i * 160 + (i % 2) * 100);
        }
        assert!((98..=100).contains(&j.jitter()), "{}", j.jitter());
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_bounded(pkts in prop::collection::vec((any::<u32>(), any::<u32>()), 0..300)) {
            let mut j = JitterEstimator::new();
            for (ts, arrival) in pkts {
                j.update(ts, arrival);
                // |D| <= 2^31, so J (an average of |D|) can never exceed it.
                prop_assert!(j.jitter() <= 1 << 31);
            }
        }
    }
}
