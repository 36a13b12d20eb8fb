//! The relay as one of the binary's roles: started from `[relay]` with the process's
//! records writer and metrics registry, reloaded on SIGHUP (new calls get the new
//! timeouts, limits, latching and port range, finished calls the new notify URL;
//! running calls keep theirs; listeners, media addresses and forwarding threads need a
//! restart), drained on SIGTERM or by the admin API (new calls get the failover reply,
//! running calls may finish within `shutdown_max_wait`, a second signal cuts them;
//! records are written either way). Its live picture for the admin API is `calls`:
//! each call's record so far, from the same registry that answers `ng` `query`; ending
//! one by API records the reason `admin`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mediagate_config::{Config, RelayConfig};
use mediagate_ops::role::{
    keep_until_restart, DrainCut, DrainReport, Reload, Role, RoleContext, RoleFuture, RoleKind,
    RoleStats, StartResult,
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
        // TLS first: a bad certificate directory stops the start before ports are bound.
        let link = link_config(&config.relay)?;
        let relay = Arc::new(Relay::start(engine).await?);
        relay.publish_metrics(ctx.metrics);
        report_start(&relay, config);
        if let Some(link) = link {
            for d in &config.relay.dispatchers {
                info!("relay: linking to dispatcher {d} as {}", link.name);
            }
            crate::link_client::spawn(Arc::clone(&relay), &config.relay.dispatchers, link);
        }
        let role: Box<dyn Role> = Box::new(RelayRole {
            relay,
            running: Mutex::new(config.relay.clone()),
        });
        Ok(role)
    })
}

/// The dispatcher link's settings when `[relay]` names dispatchers.
fn link_config(
    relay: &RelayConfig,
) -> Result<Option<crate::link_client::LinkClientConfig>, Box<dyn std::error::Error + Send + Sync>>
{
    if relay.dispatchers.is_empty() {
        return Ok(None);
    }
    let Some(dir) = &relay.tls_dir else {
        return Err("relay.dispatchers needs relay.tls_dir (--tls-dir)".into());
    };
    let tls = mediagate_link::tls::NodeTls::load(dir)?;
    let mut link = crate::link_client::LinkClientConfig::new(tls.client_config()?, tls.own_name());
    link.passport = relay.passport.clone();
    Ok(Some(link))
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
    match relay.kernel_forwarding() {
        Some(interfaces) => info!(
            "relay: latched IPv4 RTP streams are forwarded in the kernel (eBPF fast path on {}); the rest in user space",
            interfaces.join(", ")
        ),
        None => info!("relay: no eBPF fast path: every packet is forwarded in user space"),
    }
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
    /// The `[relay]` section as it runs now: as started, then as each reload left it.
    running: Mutex<RelayConfig>,
}

impl RelayRole {
    fn running(&self) -> std::sync::MutexGuard<'_, RelayConfig> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `wanted` with every setting that cannot change while the relay runs put back to its
/// `running` value; what was put back is listed. The port range is checked against the
/// running engine separately.
fn applicable(running: &RelayConfig, wanted: &RelayConfig) -> (RelayConfig, Vec<String>) {
    let mut next = wanted.clone();
    let mut notes = Vec::new();
    // Bound or spawned once at start: the ng listeners, the media addresses with their
    // pools, the forwarding threads and how they wait.
    keep_until_restart(
        "relay.ng_listen_udp",
        &running.ng_listen_udp,
        &mut next.ng_listen_udp,
        &mut notes,
    );
    keep_until_restart(
        "relay.ng_listen_tcp",
        &running.ng_listen_tcp,
        &mut next.ng_listen_tcp,
        &mut notes,
    );
    keep_until_restart(
        "relay.media_address",
        &running.media_address,
        &mut next.media_address,
        &mut notes,
    );
    keep_until_restart(
        "relay.port_quarantine",
        &running.port_quarantine,
        &mut next.port_quarantine,
        &mut notes,
    );
    keep_until_restart(
        "relay.forward_threads",
        &running.forward_threads,
        &mut next.forward_threads,
        &mut notes,
    );
    keep_until_restart(
        "relay.forward_coalesce",
        &running.forward_coalesce,
        &mut next.forward_coalesce,
        &mut notes,
    );
    keep_until_restart(
        "relay.forward_io",
        &running.forward_io,
        &mut next.forward_io,
        &mut notes,
    );
    keep_until_restart(
        "relay.forward_scheduling",
        &running.forward_scheduling,
        &mut next.forward_scheduling,
        &mut notes,
    );
    // The dispatcher links are started once with their TLS settings.
    keep_until_restart(
        "relay.dispatchers",
        &running.dispatchers,
        &mut next.dispatchers,
        &mut notes,
    );
    keep_until_restart(
        "relay.tls_dir",
        &running.tls_dir,
        &mut next.tls_dir,
        &mut notes,
    );
    keep_until_restart(
        "relay.passport",
        &running.passport,
        &mut next.passport,
        &mut notes,
    );
    // The binary reads it once, when it starts waiting for signals.
    keep_until_restart(
        "relay.sighup",
        &running.sighup,
        &mut next.sighup,
        &mut notes,
    );
    (next, notes)
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
        self.running().shutdown_max_wait.get()
    }

