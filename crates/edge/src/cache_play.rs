//! Serving a hit: one viewer's playback of a held range of a cache object, with no
//! origin media session (issue 13 item 3).
//!
//! The player takes packets in media-time order from the object's shared blocks
//! (`cache_shared`: read from disk once, the cache verifying each packet's checksum,
//! and shared in memory by every viewer of the object), reading the next block while
//! it plays the current one; the player task sends each packet when its
//! media time is due, measured from the PLAY (a small lead is allowed so the player's
//! jitter buffer fills at once; packets due within 100 ms of each other go out as one
//! batch, one `sendmmsg` per UDP track), and rewrites its sequence number, timestamp and SSRC
//! per viewer ([`Rewriter`]): sequence numbers run on without a gap and timestamps
//! continue across PAUSE and seek, and the PLAY answer's `RTP-Info` (url; seq;
//! rtptime) and `Range` name exactly where the first packets sent sit (RFC 2326
//! §12.33, §12.29). The range starts at the keyframe at or before the asked time.
//! Nothing is sent before the viewer's session says the PLAY answer is queued
//! ([`AnswerQueued`], bounded by [`ANSWER_WAIT`]), so the answer precedes the media it
//! describes on an interleaved connection. Viewers that play from the same place (a
//! first PLAY, or a resume after PAUSE or a seek) share one playout group
//! ([`group`]): one timer and one numbering pass for all of them.
//!
//! At the end of the held range, the viewer is told with an RTCP BYE per track (RFC
//! 3550 §6.6), which players take as the end of the stream; a held range that stops
//! before the end of the clip is handed to the player's continuation instead
//! (`source::Continuation`): the viewer's origin session goes on from there with this
//! player's [`Rewriter`], so the viewer sees one stream (`seam`).
//!
//! Every 5 s (the first after 0.5 s) each track sends an RTCP sender report with an
//! SDES CNAME (RFC 3550 §6.4.1, §6.5.1): its NTP timestamp is the wall clock and its
//! RTP timestamp the media time playing at that instant in the viewer's own numbering,
//! with the packets and payload octets sent under that SSRC, so players can sync
//! tracks by SR as well as by `RTP-Info`. UDP viewers' receiver reports, read from the
//! session's RTCP port (on a shared pair by its one reader, which credits each viewer
//! by source address: `shared_pairs`), give the access log's `lost` (TCP viewers'
//! arrive on their interleaved RTCP channel, which the viewer session reads).
//!
//! What it does not: change speed (`Scale` is not honoured on hits), or answer
//! receiver reports with LSR/DLSR-based round-trip figures.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mediagate_cache::{ObjectKey, PacketOut};
use mediagate_rtp::rtcp::build::CompoundWriter;
use mediagate_udp::{BatchSender, GsoMode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cache_shared::{Block, BlockNext, ObjectVersion};
use crate::cache_store::CacheStore;
use crate::conn_out::{AnswerQueued, ConnOut};
use crate::ports::SocketPair;
use crate::sink::{Tally, TrackDest};
use crate::source::Continuation;

mod group;
use group::Seat;
pub(crate) use group::{GroupCounts, PlayoutGroups};

/// The longest a PLAY's first packets wait for the viewer's session to queue the
/// answer to it.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// How far ahead of its media time a packet may go out.
const LEAD: Duration = Duration::from_millis(300);

/// Time between RTCP sender reports of a track, and before the first (so every track
/// has sent something by then).
pub(crate) const SR_INTERVAL: Duration = Duration::from_secs(5);
pub(crate) const FIRST_SR: Duration = Duration::from_millis(500);

/// Packets due within this much of the first of a batch go out with it, so a packet
/// may leave up to `LEAD + BATCH_WINDOW` before its media time.
const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// Packets in one batch, at most.
const MAX_BATCH: usize = 64;

/// The gap left in media time after a seek, so the last packet before it and the
/// first after it never share a timestamp.
const SEEK_GAP_MS: i64 = 40;

/// Why there is no packet at the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeEnd {
    /// The end of the held range.
    End,
    /// A packet did not verify: the range ends there.
    Failed,
}

/// One track of the viewer's output.
#[derive(Debug, Clone)]
struct OutTrack {
    ssrc: u32,
    next_seq: u16,
    ts_base: u32,
    clock: u32,
    /// RTP packets and payload octets sent under `ssrc` (RFC 3550 §6.4.1: they wrap).
    packets: u32,
    octets: u32,
}

/// Per-viewer numbering of what the player sends, sans-IO. Output timestamps are
/// `ts_base + media_ticks + shift` with one shift in ms for every track, so tracks
/// stay in sync; a seek changes the shift so that the output continues.
#[derive(Debug, Clone)]
pub(crate) struct Rewriter {
    tracks: Vec<OutTrack>,
    shift_ms: i64,
    /// The highest output time sent, in ms (media time + shift).
    last_out_ms: Option<i64>,
    /// The player's pacing when it handed the numbering on at the end of a held range:
    /// the wall clock (NTP) and the media time (µs) playing at that instant, so the
    /// origin's side goes on with the same sender-report clock (see `seam`).
    pace: Option<(u64, u64)>,
}

impl Rewriter {
    /// `clocks`: the object's tracks' clock rates; `random` draws SSRCs and bases.
    pub fn new(clocks: &[u32], mut random: impl FnMut() -> u32) -> Self {
        let tracks = clocks
            .iter()
            .map(|&clock| OutTrack {
                ssrc: random(),
                next_seq: (random() & 0x7fff) as u16,
                ts_base: random(),
                clock: clock.max(1),
                packets: 0,
                octets: 0,
            })
            .collect();
        Self {
            tracks,
            shift_ms: 0,
            last_out_ms: None,
            pace: None,
        }
    }

    /// A new range starts at `start_ms` (a seek): output time continues from the last
    /// packet sent.
    pub fn seek_to(&mut self, start_ms: u64) {
        if let Some(last) = self.last_out_ms {
            self.shift_ms = last + SEEK_GAP_MS - i64::try_from(start_ms).unwrap_or(i64::MAX);
        }
    }

