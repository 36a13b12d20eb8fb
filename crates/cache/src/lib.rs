//! Cache objects for the edge's on-demand content: the on-disk format, the in-memory
//! index rebuilt from disk, LRU eviction with pins, and the freshness rules
//! ([`freshness`]).
//!
//! No sockets, no tokio, no clock reads: `now` is an argument. It does blocking file
//! I/O because the object format is files; the edge calls it off its async tasks.
//!
//! The on-disk format and what survives a crash are described in `docs/cache-format.md`.
//! What the crate does not do: fetch anything, pace playback, or share packets between
//! viewers (the edge does), or decide per-rule policy (cache on/off, object size).
//!
//! A [`Reader`] that meets a record failing its checksum ends its range with an
//! `InvalidData` error; the run is then no longer offered by [`Cache::covered`] and
//! [`Cache::lookup`], and the next [`Cache::reader`], [`Cache::begin_fill`] or
//! [`Cache::end_fill`] of that object re-verifies it and keeps its verified prefix.

mod crc;
mod fill;
mod format;
pub mod freshness;
mod object;
mod reader;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use fill::FillState;
use object::{Loaded, Object};
use reader::ReaderState;

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

impl TrackMeta {
    /// A video track (RTP's 90 kHz video clock).
    pub fn video(payload_type: u8) -> Self {
        Self {
            clock_rate: 90_000,
            is_video: true,
            payload_type,
        }
    }

    /// An audio track at `clock_rate`.
    pub fn audio(clock_rate: u32, payload_type: u8) -> Self {
        Self {
            clock_rate,
            is_video: false,
            payload_type,
        }
    }
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
    dir: PathBuf,
    limit: u64,
    objects: BTreeMap<ObjectKey, Object>,
    next_incarnation: u64,
    /// Objects evicted since open (at open included), for the edge's metric.
    evictions: u64,
}

/// One fill run being written.
#[derive(Debug)]
pub struct FillWriter {
    state: FillState,
}

/// Plays one held range back in media-time order.
#[derive(Debug)]
pub struct Reader {
    state: ReaderState,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

/// An SDP line that describes the origin's session rather than the content: `o=`
/// (its version is compared through `Validators::sdp_origin`) and `a=ssrc`/
/// `a=ssrc-group`, which origins draw per session.
pub fn per_session_line(line: &str) -> bool {
    line.starts_with("o=") || line.starts_with("a=ssrc:") || line.starts_with("a=ssrc-group:")
}

/// Whether a DESCRIBE answer (`current`) describes the content `stored` holds: the SDP
/// apart from its per-session lines (`o=`, whose version is compared through
/// `sdp_origin`, and `a=ssrc`/`a=ssrc-group`, which origins draw per session), the
/// tracks, the duration, and the validators that identify a version where both sides
/// have one. A changed `Expires`, `Cache-Control` or fetch time is not a new version.
/// The one rule for both the refetch in [`Cache::begin_fill`] and the edge's
/// revalidation and prefetch resume.
pub fn same_content(stored: &Meta, current: &Meta) -> bool {
    fn content(sdp: &str) -> impl Iterator<Item = &str> {
        sdp.lines().filter(|l| !per_session_line(l))
    }
    let (s, c) = (&stored.validators, &current.validators);
    let agree = |a: &Option<String>, b: &Option<String>| a.is_none() || b.is_none() || a == b;
    content(&stored.sdp).eq(content(&current.sdp))
        && stored.tracks == current.tracks
        && stored.duration_ms == current.duration_ms
        && s.sdp_origin == c.sdp_origin
        && agree(&s.etag, &c.etag)
        && agree(&s.last_modified, &c.last_modified)
}

impl Cache {
    /// Opens (creating) `dir` and rebuilds the index from disk: keeps what verifies,
    /// drops the rest; evicts down to `limit_bytes` (never pinned objects).
    pub fn open(dir: &Path, limit_bytes: u64) -> io::Result<(Cache, Recovery)> {
        fs::create_dir_all(dir)?;
        let mut cache = Cache {
            dir: dir.to_path_buf(),
            limit: limit_bytes,
            objects: BTreeMap::new(),
            next_incarnation: 1,
            evictions: 0,
        };
        let mut rec = Recovery::default();
        let mut loaded = Loaded::default();
        let mut entries: Vec<_> = fs::read_dir(dir)?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for ent in entries {
            let path = ent.path();
            let is_dir = ent.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let name = ent.file_name();
            let name = name.to_string_lossy();
            let ours = name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_dir || !ours {
                // The cache directory is ours alone, but leave strangers' files alone.
                continue;
            }
            let inc = cache.next_incarnation;
            cache.next_incarnation += 1;
            match Object::load(&path, inc, &mut loaded) {
                Ok(o) if !cache.objects.contains_key(&o.file.key) => {
                    rec.objects += 1;
                    cache.objects.insert(o.file.key.clone(), o);
                }
                _ => {
                    rec.dropped_objects += 1;
                    loaded.dropped_bytes += dir_size(&path);
                    fs::remove_dir_all(&path)?;
                }
            }
        }
        rec.kept_bytes = loaded.kept_bytes;
        rec.dropped_bytes = loaded.dropped_bytes;
        let evicted = cache.evict()?;
        rec.objects -= evicted.0;
        rec.dropped_objects += evicted.0;
        rec.kept_bytes -= evicted.1;
        rec.dropped_bytes += evicted.1;
        Ok((cache, rec))
    }

