//! What a benchmark reads from Linux `/proc` about a process under load: its CPU time
//! (`/proc/PID/stat`, proc(5)), its peak and current resident memory
//! (`/proc/PID/status` `VmHWM`/`VmRSS`) and the drop counters of UDP sockets
//! (`/proc/PID/net/udp`, the `drops` column); and about the whole machine, its CPUs'
//! busy and stolen time (`/proc/stat`).
//!
//! What it does not: sample on a timer or decide what a figure means; callers read at
//! the start and end of a window and subtract. Parsers take the file's text, so they
//! are tested on literal contents, and never panic on odd text (a malformed file is an
//! error naming the field).

use std::collections::HashSet;
use std::time::Duration;

/// Why a `/proc` file could not be used.
#[derive(Debug)]
pub(crate) enum ProcError {
    /// Reading failed (the process exited, or the pid is wrong).
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The text is not what proc(5) describes.
    Format { path: String, what: &'static str },
}

impl std::fmt::Display for ProcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcError::Read { path, source } => {
                write!(
                    f,
                    "cannot read {path}: {source} (is the process still running?)"
                )
            }
            ProcError::Format { path, what } => write!(f, "unexpected format in {path}: {what}"),
        }
    }
}

impl std::error::Error for ProcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProcError::Read { source, .. } => Some(source),
            ProcError::Format { .. } => None,
        }
    }
}

/// CPU time of a process in clock ticks, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CpuTicks {
    /// Field 14, `utime`.
    pub user: u64,
    /// Field 15, `stime`.
    pub system: u64,
}

impl CpuTicks {
    /// User plus system ticks.
    pub(crate) fn total(&self) -> u64 {
        self.user.saturating_add(self.system)
    }

    /// CPU time used between `earlier` and `self`, with `ticks_per_second` from
    /// `sysconf(_SC_CLK_TCK)`. A counter that went backwards (another process reused
    /// the pid) gives zero.
    pub(crate) fn since(&self, earlier: &CpuTicks, ticks_per_second: u64) -> Duration {
        let ticks = self.total().saturating_sub(earlier.total());
        ticks_to_duration(ticks, ticks_per_second)
    }
}

/// `ticks` clock ticks as a duration; zero when the tick rate is zero.
pub(crate) fn ticks_to_duration(ticks: u64, ticks_per_second: u64) -> Duration {
    if ticks_per_second == 0 {
        return Duration::ZERO;
    }
    let secs = ticks / ticks_per_second;
    let rem = ticks % ticks_per_second;
    // rem < ticks_per_second, so rem * 1e9 / tps < 1e9 fits a u32 nanosecond count.
    let nanos = u128::from(rem) * 1_000_000_000 / u128::from(ticks_per_second);
    Duration::new(secs, u32::try_from(nanos).unwrap_or(0))
}

/// Parses `utime` and `stime` out of a `/proc/PID/stat` line. The command name (field
/// 2) is in parentheses and may itself contain spaces and `)`, so fields are counted
/// from the *last* `)`.
pub(crate) fn parse_stat(text: &str) -> Result<CpuTicks, &'static str> {
    let close = text.rfind(')').ok_or("no `)` closing the command name")?;
    let rest = text
        .get(close + 1..)
        .ok_or("nothing after the command name")?;
    // Fields after the name start at field 3 (state); utime is 14, stime 15.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let user = fields
        .next()
        .ok_or("line ends before utime (field 14)")?
        .parse()
        .map_err(|_| "utime (field 14) is not a number")?;
    let system = fields
        .next()
        .ok_or("line ends before stime (field 15)")?
        .parse()
        .map_err(|_| "stime (field 15) is not a number")?;
    Ok(CpuTicks { user, system })
}

