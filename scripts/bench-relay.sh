#!/usr/bin/env bash
# The relay benchmark of issues 4 and 16: mediagate and rtpengine (userspace) with the
# same load from `mediagate-loadgen rtp`, in one run, in two network set-ups:
#
#   loopback  phones and relays in one network namespace, on its loopback (the same
#             kernel path as the host's 127.0.0.1, but no port clashes with anything
#             else running on the host)
#   veth      phones in one namespace, both relays in another, joined by a veth pair:
#             every packet crosses the pair twice, as between a relay and a real NIC
#
# For each: the fixed load (CALLS calls, PPS packets/s per stream, --direct baseline
# first), then unless MAX_RATE=0 the highest rate with zero loss (--find-max-rate).
# The tables carry the relay process's CPU per packet (us/pkt), the whole machine's
# (mach_us, /proc/stat), that minus the no-relay run's (net_us), its softirq part
# (sirq_us) and how idle the CPUs were (idle%: near 0, other work filled the machine
# and mach_us says little; the load generator warns): see crates/loadgen/src/rtp/mod.rs.
# On a shared machine, run it when the load average is low, and quote it.
#
# Needs root (namespaces), rtpengine, and release binaries:
#   cargo build --release -p mediagate -p mediagate-loadgen
#   sudo scripts/bench-relay.sh
#
# Environment (defaults in brackets):
#   FORWARD_IO [io_uring]   mediagate's [relay] forward_io: io_uring, epoll, auto, ebpf.
#                           A value this build's config refuses is reported, not guessed
#                           around.
#   FORWARD_SCHEDULING []   mediagate's [relay] forward_scheduling, e.g. fifo:10
#   VETH_FORWARDING [0]     IP forwarding on the relay's veth: 1 turns it on. Off is a
#                           plain host's default, and the eBPF fast path does not need
#                           it (it sends out of the route's interface as the relay's
#                           socket would; docs/relay.md)
#   CALLS [1000]  BENCH_SECONDS [60]  SCENARIOS ["loopback veth"]
#   PPS [50]  SIZE [172]    packets per second per stream and RTP packet size of the
#                           fixed load (G.711 at 20 ms by default; the balancer's relay
#                           row is compared with CALLS=2000 PPS=39 SIZE=802: as many
#                           pairs, sockets and packets as its 1,000 viewers of 1 Mbit/s)
#   MAX_RATE [1]  STEP_SECONDS [10]  MAX_STEPS [6]  MAX_PPS [2000]
#   RTPENGINE [1]           0 measures mediagate alone
#   BIN [target/release]    where mediagate and mediagate-loadgen are
#   OUT []                  a directory to keep the relays' logs in
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
FORWARD_IO=${FORWARD_IO:-io_uring}
FORWARD_SCHEDULING=${FORWARD_SCHEDULING:-}
CALLS=${CALLS:-1000}
PPS=${PPS:-50}
SIZE=${SIZE:-172}
BENCH_SECONDS=${BENCH_SECONDS:-60}
SCENARIOS=${SCENARIOS:-loopback veth}
MAX_RATE=${MAX_RATE:-1}
STEP_SECONDS=${STEP_SECONDS:-10}
MAX_STEPS=${MAX_STEPS:-6}
MAX_PPS=${MAX_PPS:-2000}
RTPENGINE=${RTPENGINE:-1}
OUT=${OUT:-}

die() { echo "bench-relay: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root, to create network namespaces"
MG=$(realpath "$BIN/mediagate" 2>/dev/null) && [ -x "$MG" ] ||
    die "no $BIN/mediagate: cargo build --release -p mediagate -p mediagate-loadgen"
LOADGEN=$(realpath "$BIN/mediagate-loadgen" 2>/dev/null) && [ -x "$LOADGEN" ] ||
    die "no $BIN/mediagate-loadgen: cargo build --release -p mediagate -p mediagate-loadgen"
if [ "$RTPENGINE" = 1 ]; then
    command -v rtpengine >/dev/null || die "no rtpengine (apt install rtpengine-daemon), or RTPENGINE=0"
fi
case "$FORWARD_IO" in io_uring|epoll|auto|ebpf) ;; *) die "FORWARD_IO must be io_uring, epoll, auto or ebpf" ;; esac

