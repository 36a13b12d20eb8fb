//! The load generator's unsafe edge: the Linux system calls std does not wrap.
//!
//! What it does: `epoll` (one set per receiver thread), `recvmmsg(2)` into reusable
//! buffers, `sendmmsg(2)` with an optional `UDP_SEGMENT` (GSO) control message,
//! socket receive-buffer sizing, the calling thread's CPU time and the kernel's clock
//! tick rate (for `/proc/PID/stat`).
//!
//! What it does not: policy. Callers decide batch sizes, what to do with datagrams and
//! when to stop; everything here is a thin, checked wrapper whose pointers are wired
//! right before the call they are used in, so no pointer outlives the borrow it came
//! from.
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;

/// An epoll set whose events carry a caller-chosen `u64` token.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// Creates an empty set.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain system call; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for readability (level-triggered), reporting `token`.
    pub fn add_readable(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` for ready descriptors and appends their tokens to
    /// `tokens` (cleared first). Returns how many. `EINTR` counts as zero.
    pub fn wait(
        &self,
        events: &mut [libc::epoll_event],
        tokens: &mut Vec<u64>,
        timeout: Duration,
    ) -> io::Result<usize> {
        tokens.clear();
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` is writable for `max` entries.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = usize::try_from(n).unwrap_or(0).min(events.len());
        for ev in events.iter().take(n) {
            // Copy out: the struct is packed on x86_64, so no references into it.
            let token = ev.u64;
            tokens.push(token);
        }
        Ok(n)
    }
}

/// A zeroed epoll event array for [`Epoll::wait`].
pub fn epoll_events(n: usize) -> Vec<libc::epoll_event> {
    vec![libc::epoll_event { events: 0, u64: 0 }; n]
}

/// Reusable buffers for `recvmmsg`: `slots` datagrams of at most `slot_size` bytes
/// each per call. Not `Send`: it lives on the receiver thread that made it.
pub struct RecvBatch {
    data: Vec<u8>,
    slot_size: usize,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    filled: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.lens.len())
            .field("slot_size", &self.slot_size)
            .field("filled", &self.filled)
            .finish()
    }
}

impl RecvBatch {
    /// Room for `slots` datagrams (at least 1) of `slot_size` bytes (at least 1).
    pub fn new(slots: usize, slot_size: usize) -> Self {
        let slots = slots.clamp(1, 1024);
        let slot_size = slot_size.max(1);
        Self {
            data: vec![0; slots.saturating_mul(slot_size)],
            slot_size,
            lens: vec![0; slots],
            truncated: vec![false; slots],
            iovs: Vec::with_capacity(slots),
            hdrs: Vec::with_capacity(slots),
            filled: 0,
        }
    }

    /// Reads whatever is queued on `fd` without blocking, up to the batch size.
    /// Returns the number of datagrams now held (0 when nothing was queued).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.filled = 0;
        self.iovs.clear();
        self.hdrs.clear();
        for chunk in self.data.chunks_exact_mut(self.slot_size) {
            self.iovs.push(libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            });
        }
        for iov in self.iovs.iter_mut() {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
        let vlen = libc::c_uint::try_from(self.hdrs.len()).unwrap_or(0);
        // SAFETY: every header points at one iovec in `self.iovs`, which points into
        // `self.data`; neither vector is touched until the call returns.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        let n = usize::try_from(n).unwrap_or(0).min(self.hdrs.len());
        for (i, h) in self.hdrs.iter().take(n).enumerate() {
            let len = usize::try_from(h.msg_len).unwrap_or(0);
            self.lens[i] = len.min(self.slot_size);
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        self.filled = n;
        Ok(n)
    }

    /// Datagram `i` of the last [`Self::recv`], and whether the kernel cut it to fit.
    pub fn datagram(&self, i: usize) -> Option<(&[u8], bool)> {
        if i >= self.filled {
            return None;
        }
        let start = i.checked_mul(self.slot_size)?;
        let len = *self.lens.get(i)?;
        let bytes = self.data.get(start..start.checked_add(len)?)?;
        Some((bytes, self.truncated.get(i).copied().unwrap_or(false)))
    }
}

