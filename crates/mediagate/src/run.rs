//! Starts the configured roles and runs until SIGINT or SIGTERM; the relay then drains
//! gracefully (a second signal stops it at once).
//!
//! The binary owns what the roles share: the one records writer (opened from
//! `[accounting]` and `state_dir` when a role keeps records, closed after every role
//! has stopped so their last records are written) and the metrics registry.

use std::net::SocketAddr;

use anyhow::Context;
use mediagate_config::Config;
use mediagate_edge::server::Edge;
use mediagate_ops::metrics::Metrics;
use mediagate_ops::store::{self, Record, StoreTarget, Writer, WriterOptions};
use mediagate_relay::engine::{EngineConfig, Relay};
use mediagate_relay::record::SessionRecord;

pub fn run(config: Config) -> anyhow::Result<()> {
    let relay_on = *config.relay.enabled.get();
    if !*config.edge.enabled.get() && !relay_on {
        anyhow::bail!("no role is enabled: set [edge] enabled = true or [relay] enabled = true");
    }
    let state_dir = config.state_dir.get();
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut signals = Signals::new();
        // Served over HTTP by the operations API (issue 11); the roles publish into it.
        let metrics = Metrics::new();
        let records = if relay_on {
            Some(
                open_records(&config)
                    .await
                    .context("cannot start the relay")?,
            )
        } else {
            None
        };
        let relay = match &records {
            Some(writer) => Some(start_relay(&config, writer, &metrics).await?),
            None => None,
        };
        if !*config.edge.enabled.get() {
            signals.next().await;
            if let Some(relay) = relay {
                stop_relay(relay, &config, &mut signals).await;
            }
            close_records(records).await;
            eprintln!("mediagate: shutting down");
            return Ok(());
        }
        let edge = Edge::new(&config.edge, &node_name());
        let listen: Vec<SocketAddr> = config
            .edge
            .listen
            .get()
            .iter()
            .chain(&config.edge.http_tunnel_listen)
            .map(|a| a.0)
            .collect();
        let bound = edge
            .bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen:?}"))?;
        for addr in &bound {
            eprintln!("mediagate edge: listening for RTSP on {addr}");
        }
        signals.next().await;
        if let Some(relay) = relay {
            stop_relay(relay, &config, &mut signals).await;
        }
        close_records(records).await;
        eprintln!("mediagate: shutting down");
        Ok(())
    })
}

/// Opens the records writer for the roles that keep records (today the relay's call
/// records): PostgreSQL when `[accounting] postgres_url` is set, else the SQLite file
/// under `state_dir`. An unreachable PostgreSQL server is an error: mediagate does not
/// account somewhere else than configured.
async fn open_records(config: &Config) -> anyhow::Result<Writer> {
    let target = StoreTarget::from_config(&config.accounting, config.state_dir.get());
    // Opening may wait for a PostgreSQL server (bounded by its connect timeout), and
    // its client must not run on a runtime thread.
    let writer = tokio::task::spawn_blocking(move || {
        store::spawn(target, &[SessionRecord::TABLE], WriterOptions::default())
    })
    .await
    .context("the records writer's start-up thread failed")??;
    Ok(writer)
}

/// Writes what the roles left (they have stopped) and stops the writer.
async fn close_records(records: Option<Writer>) {
    if let Some(writer) = records {
        // Closing may make a last bounded attempt at PostgreSQL: off the runtime.
        let _ = tokio::task::spawn_blocking(move || writer.close()).await;
    }
}

/// Starts the relay role (issue 4) and reports where it listens.
async fn start_relay(
    config: &Config,
    records: &Writer,
    metrics: &Metrics,
) -> anyhow::Result<Relay> {
    let engine = EngineConfig::from_config(&config.relay).with_records(records.sink());
    let relay = Relay::start(engine)
        .await
        .context("cannot start the relay")?;
    relay.publish_metrics(metrics);
    let (threads, uring) = relay.forwarding_threads();
    let scheduling = config.relay.forward_scheduling;
    let refused = relay.forwarding_scheduling_refused();
    eprintln!(
        "mediagate relay: forwarding on {threads} thread(s), {}, scheduling {}",
        match uring {
            0 => "epoll".to_owned(),
            n if n == threads => "io_uring".to_owned(),
            n => format!("io_uring on {n}, epoll on the rest"),
        },
        match &refused {
            Some(why) => format!("unchanged ({why})"),
            None => scheduling.to_string(),
        }
    );
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let realtime = scheduling.is_realtime() && refused.is_none();
    if realtime && threads >= cpus {
        let advice = if cpus > 1 {
            format!("set relay.forward_threads below {cpus}")
        } else {
            "on one CPU, prefer relay.forward_scheduling = \"normal\"".to_owned()
        };
        eprintln!(
            "mediagate relay: warning: {threads} real-time forwarding thread(s) on {cpus} CPU(s) can keep everything else off the CPUs under load; {advice}"
        );
    }
    for addr in relay.ng_udp_addrs() {
        eprintln!("mediagate relay: listening for ng commands on UDP {addr}");
    }
    for addr in relay.ng_tcp_addrs() {
        eprintln!("mediagate relay: listening for ng commands on TCP {addr}");
    }
    Ok(relay)
}

/// Graceful relay shutdown after the first SIGTERM/SIGINT: new calls are refused with
/// the failover reply, running calls may finish within `shutdown_max_wait`; a second
/// signal cuts them at once. Records are written either way.
async fn stop_relay(relay: Relay, config: &Config, signals: &mut Signals) {
    let max_wait = config.relay.shutdown_max_wait.get();
    eprintln!(
        "mediagate relay: draining: new calls refused, waiting up to {} s for {} running calls (signal again to stop now)",
        max_wait.as_secs(),
        relay.active_calls()
    );
    let cut = relay.shutdown(max_wait, signals.next()).await;
    if cut > 0 {
        eprintln!("mediagate relay: ended {cut} calls at shutdown; their records are written");
    }
}

/// SIGTERM and SIGINT as one stream, registered once so a second signal during the
/// drain is never lost.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn next(&mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.term) => {}
            _ = recv(&mut self.int) => {}
        }
    }
}

/// This node's name for `Via` headers.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "mediagate".to_owned())
}
