//! `POST /v1/erasures`: erase a data subject's personal data (admin; docs/API.md, FORMAT.md §5).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::api::{authorize_parts, need_admin, read_body};
use crate::error::ApiError;

/// Body of `POST /v1/erasures`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseBody {
    data_subject: String,
    reason: String,
    ticket: String,
}

/// `POST /v1/erasures`: deletes the personal sidecars of every entry naming the data subject and
/// appends a signed erasure marker to each chain touched, in one commit; then purges the
/// write-ahead log and rewrites the JSONL mirror. The answer names tenants, counts, entry ids and
/// marker ids, never the subject id.
pub async fn erase(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let caller = authorize_parts(
        &state,
        &parts,
        "/v1/erasures",
        need_admin,
        "erasing personal data",
    )?;
    let body = read_body(body, 64 << 10).await?;
    let b: EraseBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("expected {{\"data_subject\", \"reason\", \"ticket\"}} (all strings): {e}"),
        )
    })?;
    let by = format!("operator:{}", caller.token.id);
    let req =
        blackbox_ledger::erase::ErasureRequest::new(&b.data_subject, &b.reason, &b.ticket, &by)
            .map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()))?;
    let reply = state.ingest.erase(req).await?;
    let mut v = blackbox_ledger::erase::outcome_json(&reply.outcome);
    v["purge"] = match &reply.purge_failed {
        None => json!({"complete": true}),
        Some(why) => json!({"complete": false, "message": why}),
    };
    v["mirror_files"] = match &reply.mirror {
        Ok(files) => files
            .iter()
            .map(|(f, n)| json!({"file": f.display().to_string(), "personal_records_removed": n}))
            .collect(),
        Err(why) => json!({"error": why}),
    };
    Ok((StatusCode::OK, axum::Json(v)).into_response())
}
