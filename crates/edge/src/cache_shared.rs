//! Shared reads of cache objects: many viewers of one object share one copy in memory
//! where their playback overlaps (issue 13 item 3).
//!
//! A held range is read in **blocks** of about a second of media: a block starts at a
//! media time `start` (a keyframe of the primary track, or where a seek began) and
//! holds every packet from there up to the first primary-track keyframe at or after
//! the next whole second ([`BLOCK_MS`] grid; for audio-only objects, the first packet
//! there; a GOP longer than [`MAX_SPAN_MS`] past the grid is cut at any packet). Its
//! end is the next block's start, so blocks form a chain, and a viewer that seeks
//! into the middle of a clip joins the chain of earlier viewers at its next grid
//! line. A block is named by (object key, object version, start): the version is a
//! hash of what the cache says the object is (held ranges, SDP, validators), so a
//! refetched or extended object never mixes with blocks of the old one.
//!
//! Blocks are read once from disk (on a blocking thread; concurrent requests for one
//! block wait for that one read), kept in a bounded LRU by their bytes, and handed to
//! players as `Arc`s whose packets are `Bytes`: viewers never read or copy the same
//! data twice (each still writes its own RTP header, see `cache_play`). The reader
//! that produced a block is parked at the next block's start, so a sequential viewer
//! does not re-plan and re-open the log every second. A block in use by a player stays
//! alive after eviction until the player moves on, so memory can pass the limit by at
//! most two blocks per playing viewer.
//!
//! What it does not: decide what is held (the cache crate's plan does), pace anything,
//! or know about viewers; it counts blocks and bytes served from disk and from memory.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use mediagate_cache::{ObjectInfo, ObjectKey, PacketOut, Reader};
use tokio::sync::OnceCell;

use crate::cache_play::media_ms;
use crate::cache_store::CacheStore;

/// The grid blocks end on, in media ms.
pub(crate) const BLOCK_MS: u64 = 1_000;
/// Past the grid line, a block waits this long for a keyframe before it is cut anyway.
pub(crate) const MAX_SPAN_MS: u64 = 4_000;
/// Readers kept parked at the start of the block after theirs, at most.
const MAX_PARKED: usize = 64;
/// What a packet costs in memory besides its bytes (the `PacketOut` and the `Bytes`
/// allocation), for the limit.
const PACKET_OVERHEAD: u64 = 64;
/// The default memory limit of shared blocks.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;

/// What follows a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockNext {
    /// The next block starts at this media time (ms).
    At(u64),
    /// The held range ends here.
    End,
    /// A packet did not verify (or the object went away): the range ends here.
    Failed,
}

/// About a second of one object's packets in media-time order.
#[derive(Debug)]
pub(crate) struct Block {
    pub packets: Vec<PacketOut>,
    pub next: BlockNext,
}

impl Block {
    fn bytes(&self) -> u64 {
        self.packets
            .iter()
            .map(|p| p.rtp.len() as u64 + PACKET_OVERHEAD)
            .sum()
    }

    fn failed() -> Block {
        Block {
            packets: Vec::new(),
            next: BlockNext::Failed,
        }
    }
}

/// Which object, as the cache holds it now.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ObjectVersion {
    pub key: ObjectKey,
    pub version: u64,
    pub clocks: Vec<u32>,
    pub primary: Option<u8>,
}

