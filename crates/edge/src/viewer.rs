//! The RTSP server side of the edge: one task per viewer connection.
//!
//! It answers OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN and GET/SET_PARAMETER
//! keep-alives (RFC 2326 §10), pipelined or not, with the errors a demanding client
//! expects: 400 malformed, 404 no route, 454 unknown session, 455 wrong state, 459 a
//! session spanning two streams, 461 no usable transport, 505 RTSP/2.0, 551 an
//! unsupported `Proxy-Require`/`Require`, 503 over the viewer limit; each with a reason
//! a person can read. Sessions advertise their timeout and end when it passes without a
//! request (or without traffic on the connection).
//!
//! Live streams come from the shared hub of their origin URL; the viewer's tracks are
//! named `trackID=N` under the URL it asked for, so it never sees origin names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mediagate_rtsp::headers::{
    ChannelRange, Delivery, LowerTransport, PortRange, RtpInfo, RtpProfile, Transport,
    TransportProtocol, TransportSpec,
};
use mediagate_rtsp::parse::Decoder;
use mediagate_rtsp::{Item, Method, Request, Response, StatusCode, TypedHeader, Version};
use mediagate_sdp::SessionDescription;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::conn_out::{Backlog, ConnOut, MAX_CONTROL_QUEUED};
use crate::hub::SubscriberId;
use crate::hub_task::{HubError, Hubs, Lease};
use crate::ids;
use crate::routing::{RouteError, Router};
use crate::rtsp_client::ClientError;
use crate::sink::{TrackDest, ViewerSink};
use crate::upstream::Described;
use crate::vod::VodSession;

/// Settings every viewer connection shares.
#[derive(Debug)]
pub struct ViewerContext {
    pub router: Router,
    pub hubs: Hubs,
    pub session_timeout: Duration,
    pub max_viewers: usize,
    pub backlog: Backlog,
    /// `Server` header and our `Via` entry.
    pub server: String,
    pub via: String,
    /// Sessions open on this edge (for the viewer limit).
    pub sessions: AtomicUsize,
}

/// Methods we answer, for `Public`.
const PUBLIC: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// The name under the viewer's URL of track `i`.
fn track_name(i: usize) -> String {
    format!("trackID={i}")
}

struct ViewerSession {
    /// Keeps the hub running while the session exists.
    lease: Lease,
    /// The stream URL as the viewer named it (no trailing `/`).
    base_url: String,
    described: Arc<Described>,
    dests: Vec<Option<TrackDest>>,
    playing: Option<SubscriberId>,
    last_seen: Instant,
    /// On-demand content: this viewer's own origin session.
    vod: Option<VodSession>,
}

impl ViewerSession {
    fn stop(&mut self) {
        if let Some(id) = self.playing.take() {
            self.lease.hub().leave(id);
        }
    }
}

/// A request handler bound to one viewer's output (a TCP connection, or the GET side
/// of an HTTP tunnel).
pub struct ViewerConn {
    ctx: Arc<ViewerContext>,
    out: ConnOut,
    peer: SocketAddr,
    local: SocketAddr,
    original_dst: Option<SocketAddr>,
    sessions: HashMap<String, ViewerSession>,
    /// Streams described on this connection, so SETUP need not ask the hub again and
    /// the hub lingers between DESCRIBE and SETUP.
    described: HashMap<String, (Arc<Described>, Lease)>,
    /// Viewer traffic over interleaved channels (RTCP receiver reports) counts as life.
    last_traffic: Instant,
}

/// Outcome of handling one request: the response, plus a subscriber to release once
/// that response is queued (PLAY).
struct Reply {
    resp: Response,
    release: Option<(String, SubscriberId)>,
}

impl From<Response> for Reply {
    fn from(resp: Response) -> Self {
        Self {
            resp,
            release: None,
        }
    }
}

