//! Kernel receive timestamps (`SO_TIMESTAMPNS`, socket(7)): the time the kernel took
//! a datagram in, handed to the reader as an `SCM_TIMESTAMPNS` control message
//! (`struct timespec`, `CLOCK_REALTIME`).
//!
//! Why: a receiver that stamps arrival itself, after waking up, adds its own
//! scheduling delay to every figure it computes. The kernel's stamp is taken when the
//! datagram enters the receive path (on loopback: when the sender's packet is queued
//! for the receive softirq), before any reader thread runs, so a load generator can
//! batch its reads without its latency figures growing.
//!
//! What it does: [`enable_timestamps`] sets the option; [`crate::RecvBatch`], built
//! [`with_timestamps`](crate::RecvBatch::with_timestamps), gives each datagram room
//! for the control message and reads it back through [`kernel_time`]. What it does
//! not: hardware timestamps (`SO_TIMESTAMPING`), or transmit timestamps.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bytes of control buffer one datagram needs for its timestamp:
/// `CMSG_SPACE(sizeof(struct timespec))`, 32 on 64-bit Linux.
// SAFETY: CMSG_SPACE is pure arithmetic on its argument; it touches no memory.
pub(crate) const CONTROL_BYTES: usize =
    unsafe { libc::CMSG_SPACE(size_of::<libc::timespec>() as u32) } as usize;

/// The same in 8-byte words, the unit the control buffers are allocated in so that
/// each one is aligned as `cmsghdr` needs.
pub(crate) const CONTROL_WORDS: usize = CONTROL_BYTES.div_ceil(size_of::<u64>());

/// Asks the kernel to stamp every datagram `socket` receives from now on with its
/// arrival time (`SO_TIMESTAMPNS`). Datagrams already queued get stamped when read,
/// so enable before traffic starts. Read the stamps with a
/// [`RecvBatch`](crate::RecvBatch) built [`with_timestamps`](crate::RecvBatch::with_timestamps).
pub fn enable_timestamps<S: AsRawFd>(socket: &S) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the option value is a c_int that lives across the call, and its size is
    // passed with it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The `SCM_TIMESTAMPNS` time among the control messages of `hdr`, which `recvmsg` or
/// `recvmmsg` has just filled (its `msg_controllen` is what the kernel wrote, 0 when
/// there was nothing). `None` when there is no such message or it is malformed.
pub(crate) fn kernel_time(hdr: &libc::msghdr) -> Option<SystemTime> {
    if hdr.msg_control.is_null() {
        return None;
    }
    let mut found = None;
    // SAFETY: `hdr` was just filled by the kernel: msg_control points at a live buffer
    // and msg_controllen says how much of it the kernel wrote, which is what the CMSG_*
    // walkers rely on (CMSG_FIRSTHDR is null when not even one header fits). The
    // payload is read unaligned, and only after checking that the message is long
    // enough to hold a timespec.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let len = (*c).cmsg_len as usize;
            if (*c).cmsg_level == libc::SOL_SOCKET
                && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
                && len >= libc::CMSG_LEN(size_of::<libc::timespec>() as u32) as usize
            {
                let ts: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                found = from_timespec(ts.tv_sec, ts.tv_nsec);
                break;
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    found
}

/// A `CLOCK_REALTIME` timespec as a [`SystemTime`]; `None` for times before the epoch
/// or nanoseconds out of range (a kernel never sends those; a garbled buffer might).
fn from_timespec(sec: libc::time_t, nsec: libc::c_long) -> Option<SystemTime> {
    let sec = u64::try_from(sec).ok()?;
    let nsec = u32::try_from(nsec).ok().filter(|&n| n < 1_000_000_000)?;
    UNIX_EPOCH.checked_add(Duration::new(sec, nsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_room_fits_one_timespec_message() {
        // 16-byte cmsghdr plus a 16-byte timespec on 64-bit Linux.
        assert_eq!(CONTROL_BYTES, 32);
        assert_eq!(CONTROL_WORDS, 4);
    }

    #[test]
    fn timespecs_convert_exactly_and_reject_garbage() {
        assert_eq!(
            from_timespec(1_700_000_000, 123_456_789),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789))
        );
        assert_eq!(from_timespec(0, 0), Some(UNIX_EPOCH));
        assert_eq!(from_timespec(-1, 0), None);
        assert_eq!(from_timespec(5, 1_000_000_000), None);
        assert_eq!(from_timespec(5, -1), None);
    }

    #[test]
    fn a_header_without_control_buffer_has_no_time() {
        // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
        let hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        assert_eq!(kernel_time(&hdr), None);
    }

    #[test]
    fn enabling_on_a_udp_socket_succeeds() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_timestamps(&s).unwrap();
    }
}
