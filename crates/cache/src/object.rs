//! One cache object in memory: its metadata file, its runs (one packet log each), the
//! held ranges they add up to, and the plan a reader follows through them. Also the
//! recovery of one object directory on open.
//!
//! A run's held range is its verified prefix from its first keyframe to the last
//! packet's media time (the minimum over tracks). Ranges of several runs that overlap
//! or touch merge into one held range; a reader crosses from run to run inside it.
//! This module decides what is kept; the bytes are `format.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use crate::fill::FillShared;
use crate::format::{
    self, atomic_write, decode_index, decode_meta, encode_index, encode_meta, scan_log, LogHeader,
    MetaFile, RunSummary, LOG_HEADER_LEN,
};
use crate::reader::Segment;
use crate::{Meta, ObjectKey};

pub(crate) const META_FILE: &str = "meta.json";
pub(crate) const USED_FILE: &str = "used";
/// How far from npt 0 and from the SDP's duration a held range may start and end and
/// still count as the whole clip: the first keyframe and the last packets are rarely
/// exactly at the edges.
pub(crate) const COMPLETE_SLACK_MS: u64 = 1_000;
/// Other tracks' packets can sit a little before the primary track's keyframe in the
/// log; a reader starts scanning this much earlier so that it does not miss them.
const SCAN_SLACK_MS: u64 = 2_000;

pub(crate) fn log_name(seq: u32) -> String {
    format!("run-{seq:08}.log")
}

pub(crate) fn idx_name(seq: u32) -> String {
    format!("run-{seq:08}.idx")
}

/// The directory name of an object: the first 128 bits of SHA-256 over its key's JSON.
pub(crate) fn dir_name(key: &ObjectKey) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(key).expect("key serializes");
    let h = Sha256::digest(&json);
    h[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) sum: RunSummary,
    pub(crate) log: PathBuf,
    pub(crate) idx_len: u64,
    /// Set by a reader that found a record failing its checksum (damage that happened
    /// after the run was verified): the run stops being served at once and is
    /// re-verified by the next call that may change the object.
    pub(crate) damaged: Arc<AtomicBool>,
}

impl Run {
    pub(crate) fn new(sum: RunSummary, log: PathBuf, idx_len: u64) -> Run {
        Run {
            sum,
            log,
            idx_len,
            damaged: Arc::default(),
        }
    }
    /// The held range, unless a reader found damage in it.
    pub(crate) fn range(&self) -> Option<(u64, u64)> {
        if self.damaged.load(Ordering::Relaxed) {
            return None;
        }
        self.sum.range()
    }
    fn size(&self) -> u64 {
        self.sum.valid_len + self.idx_len
    }
    fn clean(&self) -> bool {
        self.sum.committed == Some(true)
    }
}

#[derive(Debug)]
pub(crate) struct ActiveFill {
    pub(crate) shared: Weak<FillShared>,
    pub(crate) seq: u32,
}

#[derive(Debug)]
pub(crate) struct Object {
    pub(crate) dir: PathBuf,
    pub(crate) file: MetaFile,
    pub(crate) meta_len: u64,
    pub(crate) runs: Vec<Run>,
    pub(crate) next_seq: u32,
    pub(crate) fill: Option<ActiveFill>,
    /// Tells this object apart from an earlier one of the same key that was purged.
    pub(crate) incarnation: u64,
}

/// What loading one directory found.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) kept_bytes: u64,
    pub(crate) dropped_bytes: u64,
}

