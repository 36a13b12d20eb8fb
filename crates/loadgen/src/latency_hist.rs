//! Latency percentiles to the tenth of a percent and a coarse histogram, for the
//! balancer's session-setup benchmark (issue 14), where "p99 added latency" is the
//! figure and the shape of the tail says where it comes from.
//!
//! Samples are microseconds, sorted ascending by the caller. Buckets double from
//! 0.25 ms, so a few lines cover 0.25 ms to seconds. What it does not: streaming
//! estimates; the benchmarks keep every sample (4 bytes each).

use std::fmt::Write as _;

/// Upper bounds of the buckets in microseconds; the last bucket is open.
const BOUNDS_US: [u32; 10] = [
    250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 64_000, 250_000, 1_000_000,
];

/// The value at `per_mille` (0..=1000) of an ascending `sorted` slice, by nearest
/// rank; `None` for an empty slice.
pub(crate) fn per_mille(sorted: &[u32], per_mille: u32) -> Option<u32> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (u128::from(per_mille.min(1000)) * n as u128)
        .div_ceil(1000)
        .max(1);
    let index = usize::try_from(rank - 1).unwrap_or(n - 1).min(n - 1);
    sorted.get(index).copied()
}

/// `p50 .. ms, p90 .., p99 .., p99.9 .., max ..` of `sorted` microseconds.
pub(crate) fn percentiles_ms(sorted: &[u32]) -> String {
    let ms = |pm| per_mille(sorted, pm).map_or(0.0, |us| f64::from(us) / 1000.0);
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        ms(500),
        ms(900),
        ms(990),
        ms(999),
        ms(1000)
    )
}

/// One line per non-empty bucket: `  <= 1 ms: 1234 (12.3%)`, indented by `indent`.
pub(crate) fn histogram_lines(sorted: &[u32], indent: &str) -> String {
    let mut out = String::new();
    let n = sorted.len().max(1) as f64;
    let mut lower = 0usize;
    for (i, &bound) in BOUNDS_US.iter().enumerate() {
        let upper = sorted.partition_point(|&v| v <= bound);
        let count = upper - lower;
        if count > 0 {
            let label = if i == 0 {
                format!("<= {} ms", f64::from(bound) / 1000.0)
            } else {
                format!(
                    "{}-{} ms",
                    f64::from(BOUNDS_US[i - 1]) / 1000.0,
                    f64::from(bound) / 1000.0
                )
            };
            let _ = writeln!(
                out,
                "{indent}{label:>14}: {count} ({:.2}%)",
                100.0 * count as f64 / n
            );
        }
        lower = upper;
    }
    let rest = sorted.len() - lower;
    if rest > 0 {
        let last = f64::from(BOUNDS_US[BOUNDS_US.len() - 1]) / 1000.0;
        let _ = writeln!(
            out,
            "{indent}{:>14}: {rest} ({:.2}%)",
            format!("> {last} ms"),
            100.0 * rest as f64 / n
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_mille_by_nearest_rank() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(per_mille(&v, 500), Some(500));
        assert_eq!(per_mille(&v, 990), Some(990));
        assert_eq!(per_mille(&v, 999), Some(999));
        assert_eq!(per_mille(&v, 1000), Some(1000));
        assert_eq!(per_mille(&v, 0), Some(1));
        assert_eq!(per_mille(&[], 500), None);
        assert_eq!(per_mille(&[7], 999), Some(7));
    }

    #[test]
    fn percentiles_and_buckets_of_a_known_sample() {
        let mut v = vec![100u32; 90];
        v.extend([600; 9]);
        v.push(2_000_000);
        v.sort_unstable();
        assert_eq!(
            percentiles_ms(&v),
            "p50 0.10 ms, p90 0.10 ms, p99 0.60 ms, p99.9 2000.00 ms, max 2000.00 ms"
        );
        let h = histogram_lines(&v, "  ");
        let lines: Vec<&str> = h.lines().collect();
        assert_eq!(lines.len(), 3, "{h}");
        assert!(lines[0].ends_with("<= 0.25 ms: 90 (90.00%)"), "{h}");
        assert!(lines[1].ends_with("0.5-1 ms: 9 (9.00%)"), "{h}");
        assert!(lines[2].ends_with("> 1000 ms: 1 (1.00%)"), "{h}");
        assert_eq!(histogram_lines(&[], ""), "");
    }
}
