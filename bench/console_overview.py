#!/usr/bin/env python3
"""The console's overview on a large tenant (issue 22: a 10M-entry tenant opens the overview in
under a second), next to the same on a 1,000-entry tenant measured in the same run (the
overview reads chain heads, the detector's agents and at most 1,000 open alerts: its cost must
not grow with the log).

    target/console-peers/venv/bin/python bench/console_overview.py [N] [--bb PATH] [--keep DIR]

N defaults to 10,000,000 (about 100 s to append and 8 GB of disk). Needs a release build
(`cargo build --release -p blackbox`) and the console's peers from .ci/run (Playwright in
target/console-peers/venv, Debian's chromium). Prints, per store: entries, append time, the
overview API's latency in the page (median of 9 fetches) and the overview view drawn after a
reload (median of 5).
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from playwright.sync_api import sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_store(bb, d, n):
    subprocess.run([bb, "init", "--data-dir", d], check=True, stdout=subprocess.DEVNULL)
    gen = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench/gen_events.py"), str(n), "1", "year"],
                           stdout=subprocess.PIPE)
    t0 = time.perf_counter()
    subprocess.run([bb, "append", "--data-dir", d], stdin=gen.stdout, check=True, stdout=subprocess.DEVNULL)
    gen.wait()
    took = time.perf_counter() - t0
    token = subprocess.run([bb, "tokens", "create", "--data-dir", d, "--tenant", "acme", "--scope", "read"],
                           check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return took, token


def measure(bb, d, token, chromium):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, BLACKBOX_LOG="warn")
    srv = subprocess.Popen([bb, "serve", "--data-dir", d, "--listen", f"127.0.0.1:{port}", "--console", "on"], env=env)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("the service did not start")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(url + "/ui")
            page.fill("#token", token)
            page.click("#signin-form button[type=submit]")
            page.wait_for_selector("section.card", timeout=60_000)
            api = []
            for _ in range(9):
                api.append(page.evaluate("""async (t) => { const t0 = performance.now();
                    const r = await fetch('/v1/overview', {headers: {Authorization: 'Bearer ' + t}});
                    await r.json(); return performance.now() - t0; }""", token))
            view = []
            for _ in range(5):
                t0 = time.perf_counter()
                page.reload()
                page.wait_for_selector("section.card dd", timeout=60_000)
                view.append((time.perf_counter() - t0) * 1000)
            entries = page.inner_text("section.card dd")
            browser.close()
        return statistics.median(api), statistics.median(view), entries
    finally:
        srv.terminate()
        srv.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=10_000_000)
    ap.add_argument("--bb", default=os.path.join(ROOT, "target/release/blackbox"))
    ap.add_argument("--keep", help="build the stores here and keep them")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    a = ap.parse_args()
    base = a.keep or tempfile.mkdtemp(prefix="bb-console-bench-")
    print(f"machine: {os.cpu_count()} cores, {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, binary {a.bb}")
    print("| tenant | append | overview API (median of 9) | overview view after reload (median of 5) |")
    print("|---|---|---|---|")
    try:
        for n in (1000, a.n):
            d = os.path.join(base, f"store-{n}")
            if os.path.exists(os.path.join(d, "checkpoint.pub")):
                took = float("nan")
                token = subprocess.run([a.bb, "tokens", "create", "--data-dir", d, "--tenant", "acme", "--scope", "read"],
                                       check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            else:
                took, token = build_store(a.bb, d, n)
            api, view, entries = measure(a.bb, d, token, a.chromium)
            print(f"| {n:,} entries (shown: {entries}) | {took:.1f} s | {api:.1f} ms | {view:.0f} ms |", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
