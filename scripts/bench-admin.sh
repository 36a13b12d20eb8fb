#!/usr/bin/env bash
# What the operations layer costs the edge (issue 11): one run of the 1,000-viewer
# fan-out with the admin API off, then one with it on while a client scrapes /metrics
# every second and one dashboard's event stream is open (GET /api/v1/events: a picture
# of every role a second). With POLL_VIEWERS=1, /api/v1/edge/viewers (all 1,000) is
# also fetched every second. Prints the edge's CPU per delivered packet for both and
# the admin thread's own CPU time. Needs release builds and a running origin:
#   cargo build --release -p mediagate -p mediagate-loadgen
#   python3 crates/testkit/peers/gst_origin.py --port 18554 --vod '' --auth '' \
#       --width 640 --height 360 --fps 25 --bitrate 1000 --audio-bitrate 96 &
# Usage: scripts/bench-admin.sh [SECONDS] [TRANSPORT]   (defaults: 30 udp)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
transport=${2:-udp}
bin=target/release

one_run() {
  local mode=$1 dir admin edge_pid warm_pid poll_pid=""
  dir=$(mktemp -d /tmp/mg-bench-admin.XXXXXX)
  if [ "$mode" = off ]; then admin='listen = []'; else admin='listen = ["127.0.0.1:19554"]'; fi
  cat > "$dir/mediagate.toml" <<EOT
state_dir = "$dir/var"
[admin]
$admin
[edge]
listen = ["127.0.0.1:18555"]
max_connections_per_client = 2000
[[edge.route]]
advertised = "/cam"
origin = "rtsp://127.0.0.1:18554/live"
EOT
  "$bin/mediagate" run --config "$dir/mediagate.toml" > "$dir/edge.log" 2>&1 &
  edge_pid=$!
  sleep 1
  # A viewer that keeps the stream warm, so every measured viewer starts at once.
  timeout $((seconds + 25)) ffmpeg -loglevel error -rtsp_transport tcp \
    -i rtsp://127.0.0.1:18555/cam -f null - > /dev/null 2>&1 &
  warm_pid=$!
  sleep 3
  if [ "$mode" = on ]; then
    curl -sN -o /dev/null --max-time $((seconds + 10)) http://127.0.0.1:19554/api/v1/events &
    (
      end=$((SECONDS + seconds + 10))
      n=0
      while [ $SECONDS -lt $end ] && [ $n -lt 300 ]; do
        paths="/metrics"
        [ "${POLL_VIEWERS:-0}" = 1 ] && paths="$paths /api/v1/edge/viewers"
        for path in $paths; do
          curl -s -o /dev/null "http://127.0.0.1:19554$path" || true
        done
        n=$((n + 1))
        sleep 1
      done
    ) &
    poll_pid=$!
  fi
  "$bin/mediagate-loadgen" fanout --url rtsp://127.0.0.1:18555/cam --viewers 1000 \
    --seconds "$seconds" --transport "$transport" --edge-pid "$edge_pid" > "$dir/fanout.txt" 2>&1
  local admin_cpu="-"
  for comm in /proc/"$edge_pid"/task/*/comm; do
    if [ "$(cat "$comm")" = mediagate-admin ]; then
      admin_cpu=$(awk '{printf "%.2f s", ($14 + $15) / 100}' "${comm%/comm}/stat")
    fi
  done
  [ -n "$poll_pid" ] && kill "$poll_pid" 2> /dev/null || true
  kill "$warm_pid" 2> /dev/null || true
  kill "$edge_pid"
  wait "$edge_pid" 2> /dev/null || true
  echo "== admin API $mode ($transport, $seconds s); admin thread CPU: $admin_cpu"
  grep -E '^packets|^edge' "$dir/fanout.txt"
  rm -rf "$dir"
}

one_run off
one_run on
