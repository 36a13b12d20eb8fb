#!/usr/bin/env bash
# What accounting connections and the access log cost the edge (issue 12): the 1,000-viewer
# fan-out once with `accounting = "off"` and no access log, once with
# `accounting = "authorize"` and the access log on. Prints the edge's CPU per delivered
# packet for both, and how many TCP connections the origin held during the second run.
# Needs release builds and a running origin (see scripts/bench-admin.sh).
# Usage: scripts/bench-accounting.sh [SECONDS] [VIEWERS]   (defaults: 30 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
viewers=${2:-1000}
bin=target/release

one_run() {
  local mode=$1 dir extra="" log="" edge_pid warm_pid held="-"
  dir=$(mktemp -d /tmp/mg-bench-acct.XXXXXX)
  if [ "$mode" = on ]; then
    extra='accounting = "authorize"'
    log="access_log = \"$dir/access.log\""
  fi
  cat > "$dir/mediagate.toml" <<EOT
state_dir = "$dir/var"
[log]
$log
[admin]
listen = []
[edge]
listen = ["127.0.0.1:18555"]
max_connections_per_client = $((viewers * 2 + 10))
[[edge.route]]
advertised = "/cam"
origin = "rtsp://127.0.0.1:18554/live"
$extra
EOT
  "$bin/mediagate" run --config "$dir/mediagate.toml" > "$dir/edge.log" 2>&1 &
  edge_pid=$!
  sleep 1
  timeout $((seconds + 25)) ffmpeg -loglevel error -rtsp_transport tcp \
    -i rtsp://127.0.0.1:18555/cam -f null - > /dev/null 2>&1 &
  warm_pid=$!
  sleep 3
  "$bin/mediagate-loadgen" fanout --url rtsp://127.0.0.1:18555/cam --viewers "$viewers" \
    --seconds "$seconds" --transport udp --edge-pid "$edge_pid" > "$dir/fanout.txt" 2>&1 &
  local fan=$!
  sleep $((seconds / 2))
  held=$(ss -Htn state established '( dport = :18554 )' | wc -l)
  wait "$fan" || true
  kill "$warm_pid" 2> /dev/null || true
  kill "$edge_pid"
  wait "$edge_pid" 2> /dev/null || true
  local lines="-"
  [ -f "$dir/access.log" ] && lines=$(wc -l < "$dir/access.log")
  echo "== accounting $mode ($viewers viewers, $seconds s): edge-to-origin connections mid-run: $held; access log lines: $lines"
  grep -E '^packets|^edge' "$dir/fanout.txt"
  rm -rf "$dir"
}

one_run off
one_run on
