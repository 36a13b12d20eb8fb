//! One simulated viewer: the RTSP session a player runs (RFC 2326 §10: OPTIONS,
//! DESCRIBE, SETUP per track, aggregate PLAY, GET_PARAMETER keep-alives, TEARDOWN),
//! timed and bounded.
//!
//! Over TCP it also accounts the interleaved media itself; over UDP the receiver
//! threads do that on the ports this viewer announces. What it does not: retry. A
//! viewer that fails is reported with the step and the reason; a benchmark must show
//! failures, not hide them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mediagate_rtsp::{Method, Response};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::conn::{Conn, ConnError, CountingSink, FrameSink};
use super::plan::{self, Lower, StreamPlan, TrackDelivery};
use super::url::WatchedUrl;
use crate::track_stats::{Codec, TrackStats};

/// The step a viewer was at when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Stage {
    Connect,
    Options,
    Describe,
    Setup,
    Play,
    Streaming,
}

impl Stage {
    pub(super) fn name(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Options => "OPTIONS",
            Stage::Describe => "DESCRIBE",
            Stage::Setup => "SETUP",
            Stage::Play => "PLAY",
            Stage::Streaming => "streaming",
        }
    }
}

/// A viewer's failure: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    pub stage: Stage,
    pub reason: String,
}

/// Settings and shared counters every viewer of a run uses.
#[derive(Debug)]
pub(super) struct ViewerCtx {
    pub addr: SocketAddr,
    pub url: WatchedUrl,
    pub lower: Lower,
    /// Codecs of the tracks the first DESCRIBE showed; every viewer must see the same.
    pub codecs: Vec<Codec>,
    pub request_timeout: Duration,
    /// When every viewer stops playing.
    pub end: Instant,
    /// How long TEARDOWN may take after `end`.
    pub teardown_grace: Duration,
    /// Sessions being set up at once, at most.
    pub setups: Semaphore,
    /// RTP packets received over interleaved TCP, for live progress.
    pub tcp_packets: AtomicU64,
    /// Viewers whose setup has ended (playing or failed).
    pub settled: AtomicUsize,
    /// Viewers playing now.
    pub playing: AtomicUsize,
}

/// Everything a viewer knows when it ends.
#[derive(Debug, Clone)]
pub(super) struct ViewerOutcome {
    pub id: usize,
    pub failure: Option<Failure>,
    /// Connect started → PLAY response.
    pub setup: Option<Duration>,
    /// When PLAY was written.
    pub play_sent: Option<std::time::Instant>,
    /// When the PLAY response arrived.
    pub playing_from: Option<std::time::Instant>,
    /// When it stopped counting media.
    pub playing_until: Option<std::time::Instant>,
    /// `RTP-Info` seq per track.
    pub expected_seqs: Vec<Option<u16>>,
    /// Per-track stats, for TCP viewers (UDP viewers' come from the receivers).
    pub tcp_tracks: Option<Vec<TrackStats>>,
    pub keepalives: u64,
    /// Keep-alive (or other) responses that were not 2xx.
    pub late_failures: u64,
    pub teardown_ok: bool,
    /// Interleaved frames on channels we did not set up.
    pub stray_frames: u64,
}

impl ViewerOutcome {
    pub(crate) fn new(id: usize) -> Self {
        Self {
            id,
            failure: None,
            setup: None,
            play_sent: None,
            playing_from: None,
            playing_until: None,
            expected_seqs: Vec::new(),
            tcp_tracks: None,
            keepalives: 0,
            late_failures: 0,
            teardown_ok: false,
            stray_frames: 0,
        }
    }
}

/// Interleaved channel → track accounting for a TCP viewer.
struct InterleavedSink {
    /// Per channel: (track, is RTCP).
    channels: [Option<(usize, bool)>; 256],
    tracks: Vec<TrackStats>,
    stray: u64,
    /// RTP frames not yet added to the shared progress counter.
    unflushed: u64,
}

impl FrameSink for InterleavedSink {
    fn frame(&mut self, channel: u8, payload: &Bytes, at: std::time::Instant) {
        let slot = self.channels.get(usize::from(channel)).copied().flatten();
        match slot.and_then(|(t, rtcp)| Some((self.tracks.get_mut(t)?, rtcp))) {
            Some((t, true)) => t.record_rtcp(),
            Some((t, false)) => {
                t.record_rtp(payload, at);
                self.unflushed += 1;
            }
            None => self.stray += 1,
        }
    }
}

/// What the media path needs while playing.
enum Media {
    Udp(CountingSink),
    Tcp(Box<InterleavedSink>),
}

impl Media {
    fn sink(&mut self) -> &mut (dyn FrameSink + Send) {
        match self {
            Media::Udp(s) => s,
            Media::Tcp(s) => s.as_mut(),
        }
    }
}

fn fail(stage: Stage, reason: impl Into<String>) -> Failure {
    Failure {
        stage,
        reason: reason.into(),
    }
}

