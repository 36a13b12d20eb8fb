//! `mediagate-loadgen stalls`: how long, and how often, each CPU stops running a thread
//! that never sleeps. The benchmark machine's own noise floor, printed beside latency
//! figures so that a millisecond lost by the machine is not charged to mediagate.
//!
//! One thread per CPU this process may use, each pinned to its CPU, reads the
//! monotonic clock in a tight loop for `--seconds`. Two consecutive reads are normally
//! tens of nanoseconds apart; a longer gap is time the CPU did not run the thread:
//! the hypervisor running something else on the physical core (a virtual CPU taken
//! away), an interrupt or softirq handled on that CPU, or another task the scheduler
//! preferred. Per CPU it reports the gaps of at least 1 ms and 5 ms, the longest gap,
//! the time lost in gaps longer than `--threshold-ms` and when the first of those
//! happened (a regular period points at something periodic: a host, an agent). Beside them
//! it prints the `steal` time `/proc/stat` counted over the run: the hypervisor's own
//! account of the time it kept this machine's CPUs from running (its `cpu` line: all
//! of them, also any this process may not use).
//!
//! Each gap is also marked by whether the guest's own scheduler gave the CPU to
//! another task meanwhile (the thread's involuntary context switches, read after every
//! gap of 5 µs or more): such a gap is this machine's own work (a kernel thread, an
//! agent process, another program), not the hypervisor's. On the 2-vCPU benchmark VM
//! nearly all the lost time was of that kind.
//!
//! What it does not: name the task that ran (`perf record -e sched:sched_switch -a`
//! does), split a gap without a switch between the hypervisor and an interrupt
//! handler, see a stall shorter than the threshold in its list, or measure an idle
//! CPU: the spinners keep every CPU busy, which is exactly the state a loaded
//! benchmark runs in, and it competes with whatever else runs at the time.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use crate::stats::millis;
use crate::sys;

/// How many gaps per CPU are listed with their times (the counts cover them all).
const LISTED_GAPS: usize = 20;

/// Options of `mediagate-loadgen stalls`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StallsArgs {
    /// How long each CPU's thread spins.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Gaps longer than this (milliseconds) are listed and summed as time lost.
    #[arg(long, default_value_t = 1.0)]
    pub threshold_ms: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl StallsArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if !(self.seconds > 0.0 && self.seconds <= 3600.0) {
            bail!("--seconds must be more than 0 and at most 3600");
        }
        if !(self.threshold_ms >= 0.01 && self.threshold_ms <= 10_000.0) {
            bail!("--threshold-ms must be between 0.01 and 10000");
        }
        Ok(())
    }
}

/// One gap between two consecutive clock reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gap {
    /// When it began: the read before it, from the first read.
    pub at: Duration,
    pub len: Duration,
    /// The guest's scheduler ran another task meanwhile (see [`spin`]).
    pub another_task: bool,
}

/// Gap accounting over one thread's consecutive clock reads, fed one read at a time
/// (a spinner makes hundreds of millions of reads: none is kept).
#[derive(Debug, Clone)]
pub(crate) struct GapLog {
    threshold: Duration,
    first: Option<Duration>,
    last: Option<Duration>,
    reads: u64,
    at_least_1ms: u64,
    at_least_5ms: u64,
    longest: Duration,
    over_threshold: u64,
    lost: Duration,
    /// Of `lost`, the gaps during which the guest's scheduler ran another task.
    lost_to_tasks: Duration,
    over_threshold_to_tasks: u64,
    listed: Vec<Gap>,
}

impl GapLog {
    pub(crate) fn new(threshold: Duration) -> Self {
        GapLog {
            threshold,
            first: None,
            last: None,
            reads: 0,
            at_least_1ms: 0,
            at_least_5ms: 0,
            longest: Duration::ZERO,
            over_threshold: 0,
            lost: Duration::ZERO,
            lost_to_tasks: Duration::ZERO,
            over_threshold_to_tasks: 0,
            listed: Vec::new(),
        }
    }

