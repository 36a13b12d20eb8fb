//! The balancer as one of the binary's roles: started from `[balancer]`, one set of
//! listeners per `[[balancer.service]]` (RTSP session routing, [`crate::rtsp`]), its
//! counters published as `mediagate_balancer_*` metrics, its live picture for the
//! admin API as `services` and `backends` (what `mediagate balancer status` prints),
//! drained on SIGTERM or by the admin API (no new connections; running ones go on
//! until they end or the drain time is up).
//!
//! With `[balancer.service.health]` each back end has the health slice's checker; a
//! back end that goes down takes no new sessions and its sessions and relayed flows
//! end at once (`service::watch_health`); failed connections and garbage answers
//! count as passive failures.
//!
//! `kind = "tcp"` and `"udp"` services run the L4 slice's proxy through
//! `l4_service`, with the same scheduler, persistence and health.
//!
//! With `sync_*`/`vrrp_*` keys the failover tasks of `crate::sync` run beside the
//! services (keepalived decides who is active; the standby holds the active's
//! session table and takes it over), and the `failover` snapshot shows their state.
//!
//! Reload (SIGHUP or the admin API): back ends added, removed (retired: no new
//! sessions, running ones go on) or reweighted apply at once; listeners, modes,
//! schedulers, limits and the set of services need a restart and are named.
//!
//! What it does not (yet): port groups.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mediagate_config::{BalancerConfig, Config, MediaMode, ServiceConfig, ServiceKind};
use mediagate_ops::metrics::{Collect, Histogram, Metrics, Scrape};
use mediagate_ops::role::{
    keep_until_restart, DrainCut, DrainReport, Reload, Role, RoleContext, RoleFuture, RoleKind,
    RoleStats, StartResult,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::l4_service::L4Running;
use crate::rtsp::proxy::{accept_loop, Settings};
use crate::service::{read, Figures, Service};
use crate::sync::run::{Failover, FailoverConfig};

/// The balancer in the binary's list of roles.
pub const KIND: RoleKind = RoleKind {
    name: "balancer",
    enabled: |config| *config.balancer.enabled.get(),
    record_tables: &[],
    start,
};

/// How long a drain lets running connections go on before they are cut.
const DRAIN_TIME: Duration = Duration::from_secs(10);

fn start<'a>(config: &'a Config, ctx: RoleContext<'a>) -> RoleFuture<'a, StartResult> {
    Box::pin(async move {
        let b = &config.balancer;
        let settings = Arc::new(Settings {
            header_timeout: b.header_timeout.get(),
            session_timeout: b.session_timeout.get().get(),
            max_connections: u64::from(b.max_connections.get()),
            scheduling: b.rtsp_scheduling,
            open: 0.into(),
        });
        let mut services = Vec::new();
        let mut tasks = Vec::new();
        let mut bound = Vec::new();
        let mut l4 = Vec::new();
        for sc in &b.service {
            let svc = Arc::new(Service::resolve(sc, b).await?);
            if *sc.kind.get() != ServiceKind::Rtsp {
                let running = Arc::new(
                    L4Running::start(
                        Arc::clone(&svc),
                        *sc.kind.get(),
                        usize::try_from(b.max_connections.get()).unwrap_or(usize::MAX),
                        &sc.udp_ports.as_ref().map_or_else(Vec::new, |u| {
                            u.iter().map(|r| r.low()..=r.high()).collect()
                        }),
                        sc.persistence_timeout.as_ref().map(|t| t.get().get()),
                    )
                    .await?,
                );
                let _ = svc.l4.set(Arc::clone(&running.counters));
                let weak = Arc::downgrade(&running);
                svc.on_backend_down(move |id| weak.upgrade().map_or(0, |r| r.backend_down(id)));
                bound.extend(running.bound.iter().copied());
                l4.push(running);
                services.push(svc);
                continue;
            }
            for addr in &svc.listen {
                let listener = TcpListener::bind(addr).await.map_err(|e| {
                    format!("service \"{}\": cannot listen on {addr}: {e}", svc.name)
                })?;
                let local = listener.local_addr()?;
                tracing::info!(
                    "balancer: service {} listening for RTSP on {local} ({} back ends, {} mode)",
                    svc.name,
                    svc.backend_list().len(),
                    mode_name(svc.mode)
                );
                bound.push(local);
                tasks.push(tokio::spawn(accept_loop(
                    listener,
                    Arc::clone(&svc),
                    Arc::clone(&settings),
                )));
            }
            services.push(svc);
        }
        let services: Arc<[Arc<Service>]> = services.into();
        let failover_config = FailoverConfig::from_config(b);
        let failover = if failover_config.any() {
            let (failover, failover_tasks) =
                crate::sync::run::start(failover_config, Arc::clone(&services)).await?;
            tasks.extend(failover_tasks);
            Some(failover)
        } else {
            None
        };
        tasks.push(tokio::spawn(expire_sessions(Arc::clone(&services))));
        for svc in services.iter() {
            tasks.extend(crate::service::watch_health(svc));
        }
        publish_metrics(ctx.metrics, Arc::clone(&services));
        let role: Box<dyn Role> = Box::new(BalancerRole {
            services,
            settings,
            bound,
            tasks: Mutex::new(tasks),
            l4,
            failover,
            running: Mutex::new(config.balancer.clone()),
            runtime: tokio::runtime::Handle::current(),
        });
        Ok(role)
    })
}

fn mode_name(mode: MediaMode) -> &'static str {
    match mode {
        MediaMode::Relay => "relay",
        MediaMode::Direct => "direct",
        MediaMode::Redirect => "redirect",
    }
}

