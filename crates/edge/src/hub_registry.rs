//! The registry of live hubs and the leases that keep them running (see `docs/edge.md`).
//!
//! A hub is created by the first viewer through [`Hubs::lease`]; every viewer session
//! holds a [`Lease`]; when the last lease is dropped the hub lingers (see `hub_life`),
//! then removes itself from the registry under the registry lock, so a viewer arriving
//! at that moment either gets this hub with a fresh lease or a new hub, never a dying
//! one. [`HubHandle`] is how viewers talk to a hub's actor (`hub_actor`). An
//! `always_on` route holds a [`WarmLease`] instead: a lease that also tells the hub to
//! reopen its upstream on its own whenever it ends (see `hub_life`).
//!
//! What it does not: run streams. The actor owns the upstream session and the viewers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mediagate_rtsp::StatusCode;
use tokio::sync::{mpsc, oneshot};

use crate::hub::{RingLimits, SubscriberId, TrackStart};
use crate::hub_actor::HubTask;
use crate::metrics::EdgeStats;
use crate::ports::PortAllocator;
use crate::rtsp_client::ClientError;
use crate::settings::Current;
use crate::sink::{Counts, Tally, ViewerSink};
use crate::upstream::{Described, UpstreamTarget};

/// Timing and sizing of hubs.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// How long a hub without viewers keeps its upstream session.
    pub linger: Duration,
    /// How long viewers wait for the upstream to come back before being disconnected.
    pub give_up: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long a PLAY waits for the first keyframe (for an exact `RTP-Info`).
    pub join_wait: Duration,
    pub ring: RingLimits,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            linger: Duration::from_secs(10),
            give_up: Duration::from_secs(30),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
            join_wait: Duration::from_secs(3),
            ring: RingLimits::default(),
        }
    }
}

/// Why a viewer's request to the hub failed: the status and reason to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubError {
    pub status: StatusCode,
    pub reason: String,
}

impl HubError {
    pub(crate) fn gone() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "the stream ended".into(),
        }
    }
}

impl From<&ClientError> for HubError {
    fn from(e: &ClientError) -> Self {
        Self {
            status: e.viewer_status(),
            reason: e.to_string(),
        }
    }
}

/// How [`Hubs::lease_from`] finds its hub.
enum Start {
    /// The running hub, or a new one.
    Join,
    /// A new hub that DESCRIBEs the origin.
    Anew,
    /// A new hub holding this description.
    Described(Arc<Described>),
}

/// Counters of one hub, for tests, logs and the admin API.
#[derive(Debug, Clone, Default)]
pub struct HubStats {
    /// The origin's URL (without credentials).
    pub origin: String,
    pub upstream_sessions: u64,
    pub packets_in: u64,
    /// RTP and RTCP payload bytes received from the origin.
    pub bytes_in: u64,
    /// Bits per second received from the origin, averaged since the previous look at
    /// these counters (over at least a second).
    pub bitrate_bps: u64,
    pub viewers: usize,
    pub viewer_skipped: u64,
    /// RTCP receiver reports received from UDP viewers.
    pub receiver_reports: u64,
    /// Highest loss fraction (of 256) any viewer reported.
    pub max_reported_fraction_lost: u8,
}

pub(crate) type JoinResult = Result<(SubscriberId, Vec<TrackStart>), HubError>;

/// What viewers (through [`HubHandle`]) and the registry ask of a hub's actor.
pub(crate) enum Cmd {
    Lease,
    Unlease,
    Describe(oneshot::Sender<Result<Arc<Described>, HubError>>),
    UdpPorts(oneshot::Sender<Result<Vec<(u16, u16)>, HubError>>),
    Join {
        sink: ViewerSink,
        tracks: Vec<usize>,
        reply: oneshot::Sender<JoinResult>,
    },
    Release(SubscriberId),
    /// Removes a viewer (true: telling its UDP destinations with an RTCP BYE); the
    /// reply says its counters are in its sink's tally.
    Leave(SubscriberId, bool, oneshot::Sender<()>),
    Stats(oneshot::Sender<HubStats>),
    /// Each viewer's counters so far, by its session's tally.
    ViewerCounts(oneshot::Sender<Vec<(Arc<Tally>, Counts)>>),
    /// Drain: let every viewer go, tear the upstream session down, retire.
    Shutdown,
    /// Leave the registry now (the description it holds is no longer the origin's):
    /// later viewers get a new hub; those holding leases keep this one.
    Forget,
    /// One keep-warm holder more (true) or fewer (false); see [`WarmLease`].
    KeepWarm(bool),
    /// A publisher's events become the hub's input (published hubs only); the reply
    /// is false when another publisher holds it and `replace` is off.
    Attach {
        events: mpsc::Receiver<crate::upstream_supervisor::UpEvent>,
        replace: bool,
        reply: oneshot::Sender<bool>,
    },
}

