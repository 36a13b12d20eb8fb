#!/usr/bin/env bash
# The on-demand cache under load (issue 13, Performance). Starts a gst-rtsp-server
# origin serving 20 on-demand clips (one file, 20 URLs) and a live stream, an edge with
# a cache, prefills the 20 clips (one ffmpeg viewer each), then runs 1,000 concurrent
# hit viewers over the 20 clips, over UDP and then over TCP, and the same 1,000 viewers
# splitting the live stream for comparison. Prints first-keyframe latency, loss, the
# edge's CPU per delivered packet, what the origin sent during the hits, the shared
# reads' disk/memory split, and the cache crate's fill rate to disk.
# Needs release builds: cargo build --release -p mediagate -p mediagate-loadgen
# Usage: scripts/bench-cache.sh [SECONDS] [VIEWERS]   (defaults: 20 1000)
#        ORIGIN_PORT, EDGE_PORT, ADMIN_PORT override 28554, 28555, 29555.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
viewers=${2:-1000}
clips=20
clip_seconds=$((seconds + 15))
bin=target/release
# Ports of their own (other benchmarks use 18554/18555); override when busy.
origin_port=${ORIGIN_PORT:-28554}
edge_port=${EDGE_PORT:-28555}
admin_port=${ADMIN_PORT:-29555}
ulimit -n $((viewers * 6 + 1024)) 2> /dev/null || true

dir=$(mktemp -d /tmp/mg-bench-cache.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  wait 2> /dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

mounts=()
for i in $(seq -w 1 $clips); do [ "$i" = 01 ] || mounts+=(--vod-mount "/clip$i"); done
/usr/bin/python3 crates/testkit/peers/gst_origin.py --port $origin_port --auth '' \
  --vod /clip01 "${mounts[@]}" --vod-seconds $clip_seconds \
  --width 640 --height 360 --fps 25 --bitrate 1000 --audio-bitrate 96 --vod-like-live \
  > "$dir/origin.jsonl" 2> "$dir/origin.err" &
origin_pid=$!
pids+=("$origin_pid")
for _ in $(seq 1 120); do grep -q '"ready"' "$dir/origin.jsonl" 2> /dev/null && break; sleep 0.5; done
grep -q '"ready"' "$dir/origin.jsonl" || { echo "origin did not start"; cat "$dir/origin.err"; exit 1; }

{
  echo "state_dir = \"$dir/var\""
  echo "[admin]"
  echo "listen = [\"127.0.0.1:$admin_port\"]"
  echo "[edge]"
  echo "listen = [\"127.0.0.1:$edge_port\"]"
  echo "max_connections_per_client = $((viewers * 2 + 100))"
  echo "[edge.cache]"
  echo "size = \"4GiB\""
  echo "[[edge.route]]"
  echo "advertised = \"/cam\""
  echo "origin = \"rtsp://127.0.0.1:$origin_port/live\""
  for i in $(seq -w 1 $clips); do
    echo "[[edge.route]]"
    echo "advertised = \"/c$i\""
    echo "origin = \"rtsp://127.0.0.1:$origin_port/clip$i\""
  done
} > "$dir/mediagate.toml"
"$bin/mediagate" run --config "$dir/mediagate.toml" > "$dir/edge.log" 2>&1 &
edge_pid=$!
pids+=("$edge_pid")
sleep 1

echo "== prefill: $clips clips of $clip_seconds s, one ffmpeg viewer each"
fills=()
for i in $(seq -w 1 $clips); do
  ffmpeg -nostdin -loglevel error -rtsp_transport tcp -i "rtsp://127.0.0.1:$edge_port/c$i" \
    -c copy -f null - > /dev/null 2>&1 &
  fills+=($!)
done
for p in "${fills[@]}"; do wait "$p" || echo "a prefill viewer failed"; done
sleep 1
metric() { curl -s "http://127.0.0.1:$admin_port/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
echo "cache objects: $(metric mediagate_edge_cache_objects), bytes on disk: $(metric mediagate_edge_cache_bytes)"
plays_before=$(grep -c '"method": *"PLAY"' "$dir/origin.jsonl" || true)

urls=()
for i in $(seq -w 1 $clips); do urls+=(--url "rtsp://127.0.0.1:$edge_port/c$i"); done
origin_io() { awk '/^(rchar|wchar)/ { s = s " " $1 " " $2 } END { print s }' /proc/$origin_pid/io; }
for transport in udp tcp; do
  echo "== $viewers hit viewers over $clips clips, $transport, $seconds s"
  io_before=$(origin_io)
  "$bin/mediagate-loadgen" hits "${urls[@]}" --viewers "$viewers" --seconds "$seconds" \
    --transport $transport --edge-pid "$edge_pid" --quiet > "$dir/hits-$transport.txt" 2>&1 || true
  grep -E '^hits first|^viewers|^packets|^edge|^checks' "$dir/hits-$transport.txt"
  echo "origin during the run (/proc/PID/io):$io_before ->$(origin_io)"
  sleep 3
done
plays_after=$(grep -c '"method": *"PLAY"' "$dir/origin.jsonl" || true)
echo "origin PLAYs: $plays_before for the prefill, $((plays_after - plays_before)) during $((2 * viewers)) hit sessions"
echo "shared reads: blocks from disk $(curl -s "http://127.0.0.1:$admin_port/metrics" | grep -E '^mediagate_edge_cache_shared_reads_total\{from="(disk|memory)"\}' | tr '\n' ' ')"
echo "edge memory for shared blocks now: $(metric mediagate_edge_cache_memory_bytes) bytes"

echo "== live splitting, the same edge: $viewers viewers of /cam"
timeout $((3 * seconds + 30)) ffmpeg -nostdin -loglevel error -rtsp_transport tcp \
  -i "rtsp://127.0.0.1:$edge_port/cam" -f null - > /dev/null 2>&1 &
warm=$!
pids+=("$warm")
sleep 3
for transport in udp tcp; do
  "$bin/mediagate-loadgen" fanout --url "rtsp://127.0.0.1:$edge_port/cam" --viewers "$viewers" \
    --seconds "$seconds" --transport $transport --edge-pid "$edge_pid" --quiet \
    > "$dir/live-$transport.txt" 2>&1 || true
  echo "-- live $transport"
  grep -E '^packets|^first keyframe|^edge' "$dir/live-$transport.txt"
  sleep 3
done
kill "$warm" 2> /dev/null || true

echo "== fill rate to disk (the cache crate's FillWriter, as the edge's fill thread uses it)"
"$bin/mediagate-loadgen" cache-fill --dir "$dir/fill" --megabytes 2000
