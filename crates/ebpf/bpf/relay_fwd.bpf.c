// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
//
// The relay's kernel fast path: a tc (TCX ingress) program that forwards latched
// UDP media streams without waking the relay process.
//
// It looks up each IPv4 or IPv6 UDP datagram's (source, destination) in FLOWS (one map
// for both: an IPv4 address is kept IPv4-mapped, ::ffff:a.b.c.d, and the entry's
// FLOW_V6 flag says which family it rewrites to, so a key of one family never
// rewrites a packet of the other). On a hit (and, for RTP entries, an RTP packet
// carrying the expected SSRC), it rewrites the source to the relay's outgoing port and
// the destination to the latched peer, patches the checksums (IPv4 header and UDP;
// UDP only in IPv6, where it is mandatory: updated, never zeroed), counts the packet in
// the entry and sends it on: out of the entry's egress interface through the
// neighbour subsystem (bpf_redirect_neigh), or, for a destination on this host, back
// into the local stack (TC_ACT_OK after the rewrite).
//
// The egress interface comes from user space, which asks the kernel's routing table
// when it makes the entry (`ip route get PEER from RELAY`), as for any datagram the
// relay sends: the relay is the datagram's source, not a router, so no IP forwarding
// is needed on any interface. (bpf_fib_lookup would need it: it answers
// BPF_FIB_LKUP_RET_FWD_DISABLED unless the interface it is given forwards, the egress
// one with BPF_FIB_LOOKUP_OUTPUT as well as the ingress one without.)
// bpf_redirect_neigh looks the route up again pinned to that interface, fills in the
// MAC addresses from the neighbour table, and resolves a neighbour not yet known
// (ARP, neighbour discovery) with the datagram queued, as the relay's socket would.
//
// TTL and hop limit are left as they came: the relay is the datagram's new source (its
// sockets would send with their own default), not a router on the phones' path, and a
// forwarding loop cannot form because every hop must match a relay port's entry.
//
// Everything else (a miss, IPv4 options, IPv6 extension headers (fragments and
// hop-by-hop jumbograms among them), fragments, non-UDP, an IPv6 datagram without a
// UDP checksum, RTCP, a foreign SSRC, an entry without an egress interface, a datagram
// larger than the egress interface's MTU) passes on untouched, so the relay's socket
// receives it exactly as without this program. A route that vanished after the entry
// was made cannot be told from here: the kernel drops such a datagram, as the relay's
// own send would fail. IPv4<->IPv6 bridged streams never get an entry (the relay keeps
// them in user space).
//
// Kept in sync by hand with crates/ebpf/src/flows.rs (RawKey, RawEntry).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_skb_store_bytes)(struct __sk_buff *skb, __u32 offset, const void *from, __u32 len,
                                   __u64 flags) = (void *)BPF_FUNC_skb_store_bytes;
static long (*bpf_l3_csum_replace)(struct __sk_buff *skb, __u32 offset, __u64 from, __u64 to,
                                   __u64 size) = (void *)BPF_FUNC_l3_csum_replace;
static long (*bpf_l4_csum_replace)(struct __sk_buff *skb, __u32 offset, __u64 from, __u64 to,
                                   __u64 flags) = (void *)BPF_FUNC_l4_csum_replace;
static long (*bpf_redirect_neigh)(__u32 ifindex, struct bpf_redir_neigh *params, int plen,
                                  __u64 flags) = (void *)BPF_FUNC_redirect_neigh;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;
static long (*bpf_check_mtu)(void *ctx, __u32 ifindex, __u32 *mtu_len, __s32 len_diff,
                             __u64 flags) = (void *)BPF_FUNC_check_mtu;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static __s64 (*bpf_csum_diff)(__be32 *from, __u32 from_size, __be32 *to, __u32 to_size,
                              __wsum seed) = (void *)BPF_FUNC_csum_diff;

// Network byte order throughout, as in the packet. IPv4 addresses are IPv4-mapped
// IPv6 addresses (::ffff:a.b.c.d), so the last word holds the IPv4 address.
struct flow_key {
    __u32 src_ip[4];
    __u32 dst_ip[4];
    __u16 src_port;
    __u16 dst_port;
};

