#!/usr/bin/env bash
# Access records at 2,000/s (issue 12): short viewer sessions (DESCRIBE, SETUP, PLAY,
# TEARDOWN on persistent connections) at a target rate against an edge with the access
# log on, while long viewers of the same live stream are measured; once with the
# records store on SQLite, once on PostgreSQL (a throwaway cluster this script starts,
# as crates/testkit does for tests). Afterwards it counts the rows in edge_sessions and
# the lines in the access log, reads the edge's drop counters from /metrics (the access
# log's, and the records writer's stored/fallback/lost/pending), and prints
# sessions/s, records/s, whether anything was lost, and the long viewers' loss and
# worst gap. Starts its own origin. Needs release builds:
#   cargo build --release -p mediagate -p mediagate-loadgen
# Usage: scripts/bench-records.sh [SECONDS] [RATE] [LONG_VIEWERS] [CONNECTIONS] [STORES]
#   defaults: 30 2000 100 200 "sqlite postgres"
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
rate=${2:-2000}
long=${3:-100}
conns=${4:-200}
stores=${5:-sqlite postgres}
bin=target/release
origin_port=18554
edge_port=18555
admin_port=19555
pg_port=15432

work=$(mktemp -d /tmp/mg-bench-records.XXXXXX)
chmod 755 "$work" # PostgreSQL runs as nobody under root
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  if [ -f "$work/pg/data/postmaster.pid" ]; then pg stop -m fast > /dev/null 2>&1 || true; fi
  wait 2> /dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root: as nobody then, as the test harness does.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}
pg() { as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -w "$@"; }

/usr/bin/python3 -u crates/testkit/peers/gst_origin.py --port $origin_port --vod '' --auth '' \
  --width 640 --height 360 --fps 25 --bitrate 1000 --audio-bitrate 96 > "$work/origin.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -qs '"ready"' "$work/origin.log" && break; sleep 0.2; done

metric() { # NAME FILE: the sum of the samples of NAME
  awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { print s + 0 }' "$2"
}

one_run() {
  local store=$1 dir=$work/$1 accounting="" edge_pid count
  mkdir -p "$dir"
  if [ "$store" = postgres ]; then
    mkdir -p "$work/pg"
    [ "$(id -u)" = 0 ] && chown nobody "$work/pg"
    as_pg "$pg_bin/initdb" -D "$work/pg/data" --auth=trust -U postgres --no-sync -E UTF8 \
      --locale=C > "$work/pg/initdb.log" 2>&1
    # Durable commits (the edge's writer batches them); only the data files skip fsync.
    pg -l "$work/pg/server.log" -o "-p $pg_port -c listen_addresses=127.0.0.1 \
      -c unix_socket_directories=$work/pg -c fsync=off" start > /dev/null
    accounting="[accounting]
postgres_url = \"postgresql://postgres@127.0.0.1:$pg_port/postgres\""
    count() { psql -h 127.0.0.1 -p $pg_port -U postgres -Atc 'select count(*) from edge_sessions' postgres; }
  else
    count() { sqlite3 "$dir/var/accounting.sqlite" 'select count(*) from edge_sessions'; }
  fi
  cat > "$dir/mediagate.toml" << EOT
state_dir = "$dir/var"
[log]
access_log = "$dir/access.log"
[admin]
listen = ["127.0.0.1:$admin_port"]
[edge]
listen = ["127.0.0.1:$edge_port"]
max_connections_per_client = $((conns + long + 50))
[[edge.route]]
advertised = "/cam"
origin = "rtsp://127.0.0.1:$origin_port/live"
$accounting
EOT
  "$bin/mediagate" run --config "$dir/mediagate.toml" > "$dir/edge.log" 2>&1 &
  edge_pid=$!
  pids+=("$edge_pid")
  sleep 1
  "$bin/mediagate-loadgen" churn --url "rtsp://127.0.0.1:$edge_port/cam" --rate "$rate" \
    --seconds "$seconds" --long-viewers "$long" --connections "$conns" \
    --edge-pid "$edge_pid" > "$dir/churn.txt" 2> "$dir/churn.err" &
  local churn=$!
  # The rows as they arrive, once a second (SQLite is in WAL mode: reading does not
  # stop the writer).
  while kill -0 "$churn" 2> /dev/null; do
    echo "$(date +%s.%N) $(count 2> /dev/null || echo 0)" >> "$dir/rows.txt"
    sleep 1
  done
  wait "$churn" || true
  local rows_at_end
  rows_at_end=$(count)
  sleep 2
  curl -s "http://127.0.0.1:$admin_port/metrics" > "$dir/metrics.txt" || true
  kill -TERM "$edge_pid"
  wait "$edge_pid" 2> /dev/null || true
  local rows lines completed
  rows=$(count)
  lines=$(wc -l < "$dir/access.log")
  completed=$(sed -n 's/.*completed \([0-9]*\) .*/\1/p' "$dir/churn.txt")
  echo "== $store: $rate sessions/s target, $seconds s, $conns connections, $long long viewers"
  cat "$dir/churn.txt"
  # Records/s from the samples: over the span in which rows grew by more than the long
  # viewers' share, and the best one-second step.
  awk -v skip="$long" '
    { t[NR] = $1; c[NR] = $2 }
    END {
      for (i = 2; i <= NR; i++) {
        d = (c[i] - c[i - 1]) / (t[i] - t[i - 1]); if (d > peak) peak = d
        if (c[i] - c[i - 1] > skip) { if (!a) a = i - 1; b = i }
      }
      if (a) printf "records: %.0f/s written while the sessions ran (%.0f s of samples), best second %.0f/s\n", (c[b] - c[a]) / (t[b] - t[a]), t[b] - t[a], peak
    }' "$dir/rows.txt"
  echo "records: $rows rows in edge_sessions"
  echo "records: rows when the run ended (edge still up) $rows_at_end; after the edge stopped $rows; access log lines $lines"
  echo "records: expected $((completed + long)) (completed short sessions + long viewers); edge sessions ended $(metric mediagate_edge_sessions_ended_total "$dir/metrics.txt")"
  local m=$dir/metrics.txt
  echo "drops: access log dropped $(metric mediagate_access_log_dropped_total "$m"); store: stored $(metric mediagate_records_stored_total "$m"), to fallback $(metric mediagate_records_fallback_total "$m"), lost $(metric mediagate_records_lost_total "$m"), pending $(metric mediagate_records_pending "$m")"
  if [ "$store" = postgres ]; then pg stop -m fast > /dev/null; fi
}

for s in $stores; do one_run "$s"; done
