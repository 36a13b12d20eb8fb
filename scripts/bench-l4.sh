#!/usr/bin/env bash
# Benchmark (not a test): one TCP service through the balancer's L4 proxy and through
# HAProxy (`mode tcp`) to the same back end, in the same run. An iperf3 server is the
# back end; an iperf3 client pushes data through each proxy for a bounded time, one
# after the other. Prints throughput and the proxy process's CPU seconds per GB moved
# (user + system time from /proc/<pid>/stat).
#
# Needs: haproxy and iperf3 (Debian: apt-get install haproxy iperf3), cargo.
# Usage: scripts/bench-l4.sh [seconds per run, default 10] [streams, default 1]
# Environment: THREADS (proxy threads for both, default 1), ROUNDS (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-10}
STREAMS=${2:-1}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-1}
BACKEND_PORT=25201
L4_PORT=25202
HAP_PORT=25203
HAP_SPLICE_PORT=25204
L4_COPY_PORT=25205

for tool in haproxy iperf3 python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "bench-l4: $tool is missing (Debian: apt-get install haproxy iperf3)" >&2
    exit 1
  fi
done

echo "==> building the L4 proxy example (release)"
cargo build --release -q -p mediagate-balancer --example l4_tcp
L4_BIN=target/release/examples/l4_tcp

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

write_haproxy_cfg() { # port, extra defaults line
  cat >"$WORK/haproxy-$1.cfg" <<EOF
global
  nbthread $THREADS
  maxconn 4000
defaults
  mode tcp
  timeout connect 3s
  timeout client 300s
  timeout server 300s
  $2
frontend fe
  bind 127.0.0.1:$1
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND_PORT
EOF
}

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "bench-l4: nothing listens on port $1; logs:" >&2
  tail -n 5 "$WORK"/*.log >&2
  exit 1
}

iperf3 -s -p $BACKEND_PORT >"$WORK/iperf-server.log" 2>&1 &
PIDS+=($!)
"$L4_BIN" --listen 127.0.0.1:$L4_PORT --backend 127.0.0.1:$BACKEND_PORT --threads "$THREADS" \
  2>"$WORK/l4.log" &
L4_PID=$!
PIDS+=($L4_PID)
"$L4_BIN" --listen 127.0.0.1:$L4_COPY_PORT --backend 127.0.0.1:$BACKEND_PORT --threads "$THREADS" \
  --no-splice 2>"$WORK/l4-copy.log" &
L4_COPY_PID=$!
PIDS+=($L4_COPY_PID)
write_haproxy_cfg $HAP_PORT ""
haproxy -db -f "$WORK/haproxy-$HAP_PORT.cfg" >"$WORK/haproxy.log" 2>&1 &
HAP_PID=$!
PIDS+=($HAP_PID)
write_haproxy_cfg $HAP_SPLICE_PORT "option splice-auto"
haproxy -db -f "$WORK/haproxy-$HAP_SPLICE_PORT.cfg" >"$WORK/haproxy-splice.log" 2>&1 &
HAP_SPLICE_PID=$!
PIDS+=($HAP_SPLICE_PID)
for p in $BACKEND_PORT $L4_PORT $L4_COPY_PORT $HAP_PORT $HAP_SPLICE_PORT; do wait_port $p; done

cpu_ticks() { # utime + stime of a process, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}
TCK=$(getconf CLK_TCK)

run() { # name, port, pid, direction flag
  local before after json
  before=$(cpu_ticks "$3")
  json=$(iperf3 -c 127.0.0.1 -p "$2" -t "$SECS" -P "$STREAMS" $4 -J)
  after=$(cpu_ticks "$3")
  python3 - "$1" "$before" "$after" "$TCK" "$json" <<'EOF'
import json, sys
name, before, after, tck, raw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
end = json.loads(raw)["end"]
recv = end["sum_received"]
gbytes = recv["bytes"] / 1e9
cpu = (after - before) / tck
print(f"{name:<28} {recv['bits_per_second'] / 1e9:7.2f} Gbit/s  {gbytes:7.2f} GB  "
      f"cpu {cpu:6.2f} s  {cpu / gbytes:6.3f} cpu-s/GB")
EOF
}

echo "==> $SECS s per run, $STREAMS stream(s), $THREADS proxy thread(s), $(nproc) cores, kernel $(uname -r)"
echo "    $(haproxy -v | head -1)"
for round in $(seq 1 "$ROUNDS"); do
  for dir in "" "-R"; do
    label=${dir:+download}
    label=${label:-upload}
    echo "-- round $round, $label (client $( [ -z "$dir" ] && echo '->' || echo '<-') back end)"
    run "mediagate l4 (splice)" $L4_PORT $L4_PID "$dir"
    run "mediagate l4 (userspace copy)" $L4_COPY_PORT $L4_COPY_PID "$dir"
    run "haproxy mode tcp" $HAP_PORT $HAP_PID "$dir"
    run "haproxy mode tcp splice-auto" $HAP_SPLICE_PORT $HAP_SPLICE_PID "$dir"
  done
done
