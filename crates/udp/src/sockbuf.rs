//! Socket buffer sizing (`socket(7)`: `SO_RCVBUF`/`SO_RCVBUFFORCE`,
//! `SO_SNDBUF`/`SO_SNDBUFFORCE`).
//!
//! Why: a receiver that drains thousands of sockets in bursts (a frame to every viewer
//! at once) needs more queue per socket than the default, or the kernel drops
//! datagrams before the reader gets to them; a sender that bursts a frame to every
//! viewer from one socket needs a send buffer that holds the burst.
//!
//! What it does: asks for a buffer size and reports what the kernel granted. What it
//! does not: raise `net.core.rmem_max`/`wmem_max` (system settings, the operator's
//! call).

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use socket2::SockRef;

/// Asks for a `bytes` receive buffer on `socket`: first `SO_RCVBUFFORCE` (which may
/// exceed `net.core.rmem_max` but needs `CAP_NET_ADMIN`), then `SO_RCVBUF`. Returns what
/// the kernel granted (it doubles the request for bookkeeping, and caps `SO_RCVBUF` at
/// `rmem_max`).
pub fn set_recv_buffer<S: AsFd>(socket: &S, bytes: usize) -> io::Result<usize> {
    let s = SockRef::from(socket);
    force(&s, libc::SO_RCVBUFFORCE, bytes).or_else(|_| s.set_recv_buffer_size(bytes))?;
    s.recv_buffer_size()
}

/// The same for the send buffer (`SO_SNDBUFFORCE`, then `SO_SNDBUF`, capped at
/// `net.core.wmem_max`).
pub fn set_send_buffer<S: AsFd>(socket: &S, bytes: usize) -> io::Result<usize> {
    let s = SockRef::from(socket);
    force(&s, libc::SO_SNDBUFFORCE, bytes).or_else(|_| s.set_send_buffer_size(bytes))?;
    s.send_buffer_size()
}

/// The `*FORCE` variant, which socket2 does not offer.
fn force(s: &SockRef<'_>, option: libc::c_int, bytes: usize) -> io::Result<()> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    crate::sys::set_int_option(s.as_raw_fd(), libc::SOL_SOCKET, option, want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_buffer_is_granted_and_reported() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // The kernel doubles the request (socket(7)); as root FORCE lifts the cap.
        assert_eq!(set_send_buffer(&s, 4096).unwrap(), 8192);
    }
    use std::net::UdpSocket;

    fn rmem_max() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_kernel_grants_twice_the_request_within_its_cap() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Small enough for any rmem_max and above the kernel's minimum: exact.
        assert_eq!(set_recv_buffer(&s, 4096).unwrap(), 8192);
        let big = 4 << 20;
        let got = set_recv_buffer(&s, big).unwrap();
        // Forced (CAP_NET_ADMIN) gets all of it; otherwise rmem_max caps the request.
        let capped = 2 * big.min(rmem_max());
        assert!(got == 2 * big || got == capped, "granted {got}");
    }

    #[test]
    fn a_descriptor_that_is_no_socket_is_an_error() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = set_recv_buffer(&f, 4096).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTSOCK));
    }
}
