//! The program on this machine's loopback, IPv4 (127.0.0.1) and IPv6 (::1): it must
//! load (the test script installs clang, and these tests run as root), and ::1 must be
//! configured; a machine where either fails fails here rather than skipping.

use std::io::Read as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use mediagate_ebpf::{FastPath, FlowKey, FlowTarget};
use socket2::{Domain, Protocol, Socket, Type};

const V4: &str = "127.0.0.1";
const V6: &str = "::1";

fn at(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

fn bind_on(ip: &str) -> UdpSocket {
    let ip: IpAddr = ip.parse().unwrap();
    let s = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| {
        panic!("cannot bind on {ip} ({e}): IPv6 tests need ::1 on lo (`ip -6 addr show lo`)")
    });
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn bind() -> UdpSocket {
    bind_on(V4)
}

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(b"some media payload");
    p
}

/// The next datagram at `s`, waiting up to 10 s: delivery on loopback goes through a
/// softirq, which a loaded machine may run late.
fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    recv_for(s, Duration::from_secs(10))
}

/// True when nothing arrives at `s` within 300 ms (for what must not be delivered).
fn silent(s: &UdpSocket) -> bool {
    recv_for(s, Duration::from_millis(300)).is_none()
}

fn recv_for(s: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 2048];
    s.recv_from(&mut buf)
        .ok()
        .map(|(n, a)| (buf[..n].to_vec(), a))
}

/// Phone A, phone B and the relay's ports R1 and R2, and the entry that forwards what
/// A sends to R1 from R2 to B.
struct Hop {
    a: UdpSocket,
    b: UdpSocket,
    r1: UdpSocket,
    r2: UdpSocket,
    key: FlowKey,
}

/// A [`Hop`] on `ip` whose entry forwards RTP of `rtp_ssrc` (`None`: anything).
fn hop(fast: &mut FastPath, ip: &str, rtp_ssrc: Option<u32>) -> Hop {
    let bind = || bind_on(ip);
    let (a, b, r1, r2) = (bind(), bind(), bind(), bind());
    let key = FlowKey {
        from: at(&a),
        to: at(&r1),
    };
    fast.insert(
        key,
        FlowTarget {
            from: at(&r2),
            to: at(&b),
            rtp_ssrc,
        },
    )
    .unwrap();
    Hop { a, b, r1, r2, key }
}

/// A: phone sending to relay port R1; the entry sends it on from relay port R2 to
/// phone B. B receives it byte-exact from R2, R1's socket never sees it, and the
/// entry counts it. A foreign SSRC and RTCP go to R1's socket untouched.
#[test]
fn a_matching_datagram_is_rewritten_and_delivered_and_the_rest_go_up_untouched() {
    rewritten_and_delivered(V4);
}

/// As above, in IPv6.
#[test]
fn ipv6_a_matching_datagram_is_rewritten_and_delivered_and_the_rest_go_up_untouched() {
    rewritten_and_delivered(V6);
}

fn rewritten_and_delivered(ip: &str) {
    let mut fast = FastPath::load().expect("the eBPF program must load here");
    assert!(
        fast.interfaces().iter().any(|i| i == "lo"),
        "{:?}",
        fast.interfaces()
    );
    let Hop { a, b, r1, r2, key } = hop(&mut fast, ip, Some(0xdead_beef));
    for seq in 0..5 {
        a.send_to(&rtp(0xdead_beef, seq), r1.local_addr().unwrap())
            .unwrap();
        let (data, from) = recv(&b).expect("forwarded in the kernel");
        assert_eq!(data, rtp(0xdead_beef, seq));
        assert_eq!(from, r2.local_addr().unwrap());
    }
    assert!(silent(&r1), "the relay socket saw a forwarded packet");
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
    let stranger = bind_on(ip);
    stranger
        .send_to(&rtp(0xdead_beef, 1), r1.local_addr().unwrap())
        .unwrap();
    assert_eq!(recv(&r1).unwrap().1, stranger.local_addr().unwrap());
    assert!(silent(&b));
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
    let Hop { a, b, r1, r2, .. } = hop(&mut fast, V4, None);
    a.send_to(b"t38 udptl", r1.local_addr().unwrap()).unwrap();
    assert_eq!(
        recv(&b).unwrap(),
        (b"t38 udptl".to_vec(), r2.local_addr().unwrap())
    );
    drop(fast);
    a.send_to(b"after", r1.local_addr().unwrap()).unwrap();
    assert_eq!(recv(&r1).unwrap().0, b"after");
    assert!(silent(&b));
}

