#!/usr/bin/env python3
"""Runs README.md's walk-through as written, so the README and the program cannot drift.

Every ```sh block in README.md carries a marker on the line before it, an HTML comment that
GitHub does not show:

    <!-- walkthrough: run -->           run the block in the walk-through's shell
    <!-- walkthrough: serve -->         the block starts the service in the foreground (as a
                                        newcomer does in a second terminal): start it in the
                                        background, wait until it answers /healthz, and stop it
                                        (SIGTERM, then wait) at the end of the walk-through
    <!-- walkthrough: skip REASON -->   not run here; REASON is printed (e.g. the test command,
                                        which CI runs in a step of its own)

A ```sh block without a marker, or an unknown marker, is an error: no block escapes silently.
The `run` blocks are run in order by one bash (`set -euo pipefail`, aliases expanded, so
`alias blackbox=...` works as in an interactive shell), in a fresh empty directory that stands
for the checkout a newcomer works in: `examples/` and `crates/` link to the checkout's, `target/` to
its build directory, and `cargo` (a wrapper first on PATH) builds the checkout
(`--manifest-path`). Any failing command fails the walk-through and prints the service's log.

Usage: python3 scripts/readme_walkthrough.py [README.md]   (from anywhere; exit 0 when it passes)
Set KEEP=1 to keep the working directory for a look afterwards.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!--\s*walkthrough:\s*(run|serve|skip)\b\s*(.*?)\s*-->\s*$")
# The service's address in the README (its default listen address).
HEALTH_URL = "http://127.0.0.1:7700/healthz"


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    kind: str  # run, serve or skip
    note: str
    text: str


def blocks(readme: Path) -> list[Block]:
    """The ```sh blocks of the README with their markers, in order."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    errors: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(\s*)(```+)\s*(\S*)\s*$", line)
        if not fence:
            if MARKER.match(line.strip()) is None and "walkthrough:" in line:
                errors.append(f"{readme.name}:{i + 1}: unknown walkthrough marker: {line.strip()}")
            i += 1
            continue
        indent, ticks, lang = fence.groups()
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not re.match(rf"^\s*{ticks}\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1  # the closing fence
        if lang not in ("sh", "bash", "shell"):
            continue
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        m = MARKER.match(lines[prev].strip()) if prev >= 0 else None
        if m is None:
            errors.append(
                f"{readme.name}:{start + 1}: a ```{lang} block without a `<!-- walkthrough: run|serve|skip REASON -->` marker"
            )
            continue
        kind, note = m.groups()
        if kind == "skip" and not note:
            errors.append(f"{readme.name}:{prev + 1}: `walkthrough: skip` needs a reason")
        found.append(Block(start + 1, kind, note, "\n".join(body) + "\n"))
    if errors:
        sys.exit("\n".join(errors))
    return found


def cargo_wrapper(bin_dir: Path) -> None:
    """`cargo` for the walk-through: the real one, on the checkout (the working directory only
    stands for it). It replaces itself with cargo, which replaces itself with the program on
    `cargo run`: the service's pid is the service's."""
    real = shutil.which("cargo")
    if real is None:
        sys.exit("cargo is not on PATH")
    w = bin_dir / "cargo"
    w.write_text(
        "#!/bin/sh\n"
        'sub="$1"; shift\n'
        f'exec {shlex.quote(real)} "$sub" --manifest-path {shlex.quote(str(REPO / "Cargo.toml"))} "$@"\n',
        encoding="utf-8",
    )
    w.chmod(0o755)


def script(readme: Path, bs: list[Block], work: Path) -> str:
    """The bash script that runs the walk-through."""
    q = shlex.quote
    out = [
        "set -euo pipefail",
        "shopt -s expand_aliases",
        f"cd {q(str(work))}",
        "SERVE_PID=",
        "stop_service() {",
        '  if [ -n "$SERVE_PID" ]; then',
        '    kill -TERM "$SERVE_PID" 2>/dev/null || true',
        '    wait "$SERVE_PID" || { echo "the service did not stop cleanly (exit $?)"; return 1; }',
        "    SERVE_PID=",
        "  fi",
        "}",
        "on_exit() {",
        "  rc=$?",
        '  if [ "$rc" != 0 ]; then',
        '    echo "README walk-through FAILED (exit $rc) in the block printed last"',
        '    [ -s "$WT_SERVE_LOG" ] && { echo "--- the service'"'"'s log:"; tail -40 "$WT_SERVE_LOG"; }',
        "  fi",
        '  [ -n "$SERVE_PID" ] && kill -TERM "$SERVE_PID" 2>/dev/null',
        '  exit "$rc"',
        "}",
        "trap on_exit EXIT",
    ]
    for b in bs:
        where = f"{readme.name}:{b.line}"
        if b.kind == "skip":
            out.append(f"echo {q(f'== {where}: not run here: {b.note}')}")
            continue
        out.append(f"echo {q(f'== {where} ({b.kind})')}")
        if b.kind == "run":
            out.append("set -x")
            out.append(b.text.rstrip("\n"))
            out.append("{ set +x; } 2>/dev/null")
            continue
        # serve: one command, started in the background until the end.
        cmds = [ln for ln in b.text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if len(cmds) != 1:
            sys.exit(f"{where}: a `walkthrough: serve` block holds exactly one command")
        out += [
            f'if curl -fs {HEALTH_URL} >/dev/null 2>&1; then echo "something already answers {HEALTH_URL}: stop it first"; exit 2; fi',
            f"echo {q('$ ' + cmds[0])}",
            f'{cmds[0]} > "$WT_SERVE_LOG" 2>&1 &',
            "SERVE_PID=$!",
            # A cold `cargo run --release` builds first: wait up to 30 minutes.
            "for _ in $(seq 18000); do",
            f"  curl -fs {HEALTH_URL} >/dev/null 2>&1 && break",
            '  kill -0 "$SERVE_PID" 2>/dev/null || { echo "the service exited"; exit 1; }',
            "  sleep 0.1",
            "done",
            f"curl -fs {HEALTH_URL} >/dev/null",
        ]
    out += ["stop_service", 'echo "README walk-through passed"']
    return "\n".join(out) + "\n"


def main() -> int:
    readme = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else REPO / "README.md"
    bs = blocks(readme)
    if not any(b.kind == "run" for b in bs):
        sys.exit(f"{readme}: no `walkthrough: run` block found")
    work = Path(tempfile.mkdtemp(prefix="blackbox-readme-"))
    bin_dir = Path(tempfile.mkdtemp(prefix="blackbox-readme-bin-"))
    try:
        cargo_wrapper(bin_dir)
        (work / "examples").symlink_to(REPO / "examples")
        # The project's evaluation set (crates/detect/tests/eval) is read by `rules test`.
        (work / "crates").symlink_to(REPO / "crates")
        target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
        (work / "target").symlink_to(target.resolve())
        env = dict(os.environ)
        # A newcomer's shell: no settings of ours leak into the walk-through.
        for k in list(env):
            if k.startswith("BLACKBOX_"):
                del env[k]
        env["WT_SERVE_LOG"] = str(work.parent / f"{work.name}.serve.log")
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        text = script(readme, bs, work)
        (work.parent / f"{work.name}.sh").write_text(text, encoding="utf-8")
        rc = subprocess.run(["bash", str(work.parent / f"{work.name}.sh")], env=env).returncode
        return rc
    finally:
        if os.environ.get("KEEP"):
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(bin_dir, ignore_errors=True)
            for suffix in (".sh", ".serve.log"):
                Path(f"{work}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