/// The whole machine's CPU time from the `cpu` line of `/proc/stat`, in clock ticks:
/// how much of it the CPUs spent working (`busy`), how much the hypervisor gave to
/// other guests (`steal`), against all of it.
///
/// The columns are not all measured alike. Where the kernel has no exact CPU
/// accounting (`CONFIG_TICK_CPU_ACCOUNTING` without `CONFIG_IRQ_TIME_ACCOUNTING`, as on
/// this project's benchmark VM) `user`, `system`, `irq` and `softirq` are *sampled*:
/// each timer tick charges a whole tick to whatever the CPU is doing at that moment.
/// `idle` and `iowait` are *measured* (the tickless idle code clocks every idle period),
/// and `steal` comes from the hypervisor's clock. Work that comes in short bursts in
/// step with the tick (a paced load generator's packets, processed in softirq) is then
/// over- or under-counted by the sampled columns depending on the phase between the
/// two, which moves from run to run. [`HostCpu::busy_wall_since`] avoids the sampled
/// columns: wall time times the CPUs, minus the measured idle and steal time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct HostCpu {
    /// Every column of the line (user, nice, system, idle, iowait, irq, softirq,
    /// steal); `guest` and `guest_nice` are left out because `user` already holds them.
    pub total: u64,
    /// Work done by this machine's CPUs, all of them, in every context: `user + nice +
    /// system + irq + softirq` (tick-sampled, see above). Softirq matters most: a kernel
    /// fast path (eBPF, the loopback and veth delivery of a send) runs there, charged to
    /// no process. `idle` and `iowait` are not work. `steal` is left out too: it is time
    /// these CPUs did *not* run (another guest did), so it says nothing about what a
    /// relay costs, only how noisy the host was ([`HostCpu::steal_percent_since`]).
    pub busy: u64,
    /// Column 7, `softirq`, alone: the part of `busy` where the kernel's packet work
    /// runs. Compiler jobs and other user-space load of a shared host do not land
    /// here, so it stays readable when `busy` is swamped.
    pub softirq: u64,
    /// `idle + iowait`: time the CPUs had nothing to run.
    pub idle: u64,
    /// Column 8, `steal`: time this machine's CPUs were runnable but not running.
    pub steal: u64,
    /// How many `cpuN` lines follow the aggregate one: the CPUs the figures sum over.
    pub cpus: u32,
}

impl HostCpu {
    /// Percentage of the CPU time between `earlier` and `self` that was stolen; zero
    /// when no time passed.
    pub(crate) fn steal_percent_since(&self, earlier: &HostCpu) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        let steal = self.steal.saturating_sub(earlier.steal);
        if total == 0 {
            return 0.0;
        }
        steal as f64 * 100.0 / total as f64
    }

    /// Busy CPU time of the whole machine between `earlier` and `self`, summed over
    /// all CPUs (two fully busy CPUs for one second give two seconds).
    pub(crate) fn busy_since(&self, earlier: &HostCpu, ticks_per_second: u64) -> Duration {
        ticks_to_duration(self.busy.saturating_sub(earlier.busy), ticks_per_second)
    }

    /// Busy CPU time of the whole machine between `earlier` and `self`, from measured
    /// time only: `wall` (the time between the two reads) times the CPUs, minus the idle,
    /// iowait and steal time that passed. Unlike [`HostCpu::busy_since`] it does not
    /// depend on where the timer ticks fell (see the type's doc).
    pub(crate) fn busy_wall_since(
        &self,
        earlier: &HostCpu,
        wall: Duration,
        ticks_per_second: u64,
    ) -> Duration {
        let not_working = ticks_to_duration(
            self.idle
                .saturating_sub(earlier.idle)
                .saturating_add(self.steal.saturating_sub(earlier.steal)),
            ticks_per_second,
        );
        wall.saturating_mul(self.cpus.max(1))
            .saturating_sub(not_working)
    }

    /// Softirq time of the whole machine between `earlier` and `self`, all CPUs.
    pub(crate) fn softirq_since(&self, earlier: &HostCpu, ticks_per_second: u64) -> Duration {
        ticks_to_duration(
            self.softirq.saturating_sub(earlier.softirq),
            ticks_per_second,
        )
    }

    /// Percentage of the time between `earlier` and `self` that the CPUs were idle.
    /// Near zero, the machine was saturated: busy time then measures the window's
    /// length, not the work under test. Zero when no time passed.
    pub(crate) fn idle_percent_since(&self, earlier: &HostCpu) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.idle.saturating_sub(earlier.idle) as f64 * 100.0 / total as f64
    }

    /// Reads `/proc/stat`.
    pub(crate) fn now() -> Result<HostCpu, ProcError> {
        let path = "/proc/stat".to_owned();
        let text = std::fs::read_to_string(&path).map_err(|source| ProcError::Read {
            path: path.clone(),
            source,
        })?;
        parse_host_stat(&text).map_err(|what| ProcError::Format { path, what })
    }
}

