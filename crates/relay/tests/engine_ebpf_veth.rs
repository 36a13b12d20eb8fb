//! The eBPF fast path between network namespaces: each phone in a namespace of its
//! own, joined to the relay's (this process's) by a veth pair whose relay end forwards
//! (`engine_ebpf_noforward.rs` has them not forwarding), so the kernel path sends out
//! of the other veth: the route's interface, `bpf_redirect_neigh` with the neighbour's
//! MAC address.
//! A datagram the phone sends from a raw socket carries a complete UDP checksum (no
//! offload), so the far phone's raw socket checks the program's checksum updates.
//!
//! Across the same veth pairs: a stranger in a third namespace floods a call's ports
//! (nothing forwarded, nothing latched), a phone's NAT mapping changes (re-latched,
//! and the kernel entry follows), a call silent in the kernel path times out, and the
//! `ng` query and the record count exactly what each phone sent, and the route to a
//! phone moves to another interface mid-call (the kernel entry follows). Each test checks the
//! relay's user-space and kernel counters, so that media which fell back to user space
//! fails it.

mod ebpf_kit;

use std::io::Read as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use ebpf_kit::netns::PhoneNets;
use ebpf_kit::*;
use mediagate_ng::bencode::Value;
use socket2::{Domain, Protocol, Socket, Type};

/// A tag for a test's namespaces and subnets: `offset` apart from the other tests of
/// this binary, which run at once.
fn tag(offset: u32) -> u32 {
    (std::process::id() + offset) % 10_000
}

/// The one's-complement sum of `data` as 16-bit words.
fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        acc += u32::from(word);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An IPv4 + UDP datagram with both checksums computed in full.
fn ipv4_udp(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&from.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    let ip_sum = fold(sum16(&p, 0));
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let mut udp = Vec::new();
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&to.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let udp_sum = fold(sum16(&udp, pseudo(&p[12..20], udp_len)));
    udp[6..8].copy_from_slice(&udp_sum.to_be_bytes());
    p.extend_from_slice(&udp);
    p
}

fn pseudo(addrs: &[u8], udp_len: usize) -> u32 {
    sum16(addrs, 17 + udp_len as u32)
}

/// Both checksums of a received IPv4 + UDP datagram verify.
fn checksums_hold(p: &[u8]) -> bool {
    let ihl = usize::from(p[0] & 0xf) * 4;
    let udp = &p[ihl..];
    fold(sum16(&p[..ihl], 0)) == 0 && fold(sum16(udp, pseudo(&p[12..20], udp.len()))) == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_between_namespaces_is_routed_in_the_kernel_with_true_checksums() {
    let net = PhoneNets::new(tag(0), 2, true);
    let (relay, relay_ip) = net.relay((54000, 54099), false, |_| {}).await;
    let interfaces = relay.kernel_forwarding().unwrap();
    assert!(interfaces.contains(&net.link(1)), "{interfaces:?}");
    let b = net.phone_ip(1);
    let sniffer = net.inside(1, || {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s
    });
    let raw_sender = net.inside(0, || {
        Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .unwrap()
    });
    let mut ng = Ng::of(&relay).await;
    let p = net.phones(&mut ng, "veth-1", relay_ip).await;
    let caller_addr = p.caller.local_addr().unwrap();
    let in_user_space = relay.forwarded_packets();
    p.send_both_ways(1..=50).await;
    p.assert_received_both_ways(1..=50).await;
    assert_eq!(
        relay.forwarded_packets(),
        in_user_space,
        "routed in the kernel, not through the relay's sockets"
    );

    // A datagram with a complete checksum (sent raw, no offload) arrives at the callee
    // with both checksums still true after the rewrite.
    let SocketAddr::V4(from) = caller_addr else {
        unreachable!()
    };
    let SocketAddr::V4(to) = p.caller_relay else {
        unreachable!()
    };
    let datagram = ipv4_udp(from, to, &rtp(CALLER_SSRC, 51));
    let mut buf = [0u8; 2048];
    // What the sniffer saw of the media so far.
    sniffer.set_nonblocking(true).unwrap();
    while (&sniffer).read(&mut buf).is_ok() {}
    sniffer.set_nonblocking(false).unwrap();
    raw_sender
        .send_to(&datagram, &SocketAddr::V4(to).into())
        .unwrap();
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await,
        [(rtp(CALLER_SSRC, 51), p.callee_relay)],
        "the callee's stack accepted it"
    );
    let seen = loop {
        let n = (&sniffer).read(&mut buf).expect("the sniffer saw it");
        let bytes = &buf[..n];
        if bytes.len() > 28 && bytes[28..] == rtp(CALLER_SSRC, 51)[..] {
            break bytes.to_vec();
        }
    };
    assert!(checksums_hold(&seen), "{seen:02x?}");
    assert_eq!(seen[12..16], net.relay_ip(0).octets(), "from the relay");
    assert_eq!(seen[16..20], b.octets(), "to the callee");
    assert_eq!(relay.forwarded_packets(), in_user_space);
}

