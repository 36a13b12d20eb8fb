//! Publishers: an encoder's RTSP connection from its `ANNOUNCE` on (a viewer
//! connection hands itself over here, with the `OPTIONS` it may have sent before
//! already answered). The session logic is `publish_session`'s; this shell checks the
//! publish rules, binds UDP pairs, and feeds the path's hub with the same events an
//! origin session would (`Ready` at `RECORD`, then `Frames`), so viewers of a published
//! stream get the same splitting, fast start and slow-viewer isolation as a pulled one.
//!
//! A second publisher to a busy path gets `409 Conflict` (HTTP's "conflicts with the
//! current state of the resource", RFC 9110 §15.5.10; RTSP keeps HTTP's status space,
//! RFC 2326 §7.1.1) unless its rule says `on_busy = "replace"`. A publisher that goes
//! away (TEARDOWN, closed connection, no traffic for the session timeout) is handled
//! like an origin that went away: viewers stay for the give-up time and continue if it
//! comes back with the same tracks.
//!
//! A path that a route serves from an origin cannot be published to (403): viewers of
//! a route get its origin, never a stream someone pushed.
//!
//! A rule with `users` asks for a login after the address check, through the viewers'
//! login code (`login`): a 401 challenge keeps the connection open for the answer, a
//! logged-in user the rule does not list gets 403.
//!
//! What it does not: serve viewers.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use mediagate_rtsp::{
    Decoder, InterleavedFrame, Item, Method, Request, Response, StatusCode, Version,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::auth::LoginKind;
use crate::conn_out::ConnOut;
use crate::hub_registry::Lease;
use crate::publish_rules::Verdict;
use crate::publish_session::{url_path, PubTransport, PublishSession};
use crate::session::error;
use crate::tracker::until_true;
use crate::upstream_supervisor::UpEvent;
use crate::viewer::ViewerContext;

/// Events queued towards the hub; a publisher faster than its hub waits (TCP
/// back-pressure), it never grows memory.
const HUB_QUEUE: usize = 64;

/// The lease on the published hub of `url`'s path, for a viewer, when a publisher
/// announced that path and its hub still runs.
pub(crate) fn viewer_lease(ctx: &ViewerContext, url: &str) -> Option<Lease> {
    ctx.hubs.published(url_path(url))
}

/// A datagram from a publisher's UDP track: (track, is RTCP, payload).
type Datagram = (usize, bool, Bytes);

struct Publisher {
    ctx: Arc<ViewerContext>,
    out: ConnOut,
    peer: SocketAddr,
    local: SocketAddr,
    core: PublishSession,
    /// Set at ANNOUNCE: the hub's lease and the sender of its events.
    hub: Option<(Lease, mpsc::Sender<UpEvent>)>,
    path: String,
    /// Datagrams from this publisher's UDP tracks.
    udp_tx: mpsc::Sender<Datagram>,
    udp_readers: Vec<tokio::task::JoinHandle<()>>,
    last_heard: Instant,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        for r in &self.udp_readers {
            r.abort();
        }
    }
}

/// Serves a publisher from its `announce` until it leaves, the hub drops it (a
/// replacing publisher) or the edge drains.
pub(crate) async fn serve<R: AsyncRead + Unpin>(
    ctx: Arc<ViewerContext>,
    out: ConnOut,
    peer: SocketAddr,
    local: SocketAddr,
    announce: Request,
    mut rd: R,
    mut decoder: Decoder,
) {
    let (udp_tx, mut udp_rx) = mpsc::channel::<Datagram>(1024);
    let mut p = Publisher {
        core: PublishSession::new(crate::ids::random_hex(8)),
        ctx: ctx.clone(),
        out,
        peer,
        local,
        hub: None,
        path: String::new(),
        udp_tx,
        udp_readers: Vec::new(),
        last_heard: Instant::now(),
    };
    if !p.handle(announce).await {
        p.out.close();
        return;
    }
    let mut drain = ctx.drain.clone();
    loop {
        let mut frames = Vec::new();
        loop {
            match decoder.next_item() {
                Ok(Some(Item::Request(req))) => {
                    p.last_heard = Instant::now();
                    if !p.forward(&mut frames).await || !p.handle(req).await {
                        return p.end("left").await;
                    }
                }
                Ok(Some(Item::Frame(f))) => {
                    p.last_heard = Instant::now();
                    if let Some(f) = p.core.on_interleaved(f.channel(), f.payload().clone()) {
                        frames.push(f);
                    }
                }
                Ok(Some(Item::Response(_))) => {}
                Ok(None) => break,
                Err(e) => {
                    let mut resp = Response::new(Version::Rtsp1_0, StatusCode::BAD_REQUEST);
                    resp.reason = format!("Bad Request ({e})").chars().take(200).collect();
                    p.send(resp);
                    return p.end("sent a malformed message").await;
                }
            }
        }
        if !p.forward(&mut frames).await {
            return p.end("was replaced or its stream ended").await;
        }
        let timeout = p.ctx.settings.load().session_timeout;
        let buf = decoder.buffer_mut();
        buf.reserve(16 * 1024);
        tokio::select! {
            r = rd.read_buf(buf) => match r {
                Ok(0) | Err(_) => return p.end("closed its connection").await,
                Ok(_) => {}
            },
            Some((track, rtcp, data)) = udp_rx.recv() => {
                p.last_heard = Instant::now();
                let mut frames: Vec<InterleavedFrame> = p.core.on_datagram(track, rtcp, data).into_iter().collect();
                // Whatever else is already waiting goes in the same batch.
                while let Ok((track, rtcp, data)) = udp_rx.try_recv() {
                    frames.extend(p.core.on_datagram(track, rtcp, data));
                    if frames.len() >= 64 {
                        break;
                    }
                }
                if !p.forward(&mut frames).await {
                    return p.end("was replaced or its stream ended").await;
                }
            }
            _ = tokio::time::sleep_until(p.last_heard + timeout) => {
                return p.end("sent nothing for the session timeout").await;
            }
            _ = p.out.closed() => return p.end("closed its connection").await,
            _ = until_true(&mut drain) => return p.end("was let go by the drain").await,
        }
    }
}

