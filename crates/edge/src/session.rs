//! The viewer sessions of one RTSP connection, sans-IO: request checks, session state,
//! timeouts and the one "ended" record per session.
//!
//! [`ViewerSessions::handle_request`] takes a request and the time and answers with a
//! [`Step`]: either a response to send at once (every error of RFC 2326 §11 we give
//! without asking anyone: 400, 454, 455, 459, 460, 405, 501, 505, 551, and OPTIONS,
//! keep-alives, TEARDOWN), or the operation the shell must carry out with the
//! session's media [`Source`](crate::source::Source) (DESCRIBE, SETUP, PLAY, PAUSE),
//! reporting back with [`ViewerSessions::open`], [`ViewerSessions::set_dest`] and
//! [`ViewerSessions::set_playing`]. Timers follow quinn-proto: [`ViewerSessions::
//! poll_timeout`] says when to call [`ViewerSessions::handle_timeout`]. A session that
//! ends for any reason (TEARDOWN, timeout, the connection closing, drain) comes out
//! exactly once from [`ViewerSessions::poll_ended`], with its source, so the shell
//! stops the source and completes the [`EndedSession`] with its counters.
//!
//! It is generic over the source type so that tests use a fake; it never reads the
//! clock, opens a socket or counts packets.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mediagate_rtsp::{Method, Request, Response, StatusCode, Version};

use crate::sink::{Counts, ReportedLoss, TrackDest};

/// A moment, on both clocks: monotonic for timers, Unix time for records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub at: Instant,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl Now {
    /// The current time (for shells; cores take it as an argument).
    pub fn system() -> Now {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Now {
            at: Instant::now(),
            unix_ms,
        }
    }

    /// This moment plus `d`.
    #[cfg(test)]
    pub fn plus(&self, d: Duration) -> Now {
        Now {
            at: self.at + d,
            unix_ms: self
                .unix_ms
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// How a viewer received its media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerTransport {
    /// RTP over UDP (at least one track).
    Udp,
    /// Interleaved on the RTSP connection.
    Tcp,
    /// Interleaved inside an RTSP-over-HTTP tunnel.
    HttpTunnel,
}

impl ViewerTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            ViewerTransport::Udp => "udp",
            ViewerTransport::Tcp => "tcp",
            ViewerTransport::HttpTunnel => "http-tunnel",
        }
    }
}

/// Why a viewer session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The viewer sent TEARDOWN.
    Teardown,
    /// No request (and no traffic on the connection) for the session timeout.
    Timeout,
    /// The connection closed: by the viewer, by a write failing, by a protocol error,
    /// or by the hub letting its viewers go.
    ConnectionClosed,
    /// The edge is shutting down.
    Drain,
    /// An operator disconnected the viewer through the admin API.
    Admin,
    /// The origin closed (or stopped answering on) the viewer's accounting connection:
    /// its hold on the viewer is gone, and the edge keeps no credentials to ask again.
    AccountingClosed,
    /// Not a session: a request refused before one existed (a `DENIED` record).
    Refused,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Teardown => "teardown",
            EndReason::Timeout => "timeout",
            EndReason::ConnectionClosed => "connection-closed",
            EndReason::Drain => "drain",
            EndReason::Admin => "admin",
            EndReason::AccountingClosed => "accounting-closed",
            EndReason::Refused => "refused",
        }
    }
}

/// Where a viewer's media came from, in the words of a caching proxy's access log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheResult {
    /// Served from the cache, still fresh.
    Hit,
    /// Not in the cache: fetched from the origin (and recorded).
    Miss,
    /// In the cache but revalidated with the origin first.
    Refresh,
    /// A live stream shared with other viewers (one origin session for all).
    #[default]
    Split,
    /// Passed through from a per-viewer origin session, not cached.
    Pass,
    /// Refused before any media flowed.
    Denied,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Refresh => "REFRESH",
            CacheResult::Split => "SPLIT",
            CacheResult::Pass => "PASS",
            CacheResult::Denied => "DENIED",
        }
    }
}

/// What the shell knows of a session once its source is found, for its record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// The authenticated user (never a password); None without edge authentication.
    pub user: Option<String>,
    /// The remap rule that matched: its advertised prefix.
    pub rule: Option<String>,
    /// The origin URL, without credentials.
    pub origin: Option<String>,
    pub cache: CacheResult,
    pub user_agent: Option<String>,
}

