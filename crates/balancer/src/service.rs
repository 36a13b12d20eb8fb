//! One configured service as the running balancer holds it: its back ends (resolved
//! once at start), its scheduler, its session table, the tunnel cookies it has
//! routed, and its counters per service and per back end.
//!
//! What it does not: I/O beyond resolving back-end names at start; the RTSP engine
//! ([`crate::rtsp`]) moves the bytes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use mediagate_config::{
    BackendSpec, BalancerConfig, HealthCheckKind, HealthConfig, MediaMode, SchedulerName,
    ServiceConfig, ServiceKind,
};

use mediagate_ops::metrics::{exponential_buckets, Histogram};
use mediagate_relay::engine::{Expected, LatchPolicy, Pair, PairRelay, PairRelayConfig};

use crate::backend::{BackendId, BackendView};
use crate::health::{CheckConfig, CheckKind, ExpectStatus, HealthChecker, PassiveReporter};
use crate::l4::ServiceCounters;
use crate::rtsp::sessions::{SessionLimits, SessionTable};
use crate::sched::{Algorithm, PickRequest, Scheduler};
use crate::sched::{ClientIpTable, DEFAULT_PERSISTENCE_CAPACITY};

/// Counters of one back end.
#[derive(Debug, Default)]
pub(crate) struct BackendStats {
    /// Connections the balancer opened to it.
    pub(crate) connections: AtomicU64,
    /// Connections to it that failed.
    pub(crate) connect_failures: AtomicU64,
    /// Bytes from clients to it, and from it to clients.
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// Interleaved frames (RTP/RTCP packets) both ways.
    pub(crate) packets: AtomicU64,
    /// Sessions it was given.
    pub(crate) sessions_total: AtomicU64,
}

/// Counters of one service.
#[derive(Debug, Default)]
pub(crate) struct ServiceStats {
    pub(crate) connections: AtomicU64,
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) bad_requests: AtomicU64,
    pub(crate) unknown_sessions: AtomicU64,
    pub(crate) no_backend: AtomicU64,
    pub(crate) redirects: AtomicU64,
    pub(crate) tunnels: AtomicU64,
    pub(crate) sessions_expired: AtomicU64,
    /// Relayed streams closed by `media_timeout`.
    pub(crate) media_timeouts: AtomicU64,
    /// The balancer's own time per forwarded request (client to back end) and
    /// response (back end to client).
    pub(crate) request_forward: ForwardSeconds,
    pub(crate) response_forward: ForwardSeconds,
}

/// Time one RTSP message spends in the balancer: from its bytes returned by the read
/// of one peer to its rewritten bytes handed to the other peer's socket (or queued
/// behind output already waiting there). Time spent waiting for a CPU before the read
/// is not in it, which is what separates the balancer's work from the machine's load;
/// nor is a back-end connect the request waited for (the back end's round trip).
#[derive(Debug)]
pub(crate) struct ForwardSeconds(pub(crate) Histogram);

impl Default for ForwardSeconds {
    fn default() -> Self {
        // 1 µs to 33 ms: a message is parsed and rewritten in microseconds; the top
        // buckets catch the ones that waited behind a slow peer's queue.
        Self(Histogram::new(exponential_buckets(1e-6, 2.0, 16)))
    }
}

impl ForwardSeconds {
    /// Records a message read at `read_at` and handed on at `now`.
    pub(crate) fn observe(&self, read_at: Instant, now: Instant) {
        self.0
            .observe(now.saturating_duration_since(read_at).as_secs_f64());
    }
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) id: BackendId,
    pub(crate) spec: BackendSpec,
    pub(crate) addr: SocketAddr,
    pub(crate) stats: BackendStats,
    /// Active checks (`[balancer.service.health]`); without them a back end is
    /// always up.
    pub(crate) health: Option<HealthChecker>,
    /// The configured weight (a reload may change it).
    configured_weight: AtomicU32,
    /// A reload removed it from the config: no new sessions; running ones go on.
    retired: AtomicBool,
}

impl Backend {
    pub(crate) fn new(
        id: BackendId,
        spec: BackendSpec,
        addr: SocketAddr,
        health: Option<HealthChecker>,
    ) -> Self {
        Backend {
            id,
            configured_weight: AtomicU32::new(spec.weight.get()),
            spec,
            addr,
            stats: BackendStats::default(),
            health,
            retired: AtomicBool::new(false),
        }
    }

