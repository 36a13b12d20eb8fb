//! `mediagate-loadgen hold`: many RTSP sessions set up and kept alive, to measure what
//! holding them costs a server (issue 14: 10,000 sessions through the balancer with
//! its RSS under 200 MB).
//!
//! A run: C connections each DESCRIBE once, then SETUP the first track (TCP
//! interleaved, so no media ports are taken) K times, each SETUP without `Session` so
//! it opens a new session; sessions are set up on a common schedule of `--rate` per
//! second. Once all are up (or failed), the sessions are held for `--seconds` with
//! `OPTIONS` keep-alives carrying each session's id at the interval its `timeout=`
//! asks for, while the watched processes' `VmRSS` is sampled every second. No PLAY:
//! nothing streams, so the figure is the per-session state, not media buffers.
//!
//! What it does not: TEARDOWN at the end (the connections just close, as players that
//! go away do), or check the media path.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use mediagate_rtsp::Method;
use tokio::time::Instant;

use super::conn::{Conn, ConnError, CountingSink};
use super::plan::{self, Lower};
use super::url::{self, WatchedUrl};
use crate::latency_hist;
use crate::procfs::{Memory, Process};

/// Most connections (each is a file descriptor here and two in a balancer).
const MAX_CONNECTIONS: usize = 20_000;
/// Most sessions on one connection: each asks for its own interleaved channel pair,
/// and the pairs `setup_transport` numbers are distinct up to this many.
const MAX_PER_CONNECTION: usize = 8;

/// Options of `mediagate-loadgen hold`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct HoldArgs {
    /// RTSP URL of the sessions, e.g. rtsp://127.0.0.1:8554/cam.
    #[arg(long)]
    pub url: String,
    /// Sessions to set up and hold.
    #[arg(long, default_value_t = 10_000)]
    pub sessions: usize,
    /// Sessions per RTSP connection (each a SETUP without `Session`).
    #[arg(long, default_value_t = 1)]
    pub per_connection: usize,
    /// Sessions set up per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long the sessions are held once set up.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// A process whose VmRSS is reported (the balancer, the back ends); repeat.
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Timeout of each RTSP request, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub request_timeout: f64,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl HoldArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if self.sessions == 0 {
            bail!("--sessions must be at least 1");
        }
        if self.per_connection == 0 || self.per_connection > MAX_PER_CONNECTION {
            bail!("--per-connection must be between 1 and {MAX_PER_CONNECTION}");
        }
        if self.connections() > MAX_CONNECTIONS {
            bail!("more than {MAX_CONNECTIONS} connections: raise --per-connection");
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1e6) {
            bail!("--rate must be more than 0 and at most 1000000");
        }
        if !(self.seconds.is_finite() && self.seconds >= 0.0 && self.seconds <= super::MAX_SECONDS)
        {
            bail!("--seconds must be between 0 and {}", super::MAX_SECONDS);
        }
        if !(self.request_timeout.is_finite()
            && self.request_timeout > 0.0
            && self.request_timeout <= 600.0)
        {
            bail!("--request-timeout must be more than 0 and at most 600 seconds");
        }
        Ok(())
    }

    fn connections(&self) -> usize {
        self.sessions.div_ceil(self.per_connection)
    }
}

/// Shared by the connection tasks.
struct HoldCtx {
    addr: SocketAddr,
    url: WatchedUrl,
    request_timeout: Duration,
    start: Instant,
    rate: f64,
    /// Set once every connection has finished setting up: the end of the hold.
    hold_until: tokio::sync::watch::Receiver<Option<Instant>>,
    /// Sessions set up so far, and connections done setting up.
    up: AtomicU64,
    settled: AtomicU64,
}

/// What one connection did.
#[derive(Debug, Default)]
struct ConnReport {
    up: u64,
    failed: u64,
    /// SETUP sent → answered, microseconds.
    setup_us: Vec<u32>,
    /// Sessions still held (connection open) when the hold ended.
    held_to_end: u64,
    keepalives: u64,
    keepalive_failures: u64,
    first_failure: Option<String>,
}

