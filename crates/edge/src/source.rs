//! Where a viewer session's media comes from.
//!
//! Three kinds: a live stream split from its hub (one origin session for every
//! viewer, `hub_registry`/`hub_actor`); on-demand content from the viewer's own origin
//! session (`vod`), recorded into the cache while it plays (`cache_fill`, a MISS); and
//! on-demand content served from the cache (`cache_play`, a HIT) with no origin media
//! session at all. The viewer session does not know which.
//!
//! On-demand SETUPs are answered by the edge alone (its own UDP ports or the viewer's
//! channels): which tracks the viewer wants, and so which cache object (variant) it
//! is, is only known at PLAY. The PLAY then looks the requested start up in the
//! cache: held, the player serves it; not held, the origin session is opened, its
//! tracks set up and played with the viewer's `Range`, and recorded. A seek of a hit
//! to a time the cache does not hold continues from the origin the same way.
//!
//! Every source keeps the hub's [`Lease`] (the hub answered DESCRIBE and lingers
//! while viewers of its URL exist) and the session's [`Tally`], which whoever feeds the
//! viewer fills in; [`Source::stop`] returns the final counts. A stream served with
//! the viewer's own origin credentials (pass-through, `passthrough`) has no hub: it is
//! the viewer's own origin session, as on-demand content is.

use std::net::SocketAddr;
use std::sync::Arc;

use mediagate_rtsp::headers::Range;
use mediagate_rtsp::{Headers, Response, StatusCode, Version};

use crate::cache_fill::{object_key, object_meta, FillPlan};
use crate::cache_play::{CachePlayer, PlayStart, PlayerOut};
use crate::cache_store::CacheStore;
use crate::conn_out::ConnOut;
use crate::hub::SubscriberId;
use crate::hub_registry::{HubError, Hubs, Lease};
use crate::metrics::{EdgeStats, ViewerGauge};
use crate::ports::{PortAllocator, SocketPair};
use crate::routing::Router;
use crate::rtsp_client::ClientError;
use crate::session::CacheResult;
use crate::session::{error, ViewerTransport};
use crate::sink::{Counts, Tally, TrackDest, ViewerSink};
use crate::tracker::Tracker;
use crate::upstream::{Described, UpstreamTarget};
use crate::vod::{VodIo, VodSession};
use mediagate_rtsp::headers::RtpInfo;
use mediagate_rtsp::TypedHeader;

/// The kinds of media source.
#[derive(Debug)]
pub(crate) enum SourceKind {
    /// A live stream: the viewer is a subscriber of the hub while it plays.
    Live,
    /// On-demand content from the origin: the viewer's own origin session. A
    /// pass-through session has it from its DESCRIBE (`lazy` None, SETUPs forwarded);
    /// any other opens it at PLAY on a miss (`lazy` holds what the SETUPs chose).
    OnDemand {
        vod: Option<VodSession>,
        lazy: Option<Box<Lazy>>,
    },
    /// On-demand content served from the cache (a hit): no origin media session.
    Cached {
        player: Box<CachePlayer>,
        lazy: Box<Lazy>,
    },
}

/// What an on-demand session chose at SETUP, for the PLAY that decides where its
/// media comes from.
#[derive(Debug)]
pub(crate) struct Lazy {
    target: UpstreamTarget,
    out: ConnOut,
    ports: Arc<PortAllocator>,
    tasks: Tracker,
    cache: Option<Arc<CacheStore>>,
    policy: CachePolicy,
    /// Per described track: its destination and, for UDP, this edge's socket pair.
    tracks: Vec<Option<(TrackDest, Option<Arc<SocketPair>>)>>,
}

/// A route's cache switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CachePolicy {
    pub cache: bool,
    pub max_object_bytes: u64,
}

/// The route's cache policy (`cache = true|false`, `cache_max_object`); until the
/// route carries them, every on-demand route is cached without a size limit.
pub(crate) fn cache_policy(_target: &UpstreamTarget) -> CachePolicy {
    CachePolicy {
        cache: true,
        max_object_bytes: u64::MAX,
    }
}

