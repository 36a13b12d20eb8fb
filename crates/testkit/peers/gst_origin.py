#!/usr/bin/python3
"""gst_origin.py: a gst-rtsp-server origin for mediagate's integration tests.

Run it with Debian's /usr/bin/python3 (the GStreamer GObject bindings live there).

What it serves (all on one port, loopback by default):
  * live mounts (default /live): H.264 video + AAC (or Opus) audio from ONE always-running
    encoder pipeline; each shared media gets the encoded frames through appsrc. Frames are
    pushed only while that media is PLAYING and its stream is not blocked (gst-rtsp-server
    blocks each stream of a prepared live media, holding its first buffer, until PLAY), and
    video restarts at a keyframe, so a late PLAY gets one held buffer per stream and then
    live frames, never a burst; suspend modes are never used.
  * an on-demand mount (default /vod): an MP4 file (H.264 + AAC), generated at start into
    a temp dir unless --vod-file is given; not shared, so each client can seek (PLAY Range).
  * a Digest-protected live mount (default /secure) for --user / --password.

What it prints on stdout: one JSON object per line, each with "event" and "t" (seconds
since start, monotonic):
  {"event":"ready","port":8554,"bind":"127.0.0.1","live":["/live"],"vod":"/vod",
   "auth":"/secure","audio":"aac", ...}
  {"event":"client_connected","client":1,"peer":"127.0.0.1:40000"}
  {"event":"request","client":1,"method":"PLAY","uri":"rtsp://...","mount":"/live",
   "status":200,"cseq":"4","session":"abc","range":"npt=0-","transport":null}
  {"event":"client_closed","client":1}
  {"event":"media_configured","mount":"/live"} / {"event":"media_unprepared","mount":"/live"}
  {"event":"error","message":"..."}
A "request" event is printed when the server sends its response, so it carries the status
(e.g. 401 for a DESCRIBE without credentials). Diagnostics go to stderr.

What it is not: a conformance reference; it is whatever gst-rtsp-server 1.22 does.
"""

import argparse
import ctypes
import json
import os
import sys
import tempfile
import threading
import time

import warnings

import gi

# PyGObject cannot marshal send-message's GstRTSPContext argument (see on_send) and warns
# about it; the handler does not use that argument.
warnings.filterwarnings("ignore", message=".*G_VALUE_HOLDS_OBJECT.*")

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

T0 = time.monotonic()
_print_lock = threading.Lock()


def emit(event, **fields):
    line = json.dumps(dict(event=event, t=round(time.monotonic() - T0, 4), **fields))
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def log(msg):
    with _print_lock:
        sys.stderr.write("gst_origin: %s\n" % msg)
        sys.stderr.flush()


def parse_args(argv):
    p = argparse.ArgumentParser(description="gst-rtsp-server origin for tests")
    p.add_argument("--port", type=int, default=0, help="TCP port, 0 = pick a free one")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    p.add_argument("--live", action="append", default=None,
                   help="live mount path (repeatable; default /live)")
    p.add_argument("--vod", default="/vod", help="on-demand mount path ('' = none)")
    p.add_argument("--vod-file", default=None,
                   help="MP4 (H.264+AAC) to serve; default: generate one at start")
    p.add_argument("--vod-mount", action="append", default=[],
                   help="another on-demand mount serving the same file (repeatable; "
                        "each is its own URL, so an edge caches each as its own object)")
    p.add_argument("--vod-seconds", type=int, default=10,
                   help="length of the generated on-demand file")
    p.add_argument("--auth", default="/secure", help="Digest-protected live mount ('' = none)")
    p.add_argument("--vod-auth", default="",
                   help="Digest-protected on-demand mount of the same file as --vod ('' = none)")
    p.add_argument("--user", default="user")
    p.add_argument("--password", default="secret")
    p.add_argument("--realm", default="mediagate-test")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--bitrate", type=int, default=300, help="video kbit/s")
    p.add_argument("--gop", type=int, default=0, help="keyframe interval in frames (0 = fps)")
    p.add_argument("--audio", choices=["aac", "opus", "none"], default="aac")
    p.add_argument("--audio-bitrate", type=int, default=64, help="audio kbit/s")
    p.add_argument("--vod-like-live", action="store_true",
                   help="encode the on-demand clip as the live stream is (moving test "
                   "pattern, zero-latency x264, the live audio bit rate, the same "
                   "payloading), so a benchmark compares the two on the same packets")
    p.add_argument("--threads", type=int, default=16, help="client thread pool size")
    p.add_argument("--backlog", type=int, default=128, help="listen backlog")
    args = p.parse_args(argv)
    if args.live is None:
        args.live = ["/live"]
    for m in args.live + [args.vod, args.auth]:
        if m and not m.startswith("/"):
            p.error("mount paths start with '/': %r" % m)
    if args.gop <= 0:
        args.gop = args.fps
    return args


