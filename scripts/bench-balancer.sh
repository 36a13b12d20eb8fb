#!/usr/bin/env bash
# Balancer benchmarks (issue 14, Performance): an origin (gst, 1 Mbit/s H.264 + AAC),
# three mediagate edges relaying it as back ends, three stub back ends (one
# `mediagate-loadgen rtsp-stub` on three ports: answers at once, no media), and four
# balancers in relay mode: "one" in front of edge 1 alone, "three" in front of the
# three edges, "stub1" in front of stub 1, "stub3" in front of the three stubs.
# Then, as PHASES says:
#   churn  short sessions (DESCRIBE, SETUP, PLAY, TEARDOWN) on CONNS connections at
#          1000/s, 2500/s and RATE/s: direct to stub 1, through "stub1", through
#          "stub3"; then at
#          EDGE_RATE/s (default 1000): direct to edge 1, through "one", through
#          "three". The churn report's service time is DESCRIBE sent -> TEARDOWN
#          answered, so the added latency is a through-balancer percentile minus the
#          direct one to the same back end
#   relay  VIEWERS UDP viewers for SECONDS through "three" (loadgen fanout), the
#          balancer's CPU per delivered packet
#   hold   HOLD sessions (2 per connection, SETUP without PLAY) held for SECONDS
#          through "three", the balancer's VmRSS
# The stub rows run first, before the origin, the edges and their warm viewers start
# (the origin is a live x264 encode: background load on the two cores that is not
# what the stub rows measure).
# Every process logs at warn (the per-session info lines are not what is measured).
# The machine's own stalls come first: `mediagate-loadgen stalls` spins a thread pinned
# to each CPU for 3 s and reports the gaps, how much of them went to another task of
# this machine and the hypervisor's steal (on this VM its own agent and kdamond hold a
# busy CPU for 1-9 ms about once a second, README: such a gap lands in any latency
# percentile measured here).
# WIRE=1 (the default; WIRE=0 turns it off): during each through-balancer stub row
# ("balancer-stub1", "balancer-stub3") tcpdump captures the balancer's front port and
# its back ends' ports on `lo` from 3 s in for SECONDS-6 s (at least 3 s), and
# scripts/rtsp-wire-latency.py prints under the row the time each message spent
# between entering and leaving the balancer, per request, per answer and per session
# (the sum of its 8 hops): the latency the balancer adds, without the load generator's
# and the stub's own time on the shared cores in it. tcpdump runs on those cores too
# during those rows (installed with apt-get when missing).
# FWD_FIFO=1 gives the balancers `forward_scheduling = "fifo:10"` (their forwarding
# threads real-time); RCVBUF=SIZE sets their `relay_socket_buffer` (default "1MiB");
# RTSP_SCHED=VALUE their `rtsp_scheduling` (e.g. "fifo:10"; default "normal");
# MEDIAGATE=PATH runs another mediagate binary (an older build, for before/after);
# CHURN=stub runs only the churn targets with stub back ends; STUB_RATES="R1 R2 ..."
# the stub rates (default "1000 2500 RATE"); LOADGEN_THREADS=N the churn load
# generator's threads (default 1); WIRE=0 no capture (see above); PACING=even starts
# the churn sessions evenly spaced instead of in the load generator's 1 ms timer
# bursts (`churn --pacing`, default tick).
# Needs release builds:
#   cargo build --release -p mediagate -p mediagate-loadgen
# Usage: scripts/bench-balancer.sh [SECONDS] [RATE] [CONNS] [VIEWERS] [HOLD] [PHASES]
#   defaults: 20 5000 200 1000 10000 "churn relay hold"
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
rate=${2:-5000}
conns=${3:-200}
viewers=${4:-1000}
hold=${5:-10000}
phases=${6:-churn relay hold}
bin=target/release
mediagate=${MEDIAGATE:-$bin/mediagate}
origin_port=18554
edge_ports=(18561 18562 18563)
one_port=18601
three_port=18603
stub_ports=(18571 18572 18573)
stub1_port=18611
stub3_port=18613
edge_rate=${EDGE_RATE:-1000}
# Churn rates against the stubs: the asked RATE, and by default also rates that leave
# the two cores room (1,000/s and 2,500/s), for the added latency off saturation.
stub_rates=${STUB_RATES:-"1000 2500 $rate"}
# The churn load generator on one thread (a current-thread runtime: about a third
# of a core at 5,000/s where two threads took a whole one); LOADGEN_THREADS=2 is the
# earlier setting.
loadgen_threads=${LOADGEN_THREADS:-1}
wire=${WIRE:-1}
# shellcheck source=scripts/lib/deb.sh
. scripts/lib/deb.sh # install_missing_debs, SUDO
if [ "$wire" = 1 ]; then install_missing_debs tcpdump; fi # the stub rows' capture