/// Sessions whose timeout passed leave the table (the sessions' back ends expire them
/// on their own), and relayed streams idle for `media_timeout` close.
async fn expire_sessions(services: Arc<[Arc<Service>]>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = Instant::now();
        for svc in services.iter() {
            svc.expire(now);
            svc.expire_media(now);
        }
    }
}

struct BalancerRole {
    services: Arc<[Arc<Service>]>,
    settings: Arc<Settings>,
    bound: Vec<SocketAddr>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    l4: Vec<Arc<L4Running>>,
    /// `sync_*`/`vrrp_*` keys set: the failover state.
    failover: Option<Arc<Failover>>,
    /// `[balancer]` as it runs now: as started, then as each reload left it.
    running: Mutex<BalancerConfig>,
    /// The runtime the role started on: a reload's new health checks run there.
    runtime: tokio::runtime::Handle,
}

/// `wanted` with everything a running balancer cannot change put back to `running`
/// (listeners, modes, port ranges, schedulers, limits; services added or removed),
/// and what was put back listed. Back ends and their weights are what a reload
/// applies.
fn applicable(running: &BalancerConfig, wanted: &BalancerConfig) -> (BalancerConfig, Vec<String>) {
    let mut next = wanted.clone();
    let mut notes = Vec::new();
    keep_until_restart(
        "balancer.max_connections",
        &running.max_connections,
        &mut next.max_connections,
        &mut notes,
    );
    keep_until_restart(
        "balancer.header_timeout",
        &running.header_timeout,
        &mut next.header_timeout,
        &mut notes,
    );
    keep_until_restart(
        "balancer.max_sessions",
        &running.max_sessions,
        &mut next.max_sessions,
        &mut notes,
    );
    keep_until_restart(
        "balancer.session_timeout",
        &running.session_timeout,
        &mut next.session_timeout,
        &mut notes,
    );
    keep_until_restart(
        "balancer.max_pending_setups",
        &running.max_pending_setups,
        &mut next.max_pending_setups,
        &mut notes,
    );
    keep_until_restart(
        "balancer.max_streams_per_session",
        &running.max_streams_per_session,
        &mut next.max_streams_per_session,
        &mut notes,
    );
    keep_until_restart(
        "balancer.sync_listen",
        &running.sync_listen,
        &mut next.sync_listen,
        &mut notes,
    );
    keep_until_restart(
        "balancer.sync_peer",
        &running.sync_peer,
        &mut next.sync_peer,
        &mut notes,
    );
    keep_until_restart(
        "balancer.vrrp_state_file",
        &running.vrrp_state_file,
        &mut next.vrrp_state_file,
        &mut notes,
    );
    keep_until_restart(
        "balancer.vrrp_track_file",
        &running.vrrp_track_file,
        &mut next.vrrp_track_file,
        &mut notes,
    );
    keep_until_restart(
        "balancer.forward_scheduling",
        &running.forward_scheduling,
        &mut next.forward_scheduling,
        &mut notes,
    );
    keep_until_restart(
        "balancer.rtsp_scheduling",
        &running.rtsp_scheduling,
        &mut next.rtsp_scheduling,
        &mut notes,
    );
    keep_until_restart(
        "balancer.relay_socket_buffer",
        &running.relay_socket_buffer,
        &mut next.relay_socket_buffer,
        &mut notes,
    );
    keep_until_restart(
        "balancer.media_timeout",
        &running.media_timeout,
        &mut next.media_timeout,
        &mut notes,
    );
    let mut services: Vec<ServiceConfig> = Vec::new();
    for run in &running.service {
        let name = run.name.get();
        let Some(want) = wanted.service.iter().find(|s| s.name.get() == name) else {
            notes.push(format!(
                "removing service \"{name}\" needs a restart (it keeps running)"
            ));
            services.push(run.clone());
            continue;
        };
        let mut svc = want.clone();
        let key = |k: &str| format!("balancer.service \"{name}\" {k}");
        keep_until_restart(&key("listen"), &run.listen, &mut svc.listen, &mut notes);
        keep_until_restart(&key("kind"), &run.kind, &mut svc.kind, &mut notes);
        keep_until_restart(
            &key("media_mode"),
            &run.media_mode,
            &mut svc.media_mode,
            &mut notes,
        );
        keep_until_restart(&key("ports"), &run.ports, &mut svc.ports, &mut notes);
        keep_until_restart(
            &key("proxy_protocol"),
            &run.proxy_protocol,
            &mut svc.proxy_protocol,
            &mut notes,
        );
        keep_until_restart(
            &key("scheduler"),
            &run.scheduler,
            &mut svc.scheduler,
            &mut notes,
        );
        keep_until_restart(
            &key("load_factor"),
            &run.load_factor,
            &mut svc.load_factor,
            &mut notes,
        );
        keep_until_restart(
            &key("persistence_timeout"),
            &run.persistence_timeout,
            &mut svc.persistence_timeout,
            &mut notes,
        );
        keep_until_restart(&key("health"), &run.health, &mut svc.health, &mut notes);
        keep_until_restart(
            &key("udp_ports"),
            &run.udp_ports,
            &mut svc.udp_ports,
            &mut notes,
        );
        services.push(svc);
    }
    for want in &wanted.service {
        if !running
            .service
            .iter()
            .any(|s| s.name.get() == want.name.get())
        {
            notes.push(format!(
                "adding service \"{}\" needs a restart",
                want.name.get()
            ));
        }
    }
    next.service = services;
    (next, notes)
}

