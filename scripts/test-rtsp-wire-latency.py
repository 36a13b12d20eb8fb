#!/usr/bin/env python3
"""Tests of scripts/rtsp-wire-latency.py on small captures written here, segment by
segment, with known times: what it pairs, what it adds up, and the capture formats it
reads. Run: python3 scripts/test-rtsp-wire-latency.py (scripts/test.sh does)."""

import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "rtsp-wire-latency.py")
_spec = importlib.util.spec_from_file_location("rtsp_wire_latency", SCRIPT)
wl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wl)

FRONT, B1, B2 = 8554, 9001, 9002
LO = "127.0.0.1"


def ipv4(src, dst, tcp):
    head = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                       bytes(int(x) for x in src.split(".")), bytes(int(x) for x in dst.split(".")))
    return head, 0x0800


def ipv6(src, dst, tcp):
    head = struct.pack(">IHBB16s16s", 6 << 28, len(tcp), 6, 64, src, dst)
    return head, 0x86DD


def link_header(link, etype):
    if link == wl.LINKTYPE_ETHERNET:
        return b"\0" * 12 + struct.pack(">H", etype)
    if link == wl.LINKTYPE_LINUX_SLL:
        return struct.pack(">HHH8sH", 0, 772, 0, b"", etype)
    if link == wl.LINKTYPE_LINUX_SLL2:
        return struct.pack(">HHIHBB8s", etype, 0, 1, 772, 0, 0, b"")
    raise AssertionError(link)