impl ViewerConn {
    pub fn new(
        ctx: Arc<ViewerContext>,
        out: ConnOut,
        peer: SocketAddr,
        local: SocketAddr,
        original_dst: Option<SocketAddr>,
    ) -> Self {
        Self {
            ctx,
            out,
            peer,
            local,
            original_dst,
            sessions: HashMap::new(),
            described: HashMap::new(),
            last_traffic: Instant::now(),
        }
    }

    pub fn out(&self) -> &ConnOut {
        &self.out
    }

    /// Reads requests from `rd` (already holding `decoder`'s buffered bytes) until the
    /// viewer goes away, misbehaves, or every session times out.
    pub async fn run<R: AsyncRead + Unpin>(&mut self, mut rd: R, mut decoder: Decoder) {
        let mut buf_full_since: Option<Instant> = None;
        loop {
            // Hand out everything already decodable first (pipelined requests).
            loop {
                match decoder.next_item() {
                    Ok(Some(Item::Request(req))) => {
                        self.last_traffic = Instant::now();
                        self.handle(req).await;
                    }
                    Ok(Some(Item::Frame(_))) => self.last_traffic = Instant::now(),
                    Ok(Some(Item::Response(_))) => {}
                    Ok(None) => break,
                    Err(e) => {
                        let mut resp = Response::new(Version::Rtsp1_0, StatusCode::BAD_REQUEST);
                        resp.reason = format!("Bad Request ({e})").chars().take(200).collect();
                        resp.headers.append("Connection", "close");
                        self.send(resp);
                        self.close();
                        linger_close(&mut rd).await;
                        return;
                    }
                }
            }
            // A viewer that pipelines requests but never reads responses: stop reading
            // until it drains them (bounded memory), and give up after a while.
            if self.out.control_backlog() > MAX_CONTROL_QUEUED {
                let since = *buf_full_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.ctx.session_timeout {
                    self.close();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            buf_full_since = None;
            let deadline = self.next_deadline();
            let buf = decoder.buffer_mut();
            buf.reserve(4096);
            tokio::select! {
                r = rd.read_buf(buf) => match r {
                    Ok(0) | Err(_) => {
                        self.close();
                        return;
                    }
                    Ok(_) => {}
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if self.expire_sessions() {
                        self.close();
                        return;
                    }
                }
                _ = self.out.closed() => {
                    self.close();
                    return;
                }
            }
        }
    }

    /// Ends every session and the output.
    pub fn close(&mut self) {
        for (_, mut s) in self.sessions.drain() {
            s.stop();
            self.ctx.sessions.fetch_sub(1, Ordering::Relaxed);
        }
        self.described.clear();
        self.out.close();
    }

    fn next_deadline(&self) -> Instant {
        let t = self.ctx.session_timeout;
        let oldest = self
            .sessions
            .values()
            .map(|s| s.last_seen.max(self.last_traffic))
            .min()
            .unwrap_or(self.last_traffic);
        oldest + t
    }

    /// Ends sessions that timed out; true when the connection itself is idle and
    /// should close.
    fn expire_sessions(&mut self) -> bool {
        let t = self.ctx.session_timeout;
        let now = Instant::now();
        let traffic = self.last_traffic;
        let dead: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_seen.max(traffic)) >= t)
            .map(|(k, _)| k.clone())
            .collect();
        for id in dead {
            if let Some(mut s) = self.sessions.remove(&id) {
                s.stop();
                self.ctx.sessions.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.sessions.is_empty() && now.duration_since(traffic) >= t
    }

    fn send(&self, mut resp: Response) {
        resp.headers.set("Server", self.ctx.server.clone());
        resp.headers.append("Via", self.ctx.via.clone());
        self.out.push_control(resp.to_bytes());
    }

    /// Handles one request and queues its response.
    pub async fn handle(&mut self, req: Request) {
        let reply = self.dispatch(&req).await;
        let mut resp = reply.resp;
        if let Some(c) = req.cseq() {
            resp.set_cseq(c);
        }
        self.send(resp);
        if let Some((session, id)) = reply.release {
            if let Some(s) = self.sessions.get(&session) {
                s.lease.hub().release(id);
            }
        }
    }

    async fn dispatch(&mut self, req: &Request) -> Reply {
        if req.version == Version::Rtsp2_0 {
            return error(
                StatusCode::RTSP_VERSION_NOT_SUPPORTED,
                "this edge speaks RTSP/1.0",
            )
            .into();
        }
        if !req.version.is_rtsp() {
            return error(StatusCode::BAD_REQUEST, "expected an RTSP/1.0 request").into();
        }
        if req.cseq().is_none() {
            return error(StatusCode::BAD_REQUEST, "missing or invalid CSeq header").into();
        }
        for name in ["Proxy-Require", "Require"] {
            let tags: Vec<&str> = req
                .headers
                .get_all(name)
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect();
            if !tags.is_empty() {
                let mut r = error(
                    StatusCode::OPTION_NOT_SUPPORTED,
                    &format!("{name} feature not supported"),
                );
                r.headers.append("Unsupported", tags.join(", "));
                return r.into();
            }
        }
        let session_id = req
            .headers
            .get("Session")
            .map(|s| s.split(';').next().unwrap_or("").trim().to_owned());
        if let Some(id) = &session_id {
            match self.sessions.get_mut(id) {
                Some(s) => s.last_seen = Instant::now(),
                None if req.method != Method::Setup || !id.is_empty() => {
                    return error(
                        StatusCode::SESSION_NOT_FOUND,
                        "no such session (it may have timed out)",
                    )
                    .into();
                }
                None => {}
            }
        }
        match &req.method {
            Method::Options => {
                let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
                r.headers.append("Public", PUBLIC);
                r.into()
            }
            Method::Describe => self.describe(req).await.into(),
            Method::Setup => self.setup(req, session_id).await.into(),
            Method::Play => self.play(req, session_id).await,
            Method::Pause => self.pause(session_id).await.into(),
            Method::Teardown => self.teardown(session_id).into(),
            Method::GetParameter | Method::SetParameter => {
                let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
                if let Some(id) = &session_id {
                    r.headers.append("Session", self.session_header(id));
                }
                r.into()
            }
            Method::Announce | Method::Record | Method::Redirect | Method::PlayNotify => {
                let mut r = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this edge only plays streams",
                );
                r.headers.append("Allow", PUBLIC);
                r.into()
            }
            Method::Get | Method::Post | Method::Extension(_) => {
                error(StatusCode::NOT_IMPLEMENTED, "method not implemented").into()
            }
        }
    }

    fn session_header(&self, id: &str) -> String {
        format!("{id};timeout={}", self.ctx.session_timeout.as_secs().max(1))
    }

    /// The viewer's stream URL for a request URI: the URI itself for DESCRIBE, without
    /// its `/trackID=N` for SETUP.
    fn stream_url(uri: &str) -> (String, Option<usize>) {
        let trimmed = uri.trim_end_matches('/');
        if let Some((base, last)) = trimmed.rsplit_once('/') {
            if let Some(n) = last.strip_prefix("trackID=") {
                if let Ok(i) = n.parse::<usize>() {
                    return (base.to_owned(), Some(i));
                }
            }
        }
        (trimmed.to_owned(), None)
    }

    async fn open_stream(&mut self, stream_url: &str) -> Result<(Arc<Described>, Lease), Response> {
        if let Some((d, lease)) = self.described.get(stream_url) {
            return Ok((d.clone(), lease.another()));
        }
        let target = self
            .ctx
            .router
            .resolve(stream_url, self.local, self.original_dst)
            .map_err(|e| match e {
                RouteError::NotFound(_) => error(StatusCode::NOT_FOUND, &e.to_string()),
                RouteError::Forbidden(_) => error(StatusCode::FORBIDDEN, &e.to_string()),
                RouteError::BadUrl(_) => error(StatusCode::BAD_REQUEST, &e.to_string()),
            })?;
        let lease = self.ctx.hubs.lease(&target);
        let d = lease.hub().describe().await.map_err(hub_error)?;
        self.described
            .insert(stream_url.to_owned(), (d.clone(), lease.another()));
        Ok((d, lease))
    }

    async fn describe(&mut self, req: &Request) -> Response {
        let (url, _) = Self::stream_url(&req.uri);
        let (d, _lease) = match self.open_stream(&url).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        let sdp = viewer_sdp(&d);
        let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
        r.headers.append("Content-Base", format!("{url}/"));
        r.headers.append("Cache-Control", "no-cache");
        r.set_body("application/sdp", sdp.to_bytes());
        r
    }

    async fn setup(&mut self, req: &Request, session_id: Option<String>) -> Response {
        let (url, track) = Self::stream_url(&req.uri);
        let existing = session_id.as_ref().and_then(|id| self.sessions.get(id));
        if let Some(s) = existing {
            if s.base_url != url {
                return error(
                    StatusCode::AGGREGATE_OPERATION_NOT_ALLOWED,
                    "a session cannot span two streams; use a new session",
                );
            }
            if s.playing.is_some() {
                return error(
                    StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
                    "cannot change transport while playing",
                );
            }
        } else if self.ctx.sessions.load(Ordering::Relaxed) >= self.ctx.max_viewers {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "this edge is at its viewer limit",
            );
        }
        let (d, lease) = match self.open_stream(&url).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        // A SETUP on the aggregate URL of a one-track stream means that track.
        let track = match track.or((d.tracks.len() == 1).then_some(0)) {
            Some(t) if t < d.tracks.len() => t,
            _ => return error(StatusCode::NOT_FOUND, "no such track in this stream"),
        };
        let Some(Ok(transport)) = req.headers.typed::<Transport>() else {
            return error(
                StatusCode::UNSUPPORTED_TRANSPORT,
                "missing or malformed Transport header",
            );
        };
        let Some(dest) = self.pick_transport(&transport, track) else {
            return error(
                StatusCode::UNSUPPORTED_TRANSPORT,
                "supported: RTP/AVP/TCP interleaved, RTP/AVP unicast UDP with client_port",
            );
        };
        let id = match session_id.filter(|id| self.sessions.contains_key(id)) {
            Some(id) => id,
            None => {
                let id = ids::random_hex(8);
                self.ctx.sessions.fetch_add(1, Ordering::Relaxed);
                self.sessions.insert(
                    id.clone(),
                    ViewerSession {
                        lease,
                        base_url: url.clone(),
                        described: d.clone(),
                        dests: vec![None; d.tracks.len()],
                        playing: None,
                        last_seen: Instant::now(),
                        vod: None,
                    },
                );
                id
            }
        };
        let server_ports = match self.server_ports(&id, track, dest, &url).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        if let Some(s) = self.sessions.get_mut(&id) {
            s.dests[track] = Some(dest);
        }
        let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
        let spec = reply_spec(dest, server_ports);
        r.headers
            .append("Transport", Transport(vec![spec]).to_value());
        r.headers.append("Session", self.session_header(&id));
        r
    }