    fn shift_ticks(&self, t: &OutTrack) -> i64 {
        self.shift_ms * i64::from(t.clock) / 1000
    }

    /// The RTP timestamp of media time `ms` on track `slot` (what `RTP-Info` says).
    pub fn rtptime_at(&self, slot: usize, ms: u64) -> Option<u32> {
        self.rtptime_at_us(slot, ms.saturating_mul(1000))
    }

    /// The RTP timestamp of media time `us` (microseconds) on track `slot`.
    pub fn rtptime_at_us(&self, slot: usize, us: u64) -> Option<u32> {
        let t = self.tracks.get(slot)?;
        let ticks = i128::from(us) * i128::from(t.clock) / 1_000_000;
        Some(
            t.ts_base
                .wrapping_add((ticks as i64 + self.shift_ticks(t)) as u32),
        )
    }

    /// Records that media time `media_us` is playing at wall-clock NTP time `ntp`, the
    /// pairing the player's sender reports make, for whoever takes the numbering over.
    pub fn set_pace(&mut self, ntp: u64, media_us: u64) {
        self.pace = Some((ntp, media_us));
    }

    /// The pairing [`Rewriter::set_pace`] recorded, once.
    pub fn take_pace(&mut self) -> Option<(u64, u64)> {
        self.pace.take()
    }

    /// An RTCP compound packet for track `slot`: a sender report (RFC 3550 §6.4.1)
    /// whose RTP timestamp is media time `media_us` and whose NTP timestamp is `ntp`
    /// (the same instant), with the packets and octets sent so far, and the SDES CNAME
    /// every compound packet carries (§6.1), one per viewer so players sync its tracks.
    /// None before the track has sent anything.
    pub fn sender_report(&self, slot: usize, media_us: u64, ntp: u64) -> Option<Bytes> {
        let t = self.tracks.get(slot)?;
        if t.packets == 0 {
            return None;
        }
        let info = mediagate_rtp::rtcp::SenderInfo {
            ssrc: t.ssrc,
            ntp_timestamp: ntp,
            rtp_timestamp: self.rtptime_at_us(slot, media_us)?,
            packet_count: t.packets,
            octet_count: t.octets,
        };
        let cname = format!("mediagate-{:08x}", self.tracks.first()?.ssrc);
        let mut buf = [0u8; 128];
        let mut w = CompoundWriter::new(&mut buf);
        w.sender_report(&info, &[])
            .and_then(|w| w.sdes_cname(t.ssrc, cname.as_bytes()))
            .ok()?;
        let n = w.finish().ok()?;
        Some(Bytes::copy_from_slice(&buf[..n]))
    }

    /// The media time in ms of output timestamp `ts` on track `slot` (the inverse of
    /// [`Rewriter::rtptime_at`], for output times under 2^32 ticks).
    fn media_ms_of(&self, slot: usize, ts: u32) -> Option<u64> {
        let t = self.tracks.get(slot)?;
        let out_ms = media_ms(u64::from(ts.wrapping_sub(t.ts_base)), t.clock) as i64;
        u64::try_from(out_ms - self.shift_ms).ok()
    }

    /// The sequence number the next packet of `slot` gets.
    pub fn next_seq(&self, slot: usize) -> Option<u16> {
        self.tracks.get(slot).map(|t| t.next_seq)
    }

    pub fn ssrc(&self, slot: usize) -> Option<u32> {
        self.tracks.get(slot).map(|t| t.ssrc)
    }

    /// The viewer's copy of `p`; None when it is not a valid RTP packet.
    pub fn rewrite(&mut self, p: &PacketOut) -> Option<Bytes> {
        let head = self.next_head(p)?;
        let mut buf = BytesMut::with_capacity(p.rtp.len());
        buf.extend_from_slice(&head);
        buf.extend_from_slice(p.rtp.get(RTP_FIXED..)?);
        Some(buf.freeze())
    }

    /// The viewer's copy of `p` in two parts: its own RTP fixed header and the rest of
    /// the packet, shared (no copy); None when it is not a valid RTP packet.
    pub fn rewrite_split(&mut self, p: &PacketOut) -> Option<([u8; RTP_FIXED], Bytes)> {
        let head = self.next_head(p)?;
        Some((head, p.rtp.slice(RTP_FIXED..)))
    }

    /// The RTP fixed header (RFC 3550 §5.1) the viewer gets for `p`: sequence number,
    /// timestamp and SSRC are its own; CSRCs and extensions after it are unchanged.
    fn next_head(&mut self, p: &PacketOut) -> Option<[u8; RTP_FIXED]> {
        let payload = mediagate_rtp::RtpPacket::parse(&p.rtp)
            .ok()?
            .payload()
            .len();
        let shift_ms = self.shift_ms;
        let t = self.tracks.get_mut(usize::from(p.track))?;
        let mut head: [u8; RTP_FIXED] = p.rtp.get(..RTP_FIXED)?.try_into().ok()?;
        let shift = shift_ms * i64::from(t.clock) / 1000;
        let ts = t
            .ts_base
            .wrapping_add((p.media_ticks as i64 + shift) as u32);
        head[2..4].copy_from_slice(&t.next_seq.to_be_bytes());
        head[4..8].copy_from_slice(&ts.to_be_bytes());
        head[8..12].copy_from_slice(&t.ssrc.to_be_bytes());
        t.next_seq = t.next_seq.wrapping_add(1);
        t.packets = t.packets.wrapping_add(1);
        t.octets = t.octets.wrapping_add(payload as u32);
        let out_ms = media_ms(p.media_ticks, t.clock) as i64 + shift_ms;
        self.last_out_ms = Some(self.last_out_ms.map_or(out_ms, |l| l.max(out_ms)));
        Some(head)
    }
}

/// Bytes of the RTP fixed header, the part a viewer's copy rewrites.
const RTP_FIXED: usize = 12;