fn conn_fail(stage: Stage, e: ConnError) -> Failure {
    fail(stage, e.to_string())
}

fn expect_ok(stage: Stage, r: &Response) -> Result<(), Failure> {
    if r.status.is_success() {
        Ok(())
    } else {
        Err(fail(
            stage,
            format!("the server answered {} {}", r.status, r.reason),
        ))
    }
}

/// Runs viewer `id` to the end of the run. `udp_ports` are its RTP ports per track
/// (UDP runs only). Never returns later than `ctx.end + ctx.teardown_grace` plus one
/// request timeout of slack for the connect in flight.
pub(super) async fn run(
    ctx: Arc<ViewerCtx>,
    id: usize,
    udp_ports: Option<Vec<u16>>,
) -> ViewerOutcome {
    let mut out = ViewerOutcome::new(id);
    let mut settled = false;
    let result = session(&ctx, &mut out, udp_ports, &mut settled).await;
    if !settled {
        ctx.settled.fetch_add(1, Ordering::Relaxed);
    }
    if let Err(f) = result {
        out.failure = Some(f);
    }
    out
}

async fn session(
    ctx: &ViewerCtx,
    out: &mut ViewerOutcome,
    udp_ports: Option<Vec<u16>>,
    settled: &mut bool,
) -> Result<(), Failure> {
    let step = || (Instant::now() + ctx.request_timeout).min(ctx.end);
    let permit = tokio::time::timeout_at(ctx.end, ctx.setups.acquire())
        .await
        .map_err(|_| {
            fail(
                Stage::Connect,
                "the run ended before this viewer's turn to connect",
            )
        })?
        .map_err(|_| fail(Stage::Connect, "setup limiter closed"))?;
    let started = std::time::Instant::now();
    let mut conn = Conn::connect(ctx.addr, ctx.url.credentials.clone(), step())
        .await
        .map_err(|e| conn_fail(Stage::Connect, e))?;
    let mut noise = CountingSink::default();
    let uri = ctx.url.request_uri.as_str();

    let r = conn
        .call(conn.request(Method::Options, uri), step(), &mut noise)
        .await
        .map_err(|e| conn_fail(Stage::Options, e))?;
    expect_ok(Stage::Options, &r)?;

    let mut req = conn.request(Method::Describe, uri);
    req.headers.append("Accept", "application/sdp");
    let r = conn
        .call(req, step(), &mut noise)
        .await
        .map_err(|e| conn_fail(Stage::Describe, e))?;
    expect_ok(Stage::Describe, &r)?;
    let plan = describe_plan(uri, &r).map_err(|e| fail(Stage::Describe, e))?;
    let codecs: Vec<Codec> = plan.tracks.iter().map(|t| t.codec).collect();
    if codecs != ctx.codecs {
        return Err(fail(
            Stage::Describe,
            format!(
                "the stream changed: {} tracks now ({}), not as in the first DESCRIBE",
                codecs.len(),
                plan.describe_tracks()
            ),
        ));
    }

    let mut media = match ctx.lower {
        Lower::Udp => Media::Udp(CountingSink::default()),
        Lower::Tcp => Media::Tcp(Box::new(InterleavedSink {
            channels: [None; 256],
            tracks: codecs.iter().map(|&c| TrackStats::new(c)).collect(),
            stray: 0,
            unflushed: 0,
        })),
    };
    for (i, track) in plan.tracks.iter().enumerate() {
        let port = udp_ports
            .as_ref()
            .and_then(|p| p.get(i).copied())
            .unwrap_or(0);
        if ctx.lower == Lower::Udp && port == 0 {
            return Err(fail(
                Stage::Setup,
                format!("no UDP port pair for track {i}"),
            ));
        }
        let mut req = conn.request(Method::Setup, &track.control_url);
        req.headers
            .append("Transport", plan::setup_transport(ctx.lower, i, port));
        let r = conn
            .call(req, step(), media.sink())
            .await
            .map_err(|e| conn_fail(Stage::Setup, e))?;
        expect_ok(Stage::Setup, &r)?;
        let delivery = plan::accept_setup_reply(ctx.lower, port, r.headers.get("Transport"))
            .map_err(|e| fail(Stage::Setup, e))?;
        if let (TrackDelivery::Interleaved { rtp, rtcp }, Media::Tcp(sink)) = (delivery, &mut media)
        {
            for (ch, is_rtcp) in [(rtp, false), (rtcp, true)] {
                let slot = &mut sink.channels[usize::from(ch)];
                if slot.is_some() {
                    return Err(fail(
                        Stage::Setup,
                        format!("the server gave interleaved channel {ch} to two tracks"),
                    ));
                }
                *slot = Some((i, is_rtcp));
            }
        }
        let session = r
            .headers
            .get("Session")
            .ok_or_else(|| fail(Stage::Setup, "the SETUP response has no Session header"))?;
        // The connection keeps the id and times keep-alives from it; this checks that
        // the server's header is well formed.
        plan::session_and_keepalive(session).map_err(|e| fail(Stage::Setup, e))?;
    }

    let mut req = conn.request(Method::Play, &plan.aggregate_url);
    req.headers.append("Range", "npt=0.000-");
    out.play_sent = Some(std::time::Instant::now());
    let r = conn
        .call(req, step(), media.sink())
        .await
        .map_err(|e| conn_fail(Stage::Play, e))?;
    expect_ok(Stage::Play, &r)?;
    let now = std::time::Instant::now();
    out.setup = Some(now.duration_since(started));
    out.playing_from = Some(now);
    out.expected_seqs = plan::expected_first_seqs(r.headers.get("RTP-Info"), &plan.tracks);
    drop(permit);
    *settled = true;
    ctx.settled.fetch_add(1, Ordering::Relaxed);
    ctx.playing.fetch_add(1, Ordering::Relaxed);

    conn.start_keepalives(Instant::now());
    let streamed = play(ctx, &mut conn, &mut media, &plan, out).await;
    ctx.playing.fetch_sub(1, Ordering::Relaxed);
    out.playing_until = Some(std::time::Instant::now());
    out.late_failures = conn.late_failures();
    match media {
        Media::Tcp(sink) => {
            out.stray_frames = sink.stray;
            ctx.tcp_packets.fetch_add(sink.unflushed, Ordering::Relaxed);
            out.tcp_tracks = Some(sink.tracks);
        }
        Media::Udp(sink) => out.stray_frames = sink.frames,
    }
    streamed?;

    // Media after the end is not counted: TEARDOWN's own sink discards it.
    let deadline = Instant::now() + ctx.teardown_grace;
    let req = conn.request(Method::Teardown, &plan.aggregate_url);
    out.teardown_ok = matches!(
        conn.call(req, deadline, &mut CountingSink::default()).await,
        Ok(r) if r.status.is_success()
    );
    Ok(())
}

