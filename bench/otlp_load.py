#!/usr/bin/env python3
"""Load generator for the OTLP intake benchmark (bench/otlp.sh).

Usage: bench/otlp_load.py MODE --token T [options]

MODE is one of
  http    OTLP/HTTP protobuf: POST /v1/traces (application/x-protobuf) on --url
  grpc    OTLP/gRPC: TraceService/Export on --grpc (the stub generated in opentelemetry-proto)
  events  the reference: POST /v1/events on --url, a JSON array of the same number of
          equivalent events per request
  sample  print one request of each kind (sizes, a few spans and events) and exit

Requests are built once, before the clock starts: --bodies distinct requests of --batch spans (or
events) per process, from --procs processes with --concurrency threads each, sent round-robin
over kept-alive connections (one HTTP/1.1 connection or one gRPC channel per thread) until
--duration seconds have passed or --spans spans in total were accepted. Every answer is checked:
HTTP 200 (gRPC OK) with no rejected spans, and for `events` the count of entries. Answers other
than success are counted as errors (and the first few printed); nothing is retried.

The result is printed as one human line and one JSON line (prefix `RESULT `) that bench/otlp.sh
reads. With --server-pid, the server's CPU time (utime + stime from /proc/PID/stat) over the
load window and its peak RSS (VmHWM) are included, and with --rss-every S its resident memory is
sampled every S seconds. The client's own CPU time is reported too, so that a saturated load
generator shows: one Python process cannot use more than about one core.

Span mix, like bench/gen_events.py's events: traces of one `invoke_agent` span, then 9 rounds of a
`chat` span (token usage, input and output messages of a few hundred bytes, finish reasons,
system instructions on the first) followed by an `execute_tool` span (arguments and result).
So about 5% agent spans, 47.5% chat, 47.5% tool. The equivalent events carry the same content as
raw members (`prompt`, `completion`, `args_raw`, `result_data`: hashed by the server) and the
same ids and numbers, so both paths write entries of about the same size.
"""

import argparse
import hashlib
import http.client
import json
import multiprocessing as mp
import os
import random
import socket
import sys
import threading
import time

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as ts_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "llama-3-70b"]
PROVIDERS = {"gpt-4o": "openai", "gpt-4o-mini": "openai", "claude-sonnet-4": "anthropic",
             "llama-3-70b": "openai"}
_EXPORT = ts_pb2.DESCRIPTOR.services_by_name["TraceService"].methods_by_name["Export"]
EXPORT_METHOD = f"/{_EXPORT.containing_service.full_name}/{_EXPORT.name}"
TOOLS = ["query_database", "search_kb", "send_email", "read_file", "http_get", "create_ticket"]
SCOPE = ("opentelemetry.instrumentation.openai_v2", "2.4b0")
ROUNDS_PER_TRACE = 9  # chat + execute_tool pairs after the invoke_agent span


# ---------------------------------------------------------------- building requests


def kv(key, value):
    """One OTLP attribute; the AnyValue kind follows the Python type."""
    v = common_pb2.AnyValue()
    if isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int):
        v.int_value = value
    elif isinstance(value, float):
        v.double_value = value
    elif isinstance(value, list):
        v.array_value.values.extend(common_pb2.AnyValue(string_value=s) for s in value)
    else:
        v.string_value = value
    return common_pb2.KeyValue(key=key, value=v)


