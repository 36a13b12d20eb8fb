//! The flow map's key and value, laid out exactly as `struct flow_key` and `struct
//! flow_entry` in `bpf/relay_fwd.bpf.c` (addresses and ports in network byte order;
//! IPv4 addresses IPv4-mapped, with `FLOW_V6` clear).
#![allow(unsafe_code)]

use std::net::{IpAddr, SocketAddr};

use crate::route::Egress;

/// Datagrams from `from` to the relay port `to`: both IPv4 or both IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The latched peer.
    pub from: SocketAddr,
    /// The relay port it sends to.
    pub to: SocketAddr,
}

/// How a matching datagram leaves: in the key's IP version (the kernel does not bridge
/// IPv4 and IPv6; [`crate::FastPath::insert`] refuses a mix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTarget {
    /// The relay port it leaves from (the other party's).
    pub from: SocketAddr,
    /// The other party's latched address.
    pub to: SocketAddr,
    /// For RTP streams: only RTP (not multiplexed RTCP) with this SSRC is forwarded;
    /// the rest reaches the relay's socket. `None` for opaque streams (UDPTL).
    pub rtp_ssrc: Option<u32>,
}

/// What the kernel forwarded for one entry since it was inserted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    /// Datagrams.
    pub packets: u64,
    /// UDP payload bytes.
    pub bytes: u64,
    /// `CLOCK_MONOTONIC` nanoseconds of the last one ([`crate::monotonic_ns`]), if any.
    pub last_ns: Option<u64>,
    /// For RTP entries, the sequence number of the last one (the re-latch rules
    /// compare a new source's sequence numbers with it).
    pub last_seq: Option<u16>,
}

const FLOW_RTP: u32 = 1;
const FLOW_LOCAL: u32 = 2;
const FLOW_V6: u32 = 4;

/// All zero by default: a buffer slot for the kernel to fill.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct RawKey {
    src_ip: [u8; 16],
    dst_ip: [u8; 16],
    src_port: u16,
    dst_port: u16,
}

/// All zero by default: a buffer slot for the kernel to fill.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RawEntry {
    new_src_ip: [u8; 16],
    new_dst_ip: [u8; 16],
    new_src_port: u16,
    new_dst_port: u16,
    ssrc: u32,
    flags: u32,
    last_seq: u32,
    packets: u64,
    bytes: u64,
    last_ns: u64,
    out_ifindex: u32,
    pad: u32,
}

// SAFETY: both are repr(C) structs of integers and byte arrays with no padding (36 and
// 80 bytes, every field naturally aligned), so every byte pattern is a valid value, as aya::Pod needs.
unsafe impl aya::Pod for RawKey {}
// SAFETY: as above.
unsafe impl aya::Pod for RawEntry {}

