#!/usr/bin/env bash
# Regenerates testdata/rtsp/ and testdata/sdp/ from real programs talking to each other
# through mediagate-tap (crates/testkit/src/bin/mediagate-tap.rs), on loopback only.
#
#   scripts/capture-testdata.sh            # all captures
#
# Needs Debian's ffmpeg, GStreamer 1.22 (plugins base/good/bad/ugly/libav, gst-rtsp-server
# and its Python bindings under /usr/bin/python3). Every capture is bounded in time.
# Files are named after the programs (with their major.minor versions) that made them;
# testdata/README.md describes them. Re-running overwrites them: review the diff, since
# session ids, SSRCs, timestamps and nonces change on every run.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
PEERS=$ROOT/crates/testkit/peers
KEEP_MEDIA=${KEEP_MEDIA:-8192}

for prog in ffmpeg ffprobe gst-launch-1.0 "$PY"; do
    command -v "$prog" >/dev/null || { echo "missing $prog: apt-get install ffmpeg gstreamer1.0-tools python3-gi gir1.2-gst-rtsp-server-1.0" >&2; exit 1; }
done

FF=$(ffmpeg -version | sed -n 's/^ffmpeg version \([0-9]*\.[0-9]*\).*/\1/p')
GST=$(gst-launch-1.0 --version | sed -n 's/^GStreamer \([0-9]*\.[0-9]*\).*/\1/p')
[ -n "$FF" ] && [ -n "$GST" ] || { echo "cannot read ffmpeg/GStreamer versions" >&2; exit 1; }

cargo build -q -p mediagate-testkit --bin mediagate-tap
TAP=$ROOT/target/debug/mediagate-tap

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# start_origin NAME ARGS...: starts gst_origin.py, sets ${NAME}_PORT.
start_origin() {
    local name=$1; shift
    "$PY" -u "$PEERS/gst_origin.py" --port 0 "$@" >"$WORK/$name.log" 2>"$WORK/$name.err" &
    PIDS+=($!)
    local port=""
    for _ in $(seq 1 300); do
        port=$(sed -n 's/.*"event": "ready".*"port": \([0-9]*\).*/\1/p' "$WORK/$name.log")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "origin $name did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1; }
    printf -v "${name}_PORT" '%s' "$port"
}

# free_port: a loopback TCP port that was free a moment ago.
free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# cap TARGET_PORT OUT [--sdp-out F] -- COMMAND...
cap() {
    local port=$1 out=$2; shift 2
    echo "== $out"
    "$TAP" --target "127.0.0.1:$port" --out "$out" --keep-media "$KEEP_MEDIA" --timeout 30 "$@"
}

start_origin ORIGIN
start_origin OPUS --audio opus --vod '' --auth ''

G=testdata/rtsp/gst-rtsp-server$GST
FFG=testdata/rtsp/ffmpeg$FF-to-gst-rtsp-server$GST
FPG=testdata/rtsp/ffprobe$FF-to-gst-rtsp-server$GST
GG=testdata/rtsp/gstreamer$GST-rtspsrc-to-gst-rtsp-server$GST
FFF=testdata/rtsp/ffmpeg$FF-to-ffmpeg$FF-listen
GSF=testdata/rtsp/gstreamer$GST-rtspclientsink-to-ffmpeg$FF-listen
SDP=testdata/sdp
rm -rf "$FFG" "$FPG" "$GG" "$FFF" "$GSF" "$G"
mkdir -p "$SDP"

URL='rtsp://127.0.0.1:{tap}'
FFREAD=(ffmpeg -nostdin -hide_banner -loglevel error)

# --- ffprobe / ffmpeg reading gst-rtsp-server -------------------------------------------
cap "$ORIGIN_PORT" "$FPG/tcp" --sdp-out "$SDP/gst-rtsp-server$GST-live-h264-aac.sdp" -- \
    ffprobe -hide_banner -loglevel error -rtsp_transport tcp -show_streams "$URL/live"
cap "$ORIGIN_PORT" "$FFG/tcp" -- "${FFREAD[@]}" -rtsp_transport tcp -i "$URL/live" -t 2 -f null -
cap "$ORIGIN_PORT" "$FFG/udp" -- "${FFREAD[@]}" -rtsp_transport udp -i "$URL/live" -t 2 -f null -
cap "$ORIGIN_PORT" "$FFG/http-tunnel" -- \
    "${FFREAD[@]}" -rtsp_transport http -i "$URL/live" -t 2 -f null -
