"""Load generator of the MCP gateway benchmark (bench/mcp.sh): raw JSON-RPC over stdio or
Streamable HTTP (standard library only, so that the client adds as little as possible), the same
tool call again and again, straight to the server or through the gateway.

usage: mcp_load.py latency --stdio CMD_JSON | --url URL  [--calls N] [--tool T --args JSON]
                           [--ref-stdio CMD_JSON | --ref-url URL]
       mcp_load.py throughput --stdio CMD_JSON [--calls N] [--window K]

Prints one line `RESULT {json}`: latencies in ms (p50, p90, p99, max) or calls/s. With a
reference (`--ref-stdio`, `--ref-url`: the same server called straight), the calls alternate
between the two, one at a time, so that both distributions are taken over the same seconds of a
noisy machine; the line then also holds the reference's (`ref`)."""
import argparse
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse

INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "bench", "version": "1"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Stdio:
    def __init__(self, cmd):
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, bufsize=0)
        self.buf = b""
        self.send(INIT)
        self.wait_id(0)
        self.send(INITIALIZED)

    def send(self, msg):
        self.p.stdin.write(json.dumps(msg).encode() + b"\n")

    def line(self):
        while b"\n" not in self.buf:
            chunk = os.read(self.p.stdout.fileno(), 1 << 20)
            if not chunk:
                raise SystemExit("the server closed its output")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def wait_id(self, i):
        while True:
            m = self.line()
            if m.get("id") == i and ("result" in m or "error" in m):
                if "error" in m:
                    raise SystemExit(f"call {i} failed: {m['error']}")
                return m

    def timed_call(self, msg):
        """The call's round trip in ms (a JSON-RPC error stops the run)."""
        t0 = time.perf_counter()
        self.send(msg)
        self.wait_id(msg["id"])
        return (time.perf_counter() - t0) * 1000

    def close(self):
        self.p.stdin.close()
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.p.kill()


class Http:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.path = u.path or "/"
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        self.session = None
        self.post(INIT)
        self.post(INITIALIZED)

    def timed_call(self, msg):
        """The call's round trip in ms (a JSON-RPC error stops the run)."""
        t0 = time.perf_counter()
        m = self.post(msg)
        dt = (time.perf_counter() - t0) * 1000
        if "error" in m:
            raise SystemExit(f"call failed: {m['error']}")
        return dt

    def close(self):
        self.c.close()

    def post(self, msg):
        h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
             "MCP-Protocol-Version": "2025-11-25"}
        if self.session:
            h["Mcp-Session-Id"] = self.session
        self.c.request("POST", self.path, body=json.dumps(msg), headers=h)
        r = self.c.getresponse()
        self.session = r.getheader("mcp-session-id") or self.session
        body = r.read()
        if "id" not in msg:
            return None
        if r.getheader("content-type", "").startswith("text/event-stream"):
            for block in body.split(b"\n\n"):
                data = b"\n".join(l[5:].lstrip() for l in block.split(b"\n") if l.startswith(b"data:"))
                if data.strip():
                    m = json.loads(data)
                    if m.get("id") == msg["id"]:
                        return m
            raise SystemExit(f"no answer to {msg['id']} in the stream")
        return json.loads(body)


def open_transport(stdio, url):
    return Stdio(json.loads(stdio)) if stdio else Http(url)


def summary(lat):
    return {"calls": len(lat), "p50": percentile(lat, 50), "p90": percentile(lat, 90),
            "p99": percentile(lat, 99), "max": max(lat)}


def call(i, tool, args):
    if tool == "ping":
        # Not a tool call: what the gateway adds without a decision (its hops alone).
        return {"jsonrpc": "2.0", "id": i, "method": "ping"}
    return {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": tool, "arguments": args}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["latency", "throughput"])
    ap.add_argument("--stdio")
    ap.add_argument("--url")
    ap.add_argument("--ref-stdio", help="the same server straight, called in turn with --stdio/--url")
    ap.add_argument("--ref-url", help="the same server straight over HTTP, called in turn")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--tool", default="get-sum", help="the tool to call; ping: MCP ping requests instead")
    ap.add_argument("--args", default='{"a": 1, "b": 2}')
    a = ap.parse_args()
    args = json.loads(a.args)
    if a.mode == "latency":
        subjects = [open_transport(a.stdio, a.url)]
        if a.ref_stdio or a.ref_url:
            subjects.append(open_transport(a.ref_stdio, a.ref_url))
        lat = [[] for _ in subjects]
        for i in range(1, a.warmup + a.calls + 1):
            for t, out in zip(subjects, lat):
                dt = t.timed_call(call(i, a.tool, args))
                if i > a.warmup:
                    out.append(dt)
        for t in subjects:
            t.close()
        result = summary(lat[0])
        if len(lat) > 1:
            result["ref"] = summary(lat[1])
        print("RESULT " + json.dumps(result))
        return
    # Throughput: up to `window` calls outstanding on one stdio connection.
    t = Stdio(json.loads(a.stdio))
    sent = done = 0
    t0 = time.perf_counter()
    while done < a.calls:
        while sent < a.calls and sent - done < a.window:
            sent += 1
            t.send(call(sent, a.tool, args))
        m = t.line()
        if "id" in m and ("result" in m or "error" in m):
            if "error" in m:
                raise SystemExit(f"call failed: {m['error']}")
            done += 1
    dt = time.perf_counter() - t0
    t.close()
    print("RESULT " + json.dumps({"calls": done, "seconds": dt, "per_second": done / dt}))


if __name__ == "__main__":
    sys.exit(main())
