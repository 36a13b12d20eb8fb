//! Accepting viewers: listeners, the client ACL, transparent-mode original
//! destinations, and RTSP-over-HTTP tunnels (the QuickTime GET/POST pair joined by
//! `x-sessioncookie`; see `mediagate_rtsp::tunnel`), accepted on every edge listener
//! and on the dedicated tunnel listeners. It keeps the streams of `always_on` routes
//! open from the moment it listens (and as reloads change the routes). And the way
//! out: [`Edge::drain`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use mediagate_config::EdgeConfig;
use mediagate_rtsp::parse::{parse_head, Decoder, Head, Limits, Parsed};
use mediagate_rtsp::tunnel::{self, PostBodyDecoder, TunnelChannel};
use mediagate_rtsp::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::conn_out::ConnOut;
use crate::hub_registry::{hub_key, Hubs, WarmLease};
use crate::limits::{Cut, RequestClock};
use crate::ports::PortAllocator;
use crate::settings::{hub_settings, Current, ViewerSettings};
use crate::tracker::{until_true, Tracker};
use crate::viewer::{forbidden_bytes, EndedListener, ViewerConn, ViewerContext};
use crate::viewers::{ViewerInfo, ViewerRegistry};

/// A running edge: its shared state, for tests and the admin API.
#[derive(Clone)]
pub struct Edge {
    ctx: Arc<ViewerContext>,
    transparent: bool,
    tunnels: Arc<Mutex<HashMap<String, PendingTunnel>>>,
    accept_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    drain: Arc<watch::Sender<bool>>,
    /// Where this edge listens (configured, then as bound): an upstream hop there is
    /// a loop.
    listeners: Arc<Mutex<Vec<SocketAddr>>>,
    /// Cache fills started by the admin API, with no viewer.
    prefetches: Arc<crate::prefetch::Prefetches>,
    /// The hubs of `always_on` routes, by hub key, held open with no viewer.
    always_on: Arc<Mutex<HashMap<String, WarmLease>>>,
}

/// How a [`Edge::drain`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Viewer sessions open when the drain began.
    pub sessions: usize,
    /// Every connection closed and every origin session ended before the deadline.
    pub complete: bool,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").finish_non_exhaustive()
    }
}

/// The listening address a request for `url` would arrive on: the listener on the
/// URL's port (with the URL's address when the listener is a wildcard), else the
/// first listener.
fn local_for(url: &str, listeners: &[SocketAddr]) -> SocketAddr {
    let parsed: Option<mediagate_config::RtspUrl> = url.parse().ok();
    let fallback = listeners
        .first()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 554)));
    let Some(u) = parsed else {
        return fallback;
    };
    let port = u.port_or_default();
    let ip = match u.host() {
        mediagate_config::Host::Ip(ip) => Some(*ip),
        _ => None,
    };
    listeners
        .iter()
        .find(|l| l.port() == port && (ip == Some(l.ip()) || l.ip().is_unspecified()))
        .map(|l| SocketAddr::new(ip.unwrap_or(l.ip()), port))
        .unwrap_or(fallback)
}

/// A tunnel GET waiting for its POST.
struct PendingTunnel {
    out: ConnOut,
    peer: SocketAddr,
    local: SocketAddr,
}

/// Said to a connection over a cap before it is closed (best effort, never waited on).
const BUSY: &[u8] =
    b"RTSP/1.0 503 Service Unavailable (too many connections)\r\nConnection: close\r\n\r\n";

impl Edge {
    /// Builds the edge from its config section. `name` identifies this node in `Via`.
    pub fn new(cfg: &EdgeConfig, name: &str) -> Self {
        Self::build(cfg, name, None)
    }

    /// As [`Edge::new`], with `listener` called once for every viewer session that
    /// ends (accounting and access logs attach here). It runs on the connection's task:
    /// keep it short (send the record on a channel).
    pub fn with_listener(cfg: &EdgeConfig, name: &str, listener: EndedListener) -> Self {
        Self::build(cfg, name, Some(listener))
    }

