//! Fair shares of what requests hold while they run (docs/API.md, "Limits and fairness"):
//! bytes of bodies being ingested, unpaged answers being streamed, expensive reads.

use axum::http::{HeaderMap, StatusCode, header};

use super::auth::Caller;
use crate::AppState;
use crate::error::ApiError;
use crate::limits::{Refused, Share, ShareKey};

/// Counts a write's body in the bytes in flight (the declared length, or the limit when not
/// declared) under the caller's tenant, so that memory stays bounded and one tenant holds only
/// its part: 429 when the tenant's part is full, 503 when every tenant's together is.
pub(crate) fn body_share<S>(
    state: &AppState,
    caller: &Caller<S>,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<Share, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(state.config.body_limit)
        .clamp(1, state.config.body_limit);
    state
        .ingest_bytes
        .try_take(&ShareKey::of(&caller.token), declared)
        .map_err(|r| match r {
            Refused::KeyFull { held, cap } => {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "tenant_busy",
                    format!(
                        "tenant `{tenant}` already has {held} bytes of request bodies in flight, of the {cap} one tenant may have (this one declares {declared}); nothing was written; retry when its requests in flight are answered"
                    ),
                );
                e.retry_after = Some(1);
                e
            }
            Refused::Exhausted => ApiError::unavailable(
                "too many large requests are being written; nothing was written; retry shortly",
                1,
            ),
        })
        .inspect_err(|e| {
            let reason = if e.code == "unavailable" {
                "overloaded"
            } else {
                e.code
            };
            state.metrics.refuse(tenant, reason);
        })
}

/// A slot for an unpaged (streamed) answer of the caller's tenant: 429 past the tenant's part,
/// 503 when every tenant's streams together fill the service's.
pub(crate) fn stream_share<S>(state: &AppState, caller: &Caller<S>) -> Result<Share, ApiError> {
    let label = crate::metrics::tenant_label(Some(&caller.token));
    state
        .streams
        .try_take(&ShareKey::of(&caller.token), 1)
        .map_err(|r| {
            refusal(state, label, caller, r, |who, held| {
                format!("this {who} already reads {held} unpaged answers, the most one may at once; give `limit` to read in pages, or retry when one ends")
            }, || ApiError::unavailable(
                "too many unpaged answers are being read; give `limit` to read in pages, or retry shortly",
                2,
            ))
        })
}

/// A refused share as an answer (429 for the caller's own part, `exhausted` when every
/// tenant's together are taken), counted in the metrics under the caller's tenant.
fn refusal<S>(
    state: &AppState,
    label: &str,
    caller: &Caller<S>,
    r: Refused,
    busy: impl FnOnce(&str, usize) -> String,
    exhausted: impl FnOnce() -> ApiError,
) -> ApiError {
    let e = match r {
        Refused::KeyFull { held, .. } => {
            let who = if caller.token.tenant_id.is_some() {
                "tenant"
            } else {
                "token"
            };
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "tenant_busy",
                busy(who, held),
            );
            e.retry_after = Some(2);
            e
        }
        Refused::Exhausted => exhausted(),
    };
    let reason = if e.code == "unavailable" {
        "overloaded"
    } else {
        e.code
    };
    state.metrics.refuse(label, reason);
    e
}

/// How long an expensive read waits for the shared slots before it is refused with 503.
const HEAVY_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A slot for an expensive read (verify, exports, proofs) of the caller's tenant (or of the
/// caller, for a token without a tenant): 429 when it already runs as many as one may, 503
/// when the slots of all tenants stay taken for [`HEAVY_READ_WAIT`].
pub(crate) async fn heavy_read<S>(
    state: &AppState,
    caller: &Caller<S>,
    what: &str,
) -> Result<Share, ApiError> {
    let label = crate::metrics::tenant_label(Some(&caller.token));
    state
        .heavy_reads
        .take_within(&ShareKey::of(&caller.token), 1, HEAVY_READ_WAIT)
        .await
        .map_err(|r| {
            refusal(state, label, caller, r, |who, held| {
                format!("this {who} already runs {held} expensive reads (verify, exports, proofs), the most one may at once; retry when one is answered")
            }, || ApiError::unavailable(
                format!("the service is busy with other tenants' {what} and expensive reads; retry shortly"),
                5,
            ))
        })
}
