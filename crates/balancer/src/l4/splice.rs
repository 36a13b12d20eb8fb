//! `splice(2)` between a socket and a pipe, the zero-copy path of the TCP proxy: bytes
//! go socket → pipe → socket as page references inside the kernel and never enter our
//! address space. Non-blocking throughout; `EAGAIN` comes back as `WouldBlock` so
//! tokio's readiness drives it. Callers fall back to a userspace copy when the kernel
//! refuses (`EINVAL`, `ENOSYS`: socket types or kernels without splice support).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Bytes the proxy asks the pipe to hold; the kernel's default is 64 KiB (16 pages).
/// A larger pipe moves more per system call; if the kernel refuses (the
/// `pipe-max-size` limit), the default stays.
const PIPE_SIZE: libc::c_int = 256 * 1024;

/// A non-blocking pipe used as the splice buffer of one direction.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    pub(crate) fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own; F_SETPIPE_SZ takes an int argument.
        let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        let capacity = if size > 0 { size as usize } else { 64 * 1024 };
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Bytes the pipe holds when full.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Moves up to `len` bytes from socket `from` into the pipe. `Ok(0)` is the peer's
    /// end of stream.
    pub(crate) fn fill_from(&self, from: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        splice(from, self.write.as_raw_fd(), len)
    }

    /// Moves up to `len` bytes from the pipe into socket `to`.
    pub(crate) fn drain_to(&self, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        // SAFETY: see `splice`: both descriptors stay open for the call.
        let from = unsafe { BorrowedFd::borrow_raw(self.read.as_raw_fd()) };
        splice(from, to.as_raw_fd(), len)
    }
}

fn splice(from: BorrowedFd<'_>, to: libc::c_int, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (borrowed or
    // owned by the caller's `Pipe`); null offsets are required for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The kernel cannot splice these descriptors: use a userspace copy instead.
pub(crate) fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}