/// The kernel does not bridge: an entry mixing IPv4 and IPv6 is refused.
#[test]
fn a_bridging_entry_is_refused() {
    let mut fast = FastPath::load().expect("the eBPF program must load here");
    let (a, r1, r2) = (bind(), bind(), bind());
    let b6 = bind_on(V6);
    let refused = fast.insert(
        FlowKey {
            from: at(&a),
            to: at(&r1),
        },
        FlowTarget {
            from: at(&r2),
            to: at(&b6),
            rtp_ssrc: None,
        },
    );
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    assert!(fast.is_empty());
}

/// The one's-complement sum of `data` as 16-bit words.
fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for chunk in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The IPv6 UDP checksum of `udp` (header with a zero checksum field, and payload).
fn udp6_checksum(from: &Ipv6Addr, to: &Ipv6Addr, udp: &[u8]) -> u16 {
    let mut acc = sum16(&from.octets(), 0);
    acc = sum16(&to.octets(), acc);
    acc += udp.len() as u32 + 17;
    match fold(sum16(udp, acc)) {
        0 => 0xffff,
        sum => sum,
    }
}

fn udp6(from: &SocketAddr, to: &SocketAddr, payload: &[u8], checksum: bool) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&to.port().to_be_bytes());
    udp.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    if checksum {
        let (IpAddr::V6(f), IpAddr::V6(t)) = (from.ip(), to.ip()) else {
            unreachable!("IPv6 addresses")
        };
        let sum = udp6_checksum(&f, &t, &udp);
        udp[6..8].copy_from_slice(&sum.to_be_bytes());
    }
    udp
}

/// IPv6 datagrams sent raw (a complete checksum, no offload to patch later) leave the
/// program with a checksum that holds for the new ports (on ::1 the addresses stay
/// the same; the relay's veth test checks a rewrite of the addresses); one without a
/// checksum (invalid in IPv6) is not forwarded, nor given one.
#[test]
fn ipv6_checksums_are_updated_and_a_missing_one_is_not_forwarded() {
    let mut fast = FastPath::load().expect("the eBPF program must load here");
    let Hop { a, b, r1, r2, key } = hop(&mut fast, V6, Some(0xdead_beef));
    // The raw socket's UDP header names A's port as the source: the program sees A's
    // 5-tuple.
    let raw = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::UDP)).unwrap();
    let sniffer = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::UDP)).unwrap();
    sniffer
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Raw IPv6 sockets take addresses without ports (the ports are in our UDP header).
    let no_port = |s: &UdpSocket| -> socket2::SockAddr { SocketAddr::new(at(s).ip(), 0).into() };
    raw.bind(&no_port(&a)).unwrap();
    let payload = rtp(0xdead_beef, 1);
    raw.send_to(&udp6(&at(&a), &at(&r1), &payload, true), &no_port(&r1))
        .unwrap();
    assert_eq!(recv(&b).expect("forwarded"), (payload.clone(), at(&r2)));
    // The sniffer sees UDP header and payload (no IPv6 header) of every UDP datagram
    // on the host: find the forwarded one and check its checksum against the new
    // addresses.
    let mut buf = [0u8; 2048];
    let seen = loop {
        let n = (&sniffer).read(&mut buf).expect("the sniffer saw it");
        let bytes = buf[..n].to_vec();
        if bytes.len() == 8 + payload.len()
            && bytes[8..] == payload[..]
            && bytes[0..2] == at(&r2).port().to_be_bytes()
        {
            break bytes;
        }
    };
    let mut zeroed = seen.clone();
    zeroed[6..8].copy_from_slice(&[0, 0]);
    let (IpAddr::V6(from), IpAddr::V6(to)) = (at(&r2).ip(), at(&b).ip()) else {
        unreachable!()
    };
    assert_eq!(
        u16::from_be_bytes([seen[6], seen[7]]),
        udp6_checksum(&from, &to, &zeroed),
        "{seen:02x?}"
    );
    assert_eq!(fast.counters(key).unwrap().packets, 1);

    // No checksum: left to the stack (which drops it), not forwarded, not counted.
    raw.send_to(
        &udp6(&at(&a), &at(&r1), &rtp(0xdead_beef, 2), false),
        &no_port(&r1),
    )
    .unwrap();
    assert!(silent(&b), "a datagram without checksum was forwarded");
    assert_eq!(fast.counters(key).unwrap().packets, 1);
}

/// Entries the relay has with 1,000 calls (two directions of RTP and RTCP each).
const MANY: u16 = 4000;

