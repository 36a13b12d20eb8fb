//! On-demand content (a finite `a=range`), passed through with one origin session per
//! viewer: the viewer's SETUP, PLAY (with its Range, Scale and Speed, so seeking
//! works), PAUSE and TEARDOWN are forwarded, and the origin's frames go to that viewer
//! only. Nothing is dropped: a TCP viewer that reads slowly slows its own origin
//! session (TCP back-pressure), never anyone else.
//!
//! It is the miss path of the cache (issue 13): the source opens this session only at
//! the viewer's PLAY, when the cache does not hold the requested start, and the
//! session then records what it forwards (`cache_fill`, a run per origin PLAY). It is
//! also how a stream whose origin wants the viewer's own credentials is served
//! (`passthrough`, never recorded): then each viewer request's `Authorization` goes
//! with the request it came with, and nowhere else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mediagate_rtsp::{Headers, Method, Response};
use tokio::sync::{mpsc, oneshot};

use crate::cache_fill::{FillPlan, FillRun};
use crate::conn_out::{AnswerQueued, ConnOut};
use crate::ports::{PortAllocator, SocketPair};
use crate::rtsp_client::{ClientError, RtspClient};
use crate::seam::OriginSeam;
use crate::sink::{Tally, TrackDest};
use crate::tracker::TaskGuard;
use crate::upstream::{self, Described, UpstreamTarget};
use crate::upstream_supervisor::keepalive_interval;

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// A viewer's `Authorization` for the one origin request its own request becomes.
type ViewerAuth = Option<String>;

enum Cmd {
    /// SETUP one track; replies with the server ports when the viewer uses UDP (the
    /// given pair's, or a pair bound for it).
    Setup(
        usize,
        TrackDest,
        ViewerAuth,
        Option<Arc<SocketPair>>,
        Reply<Option<(u16, u16)>>,
    ),
    /// A PLAY; with a receiver when the viewer's session queues an answer to it (a
    /// continuation after a held range has none): media waits until that answer is
    /// queued.
    Play(Headers, Option<oneshot::Receiver<()>>, Reply<Response>),
    Pause(ViewerAuth, Reply<Response>),
    /// PAUSE when playing; nothing when paused already (origins refuse a PAUSE then).
    Hold(ViewerAuth, Reply<()>),
    /// Record the runs of later PLAYs into this object.
    Record(Box<FillPlan>),
    /// Number what is sent to the viewer as one stream with the cache player's.
    Seam(Box<OriginSeam>),
    /// Hand the numbering back (the cache player goes on with it).
    TakeSeam(oneshot::Sender<Option<OriginSeam>>),
}

/// Handle to one viewer's on-demand upstream session; dropping it tears it down.
#[derive(Debug)]
pub struct VodSession {
    tx: mpsc::Sender<Cmd>,
    described: Arc<Described>,
    /// Some run of this session was recorded into the cache (a MISS).
    filled: Arc<AtomicBool>,
}

impl VodSession {
    /// Connects to the origin and DESCRIBEs (the viewer's DESCRIBE was answered from
    /// the hub; this session needs its own). What it forwards is recorded once a fill
    /// is handed to it ([`VodSession::record_into`]).
    pub async fn open(target: &UpstreamTarget, io: VodIo) -> Result<Self, ClientError> {
        let (client, described) = upstream::describe(target).await?;
        Ok(Self::start(
            client,
            Arc::new(described),
            target.url.to_string(),
            io,
            false,
        ))
    }

    /// Runs the session on a client that has DESCRIBEd already. `pass_auth`: the
    /// viewer's `Authorization` of each SETUP, PLAY and PAUSE goes to the origin with
    /// that request (pass-through); otherwise it never does.
    pub fn start(
        client: RtspClient,
        described: Arc<Described>,
        url: String,
        io: VodIo,
        pass_auth: bool,
    ) -> Self {
        let VodIo {
            conn,
            ports,
            tally,
            guard,
        } = io;
        let filled = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(8);
        let task = VodTask {
            client,
            described: described.clone(),
            conn,
            ports,
            dests: HashMap::new(),
            sockets: HashMap::new(),
            channels: HashMap::new(),
            playing: false,
            answer_wait: None,
            url,
            tally,
            pass_auth,
            fill: None,
            run: None,
            seam: None,
            filled: filled.clone(),
            rtcp_buf: vec![0u8; 2048],
            last_rtp_at: None,
            next_sr: None,
        };
        tokio::spawn(async move {
            task.run(rx).await;
            // Drain waits until the origin session is torn down.
            drop(guard);
        });
        Self {
            tx,
            described,
            filled,
        }
    }