/// Polls the relay's attached interfaces until `done` holds of them (up to 8 s: the
/// relay looks every 2 s).
async fn until_interfaces(
    relay: &mediagate_relay::engine::Relay,
    done: impl Fn(&[String]) -> bool,
) {
    for _ in 0..80 {
        if done(&relay.kernel_forwarding().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("interfaces now: {:?}", relay.kernel_forwarding());
}

/// The callee's namespace and veth appear after the relay started: the relay attaches
/// the program to the new veth, so the callee's media (which comes in on it) is
/// forwarded in the kernel too; when the veth vanishes, the relay lets go of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interface_created_after_the_start_is_attached_and_forwards_in_the_kernel() {
    // A tag of its own: the test above runs at the same time.
    let net = PhoneNets::new(tag(1), 1, true);
    let (relay, relay_ip) = net.relay((54100, 54199), false, |_| {}).await;
    assert!(!relay.kernel_forwarding().unwrap().contains(&net.link(1)));
    net.add_side(1);
    until_interfaces(&relay, |i| i.contains(&net.link(1))).await;

    let mut ng = Ng::of(&relay).await;
    let p = net.phones(&mut ng, "veth-late", relay_ip).await;
    let in_user_space = relay.forwarded_packets();
    for seq in 1..=30 {
        p.callee
            .send_to(&rtp(CALLEE_SSRC, seq), p.callee_relay)
            .await
            .unwrap();
    }
    assert_eq!(
        recv_all(&p.caller, Duration::from_millis(300)).await,
        expected(CALLEE_SSRC, 1..=30, p.caller_relay)
    );
    assert_eq!(
        relay.forwarded_packets(),
        in_user_space,
        "forwarded in the kernel from the new veth"
    );

    // The callee's socket would keep its namespace, and so the veth, alive.
    drop(p);
    net.remove_side(1);
    until_interfaces(&relay, |i| !i.contains(&net.link(1))).await;
}

/// The IPv6 UDP checksum over `udp` (its checksum field zeroed) between `from` and `to`.
fn udp6_checksum(from: &Ipv6Addr, to: &Ipv6Addr, udp: &[u8]) -> u16 {
    let acc = sum16(&to.octets(), sum16(&from.octets(), 17 + udp.len() as u32));
    match fold(sum16(udp, acc)) {
        0 => 0xffff,
        sum => sum,
    }
}

/// A UDP header and `payload`, checksummed for IPv6 between `from` and `to`.
fn udp6(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&to.port().to_be_bytes());
    udp.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let (IpAddr::V6(f), IpAddr::V6(t)) = (from.ip(), to.ip()) else {
        unreachable!("IPv6 addresses")
    };
    let sum = udp6_checksum(&f, &t, &udp);
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    udp
}

