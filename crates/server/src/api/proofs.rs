//! Checkpoints and proofs: `GET /v1/checkpoints/latest`, `POST /v1/checkpoints` (sign now),
//! `GET /v1/proofs/inclusion`,
//! `GET /v1/proofs/consistency` (docs/FORMAT.md §7, §10).

use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use blackbox_api::proofs::Checkpoint;
use blackbox_core::entry::parse_entry_id;
use serde::Deserialize;

use super::auth::{Admin, Caller, Read};
use super::input::{TenantParam, params};
use super::shares::heavy_read;
use super::{json_text, with_reader};
use crate::AppState;
use crate::error::ApiError;

/// The tenant a per-chain request works on: the token's, the parameter (admin), or the only
/// chain.
async fn chain_tenant<S>(
    state: &AppState,
    caller: &Caller<S>,
    requested: Option<&str>,
) -> Result<String, ApiError> {
    if let Some(t) = caller.tenant(requested)? {
        return Ok(t);
    }
    let chains = with_reader(state, move |r| Ok(r.chains()?)).await?;
    let real: Vec<_> = chains
        .into_iter()
        .filter(|c| !crate::is_system_tenant(&c.tenant_id))
        .collect();
    match real.as_slice() {
        [only] => Ok(only.tenant_id.clone()),
        [] => Err(ApiError::not_found("the store has no chain yet")),
        _ => Err(ApiError::bad_request(
            "invalid_parameter",
            "the store has several chains: give tenant_id",
        )),
    }
}

/// `GET /v1/checkpoints/latest`.
pub(super) async fn latest_checkpoint(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: TenantParam = params(&uri)?;
    let tenant = chain_tenant(&state, &caller, p.tenant_id.as_deref()).await?;
    checkpoint_of(&state, tenant).await
}

