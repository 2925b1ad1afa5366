#!/usr/bin/env bash
# Benchmark of `blackbox export` (issue 5 target: a one-year report over 10,000,000 entries in
# ≤ 60 s on the 2-core machine, memory bounded). Generates N events of one tenant spread over
# 2025, appends them, then times the SOC 2 export (PDF), the JSON export and, as the reference
# measured in the same run, `blackbox verify` of the same store (the export verifies the chain).
# Usage: bench/export.sh [N]   (default 10,000,000; needs ~9 GB of disk per 10M entries)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000000}"
OUT="${BENCH_DIR:-$(mktemp -d)}"
cargo build --release --quiet -p blackbox
BB="$PWD/target/release/blackbox"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); $N entries"
"$BB" init --data-dir "$OUT/d" > /dev/null
python3 bench/gen_events.py "$N" 1 year | "$BB" append --data-dir "$OUT/d" > /dev/null
"$BB" export --print-config > "$OUT/d/export.toml"
t() { # LABEL CMD...
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "$OUT/time" "$@" > /dev/null
  read -r secs kb < "$OUT/time"
  printf '  %-44s %7.1f s, peak RSS %d MiB\n' "$label" "$secs" "$((kb / 1024))"
}
t "verify (reference)" "$BB" verify --data-dir "$OUT/d"
t "export soc2 CC7.2, one year, PDF" "$BB" export --data-dir "$OUT/d" --standard soc2 --control CC7.2 \
  --period 2025-01-01/2025-12-31 --output "$OUT/soc2.pdf"
t "export gdpr art30 with data subjects, JSON" "$BB" export --data-dir "$OUT/d" --standard gdpr --article art30 \
  --include-data-subjects true --period 2025-01-01/2025-12-31 --output "$OUT/gdpr.json"
[ -n "${BENCH_DIR:-}" ] || rm -rf "$OUT"
