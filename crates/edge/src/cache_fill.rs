//! Cut-through fill: on a miss, every RTP packet the origin sends for a viewer also goes
//! into a cache object, written by a thread of its own (issue 13 item 1).
//!
//! A fill *run* is what one origin PLAY delivers: it starts at the npt the origin's
//! `Range` answer names and ends at PAUSE, at a seek (the next PLAY starts a new run),
//! when the viewer leaves, or when the origin fails (then not clean: the cache keeps
//! only what verifies). Each packet's media time, in its track's clock units from npt 0,
//! comes from the PLAY answer's `RTP-Info` (RFC 2326 §12.33: `rtptime` is the RTP
//! timestamp of the range start) and the packet's RTP timestamp, unwrapped to 64 bits;
//! so runs of different PLAYs line up in one object. Video keyframes are marked by
//! `mediagate_rtp`'s codec detection, as the hub marks its join points.
//!
//! The viewer never waits for the cache: packets go to the writer through a bounded
//! channel, and a writer that falls behind or fails abandons the fill (what it wrote
//! is ended cleanly, it was contiguous), never the viewer.
//!
//! What it does not: decide whether to fill (the source does, from the route's policy)
//! or serve anything (`cache_play`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use mediagate_cache::{FillWriter, Meta, ObjectInfo, ObjectKey, PacketIn, TrackMeta, Validators};
use mediagate_rtp::Codec;
use mediagate_rtp::TimestampUnwrapper;
use mediagate_rtsp::headers::{Range, RtpInfo};
use mediagate_rtsp::{Response, TypedHeader};

use crate::cache_store::CacheStore;
use crate::upstream::Described;

/// Packets queued for the writer before the fill is abandoned (about 4 s of a
/// 1 Mbit/s stream): enough to ride out a slow disk write, small enough to bound memory.
const WRITER_QUEUE: usize = 1024;

/// What a session's fills write to: the object and how its tracks map.
#[derive(Debug, Clone)]
pub(crate) struct FillPlan {
    pub store: Arc<CacheStore>,
    pub key: ObjectKey,
    /// The object's metadata, without its fetch time (set at each run's start).
    pub meta: Meta,
    /// The route's `cache_max_object`: the fill stops (cleanly) beyond it.
    pub max_object_bytes: u64,
    /// Per described track: its slot in `key.tracks`, if the viewer set it up.
    pub slots: Vec<Option<u8>>,
    pub codecs: Vec<Codec>,
}

/// The object a viewer's variant (the tracks it SETUP) is stored as.
pub(crate) fn object_key(origin_url: &str, d: &Described, set_up: &[usize]) -> ObjectKey {
    let mut tracks: Vec<usize> = set_up
        .iter()
        .filter_map(|&i| d.tracks.get(i).map(|t| t.media_index))
        .collect();
    tracks.sort_unstable();
    tracks.dedup();
    ObjectKey {
        url: origin_url.to_owned(),
        tracks,
    }
}

/// The object's metadata for `d`. The SDP is stored without the lines that name one
/// origin session rather than the content (`freshness::per_session_line`: the `o=`
/// line, whose session id gst-rtsp-server draws afresh for every DESCRIBE of
/// unchanged content, and the `a=ssrc` lines of RFC 5576, whose SSRC and CNAME it
/// draws for every pipeline); the `o=` version goes into the validators instead.
pub(crate) fn object_meta(d: &Described, key: &ObjectKey) -> Meta {
    let text = String::from_utf8_lossy(&d.sdp.to_bytes()).into_owned();
    let sdp: String = text
        .split_inclusive('\n')
        .filter(|l| !crate::freshness::per_session_line(l))
        .collect();
    let tracks = key
        .tracks
        .iter()
        .filter_map(|mi| d.tracks.iter().find(|t| t.media_index == *mi))
        .map(|t| TrackMeta {
            clock_rate: t.clock_rate,
            is_video: t.is_video,
            payload_type: d
                .sdp
                .media()
                .get(t.media_index)
                .and_then(|m| m.payload_types().next())
                .unwrap_or(0),
        })
        .collect();
    let duration_ms = d
        .sdp
        .range()
        .and_then(|r| r.npt())
        .and_then(Result::ok)
        .and_then(|r| match r.end {
            Some(mediagate_sdp::NptTime::At(end)) => u64::try_from(end.as_millis()).ok(),
            _ => None,
        });
    Meta {
        sdp,
        tracks,
        duration_ms,
        validators: Validators {
            sdp_origin: d.sdp.origin().map(|o| o.session_version.to_string()),
            ..d.caching.clone()
        },
        needed_auth: d.needed_auth,
        fetched_unix_ms: 0,
    }
}

