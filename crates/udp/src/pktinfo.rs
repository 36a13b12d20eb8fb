//! Replying from the address a datagram reached, on a socket bound to a wildcard
//! (`0.0.0.0` or `::`): `recvmsg(2)` with `IP_PKTINFO` / `IPV6_PKTINFO` control messages
//! to learn the local address, `sendmsg(2)` with the same control message to use it as
//! the source (ip(7), ipv6(7); RFC 3542 section 6 for the IPv6 form).
//!
//! Why: on a multi-homed host a wildcard-bound socket's replies get the source address
//! the routing table picks, which need not be the one the client sent to; a client
//! that matches replies by address (Kamailio's `rtpengine` module) then drops them.
//!
//! What it does: [`enable_pktinfo`] asks the kernel for the control messages,
//! [`recv_pktinfo`] reads one datagram without blocking and reports its local
//! destination, [`send_pktinfo`] sends one datagram from a given local address. A
//! dual-stack `::` socket gets IPv4 traffic as IPv4-mapped addresses; its replies go out
//! through the IPv4 path with an `IP_PKTINFO` source. Both calls report `WouldBlock`
//! when the socket is not ready, as tokio's `async_io`/`try_io` expect.
//!
//! What it does not: own or poll the socket, batch (control traffic is light; the media
//! path binds specific addresses and uses [`crate::RecvBatch`]), or work outside
//! Linux-like systems.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use socket2::SockRef;

/// The local end a datagram reached: the address to answer from, and the interface it
/// came in on (used only to scope an IPv6 link-local source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalDest {
    /// The local address (IPv4-mapped on a dual-stack socket receiving IPv4).
    pub ip: IpAddr,
    /// The receiving interface's index.
    pub ifindex: u32,
}

/// One datagram read by [`recv_pktinfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes written to the buffer.
    pub len: usize,
    /// Who sent it.
    pub source: SocketAddr,
    /// Where it arrived, if the kernel said (not for datagrams queued before
    /// [`enable_pktinfo`]).
    pub local: Option<LocalDest>,
    /// Whether the datagram was longer than the buffer and got cut.
    pub truncated: bool,
}

/// Room for the control messages one datagram can bring (`in6_pktinfo` and
/// `in_pktinfo` together take 64 bytes with headers), 8-byte aligned as `cmsghdr`
/// needs.
type CmsgBuf = [u64; 16];

/// Asks the kernel to report each datagram's local destination: `IP_PKTINFO` on an
/// IPv4 socket, `IPV6_RECVPKTINFO` (plus `IP_PKTINFO`, for IPv4 traffic on a dual-stack
/// socket, where the kernel allows it) on an IPv6 socket.
pub fn enable_pktinfo<S: AsFd>(socket: &S) -> io::Result<()> {
    let fd = socket.as_fd().as_raw_fd();
    match socket_family(socket)? {
        libc::AF_INET => set_flag(fd, libc::IPPROTO_IP, libc::IP_PKTINFO),
        libc::AF_INET6 => {
            set_flag(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)?;
            // Linux already reports IPv4 traffic on this socket through IPV6_PKTINFO
            // with a mapped address; this is belt and braces, so a refusal is fine.
            let _ = set_flag(fd, libc::IPPROTO_IP, libc::IP_PKTINFO);
            Ok(())
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "packet info needs an IPv4 or IPv6 socket",
        )),
    }
}

/// Reads one datagram without blocking, with its source and local destination.
/// `WouldBlock` when nothing is queued.
pub fn recv_pktinfo<S: AsRawFd>(socket: &S, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control: CmsgBuf = [0; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = size_of::<CmsgBuf>() as _;
    // SAFETY: the header points at `name`, `iov` (which points into `buf`) and
    // `control`, all alive and not otherwise borrowed until the call returns; the
    // lengths given are their sizes.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut hdr, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let source = crate::recv::decode_addr(&name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram without an IP source address",
        )
    })?;
    Ok(Received {
        len: usize::try_from(n).unwrap_or(0).min(buf.len()),
        source,
        local: local_dest(&hdr),
        truncated: hdr.msg_flags & libc::MSG_TRUNC != 0,
    })
}

