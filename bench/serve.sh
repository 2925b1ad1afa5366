#!/usr/bin/env bash
# Benchmark of the service: batched ingest (500 events per request), single-event requests from
# 64 connections, and the server's peak memory, next to `blackbox append` of the same number of
# events in the same run. The load generator runs on the same machine (loopback only).
#
# Usage: bench/serve.sh [N_BATCHED] [N_SINGLE]   (default 1,000,000 and 200,000)
# The 10-million-event memory run: bench/serve.sh 10000000 (peak RSS is printed per phase).
set -euo pipefail
cd "$(dirname "$0")/.."
NB="${1:-1000000}"
NS="${2:-200000}"
OUT="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$OUT"
# BB=/path/to/blackbox measures another binary (e.g. the previous release, side by side).
[ -n "${BB:-}" ] || cargo build --release --quiet -p blackbox
cargo build --release --quiet -p blackbox-client --example loadgen
BB="${BB:-${CARGO_TARGET_DIR:-$PWD/target}/release/blackbox}"
LG="${CARGO_TARGET_DIR:-$PWD/target}/release/examples/loadgen"
PORT="${PORT:-17800}"
URL="http://127.0.0.1:$PORT"

echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"

serve() { # DATA_DIR
  rm -rf "$1"
  "$BB" init --data-dir "$1" > /dev/null
  TOKEN=$("$BB" tokens create --data-dir "$1" --tenant acme --scope ingest | tail -1)
  BLACKBOX_LOG=warn "$BB" serve --data-dir "$1" --listen "127.0.0.1:$PORT" --rate-limit 0 &
  SERVER=$!
  for _ in $(seq 100); do curl -fs "$URL/healthz" > /dev/null && return; sleep 0.1; done
  echo "the server did not start"; exit 2
}
stop() {
  local hwm
  hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$SERVER/status")
  kill -TERM "$SERVER"; wait "$SERVER" || true
  echo "  server peak RSS: $hwm MiB"
}

echo "== batched ingest: $NB events, 500 per request, 4 connections (requests built beforehand)"
serve "$OUT/batched"
"$LG" --url "$URL" --token "$TOKEN" --mode prebuilt --events "$NB" --batch-size 500 \
  --concurrency 4 --max-seconds 900
stop

echo "== batched ingest, generator building and hashing every event as it goes (same cores)"
serve "$OUT/batched-live"
"$LG" --url "$URL" --token "$TOKEN" --mode batched --events "$((NB / 4))" --batch-size 500 \
  --concurrency 2000 --max-seconds 600
stop

echo "== single-event requests from 64 connections"
serve "$OUT/single"
if command -v wrk > /dev/null; then
  TOKEN="$TOKEN" wrk -t2 -c64 -d20s --latency -s bench/single_event.lua "$URL" \
    | grep -E "Requests/sec|  50%|  90%|  99%|requests in"
else
  echo "  (wrk not installed: apt-get install wrk; using the Rust generator)"
fi
"$LG" --url "$URL" --token "$TOKEN" --mode prebuilt --batch-size 1 --events "$NS" \
  --concurrency 64 --max-seconds 600
stop

echo "== reference: blackbox append of $NB events (same generator shape) in this run"
python3 bench/gen_events.py "$NB" > "$OUT/events.ndjson"
rm -rf "$OUT/append"; "$BB" init --data-dir "$OUT/append" > /dev/null
/usr/bin/time -f "%e %M" -o "$OUT/time" "$BB" append --data-dir "$OUT/append" --file "$OUT/events.ndjson" > /dev/null
read -r secs kb < "$OUT/time"
printf '  append: %.2f s = %.0f events/s, peak RSS %d MiB\n' "$secs" "$(echo "$NB / $secs" | bc -l)" "$((kb / 1024))"
[ -n "${BENCH_DIR:-}" ] || rm -rf "$OUT"