/// What a SETUP of on-demand content needs to open the viewer's origin session.
pub(crate) struct OriginRoute<'a> {
    pub router: &'a Router,
    pub hubs: &'a Hubs,
    pub url: &'a str,
    pub local: SocketAddr,
    pub original_dst: Option<SocketAddr>,
    pub out: &'a ConnOut,
    /// Drain waits for the origin session's teardown.
    pub tasks: &'a Tracker,
    /// The viewer's `Authorization` on this request (sent on only by pass-through).
    pub authorization: Option<&'a str>,
    /// The edge's cache, when it has one.
    pub cache: Option<&'a Arc<CacheStore>>,
}

#[derive(Debug)]
pub(crate) struct Source {
    /// None for a pass-through session, which has no hub.
    lease: Option<Lease>,
    described: Arc<Described>,
    tally: Arc<Tally>,
    kind: SourceKind,
    /// The hub subscription while playing (live streams).
    subscribed: Option<SubscriberId>,
    /// This session in the edge's `viewers` gauge, released with the source.
    viewer_gauge: Option<ViewerGauge>,
}

/// A successful PLAY: the response, and (live) the subscriber whose held packets the
/// shell releases once that response is queued, so it precedes the media.
pub(crate) struct Playing {
    pub resp: Response,
    pub release: Option<SubscriberId>,
}

impl Source {
    pub fn new(lease: Lease, described: Arc<Described>) -> Self {
        let kind = if described.live {
            SourceKind::Live
        } else {
            SourceKind::OnDemand {
                vod: None,
                lazy: None,
            }
        };
        Self {
            lease: Some(lease),
            described,
            tally: Arc::default(),
            kind,
            subscribed: None,
            viewer_gauge: None,
        }
    }

    /// The viewer's own origin session, opened by its DESCRIBE with its own
    /// credentials (origin auth pass-through); never shared with another viewer.
    pub fn passthrough(described: Arc<Described>, vod: VodSession, tally: Arc<Tally>) -> Self {
        Self {
            lease: None,
            described,
            tally,
            kind: SourceKind::OnDemand {
                vod: Some(vod),
                lazy: None,
            },
            subscribed: None,
            viewer_gauge: None,
        }
    }

    /// True for the viewer's own origin session of a pass-through stream.
    pub fn is_passthrough(&self) -> bool {
        self.lease.is_none()
    }

    pub fn described(&self) -> &Arc<Described> {
        &self.described
    }

    fn hub(&self) -> Result<&crate::hub_registry::HubHandle, Response> {
        self.lease
            .as_ref()
            .map(Lease::hub)
            .ok_or_else(|| error(StatusCode::INTERNAL_SERVER_ERROR, "no live hub"))
    }

    /// Counts the session as a viewer on `transport` until the source is dropped.
    pub fn count_viewer(&mut self, stats: &Arc<EdgeStats>, transport: ViewerTransport) {
        if self.viewer_gauge.as_ref().map(ViewerGauge::transport) != Some(transport) {
            self.viewer_gauge = Some(ViewerGauge::new(stats.clone(), transport));
        }
    }

    /// The session's counters (what the hub adds when the viewer leaves it, or the
    /// on-demand passthrough per packet).
    /// Where this source's media comes from, for the access log.
    pub fn cache_result(&self) -> CacheResult {
        match &self.kind {
            SourceKind::Live => CacheResult::Split,
            SourceKind::OnDemand { vod: Some(v), .. } if v.filled() => CacheResult::Miss,
            SourceKind::OnDemand { .. } => CacheResult::Pass,
            SourceKind::Cached { .. } => CacheResult::Hit,
        }
    }

    pub fn tally(&self) -> &Arc<Tally> {
        &self.tally
    }

