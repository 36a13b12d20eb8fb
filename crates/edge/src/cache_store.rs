//! The edge's handle on its on-demand cache: one [`mediagate_cache::Cache`] behind a
//! mutex, shared by every viewer connection, fill writer and player, plus the edge's
//! own counters of what the cache did.
//!
//! Every call into the cache is blocking file I/O that the cache keeps short (an index
//! look-up, opening a file); fills write on their own thread and players read on
//! theirs, so the lock is never held across an `await` or a packet-by-packet loop.
//!
//! It also owns the shared block cache (`cache_shared`) through which every hit
//! viewer reads, so viewers of one object share one copy in memory.
//!
//! What it does not: decide what is cacheable (the route's policy and the cache
//! crate's freshness rules do) or know about sockets.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mediagate_cache::Cache;

use crate::cache_lock::DirLock;
use crate::cache_shared::{SharedReadCounts, SharedReads};

/// The cache and its counters; see the module docs.
#[derive(Debug)]
pub struct CacheStore {
    cache: Mutex<Cache>,
    hits: AtomicU64,
    misses: AtomicU64,
    fills_abandoned: AtomicU64,
    /// `[edge.cache] default_ttl` in ms: freshness of content the origin said nothing
    /// about.
    default_ttl_ms: AtomicU64,
    shared: Arc<SharedReads>,
    /// This process's claim on the directory, for as long as the store lives.
    _lock: DirLock,
    groups: Arc<crate::cache_play::PlayoutGroups>,
    pairs: crate::shared_pairs::SharedPairs,
}

/// The default of `[edge.cache] default_ttl`.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// What the cache did since the edge started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounts {
    /// Sessions served from the cache.
    pub hits: u64,
    /// Sessions that filled the cache from the origin.
    pub misses: u64,
    /// Fills given up because the writer fell behind or failed (the viewers went on).
    pub fills_abandoned: u64,
}

impl CacheStore {
    /// Opens (creating) the cache directory `dir`, keeping what verifies and evicting
    /// down to `limit_bytes`. The directory is this process's alone while the store
    /// lives: another process holding it is `ErrorKind::WouldBlock` (`cache_lock`),
    /// found before anything on disk is touched.
    pub fn open(dir: &Path, limit_bytes: u64) -> io::Result<Arc<CacheStore>> {
        let lock = DirLock::acquire(dir)?;
        let (cache, recovery) = Cache::open(dir, limit_bytes)?;
        tracing::info!(
            dir = %dir.display(),
            limit_bytes,
            objects = recovery.objects,
            kept_bytes = recovery.kept_bytes,
            dropped_bytes = recovery.dropped_bytes,
            dropped_objects = recovery.dropped_objects,
            "cache opened"
        );
        Ok(Arc::new(CacheStore {
            cache: Mutex::new(cache),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            fills_abandoned: AtomicU64::new(0),
            default_ttl_ms: AtomicU64::new(DEFAULT_TTL.as_secs() * 1000),
            shared: Arc::new(SharedReads::default()),
            _lock: lock,
            groups: Arc::default(),
            pairs: Default::default(),
        }))
    }

    /// The cache, locked. Keep the guard for one short call sequence, never across an
    /// `await`.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Cache> {
        // The cache's own state stays consistent between calls; a panic in one call
        // must not stop every later viewer from being served.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets how long content without freshness information stays fresh.
    pub fn set_default_ttl(&self, ttl: Duration) {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.default_ttl_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn default_ttl(&self) -> Duration {
        Duration::from_millis(self.default_ttl_ms.load(Ordering::Relaxed))
    }

    /// The blocks hit viewers share.
    pub(crate) fn shared(&self) -> &Arc<SharedReads> {
        &self.shared
    }

    /// The playout groups of hit viewers at the same place in an object.
    pub(crate) fn groups(&self) -> &Arc<crate::cache_play::PlayoutGroups> {
        &self.groups
    }

    /// The server port pairs UDP viewers this cache may serve are sent from, one per
    /// URL and track.
    pub(crate) fn pairs(&self) -> &crate::shared_pairs::SharedPairs {
        &self.pairs
    }

    /// Sets how many bytes of shared blocks are kept in memory for hit viewers
    /// (default [`crate::DEFAULT_CACHE_MEMORY_BYTES`]).
    pub fn set_memory_limit(&self, bytes: u64) {
        self.shared.set_limit(bytes);
    }

    /// Blocks and bytes hit viewers got from disk and from memory.
    pub fn shared_reads(&self) -> SharedReadCounts {
        self.shared.counts()
    }

    pub(crate) fn count_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_abandoned(&self) {
        self.fills_abandoned.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> CacheCounts {
        CacheCounts {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            fills_abandoned: self.fills_abandoned.load(Ordering::Relaxed),
        }
    }
}
