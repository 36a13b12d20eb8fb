//! The bytes of a cache object on disk: packet-log header and records, the run index
//! file, the metadata file, and the scan that verifies a log. `docs/cache-format.md`
//! is the prose version of this module; keep the two in step.
//!
//! Pure encoding and decoding over byte slices and `Read`ers, plus the one atomic-write
//! helper. It does not decide which files an object has or what to keep: that is
//! `object.rs`. Every length read from disk is bounded before anything is allocated.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::crc::{crc32c, update};
use crate::{Meta, ObjectKey, TrackMeta};

/// Version of every file this module writes; a file of another version is dropped on open.
pub(crate) const FORMAT_VERSION: u32 = 1;

pub(crate) const LOG_MAGIC: &[u8; 8] = b"MGCLOG\r\n";
pub(crate) const IDX_MAGIC: &[u8; 8] = b"MGCIDX\r\n";
pub(crate) const LOG_HEADER_LEN: u64 = 40;

/// Record framing: length (u32 LE) and CRC-32C (u32 LE) of length-bytes-then-body.
pub(crate) const RECORD_HEAD_LEN: usize = 8;
const KIND_PACKET: u8 = 1;
const KIND_COMMIT: u8 = 2;
/// kind, track, flags, media_ticks, arrival_unix_ms.
pub(crate) const PACKET_FIXED_LEN: usize = 1 + 1 + 1 + 8 + 8;
/// An RTP packet is at most 65,535 bytes (it came in a TCP interleaved frame or a UDP
/// datagram); a longer length field is damage, refused before allocating.
pub(crate) const MAX_RTP_LEN: usize = 65_535;
pub(crate) const MAX_BODY_LEN: usize = PACKET_FIXED_LEN + MAX_RTP_LEN;
const COMMIT_BODY_LEN: usize = 1 + 1 + 8;
const FLAG_KEYFRAME: u8 = 1;

/// Audio-only objects have no keyframes to seek to; the index gets an entry this often.
pub(crate) const AUDIO_INDEX_STEP_MS: u64 = 100;
/// Upper bounds for what an index file may claim, checked before allocating.
const MAX_TRACKS: usize = 256;
const MAX_INDEX_ENTRIES: usize = 1 << 24;
/// The largest index file: its fixed part, the tracks and the entries.
pub(crate) const MAX_INDEX_LEN: u64 = 128 + MAX_TRACKS as u64 * 9 + MAX_INDEX_ENTRIES as u64 * 16;
/// The largest `meta.json`: an SDP and some headers, far below this.
pub(crate) const MAX_META_LEN: u64 = 4 * 1024 * 1024;

/// The fixed header at offset 0 of `run-<seq>.log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogHeader {
    pub(crate) seq: u32,
    pub(crate) generation: u64,
    pub(crate) start_ms: u64,
}

