// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
//
// The relay's kernel fast path: a tc (TCX ingress) program that forwards latched
// UDP media streams without waking the relay process.
//
// It looks up each IPv4 UDP datagram's (source, destination) in FLOWS. On a hit (and,
// for RTP entries, an RTP packet carrying the expected SSRC), it rewrites the source
// to the relay's outgoing port and the destination to the latched peer, patches the IP
// and UDP checksums, counts the packet in the entry and sends it on: out of the
// interface the route names (bpf_fib_lookup, MAC rewrite, bpf_redirect), or, for a
// destination on this host, back into the local stack (TC_ACT_OK after the rewrite).
//
// Everything else (a miss, IP options, fragments, non-UDP, RTCP, a foreign SSRC, a
// route the kernel cannot forward on: IP forwarding off on the incoming interface, no
// neighbour entry yet) passes on untouched, so the relay's socket receives it exactly
// as without this program.
//
// Kept in sync by hand with crates/ebpf/src/flows.rs (RawKey, RawEntry).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
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
static long (*bpf_fib_lookup)(void *ctx, struct bpf_fib_lookup *params, int plen,
                              __u32 flags) = (void *)BPF_FUNC_fib_lookup;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;

// Network byte order throughout, as in the packet.
struct flow_key {
    __u32 src_ip;
    __u32 dst_ip;
    __u16 src_port;
    __u16 dst_port;
};

#define FLOW_RTP 1 // forward only RTP (not RTCP) carrying `ssrc`
#define FLOW_LOCAL 2 // the destination is an address of this host: no route lookup

struct flow_entry {
    __u32 new_src_ip;
    __u32 new_dst_ip;
    __u16 new_src_port;
    __u16 new_dst_port;
    __u32 ssrc;
    __u32 flags;
    __u32 last_seq; // RTP sequence number of the last forward, as in the packet
    __u64 packets;
    __u64 bytes; // UDP payload, as the relay counts
    __u64 last_ns; // bpf_ktime_get_ns (CLOCK_MONOTONIC) of the last forward
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
#define AF_INET 2
// What the program does not handle goes on to the next program on the interface
// (another relay's, say), and past the last one up the stack as if nobody looked;
// TC_ACT_OK would end the chain and hide the datagram from the programs after it.
#define NEXT TC_ACT_UNSPEC

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
    // Ethernet + IPv4 without options + UDP.
    if (data + RTP_OFF > data_end)
        return NEXT;
    struct ethhdr *eth = data;
    if (eth->h_proto != __builtin_bswap16(ETH_P_IP))
        return NEXT;
    struct iphdr *ip = data + IP_OFF;
    if (ip->ihl != 5 || ip->version != 4 || ip->protocol != 17)
        return NEXT;
    // Any fragment (more-fragments flag or an offset) goes up whole to the stack.
    if (ip->frag_off & __builtin_bswap16(0x3fff))
        return NEXT;
    struct udphdr *udp = data + UDP_OFF;
    struct flow_key key = {
        .src_ip = ip->saddr,
        .dst_ip = ip->daddr,
        .src_port = udp->source,
        .dst_port = udp->dest,
    };
    struct flow_entry *e = bpf_map_lookup_elem(&FLOWS, &key);
    if (!e)
        return NEXT;
    __u8 *rtp = data + RTP_OFF;
    __u16 seq = 0;
    if (e->flags & FLOW_RTP) {
        // The 12 bytes of a fixed RTP header.
        if ((void *)(rtp + 12) > data_end)
            return NEXT;
        // RTP version 2; RTCP multiplexed on the port (RFC 5761 §4: 192..223) and a
        // foreign SSRC stay with the relay's latching and reports.
        if ((rtp[0] >> 6) != 2 || (rtp[1] >= 192 && rtp[1] <= 223))
            return NEXT;
        __u32 ssrc = *(__u32 *)(rtp + 8);
        if (ssrc != e->ssrc)
            return NEXT;
        seq = *(__u16 *)(rtp + 2);
    }
    __u16 udp_len = __builtin_bswap16(udp->len);
    if (udp_len < sizeof(struct udphdr))
        return NEXT;

    // A destination on this host goes back into the local stack after the rewrite; any
    // other is routed as a router would from the interface the datagram came in on
    // (so that interface must forward), out of the interface the route names.
    struct bpf_fib_lookup fib = {};
    int local = e->flags & FLOW_LOCAL;
    if (!local) {
        fib.family = AF_INET;
        fib.l4_protocol = 17;
        fib.tot_len = __builtin_bswap16(ip->tot_len);
        fib.ipv4_src = e->new_src_ip;
        fib.ipv4_dst = e->new_dst_ip;
        fib.ifindex = skb->ifindex;
        // Anything but a resolved route (forwarding off on this interface, no
        // neighbour entry yet, a blackhole) goes up untouched and the relay forwards
        // it from its socket.
        if (bpf_fib_lookup(skb, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
            return NEXT;
    }

    __u32 old_src = ip->saddr, old_dst = ip->daddr;
    __u16 old_sport = udp->source, old_dport = udp->dest;
    __u32 new_src = e->new_src_ip, new_dst = e->new_dst_ip;
    __u16 new_sport = e->new_src_port, new_dport = e->new_dst_port;

    // UDP first (its pseudo-header covers the addresses), then IP.
    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_src, new_src,
                        BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_dst, new_dst,
                        BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_sport, new_sport, BPF_F_MARK_MANGLED_0 | 2);
    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_dport, new_dport, BPF_F_MARK_MANGLED_0 | 2);
    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_src, new_src, 4);
    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_dst, new_dst, 4);
    __u32 addrs[2] = {new_src, new_dst};
    bpf_skb_store_bytes(skb, IP_SRC_OFF, addrs, sizeof(addrs), 0);
    __u16 ports[2] = {new_sport, new_dport};
    bpf_skb_store_bytes(skb, UDP_OFF, ports, sizeof(ports), 0);

    __sync_fetch_and_add(&e->packets, 1);
    __sync_fetch_and_add(&e->bytes, udp_len - sizeof(struct udphdr));
    e->last_ns = bpf_ktime_get_ns();
    e->last_seq = seq;

    if (local)
        return TC_ACT_OK;
    __u8 macs[12];
    __builtin_memcpy(macs, fib.dmac, 6);
    __builtin_memcpy(macs + 6, fib.smac, 6);
    bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0);
    return bpf_redirect(fib.ifindex, 0);
}

// bpf_fib_lookup is GPL-only; this file is also offered under the GPL (see the top).
char LICENSE[] SEC("license") = "GPL";
