#!/usr/bin/env python3
"""The time an RTSP proxy (mediagate's balancer) adds to each message, read from a
packet capture taken on the proxy's machine.

Why: an end-to-end session time through the balancer minus one direct to the back end
also holds what the balancer does not do (the load generator and the back end sharing
its CPUs, other work of the machine or the host taking a CPU away). The capture times
each message where it enters the balancer and where it leaves it, so only the
balancer's own time (and the kernel's loopback path between those two points) is in
the difference.

Input: a libpcap file (micro- or nanosecond timestamps, either byte order; link types
Ethernet as on `lo`, Linux cooked v1 and v2 as on `any`, raw IP and BSD loopback),
IPv4 or IPv6, TCP. `--front PORT` is the balancer's listen port, `--backend PORT`
(repeatable) the back ends' ports. Every segment to or from those ports is read:
  client -> front     a message entering the balancer from a client
  front -> client     a message leaving it for the client
  balancer -> backend a message leaving it for a back end
  backend -> balancer a message entering it from a back end
Each direction of each connection is reassembled by TCP sequence number (a duplicate
is dropped, as is a segment seen twice on `any`) and cut into RTSP messages by their
heads and `Content-Length`; interleaved `$` frames are skipped. A message's time is
that of the segment holding its first byte. A capture cut short by the snap length
(`tcpdump -s`) is fine: the missing bytes are counted, not needed, as long as each
message's head was captured.

Pairing: the balancer keeps one back-end connection per back end a client connection
uses, and passes CSeq through. So each back-end connection is mapped to the client
connection whose messages with the same method (or answer) and CSeq it carries
within `--window-ms` most often (a vote: connections started together reuse the same
CSeqs at nearly the same times, but seldom for every message; equal votes go to the
nearer in time). Then every message
entering the balancer is paired with the first message after it with the same kind
and CSeq that leaves on the other side of the same client connection.

Report: messages in and out, matched and not; per-message added latency percentiles
(p50 p90 p99 p99.9 max, nearest rank) for requests and for answers; and per session:
on one client connection, a DESCRIBE request through the TEARDOWN answer, each
request followed by its answer, all hops matched, the sum of those hops (8 for
DESCRIBE, SETUP, PLAY, TEARDOWN); and how the sessions adding more than `--slow-ms`
fall in time: how many come in bursts of 10 or more, each starting within 50 ms of
the one before (something that stopped the balancer for everyone at once, such as
another task or the host taking its CPU) rather than one by one. `--json` prints one
object instead.

What it does not: see inside the balancer (a message's time from the kernel's
receive to its send is all "added"); pair messages of an HTTP-tunnelled session
(base64 after the tunnel's heads); count sessions whose requests a client pipelines
on one connection (it needs each answer before the next request, as
`mediagate-loadgen churn` does); read pcapng (write the capture with `tcpdump -w`).

Exit status: 0 when it reported, 1 when the capture could not be read.
"""

import argparse
import bisect
import collections
import json
import math
import re
import struct
import sys

# Link-layer header types (https://www.tcpdump.org/linktypes.html) this reads.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100

TCP_FIN, TCP_SYN, TCP_ACK = 0x01, 0x02, 0x10

# A head longer than this without its blank line is not RTSP: the stream is dropped
# until a segment starts a new message.
MAX_HEAD = 64 * 1024

# What a segment that starts a message begins with: an answer's status line, a
# request line's method (upper case and a space), or an interleaved frame.
MESSAGE_START = re.compile(rb"RTSP/\d\.\d \d{3}|[A-Z][A-Z_-]* \S|\$")
HEADER_LINE = re.compile(rb"^([A-Za-z0-9-]+)[ \t]*:[ \t]*(.*?)[ \t]*$")

Segment = collections.namedtuple("Segment", "ts src dst seq flags payload")
# kind: the request's method, or "answer"; conn: the connection as (client end,
# balancer end) or (balancer end, back-end end); side: "client" or "backend";
# way: "in" to the balancer, "out" of it.
Message = collections.namedtuple("Message", "ts side way conn kind cseq")


