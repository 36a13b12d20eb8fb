//! Which interface the kernel sends a datagram out of, from one address of this host to
//! another host: one rtnetlink `RTM_GETROUTE` query, the question `ip route get TO from
//! FROM` asks (message layouts from linux/netlink.h and linux/rtnetlink.h).
//!
//! What it does: asks once, answers with the route's output interface for a unicast
//! route, that the destination is this host's for a local route (the caller hands
//! such datagrams back to the local stack), and with the kernel's own error otherwise
//! (no route: `ENETUNREACH`; a source address that is not this host's: `EINVAL`).
//!
//! [`RouteWatch`] tells that some route changed (the kernel's route notifications),
//! so that entries can ask again.
//!
//! What it does not: say which routes changed (callers ask again for theirs), or
//! follow neighbour (ARP/NDP) changes, which `bpf_redirect_neigh` resolves per packet.

use std::io::{self, Read as _};
use std::net::IpAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

const NLMSG_ERROR: u16 = 2;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLM_F_REQUEST: u16 = 1;
const RTA_DST: u16 = 1;
const RTA_SRC: u16 = 2;
const RTA_OIF: u16 = 4;
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;
/// `struct nlmsghdr` and `struct rtmsg`.
const HEADER: usize = 16;
const RTMSG: usize = 12;

/// Where the kernel sends a datagram to an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Egress {
    /// The address is this host's: delivered locally, out of no interface.
    Local,
    /// Out of the interface of this index.
    Interface(u32),
}

/// Where a datagram from `from` (an address of this host) to `to` goes. Both of one
/// IP version.
pub(crate) fn egress(from: IpAddr, to: IpAddr) -> io::Result<Egress> {
    Resolver::new()?.egress(from, to)
}

/// A netlink socket for asking many routes in a row.
pub(crate) struct Resolver {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Resolver {
    pub(crate) fn new() -> io::Result<Self> {
        let socket = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(libc::NETLINK_ROUTE)),
        )?;
        // The kernel answers at once; a bound keeps a wedged query from holding the
        // forwarding thread that installs the entry.
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        Ok(Self {
            socket,
            seq: 0,
            buf: vec![0u8; 8192],
        })
    }

    /// As [`egress`].
    pub(crate) fn egress(&mut self, from: IpAddr, to: IpAddr) -> io::Result<Egress> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        // Unaddressed netlink datagrams go to the kernel.
        self.socket.send(&request(from, to, seq)?)?;
        // A late answer to an earlier question that timed out may come first.
        loop {
            let n = (&self.socket).read(&mut self.buf)?;
            if let Some(found) = find(self.buf.get(..n).unwrap_or_default(), seq) {
                return found;
            }
        }
    }
}

/// Route change notifications (`RTMGRP_IPV4_ROUTE`, `RTMGRP_IPV6_ROUTE`) of this
/// network namespace, read without blocking.
pub(crate) struct RouteWatch {
    socket: Socket,
}

impl RouteWatch {
    pub(crate) fn new() -> io::Result<Self> {
        const RTMGRP_IPV4_ROUTE: u32 = 0x40;
        const RTMGRP_IPV6_ROUTE: u32 = 0x400;
        let socket = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(libc::NETLINK_ROUTE)),
        )?;
        socket.set_nonblocking(true)?;
        crate::sys::bind_netlink(&socket, RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE)?;
        Ok(Self { socket })
    }

    /// Whether a route was added, changed or removed since the last call (reads
    /// every notification queued). A queue that overflowed counts as a change.
    pub(crate) fn changed(&self) -> bool {
        let mut buf = [0u8; 4096];
        let mut changed = false;
        loop {
            match (&self.socket).read(&mut buf) {
                Ok(_) => changed = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return changed,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ENOBUFS: notifications were lost; anything else: we cannot tell.
                Err(_) => return true,
            }
        }
    }
}

/// An `RTM_GETROUTE` request for the route from `from` to `to`.
fn request(from: IpAddr, to: IpAddr, seq: u32) -> io::Result<Vec<u8>> {
    let octets = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let family = match (from, to) {
        (IpAddr::V4(_), IpAddr::V4(_)) => libc::AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => libc::AF_INET6,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a route from one IP version to the other",
            ))
        }
    };
    let (src, dst) = (octets(from), octets(to));
    let bits = u8::try_from(dst.len() * 8).unwrap_or(u8::MAX);
    let mut m = Vec::with_capacity(HEADER + RTMSG + 2 * (4 + 16));
    // nlmsghdr: length (set below), type, flags, sequence, port id (0: the kernel
    // fills it in).
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&RTM_GETROUTE.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    m.extend_from_slice(&[u8::try_from(family).unwrap_or(0), bits, bits, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&0u32.to_ne_bytes());
    for (kind, data) in [(RTA_DST, dst), (RTA_SRC, src)] {
        // rtattr: length (header included), type, then the data; 4 or 16 bytes
        // need no padding.
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&data);
    }
    let total = u32::try_from(m.len()).unwrap_or(u32::MAX);
    m[..4].copy_from_slice(&total.to_ne_bytes());
    Ok(m)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the kernel's route answer: {what}"),
    )
}

/// Where the kernel's answer `reply` to request `seq` sends the datagram.
#[cfg(test)]
fn answer(reply: &[u8], seq: u32) -> io::Result<Egress> {
    find(reply, seq).unwrap_or_else(|| Err(invalid("no route in it")))
}