/// Sends `payload` to `dest` without blocking, from `from`'s address when given (as
/// [`recv_pktinfo`] reported it), else from whatever the kernel picks. Fails (for
/// example `EADDRNOTAVAIL`) when that address is no longer the host's; `WouldBlock`
/// when the send buffer is full.
pub fn send_pktinfo<S: AsRawFd>(
    socket: &S,
    payload: &[u8],
    dest: SocketAddr,
    from: Option<LocalDest>,
) -> io::Result<usize> {
    let (mut name, name_len) = crate::sys::sockaddr(dest);
    let mut control: CmsgBuf = [0; 16];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    hdr.msg_namelen = name_len;
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if let Some(from) = from {
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = size_of::<CmsgBuf>() as _;
        hdr.msg_controllen = write_source(&mut hdr, from, dest) as _;
    }
    // SAFETY: the header points at `name`, `iov` (which points into `payload`; the
    // kernel only reads through it) and, when set, `control`, all alive until the call
    // returns.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &hdr, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

fn set_flag(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    crate::sys::set_int_option(fd, level, name, 1)
}

fn socket_family<S: AsFd>(socket: &S) -> io::Result<libc::c_int> {
    Ok(libc::c_int::from(
        SockRef::from(socket).local_addr()?.family(),
    ))
}

/// The local destination from a received header's control messages. The IPv6 form
/// wins: on a dual-stack socket it is the mapped address the reply's destination is
/// written in.
fn local_dest(hdr: &libc::msghdr) -> Option<LocalDest> {
    let v6 = crate::sys::control_message::<libc::in6_pktinfo>(
        hdr,
        libc::IPPROTO_IPV6,
        libc::IPV6_PKTINFO,
    )
    .map(|info| LocalDest {
        ip: IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)),
        ifindex: info.ipi6_ifindex,
    });
    v6.or_else(|| {
        crate::sys::control_message::<libc::in_pktinfo>(hdr, libc::IPPROTO_IP, libc::IP_PKTINFO)
            .map(|info| LocalDest {
                ip: IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr))),
                ifindex: u32::try_from(info.ipi_ifindex).unwrap_or(0),
            })
    })
}

