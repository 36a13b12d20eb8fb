//! `mediagate-loadgen churn`: short viewer sessions at a target rate while long viewers
//! watch, the benchmark of "2,000 access records per second without blocking any
//! viewer" (issue 12, Performance).
//!
//! A run: N long viewers (TCP interleaved, the `fanout` viewer) start, play the whole
//! run, and are measured: packets, loss by sequence gaps, the longest wait between two
//! packets of a track. Once they play (or after a warm-up), C persistent connections
//! run short sessions, each DESCRIBE, SETUP of the first track (TCP interleaved), PLAY,
//! TEARDOWN, started on a common schedule of `--rate` per second, so each session ends
//! as one access line and one stored record at the edge. The connections stay open
//! from session to session: the edge is measured on sessions, not on TCP connects.
//! A connection that fails is reopened.
//!
//! What it does not: count the records (the script reads the database and the access
//! log), or run sessions faster than its connections allow (a session is due at
//! `start + i / rate`; a late one starts at once, and the achieved rate says so).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use mediagate_rtsp::{Method, Response};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::conn::{Conn, ConnError, CountingSink};
use super::plan::{self, Lower};
use super::report::ViewerReport;
use super::url::{self, WatchedUrl};
use super::viewer::{self, ViewerCtx};
use crate::latency_hist;
use crate::procfs::Process;
use crate::stats::{millis, nearest_rank};
use crate::sys;
use crate::track_stats::Codec;

/// Most short-session connections.
const MAX_CONNECTIONS: usize = 4096;
/// Longest wait for the long viewers to play before the short sessions start anyway.
const WARM_UP: Duration = Duration::from_secs(5);
/// The long viewers play on this long after the last short session is due, so a stall
/// the last sessions cause is seen.
const COOL_DOWN: Duration = Duration::from_secs(2);
/// How long a failed connection waits before it is reopened.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Options of `mediagate-loadgen churn`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ChurnArgs {
    /// RTSP URL of the short sessions, e.g. rtsp://127.0.0.1:8554/cam.
    #[arg(long)]
    pub url: String,
    /// RTSP URL the long viewers play (default: --url).
    #[arg(long)]
    pub long_url: Option<String>,
    /// Short sessions started per second.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Persistent connections the short sessions run on.
    #[arg(long, default_value_t = 200)]
    pub connections: usize,
    /// Long viewers that play through the run.
    #[arg(long, default_value_t = 100)]
    pub long_viewers: usize,
    /// How long short sessions are started.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Process id of the edge: report its CPU time.
    #[arg(long)]
    pub edge_pid: Option<u32>,
    /// Timeout of each RTSP request, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub request_timeout: f64,
    /// Threads of the load generator's runtime. 1 runs every connection on one
    /// thread (no wake-ups across threads): the cheapest load for a latency
    /// measurement on a small machine, where the generator shares the cores with
    /// what it measures.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// How session starts are spread over each second.
    #[arg(long, value_enum, default_value_t = Pacing::Tick)]
    pub pacing: Pacing,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// How the short sessions' starts are spread over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Pacing {
    /// Each session starts at its own due time: a pacer thread with a 1 µs timer
    /// slack releases them one by one (5,000/s is one start every 200 µs). Nothing
    /// queues behind a burst, so medians are lower; a server that batches its work
    /// per wake-up batches less, so its CPU per session is higher.
    Even,
    /// Each connection sleeps on the runtime's timer until its session is due. The
    /// timer's 1 ms resolution starts every session due within one millisecond
    /// together (bursts of 5 at 5,000/s), as clients arriving at random also come
    /// in clusters. The default, and what every churn figure before `--pacing`
    /// used.
    Tick,
}

/// Most runtime threads.
const MAX_THREADS: usize = 16;

