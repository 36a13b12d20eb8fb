//! `mediagate-loadgen rtp --find-max-rate` (issue 16): the highest packet rate each
//! target carries with zero loss.
//!
//! The calls are set up once per target; each step pumps them for `--seconds` at one
//! rate per stream. The rate starts at `--pps` and doubles after every loss-free step;
//! after the first lossy one, the next steps halve the gap between the best loss-free
//! and the lowest lossy rate ([`RateSearch`]). The rate steps per stream rather than in
//! calls: the same sockets and relay ports every step, so a step measures the rate and
//! not a relay's port range or set-up speed.
//!
//! Bounded: at most `--max-steps` steps and `--max-pps` per stream, so a target takes at
//! most steps × (`--seconds` + about 1 s of grace and draining) after its set-up. It
//! stops early when the bounds close to within a tenth, or when the load generator
//! itself could not offer the rate (it fell behind its schedule or a send failed)
//! twice in a row at the same rate (once may be a busy moment of a shared host):
//! then the answer is "at least" the best loss-free rate, and says whose limit it was.
//! With `--direct` the same search runs first with no relay, which shows the
//! generator's and the host's own ceiling.
//!
//! What it does not: tell a relay's loss from the receiver's (both are this host's), or
//! repeat a step to rule out a one-off hiccup of a shared host.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use anyhow::Context as _;

use super::{cpu_notes, direct_calls, measure_direct, opt, Call, Outcome, RtpArgs, Session};

/// What one step showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every packet arrived.
    ZeroLoss,
    /// Some did not.
    Loss,
    /// Nothing was lost but the generator did not offer the asked rate: the limit is
    /// the generator's, not the target's.
    GeneratorShort,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::ZeroLoss => "zero loss",
            Verdict::Loss => "loss",
            Verdict::GeneratorShort => "generator short",
        }
    }
}

/// The share of the asked rate a step must have offered to count as that rate.
const OFFERED_SHARE: f64 = 0.95;

/// Judges a step at `pps` per stream.
pub(crate) fn verdict(outcome: &Outcome, pps: u32) -> Verdict {
    let p = &outcome.pump;
    let asked = outcome.calls as f64 * 2.0 * f64::from(pps);
    let offered = p.sent as f64 / p.seconds.max(1e-9);
    if p.received < p.sent || p.misrouted > 0 {
        Verdict::Loss
    } else if p.send_errors > 0 || offered < asked * OFFERED_SHARE {
        Verdict::GeneratorShort
    } else {
        Verdict::ZeroLoss
    }
}

/// Why a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The best loss-free and the lowest lossy rate are within a tenth of each other
    /// (or even the lowest rate lost packets).
    Converged,
    /// `--max-steps` were taken.
    Steps,
    /// `--max-pps` carried without loss.
    MaxPps,
    /// The generator could not offer the next rate.
    Generator,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Converged => "converged",
            Stop::Steps => "step limit",
            Stop::MaxPps => "max pps",
            Stop::Generator => "generator limit",
        }
    }
}

/// The rate search, without I/O: [`RateSearch::next`] names the next rate per stream,
/// [`RateSearch::record`] takes its verdict.
#[derive(Debug, Clone)]
pub(crate) struct RateSearch {
    start: u32,
    max_pps: u32,
    max_steps: u32,
    steps: u32,
    best_ok: Option<u32>,
    first_bad: Option<u32>,
    /// A rate the generator fell short of once, to be tried again.
    retry: Option<u32>,
    stop: Option<Stop>,
}

impl RateSearch {
    pub(crate) fn new(start: u32, max_pps: u32, max_steps: u32) -> Self {
        Self {
            start: start.clamp(1, max_pps.max(1)),
            max_pps: max_pps.max(1),
            max_steps,
            steps: 0,
            best_ok: None,
            first_bad: None,
            retry: None,
            stop: None,
        }
    }

    /// The next rate to try, or `None` when the search is over ([`RateSearch::stop`]
    /// says why).
    pub(crate) fn next(&mut self) -> Option<u32> {
        if self.stop.is_some() {
            return None;
        }
        let next = match (self.retry, self.best_ok, self.first_bad) {
            (Some(again), _, _) => Ok(again),
            (None, None, None) => Ok(self.start),
            (None, Some(ok), None) if ok >= self.max_pps => Err(Stop::MaxPps),
            (None, Some(ok), None) => Ok(ok.saturating_mul(2).min(self.max_pps)),
            (None, ok, Some(bad)) => {
                let lo = ok.unwrap_or(0);
                let mid = lo + (bad - lo) / 2;
                if mid <= lo || bad - lo <= lo / 10 {
                    Err(Stop::Converged)
                } else {
                    Ok(mid)
                }
            }
        };
        let next = match next {
            Ok(_) if self.steps >= self.max_steps => Err(Stop::Steps),
            other => other,
        };
        match next {
            Ok(pps) => Some(pps),
            Err(stop) => {
                self.stop = Some(stop);
                None
            }
        }
    }

