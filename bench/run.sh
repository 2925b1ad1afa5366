#!/usr/bin/env bash
# Benchmark: append, verify (store and exported file) and query, next to `openssl dgst -sha256`
# over the same exported file, all in one run.
#
# Usage: bench/run.sh [N_EVENTS]  (default 1,000,000; RUNS=k repeats each timing, default 3)
#
# These machines are shared and noisy (the same command varies by ±30% from one run to the
# next), so every timing is repeated RUNS times, interleaved with the reference, and the best
# (lowest) time of each is reported: the ratio of the two bests is the figure that carries over.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
RUNS="${RUNS:-3}"
OUT="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$OUT"
# BB=/path/to/blackbox measures another binary (e.g. the previous release, side by side).
[ -n "${BB:-}" ] || cargo build --release --quiet -p blackbox
BB="${BB:-$PWD/target/release/blackbox}"
export BLACKBOX_DATA_DIR="$OUT/data"

# best NAME CMD...: runs CMD, keeps the lowest wall time (s) and its max RSS (KiB) under NAME.
declare -A BEST RSS
best() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$OUT/time" "$@" > /dev/null 2>&1
  local secs kb
  read -r secs kb < "$OUT/time"
  if [ -z "${BEST[$name]:-}" ] || (( $(echo "$secs < ${BEST[$name]}" | bc -l) )); then
    BEST[$name]=$secs
    RSS[$name]=$kb
  fi
}
row() { # NAME LABEL
  printf '%-36s %7.2f s  %10.0f entries/s  %5d MiB max RSS\n' "$2" "${BEST[$1]}" \
    "$(echo "$N / ${BEST[$1]}" | bc -l)" "$((${RSS[$1]} / 1024))"
}

echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); best of $RUNS runs each"
echo "generating $N events ..."
python3 bench/gen_events.py "$N" > "$OUT/events.ndjson"

for i in $(seq "$RUNS"); do
  rm -rf "$OUT/data" "$OUT/data-batched"
  "$BB" init > /dev/null
  best append "$BB" append --file "$OUT/events.ndjson"
  BLACKBOX_DATA_DIR="$OUT/data-batched" "$BB" init > /dev/null
  best append_batched env BLACKBOX_DATA_DIR="$OUT/data-batched" "$BB" append --batch-size 100000 --file "$OUT/events.ndjson"
done
rm -rf "$OUT/data-batched"
"$BB" verify | head -1
"$BB" export-log --output "$OUT/audit.jsonl" > /dev/null
SIZE=$(stat -c %s "$OUT/audit.jsonl")
"$BB" verify --log-file "$OUT/audit.jsonl" --key-file "$BLACKBOX_DATA_DIR/keys/hmac.keys" \
  --public-key "$BLACKBOX_DATA_DIR/checkpoint.pub" | head -1
for i in $(seq "$RUNS"); do
  best verify_store "$BB" verify
  best verify_file "$BB" verify --log-file "$OUT/audit.jsonl" --key-file "$BLACKBOX_DATA_DIR/keys/hmac.keys" --public-key "$BLACKBOX_DATA_DIR/checkpoint.pub"
  best verify_pub "$BB" verify --log-file "$OUT/audit.jsonl" --public-key "$BLACKBOX_DATA_DIR/checkpoint.pub"
  best openssl openssl dgst -sha256 "$OUT/audit.jsonl"
done

row append "append (durable, one batch)"
row append_batched "append --batch-size 100000"
row verify_store "verify --data-dir"
row verify_file "verify --log-file (key + pubkey)"
row verify_pub "verify --log-file (public key only)"
printf '%-36s %7.2f s  %10.0f MB/s (file: %d MB)\n' "openssl dgst -sha256 (reference)" \
  "${BEST[openssl]}" "$(echo "$SIZE / 1000000 / ${BEST[openssl]}" | bc -l)" "$((SIZE / 1000000))"
printf '%-36s %7.2f x\n' "verify --log-file / openssl" "$(echo "${BEST[verify_file]} / ${BEST[openssl]}" | bc -l)"

# First row of an agent + tool + one-day query (the query stops after one row).
AGENT=$(head -1 "$OUT/events.ndjson" | sed 's/.*"agent_id":"\([^"]*\)".*/\1/')
q1=999999; qa=999999
for i in $(seq "$RUNS"); do
  start=$(date +%s%N)
  "$BB" query --agent-id "$AGENT" --tool query_database --start 2026-04-14 --end 2026-04-14 --time claimed --limit 1 --format jsonl > /dev/null
  end=$(date +%s%N)
  t=$(( (end - start) / 1000 )); (( t < q1 )) && q1=$t
  start=$(date +%s%N)
  rows=$("$BB" query --agent-id "$AGENT" --tool query_database --start 2026-04-14 --end 2026-04-14 --time claimed --format jsonl | wc -l)
  end=$(date +%s%N)
  t=$(( (end - start) / 1000 )); (( t < qa )) && qa=$t
done
printf '%-36s %7.1f ms (whole process, first row)\n' "query agent+tool+day, --limit 1" "$(echo "$q1 / 1000" | bc -l)"
printf '%-36s %7.1f ms (%d rows)\n' "query agent+tool+day, all rows" "$(echo "$qa / 1000" | bc -l)" "$rows"
[ -n "${BENCH_DIR:-}" ] || rm -rf "$OUT"
