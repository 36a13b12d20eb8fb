#!/usr/bin/python3
"""rtspsrc_client.py: read an RTSP URL with GStreamer's rtspsrc and report what decoded.

Run it with Debian's /usr/bin/python3 (the GStreamer GObject bindings live there).

  rtspsrc_client.py URL [--protocols tcp|udp|http] [--seconds S] [--user U --password P]
                        [--until-video N --until-audio M]

Each stream rtspsrc exposes goes through decodebin into a fakesink; decoded buffers are
counted per media type. After --seconds (or on EOS, on an error, or as soon as the
--until-* counts are reached) it prints ONE JSON object on stdout and exits 0:
  {"video_buffers":45,"audio_buffers":140,"streams":[{"media":"video","encoding":"H264"}],
   "errors":[],"warnings":[],"eos":false,"elapsed":3.01}
Exit status 2 means the script itself could not run (bad arguments, missing plugins).

Transport: tcp = interleaved, udp = unicast UDP, http = RTSP over HTTP tunnel (rtsph://).
It does not seek, pause, or judge the media: it only counts.
"""

import argparse
import json
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--protocols", choices=["tcp", "udp", "http"], default="tcp")
    p.add_argument("--seconds", type=float, default=3.0, help="how long to read after start")
    p.add_argument("--user", default=None)
    p.add_argument("--password", default=None)
    p.add_argument("--latency", type=int, default=200, help="rtspsrc jitterbuffer ms")
    p.add_argument("--proxy", default=None,
                   help="host:port of an RTSP proxy; rtspsrc then sends every request, with "
                        "the absolute URL, to it (a forward-proxy client)")
    p.add_argument("--until-video", type=int, default=0,
                   help="stop early once this many video buffers decoded (with --until-audio)")
    p.add_argument("--until-audio", type=int, default=0,
                   help="stop early once this many audio buffers decoded (with --until-video)")
    args = p.parse_args(argv)
    Gst.init(None)

    url = args.url
    if args.protocols == "http":
        # rtspsrc tunnels over HTTP when the scheme says so.
        if url.startswith("rtsp://"):
            url = "rtsph://" + url[len("rtsp://"):]
        protocols = "tcp"
    else:
        protocols = args.protocols

    loop = GLib.MainLoop()
    report = {"video_buffers": 0, "audio_buffers": 0, "streams": [], "errors": [],
              "warnings": [], "eos": False, "elapsed": 0.0}
    pipeline = Gst.Pipeline.new("client")
    src = Gst.ElementFactory.make("rtspsrc", "src")
    if src is None:
        sys.stderr.write("rtspsrc is missing (Debian: gstreamer1.0-plugins-good)\n")
        return 2
    src.set_property("location", url)
    src.set_property("protocols", protocols)
    src.set_property("latency", args.latency)
    if args.proxy:
        src.set_property("proxy", args.proxy)
    src.set_property("tcp-timeout", 5000000)
    src.set_property("timeout", 5000000)
    if args.user is not None:
        src.set_property("user-id", args.user)
    if args.password is not None:
        src.set_property("user-pw", args.password)
    pipeline.add(src)

    early = args.until_video > 0 or args.until_audio > 0
    stopping = []

    def counter(kind):
        def probe(_pad, _info):
            report[kind] += 1
            if (early and not stopping and report["video_buffers"] >= args.until_video
                    and report["audio_buffers"] >= args.until_audio):
                stopping.append(True)
                GLib.idle_add(loop.quit)
            return Gst.PadProbeReturn.OK
        return probe

    def on_decoded_pad(_dbin, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name() if caps and caps.get_size() else ""
        kind = "video_buffers" if name.startswith("video/") else (
            "audio_buffers" if name.startswith("audio/") else None)
        sink = Gst.ElementFactory.make("fakesink", None)
        sink.set_property("sync", False)
        sink.set_property("async", False)
        pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        if kind is not None:
            pad.add_probe(Gst.PadProbeType.BUFFER, counter(kind))

    def on_src_pad(_src, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        s = caps.get_structure(0) if caps and caps.get_size() else None
        if s is not None:
            report["streams"].append({"media": s.get_string("media"),
                                      "encoding": s.get_string("encoding-name")})
        dbin = Gst.ElementFactory.make("decodebin", None)
        dbin.connect("pad-added", on_decoded_pad)
        pipeline.add(dbin)
        dbin.sync_state_with_parent()
        pad.link(dbin.get_static_pad("sink"))

    src.connect("pad-added", on_src_pad)

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            report["errors"].append("%s: %s" % (msg.src.get_name(), err.message))
            sys.stderr.write("error: %s (%s)\n" % (err.message, dbg))
            loop.quit()
        elif msg.type == Gst.MessageType.WARNING:
            err, _ = msg.parse_warning()
            report["warnings"].append("%s: %s" % (msg.src.get_name(), err.message))
        elif msg.type == Gst.MessageType.EOS:
            report["eos"] = True
            loop.quit()

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    start = time.monotonic()
    GLib.timeout_add(int(args.seconds * 1000), loop.quit)
    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        report["errors"].append("pipeline refused to start")
    else:
        loop.run()
    report["elapsed"] = round(time.monotonic() - start, 3)
    # Snapshot the counts before the teardown (which can take a while on a dead server).
    out = json.dumps(report)
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
    pipeline.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