/// Cheap handle to a running hub.
#[derive(Clone)]
pub struct HubHandle {
    pub(crate) tx: mpsc::UnboundedSender<Cmd>,
}

impl std::fmt::Debug for HubHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubHandle")
    }
}

/// Keeps a hub alive; dropping it tells the hub one user fewer.
#[derive(Debug)]
pub struct Lease {
    handle: HubHandle,
    /// The hub ran before this lease (its description may be from an earlier viewer).
    joined: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = self.handle.tx.send(Cmd::Unlease);
    }
}

impl Lease {
    pub fn hub(&self) -> &HubHandle {
        &self.handle
    }

    /// A lease on running hub `h`; None when its actor is gone.
    fn join(h: &HubHandle) -> Option<Lease> {
        h.tx.send(Cmd::Lease).ok()?;
        Some(Lease {
            handle: h.clone(),
            joined: true,
        })
    }

    /// A second lease on the same hub. Safe against retirement: this lease keeps the
    /// hub's count above zero until the new one is counted.
    pub fn another(&self) -> Lease {
        let _ = self.handle.tx.send(Cmd::Lease);
        Lease {
            handle: self.handle.clone(),
            joined: true,
        }
    }

    /// True when the hub was already running (lingering, or serving other viewers)
    /// when this lease was taken: its description was not fetched for this viewer.
    pub(crate) fn joined(&self) -> bool {
        self.joined
    }
}

/// A lease that also keeps the hub's upstream session open with no viewer (an
/// `always_on` route): the hub reopens it with back-off whenever it ends. Dropping it
/// makes the hub an ordinary one again (it lingers, then retires, once no viewer is
/// left).
#[derive(Debug)]
pub(crate) struct WarmLease {
    lease: Lease,
}

impl Drop for WarmLease {
    fn drop(&mut self) {
        // Before the lease's own Unlease (fields drop after this), so the hub never
        // lingers while still warm.
        let _ = self.lease.handle.tx.send(Cmd::KeepWarm(false));
    }
}

impl HubHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).ok()?;
        rx.await.ok()
    }

    /// The origin's description (waits for the upstream session to open).
    pub async fn describe(&self) -> Result<Arc<Described>, HubError> {
        self.ask(Cmd::Describe)
            .await
            .unwrap_or_else(|| Err(HubError::gone()))
    }

    /// Takes the hub out of the registry (see [`Cmd::Forget`]).
    pub(crate) fn forget(&self) {
        let _ = self.tx.send(Cmd::Forget);
    }

    /// Server port pairs (RTP, RTCP) per track for UDP viewers.
    pub async fn udp_ports(&self) -> Result<Vec<(u16, u16)>, HubError> {
        self.ask(Cmd::UdpPorts)
            .await
            .unwrap_or_else(|| Err(HubError::gone()))
    }

    /// Adds a viewer; its packets are held until [`HubHandle::release`].
    pub async fn join(&self, sink: ViewerSink, tracks: Vec<usize>) -> JoinResult {
        self.ask(|reply| Cmd::Join {
            sink,
            tracks,
            reply,
        })
        .await
        .unwrap_or_else(|| Err(HubError::gone()))
    }

    pub fn release(&self, id: SubscriberId) {
        let _ = self.tx.send(Cmd::Release(id));
    }

    /// Makes `events` (a publisher's) this hub's input; false when another publisher
    /// holds it and `replace` is off, or the hub is gone.
    pub(crate) async fn attach(
        &self,
        events: mpsc::Receiver<crate::upstream_supervisor::UpEvent>,
        replace: bool,
    ) -> bool {
        self.ask(|reply| Cmd::Attach {
            events,
            replace,
            reply,
        })
        .await
        .unwrap_or(false)
    }

    /// Removes a viewer; once this returns its counters are in its sink's tally (or
    /// the hub is gone, and put them there when it let its viewers go).
    pub async fn leave(&self, id: SubscriberId) {
        self.ask(|done| Cmd::Leave(id, false, done)).await;
    }

    /// As [`Self::leave`], sending the viewer's UDP destinations an RTCP BYE first, so
    /// that a player stops at once instead of waiting for a media timeout.
    pub async fn leave_with_bye(&self, id: SubscriberId) {
        self.ask(|done| Cmd::Leave(id, true, done)).await;
    }

    pub async fn stats(&self) -> Option<HubStats> {
        self.ask(Cmd::Stats).await
    }

    async fn viewer_counts(&self) -> Vec<(Arc<Tally>, Counts)> {
        self.ask(Cmd::ViewerCounts).await.unwrap_or_default()
    }
}