    fn build(cfg: &EdgeConfig, name: &str, on_ended: Option<EndedListener>) -> Self {
        let server = format!("mediagate/{}", env!("CARGO_PKG_VERSION"));
        let via_token = crate::ids::random_hex(6);
        let via = crate::reach::via_entry(name, &via_token);
        let range = cfg.udp_ports.get().range();
        let udp_ip = cfg
            .listen
            .get()
            .first()
            .map_or([0, 0, 0, 0].into(), |a| a.0.ip());
        let ports = Arc::new(PortAllocator::new(udp_ip, range.low(), range.high()));
        let (drain_tx, drain_rx) = watch::channel(false);
        let listeners: Vec<SocketAddr> = cfg
            .listen
            .get()
            .iter()
            .chain(&cfg.http_tunnel_listen)
            .map(|a| a.0)
            .collect();
        let ctx = ViewerContext {
            settings: Current::new(ViewerSettings::from_config(cfg, &via, &listeners, None)),
            hubs: Hubs::new(hub_settings(cfg), ports),
            server,
            via,
            via_token,
            sessions: Default::default(),
            on_ended,
            drain: drain_rx,
            tasks: Tracker::default(),
            viewers: ViewerRegistry::default(),
            denied: Default::default(),
            cache: std::sync::OnceLock::new(),
            parked: Default::default(),
        };
        Self {
            ctx: Arc::new(ctx),
            transparent: *cfg.transparent.get(),
            tunnels: Arc::default(),
            accept_tasks: Arc::default(),
            drain: Arc::new(drain_tx),
            listeners: Arc::new(Mutex::new(listeners)),
            prefetches: Arc::default(),
            always_on: Arc::default(),
        }
    }

