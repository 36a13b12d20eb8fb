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
//! to a time the cache does not hold continues from the origin the same way, a seek
//! of an origin session back into a held range goes back to the cache, and a hit
//! whose held range ends before the clip does goes on from the origin
//! ([`Continuation`]); the viewer's numbering carries over each move (`seam`).
//!
//! Which PLAY is a hit follows the route's policy and the freshness rules
//! (`freshness`): an object stored under a policy the route still has, describing
//! what the origin describes now, fresh for this viewer's `Cache-Control` or found
//! unchanged by a conditional DESCRIBE (REFRESH); a miss records only what the
//! origin's `Cache-Control` and credentials allow. A pass-through viewer (its own
//! origin session, opened by its own DESCRIBE with its own credentials) of on-demand
//! content is served the same way: its DESCRIBE is the origin's authorization and
//! revalidation, and a hit leaves its origin session set up but not playing.
//!
//! Every source keeps the hub's [`Lease`] (the hub answered DESCRIBE and lingers
//! while viewers of its URL exist) and the session's [`Tally`], which whoever feeds the
//! viewer fills in; [`Source::stop`] returns the final counts. A stream served with
//! the viewer's own origin credentials (pass-through, `passthrough`) has no hub: it is
//! the viewer's own origin session, as on-demand content is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mediagate_rtsp::headers::Range;
use mediagate_rtsp::{Headers, Response, StatusCode, Version};

use crate::cache_fill::{object_key, object_meta, unix_ms, FillPlan};
use crate::cache_play::{CachePlayer, PlayStart, PlayerOut, Rewriter};
use crate::cache_store::CacheStore;
use crate::conn_out::{AnswerQueued, ConnOut};
use crate::freshness;
use crate::hub::SubscriberId;
use crate::hub_registry::{HubError, Hubs, Lease};
use crate::metrics::{EdgeStats, ViewerGauge};
use crate::ports::{PortAllocator, SocketPair};
use crate::routing::Router;
use crate::rtsp_client::ClientError;
use crate::seam::{Joint, OriginSeam};
use crate::session::CacheResult;
use crate::session::{error, ViewerTransport};
use crate::shared_pairs::PairLease;
use crate::sink::{Counts, Tally, TrackDest, ViewerSink};
use crate::tracker::Tracker;
use crate::upstream::{self, Described, Revalidated, UpstreamTarget};
use crate::vod::{VodIo, VodSession};
use mediagate_cache::freshness::Freshness;
use mediagate_cache::{Meta, ObjectKey, Validators};
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
        /// Revalidated with the origin before it was served (REFRESH).
        refreshed: bool,
        /// A pass-through viewer's own origin session, authorized and set up but not
        /// playing: the origin's hold on the viewer, and where a seek the cache does
        /// not hold continues.
        held: Option<VodSession>,
    },
}

/// Where a PLAY of on-demand content is served from.
enum Lookup {
    Hit {
        player: Box<CachePlayer>,
        refreshed: bool,
        continuation: Option<Arc<Continuation>>,
    },
    /// From the origin (recorded when the policy allows).
    Miss,
    /// Not held, and the viewer said `only-if-cached`.
    NotCached,
}

/// What an on-demand session chose at SETUP, for the PLAY that decides where its
/// media comes from.
#[derive(Debug, Clone)]
pub(crate) struct Lazy {
    target: UpstreamTarget,
    out: ConnOut,
    ports: Arc<PortAllocator>,
    tasks: Tracker,
    cache: Option<Arc<CacheStore>>,
    policy: CachePolicy,
    /// Per described track: its destination and, for UDP, this edge's socket pair.
    tracks: Vec<Option<(TrackDest, Option<Arc<SocketPair>>)>>,
    /// Per described track: the viewer's hold on the cache's shared pair, when its
    /// pair is that (shared by clones: the continuation's copy).
    leases: Vec<Option<Arc<PairLease>>>,
    /// A pass-through session's first PLAY chose between the cache and its origin
    /// session (later PLAYs go where that one went).
    decided: bool,
}

/// A route's cache switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CachePolicy {
    pub cache: bool,
    pub max_object_bytes: u64,
    /// Keep content the origin wanted credentials for even when not `public`.
    pub cache_authenticated: bool,
    /// `[edge.cache] default_ttl`.
    pub default_ttl: Duration,
}

/// The route's cache policy: `cache`, `cache_max_object`, `cache_authenticated`.
pub(crate) fn cache_policy(target: &UpstreamTarget, default_ttl: Duration) -> CachePolicy {
    CachePolicy {
        cache: target.cache,
        max_object_bytes: target.cache_max_object.unwrap_or(u64::MAX),
        cache_authenticated: target.cache_authenticated,
        default_ttl,
    }
}