impl BalancerRole {
    fn services_json(&self) -> Value {
        Value::Array(
            self.services
                .iter()
                .map(|s| {
                    let st = &s.stats;
                    json!({
                        "name": s.name,
                        "mode": mode_name(s.mode),
                        "listen": s.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "sessions": s.sessions(),
                        "connections_open": read(&st.connections_open),
                        "connections_total": read(&st.connections),
                        "connections_refused_total": read(&st.connections_refused),
                        "requests_total": read(&st.requests),
                        "bad_requests_total": read(&st.bad_requests),
                        "unknown_sessions_total": read(&st.unknown_sessions),
                        "redirects_total": read(&st.redirects),
                        "tunnels_total": read(&st.tunnels),
                    })
                })
                .collect(),
        )
    }

    fn backends_json(&self) -> Value {
        let mut out = Vec::new();
        for s in self.services.iter() {
            for (b, f) in s.figures() {
                out.push(json!({
                    "service": s.name,
                    "backend": b.spec.to_string(),
                    "address": b.addr.to_string(),
                    "weight": b.weight(),
                    "up": b.up(),
                    "retired": b.retired(),
                    "sessions": f.sessions,
                    "sessions_total": f.sessions_total,
                    "connections_total": f.connections,
                    "connect_failures_total": f.connect_failures,
                    "bytes_in_total": f.bytes_in,
                    "bytes_out_total": f.bytes_out,
                    "packets_total": f.packets,
                    "health_transitions_total": f.health_transitions,
                }));
            }
        }
        Value::Array(out)
    }
}