/// Parses the aggregate `cpu ` line of `/proc/stat`. Kernels before 2.6.11 have no
/// `steal` column; there it counts as zero.
pub(crate) fn parse_host_stat(text: &str) -> Result<HostCpu, &'static str> {
    let line = text
        .lines()
        .find(|l| l.split_ascii_whitespace().next() == Some("cpu"))
        .ok_or("no aggregate `cpu` line")?;
    let mut columns = Vec::with_capacity(8);
    for field in line.split_ascii_whitespace().skip(1).take(8) {
        columns.push(
            field
                .parse::<u64>()
                .map_err(|_| "a `cpu` column is not a number")?,
        );
    }
    if columns.len() < 4 {
        return Err("the `cpu` line has fewer than 4 columns");
    }
    let column = |i: usize| columns.get(i).copied().unwrap_or(0);
    let cpus = text
        .lines()
        .filter_map(|l| l.split_ascii_whitespace().next()?.strip_prefix("cpu"))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .count();
    Ok(HostCpu {
        total: columns.iter().fold(0u64, |a, &c| a.saturating_add(c)),
        // user, nice, system, irq, softirq (see the field's doc for what is left out).
        busy: [0, 1, 2, 5, 6]
            .into_iter()
            .fold(0u64, |a, i| a.saturating_add(column(i))),
        softirq: column(6),
        idle: column(3).saturating_add(column(4)),
        steal: column(7),
        cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
    })
}

/// Memory figures from `/proc/PID/status`, in KiB as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Memory {
    /// `VmHWM`: peak resident set size.
    pub peak_rss_kib: u64,
    /// `VmRSS`: current resident set size.
    pub rss_kib: u64,
}

/// Reads `VmHWM` and `VmRSS` from `/proc/PID/status` text.
pub(crate) fn parse_status(text: &str) -> Result<Memory, &'static str> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(':')?;
            let mut parts = value.split_ascii_whitespace();
            let n = parts.next()?.parse().ok()?;
            (parts.next() == Some("kB")).then_some(n)
        })
    };
    Ok(Memory {
        peak_rss_kib: field("VmHWM").ok_or("no `VmHWM: N kB` line (a kernel thread?)")?,
        rss_kib: field("VmRSS").ok_or("no `VmRSS: N kB` line")?,
    })
}

/// Sums the `drops` column of `/proc/net/udp` or `/proc/net/udp6` text over the
/// sockets whose local port is in `ports`: datagrams the kernel threw away because the
/// socket's receive buffer was full, i.e. because the reader did not keep up. Lines
/// that do not parse are skipped.
pub(crate) fn udp_drops_for_ports(text: &str, ports: &HashSet<u16>) -> u64 {
    text.lines()
        .skip(1) // the header line
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let local = fields.nth(1)?; // after `sl`
            let port_hex = local.rsplit_once(':')?.1;
            let port = u16::from_str_radix(port_hex, 16).ok()?;
            if !ports.contains(&port) {
                return None;
            }
            line.split_ascii_whitespace().last()?.parse::<u64>().ok()
        })
        .fold(0u64, u64::saturating_add)
}

/// A process being watched: where its files are and how to read them.
#[derive(Debug, Clone)]
pub(crate) struct Process {
    pid: u32,
}

impl Process {
    /// Watches `pid` (use [`std::process::id`] for ourselves).
    pub(crate) fn new(pid: u32) -> Self {
        Self { pid }
    }

