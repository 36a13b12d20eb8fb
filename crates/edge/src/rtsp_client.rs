//! The edge's RTSP client toward an origin (or a parent edge): the I/O shell around
//! `mediagate_rtsp::ClientSession`, which numbers requests, tracks the Session, matches
//! responses by CSeq and answers one `401` challenge with the route's credentials
//! (a second refusal is reported, never looped).
//!
//! This file only moves bytes: one TCP connection, requests sent one at a time,
//! interleaved frames that arrive while a response is awaited kept in order for the
//! caller. Every wait is bounded by the timeout given at connect.

use std::collections::VecDeque;
use std::time::Duration;

use mediagate_rtsp::auth::AcceptedSchemes;
use mediagate_rtsp::parse::{Decoder, Limits, ParseError};
use mediagate_rtsp::{
    ClientSession, ClientSessionError, InterleavedFrame, Item, Method, Request, Response,
    ResponseDisposition, StatusCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ids;

/// Why talking to the origin failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("I/O error talking to the origin: {0}")]
    Io(#[from] std::io::Error),
    #[error("the origin sent invalid RTSP: {0}")]
    Parse(#[from] ParseError),
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the origin closed the connection")]
    Closed,
    #[error("authentication with the origin failed: {0}")]
    Auth(String),
    #[error("{0}")]
    Unreachable(#[from] crate::reach::ReachError),
    #[error("the origin redirected to {location}, where this edge does not go: {why}")]
    RedirectRefused {
        location: String,
        why: crate::reach::ReachError,
    },
    #[error("the origin answered {status} {reason} to {method}")]
    Status {
        method: String,
        status: StatusCode,
        reason: String,
    },
    /// The origin asks for credentials the edge does not have: its challenges
    /// (`WWW-Authenticate` values) are for the viewer to answer (pass-through).
    #[error("the origin asks for credentials ({status})")]
    Challenged {
        status: StatusCode,
        challenges: Vec<String>,
    },
}

impl From<ClientSessionError> for ClientError {
    fn from(e: ClientSessionError) -> Self {
        match e {
            ClientSessionError::Auth(e) => ClientError::Auth(e.to_string()),
        }
    }
}

impl ClientError {
    /// The status to give a viewer whose request failed because of this.
    pub fn viewer_status(&self) -> StatusCode {
        match self {
            ClientError::Status { status, .. } | ClientError::Challenged { status, .. } => *status,
            ClientError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ClientError::Unreachable(
                crate::reach::ReachError::NotAllowed { .. }
                | crate::reach::ReachError::NeverReach { .. },
            ) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Credentials for the origin. `Debug` leaves the password out: routes, upstream
/// targets and errors that hold credentials end up in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// The route's `credentials.scheme`: `digest` never sends the password as Basic.
    pub scheme: AcceptedSchemes,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("scheme", &self.scheme)
            .finish()
    }
}

/// One RTSP connection to an origin.
pub struct RtspClient {
    stream: TcpStream,
    decoder: Decoder,
    core: ClientSession,
    frames: VecDeque<InterleavedFrame>,
    timeout: Duration,
    /// A request on this connection was resent with credentials after a challenge.
    answered_challenge: bool,
}

impl std::fmt::Debug for RtspClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspClient")
            .field("session", &self.core.session_id())
            .finish_non_exhaustive()
    }
}

/// Keep-alives to an origin no more often than this, whatever timeout it states.
pub const KEEPALIVE_FLOOR: Duration = Duration::from_secs(5);

/// Frames buffered while waiting for a response, at most; beyond that the origin is
/// streaming faster than we ask questions and the connection is failed.
const MAX_BUFFERED_FRAMES: usize = 4096;

impl RtspClient {
    /// Connects to exactly `addr`, the address `reach` checked (never a name: resolving
    /// again could answer differently). `authority` names it in errors.
    pub async fn connect(
        addr: std::net::SocketAddr,
        authority: &str,
        credentials: Option<Credentials>,
        timeout: Duration,
        via: String,
    ) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .map_err(|source| ClientError::Connect {
                addr: format!("{authority} ({addr})"),
                source,
            })?;
        stream.set_nodelay(true)?;
        let accepted = credentials
            .as_ref()
            .map_or(AcceptedSchemes::Any, |c| c.scheme);
        let core = ClientSession::new(
            format!("mediagate/{}", env!("CARGO_PKG_VERSION")),
            credentials.map(|c| (c.username, c.password)),
        )
        .with_accepted_schemes(accepted)
        .with_via(via)
        .with_keepalive_floor(KEEPALIVE_FLOOR);
        Ok(Self {
            stream,
            decoder: Decoder::new(Limits::default()),
            core,
            frames: VecDeque::new(),
            timeout,
            answered_challenge: false,
        })
    }

    /// Whether the origin challenged a request on this connection and accepted it with
    /// the credentials the client was given.
    pub fn answered_challenge(&self) -> bool {
        self.answered_challenge
    }

    /// The origin's address (media over UDP is accepted only from its IP).
    pub fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.stream.peer_addr()
    }

    /// The session timeout (seconds) the origin stated in a `Session` header, if any.
    pub fn session_timeout(&self) -> Option<u64> {
        self.core.session_timeout_secs()
    }

    /// Builds a request with the headers every request to the origin carries.
    pub fn request(&self, method: Method, uri: &str) -> Request {
        self.core.request(method, uri)
    }

    /// Sends `req` and waits for its response, answering one authentication challenge.
    /// A non-2xx final status is returned as `Ok` (the caller decides); use
    /// [`Self::send_ok`] to turn it into an error.
    pub async fn send(&mut self, req: Request) -> Result<Response, ClientError> {
        let mut wire = self.core.send(req, &ids::random_hex(8))?;
        loop {
            self.write_request(&wire).await?;
            match self.read_response().await? {
                ResponseDisposition::Resend(again) => {
                    self.answered_challenge = true;
                    wire = again;
                }
                ResponseDisposition::Final(resp) | ResponseDisposition::Unsolicited(resp) => {
                    return Ok(resp)
                }
            }
        }
    }

    /// [`Self::send`], with any non-2xx status turned into [`ClientError::Status`].
    pub async fn send_ok(&mut self, req: Request) -> Result<Response, ClientError> {
        let method = req.method.to_string();
        let resp = self.send(req).await?;
        if resp.status.is_success() {
            Ok(resp)
        } else {
            Err(ClientError::Status {
                method,
                status: resp.status,
                reason: resp.reason.clone(),
            })
        }
    }

    /// Writes a request without waiting for its response (keep-alives while
    /// streaming; the response is skipped by [`Self::next_frame`]).
    pub async fn send_no_wait(&mut self, req: Request) -> Result<(), ClientError> {
        let wire = self.core.send_no_wait(req, &ids::random_hex(8))?;
        self.write_request(&wire).await
    }

    async fn write_request(&mut self, req: &Request) -> Result<(), ClientError> {
        let mut out = Vec::with_capacity(req.size_hint());
        req.write_to(&mut out);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Next interleaved frame (buffered ones first). Responses that arrive meanwhile
    /// (to keep-alives) are dropped; requests from the origin (RTSP 2.0 PLAY_NOTIFY,
    /// or a server-sent keep-alive) are ignored. No timeout: the caller bounds it.
    pub async fn next_frame(&mut self) -> Result<InterleavedFrame, ClientError> {
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Ok(f);
            }
            match self.next_item().await? {
                Item::Frame(f) => return Ok(f),
                Item::Response(_) | Item::Request(_) => {}
            }
        }
    }

    /// Drains up to `max` frames that are already decodable without waiting.
    pub fn ready_frames(
        &mut self,
        max: usize,
        out: &mut Vec<InterleavedFrame>,
    ) -> Result<(), ClientError> {
        while out.len() < max {
            if let Some(f) = self.frames.pop_front() {
                out.push(f);
                continue;
            }
            match self.decoder.next_item()? {
                Some(Item::Frame(f)) => out.push(f),
                Some(_) => {}
                None => break,
            }
        }
        Ok(())
    }

    /// What the next response to the awaited request means, within the timeout
    /// (never `Unsolicited`: those are dropped here).
    async fn read_response(&mut self) -> Result<ResponseDisposition, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let item = tokio::time::timeout_at(deadline, self.next_item())
                .await
                .map_err(|_| ClientError::Timeout(self.timeout))??;
            match item {
                Item::Response(r) => match self.core.handle_response(r, &ids::random_hex(8))? {
                    // A late answer to an earlier keep-alive.
                    ResponseDisposition::Unsolicited(_) => {}
                    answer => return Ok(answer),
                },
                Item::Frame(f) => {
                    if self.frames.len() >= MAX_BUFFERED_FRAMES {
                        return Err(ClientError::Io(std::io::Error::other(
                            "origin streams media without answering our request",
                        )));
                    }
                    self.frames.push_back(f);
                }
                Item::Request(_) => {}
            }
        }
    }

    /// The next message from the origin, whatever it is (an accounting connection
    /// waits for keep-alive answers this way). Cancel-safe: bytes already read stay
    /// buffered.
    pub(crate) async fn next_item(&mut self) -> Result<Item, ClientError> {
        loop {
            if let Some(item) = self.decoder.next_item()? {
                return Ok(item);
            }
            let buf = self.decoder.buffer_mut();
            buf.reserve(64 * 1024);
            if self.stream.read_buf(buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Credentials;

    #[test]
    fn debug_shows_the_user_but_not_the_password() {
        let c = Credentials {
            username: "alice".into(),
            password: "hunter2".into(),
            scheme: Default::default(),
        };
        for shown in [
            format!("{c:?}"),
            format!("{c:#?}"),
            format!("{:?}", Some(&c)),
        ] {
            assert!(shown.contains("alice"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}