impl ChurnArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1e6) {
            bail!("--rate must be more than 0 and at most 1000000");
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            bail!("--threads must be between 1 and {MAX_THREADS}");
        }
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            bail!("--connections must be between 1 and {MAX_CONNECTIONS}");
        }
        if self.long_viewers > super::MAX_VIEWERS {
            bail!("--long-viewers must be at most {}", super::MAX_VIEWERS);
        }
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= super::MAX_SECONDS) {
            bail!(
                "--seconds must be more than 0 and at most {}",
                super::MAX_SECONDS
            );
        }
        if !(self.request_timeout.is_finite()
            && self.request_timeout > 0.0
            && self.request_timeout <= 600.0)
        {
            bail!("--request-timeout must be more than 0 and at most 600 seconds");
        }
        Ok(())
    }
}

/// What one short-session connection did.
#[derive(Debug, Default)]
struct WorkerReport {
    completed: u64,
    failed: u64,
    reconnects: u64,
    /// Scheduled start → TEARDOWN answered, per completed session, in microseconds.
    latencies_us: Vec<u32>,
    /// DESCRIBE sent → TEARDOWN answered, per completed session, in microseconds: the
    /// server's (or balancer's) time without the wait for a free connection.
    service_us: Vec<u32>,
    /// Sessions that started later than scheduled by more than a second.
    late: u64,
    first_failure: Option<String>,
}

/// Settings the short-session connections share.
struct ShortCtx {
    addr: SocketAddr,
    url: WatchedUrl,
    request_timeout: Duration,
    schedule: Schedule,
    /// The next session's number on the schedule.
    next: AtomicU64,
    completed: AtomicU64,
    /// `Pacing::Even`: one permit per session as it falls due (then one per
    /// connection past the end, so every worker learns that the run is over).
    gate: Option<Semaphore>,
}

/// Runs the benchmark and prints the report. Exit status: 0 when every session and
/// long viewer succeeded, 2 otherwise.
pub(crate) fn run(args: ChurnArgs) -> anyhow::Result<u8> {
    args.validate()?;
    let short = url::parse(&args.url).map_err(|e| anyhow!(e))?;
    let long = url::parse(args.long_url.as_deref().unwrap_or(&args.url)).map_err(|e| anyhow!(e))?;
    let resolve = |u: &WatchedUrl| -> anyhow::Result<SocketAddr> {
        u.authority()
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", u.authority()))?
            .next()
            .ok_or_else(|| anyhow!("{} resolves to no address", u.authority()))
    };
    let (short_addr, long_addr) = (resolve(&short)?, resolve(&long)?);
    let rt = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    let report = rt.block_on(run_async(&args, (short, short_addr), (long, long_addr)))?;
    print!("{}", report.to_text());
    Ok(report.exit_code())
}

