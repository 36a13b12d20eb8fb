//! `mediagate-loadgen fanout`: N simulated RTSP viewers of one URL for T seconds, the
//! benchmark of the edge's live splitting (issue 3, item 10).
//!
//! A run: one probe session (OPTIONS, DESCRIBE) learns the tracks and our local
//! address; for UDP runs every viewer's RTP/RTCP port pairs are bound up front and a
//! few receiver threads start draining them; then N viewer tasks connect (all at once,
//! at most `--max-setups` in flight, or at `--ramp-per-sec`), play until the common
//! end, and tear down. Everything is bounded: every request has a timeout, the run
//! has a hard deadline after which unfinished viewers are abandoned and reported.
//!
//! What it measures and how is in [`report`]; the edge's CPU and memory come from
//! `/proc` ([`crate::procfs`]) sampled at the start, when every viewer has settled
//! (the steady window) and at the end of playing.
//!
//! What it does not: RTSP-over-HTTP tunnelling, RTCP receiver reports, or decoding
//! media (keyframes are recognised from RTP payload headers only).

pub(crate) mod churn;
mod conn;
pub(crate) mod hits;
pub(crate) mod hold;
mod plan;
mod report;
mod url;
mod viewer;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use mediagate_rtsp::Method;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::procfs::{CpuTicks, Process};
use crate::sys;
use crate::track_stats::Codec;
use crate::viewer_udp::{Receivers, ViewerPorts};
use conn::{Conn, CountingSink};
use plan::{Lower, StreamPlan};
use report::{ProcessUsage, RunInfo, RunReport, Steady, ViewerReport};
use viewer::{Failure, Stage, ViewerCtx, ViewerOutcome};

/// Most viewers one run may simulate.
pub(crate) const MAX_VIEWERS: usize = 10_000;
/// Longest run.
pub(crate) const MAX_SECONDS: f64 = 24.0 * 3600.0;
/// TEARDOWN may take this long after the end.
const TEARDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long after every viewer has settled the steady window starts.
const SETTLE: Duration = Duration::from_secs(1);

/// Media transport for the viewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TransportArg {
    /// RTP/AVP unicast to a UDP port pair per viewer and track.
    Udp,
    /// RTP/AVP/TCP interleaved on each viewer's RTSP connection.
    Tcp,
}

/// Options of `mediagate-loadgen fanout`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FanoutArgs {
    /// RTSP URL every viewer plays, e.g. rtsp://127.0.0.1:8554/cam (user:password@
    /// allowed; Basic and Digest are answered).
    #[arg(long)]
    pub url: String,
    /// Number of viewers (each its own RTSP connection).
    #[arg(long, default_value_t = 10)]
    pub viewers: usize,
    /// How long viewers play, counted from the start of the run.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// How media reaches the viewers.
    #[arg(long, value_enum, default_value_t = TransportArg::Udp)]
    pub transport: TransportArg,
    /// Process id of the edge: report its CPU time (from /proc/PID/stat) and peak RSS
    /// (VmHWM from /proc/PID/status).
    #[arg(long)]
    pub edge_pid: Option<u32>,
    /// Start this many viewers per second instead of all at once.
    #[arg(long)]
    pub ramp_per_sec: Option<f64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// In the table, list every viewer (by default only interesting ones past 50).
    #[arg(long)]
    pub all_viewers: bool,
    /// Sessions being set up at the same time, at most.
    #[arg(long, default_value_t = 64)]
    pub max_setups: usize,
    /// Timeout of each RTSP request, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub request_timeout: f64,
    #[command(flatten)]
    pub rx: crate::udp_rx::RxArgs,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl FanoutArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if self.viewers == 0 || self.viewers > MAX_VIEWERS {
            bail!("--viewers must be between 1 and {MAX_VIEWERS}");
        }
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= MAX_SECONDS) {
            bail!("--seconds must be more than 0 and at most {MAX_SECONDS}");
        }
        if let Some(r) = self.ramp_per_sec {
            if !(r.is_finite() && r > 0.0) {
                bail!("--ramp-per-sec must be a positive number");
            }
        }
        if !(self.request_timeout.is_finite()
            && self.request_timeout > 0.0
            && self.request_timeout <= 600.0)
        {
            bail!("--request-timeout must be more than 0 and at most 600 seconds");
        }
        if self.max_setups == 0 {
            bail!("--max-setups must be at least 1");
        }
        Ok(())
    }
}

