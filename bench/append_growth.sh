#!/usr/bin/env bash
# Benchmark: does `blackbox append` cost more per entry as the store grows?
#
# Usage: bench/append_growth.sh [LEVELS]    (default "1 5 10": store sizes in millions of entries)
#        BINARIES="old=/path/to/blackbox new=target/release/blackbox" bench/append_growth.sh
#
# For every binary (default: this tree's release build) a store is filled to each level in turn
# with 1M-entry appends of `bench/gen_events.py` events; at each level a probe of PROBE entries
# (default 200,000) is appended ROUNDS times (default 2), the binaries' probes interleaved, and
# the best time is kept. The figure that matters is each binary's cost per entry at a level
# divided by its cost at the first level: flat means ~1.00.
set -euo pipefail
cd "$(dirname "$0")/.."
LEVELS="${1:-1 5 10}"
PROBE="${PROBE:-200000}"
ROUNDS="${ROUNDS:-2}"
OUT="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$OUT"
if [ -z "${BINARIES:-}" ]; then
  cargo build --release --quiet -p blackbox
  BINARIES="this=$PWD/target/release/blackbox"
fi
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); probe $PROBE entries, best of $ROUNDS"
python3 bench/gen_events.py 1000000 > "$OUT/fill.ndjson"
python3 bench/gen_events.py "$PROBE" > "$OUT/probe.ndjson"
declare -A SIZE FIRST
for b in $BINARIES; do
  name=${b%%=*}; bin=${b#*=}
  rm -rf "$OUT/data-$name"
  "$bin" init --data-dir "$OUT/data-$name" > /dev/null
  SIZE[$name]=0
done
printf '%-8s %10s %12s %14s %10s\n' binary entries "probe (s)" "µs per entry" "vs first"
for level in $LEVELS; do
  target=$((level * 1000000))
  for b in $BINARIES; do
    name=${b%%=*}; bin=${b#*=}
    while [ "${SIZE[$name]}" -lt "$target" ]; do
      "$bin" append --data-dir "$OUT/data-$name" --file "$OUT/fill.ndjson" > /dev/null
      SIZE[$name]=$((SIZE[$name] + 1000000))
    done
  done
  declare -A BEST=()
  for r in $(seq "$ROUNDS"); do
    for b in $BINARIES; do
      name=${b%%=*}; bin=${b#*=}
      sync
      s=$(date +%s.%N)
      "$bin" append --data-dir "$OUT/data-$name" --file "$OUT/probe.ndjson" > /dev/null
      e=$(date +%s.%N)
      t=$(echo "$e - $s" | bc -l)
      SIZE[$name]=$((SIZE[$name] + PROBE))
      if [ -z "${BEST[$name]:-}" ] || (( $(echo "$t < ${BEST[$name]}" | bc -l) )); then BEST[$name]=$t; fi
    done
  done
  for b in $BINARIES; do
    name=${b%%=*}
    us=$(echo "${BEST[$name]} * 1000000 / $PROBE" | bc -l)
    [ -n "${FIRST[$name]:-}" ] || FIRST[$name]=$us
    printf '%-8s %10d %12.2f %14.2f %10.2f\n' "$name" "${SIZE[$name]}" "${BEST[$name]}" "$us" \
      "$(echo "$us / ${FIRST[$name]}" | bc -l)"
  done
done
du -sh "$OUT"/data-* | sed 's/^/store size: /'
