//! The RTSP connections (tokio): one task per client connection parses what the
//! client sends with the rtsp crate's incremental [`Decoder`], routes each request
//! (see the module above), and keeps one connection per back end it talks to; one
//! task per back-end connection parses what that back end sends and rewrites it for
//! the client (the balancer's session IDs, `Transport` in `direct` mode).
//!
//! Bounds: a request head must be complete within `header_timeout` of its first
//! byte, and a connection with no back end yet closes after `header_timeout`
//! without a request (slowloris); the rtsp crate's [`Limits`] cap lines, heads and
//! bodies; malformed or oversized input gets 400 and the connection is closed; the
//! connection cap is checked at accept; output to a slow client is a bounded queue,
//! so a back end is read no faster than the client takes it.
//!
//! What it does not: decide sessions (the table does) or transports
//! ([`super::transport`]).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mediagate_config::{MediaMode, ThreadScheduling};
use mediagate_relay::engine::{Expected, Pair};
use mediagate_rtsp::headers::{PortRange, Session, Transport};
use mediagate_rtsp::parse::Head;
use mediagate_rtsp::{
    tunnel, Decoder, Item, Limits, Method, Request, Response, StatusCode, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::outbox::Outbox;
use super::threads::ProxyThreads;
use super::transport;
use crate::backend::BackendId;
use crate::proxy_v2;
use crate::service::{add, Backend, RelayedPair, Service};

/// Messages and frames queued towards one peer before its reader waits.
const QUEUE: usize = 256;
/// How long connecting to a back end may take before the client gets 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Server-sent requests awaiting the client's answer, per connection.
const MAX_ASKED: usize = 64;
/// Requests awaiting a back end's answer, per back-end connection (pipelining bound).
const MAX_PENDING: usize = 64;
/// Free room a receive buffer has before each read. An empty buffer would be read into
/// 64 bytes at a time (what `read_buf` adds to a full `BytesMut`), several system calls
/// for one request; with this room a request or an answer's head is one read (a longer
/// SDP body is a second, the decoder having made room for it). Every connection keeps
/// this much while idle: with 10,000 held sessions (10,000 sockets) the RSS was
/// 83 MiB with 1 KiB, 88 MiB with 2 KiB, 75 MiB with no room kept.
const READ_ROOM: usize = 1024;

/// Reads what `rd` has into the decoder's buffer, with [`READ_ROOM`] free before it.
async fn read_more<R: AsyncReadExt + Unpin>(
    rd: &mut R,
    dec: &mut Decoder,
) -> std::io::Result<usize> {
    let buf = dec.buffer_mut();
    // A no-op while the room is there; on an emptied buffer it reuses the allocation.
    buf.reserve(READ_ROOM);
    rd.read_buf(buf).await
}

/// Role-wide settings every connection reads.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) header_timeout: Duration,
    pub(crate) session_timeout: Duration,
    pub(crate) max_connections: u64,
    /// The scheduling of the connection threads (`[balancer] rtsp_scheduling`).
    pub(crate) scheduling: ThreadScheduling,
    /// Client connections open now, over every service.
    pub(crate) open: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh balancer session ID: 64 random bits in hex, so IDs cannot be guessed.
fn mint() -> String {
    let n = getrandom::u64().unwrap_or_else(|_| {
        // The OS source failing is near impossible; the clock still differs per call.
        u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        )
        .unwrap_or_default()
    });
    format!("{n:016x}")
}

