//! The dispatcher as one of the binary's roles, started from `[dispatcher]`.
//!
//! What it does: starts the in-process relays of `[[dispatcher.local_relay]]` (each a
//! relay engine with the `[relay]` section's timeouts, limits and latching, its own
//! media address and ports, no `ng` listener of its own, records to the process's
//! records writer) in a [`LocalPool`]; opens the session map
//! (`STATE_DIR/dispatcher-sessions.sqlite`); then the front doors: `ng` over UDP and
//! TCP and MediaProxy's UNIX socket. On drain the front doors close at once (proxies
//! fail over) and the local relays drain as the relay role does: running calls may
//! finish within `relay.shutdown_max_wait`, a second signal cuts them.
//!
//! With `relay_listen` and `tls_dir` it also listens for relays over mutual TLS
//! ([`LinkPool`]); with local relays as well, both pools serve behind one
//! ([`MultiPool`](crate::multi_pool::MultiPool)).
//!
//! What it does not (yet): reload (a SIGHUP changes nothing here; restart to apply a
//! new `[dispatcher]`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mediagate_config::Config;
use mediagate_ops::role::{
    DrainCut, DrainReport, Role, RoleContext, RoleFuture, RoleKind, RoleStats, StartResult,
};
use mediagate_ops::store::Record;
use mediagate_relay::engine::{EngineConfig, Relay};
use mediagate_relay::record::SessionRecord;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tracing::info;

use crate::front_ng::NgFront;
use crate::link::LinkPool;
use crate::local_pool::LocalPool;
use crate::router::{LogEnded, Router};
use crate::sessions::SessionMap;

/// The dispatcher in the binary's list of roles.
pub const KIND: RoleKind = RoleKind {
    name: "dispatcher",
    enabled: |config| *config.dispatcher.enabled.get(),
    // Local relays write the relay's call records.
    record_tables: &[SessionRecord::TABLE],
    start,
};

