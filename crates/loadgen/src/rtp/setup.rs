//! `ng-setup` (issue 15): call set-ups over `ng` as fast as they are answered, no
//! media: `offer`, `answer` and `delete` for each call from C concurrent clients, each
//! waiting for its reply before the next request (a closed loop, as a proxy's worker
//! does). Several targets in one run compare a relay reached directly with the same
//! relays behind a dispatcher.
//!
//! Reported per target: set-ups per second (all three commands done), the round trip
//! of `offer` + `answer` (what a call's set-up waits for) and of `delete` as
//! percentiles, refusals, and with a PID the process's RSS at the end. `--keep` skips
//! the deletes, so the calls stay held (the dispatcher's memory benchmark).
//!
//! What it does not: send media (the SDPs name ports nobody listens on; a relay
//! allocates its ports all the same) or pace at a rate.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mediagate_ng::client::{check, RequestBuilder};
use mediagate_ng::request::Command;

use super::ng_udp::NgClient;
use super::{sdp, Target};
use crate::latency_hist::{per_mille, percentiles_ms};
use crate::procfs::Process;

/// `mediagate-loadgen ng-setup`.
#[derive(Debug, clap::Args)]
pub(crate) struct SetupArgs {
    /// What to measure: LABEL,NG_ADDR[,PID] (PID: report that process's RSS); repeat
    /// to compare, e.g. relay,127.0.0.1:2223 dispatcher,127.0.0.1:2224.
    #[arg(long = "target", required = true)]
    targets: Vec<Target>,
    /// Calls per target.
    #[arg(long, default_value_t = 10_000)]
    calls: usize,
    /// Concurrent clients, each with its own socket and one request in flight.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Do not delete the calls: they stay held (memory benchmarks).
    #[arg(long)]
    keep: bool,
    /// Address written into the SDPs as the phones'.
    #[arg(long, default_value = "127.0.0.1")]
    phone_ip: IpAddr,
    /// Print one JSON object per target instead of the table.
    #[arg(long)]
    json: bool,
}

/// What one client measured.
#[derive(Debug, Default)]
struct Samples {
    setup_us: Vec<u32>,
    delete_us: Vec<u32>,
    refused: usize,
    first_refusal: Option<String>,
}

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// One client's share of calls: the call numbers it takes from `next`.
fn client_loop(
    ng: SocketAddr,
    label: &str,
    args: &SetupArgs,
    next: &AtomicUsize,
) -> anyhow::Result<Samples> {
    let mut client = NgClient::new(ng).with_context(|| format!("ng client for {ng}"))?;
    let mut out = Samples::default();
    let run = std::process::id();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= args.calls {
            return Ok(out);
        }
        let call_id = format!("setup-{label}-{run}-{i}");
        let port = 10_000 + (i % 20_000) as u16 * 2;
        // The offer from the caller's port, the answer from the callee's: the same
        // request but for the command and `to-tag`.
        let leg = |command: Command, port: u16| {
            let mut b = RequestBuilder::new(command.clone())
                .str("call-id", &call_id)
                .str("from-tag", "caller");
            if command == Command::Answer {
                b = b.str("to-tag", "callee");
            }
            b.str("sdp", &sdp(args.phone_ip, port))
                .strs("replace", &["origin", "session-connection"])
                .strs("supports", &["load limit"])
                .build()
        };
        let mut rtt_setup = Duration::ZERO;
        let mut refused = false;
        for (command, port) in [(Command::Offer, port), (Command::Answer, port + 1)] {
            let (reply, rtt) = client.request(&leg(command, port))?;
            if let Err(refusal) = check(&reply) {
                out.refused += 1;
                out.first_refusal.get_or_insert_with(|| refusal.to_string());
                refused = true;
                break;
            }
            rtt_setup += rtt;
        }
        if refused {
            continue;
        }
        out.setup_us.push(us(rtt_setup));
        if !args.keep {
            let delete = RequestBuilder::new(Command::Delete)
                .str("call-id", &call_id)
                .str("from-tag", "caller")
                .int("delete delay", 0)
                .build();
            let (_, rtt) = client.request(&delete)?;
            out.delete_us.push(us(rtt));
        }
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    let memory = Process::new(pid).memory().ok()?;
    Some(memory.rss_kib as f64 / 1024.0)
}

/// [`percentiles_ms`] of `sorted`, `None` when it is empty.
fn summary(sorted: &[u32]) -> Option<String> {
    (!sorted.is_empty()).then(|| percentiles_ms(sorted))
}

fn measure(args: &SetupArgs, target: &Target) -> anyhow::Result<serde_json::Value> {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let results: Vec<anyhow::Result<Samples>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.clients.max(1))
            .map(|_| s.spawn(|| client_loop(target.ng, &target.label, args, &next)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut all = Samples::default();
    for r in results {
        let r = r.with_context(|| format!("target {}", target.label))?;
        all.setup_us.extend(r.setup_us);
        all.delete_us.extend(r.delete_us);
        all.refused += r.refused;
        all.first_refusal = all.first_refusal.or(r.first_refusal);
    }
    all.setup_us.sort_unstable();
    all.delete_us.sort_unstable();
    let ms = |v: &[u32], pm| per_mille(v, pm).map(|u| f64::from(u) / 1000.0);
    let done = all.setup_us.len();
    Ok(serde_json::json!({
        "target": target.label,
        "calls": done,
        "refused": all.refused,
        "first_refusal": all.first_refusal,
        "clients": args.clients,
        "kept": args.keep,
        "seconds": elapsed.as_secs_f64(),
        "setups_per_second": done as f64 / elapsed.as_secs_f64(),
        "offer_answer_ms": {
            "p50": ms(&all.setup_us, 500), "p90": ms(&all.setup_us, 900),
            "p99": ms(&all.setup_us, 990), "p999": ms(&all.setup_us, 999),
            "max": ms(&all.setup_us, 1000),
        },
        // Null rather than zeros where nothing was measured (all refused, `--keep`).
        "offer_answer": summary(&all.setup_us),
        "delete": summary(&all.delete_us),
        "rss_mib": target.pid.and_then(rss_mib),
    }))
}

pub(crate) fn run(args: SetupArgs) -> anyhow::Result<u8> {
    let mut refused = false;
    for target in &args.targets {
        let report = measure(&args, target)?;
        refused |= report["refused"].as_u64() != Some(0);
        if args.json {
            println!("{report}");
        } else {
            println!(
                "{}: {} calls in {:.2} s = {:.0} set-ups/s ({} clients{}), {} refused",
                target.label,
                report["calls"],
                report["seconds"].as_f64().unwrap_or(0.0),
                report["setups_per_second"].as_f64().unwrap_or(0.0),
                args.clients,
                if args.keep { ", kept" } else { "" },
                report["refused"],
            );
            println!(
                "  offer+answer: {}",
                report["offer_answer"].as_str().unwrap_or("-")
            );
            if !args.keep {
                println!(
                    "  delete:       {}",
                    report["delete"].as_str().unwrap_or("-")
                );
            }
            if let Some(rss) = report["rss_mib"].as_f64() {
                println!("  RSS of pid {}: {rss:.1} MiB", target.pid.unwrap_or(0));
            }
            if let Some(why) = report["first_refusal"].as_str() {
                println!("  first refusal: {why}");
            }
        }
    }
    Ok(if refused { 2 } else { 0 })
}
