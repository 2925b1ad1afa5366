//! Alerts and their triage (docs/API.md "Alerts", FORMAT.md §14): `GET /v1/alerts` lists the
//! `anomaly_detected` entries with the state their triage entries give them;
//! `POST /v1/alerts/{alert_id}/ack` and `/resolve` (admin) append `alert_acknowledged` /
//! `alert_resolved` entries through the writer, naming the token as `operator:<token id>`.

use axum::body::Body;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use blackbox_api::alerts::{AlertList, Triage, Triaged};
use blackbox_core::alert::{Action, AlertState, Resolution, TriageRequest};
use blackbox_ledger::alerts::{AlertFilter, TriageRefusal};
use serde::Deserialize;

use super::auth::{Admin, Caller, Read};
use super::input::{
    PathParam, bad_param as bad, decode_cursor, encode_cursor, params, parse_bound, read_body,
};
use super::with_reader;
use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{Control, ControlReply};

/// Alerts of one page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;
/// Most alerts of one page.
const MAX_PAGE: usize = 1000;

/// Query parameters of `GET /v1/alerts`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListParams {
    tenant_id: Option<String>,
    state: Option<String>,
    rule: Option<String>,
    agent_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /v1/alerts`: alerts oldest first, with their state, a page at a time.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: ListParams = params(&uri)?;
    let tenant = caller.tenant(p.tenant_id.as_deref())?;
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(bad("limit", format!("must be between 1 and {MAX_PAGE}")));
    }
    let filter = AlertFilter {
        tenant_id: tenant,
        state: p
            .state
            .as_deref()
            .map(AlertState::parse)
            .transpose()
            .map_err(|e| bad("state", e.problem))?,
        rule: p.rule,
        agent_id: p.agent_id,
        since_ms: p
            .since
            .as_deref()
            .map(|s| parse_bound("since", s, false))
            .transpose()?,
        until_ms: p
            .until
            .as_deref()
            .map(|s| parse_bound("until", s, true))
            .transpose()?,
        limit: Some(limit),
        after: p.cursor.as_deref().map(decode_cursor).transpose()?.map(
            |(ts_ms, seq, tenant_id)| blackbox_store::After {
                ts_ms,
                tenant_id,
                seq,
            },
        ),
    };
    let page = with_reader(&state, move |r| {
        Ok(blackbox_ledger::alerts::list(r, &filter).map_err(crate::ServerError::from)?)
    })
    .await?;
    let next = page
        .next
        .map(|a| encode_cursor(a.ts_ms, &a.tenant_id, a.seq));
    let alerts: Vec<_> = page.alerts.iter().map(|a| a.to_json()).collect();
    Ok(axum::Json(AlertList {
        alerts,
        next_cursor: next,
    })
    .into_response())
}

async fn triage(
    state: AppState,
    alert_id: String,
    caller: Caller<Admin>,
    body: Body,
    resolve: bool,
) -> Result<Response, ApiError> {
    let body = read_body(body, 64 << 10).await?;
    let b: Triage = if body.iter().all(u8::is_ascii_whitespace) {
        Triage::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                "invalid_json",
                if resolve {
                    format!(
                        "expected {{\"resolution\": \"true_positive\" | \"false_positive\" | \"accepted_risk\", \"ticket\"?, \"note\"?}}: {e}"
                    )
                } else {
                    format!("expected {{\"ticket\"?, \"note\"?}}: {e}")
                },
            )
        })?
    };
    let id = uuid::Uuid::parse_str(&alert_id)
        .map_err(|_| bad("alert_id", "is not an entry id (a UUID)"))?;
    let action = if resolve {
        let r = b.resolution.as_deref().ok_or_else(|| {
            bad(
                "resolution",
                "is required: true_positive, false_positive or accepted_risk",
            )
        })?;
        Action::Resolve(Resolution::parse(r).map_err(|e| bad("resolution", e.problem))?)
    } else {
        if b.resolution.is_some() {
            return Err(bad(
                "resolution",
                "is given when resolving (POST /v1/alerts/{alert_id}/resolve), not when acknowledging",
            ));
        }
        Action::Acknowledge
    };
    let by = caller.operator();
    let req = TriageRequest::new(action, &by, b.ticket.as_deref(), b.note.as_deref())
        .map_err(|e| bad(e.field, e.problem))?;
    drop(b);
    // Checked and written under the lock: a second request for the alert sees the first's entry.
    let _guard = state.triage.lock().await;
    let check = req.clone();
    let alert = with_reader(&state, move |r| {
        Ok(blackbox_ledger::alerts::check(r, id, &check, &|_| true)
            .map_err(crate::ServerError::from)?)
    })
    .await?;
    let alert = match alert {
        Ok(a) => a,
        Err(TriageRefusal::UnknownAlert(m)) => return Err(ApiError::not_found(m)),
        Err(TriageRefusal::Conflict(m)) => {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "conflict",
                m,
            ));
        }
    };
    let ControlReply::Changed(Some(entry)) = state
        .ingest
        .control(Control::Triage(Box::new(alert), req))
        .await?
    else {
        return Err(ApiError::unavailable(
            "unexpected answer from the writer",
            1,
        ));
    };
    let after = with_reader(&state, move |r| {
        Ok(blackbox_ledger::alerts::find(r, id, &|_| true).map_err(crate::ServerError::from)?)
    })
    .await?;
    Ok(axum::Json(Triaged {
        alert: after.map(|a| a.to_json()),
        entry_id: entry.entry_id.to_string(),
        seq: entry.seq,
        entry_hash: entry.entry_hash.to_prefixed(),
    })
    .into_response())
}

/// `POST /v1/alerts/{alert_id}/ack`.
pub(super) async fn acknowledge(
    State(state): State<AppState>,
    PathParam(alert_id): PathParam,
    caller: Caller<Admin>,
    body: Body,
) -> Result<Response, ApiError> {
    triage(state, alert_id, caller, body, false).await
}

/// `POST /v1/alerts/{alert_id}/resolve`.
pub(super) async fn resolve(
    State(state): State<AppState>,
    PathParam(alert_id): PathParam,
    caller: Caller<Admin>,
    body: Body,
) -> Result<Response, ApiError> {
    triage(state, alert_id, caller, body, true).await
}

/// Checks that `alert_id` names an alert of `agent` in `tenant`'s chain (a resume answers it).
///
/// # Errors
/// 400 for a malformed id or an alert of another agent, 404 for an unknown alert.
pub(crate) async fn check_alert_of(
    state: &AppState,
    alert_id: &str,
    tenant: &str,
    agent: &str,
) -> Result<(), ApiError> {
    let id = uuid::Uuid::parse_str(alert_id)
        .map_err(|_| bad("alert_id", "is not an entry id (a UUID)"))?;
    let t = tenant.to_owned();
    let found = with_reader(state, move |r| {
        Ok(blackbox_ledger::alerts::find(r, id, &|c| c == t).map_err(crate::ServerError::from)?)
    })
    .await?;
    match found {
        None => Err(ApiError::not_found(format!(
            "alert_id: no alert {alert_id} in tenant `{tenant}`'s chain (`GET /v1/alerts?agent_id={agent}` lists this agent's alerts)"
        ))),
        Some(a) if a.agent_id != agent => Err(bad(
            "alert_id",
            format!(
                "alert {alert_id} is about agent `{}`, not `{agent}`",
                a.agent_id
            ),
        )),
        Some(_) => Ok(()),
    }
}