impl Role for BalancerRole {
    fn name(&self) -> &'static str {
        "balancer"
    }

    fn serving(&self) -> String {
        let addrs: Vec<String> = self.bound.iter().map(ToString::to_string).collect();
        format!("balancer on {}", addrs.join(", "))
    }

    fn stats(&self) -> RoleStats {
        RoleStats {
            sessions: self.services.iter().map(|s| s.sessions() as u64).sum(),
            unit: "sessions",
        }
    }

    fn max_drain(&self) -> Duration {
        DRAIN_TIME
    }

    /// New back ends join, changed weights apply to new sessions, and back ends no
    /// longer listed are retired: no new sessions, running ones are never dropped.
    fn reload(&self, config: &Config) -> Reload {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let (next, needs_restart) = applicable(&running, &config.balancer);
        let _enter = self.runtime.enter();
        let mut tasks = Vec::new();
        for sc in &next.service {
            if let Some(svc) = self.services.iter().find(|s| s.name == *sc.name.get()) {
                tasks.extend(svc.reload_backends(sc));
            }
        }
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(tasks);
        tracing::info!("balancer: reloaded: back ends and weights apply to new sessions; running sessions keep their back ends");
        *running = next;
        Reload::Applied { needs_restart }
    }

    fn snapshot(&self, resource: &str) -> Option<RoleFuture<'_, Value>> {
        let value = match resource {
            "services" => self.services_json(),
            "backends" => self.backends_json(),
            "failover" => self.failover.as_ref().map_or_else(
                || serde_json::json!({"configured": false, "active": true, "state": "active"}),
                |f| f.json(),
            ),
            _ => return None,
        };
        Some(Box::pin(async move { value }))
    }

    fn drain(&self, cut: DrainCut) -> RoleFuture<'static, DrainReport> {
        // No new connections from now on; running ones end on their own.
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        let settings = Arc::clone(&self.settings);
        let l4 = self.l4.clone();
        Box::pin(async move {
            let wait = async {
                // L4 services stop accepting and give their flows the drain time.
                for service in &l4 {
                    service.stop(DRAIN_TIME).await;
                }
                while settings.open.load(Ordering::Relaxed) > 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                () = wait => {}
                () = cut.pulled_or_after(DRAIN_TIME) => {}
            }
            let left = settings.open.load(Ordering::Relaxed);
            DrainReport {
                ended: left,
                complete: left == 0,
            }
        })
    }
}

/// The counters per service and per back end, read at each scrape. Labels come from
/// the configured services and back ends, a bounded set.
struct BalancerMetrics(Arc<[Arc<Service>]>);

