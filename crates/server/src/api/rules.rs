//! `GET /v1/rules`: the detection rules in force (each in words) and every rules version the
//! service recorded as loaded (`rules_loaded` entries of its own chains).

use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use blackbox_api::rules::{RuleSummary, RulesAnswer, RulesInForce, RulesVersion};

use super::auth::{Caller, Read};
use super::input::{TenantParam, params};
use super::with_reader;
use crate::AppState;
use crate::error::ApiError;

/// Rules versions answered, newest first.
const HISTORY: usize = 200;

/// `GET /v1/rules`.
pub(super) async fn rules(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: TenantParam = params(&uri)?;
    let only = caller.tenant(p.tenant_id.as_deref())?;
    let set = state.rules.get();
    let mut rules = Vec::with_capacity(set.rules.len());
    let mut hidden = 0u64;
    for r in &set.rules {
        if let Some(t) = only.as_deref()
            && !r.scope.may_apply_to(t)
        {
            hidden += 1;
            continue;
        }
        rules.push(RuleSummary {
            name: r.name.clone(),
            description: r.description.clone(),
            enabled: r.enabled,
            severity: r.severity.as_str().to_owned(),
            action: r.action.as_str().to_owned(),
            kind: r.kind.name().to_owned(),
            condition: r.condition(&set),
            scope: r.scope.describe(only.as_deref()),
            line: r.line,
        });
    }
    let in_force = RulesInForce {
        file: state.rules.path.as_ref().map(|p| p.display().to_string()),
        rules_sha256: set.source_sha256.clone(),
        time_zone: set.time_zone_name.clone(),
        webhooks: set.webhooks.len() as u64,
        classifier: set.classifier.is_some(),
        rules,
        rules_hidden: hidden,
    };
    let current = set.source_sha256.clone();
    let has_file = state.rules.path.is_some();
    let (history, history_more) = with_reader(&state, move |r| {
        let all = blackbox_ledger::rules_loaded::rules_loaded(r)
            .map_err(|e| ApiError::from(crate::ServerError::from(e)))?;
        let more = all.len() > HISTORY;
        let mut history: Vec<RulesVersion> = all
            .into_iter()
            .rev()
            .take(HISTORY)
            .map(|v| RulesVersion {
                loaded_at: blackbox_core::entry::format_timestamp(v.written_ms).unwrap_or_default(),
                rules_sha256: v.rules_sha256,
                rules: v.rules,
                enabled: v.enabled,
                webhooks: v.webhooks,
                file: v.file,
                chain: v.chain,
                seq: v.seq,
                entry_id: v.entry_id,
                in_force: false,
            })
            .collect();
        // The newest record of the file in force is the version in force (a service without a
        // rules file records none).
        if has_file && let Some(v) = history.iter_mut().find(|v| v.rules_sha256 == current) {
            v.in_force = true;
        }
        Ok((history, more))
    })
    .await?;
    Ok(axum::Json(RulesAnswer {
        in_force,
        history,
        history_more,
    })
    .into_response())
}