    pub fn lookup(&self, key: &ObjectKey) -> Option<ObjectInfo> {
        self.objects.get(key).map(info)
    }

    /// The complete held range containing `from_ms`, if any.
    pub fn covered(&self, key: &ObjectKey, from_ms: u64) -> Option<(u64, u64)> {
        self.objects.get(key)?.covered(from_ms)
    }

    /// Starts a fill run at `start_ms`. A second concurrent fill of one key is refused
    /// (`AlreadyExists`). Meta whose validators or SDP differ from the stored ones
    /// discards the old content first (a refetch).
    pub fn begin_fill(
        &mut self,
        key: &ObjectKey,
        meta: &Meta,
        start_ms: u64,
        now: SystemTime,
    ) -> io::Result<FillWriter> {
        if !object::meta_valid(key, meta) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "meta must have one track per key track (at most 255), each with a clock \
                 rate, and an SDP and validators of at most a few MB",
            ));
        }
        let now_ms = unix_ms(now);
        if let Some(o) = self.objects.get_mut(key) {
            o.maintain();
            if o.fill_alive().is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is being filled already", key.url),
                ));
            }
            if !same_content(&o.file.meta, meta) {
                o.file.meta = meta.clone();
                o.discard_runs()?;
            } else if o.file.meta != *meta {
                o.file.meta = meta.clone();
                o.write_meta()?;
            }
        } else {
            let inc = self.next_incarnation;
            self.next_incarnation += 1;
            let o = Object::create(&self.dir, key, meta, now_ms, inc)?;
            self.objects.insert(key.clone(), o);
        }
        let o = self.objects.get_mut(key).expect("inserted above");
        let seq = o.next_seq;
        o.next_seq += 1;
        let header = format::LogHeader {
            seq,
            generation: o.file.generation,
            start_ms,
        };
        let (state, shared) = FillState::create(
            key,
            o.incarnation,
            o.dir.join(object::log_name(seq)),
            header,
            &meta.tracks,
        )?;
        o.fill = Some(object::ActiveFill {
            shared: std::sync::Arc::downgrade(&shared),
            seq,
        });
        o.touch(now_ms);
        self.evict()?;
        Ok(FillWriter { state })
    }

    /// Ends a run; `clean`: its packets are contiguous up to the last one.
    pub fn end_fill(
        &mut self,
        fill: FillWriter,
        clean: bool,
        now: SystemTime,
    ) -> io::Result<ObjectInfo> {
        let mut st = fill.state;
        let ours = self
            .objects
            .get(&st.key)
            .is_some_and(|o| o.incarnation == st.incarnation);
        if !ours {
            // Purged (or purged and begun again) while this run was written.
            let _ = std::fs::remove_file(&st.log);
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} was purged during the fill", st.key.url),
            ));
        }
        let seq = st.sum.header.seq;
        let committed = if st.failed {
            Err(io::Error::other("an earlier write failed"))
        } else {
            st.commit(clean)
        };
        let o = self.objects.get_mut(&st.key).expect("checked above");
        o.fill = None;
        o.maintain();
        let run = match committed {
            Ok(()) => {
                let ib = format::encode_index(&st.sum);
                let idx = object::idx_name(seq);
                format::atomic_write(&o.dir, &idx, &ib)?;
                Some(object::Run::new(st.sum, st.log, ib.len() as u64))
            }
            Err(_) => {
                // Keep what verifies, exactly as recovery after a crash would.
                let log = st.log;
                drop(st.shared);
                let mut loaded = Loaded::default();
                object::recover_run(&log, seq, &o.file, &mut loaded)
                    .ok()
                    .flatten()
            }
        };
        if let Some(run) = run {
            if run.sum.range().is_some() {
                o.runs.push(run);
                o.runs.sort_by_key(|r| r.sum.header.seq);
            } else {
                let _ = fs::remove_file(&run.log);
                let _ = fs::remove_file(run.log.with_extension("idx"));
            }
        }
        o.prune();
        o.file.last_used_unix_ms = unix_ms(now);
        o.write_meta()?;
        let out = info(o);
        self.evict()?;
        Ok(out)
    }

    /// Where a [`Cache::reader`] from `from_ms` would start (the keyframe at or before
    /// it), without opening anything: for a caller that has that part in memory
    /// already. None when `from_ms` is not held. Counts as a use of the object.
    pub fn start_of(&mut self, key: &ObjectKey, from_ms: u64, now: SystemTime) -> Option<u64> {
        let o = self.objects.get_mut(key)?;
        o.maintain();
        let (start, _) = o.plan(from_ms)?;
        o.touch(unix_ms(now));
        Some(start)
    }

    /// A reader at the keyframe at or before `from_ms` within one held range; None when
    /// `from_ms` is not held.
    pub fn reader(
        &mut self,
        key: &ObjectKey,
        from_ms: u64,
        now: SystemTime,
    ) -> io::Result<Option<Reader>> {
        let Some(o) = self.objects.get_mut(key) else {
            return Ok(None);
        };
        o.maintain();
        let Some((start, segs)) = o.plan(from_ms) else {
            return Ok(None);
        };
        let state = ReaderState::new(start, segs, &o.file.meta.tracks)?;
        o.touch(unix_ms(now));
        Ok(Some(Reader { state }))
    }

    /// How many objects the index holds (complete or partial), without building
    /// each one's [`ObjectInfo`] as [`Cache::list`] does.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Every object of one origin URL (each variant), in key order.
    pub fn objects_of(&self, url: &str) -> Vec<ObjectInfo> {
        let from = ObjectKey {
            url: url.to_owned(),
            tracks: Vec::new(),
        };
        self.objects
            .range(from..)
            .take_while(|(k, _)| k.url == url)
            .map(|(_, o)| info(o))
            .collect()
    }

    /// Every object, in key order.
    pub fn list(&self) -> Vec<ObjectInfo> {
        self.objects.values().map(info).collect()
    }

    /// Pins or unpins an object (persisted); false when the key is not cached.
    pub fn pin(&mut self, key: &ObjectKey, pinned: bool) -> bool {
        let Some(o) = self.objects.get_mut(key) else {
            return false;
        };
        if o.file.pinned != pinned {
            o.file.pinned = pinned;
            if o.write_meta().is_err() {
                o.file.pinned = !pinned;
                return false;
            }
        }
        true
    }

    /// Removes an object and its files; false when the key is not cached. A fill in
    /// progress is abandoned: its `end_fill` reports `NotFound`.
    pub fn purge(&mut self, key: &ObjectKey) -> io::Result<bool> {
        let Some(o) = self.objects.remove(key) else {
            return Ok(false);
        };
        fs::remove_dir_all(&o.dir)?;
        Ok(true)
    }

    /// Replaces the stored validators after an unchanged revalidation.
    pub fn refresh(
        &mut self,
        key: &ObjectKey,
        validators: Validators,
        fetched_unix_ms: u64,
    ) -> io::Result<()> {
        let o = self.objects.get_mut(key).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not cached", key.url),
            )
        })?;
        o.file.meta.validators = validators;
        o.file.meta.fetched_unix_ms = fetched_unix_ms;
        o.write_meta()
    }

    /// Bytes on disk, fills in progress included.
    pub fn used_bytes(&self) -> u64 {
        self.objects.values().map(Object::size_bytes).sum()
    }

    pub fn limit_bytes(&self) -> u64 {
        self.limit
    }

    /// Objects evicted to stay under the limit since [`Cache::open`], its own
    /// evictions included (purges are not evictions).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Removes least recently used objects until the total fits the limit; never a
    /// pinned object nor one being filled. Returns (objects, bytes) removed.
    fn evict(&mut self) -> io::Result<(usize, u64)> {
        let mut used = self.used_bytes();
        if used <= self.limit {
            return Ok((0, 0));
        }
        let mut victims: Vec<(u64, ObjectKey)> = self
            .objects
            .iter_mut()
            .filter_map(|(k, o)| {
                o.maintain();
                (!o.file.pinned && o.fill_alive().is_none())
                    .then(|| (o.file.last_used_unix_ms, k.clone()))
            })
            .collect();
        victims.sort();
        let mut removed = (0, 0);
        for (_, k) in victims {
            if used <= self.limit {
                break;
            }
            let o = self.objects.remove(&k).expect("listed above");
            let size = o.size_bytes();
            fs::remove_dir_all(&o.dir)?;
            used -= size;
            removed.0 += 1;
            removed.1 += size;
            self.evictions += 1;
        }
        Ok(removed)
    }
}

fn info(o: &Object) -> ObjectInfo {
    ObjectInfo {
        key: o.file.key.clone(),
        meta: o.file.meta.clone(),
        complete: o.complete(),
        ranges: o.ranges(),
        size_bytes: o.size_bytes(),
        pinned: o.file.pinned,
        last_used_unix_ms: o.file.last_used_unix_ms,
    }
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;