impl Object {
    pub(crate) fn create(
        root: &Path,
        key: &ObjectKey,
        meta: &Meta,
        now_ms: u64,
        incarnation: u64,
    ) -> io::Result<Object> {
        let dir = root.join(dir_name(key));
        if dir.exists() {
            // Leftovers the index does not know (say, a directory whose meta failed to
            // verify and could not be removed): start clean.
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        let file = MetaFile {
            format: format::FORMAT_VERSION,
            key: key.clone(),
            meta: meta.clone(),
            generation: 1,
            pinned: false,
            last_used_unix_ms: now_ms,
        };
        let mut o = Object {
            dir,
            file,
            meta_len: 0,
            runs: Vec::new(),
            next_seq: 1,
            fill: None,
            incarnation,
        };
        o.write_meta()?;
        format::sync_dir(root)?;
        Ok(o)
    }

    pub(crate) fn write_meta(&mut self) -> io::Result<()> {
        let b = encode_meta(&self.file);
        if b.len() as u64 > format::MAX_META_LEN {
            // Open would refuse to read it back.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the SDP and validators are too large to cache",
            ));
        }
        atomic_write(&self.dir, META_FILE, &b)?;
        self.meta_len = b.len() as u64;
        Ok(())
    }

    /// Best effort, no fsync: losing the last-used time in a crash only ages the LRU.
    pub(crate) fn touch(&mut self, now_ms: u64) {
        self.file.last_used_unix_ms = now_ms;
        let _ = fs::write(self.dir.join(USED_FILE), now_ms.to_string());
    }

    pub(crate) fn fill_alive(&self) -> Option<Arc<FillShared>> {
        self.fill.as_ref().and_then(|f| f.shared.upgrade())
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        let live = self
            .fill_alive()
            .map(|s| s.bytes.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(0);
        self.meta_len + self.runs.iter().map(Run::size).sum::<u64>() + live
    }

    /// Held ranges: run ranges merged where they overlap or touch.
    pub(crate) fn ranges(&self) -> Vec<(u64, u64)> {
        let mut rs: Vec<(u64, u64)> = self.runs.iter().filter_map(Run::range).collect();
        rs.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(rs.len());
        for (s, e) in rs {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        out
    }

    pub(crate) fn covered(&self, from_ms: u64) -> Option<(u64, u64)> {
        self.ranges()
            .into_iter()
            .find(|&(s, e)| s <= from_ms && from_ms < e)
    }

    pub(crate) fn complete(&self) -> bool {
        let Some(d) = self.file.meta.duration_ms else {
            return false;
        };
        self.ranges()
            .iter()
            .any(|&(s, e)| s <= COMPLETE_SLACK_MS && e.saturating_add(COMPLETE_SLACK_MS) >= d)
    }

    /// The segments a reader plays to serve `from_ms`, and the media time it starts at.
    pub(crate) fn plan(&self, from_ms: u64) -> Option<(u64, Vec<Segment>)> {
        let (_, range_end) = self.covered(from_ms)?;
        let held: Vec<(usize, u64, u64)> = self
            .runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.range().map(|(s, e)| (i, s, e)))
            .collect();
        // Start in the run whose seek point is latest at or before `from_ms`.
        let mut best: Option<(u64, u64, usize, u64)> = None; // (key ms, end, run, offset)
        for &(i, s, e) in &held {
            if s <= from_ms && from_ms < e {
                if let Some((k, off)) = seek_point(&self.runs[i].sum, from_ms) {
                    if best.is_none_or(|(bk, be, _, _)| (k, e) > (bk, be)) {
                        best = Some((k, e, i, off));
                    }
                }
            }
        }
        let (start, _, mut cur, mut primary_from) = best?;
        let mut lo = start;
        let mut segs = Vec::new();
        loop {
            let run = &self.runs[cur];
            let (_, e_cur) = run.range()?;
            let scan_from = scan_start(&run.sum, primary_from, lo);
            if e_cur >= range_end {
                segs.push(Segment {
                    path: run.log.clone(),
                    damaged: run.damaged.clone(),
                    scan_from,
                    end: run.sum.valid_len,
                    primary_from,
                    lo_ms: lo,
                    // A run that ended cleanly is whole to its last packet; otherwise the
                    // packets at its end time may be a torn frame.
                    hi_ms: if run.clean() { None } else { Some(e_cur) },
                });
                break;
            }
            let (next, _, _) = held
                .iter()
                .filter(|&&(_, s, e)| s <= e_cur && e > e_cur)
                .max_by_key(|&&(_, _, e)| e)
                .copied()?;
            let nsum = &self.runs[next].sum;
            // Hand over at a keyframe of the next run when it has one in reach, else at
            // this run's end (the clip's bytes are the same in both runs).
            let handoff = nsum
                .index
                .iter()
                .filter(|&&(ms, _)| ms > lo && ms <= e_cur)
                .map(|&(ms, _)| ms)
                .max()
                .unwrap_or(e_cur);
            segs.push(Segment {
                path: run.log.clone(),
                damaged: run.damaged.clone(),
                scan_from,
                end: run.sum.valid_len,
                primary_from,
                lo_ms: lo,
                hi_ms: Some(handoff),
            });
            let (_, off) = seek_point(nsum, handoff)?;
            cur = next;
            primary_from = off;
            lo = handoff;
        }
        Some((start, segs))
    }

    /// Removes runs another run makes redundant (its range contains theirs and it is at
    /// least as clean), and runs that hold no range at all.
    pub(crate) fn prune(&mut self) {
        let ranges: Vec<_> = self
            .runs
            .iter()
            .map(|r| (r.sum.header.seq, r.range(), r.clean()))
            .collect();
        self.runs.retain(|r| {
            let seq = r.sum.header.seq;
            if r.damaged.load(Ordering::Relaxed) {
                // Re-verified by `maintain`, not judged on its stale summary.
                return true;
            }
            let redundant = match r.range() {
                None => true,
                Some((s, e)) => ranges.iter().any(|&(oseq, orange, oclean)| {
                    oseq != seq
                        && orange.is_some_and(|(os, oe)| os <= s && e <= oe)
                        && (oclean || !r.clean())
                        // Of two equal runs, keep the newer.
                        && (orange != Some((s, e)) || oclean != r.clean() || oseq > seq)
                }),
            };
            if redundant {
                let _ = fs::remove_file(&r.log);
                let _ = fs::remove_file(r.log.with_extension("idx"));
            }
            !redundant
        });
    }

    /// Discards every run (a refetch): the new generation is written first, so a crash
    /// halfway leaves logs that the next open recognizes as stale.
    pub(crate) fn discard_runs(&mut self) -> io::Result<()> {
        self.file.generation += 1;
        self.write_meta()?;
        for r in self.runs.drain(..) {
            let _ = fs::remove_file(&r.log);
            let _ = fs::remove_file(r.log.with_extension("idx"));
        }
        Ok(())
    }

    /// Re-verifies what changed behind the index's back: runs a reader found damaged
    /// (kept up to their verified prefix) and a run whose writer went away without
    /// `end_fill` (dropped, or its thread died), like recovery on open does.
    pub(crate) fn maintain(&mut self) {
        let mut again = Vec::new();
        self.runs.retain(|r| {
            let bad = r.damaged.load(Ordering::Relaxed);
            if bad {
                again.push(r.sum.header.seq);
            }
            !bad
        });
        if let Some(f) = &self.fill {
            if f.shared.strong_count() == 0 {
                again.push(f.seq);
                self.fill = None;
            }
        }
        for seq in again {
            let log = self.dir.join(log_name(seq));
            // The index describes what the log was, not what it is now.
            let _ = fs::remove_file(log.with_extension("idx"));
            let mut loaded = Loaded::default();
            if let Ok(Some(run)) = recover_run(&log, seq, &self.file, &mut loaded) {
                self.runs.push(run);
            }
        }
        self.runs.sort_by_key(|r| r.sum.header.seq);
    }

    /// Loads `dir` as found on disk, verifying and repairing. Err: the object is unusable
    /// (the caller removes it).
    pub(crate) fn load(dir: &Path, incarnation: u64, loaded: &mut Loaded) -> Result<Object, ()> {
        let name = dir.file_name().and_then(|n| n.to_str()).ok_or(())?;
        let bytes = read_bounded(&dir.join(META_FILE), format::MAX_META_LEN).ok_or(())?;
        let file = decode_meta(&bytes).ok_or(())?;
        if dir_name(&file.key) != name || !meta_valid(&file.key, &file.meta) {
            return Err(());
        }
        let mut o = Object {
            dir: dir.to_path_buf(),
            file,
            meta_len: bytes.len() as u64,
            runs: Vec::new(),
            next_seq: 1,
            fill: None,
            incarnation,
        };
        if let Some(used) = read_bounded(&dir.join(USED_FILE), 32)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            o.file.last_used_unix_ms = o.file.last_used_unix_ms.max(used);
        }
        let mut logs = Vec::new();
        let entries = fs::read_dir(dir).map_err(|_| ())?;
        for ent in entries.flatten() {
            let p = ent.path();
            let Some(n) = p.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let size = ent.metadata().map(|m| m.len()).unwrap_or(0);
            if n == META_FILE || n == USED_FILE {
                continue;
            }
            if let Some(seq) = parse_seq(&n, ".log") {
                logs.push((seq, p));
                continue;
            }
            if let Some(seq) = parse_seq(&n, ".idx") {
                if dir.join(log_name(seq)).exists() {
                    continue;
                }
            }
            // Temporary files of an interrupted write, orphan indexes, strangers.
            loaded.dropped_bytes += size;
            let _ = fs::remove_file(&p);
        }
        logs.sort();
        for (seq, log) in logs {
            o.next_seq = o.next_seq.max(seq.saturating_add(1));
            if let Ok(Some(run)) = recover_run(&log, seq, &o.file, loaded) {
                o.runs.push(run);
            }
        }
        o.prune();
        loaded.kept_bytes += o.size_bytes();
        Ok(o)
    }
}

