//! Readiness for many sockets on one thread: a thin, safe wrapper over Linux `epoll(7)`
//! in level-triggered mode, so a socket that still holds datagrams after a bounded
//! batch read is reported again on the next wait and none is starved.
//!
//! What it does: register and deregister descriptors with a `u64` token, and wait
//! for readable ones with a timeout. What it does not: own the descriptors (the
//! caller keeps them open while registered; closing one removes it from the set).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// An epoll set.
#[derive(Debug)]
pub struct Poller {
    epfd: OwnedFd,
}

/// Space for the ready tokens of one [`Poller::wait`].
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("len", &self.len).finish()
    }
}

impl Events {
    /// Room for `capacity` (at least 1) ready descriptors per wait.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            len: 0,
        }
    }

    /// The tokens reported by the last wait.
    pub fn tokens(&self) -> impl Iterator<Item = u64> + '_ {
        self.buf.iter().take(self.len).map(|e| e.u64)
    }
}

impl Poller {
    /// A new, empty set (close-on-exec).
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 has no memory preconditions.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we exclusively own.
        Ok(Self {
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches `socket` for readability, reporting `token`.
    pub fn add<S: AsRawFd>(&self, socket: &S, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, socket.as_raw_fd(), token)
    }

    /// Stops watching `socket`.
    pub fn delete<S: AsRawFd>(&self, socket: &S) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, socket.as_raw_fd(), 0)
    }

    /// Waits up to `timeout` for readable descriptors; returns how many are in
    /// `events` (0 on timeout or interruption).
    pub fn wait(&self, events: &mut Events, timeout: Duration) -> io::Result<usize> {
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        let max = libc::c_int::try_from(events.buf.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: the buffer holds `max` writable epoll_events.
        let n =
            unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), events.buf.as_mut_ptr(), max, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            events.len = 0;
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(0)
            } else {
                Err(e)
            };
        }
        events.len = usize::try_from(n).unwrap_or(0).min(events.buf.len());
        Ok(events.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn reports_readable_tokens_until_drained() {
        let p = Poller::new().unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        p.add(&a, 7).unwrap();
        p.add(&b, 9).unwrap();
        let mut ev = Events::with_capacity(4);
        assert_eq!(p.wait(&mut ev, Duration::from_millis(10)).unwrap(), 0);
        b.send_to(b"x", a.local_addr().unwrap()).unwrap();
        assert_eq!(p.wait(&mut ev, Duration::from_secs(1)).unwrap(), 1);
        assert_eq!(ev.tokens().collect::<Vec<_>>(), vec![7]);
        // Level-triggered: still readable until read.
        assert_eq!(p.wait(&mut ev, Duration::from_millis(10)).unwrap(), 1);
        let mut buf = [0u8; 4];
        a.recv(&mut buf).unwrap();
        assert_eq!(p.wait(&mut ev, Duration::from_millis(10)).unwrap(), 0);
        p.delete(&a).unwrap();
        b.send_to(b"y", a.local_addr().unwrap()).unwrap();
        assert_eq!(p.wait(&mut ev, Duration::from_millis(10)).unwrap(), 0);
        assert!(p.delete(&a).is_err(), "not registered any more");
    }
}
