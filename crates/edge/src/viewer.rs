//! The RTSP server side of the edge: the task of one viewer connection.
//!
//! It answers OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN and GET/SET_PARAMETER
//! keep-alives (RFC 2326 §10), pipelined or not, with the errors a demanding client
//! expects: 400 malformed, 404 no route, 454 unknown session, 455 wrong state, 459 a
//! session spanning two streams, 461 no usable transport, 505 RTSP/2.0, 551 an
//! unsupported `Proxy-Require`/`Require`, 503 over the viewer limit; each with a reason
//! a person can read. Sessions advertise their timeout and end when it passes without a
//! request (or without traffic on the connection).
//!
//! The session state, its checks and its timers are the sans-IO `session` core; this
//! task reads requests, carries out the core's steps with each session's media
//! `source` (the live hub or the on-demand passthrough), writes responses, and turns
//! each ended session into one [`EndedSession`] for the edge's listener and the log.
//! The viewer's tracks are named `trackID=N` under the URL it asked for, so it never
//! sees origin names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mediagate_config::AccountingMode;
use mediagate_rtsp::headers::{
    ChannelRange, Delivery, LowerTransport, PortRange, RtpProfile, Transport, TransportProtocol,
    TransportSpec,
};
use mediagate_rtsp::parse::Decoder;
use mediagate_rtsp::{Item, Request, Response, StatusCode, TypedHeader, Version};
use mediagate_sdp::SessionDescription;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::accounting::{forwarded_for, KEEPALIVE_INTERVAL};
use crate::accounting_conn::{self, Accounting, OriginWatch};
use crate::auth::{LoginKind, Principal};
use crate::conn_out::{ConnOut, MAX_CONTROL_QUEUED};
use crate::denied::{is_refusal, DeniedBudget, Refused};
use crate::freshness;
use crate::hub_registry::{Hubs, Lease};
use crate::ids;
use crate::limits::RequestClock;
use crate::login::{self, Place};
use crate::passthrough;
use crate::routing::RouteError;
use crate::session::{
    error, requested_session, stream_url, CacheResult, EndReason, Ended, EndedSession, Now,
    SessionInfo, Step, ViewerSessions, ViewerTransport,
};
use crate::settings::{Current, ViewerSettings};
use crate::sink::{Tally, TrackDest};
use crate::source::{self, hub_error, track_name, OriginRoute, Source};
use crate::tracker::{until_true, Tracker};
use crate::upstream::Described;
use crate::viewers::{LiveViewer, ViewerRegistry};
use crate::vod::{VodIo, VodSession};

/// How long a request naming a session that another connection still holds waits for
/// that connection to close and park it (`adopt_parked`): the handoff of a client that
/// reconnects at once. A session really in use elsewhere is answered 454 after it.
const HANDOFF_WAIT: Duration = Duration::from_secs(1);

/// Called once per ended viewer session (accounting and the access log attach here).
pub type EndedListener = Arc<dyn Fn(&EndedSession) + Send + Sync>;

/// What every viewer connection shares.
pub(crate) struct ViewerContext {
    /// Routes, limits and timeouts; a reload replaces them, each request reads them once.
    pub settings: Current<ViewerSettings>,
    pub hubs: Hubs,
    /// `Server` header and our `Via` entry.
    pub server: String,
    pub via: String,
    /// The random token in our `Via` entry: a request carrying it has looped back.
    pub via_token: String,
    /// Sessions open on this edge (for the viewer limit).
    pub sessions: AtomicUsize,
    pub on_ended: Option<EndedListener>,
    /// Turns true when the edge drains: every connection ends its sessions and closes.
    pub drain: watch::Receiver<bool>,
    /// Connections, writers and on-demand origin sessions still running (drain waits).
    pub tasks: Tracker,
    /// Running viewer sessions, for the admin API.
    pub viewers: ViewerRegistry,
    /// How many refused requests are still recorded (`DENIED`), across the edge.
    pub denied: std::sync::Mutex<DeniedBudget>,
    /// The on-demand cache, once the edge's starter attached one.
    pub cache: std::sync::OnceLock<Arc<crate::cache_store::CacheStore>>,
    /// UDP sessions whose connection closed, until a connection names them.
    pub parked: crate::parked::ParkedSessions,
}

impl std::fmt::Debug for ViewerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerContext")
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

