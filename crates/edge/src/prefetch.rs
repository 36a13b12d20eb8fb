//! Prefetch: filling a cache object with no viewer (issue 13 item 7), started by
//! `POST /api/v1/cache/prefetch` or `mediagate cache prefetch URL`.
//!
//! What it does: resolves the URL as a viewer's request would be (routes, forward and
//! transparent rules, and every hop checked by the edge's reach policy), DESCRIBEs,
//! SETUPs the chosen tracks over TCP interleaved and PLAYs from npt 0 (or, for a
//! partial object of the same content, from the end of its held start: only what is
//! missing is fetched, and the new run meets the held range) asking for
//! `Speed` (RFC 7826 §18.50, RFC 2326 §12.35): delivery faster than real time with
//! timestamps left in media time, so the stored object is the same as a viewer's fill.
//! An answer with `Speed` is not taken on trust: the first [`PROBE_WALL`] of packets
//! are held back and written only when the media time they span outpaces the wall
//! clock (gst-rtsp-server 1.22 answers `Speed` but scales the RTP timestamps, which
//! would store a clip squeezed in time); otherwise that PLAY is given up unwritten and
//! the clip is played again in real time. The listing shows the `Speed` in use.
//! Packets go through the viewer's fill
//! path ([`FillRun`]): one filler per object still holds, and a prefetch waits for the
//! disk (back-pressure to the origin) instead of giving the fill up. It ends when every
//! track's RTCP BYE arrived (the clip ended), when the origin goes quiet for
//! [`IDLE_END`], on cancel or on drain; the run is ended cleanly in each case (what was
//! written is contiguous), so a cancelled prefetch leaves a partial object that holds
//! what arrived and is never served as complete.
//!
//! Progress for `GET /api/v1/cache/prefetch`: held media time over the clip's length,
//! bytes, and the rate, per running (and recently finished) prefetch.
//!
//! What it does not: decide freshness (a stored object whose description changed is
//! refetched by the cache itself at `begin_fill`), or serve anything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use mediagate_cache::ObjectInfo;
use mediagate_rtsp::{Headers, Method, Response};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::cache_fill::{object_key, unix_ms, FillPlan, FillRun};
use crate::cache_store::CacheStore;
use crate::rtsp_client::{ClientError, RtspClient};
use crate::tracker::TaskGuard;
use crate::upstream::{self, Described, UpstreamTarget};
use crate::upstream_supervisor::keepalive_interval;

/// The origin sent nothing for this long: the clip is over (or the origin stalled);
/// the run ends with what it holds.
pub(crate) const IDLE_END: Duration = Duration::from_secs(5);

/// Finished prefetches stay listed this long, so a client polling for the outcome
/// sees it.
const KEEP_FINISHED: Duration = Duration::from_secs(300);

/// The `Speed` asked of the origin when the request names none.
pub(crate) const DEFAULT_SPEED: f64 = 8.0;

/// Where a prefetch is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PrefetchState {
    Running,
    /// The object is complete.
    Complete,
    /// The clip ended (or the origin went quiet) before the object was complete.
    Partial,
    Cancelled,
    Failed(String),
}

impl PrefetchState {
    fn name(&self) -> &'static str {
        match self {
            PrefetchState::Running => "running",
            PrefetchState::Complete => "complete",
            PrefetchState::Partial => "partial",
            PrefetchState::Cancelled => "cancelled",
            PrefetchState::Failed(_) => "failed",
        }
    }
}

/// One prefetch, shared by its task and the listing.
#[derive(Debug)]
pub(crate) struct Job {
    /// The origin URL (the object's).
    pub url: String,
    /// The URL as it was asked for (an edge URL or the origin's).
    pub asked: String,
    /// SDP media indexes (the object's variant).
    pub tracks: Vec<usize>,
    pub duration_ms: Option<u64>,
    pub started_unix_ms: u64,
    started: Instant,
    held_ms: AtomicU64,
    bytes: AtomicU64,
    /// What the origin's PLAY answer said: `Speed: x` or `Scale: x`, or nothing.
    delivery: Mutex<Option<String>>,
    state: Mutex<(PrefetchState, Option<Instant>)>,
    cancel: watch::Sender<bool>,
}