    /// Takes new sessions as health sees it.
    pub(crate) fn up(&self) -> bool {
        self.health.as_ref().is_none_or(|h| h.status().up())
    }

    /// Removed from the config by a reload (its running sessions go on).
    pub(crate) fn retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// The weight to schedule with: the configured one, as the agent scales it; 0
    /// once retired.
    pub(crate) fn weight(&self) -> u32 {
        if self.retired() {
            return 0;
        }
        let configured = self.configured_weight.load(Ordering::Relaxed);
        self.health
            .as_ref()
            .map_or(configured, |h| h.status().effective_weight(configured))
    }

    /// Where traffic reports failed and good connections, when health runs.
    pub(crate) fn passive(&self) -> Option<PassiveReporter> {
        self.health.as_ref().map(HealthChecker::passive)
    }

    pub(crate) fn health_transitions(&self) -> u64 {
        self.health.as_ref().map_or(0, |h| h.status().transitions)
    }
}

/// What the health checker of one back end runs, from the service's `[health]`.
fn check_config(health: &HealthConfig, spec: &BackendSpec, addr: SocketAddr) -> CheckConfig {
    let expect = ExpectStatus(vec![
        health.expect_status.get() as u16..=health.expect_status.get() as u16,
    ]);
    let url = || {
        let path = health.path.clone().unwrap_or_else(|| "/".to_owned());
        match &spec.url {
            Some(u) => format!("rtsp://{}{path}", u.authority()),
            None => format!("rtsp://{}{path}", spec.authority()),
        }
    };
    let kind = match health.check {
        HealthCheckKind::Tcp => CheckKind::Tcp,
        HealthCheckKind::RtspOptions => CheckKind::RtspOptions { url: url(), expect },
        HealthCheckKind::RtspDescribe => CheckKind::RtspDescribe { url: url(), expect },
    };
    let mut config = CheckConfig::new(addr, kind);
    config.interval = health.interval.get();
    config.timeout = health.timeout.get();
    config.rise = health.rise.get();
    config.fall = health.fall.get();
    config.agent = health.agent_port.map(|p| SocketAddr::new(addr.ip(), p));
    config
}

/// How long a tunnel cookie keeps its back end once its first half arrived: long
/// enough for the other half, which clients open right after.
const TUNNEL_PAIRING: Duration = Duration::from_secs(60);

/// How long a relayed pair's ports rest after it closed, so late packets of an ended
/// stream never reach the next one.
const PAIR_QUARANTINE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) name: String,
    pub(crate) mode: MediaMode,
    pub(crate) proxy_protocol: bool,
    pub(crate) listen: Vec<SocketAddr>,
    backends: RwLock<Vec<Arc<Backend>>>,
    /// `[balancer.service.health]` as running, for back ends a reload adds.
    health: Option<HealthConfig>,
    scheduler: Mutex<Scheduler>,
    /// Client-IP persistence (`persistence_timeout`), when configured.
    persistence: Option<Mutex<ClientIpTable>>,
    table: Mutex<SessionTable>,
    tunnels: Mutex<HashMap<String, (BackendId, Instant)>>,
    max_tunnels: usize,
    pub(crate) stats: ServiceStats,
    /// `relay` mode: the UDP pairs media goes through (the relay role's forwarding).
    pub(crate) relay: Option<PairRelay>,
    /// The relayed pairs of each session, by the balancer's session ID.
    pairs: Mutex<HashMap<String, Vec<RelayedPair>>>,
    /// When each relayed pair last moved media (`[balancer] media_timeout`).
    media_idle: Mutex<MediaIdle>,
    /// `[balancer] media_timeout`, else `session_timeout`.
    media_timeout: Duration,
    /// `kind = "tcp"`/`"udp"`: the L4 service's counters, once it runs.
    pub(crate) l4: OnceLock<Arc<ServiceCounters>>,
    /// Told when a back end goes down (the L4 service drops its UDP flows).
    down_hooks: Mutex<Vec<DownHook>>,
}

/// A pair relaying one stream of a session, with who it expects on each side (what
/// the standby needs to start it again after a failover).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RelayedPair {
    pub(crate) backend: BackendId,
    pub(crate) pair: Pair,
    pub(crate) expected: [Expected; 2],
}

