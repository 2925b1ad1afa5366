//! `GET /v1/verify`: verify the tenant's chain (as `blackbox verify --format json`), at once or
//! with its progress streamed (`progress=true`).

use std::sync::atomic::{AtomicI64, Ordering};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::auth::{Caller, Read};
use super::blocking;
use super::input::params;
use super::shares::heavy_read;
use crate::AppState;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyParams {
    tenant_id: Option<String>,
    progress: Option<bool>,
}

/// How often a streamed verification says how far it is.
const PROGRESS_EVERY_MS: i64 = 250;

/// `GET /v1/verify`.
pub(super) async fn verify(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: VerifyParams = params(&uri)?;
    // An admin without tenant_id verifies every chain.
    let tenant = caller.tenant(p.tenant_id.as_deref())?;
    // Verification reads a whole chain: a few at a time, so that it cannot starve ingest, and
    // a few per tenant, so that one tenant cannot starve the others.
    let running = heavy_read(&state, &caller, "verifications").await?;
    let location = state.readers.location().clone();
    // Read at each verification rather than kept: the writer moves a forward-secure key to a
    // new epoch in the file, and a copy held since start would keep the erased state in memory.
    let keys_path = state.dir.hmac_keys_path();
    let verifier = (*state.verifier).clone();
    let failures = state.metrics.verify_failures.clone();
    // The service's own witness policy ([witnessing]): checkpoints cosigned by the quorum.
    let witness_policy = state.witnessing.config.policy();
    let run = move |progress: blackbox_ledger::verify::Progress<'_>| {
        let keys = blackbox_ledger::datadir::load_keyring(&keys_path)
            .map_err(|e| ApiError::from(crate::ServerError::from(e)))?;
        let opts = blackbox_ledger::verify::StoreVerifyOptions {
            tenant,
            trusted_checkpoints: Vec::new(),
            witness_policy,
        };
        let report = blackbox_ledger::verify::verify_store_and_archive(
            &location,
            None,
            Some(&keys),
            Some(verifier),
            &opts,
            progress,
        )
        .map_err(|e| ApiError::from(crate::ServerError::from(e)))?;
        if !report.ok() {
            failures.inc();
        }
        Ok(blackbox_ledger::report::report_json(&report))
    };
    if !p.progress.unwrap_or(false) {
        let report = blocking(move || {
            let _running = running;
            run(&|_| {})
        })
        .await?;
        return Ok(axum::Json(report).into_response());
    }
    // Streamed: `{"checked": n}` lines while it runs (entries checked so far, at most four a
    // second), then `{"report": …}`, or `{"error": {"code", "message"}}` when it could not run.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::task::spawn_blocking(move || {
        let _running = running;
        let last = AtomicI64::new(0);
        let progress = |done: u64| {
            let now = blackbox_ledger::clock::now_ms();
            let before = last.load(Ordering::Relaxed);
            if now - before >= PROGRESS_EVERY_MS
                && last
                    .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                // A reader that does not keep up misses progress lines, never the report.
                let _ = tx.try_send(Ok(Bytes::from(format!("{{\"checked\":{done}}}\n"))));
            }
        };
        let last_line = match run(&progress) {
            Ok(report) => serde_json::json!({ "report": report }),
            Err(e) => serde_json::json!({ "error": { "code": e.code, "message": e.message } }),
        };
        let _ = tx.blocking_send(Ok(Bytes::from(format!("{last_line}\n"))));
    });
    let mut resp = Response::new(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}