impl Job {
    fn new(
        url: &str,
        asked: String,
        tracks: &[usize],
        duration_ms: Option<u64>,
        delivery: Option<String>,
    ) -> Self {
        Self {
            url: url.to_owned(),
            asked,
            tracks: tracks.to_vec(),
            duration_ms,
            started_unix_ms: unix_ms(SystemTime::now()),
            started: Instant::now(),
            held_ms: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            delivery: Mutex::new(delivery),
            state: Mutex::new((PrefetchState::Running, None)),
            cancel: watch::channel(false).0,
        }
    }

    pub fn state(&self) -> PrefetchState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    fn finish(&self, state: PrefetchState) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = (state, Some(Instant::now()));
    }

    fn finished_at(&self) -> Option<Instant> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    /// The listing's entry.
    pub fn to_json(&self) -> Value {
        let state = self.state();
        let held = self.held_ms.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let elapsed = self
            .finished_at()
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(self.started);
        json!({
            "url": self.url,
            "asked": self.asked,
            "tracks": self.tracks,
            "state": state.name(),
            "error": match &state { PrefetchState::Failed(e) => Some(e.as_str()), _ => None },
            "percent": percent(held, self.duration_ms, &state),
            "held_ms": held,
            "duration_ms": self.duration_ms,
            "bytes": bytes,
            "rate_bps": rate_bps(bytes, elapsed),
            "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "delivery": *self.delivery.lock().unwrap_or_else(PoisonError::into_inner),
            "started_unix_ms": self.started_unix_ms,
        })
    }
}

/// Held media time over the clip's length, 0..=100; 100 once complete.
fn percent(held_ms: u64, duration_ms: Option<u64>, state: &PrefetchState) -> f64 {
    if *state == PrefetchState::Complete {
        return 100.0;
    }
    match duration_ms {
        Some(d) if d > 0 => ((held_ms as f64 / d as f64) * 100.0).clamp(0.0, 100.0),
        _ => 0.0,
    }
}

/// Bits per second over `elapsed`.
fn rate_bps(bytes: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0;
    }
    (bytes as f64 * 8.0 / secs) as u64
}

/// Every prefetch of one edge.
#[derive(Debug, Default)]
pub(crate) struct Prefetches {
    jobs: Mutex<Vec<Arc<Job>>>,
}

/// Why a prefetch could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartError {
    /// The request does not fit (unknown tracks, a live stream).
    BadRequest(String),
    /// Another prefetch of this object runs, or the cache would not fill it.
    Busy(String),
    /// The origin could not be reached or refused.
    Origin(String),
}

/// What a prefetch needs from the edge.
pub(crate) struct PrefetchStart {
    pub store: Arc<CacheStore>,
    pub target: UpstreamTarget,
    pub asked: String,
    /// SDP media indexes; None: every track.
    pub tracks: Option<Vec<usize>>,
    pub speed: f64,
    /// The route's `cache_max_object`.
    pub max_object_bytes: u64,
    pub guard: TaskGuard,
    pub drain: watch::Receiver<bool>,
}

impl Prefetches {
    /// Every running prefetch and those finished in the last [`KEEP_FINISHED`].
    pub fn list(&self) -> Value {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.retain(|j| j.finished_at().is_none_or(|t| t.elapsed() < KEEP_FINISHED));
        Value::Array(jobs.iter().map(|j| j.to_json()).collect())
    }