/// The stored variants of the on-demand content at `target` that could be served to a
/// viewer whose request said `viewer_cache_control`, without asking the origin: held
/// (at least one complete range), stored under a policy the route still has, and
/// fresh for this viewer (its `no-cache`, `max-stale`, `min-fresh`, `max-age`).
/// None when the route has no cache (or the edge none).
pub(crate) fn fresh_objects(
    store: Option<&Arc<CacheStore>>,
    target: &UpstreamTarget,
    viewer_cache_control: Option<&str>,
    now_unix_ms: u64,
) -> Option<Vec<mediagate_cache::ObjectInfo>> {
    let store = store.filter(|_| target.cache)?;
    let policy = cache_policy(target, store.default_ttl());
    let url = target.url.without_credentials().to_string();
    // An index walk over one URL's variants: no file I/O.
    let objects = store.lock().objects_of(&url);
    Some(
        objects
            .into_iter()
            .filter(|o| {
                !o.ranges.is_empty()
                    && freshness::storable(
                        o.meta.validators.cache_control.as_deref(),
                        o.meta.needed_auth,
                        policy.cache_authenticated,
                    )
                    && freshness::verdict(
                        &o.meta,
                        viewer_cache_control,
                        now_unix_ms,
                        policy.default_ttl,
                    ) == Freshness::Fresh
            })
            .collect(),
    )
}

/// Whether `d`, a running hub's description of on-demand content, may answer this
/// viewer's DESCRIBE: `fresh` (from [`fresh_objects`]) holds a variant of the same
/// content, fresh for this viewer. Without a cache on the route (`fresh` None) it
/// never does: each viewer is then played by an origin session of its own, which
/// plays the clip as the origin holds it now, so its description must come from the
/// origin now too (a hub lingers for later viewers, and a kept description may name
/// a clip the origin has since replaced).
pub(crate) fn description_current(
    d: &Described,
    fresh: Option<&[mediagate_cache::ObjectInfo]>,
) -> bool {
    fresh.is_some_and(|objects| {
        objects
            .iter()
            .any(|o| freshness::same_content(&o.meta, &object_meta(d, &o.key)))
    })
}

/// True when `newer` describes the content `kept` (a hub's description) does.
pub(crate) fn same_description(kept: &Described, newer: &Described) -> bool {
    let key = object_key("", kept, &[]);
    freshness::same_content(&object_meta(kept, &key), &object_meta(newer, &key))
}

/// What a SETUP of on-demand content needs to open the viewer's origin session.
pub(crate) struct OriginRoute<'a> {
    pub router: &'a Router,
    pub hubs: &'a Hubs,
    pub url: &'a str,
    pub local: SocketAddr,
    pub original_dst: Option<SocketAddr>,
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
    /// Where a hit goes on from the origin when its held range ends early.
    continuation: Option<Arc<Continuation>>,
    /// The session's handle on its connection's output, which whatever feeds the
    /// viewer holds (`conn_out`): moved when the session changes connection.
    out: ConnOut,
}

/// A successful PLAY: the response, and what the shell releases once that response is
/// queued, so it precedes the media.
pub(crate) struct Playing {
    pub resp: Response,
    pub release: Option<Release>,
}

/// What waits for a PLAY's answer to be queued.
#[derive(Debug)]
pub(crate) enum Release {
    /// A live viewer's subscriber, whose held packets then go.
    Hub(SubscriberId),
    /// An on-demand session's media (the origin's or the cache player's).
    Answered(AnswerQueued),
}

