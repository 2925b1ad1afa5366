#!/usr/bin/env bash
# Benchmark of the MCP gateway (issue 18): the latency `blackbox mcp wrap` (stdio) and
# `blackbox mcp proxy` (Streamable HTTP) add to a tools/call, measured side by side with the same
# server called straight, and the calls per second one stdio gateway carries (32 calls in flight).
# The server is @modelcontextprotocol/server-everything (tool get-sum), the client
# bench/mcp_load.py (raw JSON-RPC, standard library). Each decision is asked of a real
# `blackbox serve`, once with each `--decide-answer` (docs/RULES.md): `sequenced` answers once the
# record is signed (committed within milliseconds), `durable` after its fsync.
#
# Usage: bench/mcp.sh          (~4 minutes; figures in docs/PERFORMANCE.md)
#   BB=/path/to/blackbox   the binary (default: cargo build --release, then target/release)
#   CALLS=2000             measured calls per run (after 200 warm-up calls)
#   ANSWERS="sequenced durable"
#   MODES="service embedded"  decisions by a `blackbox serve` over loopback HTTP (--server), or
#                             by the service inside the gateway (--data-dir)
#   PEERS=target/mcp-peers where .ci/run installs the npm servers
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS="${CALLS:-2000}"
ANSWERS="${ANSWERS:-sequenced durable}"
MODES="${MODES:-service embedded}"
PEERS="${PEERS:-target/mcp-peers}"
EV="$PWD/$PEERS/node_modules/.bin/mcp-server-everything"
[ -x "$EV" ] || { echo "needs $EV: run .ci/run once, or npm ci in $PEERS (tests/mcp/package.json)"; exit 2; }
[ -n "${BB:-}" ] || cargo build --release --quiet -p blackbox
BB="${BB:-${CARGO_TARGET_DIR:-$PWD/target}/release/blackbox}"
OUT="$(mktemp -d)"
PORT="${PORT:-17830}"; UP=$((PORT + 1)); GW=$((PORT + 2))
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done; }
trap cleanup EXIT
wait_port() { for _ in $(seq 200); do (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return; sleep 0.05; done; echo "nothing on port $1"; exit 2; }
load() { python3 bench/mcp_load.py "$@" --calls "$CALLS" | sed -n 's/^RESULT //p'; }
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "binary: $BB; $CALLS calls per run"
run() { # run ANSWER MODE
  local answer=$1 mode=$2 D="$OUT/d-$1-$2" wrap_dir=() proxy_dir=() dirs=()
  export BLACKBOX_MCP_STATE_DIR="$OUT/state-$answer-$mode"
  if [ "$mode" = service ]; then
    "$BB" init --data-dir "$D" > /dev/null
    TOKEN=$("$BB" tokens create --data-dir "$D" --tenant acme --scope ingest | tail -1)
    BLACKBOX_LOG=warn "$BB" serve --data-dir "$D" --listen "127.0.0.1:$PORT" --rate-limit 0 \
      --decide-answer "$answer" & PIDS+=($!)
    wait_port "$PORT"
    export BLACKBOX_SERVER="http://127.0.0.1:$PORT" BLACKBOX_TOKEN="$TOKEN"
    dirs=("$D")
  else
    # The service inside each gateway (`--data-dir`): decisions asked in-process. The stdio and
    # HTTP gateways run at the same time below, so each has its own data directory.
    wrap_dir=(\"--data-dir\",\"$D-stdio\",\"--decide-answer\",\"$answer\",)
    proxy_dir=(--data-dir "$D-http" --decide-answer "$answer")
    dirs=("$D-stdio" "$D-http")
  fi
  WRAP="[\"$BB\",\"mcp\",\"wrap\",\"--agent-id\",\"bench\",${wrap_dir[*]:-}\"--\",\"$EV\",\"stdio\"]"
  STRAIGHT="[\"$EV\",\"stdio\"]"
  # Each latency run calls the gateway and the same server straight in turn (mcp_load.py
  # --ref-*), so that both distributions come from the same seconds of a shared machine.
  sw=$(load latency --stdio "$WRAP" --ref-stdio "$STRAIGHT")
  # MCP pings: what the stdio gateway adds without a decision (its own hops and reading).
  pw=$(load latency --tool ping --stdio "$WRAP" --ref-stdio "$STRAIGHT")
  PORT=$UP "$EV" streamableHttp > /dev/null 2>&1 & PIDS+=($!)
  wait_port "$UP"
  "$BB" mcp proxy --agent-id bench-http "${proxy_dir[@]}" --upstream "http://127.0.0.1:$UP/mcp" \
    --listen "127.0.0.1:$GW" 2> /dev/null & PIDS+=($!)
  wait_port "$GW"
  hw=$(load latency --url "http://127.0.0.1:$GW/mcp" --ref-url "http://127.0.0.1:$UP/mcp")
  td=$(load throughput --stdio "$STRAIGHT"); tw=$(load throughput --stdio "$WRAP")
  cleanup; PIDS=(); sleep 0.5
  unset BLACKBOX_SERVER BLACKBOX_TOKEN
  n=0; v=ok
  for d in "${dirs[@]}"; do
    n=$((n + $("$BB" query --data-dir "$d" --event-type tool_result --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')))
    "$BB" verify --data-dir "$d" > /dev/null || v=FAILED
  done
  python3 - "$answer" "$sw" "$hw" "$td" "$tw" "$n" "$v" "$pw" "$mode" <<'PY'
import json, sys
answer, sw, hw, td, tw, n, v, pw, mode = sys.argv[1:]
sw, hw, td, tw, pw = map(json.loads, (sw, hw, td, tw, pw))
sd, hd, pd = sw["ref"], hw["ref"], pw["ref"]
where = "a blackbox serve over loopback HTTP" if mode == "service" else "the service inside the gateway (--data-dir)"
print(f"== decide_answer = {answer}, decisions by {where}: verify {v}, {n} tool_result entries")
for name, d, w in (("stdio", sd, sw), ("http ", hd, hw)):
    print(f"{name} straight  p50 {d['p50']:.3f} ms  p90 {d['p90']:.3f}  p99 {d['p99']:.3f}")
    print(f"{name} gateway   p50 {w['p50']:.3f} ms  p90 {w['p90']:.3f}  p99 {w['p99']:.3f}")
    print(f"{name} added     p50 {w['p50'] - d['p50']:.3f} ms  p99 {w['p99'] - d['p99']:.3f} ms")
print(f"stdio ping (no decision): straight p50 {pd['p50']:.3f} ms, gateway {pw['p50']:.3f}, added {pw['p50'] - pd['p50']:.3f} ms")
print(f"stdio calls/s, 32 in flight: straight {td['per_second']:.0f}, through the gateway {tw['per_second']:.0f}")
PY
}
for answer in $ANSWERS; do
  for mode in $MODES; do run "$answer" "$mode"; done
done