    /// The running prefetches of origin URL `url` (one variant, or all).
    pub fn running(&self, url: &str, tracks: Option<&[usize]>) -> Vec<Arc<Job>> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.iter()
            .filter(|j| j.url == url && j.state() == PrefetchState::Running)
            .filter(|j| tracks.is_none_or(|t| same_tracks(t, &j.tracks)))
            .cloned()
            .collect()
    }

    fn push(&self, job: Arc<Job>) {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(job);
    }

    /// Opens the origin session and starts the fill; answers once the origin has
    /// accepted the PLAY (or refused something before it).
    pub async fn start(&self, req: PrefetchStart) -> Result<Arc<Job>, StartError> {
        let url = req.target.url.without_credentials().to_string();
        let (mut client, mut described) = upstream::describe(&req.target)
            .await
            .map_err(|e| StartError::Origin(e.to_string()))?;
        if described.live {
            return Err(StartError::BadRequest(format!(
                "{url} is a live stream (no finite a=range): only on-demand content is cached"
            )));
        }
        let set_up = chosen_tracks(&described, req.tracks.as_deref())?;
        let key = object_key(&url, &described, &set_up);
        if !self.running(&url, Some(&key.tracks)).is_empty() {
            return Err(StartError::Busy(format!(
                "{url} tracks {:?} is being prefetched already",
                key.tracks
            )));
        }
        let plan = FillPlan::new(
            req.store.clone(),
            &url,
            &described,
            &set_up,
            req.max_object_bytes,
        );
        let held = req.store.lock().lookup(&key);
        if let Some(o) = held
            .as_ref()
            .filter(|o| o.complete && o.meta.sdp == plan.meta.sdp)
        {
            // Nothing to fetch: the same description is held complete already.
            teardown(&mut client, &described).await;
            let job = Arc::new(Job::new(
                &url,
                req.asked,
                &key.tracks,
                plan.meta.duration_ms,
                None,
            ));
            job.held_ms
                .store(o.ranges.last().map_or(0, |r| r.1), Ordering::Relaxed);
            job.finish(PrefetchState::Complete);
            self.push(job.clone());
            return Ok(job);
        }
        let from_ms = resume_point(held.as_ref(), &plan.meta);
        if from_ms > 0 {
            tracing::info!(
                url,
                from_ms,
                "edge: prefetch resumes where the held start ends"
            );
        }
        let (channels, resp) = play_from(&mut client, &mut described, &set_up, req.speed, from_ms)
            .await
            .map_err(|e| StartError::Origin(e.to_string()))?;
        let Some((run, ended)) =
            FillRun::begin_reporting(&plan, &described, &resp, SystemTime::now())
        else {
            teardown(&mut client, &described).await;
            return Err(StartError::Busy(format!(
                "the cache did not start filling {url} tracks {:?}: another viewer is filling it, or the origin's PLAY answer has no Range/RTP-Info to place packets by (see the process log)",
                key.tracks
            )));
        };
        // An origin that says it delivers faster is checked before anything is
        // written: some (gst-rtsp-server) scale the RTP timestamps with Speed.
        let probe =
            accepted_speed(&resp, req.speed).and_then(|_| Probe::new(&plan, &described, &resp));
        let job = Arc::new(Job::new(
            &url,
            req.asked,
            &key.tracks,
            plan.meta.duration_ms,
            delivery(&resp),
        ));
        let cancelled = job.cancel.subscribe();
        tracing::info!(
            url,
            tracks = ?key.tracks,
            delivery = ?delivery(&resp),
            "edge: prefetch started"
        );
        self.push(job.clone());
        let task = PrefetchTask {
            job: job.clone(),
            target: req.target,
            plan,
            set_up,
            from_ms,
            client,
            described,
            channels,
            byes: Vec::new(),
            probe,
        };
        let (guard, drain) = (req.guard, req.drain);
        tokio::spawn(async move {
            task.run(run, ended, cancelled, drain).await;
            drop(guard);
        });
        Ok(job)
    }
}