class CaptureError(Exception):
    """The capture cannot be read (not libpcap, an unknown link type, cut short)."""


def read_pcap(f):
    """Yields (time in ns, link type, frame bytes) for each record of a libpcap file."""
    head = f.read(24)
    if len(head) < 24:
        raise CaptureError("shorter than a pcap file header")
    magic_le = struct.unpack("<I", head[:4])[0]
    magic_be = struct.unpack(">I", head[:4])[0]
    if magic_le in (0xA1B2C3D4, 0xA1B23C4D):
        order, magic = "<", magic_le
    elif magic_be in (0xA1B2C3D4, 0xA1B23C4D):
        order, magic = ">", magic_be
    elif magic_le == 0x0A0D0D0A:
        raise CaptureError("pcapng is not read: capture with `tcpdump -w` (libpcap format)")
    else:
        raise CaptureError("not a libpcap file (magic %08x)" % magic_le)
    frac_ns = 1 if magic == 0xA1B23C4D else 1000
    linktype = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    while True:
        h = f.read(16)
        if not h:
            return
        if len(h) < 16:
            raise CaptureError("the capture ends inside a record header")
        sec, frac, incl, _orig = record.unpack(h)
        data = f.read(incl)
        if len(data) < incl:
            raise CaptureError("the capture ends inside a record")
        yield sec * 1_000_000_000 + frac * frac_ns, linktype, data


