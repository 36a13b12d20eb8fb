//! The program on this machine's loopback: it must load (the test script installs
//! clang, and these tests run as root); a machine where it cannot fails here rather
//! than skipping.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use mediagate_ebpf::{FastPath, FlowKey, FlowTarget};

fn v4(s: &UdpSocket) -> SocketAddrV4 {
    match s.local_addr().unwrap() {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("bound on 127.0.0.1"),
    }
}

fn bind() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(b"some media payload");
    p
}

fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    s.recv_from(&mut buf)
        .ok()
        .map(|(n, a)| (buf[..n].to_vec(), a))
}

/// A: phone sending to relay port R1; the entry sends it on from relay port R2 to
/// phone B. B receives it byte-exact from R2, R1's socket never sees it, and the
/// entry counts it. A foreign SSRC and RTCP go to R1's socket untouched.
#[test]
fn a_matching_datagram_is_rewritten_and_delivered_and_the_rest_go_up_untouched() {
    let mut fast = FastPath::load().expect("the eBPF program must load here");
    assert!(
        fast.interfaces().iter().any(|i| i == "lo"),
        "{:?}",
        fast.interfaces()
    );
    let (a, b, r1, r2) = (bind(), bind(), bind(), bind());
    let key = FlowKey {
        from: v4(&a),
        to: v4(&r1),
    };
    fast.insert(
        key,
        FlowTarget {
            from: v4(&r2),
            to: v4(&b),
            rtp_ssrc: Some(0xdead_beef),
            local: true,
        },
    )
    .unwrap();
    for seq in 0..5 {
        a.send_to(&rtp(0xdead_beef, seq), r1.local_addr().unwrap())
            .unwrap();
        let (data, from) = recv(&b).expect("forwarded in the kernel");
        assert_eq!(data, rtp(0xdead_beef, seq));
        assert_eq!(from, r2.local_addr().unwrap());
    }
    assert!(
        recv(&r1).is_none(),
        "the relay socket saw a forwarded packet"
    );
    let c = fast.counters(key).unwrap();
    assert_eq!(c.packets, 5);
    assert_eq!(c.bytes, 5 * rtp(0, 0).len() as u64);
    let age = mediagate_ebpf::monotonic_ns() - c.last_ns.unwrap();
    assert!(age < 5_000_000_000, "last seen {age} ns ago");
    assert_eq!(c.last_seq, Some(4));

    // Another SSRC, and RTCP (a receiver report), reach the relay's socket as sent.
    a.send_to(&rtp(7, 9), r1.local_addr().unwrap()).unwrap();
    assert_eq!(recv(&r1).unwrap(), (rtp(7, 9), a.local_addr().unwrap()));
    let rr = [0x80, 201, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    a.send_to(&rr, r1.local_addr().unwrap()).unwrap();
    assert_eq!(recv(&r1).unwrap().0, rr);
    // A stranger (another source port) is not forwarded either.
    let stranger = bind();
    stranger
        .send_to(&rtp(0xdead_beef, 1), r1.local_addr().unwrap())
        .unwrap();
    assert_eq!(recv(&r1).unwrap().1, stranger.local_addr().unwrap());
    assert!(recv(&b).is_none());
    assert_eq!(fast.counters(key).unwrap().packets, 5);

    let last = fast.remove(key).unwrap();
    assert_eq!(last.packets, 5);
    assert!(fast.counters(key).is_none());
    a.send_to(&rtp(0xdead_beef, 6), r1.local_addr().unwrap())
        .unwrap();
    assert!(recv(&r1).is_some(), "a removed entry still forwards");
}

/// The opaque (UDPTL) entry forwards any datagram, and dropping the loader detaches
/// the program: nothing forwards afterwards.
#[test]
fn an_opaque_entry_forwards_anything_until_the_loader_is_dropped() {
    let mut fast = FastPath::load().expect("the eBPF program must load here");
    let (a, b, r1, r2) = (bind(), bind(), bind(), bind());
    fast.insert(
        FlowKey {
            from: v4(&a),
            to: v4(&r1),
        },
        FlowTarget {
            from: v4(&r2),
            to: v4(&b),
            rtp_ssrc: None,
            local: true,
        },
    )
    .unwrap();
    a.send_to(b"t38 udptl", r1.local_addr().unwrap()).unwrap();
    assert_eq!(
        recv(&b).unwrap(),
        (b"t38 udptl".to_vec(), r2.local_addr().unwrap())
    );
    drop(fast);
    a.send_to(b"after", r1.local_addr().unwrap()).unwrap();
    assert_eq!(recv(&r1).unwrap().0, b"after");
    assert!(recv(&b).is_none());
}
