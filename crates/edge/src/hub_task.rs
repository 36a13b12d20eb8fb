//! The task that runs one live stream: owns the [`HubCore`], the upstream session, the
//! server UDP sockets, and the set of viewers (see `docs/edge.md`).
//!
//! Lifetime: created by the first viewer through [`Hubs::lease`]; every viewer session
//! holds a [`Lease`]; when the last lease is dropped the hub lingers, then removes
//! itself from the registry (under the registry lock, so a viewer arriving at that
//! moment either gets this hub with a fresh lease or a new hub, never a dying one).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mediagate_rtsp::{InterleavedFrame, Method, StatusCode};
use mediagate_udp::BatchSender;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::hub::{HubCore, Packet, PacketKind, RingLimits, SubscriberId, TrackStart};
use crate::ports::{PortAllocator, SocketPair};
use crate::rtsp_client::{ClientError, RtspClient};
use crate::sink::ViewerSink;
use crate::upstream::{self, Described, UpstreamTarget};
use mediagate_rtp::ContinuityRewriter;

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
    fn gone() -> Self {
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

/// Counters of one hub, for tests, logs and the admin API.
#[derive(Debug, Clone, Default)]
pub struct HubStats {
    pub upstream_sessions: u64,
    pub packets_in: u64,
    pub viewers: usize,
    pub viewer_skipped: u64,
    /// RTCP receiver reports received from UDP viewers.
    pub receiver_reports: u64,
    /// Highest loss fraction (of 256) any viewer reported.
    pub max_reported_fraction_lost: u8,
}

/// What UDP viewers' RTCP says, counted by the socket readers.
#[derive(Debug, Default)]
struct RtcpCounters {
    reports: AtomicU64,
    max_fraction_lost: AtomicU8,
}

type JoinResult = Result<(SubscriberId, Vec<TrackStart>), HubError>;

enum Cmd {
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
    Leave(SubscriberId),
    Stats(oneshot::Sender<HubStats>),
}

enum UpEvent {
    Ready(Arc<Described>),
    Failed(ClientError),
    Frames(Vec<InterleavedFrame>),
    Lost(ClientError),
}

/// Cheap handle to a running hub.
#[derive(Clone)]
pub struct HubHandle {
    tx: mpsc::UnboundedSender<Cmd>,
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

    /// A second lease on the same hub. Safe against retirement: this lease keeps the
    /// hub's count above zero until the new one is counted.
    pub fn another(&self) -> Lease {
        let _ = self.handle.tx.send(Cmd::Lease);
        Lease {
            handle: self.handle.clone(),
        }
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

    pub fn leave(&self, id: SubscriberId) {
        let _ = self.tx.send(Cmd::Leave(id));
    }

    pub async fn stats(&self) -> Option<HubStats> {
        self.ask(Cmd::Stats).await
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
    settings: HubSettings,
    ports: Arc<PortAllocator>,
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
                settings,
                ports,
            }),
        }
    }

    /// The server port allocator (on-demand sessions bind their own pairs from it).
    pub fn ports(&self) -> Arc<PortAllocator> {
        self.inner.ports.clone()
    }

    /// Number of running hubs.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, HubHandle)>> {
        self.inner.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A lease on the hub for `target`, starting the hub if none runs.
    pub fn lease(&self, target: &UpstreamTarget) -> Lease {
        // Viewers share an upstream session only if they would have opened the same
        // one: same URL, same hop, same credentials (or none: a route without
        // credentials must never ride on a session another route authenticated) and
        // the same transport.
        // The key stays in memory (never logged), so the password may be part of it.
        let creds = target
            .credentials
            .as_ref()
            .map(|c| format!("{}:{}", c.username, c.password))
            .unwrap_or_default();
        let key = format!(
            "{}|{}|{}|{}",
            target.url,
            target.connect_to,
            creds,
            if target.udp { "udp" } else { "tcp" }
        );
        let mut map = self.map();
        if let Some((_, h)) = map.get(&key) {
            if h.tx.send(Cmd::Lease).is_ok() {
                return Lease { handle: h.clone() };
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
        let task = HubTask::new(self.clone(), key, gen, target.clone(), rx);
        tokio::spawn(task.run());
        Lease { handle }
    }

    /// Removes `key` if it is still generation `gen` and no command is waiting;
    /// called by a lingering hub with its receiver, so that a lease sent meanwhile
    /// cancels the removal.
    fn try_retire(
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

struct TrackSockets {
    pair: Arc<SocketPair>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for TrackSockets {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads what UDP viewers send to a hub's RTCP port: receiver reports are counted
/// (and their loss figures kept); anything else is dropped. Reading also keeps the
/// socket's receive buffer from filling.
async fn read_viewer_rtcp(pair: Arc<SocketPair>, counters: Arc<RtcpCounters>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, _from)) = pair.rtcp.recv_from(&mut buf).await else {
            return;
        };
        let Ok(compound) = mediagate_rtp::rtcp::Compound::parse(&buf[..n]) else {
            continue;
        };
        for p in compound.packets() {
            if let mediagate_rtp::rtcp::RtcpPacket::ReceiverReport(rr) = p {
                counters.reports.fetch_add(1, Ordering::Relaxed);
                for b in rr.report_blocks() {
                    counters
                        .max_fraction_lost
                        .fetch_max(b.fraction_lost, Ordering::Relaxed);
                }
            }
        }
    }
}

struct HubTask {
    hubs: Hubs,
    key: String,
    gen: u64,
    target: UpstreamTarget,
    rx: mpsc::UnboundedReceiver<Cmd>,
    leases: usize,
    linger_until: Option<Instant>,
    described: Option<Arc<Described>>,
    failure: Option<HubError>,
    describe_waiters: Vec<oneshot::Sender<Result<Arc<Described>, HubError>>>,
    pending_joins: Vec<(ViewerSink, Vec<usize>, oneshot::Sender<JoinResult>, Instant)>,
    core: Option<HubCore<ViewerSink>>,
    rewriters: Vec<ContinuityRewriter>,
    /// RTP/RTCP channel → (track, kind).
    channels: HashMap<u8, (usize, PacketKind)>,
    udp: Option<Vec<TrackSockets>>,
    batch: BatchSender,
    upstream: Option<(mpsc::Receiver<UpEvent>, tokio::task::JoinHandle<()>)>,
    lost_since: Option<Instant>,
    stats: HubStats,
    rtcp: Arc<RtcpCounters>,
}

impl HubTask {
    fn new(
        hubs: Hubs,
        key: String,
        gen: u64,
        target: UpstreamTarget,
        rx: mpsc::UnboundedReceiver<Cmd>,
    ) -> Self {
        Self {
            hubs,
            key,
            gen,
            target,
            rx,
            leases: 0,
            linger_until: None,
            described: None,
            failure: None,
            describe_waiters: Vec::new(),
            pending_joins: Vec::new(),
            core: None,
            rewriters: Vec::new(),
            channels: HashMap::new(),
            udp: None,
            batch: BatchSender::default(),
            upstream: None,
            lost_since: None,
            stats: HubStats::default(),
            rtcp: Arc::default(),
        }
    }

    fn settings(&self) -> &HubSettings {
        &self.hubs.inner.settings
    }

    async fn run(mut self) {
        self.start_upstream();
        loop {
            let linger = self.linger_until;
            let give_up_at = self.lost_since.map(|t| t + self.settings().give_up);
            let join_deadline = self.pending_joins.iter().map(|j| j.3).min();
            let wake = [linger, give_up_at, join_deadline]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd).await,
                    None => break,
                },
                ev = recv_upstream(&mut self.upstream) => self.on_upstream(ev).await,
                _ = sleep_until_opt(wake) => {
                    let now = Instant::now();
                    if linger.is_some_and(|t| t <= now) {
                        match self.hubs.clone().try_retire(&self.key, self.gen, &mut self.rx) {
                            Some(cmd) => self.on_cmd(cmd).await,
                            None => break,
                        }
                    }
                    if give_up_at.is_some_and(|t| t <= now) {
                        self.give_up();
                    }
                    self.flush_pending_joins(true).await;
                }
            }
        }
        if let Some((_, task)) = self.upstream.take() {
            task.abort();
        }
        self.disconnect_all();
    }

    fn start_upstream(&mut self) {
        if self.upstream.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel(64);
        let target = self.target.clone();
        let settings = self.settings().clone();
        let ports = self.hubs.inner.ports.clone();
        let task = tokio::spawn(upstream_loop(target, settings, ports, tx));
        self.upstream = Some((rx, task));
    }

    async fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Lease => {
                self.leases += 1;
                self.linger_until = None;
                if self.upstream.is_none() && self.described.is_none() {
                    self.failure = None;
                    self.start_upstream();
                }
            }
            Cmd::Unlease => {
                self.leases = self.leases.saturating_sub(1);
                if self.leases == 0 {
                    self.linger_until = Some(Instant::now() + self.settings().linger);
                }
            }
            Cmd::Describe(reply) => match (&self.described, &self.failure) {
                (Some(d), _) => {
                    let _ = reply.send(Ok(d.clone()));
                }
                (None, Some(f)) => {
                    let _ = reply.send(Err(f.clone()));
                }
                (None, None) => self.describe_waiters.push(reply),
            },
            Cmd::UdpPorts(reply) => {
                let _ = reply.send(self.udp_ports().await);
            }
            Cmd::Join {
                sink,
                tracks,
                reply,
            } => {
                let deadline = Instant::now() + self.settings().join_wait;
                self.pending_joins.push((sink, tracks, reply, deadline));
                self.flush_pending_joins(false).await;
            }
            Cmd::Release(id) => self.release(id).await,
            Cmd::Leave(id) => {
                if let Some(core) = &mut self.core {
                    if let Some((_, st)) = core.leave(id) {
                        self.stats.viewer_skipped += st.skipped;
                    }
                }
            }
            Cmd::Stats(reply) => {
                let mut s = self.stats.clone();
                s.viewers = self.core.as_ref().map_or(0, |c| c.subscriber_count());
                s.receiver_reports = self.rtcp.reports.load(Ordering::Relaxed);
                s.max_reported_fraction_lost = self.rtcp.max_fraction_lost.load(Ordering::Relaxed);
                let _ = reply.send(s);
            }
        }
    }

    async fn udp_ports(&mut self) -> Result<Vec<(u16, u16)>, HubError> {
        let Some(d) = &self.described else {
            return Err(HubError::gone());
        };
        if self.udp.is_none() {
            let mut socks = Vec::new();
            for _ in &d.tracks {
                let pair = self
                    .hubs
                    .inner
                    .ports
                    .bind_pair()
                    .await
                    .map_err(|e| HubError {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        reason: e.to_string(),
                    })?;
                let pair = Arc::new(pair);
                let reader = tokio::spawn(read_viewer_rtcp(pair.clone(), self.rtcp.clone()));
                socks.push(TrackSockets { pair, reader });
            }
            self.udp = Some(socks);
        }
        Ok(self
            .udp
            .iter()
            .flatten()
            .map(|s| {
                let p = s.pair.rtp_port();
                (p, p + 1)
            })
            .collect())
    }

    /// Joins waiting viewers once a keyframe is there, or (`expired`) when their wait
    /// is over.
    async fn flush_pending_joins(&mut self, expired: bool) {
        if self.pending_joins.is_empty() {
            return;
        }
        let now = Instant::now();
        let Some(core) = &mut self.core else {
            if let Some(f) = &self.failure {
                for (_, _, reply, _) in self.pending_joins.drain(..) {
                    let _ = reply.send(Err(f.clone()));
                }
            }
            return;
        };
        let ready = core.ready_for_join();
        let mut i = 0;
        while i < self.pending_joins.len() {
            if ready || (expired && self.pending_joins[i].3 <= now) {
                let (sink, tracks, reply, _) = self.pending_joins.swap_remove(i);
                let mut ignored = Vec::new();
                let (id, starts) = core.join(sink, &tracks, |s, p| s.offer(p, &mut ignored));
                if reply.send(Ok((id, starts))).is_err() {
                    core.leave(id);
                }
            } else {
                i += 1;
            }
        }
    }

    async fn release(&mut self, id: SubscriberId) {
        let Some(core) = &mut self.core else { return };
        let Some(sink) = core.sink_mut(id) else {
            return;
        };
        let (udp, complete) = sink.release();
        if !complete {
            core.mark_lagging(id);
        }
        for (p, dest) in udp {
            self.send_udp(&[p.data], p.track, p.kind, &[dest]).await;
        }
    }

    async fn on_upstream(&mut self, ev: Option<UpEvent>) {
        match ev {
            None => self.upstream = None,
            Some(UpEvent::Ready(d)) => {
                self.stats.upstream_sessions += 1;
                self.lost_since = None;
                match &self.described {
                    None => self.first_ready(d),
                    Some(old) if old.tracks.len() != d.tracks.len() => {
                        // The origin now serves a different stream: viewers cannot
                        // continue it seamlessly.
                        self.give_up();
                    }
                    Some(_) => {}
                }
            }
            Some(UpEvent::Failed(e)) => {
                let err = HubError::from(&e);
                self.upstream = None;
                if self.described.is_none() {
                    for w in self.describe_waiters.drain(..) {
                        let _ = w.send(Err(err.clone()));
                    }
                    self.failure = Some(err);
                    self.flush_pending_joins(true).await;
                }
            }
            Some(UpEvent::Lost(_e)) => {
                self.lost_since.get_or_insert_with(Instant::now);
                for r in &mut self.rewriters {
                    r.upstream_restarted();
                }
                if let Some(core) = &mut self.core {
                    core.upstream_restarted();
                }
            }
            Some(UpEvent::Frames(frames)) => self.on_frames(frames).await,
        }
    }

    fn first_ready(&mut self, d: Arc<Described>) {
        self.channels.clear();
        for (i, t) in d.tracks.iter().enumerate() {
            self.channels.insert(t.channel, (i, PacketKind::Rtp));
            self.channels
                .insert(t.channel.wrapping_add(1), (i, PacketKind::Rtcp));
        }
        self.rewriters = d
            .tracks
            .iter()
            .map(|t| ContinuityRewriter::new(t.clock_rate))
            .collect();
        self.core = Some(HubCore::new(
            d.tracks.len(),
            d.video_track(),
            self.settings().ring,
        ));
        for w in self.describe_waiters.drain(..) {
            let _ = w.send(Ok(d.clone()));
        }
        self.described = Some(d);
    }

    async fn on_frames(&mut self, frames: Vec<InterleavedFrame>) {
        let (Some(d), Some(_)) = (self.described.clone(), self.core.as_ref()) else {
            return;
        };
        let now = std::time::Instant::now();
        // Consecutive packets of one track and kind going to the same UDP viewers are
        // sent together (a frame per viewer in one GSO message).
        let mut group: Vec<Bytes> = Vec::new();
        let mut group_dests: Vec<SocketAddr> = Vec::new();
        let mut group_key: Option<(usize, PacketKind)> = None;
        let mut dests: Vec<SocketAddr> = Vec::new();
        for f in frames {
            let Some(&(track, kind)) = self.channels.get(&f.channel()) else {
                continue;
            };
            self.stats.packets_in += 1;
            let mut data = BytesMut::from(&f.payload()[..]);
            let (keyframe_start, seq, ts) = match kind {
                PacketKind::Rtp => {
                    let Some((seq, ts)) = self.rewriters[track].rewrite_rtp(&mut data, now) else {
                        continue;
                    };
                    let t = &d.tracks[track];
                    let key = t.is_video && t.codec.is_keyframe_start_packet(&data);
                    (key, seq, ts)
                }
                PacketKind::Rtcp => {
                    if !self.rewriters[track].rewrite_rtcp(&mut data) {
                        continue;
                    }
                    (false, 0, 0)
                }
            };
            let pkt = Packet {
                track,
                kind,
                data: data.freeze(),
                keyframe_start,
                seq,
                ts,
            };
            let bytes = pkt.data.clone();
            dests.clear();
            if let Some(core) = &mut self.core {
                core.on_packet(pkt, |s, p| s.offer(p, &mut dests));
            }
            if dests.is_empty() {
                continue;
            }
            if group_key != Some((track, kind)) || group_dests != dests {
                if let Some((t, k)) = group_key {
                    self.send_udp(&group, t, k, &group_dests).await;
                }
                group.clear();
                group_dests.clone_from(&dests);
                group_key = Some((track, kind));
            }
            group.push(bytes);
        }
        if let Some((t, k)) = group_key {
            self.send_udp(&group, t, k, &group_dests).await;
        }
        self.flush_pending_joins(false).await;
    }

    async fn send_udp(
        &mut self,
        packets: &[Bytes],
        track: usize,
        kind: PacketKind,
        dests: &[SocketAddr],
    ) {
        let Some(sock) = self.udp.as_ref().and_then(|u| u.get(track)) else {
            return;
        };
        let sock = match kind {
            PacketKind::Rtp => &sock.pair.rtp,
            PacketKind::Rtcp => &sock.pair.rtcp,
        };
        let slices: Vec<&[u8]> = packets.iter().map(|b| b.as_ref()).collect();
        let mut at = (0, 0);
        // Bounded: a socket that stays unwritable for a second drops the rest of this
        // batch rather than stalling every viewer of the hub.
        let deadline = Instant::now() + Duration::from_secs(1);
        while at.0 < dests.len() {
            match self.batch.send_to_many(sock, &slices, dests, at) {
                Ok((report, next)) => {
                    at = next;
                    if report.would_block {
                        let _ = tokio::time::timeout_at(deadline, sock.writable()).await;
                        if Instant::now() >= deadline {
                            break;
                        }
                    }
                }
                Err(_) => break,
            }
        }
    }

    fn give_up(&mut self) {
        self.lost_since = None;
        self.disconnect_all();
        if let Some((_, task)) = self.upstream.take() {
            task.abort();
        }
        self.described = None;
        self.core = None;
        self.udp = None;
        self.failure = Some(HubError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "the origin stream is gone".into(),
        });
    }

    fn disconnect_all(&mut self) {
        if let Some(core) = &mut self.core {
            for (sink, _) in core.drain() {
                sink.conn.close();
            }
        }
        for (sink, _, reply, _) in self.pending_joins.drain(..) {
            sink.conn.close();
            let _ = reply.send(Err(HubError::gone()));
        }
    }
}