async fn run_async(
    args: &ChurnArgs,
    (short_url, short_addr): (WatchedUrl, SocketAddr),
    (long_url, long_addr): (WatchedUrl, SocketAddr),
) -> anyhow::Result<ChurnReport> {
    let request_timeout = Duration::from_secs_f64(args.request_timeout);
    let (stream, _) = super::probe(&long_url, long_addr, request_timeout).await?;
    let codecs: Vec<Codec> = stream.tracks.iter().map(|t| t.codec).collect();
    let nofile = mediagate_udp::raise_nofile_limit().unwrap_or(1024);
    let needed = (args.long_viewers + args.connections + 64) as u64;
    if nofile < needed {
        bail!("the run needs about {needed} open files but the limit is {nofile}; raise it with `ulimit -n {needed}`");
    }
    let edge = args.edge_pid.map(Process::new);
    let ticks = sys::clock_ticks_per_second().unwrap_or(100);
    let edge_cpu_start = edge.as_ref().and_then(|e| e.cpu().ok());
    let me = Process::new(std::process::id());
    let my_cpu_start = me.cpu().ok();

    // Long viewers play until the short sessions are over, plus a cool-down.
    let run_start = Instant::now();
    let short_seconds = Duration::from_secs_f64(args.seconds);
    let long_ctx = Arc::new(ViewerCtx {
        addr: long_addr,
        url: long_url,
        lower: Lower::Tcp,
        codecs,
        request_timeout,
        end: run_start + WARM_UP + short_seconds + COOL_DOWN,
        teardown_grace: Duration::from_secs(2),
        setups: Semaphore::new(64),
        tcp_packets: AtomicU64::new(0),
        settled: AtomicUsize::new(0),
        playing: AtomicUsize::new(0),
    });
    let long_handles: Vec<_> = (0..args.long_viewers)
        .map(|id| {
            let ctx = long_ctx.clone();
            tokio::spawn(async move { viewer::run(ctx, id, None).await })
        })
        .collect();
    while long_ctx.settled.load(Ordering::Relaxed) < args.long_viewers
        && run_start.elapsed() < WARM_UP
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let long_playing = long_ctx.playing.load(Ordering::Relaxed);
    if !args.quiet {
        eprintln!(
            "long viewers: {long_playing}/{} playing after {:.1} s; short sessions start",
            args.long_viewers,
            run_start.elapsed().as_secs_f64()
        );
    }

    let start = Instant::now();
    let ctx = Arc::new(ShortCtx {
        addr: short_addr,
        url: short_url,
        request_timeout,
        schedule: Schedule {
            start,
            end: start + short_seconds,
            rate: args.rate,
        },
        next: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        gate: (args.pacing == Pacing::Even).then(|| Semaphore::new(0)),
    });
    let pacer = match ctx.gate {
        Some(_) => {
            let ctx = Arc::clone(&ctx);
            let workers = args.connections;
            Some(
                std::thread::Builder::new()
                    .name("churn-pacer".into())
                    .spawn(move || {
                        if let Some(gate) = &ctx.gate {
                            pace(&ctx.schedule, workers, gate);
                        }
                    })
                    .context("starting the pacer thread")?,
            )
        }
        None => None,
    };
    let end = ctx.schedule.end;
    let cpu_at_short_start = edge.as_ref().and_then(|e| e.cpu().ok());
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move { short_worker(&ctx).await })
        })
        .collect();
    let mut progress = ProgressClock::new(start, Duration::from_secs(5));
    let mut last = 0;
    while Instant::now() < end {
        tokio::time::sleep_until(progress.next.min(end)).await;
        if progress.tick(Instant::now()) {
            let done = ctx.completed.load(Ordering::Relaxed);
            if !args.quiet {
                eprintln!(
                    "t={:>5.1}s short sessions {done:>8} ({:.0}/s), long viewers playing {}",
                    start.elapsed().as_secs_f64(),
                    (done - last) as f64 / 5.0,
                    long_ctx.playing.load(Ordering::Relaxed)
                );
            }
            last = done;
        }
    }
    let mut short = WorkerReport::default();
    let deadline = end + request_timeout * 4;
    for w in workers {
        let abort = w.abort_handle();
        match tokio::time::timeout_at(deadline, w).await {
            Ok(Ok(r)) => short.merge(r),
            Ok(Err(e)) => short.note_failure(format!("a connection task failed: {e}")),
            Err(_) => {
                abort.abort();
                short.note_failure("a connection did not finish by the deadline".to_owned());
            }
        }
    }
    // The workers end on the pacer's last permits, so it has returned by now.
    if let Some(p) = pacer {
        let _ = p.join();
    }
    let short_window = start.elapsed();
    let cpu_at_short_end = edge.as_ref().and_then(|e| e.cpu().ok());

    let mut long_reports = Vec::with_capacity(long_handles.len());
    for (id, h) in long_handles.into_iter().enumerate() {
        let o = match h.await {
            Ok(o) => o,
            Err(e) => {
                let mut o = viewer::ViewerOutcome::new(id);
                o.failure = Some(viewer::Failure {
                    stage: viewer::Stage::Streaming,
                    reason: format!("the viewer task failed: {e}"),
                });
                o
            }
        };
        long_reports.push(ViewerReport::new(
            &o,
            o.tcp_tracks.as_deref().unwrap_or(&[]),
        ));
    }
    let cpu = |a: Option<crate::procfs::CpuTicks>, b: Option<crate::procfs::CpuTicks>| match (a, b)
    {
        (Some(a), Some(b)) => Some(b.since(&a, ticks)),
        _ => None,
    };
    Ok(ChurnReport {
        rate: args.rate,
        connections: args.connections,
        seconds: args.seconds,
        short_window,
        short,
        long: long_reports,
        long_playing_at_start: long_playing,
        edge_cpu_short: cpu(cpu_at_short_start, cpu_at_short_end),
        edge_cpu_total: cpu(edge_cpu_start, edge.as_ref().and_then(|e| e.cpu().ok())),
        loadgen_cpu: cpu(my_cpu_start, me.cpu().ok()),
        run_time: run_start.elapsed(),
    })
}