/// One outgoing message for [`MmsgSender::send`]: `payloads` back to back to `dest`.
/// With `segment` set (GSO) the kernel cuts them into datagrams of that many bytes (the
/// last may be shorter); without it they form one datagram, so give one payload.
#[derive(Debug, Clone, Copy)]
pub struct OutMsg<'a> {
    pub dest: SocketAddrV4,
    pub payloads: &'a [&'a [u8]],
    pub segment: Option<u16>,
}

/// Reusable scratch for `sendmmsg` (IPv4 destinations: it only serves the floor
/// measurement, which runs on loopback).
#[derive(Default)]
pub struct MmsgSender {
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    cmsgs: Vec<[u64; 4]>,
    hdrs: Vec<libc::mmsghdr>,
}

impl std::fmt::Debug for MmsgSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmsgSender").finish_non_exhaustive()
    }
}

impl MmsgSender {
    /// Sends `msgs` (at most 1024) with one `sendmmsg`, blocking if the socket is
    /// blocking. Returns how many messages the kernel took.
    pub fn send(&mut self, fd: RawFd, msgs: &[OutMsg<'_>]) -> io::Result<usize> {
        let msgs = msgs.get(..msgs.len().min(1024)).unwrap_or_default();
        self.addrs.clear();
        self.iovs.clear();
        self.hdrs.clear();
        if self.cmsgs.len() < msgs.len() {
            self.cmsgs.resize(msgs.len(), [0; 4]);
        }
        for m in msgs {
            self.addrs.push(sockaddr_v4(m.dest));
            for p in m.payloads {
                self.iovs.push(libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                });
            }
        }
        let mut iov_at = 0usize;
        for (i, m) in msgs.iter().enumerate() {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: iov_at..iov_at+payloads.len() was pushed above for this message.
            h.msg_hdr.msg_iov = unsafe { self.iovs.as_mut_ptr().add(iov_at) };
            h.msg_hdr.msg_iovlen = m.payloads.len();
            iov_at += m.payloads.len();
            if let Some(seg) = m.segment {
                let buf = &mut self.cmsgs[i];
                h.msg_hdr.msg_control = buf.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE only computes a size.
                h.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
                // SAFETY: msg_control points at 32 aligned bytes, more than
                // CMSG_SPACE(2) = 24, so the header and its two data bytes fit.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    (*c).cmsg_level = SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
                }
            }
            self.hdrs.push(h);
        }
        if self.hdrs.is_empty() {
            return Ok(0);
        }
        // SAFETY: every pointer in `hdrs` refers to `addrs`, `iovs`, `cmsgs` (untouched
        // until the call returns) or to payloads borrowed by `msgs` for the call.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

fn sockaddr_v4(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// Whether this kernel knows `UDP_SEGMENT` on `fd`'s kind of socket.
pub fn gso_supported(fd: RawFd) -> bool {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` and `len` are valid for writing for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_UDP,
            UDP_SEGMENT,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0
}

/// Asks for a `bytes` receive buffer on `fd`: first `SO_RCVBUFFORCE` (which may exceed
/// `net.core.rmem_max` but needs `CAP_NET_ADMIN`), then `SO_RCVBUF`. Returns what the
/// kernel granted (it doubles the request for bookkeeping, and caps `SO_RCVBUF`).
pub fn set_recv_buffer(fd: RawFd, bytes: usize) -> io::Result<usize> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |opt: libc::c_int| {
        // SAFETY: `want` is a valid c_int for the duration of the call.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&want as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SO_RCVBUFFORCE) != 0 && set(libc::SO_RCVBUF) != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `got` and `len` are valid for writing for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(got).unwrap_or(0))
}

/// CPU time (user + system) the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writing for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The clock tick rate `/proc/PID/stat` times are counted in (`sysconf(_SC_CLK_TCK)`),
/// or `None` if the kernel will not say.
pub fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf has no memory effects.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(v).ok().filter(|&t| t > 0)
}

/// Raises the soft open-file limit (a run needs a few descriptors per viewer).
pub use mediagate_udp::raise_nofile_limit;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, UdpSocket};

    fn loopback() -> UdpSocket {
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap()
    }

    fn v4(s: &UdpSocket) -> SocketAddrV4 {
        match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("not v4: {other}"),
        }
    }

    #[test]
    fn recv_batch_reads_queued_datagrams_and_flags_truncation() {
        let rx = loopback();
        let tx = loopback();
        let mut b = RecvBatch::new(8, 16);
        assert_eq!(b.recv(rx.as_raw_fd()).unwrap(), 0, "empty socket");
        tx.send_to(b"hello", rx.local_addr().unwrap()).unwrap();
        tx.send_to(&[7u8; 40], rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(b.recv(rx.as_raw_fd()).unwrap(), 2);
        assert_eq!(b.datagram(0), Some((&b"hello"[..], false)));
        assert_eq!(b.datagram(1), Some((&[7u8; 16][..], true)));
        assert_eq!(b.datagram(2), None);
    }

    #[test]
    fn epoll_reports_the_token_of_the_ready_socket() {
        let a = loopback();
        let b = loopback();
        let ep = Epoll::new().unwrap();
        ep.add_readable(a.as_raw_fd(), 10).unwrap();
        ep.add_readable(b.as_raw_fd(), 11).unwrap();
        let mut evs = epoll_events(8);
        let mut toks = Vec::new();
        assert_eq!(ep.wait(&mut evs, &mut toks, Duration::ZERO).unwrap(), 0);
        loopback().send_to(b"x", b.local_addr().unwrap()).unwrap();
        ep.wait(&mut evs, &mut toks, Duration::from_secs(2))
            .unwrap();
        assert_eq!(toks, vec![11]);
    }

    #[test]
    fn sendmmsg_delivers_plain_and_gso_messages() {
        let rx = loopback();
        let tx = loopback();
        let p1 = [1u8; 100];
        let p2 = [2u8; 100];
        let p3 = [3u8; 60];
        let plain = [&p1[..]];
        let gso = [&p1[..], &p2[..], &p3[..]];
        let use_gso = gso_supported(tx.as_raw_fd());
        let mut msgs = vec![OutMsg {
            dest: v4(&rx),
            payloads: &plain,
            segment: None,
        }];
        if use_gso {
            msgs.push(OutMsg {
                dest: v4(&rx),
                payloads: &gso,
                segment: Some(100),
            });
        }
        let mut s = MmsgSender::default();
        assert_eq!(s.send(tx.as_raw_fd(), &msgs).unwrap(), msgs.len());
        let mut b = RecvBatch::new(8, 2048);
        std::thread::sleep(Duration::from_millis(20));
        let n = b.recv(rx.as_raw_fd()).unwrap();
        let got: Vec<Vec<u8>> = (0..n).map(|i| b.datagram(i).unwrap().0.to_vec()).collect();
        let mut want = vec![p1.to_vec()];
        if use_gso {
            want.extend([p1.to_vec(), p2.to_vec(), p3.to_vec()]);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn receive_buffer_grows_and_clock_ticks_are_known() {
        let s = loopback();
        let got = set_recv_buffer(s.as_raw_fd(), 1 << 20).unwrap();
        assert!(got >= 1 << 20 || got >= 200_000, "granted {got}");
        assert!(clock_ticks_per_second().unwrap() >= 100);
        let t0 = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(thread_cpu_time() > t0);
        assert!(raise_nofile_limit().unwrap() >= 1024);
    }
}
