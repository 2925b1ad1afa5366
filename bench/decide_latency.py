#!/usr/bin/env python3
"""Latency of `POST /v1/decide`, one decision at a time on one kept-alive connection.

Usage: bench/decide_latency.py PORT TOKEN [N]   (default N=3000, after 200 warm-up decisions)

Prints `p50 … p90 … p99 …` in milliseconds: what an agent (or the MCP gateway through a
service) waits for each tool call's decision, the record included (`durable`: on disk;
`sequenced`: signed). Standard library only. Driven by bench/decide.sh.
"""
import http.client
import json
import sys
import time

port, token = int(sys.argv[1]), sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
conn = http.client.HTTPConnection("127.0.0.1", port)
body = json.dumps({"agent_id": "bench", "session_id": "s1", "tool_name": "get-sum",
                   "args": {"a": 1, "b": 2}})
headers = {"authorization": "Bearer " + token, "content-type": "application/json"}
times = []
for i in range(n + 200):
    t = time.perf_counter()
    conn.request("POST", "/v1/decide", body, headers)
    r = conn.getresponse()
    answer = r.read()
    if r.status != 200:
        sys.exit(f"decision {i}: HTTP {r.status}: {answer[:300]!r}")
    if i >= 200:
        times.append(time.perf_counter() - t)
times.sort()
print("p50 %.3f ms  p90 %.3f  p99 %.3f" % (times[n // 2] * 1e3, times[n * 9 // 10] * 1e3,
                                           times[n * 99 // 100] * 1e3))