/// When the next progress line is due. It moves on whether or not a line is
/// printed: a quiet run that left it in the past once spun the waiting loop on a
/// whole core from the fifth second on, and every latency the benchmarks printed
/// paid for that core.
struct ProgressClock {
    next: Instant,
    every: Duration,
}

impl ProgressClock {
    fn new(start: Instant, every: Duration) -> Self {
        Self {
            next: start + every,
            every,
        }
    }

    /// Whether a line is due at `now`; if so, the next one is set after `now`.
    fn tick(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        while self.next <= now {
            self.next += self.every;
        }
        true
    }
}

/// When each short session is due: session `i` at `start + i / rate`, none at or
/// after `end`.
struct Schedule {
    start: Instant,
    end: Instant,
    rate: f64,
}

impl Schedule {
    fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many sessions from `i` on are due at `now` (all of them up to the end).
    fn due_by(&self, i: u64, now: Instant) -> u64 {
        let mut n = 0;
        while self.due(i + n) <= now && self.due(i + n) < self.end {
            n += 1;
        }
        n
    }
}

/// The pacer thread: releases each session at its due time, catching up at once
/// when it was late, then one permit per each of the `workers` past the end. The
/// thread asks for a 1 µs timer slack (the default 50 µs would smear the 200 µs
/// spacing of 5,000/s).
fn pace(schedule: &Schedule, workers: usize, gate: &Semaphore) {
    crate::sys::set_timer_slack_ns(1_000);
    let mut i = 0u64;
    while schedule.due(i) < schedule.end {
        let due = schedule.due(i);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let n = schedule.due_by(i, Instant::now()).max(1);
        gate.add_permits(usize::try_from(n).unwrap_or(usize::MAX));
        i += n;
    }
    gate.add_permits(workers);
}

/// One persistent connection running short sessions on the shared schedule until
/// the end.
async fn short_worker(ctx: &ShortCtx) -> WorkerReport {
    let mut r = WorkerReport::default();
    let mut conn: Option<Conn> = None;
    loop {
        if let Some(gate) = &ctx.gate {
            match gate.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return r,
            }
        }
        let i = ctx.next.fetch_add(1, Ordering::Relaxed);
        let due = ctx.schedule.due(i);
        if due >= ctx.schedule.end {
            return r;
        }
        if ctx.gate.is_none() {
            tokio::time::sleep_until(due).await;
        }
        if Instant::now().saturating_duration_since(due) > Duration::from_secs(1) {
            r.late += 1;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let deadline = Instant::now() + ctx.request_timeout;
                match Conn::connect(ctx.addr, ctx.url.credentials.clone(), deadline).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        r.note_failure(format!("connect: {e}"));
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        continue;
                    }
                }
            }
        };
        let began = Instant::now();
        match short_session(c, ctx).await {
            Ok(()) => {
                r.completed += 1;
                ctx.completed.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                let us = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
                r.latencies_us.push(us(now.saturating_duration_since(due)));
                r.service_us.push(us(now.saturating_duration_since(began)));
            }
            Err(e) => {
                r.note_failure(e);
                // The connection's state is unknown (a response may still come): a
                // fresh one for the next session.
                conn = None;
                r.reconnects += 1;
            }
        }
    }
}

