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
//! Finished calls go to [`ClusterAccounting`] (records store, RADIUS, dialog end), and
//! MediaProxy's management interface (`management_listen`, over TLS with `tls_dir`)
//! and the snapshots `summary` and `sessions` read the cluster through [`RouterView`].
//!
//! Reload (SIGHUP): `relay_timeout` applies to commands from then on, `passport` to
//! relays that link from then on, `dialog_end` to calls that finish from then on, and
//! the `[relay]` section's timeouts, limits and options to the local relays' new calls
//! (as the relay role applies them). What was bound or started once needs a restart
//! and is named in the reload's log: the listeners (`ng_listen_udp`, `ng_listen_tcp`,
//! `mediaproxy_socket`, `relay_listen`, `management_listen`), `tls_dir`,
//! `management_passport`, `radius` (its socket, retry task and spool belong to one
//! client), the `local_relay` list and the chain policy (`relay_group`, `chain`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mediagate_config::Config;
use mediagate_ops::role::{
    keep_until_restart, DrainCut, DrainReport, Reload, Role, RoleContext, RoleFuture, RoleKind,
    RoleStats, StartResult,
};
use mediagate_ops::store::Record;
use mediagate_relay::engine::{EngineConfig, Relay};
use mediagate_relay::record::SessionRecord;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tracing::info;