impl LogHeader {
    pub(crate) fn encode(&self) -> [u8; LOG_HEADER_LEN as usize] {
        let mut b = [0u8; LOG_HEADER_LEN as usize];
        b[0..8].copy_from_slice(LOG_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.start_ms.to_le_bytes());
        // 32..36 reserved, zero.
        let crc = crc32c(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<LogHeader> {
        if b.len() < LOG_HEADER_LEN as usize || &b[0..8] != LOG_MAGIC {
            return None;
        }
        if crc32c(&b[..36]) != u32::from_le_bytes(b[36..40].try_into().ok()?) {
            return None;
        }
        if u32::from_le_bytes(b[8..12].try_into().ok()?) != FORMAT_VERSION {
            return None;
        }
        Some(LogHeader {
            seq: u32::from_le_bytes(b[12..16].try_into().ok()?),
            generation: u64::from_le_bytes(b[16..24].try_into().ok()?),
            start_ms: u64::from_le_bytes(b[24..32].try_into().ok()?),
        })
    }
}

/// Appends one packet record to `out`.
pub(crate) fn encode_packet(
    out: &mut Vec<u8>,
    track: u8,
    media_ticks: u64,
    arrival_unix_ms: u64,
    keyframe: bool,
    rtp: &[u8],
) {
    let body_len = (PACKET_FIXED_LEN + rtp.len()) as u32;
    let start = out.len();
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(KIND_PACKET);
    out.push(track);
    out.push(if keyframe { FLAG_KEYFRAME } else { 0 });
    out.extend_from_slice(&media_ticks.to_le_bytes());
    out.extend_from_slice(&arrival_unix_ms.to_le_bytes());
    out.extend_from_slice(rtp);
    seal(out, start);
}

/// Appends the run's commit record.
pub(crate) fn encode_commit(out: &mut Vec<u8>, clean: bool, packets: u64) {
    let start = out.len();
    out.extend_from_slice(&(COMMIT_BODY_LEN as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(KIND_COMMIT);
    out.push(clean as u8);
    out.extend_from_slice(&packets.to_le_bytes());
    seal(out, start);
}

fn seal(out: &mut [u8], start: usize) {
    let crc = update(crc32c(&out[start..start + 4]), &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Packet {
        track: u8,
        media_ticks: u64,
        keyframe: bool,
        /// Byte range of the RTP packet within the body buffer.
        rtp_at: usize,
    },
    Commit {
        clean: bool,
        packets: u64,
    },
}

/// Why reading a record stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordEnd {
    /// Clean end of the bytes allowed.
    Eof,
    /// A torn, oversized or checksum-failing record: the verified prefix ends here.
    Damaged,
}

/// Reads one record from `r` into `body` (reused between calls). `remaining` is how many
/// bytes the caller allows (the verified length or the file length); a record that would
/// cross it is `Damaged` (a torn tail). Returns the record and its total length.
pub(crate) fn read_record(
    r: &mut impl Read,
    remaining: u64,
    body: &mut Vec<u8>,
) -> io::Result<Result<(Record, u64), RecordEnd>> {
    if remaining == 0 {
        return Ok(Err(RecordEnd::Eof));
    }
    if remaining < RECORD_HEAD_LEN as u64 {
        return Ok(Err(RecordEnd::Damaged));
    }
    let mut head = [0u8; RECORD_HEAD_LEN];
    if !read_full(r, &mut head)? {
        return Ok(Err(RecordEnd::Damaged));
    }
    let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_BODY_LEN || (RECORD_HEAD_LEN + len) as u64 > remaining {
        return Ok(Err(RecordEnd::Damaged));
    }
    body.clear();
    body.resize(len, 0);
    if !read_full(r, body)? {
        return Ok(Err(RecordEnd::Damaged));
    }
    if update(crc32c(&head[0..4]), body) != crc {
        return Ok(Err(RecordEnd::Damaged));
    }
    let total = (RECORD_HEAD_LEN + len) as u64;
    let rec = match body[0] {
        KIND_PACKET if len >= PACKET_FIXED_LEN => Record::Packet {
            track: body[1],
            keyframe: body[2] & FLAG_KEYFRAME != 0,
            media_ticks: u64::from_le_bytes(body[3..11].try_into().expect("8 bytes")),
            rtp_at: PACKET_FIXED_LEN,
        },
        KIND_COMMIT if len == COMMIT_BODY_LEN => Record::Commit {
            clean: body[1] != 0,
            packets: u64::from_le_bytes(body[2..10].try_into().expect("8 bytes")),
        },
        _ => return Ok(Err(RecordEnd::Damaged)),
    };
    Ok(Ok((rec, total)))
}

/// `read_exact` that reports a short read as `false` instead of an error.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Media time in ms of `ticks` at `clock_rate` (which `Meta` validation keeps non-zero).
pub(crate) fn ticks_to_ms(ticks: u64, clock_rate: u32) -> u64 {
    (ticks as u128 * 1000 / clock_rate.max(1) as u128).min(u64::MAX as u128) as u64
}

/// The track whose keyframes a reader seeks to: the first video track, if any.
pub(crate) fn primary_track(tracks: &[TrackMeta]) -> Option<usize> {
    tracks.iter().position(|t| t.is_video)
}

/// What a run holds, built packet by packet: by the fill writer as it appends and by
/// the scan on open, with the same code so both agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunSummary {
    pub(crate) header: LogHeader,
    /// Bytes of the log that verify (header included).
    pub(crate) valid_len: u64,
    /// `Some(clean)` once the commit record is in.
    pub(crate) committed: Option<bool>,
    pub(crate) packets: u64,
    /// Media time of the first keyframe of the primary track (any first packet when the
    /// object has no video): where this run's held range starts.
    pub(crate) first_key_ms: Option<u64>,
    /// Per track, the media time of its last packet.
    pub(crate) track_last_ms: Vec<Option<u64>>,
    /// Seek points: (media ms, offset of the keyframe record) in log order.
    pub(crate) index: Vec<(u64, u64)>,
    clock_rates: Vec<u32>,
    primary: Option<usize>,
}

impl RunSummary {
    pub(crate) fn new(header: LogHeader, tracks: &[TrackMeta]) -> RunSummary {
        RunSummary {
            header,
            valid_len: LOG_HEADER_LEN,
            committed: None,
            packets: 0,
            first_key_ms: None,
            track_last_ms: vec![None; tracks.len()],
            index: Vec::new(),
            clock_rates: tracks.iter().map(|t| t.clock_rate).collect(),
            primary: primary_track(tracks),
        }
    }

    pub(crate) fn ms(&self, track: u8, ticks: u64) -> u64 {
        ticks_to_ms(ticks, self.clock_rates[track as usize])
    }

    /// Accounts one packet record at `offset` of `len` bytes. The caller has checked
    /// `track` is in range.
    pub(crate) fn add_packet(
        &mut self,
        offset: u64,
        len: u64,
        track: u8,
        ticks: u64,
        keyframe: bool,
    ) {
        let ms = self.ms(track, ticks);
        let t = track as usize;
        let seek_point = match self.primary {
            Some(p) => t == p && keyframe,
            None => match self.index.last() {
                None => true,
                Some(&(last, _)) => ms >= last.saturating_add(AUDIO_INDEX_STEP_MS),
            },
        };
        if seek_point {
            if self.first_key_ms.is_none() {
                self.first_key_ms = Some(ms);
            }
            self.index.push((ms, offset));
        }
        self.track_last_ms[t] = Some(ms);
        self.packets += 1;
        self.valid_len = offset + len;
    }

    /// The run's held range: from its first keyframe to the last packet's media time,
    /// the minimum over the tracks that have packets. None while it holds no usable span.
    pub(crate) fn range(&self) -> Option<(u64, u64)> {
        let start = self.first_key_ms?;
        let end = self.track_last_ms.iter().flatten().copied().min()?;
        (end > start).then_some((start, end))
    }

    pub(crate) fn tracks(&self) -> usize {
        self.clock_rates.len()
    }
}

/// Verifies a log from its start: header, then records until the first that does not
/// verify. Returns None when the header itself is unusable.
pub(crate) fn scan_log(file: &mut File, tracks: &[TrackMeta]) -> io::Result<Option<RunSummary>> {
    let file_len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let mut hb = [0u8; LOG_HEADER_LEN as usize];
    if !read_full(&mut r, &mut hb)? {
        return Ok(None);
    }
    let Some(header) = LogHeader::decode(&hb) else {
        return Ok(None);
    };
    let mut sum = RunSummary::new(header, tracks);
    let mut body = Vec::new();
    let mut offset = LOG_HEADER_LEN;
    while let Ok((rec, len)) = read_record(&mut r, file_len - offset, &mut body)? {
        match rec {
            Record::Packet {
                track,
                media_ticks,
                keyframe,
                ..
            } => {
                if track as usize >= tracks.len() || sum.committed.is_some() {
                    break;
                }
                sum.add_packet(offset, len, track, media_ticks, keyframe);
            }
            Record::Commit { clean, packets } => {
                if sum.committed.is_some() || packets != sum.packets {
                    break;
                }
                sum.committed = Some(clean);
                sum.valid_len = offset + len;
            }
        }
        offset += len;
    }
    Ok(Some(sum))
}

/// The index file `run-<seq>.idx`, written at run end: the summary of a committed log,
/// so opening the cache need not re-read every packet. Trusted only when it verifies
/// and names exactly the log's length.
pub(crate) fn encode_index(sum: &RunSummary) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + sum.index.len() * 16);
    b.extend_from_slice(IDX_MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&sum.header.seq.to_le_bytes());
    b.extend_from_slice(&sum.header.generation.to_le_bytes());
    b.extend_from_slice(&sum.header.start_ms.to_le_bytes());
    b.extend_from_slice(&sum.valid_len.to_le_bytes());
    b.push(match sum.committed {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    });
    b.extend_from_slice(&sum.packets.to_le_bytes());
    put_opt(&mut b, sum.first_key_ms);
    b.extend_from_slice(&(sum.track_last_ms.len() as u32).to_le_bytes());
    for &t in &sum.track_last_ms {
        put_opt(&mut b, t);
    }
    b.extend_from_slice(&(sum.index.len() as u32).to_le_bytes());
    for &(ms, off) in &sum.index {
        b.extend_from_slice(&ms.to_le_bytes());
        b.extend_from_slice(&off.to_le_bytes());
    }
    let crc = crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn put_opt(b: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => b.push(0),
        Some(v) => {
            b.push(1);
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// A bounds-checked cursor: every read says None instead of panicking on short input.
struct Cur<'a>(&'a [u8]);

impl Cur<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn opt(&mut self) -> Option<Option<u64>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.u64()?)),
            _ => None,
        }
    }
}