/// Runs the benchmark and prints the report. Returns the exit status: 0 when every
/// viewer played, 2 when some failed.
pub(crate) fn run(args: FanoutArgs) -> anyhow::Result<u8> {
    args.validate()?;
    let url = url::parse(&args.url).map_err(|e| anyhow!(e))?;
    let addr = url
        .authority()
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", url.authority()))?
        .next()
        .ok_or_else(|| anyhow!("{} resolves to no address", url.authority()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = rt.block_on(run_async(&args, url, addr))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text(args.all_viewers));
    }
    Ok(report.exit_code())
}

/// The first session: checks the URL works and learns the tracks and our address.
async fn probe(
    url: &url::WatchedUrl,
    addr: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<(StreamPlan, SocketAddr)> {
    let deadline = || Instant::now() + timeout;
    let what = |step: &str| format!("probe {step} {} failed", url.request_uri);
    let mut conn = Conn::connect(addr, url.credentials.clone(), deadline())
        .await
        .map_err(|e| anyhow!("{}: {e}", what("connection to")))?;
    let mut noise = CountingSink::default();
    let r = conn
        .call(
            conn.request(Method::Options, &url.request_uri),
            deadline(),
            &mut noise,
        )
        .await
        .map_err(|e| anyhow!("{}: {e}", what("OPTIONS of")))?;
    if !r.status.is_success() {
        bail!(
            "{}: the server answered {} {}",
            what("OPTIONS of"),
            r.status,
            r.reason
        );
    }
    let mut req = conn.request(Method::Describe, &url.request_uri);
    req.headers.append("Accept", "application/sdp");
    let r = conn
        .call(req, deadline(), &mut noise)
        .await
        .map_err(|e| anyhow!("{}: {e}", what("DESCRIBE of")))?;
    if !r.status.is_success() {
        bail!(
            "{}: the server answered {} {}",
            what("DESCRIBE of"),
            r.status,
            r.reason
        );
    }
    let plan = plan::plan_from_describe(
        &url.request_uri,
        r.headers.get("Content-Base"),
        r.headers.get("Content-Location"),
        &r.body,
    )
    .map_err(|e| anyhow!("{}: {e}", what("DESCRIBE of")))?;
    let local = conn.local_addr().map_err(|e| anyhow!("{e}"))?;
    Ok((plan, local))
}

/// CPU samples of the watched processes at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    edge: Option<CpuTicks>,
    me: Option<CpuTicks>,
    packets: u64,
}