WORK=$(mktemp -d /tmp/bench-relay.XXXXXX)
TAG=$$
NAMESPACES=()
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    # Deleting a namespace deletes the veth end in it, and with it the pair.
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 65536 2>/dev/null || true

# The config this build accepts for FORWARD_IO, checked before anything runs.
mg_config() { # relay_ip file forward_io
    {
        echo "state_dir = \"$WORK/mgstate\""
        echo "[edge]"
        echo "enabled = false"
        echo "[relay]"
        echo "enabled = true"
        echo "ng_listen_udp = [\"$1:2223\"]"
        echo "ports = \"20000-29999\""
        echo "forward_io = \"$3\""
        [ -n "$FORWARD_SCHEDULING" ] && echo "forward_scheduling = \"$FORWARD_SCHEDULING\""
        echo "[[relay.media_address]]"
        echo "address = \"$1\""
    } >"$2"
}
IO=$FORWARD_IO
mg_config 127.0.0.1 "$WORK/check.toml" "$IO"
if ! "$MG" check-config "$WORK/check.toml" >/dev/null 2>"$WORK/check.err"; then
    echo "bench-relay: this mediagate build refuses forward_io = \"$FORWARD_IO\":" >&2
    cat "$WORK/check.err" >&2
    exit 2
fi

# Waits until the relay at $2 answers ng from namespace $1 (a one-call set-up).
wait_ng() { # ns addr pid name
    local tries=0
    until ip netns exec "$1" "$LOADGEN" ng-setup --target "probe,$2" --calls 1 --clients 1 \
        >/dev/null 2>&1; do
        kill -0 "$3" 2>/dev/null || { echo "$4 exited; its log:" >&2; tail -20 "$WORK/$4.log" >&2; exit 1; }
        tries=$((tries + 1))
        [ "$tries" -lt 20 ] || die "$4 does not answer ng at $2"
        sleep 0.5
    done
}

# Starts the relays in namespace $1 on $2; sets MG_PID and RE_PID.
start_relays() { # ns relay_ip
    mg_config "$2" "$WORK/relay.toml" "$IO"
    rm -rf "$WORK/mgstate"
    ip netns exec "$1" "$MG" run -c "$WORK/relay.toml" >"$WORK/mediagate.log" 2>&1 &
    MG_PID=$!
    PIDS+=("$MG_PID")
    RE_PID=
    if [ "$RTPENGINE" = 1 ]; then
        # Its defaults (userspace forwarding); not Debian's rtpengine.conf, which opens
        # fixed HTTP and CLI ports.
        ip netns exec "$1" rtpengine --config-file=none --interface="$2" \
            --listen-ng="$2:2225" --listen-cli=127.0.0.1:2226 --table=-1 --foreground \
            --log-stderr --log-level=4 --port-min=30000 --port-max=39999 \
            >"$WORK/rtpengine.log" 2>&1 &
        RE_PID=$!
        PIDS+=("$RE_PID")
    fi
    wait_ng "$1" "$2:2223" "$MG_PID" mediagate
    [ -z "$RE_PID" ] || wait_ng "$1" "$2:2225" "$RE_PID" rtpengine
}

stop_relays() {
    for pid in $MG_PID $RE_PID; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    # Reaped: their pids may be reused by now, so cleanup must not signal them.
    PIDS=()
}

