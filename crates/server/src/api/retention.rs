//! `POST /v1/retention/run` (admin): run retention now (docs/API.md "Retention").

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Admin, Caller};
use super::input::{json_body, read_body};
use crate::AppState;
use crate::error::ApiError;

/// Body of `POST /v1/retention/run`: optional, and without members.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionRunBody {}

/// `POST /v1/retention/run` (admin): runs retention now, as the schedule does (archive what is
/// older than each tenant's hot window, expire segments past the archive retention), and answers
/// what it did. Its steps are recorded in the chain.
pub(super) async fn run(
    State(state): State<AppState>,
    _caller: Caller<Admin>,
    body: Body,
) -> Result<Response, ApiError> {
    // No body is needed; one that is sent is read like every other (an object without members).
    let body = read_body(body, 64 << 10).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let RetentionRunBody {} = json_body(&body, "no body, or {}")?;
    }
    let st = state.clone();
    let rt = tokio::runtime::Handle::current();
    let done = tokio::task::spawn_blocking(move || crate::retention::run_report(&st, rt))
        .await
        .map_err(|e| ApiError::unavailable(format!("the retention run failed: {e}"), 60))?;
    match done {
        Ok(report) => Ok((StatusCode::OK, axum::Json(report)).into_response()),
        Err(why) => Err(ApiError::unavailable(
            format!(
                "the retention run stopped: {why}; what it finished is committed, run it again to go on"
            ),
            60,
        )),
    }
}