/// As the IPv4 case, in IPv6: the IPv6 route, neighbour discovery, redirect, and
/// a UDP checksum (mandatory in IPv6) that holds after the rewrite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_media_between_namespaces_is_routed_in_the_kernel_with_true_checksums() {
    let net = PhoneNets::new(tag(2), 2, true);
    let (relay, relay_ip) = net.relay((54200, 54299), true, |_| {}).await;
    let (a, b) = (net.phone_ip6(0), net.phone_ip6(1));
    let sniffer = net.inside(1, || {
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::UDP)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s
    });
    let raw_sender = net.inside(0, move || {
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::UDP)).unwrap();
        s.bind(&SocketAddr::new(IpAddr::V6(a), 0).into()).unwrap();
        s
    });
    let mut ng = Ng::of(&relay).await;
    let p = net.phones(&mut ng, "veth-6", relay_ip).await;
    let caller_addr = p.caller.local_addr().unwrap();
    let in_user_space = relay.forwarded_packets();
    p.send_both_ways(1..=50).await;
    p.assert_received_both_ways(1..=50).await;
    assert_eq!(
        relay.forwarded_packets(),
        in_user_space,
        "routed in the kernel, not through the relay's sockets"
    );

    // A datagram with a complete checksum (sent raw, no offload) arrives with a
    // checksum that holds for the new addresses and ports.
    let payload = rtp(CALLER_SSRC, 51);
    let mut buf = [0u8; 2048];
    sniffer.set_nonblocking(true).unwrap();
    while (&sniffer).read(&mut buf).is_ok() {}
    sniffer.set_nonblocking(false).unwrap();
    // Raw IPv6 sockets take the address without a port (it is in our UDP header).
    let to_relay = SocketAddr::new(p.caller_relay.ip(), 0);
    raw_sender
        .send_to(
            &udp6(caller_addr, p.caller_relay, &payload),
            &to_relay.into(),
        )
        .unwrap();
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await,
        [(payload.clone(), p.callee_relay)],
        "the callee's stack accepted it"
    );
    // The sniffer reads UDP header and payload (no IPv6 header).
    let seen = loop {
        let n = (&sniffer).read(&mut buf).expect("the sniffer saw it");
        if n == 8 + payload.len() && buf[8..n] == payload[..] {
            break buf[..n].to_vec();
        }
    };
    let mut zeroed = seen.clone();
    zeroed[6..8].copy_from_slice(&[0, 0]);
    assert_eq!(
        seen[0..2],
        p.callee_relay.port().to_be_bytes(),
        "from the relay port"
    );
    assert_eq!(
        u16::from_be_bytes([seen[6], seen[7]]),
        udp6_checksum(&net.relay_ip6(0), &b, &zeroed),
        "{seen:02x?}"
    );
    assert_eq!(relay.forwarded_packets(), in_user_space);
}

/// `rtp(ssrc, seq)` cut to a length that varies with `seq` (13 to 172 bytes), so that
/// byte counts say more than packet counts times one size.
fn rtp_sized(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = rtp(ssrc, seq);
    p.truncate(13 + usize::from(seq) * 37 % 160);
    p
}

/// The first RTP stream of `tag`'s party, from an `ng` query reply.
fn query_stream<'a>(q: &'a Value, tag: &str) -> &'a Value {
    let medias = q
        .get("tags")
        .and_then(|t| t.get(tag))
        .and_then(|t| t.get("medias"))
        .and_then(Value::as_list)
        .unwrap_or_else(|| panic!("tag {tag} in {q:?}"));
    &medias[0].get("streams").and_then(Value::as_list).unwrap()[0]
}

/// `stats` of the RTP stream that `tag`'s party sends to, from an `ng` query reply.
fn query_stats<'a>(q: &'a Value, tag: &str) -> &'a Value {
    query_stream(q, tag).get("stats").unwrap()
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap())
}

