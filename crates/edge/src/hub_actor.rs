//! The actor that runs one live stream: owns the [`HubCore`], the upstream supervisor's
//! task, the server UDP sockets and the set of viewers; viewers reach it through the
//! commands of `hub_registry`.
//!
//! Timers (linger, give-up) are decided by the sans-IO `hub_life`; reconnecting is the
//! upstream supervisor's. This task moves packets: it rewrites upstream frames for
//! continuity, feeds the core, and sends UDP viewers their packets in batches.
//!
//! A published hub (an encoder's `RECORD`, see `publish`) has no supervisor: the
//! publisher's connection attaches the same stream of events, and its going away is
//! handled like a lost origin (viewers wait for the give-up time for it to return).
//!
//! What it does not: parse viewer requests (`viewer`), talk RTSP to the origin
//! (`upstream_supervisor`) or to a publisher (`publish`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mediagate_rtp::rtcp::build::CompoundWriter;
use mediagate_rtp::ContinuityRewriter;
use mediagate_rtsp::{InterleavedFrame, StatusCode};
use mediagate_udp::BatchSender;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::hub::{Delivery, HubCore, Packet, PacketKind, SubscriberId};
use crate::hub_life::HubLife;
use crate::hub_registry::{Cmd, HubError, HubSettings, HubStats, Hubs, JoinResult};
use crate::metrics::StreamCounters;
use crate::ports::SocketPair;
use crate::shared_pairs::{read_viewer_rtcp, RtcpCounters};
use crate::sink::{Counts, TrackDest, ViewerSink};
use crate::upstream::{Described, UpstreamTarget};
use crate::upstream_supervisor::{upstream_loop, UpEvent};

