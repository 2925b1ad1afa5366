//! `GET /v1/witnesses`: the witnesses of `[witnessing]`, the quorum, and where each stands.

use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use blackbox_api::witnesses::{WitnessStatus, WitnessesAnswer};

use super::auth::{Caller, Read};
use super::input::{TenantParam, params};
use crate::AppState;
use crate::error::ApiError;

fn at(ms: Option<i64>) -> Option<String> {
    ms.and_then(|m| blackbox_core::entry::format_timestamp(m).ok())
}

/// `GET /v1/witnesses`. A tenant's token sees its own chain's figures only.
pub(super) async fn witnesses(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: TenantParam = params(&uri)?;
    let only = caller.tenant(p.tenant_id.as_deref())?;
    let keep = |t: &String| only.as_deref().is_none_or(|o| o == t);
    let witnesses = state
        .witnessing
        .status()
        .into_iter()
        .map(|s| WitnessStatus {
            name: s.name,
            url: s.url,
            key: s.key,
            cosigned: s.cosigned.into_iter().filter(|(t, _)| keep(t)).collect(),
            last_cosigned_at: at(s.last_cosigned_ms),
            last_error: s.last_error,
            last_error_at: at(s.last_error_ms),
            suspended: s.suspended.into_iter().filter(|(t, _)| keep(t)).collect(),
        })
        .collect();
    let quorum = if state.witnessing.enabled() {
        state.witnessing.config.quorum as u64
    } else {
        0
    };
    Ok(axum::Json(WitnessesAnswer { quorum, witnesses }).into_response())
}
