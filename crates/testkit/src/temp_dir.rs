//! A test's scratch directory: `mg-NAME-PID` under the system's temporary directory,
//! emptied when made (a crashed earlier run of the same process id leaves nothing
//! behind) and removed on drop, even when the test panics.

use std::path::{Path, PathBuf};

/// A scratch directory removed on drop. `.0` is its path.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Makes `mg-NAME-PID`, empty. Panics when it cannot (a test cannot go on without it).
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mg-{name}-{}", std::process::id()));
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
