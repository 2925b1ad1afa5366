//! Routes of anomaly detection: the enforcement point (`POST /v1/decide`), agents (list, pause,
//! resume) and webhook deliveries.

use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use blackbox_core::event::Node;
use blackbox_core::ids::{AgentId, SessionId, TenantId};
use blackbox_detect::Features;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::api::{
    authorize_parts, deny_forbidden, json_body, need_admin, need_ingest, need_read, path_param,
    read_body,
};
use crate::error::ApiError;
use crate::ingest::{Control, ControlReply, DecideRequest};

/// Body of `POST /v1/decide`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    agent_id: String,
    session_id: String,
    tool_name: String,
    #[serde(default)]
    args: Value,
    agent_role: Option<String>,
    invocation_id: Option<String>,
    client_seq: Option<u64>,
    /// The prompt that led to the call, when the runtime has it: scanned, stored only as a hash.
    prompt: Option<Value>,
}

fn bad(field: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_parameter", format!("{field}: {e}"))
}

/// `POST /v1/decide`: may this agent make this tool call now?
pub async fn decide(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let caller = authorize_parts(
        &state,
        &parts,
        "/v1/decide",
        need_ingest,
        "asking for decisions",
    )?;
    let Some(tenant) = caller.token.tenant_id.clone() else {
        return Err(deny_forbidden(
            &state,
            &caller,
            "an admin token without a tenant cannot ask for decisions; use an ingest token of the tenant",
        ));
    };
    let _share = crate::api::body_share(&state, &caller, &tenant, &parts.headers)?;
    let body = read_body(body, state.config.body_limit).await?;
    let b: DecideBody = json_body(
        &body,
        r#"{"agent_id", "session_id", "tool_name", "args", "agent_role"?, "invocation_id"?, "client_seq"?, "prompt"?}"#,
    )?;
    drop(body);
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
    let origin = caller
        .token
        .origin("decide")
        .map_err(|e| ApiError::forbidden(format!("the token cannot be named in entries: {e}")))?;
    // Raw arguments (and prompt) are scanned here, in memory; only their hashes are recorded.
    let rules = state.rules.get();
    let mut scan = Map::new();
    scan.insert("args".into(), b.args.clone());
    if let Some(p) = &b.prompt {
        scan.insert("prompt".into(), p.clone());
    }
    if let Some(r) = &b.agent_role {
        scan.insert("agent_role".into(), Value::String(r.clone()));
    }
    let scan = Value::Object(scan);
    let features = match Node::from_value(&scan) {
        Node::Obj(o) => Features::extract("tool_call", &o, &rules.patterns),
        _ => Features::default(),
    };
    drop(scan);
    let hash = |v: &Value, field: &str| {
        blackbox_core::entry::content_hash(v)
            .map(|h| h.to_prefixed())
            .map_err(|e| bad(field, e))
    };
    let mut payload = Map::new();
    payload.insert("tool_name".into(), b.tool_name.into());
    payload.insert("args_hash".into(), hash(&b.args, "args")?.into());
    if let Some(p) = &b.prompt {
        payload.insert("prompt_hash".into(), hash(p, "prompt")?.into());
    }
    if let Some(r) = b.agent_role {
        payload.insert("agent_role".into(), r.into());
    }
    if let Some(i) = b.invocation_id {
        payload.insert("invocation_id".into(), i.into());
    }
    let d = state
        .ingest
        .decide(DecideRequest {
            tenant: tenant_id,
            agent_id: b.agent_id,
            session_id: b.session_id,
            payload,
            client_seq: b.client_seq,
            features,
            origin,
        })
        .await?;
    state
        .metrics
        .decide_seconds
        .observe(started.elapsed().as_secs_f64());
    let v = json!({
        "decision": d.decision,
        "retry_after_ms": d.retry_after_ms,
        "rules": d.rules,
        "entry_id": d.entry.entry_id.to_string(),
        "seq": d.entry.seq,
        "entry_hash": d.entry.entry_hash.to_prefixed(),
        "durable": d.durable,
    });
    Ok(axum::Json(v).into_response())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AgentsParams {
    tenant_id: Option<String>,
}

/// `GET /v1/agents`: agents the detector knows, paused and throttled first.
pub async fn list_agents(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let caller = authorize_parts(&state, &parts, "/v1/agents", need_read, "listing agents")?;
    let p: AgentsParams = serde_urlencoded_query(parts.uri.query())?;
    let tenant = caller.tenant(p.tenant_id.as_deref())?;
    let ControlReply::Agents(list) = state.ingest.control(Control::List(tenant)).await? else {
        return Err(ApiError::unavailable(
            "unexpected answer from the writer",
            1,
        ));
    };
    let list: Vec<Value> = list
        .into_iter()
        .map(|a| {
            let time =
                |ms: Option<i64>| ms.and_then(|m| blackbox_core::entry::format_timestamp(m).ok());
            json!({
                "tenant_id": a.tenant_id,
                "agent_id": a.agent_id,
                "state": a.state,
                "first_seen": time(a.first_seen_ms),
                "last_seen": time(a.last_seen_ms),
                "events": a.events,
                "paused_since": time(a.paused.as_ref().map(|p| p.since_ms)),
                "paused_by": a.paused.as_ref().map(|p| p.by.clone()),
                "throttled_until": time(a.throttle.as_ref().map(|t| t.until_ms)),
                "throttle_per_minute": a.throttle.as_ref().map(|t| t.per_minute),
                "throttled_by": a.throttle.as_ref().map(|t| t.by.clone()),
            })
        })
        .collect();
    Ok(axum::Json(json!({ "agents": list })).into_response())
}

fn serde_urlencoded_query<T: serde::de::DeserializeOwned + Default>(
    q: Option<&str>,
) -> Result<T, ApiError> {
    match q {
        None | Some("") => Ok(T::default()),
        Some(q) => {
            axum::extract::Query::<T>::try_from_uri(&format!("/?{q}").parse().map_err(|_| {
                ApiError::bad_request("invalid_parameter", "malformed query string")
            })?)
            .map(|axum::extract::Query(v)| v)
            .map_err(|e| ApiError::bad_request("invalid_parameter", e.body_text()))
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AgentAction {
    tenant_id: Option<String>,
    reason: Option<String>,
    /// Resume only: the alert the resume answers (required when a rule paused the agent).
    alert_id: Option<String>,
}

async fn agent_action(
    state: AppState,
    agent: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
    pause: bool,
) -> Result<Response, ApiError> {
    let agent = path_param(agent)?;
    let (parts, body) = req.into_parts();
    let route = if pause {
        "/v1/agents/{agent_id}/pause"
    } else {
        "/v1/agents/{agent_id}/resume"
    };
    let caller = authorize_parts(
        &state,
        &parts,
        route,
        need_admin,
        "pausing or resuming agents",
    )?;
    let body = read_body(body, 64 << 10).await?;
    let a: AgentAction = if body.iter().all(u8::is_ascii_whitespace) {
        AgentAction::default()
    } else {
        json_body(&body, r#"{"tenant_id"?, "reason"?, "alert_id"? (resume)}"#)?
    };
    AgentId::parse(&agent).map_err(|e| bad("agent_id", e))?;
    let tenant = caller.tenant(a.tenant_id.as_deref())?.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_parameter",
            "this token has no tenant: give {\"tenant_id\": …} in the body",
        )
    })?;
    let tenant = TenantId::parse(&tenant).map_err(|e| bad("tenant_id", e))?;
    let reason = a.reason.unwrap_or_default();
    if reason.len() > 1024 {
        return Err(bad("reason", "must be at most 1024 bytes"));
    }
    if let Some(id) = a.alert_id.as_deref() {
        if pause {
            return Err(bad(
                "alert_id",
                "is given when resuming (it names the alert the resume answers), not when pausing",
            ));
        }
        crate::api_alerts::check_alert_of(&state, id, tenant.as_str(), &agent).await?;
    }
    let by = format!("operator:{}", caller.token.id);
    let c = if pause {
        Control::Pause {
            tenant: tenant.clone(),
            agent: agent.clone(),
            by,
            reason,
        }
    } else {
        Control::Resume {
            tenant: tenant.clone(),
            agent: agent.clone(),
            by,
            reason,
            alert_id: a.alert_id,
        }
    };
    let entry = match state.ingest.control(c).await? {
        ControlReply::Changed(entry) => entry,
        ControlReply::Refused(why) => {
            return Err(ApiError::bad_request("alert_id_required", why));
        }
        ControlReply::Agents(_) => {
            return Err(ApiError::unavailable(
                "unexpected answer from the writer",
                1,
            ));
        }
    };
    let state_name = if pause { "paused" } else { "active" };
    Ok((
        StatusCode::OK,
        axum::Json(json!({
            "tenant_id": tenant.as_str(),
            "agent_id": agent,
            "state": state_name,
            "changed": entry.is_some(),
            "entry_id": entry.as_ref().map(|e| e.entry_id.to_string()),
            "seq": entry.as_ref().map(|e| e.seq),
        })),
    )
        .into_response())
}

/// `POST /v1/agents/{agent_id}/pause`.
pub async fn pause_agent(
    State(state): State<AppState>,
    agent: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    agent_action(state, agent, req, true).await
}

/// `POST /v1/agents/{agent_id}/resume`.
pub async fn resume_agent(
    State(state): State<AppState>,
    agent: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    agent_action(state, agent, req, false).await
}

// ---- compliance exports ---------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ExportParams {
    standard: String,
    control: Option<String>,
    article: Option<String>,
    period: Option<String>,
    tenant_id: Option<String>,
    output: String,
    include_data_subjects: Option<bool>,
    sample_size: Option<usize>,
    seed: Option<String>,
}

/// `GET /v1/exports`: a compliance export made by the service (which holds the signing key):
/// the files and the signed manifest, base64 in JSON.
pub async fn export(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    use base64::Engine as _;
    let (parts, _) = req.into_parts();
    let caller = authorize_parts(
        &state,
        &parts,
        "/v1/exports",
        need_read,
        "exporting evidence",
    )?;
    let p: ExportParams = match parts.uri.query() {
        None | Some("") => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "give standard, control (or article) and output, e.g. ?standard=soc2&control=CC7.2&output=evidence.pdf",
            ));
        }
        Some(q) => serde_urlencoded_query(Some(q))?,
    };
    let tenant = caller.tenant(p.tenant_id.as_deref())?;
    let which = p.control.as_deref().or(p.article.as_deref()).unwrap_or("");
    let bad = |e: blackbox_export::ExportError| match e {
        blackbox_export::ExportError::Usage(m)
        | blackbox_export::ExportError::EmptyPeriod(m)
        | blackbox_export::ExportError::Config(m) => ApiError::bad_request("invalid_parameter", m),
        other => ApiError::unavailable(format!("the export failed: {other}"), 5),
    };
    let control = blackbox_export::report::Control::parse(&p.standard, which).map_err(bad)?;
    let job = blackbox_export::produce::Job {
        control,
        tenant,
        period: p.period,
        output_name: p.output,
        data_subjects: p.include_data_subjects.unwrap_or(false),
        sample_size: p.sample_size.unwrap_or(25),
        seed: p.seed,
    };
    let _permit = crate::api::heavy_read(&state, &caller, "exports").await?;
    let dir = state.dir.clone();
    let produced = tokio::task::spawn_blocking(move || {
        let config = blackbox_export::config::ExportConfig::load(&dir.root().join("export.toml"))?;
        blackbox_export::produce::produce(&dir, &config, &job)
    })
    .await
    .map_err(|_| ApiError::unavailable("the export's worker failed; retry", 1))?
    .map_err(bad)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let f = &produced.figures;
    Ok(axum::Json(json!({
        "files": produced.files.iter().map(|(n, b)| json!({"name": n, "base64": b64.encode(b)})).collect::<Vec<_>>(),
        "manifest": {"name": produced.manifest.0, "text": produced.manifest.1},
        "period": {"start": produced.period.start, "end": produced.period.end},
        "summary": {
            "tenant_id": f.tenant_id,
            "completeness": f.completeness.percent, "present": f.completeness.present, "expected": f.completeness.expected,
            "integrity": f.integrity.summary,
            "anomalies": f.anomalies.total, "resolved": f.anomalies.resolved,
            "oldest_age_days": f.retention.oldest_age_days, "required_days": f.retention.required_days, "retention_met": f.retention.met,
        },
    }))
    .into_response())
}
