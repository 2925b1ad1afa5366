//! `POST /v1/decide`: the enforcement point (may this agent make this tool call now?).

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use blackbox_api::decide::{DecideRequest, Decision, DecisionRule};
use blackbox_core::event::Node;
use blackbox_core::ids::{AgentId, SessionId, TenantId};
use blackbox_detect::Features;
use serde_json::{Map, Value};

use super::auth::{Caller, Ingest};
use super::input::{bad_param as bad, json_body, read_body};
use super::shares::body_share;
use crate::AppState;
use crate::error::ApiError;
use crate::ingest;

/// `POST /v1/decide`.
pub(super) async fn decide(
    State(state): State<AppState>,
    caller: Caller<Ingest>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(tenant) = caller.token.tenant_id.clone() else {
        return Err(caller.forbidden(
            "an admin token without a tenant cannot ask for decisions; use an ingest token of the tenant",
        ));
    };
    let _share = body_share(&state, &caller, &tenant, &headers)?;
    let body = read_body(body, state.config.body_limit).await?;
    let b: DecideRequest = json_body(
        &body,
        r#"{"agent_id", "session_id", "tool_name", "args", "agent_role"?, "invocation_id"?, "client_seq"?, "prompt"?, "mcp"?}"#,
    )?;
    drop(body);
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let v = decide_for(&state, &caller.token, b, traceparent).await?;
    Ok(axum::Json(v).into_response())
}

