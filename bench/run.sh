#!/usr/bin/env bash
# Benchmark: append, verify (store and exported file) and query, next to `openssl dgst -sha256`
# over the same exported file, all in one run. Usage: bench/run.sh [N_EVENTS]  (default 1,000,000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
OUT="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$OUT"
cargo build --release --quiet -p blackbox
BB="$PWD/target/release/blackbox"
export BLACKBOX_DATA_DIR="$OUT/data"
t() { /usr/bin/time -f "%e %M" -o "$OUT/time" "$@"; read -r secs kb < "$OUT/time"; }

echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "generating $N events ..."
python3 bench/gen_events.py "$N" > "$OUT/events.ndjson"
"$BB" init > /dev/null

t "$BB" append --file "$OUT/events.ndjson" > /dev/null
printf '%-34s %8.2f s  %12.0f entries/s  %7d MiB max RSS\n' "append (durable, one batch)" "$secs" "$(echo "$N / $secs" | bc -l)" "$((kb / 1024))"

BLACKBOX_DATA_DIR="$OUT/data-batched" "$BB" init > /dev/null
t env BLACKBOX_DATA_DIR="$OUT/data-batched" "$BB" append --batch-size 100000 --file "$OUT/events.ndjson" > /dev/null 2>&1
printf '%-34s %8.2f s  %12.0f entries/s  %7d MiB max RSS\n' "append --batch-size 100000" "$secs" "$(echo "$N / $secs" | bc -l)" "$((kb / 1024))"
rm -rf "$OUT/data-batched"

t "$BB" verify > "$OUT/verify.txt"
head -1 "$OUT/verify.txt"
printf '%-34s %8.2f s  %12.0f entries/s  %7d MiB max RSS\n' "verify --data-dir" "$secs" "$(echo "$N / $secs" | bc -l)" "$((kb / 1024))"

"$BB" export-log --output "$OUT/audit.jsonl" > /dev/null
SIZE=$(stat -c %s "$OUT/audit.jsonl")
t "$BB" verify --log-file "$OUT/audit.jsonl" --key-file "$BLACKBOX_DATA_DIR/keys/hmac.keys" --public-key "$BLACKBOX_DATA_DIR/checkpoint.pub" > "$OUT/verify-file.txt"
head -1 "$OUT/verify-file.txt"
vsecs=$secs
printf '%-34s %8.2f s  %12.0f entries/s  %7d MiB max RSS\n' "verify --log-file (key + pubkey)" "$secs" "$(echo "$N / $secs" | bc -l)" "$((kb / 1024))"

t "$BB" verify --log-file "$OUT/audit.jsonl" --public-key "$BLACKBOX_DATA_DIR/checkpoint.pub" > /dev/null
printf '%-34s %8.2f s  %12.0f entries/s  %7d MiB max RSS\n' "verify --log-file (public key only)" "$secs" "$(echo "$N / $secs" | bc -l)" "$((kb / 1024))"

t openssl dgst -sha256 "$OUT/audit.jsonl" > /dev/null
printf '%-34s %8.2f s  %12.0f MB/s (file: %d MB)\n' "openssl dgst -sha256 (reference)" "$secs" "$(echo "$SIZE / 1000000 / $secs" | bc -l)" "$((SIZE / 1000000))"
printf '%-34s %8.2f x\n' "verify --log-file / openssl" "$(echo "$vsecs / $secs" | bc -l)"

# First row of an agent + tool + one-day query (the query stops after one row).
AGENT=$(head -1 "$OUT/events.ndjson" | sed 's/.*"agent_id":"\([^"]*\)".*/\1/')
start=$(date +%s%N)
"$BB" query --agent-id "$AGENT" --tool query_database --start 2026-04-14 --end 2026-04-14 --limit 1 --format jsonl > /dev/null
end=$(date +%s%N)
printf '%-34s %8.1f ms (whole process, first row)\n' "query agent+tool+day, --limit 1" "$(echo "($end - $start) / 1000000" | bc -l)"
start=$(date +%s%N)
rows=$("$BB" query --agent-id "$AGENT" --tool query_database --start 2026-04-14 --end 2026-04-14 --format jsonl | wc -l)
end=$(date +%s%N)
printf '%-34s %8.1f ms (%d rows)\n' "query agent+tool+day, all rows" "$(echo "($end - $start) / 1000000" | bc -l)" "$rows"
[ -n "${BENCH_DIR:-}" ] || rm -rf "$OUT"
