//! Phones in network namespaces of their own, each joined by a veth pair to this
//! process's namespace, where the relay runs: side N's phone is `10.232.S.2` and
//! `fd00:232:S::2` behind a veth whose relay end is `10.232.S.1` and `fd00:232:S::1`
//! (S from the tag and the side), with its default routes via the relay's end. IP
//! forwarding on the relay's ends is set as asked, never inherited. Everything is
//! deleted on drop.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd as _;
use std::process::{Command, Stdio};

fn ip(args: &[&str]) {
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

pub struct PhoneNets {
    tag: u32,
    sides: usize,
}

impl PhoneNets {
    /// `sides` namespaces named by `tag` (one tag per test running at once, in any
    /// test binary: the subnets live in this process's namespace), with IP forwarding
    /// on the relay's veth ends on or off for IPv4 and IPv6.
    pub fn new(tag: u32, sides: usize, forwarding: bool) -> Self {
        let net = Self { tag, sides };
        for side in 0..sides {
            net.add_side(side, forwarding);
        }
        net
    }

    pub fn ns(&self, side: usize) -> String {
        format!("mgnofwd{}{}", self.tag, side)
    }

    /// The relay's end of side `side`'s veth pair.
    pub fn link(&self, side: usize) -> String {
        format!("mgnf{}{}", self.tag, side)
    }

    fn subnet(&self, side: usize) -> u8 {
        u8::try_from(self.tag % 60 * 4 + side as u32).unwrap()
    }

    pub fn relay_ip(&self, side: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 232, self.subnet(side), 1)
    }

    pub fn phone_ip(&self, side: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 232, self.subnet(side), 2)
    }

    pub fn relay_ip6(&self, side: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0x232, self.subnet(side).into(), 0, 0, 0, 0, 1)
    }

    pub fn phone_ip6(&self, side: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0x232, self.subnet(side).into(), 0, 0, 0, 0, 2)
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

    fn add_side(&self, side: usize, forwarding: bool) {
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
        let on = if forwarding { "1" } else { "0" };
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
        for side in 0..self.sides {
            // Deleting the namespace deletes the veth pair.
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(side)])
                .stderr(Stdio::null())
                .status();
        }
    }
}