/// A packet of a batch as the viewer gets it.
#[derive(Debug)]
enum Item {
    /// A UDP viewer's datagram (its own copy: one datagram is one buffer).
    Whole(Bytes),
    /// An interleaved viewer's frame: its own fixed header, the rest shared.
    Split([u8; RTP_FIXED], Bytes),
}

impl Item {
    /// The sequence number and timestamp the viewer's copy carries.
    fn seq_ts(&self) -> (u16, u32) {
        let head: &[u8] = match self {
            Item::Whole(d) => d,
            Item::Split(h, _) => h,
        };
        match (head.get(2..4), head.get(4..8)) {
            (Some(seq), Some(ts)) => (
                u16::from_be_bytes([seq[0], seq[1]]),
                u32::from_be_bytes([ts[0], ts[1], ts[2], ts[3]]),
            ),
            _ => (0, 0),
        }
    }
}

/// Media time in ms of `ticks` at `clock` Hz.
pub(crate) fn media_ms(ticks: u64, clock: u32) -> u64 {
    u64::try_from(u128::from(ticks) * 1000 / u128::from(clock.max(1))).unwrap_or(u64::MAX)
}

/// The media time (µs) playing at `now` for a player that started media time
/// `start_ms` at `wall0`: packets are due at wall0 + (ms - start_ms).
pub(crate) fn media_us_at(start_ms: u64, wall0: Instant, now: Instant) -> u64 {
    start_ms
        .saturating_mul(1000)
        .saturating_add(u64::try_from(now.duration_since(wall0).as_micros()).unwrap_or(0))
}

/// When a packet of media time `ms` is due, for a PLAY that started sending media
/// time `start_ms` at `wall0`.
pub(crate) fn due(wall0: Instant, start_ms: u64, ms: u64) -> Instant {
    (wall0 + Duration::from_millis(ms.saturating_sub(start_ms)))
        .checked_sub(LEAD)
        .map_or(wall0, |t| t.max(wall0))
}

/// Where the viewer's tracks go: per object slot, the destination and (UDP) the
/// session's own socket pair.
#[derive(Debug, Clone)]
pub(crate) struct PlayerOut {
    pub conn: ConnOut,
    pub dests: Vec<Option<(TrackDest, Option<Arc<SocketPair>>)>>,
    pub tally: Arc<Tally>,
    /// Where the viewer's stream goes on when the held range ends before the clip
    /// does (`source::Continuation`); None: it ends there, with a BYE.
    pub at_end: Option<Arc<Continuation>>,
}

/// What a PLAY answer says about where the player starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlayStart {
    pub start_ms: u64,
    /// Per object slot: (seq, rtptime) of its first packet.
    pub tracks: Vec<(u16, u32)>,
}

/// The state that survives a PAUSE.
#[derive(Debug)]
struct State {
    /// Where the player is: the packet at the cursor is the next to send.
    feed: Cursor,
    rewriter: Rewriter,
    clocks: Vec<u32>,
    /// Where playback resumes when the next packet's block is not in memory.
    position_ms: u64,
    /// The held range ended (a BYE was sent).
    ended: bool,
    /// Packets already numbered that the viewer has not been sent yet (a playout
    /// group's batch a slow member could not take): they go out first.
    pending: Vec<(usize, Item)>,
}

impl State {
    /// Nothing was ever sent under this state's numbering: the viewer may take a
    /// playout group's instead.
    fn is_fresh(&self) -> bool {
        self.rewriter.last_out_ms.is_none()
            && self.rewriter.tracks.iter().all(|t| t.packets == 0)
            && self.pending.is_empty()
            && self.feed.pos == 0
            && !self.ended
    }

    /// A copy that plays on alone from the same packet with the same numbering.
    fn snapshot(&self) -> State {
        State {
            feed: self.feed.snapshot(),
            rewriter: self.rewriter.clone(),
            clocks: self.clocks.clone(),
            position_ms: self.position_ms,
            ended: self.ended,
            pending: Vec::new(),
        }
    }
}

/// What sends a playing viewer's packets.
#[derive(Debug)]
enum Running {
    /// Its own task (a resumed or seeking viewer, or one a group handed back).
    Solo(oneshot::Sender<()>, JoinHandle<State>),
    /// A playout group it shares with other viewers at the same place.
    Grouped(Seat),
}

/// One viewer's playback of one object.
#[derive(Debug)]
pub(crate) struct CachePlayer {
    key: ObjectKey,
    store: Arc<CacheStore>,
    out: PlayerOut,
    state: Option<State>,
    running: Option<Running>,
    /// Readers of UDP viewers' RTCP (receiver reports into the tally).
    rtcp_readers: Vec<JoinHandle<()>>,
}

impl Drop for CachePlayer {
    fn drop(&mut self) {
        for h in &self.rtcp_readers {
            h.abort();
        }
    }
}

/// Reads what a UDP viewer sends to the session's RTCP port: its receiver reports'
/// loss goes into the session's tally (RFC 3550 §6.4.2); datagrams from other hosts
/// are dropped. Reading also keeps the socket's receive buffer from filling.
async fn read_viewer_rtcp(pair: Arc<SocketPair>, viewer: std::net::IpAddr, tally: Arc<Tally>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, from)) = pair.rtcp.recv_from(&mut buf).await else {
            return;
        };
        if from.ip() == viewer {
            tally.note_rtcp(&buf[..n]);
        }
    }
}

/// A player's place in the shared blocks of one object (`cache_shared`): the block it
/// plays and the next one, read while this one plays.
#[derive(Debug)]
struct Cursor {
    store: Arc<CacheStore>,
    obj: Arc<ObjectVersion>,
    block: Arc<Block>,
    pos: usize,
    ahead: Option<JoinHandle<Arc<Block>>>,
}

impl Drop for Cursor {
    fn drop(&mut self) {
        if let Some(h) = self.ahead.take() {
            h.abort();
        }
    }
}