async fn run_async(
    args: &FanoutArgs,
    url: url::WatchedUrl,
    addr: SocketAddr,
) -> anyhow::Result<RunReport> {
    let request_timeout = Duration::from_secs_f64(args.request_timeout);
    let lower = match args.transport {
        TransportArg::Udp => Lower::Udp,
        TransportArg::Tcp => Lower::Tcp,
    };
    let (stream, local) = probe(&url, addr, request_timeout).await?;
    let codecs: Vec<Codec> = stream.tracks.iter().map(|t| t.codec).collect();
    if !args.quiet {
        eprintln!(
            "probe: {} has {} track(s): {}",
            url.request_uri,
            codecs.len(),
            stream.describe_tracks()
        );
    }

    let Prepared {
        edge,
        me,
        ticks,
        start,
        end,
        hard_deadline,
        udp_packets,
        receivers,
        udp_ports,
        our_ports,
    } = prepare(
        args.viewers,
        args.edge_pid,
        args.seconds,
        &args.rx,
        lower,
        local,
        &codecs,
    )?;

    let ctx = Arc::new(ViewerCtx {
        addr,
        url,
        lower,
        codecs: codecs.clone(),
        request_timeout,
        end,
        teardown_grace: TEARDOWN_GRACE,
        setups: Semaphore::new(args.max_setups),
        tcp_packets: AtomicU64::new(0),
        settled: AtomicUsize::new(0),
        playing: AtomicUsize::new(0),
    });
    let packets = {
        let udp = udp_packets.clone();
        let ctx = ctx.clone();
        move || udp.load(Ordering::Relaxed) + ctx.tcp_packets.load(Ordering::Relaxed)
    };
    let sample = |at: Instant| Sample {
        at,
        edge: edge.as_ref().and_then(|e| e.cpu().ok()),
        me: me.cpu().ok(),
        packets: packets(),
    };
    let first = sample(start);

    let mut handles = Vec::with_capacity(args.viewers);
    for id in 0..args.viewers {
        let ctx = ctx.clone();
        let ports = udp_ports.as_ref().and_then(|p| p.get(id).cloned());
        let at = args
            .ramp_per_sec
            .map(|r| start + Duration::from_secs_f64(id as f64 / r))
            .unwrap_or(start);
        handles.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.min(ctx.end)).await;
            viewer::run(ctx, id, ports).await
        }));
    }

    // Watch the run: progress, the steady window's start, the end sample. It ends at
    // the end time, or earlier when every viewer has already given up.
    let mut steady_from: Option<Sample> = None;
    let mut all_settled_at: Option<Instant> = None;
    let mut next_progress = start + Duration::from_secs(5);
    let mut last_progress = first;
    loop {
        let now = Instant::now();
        if now >= end || handles.iter().all(|h| h.is_finished()) {
            break;
        }
        if all_settled_at.is_none() && ctx.settled.load(Ordering::Relaxed) >= args.viewers {
            all_settled_at = Some(now);
        }
        if steady_from.is_none() && all_settled_at.is_some_and(|t| now >= t + SETTLE) {
            steady_from = Some(sample(now));
        }
        if now >= next_progress && !args.quiet {
            let s = sample(now);
            let dt =
                s.at.duration_since(last_progress.at)
                    .as_secs_f64()
                    .max(1e-3);
            eprintln!(
                "t={:>5.1}s playing {:>5}/{} packets {:>10} ({:.0}/s)",
                now.duration_since(start).as_secs_f64(),
                ctx.playing.load(Ordering::Relaxed),
                args.viewers,
                s.packets,
                s.packets.saturating_sub(last_progress.packets) as f64 / dt
            );
            last_progress = s;
            next_progress += Duration::from_secs(5);
        }
        tokio::time::sleep_until((now + Duration::from_millis(100)).min(end)).await;
    }
    let last = sample(Instant::now());
    let info = RunInfo {
        url: ctx.url.request_uri.clone(),
        transport: lower.name(),
        viewers: args.viewers,
        seconds: args.seconds,
        ramp_per_sec: args.ramp_per_sec,
        tracks: stream.describe_tracks(),
    };
    let run = Run {
        start,
        first,
        steady_from,
        last,
        ticks,
        edge: edge.as_ref(),
        me: &me,
    };
    run.finish(info, handles, hard_deadline, receivers, our_ports)
        .await
}

/// What a run's watch loop saw, for [`Run::finish`].
struct Run<'a> {
    start: Instant,
    first: Sample,
    steady_from: Option<Sample>,
    last: Sample,
    ticks: u64,
    edge: Option<&'a Process>,
    me: &'a Process,
}

