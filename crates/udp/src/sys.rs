//! The unsafe edge of the crate: `sendmmsg(2)` with an optional `UDP_SEGMENT` control
//! message per message. Everything here is plain data until [`Scratch::send`], which
//! wires the pointers right before the system call, so growing a vector while a batch
//! is built can never leave a dangling pointer behind.
#![allow(unsafe_code)]

use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Messages per `sendmmsg` call unless the caller asks for another batch size.
pub(crate) const MAX_BATCH: usize = 512;
/// The most messages one `sendmmsg` call takes (the kernel caps `vlen` at
/// `UIO_MAXIOV`).
pub const KERNEL_MAX_BATCH: usize = 1024;

const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;

/// Space for one control message carrying a `u16`, 8-byte aligned as cmsghdr needs.
type CmsgBuf = [u64; 4];

struct Msg {
    addr: usize,
    iov_start: usize,
    iov_len: usize,
    segment: Option<u16>,
    /// Where the caller stands once this message is sent: its resume point.
    after: (usize, usize),
}

#[derive(Default)]
pub(crate) struct Scratch {
    msgs: Vec<Msg>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<(libc::sockaddr_storage, libc::socklen_t, SocketAddr)>,
    cmsgs: Vec<CmsgBuf>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside `iovs` and `hdrs` are written by `send` and used only
// during that call, which borrows the payloads; between calls they are stale data that
// nothing reads (`clear` drops them before the next batch is built).
unsafe impl Send for Scratch {}

impl Scratch {
    pub(crate) fn clear(&mut self) {
        self.msgs.clear();
        self.iovs.clear();
        self.addrs.clear();
        self.hdrs.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.msgs.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// (resume point after it, datagram count, used GSO) of message `i`.
    pub(crate) fn meta(&self, i: usize) -> ((usize, usize), usize, bool) {
        let m = &self.msgs[i];
        (m.after, m.iov_len, m.segment.is_some())
    }

    /// Queues one message: `payloads` sent back to back to `dest`, cut into datagrams of
    /// `segment` bytes by the kernel when `segment` is set. `after` is the caller's
    /// position once this message is out, handed back by [`Self::meta`].
    pub(crate) fn push(
        &mut self,
        dest: SocketAddr,
        payloads: &[&[u8]],
        segment: Option<usize>,
        after: (usize, usize),
    ) {
        // Consecutive messages to one viewer share its address entry.
        let addr = match self.msgs.last() {
            Some(last) if self.addrs.get(last.addr).map(|a| a.2) == Some(dest) => last.addr,
            _ => {
                let (sa, len) = sockaddr(dest);
                self.addrs.push((sa, len, dest));
                self.addrs.len() - 1
            }
        };
        let iov_start = self.iovs.len();
        for p in payloads {
            self.iovs.push(libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            });
        }
        self.msgs.push(Msg {
            addr,
            iov_start,
            iov_len: payloads.len(),
            segment: segment.and_then(|s| u16::try_from(s).ok()),
            after,
        });
    }

    /// Sends the queued messages with one `sendmmsg`. Returns how many went out and,
    /// when none did, the error number.
    pub(crate) fn send(&mut self, fd: RawFd) -> (usize, Option<i32>) {
        if self.msgs.is_empty() {
            return (0, None);
        }
        if self.cmsgs.len() < self.msgs.len() {
            self.cmsgs.resize(self.msgs.len(), [0; 4]);
        }
        self.hdrs.clear();
        for (i, m) in self.msgs.iter().enumerate() {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            let (ref addr, addr_len, _) = self.addrs[m.addr];
            h.msg_hdr.msg_name = addr as *const _ as *mut libc::c_void;
            h.msg_hdr.msg_namelen = addr_len;
            // SAFETY: iov_start..iov_start+iov_len is within `iovs` (pushed together).
            h.msg_hdr.msg_iov = unsafe { self.iovs.as_mut_ptr().add(m.iov_start) };
            h.msg_hdr.msg_iovlen = m.iov_len;
            if let Some(seg) = m.segment {
                let buf = &mut self.cmsgs[i];
                h.msg_hdr.msg_control = buf.as_mut_ptr() as *mut libc::c_void;
                // SAFETY: CMSG_SPACE only computes a size.
                h.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
                // SAFETY: msg_control points at `buf`, 32 bytes >= CMSG_SPACE(2) (24),
                // 8-byte aligned, so the first header and its 2 data bytes fit.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    (*c).cmsg_level = SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
                }
            }
            self.hdrs.push(h);
        }
        // SAFETY: every pointer in `hdrs` refers to `addrs`, `iovs`, `cmsgs` (not
        // modified until this call returns) or to payloads the caller borrows for the
        // duration of the call.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            (0, std::io::Error::last_os_error().raw_os_error())
        } else {
            (n as usize, None)
        }
    }
}

pub(crate) fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data, valid when zeroed, and large and
    // aligned enough for both sockaddr_in and sockaddr_in6.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: see above; the write stays within `storage`.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: see above; the write stays within `storage`.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// `setsockopt(fd, level, name, &value)` for an integer option that socket2 has no
/// method for (`SO_RCVBUFFORCE`/`SO_SNDBUFFORCE`, `SO_TIMESTAMPNS`, `IP_PKTINFO`,
/// `IPV6_RECVPKTINFO`); everything socket2 covers goes through it instead.
pub(crate) fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: `value` is a valid c_int for the duration of the call, and the length
    // passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `getsockopt(fd, level, name)` for an integer option socket2 has no method for
/// (`UDP_SEGMENT`).
fn get_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> std::io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writing for the duration of the call, and
    // `len` holds `value`'s size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Plain-old-data control-message payloads [`control_message`] may read: any bit
/// pattern is a valid value.
pub(crate) trait CmsgPayload: Copy {}
impl CmsgPayload for libc::timespec {}
impl CmsgPayload for libc::in_pktinfo {}
impl CmsgPayload for libc::in6_pktinfo {}

/// The payload of the first control message of `hdr` with this level and type, when
/// it is long enough to hold a `T`. `hdr` must be one `recvmsg` or `recvmmsg` has just
/// filled (its `msg_controllen` is what the kernel wrote).
pub(crate) fn control_message<T: CmsgPayload>(
    hdr: &libc::msghdr,
    level: libc::c_int,
    kind: libc::c_int,
) -> Option<T> {
    if hdr.msg_control.is_null() {
        return None;
    }
    // SAFETY: `hdr` was just filled by the kernel: msg_control points at a live buffer
    // and msg_controllen says how much of it the kernel wrote, which is what the CMSG_*
    // walkers rely on (CMSG_FIRSTHDR is null when not even one header fits). The
    // payload is read unaligned, only after checking the message holds a whole `T`,
    // and `T` is plain old data.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let len = (*c).cmsg_len as usize;
            if (*c).cmsg_level == level
                && (*c).cmsg_type == kind
                && len >= libc::CMSG_LEN(std::mem::size_of::<T>() as u32) as usize
            {
                return Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<T>()));
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

/// Whether this kernel knows `UDP_SEGMENT` (asked on a throwaway socket).
pub(crate) fn gso_supported() -> bool {
    use std::os::fd::AsRawFd as _;
    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
        .and_then(|s| get_int_option(s.as_raw_fd(), SOL_UDP, UDP_SEGMENT))
        .is_ok()
}
