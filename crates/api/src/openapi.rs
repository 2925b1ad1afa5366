//! The OpenAPI 3.1 document of the service (docs/openapi.json, served at `GET /openapi.json`).
//!
//! Bodies are described by the JSON Schemas of this crate's types (schemars reads the same serde
//! attributes that write them), so a member added to a type is in the document at once. The
//! route table (paths, parameters, statuses) is written here; the server's tests check that it
//! lists every route the router serves and that every route's real answers validate against it.
//! Documents other crates own (verification reports, alerts, erasure outcomes, retention
//! reports) are described by hand below.
//!
//! `cargo run -p blackbox-api --example openapi > docs/openapi.json` writes the file; a test
//! fails when it is out of date.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::{
    agents, alerts, decide, entries, erasures, error, events, exports, overview, proofs, rules,
    tokens, witnesses,
};

/// Where component schemas live (`$ref: "#/components/schemas/<Name>"`).
const SCHEMAS: &str = "/components/schemas";

/// An OTLP/HTTP export route (docs/OTEL.md): its messages are the OpenTelemetry Protocol's, not
/// this API's types, so they are described rather than given a schema.
fn otlp(signal: &str, request: &str, response: &str, rejected: &str) -> Value {
    let status = json!({"description": "google.rpc.Status, in the request's encoding (JSON: {\"code\", \"message\"})",
        "content": {"application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"type": "object", "properties": {
                        "code": {"type": "integer"}, "message": {"type": "string"}}}}}});
    let retry =
        json!({"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}});
    json!({
        "summary": format!("OTLP/HTTP {signal} export: GenAI items become entries (docs/OTEL.md)"),
        "operationId": format!("otlpExport{}", if signal == "traces" { "Traces" } else { "Logs" }),
        "description": format!("An OpenTelemetry `{request}` (binary protobuf or OTLP/JSON; `Content-Encoding: gzip` accepted), with an ingest token. Answered once the entries are durable; items refused are counted in `partialSuccess.{rejected}` with a message naming them."),
        "requestBody": {"required": true, "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary", "description": request}},
            "application/json": {"schema": {"type": "object", "description": format!("{request} in OTLP/JSON")}}}},
        "responses": {
            "200": {"description": format!("{response}: empty on full success, or with partialSuccess"),
                "content": {"application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                            "application/json": {"schema": {"type": "object", "properties": {"partialSuccess": {"type": "object"}}}}}},
            "400": status.clone(), "401": status.clone(), "403": status.clone(), "413": status.clone(), "415": status.clone(),
            "421": {"description": "On one database of a tenant map: the token's tenant is kept in another; send it there", "content": status["content"].clone()},
            "429": {"description": "Rate limited or the tenant's share in use: retry", "headers": retry.clone(), "content": status["content"].clone()},
            "503": {"description": "The writer is saturated or the commit failed: retry", "headers": retry, "content": status["content"].clone()}}
    })
}

