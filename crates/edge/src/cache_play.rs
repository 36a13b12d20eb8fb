//! Serving a hit: one viewer's playback of a held range of a cache object, with no
//! origin media session (issue 13 item 3).
//!
//! A reader thread pulls packets off disk in media-time order (the cache verifies each
//! one's checksum) into a small bounded channel; the player task sends each when its
//! media time is due, measured from the PLAY (a small lead is allowed so the player's
//! jitter buffer fills at once), and rewrites its sequence number, timestamp and SSRC
//! per viewer ([`Rewriter`]): sequence numbers run on without a gap and timestamps
//! continue across PAUSE and seek, and the PLAY answer's `RTP-Info` (url; seq;
//! rtptime) and `Range` name exactly where the first packets sent sit (RFC 2326
//! §12.33, §12.29). The range starts at the keyframe at or before the asked time.
//!
//! At the end of the held range, the viewer is told with an RTCP BYE per track (RFC
//! 3550 §6.6), which players take as the end of the stream; a held range that stops
//! before the end of the clip is handed to the player's continuation instead
//! (`source::Continuation`): the viewer's origin session goes on from there with this
//! player's [`Rewriter`], so the viewer sees one stream (`seam`).
//!
//! What it does not: send RTCP sender reports (players synchronise tracks by the
//! `RTP-Info` of the PLAY answer), share one read of an object between viewers, or
//! change speed (`Scale` is not honoured on hits).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mediagate_cache::{ObjectKey, PacketOut, Reader};
use mediagate_rtp::rtcp::build::CompoundWriter;
use mediagate_rtp::RtpPacketMut;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cache_store::CacheStore;
use crate::conn_out::ConnOut;
use crate::ports::SocketPair;
use crate::sink::{Tally, TrackDest};
use crate::source::Continuation;

/// How far ahead of its media time a packet may go out.
const LEAD: Duration = Duration::from_millis(300);

/// Packets read ahead of the player.
const READ_AHEAD: usize = 256;

/// The gap left in media time after a seek, so the last packet before it and the
/// first after it never share a timestamp.
const SEEK_GAP_MS: i64 = 40;

/// What the reader thread hands the player.
#[derive(Debug)]
enum Feed {
    Packet(PacketOut),
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
            })
            .collect();
        Self {
            tracks,
            shift_ms: 0,
            last_out_ms: None,
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
        let t = self.tracks.get(slot)?;
        let ticks = i128::from(ms) * i128::from(t.clock) / 1000;
        Some(
            t.ts_base
                .wrapping_add((ticks as i64 + self.shift_ticks(t)) as u32),
        )
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
        let shift_ms = self.shift_ms;
        let t = self.tracks.get_mut(usize::from(p.track))?;
        let mut buf = BytesMut::from(&p.rtp[..]);
        let mut pkt = RtpPacketMut::new(&mut buf).ok()?;
        let shift = shift_ms * i64::from(t.clock) / 1000;
        pkt.set_sequence_number(t.next_seq);
        pkt.set_timestamp(
            t.ts_base
                .wrapping_add((p.media_ticks as i64 + shift) as u32),
        );
        pkt.set_ssrc(t.ssrc);
        t.next_seq = t.next_seq.wrapping_add(1);
        let out_ms = media_ms(p.media_ticks, t.clock) as i64 + shift_ms;
        self.last_out_ms = Some(self.last_out_ms.map_or(out_ms, |l| l.max(out_ms)));
        Some(buf.freeze())
    }
}

/// Media time in ms of `ticks` at `clock` Hz.
pub(crate) fn media_ms(ticks: u64, clock: u32) -> u64 {
    u64::try_from(u128::from(ticks) * 1000 / u128::from(clock.max(1))).unwrap_or(u64::MAX)
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
    feed: mpsc::Receiver<Feed>,
    /// A packet read but not yet due when the player paused.
    pending: Option<PacketOut>,
    rewriter: Rewriter,
    clocks: Vec<u32>,
    /// Where playback resumes when nothing is pending.
    position_ms: u64,
    /// The held range ended (a BYE was sent).
    ended: bool,
}

/// One viewer's playback of one object.
#[derive(Debug)]
pub(crate) struct CachePlayer {
    key: ObjectKey,
    store: Arc<CacheStore>,
    out: PlayerOut,
    state: Option<State>,
    running: Option<(oneshot::Sender<()>, JoinHandle<State>)>,
}

