#!/usr/bin/env python3
"""Writes docs/openapi.json (the service's OpenAPI 3.1 document): python3 tools/gen_openapi.py > docs/openapi.json
crates/server/tests/api.rs checks that every route the router serves is documented here."""
import json
err = {"$ref": "#/components/responses/Error"}
def p(name, where="query", required=False, desc="", schema=None):
    return {"name": name, "in": where, "required": required, "description": desc, "schema": schema or {"type": "string"}}
tenant = p("tenant_id", desc="Admin tokens: the tenant to work on.")
std_err = {"400": err, "401": err, "403": err, "429": err, "503": err}
# Routes that read a request body: 408 when it stalls (docs/API.md, "Limits and fairness").
body_err = {"408": err, "413": err}
doc = {
  "openapi": "3.1.0",
  "info": {"title": "Blackbox audit service", "version": "1.0.0",
           "description": "Tamper-evident audit log for AI agents. Agents write events; auditors read entries, verification reports, signed checkpoints and proofs. See docs/API.md and docs/FORMAT.md. Every JSON request body is read with the same rules (docs/FORMAT.md §3, 'Reading JSON input'): UTF-8, one value, nesting at most 100 levels, and no object giving the same key twice at any depth (400 invalid_json naming the key and its JSON path)."},
  "servers": [{"url": "http://127.0.0.1:7700"}],
  "security": [{"bearer": []}],
  "paths": {
    "/v1/events": {"post": {
      "summary": "Append events (durable when answered)", "operationId": "appendEvents",
      "requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/Event"}, {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}]}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "One event per line."}}}},
      "responses": {"200": {"description": "Committed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestResponse"}}}},
                    **std_err, **body_err, "415": err, "422": err}}},
    "/v1/entries": {"get": {
      "summary": "Query entries (as `blackbox query`)", "operationId": "queryEntries",
      "parameters": [tenant, p("agent_id"), p("session_id"), p("tool"), p("event_type"),
                     p("start", desc="RFC 3339 time or YYYY-MM-DD"), p("end", desc="RFC 3339 time or YYYY-MM-DD"),
                     p("limit", schema={"type": "integer", "minimum": 1, "maximum": 10000}, desc="Page size; without it every match is streamed"),
                     p("format", schema={"type": "string", "enum": ["jsonl", "json", "csv"]}),
                     p("cursor", desc="Blackbox-Next-Cursor of the previous page"),
                     p("after_seq", schema={"type": "integer", "minimum": 0}, desc="Tail the chain in seq order after this seq")],
      "responses": {"200": {"description": "Entries", "headers": {
          "Blackbox-Next-Cursor": {"schema": {"type": "string"}, "description": "Present when more rows follow this page"},
          "Blackbox-Next-After-Seq": {"schema": {"type": "string"}, "description": "With after_seq: the last seq returned"}},
          "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                      "application/json": {"schema": {"type": "object", "properties": {"entries": {"type": "array", "items": {"type": "object"}}, "next_cursor": {"type": ["string", "null"]}}}},
                      "text/csv": {"schema": {"type": "string"}}}}, **std_err}}},
    "/v1/entries/{entry_id}": {"get": {
      "summary": "One entry", "operationId": "getEntry",
      "parameters": [p("entry_id", "path", True, "UUIDv7")],
      "responses": {"200": {"description": "The entry", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StoredEntry"}}}}, **std_err, "404": err}}},
    "/v1/verify": {"get": {
      "summary": "Verify the tenant's chain (as `blackbox verify --format json`)", "operationId": "verify",
      "parameters": [tenant],
      "responses": {"200": {"description": "The report (status ok or tampered)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VerifyReport"}}}}, **std_err}}},
    "/v1/checkpoints/latest": {"get": {
      "summary": "The latest signed checkpoint", "operationId": "latestCheckpoint",
      "parameters": [tenant],
      "responses": {"200": {"description": "Checkpoint", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Checkpoint"}}}}, **std_err, "404": err}}},
    "/v1/proofs/inclusion": {"get": {
      "summary": "Inclusion proof of an entry against the latest checkpoint", "operationId": "inclusionProof",
      "parameters": [p("entry_id", required=True), tenant],
      "responses": {"200": {"description": "blackbox.inclusion_proof.v1 (docs/FORMAT.md §10)", "content": {"application/json": {"schema": {"type": "object"}}}}, **std_err, "404": err}}},
    "/v1/proofs/consistency": {"get": {
      "summary": "Consistency proof between two stored checkpoints", "operationId": "consistencyProof",
      "parameters": [tenant, p("from_size", required=True, schema={"type": "integer", "minimum": 0}), p("to_size", schema={"type": "integer", "minimum": 0})],
      "responses": {"200": {"description": "blackbox.consistency_proof.v1 (docs/FORMAT.md §10)", "content": {"application/json": {"schema": {"type": "object"}}}}, **std_err, "404": err}}},
    "/v1/tokens": {
      "post": {"summary": "Create a token (admin)", "operationId": "createToken",
               "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["scopes"], "properties": {"tenant_id": {"type": "string"}, "scopes": {"type": "array", "items": {"type": "string", "enum": ["ingest", "read", "admin"]}}, "label": {"type": "string"}}}}}},
               "responses": {"201": {"description": "Created; the token is shown once", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Token"}}}}, **std_err, **body_err}},
      "get": {"summary": "List tokens (admin; no secrets)", "operationId": "listTokens",
              "responses": {"200": {"description": "Tokens", "content": {"application/json": {"schema": {"type": "object", "properties": {"tokens": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}}}}}}}, **std_err}}},
    "/v1/tokens/{id}": {"delete": {"summary": "Revoke a token (admin)", "operationId": "revokeToken",
      "parameters": [p("id", "path", True)], "responses": {"204": {"description": "Revoked"}, **std_err, "404": err}}},
    "/v1/decide": {"post": {
      "summary": "May this agent make this tool call now? (recorded either way; docs/RULES.md)", "operationId": "decide",
      "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DecideRequest"}}}},
      "responses": {"200": {"description": "The decision, once the attempted call is durably recorded (or sequenced, with decide_answer = sequenced)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}}}, **std_err, **body_err}}},
    "/v1/agents": {"get": {
      "summary": "Agents known to the detector, paused and throttled first", "operationId": "listAgents",
      "parameters": [tenant],
      "responses": {"200": {"description": "Agents", "content": {"application/json": {"schema": {"type": "object", "properties": {"agents": {"type": "array", "items": {"$ref": "#/components/schemas/Agent"}}}}}}}, **std_err}}},
    "/v1/agents/{agent_id}/pause": {"post": {
      "summary": "Pause an agent until it is resumed (admin; recorded as agent_paused)", "operationId": "pauseAgent",
      "parameters": [p("agent_id", "path", True)],
      "requestBody": {"required": False, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AgentAction"}}}},
      "responses": {"200": {"description": "The agent's state", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AgentState"}}}}, **std_err}}},
    "/v1/agents/{agent_id}/resume": {"post": {
      "summary": "Resume a paused or throttled agent (admin; recorded as agent_resumed); alert_id names the alert it answers (required when a rule paused or throttled the agent)", "operationId": "resumeAgent",
      "parameters": [p("agent_id", "path", True)],
      "requestBody": {"required": False, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AgentAction"}}}},
      "responses": {"200": {"description": "The agent's state", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AgentState"}}}}, **std_err, "404": err}}},
    "/v1/alerts": {"get": {
      "summary": "Alerts (anomaly_detected entries) with their triage state, oldest first, a page at a time", "operationId": "listAlerts",
      "parameters": [tenant, p("state", schema={"type": "string", "enum": ["open", "acknowledged", "resolved"]}), p("rule"), p("agent_id"),
                     p("since", desc="Fired at or after: RFC 3339 time or YYYY-MM-DD"), p("until", desc="Fired at or before: RFC 3339 time or YYYY-MM-DD"),
                     p("limit", schema={"type": "integer", "minimum": 1, "maximum": 1000}, desc="Page size (default 100)"),
                     p("cursor", desc="next_cursor of the previous page")],
      "responses": {"200": {"description": "A page of alerts", "content": {"application/json": {"schema": {"type": "object", "properties": {"alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}}, "next_cursor": {"type": ["string", "null"]}}}}}}, **std_err}}},
    "/v1/alerts/{alert_id}/ack": {"post": {
      "summary": "Acknowledge an open alert (admin; recorded as alert_acknowledged naming the token)", "operationId": "acknowledgeAlert",
      "parameters": [p("alert_id", "path", True, "The entry_id of the anomaly_detected entry")],
      "requestBody": {"required": False, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TriageRequest"}}}},
      "responses": {"200": {"description": "The alert after the step, and the entry recording it", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TriageAnswer"}}}}, **std_err, "404": err, "409": err}}},
    "/v1/alerts/{alert_id}/resolve": {"post": {
      "summary": "Resolve an open or acknowledged alert (admin; recorded as alert_resolved naming the token); final", "operationId": "resolveAlert",
      "parameters": [p("alert_id", "path", True, "The entry_id of the anomaly_detected entry")],
      "requestBody": {"required": True, "content": {"application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/TriageRequest"}, {"required": ["resolution"]}]}}}},
      "responses": {"200": {"description": "The alert after the step, and the entry recording it", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TriageAnswer"}}}}, **std_err, "404": err, "409": err}}},
    "/v1/erasures": {"post": {
      "summary": "Erase a data subject's personal data (admin; GDPR Art. 17): sidecars deleted and a signed erasure marker appended per chain, in one commit (docs/FORMAT.md §5)", "operationId": "erase",
      "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": False, "required": ["data_subject", "reason", "ticket"], "properties": {
          "data_subject": {"type": "string", "minLength": 1, "maxLength": 256}, "reason": {"type": "string", "minLength": 1, "maxLength": 1000}, "ticket": {"type": "string", "minLength": 1, "maxLength": 1000}}}}}},
      "responses": {"200": {"description": "What was erased (never the subject id)", "content": {"application/json": {"schema": {"type": "object", "properties": {
          "dry_run": {"type": "boolean"}, "found": {"type": "boolean"}, "redacted": {"type": "integer"}, "markers": {"type": "integer"},
          "chains": {"type": "array", "items": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "redacted": {"type": "integer"}, "already_erased": {"type": "integer"}, "not_in_store": {"type": "integer"},
              "markers": {"type": "array", "items": {"type": "object", "properties": {"seq": {"type": "integer"}, "entry_id": {"type": "string", "format": "uuid"}}}}}}},
          "entries": {"type": "array", "items": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "seq": {"type": "integer"}, "entry_id": {"type": "string", "format": "uuid"}, "fate": {"type": "string", "enum": ["redacted", "already_erased", "not_in_store"]}}}},
          "purge": {"type": "object", "properties": {"complete": {"type": "boolean"}, "message": {"type": "string"}}},
          "mirror_files": {"type": "array", "items": {"type": "object", "properties": {"file": {"type": "string"}, "personal_records_removed": {"type": "integer"}}}}}}}}}, **std_err, **body_err}}},
    "/v1/retention/run": {"post": {
      "summary": "Run retention now (admin): archive entries older than each tenant's hot window into verified archive segments and expire segments past the archive retention; each step is recorded in the chain (docs/FORMAT.md §18)", "operationId": "runRetention",
      "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": False, "description": "Optional; no members"}}}},
      "responses": {"200": {"description": "What the run did", "content": {"application/json": {"schema": {"type": "object", "properties": {"report": {"type": "object", "properties": {
          "archived": {"type": "array", "items": {"$ref": "#/components/schemas/ArchiveSegment"}}, "deleted": {"type": "array", "items": {"$ref": "#/components/schemas/ArchiveSegment"}},
          "reclaimed_bytes": {"type": "integer"}, "dry_run": {"type": "boolean"}}}}}}}}, **std_err}}},
    "/v1/exports": {"get": {
      "summary": "A compliance export made by the service (SOC 2 CC7.2, ISO 27001 A.8.15, GDPR Art. 30): the files and the signed manifest", "operationId": "export",
      "parameters": [p("standard", required=True, schema={"type": "string", "enum": ["soc2", "iso27001", "gdpr"]}),
                     p("control", desc="CC7.2 or A.8.15"), p("article", desc="art30"),
                     p("output", required=True, desc="File name; its extension (.pdf, .json, .csv) picks the format"),
                     p("period", desc="START/END dates, both included (default: the whole log)"), tenant,
                     p("include_data_subjects", schema={"type": "boolean"}), p("sample_size", schema={"type": "integer", "minimum": 0}), p("seed")],
      "responses": {"200": {"description": "Files (base64) and the signed manifest (docs/FORMAT.md §16)", "content": {"application/json": {"schema": {"type": "object", "properties": {
          "files": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "base64": {"type": "string"}}}},
          "manifest": {"type": "object", "properties": {"name": {"type": "string"}, "text": {"type": "string"}}},
          "period": {"type": "object"}, "summary": {"type": "object"}}}}}}, **std_err}}},
    "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "security": [], "responses": {"200": {"description": "Up", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/readyz": {"get": {"summary": "Readiness (the store commits)", "operationId": "readyz", "security": [], "responses": {"200": {"description": "Ready", "content": {"text/plain": {"schema": {"type": "string"}}}}, "503": err}}},
    "/metrics": {"get": {"summary": "Prometheus metrics (admin token)", "operationId": "metrics", "responses": {"200": {"description": "OpenMetrics text", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}, "401": err, "403": err}}},
    "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "security": [], "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
  },
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "bbx_<id>_<secret>, from `blackbox tokens create`"}},
    "responses": {"Error": {"description": "An error", "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "With 429 and 503: seconds to wait before retrying"}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
    "schemas": {
      "ArchiveSegment": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "first_seq": {"type": "integer"}, "last_seq": {"type": "integer"}, "object": {"type": "string"}, "bytes": {"type": "integer"}}},
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
          "code": {"type": "string", "enum": ["invalid_json", "invalid_utf8", "invalid_event", "invalid_parameter", "empty_body", "too_many_events", "unauthenticated", "forbidden", "not_found", "method_not_allowed", "body_too_large", "unsupported_media_type", "rate_limited", "unavailable"]},
          "message": {"type": "string"}, "index": {"type": "integer", "description": "0-based index of the offending event"}}}}},
      "Event": {"type": "object", "required": ["agent_id", "session_id", "event_type"], "additionalProperties": True,
                "description": "docs/FORMAT.md §3. Raw content in prompt, completion, messages, query, content, result_data, args_raw is hashed before storage.",
                "properties": {"agent_id": {"type": "string"}, "session_id": {"type": "string"}, "event_type": {"type": "string"}, "tenant_id": {"type": "string"},
                               "timestamp": {"type": "string", "format": "date-time"}, "client_seq": {"type": "integer", "minimum": 0}, "payload": {"type": "object"},
                               "data_subjects": {"type": "array"}}},
      "IngestResponse": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "count": {"type": "integer"}, "entries": {"type": "array", "items": {"type": "object", "properties": {"entry_id": {"type": "string"}, "seq": {"type": "integer"}, "entry_hash": {"type": "string"}}}}}},
      "StoredEntry": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "seq": {"type": "integer"}, "entry_hash": {"type": "string"}, "line": {"type": "string", "description": "The exact signed bytes"}, "entry": {"type": "object"}}},
      "VerifyReport": {"type": "object", "properties": {"status": {"type": "string", "enum": ["ok", "tampered"]}, "summary": {"type": "string"}, "entries": {"type": "integer"}, "chains": {"type": "array", "items": {"type": "object"}}, "findings": {"type": "array", "items": {"type": "object"}}, "findings_total": {"type": "integer"}}},
      "Checkpoint": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "size": {"type": "integer"}, "timestamp": {"type": "string"}, "note": {"type": "string", "description": "C2SP signed note"}}},
      "DecideRequest": {"type": "object", "required": ["agent_id", "session_id", "tool_name"], "additionalProperties": False,
                        "properties": {"agent_id": {"type": "string"}, "session_id": {"type": "string"}, "tool_name": {"type": "string"},
                                       "args": {"description": "Raw arguments: scanned by pattern rules, stored only as args_hash"},
                                       "agent_role": {"type": "string"}, "invocation_id": {"type": "string"},
                                       "client_seq": {"type": "integer", "minimum": 0},
                                       "prompt": {"description": "The prompt behind the call, if known: scanned, stored only as prompt_hash"}}},
      "Decision": {"type": "object", "properties": {"decision": {"type": "string", "enum": ["allow", "block", "throttle", "paused"]},
                   "retry_after_ms": {"type": ["integer", "null"]},
                   "rules": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "action": {"type": "string"}, "severity": {"type": "string"}}}},
                   "entry_id": {"type": "string"}, "seq": {"type": "integer"}, "entry_hash": {"type": "string"},
                   "durable": {"type": "boolean", "description": "Whether the record was committed before this answer (false with decide_answer = sequenced)"}}},
      "Agent": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "agent_id": {"type": "string"}, "state": {"type": "string", "enum": ["active", "paused", "throttled"]},
                "first_seen": {"type": ["string", "null"]}, "last_seen": {"type": ["string", "null"]}, "events": {"type": "integer"},
                "paused_since": {"type": ["string", "null"]}, "paused_by": {"type": ["string", "null"]},
                "throttled_until": {"type": ["string", "null"]}, "throttle_per_minute": {"type": ["integer", "null"]}, "throttled_by": {"type": ["string", "null"]}}},
      "AgentAction": {"type": "object", "additionalProperties": False, "properties": {"tenant_id": {"type": "string", "description": "Needed with an admin token that has no tenant"}, "reason": {"type": "string", "maxLength": 1024}, "alert_id": {"type": "string", "description": "Resume only: the alert the resume answers (an alert of this agent); required when a rule paused or throttled the agent"}}},
      "TriageRequest": {"type": "object", "additionalProperties": False, "properties": {"resolution": {"type": "string", "enum": ["true_positive", "false_positive", "accepted_risk"], "description": "Resolve only (required there)"}, "ticket": {"type": "string", "minLength": 1, "maxLength": 200, "description": "One line, no control characters"}, "note": {"type": "string", "description": "Up to 16 KiB; only its SHA-256 is recorded (note_sha256)"}}},
      "TriageMark": {"type": ["object", "null"], "properties": {"by": {"type": "string"}, "at": {"type": "string"}, "entry_id": {"type": "string"}, "seq": {"type": "integer"}, "ticket": {"type": ["string", "null"]}, "note_sha256": {"type": ["string", "null"]}}},
      "Alert": {"type": "object", "properties": {"alert_id": {"type": "string"}, "tenant_id": {"type": "string"}, "seq": {"type": "integer"}, "fired_at": {"type": "string"}, "agent_id": {"type": "string"}, "session_id": {"type": "string"}, "rule": {"type": "string"}, "severity": {"type": "string"}, "action": {"type": "string"}, "enforcement": {"type": "string"}, "state": {"type": "string", "enum": ["open", "acknowledged", "resolved"]}, "resolution": {"type": ["string", "null"]}, "acknowledged": {"$ref": "#/components/schemas/TriageMark"}, "resolved": {"$ref": "#/components/schemas/TriageMark"}}},
      "TriageAnswer": {"type": "object", "properties": {"alert": {"$ref": "#/components/schemas/Alert"}, "entry_id": {"type": "string"}, "seq": {"type": "integer"}, "entry_hash": {"type": "string"}}},
      "AgentState": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "agent_id": {"type": "string"}, "state": {"type": "string"}, "changed": {"type": "boolean"}, "entry_id": {"type": ["string", "null"]}, "seq": {"type": ["integer", "null"]}}},
      "Token": {"type": "object", "properties": {"id": {"type": "string"}, "token": {"type": "string", "description": "Only in the answer to creation"}, "tenant_id": {"type": ["string", "null"]}, "scopes": {"type": "array", "items": {"type": "string"}}, "label": {"type": "string"}, "created_ms": {"type": "integer"}, "revoked_ms": {"type": ["integer", "null"]}}},
    }
  }
}
print(json.dumps(doc, indent=2))
