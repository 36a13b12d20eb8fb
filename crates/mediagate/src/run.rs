//! Starts the configured roles and runs until SIGINT or SIGTERM; the relay then drains
//! gracefully (a second signal stops it at once). SIGHUP never ends the process.
//!
//! The binary owns what the roles share: the one records writer (opened from
//! `[accounting]` and `state_dir` when a role keeps records, closed after every role
//! has stopped so their last records are written) and the metrics registry.

use std::net::SocketAddr;

use anyhow::Context;
use mediagate_config::Config;
use mediagate_edge::server::Edge;
use mediagate_ops::metrics::Metrics;
use mediagate_ops::signals::Signals;
use mediagate_ops::store::{self, Record, StoreTarget, Writer, WriterOptions};
use mediagate_ops::systemd::Notifier;
use mediagate_relay::engine::{EngineConfig, Relay};
use mediagate_relay::record::SessionRecord;
use tracing::{info, warn};

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
        let mut signals = Signals::new().context("cannot register signal handlers")?;
        // systemd (Type=notify): readiness, stopping and the watchdog; no-ops outside it.
        let systemd = Notifier::from_env();
        let _watchdog = systemd.spawn_watchdog();
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
            systemd.ready(&ready_status(&[], relay.is_some()));
            signals.next_stop(on_hangup).await;
            systemd.stopping();
            if let Some(relay) = relay {
                stop_relay(relay, &config, &mut signals, &systemd).await;
            }
            close_records(records).await;
            info!("shutting down");
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
            info!("edge: listening for RTSP on {addr}");
        }
        systemd.ready(&ready_status(&bound, relay.is_some()));
        signals.next_stop(on_hangup).await;
        systemd.stopping();
        if let Some(relay) = relay {
            stop_relay(relay, &config, &mut signals, &systemd).await;
        }
        close_records(records).await;
        info!("shutting down");
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
    info!(
        "relay: forwarding on {threads} thread(s), {}, scheduling {}",
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
        warn!(
            "relay: {threads} real-time forwarding thread(s) on {cpus} CPU(s) can keep everything else off the CPUs under load; {advice}"
        );
    }
    for addr in relay.ng_udp_addrs() {
        info!("relay: listening for ng commands on UDP {addr}");
    }
    for addr in relay.ng_tcp_addrs() {
        info!("relay: listening for ng commands on TCP {addr}");
    }
    Ok(relay)
}

/// Graceful relay shutdown after the first SIGTERM/SIGINT: new calls are refused with
/// the failover reply, running calls may finish within `shutdown_max_wait`; a second
/// signal cuts them at once. Records are written either way. systemd is asked to wait
/// for the whole drain, so a `TimeoutStopSec=` shorter than it does not SIGKILL it.
async fn stop_relay(relay: Relay, config: &Config, signals: &mut Signals, systemd: &Notifier) {
    let max_wait = config.relay.shutdown_max_wait.get();
    systemd.extend_timeout(max_wait + DRAIN_WRAP_UP);
    info!(
        "relay: draining: new calls refused, waiting up to {} s for {} running calls (signal again to stop now)",
        max_wait.as_secs(),
        relay.active_calls()
    );
    let cut = relay.shutdown(max_wait, signals.next_stop(on_hangup)).await;
    if cut > 0 {
        info!("relay: ended {cut} calls at shutdown; their records are written");
    }
}

/// Time after a drain's last call for writing its records and exiting.
const DRAIN_WRAP_UP: std::time::Duration = std::time::Duration::from_secs(30);

/// The `STATUS=` line `systemctl status` shows once the roles serve.
fn ready_status(edge: &[SocketAddr], relay: bool) -> String {
    let mut roles = Vec::new();
    if !edge.is_empty() {
        let addrs: Vec<String> = edge.iter().map(ToString::to_string).collect();
        roles.push(format!("edge on {}", addrs.join(", ")));
    }
    if relay {
        roles.push("relay".to_owned());
    }
    format!("serving: {}", roles.join("; "))
}

/// SIGHUP while running: logrotate's `kill -HUP` must not end calls or viewers. The
/// process log is stderr, so there is no file of ours to reopen yet, and re-reading the
/// config is the operations issue's reload; both are said in the log.
fn on_hangup() {
    info!("SIGHUP: nothing to reopen (the process log is stderr) and config reload is not built yet; running sessions are untouched");
}

/// This node's name for `Via` headers.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "mediagate".to_owned())
}
