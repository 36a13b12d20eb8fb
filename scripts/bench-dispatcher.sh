#!/bin/sh
# Dispatcher benchmarks (issue 15): what the dispatcher adds to an offer/answer, call
# set-ups per second across two relays, the dispatcher's RSS with calls held.
# Usage: scripts/bench-dispatcher.sh [CALLS] (after cargo build --release -p mediagate -p mediagate-loadgen)
# Starts, in a temporary directory: a CA and certificates (mediagate cert), a
# dispatcher (ng on 127.0.0.1:22300, relays on 127.0.0.1:25099), relay1 (127.0.0.1,
# its own ng on 127.0.0.1:22301 too) and relay2 (127.0.0.2) linked over TLS, and a
# dispatcher with a relay in its own process (ng on 127.0.0.1:22310). Stops them at the end.
set -eu
CALLS=${1:-5000}
BIN=$(cd "$(dirname "$0")/.." && pwd)/target/release
M=$BIN/mediagate
L=$BIN/mediagate-loadgen
DIR=$(mktemp -d /tmp/mg-bench-dispatcher.XXXXXX)
PIDS=""
# A relay asked to stop drains (keeps its calls until they end): the held calls of the
# last run would keep it, and its ports, alive long after the script, so what is
# still running a second after SIGTERM is killed.
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    sleep 1
    for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
cd "$DIR"
mkdir d r1 r2 dl
$M cert ca --dir pki >/dev/null
$M cert issue --ca pki --dir d/tls dispatcher >/dev/null
$M cert issue --ca pki --dir r1/tls relay1 >/dev/null
$M cert issue --ca pki --dir r2/tls relay2 >/dev/null
(cd d && exec $M dispatcher --ng 127.0.0.1:22300 --relays 127.0.0.1:25099 --tls-dir tls >log 2>&1) &
D=$!; PIDS="$PIDS $D"
sleep 1
(cd r1 && exec $M relay --ng 127.0.0.1:22301 --dispatcher 127.0.0.1:25099 --address 127.0.0.1 --ports 16384-65000 --tls-dir tls >log 2>&1) &
PIDS="$PIDS $!"
(cd r2 && exec $M relay --ng 127.0.0.1:22302 --dispatcher 127.0.0.1:25099 --address 127.0.0.2 --ports 16384-65000 --tls-dir tls >log 2>&1) &
PIDS="$PIDS $!"
(cd dl && exec $M dispatcher --ng 127.0.0.1:22310 --local-relay 127.0.0.3@16384-65000 >log 2>&1) &
PIDS="$PIDS $!"
sleep 3
grep -q "relay relay1 linked" d/log && grep -q "relay relay2 linked" d/log || { echo "relays did not link:"; cat d/log; exit 1; }
echo "== offer/answer round trips, one client (what the dispatcher adds)"
$L ng-setup --calls "$CALLS" --clients 1 --target direct-relay1,127.0.0.1:22301 \
    --target dispatcher-tls,127.0.0.1:22300 --target dispatcher-local,127.0.0.1:22310
# A relay keeps a freed port out of use for 10 s (port_quarantine): pause between runs.
sleep 11
echo "== set-ups per second across two linked relays"
for c in 4 16; do sleep 11; $L ng-setup --calls $((CALLS * 3)) --clients $c --target dispatcher-tls,127.0.0.1:22300,$D; done
sleep 11
echo "== 20,000 calls held (10,000 per relay): the dispatcher's RSS"
$L ng-setup --keep --calls 20000 --clients 8 --target dispatcher-tls,127.0.0.1:22300,$D
uptime