/// A request handler bound to one viewer's output (a TCP connection, or the GET side
/// of an HTTP tunnel).
pub(crate) struct ViewerConn {
    ctx: Arc<ViewerContext>,
    out: ConnOut,
    peer: SocketAddr,
    local: SocketAddr,
    original_dst: Option<SocketAddr>,
    core: ViewerSessions<Source>,
    /// The session timeout of this connection's sessions, fixed when it was accepted.
    session_timeout: Duration,
    /// Streams described on this connection, so SETUP need not ask the hub again and
    /// the hub lingers between DESCRIBE and SETUP.
    described: HashMap<String, (Arc<Described>, Lease)>,
    /// Of those, the ones the origin gave for this viewer (a hub started, or started
    /// anew, to answer its DESCRIBE): its PLAY takes that answer as the revalidation
    /// of a cached copy, as it takes an accounting DESCRIBE's, rather than ask the
    /// origin a second time.
    origin_described: HashMap<String, Arc<Described>>,
    /// Per stream URL resolved on this connection: the remap rule and the origin URL,
    /// for the session records.
    routed: HashMap<String, (Option<String>, String)>,
    /// Poked by the admin API to disconnect this viewer.
    disconnect: Arc<Notify>,
    /// The last Basic login verified on this connection (header value, principal).
    login: Option<(String, Principal)>,
    /// The user the request being handled logged in as, for a new session's record.
    admitted_user: Option<String>,
    /// Origin sessions a pass-through DESCRIBE opened with the viewer's credentials,
    /// by stream URL, until its SETUP makes them a session's source (with the
    /// session's handle on this connection's output the origin session holds).
    passthrough: HashMap<String, (VodSession, Arc<Tally>, ConnOut)>,
    /// The `Via` chain of the request being handled, passed on upstream before our
    /// own entry so an edge further up spots a loop through it.
    incoming_via: Option<String>,
    /// Request and idle limits while the connection has no session.
    clock: RequestClock,
    /// Accounting connections a DESCRIBE opened, by stream URL, until its SETUP
    /// gives them to a session (or the connection closes).
    accounting_pending: HashMap<String, Accounting>,
    /// Each session's accounting connection, by session id: dropped when it ends.
    accounting: HashMap<String, Accounting>,
    /// Poked when the origin ends one of this connection's accounting connections.
    accounting_watch: OriginWatch,
    /// Requests arrive through an RTSP-over-HTTP tunnel.
    tunnel: bool,
    /// The request being handled was refused by a check that says so itself (the
    /// origin on the accounting connection, a limit), whatever the status.
    refused: bool,
}

impl ViewerConn {
    /// `tunnel`: requests arrive through an RTSP-over-HTTP tunnel.
    pub fn new(
        ctx: Arc<ViewerContext>,
        out: ConnOut,
        peer: SocketAddr,
        local: SocketAddr,
        original_dst: Option<SocketAddr>,
        tunnel: bool,
    ) -> Self {
        let settings = ctx.settings.load();
        let session_timeout = settings.session_timeout;
        let core = ViewerSessions::new(session_timeout, peer, tunnel, Now::system().at);
        let clock = RequestClock::new(settings.conn_limits, Now::system().at);
        Self {
            ctx,
            session_timeout,
            out,
            peer,
            local,
            original_dst,
            core,
            described: HashMap::new(),
            origin_described: HashMap::new(),
            routed: HashMap::new(),
            disconnect: Arc::default(),
            login: None,
            admitted_user: None,
            passthrough: HashMap::new(),
            incoming_via: None,
            clock,
            accounting_pending: HashMap::new(),
            accounting: HashMap::new(),
            accounting_watch: OriginWatch::default(),
            tunnel,
            refused: false,
        }
    }