/// All hubs of one edge, by key (the origin URL and the way it is reached).
#[derive(Clone)]
pub struct Hubs {
    inner: Arc<HubsInner>,
}

struct HubsInner {
    map: Mutex<HashMap<String, (u64, HubHandle)>>,
    next_gen: Mutex<u64>,
    /// What hubs started from now on run with; a running hub keeps its own copy.
    settings: Current<HubSettings>,
    ports: Arc<PortAllocator>,
    stats: Arc<EdgeStats>,
}

/// A [`Hubs`] that does not keep the edge alive (the metrics collector holds one).
pub(crate) struct WeakHubs(Weak<HubsInner>);

impl WeakHubs {
    pub fn upgrade(&self) -> Option<Hubs> {
        self.0.upgrade().map(|inner| Hubs { inner })
    }
}

impl std::fmt::Debug for Hubs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hubs").finish_non_exhaustive()
    }
}

impl Hubs {
    pub fn new(settings: HubSettings, ports: Arc<PortAllocator>) -> Self {
        Self {
            inner: Arc::new(HubsInner {
                map: Mutex::new(HashMap::new()),
                next_gen: Mutex::new(0),
                settings: Current::new(settings),
                ports,
                stats: Arc::default(),
            }),
        }
    }

    /// The server port allocator (on-demand sessions bind their own pairs from it).
    pub fn ports(&self) -> Arc<PortAllocator> {
        self.inner.ports.clone()
    }

    /// The edge's counters (metrics).
    pub(crate) fn edge_stats(&self) -> &Arc<EdgeStats> {
        &self.inner.stats
    }

    pub(crate) fn downgrade(&self) -> WeakHubs {
        WeakHubs(Arc::downgrade(&self.inner))
    }

    /// Number of running hubs.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The settings a hub starting now runs with.
    pub(crate) fn settings(&self) -> Arc<HubSettings> {
        self.inner.settings.load()
    }