class Capture:
    """Frames of TCP connections with chosen times, written as a libpcap file."""

    def __init__(self, link=wl.LINKTYPE_ETHERNET, v6=False):
        self.link, self.v6, self.frames = link, v6, []

    def connection(self, client_port, server_port):
        return Connection(self, client_port, server_port)

    def add(self, ts_us, src, dst, seq, flags, payload):
        tcp = struct.pack(">HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, 0, 5 << 4, flags, 65535, 0, 0)
        tcp += payload
        if self.v6:
            ip, etype = ipv6(src[0], dst[0], tcp)
        else:
            ip, etype = ipv4(src[0], dst[0], tcp)
        self.frames.append((int(round(ts_us * 1000)), link_header(self.link, etype) + ip + tcp))

    def pcap(self, nano=False, big_endian=False, snaplen=65535):
        order = ">" if big_endian else "<"
        magic = 0xA1B23C4D if nano else 0xA1B2C3D4
        out = io.BytesIO()
        out.write(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, self.link))
        for ts, frame in sorted(self.frames, key=lambda f: f[0]):
            cut = frame[:snaplen]
            frac = ts % 1_000_000_000 if nano else (ts % 1_000_000_000) // 1000
            out.write(struct.pack(order + "IIII", ts // 1_000_000_000, frac, len(cut), len(frame)))
            out.write(cut)
        return out.getvalue()

    def analyse(self, backends=(B1, B2), **kw):
        data = self.pcap(**kw)
        return wl.analyse(wl.read_pcap(io.BytesIO(data)), FRONT, list(backends))


class Connection:
    def __init__(self, cap, client_port, server_port):
        addr = (bytes(15) + b"\1") if cap.v6 else LO
        self.cap = cap
        self.client, self.server = (addr, client_port), (addr, server_port)
        self.seq = {self.client: 1000, self.server: 900_000}

    def _send(self, ts_us, frm, payload, flags=0x18):
        to = self.server if frm == self.client else self.client
        self.cap.add(ts_us, frm, to, self.seq[frm], flags, payload)
        self.seq[frm] += len(payload)

    def up(self, ts_us, payload):
        self._send(ts_us, self.client, payload)

    def down(self, ts_us, payload):
        self._send(ts_us, self.server, payload)

    def open(self, ts_us):
        self._send(ts_us, self.client, b"", flags=0x02)
        self.seq[self.client] += 1
        self._send(ts_us + 1, self.server, b"", flags=0x12)
        self.seq[self.server] += 1


SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=stub\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\nCSeq: 99\r\n"


def request(method, cseq, session=None):
    head = "%s rtsp://127.0.0.1:%d/cam RTSP/1.0\r\nCSeq: %d\r\n" % (method, FRONT, cseq)
    if session:
        head += "Session: %s\r\n" % session
    return (head + "\r\n").encode()


def answer(cseq, body=b"", session=None):
    head = "RTSP/1.0 200 OK\r\nCSeq: %d\r\n" % cseq
    if session:
        head += "Session: %s\r\n" % session
    if body:
        head += "Content-Type: application/sdp\r\nContent-Length: %d\r\n" % len(body)
    return (head + "\r\n").encode() + body


METHODS = ("DESCRIBE", "SETUP", "PLAY", "TEARDOWN")


def session(client, link, t, cseq, added_us, backend_us=300, think_us=500, sdp=SDP):
    """One churn session: each request enters at the client side and leaves for the
    back end `added_us[2k]` later; each answer enters from the back end
    `backend_us` after that and leaves for the client `added_us[2k+1]` later.
    Returns the time the next session may start."""
    for k, method in enumerate(METHODS):
        c = cseq + k
        client.up(t, request(method, c, None if k == 0 else "lb1"))
        t += added_us[2 * k]
        link.up(t, request(method, c, None if k == 0 else "be1"))
        t += backend_us
        link.down(t, answer(c, sdp if k == 0 else b"", None if k == 0 else "be1"))
        t += added_us[2 * k + 1]
        client.down(t, answer(c, sdp if k == 0 else b"", None if k == 0 else "lb1"))
        t += think_us
    return t


HOPS = [100, 200, 50, 60, 70, 80, 90, 10]  # µs: requests 100 50 70 90, answers 200 60 80 10


class OneSession(unittest.TestCase):
    def check_one_session(self, r):
        self.assertEqual((r["messages_in"], r["messages_out"]), (8, 8))
        self.assertEqual((r["matched"], r["unmatched_in"], r["unmatched_out"]), (8, 0, 0))
        self.assertEqual(r["backend_connections_unmapped"], 0)
        # Nearest rank over four values: p50 the second, p90 and above the fourth.
        self.assertAlmostEqual(r["requests_ms"]["p50"], 0.070)
        self.assertAlmostEqual(r["requests_ms"]["max"], 0.100)
        self.assertAlmostEqual(r["answers_ms"]["p50"], 0.060)
        self.assertAlmostEqual(r["answers_ms"]["p99.9"], 0.200)
        self.assertEqual((r["sessions"], r["session_hops"]), (1, [8]))
        self.assertAlmostEqual(r["sessions_ms"]["p50"], sum(HOPS) / 1000)

    def test_each_hop_is_timed_and_the_session_sums_its_eight(self):
        cap = Capture()
        session(cap.connection(40001, FRONT), cap.connection(50001, B1), 1_000_000, 1, HOPS)
        self.check_one_session(cap.analyse())

    def test_formats_nanosecond_big_endian_cooked_and_ipv6(self):
        for link in (wl.LINKTYPE_ETHERNET, wl.LINKTYPE_LINUX_SLL, wl.LINKTYPE_LINUX_SLL2):
            for v6 in (False, True):
                for nano, big in ((False, False), (True, False), (True, True)):
                    with self.subTest(link=link, v6=v6, nano=nano, big=big):
                        cap = Capture(link, v6)
                        session(cap.connection(40001, FRONT), cap.connection(50001, B1),
                                1_000_000, 1, HOPS)
                        self.check_one_session(cap.analyse(nano=nano, big_endian=big))

    def test_nanoseconds_are_kept(self):
        cap = Capture()
        c, l = cap.connection(40001, FRONT), cap.connection(50001, B1)
        c.up(1_000_000, request("OPTIONS", 1))
        l.up(1_000_000.123, request("OPTIONS", 1))
        r = cap.analyse(nano=True)
        self.assertEqual(r["matched"], 1)
        self.assertAlmostEqual(r["requests_ms"]["max"], 0.000123)
        r = cap.analyse(nano=False)
        self.assertEqual(r["requests_ms"]["max"], 0.0, "microsecond files round the time")

    def test_a_snap_length_cutting_a_body_keeps_the_stream_in_step(self):
        big = SDP + b"a=x-pad:" + b"p" * 600 + b"\r\n"
        cap = Capture()
        session(cap.connection(40001, FRONT), cap.connection(50001, B1), 1_000_000, 1, HOPS, sdp=big)
        self.check_one_session(cap.analyse(snaplen=200))

    def test_pcapng_and_junk_are_refused_with_a_reason(self):
        with self.assertRaisesRegex(wl.CaptureError, "pcapng"):
            list(wl.read_pcap(io.BytesIO(struct.pack("<I", 0x0A0D0D0A) + bytes(40))))
        with self.assertRaisesRegex(wl.CaptureError, "not a libpcap"):
            list(wl.read_pcap(io.BytesIO(bytes(40))))
        data = Capture().pcap()[:20] + b"\0\0\0\0"
        data = data[:20] + struct.pack("<I", 147)
        with self.assertRaisesRegex(wl.CaptureError, "link type 147"):
            wl.analyse(wl.read_pcap(io.BytesIO(data + struct.pack("<IIII", 0, 0, 4, 4) + bytes(4))),
                       FRONT, [B1])


class Segments(unittest.TestCase):
    def test_a_message_split_over_segments_takes_its_first_segments_time(self):
        cap = Capture()
        c, l = cap.connection(40001, FRONT), cap.connection(50001, B1)
        msg = request("DESCRIBE", 1)
        c.up(1_000_000, msg[:10])
        c.up(1_000_400, msg[10:])
        l.up(1_000_500, msg)
        r = cap.analyse()
        self.assertEqual(r["matched"], 1)
        self.assertAlmostEqual(r["requests_ms"]["max"], 0.5)

    def test_several_messages_in_one_segment_are_cut_by_content_length(self):
        # The answer's body holds "CSeq: 99": only Content-Length tells it is body.
        cap = Capture()
        c, l = cap.connection(40001, FRONT), cap.connection(50001, B1)
        c.up(1_000_000, request("DESCRIBE", 1) + request("OPTIONS", 2))
        l.up(1_000_100, request("DESCRIBE", 1))
        l.up(1_000_150, request("OPTIONS", 2))
        l.down(1_000_300, answer(1, SDP) + b"$\x00\x00\x03abc" + answer(2))
        c.down(1_000_320, answer(1, SDP))
        c.down(1_000_400, answer(2))
        r = cap.analyse()
        self.assertEqual((r["messages_in"], r["matched"], r["unmatched_in"], r["unmatched_out"]), (4, 4, 0, 0))
        self.assertAlmostEqual(r["requests_ms"]["max"], 0.150, msg="OPTIONS: in with DESCRIBE at 0")
        self.assertAlmostEqual(r["answers_ms"]["max"], 0.100)
        self.assertAlmostEqual(r["answers_ms"]["p50"], 0.020)

    def test_duplicates_are_dropped_and_a_mid_message_start_is_skipped(self):
        cap = Capture()
        c, l = cap.connection(40001, FRONT), cap.connection(50001, B1)
        # The capture begins in the middle of a message: its tail is no message.
        c.up(999_000, b"Session: 7\r\n\r\n")
        c.up(1_000_000, request("PLAY", 5))
        # The same segment again (a retransmission, or `-i any` seeing it twice).
        c.seq[c.client] -= len(request("PLAY", 5))
        c.up(1_000_050, request("PLAY", 5))
        l.up(1_000_100, request("PLAY", 5))
        r = cap.analyse()
        self.assertEqual((r["messages_in"], r["matched"]), (1, 1))
        self.assertAlmostEqual(r["requests_ms"]["max"], 0.100)
        self.assertEqual(r["bytes_not_in_messages"], len(b"Session: 7\r\n\r\n"))

    def test_after_a_segment_the_capture_lost_the_stream_counts_on_from_the_next(self):
        cap = Capture()
        c, l = cap.connection(40001, FRONT), cap.connection(50001, B1)
        c.up(1_000_000, request("OPTIONS", 1))
        l.up(1_000_100, request("OPTIONS", 1))
        c.seq[c.client] += 50  # 50 bytes the kernel dropped before tcpdump read them
        # After the gap: a message over two segments, the second one seen twice.
        msg = request("DESCRIBE", 2)
        c.up(1_001_000, msg[:10])
        c.up(1_001_050, msg[10:])
        c.seq[c.client] -= len(msg) - 10
        c.up(1_001_060, msg[10:])
        l.up(1_001_200, msg)
        r = cap.analyse()
        self.assertEqual((r["messages_in"], r["matched"], r["unmatched_in"], r["unmatched_out"]), (2, 2, 0, 0))
        self.assertAlmostEqual(r["requests_ms"]["max"], 0.200, msg="DESCRIBE: its first segment's time")
        self.assertEqual(r["bytes_not_in_messages"], 0)


class Mapping(unittest.TestCase):
    def test_back_end_connections_are_mapped_by_vote_and_sessions_stay_apart(self):
        cap = Capture()
        c1, c2 = cap.connection(40001, FRONT), cap.connection(40002, FRONT)
        # c1's sessions go to two back ends over two connections (as through "stub3");
        # c2 runs the same CSeqs as c1, mostly out of step with it, once in step.
        l1a, l1b = cap.connection(50001, B1), cap.connection(50002, B2)
        l2 = cap.connection(50003, B1)
        t1 = session(c1, l1a, 1_000_000, 1, HOPS)
        session(c1, l1b, t1, 5, [10] * 8)
        # c2's DESCRIBE and its answer run in step with c1's, nearer in time to
        # l1a's than c1's own: two votes for c2, the eight others for c1. Then c2
        # slows down (more than the 5 ms window between messages).
        t2 = session(c2, l2, 1_000_030, 1, [40] * 8, think_us=6000)
        session(c2, l2, t2 + 20_000, 5, [40] * 8, think_us=6000)
        r = cap.analyse()
        self.assertEqual((r["client_connections"], r["backend_connections"]), (2, 3))
        self.assertEqual(r["backend_connections_unmapped"], 0)
        self.assertEqual((r["matched"], r["unmatched_in"], r["unmatched_out"]), (32, 0, 0))
        self.assertEqual(r["sessions"], 4)
        self.assertAlmostEqual(r["sessions_ms"]["max"], sum(HOPS) / 1000)
        self.assertAlmostEqual(r["sessions_ms"]["p50"], 0.320, msg="sums 80, 320, 320, 660")
        self.assertAlmostEqual(r["requests_ms"]["p50"], 0.040)

    def test_answers_of_the_balancer_itself_and_lost_hops_are_unpaired(self):
        cap = Capture()
        c, l = cap.connection(40001, FRONT), cap.connection(50001, B1)
        t = session(c, l, 1_000_000, 1, HOPS)
        # An unknown session: the balancer answers 454 itself, nothing goes out.
        c.up(t, request("PLAY", 5, "nope"))
        c.down(t + 30, b"RTSP/1.0 454 Session Not Found\r\nCSeq: 5\r\n\r\n")
        # A session whose SETUP answer never reaches the client is not summed.
        t += 1000
        for k, method in enumerate(METHODS):
            c.up(t, request(method, 6 + k))
            l.up(t + 20, request(method, 6 + k))
            l.down(t + 100, answer(6 + k))
            if method != "SETUP":
                c.down(t + 120, answer(6 + k))
            t += 1000
        r = cap.analyse()
        self.assertEqual(r["unmatched_in"], 2, "the 454's PLAY, the lost SETUP answer")
        self.assertEqual(r["unmatched_out"], 1, "the 454 itself")
        self.assertEqual(r["sessions"], 1)
        self.assertAlmostEqual(r["sessions_ms"]["max"], sum(HOPS) / 1000)

    def test_a_new_connection_on_the_same_ports_is_another_connection(self):
        cap = Capture()
        c, l = cap.connection(40001, FRONT), cap.connection(50001, B1)
        c.open(900_000)
        l.open(900_010)
        session(c, l, 1_000_000, 1, HOPS)
        c2, l2 = cap.connection(40001, FRONT), cap.connection(50001, B1)
        c2.open(2_000_000)
        l2.open(2_000_010)
        session(c2, l2, 2_100_000, 1, [20] * 8)
        r = cap.analyse()
        self.assertEqual((r["client_connections"], r["backend_connections"]), (2, 2))
        self.assertEqual((r["matched"], r["sessions"]), (16, 2))


class SlowBursts(unittest.TestCase):
    def test_slow_sessions_together_are_a_burst_and_slow_ones_apart_are_not(self):
        cap = Capture()
        t = 1_000_000
        # 12 client connections: 10 slow sessions together (a stall), 2 slow ones
        # far apart, then fast ones.
        for i in range(10):
            session(cap.connection(41000 + i, FRONT), cap.connection(51000 + i, B1),
                    t + i * 1000, 1, [150] * 8)
        session(cap.connection(41100, FRONT), cap.connection(51100, B1), t + 200_000, 1, [150] * 8)
        session(cap.connection(41101, FRONT), cap.connection(51101, B1), t + 400_000, 1, [150] * 8)
        session(cap.connection(41102, FRONT), cap.connection(51102, B1), t + 600_000, 1, [20] * 8)
        r = cap.analyse()
        self.assertEqual(r["sessions"], 13)
        slow = r["slow_sessions"]
        self.assertEqual((slow["slow"], slow["in_bursts"], slow["bursts"]), (12, 10, 1))
        self.assertAlmostEqual(slow["burst_starts_s"][0], 1.0)


class CommandLine(unittest.TestCase):
    def test_text_and_json_reports(self):
        cap = Capture()
        session(cap.connection(40001, FRONT), cap.connection(50001, B1), 1_000_000, 1, HOPS)
        with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
            f.write(cap.pcap())
            f.flush()
            args = [sys.executable, SCRIPT, f.name, "--front", str(FRONT), "--backend", str(B1)]
            out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
            lines = out.splitlines()
            self.assertEqual(len(lines), 5)
            self.assertTrue(all(line.startswith("wire") for line in lines))
            self.assertIn("8 paired, 0 in and 0 out unpaired", lines[0])
            self.assertIn("per session (1, DESCRIBE to TEARDOWN answer, 8 hops): p50 0.660", lines[3])
            self.assertIn("sessions over 0.8 ms: 0, of which 0 in 0 bursts", lines[4])
            j = json.loads(subprocess.run(args + ["--json"], capture_output=True, text=True,
                                          check=True).stdout)
            self.assertAlmostEqual(j["sessions_ms"]["p99"], 0.66)
            bad = subprocess.run(args[:2] + ["/nonexistent.pcap"] + args[3:], capture_output=True, text=True)
            self.assertEqual(bad.returncode, 1)
            self.assertIn("rtsp-wire-latency:", bad.stderr)


if __name__ == "__main__":
    unittest.main()