/// The answer to request `seq` in `reply`, if it holds one.
fn find(reply: &[u8], seq: u32) -> Option<io::Result<Egress>> {
    let mut rest = reply;
    while let Some(len) = u32_at(rest, 0) {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let Some(msg) = rest.get(..len).filter(|_| len >= HEADER) else {
            return Some(Err(invalid("a truncated message")));
        };
        if u32_at(msg, 8) == Some(seq) {
            let body = msg.get(HEADER..).unwrap_or_default();
            match u16_at(msg, 4) {
                Some(NLMSG_ERROR) => {
                    let errno = body
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, i32::from_ne_bytes);
                    return Some(Err(if errno < 0 {
                        io::Error::from_raw_os_error(-errno)
                    } else {
                        invalid("an acknowledgement instead of a route")
                    }));
                }
                Some(RTM_NEWROUTE) => return Some(route_oif(body)),
                _ => {}
            }
        }
        // Messages are padded to 4 bytes.
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

/// A local route, or `RTA_OIF` of a unicast route (`rtmsg` and its attributes).
fn route_oif(body: &[u8]) -> io::Result<Egress> {
    let kind = body
        .get(7)
        .copied()
        .ok_or_else(|| invalid("a short route"))?;
    if kind == RTN_LOCAL {
        return Ok(Egress::Local);
    }
    if kind != RTN_UNICAST {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a unicast route to another host (route type {kind})"),
        ));
    }
    let mut attrs = body.get(RTMSG..).unwrap_or_default();
    while let (Some(len), Some(kind)) = (u16_at(attrs, 0), u16_at(attrs, 2)) {
        let len = usize::from(len);
        if len < 4 {
            break;
        }
        if kind == RTA_OIF {
            return u32_at(attrs, 4)
                .map(Egress::Interface)
                .ok_or_else(|| invalid("a short RTA_OIF"));
        }
        attrs = attrs.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Err(invalid("a route without an output interface"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifindex_of(name: &str) -> u32 {
        std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// A reply as the kernel builds it: header, rtmsg of route type `kind`, attributes.
    fn reply(seq: u32, kind: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = vec![0; 4];
        m.extend_from_slice(&RTM_NEWROUTE.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&42u32.to_ne_bytes());
        m.extend_from_slice(&[2, 32, 32, 0, 254, 0, 0, kind, 0, 0, 0, 0]);
        for (t, data) in attrs {
            let len = 4 + data.len();
            m.extend_from_slice(&(len as u16).to_ne_bytes());
            m.extend_from_slice(&t.to_ne_bytes());
            m.extend_from_slice(data);
            m.resize(m.len().next_multiple_of(4), 0);
        }
        let total = m.len() as u32;
        m[..4].copy_from_slice(&total.to_ne_bytes());
        m
    }

    #[test]
    fn the_output_interface_is_read_past_other_attributes() {
        // RTA_TABLE (15), a 1-byte attribute that needs padding, then RTA_OIF.
        let m = reply(
            7,
            RTN_UNICAST,
            &[
                (15, &254u32.to_ne_bytes()[..]),
                (99, &[1][..]),
                (RTA_OIF, &5u32.to_ne_bytes()[..]),
            ],
        );
        assert_eq!(answer(&m, 7).unwrap(), Egress::Interface(5));
        assert!(answer(&m, 8).is_err(), "another request's answer");
        assert!(answer(&m[..m.len() - 3], 7).is_err(), "truncated");
        let local = reply(7, RTN_LOCAL, &[(RTA_OIF, &1u32.to_ne_bytes()[..])]);
        assert_eq!(answer(&local, 7).unwrap(), Egress::Local);
        let broadcast = reply(7, 3, &[(RTA_OIF, &1u32.to_ne_bytes()[..])]);
        assert_eq!(
            answer(&broadcast, 7).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn a_kernel_error_is_returned_as_its_errno() {
        let mut m = vec![0; 4];
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&3u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-libc::ENETUNREACH).to_ne_bytes());
        let total = m.len() as u32;
        m[..4].copy_from_slice(&total.to_ne_bytes());
        assert_eq!(
            answer(&m, 3).unwrap_err().raw_os_error(),
            Some(libc::ENETUNREACH)
        );
    }

    /// This host's routing table: the default route's interface (as `ip route get`
    /// names it) for an address on the internet, from the address the kernel would
    /// pick itself.
    #[test]
    fn the_kernel_names_the_interface_of_a_route() {
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let to: IpAddr = "192.0.2.1".parse().unwrap();
        let Ok(()) = probe.connect((to, 9)) else {
            panic!("this test needs an IPv4 default route (or one to 192.0.2.0/24)");
        };
        let from = probe.local_addr().unwrap().ip();
        let out = std::process::Command::new("ip")
            .args([
                "-o",
                "route",
                "get",
                &to.to_string(),
                "from",
                &from.to_string(),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let dev = text
            .split_whitespace()
            .skip_while(|w| *w != "dev")
            .nth(1)
            .unwrap_or_else(|| panic!("no dev in {text:?}"));
        assert_eq!(
            egress(from, to).unwrap(),
            Egress::Interface(ifindex_of(dev))
        );
        // This host's own addresses are local, loopback or not.
        assert_eq!(egress(from, from).unwrap(), Egress::Local);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(egress(lo, lo).unwrap(), Egress::Local);
        // A source that is not this host's is refused by the kernel.
        let stranger: IpAddr = "198.51.100.77".parse().unwrap();
        assert!(egress(stranger, to).is_err());
        assert_eq!(
            egress(from, "::1".parse().unwrap()).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