    /// The first alternative of the viewer's Transport we can serve.
    fn pick_transport(&self, transport: &Transport, track: usize) -> Option<TrackDest> {
        transport.0.iter().find_map(|spec| {
            let TransportProtocol::Rtp {
                profile: RtpProfile::Avp,
                lower,
            } = &spec.protocol
            else {
                return None;
            };
            if spec.delivery == Some(Delivery::Multicast) {
                return None;
            }
            match lower {
                Some(LowerTransport::Tcp) => {
                    let rtp = spec
                        .interleaved
                        .map_or_else(|| u8::try_from(track * 2).unwrap_or(254), |c| c.start);
                    let rtcp = spec
                        .interleaved
                        .and_then(|c| c.end)
                        .unwrap_or(rtp.saturating_add(1));
                    Some(TrackDest::Interleaved { rtp, rtcp })
                }
                None | Some(LowerTransport::Udp) => {
                    let cp = spec.client_port?;
                    // Media only goes to the address the RTSP connection came from
                    // (RFC 2326 §12.39: a client must not direct streams elsewhere).
                    let ip = self.peer.ip();
                    Some(TrackDest::Udp {
                        rtp: SocketAddr::new(ip, cp.start),
                        rtcp: SocketAddr::new(ip, cp.end.unwrap_or(cp.start.saturating_add(1))),
                    })
                }
                Some(_) => None,
            }
        })
    }

