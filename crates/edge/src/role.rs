//! The edge as one of the binary's roles: started from `[edge]`, listening on its RTSP
//! and HTTP-tunnel addresses, drained on SIGTERM ([`Edge::drain`]: no new connections,
//! every viewer session ended cleanly, origin sessions torn down).

use std::net::SocketAddr;
use std::time::Duration;

use mediagate_config::Config;
use mediagate_ops::role::{
    DrainCut, DrainReport, Role, RoleContext, RoleFuture, RoleKind, RoleStats, StartResult,
};

use crate::server::Edge;

/// The edge in the binary's list of roles.
pub const KIND: RoleKind = RoleKind {
    name: "edge",
    enabled: |config| *config.edge.enabled.get(),
    record_tables: &[],
    start,
};

/// How long a drain may spend flushing viewers' queued output and tearing down origin
/// sessions. The edge does not wait for viewers to leave on their own (a live viewer
/// never does), so this only bounds the clean-up.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

fn start<'a>(config: &'a Config, ctx: RoleContext<'a>) -> RoleFuture<'a, StartResult> {
    Box::pin(async move {
        let edge = Edge::new(&config.edge, ctx.node_name);
        edge.publish_metrics(ctx.metrics);
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
            .map_err(|e| format!("cannot listen on {listen:?}: {e}"))?;
        for addr in &bound {
            tracing::info!("edge: listening for RTSP on {addr}");
        }
        let role: Box<dyn Role> = Box::new(EdgeRole { edge, bound });
        Ok(role)
    })
}

struct EdgeRole {
    edge: Edge,
    bound: Vec<SocketAddr>,
}

impl Role for EdgeRole {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn serving(&self) -> String {
        let addrs: Vec<String> = self.bound.iter().map(ToString::to_string).collect();
        format!("edge on {}", addrs.join(", "))
    }

    fn stats(&self) -> RoleStats {
        RoleStats {
            sessions: self.edge.viewer_sessions() as u64,
            unit: "viewers",
        }
    }

    fn max_drain(&self) -> Duration {
        DRAIN_DEADLINE
    }

    fn drain(self: Box<Self>, cut: DrainCut) -> RoleFuture<'static, DrainReport> {
        Box::pin(async move {
            let report = tokio::select! {
                report = self.edge.drain(DRAIN_DEADLINE) => Some(report),
                () = cut.pulled() => None,
            };
            match report {
                Some(report) => DrainReport {
                    ended: report.sessions as u64,
                    complete: report.complete,
                },
                None => DrainReport {
                    ended: self.edge.viewer_sessions() as u64,
                    complete: false,
                },
            }
        })
    }
}
