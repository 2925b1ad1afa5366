#!/usr/bin/env bash
# Benchmark of anomaly detection in the service (docs/PERFORMANCE.md, issue 4 targets):
#  1. batched ingest without rules and with the seed's rules, alternating, same run: the ratio;
#  2. POST /v1/decide at 5,000 decisions/s with 100 rules and 500 patterns (bench/rules-100.yaml):
#     client-side latency from the generator, server-side p99 from the service's own histogram
#     (blackbox_decide_seconds: handler entry to answer, durable commit of the record included).
# Rule evaluation alone, per core: cargo bench -p blackbox-detect --bench eval
#
# Usage: bench/detect.sh [N_INGEST] [N_DECIDE]   (default 500,000 and 100,000)
#        SKIP_INGEST=1 skips part 1; DECIDE_MODES="sequenced" RUNS=3 repeats part 2 for one mode;
#        DECIDE_RULES=examples/recommended-rules.yaml decides with the recommended pack instead.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-500000}"
ND="${2:-100000}"
OUT="$(mktemp -d)"
cargo build --release --quiet -p blackbox
cargo build --release --quiet -p blackbox-client --example loadgen
BB="${CARGO_TARGET_DIR:-$PWD/target}/release/blackbox"
LG="${CARGO_TARGET_DIR:-$PWD/target}/release/examples/loadgen"
PORT="${PORT:-17900}"
URL="http://127.0.0.1:$PORT"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"

serve() { # DATA_DIR [RULES [EXTRA FLAGS...]]
  rm -rf "$1"
  "$BB" init --data-dir "$1" > /dev/null
  TOKEN=$("$BB" tokens create --data-dir "$1" --tenant acme --scope ingest | tail -1)
  ADMIN=$("$BB" tokens create --data-dir "$1" --scope admin | tail -1)
  local dir="$1" rules=()
  [ -n "${2:-}" ] && rules=(--rules "$2")
  shift; shift || true
  BLACKBOX_LOG=warn "$BB" serve --data-dir "$dir" --listen "127.0.0.1:$PORT" --rate-limit 0 "${rules[@]}" "$@" &
  SERVER=$!
  for _ in $(seq 100); do curl -fs "$URL/healthz" > /dev/null && return; sleep 0.1; done
  echo "the server did not start"; exit 2
}
stop() { kill -TERM "$SERVER"; wait "$SERVER" || true; }

ingest() { # LABEL [RULES]
  serve "$OUT/d" "${2:-}"
  local r
  r=$("$LG" --url "$URL" --token "$TOKEN" --mode prebuilt --events "$N" --batch-size 500 \
      --concurrency 4 --max-seconds 600 | awk '/^throughput/ {print $2}')
  stop
  echo "  $1: $r events/s"
  echo "$r" >> "$OUT/$1"
}

if [ -z "${SKIP_INGEST:-}" ]; then
echo "== batched ingest, $N events, 500 per request, 4 connections; best of 2, alternating"
for _ in 1 2; do
  ingest without-rules
  ingest seed-rules examples/seed-rules.yaml
done
best() { sort -n "$OUT/$1" | tail -1; }
printf '  best: without rules %s, with the seed rules %s events/s: ratio %.2f\n' \
  "$(best without-rules)" "$(best seed-rules)" "$(echo "$(best seed-rules) / $(best without-rules)" | bc -l)"
fi

DECIDE_RULES="${DECIDE_RULES:-bench/rules-100.yaml}"
decide() { # ANSWER
echo "== POST /v1/decide at 5,000/s, $ND decisions, rules $DECIDE_RULES, --decide-answer $1"
serve "$OUT/d" "$DECIDE_RULES" --decide-answer "$1"
"$LG" --url "$URL" --token "$TOKEN" --mode decide --rate 5000 --events "$ND" --concurrency 256 --max-seconds 120
curl -fs -H "Authorization: Bearer $ADMIN" "$URL/metrics" | python3 -c '
import sys
lines = sys.stdin.read().splitlines()
for name, what in (("blackbox_decide_eval_seconds", "evaluation in the service (gate, counters, rules)"),
                   ("blackbox_decide_seconds", "handler entry to answer")):
    b = []
    for l in lines:
        if l.startswith(name + "_bucket"):
            le = l.split("le=\"")[1].split("\"")[0]
            b.append((float("inf") if le == "+Inf" else float(le), float(l.rsplit(" ", 1)[1])))
    total = b[-1][1]
    qs = []
    for q in (0.5, 0.99):
        le = next(le for le, c in b if c >= q * total)
        qs.append(f"p{int(q*100)} <= {le*1000:.3f} ms")
    print(f"  server side, {what}: " + ", ".join(qs) + f" ({int(total)} decisions)")
'
stop
}
# DECIDE_MODES="sequenced" RUNS=3 repeats one mode; by default each mode once.
for _ in $(seq "${RUNS:-1}"); do
  for mode in ${DECIDE_MODES:-durable sequenced}; do decide "$mode"; done
done
echo "== the disk: fdatasync of an 800-byte append, 300 times (the floor of a durable answer)"
python3 - "$OUT" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync.test")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
lat = []
for _ in range(300):
    os.write(fd, b"x" * 800)
    t = time.perf_counter(); os.fdatasync(fd); lat.append(time.perf_counter() - t)
lat.sort()
print("  fdatasync p50 %.3f ms, p99 %.3f ms, max %.3f ms" % (lat[150] * 1e3, lat[296] * 1e3, lat[-1] * 1e3))
os.close(fd); os.unlink(path)
PY
rm -rf "$OUT"
