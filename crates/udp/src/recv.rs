//! Batched UDP receiving with sender addresses: `recvmmsg(2)` reads every datagram
//! queued on a socket (up to the batch size) in one system call, so a relay pays one
//! call per socket wake-up instead of one per datagram plus a final "nothing left".
//!
//! What it does: [`RecvBatch`] owns the buffers, reads without blocking and hands out
//! each datagram with its source address and whether the kernel cut it to fit. A
//! receiver that knows who sends (a load generator's viewer sockets) can skip the
//! addresses: the kernel then copies one less thing per datagram. Built
//! [`with_timestamps`](RecvBatch::with_timestamps) it also reads each datagram's kernel
//! receive time (see [`crate::enable_timestamps`]).
//! What it does not: own the socket or wait for readiness (see [`crate::Poller`]).
#![allow(unsafe_code)]

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::SystemTime;

use crate::timestamp;

/// Reusable `recvmmsg` buffers: `slots` datagrams of at most `slot_size` bytes.
pub struct RecvBatch {
    data: Vec<u8>,
    slot_size: usize,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    lens: Vec<usize>,
    cut: Vec<bool>,
    sources: Vec<Option<SocketAddr>>,
    want_sources: bool,
    /// [`timestamp::CONTROL_WORDS`] per slot when timestamps are asked for, else empty.
    control: Vec<u64>,
    stamps: Vec<Option<SystemTime>>,
    filled: usize,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` (including each header's control
// pointer) are rebuilt by `recv` right before the
// system call and never read outside it; between calls they are dead data, so moving
// the batch to another thread cannot create a dangling access.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.lens.len())
            .field("slot_size", &self.slot_size)
            .field("timestamps", &!self.control.is_empty())
            .field("filled", &self.filled)
            .finish()
    }
}

pub(crate) fn decode_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for any sockaddr.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

impl RecvBatch {
    /// Room for `slots` (1 to 1024) datagrams of `slot_size` (at least 1) bytes.
    pub fn new(slots: usize, slot_size: usize) -> Self {
        let slots = slots.clamp(1, 1024);
        let slot_size = slot_size.max(1);
        Self {
            data: vec![0; slots.saturating_mul(slot_size)],
            slot_size,
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; slots],
            iovs: Vec::with_capacity(slots),
            hdrs: Vec::with_capacity(slots),
            lens: vec![0; slots],
            cut: vec![false; slots],
            sources: vec![None; slots],
            want_sources: true,
            control: Vec::new(),
            stamps: vec![None; slots],
            filled: 0,
        }
    }

    /// Also reads each datagram's kernel receive time: every slot gets room for one
    /// `SCM_TIMESTAMPNS` control message, read back with
    /// [`timestamp`](Self::timestamp). The socket must have had
    /// [`enable_timestamps`](crate::enable_timestamps) called, or the kernel sends
    /// none. The room fits the timestamp only: other control messages the socket was
    /// asked for are cut (the timestamp comes first on Linux UDP sockets).
    pub fn with_timestamps(mut self) -> Self {
        let words = self.lens.len().saturating_mul(timestamp::CONTROL_WORDS);
        self.control = vec![0; words];
        self
    }

    /// Stops asking the kernel for source addresses. [`datagram`](Self::datagram) then
    /// has none to give and returns `None`; read with [`payload`](Self::payload).
    pub fn without_sources(mut self) -> Self {
        self.want_sources = false;
        self
    }

    /// Reads what is queued on `socket` without blocking, up to the batch size; returns
    /// how many datagrams are now held (0 when nothing was queued).
    pub fn recv<S: AsRawFd>(&mut self, socket: &S) -> io::Result<usize> {
        self.filled = 0;
        self.iovs.clear();
        self.hdrs.clear();
        for chunk in self.data.chunks_exact_mut(self.slot_size) {
            self.iovs.push(libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            });
        }
        // No control room (timestamps off) is an empty iterator: each header then
        // keeps a null control pointer and length 0.
        let mut controls = self.control.chunks_exact_mut(timestamp::CONTROL_WORDS);
        for (iov, addr) in self.iovs.iter_mut().zip(self.addrs.iter_mut()) {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            if self.want_sources {
                h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            // Set before every call: the kernel overwrites msg_controllen with what
            // it wrote.
            if let Some(control) = controls.next() {
                h.msg_hdr.msg_control = control.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = std::mem::size_of_val(control) as _;
            }
            self.hdrs.push(h);
        }
        let vlen = libc::c_uint::try_from(self.hdrs.len()).unwrap_or(0);
        // SAFETY: every header points at one iovec (into `self.data`), unless sources
        // are off (null name, length 0) one sockaddr_storage (in `self.addrs`), and
        // unless timestamps are off (null control, length 0) its own 8-byte aligned
        // chunk of `self.control` with that chunk's length; none of the vectors is
        // touched or resized until the call returns.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
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
        for i in 0..n {
            let (Some(h), Some(addr)) = (self.hdrs.get(i), self.addrs.get(i)) else {
                continue;
            };
            let len = usize::try_from(h.msg_len).unwrap_or(0).min(self.slot_size);
            let cut = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let source = if self.want_sources {
                decode_addr(addr)
            } else {
                None
            };
            let stamp = timestamp::kernel_time(&h.msg_hdr);
            if let (Some(l), Some(c), Some(s), Some(t)) = (
                self.lens.get_mut(i),
                self.cut.get_mut(i),
                self.sources.get_mut(i),
                self.stamps.get_mut(i),
            ) {
                *l = len;
                *c = cut;
                *s = source;
                *t = stamp;
            }
        }
        self.filled = n;
        Ok(n)
    }

    /// Datagram `i` of the last [`recv`](Self::recv): its bytes, its source, and
    /// whether the kernel cut it to fit the slot.
    pub fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr, bool)> {
        let (bytes, cut) = self.payload(i)?;
        Some((bytes, (*self.sources.get(i)?)?, cut))
    }

    /// Datagram `i` of the last [`recv`](Self::recv) without its source: its bytes and
    /// whether the kernel cut it to fit the slot.
    pub fn payload(&self, i: usize) -> Option<(&[u8], bool)> {
        if i >= self.filled {
            return None;
        }
        let start = i.checked_mul(self.slot_size)?;
        let len = *self.lens.get(i)?;
        let bytes = self.data.get(start..start.checked_add(len)?)?;
        Some((bytes, *self.cut.get(i)?))
    }

    /// The kernel's receive time of datagram `i` of the last [`recv`](Self::recv)
    /// (`CLOCK_REALTIME`). `None` when the batch was not built
    /// [`with_timestamps`](Self::with_timestamps), the socket does not have them
    /// enabled, or there is no datagram `i`.
    pub fn timestamp(&self, i: usize) -> Option<SystemTime> {
        if i >= self.filled {
            return None;
        }
        *self.stamps.get(i)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn reads_a_burst_with_sources_in_one_call() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RecvBatch::new(8, 64);
        assert_eq!(batch.recv(&rx).unwrap(), 0, "nothing queued, no blocking");
        for i in 0..5u8 {
            tx.send_to(&[i; 10], rx.local_addr().unwrap()).unwrap();
        }
        tx.send_to(&[9; 100], rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(batch.recv(&rx).unwrap(), 6);
        let (bytes, from, cut) = batch.datagram(3).unwrap();
        assert_eq!(
            (bytes, from, cut),
            (&[3u8; 10][..], tx.local_addr().unwrap(), false)
        );
        let (bytes, _, cut) = batch.datagram(5).unwrap();
        assert_eq!((bytes.len(), cut), (64, true));
        assert_eq!(batch.datagram(6), None);
        assert_eq!(batch.payload(3), Some((&[3u8; 10][..], false)));
    }

    #[test]
    fn without_sources_the_payloads_still_arrive() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RecvBatch::new(4, 8).without_sources();
        tx.send_to(b"abc", rx.local_addr().unwrap()).unwrap();
        tx.send_to(&[5; 20], rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(batch.recv(&rx).unwrap(), 2);
        assert_eq!(batch.payload(0), Some((&b"abc"[..], false)));
        assert_eq!(batch.payload(1), Some((&[5u8; 8][..], true)));
        assert_eq!(batch.payload(2), None);
        assert_eq!(batch.datagram(0), None, "no source was asked for");
    }

    /// How far `t` is from now, either way.
    fn off_now(t: SystemTime) -> std::time::Duration {
        let now = SystemTime::now();
        now.duration_since(t).unwrap_or_else(|e| e.duration())
    }

    #[test]
    fn each_datagram_of_a_batch_brings_its_kernel_time() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        crate::enable_timestamps(&rx).unwrap();
        let mut batch = RecvBatch::new(8, 32).with_timestamps();
        let before = SystemTime::now();
        for i in 0..5u8 {
            tx.send_to(&[i; 3], rx.local_addr().unwrap()).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(batch.recv(&rx).unwrap(), 5);
        let mut last = None;
        for i in 0..5 {
            let t = batch
                .timestamp(i)
                .unwrap_or_else(|| panic!("no time for {i}"));
            assert!(off_now(t) < std::time::Duration::from_secs(1), "{t:?}");
            // Taken by the kernel on arrival, not when read 20 ms later.
            assert!(t >= before, "{t:?} before the send at {before:?}");
            assert!(last.is_none_or(|l| l <= t), "in arrival order");
            last = Some(t);
            // Sources and payloads are untouched by the control buffers.
            let (bytes, from, cut) = batch.datagram(i).unwrap();
            assert_eq!(
                (bytes, from, cut),
                (&[i as u8; 3][..], tx.local_addr().unwrap(), false)
            );
        }
        assert_eq!(batch.timestamp(5), None, "no sixth datagram");
        // A second call refills the control lengths the kernel overwrote.
        tx.send_to(b"again", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(batch.recv(&rx).unwrap(), 1);
        assert!(batch.timestamp(0).is_some());
        assert_eq!(batch.timestamp(1), None, "left over from the first call");
    }

    #[test]
    fn no_time_unless_both_the_socket_and_the_batch_ask() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Batch asks, socket does not.
        let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RecvBatch::new(4, 16).without_sources().with_timestamps();
        tx.send_to(b"a", plain.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(batch.recv(&plain).unwrap(), 1);
        assert_eq!(batch.payload(0), Some((&b"a"[..], false)));
        assert_eq!(batch.timestamp(0), None);
        // Socket asks, batch has no room.
        let stamped = UdpSocket::bind("127.0.0.1:0").unwrap();
        crate::enable_timestamps(&stamped).unwrap();
        let mut batch = RecvBatch::new(4, 16);
        tx.send_to(b"b", stamped.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(batch.recv(&stamped).unwrap(), 1);
        assert_eq!(batch.payload(0), Some((&b"b"[..], false)));
        assert_eq!(batch.timestamp(0), None);
    }

    #[test]
    fn ipv6_sources() {
        let rx = crate::test_env::bind_ipv6("[::1]:0");
        let tx = UdpSocket::bind("[::1]:0").unwrap();
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut batch = RecvBatch::new(2, 16);
        assert_eq!(batch.recv(&rx).unwrap(), 1);
        assert_eq!(batch.datagram(0).unwrap().1, tx.local_addr().unwrap());
    }
}