    /// Reads requests from `rd` (already holding `decoder`'s buffered bytes) until the
    /// viewer goes away, misbehaves, every session times out, or the edge drains.
    /// A client that turns out to be a publisher (an `ANNOUNCE` on a connection with
    /// no viewer session) is handed back with its request and input, for `publish`.
    pub async fn run<R: AsyncRead + Unpin>(
        &mut self,
        mut rd: R,
        mut decoder: Decoder,
    ) -> Option<(Request, R, Decoder)> {
        let mut buf_full_since: Option<Instant> = None;
        let mut drain = self.ctx.drain.clone();
        let accounting_gone = self.accounting_watch.notify.clone();
        loop {
            // Hand out everything already decodable first (pipelined requests).
            loop {
                match decoder.next_item() {
                    Ok(Some(Item::Request(req)))
                        if req.method == mediagate_rtsp::Method::Announce
                            && !self.tunnel
                            && !self.core.has_sessions() =>
                    {
                        self.close_for_publisher().await;
                        return Some((req, rd, decoder));
                    }
                    Ok(Some(Item::Request(req))) => {
                        self.core.on_traffic(Now::system().at);
                        self.clock.on_request(Now::system().at);
                        self.handle(req).await;
                    }
                    Ok(Some(Item::Frame(f))) => {
                        self.core.on_traffic(Now::system().at);
                        self.core.on_interleaved(f.channel(), f.payload());
                        self.clock.on_request(Now::system().at);
                    }
                    Ok(Some(Item::Response(_))) => {}
                    Ok(None) => {
                        self.clock
                            .on_buffered(decoder.buffered_len() > 0, Now::system().at);
                        break;
                    }
                    Err(e) => {
                        let mut resp = Response::new(Version::Rtsp1_0, StatusCode::BAD_REQUEST);
                        resp.reason = format!("Bad Request ({e})").chars().take(200).collect();
                        resp.headers.append("Connection", "close");
                        tracing::debug!(viewer = %self.peer, error = %e, "malformed request; closing");
                        self.send(resp);
                        self.close(EndReason::ConnectionClosed).await;
                        linger_close(&mut rd).await;
                        return None;
                    }
                }
            }
            // A viewer that pipelines requests but never reads responses: stop reading
            // until it drains them (bounded memory), and give up after a while.
            if self.out.control_backlog() > MAX_CONTROL_QUEUED {
                let since = *buf_full_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.session_timeout {
                    self.close(EndReason::ConnectionClosed).await;
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            buf_full_since = None;
            let has_sessions = self.core.has_sessions();
            let deadline = self
                .clock
                .deadline(has_sessions)
                .map_or(self.core.poll_timeout(), |d| {
                    d.min(self.core.poll_timeout())
                });
            let deadline = Instant::from_std(deadline);
            let buf = decoder.buffer_mut();
            buf.reserve(4096);
            tokio::select! {
                r = rd.read_buf(buf) => match r {
                    Ok(0) | Err(_) => {
                        self.park_udp_sessions();
                        self.close(EndReason::ConnectionClosed).await;
                        return None;
                    }
                    Ok(_) => {}
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if let Some(cut) = self.clock.check(self.core.has_sessions(), Now::system().at) {
                        tracing::debug!(viewer = %self.peer, limit = cut.as_str(), "connection without a session closed by a limit");
                        self.ctx.hubs.edge_stats().connection_cut(cut);
                        self.close(EndReason::Timeout).await;
                        return None;
                    }
                    let idle = self.core.handle_timeout(Now::system());
                    self.finish_ended().await;
                    if idle {
                        self.close(EndReason::Timeout).await;
                        return None;
                    }
                }
                _ = self.out.closed() => {
                    // A draining hub closes its viewers' connections itself.
                    let reason = if *drain.borrow() {
                        EndReason::Drain
                    } else {
                        EndReason::ConnectionClosed
                    };
                    self.close(reason).await;
                    return None;
                }
                _ = until_true(&mut drain) => {
                    self.close(EndReason::Drain).await;
                    return None;
                }
                () = accounting_gone.notified() => {
                    if self.end_accounting_closed().await {
                        self.close(EndReason::AccountingClosed).await;
                        return None;
                    }
                }
                () = self.disconnect.notified() => {
                    tracing::info!(viewer = %self.peer, "viewer disconnected by the admin API");
                    self.close(EndReason::Admin).await;
                    return None;
                }
            }
        }
    }

    /// Lets go of what this connection opened as a viewer (DESCRIBEs waiting for a
    /// SETUP, their accounting connections) before it is handed to `publish`; the
    /// output stays open for the publisher's answers.
    async fn close_for_publisher(&mut self) {
        self.finish_ended().await;
        self.described.clear();
        self.origin_described.clear();
        self.passthrough.clear();
        self.accounting_pending.clear();
    }

    /// Ends every session and the output (which flushes what is queued, then closes;
    /// UDP sessions parked from it go on, their handles no longer reaching it).
    async fn close(&mut self, reason: EndReason) {
        self.core.end_all(reason, Now::system());
        self.finish_ended().await;
        self.described.clear();
        self.origin_described.clear();
        self.accounting_pending.clear();
        self.out.close();
    }

    /// The viewer closed the connection: its UDP sessions go on without it, when the
    /// edge is configured so (see `parked`).
    fn park_udp_sessions(&mut self) {
        if self.tunnel || !self.ctx.settings.load().udp_sessions_outlive_connection {
            return;
        }
        let detached = self.core.detach_udp();
        if detached.is_empty() {
            return;
        }
        for session in detached {
            let accounting = self.accounting.remove(session.id());
            crate::parked::park(&self.ctx, session, accounting, self.session_timeout);
        }
    }

    /// A request naming a session this connection does not hold: a parked one (its
    /// connection closed) becomes this connection's, also one whose old connection is
    /// closing but has not parked it yet (see `adopt_after_handoff`).
    async fn adopt_parked(&mut self, req: &Request) {
        let Some(id) = requested_session(req).filter(|id| !id.is_empty()) else {
            return;
        };
        if self.core.contains(id) {
            return;
        }
        // Without parking no closing connection will hand the session over.
        let wait = if self.ctx.settings.load().udp_sessions_outlive_connection {
            HANDOFF_WAIT
        } else {
            Duration::ZERO
        };
        let Some(parked) = self
            .ctx
            .parked
            .adopt_after_handoff(id, wait, &self.ctx.viewers)
            .await
        else {
            return;
        };
        tracing::info!(session = %id, viewer = %self.peer, "a new connection resumed the UDP session");
        self.ctx.viewers.set_disconnect(id, self.disconnect.clone());
        if let Some(a) = parked.accounting {
            self.accounting.insert(id.to_owned(), a);
        }
        // Whatever feeds the session now reaches this connection: a hub that gives
        // the viewer up closes it, as for a session set up here.
        parked.session.source().output().move_to(&self.out);
        self.core.adopt(parked.session);
    }

    /// Ends the sessions whose accounting connection the origin ended (a UDP viewer of
    /// the live hub gets an RTCP BYE) and forgets pending ones (their SETUP asks the
    /// origin again). True when that left the connection without a session: it then
    /// closes, which is what a TCP viewer notices.
    async fn end_accounting_closed(&mut self) -> bool {
        self.accounting_pending.retain(|_, a| !a.origin_gone());
        let gone: Vec<String> = self
            .accounting
            .iter()
            .filter(|(_, a)| a.origin_gone())
            .map(|(id, _)| id.clone())
            .collect();
        if gone.is_empty() {
            return false;
        }
        let now = Now::system();
        for id in &gone {
            tracing::info!(session = %id, viewer = %self.peer, "the origin closed this viewer's accounting connection; ending its session");
            self.core.end_session(id, EndReason::AccountingClosed, now);
        }
        self.finish_ended().await;
        !self.core.has_sessions()
    }

    /// Stops the sources of sessions that ended and reports each once.
    async fn finish_ended(&mut self) {
        while let Some(ended) = self.core.poll_ended() {
            // Closes the origin's accounting connection for this viewer.
            self.accounting.remove(&ended.record.session);
            report_ended(&self.ctx, ended).await;
        }
    }

    fn send(&self, mut resp: Response) {
        resp.headers.set("Server", self.ctx.server.clone());
        resp.headers.append("Via", self.ctx.via.clone());
        self.out.push_control(resp.to_bytes());
    }

    /// Handles one request and queues its response.
    async fn handle(&mut self, req: Request) {
        let now = Now::system();
        if crate::reach::loops_through(req.headers.get_all("Via"), &self.ctx.via_token) {
            let mut r = crate::reach::loop_detected();
            if let Some(c) = req.cseq() {
                r.set_cseq(c);
            }
            tracing::warn!(viewer = %self.peer, url = %req.uri, "request came back through this edge (its Via); refused as a loop");
            let status = r.status;
            self.send(r);
            self.record_denied(&req, status, now, None);
            return;
        }
        let vias: Vec<&str> = req.headers.get_all("Via").collect();
        self.incoming_via = (!vias.is_empty()).then(|| vias.join(", "));
        self.adopt_parked(&req).await;
        let step = self.core.handle_request(&req, now);
        // A DESCRIBE or a SETUP without a session: refused, it leaves a DENIED record.
        let opens = matches!(
            step,
            Step::Describe { .. } | Step::Setup { session: None, .. }
        );
        self.refused = false;
        let (mut resp, release) = match self.admit(&req, &step).await {
            Err(r) => {
                self.refused = true;
                (r, None)
            }
            Ok(()) => self.carry_out(&req, step, now).await,
        };
        if opens && (self.refused || is_refusal(resp.status)) {
            // `admit` ran for this request: a user it names logged in just now.
            let user = self.admitted_user.clone();
            self.record_denied(&req, resp.status, now, user);
        }
        if let Some(c) = req.cseq() {
            resp.set_cseq(c);
        }
        if let Some(id) = [req.headers.get("Session"), resp.headers.get("Session")]
            .into_iter()
            .flatten()
            .next()
            .map(|s| s.split(';').next().unwrap_or("").trim().to_owned())
        {
            self.core.answered(&id, &req.method, resp.status);
        }
        // A TEARDOWN's session is gone (from the viewer limit too) before the viewer
        // reads the answer and perhaps sets up again.
        self.finish_ended().await;
        self.send(resp);
        if let Some((session, release)) = release {
            match self.core.source_mut(&session) {
                Some(s) => s.release(release),
                // Gone meanwhile: whatever waited is let go.
                None => drop(release),
            }
        }
    }

    /// Reports a request refused before it had a session (`DENIED`), within the
    /// edge's record budget, to the listener; counts it either way.
    fn record_denied(
        &self,
        req: &Request,
        status: StatusCode,
        received: Now,
        user: Option<String>,
    ) {
        let now = Now::system();
        let within = self
            .ctx
            .denied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(now.at);
        self.ctx.hubs.edge_stats().request_denied(within);
        let Some(listener) = self.ctx.on_ended.as_ref().filter(|_| within) else {
            return;
        };
        let url = stream_url(&req.uri).0;
        // Routing is pure (no lookups): the rule and origin cost nothing to name here.
        let (rule, origin) =
            match self
                .ctx
                .settings
                .load()
                .router
                .resolve(&url, self.local, self.original_dst)
            {
                Ok(t) => (t.rule, Some(t.url.to_string())),
                Err(_) => (None, None),
            };
        let refused = Refused {
            viewer: self.peer,
            url,
            method: req.method.as_str().to_owned(),
            status: status.as_u16(),
            tunnel: self.tunnel,
            received,
            user,
            rule,
            origin,
            user_agent: req.headers.get("User-Agent").map(str::to_owned),
        };
        listener(&refused.record(now));
    }

    /// The rule's access list and login for a DESCRIBE or a new session's SETUP
    /// (requests inside a session were admitted with it).
    async fn admit(&mut self, req: &Request, step: &Step) -> Result<(), Response> {
        self.admitted_user = None;
        let url = match step {
            Step::Describe { url }
            | Step::Setup {
                url, session: None, ..
            } => url,
            _ => return Ok(()),
        };
        let settings = self.ctx.settings.load();
        let place = Place {
            peer: self.peer,
            local: self.local,
            original_dst: self.original_dst,
        };
        match login::admit(&settings, req, url, place, &mut self.login).await {
            Ok(p) => {
                self.admitted_user = p.map(|p| p.user);
                Ok(())
            }
            Err((r, user)) => {
                // Named in the DENIED record: a login the rule's lists leave out.
                self.admitted_user = user;
                Err(r)
            }
        }
    }

    async fn carry_out(
        &mut self,
        req: &Request,
        step: Step,
        now: Now,
    ) -> (Response, Option<(String, crate::source::Release)>) {
        match step {
            Step::Reply(r) => (r, None),
            Step::Describe { url } => (self.describe_or_pass(req, &url, now).await, None),
            Step::Setup {
                url,
                track,
                session,
            } => (self.setup(req, url, track, session, now).await, None),
            Step::Play { session } => self.play(req, session).await,
            Step::Pause { session } => (self.pause(req, &session).await, None),
        }
    }

    /// Asks the origin about this viewer when the route's `accounting` says so (and,
    /// for `session`, opens the viewer's own origin session): an accounting
    /// connection for `url` is then pending on this connection (kept from an
    /// earlier DESCRIBE, or opened now). A refusal is the viewer's answer.
    async fn account(&mut self, req: &Request, url: &str) -> Result<(), Response> {
        let settings = self.ctx.settings.load();
        let mode = settings.router.accounting_for(url, self.local);
        if mode == AccountingMode::Off || self.accounting_pending.contains_key(url) {
            return Ok(());
        }
        // A route that does not resolve is refused by the request's own handling.
        let Ok(mut target) = settings.router.resolve(url, self.local, self.original_dst) else {
            return Ok(());
        };
        if self.accounting_pending.len() >= passthrough::MAX_PENDING {
            self.refused = true;
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many streams described but not set up on this connection",
            ));
        }
        if let Some(chain) = &self.incoming_via {
            target.via = format!("{chain}, {}", target.via);
        }
        // An `Authorization` that logs in at this edge is not the origin's to see.
        let edge_login = self.edge_login_route(url);
        let authorization = passthrough::authorization(req).filter(|_| !edge_login);
        let opening = accounting_conn::describe(
            &target,
            authorization,
            &forwarded_for(req.headers.get_all("X-Forwarded-For"), self.peer.ip()),
            mode == AccountingMode::Session,
            self.ctx.hubs.edge_stats(),
        )
        .await
        .inspect_err(|_| self.refused = true)?;
        let a = if opening.wants_session() {
            Accounting::Opening(Box::new(opening))
        } else {
            Accounting::Held {
                conn: opening.hold(
                    KEEPALIVE_INTERVAL,
                    self.ctx.tasks.guard(),
                    &self.accounting_watch,
                ),
            }
        };
        self.accounting_pending.insert(url.to_owned(), a);
        Ok(())
    }