    /// Sets the track up where its media comes from and returns the server ports for
    /// a UDP viewer: the hub's shared pair for live streams, the viewer's own for
    /// on-demand content (whose origin session is opened on the first SETUP).
    async fn server_ports(
        &mut self,
        id: &str,
        track: usize,
        dest: TrackDest,
        url: &str,
    ) -> Result<Option<(u16, u16)>, Response> {
        let Some(s) = self.sessions.get_mut(id) else {
            return Err(error(StatusCode::SESSION_NOT_FOUND, "no such session"));
        };
        if s.described.live {
            if matches!(dest, TrackDest::Interleaved { .. }) {
                return Ok(None);
            }
            let ports = s.lease.hub().udp_ports().await.map_err(hub_error)?;
            return ports.get(track).copied().map(Some).ok_or_else(|| {
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no server ports for this track",
                )
            });
        }
        if s.vod.is_none() {
            let target = self
                .ctx
                .router
                .resolve(url, self.local, self.original_dst)
                .map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
            let vod = VodSession::open(&target, self.out.clone(), self.ctx.hubs.ports())
                .await
                .map_err(|e| client_error(&e))?;
            if vod.described().tracks.len() != s.described.tracks.len() {
                return Err(error(
                    StatusCode::BAD_GATEWAY,
                    "the origin changed the stream's tracks",
                ));
            }
            s.vod = Some(vod);
        }
        let vod = s
            .vod
            .as_ref()
            .ok_or_else(|| error(StatusCode::BAD_GATEWAY, "no origin session"))?;
        vod.setup(track, dest).await.map_err(|e| client_error(&e))
    }

    async fn play(&mut self, req: &Request, session_id: Option<String>) -> Reply {
        let Some(id) = session_id else {
            return error(
                StatusCode::SESSION_NOT_FOUND,
                "PLAY needs the Session from SETUP",
            )
            .into();
        };
        let session_header = self.session_header(&id);
        let Some(s) = self.sessions.get_mut(&id) else {
            return error(StatusCode::SESSION_NOT_FOUND, "no such session").into();
        };
        let (url, track) = Self::stream_url(&req.uri);
        if url != s.base_url || track.is_some() && s.described.tracks.len() > 1 {
            return error(
                StatusCode::ONLY_AGGREGATE_OPERATION_ALLOWED,
                "PLAY the stream URL, not a single track",
            )
            .into();
        }
        if let Some(vod) = &s.vod {
            let origin = match vod.play(req.headers.clone()).await {
                Ok(r) => r,
                Err(e) => return client_error(&e).into(),
            };
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
                .and_then(|v| map_rtp_info(v, &s.described, &s.base_url))
            {
                r.headers.append("RTP-Info", info);
            }
            return r.into();
        }
        let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
        r.headers.append("Session", session_header);
        r.headers.append("Range", "npt=now-");
        if s.playing.is_some() {
            return r.into();
        }
        let tracks: Vec<usize> = s
            .dests
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.map(|_| i))
            .collect();
        let sink = ViewerSink::new_held(self.out.clone(), s.dests.clone());
        let (sub, starts) = match s.lease.hub().join(sink, tracks).await {
            Ok(v) => v,
            Err(e) => return hub_error(e).into(),
        };
        s.playing = Some(sub);
        let info: Vec<String> = starts
            .iter()
            .map(|t| {
                format!(
                    "url={}/{};seq={};rtptime={}",
                    s.base_url,
                    track_name(t.track),
                    t.seq,
                    t.rtptime
                )
            })
            .collect();
        if !info.is_empty() {
            r.headers.append("RTP-Info", info.join(","));
        }
        Reply {
            resp: r,
            release: Some((id, sub)),
        }
    }

    async fn pause(&mut self, session_id: Option<String>) -> Response {
        let Some(s) = session_id.as_ref().and_then(|id| self.sessions.get_mut(id)) else {
            return error(StatusCode::SESSION_NOT_FOUND, "PAUSE needs a session");
        };
        if let Some(vod) = &s.vod {
            if let Err(e) = vod.pause().await {
                return client_error(&e);
            }
        }
        s.stop();
        let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
        r.headers.append("Session", session_id.unwrap_or_default());
        r
    }

    fn teardown(&mut self, session_id: Option<String>) -> Response {
        let Some(mut s) = session_id.and_then(|id| self.sessions.remove(&id)) else {
            return error(StatusCode::SESSION_NOT_FOUND, "TEARDOWN needs a session");
        };
        s.stop();
        self.ctx.sessions.fetch_sub(1, Ordering::Relaxed);
        Response::new(Version::Rtsp1_0, StatusCode::OK)
    }
}