def first_element(*names):
    """Returns the first GStreamer element factory name that exists."""
    for n in names:
        if Gst.ElementFactory.find(n) is not None:
            return n
    raise RuntimeError("none of the GStreamer elements %s is installed "
                       "(Debian: gstreamer1.0-libav / gstreamer1.0-plugins-bad)" % (names,))


class Feed:
    """One always-running encoder whose output is copied into every subscribed appsrc."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.video_srcs = {}  # appsrc -> state dict
        self.audio_srcs = {}
        self.video_caps = None
        self.audio_caps = None
        self.caps_ready = threading.Event()
        a = args
        video = (
            "videotestsrc is-live=true pattern=smpte horizontal-speed=2 "
            "! video/x-raw,width=%d,height=%d,framerate=%d/1 ! videoconvert "
            "! x264enc tune=zerolatency speed-preset=ultrafast threads=1 bitrate=%d "
            "key-int-max=%d ! video/x-h264,profile=constrained-baseline "
            "! h264parse config-interval=-1 "
            "! video/x-h264,stream-format=byte-stream,alignment=au "
            "! appsink name=vsink emit-signals=true sync=false max-buffers=64 drop=true"
            % (a.width, a.height, a.fps, a.bitrate, a.gop))
        desc = video
        if a.audio == "aac":
            enc = first_element("avenc_aac", "voaacenc")
            desc += (
                " audiotestsrc is-live=true wave=sine freq=440 volume=0.2 samplesperbuffer=1024 "
                "! audio/x-raw,rate=48000,channels=2 ! audioconvert ! %s bitrate=%d "
                "! aacparse ! audio/mpeg,mpegversion=4,stream-format=raw "
                "! appsink name=asink emit-signals=true sync=false max-buffers=64 drop=true"
                % (enc, a.audio_bitrate * 1000))
        elif a.audio == "opus":
            desc += (
                " audiotestsrc is-live=true wave=sine freq=440 volume=0.2 samplesperbuffer=960 "
                "! audio/x-raw,rate=48000,channels=2 ! audioconvert ! opusenc bitrate=%d "
                "! appsink name=asink emit-signals=true sync=false max-buffers=64 drop=true"
                % (a.audio_bitrate * 1000))
        self.pipeline = Gst.parse_launch(desc)
        self.pipeline.get_by_name("vsink").connect("new-sample", self.on_sample, True)
        asink = self.pipeline.get_by_name("asink")
        if asink is not None:
            asink.connect("new-sample", self.on_sample, False)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    def on_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        emit("error", message="encoder: %s" % err.message)
        log("encoder error: %s (%s)" % (err.message, dbg))

    def start(self):
        self.pipeline.set_state(Gst.State.PLAYING)

    def on_sample(self, sink, is_video):
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.OK
        buf = sample.get_buffer()
        with self.lock:
            if is_video:
                if self.video_caps is None:
                    self.video_caps = sample.get_caps()
                srcs = list(self.video_srcs.items())
            else:
                if self.audio_caps is None:
                    self.audio_caps = sample.get_caps()
                srcs = list(self.audio_srcs.items())
            if self.video_caps is not None and (self.audio_caps is not None
                                                or self.args.audio == "none"):
                self.caps_ready.set()
        keyframe = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        running_pts = None
        if buf.pts != Gst.CLOCK_TIME_NONE:
            rt = sample.get_segment().to_running_time(Gst.Format.TIME, buf.pts)
            running_pts = rt if rt != Gst.CLOCK_TIME_NONE else None
        for src, st in srcs:
            # Only a PLAYING appsrc whose stream is not blocked gets data. gst-rtsp-server
            # prepares a live media by playing it until one buffer reaches each stream and
            # then blocks the stream until PLAY: anything pushed meanwhile would queue in
            # appsrc and burst out on a late PLAY.
            _, cur, _ = src.get_state(0)
            if cur != Gst.State.PLAYING or st["stream"].is_blocking():
                st["need_key"] = True
                continue
            if is_video and st["need_key"]:
                if not keyframe:
                    continue
                st["need_key"] = False
            # Both pipelines run on the system clock: moving the capture time from the
            # encoder's running time to this media's keeps audio and video timestamps exact.
            # (x264enc shifts its segment by 1000 h, so the segment converts first.)
            offset = self.pipeline.get_base_time() - src.get_base_time()
            if running_pts is None or running_pts + offset < 0:
                continue
            out = buf.copy()
            out.pts = running_pts + offset
            out.dts = out.pts
            src.emit("push-buffer", out)
        return Gst.FlowReturn.OK

    def attach(self, media, mount):
        bin_ = media.get_element()
        vsrc = bin_.get_by_name("vsrc")
        asrc = bin_.get_by_name("asrc")
        with self.lock:
            # pay0 is the video stream, pay1 the audio stream (see launch_line).
            if vsrc is not None:
                vsrc.set_property("caps", self.video_caps)
                self.video_srcs[vsrc] = {"need_key": True, "stream": media.get_stream(0)}
            if asrc is not None:
                asrc.set_property("caps", self.audio_caps)
                self.audio_srcs[asrc] = {"need_key": False, "stream": media.get_stream(1)}

        def unprepared(_media):
            with self.lock:
                self.video_srcs.pop(vsrc, None)
                self.audio_srcs.pop(asrc, None)
            emit("media_unprepared", mount=mount)

        media.connect("unprepared", unprepared)

    def launch_line(self):
        appsrc = "appsrc name=%s is-live=true format=time max-bytes=2000000"
        line = ("( " + appsrc % "vsrc" + " ! h264parse "
                "! rtph264pay name=pay0 pt=96 config-interval=-1 aggregate-mode=zero-latency")
        if self.args.audio == "aac":
            line += " " + appsrc % "asrc" + " ! aacparse ! rtpmp4gpay name=pay1 pt=97"
        elif self.args.audio == "opus":
            line += " " + appsrc % "asrc" + " ! rtpopuspay name=pay1 pt=97"
        return line + " )"


def generate_vod(args, path):
    """Writes a short H.264 + AAC MP4 (keyframe every second) with a GStreamer pipeline."""
    a = args
    frames = a.vod_seconds * a.fps
    audio_bufs = (a.vod_seconds * 48000) // 1024
    enc = first_element("avenc_aac", "voaacenc")
    if a.vod_like_live:
        pattern, tune, audio_bps = "smpte horizontal-speed=2", "tune=zerolatency ", a.audio_bitrate * 1000
    else:
        pattern, tune, audio_bps = "ball", "", 64000
    desc = (
        "videotestsrc num-buffers=%d pattern=%s "
        "! video/x-raw,width=%d,height=%d,framerate=%d/1 ! videoconvert "
        "! x264enc %sspeed-preset=ultrafast threads=1 bitrate=%d key-int-max=%d "
        "! video/x-h264,profile=constrained-baseline ! h264parse ! mp4mux name=mux "
        "! filesink location=%s "
        "audiotestsrc num-buffers=%d samplesperbuffer=1024 wave=sine freq=660 volume=0.2 "
        "! audio/x-raw,rate=48000,channels=2 ! audioconvert ! %s bitrate=%d ! aacparse "
        "! mux."
        % (frames, pattern, a.width, a.height, a.fps, tune, a.bitrate, a.fps, path,
           audio_bufs, enc, audio_bps))
    pipe = Gst.parse_launch(desc)
    pipe.set_state(Gst.State.PLAYING)
    msg = pipe.get_bus().timed_pop_filtered(
        60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    if msg is None:
        raise RuntimeError("generating %s timed out" % path)
    if msg.type == Gst.MessageType.ERROR:
        err, dbg = msg.parse_error()
        raise RuntimeError("generating %s failed: %s (%s)" % (path, err.message, dbg))


class Origin:
    def __init__(self, args):
        self.args = args
        self.feed = Feed(args)
        self.next_client = 0
        self.id_lock = threading.Lock()
        self.mounts = list(args.live)
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address(args.bind)
        self.server.set_service(str(args.port))
        self.server.set_backlog(args.backlog)
        self.server.get_thread_pool().set_max_threads(args.threads)
        self.server.connect("client-connected", self.on_client)
        mounts = self.server.get_mount_points()

        auth = None
        if args.auth or args.vod_auth:
            auth = GstRtspServer.RTSPAuth()
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.set_realm(args.realm)
            anon = GstRtspServer.RTSPToken()
            anon.set_string("media.factory.role", "anonymous")
            auth.set_default_token(anon)
            user = GstRtspServer.RTSPToken()
            user.set_string("media.factory.role", "user")
            auth.add_digest(args.user, args.password, user)
            self.server.set_auth(auth)

        def allow(factory, role, construct=True):
            if auth is not None:
                factory.add_role_from_structure(Gst.Structure.from_string(
                    "%s, media.factory.access=(boolean)true, "
                    "media.factory.construct=(boolean)%s"
                    % (role, "true" if construct else "false"))[0])

        for m in args.live:
            f = self.live_factory(m)
            allow(f, "anonymous")
            allow(f, "user")
            mounts.add_factory(m, f)
        if args.auth:
            f = self.live_factory(args.auth)
            # Anonymous may see that the mount exists but not build it: gst-rtsp-server then
            # answers 401 with a Digest challenge instead of 404.
            allow(f, "anonymous", construct=False)
            allow(f, "user")
            mounts.add_factory(args.auth, f)
            self.mounts.append(args.auth)
        self.vod_file = None
        if args.vod:
            if args.vod_file:
                self.vod_file = os.path.abspath(args.vod_file)
            else:
                self.tmp = tempfile.TemporaryDirectory(prefix="gst_origin_")
                self.vod_file = os.path.join(self.tmp.name, "vod.mp4")
                generate_vod(args, self.vod_file)
            for mount in [args.vod] + args.vod_mount:
                self.add_vod_mount(mounts, mount, allow)
            if args.vod_auth:
                # As the live /secure: anonymous viewers get a Digest challenge.
                self.add_vod_mount(mounts, args.vod_auth, allow, anonymous=False)
        # Longest first, so /live2 is never taken for /live.
        self.mounts.sort(key=len, reverse=True)

    def add_vod_mount(self, mounts, mount, allow, anonymous=True):
        """Mounts the on-demand file at `mount` (not shared: each client can seek);
        without `anonymous`, viewers must log in (Digest)."""
        f = GstRtspServer.RTSPMediaFactory()
        f.set_launch(
            "( filesrc location=\"%s\" ! qtdemux name=d "
            "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1%s "
            "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
            % (self.vod_file,
               " aggregate-mode=zero-latency" if self.args.vod_like_live else ""))
        f.set_shared(False)
        f.connect("media-configure", lambda _f, _m: emit("media_configured", mount=mount))
        if anonymous:
            allow(f, "anonymous")
        else:
            allow(f, "anonymous", construct=False)
        allow(f, "user")
        mounts.add_factory(mount, f)
        self.mounts.append(mount)

    def live_factory(self, mount):
        f = GstRtspServer.RTSPMediaFactory()
        f.set_launch(self.feed.launch_line())
        f.set_shared(True)

        def configure(_f, media):
            self.feed.attach(media, mount)
            emit("media_configured", mount=mount)

        f.connect("media-configure", configure)
        return f

    def mount_of(self, path):
        if path is None:
            return None
        for m in self.mounts:
            if path == m or path.startswith(m + "/"):
                return m
        return None

    def on_client(self, _server, client):
        with self.id_lock:
            self.next_client += 1
            cid = self.next_client
        peer = None
        try:
            conn = client.get_connection()
            sock = conn.get_read_socket()
            addr = sock.get_remote_address()
            peer = "%s:%d" % (addr.get_address().to_string(), addr.get_port())
        except Exception as e:  # the peer address is informative only
            log("cannot read peer address: %s" % e)
        emit("client_connected", client=cid, peer=peer)
        client.connect("closed", lambda _c: emit("client_closed", client=cid))
        client.connect("send-message", self.on_send, cid)

    def on_send(self, _client, _ctx, response, cid):
        # PyGObject cannot marshal the GstRTSPContext signal argument (a pointer type), so
        # the request comes from the thread's current context, read through ctypes.
        request = current_request()
        if request is None or response is None:
            return
        method, uri = request_line(request)
        try:
            _, code, _, _ = response.parse_response()
        except Exception as e:
            log("cannot decode response: %s" % e)
            return
        path = None
        if uri and uri != "*":
            res, url = GstRtsp.RTSPUrl.parse(uri)
            path = url.abspath if res == GstRtsp.RTSPResult.OK and url is not None else None
        session = (header(response, GstRtsp.RTSPHeaderField.SESSION)
                   or raw_header(request, GstRtsp.RTSPHeaderField.SESSION) or "")
        emit("request", client=cid, method=method, uri=uri, mount=self.mount_of(path),
             status=int(code), cseq=raw_header(request, GstRtsp.RTSPHeaderField.CSEQ),
             session=session.split(";")[0] or None,
             range=raw_header(request, GstRtsp.RTSPHeaderField.RANGE),
             transport=raw_header(request, GstRtsp.RTSPHeaderField.TRANSPORT),
             forwarded_for=raw_header_by_name(request, "X-Forwarded-For"))

    def run(self):
        self.feed.start()
        if not self.feed.caps_ready.wait(20):
            emit("error", message="encoder produced no output within 20 s")
            sys.exit(2)
        if self.server.attach(None) == 0:
            emit("error", message="cannot listen on %s:%d" % (self.args.bind, self.args.port))
            sys.exit(2)
        emit("ready", port=self.server.get_bound_port(), bind=self.args.bind,
             live=self.args.live, vod=self.args.vod or None, auth=self.args.auth or None,
             vod_file=self.vod_file, vod_seconds=self.args.vod_seconds,
             audio=self.args.audio, width=self.args.width, height=self.args.height,
             fps=self.args.fps, bitrate=self.args.bitrate, pid=os.getpid())
        loop = GLib.MainLoop()
        for sig in (2, 15):  # SIGINT, SIGTERM: stop cleanly
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
        loop.run()
        self.feed.pipeline.set_state(Gst.State.NULL)


class _Ctx(ctypes.Structure):
    """The public head of GstRTSPContext (rtsp-context.h, stable since 1.0)."""
    _fields_ = ([(n, ctypes.c_void_p) for n in ("server", "conn", "client", "request", "uri")]
                + [("method", ctypes.c_int)]
                + [(n, ctypes.c_void_p) for n in ("auth", "token", "session", "sessmedia",
                                                  "factory", "media", "stream", "response",
                                                  "trans")])


_libserver = ctypes.CDLL("libgstrtspserver-1.0.so.0")
_libserver.gst_rtsp_context_get_current.restype = ctypes.POINTER(_Ctx)
_librtsp = ctypes.CDLL("libgstrtsp-1.0.so.0")
_librtsp.gst_rtsp_message_parse_request.argtypes = [
    ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_char_p),
    ctypes.POINTER(ctypes.c_int)]
_librtsp.gst_rtsp_message_get_header.argtypes = [
    ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
_librtsp.gst_rtsp_message_get_header_by_name.argtypes = [
    ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
_librtsp.gst_rtsp_method_as_text.restype = ctypes.c_char_p
_librtsp.gst_rtsp_method_as_text.argtypes = [ctypes.c_int]


def current_request():
    """The request being answered on this thread (a raw GstRTSPMessage pointer), or None."""
    ctx = _libserver.gst_rtsp_context_get_current()
    if not ctx or not ctx.contents.request:
        return None
    return ctx.contents.request


def _text(b):
    return b.decode("utf-8", "replace") if b is not None else None


def request_line(request):
    method = ctypes.c_int()
    uri = ctypes.c_char_p()
    version = ctypes.c_int()
    _librtsp.gst_rtsp_message_parse_request(
        request, ctypes.byref(method), ctypes.byref(uri), ctypes.byref(version))
    return _text(_librtsp.gst_rtsp_method_as_text(method.value)), _text(uri.value)


def raw_header(request, field):
    value = ctypes.c_char_p()
    res = _librtsp.gst_rtsp_message_get_header(request, int(field), ctypes.byref(value), 0)
    return _text(value.value) if res == 0 else None


def raw_header_by_name(request, name):
    value = ctypes.c_char_p()
    res = _librtsp.gst_rtsp_message_get_header_by_name(
        request, name.encode(), ctypes.byref(value), 0)
    return _text(value.value) if res == 0 else None


def header(msg, field):
    res, value = msg.get_header(field, 0)
    return value if res == GstRtsp.RTSPResult.OK else None


def main(argv):
    args = parse_args(argv)
    Gst.init(None)
    try:
        origin = Origin(args)
    except Exception as e:
        emit("error", message=str(e))
        log("startup failed: %s" % e)
        return 2
    origin.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
