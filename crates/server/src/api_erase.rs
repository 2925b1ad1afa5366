//! `POST /v1/erasures`: erase a data subject's personal data (admin; docs/API.md, FORMAT.md §5).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::api::{authorize_parts, json_body, need_admin, read_body};
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
    let b: EraseBody = json_body(
        &body,
        r#"{"data_subject", "reason", "ticket"} (all strings)"#,
    )?;
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

/// Body of `POST /v1/retention/run`: optional, and without members.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionRunBody {}

/// `POST /v1/retention/run` (admin): runs retention now, as the schedule does (archive what is
/// older than each tenant's hot window, expire segments past the archive retention), and answers
/// what it did. Its steps are recorded in the chain.
pub async fn retention_run(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    authorize_parts(
        &state,
        &parts,
        "/v1/retention/run",
        need_admin,
        "running retention",
    )?;
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