struct TrackSockets {
    pair: Arc<SocketPair>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for TrackSockets {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

pub(crate) struct HubTask {
    hubs: Hubs,
    /// The settings as of this hub's start: a reload does not change a running stream.
    settings: Arc<HubSettings>,
    key: String,
    gen: u64,
    target: UpstreamTarget,
    /// Fed by a publisher (attached with `Cmd::Attach`), never by a supervisor.
    fed_by_publisher: bool,
    rx: mpsc::UnboundedReceiver<Cmd>,
    life: HubLife,
    described: Option<Arc<Described>>,
    /// A description of on-demand content the origin gave for a viewer just now:
    /// this hub answers with it and asks the origin nothing.
    seed: Option<Arc<Described>>,
    failure: Option<HubError>,
    describe_waiters: Vec<oneshot::Sender<Result<Arc<Described>, HubError>>>,
    pending_joins: Vec<(ViewerSink, Vec<usize>, oneshot::Sender<JoinResult>, Instant)>,
    core: Option<HubCore<ViewerSink>>,
    rewriters: Vec<ContinuityRewriter>,
    /// RTP/RTCP channel → (track, kind).
    channels: HashMap<u8, (usize, PacketKind)>,
    udp: Option<Vec<TrackSockets>>,
    batch: BatchSender,
    upstream: Option<Upstream>,
    stats: HubStats,
    /// Where the bit rate was last measured: when, and `bytes_in` then.
    rate_sample: (Instant, u64),
    rtcp: Arc<RtcpCounters>,
    /// This stream's metrics, added to once per batch (see [`HubTask::publish`]).
    counters: Arc<StreamCounters>,
    /// The core's delivery totals as last added to `counters`.
    published: Delivery,
}

/// The running supervisor: its events, its task, and the switch that stops it politely.
struct Upstream {
    rx: mpsc::Receiver<UpEvent>,
    task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl HubTask {
    pub(crate) fn new(
        hubs: Hubs,
        key: String,
        gen: u64,
        target: UpstreamTarget,
        fed_by_publisher: bool,
        rx: mpsc::UnboundedReceiver<Cmd>,
        seed: Option<Arc<Described>>,
    ) -> Self {
        let settings = hubs.settings();
        let life = HubLife::new(settings.linger, settings.give_up)
            .with_backoff(settings.backoff_min, settings.backoff_max);
        let counters = hubs.edge_stats().stream(&target.url);
        let origin = target.url.to_string();
        Self {
            hubs,
            settings,
            key,
            gen,
            target,
            fed_by_publisher,
            rx,
            life,
            described: None,
            seed,
            failure: None,
            describe_waiters: Vec::new(),
            pending_joins: Vec::new(),
            core: None,
            rewriters: Vec::new(),
            channels: HashMap::new(),
            udp: None,
            batch: BatchSender::default(),
            upstream: None,
            stats: HubStats {
                origin,
                ..HubStats::default()
            },
            rate_sample: (Instant::now(), 0),
            rtcp: Arc::default(),
            counters,
            published: Delivery::default(),
        }
    }

    fn settings(&self) -> &HubSettings {
        &self.settings
    }

    pub(crate) async fn run(mut self) {
        tracing::debug!(origin = %self.target.url, "hub started");
        match self.seed.take() {
            Some(d) => self.first_ready(d),
            None => self.start_upstream(),
        }
        loop {
            let join_deadline = self.pending_joins.iter().map(|j| j.3).min();
            let wake = [
                self.life.poll_timeout().map(Instant::from_std),
                join_deadline,
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(Cmd::Shutdown) => {
                        self.shutdown().await;
                        return;
                    }
                    Some(cmd) => self.on_cmd(cmd).await,
                    None => break,
                },
                ev = recv_upstream(&mut self.upstream) => self.on_upstream(ev).await,
                _ = sleep_until_opt(wake) => {
                    let now = Instant::now();
                    let due = self.life.handle_timeout(now.into_std());
                    if due.retire {
                        match self.hubs.clone().try_retire(&self.key, self.gen, &mut self.rx) {
                            Some(Cmd::Shutdown) => {
                                self.shutdown().await;
                                return;
                            }
                            Some(cmd) => self.on_cmd(cmd).await,
                            None => break,
                        }
                    }
                    if due.give_up {
                        self.give_up();
                    }
                    if due.restart {
                        self.restart_upstream();
                    }
                    self.flush_pending_joins(true).await;
                }
            }
        }
        tracing::debug!(origin = %self.target.url, "hub retired after its linger");
        if let Some(up) = self.upstream.take() {
            up.task.abort();
        }
        self.disconnect_all();
    }

    /// Drain: viewers are let go, the origin session is torn down (bounded), and the
    /// hub leaves the registry.
    async fn shutdown(&mut self) {
        self.say_goodbye().await;
        self.disconnect_all();
        if let Some(up) = self.upstream.take() {
            let _ = up.stop.send(true);
            let (mut rx, mut task) = (up.rx, up.task);
            // Frames still coming are discarded rather than left to block the
            // supervisor before it can send its TEARDOWN.
            let finished = tokio::time::timeout(Duration::from_secs(3), async {
                loop {
                    tokio::select! {
                        _ = &mut task => return,
                        ev = rx.recv() => if ev.is_none() {
                            let _ = (&mut task).await;
                            return;
                        },
                    }
                }
            })
            .await;
            if finished.is_err() {
                task.abort();
            }
        }
        self.hubs.remove(&self.key, self.gen);
        self.rx.close();
        tracing::debug!(origin = %self.target.url, "hub shut down");
    }

    fn start_upstream(&mut self) {
        if self.upstream.is_some() || self.fed_by_publisher {
            return;
        }
        let (tx, rx) = mpsc::channel(64);
        let (stop, stop_rx) = watch::channel(false);
        let target = self.target.clone();
        let settings = self.settings().clone();
        let ports = self.hubs.ports();
        let task = tokio::spawn(upstream_loop(target, settings, ports, tx, stop_rx));
        self.upstream = Some(Upstream { rx, task, stop });
    }

    async fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Lease => {
                self.life.lease();
                if self.upstream.is_none() && self.described.is_none() {
                    self.failure = None;
                    self.start_upstream();
                }
            }
            Cmd::Unlease => self.life.unlease(Instant::now().into_std()),
            Cmd::Forget => self.hubs.remove(&self.key, self.gen),
            Cmd::KeepWarm(true) => {
                self.life.warm();
                self.restart_upstream();
            }
            Cmd::KeepWarm(false) => self.life.unwarm(),
            Cmd::Attach {
                events,
                replace,
                reply,
            } => {
                let _ = reply.send(self.attach(events, replace));
            }
            Cmd::Describe(reply) => match (&self.described, &self.failure) {
                (Some(d), _) => {
                    let _ = reply.send(Ok(d.clone()));
                }
                (None, Some(f)) => {
                    let _ = reply.send(Err(f.clone()));
                }
                (None, None) => self.describe_waiters.push(reply),
            },
            Cmd::UdpPorts(reply) => {
                let _ = reply.send(self.udp_ports().await);
            }
            Cmd::Join {
                sink,
                tracks,
                reply,
            } => {
                let now = Instant::now();
                let deadline = now + self.settings().join_wait;
                let mut sink = sink;
                {
                    let mut viewers = self.rtcp.viewers();
                    for addr in RtcpCounters::udp_rtcp_addrs(&sink) {
                        viewers.insert(addr, sink.tally.clone());
                    }
                }
                // The PLAY that sent this join arrived a moment ago.
                let ttfk = self.hubs.edge_stats().first_keyframe().clone();
                sink.time_first_keyframe(now.into_std(), ttfk);
                self.pending_joins.push((sink, tracks, reply, deadline));
                self.flush_pending_joins(false).await;
                self.publish();
            }
            Cmd::Release(id) => self.release(id).await,
            Cmd::Leave(id, bye, done) => {
                if let Some(core) = &mut self.core {
                    if let Some((sink, st)) = core.leave(id) {
                        if bye {
                            self.send_byes(Some(&sink.dests), b"session ended").await;
                        }
                        let mut viewers = self.rtcp.viewers();
                        // A later session that named the same address keeps it.
                        for addr in RtcpCounters::udp_rtcp_addrs(&sink) {
                            viewers.remove_for(&addr, &sink.tally);
                        }
                        drop(viewers);
                        self.stats.viewer_skipped += st.skipped;
                        sink.tally.add_hub_stats(&st);
                    }
                }
                let _ = done.send(());
            }
            // Handled by `run` (it ends the task).
            Cmd::Shutdown => {}
            Cmd::Stats(reply) => {
                let now = Instant::now();
                let (at, bytes) = self.rate_sample;
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                if elapsed >= 1.0 {
                    let bits = self.stats.bytes_in.saturating_sub(bytes) as f64 * 8.0;
                    self.stats.bitrate_bps = (bits / elapsed) as u64;
                    self.rate_sample = (now, self.stats.bytes_in);
                }
                let mut s = self.stats.clone();
                s.viewers = self.core.as_ref().map_or(0, |c| c.subscriber_count());
                s.receiver_reports = self.rtcp.reports.load(Ordering::Relaxed);
                s.max_reported_fraction_lost = self.rtcp.max_fraction_lost.load(Ordering::Relaxed);
                let _ = reply.send(s);
            }
            Cmd::ViewerCounts(reply) => {
                let counts = self.core.as_ref().map_or_else(Vec::new, |core| {
                    core.subscribers()
                        .map(|(sink, st)| {
                            let counts = Counts {
                                packets: st.delivered,
                                bytes: st.delivered_bytes,
                                lost: st.skipped,
                            };
                            (sink.tally.clone(), counts)
                        })
                        .collect()
                });
                let _ = reply.send(counts);
            }
        }
    }