impl Run<'_> {
    /// Collects the viewers' outcomes (each by `hard_deadline`), the UDP receivers'
    /// counts and the processes' CPU into the run's report.
    async fn finish(
        self,
        info: RunInfo,
        handles: Vec<tokio::task::JoinHandle<ViewerOutcome>>,
        hard_deadline: Instant,
        receivers: Option<Receivers>,
        our_ports: Option<std::collections::HashSet<u16>>,
    ) -> anyhow::Result<RunReport> {
        let Run {
            start,
            first,
            steady_from,
            last,
            ticks,
            edge,
            me,
        } = self;
        let socket_drops = our_ports.as_ref().map(|p| me.udp_drops(p));
        if let Some(rx) = &receivers {
            rx.stop();
        }

        let mut outcomes = Vec::with_capacity(handles.len());
        for (id, h) in handles.into_iter().enumerate() {
            let abort = h.abort_handle();
            let o = match tokio::time::timeout_at(hard_deadline, h).await {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => abandoned(id, format!("the viewer task failed: {e}")),
                Err(_) => {
                    abort.abort();
                    abandoned(id, "did not finish by the run's deadline".to_owned())
                }
            };
            outcomes.push(o);
        }
        let received = match receivers {
            Some(rx) => Some(
                tokio::task::spawn_blocking(move || rx.finish())
                    .await
                    .context("receiver threads")??,
            ),
            None => None,
        };

        let window = last.at.duration_since(start);
        let cpu = |a: Option<CpuTicks>, b: Option<CpuTicks>| match (a, b) {
            (Some(a), Some(b)) => b.since(&a, ticks),
            _ => Duration::ZERO,
        };
        let steady = |pick: fn(&Sample) -> Option<CpuTicks>| {
            steady_from
                .filter(|s| last.at.duration_since(s.at) >= Duration::from_secs(1))
                .map(|s| Steady {
                    cpu: cpu(pick(&s), pick(&last)),
                    packets: last.packets.saturating_sub(s.packets),
                    window: last.at.duration_since(s.at),
                })
        };
        let edge_usage = edge.map(|e| ProcessUsage {
            pid: e.pid(),
            cpu: cpu(first.edge, last.edge),
            peak_rss_kib: e.memory().ok().map(|m| m.peak_rss_kib),
            steady: steady(|s| s.edge),
        });
        let loadgen = ProcessUsage {
            pid: me.pid(),
            cpu: cpu(first.me, last.me),
            peak_rss_kib: me.memory().ok().map(|m| m.peak_rss_kib),
            steady: steady(|s| s.me),
        };
        let viewers = outcomes
            .iter()
            .map(|o| {
                let udp = received.as_ref().and_then(|r| r.viewers.get(o.id));
                let tracks = o
                    .tcp_tracks
                    .as_deref()
                    .or(udp.map(Vec::as_slice))
                    .unwrap_or(&[]);
                ViewerReport::new(o, tracks)
            })
            .collect();
        Ok(RunReport {
            info,
            viewers,
            window,
            edge: edge_usage,
            loadgen,
            socket_drops,
            truncated: received.as_ref().map(|r| r.drain.truncated),
        })
    }
}

fn abandoned(id: usize, reason: String) -> ViewerOutcome {
    let mut o = ViewerOutcome::new(id);
    o.failure = Some(Failure {
        stage: Stage::Streaming,
        reason,
    });
    o
}

/// What a run has ready before its viewers start (`fanout` and `hits` alike).
struct Prepared {
    edge: Option<Process>,
    me: Process,
    ticks: u64,
    start: Instant,
    end: Instant,
    hard_deadline: Instant,
    udp_packets: Arc<AtomicU64>,
    receivers: Option<Receivers>,
    udp_ports: Option<Vec<Vec<u16>>>,
    our_ports: Option<std::collections::HashSet<u16>>,
}