impl Collect for BalancerMetrics {
    fn collect(&self, scrape: &mut Scrape<'_>) -> std::fmt::Result {
        let services = &self.0;
        let by_service = |f: &dyn Fn(&Service) -> u64| -> Vec<(String, u64)> {
            services.iter().map(|s| (s.name.clone(), f(s))).collect()
        };
        let mut per_backend: Vec<(String, Figures)> = Vec::new();
        for s in services.iter() {
            for (b, f) in s.figures() {
                per_backend.push((format!("{}/{}", s.name, b.addr), f));
            }
        }
        let emit_counter = |scrape: &mut Scrape<'_>,
                            name: &str,
                            help: &str,
                            label: &str,
                            v: Vec<(String, u64)>| {
            let refs: Vec<(&str, u64)> = v.iter().map(|(k, n)| (k.as_str(), *n)).collect();
            scrape.counter_by(name, help, label, &refs)
        };
        let emit_gauge = |scrape: &mut Scrape<'_>,
                          name: &str,
                          help: &str,
                          label: &str,
                          v: Vec<(String, u64)>| {
            let refs: Vec<(&str, i64)> = v
                .iter()
                .map(|(k, n)| (k.as_str(), i64::try_from(*n).unwrap_or(i64::MAX)))
                .collect();
            scrape.gauge_by(name, help, label, &refs)
        };
        emit_gauge(
            scrape,
            "sessions",
            "RTSP sessions in the table, per service",
            "service",
            by_service(&|s| s.sessions() as u64),
        )?;
        emit_gauge(
            scrape,
            "connections_open",
            "Client connections open now, per service",
            "service",
            by_service(&|s| read(&s.stats.connections_open)),
        )?;
        emit_counter(
            scrape,
            "connections",
            "Client connections accepted, per service",
            "service",
            by_service(&|s| read(&s.stats.connections)),
        )?;
        emit_counter(
            scrape,
            "connections_refused",
            "Client connections closed at accept by max_connections, per service",
            "service",
            by_service(&|s| read(&s.stats.connections_refused)),
        )?;
        emit_counter(
            scrape,
            "requests",
            "RTSP requests from clients, per service",
            "service",
            by_service(&|s| read(&s.stats.requests)),
        )?;
        emit_counter(
            scrape,
            "bad_requests",
            "Malformed or oversized client input answered with 400, per service",
            "service",
            by_service(&|s| read(&s.stats.bad_requests)),
        )?;
        emit_counter(
            scrape,
            "unknown_sessions",
            "Requests naming a session the balancer does not know (454), per service",
            "service",
            by_service(&|s| read(&s.stats.unknown_sessions)),
        )?;
        emit_counter(
            scrape,
            "no_backend",
            "Requests answered 503 because no back end took them, per service",
            "service",
            by_service(&|s| read(&s.stats.no_backend)),
        )?;
        emit_counter(
            scrape,
            "redirects",
            "Requests answered with 302 in redirect mode, per service",
            "service",
            by_service(&|s| read(&s.stats.redirects)),
        )?;
        emit_counter(
            scrape,
            "tunnels",
            "HTTP tunnel halves (GET or POST) relayed, per service",
            "service",
            by_service(&|s| read(&s.stats.tunnels)),
        )?;
        emit_counter(
            scrape,
            "sessions_expired",
            "Sessions removed by their timeout, per service",
            "service",
            by_service(&|s| read(&s.stats.sessions_expired)),
        )?;
        emit_counter(
            scrape,
            "media_timeouts",
            "Relayed streams closed after media_timeout without RTP either way, per service",
            "service",
            by_service(&|s| read(&s.stats.media_timeouts)),
        )?;
        let per = |f: &dyn Fn(&Figures) -> u64| -> Vec<(String, u64)> {
            per_backend
                .iter()
                .map(|(k, fig)| (k.clone(), f(fig)))
                .collect()
        };
        emit_gauge(
            scrape,
            "backend_sessions",
            "RTSP sessions per back end (service/address)",
            "backend",
            per(&|f| f.sessions),
        )?;
        emit_counter(
            scrape,
            "backend_sessions_started",
            "Sessions given to each back end",
            "backend",
            per(&|f| f.sessions_total),
        )?;
        emit_counter(
            scrape,
            "backend_connections",
            "Connections opened to each back end",
            "backend",
            per(&|f| f.connections),
        )?;
        emit_counter(
            scrape,
            "backend_connect_failures",
            "Failed connections to each back end",
            "backend",
            per(&|f| f.connect_failures),
        )?;
        emit_counter(
            scrape,
            "backend_received_bytes",
            "Bytes from clients to each back end",
            "backend",
            per(&|f| f.bytes_in),
        )?;
        emit_counter(
            scrape,
            "backend_sent_bytes",
            "Bytes from each back end to clients",
            "backend",
            per(&|f| f.bytes_out),
        )?;
        emit_counter(
            scrape,
            "backend_packets",
            "Interleaved RTP/RTCP packets both ways, per back end",
            "backend",
            per(&|f| f.packets),
        )?;
        emit_counter(
            scrape,
            "backend_health_transitions",
            "Health state changes per back end",
            "backend",
            per(&|f| f.health_transitions),
        )?;
        let forward = |f: &dyn Fn(&Service) -> &Histogram| -> Vec<(&str, &Histogram)> {
            services.iter().map(|s| (s.name.as_str(), f(s))).collect()
        };
        scrape.histogram_by(
            "rtsp_request_forward_seconds",
            "The balancer's own time per RTSP request, from its bytes read from the client to its rewritten bytes handed to the back end's socket, per service",
            "service",
            &forward(&|s| &s.stats.request_forward.0),
        )?;
        scrape.histogram_by(
            "rtsp_response_forward_seconds",
            "The balancer's own time per RTSP response, from its bytes read from the back end to its rewritten bytes handed to the client's socket, per service",
            "service",
            &forward(&|s| &s.stats.response_forward.0),
        )?;
        Ok(())
    }
}

