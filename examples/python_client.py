#!/usr/bin/env python3
"""Logs a few agent events to a Blackbox service, using only the Python standard library.

Raw content (prompts, SQL, ...) is hashed here, before sending, exactly as the service would do it
(docs/FORMAT.md section 4), so it never leaves the agent. Then the first entry is read back to show
that only hashes were stored.

    BLACKBOX_TOKEN=bbx_... python3 examples/python_client.py [--url http://127.0.0.1:7700]

The token needs the `ingest` and `read` scopes (blackbox tokens create --scope ingest,read).
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.request
import uuid

# docs/FORMAT.md section 4: the default raw list, and the envelope members that are never raw.
RAW_FIELDS = {"prompt", "completion", "messages", "query", "content", "result_data", "args_raw"}
ENVELOPE = {"tenant_id", "agent_id", "session_id", "event_type", "timestamp", "client_seq",
            "personal_digest"}
DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")


def canonical_json(value, where):
    """RFC 8785 (JCS) for JSON without floats: with integers, strings, booleans and null only,
    sorted keys and no whitespace is the canonical form. (Python sorts keys by code point, JCS by
    UTF-16 unit; they differ only for keys mixing characters above U+FFFF with U+E000-U+FFFF.)"""
    def check(v):
        if isinstance(v, float):
            sys.exit(f"error: {where} holds the float {v!r}: this example does not implement "
                     "RFC 8785 number formatting; send it as an integer or a string")
        for item in v.values() if isinstance(v, dict) else v if isinstance(v, list) else ():
            check(item)
    check(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(value, where):
    """SHA-256 of the UTF-8 text for strings, of the canonical JSON for anything else."""
    text = value if isinstance(value, str) else canonical_json(value, where)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def replace_raw(obj, where):
    """`name: value` becomes `name_hash: digest`, in this object only."""
    for key in [k for k in obj if k in RAW_FIELDS]:
        value = obj.pop(key)
        hashed = value if isinstance(value, str) and DIGEST.match(value) else digest(value, where + key)
        if obj.get(key + "_hash", hashed) != hashed:
            sys.exit(f"error: {where}{key} and {where}{key}_hash are both given and disagree")
        obj[key + "_hash"] = hashed


def walk(value, where):
    if isinstance(value, dict):
        replace_raw(value, where)  # first, so the raw values themselves are not walked into
        for key, item in value.items():
            walk(item, f"{where}{key}.")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            walk(item, f"{where}[{i}].")


def hash_raw_content(event):
    """Hashes raw content anywhere in the payload and the flat (non-envelope) members."""
    for key, value in event.items():
        if key not in ENVELOPE and key not in RAW_FIELDS:
            walk(value, key + ".")
    replace_raw(event, "")
    return event


def call(method, url, token, body=None):
    """One request; on an HTTP error prints the API error code and message and exits."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        try:
            err = json.load(e)["error"]
            where = f" (event {err['index']})" if "index" in err else ""
            sys.exit(f"error: {method} {url}: HTTP {e.code} {err['code']}: {err['message']}{where}")
        except (ValueError, KeyError, TypeError):
            sys.exit(f"error: {method} {url}: HTTP {e.code} {e.reason}")
    except urllib.error.URLError as e:
        sys.exit(f"error: cannot reach {url}: {e.reason}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default=os.environ.get("BLACKBOX_URL", "http://127.0.0.1:7700"))
    ap.add_argument("--token", default=os.environ.get("BLACKBOX_TOKEN"))
    args = ap.parse_args()
    if not args.token:
        sys.exit("error: set BLACKBOX_TOKEN or pass --token")
    base = args.url.rstrip("/")

    prompt = "Customer 4711 asks: where is my order #90210? Reply politely."
    sql = "SELECT status, eta FROM orders WHERE customer_id = 4711 AND order_id = 90210"
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    common = {"agent_id": "support-agent-01", "session_id": f"sess_{uuid.uuid4().hex[:12]}",
              "timestamp": now.replace("+00:00", "Z")}
    batch = [
        {**common, "client_seq": 1, "event_type": "llm_request",
         "payload": {"model": "gpt-4o", "prompt": prompt, "token_count_in": 412,
                     "token_count_out": 57, "latency_ms": 830,
                     "tool_calls": [{"name": "query_database"}]}},
        # The flat tool_call shape: members other than the envelope go into the payload.
        {**common, "client_seq": 2, "event_type": "tool_call", "tool_name": "query_database",
         "agent_role": "support", "invocation_id": "inv_1",
         "args": {"query": sql, "table": "orders", "limit": 1},
         "authorization": {"rbac_role": "support", "allowed": True,
                           "policy_matched": "support-read-own-orders"},
         "result": {"rows_returned": 1, "data_classification": "internal"}, "duration_ms": 12},
        {**common, "client_seq": 3, "event_type": "decision",
         "payload": {"decision": "answer", "reason": "order found, ETA known"}},
    ]
    for event in batch:
        hash_raw_content(event)
    assert prompt not in json.dumps(batch) and sql not in json.dumps(batch)

    resp = call("POST", f"{base}/v1/events", args.token, batch)
    print(f"tenant {resp['tenant_id']}: {resp['count']} entries")
    for e in resp["entries"]:
        print(f"  seq {e['seq']:>6}  {e['entry_id']}  {e['entry_hash']}")

    first = resp["entries"][0]["entry_id"]
    got = call("GET", f"{base}/v1/entries/{first}", args.token)
    line = got["line"]
    if prompt in line or sql in line:
        sys.exit("error: the stored entry contains raw text")
    if digest(prompt, "prompt") not in line:
        sys.exit("error: the stored entry does not hold the prompt's hash")
    print(f"entry {first}: no raw text stored, prompt_hash = {digest(prompt, 'prompt')}")


if __name__ == "__main__":
    main()
