#!/usr/bin/env bash
# Latency of one decision (`POST /v1/decide`, one at a time, kept-alive connection) from a fresh
# `blackbox serve`, with each `--decide-answer`: what `durable` (the record on disk before the
# answer) costs over `sequenced` (signed, committed within milliseconds). Give two binaries to
# measure them side by side, alternating, in the same run (the machine is shared and noisy).
#
# Usage: bench/decide.sh [BLACKBOX ...]   (default: target/release/blackbox; ~1 minute per binary)
#   ROUNDS=2 N=3000 PORT=17900
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-2}"; N="${N:-3000}"; PORT="${PORT:-17900}"
[ $# -gt 0 ] || set -- "${CARGO_TARGET_DIR:-$PWD/target}/release/blackbox"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  for bb in "$@"; do
    for answer in sequenced durable; do
      d="$(mktemp -d)"
      "$bb" init --data-dir "$d/d" > /dev/null
      token=$("$bb" tokens create --data-dir "$d/d" --tenant acme --scope ingest | tail -1)
      BLACKBOX_LOG=warn "$bb" serve --data-dir "$d/d" --listen "127.0.0.1:$PORT" --rate-limit 0 \
        --decide-answer "$answer" & pid=$!
      for _ in $(seq 200); do (exec 3<> "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null && break; sleep 0.05; done
      echo "round $round  $bb  $answer: $(python3 bench/decide_latency.py "$PORT" "$token" "$N")"
      kill "$pid"; wait "$pid" 2> /dev/null || true
      rm -rf "$d"
    done
  done
done
