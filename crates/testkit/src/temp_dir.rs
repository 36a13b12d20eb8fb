//! A test's scratch directory: `mg-NAME-PID-N` under the system's temporary
//! directory, emptied when made (a crashed earlier run of the same process id leaves
//! nothing behind) and removed on drop, even when the test panics. `N` counts the
//! directories of this process, so two tests running at once under the same name do
//! not share (and remove) one directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A scratch directory removed on drop. `.0` is its path.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Makes `mg-NAME-PID-N`, empty. Panics when it cannot (a test cannot go on
    /// without it).
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mg-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        Self(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