impl Cursor {
    /// The packet at the cursor, when its block is in memory (see [`Cursor::ready`]).
    /// Players borrow it rather than clone it: many viewers share one block.
    fn peek(&self) -> Option<&PacketOut> {
        self.block.packets.get(self.pos)
    }

    /// Moves past the packet at the cursor.
    fn advance(&mut self) {
        self.pos += 1;
    }

    /// A second cursor at the same packet (without the first one's read-ahead).
    fn snapshot(&self) -> Cursor {
        let mut c = Cursor {
            store: self.store.clone(),
            obj: self.obj.clone(),
            block: self.block.clone(),
            pos: self.pos,
            ahead: None,
        };
        c.read_ahead();
        c
    }

    /// Waits until the packet at the cursor is in memory, or says how the range ends.
    /// Cancel-safe: it only ever moves to the next block.
    async fn ready(&mut self) -> Result<(), RangeEnd> {
        loop {
            if self.pos < self.block.packets.len() {
                return Ok(());
            }
            match self.block.next {
                BlockNext::At(ms) => {
                    let next = match self.ahead.take() {
                        Some(h) => match h.await {
                            Ok(b) => b,
                            Err(_) => self.fetch(ms).await,
                        },
                        None => self.fetch(ms).await,
                    };
                    self.block = next;
                    self.pos = 0;
                    self.read_ahead();
                }
                BlockNext::End => return Err(RangeEnd::End),
                BlockNext::Failed => return Err(RangeEnd::Failed),
            }
        }
    }

    async fn fetch(&self, start_ms: u64) -> Arc<Block> {
        self.store
            .shared()
            .block(&self.store, &self.obj, start_ms)
            .await
    }

    fn read_ahead(&mut self) {
        if let (BlockNext::At(ms), None) = (self.block.next, &self.ahead) {
            let (store, obj) = (self.store.clone(), self.obj.clone());
            self.ahead = Some(tokio::spawn(async move {
                store.shared().block(&store, &obj, ms).await
            }));
        }
    }
}

/// A cursor at the keyframe at or before `from_ms`; None when `from_ms` is not held.
/// The first block comes from memory when another viewer read it (then only the
/// index is asked where it starts), else from a reader opened for it.
async fn open_cursor(
    store: &Arc<CacheStore>,
    key: &ObjectKey,
    from_ms: u64,
) -> std::io::Result<Option<(Cursor, u64)>> {
    // Most hits start where other viewers started (the clip's start, or a block
    // they read): the index says where, and the block is in memory, so nothing is
    // opened and no blocking thread is needed.
    let in_memory = {
        let mut cache = store.lock();
        cache
            .start_of(key, from_ms, std::time::SystemTime::now())
            .and_then(|start| Some((ObjectVersion::of(&cache.lookup(key)?), start)))
    }
    .filter(|(obj, start)| store.shared().holds(obj, *start));
    let opened = match in_memory {
        Some(found) => Some(found),
        None => open_reader(store, key, from_ms).await?,
    };
    let Some((obj, start)) = opened else {
        return Ok(None);
    };
    let obj = Arc::new(obj);
    let block = store.shared().block(store, &obj, start).await;
    let mut cursor = Cursor {
        store: store.clone(),
        obj,
        block,
        pos: 0,
        ahead: None,
    };
    cursor.read_ahead();
    Ok(Some((cursor, start)))
}

/// Opens a reader at the keyframe at or before `from_ms` (on a blocking thread: the
/// index look-up and file opens) and offers it to the shared reads; returns the
/// object's version and the reader's start, None when `from_ms` is not held.
async fn open_reader(
    store: &Arc<CacheStore>,
    key: &ObjectKey,
    from_ms: u64,
) -> std::io::Result<Option<(ObjectVersion, u64)>> {
    let (s, k) = (store.clone(), key.clone());
    tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut cache = s.lock();
        let Some(reader) = cache.reader(&k, from_ms, std::time::SystemTime::now())? else {
            return Ok(None);
        };
        // After `reader`, which may have taken in a finished fill.
        let Some(info) = cache.lookup(&k) else {
            return Ok(None);
        };
        drop(cache);
        let obj = ObjectVersion::of(&info);
        let start = s.shared().offer_reader(&obj, reader);
        Ok(Some((obj, start)))
    })
    .await
    .map_err(std::io::Error::other)?
}

impl CachePlayer {
    /// A player positioned at the keyframe at or before `from_ms`; None when that
    /// time is not in a held range of `key`.
    pub async fn open(
        store: Arc<CacheStore>,
        key: ObjectKey,
        clocks: Vec<u32>,
        from_ms: u64,
        out: PlayerOut,
    ) -> std::io::Result<Option<CachePlayer>> {
        let Some((feed, start)) = open_cursor(&store, &key, from_ms).await? else {
            return Ok(None);
        };
        let rewriter = Rewriter::new(&clocks, getrandom_u32);
        let rtcp_readers = out
            .dests
            .iter()
            .flatten()
            .filter_map(|(dest, pair)| match (dest, pair) {
                // A shared pair's reader credits the viewer already.
                (TrackDest::Udp { rtcp, .. }, Some(pair)) if !pair.rtcp_shared() => Some(
                    tokio::spawn(read_viewer_rtcp(pair.clone(), rtcp.ip(), out.tally.clone())),
                ),
                _ => None,
            })
            .collect();
        Ok(Some(CachePlayer {
            key,
            store,
            out,
            state: Some(State {
                feed,
                rewriter,
                clocks,
                position_ms: start,
                ended: false,
                pending: Vec::new(),
            }),
            running: None,
            rtcp_readers,
        }))
    }

    /// Stops sending, keeping the position (PAUSE).
    pub async fn pause(&mut self) {
        match self.running.take() {
            Some(Running::Solo(stop, task)) => {
                let _ = stop.send(());
                if let Ok(state) = task.await {
                    self.state = Some(state);
                }
            }
            Some(Running::Grouped(seat)) => self.state = seat.leave().await,
            None => {}
        }
    }

