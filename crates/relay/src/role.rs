//! The relay as one of the binary's roles: started from `[relay]` with the process's
//! records writer and metrics registry, drained on SIGTERM or by the admin API (new
//! calls get the failover reply, running calls may finish within `shutdown_max_wait`,
//! a second signal cuts them; records are written either way). Its live picture for
//! the admin API is `calls`: each call's record so far, from the same registry that
//! answers `ng` `query`; ending one by API records the reason `admin`.

use std::sync::Arc;
use std::time::Duration;

use mediagate_config::Config;
use mediagate_ops::role::{
    DrainCut, DrainReport, Role, RoleContext, RoleFuture, RoleKind, RoleStats, StartResult,
};
use mediagate_ops::store::Record;
use tracing::{info, warn};

use crate::engine::{EngineConfig, Relay};
use crate::record::SessionRecord;

/// The relay in the binary's list of roles.
pub const KIND: RoleKind = RoleKind {
    name: "relay",
    enabled: |config| *config.relay.enabled.get(),
    record_tables: &[SessionRecord::TABLE],
    start,
};

fn start<'a>(config: &'a Config, ctx: RoleContext<'a>) -> RoleFuture<'a, StartResult> {
    Box::pin(async move {
        let mut engine = EngineConfig::from_config(&config.relay);
        if let Some(records) = ctx.records {
            engine = engine.with_records(records.sink());
        }
        let relay = Relay::start(engine).await?;
        relay.publish_metrics(ctx.metrics);
        report_start(&relay, config);
        let role: Box<dyn Role> = Box::new(RelayRole {
            relay: Arc::new(relay),
            max_wait: config.relay.shutdown_max_wait.get(),
        });
        Ok(role)
    })
}

/// The start-up lines: how the relay forwards and where it listens.
fn report_start(relay: &Relay, config: &Config) {
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
}

struct RelayRole {
    relay: Arc<Relay>,
    max_wait: Duration,
}

impl Role for RelayRole {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn serving(&self) -> String {
        "relay".to_owned()
    }

    fn stats(&self) -> RoleStats {
        RoleStats {
            sessions: self.relay.active_calls() as u64,
            unit: "calls",
        }
    }

    fn max_drain(&self) -> Duration {
        self.max_wait
    }

    fn snapshot(&self, resource: &str) -> Option<RoleFuture<'_, serde_json::Value>> {
        if resource != "calls" {
            return None;
        }
        let calls: Vec<serde_json::Value> = self
            .relay
            .live_calls()
            .into_iter()
            .map(|(record, answered)| {
                serde_json::json!({
                    "call_id": record.call_id,
                    "from_tag": record.from_tag,
                    "to_tag": record.to_tag,
                    "answered": answered,
                    "start_unix_ms": record.start_unix_ms,
                    "duration_ms": record.duration_ms(),
                    "streams": record.streams,
                })
            })
            .collect();
        Some(Box::pin(async move { serde_json::Value::Array(calls) }))
    }

    fn end_session(&self, resource: &str, id: &str) -> Option<RoleFuture<'_, bool>> {
        if resource != "calls" {
            return None;
        }
        let ended = self.relay.end_call(id);
        if ended {
            info!(call = %id, "relay: call {id} ended by the admin API");
        }
        Some(Box::pin(async move { ended }))
    }

    fn drain(&self, cut: DrainCut) -> RoleFuture<'static, DrainReport> {
        let relay = Arc::clone(&self.relay);
        let max_wait = self.max_wait;
        Box::pin(async move {
            info!(
                "relay: draining: new calls refused, waiting up to {} s for {} running calls (signal again to stop now)",
                max_wait.as_secs(),
                relay.active_calls()
            );
            let cut = relay.shutdown(max_wait, cut.pulled()).await;
            if cut > 0 {
                info!("relay: ended {cut} calls at shutdown; their records are written");
            }
            DrainReport {
                ended: cut as u64,
                complete: cut == 0,
            }
        })
    }
}
