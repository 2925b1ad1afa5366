#!/usr/bin/env bash
# The service on PostgreSQL beside the service on the embedded SQLite store, in the same run
# (issue 19): durable batched ingest (500 events per request, 4 connections, requests built
# beforehand), then `verify` and a `query` by agent over what was written, on each store.
# PostgreSQL is the server this machine runs (BLACKBOX_TEST_PG, default
# postgres://postgres@127.0.0.1:5432/postgres): a scratch database is created and dropped.
#
# Usage: bench/postgres.sh [N]   (default 200,000 events; figures in docs/PERFORMANCE.md)
#   CONC=4                connections of the load generator (the same for both stores)
#   BB=/path/to/blackbox  LG=/path/to/loadgen   (default: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200000}"
CONC="${CONC:-4}"
OUT="$(mktemp -d)"
ADMIN="${BLACKBOX_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="bb_bench_serve_$$"
PG_URL="${ADMIN%/*}/$DB"
if [ -z "${BB:-}" ]; then
  cargo build --release --quiet -p blackbox
  cargo build --release --quiet -p blackbox-client --example loadgen
fi
BB="${BB:-$PWD/target/release/blackbox}"
LG="${LG:-${CARGO_TARGET_DIR:-$PWD/target}/release/examples/loadgen}"
PORT="${PORT:-17860}"
URL="http://127.0.0.1:$PORT"
SERVER=""
cleanup() {
  [ -z "$SERVER" ] || kill "$SERVER" 2> /dev/null || true
  psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2> /dev/null || true
  rm -rf "$OUT"
}
trap cleanup EXIT
psql -q "$ADMIN" -c "CREATE DATABASE $DB"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$N events, 500 per request, $CONC connections; PostgreSQL $(psql -Atq "$ADMIN" -c 'SHOW server_version')"

# CPU seconds used so far by processes named $1 (user + system; /proc, clock ticks).
cpu() { local t=0 p; for p in $(pgrep -x "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2> /dev/null || echo 0))); done; echo "scale=2; $t / $(getconf CLK_TCK)" | bc; }

run() { # NAME STORE_URL_OR_EMPTY
  local name=$1 store=$2 dir="$OUT/$1" t0 t1
  if [ -n "$store" ]; then export BLACKBOX_STORE="$store"; else unset BLACKBOX_STORE; fi
  "$BB" init --data-dir "$dir" > /dev/null
  TOKEN=$("$BB" tokens create --data-dir "$dir" --tenant acme --scope ingest | tail -1)
  BLACKBOX_LOG=warn "$BB" serve --data-dir "$dir" --listen "127.0.0.1:$PORT" --rate-limit 0 &
  SERVER=$!
  for _ in $(seq 100); do curl -fs "$URL/healthz" > /dev/null && break; sleep 0.1; done
  echo "== $name: batched ingest"
  local db0 sv0 db1 sv1
  db0=$(cpu postgres); sv0=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
  "$LG" --url "$URL" --token "$TOKEN" --mode prebuilt --events "$N" --batch-size 500 \
    --concurrency "$CONC" --max-seconds 900 | sed 's/^/  /'
  db1=$(cpu postgres); sv1=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
  printf '  CPU during ingest: service %.2f s, PostgreSQL server %.2f s\n' \
    "$(echo "($sv1 - $sv0) / $(getconf CLK_TCK)" | bc -l)" "$(echo "$db1 - $db0" | bc -l)"
  kill -TERM "$SERVER"; wait "$SERVER" || true; SERVER=""
  if [ -n "$store" ]; then
    printf '  bytes per entry in the database: %.0f\n' \
      "$(echo "$(psql -Atq "$store" -c 'SELECT pg_database_size(current_database())') / $N" | bc -l)"
  else
    printf '  bytes per entry in the store files: %.0f\n' \
      "$(echo "$(du -sb "$dir/blackbox.db" "$dir/blackbox.lines" 2> /dev/null | awk '{s += $1} END {print s}') / $N" | bc -l)"
  fi
  t0=$(date +%s.%N)
  "$BB" verify --data-dir "$dir" | head -1 | sed 's/^/  verify: /'
  t1=$(date +%s.%N)
  printf '  verify: %.2f s = %.0f entries/s\n' "$(echo "$t1 - $t0" | bc -l)" "$(echo "$N / ($t1 - $t0)" | bc -l)"
  t0=$(date +%s.%N)
  rows=$("$BB" query --data-dir "$dir" --agent-id agent-03 --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  t1=$(date +%s.%N)
  printf '  query --agent-id agent-03: %d rows in %.2f s\n' "$rows" "$(echo "$t1 - $t0" | bc -l)"
  unset BLACKBOX_STORE
}
run sqlite ""
run postgres "$PG_URL"
