//! Starts the configured roles and runs until SIGINT or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;
use mediagate_config::Config;
use mediagate_edge::server::Edge;

pub fn run(config: Config) -> anyhow::Result<()> {
    if *config.relay.enabled.get() {
        anyhow::bail!(
            "the relay role is not built yet (issue 4); disable [relay] or run the edge only"
        );
    }
    if !*config.edge.enabled.get() {
        anyhow::bail!("no role is enabled: set [edge] enabled = true");
    }
    let state_dir = config.state_dir.get();
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
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
        wait_for_shutdown().await;
        eprintln!("mediagate: shutting down");
        Ok(())
    })
}

/// This node's name for `Via` headers.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "mediagate".to_owned())
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