class Batch:
    """The spans of one request, as (span, equivalent event) pairs, generated together."""

    def __init__(self, seed, n, agent, proc, start_ns):
        self.rnd = random.Random(seed)
        self.n = n
        self.agent = agent
        self.proc = proc
        self.start_ns = start_ns
        self.spans = []
        self.events = []
        while not self.full():
            self.trace()

    def ids(self):
        return self.rnd.getrandbits(128).to_bytes(16, "big"), self.rnd.getrandbits(64).to_bytes(8, "big")

    def add(self, span, event):
        self.spans.append(span)
        self.events.append(event)

    def full(self):
        # A batch ends where it is full, in the middle of a trace, as an SDK's batches do.
        return len(self.spans) >= self.n

    def trace(self):
        r = self.rnd
        trace_id, root_id = self.ids()
        conv = f"conv_{r.getrandbits(48):012x}"
        t = self.start_ns + r.randrange(10**9)
        hexes = {"trace_id": trace_id.hex()}
        # invoke_agent: the root of the trace.
        total_ms = r.randrange(2000, 30000)
        attrs = [kv("gen_ai.operation.name", "invoke_agent"), kv("gen_ai.provider.name", "openai"),
                 kv("gen_ai.agent.name", self.agent),
                 kv("gen_ai.conversation.id", conv), kv("gen_ai.request.model", "gpt-4o")]
        self.add(trace_pb2.Span(trace_id=trace_id, span_id=root_id, name=f"invoke_agent {self.agent}",
                                kind=trace_pb2.Span.SPAN_KIND_INTERNAL, start_time_unix_nano=t,
                                end_time_unix_nano=t + total_ms * 10**6, attributes=attrs),
                 self.event("agent_invocation", t, conv, {
                     "agent_name": self.agent, "operation": "invoke_agent", "provider": "openai",
                     "model": "gpt-4o", "duration_ms": total_ms, **hexes, "span_id": root_id.hex(),
                     "span_name": f"invoke_agent {self.agent}", "span_kind": "internal"}))
        for k in range(ROUNDS_PER_TRACE):
            if self.full():
                return
            t += r.randrange(10, 200) * 10**6
            t = self.chat(trace_id, root_id, conv, t, first=k == 0)
            if self.full():
                return
            t = self.tool(trace_id, root_id, conv, t)

    def chat(self, trace_id, parent, conv, t, first):
        r = self.rnd
        _, span_id = self.ids()
        model = r.choice(MODELS)
        order = r.randrange(10**6)
        tool = r.choice(TOOLS)
        call_id = f"call_{r.getrandbits(96):024x}"
        inp = json.dumps([{"role": "user", "parts": [{"type": "text", "content":
                           f"Customer {r.randrange(10**5)} asks about order {order}: it was due on "
                           f"Monday and has not arrived. Where is it, and can it still be delivered "
                           f"before the weekend? Please check the warehouse status too."}]}],
                         separators=(",", ":"))
        out = json.dumps([{"role": "assistant", "parts": [
            {"type": "text", "content": "Let me look the order up in the order database first."},
            {"type": "tool_call", "id": call_id, "name": tool, "arguments": {
                "query": f"SELECT status, eta FROM orders WHERE order_id = {order}"}}],
            "finish_reason": "tool_call"}], separators=(",", ":"))
        system = ("You are the support agent of an online shop. Answer politely, never reveal "
                  "another customer's data, and use the tools to look orders up.")
        tin, tout, ms = r.randrange(50, 4000), r.randrange(10, 800), r.randrange(100, 5000)
        resp_id = f"chatcmpl-{r.getrandbits(96):024x}"
        attrs = [kv("gen_ai.operation.name", "chat"), kv("gen_ai.provider.name", PROVIDERS[model]),
                 kv("gen_ai.request.model", model), kv("gen_ai.response.model", model),
                 kv("gen_ai.response.id", resp_id), kv("gen_ai.response.finish_reasons", ["tool_call"]),
                 kv("gen_ai.usage.input_tokens", tin), kv("gen_ai.usage.output_tokens", tout),
                 kv("gen_ai.request.temperature", 0.2), kv("gen_ai.conversation.id", conv),
                 kv("server.address", "api.example.com"), kv("server.port", 443),
                 kv("gen_ai.input.messages", inp), kv("gen_ai.output.messages", out)]
        payload = {"model": model, "provider": PROVIDERS[model], "operation": "chat",
                   "token_count_in": tin, "token_count_out": tout, "latency_ms": ms,
                   "finish_reasons": ["tool_call"], "response_id": resp_id, "trace_id": trace_id.hex(),
                   "span_id": span_id.hex(), "parent_span_id": parent.hex(), "span_name": f"chat {model}",
                   "span_kind": "client", "server_address": "api.example.com",
                   "tool_calls": [{"name": tool, "id": call_id, "args_hash": "sha256:" + hashlib.sha256(
                       b'{"query":"SELECT status, eta FROM orders WHERE order_id = %d"}' % order).hexdigest()}],
                   "prompt": inp, "completion": out}
        if first:
            attrs.append(kv("gen_ai.system_instructions",
                            json.dumps([{"type": "text", "content": system}], separators=(",", ":"))))
            # `content` is on the server's raw list: hashed on arrival, as the span's are.
            payload["content"] = system
        self.add(trace_pb2.Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent,
                                name=f"chat {model}", kind=trace_pb2.Span.SPAN_KIND_CLIENT,
                                start_time_unix_nano=t, end_time_unix_nano=t + ms * 10**6,
                                attributes=attrs),
                 self.event("llm_request", t, conv, payload))
        self.pending = (tool, call_id, order)
        return t + ms * 10**6

    def tool(self, trace_id, parent, conv, t):
        r = self.rnd
        _, span_id = self.ids()
        tool, call_id, order = self.pending
        ms = r.randrange(1, 300)
        args = json.dumps({"query": f"SELECT status, eta FROM orders WHERE order_id = {order}",
                           "table": "orders", "limit": 100}, separators=(",", ":"))
        result = json.dumps({"rows": [{"order_id": order, "status": "in_transit",
                                       "eta": "2026-12-09", "carrier": "DHL",
                                       "warehouse": f"W{r.randrange(40):02d}"}],
                             "rows_returned": 1}, separators=(",", ":"))
        attrs = [kv("gen_ai.operation.name", "execute_tool"), kv("gen_ai.tool.name", tool),
                 kv("gen_ai.tool.type", "function"), kv("gen_ai.tool.call.id", call_id),
                 kv("gen_ai.tool.description", f"The {tool} tool of the support agent."),
                 kv("gen_ai.conversation.id", conv),
                 kv("gen_ai.tool.call.arguments", args), kv("gen_ai.tool.call.result", result)]
        self.add(trace_pb2.Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent,
                                name=f"execute_tool {tool}", kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
                                start_time_unix_nano=t, end_time_unix_nano=t + ms * 10**6,
                                attributes=attrs),
                 self.event("tool_call", t, conv, {
                     "tool_name": tool, "invocation_id": call_id, "duration_ms": ms,
                     "trace_id": trace_id.hex(), "span_id": span_id.hex(), "parent_span_id": parent.hex(),
                     "span_name": f"execute_tool {tool}", "span_kind": "internal", "tool_type": "function",
                     "args_raw": args, "result_data": result}))
        return t + ms * 10**6

    def event(self, event_type, t_ns, conv, payload):
        sec, nano = divmod(t_ns, 10**9)
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{nano // 10**6:03d}Z"
        # The members the OTLP mapping adds to every span's entry (docs/OTEL.md §4).
        payload.update({"service_name": self.agent, "service_instance_id": f"{self.agent}-{self.proc}",
                        "scope_name": SCOPE[0], "scope_version": SCOPE[1]})
        return {"agent_id": self.agent, "session_id": conv, "timestamp": ts,
                "event_type": event_type, "payload": payload}


def build(mode, proc, n_bodies, batch, stub=False):
    """The request bodies of one process: bytes, or messages for the generated gRPC stub."""
    now = time.time_ns()
    bodies = []
    for b in range(n_bodies):
        agent = f"agent-{(proc * n_bodies + b) % 40:02d}"
        bt = Batch(seed=(proc << 20) + b, n=batch, agent=agent, proc=proc, start_ns=now - 60 * 10**9)
        if mode == "events":
            bodies.append(json.dumps(bt.events, separators=(",", ":")).encode())
            continue
        req = ts_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
            resource=resource_pb2.Resource(attributes=[
                kv("service.name", agent), kv("service.instance.id", f"{agent}-{proc}"),
                kv("telemetry.sdk.language", "python"), kv("telemetry.sdk.name", "opentelemetry"),
                kv("telemetry.sdk.version", "1.45.2")]),
            scope_spans=[trace_pb2.ScopeSpans(
                scope=common_pb2.InstrumentationScope(name=SCOPE[0], version=SCOPE[1]),
                spans=bt.spans)])])
        bodies.append(req if mode == "grpc" and stub else req.SerializeToString())
    return bodies


