//! API tokens (admin): `POST /v1/tokens`, `GET /v1/tokens`, `DELETE /v1/tokens/{id}`.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use blackbox_core::ids::TenantId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Admin, Caller};
use super::input::{PathParam, json_body, read_body};
use crate::AppState;
use crate::error::ApiError;
use crate::tokens::Scopes;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    tenant_id: Option<String>,
    scopes: Vec<String>,
    #[serde(default)]
    label: String,
}

/// `POST /v1/tokens`.
pub(super) async fn create(
    State(state): State<AppState>,
    _caller: Caller<Admin>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, 64 << 10).await?;
    let t: NewToken = json_body(&body, r#"{"tenant_id", "scopes": [...], "label"}"#)?;
    let scopes = Scopes::parse(&t.scopes.join(","))
        .map_err(|e| ApiError::bad_request("invalid_parameter", e))?;
    let tenant = t
        .tenant_id
        .as_deref()
        .map(TenantId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()))?;
    let (info, token) = state
        .tokens
        .create(tenant.as_ref(), scopes, &t.label)
        .map_err(|e| match e {
            crate::ServerError::Config(m) => ApiError::bad_request("invalid_parameter", m),
            other => other.into(),
        })?;
    let mut v = serde_json::to_value(&info).unwrap_or(Value::Null);
    v["token"] = token.into();
    v["scopes"] = json!(info.scopes.names());
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

/// `GET /v1/tokens`.
pub(super) async fn list(
    State(state): State<AppState>,
    _caller: Caller<Admin>,
) -> Result<Response, ApiError> {
    let list: Vec<Value> = state
        .tokens
        .list()?
        .into_iter()
        .map(|t| {
            let mut v = serde_json::to_value(&t).unwrap_or(Value::Null);
            v["scopes"] = json!(t.scopes.names());
            v
        })
        .collect();
    Ok(axum::Json(json!({ "tokens": list })).into_response())
}

/// `DELETE /v1/tokens/{id}`.
pub(super) async fn revoke(
    State(state): State<AppState>,
    PathParam(id): PathParam,
    _caller: Caller<Admin>,
) -> Result<Response, ApiError> {
    if state.tokens.revoke(&id)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no active token {id}")))
    }
}