#define FLOW_RTP 1 // forward only RTP (not RTCP) carrying `ssrc`
#define FLOW_LOCAL 2 // the destination is an address of this host (a local route): no egress
#define FLOW_V6 4 // an IPv6 entry (key and rewrite); without it, IPv4

struct flow_entry {
    __u32 new_src_ip[4];
    __u32 new_dst_ip[4];
    __u16 new_src_port;
    __u16 new_dst_port;
    __u32 ssrc;
    __u32 flags;
    __u32 last_seq; // RTP sequence number of the last forward, as in the packet
    __u64 packets;
    __u64 bytes; // UDP payload, as the relay counts
    __u64 last_ns; // bpf_ktime_get_ns (CLOCK_MONOTONIC) of the last forward
    __u32 out_ifindex; // where a datagram not FLOW_LOCAL leaves; 0: none known
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, struct flow_key);
    __type(value, struct flow_entry);
} FLOWS SEC(".maps");

#define ETH_LEN 14
#define IP_OFF ETH_LEN
#define IP_CSUM_OFF (IP_OFF + __builtin_offsetof(struct iphdr, check))
#define IP_SRC_OFF (IP_OFF + __builtin_offsetof(struct iphdr, saddr))
#define UDP_OFF (IP_OFF + sizeof(struct iphdr))
#define UDP_CSUM_OFF (UDP_OFF + __builtin_offsetof(struct udphdr, check))
#define RTP_OFF (UDP_OFF + sizeof(struct udphdr))
#define IP6_SRC_OFF (IP_OFF + __builtin_offsetof(struct ipv6hdr, saddr))
#define UDP6_OFF (IP_OFF + sizeof(struct ipv6hdr))
#define UDP6_CSUM_OFF (UDP6_OFF + __builtin_offsetof(struct udphdr, check))
#define RTP6_OFF (UDP6_OFF + sizeof(struct udphdr))
// What the program does not handle goes on to the next program on the interface
// (another relay's, say), and past the last one up the stack as if nobody looked;
// TC_ACT_OK would end the chain and hide the datagram from the programs after it.
#define NEXT TC_ACT_UNSPEC

// The entry for `key`, if the datagram (UDP header at `udp`, of the family `v6` says)
// is one it forwards; the RTP sequence number (as in the packet) in `seq`.
static __attribute__((always_inline)) struct flow_entry *
match(struct flow_key *key, struct udphdr *udp, void *data_end, __u32 v6, __u16 *seq)
{
    struct flow_entry *e = bpf_map_lookup_elem(&FLOWS, key);
    if (!e || (e->flags & FLOW_V6) != v6)
        return 0;
    __u8 *rtp = (__u8 *)(udp + 1);
    *seq = 0;
    if (e->flags & FLOW_RTP) {
        // The 12 bytes of a fixed RTP header.
        if ((void *)(rtp + 12) > data_end)
            return 0;
        // RTP version 2; RTCP multiplexed on the port (RFC 5761 §4: 192..223) and a
        // foreign SSRC stay with the relay's latching and reports.
        if ((rtp[0] >> 6) != 2 || (rtp[1] >= 192 && rtp[1] <= 223))
            return 0;
        __u32 ssrc = *(__u32 *)(rtp + 8);
        if (ssrc != e->ssrc)
            return 0;
        *seq = *(__u16 *)(rtp + 2);
    }
    return e;
}

static __attribute__((always_inline)) void count(struct flow_entry *e, __u16 udp_len, __u16 seq)
{
    __sync_fetch_and_add(&e->packets, 1);
    __sync_fetch_and_add(&e->bytes, udp_len - sizeof(struct udphdr));
    e->last_ns = bpf_ktime_get_ns();
    e->last_seq = seq;
}

// Whether the program can send this datagram on as `e` says (checked before any
// rewrite): an egress interface is known and the datagram fits its MTU (a larger one
// goes up, and the relay's socket sends it fragmented).
static __attribute__((always_inline)) int sendable(struct __sk_buff *skb, struct flow_entry *e)
{
    if (e->flags & FLOW_LOCAL)
        return 1;
    __u32 mtu = 0;
    return e->out_ifindex != 0 &&
           bpf_check_mtu(skb, e->out_ifindex, &mtu, 0, 0) == BPF_MTU_CHK_RET_SUCCESS;
}

