#!/usr/bin/env bash
# Benchmark of retention (issue 6): N events of several tenants written a year and a half ago,
# then `blackbox retention run` seals them all into archive segments (write, read back, verify,
# drop from the store). Reported next to the reference measured in the same run: `blackbox
# verify` of the same store before archiving (a run verifies every segment it writes, so it
# cannot be faster than verification), and `verify --include-archive` afterwards.
# Usage: bench/retention.sh [N]   (default 1,000,000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
OUT="${BENCH_DIR:-$(mktemp -d)}"
cargo build --release --quiet -p blackbox
BB="$PWD/target/release/blackbox"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); $N entries"
"$BB" init --data-dir "$OUT/d" > /dev/null
python3 bench/gen_events.py "$N" | BLACKBOX_TEST_NOW=2025-06-01T00:00:00Z "$BB" append --data-dir "$OUT/d" > /dev/null
t() { # LABEL CMD...
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "$OUT/time" "$@" > /dev/null
  read -r secs kb < "$OUT/time"
  printf '  %-48s %7.1f s, peak RSS %d MiB\n' "$label" "$secs" "$((kb / 1024))"
}
store_mb() { du -sm "$OUT/d/blackbox.db" "$OUT/d/blackbox.lines" | awk '{s += $1} END {print s}'; }
echo "  store before: $(store_mb) MiB"
t "verify --data-dir (reference, before archiving)" "$BB" verify --data-dir "$OUT/d"
t "retention run (seal, read back, verify, drop)" "$BB" retention run --data-dir "$OUT/d"
echo "  store after: $(store_mb) MiB; archive: $(du -sm "$OUT/d/archive" | cut -f1) MiB in $(find "$OUT/d/archive" -type f | wc -l) segments"
t "verify --include-archive (archive + store)" "$BB" verify --data-dir "$OUT/d" --include-archive
t "query --include-archive agent+tool+day" "$BB" query --data-dir "$OUT/d" --include-archive \
  --agent-id acme-agent-07 --tool query_database --start 2026-04-14 --end 2026-04-14 --format jsonl
[ -n "${BENCH_DIR:-}" ] || rm -rf "$OUT"