impl Source {
    /// A session of the connection whose output is `conn`.
    pub fn new(lease: Lease, described: Arc<Described>, conn: &ConnOut) -> Self {
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
            continuation: None,
            out: conn.for_session(),
        }
    }

    /// The viewer's own origin session, opened by its DESCRIBE with its own
    /// credentials (origin auth pass-through); never shared with another viewer.
    /// `out` is the session's handle that origin session was given.
    pub fn passthrough(
        described: Arc<Described>,
        vod: VodSession,
        tally: Arc<Tally>,
        out: ConnOut,
    ) -> Self {
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
            continuation: None,
            out,
        }
    }

    /// The session's handle on its connection's output: parked and moved with the
    /// session (`parked`).
    pub fn output(&self) -> &ConnOut {
        &self.out
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
            // Part of what it played came from the origin and was recorded.
            SourceKind::Cached { held: Some(v), .. } if v.filled() => CacheResult::Miss,
            SourceKind::Cached { .. } if self.continuation.as_ref().is_some_and(|c| c.filled()) => {
                CacheResult::Miss
            }
            SourceKind::Cached {
                refreshed: true, ..
            } => CacheResult::Refresh,
            SourceKind::Cached { .. } => CacheResult::Hit,
        }
    }

    pub fn tally(&self) -> &Arc<Tally> {
        &self.tally
    }

    /// Sets up `track` for `dest`; returns the server ports for a UDP viewer: the
    /// hub's shared pair for live streams, the cache's shared pair of the URL and
    /// track for on-demand content the route caches, the viewer's own otherwise.
    pub async fn setup(
        &mut self,
        track: usize,
        dest: TrackDest,
        route: OriginRoute<'_>,
    ) -> Result<Option<(u16, u16)>, Response> {
        let tally = &self.tally;
        let out = &self.out;
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
                // On-demand content a pass-through viewer may later get from the
                // cache: its UDP ports are the edge's own, as for any hit.
                if lazy.is_none() && !self.described.live && route.cache.is_some() {
                    *lazy = Lazy::for_route(&route, self.described.tracks.len(), out).ok();
                }
                let Some(l) = lazy else {
                    return vod
                        .setup(track, dest, auth)
                        .await
                        .map_err(|e| client_error(&e));
                };
                let pair = l.pair_for(track, dest, tally).await?;
                let ports = vod
                    .setup_full(track, dest, auth, pair.clone())
                    .await
                    .map_err(|e| client_error(&e))?;
                l.set(track, dest, pair);
                Ok(ports)
            }
            SourceKind::OnDemand { vod: None, lazy } => {
                if lazy.is_none() {
                    *lazy = Some(Lazy::for_route(&route, self.described.tracks.len(), out)?);
                }
                let Some(l) = lazy else {
                    return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "no route"));
                };
                l.setup(track, dest, tally).await
            }
            SourceKind::Cached { lazy, .. } => lazy.setup(track, dest, tally).await,
        }
    }

    /// Starts the media. `dests` are the session's per-track destinations;
    /// `origin_answer`, the origin's answer to this viewer's accounting DESCRIBE (when
    /// the route has accounting), revalidates a cached copy in place of a DESCRIBE of
    /// the edge's own.
    pub async fn play(
        &mut self,
        viewer_headers: &Headers,
        session_header: String,
        base_url: &str,
        dests: &[Option<TrackDest>],
        origin_answer: Option<Arc<Described>>,
    ) -> Result<Playing, Response> {
        let start_ms = requested_start(viewer_headers);
        let viewer = viewer_headers.get("Cache-Control");
        self.adopt_continuation().await;
        let kind = std::mem::replace(&mut self.kind, SourceKind::Live);
        let kind = match kind {
            // A session of on-demand content set up at the edge: the cache decides.
            SourceKind::OnDemand {
                vod: None,
                lazy: Some(lazy),
            } => {
                let from = start_ms.unwrap_or(0);
                match self
                    .lookup(&lazy, from, viewer, origin_answer.as_ref())
                    .await
                {
                    Lookup::Hit {
                        player,
                        refreshed,
                        continuation,
                    } => {
                        self.continuation = continuation;
                        SourceKind::Cached {
                            player,
                            lazy,
                            refreshed,
                            held: None,
                        }
                    }
                    Lookup::NotCached => {
                        self.kind = SourceKind::OnDemand {
                            vod: None,
                            lazy: Some(lazy),
                        };
                        return Err(not_cached());
                    }
                    Lookup::Miss => match open_origin(&lazy, &self.described, &self.tally).await {
                        Ok(vod) => {
                            self.retire_hub_if_changed(vod.described());
                            let seam = OriginSeam::new(vod.described(), &lazy.variant(), None);
                            vod.set_seam(seam).await;
                            SourceKind::OnDemand {
                                vod: Some(vod),
                                lazy: Some(lazy),
                            }
                        }
                        Err(r) => {
                            // Still set up: the viewer may try again.
                            self.kind = SourceKind::OnDemand {
                                vod: None,
                                lazy: Some(lazy),
                            };
                            return Err(r);
                        }
                    },
                }
            }
            // A pass-through viewer's first PLAY: its own DESCRIBE, just answered by
            // the origin, authorized it and revalidates what the cache holds.
            SourceKind::OnDemand {
                vod: Some(vod),
                lazy: Some(mut lazy),
            } if !lazy.decided && self.is_passthrough() => {
                lazy.decided = true;
                let from = start_ms.unwrap_or(0);
                let answered = vod.described().clone();
                match self.lookup(&lazy, from, viewer, Some(&answered)).await {
                    Lookup::Hit {
                        player, refreshed, ..
                    } => SourceKind::Cached {
                        player,
                        lazy,
                        refreshed,
                        held: Some(vod),
                    },
                    Lookup::NotCached => {
                        lazy.decided = false;
                        self.kind = SourceKind::OnDemand {
                            vod: Some(vod),
                            lazy: Some(lazy),
                        };
                        return Err(not_cached());
                    }
                    Lookup::Miss => {
                        if let Some(plan) = fill_plan(&lazy, &answered) {
                            vod.record_into(plan).await;
                        }
                        let seam = OriginSeam::new(&answered, &lazy.variant(), None);
                        vod.set_seam(seam).await;
                        SourceKind::OnDemand {
                            vod: Some(vod),
                            lazy: Some(lazy),
                        }
                    }
                }
            }
            SourceKind::Cached {
                mut player,
                lazy,
                refreshed,
                held,
            } => match start_ms {
                None => SourceKind::Cached {
                    player,
                    lazy,
                    refreshed,
                    held,
                },
                Some(from) if player.seek(from).await.unwrap_or(false) => SourceKind::Cached {
                    player,
                    lazy,
                    refreshed,
                    held,
                },
                // Not held: the viewer's origin session set up before (a pass-through
                // viewer's own, or one it moved to the cache from) serves it, going on
                // with the player's numbering.
                Some(_) if held.is_some() => {
                    let vod = held.expect("checked");
                    if let Some(plan) = fill_plan(&lazy, vod.described()) {
                        vod.record_into(plan).await;
                    }
                    let rewriter = player.into_rewriter().await;
                    let mut seam = OriginSeam::new(vod.described(), &lazy.variant(), rewriter);
                    seam.keep_own_reports();
                    vod.set_seam(seam).await;
                    self.continuation = None;
                    SourceKind::OnDemand {
                        vod: Some(vod),
                        lazy: Some(lazy),
                    }
                }
                // Not held: the origin serves it (and the cache records it).
                Some(_) => match open_origin(&lazy, &self.described, &self.tally).await {
                    Ok(vod) => {
                        let rewriter = player.into_rewriter().await;
                        let mut seam = OriginSeam::new(vod.described(), &lazy.variant(), rewriter);
                        seam.keep_own_reports();
                        vod.set_seam(seam).await;
                        self.continuation = None;
                        SourceKind::OnDemand {
                            vod: Some(vod),
                            lazy: Some(lazy),
                        }
                    }
                    Err(r) => {
                        // Paused where it was; a PLAY without Range resumes it.
                        self.kind = SourceKind::Cached {
                            player,
                            lazy,
                            refreshed,
                            held,
                        };
                        return Err(r);
                    }
                },
            },
            // A seek of an origin session back into what the cache holds: the player
            // serves it, going on with the origin's numbering; the origin session
            // stays set up, paused, for a later seek the cache does not hold.
            SourceKind::OnDemand {
                vod: Some(vod),
                lazy: Some(lazy),
            } if start_ms.is_some_and(|from| lazy.holds(&self.described, from)) => {
                let from = start_ms.unwrap_or(0);
                let auth = viewer_headers.get("Authorization").map(str::to_owned);
                self.back_to_cache(vod, lazy, from, viewer, auth).await
            }
            other => other,
        };
        self.kind = kind;
        let duration_ms = self.duration_ms();
        match &mut self.kind {
            SourceKind::OnDemand { vod: Some(vod), .. } => {
                let (origin, answered) = vod
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
                    release: Some(Release::Answered(answered)),
                })
            }
            SourceKind::Cached { player, lazy, .. } => {
                let (start, answered) = player.play().await.ok_or_else(|| {
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
                    release: Some(Release::Answered(answered)),
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
                let sink =
                    ViewerSink::new_held(self.out.clone(), dests.to_vec(), self.tally.clone());
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
                    release: Some(Release::Hub(sub)),
                })
            }
        }
    }

    /// The clip's length from its SDP `a=range`, in ms.
    fn duration_ms(&self) -> Option<u64> {
        object_meta(&self.described, &object_key("", &self.described, &[])).duration_ms
    }

    /// Where a PLAY from `from_ms` is served from. A hit needs the object for this
    /// variant holding `from_ms`, stored under a policy the route still has, the same
    /// content as the origin's latest description (`answered`: a pass-through
    /// viewer's own DESCRIBE; else the hub's), and fresh for this viewer, or found
    /// unchanged by a conditional DESCRIBE (then `refreshed`).
    async fn lookup(
        &self,
        lazy: &Lazy,
        from_ms: u64,
        viewer: Option<&str>,
        answered: Option<&Arc<Described>>,
    ) -> Lookup {
        let only_if_cached = freshness::only_if_cached(viewer);
        let miss = if only_if_cached {
            Lookup::NotCached
        } else {
            Lookup::Miss
        };
        let Some(store) = lazy.cache.as_ref().filter(|_| lazy.policy.cache) else {
            return miss;
        };
        let variant = lazy.variant();
        let url = lazy.target.url.without_credentials().to_string();
        let key = object_key(&url, &self.described, &variant);
        let held = {
            // Index look-ups only (no file I/O): short enough for this task.
            let cache = store.lock();
            let Some(held) = cache.lookup(&key) else {
                return miss;
            };
            if cache.covered(&key, from_ms).is_none() {
                return miss;
            }
            held
        };
        let meta = &held.meta;
        if !freshness::storable(
            meta.validators.cache_control.as_deref(),
            meta.needed_auth,
            lazy.policy.cache_authenticated,
        ) {
            tracing::debug!(
                url,
                "the route no longer caches this object; asking the origin"
            );
            return miss;
        }
        let latest = object_meta(answered.unwrap_or(&self.described), &key);
        let same = freshness::same_content(meta, &latest);
        if let Some(a) = answered.filter(|_| !same) {
            tracing::debug!(url, "cached object's description changed; refetching");
            self.retire_hub_if_changed(a);
            return miss;
        }
        let now = SystemTime::now();
        let verdict = freshness::verdict(meta, viewer, unix_ms(now), lazy.policy.default_ttl);
        if verdict == Freshness::NotCacheable {
            tracing::debug!(
                url,
                "the cached object may not be served; asking the origin"
            );
            return miss;
        }
        // The hub's description may be older than the object (it is kept while the
        // hub lingers), or newer: when the two differ, the origin decides.
        if only_if_cached && (!same || verdict != Freshness::Fresh) {
            // Not what the viewer was described, or not fresh enough for its
            // max-stale/min-fresh: the origin may not be asked (RFC 7826 §18.11).
            return Lookup::NotCached;
        }
        let stale = !same || verdict != Freshness::Fresh;
        let refreshed = if !stale {
            false
        } else {
            let validators = match answered {
                // Answered for this very viewer a moment ago: a revalidation already.
                Some(_) => Ok(Some(latest.validators)),
                None => revalidate(&lazy.target, meta, &key).await,
            };
            match validators {
                Ok(Some(validators)) => {
                    if let Err(e) = store.lock().refresh(&key, validators, unix_ms(now)) {
                        tracing::warn!(url, error = %e, "revalidated object could not be refreshed");
                        return Lookup::Miss;
                    }
                    tracing::debug!(url, "cached object revalidated unchanged");
                    true
                }
                Ok(None) => {
                    // Changed (or gone): the hub's description, the stored one,
                    // kept for later viewers, is no longer the clip's.
                    if same {
                        self.retire_hub();
                    }
                    return Lookup::Miss;
                }
                // The origin cannot be asked: a stale copy it allows serving stale is
                // still better than no clip (RFC 7234 §4.2.4).
                Err(()) if same && verdict == Freshness::Stale => false,
                Err(()) => return Lookup::Miss,
            }
        };
        let clocks = meta.tracks.iter().map(|t| t.clock_rate).collect();
        // A pass-through viewer's stream ends with the held range: its origin
        // session is its own, and PLAYing it again asks the viewer's credentials.
        let continuation = (!self.is_passthrough()).then(|| {
            Arc::new(Continuation {
                lazy: lazy.clone(),
                described: self.described.clone(),
                tally: self.tally.clone(),
                key: key.clone(),
                duration_ms: meta.duration_ms.or_else(|| self.duration_ms()),
                taken: std::sync::Mutex::new(None),
            })
        });
        let out = PlayerOut {
            conn: lazy.out.clone(),
            dests: variant
                .iter()
                .map(|&i| lazy.tracks.get(i).cloned().flatten())
                .collect(),
            tally: self.tally.clone(),
            at_end: continuation.clone(),
        };
        match CachePlayer::open(store.clone(), key, clocks, from_ms, out).await {
            Ok(Some(player)) => {
                store.count_hit();
                tracing::debug!(url, from_ms, refreshed, "cache hit");
                Lookup::Hit {
                    player: Box::new(player),
                    refreshed,
                    continuation,
                }
            }
            Ok(None) => {
                tracing::debug!(
                    url,
                    from_ms,
                    "the cache no longer holds it; asking the origin"
                );
                miss
            }
            Err(e) => {
                tracing::warn!(url, error = %e, "cached object could not be read; asking the origin");
                Lookup::Miss
            }
        }
    }

    /// True when `newer` describes the content the hub's description does.
    fn same_as_hub(&self, newer: &Described) -> bool {
        same_description(&self.described, newer)
    }

    /// Takes this source's hub out of the registry: its description (kept while it
    /// lingers for later viewers) no longer describes the origin's clip, and the next
    /// viewer's DESCRIBE must ask the origin. This viewer's lease keeps it running.
    fn retire_hub(&self) {
        if let Some(lease) = &self.lease {
            tracing::debug!(origin = %self.described.aggregate_url, "the clip changed at the origin; its hub is retired");
            lease.hub().forget();
        }
    }

    fn retire_hub_if_changed(&self, newer: &Described) {
        if !self.same_as_hub(newer) {
            self.retire_hub();
        }
    }

    /// A hit whose held range ended and whose origin session took over: that session
    /// is the source from now on.
    async fn adopt_continuation(&mut self) {
        let Some(c) = self.continuation.clone() else {
            return;
        };
        let SourceKind::Cached { player, .. } = &mut self.kind else {
            return;
        };
        // The player task ends once it handed over (or was stopped).
        player.pause().await;
        let Some(vod) = c.take() else {
            return;
        };
        if let SourceKind::Cached { lazy, .. } = std::mem::replace(&mut self.kind, SourceKind::Live)
        {
            self.kind = SourceKind::OnDemand {
                vod: Some(vod),
                lazy: Some(lazy),
            };
        }
        self.continuation = None;
    }

    /// From the origin session `vod` back to the cache at `from_ms` (held, as
    /// `Lazy::holds` found): the origin session is paused and kept; the player goes
    /// on with its numbering. Stays with the origin when the cache cannot serve it
    /// after all (stale, or the object changed).
    async fn back_to_cache(
        &mut self,
        vod: VodSession,
        lazy: Box<Lazy>,
        from_ms: u64,
        viewer: Option<&str>,
        auth: Option<String>,
    ) -> SourceKind {
        if vod.hold(auth).await.is_err() {
            return SourceKind::OnDemand {
                vod: Some(vod),
                lazy: Some(lazy),
            };
        }
        let Some(seam) = vod.take_seam().await else {
            return SourceKind::OnDemand {
                vod: Some(vod),
                lazy: Some(lazy),
            };
        };
        let answered = self.is_passthrough().then(|| vod.described().clone());
        match self.lookup(&lazy, from_ms, viewer, answered.as_ref()).await {
            Lookup::Hit {
                mut player,
                refreshed,
                continuation,
            } => {
                player.continue_numbering(seam.into_rewriter()).await;
                self.continuation = continuation;
                SourceKind::Cached {
                    player,
                    lazy,
                    refreshed,
                    held: Some(vod),
                }
            }
            Lookup::Miss | Lookup::NotCached => {
                vod.set_seam(seam).await;
                SourceKind::OnDemand {
                    vod: Some(vod),
                    lazy: Some(lazy),
                }
            }
        }
    }

    /// Lets the media of a PLAY go, after its response was queued.
    pub fn release(&self, release: Release) {
        match release {
            Release::Hub(sub) => {
                if let Some(lease) = &self.lease {
                    lease.hub().release(sub);
                }
            }
            Release::Answered(a) => a.done(),
        }
    }

    /// True while the viewer receives from its hub (its transport is then fixed).
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.is_some()
    }

    /// Pauses: the origin session of on-demand content, the hub subscription of a
    /// live stream.
    pub async fn pause(&mut self, authorization: Option<&str>) -> Result<(), Response> {
        self.adopt_continuation().await;
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

    /// As [`Self::stop`], telling a UDP viewer of the live hub with an RTCP BYE that
    /// its stream ended (its connection stays open; TCP viewers see theirs close).
    pub async fn stop_with_bye(mut self) -> Counts {
        if let (Some(id), Some(lease)) = (self.subscribed.take(), &self.lease) {
            lease.hub().leave_with_bye(id).await;
        }
        self.stop().await
    }
}

