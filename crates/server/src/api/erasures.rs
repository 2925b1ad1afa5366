//! `POST /v1/erasures`: erase a data subject's personal data (admin; docs/API.md, FORMAT.md §5).

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use blackbox_api::erasures::Erasure;
use serde_json::json;

use super::auth::{Admin, Caller};
use super::input::{json_body, read_body};
use crate::AppState;
use crate::error::ApiError;

/// `POST /v1/erasures`: deletes the personal sidecars of every entry naming the data subject and
/// appends a signed erasure marker to each chain touched, in one commit; then purges the
/// write-ahead log and rewrites the JSONL mirror. The answer names tenants, counts, entry ids and
/// marker ids, never the subject id.
pub(super) async fn erase(
    State(state): State<AppState>,
    caller: Caller<Admin>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, 64 << 10).await?;
    let b: Erasure = json_body(
        &body,
        r#"{"data_subject", "reason", "ticket"} (all strings)"#,
    )?;
    let by = caller.operator();
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
    let archived = reply.outcome.archived_entries();
    if !archived.is_empty() {
        // The markers are committed; the archive segments holding the entries are rewritten.
        let st = state.clone();
        let rt = tokio::runtime::Handle::current();
        let done = tokio::task::spawn_blocking(move || {
            crate::retention::erase_archived(&st, rt, &archived)
        })
        .await;
        v["archive_segments_rewritten"] = match done {
            Ok(Ok(list)) => serde_json::to_value(list).unwrap_or_default(),
            Ok(Err(why)) => json!({"error": why}),
            Err(e) => json!({"error": e.to_string()}),
        };
    }
    Ok((StatusCode::OK, axum::Json(v)).into_response())
}