impl Publisher {
    fn send(&self, mut resp: Response) {
        resp.headers.set("Server", self.ctx.server.clone());
        self.out.push_control(resp.to_bytes());
    }

    /// Passes media on to the hub; false when the hub no longer reads this
    /// publisher (another one replaced it, or the hub is gone).
    async fn forward(&mut self, frames: &mut Vec<InterleavedFrame>) -> bool {
        if frames.is_empty() {
            return true;
        }
        let batch = std::mem::take(frames);
        match &self.hub {
            Some((_, tx)) => tx.send(UpEvent::Frames(batch)).await.is_ok(),
            None => true,
        }
    }

    async fn end(mut self, why: &str) {
        let d = self.core.drops();
        tracing::info!(
            publisher = %self.peer,
            path = %self.path,
            dropped_undeclared = d.undeclared_channel,
            dropped_malformed = d.malformed,
            dropped_before_record = d.before_record,
            "publisher {why}"
        );
        // Dropping the sender tells the hub its source is gone.
        self.hub = None;
        self.out.close();
    }

    /// Answers one request; false when the connection should close after it.
    async fn handle(&mut self, req: Request) -> bool {
        let cseq = req.cseq();
        let (mut resp, keep) = match req.method {
            Method::Options => {
                let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
                r.headers.set(
                    "Public",
                    "OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER",
                );
                (r, true)
            }
            Method::GetParameter | Method::SetParameter => {
                match self.core.check_session(&req, false) {
                    Ok(()) => (Response::new(Version::Rtsp1_0, StatusCode::OK), true),
                    Err(r) => (r, true),
                }
            }
            Method::Announce => match self.announce(&req).await {
                Ok(r) => (r, true),
                // A 401 is a challenge the publisher answers with its next ANNOUNCE
                // on this connection (ffmpeg and GStreamer both do).
                Err(r) => {
                    let keep = r.status == StatusCode::UNAUTHORIZED;
                    (r, keep)
                }
            },
            Method::Setup => (self.setup(&req).await, true),
            Method::Record => (self.record(&req).await, true),
            Method::Teardown => match self.core.check_session(&req, true) {
                Ok(()) => (Response::new(Version::Rtsp1_0, StatusCode::OK), false),
                Err(r) => (r, true),
            },
            _ => (
                error(
                    StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
                    "this connection publishes; open another one to play",
                ),
                true,
            ),
        };
        if let Some(c) = cseq {
            resp.set_cseq(c);
        }
        if !keep {
            resp.headers.set("Connection", "close");
        }
        self.send(resp);
        keep
    }