    /// What the step at `pps` showed.
    pub(crate) fn record(&mut self, pps: u32, verdict: Verdict) {
        self.steps += 1;
        let retried = self.retry.take() == Some(pps);
        match verdict {
            Verdict::ZeroLoss => self.best_ok = Some(self.best_ok.map_or(pps, |b| b.max(pps))),
            Verdict::Loss => self.first_bad = Some(self.first_bad.map_or(pps, |b| b.min(pps))),
            Verdict::GeneratorShort if retried => self.stop = Some(Stop::Generator),
            Verdict::GeneratorShort => self.retry = Some(pps),
        }
    }

    /// Highest rate per stream carried without loss.
    pub(crate) fn best(&self) -> Option<u32> {
        self.best_ok
    }

    /// Lowest rate per stream that lost packets.
    pub(crate) fn lowest_lossy(&self) -> Option<u32> {
        self.first_bad
    }

    /// Why the search ended; `None` while it runs.
    pub(crate) fn stop(&self) -> Option<Stop> {
        self.stop
    }
}

/// Reads and drops whatever is still queued on the phones' sockets, so a late packet
/// of one step is not counted in the next.
fn drain(calls: &[Call]) -> io::Result<()> {
    // Let the last step's stragglers arrive first.
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = [0u8; 2048];
    for socket in calls.iter().flat_map(|c| c.sockets.iter()) {
        socket.set_nonblocking(true)?;
        loop {
            match socket.recv(&mut buf) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // An ICMP error queued by an earlier step: read it away too.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
        }
        socket.set_nonblocking(false)?;
    }
    Ok(())
}

/// One target's search: its steps and how it ended.
struct Searched {
    label: String,
    calls: usize,
    steps: Vec<(Outcome, Verdict)>,
    search: RateSearch,
}

impl Searched {
    fn json(&self) -> serde_json::Value {
        let total = |pps: Option<u32>| pps.map(|p| self.calls as u64 * 2 * u64::from(p));
        serde_json::json!({
            "label": self.label,
            "mode": "find_max_rate",
            "calls": self.calls,
            "max_zero_loss_pps_per_stream": self.search.best(),
            "max_zero_loss_pps": total(self.search.best()),
            "lowest_lossy_pps_per_stream": self.search.lowest_lossy(),
            "lowest_lossy_pps": total(self.search.lowest_lossy()),
            "stopped": self.search.stop().map(Stop::name),
            "steps": self.steps.iter().map(|(o, v)| {
                let mut j = o.json();
                j["verdict"] = serde_json::Value::from(v.name());
                j
            }).collect::<Vec<_>>(),
        })
    }

    fn summary(&self) -> String {
        let total = |pps: u32| self.calls as u64 * 2 * u64::from(pps);
        let best = self.search.best().map_or("none".to_owned(), |p| {
            format!("{} pps ({} per stream)", total(p), p)
        });
        let open_ended = matches!(self.search.stop(), Some(Stop::Generator | Stop::MaxPps));
        let at_least = if open_ended && self.search.best().is_some() {
            "at least "
        } else {
            ""
        };
        let lossy = self.search.lowest_lossy().map_or(String::new(), |p| {
            format!("; lowest lossy {} pps ({p} per stream)", total(p))
        });
        format!(
            "{}: highest zero-loss rate {at_least}{best}{lossy}; stopped: {}",
            self.label,
            self.search.stop().map_or("-", Stop::name)
        )
    }
}

fn print_header() {
    println!(
        "{:<12} {:>6} {:>7} {:>9} {:>9} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>8} {:>6} {:>7}  verdict",
        "target",
        "calls",
        "pps/st",
        "offered",
        "received",
        "lost",
        "p50us",
        "p99us",
        "us/pkt",
        "mach_us",
        "net_us",
        "sirq_us",
        "idle%",
        "steal%",
    );
}

fn print_step(o: &Outcome, v: Verdict) {
    let p = &o.pump;
    println!(
        "{:<12} {:>6} {:>7} {:>9.0} {:>9} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>8} {:>6} {:>7}  {}",
        o.label,
        o.calls,
        o.pps_per_stream,
        p.sent as f64 / p.seconds.max(1e-9),
        p.received,
        p.sent.saturating_sub(p.received),
        p.latency_us(50.0),
        p.latency_us(99.0),
        opt(o.cpu_us_per_packet(), 2),
        opt(o.machine_us_per_packet(), 2),
        opt(o.machine_net_us_per_packet, 2),
        opt(o.softirq_us_per_packet(), 2),
        opt(o.host_idle_percent, 1),
        opt(o.host_steal_percent, 1),
        v.name(),
    );
}