    /// The stream's description and a lease on its hub. A description kept from an
    /// earlier viewer (a lingering hub of on-demand content) answers only while the
    /// cache holds that content fresh for this viewer (`viewer_cache_control`; see
    /// `source::description_current`); else the origin is asked again, through this
    /// viewer's accounting DESCRIBE when it has one. An `only-if-cached` viewer with
    /// no hub running is described from the stored SDP: the origin is not asked.
    async fn open_stream(
        &mut self,
        stream_url: &str,
        viewer_cache_control: Option<&str>,
        now: Now,
    ) -> Result<(Arc<Described>, Lease), Response> {
        if let Some((d, lease)) = self.described.get(stream_url) {
            return Ok((d.clone(), lease.another()));
        }
        if let Some(lease) = crate::publish::viewer_lease(&self.ctx, stream_url) {
            let d = lease.hub().describe().await.map_err(hub_error)?;
            self.described
                .insert(stream_url.to_owned(), (d.clone(), lease.another()));
            return Ok((d, lease));
        }
        let mut target = self
            .ctx
            .settings
            .load()
            .router
            .resolve(stream_url, self.local, self.original_dst)
            .map_err(|e| match e {
                RouteError::NotFound(_) => error(StatusCode::NOT_FOUND, &e.to_string()),
                RouteError::Forbidden(_) => error(StatusCode::FORBIDDEN, &e.to_string()),
                RouteError::BadUrl(_) => error(StatusCode::BAD_REQUEST, &e.to_string()),
            })?;
        self.routed.insert(
            stream_url.to_owned(),
            (target.rule.clone(), target.url.to_string()),
        );
        if let Some(chain) = &self.incoming_via {
            target.via = format!("{chain}, {}", target.via);
        }
        let fresh = source::fresh_objects(
            self.ctx.cache.get(),
            &target,
            viewer_cache_control,
            now.unix_ms,
        );
        // only-if-cached with no hub to answer: described from what is stored, not
        // by the origin.
        let stored = freshness::only_if_cached(viewer_cache_control)
            .then(|| fresh.as_deref().and_then(<[_]>::first))
            .flatten()
            .filter(|_| !self.ctx.hubs.running(&target))
            .and_then(|o| {
                crate::upstream::described_from_stored(
                    &o.meta,
                    &target.url.without_credentials().to_string(),
                )
            });
        let from_store = stored.is_some();
        let mut lease = match stored {
            Some(d) => self.ctx.hubs.lease_described(&target, Arc::new(d)),
            None => self.ctx.hubs.lease(&target),
        };
        let mut d = lease.hub().describe().await.map_err(hub_error)?;
        // A hub started for this lease asked the origin just now.
        let mut from_origin = !lease.joined() && !from_store;
        if lease.joined() && !d.live {
            let answer = self
                .accounting_pending
                .get(stream_url)
                .map(|a| a.origin_answer().clone());
            match answer {
                // The origin answered this viewer a moment ago: that is the
                // revalidation, and a changed clip gets a hub of its own.
                Some(a) if !a.live => {
                    // Not a guard: an unchanged answer must not fall through to the
                    // freshness check below.
                    let changed = !source::same_description(&d, &a);
                    if changed {
                        tracing::debug!(
                            url = stream_url,
                            "the origin's description changed; the lingering hub is replaced"
                        );
                        lease = self.ctx.hubs.lease_described(&target, a.clone());
                        d = a;
                    }
                }
                _ if !source::description_current(&d, fresh.as_deref()) => {
                    tracing::debug!(
                        url = stream_url,
                        "a kept description is not fresh for this viewer; asking the origin"
                    );
                    lease = self.ctx.hubs.lease_anew(&target);
                    d = lease.hub().describe().await.map_err(hub_error)?;
                    from_origin = true;
                }
                _ => {}
            }
        }
        self.described
            .insert(stream_url.to_owned(), (d.clone(), lease.another()));
        if from_origin && !d.live {
            self.origin_described
                .insert(stream_url.to_owned(), d.clone());
        } else {
            self.origin_described.remove(stream_url);
        }
        Ok((d, lease))
    }