    /// Moves to `from_ms`: true when it is held (the player then starts at its
    /// keyframe), false when it is not (the player is left paused where it was).
    pub async fn seek(&mut self, from_ms: u64) -> std::io::Result<bool> {
        self.pause().await;
        let Some(state) = &mut self.state else {
            return Ok(false);
        };
        let Some((feed, start)) = open_cursor(&self.store, &self.key, from_ms).await? else {
            return Ok(false);
        };
        state.feed = feed;
        state.position_ms = start;
        state.ended = false;
        state.rewriter.seek_to(start);
        Ok(true)
    }

    /// Where sending would start now.
    pub fn position_ms(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| {
            s.feed.peek().map_or(s.position_ms, |p| {
                media_ms(p.media_ticks, clock_of(&s.clocks, p.track))
            })
        })
    }

    /// Stops and hands over the viewer's numbering (the origin goes on with it).
    pub async fn into_rewriter(mut self) -> Option<Rewriter> {
        self.pause().await;
        self.state.take().map(|s| s.rewriter)
    }

    /// Numbers what it sends with `rewriter` (the viewer's, from an origin session
    /// that served it until now): output continues after what that one sent.
    pub async fn continue_numbering(&mut self, mut rewriter: Rewriter) {
        self.pause().await;
        if let Some(state) = &mut self.state {
            rewriter.seek_to(state.position_ms);
            state.rewriter = rewriter;
        }
    }

    /// Starts (or resumes) sending; returns what the PLAY answer says, and what to
    /// tell once that answer is queued (media waits for it, bounded by
    /// [`ANSWER_WAIT`]). A PLAY while playing restarts from the next unsent packet.
    pub async fn play(&mut self) -> Option<(PlayStart, AnswerQueued)> {
        self.pause().await;
        let position = self.position_ms();
        let state = self.state.take()?;
        let groups = self.store.groups().clone();
        if state.is_fresh() {
            let (start, seat, answered) = groups.play(state, self.out.clone(), position).await;
            self.running = Some(Running::Grouped(seat));
            return Some((start, answered));
        }
        // A resume (after PAUSE or a seek) joins a group at its place, or opens one;
        // packets numbered but not sent (a slow viewer's) must go first, and after
        // the end of the range there is nothing to share: those go alone.
        if state.pending.is_empty() && !state.ended {
            let (start, seat, answered) = groups.resume(state, self.out.clone(), position).await;
            self.running = Some(Running::Grouped(seat));
            return Some((start, answered));
        }
        groups.count_alone();
        let start = start_of(&state, position);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (answered, wait) = AnswerQueued::gate();
        let out = self.out.clone();
        let start_ms = start.start_ms;
        let task = tokio::spawn(async move {
            let mut stop = stop_rx;
            tokio::select! {
                biased;
                _ = &mut stop => return state,
                _ = tokio::time::timeout(ANSWER_WAIT, wait) => {}
            }
            run(state, out, start_ms, Instant::now(), stop).await
        });
        self.running = Some(Running::Solo(stop_tx, task));
        Some((start, answered))
    }
}

fn clock_of(clocks: &[u32], slot: u8) -> u32 {
    clocks.get(usize::from(slot)).copied().unwrap_or(90_000)
}

fn start_of(s: &State, position: u64) -> PlayStart {
    // Packets numbered but not yet sent go first: the answer names the first of them.
    let start_ms = s
        .pending
        .first()
        .and_then(|(slot, item)| s.rewriter.media_ms_of(*slot, item.seq_ts().1))
        .unwrap_or(position);
    let tracks = (0..s.clocks.len())
        .map(|slot| {
            let pending = s
                .pending
                .iter()
                .find(|(sl, _)| *sl == slot)
                .map(|(_, item)| item.seq_ts().0);
            (
                pending.or_else(|| s.rewriter.next_seq(slot)).unwrap_or(0),
                s.rewriter.rtptime_at(slot, start_ms).unwrap_or(0),
            )
        })
        .collect();
    PlayStart { start_ms, tracks }
}

fn getrandom_u32() -> u32 {
    getrandom::u32().unwrap_or_else(|e| panic!("getrandom failed: {e}"))
}

/// How a batch of packets came to an end.
enum BatchEnd {
    /// The next packet is not due yet: send these, then go on.
    More,
    /// The player was stopped (PAUSE, a new PLAY, the viewer leaving).
    Stopped,
    /// The held range ended.
    Ended,
}