/// Runs `step(pps)` as the search asks, printing each step unless `json`.
fn search<F>(args: &RtpArgs, label: &str, calls: &[Call], mut step: F) -> anyhow::Result<Searched>
where
    F: FnMut(u32) -> anyhow::Result<Outcome>,
{
    let mut search = RateSearch::new(args.pps, args.max_pps, args.max_steps);
    let mut steps = Vec::new();
    while let Some(pps) = search.next() {
        drain(calls).context("draining the phones' sockets between steps")?;
        let outcome = step(pps)?;
        let v = verdict(&outcome, pps);
        if !args.json {
            print_step(&outcome, v);
        }
        search.record(pps, v);
        steps.push((outcome, v));
    }
    Ok(Searched {
        label: label.to_owned(),
        calls: calls.len(),
        steps,
        search,
    })
}

/// `--find-max-rate`: the search for `direct` (with `--direct`) and every target.
/// Exit status 0 when every target carried some rate without loss, else 2.
pub(crate) fn run(args: &RtpArgs) -> anyhow::Result<u8> {
    if !args.json {
        print_header();
    }
    let mut results = Vec::new();
    let mut direct_at: HashMap<u32, Outcome> = HashMap::new();
    if args.direct {
        let calls = direct_calls(args.calls, args.local_ip)?;
        let searched = search(args, "direct", &calls, |pps| {
            let o = measure_direct(&calls, args, pps)?;
            direct_at.insert(pps, o.clone());
            Ok(o)
        })
        .context("the direct baseline")?;
        if args.json {
            println!("{}", searched.json());
        }
        results.push(searched);
    }
    for target in &args.targets {
        let session =
            Session::open(args, target).with_context(|| format!("target {}", target.label))?;
        let searched = search(args, &target.label, &session.calls, |pps| {
            let mut o = session.measure(args, target, pps)?;
            if let Some(direct) = direct_at.get(&pps) {
                o.subtract_direct(direct);
            }
            Ok(o)
        })
        .with_context(|| format!("target {}", target.label))?;
        drop(session);
        if args.json {
            println!("{}", searched.json());
        }
        results.push(searched);
    }
    if !args.json {
        let steps: Vec<Outcome> = results
            .iter()
            .flat_map(|r| r.steps.iter().map(|(o, _)| o.clone()))
            .collect();
        for line in cpu_notes(&steps) {
            println!("{line}");
        }
        for r in &results {
            println!("{}", r.summary());
        }
    }
    let all_found = results.iter().all(|r| r.search.best().is_some());
    Ok(if all_found { 0 } else { 2 })
}

#[cfg(test)]
mod tests {
    use super::super::pump::PumpReport;
    use super::*;

    /// Runs a search against a target that loses packets above `limit` per stream.
    fn simulate(start: u32, max_pps: u32, max_steps: u32, limit: u32) -> (RateSearch, Vec<u32>) {
        let mut s = RateSearch::new(start, max_pps, max_steps);
        let mut tried = Vec::new();
        while let Some(pps) = s.next() {
            tried.push(pps);
            let v = if pps <= limit {
                Verdict::ZeroLoss
            } else {
                Verdict::Loss
            };
            s.record(pps, v);
        }
        (s, tried)
    }

    #[test]
    fn doubles_then_halves_the_gap() {
        let (s, tried) = simulate(50, 5_000, 20, 330);
        assert_eq!(tried, [50, 100, 200, 400, 300, 350, 325]);
        assert_eq!(s.best(), Some(325));
        assert_eq!(s.lowest_lossy(), Some(350));
        assert_eq!(s.stop(), Some(Stop::Converged));
    }

    #[test]
    fn bounded_by_steps_and_by_max_pps() {
        let (s, tried) = simulate(50, 5_000, 3, 10_000);
        assert_eq!(tried, [50, 100, 200]);
        assert_eq!(s.stop(), Some(Stop::Steps));
        assert_eq!(s.best(), Some(200));
        let (s, tried) = simulate(50, 300, 20, 10_000);
        assert_eq!(tried, [50, 100, 200, 300]);
        assert_eq!(s.stop(), Some(Stop::MaxPps));
        assert_eq!(s.best(), Some(300));
    }