# ---------------------------------------------------------------- sending


class Budget:
    """Requests left to send, shared by the threads (and processes) of a run."""

    def __init__(self, counter, deadline):
        self.counter = counter  # multiprocessing.Value('q'): requests still allowed, or -1
        self.deadline = deadline

    def take(self):
        if time.time() >= self.deadline:
            return False
        if self.counter.value < 0:
            return True
        with self.counter.get_lock():
            if self.counter.value == 0:
                return False
            self.counter.value -= 1
            return True


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.items = 0
        self.rejected = 0
        self.errors = 0
        self.messages = []
        self.latencies = []

    def error(self, text):
        with self.lock:
            self.errors += 1
            if len(self.messages) < 5:
                self.messages.append(text)


def http_worker(a, mode, bodies, offset, budget, tally):
    path, ctype = ("/v1/traces", "application/x-protobuf") if mode == "http" else \
        ("/v1/events", "application/json")
    headers = {"Authorization": f"Bearer {a.token}", "Content-Type": ctype}
    host, _, port = a.url.split("://", 1)[-1].rstrip("/").partition(":")
    conn = None
    i = offset
    lat = []
    while budget.take():
        body = bodies[i % len(bodies)]
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port or 80), timeout=60)
                conn.connect()
                # Headers and body go out in two writes: without this, Nagle's algorithm holds
                # the body's last segment until the server's delayed ACK.
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            lat.append(time.perf_counter() - t0)
        except (OSError, http.client.HTTPException) as e:
            tally.error(f"{type(e).__name__}: {e}")
            if conn is not None:
                conn.close()
            conn = None
            continue
        if resp.status != 200:
            tally.error(f"HTTP {resp.status}: {data[:300]!r}")
            continue
        if mode == "http":
            rejected = 0
            if data:
                r = ts_pb2.ExportTraceServiceResponse.FromString(data)
                rejected = r.partial_success.rejected_spans
                if rejected:
                    tally.error(f"partial success: {rejected} rejected: {r.partial_success.error_message}")
            with tally.lock:
                tally.ok += 1
                tally.items += a.batch - rejected
                tally.rejected += rejected
        else:
            count = json.loads(data).get("count", 0)
            if count != a.batch:
                tally.error(f"answer counts {count} entries, not {a.batch}")
            with tally.lock:
                tally.ok += 1
                tally.items += count
    if conn is not None:
        conn.close()
    with tally.lock:
        tally.latencies.extend(lat)


