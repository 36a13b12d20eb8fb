//! The eBPF fast path between network namespaces: each phone in a namespace of its
//! own, joined to the relay's (this process's) by a veth pair, so the kernel path has
//! to route: `bpf_fib_lookup`, MAC rewrite and `bpf_redirect` out of the other veth.
//! A datagram the phone sends from a raw socket carries a complete UDP checksum (no
//! offload), so the far phone's raw socket checks the program's checksum updates.

mod ebpf_kit;

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd as _;
use std::process::Command;
use std::time::Duration;

use ebpf_kit::*;
use mediagate_relay::engine::ForwardIo;
use socket2::{Domain, Protocol, Socket, Type};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces, each with a phone at `10.231.N.2` and `fd00:231:N::2` behind a veth
/// whose relay end is `10.231.N.1` and `fd00:231:N::1`; deleted on drop.
struct Net {
    tag: u32,
}

impl Net {
    fn ns(&self, side: usize) -> String {
        format!("mgebpf{}{}", self.tag, side)
    }

    fn link(&self, side: usize) -> String {
        format!("mgeb{}{}", self.tag, side)
    }

    fn subnet(&self, side: usize) -> u8 {
        u8::try_from(self.tag % 100 * 2).unwrap() + side as u8
    }

    fn relay_ip(&self, side: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet(side), 1)
    }

    fn phone_ip(&self, side: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet(side), 2)
    }

    fn relay_ip6(&self, side: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0x231, self.subnet(side).into(), 0, 0, 0, 0, 1)
    }

    fn phone_ip6(&self, side: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0x231, self.subnet(side).into(), 0, 0, 0, 0, 2)
    }

    fn new() -> Self {
        let net = Self::empty(std::process::id() % 10_000);
        for side in 0..2 {
            net.add_side(side);
        }
        net
    }

    /// No namespaces yet ([`Net::add_side`] makes them); `tag` names them and their
    /// subnets, one tag per test running at once.
    fn empty(tag: u32) -> Self {
        Self { tag }
    }

    /// Namespace `side`, its phone and its veth pair.
    fn add_side(&self, side: usize) {
        let net = self;
        {
            let (ns, link) = (net.ns(side), net.link(side));
            let peer = format!("{link}p");
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(std::process::Stdio::null())
                .status();
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
            ip(&["link", "set", &peer, "netns", &ns]);
            let relay = format!("{}/24", net.relay_ip(side));
            ip(&["addr", "add", &relay, "dev", &link]);
            // Without duplicate address detection the link-local addresses are usable
            // at once: neighbour discovery needs them as its source.
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{link}/accept_dad"), "0").unwrap();
            ip(&["link", "set", &link, "up"]);
            let phone = format!("{}/24", net.phone_ip(side));
            ip(&["-n", &ns, "addr", "add", &phone, "dev", &peer]);
            let no_dad = format!("net.ipv6.conf.{peer}.accept_dad=0");
            ip(&["netns", "exec", &ns, "sysctl", "-qw", &no_dad]);
            ip(&["-n", &ns, "link", "set", &peer, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let gw = net.relay_ip(side).to_string();
            ip(&["-n", &ns, "route", "add", "default", "via", &gw]);
            // The kernel path routes only from an interface that forwards (this
            // veth alone; the host's other interfaces keep their setting).
            std::fs::write(format!("/proc/sys/net/ipv4/conf/{link}/forwarding"), "1").unwrap();
            // The same in IPv6 (no duplicate address detection: usable at once).
            let relay6 = format!("{}/64", net.relay_ip6(side));
            ip(&["addr", "add", &relay6, "dev", &link, "nodad"]);
            let phone6 = format!("{}/64", net.phone_ip6(side));
            ip(&["-n", &ns, "addr", "add", &phone6, "dev", &peer, "nodad"]);
            let gw6 = net.relay_ip6(side).to_string();
            ip(&["-n", &ns, "-6", "route", "add", "default", "via", &gw6]);
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{link}/forwarding"), "1").unwrap();
        }
    }

    /// Deletes namespace `side` and with it its veth pair.
    fn remove_side(&self, side: usize) {
        ip(&["netns", "del", &self.ns(side)]);
    }

    /// Runs `f` on a thread inside namespace `side` (sockets made there stay there).
    fn inside<T: Send + 'static>(&self, side: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.ns(side));
        std::thread::spawn(move || {
            let ns = std::fs::File::open(path).unwrap();
            enter_netns(&ns);
            f()
        })
        .join()
        .unwrap()
    }
}

