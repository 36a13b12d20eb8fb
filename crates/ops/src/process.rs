//! The standard process metrics, read from `/proc/self` (proc(5)) at each scrape:
//! `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds` and `process_threads`, named and defined as in
//! Prometheus' client libraries so the usual dashboards and alerts apply unchanged.
//!
//! What it does not: cache anything between scrapes, or report on other processes. A
//! file that cannot be read (not Linux, a hardened `/proc`) leaves its metrics out of
//! the scrape rather than reporting made-up zeros.

use std::fmt;

use crate::metrics::{Collect, Scrape};

/// What `/proc/self/stat` says, in the units it says it (clock ticks, pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    utime_ticks: u64,
    stime_ticks: u64,
    threads: u64,
    start_ticks_after_boot: u64,
    virtual_bytes: u64,
    rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5).
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
        threads: field(20)?,
        start_ticks_after_boot: field(22)?,
        virtual_bytes: field(23)?,
        rss_pages: field(24)?,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of open files from `/proc/self/limits`; `None` for "unlimited".
fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[allow(unsafe_code)]
fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf reads a configuration value; it takes no pointers.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|&v| v > 0)
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reads this process's figures when scraped.
pub(crate) struct ProcessMetrics;

impl Collect for ProcessMetrics {
    fn collect(&self, s: &mut Scrape<'_>) -> fmt::Result {
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_stat(&t));
        let ticks = sysconf(libc::_SC_CLK_TCK);
        if let (Some(stat), Some(ticks)) = (stat, ticks) {
            // Tick counts stay far below 2^53: exact in f64.
            #[allow(clippy::cast_precision_loss)]
            let cpu = (stat.utime_ticks + stat.stime_ticks) as f64 / ticks as f64;
            s.counter_f64(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                cpu,
            )?;
            if let Some(page) = sysconf(libc::_SC_PAGESIZE) {
                s.gauge(
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                    as_i64(stat.rss_pages.saturating_mul(page)),
                )?;
            }
            s.gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                as_i64(stat.virtual_bytes),
            )?;
            s.gauge(
                "process_threads",
                "Number of OS threads in the process.",
                as_i64(stat.threads),
            )?;
            let boot = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| parse_boot_time(&t));
            if let Some(boot) = boot {
                s.gauge(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    as_i64(boot + stat.start_ticks_after_boot / ticks),
                )?;
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries while it is read.
            let open = dir.count().saturating_sub(1);
            s.gauge(
                "process_open_fds",
                "Number of open file descriptors.",
                i64::try_from(open).unwrap_or(i64::MAX),
            )?;
        }
        if let Some(max) = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| parse_max_fds(&t))
        {
            s.gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                as_i64(max),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::parse;
    use crate::metrics::Metrics;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a ") " inside, as a process may choose.
        let line = "4242 (media gate) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 7 0 123456 987654321 2048 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(
            stat,
            Stat {
                utime_ticks: 250,
                stime_ticks: 50,
                threads: 7,
                start_ticks_after_boot: 123_456,
                virtual_bytes: 987_654_321,
                rss_pages: 2048,
            }
        );
        assert_eq!(parse_stat("4242 (truncated"), None);
        assert_eq!(parse_stat("4242 (short) S 1 2"), None);
    }

    #[test]
    fn boot_time_and_file_limit_come_from_their_lines() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boot_time("cpu 1 2 3\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             62987                62987                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
    }

    #[test]
    fn a_registry_reports_this_process() {
        let file = std::fs::File::open("/proc/self/stat").expect("a descriptor to count");
        let (samples, types) = parse(&Metrics::new().encode());
        assert_eq!(types["process_cpu_seconds"], "counter");
        assert!(samples["process_cpu_seconds_total"] > 0.0);
        assert!(samples["process_resident_memory_bytes"] > 1_000_000.0);
        assert!(
            samples["process_virtual_memory_bytes"] >= samples["process_resident_memory_bytes"]
        );
        assert!(samples["process_threads"] >= 1.0);
        assert!(
            samples["process_open_fds"] >= 4.0,
            "stdio and the file above"
        );
        assert!(samples["process_max_fds"] >= samples["process_open_fds"]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = samples["process_start_time_seconds"];
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
        drop(file);
    }
}