def network_layer(linktype, frame):
    """(ethertype, offset of the IP header) of a frame, or None if it is not IP."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        etype, off = struct.unpack(">H", frame[12:14])[0], 14
        while etype == ETHERTYPE_VLAN and len(frame) >= off + 4:
            etype, off = struct.unpack(">H", frame[off + 2 : off + 4])[0], off + 4
        return etype, off
    if linktype == LINKTYPE_LINUX_SLL:
        return (struct.unpack(">H", frame[14:16])[0], 16) if len(frame) >= 16 else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return (struct.unpack(">H", frame[0:2])[0], 20) if len(frame) >= 20 else None
    if linktype == LINKTYPE_RAW:
        if not frame:
            return None
        return (ETHERTYPE_IPV4 if frame[0] >> 4 == 4 else ETHERTYPE_IPV6), 0
    if linktype == LINKTYPE_NULL:
        if len(frame) < 5:
            return None
        return (ETHERTYPE_IPV4 if frame[4] >> 4 == 4 else ETHERTYPE_IPV6), 4
    raise CaptureError("link type %d is not read (Ethernet, Linux cooked v1/v2, raw IP, null are)" % linktype)


def tcp_segment(ts, linktype, frame):
    """The TCP segment in a frame, or None. A payload cut by the snap length is padded
    with NUL bytes to the length the IP header gives, so stream offsets stay right."""
    net = network_layer(linktype, frame)
    if net is None:
        return None
    etype, off = net
    if etype == ETHERTYPE_IPV4:
        if len(frame) < off + 20 or frame[off + 9] != 6:
            return None
        ihl = (frame[off] & 0x0F) * 4
        total = struct.unpack(">H", frame[off + 2 : off + 4])[0]
        src_ip = ".".join(str(b) for b in frame[off + 12 : off + 16])
        dst_ip = ".".join(str(b) for b in frame[off + 16 : off + 20])
        tcp_off, ip_end = off + ihl, off + total
    elif etype == ETHERTYPE_IPV6:
        # Only TCP straight after the fixed header (loopback traffic has no extension
        # headers).
        if len(frame) < off + 40 or frame[off + 6] != 6:
            return None
        plen = struct.unpack(">H", frame[off + 4 : off + 6])[0]
        src_ip = frame[off + 8 : off + 24].hex()
        dst_ip = frame[off + 24 : off + 40].hex()
        tcp_off, ip_end = off + 40, off + 40 + plen
    else:
        return None
    if len(frame) < tcp_off + 20:
        return None
    sport, dport, seq = struct.unpack(">HHI", frame[tcp_off : tcp_off + 8])
    doff = (frame[tcp_off + 12] >> 4) * 4
    flags = frame[tcp_off + 13]
    start = tcp_off + doff
    length = ip_end - start
    if length < 0:
        return None
    payload = frame[start : start + length]
    if len(payload) < length:
        payload += b"\0" * (length - len(payload))
    return Segment(ts, (src_ip, sport), (dst_ip, dport), seq, flags, payload)


class Stream:
    """One direction of one TCP connection, reassembled and cut into RTSP messages."""

    def __init__(self):
        self.next_seq = None
        self.synced = False
        self.buf = bytearray()
        self.base = 0  # stream offset of buf[0]
        self.starts = []  # (stream offset, time) of the segments still in buf
        self.dropped_bytes = 0

    def push(self, seg):
        """Takes a segment; returns [(time, kind, cseq)] for the messages it completes."""
        if seg.flags & TCP_SYN:
            dropped = self.dropped_bytes
            self.__init__()
            self.dropped_bytes = dropped
            self.next_seq = (seg.seq + 1) & 0xFFFFFFFF
            return []
        payload, seq = seg.payload, seg.seq
        if not payload:
            return []
        if self.next_seq is None:
            self.next_seq = seq
        ahead = (seq - self.next_seq) & 0xFFFFFFFF
        if ahead >= 1 << 31:
            # Data already taken (a retransmission, or the same packet seen twice).
            behind = (self.next_seq - seq) & 0xFFFFFFFF
            if behind >= len(payload):
                return []
            payload = payload[behind:]
        elif ahead > 0:
            # Bytes the capture does not hold: start again at a message boundary,
            # counting on from this segment.
            self._desync()
            self.next_seq = seq
        end = self.base + len(self.buf)
        self.next_seq = (self.next_seq + len(payload)) & 0xFFFFFFFF
        if not self.synced:
            if not MESSAGE_START.match(payload):
                self.dropped_bytes += len(payload)
                self.base = end + len(payload)
                return []
            self.synced = True
        self.starts.append((end, seg.ts))
        self.buf += payload
        return self._messages()

    def _desync(self):
        self.dropped_bytes += len(self.buf)
        self.base += len(self.buf)
        self.buf = bytearray()
        self.starts = []
        self.synced = False

    def _time_of(self, offset):
        i = bisect.bisect_right(self.starts, (offset, math.inf)) - 1
        return self.starts[max(i, 0)][1]

    def _consume(self, n):
        del self.buf[:n]
        self.base += n
        i = bisect.bisect_right(self.starts, (self.base, math.inf)) - 1
        if i > 0:
            del self.starts[:i]

    def _messages(self):
        out = []
        while self.buf:
            if self.buf[0] == 0x24:  # '$': an interleaved frame
                if len(self.buf) < 4:
                    break
                n = 4 + struct.unpack(">H", self.buf[2:4])[0]
                if len(self.buf) < n:
                    break
                self._consume(n)
                continue
            ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := self.buf.find(sep)) >= 0]
            if not ends:
                if len(self.buf) > MAX_HEAD:
                    self._desync()
                break
            i, seplen = min(ends)
            head = bytes(self.buf[:i])
            parsed = parse_head(head)
            if parsed is None:
                self._desync()
                break
            kind, cseq, body = parsed
            total = i + seplen + body
            if len(self.buf) < total:
                break
            out.append((self._time_of(self.base), kind, cseq))
            self._consume(total)
        return out


def parse_head(head):
    """(kind, CSeq or None, Content-Length) of an RTSP message head, or None if it is
    not one (or the snap length cut it: NUL bytes)."""
    if b"\0" in head:
        return None
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    first = lines[0].split(b" ")
    if first[0].startswith(b"RTSP/"):
        kind = "answer"
    elif len(first) == 3 and first[2].startswith(b"RTSP/"):
        kind = first[0].decode("ascii", "replace")
    else:
        return None
    cseq, length = None, 0
    for line in lines[1:]:
        m = HEADER_LINE.match(line)
        if not m:
            continue
        name = m.group(1).lower()
        if name == b"cseq":
            cseq = m.group(2).decode("ascii", "replace")
        elif name == b"content-length":
            try:
                length = int(m.group(2))
            except ValueError:
                return None
    return kind, cseq, length


def classify(seg, front, backends):
    """(side, way, connection) of a segment, or None when it is not the balancer's."""
    if seg.dst[1] == front:
        return "client", "in", (seg.src, seg.dst)
    if seg.src[1] == front:
        return "client", "out", (seg.dst, seg.src)
    if seg.dst[1] in backends:
        return "backend", "out", (seg.src, seg.dst)
    if seg.src[1] in backends:
        return "backend", "in", (seg.dst, seg.src)
    return None


