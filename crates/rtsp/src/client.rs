//! The client side of one RTSP control connection, sans-IO: what a player, an edge
//! fetching from its origin, or a load generator must remember between requests.
//!
//! What it does:
//! * numbers requests (`CSeq`, RFC 2326 §12.17) and adds what every request carries:
//!   `User-Agent`, our `Via` entry (RFC 2326 §12.43) when configured, the `Session`
//!   the server gave (§12.37), and `Authorization` once challenged;
//! * matches responses to the one request awaited: same `CSeq`, or no `CSeq` at all
//!   (servers that omit it answer in order). Anything else is a late answer to a
//!   request sent without waiting (a keep-alive) and is set aside, counted when it
//!   was a failure;
//! * answers one `401` challenge per request with [`crate::auth::ClientAuth`] (Basic
//!   or Digest, RFC 7617 / RFC 7616) by handing back the request to resend; a second
//!   refusal is the final answer, never a loop;
//! * tracks the session id and its `timeout=` from every final response, and times
//!   keep-alives from it: half the timeout, within `[floor, 30 s]`. Time is an
//!   argument; nothing here reads a clock.
//!
//! What it does not: sockets, byte decoding (the caller runs a
//! [`crate::parse::Decoder`] and hands in whole responses), interleaved frames, the
//! meaning of each method, or randomness (the caller supplies each Digest `cnonce`).

use std::time::{Duration, Instant};

use crate::auth::{AcceptedSchemes, ClientAuth, ClientAuthError};
use crate::headers::Session;
use crate::TypedHeader;
use crate::{Method, Request, Response, StatusCode, Version};

/// Keep-alives are sent at least this often, whatever timeout the server states.
pub(crate) const MAX_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// The session timeout assumed until a server states one (RFC 2326 §12.37).
pub(crate) const DEFAULT_SESSION_TIMEOUT_SECS: u64 = crate::headers::DEFAULT_SESSION_TIMEOUT_SECS;

/// How often to refresh a session whose timeout is `session_timeout_secs`: half of
/// it, no more often than every `floor` and no less often than every 30 s.
pub fn keepalive_interval(session_timeout_secs: u64, floor: Duration) -> Duration {
    Duration::from_secs(session_timeout_secs / 2).clamp(floor, MAX_KEEPALIVE_INTERVAL.max(floor))
}

/// Why a request cannot be sent or answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientSessionError {
    /// The challenge could not be answered, or the credentials cannot be written.
    #[error("authentication: {0}")]
    Auth(#[from] ClientAuthError),
}

/// What a response means for the request in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseDisposition {
    /// The final answer to the awaited request (any status; the caller judges it).
    Final(Response),
    /// The server challenged us and we hold credentials: write this request (same
    /// method and URI, next `CSeq`, with `Authorization`) and keep waiting.
    Resend(Request),
    /// Not an answer to the awaited request: a late answer to a keep-alive, or a
    /// response while nothing is awaited. Already counted; the caller may drop it.
    Unsolicited(Response),
}

/// The request whose answer we wait for.
#[derive(Debug, Clone)]
struct InFlight {
    cseq: u32,
    /// As the caller built it, before numbering, to resend after a challenge.
    original: Request,
    challenged: bool,
}

/// One client connection's request state.
#[derive(Debug, Clone)]
pub struct ClientSession {
    cseq: u32,
    user_agent: String,
    via: Option<String>,
    auth: Option<ClientAuth>,
    session_id: Option<String>,
    session_timeout_secs: Option<u64>,
    in_flight: Option<InFlight>,
    keepalive_floor: Duration,
    next_keepalive: Option<Instant>,
    late_failures: u64,
}

impl ClientSession {
    /// A session that sends `user_agent` and answers challenges with `credentials`
    /// (user name, password) when given.
    pub fn new(user_agent: impl Into<String>, credentials: Option<(String, String)>) -> Self {
        Self {
            cseq: 0,
            user_agent: user_agent.into(),
            via: None,
            auth: credentials.map(|(user, password)| ClientAuth::new(user, password)),
            session_id: None,
            session_timeout_secs: None,
            in_flight: None,
            keepalive_floor: Duration::from_secs(1),
            next_keepalive: None,
            late_failures: 0,
        }
    }

    /// Adds `via` (such as `RTSP/1.0 edge1`) to requests that carry no `Via` yet.
    pub fn with_via(mut self, via: impl Into<String>) -> Self {
        self.via = Some(via.into());
        self
    }

    /// Answers challenges only with `accepted` schemes (a route configured for Digest
    /// must never send its password as Basic).
    pub fn with_accepted_schemes(mut self, accepted: AcceptedSchemes) -> Self {
        self.auth = self.auth.map(|a| a.with_accepted(accepted));
        self
    }