struct DownHook(Box<dyn Fn(BackendId) -> usize + Send + Sync>);

impl std::fmt::Debug for DownHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DownHook")
    }
}

/// What the balancer counted of one back end, RTSP and L4 together.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Figures {
    /// Sessions (RTSP) and flows (L4) running now.
    pub(crate) sessions: u64,
    pub(crate) sessions_total: u64,
    pub(crate) connections: u64,
    pub(crate) connect_failures: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) packets: u64,
    pub(crate) health_transitions: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn algorithm(service: &ServiceConfig) -> Algorithm {
    match service.scheduler.get() {
        SchedulerName::RoundRobin => Algorithm::RoundRobin,
        SchedulerName::WeightedRoundRobin => Algorithm::WeightedRoundRobin,
        SchedulerName::LeastSessions => Algorithm::LeastSessions,
        SchedulerName::WeightedLeastSessions => Algorithm::WeightedLeastSessions,
        SchedulerName::LeastBandwidth => Algorithm::LeastBandwidth,
        SchedulerName::SourceHash => Algorithm::SourceHash,
        SchedulerName::UrlHash => Algorithm::UrlHash {
            load_factor: service.load_factor.as_ref().map_or(1.25, |f| *f.get()),
        },
    }
}

impl Service {
    /// The service `config` describes, its back ends resolved now.
    pub(crate) async fn resolve(
        config: &ServiceConfig,
        role: &BalancerConfig,
    ) -> Result<Service, String> {
        let mut backends = Vec::new();
        for (i, spec) in config.backends.iter().enumerate() {
            let spec = spec.get().clone();
            let authority = spec.authority();
            let addr = tokio::net::lookup_host(&authority)
                .await
                .map_err(|e| format!("cannot resolve back end {authority}: {e}"))?
                .next()
                .ok_or_else(|| format!("back end {authority} has no address"))?;
            let health = config
                .health
                .as_ref()
                .map(|h| HealthChecker::spawn(check_config(h.get(), &spec, addr)));
            let id = BackendId(u32::try_from(i).unwrap_or(u32::MAX));
            backends.push(Arc::new(Backend::new(id, spec, addr, health)));
        }
        let max_sessions = usize::try_from(role.max_sessions.get()).unwrap_or(usize::MAX);
        let listen: Vec<SocketAddr> = config.listen.iter().map(|a| a.0).collect();
        let relay = match config.media_mode.get() {
            MediaMode::Relay if *config.kind.get() == ServiceKind::Rtsp => {
                // Pairs bind on the addresses clients reach the service on (a wildcard
                // listener: every interface).
                let mut addresses: Vec<IpAddr> = listen.iter().map(SocketAddr::ip).collect();
                addresses.sort_unstable();
                addresses.dedup();
                let range = config.ports.range();
                let relay = PairRelay::start(&PairRelayConfig {
                    addresses,
                    ports: (range.low(), range.high()),
                    threads: 1,
                    quarantine: PAIR_QUARANTINE,
                    latch: LatchPolicy::default(),
                    scheduling: role.forward_scheduling,
                    socket_buffer: usize::try_from(role.relay_socket_buffer.get().bytes())
                        .unwrap_or(usize::MAX),
                })
                .map_err(|e| {
                    format!(
                        "service \"{}\": cannot start relaying media: {e}",
                        config.name.get()
                    )
                })?;
                if let Some(why) = relay.scheduling_refused() {
                    tracing::warn!(
                        service = %config.name.get(),
                        "balancer: the media forwarding thread keeps the process's scheduling, not forward_scheduling = \"{}\": {why}",
                        role.forward_scheduling
                    );
                }
                Some(relay)
            }
            _ => None,
        };
        Ok(Service {
            name: config.name.get().clone(),
            mode: *config.media_mode.get(),
            proxy_protocol: *config.proxy_protocol.get(),
            listen,
            backends: RwLock::new(backends),
            health: config.health.as_ref().map(|h| h.get().clone()),
            scheduler: Mutex::new(Scheduler::new(algorithm(config))),
            // A port group pins clients itself (`l4::group`, LVS semantics: held while
            // the client has flows); a second, time-only table would disagree.
            persistence: config
                .persistence_timeout
                .as_ref()
                .filter(|_| *config.kind.get() != ServiceKind::PortGroup)
                .map(|t| {
                    Mutex::new(ClientIpTable::new(
                        t.get().get(),
                        DEFAULT_PERSISTENCE_CAPACITY,
                    ))
                }),
            table: Mutex::new(SessionTable::new(SessionLimits {
                max_sessions,
                max_pending_setups: role.max_pending_setups.get(),
                max_streams: role.max_streams_per_session.get(),
            })),
            tunnels: Mutex::new(HashMap::new()),
            max_tunnels: usize::try_from(role.max_connections.get()).unwrap_or(usize::MAX),
            stats: ServiceStats::default(),
            relay,
            pairs: Mutex::new(HashMap::new()),
            media_idle: Mutex::new(MediaIdle::default()),
            media_timeout: role
                .media_timeout
                .as_ref()
                .unwrap_or(&role.session_timeout)
                .get()
                .get(),
            l4: OnceLock::new(),
            down_hooks: Mutex::new(Vec::new()),
        })
    }