/// Opens a reader at `from_ms` and its thread; None when `from_ms` is not held. The
/// cache opens files for it, so it runs on a blocking thread.
async fn open_feed(
    store: &Arc<CacheStore>,
    key: &ObjectKey,
    from_ms: u64,
) -> std::io::Result<Option<(mpsc::Receiver<Feed>, u64)>> {
    let (store, key) = (store.clone(), key.clone());
    tokio::task::spawn_blocking(move || {
        let reader = store
            .lock()
            .reader(&key, from_ms, std::time::SystemTime::now())?;
        let Some(reader) = reader else {
            return Ok(None);
        };
        let start = reader.start_ms();
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        std::thread::Builder::new()
            .name("cache-read".into())
            .spawn(move || read_range(reader, &tx))?;
        Ok(Some((rx, start)))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The reader thread: packets until the range ends or the player goes away.
fn read_range(mut reader: Reader, tx: &mpsc::Sender<Feed>) {
    loop {
        let item = match reader.next_packet() {
            Ok(Some(p)) => Feed::Packet(p),
            Ok(None) => Feed::End,
            Err(e) => {
                tracing::warn!(error = %e, "cached packet did not verify; the range ends there");
                Feed::Failed
            }
        };
        let last = !matches!(item, Feed::Packet(_));
        if tx.blocking_send(item).is_err() || last {
            return;
        }
    }
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
        let Some((feed, start)) = open_feed(&store, &key, from_ms).await? else {
            return Ok(None);
        };
        let rewriter = Rewriter::new(&clocks, getrandom_u32);
        Ok(Some(CachePlayer {
            key,
            store,
            out,
            state: Some(State {
                feed,
                pending: None,
                rewriter,
                clocks,
                position_ms: start,
                ended: false,
            }),
            running: None,
        }))
    }

    /// Stops sending, keeping the position (PAUSE).
    pub async fn pause(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            if let Ok(state) = task.await {
                self.state = Some(state);
            }
        }
    }

    /// Moves to `from_ms`: true when it is held (the player then starts at its
    /// keyframe), false when it is not (the player is left paused where it was).
    pub async fn seek(&mut self, from_ms: u64) -> std::io::Result<bool> {
        self.pause().await;
        let Some(state) = &mut self.state else {
            return Ok(false);
        };
        let Some((feed, start)) = open_feed(&self.store, &self.key, from_ms).await? else {
            return Ok(false);
        };
        state.feed = feed;
        state.pending = None;
        state.position_ms = start;
        state.ended = false;
        state.rewriter.seek_to(start);
        Ok(true)
    }

    /// Where sending would start now.
    pub fn position_ms(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| {
            s.pending.as_ref().map_or(s.position_ms, |p| {
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

    /// Starts (or resumes) sending; returns what the PLAY answer says.
    /// A PLAY while playing restarts from the next unsent packet.
    pub async fn play(&mut self) -> Option<PlayStart> {
        self.pause().await;
        let position = self.position_ms();
        let state = self.state.take()?;
        let start = start_of(&state, position);
        let (stop_tx, stop_rx) = oneshot::channel();
        let out = self.out.clone();
        let task = tokio::spawn(run(state, out, position, stop_rx));
        self.running = Some((stop_tx, task));
        Some(start)
    }
}

fn clock_of(clocks: &[u32], slot: u8) -> u32 {
    clocks.get(usize::from(slot)).copied().unwrap_or(90_000)
}

fn start_of(s: &State, position: u64) -> PlayStart {
    let tracks = (0..s.clocks.len())
        .map(|slot| {
            (
                s.rewriter.next_seq(slot).unwrap_or(0),
                s.rewriter.rtptime_at(slot, position).unwrap_or(0),
            )
        })
        .collect();
    PlayStart {
        start_ms: position,
        tracks,
    }
}

fn getrandom_u32() -> u32 {
    getrandom::u32().unwrap_or_else(|e| panic!("getrandom failed: {e}"))
}

/// The player task: sends packets as they fall due until stopped, the range ends or
/// the viewer goes away; returns its state for a later resume.
async fn run(
    mut state: State,
    out: PlayerOut,
    start_ms: u64,
    mut stop: oneshot::Receiver<()>,
) -> State {
    let wall0 = Instant::now();
    loop {
        let p = match state.pending.take() {
            Some(p) => p,
            None => {
                let next = tokio::select! {
                    biased;
                    _ = &mut stop => return state,
                    f = state.feed.recv() => f,
                };
                match next {
                    Some(Feed::Packet(p)) => p,
                    Some(Feed::End | Feed::Failed) | None => {
                        state.ended = true;
                        if !continue_at_end(&mut state, &out).await {
                            send_bye(&state, &out).await;
                        }
                        return state;
                    }
                }
            }
        };
        let ms = media_ms(p.media_ticks, clock_of(&state.clocks, p.track));
        let when = due(wall0, start_ms, ms);
        if when > Instant::now() {
            tokio::select! {
                biased;
                _ = &mut stop => {
                    state.pending = Some(p);
                    return state;
                }
                () = tokio::time::sleep_until(when) => {}
            }
        }
        state.position_ms = ms;
        let Some(data) = state.rewriter.rewrite(&p) else {
            continue;
        };
        if !send(&out, usize::from(p.track), false, &data, &mut stop).await {
            return state;
        }
    }
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
async fn send_bye(state: &State, out: &PlayerOut) {
    let (_tx, mut never) = oneshot::channel();
    for slot in 0..state.clocks.len() {
        let Some(ssrc) = state.rewriter.ssrc(slot) else {
            continue;
        };
        let mut buf = [0u8; 64];
        let mut w = CompoundWriter::new(&mut buf);
        let built = w
            .receiver_report(ssrc, &[])
            .and_then(|w| w.bye(&[ssrc], Some(b"end of range")))
            .is_ok();
        let Ok(n) = w.finish() else { continue };
        if built {
            let bye = Bytes::copy_from_slice(&buf[..n]);
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
    fn packets_are_due_by_media_time_with_a_small_lead() {
        let t0 = Instant::now();
        assert_eq!(due(t0, 5000, 5000), t0);
        assert_eq!(due(t0, 5000, 5200), t0);
        assert_eq!(due(t0, 5000, 7000), t0 + Duration::from_millis(1700));
        assert_eq!(media_ms(270_000, 90_000), 3000);
    }
}