/// DESCRIBE, SETUP of the first track over TCP interleaved, PLAY, TEARDOWN.
async fn short_session(conn: &mut Conn, ctx: &ShortCtx) -> Result<(), String> {
    let step = || Instant::now() + ctx.request_timeout;
    let mut media = CountingSink::default();
    let uri = ctx.url.request_uri.as_str();
    let fail = |what: &str, e: ConnError| format!("{what}: {e}");
    let ok = |what: &str, r: &Response| {
        if r.status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "{what}: the server answered {} {}",
                r.status, r.reason
            ))
        }
    };
    let mut req = conn.request(Method::Describe, uri);
    req.headers.append("Accept", "application/sdp");
    let r = conn
        .call(req, step(), &mut media)
        .await
        .map_err(|e| fail("DESCRIBE", e))?;
    ok("DESCRIBE", &r)?;
    let plan = plan::plan_from_describe(
        uri,
        r.headers.get("Content-Base"),
        r.headers.get("Content-Location"),
        &r.body,
    )
    .map_err(|e| format!("DESCRIBE: {e}"))?;
    let track = plan.tracks.first().ok_or("DESCRIBE: no track")?;
    let mut req = conn.request(Method::Setup, &track.control_url);
    req.headers
        .append("Transport", plan::setup_transport(Lower::Tcp, 0, 0));
    let r = conn
        .call(req, step(), &mut media)
        .await
        .map_err(|e| fail("SETUP", e))?;
    ok("SETUP", &r)?;
    let mut req = conn.request(Method::Play, &plan.aggregate_url);
    req.headers.append("Range", "npt=0.000-");
    let r = conn
        .call(req, step(), &mut media)
        .await
        .map_err(|e| fail("PLAY", e))?;
    ok("PLAY", &r)?;
    let req = conn.request(Method::Teardown, &plan.aggregate_url);
    let r = conn
        .call(req, step(), &mut media)
        .await
        .map_err(|e| fail("TEARDOWN", e))?;
    ok("TEARDOWN", &r)?;
    conn.end_session();
    Ok(())
}

impl WorkerReport {
    fn note_failure(&mut self, why: String) {
        self.failed += 1;
        self.first_failure.get_or_insert(why);
    }

    fn merge(&mut self, other: WorkerReport) {
        self.completed += other.completed;
        self.failed += other.failed;
        self.reconnects += other.reconnects;
        self.late += other.late;
        self.latencies_us.extend(other.latencies_us);
        self.service_us.extend(other.service_us);
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }
}

/// The run's figures.
#[derive(Debug)]
struct ChurnReport {
    rate: f64,
    connections: usize,
    seconds: f64,
    /// From the first short session's due time until every connection was done.
    short_window: Duration,
    short: WorkerReport,
    long: Vec<ViewerReport>,
    long_playing_at_start: usize,
    /// Edge CPU while the short sessions ran, and over the whole run.
    edge_cpu_short: Option<Duration>,
    edge_cpu_total: Option<Duration>,
    /// This process's CPU over the run (it shares the machine with the edge).
    loadgen_cpu: Option<Duration>,
    run_time: Duration,
}

impl ChurnReport {
    fn exit_code(&self) -> u8 {
        let long_ok = self.long.iter().all(|v| v.error.is_none() && v.lost == 0);
        if self.short.failed == 0 && long_ok {
            0
        } else {
            2
        }
    }