# Runs the benchmark with the phones in namespace $1 on $2 and the relays on $3.
bench() { # scenario phones_ns phone_ip relay_ip
    local targets=(--target "mediagate,$4:2223,$MG_PID")
    [ -z "$RE_PID" ] || targets+=(--target "rtpengine,$4:2225,$RE_PID")
    echo
    echo "== $1: $CALLS calls, $PPS packets/s of $SIZE bytes per stream, $BENCH_SECONDS s, mediagate forward_io = \"$IO\"${FORWARD_SCHEDULING:+, forward_scheduling = \"$FORWARD_SCHEDULING\"}; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    local status=0
    ip netns exec "$2" "$LOADGEN" rtp --direct --local-ip "$3" "${targets[@]}" \
        --calls "$CALLS" --seconds "$BENCH_SECONDS" --pps "$PPS" --size "$SIZE" || status=$?
    [ "$status" = 0 ] || echo "(exit $status: 2 means some packets were lost)"
    if [ "$MAX_RATE" = 1 ]; then
        echo "-- $1: highest rate with zero loss ($CALLS calls, $STEP_SECONDS s per step, at most $MAX_STEPS steps); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
        ip netns exec "$2" "$LOADGEN" rtp --find-max-rate --direct --local-ip "$3" "${targets[@]}" \
            --calls "$CALLS" --seconds "$STEP_SECONDS" --max-steps "$MAX_STEPS" \
            --max-pps "$MAX_PPS" --size "$SIZE" || true
    fi
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    # Which forwarding path mediagate says it took (a refused fast path says so here).
    grep -iE 'ebpf|io_uring|epoll|forward' "$WORK/mediagate.log" | head -5 | sed 's/^/mediagate log: /' || true
    if [ -n "$OUT" ]; then
        mkdir -p "$OUT"
        cp "$WORK/mediagate.log" "$OUT/$1-mediagate.log"
        [ -z "$RE_PID" ] || cp "$WORK/rtpengine.log" "$OUT/$1-rtpengine.log"
    fi
}

echo "bench-relay $(date -u +%FT%TZ), $(uname -r), $(nproc) CPUs, mediagate $("$MG" --version 2>/dev/null || echo '?')"
for scenario in $SCENARIOS; do
    case "$scenario" in
    loopback)
        ns=mgb-lo-$TAG
        ip netns add "$ns" && NAMESPACES+=("$ns")
        ip -n "$ns" link set lo up
        start_relays "$ns" 127.0.0.1
        bench loopback "$ns" 127.0.0.1 127.0.0.1
        stop_relays
        ;;
    veth)
        phones=mgb-ph-$TAG relay=mgb-rl-$TAG
        ip netns add "$phones" && NAMESPACES+=("$phones")
        ip netns add "$relay" && NAMESPACES+=("$relay")
        ip link add "mgbp$TAG" type veth peer name "mgbr$TAG"
        ip link set "mgbp$TAG" netns "$phones"
        ip link set "mgbr$TAG" netns "$relay"
        ip -n "$phones" addr add 10.199.0.1/24 dev "mgbp$TAG"
        ip -n "$relay" addr add 10.199.0.2/24 dev "mgbr$TAG"
        for ns in "$phones" "$relay"; do
            ip -n "$ns" link set lo up
        done
        ip -n "$phones" link set "mgbp$TAG" up
        ip -n "$relay" link set "mgbr$TAG" up
        # A relay host need not forward: the eBPF fast path sends out of the route's
        # interface as the relay's socket would (docs/relay.md). The sysctl is set
        # either way, so the host's defaults do not decide; VETH_FORWARDING=1 measures
        # a host that also routes.
        ip netns exec "$relay" sysctl -qw \
            "net.ipv4.conf.mgbr$TAG.forwarding=${VETH_FORWARDING:-0}"
        start_relays "$relay" 10.199.0.2
        bench veth "$phones" 10.199.0.1 10.199.0.2
        stop_relays
        ;;
    *) die "unknown scenario $scenario (loopback, veth)" ;;
    esac
done