    /// Takes one read of a monotonic clock (any fixed origin). A read earlier than the
    /// one before it counts as no gap: a monotonic clock never does that.
    #[cfg(test)]
    pub(crate) fn observe(&mut self, t: Duration) {
        self.observe_read(t, false);
    }

    /// [`observe`](Self::observe), knowing whether the guest's scheduler ran another
    /// task on this CPU since the read before (`another_task`).
    pub(crate) fn observe_read(&mut self, t: Duration, another_task: bool) {
        self.reads += 1;
        let first = *self.first.get_or_insert(t);
        if let Some(last) = self.last.replace(t) {
            let len = t.saturating_sub(last);
            if len >= Duration::from_millis(1) {
                self.at_least_1ms += 1;
            }
            if len >= Duration::from_millis(5) {
                self.at_least_5ms += 1;
            }
            self.longest = self.longest.max(len);
            if len > self.threshold {
                self.over_threshold += 1;
                self.lost += len;
                if another_task {
                    self.over_threshold_to_tasks += 1;
                    self.lost_to_tasks += len;
                }
                if self.listed.len() < LISTED_GAPS {
                    self.listed.push(Gap {
                        at: last.saturating_sub(first),
                        len,
                        another_task,
                    });
                }
            }
        }
    }

    /// Time from the first read to the last.
    pub(crate) fn span(&self) -> Duration {
        match (self.first, self.last) {
            (Some(f), Some(l)) => l.saturating_sub(f),
            _ => Duration::ZERO,
        }
    }

    /// Share of the span lost in gaps over the threshold, in percent.
    fn lost_percent(&self) -> f64 {
        let span = self.span().as_secs_f64();
        if span > 0.0 {
            self.lost.as_secs_f64() * 100.0 / span
        } else {
            0.0
        }
    }
}

/// A gap at least this long may hide a switch to another task (switching away and
/// back alone takes microseconds), so the thread's switch count is read after it.
const SWITCH_GAP: Duration = Duration::from_micros(5);

/// Spins on the monotonic clock for `run`, feeding every read to a log. After each gap
/// of [`SWITCH_GAP`] or more it reads its count of involuntary context switches: one
/// more means the guest's own scheduler gave the CPU to another task of this machine
/// (a kernel thread, an agent, another process); a gap without one is time the thread
/// never lost to a task: the hypervisor's, or an interrupt's.
fn spin(run: Duration, threshold: Duration) -> GapLog {
    let mut log = GapLog::new(threshold);
    let start = Instant::now();
    let mut switches = sys::thread_involuntary_switches();
    let mut previous = Duration::ZERO;
    loop {
        let t = start.elapsed();
        let mut another_task = false;
        if t.saturating_sub(previous) >= SWITCH_GAP {
            let now = sys::thread_involuntary_switches();
            another_task = now.is_some() && now != switches;
            switches = now;
        }
        previous = t;
        log.observe_read(t, another_task);
        if t >= run {
            return log;
        }
    }
}

pub(crate) fn run(args: StallsArgs) -> anyhow::Result<u8> {
    args.validate()?;
    let cpus = sys::allowed_cpus().context("sched_getaffinity")?;
    if cpus.is_empty() {
        bail!("this process may run on no CPU");
    }
    let run_for = Duration::from_secs_f64(args.seconds);
    let threshold = Duration::from_secs_f64(args.threshold_ms / 1e3);
    let before = crate::procfs::HostCpu::now().ok();
    let logs = measure(&cpus, run_for, threshold)?;
    let steal = before.and_then(|b| {
        let after = crate::procfs::HostCpu::now().ok()?;
        let ticks = sys::clock_ticks_per_second().unwrap_or(100);
        Some(Steal {
            time: crate::procfs::ticks_to_duration(after.steal.saturating_sub(b.steal), ticks),
            percent: after.steal_percent_since(&b),
        })
    });
    let report = StallsReport { args, logs, steal };
    if report.args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(0)
}

