#!/usr/bin/env bash
# The end-to-end cache fill rate (issue 13, Performance: a fill writes at least
# 200 MB/s to disk when the origin sends faster than real time). Starts
# `mediagate-loadgen vod-origin` (an on-demand origin that streams a generated H.264
# clip unpaced when PLAY asks for Speed), an edge with a cache, and runs
# `mediagate cache prefetch --speed X` of the clip through the edge. Prints the object's
# size, the fill time, MB/s of the object and MB/s the edge process wrote to disk
# (/proc/PID/io write_bytes: what reached the block layer, or the page cache's
# dirtied bytes for the part not yet written back), and the edge's CPU over the fill.
# Needs release builds: cargo build --release -p mediagate -p mediagate-loadgen
# Usage: scripts/bench-cache-fill.sh [CLIP_SECONDS] [MBIT_PER_S] [SPEED]
#        (defaults: 120 100 100: a 1.5 GB clip; the edge takes Speed up to 100)
#        ORIGIN_PORT, EDGE_PORT, ADMIN_PORT override 38554, 38555, 39555;
#        CACHE_PARENT puts the cache directory under another directory (e.g. /dev/shm,
#        to see the edge's own ceiling apart from the disk's); PERF=FILE records a
#        perf profile of the edge over the fill.
set -euo pipefail
cd "$(dirname "$0")/.."
clip_seconds=${1:-120}
mbps=${2:-100}
speed=${3:-100}
bin=target/release
origin_port=${ORIGIN_PORT:-38554}
edge_port=${EDGE_PORT:-38555}
admin_port=${ADMIN_PORT:-39555}

dir=$(mktemp -d /tmp/mg-bench-fill.XXXXXX)
cache_dir=$(mktemp -d "${CACHE_PARENT:-$dir}/mg-bench-fill-cache.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  wait 2> /dev/null || true
  rm -rf "$cache_dir" "$dir"
}
trap cleanup EXIT

"$bin/mediagate-loadgen" vod-origin --listen "127.0.0.1:$origin_port" \
  --seconds "$clip_seconds" --mbps "$mbps" > "$dir/origin.log" 2>&1 &
pids+=($!)
{
  echo "state_dir = \"$dir/var\""
  echo "[admin]"
  echo "listen = [\"127.0.0.1:$admin_port\"]"
  echo "[edge]"
  echo "listen = [\"127.0.0.1:$edge_port\"]"
  echo "[edge.cache]"
  echo "dir = \"$cache_dir\""
  echo "size = \"8GiB\""
  echo "[[edge.route]]"
  echo "advertised = \"/clip\""
  echo "origin = \"rtsp://127.0.0.1:$origin_port/clip\""
} > "$dir/mediagate.toml"
"$bin/mediagate" run --config "$dir/mediagate.toml" > "$dir/edge.log" 2>&1 &
edge_pid=$!
pids+=("$edge_pid")
for _ in $(seq 1 100); do grep -q "listening for RTSP" "$dir/edge.log" && break; sleep 0.1; done

io() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$edge_pid/io"; }
cpu() { awk '{ print $14 + $15 }' "/proc/$edge_pid/stat"; }
tick=$(getconf CLK_TCK)
w0=$(io write_bytes)
c0=$(cpu)
if [ -n "${PERF:-}" ]; then
  # A profile of the edge over the fill: perf report -i "$PERF"
  perf record -g -o "$PERF" -p "$edge_pid" > /dev/null 2>&1 &
  perf_pid=$!
  sleep 0.5
fi
t0=$(date +%s.%N)
"$bin/mediagate" cache prefetch "rtsp://127.0.0.1:$edge_port/clip" --speed "$speed" \
  --admin "http://127.0.0.1:$admin_port" | tail -1
t1=$(date +%s.%N)
if [ -n "${PERF:-}" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
w1=$(io write_bytes)
c1=$(cpu)
bytes=$(curl -s "http://127.0.0.1:$admin_port/metrics" |
  awk '$1 == "mediagate_edge_cache_bytes" { printf "%d", $2 }')
awk -v b="$bytes" -v w=$((w1 - w0)) -v t0="$t0" -v t1="$t1" -v c=$((c1 - c0)) -v hz="$tick" \
  -v s="$clip_seconds" -v m="$mbps" 'BEGIN {
    t = t1 - t0
    printf "clip %d s at %d Mbit/s: object %.1f MB in %.2f s\n", s, m, b / 1e6, t
    printf "fill rate (object / time): %.0f MB/s (%.0fx real time)\n", b / 1e6 / t, s / t
    printf "edge write_bytes: %.1f MB, %.0f MB/s\n", w / 1e6, w / 1e6 / t
    printf "edge CPU: %.2f s (%.0f%% of one core)\n", c / hz, 100 * c / hz / t
  }'
