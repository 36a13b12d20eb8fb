//! `mediagate-loadgen hits`: N RTSP viewers of on-demand clips spread over K URLs, the
//! benchmark of the edge's cache hits (issue 13, Performance).
//!
//! Viewer `i` plays URL `i mod K` from its start, over UDP or TCP, with the same viewer
//! as `fanout` (OPTIONS, DESCRIBE, SETUP per track, PLAY, keep-alives, TEARDOWN), so the
//! figures are measured the same way: loss is counted from sequence-number gaps per
//! track, time to first keyframe from PLAY sent to the first packet that starts a
//! keyframe, the edge's CPU from `/proc/PID/stat` over the whole run and over the steady
//! window once every viewer has settled. On top of `fanout`'s report it prints the
//! first-keyframe p99 and the viewers and packets per URL.
//!
//! What it does not: check that the viewers were served from the cache (the edge's
//! access log and `mediagate_edge_cache_*` metrics say so), fill the cache (the bench
//! script plays each clip once first), or seek.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::plan::Lower;
use super::report::{RunInfo, RunReport, ViewerReport};
use super::viewer::{self, ViewerCtx};
use super::{prepare, url, Prepared, TEARDOWN_GRACE};
use super::{probe, Run, Sample, TransportArg, MAX_SECONDS, MAX_VIEWERS, SETTLE};
use crate::stats::{millis, nearest_rank};
use crate::track_stats::Codec;

/// Most URLs one run spreads its viewers over.
const MAX_URLS: usize = 1_000;

/// Options of `mediagate-loadgen hits`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct HitsArgs {
    /// An on-demand RTSP URL; repeat for K clips (viewer i plays URL i mod K). Every
    /// URL must have the same tracks.
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// Number of viewers (each its own RTSP connection).
    #[arg(long, default_value_t = 10)]
    pub viewers: usize,
    /// How long viewers play, counted from the start of the run.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// How media reaches the viewers.
    #[arg(long, value_enum, default_value_t = TransportArg::Udp)]
    pub transport: TransportArg,
    /// Process id of the edge: report its CPU time and peak RSS.
    #[arg(long)]
    pub edge_pid: Option<u32>,
    /// Start this many viewers per second instead of all at once.
    #[arg(long)]
    pub ramp_per_sec: Option<f64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
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

impl HitsArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if self.urls.is_empty() || self.urls.len() > MAX_URLS {
            bail!("give between 1 and {MAX_URLS} --url");
        }
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

/// Which URL viewer `id` of a run over `k` URLs plays.
fn url_of(id: usize, k: usize) -> usize {
    id % k.max(1)
}

