//! Where a viewer session's media comes from.
//!
//! Today two kinds: a live stream split from its hub (one origin session for every
//! viewer, `hub_registry`/`hub_actor`), and on-demand content passed through on the
//! viewer's own origin session (`vod`). The cache player (issue 13) becomes a third
//! [`SourceKind`]; the viewer session does not change for it.
//!
//! Every source keeps the hub's [`Lease`] (the hub answered DESCRIBE and lingers
//! while viewers of its URL exist) and the session's [`Tally`], which whoever feeds the
//! viewer fills in; [`Source::stop`] returns the final counts. A stream served with
//! the viewer's own origin credentials (pass-through, `passthrough`) has no hub: it is
//! the viewer's own origin session, as on-demand content is.

use std::net::SocketAddr;
use std::sync::Arc;

use mediagate_rtsp::{Headers, Response, StatusCode, Version};

use crate::conn_out::ConnOut;
use crate::hub::SubscriberId;
use crate::hub_registry::{HubError, Hubs, Lease};
use crate::metrics::{EdgeStats, ViewerGauge};
use crate::routing::Router;
use crate::rtsp_client::ClientError;
use crate::session::CacheResult;
use crate::session::{error, ViewerTransport};
use crate::sink::{Counts, Tally, TrackDest, ViewerSink};
use crate::tracker::Tracker;
use crate::upstream::Described;
use crate::vod::VodSession;
use mediagate_rtsp::headers::RtpInfo;
use mediagate_rtsp::TypedHeader;

/// The kinds of media source.
#[derive(Debug)]
pub(crate) enum SourceKind {
    /// A live stream: the viewer is a subscriber of the hub while it plays.
    Live,
    /// On-demand content: the viewer's own origin session, opened at its first SETUP.
    OnDemand { vod: Option<VodSession> },
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
            SourceKind::OnDemand { vod: None }
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
            kind: SourceKind::OnDemand { vod: Some(vod) },
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
        match self.kind {
            SourceKind::Live => CacheResult::Split,
            SourceKind::OnDemand { .. } => CacheResult::Pass,
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
            SourceKind::OnDemand { vod } => {
                if vod.is_none() {
                    let target = route
                        .router
                        .resolve(route.url, route.local, route.original_dst)
                        .map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
                    let opened = VodSession::open(
                        &target,
                        route.out.clone(),
                        route.hubs.ports(),
                        self.tally.clone(),
                        route.tasks.guard(),
                    )
                    .await
                    .map_err(|e| client_error(&e))?;
                    if opened.described().tracks.len() != self.described.tracks.len() {
                        return Err(error(
                            StatusCode::BAD_GATEWAY,
                            "the origin changed the stream's tracks",
                        ));
                    }
                    *vod = Some(opened);
                }
                let vod = vod
                    .as_ref()
                    .ok_or_else(|| error(StatusCode::BAD_GATEWAY, "no origin session"))?;
                let auth = route.authorization.map(str::to_owned);
                vod.setup(track, dest, auth)
                    .await
                    .map_err(|e| client_error(&e))
            }
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
        match &mut self.kind {
            SourceKind::OnDemand { vod: Some(vod) } => {
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
            // A session without an origin session yet plays like a live one (the hub
            // answers), as before sources had kinds.
            SourceKind::OnDemand { vod: None } | SourceKind::Live => {
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
        if let SourceKind::OnDemand { vod: Some(vod) } = &self.kind {
            vod.pause(authorization.map(str::to_owned))
                .await
                .map_err(|e| client_error(&e))?;
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