impl ObjectVersion {
    /// The version of `info`: what would make its blocks differ.
    pub fn of(info: &ObjectInfo) -> ObjectVersion {
        let mut h = DefaultHasher::new();
        info.ranges.hash(&mut h);
        info.meta.sdp.hash(&mut h);
        info.meta.duration_ms.hash(&mut h);
        for t in &info.meta.tracks {
            (t.clock_rate, t.is_video, t.payload_type).hash(&mut h);
        }
        // The validators that name a version (not Expires or Cache-Control, which a
        // revalidation may change without changing the content).
        let v = &info.meta.validators;
        (&v.etag, &v.last_modified, &v.sdp_origin).hash(&mut h);
        ObjectVersion {
            key: info.key.clone(),
            version: h.finish(),
            clocks: info.meta.tracks.iter().map(|t| t.clock_rate).collect(),
            primary: info
                .meta
                .tracks
                .iter()
                .position(|t| t.is_video)
                .and_then(|i| u8::try_from(i).ok()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BlockId {
    key: ObjectKey,
    version: u64,
    start_ms: u64,
}

#[derive(Debug)]
struct Entry {
    cell: Arc<OnceCell<Arc<Block>>>,
    /// 0 until loaded.
    bytes: u64,
    used: u64,
}

#[derive(Debug)]
struct Parked {
    reader: Reader,
    /// Packets read past the end of the previous block: the start of this one.
    carry: Vec<PacketOut>,
    used: u64,
}

#[derive(Debug, Default)]
struct Inner {
    blocks: HashMap<BlockId, Entry>,
    parked: HashMap<BlockId, Parked>,
    bytes: u64,
    tick: u64,
}

/// Blocks and bytes handed to players, by where they came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedReadCounts {
    pub disk_blocks: u64,
    pub disk_bytes: u64,
    pub memory_blocks: u64,
    pub memory_bytes: u64,
    /// Bytes of blocks held now.
    pub held_bytes: u64,
}

/// The shared block cache of one [`CacheStore`]; see the module docs.
#[derive(Debug)]
pub(crate) struct SharedReads {
    inner: Mutex<Inner>,
    limit: AtomicU64,
    disk_blocks: AtomicU64,
    disk_bytes: AtomicU64,
    memory_blocks: AtomicU64,
    memory_bytes: AtomicU64,
}

impl Default for SharedReads {
    fn default() -> Self {
        SharedReads::new(DEFAULT_MEMORY_BYTES)
    }
}

impl SharedReads {
    pub fn new(limit_bytes: u64) -> SharedReads {
        SharedReads {
            inner: Mutex::new(Inner::default()),
            limit: AtomicU64::new(limit_bytes),
            disk_blocks: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(0),
            memory_blocks: AtomicU64::new(0),
            memory_bytes: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the memory limit (0: nothing is kept once its players move on).
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
        let mut inner = self.lock();
        self.evict(&mut inner);
    }

    pub fn counts(&self) -> SharedReadCounts {
        SharedReadCounts {
            disk_blocks: self.disk_blocks.load(Ordering::Relaxed),
            disk_bytes: self.disk_bytes.load(Ordering::Relaxed),
            memory_blocks: self.memory_blocks.load(Ordering::Relaxed),
            memory_bytes: self.memory_bytes.load(Ordering::Relaxed),
            held_bytes: self.lock().bytes,
        }
    }

    /// Whether the block of `obj` at `start_ms` is in memory now.
    pub fn holds(&self, obj: &ObjectVersion, start_ms: u64) -> bool {
        let id = BlockId {
            key: obj.key.clone(),
            version: obj.version,
            start_ms,
        };
        self.lock()
            .blocks
            .get(&id)
            .is_some_and(|e| e.cell.initialized())
    }

    /// Hands over `reader` (opened for `obj` at its own start) so that the block at that
    /// start is read from it when it is not in memory. Returns that start.
    pub fn offer_reader(&self, obj: &ObjectVersion, reader: Reader) -> u64 {
        let start_ms = reader.start_ms();
        let id = BlockId {
            key: obj.key.clone(),
            version: obj.version,
            start_ms,
        };
        let mut inner = self.lock();
        let loaded = inner.blocks.get(&id).is_some_and(|e| e.cell.initialized());
        if !loaded {
            self.park(&mut inner, id, reader, Vec::new());
        }
        start_ms
    }

    fn park(&self, inner: &mut Inner, id: BlockId, reader: Reader, carry: Vec<PacketOut>) {
        inner.tick += 1;
        let used = inner.tick;
        inner.parked.insert(
            id,
            Parked {
                reader,
                carry,
                used,
            },
        );
        while inner.parked.len() > MAX_PARKED {
            let Some(oldest) = inner
                .parked
                .iter()
                .min_by_key(|(_, p)| p.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            inner.parked.remove(&oldest);
        }
    }

    /// The block of `obj` that starts at `start_ms`: from memory, or read from disk once
    /// however many players ask for it at the same time.
    pub async fn block(
        self: &Arc<Self>,
        store: &Arc<CacheStore>,
        obj: &ObjectVersion,
        start_ms: u64,
    ) -> Arc<Block> {
        let id = BlockId {
            key: obj.key.clone(),
            version: obj.version,
            start_ms,
        };
        let cell = {
            let mut inner = self.lock();
            inner.tick += 1;
            let used = inner.tick;
            let e = inner.blocks.entry(id.clone()).or_insert_with(|| Entry {
                cell: Arc::new(OnceCell::new()),
                bytes: 0,
                used,
            });
            e.used = used;
            e.cell.clone()
        };
        let mut read_here = false;
        let block = cell
            .get_or_init(|| {
                read_here = true;
                let (me, store, obj, id) = (self.clone(), store.clone(), obj.clone(), id.clone());
                let unfinished = Unfinished {
                    shared: self.clone(),
                    id: id.clone(),
                    cell: cell.clone(),
                    armed: true,
                };
                async move {
                    let block = tokio::task::spawn_blocking(move || me.read(&store, &obj, id))
                        .await
                        .unwrap_or_else(|_| Arc::new(Block::failed()));
                    unfinished.finished();
                    block
                }
            })
            .await
            .clone();
        let bytes = block.bytes();
        if read_here {
            self.disk_blocks.fetch_add(1, Ordering::Relaxed);
            self.disk_bytes.fetch_add(bytes, Ordering::Relaxed);
            let mut inner = self.lock();
            let mut added = false;
            if let Some(e) = inner.blocks.get_mut(&id) {
                if Arc::ptr_eq(&e.cell, &cell) && e.bytes == 0 {
                    e.bytes = bytes;
                    added = true;
                }
            }
            if added {
                inner.bytes += bytes;
            }
            self.evict(&mut inner);
        } else {
            self.memory_blocks.fetch_add(1, Ordering::Relaxed);
            self.memory_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        block
    }

    /// Least recently used loaded blocks go until the rest fit the limit.
    fn evict(&self, inner: &mut Inner) {
        let limit = self.limit.load(Ordering::Relaxed);
        while inner.bytes > limit {
            let Some(victim) = inner
                .blocks
                .iter()
                .filter(|(_, e)| e.bytes > 0)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.blocks.remove(&victim) {
                inner.bytes -= e.bytes;
            }
        }
    }

    /// Reads one block (blocking): from the reader parked at its start, else from a new
    /// reader; the reader is parked again at the next block's start.
    fn read(&self, store: &CacheStore, obj: &ObjectVersion, id: BlockId) -> Arc<Block> {
        let parked = self.lock().parked.remove(&id);
        let (mut reader, carry) = match parked {
            Some(p) => (p.reader, p.carry),
            None => match open_reader(store, obj, id.start_ms) {
                Ok(Some(r)) => (r, Vec::new()),
                Ok(None) => {
                    return Arc::new(Block {
                        packets: Vec::new(),
                        next: BlockNext::End,
                    })
                }
                Err(e) => {
                    tracing::warn!(url = %obj.key.url, error = %e, "cache object could not be read; the range ends there");
                    return Arc::new(Block::failed());
                }
            },
        };
        let (block, leftover) = cut_block(id.start_ms, obj, carry, || reader.next_packet());
        if let BlockNext::Failed = block.next {
            tracing::warn!(url = %obj.key.url, start_ms = id.start_ms, "cached packet did not verify; the range ends there");
        }
        if let BlockNext::At(next) = block.next {
            let next_id = BlockId {
                start_ms: next,
                ..id
            };
            let mut inner = self.lock();
            let loaded = inner
                .blocks
                .get(&next_id)
                .is_some_and(|e| e.cell.initialized());
            if !loaded {
                self.park(&mut inner, next_id, reader, leftover);
            }
        }
        Arc::new(block)
    }
}

/// Armed while a block is being read for the map: when the player that reads it goes
/// away first (its future dropped), the entry it left unloaded is removed, so entries
/// that hold nothing never pile up (a later request starts a new one).
struct Unfinished {
    shared: Arc<SharedReads>,
    id: BlockId,
    cell: Arc<OnceCell<Arc<Block>>>,
    armed: bool,
}

impl Unfinished {
    /// The block is in the cell: nothing to undo.
    fn finished(mut self) {
        self.armed = false;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut inner = self.shared.lock();
        let stale = inner
            .blocks
            .get(&self.id)
            .is_some_and(|e| Arc::ptr_eq(&e.cell, &self.cell) && e.bytes == 0);
        if stale {
            inner.blocks.remove(&self.id);
        }
    }
}

/// A reader at `start_ms` when the object is still the version `obj` names.
fn open_reader(
    store: &CacheStore,
    obj: &ObjectVersion,
    start_ms: u64,
) -> io::Result<Option<Reader>> {
    let mut cache = store.lock();
    let same = cache
        .lookup(&obj.key)
        .is_some_and(|info| ObjectVersion::of(&info).version == obj.version);
    if !same {
        return Ok(None);
    }
    cache.reader(&obj.key, start_ms, SystemTime::now())
}

/// Cuts one block starting at `start_ms` from `carry` and then `next` (packets in
/// media-time order); returns it and the packets read past its end (the next block's
/// first). Packets before `start_ms` are skipped: a reader starts at the keyframe at or
/// before the asked time.
pub(crate) fn cut_block(
    start_ms: u64,
    obj: &ObjectVersion,
    carry: Vec<PacketOut>,
    mut next: impl FnMut() -> io::Result<Option<PacketOut>>,
) -> (Block, Vec<PacketOut>) {
    let grid = (start_ms / BLOCK_MS + 1) * BLOCK_MS;
    let clock = |t: u8| obj.clocks.get(usize::from(t)).copied().unwrap_or(90_000);
    let mut carry = carry.into_iter();
    let mut packets: Vec<PacketOut> = Vec::new();
    loop {
        let p = match carry.next() {
            Some(p) => p,
            None => match next() {
                Ok(Some(p)) => p,
                Ok(None) => {
                    return (
                        Block {
                            packets,
                            next: BlockNext::End,
                        },
                        Vec::new(),
                    )
                }
                Err(_) => {
                    return (
                        Block {
                            packets,
                            next: BlockNext::Failed,
                        },
                        Vec::new(),
                    )
                }
            },
        };
        let ms = media_ms(p.media_ticks, clock(p.track));
        if ms < start_ms {
            continue;
        }
        let cut_here = ms >= grid
            && ms > start_ms
            && (ms >= grid + MAX_SPAN_MS || obj.primary.is_none_or(|t| p.track == t && p.keyframe));
        if cut_here {
            // Packets of other tracks at the boundary's own time belong to the next
            // block, so a block never depends on the order of ties.
            let (keep, mut moved): (Vec<_>, Vec<_>) = packets
                .into_iter()
                .partition(|q| media_ms(q.media_ticks, clock(q.track)) < ms);
            moved.push(p);
            moved.extend(carry);
            return (
                Block {
                    packets: keep,
                    next: BlockNext::At(ms),
                },
                moved,
            );
        }
        packets.push(p);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;

    fn obj(primary: Option<u8>) -> ObjectVersion {
        ObjectVersion {
            key: ObjectKey {
                url: "rtsp://o/clip".into(),
                tracks: vec![0, 1],
            },
            version: 1,
            clocks: vec![1000, 1000],
            primary,
        }
    }

    fn p(track: u8, ms: u64, keyframe: bool) -> PacketOut {
        PacketOut {
            track,
            media_ticks: ms,
            keyframe,
            rtp: Bytes::from(vec![0x80, 96, 0, 0]),
        }
    }

    /// Video (track 0) keyframes every `gop` ms with frames every 40 ms, audio every
    /// 20 ms, from `from` on.
    fn stream(from: u64, to: u64, gop: u64) -> Vec<PacketOut> {
        let mut v = Vec::new();
        let mut t = from;
        while t < to {
            if t % 40 == 0 {
                v.push(p(0, t, t % gop == 0));
            }
            v.push(p(1, t, true));
            t += 20;
        }
        v
    }

    fn cut_all(start: u64, o: &ObjectVersion, src: &[PacketOut]) -> Vec<(u64, Vec<(u8, u64)>)> {
        let mut out = Vec::new();
        let mut at = start;
        loop {
            let mut it = src.iter().cloned();
            let (b, _) = cut_block(at, o, Vec::new(), || Ok(it.next()));
            let ids = b.packets.iter().map(|q| (q.track, q.media_ticks)).collect();
            out.push((at, ids));
            match b.next {
                BlockNext::At(n) => at = n,
                _ => return out,
            }
        }
    }

    #[test]
    fn blocks_end_on_the_first_keyframe_past_the_grid_and_chain_without_gaps() {
        let src = stream(0, 5_000, 1_000);
        let o = obj(Some(0));
        let blocks = cut_all(0, &o, &src);
        let starts: Vec<u64> = blocks.iter().map(|b| b.0).collect();
        assert_eq!(starts, vec![0, 1000, 2000, 3000, 4000]);
        let all: Vec<(u8, u64)> = blocks.iter().flat_map(|b| b.1.clone()).collect();
        let want: Vec<(u8, u64)> = src.iter().map(|q| (q.track, q.media_ticks)).collect();
        assert_eq!(all, want, "every packet once, in order");
        // Audio at the boundary's own time goes with the next block.
        assert!(blocks[0].1.iter().all(|&(_, ms)| ms < 1000));
        assert_eq!(blocks[1].1.first(), Some(&(0, 1000)));
    }

    #[test]
    fn a_seek_joins_the_chain_at_the_next_grid_line() {
        let src = stream(0, 6_000, 500);
        let o = obj(Some(0));
        let from_zero = cut_all(0, &o, &src);
        // A reader asked for 2.7 s starts at the keyframe at 2.5 s.
        let from_seek = cut_all(2500, &o, &src);
        assert_eq!(from_seek[0].0, 2500);
        assert_eq!(from_seek[1].0, 3000);
        let zero_tail: Vec<_> = from_zero.iter().filter(|b| b.0 >= 3000).collect();
        let seek_tail: Vec<_> = from_seek.iter().skip(1).collect();
        assert_eq!(zero_tail, seek_tail, "same blocks from 3 s on");
    }

    #[test]
    fn a_reader_that_starts_early_is_trimmed_and_carry_is_used_first() {
        let src = stream(0, 3_000, 1_000);
        let o = obj(Some(0));
        let mut it = src.iter().cloned();
        let (b, left) = cut_block(1000, &o, Vec::new(), || Ok(it.next()));
        assert!(b.packets.iter().all(|q| q.media_ticks >= 1000));
        assert_eq!(b.next, BlockNext::At(2000));
        // The leftovers plus the rest of the reader make the next block.
        let (b2, _) = cut_block(2000, &o, left, || Ok(it.next()));
        assert_eq!(b2.packets.first().map(|q| q.media_ticks), Some(2000));
        assert_eq!(b2.next, BlockNext::End);
        assert_eq!(b2.packets.len(), stream(2000, 3000, 1000).len());
    }

    #[test]
    fn audio_only_cuts_on_the_grid_and_long_gops_are_cut_anyway() {
        let audio: Vec<PacketOut> = (0..150).map(|i| p(1, i * 20, true)).collect();
        let blocks = cut_all(0, &obj(None), &audio);
        assert_eq!(
            blocks.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![0, 1000, 2000]
        );
        let src = stream(0, 12_000, 10_000);
        let blocks = cut_all(0, &obj(Some(0)), &src);
        assert_eq!(blocks[1].0, 1000 + MAX_SPAN_MS);
    }

    #[test]
    fn a_failed_read_ends_the_block_with_what_verified() {
        let src = stream(0, 500, 1_000);
        let mut it = src.iter().cloned();
        let (b, _) = cut_block(0, &obj(Some(0)), Vec::new(), || match it.next() {
            Some(q) if q.media_ticks < 200 => Ok(Some(q)),
            _ => Err(io::Error::other("bad record")),
        });
        assert_eq!(b.next, BlockNext::Failed);
        assert!(b.packets.iter().all(|q| q.media_ticks < 200));
    }

    /// A real cache directory holding a 5 s two-track clip (video 25 frames/s with a
    /// keyframe a second, audio every 20 ms), for the store-level tests below.
    pub(crate) struct Fixture {
        dir: std::path::PathBuf,
        pub(crate) store: Arc<CacheStore>,
        pub(crate) key: ObjectKey,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    pub(crate) fn fixture(tag: &str) -> Fixture {
        use mediagate_cache::{Meta, PacketIn, TrackMeta, Validators};
        let dir = std::env::temp_dir().join(format!("mg-shared-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = CacheStore::open(&dir, 1 << 30).unwrap();
        let key = ObjectKey {
            url: "rtsp://origin/clip".into(),
            tracks: vec![0, 1],
        };
        let meta = Meta {
            sdp: "v=0\r\n".into(),
            tracks: vec![TrackMeta::video(96), TrackMeta::audio(8_000, 0)],
            duration_ms: Some(5_000),
            validators: Validators::default(),
            needed_auth: false,
            fetched_unix_ms: 1,
        };
        let now = SystemTime::now();
        let mut cache = store.lock();
        let mut w = cache.begin_fill(&key, &meta, 0, now).unwrap();
        let mut rtp = vec![0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        rtp.extend_from_slice(&[7; 500]);
        for ms in (0..5_000u64).step_by(20) {
            if ms % 40 == 0 {
                w.push(&PacketIn {
                    track: 0,
                    media_ticks: ms * 90,
                    arrival_unix_ms: 1,
                    keyframe: ms % 1000 == 0,
                    rtp: &rtp,
                })
                .unwrap();
            }
            w.push(&PacketIn {
                track: 1,
                media_ticks: ms * 8,
                arrival_unix_ms: 1,
                keyframe: true,
                rtp: &rtp[..100],
            })
            .unwrap();
        }
        cache.end_fill(w, true, now).unwrap();
        drop(cache);
        Fixture { dir, store, key }
    }

    fn version(f: &Fixture) -> ObjectVersion {
        ObjectVersion::of(&f.store.lock().lookup(&f.key).unwrap())
    }

    /// Every packet of the chain from `start`, as (track, ticks).
    async fn chain(f: &Fixture, obj: &ObjectVersion, start: u64) -> Vec<(u8, u64)> {
        let shared = f.store.shared().clone();
        let mut out = Vec::new();
        let mut at = start;
        loop {
            let b = shared.block(&f.store, obj, at).await;
            out.extend(b.packets.iter().map(|p| (p.track, p.media_ticks)));
            match b.next {
                BlockNext::At(n) => at = n,
                BlockNext::End => return out,
                BlockNext::Failed => panic!("read failed"),
            }
        }
    }

    #[tokio::test]
    async fn viewers_of_one_object_read_each_block_from_disk_once() {
        let f = fixture("once");
        let obj = version(&f);
        let direct: Vec<(u8, u64)> = {
            let mut r = f
                .store
                .lock()
                .reader(&f.key, 0, SystemTime::now())
                .unwrap()
                .unwrap();
            std::iter::from_fn(|| r.next_packet().unwrap())
                .map(|p| (p.track, p.media_ticks))
                .collect()
        };
        let first = chain(&f, &obj, 0).await;
        assert_eq!(first, direct, "the chain holds exactly what a reader reads");
        let c = f.store.shared_reads();
        assert_eq!((c.disk_blocks, c.memory_blocks), (5, 0));
        // Two more viewers at once, and one that seeks to 2.5 s: all from memory.
        let (a, b) = tokio::join!(chain(&f, &obj, 0), chain(&f, &obj, 0));
        assert_eq!((a.len(), b.len()), (direct.len(), direct.len()));
        let c = f.store.shared_reads();
        assert_eq!((c.disk_blocks, c.memory_blocks), (5, 10));
        assert!(c.held_bytes > 0 && c.memory_bytes == 2 * c.disk_bytes);
        // Concurrent first requests of a block not yet held wait for one read.
        f.store.set_memory_limit(0);
        assert_eq!(f.store.shared_reads().held_bytes, 0);
        f.store.set_memory_limit(1 << 30);
        let (x, y) = tokio::join!(
            f.store.shared().block(&f.store, &obj, 0),
            f.store.shared().block(&f.store, &obj, 0)
        );
        assert!(Arc::ptr_eq(&x, &y));
        let c = f.store.shared_reads();
        assert_eq!((c.disk_blocks, c.memory_blocks), (6, 11));
    }

    #[tokio::test]
    async fn a_limit_of_zero_keeps_nothing_and_another_version_shares_nothing() {
        let f = fixture("limit");
        f.store.set_memory_limit(0);
        let obj = version(&f);
        let n = chain(&f, &obj, 0).await.len();
        assert_eq!(chain(&f, &obj, 0).await.len(), n);
        let c = f.store.shared_reads();
        assert_eq!((c.disk_blocks, c.memory_blocks, c.held_bytes), (10, 0, 0));
        // A version the cache no longer has (the object changed) reads nothing.
        let stale = ObjectVersion {
            version: obj.version ^ 1,
            ..obj
        };
        let b = f.store.shared().block(&f.store, &stale, 0).await;
        assert!(b.packets.is_empty());
        assert_eq!(b.next, BlockNext::End);
    }

    // Holding the cache across the one poll is the point: the read must not finish.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn a_read_given_up_halfway_leaves_no_empty_entry() {
        let f = fixture("cancel");
        let obj = version(&f);
        let shared = f.store.shared().clone();
        // Polled once (the read starts on a blocking thread, which waits for the
        // cache this test holds), then dropped.
        let cache = f.store.lock();
        let read = shared.block(&f.store, &obj, 0);
        let polled_once = tokio::select! {
            biased;
            _ = read => false,
            () = std::future::ready(()) => true,
        };
        assert!(polled_once);
        assert!(shared.lock().blocks.is_empty());
        drop(cache);
        let b = shared.block(&f.store, &obj, 0).await;
        assert_eq!(b.next, BlockNext::At(1000));
        assert_eq!(shared.lock().blocks.len(), 1);
    }
}