    #[test]
    fn a_lossy_start_searches_downwards() {
        let (s, tried) = simulate(50, 5_000, 20, 10);
        assert_eq!(tried, [50, 25, 12, 6, 9, 10, 11]);
        assert_eq!(s.best(), Some(10));
        assert_eq!(s.lowest_lossy(), Some(11));
        let (s, tried) = simulate(4, 5_000, 20, 0);
        assert_eq!(tried, [4, 2, 1]);
        assert_eq!(s.best(), None);
        assert_eq!(s.stop(), Some(Stop::Converged));
    }

    #[test]
    fn a_short_generator_twice_at_one_rate_ends_the_search() {
        let mut s = RateSearch::new(50, 5_000, 20);
        assert_eq!(s.next(), Some(50));
        s.record(50, Verdict::ZeroLoss);
        assert_eq!(s.next(), Some(100));
        s.record(100, Verdict::GeneratorShort);
        // Once may be a busy moment: the same rate again.
        assert_eq!(s.next(), Some(100));
        s.record(100, Verdict::GeneratorShort);
        assert_eq!(s.next(), None);
        assert_eq!(s.stop(), Some(Stop::Generator));
        assert_eq!(s.best(), Some(50));
        // A retry that gets through goes on as usual.
        let mut s = RateSearch::new(50, 5_000, 20);
        assert_eq!(s.next(), Some(50));
        s.record(50, Verdict::GeneratorShort);
        assert_eq!(s.next(), Some(50));
        s.record(50, Verdict::ZeroLoss);
        assert_eq!(s.next(), Some(100));
        // The retry counts against the step limit.
        let mut s = RateSearch::new(50, 5_000, 1);
        assert_eq!(s.next(), Some(50));
        s.record(50, Verdict::GeneratorShort);
        assert_eq!(s.next(), None);
        assert_eq!(s.stop(), Some(Stop::Steps));
    }

    #[test]
    fn summaries_say_whose_limit_it_was() {
        let searched = |steps: &[(u32, Verdict)]| {
            let mut search = RateSearch::new(50, 5_000, 20);
            for &(pps, v) in steps {
                assert_eq!(search.next(), Some(pps));
                search.record(pps, v);
            }
            assert_eq!(search.next(), None);
            Searched {
                label: "x".into(),
                calls: 1000,
                steps: Vec::new(),
                search,
            }
        };
        let s = searched(&[
            (50, Verdict::ZeroLoss),
            (100, Verdict::GeneratorShort),
            (100, Verdict::GeneratorShort),
        ]);
        assert_eq!(
            s.summary(),
            "x: highest zero-loss rate at least 100000 pps (50 per stream); stopped: generator limit"
        );
        assert_eq!(s.json()["max_zero_loss_pps"], 100_000);
        let s = searched(&[(50, Verdict::GeneratorShort), (50, Verdict::GeneratorShort)]);
        assert_eq!(
            s.summary(),
            "x: highest zero-loss rate none; stopped: generator limit"
        );
        assert!(s.json()["max_zero_loss_pps"].is_null());
        let s = searched(&[
            (50, Verdict::ZeroLoss),
            (100, Verdict::Loss),
            (75, Verdict::ZeroLoss),
            (87, Verdict::ZeroLoss),
            (93, Verdict::Loss),
        ]);
        assert_eq!(
            s.summary(),
            "x: highest zero-loss rate 174000 pps (87 per stream); lowest lossy 186000 pps \
             (93 per stream); stopped: converged"
        );
    }

    #[test]
    fn verdicts() {
        // 10 calls at 100 pps per stream for 1 s: 2,000 packets asked.
        let outcome = |sent, received, seconds, send_errors, misrouted| Outcome {
            calls: 10,
            pump: PumpReport {
                sent,
                received,
                seconds,
                send_errors,
                misrouted,
                ..PumpReport::default()
            },
            ..Outcome::default()
        };
        assert_eq!(
            verdict(&outcome(2000, 2000, 1.0, 0, 0), 100),
            Verdict::ZeroLoss
        );
        assert_eq!(verdict(&outcome(2000, 1999, 1.0, 0, 0), 100), Verdict::Loss);
        assert_eq!(verdict(&outcome(2000, 2000, 1.0, 0, 1), 100), Verdict::Loss);
        // The sender took 1.2 s for 1 s of packets: the generator's limit.
        assert_eq!(
            verdict(&outcome(2000, 2000, 1.2, 0, 0), 100),
            Verdict::GeneratorShort
        );
        assert_eq!(
            verdict(&outcome(1990, 1990, 1.0, 10, 0), 100),
            Verdict::GeneratorShort
        );
        // Loss wins over a short generator: packets were lost at what it did offer.
        assert_eq!(verdict(&outcome(2000, 10, 1.2, 0, 0), 100), Verdict::Loss);
    }
}