/// The session map's file under the state directory.
pub const SESSIONS_FILE: &str = "dispatcher-sessions.sqlite";

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A local relay did not start.
    #[error("local relay \"{name}\": {source}")]
    LocalRelay {
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: mediagate_relay::engine::StartError,
    },
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {at}: {source}")]
    Listen {
        /// `ng (UDP)`, `ng (TCP)` or `MediaProxy requests`.
        what: &'static str,
        /// The address or path.
        at: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The state directory could not be created.
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The session map could not be opened.
    #[error(transparent)]
    Sessions(#[from] crate::sessions::OpenError),
    /// The relay link could not start.
    #[error(transparent)]
    Link(#[from] crate::link::LinkStartError),
    /// `relay_listen` without `tls_dir`.
    #[error("dispatcher.relay_listen needs dispatcher.tls_dir (ca.pem, cert.pem, key.pem)")]
    LinkWithoutTlsDir,
    /// The relay link's TLS directory is unusable.
    #[error("dispatcher.tls_dir: {0}")]
    LinkTls(#[from] mediagate_link::tls::TlsError),
}

fn start<'a>(config: &'a Config, ctx: RoleContext<'a>) -> RoleFuture<'a, StartResult> {
    Box::pin(async move {
        let started = Dispatcher::start(config, ctx.records.map(|w| w.sink())).await?;
        let role: Box<dyn Role> = Box::new(started);
        Ok(role)
    })
}

/// A running dispatcher: its router, relays and front doors.
pub struct Dispatcher {
    router: Arc<Router>,
    pool: Arc<LocalPool>,
    link: Option<LinkPool>,
    shutdown: watch::Sender<bool>,
    ng_udp: Vec<std::net::SocketAddr>,
    ng_tcp: Vec<std::net::SocketAddr>,
    mediaproxy_socket: Option<PathBuf>,
    max_drain: Duration,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("ng_udp", &self.ng_udp)
            .field("ng_tcp", &self.ng_tcp)
            .field("mediaproxy_socket", &self.mediaproxy_socket)
            .finish()
    }
}

impl Dispatcher {
    /// Starts everything `config.dispatcher` names; local relays' records go to
    /// `records` when given.
    pub async fn start(
        config: &Config,
        records: Option<mediagate_ops::store::RecordSink>,
    ) -> Result<Self, StartError> {
        let d = &config.dispatcher;
        let mut pool = LocalPool::new();
        for local in d.local_relay.iter() {
            let mut engine = EngineConfig::from_config(&config.relay);
            engine.ng_udp = Vec::new();
            engine.ng_tcp = Vec::new();
            let address: IpAddr = local.address.get().0;
            let advertised = local.advertised.map_or(address, |a| a.0);
            engine.media = vec![(address, advertised)];
            let range = local.ports.get().range();
            engine.ports = (range.low(), range.high());
            if let Some(sink) = &records {
                engine = engine.with_records(sink.clone());
            }
            let relay = Relay::start(engine)
                .await
                .map_err(|source| StartError::LocalRelay {
                    name: local.name.clone(),
                    source,
                })?;
            let mut addresses = vec![address, advertised];
            addresses.dedup();
            pool.add(&local.name, addresses, relay);
            info!(
                "dispatcher: local relay {} on {advertised}, ports {}",
                local.name,
                local.ports.get()
            );
        }
        let pool = Arc::new(pool);
        pool.watch(Duration::from_secs(1));
        let link = crate::link::start_from_config(d).await?;
        let state_dir = config.state_dir.get();
        std::fs::create_dir_all(state_dir).map_err(|source| StartError::StateDir {
            path: state_dir.display().to_string(),
            source,
        })?;
        let map = SessionMap::open(&state_dir.join(SESSIONS_FILE))?;
        if !map.is_empty() {
            info!(
                "dispatcher: {} call(s) remembered from the last run",
                map.len()
            );
        }
        let relays = crate::multi_pool::joined(&pool, link.as_ref());
        let router = Router::start(relays, map, d.relay_timeout.get(), Arc::new(LogEnded));
        pool.announce();

        let (shutdown, _) = watch::channel(false);
        let front = Arc::new(NgFront::new(Arc::clone(&router)));
        let mut ng_udp = Vec::new();
        for addr in &d.ng_listen_udp {
            let socket =
                UdpSocket::bind(addr.get())
                    .await
                    .map_err(|source| StartError::Listen {
                        what: "ng (UDP)",
                        at: addr.get().to_string(),
                        source,
                    })?;
            let pktinfo = mediagate_relay::ng_listener::wildcard_pktinfo(&socket, "dispatcher");
            ng_udp.extend(socket.local_addr().ok());
            tokio::spawn(mediagate_relay::ng_listener::serve_udp(
                Arc::clone(&front),
                socket,
                pktinfo,
                shutdown.subscribe(),
            ));
        }
        let mut ng_tcp = Vec::new();
        for addr in &d.ng_listen_tcp {
            let listener =
                TcpListener::bind(addr.get())
                    .await
                    .map_err(|source| StartError::Listen {
                        what: "ng (TCP)",
                        at: addr.get().to_string(),
                        source,
                    })?;
            ng_tcp.extend(listener.local_addr().ok());
            tokio::spawn(mediagate_relay::ng_listener::serve_tcp(
                Arc::clone(&front),
                listener,
                shutdown.subscribe(),
            ));
        }
        let mediaproxy_socket = d.mediaproxy_socket.as_ref().map(|p| p.get().clone());
        if let Some(path) = &mediaproxy_socket {
            let listener =
                crate::front_mediaproxy::bind(path).map_err(|source| StartError::Listen {
                    what: "MediaProxy requests",
                    at: path.display().to_string(),
                    source,
                })?;
            tokio::spawn(crate::front_mediaproxy::serve(
                Arc::clone(&router),
                listener,
                shutdown.subscribe(),
            ));
        }
        for addr in &ng_udp {
            info!("dispatcher: listening for ng commands on UDP {addr}");
        }
        for addr in &ng_tcp {
            info!("dispatcher: listening for ng commands on TCP {addr}");
        }
        if let Some(path) = &mediaproxy_socket {
            info!(
                "dispatcher: listening for MediaProxy requests on {}",
                path.display()
            );
        }
        Ok(Self {
            router,
            pool,
            link,
            shutdown,
            ng_udp,
            ng_tcp,
            mediaproxy_socket,
            max_drain: config.relay.shutdown_max_wait.get(),
        })
    }

    /// The bound UDP `ng` addresses.
    pub fn ng_udp_addrs(&self) -> &[std::net::SocketAddr] {
        &self.ng_udp
    }

    /// The bound TCP `ng` addresses.
    pub fn ng_tcp_addrs(&self) -> &[std::net::SocketAddr] {
        &self.ng_tcp
    }

    /// The router, for tests and the management interface.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The in-process relays.
    pub fn local_pool(&self) -> &Arc<LocalPool> {
        &self.pool
    }

    /// The relays linked over TLS, when `relay_listen` is set.
    pub fn link_pool(&self) -> Option<&LinkPool> {
        self.link.as_ref()
    }
}

impl Role for Dispatcher {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn serving(&self) -> String {
        "dispatcher".to_owned()
    }

    fn stats(&self) -> RoleStats {
        RoleStats {
            sessions: self.router.call_count() as u64,
            unit: "calls",
        }
    }

    fn max_drain(&self) -> Duration {
        self.max_drain
    }

    fn snapshot(&self, resource: &str) -> Option<RoleFuture<'_, serde_json::Value>> {
        if resource != "calls" {
            return None;
        }
        let calls: Vec<serde_json::Value> = self
            .router
            .calls()
            .into_iter()
            .map(|(call_id, p)| {
                serde_json::json!({
                    "call_id": call_id,
                    "relay": p.relay,
                    "from_tag": p.from_tag,
                    "to_tag": p.to_tag,
                    "start_unix_ms": p.start_unix_ms,
                    "dialog_id": p.dialog_id,
                })
            })
            .collect();
        Some(Box::pin(async move { serde_json::Value::Array(calls) }))
    }

    fn drain(&self, cut: DrainCut) -> RoleFuture<'static, DrainReport> {
        let _ = self.shutdown.send(true);
        if let Some(path) = &self.mediaproxy_socket {
            let _ = std::fs::remove_file(path);
        }
        let engines = self.pool.engines();
        let max_wait = self.max_drain;
        Box::pin(async move {
            info!(
                "dispatcher: front doors closed; draining {} local relay(s)",
                engines.len()
            );
            let mut drains = tokio::task::JoinSet::new();
            for (_, relay) in engines {
                let cut = cut.clone();
                drains.spawn(async move { drain_relay(&relay, max_wait, cut).await });
            }
            let mut ended = 0;
            while let Some(done) = drains.join_next().await {
                ended += done.unwrap_or(0);
            }
            DrainReport {
                ended: ended as u64,
                complete: ended == 0,
            }
        })
    }
}

async fn drain_relay(relay: &Relay, max_wait: Duration, cut: DrainCut) -> usize {
    relay.shutdown(max_wait, cut.pulled()).await
}