/// One finished viewer session: what accounting and the access log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    /// The `Session` id the viewer was given.
    pub session: String,
    pub viewer: SocketAddr,
    /// The stream URL as the viewer named it.
    pub url: String,
    pub transport: ViewerTransport,
    pub started_unix_ms: u64,
    pub duration: Duration,
    pub reason: EndReason,
    /// Media sent to the viewer (zero until the shell fills them in from the source).
    pub counts: Counts,
    /// The user the viewer logged in as at the edge, when its rule asked for a login
    /// (never a password; origin pass-through credentials are not recorded).
    pub user: Option<String>,
    /// The method and RTSP status of the session's PLAY answer, or of its last answer
    /// when it never played (empty and 0 when none was given).
    pub method: String,
    pub status: u16,
    /// The remap rule (advertised prefix) that routed the session, if one did.
    pub rule: Option<String>,
    /// The origin URL, without credentials.
    pub origin: Option<String>,
    pub cache: CacheResult,
    pub user_agent: Option<String>,
    /// Packets lost as the viewer's RTCP receiver reports last said (cumulative, summed
    /// over the sources it reported on); 0 when it sent none.
    pub reported_lost: u64,
}

/// What the shell does with a request.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send this response; nothing else to do.
    Reply(Response),
    /// Describe the stream `url` (resolve it, ask its source).
    Describe { url: String },
    /// Set up `track` of `url`, in the existing `session` or (None) a new one.
    Setup {
        url: String,
        track: Option<usize>,
        session: Option<String>,
    },
    /// Start (or resume) the session's media.
    Play { session: String },
    /// Pause the session's media.
    Pause { session: String },
}

/// A session leaving the table, with its source for the shell to stop.
#[derive(Debug)]
pub(crate) struct Ended<S> {
    pub source: S,
    pub record: EndedSession,
}

#[derive(Debug)]
struct Session<S> {
    base_url: String,
    source: S,
    dests: Vec<Option<TrackDest>>,
    /// A live PLAY fixes the transport (the hub has the viewer's destinations);
    /// on-demand SETUPs go through to the viewer's own origin session instead.
    playing: bool,
    started: Now,
    last_seen: Instant,
    info: SessionInfo,
    /// The answer the record keeps: the PLAY's, else the last one.
    answer: Option<(Method, u16)>,
    /// What the viewer's RTCP on the connection reported.
    reported: ReportedLoss,
}

/// A UDP session taken out of its connection's table when the connection closed
/// (RFC 2326 §3: a session is not tied to a transport connection), to be adopted by a
/// later connection that names it or ended when its timeout passes.
#[derive(Debug)]
pub(crate) struct Detached<S> {
    id: String,
    peer: SocketAddr,
    session: Session<S>,
}

impl<S> Detached<S> {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn source(&self) -> &S {
        &self.session.source
    }

    /// When it times out without a request, with the connection's `timeout`.
    pub fn expires(&self, timeout: Duration) -> Instant {
        self.session.last_seen + timeout
    }
}

/// Methods we answer, for `Public`.
pub(crate) const PUBLIC: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// The sessions of one viewer connection.
#[derive(Debug)]
pub(crate) struct ViewerSessions<S> {
    timeout: Duration,
    peer: SocketAddr,
    tunnel: bool,
    sessions: HashMap<String, Session<S>>,
    /// Viewer traffic over interleaved channels (RTCP receiver reports) counts as life.
    last_traffic: Instant,
    ended: VecDeque<Ended<S>>,
}