    /// True once a run of this session was recorded into the cache.
    pub fn filled(&self) -> bool {
        self.filled.load(Ordering::Relaxed)
    }

    pub fn described(&self) -> &Arc<Described> {
        &self.described
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    pub async fn setup(
        &self,
        track: usize,
        dest: TrackDest,
        authorization: ViewerAuth,
    ) -> Result<Option<(u16, u16)>, ClientError> {
        self.ask(|r| Cmd::Setup(track, dest, authorization, None, r))
            .await
    }

    /// SETUP of a track whose viewer already has this edge's UDP `pair` (the source
    /// answered its SETUP before the origin session existed).
    pub async fn setup_with(
        &self,
        track: usize,
        dest: TrackDest,
        pair: Option<Arc<SocketPair>>,
    ) -> Result<Option<(u16, u16)>, ClientError> {
        self.ask(|r| Cmd::Setup(track, dest, None, pair, r)).await
    }

    /// SETUP of a track with the viewer's own `authorization` (pass-through) and this
    /// edge's UDP `pair` chosen already (a hit of the cache would use the same).
    pub async fn setup_full(
        &self,
        track: usize,
        dest: TrackDest,
        authorization: ViewerAuth,
        pair: Option<Arc<SocketPair>>,
    ) -> Result<Option<(u16, u16)>, ClientError> {
        self.ask(|r| Cmd::Setup(track, dest, authorization, pair, r))
            .await
    }

    /// From the next PLAY on, what is forwarded is recorded into `plan`'s object (the
    /// plan is known only once the session's own DESCRIBE and the viewer's SETUPs are).
    pub async fn record_into(&self, plan: FillPlan) {
        // A session whose task ended has nothing left to record.
        let _ = self.tx.send(Cmd::Record(Box::new(plan))).await;
    }

    /// From the next PLAY on, the viewer's packets are numbered by `seam` (see
    /// `seam`): one stream with what the cache player sent it.
    pub async fn set_seam(&self, seam: OriginSeam) {
        let _ = self.tx.send(Cmd::Seam(Box::new(seam))).await;
    }

    /// Takes the seam back, once the session is paused; None when it has none.
    pub async fn take_seam(&self) -> Option<OriginSeam> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::TakeSeam(tx)).await.ok()?;
        rx.await.ok().flatten()
    }

    /// The viewer's PLAY; media waits until the viewer's session says (with the
    /// returned [`AnswerQueued`]) that the answer is queued.
    pub async fn play(
        &self,
        viewer_headers: Headers,
    ) -> Result<(Response, AnswerQueued), ClientError> {
        let (answered, wait) = AnswerQueued::gate();
        let r = self
            .ask(|r| Cmd::Play(viewer_headers, Some(wait), r))
            .await?;
        Ok((r, answered))
    }

    /// A PLAY the viewer did not ask for and gets no answer to: the origin goes on
    /// where a held range ended.
    pub async fn continue_play(&self, headers: Headers) -> Result<Response, ClientError> {
        self.ask(|r| Cmd::Play(headers, None, r)).await
    }

    pub async fn pause(&self, authorization: ViewerAuth) -> Result<Response, ClientError> {
        self.ask(|r| Cmd::Pause(authorization, r)).await
    }

    /// Stops the origin's media if it is playing (the cache serves the viewer now).
    pub async fn hold(&self, authorization: ViewerAuth) -> Result<(), ClientError> {
        self.ask(|r| Cmd::Hold(authorization, r)).await
    }
}

/// Where a session's media goes and what it is counted in.
pub struct VodIo {
    pub conn: ConnOut,
    pub ports: Arc<PortAllocator>,
    pub tally: Arc<Tally>,
    pub guard: TaskGuard,
}