fn error(status: StatusCode, why: &str) -> Response {
    let mut r = Response::new(Version::Rtsp1_0, status);
    // The reason phrase carries the explanation; keep it one short line.
    let why: String = why.chars().filter(|c| !c.is_control()).take(160).collect();
    r.reason = format!("{} ({why})", status.reason());
    r
}

fn hub_error(e: HubError) -> Response {
    error(e.status, &e.reason)
}

fn client_error(e: &ClientError) -> Response {
    error(e.viewer_status(), &e.to_string())
}

/// The Transport a viewer gets back for its chosen destination.
fn reply_spec(dest: TrackDest, server_ports: Option<(u16, u16)>) -> TransportSpec {
    let mut spec = match dest {
        TrackDest::Interleaved { rtp, rtcp } => {
            TransportSpec::new(TransportProtocol::rtp_avp_tcp()).with_interleaved(Some(
                ChannelRange {
                    start: rtp,
                    end: Some(rtcp),
                },
            ))
        }
        TrackDest::Udp { rtp, rtcp } => TransportSpec::new(TransportProtocol::rtp_avp())
            .with_client_ports(Some(PortRange {
                start: rtp.port(),
                end: Some(rtcp.port()),
            }))
            .with_server_ports(server_ports.map(|(a, b)| PortRange {
                start: a,
                end: Some(b),
            })),
    };
    spec.delivery = Some(Delivery::Unicast);
    spec
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

/// The SDP viewers get: our track names, no origin addresses.
fn viewer_sdp(d: &Described) -> SessionDescription {
    let mut sdp = d.sdp.clone();
    let _ = sdp.set_control("*");
    let _ = sdp.set_connection_address("IP4", "0.0.0.0");
    let media_of_track: HashMap<usize, usize> = d
        .tracks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.media_index, i))
        .collect();
    for (mi, m) in sdp.media_mut().iter_mut().enumerate() {
        if let Some(i) = media_of_track.get(&mi) {
            let _ = m.set_control(&track_name(*i));
        }
        m.set_port(0);
        if m.connection().is_some() {
            let _ = m.set_connection_address("IP4", "0.0.0.0");
        }
    }
    sdp
}

/// Reads and discards what the peer is still sending, briefly and boundedly, before the
/// socket is dropped: closing with unread input makes the kernel send a reset, which
/// can destroy the error response we just queued before the peer reads it.
async fn linger_close<R: AsyncRead + Unpin>(rd: &mut R) {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 8192];
    let mut total = 0usize;
    while total < (1 << 20) {
        match tokio::time::timeout_at(deadline, rd.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => return,
        }
    }
}

/// Bytes to answer a connection refused by the client ACL with.
pub fn forbidden_bytes() -> Bytes {
    error(
        StatusCode::FORBIDDEN,
        "your address is not allowed to use this edge",
    )
    .to_bytes()
}