    fn reload(&self, config: &Config) -> Reload {
        let mut running = self.running();
        let (mut next, mut needs_restart) = applicable(&running, &config.relay);
        if let Err(why) = self.relay.reload(&EngineConfig::from_config(&next)) {
            needs_restart.push(format!("relay.ports: {why}"));
            next.ports = running.ports.clone();
        }
        let range = next.ports.get().range();
        info!(
            "relay: reloaded: new calls take ports {}-{} and the new timeouts and limits; running calls keep theirs",
            range.low(),
            range.high()
        );
        *running = next;
        Reload::Applied { needs_restart }
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
        // Refusing before saying so: a SIP proxy (or a test) that reads the line below
        // and sends an offer must be refused.
        self.relay.drain();
        let relay = Arc::clone(&self.relay);
        let max_wait = self.max_drain();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(extra: &str) -> RelayConfig {
        let text = format!(
            "[relay]\nenabled = true\nmedia_address = [{{ address = \"127.0.0.1\" }}]\n{extra}"
        );
        mediagate_config::parse_config(&text)
            .expect("valid test config")
            .relay
    }

    #[test]
    fn timeouts_ports_and_notify_apply_and_listeners_and_threads_wait_for_a_restart() {
        let running = relay("");
        let wanted = relay(
            "ng_listen_udp = [\"127.0.0.1:2299\"]\nforward_threads = 3\nports = \"40000-40099\"\nmedia_timeout = \"5s\"\nshutdown_max_wait = \"1s\"\nteardown_notify_url = \"http://127.0.0.1:5060/RPC\"\n",
        );
        let (next, notes) = applicable(&running, &wanted);
        assert_eq!(next.ng_listen_udp, running.ng_listen_udp);
        assert_eq!(next.forward_threads, running.forward_threads);
        assert_eq!(next.ports, wanted.ports);
        assert_eq!(next.media_timeout, wanted.media_timeout);
        assert_eq!(next.shutdown_max_wait, wanted.shutdown_max_wait);
        assert_eq!(next.teardown_notify_url, wanted.teardown_notify_url);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with("relay.ng_listen_udp needs a restart"),
            "{notes:?}"
        );
        assert!(
            notes[1].starts_with("relay.forward_threads needs a restart"),
            "{notes:?}"
        );
    }

    #[test]
    fn the_dispatcher_link_waits_for_a_restart() {
        let running = relay("");
        let wanted = relay(
            "dispatchers = [\"d.example.net:25060\"]\ntls_dir = \"relay1\"\npassport = \"CN=d*\"\n",
        );
        let (next, notes) = applicable(&running, &wanted);
        assert!(next.dispatchers.is_empty());
        assert_eq!(next.tls_dir, None);
        assert_eq!(next.passport, None);
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes[0].starts_with("relay.dispatchers needs a restart"),
            "{notes:?}"
        );
    }
}
