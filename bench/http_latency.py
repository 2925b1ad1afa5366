#!/usr/bin/env python3
"""Per-request latency of a small read on one kept-alive HTTP/1.1 connection.

Usage: bench/http_latency.py URL TOKEN [N]   (default N=500)

Sends N `GET` requests of URL (e.g. http://127.0.0.1:8080/v1/entries?limit=13) on ONE
connection (http.client keeps it alive) and prints p50, p90, p99 and max in milliseconds, and the
same for N requests each on a fresh connection, so that a delay that only kept-alive connections
suffer (Nagle's algorithm meeting the client's delayed ACK) shows as a difference.
"""
import http.client
import sys
import time
import urllib.parse


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run(url, token, n, keep_alive):
    u = urllib.parse.urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    conn = http.client.HTTPConnection(u.hostname, u.port)
    rows = None
    for _ in range(n):
        if not keep_alive:
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port)
        t = time.perf_counter()
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        times.append((time.perf_counter() - t) * 1000)
        if r.status != 200:
            sys.exit(f"HTTP {r.status}: {body[:200]!r}")
        rows = body.count(b'"entry_id"')
    conn.close()
    return times, rows


def main():
    url, token = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    for keep_alive in (True, False):
        times, rows = run(url, token, n, keep_alive)
        label = "kept-alive" if keep_alive else "fresh conn"
        print(f"{label}: {n} requests, {rows} rows each: p50 {pct(times, 50):.2f} ms  "
              f"p90 {pct(times, 90):.2f} ms  p99 {pct(times, 99):.2f} ms  max {max(times):.2f} ms")


if __name__ == "__main__":
    main()