/// A stranger in a third namespace floods both relay ports of a call whose media is in
/// the kernel, with the phones' own SSRCs, while the phones talk: none of it reaches a
/// phone, nothing latches to it, nothing comes back to it, and the phones' media stays
/// in the kernel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_flood_across_veth_is_neither_forwarded_nor_latched() {
    const FLOOD: u16 = 4;
    let net = PhoneNets::new(tag(3), 3, true);
    let (relay, relay_ip) = net.relay((54300, 54399), false, |_| {}).await;
    let interfaces = relay.kernel_forwarding().unwrap();
    assert!(interfaces.contains(&net.link(2)), "{interfaces:?}");
    let mut ng = Ng::of(&relay).await;
    let p = net.phones(&mut ng, "veth-stranger", relay_ip).await;
    let stranger = net.socket(2, relay_ip.is_ipv6());
    let in_user_space = relay.forwarded_packets();
    for seq in 1..=50 {
        p.caller
            .send_to(&rtp(CALLER_SSRC, seq), p.caller_relay)
            .await
            .unwrap();
        p.callee
            .send_to(&rtp(CALLEE_SSRC, seq), p.callee_relay)
            .await
            .unwrap();
        // Four to each port per phone packet, with sequence numbers far from the
        // phones': no evidence for a re-latch, however long the phones were quiet.
        for k in 0..FLOOD {
            let seq = 30_000 + seq * FLOOD + k;
            stranger
                .send_to(&rtp(CALLER_SSRC, seq), p.caller_relay)
                .await
                .unwrap();
            stranger
                .send_to(&rtp(CALLEE_SSRC, seq), p.callee_relay)
                .await
                .unwrap();
        }
    }
    p.assert_received_both_ways(1..=50).await;
    assert!(recv_all(&stranger, Duration::from_millis(100))
        .await
        .is_empty());

    // Still latched to the phones: their next packets go through the kernel.
    p.caller
        .send_to(&rtp(CALLER_SSRC, 51), p.caller_relay)
        .await
        .unwrap();
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(200)).await,
        [(rtp(CALLER_SSRC, 51), p.callee_relay)]
    );
    let (user, kernel) = until_counts(&relay, |_, k| k >= 101).await;
    assert_eq!(user, in_user_space, "nothing of the stranger's forwarded");
    assert_eq!(kernel, 101, "the phones' media, in the kernel");

    delete(&mut ng, "veth-stranger").await;
    let records = relay.recent_records();
    let stream = &records[0].streams[0];
    assert_eq!(
        stream.caller.refused,
        u64::from(50 * FLOOD),
        "the stranger's, at the caller's port"
    );
    assert_eq!(
        stream.callee.refused,
        u64::from(50 * FLOOD),
        "the stranger's, at the callee's port"
    );
    assert_eq!(stream.caller.packets, 52);
    assert_eq!(stream.callee.packets, 51);
    let caller_at = p.caller.local_addr().unwrap().to_string();
    assert_eq!(
        stream.caller.remote, caller_at,
        "still latched to the caller"
    );
    let callee_at = p.callee.local_addr().unwrap().to_string();
    assert_eq!(
        stream.callee.remote, callee_at,
        "still latched to the callee"
    );
}

/// The caller's NAT mapping changes mid-call (it sends from a new port in its
/// namespace): its packets miss the kernel entry, re-latch in user space (same SSRC,
/// next sequence numbers, after the quiet time) and the kernel forwards both ways
/// again, to and from the new port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nat_change_across_veth_re_latches_and_the_kernel_follows() {
    let net = PhoneNets::new(tag(4), 2, true);
    let (relay, relay_ip) = net
        .relay((54400, 54499), false, |cfg| {
            cfg.options.latch.relatch_quiet = Duration::from_millis(300);
        })
        .await;
    let mut ng = Ng::of(&relay).await;
    let p = net.phones(&mut ng, "veth-nat", relay_ip).await;
    // More than the allowed gap (100) ahead of the latching packet: only the kernel's
    // record of the last sequence number makes the re-latch evidence hold.
    p.send_from_caller(1..=150).await;
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await.len(),
        150
    );
    let (before, kernel_before) = until_counts(&relay, |_, k| k >= 150).await;
    assert_eq!(kernel_before, 150, "in the kernel before the move");

    tokio::time::sleep(Duration::from_millis(400)).await;
    let moved = net.socket(0, relay_ip.is_ipv6());
    moved
        .send_to(&rtp(CALLER_SSRC, 151), p.caller_relay)
        .await
        .unwrap();
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await,
        [(rtp(CALLER_SSRC, 151), p.callee_relay)],
        "re-latched in user space"
    );
    assert_eq!(relay.forwarded_packets(), before + 1);
    // The callee's media now goes to the new port, and then both ways in the kernel.
    for seq in 1..=20 {
        if seq > 1 {
            moved
                .send_to(&rtp(CALLER_SSRC, 150 + seq), p.caller_relay)
                .await
                .unwrap();
        }
        p.callee
            .send_to(&rtp(CALLEE_SSRC, seq), p.callee_relay)
            .await
            .unwrap();
    }
    assert_eq!(
        recv_all(&moved, Duration::from_millis(300)).await,
        expected(CALLEE_SSRC, 1..=20, p.caller_relay)
    );
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await,
        expected(CALLER_SSRC, 152..=170, p.callee_relay)
    );
    assert!(
        recv_all(&p.caller, Duration::from_millis(100))
            .await
            .is_empty(),
        "nothing to the old mapping"
    );
    // Each of the 40 datagrams since the move went one way or the other, and all but
    // the re-latching one and at most the one that installed each entry in the kernel.
    let (user, kernel) = until_counts(&relay, |u, k| u + k >= before + kernel_before + 40).await;
    assert_eq!(user + kernel, before + kernel_before + 40);
    assert!(
        user <= before + 3,
        "back in the kernel: {} of 40 went through user space",
        user - before
    );
    let q = query(&mut ng, "veth-nat").await;
    let endpoint = query_stream(&q, "ft").get("endpoint").unwrap();
    assert_eq!(
        endpoint.get("port"),
        Some(&int(moved.local_addr().unwrap().port().into())),
        "latched to the new port: {q:?}"
    );
}