fn describe_plan(uri: &str, r: &Response) -> Result<StreamPlan, String> {
    plan::plan_from_describe(
        uri,
        r.headers.get("Content-Base"),
        r.headers.get("Content-Location"),
        &r.body,
    )
}

/// Streams until `ctx.end`, sending keep-alives when the connection says so.
async fn play(
    ctx: &ViewerCtx,
    conn: &mut Conn,
    media: &mut Media,
    plan: &StreamPlan,
    out: &mut ViewerOutcome,
) -> Result<(), Failure> {
    // Progress counters are fed about once a second.
    const FLUSH: Duration = Duration::from_secs(1);
    loop {
        let now = Instant::now();
        if now >= ctx.end {
            return Ok(());
        }
        if conn.keepalive_due(now) {
            let req = conn.request(Method::GetParameter, &plan.aggregate_url);
            conn.send(req)
                .await
                .map_err(|e| conn_fail(Stage::Streaming, e))?;
            out.keepalives += 1;
        }
        let mut until = (now + FLUSH).min(ctx.end);
        if let Some(next) = conn.next_keepalive() {
            until = until.min(next);
        }
        let pumped = conn.pump_until(until, media.sink()).await;
        if let Media::Tcp(sink) = media {
            ctx.tcp_packets
                .fetch_add(std::mem::take(&mut sink.unflushed), Ordering::Relaxed);
        }
        pumped.map_err(|e| conn_fail(Stage::Streaming, e))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track_stats::tests::{rtp, H264_IDR_START};

    #[test]
    fn interleaved_frames_go_to_their_track() {
        let mut sink = InterleavedSink {
            channels: [None; 256],
            tracks: vec![TrackStats::new(Codec::H264), TrackStats::new(Codec::Other)],
            stray: 0,
            unflushed: 0,
        };
        sink.channels[0] = Some((0, false));
        sink.channels[1] = Some((0, true));
        sink.channels[2] = Some((1, false));
        let at = std::time::Instant::now();
        let b = |v: Vec<u8>| Bytes::from(v);
        sink.frame(0, &b(rtp(1, 0, &H264_IDR_START)), at);
        sink.frame(0, &b(rtp(3, 0, b"x")), at);
        sink.frame(1, &b(vec![0x80, 200, 0, 0]), at);
        sink.frame(2, &b(rtp(9, 0, b"a")), at);
        sink.frame(7, &b(rtp(9, 0, b"a")), at);
        assert_eq!(sink.tracks[0].packets, 2);
        assert_eq!(sink.tracks[0].seq_counts().lost, 1);
        assert_eq!(sink.tracks[0].rtcp, 1);
        assert_eq!(sink.tracks[0].first_keyframe, Some(at));
        assert_eq!(sink.tracks[1].packets, 1);
        assert_eq!(sink.stray, 1);
        assert_eq!(sink.unflushed, 3);
    }

    #[test]
    fn stage_names_are_the_rtsp_methods() {
        assert_eq!(Stage::Setup.name(), "SETUP");
        assert_eq!(Stage::Streaming.name(), "streaming");
        assert!(Stage::Connect < Stage::Play);
    }
}
