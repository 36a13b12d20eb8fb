//! One edge process per cache directory: an exclusive `flock(2)` on `<dir>/lock`,
//! held for as long as the process keeps its [`DirLock`] (the kernel lets go when the
//! process ends, however it ends, so a kill -9 leaves no stale lock behind). The file
//! holds the holder's pid, for the error the next process shows.
//!
//! Why: two edges on one directory would each rebuild the index from disk, drop the
//! other's fills in progress as unverified, and evict each other's objects.
//!
//! What it does not: guard against programs that ignore the lock (the cache crate's
//! own tools open the directory directly), or work across NFS where `flock` is local.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// The lock file's name in the cache directory (the cache crate leaves files whose
/// names are not its objects' alone).
pub(crate) const LOCK_FILE: &str = "lock";

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock on `dir` (created if missing) without waiting. Another process
    /// holding it is `ErrorKind::WouldBlock`, its message naming the directory and the
    /// holder's pid when the file says it.
    pub(crate) fn acquire(dir: &Path) -> io::Result<DirLock> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        // SAFETY: flock takes a file descriptor that `file` owns and keeps open for
        // the call; it touches no memory of ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = text
                .trim()
                .parse::<u32>()
                .map_or_else(|_| String::new(), |pid| format!(" (pid {pid})"));
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "the cache directory {} is in use by another mediagate process{holder}; give each edge a cache directory of its own (--cache-dir, [edge.cache] dir)",
                    dir.display()
                ),
            ));
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_is_refused_naming_the_holder_until_the_first_goes() {
        let dir = std::env::temp_dir().join(format!("mediagate-dirlock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = DirLock::acquire(&dir).expect("the first lock");
        // flock locks belong to the open file: a second open in this process
        // conflicts as another process's would.
        let err = DirLock::acquire(&dir).expect_err("the second is refused");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let msg = err.to_string();
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("(pid {})", std::process::id())),
            "{msg}"
        );
        drop(first);
        DirLock::acquire(&dir).expect("free again once the first is dropped");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