    /// Runs `hook` whenever a back end goes down.
    pub(crate) fn on_backend_down(
        &self,
        hook: impl Fn(BackendId) -> usize + Send + Sync + 'static,
    ) {
        lock(&self.down_hooks).push(DownHook(Box::new(hook)));
    }

    /// Each back end with what was counted of it.
    pub(crate) fn figures(&self) -> Vec<(Arc<Backend>, Figures)> {
        let counts = self.table().count_by_backend();
        let l4 = self.l4.get().map(|c| c.snapshot());
        self.backend_list()
            .into_iter()
            .map(|b| {
                let st = &b.stats;
                let mut f = Figures {
                    sessions: counts.get(&b.id).copied().unwrap_or(0),
                    sessions_total: read(&st.sessions_total),
                    connections: read(&st.connections),
                    connect_failures: read(&st.connect_failures),
                    bytes_in: read(&st.bytes_in),
                    bytes_out: read(&st.bytes_out),
                    packets: read(&st.packets),
                    health_transitions: b.health_transitions(),
                };
                if let Some(s) = l4.as_ref().and_then(|l4| l4.backends.get(&b.id)) {
                    f.sessions += s.active;
                    f.sessions_total += s.flows;
                    f.connections += s.flows;
                    f.connect_failures += s.connect_failures;
                    f.bytes_in += s.bytes_to_backend;
                    f.bytes_out += s.bytes_to_client;
                    f.packets += s.packets_to_backend + s.packets_to_client;
                }
                (b, f)
            })
            .collect()
    }

    /// A back end for a new L4 flow other than `avoid`, with running flow counts from
    /// `flows`.
    pub(crate) fn pick_flow(
        &self,
        client_ip: IpAddr,
        avoid: Option<BackendId>,
        flows: impl Fn(BackendId) -> u64,
    ) -> Option<Arc<Backend>> {
        let mut views = self.views();
        // The back end that just failed stays in the set, as not up: removing it would
        // change the set the scheduler's state (a Maglev table, smooth weights) is
        // built from.
        for v in &mut views {
            v.sessions = flows(v.id);
            if Some(v.id) == avoid {
                v.up = false;
            }
        }
        let req = PickRequest {
            client_ip,
            url: None,
        };
        let mut scheduler = lock(&self.scheduler);
        let id = match &self.persistence {
            Some(table) => lock(table).pick(&mut scheduler, &req, &views, Instant::now()),
            None => scheduler.pick(&req, &views),
        }?;
        drop(scheduler);
        self.backend(id)
    }

    /// Ties a relayed pair to session `id`, so the session's end closes it.
    pub(crate) fn attach_pair(&self, id: &str, relayed: RelayedPair) {
        lock(&self.media_idle).start(relayed.pair, Instant::now());
        lock(&self.pairs)
            .entry(id.to_owned())
            .or_default()
            .push(relayed);
    }

    /// Failover: the relayed pairs of every session, for the sync stream.
    pub(crate) fn relayed_pairs(&self) -> HashMap<String, Vec<RelayedPair>> {
        lock(&self.pairs).clone()
    }