    /// The pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    fn read(&self, file: &str) -> Result<(String, String), ProcError> {
        let path = format!("/proc/{}/{file}", self.pid);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((path, text)),
            Err(source) => Err(ProcError::Read { path, source }),
        }
    }

    /// Current CPU ticks.
    pub(crate) fn cpu(&self) -> Result<CpuTicks, ProcError> {
        let (path, text) = self.read("stat")?;
        parse_stat(&text).map_err(|what| ProcError::Format { path, what })
    }

    /// Current memory figures.
    pub(crate) fn memory(&self) -> Result<Memory, ProcError> {
        let (path, text) = self.read("status")?;
        parse_status(&text).map_err(|what| ProcError::Format { path, what })
    }

    /// Receive-buffer drops of this process's UDP sockets bound to `ports` (IPv4 and
    /// IPv6 tables; a missing table counts as zero).
    pub(crate) fn udp_drops(&self, ports: &HashSet<u16>) -> u64 {
        ["net/udp", "net/udp6"]
            .iter()
            .filter_map(|f| self.read(f).ok())
            .map(|(_, text)| udp_drops_for_ports(&text, ports))
            .fold(0u64, u64::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (mediagate) S 1 4242 4242 0 -1 4194560 1523 0 0 0 \
        1234 567 0 0 20 0 3 0 98765 123456789 4321 18446744073709551615 1 1 0 0 0 0 0 \
        4096 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn host_stat_counts_steal_against_all_time() {
        let before = "cpu  100 5 50 800 20 1 4 20 7 0\ncpu0 50 2 25 400 10 0 2 10 7 0\n";
        let after = "cpu  150 5 77 900 20 1 7 40 9 0\ncpu0 75 2 40 450 10 0 2 20 9 0\n";
        let (b, a) = (
            parse_host_stat(before).unwrap(),
            parse_host_stat(after).unwrap(),
        );
        // guest (7, 9) is inside user already and is not counted twice.
        assert_eq!(
            b,
            HostCpu {
                total: 1000,
                busy: 100 + 5 + 50 + 1 + 4,
                softirq: 4,
                idle: 820,
                steal: 20,
                cpus: 1
            }
        );
        assert_eq!(a.total - b.total, 200);
        assert!((a.steal_percent_since(&b) - 10.0).abs() < 1e-9);
        assert_eq!(b.steal_percent_since(&b), 0.0);
        // Busy: user +50, system +27, softirq +3; idle (+100) and steal (+20) are not work.
        assert_eq!(a.busy_since(&b, 100), Duration::from_millis(800));
        assert_eq!(b.busy_since(&a, 100), Duration::ZERO);
        assert_eq!(a.softirq_since(&b, 100), Duration::from_millis(30));
        assert!((a.idle_percent_since(&b) - 50.0).abs() < 1e-9);
        assert_eq!(b.idle_percent_since(&b), 0.0);
        // From the clock: 1 s on the one CPU, less idle (+100 ticks) and steal (+20).
        assert_eq!(
            a.busy_wall_since(&b, Duration::from_secs(1), 100),
            Duration::ZERO
        );
        assert_eq!(
            a.busy_wall_since(&b, Duration::from_secs(2), 100),
            Duration::from_millis(800)
        );
        // Old kernels without the column: no steal, not an error.
        let old = parse_host_stat("cpu 1 2 3 4\n").unwrap();
        assert_eq!(
            old,
            HostCpu {
                total: 10,
                busy: 6,
                softirq: 0,
                idle: 4,
                steal: 0,
                cpus: 0
            }
        );
        assert!(parse_host_stat("cpu0 1 2 3 4\n").is_err());
        assert!(parse_host_stat("cpu 1 x 3 4\n").is_err());
        assert!(parse_host_stat("cpu 1 2\n").is_err());
    }

    #[test]
    fn stat_gives_utime_and_stime() {
        assert_eq!(
            parse_stat(STAT),
            Ok(CpuTicks {
                user: 1234,
                system: 567
            })
        );
    }

    #[test]
    fn stat_command_names_with_spaces_and_parens_are_skipped() {
        let text = "7 (tokio (rt) worker 1) R 1 7 7 0 -1 0 0 0 0 0 55 66 0 0 20 0 1 0 1 1 1";
        assert_eq!(
            parse_stat(text),
            Ok(CpuTicks {
                user: 55,
                system: 66
            })
        );
    }

    #[test]
    fn malformed_stat_lines_are_errors_not_panics() {
        assert_eq!(parse_stat(""), Err("no `)` closing the command name"));
        assert_eq!(
            parse_stat("1 (x) S 1 2"),
            Err("line ends before utime (field 14)")
        );
        assert_eq!(
            parse_stat("1 (x) S 1 2 3 4 5 6 7 8 9 10 -3 4"),
            Err("utime (field 14) is not a number")
        );
        assert_eq!(
            parse_stat("1 (x) S 1 2 3 4 5 6 7 8 9 10 3"),
            Err("line ends before stime (field 15)")
        );
    }

    #[test]
    fn cpu_delta_uses_the_tick_rate() {
        let a = CpuTicks {
            user: 100,
            system: 50,
        };
        let b = CpuTicks {
            user: 350,
            system: 75,
        };
        assert_eq!(b.since(&a, 100), Duration::from_millis(2750));
        assert_eq!(a.since(&b, 100), Duration::ZERO);
        assert_eq!(b.since(&a, 0), Duration::ZERO);
        assert_eq!(ticks_to_duration(7, 3), Duration::new(2, 333_333_333));
        assert_eq!(
            ticks_to_duration(u64::MAX, 1),
            Duration::from_secs(u64::MAX)
        );
    }

    const STATUS: &str = "Name:\tmediagate\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t  912344 kB\nVmSize:\t  912340 kB\nVmLck:\t       0 kB\n\
        VmHWM:\t   45678 kB\nVmRSS:\t   40000 kB\nVmData:\t  100000 kB\nThreads:\t3\n";

    #[test]
    fn status_gives_peak_and_current_rss() {
        assert_eq!(
            parse_status(STATUS),
            Ok(Memory {
                peak_rss_kib: 45678,
                rss_kib: 40000
            })
        );
    }

    #[test]
    fn status_without_memory_lines_is_an_error() {
        // Kernel threads have no Vm* lines.
        let kthread = "Name:\tkworker/0:1\nState:\tI (idle)\nThreads:\t1\n";
        assert_eq!(
            parse_status(kthread),
            Err("no `VmHWM: N kB` line (a kernel thread?)")
        );
        // A prefix of another name must not match.
        assert!(parse_status("VmHWMX:\t1 kB\nVmRSS:\t2 kB\n").is_err());
    }

    const NET_UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops             \n\
  1: 0100007F:9C40 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1001 2 0000000000000000 0        \n\
  2: 0100007F:9C41 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1002 2 0000000000000000 17       \n\
  3: 0100007F:9C42 00000000:0000 07 00000000:00031000 00:00000000 00000000     0        0 1003 2 0000000000000000 5        \n\
  4: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1004 2 0000000000000000 999      \n\
  garbage line\n";

    #[test]
    fn udp_drops_sum_only_our_ports() {
        let ports: HashSet<u16> = [0x9C40, 0x9C41, 0x9C42].into_iter().collect();
        assert_eq!(udp_drops_for_ports(NET_UDP, &ports), 22);
        let none: HashSet<u16> = HashSet::new();
        assert_eq!(udp_drops_for_ports(NET_UDP, &none), 0);
        assert_eq!(udp_drops_for_ports("", &ports), 0);
    }

    #[test]
    fn our_own_process_can_be_read() {
        let me = Process::new(std::process::id());
        assert!(me.memory().unwrap().peak_rss_kib > 0);
        me.cpu().unwrap();
        let err = Process::new(u32::MAX).cpu().unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot read /proc/4294967295/stat"));
    }
}