    /// Sets up `track` for `dest`; returns the server ports for a UDP viewer: the
    /// hub's shared pair for live streams, the viewer's own for on-demand content.
    pub async fn setup(
        &mut self,
        track: usize,
        dest: TrackDest,
        route: OriginRoute<'_>,
    ) -> Result<Option<(u16, u16)>, Response> {
        match &mut self.kind {
            SourceKind::Live => {
                if matches!(dest, TrackDest::Interleaved { .. }) {
                    return Ok(None);
                }
                let ports = self.hub()?.udp_ports().await.map_err(hub_error)?;
                ports.get(track).copied().map(Some).ok_or_else(|| {
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "no server ports for this track",
                    )
                })
            }
            SourceKind::OnDemand {
                vod: Some(vod),
                lazy,
            } => {
                let auth = route.authorization.map(str::to_owned);
                let ports = vod
                    .setup(track, dest, auth)
                    .await
                    .map_err(|e| client_error(&e))?;
                if let Some(l) = lazy {
                    l.set(track, dest, None);
                }
                Ok(ports)
            }
            SourceKind::OnDemand { vod: None, lazy } => {
                if lazy.is_none() {
                    let target = route
                        .router
                        .resolve(route.url, route.local, route.original_dst)
                        .map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
                    let policy = cache_policy(&target);
                    *lazy = Some(Box::new(Lazy {
                        target,
                        out: route.out.clone(),
                        ports: route.hubs.ports(),
                        tasks: route.tasks.clone(),
                        cache: route.cache.cloned(),
                        policy,
                        tracks: vec![None; self.described.tracks.len()],
                    }));
                }
                let Some(l) = lazy else {
                    return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "no route"));
                };
                l.setup(track, dest).await
            }
            SourceKind::Cached { lazy, .. } => lazy.setup(track, dest).await,
        }
    }

    /// Starts the media. `dests` are the session's per-track destinations.
    pub async fn play(
        &mut self,
        viewer_headers: &Headers,
        session_header: String,
        base_url: &str,
        dests: &[Option<TrackDest>],
        out: &ConnOut,
    ) -> Result<Playing, Response> {
        let start_ms = requested_start(viewer_headers);
        let kind = std::mem::replace(&mut self.kind, SourceKind::Live);
        let kind = match kind {
            // A session of on-demand content set up at the edge: the cache decides.
            SourceKind::OnDemand {
                vod: None,
                lazy: Some(lazy),
            } => {
                let from = start_ms.unwrap_or(0);
                match self.try_hit(&lazy, from).await {
                    Some(player) => SourceKind::Cached { player, lazy },
                    None => self.open_origin(lazy).await?,
                }
            }
            SourceKind::Cached { mut player, lazy } => match start_ms {
                None => SourceKind::Cached { player, lazy },
                Some(from) => {
                    if player.seek(from).await.unwrap_or(false) {
                        SourceKind::Cached { player, lazy }
                    } else {
                        // Not held: the origin serves it (and the cache records it).
                        drop(player);
                        self.open_origin(lazy).await?
                    }
                }
            },
            other => other,
        };
        self.kind = kind;
        let duration_ms = self.duration_ms();
        match &mut self.kind {
            SourceKind::OnDemand { vod: Some(vod), .. } => {
                let origin = vod
                    .play(viewer_headers.clone())
                    .await
                    .map_err(|e| client_error(&e))?;
                let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
                r.headers.append("Session", session_header);
                for name in ["Range", "Scale", "Speed"] {
                    if let Some(v) = origin.headers.get(name) {
                        r.headers.append(name, v.to_owned());
                    }
                }
                if let Some(info) = origin
                    .headers
                    .get("RTP-Info")
                    .and_then(|v| map_rtp_info(v, &self.described, base_url))
                {
                    r.headers.append("RTP-Info", info);
                }
                Ok(Playing {
                    resp: r,
                    release: None,
                })
            }
            SourceKind::Cached { player, lazy } => {
                let start = player.play().ok_or_else(|| {
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the cache player stopped",
                    )
                })?;
                let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
                r.headers.append("Session", session_header);
                r.headers
                    .append("Range", npt_range(start.start_ms, duration_ms));
                let info = hit_rtp_info(&start, &lazy.variant(), base_url);
                if !info.is_empty() {
                    r.headers.append("RTP-Info", info);
                }
                Ok(Playing {
                    resp: r,
                    release: None,
                })
            }
            // A session without an origin session yet plays like a live one (the hub
            // answers), as before sources had kinds.
            SourceKind::OnDemand { vod: None, .. } | SourceKind::Live => {
                let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
                r.headers.append("Session", session_header);
                r.headers.append("Range", "npt=now-");
                if self.subscribed.is_some() {
                    return Ok(Playing {
                        resp: r,
                        release: None,
                    });
                }
                let tracks: Vec<usize> = dests
                    .iter()
                    .enumerate()
                    .filter_map(|(i, d)| d.map(|_| i))
                    .collect();
                let sink = ViewerSink::new_held(out.clone(), dests.to_vec(), self.tally.clone());
                let (sub, starts) = self.hub()?.join(sink, tracks).await.map_err(hub_error)?;
                self.subscribed = Some(sub);
                let info: Vec<String> = starts
                    .iter()
                    .map(|t| {
                        format!(
                            "url={base_url}/{};seq={};rtptime={}",
                            track_name(t.track),
                            t.seq,
                            t.rtptime
                        )
                    })
                    .collect();
                if !info.is_empty() {
                    r.headers.append("RTP-Info", info.join(","));
                }
                Ok(Playing {
                    resp: r,
                    release: Some(sub),
                })
            }
        }
    }

    /// The clip's length from its SDP `a=range`, in ms.
    fn duration_ms(&self) -> Option<u64> {
        object_meta(&self.described, &object_key("", &self.described, &[])).duration_ms
    }

    /// A player for `from_ms` when the cache holds it for this variant, its stored
    /// description is the origin's current one, and the route caches.
    async fn try_hit(&self, lazy: &Lazy, from_ms: u64) -> Option<Box<CachePlayer>> {
        let store = lazy.cache.as_ref().filter(|_| lazy.policy.cache)?;
        let variant = lazy.variant();
        let url = lazy.target.url.without_credentials().to_string();
        let key = object_key(&url, &self.described, &variant);
        let current = object_meta(&self.described, &key);
        {
            // Index look-ups only (no file I/O): short enough for this task.
            let cache = store.lock();
            let held = cache.lookup(&key)?;
            if held.meta.sdp != current.sdp
                || held.meta.validators.sdp_origin != current.validators.sdp_origin
            {
                tracing::debug!(url, "cached object's description changed; refetching");
                return None;
            }
            cache.covered(&key, from_ms)?;
        }
        let clocks = current.tracks.iter().map(|t| t.clock_rate).collect();
        let out = PlayerOut {
            conn: lazy.out.clone(),
            dests: variant
                .iter()
                .map(|&i| lazy.tracks.get(i).cloned().flatten())
                .collect(),
            tally: self.tally.clone(),
        };
        match CachePlayer::open(store.clone(), key, clocks, from_ms, out).await {
            Ok(Some(p)) => {
                store.count_hit();
                tracing::debug!(url, from_ms, "cache hit");
                Some(Box::new(p))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(url, error = %e, "cached object could not be read; asking the origin");
                None
            }
        }
    }

    /// The miss path: the viewer's own origin session, its tracks set up as the
    /// viewer's SETUPs chose, recording into the cache when the route caches.
    async fn open_origin(&self, lazy: Box<Lazy>) -> Result<SourceKind, Response> {
        let variant = lazy.variant();
        let fill = lazy
            .cache
            .as_ref()
            .filter(|_| lazy.policy.cache)
            .map(|store| {
                FillPlan::new(
                    store.clone(),
                    &lazy.target.url.without_credentials().to_string(),
                    &self.described,
                    &variant,
                    lazy.policy.max_object_bytes,
                )
            });
        let io = VodIo {
            conn: lazy.out.clone(),
            ports: lazy.ports.clone(),
            tally: self.tally.clone(),
            guard: lazy.tasks.guard(),
            fill: None,
        };
        let vod = VodSession::open(&lazy.target, io, fill)
            .await
            .map_err(|e| client_error(&e))?;
        if vod.described().tracks.len() != self.described.tracks.len() {
            return Err(error(
                StatusCode::BAD_GATEWAY,
                "the origin changed the stream's tracks",
            ));
        }
        for &i in &variant {
            if let Some((dest, pair)) = lazy.tracks.get(i).cloned().flatten() {
                vod.setup_with(i, dest, pair)
                    .await
                    .map_err(|e| client_error(&e))?;
            }
        }
        if let Some(store) = lazy.cache.as_ref().filter(|_| lazy.policy.cache) {
            store.count_miss();
        }
        Ok(SourceKind::OnDemand {
            vod: Some(vod),
            lazy: Some(lazy),
        })
    }

    /// Lets the held packets of a live PLAY go, after its response was queued.
    pub fn release(&self, sub: SubscriberId) {
        if let Some(lease) = &self.lease {
            lease.hub().release(sub);
        }
    }

    /// True while the viewer receives from its hub (its transport is then fixed).
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.is_some()
    }

    /// Pauses: the origin session of on-demand content, the hub subscription of a
    /// live stream.
    pub async fn pause(&mut self, authorization: Option<&str>) -> Result<(), Response> {
        match &mut self.kind {
            SourceKind::OnDemand { vod: Some(vod), .. } => {
                vod.pause(authorization.map(str::to_owned))
                    .await
                    .map_err(|e| client_error(&e))?;
            }
            SourceKind::Cached { player, .. } => player.pause().await,
            _ => {}
        }
        self.leave_hub().await;
        Ok(())
    }

    async fn leave_hub(&mut self) {
        if let (Some(id), Some(lease)) = (self.subscribed.take(), &self.lease) {
            lease.hub().leave(id).await;
        }
    }

    /// Ends the media (an on-demand origin session is torn down as its handle drops)
    /// and returns what the viewer was sent.
    pub async fn stop(mut self) -> Counts {
        self.leave_hub().await;
        let tally = self.tally.clone();
        drop(self);
        tally.counts()
    }
}