work=$(mktemp -d /tmp/mg-bench-balancer.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  wait 2> /dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

echo "== machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
"$bin/mediagate-loadgen" stalls --seconds 3 | grep '^stalls' || true

# wire_capture FILE PORT...: captures those TCP ports on lo from 3 s into the row for
# SECONDS-6 s (at least 3 s), in the background (its pid is then $!). `-Z root`:
# tcpdump would otherwise drop to its own user, which cannot write in the work dir.
wire_capture() {
  local file=$1 filter="" p
  shift
  for p in "$@"; do filter+="${filter:+ or }tcp port $p"; done
  local span=$((seconds - 6 > 3 ? seconds - 6 : 3))
  (sleep 3 && exec $SUDO timeout "$span" tcpdump -i lo -s 400 -B 16384 -Z root -w "$file" "$filter") \
    > "$file.log" 2>&1 &
}

"$bin/mediagate-loadgen" rtsp-stub --listen "127.0.0.1:${stub_ports[0]}" \
  --listen "127.0.0.1:${stub_ports[1]}" --listen "127.0.0.1:${stub_ports[2]}" > "$work/stub.log" 2>&1 &
stub=$!
pids+=("$stub")

config_head() { # DIR: the lines every process's config starts with
  printf 'state_dir = "%s/var"\n[log]\nlevel = "warn"\n[admin]\nlisten = []\n' "$1"
}

balancer() { # NAME PORT BACKEND_PORT...: starts a balancer, prints its pid
  local name=$1 port=$2 d=$work/bal-$1 backends="" p
  shift 2
  for p in "$@"; do backends+="\"rtsp://127.0.0.1:$p\", "; done
  mkdir -p "$d"
  cat > "$d/mediagate.toml" << EOT
$(config_head "$d")
[edge]
enabled = false
[balancer]
enabled = true
max_connections = 20000
$([ -n "${FWD_FIFO:-}" ] && echo 'forward_scheduling = "fifo:10"' || true)
$([ -n "${RCVBUF:-}" ] && echo "relay_socket_buffer = \"$RCVBUF\"" || true)
$([ -n "${RTSP_SCHED:-}" ] && echo "rtsp_scheduling = \"$RTSP_SCHED\"" || true)
[[balancer.service]]
name = "rtsp"
listen = ["127.0.0.1:$port"]
backends = [${backends%, }]
media_mode = "relay"
ports = "$(case $name in one) echo 30000-31999 ;; three) echo 32000-47999 ;; stub1) echo 48000-48999 ;; *) echo 49000-49999 ;; esac)"
EOT
  "$mediagate" run --config "$d/mediagate.toml" > "$d/log" 2>&1 &
  echo $!
}
stub1=$(balancer stub1 $stub1_port "${stub_ports[0]}")
pids+=("$stub1")
stub3=$(balancer stub3 $stub3_port "${stub_ports[@]}")
pids+=("$stub3")
sleep 1

# The origin (a live x264 encode), the edges and their warm viewers are started only
# when a target needs them: the stub rows run before, without that background load
# on the two cores.
edges_started=""
start_edges() {
  [ -z "$edges_started" ] || return 0
  edges_started=1
  /usr/bin/python3 -u crates/testkit/peers/gst_origin.py --port $origin_port --vod '' --auth '' \
    --width 640 --height 360 --fps 25 --bitrate 1000 --audio-bitrate 96 > "$work/origin.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -qs '"ready"' "$work/origin.log" && break; sleep 0.2; done

  edge_pids=()
  for i in 0 1 2; do
    d=$work/edge$i
    mkdir -p "$d"
    cat > "$d/mediagate.toml" << EOT
$(config_head "$d")
[edge]
listen = ["127.0.0.1:${edge_ports[$i]}"]
udp_ports = "$((50000 + i * 4000))-$((50000 + i * 4000 + 3999))"
max_connections_per_client = 20000
[[edge.route]]
advertised = "/cam"
origin = "rtsp://127.0.0.1:$origin_port/live"
EOT
    "$mediagate" run --config "$d/mediagate.toml" > "$d/log" 2>&1 &
    edge_pids+=($!)
    pids+=($!)
  done
  one=$(balancer one $one_port "${edge_ports[0]}")
  pids+=("$one")
  three=$(balancer three $three_port "${edge_ports[@]}")
  pids+=("$three")
  sleep 1
  # One viewer on every edge through the whole run, so the stream stays warm there
  # (an edge stops pulling 10 s after its last viewer, and a cold stream's first PLAY
  # waits for the origin's next keyframe) and sessions are answered from its hub.
  for p in "${edge_ports[@]}"; do
    "$bin/mediagate-loadgen" fanout --url "rtsp://127.0.0.1:$p/cam" --viewers 1 --seconds 3600 \
      --transport tcp --quiet > /dev/null 2>&1 &
    pids+=($!)
  done
  sleep 2
}

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # ticks

for phase in $phases; do
  case $phase in
    churn)
      targets=()
      # Each stub rate direct then through the balancers, so each pair shares the
      # machine's load of that moment.
      for r in $stub_rates; do
        targets+=("direct stub1:${stub_ports[0]}:$stub:$r"
          "balancer-stub1 (stub1):$stub1_port:$stub1:$r"
          "balancer-stub3 (3 stubs):$stub3_port:$stub3:$r")
      done
      targets+=("direct edge1:${edge_ports[0]}:edge1:$edge_rate"
        "balancer-one (edge1):$one_port:one:$edge_rate"
        "balancer-three (3 edges):$three_port:three:$edge_rate")
      for target in "${targets[@]}"; do
        IFS=: read -r what port pid r <<< "$target"
        if [ "${CHURN:-}" = stub ] && [[ $what != *stub* ]]; then continue; fi
        case $pid in
          edge1) start_edges && pid=${edge_pids[0]} ;;
          one) start_edges && pid=$one ;;
          three) start_edges && pid=$three ;;
        esac
        case $what in
          balancer-stub1*) wire_backends=("${stub_ports[0]}") ;;
          balancer-stub3*) wire_backends=("${stub_ports[@]}") ;;
          *) wire_backends=() ;;
        esac
        [ "$wire" = 1 ] || wire_backends=()
        echo "== churn $what: $r/s for $seconds s on $conns connections (load average $(cut -d' ' -f1 /proc/loadavg))"
        capture=""
        if [ ${#wire_backends[@]} -gt 0 ]; then
          pcap=$work/wire.pcap
          wire_capture "$pcap" "$port" "${wire_backends[@]}"
          capture=$!
          pids+=("$capture")
        fi
        "$bin/mediagate-loadgen" churn --url "rtsp://127.0.0.1:$port/cam" --rate "$r" \
          --seconds "$seconds" --long-viewers 0 --connections "$conns" --edge-pid "$pid" \
          --threads "$loadgen_threads" --pacing "${PACING:-tick}" --quiet | sed 's/^edge /this pid /' || true
        if [ -n "$capture" ]; then
          wait "$capture" || true
          # tcpdump's own count: packets the kernel dropped before it read them are
          # messages the pairing cannot see.
          echo "  wire capture: $(grep -E 'packets (captured|dropped by kernel)' "$pcap.log" | paste -sd ',' | sed 's/,/, /g')"
          backend_args=()
          for b in "${wire_backends[@]}"; do backend_args+=(--backend "$b"); done
          python3 scripts/rtsp-wire-latency.py "$pcap" --front "$port" "${backend_args[@]}" \
            | sed 's/^/  /' || true
          rm -f "$pcap" "$pcap.log"
        fi
      done
      ;;
    relay)
      start_edges
      echo "== relay: $viewers UDP viewers for $seconds s through balancer-three"
      local_start=$(cpu "$three")
      # Receive-buffer drops on the balancer's relay ports, sampled while its sockets
      # exist (they close with the sessions).
      (while sleep 1; do python3 -c '
d = 0
for line in open("/proc/net/udp").read().splitlines()[1:]:
    f = line.split()
    if 32000 <= int(f[1].split(":")[1], 16) < 48000:
        d += int(f[-1])
print(d)' >> "$work/drops.txt"; done) &
      sampler=$!
      "$bin/mediagate-loadgen" fanout --url "rtsp://127.0.0.1:$three_port/cam" \
        --viewers "$viewers" --seconds "$seconds" --transport udp --ramp-per-sec 200 \
        --edge-pid "$three" --quiet || true
      kill "$sampler" 2> /dev/null || true
      echo "balancer relay sockets: $(sort -n "$work/drops.txt" | tail -1) datagrams dropped by their receive buffers (highest sample)"
      echo "balancer CPU over the fanout run (ticks of 10 ms): $(($(cpu "$three") - local_start))"
      for i in 0 1 2; do echo "edge$i VmHWM: $(grep VmHWM "/proc/${edge_pids[$i]}/status")"; done
      ;;
    hold)
      start_edges
      echo "== hold: $hold sessions for $seconds s through balancer-three"
      "$bin/mediagate-loadgen" hold --url "rtsp://127.0.0.1:$three_port/cam" \
        --sessions "$hold" --per-connection 2 --rate 2000 --seconds "$seconds" \
        --pid "$three" --pid "${edge_pids[0]}" --quiet || true
      ;;
    *)
      echo "unknown phase $phase" >&2
      exit 1
      ;;
  esac
done
echo "== machine: load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