/// A held start this close to npt 0 is the clip's start (its first keyframe).
const RESUME_FIRST_MS: u64 = 1_000;

/// Where a prefetch of an object held as `held` starts: the end of its first held
/// range when that range is the clip's start and the object is the content `meta`
/// describes (a fill of changed content starts the object again, from 0); else 0.
/// The origin starts at a keyframe at or before it, so the new run meets the held
/// range and the two merge.
fn resume_point(held: Option<&ObjectInfo>, meta: &mediagate_cache::Meta) -> u64 {
    let Some(o) = held.filter(|o| !o.complete && crate::freshness::same_content(&o.meta, meta))
    else {
        return 0;
    };
    match o.ranges.first() {
        Some(&(start, end)) if start <= RESUME_FIRST_MS => end,
        _ => 0,
    }
}

/// SETUPs `set_up` over TCP interleaved and PLAYs from `from_ms`, asking for `speed`
/// when it is not 1. Returns the origin's channels (→ described track, is RTCP) and
/// its PLAY answer.
async fn play_from(
    client: &mut RtspClient,
    described: &mut Described,
    set_up: &[usize],
    speed: f64,
    from_ms: u64,
) -> Result<(HashMap<u8, (usize, bool)>, Response), ClientError> {
    let mut channels = HashMap::new();
    for &i in set_up {
        upstream::setup_track(client, described, i, None).await?;
        let ch = described.tracks[i].channel;
        channels.insert(ch, (i, false));
        channels.insert(ch.wrapping_add(1), (i, true));
    }
    let mut extra = Headers::new();
    extra.append(
        "Range",
        format!("npt={}.{:03}-", from_ms / 1000, from_ms % 1000),
    );
    if speed != 1.0 {
        extra.append("Speed", format!("{speed:.1}"));
    }
    let resp = upstream::play(client, described, Some(&extra)).await?;
    Ok((channels, resp))
}

/// The speed the origin's PLAY answer accepted, when above real time and asked for.
fn accepted_speed(resp: &Response, asked: f64) -> Option<f64> {
    if asked <= 1.0 {
        return None;
    }
    let v: f64 = resp.headers.get("Speed")?.trim().parse().ok()?;
    (v > 1.0).then_some(v)
}

/// How long the first packets of a faster-than-real-time PLAY are held back while
/// their media time is compared with the wall clock.
const PROBE_WALL: Duration = Duration::from_millis(1500);

/// At most this many packets are held back while probing.
const PROBE_MAX_PACKETS: usize = 20_000;

/// The first packets of a PLAY with `Speed`, held until it is clear whether their
/// timestamps are media time (the media time they span then grows faster than the
/// wall clock) or were scaled by the origin (it grows at about real time).
struct Probe {
    clock: crate::cache_fill::RunClock,
    first: Option<Instant>,
    min_ms: u64,
    max_ms: u64,
    held: Vec<(usize, bytes::Bytes)>,
}

impl Probe {
    fn new(plan: &FillPlan, d: &Described, resp: &Response) -> Option<Probe> {
        Some(Probe {
            clock: crate::cache_fill::RunClock::from_play(plan, d, resp)?,
            first: None,
            min_ms: u64::MAX,
            max_ms: 0,
            held: Vec::new(),
        })
    }

    /// Holds one RTP packet; true when enough is held to decide.
    fn hold(&mut self, track: usize, rtp: &bytes::Bytes, now: Instant) -> bool {
        let first = *self.first.get_or_insert(now);
        if let Some(p) = self.clock.place(track, rtp) {
            self.min_ms = self.min_ms.min(p.media_ms);
            self.max_ms = self.max_ms.max(p.media_ms);
        }
        self.held.push((track, rtp.clone()));
        now.saturating_duration_since(first) >= PROBE_WALL || self.held.len() >= PROBE_MAX_PACKETS
    }