    /// Settings for hubs started from now on (a reload); running hubs keep theirs.
    pub(crate) fn set_settings(&self, settings: HubSettings) {
        self.inner.settings.store(settings);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, HubHandle)>> {
        self.inner.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A lease on the hub for `target`, starting the hub if none runs.
    pub fn lease(&self, target: &UpstreamTarget) -> Lease {
        self.lease_from(hub_key(target), target, Start::Join, false)
    }

    /// A lease on a new hub for `target` that asks the origin afresh, in the place of
    /// any running one (which keeps serving the leases it has, then retires): a
    /// viewer's description must be the origin's current one.
    pub(crate) fn lease_anew(&self, target: &UpstreamTarget) -> Lease {
        self.lease_from(hub_key(target), target, Start::Anew, false)
    }

    /// As [`Self::lease_anew`], the new hub holding `described`, which the origin has
    /// just given for this viewer (its accounting DESCRIBE): no question of its own.
    pub(crate) fn lease_described(
        &self,
        target: &UpstreamTarget,
        described: Arc<Described>,
    ) -> Lease {
        self.lease_from(hub_key(target), target, Start::Described(described), false)
    }

    /// Whether a hub for `target` runs (serving viewers or lingering).
    pub(crate) fn running(&self, target: &UpstreamTarget) -> bool {
        self.map().contains_key(&hub_key(target))
    }

    /// A lease on the published hub of `path` (a URL path, without query), when a
    /// publisher has announced it and the hub still runs.
    pub(crate) fn published(&self, path: &str) -> Option<Lease> {
        let map = self.map();
        let (_, h) = map.get(&published_key(path))?;
        Lease::join(h)
    }

    /// A lease on the published hub of `path`, starting it (with no input until a
    /// publisher attaches) if none runs; `target` names it in stats and logs.
    pub(crate) fn lease_published(&self, path: &str, target: &UpstreamTarget) -> Lease {
        self.lease_from(published_key(path), target, Start::Join, true)
    }

    fn lease_from(
        &self,
        key: String,
        target: &UpstreamTarget,
        start: Start,
        published: bool,
    ) -> Lease {
        let mut map = self.map();
        if let (Some((_, h)), Start::Join) = (map.get(&key), &start) {
            if let Some(lease) = Lease::join(h) {
                return lease;
            }
        }
        let gen = {
            let mut g = self
                .inner
                .next_gen
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *g += 1;
            *g
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = HubHandle { tx };
        let _ = handle.tx.send(Cmd::Lease);
        map.insert(key.clone(), (gen, handle.clone()));
        drop(map);
        let seed = match start {
            Start::Described(d) => Some(d),
            Start::Join | Start::Anew => None,
        };
        let task = HubTask::new(self.clone(), key, gen, target.clone(), published, rx, seed);
        tokio::spawn(task.run());
        Lease {
            handle,
            joined: false,
        }
    }

    /// A [`WarmLease`] on the hub for `target`, starting the hub (and its upstream
    /// session) if none runs.
    pub(crate) fn keep_warm(&self, target: &UpstreamTarget) -> WarmLease {
        let lease = self.lease(target);
        let _ = lease.handle.tx.send(Cmd::KeepWarm(true));
        WarmLease { lease }
    }

    /// What each playing live viewer has been sent so far and not yet added to its
    /// session's tally (that happens when it leaves the hub), by the tally's address.
    pub(crate) async fn viewer_counts(&self) -> HashMap<usize, Counts> {
        let handles: Vec<HubHandle> = self.map().values().map(|(_, h)| h.clone()).collect();
        let mut out = HashMap::new();
        for h in handles {
            for (tally, counts) in h.viewer_counts().await {
                out.insert(Arc::as_ptr(&tally) as usize, counts);
            }
        }
        out
    }

    /// Counters of every running hub.
    pub async fn stats(&self) -> Vec<HubStats> {
        let handles: Vec<HubHandle> = self.map().values().map(|(_, h)| h.clone()).collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            if let Some(s) = h.stats().await {
                out.push(s);
            }
        }
        out
    }

    /// Drain: asks every hub to say goodbye to its viewers, let them go and tear its
    /// upstream session down. Queued before the viewers' own leaving, so UDP viewers
    /// still get their RTCP BYE.
    pub fn begin_shutdown(&self) {
        for (_, h) in self.map().values() {
            let _ = h.tx.send(Cmd::Shutdown);
        }
    }

    /// Waits until every hub retired or `deadline` passes; true when all retired.
    /// Hubs started meanwhile (a DESCRIBE that was under way) are asked too.
    pub async fn wait_retired(&self, deadline: tokio::time::Instant) -> bool {
        for round in 1u32.. {
            if self.is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            if round % 20 == 0 {
                self.begin_shutdown();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Unconditionally removes generation `gen` of `key` (a hub shutting down).
    pub(crate) fn remove(&self, key: &str, gen: u64) {
        let mut map = self.map();
        if map.get(key).is_some_and(|(g, _)| *g == gen) {
            map.remove(key);
        }
    }

    /// Removes `key` if it is still generation `gen` and no command is waiting;
    /// called by a lingering hub with its receiver, so that a lease sent meanwhile
    /// cancels the removal.
    pub(crate) fn try_retire(
        &self,
        key: &str,
        gen: u64,
        rx: &mut mpsc::UnboundedReceiver<Cmd>,
    ) -> Option<Cmd> {
        let mut map = self.map();
        if let Ok(cmd) = rx.try_recv() {
            return Some(cmd);
        }
        if map.get(key).is_some_and(|(g, _)| *g == gen) {
            map.remove(key);
        }
        rx.close();
        None
    }
}

/// The registry key of `target`'s hub.
pub(crate) fn hub_key(target: &UpstreamTarget) -> String {
    // Viewers share an upstream session only if they would have opened the same
    // one: same URL, same hop, same credentials (or none: a route without
    // credentials must never ride on a session another route authenticated) and
    // the same transport.
    // The key stays in memory (never logged), so the password may be part of it.
    let creds = target
        .credentials
        .as_ref()
        .map(|c| format!("{:?}:{}:{}", c.scheme, c.username, c.password))
        .unwrap_or_default();
    format!(
        "{}|{}|{}|{}",
        target.url,
        target.connect_to,
        creds,
        if target.udp { "udp" } else { "tcp" }
    )
}

/// The registry key of the hub a publisher feeds at `path`: never equal to a pulled
/// stream's key (those start with a URL).
fn published_key(path: &str) -> String {
    format!("publish|{path}")
}
