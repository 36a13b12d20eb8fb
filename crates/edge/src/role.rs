//! The edge as one of the binary's roles: started from `[edge]`, listening on its RTSP
//! and HTTP-tunnel addresses, every finished viewer session written to the records
//! store (`edge_sessions`) and, when `[log] access_log` is set, to the access log,
//! reloaded on SIGHUP ([`Edge::reload`]: new routes, rules,
//! limits and timers for what starts from then on; listeners, the UDP port range and
//! transparent mode need a restart), drained on SIGTERM or by the admin API
//! ([`Edge::drain`]: no new connections, every viewer session ended cleanly, origin
//! sessions torn down, within `[edge] drain_time`). Its live picture for the admin API
//! is `streams` (one per live origin session) and `viewers` (one per viewer session); a
//! viewer can be disconnected. With `[edge.cache]` on it opens the cache directory
//! before it listens (logging what recovery kept) and answers the admin API's cache
//! list, pin, unpin and purge.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use std::sync::Arc;

use mediagate_config::{Config, EdgeConfig};
use mediagate_ops::role::{
    keep_until_restart, ActError, DrainCut, DrainReport, Reload, Role, RoleContext, RoleFuture,
    RoleKind, RoleStats, StartResult,
};
use mediagate_ops::store::Record;

use crate::access::access_line;
use crate::cache_admin::{self, CacheTarget};
use crate::cache_store::CacheStore;
use crate::record::ViewerSessionRecord;
use serde_json::{json, Value};

use crate::server::Edge;

/// The edge in the binary's list of roles.
pub const KIND: RoleKind = RoleKind {
    name: "edge",
    enabled: |config| *config.edge.enabled.get(),
    record_tables: &[ViewerSessionRecord::TABLE],
    start,
};

/// How long disconnecting a viewer by API waits for its session to be gone, so the
/// answer means "ended" (flushing its queued output is bounded the same way).
const DISCONNECT_WAIT: Duration = Duration::from_secs(3);

/// Opens the cache `[edge.cache]` describes, or none when it is off. Blocking work
/// (the index is rebuilt from disk) runs off the async threads.
async fn open_cache(config: &Config) -> Result<Option<Arc<CacheStore>>, String> {
    let cache = &config.edge.cache;
    if !*cache.enabled.get() {
        tracing::info!("edge: on-demand cache off ([edge.cache] enabled = false); every on-demand viewer gets its own origin session");
        return Ok(None);
    }
    let dir = cache.dir_under(config.state_dir.get());
    let limit = cache.size.bytes();
    let opened = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || CacheStore::open(&dir, limit)).await
    };
    let store = match opened {
        Ok(Ok(store)) => store,
        // Another edge's directory: its own message names it and the holder.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(e.to_string()),
        Ok(Err(e)) => {
            return Err(format!(
                "cannot open the cache directory {}: {e}; make it writable, set [edge.cache] dir, or turn the cache off (enabled = false, or --no-cache)",
                dir.display()
            ))
        }
        Err(e) => return Err(format!("opening the cache directory {} failed: {e}", dir.display())),
    };
    store.set_default_ttl(cache.default_ttl.into());
    store.set_memory_limit(cache.memory.bytes());
    let (objects, used) = {
        let cache = store.lock();
        (cache.len(), cache.used_bytes())
    };
    tracing::info!(
        dir = %dir.display(),
        objects,
        used_bytes = used,
        limit_bytes = limit,
        "edge: on-demand cache ready"
    );
    Ok(Some(store))
}

fn start<'a>(config: &'a Config, ctx: RoleContext<'a>) -> RoleFuture<'a, StartResult> {
    Box::pin(async move {
        let cache = open_cache(config).await?;
        let records = ctx.records.map(|r| r.sink());
        let access = ctx.access_log.cloned();
        let edge = if records.is_none() && access.is_none() {
            Edge::new(&config.edge, ctx.node_name)
        } else {
            let on_ended = move |ended: &crate::EndedSession| {
                if let Some(access) = &access {
                    // A full queue is counted and warned about by the access log.
                    access.send(access_line(ended));
                }
                if let Some(sink) = &records {
                    if !sink.send(ViewerSessionRecord::from(ended)) {
                        tracing::error!(
                            session = %ended.session,
                            "edge: the records writer has closed; this viewer session is not stored"
                        );
                    }
                }
            };
            Edge::with_listener(&config.edge, ctx.node_name, Arc::new(on_ended))
        };
        if let Some(store) = cache {
            edge.attach_cache(store);
        }
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
        let role: Box<dyn Role> = Box::new(EdgeRole {
            edge,
            bound,
            running: Mutex::new(config.edge.clone()),
        });
        Ok(role)
    })
}

struct EdgeRole {
    edge: Edge,
    bound: Vec<SocketAddr>,
    /// The `[edge]` section as it runs now: as started, then as each reload left it.
    running: Mutex<EdgeConfig>,
}

impl EdgeRole {
    fn running(&self) -> std::sync::MutexGuard<'_, EdgeConfig> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long a drain may spend flushing viewers' queued output and tearing down
    /// origin sessions. The edge does not wait for viewers to leave on their own (a
    /// live viewer never does), so this only bounds the clean-up.
    fn drain_time(&self) -> Duration {
        self.running().drain_time.get()
    }
}

