//! The fill writer: appends one run's packets to its log, keeps the run's summary (its
//! seek index, per-track end times) in memory as it goes, and closes the run with a
//! commit record and an index file when the edge ends the fill.
//!
//! Writes are buffered and fsynced every `SYNC_EVERY` bytes and at the end, so a crash
//! loses at most the unsynced tail, which recovery then drops because it does not
//! verify. It does not decide what a run means for the object: `object.rs` does.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::format::{self, LogHeader, RunSummary, MAX_RTP_LEN};
use crate::{FillWriter, ObjectKey, PacketIn, TrackMeta};

const WRITE_CHUNK: usize = 1024 * 1024;
/// The fsync cadence only bounds what a power loss can take from a run in progress
/// (recovery keeps whatever verifies either way). Every 8 MB kept the fill waiting on
/// the disk (128-188 MB/s on the 2-core reference machine); every 64 MB lets writeback
/// overlap the next writes (280-450 MB/s there, fill_bench).
const SYNC_EVERY: u64 = 64 * 1024 * 1024;

/// What the cache sees of a fill in progress: how big it is. The cache holds it weakly,
/// so a writer that is dropped without `end_fill` is noticed.
#[derive(Debug, Default)]
pub(crate) struct FillShared {
    pub(crate) bytes: AtomicU64,
}

/// The open log and its write buffer. Dropping it (a writer dropped without
/// `end_fill`) writes the buffer out, so what was pushed is there for the cache to
/// verify and keep.
#[derive(Debug)]
struct LogFile {
    file: File,
    buf: Vec<u8>,
    unsynced: u64,
}

impl Drop for LogFile {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.file.write_all(&self.buf);
        }
    }
}

#[derive(Debug)]
pub(crate) struct FillState {
    pub(crate) key: ObjectKey,
    pub(crate) incarnation: u64,
    pub(crate) log: PathBuf,
    out: LogFile,
    pub(crate) sum: RunSummary,
    pub(crate) shared: Arc<FillShared>,
    /// A write failed: what is on disk is unknown past the last sync, so the end of
    /// the fill re-verifies the log instead of trusting `sum`.
    pub(crate) failed: bool,
}

impl FillState {
    pub(crate) fn create(
        key: &ObjectKey,
        incarnation: u64,
        log: PathBuf,
        header: LogHeader,
        tracks: &[TrackMeta],
    ) -> io::Result<(FillState, Arc<FillShared>)> {
        let file = OpenOptions::new().write(true).create_new(true).open(&log)?;
        let mut buf = Vec::with_capacity(WRITE_CHUNK + MAX_RTP_LEN + 64);
        buf.extend_from_slice(&header.encode());
        let sum = RunSummary::new(header, tracks);
        let shared = Arc::new(FillShared::default());
        shared.bytes.store(sum.valid_len, Ordering::Relaxed);
        Ok((
            FillState {
                key: key.clone(),
                incarnation,
                log,
                out: LogFile {
                    file,
                    buf,
                    unsynced: 0,
                },
                sum,
                shared: shared.clone(),
                failed: false,
            },
            shared,
        ))
    }

    fn push(&mut self, p: &PacketIn<'_>) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write of this fill failed"));
        }
        if p.track as usize >= self.sum.tracks() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "track {} is not one of the object's {}",
                    p.track,
                    self.sum.tracks()
                ),
            ));
        }
        if p.rtp.len() > MAX_RTP_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an RTP packet is at most 65,535 bytes",
            ));
        }
        let offset = self.sum.valid_len;
        let before = self.out.buf.len();
        format::encode_packet(
            &mut self.out.buf,
            p.track,
            p.media_ticks,
            p.arrival_unix_ms,
            p.keyframe,
            p.rtp,
        );
        let len = (self.out.buf.len() - before) as u64;
        self.sum
            .add_packet(offset, len, p.track, p.media_ticks, p.keyframe);
        self.shared
            .bytes
            .store(self.sum.valid_len, Ordering::Relaxed);
        if self.out.buf.len() >= WRITE_CHUNK {
            self.flush()?;
            if self.out.unsynced >= SYNC_EVERY {
                self.sync()?;
            }
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.out.buf.is_empty() {
            return Ok(());
        }
        let r = self.out.file.write_all(&self.out.buf);
        self.out.unsynced += self.out.buf.len() as u64;
        self.out.buf.clear();
        r.inspect_err(|_| self.failed = true)
    }

    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.out
            .file
            .sync_data()
            .inspect_err(|_| self.failed = true)?;
        self.out.unsynced = 0;
        Ok(())
    }

    /// Appends the commit record and makes the whole log durable.
    pub(crate) fn commit(&mut self, clean: bool) -> io::Result<()> {
        let before = self.out.buf.len();
        format::encode_commit(&mut self.out.buf, clean, self.sum.packets);
        let rec_len = (self.out.buf.len() - before) as u64;
        self.flush()?;
        self.sync()?;
        self.sum.committed = Some(clean);
        self.sum.valid_len += rec_len;
        Ok(())
    }
}

impl FillWriter {
    /// Appends one packet (buffered; fsync only at `end_fill` and every few MB).
    pub fn push(&mut self, p: &PacketIn<'_>) -> io::Result<()> {
        self.state.push(p)
    }

    /// Bytes of this run so far (header and records, buffered ones included).
    pub fn bytes_written(&self) -> u64 {
        self.state.sum.valid_len
    }

    /// The run's end so far in ms: the last packet's media time, minimum over tracks.
    pub fn end_ms(&self) -> u64 {
        self.state
            .sum
            .track_last_ms
            .iter()
            .flatten()
            .copied()
            .min()
            .unwrap_or(self.state.sum.header.start_ms)
    }
}