    /// Closes a relayed pair, counting what went through it for its back end.
    pub(crate) fn close_pair(&self, backend: BackendId, pair: Pair) {
        let Some(relay) = &self.relay else {
            return;
        };
        lock(&self.media_idle).forget(pair);
        let counters = relay.counters(pair);
        if let Some(b) = self.backend(backend) {
            add(&b.stats.packets, counters.packets[0] + counters.packets[1]);
            add(&b.stats.bytes_out, counters.bytes[0]);
            add(&b.stats.bytes_in, counters.bytes[1]);
        }
        relay.close(pair, Instant::now());
    }

    /// A back end went down: its sessions leave the table and their relayed flows
    /// close at once (never black-holed until a timeout), and no client stays pinned
    /// to it. Returns how many sessions ended.
    pub(crate) fn backend_down(&self, backend: BackendId) -> usize {
        let ended = self.table().remove_backend(backend);
        for (id, _) in &ended {
            self.close_session_pairs(id);
        }
        if let Some(p) = &self.persistence {
            lock(p).forget_backend(backend);
        }
        let flows: usize = lock(&self.down_hooks).iter().map(|h| (h.0)(backend)).sum();
        ended.len() + flows
    }

    /// Ends session `id` (TEARDOWN): out of the table, its pairs closed.
    pub(crate) fn end_session(&self, id: &str) {
        self.table().remove(id);
        self.close_session_pairs(id);
    }

    fn close_session_pairs(&self, id: &str) {
        let pairs = lock(&self.pairs).remove(id).unwrap_or_default();
        for p in pairs {
            self.close_pair(p.backend, p.pair);
        }
    }