/// `wanted` with every setting that cannot change while the edge runs put back to its
/// `running` value; what was put back is listed.
fn applicable(running: &EdgeConfig, wanted: &EdgeConfig) -> (EdgeConfig, Vec<String>) {
    let mut next = wanted.clone();
    let mut notes = Vec::new();
    // Listeners are bound once; viewers' UDP ports come from a pool sized at start;
    // transparent mode is decided when a connection is accepted, with its socket.
    keep_until_restart("edge.listen", &running.listen, &mut next.listen, &mut notes);
    keep_until_restart(
        "edge.http_tunnel_listen",
        &running.http_tunnel_listen,
        &mut next.http_tunnel_listen,
        &mut notes,
    );
    keep_until_restart(
        "edge.udp_ports",
        &running.udp_ports,
        &mut next.udp_ports,
        &mut notes,
    );
    keep_until_restart(
        "edge.transparent",
        &running.transparent,
        &mut next.transparent,
        &mut notes,
    );
    // The cache directory is opened and its index built once, at start.
    keep_until_restart("edge.cache", &running.cache, &mut next.cache, &mut notes);
    (next, notes)
}

impl EdgeRole {
    /// The origin URL a viewer's request for `url` goes to, when the routes give one
    /// other than `url` itself.
    fn origin_url(&self, url: &str) -> Option<String> {
        let target = self.edge.resolve_as_viewer(url).ok()?;
        let origin = target.url.without_credentials().to_string();
        (origin != url).then_some(origin)
    }

    /// `POST /api/v1/cache/prefetch`: starts a fill with no viewer; answers with its
    /// entry in the prefetch list once the origin accepted the PLAY.
    async fn prefetch(&self, store: Arc<CacheStore>, body: Value) -> Result<Value, ActError> {
        use crate::prefetch::{PrefetchStart, StartError, DEFAULT_SPEED};
        let req = cache_admin::PrefetchRequest::from_body(body)?;
        let target = self.edge.resolve_as_viewer(&req.url).map_err(|e| match e {
            crate::routing::RouteError::BadUrl(why) => {
                ActError::BadRequest(format!("{:?} is not an RTSP URL: {why}", req.url))
            }
            other => ActError::NotFound(format!(
                "{other}; name the URL a viewer asks this edge for (a route's advertised path), or an origin the forward rules allow"
            )),
        })?;
        if !target.cache {
            return Err(ActError::Unavailable(format!(
                "the route {} does not cache (cache = false)",
                target.rule.as_deref().unwrap_or("for this URL")
            )));
        }
        let (guard, drain) = self.edge.task_guard();
        let job = self
            .edge
            .prefetches()
            .start(PrefetchStart {
                store,
                max_object_bytes: target.cache_max_object.unwrap_or(u64::MAX),
                target,
                asked: req.url,
                tracks: req.tracks,
                speed: req.speed.unwrap_or(DEFAULT_SPEED),
                guard,
                drain,
            })
            .await
            .map_err(|e| match e {
                StartError::BadRequest(m) => ActError::BadRequest(m),
                StartError::Busy(m) => ActError::Unavailable(m),
                StartError::Origin(m) => ActError::Failed(format!("the origin: {m}")),
            })?;
        Ok(job.to_json())
    }

    /// `POST /api/v1/cache/prefetch/cancel`: ends the running prefetches of a URL (by
    /// the edge's or the origin's name); what they held stays as a partial object.
    async fn cancel_prefetch(&self, body: Value) -> Result<Value, ActError> {
        let target = CacheTarget::from_body(body)?;
        let prefetches = self.edge.prefetches();
        let mut jobs = prefetches.running(&target.url, target.tracks.as_deref());
        if jobs.is_empty() {
            if let Some(origin) = self.origin_url(&target.url) {
                jobs = prefetches.running(&origin, target.tracks.as_deref());
            }
        }
        if jobs.is_empty() {
            return Err(ActError::NotFound(format!(
                "no prefetch of {:?} runs; GET /api/v1/cache/prefetch lists those that do",
                target.url
            )));
        }
        for job in &jobs {
            crate::prefetch::cancel(job, PREFETCH_CANCEL_WAIT).await;
        }
        Ok(json!({
            "url": target.url,
            "cancelled": jobs.iter().map(|j| j.to_json()).collect::<Vec<_>>(),
        }))
    }
}