def messages_of(records, front, backends):
    """Every RTSP message to or from the balancer, in capture order, plus how many
    bytes could not be cut into messages (streams joined mid-message, capture gaps)."""
    streams = {}
    generation = collections.Counter()
    out = []
    for ts, linktype, frame in records:
        seg = tcp_segment(ts, linktype, frame)
        if seg is None:
            continue
        where = classify(seg, front, backends)
        if where is None:
            continue
        side, way, conn = where
        # A connection opened again on the same ports is another connection.
        opener = (side, way) in (("client", "in"), ("backend", "out"))
        if opener and seg.flags & TCP_SYN and not seg.flags & TCP_ACK:
            generation[conn] += 1
        conn = conn + (generation[conn],)
        stream = streams.setdefault((side, way, conn), Stream())
        for t, kind, cseq in stream.push(seg):
            out.append(Message(t, side, way, conn, kind, cseq))
    out.sort(key=lambda m: m.ts)
    dropped = sum(s.dropped_bytes for s in streams.values())
    return out, dropped


def map_backend_connections(msgs, window_ns):
    """{back-end connection: client connection}, by the vote described above."""
    by_key = collections.defaultdict(list)  # (way, kind, cseq) -> [(ts, client conn)]
    for m in msgs:
        if m.side == "client" and m.cseq is not None:
            by_key[(m.way, m.kind, m.cseq)].append((m.ts, m.conn))
    votes = collections.defaultdict(collections.Counter)
    distance = collections.defaultdict(collections.Counter)
    for m in msgs:
        if m.side != "backend" or m.cseq is None:
            continue
        # A message leaving for a back end came in from its client shortly before; an
        # answer coming in from a back end leaves for the client shortly after.
        if m.way == "out":
            lst, lo, hi = by_key.get(("in", m.kind, m.cseq), ()), m.ts - window_ns, m.ts
        else:
            lst, lo, hi = by_key.get(("out", m.kind, m.cseq), ()), m.ts, m.ts + window_ns
        i = bisect.bisect_left(lst, (lo,))
        while i < len(lst) and lst[i][0] <= hi:
            votes[m.conn][lst[i][1]] += 1
            distance[m.conn][lst[i][1]] += abs(lst[i][0] - m.ts)
            i += 1
    # The right client connection has a candidate for (nearly) every message; another
    # one only when its CSeqs happen to run in step. Equal votes go to the nearer.
    return {
        link: min(c, key=lambda client: (-c[client], distance[link][client], client))
        for link, c in votes.items()
    }


Hop = collections.namedtuple("Hop", "client ts kind cseq added_ns")