/// As in the packet: IPv6 as is, IPv4 mapped (::ffff:a.b.c.d), as the program builds
/// its keys.
fn ip(a: &SocketAddr) -> [u8; 16] {
    match a.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn port(a: &SocketAddr) -> u16 {
    a.port().to_be()
}

/// Whether the kernel can forward `key` as `target` says: one IP version throughout.
pub(crate) fn same_family(key: &FlowKey, target: &FlowTarget) -> bool {
    let v6 = key.from.is_ipv6();
    [key.to, target.from, target.to]
        .iter()
        .all(|a| a.is_ipv6() == v6)
}

impl From<FlowKey> for RawKey {
    fn from(k: FlowKey) -> Self {
        Self {
            src_ip: ip(&k.from),
            dst_ip: ip(&k.to),
            src_port: port(&k.from),
            dst_port: port(&k.to),
        }
    }
}

impl RawEntry {
    /// `t`'s entry, leaving as `egress` says.
    pub(crate) fn new(t: FlowTarget, egress: Egress) -> Self {
        let (local, out_ifindex) = match egress {
            Egress::Local => (true, 0),
            Egress::Interface(i) => (false, i),
        };
        Self {
            new_src_ip: ip(&t.from),
            new_dst_ip: ip(&t.to),
            new_src_port: port(&t.from),
            new_dst_port: port(&t.to),
            // The program compares the SSRC as it lies in the packet.
            ssrc: t.rtp_ssrc.map_or(0, u32::to_be),
            flags: if t.rtp_ssrc.is_some() { FLOW_RTP } else { 0 }
                | if local { FLOW_LOCAL } else { 0 }
                | if t.to.is_ipv6() { FLOW_V6 } else { 0 },
            last_seq: 0,
            packets: 0,
            bytes: 0,
            last_ns: 0,
            out_ifindex,
            pad: 0,
        }
    }

    pub(crate) fn counters(&self) -> FlowCounters {
        FlowCounters {
            packets: self.packets,
            bytes: self.bytes,
            last_ns: (self.last_ns != 0).then_some(self.last_ns),
            // The low 16 bits hold the field as it lay in the packet.
            last_seq: (self.packets > 0 && self.flags & FLOW_RTP != 0)
                .then(|| u16::from_be(self.last_seq as u16)),
        }
    }
}

pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid one we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_c_structs() {
        assert_eq!(std::mem::size_of::<RawKey>(), 36);
        assert_eq!(std::mem::size_of::<RawEntry>(), 80);
        assert_eq!(std::mem::offset_of!(RawEntry, ssrc), 36);
        assert_eq!(std::mem::offset_of!(RawEntry, packets), 48);
        assert_eq!(std::mem::offset_of!(RawEntry, out_ifindex), 72);
    }

    #[test]
    fn addresses_and_ssrc_are_kept_in_network_order() {
        let k = RawKey::from(FlowKey {
            from: "10.0.0.1:5004".parse().unwrap(),
            to: "192.0.2.7:30000".parse().unwrap(),
        });
        assert_eq!(k.src_ip, *b"\0\0\0\0\0\0\0\0\0\0\xff\xff\x0a\0\0\x01");
        assert_eq!(k.dst_port.to_ne_bytes(), 30000u16.to_be_bytes());
        let e = RawEntry::new(
            FlowTarget {
                from: "192.0.2.7:30002".parse().unwrap(),
                to: "10.0.0.2:6000".parse().unwrap(),
                rtp_ssrc: Some(0x0102_0304),
            },
            Egress::Local,
        );
        assert_eq!(e.ssrc.to_ne_bytes(), [1, 2, 3, 4]);
        assert_eq!(e.flags, FLOW_RTP | FLOW_LOCAL);
        assert_eq!(
            e.out_ifindex, 0,
            "a local destination leaves by no interface"
        );
        assert_eq!(e.new_src_port.to_ne_bytes(), 30002u16.to_be_bytes());
    }

    #[test]
    fn ipv6_entries_keep_the_address_and_say_so() {
        let k = RawKey::from(FlowKey {
            from: "[2001:db8::1]:5004".parse().unwrap(),
            to: "[2001:db8::7]:30000".parse().unwrap(),
        });
        assert_eq!(
            k.dst_ip,
            "2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        let t = FlowTarget {
            from: "[2001:db8::7]:30002".parse().unwrap(),
            to: "[2001:db8::2]:6000".parse().unwrap(),
            rtp_ssrc: None,
        };
        let e = RawEntry::new(t, Egress::Interface(3));
        assert_eq!(e.flags, FLOW_V6);
        assert_eq!(e.out_ifindex, 3);
        let key = FlowKey {
            from: "[2001:db8::1]:5004".parse().unwrap(),
            to: "[2001:db8::7]:30000".parse().unwrap(),
        };
        assert!(same_family(&key, &t));
        let bridged = FlowTarget {
            to: "10.0.0.2:6000".parse().unwrap(),
            ..t
        };
        assert!(!same_family(&key, &bridged));
    }
}