    async fn announce(&mut self, req: &Request) -> Result<Response, Response> {
        let settings = self.ctx.settings.load();
        let path = url_path(&req.uri).to_owned();
        let on_busy = match settings.publish.check(&path, self.peer.ip()) {
            Verdict::Allowed(b) => b,
            Verdict::LoginFirst(b, access) => {
                // The publisher's login is checked like a viewer's: same users file
                // or LDAP, same challenges; a publisher that has none yet gets a 401
                // and answers it on this connection.
                let mut remembered = None;
                match crate::login::check(
                    &settings,
                    req,
                    &access,
                    LoginKind::Origin,
                    self.peer,
                    &mut remembered,
                )
                .await
                {
                    Ok(p) => {
                        let user = p.map(|p| p.user).unwrap_or_default();
                        tracing::info!(publisher = %self.peer, %path, %user, "publisher logged in");
                        b
                    }
                    Err((resp, user)) => {
                        match &user {
                            Some(u) => {
                                tracing::info!(publisher = %self.peer, %path, user = %u, "publishing refused: the user is not allowed by the publish rules")
                            }
                            None => {
                                tracing::info!(publisher = %self.peer, %path, status = resp.status.as_u16(), "publishing refused: no valid login")
                            }
                        }
                        return Err(resp);
                    }
                }
            }
            Verdict::Forbidden => {
                tracing::info!(publisher = %self.peer, %path, "publishing refused by the publish rules");
                return Err(error(
                    StatusCode::FORBIDDEN,
                    "publishing to this path is not allowed from this address ([[edge.publish]])",
                ));
            }
        };
        // A path a route serves from an origin is not up for publishing: a publisher
        // must never take over what viewers of a route expect from its origin.
        if let Ok(t) = settings.router.resolve(&req.uri, self.local, None) {
            if t.rule.is_some() {
                tracing::info!(publisher = %self.peer, %path, "publishing refused: a route serves this path");
                return Err(error(
                    StatusCode::FORBIDDEN,
                    "a route serves this path from an origin; publish under another path",
                ));
            }
        }
        self.core.announce(req)?;
        let url: mediagate_config::RtspUrl =
            format!("rtsp://{}{path}", self.local).parse().map_err(
                |e: mediagate_config::InvalidValue| error(StatusCode::BAD_REQUEST, &e.to_string()),
            )?;
        let target = settings.router.published_target(url);
        let lease = self.ctx.hubs.lease_published(&path, &target);
        let (tx, rx) = mpsc::channel(HUB_QUEUE);
        let replace = on_busy == mediagate_config::OnBusy::Replace;
        if !lease.hub().attach(rx, replace).await {
            tracing::info!(publisher = %self.peer, %path, "publishing refused: the path has a publisher");
            let mut r = Response::new(
                Version::Rtsp1_0,
                StatusCode::from_u16(409).expect("a valid status"),
            );
            r.reason = "Conflict (this path has a publisher already)".into();
            return Err(r);
        }
        tracing::info!(publisher = %self.peer, %path, tracks = self.core.described().map_or(0, |d| d.tracks.len()), "publisher announced a stream");
        self.path = path;
        self.hub = Some((lease, tx));
        Ok(Response::new(Version::Rtsp1_0, StatusCode::OK))
    }

    async fn setup(&mut self, req: &Request) -> Response {
        let ask = match self.core.setup(req) {
            Ok(a) => a,
            Err(r) => return r,
        };
        let server_ports = match ask.transport {
            PubTransport::Interleaved { .. } => None,
            PubTransport::Udp { .. } => match self.bind_udp(ask.track).await {
                Ok(ports) => Some(ports),
                Err(e) => {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("no UDP port pair free: {e}"),
                    )
                }
            },
        };
        self.core.setup_done(&ask, server_ports)
    }

    /// A server port pair for a UDP track; its readers pass on datagrams from the
    /// publisher's address only.
    async fn bind_udp(&mut self, track: usize) -> std::io::Result<(u16, u16)> {
        let pair = Arc::new(self.ctx.hubs.ports().bind_pair().await?);
        let port = pair.rtp_port();
        for rtcp in [false, true] {
            let pair = pair.clone();
            let tx = self.udp_tx.clone();
            let from_ip = self.peer.ip();
            self.udp_readers.push(tokio::spawn(async move {
                let sock = if rtcp { &pair.rtcp } else { &pair.rtp };
                let mut buf = vec![0u8; 65_536];
                loop {
                    let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                        return;
                    };
                    if from.ip() != from_ip {
                        continue; // not the publisher: never injected into its stream
                    }
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    if tx.send((track, rtcp, data)).await.is_err() {
                        return;
                    }
                }
            }));
        }
        Ok((port, port + 1))
    }

    async fn record(&mut self, req: &Request) -> Response {
        let d = match self.core.record(req) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let Some((_, tx)) = &self.hub else {
            return error(
                StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
                "RECORD before ANNOUNCE",
            );
        };
        if tx.send(UpEvent::Ready(Arc::new(d))).await.is_err() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the stream was taken over");
        }
        tracing::info!(publisher = %self.peer, path = %self.path, "publisher recording");
        let mut r = Response::new(Version::Rtsp1_0, StatusCode::OK);
        r.headers
            .set("Session", format!("{};timeout=60", self.core.session_id()));
        r
    }
}