def pair(msgs, mapping, max_delay_ns):
    """(hops, [(client connection or None, message)] of the messages in that found no
    partner, how many messages out were never matched)."""
    outs = collections.defaultdict(list)  # (client conn, side, kind, cseq) -> times out
    n_out = 0
    for m in msgs:
        if m.way != "out":
            continue
        n_out += 1
        client = m.conn if m.side == "client" else mapping.get(m.conn)
        if client is not None and m.cseq is not None:
            outs[(client, m.side, m.kind, m.cseq)].append(m.ts)
    taken = collections.Counter()
    hops, unmatched_in = [], []
    for m in msgs:
        if m.way != "in":
            continue
        client = m.conn if m.side == "client" else mapping.get(m.conn)
        other = "backend" if m.side == "client" else "client"
        key = (client, other, m.kind, m.cseq)
        lst = outs.get(key, ()) if m.cseq is not None and client is not None else ()
        i = taken[key]
        while i < len(lst) and lst[i] < m.ts:
            i += 1
        if i < len(lst) and lst[i] - m.ts <= max_delay_ns:
            hops.append(Hop(client, m.ts, m.kind, m.cseq, lst[i] - m.ts))
            taken[key] = i + 1
        else:
            taken[key] = i
            unmatched_in.append((client, m))
    return hops, unmatched_in, n_out - len(hops)


def sessions(hops, unmatched_in):
    """[(hop count, summed ns, DESCRIBE's time)] of each complete session (see the
    module doc)."""
    events = collections.defaultdict(list)  # client conn -> [(ts, order, hop or None)]
    for h in hops:
        events[h.client].append((h.ts, 0, h))
    for client, m in unmatched_in:
        if client is not None:
            events[client].append((m.ts, 1, None))
    done = []
    for evs in events.values():
        evs.sort(key=lambda e: (e[0], e[1]))
        method_of = {}
        cur = None  # [hops so far, sum, CSeq awaiting its answer, DESCRIBE's time]
        for _, _, h in evs:
            if h is None:
                cur = None
                continue
            if h.kind != "answer":
                method_of[h.cseq] = h.kind
                if h.kind == "DESCRIBE":
                    cur = [1, h.added_ns, h.cseq, h.ts]
                elif cur is not None and cur[2] is None:
                    cur = [cur[0] + 1, cur[1] + h.added_ns, h.cseq, cur[3]]
                else:
                    cur = None
            elif cur is not None and cur[2] == h.cseq:
                cur = [cur[0] + 1, cur[1] + h.added_ns, None, cur[3]]
                if method_of.get(h.cseq) == "TEARDOWN":
                    done.append((cur[0], cur[1], cur[3]))
                    cur = None
            else:
                cur = None
    return done


def slow_bursts(sess, slow_ns, gap_ns=50_000_000, burst=10):
    """How the sessions slower than `slow_ns` fall in time: how many there are, and
    how many of them come in bursts (at least `burst` slow sessions, each starting
    within `gap_ns` of the one before). Slow sessions in bursts point at something
    that stopped the balancer (or its CPU) for everyone at once, such as another task
    or the host taking its CPU; slow sessions spread out point at the work itself."""
    starts = sorted(ts for _, added, ts in sess if added > slow_ns)
    groups = []
    for ts in starts:
        if groups and ts - groups[-1][-1] <= gap_ns:
            groups[-1].append(ts)
        else:
            groups.append([ts])
    big = [g for g in groups if len(g) >= burst]
    return {"over_ms": slow_ns / 1e6, "slow": len(starts), "in_bursts": sum(len(g) for g in big),
            "bursts": len(big), "burst_starts_s": [round(g[0] / 1e9, 3) for g in big]}


def percentiles(values_ns):
    """Nearest-rank p50, p90, p99, p99.9 and max, in milliseconds (None when empty)."""
    if not values_ns:
        return None
    v = sorted(values_ns)

    def at(p):
        return v[max(0, math.ceil(p * len(v)) - 1)] / 1e6

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p99.9": at(0.999), "max": v[-1] / 1e6}