impl FillPlan {
    /// Per described track `i`, the slot of the variant (None if not set up).
    pub fn new(
        store: Arc<CacheStore>,
        origin_url: &str,
        d: &Described,
        set_up: &[usize],
        max_object_bytes: u64,
    ) -> Self {
        let key = object_key(origin_url, d, set_up);
        let meta = object_meta(d, &key);
        let slots = d
            .tracks
            .iter()
            .map(|t| {
                key.tracks
                    .iter()
                    .position(|mi| *mi == t.media_index)
                    .and_then(|p| u8::try_from(p).ok())
            })
            .collect();
        Self {
            store,
            key,
            meta,
            max_object_bytes,
            slots,
            codecs: d.tracks.iter().map(|t| t.codec).collect(),
        }
    }
}

/// One track's media clock in a run.
#[derive(Debug, Clone)]
struct TrackClock {
    slot: u8,
    /// Media ticks of the run's start (its npt in this track's clock).
    start_ticks: i64,
    /// The extended RTP timestamp of the run's start.
    rtptime: i64,
    unwrap: TimestampUnwrapper,
    codec: Codec,
    is_video: bool,
    clock: u32,
    /// The first packet was checked against the range start.
    anchored: bool,
}

/// Media time and keyframe marks of one run's packets, sans-IO.
#[derive(Debug, Clone)]
pub(crate) struct RunClock {
    /// Per described track; None for tracks not in the object.
    tracks: Vec<Option<TrackClock>>,
    start_ms: u64,
}

/// One packet placed in media time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placed {
    pub slot: u8,
    pub media_ticks: u64,
    pub keyframe: bool,
    /// `media_ticks` in ms.
    pub media_ms: u64,
}

impl RunClock {
    /// From the origin's PLAY answer: its `Range` start and each set-up track's
    /// `rtptime`. None when either is missing (that run is not recorded: without them
    /// its packets cannot be placed in time).
    pub fn from_play(plan: &FillPlan, d: &Described, origin: &Response) -> Option<RunClock> {
        Self::from_answer(&plan.slots, &plan.codecs, d, origin)
    }

    /// [`Self::from_play`] for tracks placed in `slots` (per described track), with
    /// `codecs` for keyframe marks: also what places a viewer's origin packets in
    /// media time when nothing is recorded (`seam`).
    pub fn from_answer(
        slots: &[Option<u8>],
        codecs: &[Codec],
        d: &Described,
        origin: &Response,
    ) -> Option<RunClock> {
        let start_ms = origin
            .headers
            .get("Range")
            .and_then(|v| Range::parse_value(v).ok())
            .and_then(|r| r.npt_start_millis())?;
        let info = RtpInfo::parse_value(origin.headers.get("RTP-Info")?).ok()?;
        let mut tracks = Vec::with_capacity(d.tracks.len());
        for (i, t) in d.tracks.iter().enumerate() {
            let Some(slot) = slots.get(i).copied().flatten() else {
                tracks.push(None);
                continue;
            };
            let entry = info.0.iter().find(|e| {
                t.control_url == e.url
                    || t.control_url.ends_with(&e.url)
                    || e.url.ends_with(&t.control_url)
            })?;
            tracks.push(Some(TrackClock::new(
                slot,
                start_ms,
                t.clock_rate,
                entry.rtptime?,
                codecs.get(i).copied().unwrap_or(Codec::Other),
                t.is_video,
            )));
        }
        Some(RunClock { tracks, start_ms })
    }

    pub fn start_ms(&self) -> u64 {
        self.start_ms
    }

