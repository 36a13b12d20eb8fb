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
    crate::sys::set_int_option(
        socket.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_TIMESTAMPNS,
        1,
    )
}

/// The `SCM_TIMESTAMPNS` time among the control messages of `hdr`, which `recvmsg` or
/// `recvmmsg` has just filled (its `msg_controllen` is what the kernel wrote, 0 when
/// there was nothing). `None` when there is no such message or it is malformed.
pub(crate) fn kernel_time(hdr: &libc::msghdr) -> Option<SystemTime> {
    let ts: libc::timespec =
        crate::sys::control_message(hdr, libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS)?;
    from_timespec(ts.tv_sec, ts.tv_nsec)
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
