//! The edge as one of the binary's roles: started from `[edge]`, listening on its RTSP
//! and HTTP-tunnel addresses, drained on SIGTERM or by the admin API ([`Edge::drain`]:
//! no new connections, every viewer session ended cleanly, origin sessions torn down).
//! Its live picture for the admin API is `streams` (one per live origin session) and
//! `viewers` (one per viewer session); a viewer can be disconnected.

use std::net::SocketAddr;
use std::time::Duration;

use mediagate_config::Config;
use mediagate_ops::role::{
    DrainCut, DrainReport, Role, RoleContext, RoleFuture, RoleKind, RoleStats, StartResult,
};

use serde_json::{json, Value};

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

/// How long disconnecting a viewer by API waits for its session to be gone, so the
/// answer means "ended" (flushing its queued output is bounded the same way).
const DISCONNECT_WAIT: Duration = Duration::from_secs(3);

fn start<'a>(config: &'a Config, ctx: RoleContext<'a>) -> RoleFuture<'a, StartResult> {
    Box::pin(async move {
        let edge = Edge::new(&config.edge, ctx.node_name);
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

    fn snapshot(&self, resource: &str) -> Option<RoleFuture<'_, Value>> {
        match resource {
            "streams" => Some(Box::pin(async move {
                let streams = self.edge.stream_stats().await;
                Value::Array(
                    streams
                        .into_iter()
                        .map(|s| {
                            json!({
                                "origin": s.origin,
                                "viewers": s.viewers,
                                "packets_in": s.packets_in,
                                "bytes_in": s.bytes_in,
                                "bitrate_bps": s.bitrate_bps,
                                "upstream_sessions": s.upstream_sessions,
                                "viewer_skipped": s.viewer_skipped,
                            })
                        })
                        .collect(),
                )
            })),
            "viewers" => Some(Box::pin(async move {
                let viewers = self.edge.viewers().await;
                Value::Array(
                    viewers
                        .into_iter()
                        .map(|v| {
                            json!({
                                "id": v.id,
                                "address": v.address.to_string(),
                                "transport": v.transport.as_str(),
                                "url": v.url,
                                "bytes": v.counts.bytes,
                                "packets": v.counts.packets,
                                "lost": v.counts.lost,
                                "started_unix_ms": v.started_unix_ms,
                                "watched_seconds": v.watched.as_secs_f64(),
                                "user_agent": v.user_agent,
                            })
                        })
                        .collect(),
                )
            })),
            _ => None,
        }
    }

    fn end_session(&self, resource: &str, id: &str) -> Option<RoleFuture<'_, bool>> {
        if resource != "viewers" {
            return None;
        }
        let id = id.to_owned();
        Some(Box::pin(async move {
            self.edge.disconnect_viewer(&id, DISCONNECT_WAIT).await
        }))
    }

    fn drain(&self, cut: DrainCut) -> RoleFuture<'static, DrainReport> {
        let edge = self.edge.clone();
        Box::pin(async move {
            let report = tokio::select! {
                report = edge.drain(DRAIN_DEADLINE) => Some(report),
                () = cut.pulled() => None,
            };
            match report {
                Some(report) => DrainReport {
                    ended: report.sessions as u64,
                    complete: report.complete,
                },
                None => DrainReport {
                    ended: edge.viewer_sessions() as u64,
                    complete: false,
                },
            }
        })
    }
}