    /// Places the RTP packet `rtp` of described track `track`; None for tracks not
    /// in the object, packets that are not RTP, and packets before the run's start.
    pub fn place(&mut self, track: usize, rtp: &[u8]) -> Option<Placed> {
        let t = self.tracks.get_mut(track)?.as_mut()?;
        let ts = mediagate_rtp::RtpPacket::parse(rtp).ok()?.timestamp();
        let extended = t.unwrap.extend(ts);
        let mut ticks = t.start_ticks + (extended - t.rtptime);
        if !t.anchored {
            t.anchored = true;
            // gst-rtsp-server 1.22, PLAYed with a Range it snaps to a keyframe, names
            // in RTP-Info the video rtptime of npt 0, not of the range start: its
            // first packet would land `start` too late. A first packet more than a
            // second away from the range start places the track by itself instead.
            if (ticks - t.start_ticks).abs() > i64::from(t.clock) {
                tracing::debug!(
                    track,
                    off_ms = (ticks - t.start_ticks) * 1000 / i64::from(t.clock.max(1)),
                    "the origin's RTP-Info rtptime is not its range start; placing by the first packet"
                );
                t.rtptime = extended;
                ticks = t.start_ticks;
            }
        }
        let media_ticks = u64::try_from(ticks).ok()?;
        // Audio frames and codecs we cannot inspect are each a place to start.
        let keyframe =
            !t.is_video || t.codec == Codec::Other || t.codec.is_keyframe_start_packet(rtp);
        let media_ms = u64::try_from(u128::from(media_ticks) * 1000 / u128::from(t.clock.max(1)))
            .unwrap_or(u64::MAX);
        Some(Placed {
            slot: t.slot,
            media_ticks,
            keyframe,
            media_ms,
        })
    }
}

impl RunClock {
    /// Where origin RTP timestamp `ts` of described track `track` (a sender report's)
    /// falls: the track's slot and the media time in µs, placed as the run's packets
    /// are. None for a track not in the object, or before its first packet anchored
    /// it.
    pub fn media_us_at(&self, track: usize, ts: u32) -> Option<(u8, u64)> {
        let t = self.tracks.get(track)?.as_ref()?;
        if !t.anchored {
            return None;
        }
        // A copy: a report must not move the unwrapping of the packets themselves.
        let extended = t.unwrap.clone().extend(ts);
        let ticks = u64::try_from(t.start_ticks + (extended - t.rtptime)).ok()?;
        let us = u128::from(ticks) * 1_000_000 / u128::from(t.clock.max(1));
        Some((t.slot, u64::try_from(us).ok()?))
    }
}

impl TrackClock {
    fn new(
        slot: u8,
        start_ms: u64,
        clock: u32,
        rtptime: u32,
        codec: Codec,
        is_video: bool,
    ) -> Self {
        let mut unwrap = TimestampUnwrapper::new();
        let rtptime = unwrap.extend(rtptime);
        let start_ticks =
            i64::try_from(u128::from(start_ms) * u128::from(clock) / 1000).unwrap_or(i64::MAX / 2);
        Self {
            slot,
            start_ticks,
            rtptime,
            unwrap,
            codec,
            is_video,
            clock,
            anchored: false,
        }
    }
}

enum FillMsg {
    Packet {
        placed: Placed,
        arrival_unix_ms: u64,
        rtp: Bytes,
    },
    End {
        clean: bool,
    },
}

/// One run being recorded; the tap side, owned by the origin session's task.
#[derive(Debug)]
pub(crate) struct FillRun {
    tx: Option<SyncSender<FillMsgBox>>,
    clock: RunClock,
    store: Arc<CacheStore>,
    /// Set when the origin failed, for a writer that finds the channel closed.
    origin_failed: Arc<AtomicBool>,
    /// The latest media time placed so far, in ms (a prefetch's progress).
    media_ms: u64,
    /// Signalled by the writer when the queue has room again (see [`ROOM_EVERY`]).
    room: Arc<tokio::sync::Notify>,
}

/// The writer tells a waiting [`FillRun::offer_waiting`] about room after taking this
/// many packets, and whenever it has emptied the queue: a waiter wakes once per batch
/// of room rather than once a packet, and never sleeps while the writer idles.
const ROOM_EVERY: u32 = 256;

/// How a run ended in the cache: the object as it stands after it, or why ending failed.
pub(crate) type RunEnded = tokio::sync::oneshot::Receiver<Result<ObjectInfo, String>>;