/// The document, as served.
#[must_use]
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = SCHEMAS.into();
    let mut generator = settings.into_generator();
    let mut r =
        |f: fn(&mut schemars::SchemaGenerator) -> schemars::Schema| f(&mut generator).to_value();
    let ingest = r(|g| g.subschema_for::<events::IngestResponse>());
    let stored = r(|g| g.subschema_for::<entries::EntryRecord>());
    let entries_json = r(|g| g.subschema_for::<entries::EntriesJson>());
    let checkpoint = r(|g| g.subschema_for::<proofs::Checkpoint>());
    let decide_req = r(|g| g.subschema_for::<decide::DecideRequest>());
    let decision = r(|g| g.subschema_for::<decide::Decision>());
    let agent_list = r(|g| g.subschema_for::<agents::AgentList>());
    let rules_answer = r(|g| g.subschema_for::<rules::RulesAnswer>());
    let witnesses_answer = r(|g| g.subschema_for::<witnesses::WitnessesAnswer>());
    let overview = r(|g| g.subschema_for::<overview::Overview>());
    let checkpoint_key = r(|g| g.subschema_for::<overview::CheckpointKey>());
    let agent_action = r(|g| g.subschema_for::<agents::AgentAction>());
    let agent_change = r(|g| g.subschema_for::<agents::AgentChange>());
    let alert_list = r(|g| g.subschema_for::<alerts::AlertList>());
    let triage = r(|g| g.subschema_for::<alerts::Triage>());
    let triaged = r(|g| g.subschema_for::<alerts::Triaged>());
    let erasure = r(|g| g.subschema_for::<erasures::Erasure>());
    let export = r(|g| g.subschema_for::<exports::Export>());
    let new_token = r(|g| g.subschema_for::<tokens::NewToken>());
    let created_token = r(|g| g.subschema_for::<tokens::CreatedToken>());
    let token_list = r(|g| g.subschema_for::<tokens::TokenList>());
    let _ = r(|g| g.subschema_for::<error::ErrorBody>());
    let mut schemas: Map<String, Value> = generator.take_definitions(true);
    for (name, schema) in hand_written() {
        schemas.insert(name.to_owned(), schema);
    }

    let err = json!({"$ref": "#/components/responses/Error"});
    let std_err = |extra: &[&str]| {
        let mut m = Map::new();
        // 421: on one database of a tenant map, a tenant kept in another (docs/API.md).
        for s in ["400", "401", "403", "421", "429", "503"]
            .iter()
            .chain(extra)
        {
            m.insert((*s).to_owned(), err.clone());
        }
        Value::Object(m)
    };
    // Routes that read a request body: 408 when it stalls (docs/API.md, "Limits and fairness").
    let body_err = ["408", "413"];
    let with = |mut base: Value, ok: Value| {
        if let (Some(b), Value::Object(o)) = (base.as_object_mut(), ok) {
            for (k, v) in o {
                b.insert(k, v);
            }
        }
        base
    };
    let ok = |status: &str, description: &str, schema: &Value| json!({status: {"description": description, "content": {"application/json": {"schema": schema}}}});
    let body = |required: bool, schema: &Value| json!({"required": required, "content": {"application/json": {"schema": schema}}});
    let tenant = param(
        "tenant_id",
        "query",
        false,
        "Admin tokens: the tenant to work on.",
        None,
    );
    let ref_ = |name: &str| json!({"$ref": format!("#{SCHEMAS}/{name}")});

    let paths = json!({
        "/v1/events": {"post": {
            "summary": "Append events (durable when answered)", "operationId": "appendEvents",
            "requestBody": {"required": true, "content": {
                "application/json": {"schema": {"oneOf": [ref_("Event"), {"type": "array", "items": ref_("Event")}]}},
                "application/x-ndjson": {"schema": {"type": "string", "description": "One event per line."}}}},
            "responses": with(std_err(&["408", "413", "415", "422"]), ok("200", "Committed", &ingest))}},
        "/v1/traces": {"post": otlp("traces", "ExportTraceServiceRequest", "ExportTraceServiceResponse", "rejectedSpans")},
        "/v1/logs": {"post": otlp("logs", "ExportLogsServiceRequest", "ExportLogsServiceResponse", "rejectedLogRecords")},
        "/v1/entries": {"get": {
            "summary": "Query entries (as `blackbox query`)", "operationId": "queryEntries",
            "parameters": [tenant, param("agent_id", "query", false, "", None), param("session_id", "query", false, "", None),
                param("tool", "query", false, "", None), param("event_type", "query", false, "", None),
                param("trace_id", "query", false, "payload.trace_id", None),
                param("origin", "query", false, "service, token, local, token:<id> or local:<user> (who wrote the entry)", None),
                param("time", "query", false, "Which time start and end bound: the agent's timestamp (claimed, the default) or the service's written_at. trace_id, origin and time=written are read from the rows: a page then stops after reading 100,000 rows (fewer rows than limit, or none, and a cursor)", Some(json!({"type": "string", "enum": ["claimed", "written"]}))),
                param("start", "query", false, "RFC 3339 time or YYYY-MM-DD", None),
                param("end", "query", false, "RFC 3339 time or YYYY-MM-DD", None),
                param("limit", "query", false, "Page size; without it every match is streamed", Some(json!({"type": "integer", "minimum": 1, "maximum": 10000}))),
                param("format", "query", false, "", Some(json!({"type": "string", "enum": ["jsonl", "json", "csv"]}))),
                param("cursor", "query", false, "Blackbox-Next-Cursor of the previous page", None),
                param("after_seq", "query", false, "Tail the chain in seq order after this seq", Some(json!({"type": "integer", "minimum": 0})))],
            "responses": with(std_err(&[]), json!({"200": {"description": "Entries", "headers": {
                    "Blackbox-Next-Cursor": {"schema": {"type": "string"}, "description": "Present when more rows follow this page"},
                    "Blackbox-Next-After-Seq": {"schema": {"type": "string"}, "description": "With after_seq: the last seq returned"}},
                "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                            "application/json": {"schema": entries_json},
                            "text/csv": {"schema": {"type": "string"}}}}}))}},
        "/v1/entries/{entry_id}": {"get": {
            "summary": "One entry", "operationId": "getEntry",
            "parameters": [param("entry_id", "path", true, "UUIDv7", None)],
            "responses": with(std_err(&["404"]), ok("200", "The entry", &stored))}},
        "/v1/verify": {"get": {
            "summary": "Verify the tenant's chain (as `blackbox verify --format json`)", "operationId": "verify",
            "parameters": [tenant, param("progress", "query", false, "Stream NDJSON: {\"checked\": n} lines while it runs, then {\"report\": …} (or {\"error\": {\"code\", \"message\"}})", Some(json!({"type": "boolean"})))],
            "responses": with(std_err(&[]), json!({"200": {"description": "The report (status ok or tampered); with progress=true, NDJSON progress lines and then the report",
                "content": {"application/json": {"schema": ref_("VerifyReport")}, "application/x-ndjson": {"schema": {"type": "string"}}}}}))}},
        "/v1/overview": {"get": {
            "summary": "Each readable tenant's entries, agents, open alerts and latest checkpoint (the console's first page)", "operationId": "overview",
            "parameters": [tenant],
            "responses": with(std_err(&[]), ok("200", "Overview", &overview))}},
        "/v1/checkpoints/key": {"get": {
            "summary": "The key that signs the checkpoints (verifier key and fingerprint)", "operationId": "checkpointKey",
            "responses": with(std_err(&[]), ok("200", "CheckpointKey", &checkpoint_key))}},
        "/v1/checkpoints/latest": {"get": {
            "summary": "The latest signed checkpoint", "operationId": "latestCheckpoint",
            "parameters": [tenant],
            "responses": with(std_err(&["404"]), ok("200", "Checkpoint", &checkpoint))}},
        "/v1/checkpoints": {"post": {
            "summary": "Sign a checkpoint of the tenant's chain now, when its latest does not cover every entry (admin); answers the latest", "operationId": "signCheckpoint",
            "parameters": [tenant],
            "responses": with(std_err(&["404"]), ok("200", "Checkpoint", &checkpoint))}},
        "/v1/proofs/inclusion": {"get": {
            "summary": "Inclusion proof of an entry against the latest checkpoint", "operationId": "inclusionProof",
            "parameters": [param("entry_id", "query", true, "", None), tenant],
            "responses": with(std_err(&["404"]), ok("200", "blackbox.inclusion_proof.v1 (docs/FORMAT.md §10)", &json!({"type": "object"})))}},
        "/v1/proofs/slice": {"get": {
            "summary": "A verified log slice: the entries of an agent, session or trace in a time window, each with its inclusion proof against the latest checkpoint", "operationId": "logSlice",
            "description": "The answer is a blackbox.log_slice.v1 document (docs/FORMAT.md §10), checked offline by `blackbox verify-proof`. Entries newer than the latest checkpoint are counted in `not_covered`, not proven.",
            "parameters": [tenant, param("agent_id", "query", false, "", None), param("session_id", "query", false, "", None),
                param("trace_id", "query", false, "32 hex digits (payload.trace_id)", None),
                param("start", "query", false, "RFC 3339 time or YYYY-MM-DD (claimed time)", None),
                param("end", "query", false, "RFC 3339 time or YYYY-MM-DD (claimed time)", None),
                param("limit", "query", false, "Entries at most (default 1000)", Some(json!({"type": "integer", "minimum": 1, "maximum": 10000})))],
            "responses": with(std_err(&["404"]), ok("200", "blackbox.log_slice.v1 (docs/FORMAT.md §10)", &json!({"type": "object"})))}},
        "/v1/proofs/consistency": {"get": {
            "summary": "Consistency proof between two stored checkpoints", "operationId": "consistencyProof",
            "parameters": [tenant, param("from_size", "query", true, "", Some(json!({"type": "integer", "minimum": 0}))),
                           param("to_size", "query", false, "", Some(json!({"type": "integer", "minimum": 0})))],
            "responses": with(std_err(&["404"]), ok("200", "blackbox.consistency_proof.v1 (docs/FORMAT.md §10)", &json!({"type": "object"})))}},
        "/v1/rules": {"get": {
            "summary": "The detection rules in force (each in words) and the rules versions recorded as loaded", "operationId": "rules",
            "parameters": [tenant],
            "responses": with(std_err(&[]), ok("200", "RulesAnswer", &rules_answer))}},
        "/v1/witnesses": {"get": {
            "summary": "The witnesses checkpoints are submitted to ([witnessing]), the quorum the service checks, and what each cosigned (docs/WITNESS.md)", "operationId": "witnesses",
            "parameters": [tenant],
            "responses": with(std_err(&[]), ok("200", "WitnessesAnswer", &witnesses_answer))}},
        "/v1/tokens": {
            "post": {"summary": "Create a token (admin)", "operationId": "createToken",
                "requestBody": body(true, &new_token),
                "responses": with(std_err(&body_err), ok("201", "Created; the token is shown once", &created_token))},
            "get": {"summary": "List tokens (admin; no secrets)", "operationId": "listTokens",
                "responses": with(std_err(&[]), ok("200", "Tokens", &token_list))}},
        "/v1/tokens/{id}": {"delete": {"summary": "Revoke a token (admin)", "operationId": "revokeToken",
            "parameters": [param("id", "path", true, "", None)],
            "responses": with(std_err(&["404"]), json!({"204": {"description": "Revoked"}}))}},
        "/v1/decide": {"post": {
            "summary": "May this agent make this tool call now? (recorded either way; docs/RULES.md)", "operationId": "decide",
            "requestBody": body(true, &decide_req),
            "responses": with(std_err(&body_err), ok("200", "The decision, once the attempted call is durably recorded (or sequenced, with decide_answer = sequenced)", &decision))}},
        "/v1/agents": {"get": {
            "summary": "Agents known to the detector, paused and throttled first", "operationId": "listAgents",
            "parameters": [tenant],
            "responses": with(std_err(&[]), ok("200", "Agents", &agent_list))}},
        "/v1/agents/{agent_id}/pause": {"post": {
            "summary": "Pause an agent until it is resumed (admin; recorded as agent_paused)", "operationId": "pauseAgent",
            "parameters": [param("agent_id", "path", true, "", None)],
            "requestBody": body(false, &agent_action),
            "responses": with(std_err(&body_err), ok("200", "The agent's state", &agent_change))}},
        "/v1/agents/{agent_id}/resume": {"post": {
            "summary": "Resume a paused or throttled agent (admin; recorded as agent_resumed); alert_id names the alert it answers (required when a rule paused or throttled the agent)", "operationId": "resumeAgent",
            "parameters": [param("agent_id", "path", true, "", None)],
            "requestBody": body(false, &agent_action),
            "responses": with(std_err(&["404", "408", "413"]), ok("200", "The agent's state", &agent_change))}},
        "/v1/alerts": {"get": {
            "summary": "Alerts (anomaly_detected entries) with their triage state, oldest first, a page at a time", "operationId": "listAlerts",
            "parameters": [tenant, param("state", "query", false, "", Some(json!({"type": "string", "enum": ["open", "acknowledged", "resolved"]}))),
                param("rule", "query", false, "", None), param("agent_id", "query", false, "", None),
                param("since", "query", false, "Fired at or after: RFC 3339 time or YYYY-MM-DD", None),
                param("until", "query", false, "Fired at or before: RFC 3339 time or YYYY-MM-DD", None),
                param("limit", "query", false, "Page size (default 100)", Some(json!({"type": "integer", "minimum": 1, "maximum": 1000}))),
                param("cursor", "query", false, "next_cursor of the previous page", None)],
            "responses": with(std_err(&[]), ok("200", "A page of alerts", &alert_list))}},
        "/v1/alerts/{alert_id}/ack": {"post": {
            "summary": "Acknowledge an open alert (admin; recorded as alert_acknowledged naming the token)", "operationId": "acknowledgeAlert",
            "parameters": [param("alert_id", "path", true, "The entry_id of the anomaly_detected entry", None)],
            "requestBody": body(false, &triage),
            "responses": with(std_err(&["404", "408", "409", "413"]), ok("200", "The alert after the step, and the entry recording it", &triaged))}},
        "/v1/alerts/{alert_id}/resolve": {"post": {
            "summary": "Resolve an open or acknowledged alert (admin; recorded as alert_resolved naming the token); final", "operationId": "resolveAlert",
            "parameters": [param("alert_id", "path", true, "The entry_id of the anomaly_detected entry", None)],
            "requestBody": body(true, &json!({"allOf": [triage, {"required": ["resolution"]}]})),
            "responses": with(std_err(&["404", "408", "409", "413"]), ok("200", "The alert after the step, and the entry recording it", &triaged))}},
        "/v1/erasures": {"post": {
            "summary": "Erase a data subject's personal data (admin; GDPR Art. 17): sidecars deleted and a signed erasure marker appended per chain, in one commit (docs/FORMAT.md §5)", "operationId": "erase",
            "requestBody": body(true, &erasure),
            "responses": with(std_err(&body_err), ok("200", "What was erased (never the subject id)", &ref_("ErasureOutcome")))}},
        "/v1/retention/run": {"post": {
            "summary": "Run retention now (admin): archive entries older than each tenant's hot window into verified archive segments and expire segments past the archive retention; each step is recorded in the chain (docs/FORMAT.md §18)", "operationId": "runRetention",
            "requestBody": body(false, &json!({"type": "object", "additionalProperties": false, "description": "Optional; no members"})),
            "responses": with(std_err(&body_err), ok("200", "What the run did", &ref_("RetentionRun")))}},
        "/v1/exports": {"get": {
            "summary": "A compliance export made by the service (SOC 2 CC7.2, ISO 27001 A.8.15, GDPR Art. 30, EU AI Act Art. 12): the files and the signed manifest", "operationId": "export",
            "parameters": [param("standard", "query", true, "", Some(json!({"type": "string", "enum": ["soc2", "iso27001", "gdpr", "eu-ai-act"]}))),
                param("control", "query", false, "CC7.2 or A.8.15", None), param("article", "query", false, "art30 (gdpr) or art12 (eu-ai-act)", None),
                param("output", "query", true, "File name; its extension (.pdf, .json, .csv) picks the format", None),
                param("period", "query", false, "START/END dates, both included (default: the whole log)", None), tenant,
                param("include_data_subjects", "query", false, "", Some(json!({"type": "boolean"}))),
                param("sample_size", "query", false, "", Some(json!({"type": "integer", "minimum": 0}))),
                param("seed", "query", false, "", None),
                param("bundle", "query", false, "An evidence bundle (docs/FORMAT.md §16): the report, the log, proofs and parameters, after a checkpoint signed now; admin tokens only", Some(json!({"type": "boolean"}))),
                param("archive", "query", false, "tar: the files and the manifest as one tar archive instead of JSON", Some(json!({"type": "string", "enum": ["tar"]})))],
            "responses": with(std_err(&[]), json!({"200": {"description": "Files (base64) and the signed manifest (docs/FORMAT.md §16); with archive=tar, a tar archive of them under one directory",
                "content": {"application/json": {"schema": export}, "application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}))}},
        "/tlog/{tenant}/checkpoint": {"get": {
            "summary": "The chain's newest signed checkpoint with its witnesses' cosignatures (C2SP tlog-tiles; docs/WITNESS.md). A read token of the tenant, or none with [witnessing] public_tiles", "operationId": "tlogCheckpoint",
            "parameters": [param("tenant", "path", true, "Tenant id (the checkpoint origin's last segment)", None)],
            "responses": with(std_err(&["404"]), json!({"200": {"description": "A C2SP signed note (docs/FORMAT.md §7)", "content": {"text/plain": {"schema": {"type": "string"}}}}}))}},
        "/tlog/{tenant}/tile/{path}": {"get": {
            "summary": "A C2SP tlog-tiles tile: <L>/<N>[.p/<W>] (Merkle tree hashes) or entries/<N>[.p/<W>] (bundles of uint16-length-prefixed 32-byte entry hashes), up to the newest checkpoint", "operationId": "tlogTile",
            "parameters": [param("tenant", "path", true, "Tenant id", None),
                param("path", "path", true, "The rest of the tile path, e.g. 0/x001/234.p/17 or entries/000", None)],
            "responses": with(std_err(&["404"]), json!({"200": {"description": "The tile's bytes (immutable)", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}))}},
        "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "security": [],
            "responses": {"200": {"description": "Up", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/readyz": {"get": {"summary": "Readiness (the store commits)", "operationId": "readyz", "security": [],
            "responses": {"200": {"description": "Ready", "content": {"text/plain": {"schema": {"type": "string"}}}}, "503": err}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (admin token)", "operationId": "metrics",
            "responses": {"200": {"description": "OpenMetrics text", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}, "401": err, "403": err, "429": err, "503": err}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    });
    sorted(json!({
        "openapi": "3.1.0",
        "info": {"title": "Blackbox audit service", "version": "1.0.0",
            "description": "Tamper-evident audit log for AI agents. Agents write events; auditors read entries, verification reports, signed checkpoints and proofs. See docs/API.md and docs/FORMAT.md. Every JSON request body is read with the same rules (docs/FORMAT.md §3, 'Reading JSON input'): UTF-8, one value, nesting at most 100 levels, and no object giving the same key twice at any depth (400 invalid_json naming the key and its JSON path). This document is generated from the types of crates/api (`cargo run -p blackbox-api --example openapi`)."},
        "servers": [{"url": "http://127.0.0.1:7700"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "bbx_<id>_<secret>, from `blackbox tokens create`"}},
            "responses": {"Error": {"description": "An error", "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "With 429 and 503: seconds to wait before retrying"}},
                "content": {"application/json": {"schema": {"$ref": format!("#{SCHEMAS}/Error")}}}}},
            "schemas": schemas,
        }
    }))
}

/// Members in key order at every depth, whether or not serde_json keeps insertion order (a
/// feature another crate of the build may turn on): the text is the same in every build.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut members: Vec<(String, Value)> = o.into_iter().collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(members.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The document as docs/openapi.json holds it (2-space indents, a final newline).
#[must_use]
pub fn text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}

fn param(
    name: &str,
    place: &str,
    required: bool,
    description: &str,
    schema: Option<Value>,
) -> Value {
    json!({"name": name, "in": place, "required": required, "description": description,
           "schema": schema.unwrap_or_else(|| json!({"type": "string"}))})
}

/// Schemas of documents this crate carries as [`Value`] (their types live in core, ledger and
/// archive, which the API types do not depend on).
fn hand_written() -> Vec<(&'static str, Value)> {
    let mark = json!({"type": ["object", "null"], "properties": {"by": {"type": "string"}, "at": {"type": "string"}, "entry_id": {"type": "string"}, "seq": {"type": "integer"}, "ticket": {"type": ["string", "null"]}, "note_sha256": {"type": ["string", "null"]}}});
    let segment = json!({"type": "object", "properties": {"tenant_id": {"type": "string"}, "first_seq": {"type": "integer"}, "last_seq": {"type": "integer"}, "object": {"type": "string"}, "bytes": {"type": "integer"}}});
    vec![
        ("ArchiveSegment", segment),
        (
            "Event",
            json!({"type": "object", "required": ["agent_id", "session_id", "event_type"], "additionalProperties": true,
            "description": "docs/FORMAT.md §3. Raw content in prompt, completion, messages, query, content, result_data, args_raw is hashed before storage.",
            "properties": {"agent_id": {"type": "string"}, "session_id": {"type": "string"}, "event_type": {"type": "string"}, "tenant_id": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"}, "client_seq": {"type": "integer", "minimum": 0}, "payload": {"type": "object"},
                "data_subjects": {"type": "array"}}}),
        ),
        (
            "VerifyReport",
            json!({"type": "object", "properties": {"status": {"type": "string", "enum": ["ok", "tampered", "not_witnessed"]}, "summary": {"type": "string"}, "entries": {"type": "integer"}, "chains": {"type": "array", "items": {"type": "object"}}, "findings": {"type": "array", "items": {"type": "object"}}, "findings_total": {"type": "integer"}}}),
        ),
        ("TriageMark", mark),
        (
            "Alert",
            json!({"type": "object", "properties": {"alert_id": {"type": "string"}, "tenant_id": {"type": "string"}, "seq": {"type": "integer"}, "fired_at": {"type": "string"}, "agent_id": {"type": "string"}, "session_id": {"type": "string"}, "rule": {"type": "string"}, "severity": {"type": "string"}, "action": {"type": "string"}, "enforcement": {"type": "string"}, "state": {"type": "string", "enum": ["open", "acknowledged", "resolved"]}, "resolution": {"type": ["string", "null"]}, "acknowledged": {"$ref": "#/components/schemas/TriageMark"}, "resolved": {"$ref": "#/components/schemas/TriageMark"}}}),
        ),
        (
            "ErasureOutcome",
            json!({"type": "object", "properties": {
            "dry_run": {"type": "boolean"}, "found": {"type": "boolean"}, "redacted": {"type": "integer"}, "markers": {"type": "integer"},
            "chains": {"type": "array", "items": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "redacted": {"type": "integer"}, "already_erased": {"type": "integer"}, "not_in_store": {"type": "integer"},
                "markers": {"type": "array", "items": {"type": "object", "properties": {"seq": {"type": "integer"}, "entry_id": {"type": "string", "format": "uuid"}}}}}}},
            "entries": {"type": "array", "items": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "seq": {"type": "integer"}, "entry_id": {"type": "string", "format": "uuid"}, "fate": {"type": "string", "enum": ["redacted", "already_erased", "not_in_store"]}}}},
            "purge": {"type": "object", "properties": {"complete": {"type": "boolean"}, "message": {"type": "string"}}},
            "mirror_files": {"oneOf": [
                {"type": "array", "items": {"type": "object", "properties": {"file": {"type": "string"}, "personal_records_removed": {"type": "integer"}}}},
                {"type": "object", "properties": {"error": {"type": "string"}}}]},
            "archive_segments_rewritten": {"description": "Present when archived entries named the subject: the segments rewritten, or {\"error\"}"}}}),
        ),
        (
            "RetentionRun",
            json!({"type": "object", "properties": {"report": {"type": "object", "properties": {
            "archived": {"type": "array", "items": {"$ref": "#/components/schemas/ArchiveSegment"}}, "deleted": {"type": "array", "items": {"$ref": "#/components/schemas/ArchiveSegment"}},
            "reclaimed_bytes": {"type": "integer"}, "dry_run": {"type": "boolean"}}}}}),
        ),
    ]
}

/// Schemas of [`Value`] members that stand for a document described by hand.
pub(crate) mod refs {
    use schemars::{Schema, SchemaGenerator, json_schema};

    /// An alert, or `null`.
    pub(crate) fn alert_or_null(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"anyOf": [{"$ref": "#/components/schemas/Alert"}, {"type": "null"}]})
    }

    /// Alerts.
    pub(crate) fn alerts(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "array", "items": {"$ref": "#/components/schemas/Alert"}})
    }

    /// An entry as written (docs/FORMAT.md §2).
    pub(crate) fn entry(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "object", "description": "The entry, parsed (docs/FORMAT.md §2)"})
    }

    /// Entries as written.
    pub(crate) fn entries(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "array", "items": {"type": "object"}})
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    /// docs/openapi.json is this module's output: regenerate it with
    /// `cargo run -p blackbox-api --example openapi > docs/openapi.json`.
    #[test]
    fn docs_openapi_json_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let on_disk = std::fs::read_to_string(path).unwrap();
        assert!(
            on_disk == super::text(),
            "docs/openapi.json is out of date: run `cargo run -p blackbox-api --example openapi > docs/openapi.json`"
        );
    }
}