// The loopback device's index, the same in every network namespace (the kernel's
// LOOPBACK_IFINDEX).
#define LOOPBACK_IFINDEX 1

// Sends the rewritten datagram on: up the local stack, or out of the egress interface
// with the next hop's MAC address (the kernel's route and neighbour lookup).
//
// A datagram for this host that came in on loopback goes up as it is. One that came in
// on any other interface cannot: its new source is this host's own address, which the
// input route of a non-loopback interface drops as a martian (unless accept_local is
// set). It re-enters through loopback's ingress instead, with loopback's all-zero MAC
// as its destination (any other would make it PACKET_OTHERHOST there). This is the
// path of two relays on one host chained for one call; on loopback's ingress this
// program sees the datagram again and the second relay's entry forwards it.
static __attribute__((always_inline)) int send(struct __sk_buff *skb, struct flow_entry *e)
{
    if (e->flags & FLOW_LOCAL) {
        if (skb->ingress_ifindex == LOOPBACK_IFINDEX)
            return TC_ACT_OK;
        __u8 zero_mac[ETH_ALEN] = {0};
        if (bpf_skb_store_bytes(skb, 0, zero_mac, ETH_ALEN, 0) < 0)
            return TC_ACT_SHOT;
        return bpf_redirect(LOOPBACK_IFINDEX, BPF_F_INGRESS);
    }
    return bpf_redirect_neigh(e->out_ifindex, 0, 0, 0);
}

// The UDP header's two ports as one 32-bit word, as in the packet (read before any
// write: the helpers that write invalidate packet pointers).
static __attribute__((always_inline)) __u32 ports_of(struct udphdr *udp)
{
    __u32 ports;
    __builtin_memcpy(&ports, &udp->source, sizeof(ports));
    return ports;
}

// Rewrites the UDP header's ports (at `udp_off`; `old_ports` from `ports_of`) to `e`'s,
// patching the UDP checksum at `csum_off`: the two adjacent 16-bit ports as one
// 32-bit word, one helper call for both.
static __attribute__((always_inline)) void rewrite_ports(struct __sk_buff *skb, __u32 udp_off,
                                                         __u32 csum_off, __u32 old_ports,
                                                         struct flow_entry *e)
{
    __u32 new_ports;
    __builtin_memcpy(&new_ports, &e->new_src_port, sizeof(new_ports));
    bpf_l4_csum_replace(skb, csum_off, old_ports, new_ports, BPF_F_MARK_MANGLED_0 | 4);
    bpf_skb_store_bytes(skb, udp_off, &new_ports, sizeof(new_ports), 0);
}

static __attribute__((always_inline)) int forward4(struct __sk_buff *skb, void *data,
                                                   void *data_end)
{
    // IPv4 without options + UDP.
    if (data + RTP_OFF > data_end)
        return NEXT;
    struct iphdr *ip = data + IP_OFF;
    if (ip->ihl != 5 || ip->version != 4 || ip->protocol != 17)
        return NEXT;
    // Any fragment (more-fragments flag or an offset) goes up whole to the stack.
    if (ip->frag_off & __builtin_bswap16(0x3fff))
        return NEXT;
    struct udphdr *udp = data + UDP_OFF;
    struct flow_key key = {
        .src_ip = {0, 0, __builtin_bswap32(0xffff), ip->saddr},
        .dst_ip = {0, 0, __builtin_bswap32(0xffff), ip->daddr},
        .src_port = udp->source,
        .dst_port = udp->dest,
    };
    __u16 seq;
    struct flow_entry *e = match(&key, udp, data_end, 0, &seq);
    if (!e)
        return NEXT;
    __u16 udp_len = __builtin_bswap16(udp->len);
    if (udp_len < sizeof(struct udphdr))
        return NEXT;

    if (!sendable(skb, e))
        return NEXT;

    // The addresses as they are and as they become, src then dst, as in the header.
    __u32 old_addrs[2] = {ip->saddr, ip->daddr};
    __u32 old_ports = ports_of(udp);
    __u32 new_addrs[2] = {e->new_src_ip[3], e->new_dst_ip[3]};
    // One difference serves both checksums: the IP header's and the UDP pseudo-header's.
    __s64 diff = bpf_csum_diff(old_addrs, sizeof(old_addrs), new_addrs, sizeof(new_addrs), 0);
    if (diff < 0)
        return NEXT;
    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0, (__u32)diff,
                        BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0);
    bpf_l3_csum_replace(skb, IP_CSUM_OFF, 0, (__u32)diff, 0);
    bpf_skb_store_bytes(skb, IP_SRC_OFF, new_addrs, sizeof(new_addrs), 0);
    rewrite_ports(skb, UDP_OFF, UDP_CSUM_OFF, old_ports, e);

    count(e, udp_len, seq);
    return send(skb, e);
}

