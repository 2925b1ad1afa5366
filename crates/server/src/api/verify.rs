//! `GET /v1/verify`: verify the tenant's chain (as `blackbox verify --format json`).

use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};

use super::auth::{Caller, Read};
use super::blocking;
use super::input::{TenantParam, params};
use super::shares::heavy_read;
use crate::AppState;
use crate::error::ApiError;

/// `GET /v1/verify`.
pub(super) async fn verify(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: TenantParam = params(&uri)?;
    // An admin without tenant_id verifies every chain.
    let tenant = caller.tenant(p.tenant_id.as_deref())?;
    // Verification reads a whole chain: a few at a time, so that it cannot starve ingest, and
    // a few per tenant, so that one tenant cannot starve the others.
    let _running = heavy_read(&state, &caller, "verifications").await?;
    let location = state.readers.location().clone();
    // Read at each verification rather than kept: the writer moves a forward-secure key to a
    // new epoch in the file, and a copy held since start would keep the erased state in memory.
    let keys_path = state.dir.hmac_keys_path();
    let verifier = (*state.verifier).clone();
    let report = blocking(move || {
        let keys = blackbox_ledger::datadir::load_keyring(&keys_path)
            .map_err(|e| ApiError::from(crate::ServerError::from(e)))?;
        let opts = blackbox_ledger::verify::StoreVerifyOptions {
            tenant,
            trusted_checkpoints: Vec::new(),
        };
        blackbox_ledger::verify::verify_store_and_archive(
            &location,
            None,
            Some(&keys),
            Some(verifier),
            &opts,
            &|_| {},
        )
        .map_err(|e| ApiError::from(crate::ServerError::from(e)))
    })
    .await?;
    if !report.ok() {
        state.metrics.verify_failures.inc();
    }
    Ok(axum::Json(blackbox_ledger::report::report_json(&report)).into_response())
}