    /// Whether `url`'s rule asks for an edge login in `Authorization` (401).
    fn edge_login_route(&self, url: &str) -> bool {
        matches!(
            self.ctx.settings.load().router.access_for(url, self.local, self.original_dst),
            Some((access, LoginKind::Origin)) if access.requires_login()
        )
    }

    /// DESCRIBE through the hub, or, when the origin wants the viewer's own
    /// credentials, on the viewer's own origin connection (`passthrough`).
    async fn describe_or_pass(&mut self, req: &Request, url: &str, now: Now) -> Response {
        let viewer_cc = req.headers.get("Cache-Control");
        if freshness::only_if_cached(viewer_cc) && !self.cached_for(url, viewer_cc, now) {
            tracing::debug!(
                url,
                "only-if-cached, and the cache holds nothing fresh enough"
            );
            return source::not_cached();
        }
        if let Err(r) = self.account(req, url).await {
            return r;
        }
        let settings = self.ctx.settings.load();
        let mut target = match passthrough::target(&settings, url, self.local, self.original_dst) {
            // The viewer answers an origin challenge: never through the shared hub.
            Some(t) if passthrough::authorization(req).is_some() => t,
            Some(t) => {
                let r = self.describe(url, viewer_cc, now).await;
                if !passthrough::is_challenge(&r) {
                    return r;
                }
                t
            }
            None => {
                let r = self.describe(url, viewer_cc, now).await;
                if passthrough::is_challenge(&r) && self.edge_login_route(url) {
                    // RTSP has one `Authorization` per request: on this rule it is
                    // the edge's, so the origin's challenge cannot be relayed.
                    tracing::warn!(url, "the origin asks for credentials on a route whose edge login uses 401 (Authorization); give the route origin credentials, or use forward mode, where the edge login is 407 (Proxy-Authorization)");
                }
                return r;
            }
        };
        self.routed.insert(
            url.to_owned(),
            (target.rule.clone(), target.url.to_string()),
        );
        if let Some(chain) = &self.incoming_via {
            target.via = format!("{chain}, {}", target.via);
        }
        if let Some((vod, _, _)) = self.passthrough.get(url) {
            // This viewer's origin session already accepted it on this connection.
            return described_response(url, vod.described(), self.local.ip());
        }
        if self.passthrough.len() >= passthrough::MAX_PENDING {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many streams described but not set up on this connection",
            );
        }
        let tally = Arc::<Tally>::default();
        let session_out = self.out.for_session();
        let io = VodIo {
            conn: session_out.clone(),
            ports: self.ctx.hubs.ports(),
            tally: tally.clone(),
            guard: self.ctx.tasks.guard(),
        };
        match passthrough::describe(&target, passthrough::authorization(req), io).await {
            Ok(vod) => {
                let r = described_response(url, vod.described(), self.local.ip());
                self.passthrough
                    .insert(url.to_owned(), (vod, tally, session_out));
                r
            }
            Err(r) => r,
        }
    }

    /// The stream's description and a source for a new session: the viewer's
    /// pass-through origin session if its DESCRIBE opened one, else the hub's.
    /// In an existing pass-through session, its own description and no source.
    async fn open_for_setup(
        &mut self,
        url: &str,
        session: Option<&str>,
        viewer_cache_control: Option<&str>,
        now: Now,
    ) -> Result<(Arc<Described>, Option<Source>), Response> {
        if let Some(s) = session.and_then(|id| self.core.source_mut(id)) {
            if s.is_passthrough() {
                return Ok((s.described().clone(), None));
            }
        }
        if session.is_none() {
            if let Some((vod, tally, out)) = self.passthrough.remove(url) {
                let d = vod.described().clone();
                return Ok((d.clone(), Some(Source::passthrough(d, vod, tally, out))));
            }
        }
        let (d, lease) = self.open_stream(url, viewer_cache_control, now).await?;
        Ok((d.clone(), Some(Source::new(lease, d, &self.out))))
    }

    /// Whether the cache holds a variant of `url`'s content fresh for a viewer whose
    /// request said `viewer_cache_control` (an index look-up; the origin is not asked).
    fn cached_for(&self, url: &str, viewer_cache_control: Option<&str>, now: Now) -> bool {
        let settings = self.ctx.settings.load();
        let Ok(target) = settings.router.resolve(url, self.local, self.original_dst) else {
            return false;
        };
        source::fresh_objects(
            self.ctx.cache.get(),
            &target,
            viewer_cache_control,
            now.unix_ms,
        )
        .is_some_and(|o| !o.is_empty())
    }

    async fn describe(
        &mut self,
        url: &str,
        viewer_cache_control: Option<&str>,
        now: Now,
    ) -> Response {
        if freshness::no_cache(viewer_cache_control) {
            // Asked again on this connection: not the description kept for its SETUPs.
            self.described.remove(url);
            self.origin_described.remove(url);
        }
        let (d, _lease) = match self.open_stream(url, viewer_cache_control, now).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        described_response(url, &d, self.local.ip())
    }

    async fn setup(
        &mut self,
        req: &Request,
        url: String,
        track: Option<usize>,
        session: Option<String>,
        now: Now,
    ) -> Response {
        let settings = self.ctx.settings.load();
        if session.is_none() && self.ctx.sessions.load(Ordering::Relaxed) >= settings.max_viewers {
            self.refused = true;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "this edge is at its viewer limit",
            );
        }
        let viewer_cc = req.headers.get("Cache-Control");
        if session.is_none()
            && freshness::only_if_cached(viewer_cc)
            && !self.cached_for(&url, viewer_cc, now)
        {
            return source::not_cached();
        }
        let accounting = if session.is_none() {
            match self.account(req, &url).await {
                Ok(()) => self.accounting_pending.remove(&url),
                Err(r) => return r,
            }
        } else {
            None
        };
        let (d, fresh) = match self
            .open_for_setup(&url, session.as_deref(), viewer_cc, now)
            .await
        {
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
        let Some(dest) = pick_transport(&transport, track, self.peer) else {
            return error(
                StatusCode::UNSUPPORTED_TRANSPORT,
                "supported: RTP/AVP/TCP interleaved, RTP/AVP unicast UDP with client_port",
            );
        };
        let id = match session {
            Some(id) => id,
            None => {
                let Some(source) = fresh else {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "no source for the session",
                    );
                };
                let id = ids::random_hex(8);
                self.ctx.sessions.fetch_add(1, Ordering::Relaxed);
                self.ctx.hubs.edge_stats().session_started();
                let tracks = d.tracks.len();
                self.ctx.viewers.add(LiveViewer {
                    id: id.clone(),
                    peer: self.peer,
                    url: url.clone(),
                    transport: ViewerTransport::Tcp,
                    user_agent: req.headers.get("User-Agent").map(str::to_owned),
                    started_unix_ms: now.unix_ms,
                    started: now.at,
                    tally: source.tally().clone(),
                    disconnect: self.disconnect.clone(),
                });
                let (rule, origin) = self.routed.get(&url).cloned().unwrap_or_default();
                // A viewer with its own origin connection (origin auth pass-through)
                // is already seen by the origin; every other viewer, of a shared
                // live stream or of on-demand content (a cache hit or a miss), is
                // held by its accounting connection.
                if let Some(a) = accounting.filter(|_| !source.is_passthrough()) {
                    self.accounting.insert(id.clone(), a);
                }
                let info = SessionInfo {
                    user: self.admitted_user.take(),
                    rule,
                    origin: Some(origin).filter(|o| !o.is_empty()),
                    cache: source.cache_result(),
                    user_agent: req.headers.get("User-Agent").map(str::to_owned),
                };
                self.core.open(id.clone(), url.clone(), tracks, source, now);
                self.core.set_info(&id, info);
                tracing::info!(session = %id, viewer = %self.peer, url = %url, "viewer session started");
                let span = tracing::Span::current();
                span.record("session", tracing::field::display(&id));
                span.record("url", tracing::field::display(&url));
                id
            }
        };
        // An accounting session repeats the SETUP at the origin first: its refusal
        // is the viewer's answer.
        if let Some(Accounting::Opening(o)) = self.accounting.get_mut(&id) {
            if let Err(r) = o.setup(track, passthrough::authorization(req)).await {
                return r;
            }
        }
        let Some(source) = self.core.source_mut(&id) else {
            return error(StatusCode::SESSION_NOT_FOUND, "no such session");
        };
        let route = OriginRoute {
            router: &settings.router,
            hubs: &self.ctx.hubs,
            url: &url,
            local: self.local,
            original_dst: self.original_dst,
            tasks: &self.ctx.tasks,
            authorization: passthrough::authorization(req),
            cache: self.ctx.cache.get(),
        };
        let server_ports = match source.setup(track, dest, route).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        self.core.set_dest(&id, track, dest);
        if let Some(t) = self.core.transport(&id) {
            self.ctx.viewers.set_transport(&id, t);
            if let Some(source) = self.core.source_mut(&id) {
                source.count_viewer(self.ctx.hubs.edge_stats(), t);
            }
        }
        let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
        let spec = reply_spec(dest, server_ports);
        r.headers
            .append("Transport", Transport(vec![spec]).to_value());
        r.headers.append("Session", self.core.session_header(&id));
        r
    }

    async fn play(
        &mut self,
        req: &Request,
        id: String,
    ) -> (Response, Option<(String, crate::source::Release)>) {
        let session_header = self.core.session_header(&id);
        let base_url = self.core.base_url(&id).unwrap_or_default().to_owned();
        let dests = self.core.dests(&id).unwrap_or_default().to_vec();
        if let Err(r) = self.play_accounting(req, &id).await {
            return (r, None);
        }
        // Whether a cached copy is still the origin's: its answer to this viewer's
        // accounting DESCRIBE says, where the route has accounting.
        // Else the origin's answer to its DESCRIBE, when a hub asked it for this
        // viewer (once: a later PLAY asks the origin again).
        let origin_answer = self
            .accounting
            .get(&id)
            .map(|a| a.origin_answer().clone())
            .or_else(|| self.origin_described.remove(&base_url));
        let Some(source) = self.core.source_mut(&id) else {
            return (
                error(StatusCode::SESSION_NOT_FOUND, "no such session"),
                None,
            );
        };
        match source
            .play(
                &req.headers,
                session_header,
                &base_url,
                &dests,
                origin_answer,
            )
            .await
        {
            Ok(p) => {
                let subscribed = source.is_subscribed();
                let cache = source.cache_result();
                self.core.set_playing(&id, subscribed);
                // Where on-demand media comes from is only known once it plays.
                self.core.set_cache(&id, cache);
                (p.resp, p.release.map(|r| (id, r)))
            }
            Err(r) => (r, None),
        }
    }

    /// An accounting session's PLAY at the origin, with the viewer's PLAY
    /// `Authorization`; once accepted, the connection is held for the session.
    async fn play_accounting(&mut self, req: &Request, id: &str) -> Result<(), Response> {
        let Some(Accounting::Opening(o)) = self.accounting.get_mut(id) else {
            return Ok(());
        };
        o.play(passthrough::authorization(req)).await?;
        if let Some(Accounting::Opening(o)) = self.accounting.remove(id) {
            let held = o.hold(
                KEEPALIVE_INTERVAL,
                self.ctx.tasks.guard(),
                &self.accounting_watch,
            );
            self.accounting
                .insert(id.to_owned(), Accounting::Held { conn: held });
        }
        Ok(())
    }

    async fn pause(&mut self, req: &Request, id: &str) -> Response {
        let Some(source) = self.core.source_mut(id) else {
            return error(StatusCode::SESSION_NOT_FOUND, "PAUSE needs a session");
        };
        if let Err(r) = source.pause(passthrough::authorization(req)).await {
            return r;
        }
        self.core.set_playing(id, false);
        let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
        r.headers.append("Session", id.to_owned());
        r
    }
}

