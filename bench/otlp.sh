#!/usr/bin/env bash
# Benchmark of the OTLP intake (issue 17): OTLP/HTTP protobuf and OTLP/gRPC batches of GenAI spans,
# next to the reference, POST /v1/events with the same number of equivalent events per request,
# measured in the same run; then the server's memory over a long OTLP/HTTP run.
#
# Usage: bench/otlp.sh      (~5 minutes with the defaults; figures in docs/PERFORMANCE.md)
#   BB=/path/to/blackbox   the binary (default: cargo build --release -p blackbox, then target/release)
#   DURATION=20            seconds per measurement
#   ROUNDS=3               rounds of (events, http, grpc), interleaved; the best of each is kept
#   CONC=8 PROCS=1         connections (threads) per load process, load processes
#   BATCH=512              spans (events) per request
#   MODES="events http grpc"
#   SPANS=1000000          spans of the long OTLP/HTTP run (server RSS sampled every 15 s);
#                          SPANS=10000000 is the 10M-span run (ROUNDS=0 SPANS=10000000: 3.4 min
#                          on the 2-core machine at ~56k spans/s, 14 GB of disk); SPANS=0 skips it
#   BENCH_DIR=dir          keep the results (and with KEEP=1 the data dirs) there
#
# Every measurement starts a fresh `blackbox serve` on a fresh data dir (OTLP/gRPC listener on,
# rate limit off), creates an ingest token, runs bench/otlp_load.py for DURATION seconds (requests
# built before the clock starts, sent over kept-alive connections), reads the server's CPU time and
# peak RSS from /proc, stops it, then checks with `blackbox verify` that the store holds one entry
# per accepted span (event) and verifies. Answers are durable: the server answers after the commit.
# The load generator runs on the same machine (loopback); its own CPU is printed, so that a
# saturated generator shows.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-20}"
ROUNDS="${ROUNDS:-3}"
CONC="${CONC:-8}"
PROCS="${PROCS:-1}"
BATCH="${BATCH:-512}"
MODES="${MODES:-events http grpc}"
SPANS="${SPANS:-1000000}"
OUT="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$OUT"
# BB=/path/to/blackbox measures another binary (e.g. the previous release, side by side).
[ -n "${BB:-}" ] || cargo build --release --quiet -p blackbox
BB="${BB:-${CARGO_TARGET_DIR:-$PWD/target}/release/blackbox}"
PORT="${PORT:-17810}"
GPORT="${GPORT:-17817}"
URL="http://127.0.0.1:$PORT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
python3 -c 'import opentelemetry.proto, grpc' 2>/dev/null || {
  echo "needs the Python packages opentelemetry-proto and grpcio (pip install opentelemetry-proto grpcio)"; exit 2; }

echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "binary: $BB ($("$BB" --version 2>/dev/null || echo '?'))"
echo "$ROUNDS rounds of: $MODES; $DURATION s each, $BATCH per request, $PROCS process(es) x $CONC connections"

SERVER=""
serve() { # DATA_DIR
  rm -rf "$1"
  "$BB" init --data-dir "$1" > /dev/null
  TOKEN=$("$BB" tokens create --data-dir "$1" --tenant acme --scope ingest | tail -1)
  BLACKBOX_LOG=warn "$BB" serve --data-dir "$1" --listen "127.0.0.1:$PORT" \
    --otlp-grpc "127.0.0.1:$GPORT" --rate-limit 0 &
  SERVER=$!
  for _ in $(seq 100); do
    if curl -fs "$URL/healthz" > /dev/null && (exec 3<> "/dev/tcp/127.0.0.1/$GPORT") 2> /dev/null; then
      return
    fi
    sleep 0.1
  done
  echo "the server did not start"; exit 2
}
stop() {
  kill -TERM "$SERVER"; wait "$SERVER" || true
  SERVER=""
}
trap '[ -z "$SERVER" ] || kill -TERM "$SERVER" 2> /dev/null || true' EXIT

