//! Agents the detector knows: `GET /v1/agents`, `POST /v1/agents/{agent_id}/pause` and
//! `/resume` (admin; recorded in the chain as operator actions).

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use blackbox_api::agents::{Agent, AgentAction, AgentChange, AgentList};
use blackbox_core::ids::{AgentId, TenantId};
use serde::Deserialize;

use super::auth::{Admin, Caller, Read};
use super::input::{PathParam, bad_param as bad, json_body, optional_params, read_body};
use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{Control, ControlReply};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AgentsParams {
    tenant_id: Option<String>,
}

/// `GET /v1/agents`: agents the detector knows, paused and throttled first.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: AgentsParams = optional_params(uri.query())?;
    let tenant = caller.tenant(p.tenant_id.as_deref())?;
    let ControlReply::Agents(list) = state.ingest.control(Control::List(tenant)).await? else {
        return Err(ApiError::unavailable(
            "unexpected answer from the writer",
            1,
        ));
    };
    let agents = list
        .into_iter()
        .map(|a| {
            let time =
                |ms: Option<i64>| ms.and_then(|m| blackbox_core::entry::format_timestamp(m).ok());
            Agent {
                first_seen: time(a.first_seen_ms),
                last_seen: time(a.last_seen_ms),
                mcp_last_seen: time(a.mcp_last_seen_ms),
                paused_since: time(a.paused.as_ref().map(|p| p.since_ms)),
                paused_by: a.paused.as_ref().map(|p| p.by.clone()),
                throttled_until: time(a.throttle.as_ref().map(|t| t.until_ms)),
                throttle_per_minute: a.throttle.as_ref().map(|t| t.per_minute),
                throttled_by: a.throttle.as_ref().map(|t| t.by.clone()),
                tenant_id: a.tenant_id,
                agent_id: a.agent_id,
                state: a.state.to_owned(),
                events: a.events,
            }
        })
        .collect();
    Ok(axum::Json(AgentList { agents }).into_response())
}

async fn agent_action(
    state: AppState,
    agent: String,
    caller: Caller<Admin>,
    body: Body,
    pause: bool,
) -> Result<Response, ApiError> {
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
        super::alerts::check_alert_of(&state, id, tenant.as_str(), &agent).await?;
    }
    let by = caller.operator();
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
        ControlReply::Agents(_) | ControlReply::Signed(_) => {
            return Err(ApiError::unavailable(
                "unexpected answer from the writer",
                1,
            ));
        }
    };
    let state_name = if pause { "paused" } else { "active" };
    Ok((
        StatusCode::OK,
        axum::Json(AgentChange {
            tenant_id: tenant.as_str().to_owned(),
            agent_id: agent,
            state: state_name.to_owned(),
            changed: entry.is_some(),
            entry_id: entry.as_ref().map(|e| e.entry_id.to_string()),
            seq: entry.as_ref().map(|e| e.seq),
        }),
    )
        .into_response())
}

/// `POST /v1/agents/{agent_id}/pause`.
pub(super) async fn pause(
    State(state): State<AppState>,
    PathParam(agent): PathParam,
    caller: Caller<Admin>,
    body: Body,
) -> Result<Response, ApiError> {
    agent_action(state, agent, caller, body, true).await
}

/// `POST /v1/agents/{agent_id}/resume`.
pub(super) async fn resume(
    State(state): State<AppState>,
    PathParam(agent): PathParam,
    caller: Caller<Admin>,
    body: Body,
) -> Result<Response, ApiError> {
    agent_action(state, agent, caller, body, false).await
}