/// Runs the benchmark and prints the report; the exit status as `fanout`'s.
pub(crate) fn run(args: HitsArgs) -> anyhow::Result<u8> {
    args.validate()?;
    let urls = args
        .urls
        .iter()
        .map(|u| url::parse(u).map_err(|e| anyhow!(e)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let authority = urls[0].authority();
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .ok_or_else(|| anyhow!("{authority} resolves to no address"))?;
    if let Some(other) = urls.iter().find(|u| u.authority() != authority) {
        bail!(
            "every --url must name the same server ({authority}), not {}",
            other.authority()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (report, per_url) = rt.block_on(run_async(&args, urls, addr))?;
    let extra = Extra::of(&report, &per_url);
    if args.json {
        let mut v = report.to_json();
        v["hits"] = extra.to_json();
        println!("{v}");
    } else {
        print!("{}", extra.to_text());
        print!("{}", report.to_text(false));
    }
    Ok(report.exit_code())
}

/// What `hits` adds to `fanout`'s report.
#[derive(Debug, Clone, PartialEq)]
struct Extra {
    /// PLAY sent → first keyframe: p50, p95, p99, max.
    first_keyframe: Option<[Duration; 4]>,
    /// Per URL: (url, viewers, viewers that played without error, packets, lost).
    per_url: Vec<(String, usize, usize, u64, u64)>,
}

impl Extra {
    fn of(report: &RunReport, per_url: &[(String, Vec<usize>)]) -> Extra {
        let mut kf: Vec<Duration> = report
            .viewers
            .iter()
            .filter_map(|v| v.first_keyframe)
            .collect();
        kf.sort_unstable();
        let first_keyframe = match (
            nearest_rank(&kf, 50),
            nearest_rank(&kf, 95),
            nearest_rank(&kf, 99),
            kf.last(),
        ) {
            (Some(a), Some(b), Some(c), Some(&d)) => Some([a, b, c, d]),
            _ => None,
        };
        let per_url = per_url
            .iter()
            .map(|(u, ids)| {
                let vs: Vec<&ViewerReport> =
                    ids.iter().filter_map(|&i| report.viewers.get(i)).collect();
                (
                    u.clone(),
                    vs.len(),
                    vs.iter().filter(|v| v.error.is_none()).count(),
                    vs.iter().map(|v| v.packets).sum(),
                    vs.iter().map(|v| v.lost).sum(),
                )
            })
            .collect();
        Extra {
            first_keyframe,
            per_url,
        }
    }

    fn to_text(&self) -> String {
        let mut s = String::new();
        match self.first_keyframe {
            Some([a, b, c, d]) => s.push_str(&format!(
                "hits first keyframe p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
                millis(a),
                millis(b),
                millis(c),
                millis(d)
            )),
            None => s.push_str("hits first keyframe n/a (no viewer saw a keyframe)\n"),
        }
        for (u, n, ok, packets, lost) in &self.per_url {
            s.push_str(&format!(
                "hits url {u}: {ok}/{n} viewers ok, {packets} packets, {lost} lost\n"
            ));
        }
        s
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "first_keyframe_ms": self.first_keyframe.map(|[a, b, c, d]| json!({
                "p50": millis(a), "p95": millis(b), "p99": millis(c), "max": millis(d),
            })),
            "urls": self.per_url.iter().map(|(u, n, ok, packets, lost)| json!({
                "url": u, "viewers": n, "ok": ok, "packets": packets, "lost": lost,
            })).collect::<Vec<_>>(),
        })
    }
}

async fn run_async(
    args: &HitsArgs,
    urls: Vec<url::WatchedUrl>,
    addr: SocketAddr,
) -> anyhow::Result<(RunReport, Vec<(String, Vec<usize>)>)> {
    let request_timeout = Duration::from_secs_f64(args.request_timeout);
    let lower = match args.transport {
        TransportArg::Udp => Lower::Udp,
        TransportArg::Tcp => Lower::Tcp,
    };
    let (stream, local) = probe(&urls[0], addr, request_timeout).await?;
    let codecs: Vec<Codec> = stream.tracks.iter().map(|t| t.codec).collect();
    if !args.quiet {
        eprintln!(
            "probe: {} has {} track(s): {}; {} URL(s)",
            urls[0].request_uri,
            codecs.len(),
            stream.describe_tracks(),
            urls.len()
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

    // One context per URL; they share the setup limit through their own semaphores, each
    // a fair share of it.
    let k = urls.len();
    let per_ctx_setups = (args.max_setups / k).max(1);
    let ctxs: Vec<Arc<ViewerCtx>> = urls
        .into_iter()
        .map(|url| {
            Arc::new(ViewerCtx {
                addr,
                url,
                lower,
                codecs: codecs.clone(),
                request_timeout,
                end,
                teardown_grace: TEARDOWN_GRACE,
                setups: Semaphore::new(per_ctx_setups),
                tcp_packets: AtomicU64::new(0),
                settled: AtomicUsize::new(0),
                playing: AtomicUsize::new(0),
            })
        })
        .collect();
    let sum = |f: fn(&ViewerCtx) -> u64| ctxs.iter().map(|c| f(c)).sum::<u64>();
    let packets =
        || udp_packets.load(Ordering::Relaxed) + sum(|c| c.tcp_packets.load(Ordering::Relaxed));
    let sample = |at: Instant| Sample {
        at,
        edge: edge.as_ref().and_then(|e| e.cpu().ok()),
        me: me.cpu().ok(),
        packets: packets(),
    };
    let first = sample(start);

    let mut per_url: Vec<(String, Vec<usize>)> = ctxs
        .iter()
        .map(|c| (c.url.request_uri.clone(), Vec::new()))
        .collect();
    let mut handles = Vec::with_capacity(args.viewers);
    for id in 0..args.viewers {
        let u = url_of(id, k);
        per_url[u].1.push(id);
        let ctx = ctxs[u].clone();
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

    let mut steady_from: Option<Sample> = None;
    let mut all_settled_at: Option<Instant> = None;
    let mut next_progress = start + Duration::from_secs(5);
    loop {
        let now = Instant::now();
        if now >= end || handles.iter().all(|h| h.is_finished()) {
            break;
        }
        let settled = sum(|c| c.settled.load(Ordering::Relaxed) as u64);
        if all_settled_at.is_none() && settled >= args.viewers as u64 {
            all_settled_at = Some(now);
        }
        if steady_from.is_none() && all_settled_at.is_some_and(|t| now >= t + SETTLE) {
            steady_from = Some(sample(now));
        }
        if now >= next_progress && !args.quiet {
            eprintln!(
                "t={:>5.1}s playing {:>5}/{} packets {:>10}",
                now.duration_since(start).as_secs_f64(),
                sum(|c| c.playing.load(Ordering::Relaxed) as u64),
                args.viewers,
                packets()
            );
            next_progress += Duration::from_secs(5);
        }
        tokio::time::sleep_until((now + Duration::from_millis(100)).min(end)).await;
    }
    let last = sample(Instant::now());
    let info = RunInfo {
        url: format!("{} and {} more", per_url[0].0, k - 1),
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
    let report = run
        .finish(info, handles, hard_deadline, receivers, our_ports)
        .await?;
    Ok((report, per_url))
}

#[cfg(test)]
mod tests {
    use super::super::report::ProcessUsage;
    use super::*;

    #[test]
    fn viewers_spread_evenly_over_the_urls() {
        let counts = (0..1000).fold([0usize; 20], |mut c, id| {
            c[url_of(id, 20)] += 1;
            c
        });
        assert!(counts.iter().all(|&n| n == 50), "{counts:?}");
        assert_eq!(url_of(7, 1), 0);
    }

    #[test]
    fn percentiles_and_per_url_sums_come_from_the_viewers() {
        let mut report = RunReport {
            info: RunInfo {
                url: "u".into(),
                transport: "udp",
                viewers: 4,
                seconds: 1.0,
                ramp_per_sec: None,
                tracks: String::new(),
            },
            viewers: Vec::new(),
            window: Duration::from_secs(1),
            edge: None,
            loadgen: ProcessUsage {
                pid: 1,
                cpu: Duration::ZERO,
                peak_rss_kib: None,
                steady: None,
            },
            socket_drops: None,
            truncated: None,
        };
        for (id, ms) in [(0usize, 10u64), (1, 20), (2, 30), (3, 400)] {
            let mut o = viewer::ViewerOutcome::new(id);
            o.setup = Some(Duration::from_millis(1));
            let mut v = ViewerReport::new(&o, &[]);
            v.error = None;
            v.packets = 100;
            v.lost = id as u64;
            v.first_keyframe = Some(Duration::from_millis(ms));
            report.viewers.push(v);
        }
        let per_url = vec![("a".to_owned(), vec![0, 2]), ("b".to_owned(), vec![1, 3])];
        let x = Extra::of(&report, &per_url);
        let [p50, p95, p99, max] = x.first_keyframe.unwrap();
        assert_eq!(p50, Duration::from_millis(20));
        let top = Duration::from_millis(400);
        assert_eq!((p95, p99, max), (top, top, top));
        assert_eq!(x.per_url[0], ("a".to_owned(), 2, 2, 200, 2));
        assert_eq!(x.per_url[1], ("b".to_owned(), 2, 2, 200, 4));
    }
}
