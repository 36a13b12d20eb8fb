//! Per-stream sequence accounting: received, lost, duplicate, reordered packets
//! (RFC 3550 Appendix A.1 and A.3).
//!
//! What it does: follows the A.1 rules (a forward jump below `MAX_DROPOUT` is a gap, a
//! step back within `MAX_MISORDER` is a late or duplicate packet, anything else is a
//! possible source restart confirmed by the next sequential packet) and keeps a
//! 128-packet bitmap so a late packet fills its gap exactly once and a repeat is a
//! duplicate. It also computes the A.3 "fraction lost" per reporting interval.
//!
//! What it does not: the A.1 probation of new sources (every first packet is
//! accepted), jitter (see [`crate::JitterEstimator`]), or anything with time.
//!
//! A late packet from before the first one is counted as received and reordered but
//! changes no loss figure.
//!
//! Every packet given to [`SeqTracker::record`] lands in exactly one of `received`,
//! `duplicates` or `discarded`. `lost` is the number of sequence numbers skipped and not
//! (yet) filled by a late packet; it never goes negative.

/// A.1: forward jumps of at least this many are treated as a possible restart.
pub const MAX_DROPOUT: u16 = 3000;
/// A.1: packets less than this far behind the highest are late (or duplicates).
pub const MAX_MISORDER: u16 = 100;

/// Cumulative counters of a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqCounts {
    /// Distinct packets accepted (in order, late, or after a restart).
    pub received: u64,
    /// Sequence numbers skipped and never filled in.
    pub lost: u64,
    /// Packets whose sequence number had already been received.
    pub duplicates: u64,
    /// Distinct packets that arrived after a higher sequence number (included in
    /// `received`).
    pub reordered: u64,
    /// Packets dropped as a suspected jump, pending confirmation (A.1 `bad_seq`).
    pub discarded: u64,
    /// Confirmed sequence restarts (the source jumped and kept going).
    pub restarts: u64,
}

/// What one packet was, as decided by [`SeqTracker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOutcome {
    /// The first packet of the stream.
    First,
    /// Newer than every packet so far; `gap` sequence numbers were skipped.
    InOrder {
        /// Sequence numbers skipped just before this one.
        gap: u16,
    },
    /// Older than the highest and not seen before.
    Reordered,
    /// Already received.
    Duplicate,
    /// A large jump, dropped until the next packet confirms it.
    Discarded,
    /// The next packet after a large jump: the tracker restarted from it.
    Restarted,
}

/// Loss figures for one RTCP report block (RFC 3550 §6.4.1, A.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossReport {
    /// Lost / expected since the previous report, as a fixed-point fraction of 256.
    pub fraction_lost: u8,
    /// Cumulative loss, saturated to the 24-bit field.
    pub cumulative_lost: i32,
    /// Extended highest sequence number: cycles in the upper 16 bits.
    pub extended_highest: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    highest: u16,
    /// Wraps of `highest`, A.1 `cycles` (not shifted).
    cycles: u64,
    /// Sequence numbers covered since the first packet (or restart), minus one.
    span: u64,
    /// Bit i set: `highest - i` was received.
    window: u128,
    bad_seq: Option<u16>,
}

impl State {
    fn start(seq: u16, cycles: u64) -> Self {
        Self {
            highest: seq,
            cycles,
            span: 0,
            window: 1,
            bad_seq: None,
        }
    }
}

/// Sequence accounting for one RTP stream; see the module docs for the rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqTracker {
    state: Option<State>,
    counts: SeqCounts,
    prior_expected: u64,
    prior_received: u64,
}

impl SeqTracker {
    /// A tracker that has seen nothing.
    pub const fn new() -> Self {
        Self {
            state: None,
            counts: SeqCounts {
                received: 0,
                lost: 0,
                duplicates: 0,
                reordered: 0,
                discarded: 0,
                restarts: 0,
            },
            prior_expected: 0,
            prior_received: 0,
        }
    }

    /// Counts one packet with sequence number `seq`.
    pub fn record(&mut self, seq: u16) -> SeqOutcome {
        let c = &mut self.counts;
        let Some(st) = &mut self.state else {
            self.state = Some(State::start(seq, 0));
            c.received += 1;
            return SeqOutcome::First;
        };
        let udelta = seq.wrapping_sub(st.highest);
        if udelta == 0 {
            c.duplicates += 1;
            SeqOutcome::Duplicate
        } else if udelta < MAX_DROPOUT {
            if seq < st.highest {
                st.cycles = st.cycles.saturating_add(1);
            }
            st.highest = seq;
            st.span = st.span.saturating_add(u64::from(udelta));
            // Shifted-in zero bits are the gap; bit 0 is this packet.
            st.window = st.window.checked_shl(u32::from(udelta)).unwrap_or(0) | 1;
            st.bad_seq = None;
            let gap = udelta - 1;
            c.lost += u64::from(gap);
            c.received += 1;
            SeqOutcome::InOrder { gap }
        } else if udelta <= u16::MAX - MAX_MISORDER + 1 {
            if st.bad_seq == Some(seq) {
                // Two sequential packets after a jump: the source restarted (A.1).
                *st = State::start(seq, st.cycles.saturating_add(1));
                c.received += 1;
                c.restarts += 1;
                SeqOutcome::Restarted
            } else {
                st.bad_seq = Some(seq.wrapping_add(1));
                c.discarded += 1;
                SeqOutcome::Discarded
            }
        } else {
            // Less than MAX_MISORDER behind the highest: inside the 128-bit window.
            let behind = st.highest.wrapping_sub(seq);
            let bit = 1u128 << behind;
            if st.window & bit != 0 {
                c.duplicates += 1;
                SeqOutcome::Duplicate
            } else {
                st.window |= bit;
                if u64::from(behind) <= st.span {
                    // It fills a gap; one from before the first packet never was one.
                    c.lost = c.lost.saturating_sub(1);
                }
                c.received += 1;
                c.reordered += 1;
                SeqOutcome::Reordered
            }
        }
    }

