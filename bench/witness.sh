#!/usr/bin/env bash
# Benchmark of witnessing (issue 23, docs/WITNESS.md):
# 1. `blackbox witness serve` alone: checkpoint submissions per second from many logs at once
#    (every cosignature checked by the generator), next to plain `GET /` requests to the same
#    process with the same connections (the HTTP ceiling of this machine, in the same run).
# 2. `blackbox serve` batched ingest with 3 witnesses vs none, side by side (checkpoints every
#    1,000 entries in both runs, so that witnessing has work to do).
#
# Usage: bench/witness.sh [ORIGINS] [PER_ORIGIN] [CONNECTIONS] [N_EVENTS]
#        (default 200 origins x 50 checkpoints, 32 connections; 1,000,000 events)
set -euo pipefail
cd "$(dirname "$0")/.."
ORIGINS="${1:-200}"
PER="${2:-50}"
CONNS="${3:-32}"
NB="${4:-1000000}"
OUT="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$OUT"
[ -n "${BB:-}" ] || cargo build --release --quiet -p blackbox
cargo build --release --quiet -p blackbox-witness --example witness_load
cargo build --release --quiet -p blackbox-client --example loadgen
BB="${BB:-${CARGO_TARGET_DIR:-$PWD/target}/release/blackbox}"
WL="$PWD/target/release/examples/witness_load"
LG="${CARGO_TARGET_DIR:-$PWD/target}/release/examples/loadgen"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"

wait_up() { for _ in $(seq 100); do curl -fs "$1" > /dev/null && return; sleep 0.1; done; echo "$1 did not start"; exit 2; }
peak() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$1/status"; }

echo "== 1. one witness, $ORIGINS logs x $PER checkpoints, $CONNS connections"
rm -rf "$OUT/log" "$OUT/w1" "$OUT/w1.key" "$OUT/w1.key.pub"
"$BB" init --data-dir "$OUT/log" --log-name bench/log > /dev/null
"$BB" witness keygen --name bench.witness/w1 --key-file "$OUT/w1.key" > /dev/null 2>&1
BLACKBOX_LOG=warn "$BB" witness serve --key-file "$OUT/w1.key" --log-key "$OUT/log/checkpoint.pub" \
  --state-dir "$OUT/w1" --listen 127.0.0.1:17381 &
W=$!
wait_up http://127.0.0.1:17381/
"$WL" http://127.0.0.1:17381 "$OUT/log/keys/checkpoint.key" "$OUT/w1.key.pub" "$ORIGINS" "$PER" "$CONNS" get
"$WL" http://127.0.0.1:17381 "$OUT/log/keys/checkpoint.key" "$OUT/w1.key.pub" "$ORIGINS" "$PER" "$CONNS"
echo "  witness peak RSS: $(peak $W) MiB; state file: $(du -h "$OUT/w1/witness.db" | cut -f1)"
kill -TERM $W; wait $W || true

echo "== 2. batched ingest of $NB events (500 per request, 4 connections), checkpoints every 1,000 entries"
ingest() { # NAME WITNESSES(0|3)
  local d="$OUT/ingest-$1"
  rm -rf "$d"
  "$BB" init --data-dir "$d" > /dev/null
  sed -i 's/^every_entries = 10000/every_entries = 1000/' "$d/blackbox.toml"
  local pids=()
  if [ "$2" = 3 ]; then
    local list=""
    for i in 1 2 3; do
      rm -rf "$d-w$i" "$d-w$i.key" "$d-w$i.key.pub"
      "$BB" witness keygen --name "bench.witness/w$i" --key-file "$d-w$i.key" > /dev/null 2>&1
      BLACKBOX_LOG=warn "$BB" witness serve --key-file "$d-w$i.key" --log-key "$d/checkpoint.pub" \
        --state-dir "$d-w$i" --listen "127.0.0.1:1739$i" &
      pids+=($!)
      wait_up "http://127.0.0.1:1739$i/"
      list="$list  { url = \"http://127.0.0.1:1739$i\", key = \"$(cat "$d-w$i.key.pub")\" },\n"
    done
    python3 - "$d/blackbox.toml" "$list" <<'PY'
import sys
p, items = sys.argv[1], sys.argv[2].replace("\\n", "\n")
s = open(p).read().replace("witnesses = []", "witnesses = [\n" + items + "]", 1)
open(p, "w").write(s)
PY
  fi
  TOKEN=$("$BB" tokens create --data-dir "$d" --tenant acme --scope ingest | tail -1)
  ADMIN=$("$BB" tokens create --data-dir "$d" --scope admin | tail -1)
  BLACKBOX_LOG=warn "$BB" serve --data-dir "$d" --listen 127.0.0.1:17800 --rate-limit 0 &
  local s=$!
  wait_up http://127.0.0.1:17800/healthz
  "$LG" --url http://127.0.0.1:17800 --token "$TOKEN" --mode prebuilt --events "$NB" --batch-size 500 \
    --concurrency 4 --max-seconds 900
  if [ "$2" = 3 ]; then
    sleep 3
    curl -fs -H "Authorization: Bearer $ADMIN" http://127.0.0.1:17800/v1/witnesses \
      | python3 -c 'import sys, json; d = json.load(sys.stdin); print("  cosigned per witness (acme):", [w["cosigned"].get("acme") for w in d["witnesses"]], "errors:", [w["last_error"] for w in d["witnesses"]])'
  fi
  echo "  server peak RSS: $(peak $s) MiB"
  kill -TERM $s; wait $s || true
  for p in "${pids[@]}"; do kill -TERM "$p"; wait "$p" || true; done
}
echo "-- no witness"
ingest none 0
echo "-- 3 witnesses (same machine)"
ingest three 3
echo "-- no witness, again"
ingest none2 0