/// Stops an ended session's source and reports the session once: counters, the
/// edge's session count, the admin registry, the log line and the edge's listener.
pub(crate) async fn report_ended(ctx: &ViewerContext, ended: Ended<Source>) {
    let mut rec = ended.record;
    let tally = ended.source.tally().clone();
    // A hit that went on from the origin (the end of a held range) recorded
    // a run after its PLAY was answered.
    if ended.source.cache_result() == CacheResult::Miss {
        rec.cache = CacheResult::Miss;
    }
    rec.counts = if rec.reason == EndReason::AccountingClosed {
        ended.source.stop_with_bye().await
    } else {
        ended.source.stop().await
    };
    // UDP viewers' reports reached the hub, interleaved ones the session.
    rec.reported_lost = rec.reported_lost.max(tally.reported_lost());
    ctx.sessions.fetch_sub(1, Ordering::Relaxed);
    ctx.hubs.edge_stats().session_ended(rec.reason);
    ctx.viewers.remove(&rec.session);
    tracing::info!(
        session = %rec.session,
        viewer = %rec.viewer,
        url = %rec.url,
        reason = rec.reason.as_str(),
        transport = rec.transport.as_str(),
        packets = rec.counts.packets,
        bytes = rec.counts.bytes,
        lost = rec.counts.lost,
        duration = ?rec.duration,
        "viewer session ended"
    );
    if let Some(listener) = &ctx.on_ended {
        listener(&rec);
    }
}