/// One read of many entries costs a few `BPF_MAP_LOOKUP_BATCH` calls instead of one
/// lookup each, and shows exactly what the per-entry lookups show. Prints both
/// timings (the figure in the relay's sync cost).
#[test]
fn counters_of_thousands_of_entries_are_read_in_a_few_system_calls() {
    let mut fast = FastPath::load().expect("the eBPF program must load here");
    let relay: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let keys: Vec<FlowKey> = (0..MANY)
        .map(|i| FlowKey {
            from: SocketAddr::new(V4.parse().unwrap(), 10_000 + i),
            to: relay,
        })
        .collect();
    for key in &keys {
        fast.insert(
            *key,
            FlowTarget {
                from: "127.0.0.1:40002".parse().unwrap(),
                to: "127.0.0.1:40004".parse().unwrap(),
                rtp_ssrc: Some(1),
            },
        )
        .unwrap();
    }
    // One entry that has forwarded something.
    let Hop {
        a,
        b,
        r1,
        r2: _r2,
        key: live,
    } = hop(&mut fast, V4, Some(9));
    for seq in 0..3 {
        a.send_to(&rtp(9, seq), at(&r1)).unwrap();
        recv(&b).expect("forwarded in the kernel");
    }

    let reader = fast.reader().unwrap();
    // The best of a few rounds: the machine may be busy with other work.
    let best = |f: &mut dyn FnMut()| {
        (0..5)
            .map(|_| {
                let started = std::time::Instant::now();
                f();
                started.elapsed()
            })
            .min()
            .unwrap()
    };
    let mut one_by_one = Vec::new();
    let per_entry = best(&mut || one_by_one = keys.iter().map(|k| fast.counters(*k)).collect());
    let mut snapshot = Default::default();
    let batched = best(&mut || snapshot = reader.snapshot_sized(keys.len()).unwrap());
    eprintln!(
        "{} entries: one lookup each {per_entry:?} ({} system calls), batched {batched:?} ({} system calls)",
        keys.len() + 1,
        keys.len(),
        snapshot.system_calls()
    );

    assert_eq!(snapshot.len(), keys.len() + 1);
    for (key, alone) in keys.iter().zip(one_by_one) {
        assert_eq!(snapshot.get(*key), alone);
        assert_eq!(alone.unwrap().packets, 0);
    }
    let c = snapshot.get(live).unwrap();
    assert_eq!((c.packets, c.last_seq), (3, Some(2)));
    assert!(
        snapshot.system_calls() <= usize::from(MANY) / 1024 + 2,
        "{} system calls",
        snapshot.system_calls()
    );
    assert!(snapshot
        .get(FlowKey {
            from: at(&b),
            to: at(&r1)
        })
        .is_none());
    drop(fast);
    // The reader holds the map, not the program: the map outlives the links but
    // forwards nothing.
    let unsized_read = reader.snapshot().unwrap();
    assert_eq!(unsized_read.len(), keys.len() + 1);
    assert_eq!(unsized_read.system_calls(), snapshot.system_calls());
}

/// Removing an entry while its stream floods: every datagram the kernel forwarded
/// (the far phone received) is in the final counters, none lost between a read and
/// the removal.
#[test]
fn a_removal_under_load_returns_every_datagram_the_kernel_forwarded() {
    let mut fast = FastPath::load().expect("the eBPF program must load here");
    let Hop {
        a,
        b,
        r1,
        r2: _r2,
        key,
    } = hop(&mut fast, V4, Some(5));
    // Room for every datagram forwarded before the removal (a few thousand) even while
    // the receiver waits for a CPU: on a busy machine the default buffer overflowed,
    // and a datagram dropped there is forwarded and counted but never received.
    socket2::SockRef::from(&b)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = {
        let stop = std::sync::Arc::clone(&stop);
        let b = b.try_clone().unwrap();
        b.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        std::thread::spawn(move || {
            let mut got = 0u64;
            let mut buf = [0u8; 256];
            // After the stop, datagrams the kernel forwarded may still wait in a CPU's
            // backlog for their softirq: read on until half a second passes quietly.
            let mut quiet = 0u32;
            loop {
                match b.recv(&mut buf) {
                    Ok(_) => {
                        got += 1;
                        quiet = 0;
                    }
                    Err(_) if stop.load(std::sync::atomic::Ordering::SeqCst) => {
                        quiet += 1;
                        if quiet >= 25 {
                            return got;
                        }
                    }
                    Err(_) => {}
                }
            }
        })
    };
    let sender = {
        let stop = std::sync::Arc::clone(&stop);
        let to = at(&r1);
        std::thread::spawn(move || {
            let mut seq = 0u16;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = a.send_to(&rtp(5, seq), to);
                seq = seq.wrapping_add(1);
                if seq % 64 == 0 {
                    // Let the receiver keep up: a datagram it drops is forwarded
                    // and counted but never received.
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fast.counters(key).map_or(0, |c| c.packets) < 2000 {
        assert!(std::time::Instant::now() < deadline, "too little forwarded");
        std::thread::sleep(Duration::from_millis(5));
    }
    let last = fast.remove(key).expect("the entry's last counters");
    // The flood goes on into the relay's socket for a moment, then everything stops.
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    sender.join().unwrap();
    let received = receiver.join().unwrap();
    assert!(fast.counters(key).is_none());
    assert_eq!(
        received, last.packets,
        "the far phone received what the final counters say"
    );
}