/// One spinner per CPU of `cpus`, each pinned to its CPU, for `run_for`: their logs.
fn measure(
    cpus: &[usize],
    run_for: Duration,
    threshold: Duration,
) -> anyhow::Result<Vec<(usize, GapLog)>> {
    // The spinners start together, so a gap on one CPU can be compared in time with
    // the others' (a host stall often takes every virtual CPU at once).
    let start = Arc::new(Barrier::new(cpus.len()));
    let mut threads = Vec::with_capacity(cpus.len());
    for &cpu in cpus {
        let start = Arc::clone(&start);
        let t = std::thread::Builder::new()
            .name(format!("stalls-cpu{cpu}"))
            .spawn(move || {
                let pinned = sys::pin_current_thread(cpu);
                start.wait();
                pinned.map(|()| spin(run_for, threshold))
            })
            .context("cannot start a spinner thread")?;
        threads.push((cpu, t));
    }
    let mut logs = Vec::with_capacity(threads.len());
    for (cpu, t) in threads {
        let log = t
            .join()
            .map_err(|_| anyhow::anyhow!("the spinner of CPU {cpu} panicked"))?
            .with_context(|| format!("cannot pin a thread to CPU {cpu}"))?;
        logs.push((cpu, log));
    }
    Ok(logs)
}

/// The kernel's `steal` count over the run: time the hypervisor reports it kept the
/// machine's virtual CPUs (all of them, not only the spinners') from running although
/// they had work. Tick-sampled (10 ms on most
/// kernels), so only a total over seconds means anything.
struct Steal {
    time: Duration,
    percent: f64,
}

struct StallsReport {
    args: StallsArgs,
    logs: Vec<(usize, GapLog)>,
    /// `None` when `/proc/stat` could not be read.
    steal: Option<Steal>,
}

impl StallsReport {
    /// The CPU with the longest gap, and that gap.
    fn longest(&self) -> Option<(usize, Duration)> {
        self.logs
            .iter()
            .map(|(cpu, log)| (*cpu, log.longest))
            .max_by_key(|&(_, d)| d)
    }

