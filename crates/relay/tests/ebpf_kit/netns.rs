//! Phones in network namespaces of their own, each joined by a veth pair to this
//! process's namespace, where the relay runs: side N's phone is `10.X.S.2` and
//! `fd00:X:S::2` behind a veth whose relay end is `10.X.S.1` and `fd00:X:S::1`
//! (S from the tag and the side; X is 231 where the relay's ends forward, 232 where
//! they do not, so that the binaries of either kind can run at once), with its
//! default routes via the relay's end. IP forwarding on the relay's ends is set as
//! asked, never inherited. Everything is deleted on drop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd as _;
use std::process::{Command, Stdio};

use mediagate_relay::engine::{EngineConfig, ForwardIo, Relay};

use super::{Ng, Phones};

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sysctl_path(v6: bool, link: &str, key: &str) -> String {
    let family = if v6 { "ipv6" } else { "ipv4" };
    format!("/proc/sys/net/{family}/conf/{link}/{key}")
}

/// The most sides one [`PhoneNets`] has: the subnets of a tag.
pub const SIDES: usize = 4;

pub struct PhoneNets {
    tag: u32,
    forwarding: bool,
}

impl PhoneNets {
    /// `sides` namespaces named by `tag` (one tag per test running at once, in any
    /// test binary: the subnets live in this process's namespace), with IP forwarding
    /// on the relay's veth ends on or off for IPv4 and IPv6.
    pub fn new(tag: u32, sides: usize, forwarding: bool) -> Self {
        let net = Self::empty(tag, forwarding);
        for side in 0..sides {
            net.add_side(side);
        }
        net
    }

    /// No namespaces yet ([`PhoneNets::add_side`] makes them).
    pub fn empty(tag: u32, forwarding: bool) -> Self {
        Self { tag, forwarding }
    }

    pub fn ns(&self, side: usize) -> String {
        let kind = if self.forwarding { "mgfwd" } else { "mgnofwd" };
        format!("{kind}{}{}", self.tag, side)
    }

    /// The relay's end of side `side`'s veth pair.
    pub fn link(&self, side: usize) -> String {
        let kind = if self.forwarding { "mgfw" } else { "mgnf" };
        format!("{kind}{}{}", self.tag, side)
    }

    fn net(&self) -> u8 {
        if self.forwarding {
            231
        } else {
            232
        }
    }

    fn subnet(&self, side: usize) -> u8 {
        assert!(side < SIDES, "at most {SIDES} sides");
        u8::try_from(self.tag % 60 * 4 + side as u32).unwrap()
    }