impl Lazy {
    /// Records the viewer's choice for `track`; UDP viewers get this edge's own
    /// ports now, used by whichever serves them later.
    async fn setup(
        &mut self,
        track: usize,
        dest: TrackDest,
    ) -> Result<Option<(u16, u16)>, Response> {
        let pair = match dest {
            TrackDest::Udp { .. } => match self.tracks.get(track).cloned().flatten() {
                // A repeated SETUP keeps the ports it was given.
                Some((TrackDest::Udp { .. }, Some(p))) => Some(p),
                _ => Some(Arc::new(self.ports.bind_pair().await.map_err(|e| {
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("no UDP ports: {e}"),
                    )
                })?)),
            },
            TrackDest::Interleaved { .. } => None,
        };
        let ports = pair.as_ref().map(|p| (p.rtp_port(), p.rtp_port() + 1));
        self.set(track, dest, pair);
        Ok(ports)
    }

    fn set(&mut self, track: usize, dest: TrackDest, pair: Option<Arc<SocketPair>>) {
        if let Some(slot) = self.tracks.get_mut(track) {
            *slot = Some((dest, pair));
        }
    }

    /// The described tracks the viewer set up, in order.
    fn variant(&self) -> Vec<usize> {
        self.tracks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|_| i))
            .collect()
    }
}