    /// `key: value` lines, one figure group each, for people and for scripts.
    fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let s = &self.short;
        let achieved = s.completed as f64 / self.short_window.as_secs_f64().max(1e-3);
        let mut lat = s.latencies_us.clone();
        lat.sort_unstable();
        let pct = |p| nearest_rank(&lat, p).map_or(0.0, |us: u32| f64::from(us) / 1000.0);
        let _ = writeln!(
            out,
            "short sessions: target {:.0}/s for {:.0} s on {} connections; completed {} ({achieved:.0}/s); failed {}; late by >1 s {}",
            self.rate, self.seconds, self.connections, s.completed, s.failed, s.late
        );
        let _ = writeln!(
            out,
            "short session time (due -> TEARDOWN answered): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            pct(50),
            pct(99),
            pct(100)
        );
        let mut service = s.service_us.clone();
        service.sort_unstable();
        let _ = writeln!(
            out,
            "short session service time (DESCRIBE sent -> TEARDOWN answered): {}",
            latency_hist::percentiles_ms(&service)
        );
        out.push_str(&latency_hist::histogram_lines(&service, "  "));
        if let Some(f) = &s.first_failure {
            let _ = writeln!(out, "first short-session failure: {f}");
        }
        let ok = self.long.iter().filter(|v| v.error.is_none()).count();
        let packets: u64 = self.long.iter().map(|v| v.packets).sum();
        let lost: u64 = self.long.iter().map(|v| v.lost).sum();
        let worst = self
            .long
            .iter()
            .max_by_key(|v| v.max_gap)
            .map(|v| (v.id, v.max_gap));
        let _ = writeln!(
            out,
            "long viewers: {ok}/{} ok ({} playing when the short sessions began); packets {packets}; lost {lost} ({:.4}%)",
            self.long.len(),
            self.long_playing_at_start,
            if packets + lost > 0 {
                100.0 * lost as f64 / (packets + lost) as f64
            } else {
                0.0
            }
        );
        if let Some((id, gap)) = worst {
            let _ = writeln!(
                out,
                "long viewers' worst gap between two packets: {:.1} ms (viewer {id})",
                millis(gap)
            );
        }
        for v in self.long.iter().filter(|v| v.error.is_some()).take(5) {
            let _ = writeln!(
                out,
                "long viewer {} failed: {}",
                v.id,
                v.error.as_deref().unwrap_or("")
            );
        }
        if let Some(cpu) = self.edge_cpu_short {
            let _ = writeln!(
                out,
                "edge CPU while the short sessions ran: {:.2} s ({:.0} us per session)",
                cpu.as_secs_f64(),
                if s.completed > 0 {
                    cpu.as_secs_f64() * 1e6 / s.completed as f64
                } else {
                    0.0
                }
            );
        }
        let secs = self.run_time.as_secs_f64();
        for (who, cpu) in [("edge", self.edge_cpu_total), ("loadgen", self.loadgen_cpu)] {
            if let Some(cpu) = cpu {
                let _ = writeln!(
                    out,
                    "{who} CPU over the run: {:.2} s in {secs:.1} s",
                    cpu.as_secs_f64()
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_plan_counts_what_is_due_and_stops_at_the_end() {
        let start = Instant::now();
        let plan = Schedule {
            start,
            end: start + Duration::from_millis(10),
            rate: 1000.0,
        };
        assert_eq!(plan.due_by(0, start), 1);
        assert_eq!(plan.due_by(0, start + Duration::from_micros(3500)), 4);
        assert_eq!(plan.due_by(4, start + Duration::from_micros(3500)), 0);
        // Sessions 0..10 fall due before the end; nothing at or after it.
        assert_eq!(plan.due_by(0, start + Duration::from_secs(1)), 10);
    }

    #[test]
    fn the_pacer_releases_every_session_at_its_time_then_one_per_worker() {
        let start = Instant::now();
        let plan = Schedule {
            start,
            end: start + Duration::from_millis(40),
            rate: 500.0,
        };
        let gate = Semaphore::new(0);
        let mut seen = Vec::new();
        std::thread::scope(|scope| {
            scope.spawn(|| pace(&plan, 3, &gate));
            // Sample the released count as the pacer runs: it must never run ahead
            // of the schedule. The count is read before the clock, so a release
            // between the two reads cannot look early.
            while Instant::now() < plan.end + Duration::from_millis(20) {
                let released = gate.available_permits();
                seen.push((Instant::now(), released));
                std::thread::sleep(Duration::from_micros(300));
            }
        });
        // Until the last session falls due (at 38 ms), the released count never runs
        // ahead of the schedule (the end permits follow the last session at once).
        for (at, released) in &seen {
            let due = usize::try_from(plan.due_by(0, *at)).unwrap();
            assert!(
                *released <= due || due == 20,
                "{released} released at {:?}, only {due} due",
                at.duration_since(start)
            );
        }
        // 40 ms at 500/s: 20 sessions, then the 3 permits that end the workers.
        assert_eq!(gate.available_permits(), 23);
    }

    #[test]
    fn the_progress_clock_always_moves_past_now() {
        let start = Instant::now();
        let every = Duration::from_secs(5);
        let mut p = ProgressClock::new(start, every);
        assert!(!p.tick(start + Duration::from_secs(4)));
        // Late by more than one period: one line, and the next time is ahead again.
        let now = start + Duration::from_secs(12);
        assert!(p.tick(now));
        assert!(p.next > now);
        assert_eq!(p.next, start + Duration::from_secs(15));
        assert!(!p.tick(now));
    }

    fn args() -> ChurnArgs {
        ChurnArgs {
            url: "rtsp://127.0.0.1:1/x".into(),
            long_url: None,
            rate: 2000.0,
            connections: 200,
            long_viewers: 100,
            seconds: 30.0,
            edge_pid: None,
            request_timeout: 10.0,
            threads: 2,
            pacing: Pacing::Even,
            quiet: true,
        }
    }

    #[test]
    fn arguments_are_bounded() {
        assert!(args().validate().is_ok());
        let bad = [
            ChurnArgs {
                rate: 0.0,
                ..args()
            },
            ChurnArgs {
                rate: f64::INFINITY,
                ..args()
            },
            ChurnArgs {
                threads: 0,
                ..args()
            },
            ChurnArgs {
                threads: MAX_THREADS + 1,
                ..args()
            },
            ChurnArgs {
                connections: 0,
                ..args()
            },
            ChurnArgs {
                connections: MAX_CONNECTIONS + 1,
                ..args()
            },
            ChurnArgs {
                seconds: -1.0,
                ..args()
            },
            ChurnArgs {
                request_timeout: 0.0,
                ..args()
            },
        ];
        for a in bad {
            assert!(a.validate().is_err(), "{a:?}");
        }
    }

    #[test]
    fn the_report_states_rate_loss_and_the_worst_gap() {
        let mut short = WorkerReport::default();
        short.merge(WorkerReport {
            completed: 3,
            latencies_us: vec![1_000, 2_000, 30_000],
            service_us: vec![900, 300, 1_500],
            ..WorkerReport::default()
        });
        short.note_failure("PLAY: the server answered 503 Service Unavailable".into());
        let o = viewer::ViewerOutcome::new(7);
        let mut long = ViewerReport::new(&o, &[]);
        long.error = None;
        long.packets = 999;
        long.lost = 1;
        long.max_gap = Duration::from_millis(120);
        let r = ChurnReport {
            rate: 2000.0,
            connections: 2,
            seconds: 1.0,
            short_window: Duration::from_secs(1),
            short,
            long: vec![long],
            long_playing_at_start: 1,
            edge_cpu_short: Some(Duration::from_millis(300)),
            edge_cpu_total: None,
            loadgen_cpu: Some(Duration::from_millis(1500)),
            run_time: Duration::from_secs(8),
        };
        let text = r.to_text();
        assert!(text.contains("completed 3 (3/s); failed 1;"), "{text}");
        assert!(
            text.contains("p50 2.0 ms, p99 30.0 ms, max 30.0 ms"),
            "{text}"
        );
        assert!(
            text.contains("(DESCRIBE sent -> TEARDOWN answered): p50 0.90 ms, p90 1.50 ms"),
            "{text}"
        );
        assert!(text.contains("      0.5-1 ms: 1 (33.33%)\n"), "{text}");
        assert!(
            text.contains("first short-session failure: PLAY: the server answered 503"),
            "{text}"
        );
        assert!(text.contains("packets 999; lost 1 (0.1000%)"), "{text}");
        assert!(
            text.contains("worst gap between two packets: 120.0 ms (viewer 7)"),
            "{text}"
        );
        assert!(text.contains("(100000 us per session)"), "{text}");
        assert!(
            text.contains("loadgen CPU over the run: 1.50 s in 8.0 s"),
            "{text}"
        );
        assert!(!text.contains("edge CPU over the run"), "{text}");
        assert_eq!(r.exit_code(), 2);
    }
}
