//! API tokens (admin): `POST /v1/tokens`, `GET /v1/tokens`, `DELETE /v1/tokens/{id}`.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use blackbox_api::tokens::{CreatedToken, NewToken, Scope, Token, TokenInfo, TokenList};
use blackbox_core::ids::TenantId;

use super::auth::{Admin, Caller};
use super::input::{PathParam, json_body, read_body};
use crate::AppState;
use crate::error::ApiError;
use crate::tokens::Scopes;

/// `POST /v1/tokens`.
pub(super) async fn create(
    State(state): State<AppState>,
    _caller: Caller<Admin>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, 64 << 10).await?;
    let t: NewToken = json_body(&body, r#"{"tenant_id", "scopes": [...], "label"}"#)?;
    let names: Vec<&str> = t.scopes.iter().map(Scope::as_str).collect();
    let scopes = Scopes::parse(&names.join(","))
        .map_err(|e| ApiError::bad_request("invalid_parameter", e))?;
    let tenant = t
        .tenant_id
        .as_deref()
        .map(TenantId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()))?;
    // On one database of a tenant map, a tenant's tokens are that database's.
    if let Some(e) = tenant.as_ref().and_then(|t| state.misdirected(t.as_str())) {
        return Err(e);
    }
    let (info, token) = state
        .tokens
        .create(
            tenant.as_ref(),
            scopes,
            t.label.as_deref().unwrap_or_default(),
        )
        .map_err(|e| match e {
            crate::ServerError::Config(m) => ApiError::bad_request("invalid_parameter", m),
            other => other.into(),
        })?;
    let info = listed(info);
    let created = CreatedToken {
        id: info.id,
        tenant_id: info.tenant_id,
        scopes: info.scopes,
        label: info.label,
        created_ms: info.created_ms,
        revoked_ms: info.revoked_ms,
        token: Token::new(token),
        other: serde_json::Map::new(),
    };
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// `GET /v1/tokens`.
pub(super) async fn list(
    State(state): State<AppState>,
    _caller: Caller<Admin>,
) -> Result<Response, ApiError> {
    let tokens = state.tokens.list()?.into_iter().map(listed).collect();
    Ok(axum::Json(TokenList { tokens }).into_response())
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

/// A token as the API lists it.
fn listed(t: crate::tokens::TokenInfo) -> TokenInfo {
    TokenInfo {
        scopes: t.scopes.names().into_iter().map(Scope::from_name).collect(),
        id: t.id,
        tenant_id: t.tenant_id,
        label: Some(t.label),
        created_ms: Some(t.created_ms),
        revoked_ms: t.revoked_ms,
        other: serde_json::Map::new(),
    }
}