/// The longest the first packets after a PLAY wait for the viewer's answer to it.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

struct VodTask {
    /// Set by a PLAY the viewer gets an answer to: forwarding waits until that answer
    /// is queued (bounded by [`ANSWER_WAIT`]).
    answer_wait: Option<oneshot::Receiver<()>>,
    client: RtspClient,
    described: Arc<Described>,
    conn: ConnOut,
    ports: Arc<PortAllocator>,
    dests: HashMap<usize, TrackDest>,
    sockets: HashMap<usize, Arc<SocketPair>>,
    /// Origin interleaved channel → (track, is RTCP).
    channels: HashMap<u8, (usize, bool)>,
    playing: bool,
    url: String,
    /// The viewer session's counters: every frame passed on.
    tally: Arc<Tally>,
    /// Forward the viewer's `Authorization` with its requests (pass-through).
    pass_auth: bool,
    fill: Option<FillPlan>,
    /// The fill run of the current origin PLAY, if it is being recorded.
    run: Option<FillRun>,
    /// The viewer's output numbering, shared in turn with the cache player.
    seam: Option<OriginSeam>,
    filled: Arc<AtomicBool>,
    /// Where a UDP viewer's RTCP is read into.
    rtcp_buf: Vec<u8>,
    /// When the last RTP packet was passed on, and when the edge's own sender
    /// reports are next due, for a viewer that keeps them (`seam`).
    last_rtp_at: Option<tokio::time::Instant>,
    next_sr: Option<tokio::time::Instant>,
}