/// A call whose media flows only in the kernel across veth stays up; once the media
/// stops it times out as in user space, with every packet in its record, and the
/// kernel forwards nothing more for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_silent_in_the_kernel_path_across_veth_times_out() {
    let net = PhoneNets::new(tag(5), 2, true);
    let (relay, relay_ip) = net
        .relay((54500, 54599), false, |cfg| {
            cfg.options.media_timeout = Duration::from_millis(600);
        })
        .await;
    let mut ng = Ng::of(&relay).await;
    let p = net.phones(&mut ng, "veth-idle", relay_ip).await;
    let in_user_space = relay.forwarded_packets();
    // Three media timeouts' worth of media, all of it in the kernel.
    p.send_from_caller_paced(1..=90, Duration::from_millis(20))
        .await;
    assert_eq!(
        relay.active_calls(),
        1,
        "kernel-forwarded media keeps the call up"
    );
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(200)).await.len(),
        90
    );
    assert_eq!(
        relay.forwarded_packets(),
        in_user_space,
        "the media went through the kernel"
    );
    let mut ended = false;
    for _ in 0..40 {
        if relay.active_calls() == 0 {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ended, "the silent call timed out within 2 s");
    let records = relay.recent_records();
    assert_eq!(records[0].reason, "media timeout");
    assert_eq!(records[0].streams[0].caller.packets, 91);
    assert_eq!(records[0].streams[0].caller.bytes, 91 * 172);
    assert_eq!(relay.kernel_forwarded_packets(), 90);
    // Its entries went with it.
    p.caller
        .send_to(&rtp(CALLER_SSRC, 91), p.caller_relay)
        .await
        .unwrap();
    assert!(recv_all(&p.callee, Duration::from_millis(200))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_across_veth_equal_what_the_phones_sent() {
    counters_equal_what_was_sent(6, (54600, 54699), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_counters_across_veth_equal_what_the_phones_sent() {
    counters_equal_what_was_sent(7, (54700, 54799), true).await;
}

/// Datagrams of varying sizes both ways, all in the kernel: `ng` query (per party and
/// in total) and the record count exactly the packets and bytes each phone sent, the
/// latching packet included.
async fn counters_equal_what_was_sent(offset: u32, ports: (u16, u16), v6: bool) {
    let net = PhoneNets::new(tag(offset), 2, true);
    let (relay, relay_ip) = net.relay(ports, v6, |_| {}).await;
    let mut ng = Ng::of(&relay).await;
    let p = net.phones(&mut ng, "veth-count", relay_ip).await;
    let in_user_space = relay.forwarded_packets();
    let (caller_sent, callee_sent) = (70u16, 45u16);
    for seq in 1..=caller_sent {
        p.caller
            .send_to(&rtp_sized(CALLER_SSRC, seq), p.caller_relay)
            .await
            .unwrap();
        if seq <= callee_sent {
            p.callee
                .send_to(&rtp_sized(CALLEE_SSRC, seq), p.callee_relay)
                .await
                .unwrap();
        }
    }
    let expect = |ssrc, n: u16, from| -> Vec<(Vec<u8>, SocketAddr)> {
        (1..=n).map(|seq| (rtp_sized(ssrc, seq), from)).collect()
    };
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await,
        expect(CALLER_SSRC, caller_sent, p.callee_relay)
    );
    assert_eq!(
        recv_all(&p.caller, Duration::from_millis(300)).await,
        expect(CALLEE_SSRC, callee_sent, p.caller_relay)
    );
    let total = u64::from(caller_sent + callee_sent);
    let (user, kernel) = until_counts(&relay, |_, k| k >= total).await;
    assert_eq!(
        user, in_user_space,
        "none of it through the relay's sockets"
    );
    assert_eq!(kernel, total, "all of it in the kernel");

    // What each phone sent: the latching packet (full size), then the sized ones.
    let bytes = |ssrc, n: u16| -> u64 {
        172 + (1..=n)
            .map(|seq| rtp_sized(ssrc, seq).len() as u64)
            .sum::<u64>()
    };
    let (caller_bytes, callee_bytes) = (
        bytes(CALLER_SSRC, caller_sent),
        bytes(CALLEE_SSRC, callee_sent),
    );
    let (caller_packets, callee_packets) = (u64::from(caller_sent) + 1, u64::from(callee_sent) + 1);
    let q = query(&mut ng, "veth-count").await;
    let caller = query_stats(&q, "ft");
    assert_eq!(caller.get("packets"), Some(&int(caller_packets)), "{q:?}");
    assert_eq!(caller.get("bytes"), Some(&int(caller_bytes)), "{q:?}");
    let callee = query_stats(&q, "tt");
    assert_eq!(callee.get("packets"), Some(&int(callee_packets)), "{q:?}");
    assert_eq!(callee.get("bytes"), Some(&int(callee_bytes)), "{q:?}");
    let totals = q.get("totals").and_then(|t| t.get("RTP")).unwrap();
    assert_eq!(
        totals.get("packets"),
        Some(&int(caller_packets + callee_packets))
    );
    assert_eq!(totals.get("bytes"), Some(&int(caller_bytes + callee_bytes)));

    delete(&mut ng, "veth-count").await;
    let records = relay.recent_records();
    let stream = &records[0].streams[0];
    assert_eq!(
        (stream.caller.packets, stream.caller.bytes),
        (caller_packets, caller_bytes),
        "what the caller sent"
    );
    assert_eq!(
        (stream.callee.packets, stream.callee.bytes),
        (callee_packets, callee_bytes),
        "what the callee sent"
    );
    assert_eq!((stream.caller.errors, stream.callee.errors), (0, 0));
    assert_eq!((stream.caller.refused, stream.callee.refused), (0, 0));
}

/// The route to the callee moves mid-call to another interface (a more specific route
/// through a second veth into its namespace) and the first veth goes down: the kernel
/// entry follows the route within a tick or two, and the media arrives again, still
/// forwarded in the kernel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_moves_to_another_interface_is_followed_in_the_kernel() {
    let net = PhoneNets::new(tag(8), 2, true);
    net.add_path(1, 2);
    let (relay, relay_ip) = net.relay((54800, 54899), false, |_| {}).await;
    let mut ng = Ng::of(&relay).await;
    let p = net.phones(&mut ng, "veth-route", relay_ip).await;
    p.send_from_caller(1..=20).await;
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await.len(),
        20
    );
    let (user, kernel) = until_counts(&relay, |_, k| k >= 20).await;
    assert!(kernel >= 20, "in the kernel before the move: {kernel}");

    let callee = net.phone_ip(1).to_string() + "/32";
    let via = net.phone_ip(2).to_string();
    ebpf_kit::netns::ip(&["route", "add", &callee, "via", &via, "dev", &net.link(2)]);
    ebpf_kit::netns::ip(&["link", "set", &net.link(1), "down"]);

    // The caller goes on sending; the first datagrams may go to the old interface
    // (and be lost there) until the relay's next tick moves the entry.
    let mut seq = 21u16;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        p.send_from_caller(seq..=seq).await;
        seq += 1;
        if !recv_all(&p.callee, Duration::from_millis(20))
            .await
            .is_empty()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no media through the new route"
        );
    }
    let (user, kernel) =
        until_counts(&relay, |u, k| u + k >= user + kernel + u64::from(seq - 21)).await;
    p.send_from_caller(seq..=seq + 29).await;
    let got = recv_all(&p.callee, Duration::from_millis(300)).await;
    assert_eq!(
        got,
        expected(CALLER_SSRC, seq..=seq + 29, p.callee_relay),
        "through the new route"
    );
    let (user_after, kernel_after) = until_counts(&relay, |_, k| k >= kernel + 30).await;
    assert_eq!(
        (user_after, kernel_after),
        (user, kernel + 30),
        "all 30 in the kernel"
    );
}
