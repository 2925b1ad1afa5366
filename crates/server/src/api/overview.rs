//! `GET /v1/overview`: each readable tenant's figures for the console's first page, read from
//! the chain heads, the detector and the alert index (no entry is scanned), and
//! `GET /v1/checkpoints/key`: the key that signs the checkpoints.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use blackbox_api::overview::{CheckpointKey, CheckpointSummary, Overview, TenantOverview};
use blackbox_core::alert::AlertState;
use blackbox_ledger::alerts::AlertFilter;

use super::auth::{Caller, Read};
use super::input::{TenantParam, params};
use super::with_reader;
use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{Control, ControlReply};

/// Open alerts counted per tenant before saying "more".
const OPEN_ALERTS_COUNTED: usize = 1000;

/// `GET /v1/overview`.
pub(super) async fn overview(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: TenantParam = params(&uri)?;
    let only = caller.tenant(p.tenant_id.as_deref())?;
    let ControlReply::Agents(agents) = state.ingest.control(Control::List(only.clone())).await?
    else {
        return Err(ApiError::unavailable(
            "unexpected answer from the writer",
            1,
        ));
    };
    let mut tenants = with_reader(&state, move |r| {
        let mut out = BTreeMap::new();
        for head in r.chains()? {
            if crate::is_system_tenant(&head.tenant_id)
                || only.as_ref().is_some_and(|t| *t != head.tenant_id)
            {
                continue;
            }
            let checkpoint = r
                .latest_checkpoint(&head.tenant_id)?
                .map(|c| CheckpointSummary {
                    size: c.size,
                    timestamp: blackbox_core::entry::format_timestamp(c.ts_ms).unwrap_or_default(),
                });
            let open = blackbox_ledger::alerts::list(
                r,
                &AlertFilter {
                    tenant_id: Some(head.tenant_id.clone()),
                    state: Some(AlertState::Open),
                    limit: Some(OPEN_ALERTS_COUNTED),
                    ..AlertFilter::default()
                },
            )
            .map_err(crate::ServerError::from)?;
            out.insert(
                head.tenant_id.clone(),
                TenantOverview {
                    tenant_id: head.tenant_id,
                    entries: head.size,
                    agents: 0,
                    agents_paused: 0,
                    agents_throttled: 0,
                    alerts_open: open.alerts.len() as u64,
                    alerts_open_more: open.next.is_some(),
                    checkpoint,
                },
            );
        }
        Ok(out)
    })
    .await?;
    for a in agents {
        if let Some(t) = tenants.get_mut(&a.tenant_id) {
            t.agents += 1;
            t.agents_paused += u64::from(a.state == "paused");
            t.agents_throttled += u64::from(a.state == "throttled");
        }
    }
    let sc = &caller.token.scopes;
    let scopes = [
        ("admin", sc.admin),
        ("ingest", sc.ingest),
        ("read", sc.read),
    ]
    .into_iter()
    .filter(|(_, has)| *has)
    .map(|(name, _)| name.to_owned())
    .collect();
    Ok(axum::Json(Overview {
        tenants: tenants.into_values().collect(),
        scopes,
        token_tenant: caller.token.tenant_id.clone(),
        key_fingerprint: state.verifier.fingerprint(),
    })
    .into_response())
}

/// `GET /v1/checkpoints/key`.
pub(super) async fn checkpoint_key(
    State(state): State<AppState>,
    _caller: Caller<Read>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(CheckpointKey {
        verifier_key: state.verifier.to_vkey(),
        fingerprint: state.verifier.fingerprint(),
    })
    .into_response())
}
