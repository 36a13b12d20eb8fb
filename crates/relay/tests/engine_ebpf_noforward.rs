//! The eBPF fast path on a relay host with IP forwarding off (the default of every
//! Linux host): phones in namespaces of their own, joined to the relay's (this
//! process's) by veth pairs whose relay ends do not forward. The relay is the media's
//! sender, so the kernel path sends out of the interface its route names, as the
//! relay's socket would, and forwarding is not needed: media flows both ways in the
//! kernel, byte-exact, from one veth to another and back out of the veth it came in on.

mod ebpf_kit;

use ebpf_kit::netns::PhoneNets;
use ebpf_kit::*;
use mediagate_relay::engine::Relay;

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
    let (_, kernel) = until_counts(relay, |_, k| k >= before + packets).await;
    assert_eq!(kernel, before + packets);
}

/// Sends 50 RTP packets each way after the latches and checks that both phones got
/// them byte-exact from the relay ports, all through the kernel: the relay's sockets
/// saw none of them, and the kernel's counters have every one.
async fn media_both_ways_in_the_kernel(relay: &Relay, p: &Phones) {
    let in_user_space = relay.forwarded_packets();
    let in_kernel = relay.kernel_forwarded_packets();
    p.send_both_ways(1..=50).await;
    p.assert_received_both_ways(1..=50).await;
    assert_eq!(
        relay.forwarded_packets(),
        in_user_space,
        "forwarded in the kernel, not through the relay's sockets"
    );
    until_kernel_counted(relay, in_kernel, 100).await;
}

/// Caller on side 0, callee on side 1, relay ports on side 0's relay end (IPv6 where
/// `v6`): each direction comes in on one veth and leaves by the other.
async fn between_two_veths(net: &PhoneNets, v6: bool, ports: u16) {
    assert_no_forwarding(net, 2);
    let (relay, relay_ip) = net.relay((ports, ports + 99), v6, |_| {}).await;
    let interfaces = relay.kernel_forwarding().unwrap();
    assert!(
        interfaces.contains(&net.link(0)) && interfaces.contains(&net.link(1)),
        "{interfaces:?}"
    );
    let mut ng = Ng::of(&relay).await;
    let p = net.phones(&mut ng, "noforward", relay_ip).await;
    media_both_ways_in_the_kernel(&relay, &p).await;
    assert_no_forwarding(net, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_between_two_veths_goes_through_the_kernel_without_ip_forwarding() {
    let net = PhoneNets::new(tag(0), 2, false);
    between_two_veths(&net, false, 55000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_media_between_two_veths_goes_through_the_kernel_without_ip_forwarding() {
    let net = PhoneNets::new(tag(1), 2, false);
    between_two_veths(&net, true, 55100).await;
}

/// Both phones behind one veth (two ports of one address, as behind one NAT): each
/// direction leaves by the veth it came in on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_back_out_of_the_veth_it_came_in_on_goes_through_the_kernel() {
    let net = PhoneNets::new(tag(2), 1, false);
    assert_no_forwarding(&net, 1);
    let (relay, relay_ip) = net.relay((55200, 55299), false, |_| {}).await;
    let (caller, callee) = (net.socket(0, false), net.socket(0, false));
    let mut ng = Ng::of(&relay).await;
    let p = establish_with(&mut ng, "hairpin", caller, callee, relay_ip).await;
    media_both_ways_in_the_kernel(&relay, &p).await;
}