async fn recv_upstream(
    up: &mut Option<(mpsc::Receiver<UpEvent>, tokio::task::JoinHandle<()>)>,
) -> Option<UpEvent> {
    match up {
        Some((rx, _)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Keeps one upstream session open: opens it, streams its frames to the hub, and on
/// loss reconnects with exponential back-off. A failure before the first successful
/// open is final (the viewer's DESCRIBE gets the origin's answer).
async fn upstream_loop(
    target: UpstreamTarget,
    settings: HubSettings,
    ports: Arc<PortAllocator>,
    tx: mpsc::Sender<UpEvent>,
) {
    let mut backoff = settings.backoff_min;
    let mut ever_ready = false;
    loop {
        match upstream::open(&target, &ports).await {
            Ok((_client, described, _)) if !described.live => {
                // On-demand: the hub only answers DESCRIBE; viewers play through their
                // own upstream sessions (see `vod`).
                let _ = tx.send(UpEvent::Ready(Arc::new(described))).await;
                return;
            }
            Ok((client, described, udp)) => {
                ever_ready = true;
                backoff = settings.backoff_min;
                let keepalive = keepalive_interval(described.session_timeout);
                let url = target.url.to_string();
                let channels: Vec<u8> = described.tracks.iter().map(|t| t.channel).collect();
                if tx.send(UpEvent::Ready(Arc::new(described))).await.is_err() {
                    return;
                }
                let err = match udp {
                    None => stream_frames(client, &tx, keepalive, &url).await,
                    Some(sockets) => {
                        stream_udp(client, sockets, &channels, &tx, keepalive, &url).await
                    }
                };
                if tx.send(UpEvent::Lost(err)).await.is_err() {
                    return;
                }
            }
            Err(e) if !ever_ready => {
                let _ = tx.send(UpEvent::Failed(e)).await;
                return;
            }
            Err(_) => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(settings.backoff_max);
    }
}

/// How often to send a keep-alive for an origin session with this timeout.
pub fn keepalive_interval(session_timeout: u64) -> Duration {
    mediagate_rtsp::client::keepalive_interval(session_timeout, crate::rtsp_client::KEEPALIVE_FLOOR)
}

/// Reads frames until the connection fails; returns why.
async fn stream_frames(
    mut client: RtspClient,
    tx: &mpsc::Sender<UpEvent>,
    keepalive: Duration,
    url: &str,
) -> ClientError {
    let mut tick = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
    // No data for this long means the origin is gone even if TCP has not noticed.
    let silence = Duration::from_secs(10);
    loop {
        tokio::select! {
            r = tokio::time::timeout(silence, client.next_frame()) => {
                let first = match r {
                    Ok(Ok(f)) => f,
                    Ok(Err(e)) => return e,
                    Err(_) => return ClientError::Timeout(silence),
                };
                let mut batch = vec![first];
                if let Err(e) = client.ready_frames(256, &mut batch) {
                    return e;
                }
                if tx.send(UpEvent::Frames(batch)).await.is_err() {
                    return ClientError::Closed;
                }
            }
            _ = tick.tick() => {
                let req = client.request(Method::GetParameter, url);
                if let Err(e) = client.send_no_wait(req).await {
                    return e;
                }
            }
        }
    }
}

/// Media over UDP (a route's `upstream_transport = "udp"`): datagrams on our per-track
/// sockets, accepted only from the origin's address so nobody else can inject into the
/// hub, are labelled with the track's channel numbers and handed on like interleaved
/// frames. The RTSP connection stays open for keep-alives; silence on the sockets counts
/// as a lost upstream, as on TCP.
async fn stream_udp(
    mut client: RtspClient,
    sockets: Vec<SocketPair>,
    channels: &[u8],
    tx: &mpsc::Sender<UpEvent>,
    keepalive: Duration,
    url: &str,
) -> ClientError {
    let origin_ip = client.peer_addr().ok().map(|a| a.ip());
    let (ftx, mut frx) = mpsc::channel::<Vec<InterleavedFrame>>(64);
    let mut readers = Vec::new();
    for (pair, &ch) in sockets.into_iter().zip(channels) {
        let pair = Arc::new(pair);
        for (rtcp, label) in [(false, ch), (true, ch.wrapping_add(1))] {
            let task = tokio::spawn(read_origin_udp(
                pair.clone(),
                rtcp,
                label,
                origin_ip,
                ftx.clone(),
            ));
            readers.push(AbortOnDrop(task));
        }
    }
    drop(ftx);
    let mut tick = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
    let silence = Duration::from_secs(10);
    loop {
        tokio::select! {
            r = tokio::time::timeout(silence, frx.recv()) => match r {
                Ok(Some(batch)) => {
                    if tx.send(UpEvent::Frames(batch)).await.is_err() {
                        return ClientError::Closed;
                    }
                }
                Ok(None) => return ClientError::Closed,
                Err(_) => return ClientError::Timeout(silence),
            },
            _ = tick.tick() => {
                let req = client.request(Method::GetParameter, url);
                if let Err(e) = client.send_no_wait(req).await {
                    return e;
                }
            }
            // Only to notice the control connection closing; answers are skipped.
            r = client.next_frame() => if let Err(e) = r {
                return e;
            },
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn read_origin_udp(
    pair: Arc<SocketPair>,
    rtcp: bool,
    label: u8,
    origin_ip: Option<std::net::IpAddr>,
    out: mpsc::Sender<Vec<InterleavedFrame>>,
) {
    let sock = if rtcp { &pair.rtcp } else { &pair.rtp };
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok(first) = sock.recv_from(&mut buf).await else {
            return;
        };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some((n, from)) = next {
            if origin_ip.is_none_or(|ip| ip == from.ip()) {
                if let Ok(f) = InterleavedFrame::new(label, Bytes::copy_from_slice(&buf[..n])) {
                    batch.push(f);
                }
            }
            next = if batch.len() < 64 {
                sock.try_recv_from(&mut buf).ok()
            } else {
                None
            };
        }
        if !batch.is_empty() && out.send(batch).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_is_half_the_timeout_within_bounds() {
        assert_eq!(keepalive_interval(60), Duration::from_secs(30));
        assert_eq!(keepalive_interval(20), Duration::from_secs(10));
        assert_eq!(keepalive_interval(2), Duration::from_secs(5));
        assert_eq!(keepalive_interval(600), Duration::from_secs(30));
    }
}