/// The player task: sends packets as they fall due until stopped, the range ends or
/// the viewer goes away; returns its state for a later resume. Media time `start_ms`
/// is due at `wall0`. Packets due within [`BATCH_WINDOW`] of each other go out
/// together: one wake-up, and for UDP viewers one `sendmmsg` per track, instead of one
/// of each per packet.
async fn run(
    mut state: State,
    out: PlayerOut,
    start_ms: u64,
    wall0: Instant,
    mut stop: oneshot::Receiver<()>,
) -> State {
    let mut next_sr = wall0 + FIRST_SR;
    // UDP sends; its scratch buffers are kept across batches.
    let mut sender = BatchSender::new(GsoMode::Auto);
    if !flush_pending(&mut state, &out, &mut stop).await {
        return state;
    }
    let interleaved: Vec<bool> = out
        .dests
        .iter()
        .map(|d| matches!(d, Some((TrackDest::Interleaved { .. }, _))))
        .collect();
    loop {
        let mut batch: Vec<(usize, Item)> = Vec::new();
        let end = loop {
            let ready = tokio::select! {
                biased;
                _ = &mut stop => break BatchEnd::Stopped,
                r = state.feed.ready() => r,
            };
            let Some(p) = ready.ok().and_then(|()| state.feed.peek()) else {
                break BatchEnd::Ended;
            };
            let ms = media_ms(p.media_ticks, clock_of(&state.clocks, p.track));
            let when = due(wall0, start_ms, ms);
            if when > Instant::now() + BATCH_WINDOW {
                if !batch.is_empty() {
                    break BatchEnd::More;
                }
                tokio::select! {
                    biased;
                    _ = &mut stop => break BatchEnd::Stopped,
                    () = tokio::time::sleep_until(when) => {}
                }
            }
            state.position_ms = ms;
            let slot = usize::from(p.track);
            let item = if interleaved.get(slot).copied().unwrap_or(false) {
                state
                    .rewriter
                    .rewrite_split(p)
                    .map(|(h, rest)| Item::Split(h, rest))
            } else {
                state.rewriter.rewrite(p).map(Item::Whole)
            };
            if let Some(item) = item {
                batch.push((slot, item));
            }
            state.feed.advance();
            if batch.len() >= MAX_BATCH {
                break BatchEnd::More;
            }
        };
        // Packets already numbered go out even when the player was stopped meanwhile,
        // so the numbering after a resume has no gap; `stop` has fired then and must
        // not be polled again.
        let (_keep, mut never) = oneshot::channel();
        let stop_now = match end {
            BatchEnd::More => &mut stop,
            BatchEnd::Stopped | BatchEnd::Ended => &mut never,
        };
        if !send_batch(&out, &mut sender, batch, stop_now).await {
            return state;
        }
        match end {
            BatchEnd::More => {}
            BatchEnd::Stopped => return state,
            BatchEnd::Ended => {
                state.ended = true;
                state
                    .rewriter
                    .set_pace(ntp_now(), media_us_at(start_ms, wall0, Instant::now()));
                if !continue_at_end(&mut state, &out).await {
                    send_bye(&state.rewriter, &out).await;
                }
                return state;
            }
        }
        let now = Instant::now();
        if now >= next_sr {
            next_sr = now + SR_INTERVAL;
            let media_us = media_us_at(start_ms, wall0, now);
            let ntp = ntp_now();
            for slot in 0..state.clocks.len() {
                if let Some(sr) = state.rewriter.sender_report(slot, media_us, ntp) {
                    if !send(&out, slot, true, &sr, &mut stop).await {
                        return state;
                    }
                }
            }
        }
    }
}