impl VodTask {
    /// Waits (bounded) until the viewer's session has queued the answer to the PLAY
    /// just made, so that answer precedes the first packet it describes (the origin
    /// streams as soon as it has answered; on a loaded machine its first packets
    /// could otherwise reach the viewer ahead of the answer).
    async fn await_answer(wait: oneshot::Receiver<()>) {
        let _ = tokio::time::timeout(ANSWER_WAIT, wait).await;
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let keepalive = keepalive_interval(self.described.session_timeout);
        let mut tick = tokio::time::interval(keepalive);
        tick.tick().await;
        let mut origin_failed = false;
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd).await,
                    None => break,
                },
                frame = self.client.next_frame(), if self.playing => match frame {
                    Ok(f) => {
                        if !self.forward(f.channel(), f.payload()).await {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::info!(origin = %self.url, error = %e, "on-demand origin session failed");
                        origin_failed = true;
                        break;
                    }
                },
                () = crate::hub_actor::sleep_until_opt(self.next_sr), if self.playing && self.seam.as_ref().is_some_and(OriginSeam::keeps_own_reports) => {
                    self.next_sr = Some(tokio::time::Instant::now() + crate::cache_play::SR_INTERVAL);
                    if !self.send_own_reports().await {
                        break;
                    }
                }
                got = recv_viewer_rtcp(&self.sockets, &mut self.rtcp_buf), if self.sockets.values().any(|p| !p.rtcp_shared()) => {
                    self.note_viewer_rtcp(got);
                }
                _ = tick.tick() => {
                    let req = self.client.request(Method::GetParameter, &self.url);
                    if self.client.send_no_wait(req).await.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::debug!(origin = %self.url, "on-demand origin session ends");
        // An origin that failed mid-way may have cut a packet: the cache keeps what
        // verifies. Any other end (the viewer left) leaves a contiguous run.
        if let Some(run) = self.run.take() {
            run.end(!origin_failed);
        }
        // Polite teardown, bounded by the client's timeout.
        let req = self
            .client
            .request(Method::Teardown, &self.described.aggregate_url);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.send(req)).await;
        self.conn.close();
    }

    async fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Setup(track, dest, auth, pair, reply) => {
                let _ = reply.send(self.setup(track, dest, auth, pair).await);
            }
            Cmd::Play(h, answer_wait, reply) => {
                // A seek or resume is a new run, starting where the origin says.
                if let Some(run) = self.run.take() {
                    run.end(true);
                }
                let auth = h.get("Authorization").filter(|_| self.pass_auth);
                let mut r =
                    upstream::play_as(&mut self.client, &self.described, Some(&h), auth).await;
                self.playing = r.is_ok();
                // The fill places packets by the origin's own RTP-Info: before the
                // seam rewrites it for the viewer.
                if let (Ok(resp), Some(plan)) = (&r, &self.fill) {
                    self.run = FillRun::begin(plan, &self.described, resp, SystemTime::now());
                    if self.run.is_some() && !self.filled.swap(true, Ordering::Relaxed) {
                        plan.store.count_miss();
                    }
                }
                if let (Ok(resp), Some(seam)) = (&mut r, &mut self.seam) {
                    seam.on_play(&self.described, Some(&h), resp);
                }
                if r.is_ok() {
                    // The viewer's answer (with the RTP-Info naming the first packet)
                    // is queued by its session after this reply: media waits for it.
                    self.answer_wait = answer_wait;
                    // The edge's own reports, when the viewer keeps them, follow the
                    // cache player's schedule from each PLAY.
                    self.next_sr = Some(tokio::time::Instant::now() + crate::cache_play::FIRST_SR);
                }
                let _ = reply.send(r);
            }
            Cmd::Record(plan) => self.fill = Some(*plan),
            Cmd::Seam(seam) => self.seam = Some(*seam),
            Cmd::TakeSeam(reply) => {
                let _ = reply.send(self.seam.take());
            }
            Cmd::Hold(auth, reply) => {
                let r = if self.playing {
                    self.pause(auth).await.map(|_| ())
                } else {
                    Ok(())
                };
                let _ = reply.send(r);
            }
            Cmd::Pause(auth, reply) => {
                let _ = reply.send(self.pause(auth).await);
            }
        }
    }

    /// PAUSE at the origin; the current run ends.
    async fn pause(&mut self, auth: ViewerAuth) -> Result<Response, ClientError> {
        let mut req = self
            .client
            .request(Method::Pause, &self.described.aggregate_url);
        self.authorize(&mut req, auth);
        let r = self.client.send_ok(req).await;
        if r.is_ok() {
            self.playing = false;
            if let Some(run) = self.run.take() {
                run.end(true);
            }
        }
        r
    }

    /// A datagram on one of the viewer's RTCP sockets: from the address the viewer's
    /// SETUP named for that track, its receiver reports' loss goes into the session's
    /// tally (as the live hub does for its UDP viewers); anything else is dropped.
    fn note_viewer_rtcp(&self, (track, n, from): (usize, usize, SocketAddr)) {
        if let Some(TrackDest::Udp { rtcp, .. }) = self.dests.get(&track) {
            if *rtcp == from {
                self.tally.note_rtcp(&self.rtcp_buf[..n]);
            }
        }
    }

    fn authorize(&self, req: &mut mediagate_rtsp::Request, auth: ViewerAuth) {
        if let Some(a) = auth.filter(|_| self.pass_auth) {
            req.headers.set("Authorization", a);
        }
    }

    async fn setup(
        &mut self,
        track: usize,
        dest: TrackDest,
        auth: ViewerAuth,
        pair: Option<Arc<SocketPair>>,
    ) -> Result<Option<(u16, u16)>, ClientError> {
        let Some(t) = self.described.tracks.get(track) else {
            return Err(ClientError::Closed);
        };
        let channel = u8::try_from(track * 2).unwrap_or(254);
        let mut req = self.client.request(Method::Setup, &t.control_url);
        req.headers.append(
            "Transport",
            format!(
                "RTP/AVP/TCP;unicast;interleaved={}-{}",
                channel,
                channel + 1
            ),
        );
        self.authorize(&mut req, auth);
        let resp = self.client.send_ok(req).await?;
        let ch = resp
            .headers
            .get("Transport")
            .and_then(upstream::interleaved_channel)
            .unwrap_or(channel);
        self.channels.insert(ch, (track, false));
        self.channels.insert(ch.wrapping_add(1), (track, true));
        self.dests.insert(track, dest);
        if let TrackDest::Udp { .. } = dest {
            let pair = match pair {
                Some(p) => p,
                None => Arc::new(self.ports.bind_pair().await.map_err(ClientError::Io)?),
            };
            let p = pair.rtp_port();
            self.sockets.insert(track, pair);
            return Ok(Some((p, p + 1)));
        }
        Ok(None)
    }

    /// Sends one frame to the viewer; false when the viewer is gone.
    async fn forward(&mut self, channel: u8, payload: &bytes::Bytes) -> bool {
        let Some(&(track, rtcp)) = self.channels.get(&channel) else {
            return true;
        };
        if let Some(wait) = self.answer_wait.take() {
            Self::await_answer(wait).await;
        }
        if !rtcp {
            if let Some(run) = &mut self.run {
                run.offer(track, payload, SystemTime::now());
            }
        }
        let rewritten = self.seam.as_mut().and_then(|s| {
            if rtcp {
                s.rewrite_rtcp(track, payload)
            } else {
                s.rewrite_rtp(track, payload)
            }
        });
        let payload = match &rewritten {
            Some(Some(p)) => p,
            Some(None) => return !self.conn.is_closed(),
            None => payload,
        };
        // The clock is read per packet only for a viewer whose reports need it.
        if !rtcp
            && self
                .seam
                .as_ref()
                .is_some_and(OriginSeam::keeps_own_reports)
        {
            self.last_rtp_at = Some(tokio::time::Instant::now());
        }
        self.deliver(track, rtcp, payload).await
    }

    /// The edge's own sender reports to the viewer (see `seam`); false when the
    /// viewer is gone.
    async fn send_own_reports(&mut self) -> bool {
        let (Some(seam), Some(at)) = (&mut self.seam, self.last_rtp_at) else {
            return true;
        };
        let reports = seam.own_reports(at.elapsed(), crate::cache_play::ntp_now());
        for (track, sr) in reports {
            if !self.deliver(track, true, &sr).await {
                return false;
            }
        }
        true
    }

    /// Sends one packet of `track` to the viewer; false when the viewer is gone.
    async fn deliver(&mut self, track: usize, rtcp: bool, payload: &bytes::Bytes) -> bool {
        match self.dests.get(&track) {
            Some(TrackDest::Interleaved { rtp, rtcp: rc }) => {
                let ch = if rtcp { *rc } else { *rtp };
                // Back-pressure instead of loss: wait for room (the origin then waits
                // for us), as long as the viewer is still there.
                while !self.conn.push_media(ch, payload) {
                    if self.conn.is_closed() {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                self.tally.add(1, payload.len() as u64, 0);
                true
            }
            Some(TrackDest::Udp { rtp, rtcp: rc }) => {
                let Some(pair) = self.sockets.get(&track) else {
                    return true;
                };
                let (sock, to): (_, SocketAddr) = if rtcp {
                    (&pair.rtcp, *rc)
                } else {
                    (&pair.rtp, *rtp)
                };
                if sock.send_to(payload, to).await.is_ok() {
                    self.tally.add(1, payload.len() as u64, 0);
                }
                !self.conn.is_closed()
            }
            None => true,
        }
    }
}

/// The next datagram on any of `sockets`' RTCP sockets: (track, length, sender).
/// Reading also keeps their receive buffers from filling. A socket that reports an
/// error is passed over (a UDP error is an ICMP report about an earlier send). Shared
/// pairs are not read here: their one reader credits the viewer (`shared_pairs`).
async fn recv_viewer_rtcp(
    sockets: &HashMap<usize, Arc<SocketPair>>,
    buf: &mut [u8],
) -> (usize, usize, SocketAddr) {
    std::future::poll_fn(|cx| {
        for (&track, pair) in sockets.iter().filter(|(_, p)| !p.rtcp_shared()) {
            loop {
                let mut rb = tokio::io::ReadBuf::new(buf);
                match pair.rtcp.poll_recv_from(cx, &mut rb) {
                    std::task::Poll::Ready(Ok(from)) => {
                        return std::task::Poll::Ready((track, rb.filled().len(), from));
                    }
                    // Polled again so that the socket registers for wake-up.
                    std::task::Poll::Ready(Err(_)) => continue,
                    std::task::Poll::Pending => break,
                }
            }
        }
        std::task::Poll::Pending
    })
    .await
}