impl<S> ViewerSessions<S> {
    /// `tunnel`: the connection is an RTSP-over-HTTP tunnel.
    pub fn new(timeout: Duration, peer: SocketAddr, tunnel: bool, now: Instant) -> Self {
        Self {
            timeout,
            peer,
            tunnel,
            sessions: HashMap::new(),
            last_traffic: now,
            ended: VecDeque::new(),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether the connection has a session (then only the session timeout bounds it).
    pub fn has_sessions(&self) -> bool {
        !self.sessions.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    /// Anything arrived on the connection (a request or an interleaved frame).
    pub fn on_traffic(&mut self, now: Instant) {
        self.last_traffic = now;
    }

    /// The `Session` header value for `id`, with the timeout we enforce.
    pub fn session_header(&self, id: &str) -> String {
        format!("{id};timeout={}", self.timeout.as_secs().max(1))
    }

    /// The stream URL of a session.
    pub fn base_url(&self, id: &str) -> Option<&str> {
        self.sessions.get(id).map(|s| s.base_url.as_str())
    }

    pub fn source_mut(&mut self, id: &str) -> Option<&mut S> {
        self.sessions.get_mut(id).map(|s| &mut s.source)
    }

    pub fn dests(&self, id: &str) -> Option<&[Option<TrackDest>]> {
        self.sessions.get(id).map(|s| s.dests.as_slice())
    }

    #[cfg(test)]
    pub fn is_playing(&self, id: &str) -> bool {
        self.sessions.get(id).is_some_and(|s| s.playing)
    }

    /// Adds a session after its first SETUP found a source.
    pub fn open(&mut self, id: String, base_url: String, tracks: usize, source: S, now: Now) {
        self.sessions.insert(
            id,
            Session {
                base_url,
                source,
                dests: vec![None; tracks],
                playing: false,
                started: now,
                last_seen: now.at,
                info: SessionInfo::default(),
                answer: None,
                reported: ReportedLoss::default(),
            },
        );
    }

    /// What the shell learnt about a session's origin and viewer, for its record.
    pub fn set_info(&mut self, id: &str, info: SessionInfo) {
        if let Some(s) = self.sessions.get_mut(id) {
            s.info = info;
        }
    }

    /// Where the session's media comes from, once its PLAY decided it.
    pub fn set_cache(&mut self, id: &str, cache: CacheResult) {
        if let Some(s) = self.sessions.get_mut(id) {
            s.info.cache = cache;
        }
    }

    /// The answer given to a request of session `id`: a PLAY's answer is the one the
    /// record keeps; before a PLAY, the latest.
    pub fn answered(&mut self, id: &str, method: &Method, status: StatusCode) {
        if let Some(s) = self.sessions.get_mut(id) {
            if !matches!(&s.answer, Some((Method::Play, _))) || *method == Method::Play {
                s.answer = Some((method.clone(), status.as_u16()));
            }
        }
    }

    /// An interleaved frame from the viewer: on a session's RTCP channel, its receiver
    /// reports' cumulative loss is kept (RFC 3550 §6.4.2).
    pub fn on_interleaved(&mut self, channel: u8, payload: &[u8]) {
        let Some(s) = self.sessions.values_mut().find(|s| {
            s.dests
                .iter()
                .flatten()
                .any(|d| matches!(d, TrackDest::Interleaved { rtcp, .. } if *rtcp == channel))
        }) else {
            return;
        };
        s.reported.note_rtcp(payload);
    }

    pub fn set_dest(&mut self, id: &str, track: usize, dest: TrackDest) {
        if let Some(d) = self
            .sessions
            .get_mut(id)
            .and_then(|s| s.dests.get_mut(track))
        {
            *d = Some(dest);
        }
    }

    pub fn set_playing(&mut self, id: &str, playing: bool) {
        if let Some(s) = self.sessions.get_mut(id) {
            s.playing = playing;
        }
    }

    /// Checks a request against the sessions and says what to do with it. The request
    /// counts as activity of the session it names.
    pub fn handle_request(&mut self, req: &Request, now: Now) -> Step {
        if req.version == Version::Rtsp2_0 {
            return Step::Reply(error(
                StatusCode::RTSP_VERSION_NOT_SUPPORTED,
                "this edge speaks RTSP/1.0",
            ));
        }
        if !req.version.is_rtsp() {
            return Step::Reply(error(
                StatusCode::BAD_REQUEST,
                "expected an RTSP/1.0 request",
            ));
        }
        if req.cseq().is_none() {
            return Step::Reply(error(
                StatusCode::BAD_REQUEST,
                "missing or invalid CSeq header",
            ));
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
                return Step::Reply(r);
            }
        }
        let session_id = requested_session(req).map(str::to_owned);
        if let Some(id) = &session_id {
            match self.sessions.get_mut(id) {
                Some(s) => s.last_seen = now.at,
                None if req.method != Method::Setup || !id.is_empty() => {
                    return Step::Reply(error(
                        StatusCode::SESSION_NOT_FOUND,
                        "no such session (it may have timed out)",
                    ));
                }
                None => {}
            }
        }
        match &req.method {
            Method::Options => {
                let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
                r.headers.append("Public", PUBLIC);
                Step::Reply(r)
            }
            Method::Describe => Step::Describe {
                url: stream_url(&req.uri).0,
            },
            Method::Setup => self.check_setup(req, session_id),
            Method::Play => self.check_play(req, session_id),
            Method::Pause => match session_id.filter(|id| self.sessions.contains_key(id)) {
                Some(session) => Step::Pause { session },
                None => Step::Reply(error(
                    StatusCode::SESSION_NOT_FOUND,
                    "PAUSE needs a session",
                )),
            },
            Method::Teardown => {
                let Some(s) = session_id.and_then(|id| self.end(&id, EndReason::Teardown, now))
                else {
                    return Step::Reply(error(
                        StatusCode::SESSION_NOT_FOUND,
                        "TEARDOWN needs a session",
                    ));
                };
                self.ended.push_back(s);
                Step::Reply(Response::new(Version::Rtsp1_0, StatusCode::OK))
            }
            Method::GetParameter | Method::SetParameter => {
                let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
                if let Some(id) = &session_id {
                    r.headers.append("Session", self.session_header(id));
                }
                Step::Reply(r)
            }
            Method::Announce | Method::Record | Method::Redirect | Method::PlayNotify => {
                let mut r = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this edge only plays streams",
                );
                r.headers.append("Allow", PUBLIC);
                Step::Reply(r)
            }
            Method::Get | Method::Post | Method::Extension(_) => {
                Step::Reply(error(StatusCode::NOT_IMPLEMENTED, "method not implemented"))
            }
        }
    }

    fn check_setup(&self, req: &Request, session_id: Option<String>) -> Step {
        let (url, track) = stream_url(&req.uri);
        let existing = session_id.filter(|id| self.sessions.contains_key(id));
        if let Some(s) = existing.as_ref().and_then(|id| self.sessions.get(id)) {
            if s.base_url != url {
                return Step::Reply(error(
                    StatusCode::AGGREGATE_OPERATION_NOT_ALLOWED,
                    "a session cannot span two streams; use a new session",
                ));
            }
            if s.playing {
                return Step::Reply(error(
                    StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
                    "cannot change transport while playing",
                ));
            }
        }
        Step::Setup {
            url,
            track,
            session: existing,
        }
    }

    fn check_play(&self, req: &Request, session_id: Option<String>) -> Step {
        let Some(id) = session_id else {
            return Step::Reply(error(
                StatusCode::SESSION_NOT_FOUND,
                "PLAY needs the Session from SETUP",
            ));
        };
        let Some(s) = self.sessions.get(&id) else {
            return Step::Reply(error(StatusCode::SESSION_NOT_FOUND, "no such session"));
        };
        let (url, track) = stream_url(&req.uri);
        if url != s.base_url || track.is_some() && s.dests.len() > 1 {
            return Step::Reply(error(
                StatusCode::ONLY_AGGREGATE_OPERATION_ALLOWED,
                "PLAY the stream URL, not a single track",
            ));
        }
        Step::Play { session: id }
    }

    /// How the session's media goes: UDP when any track is set up for UDP, else on
    /// the connection (a tunnel or plain TCP).
    pub fn transport(&self, id: &str) -> Option<ViewerTransport> {
        let s = self.sessions.get(id)?;
        Some(self.transport_of(s))
    }

    fn transport_of(&self, s: &Session<S>) -> ViewerTransport {
        if s.dests
            .iter()
            .flatten()
            .any(|d| matches!(d, TrackDest::Udp { .. }))
        {
            ViewerTransport::Udp
        } else if self.tunnel {
            ViewerTransport::HttpTunnel
        } else {
            ViewerTransport::Tcp
        }
    }

    fn end(&mut self, id: &str, reason: EndReason, now: Now) -> Option<Ended<S>> {
        let s = self.sessions.remove(id)?;
        let transport = self.transport_of(&s);
        Some(ended(id, self.peer, transport, s, reason, now))
    }

    /// When [`ViewerSessions::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Instant {
        let oldest = self
            .sessions
            .values()
            .map(|s| s.last_seen.max(self.last_traffic))
            .min()
            .unwrap_or(self.last_traffic);
        oldest + self.timeout
    }