    /// Whether the held packets' timestamps are media time delivered fast.
    fn timestamps_are_media_time(&self, now: Instant) -> bool {
        let wall = self
            .first
            .map_or(Duration::ZERO, |f| now.saturating_duration_since(f));
        let span = self.max_ms.saturating_sub(self.min_ms.min(self.max_ms));
        media_outpaces_wall(span, wall)
    }
}

/// Media time spanning at least twice `wall` means the timestamps were left in media
/// time and delivered faster than real time; a span near `wall` means they were
/// scaled down (or the origin did not speed up at all): either way not a fast fill.
/// The look must be long enough to say anything: 200 ms of wall time, or a second of
/// media (an origin that sends the whole packet budget within a few ms). How much
/// faster than asked or than real time does not matter: an origin may be slower than
/// the `Speed` it accepted (a high bit rate on a busy link) and still save time.
fn media_outpaces_wall(span_ms: u64, wall: Duration) -> bool {
    let wall_ms = wall.as_secs_f64() * 1000.0;
    (wall_ms >= 200.0 || span_ms >= 1_000) && span_ms as f64 >= wall_ms * 2.0
}

/// Cancels `job` and waits (bounded) until its run has ended in the cache.
pub(crate) async fn cancel(job: &Job, wait: Duration) {
    let _ = job.cancel.send(true);
    let deadline = Instant::now() + wait;
    while job.state() == PrefetchState::Running && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn same_tracks(a: &[usize], b: &[usize]) -> bool {
    let mut a = a.to_vec();
    a.sort_unstable();
    a.dedup();
    a == b
}

/// The described tracks (indexes into `d.tracks`) whose SDP media indexes are
/// `wanted`; every track when None.
fn chosen_tracks(d: &Described, wanted: Option<&[usize]>) -> Result<Vec<usize>, StartError> {
    let Some(wanted) = wanted else {
        return Ok((0..d.tracks.len()).collect());
    };
    let mut out = Vec::new();
    for mi in wanted {
        match d.tracks.iter().position(|t| t.media_index == *mi) {
            Some(i) if !out.contains(&i) => out.push(i),
            Some(_) => {}
            None => {
                let have: Vec<usize> = d.tracks.iter().map(|t| t.media_index).collect();
                return Err(StartError::BadRequest(format!(
                    "the clip has no track {mi}; its tracks are {have:?}"
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(StartError::BadRequest(
            "name at least one track, or leave \"tracks\" out for all".into(),
        ));
    }
    out.sort_unstable();
    Ok(out)
}

/// How the origin said it delivers: its `Speed`, else its `Scale`, as a header line.
fn delivery(resp: &Response) -> Option<String> {
    ["Speed", "Scale"]
        .iter()
        .find_map(|h| resp.headers.get(h).map(|v| format!("{h}: {v}")))
}

/// Whether an RTCP compound holds a BYE.
fn has_bye(rtcp: &[u8]) -> bool {
    mediagate_rtp::rtcp::RtcpPackets::new(rtcp)
        .flatten()
        .any(|p| matches!(p, mediagate_rtp::rtcp::RtcpPacket::Goodbye(_)))
}

async fn teardown(client: &mut RtspClient, d: &Described) {
    let req = client.request(Method::Teardown, &d.aggregate_url);
    let _ = tokio::time::timeout(Duration::from_secs(2), client.send(req)).await;
}

/// Why the read loop stopped.
enum Stop {
    /// Every track said BYE, or the origin went quiet: the clip is over.
    Ended,
    Cancelled,
    OriginFailed(ClientError),
    /// A faster-than-real-time PLAY's timestamps were not media time: play again
    /// in real time.
    Restart,
}

/// What woke the read loop.
enum Event {
    Frame(Result<mediagate_rtsp::InterleavedFrame, ClientError>),
    Stop(Stop),
    KeepAlive,
}

/// Resolves once the edge drains.
async fn drained(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|d| *d).await;
}

struct PrefetchTask {
    job: Arc<Job>,
    target: UpstreamTarget,
    plan: FillPlan,
    set_up: Vec<usize>,
    /// Where the PLAY starts: 0, or the end of the held start of a partial object.
    from_ms: u64,
    client: RtspClient,
    described: Described,
    /// Origin interleaved channel → (described track, is RTCP).
    channels: HashMap<u8, (usize, bool)>,
    /// Tracks whose BYE arrived.
    byes: Vec<usize>,
    /// Packets held back while a fast delivery's timestamps are checked.
    probe: Option<Probe>,
}

impl PrefetchTask {
    async fn run(
        mut self,
        mut run: FillRun,
        mut ended: crate::cache_fill::RunEnded,
        mut cancelled: watch::Receiver<bool>,
        mut drain: watch::Receiver<bool>,
    ) {
        let mut stop = self.read(&mut run, &mut cancelled, &mut drain).await;
        if matches!(stop, Stop::Restart) {
            // Nothing was written: end the empty run and start again in real time.
            run.end(true);
            let _ = ended.await;
            teardown(&mut self.client, &self.described).await;
            tracing::info!(
                url = %self.job.url,
                "edge: the origin's Speed did not give media-time timestamps faster than real time; prefetching in real time"
            );
            *self
                .job
                .delivery
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
            match self.restart().await {
                Ok((r, e)) => {
                    (run, ended) = (r, e);
                    stop = self.read(&mut run, &mut cancelled, &mut drain).await;
                }
                Err(e) => {
                    self.job.finish(PrefetchState::Failed(e));
                    return;
                }
            }
        }
        let origin_failed = matches!(stop, Stop::OriginFailed(_));
        run.end(!origin_failed);
        if !origin_failed {
            teardown(&mut self.client, &self.described).await;
        }
        let info = ended
            .await
            .map_err(|_| "the cache writer stopped".to_owned());
        let state = outcome(&stop, info.and_then(|r| r));
        tracing::info!(
            url = %self.job.url,
            tracks = ?self.job.tracks,
            state = state.name(),
            held_ms = self.job.held_ms.load(Ordering::Relaxed),
            bytes = self.job.bytes.load(Ordering::Relaxed),
            "edge: prefetch ended"
        );
        self.job.finish(state);
    }

    /// A new origin session playing from where the prefetch started, in real time, with
    /// its run.
    async fn restart(&mut self) -> Result<(FillRun, crate::cache_fill::RunEnded), String> {
        let (client, described) = upstream::describe(&self.target)
            .await
            .map_err(|e| format!("the origin: {e}"))?;
        if described.tracks.len() != self.described.tracks.len() {
            return Err("the origin changed the clip's tracks".into());
        }
        (self.client, self.described) = (client, described);
        let (channels, resp) = play_from(
            &mut self.client,
            &mut self.described,
            &self.set_up,
            1.0,
            self.from_ms,
        )
        .await
        .map_err(|e| format!("the origin: {e}"))?;
        self.channels = channels;
        self.byes.clear();
        self.job.bytes.store(0, Ordering::Relaxed);
        FillRun::begin_reporting(&self.plan, &self.described, &resp, SystemTime::now())
            .ok_or_else(|| "the cache did not start the fill again (see the process log)".into())
    }

    /// Reads the origin until the clip ends, it fails, or the prefetch is cancelled.
    async fn read(
        &mut self,
        run: &mut FillRun,
        cancelled: &mut watch::Receiver<bool>,
        drain: &mut watch::Receiver<bool>,
    ) -> Stop {
        let mut tick = tokio::time::interval(keepalive_interval(self.described.session_timeout));
        tick.tick().await;
        // One timer, pushed back by media only: a keep-alive tick is no sign of life
        // from the origin (and with a short session timeout it comes before every
        // idle deadline, so a fresh timer per pass would never fire).
        let idle = tokio::time::sleep(IDLE_END);
        tokio::pin!(idle);
        loop {
            let event = tokio::select! {
                frame = self.client.next_frame() => {
                    idle.as_mut().reset(tokio::time::Instant::now() + IDLE_END);
                    Event::Frame(frame)
                }
                () = &mut idle => Event::Stop(Stop::Ended),
                _ = cancelled.changed() => Event::Stop(Stop::Cancelled),
                () = drained(drain) => Event::Stop(Stop::Cancelled),
                _ = tick.tick() => Event::KeepAlive,
            };
            let stop = match event {
                Event::Frame(Ok(f)) => self.on_frame(run, f.channel(), f.payload()).await,
                Event::Frame(Err(e)) => Some(Stop::OriginFailed(e)),
                Event::Stop(stop) => Some(stop),
                Event::KeepAlive => {
                    let req = self
                        .client
                        .request(Method::GetParameter, &self.described.aggregate_url);
                    self.client
                        .send_no_wait(req)
                        .await
                        .err()
                        .map(Stop::OriginFailed)
                }
            };
            match stop {
                // The clip ended while probing: decide on what is held.
                Some(Stop::Ended) if self.probe.is_some() => {
                    return if self.settle_probe(run).await {
                        Stop::Ended
                    } else {
                        Stop::Restart
                    };
                }
                Some(stop) => return stop,
                None => {}
            }
        }
    }

    /// Records one frame; what ends the read, if it does.
    async fn on_frame(
        &mut self,
        run: &mut FillRun,
        channel: u8,
        payload: &bytes::Bytes,
    ) -> Option<Stop> {
        let &(track, rtcp) = self.channels.get(&channel)?;
        if rtcp {
            if has_bye(payload) && !self.byes.contains(&track) {
                self.byes.push(track);
            }
            return (self.byes.len() >= self.set_up.len()).then_some(Stop::Ended);
        }
        self.job
            .bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        if let Some(probe) = &mut self.probe {
            if probe.hold(track, payload, Instant::now()) && !self.settle_probe(run).await {
                return Some(Stop::Restart);
            }
            return None;
        }
        run.offer_waiting(track, payload, SystemTime::now()).await;
        self.job.held_ms.store(run.media_ms(), Ordering::Relaxed);
        None
    }

    /// Ends the probe: its packets go to the run when their timestamps are media
    /// time (true); false when they are not (nothing is written).
    async fn settle_probe(&mut self, run: &mut FillRun) -> bool {
        let Some(probe) = self.probe.take() else {
            return true;
        };
        if !probe.timestamps_are_media_time(Instant::now()) {
            return false;
        }
        for (track, rtp) in &probe.held {
            run.offer_waiting(*track, rtp, SystemTime::now()).await;
        }
        self.job.held_ms.store(run.media_ms(), Ordering::Relaxed);
        true
    }
}

/// The prefetch's final state from why it stopped and what the cache holds after it.
fn outcome(stop: &Stop, info: Result<ObjectInfo, String>) -> PrefetchState {
    match (stop, info) {
        (_, Ok(i)) if i.complete => PrefetchState::Complete,
        (Stop::Cancelled, _) => PrefetchState::Cancelled,
        (Stop::Restart, _) => {
            PrefetchState::Failed("the origin's delivery could not be used twice".into())
        }
        (Stop::OriginFailed(e), _) => PrefetchState::Failed(format!("the origin failed: {e}")),
        (Stop::Ended, Ok(_)) => PrefetchState::Partial,
        (Stop::Ended, Err(e)) => PrefetchState::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(complete: bool, ranges: Vec<(u64, u64)>, meta: &mediagate_cache::Meta) -> ObjectInfo {
        ObjectInfo {
            key: mediagate_cache::ObjectKey {
                url: "rtsp://o/vod".into(),
                tracks: vec![0],
            },
            meta: meta.clone(),
            complete,
            ranges,
            size_bytes: 0,
            pinned: false,
            last_used_unix_ms: 0,
        }
    }

    fn stored(sdp: &str) -> mediagate_cache::Meta {
        mediagate_cache::Meta {
            sdp: sdp.into(),
            tracks: Vec::new(),
            duration_ms: Some(30_000),
            validators: Default::default(),
            needed_auth: false,
            fetched_unix_ms: 0,
        }
    }

    #[test]
    fn a_prefetch_resumes_at_the_end_of_the_held_start_of_the_same_content() {
        let meta = stored("v=0\r\nm=video 0 RTP/AVP 96\r\n");
        assert_eq!(resume_point(None, &meta), 0);
        let partial = object(false, vec![(40, 7_500), (12_000, 15_000)], &meta);
        assert_eq!(resume_point(Some(&partial), &meta), 7_500);
        // The clip's start is not held: that is what is missing first.
        let middle = object(false, vec![(5_000, 9_000)], &meta);
        assert_eq!(resume_point(Some(&middle), &meta), 0);
        // Changed content is fetched again from the start.
        let changed = stored("v=0\r\nm=audio 0 RTP/AVP 0\r\n");
        assert_eq!(resume_point(Some(&partial), &changed), 0);
    }

    #[test]
    fn progress_is_held_time_over_the_length() {
        assert_eq!(percent(2_500, Some(10_000), &PrefetchState::Running), 25.0);
        assert_eq!(
            percent(12_000, Some(10_000), &PrefetchState::Running),
            100.0
        );
        assert_eq!(percent(0, None, &PrefetchState::Running), 0.0);
        // Complete is 100 % even when the last packet is a frame short of the end.
        assert_eq!(
            percent(9_950, Some(10_000), &PrefetchState::Complete),
            100.0
        );
        assert_eq!(rate_bps(1_000, Duration::from_secs(2)), 4_000);
        assert_eq!(rate_bps(1_000, Duration::ZERO), 0);
    }

    #[test]
    fn a_fast_delivery_counts_only_when_its_timestamps_are_media_time() {
        let wall = Duration::from_millis(1500);
        // Speed 8 honoured: 1.5 s of wall time carry about 12 s of media.
        assert!(media_outpaces_wall(11_000, wall));
        // Timestamps scaled down by 8 (gst-rtsp-server): the span is about the wall.
        assert!(!media_outpaces_wall(1_500, wall));
        assert!(!media_outpaces_wall(2_900, wall));
        // Too short a look says nothing.
        assert!(!media_outpaces_wall(150, Duration::from_millis(20)));
        // The whole packet budget within 50 ms: 2.2 s of a 100 Mbit/s clip at 44x
        // real time, below the Speed 100 asked, still a fast fill.
        assert!(media_outpaces_wall(2_200, Duration::from_millis(50)));
        // ...unless its timestamps span no more than the wall.
        assert!(!media_outpaces_wall(1_000, Duration::from_millis(600)));
    }

    #[test]
    fn a_bye_is_found_in_a_compound() {
        let mut buf = [0u8; 64];
        let n = {
            let mut w = mediagate_rtp::rtcp::build::CompoundWriter::new(&mut buf);
            w.receiver_report(1, &[]).unwrap();
            w.bye(&[1], None).unwrap();
            w.finish().unwrap()
        };
        assert!(has_bye(&buf[..n]));
        let n = {
            let mut w = mediagate_rtp::rtcp::build::CompoundWriter::new(&mut buf);
            w.receiver_report(1, &[]).unwrap();
            w.finish().unwrap()
        };
        assert!(!has_bye(&buf[..n]));
    }

    #[test]
    fn tracks_are_named_by_sdp_media_index() {
        assert!(same_tracks(&[1, 0, 1], &[0, 1]));
        assert!(!same_tracks(&[1], &[0, 1]));
    }
}