    fn to_text(&self) -> String {
        let mut out = String::new();
        for (cpu, log) in &self.logs {
            let listed: Vec<String> = log
                .listed
                .iter()
                .map(|g| {
                    format!(
                        "{:.3} s ({:.2} ms{})",
                        g.at.as_secs_f64(),
                        millis(g.len),
                        if g.another_task { ", a task" } else { "" }
                    )
                })
                .collect();
            let more = log.over_threshold.saturating_sub(log.listed.len() as u64);
            out.push_str(&format!(
                "cpu {cpu}: {} gaps >= 1 ms, {} >= 5 ms, longest {:.2} ms; {:.2} ms ({:.2}%) lost in {} gaps over {} ms, {:.2} ms of it in {} gaps while another task ran{}{}{}\n",
                log.at_least_1ms,
                log.at_least_5ms,
                millis(log.longest),
                millis(log.lost),
                log.lost_percent(),
                log.over_threshold,
                self.args.threshold_ms,
                millis(log.lost_to_tasks),
                log.over_threshold_to_tasks,
                if listed.is_empty() { "" } else { ", at " },
                listed.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() },
            ));
        }
        let sum =
            |f: fn(&GapLog) -> Duration| -> Duration { self.logs.iter().map(|(_, l)| f(l)).sum() };
        let (lost, to_tasks, span) = (sum(|l| l.lost), sum(|l| l.lost_to_tasks), sum(GapLog::span));
        let at_least_1: u64 = self.logs.iter().map(|(_, l)| l.at_least_1ms).sum();
        let at_least_5: u64 = self.logs.iter().map(|(_, l)| l.at_least_5ms).sum();
        let (worst_cpu, worst) = self.longest().unwrap_or((0, Duration::ZERO));
        let share = if span > Duration::ZERO {
            lost.as_secs_f64() * 100.0 / span.as_secs_f64()
        } else {
            0.0
        };
        let steal = match &self.steal {
            Some(s) => format!(
                "; the host reports {:.0} ms ({:.2}%) stolen",
                millis(s.time),
                s.percent
            ),
            None => String::new(),
        };
        out.push_str(&format!(
            "stalls: {} CPUs each spun {} s: {at_least_1} gaps >= 1 ms, {at_least_5} >= 5 ms, longest {:.2} ms (cpu {worst_cpu}), {share:.2}% of the time lost in gaps over {} ms ({:.1} of {:.1} ms while another task of this machine ran){steal}\n",
            self.logs.len(),
            self.args.seconds,
            millis(worst),
            self.args.threshold_ms,
            millis(to_tasks),
            millis(lost),
        ));
        out
    }

    fn to_json(&self) -> serde_json::Value {
        let cpus: Vec<serde_json::Value> = self
            .logs
            .iter()
            .map(|(cpu, log)| {
                json!({
                    "cpu": cpu,
                    "clock_reads": log.reads,
                    "span_s": log.span().as_secs_f64(),
                    "gaps_at_least_1ms": log.at_least_1ms,
                    "gaps_at_least_5ms": log.at_least_5ms,
                    "longest_gap_ms": millis(log.longest),
                    "gaps_over_threshold": log.over_threshold,
                    "lost_in_gaps_over_threshold_ms": millis(log.lost),
                    "lost_while_another_task_ran_ms": millis(log.lost_to_tasks),
                    "gaps_over_threshold_while_another_task_ran": log.over_threshold_to_tasks,
                    "lost_percent": log.lost_percent(),
                    "first_gaps": log.listed.iter().map(|g| json!({
                        "at_s": g.at.as_secs_f64(),
                        "ms": millis(g.len),
                        "another_task": g.another_task,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "seconds": self.args.seconds,
            "threshold_ms": self.args.threshold_ms,
            "longest_gap_ms": self.longest().map(|(_, d)| millis(d)).unwrap_or(0.0),
            "steal_ms": self.steal.as_ref().map(|s| millis(s.time)),
            "steal_percent": self.steal.as_ref().map(|s| s.percent),
            "cpus": cpus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn log_of(reads: &[u64], threshold_us: u64) -> GapLog {
        let mut log = GapLog::new(us(threshold_us));
        for &r in reads {
            log.observe(us(r));
        }
        log
    }

    #[test]
    fn gaps_are_counted_by_size_and_listed_over_the_threshold() {
        // From a clock origin of 10 s: gaps of 1 ms exactly, 0.999 ms, 8 ms, 5 ms
        // exactly, 2 ms, between reads a microsecond apart.
        let base = 10_000_000;
        let reads: Vec<u64> = [
            0, 1, 1_001, 1_002, 2_001, 2_002, 10_002, 10_003, 15_003, 17_003,
        ]
        .iter()
        .map(|r| base + r)
        .collect();
        // The 5 ms gap (ending at the read 15_003) is one where another task ran.
        let mut log = GapLog::new(us(1_000));
        for &r in &reads {
            log.observe_read(us(r), r == base + 15_003);
        }
        assert_eq!(log.reads, 10);
        assert_eq!(log.at_least_1ms, 4, "1, 8, 5 and 2 ms; not 0.999 ms");
        assert_eq!(log.at_least_5ms, 2, "8 and 5 ms");
        assert_eq!(log.longest, us(8_000));
        // Over the threshold means strictly longer than it: the 1 ms gap is not listed.
        assert_eq!(log.over_threshold, 3);
        assert_eq!(log.lost, us(15_000));
        assert_eq!(
            (log.lost_to_tasks, log.over_threshold_to_tasks),
            (us(5_000), 1)
        );
        assert_eq!(
            log.listed,
            vec![
                Gap {
                    at: us(2_002),
                    len: us(8_000),
                    another_task: false
                },
                Gap {
                    at: us(10_003),
                    len: us(5_000),
                    another_task: true
                },
                Gap {
                    at: us(15_003),
                    len: us(2_000),
                    another_task: false
                },
            ],
            "times are from the first read, each the read before its gap"
        );
        assert_eq!(log.span(), us(17_003));
        assert!((log.lost_percent() - 15_000.0 * 100.0 / 17_003.0).abs() < 1e-9);
    }

    #[test]
    fn a_lower_threshold_lists_shorter_gaps_and_the_list_is_bounded() {
        // 30 gaps of 0.5 ms: none reaches 1 ms, all are over a 0.2 ms threshold.
        let reads: Vec<u64> = (0..=30).map(|i| i * 500).collect();
        let log = log_of(&reads, 200);
        assert_eq!(log.at_least_1ms, 0);
        assert_eq!(log.over_threshold, 30);
        assert_eq!(log.listed.len(), LISTED_GAPS);
        assert_eq!(log.lost, us(15_000));
        assert_eq!(log.longest, us(500));
    }

    #[test]
    fn two_spinners_on_one_cpu_mark_the_gaps_the_other_ran_in() {
        // Each spinner is off the CPU while the other one runs: those gaps are the
        // scheduler's switches to another task, and must be marked as such.
        let cpu = sys::allowed_cpus().unwrap()[0];
        let start = Barrier::new(2);
        let logs: Vec<GapLog> = std::thread::scope(|scope| {
            let spinners: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        sys::pin_current_thread(cpu).unwrap();
                        start.wait();
                        spin(Duration::from_millis(300), Duration::from_micros(100))
                    })
                })
                .collect();
            spinners.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for log in &logs {
            assert!(log.over_threshold_to_tasks > 0, "{log:?}");
            assert!(
                log.lost_to_tasks > log.span() / 4,
                "the other spinner held the CPU about half the time: {log:?}"
            );
        }
    }

    #[test]
    fn one_read_or_a_clock_going_back_makes_no_gap() {
        let log = log_of(&[5], 1_000);
        assert_eq!((log.reads, log.span(), log.longest), (1, us(0), us(0)));
        assert_eq!(log.lost_percent(), 0.0);
        let log = log_of(&[10_000, 2_000, 2_001], 1_000);
        assert_eq!(log.at_least_1ms, 0);
        assert_eq!(log.over_threshold, 0);
    }

    #[test]
    fn a_short_run_spins_on_every_cpu_and_reports_them() {
        let args = StallsArgs {
            seconds: 0.05,
            threshold_ms: 1.0,
            json: false,
        };
        let cpus = sys::allowed_cpus().unwrap();
        let logs = measure(&cpus, Duration::from_millis(50), Duration::from_millis(1)).unwrap();
        assert_eq!(
            logs.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            cpus,
            "one spinner per allowed CPU"
        );
        for (cpu, log) in &logs {
            // Each stops at its first read 50 ms after it began (the span starts at
            // the first read, a little after that, or later if the CPU stalled).
            assert!(log.last.unwrap() >= Duration::from_millis(50), "cpu {cpu}");
            assert!(log.span() > Duration::ZERO, "cpu {cpu}");
            assert!(
                log.reads > 1_000,
                "cpu {cpu}: a spinner reads the clock often"
            );
        }
        let report = StallsReport {
            args,
            logs,
            steal: Some(Steal {
                time: Duration::from_millis(30),
                percent: 1.5,
            }),
        };
        let text = report.to_text();
        assert_eq!(text.lines().count(), cpus.len() + 1);
        assert!(
            text.trim_end()
                .ends_with("; the host reports 30 ms (1.50%) stolen"),
            "{text}"
        );
        assert!(text
            .lines()
            .last()
            .unwrap()
            .starts_with(&format!("stalls: {} CPUs each spun 0.05 s: ", cpus.len())));
        let j = report.to_json();
        assert_eq!(j["cpus"].as_array().unwrap().len(), cpus.len());
        assert_eq!(j["threshold_ms"], 1.0);
        assert_eq!(j["steal_ms"], 30.0);
        assert!(StallsArgs {
            seconds: 0.0,
            threshold_ms: 1.0,
            json: false
        }
        .validate()
        .is_err());
    }
}