/// A DESCRIBE's answer: the stream's SDP with our track names under `url` and the
/// edge's address (`edge_ip`) in place of the origin's.
fn described_response(url: &str, d: &Described, edge_ip: std::net::IpAddr) -> Response {
    let sdp = viewer_sdp(d, edge_ip);
    let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
    r.headers.append("Content-Base", format!("{url}/"));
    r.headers.append("Cache-Control", "no-cache");
    r.set_body("application/sdp", sdp.to_bytes());
    r
}

/// The first alternative of the viewer's Transport we can serve.
fn pick_transport(transport: &Transport, track: usize, peer: SocketAddr) -> Option<TrackDest> {
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
                let ip = peer.ip();
                Some(TrackDest::Udp {
                    rtp: SocketAddr::new(ip, cp.start),
                    rtcp: SocketAddr::new(ip, cp.end.unwrap_or(cp.start.saturating_add(1))),
                })
            }
            Some(_) => None,
        }
    })
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

/// The SDP viewers get: our track names, no origin addresses.
fn viewer_sdp(d: &Described, edge_ip: std::net::IpAddr) -> SessionDescription {
    let mut sdp = d.sdp.clone();
    let _ = sdp.set_control("*");
    // Viewers learn nothing of the origin's address, from `o=` either.
    let addrtype = if edge_ip.is_ipv4() { "IP4" } else { "IP6" };
    let _ = sdp.set_origin_address(addrtype, &edge_ip.to_string());
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
pub(crate) fn forbidden_bytes() -> Bytes {
    error(
        StatusCode::FORBIDDEN,
        "your address is not allowed to use this edge",
    )
    .to_bytes()
}

#[cfg(test)]
mod sdp_tests {
    use super::*;

    #[test]
    fn the_viewer_sdp_names_the_edge_not_the_origin() {
        let origin_sdp = b"v=0\r\no=- 1 1 IN IP4 10.77.2.2\r\ns=cam\r\nc=IN IP4 10.77.2.2\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:stream=0\r\n";
        let d = Described {
            sdp: SessionDescription::parse(origin_sdp).unwrap(),
            tracks: Vec::new(),
            live: true,
            session_timeout: 60,
            aggregate_url: "rtsp://10.77.2.2/cam".into(),
            caching: Default::default(),
            needed_auth: false,
        };
        let shown = viewer_sdp(&d, "10.77.1.1".parse().unwrap()).to_bytes();
        let text = String::from_utf8_lossy(&shown);
        assert!(!text.contains("10.77.2.2"), "{text}");
        assert!(text.contains("o=- 1 1 IN IP4 10.77.1.1\r\n"), "{text}");
        let v6 = viewer_sdp(&d, "2001:db8::1".parse().unwrap()).to_bytes();
        assert!(String::from_utf8_lossy(&v6).contains("o=- 1 1 IN IP6 2001:db8::1\r\n"));
    }
}