pub(crate) fn decode_index(b: &[u8], tracks: &[TrackMeta]) -> Option<RunSummary> {
    if b.len() < 4 {
        return None;
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut c = Cur(body);
    if c.take(8)? != IDX_MAGIC || c.u32()? != FORMAT_VERSION {
        return None;
    }
    let header = LogHeader {
        seq: c.u32()?,
        generation: c.u64()?,
        start_ms: c.u64()?,
    };
    let mut sum = RunSummary::new(header, tracks);
    sum.valid_len = c.u64()?;
    sum.committed = match c.u8()? {
        0 => None,
        1 => Some(false),
        2 => Some(true),
        _ => return None,
    };
    sum.packets = c.u64()?;
    sum.first_key_ms = c.opt()?;
    let n = c.u32()? as usize;
    if n != tracks.len() || n > MAX_TRACKS {
        return None;
    }
    for t in 0..n {
        sum.track_last_ms[t] = c.opt()?;
    }
    let entries = c.u32()? as usize;
    if entries > MAX_INDEX_ENTRIES || entries.checked_mul(16)? != c.0.len() {
        return None;
    }
    sum.index.reserve_exact(entries);
    let mut prev_off = 0;
    for _ in 0..entries {
        let ms = c.u64()?;
        let off = c.u64()?;
        // Offsets point at records inside the verified log, in log order.
        if off < LOG_HEADER_LEN || off >= sum.valid_len || off < prev_off {
            return None;
        }
        prev_off = off;
        sum.index.push((ms, off));
    }
    Some(sum)
}

/// The metadata file `meta.json`: one JSON document, then a line with its CRC-32C, so
/// that a flipped byte is not taken for a different URL or validator.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct MetaFile {
    pub(crate) format: u32,
    pub(crate) key: ObjectKey,
    pub(crate) meta: Meta,
    /// Bumped by every refetch; logs of another generation are stale leftovers.
    pub(crate) generation: u64,
    pub(crate) pinned: bool,
    pub(crate) last_used_unix_ms: u64,
}

