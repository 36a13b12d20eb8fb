//! The edge's handle on its cache directory: one `mediagate_cache::Cache` behind a
//! mutex, shared by fills, players, the admin API and the metrics.
//!
//! What it does: opens the directory (rebuilding the index from disk) and runs short
//! blocking calls on the cache under its lock. What it does not: any I/O of its own
//! beyond what the cache crate does, or decide what is cached (the edge's fill path
//! does). Minimal version for the configuration slice; the play slice owns this file.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use mediagate_cache::Cache;

/// The cache of a running edge.
#[derive(Debug)]
pub struct CacheStore {
    cache: Mutex<Cache>,
}

impl CacheStore {
    /// Opens (creating) `dir` with a total size limit; logs what recovery kept and
    /// dropped. Blocking: call it before serving, or from `spawn_blocking`.
    pub fn open(dir: &Path, limit_bytes: u64) -> io::Result<Arc<CacheStore>> {
        let (cache, recovery) = Cache::open(dir, limit_bytes)?;
        tracing::info!(
            dir = %dir.display(),
            objects = recovery.objects,
            kept_bytes = recovery.kept_bytes,
            dropped_objects = recovery.dropped_objects,
            dropped_bytes = recovery.dropped_bytes,
            limit_bytes,
            "edge: cache opened"
        );
        Ok(Arc::new(CacheStore {
            cache: Mutex::new(cache),
        }))
    }

    /// Runs `f` on the cache under its lock; keep `f` short (no network waits).
    pub fn with<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> R {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut cache)
    }
}