def grpc_worker(a, bodies, offset, budget, tally):
    import grpc  # only the grpc mode needs it

    # One channel (one HTTP/2 connection) per thread, as N exporters would have: a local
    # subchannel pool stops gRPC from sharing one connection between the channels.
    channel = grpc.insecure_channel(a.grpc, options=[("grpc.use_local_subchannel_pool", 1),
                                                     ("grpc.max_send_message_length", 64 << 20)])
    if a.stub:
        # The generated stub, as the SDK's exporter calls it: each call serializes the message.
        export = ts_grpc.TraceServiceStub(channel).Export
    else:
        # The same method with the request serialized once, before the clock (by default, so
        # that the load generator spends its CPU on sending, as in the HTTP modes).
        export = channel.unary_unary(EXPORT_METHOD, request_serializer=None,
                                     response_deserializer=ts_pb2.ExportTraceServiceResponse.FromString)
    metadata = (("authorization", f"Bearer {a.token}"),)
    i = offset
    lat = []
    while budget.take():
        req = bodies[i % len(bodies)]
        i += 1
        t0 = time.perf_counter()
        try:
            r = export(req, metadata=metadata, timeout=60)
        except grpc.RpcError as e:
            tally.error(f"gRPC {e.code()}: {e.details()}")
            continue
        lat.append(time.perf_counter() - t0)
        rejected = r.partial_success.rejected_spans
        if rejected:
            tally.error(f"partial success: {rejected} rejected: {r.partial_success.error_message}")
        with tally.lock:
            tally.ok += 1
            tally.items += a.batch - rejected
            tally.rejected += rejected
    channel.close()
    with tally.lock:
        tally.latencies.extend(lat)