def analyse(records, front, backends, window_ms=5.0, max_delay_ms=1000.0, slow_ms=0.8):
    """The report as a dict (what `--json` prints)."""
    msgs, dropped = messages_of(records, front, set(backends))
    mapping = map_backend_connections(msgs, int(window_ms * 1e6))
    hops, unmatched_in, unmatched_out = pair(msgs, mapping, int(max_delay_ms * 1e6))
    sess = sessions(hops, unmatched_in)
    backend_conns = {m.conn for m in msgs if m.side == "backend"}
    n_in = sum(1 for m in msgs if m.way == "in")
    return {
        "front": front,
        "backends": sorted(backends),
        "messages_in": n_in,
        "messages_out": len(msgs) - n_in,
        "matched": len(hops),
        "unmatched_in": len(unmatched_in),
        "unmatched_out": unmatched_out,
        "without_cseq": sum(1 for m in msgs if m.cseq is None),
        "bytes_not_in_messages": dropped,
        "client_connections": len({m.conn for m in msgs if m.side == "client"}),
        "backend_connections": len(backend_conns),
        "backend_connections_unmapped": len(backend_conns - set(mapping)),
        "requests_ms": percentiles([h.added_ns for h in hops if h.kind != "answer"]),
        "requests": sum(1 for h in hops if h.kind != "answer"),
        "answers_ms": percentiles([h.added_ns for h in hops if h.kind == "answer"]),
        "answers": sum(1 for h in hops if h.kind == "answer"),
        "sessions": len(sess),
        "session_hops": sorted({n for n, _, _ in sess}),
        "sessions_ms": percentiles([s for _, s, _ in sess]),
        "slow_sessions": slow_bursts(sess, int(slow_ms * 1e6)),
    }


def text(r):
    def pct(p):
        if p is None:
            return "none"
        return "p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f ms" % (
            p["p50"], p["p90"], p["p99"], p["p99.9"], p["max"])

    counts = r["session_hops"]
    if not counts:
        hops = "no"
    elif len(counts) == 1:
        hops = str(counts[0])
    else:
        hops = "%d-%d" % (counts[0], counts[-1])
    return "\n".join([
        "wire: %d messages in, %d out; %d paired, %d in and %d out unpaired (%d without CSeq); "
        "%d client and %d back-end connections (%d back-end not mapped)" % (
            r["messages_in"], r["messages_out"], r["matched"], r["unmatched_in"], r["unmatched_out"],
            r["without_cseq"], r["client_connections"], r["backend_connections"],
            r["backend_connections_unmapped"]),
        "wire added per request (%d): %s" % (r["requests"], pct(r["requests_ms"])),
        "wire added per answer (%d): %s" % (r["answers"], pct(r["answers_ms"])),
        "wire added per session (%d, DESCRIBE to TEARDOWN answer, %s hops): %s" % (
            r["sessions"], hops, pct(r["sessions_ms"])),
        "wire sessions over %.1f ms: %d, of which %d in %d bursts (10 or more, each within "
        "50 ms of the one before)" % (
            r["slow_sessions"]["over_ms"], r["slow_sessions"]["slow"],
            r["slow_sessions"]["in_bursts"], r["slow_sessions"]["bursts"]),
    ]) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pcap", help="libpcap capture file")
    ap.add_argument("--front", type=int, required=True, help="the balancer's listen port")
    ap.add_argument("--backend", type=int, action="append", required=True,
                    help="a back end's port (repeatable)")
    ap.add_argument("--window-ms", type=float, default=5.0,
                    help="how far apart a message in and out may be to vote for a connection mapping")
    ap.add_argument("--max-delay-ms", type=float, default=1000.0,
                    help="the longest time a message may spend in the balancer and still be paired")
    ap.add_argument("--slow-ms", type=float, default=0.8,
                    help="sessions adding more than this are counted as slow, and their bursts")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    try:
        with open(args.pcap, "rb") as f:
            r = analyse(read_pcap(f), args.front, args.backend, args.window_ms, args.max_delay_ms,
                        args.slow_ms)
    except (OSError, CaptureError) as e:
        print("rtsp-wire-latency: %s" % e, file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(r) + "\n" if args.json else text(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