/// `FillMsg` behind a box-free newtype so `FillRun` can derive `Debug`.
struct FillMsgBox(FillMsg);

impl std::fmt::Debug for FillMsgBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FillMsg")
    }
}

impl FillRun {
    /// Begins a run at the start the origin's PLAY answer names. None when the answer
    /// cannot place packets in time, when another viewer is filling this object (one
    /// filler per object: this viewer just passes through) or the cache refuses.
    pub fn begin(
        plan: &FillPlan,
        d: &Described,
        origin: &Response,
        now: SystemTime,
    ) -> Option<FillRun> {
        Self::begin_with(plan, d, origin, now, None)
    }

    /// [`Self::begin`], with how the run ended in the cache reported once its writer
    /// is done (a prefetch waits for it to say whether the object is complete).
    pub fn begin_reporting(
        plan: &FillPlan,
        d: &Described,
        origin: &Response,
        now: SystemTime,
    ) -> Option<(FillRun, RunEnded)> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        Self::begin_with(plan, d, origin, now, Some(tx)).map(|run| (run, rx))
    }

    fn begin_with(
        plan: &FillPlan,
        d: &Described,
        origin: &Response,
        now: SystemTime,
        report: Option<tokio::sync::oneshot::Sender<Result<ObjectInfo, String>>>,
    ) -> Option<FillRun> {
        let clock = RunClock::from_play(plan, d, origin)?;
        let mut meta = plan.meta.clone();
        meta.fetched_unix_ms = unix_ms(now);
        let writer = match plan
            .store
            .lock()
            .begin_fill(&plan.key, &meta, clock.start_ms(), now)
        {
            Ok(w) => w,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                tracing::debug!(url = %plan.key.url, "another viewer fills this object; passing through");
                return None;
            }
            Err(e) => {
                tracing::warn!(url = %plan.key.url, error = %e, "cache fill could not start");
                return None;
            }
        };
        let (tx, rx) = sync_channel(WRITER_QUEUE);
        let store = plan.store.clone();
        let max = plan.max_object_bytes;
        let key = plan.key.clone();
        let origin_failed = Arc::new(AtomicBool::new(false));
        let failed = origin_failed.clone();
        let room = Arc::new(tokio::sync::Notify::new());
        let room_writer = room.clone();
        let spawned = std::thread::Builder::new()
            .name("cache-fill".into())
            .spawn(move || {
                let rx = Roomy {
                    rx,
                    room: &room_writer,
                    taken: 0,
                };
                let ended = write_run(&store, writer, rx, max, &key, &failed);
                if let Some(report) = report {
                    let _ = report.send(ended);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cache fill thread could not start");
            return None;
        }
        Some(FillRun {
            tx: Some(tx),
            clock,
            store: plan.store.clone(),
            origin_failed,
            media_ms: 0,
            room,
        })
    }

    /// The latest media time recorded so far, in ms from npt 0.
    pub fn media_ms(&self) -> u64 {
        self.media_ms
    }

    /// Records one RTP packet like [`Self::offer`], but waits for room when the writer
    /// is behind instead of giving the fill up: a prefetch has no viewer to keep
    /// going, so the origin connection waits (TCP back-pressure) for the disk.
    pub async fn offer_waiting(&mut self, track: usize, rtp: &Bytes, now: SystemTime) {
        let Some(tx) = &self.tx else { return };
        let Some(placed) = self.clock.place(track, rtp) else {
            return;
        };
        self.media_ms = self.media_ms.max(placed.media_ms);
        let mut msg = FillMsgBox(FillMsg::Packet {
            placed,
            arrival_unix_ms: unix_ms(now),
            rtp: rtp.clone(),
        });
        loop {
            match tx.try_send(msg) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    msg = back;
                    // A notification given since the last wait is kept (a permit):
                    // room made between the try and this wait is not missed.
                    self.room.notified().await;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.tx = None;
                    return;
                }
            }
        }
    }

    /// Records one RTP packet of described track `track`. Never blocks: a writer that
    /// cannot keep up loses the fill.
    pub fn offer(&mut self, track: usize, rtp: &Bytes, now: SystemTime) {
        let Some(tx) = &self.tx else { return };
        let Some(placed) = self.clock.place(track, rtp) else {
            return;
        };
        self.media_ms = self.media_ms.max(placed.media_ms);
        let msg = FillMsgBox(FillMsg::Packet {
            placed,
            arrival_unix_ms: unix_ms(now),
            rtp: rtp.clone(),
        });
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!("cache writer fell behind; fill abandoned, the viewer goes on");
                self.store.count_abandoned();
                // What reached the writer is contiguous: it ends that cleanly.
                self.tx = None;
            }
            Err(TrySendError::Disconnected(_)) => self.tx = None,
        }
    }

    /// Ends the run: `clean` unless the origin failed mid-way.
    pub fn end(mut self, clean: bool) {
        if !clean {
            // Set first: if the queue is full the writer ends on the disconnect, and
            // must not take that for a clean end.
            self.origin_failed.store(true, Ordering::Relaxed);
        }
        if let Some(tx) = self.tx.take() {
            let _ = tx.try_send(FillMsgBox(FillMsg::End { clean }));
        }
    }
}

