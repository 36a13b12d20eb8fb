//! Order statistics for benchmark reports: nearest-rank percentiles and the
//! p50/p95/max summary the reports print.
//!
//! Nearest rank (the smallest value with at least p% of the sample at or below it) is
//! used rather than interpolation because it always names a value that was really
//! measured, and because it is what "95% of viewers started within X" means.
//!
//! What it does not: streaming estimates or histograms; samples here are one value per
//! viewer or call, a few thousand at most, so sorting them is cheap and exact.

use std::time::Duration;

/// The `pct` percentile (0..=100) of an ascending `sorted` slice, by nearest rank;
/// `None` for an empty slice. `pct` above 100 is treated as 100.
pub(crate) fn nearest_rank<T: Copy>(sorted: &[T], pct: u32) -> Option<T> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let pct = u128::from(pct.min(100));
    // rank = ceil(pct/100 * n), at least 1; u128 so pct * n cannot overflow.
    let rank = (pct * n as u128).div_ceil(100).max(1);
    let index = usize::try_from(rank - 1).unwrap_or(n - 1).min(n - 1);
    sorted.get(index).copied()
}

/// The p50/p95/max of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    /// How many values the figures come from.
    pub count: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub max: Duration,
}

impl Summary {
    /// Summarises `values` (sorted in place); `None` when empty.
    pub(crate) fn of(values: &mut [Duration]) -> Option<Summary> {
        values.sort_unstable();
        Some(Summary {
            count: values.len(),
            p50: nearest_rank(values, 50)?,
            p95: nearest_rank(values, 95)?,
            max: *values.last()?,
        })
    }
}

/// Milliseconds with microsecond precision, for reports.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_known_samples() {
        let ten: Vec<u32> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(5));
        assert_eq!(nearest_rank(&ten, 95), Some(10));
        assert_eq!(nearest_rank(&ten, 90), Some(9));
        assert_eq!(nearest_rank(&ten, 0), Some(1));
        assert_eq!(nearest_rank(&ten, 100), Some(10));
        assert_eq!(nearest_rank(&ten, 250), Some(10));
        let hundred: Vec<u32> = (1..=100).collect();
        assert_eq!(nearest_rank(&hundred, 95), Some(95));
        assert_eq!(nearest_rank(&hundred, 50), Some(50));
        assert_eq!(nearest_rank(&[7u32], 95), Some(7));
        assert_eq!(nearest_rank::<u32>(&[], 50), None);
    }

    /// The definition, checked by brute force: the smallest sample value v such that
    /// at least pct% of the sample is <= v.
    fn by_definition(sorted: &[u32], pct: u32) -> u32 {
        let n = sorted.len() as u64;
        *sorted
            .iter()
            .find(|&&v| {
                let at_or_below = sorted.iter().filter(|&&x| x <= v).count() as u64;
                at_or_below * 100 >= u64::from(pct) * n
            })
            .unwrap()
    }

    #[test]
    fn nearest_rank_matches_the_definition_on_pseudo_random_samples() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for n in 1..80usize {
            let mut v: Vec<u32> = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 50) as u32
                })
                .collect();
            v.sort_unstable();
            for pct in [1, 5, 25, 50, 75, 90, 95, 99, 100] {
                assert_eq!(
                    nearest_rank(&v, pct),
                    Some(by_definition(&v, pct)),
                    "n={n} pct={pct} sample={v:?}"
                );
            }
        }
    }

    #[test]
    fn summary_sorts_and_reports_max() {
        let ms = Duration::from_millis;
        let mut v = vec![ms(30), ms(10), ms(20), ms(1000)];
        assert_eq!(
            Summary::of(&mut v),
            Some(Summary {
                count: 4,
                p50: ms(20),
                p95: ms(1000),
                max: ms(1000)
            })
        );
        assert_eq!(Summary::of(&mut []), None);
        assert_eq!(millis(Duration::from_micros(12_345)), 12.345);
    }
}