/// The latest checkpoint of `tenant`'s chain, as answered.
async fn checkpoint_of(state: &AppState, tenant: String) -> Result<Response, ApiError> {
    let t = tenant.clone();
    let cp = with_reader(state, move |r| Ok(r.latest_checkpoint(&t)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}` has no checkpoint yet")))?;
    let ts = blackbox_core::entry::format_timestamp(cp.ts_ms).unwrap_or_default();
    Ok(axum::Json(Checkpoint {
        tenant_id: tenant,
        size: cp.size,
        timestamp: ts,
        note: cp.note,
    })
    .into_response())
}

/// `POST /v1/checkpoints` (admin): signs a checkpoint of the tenant's chain now when its latest
/// one does not cover its last entry, and answers the latest (an auditor's bundle proves every
/// entry against it).
pub(super) async fn sign_checkpoint(
    State(state): State<AppState>,
    caller: Caller<Admin>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: TenantParam = params(&uri)?;
    let tenant = chain_tenant(&state, &caller, p.tenant_id.as_deref()).await?;
    sign_now(&state, &tenant).await?;
    checkpoint_of(&state, tenant).await
}

/// Has the writer sign a checkpoint of `tenant`'s chain now when its latest one does not cover
/// its last entry.
pub(super) async fn sign_now(state: &AppState, tenant: &str) -> Result<(), ApiError> {
    match state
        .ingest
        .control(crate::ingest::Control::SignCheckpoints(vec![
            tenant.to_owned(),
        ]))
        .await?
    {
        crate::ingest::ControlReply::Signed(_) => Ok(()),
        _ => Err(ApiError::unavailable(
            "unexpected answer from the writer",
            1,
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionParams {
    entry_id: String,
    tenant_id: Option<String>,
}

fn ledger_to_api(e: blackbox_ledger::LedgerError) -> ApiError {
    match e {
        blackbox_ledger::LedgerError::NotFound(m) => ApiError::not_found(m),
        blackbox_ledger::LedgerError::Proof(m) => ApiError::bad_request("invalid_parameter", m),
        other => crate::ServerError::from(other).into(),
    }
}

/// `GET /v1/proofs/inclusion`.
pub(super) async fn inclusion(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: InclusionParams = params(&uri)?;
    let _running = heavy_read(&state, &caller, "proofs").await?;
    // A tenant named must be the caller's (admin tokens: any); the entry must then be in it.
    let want_tenant = caller
        .tenant(p.tenant_id.as_deref())?
        .filter(|_| p.tenant_id.is_some());
    let id = parse_entry_id(&p.entry_id)
        .map_err(|e| ApiError::bad_request("invalid_parameter", format!("entry_id: {e}")))?;
    let admin = caller.token.scopes.admin;
    let own = caller.token.tenant_id.clone();
    let entry_id = p.entry_id.clone();
    let doc = with_reader(&state, move |r| {
        let e = r
            .entry_by_id(id.as_bytes())?
            .filter(|e| admin || own.as_deref() == Some(e.tenant_id.as_str()))
            .filter(|e| want_tenant.as_deref().is_none_or(|t| t == e.tenant_id))
            .ok_or_else(|| ApiError::not_found(format!("no entry {entry_id}")))?;
        let proof = blackbox_ledger::proof::prove_inclusion(r, &e, true).map_err(ledger_to_api)?;
        proof_text(&proof)
    })
    .await?;
    Ok(json_text(doc))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyParams {
    tenant_id: Option<String>,
    from_size: u64,
    to_size: Option<u64>,
}

/// `GET /v1/proofs/consistency`.
pub(super) async fn consistency(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: ConsistencyParams = params(&uri)?;
    let _running = heavy_read(&state, &caller, "proofs").await?;
    let tenant = chain_tenant(&state, &caller, p.tenant_id.as_deref()).await?;
    let doc = with_reader(&state, move |r| {
        let proof = blackbox_ledger::proof::prove_sizes(r, &tenant, p.from_size, p.to_size)
            .map_err(ledger_to_api)?;
        proof_text(&proof)
    })
    .await?;
    Ok(json_text(doc))
}

/// A proof document as the answer's text.
fn proof_text(proof: &impl serde::Serialize) -> Result<String, ApiError> {
    serde_json::to_string_pretty(proof)
        .map_err(|e| ApiError::unavailable(format!("the proof could not be written: {e}"), 1))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SliceParams {
    tenant_id: Option<String>,
    agent_id: Option<String>,
    session_id: Option<String>,
    trace_id: Option<String>,
    start: Option<String>,
    end: Option<String>,
    limit: Option<u64>,
}

/// Entries a slice holds unless `limit` says otherwise, and at most.
const SLICE_DEFAULT: u64 = 1000;
const SLICE_MAX: u64 = 10_000;

/// `GET /v1/proofs/slice`: a verified log slice (docs/FORMAT.md §10).
pub(super) async fn slice(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: SliceParams = params(&uri)?;
    if p.agent_id.is_none() && p.session_id.is_none() && p.trace_id.is_none() {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "give agent_id, session_id or trace_id: a slice is what one agent, session or trace did (start and end bound it in time)",
        ));
    }
    let limit = p.limit.unwrap_or(SLICE_DEFAULT);
    if limit == 0 || limit > SLICE_MAX {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("limit must be between 1 and {SLICE_MAX}"),
        ));
    }
    for (name, v) in [
        ("agent_id", &p.agent_id),
        ("session_id", &p.session_id),
        ("trace_id", &p.trace_id),
    ] {
        if v.as_deref().is_some_and(|s| s.is_empty() || s.len() > 256) {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("{name}: 1 to 256 characters"),
            ));
        }
    }
    // Bounds are written into the slice as full timestamps, so that a verifier reads them
    // without knowing how a date was meant.
    let selection = blackbox_core::proof::SliceSelection::resolved(
        p.agent_id,
        p.session_id,
        p.trace_id,
        p.start.as_deref(),
        p.end.as_deref(),
    )
    .map_err(|e| ApiError::bad_request("invalid_parameter", e))?;
    let _running = heavy_read(&state, &caller, "proofs").await?;
    let tenant = chain_tenant(&state, &caller, p.tenant_id.as_deref()).await?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let doc = with_reader(&state, move |r| {
        let slice = blackbox_ledger::proof::prove_slice(r, &tenant, &selection, limit)
            .map_err(ledger_to_api)?;
        proof_text(&slice)
    })
    .await?;
    Ok(json_text(doc))
}
