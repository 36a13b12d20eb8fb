//! The eBPF fast path on a relay host with IP forwarding off (the default of every
//! Linux host): phones in namespaces of their own, joined to the relay's (this
//! process's) by veth pairs whose relay ends do not forward. The relay is the media's
//! sender, so the kernel path sends out of the interface its route names, as the
//! relay's socket would, and forwarding is not needed: media flows both ways in the
//! kernel, byte-exact, from one veth to another and back out of the veth it came in on.

mod ebpf_kit;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ebpf_kit::netns::PhoneNets;
use ebpf_kit::*;
use mediagate_relay::engine::{ForwardIo, Relay};

fn tokio_socket(s: std::net::UdpSocket) -> tokio::net::UdpSocket {
    s.set_nonblocking(true).unwrap();
    tokio::net::UdpSocket::from_std(s).unwrap()
}

/// A tag for this test's namespaces and subnets, apart from those of the other tests
/// of this binary (`n`) and of other binaries' (another prefix).
fn tag(n: u32) -> u32 {
    (std::process::id() * 4 + n) % 10_000
}

/// The relay's veth ends of `net` forward neither IPv4 nor IPv6.
fn assert_no_forwarding(net: &PhoneNets, sides: usize) {
    for side in 0..sides {
        assert_eq!(
            net.forwarding(side),
            ["0", "0"],
            "IP forwarding on {}",
            net.link(side)
        );
    }
}

/// Waits until the relay has read `packets` more kernel-forwarded datagrams than
/// `before` (it reads the kernel's counters every tick).
async fn until_kernel_counted(relay: &Relay, before: u64, packets: u64) {
    for _ in 0..40 {
        if relay.kernel_forwarded_packets() >= before + packets {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relay.kernel_forwarded_packets(), before + packets);
}

/// Sends 50 RTP packets each way after the latches and checks that both phones got
/// them byte-exact from the relay ports, all through the kernel: the relay's sockets
/// saw none of them, and the kernel's counters have every one.
async fn media_both_ways_in_the_kernel(relay: &Relay, p: &Phones) {
    let in_user_space = relay.forwarded_packets();
    let in_kernel = relay.kernel_forwarded_packets();
    for seq in 1..=50 {
        p.caller
            .send_to(&rtp(CALLER_SSRC, seq), p.caller_relay)
            .await
            .unwrap();
        p.callee
            .send_to(&rtp(CALLEE_SSRC, seq), p.callee_relay)
            .await
            .unwrap();
    }
    let at_callee = recv_all(&p.callee, Duration::from_millis(300)).await;
    let at_caller = recv_all(&p.caller, Duration::from_millis(300)).await;
    let expect = |ssrc, from| -> Vec<(Vec<u8>, SocketAddr)> {
        (1..=50).map(|seq| (rtp(ssrc, seq), from)).collect()
    };
    assert_eq!(at_callee, expect(CALLER_SSRC, p.callee_relay));
    assert_eq!(at_caller, expect(CALLEE_SSRC, p.caller_relay));
    assert_eq!(
        relay.forwarded_packets(),
        in_user_space,
        "forwarded in the kernel, not through the relay's sockets"
    );
    until_kernel_counted(relay, in_kernel, 100).await;
}

/// Caller on side 0, callee on side 1, relay ports on `relay_ip` (side 0's relay end):
/// each direction comes in on one veth and leaves by the other.
async fn between_two_veths(net: &PhoneNets, relay_ip: IpAddr, phones: [IpAddr; 2], ports: u16) {
    assert_no_forwarding(net, 2);
    let mut cfg = config((ports, ports + 99), ForwardIo::Ebpf);
    cfg.media = vec![(relay_ip, relay_ip)];
    let relay = start(cfg).await;
    let interfaces = relay.kernel_forwarding().unwrap();
    assert!(
        interfaces.contains(&net.link(0)) && interfaces.contains(&net.link(1)),
        "{interfaces:?}"
    );
    let [a, b] = phones;
    let caller = net.inside(0, move || std::net::UdpSocket::bind((a, 0)).unwrap());
    let callee = net.inside(1, move || std::net::UdpSocket::bind((b, 0)).unwrap());
    let mut ng = Ng::new(relay.ng_udp_addrs()[0]).await;
    let p = establish_with(
        &mut ng,
        "noforward",
        tokio_socket(caller),
        tokio_socket(callee),
        relay_ip,
    )
    .await;
    media_both_ways_in_the_kernel(&relay, &p).await;
    assert_no_forwarding(net, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_between_two_veths_goes_through_the_kernel_without_ip_forwarding() {
    let net = PhoneNets::new(tag(0), 2, false);
    let relay_ip = IpAddr::V4(net.relay_ip(0));
    let phones = [net.phone_ip(0), net.phone_ip(1)].map(IpAddr::V4);
    between_two_veths(&net, relay_ip, phones, 55000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_media_between_two_veths_goes_through_the_kernel_without_ip_forwarding() {
    let net = PhoneNets::new(tag(1), 2, false);
    let relay_ip = IpAddr::V6(net.relay_ip6(0));
    let phones = [net.phone_ip6(0), net.phone_ip6(1)].map(IpAddr::V6);
    between_two_veths(&net, relay_ip, phones, 55100).await;
}

/// Both phones behind one veth (two ports of one address, as behind one NAT): each
/// direction leaves by the veth it came in on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_back_out_of_the_veth_it_came_in_on_goes_through_the_kernel() {
    let net = PhoneNets::new(tag(2), 1, false);
    assert_no_forwarding(&net, 1);
    let relay_ip = IpAddr::V4(net.relay_ip(0));
    let mut cfg = config((55200, 55299), ForwardIo::Ebpf);
    cfg.media = vec![(relay_ip, relay_ip)];
    let relay = start(cfg).await;
    let a = net.phone_ip(0);
    let caller = net.inside(0, move || std::net::UdpSocket::bind((a, 0)).unwrap());
    let callee = net.inside(0, move || std::net::UdpSocket::bind((a, 0)).unwrap());
    let mut ng = Ng::new(relay.ng_udp_addrs()[0]).await;
    let p = establish_with(
        &mut ng,
        "hairpin",
        tokio_socket(caller),
        tokio_socket(callee),
        relay_ip,
    )
    .await;
    media_both_ways_in_the_kernel(&relay, &p).await;
}