impl Lazy {
    /// `out`: the session's handle on its connection's output.
    fn for_route(
        route: &OriginRoute<'_>,
        tracks: usize,
        out: &ConnOut,
    ) -> Result<Box<Lazy>, Response> {
        let target = route
            .router
            .resolve(route.url, route.local, route.original_dst)
            .map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
        let ttl = route
            .cache
            .map_or(crate::cache_store::DEFAULT_TTL, |c| c.default_ttl());
        let policy = cache_policy(&target, ttl);
        Ok(Box::new(Lazy {
            target,
            out: out.clone(),
            ports: route.hubs.ports(),
            tasks: route.tasks.clone(),
            cache: route.cache.cloned(),
            policy,
            tracks: vec![None; tracks],
            leases: vec![None; tracks],
            decided: false,
        }))
    }

    /// Records the viewer's choice for `track`; UDP viewers get this edge's own
    /// ports now, used by whichever serves them later.
    async fn setup(
        &mut self,
        track: usize,
        dest: TrackDest,
        tally: &Arc<Tally>,
    ) -> Result<Option<(u16, u16)>, Response> {
        let pair = self.pair_for(track, dest, tally).await?;
        let ports = pair.as_ref().map(|p| (p.rtp_port(), p.rtp_port() + 1));
        self.set(track, dest, pair);
        Ok(ports)
    }