/// How long cancelling a prefetch waits for its run to be ended in the cache, so the
/// answer says what it left.
const PREFETCH_CANCEL_WAIT: Duration = Duration::from_secs(10);

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
        self.drain_time()
    }

    fn reload(&self, config: &Config) -> Reload {
        let mut running = self.running();
        let (next, needs_restart) = applicable(&running, &config.edge);
        self.edge.reload(&next);
        tracing::info!(
            routes = next.route.len(),
            "edge: reloaded: new routes, rules and limits apply to new sessions; running viewers keep their streams"
        );
        *running = next;
        Reload::Applied { needs_restart }
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

    fn act(
        &self,
        resource: &str,
        action: &str,
        body: Value,
    ) -> Option<RoleFuture<'_, Result<Value, ActError>>> {
        if resource != "cache" {
            return None;
        }
        let store = self.edge.cache();
        let action = action.to_owned();
        Some(Box::pin(async move {
            let Some(store) = store else {
                return Err(ActError::Unavailable(
                    "this edge runs without a cache ([edge.cache] enabled = false)".into(),
                ));
            };
            match action.as_str() {
                "prefetches" => return Ok(self.edge.prefetches().list()),
                "prefetch" => return self.prefetch(store, body).await,
                "prefetch_cancel" => return self.cancel_prefetch(body).await,
                _ => {}
            }
            let target = match action.as_str() {
                "list" => None,
                _ => Some(CacheTarget::from_body(body)?),
            };
            // The URL a viewer uses names the origin's object too.
            let resolved = target.as_ref().and_then(|t| self.origin_url(&t.url));
            // File work (a purge removes files) stays off the async threads.
            tokio::task::spawn_blocking(move || {
                let mut cache = store.lock();
                match target {
                    None => Ok(cache_admin::list(&cache)),
                    Some(mut target) => {
                        if let Some(origin) =
                            resolved.filter(|_| !cache_admin::holds(&cache, &target.url))
                        {
                            target.url = origin;
                        }
                        cache_admin::apply(&mut cache, &action, &target)
                    }
                }
            })
            .await
            .map_err(|_| ActError::Failed("the cache action failed; see the process log".into()))?
        }))
    }

    fn drain(&self, cut: DrainCut) -> RoleFuture<'static, DrainReport> {
        let drain_time = self.drain_time();
        let edge = self.edge.clone();
        Box::pin(async move {
            let report = tokio::select! {
                report = edge.drain(drain_time) => Some(report),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(toml_text: &str) -> EdgeConfig {
        mediagate_config::parse_config(toml_text)
            .expect("valid test config")
            .edge
    }

    #[test]
    fn routes_limits_and_timers_apply_and_listeners_wait_for_a_restart() {
        let running = edge("[edge]\nlisten = [\"127.0.0.1:8554\"]\n");
        let wanted = edge(
            "[edge]\nlisten = [\"127.0.0.1:9554\"]\nudp_ports = \"30000-30099\"\ntransparent = true\nmax_viewers = 5\nlinger = \"1s\"\ndrain_time = \"3s\"\n[[edge.route]]\nadvertised = \"/a\"\norigin = \"rtsp://o/a\"\n[edge.forward]\nallow = [\"192.0.2.0/24\"]\n",
        );
        let (next, notes) = applicable(&running, &wanted);
        assert_eq!(next.listen, running.listen);
        assert_eq!(next.udp_ports, running.udp_ports);
        assert_eq!(next.transparent, running.transparent);
        assert_eq!(next.route, wanted.route);
        assert_eq!(next.max_viewers, wanted.max_viewers);
        assert_eq!(next.linger, wanted.linger);
        assert_eq!(next.drain_time, wanted.drain_time);
        assert_eq!(next.forward, wanted.forward);
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes[0].starts_with("edge.listen needs a restart"),
            "{notes:?}"
        );
        assert!(
            notes[1].starts_with("edge.udp_ports needs a restart"),
            "{notes:?}"
        );
        assert!(
            notes[2].starts_with("edge.transparent needs a restart"),
            "{notes:?}"
        );
    }

    #[test]
    fn the_drain_time_follows_the_config_and_its_reloads() {
        let started = mediagate_config::parse_config("").expect("defaults");
        let role = EdgeRole {
            edge: Edge::new(&started.edge, "test"),
            bound: Vec::new(),
            running: Mutex::new(started.edge.clone()),
        };
        assert_eq!(role.max_drain(), Duration::from_secs(10));
        let wanted = mediagate_config::parse_config(
            "[edge]\ndrain_time = \"3s\"\nlisten = [\"127.0.0.1:1\"]\n",
        )
        .expect("valid test config");
        let Reload::Applied { needs_restart } = role.reload(&wanted) else {
            panic!("the edge reloads");
        };
        assert_eq!(role.max_drain(), Duration::from_secs(3));
        assert_eq!(needs_restart.len(), 1, "{needs_restart:?}");
        assert_eq!(role.running().listen, started.edge.listen);
    }

    #[test]
    fn the_cache_settings_wait_for_a_restart() {
        let running = edge("[edge.cache]\nsize = \"1GiB\"\n");
        let wanted = edge("[edge.cache]\nsize = \"2GiB\"\ndir = \"/srv/cache\"\n");
        let (next, notes) = applicable(&running, &wanted);
        assert_eq!(next.cache, running.cache);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("edge.cache needs a restart"),
            "{notes:?}"
        );
    }

    #[test]
    fn an_unchanged_file_needs_nothing() {
        let running = edge("[[edge.route]]\nadvertised = \"/a\"\norigin = \"rtsp://o/a\"\n");
        let (next, notes) = applicable(&running, &running.clone());
        assert_eq!(next, running);
        assert!(notes.is_empty());
    }
}