#[allow(unsafe_code)]
fn enter_netns(ns: &std::fs::File) {
    // SAFETY: setns(2) on a descriptor we own; it changes only this thread's network
    // namespace, and the thread ends after its closure.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

impl Drop for Net {
    fn drop(&mut self) {
        for side in 0..2 {
            // Deleting the namespace deletes the veth pair.
            // (Already gone if the test removed it.)
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(side)])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn tokio_socket(s: std::net::UdpSocket) -> tokio::net::UdpSocket {
    s.set_nonblocking(true).unwrap();
    tokio::net::UdpSocket::from_std(s).unwrap()
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
    let net = Net::new();
    let mut cfg = config((54000, 54099), ForwardIo::Ebpf);
    cfg.media = vec![(IpAddr::V4(net.relay_ip(0)), IpAddr::V4(net.relay_ip(0)))];
    let relay = start(cfg).await;
    let interfaces = relay.kernel_forwarding().unwrap();
    assert!(interfaces.contains(&net.link(1)), "{interfaces:?}");
    let (a, b) = (net.phone_ip(0), net.phone_ip(1));
    let caller = net.inside(0, move || std::net::UdpSocket::bind((a, 0)).unwrap());
    let callee = net.inside(1, move || std::net::UdpSocket::bind((b, 0)).unwrap());
    let caller_addr = caller.local_addr().unwrap();
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
    let mut ng = Ng::new(relay.ng_udp_addrs()[0]).await;
    let p = establish_with(
        &mut ng,
        "veth-1",
        tokio_socket(caller),
        tokio_socket(callee),
        IpAddr::V4(net.relay_ip(0)),
    )
    .await;
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
    let net = Net::empty((std::process::id() + 1) % 10_000);
    net.add_side(0);
    let mut cfg = config((54100, 54199), ForwardIo::Ebpf);
    cfg.media = vec![(IpAddr::V4(net.relay_ip(0)), IpAddr::V4(net.relay_ip(0)))];
    let relay = start(cfg).await;
    assert!(!relay.kernel_forwarding().unwrap().contains(&net.link(1)));
    net.add_side(1);
    until_interfaces(&relay, |i| i.contains(&net.link(1))).await;

    let (a, b) = (net.phone_ip(0), net.phone_ip(1));
    let caller = net.inside(0, move || std::net::UdpSocket::bind((a, 0)).unwrap());
    let callee = net.inside(1, move || std::net::UdpSocket::bind((b, 0)).unwrap());
    let mut ng = Ng::new(relay.ng_udp_addrs()[0]).await;
    let p = establish_with(
        &mut ng,
        "veth-late",
        tokio_socket(caller),
        tokio_socket(callee),
        IpAddr::V4(net.relay_ip(0)),
    )
    .await;
    let in_user_space = relay.forwarded_packets();
    for seq in 1..=30 {
        p.callee
            .send_to(&rtp(CALLEE_SSRC, seq), p.callee_relay)
            .await
            .unwrap();
    }
    let expect: Vec<_> = (1..=30)
        .map(|seq| (rtp(CALLEE_SSRC, seq), p.caller_relay))
        .collect();
    assert_eq!(
        recv_all(&p.caller, Duration::from_millis(300)).await,
        expect
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

/// As the IPv4 case, in IPv6: `bpf_fib_lookup` for IPv6, neighbour MACs, redirect, and
/// a UDP checksum (mandatory in IPv6) that holds after the rewrite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_media_between_namespaces_is_routed_in_the_kernel_with_true_checksums() {
    let net = Net::empty((std::process::id() + 2) % 10_000);
    net.add_side(0);
    net.add_side(1);
    let relay_ip = IpAddr::V6(net.relay_ip6(0));
    let mut cfg = config((54200, 54299), ForwardIo::Ebpf);
    cfg.media = vec![(relay_ip, relay_ip)];
    let relay = start(cfg).await;
    let (a, b) = (net.phone_ip6(0), net.phone_ip6(1));
    let caller = net.inside(0, move || std::net::UdpSocket::bind((a, 0)).unwrap());
    let callee = net.inside(1, move || std::net::UdpSocket::bind((b, 0)).unwrap());
    let caller_addr = caller.local_addr().unwrap();
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
    let mut ng = Ng::new(relay.ng_udp_addrs()[0]).await;
    let p = establish_with(
        &mut ng,
        "veth-6",
        tokio_socket(caller),
        tokio_socket(callee),
        relay_ip,
    )
    .await;
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