pub(crate) fn meta_valid(key: &ObjectKey, meta: &Meta) -> bool {
    let file = MetaFile {
        format: format::FORMAT_VERSION,
        key: key.clone(),
        meta: meta.clone(),
        generation: u64::MAX,
        pinned: false,
        last_used_unix_ms: u64::MAX,
    };
    meta.tracks.len() == key.tracks.len()
        && meta.tracks.len() <= 255
        && meta.tracks.iter().all(|t| t.clock_rate > 0)
        && encode_meta(&file).len() as u64 <= format::MAX_META_LEN
}

/// Reads a whole small file, refusing one larger than `max` (damage or a stranger's
/// file) before allocating for it.
fn read_bounded(path: &Path, max: u64) -> Option<Vec<u8>> {
    let f = File::open(path).ok()?;
    if f.metadata().ok()?.len() > max {
        return None;
    }
    let mut b = Vec::new();
    f.take(max + 1).read_to_end(&mut b).ok()?;
    (b.len() as u64 <= max).then_some(b)
}

fn parse_seq(name: &str, ext: &str) -> Option<u32> {
    let digits = name.strip_prefix("run-")?.strip_suffix(ext)?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The seek point at or before `ms`: (its media time, its record's offset).
fn seek_point(sum: &RunSummary, ms: u64) -> Option<(u64, u64)> {
    sum.index
        .iter()
        .filter(|&&(k, _)| k <= ms)
        .max_by_key(|&&(k, off)| (k, off))
        .copied()
}

/// Where to start reading so that other tracks' packets just before the seek point in
/// the log are not missed: an index entry some seconds earlier.
fn scan_start(sum: &RunSummary, primary_from: u64, lo: u64) -> u64 {
    sum.index
        .iter()
        .filter(|&&(k, off)| off <= primary_from && k.saturating_add(SCAN_SLACK_MS) <= lo)
        .map(|&(_, off)| off)
        .max()
        .unwrap_or(LOG_HEADER_LEN)
}

/// Verifies one log (trusting its index file when that names exactly the committed log)
/// and repairs it: truncates what does not verify, closes an unfinished run with a
/// commit record and writes its index. Ok(None): the run was removed.
pub(crate) fn recover_run(
    log: &Path,
    seq: u32,
    meta: &MetaFile,
    loaded: &mut Loaded,
) -> io::Result<Option<Run>> {
    let idx = log.with_extension("idx");
    let mut f = OpenOptions::new().read(true).write(true).open(log)?;
    let file_len = f.metadata()?.len();
    let tracks = &meta.meta.tracks;
    let good_header = |h: &LogHeader| h.seq == seq && h.generation == meta.generation;
    if let Some(sum) = read_bounded(&idx, format::MAX_INDEX_LEN)
        .and_then(|b| decode_index(&b, tracks).map(|s| (s, b.len() as u64)))
        .filter(|(s, _)| s.committed.is_some() && s.valid_len == file_len && good_header(&s.header))
        .filter(|(s, _)| header_and_commit_verify(&mut f, s).unwrap_or(false))
    {
        return Ok(Some(Run::new(sum.0, log.to_path_buf(), sum.1)));
    }
    let _ = fs::remove_file(&idx);
    let sum = match scan_log(&mut f, tracks)? {
        Some(s) if good_header(&s.header) && s.range().is_some() => s,
        _ => {
            drop(f);
            loaded.dropped_bytes += file_len;
            fs::remove_file(log)?;
            return Ok(None);
        }
    };
    let mut sum = sum;
    if sum.valid_len < file_len {
        loaded.dropped_bytes += file_len - sum.valid_len;
        f.set_len(sum.valid_len)?;
    }
    if sum.committed.is_none() {
        let mut rec = Vec::new();
        format::encode_commit(&mut rec, false, sum.packets);
        f.seek(SeekFrom::Start(sum.valid_len))?;
        f.write_all(&rec)?;
        sum.valid_len += rec.len() as u64;
        sum.committed = Some(false);
    }
    f.sync_all()?;
    let ib = encode_index(&sum);
    let dir = log.parent().unwrap_or(Path::new("."));
    let name = idx.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    atomic_write(dir, name, &ib)?;
    Ok(Some(Run::new(sum, log.to_path_buf(), ib.len() as u64)))
}

/// The cheap checks behind trusting an index file: the log's header and its final
/// commit record verify. (Packet records are verified as readers read them.)
fn header_and_commit_verify(f: &mut File, sum: &RunSummary) -> io::Result<bool> {
    let mut hb = [0u8; LOG_HEADER_LEN as usize];
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut hb)?;
    if LogHeader::decode(&hb) != Some(sum.header) {
        return Ok(false);
    }
    let mut rec = Vec::new();
    format::encode_commit(&mut rec, sum.committed == Some(true), sum.packets);
    let at = sum.valid_len.saturating_sub(rec.len() as u64);
    if at < LOG_HEADER_LEN {
        return Ok(false);
    }
    let mut tail = vec![0u8; rec.len()];
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(&mut tail)?;
    Ok(tail == rec)
}
