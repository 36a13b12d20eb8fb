//! Reads one held range back: the segments `Object::plan` chose (a stretch of one run's
//! log each), every record's checksum verified again, packets handed out per track in
//! log order and across tracks by media time.
//!
//! It reads a bounded window ahead (`LOOKAHEAD` packets) to interleave tracks; it never
//! reads past a run's verified length. A record that fails its checksum now (damage
//! after the cache was opened) ends the range with an error after the packets before it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::format::{read_record, ticks_to_ms, Record, RecordEnd};
use crate::{PacketOut, Reader, TrackMeta};

/// Packets read ahead at most, across tracks, to put them in media-time order.
const LOOKAHEAD: usize = 512;

/// A stretch of one run's log to play.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    /// The run's damage flag: set when a record fails its checksum.
    pub(crate) damaged: Arc<AtomicBool>,
    /// Offset where reading starts (at or before the seek point).
    pub(crate) scan_from: u64,
    /// The run's verified length: never read past it.
    pub(crate) end: u64,
    /// The primary track's packets count from this record on (its keyframe).
    pub(crate) primary_from: u64,
    /// Packets before this media time are skipped (another segment had them).
    pub(crate) lo_ms: u64,
    /// Packets at or after this media time are left to the next segment.
    pub(crate) hi_ms: Option<u64>,
}

#[derive(Debug)]
struct Open {
    seg: Segment,
    r: BufReader<File>,
    pos: u64,
}

#[derive(Debug)]
pub(crate) struct ReaderState {
    start_ms: u64,
    /// Opened when the reader is made, so that a run removed meanwhile (pruned,
    /// evicted, purged) is still read whole.
    segments: VecDeque<(Segment, File)>,
    cur: Option<Open>,
    queues: Vec<VecDeque<(u64, PacketOut)>>,
    queued: usize,
    clock_rates: Vec<u32>,
    primary: Option<usize>,
    body: Vec<u8>,
    /// The error that ends this range once the packets before it are out.
    pending_err: Option<io::Error>,
    done: bool,
}

impl ReaderState {
    pub(crate) fn new(
        start_ms: u64,
        segments: Vec<Segment>,
        tracks: &[TrackMeta],
    ) -> io::Result<ReaderState> {
        let segments = segments
            .into_iter()
            .map(|s| File::open(&s.path).map(|f| (s, f)))
            .collect::<io::Result<_>>()?;
        Ok(ReaderState {
            start_ms,
            segments,
            cur: None,
            queues: (0..tracks.len()).map(|_| VecDeque::new()).collect(),
            queued: 0,
            clock_rates: tracks.iter().map(|t| t.clock_rate).collect(),
            primary: crate::format::primary_track(tracks),
            body: Vec::new(),
            pending_err: None,
            done: false,
        })
    }

    fn open_next(&mut self) -> io::Result<bool> {
        let Some((seg, mut f)) = self.segments.pop_front() else {
            return Ok(false);
        };
        f.seek(SeekFrom::Start(seg.scan_from))?;
        self.cur = Some(Open {
            pos: seg.scan_from,
            r: BufReader::with_capacity(128 * 1024, f),
            seg,
        });
        Ok(true)
    }

    /// Reads records of the current segment until one packet is queued or the segment
    /// ends. Ok(false): the segment is done.
    fn read_one(&mut self) -> io::Result<bool> {
        let Some(o) = self.cur.as_mut() else {
            return Ok(false);
        };
        loop {
            let remaining = o.seg.end.saturating_sub(o.pos);
            let at = o.pos;
            let (rec, len) = match read_record(&mut o.r, remaining, &mut self.body)? {
                Ok(x) => x,
                Err(RecordEnd::Eof) => return Ok(false),
                Err(RecordEnd::Damaged) => {
                    o.seg.damaged.store(true, Ordering::Relaxed);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "cache log {} is damaged at offset {at} (record does not verify)",
                            o.seg.path.display()
                        ),
                    ));
                }
            };
            o.pos += len;
            let Record::Packet {
                track,
                media_ticks,
                keyframe,
                rtp_at,
            } = rec
            else {
                continue;
            };
            let t = track as usize;
            if t >= self.clock_rates.len() {
                o.seg.damaged.store(true, Ordering::Relaxed);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "cache log {} names track {t} at offset {at}",
                        o.seg.path.display()
                    ),
                ));
            }
            let ms = ticks_to_ms(media_ticks, self.clock_rates[t]);
            let wanted = ms >= o.seg.lo_ms
                && o.seg.hi_ms.is_none_or(|hi| ms < hi)
                && (Some(t) != self.primary || at >= o.seg.primary_from);
            if !wanted {
                continue;
            }
            let rtp = Bytes::copy_from_slice(&self.body[rtp_at..]);
            self.queues[t].push_back((
                ms,
                PacketOut {
                    track,
                    media_ticks,
                    keyframe,
                    rtp,
                },
            ));
            self.queued += 1;
            return Ok(true);
        }
    }

    fn pop_min(&mut self) -> Option<PacketOut> {
        let t = (0..self.queues.len())
            .filter_map(|t| self.queues[t].front().map(|&(ms, _)| (ms, t)))
            .min()?
            .1;
        self.queued -= 1;
        self.queues[t].pop_front().map(|(_, p)| p)
    }

    pub(crate) fn next_packet(&mut self) -> io::Result<Option<PacketOut>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.cur.is_some() && self.pending_err.is_none() {
                // Fill the window until every track has a packet to compare.
                while self.queued < LOOKAHEAD && self.queues.iter().any(VecDeque::is_empty) {
                    match self.read_one() {
                        Ok(true) => {}
                        Ok(false) => {
                            self.cur = None;
                            break;
                        }
                        Err(e) => {
                            self.pending_err = Some(e);
                            break;
                        }
                    }
                }
            }
            if let Some(p) = self.pop_min() {
                return Ok(Some(p));
            }
            if let Some(e) = self.pending_err.take() {
                self.done = true;
                return Err(e);
            }
            if self.cur.is_none() && !self.open_next()? {
                self.done = true;
                return Ok(None);
            }
        }
    }
}

impl Reader {
    /// The npt in ms where this reader starts (the keyframe at or before the asked time).
    pub fn start_ms(&self) -> u64 {
        self.state.start_ms
    }

    /// The next packet in media-time order across tracks, None at the end of the range.
    /// Each packet's checksum is verified; a bad one ends the range (Err).
    pub fn next_packet(&mut self) -> io::Result<Option<PacketOut>> {
        self.state.next_packet()
    }
}
