//! Each chain as a C2SP tlog-tiles log (docs/WITNESS.md, "The log as tiles"), so that standard
//! tlog clients, caches, monitors and witnesses can follow it without Blackbox's API:
//!
//! - `GET /tlog/{tenant}/checkpoint`: the chain's newest signed checkpoint, with its witnesses'
//!   cosignatures;
//! - `GET /tlog/{tenant}/tile/<L>/<N>[.p/<W>]`: Merkle tree hashes;
//! - `GET /tlog/{tenant}/tile/entries/<N>[.p/<W>]`: entry bundles, whose entries are the 32-byte
//!   entry hashes (what the tree commits to), never the entry lines.
//!
//! A read token of the tenant (or an admin token) is needed, unless `[witnessing] public_tiles`
//! is set: then anyone may fetch these, and they show hashes, sizes and signatures only.

use axum::extract::{FromRequestParts as _, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use blackbox_core::tiles::TilePath;

use super::auth::{Caller, Read};
use super::with_reader;
use crate::AppState;
use crate::error::ApiError;

async fn authorize(state: &AppState, parts: &mut Parts, tenant: &str) -> Result<(), ApiError> {
    if state.witnessing.config.public_tiles {
        return Ok(());
    }
    let caller = Caller::<Read>::from_request_parts(parts, state).await?;
    caller.tenant(Some(tenant))?;
    Ok(())
}

fn newest(
    store: &dyn blackbox_store::Store,
    tenant: &str,
) -> Result<blackbox_store::StoredCheckpoint, ApiError> {
    store
        .latest_checkpoint(tenant)
        .map_err(|e| {
            ApiError::from(crate::ServerError::from(
                blackbox_ledger::LedgerError::from(e),
            ))
        })?
        .ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}` has no checkpoint yet")))
}

/// `GET /tlog/{tenant}/checkpoint`.
pub(super) async fn checkpoint(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    authorize(&state, &mut parts, &tenant).await?;
    let note = with_reader(&state, move |r| newest(r, &tenant).map(|c| c.note)).await?;
    let mut resp = note.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// `GET /tlog/{tenant}/tile/{*path}`.
pub(super) async fn tile(
    State(state): State<AppState>,
    Path((tenant, path)): Path<(String, String)>,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    authorize(&state, &mut parts, &tenant).await?;
    let tile =
        TilePath::parse(&format!("tile/{path}")).map_err(|e| ApiError::not_found(e.to_string()))?;
    let public = state.witnessing.config.public_tiles;
    let bytes = with_reader(&state, move |r| {
        // Tiles up to the newest checkpoint: what a client can check against a signed root.
        let size = newest(r, &tenant)?.size;
        blackbox_ledger::tiles::read_tile(r, &tenant, &tile, size).map_err(|e| match e {
            blackbox_ledger::LedgerError::NotFound(m) => ApiError::not_found(m),
            other => crate::ServerError::from(other).into(),
        })
    })
    .await?;
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // A tile's bytes never change once it can be served (partial tiles included).
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if public {
            "public, max-age=31536000, immutable"
        } else {
            "private, max-age=31536000, immutable"
        }),
    );
    Ok(resp)
}