def process_main(a, mode, proc, counter, barrier, out):
    bodies = build(mode, proc, a.bodies, a.batch, stub=a.stub)
    tally = Tally()
    barrier.wait()  # every process has built its requests: the clock starts
    start = time.time()
    cpu0 = time.process_time()
    budget = Budget(counter, start + a.duration)
    threads = []
    for t in range(a.concurrency):
        offset = t * max(1, len(bodies) // a.concurrency)
        if mode == "grpc":
            th = threading.Thread(target=grpc_worker, args=(a, bodies, offset, budget, tally))
        else:
            th = threading.Thread(target=http_worker, args=(a, mode, bodies, offset, budget, tally))
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    out.put({"ok": tally.ok, "items": tally.items, "rejected": tally.rejected, "errors": tally.errors,
             "messages": tally.messages, "latencies": tally.latencies, "end": time.time(),
             "cpu": time.process_time() - cpu0, "body_bytes": sum(
                 len(b) if isinstance(b, bytes) else b.ByteSize() for b in bodies) // len(bodies)})


# ---------------------------------------------------------------- the server's side


def proc_cpu(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid, key):
    """A /proc/PID/status value in MiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    return -1


def sampler(pid, every, samples, stop):
    t0 = time.time()
    while not stop.wait(every):
        try:
            samples.append((round(time.time() - t0), proc_status(pid, "VmRSS")))
        except OSError:
            return
        print(f"  t={samples[-1][0]:4d} s  server RSS {samples[-1][1]} MiB", file=sys.stderr, flush=True)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def run(a):
    ctx = mp.get_context("fork")
    total_requests = -1 if a.spans is None else -(-a.spans // a.batch)
    counter = ctx.Value("q", total_requests)
    barrier = ctx.Barrier(a.procs + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=process_main, args=(a, a.mode, p, counter, barrier, out))
             for p in range(a.procs)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.time()
    srv0 = proc_cpu(a.server_pid) if a.server_pid else None
    samples, stop = [], threading.Event()
    if a.server_pid and a.rss_every:
        threading.Thread(target=sampler, args=(a.server_pid, a.rss_every, samples, stop),
                         daemon=True).start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    end = max(r["end"] for r in results)
    secs = max(end - start, 1e-9)
    stop.set()
    srv_cpu = proc_cpu(a.server_pid) - srv0 if a.server_pid else None
    hwm = proc_status(a.server_pid, "VmHWM") if a.server_pid else None
    items = sum(r["items"] for r in results)
    lat = [x for r in results for x in r["latencies"]]
    client_cpu = sum(r["cpu"] for r in results)
    res = {
        "mode": a.mode, "batch": a.batch, "procs": a.procs, "concurrency": a.concurrency,
        "seconds": round(secs, 2), "requests": sum(r["ok"] for r in results), "items": items,
        "rejected": sum(r["rejected"] for r in results), "errors": sum(r["errors"] for r in results),
        "per_second": round(items / secs), "body_bytes": results[0]["body_bytes"],
        "p50_ms": round(pct(lat, 50) * 1000, 1), "p99_ms": round(pct(lat, 99) * 1000, 1),
        "client_cpu_pct": round(100 * client_cpu / secs),
        "client_cpu_pct_per_proc": round(100 * client_cpu / secs / a.procs),
    }
    if srv_cpu is not None:
        res["server_cpu_pct"] = round(100 * srv_cpu / secs)
        res["server_cpu_us_per_item"] = round(srv_cpu / max(items, 1) * 1e6, 2)
        res["server_peak_rss_mib"] = hwm
    if samples:
        res["rss_samples_mib"] = [s[1] for s in samples]
    unit = "events" if a.mode == "events" else "spans"
    line = (f"{a.mode:6} {items} {unit} ok in {res['requests']} requests of {a.batch} "
            f"({res['body_bytes'] // 1024} KiB), {res['errors']} errors, {res['rejected']} rejected, "
            f"{secs:.1f} s: {res['per_second']} {unit}/s, p50 {res['p50_ms']} ms p99 {res['p99_ms']} ms "
            f"per request; client CPU {res['client_cpu_pct']}% ({a.procs} proc)")
    if srv_cpu is not None:
        line += (f"; server CPU {res['server_cpu_pct']}% = {res['server_cpu_us_per_item']} us per "
                 f"{unit[:-1]}, peak RSS {hwm} MiB")
    print(line)
    for r in results:
        for m in r["messages"]:
            print(f"  error: {m}")
    if res["client_cpu_pct_per_proc"] > 80:
        print(f"  warning: a load process used {res['client_cpu_pct_per_proc']}% of a core "
              f"(Python's limit is about 100%): the generator may be the bottleneck; raise --procs")
    print("RESULT " + json.dumps(res))
    return 0 if res["errors"] == 0 and items > 0 else 1


def sample(a):
    for mode in ("http", "events"):
        b = build(mode, 0, 1, a.batch)[0]
        print(f"{mode}: one request of {a.batch}: {len(b)} bytes ({len(b) / a.batch:.0f} per item)")
    req = build("grpc", 0, 1, a.batch, stub=True)[0]
    spans = req.resource_spans[0].scope_spans[0].spans
    kinds = {}
    for s in spans:
        op = next(x.value.string_value for x in s.attributes if x.key == "gen_ai.operation.name")
        kinds[op] = kinds.get(op, 0) + 1
    print("operations:", kinds)
    print(spans[1])
    print(json.dumps(json.loads(build("events", 0, 1, a.batch)[0])[:3], indent=1))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["http", "grpc", "events", "sample"])
    p.add_argument("--url", default="http://127.0.0.1:7700", help="the HTTP listener (http, events)")
    p.add_argument("--grpc", default="127.0.0.1:4317", help="the OTLP/gRPC listener")
    p.add_argument("--token", default=os.environ.get("BLACKBOX_TOKEN", ""))
    p.add_argument("--batch", type=int, default=512, help="spans (events) per request")
    p.add_argument("--bodies", type=int, default=8, help="distinct requests built per process")
    p.add_argument("--procs", type=int, default=1, help="load processes")
    p.add_argument("--concurrency", type=int, default=8, help="connections (threads) per process")
    p.add_argument("--duration", type=float, default=20, help="seconds (the limit with --spans)")
    p.add_argument("--spans", type=int, help="stop after this many spans (events) in total")
    p.add_argument("--stub", action="store_true",
                   help="grpc: call the generated stub with messages (serialized at every call)")
    p.add_argument("--server-pid", type=int, help="the server, for its CPU time and peak RSS")
    p.add_argument("--rss-every", type=float, default=0, help="sample the server's RSS every S s")
    a = p.parse_args()
    if a.mode == "sample":
        return sample(a)
    if not a.token:
        p.error("--token (or BLACKBOX_TOKEN) is required")
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