/// Runs the benchmark and prints the report. Exit status: 0 when every session was
/// set up and held to the end, 2 otherwise.
pub(crate) fn run(args: HoldArgs) -> anyhow::Result<u8> {
    args.validate()?;
    let url = url::parse(&args.url).map_err(|e| anyhow!(e))?;
    let addr = url
        .authority()
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", url.authority()))?
        .next()
        .ok_or_else(|| anyhow!("{} resolves to no address", url.authority()))?;
    let nofile = mediagate_udp::raise_nofile_limit().unwrap_or(1024);
    let needed = (args.connections() + 64) as u64;
    if nofile < needed {
        bail!("the run needs about {needed} open files but the limit is {nofile}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let text = rt.block_on(run_async(&args, url, addr));
    print!("{text}");
    Ok(if text.contains("\nresult: ok\n") {
        0
    } else {
        2
    })
}

fn memories(procs: &[Process]) -> Vec<Option<Memory>> {
    procs.iter().map(|p| p.memory().ok()).collect()
}

async fn run_async(args: &HoldArgs, url: WatchedUrl, addr: SocketAddr) -> String {
    use std::fmt::Write as _;
    let procs: Vec<Process> = args.pids.iter().map(|&p| Process::new(p)).collect();
    let before = memories(&procs);
    let (set_hold, hold_until) = tokio::sync::watch::channel(None);
    let ctx = Arc::new(HoldCtx {
        addr,
        url,
        request_timeout: Duration::from_secs_f64(args.request_timeout),
        start: Instant::now(),
        rate: args.rate,
        hold_until,
        up: AtomicU64::new(0),
        settled: AtomicU64::new(0),
    });
    let conns = args.connections();
    let handles: Vec<_> = (0..conns)
        .map(|i| {
            let first = i * args.per_connection;
            let n = args.per_connection.min(args.sessions - first);
            let ctx = ctx.clone();
            tokio::spawn(async move { hold_connection(&ctx, first, n).await })
        })
        .collect();
    // Set-up phase: until every connection is done with its SETUPs.
    let mut next_progress = Instant::now() + Duration::from_secs(2);
    while ctx.settled.load(Ordering::Relaxed) < conns as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if Instant::now() >= next_progress && !args.quiet {
            eprintln!(
                "t={:>5.1}s sessions up {}",
                ctx.start.elapsed().as_secs_f64(),
                ctx.up.load(Ordering::Relaxed)
            );
            next_progress += Duration::from_secs(2);
        }
    }
    let setup_time = ctx.start.elapsed();
    let up_at_start = ctx.up.load(Ordering::Relaxed);
    let hold_end = Instant::now() + Duration::from_secs_f64(args.seconds);
    let _ = set_hold.send(Some(hold_end));
    let after_setup = memories(&procs);
    let mut max_rss: Vec<u64> = after_setup
        .iter()
        .map(|m| m.map_or(0, |m| m.rss_kib))
        .collect();
    while Instant::now() < hold_end {
        tokio::time::sleep_until((Instant::now() + Duration::from_secs(1)).min(hold_end)).await;
        for (i, m) in memories(&procs).iter().enumerate() {
            if let Some(m) = m {
                max_rss[i] = max_rss[i].max(m.rss_kib);
            }
        }
    }
    let at_end = memories(&procs);
    let mut r = ConnReport::default();
    for h in handles {
        match h.await {
            Ok(c) => r.merge(c),
            Err(e) => r.note_failure(format!("a connection task failed: {e}")),
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "sessions: {} asked on {conns} connections ({} per connection) at {:.0}/s; set up {up_at_start} in {:.1} s; failed {}",
        args.sessions,
        args.per_connection,
        args.rate,
        setup_time.as_secs_f64(),
        r.failed
    );
    r.setup_us.sort_unstable();
    let _ = writeln!(
        out,
        "SETUP time: {}",
        latency_hist::percentiles_ms(&r.setup_us)
    );
    let _ = writeln!(
        out,
        "held {:.0} s: {} sessions still up at the end; keep-alives {} ({} not answered 2xx)",
        args.seconds, r.held_to_end, r.keepalives, r.keepalive_failures
    );
    if let Some(f) = &r.first_failure {
        let _ = writeln!(out, "first failure: {f}");
    }
    let mib = |k: u64| k as f64 / 1024.0;
    for (i, p) in procs.iter().enumerate() {
        let (Some(b), Some(a), Some(e)) = (before[i], after_setup[i], at_end[i]) else {
            let _ = writeln!(
                out,
                "pid {}: could not read /proc/{}/status",
                p.pid(),
                p.pid()
            );
            continue;
        };
        let per = if up_at_start > 0 {
            (a.rss_kib.saturating_sub(b.rss_kib)) as f64 * 1024.0 / up_at_start as f64
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "pid {}: VmRSS {:.1} MiB before, {:.1} MiB with the sessions up ({per:.0} bytes per session), {:.1} MiB at the end, highest sampled {:.1} MiB; VmHWM {:.1} MiB",
            p.pid(),
            mib(b.rss_kib),
            mib(a.rss_kib),
            mib(e.rss_kib),
            mib(max_rss[i]),
            mib(e.peak_rss_kib)
        );
    }
    let ok = r.failed == 0 && r.held_to_end == args.sessions as u64 && r.keepalive_failures == 0;
    let _ = writeln!(out, "result: {}", if ok { "ok" } else { "incomplete" });
    out
}

/// One connection: DESCRIBE, `n` SETUPs (sessions `first..first + n` of the
/// schedule), then keep-alives until the hold ends.
async fn hold_connection(ctx: &HoldCtx, first: usize, n: usize) -> ConnReport {
    let mut r = ConnReport::default();
    let sessions = setup_sessions(ctx, first, n, &mut r).await;
    ctx.settled.fetch_add(1, Ordering::Relaxed);
    let Some((mut conn, sessions)) = sessions else {
        return r;
    };
    let mut hold_until = ctx.hold_until.clone();
    let end = match hold_until.wait_for(Option::is_some).await {
        Ok(v) => v.unwrap_or_else(Instant::now),
        Err(_) => Instant::now(),
    };
    let mut sink = CountingSink::default();
    // One keep-alive per session per interval, spread over the interval.
    let interval = sessions
        .iter()
        .map(|(_, i)| *i)
        .min()
        .unwrap_or(Duration::from_secs(30));
    let mut next = Instant::now() + interval;
    loop {
        let until = next.min(end);
        if let Err(e) = conn.pump_until(until, &mut sink).await {
            r.note_failure(format!("while holding: {e}"));
            r.keepalive_failures += conn.late_failures();
            return r;
        }
        if Instant::now() >= end {
            break;
        }
        for (id, _) in &sessions {
            let mut req = conn.request(Method::Options, ctx.url.request_uri.as_str());
            req.headers.append("Session", id.as_str());
            if let Err(e) = conn.send(req).await {
                r.note_failure(format!("keep-alive: {e}"));
                return r;
            }
            r.keepalives += 1;
        }
        next += interval;
    }
    // The last keep-alives' answers.
    let _ = conn
        .pump_until(Instant::now() + Duration::from_millis(200), &mut sink)
        .await;
    r.keepalive_failures += conn.late_failures();
    r.held_to_end = sessions.len() as u64;
    r
}

/// DESCRIBE and the SETUPs; the connection and each session's id and keep-alive
/// interval, or `None` when the connection failed (sessions not set up count as
/// failed).
async fn setup_sessions(
    ctx: &HoldCtx,
    first: usize,
    n: usize,
    r: &mut ConnReport,
) -> Option<(Conn, Vec<(String, Duration)>)> {
    let fail_rest = |r: &mut ConnReport, done: usize, why: String| {
        r.failed += (n - done) as u64;
        r.first_failure.get_or_insert(why);
    };
    let due = |k: usize| ctx.start + Duration::from_secs_f64((first + k) as f64 / ctx.rate);
    tokio::time::sleep_until(due(0)).await;
    let step = || Instant::now() + ctx.request_timeout;
    let mut conn = match Conn::connect(ctx.addr, ctx.url.credentials.clone(), step()).await {
        Ok(c) => c,
        Err(e) => {
            fail_rest(r, 0, format!("connect: {e}"));
            return None;
        }
    };
    let mut sink = CountingSink::default();
    let uri = ctx.url.request_uri.as_str();
    let mut req = conn.request(Method::Describe, uri);
    req.headers.append("Accept", "application/sdp");
    let plan = match conn.call(req, step(), &mut sink).await {
        Ok(resp) if resp.status.is_success() => plan::plan_from_describe(
            uri,
            resp.headers.get("Content-Base"),
            resp.headers.get("Content-Location"),
            &resp.body,
        ),
        Ok(resp) => Err(format!("answered {} {}", resp.status, resp.reason)),
        Err(e) => Err(e.to_string()),
    };
    let track = match plan {
        Ok(p) => match p.tracks.into_iter().next() {
            Some(t) => t,
            None => {
                fail_rest(r, 0, "DESCRIBE: no track".into());
                return None;
            }
        },
        Err(e) => {
            fail_rest(r, 0, format!("DESCRIBE: {e}"));
            return None;
        }
    };
    let mut sessions = Vec::with_capacity(n);
    for k in 0..n {
        tokio::time::sleep_until(due(k)).await;
        let mut req = conn.request(Method::Setup, &track.control_url);
        req.headers
            .append("Transport", plan::setup_transport(Lower::Tcp, k, 0));
        let sent = Instant::now();
        let answer = conn.call(req, step(), &mut sink).await;
        let session = match answer {
            Ok(resp) if resp.status.is_success() => resp
                .headers
                .get("Session")
                .ok_or_else(|| "SETUP: no Session in the answer".to_owned())
                .and_then(plan::session_and_keepalive),
            Ok(resp) => Err(format!(
                "SETUP: the server answered {} {}",
                resp.status, resp.reason
            )),
            Err(e @ (ConnError::Closed | ConnError::Io(_) | ConnError::Timeout)) => {
                fail_rest(r, k, format!("SETUP: {e}"));
                return None;
            }
            Err(e) => Err(format!("SETUP: {e}")),
        };
        match session {
            Ok(s) => {
                r.setup_us
                    .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                r.up += 1;
                ctx.up.fetch_add(1, Ordering::Relaxed);
                sessions.push(s);
                // The next SETUP opens another session, not a second stream of this one.
                conn.end_session();
            }
            Err(why) => r.note_failure(why),
        }
    }
    if sessions.is_empty() {
        return None;
    }
    Some((conn, sessions))
}

impl ConnReport {
    fn note_failure(&mut self, why: String) {
        self.failed += 1;
        self.first_failure.get_or_insert(why);
    }

    fn merge(&mut self, o: ConnReport) {
        self.up += o.up;
        self.failed += o.failed;
        self.setup_us.extend(o.setup_us);
        self.held_to_end += o.held_to_end;
        self.keepalives += o.keepalives;
        self.keepalive_failures += o.keepalive_failures;
        if self.first_failure.is_none() {
            self.first_failure = o.first_failure;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> HoldArgs {
        HoldArgs {
            url: "rtsp://127.0.0.1:1/x".into(),
            sessions: 10_000,
            per_connection: 2,
            rate: 1000.0,
            seconds: 30.0,
            pids: vec![],
            request_timeout: 10.0,
            quiet: true,
        }
    }

    #[test]
    fn arguments_are_bounded_and_connections_round_up() {
        assert!(args().validate().is_ok());
        assert_eq!(args().connections(), 5_000);
        assert_eq!(
            HoldArgs {
                sessions: 7,
                ..args()
            }
            .connections(),
            4
        );
        let bad = [
            HoldArgs {
                sessions: 0,
                ..args()
            },
            HoldArgs {
                per_connection: 0,
                ..args()
            },
            HoldArgs {
                per_connection: MAX_PER_CONNECTION + 1,
                ..args()
            },
            HoldArgs {
                sessions: MAX_CONNECTIONS + 1,
                per_connection: 1,
                ..args()
            },
            HoldArgs {
                rate: 0.0,
                ..args()
            },
            HoldArgs {
                seconds: f64::NAN,
                ..args()
            },
        ];
        for a in bad {
            assert!(a.validate().is_err(), "{a:?}");
        }
    }
}