/// Accepts clients on `listener` for `svc` until the task is aborted.
pub(crate) async fn accept_loop(listener: TcpListener, svc: Arc<Service>, settings: Arc<Settings>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(service = %svc.name, "balancer: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if settings.open.load(Ordering::Relaxed) >= settings.max_connections {
            add(&svc.stats.connections_refused, 1);
            drop(stream);
            continue;
        }
        add(&svc.stats.connections, 1);
        // The connection moves to its thread's runtime (registered there afresh).
        let std = match stream.into_std() {
            Ok(std) => std,
            Err(e) => {
                tracing::warn!(service = %svc.name, "balancer: cannot take an accepted connection: {e}");
                continue;
            }
        };
        settings.open.fetch_add(1, Ordering::Relaxed);
        add(&svc.stats.connections_open, 1);
        let svc = Arc::clone(&svc);
        let scheduling = settings.scheduling;
        let settings = Arc::clone(&settings);
        let task = async move {
            match TcpStream::from_std(std) {
                Ok(stream) => serve(stream, peer, &svc, &settings).await,
                Err(e) => {
                    tracing::warn!(service = %svc.name, "balancer: cannot take an accepted connection: {e}")
                }
            }
            settings.open.fetch_sub(1, Ordering::Relaxed);
            svc.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
        };
        match ProxyThreads::start(scheduling).next() {
            Some(thread) => drop(thread.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }
}

/// A response with `Connection: close`, for input the balancer cannot go on from.
fn closing(version: Version, status: StatusCode) -> Bytes {
    let mut resp = Response::new(version, status);
    resp.headers.append("Connection", "close");
    resp.to_bytes()
}

enum Start {
    Rtsp,
    Tunnel(Request, BytesMut),
    Close,
}

/// Reads until the stream shows whether it is an HTTP tunnel half (its head is read
/// alone: the POST body is not `Content-Length`-delimited) or RTSP.
async fn sniff(
    stream: &mut TcpStream,
    dec: &mut Decoder,
    settings: &Settings,
    svc: &Service,
) -> Start {
    let deadline = tokio::time::Instant::now() + settings.header_timeout;
    loop {
        let buf = dec.buffer_mut();
        let maybe_http = [&b"GET "[..], b"POST "]
            .iter()
            .any(|m| m.starts_with(&buf[..buf.len().min(m.len())]));
        let whole = [&b"GET "[..], b"POST "].iter().any(|m| buf.starts_with(m));
        if !buf.is_empty() && !maybe_http {
            return Start::Rtsp;
        }
        if whole {
            match dec.next_head() {
                Ok(Some(Head::Request(req))) => match tunnel::classify(&req) {
                    Ok(Some(_)) => return Start::Tunnel(req, dec.take_buffered()),
                    _ => {
                        add(&svc.stats.bad_requests, 1);
                        let _ = stream
                            .write_all(&closing(Version::Http1_0, StatusCode::BAD_REQUEST))
                            .await;
                        return Start::Close;
                    }
                },
                Ok(Some(Head::Response(_))) | Err(_) => {
                    add(&svc.stats.bad_requests, 1);
                    let _ = stream
                        .write_all(&closing(Version::Http1_0, StatusCode::BAD_REQUEST))
                        .await;
                    return Start::Close;
                }
                Ok(None) => {}
            }
        }
        match tokio::time::timeout_at(deadline, read_more(stream, dec)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Start::Close,
        }
    }
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, svc: &Arc<Service>, settings: &Settings) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let mut dec = Decoder::new(Limits::default());
    match sniff(&mut stream, &mut dec, settings, svc).await {
        Start::Close => return,
        Start::Tunnel(req, rest) => return tunnel(stream, req, rest, peer, local, svc).await,
        Start::Rtsp => {}
    }
    let (mut rd, wr) = stream.into_split();
    let (to_client, writer) = Outbox::new(wr, QUEUE);
    let writer = tokio::spawn(writer);
    let mut client = Client {
        peer,
        local,
        svc: Arc::clone(svc),
        session_timeout: settings.session_timeout,
        to_client,
        links: HashMap::new(),
        current: None,
        interleaved: None,
        asked: Arc::new(Mutex::new(HashMap::new())),
    };
    client.run(&mut rd, &mut dec, settings.header_timeout).await;
    let to_client = Arc::clone(&client.to_client);
    drop(client);
    to_client.close();
    drop(to_client);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// A request sent to a back end, awaiting its answer (answers come in order).
#[derive(Debug)]
struct Pending {
    method: Method,
    version: Version,
    cseq: Option<String>,
    /// The balancer session ID the request named.
    session: Option<String>,
    /// Relay mode, a UDP SETUP: the pair opened for it and the client's own ports.
    relay: Option<(Pair, PortRange)>,
}

/// One back-end connection of a client connection.
struct Link {
    tx: Arc<Outbox>,
    pending: Arc<Mutex<VecDeque<Pending>>>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Client {
    peer: SocketAddr,
    local: SocketAddr,
    svc: Arc<Service>,
    session_timeout: Duration,
    to_client: Arc<Outbox>,
    links: HashMap<BackendId, Link>,
    /// The back end session-less requests on this connection go to (DESCRIBE then
    /// SETUP must reach the same one).
    current: Option<BackendId>,
    /// Where the client's interleaved frames (RTCP) go.
    interleaved: Option<BackendId>,
    /// Requests back ends sent to this client, by CSeq, awaiting the client's answer.
    asked: Arc<Mutex<HashMap<String, BackendId>>>,
}

/// Whether a connection goes on after an item.
enum Flow {
    Continue,
    Close,
}

impl Client {
    async fn run(&mut self, rd: &mut OwnedReadHalf, dec: &mut Decoder, header_timeout: Duration) {
        let mut partial_since: Option<tokio::time::Instant> = None;
        let mut idle_since = tokio::time::Instant::now();
        // When the bytes being parsed were read (the sniffed start: about now).
        let mut read_at = Instant::now();
        loop {
            loop {
                match dec.next_item() {
                    Ok(Some(item)) => {
                        idle_since = tokio::time::Instant::now();
                        if let Flow::Close = self.on_item(item, read_at).await {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        add(&self.svc.stats.bad_requests, 1);
                        tracing::debug!(peer = %self.peer, service = %self.svc.name, "balancer: bad input from a client: {e}");
                        let _ = self
                            .to_client
                            .send(closing(Version::Rtsp1_0, StatusCode::BAD_REQUEST))
                            .await;
                        return;
                    }
                }
            }
            let now = tokio::time::Instant::now();
            let deadline = if dec.buffered_len() > 0 {
                Some(*partial_since.get_or_insert(now) + header_timeout)
            } else {
                partial_since = None;
                self.links.is_empty().then(|| idle_since + header_timeout)
            };
            let read = read_more(rd, dec);
            let n = match deadline {
                Some(at) => match tokio::time::timeout_at(at, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::debug!(peer = %self.peer, "balancer: a client took too long for its request; closing");
                        return;
                    }
                },
                None => read.await,
            };
            match n {
                Ok(n) if n > 0 => read_at = Instant::now(),
                _ => return,
            }
        }
    }

    async fn reply(&self, req: &Request, status: StatusCode) {
        let _ = self
            .to_client
            .send(Response::reply_to(req, status).to_bytes())
            .await;
    }

    async fn on_item(&mut self, item: Item, read_at: Instant) -> Flow {
        match item {
            Item::Request(req) => self.on_request(req, read_at).await,
            Item::Response(resp) => {
                self.on_answer(resp).await;
                Flow::Continue
            }
            Item::Frame(frame) => {
                let target = self.interleaved.or(self.current);
                if let Some(link) = target.and_then(|b| self.links.get(&b)) {
                    let bytes = frame.to_bytes();
                    if let Some(b) = target.and_then(|b| self.svc.backend(b)) {
                        add(&b.stats.packets, 1);
                        add(&b.stats.bytes_in, bytes.len() as u64);
                    }
                    let _ = link.tx.send(bytes).await;
                }
                Flow::Continue
            }
        }
    }

    /// The client's answer to a request a back end sent.
    async fn on_answer(&mut self, mut resp: Response) {
        let Some(cseq) = resp.headers.get("CSeq").map(str::to_owned) else {
            return;
        };
        let Some(backend) = lock(&self.asked).remove(&cseq) else {
            return;
        };
        if let Some(Ok(mut s)) = resp.headers.typed::<Session>() {
            if let Some(e) = self.svc.table().route(&s.id, Instant::now()) {
                s.id = e.server_id.clone();
                resp.headers.set_typed(&s);
            }
        }
        if let Some(link) = self.links.get(&backend) {
            let _ = link.tx.send(resp.to_bytes()).await;
        }
    }

    /// Routes one request; `read_at` is when its bytes were read, for
    /// `rtsp_request_forward_seconds`.
    async fn on_request(&mut self, mut req: Request, read_at: Instant) -> Flow {
        let svc = Arc::clone(&self.svc);
        add(&svc.stats.requests, 1);
        let now = Instant::now();
        let session = match req.headers.typed::<Session>() {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(_)) => {
                add(&svc.stats.bad_requests, 1);
                let _ = self
                    .to_client
                    .send(closing(req.version, StatusCode::BAD_REQUEST))
                    .await;
                return Flow::Close;
            }
        };
        let (target, lb_session) = match session {
            Some(mut s) => {
                let routed = svc
                    .table()
                    .route(&s.id, now)
                    .map(|e| (e.backend, e.server_id.clone()));
                let Some((backend, server_id)) = routed else {
                    add(&svc.stats.unknown_sessions, 1);
                    self.reply(&req, StatusCode::SESSION_NOT_FOUND).await;
                    return Flow::Continue;
                };
                let lb_id = std::mem::replace(&mut s.id, server_id);
                req.headers.set_typed(&s);
                (backend, Some(lb_id))
            }
            None if svc.mode == MediaMode::Redirect => {
                self.redirect(&req).await;
                return Flow::Continue;
            }
            None => {
                let picked = match self.current {
                    Some(b) => Some(b),
                    None => svc.pick(self.peer.ip(), Some(&req.uri)).map(|b| b.id),
                };
                let Some(b) = picked else {
                    add(&svc.stats.no_backend, 1);
                    self.reply(&req, StatusCode::SERVICE_UNAVAILABLE).await;
                    return Flow::Continue;
                };
                self.current = Some(b);
                (b, None)
            }
        };
        let mut relay = None;
        if req.method == Method::Setup {
            if svc.table().begin_setup(lb_session.as_deref()).is_err() {
                self.reply(&req, StatusCode::NOT_ENOUGH_BANDWIDTH).await;
                return Flow::Continue;
            }
            let rewritten = match req.headers.typed::<Transport>() {
                Some(Ok(t)) => transport::rewrite_request(t, self.peer.ip(), svc.mode),
                _ => None,
            };
            let Some(mut t) = rewritten else {
                svc.table().setup_done(lb_session.as_deref(), false);
                self.reply(&req, StatusCode::UNSUPPORTED_TRANSPORT).await;
                return Flow::Continue;
            };
            if svc.mode == MediaMode::Relay {
                relay = self.relay_pair(&mut t);
                if t.0.is_empty() {
                    svc.table().setup_done(lb_session.as_deref(), false);
                    self.reply(&req, StatusCode::NOT_ENOUGH_BANDWIDTH).await;
                    return Flow::Continue;
                }
            }
            if t.first().is_some_and(|s| s.is_interleaved()) {
                self.interleaved = Some(target);
            }
            req.headers.set_typed(&t);
        }
        let pending = Pending {
            method: req.method.clone(),
            version: req.version,
            cseq: req.headers.get("CSeq").map(str::to_owned),
            session: lb_session,
            relay,
        };
        let Some((link, connecting)) = self.link(target).await else {
            forget(&svc, target, pending);
            self.reply(&req, StatusCode::SERVICE_UNAVAILABLE).await;
            return Flow::Continue;
        };
        let refused = {
            let mut queue = lock(&link.pending);
            if queue.len() < MAX_PENDING {
                queue.push_back(pending);
                None
            } else {
                Some(pending)
            }
        };
        if let Some(pending) = refused {
            forget(&svc, target, pending);
            self.reply(&req, StatusCode::SERVICE_UNAVAILABLE).await;
            return Flow::Continue;
        }
        let bytes = req.to_bytes();
        if let Some(b) = svc.backend(target) {
            add(&b.stats.bytes_in, bytes.len() as u64);
        }
        if link.tx.send(bytes).await.is_err() {
            // The back end went away between the check and the send; the reader's
            // end answered what was pending, this one included.
            self.links.remove(&target);
        } else {
            // A back-end connection opened for this request waited a network round
            // trip (often the first request of every client connection): not the
            // balancer's work, so not in its time.
            svc.stats
                .request_forward
                .observe(read_at + connecting, Instant::now());
        }
        Flow::Continue
    }

    /// Relay mode: a pair for the request's UDP alternative, whose `client_port`
    /// becomes the pair's back-end side; without a free pair the alternative is
    /// dropped (interleaved ones may remain).
    fn relay_pair(&self, t: &mut Transport) -> Option<(Pair, PortRange)> {
        let relay = self.svc.relay.as_ref()?;
        let spec = transport::udp_spec(t)?;
        let client_ports = spec.client_ports()?;
        match relay.open(self.local.ip(), Instant::now()) {
            Ok(pair) => {
                spec.client_port = PortRange::pair(pair.sides[0].port());
                spec.destination = None;
                spec.dest_addr.clear();
                Some((pair, client_ports))
            }
            Err(e) => {
                tracing::warn!(service = %self.svc.name, "balancer: no UDP pair for a viewer: {e}");
                t.0.retain(|s| s.is_interleaved());
                None
            }
        }
    }

    /// `redirect` mode: OPTIONS is answered here (players ask it before DESCRIBE and
    /// treat a redirect of it as failure); anything else gets 302 to a back end.
    async fn redirect(&self, req: &Request) {
        let svc = &self.svc;
        if req.method == Method::Options {
            let mut resp = Response::reply_to(req, StatusCode::OK);
            resp.headers
                .append("Public", "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN");
            let _ = self.to_client.send(resp.to_bytes()).await;
            return;
        }
        let Some(backend) = svc.pick(self.peer.ip(), Some(&req.uri)) else {
            add(&svc.stats.no_backend, 1);
            self.reply(req, StatusCode::SERVICE_UNAVAILABLE).await;
            return;
        };
        add(&svc.stats.redirects, 1);
        add(&backend.stats.sessions_total, 1);
        let mut resp = Response::reply_to(req, StatusCode::MOVED_TEMPORARILY);
        resp.headers
            .append("Location", redirect_location(&backend, &req.uri));
        let _ = self.to_client.send(resp.to_bytes()).await;
    }

    /// This connection's link to `backend`, connected now if it has none.
    /// The open link to `backend`, connecting it first if needed, and how long that
    /// connect took (zero for a link already open).
    async fn link(&mut self, backend: BackendId) -> Option<(&Link, Duration)> {
        let mut connecting = Duration::ZERO;
        let alive = self
            .links
            .get(&backend)
            .is_some_and(|l| !l.tx.is_closed() && !l.tasks[1].is_finished());
        if !alive {
            self.links.remove(&backend);
            let svc = Arc::clone(&self.svc);
            let b = svc.backend(backend)?;
            let started = Instant::now();
            let stream = connect(&b, svc.proxy_protocol, self.peer, self.local).await?;
            connecting = started.elapsed();
            let (rd, wr) = stream.into_split();
            let (tx, writer) = Outbox::new(wr, QUEUE);
            let pending = Arc::new(Mutex::new(VecDeque::new()));
            let reader = BackendReader {
                svc: Arc::clone(&svc),
                backend,
                to_client: Arc::clone(&self.to_client),
                pending: Arc::clone(&pending),
                asked: Arc::clone(&self.asked),
                facing: self.local.ip(),
                client: self.peer.ip(),
                session_timeout: self.session_timeout,
            };
            let tasks = [tokio::spawn(writer), tokio::spawn(reader.run(rd))];
            self.links.insert(backend, Link { tx, pending, tasks });
        }
        self.links.get(&backend).map(|l| (l, connecting))
    }
}

/// A request that never reached its back end: its SETUP no longer pending, its pair
/// released.
fn forget(svc: &Service, backend: BackendId, pending: Pending) {
    if pending.method == Method::Setup {
        svc.table().setup_done(pending.session.as_deref(), false);
    }
    if let Some((pair, _)) = pending.relay {
        svc.close_pair(backend, pair);
    }
}

/// The chosen back end's own URL for what `uri` asked: its host and port, its path
/// prefix, then the path of `uri`.
fn redirect_location(backend: &Backend, uri: &str) -> String {
    let path = uri
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    match &backend.spec.url {
        Some(url) => {
            let prefix = url.path().trim_end_matches('/');
            format!("rtsp://{}{prefix}{path}", url.authority())
        }
        None => format!("rtsp://{}{path}", backend.spec.authority()),
    }
}

async fn connect(
    b: &Backend,
    proxy: bool,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<TcpStream> {
    add(&b.stats.connections, 1);
    let passive = b.passive();
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(b.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            add(&b.stats.connect_failures, 1);
            if let Some(p) = &passive {
                p.failure();
            }
            tracing::warn!(backend = %b.addr, "balancer: cannot connect to a back end: {e}");
            return None;
        }
        Err(_) => {
            add(&b.stats.connect_failures, 1);
            if let Some(p) = &passive {
                p.failure();
            }
            tracing::warn!(backend = %b.addr, "balancer: connecting to a back end timed out");
            return None;
        }
    };
    if let Some(p) = &passive {
        p.success();
    }
    let _ = stream.set_nodelay(true);
    if proxy {
        let mut header = Vec::with_capacity(64);
        let encoded =
            proxy_v2::Header::proxy(proxy_v2::Transport::Stream, peer, local).encode(&mut header);
        let mut stream = stream;
        if encoded.is_err() || stream.write_all(&header).await.is_err() {
            add(&b.stats.connect_failures, 1);
            return None;
        }
        return Some(stream);
    }
    Some(stream)
}

/// What one back-end connection sends, rewritten for the client.
struct BackendReader {
    svc: Arc<Service>,
    backend: BackendId,
    to_client: Arc<Outbox>,
    pending: Arc<Mutex<VecDeque<Pending>>>,
    asked: Arc<Mutex<HashMap<String, BackendId>>>,
    /// The address the client connected to.
    facing: IpAddr,
    /// The client's address.
    client: IpAddr,
    session_timeout: Duration,
}

impl BackendReader {
    async fn run(self, mut rd: OwnedReadHalf) {
        let mut dec = Decoder::new(Limits::default());
        let mut read_at = Instant::now();
        'read: loop {
            loop {
                match dec.next_item() {
                    Ok(Some(item)) => {
                        if !self.forward(item, read_at).await {
                            break 'read;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // A back end answering garbage counts as failed for health.
                        if let Some(b) = self.svc.backend(self.backend) {
                            if let Some(p) = b.passive() {
                                p.failure();
                            }
                        }
                        tracing::warn!(backend = ?self.svc.backend(self.backend).map(|b| b.addr), "balancer: a back end sent bad RTSP: {e}");
                        break 'read;
                    }
                }
            }
            match read_more(&mut rd, &mut dec).await {
                Ok(n) if n > 0 => read_at = Instant::now(),
                _ => break,
            }
        }
        // Whatever the back end left unanswered gets 502, so no client hangs.
        let left: Vec<Pending> = lock(&self.pending).drain(..).collect();
        for p in left {
            let mut resp = Response::new(p.version, StatusCode::BAD_GATEWAY);
            if let Some(cseq) = &p.cseq {
                resp.headers.append("CSeq", cseq.as_str());
            }
            forget(&self.svc, self.backend, p);
            let _ = self.to_client.send(resp.to_bytes()).await;
        }
    }

    /// Sends one item to the client; false when the client is gone. `read_at` is
    /// when its bytes were read, for `rtsp_response_forward_seconds`.
    async fn forward(&self, item: Item, read_at: Instant) -> bool {
        let response = matches!(item, Item::Response(_));
        // Looked up once per item: an interleaved frame is one media packet, and it
        // counts both a packet and its bytes.
        let backend = self.svc.backend(self.backend);
        let bytes = match item {
            Item::Frame(frame) => {
                if let Some(b) = &backend {
                    add(&b.stats.packets, 1);
                }
                frame.to_bytes()
            }
            Item::Response(mut resp) => {
                let pending = lock(&self.pending).pop_front();
                self.rewrite_response(&mut resp, pending);
                resp.to_bytes()
            }
            Item::Request(mut req) => {
                if let Some(Ok(mut s)) = req.headers.typed::<Session>() {
                    if let Some(id) = self.svc.table().client_id(self.backend, &s.id) {
                        s.id = id.to_owned();
                        req.headers.set_typed(&s);
                    }
                }
                if let Some(cseq) = req.headers.get("CSeq") {
                    let mut asked = lock(&self.asked);
                    if asked.len() < MAX_ASKED {
                        asked.insert(cseq.to_owned(), self.backend);
                    }
                }
                req.to_bytes()
            }
        };
        if let Some(b) = backend {
            add(&b.stats.bytes_out, bytes.len() as u64);
        }
        if self.to_client.send(bytes).await.is_err() {
            return false;
        }
        if response {
            self.svc
                .stats
                .response_forward
                .observe(read_at, Instant::now());
        }
        true
    }

    fn rewrite_response(&self, resp: &mut Response, pending: Option<Pending>) {
        let now = Instant::now();
        let method = pending.as_ref().map(|p| p.method.clone());
        let requested = pending.as_ref().and_then(|p| p.session.clone());
        let mut relay = pending.and_then(|p| p.relay);
        let ok = resp.status.is_success();
        let svc = &self.svc;
        if method == Some(Method::Setup) {
            svc.table().setup_done(requested.as_deref(), ok);
        }
        if let Some(Ok(mut s)) = resp.headers.typed::<Session>() {
            let timeout = s.timeout.map_or(self.session_timeout, Duration::from_secs);
            let known = svc
                .table()
                .client_id(self.backend, &s.id)
                .map(str::to_owned);
            let lb_id = match known {
                Some(id) => Some(id),
                None if ok => {
                    let id = svc.table().bind(self.backend, &s.id, timeout, now, mint);
                    if let Some(id) = &id {
                        if let Some(b) = svc.backend(self.backend) {
                            add(&b.stats.sessions_total, 1);
                            // Both IDs, so an operator can follow a session through.
                            tracing::debug!(service = %svc.name, session = %id, backend = %b.addr, backend_session = %s.id, "balancer: session set up");
                        }
                    }
                    id
                }
                None => None,
            };
            match lb_id {
                Some(id) => {
                    if ok && method == Some(Method::Setup) {
                        if let Some((pair, client_ports)) = relay.take() {
                            if let Some(expected) = self.relay_media(resp, pair, client_ports) {
                                svc.attach_pair(
                                    &id,
                                    RelayedPair {
                                        backend: self.backend,
                                        pair,
                                        expected,
                                    },
                                );
                            } else {
                                svc.close_pair(self.backend, pair);
                            }
                        }
                    }
                    s.id = id;
                    resp.headers.set_typed(&s);
                }
                None => {
                    // A session the balancer cannot route must not reach the client.
                    resp.headers.remove("Session");
                    if ok {
                        resp.set_status(StatusCode::NOT_ENOUGH_BANDWIDTH);
                    }
                }
            }
        }
        if let Some((pair, _)) = relay {
            // The SETUP failed or made no session the balancer could keep.
            svc.close_pair(self.backend, pair);
        }
        if method == Some(Method::Teardown) && (ok || resp.status == StatusCode::SESSION_NOT_FOUND)
        {
            if let Some(id) = &requested {
                svc.end_session(id);
            }
        }
        if method == Some(Method::Setup) && ok {
            if let Some(Ok(mut t)) = resp.headers.typed::<Transport>() {
                if let Some(b) = svc.backend(self.backend) {
                    transport::rewrite_response(&mut t, svc.mode, b.addr.ip(), self.facing);
                    resp.headers.set_typed(&t);
                }
            }
        }
    }
}

impl BackendReader {
    /// Relay mode, a successful UDP SETUP: starts `pair` between the back end's chosen
    /// ports and the client's, and rewrites the answer to name the balancer; returns
    /// who the pair expects on each side. `None` when the answer chose no UDP
    /// transport (the pair is then not needed).
    fn relay_media(
        &self,
        resp: &mut Response,
        pair: Pair,
        client_ports: PortRange,
    ) -> Option<[Expected; 2]> {
        let (Some(relay), Some(Ok(mut t))) = (&self.svc.relay, resp.headers.typed::<Transport>())
        else {
            return None;
        };
        let chosen =
            transport::relay_response(&mut t, client_ports, self.facing, pair.sides[1].port())?;
        let backend = self.svc.backend(self.backend)?;
        // The back end's own `source=` says where its media comes from, if not from
        // the address the balancer connected to.
        let backend_ip = chosen
            .source
            .as_deref()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .unwrap_or_else(|| backend.addr.ip());
        let expected = [
            Expected {
                endpoint: Some(SocketAddr::new(backend_ip, chosen.server_port)),
                ip: Some(backend_ip),
            },
            Expected {
                endpoint: Some(SocketAddr::new(self.client, client_ports.start)),
                ip: Some(self.client),
            },
        ];
        relay.start_pair(pair, expected, Instant::now());
        resp.headers.set_typed(&t);
        Some(expected)
    }
}

/// One half of an HTTP tunnel: relayed byte for byte to the back end its cookie
/// belongs to.
async fn tunnel(
    mut client: TcpStream,
    req: Request,
    rest: BytesMut,
    peer: SocketAddr,
    local: SocketAddr,
    svc: &Service,
) {
    add(&svc.stats.tunnels, 1);
    let Ok(Some(half)) = tunnel::classify(&req) else {
        return;
    };
    let Some(backend) = svc.tunnel_backend(&half.cookie, peer.ip(), Instant::now()) else {
        add(&svc.stats.no_backend, 1);
        let _ = client
            .write_all(&closing(req.version, StatusCode::SERVICE_UNAVAILABLE))
            .await;
        return;
    };
    let Some(mut upstream) = connect(&backend, svc.proxy_protocol, peer, local).await else {
        let _ = client
            .write_all(&closing(req.version, StatusCode::SERVICE_UNAVAILABLE))
            .await;
        return;
    };
    if half.channel == tunnel::TunnelChannel::Get {
        add(&backend.stats.sessions_total, 1);
    }
    let mut head = Vec::with_capacity(512);
    req.write_head(&mut head);
    head.extend_from_slice(&rest);
    if upstream.write_all(&head).await.is_err() {
        return;
    }
    add(&backend.stats.bytes_in, head.len() as u64);
    if let Ok((to_backend, to_client)) =
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await
    {
        add(&backend.stats.bytes_in, to_backend);
        add(&backend.stats.bytes_out, to_client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendId;

    fn backend(spec: &str) -> Backend {
        Backend::new(
            BackendId(0),
            spec.parse().unwrap(),
            "10.0.0.1:8554".parse().unwrap(),
            None,
        )
    }

    #[test]
    fn a_redirect_keeps_the_path_under_the_back_end_s_url() {
        assert_eq!(
            redirect_location(&backend("rtsp://10.0.0.1:8554"), "rtsp://vip/live/cam1"),
            "rtsp://10.0.0.1:8554/live/cam1"
        );
        assert_eq!(
            redirect_location(
                &backend("rtsp://10.0.0.1:8554/base/"),
                "rtsp://vip:554/a?b=1"
            ),
            "rtsp://10.0.0.1:8554/base/a?b=1"
        );
        assert_eq!(
            redirect_location(&backend("10.0.0.1:554"), "rtsp://vip"),
            "rtsp://10.0.0.1:554/"
        );
    }

    #[test]
    fn minted_ids_are_sixteen_hex_digits_and_differ() {
        let (a, b) = (mint(), mint());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