    /// Holds open the stream of every `always_on` route the routes name now, and lets
    /// go of those they no longer name (they linger and retire like any stream
    /// without viewers). Not during a drain.
    fn refresh_always_on(&self) {
        if *self.drain.borrow() {
            return;
        }
        let wanted: HashMap<String, crate::upstream::UpstreamTarget> = self
            .ctx
            .settings
            .load()
            .router
            .always_on_targets()
            .into_iter()
            .map(|t| (hub_key(&t), t))
            .collect();
        let mut held = self.always_on.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|key, _| wanted.contains_key(key));
        for (key, target) in wanted {
            held.entry(key).or_insert_with(|| {
                tracing::info!(origin = %target.url, rule = target.rule.as_deref().unwrap_or(""), "always-on: keeping the origin session open with no viewer");
                self.ctx.hubs.keep_warm(&target)
            });
        }
    }

    /// Streams held open for `always_on` routes now.
    pub fn always_on_streams(&self) -> usize {
        self.always_on
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Serves on-demand content through `store` from now on (fill on a miss, play
    /// hits). Once per edge: false when a cache was attached already.
    pub fn attach_cache(&self, store: Arc<crate::cache_store::CacheStore>) -> bool {
        self.ctx.hubs.edge_stats().cache.attach(&store);
        self.ctx.cache.set(store).is_ok()
    }

    /// Takes `cfg`'s routes, origins and credentials, forward and client rules,
    /// limits, timeouts, linger and back-off for what starts from now on: requests,
    /// connections and live streams. Running viewers, their sessions and their
    /// streams' origin sessions go on as they are. Listeners, the UDP port range and
    /// transparent mode stay as bound at start (the edge's role keeps those values in
    /// `cfg` and says they need a restart).
    pub fn reload(&self, cfg: &EdgeConfig) {
        let previous = self.ctx.settings.load();
        self.ctx.settings.store(ViewerSettings::from_config(
            cfg,
            &self.ctx.via,
            &self.listeners.lock().unwrap_or_else(|p| p.into_inner()),
            Some(&previous),
        ));
        self.ctx.hubs.set_settings(hub_settings(cfg));
        self.refresh_always_on();
    }

    /// The on-demand cache, when the edge has one.
    pub fn cache(&self) -> Option<Arc<crate::cache_store::CacheStore>> {
        self.ctx.cache.get().cloned()
    }

    /// Resolves `url` as a viewer's request for it would be, on the listener its host
    /// and port name (else the first one): routes, then transparent and forward
    /// rules. The admin API names objects by the URL viewers use this way.
    pub(crate) fn resolve_as_viewer(
        &self,
        url: &str,
    ) -> Result<crate::upstream::UpstreamTarget, crate::routing::RouteError> {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let local = local_for(url, &listeners);
        self.ctx.settings.load().router.resolve(url, local, None)
    }

    /// The edge's prefetches (admin API).
    pub(crate) fn prefetches(&self) -> &Arc<crate::prefetch::Prefetches> {
        &self.prefetches
    }

    /// A guard drain waits for, and the drain signal, for work started by the admin API.
    pub(crate) fn task_guard(&self) -> (crate::tracker::TaskGuard, watch::Receiver<bool>) {
        (self.ctx.tasks.guard(), self.ctx.drain.clone())
    }

    /// Counts an on-demand request that was revalidated (`Refresh`) or served without
    /// the cache (`Pass`) in `mediagate_edge_cache_results_total{result}`; hits and
    /// misses come from the [`CacheStore`](crate::cache_store::CacheStore)'s own counts.
    pub fn count_cache_result(&self, result: crate::CacheResult) {
        self.ctx.hubs.edge_stats().cache.count_result(result);
    }

    /// Viewer sessions open now.
    pub fn viewer_sessions(&self) -> usize {
        self.ctx.sessions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Live streams running now (each with one origin session).
    pub fn live_streams(&self) -> usize {
        self.ctx.hubs.len()
    }

    /// Publishes the edge's metrics into `metrics` as `mediagate_edge_...`, read when
    /// scraped (see the `metrics` module for names and label bounds).
    pub fn publish_metrics(&self, metrics: &mediagate_ops::metrics::Metrics) {
        let collector = crate::metrics::EdgeCollector::new(self.ctx.hubs.downgrade());
        metrics.register("edge", |r| r.collect(collector));
    }

    /// Counters of every live stream (one entry per running hub).
    pub async fn stream_stats(&self) -> Vec<crate::hub_registry::HubStats> {
        self.ctx.hubs.stats().await
    }

    /// Every running viewer session with its counters so far, oldest first.
    pub async fn viewers(&self) -> Vec<ViewerInfo> {
        let live = self.ctx.hubs.viewer_counts().await;
        self.ctx.viewers.picture(&live, std::time::Instant::now())
    }

    /// Disconnects the viewer of session `id`: its connection closes and its sessions
    /// end with reason `admin` (each reported to the listener). Waits up to `wait` for
    /// the session to be gone; false when no such session runs.
    pub async fn disconnect_viewer(&self, id: &str, wait: Duration) -> bool {
        if !self.ctx.viewers.disconnect(id) {
            return false;
        }
        let until = tokio::time::Instant::now() + wait;
        while self.ctx.viewers.contains(id) && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Graceful shutdown (SIGTERM): stops accepting connections; ends every viewer
    /// session (each reported to the listener with reason `drain`), flushing what is
    /// queued for the viewer before its connection closes, which also stops UDP
    /// sending; tears down on-demand and live origin sessions; then returns, at the
    /// latest once `deadline` has passed (whatever is still running is left to the
    /// runtime's shutdown).
    pub async fn drain(&self, deadline: Duration) -> DrainReport {
        let until = tokio::time::Instant::now() + deadline;
        let sessions = self.viewer_sessions();
        tracing::info!(sessions, streams = self.live_streams(), "edge draining");
        for task in self.accept_tasks().drain(..) {
            task.abort();
        }
        // Let go of always-on streams before the hubs are told to shut down, so none
        // is revived by its restart clock meanwhile.
        self.always_on
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.ctx.hubs.begin_shutdown();
        let _ = self.drain.send(true);
        let viewers_done = self.ctx.tasks.wait_idle(until).await;
        let origins_done = self.ctx.hubs.wait_retired(until).await;
        let complete = viewers_done && origins_done;
        if complete {
            tracing::info!(sessions, "edge drained");
        } else {
            tracing::warn!(
                tasks = self.ctx.tasks.running(),
                streams = self.live_streams(),
                "edge drain deadline passed with work still running"
            );
        }
        DrainReport { sessions, complete }
    }

    fn accept_tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.accept_tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Binds every listener of `cfg` and serves until the returned task is aborted.
    /// Returns the bound addresses (useful with port 0).
    pub async fn bind(&self, addrs: &[SocketAddr]) -> std::io::Result<Vec<SocketAddr>> {
        // Every viewer costs a descriptor (two for a tunnel); many systems still start
        // processes with a soft limit of 1,024. Failure leaves the limit as it was.
        let _ = mediagate_udp::raise_nofile_limit();
        let mut bound = Vec::new();
        for addr in addrs {
            let listener = TcpListener::bind(addr).await?;
            bound.push(listener.local_addr()?);
            self.note_listener(listener.local_addr()?);
            let edge = self.clone();
            let task = tokio::spawn(async move { edge.accept_loop(listener).await });
            self.accept_tasks().push(task);
        }
        self.refresh_always_on();
        Ok(bound)
    }

    /// Adds a bound socket to the ones upstream hops must never reach.
    fn note_listener(&self, addr: SocketAddr) {
        let all = {
            let mut l = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            if !l.contains(&addr) {
                l.push(addr);
            }
            l.clone()
        };
        let mut s = (*self.ctx.settings.load()).clone();
        s.router = s.router.with_listeners(&all);
        self.ctx.settings.store(s);
    }

    async fn accept_loop(self, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    // Out of descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let edge = self.clone();
            let guard = self.ctx.tasks.guard();
            // Every line about this connection, down to logins and LDAP, carries the
            // viewer's address; the session id and URL are added once a SETUP opens
            // one. The task only wakes for requests and timers (media goes through
            // its writer task), so entering the span is off the per-packet path.
            let span = tracing::info_span!(
                "viewer",
                viewer = %peer,
                session = tracing::field::Empty,
                url = tracing::field::Empty,
            );
            tokio::spawn(
                async move {
                    edge.serve(stream, peer).await;
                    drop(guard);
                }
                .instrument(span),
            );
        }
    }

    async fn serve(self, mut stream: TcpStream, peer: SocketAddr) {
        if !self.ctx.settings.load().acl.admits(peer.ip()) {
            tracing::info!(viewer = %peer, "refused by the client ACL");
            let _ = stream.write_all(&forbidden_bytes()).await;
            return;
        }
        let settings = self.ctx.settings.load();
        let stats = self.ctx.hubs.edge_stats().clone();
        // Held for the life of the connection (a tunnel's GET and POST hold one each).
        // Trusted clients (child edges: one address, a connection per viewer) are
        // exempt from the per-client cap only; the total cap still holds.
        let per_client = if settings
            .trusted_clients
            .iter()
            .any(|c| c.contains(peer.ip()))
        {
            usize::MAX
        } else {
            settings.max_connections_per_client
        };
        let _ticket = match stats
            .connections
            .admit(peer.ip(), settings.max_connections, per_client)
        {
            Ok(t) => t,
            Err(why) => {
                tracing::debug!(viewer = %peer, limit = why.as_str(), "connection refused by a cap");
                stats.connection_refused(why);
                let _ = stream.try_write(BUSY);
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let original_dst = if self.transparent {
            original_destination(&stream)
        } else {
            None
        };
        let (mut rd, wr) = stream.into_split();
        let mut decoder = Decoder::default();
        // Peek at the first message head: an HTTP GET/POST with a session cookie is a
        // tunnel, anything else is plain RTSP (the decoder keeps the bytes either way).
        let mut drain = self.ctx.drain.clone();
        // The first head is bounded like every later request (limits::RequestClock):
        // a client that connects and sends nothing, or trickles, is not a viewer.
        let mut clock = RequestClock::new(settings.conn_limits, std::time::Instant::now());
        let first = async {
            loop {
                match parse_head(decoder.buffer_mut(), &Limits::default()) {
                    Ok(Parsed::Complete { item, consumed }) => return Ok(Some((item, consumed))),
                    Ok(Parsed::Incomplete) => {}
                    Err(_) => return Ok(None), // the RTSP path reports the error
                }
                clock.on_buffered(decoder.buffered_len() > 0, std::time::Instant::now());
                let deadline = clock
                    .deadline(false)
                    .map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std);
                let buf = decoder.buffer_mut();
                buf.reserve(4096);
                tokio::select! {
                    r = rd.read_buf(buf) => match r {
                        Ok(0) | Err(_) => return Ok(None),
                        Ok(_) => {}
                    },
                    _ = until_true(&mut drain) => return Ok(None),
                    _ = tokio::time::sleep_until(deadline) => {
                        if let Some(cut) = clock.check(false, std::time::Instant::now()) {
                            return Err(cut);
                        }
                    }
                }
            }
        }
        .await;
        let (tunnel_req, head_len) = match first {
            Err(cut) => {
                tracing::debug!(viewer = %peer, limit = cut.as_str(), "connection closed before its first request");
                stats.connection_cut(cut);
                return;
            }
            Ok(Some((Head::Request(req), n)))
                if matches!(req.method, Method::Get | Method::Post) =>
            {
                (tunnel::classify(&req).ok().flatten(), n)
            }
            Ok(_) => (None, 0),
        };
        if *self.ctx.drain.borrow() {
            return;
        }
        let out = ConnOut::new(self.ctx.settings.load().backlog);
        match tunnel_req {
            None => {
                self.spawn_writer(&out, wr);
                let mut conn = ViewerConn::new(
                    self.ctx.clone(),
                    out.clone(),
                    peer,
                    local,
                    original_dst,
                    false,
                );
                if let Some((announce, rd, decoder)) = conn.run(rd, decoder).await {
                    drop(conn);
                    crate::publish::serve(
                        self.ctx.clone(),
                        out,
                        peer,
                        local,
                        announce,
                        rd,
                        decoder,
                    )
                    .await;
                }
            }
            Some(t) if t.channel == TunnelChannel::Get => {
                out.push_control(tunnel::get_response().to_bytes());
                self.spawn_writer(&out, wr);
                self.tunnels().insert(
                    t.cookie.clone(),
                    PendingTunnel {
                        out: out.clone(),
                        peer,
                        local,
                    },
                );
                self.watch_tunnel_get(&mut rd, &out, &t.cookie).await;
                self.tunnels().remove(&t.cookie);
                out.close();
            }
            Some(t) => {
                drop(wr); // the server never answers on the POST
                let Some(get) = self.tunnels().remove(&t.cookie) else {
                    return;
                };
                if get.peer.ip() != peer.ip() {
                    tracing::info!(viewer = %peer, get_from = %get.peer, "tunnel POST from another address than its GET; refused");
                    // Both halves must come from the same client.
                    get.out.close();
                    return;
                }
                // The rest after the POST head is base64 of RTSP requests.
                let mut body = decoder.take_buffered();
                let _head = body.split_to(head_len);
                let reader = Base64Reader::new(rd, body);
                let mut conn =
                    ViewerConn::new(self.ctx.clone(), get.out, peer, get.local, None, true);
                // Never hands over a publisher: publishing through a tunnel is refused.
                let _ = conn.run(reader, Decoder::default()).await;
            }
        }
    }

    /// The writer of a connection; drain waits for it to flush what is queued.
    fn spawn_writer(&self, out: &ConnOut, wr: tokio::net::tcp::OwnedWriteHalf) {
        let writer_out = out.clone();
        let guard = self.ctx.tasks.guard();
        tokio::spawn(async move {
            let _ = writer_out.run_writer(wr).await;
            drop(guard);
        });
    }

    fn tunnels(&self) -> std::sync::MutexGuard<'_, HashMap<String, PendingTunnel>> {
        self.tunnels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a tunnel's GET side until the client closes it, the session ends, or no
    /// POST arrived in time. The client sends nothing on the GET after its head.
    async fn watch_tunnel_get(&self, rd: &mut OwnedReadHalf, out: &ConnOut, cookie: &str) {
        // A GET whose POST never comes is a connection without a session.
        let pairing_deadline =
            tokio::time::Instant::now() + self.ctx.settings.load().conn_limits.idle_timeout;
        let mut pairing_checked = false;
        let mut sink = [0u8; 512];
        let mut drain = self.ctx.drain.clone();
        loop {
            tokio::select! {
                r = rd.read(&mut sink) => if matches!(r, Ok(0) | Err(_)) { return },
                _ = out.closed() => return,
                _ = until_true(&mut drain) => return,
                _ = tokio::time::sleep_until(pairing_deadline), if !pairing_checked => {
                    if self.tunnels().contains_key(cookie) {
                        self.ctx.hubs.edge_stats().connection_cut(Cut::Idle);
                        return; // no POST came
                    }
                    pairing_checked = true;
                }
            }
        }
    }
}

/// Decodes a tunnel POST body (base64 of RTSP requests) as it is read.
struct Base64Reader<R> {
    inner: R,
    pending: BytesMut,
    decoder: PostBodyDecoder,
    decoded: BytesMut,
    failed: bool,
}

impl<R> Base64Reader<R> {
    fn new(inner: R, already_read: BytesMut) -> Self {
        Self {
            inner,
            pending: already_read,
            decoder: PostBodyDecoder::new(),
            decoded: BytesMut::new(),
            failed: false,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Base64Reader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.decoded.is_empty() {
                let n = this.decoded.len().min(buf.remaining());
                buf.put_slice(&this.decoded.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.failed {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "invalid base64 in the tunnel POST body",
                )));
            }
            if !this.pending.is_empty() {
                let input = this.pending.split();
                if this.decoder.decode(&input, &mut this.decoded).is_err() {
                    this.failed = true;
                }
                continue;
            }
            let mut raw = [0u8; 4096];
            let mut rb = ReadBuf::new(&mut raw);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => this.pending.extend_from_slice(rb.filled()),
                other => return other,
            }
        }
    }
}

/// The destination a connection had before an iptables `REDIRECT`
/// (`SO_ORIGINAL_DST`, IPv4); `None` when there was no redirect or it cannot be read.
fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    socket2::SockRef::from(stream)
        .original_dst_v4()
        .ok()?
        .as_socket_ipv4()
        .map(SocketAddr::V4)
}