use crate::accounting::{AccountingOptions, ClusterAccounting};
use crate::cluster_view::RouterView;
use crate::dialog_end::{DialogEnder, RpcTarget, SipProxy};
use crate::front_ng::NgFront;
use crate::link::LinkPool;
use crate::local_pool::LocalPool;
use crate::mgmt::MgmtOptions;
use crate::radius::{RadiusAccounting, RadiusOptions};
use crate::router::Router;
use crate::session_stats::ClusterView;
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
    /// The management interface's TLS files could not be loaded.
    #[error("management interface: {0}")]
    ManagementTls(String),
    /// RADIUS accounting could not start (its socket or spool).
    #[error("cannot start RADIUS accounting to {server} (spool {spool}): {source}")]
    Radius {
        /// The server.
        server: std::net::SocketAddr,
        /// The spool file.
        spool: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
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
    management: Option<std::net::SocketAddr>,
    view: Arc<RouterView>,
    accounting: Arc<ClusterAccounting>,
    max_drain: Duration,
    /// `[dispatcher]` as running (reloads compare with it).
    running: std::sync::Mutex<mediagate_config::DispatcherConfig>,
    state_dir: PathBuf,
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
            let mut engine = local_engine(config, local);
            let address: IpAddr = local.address.get().0;
            let advertised = local.advertised.map_or(address, |a| a.0);
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
        let accounting = ClusterAccounting::new(
            accounting_options(config, &pool, records.clone(), state_dir).await?,
        );
        accounting.watch(Duration::from_secs(1));
        let router = Router::start_with_chains(
            relays,
            map,
            d.relay_timeout.get(),
            Arc::clone(&accounting) as Arc<dyn crate::router::EndedHook>,
            crate::chain::ChainPolicy::from_config(d),
        );
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
        let view = Arc::new(RouterView::new(Arc::clone(&router)));
        let management = start_management(d, &view, &shutdown).await?;
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
            management,
            view,
            accounting,
            max_drain: config.relay.shutdown_max_wait.get(),
            running: std::sync::Mutex::new(d.clone()),
            state_dir: state_dir.clone(),
        })
    }

    /// The bound management interface address, when `management_listen` is set.
    pub fn management_addr(&self) -> Option<std::net::SocketAddr> {
        self.management
    }

    /// The cluster as monitoring sees it (management interface, admin API).
    pub fn view(&self) -> &Arc<RouterView> {
        &self.view
    }

    /// The ended-call hook.
    pub fn accounting(&self) -> &Arc<ClusterAccounting> {
        &self.accounting
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

    fn reload(&self, config: &Config) -> Reload {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (next, needs_restart) = applicable(&running, &config.dispatcher);
        self.router.set_relay_timeout(next.relay_timeout.get());
        if let Some(link) = &self.link {
            link.set_passport(next.passport.clone());
        }
        self.accounting
            .set_dialogs(dialog_ender(&next, &self.state_dir));
        // The local relays take the [relay] section as the relay role does: for new
        // calls, on their own addresses and ports.
        for local in next.local_relay.iter() {
            if let Some(engine) = self.pool.relay(&local.name) {
                if let Err(e) = engine.reload(&local_engine(config, local)) {
                    tracing::warn!("dispatcher: local relay {}: {e}", local.name);
                }
            }
        }
        info!(
            "dispatcher: reloaded: relay_timeout {} ms, relay passport {}, dialog end {}; local relays take the [relay] section's timeouts and limits for new calls",
            next.relay_timeout.get().as_millis(),
            next.passport
                .as_ref()
                .map_or_else(|| "none".to_owned(), |p| format!("\"{p}\" for new links")),
            next.dialog_end
                .as_ref()
                .map_or_else(|| "off".to_owned(), |e| e.target.get().clone()),
        );
        *running = next;
        Reload::Applied { needs_restart }
    }

    fn snapshot(&self, resource: &str) -> Option<RoleFuture<'_, serde_json::Value>> {
        // MediaProxy's management answers, for the admin API and the CLI.
        match resource {
            "summary" => {
                return Some(Box::pin(async move {
                    serde_json::to_value(self.view.summary().await)
                        .unwrap_or(serde_json::Value::Null)
                }))
            }
            "sessions" => {
                return Some(Box::pin(async move {
                    serde_json::to_value(self.view.sessions().await)
                        .unwrap_or(serde_json::Value::Null)
                }))
            }
            _ => {}
        }
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
                    "second_relay": p.second_relay,
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

/// Starts MediaProxy's management interface on `management_listen`: TLS with
/// `tls_dir` (and `management_passport`), else plain TCP (`check-config` allows that
/// on loopback only). It stops when `shutdown` is sent.
async fn start_management(
    d: &mediagate_config::DispatcherConfig,
    view: &Arc<RouterView>,
    shutdown: &watch::Sender<bool>,
) -> Result<Option<std::net::SocketAddr>, StartError> {
    let Some(listen) = &d.management_listen else {
        return Ok(None);
    };
    let at = listen.get().get();
    let listener = TcpListener::bind(at)
        .await
        .map_err(|source| StartError::Listen {
            what: "the management interface",
            at: at.to_string(),
            source,
        })?;
    let bound = listener.local_addr().ok();
    let view = Arc::clone(view) as Arc<dyn ClusterView>;
    let options = MgmtOptions::default();
    let serve: crate::pool::PoolFuture<'static, std::io::Result<()>> = match &d.tls_dir {
        Some(dir) => {
            let tls = mediagate_link::tls::NodeTls::load(dir.get())
                .and_then(|t| t.server_config())
                .map_err(|e| StartError::ManagementTls(e.to_string()))?;
            let passport = d.management_passport.as_ref().map(|p| p.get().clone());
            info!(
                "dispatcher: management interface on {} (TLS, {})",
                bound.unwrap_or(at),
                dir.get().display()
            );
            Box::pin(crate::mgmt::serve_tls(
                listener, view, options, tls, passport,
            ))
        }
        None => {
            info!(
                "dispatcher: management interface on {} (plain TCP)",
                bound.unwrap_or(at)
            );
            Box::pin(crate::mgmt::serve_tcp(listener, view, options))
        }
    };
    let mut stop = shutdown.subscribe();
    tokio::spawn(async move {
        tokio::select! {
            served = serve => {
                if let Err(e) = served {
                    tracing::error!("dispatcher: management interface stopped: {e}");
                }
            }
            _ = stop.wait_for(|s| *s) => {}
        }
    });
    Ok(bound)
}

