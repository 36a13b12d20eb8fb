//! A connected twin of a bound UDP socket: a second socket on the same local address and
//! port, connected to one peer (`SO_REUSEPORT`, `connect(2)`).
//!
//! Why: a relay sends each forward to the one address its stream latched to. Sent from
//! an unconnected socket, every datagram pays a route lookup and the shared IP-ID
//! generator; from a connected socket the route is cached and the ID comes from the
//! socket. The original socket stays as it was, so datagrams from any other source
//! (a stranger, the phone after a NAT rebinding) still reach the code that judges them:
//! the kernel hands a datagram to the connected twin only when it comes from exactly its
//! peer, and to the original otherwise.
//!
//! What it does not: decide when a twin is worth having, or keep it pointed at the right
//! peer (the caller reconnects it with [`std::net::UdpSocket::connect`]).

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

/// Opens a non-blocking socket bound to `original`'s local address and connected to
/// `peer`.
///
/// `original` gets `SO_REUSEPORT` here, after it was bound alone: a port is still
/// claimed exclusively when it is allocated, so another program (or another relay on
/// the same host) cannot be handed it; only a socket of the same user that asks for
/// this exact port with `SO_REUSEPORT` could join it afterwards.
pub fn connected_twin(original: &UdpSocket, peer: SocketAddr) -> io::Result<UdpSocket> {
    let local = original.local_addr()?;
    SockRef::from(original).set_reuse_port(true)?;
    // socket2 opens it close-on-exec.
    let twin = Socket::new(Domain::for_address(local), Type::DGRAM.nonblocking(), None)?;
    twin.set_reuse_port(true)?;
    twin.bind(&SockAddr::from(local))?;
    let twin = UdpSocket::from(twin);
    twin.connect(peer)?;
    Ok(twin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair() -> (UdpSocket, UdpSocket, UdpSocket) {
        let original = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let twin = connected_twin(&original, peer.local_addr().unwrap()).unwrap();
        for s in [&original, &twin] {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
        }
        (original, twin, peer)
    }

    #[test]
    fn the_peer_reaches_the_twin_and_everyone_else_the_original() {
        let (original, twin, peer) = pair();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = original.local_addr().unwrap();
        assert_eq!(twin.local_addr().unwrap(), port);
        let mut buf = [0u8; 16];
        for round in 0..20u8 {
            peer.send_to(&[round], port).unwrap();
            stranger.send_to(&[100 + round], port).unwrap();
            let (n, from) = twin.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..n], from),
                (&[round][..], peer.local_addr().unwrap())
            );
            let (n, from) = original.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..n], from),
                (&[100 + round][..], stranger.local_addr().unwrap())
            );
        }
    }

    #[test]
    fn the_twin_sends_from_the_shared_port() {
        let (original, twin, peer) = pair();
        twin.send(b"hi").unwrap();
        peer.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"hi"[..], original.local_addr().unwrap())
        );
    }

    #[test]
    fn reconnecting_moves_the_twin_to_the_new_peer() {
        let (original, twin, old) = pair();
        let new = UdpSocket::bind("127.0.0.1:0").unwrap();
        twin.connect(new.local_addr().unwrap()).unwrap();
        let port = original.local_addr().unwrap();
        old.send_to(b"old", port).unwrap();
        new.send_to(b"new", port).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = twin.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"new");
        let (n, _) = original.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"old");
    }

    #[test]
    fn a_port_allocated_alone_still_refuses_other_binders() {
        let original = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = original.local_addr().unwrap();
        // Before any twin: an ordinary bind fails, as the allocator relies on.
        assert!(UdpSocket::bind(port).is_err());
        let _twin = connected_twin(&original, "127.0.0.1:9".parse().unwrap()).unwrap();
        // After: still refused to a socket that does not ask for SO_REUSEPORT.
        assert!(UdpSocket::bind(port).is_err());
    }

    #[test]
    fn ipv6_twins_work_too() {
        let original = crate::test_env::bind_ipv6("[::1]:0");
        let peer = UdpSocket::bind("[::1]:0").unwrap();
        let twin = connected_twin(&original, peer.local_addr().unwrap()).unwrap();
        twin.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        peer.send_to(b"six", original.local_addr().unwrap())
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = twin.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"six");
    }
}