    async fn udp_ports(&mut self) -> Result<Vec<(u16, u16)>, HubError> {
        let Some(d) = &self.described else {
            return Err(HubError::gone());
        };
        if self.udp.is_none() {
            let mut socks = Vec::new();
            for _ in &d.tracks {
                let pair = self.hubs.ports().bind_pair().await.map_err(|e| HubError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    reason: e.to_string(),
                })?;
                let pair = Arc::new(pair);
                let reader = tokio::spawn(read_viewer_rtcp(pair.clone(), self.rtcp.clone()));
                socks.push(TrackSockets { pair, reader });
            }
            self.udp = Some(socks);
        }
        Ok(self
            .udp
            .iter()
            .flatten()
            .map(|s| {
                let p = s.pair.rtp_port();
                (p, p + 1)
            })
            .collect())
    }

    /// Joins waiting viewers once a keyframe is there, or (`expired`) when their wait
    /// is over.
    async fn flush_pending_joins(&mut self, expired: bool) {
        if self.pending_joins.is_empty() {
            return;
        }
        let now = Instant::now();
        let Some(core) = &mut self.core else {
            if let Some(f) = &self.failure {
                for (_, _, reply, _) in self.pending_joins.drain(..) {
                    let _ = reply.send(Err(f.clone()));
                }
            }
            return;
        };
        let ready = core.ready_for_join();
        let mut i = 0;
        while i < self.pending_joins.len() {
            if ready || (expired && self.pending_joins[i].3 <= now) {
                let (sink, tracks, reply, _) = self.pending_joins.swap_remove(i);
                let mut ignored = Vec::new();
                let (id, starts) = core.join(sink, &tracks, |s, p| s.offer(p, &mut ignored));
                if reply.send(Ok((id, starts))).is_err() {
                    core.leave(id);
                }
            } else {
                i += 1;
            }
        }
    }

    async fn release(&mut self, id: SubscriberId) {
        let Some(core) = &mut self.core else { return };
        let Some(sink) = core.sink_mut(id) else {
            return;
        };
        let (udp, complete) = sink.release();
        if !complete {
            core.mark_lagging(id);
        }
        for (p, dest) in udp {
            self.send_udp(&[p.data], p.track, p.kind, &[dest]).await;
        }
    }

    /// A publisher's events become this hub's input; false when another publisher
    /// holds it and `replace` is off. A replaced publisher's events stop being read
    /// (its connection notices and closes) and viewers see an upstream restart.
    fn attach(&mut self, events: mpsc::Receiver<UpEvent>, replace: bool) -> bool {
        if !self.fed_by_publisher {
            return false;
        }
        if self.upstream.is_some() {
            if !replace {
                return false;
            }
            tracing::info!(stream = %self.target.url, "a new publisher replaces the current one");
            self.upstream = None;
            self.source_lost();
        }
        let (stop, mut stop_rx) = watch::channel(false);
        // The publisher's connection is the real source; this task only stands for
        // it in the stop protocol shared with the supervisor.
        let task = tokio::spawn(async move {
            crate::tracker::until_true(&mut stop_rx).await;
        });
        self.upstream = Some(Upstream {
            rx: events,
            task,
            stop,
        });
        true
    }

    /// The input broke but may come back (an origin session lost, a publisher gone):
    /// the give-up clock starts and continuity is kept across the restart.
    fn source_lost(&mut self) {
        self.life.upstream_lost(Instant::now().into_std());
        for r in &mut self.rewriters {
            r.upstream_restarted();
        }
        if let Some(core) = &mut self.core {
            core.upstream_restarted();
        }
    }

    async fn on_upstream(&mut self, ev: Option<UpEvent>) {
        match ev {
            None if self.fed_by_publisher => {
                if let Some(up) = self.upstream.take() {
                    up.task.abort();
                }
                if self.described.is_some() {
                    tracing::info!(stream = %self.target.url, viewers = self.viewer_count(), "publisher gone; viewers wait for it to return");
                    self.source_lost();
                } else {
                    let err = HubError {
                        status: StatusCode::NOT_FOUND,
                        reason: "the publisher left before it started recording".into(),
                    };
                    for w in self.describe_waiters.drain(..) {
                        let _ = w.send(Err(err.clone()));
                    }
                    self.failure = Some(err);
                    self.flush_pending_joins(true).await;
                }
            }
            None => self.upstream = None,
            Some(UpEvent::Ready(d)) => {
                self.stats.upstream_sessions += 1;
                if self.stats.upstream_sessions > 1 {
                    StreamCounters::add(&self.counters.origin_reconnects, 1);
                }
                if let Some(lost) = self.life.lost_for(Instant::now().into_std()) {
                    tracing::info!(origin = %self.target.url, after = ?lost, viewers = self.viewer_count(), "origin back; viewers continue");
                }
                self.life.upstream_ready();
                self.failure = None;
                match &self.described {
                    None => self.first_ready(d),
                    Some(old) if old.tracks.len() != d.tracks.len() => {
                        // The origin now serves a different stream: viewers cannot
                        // continue it seamlessly.
                        tracing::warn!(origin = %self.target.url, was = old.tracks.len(), now = d.tracks.len(), "origin came back with other tracks; letting viewers go");
                        self.give_up();
                    }
                    Some(_) => {}
                }
            }
            Some(UpEvent::Failed(e)) => {
                StreamCounters::add(&self.counters.upstream_failures, 1);
                let err = HubError::from(&e);
                self.upstream = None;
                if self.described.is_none() {
                    for w in self.describe_waiters.drain(..) {
                        let _ = w.send(Err(err.clone()));
                    }
                    self.failure = Some(err);
                    self.flush_pending_joins(true).await;
                    self.life.upstream_down(Instant::now().into_std());
                }
            }
            Some(UpEvent::Lost(_e)) => {
                // The supervisor logged why; it reconnects on its own.
                StreamCounters::add(&self.counters.upstream_failures, 1);
                self.source_lost();
            }
            Some(UpEvent::Frames(frames)) => self.on_frames(frames).await,
        }
    }

    fn first_ready(&mut self, d: Arc<Described>) {
        self.channels.clear();
        for (i, t) in d.tracks.iter().enumerate() {
            self.channels.insert(t.channel, (i, PacketKind::Rtp));
            self.channels
                .insert(t.channel.wrapping_add(1), (i, PacketKind::Rtcp));
        }
        self.rewriters = d
            .tracks
            .iter()
            .map(|t| ContinuityRewriter::new(t.clock_rate))
            .collect();
        self.core = Some(HubCore::new(
            d.tracks.len(),
            d.video_track(),
            self.settings().ring,
        ));
        self.published = Delivery::default();
        for w in self.describe_waiters.drain(..) {
            let _ = w.send(Ok(d.clone()));
        }
        self.described = Some(d);
    }

    async fn on_frames(&mut self, frames: Vec<InterleavedFrame>) {
        let (Some(d), Some(_)) = (self.described.clone(), self.core.as_ref()) else {
            return;
        };
        let now = std::time::Instant::now();
        // Consecutive packets of one track and kind going to the same UDP viewers are
        // sent together (a frame per viewer in one GSO message).
        let mut group: Vec<Bytes> = Vec::new();
        let mut group_dests: Vec<SocketAddr> = Vec::new();
        let mut group_key: Option<(usize, PacketKind)> = None;
        let mut dests: Vec<SocketAddr> = Vec::new();
        let (mut packets_in, mut bytes_in) = (0u64, 0u64);
        for f in frames {
            let Some(&(track, kind)) = self.channels.get(&f.channel()) else {
                continue;
            };
            packets_in += 1;
            bytes_in += f.payload().len() as u64;
            let mut data = BytesMut::from(&f.payload()[..]);
            let (keyframe_start, seq, ts) = match kind {
                PacketKind::Rtp => {
                    let Some((seq, ts)) = self.rewriters[track].rewrite_rtp(&mut data, now) else {
                        continue;
                    };
                    let t = &d.tracks[track];
                    let key = t.is_video && t.codec.is_keyframe_start_packet(&data);
                    (key, seq, ts)
                }
                PacketKind::Rtcp => {
                    if !self.rewriters[track].rewrite_rtcp(&mut data) {
                        continue;
                    }
                    (false, 0, 0)
                }
            };
            let pkt = Packet {
                track,
                kind,
                data: data.freeze(),
                keyframe_start,
                seq,
                ts,
            };
            let bytes = pkt.data.clone();
            dests.clear();
            if let Some(core) = &mut self.core {
                core.on_packet(pkt, |s, p| s.offer(p, &mut dests));
            }
            if dests.is_empty() {
                continue;
            }
            if group_key != Some((track, kind)) || group_dests != dests {
                if let Some((t, k)) = group_key {
                    self.send_udp(&group, t, k, &group_dests).await;
                }
                group.clear();
                group_dests.clone_from(&dests);
                group_key = Some((track, kind));
            }
            group.push(bytes);
        }
        if let Some((t, k)) = group_key {
            self.send_udp(&group, t, k, &group_dests).await;
        }
        self.flush_pending_joins(false).await;
        // Counted once per batch: the hub's own figures and the stream's metrics.
        self.stats.packets_in += packets_in;
        self.stats.bytes_in += bytes_in;
        StreamCounters::add(&self.counters.received_packets, packets_in);
        StreamCounters::add(&self.counters.received_bytes, bytes_in);
        self.publish();
    }

    /// Adds what the core delivered since the last call to the stream's metrics: once
    /// per batch, so the per-packet fan-out stays free of atomics.
    fn publish(&mut self) {
        let Some(core) = &self.core else { return };
        let now = core.delivery();
        let d = now.since(&self.published);
        self.published = now;
        StreamCounters::add(&self.counters.delivered_packets, d.packets);
        StreamCounters::add(&self.counters.delivered_bytes, d.bytes);
        StreamCounters::add(&self.counters.skipped_packets, d.skipped);
    }

    async fn send_udp(
        &mut self,
        packets: &[Bytes],
        track: usize,
        kind: PacketKind,
        dests: &[SocketAddr],
    ) {
        let Some(sock) = self.udp.as_ref().and_then(|u| u.get(track)) else {
            return;
        };
        let sock = match kind {
            PacketKind::Rtp => &sock.pair.rtp,
            PacketKind::Rtcp => &sock.pair.rtcp,
        };
        let slices: Vec<&[u8]> = packets.iter().map(|b| b.as_ref()).collect();
        let mut at = (0, 0);
        // Bounded: a socket that stays unwritable for a second drops the rest of this
        // batch rather than stalling every viewer of the hub.
        let deadline = Instant::now() + Duration::from_secs(1);
        while at.0 < dests.len() {
            match self.batch.send_to_many(sock, &slices, dests, at) {
                Ok((report, next)) => {
                    at = next;
                    if report.would_block {
                        let _ = tokio::time::timeout_at(deadline, sock.writable()).await;
                        if Instant::now() >= deadline {
                            break;
                        }
                    }
                }
                Err(_) => break,
            }
        }
    }

    /// Tells UDP viewers the stream ends (RTCP BYE, RFC 3550 §6.6) so that they stop
    /// at once instead of waiting for a media timeout. TCP viewers see their
    /// connection close.
    async fn say_goodbye(&mut self) {
        self.send_byes(None, b"edge shutting down").await;
    }

    /// RTCP BYE (with `reason`) on every track to `only`'s UDP destinations (a viewer
    /// that just left), or to every UDP viewer's.
    async fn send_byes(&mut self, only: Option<&[Option<TrackDest>]>, reason: &[u8]) {
        let Some(core) = &self.core else { return };
        let mut sends: Vec<(usize, Bytes, Vec<SocketAddr>)> = Vec::new();
        let udp_rtcp = |d: Option<&Option<TrackDest>>| match d.copied().flatten() {
            Some(TrackDest::Udp { rtcp, .. }) => Some(rtcp),
            _ => None,
        };
        for (track, rw) in self.rewriters.iter().enumerate() {
            let Some(ssrc) = rw.ssrc() else { continue };
            let dests: Vec<SocketAddr> = match only {
                Some(d) => udp_rtcp(d.get(track)).into_iter().collect(),
                None => core
                    .sinks()
                    .filter_map(|s| udp_rtcp(s.dests.get(track)))
                    .collect(),
            };
            if dests.is_empty() {
                continue;
            }
            let mut buf = [0u8; 64];
            let mut w = CompoundWriter::new(&mut buf);
            let built = w
                .receiver_report(ssrc, &[])
                .and_then(|w| w.bye(&[ssrc], Some(reason)))
                .is_ok();
            if let (true, Ok(n)) = (built, w.finish()) {
                sends.push((track, Bytes::copy_from_slice(&buf[..n]), dests));
            }
        }
        for (track, bye, dests) in sends {
            self.send_udp(&[bye], track, PacketKind::Rtcp, &dests).await;
        }
    }

    fn viewer_count(&self) -> usize {
        self.core.as_ref().map_or(0, |c| c.subscriber_count()) + self.pending_joins.len()
    }

    fn give_up(&mut self) {
        tracing::warn!(
            origin = %self.target.url,
            give_up = ?self.settings().give_up,
            viewers = self.viewer_count(),
            "origin did not come back in time; disconnecting its viewers"
        );
        self.disconnect_all();
        if let Some(up) = self.upstream.take() {
            up.task.abort();
        }
        self.described = None;
        self.core = None;
        self.udp = None;
        self.failure = Some(HubError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "the origin stream is gone".into(),
        });
        self.life.upstream_down(Instant::now().into_std());
    }

    /// Opens a fresh upstream session for a warm hub whose session ended for good
    /// (nothing to do while one runs or for on-demand content, which has no shared
    /// session). Viewers asking meanwhile wait for it instead of getting the old
    /// failure.
    fn restart_upstream(&mut self) {
        if !self.life.is_warm() || self.upstream.is_some() || self.described.is_some() {
            return;
        }
        tracing::info!(origin = %self.target.url, "always-on stream: opening the origin session again");
        self.failure = None;
        self.start_upstream();
    }

    fn disconnect_all(&mut self) {
        self.publish();
        if let Some(core) = &mut self.core {
            for (sink, st) in core.drain() {
                self.stats.viewer_skipped += st.skipped;
                sink.tally.add_hub_stats(&st);
                sink.conn.close();
            }
        }
        for (sink, _, reply, _) in self.pending_joins.drain(..) {
            sink.conn.close();
            let _ = reply.send(Err(HubError::gone()));
        }
    }
}

async fn recv_upstream(up: &mut Option<Upstream>) -> Option<UpEvent> {
    match up {
        Some(up) => up.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits until `t`; never when there is none (a `select!` arm with no timer set).
pub(crate) async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