static __attribute__((always_inline)) int forward6(struct __sk_buff *skb, void *data,
                                                   void *data_end)
{
    // IPv6 with UDP directly after the fixed header: any extension header (a fragment
    // header, hop-by-hop options such as a jumbogram's) goes up to the stack.
    if (data + RTP6_OFF > data_end)
        return NEXT;
    struct ipv6hdr *ip6 = data + IP_OFF;
    if (ip6->version != 6 || ip6->nexthdr != 17)
        return NEXT;
    __u16 payload_len = __builtin_bswap16(ip6->payload_len);
    struct udphdr *udp = data + UDP6_OFF;
    __u16 udp_len = __builtin_bswap16(udp->len);
    // A zero checksum is invalid in IPv6 (the stack drops it; the program must not
    // turn it into a valid-looking one); a zero payload length is a jumbogram's.
    if (udp->check == 0 || payload_len == 0 || udp_len < sizeof(struct udphdr) ||
        udp_len > payload_len)
        return NEXT;
    struct flow_key key = {
        .src_port = udp->source,
        .dst_port = udp->dest,
    };
    __builtin_memcpy(key.src_ip, &ip6->saddr, 16);
    __builtin_memcpy(key.dst_ip, &ip6->daddr, 16);
    __u16 seq;
    struct flow_entry *e = match(&key, udp, data_end, FLOW_V6, &seq);
    if (!e)
        return NEXT;

    if (!sendable(skb, e))
        return NEXT;

    // The addresses as they are and as they become, src then dst, as in the header.
    __u32 old_addrs[8], new_addrs[8];
    __builtin_memcpy(old_addrs, key.src_ip, 16);
    __builtin_memcpy(old_addrs + 4, key.dst_ip, 16);
    __builtin_memcpy(new_addrs, e->new_src_ip, 16);
    __builtin_memcpy(new_addrs + 4, e->new_dst_ip, 16);
    __u32 old_ports = ports_of(udp);

    // The pseudo-header's share of the UDP checksum. BPF_F_IPV6 (Linux 6.16) keeps a
    // CHECKSUM_COMPLETE skb's csum right, since the addresses it covers change with the
    // pseudo-header; an older kernel refuses the flag before touching anything, and
    // gets the update without it.
    __s64 diff = bpf_csum_diff(old_addrs, sizeof(old_addrs), new_addrs, sizeof(new_addrs), 0);
    if (diff < 0)
        return NEXT;
    __u64 pseudo = BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0;
    if (bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, 0, (__u32)diff, pseudo | BPF_F_IPV6) < 0 &&
        bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, 0, (__u32)diff, pseudo) < 0)
        return NEXT;
    bpf_skb_store_bytes(skb, IP6_SRC_OFF, new_addrs, sizeof(new_addrs), 0);
    rewrite_ports(skb, UDP6_OFF, UDP6_CSUM_OFF, old_ports, e);

    count(e, udp_len, seq);
    return send(skb, e);
}

// "classifier": the section name aya 0.13 reads as a tc program.
SEC("classifier")
int relay_fwd(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    // A GSO/GRO super-packet carries several datagrams under one header: one count,
    // one length check would be wrong for all of them.
    if (skb->gso_segs > 1)
        return NEXT;
    if (data + ETH_LEN > data_end)
        return NEXT;
    struct ethhdr *eth = data;
    if (eth->h_proto == __builtin_bswap16(ETH_P_IP))
        return forward4(skb, data, data_end);
    if (eth->h_proto == __builtin_bswap16(ETH_P_IPV6))
        return forward6(skb, data, data_end);
    return NEXT;
}

// Offered under the GPL as well (see the top), so GPL-only helpers stay usable.
char LICENSE[] SEC("license") = "GPL";