cap "$ORIGIN_PORT" "$FFG/digest-401-retry" -- \
    "${FFREAD[@]}" -rtsp_transport tcp -i 'rtsp://user:secret@127.0.0.1:{tap}/secure' -t 2 -f null -
cap "$ORIGIN_PORT" "$FFG/digest-401-no-credentials" -- \
    "${FFREAD[@]}" -rtsp_transport tcp -i "$URL/secure" -t 2 -f null - || true
cap "$ORIGIN_PORT" "$FFG/vod-seek" --sdp-out "$SDP/gst-rtsp-server$GST-vod-mp4-h264-aac.sdp" -- \
    "${FFREAD[@]}" -rtsp_transport tcp -ss 5 -i "$URL/vod" -t 2 -f null -
cap "$OPUS_PORT" "$FFG/tcp-opus" --sdp-out "$SDP/gst-rtsp-server$GST-live-h264-opus.sdp" -- \
    "${FFREAD[@]}" -rtsp_transport tcp -i "$URL/live" -t 2 -f null -

# --- GStreamer rtspsrc reading gst-rtsp-server ------------------------------------------
for proto in tcp udp http; do
    name=$proto; [ "$proto" = http ] && name=http-tunnel
    cap "$ORIGIN_PORT" "$GG/$name" -- \
        "$PY" "$PEERS/rtspsrc_client.py" "$URL/live" --protocols "$proto" --seconds 2
done
cap "$ORIGIN_PORT" "$GG/digest-401-retry" -- \
    "$PY" "$PEERS/rtspsrc_client.py" "$URL/secure" --protocols tcp --seconds 2 \
    --user user --password secret

# --- ffmpeg and GStreamer publishing (ANNOUNCE/RECORD) to ffmpeg's listening server --------
# listen_server PORT TRANSPORT: ffmpeg accepting one RECORD session, decoding to null.
# ffmpeg's listen mode serves exactly one connection and prints nothing when ready, so
# readiness is read from /proc/net/tcp (state 0A = LISTEN) instead of by connecting.
listen_server() {
    ffmpeg -nostdin -hide_banner -loglevel error -rtsp_flags listen -listen_timeout 20 \
        -rtsp_transport "$2" -i "rtsp://127.0.0.1:$1/push" -f null - \
        >"$WORK/listen-$1.log" 2>&1 &
    PIDS+=($!)
    local hex
    hex=$(printf '%04X' "$1")
    for _ in $(seq 1 100); do
        grep -q ":$hex 00000000:0000 0A" /proc/net/tcp && return 0
        sleep 0.1
    done
    echo "ffmpeg listen server on $1 did not start" >&2; cat "$WORK/listen-$1.log" >&2; exit 1
}

FFPUSH=(ffmpeg -nostdin -hide_banner -loglevel error -re
    -f lavfi -i testsrc=size=320x240:rate=15 -f lavfi -i sine=frequency=440:sample_rate=48000
    -t 2 -c:v libx264 -preset ultrafast -tune zerolatency -g 15 -pix_fmt yuv420p
    -c:a aac -b:a 64k -f rtsp)
for t in tcp udp; do
    P=$(free_port)
    listen_server "$P" "$t"
    sdp=()
    [ "$t" = tcp ] && sdp=(--sdp-out "$SDP/ffmpeg$FF-announce-h264-aac.sdp")
    cap "$P" "$FFF/record-$t" "${sdp[@]}" -- "${FFPUSH[@]}" -rtsp_transport "$t" "$URL/push"
done

# ffmpeg 5.1 rejects this SETUP: it wants "mode=record" in lower case, GStreamer sends
# "mode=RECORD" (RFC 2326 §12.39 spells it in capitals); a real interop failure, kept.
P=$(free_port)
listen_server "$P" tcp
cap "$P" "$GSF/record-tcp-rejected" --sdp-out "$SDP/gstreamer$GST-rtspclientsink-announce-h264-aac.sdp" -- \
    gst-launch-1.0 -q -e \
    videotestsrc num-buffers=30 is-live=true \
    ! video/x-raw,format=I420,width=320,height=240,framerate=15/1 \
    ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! h264parse ! s.sink_0 \
    audiotestsrc num-buffers=90 is-live=true samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 \
    ! avenc_aac ! aacparse ! s.sink_1 \
    rtspclientsink name=s protocols=tcp location="$URL/push" || true

echo "done; now review: git diff --stat testdata/"