/// Writes the control message that makes `from` the source of a datagram to `dest`
/// into `hdr`'s control buffer (at least [`CmsgBuf`] long); returns its used length.
fn write_source(hdr: &mut libc::msghdr, from: LocalDest, dest: SocketAddr) -> usize {
    let to_ipv4 = match dest {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(d) => d.ip().to_ipv4_mapped().is_some(),
    };
    let from_v4 = match from.ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    };
    // SAFETY: msg_control points at a live, 8-byte aligned CmsgBuf of 128 bytes, and
    // msg_controllen says so; one header plus an in_pktinfo (28 bytes) or in6_pktinfo
    // (36 bytes) fits, so CMSG_FIRSTHDR is not null and the writes stay inside.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(hdr);
        match from_v4.filter(|_| to_ipv4) {
            // IPv4 out (also from a dual-stack socket, whose IPv4 path reads only
            // IPPROTO_IP control messages on older kernels).
            Some(src) => {
                let size = size_of::<libc::in_pktinfo>() as u32;
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size) as _;
                let info = libc::in_pktinfo {
                    // 0: let routing pick the interface; the source is what matters.
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(src).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), info);
                libc::CMSG_SPACE(size) as usize
            }
            None => {
                let size = size_of::<libc::in6_pktinfo>() as u32;
                let src = match from.ip {
                    IpAddr::V6(a) => a,
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                };
                (*c).cmsg_level = libc::IPPROTO_IPV6;
                (*c).cmsg_type = libc::IPV6_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size) as _;
                // A link-local source only means something on its interface.
                let scoped = src.is_unicast_link_local();
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: src.octets(),
                    },
                    ipi6_ifindex: if scoped { from.ifindex } else { 0 },
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>(), info);
                libc::CMSG_SPACE(size) as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// Blocks (briefly) until a datagram is queued on `socket`, then reads it.
    fn recv_soon(socket: &UdpSocket, buf: &mut [u8]) -> Received {
        for _ in 0..200 {
            match recv_pktinfo(socket, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                other => return other.unwrap(),
            }
        }
        panic!("no datagram within a second");
    }

    /// Sends `ping` from a fresh client to `to`, has `server` answer it from where it
    /// arrived, and returns (what the server saw, where the reply came from).
    fn round_trip(server: &UdpSocket, client_bind: &str, to: SocketAddr) -> (Received, SocketAddr) {
        let client = UdpSocket::bind(client_bind).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        client.send_to(b"ping", to).unwrap();
        let mut buf = [0u8; 64];
        let got = recv_soon(server, &mut buf);
        assert_eq!(&buf[..got.len], b"ping");
        assert_eq!(
            send_pktinfo(server, b"pong", got.source, got.local).unwrap(),
            4
        );
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");
        (got, from)
    }

    #[test]
    fn ipv4_wildcard_answers_from_the_address_reached() {
        let server = UdpSocket::bind("0.0.0.0:0").unwrap();
        enable_pktinfo(&server).unwrap();
        let port = server.local_addr().unwrap().port();
        for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
            let to: SocketAddr = format!("{ip}:{port}").parse().unwrap();
            let (got, from) = round_trip(&server, "127.0.0.1:0", to);
            assert_eq!(got.local.map(|l| l.ip), Some(to.ip()));
            assert_ne!(got.local.map(|l| l.ifindex), Some(0), "loopback's index");
            assert_eq!(from, to, "reply from the address the request reached");
        }
    }

    #[test]
    fn without_pktinfo_the_kernel_picks_the_source() {
        // What the module is for: the same exchange without control messages answers
        // from 127.0.0.1 although the request went to 127.0.0.2.
        let server = UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let to: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
        let (got, from) = round_trip(&server, "127.0.0.1:0", to);
        assert_eq!(got.local, None, "not enabled, not reported");
        assert_eq!(from, format!("127.0.0.1:{port}").parse().unwrap());
    }

    #[test]
    fn dual_stack_wildcard_answers_ipv4_and_ipv6() {
        let server = crate::test_env::bind_ipv6("[::]:0");
        enable_pktinfo(&server).unwrap();
        let port = server.local_addr().unwrap().port();
        // IPv4 through the dual-stack socket: seen as mapped, answered from 127.0.0.2.
        let to: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
        let (got, from) = round_trip(&server, "127.0.0.1:0", to);
        let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped());
        assert_eq!(got.local.map(|l| l.ip), Some(mapped));
        assert_eq!(from, to);
        drop(crate::test_env::bind_ipv6("[::1]:0"));
        let to: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        let (got, from) = round_trip(&server, "[::1]:0", to);
        assert_eq!(got.local.map(|l| l.ip), Some(to.ip()));
        assert_eq!(from, to);
    }

    #[test]
    fn empty_queue_is_would_block_and_truncation_is_reported() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_pktinfo(&server).unwrap();
        let mut buf = [0u8; 4];
        let e = recv_pktinfo(&server, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(b"longer than four", server.local_addr().unwrap())
            .unwrap();
        let got = recv_soon(&server, &mut buf);
        assert_eq!((got.len, got.truncated), (4, true));
        assert_eq!(&buf, b"long");
        assert_eq!(got.source, client.local_addr().unwrap());
        // A specific bind reports its own address.
        assert_eq!(
            got.local.map(|l| l.ip),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }

    #[test]
    fn a_source_the_host_does_not_have_is_refused() {
        let server = UdpSocket::bind("0.0.0.0:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let foreign = LocalDest {
            ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            ifindex: 0,
        };
        assert!(send_pktinfo(&server, b"x", client.local_addr().unwrap(), Some(foreign)).is_err());
    }
}