/// What [`ClusterAccounting`] does, from `[dispatcher]`: the records writer for remote
/// relays' calls, RADIUS (spool under the state directory) and dialog end when
/// configured. A deleted call waits for its relay's record the relay section's delete
/// delay plus 30 s.
async fn accounting_options(
    config: &Config,
    pool: &LocalPool,
    records: Option<mediagate_ops::store::RecordSink>,
    state_dir: &std::path::Path,
) -> Result<AccountingOptions, StartError> {
    let d = &config.dispatcher;
    let radius = match &d.radius {
        None => None,
        Some(r) => {
            let mut options =
                RadiusOptions::new(r.server.get(), r.secret.get().as_bytes(), state_dir);
            options.user_name.clone_from(&r.user_name);
            options.timeout = r.timeout.get();
            options.retries = r.retries;
            let spool = options.spool_path.display().to_string();
            let server = options.server;
            let (client, _task) =
                RadiusAccounting::start(options)
                    .await
                    .map_err(|source| StartError::Radius {
                        server,
                        spool,
                        source,
                    })?;
            info!("dispatcher: RADIUS accounting to {server}");
            Some(client)
        }
    };
    let dialogs = dialog_ender(d, state_dir);
    if let Some(e) = &d.dialog_end {
        info!(
            "dispatcher: ending timed-out dialogs through {}",
            e.target.get()
        );
    }
    Ok(AccountingOptions {
        local_relays: pool.engines().into_iter().map(|(name, _)| name).collect(),
        records,
        radius,
        dialogs,
        record_wait: config.relay.delete_delay.get() + Duration::from_secs(30),
    })
}

/// The dialog ender `dialog_end` asks for, if any.
fn dialog_ender(
    d: &mediagate_config::DispatcherConfig,
    state_dir: &std::path::Path,
) -> Option<Arc<DialogEnder>> {
    d.dialog_end.as_ref().map(|e| {
        let proxy = match e.proxy {
            mediagate_config::SipProxyKind::Kamailio => SipProxy::Kamailio,
            mediagate_config::SipProxyKind::Opensips => SipProxy::OpenSips,
        };
        let target = dialog_end_target(e.target.get(), state_dir);
        Arc::new(DialogEnder::new(proxy, target, e.timeout.get(), e.tries))
    })
}

/// A local relay's engine settings: the `[relay]` section's, on the local relay's own
/// address and ports, without `ng` listeners (records are added at start).
fn local_engine(config: &Config, local: &mediagate_config::LocalRelay) -> EngineConfig {
    let mut engine = EngineConfig::from_config(&config.relay);
    engine.ng_udp = Vec::new();
    engine.ng_tcp = Vec::new();
    let address: IpAddr = local.address.get().0;
    let advertised = local.advertised.map_or(address, |a| a.0);
    engine.media = vec![(address, advertised)];
    let range = local.ports.get().range();
    engine.ports = (range.low(), range.high());
    engine
}

/// What of `wanted` a running dispatcher can take, and a note for each setting that
/// needs a restart (its running value is kept in what is returned).
fn applicable(
    running: &mediagate_config::DispatcherConfig,
    wanted: &mediagate_config::DispatcherConfig,
) -> (mediagate_config::DispatcherConfig, Vec<String>) {
    let mut next = wanted.clone();
    let mut notes = Vec::new();
    let n = &mut notes;
    // Bound once at start.
    keep_until_restart(
        "dispatcher.ng_listen_udp",
        &running.ng_listen_udp,
        &mut next.ng_listen_udp,
        n,
    );
    keep_until_restart(
        "dispatcher.ng_listen_tcp",
        &running.ng_listen_tcp,
        &mut next.ng_listen_tcp,
        n,
    );
    keep_until_restart(
        "dispatcher.mediaproxy_socket",
        &running.mediaproxy_socket,
        &mut next.mediaproxy_socket,
        n,
    );
    keep_until_restart(
        "dispatcher.relay_listen",
        &running.relay_listen,
        &mut next.relay_listen,
        n,
    );
    keep_until_restart(
        "dispatcher.management_listen",
        &running.management_listen,
        &mut next.management_listen,
        n,
    );
    // Certificates are loaded at start; the management listener took its passport.
    keep_until_restart("dispatcher.tls_dir", &running.tls_dir, &mut next.tls_dir, n);
    keep_until_restart(
        "dispatcher.management_passport",
        &running.management_passport,
        &mut next.management_passport,
        n,
    );
    // One RADIUS client owns its socket, retry task and spool file.
    keep_until_restart("dispatcher.radius", &running.radius, &mut next.radius, n);
    // Engines started with their addresses and port pools.
    keep_until_restart(
        "dispatcher.local_relay",
        &running.local_relay,
        &mut next.local_relay,
        n,
    );
    // The router took its chain policy at start.
    keep_until_restart(
        "dispatcher.relay_group",
        &running.relay_group,
        &mut next.relay_group,
        n,
    );
    keep_until_restart("dispatcher.chain", &running.chain, &mut next.chain, n);
    (next, notes)
}