    /// Ends sessions that timed out; true when the connection itself is idle (no
    /// session left and no traffic for the timeout) and should close.
    pub fn handle_timeout(&mut self, now: Now) -> bool {
        let t = self.timeout;
        let traffic = self.last_traffic;
        let mut dead: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.at.saturating_duration_since(s.last_seen.max(traffic)) >= t)
            .map(|(k, _)| k.clone())
            .collect();
        dead.sort();
        for id in dead {
            if let Some(e) = self.end(&id, EndReason::Timeout, now) {
                self.ended.push_back(e);
            }
        }
        self.sessions.is_empty() && now.at.saturating_duration_since(traffic) >= t
    }

    /// Ends every session (the connection is closing).
    pub fn end_all(&mut self, reason: EndReason, now: Now) {
        let mut ids: Vec<String> = self.sessions.keys().cloned().collect();
        ids.sort();
        for id in ids {
            if let Some(e) = self.end(&id, reason, now) {
                self.ended.push_back(e);
            }
        }
    }

    /// Ends one session (its accounting connection closed); false when none has `id`.
    pub fn end_session(&mut self, id: &str, reason: EndReason, now: Now) -> bool {
        match self.end(id, reason, now) {
            Some(e) => {
                self.ended.push_back(e);
                true
            }
            None => false,
        }
    }

    /// Takes the sessions whose media goes over UDP out of the table (the connection
    /// closed; their media needs no connection), counting the connection's last
    /// traffic as their last activity. Sessions on the connection itself stay for
    /// [`ViewerSessions::end_all`].
    pub fn detach_udp(&mut self) -> Vec<Detached<S>> {
        let mut ids: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| self.transport_of(s) == ViewerTransport::Udp)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        let traffic = self.last_traffic;
        ids.into_iter()
            .filter_map(|id| {
                let mut session = self.sessions.remove(&id)?;
                session.last_seen = session.last_seen.max(traffic);
                Some(Detached {
                    id,
                    peer: self.peer,
                    session,
                })
            })
            .collect()
    }

    /// Takes a detached session into this connection's table, as if it had been set
    /// up here; the request naming it (handled next) refreshes it.
    pub fn adopt(&mut self, d: Detached<S>) {
        self.sessions.insert(d.id, d.session);
    }

    /// Ends a detached session that nobody adopted: its record names the viewer that
    /// set it up.
    pub fn end_detached(d: Detached<S>, reason: EndReason, now: Now) -> Ended<S> {
        ended(&d.id, d.peer, ViewerTransport::Udp, d.session, reason, now)
    }

    /// The next session that ended, once each.
    pub fn poll_ended(&mut self) -> Option<Ended<S>> {
        self.ended.pop_front()
    }
}