impl Drop for FillRun {
    fn drop(&mut self) {
        // Dropped without `end` (the task ended): what was queued is contiguous.
        self.tx.take();
    }
}

/// The writer's end of the queue, telling a waiting sender about room.
struct Roomy<'a> {
    rx: Receiver<FillMsgBox>,
    room: &'a tokio::sync::Notify,
    taken: u32,
}

impl Roomy<'_> {
    /// The next message, blocking; tells the sender about room every
    /// [`ROOM_EVERY`] messages and before blocking on an empty queue.
    fn recv(&mut self) -> Result<FillMsgBox, std::sync::mpsc::RecvError> {
        let msg = match self.rx.try_recv() {
            Ok(m) => m,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(std::sync::mpsc::RecvError)
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                self.taken = 0;
                self.room.notify_one();
                self.rx.recv()?
            }
        };
        self.taken += 1;
        if self.taken >= ROOM_EVERY {
            self.taken = 0;
            self.room.notify_one();
        }
        Ok(msg)
    }
}

/// The writer thread: appends until the run ends, then ends the fill in the cache. An
/// object that outgrows the route's `cache_max_object` is not kept at all (its other
/// runs included): the route does not cache content that large.
fn write_run(
    store: &CacheStore,
    mut writer: FillWriter,
    mut rx: Roomy<'_>,
    max_object_bytes: u64,
    key: &ObjectKey,
    origin_failed: &AtomicBool,
) -> Result<ObjectInfo, String> {
    let url = key.url.as_str();
    let clean;
    let mut writing = true;
    let mut write_failed = false;
    let mut too_big = false;
    loop {
        match rx.recv() {
            Ok(FillMsgBox(FillMsg::Packet {
                placed,
                arrival_unix_ms,
                rtp,
            })) => {
                if !writing {
                    continue;
                }
                let p = PacketIn {
                    track: placed.slot,
                    media_ticks: placed.media_ticks,
                    arrival_unix_ms,
                    keyframe: placed.keyframe,
                    rtp: &rtp,
                };
                if let Err(e) = writer.push(&p) {
                    tracing::warn!(url, error = %e, "cache write failed; fill abandoned");
                    store.count_abandoned();
                    write_failed = true;
                    writing = false;
                } else if writer.bytes_written() > max_object_bytes {
                    tracing::info!(
                        url,
                        max_object_bytes,
                        "object passed the route's cache_max_object; not kept, the viewer goes on"
                    );
                    writing = false;
                    too_big = true;
                }
            }
            Ok(FillMsgBox(FillMsg::End { clean: c })) => {
                clean = c;
                break;
            }
            Err(_) => {
                clean = !origin_failed.load(Ordering::Relaxed);
                break;
            }
        }
    }
    let clean = clean && !write_failed;
    let mut cache = store.lock();
    let ended = cache.end_fill(writer, clean, SystemTime::now());
    if too_big {
        if let Err(e) = cache.purge(key) {
            tracing::warn!(url, error = %e, "an object past cache_max_object could not be removed");
        }
        return Err(format!(
            "the object passed the route's cache_max_object ({max_object_bytes} bytes) and was not kept"
        ));
    }
    drop(cache);
    match ended {
        Ok(info) => {
            tracing::debug!(
                url,
                clean,
                complete = info.complete,
                ranges = ?info.ranges,
                "cache fill run ended"
            );
            Ok(info)
        }
        Err(e) => {
            tracing::warn!(url, error = %e, "cache fill could not be ended");
            Err(e.to_string())
        }
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(ts: u32) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 1];
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0xAA]);
        p
    }

    fn clock(start_ms: u64, rtptime: u32, clock: u32) -> RunClock {
        RunClock {
            tracks: vec![Some(TrackClock::new(
                0,
                start_ms,
                clock,
                rtptime,
                Codec::Other,
                false,
            ))],
            start_ms,
        }
    }

    #[test]
    fn media_time_counts_from_npt_zero_and_survives_a_timestamp_wrap() {
        // A run starting at npt 2 s whose rtptime is just below the wrap.
        let mut c = clock(2000, u32::MAX - 100, 90_000);
        let at_start = c.place(0, &rtp(u32::MAX - 100)).unwrap();
        assert_eq!(at_start.media_ticks, 180_000);
        let after_wrap = c.place(0, &rtp(899)).unwrap();
        assert_eq!(after_wrap.media_ticks, 180_000 + 1000);
        // A B-frame slightly behind still lands at its own time.
        assert_eq!(
            c.place(0, &rtp(u32::MAX - 50)).unwrap().media_ticks,
            180_050
        );
    }

    /// Two DESCRIBE answers for one unchanged file, as gst-rtsp-server 1.22 gives
    /// them: a new session id in `o=` and new SSRCs and CNAMEs in `a=ssrc:`.
    fn described(session: &str, ssrc: &str) -> Described {
        let sdp = format!(
            "v=0\r\no=- {session} 1 IN IP4 127.0.0.1\r\ns=Session streamed with GStreamer\r\nt=0 0\r\na=range:npt=0-10.005\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:stream=0\r\na=ssrc:{ssrc} cname:user{ssrc}@host-1\r\n"
        );
        Described {
            sdp: mediagate_sdp::SessionDescription::parse(sdp.as_bytes()).unwrap(),
            tracks: Vec::new(),
            live: false,
            session_timeout: 60,
            aggregate_url: "rtsp://o/vod".into(),
            caching: Default::default(),
            needed_auth: false,
        }
    }

    #[test]
    fn the_stored_description_leaves_out_what_each_describe_draws_afresh() {
        let key = ObjectKey {
            url: "rtsp://o/vod".into(),
            tracks: Vec::new(),
        };
        let a = object_meta(&described("111", "2442689126"), &key);
        let b = object_meta(&described("222", "778547638"), &key);
        assert_eq!(a.sdp, b.sdp);
        assert!(
            !a.sdp.contains("a=ssrc") && !a.sdp.contains("o="),
            "{}",
            a.sdp
        );
        assert!(a.sdp.contains("a=control:stream=0"), "{}", a.sdp);
        assert_eq!(a.duration_ms, Some(10_005));
        // The version is compared on its own.
        assert_eq!(a.validators.sdp_origin.as_deref(), Some("1"));
    }

    #[test]
    fn a_first_packet_far_from_the_range_start_places_its_track() {
        // A run from npt 3 s whose RTP-Info rtptime is npt 0's: the first packet
        // carries rtptime + 3 s.
        let mut c = clock(3000, 1_000_000, 90_000);
        let first = c.place(0, &rtp(1_000_000 + 270_000)).unwrap();
        assert_eq!(first.media_ms, 3000);
        assert_eq!(
            c.place(0, &rtp(1_000_000 + 273_600)).unwrap().media_ms,
            3040
        );
        // Close to the start (a keyframe just before it, a packet just after): kept.
        let mut c = clock(3000, 1_000_000, 90_000);
        assert_eq!(c.place(0, &rtp(1_000_000 + 9_000)).unwrap().media_ms, 3100);
    }

    #[test]
    fn packets_before_the_run_start_and_unknown_tracks_are_not_placed() {
        let mut c = clock(0, 1000, 8000);
        assert_eq!(c.place(0, &rtp(500)), None);
        assert_eq!(c.place(1, &rtp(1500)), None);
        assert_eq!(c.place(0, b"\x80"), None);
        assert!(
            c.place(0, &rtp(1500)).unwrap().keyframe,
            "audio starts anywhere"
        );
    }
}