    pub(crate) fn table(&self) -> MutexGuard<'_, SessionTable> {
        lock(&self.table)
    }

    pub(crate) fn backend(&self, id: BackendId) -> Option<Arc<Backend>> {
        // Looked up under the lock: the RTSP path asks several times per message, and
        // copying the whole list each time was an allocation and a count per back end.
        self.backends
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|b| b.id == id)
            .cloned()
    }

    /// Every back end, retired ones included, ids ascending.
    pub(crate) fn backend_list(&self) -> Vec<Arc<Backend>> {
        self.backends
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Applies a reloaded service's back ends: new ones join (with health checks
    /// when the service has them; the returned tasks watch them), changed weights
    /// apply to new sessions, and ones no longer listed are retired: no new sessions,
    /// while their running sessions go on. Names are resolved here (blocking).
    pub(crate) fn reload_backends(
        self: &Arc<Self>,
        config: &ServiceConfig,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut list = self
            .backends
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut added = Vec::new();
        for b in list.iter() {
            b.retired.store(true, Ordering::Relaxed);
        }
        for spec in config.backends.iter().map(|s| s.get()) {
            if let Some(b) = list
                .iter()
                .find(|b| b.spec.url == spec.url && b.spec.authority() == spec.authority())
            {
                b.configured_weight
                    .store(spec.weight.get(), Ordering::Relaxed);
                b.retired.store(false, Ordering::Relaxed);
                continue;
            }
            let addr = match std::net::ToSocketAddrs::to_socket_addrs(&spec.authority())
                .map(|mut a| a.next())
            {
                Ok(Some(addr)) => addr,
                _ => {
                    tracing::warn!(service = %self.name, "balancer: reload: cannot resolve back end {}; not added", spec.authority());
                    continue;
                }
            };
            let next = list
                .iter()
                .map(|b| b.id.0)
                .max()
                .map_or(0, |m| m.saturating_add(1));
            let health = self
                .health
                .as_ref()
                .map(|h| HealthChecker::spawn(check_config(h, spec, addr)));
            let b = Arc::new(Backend::new(BackendId(next), spec.clone(), addr, health));
            added.push(Arc::clone(&b));
            list.push(b);
        }
        drop(list);
        added
            .iter()
            .filter_map(|b| watch_backend(self, b))
            .collect()
    }

    /// The back ends as the scheduler sees them now.
    pub(crate) fn views(&self) -> Vec<BackendView> {
        let counts = self.table().count_by_backend();
        self.backend_list()
            .iter()
            .map(|b| BackendView {
                id: b.id,
                addr: b.addr,
                weight: b.weight(),
                up: b.up(),
                sessions: counts.get(&b.id).copied().unwrap_or(0),
                bandwidth_bps: 0,
            })
            .collect()
    }

    /// A back end for a new session; `None` when none takes one.
    pub(crate) fn pick(&self, client_ip: IpAddr, url: Option<&str>) -> Option<Arc<Backend>> {
        let views = self.views();
        let req = PickRequest { client_ip, url };
        let mut scheduler = lock(&self.scheduler);
        let id = match &self.persistence {
            Some(table) => lock(table).pick(&mut scheduler, &req, &views, Instant::now()),
            None => scheduler.pick(&req, &views),
        }?;
        drop(scheduler);
        self.backend(id)
    }

    /// The back end of tunnel `cookie`: the one its first half went to, or a new pick.
    pub(crate) fn tunnel_backend(
        &self,
        cookie: &str,
        client_ip: IpAddr,
        now: Instant,
    ) -> Option<Arc<Backend>> {
        let mut tunnels = lock(&self.tunnels);
        tunnels.retain(|_, (_, at)| now.saturating_duration_since(*at) < TUNNEL_PAIRING);
        if let Some((id, at)) = tunnels.get_mut(cookie) {
            *at = now;
            let id = *id;
            drop(tunnels);
            return self.backend(id);
        }
        if tunnels.len() >= self.max_tunnels {
            return None;
        }
        drop(tunnels);
        let backend = self.pick(client_ip, None)?;
        lock(&self.tunnels).insert(cookie.to_owned(), (backend.id, now));
        Some(backend)
    }

    /// Drops expired sessions; returns how many.
    pub(crate) fn expire(&self, now: Instant) -> usize {
        let expired = self.table().expire(now);
        for (id, _) in &expired {
            self.close_session_pairs(id);
        }
        add(&self.stats.sessions_expired, expired.len() as u64);
        expired.len()
    }

    /// Relay mode: closes the pairs that forwarded no RTP either way for
    /// `media_timeout` (their sessions go on, for RTSP only); returns how many.
    pub(crate) fn expire_media(&self, now: Instant) -> usize {
        let Some(relay) = &self.relay else {
            return 0;
        };
        let mut idle = Vec::new();
        {
            let pairs = lock(&self.pairs);
            let mut seen = lock(&self.media_idle);
            for (id, list) in pairs.iter() {
                for p in list {
                    let c = relay.counters(p.pair);
                    let rtp = c.rtp_packets[0] + c.rtp_packets[1];
                    if seen.idle(p.pair, rtp, now, self.media_timeout) {
                        idle.push((id.clone(), *p));
                    }
                }
            }
        }
        for (id, p) in &idle {
            let mut pairs = lock(&self.pairs);
            if let Some(list) = pairs.get_mut(id) {
                list.retain(|q| q.pair != p.pair);
                if list.is_empty() {
                    pairs.remove(id);
                }
            }
            drop(pairs);
            tracing::info!(service = %self.name, session = %id, pair = ?p.pair.sides, "balancer: a relayed stream moved no media for {:?}; closed", self.media_timeout);
            self.close_pair(p.backend, p.pair);
        }
        add(&self.stats.media_timeouts, idle.len() as u64);
        idle.len()
    }

    /// Sessions (RTSP) or flows (L4) running now.
    pub(crate) fn sessions(&self) -> usize {
        let flows: u64 = self.l4.get().map_or(0, |c| {
            c.snapshot().backends.values().map(|b| b.active).sum()
        });
        self.table().len() + usize::try_from(flows).unwrap_or(usize::MAX)
    }
}

/// When each relayed pair last forwarded RTP, from its packet count read at each
/// sweep (sans-IO: the sweep passes `now`).
#[derive(Debug, Default)]
pub(crate) struct MediaIdle {
    /// By pair: the RTP packets counted so far, and since when that count stands.
    seen: HashMap<Pair, (u64, Instant)>,
}

impl MediaIdle {
    /// A pair started at `now`: its idle time counts from there.
    pub(crate) fn start(&mut self, pair: Pair, now: Instant) {
        self.seen.insert(pair, (0, now));
    }