# check DATA_DIR LABEL: verify the store and count its entries against the accepted spans.
check() {
  local report entries want
  if ! report=$("$BB" verify --data-dir "$1" --format json 2> "$OUT/verify.err"); then
    echo "  verify FAILED: $report"; head -5 "$OUT/verify.err"; exit 1
  fi
  # Entries written for a token (the server's own entries have origin "service").
  entries=$(printf '%s' "$report" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(r["entries_by_origin"].get("token", 0) if r["status"] == "ok" else -1)')
  want=$(tail -1 "$RESULTS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"])')
  echo "  verify: ok, $entries entries written for a token, $want spans (events) accepted;" \
    "store $(du -sb "$1" | awk -v n="$entries" '{printf "%.0f bytes", $1 / (n > 0 ? n : 1)}') per entry"
  if [ "$entries" -ne "$want" ]; then
    echo "  FAILED: one entry per accepted span (event) expected"; exit 1
  fi
}

# measure MODE ROUND [extra otlp_load.py arguments]
measure() {
  local mode=$1 round=$2; shift 2
  local dir="$OUT/data-$mode-$round"
  serve "$dir"
  python3 bench/otlp_load.py "$mode" --url "$URL" --grpc "127.0.0.1:$GPORT" --token "$TOKEN" \
    --batch "$BATCH" --procs "$PROCS" --concurrency "$CONC" --server-pid "$SERVER" "$@" \
    > "$OUT/load.out" || { cat "$OUT/load.out"; stop; echo "the load failed"; exit 1; }
  grep -v '^RESULT ' "$OUT/load.out" | sed 's/^/  /'
  grep '^RESULT ' "$OUT/load.out" | sed "s/^RESULT {/{\"round\": \"$round\", /" >> "$RESULTS"
  stop
  check "$dir"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"
}

for r in $(seq "$ROUNDS"); do
  echo "== round $r"
  for m in $MODES; do
    measure "$m" "$r" --duration "$DURATION"
  done
done

if [ "$SPANS" -gt 0 ]; then
  echo "== long run: $SPANS spans over OTLP/HTTP protobuf, server RSS every 15 s"
  measure http long --spans "$SPANS" --duration 36000 --rss-every 15 2>&1
fi

python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
short = [r for r in rows if r["round"] != "long"]
print("== summary (best of the rounds; all rounds in brackets)")
best = {}
for mode in ("events", "http", "grpc"):
    rs = [r for r in short if r["mode"] == mode]
    if not rs:
        continue
    b = max(rs, key=lambda r: r["per_second"])
    cpu = min(r["server_cpu_us_per_item"] for r in rs)
    best[mode] = (b["per_second"], cpu)
    name = {"events": "/v1/events JSON (reference)", "http": "OTLP/HTTP protobuf",
            "grpc": "OTLP/gRPC"}[mode]
    print(f"{name:30} {b['per_second']:>8} /s [{', '.join(str(r['per_second']) for r in rs)}]  "
          f"server CPU {cpu} us per item [{', '.join(str(r['server_cpu_us_per_item']) for r in rs)}]  "
          f"p99 {b['p99_ms']} ms  peak RSS {max(r['server_peak_rss_mib'] for r in rs)} MiB  "
          f"client CPU {b['client_cpu_pct']}%")
if "events" in best:
    for mode in ("http", "grpc"):
        if mode in best:
            print(f"cost per item {mode} / events: {best['events'][0] / best[mode][0]:.2f}x by throughput, "
                  f"{best[mode][1] / best['events'][1]:.2f}x by server CPU")
for r in rows:
    if r["round"] == "long":
        print(f"long run: {r['items']} spans in {r['seconds']} s = {r['per_second']} spans/s; server RSS "
              f"sampled every 15 s: {r.get('rss_samples_mib', [])} MiB; peak {r['server_peak_rss_mib']} MiB")
EOF
[ -n "${BENCH_DIR:-}" ] || rm -rf "$OUT"