/// Checks the open-file limit for `viewers`, starts watching the edge's and this
/// process's CPU, fixes the run's clock and, for UDP viewers, binds their ports and
/// starts the receiver threads.
fn prepare(
    viewers: usize,
    edge_pid: Option<u32>,
    seconds: f64,
    rx: &crate::udp_rx::RxArgs,
    lower: Lower,
    local: std::net::SocketAddr,
    codecs: &[Codec],
) -> anyhow::Result<Prepared> {
    let nofile = mediagate_udp::raise_nofile_limit().unwrap_or(1024);
    let per_viewer = 1 + if lower == Lower::Udp {
        2 * codecs.len()
    } else {
        0
    };
    let needed = (viewers * per_viewer + 64) as u64;
    if nofile < needed {
        bail!(
            "{} viewers need about {needed} open files but the limit is {nofile}; \
             raise it with `ulimit -n {needed}`",
            viewers
        );
    }

    let edge = edge_pid.map(Process::new);
    let me = Process::new(std::process::id());
    let ticks = sys::clock_ticks_per_second().unwrap_or(100);
    if let Some(e) = &edge {
        e.cpu()
            .with_context(|| format!("cannot watch the edge (pid {})", e.pid()))?;
    }

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let hard_deadline = end + TEARDOWN_GRACE + Duration::from_secs(2);
    let udp_packets = Arc::new(AtomicU64::new(0));
    let (receivers, udp_ports, our_ports) = if lower == Lower::Udp {
        let ports = ViewerPorts::bind(local.ip(), viewers, codecs.len(), rx.rcvbuf)
            .context("cannot bind UDP ports for the viewers")?;
        let rtp_ports = ports.rtp_ports()?;
        let all = ports.all_ports()?;
        let rx = Receivers::spawn(
            ports,
            codecs,
            rx.rx_threads,
            Duration::from_micros(rx.rx_coalesce_us),
            (end + Duration::from_secs(1)).into_std(),
            udp_packets.clone(),
        )
        .context("cannot start the UDP receiver threads")?;
        (Some(rx), Some(rtp_ports), Some(all))
    } else {
        (None, None, None)
    };
    Ok(Prepared {
        edge,
        me,
        ticks,
        start,
        end,
        hard_deadline,
        udp_packets,
        receivers,
        udp_ports,
        our_ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> FanoutArgs {
        FanoutArgs {
            url: "rtsp://127.0.0.1:1/x".into(),
            viewers: 1,
            seconds: 1.0,
            transport: TransportArg::Udp,
            edge_pid: None,
            ramp_per_sec: None,
            json: false,
            all_viewers: false,
            max_setups: 64,
            request_timeout: 1.0,
            rx: crate::udp_rx::RxArgs {
                rx_threads: 1,
                rcvbuf: 1 << 16,
                rx_coalesce_us: 0,
            },
            quiet: true,
        }
    }

    #[test]
    fn arguments_are_bounded() {
        assert!(args().validate().is_ok());
        let bad = [
            FanoutArgs {
                viewers: 0,
                ..args()
            },
            FanoutArgs {
                viewers: MAX_VIEWERS + 1,
                ..args()
            },
            FanoutArgs {
                seconds: 0.0,
                ..args()
            },
            FanoutArgs {
                seconds: f64::NAN,
                ..args()
            },
            FanoutArgs {
                ramp_per_sec: Some(-1.0),
                ..args()
            },
            FanoutArgs {
                request_timeout: 0.0,
                ..args()
            },
            FanoutArgs {
                max_setups: 0,
                ..args()
            },
        ];
        for a in bad {
            assert!(a.validate().is_err(), "{a:?}");
        }
    }

    #[test]
    fn a_refused_probe_is_a_clear_error() {
        // Port 1 on loopback: nothing listens there.
        let err = run(args()).unwrap_err().to_string();
        assert!(
            err.starts_with("probe connection to rtsp://127.0.0.1:1/x failed"),
            "{err}"
        );
    }
}