    /// Keep-alives no more often than every `floor` (1 s unless set).
    pub fn with_keepalive_floor(mut self, floor: Duration) -> Self {
        self.keepalive_floor = floor;
        self
    }

    /// A request with our `User-Agent`, ready for the caller's own headers.
    pub fn request(&self, method: Method, uri: &str) -> Request {
        let mut req = Request::new(method, uri, Version::Rtsp1_0);
        req.headers.append("User-Agent", self.user_agent.clone());
        req
    }

    /// Numbers `req` as the request whose answer we now await and returns what to
    /// write. Any request awaited before is forgotten: its answer, if it still comes,
    /// is unsolicited. `cnonce` is fresh random text for Digest `qop=auth`.
    pub fn send(&mut self, req: Request, cnonce: &str) -> Result<Request, ClientSessionError> {
        let wire = self.prepare(req.clone(), cnonce)?;
        self.in_flight = Some(InFlight {
            cseq: self.cseq,
            original: req,
            challenged: false,
        });
        Ok(wire)
    }

    /// Numbers `req` without awaiting its answer (a keep-alive while streaming);
    /// the answer arrives later as [`ResponseDisposition::Unsolicited`].
    pub fn send_no_wait(
        &mut self,
        req: Request,
        cnonce: &str,
    ) -> Result<Request, ClientSessionError> {
        self.prepare(req, cnonce)
    }

    fn prepare(&mut self, mut req: Request, cnonce: &str) -> Result<Request, ClientSessionError> {
        self.cseq = self.cseq.wrapping_add(1);
        req.set_cseq(self.cseq);
        if let Some(id) = &self.session_id {
            req.headers.set("Session", id.clone());
        }
        if let Some(via) = &self.via {
            if !req.headers.contains("Via") {
                req.headers.append("Via", via.clone());
            }
        }
        if let Some(auth) = &mut self.auth {
            if let Some(value) = auth.authorization(req.method.as_str(), &req.uri, cnonce)? {
                req.headers.set("Authorization", value);
            }
        }
        Ok(req)
    }

    /// The CSeq of the request whose answer we wait for.
    pub fn awaiting(&self) -> Option<u32> {
        self.in_flight.as_ref().map(|f| f.cseq)
    }

    /// Takes a decoded response. `cnonce` is used only when the answer is to resend
    /// with credentials.
    pub fn handle_response(
        &mut self,
        resp: Response,
        cnonce: &str,
    ) -> Result<ResponseDisposition, ClientSessionError> {
        let ours = self
            .in_flight
            .as_ref()
            .is_some_and(|f| resp.cseq().is_none_or(|c| c == f.cseq));
        if !ours {
            if !resp.status.is_success() {
                self.late_failures += 1;
            }
            return Ok(ResponseDisposition::Unsolicited(resp));
        }
        let Some(mut in_flight) = self.in_flight.take() else {
            return Ok(ResponseDisposition::Unsolicited(resp));
        };
        if resp.status == StatusCode::UNAUTHORIZED && !in_flight.challenged {
            if let Some(auth) = &mut self.auth {
                let challenges: Vec<&str> = resp.headers.get_all("WWW-Authenticate").collect();
                auth.handle_challenge(&challenges)?;
                let wire = self.prepare(in_flight.original.clone(), cnonce)?;
                in_flight.cseq = self.cseq;
                in_flight.challenged = true;
                self.in_flight = Some(in_flight);
                return Ok(ResponseDisposition::Resend(wire));
            }
        }
        self.note_session(&resp);
        Ok(ResponseDisposition::Final(resp))
    }

    /// Keeps the id (without parameters) for later requests and a positive
    /// `timeout=`. Read by the typed header first; when that refuses the value, by
    /// splitting at `;`, since cameras write ids the RFC would refuse.
    fn note_session(&mut self, resp: &Response) {
        let Some(value) = resp.headers.get("Session") else {
            return;
        };
        let (id, timeout) = match Session::parse_value(value) {
            Ok(s) => (s.id, s.timeout),
            Err(_) => {
                let mut parts = value.split(';');
                let id = parts.next().unwrap_or(value).trim().to_owned();
                let timeout = parts
                    .find_map(|p| p.trim().strip_prefix("timeout="))
                    .and_then(|v| v.trim().parse::<u64>().ok());
                (id, timeout)
            }
        };
        if !id.is_empty() {
            self.session_id = Some(id);
        }
        if let Some(t) = timeout.filter(|&t| t > 0) {
            self.session_timeout_secs = Some(t);
        }
    }