    pub fn relay_ip(&self, side: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net(), self.subnet(side), 1)
    }

    pub fn phone_ip(&self, side: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net(), self.subnet(side), 2)
    }

    pub fn relay_ip6(&self, side: usize) -> Ipv6Addr {
        let net = self.net().into();
        Ipv6Addr::new(0xfd00, net, self.subnet(side).into(), 0, 0, 0, 0, 1)
    }

    pub fn phone_ip6(&self, side: usize) -> Ipv6Addr {
        let net = self.net().into();
        Ipv6Addr::new(0xfd00, net, self.subnet(side).into(), 0, 0, 0, 0, 2)
    }

    /// The relay's end of side `side`, in IPv6 where `v6`.
    pub fn relay_addr(&self, side: usize, v6: bool) -> IpAddr {
        if v6 {
            self.relay_ip6(side).into()
        } else {
            self.relay_ip(side).into()
        }
    }

    /// The phone of side `side`, in IPv6 where `v6`.
    pub fn phone_addr(&self, side: usize, v6: bool) -> IpAddr {
        if v6 {
            self.phone_ip6(side).into()
        } else {
            self.phone_ip(side).into()
        }
    }

    /// A UDP socket on the phone of side `side` (IPv6 where `v6`), at an unused port.
    pub fn socket(&self, side: usize, v6: bool) -> tokio::net::UdpSocket {
        let at = self.phone_addr(side, v6);
        super::tokio_socket(self.inside(side, move || std::net::UdpSocket::bind((at, 0)).unwrap()))
    }

    /// `net.ipv4.conf.LINK.forwarding` and `net.ipv6.conf.LINK.forwarding` of side
    /// `side`'s relay end, as the kernel has them now.
    pub fn forwarding(&self, side: usize) -> [String; 2] {
        [false, true].map(|v6| {
            std::fs::read_to_string(sysctl_path(v6, &self.link(side), "forwarding"))
                .unwrap()
                .trim()
                .to_owned()
        })
    }

    /// Namespace `side`, its phone and its veth pair.
    pub fn add_side(&self, side: usize) {
        let (ns, link) = (self.ns(side), self.link(side));
        let peer = format!("{link}p");
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &ns]);
        // Set, not inherited from the host's defaults.
        let on = if self.forwarding { "1" } else { "0" };
        for v6 in [false, true] {
            std::fs::write(sysctl_path(v6, &link, "forwarding"), on).unwrap();
        }
        // Without duplicate address detection the link-local addresses are usable at
        // once: neighbour discovery needs them as its source.
        std::fs::write(sysctl_path(true, &link, "accept_dad"), "0").unwrap();
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.relay_ip(side)),
            "dev",
            &link,
        ]);
        let relay6 = format!("{}/64", self.relay_ip6(side));
        ip(&["addr", "add", &relay6, "dev", &link, "nodad"]);
        ip(&["link", "set", &link, "up"]);
        let no_dad = format!("net.ipv6.conf.{peer}.accept_dad=0");
        ip(&["netns", "exec", &ns, "sysctl", "-qw", &no_dad]);
        let phone = format!("{}/24", self.phone_ip(side));
        ip(&["-n", &ns, "addr", "add", &phone, "dev", &peer]);
        let phone6 = format!("{}/64", self.phone_ip6(side));
        ip(&["-n", &ns, "addr", "add", &phone6, "dev", &peer, "nodad"]);
        ip(&["-n", &ns, "link", "set", &peer, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let gw = self.relay_ip(side).to_string();
        ip(&["-n", &ns, "route", "add", "default", "via", &gw]);
        let gw6 = self.relay_ip6(side).to_string();
        ip(&["-n", &ns, "-6", "route", "add", "default", "via", &gw6]);
    }

    /// A second way to side `side`'s phone: a veth pair named as side `via`'s (its
    /// subnet too), whose phone end is in namespace `side`, with no route through it
    /// yet; reverse-path filtering off in that namespace, so the phone takes datagrams
    /// that arrive through either pair.
    pub fn add_path(&self, side: usize, via: usize) {
        let (ns, link) = (self.ns(side), self.link(via));
        let peer = format!("{link}p");
        ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &ns]);
        let on = if self.forwarding { "1" } else { "0" };
        for v6 in [false, true] {
            std::fs::write(sysctl_path(v6, &link, "forwarding"), on).unwrap();
        }
        let relay = format!("{}/24", self.relay_ip(via));
        ip(&["addr", "add", &relay, "dev", &link]);
        ip(&["link", "set", &link, "up"]);
        let phone = format!("{}/24", self.phone_ip(via));
        ip(&["-n", &ns, "addr", "add", &phone, "dev", &peer]);
        ip(&["-n", &ns, "link", "set", &peer, "up"]);
        for conf in ["all", peer.as_str()] {
            let off = format!("net.ipv4.conf.{conf}.rp_filter=0");
            ip(&["netns", "exec", &ns, "sysctl", "-qw", &off]);
        }
    }

    /// A relay in this namespace with its media ports on the relay end of side 0's
    /// veth (IPv6 where `v6`), its kernel path required; `tune` adjusts its config.
    pub async fn relay(
        &self,
        ports: (u16, u16),
        v6: bool,
        tune: impl FnOnce(&mut EngineConfig),
    ) -> (Relay, IpAddr) {
        let relay_ip = self.relay_addr(0, v6);
        let mut cfg = super::config_on(ports, ForwardIo::Ebpf, relay_ip);
        tune(&mut cfg);
        (super::start(cfg).await, relay_ip)
    }

    /// The caller on side 0, the callee on side 1, in `relay_ip`'s IP version, latched
    /// both ways.
    pub async fn phones(&self, ng: &mut Ng, call_id: &str, relay_ip: IpAddr) -> Phones {
        let v6 = relay_ip.is_ipv6();
        let (caller, callee) = (self.socket(0, v6), self.socket(1, v6));
        super::establish_with(ng, call_id, caller, callee, relay_ip).await
    }

    /// Deletes namespace `side` and with it its veth pair.
    pub fn remove_side(&self, side: usize) {
        ip(&["netns", "del", &self.ns(side)]);
    }

    /// Runs `f` on a thread inside namespace `side` (sockets made there stay there).
    pub fn inside<T: Send + 'static>(
        &self,
        side: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
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

impl Drop for PhoneNets {
    fn drop(&mut self) {
        for side in 0..SIDES {
            // Deleting the namespace deletes the veth pair (already gone where never
            // made or removed).
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(side)])
                .stderr(Stdio::null())
                .status();
        }
    }
}