    /// Records that `pair` has forwarded `rtp` packets so far, at `now`; true when
    /// that count has not moved for `timeout`.
    pub(crate) fn idle(&mut self, pair: Pair, rtp: u64, now: Instant, timeout: Duration) -> bool {
        let (count, since) = self.seen.entry(pair).or_insert((rtp, now));
        if *count != rtp {
            *count = rtp;
            *since = now;
            return false;
        }
        now.saturating_duration_since(*since) >= timeout
    }

    /// A closed pair.
    pub(crate) fn forget(&mut self, pair: Pair) {
        self.seen.remove(&pair);
    }
}

/// Acts on each back end's health (when checks run): when one goes down its sessions
/// and relayed flows end at once. One task per checked back end.
pub(crate) fn watch_health(svc: &Arc<Service>) -> Vec<tokio::task::JoinHandle<()>> {
    svc.backend_list()
        .iter()
        .filter_map(|b| watch_backend(svc, b))
        .collect()
}

fn watch_backend(svc: &Arc<Service>, b: &Backend) -> Option<tokio::task::JoinHandle<()>> {
    let status = b.health.as_ref()?.subscribe();
    Some(tokio::spawn(watch_one(Arc::clone(svc), b.id, status)))
}

async fn watch_one(
    svc: Arc<Service>,
    backend: BackendId,
    mut status: tokio::sync::watch::Receiver<crate::health::HealthStatus>,
) {
    let mut was_up = status.borrow().up();
    while status.changed().await.is_ok() {
        let up = status.borrow().up();
        let addr = svc.backend(backend).map(|b| b.addr);
        if was_up && !up {
            let ended = svc.backend_down(backend);
            tracing::warn!(service = %svc.name, backend = ?addr, "balancer: a back end went down; {ended} sessions on it ended");
        } else if !was_up && up {
            tracing::info!(service = %svc.name, backend = ?addr, "balancer: a back end is up again");
        }
        was_up = up;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(port: u16) -> Pair {
        Pair {
            sides: [
                SocketAddr::from(([127, 0, 0, 1], port)),
                SocketAddr::from(([127, 0, 0, 1], port + 2)),
            ],
        }
    }

    #[test]
    fn media_idle_counts_from_start_and_from_the_last_packet() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let timeout = Duration::from_secs(10);
        let mut idle = MediaIdle::default();
        idle.start(pair(40000), t0);
        idle.start(pair(40004), t0);
        assert!(!idle.idle(pair(40000), 0, at(9), timeout));
        assert!(idle.idle(pair(40000), 0, at(10), timeout));
        // The other pair moved media at 5 s: idle from then.
        assert!(!idle.idle(pair(40004), 3, at(5), timeout));
        assert!(!idle.idle(pair(40004), 3, at(14), timeout));
        assert!(idle.idle(pair(40004), 3, at(15), timeout));
        // A pair never started counts from when it is first seen.
        assert!(!idle.idle(pair(40008), 7, at(20), timeout));
        assert!(idle.idle(pair(40008), 7, at(30), timeout));
        idle.forget(pair(40000));
        assert!(
            !idle.idle(pair(40000), 0, at(30), timeout),
            "forgotten, seen anew"
        );
    }

    /// The nice value of each of this process's threads named `relay-fwd*`.
    fn forwarding_nice() -> Vec<i32> {
        mediagate_testkit::process::thread_nice_values(std::process::id(), "relay-fwd")
    }

    /// `[balancer] forward_scheduling` reaches the relay-mode service's forwarding
    /// thread (a nice value: needs no privilege to raise).
    #[tokio::test]
    async fn forward_scheduling_applies_to_the_relay_forwarding_thread() {
        let before = forwarding_nice().iter().filter(|&&n| n == 7).count();
        let text = "[edge]\nenabled = false\n[balancer]\nenabled = true\nforward_scheduling = \"normal:7\"\n\
                    [[balancer.service]]\nname = \"t\"\nlisten = [\"127.0.0.1:0\"]\n\
                    backends = [\"127.0.0.1:9\"]\nports = \"46600-46699\"\n";
        let config = mediagate_config::parse_config(text).unwrap();
        let svc = Service::resolve(&config.balancer.service[0], &config.balancer)
            .await
            .unwrap();
        assert!(svc.relay.is_some());
        let after = forwarding_nice().iter().filter(|&&n| n == 7).count();
        assert_eq!(after, before + 1, "{:?}", forwarding_nice());
    }
}