    /// Counters so far.
    pub fn counts(&self) -> SeqCounts {
        self.counts
    }

    /// Extended highest sequence number (A.1: cycles << 16 | max_seq), or `None` before
    /// the first packet. Restarts count as a new cycle so the value never goes back.
    pub fn extended_highest(&self) -> Option<u64> {
        self.state
            .map(|s| s.cycles.saturating_mul(65536) | u64::from(s.highest))
    }

    /// Loss figures for an RTCP report block, and starts the next interval (A.3).
    pub fn take_loss_report(&mut self) -> LossReport {
        let c = self.counts;
        let expected = c.received.saturating_add(c.lost);
        let expected_interval = expected.saturating_sub(self.prior_expected);
        let received_interval = c.received.saturating_sub(self.prior_received);
        self.prior_expected = expected;
        self.prior_received = c.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        // lost_interval <= expected_interval, so the quotient is at most 256; an
        // empty interval reports no loss.
        let fraction_lost = lost_interval
            .saturating_mul(256)
            .checked_div(expected_interval)
            .map_or(0, |f| u8::try_from(f).unwrap_or(u8::MAX));
        LossReport {
            fraction_lost,
            cumulative_lost: i32::try_from(c.lost.min(0x7f_ffff)).unwrap_or(0x7f_ffff),
            // The report field is 32 bits; it wraps like the RFC's.
            extended_highest: self.extended_highest().unwrap_or(0) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed(seqs: &[u16]) -> (SeqTracker, Vec<SeqOutcome>) {
        let mut t = SeqTracker::new();
        let out = seqs.iter().map(|&s| t.record(s)).collect();
        (t, out)
    }

    #[test]
    fn in_order_with_a_gap() {
        let (t, out) = feed(&[10, 11, 14, 15]);
        assert_eq!(
            out,
            vec![
                SeqOutcome::First,
                SeqOutcome::InOrder { gap: 0 },
                SeqOutcome::InOrder { gap: 2 },
                SeqOutcome::InOrder { gap: 0 }
            ]
        );
        assert_eq!(
            t.counts(),
            SeqCounts {
                received: 4,
                lost: 2,
                ..SeqCounts::default()
            }
        );
        assert_eq!(t.extended_highest(), Some(15));
    }

    #[test]
    fn late_packet_fills_its_gap_once_then_is_a_duplicate() {
        let (t, out) = feed(&[1, 2, 4, 3, 3, 4, 5]);
        assert_eq!(out[3], SeqOutcome::Reordered);
        assert_eq!(out[4], SeqOutcome::Duplicate);
        assert_eq!(out[5], SeqOutcome::Duplicate);
        assert_eq!(
            t.counts(),
            SeqCounts {
                received: 5,
                lost: 0,
                duplicates: 2,
                reordered: 1,
                ..SeqCounts::default()
            }
        );
    }

    #[test]
    fn wraps_at_65535() {
        let (t, out) = feed(&[65533, 65534, 65535, 0, 1, 65535, 3]);
        assert_eq!(out[3], SeqOutcome::InOrder { gap: 0 });
        assert_eq!(out[5], SeqOutcome::Duplicate);
        assert_eq!(out[6], SeqOutcome::InOrder { gap: 1 });
        assert_eq!(t.extended_highest(), Some(65536 + 3));
        assert_eq!(t.counts().received, 6);
        assert_eq!(t.counts().lost, 1);
        assert_eq!(t.counts().duplicates, 1);
    }

    #[test]
    fn large_jump_is_discarded_until_confirmed() {
        let (t, out) = feed(&[100, 101, 20_000, 102, 30_000, 30_001, 30_002]);
        assert_eq!(
            out,
            vec![
                SeqOutcome::First,
                SeqOutcome::InOrder { gap: 0 },
                SeqOutcome::Discarded,
                SeqOutcome::InOrder { gap: 0 },
                SeqOutcome::Discarded,
                SeqOutcome::Restarted,
                SeqOutcome::InOrder { gap: 0 },
            ]
        );
        assert_eq!(
            t.counts(),
            SeqCounts {
                received: 5,
                lost: 0,
                discarded: 2,
                restarts: 1,
                ..SeqCounts::default()
            }
        );
        assert_eq!(t.extended_highest(), Some(65536 + 30_002));
    }

    #[test]
    fn too_old_is_a_jump_not_a_late_packet() {
        // 100 behind: A.1 (`udelta <= RTP_SEQ_MOD - MAX_MISORDER`) calls it a jump.
        let (t, out) = feed(&[500, 400]);
        assert_eq!(out[1], SeqOutcome::Discarded);
        assert_eq!(t.counts().discarded, 1);
        let (t, out) = feed(&[500, 300, 401]);
        assert_eq!(out[2], SeqOutcome::Reordered);
        assert_eq!(t.counts().received, 2);
    }

    #[test]
    fn packet_from_before_the_first_is_reordered_without_touching_loss() {
        let (t, out) = feed(&[10, 11, 9, 9]);
        assert_eq!(out[2], SeqOutcome::Reordered);
        assert_eq!(out[3], SeqOutcome::Duplicate);
        assert_eq!(
            t.counts(),
            SeqCounts {
                received: 3,
                duplicates: 1,
                reordered: 1,
                ..SeqCounts::default()
            }
        );
    }

    #[test]
    fn gap_wider_than_the_window_is_still_counted() {
        let (t, out) = feed(&[0, 2000, 1999, 1950]);
        assert_eq!(out[1], SeqOutcome::InOrder { gap: 1999 });
        assert_eq!(out[2], SeqOutcome::Reordered);
        assert_eq!(out[3], SeqOutcome::Reordered);
        assert_eq!(t.counts().lost, 1997);
    }

    #[test]
    fn loss_report_fraction_per_interval() {
        let mut t = SeqTracker::new();
        // 8 expected, 6 received: 2/8 lost -> 64/256.
        for s in [0u16, 1, 2, 4, 5, 7] {
            t.record(s);
        }
        assert_eq!(
            t.take_loss_report(),
            LossReport {
                fraction_lost: 64,
                cumulative_lost: 2,
                extended_highest: 7
            }
        );
        // Next interval: no loss; the late 6 fills a gap.
        for s in [6u16, 8, 9] {
            t.record(s);
        }
        assert_eq!(
            t.take_loss_report(),
            LossReport {
                fraction_lost: 0,
                cumulative_lost: 1,
                extended_highest: 9
            }
        );
        // Nothing received at all: fraction stays 0, not a division by zero.
        assert_eq!(t.take_loss_report().fraction_lost, 0);
    }

    proptest! {
        #[test]
        fn counts_are_consistent_for_any_input(seqs in prop::collection::vec(any::<u16>(), 0..500)) {
            let mut t = SeqTracker::new();
            for &s in &seqs {
                t.record(s);
            }
            let c = t.counts();
            prop_assert_eq!(c.received + c.duplicates + c.discarded, seqs.len() as u64);
            prop_assert!(c.reordered <= c.received);
            let r = t.take_loss_report();
            prop_assert!(r.cumulative_lost >= 0);
        }

        #[test]
        fn dropping_and_duplicating_is_counted_exactly(
            start: u16,
            plan in prop::collection::vec((any::<bool>(), any::<bool>()), 1..400),
        ) {
            // Each step either drops the packet or sends it (optionally twice). The
            // last packet is always sent so every drop is a gap before a higher one.
            let mut t = SeqTracker::new();
            let (mut sent, mut dropped, mut dups) = (0u64, 0u64, 0u64);
            let last = plan.len() - 1;
            t.record(start);
            for (i, (drop, dup)) in plan.into_iter().enumerate() {
                let seq = start.wrapping_add(1 + i as u16);
                if drop && i != last {
                    dropped += 1;
                    continue;
                }
                t.record(seq);
                sent += 1;
                if dup {
                    t.record(seq);
                    dups += 1;
                }
            }
            let c = t.counts();
            prop_assert_eq!(c.received, sent + 1);
            prop_assert_eq!(c.lost, dropped);
            prop_assert_eq!(c.duplicates, dups);
            prop_assert_eq!(c.reordered, 0);
        }

        #[test]
        fn reordering_within_max_misorder_loses_nothing(start: u16, n in 2usize..300, rotations in prop::collection::vec(0usize..20, 15)) {
            // Rotate each block of 20: no packet moves more than 20 places.
            let mut order: Vec<u16> = (0..n as u16).collect();
            for (block, r) in order.chunks_mut(20).zip(rotations) {
                let len = block.len();
                block.rotate_left(r % len);
            }
            // Keep the first packet first so nothing predates the stream start.
            let pos0 = order.iter().position(|&k| k == 0).unwrap();
            order.remove(pos0);
            order.insert(0, 0);
            let mut t = SeqTracker::new();
            for k in &order {
                t.record(start.wrapping_add(*k));
            }
            let c = t.counts();
            prop_assert_eq!(c.received, n as u64);
            prop_assert_eq!(c.lost, 0);
            prop_assert_eq!(c.duplicates, 0);
            prop_assert_eq!(t.extended_highest().map(|e| e & 0xffff), Some(u64::from(start.wrapping_add(n as u16 - 1))));
        }
    }
}