    /// This edge's UDP pair for `track` (a repeated SETUP keeps its own); None for
    /// interleaved viewers. When the route caches, it is the pair every UDP viewer of
    /// the URL's track shares (`shared_pairs`), whether the PLAY turns out a hit or
    /// not (SETUP comes first): a playout group then sends all its members a batch
    /// from one socket, and the viewer's RTCP from its destination's address is
    /// credited to `tally`.
    async fn pair_for(
        &mut self,
        track: usize,
        dest: TrackDest,
        tally: &Arc<Tally>,
    ) -> Result<Option<Arc<SocketPair>>, Response> {
        if let (TrackDest::Udp { rtcp, .. }, Some(store)) =
            (dest, self.cache.as_ref().filter(|_| self.policy.cache))
        {
            if let Some(lease) = self.leases.get(track).cloned().flatten() {
                if lease.rtcp_from() == rtcp {
                    return Ok(Some(lease.pair().clone()));
                }
            }
            let url = self.target.url.without_credentials().to_string();
            let lease = store
                .pairs()
                .lease(&self.ports, &url, track, rtcp, tally.clone())
                .await
                .map_err(|e| {
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("no UDP ports: {e}"),
                    )
                })?;
            let pair = lease.pair().clone();
            // Replaced after the new one is held, so a repeated SETUP keeps the ports.
            if let Some(slot) = self.leases.get_mut(track) {
                *slot = Some(Arc::new(lease));
            }
            return Ok(Some(pair));
        }
        Ok(match dest {
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
        })
    }

    fn set(&mut self, track: usize, dest: TrackDest, pair: Option<Arc<SocketPair>>) {
        if let Some(slot) = self.tracks.get_mut(track) {
            *slot = Some((dest, pair));
        }
    }

    /// True when the cache holds `from_ms` of this variant (an index look-up).
    fn holds(&self, described: &Described, from_ms: u64) -> bool {
        let Some(store) = self.cache.as_ref().filter(|_| self.policy.cache) else {
            return false;
        };
        let url = self.target.url.without_credentials().to_string();
        let key = object_key(&url, described, &self.variant());
        store.lock().covered(&key, from_ms).is_some()
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

/// The miss path: the viewer's own origin session, its tracks set up as the
/// viewer's SETUPs chose, recording into the cache when the route caches.
async fn open_origin(
    lazy: &Lazy,
    described: &Described,
    tally: &Arc<Tally>,
) -> Result<VodSession, Response> {
    let variant = lazy.variant();
    let io = VodIo {
        conn: lazy.out.clone(),
        ports: lazy.ports.clone(),
        tally: tally.clone(),
        guard: lazy.tasks.guard(),
    };
    let vod = VodSession::open(&lazy.target, io)
        .await
        .map_err(|e| client_error(&e))?;
    if vod.described().tracks.len() != described.tracks.len() {
        return Err(error(
            StatusCode::BAD_GATEWAY,
            "the origin changed the stream's tracks",
        ));
    }
    // Recorded as this session's own DESCRIBE describes it: newer than the hub's
    // when the clip changed.
    if let Some(plan) = fill_plan(lazy, vod.described()) {
        vod.record_into(plan).await;
    }
    for &i in &variant {
        if let Some((dest, pair)) = lazy.tracks.get(i).cloned().flatten() {
            vod.setup_with(i, dest, pair)
                .await
                .map_err(|e| client_error(&e))?;
        }
    }
    Ok(vod)
}

/// Where a hit whose held range ends before the clip does goes on: the viewer's own
/// origin session, opened then and PLAYed from the end of what was sent, numbered as
/// one stream with it (`seam`) and recorded, so the object grows to meet the rest.
/// The player task starts it; the source adopts the session at the viewer's next
/// request (it is the session's media source from then on).
#[derive(Debug)]
pub(crate) struct Continuation {
    lazy: Lazy,
    described: Arc<Described>,
    tally: Arc<Tally>,
    key: ObjectKey,
    duration_ms: Option<u64>,
    taken: std::sync::Mutex<Option<VodSession>>,
}

/// A held range that ends this close to the clip's end is its end.
const END_SLACK_MS: u64 = 500;

impl Continuation {
    /// Goes on from the origin after `sent_ms` (the media time of the last packet
    /// sent) with the viewer's numbering; gives the numbering back when the clip
    /// ends there or the origin cannot serve it (the player then ends the stream).
    pub async fn take_over(&self, rewriter: Rewriter, sent_ms: u64) -> Result<(), Rewriter> {
        let complete = self
            .lazy
            .cache
            .as_ref()
            .is_some_and(|store| store.lock().lookup(&self.key).is_some_and(|o| o.complete));
        let before_end = self
            .duration_ms
            .is_some_and(|d| sent_ms.saturating_add(END_SLACK_MS) < d);
        if complete || !before_end {
            return Err(rewriter);
        }
        let url = self.lazy.target.url.without_credentials().to_string();
        let vod = match open_origin(&self.lazy, &self.described, &self.tally).await {
            Ok(vod) => vod,
            Err(r) => {
                tracing::info!(url, status = %r.status, "the end of a held range could not continue from the origin");
                return Err(rewriter);
            }
        };
        let mut seam = OriginSeam::new(vod.described(), &self.lazy.variant(), Some(rewriter));
        seam.set_joint(Joint::Continue { sent_ms });
        seam.keep_own_reports();
        vod.set_seam(seam).await;
        let mut headers = Headers::new();
        headers.append("Range", npt_range(sent_ms, None));
        match vod.continue_play(headers).await {
            Ok(_) => {
                tracing::debug!(url, sent_ms, "held range ended; the origin goes on");
                *self
                    .taken
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(vod);
                Ok(())
            }
            Err(e) => {
                tracing::info!(url, error = %e, "the end of a held range could not continue from the origin");
                let back = vod.take_seam().await.map(OriginSeam::into_rewriter);
                Err(back.unwrap_or_else(|| Rewriter::new(&[], || 0)))
            }
        }
    }

    /// The origin session that took over, once (the source adopts it).
    fn take(&self) -> Option<VodSession> {
        self.taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn filled(&self) -> bool {
        self.taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(VodSession::filled)
    }
}

/// The fill of `lazy`'s variant as `d` describes it, when the route and the origin's
/// answer allow storing it (RFC 7826 §18.11; content behind origin credentials only
/// when `public` or the route's `cache_authenticated`).
fn fill_plan(lazy: &Lazy, d: &Described) -> Option<FillPlan> {
    let store = lazy.cache.as_ref().filter(|_| lazy.policy.cache)?;
    let url = lazy.target.url.without_credentials().to_string();
    if !freshness::storable(
        d.caching.cache_control.as_deref(),
        d.needed_auth,
        lazy.policy.cache_authenticated,
    ) {
        tracing::debug!(
            url,
            needed_auth = d.needed_auth,
            cache_control = d.caching.cache_control.as_deref().unwrap_or(""),
            "not cached: the origin's Cache-Control or its credentials forbid it"
        );
        return None;
    }
    Some(FillPlan::new(
        store.clone(),
        &url,
        d,
        &lazy.variant(),
        lazy.policy.max_object_bytes,
    ))
}

/// A conditional DESCRIBE of a stale object (RFC 7826 §18.24, §18.25): the
/// validators to keep when the origin has the same content, None when it changed,
/// `Err` when the origin could not be asked.
async fn revalidate(
    target: &UpstreamTarget,
    stored: &Meta,
    key: &ObjectKey,
) -> Result<Option<Validators>, ()> {
    let conditions = freshness::conditional_headers(&stored.validators);
    match upstream::describe_if_changed(target, &conditions).await {
        Ok(Revalidated::NotModified(sent)) => {
            Ok(Some(freshness::updated(&stored.validators, sent)))
        }
        Ok(Revalidated::Changed(d)) => {
            let current = object_meta(&d, key);
            Ok(freshness::same_content(stored, &current).then_some(current.validators))
        }
        // The origin answered, and not with this content (gone, refused...).
        Err(e @ (ClientError::Status { .. } | ClientError::Challenged { .. })) => {
            tracing::info!(url = %key.url, error = %e, "revalidation refused");
            Ok(None)
        }
        Err(e) => {
            tracing::info!(url = %key.url, error = %e, "revalidation failed: the origin could not be asked");
            Err(())
        }
    }
}

/// The answer to an `only-if-cached` request the cache cannot serve (RFC 7826 §18.11).
pub(crate) fn not_cached() -> Response {
    error(
        StatusCode::GATEWAY_TIMEOUT,
        "not in the cache, and the request said only-if-cached",
    )
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