/// Decides a tool call for the holder of `token` (an ingest token of one tenant) as
/// `POST /v1/decide` does once it has authenticated the request and read its body: the same
/// checks, scan, entry and answer. The MCP gateway that runs the service in its own process
/// (`blackbox mcp … --data-dir`) asks here directly, without a loopback HTTP round trip.
/// `traceparent` is the W3C trace context the decision's guardrail span (if exported) joins.
///
/// # Errors
/// What `POST /v1/decide` answers with an error: a token without a tenant (403), an invalid
/// field (400), a writer that cannot take the call now (503).
pub async fn decide_for(
    state: &AppState,
    token: &crate::tokens::TokenInfo,
    b: DecideRequest,
    traceparent: Option<&str>,
) -> Result<Decision, ApiError> {
    let started = Instant::now();
    let Some(tenant) = token.tenant_id.clone() else {
        return Err(ApiError::forbidden(
            "an admin token without a tenant cannot ask for decisions; use an ingest token of the tenant",
        ));
    };
    AgentId::parse(&b.agent_id).map_err(|e| bad("agent_id", e))?;
    SessionId::parse(&b.session_id).map_err(|e| bad("session_id", e))?;
    if b.tool_name.is_empty() || b.tool_name.len() > 256 {
        return Err(bad("tool_name", "must be 1 to 256 characters"));
    }
    if b.client_seq
        .is_some_and(|c| c > blackbox_core::ids::MAX_SAFE_INTEGER)
    {
        return Err(bad("client_seq", "must be at most 2^53-1"));
    }
    let tenant_id = TenantId::parse(&tenant)
        .map_err(|e| ApiError::forbidden(format!("the token's tenant is invalid: {e}")))?;
    if let Some(field) = b.mcp.as_ref().and_then(|m| m.too_long()) {
        return Err(bad(
            &format!("mcp.{field}"),
            "must be at most 256 characters",
        ));
    }
    let origin = token
        .origin(if b.mcp.is_some() { "mcp" } else { "decide" })
        .map_err(|e| ApiError::forbidden(format!("the token cannot be named in entries: {e}")))?;
    // Raw arguments (and prompt) are scanned here, in memory; only their hashes are recorded.
    let rules = state.rules.get();
    let mut scan = Map::new();
    scan.insert("args".into(), b.args.clone());
    if let Some(p) = &b.prompt {
        scan.insert("prompt".into(), p.clone());
    }
    // The optional classifier reads the arguments and prompt, normalised and joined.
    let classifier = match &rules.classifier {
        Some(spec) => {
            let values: Vec<&Value> = scan.values().collect();
            let text = crate::classifier::text_of(&values, spec.max_chars);
            let asked = std::time::Instant::now();
            let verdict = crate::classifier::ask(spec, &text, &b.tool_name, &b.agent_id).await;
            let m = &state.metrics;
            m.classifier_seconds.observe(asked.elapsed().as_secs_f64());
            let outcome = if verdict.record.get("error").is_some() {
                "error"
            } else {
                "ok"
            };
            m.classifier_requests
                .get_or_create(&crate::metrics::ClassifierLabel {
                    outcome: outcome.to_owned(),
                })
                .inc();
            Some(verdict)
        }
        None => None,
    };
    // The rules again: a reload while the classifier was asked must not leave the hits indexed
    // by the old set (the writer evaluates them against the rules in force).
    let rules = state.rules.get();
    if let Some(r) = &b.agent_role {
        scan.insert("agent_role".into(), Value::String(r.clone()));
    }
    // The tool's name picks the rules' argument exemptions (it is not scanned).
    scan.insert("tool_name".into(), Value::String(b.tool_name.clone()));
    let scan = Value::Object(scan);
    let mut features = match Node::from_value(&scan) {
        Node::Obj(o) => Features::extract("tool_call", &o, &rules.patterns),
        _ => Features::default(),
    };
    drop(scan);
    features.classifier_score = classifier.as_ref().and_then(|c| c.score);
    let hash = |v: &Value, field: &str| {
        blackbox_core::entry::content_hash(v)
            .map(|h| h.to_prefixed())
            .map_err(|e| bad(field, e))
    };
    let args_hash = hash(&b.args, "args")?;
    let guardrail = state.otlp.guardrails.as_ref().map(|_| {
        (
            b.agent_id.clone(),
            b.session_id.clone(),
            b.tool_name.clone(),
            b.invocation_id.clone(),
            args_hash.clone(),
        )
    });
    let mut payload = Map::new();
    payload.insert("tool_name".into(), b.tool_name.into());
    payload.insert("args_hash".into(), args_hash.into());
    if let Some(p) = &b.prompt {
        payload.insert("prompt_hash".into(), hash(p, "prompt")?.into());
    }
    if let Some(r) = b.agent_role {
        payload.insert("agent_role".into(), r.into());
    }
    if let Some(i) = b.invocation_id {
        payload.insert("invocation_id".into(), i.into());
    }
    if let Some(m) = &b.mcp {
        payload.insert(
            "mcp".into(),
            serde_json::to_value(m).map_err(|e| bad("mcp", e.to_string()))?,
        );
    }
    let d = state
        .ingest
        .decide(ingest::DecideRequest {
            tenant: tenant_id,
            agent_id: b.agent_id,
            session_id: b.session_id,
            payload,
            client_seq: b.client_seq,
            features,
            origin,
            classifier: classifier.map(|c| c.record),
        })
        .await?;
    state
        .metrics
        .decide_seconds
        .observe(started.elapsed().as_secs_f64());
    if let (Some(exporter), Some((agent, session, tool, invocation_id, args_hash))) =
        (&state.otlp.guardrails, guardrail)
    {
        let action = match d.decision {
            "block" => Some("block"),
            "paused" => Some("pause"),
            "throttle" => Some("throttle"),
            _ => None,
        };
        if let Some(action) = action {
            let rules: Vec<(String, String)> = d
                .rules
                .iter()
                .map(|r| (r.name.clone(), r.severity.to_owned()))
                .collect();
            let reason = if rules.is_empty() {
                format!("{} by blackbox", d.decision)
            } else {
                format!(
                    "{} by blackbox: {}",
                    d.decision,
                    rules
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            exporter.send(crate::otlp::guardrails::GuardrailSpan {
                action,
                tenant: tenant.clone(),
                agent,
                session,
                tool,
                invocation_id,
                entry_id: d.entry.entry_id.to_string(),
                rules,
                reason,
                args_hash: Some(args_hash),
                parent: traceparent.and_then(blackbox_otel::guardrail::TraceParent::parse),
                time_ns: u64::try_from(crate::now_ms())
                    .unwrap_or_default()
                    .saturating_mul(1_000_000),
            });
        }
    }
    let v = Decision {
        decision: d.decision.to_owned(),
        retry_after_ms: d.retry_after_ms,
        rules: d
            .rules
            .iter()
            .map(|r| DecisionRule {
                name: r.name.clone(),
                action: r.action.to_owned(),
                severity: r.severity.to_owned(),
            })
            .collect(),
        entry_id: d.entry.entry_id.to_string(),
        seq: d.entry.seq,
        entry_hash: d.entry.entry_hash.to_prefixed(),
        durable: d.durable,
    };
    Ok(v)
}