pub(crate) fn encode_meta(m: &MetaFile) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(m).expect("meta serializes");
    let crc = crc32c(&b);
    b.extend_from_slice(format!("\ncrc32c {crc:08x}\n").as_bytes());
    b
}

pub(crate) fn decode_meta(b: &[u8]) -> Option<MetaFile> {
    let text = std::str::from_utf8(b).ok()?;
    let text = text.strip_suffix('\n')?;
    let (json, crc_line) = text.rsplit_once('\n')?;
    let crc = u32::from_str_radix(crc_line.strip_prefix("crc32c ")?, 16).ok()?;
    if crc32c(json.as_bytes()) != crc {
        return None;
    }
    let m: MetaFile = serde_json::from_str(json).ok()?;
    (m.format == FORMAT_VERSION).then_some(m)
}

/// Replaces `dir/name` all at once: write a temporary file, fsync it, rename it over
/// the old one, fsync the directory. A crash leaves the old file or the new one.
pub(crate) fn atomic_write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_header_round_trips_and_rejects_any_flipped_byte() {
        let h = LogHeader {
            seq: 7,
            generation: 3,
            start_ms: 12_345,
        };
        let b = h.encode();
        assert_eq!(LogHeader::decode(&b), Some(h));
        for i in 0..b.len() {
            let mut d = b;
            d[i] ^= 0x10;
            assert_eq!(LogHeader::decode(&d), None, "byte {i}");
        }
        assert_eq!(LogHeader::decode(&b[..39]), None);
    }

    #[test]
    fn records_round_trip_and_every_cut_is_damage_not_a_record() {
        let mut buf = Vec::new();
        encode_packet(&mut buf, 1, 90_000, 5, true, &[0x80, 96, 1, 2, 9, 9]);
        encode_commit(&mut buf, true, 1);
        let mut r = &buf[..];
        let mut body = Vec::new();
        let (rec, len) = read_record(&mut r, buf.len() as u64, &mut body)
            .unwrap()
            .unwrap();
        assert_eq!(
            rec,
            Record::Packet {
                track: 1,
                media_ticks: 90_000,
                keyframe: true,
                rtp_at: PACKET_FIXED_LEN
            }
        );
        assert_eq!(&body[PACKET_FIXED_LEN..], &[0x80, 96, 1, 2, 9, 9]);
        let rest = buf.len() as u64 - len;
        let (rec, _) = read_record(&mut r, rest, &mut body).unwrap().unwrap();
        assert_eq!(
            rec,
            Record::Commit {
                clean: true,
                packets: 1
            }
        );
        for cut in 1..len as usize {
            let mut r = &buf[..cut];
            let got = read_record(&mut r, cut as u64, &mut body).unwrap();
            assert_eq!(got, Err(RecordEnd::Damaged), "cut at {cut}");
        }
        for i in 0..len as usize {
            let mut d = buf.clone();
            d[i] ^= 0x01;
            let mut r = &d[..];
            let got = read_record(&mut r, d.len() as u64, &mut body).unwrap();
            assert_eq!(got, Err(RecordEnd::Damaged), "flip at {i}");
        }
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut d = vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        d.extend_from_slice(&[0; 16]);
        let mut r = &d[..];
        let mut body = Vec::new();
        assert_eq!(
            read_record(&mut r, u64::MAX, &mut body).unwrap(),
            Err(RecordEnd::Damaged)
        );
        assert!(body.capacity() < 1024);
    }
}
