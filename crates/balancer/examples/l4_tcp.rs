//! Runs one L4 TCP service of the balancer, for the benchmark against HAProxy
//! (`scripts/bench-l4.sh`) until the balancer role's config wires L4 services.
//!
//! ```text
//! cargo run --release -p mediagate-balancer --example l4_tcp -- \
//!     --listen 127.0.0.1:15201 --backend 127.0.0.1:5201 [--backend ...] \
//!     [--threads 1] [--no-splice] [--proxy-v2]
//! ```
//!
//! Round robin over the back ends; runs until SIGINT or SIGTERM, then stops with a
//! one-second grace and prints the service's counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mediagate_balancer::backend::{BackendId, BackendView};
use mediagate_balancer::l4::tcp::{self, TcpConfig};
use mediagate_balancer::l4::{SchedPicker, ServiceCounters};
use mediagate_balancer::sched::{Algorithm, Scheduler};

struct Args {
    listen: SocketAddr,
    backends: Vec<SocketAddr>,
    threads: usize,
    config: TcpConfig,
}

fn usage(msg: &str) -> ! {
    eprintln!("l4_tcp: {msg}");
    eprintln!(
        "usage: l4_tcp --listen ADDR --backend ADDR [--backend ADDR ...] [--threads N] [--no-splice] [--proxy-v2]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut listen = None;
    let mut backends = Vec::new();
    let mut threads = 1;
    let mut config = TcpConfig::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--listen" => {
                listen = Some(
                    value("--listen")
                        .parse()
                        .unwrap_or_else(|_| usage("bad --listen")),
                )
            }
            "--backend" => backends.push(
                value("--backend")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --backend")),
            ),
            "--threads" => {
                threads = value("--threads")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --threads"))
            }
            "--no-splice" => config.splice = false,
            "--proxy-v2" => config.proxy_v2 = true,
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let Some(listen) = listen else {
        usage("--listen is required")
    };
    if backends.is_empty() {
        usage("at least one --backend is required");
    }
    Args {
        listen,
        backends,
        threads,
        config,
    }
}

fn main() -> std::io::Result<()> {
    let args = parse_args();
    // One thread: a single event loop, as HAProxy's `nbthread 1` runs.
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        let views = args
            .backends
            .iter()
            .enumerate()
            .map(|(i, addr)| BackendView {
                id: BackendId(i as u32),
                addr: *addr,
                weight: 1,
                up: true,
                sessions: 0,
                bandwidth_bps: 0,
            })
            .collect();
        let counters = Arc::new(ServiceCounters::default());
        let picker = SchedPicker::new(Scheduler::new(Algorithm::RoundRobin), views)
            .with_counters(counters.clone());
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let svc = tcp::spawn(listener, args.config, Arc::new(picker), counters.clone())?;
        eprintln!("l4_tcp: listening on {}", svc.local_addr());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        svc.stop(Duration::from_secs(1)).await;
        eprintln!("l4_tcp: {:?}", counters.snapshot());
        Ok(())
    })
}
