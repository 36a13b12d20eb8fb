//! Cache objects for the edge's on-demand content: the on-disk format, the in-memory
//! index rebuilt from disk, LRU eviction with pins, and (later) the freshness rules.
//!
//! No sockets, no tokio, no clock reads: `now` is an argument. It does blocking file
//! I/O because the object format is files; the edge calls it off its async tasks.
//!
//! SKELETON: the surface agreed between the cache and the edge (see
//! `docs/cache-format.md` once written); bodies are filled in by the cache slice.

use std::io;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Which object: the origin URL plus the variant (the sorted SDP media indexes the
/// viewer set up, so each bit-rate/track selection is its own object).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    pub url: String,
    pub tracks: Vec<usize>,
}

/// What the origin said about the object, written at fill start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The SDP text as the origin sent it.
    pub sdp: String,
    /// One per entry of `ObjectKey::tracks`, same order.
    pub tracks: Vec<TrackMeta>,
    /// npt end from the SDP `a=range` in ms, when finite.
    pub duration_ms: Option<u64>,
    pub validators: Validators,
    /// The origin asked for credentials for this object.
    pub needed_auth: bool,
    /// Unix ms the origin's DESCRIBE was answered (freshness counts from it).
    pub fetched_unix_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackMeta {
    pub clock_rate: u32,
    pub is_video: bool,
    pub payload_type: u8,
}

/// The origin's validators and caching headers, as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// ETag or MTag.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub expires: Option<String>,
    pub cache_control: Option<String>,
    /// The SDP `o=` line's sess-id and sess-version.
    pub sdp_origin: Option<String>,
}

/// One RTP packet to store. `media_ticks` is its media time in its track's clock units
/// from npt 0 of the clip, so packets of different fills line up.
#[derive(Debug, Clone, Copy)]
pub struct PacketIn<'a> {
    pub track: u8,
    pub media_ticks: u64,
    pub arrival_unix_ms: u64,
    /// First packet of a keyframe (video); every audio packet.
    pub keyframe: bool,
    pub rtp: &'a [u8],
}

/// One stored RTP packet read back.
#[derive(Debug, Clone)]
pub struct PacketOut {
    pub track: u8,
    pub media_ticks: u64,
    pub keyframe: bool,
    pub rtp: bytes::Bytes,
}

/// An object as the index knows it.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub key: ObjectKey,
    pub meta: Meta,
    /// Its ranges cover 0..duration.
    pub complete: bool,
    /// Complete held ranges in ms, sorted, non-overlapping.
    pub ranges: Vec<(u64, u64)>,
    pub size_bytes: u64,
    pub pinned: bool,
    pub last_used_unix_ms: u64,
}

/// What opening the cache found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    pub objects: usize,
    pub kept_bytes: u64,
    pub dropped_bytes: u64,
    pub dropped_objects: usize,
}

/// The cache directory, its index and LRU. Not shared: the edge wraps it in a Mutex.
#[derive(Debug)]
pub struct Cache {
    _private: (),
}

/// One fill run being written.
#[derive(Debug)]
pub struct FillWriter {
    _private: (),
}

/// Plays one held range back in media-time order.
#[derive(Debug)]
pub struct Reader {
    _private: (),
}

impl Cache {
    /// Opens (creating) `dir` and rebuilds the index from disk: keeps what verifies,
    /// drops the rest; evicts down to `limit_bytes` (never pinned objects).
    pub fn open(_dir: &Path, _limit_bytes: u64) -> io::Result<(Cache, Recovery)> {
        todo!("cache slice")
    }
    pub fn lookup(&self, _key: &ObjectKey) -> Option<ObjectInfo> {
        todo!("cache slice")
    }
    /// The complete held range containing `from_ms`, if any.
    pub fn covered(&self, _key: &ObjectKey, _from_ms: u64) -> Option<(u64, u64)> {
        todo!("cache slice")
    }
    /// Starts a fill run at `start_ms`. A second concurrent fill of one key is refused
    /// (`AlreadyExists`). Meta whose validators or SDP differ from the stored ones
    /// discards the old content first (a refetch).
    pub fn begin_fill(
        &mut self,
        _key: &ObjectKey,
        _meta: &Meta,
        _start_ms: u64,
        _now: SystemTime,
    ) -> io::Result<FillWriter> {
        todo!("cache slice")
    }
    /// Ends a run; `clean`: its packets are contiguous up to the last one.
    pub fn end_fill(
        &mut self,
        _fill: FillWriter,
        _clean: bool,
        _now: SystemTime,
    ) -> io::Result<ObjectInfo> {
        todo!("cache slice")
    }
    /// A reader at the keyframe at or before `from_ms` within one held range; None when
    /// `from_ms` is not held.
    pub fn reader(
        &mut self,
        _key: &ObjectKey,
        _from_ms: u64,
        _now: SystemTime,
    ) -> io::Result<Option<Reader>> {
        todo!("cache slice")
    }
    pub fn list(&self) -> Vec<ObjectInfo> {
        todo!("cache slice")
    }
    pub fn pin(&mut self, _key: &ObjectKey, _pinned: bool) -> bool {
        todo!("cache slice")
    }
    pub fn purge(&mut self, _key: &ObjectKey) -> io::Result<bool> {
        todo!("cache slice")
    }
    /// Replaces the stored validators after an unchanged revalidation.
    pub fn refresh(
        &mut self,
        _key: &ObjectKey,
        _validators: Validators,
        _fetched_unix_ms: u64,
    ) -> io::Result<()> {
        todo!("cache slice")
    }
    pub fn used_bytes(&self) -> u64 {
        todo!("cache slice")
    }
    pub fn limit_bytes(&self) -> u64 {
        todo!("cache slice")
    }
}

impl FillWriter {
    /// Appends one packet (buffered).
    pub fn push(&mut self, _p: &PacketIn<'_>) -> io::Result<()> {
        todo!("cache slice")
    }
    pub fn bytes_written(&self) -> u64 {
        todo!("cache slice")
    }
    /// The run's end so far in ms.
    pub fn end_ms(&self) -> u64 {
        todo!("cache slice")
    }
}

impl Reader {
    /// Where this reader starts, in ms (the keyframe at or before the asked time).
    pub fn start_ms(&self) -> u64 {
        todo!("cache slice")
    }
    /// The next packet in media-time order across tracks; None at the end of the range.
    pub fn next_packet(&mut self) -> io::Result<Option<PacketOut>> {
        todo!("cache slice")
    }
}