/// `udp:IP:PORT` or a UNIX datagram socket path (validated by `check-config`); the
/// reply socket of a UNIX target lives in the state directory.
fn dialog_end_target(text: &str, state_dir: &std::path::Path) -> RpcTarget {
    match text.strip_prefix("udp:").and_then(|a| a.parse().ok()) {
        Some(addr) => RpcTarget::Udp(addr),
        None => RpcTarget::Unix {
            path: text.into(),
            reply_dir: state_dir.to_path_buf(),
        },
    }
}

async fn drain_relay(relay: &Relay, max_wait: Duration, cut: DrainCut) -> usize {
    relay.shutdown(max_wait, cut.pulled()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatcher(extra: &str) -> mediagate_config::DispatcherConfig {
        let text = format!(
            "[edge]\nenabled = false\n[dispatcher]\nenabled = true\nng_listen_udp = [\"127.0.0.1:2223\"]\nrelay_listen = \"127.0.0.1:25060\"\ntls_dir = \"/nonexistent\"\n{extra}\n[[dispatcher.local_relay]]\nname = \"l1\"\naddress = \"127.0.0.1\"\nports = \"40000-40099\"\n"
        );
        mediagate_config::parse_config(&text).unwrap().dispatcher
    }

    #[test]
    fn a_reload_takes_timeouts_passport_and_dialog_end_and_names_what_needs_a_restart() {
        let running = dispatcher("relay_timeout = \"200ms\"");
        let unchanged = applicable(&running, &running);
        assert_eq!(unchanged, (running.clone(), vec![]));

        let mut wanted = dispatcher(
            "relay_timeout = \"300ms\"\npassport = \"CN=relay*\"\n[dispatcher.dialog_end]\nproxy = \"kamailio\"\ntarget = \"udp:127.0.0.1:8090\"",
        );
        wanted.ng_listen_udp = Vec::new();
        let (next, notes) = applicable(&running, &wanted);
        assert_eq!(next.relay_timeout.get(), Duration::from_millis(300));
        assert_eq!(next.passport, wanted.passport);
        assert!(next.dialog_end.is_some());
        assert_eq!(next.ng_listen_udp, running.ng_listen_udp, "kept");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("dispatcher.ng_listen_udp needs a restart"),
            "{notes:?}"
        );

        // A changed chain policy is named, not silently recorded as running.
        let chained = dispatcher(
            "[[dispatcher.relay_group]]\nname = \"a\"\nrelays = [\"l1\"]\n[[dispatcher.relay_group]]\nname = \"b\"\nrelays = [\"r2\"]\n[[dispatcher.chain]]\nfirst = \"a\"\nsecond = \"b\"\nalways = true",
        );
        let (next, notes) = applicable(&running, &chained);
        assert!(next.relay_group.is_empty() && next.chain.is_empty(), "kept");
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with("dispatcher.relay_group needs a restart")
                && notes[1].starts_with("dispatcher.chain needs a restart"),
            "{notes:?}"
        );
    }
}