/// The npt start of a viewer's PLAY `Range`, in ms.
fn requested_start(h: &Headers) -> Option<u64> {
    h.get("Range")
        .and_then(|v| Range::parse_value(v).ok())
        .and_then(|r| r.npt_start_millis())
}

/// `npt=S-` or `npt=S-E`, in seconds with ms.
fn npt_range(start_ms: u64, end_ms: Option<u64>) -> String {
    let secs = |ms: u64| format!("{}.{:03}", ms / 1000, ms % 1000);
    match end_ms {
        Some(e) if e > start_ms => format!("npt={}-{}", secs(start_ms), secs(e)),
        _ => format!("npt={}-", secs(start_ms)),
    }
}

/// A hit's `RTP-Info`: per track the viewer set up, the seq and rtptime of its first
/// packet.
fn hit_rtp_info(start: &PlayStart, variant: &[usize], base_url: &str) -> String {
    start
        .tracks
        .iter()
        .zip(variant)
        .map(|(&(seq, rtptime), &track)| {
            format!(
                "url={base_url}/{};seq={seq};rtptime={rtptime}",
                track_name(track)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The name under the viewer's URL of track `i`.
pub(crate) fn track_name(i: usize) -> String {
    format!("trackID={i}")
}

pub(crate) fn hub_error(e: HubError) -> Response {
    error(e.status, &e.reason)
}

pub(crate) fn client_error(e: &ClientError) -> Response {
    error(e.viewer_status(), &e.to_string())
}

/// The origin's RTP-Info with each URL replaced by the viewer's name for that track.
fn map_rtp_info(origin: &str, d: &Described, base_url: &str) -> Option<String> {
    let mut info = RtpInfo::parse_value(origin).ok()?;
    for e in &mut info.0 {
        let track = d.tracks.iter().position(|t| {
            t.control_url == e.url
                || t.control_url.ends_with(&e.url)
                || e.url.ends_with(&t.control_url)
        })?;
        e.url = format!("{base_url}/{}", track_name(track));
    }
    Some(info.to_value())
}