fn publish_metrics(metrics: &Metrics, services: Arc<[Arc<Service>]>) {
    metrics.register("balancer", |m| m.collect(BalancerMetrics(services)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer(text: &str) -> BalancerConfig {
        let full = format!("[edge]\nenabled = false\n[balancer]\nenabled = true\n{text}");
        mediagate_config::parse_config(&full).unwrap().balancer
    }

    const ONE: &str = "[[balancer.service]]\nname = \"a\"\nlisten = [\"127.0.0.1:554\"]\nbackends = [\"10.0.0.1:554\"]\n";

    #[test]
    fn back_ends_reload_and_the_rest_waits_for_a_restart() {
        let running = balancer(ONE);
        let wanted = balancer(&format!(
            "max_sessions = 5\n{}media_mode = \"direct\"\n[[balancer.service]]\nname = \"b\"\nlisten = [\"127.0.0.1:555\"]\nbackends = [\"10.0.0.3:554\"]\n",
            ONE.replace("backends = [\"10.0.0.1:554\"]", "backends = [\"10.0.0.2:554 weight=3\"]")
        ));
        let (next, notes) = applicable(&running, &wanted);
        assert_eq!(
            notes,
            [
                "balancer.max_sessions needs a restart (running with 100000, the file says 5)",
                "balancer.service \"a\" media_mode needs a restart (running with \"relay\", the file says \"direct\")",
                "adding service \"b\" needs a restart",
            ]
        );
        assert_eq!(next.max_sessions, running.max_sessions);
        assert_eq!(next.service.len(), 1);
        assert_eq!(*next.service[0].media_mode.get(), MediaMode::Relay);
        assert_eq!(
            next.service[0].backends[0].get().to_string(),
            "10.0.0.2:554 weight=3"
        );
    }

    #[test]
    fn a_service_removed_from_the_file_keeps_running() {
        let running = balancer(ONE);
        let wanted = balancer(&ONE.replace("\"a\"", "\"c\""));
        let (next, notes) = applicable(&running, &wanted);
        assert_eq!(
            notes,
            [
                "removing service \"a\" needs a restart (it keeps running)",
                "adding service \"c\" needs a restart",
            ]
        );
        assert_eq!(next.service[0].name.get(), "a");
    }
}
