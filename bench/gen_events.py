#!/usr/bin/env python3
"""Writes N realistic agent events as NDJSON: mixed llm_request / tool_call / other events,
several tenants, agents and sessions, raw prompts and SQL (hashed by the writer), some data
subjects. Deterministic for a given seed.  Usage: gen_events.py N [SEED] > events.ndjson"""
import json, random, sys, time as _t

n = int(sys.argv[1]); rnd = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
# "year": one tenant, the events spread evenly over 2025 (for the export benchmark).
year = len(sys.argv) > 3 and sys.argv[3] == "year"
tenants = ["acme"] if year else ["acme", "globex", "initech", "umbrella"]
tools = ["query_database", "search_kb", "send_email", "read_file", "http_get", "create_ticket"]
models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet", "llama-3-70b"]
base = 1776124800000  # 2026-04-14T00:00:00Z
out = sys.stdout
w = out.write
for i in range(n):
    t = tenants[i % len(tenants)]
    agent = f"{t}-agent-{rnd.randrange(40):02d}"
    sess = f"sess_{t}_{i // 200}"
    cseq = i
    if year:  # one agent per session, counting its own events (as real agents do)
        agent = f"{t}-agent-{(i // 200) % 40:02d}"
        cseq = i % 200 + 1
    ms = (1735689600000 + i * (31_536_000_000 // n)) if year else (base + i * 30)  # ~1M events over ~8 hours
    sec, milli = divmod(ms, 1000)
    ts = _t.strftime("%Y-%m-%dT%H:%M:%S", _t.gmtime(sec)) + f".{milli:03d}Z"
    k = rnd.random()
    if k < 0.45:
        ev = {"tenant_id": t, "agent_id": agent, "session_id": sess, "client_seq": cseq, "timestamp": ts,
              "event_type": "llm_request",
              "payload": {"model": rnd.choice(models), "prompt": f"Customer asks about order {rnd.randrange(10**6)}: where is it?",
                          "token_count_in": rnd.randrange(50, 4000), "token_count_out": rnd.randrange(10, 800),
                          "latency_ms": rnd.randrange(100, 5000),
                          "tool_calls": [{"name": rnd.choice(tools), "args_hash": "sha256:" + "%064x" % rnd.getrandbits(256)}]}}
    elif k < 0.95:
        tool = rnd.choice(tools)
        ev = {"tenant_id": t, "agent_id": agent, "session_id": sess, "client_seq": cseq, "timestamp": ts,
              "event_type": "tool_call", "tool_name": tool, "agent_role": rnd.choice(["analyst", "support", "ops"]),
              "invocation_id": f"inv_{i}", "args": {"query": f"SELECT * FROM orders WHERE customer_id = {rnd.randrange(10**6)} LIMIT 100", "table": "orders", "limit": 100},
              "authorization": {"rbac_role": "analyst", "allowed": rnd.random() > 0.05, "policy_matched": "analyst-read-orders"},
              "result": {"rows_returned": rnd.randrange(0, 200), "result_hash": "sha256:" + "%064x" % rnd.getrandbits(256), "data_classification": "internal"},
              "duration_ms": rnd.randrange(1, 300)}
        if rnd.random() < 0.1:
            ev["data_subjects"] = [{"id": f"ds_{rnd.randrange(10**5)}", "category": "customer"}]
    else:
        ev = {"tenant_id": t, "agent_id": agent, "session_id": sess, "client_seq": cseq, "timestamp": ts,
              "event_type": "decision", "payload": {"decision": rnd.choice(["answer", "escalate", "refuse"]), "confidence": round(rnd.random(), 3)}}
    w(json.dumps(ev, separators=(",", ":")))
    w("\n")