/// Queues the packets a playout group numbered for this interleaved viewer but could
/// not queue, waiting for room; false when stopped (what is left stays pending, so a
/// resume goes on with it) or the viewer is gone.
async fn flush_pending(
    state: &mut State,
    out: &PlayerOut,
    stop: &mut oneshot::Receiver<()>,
) -> bool {
    let frame = |(slot, item): &(usize, Item)| -> Option<(u8, [u8; RTP_FIXED], Bytes)> {
        let Some(Some((TrackDest::Interleaved { rtp, .. }, _))) = out.dests.get(*slot) else {
            return None;
        };
        match item {
            Item::Split(head, rest) => Some((*rtp, *head, rest.clone())),
            Item::Whole(d) => split_whole(d).map(|(head, rest)| (*rtp, head, rest)),
        }
    };
    state.pending.retain(|p| frame(p).is_some());
    while !state.pending.is_empty() {
        let frames: Vec<_> = state.pending.iter().filter_map(frame).collect();
        let n = frames.len();
        let left = out.conn.push_media_split(frames);
        let queued = n - left.len();
        let bytes: u64 = state.pending[..queued]
            .iter()
            .filter_map(frame)
            .map(|(_, h, rest)| (h.len() + rest.len()) as u64)
            .sum();
        out.tally.add(queued as u64, bytes, 0);
        state.pending.drain(..queued);
        if left.is_empty() {
            break;
        }
        if out.conn.is_closed() {
            return false;
        }
        tokio::select! {
            biased;
            _ = &mut *stop => return false,
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    !out.conn.is_closed()
}

/// Sends a batch: UDP tracks' packets with one `sendmmsg` per track (GSO where
/// consecutive packets have one size), interleaved ones queued on the connection in
/// one go (waiting for room while the viewer reads slowly). False when the viewer is
/// gone or the player was stopped while waiting for room.
async fn send_batch(
    out: &PlayerOut,
    sender: &mut BatchSender,
    batch: Vec<(usize, Item)>,
    stop: &mut oneshot::Receiver<()>,
) -> bool {
    for slot in 0..out.dests.len() {
        if let Some((TrackDest::Udp { rtp, .. }, Some(pair))) =
            out.dests.get(slot).cloned().flatten()
        {
            let slices: Vec<&[u8]> = batch
                .iter()
                .filter_map(|(s, item)| match item {
                    Item::Whole(d) if *s == slot => Some(d.as_ref()),
                    _ => None,
                })
                .collect();
            if !slices.is_empty() {
                let (sent, bytes) = send_udp_run(sender, &pair.rtp, &slices, rtp).await;
                out.tally.add(sent, bytes, 0);
            }
        }
    }
    let frames: Vec<(u8, [u8; RTP_FIXED], Bytes)> = batch
        .into_iter()
        .filter_map(|(slot, item)| match (item, out.dests.get(slot)) {
            (Item::Split(head, rest), Some(Some((TrackDest::Interleaved { rtp, .. }, _)))) => {
                Some((*rtp, head, rest))
            }
            // A playout group's packet, numbered for all its members.
            (Item::Whole(d), Some(Some((TrackDest::Interleaved { rtp, .. }, _)))) => {
                split_whole(&d).map(|(head, rest)| (*rtp, head, rest))
            }
            _ => None,
        })
        .collect();
    let size = |f: &[(u8, [u8; RTP_FIXED], Bytes)]| -> u64 {
        f.iter()
            .map(|(_, h, rest)| (h.len() + rest.len()) as u64)
            .sum()
    };
    let mut left = frames;
    while !left.is_empty() {
        let (n, bytes) = (left.len(), size(&left));
        left = out.conn.push_media_split(left);
        out.tally
            .add((n - left.len()) as u64, bytes - size(&left), 0);
        if left.is_empty() {
            break;
        }
        // A TCP viewer that reads slowly slows its own playback (as the passthrough
        // does), never anyone else.
        if out.conn.is_closed() {
            return false;
        }
        tokio::select! {
            biased;
            _ = &mut *stop => return false,
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    !out.conn.is_closed()
}

/// A whole RTP packet as an interleaved frame's two parts (the rest shared).
fn split_whole(d: &Bytes) -> Option<([u8; RTP_FIXED], Bytes)> {
    let head = d.get(..RTP_FIXED)?.try_into().ok()?;
    Some((head, d.slice(RTP_FIXED..)))
}

/// Sends `packets` in order to `to`; returns the datagrams and bytes handed to the
/// kernel (refused ones count; see [`send_udp_runs`] for a full socket).
async fn send_udp_run(
    sender: &mut BatchSender,
    sock: &tokio::net::UdpSocket,
    packets: &[&[u8]],
    to: std::net::SocketAddr,
) -> (u64, u64) {
    let items = [(to, packets)];
    let sent = match send_udp_runs(sender, sock, &items, (0, 0)).await {
        (0, sent) => sent.min(packets.len()),
        _ => packets.len(),
    };
    let bytes = packets[..sent].iter().map(|p| p.len() as u64).sum();
    (sent as u64, bytes)
}

/// Sends each item's packets, in order, to its destination from `sock`, starting at
/// `from` (items before `from.0` are done, and of item `from.0` the first `from.1`
/// packets): as few `sendmmsg` calls as the kernel takes, waiting for room when the
/// socket is full. Returns where it stopped, `(items.len(), 0)` when everything was
/// handed to the kernel (refused ones count). A socket that stays unwritable for a
/// second drops the rest (UDP loses rather than stalls, as the hub does).
async fn send_udp_runs(
    sender: &mut BatchSender,
    sock: &tokio::net::UdpSocket,
    items: &[(std::net::SocketAddr, &[&[u8]])],
    from: (usize, usize),
) -> (usize, usize) {
    let mut at = from;
    let deadline = Instant::now() + Duration::from_secs(1);
    while at.0 < items.len() {
        match sender.send_each_run(sock, items, at) {
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
    at
}

/// Wall-clock time now in the 64-bit NTP format (RFC 3550 §4: seconds since 1900 and
/// a binary fraction).
pub(crate) fn ntp_now() -> u64 {
    ntp_of(std::time::SystemTime::now())
}

fn ntp_of(t: std::time::SystemTime) -> u64 {
    const UNIX_TO_NTP_SECS: u64 = 2_208_988_800;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs().wrapping_add(UNIX_TO_NTP_SECS);
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Sends one packet; false when the viewer is gone or the player was stopped while
/// waiting for room.
async fn send(
    out: &PlayerOut,
    slot: usize,
    rtcp: bool,
    data: &Bytes,
    stop: &mut oneshot::Receiver<()>,
) -> bool {
    match out.dests.get(slot).cloned().flatten() {
        Some((TrackDest::Interleaved { rtp, rtcp: rc }, _)) => {
            let ch = if rtcp { rc } else { rtp };
            // A TCP viewer that reads slowly slows its own playback (as the
            // passthrough does), never anyone else.
            while !out.conn.push_media(ch, data) {
                if out.conn.is_closed() {
                    return false;
                }
                tokio::select! {
                    biased;
                    _ = &mut *stop => return false,
                    () = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
            out.tally.add(1, data.len() as u64, 0);
            true
        }
        Some((TrackDest::Udp { rtp, rtcp: rc }, Some(pair))) => {
            let (sock, to) = if rtcp {
                (&pair.rtcp, rc)
            } else {
                (&pair.rtp, rtp)
            };
            if sock.send_to(data, to).await.is_ok() {
                out.tally.add(1, data.len() as u64, 0);
            }
            !out.conn.is_closed()
        }
        _ => !out.conn.is_closed(),
    }
}

/// Hands the viewer to its continuation at the end of the held range, when it has
/// one and that takes it; false when the stream ends here.
async fn continue_at_end(state: &mut State, out: &PlayerOut) -> bool {
    let Some(next) = &out.at_end else {
        return false;
    };
    let rewriter = std::mem::replace(&mut state.rewriter, Rewriter::new(&[], || 0));
    match next.take_over(rewriter, state.position_ms).await {
        Ok(()) => true,
        Err(rewriter) => {
            state.rewriter = rewriter;
            false
        }
    }
}

/// An RTCP BYE per track: the end of the stream (RFC 3550 §6.6).
async fn send_bye(rewriter: &Rewriter, out: &PlayerOut) {
    let (_tx, mut never) = oneshot::channel();
    for slot in 0..rewriter.tracks.len() {
        if let Some(bye) = crate::seam::bye(rewriter, slot, b"end of range") {
            let _ = send(out, slot, true, &bye, &mut never).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(track: u8, ticks: u64) -> PacketOut {
        let mut rtp = vec![0x80, 96, 0x12, 0x34, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef];
        rtp.extend_from_slice(b"payload");
        PacketOut {
            track,
            media_ticks: ticks,
            keyframe: true,
            rtp: Bytes::from(rtp),
        }
    }

    fn fields(b: &[u8]) -> (u16, u32, u32) {
        let p = mediagate_rtp::RtpPacket::parse(b).unwrap();
        (p.sequence_number(), p.timestamp(), p.ssrc())
    }

    #[test]
    fn rtp_info_matches_the_first_packets_and_seeks_continue_the_numbering() {
        let mut n = 0u32;
        let mut w = Rewriter::new(&[90_000, 48_000], || {
            n += 1000;
            n
        });
        // Start at npt 2 s: RTP-Info announces what the first packets carry.
        let (seq0, rt0) = (w.next_seq(0).unwrap(), w.rtptime_at(0, 2000).unwrap());
        let first = w.rewrite(&packet(0, 180_000)).unwrap();
        assert_eq!(fields(&first), (seq0, rt0, w.ssrc(0).unwrap()));
        let audio_rt = w.rtptime_at(1, 2000).unwrap();
        let a = w.rewrite(&packet(1, 96_000)).unwrap();
        assert_eq!(fields(&a).1, audio_rt);
        let second = w.rewrite(&packet(0, 183_000)).unwrap();
        assert_eq!(fields(&second).0, seq0.wrapping_add(1));
        assert_eq!(fields(&second).1, rt0.wrapping_add(3000));
        // Seek back to npt 1 s: numbering runs on, time moves forward, not back.
        w.seek_to(1000);
        let rt = w.rtptime_at(0, 1000).unwrap();
        let after = w.rewrite(&packet(0, 90_000)).unwrap();
        assert_eq!(fields(&after).0, seq0.wrapping_add(2));
        assert_eq!(fields(&after).1, rt);
        let forward = fields(&after).1.wrapping_sub(fields(&second).1) as i32;
        assert!(forward > 0 && forward <= 90 * 40 + 90, "{forward}");
    }

    #[test]
    fn a_split_copy_is_the_whole_copy_with_the_payload_shared() {
        let mk = || {
            let mut n = 5u32;
            Rewriter::new(&[90_000], move || {
                n += 1;
                n
            })
        };
        let (mut a, mut b) = (mk(), mk());
        let p = packet(0, 90_000);
        let whole = a.rewrite(&p).unwrap();
        let (head, rest) = b.rewrite_split(&p).unwrap();
        assert_eq!([&head[..], &rest[..]].concat(), whole.to_vec());
        // The rest is the stored packet's own bytes, not a copy.
        assert_eq!(rest.as_ptr(), p.rtp[RTP_FIXED..].as_ptr());
        assert_eq!(a.sender_report(0, 1000, 1), b.sender_report(0, 1000, 1));
    }

    #[test]
    fn packets_are_due_by_media_time_with_a_small_lead() {
        let t0 = Instant::now();
        assert_eq!(due(t0, 5000, 5000), t0);
        assert_eq!(due(t0, 5000, 5200), t0);
        assert_eq!(due(t0, 5000, 7000), t0 + Duration::from_millis(1700));
        assert_eq!(media_ms(270_000, 90_000), 3000);
    }

    #[test]
    fn sender_reports_pair_the_wall_clock_with_the_timestamps_sent() {
        let mut n = 0u32;
        let mut w = Rewriter::new(&[90_000, 48_000], || {
            n += 7777;
            n
        });
        assert_eq!(w.sender_report(0, 0, 1), None, "nothing sent yet");
        let mut sent = Vec::new();
        for ticks in [180_000u64, 183_600, 187_200] {
            sent.push(fields(&w.rewrite(&packet(0, ticks)).unwrap()));
        }
        let ntp = ntp_of(std::time::UNIX_EPOCH + Duration::from_millis(1_500));
        // Media time 2.08 s is the third packet's own timestamp.
        let sr = w.sender_report(0, 2_080_000, ntp).unwrap();
        let compound = mediagate_rtp::rtcp::Compound::parse(&sr).unwrap();
        let kinds: Vec<_> = compound.packets().collect();
        assert_eq!(kinds.len(), 2, "SR and SDES");
        let mediagate_rtp::rtcp::RtcpPacket::SenderReport(r) = &kinds[0] else {
            panic!("first is not an SR");
        };
        let info = r.sender_info();
        assert_eq!(info.ssrc, sent[0].2);
        assert_eq!(info.rtp_timestamp, sent[2].1);
        assert_eq!((info.packet_count, info.octet_count), (3, 3 * 7));
        assert_eq!(info.ntp_timestamp, ntp);
        assert!(matches!(
            kinds[1],
            mediagate_rtp::rtcp::RtcpPacket::SourceDescription(_)
        ));
        assert_eq!(
            w.sender_report(1, 2_040_000, ntp),
            None,
            "audio sent nothing"
        );
        // After a seek the numbering continues and the report follows it.
        w.seek_to(0);
        let after = fields(&w.rewrite(&packet(0, 0)).unwrap());
        let sr = w.sender_report(0, 0, ntp).unwrap();
        let compound = mediagate_rtp::rtcp::Compound::parse(&sr).unwrap();
        let Some(mediagate_rtp::rtcp::RtcpPacket::SenderReport(r)) = compound.packets().next()
        else {
            panic!("no SR");
        };
        assert_eq!(r.sender_info().rtp_timestamp, after.1);
        assert_eq!(r.sender_info().packet_count, 4);
    }

    #[test]
    fn ntp_time_counts_from_1900_with_a_binary_fraction() {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(500);
        assert_eq!(ntp_of(t), (2_208_988_800u64 << 32) | 0x8000_0000);
    }

    #[tokio::test]
    async fn a_udp_viewers_receiver_reports_reach_the_tally() {
        let ports = crate::ports::PortAllocator::new("127.0.0.1".parse().unwrap(), 42_000, 52_000);
        let pair = Arc::new(ports.bind_pair().await.unwrap());
        let to = pair.rtcp.local_addr().unwrap();
        let tally = Arc::new(Tally::default());
        let reader = tokio::spawn(read_viewer_rtcp(
            pair.clone(),
            "127.0.0.1".parse().unwrap(),
            tally.clone(),
        ));
        let block = mediagate_rtp::rtcp::ReportBlock {
            ssrc: 99,
            fraction_lost: 3,
            cumulative_lost: 5,
            extended_highest_seq: 1000,
            jitter: 0,
            last_sr: 0,
            delay_since_last_sr: 0,
        };
        let mut buf = [0u8; 64];
        let mut w = CompoundWriter::new(&mut buf);
        w.receiver_report(1, &[block]).unwrap();
        let n = w.finish().unwrap();
        let viewer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while tally.reported_lost() != 5 {
            assert!(Instant::now() < deadline, "the report was not read");
            viewer.send_to(&buf[..n], to).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reader.abort();
    }
}