    /// Forgets the session after its TEARDOWN (RFC 2326 §10.7), so the connection's
    /// next requests start a new one: no `Session` header, no keep-alives. The CSeq
    /// numbering goes on, as it belongs to the connection.
    pub fn end_session(&mut self) {
        self.session_id = None;
        self.session_timeout_secs = None;
        self.next_keepalive = None;
    }

    /// The session id the server gave, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The session timeout the server stated (a positive `timeout=`), if any.
    pub fn session_timeout_secs(&self) -> Option<u64> {
        self.session_timeout_secs
    }

    /// Non-2xx answers to requests nobody waited for (failed keep-alives).
    pub fn late_failures(&self) -> u64 {
        self.late_failures
    }

    /// How often to send keep-alives for this session.
    pub fn keepalive_interval(&self) -> Duration {
        let timeout = self
            .session_timeout_secs
            .unwrap_or(DEFAULT_SESSION_TIMEOUT_SECS);
        keepalive_interval(timeout, self.keepalive_floor)
    }

    /// Starts the keep-alive timer: the first is due one interval after `now`.
    pub fn start_keepalives(&mut self, now: Instant) {
        self.next_keepalive = Some(now + self.keepalive_interval());
    }

    /// When the next keep-alive is due, once started.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_keepalive
    }

    /// True when a keep-alive is due at `now`; the next is then scheduled one
    /// interval after this one was due (not after `now`), so a late wake-up does not
    /// drift the schedule.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.next_keepalive {
            Some(due) if now >= due => {
                self.next_keepalive = Some(due + self.keepalive_interval());
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Decoder, Limits};
    use crate::Item;

    fn response(text: &str) -> Response {
        let mut d = Decoder::new(Limits::default());
        d.buffer_mut().extend_from_slice(text.as_bytes());
        match d.next_item().unwrap() {
            Some(Item::Response(r)) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    fn final_of(d: ResponseDisposition) -> Response {
        match d {
            ResponseDisposition::Final(r) => r,
            other => panic!("expected a final response, got {other:?}"),
        }
    }

    const BASIC_CHALLENGE: &str =
        "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Basic realm=\"r\"\r\n\r\n";

    #[test]
    fn after_end_session_the_connection_starts_a_new_session() {
        let mut s = ClientSession::new("ua/1", None);
        s.send(s.request(Method::Setup, "rtsp://h/x"), "c").unwrap();
        let resp = response("RTSP/1.0 200 OK\r\nCSeq: 1\r\nSession: abc;timeout=20\r\n\r\n");
        final_of(s.handle_response(resp, "c").unwrap());
        let t0 = Instant::now();
        s.start_keepalives(t0);
        s.end_session();
        assert_eq!(
            (s.session_id(), s.session_timeout_secs(), s.poll_timeout()),
            (None, None, None)
        );
        let wire = s
            .send(s.request(Method::Describe, "rtsp://h/x"), "c")
            .unwrap();
        assert_eq!(wire.cseq(), Some(2));
        assert_eq!(wire.headers.get("Session"), None);
        assert!(!s.handle_timeout(t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn requests_are_numbered_and_carry_session_via_and_agent() {
        let mut s = ClientSession::new("ua/1", None).with_via("RTSP/1.0 edge1");
        let wire = s
            .send(s.request(Method::Options, "rtsp://h/x"), "c")
            .unwrap();
        assert_eq!(wire.cseq(), Some(1));
        assert_eq!(wire.headers.get("User-Agent"), Some("ua/1"));
        assert_eq!(wire.headers.get("Via"), Some("RTSP/1.0 edge1"));
        assert_eq!(wire.headers.get("Session"), None);
        let resp = response("RTSP/1.0 200 OK\r\nCSeq: 1\r\nSession: abc;timeout=20\r\n\r\n");
        final_of(s.handle_response(resp, "c").unwrap());
        assert_eq!(s.session_id(), Some("abc"));
        assert_eq!(s.session_timeout_secs(), Some(20));

        let mut req = s.request(Method::Play, "rtsp://h/x");
        req.headers.append("Via", "RTSP/1.0 viewer-proxy");
        let wire = s.send_no_wait(req, "c").unwrap();
        assert_eq!(wire.cseq(), Some(2));
        assert_eq!(wire.headers.get("Session"), Some("abc"));
        // A request that names its own Via keeps it; ours is not added twice.
        assert_eq!(wire.headers.get_all("Via").count(), 1);
        assert_eq!(wire.headers.get("Authorization"), None);
    }

    #[test]
    fn a_basic_challenge_is_answered_once_with_a_new_cseq() {
        let creds = Some(("u".to_owned(), "p".to_owned()));
        let mut s = ClientSession::new("ua", creds);
        let first = s
            .send(s.request(Method::Options, "rtsp://h/x"), "c")
            .unwrap();
        assert_eq!(first.headers.get("Authorization"), None);
        let resend = match s.handle_response(response(BASIC_CHALLENGE), "c").unwrap() {
            ResponseDisposition::Resend(r) => r,
            other => panic!("expected a resend, got {other:?}"),
        };
        assert_eq!(resend.method, Method::Options);
        assert_eq!(resend.cseq(), Some(2));
        assert_eq!(resend.headers.get("Authorization"), Some("Basic dTpw"));
        assert_eq!(s.awaiting(), Some(2));
        // The server refuses again: that is the final answer, not another retry.
        let again = BASIC_CHALLENGE.replace("CSeq: 1", "CSeq: 2");
        let r = final_of(s.handle_response(response(&again), "c").unwrap());
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(s.awaiting(), None);
    }

    #[test]
    fn a_digest_challenge_is_answered_with_the_request_uri() {
        let creds = Some(("Mufasa".to_owned(), "Circle Of Life".to_owned()));
        let mut s = ClientSession::new("ua", creds);
        s.send(s.request(Method::Describe, "rtsp://h/cam"), "c")
            .unwrap();
        let challenge = "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n\
             WWW-Authenticate: Digest realm=\"cam\", nonce=\"abc123\"\r\n\r\n";
        let ResponseDisposition::Resend(resend) =
            s.handle_response(response(challenge), "cn").unwrap()
        else {
            panic!("expected a resend");
        };
        let auth = resend.headers.get("Authorization").unwrap();
        assert!(auth.starts_with("Digest "), "{auth}");
        assert!(auth.contains("uri=\"rtsp://h/cam\""), "{auth}");
        // Later requests keep answering the same challenge without a new 401.
        let ok = response("RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n");
        final_of(s.handle_response(ok, "cn").unwrap());
        let next = s
            .send(s.request(Method::Setup, "rtsp://h/cam/t0"), "cn")
            .unwrap();
        assert!(next.headers.get("Authorization").is_some());
    }

    #[test]
    fn without_credentials_or_with_an_unusable_challenge_the_401_stands() {
        let mut s = ClientSession::new("ua", None);
        s.send(s.request(Method::Options, "rtsp://h/x"), "c")
            .unwrap();
        let r = final_of(s.handle_response(response(BASIC_CHALLENGE), "c").unwrap());
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        let mut s = ClientSession::new("ua", Some(("u".into(), "p".into())));
        s.send(s.request(Method::Options, "rtsp://h/x"), "c")
            .unwrap();
        let odd = "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Negotiate x\r\n\r\n";
        let e = s.handle_response(response(odd), "c").unwrap_err();
        assert!(e.to_string().starts_with("authentication: "), "{e}");
    }

    #[test]
    fn digest_only_never_answers_a_basic_challenge() {
        let mut s = ClientSession::new("ua", Some(("u".into(), "p".into())))
            .with_accepted_schemes(AcceptedSchemes::DigestOnly);
        s.send(s.request(Method::Options, "rtsp://h/x"), "c")
            .unwrap();
        let e = s
            .handle_response(response(BASIC_CHALLENGE), "c")
            .unwrap_err();
        assert!(
            e.to_string().contains("no authentication we support"),
            "{e}"
        );
        // Offered both, it picks Digest even where Basic comes first.
        let mut s = ClientSession::new("ua", Some(("u".into(), "p".into())))
            .with_accepted_schemes(AcceptedSchemes::DigestOnly);
        s.send(s.request(Method::Options, "rtsp://h/x"), "c")
            .unwrap();
        let both = "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Basic realm=\"r\"\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n1\"\r\n\r\n";
        let ResponseDisposition::Resend(again) = s.handle_response(response(both), "c").unwrap()
        else {
            panic!("expected a resend");
        };
        let auth = again.headers.get("Authorization").unwrap();
        assert!(auth.starts_with("Digest "), "{auth}");
        // Basic only refuses a Digest-only server rather than guessing.
        let mut s = ClientSession::new("ua", Some(("u".into(), "p".into())))
            .with_accepted_schemes(AcceptedSchemes::BasicOnly);
        s.send(s.request(Method::Options, "rtsp://h/x"), "c")
            .unwrap();
        let digest = "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n1\"\r\n\r\n";
        assert!(s.handle_response(response(digest), "c").is_err());
    }

    #[test]
    fn late_keepalive_answers_are_set_aside_and_failures_counted() {
        let mut s = ClientSession::new("ua", None);
        s.send_no_wait(s.request(Method::GetParameter, "rtsp://h/x"), "c")
            .unwrap();
        s.send_no_wait(s.request(Method::GetParameter, "rtsp://h/x"), "c")
            .unwrap();
        s.send(s.request(Method::Pause, "rtsp://h/x"), "c").unwrap();
        // Answers to the keep-alives (1 and 2) arrive first, out of order.
        for late in [
            "RTSP/1.0 454 Session Not Found\r\nCSeq: 2\r\n\r\n",
            "RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n",
        ] {
            let d = s.handle_response(response(late), "c").unwrap();
            assert!(matches!(d, ResponseDisposition::Unsolicited(_)), "{d:?}");
            assert_eq!(s.awaiting(), Some(3));
        }
        assert_eq!(s.late_failures(), 1);
        let r = final_of(
            s.handle_response(response("RTSP/1.0 200 OK\r\nCSeq: 3\r\n\r\n"), "c")
                .unwrap(),
        );
        assert_eq!(r.cseq(), Some(3));
        // Nothing awaited: even a matching-looking answer is unsolicited.
        let stray = response("RTSP/1.0 500 Internal Server Error\r\nCSeq: 3\r\n\r\n");
        assert!(matches!(
            s.handle_response(stray, "c").unwrap(),
            ResponseDisposition::Unsolicited(_)
        ));
        assert_eq!(s.late_failures(), 2);
    }

    #[test]
    fn a_response_without_cseq_answers_the_awaited_request() {
        let mut s = ClientSession::new("ua", None);
        s.send(s.request(Method::Options, "rtsp://h/x"), "c")
            .unwrap();
        let r = final_of(
            s.handle_response(response("RTSP/1.0 200 OK\r\n\r\n"), "c")
                .unwrap(),
        );
        assert_eq!(r.status, StatusCode::OK);
    }

    #[test]
    fn session_ids_are_kept_without_parameters_and_bad_timeouts_ignored() {
        let mut s = ClientSession::new("ua", None);
        for (header, id, timeout) in [
            ("abc", "abc", None),
            ("abc;timeout=30", "abc", Some(30)),
            (" def ; timeout = 0", "def", Some(30)),
            ("ghi;timeout=x", "ghi", Some(30)),
            ("jkl;Timeout=40", "jkl", Some(40)),
            ("cam/\"1\";timeout=50", "cam/\"1\"", Some(50)),
        ] {
            s.send(s.request(Method::Setup, "rtsp://h/x"), "c").unwrap();
            let text = format!("RTSP/1.0 200 OK\r\nSession: {header}\r\n\r\n");
            final_of(s.handle_response(response(&text), "c").unwrap());
            assert_eq!(s.session_id(), Some(id), "{header}");
            assert_eq!(s.session_timeout_secs(), timeout, "{header}");
        }
    }

    #[test]
    fn keepalives_are_half_the_timeout_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(keepalive_interval(60, s(5)), s(30));
        assert_eq!(keepalive_interval(20, s(5)), s(10));
        assert_eq!(keepalive_interval(2, s(5)), s(5));
        assert_eq!(keepalive_interval(600, s(5)), s(30));
        assert_eq!(keepalive_interval(1, s(1)), s(1));
        assert_eq!(keepalive_interval(10, s(1)), s(5));
    }

    #[test]
    fn keepalive_timer_follows_the_stated_timeout_with_a_fake_clock() {
        let mut s = ClientSession::new("ua", None).with_keepalive_floor(Duration::from_secs(5));
        assert_eq!(s.keepalive_interval(), Duration::from_secs(30));
        s.send(s.request(Method::Setup, "rtsp://h/x"), "c").unwrap();
        let ok = response("RTSP/1.0 200 OK\r\nCSeq: 1\r\nSession: a;timeout=20\r\n\r\n");
        final_of(s.handle_response(ok, "c").unwrap());
        let t0 = Instant::now();
        assert_eq!(s.poll_timeout(), None);
        assert!(!s.handle_timeout(t0 + Duration::from_secs(100)));
        s.start_keepalives(t0);
        let sec = Duration::from_secs;
        assert_eq!(s.poll_timeout(), Some(t0 + sec(10)));
        assert!(!s.handle_timeout(t0 + sec(9)));
        // Woken late: one keep-alive, and the schedule does not drift.
        assert!(s.handle_timeout(t0 + sec(13)));
        assert_eq!(s.poll_timeout(), Some(t0 + sec(20)));
        assert!(!s.handle_timeout(t0 + sec(13)));
    }
}