/// The record of session `id` leaving its table.
fn ended<S>(
    id: &str,
    peer: SocketAddr,
    transport: ViewerTransport,
    s: Session<S>,
    reason: EndReason,
    now: Now,
) -> Ended<S> {
    Ended {
        source: s.source,
        record: EndedSession {
            session: id.to_owned(),
            viewer: peer,
            url: s.base_url,
            transport,
            started_unix_ms: s.started.unix_ms,
            duration: now.at.saturating_duration_since(s.started.at),
            reason,
            counts: Counts::default(),
            user: s.info.user,
            method: s
                .answer
                .as_ref()
                .map(|(m, _)| m.as_str().to_owned())
                .unwrap_or_default(),
            status: s.answer.map_or(0, |(_, code)| code),
            rule: s.info.rule,
            origin: s.info.origin,
            cache: s.info.cache,
            user_agent: s.info.user_agent,
            reported_lost: s.reported.total(),
        },
    }
}

/// The viewer's stream URL for a request URI: the URI itself for DESCRIBE, without its
/// `/trackID=N` for SETUP.
pub(crate) fn stream_url(uri: &str) -> (String, Option<usize>) {
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

/// The session id a request names in its `Session` header (without its parameters).
pub(crate) fn requested_session(req: &Request) -> Option<&str> {
    req.headers
        .get("Session")
        .map(|s| s.split(';').next().unwrap_or("").trim())
}

/// An error response whose reason phrase explains, in one short line.
pub(crate) fn error(status: StatusCode, why: &str) -> Response {
    let mut r = Response::new(Version::Rtsp1_0, status);
    let why: String = why.chars().filter(|c| !c.is_control()).take(160).collect();
    r.reason = format!("{} ({why})", status.reason());
    r
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
