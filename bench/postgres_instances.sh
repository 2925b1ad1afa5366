#!/usr/bin/env bash
# Several `blackbox serve` instances on one PostgreSQL database (issue 19): durable batched
# ingest into one tenant's chain through 1, 2 and 3 instances at once (each a copy of the data
# directory, with its own token; 500 events per request, 2 connections per instance, requests
# built beforehand), then `verify`. Total events/s over the wall time of the whole run. On this
# 2-core machine the instances, the database and the load generators share the cores, and a
# chain is written by one instance at a time (the database's writer lock): more instances are
# expected to add availability, not throughput (docs/SCALING.md).
#
# Usage: bench/postgres_instances.sh [N]   (default 120,000 events per run)
#   BB=/path/to/blackbox  LG=/path/to/loadgen   (default: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-120000}"
OUT="$(mktemp -d)"
ADMIN="${BLACKBOX_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
if [ -z "${BB:-}" ]; then
  cargo build --release --quiet -p blackbox
  cargo build --release --quiet -p blackbox-client --example loadgen
fi
BB="${BB:-$PWD/target/release/blackbox}"
LG="${LG:-${CARGO_TARGET_DIR:-$PWD/target}/release/examples/loadgen}"
PORT="${PORT:-17870}"
PIDS=()
DBS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  for d in "${DBS[@]}"; do psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" 2> /dev/null || true; done
  rm -rf "$OUT"
}
trap cleanup EXIT
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$N events per run into one tenant, 500 per request, 2 connections per instance; PostgreSQL $(psql -Atq "$ADMIN" -c 'SHOW server_version')"
for k in 1 2 3; do
  db="bb_bench_instances_${k}_$$"
  DBS+=("$db")
  psql -q "$ADMIN" -c "CREATE DATABASE $db"
  export BLACKBOX_STORE="${ADMIN%/*}/$db"
  "$BB" init --data-dir "$OUT/k$k-0" > /dev/null
  tokens=()
  for i in $(seq 0 $((k - 1))); do
    d="$OUT/k$k-$i"
    if [ "$i" -gt 0 ]; then
      mkdir -p "$d"
      cp -r "$OUT/k$k-0/keys" "$OUT/k$k-0/blackbox.toml" "$OUT/k$k-0/checkpoint.pub" "$OUT/k$k-0/store.postgres" "$d/"
    fi
    tokens+=("$("$BB" tokens create --data-dir "$d" --tenant acme --scope ingest | tail -1)")
    BLACKBOX_LOG=warn "$BB" serve --data-dir "$d" --listen "127.0.0.1:$((PORT + i))" --rate-limit 0 &
    PIDS+=($!)
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$((PORT + i))/healthz" > /dev/null && break; sleep 0.1; done
  done
  t0=$(date +%s.%N)
  lg=()
  for i in $(seq 0 $((k - 1))); do
    "$LG" --url "http://127.0.0.1:$((PORT + i))" --token "${tokens[$i]}" --mode prebuilt \
      --events $((N / k)) --batch-size 500 --concurrency 2 --max-seconds 900 > "$OUT/lg-$k-$i.txt" 2>&1 &
    lg+=($!)
  done
  for p in "${lg[@]}"; do wait "$p"; done
  t1=$(date +%s.%N)
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2> /dev/null || true; wait "$p" 2> /dev/null || true; done
  PIDS=()
  stored=$(psql -Atq "$BLACKBOX_STORE" -c "SELECT size FROM chains WHERE tenant_id = 'acme'")
  printf '== %d instance(s): %d entries stored in %.1f s = %.0f events/s\n' "$k" "$stored" \
    "$(echo "$t1 - $t0" | bc -l)" "$(echo "$stored / ($t1 - $t0)" | bc -l)"
  for i in $(seq 0 $((k - 1))); do sed "s/^/  instance $i: /" "$OUT/lg-$k-$i.txt" | grep -E "events ok|throughput" | head -2; done
  "$BB" verify --data-dir "$OUT/k$k-0" | head -1 | sed 's/^/  verify: /'
  unset BLACKBOX_STORE
done
